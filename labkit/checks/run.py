"""``check`` and ``hint``: the two verbs a learner calls inside an exercise notebook.

``check`` runs one question's check on the learner's answers and turns whatever
happens into a :class:`CheckResult`: a pass, a :class:`CheckFailed` message, a stub
that still raises ``NotImplementedError``, or any other exception (from the
learner's code or from the check itself), which is a failure with its reason,
never a pass and never a bare traceback.
"""

from __future__ import annotations

import html
import inspect
import os
import sys
import sysconfig
import traceback
from typing import Any

from ..errors import CheckError, LabkitError
from .context import CheckContext, new_seed, running
from .registry import CheckFailed, Question, get_question
from .result import CheckResult, stable_text
from .seal import sealed_runner

STUB_MESSAGE = (
    "Your code still raises NotImplementedError: replace the stub (the line"
    " `raise NotImplementedError(...)`) with your solution, run that cell, then run"
    " this check again.")

_HINTS_SHOWN: dict[str, int] = {}  # question id -> tiers shown (per kernel)
_KIT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LIBRARY_DIRS = tuple(
    {os.path.abspath(p) + os.sep for p in (
        sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"],
        sysconfig.get_paths()["platlib"], _KIT_DIR)})


def check(question_id: str, *answers: Any, seed: int | None = None) -> CheckResult | None:
    """Check your answer to question ``question_id`` and show the verdict.

    Args:
        question_id: the id printed in the exercise, e.g. ``"00.remember"``.
        *answers: what the question asks for (usually your function or app factory).
        seed: run the check with this seed (a failed check shows the one it used),
            to try exactly the same case again.

    In a notebook the verdict is displayed once (text, HTML and a JSON record that
    ``labkit grade`` reads back); outside Jupyter it is printed. Either way the
    :class:`CheckResult` is returned::

        >>> lk.check("00.remember", make_guestbook)
        ✔ 00.remember passed (2/2 points)

    Raises CheckError only when the call itself is wrong (unknown id, wrong number
    of answers); a wrong answer is a failed result, not an exception.
    """
    question = get_question(question_id)
    _bind(question, answers)
    sealed_run = sealed_runner()
    if sealed_run is not None:  # under `labkit grade`: visible + hidden run, sealed
        result, record = sealed_run(question.id, answers, seed)
        object.__setattr__(result, "_record", record)
    else:
        result = run_question(question, answers, seed=seed)
    _show_result(result)
    return result


def run_question(question: Question, answers: tuple[Any, ...], *, seed: int | None = None,
                 hidden: bool = False) -> CheckResult:
    """Run ``question``'s check function on ``answers``; never raises (but Ctrl-C).

    ``seed`` fixes the random inputs of the check (a fresh one when None); ``hidden``
    adds the probes that only ``labkit grade`` runs. A failure message ends with the
    seed, so the learner can re-run that exact case with ``lk.check(..., seed=N)``.
    """
    ctx = CheckContext(seed=new_seed() if seed is None else seed, hidden=hidden)
    try:
        with running(ctx):
            praise = question.func(*answers)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit too: werkzeug raises it on a busy port
        message = explain(exc)
        if message != STUB_MESSAGE:
            message += f" (check seed {ctx.seed})"
        return CheckResult(question.id, False, 0, question.points, message)
    message = praise if isinstance(praise, str) and praise else "Well done."
    return CheckResult(question.id, True, question.points, question.points, message)


def hint(question_id: str) -> None:
    """Show the next hint for ``question_id``: a nudge first, then more each call."""
    question = get_question(question_id)
    total = len(question.hints)
    shown = _HINTS_SHOWN.get(question.id, 0)
    if total == 0:
        text = f"There are no hints for {question.id}. Re-read the task above it."
    elif shown >= total:
        text = (f"No more hints for {question.id}: you have seen all {total}."
                " Re-read them above, or ask a person for help.")
    else:
        _HINTS_SHOWN[question.id] = shown + 1
        text = f"Hint {shown + 1} of {total} for {question.id}: {question.hints[shown]}"
    _show({"text/plain": text,
           "text/html": f'<div style="border-left:4px solid #9a6700;padding:4px 10px">'
                        f"💡 {html.escape(text)}</div>"}, text)


def explain(exc: BaseException) -> str:
    """Turn an exception raised during a check into a message for the learner."""
    chain = _chain(exc)
    if any(isinstance(e, NotImplementedError) for e in chain):
        return STUB_MESSAGE
    if isinstance(exc, CheckFailed):
        return str(exc)
    for e in reversed(chain):  # the innermost cause first
        where = _learner_frame(e)
        if where is not None:
            return f"Your code raised {_describe(e)} ({where})."
    if isinstance(exc, LabkitError):
        return str(exc)
    if isinstance(exc, SystemExit):
        return f"Your code called exit ({exc.code!r}); a check cannot continue after that."
    return (f"The check itself raised {_describe(exc)}. This is probably a bug in the"
            " check, not in your code: tell your instructor.")


def _bind(question: Question, answers: tuple[Any, ...]) -> None:
    signature = inspect.signature(question.func)
    try:
        signature.bind(*answers)
    except TypeError:
        names = ", ".join(signature.parameters)
        raise CheckError(
            f"Question {question.id} takes {len(signature.parameters)} answer(s):"
            f' lk.check("{question.id}", {names}). You passed {len(answers)}.'
        ) from None


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from, outermost first."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain and len(chain) < 20:
        chain.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return chain


def _learner_frame(exc: BaseException) -> str | None:
    """Where in the learner's code ``exc`` was raised (innermost frame), if anywhere."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.startswith("<"):  # exec'd code: a cell, unless Python's own
            learner = not frame.filename.startswith(("<frozen", "<string>"))
        else:
            learner = not os.path.abspath(frame.filename).startswith(_LIBRARY_DIRS)
        if learner:
            return f"in {frame.name}, line {frame.lineno}"
    return None


def _describe(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


# -- showing things: Jupyter display, or print ---------------------------------------

def _shell() -> Any:
    """The running IPython shell, or None in plain Python."""
    if "IPython" not in sys.modules:
        return None
    from IPython import get_ipython

    return get_ipython()


def _show(bundle: dict, text: str) -> None:
    if _shell() is None:
        print(stable_text(text))
        return
    from IPython.display import display

    display(bundle, raw=True)


def _show_result(result: CheckResult) -> None:
    """Display ``result`` once; its echo as the cell's last value is suppressed."""
    shell = _shell()
    _show(result.to_bundle(), result.to_text())
    if shell is not None:
        # CheckResult._ipython_display_ skips the echo in this same cell.
        object.__setattr__(result, "_shown_in", getattr(shell, "execution_count", None))
