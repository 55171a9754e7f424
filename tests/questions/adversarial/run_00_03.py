"""Run every adversarial case of answers_00_03.py against the checks, 2 seeds each.

    .venv/bin/python tests/questions/adversarial/run_00_03.py [QID_PREFIX ...] [--jobs N] [--hidden]

Each case runs in its own child process (60 s timeout). Prints wrong answers that
PASSED and valid answers that FAILED, with the messages, then a count per question.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEEDS = (11, 2027)


def one(index: int, seed: int, hidden: bool) -> None:
    sys.path.insert(0, str(HERE))
    from answers_00_03 import CASES
    from labkit.checks import get_question
    from labkit.checks.run import run_question

    qid, name, kind, valid, factory = CASES[index]
    t0 = time.monotonic()
    res = run_question(get_question(qid), factory(), seed=seed, hidden=hidden)
    print(json.dumps({"passed": res.passed, "message": res.message,
                      "secs": round(time.monotonic() - t0, 1)}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("prefix", nargs="*")
    ap.add_argument("--jobs", type=int, default=3)
    ap.add_argument("--hidden", action="store_true")
    ap.add_argument("--one", nargs=2, type=int)
    args = ap.parse_args()
    if args.one:
        one(*args.one, args.hidden)
        return
    sys.path.insert(0, str(HERE))
    from answers_00_03 import CASES
    todo = [(i, seed) for i, (qid, *_rest) in enumerate(CASES) for seed in SEEDS
            if not args.prefix or any(qid.startswith(p) for p in args.prefix)]

    def run(item):
        i, seed = item
        cmd = [sys.executable, __file__, "--one", str(i), str(seed)] + (["--hidden"] if args.hidden else [])
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            line = (out.stdout.strip().splitlines() or [""])[-1]
            try:
                return i, seed, json.loads(line)
            except ValueError:
                return i, seed, {"passed": None, "message": "crashed: " + out.stderr[-600:], "secs": 0}
        except subprocess.TimeoutExpired:
            return i, seed, {"passed": None, "message": "TIMEOUT after 60 s", "secs": 60}

    results = defaultdict(dict)
    with ThreadPoolExecutor(args.jobs) as pool:
        for i, seed, r in pool.map(run, todo):
            results[i][seed] = r

    tally = defaultdict(lambda: [0, 0, 0, 0])  # wrong caught, wrong total, valid ok, valid total
    slow = []
    for i, per_seed in sorted(results.items()):
        qid, name, kind, valid, _f = CASES[i]
        t = tally[qid]
        for seed, r in per_seed.items():
            slow.append((r["secs"], qid, name))
        if valid:
            t[3] += 1
            bad = [(s, r) for s, r in per_seed.items() if r["passed"] is not True]
            if not bad:
                t[2] += 1
            for s, r in bad:
                print(f"VALID FAILED  {qid} {name} seed={s}: {r['message']}")
        else:
            t[1] += 1
            leaked = [(s, r) for s, r in per_seed.items() if r["passed"] is not False]
            if not leaked:
                t[0] += 1
            for s, r in leaked:
                print(f"WRONG PASSED  {qid} {name} [{kind}] seed={s}: {r['message']}")
    print()
    for qid, (wc, wt, vo, vt) in sorted(tally.items()):
        print(f"{qid:22s} wrong caught {wc}/{wt}   valid passed {vo}/{vt}")
    print("slowest:", sorted(slow, reverse=True)[:5])


if __name__ == "__main__":
    main()
