"""Who owns what: the registry of live kit resources and the clean-up at exit.

A notebook cell that is re-run creates its server again under the same name. The
registry lets the new server replace the old one (closing it first, so its port is
free), and lets an ``atexit`` hook close whatever a failed cell left behind.
"""

from __future__ import annotations

import atexit
import threading
from typing import Protocol


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
