"""``labkit progress``: a learner's own notebooks, read without running anything."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import nbformat
import pytest

from labkit.checks.result import MIME_TYPE, CheckResult
from labkit.instructor.progress import FAILED, NOT_RUN, PASSED, format_progress, progress
from labkit.errors import LabkitError

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture()
def learner(tmp_path):
    """A learner's folder: solved, half solved, unsolved, broken and stray notebooks."""
    folder = tmp_path / "exercises"
    folder.mkdir()
    solved = "00_two_ways_to_serve_exercises.ipynb"
    (folder / solved).write_bytes((ROOT / "solutions" / solved).read_bytes())
    half = nbformat.read(ROOT / "solutions" / "01_stateful_sessions_exercises.ipynb", 4)
    outputs = [o for c in half.cells if c.cell_type == "code" for o in c.outputs
               if MIME_TYPE in o.get("data", {})]
    first = outputs[0]
    failed = CheckResult(first.data[MIME_TYPE]["id"], False, 0,
                         first.data[MIME_TYPE]["max_points"], "Not yet.")
    first.data = failed.to_bundle()  # what a failed lk.check leaves in the notebook
    nbformat.write(half, folder / "01_stateful_sessions_exercises.ipynb")
    released = "03_stateful_cluster_exercises.ipynb"
    (folder / released).write_bytes((ROOT / "exercises" / released).read_bytes())
    (folder / "05_stateless_http_exercises.ipynb").write_text('{"cells": [')
    (folder / "06_scaling_out_exercises.ipynb").write_bytes(b"\xff\xfe\x00")
    (folder / "scratch.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook()))
    return folder, failed.id


def test_progress_reads_solved_unsolved_and_broken_notebooks(learner):
    folder, failed_id = learner
    rows = progress(folder)
    by_chapter = {row.chapter: row for row in rows if not row.error}
    assert set(by_chapter["00"].status.values()) == {PASSED}
    assert by_chapter["00"].notebook == "00_two_ways_to_serve_exercises.ipynb"
    half = by_chapter["01"].status
    assert half[failed_id] == FAILED
    assert [state for qid, state in half.items() if qid != failed_id] == [PASSED] * (
        len(half) - 1)
    assert set(by_chapter["03"].status.values()) == {NOT_RUN}
    assert by_chapter["04"].notebook is None  # no notebook yet: nothing passed
    broken = {row.notebook: row.error for row in rows if row.error}
    assert broken == {
        "05_stateless_http_exercises.ipynb":
            "not a readable notebook (the file is not valid JSON)",
        "06_scaling_out_exercises.ipynb":
            "not a readable notebook (the file is not UTF-8 text)",
        "scratch.ipynb": "not an exercise notebook of a chapter"}
    assert set(by_chapter["05"].status.values()) == {NOT_RUN}  # broken: nothing counted


def test_the_progress_command(learner):
    folder, failed_id = learner
    result = subprocess.run([sys.executable, "-m", "labkit", "progress", str(folder)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert "chapter 00  00_two_ways_to_serve_exercises.ipynb  2 of 2 passed" in lines
    assert f"  ✘ {failed_id}  (failed)" in lines
    assert "  · 03.sticky_policy  (not checked yet)" in lines
    assert any(line.startswith("05_stateless_http_exercises.ipynb: cannot read it:")
               for line in lines)
    passed = sum(len(r.status) for r in progress(folder) if r.chapter in ("00", "01")) - 1
    assert f"{passed} of " in lines[-2] and "(chapters done: 00)" in lines[-2]
    assert result.stdout.strip() == format_progress(progress(folder))


def test_progress_of_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(LabkitError, match="no folder"):
        progress(tmp_path / "nope")
