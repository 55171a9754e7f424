"""``labkit progress``: which questions of which chapters a learner has passed.

It reads the check results that Jupyter saved in the learner's own exercise
notebooks (the outputs of their ``lk.check`` cells), runs nothing and needs no
instructor. The last result of each question in a notebook counts, as in grading::

    $ labkit progress exercises/
    chapter 00  00_two_ways_to_serve_exercises.ipynb  2 of 2 passed
      ✔ 00.after_revive
      ✔ 00.remember
    ...
    3 of 26 questions passed (chapters done: 00)

This is a mirror for the learner, not a grade: saved outputs can be edited, and
only ``labkit grade`` (which re-runs everything, with hidden checks) is trusted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..checks.registry import Question, all_questions
from ..errors import GradeError
from .grading import chapter_of, collect_results, read_submission

PASSED, FAILED, NOT_RUN = "passed", "failed", "not checked yet"
_MARKS = {PASSED: "✔", FAILED: "✘", NOT_RUN: "·"}


@dataclass
class ChapterProgress:
    """The questions of one chapter and where the learner stands on each."""

    chapter: str
    notebook: str | None
    status: dict[str, str] = field(default_factory=dict)  # question id -> PASSED...
    error: str | None = None

    @property
    def passed(self) -> int:
        return sum(state == PASSED for state in self.status.values())

    def __repr__(self) -> str:
        return (f"<ChapterProgress {self.chapter} {self.passed}/{len(self.status)}"
                f"{' error' if self.error else ''}>")


def progress(folder: str | Path = "exercises") -> list[ChapterProgress]:
    """Where the learner stands in every chapter, from the notebooks in ``folder``.

    A chapter without a notebook in ``folder`` shows every question as not checked;
    a notebook that cannot be read shows why.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise GradeError(f"There is no folder {folder}: give the folder that holds your"
                         " exercise notebooks (labkit progress exercises/).")
    by_chapter: dict[str, list[Question]] = {}
    for question in all_questions():
        by_chapter.setdefault(question.chapter, []).append(question)
    found: dict[str, ChapterProgress] = {}
    broken: list[ChapterProgress] = []
    for path in sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith(".")):
        read = read_submission(path)
        notebook = None if isinstance(read, str) else read[1]
        chapter = chapter_of(path, notebook)
        if isinstance(read, str) or chapter not in by_chapter:
            reason = read if isinstance(read, str) else "not an exercise notebook of a chapter"
            broken.append(ChapterProgress(chapter or "??", path.name, {}, reason))
            continue
        results, _ = collect_results(notebook)
        status = {q.id: NOT_RUN if q.id not in results else
                  PASSED if results[q.id].passed else FAILED for q in by_chapter[chapter]}
        entry = ChapterProgress(chapter, path.name, status)
        if chapter not in found or entry.passed > found[chapter].passed:
            found[chapter] = entry  # two copies of a chapter: show the better one
    rows = [found.get(chapter) or ChapterProgress(
                chapter, None, {q.id: NOT_RUN for q in questions})
            for chapter, questions in sorted(by_chapter.items())]
    return rows + broken


def format_progress(rows: list[ChapterProgress]) -> str:
    """The text ``labkit progress`` prints."""
    lines = []
    for row in rows:
        if row.error:
            lines.append(f"{row.notebook}: cannot read it: {row.error}")
            continue
        where = row.notebook or "(no notebook yet)"
        lines.append(f"chapter {row.chapter}  {where}  {row.passed} of {len(row.status)}"
                     " passed")
        lines.extend(f"  {_MARKS[state]} {qid}" + ("" if state == PASSED else f"  ({state})")
                     for qid, state in row.status.items())
    graded = [row for row in rows if not row.error]
    total = sum(len(row.status) for row in graded)
    passed = sum(row.passed for row in graded)
    done = [row.chapter for row in graded if row.status and row.passed == len(row.status)]
    lines.append(f"{passed} of {total} questions passed"
                 f" (chapters done: {', '.join(done) or 'none yet'})")
    lines.append("Run each exercise notebook and save it: this reads its saved check"
                 " results.")
    return "\n".join(lines)
