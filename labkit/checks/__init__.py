"""Graded checks: ``lk.check(question_id, *answers)`` and ``lk.hint(question_id)``.

Inside an exercise notebook::

    lk.check("00.remember", make_guestbook)   # shows ✔ or ✘ with the reason
    lk.hint("00.remember")                    # the next hint tier

How it fits together:

* :mod:`.registry` -- the ``@question`` decorator and the registry of questions,
  which lives in ``labkit/questions/qNN.py`` (one module per chapter);
* :mod:`.context` -- the seed of a check run and whether it is a hidden re-check;
  checks draw every input the learner cannot see from ``context().rng``;
* :mod:`.run` -- ``check`` and ``hint``: run a question, turn what happened into
  a :class:`CheckResult`, display it;
* :mod:`.result` -- the result, rendered as text, HTML and the JSON record
  (MIME type ``application/vnd.labkit.check+json``) that ``labkit grade`` reads;
* :mod:`.trying` -- ``lk.trying(question_id)``, for a "try it by hand" cell that
  meets a stub: one line instead of a traceback, so *Run All* reaches every check;
* :mod:`.probe` -- small helpers that question authors use to drive the learner's
  code over real HTTP.
"""

from __future__ import annotations

from .context import CheckContext, context
from .registry import CheckFailed, Question, all_questions, get_question, question, questions_for
from .result import MIME_TYPE, CheckResult
from .run import check, hint
from .trying import trying

__all__ = [
    "MIME_TYPE",
    "CheckContext",
    "CheckFailed",
    "CheckResult",
    "Question",
    "all_questions",
    "check",
    "context",
    "get_question",
    "hint",
    "question",
    "questions_for",
    "trying",
]
