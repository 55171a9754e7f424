"""``lk.trying(question_id)``: a "try it by hand" cell that waits politely for a stub.

An exercise notebook lets the learner try their function by hand before its check.
While the function is still the released stub, that cell would stop *Run All* with a
``NotImplementedError`` traceback, and the checks below it would never run. Wrapped
in ``lk.trying``, the cell says so in one line and lets the notebook go on::

    >>> with lk.trying("03.sticky_policy"):
    ...     print(MySticky().choose(pinned, servers).name)
    solve 03.sticky_policy first, then run this cell

Only the stub is quietened: a ``NotImplementedError`` raised by the learner's own code
(a notebook cell). Every other exception -- a typo, a failed ``assert``, a kit error,
a ``NotImplementedError`` from a library -- goes through untouched, with its traceback,
because that is a real bug the learner needs to see.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from .run import _LIBRARY_DIRS, _chain


@contextmanager
def trying(question_id: str) -> Iterator[None]:
    """Run the block; if it meets a stub of ``question_id``, say so in one line.

    ``question_id`` is the question the block tries by hand (e.g. ``"00.remember"``);
    it only names what to solve first. Exceptions other than the stub's propagate.
    """
    try:
        yield
    except Exception as exc:
        # The stub may come back wrapped in a kit error (lk.serve calling a stub
        # factory raises ServerStartError from it): look through the wrapping.
        if not any(isinstance(e, NotImplementedError) and _raised_in_a_cell(e)
                   for e in _chain(exc)):
            raise
        print(f"solve {question_id} first, then run this cell")


def _raised_in_a_cell(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by code the learner wrote (not by a library)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return False
    filename = frames[-1].filename  # where the ``raise`` statement is
    if filename.startswith("<"):  # exec'd code: a cell, unless Python's own
        return not filename.startswith(("<frozen", "<string>"))
    return not os.path.abspath(filename).startswith(_LIBRARY_DIRS)
