"""The question registry: every graded question, by id.

A question is a plain function decorated with :func:`question`. It receives the
learner's answers (the arguments after the id in ``lk.check(id, *answers)``) and
either returns (the answer passed) or raises :class:`CheckFailed` with a message
written for the learner::

    from labkit.checks import CheckFailed, question

    @question("00.add", points=1, hints=["Use +.", "Return a + b."])
    def add(fn):
        "Write add(a, b) that returns the sum."
        if fn(2, 3) != 5:
            raise CheckFailed(f"add(2, 3) should be 5, but your add returned {fn(2, 3)!r}.")

Questions live in ``labkit/questions/qNN.py``, one module per chapter ``NN``. The
registry imports those modules lazily, the first time an id of that chapter is
asked for, so ``import labkit`` stays fast and a broken chapter module cannot break
the checks of another chapter.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import CheckError, LabkitError

ID_PATTERN = re.compile(r"^(\d{2})\.[a-z][a-z0-9_]*$")
QUESTIONS_PACKAGE = "labkit.questions"

_REGISTRY: dict[str, Question] = {}
_LOAD_ERRORS: dict[str, str] = {}  # module name -> why it did not import


class CheckFailed(LabkitError):
    """Raised by a question function when the learner's answer is wrong.

    The message is shown to the learner as is: say what was expected and what
    their code did, e.g. "GET /guest should answer 404 before any guest signed in,
    but your app answered 200 with {'name': 'Ada'}."
    """


@dataclass(frozen=True)
class Question:
    """One graded question: its id, its worth, its hints and its check function."""

    id: str
    points: int
    hints: tuple[str, ...]
    func: Callable[..., Any] = field(repr=False, compare=False)

    @property
    def chapter(self) -> str:
        """The two-digit chapter prefix of the id, e.g. ``"00"``."""
        return self.id[:2]

    @property
    def title(self) -> str:
        """The first line of the check function's docstring (what to build)."""
        doc = inspect.getdoc(self.func) or ""
        return doc.splitlines()[0] if doc else self.id


def question(qid: str, *, points: int = 1, hints: list[str] | tuple[str, ...] = ()
             ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as the check of question ``qid``.

    Args:
        qid: a stable id ``"NN.name"``: the chapter number, a dot, a snake_case name.
        points: what a pass is worth (a failed check scores 0).
        hints: hint tiers, from a gentle nudge to almost the answer; ``lk.hint(qid)``
            shows the next one each time it is called.

    The function receives the learner's answers as positional arguments and raises
    :class:`CheckFailed` when they are wrong. It may return a short string: the
    message shown on a pass (default "Well done."). Any other exception also fails the
    check (its type and message are shown), so a check never passes by accident.
    """
    if not isinstance(qid, str) or not ID_PATTERN.match(qid):
        raise CheckError(
            f"Question id {qid!r} does not look like 'NN.snake_case_name' (two digits"
            " for the chapter, a dot, then lower-case letters, digits or _).")
    if not isinstance(points, int) or points < 1:
        raise CheckError(f"Question {qid}: points must be a positive int, not {points!r}.")

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        old = _REGISTRY.get(qid)
        if old is not None and (old.func.__module__, old.func.__qualname__) != (
                func.__module__, func.__qualname__):
            raise CheckError(
                f"Question id {qid} is defined twice ({old.func.__module__}."
                f"{old.func.__qualname__} and {func.__module__}.{func.__qualname__})."
                " Give one of them another id.")
        _REGISTRY[qid] = Question(qid, points, tuple(hints), func)
        return func

    return register


def _load(module_name: str) -> None:
    """Import one questions module, remembering (not raising) an import failure."""
    if module_name in _LOAD_ERRORS:
        return
    try:
        importlib.import_module(module_name)
    except Exception as exc:  # a broken chapter must not break the others
        _LOAD_ERRORS[module_name] = f"{type(exc).__name__}: {exc}"


def _chapter_modules() -> list[str]:
    package = importlib.import_module(QUESTIONS_PACKAGE)
    return sorted(
        f"{QUESTIONS_PACKAGE}.{info.name}"
        for info in pkgutil.iter_modules(package.__path__)
        if re.fullmatch(r"q\d{2}", info.name))


def load_all() -> None:
    """Import every ``labkit/questions/qNN.py`` module."""
    for module_name in _chapter_modules():
        _load(module_name)


def _load_chapter(chapter: str) -> None:
    module_name = f"{QUESTIONS_PACKAGE}.q{chapter}"
    if module_name in _chapter_modules():
        _load(module_name)
        if module_name in _LOAD_ERRORS:
            raise CheckError(
                f"The questions of chapter {chapter} (labkit/questions/q{chapter}.py)"
                f" could not be loaded: {_LOAD_ERRORS[module_name]}. Tell your"
                " instructor; meanwhile the other chapters still work.")


def get_question(qid: str) -> Question:
    """Return the registered question ``qid``, or raise CheckError listing the ids."""
    if not isinstance(qid, str):
        raise CheckError(
            f"A question id is a string such as '00.remember', not {type(qid).__name__}.")
    match = ID_PATTERN.match(qid)
    if match:
        _load_chapter(match.group(1))
    if qid not in _REGISTRY:
        load_all()
    if qid not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise CheckError(
            f"There is no question {qid!r}. Known question ids: {known}."
            " Check the spelling in the lk.check(...) call.")
    return _REGISTRY[qid]


def questions_for(chapter: str) -> list[Question]:
    """Every question of ``chapter`` (e.g. ``"00"``), sorted by id."""
    _load_chapter(chapter)
    return sorted((q for q in _REGISTRY.values() if q.chapter == chapter),
                  key=lambda q: q.id)


def all_questions() -> list[Question]:
    """Every question of every chapter that imports, sorted by id."""
    load_all()
    return sorted(_REGISTRY.values(), key=lambda q: q.id)
