"""Helpers for testing graded questions against a solution notebook.

Every question is tested three ways: the reference answer (from the solution
notebook) passes, the released stub fails with the stub message, and plausible wrong
answers fail with a useful message. These helpers load the first two from the
notebook itself, so the tests use exactly what learners get.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest

from labkit.checks import get_question
from labkit.checks.run import STUB_MESSAGE, run_question
from labkit.checks.result import CheckResult

SOLUTIONS = Path(__file__).resolve().parent.parent / "solutions"

__all__ = ["STUB_MESSAGE", "Case", "assert_case", "assert_released_stubs_fail", "check_calls",
           "reference", "released_stubs", "run", "table", "valid", "wrong"]

# Wrong answers are sorted into the classes a learner who games a check would try.
KINDS = ("visible-only", "hostile-input", "concurrency", "security", "substance",
         "logic")


def run(qid: str, *answers, seed: int | None = 0, hidden: bool = False) -> CheckResult:
    """Run question ``qid``'s check on ``answers`` (never raises); seed 0 unless given."""
    return run_question(get_question(qid), answers, seed=seed, hidden=hidden)


# -- the answer table: one row per answer, valid or wrong ------------------------------

@dataclass(frozen=True)
class Case:
    """One row of a question's answer table.

    ``answers`` are what the learner would pass to ``lk.check`` after the id. A valid
    case must pass; a wrong case must fail, and its message must contain ``says``
    (words naming the property that broke), never the stub message.
    """

    qid: str
    name: str
    answers: tuple = field(repr=False)
    valid: bool
    says: str = ""
    kind: str = ""

    @property
    def id(self) -> str:
        return f"{self.qid}:{'valid' if self.valid else 'wrong'}:{self.name}"


def valid(qid: str, name: str, *answers: Any) -> Case:
    """A valid alternative answer: it must pass."""
    return Case(qid, name, answers, True)


def wrong(qid: str, name: str, *answers: Any, says: str, kind: str) -> Case:
    """A wrong answer of class ``kind``: it must fail with a message containing ``says``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if not says:
        raise ValueError("say which words the failure message must contain")
    return Case(qid, name, answers, False, says, kind)


def table(cases: list[Case]) -> Any:
    """``@table(CASES)`` parametrizes a test over the rows, one test id per row."""
    return pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in cases])


def case_seed(case: Case, salt: int = 0) -> int:
    """A seed that differs between rows but is the same on every run of one row."""
    return zlib.crc32(f"{case.id}/{salt}".encode()) % 1_000_000


def assert_case(case: Case, *, hidden: bool = False, salt: int = 0) -> None:
    """Run one row and assert its verdict (and, for a wrong answer, its message).

    ``salt`` picks another fixed seed for the same row (to run a row on several).
    """
    seed = case_seed(case, salt)
    result = run(case.qid, *case.answers, seed=seed, hidden=hidden)
    where = f"{case.id} (seed {seed}, hidden={hidden})"
    if case.valid:
        assert result.passed, f"{where}: a valid answer failed: {result.message}"
    else:
        assert not result.passed, f"{where}: a wrong answer passed: {result.message}"
        assert result.message != STUB_MESSAGE, f"{where}: failed only as a stub"
        assert case.says.lower() in result.message.lower(), (
            f"{where}: the message should name what broke ({case.says!r}):"
            f" {result.message}")


def _from_a_stub(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, NotImplementedError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _execute(notebook: nbformat.NotebookNode, filename: str, *,
             stubs: bool = False) -> dict:
    namespace: dict = {}
    for cell in notebook.cells:
        if cell.cell_type == "code" and not cell.source.startswith("lk.check"):
            try:
                exec(compile(cell.source, filename, "exec"), namespace)
            except Exception as exc:
                # In the released notebook a try-it cell that calls a stub fails, as
                # it does for a learner; the definitions are what matter here.
                if not (stubs and _from_a_stub(exc)):
                    raise
    return namespace


def reference(solution: Path) -> dict:
    """Run the solution notebook's code (not its checks) and return its names."""
    return _execute(nbformat.read(solution, as_version=4), str(solution))


def released_stubs(solution: Path) -> dict:
    """The learner's starting point: the solution notebook after ``labkit release``."""
    from labkit.instructor.release import exercise_notebook

    return _execute(exercise_notebook(solution), "exercise", stubs=True)


def check_calls(solution: Path) -> list[tuple[str, list[str]]]:
    """Each ``lk.check("id", name, ...)`` cell of a notebook, as (id, [names])."""
    calls = []
    for cell in nbformat.read(solution, as_version=4).cells:
        source = cell.source.strip()
        if cell.cell_type == "code" and source.startswith("lk.check(") and source.endswith(")"):
            qid, *names = [part.strip() for part in source[len("lk.check("):-1].split(",")]
            calls.append((qid.strip("\"'"), names))
    return calls


def assert_released_stubs_fail(solution: Path, *, at_least: int = 3) -> None:
    """Every check of ``solution`` fails with the stub message on the released stubs."""
    stubs = released_stubs(solution)
    calls = check_calls(solution)
    assert len(calls) >= at_least
    for qid, names in calls:
        result = run(qid, *(stubs[name] for name in names))
        assert not result.passed and result.message == STUB_MESSAGE, qid
