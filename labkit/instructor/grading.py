"""``labkit grade``: run submitted notebooks and read back their check results.

For each submission the grader

1. copies it into a fresh scratch folder (the submission itself is only read);
2. runs it top to bottom in a child process (``python -m labkit.instructor.grading --worker``)
   with nbclient and a kernel started from *this* Python (``sys.executable -m
   ipykernel_launcher``), so the kernel sees the same labkit and packages as the
   grader. ``allow_errors`` is on: one failing cell does not hide later checks;
3. kills that child (and its kernel) when the notebook runs past ``timeout``;
4. reads the ``application/vnd.labkit.check+json`` records from the executed
   outputs. The last record of each question wins: what counts is the final state
   of a top-to-bottom run, whatever order the learner ran cells in.

Which questions a notebook must answer, and what each is worth, come from the
question registry (chapter ``NN`` from the file name ``NN_*.ipynb``, or from the
``labkit.chapter`` metadata that ``labkit release`` writes), never from the
notebook: a deleted check cell scores 0 for its question.

A corrupt file, a timeout or a dead kernel gives that notebook a row with an
``error`` and a score of 0; the grader itself carries on.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import nbformat

from ..checks.registry import Question, questions_for
from ..checks.result import MIME_TYPE, CheckResult, stable_text
from ..errors import GradeError, LabkitError

DEFAULT_TIMEOUT = 600.0  # seconds for a whole notebook
NO_CHECK = "no check ran for this question"
REPORT_FORMATS = (".csv", ".json", ".html")
_KIT_PARENT = str(Path(__file__).resolve().parent.parent)


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
    """The grade of one notebook. ``error`` says why it could not be graded."""

    notebook: str
    score: int
    max_score: int
    checks: list[CheckRow] = field(default_factory=list)
    error: str | None = None

    def __repr__(self) -> str:
        extra = f" error={self.error!r}" if self.error else ""
        return f"<NotebookGrade {self.notebook} {self.score}/{self.max_score}{extra}>"

    def to_json(self) -> dict:
        """The JSON form: notebook, score, max_score, checks, error."""
        return {"notebook": self.notebook, "score": self.score,
                "max_score": self.max_score,
                "checks": [asdict(row) for row in self.checks], "error": self.error}


# -- finding and reading submissions --------------------------------------------------

def find_notebooks(paths: Iterable[str | Path]) -> list[Path]:
    """Expand folders into the notebooks they hold; keep missing paths (graded as errors)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(sorted(
                p for p in path.rglob("*.ipynb")
                if p.is_file() and not any(part.startswith(".") for part in
                                           p.relative_to(path).parts)))
        else:
            found.append(path)
    if not found:
        names = ", ".join(map(str, paths)) or "(nothing)"
        raise GradeError(f"No notebooks found in {names}. Pass .ipynb files or folders"
                         " that contain them.")
    return found


def chapter_of(path: Path, notebook: nbformat.NotebookNode | None = None) -> str | None:
    """The chapter ``NN`` of a submission: from its name ``NN_*``, else its metadata."""
    match = re.match(r"(\d{2})_", path.name) or re.search(r"(?<!\d)(\d{2})_[A-Za-z]",
                                                          path.name)
    if match:
        return match.group(1)
    if notebook is not None:
        chapter = notebook.metadata.get("labkit", {}).get("chapter")
        if isinstance(chapter, str) and re.fullmatch(r"\d{2}", chapter):
            return chapter
    return None


def collect_results(notebook: nbformat.NotebookNode) -> dict[str, CheckResult]:
    """Every check record in the outputs, by question id; the last one wins."""
    results: dict[str, CheckResult] = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") not in ("display_data", "execute_result"):
                continue
            result = CheckResult.from_json(output.get("data", {}).get(MIME_TYPE))
            if result is not None:
                results[result.id] = result
    return results


def score(label: str, expected: list[Question], found: dict[str, CheckResult],
          error: str | None = None) -> NotebookGrade:
    """Grade ``found`` results against the ``expected`` questions of the registry.

    Points come from the registry: a passed check earns its question's points, a
    failed or missing one earns 0. With an ``error`` every question earns 0.
    """
    rows = []
    for question in expected:
        result = found.get(question.id)
        if error is not None:
            rows.append(CheckRow(question.id, False, 0, question.points,
                                 f"not graded: {error}"))
        elif result is None:
            rows.append(CheckRow(question.id, False, 0, question.points, NO_CHECK))
        else:
            rows.append(CheckRow(question.id, result.passed,
                                 question.points if result.passed else 0,
                                 question.points, result.message))
    return NotebookGrade(label, sum(row.points for row in rows),
                         sum(q.points for q in expected), rows, error)


# -- running one notebook -------------------------------------------------------------

def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _run_worker(copy: Path, *, timeout: float, cell_timeout: float
                ) -> tuple[nbformat.NotebookNode | None, str | None]:
    """Execute ``copy`` in a child process; return (executed notebook, error)."""
    scratch = copy.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (_KIT_PARENT, env.get("PYTHONPATH")) if p)  # grade with this kit
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    env.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    env["MPLBACKEND"] = "agg"
    with open(scratch / "worker.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "labkit.instructor.grading", "--worker", copy.name,
             str(cell_timeout)],
            cwd=scratch, env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
        timed_out = False
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:  # never leave the worker or its kernel behind
            if process.poll() is None:
                _kill_group(process.pid)
            process.wait()
            if timed_out or process.returncode != 0:
                pid_file = scratch / "kernel.pid"
                if pid_file.exists() and pid_file.read_text().strip().isdigit():
                    _kill_group(int(pid_file.read_text()))
    if timed_out:
        return None, (f"timed out after {timeout:g} s (a cell kept running: an endless"
                      " loop, or waiting for something that never comes?)")
    status_file = scratch / "status.json"
    if not status_file.exists():
        tail = (scratch / "worker.log").read_text(errors="replace").strip().splitlines()
        return None, f"the notebook runner failed: {tail[-1] if tail else 'no output'}"
    error = json.loads(status_file.read_text())["error"]
    try:
        executed = nbformat.read(scratch / "executed.ipynb", as_version=4)
    except (OSError, ValueError) as exc:
        return None, error or f"the executed notebook could not be read back: {exc}"
    return executed, error


def grade_notebook(path: Path, *, timeout: float = DEFAULT_TIMEOUT,
                   cell_timeout: float | None = None) -> NotebookGrade:
    """Grade one submission. Never raises for a bad submission: see ``error``."""
    label = str(path)

    def failed(reason: str) -> NotebookGrade:
        chapter = chapter_of(path)
        try:
            expected = questions_for(chapter) if chapter else []
        except LabkitError:
            expected = []
        return score(label, expected, {}, stable_text(reason))

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return failed("file not found")
    except OSError as exc:
        return failed(f"cannot read the file ({exc.strerror})")
    try:
        notebook = nbformat.reads(data.decode("utf-8"), as_version=4)
    except UnicodeDecodeError:
        return failed("not a readable notebook (the file is not UTF-8 text)")
    except nbformat.reader.NotJSONError:
        return failed("not a readable notebook (the file is not valid JSON)")
    except Exception as exc:  # nbformat raises several kinds for broken files
        first_line = (str(exc).strip().splitlines() or [""])[0][:100]
        return failed(f"not a readable notebook ({type(exc).__name__}: {first_line})")
    chapter = chapter_of(path, notebook)
    if chapter is None:
        return NotebookGrade(label, 0, 0, [], "cannot tell which chapter this notebook"
                             " belongs to: name it NN_<something>.ipynb")
    try:
        expected = questions_for(chapter)
    except LabkitError as exc:
        return NotebookGrade(label, 0, 0, [], str(exc))
    if not expected:
        return NotebookGrade(label, 0, 0, [], f"chapter {chapter} has no graded questions")
    with tempfile.TemporaryDirectory(prefix="labkit-grade-") as scratch:
        copy = Path(scratch) / "submission.ipynb"
        copy.write_bytes(data)
        executed, error = _run_worker(copy, timeout=timeout,
                                      cell_timeout=cell_timeout or timeout)
    if error is not None:
        return score(label, expected, {}, stable_text(error))
    return score(label, expected, collect_results(executed))


def grade(paths: Iterable[str | Path], *, timeout: float = DEFAULT_TIMEOUT,
          cell_timeout: float | None = None, jobs: int = 1) -> list[NotebookGrade]:
    """Grade every notebook in ``paths`` (files or folders), ``jobs`` at a time.

    Returns one :class:`NotebookGrade` per notebook, in the order found (sorted
    within a folder), whatever ``jobs`` is.
    """
    if not isinstance(jobs, int) or jobs < 1:
        raise GradeError(f"jobs must be a whole number >= 1, not {jobs!r}.")
    if not timeout or timeout <= 0:
        raise GradeError(f"timeout must be a positive number of seconds, not {timeout!r}.")
    notebooks = find_notebooks(paths)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(
            lambda path: grade_notebook(path, timeout=timeout, cell_timeout=cell_timeout),
            notebooks))


# -- reports -------------------------------------------------------------------------

def _question_ids(grades: list[NotebookGrade]) -> list[str]:
    return sorted({row.id for grade in grades for row in grade.checks})


def format_table(grades: list[NotebookGrade]) -> str:
    """A plain-text table: one line per notebook, points per question."""
    ids = _question_ids(grades)
    header = ["notebook", "score", *ids, "error"]
    lines = []
    for grade in grades:
        points = {row.id: f"{row.points}/{row.max_points}" for row in grade.checks}
        error = grade.error or ""
        lines.append([grade.notebook, f"{grade.score}/{grade.max_score}",
                      *(points.get(qid, "-") for qid in ids),
                      error if len(error) <= 72 else error[:69] + "..."])
    widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header))]
    out = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
           for row in [header, *lines]]
    out.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(out)


def to_csv(grades: list[NotebookGrade]) -> str:
    """CSV: notebook, score, max_score, error, then the points of each question."""
    ids = _question_ids(grades)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["notebook", "score", "max_score", "error", *ids])
    for grade in grades:
        points = {row.id: row.points for row in grade.checks}
        writer.writerow([grade.notebook, grade.score, grade.max_score, grade.error or "",
                         *(points.get(qid, "") for qid in ids)])
    return buffer.getvalue()


def to_json(grades: list[NotebookGrade]) -> str:
    """JSON: a list of {notebook, score, max_score, checks, error}."""
    return json.dumps([grade.to_json() for grade in grades], indent=2,
                      ensure_ascii=False) + "\n"


def to_html(grades: list[NotebookGrade]) -> str:
    """A self-contained HTML page: a score table, then each notebook's messages."""
    esc = html.escape
    ids = _question_ids(grades)
    head = "".join(f"<th>{esc(qid)}</th>" for qid in ids)
    rows, details = [], []
    for grade in grades:
        by_id = {row.id: row for row in grade.checks}
        cells = "".join(
            f'<td class="{"pass" if by_id[qid].passed else "fail"}"'
            f' title="{esc(by_id[qid].message)}">{by_id[qid].points}/{by_id[qid].max_points}</td>'
            if qid in by_id else "<td>-</td>" for qid in ids)
        rows.append(f"<tr><td>{esc(grade.notebook)}</td><td><b>{grade.score}/"
                    f"{grade.max_score}</b></td>{cells}<td class=\"err\">"
                    f"{esc(grade.error or '')}</td></tr>")
        items = "".join(f"<li class=\"{'pass' if row.passed else 'fail'}\"><b>{esc(row.id)}"
                        f"</b> {row.points}/{row.max_points}: {esc(row.message)}</li>"
                        for row in grade.checks)
        details.append(f"<h2>{esc(grade.notebook)}</h2><ul>{items}</ul>")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>labkit grade report"
        "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:"
        "collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        ".pass{color:#1a7f37}.fail{color:#cf222e}.err{color:#9a6700}h2{font-size:1em}"
        "</style></head><body><h1>labkit grade report</h1>"
        f"<table><tr><th>notebook</th><th>score</th>{head}<th>error</th></tr>"
        f"{''.join(rows)}</table>{''.join(details)}</body></html>\n")


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


def write_report(grades: list[NotebookGrade], out: str | Path) -> Path:
    """Write the grades as CSV, JSON or HTML, chosen by the suffix of ``out``."""
    out = check_report_path(out)
    render = {".csv": to_csv, ".json": to_json, ".html": to_html}[out.suffix.lower()]
    try:
        out.write_text(render(grades), encoding="utf-8")
    except OSError as exc:
        raise GradeError(f"Cannot write the report to {out}: {exc.strerror}. Pick"
                         " another --out path.") from exc
    return out


# -- the worker: runs inside the child process ----------------------------------------

def _kernel_manager():  # noqa: ANN202 (jupyter_client types are heavy to import)
    """A kernel manager whose kernel is ``sys.executable -m ipykernel_launcher``.

    Asking for "python3" by name could find another Python's kernelspec (a user
    or system one); the grader wants the kernel of the Python that runs it.
    """
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    class ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str, *args: object, **kwargs: object
                            ) -> KernelSpec:
            return KernelSpec(
                argv=[sys.executable, "-m", "ipykernel_launcher", "-f",
                      "{connection_file}"],
                display_name="Python 3 (labkit grade)", language="python",
                resource_dir="")

    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=ThisPython())


def _worker(notebook_name: str, cell_timeout: float) -> int:
    """Execute ``notebook_name`` (in the current folder); write executed.ipynb."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    scratch = Path.cwd()
    error: str | None = None
    notebook = nbformat.read(scratch / notebook_name, as_version=4)
    client = NotebookClient(
        notebook, km=_kernel_manager(), timeout=cell_timeout, allow_errors=True,
        shutdown_kernel="immediate", resources={"metadata": {"path": str(scratch)}})
    client.on_notebook_start = lambda notebook: (scratch / "kernel.pid").write_text(
        str(client.km.provisioner.pid))
    try:
        client.execute()
    except CellTimeoutError:
        error = f"a cell ran longer than {cell_timeout:g} s"
    except DeadKernelError:
        error = "the kernel died (a cell crashed Python or called exit)"
    except Exception as exc:
        error = f"the notebook could not be run ({type(exc).__name__}: {exc})"
    finally:
        nbformat.write(notebook, scratch / "executed.ipynb")
        (scratch / "status.json").write_text(json.dumps({"error": error}))
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    sys.exit(_worker(sys.argv[2], float(sys.argv[3])))
