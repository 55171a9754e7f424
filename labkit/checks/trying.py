"""``lk.trying(question_id)``: a "try it by hand" cell that waits politely for a stub.

An exercise notebook lets the learner try their function by hand before its check.
While the function is still the released stub, that cell would stop *Run All* with a
``NotImplementedError`` traceback, and the checks below it would never run. Wrapped
in ``lk.trying``, the cell says so in one line and lets the notebook go on::

    >>> with lk.trying("03.sticky_policy"):
    ...     print(MySticky().choose(pinned, servers).name)
    solve 03.sticky_policy first, then run this cell

Only the stub is quietened: a ``NotImplementedError`` raised by the learner's own code
(a notebook cell). Any other exception -- a typo, a failed ``assert``, a kit error, a
``NotImplementedError`` from a library -- is a real bug, and its full traceback is
shown. In a notebook the traceback is shown *without* stopping *Run All*, so the
check below still runs and gives its verdict; in plain Python it is raised.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from .run import _LIBRARY_DIRS, _chain, _shell


@contextmanager
def trying(question_id: str) -> Iterator[None]:
    """Run the block; if it meets a stub of ``question_id``, say so in one line.

    ``question_id`` is the question the block tries by hand (e.g. ``"00.remember"``);
    it only names what to solve first. Ctrl-C (KeyboardInterrupt) always stops.
    """
    try:
        yield
    except Exception as exc:
        # The stub may come back wrapped in a kit error (lk.serve calling a stub
        # factory raises ServerStartError from it): look through the wrapping.
        if any(isinstance(e, NotImplementedError) and _raised_in_a_cell(e)
               for e in _chain(exc)):
            print(f"solve {question_id} first, then run this cell")
            return
        shell = _shell()
        if shell is None:
            raise
        # A real bug: show its traceback as an error output, and carry on.
        _show_traceback(shell, exc)


def _raised_in_a_cell(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by code the learner wrote (not by a library)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return False
    filename = frames[-1].filename  # where the ``raise`` statement is
    if filename.startswith("<"):  # exec'd code: a cell, unless Python's own
        return not filename.startswith(("<frozen", "<string>"))
    return not os.path.abspath(filename).startswith(_LIBRARY_DIRS)


def _show_traceback(shell, exc: BaseException) -> None:
    """Show ``exc`` in the cell as an error, with the line that raised it.

    IPython's own formatter would point at the ``with`` line (the cell is still
    running when we show it), so the traceback is formatted by Python's
    :mod:`traceback`, cells named "Cell In[N]" as IPython names them.
    """
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in (__file__, _CONTEXTLIB):
        tb = tb.tb_next  # this module's and contextlib's frames are noise to a learner
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    for filename in set(re.findall(r'File "([^"]+)"', text)):
        label = getattr(shell.compile, "format_code_name", lambda name: None)(filename)
        if label:
            text = text.replace(f'File "{filename}"', " ".join(label))
    show = getattr(shell, "_showtraceback", None)  # ipykernel: an error output
    if show is None:
        sys.stderr.write(text)
    else:
        show(type(exc), exc, text.rstrip("\n").split("\n"))


_CONTEXTLIB = contextlib.__file__
