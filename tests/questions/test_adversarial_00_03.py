"""The blind adversarial answers of tests/questions/adversarial/answers_00_03.py, as one table.

Written from the exercise text only (issue #8): every wrong answer must fail, every
valid one must pass. Seed 0 here; tests/questions/adversarial/run_00_03.py tries more seeds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from exercise_kit import STUB_MESSAGE, run

sys.path.insert(0, str(Path(__file__).resolve().parent / "adversarial"))
from answers_00_03 import CASES  # noqa: E402


@pytest.mark.parametrize("row", [pytest.param(r, id=f"{r[0]}:{'valid' if r[3] else 'wrong'}:{r[1]}")
                                 for r in CASES])
def test_blind_answer(row) -> None:
    qid, name, kind, valid, factory = row
    result = run(qid, *factory(), seed=0)
    if valid:
        assert result.passed, f"{qid} {name}: a valid answer failed: {result.message}"
    else:
        assert not result.passed, f"{qid} {name} [{kind}]: a wrong answer passed"
        assert result.message != STUB_MESSAGE
