"""A server-side session store that lives in the server's own memory.

This is the "stateful" half of the course in one small class. A server that keeps
sessions hands each logged-in client a random id (in a cookie) and remembers, in its
own memory, what belongs to that id: who the user is, what they did last. Later
requests carry only the id, and the server looks the rest up here.

Three things make a real store more than a dict, and all three are here:

* **A life.** A session expires when it sits idle too long (``idle_timeout``) and, no
  matter how busy, when it gets too old (``absolute_timeout``). Time comes from an
  injectable ``clock`` so that a notebook or a test can fast-forward it
  (see :class:`ManualClock`).
* **A size bound.** With ``max_sessions`` the store never holds more than that many
  sessions: the least recently used one is evicted to make room (an LRU cache).
* **Accounting.** ``nbytes()`` says how much memory the sessions take, and the
  ``expired`` / ``evicted`` counters say how many were dropped and why.

Like Redis (chapter 04 swaps this store for one with the same interface), the store
keeps a *copy* of the data: changing the dict that ``get`` returned changes nothing
until you ``save`` it. Data must be JSON-serialisable for the same reason.

Example::

    >>> clock = ManualClock()
    >>> store = MemorySessionStore(idle_timeout=60, clock=clock)
    >>> sid = store.new({"user": "alice"})
    >>> store.get(sid)
    {'user': 'alice'}
    >>> clock.advance(61)
    >>> store.get(sid) is None          # idle too long: gone
    True
    >>> store
    <MemorySessionStore 0 sessions, 1 expired, 0 evicted>
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import BadOptionError, SessionDataError, UnknownSessionError

__all__ = ["ManualClock", "MemorySessionStore", "is_session_id", "new_session_id"]


def new_session_id() -> str:
    """Return a fresh session id: 32 random bytes from the OS, URL-safe (43 chars).

    256 bits from :mod:`secrets` (a cryptographic source), well above the 128 bits
    that OWASP ASVS asks for, so nobody can guess a live id.
    """
    return secrets.token_urlsafe(32)


# What new_session_id makes: 43 characters of the URL-safe base64 alphabet.
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")


def is_session_id(value: object) -> bool:
    """True if ``value`` has the shape of an id from :func:`new_session_id`.

    Check a client-chosen id with it before it goes anywhere else (a URL, a path, a
    store key): ``"../update/x"`` is not an id, whatever the client says.

    >>> is_session_id(new_session_id()), is_session_id("../update/x")
    (True, False)
    """
    return isinstance(value, str) and _SESSION_ID.fullmatch(value) is not None


class ManualClock:
    """A clock that only moves when you tell it to, for expiry experiments.

    Pass it as ``clock=`` wherever the kit takes one; it is a zero-argument callable
    returning seconds, like :func:`time.monotonic`.

    >>> clock = ManualClock()
    >>> clock.advance(90)
    >>> clock()
    90.0
    >>> clock
    <ManualClock t=90.0>
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (never backwards: clocks do not rewind)."""
        if seconds < 0:
            raise BadOptionError("a clock only moves forward; pass seconds >= 0")
        with self._lock:
            self._now += float(seconds)

    def __repr__(self) -> str:
        return f"<ManualClock t={self._now!r}>"


@dataclass(slots=True)  # slots: no per-entry __dict__, a smaller and exact footprint
class _Entry:
    payload: str  # the session data as JSON text: what the store really holds
    created: float
    last_seen: float


# What one entry costs besides its id and payload strings: the _Entry object, its
# two floats, and the OrderedDict's slot and link for the key (about 50 bytes, measured
# with tracemalloc on CPython 3.11; tests/state/test_sessions.py keeps the estimate honest).
_ENTRY_OVERHEAD = sys.getsizeof(_Entry("", 0.0, 0.0)) + 2 * sys.getsizeof(0.5) + 50


class MemorySessionStore:
    """Keep sessions in this process's memory, with expiry, a size bound and accounting.

    Arguments (all keyword-only):

    * ``idle_timeout``: seconds a session may sit unused; ``None`` means forever.
    * ``absolute_timeout``: seconds a session may live at all, used or not.
    * ``max_sessions``: most sessions held; beyond it the least recently used one is
      evicted (expired ones are dropped first). ``None`` means no bound.
    * ``clock``: where "now" comes from (default :func:`time.monotonic`).

    Interface (shared with the Redis-backed store of chapter 04):

    * ``new(data=None) -> sid`` starts a session and returns its id.
    * ``get(sid) -> dict | None``: a copy of the data, or ``None`` when the id is
      unknown, expired or revoked. A hit counts as activity (resets the idle timer).
    * ``save(sid, data)`` replaces the data of a live session (also activity). It
      raises ``KeyError`` for an id the store does not hold: a store never adopts an
      id it did not issue.
    * ``delete(sid) -> bool`` revokes a session; True if it was live.
    * ``rotate(sid) -> new sid | None``: same data under a fresh id, old id dead. The
      session keeps its age, so rotating never extends the absolute timeout.
    * ``len(store)``, ``sid in store``, ``nbytes()``, counters ``expired``, ``evicted``.

    >>> store = MemorySessionStore(max_sessions=2)
    >>> a, b, c = store.new(), store.new(), store.new()   # a is evicted to fit c
    >>> a in store, b in store, c in store, store.evicted
    (False, True, True, 1)
    """

    def __init__(
        self,
        *,
        idle_timeout: float | None = None,
        absolute_timeout: float | None = None,
        max_sessions: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for label, value in (("idle_timeout", idle_timeout),
                             ("absolute_timeout", absolute_timeout)):
            if value is not None and value <= 0:
                raise BadOptionError(f"{label} must be a positive number of seconds or None")
        if max_sessions is not None and max_sessions < 1:
            raise BadOptionError("max_sessions must be at least 1, or None for no bound")
        self.idle_timeout = idle_timeout
        self.absolute_timeout = absolute_timeout
        self.max_sessions = max_sessions
        self.clock = clock
        self.expired = 0  # sessions dropped because they timed out
        self.evicted = 0  # sessions dropped to respect max_sessions
        # Oldest use first: moving an entry to the end on every hit makes the first
        # entry the least recently used, which is what LRU eviction drops.
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # Flask serves requests on several threads; one lock keeps the dict coherent.
        self._lock = threading.RLock()

    # -- the interface -------------------------------------------------------------

    def new(self, data: dict | None = None) -> str:
        """Start a session holding ``data`` (default empty) and return its new id."""
        payload = _encode(data or {})
        with self._lock:
            sid = new_session_id()
            while sid in self._entries:  # 2**-256 odds, but a store must never reuse
                sid = new_session_id()
            now = self.clock()
            self._entries[sid] = _Entry(payload, created=now, last_seen=now)
            self._make_room()
            return sid

    def get(self, sid: str | None) -> dict | None:
        """Return a copy of the session's data, or None when unknown/expired/revoked."""
        with self._lock:
            entry = self._live_entry(sid)
            if entry is None:
                return None
            entry.last_seen = self.clock()
            self._entries.move_to_end(sid)
            return json.loads(entry.payload)

    def save(self, sid: str, data: dict) -> None:
        """Replace the data of the live session ``sid``; KeyError if there is none."""
        payload = _encode(data)
        with self._lock:
            entry = self._live_entry(sid)
            if entry is None:
                raise UnknownSessionError("no live session with this id (expired, revoked or "
                               "never issued); start one with new()")
            entry.payload = payload
            entry.last_seen = self.clock()
            self._entries.move_to_end(sid)

    def delete(self, sid: str | None) -> bool:
        """Revoke the session: its id stops working at once. True if it was live."""
        with self._lock:
            live = self._live_entry(sid) is not None
            self._entries.pop(sid, None)
            return live

    def rotate(self, sid: str | None) -> str | None:
        """Move the session to a fresh id and kill the old one; None if not live."""
        with self._lock:
            entry = self._live_entry(sid)
            if entry is None:
                return None
            del self._entries[sid]
            new_sid = new_session_id()
            entry.last_seen = self.clock()
            self._entries[new_sid] = entry  # same data, same age (created kept)
            return new_sid

    def __len__(self) -> int:
        # Count only live sessions: drop the ones that timed out since we last looked.
        with self._lock:
            self.purge()
            return len(self._entries)

    def __contains__(self, sid: object) -> bool:
        # A membership test is not activity: it does not touch the idle timer.
        with self._lock:
            return isinstance(sid, str) and self._live_entry(sid) is not None

    # -- housekeeping and accounting -----------------------------------------------

    def purge(self) -> int:
        """Drop every session that has timed out; return how many were dropped."""
        with self._lock:
            dead = [sid for sid, e in self._entries.items() if self._is_expired(e)]
            for sid in dead:
                del self._entries[sid]
            self.expired += len(dead)
            return len(dead)

    def nbytes(self) -> int:
        """Estimate the bytes of memory the live sessions take in this process.

        Counts each session's id string, its JSON payload string and a fixed
        per-entry overhead (bookkeeping object and dict slot). Growth is what
        matters: it is linear in the number of sessions and in their size.
        """
        with self._lock:
            self.purge()
            return sum(
                sys.getsizeof(sid) + sys.getsizeof(e.payload) + _ENTRY_OVERHEAD
                for sid, e in self._entries.items()
            )

    def clear(self) -> None:
        """Forget every session (what a crash does to a stateful server's memory)."""
        with self._lock:
            self._entries.clear()

    def __repr__(self) -> str:
        with self._lock:
            n = len(self)
            return (f"<MemorySessionStore {n} session{'s' if n != 1 else ''}, "
                    f"{self.expired} expired, {self.evicted} evicted>")

    # -- internals -----------------------------------------------------------------

    def _is_expired(self, entry: _Entry) -> bool:
        now = self.clock()
        if self.idle_timeout is not None and now - entry.last_seen >= self.idle_timeout:
            return True
        return (self.absolute_timeout is not None
                and now - entry.created >= self.absolute_timeout)

    def _live_entry(self, sid: object) -> _Entry | None:
        """The entry for ``sid`` if it is live; an expired one is dropped (lazily)."""
        if not isinstance(sid, str):
            return None
        entry = self._entries.get(sid)
        if entry is None:
            return None
        if self._is_expired(entry):
            del self._entries[sid]
            self.expired += 1
            return None
        return entry

    def _make_room(self) -> None:
        if self.max_sessions is None or len(self._entries) <= self.max_sessions:
            return
        self.purge()  # timed-out sessions go first: dropping them costs nobody
        while len(self._entries) > self.max_sessions:
            self._entries.popitem(last=False)  # the least recently used
            self.evicted += 1


def _encode(data: dict) -> str:
    if not isinstance(data, dict):
        raise SessionDataError(f"session data must be a dict, not {type(data).__name__}")
    try:
        return json.dumps(data, separators=(",", ":"))
    except TypeError as exc:
        raise SessionDataError(f"session data must be JSON-serialisable: {exc}") from None
