"""Who owns what: the registry of live kit resources and the clean-up at exit.

A notebook cell that is re-run creates its server again under the same name. The
registry lets the new server replace the old one (closing it first, so its port is
free), and lets an ``atexit`` hook close whatever a failed cell left behind.

Child processes the kit starts (forked servers, Redis) must not outlive the kernel
either, even when it is killed and no ``atexit`` runs: :func:`arm_parent_death` asks
the kernel to kill a child when its parent goes, and :func:`die_with_parent` is the
``preexec_fn`` that does it for ``subprocess.Popen``.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import threading
from typing import Callable, Protocol

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

try:  # Resolve prctl in the parent: loading a library after fork() is not safe.
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: no parent-death signal, atexit only
    _prctl = None


class Closable(Protocol):
    def close(self) -> None: ...


_lock = threading.Lock()
_live: dict[str, Closable] = {}


def claim(key: str, owner: Closable) -> None:
    """Register ``owner`` under ``key``, closing any earlier owner of that key."""
    with _lock:
        previous = _live.pop(key, None)
    if previous is not None and previous is not owner:
        previous.close()
    with _lock:
        _live[key] = owner


def release(key: str, owner: Closable) -> None:
    """Forget ``owner`` (called from its ``close()``)."""
    with _lock:
        if _live.get(key) is owner:
            del _live[key]


def close_all() -> None:
    """Close every live resource, newest first (balancers before their servers)."""
    with _lock:
        owners = list(_live.values())
    for owner in reversed(owners):
        try:
            owner.close()
        except Exception:  # clean-up must go on for the others
            pass


atexit.register(close_all)


def arm_parent_death(parent: int) -> None:
    """In a freshly forked child: be killed (SIGKILL) when ``parent`` goes away.

    Linux's PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, not
    the whole process, so callers arm it only when the main thread forked (a
    notebook cell does); elsewhere a watchdog or the ``atexit`` hook cleans up.
    If the parent died before this ran, the child exits at once.
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child dies with this process.

    Armed only when called from the main thread (see :func:`arm_parent_death`)::

        subprocess.Popen(args, preexec_fn=die_with_parent())
    """
    parent = os.getpid()
    armed = threading.current_thread() is threading.main_thread()

    def preexec() -> None:
        if armed:
            arm_parent_death(parent)

    return preexec
