"""Does the live panel slow the load it shows? The same load, panel shown vs hidden.

Run: ``make benchmark`` (or ``.venv/bin/python benchmarks/panel.py``).

Inside a real IPython kernel (where the panel's figure is really rendered to PNG and
sent to the front end), a cluster of 3 servers x 4 workers x 10 ms takes a load of
8 users asking for 400 requests/s in all, for a fixed time, twice in each repeat:
once with the panel's widgets built and redrawn every second, once with the panel
hidden (same load, no view). ``shown_vs_hidden`` is requests completed with the
panel shown over requests completed with it hidden: 1.0 means redrawing costs the
load nothing; the issue allows "a few percent".
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import textwrap

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from harness import Kernel  # noqa: E402  (the same kernel helper as the main harness)

SETUP = textwrap.dedent('''
    import json, time
    import labkit as lk
    from labkit.apps import social

    def run(shown, seconds):
        with lk.Cluster(lambda: social.create_app(mode="basic", kdf_iterations=1_000),
                        size=3, workers=4, service_time=0.01, name="bench-panel") as c:
            panel = c.panel(path="/posts", users=8, rate=400)
            if shown:
                panel.widget()             # the view exists: the redraw loop renders it
            panel.start()
            time.sleep(seconds)
            panel.stop()
            done = panel.counters()["ok"]
            panel.close()
            return done
''')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    kernel = Kernel()
    try:
        kernel.run(SETUP)
        shown, hidden = [], []
        for _ in range(args.repeats):  # interleaved: both see the same machine
            hidden.append(kernel.run(f"print(json.dumps(run(False, {args.seconds})))"))
            shown.append(kernel.run(f"print(json.dumps(run(True, {args.seconds})))"))
    finally:
        kernel.close()
    figures = {"panel_hidden_requests": statistics.median(hidden),
               "panel_shown_requests": statistics.median(shown),
               "shown_vs_hidden": round(statistics.median(shown) / statistics.median(hidden), 3)}
    print(f"requests in {args.seconds:g} s: hidden {figures['panel_hidden_requests']},"
          f" shown {figures['panel_shown_requests']} (ratio {figures['shown_vs_hidden']})")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
