"""exercises/ must be exactly what `labkit release` writes from solutions/."""

from __future__ import annotations

import pathlib

import pytest

from labkit.instructor.release import render_exercise, solution_notebooks

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOLUTIONS = solution_notebooks(ROOT / "solutions")


def test_there_are_solutions():
    assert SOLUTIONS


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_exercise_matches_its_solution(solution):
    exercise = ROOT / "exercises" / solution.name
    assert exercise.exists(), f"{exercise} is missing: run `labkit release`"
    assert exercise.read_text(encoding="utf-8") == render_exercise(solution), (
        f"{exercise} is out of date: run `labkit release` (edit solutions/, never exercises/)")
