"""House rules for every notebook of the course (style.md, course-map.md).

nbval proves that the stored outputs still come out; these tests check what nbval
does not: the shape a learner relies on.
"""

from __future__ import annotations

import pathlib
import re

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# A chapter may come in parts (05a, 05b, ...); the two digits are its number.
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]*_*.ipynb"))
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
EXERCISES = sorted((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb"))
ALL = CHAPTERS + SOLUTIONS + EXERCISES


def _ids(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


def _read(path):
    return nbformat.read(path, as_version=4)


def test_there_is_a_course():
    assert CHAPTERS and CHAPTERS[0].name == "00_two_ways_to_serve.ipynb"


@pytest.mark.parametrize("path", ALL, ids=_ids(ALL))
def test_notebook_is_valid_and_uses_the_python3_kernel(path):
    notebook = _read(path)
    nbformat.validate(notebook)
    assert notebook.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", ALL, ids=_ids(ALL))
def test_opens_with_a_title_and_markdown_reads_as_markdown(path):
    notebook = _read(path)
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert re.match(r"# \d\d[a-z]? ", first.source), "the title names the chapter number"
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "markdown":
            continue
        lines = [line for line in cell.source.splitlines() if line.strip()]
        # A markdown cell whose every line starts with '#' is a script's comment block
        # pasted in by mistake: it renders as a stack of headings.
        assert not (len(lines) > 2 and all(line.startswith("#") for line in lines)), (
            f"cell {index} looks like commented-out text, not markdown")
        assert not any(line.startswith("# #") for line in lines), (
            f"cell {index} has a heading behind a comment sign")


@pytest.mark.parametrize("path", CHAPTERS + SOLUTIONS, ids=_ids(CHAPTERS + SOLUTIONS))
def test_committed_with_outputs_and_imports_first(path):
    notebook = _read(path)
    code = [c for c in notebook.cells if c.cell_type == "code" and c.source.strip()]
    assert code and all(c.execution_count is not None for c in code), "run it and save outputs"
    assert "import labkit as lk" in code[0].source, "imports belong in the first code cell"
    errors = [c.execution_count for c in code
              if any(o.output_type == "error" for o in c.outputs)]
    assert not errors, f"cells {errors} stored an error"


@pytest.mark.parametrize("path", CHAPTERS + SOLUTIONS, ids=_ids(CHAPTERS + SOLUTIONS))
def test_every_lesson_asserts(path):
    notebook = _read(path)
    asserting = sum("assert " in c.source or "lk.check(" in c.source
                    for c in notebook.cells if c.cell_type == "code")
    assert asserting >= 3


def _exercise_of(chapter: pathlib.Path) -> str:
    """The exercise notebook of a chapter: same two-digit number (grading reads it)."""
    (exercise,) = (ROOT / "exercises").glob(f"{chapter.name[:2]}_*_exercises.ipynb")
    return f"../exercises/{exercise.name}"


@pytest.mark.parametrize("path", CHAPTERS, ids=_ids(CHAPTERS))
def test_chapter_ends_with_a_recap_linking_its_exercises(path):
    notebook = _read(path)
    tail = "\n".join(c.source for c in notebook.cells[-3:] if c.cell_type == "markdown")
    assert "recap" in tail.lower()
    exercise = _exercise_of(path)
    assert exercise in tail, f"link to {exercise}"


@pytest.mark.parametrize("path", CHAPTERS[:-1], ids=_ids(CHAPTERS[:-1]))
def test_chapter_ends_with_a_link_to_the_next_one(path):
    notebook = _read(path)
    tail = "\n".join(c.source for c in notebook.cells[-3:] if c.cell_type == "markdown")
    following = CHAPTERS[CHAPTERS.index(path) + 1].name
    assert f"]({following})" in tail, f"link to the next chapter, {following}"


@pytest.mark.parametrize("path", ALL, ids=_ids(ALL))
def test_relative_links_point_at_files_that_exist(path):
    notebook = _read(path)
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        for target in re.findall(r"\]\(([^)#\s]+\.(?:ipynb|py|md))\)", cell.source):
            if "://" not in target:
                assert (path.parent / target).resolve().exists(), f"broken link {target}"


@pytest.mark.parametrize("path", CHAPTERS + SOLUTIONS, ids=_ids(CHAPTERS + SOLUTIONS))
def test_outputs_show_no_ports_or_temporary_paths(path):
    notebook = _read(path)
    for cell in notebook.cells:
        if cell.cell_type != "code" or "NBVAL_IGNORE_OUTPUT" in cell.source:
            continue
        for output in cell.outputs:
            text = output.get("text", "") + output.get("data", {}).get("text/plain", "")
            assert not re.search(r"127\.0\.0\.1:\d+", text), f"a port in: {text[:80]}"
            assert "/tmp/" not in text


INDEX_LINK = "](../README.md#chapters)"


@pytest.mark.parametrize("path", ALL, ids=_ids(ALL))
def test_the_course_index_is_one_click_away(path):
    """The title cell links to the README's chapter table (a learner's "where am I?")."""
    title = _read(path).cells[0].source
    assert "[Course index" + INDEX_LINK in title, (
        "add '[Course index](../README.md#chapters)' under the title")


def test_the_course_index_anchor_exists_and_lists_every_chapter():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.search(r"^#+ Chapters$", readme, re.M), "the #chapters anchor is a heading"
    table = readme.split("Chapters\n", 1)[1].strip().split("\n\n", 1)[0]
    for chapter in CHAPTERS:
        row = next((line for line in table.splitlines()
                    if f"chapters/{chapter.name}" in line), None)
        assert row is not None, f"{chapter.name} is missing from the chapter table"
        assert re.search(r"\|\s*\d+ min\s*\|", row), f"{chapter.name} has no time"


def test_the_readme_pictures_exist():
    """The README shows what learners see; tests/course/test_lab_first_hour.py takes them."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", readme)
    assert {"chapters/img/topology.png", "chapters/img/load_test_fault.png",
            "chapters/img/check_verdict.png"} <= set(pictures)
    for picture in pictures:
        assert (ROOT / picture).stat().st_size > 1000, f"{picture} is missing or empty"
