"""Sealed check records: how ``labkit grade`` knows that a record came from its own run.

Any cell can display a dict under the check MIME type, so the grader cannot trust a
record just because it is there. While grading, each notebook's kernel gets a fresh
secret key and a run id from the grader (see :mod:`labkit.instructor.grading`). ``lk.check``
then

1. runs the question as usual (the *visible* check, the one the learner saw);
2. if that passed, runs it again on the same answers with a fresh seed and
   ``hidden=True``, so the extra probes the learner never saw run too;
3. displays a record that carries both verdicts, the run id, a sequence number and an
   HMAC-SHA256 tag over all of it.

The grader recomputes the tag with the key it handed out. A record displayed by
hand, copied from another notebook, or kept from an earlier run has no valid tag
(another run has another key), and is ignored and reported::

    >>> key = bytes(32)
    >>> record = sign({"id": "00.remember", "passed": True}, key=key, run="r1", seq=1)
    >>> verify(record, key=key, run="r1")
    True
    >>> verify({**record, "passed": False}, key=key, run="r1")
    False
    >>> verify(record, key=key, run="another run")
    False

What this does not defend against (the README says it too): the learner's code runs
in the same Python process as the kit, with the grader's rights. The key is read from
a file that is deleted before the first cell runs, and it is kept only in a closure,
not in ``os.environ`` or a module attribute; but code that digs into the kit's
internals (closures, the registry, the check functions) can still produce a
well-sealed lie. Such code is in the submitted notebook for the instructor to see, and
the grader points at notebooks whose code reaches into the kit's internals.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import secrets
from typing import Any, Callable

KEY_FILE_VARIABLE = "LABKIT_GRADE_SEAL"  # path of the file holding {"key", "run"}

# The sealed runner of this kernel, set once by arm(); None outside grading.
_SEALED_RUN: Callable[..., tuple[Any, dict]] | None = None
# The guard's closing summary (attempts per question, tampering), or None.
_SUMMARY: Callable[[], dict | None] | None = None


def canonical(record: dict) -> bytes:
    """The bytes that the tag covers: the record without its tag, as sorted JSON."""
    body = {key: value for key, value in record.items() if key != "tag"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode("ascii")


def sign(record: dict, *, key: bytes, run: str, seq: int) -> dict:
    """Return ``record`` with its run id, sequence number and HMAC tag."""
    sealed = {**record, "run": run, "seq": seq}
    sealed["tag"] = hmac.new(key, canonical(sealed), hashlib.sha256).hexdigest()
    return sealed


def verify(record: object, *, key: bytes, run: str) -> bool:
    """True when ``record`` was sealed with ``key`` during run ``run``."""
    if not isinstance(record, dict) or record.get("run") != run:
        return False
    tag = record.get("tag")
    if not isinstance(tag, str) or not isinstance(record.get("seq"), int):
        return False
    try:
        expected = hmac.new(key, canonical(record), hashlib.sha256).hexdigest()
    except (TypeError, ValueError):  # not JSON-able: not ours
        return False
    return hmac.compare_digest(tag, expected)


def combined_message(visible: Any, hidden: Any | None) -> str:
    """What the grade says about both runs, e.g. ``visible: pass, hidden: fail: ...``."""
    if not visible.passed:
        return f"visible: fail, hidden: not run: {visible.message}"
    if hidden.passed:
        return f"visible: pass, hidden: pass: {hidden.message}"
    return f"visible: pass, hidden: fail: {hidden.message}"


def arm(key: bytes, run: str, *, guard: bool = False) -> None:
    """Seal every later ``lk.check`` of this process with ``key`` (grading only).

    The questions and the check runner are captured now, before any learner code
    runs, so replacing them later (``registry._REGISTRY[...] = ...``) does not change
    what is sealed. With ``guard`` (the grading kernel) the key goes into
    :mod:`labkit.checks.guard`'s sealer instead of a closure, and an audit hook that
    cannot be removed watches for attempts to reach it; never arm a guard in a
    process that must go on (a test run, a learner's Jupyter).
    """
    global _SEALED_RUN, _SUMMARY
    from .registry import all_questions
    from .result import CheckResult
    from .run import run_question

    questions = {q.id: (q, q.func, q.points) for q in all_questions()}
    signer: Any = None  # guard: the sealer generator that holds the key
    local_sign: Callable[[dict], dict] | None = None  # no guard: a closure holds it
    combined = combined_message

    def sealed_run(question_id: str, answers: tuple, seed: int | None
                   ) -> tuple[CheckResult, dict | None]:
        question, func, points = questions[question_id]
        visible = run_question(question, answers, seed=seed)
        hidden = None
        if visible.passed:  # the hidden probes only matter for an answer that passed
            hidden = run_question(question, answers, seed=secrets.randbelow(1_000_000),
                                  hidden=True)
        passed = hidden is not None and hidden.passed
        result = CheckResult(question_id, passed, points if passed else 0, points,
                             combined(visible, hidden))
        record = {
            **result.to_json(),
            "visible": {"passed": visible.passed, "message": visible.message},
            "hidden": None if hidden is None else {"passed": hidden.passed,
                                                   "message": hidden.message},
        }
        if signer is not None:
            return result, signer.send(("seal", record))
        return result, local_sign(record)

    _SEALED_RUN = sealed_run  # before the guard's snapshot of the kit
    if guard:
        from . import guard as guarding

        _SUMMARY = lambda: signer.send(("summary", None))  # noqa: E731 (before the snapshot)
        signer = guarding.install(key, run, sealed_run=sealed_run, questions=questions,
                                  sign=sign)
    else:
        counter = itertools.count(1)
        local_sign = lambda record: sign(record, key=key, run=run,  # noqa: E731
                                         seq=next(counter))


def arm_from_environment(*, guard: bool = False) -> bool:
    """Arm from the key file named by ``LABKIT_GRADE_SEAL``; delete file and variable.

    Called by the grading kernel before it runs any cell. Returns whether a key was
    found.
    """
    path = os.environ.pop(KEY_FILE_VARIABLE, None)
    if not path:
        return False
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return False
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    arm(bytes.fromhex(data["key"]), str(data["run"]), guard=guard)
    return True


def show_summary() -> None:
    """Display the guard's sealed summary of this run (the grader's last cell)."""
    from IPython.display import display

    from .result import MIME_TYPE

    if _SUMMARY is not None:
        display({MIME_TYPE: _SUMMARY(), "text/plain": "(labkit grade: end of run)"},
                raw=True)


def sealed_runner() -> Callable[..., tuple[Any, dict]] | None:
    """The sealed runner while grading, else None."""
    return _SEALED_RUN
