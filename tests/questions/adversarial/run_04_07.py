"""Run every case of answers_04_07.py through the real checks, with two seeds.

    .venv/bin/python tests/adversarial/run_04_07.py [QID ...] [--jobs N] [--seeds 1,2]

One child process per question (so a hung or leaking case cannot take the others
down); inside it each case runs in a thread with a 60 s deadline. Prints, per question,
the wrong answers that PASSED and the valid answers that FAILED (the findings), with
the check's message, then the counts.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CASE_TIMEOUT = 60.0


def worker(qid: str, seeds: list[int]) -> None:
    """Child: run every case of ``qid`` once per seed; one JSON line per run."""
    sys.path.insert(0, HERE)
    import answers_04_07 as A
    from labkit.checks import get_question
    from labkit.checks.run import run_question

    question = get_question(qid)
    for (q, name, kind, valid, factory) in A.CASES:
        if q != qid:
            continue
        for seed in seeds:
            box: dict = {}

            def go() -> None:
                try:
                    res = run_question(question, factory(), seed=seed)
                    box["passed"], box["message"] = bool(res.passed), str(res.message)
                except BaseException as e:  # run_question should never raise
                    box["passed"], box["message"] = False, f"RAISED {type(e).__name__}: {e}"

            t0 = time.monotonic()
            th = threading.Thread(target=go, daemon=True)
            th.start()
            th.join(CASE_TIMEOUT)
            if th.is_alive():
                box = {"passed": None, "message": f"TIMEOUT after {CASE_TIMEOUT:.0f} s"}
            print(json.dumps({"qid": q, "name": name, "kind": kind, "valid": valid, "seed": seed,
                              "passed": box["passed"], "message": box["message"],
                              "secs": round(time.monotonic() - t0, 1)}), flush=True)
    os._exit(0)  # do not wait for a hung case's thread


def run_child(qid: str, seeds: list[int], n_cases: int) -> list[dict]:
    budget = n_cases * len(seeds) * (CASE_TIMEOUT + 5) + 60
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", qid,
           "--seeds", ",".join(map(str, seeds))]
    try:
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=budget).stdout
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
    rows = []
    for line in out.splitlines():
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("qids", nargs="*")
    ap.add_argument("--worker")
    ap.add_argument("--seeds", default="11,2027")
    ap.add_argument("--jobs", type=int, default=3)
    ap.add_argument("--json", help="also write every row to this file")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    if a.worker:
        worker(a.worker, seeds)
        return
    sys.path.insert(0, HERE)
    import answers_04_07 as A
    order: list[str] = []
    for c in A.CASES:
        if c[0] not in order and (not a.qids or c[0] in a.qids):
            order.append(c[0])
    counts = {q: sum(1 for c in A.CASES if c[0] == q) for q in order}
    with ThreadPoolExecutor(a.jobs) as pool:
        results = dict(zip(order, pool.map(lambda q: run_child(q, seeds, counts[q]), order)))
    all_rows = [r for q in order for r in results[q]]
    if a.json:
        with open(a.json, "w") as f:
            json.dump(all_rows, f, indent=1)
    tot = {"wr": 0, "wt": 0, "va": 0, "vt": 0}
    for q in order:
        rows = results[q]
        by_case: dict = {}
        for r in rows:
            by_case.setdefault(r["name"], []).append(r)
        expected = [c for c in A.CASES if c[0] == q]
        print(f"\n=== {q}")
        wr = wt = va = vt = 0
        for (_, name, kind, valid, _) in expected:
            runs = by_case.get(name, [])
            if len(runs) < len(seeds):
                print(f"  MISSING RUN  {name}: {len(runs)} of {len(seeds)} seeds reported")
            if valid:
                vt += 1
                ok = runs and all(r["passed"] is True for r in runs)
                va += bool(ok)
                for r in runs:
                    if r["passed"] is not True:
                        print(f"  VALID FAILED  {name} ({kind}) seed={r['seed']}: {r['message'][:600]}")
            else:
                wt += 1
                rejected = runs and all(r["passed"] is not True for r in runs)
                wr += bool(rejected)
                for r in runs:
                    if r["passed"] is True:
                        print(f"  WRONG PASSED  {name} ({kind}) seed={r['seed']}: {r['message'][:300]}")
                    elif r["passed"] is None:
                        print(f"  (wrong timed out) {name} seed={r['seed']}")
        print(f"  wrong rejected {wr}/{wt}, valid accepted {va}/{vt}")
        tot["wr"] += wr; tot["wt"] += wt; tot["va"] += va; tot["vt"] += vt
    print(f"\nOVERALL wrong rejected {tot['wr']}/{tot['wt']}, valid accepted {tot['va']}/{tot['vt']}")


if __name__ == "__main__":
    main()
