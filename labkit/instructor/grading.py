"""``labkit grade``: run submitted notebooks and score their sealed check records.

For each submission the grader

1. reads it (only reads: the submission is never written to) and refuses, with a
   reason, what is missing, empty, over :data:`MAX_NOTEBOOK_BYTES`, not UTF-8, not
   JSON, or not nbformat 4;
2. finds its chapter: from its name (``NN_*.ipynb``), else its ``labkit.chapter``
   metadata (``labkit release`` writes it), else the ids of the checks its code calls
   (``--chapter NN`` overrides all three);
3. runs it top to bottom in private scratch folders with a kernel that holds a fresh
   secret key (:mod:`labkit.instructor.runner`). Each ``lk.check`` runs its question
   twice, the visible check and then a hidden re-check with a fresh seed and extra
   probes, and seals the record with the key (:mod:`labkit.checks.seal`);
4. reads back the records whose seal is valid for this run. The record with the
   highest sequence number of each question wins: what counts is the final state of
   a top-to-bottom run. A record with a missing or wrong seal (displayed by hand,
   copied from another notebook or an earlier run) is ignored and reported.

Which questions a notebook must answer, and what each is worth, come from the
question registry, never from the notebook: a deleted check cell scores 0 for its
question, and the score of a question is its hidden re-check.

A submission that cannot be run, times out, kills its kernel or floods its output
gets a row with an ``error`` and 0 points; the grader carries on.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import nbformat

from ..checks.registry import Question, questions_for
from ..checks.result import MIME_TYPE, CheckResult, stable_text
from ..checks.seal import verify
from ..errors import GradeError, LabkitError
from .runner import MAX_OUTPUT_BYTES, new_key, run_notebook

DEFAULT_TIMEOUT = 600.0  # seconds for a whole notebook
_MB = 1024 * 1024
MAX_NOTEBOOK_BYTES = 20 * _MB  # larger submissions are refused unread
KERNEL_START_ATTEMPTS = 3  # a kernel that dies before the first cell is started again
NO_CHECK = "no check ran for this question"
_CHECK_CALL = re.compile(r"""\bcheck\(\s*(?:question_id\s*=\s*)?['"](\d{2})\.[a-z][a-z0-9_]*['"]""")
# Code that reaches into the kit's internals could forge a sealed record (see seal.py).
# A renamed lookup evades this scan; the guard (labkit.checks.guard) watches at run time.
_INTERNALS = re.compile(r"labkit\.(?:checks|questions|grad\w*)|\blk\.checks\b|vnd\.labkit"
                        r"|LABKIT_GRADE|\b_?seal\b|__closure__|_REGISTRY|_SEALED"
                        r"|\bgc\.get_\w+|_getframe|_current_frames|settrace|setprofile"
                        r"|\bctypes\b|cell_contents|__code__|\b(?:f_back|f_locals|gi_frame"
                        r"|tb_frame)\b|/proc/")


@dataclass
class CheckRow:
    """One question of one notebook: did it pass, for how many points, and why."""

    id: str
    passed: bool
    points: int
    max_points: int
    message: str


@dataclass
class NotebookGrade:
    """The grade of one notebook. ``error`` says why it could not be graded.

    ``learner`` is the learner id (from the folder or file name), ``chapter`` the
    chapter it was graded as, ``notes`` what an instructor should know that did not
    change the score (forged records, processes left running, kit internals used).
    """

    notebook: str
    score: int
    max_score: int
    checks: list[CheckRow] = field(default_factory=list)
    error: str | None = None
    learner: str = ""
    chapter: str | None = None
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        extra = f" error={self.error!r}" if self.error else ""
        return f"<NotebookGrade {self.notebook} {self.score}/{self.max_score}{extra}>"

    def to_json(self) -> dict:
        """The JSON form: notebook, score, max_score, checks, error, learner, chapter, notes."""
        return {"notebook": self.notebook, "score": self.score,
                "max_score": self.max_score,
                "checks": [asdict(row) for row in self.checks], "error": self.error,
                "learner": self.learner, "chapter": self.chapter, "notes": self.notes}

    @classmethod
    def from_json(cls, data: dict) -> NotebookGrade:
        """Rebuild a grade from :meth:`to_json` (used to merge shards)."""
        try:
            return cls(data["notebook"], data["score"], data["max_score"],
                       [CheckRow(**row) for row in data["checks"]], data["error"],
                       data.get("learner", ""), data.get("chapter"),
                       list(data.get("notes", [])))
        except (KeyError, TypeError) as exc:
            raise GradeError(f"Not a graded notebook: {exc}.") from None


@dataclass(frozen=True)
class Submission:
    """A notebook to grade, how it is named in reports, and whose it is."""

    path: Path
    learner: str

    @property
    def label(self) -> str:
        return str(self.path)


# -- finding submissions --------------------------------------------------------------

def learner_of(path: Path, root: Path | None = None) -> str:
    """The learner id of a submission, from its folder or its file name.

    * ``submissions/<learner>/03_x.ipynb`` (graded as ``submissions/``): ``<learner>``;
    * ``<learner>_03_x.ipynb``, ``<learner>-03_x.ipynb`` or ``<learner>_03.ipynb``:
      ``<learner>``;
    * ``<learner>/03_x.ipynb`` (the file, or its folder, graded): ``<learner>``;
    * otherwise the file name without ``.ipynb``.
    """
    if root is not None:
        parts = path.relative_to(root).parts
        if len(parts) > 1:
            return parts[0]
    match = re.match(r"(.+?)[-_ .]+\d{2}(?:_|$)", path.stem)
    if match:
        return match.group(1)
    if re.match(r"\d{2}_", path.name):
        folder = path.absolute().parent.name
        if folder:
            return folder
    return path.stem


def find_submissions(paths: Iterable[str | Path]) -> list[Submission]:
    """Expand folders into the notebooks they hold; keep missing paths (graded as errors).

    The order is the order of ``paths``, sorted within each folder: every shard of a
    class computes the same list.
    """
    found: list[Submission] = []
    paths = list(paths)
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(Submission(p, learner_of(p, path)) for p in sorted(
                p for p in path.rglob("*.ipynb")
                if p.is_file() and not any(part.startswith(".") for part in
                                           p.relative_to(path).parts)))
        else:
            found.append(Submission(path, learner_of(path)))
    if not found:
        names = ", ".join(map(str, paths)) or "(nothing)"
        raise GradeError(f"No notebooks found in {names}. Pass .ipynb files or folders"
                         " that contain them.")
    return found


def find_notebooks(paths: Iterable[str | Path]) -> list[Path]:
    """The notebook paths :func:`find_submissions` finds."""
    return [submission.path for submission in find_submissions(paths)]


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> ``(2, 4)``: shard 2 of 4 (counted from 1)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise GradeError(f"A shard is I/N with 1 <= I <= N (e.g. 2/4), not {text!r}.")
    return int(match.group(1)), int(match.group(2))


def shard_positions(count: int, shard: tuple[int, int] | None) -> list[int]:
    """Which of ``count`` submissions shard ``(I, N)`` grades: every N-th from I-1."""
    if shard is None:
        return list(range(count))
    index, total = shard
    return list(range(index - 1, count, total))


# -- chapters --------------------------------------------------------------------------

def _known_chapter(chapter: str) -> bool:
    try:
        return bool(questions_for(chapter))
    except LabkitError:  # the chapter exists but its questions are broken: say so later
        return True


def chapter_of(path: Path, notebook: nbformat.NotebookNode | None = None) -> str | None:
    """The chapter ``NN`` of a submission: from its name, its metadata, or its checks.

    1. the file name: ``03_*.ipynb``, ``<learner>_03_*.ipynb`` or ``<learner>_03.ipynb``;
    2. the ``labkit.chapter`` metadata that ``labkit release`` writes;
    3. the chapter of most question ids in its ``lk.check("NN.name", ...)`` calls.

    A step only counts when that chapter has graded questions.
    """
    match = re.match(r"(\d{2})_", path.name) or re.search(
        r"(?<!\d)(\d{2})(?=_[A-Za-z]|\.ipynb$)", path.name)
    if match and _known_chapter(match.group(1)):
        return match.group(1)
    if notebook is None:
        return None
    chapter = notebook.metadata.get("labkit", {}).get("chapter")
    if isinstance(chapter, str) and re.fullmatch(r"\d{2}", chapter) and _known_chapter(
            chapter):
        return chapter
    counts = Counter(hit for cell in notebook.cells if cell.cell_type == "code"
                     for hit in _CHECK_CALL.findall(cell.source))
    ranked = [(n, ch) for ch, n in counts.most_common() if _known_chapter(ch)]
    if ranked and (len(ranked) == 1 or ranked[0][0] > ranked[1][0]):
        return ranked[0][1]
    return None


# -- reading a submission --------------------------------------------------------------

def read_submission(path: Path, *, max_bytes: int = MAX_NOTEBOOK_BYTES
                    ) -> tuple[bytes, nbformat.NotebookNode] | str:
    """The bytes and notebook of ``path``, or why it cannot be graded (a string)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return "file not found"
    except OSError as exc:
        return f"cannot read the file ({exc.strerror})"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_size > max_bytes:
        return (f"the file is {info.st_size / _MB:.1f} MB, over the"
                f" {max_bytes / _MB:g} MB limit for a submission (clear its outputs:"
                " Edit > Clear Outputs of All Cells, save, and submit again)")
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        return f"cannot read the file ({exc.strerror})"
    if len(data) > max_bytes:
        return f"the file is over the {max_bytes / _MB:g} MB limit for a submission"
    if not data.strip():
        return "the file is empty"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "not a readable notebook (the file is not UTF-8 text)"
    try:
        raw = json.loads(text)
    except ValueError:
        return "not a readable notebook (the file is not valid JSON)"
    if not isinstance(raw, dict) or "cells" not in raw and "worksheets" not in raw:
        return "not a readable notebook (JSON, but not a Jupyter notebook)"
    version = raw.get("nbformat")
    if version != 4:
        return (f"a notebook in format {version!r}: only nbformat 4 is graded (open it"
                " in Jupyter, save it, and submit the saved file)")
    try:
        notebook = nbformat.reads(text, as_version=4)
        nbformat.validate(notebook)
    except Exception as exc:  # nbformat raises several kinds for broken files
        first_line = (str(exc).strip().splitlines() or [""])[0][:100]
        return f"not a readable notebook ({type(exc).__name__}: {first_line})"
    return data, notebook


# -- scoring -----------------------------------------------------------------------------

def _records(notebook: nbformat.NotebookNode) -> Iterable[object]:
    for cell in notebook.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") in ("display_data", "execute_result",
                                             "update_display_data"):
                data = output.get("data", {})
                if MIME_TYPE in data:
                    yield data[MIME_TYPE]


def collect_results(notebook: nbformat.NotebookNode, *, key: bytes | None = None,
                    run: str | None = None, problems: list[str] | None = None,
                    require_summary: bool = False
                    ) -> tuple[dict[str, CheckResult], list[str]]:
    """The check records of ``notebook`` by question id, and the ids of rejected ones.

    With a ``key``, only records sealed with it during ``run`` count, and the one with
    the highest sequence number wins; every other record is rejected. A sealed record
    that says the kit was tampered with (see :mod:`labkit.checks.guard`), or a
    question with sealed attempts missing from the notebook (an output captured or
    cleared, e.g. to retry a check until it passes and show only the pass), counts
    as a failure, and ``problems`` gets a note about it. Without a key (a learner's
    own view of their progress) every record counts, the last one wins.
    """
    results: dict[str, tuple[int, CheckResult, dict]] = {}
    attempts: dict[str, set[int]] = {}
    rejected: list[str] = []
    summary: dict | None = None
    last_seq = 0
    for position, record in enumerate(_records(notebook)):
        if isinstance(record, dict) and record.get("summary") is True:
            if key is not None and verify(record, key=key, run=run or ""):
                summary = record
            continue
        if key is not None and isinstance(record, dict) and isinstance(
                record.get("seq"), int) and verify(record, key=key, run=run or ""):
            last_seq = max(last_seq, record["seq"])
        result = CheckResult.from_json(record)
        if key is not None and not verify(record, key=key, run=run or ""):
            name = result.id if result is not None else (
                record.get("id") if isinstance(record, dict) else None)
            rejected.append(name if isinstance(name, str) else "an unknown question")
            continue
        if result is None:
            continue
        order = record["seq"] if key is not None else position
        if key is not None and isinstance(record.get("attempt"), int):
            attempts.setdefault(result.id, set()).add(record["attempt"])
        if result.id not in results or order > results[result.id][0]:
            results[result.id] = (order, result, record)
    closing_missing = require_summary and (summary is None or summary["seq"] <= last_seq)
    if require_summary and problems is not None:
        if closing_missing:
            problems.append("the grader's closing record is missing or not the last one"
                            " (was display patched?): no check counts")
        elif summary and summary.get("tampered"):
            what = ", ".join(map(str, summary["tampered"]))[:300]
            problems.append(f"the kit was changed or probed during the run ({what})")
    ran = summary.get("attempts", {}) if summary and not closing_missing else {}
    found: dict[str, CheckResult] = {}
    for qid, (_, result, record) in results.items():
        tampered = record.get("tampered") if key is not None else None
        shown = attempts.get(qid, set())
        total = max(shown, default=0)
        if isinstance(ran.get(qid), int):  # later attempts hidden count as missing too
            total = max(total, ran[qid])
        if closing_missing:
            result = CheckResult(qid, False, 0, result.max_points,
                                 "not counted: the grader's closing record is missing")
            found[qid] = result
            continue
        if tampered:
            what = ", ".join(map(str, tampered))[:300]
            result = CheckResult(qid, False, 0, result.max_points,
                                 f"not counted: the kit was changed or probed before this"
                                 f" check ({what})")
            if problems is not None:
                problems.append(f"{qid}: the kit was changed or probed before its check"
                                f" ({what})")
        elif shown and len(shown) < total:
            hidden = total - len(shown)
            result = CheckResult(qid, False, 0, result.max_points,
                                 f"not counted: {hidden} earlier check(s) of {qid} ran but"
                                 " their records are not in the notebook (captured or"
                                 " cleared output)")
            if problems is not None:
                problems.append(f"{qid}: {hidden} check record(s) hidden from the notebook")
        found[qid] = result
    return found, rejected


def score(label: str, expected: list[Question], found: dict[str, CheckResult],
          error: str | None = None, *, rejected: Iterable[str] = ()) -> NotebookGrade:
    """Grade ``found`` results against the ``expected`` questions of the registry.

    Points come from the registry: a passed check earns its question's points, a
    failed or missing one earns 0. With an ``error`` every question earns 0.
    """
    rejected = set(rejected)
    rows = []
    for question in expected:
        result = found.get(question.id)
        if error is not None:
            rows.append(CheckRow(question.id, False, 0, question.points,
                                 f"not graded: {error}"))
            continue
        if result is None:
            message = NO_CHECK
            if question.id in rejected:
                message = f"forged or copied record for {question.id} ignored; {NO_CHECK}"
            rows.append(CheckRow(question.id, False, 0, question.points, message))
        else:
            message = result.message
            if question.id in rejected:
                message += f" (a forged or copied record for {question.id} was ignored)"
            rows.append(CheckRow(question.id, result.passed,
                                 question.points if result.passed else 0,
                                 question.points, message))
    notes = [f"forged or copied record for {qid}" for qid in sorted(rejected)]
    return NotebookGrade(label, sum(row.points for row in rows),
                         sum(q.points for q in expected), rows, error, notes=notes)


_KIT_ROOT = Path(__file__).resolve().parents[1]  # the labkit/ that kernels import


def kit_digest(root: Path = _KIT_ROOT) -> str:
    """A digest of every file of the kit on disk, compiled caches included.

    A notebook runs with the grader's rights and could rewrite the kit (say,
    ``labkit/checks/seal.py``) so that the kernels of notebooks graded after it, its
    author's other submissions among them, seal whatever they like. The grader
    compares this digest before and after each notebook and stops trusting the run
    when it changes.
    """
    import compileall

    # Compile the kit first: a kernel that writes a missing cache is not an attack.
    compileall.compile_dir(str(root), quiet=2, workers=1)
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        try:
            if path.is_file():
                digest.update(str(path.relative_to(root)).encode("utf-8", "replace"))
                digest.update(path.read_bytes())
        except OSError:
            digest.update(b"unreadable")
    return digest.hexdigest()


KIT_CHANGED = ("the kit's own files changed on disk while this notebook ran: nothing"
               " graded from now on can be trusted (grade from a read-only copy of the kit)")


def _expected(chapter: str | None) -> list[Question]:
    try:
        return questions_for(chapter) if chapter else []
    except LabkitError:
        return []


def grade_notebook(submission: Submission | str | Path, *,
                   timeout: float = DEFAULT_TIMEOUT, cell_timeout: float | None = None,
                   chapter: str | None = None, max_bytes: int = MAX_NOTEBOOK_BYTES,
                   max_output: int = MAX_OUTPUT_BYTES) -> NotebookGrade:
    """Grade one submission. Never raises for a bad submission: see ``error``."""
    if not isinstance(submission, Submission):
        submission = Submission(Path(submission), learner_of(Path(submission)))
    path = submission.path

    def finish(grade: NotebookGrade, detected: str | None) -> NotebookGrade:
        grade.learner, grade.chapter = submission.learner, detected
        return grade

    read = read_submission(path, max_bytes=max_bytes)
    if isinstance(read, str):
        detected = chapter or chapter_of(path)
        return finish(score(submission.label, _expected(detected), {}, stable_text(read)),
                      detected)
    data, notebook = read
    detected = chapter or chapter_of(path, notebook)
    if detected is None:
        return finish(NotebookGrade(
            submission.label, 0, 0, [], "cannot tell which chapter this notebook belongs"
            " to (no NN_ in its name, no labkit metadata, no lk.check calls): grade it"
            " with --chapter NN"), None)
    try:
        expected = questions_for(detected)
    except LabkitError as exc:
        return finish(NotebookGrade(submission.label, 0, 0, [], str(exc)), detected)
    if not expected:
        return finish(NotebookGrade(submission.label, 0, 0, [],
                                    f"chapter {detected} has no graded questions"), detected)
    kit_before = kit_digest()
    for _attempt in range(KERNEL_START_ATTEMPTS):
        key, run = new_key()  # a fresh key for every run, retries included
        outcome = run_notebook(data, key=key, run=run, timeout=timeout,
                               cell_timeout=cell_timeout or timeout, max_output=max_output)
        if not outcome.kernel_failed_to_start:  # a busy machine can lose a kernel at start
            break
    if outcome.error is not None or outcome.executed is None:
        grade = score(submission.label, expected, {},
                      stable_text(outcome.error or "the notebook did not run"))
    else:
        problems: list[str] = []
        found, rejected = collect_results(outcome.executed, key=key, run=run,
                                          problems=problems, require_summary=True)
        grade = score(submission.label, expected, found, rejected=rejected)
        grade.notes.extend(problems)
    grade.notes.extend(outcome.notes)
    if kit_digest() != kit_before:  # with --jobs 2 it may be the notebook beside this one
        grade = score(submission.label, expected, {}, KIT_CHANGED)
        grade.notes.append(KIT_CHANGED)
    used = sorted({hit for cell in notebook.cells if cell.cell_type == "code"
                   for hit in _INTERNALS.findall(cell.source)})
    if used:
        grade.notes.append(f"its code reaches into the kit's internals ({', '.join(used)}):"
                           " read it before trusting the score")
    return finish(grade, detected)


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, n: int) -> None:
        pass


def _progress_bar(total: int, *, shown: bool):  # noqa: ANN202
    """tqdm on stderr (it shows the time left), or nothing at all."""
    if not shown:
        return _NoBar()  # not even tqdm's monitor thread
    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no background thread that outlives the grading
    return tqdm(total=total, unit="notebook", leave=False, dynamic_ncols=True)


def grade(paths: Iterable[str | Path] | list[Submission], *,
          timeout: float = DEFAULT_TIMEOUT, cell_timeout: float | None = None,
          jobs: int = 1, chapter: str | None = None,
          shard: tuple[int, int] | None = None, progress: bool = False
          ) -> list[NotebookGrade]:
    """Grade every notebook in ``paths`` (files or folders), ``jobs`` at a time.

    Args:
        chapter: grade every notebook as this chapter (``"03"``), whatever its name.
        shard: ``(I, N)``: grade only shard I of N (see :func:`shard_positions`).
        progress: show a progress bar with the time left (on stderr).

    Returns one :class:`NotebookGrade` per notebook, in the order found (sorted
    within a folder), whatever ``jobs`` is.
    """
    if not isinstance(jobs, int) or jobs < 1:
        raise GradeError(f"jobs must be a whole number >= 1, not {jobs!r}.")
    if not timeout or timeout <= 0:
        raise GradeError(f"timeout must be a positive number of seconds, not {timeout!r}.")
    if chapter is not None and not re.fullmatch(r"\d{2}", str(chapter)):
        raise GradeError(f"A chapter is two digits such as 03, not {chapter!r}.")
    if chapter is not None and not _expected(chapter):
        raise GradeError(f"Chapter {chapter} has no graded questions.")
    paths = list(paths)
    submissions = (paths if paths and all(isinstance(p, Submission) for p in paths)
                   else find_submissions(paths))
    chosen = [submissions[i] for i in shard_positions(len(submissions), shard)]
    grades: list[NotebookGrade | None] = [None] * len(chosen)
    with ThreadPoolExecutor(max_workers=jobs) as pool, _progress_bar(
            len(chosen), shown=progress) as bar:
        futures = {pool.submit(grade_notebook, submission, timeout=timeout,
                               cell_timeout=cell_timeout, chapter=chapter): index
                   for index, submission in enumerate(chosen)}
        for future in as_completed(futures):
            grades[futures[future]] = future.result()
            bar.update(1)
    return grades  # type: ignore[return-value]
