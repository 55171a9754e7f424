"""Measure the kit where learners run it: inside a Jupyter kernel.

Run: ``make benchmark`` (or ``.venv/bin/python benchmarks/harness.py``).

The script starts a real IPython kernel, runs each measurement in it side by side
with its baseline in the same kernel and the same run, takes the median of a few
repeats, and prints a table, then one final line of JSON:

* ``speedup_vs_naive``: requests/s of ``lk.load_test`` with one user against a kit
  server, divided by the naive set-up (werkzeug ``make_server`` in a thread with its
  default request logging, and a ``requests.Session`` loop).
* ``balancer_overhead_ms_p50``: median latency through the balancer minus direct,
  same server, one user.
* ``fidelity_ratio``: measured / theoretical throughput, 3 servers x 4 workers x
  20 ms, ``isolation="process"``, through the balancer (theory 600 requests/s).
* ``fidelity_ratio_threads``: the same with threads at 3 x 4 x 50 ms (theory 240/s).

Figures depend on the machine and on what else runs on it; compare ratios.

The naive baseline gets a fresh kernel for each repeat and stays under 1,000
requests: inside a kernel, werkzeug's per-request log lines make ipykernel open
file descriptors that it does not give back, and after about a thousand requests
the kernel fails with "ZMQError: Too many open files" (seen here). The kit keeps
its request log out of the notebook's output for exactly this kind of reason.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import textwrap

from jupyter_client.manager import start_new_kernel

SETUP = textwrap.dedent('''
    import json, statistics, threading, time
    import requests
    from flask import Flask
    from werkzeug.serving import make_server
    import labkit as lk

    def make_app():
        app = Flask("bench")
        @app.get("/")
        def index():
            return "ok"
        return app

    def naive_rps(n):
        # What a notebook author would write first: werkzeug's server in a thread,
        # request logging on (it prints every request), a requests.Session client.
        server = make_server("127.0.0.1", 0, make_app(), threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_port}/"
        session = requests.Session()
        session.get(url)
        start = time.perf_counter()
        for _ in range(n):
            session.get(url, timeout=30)
        elapsed = time.perf_counter() - start
        session.close()
        server.shutdown()
        server.server_close()
        thread.join()
        return n / elapsed

    def kit_rps(n, isolation):
        with lk.serve(make_app, name="bench", isolation=isolation) as server:
            lk.load_test(server, users=1, requests=50, progress=False)   # warm up
            return lk.load_test(server, users=1, requests=n).throughput

    def overhead_ms(n):
        with lk.Cluster(make_app, size=1, name="bench") as cluster:
            direct_url = cluster.servers[0].url
            lk.load_test(cluster, users=1, requests=50, progress=False)
            through = lk.load_test(cluster, users=1, requests=n, progress=False).p50
            direct = lk.load_test(direct_url, users=1, requests=n, progress=False).p50
            return [through - direct, through, direct]

    def fidelity(isolation, service_time, n):
        theory = 3 * 4 / service_time
        with lk.Cluster(make_app, size=3, workers=4, service_time=service_time,
                        isolation=isolation, name="bench") as cluster:
            lk.load_test(cluster, users=24, requests=120, progress=False)
            report = lk.load_test(cluster, users=24, requests=n)
            assert report.failed == 0, report
            return report.throughput / theory
''')


class Kernel:
    """A real IPython kernel we can run code in and read a JSON answer from."""

    def __init__(self) -> None:
        self.manager, self.client = start_new_kernel(kernel_name="python3")

    def run(self, code: str, timeout: float = 600) -> object:
        lines: list[str] = []
        errors: list[str] = []

        def hook(msg: dict) -> None:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content["name"] == "stdout":
                lines.append(content["text"])
            elif kind == "error":
                errors.append("\n".join(content["traceback"]))

        self.client.execute_interactive(code, output_hook=hook, timeout=timeout)
        if errors:
            raise RuntimeError(errors[0])
        text = "".join(lines).strip().splitlines()
        return json.loads(text[-1]) if text else None

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    args = parser.parse_args()
    scale = 0.25 if args.quick else 1.0
    n_single, n_proc, n_thread = int(2000 * scale), int(3000 * scale), int(1200 * scale)

    kernel = Kernel()
    try:
        kernel.run(SETUP)
        n_naive = min(n_single, 800)
        rows: dict[str, list[float]] = {k: [] for k in (
            "naive_rps", "kit_rps_thread", "kit_rps_process", "balancer_overhead_ms_p50",
            "p50_ms_through_balancer", "p50_ms_direct",
            "fidelity_ratio", "fidelity_ratio_threads")}
        for _ in range(args.repeats):
            # Baseline and kit alternate inside one repeat, so drift hits both alike.
            naive = Kernel()
            try:
                naive.run(SETUP)
                rows["naive_rps"].append(naive.run(f"print(naive_rps({n_naive}))"))
            finally:
                naive.close()
            rows["kit_rps_thread"].append(kernel.run(f"print(kit_rps({n_single}, 'thread'))"))
            rows["kit_rps_process"].append(kernel.run(f"print(kit_rps({n_single}, 'process'))"))
            overhead, through, direct = kernel.run(f"print(overhead_ms({n_single // 2}))")
            rows["balancer_overhead_ms_p50"].append(overhead)
            rows["p50_ms_through_balancer"].append(through)
            rows["p50_ms_direct"].append(direct)
            rows["fidelity_ratio"].append(kernel.run(f"print(fidelity('process', 0.02, {n_proc}))"))
            rows["fidelity_ratio_threads"].append(kernel.run(f"print(fidelity('thread', 0.05, {n_thread}))"))
    finally:
        kernel.close()

    median = {k: statistics.median(v) for k, v in rows.items()}
    print(f"{'measure':28} {'median':>10}   runs")
    for key, values in rows.items():
        print(f"{key:28} {median[key]:10.3f}   " + ", ".join(f"{v:.3f}" for v in values))
    result = {
        "speedup_vs_naive": round(median["kit_rps_thread"] / median["naive_rps"], 2),
        "speedup_vs_naive_process": round(median["kit_rps_process"] / median["naive_rps"], 2),
        "balancer_overhead_ms_p50": round(median["balancer_overhead_ms_p50"], 3),
        "p50_ms_through_balancer": round(median["p50_ms_through_balancer"], 3),
        "p50_ms_direct": round(median["p50_ms_direct"], 3),
        "fidelity_ratio": round(median["fidelity_ratio"], 3),
        "fidelity_ratio_threads": round(median["fidelity_ratio_threads"], 3),
        "naive_rps": round(median["naive_rps"], 1),
        "kit_rps_thread": round(median["kit_rps_thread"], 1),
        "kit_rps_process": round(median["kit_rps_process"], 1),
        "repeats": args.repeats,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
