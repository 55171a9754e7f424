"""``labkit grade``: scores from executed notebooks, errors as rows, nothing touched.

Every notebook run here starts a real kernel, so the submissions are graded once
per module (with --jobs 2 and --jobs 1) and the tests read those results.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from labkit.instructor import grading
from labkit.checks.result import MIME_TYPE
from labkit.instructor.cli import main

ROOT = pathlib.Path(__file__).resolve().parent.parent
NAME = "00_two_ways_to_serve_exercises.ipynb"


def _variant(source: pathlib.Path, target: pathlib.Path, edit) -> None:
    notebook = nbformat.read(source, as_version=4)
    edit(notebook)
    nbformat.write(notebook, target)


def _drop_cell(text):
    def edit(notebook):
        notebook.cells = [c for c in notebook.cells if text not in c.source]
    return edit


def _append_cell(source):
    def edit(notebook):
        notebook.cells.append(new_code_cell(source))
    return edit


@pytest.fixture(scope="module")
def submissions(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    solution = ROOT / "solutions" / NAME
    _variant(solution, folder / "00_deleted_check.ipynb",
             _drop_cell('lk.check("00.after_revive"'))
    # Checked right first, then wrong at the end: the final state counts.
    _variant(solution, folder / "00_last_wins.ipynb",
             _append_cell('lk.check("00.remember", lambda: None)'))
    _variant(solution, folder / "00_error_cell.ipynb",
             _append_cell("1 / 0"))  # an error after the checks costs nothing
    (folder / "00_corrupt.ipynb").write_text('{"cells": [')
    (folder / "renamed.ipynb").write_bytes((ROOT / "exercises" / NAME).read_bytes())
    watched = [*folder.iterdir(), ROOT / "solutions" / NAME, ROOT / "exercises" / NAME]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in watched}
    return folder, before


@pytest.fixture(scope="module")
def graded(submissions):
    """Everything graded with --jobs 2; a few notebooks again with --jobs 1."""
    folder, _ = submissions
    grades = grading.grade([ROOT / "solutions", ROOT / "exercises", folder],
                           timeout=300, jobs=2)
    again = [ROOT / "solutions" / NAME, ROOT / "exercises" / NAME,
             folder / "00_deleted_check.ipynb"]
    one = grading.grade(again, timeout=300, jobs=1)
    by_path = {g.notebook: g for g in grades}
    return by_path, grades, one, [by_path[str(p)] for p in again]


def _row(graded, path):
    return graded[0][str(path)]


def test_every_solution_gets_full_marks(graded):
    solutions = [g for g in graded[1] if pathlib.Path(g.notebook).parent.name == "solutions"]
    assert len(solutions) == len(list((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")))
    for grade in solutions:
        assert grade.error is None and grade.max_score > 0, grade
        assert grade.score == grade.max_score, [c for c in grade.checks if not c.passed]


def test_every_released_exercise_gets_zero(graded):
    exercises = [g for g in graded[1] if pathlib.Path(g.notebook).parent.name == "exercises"]
    assert exercises and all(g.score == 0 and g.max_score > 0 for g in exercises)
    stub = _row(graded, ROOT / "exercises" / NAME)
    assert stub.error is None and [c.id for c in stub.checks] == ["00.after_revive",
                                                                    "00.remember"]
    assert all("replace the stub" in c.message for c in stub.checks)


def test_a_deleted_check_cell_scores_zero_for_that_question(graded, submissions):
    grade = _row(graded, submissions[0] / "00_deleted_check.ipynb")
    assert grade.score == 2 and grade.max_score == 4
    missing = {c.id: c for c in grade.checks}["00.after_revive"]
    assert missing.points == 0 and missing.message == grading.NO_CHECK


def test_the_last_result_of_a_question_wins(graded, submissions):
    grade = _row(graded, submissions[0] / "00_last_wins.ipynb")
    remember = {c.id: c for c in grade.checks}["00.remember"]
    assert not remember.passed and grade.score == 2


def test_a_failing_cell_does_not_hide_the_checks(graded, submissions):
    assert _row(graded, submissions[0] / "00_error_cell.ipynb").score == 4


def test_a_corrupt_notebook_is_a_row_with_a_reason(graded, submissions):
    grade = _row(graded, submissions[0] / "00_corrupt.ipynb")
    assert grade.score == 0 and grade.max_score == 4
    assert "not a readable notebook" in grade.error


def test_the_chapter_comes_from_release_metadata_when_the_name_lacks_it(graded, submissions):
    grade = _row(graded, submissions[0] / "renamed.ipynb")
    assert grade.max_score == 4 and grade.score == 0 and grade.error is None


def test_jobs_do_not_change_the_scores(graded):
    _, _, one, same_with_two = graded
    assert [g.to_json() for g in one] == [g.to_json() for g in same_with_two]


def test_submissions_are_never_modified(graded, submissions):
    folder, before = submissions
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in before} == before
    assert sorted(folder.iterdir()) == sorted(p for p in before if p.parent == folder)


def test_reports_in_three_formats(graded, tmp_path):
    grades = graded[1]
    data = json.loads(grading.write_report(grades, tmp_path / "r.json").read_text())
    assert all(set(row) == {"notebook", "score", "max_score", "checks", "error"}
               for row in data)
    assert all(set(check) == {"id", "passed", "points", "max_points", "message"}
               for row in data for check in row["checks"])
    csv_text = grading.write_report(grades, tmp_path / "r.csv").read_text()
    assert csv_text.splitlines()[0].startswith("notebook,score,max_score,error,"
                                               "00.after_revive,00.remember")
    page = grading.write_report(grades, tmp_path / "r.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and NAME in page
    assert "<script" not in page
    table = grading.format_table(grades)
    assert NAME in table and "4/4" in table


def test_a_timeout_is_a_row_and_leaves_nothing_running(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[
        new_code_cell("import labkit as lk"), new_code_cell("import time\ntime.sleep(120)")])
    nbformat.write(notebook, tmp_path / "00_slow.ipynb")
    (grade,) = grading.grade([tmp_path / "00_slow.ipynb"], timeout=8)
    assert grade.score == 0 and grade.max_score == 4
    assert grade.error.startswith("timed out after 8 s")


def test_a_dead_kernel_is_a_row(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[
        new_code_cell("import os\nos._exit(1)"), new_code_cell("1 + 1")])
    nbformat.write(notebook, tmp_path / "00_dies.ipynb")
    (grade,) = grading.grade([tmp_path / "00_dies.ipynb"], timeout=60)
    assert grade.score == 0 and "kernel died" in grade.error


def test_check_cells_show_exactly_one_result_each():
    notebook = nbformat.read(ROOT / "solutions" / NAME, as_version=4)
    check_cells = [c for c in notebook.cells if c.cell_type == "code"
                   and c.source.startswith("lk.check(")]
    assert check_cells
    for cell in check_cells:
        assert len(cell.outputs) == 1 and MIME_TYPE in cell.outputs[0].data


def test_cli_grade_json_and_missing_file(tmp_path):
    (tmp_path / "00_corrupt.ipynb").write_text("not json")
    out = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "labkit", "grade", str(tmp_path / "00_corrupt.ipynb"),
         str(tmp_path / "00_missing.ipynb"), "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())
    assert [row["error"] for row in rows] == [
        "not a readable notebook (the file is not valid JSON)", "file not found"]
    assert all(row["score"] == 0 and row["max_score"] == 4 for row in rows)


@pytest.mark.parametrize("args, complaint", [
    (["grade"], "required"),
    (["grade", "x.ipynb", "--jobs", "0"], "--jobs"),
    (["grade", "x.ipynb", "--timeout", "soon"], "--timeout"),
    (["grade", "x.ipynb", "--out", "report.txt"], ".csv, .json or .html"),
    (["grade", "x.ipynb", "--out", "/no/such/folder/r.csv"], "does not exist"),
])
def test_bad_cli_input_is_one_line_and_non_zero(args, complaint, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert complaint in err and err.count("\n") == 1 and "Traceback" not in err


def test_an_empty_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["grade", str(tmp_path)]) == 2
    assert "No notebooks found" in capsys.readouterr().err


def test_doctor_reports_each_requirement(capsys):
    assert main(["doctor"]) == 0  # this machine has the essentials (the venv)
    out = capsys.readouterr().out
    for what in ("Python", "flask", "nbclient", "Redis server", "loopback port"):
        assert what in out
