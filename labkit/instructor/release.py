"""``labkit release``: make the student notebooks (exercises/) from the solutions.

The instructor edits only ``solutions/NN_*.ipynb``. In their code cells the part a
learner must write sits between two comment lines, as in nbgrader::

    def make_app():
        ### BEGIN SOLUTION
        app = Flask(__name__)
        ...
        ### END SOLUTION

Release replaces each region with a stub at the indentation of its BEGIN line::

    def make_app():
        # YOUR CODE HERE
        raise NotImplementedError("Replace this line with your solution.")

clears every output and execution count, keeps only the metadata a notebook needs,
and writes ``exercises/NN_*.ipynb`` deterministically (nbformat, sorted keys), so
that a test can compare ``exercises/`` with what release would write.

Only code cells may hold solution regions; a marker in a markdown cell is an error
(it would otherwise leak the answer as a heading).

Release records the SHA-256 of each file it writes in
``exercises/.release-manifest.json``. An exercise notebook whose bytes differ from
that record was edited by a person; release refuses to overwrite it unless
``force=True`` (``labkit release --force``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from ..errors import ReleaseError

MANIFEST = ".release-manifest.json"
STUB = ("# YOUR CODE HERE", 'raise NotImplementedError("Replace this line with your solution.")')
KEEP_CELL_METADATA = ("deletable", "editable", "slideshow", "tags")
KEEP_NOTEBOOK_METADATA = ("kernelspec", "language_info")

_MARKER = re.compile(r"^(?P<indent>[ \t]*)#+.*\b(?P<kind>BEGIN|END) SOLUTION\b")


def strip_solutions(source: str, *, where: str) -> str:
    """Replace every solution region of one code cell's ``source`` by a stub.

    ``where`` names the cell in error messages (e.g. "solutions/00_x.ipynb, cell 4").
    Raises ReleaseError for an END without BEGIN, a BEGIN inside a region, or a
    BEGIN without END.
    """
    out: list[str] = []
    begin_line: int | None = None
    for number, line in enumerate(source.split("\n"), start=1):
        marker = _MARKER.match(line)
        if marker is None:
            if begin_line is None:
                out.append(line)
            continue
        if marker["kind"] == "BEGIN":
            if begin_line is not None:
                raise ReleaseError(
                    f"{where}: '### BEGIN SOLUTION' on line {number} is inside the region"
                    f" opened on line {begin_line}. Regions cannot nest: add '### END"
                    " SOLUTION' before it, or remove it.")
            begin_line = number
            out.extend(marker["indent"] + stub_line for stub_line in STUB)
        else:
            if begin_line is None:
                raise ReleaseError(
                    f"{where}: '### END SOLUTION' on line {number} has no '### BEGIN"
                    " SOLUTION' before it. Add the BEGIN marker where the solution starts.")
            begin_line = None
    if begin_line is not None:
        raise ReleaseError(
            f"{where}: '### BEGIN SOLUTION' on line {begin_line} is never closed. Add a"
            " '### END SOLUTION' comment line where the solution ends.")
    return "\n".join(out)


def exercise_notebook(solution: Path) -> nbformat.NotebookNode:
    """The exercise notebook that release makes from ``solution``, in memory."""
    solution = Path(solution)
    try:
        source = nbformat.read(solution, as_version=4)
    except (OSError, ValueError) as exc:
        raise ReleaseError(f"Cannot read {solution}: {exc}. Is it a saved notebook?"
                           ) from exc
    notebook = nbformat.v4.new_notebook()
    notebook.nbformat_minor = source.nbformat_minor
    notebook.metadata = {key: source.metadata[key] for key in KEEP_NOTEBOOK_METADATA
                         if key in source.metadata}
    chapter = re.match(r"\d{2}", solution.name)
    notebook.metadata["labkit"] = {"chapter": chapter.group(0) if chapter else None,
                                   "released_from": f"solutions/{solution.name}"}
    for index, cell in enumerate(source.cells):
        where = f"{solution}, cell {index}"
        metadata = {key: cell.metadata[key] for key in KEEP_CELL_METADATA
                    if key in cell.metadata}
        if cell.cell_type == "code":
            new = nbformat.v4.new_code_cell(strip_solutions(cell.source, where=where),
                                            metadata=metadata)
        elif cell.cell_type == "markdown":
            if any(_MARKER.match(line) for line in cell.source.split("\n")):
                raise ReleaseError(
                    f"{where}: solution markers are only allowed in code cells, and this"
                    " is a markdown cell. Move the solution into a code cell.")
            new = nbformat.v4.new_markdown_cell(cell.source, metadata=metadata)
            if "attachments" in cell:
                new.attachments = cell.attachments
        else:
            new = nbformat.v4.new_raw_cell(cell.source, metadata=metadata)
        if "id" in cell:
            new.id = cell.id
        else:
            new.pop("id", None)
        notebook.cells.append(new)
    nbformat.validate(notebook)
    return notebook


def render_exercise(solution: Path) -> str:
    """The exact text release writes for ``solution`` (deterministic JSON)."""
    text = nbformat.writes(exercise_notebook(solution))
    return text if text.endswith("\n") else text + "\n"


def solution_notebooks(solutions: Path) -> list[Path]:
    """The notebooks release works from: ``solutions/NN_*.ipynb``, sorted."""
    return sorted(path for path in Path(solutions).glob("[0-9][0-9]_*.ipynb")
                  if path.is_file())


@dataclass
class ReleaseReport:
    """What a release did: the exercise files it wrote and the ones already current."""

    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"wrote     {path}" for path in self.written]
        lines += [f"unchanged {path}" for path in self.unchanged]
        return "\n".join(lines) or "nothing to release"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_manifest(exercises: Path) -> dict[str, str]:
    path = exercises / MANIFEST
    if not path.exists():
        return {}
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
        return {str(name): str(digest) for name, digest in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}  # a damaged record: every existing exercise counts as edited


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def release(*, solutions: Path | str = "solutions", exercises: Path | str = "exercises",
            force: bool = False) -> ReleaseReport:
    """Regenerate ``exercises`` from ``solutions``.

    Args:
        solutions: folder of instructor notebooks ``NN_*.ipynb``.
        exercises: folder to write the student notebooks to (created if missing).
        force: overwrite exercise notebooks even if a person edited them.

    Nothing is written when any notebook is malformed or any exercise was edited
    (without ``force``): the ReleaseError says which file and what to do.
    """
    solutions, exercises = Path(solutions), Path(exercises)
    if not solutions.is_dir():
        raise ReleaseError(
            f"There is no folder {solutions}. Run `labkit release` from the course"
            " folder (the one that holds solutions/ and exercises/).")
    sources = solution_notebooks(solutions)
    if not sources:
        raise ReleaseError(f"{solutions} holds no notebooks named NN_*.ipynb; nothing to"
                           " release.")
    planned = {exercises / src.name: render_exercise(src).encode("utf-8")
               for src in sources}  # render all first: a malformed one stops everything
    manifest = _read_manifest(exercises)
    edited = []
    for target, data in planned.items():
        if not target.exists() or force:
            continue
        current = target.read_bytes()
        if current != data and manifest.get(target.name) != _sha256(current):
            edited.append(target)
    if edited:
        names = ", ".join(str(path) for path in edited)
        raise ReleaseError(
            f"{names} changed since the last release (a person edited it). Put the"
            f" change into {solutions}/ instead, or run `labkit release --force` to"
            " overwrite it.")
    exercises.mkdir(parents=True, exist_ok=True)
    report = ReleaseReport()
    for target, data in planned.items():
        if target.exists() and target.read_bytes() == data:
            report.unchanged.append(target)
        else:
            _write_atomic(target, data)
            report.written.append(target)
        manifest[target.name] = _sha256(data)
    record = {"note": "Written by `labkit release`: the SHA-256 of each exercise it"
                      " generated. Do not edit.",
              "files": dict(sorted(manifest.items()))}
    _write_atomic(exercises / MANIFEST,
                  (json.dumps(record, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    return report


def out_of_sync(*, solutions: Path | str = "solutions",
                exercises: Path | str = "exercises") -> list[str]:
    """Why ``exercises`` differs from what release would write ([] when in sync)."""
    problems = []
    for source in solution_notebooks(Path(solutions)):
        target = Path(exercises) / source.name
        if not target.exists():
            problems.append(f"{target} is missing: run `labkit release`.")
        elif target.read_bytes() != render_exercise(source).encode("utf-8"):
            problems.append(f"{target} differs from what `labkit release` writes for"
                            f" {source}: run `labkit release`.")
    return problems
