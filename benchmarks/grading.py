"""How fast ``labkit grade`` grades: notebooks per minute, per core, per shard.

Run: ``.venv/bin/python benchmarks/grading.py`` (``--copies 2`` grades every notebook
twice over, ``--json`` prints one line of JSON at the end).

It grades, with the real grader (a kernel per notebook, sealed records, the hidden
re-checks):

* the released exercise notebooks (``exercises/``, every check fails on its stub)
  with ``--jobs 1`` and ``--jobs 2``;
* the solution notebooks (``solutions/``, every check passes, so every hidden
  re-check runs too) with ``--jobs 2``;
* the exercise notebooks split in two shards, one after the other, as two machines of
  a batch system would each grade their share.

The target is at least 2 notebooks per minute per core on the exercise notebooks.
Figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labkit.instructor import grading  # noqa: E402


def _class(source: Path, copies: int, into: Path) -> Path:
    """A folder with ``copies`` learners, each holding every notebook of ``source``."""
    for n in range(copies):
        learner = into / f"learner{n + 1:02d}"
        learner.mkdir(parents=True)
        for notebook in sorted(source.glob("[0-9][0-9]_*.ipynb")):
            shutil.copy(notebook, learner / notebook.name)
    return into


def measure(name: str, folder: Path, *, jobs: int, shard: tuple[int, int] | None = None
            ) -> dict:
    """Grade ``folder`` and time it."""
    start = time.perf_counter()
    grades = grading.grade([folder], jobs=jobs, shard=shard, timeout=600)
    seconds = time.perf_counter() - start
    per_minute = len(grades) / seconds * 60
    return {"run": name, "notebooks": len(grades), "jobs": jobs, "seconds": round(seconds, 1),
            "per_minute": round(per_minute, 2),
            "per_minute_per_core": round(per_minute / min(jobs, os.cpu_count() or 1), 2),
            "errors": sum(1 for g in grades if g.error),
            "points": f"{sum(g.score for g in grades)}/{sum(g.max_score for g in grades)}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=1, help="learners per class")
    parser.add_argument("--json", action="store_true", help="also print JSON")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="labkit-bench-") as scratch:
        exercises = _class(ROOT / "exercises", args.copies, Path(scratch) / "exercises")
        solutions = _class(ROOT / "solutions", args.copies, Path(scratch) / "solutions")
        rows.append(measure("exercises", exercises, jobs=1))
        rows.append(measure("exercises", exercises, jobs=2))
        rows.append(measure("solutions", solutions, jobs=2))
        for index in (1, 2):
            rows.append(measure(f"exercises shard {index}/2", exercises, jobs=1,
                                shard=(index, 2)))
    print(f"{'run':<22}{'notebooks':>10}{'jobs':>6}{'seconds':>9}{'per min':>9}"
          f"{'per min/core':>14}{'errors':>8}  points")
    for row in rows:
        print(f"{row['run']:<22}{row['notebooks']:>10}{row['jobs']:>6}{row['seconds']:>9}"
              f"{row['per_minute']:>9}{row['per_minute_per_core']:>14}{row['errors']:>8}"
              f"  {row['points']}")
    print(f"machine: {os.cpu_count()} cores, load average"
          f" {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
