"""``labkit grade``: scores from sealed records, hidden re-checks, errors as rows.

Every notebook run here starts a real kernel, so the submissions are graded once
per module (with --jobs 2, and a few again with --jobs 1) and the tests read those
results.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import tempfile

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from labkit.instructor import reports
from labkit.instructor import grading
from labkit.checks import seal
from labkit.checks.result import MIME_TYPE

ROOT = pathlib.Path(__file__).resolve().parents[2]
NAME = "00_two_ways_to_serve_exercises.ipynb"
SOLUTION = ROOT / "solutions" / NAME
EXERCISE = ROOT / "exercises" / NAME


def variant(source: pathlib.Path, target: pathlib.Path, *cells: str,
            drop: str | None = None, metadata: bool = True) -> pathlib.Path:
    """Write ``source`` to ``target`` with ``cells`` appended (and one cell dropped)."""
    notebook = nbformat.read(source, as_version=4)
    if drop:
        notebook.cells = [c for c in notebook.cells if drop not in c.source]
    notebook.cells.extend(new_code_cell(source) for source in cells)
    if not metadata:
        notebook.metadata.pop("labkit", None)
    nbformat.write(notebook, target)
    return target


FORGED = {"id": "00.remember", "passed": True, "points": 2, "max_points": 2,
          "message": "Well done."}
DISPLAY = "from IPython.display import display\ndisplay({{{mime!r}: {record!r}}}, raw=True)"
TUNED = '''\
from labkit.checks import context
real_answer = name_after_restart

def name_after_restart(server):
    # tuned to the visible check: answers wrong when the hidden check runs
    return "Ada" if context().hidden else real_answer(server)

lk.check("00.after_revive", make_guestbook, name_after_restart)'''
DELETE_CWD = '''\
import os, shutil
here = os.getcwd()
for name in os.listdir(here):
    shutil.rmtree(name) if os.path.isdir(name) else os.remove(name)
shutil.rmtree(here)      # the folder itself too, then a new empty one
os.makedirs(here)
os.chdir(here)'''
FORK = '''\
import os, time
if os.fork() == 0:          # a child that detaches and never ends
    os.setsid()
    if os.fork() == 0:
        with open({pidfile!r}, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)
    os._exit(0)
time.sleep(1)'''


@pytest.fixture(scope="module")
def submissions(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    outside = tmp_path_factory.mktemp("outside")
    variant(SOLUTION, folder / "00_deleted_check.ipynb", drop='lk.check("00.after_revive"')
    # Checked right first, then wrong at the end: the final state counts.
    variant(SOLUTION, folder / "00_last_wins.ipynb", 'lk.check("00.remember", lambda: None)')
    variant(SOLUTION, folder / "00_error_cell.ipynb", "1 / 0")
    # A sealed pass shown again after a later failure does not win.
    variant(SOLUTION, folder / "00_replay.ipynb",
            'good = lk.check("00.remember", make_guestbook)',
            'lk.check("00.remember", lambda: None)', "good")
    variant(SOLUTION, folder / "00_tuned.ipynb", TUNED)
    variant(EXERCISE, folder / "00_forged.ipynb",
            DISPLAY.format(mime=MIME_TYPE, record=FORGED))
    copied = seal.sign(FORGED, key=secrets.token_bytes(32), run="an earlier run", seq=9)
    variant(EXERCISE, folder / "00_copied.ipynb", DISPLAY.format(mime=MIME_TYPE,
                                                                record=copied))
    variant(SOLUTION, folder / "00_deletes_its_folder.ipynb", drop="lk.check(")
    notebook = nbformat.read(folder / "00_deletes_its_folder.ipynb", as_version=4)
    notebook.cells.insert(2, new_code_cell(DELETE_CWD))  # early: later checks still run
    notebook.cells.extend(new_code_cell(c) for c in (
        'lk.check("00.remember", make_guestbook)',
        'lk.check("00.after_revive", make_guestbook, name_after_restart)'))
    nbformat.write(notebook, folder / "00_deletes_its_folder.ipynb")
    variant(EXERCISE, folder / "00_forks.ipynb", FORK.format(pidfile=str(outside / "pid")))
    variant(EXERCISE, folder / "00_dies.ipynb", "import os\nos._exit(1)")
    (folder / "00_corrupt.ipynb").write_text('{"cells": [')
    (folder / "renamed.ipynb").write_bytes(EXERCISE.read_bytes())  # metadata tells
    variant(SOLUTION, folder / "my_work.ipynb", metadata=False)  # its checks tell
    watched = [*folder.iterdir(), SOLUTION, EXERCISE]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in watched}
    return folder, before, outside


@pytest.fixture(scope="module")
def graded(submissions, tmp_path_factory):
    """Everything graded with --jobs 2; a few notebooks again with --jobs 1."""
    folder = submissions[0]
    scratch = tmp_path_factory.mktemp("scratch")
    old, tempfile.tempdir = tempfile.tempdir, str(scratch)  # see what the grader leaves
    try:
        grades = grading.grade([ROOT / "solutions", ROOT / "exercises", folder],
                               timeout=300, jobs=2)
        again = [SOLUTION, EXERCISE, folder / "00_deleted_check.ipynb"]
        one = grading.grade(again, timeout=300, jobs=1)
    finally:
        tempfile.tempdir = old
    by_path = {g.notebook: g for g in grades}
    return by_path, grades, one, [by_path[str(p)] for p in again], scratch


def row(graded, folder, name):
    return graded[0][str(folder / name)]


def checks(grade):
    return {c.id: c for c in grade.checks}


def test_every_solution_gets_full_marks(graded):
    solutions = [g for g in graded[1] if pathlib.Path(g.notebook).parent.name == "solutions"]
    assert len(solutions) == len(list((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")))
    for grade in solutions:
        assert grade.error is None and grade.max_score > 0, grade
        assert grade.score == grade.max_score, [c for c in grade.checks if not c.passed]
        assert all(c.message.startswith("visible: pass, hidden: pass") for c in grade.checks)
        assert grade.notes == [], grade.notes


def test_every_released_exercise_gets_zero(graded):
    exercises = [g for g in graded[1] if pathlib.Path(g.notebook).parent.name == "exercises"]
    assert exercises and all(g.score == 0 and g.max_score > 0 for g in exercises)
    stub = graded[0][str(EXERCISE)]
    assert stub.error is None and [c.id for c in stub.checks] == ["00.after_revive",
                                                                    "00.remember"]
    assert all(c.message.startswith("visible: fail, hidden: not run: Your code still"
                                    " raises NotImplementedError") for c in stub.checks)


def test_a_deleted_check_cell_scores_zero_for_that_question(graded, submissions):
    grade = row(graded, submissions[0], "00_deleted_check.ipynb")
    assert grade.score == 2 and grade.max_score == 4
    missing = checks(grade)["00.after_revive"]
    assert missing.points == 0 and missing.message == grading.NO_CHECK


def test_the_last_result_of_a_question_wins(graded, submissions):
    grade = row(graded, submissions[0], "00_last_wins.ipynb")
    assert not checks(grade)["00.remember"].passed and grade.score == 2


def test_an_earlier_pass_shown_again_does_not_win(graded, submissions):
    grade = row(graded, submissions[0], "00_replay.ipynb")
    assert not checks(grade)["00.remember"].passed and grade.score == 2
    assert grade.notes == []  # a real record shown twice is not a forgery


def test_a_failing_cell_does_not_hide_the_checks(graded, submissions):
    assert row(graded, submissions[0], "00_error_cell.ipynb").score == 4


def test_an_answer_tuned_to_the_visible_check_fails_the_hidden_one(graded, submissions):
    grade = row(graded, submissions[0], "00_tuned.ipynb")
    revive = checks(grade)["00.after_revive"]
    assert not revive.passed and revive.points == 0 and grade.score == 2
    assert revive.message.startswith("visible: pass, hidden: fail: "), revive.message
    assert any("internals" in note for note in grade.notes)


@pytest.mark.parametrize("name", ["00_forged.ipynb", "00_copied.ipynb"])
def test_a_forged_or_copied_record_counts_nothing_and_is_reported(graded, submissions,
                                                                 name):
    grade = row(graded, submissions[0], name)
    assert grade.score == 0 and grade.error is None
    assert "forged or copied record for 00.remember" in checks(grade)["00.remember"].message
    assert "forged or copied record for 00.remember" in grade.notes


def test_a_notebook_that_deletes_its_working_folder_is_still_graded(graded, submissions):
    grade = row(graded, submissions[0], "00_deletes_its_folder.ipynb")
    assert grade.error is None and grade.score == 4, grade.checks


def test_a_notebook_that_forks_leaves_no_process(graded, submissions):
    grade = row(graded, submissions[0], "00_forks.ipynb")
    assert grade.error is None and grade.score == 0
    assert any("left 1 process(es) running" in note for note in grade.notes), grade.notes
    pid = int((submissions[2] / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_dead_kernel_is_a_row(graded, submissions):
    grade = row(graded, submissions[0], "00_dies.ipynb")
    assert grade.score == 0 and grade.max_score == 4 and "kernel died" in grade.error


def test_a_corrupt_notebook_is_a_row_with_a_reason(graded, submissions):
    grade = row(graded, submissions[0], "00_corrupt.ipynb")
    assert grade.score == 0 and grade.max_score == 4
    assert "not a readable notebook" in grade.error


def test_the_chapter_comes_from_metadata_then_from_the_checks(graded, submissions):
    renamed = row(graded, submissions[0], "renamed.ipynb")
    assert (renamed.max_score, renamed.score, renamed.error) == (4, 0, None)
    mine = row(graded, submissions[0], "my_work.ipynb")
    assert (mine.chapter, mine.score, mine.max_score) == ("00", 4, 4)


def test_jobs_do_not_change_the_scores(graded):
    _, _, one, same_with_two, _ = graded
    assert [g.to_json() for g in one] == [g.to_json() for g in same_with_two]


def test_submissions_and_scratch_are_left_as_they_were(graded, submissions):
    folder, before, _ = submissions
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in before} == before
    assert sorted(folder.iterdir()) == sorted(p for p in before if p.parent == folder)
    assert list(graded[4].iterdir()) == []  # every scratch folder removed


def test_reports_in_three_formats(graded, tmp_path):
    grades = graded[1]
    data = json.loads(reports.write_report(grades, tmp_path / "r.json").read_text())
    assert all({"notebook", "score", "max_score", "checks", "error"} <= set(item)
               for item in data)
    assert all(set(check) == {"id", "passed", "points", "max_points", "message"}
               for item in data for check in item["checks"])
    lines = reports.write_report(grades, tmp_path / "r.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[:4] == ["learner", "notebook", "chapter", "00.after_revive"]
    assert header[-4:] == ["total", "max_total", "error", "notes"]
    assert len(lines) == len(grades) + 1
    solution_row = next(line for line in lines if line.startswith(f"solutions,{SOLUTION}"))
    assert solution_row.startswith(f"solutions,{SOLUTION},00,2,2,")
    page = reports.write_report(grades, tmp_path / "r.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and NAME in page and "<script" not in page
    table = reports.format_table(grades)
    assert NAME in table and "4/4" in table


def test_the_summary_gives_means_per_question_and_the_error_rows(graded):
    grades = graded[1]
    summary = reports.format_summary(grades)
    assert summary.startswith(f"{len(grades)} submission(s), ")
    remember = [c.points for g in grades for c in g.checks if c.id == "00.remember"]
    line = next(line for line in summary.splitlines() if line.startswith("00.remember"))
    assert line.split()[1:3] == [str(len(remember)), f"{sum(remember) / len(remember):.2f}"]
    assert "rows with errors:" in summary and "00_corrupt.ipynb: not a readable" in summary


def test_feedback_pages_one_per_submission(graded, tmp_path):
    grades = graded[1]
    pages = reports.write_feedback(grades, tmp_path / "feedback")
    assert len(pages) == len(set(pages)) == len(grades)
    stub = pages[[g.notebook for g in grades].index(str(EXERCISE))]
    text = stub.read_text()
    assert stub.name == "exercises_00.html" and "0/4 points" in text
    assert "not passed" in text and "Hints to read" in text and "<script" not in text
    assert "NotImplementedError" in text


def test_check_cells_show_exactly_one_result_each():
    notebook = nbformat.read(SOLUTION, as_version=4)
    check_cells = [c for c in notebook.cells if c.cell_type == "code"
                   and c.source.startswith("lk.check(")]
    assert check_cells
    for cell in check_cells:
        assert len(cell.outputs) == 1 and MIME_TYPE in cell.outputs[0].data


def test_a_notebook_that_never_ends_is_stopped_with_its_children(tmp_path):
    pidfile = tmp_path / "pid"
    notebook = nbformat.v4.new_notebook(cells=[
        new_code_cell("import labkit as lk"), new_code_cell(FORK.format(pidfile=str(pidfile))),
        new_code_cell("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                      "while True:\n    time.sleep(1)")])
    nbformat.write(notebook, tmp_path / "00_slow.ipynb")
    (grade,) = grading.grade([tmp_path / "00_slow.ipynb"], timeout=15)
    assert grade.score == 0 and grade.max_score == 4
    assert grade.error.startswith("timed out after 15 s")
    with pytest.raises(ProcessLookupError):
        os.kill(int(pidfile.read_text()), 0)


def test_a_notebook_that_floods_its_output_is_stopped(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[
        new_code_cell("while True:\n    print('x' * 10_000)")])
    nbformat.write(notebook, tmp_path / "00_floods.ipynb")
    grade = grading.grade_notebook(tmp_path / "00_floods.ipynb", timeout=120,
                                   max_output=2 * 1024 * 1024)
    assert grade.score == 0 and grade.max_score == 4
    assert grade.error.startswith("the notebook printed more than 2 MB of output")
