"""A learner attacks ``labkit grade``: each notebook tries to earn marks it did not.

Each attack is a copy of chapter 00's exercise (stubs: honestly 0/4) or solution
(honestly 4/4, or 2/4 with a wrong second answer) with cells added, graded once per
module in real kernels. Names avoid the words the grader's static scan looks for
(``seal``, ``__closure__``...), as a learner who read the grader would, so these
tests exercise the runtime guard (:mod:`labkit.checks.guard`), not the scan.

Scores measured on the kit before the guard (commit 35e289e) -> with it, of 4:

=====================  ===========  =====  ===================================
attack                 honest       before  now
=====================  ===========  =====  ===================================
closure_key            0            4      0 (no key in any closure)
gc_key                 0            4      0 (gc.get_objects refused, noted)
ask_sealer             0            -      0 (caller is not the runner, noted)
patch_run_question     0            4      0 (__code__ swap refused, noted)
patch_questions        0            4      0 (question swap detected)
patch_cell             0            4*     0 (closure cell swap detected)
patch_hidden           2            4      2 (run.CheckContext change detected)
patch_helper           2            4*     2 (q00._run_restart change detected)
lucky_retries          2            4      2 (hidden attempts detected)
always_equal           2            4      2 (q00 compares types now)
settrace               4            4      0 (sys.settrace refused, noted)
symlinks, kill_others  0            file overwritten, process killed -> neither
=====================  ===========  =====  ===================================

(* the same attack adapted to the old closure layout.)
"""

from __future__ import annotations

import csv
import io
import pathlib
import subprocess

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from labkit.instructor import grading, reports

ROOT = pathlib.Path(__file__).resolve().parents[2]
NAME = "00_two_ways_to_serve_exercises.ipynb"
SOLUTION = ROOT / "solutions" / NAME
EXERCISE = ROOT / "exercises" / NAME

KIT = '''\
import sys, json
def kit(name):  # a kit module, found without writing its dotted name
    return sys.modules["lab" + "kit." + name]
MIME = "application/vnd." + "lab" + "kit.check+json"
from IPython.display import display
'''
FORGE = '''\
import hmac, hashlib
def forge(qid, points, key, run, seq):
    body = {"id": qid, "passed": True, "points": points, "max_points": points,
            "message": "visible: pass, hidden: pass: ok", "run": run, "seq": seq,
            "visible": {"passed": True, "message": "ok"},
            "hidden": {"passed": True, "message": "ok"}, "attempt": 1, "tampered": []}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    body["tag"] = hmac.new(key, text.encode("ascii"), hashlib.sha256).hexdigest()
    display({MIME: body}, raw=True)
'''
# The key and run id from the closure of the sealed runner (before the guard: there).
CLOSURE_KEY = KIT + FORGE + '''\
runner = getattr(kit("checks.se" + "al"), "_SE" + "ALED_RUN")
values = [c.cell_contents for c in getattr(runner, "__clo" + "sure__")]
inner = [v for v in values if callable(v) and getattr(v, "__clo" + "sure__", None)]
for fn in inner:
    values += [c.cell_contents for c in getattr(fn, "__clo" + "sure__")]
key = next(v for v in values if isinstance(v, bytes) and len(v) == 32)
run = next(v for v in values if isinstance(v, str) and len(v) == 16)
forge("00.remember", 2, key, run, 1000)
forge("00.after_revive", 2, key, run, 1001)
'''
# The same through the garbage collector, which sees every closure.
GC_KEY = KIT + FORGE + '''\
import gc
cells = [o for o in gc.get_objects() if type(o).__name__ == "cell"]
values = []
for c in cells:
    try:
        values.append(c.cell_contents)
    except ValueError:
        pass
key = next(v for v in values if isinstance(v, bytes) and len(v) == 32)
run = next(v for v in values if isinstance(v, str) and len(v) == 16
           and all(ch in "0123456789abcdef" for ch in v))
forge("00.remember", 2, key, run, 1000)
forge("00.after_revive", 2, key, run, 1001)
'''
# Ask the kit's sealer (the guard's generator) to sign a hand-made record.
ASK_SEALER = KIT + '''\
runner = getattr(kit("checks.se" + "al"), "_SE" + "ALED_RUN")
cells = {n: c.cell_contents for n, c in zip(runner.__code__.co_freevars,
                                            getattr(runner, "__clo" + "sure__"))}
body = {"id": "00.remember", "passed": True, "points": 2, "max_points": 2,
        "message": "ok", "visible": {"passed": True, "message": "ok"},
        "hidden": {"passed": True, "message": "ok"}}
signed = cells["signer"].send(("se" + "al", body))
display({MIME: signed}, raw=True)
'''
# Replace the code of the check runner that the sealed runner captured.
PATCH_RUN_QUESTION = KIT + '''\
def always(question, answers, *, seed=None, hidden=False):  # runs with run.py's globals
    return CheckResult(question.id, True, question.points, question.points, "ok")
kit("checks.run").run_question.__code__ = always.__code__
'''
# Swap the check function inside the captured Question objects.
PATCH_QUESTIONS = KIT + '''\
for q in kit("checks.registry").all_questions():
    if q.id.startswith("00."):
        object.__setattr__(q, "func", lambda *answers: "ok")
'''
# Swap the questions the sealed runner holds, through its closure cell.
PATCH_CELL = KIT + '''\
Reg = kit("checks.registry")
runner = getattr(kit("checks.se" + "al"), "_SE" + "ALED_RUN")
names = runner.__code__.co_freevars
cell = getattr(runner, "__clo" + "sure__")[names.index("questions")]
fake = {}
for qid, (q, func, points) in cell.cell_contents.items():
    free = Reg.Question(q.id, q.points, (), lambda *answers: "ok")
    fake[qid] = (free, free.func, points)
cell.cell_contents = fake
'''
# Make every run visible (no hidden probes), then check an answer tuned to them.
PATCH_HIDDEN = KIT + '''\
Ctx = kit("checks.context").CheckContext
kit("checks.run").CheckContext = lambda seed, hidden=False: Ctx(seed=seed)
'''
TUNED = '''\
real_answer = name_after_restart
def name_after_restart(server):   # right on the visible check, wrong when hidden
    hidden = sys.modules["lab" + "kit.checks.context"].context().hidden
    return "Ada" if hidden else real_answer(server)
'''
# Rewrite a helper of the question module: the check then compares right with right.
PATCH_HELPER = KIT + '''\
Q = kit("questions.q00")
def lenient(name_after_restart, server):
    server.kill(); server.revive()
    r = __import__("requests").get(server.url + "/guest", timeout=5)
    return None if r.status_code == 404 else r.json()["name"]
Q._run_restart = lenient
def name_after_restart(server):
    return "Ada"
'''
# An answer that is right half the time; retried with the failures captured.
LUCKY = KIT + '''\
import random
from IPython.utils.capture import capture_output
real_answer = name_after_restart
def name_after_restart(server):
    return real_answer(server) if random.random() < 0.4 else "Ada"
for attempt in range(40):
    with capture_output() as shown:
        result = lk.check("00.after_revive", make_guestbook, name_after_restart)
    if result.passed:
        break
shown.show()
'''
# An answer equal to everything.
ALWAYS_EQUAL = '''\
class Anything:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __hash__(self): return 0
def name_after_restart(server):
    server.kill(); server.revive()
    return Anything()
'''
TRACE = KIT + '''\
sys.settrace(lambda frame, event, arg: None)
'''
CHECK_BOTH = ['lk.check("00.remember", make_guestbook)',
              'lk.check("00.after_revive", make_guestbook, name_after_restart)']

# name -> (source notebook, cells, score without the attack, attack's hoped-for score)
ATTACKS = {
    "closure_key": (EXERCISE, [CLOSURE_KEY], 0),
    "gc_key": (EXERCISE, [GC_KEY], 0),
    "ask_sealer": (EXERCISE, [ASK_SEALER], 0),
    "patch_run_question": (EXERCISE, [PATCH_RUN_QUESTION, *CHECK_BOTH], 0),
    "patch_questions": (EXERCISE, [PATCH_QUESTIONS, *CHECK_BOTH], 0),
    "patch_cell": (EXERCISE, [PATCH_CELL, *CHECK_BOTH], 0),
    "patch_hidden": (SOLUTION, [PATCH_HIDDEN, TUNED, CHECK_BOTH[1]], 2),
    "patch_helper": (SOLUTION, [PATCH_HELPER, CHECK_BOTH[1]], 2),
    "lucky_retries": (SOLUTION, [LUCKY], 2),
    "always_equal": (SOLUTION, [ALWAYS_EQUAL, CHECK_BOTH[1]], 2),
    "settrace": (SOLUTION, [TRACE, *CHECK_BOTH], 4),
}


# The runner's argv names its private control folder; a notebook can read it.
CONTROL = '''\
import os
argv = open(f"/proc/{{os.getppid()}}/cmdline", "rb").read().split(b"\\0")
control = argv[3].decode()
'''
# Plant symlinks where the runner writes: the runner must not write through them.
SYMLINKS = CONTROL + '''\
for name in ("executed.ipynb", "status.json"):
    os.symlink({victim!r}, os.path.join(control, name))
'''
# Name another process as the kernel, then kill the runner: the grader cleans up.
KILL_OTHERS = CONTROL + '''\
import signal
with open(os.path.join(control, "kernel.pid"), "w") as f:
    f.write(str({victim}))
os.kill(os.getppid(), signal.SIGKILL)
'''
# Leave a file in the kit's folder: the grader must notice the kit changed on disk.
KIT_ON_DISK = '''\
import os, sys
with open(os.path.join(os.path.dirname(sys.modules["labkit"].__file__), {name!r}), "w") as f:
    f.write("print('patched')")
'''
KIT_FILE = "zz_attack_probe.py"


def build(folder: pathlib.Path, name: str, source: pathlib.Path | None = None,
          cells: list[str] | None = None) -> pathlib.Path:
    if cells is None:
        source, cells, _ = ATTACKS[name]
    notebook = nbformat.read(source, as_version=4)
    notebook.cells.extend(new_code_cell(c) for c in cells)
    path = folder / f"00_{name}.ipynb"
    nbformat.write(notebook, path)
    return path


@pytest.fixture(scope="module")
def victims(tmp_path_factory):
    """A file and a process of the instructor's that no notebook may touch."""
    folder = tmp_path_factory.mktemp("victims")
    victim = folder / "gradebook.csv"
    victim.write_text("mine\n")
    process = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        yield victim, process
    finally:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def graded(tmp_path_factory, victims):
    folder = tmp_path_factory.mktemp("attacks")
    victim, process = victims
    paths = [build(folder, name) for name in ATTACKS]
    paths += [build(folder, "symlinks", EXERCISE, [SYMLINKS.format(victim=str(victim))]),
              build(folder, "kill_others", EXERCISE, [KILL_OTHERS.format(victim=process.pid)])]
    kit_file = pathlib.Path(grading.__file__).resolve().parents[1] / KIT_FILE
    try:
        grades = grading.grade([SOLUTION, *paths], timeout=300, jobs=2)
        (on_disk,) = grading.grade([build(folder, "kit_on_disk", SOLUTION,
                                          [KIT_ON_DISK.format(name=KIT_FILE)])], timeout=300)
    finally:
        kit_file.unlink(missing_ok=True)
    graded = {pathlib.Path(g.notebook).stem.removeprefix("00_"): g for g in grades}
    graded["kit_on_disk"] = on_disk
    return graded


def test_the_honest_solution_still_gets_full_marks_and_no_notes(graded):
    grade = graded[SOLUTION.stem.removeprefix("00_")]
    assert (grade.score, grade.error, grade.notes) == (4, None, [])


@pytest.mark.parametrize("name", list(ATTACKS))
def test_an_attack_earns_nothing_it_did_not_earn(graded, name):
    grade = graded[name]
    honest = ATTACKS[name][2]
    assert grade.score <= honest, (grade.score, grade.checks, grade.notes)
    # The grader saw something, and the row says so; except where there was nothing
    # to see: no key in the closure (the attack found nothing), and an answer that
    # equals everything (the check compares types now: it simply fails).
    if name not in ("always_equal", "closure_key"):
        assert grade.notes, (grade.checks, grade.notes)


def test_a_planted_symlink_is_replaced_not_written_through(graded, victims):
    assert victims[0].read_text() == "mine\n"
    assert graded["symlinks"].score == 0


def test_a_forged_kernel_pid_kills_no_other_process(graded, victims):
    assert victims[1].poll() is None  # still running
    grade = graded["kill_others"]
    assert grade.score == 0 and "runner failed" in grade.error


def test_a_notebook_that_changes_the_kit_on_disk_stops_being_trusted(graded):
    grade = graded["kit_on_disk"]
    assert grade.score == 0 and grade.error == grading.KIT_CHANGED
    assert grading.KIT_CHANGED in grade.notes


# -- the reports: a learner id or message is data, never markup or a formula ------------

def test_csv_cells_cannot_become_spreadsheet_formulas():
    grade = grading.NotebookGrade("=HYPERLINK(\"http://x\")_00.ipynb", 0, 4,
                                  learner="=cmd|' /C calc'!A0", chapter="00",
                                  notes=["+1", "x\ny"], error="@SUM(A1)")
    rows = list(csv.reader(io.StringIO(reports.to_csv([grade]))))
    assert len(rows) == 2
    learner, notebook = rows[1][0], rows[1][1]
    assert learner.startswith("'=") and notebook.startswith("'=")
    assert rows[1][-2].startswith("'@") and rows[1][-1].startswith("'+")


def test_html_reports_escape_learner_controlled_text():
    evil = '<img src=x onerror=alert(1)>'
    grade = grading.NotebookGrade(f"{evil}_00.ipynb", 0, 4, learner=evil, chapter="00",
                                  notes=[evil], checks=[grading.CheckRow(
                                      "00.remember", False, 0, 2, evil)])
    for page in (reports.to_html([grade]), reports.feedback_page(grade)):
        assert "<img" not in page and "&lt;img" in page
