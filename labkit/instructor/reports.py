"""What ``labkit grade`` writes: the table, a summary, CSV/JSON/HTML, feedback, shards.

Every report is a pure function of the list of grades, so the reports that
``labkit grade-merge`` writes from shards are byte for byte the ones a single run
writes::

    grades = grading.grade(["submissions/"])
    print(format_table(grades)); print(format_summary(grades))
    write_report(grades, "scores.csv")          # or .json, .html
    write_feedback(grades, "feedback/")         # one page per submission
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from pathlib import Path

from ..checks.registry import get_question
from ..errors import GradeError, LabkitError
from .grading import NotebookGrade

REPORT_FORMATS = (".csv", ".json", ".html")
PART_FORMAT = "labkit-grade-part"
_STYLE = ("body{font-family:sans-serif;margin:2em;max-width:60em}table{border-collapse:"
          "collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
          ".pass{color:#1a7f37}.fail{color:#cf222e}.err{color:#9a6700}h2{font-size:1em}")


def question_ids(grades: list[NotebookGrade]) -> list[str]:
    """Every question id that appears in ``grades``, sorted."""
    return sorted({row.id for grade in grades for row in grade.checks})


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _plain(text: object) -> str:
    """``text`` for a terminal: control characters (newlines, ANSI escapes, bidi
    overrides) from a file name or message become ``?``, so one row stays one line."""
    return _CONTROL.sub("?", str(text))


def _short(text: str, width: int = 72) -> str:
    text = _plain(text)
    return text if len(text) <= width else text[:width - 3] + "..."


def _cell(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text: a learner-controlled string that
    starts like a formula (``=``, ``+``, ``-``, ``@``, tab, CR) gets a leading ``'``
    (OWASP's advice against CSV injection). Numbers stay numbers."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _columns(header: list[str], lines: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header))]
    out = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
           for row in [header, *lines]]
    out.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(out)


def format_table(grades: list[NotebookGrade]) -> str:
    """A plain-text table: one line per notebook, points per question."""
    ids = question_ids(grades)
    lines = []
    for grade in grades:
        points = {row.id: f"{row.points}/{row.max_points}" for row in grade.checks}
        lines.append([_plain(grade.notebook), f"{grade.score}/{grade.max_score}",
                      *(points.get(qid, "-") for qid in ids), _short(grade.error or "")])
    return _columns(["notebook", "score", *ids, "error"], lines)


def format_summary(grades: list[NotebookGrade]) -> str:
    """Submissions, the mean score of each question, and the rows with errors."""
    ids = question_ids(grades)
    lines = []
    for qid in ids:
        rows = [row for grade in grades for row in grade.checks if row.id == qid]
        mean = sum(row.points for row in rows) / len(rows)
        lines.append([qid, str(len(rows)), f"{mean:.2f}", str(rows[0].max_points),
                      f"{sum(row.passed for row in rows)}/{len(rows)}"])
    errors = [grade for grade in grades if grade.error]
    noted = [grade for grade in grades if grade.notes]
    out = [f"{len(grades)} submission(s), {len(errors)} with errors,"
           f" {len(noted)} with notes"]
    if lines:
        out.append(_columns(["question", "graded", "mean", "of", "passed"], lines))
    if errors:
        out.append("rows with errors:")
        out.extend(f"  {_plain(grade.notebook)}: {_short(grade.error or '', 100)}"
                   for grade in errors)
    if noted:
        out.append("notes:")
        out.extend(f"  {_plain(grade.notebook)}: {_plain(note)}" for grade in noted
                   for note in grade.notes)
    return "\n".join(out)


def to_csv(grades: list[NotebookGrade]) -> str:
    """CSV for a gradebook: one row per submission, one column per question.

    Columns: learner, notebook, chapter, each question id (points, empty when the
    question is not in that submission's chapter), total, max_total, error, notes.
    """
    ids = question_ids(grades)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["learner", "notebook", "chapter", *ids, "total", "max_total", "error",
                     "notes"])
    for grade in grades:
        points = {row.id: row.points for row in grade.checks}
        writer.writerow([_cell(grade.learner), _cell(grade.notebook), grade.chapter or "",
                         *(points.get(qid, "") for qid in ids), grade.score,
                         grade.max_score, _cell(grade.error or ""),
                         _cell("; ".join(grade.notes))])
    return buffer.getvalue()


def to_json(grades: list[NotebookGrade]) -> str:
    """JSON: a list of {notebook, score, max_score, checks, error, learner, chapter, notes}."""
    return json.dumps([grade.to_json() for grade in grades], indent=2,
                      ensure_ascii=False) + "\n"


def to_html(grades: list[NotebookGrade]) -> str:
    """A self-contained HTML page: a score table, then each notebook's messages."""
    esc = html.escape
    ids = question_ids(grades)
    head = "".join(f"<th>{esc(qid)}</th>" for qid in ids)
    rows, details = [], []
    for grade in grades:
        by_id = {row.id: row for row in grade.checks}
        cells = "".join(
            f'<td class="{"pass" if by_id[qid].passed else "fail"}"'
            f' title="{esc(by_id[qid].message)}">{by_id[qid].points}/{by_id[qid].max_points}</td>'
            if qid in by_id else "<td>-</td>" for qid in ids)
        rows.append(f"<tr><td>{esc(grade.learner)}</td><td>{esc(grade.notebook)}</td>"
                    f"<td><b>{grade.score}/{grade.max_score}</b></td>{cells}<td class=\"err\">"
                    f"{esc(grade.error or '')}</td></tr>")
        items = "".join(f"<li class=\"{'pass' if row.passed else 'fail'}\"><b>{esc(row.id)}"
                        f"</b> {row.points}/{row.max_points}: {esc(row.message)}</li>"
                        for row in grade.checks)
        notes = "".join(f'<li class="err">{esc(note)}</li>' for note in grade.notes)
        details.append(f"<h2>{esc(grade.notebook)}</h2><ul>{items}{notes}</ul>")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>labkit grade report"
        f"</title><style>{_STYLE}</style></head><body><h1>labkit grade report</h1>"
        f"<table><tr><th>learner</th><th>notebook</th><th>score</th>{head}<th>error</th>"
        f"</tr>{''.join(rows)}</table>{''.join(details)}</body></html>\n")


def check_report_path(out: str | Path) -> Path:
    """Validate a report path before grading starts (format and folder)."""
    out = Path(out)
    if out.suffix.lower() not in REPORT_FORMATS:
        raise GradeError(f"Cannot write a report to {out}: use a name ending in .csv,"
                         " .json or .html.")
    if not out.parent.is_dir():
        raise GradeError(f"Cannot write a report to {out}: the folder {out.parent} does"
                         " not exist.")
    return out


def _write(out: Path, text: str) -> Path:
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise GradeError(f"Cannot write {out}: {exc.strerror}. Pick another path.") from exc
    return out


def write_report(grades: list[NotebookGrade], out: str | Path) -> Path:
    """Write the grades as CSV, JSON or HTML, chosen by the suffix of ``out``."""
    out = check_report_path(out)
    render = {".csv": to_csv, ".json": to_json, ".html": to_html}[out.suffix.lower()]
    return _write(out, render(grades))


# -- feedback for learners ------------------------------------------------------------------

def _hints(qid: str) -> tuple[str, ...]:
    try:
        return get_question(qid).hints
    except LabkitError:
        return ()


def feedback_page(grade: NotebookGrade) -> str:
    """One HTML page for the learner: each question's verdict, message and hints."""
    esc = html.escape
    items = []
    for row in grade.checks:
        mark, verdict = ("✔", "passed") if row.passed else ("✘", "not passed")
        hints = "" if row.passed else "".join(
            f"<li>{esc(hint)}</li>" for hint in _hints(row.id))
        items.append(
            f'<section><h2 class="{"pass" if row.passed else "fail"}">{mark} {esc(row.id)}'
            f" {verdict} ({row.points}/{row.max_points} points)</h2><p>{esc(row.message)}</p>"
            + (f"<p>Hints to read:</p><ol>{hints}</ol>" if hints else "") + "</section>")
    error = (f'<p class="err">This notebook could not be graded: {esc(grade.error)}</p>'
             if grade.error else "")
    title = f"Feedback for {grade.learner or grade.notebook}"
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{esc(title)}</h1>"
        f"<p>Notebook <code>{esc(Path(grade.notebook).name)}</code>"
        + (f", chapter {esc(grade.chapter)}" if grade.chapter else "")
        + f": <b>{grade.score}/{grade.max_score} points</b>.</p>{error}{''.join(items)}"
        "</body></html>\n")


def write_feedback(grades: list[NotebookGrade], folder: str | Path) -> list[Path]:
    """Write one page per submission into ``folder``: ``<learner>_<chapter>.html``."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GradeError(f"Cannot create the feedback folder {folder}: {exc.strerror}."
                         ) from exc
    written: list[Path] = []
    used: set[str] = set()
    for grade in grades:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_",
                      f"{grade.learner or Path(grade.notebook).stem}_{grade.chapter or 'NN'}")
        stem = stem.lstrip(".") or "submission"
        name, n = f"{stem}.html", 1
        while name in used:
            n += 1
            name = f"{stem}-{n}.html"
        used.add(name)
        written.append(_write(folder / name, feedback_page(grade)))
    return written


# -- shards -------------------------------------------------------------------------------

def part_json(grades: list[NotebookGrade], *, positions: list[int], notebooks: list[str],
              shard: tuple[int, int]) -> str:
    """The partial result of one shard: which notebooks of the whole list it graded."""
    return json.dumps({
        "format": PART_FORMAT, "version": 1, "shard": list(shard), "notebooks": notebooks,
        "grades": [{"index": index, **grade.to_json()}
                   for index, grade in zip(positions, grades)]},
        indent=1, ensure_ascii=False) + "\n"


def merge_parts(paths: list[str | Path]) -> list[NotebookGrade]:
    """Merge shard files into the list of grades one run would have produced.

    Refuses (GradeError) parts of different classes or shard counts, a shard given
    twice, and a missing shard.
    """
    if not paths:
        raise GradeError("Give the partial .json files that `labkit grade --shard` wrote.")
    notebooks: list[str] | None = None
    total: int | None = None
    seen_shards: dict[int, Path] = {}
    by_index: dict[int, NotebookGrade] = {}
    for path in map(Path, paths):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise GradeError(f"{path}: file not found.") from None
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise GradeError(f"{path}: not a readable partial result ({exc}).") from None
        if not isinstance(data, dict) or data.get("format") != PART_FORMAT:
            raise GradeError(f"{path} is not a partial result of `labkit grade --shard`.")
        index, count = data["shard"]
        if notebooks is None:
            notebooks, total = data["notebooks"], count
        elif data["notebooks"] != notebooks or count != total:
            raise GradeError(f"{path} comes from another grading run (other notebooks or"
                             " another number of shards) than the first part.")
        if index in seen_shards:
            raise GradeError(f"Shard {index}/{count} is given twice ({seen_shards[index]}"
                             f" and {path}).")
        seen_shards[index] = path
        for item in data["grades"]:
            by_index[item["index"]] = NotebookGrade.from_json(item)
    missing = sorted(set(range(1, (total or 0) + 1)) - set(seen_shards))
    if missing:
        raise GradeError(f"Missing shard(s) {', '.join(f'{i}/{total}' for i in missing)}:"
                         " merge all the parts of one run.")
    if sorted(by_index) != list(range(len(notebooks or []))):
        raise GradeError("The parts do not cover every notebook exactly once.")
    return [by_index[i] for i in range(len(notebooks or []))]
