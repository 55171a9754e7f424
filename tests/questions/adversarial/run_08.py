"""Run every case of answers_08.py through the real checks, with three seeds.

    .venv/bin/python tests/adversarial/run_08.py [QID ...] [--seeds 1,2,3] [-v]

Each case runs in a thread with a deadline. Some wrong answers monkeypatch the cost
model or the check (a learner can), so the model's classes and both modules are restored after every case
and the next one starts clean. Prints the wrong answers that PASSED and the valid
answers that FAILED (the findings), with the check's message, then the counts.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
CASE_TIMEOUT = 60.0


def _snapshot():
    from labkit.choosing import cost
    from labkit.questions import q08

    classes = (cost.CostModel, cost.Estimate, cost.CostTable, cost.Choice, cost.BreakEven)
    return ({c: dict(vars(c)) for c in classes}, {m: dict(vars(m)) for m in (cost, q08)})


def _restore(snap) -> None:
    classes, module = snap
    for cls, saved in classes.items():
        for name in set(vars(cls)) - set(saved):
            delattr(cls, name)
        for name, value in saved.items():
            if name in ("__dict__", "__weakref__"):
                continue
            if vars(cls).get(name, object()) is not value:
                setattr(cls, name, value)
    for mod, saved in module.items():
        for name in set(vars(mod)) - set(saved):
            delattr(mod, name)
        vars(mod).update(saved)


def run_case(question, factory, seed: int) -> dict:
    from labkit.checks.run import run_question

    box: dict = {}

    def go() -> None:
        try:
            res = run_question(question, factory(), seed=seed)
            box["passed"], box["message"] = bool(res.passed), str(res.message)
        except BaseException as e:  # run_question should never raise
            box["passed"], box["message"] = False, f"RAISED {type(e).__name__}: {e}"

    th = threading.Thread(target=go, daemon=True)
    th.start()
    th.join(CASE_TIMEOUT)
    if th.is_alive():
        return {"passed": None, "message": f"TIMEOUT after {CASE_TIMEOUT:.0f} s"}
    return box


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("qids", nargs="*")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]

    import answers_08 as A
    from labkit.checks import get_question

    snap = _snapshot()
    findings, counts = [], {"wrong": 0, "wrong_passed": 0, "valid": 0, "valid_failed": 0}
    for qid, name, kind, valid, factory in A.CASES:
        if args.qids and qid not in args.qids:
            continue
        question = get_question(qid)
        bad_seeds = []
        for seed in seeds:
            t0 = time.monotonic()
            box = run_case(question, factory, seed)
            _restore(snap)
            ok = box["passed"] is (True if valid else False)
            if args.verbose:
                print(f"  {qid} {name} seed={seed} passed={box['passed']}"
                      f" ({time.monotonic() - t0:.1f}s): {box['message'][:300]}")
            if not ok:
                bad_seeds.append((seed, box))
        counts["valid" if valid else "wrong"] += 1
        if bad_seeds:
            counts["valid_failed" if valid else "wrong_passed"] += 1
            findings.append((qid, name, kind, valid, bad_seeds))

    for qid, name, kind, valid, bad in findings:
        label = "VALID FAILED" if valid else "WRONG PASSED"
        seed, box = bad[0]
        print(f"{label}: {qid} {name} [{kind}] seeds={[s for s, _ in bad]}: {box['message'][:400]}")
    print(f"\nwrong answers that passed: {counts['wrong_passed']}/{counts['wrong']};"
          f" valid answers that failed: {counts['valid_failed']}/{counts['valid']}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
