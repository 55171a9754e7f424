"""``labkit grade`` on bad files, learner ids, chapters, shards, and its command line.

Most tests here never start a kernel: a file that cannot be graded is refused
before anything runs. The shard test grades a small class twice (whole, and in two
shards) and compares the reports byte for byte.
"""

from __future__ import annotations

import json
import os
import pathlib
import fcntl
import pty
import select
import subprocess
import struct
import sys
import termios

import nbformat
import pytest

from labkit.instructor import reports
from labkit.instructor import grading
from labkit.instructor.cli import main
from labkit.errors import GradeError

ROOT = pathlib.Path(__file__).resolve().parents[2]
NAME = "00_two_ways_to_serve_exercises.ipynb"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def labkit(*args: str, cwd: pathlib.Path = ROOT, timeout: float = 600
           ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True,
                          text=True, cwd=cwd, env=ENV, timeout=timeout)


# -- bad files: each is a row with a reason, nothing runs ---------------------------

def _v3_notebook() -> str:
    from nbformat import v3

    return v3.writes_json(v3.new_notebook(worksheets=[v3.new_worksheet(cells=[
        v3.new_code_cell(input="import labkit as lk")])]))


BAD_FILES = {
    "missing": (None, "file not found"),
    "empty": (b"", "the file is empty"),
    "corrupt": (b'{"cells": [', "not a readable notebook (the file is not valid JSON)"),
    "not_utf8": ('{"cells": [], "x": "caf\u00e9"}'.encode("latin-1"),
                 "not a readable notebook (the file is not UTF-8 text)"),
    "nbformat3": (_v3_notebook().encode(), "a notebook in format 3: only nbformat 4 is"
                  " graded"),
    "not_a_notebook": (b'{"hello": 1}', "not a readable notebook (JSON, but not a"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_a_bad_file_is_a_row_with_a_reason(kind, tmp_path):
    content, reason = BAD_FILES[kind]
    path = tmp_path / f"00_{kind}.ipynb"
    if content is not None:
        path.write_bytes(content)
    (grade,) = grading.grade([path], timeout=60)
    assert grade.score == 0 and grade.max_score == 4 and grade.chapter == "00"
    assert grade.error.startswith(reason), grade.error
    assert all(c.message == f"not graded: {grade.error}" for c in grade.checks)
    if content is not None:
        assert path.read_bytes() == content


def test_a_huge_file_is_refused_unread(tmp_path):
    path = tmp_path / "00_huge.ipynb"
    with open(path, "wb") as handle:  # sparse: costs no disk
        handle.truncate(grading.MAX_NOTEBOOK_BYTES + 1)
    grade = grading.grade_notebook(path)
    assert grade.score == 0 and grade.max_score == 4
    assert grade.error.startswith("the file is 20.0 MB, over the 20 MB limit")
    assert "Clear Outputs" in grade.error


def test_a_folder_named_like_a_notebook_is_a_row(tmp_path):
    (tmp_path / "00_folder.ipynb").mkdir()
    grade = grading.grade_notebook(tmp_path / "00_folder.ipynb")
    assert grade.error == "not a regular file"


def test_the_grader_goes_on_after_bad_files(tmp_path):
    (tmp_path / "00_a.ipynb").write_bytes(b"")
    (tmp_path / "00_b.ipynb").write_bytes(b"\xff\xfe")
    grades = grading.grade([tmp_path, tmp_path / "00_c.ipynb"], timeout=60, jobs=2)
    assert [pathlib.Path(g.notebook).name for g in grades] == ["00_a.ipynb", "00_b.ipynb",
                                                                 "00_c.ipynb"]
    assert all(g.error for g in grades)


# -- learners and chapters ---------------------------------------------------------

def test_learner_ids_come_from_the_folder_or_the_file_name(tmp_path):
    for name in ("alice/03_stateful_cluster_exercises.ipynb", "alice/00_x.ipynb",
                 "bob_00_two_ways.ipynb", "carol-05_stateless.ipynb", "dave.ipynb",
                 "erin_03.ipynb"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("{}")
    found = {s.path.relative_to(tmp_path).as_posix(): s.learner
             for s in grading.find_submissions([tmp_path])}
    assert found == {"alice/00_x.ipynb": "alice",
                     "alice/03_stateful_cluster_exercises.ipynb": "alice",
                     "bob_00_two_ways.ipynb": "bob", "carol-05_stateless.ipynb": "carol",
                     "dave.ipynb": "dave", "erin_03.ipynb": "erin"}
    alone = grading.find_submissions([tmp_path / "alice" / "00_x.ipynb"])
    assert alone[0].learner == "alice"


def test_the_chapter_from_name_metadata_or_checks(tmp_path):
    notebook = nbformat.read(ROOT / "solutions" / NAME, as_version=4)
    assert grading.chapter_of(pathlib.Path("x/03_mine.ipynb"), notebook) == "03"
    assert grading.chapter_of(pathlib.Path("ann_03_mine.ipynb"), notebook) == "03"
    assert grading.chapter_of(pathlib.Path("ann_03.ipynb"), notebook) == "03"
    assert grading.chapter_of(pathlib.Path("2024_notes.ipynb"), notebook) == "00"
    assert grading.chapter_of(pathlib.Path("99_mine.ipynb"), notebook) == "00"  # no 99
    notebook.metadata["labkit"] = {"chapter": "05"}
    assert grading.chapter_of(pathlib.Path("mine.ipynb"), notebook) == "05"
    notebook.metadata.pop("labkit")
    assert grading.chapter_of(pathlib.Path("mine.ipynb"), notebook) == "00"
    notebook.cells = [c for c in notebook.cells if "lk.check(" not in c.source]
    assert grading.chapter_of(pathlib.Path("mine.ipynb"), notebook) is None


def test_chapter_overrides_and_a_notebook_without_one(tmp_path):
    (tmp_path / "essay.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook()))
    unknown = grading.grade_notebook(tmp_path / "essay.ipynb")
    assert unknown.error.startswith("cannot tell which chapter") and "--chapter" in unknown.error
    (tmp_path / "00_corrupt.ipynb").write_text("{")
    (forced,) = grading.grade([tmp_path / "00_corrupt.ipynb"], chapter="03")
    assert forced.chapter == "03" and forced.max_score == sum(
        q.points for q in grading.questions_for("03"))
    with pytest.raises(GradeError, match="no graded questions"):
        grading.grade([tmp_path], chapter="98")


# -- shards ---------------------------------------------------------------------------

def test_shards_are_a_deterministic_partition():
    for count in range(0, 12):
        for total in range(1, 5):
            parts = [grading.shard_positions(count, (i, total)) for i in range(1, total + 1)]
            assert sorted(p for part in parts for p in part) == list(range(count))
    assert grading.parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "x", "1/0", "-1/2"):
        with pytest.raises(GradeError):
            grading.parse_shard(bad)


def test_shards_merge_into_exactly_the_report_of_one_run(tmp_path):
    """A small class: a solution, a stub, a broken file, a learner folder."""
    cls = tmp_path / "class"
    (cls / "zoe").mkdir(parents=True)
    (cls / "ann_00.ipynb").write_bytes((ROOT / "solutions" / NAME).read_bytes())
    (cls / "zoe" / NAME).write_bytes((ROOT / "exercises" / NAME).read_bytes())
    (cls / "bob_00_x.ipynb").write_text("{")
    whole = labkit("grade", str(cls), "--out", str(tmp_path / "whole.json"), "--jobs", "2",
                   "--feedback", str(tmp_path / "fb-whole"))
    assert whole.returncode == 0, whole.stderr
    assert whole.stderr == ""  # no progress bar when stderr is not a terminal
    parts = []
    for index in (1, 2):
        part = tmp_path / f"part{index}.json"
        result = labkit("grade", str(cls), "--shard", f"{index}/2", "--out", str(part))
        assert result.returncode == 0, result.stderr
        assert f"shard {index}/2" in result.stdout
        parts.append(str(part))
    assert [len(json.loads(pathlib.Path(p).read_text())["grades"]) for p in parts] == [2, 1]
    for suffix in ("json", "csv", "html"):
        merged = labkit("grade-merge", *reversed(parts), "--out",
                        str(tmp_path / f"merged.{suffix}"),
                        *(["--feedback", str(tmp_path / "fb-merged")] if suffix == "json"
                          else []))
        assert merged.returncode == 0, merged.stderr
        if suffix != "json":
            reports.write_report(grading_from(tmp_path / "whole.json"),
                                 tmp_path / f"whole.{suffix}")
        assert (tmp_path / f"merged.{suffix}").read_bytes() == (
            tmp_path / f"whole.{suffix}").read_bytes()
    assert merged.stdout.splitlines()[0] == whole.stdout.splitlines()[0]
    for page in (tmp_path / "fb-whole").iterdir():
        assert page.read_bytes() == (tmp_path / "fb-merged" / page.name).read_bytes()
    rows = json.loads((tmp_path / "whole.json").read_text())
    assert [(r["learner"], r["score"]) for r in rows] == [("ann", 4), ("bob", 0), ("zoe", 0)]


def grading_from(path: pathlib.Path) -> list[grading.NotebookGrade]:
    return [grading.NotebookGrade.from_json(item) for item in json.loads(path.read_text())]


def _part(tmp_path, name, shard, notebooks, indices):
    grade = grading.NotebookGrade("x", 0, 0).to_json()
    path = tmp_path / name
    path.write_text(json.dumps({"format": reports.PART_FORMAT, "version": 1,
                                "shard": shard, "notebooks": notebooks,
                                "grades": [{"index": i, **grade} for i in indices]}))
    return str(path)


def test_merge_refuses_missing_duplicate_and_foreign_parts(tmp_path):
    one = _part(tmp_path, "1.json", [1, 2], ["a", "b"], [0])
    two = _part(tmp_path, "2.json", [2, 2], ["a", "b"], [1])
    other = _part(tmp_path, "o.json", [2, 2], ["a", "c"], [1])
    assert len(reports.merge_parts([two, one])) == 2
    with pytest.raises(GradeError, match="Missing shard"):
        reports.merge_parts([one])
    with pytest.raises(GradeError, match="given twice"):
        reports.merge_parts([one, one])
    with pytest.raises(GradeError, match="another grading run"):
        reports.merge_parts([one, other])
    (tmp_path / "junk.json").write_text("[]")
    with pytest.raises(GradeError, match="not a partial result"):
        reports.merge_parts([str(tmp_path / "junk.json")])


# -- the command line --------------------------------------------------------------------

def test_cli_grade_json_and_missing_file(tmp_path):
    (tmp_path / "00_corrupt.ipynb").write_text("not json")
    out = tmp_path / "report.json"
    result = labkit("grade", str(tmp_path / "00_corrupt.ipynb"),
                    str(tmp_path / "00_missing.ipynb"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())
    assert [row["error"] for row in rows] == [
        "not a readable notebook (the file is not valid JSON)", "file not found"]
    assert all(row["score"] == 0 and row["max_score"] == 4 for row in rows)
    assert "2 submission(s), 2 with errors" in result.stdout
    assert "rows with errors:" in result.stdout


def test_a_progress_bar_on_a_terminal(tmp_path):
    (tmp_path / "00_a.ipynb").write_text("{")
    (tmp_path / "00_b.ipynb").write_text("{")
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    seen = b""
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "labkit", "grade", str(tmp_path)], cwd=ROOT, env=ENV,
            stdout=subprocess.PIPE, stderr=follower, stdin=subprocess.DEVNULL)
        out, _ = process.communicate(timeout=120)
        while select.select([leader], [], [], 0.5)[0]:  # what the terminal got
            seen += os.read(leader, 65536)
    finally:
        os.close(follower)
        os.close(leader)
    assert process.returncode == 0
    assert b"/2 [" in seen and b"notebook/s]" in seen and b"<" in seen  # count, time left
    assert b"notebook/s" not in out


@pytest.mark.parametrize("args, complaint", [
    (["grade"], "required"),
    (["grade", "x.ipynb", "--jobs", "0"], "--jobs"),
    (["grade", "x.ipynb", "--timeout", "soon"], "--timeout"),
    (["grade", "x.ipynb", "--out", "report.txt"], ".csv, .json or .html"),
    (["grade", "x.ipynb", "--out", "/no/such/folder/r.csv"], "does not exist"),
    (["grade", "x.ipynb", "--chapter", "three"], "--chapter"),
    (["grade", "x.ipynb", "--shard", "3/2"], "--shard"),
    (["grade", "x.ipynb", "--shard", "1/2"], "--out PART.json"),
    (["grade", "x.ipynb", "--shard", "1/2", "--out", "r.csv"], "--out PART.json"),
    (["grade-merge", "p.json"], "--out"),
    (["grade-merge", "/no/p.json", "--out", "r.csv"], "file not found"),
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
