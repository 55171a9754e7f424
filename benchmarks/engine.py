"""The kit's balancer against HAProxy, on the same gunicorn servers and the same load.

Run: ``make benchmark`` (or ``.venv/bin/python benchmarks/engine.py``).

For each balancer (``engine="kit"`` and ``engine="haproxy"``), in the same run:

* ``rps`` and ``fidelity``: 3 servers x 4 workers x 20 ms under gunicorn (theory 600
  requests/s), 24 users; fidelity = measured / theory. Here the servers are the
  bottleneck, as in every experiment of the course.
* ``p50_added_ms``: median latency through the balancer minus straight to the
  server, one user, a server with no service time.
* ``raw_rps``: the same 3 servers with no service time, 24 users: now the balancer
  itself is the bottleneck, and the kit's Python shows.
* ``cpu_ms_per_request``: CPU the balancer spent per request in the raw run (HAProxy:
  its own process; the kit: this process's CPU minus the same run through HAProxy,
  which leaves the kit's relay threads, since the load generator is the same).

Prints a table, then one line of JSON. Figures depend on the machine; read ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import psutil
from flask import Flask

import labkit as lk

REPEATS = 3
USERS = 24
SCALE = 1  # --quick divides the requests of each run by 4 (a smoke test)


def make_app() -> Flask:
    app = Flask("bench")

    @app.get("/")
    def index():
        return "ok"

    return app


def _cluster(engine: str, service_time: float, size: int = 3):
    return lk.Cluster(make_app, size=size, workers=4 if service_time else None,
                      service_time=service_time, isolation="gunicorn", engine=engine,
                      name=f"bench-{engine}")


def capacity_run(engine: str) -> float:
    with _cluster(engine, 0.02) as cluster:
        lk.load_test(cluster, users=USERS, requests=240, progress=False)  # warm up
        return lk.load_test(cluster, users=USERS, requests=2400 // SCALE,
                            progress=False).throughput


def p50_added(engine: str) -> float:
    with _cluster(engine, 0.0, size=1) as cluster:
        direct = lk.load_test(cluster.servers[0].url, users=1, requests=400 // SCALE,
                              progress=False)
        through = lk.load_test(cluster, users=1, requests=400 // SCALE, progress=False)
        return through.p50 - direct.p50


def raw_run(engine: str) -> tuple[float, float]:
    """Requests/s with no service time, and CPU seconds of (this process, HAProxy)."""
    with _cluster(engine, 0.0) as cluster:
        lk.load_test(cluster, users=USERS, requests=300, progress=False)
        me = psutil.Process()
        proxy = psutil.Process(cluster.balancer._process.pid) if engine == "haproxy" else None
        before = (sum(me.cpu_times()[:2]), sum(proxy.cpu_times()[:2]) if proxy else 0.0)
        report = lk.load_test(cluster, users=USERS, requests=3000 // SCALE, progress=False)
        after = (sum(me.cpu_times()[:2]), sum(proxy.cpu_times()[:2]) if proxy else 0.0)
        per_request = [(a - b) / report.ok for a, b in zip(after, before)]
        return report.throughput, per_request[0], per_request[1]


def main() -> int:
    global REPEATS, SCALE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--quick", action="store_true", help="a quarter of the requests")
    args = parser.parse_args()
    REPEATS, SCALE = args.repeats, 4 if args.quick else 1
    results: dict[str, dict[str, list[float]]] = {"kit": {}, "haproxy": {}}
    for _ in range(REPEATS):
        for engine in ("kit", "haproxy"):  # interleaved: both see the same machine
            row = results[engine]
            row.setdefault("rps", []).append(capacity_run(engine))
            row.setdefault("p50_added_ms", []).append(p50_added(engine))
            raw, me_cpu, proxy_cpu = raw_run(engine)
            row.setdefault("raw_rps", []).append(raw)
            row.setdefault("_me_cpu", []).append(me_cpu)
            row.setdefault("_proxy_cpu", []).append(proxy_cpu)
    med = {e: {k: statistics.median(v) for k, v in row.items()} for e, row in results.items()}
    kit_cpu = max(0.0, med["kit"]["_me_cpu"] - med["haproxy"]["_me_cpu"]) * 1000
    haproxy_cpu = med["haproxy"]["_proxy_cpu"] * 1000
    figures = {
        "kit_rps": round(med["kit"]["rps"], 1),
        "haproxy_rps": round(med["haproxy"]["rps"], 1),
        "kit_vs_haproxy_rps": round(med["kit"]["rps"] / med["haproxy"]["rps"], 3),
        "kit_fidelity": round(med["kit"]["rps"] / 600, 3),
        "haproxy_fidelity": round(med["haproxy"]["rps"] / 600, 3),
        "kit_p50_added_ms": round(med["kit"]["p50_added_ms"], 3),
        "haproxy_p50_added_ms": round(med["haproxy"]["p50_added_ms"], 3),
        "kit_raw_rps": round(med["kit"]["raw_rps"], 1),
        "haproxy_raw_rps": round(med["haproxy"]["raw_rps"], 1),
        "kit_vs_haproxy_raw_rps": round(med["kit"]["raw_rps"] / med["haproxy"]["raw_rps"], 3),
        "kit_cpu_ms_per_request": round(kit_cpu, 3),
        "haproxy_cpu_ms_per_request": round(haproxy_cpu, 3),
    }
    print(f"{'':28}{'kit':>10}{'haproxy':>10}{'ratio':>8}")
    for label, key, unit in (("requests/s (3x4x20 ms)", "rps", ""),
                             ("p50 added (ms)", "p50_added_ms", ""),
                             ("requests/s (no work)", "raw_rps", "")):
        kit, hap = med["kit"][key], med["haproxy"][key]
        ratio = f"{kit / hap:8.2f}" if hap else ""
        print(f"{label:28}{kit:10.2f}{hap:10.2f}{ratio}")
    print(f"{'CPU ms per request':28}{kit_cpu:10.3f}{haproxy_cpu:10.3f}")
    print("Why the kit is slower with no work to do: every request crosses Python code"
          " (parse, choose, relay) under one GIL shared with the load generator, about"
          f" {kit_cpu:.2f} ms of CPU each, where HAProxy's event loop in C spends"
          f" {haproxy_cpu:.3f} ms. When the servers do real work (the course's"
          " experiments), both stay close to the capacity model.")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
