"""Helpers for testing graded questions against a solution notebook.

Every question is tested three ways: the reference answer (from the solution
notebook) passes, the released stub fails with the stub message, and plausible wrong
answers fail with a useful message. These helpers load the first two from the
notebook itself, so the tests use exactly what learners get.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from labkit.checks import get_question
from labkit.checks.run import STUB_MESSAGE, run_question
from labkit.checks.result import CheckResult

SOLUTIONS = Path(__file__).resolve().parent.parent / "solutions"

__all__ = ["STUB_MESSAGE", "assert_released_stubs_fail", "check_calls", "reference",
           "released_stubs", "run"]


def run(qid: str, *answers) -> CheckResult:
    """Run question ``qid``'s check on ``answers`` (never raises)."""
    return run_question(get_question(qid), answers)


def _execute(notebook: nbformat.NotebookNode, filename: str) -> dict:
    namespace: dict = {}
    for cell in notebook.cells:
        if cell.cell_type == "code" and not cell.source.startswith("lk.check"):
            exec(compile(cell.source, filename, "exec"), namespace)
    return namespace


def reference(solution: Path) -> dict:
    """Run the solution notebook's code (not its checks) and return its names."""
    return _execute(nbformat.read(solution, as_version=4), str(solution))


def released_stubs(solution: Path) -> dict:
    """The learner's starting point: the solution notebook after ``labkit release``."""
    from labkit.release import exercise_notebook

    return _execute(exercise_notebook(solution), "exercise")


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
