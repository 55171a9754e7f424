"""What every course app shares about "who is asking": passwords, callers, auth modes.

* :class:`PasswordBook` -- users and their salted, slow password hashes;
* :func:`check_password` -- the one "check the password or answer 401" of the apps;
* :class:`Caller` and :class:`Auth` -- the seam through which the social app learns
  who sent a request, whatever the mode (session cookie, Basic, token).

:mod:`labkit.apps.social` and :mod:`labkit.apps.token_auth` both import this module,
and neither imports the other at the top, so there is no import cycle.

>>> book = PasswordBook({"alice": "wonderland"}, iterations=1_000)
>>> book.verify("alice", "wonderland"), book.verify("alice", "guess")
(True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from flask import Flask, Request, Response

from ._json import ApiError

__all__ = ["ADDRESS_FACTOR", "Auth", "Caller", "DEFAULT_KDF_ITERATIONS", "DEFAULT_USERS",
           "LoginThrottle", "PasswordBook", "check_password"]

# Three people: the course's cast.
DEFAULT_USERS = {"alice": "wonderland", "bob": "builder", "ex": "beach-life"}

# About 15-20 ms per check on a laptop: slow enough to measure, fast enough to teach.
# OWASP asks real servers for 600,000 PBKDF2-SHA256 iterations (a few hundred ms).
DEFAULT_KDF_ITERATIONS = 100_000
ADDRESS_FACTOR = 4  # one address may fail this many times more than one account


def _utf8(text: str) -> bytes:
    # "surrogatepass": a lone surrogate that slipped past the JSON reader still hashes
    # (to a value no real password has) instead of crashing into a 500.
    return text.encode("utf-8", "surrogatepass")


class PasswordBook:
    """Users and their salted password hashes; counts every (slow) verification.

    >>> book = PasswordBook({"alice": "wonderland"}, iterations=1_000)
    >>> book.verify("alice", "wonderland"), book.verify("nobody", "x")
    (True, False)
    >>> book.verifications
    2
    """

    def __init__(self, users: dict[str, str], *, iterations: int = DEFAULT_KDF_ITERATIONS
                 ) -> None:
        self.iterations = iterations
        self.verifications = 0      # how many times a password was checked
        self.kdf_seconds = 0.0      # time spent inside the KDF, in total
        self._lock = threading.Lock()
        self._hashes = {name: self._derive(pw, os.urandom(16)) for name, pw in users.items()}
        # Unknown users get checked against a dummy hash, so that "no such user" takes
        # as long as "wrong password" and timing does not reveal who has an account.
        self._dummy = self._derive("not a password", os.urandom(16))

    def _derive(self, password: str, salt: bytes) -> tuple[bytes, bytes]:
        return salt, hashlib.pbkdf2_hmac("sha256", _utf8(password), salt, self.iterations)

    def verify(self, username: str, password: str) -> bool:
        """Check a password the slow way; True if it matches."""
        salt, expected = self._hashes.get(username, self._dummy)
        start = time.perf_counter()
        _, got = self._derive(password, salt)
        with self._lock:
            self.verifications += 1
            self.kdf_seconds += time.perf_counter() - start
        return username in self._hashes and hmac.compare_digest(got, expected)

    def __contains__(self, username: object) -> bool:
        return username in self._hashes

    def __len__(self) -> int:
        return len(self._hashes)


def check_password(passwords: PasswordBook, username: str, password: str, *,
                   throttle: LoginThrottle | None = None, client: str = "?") -> str:
    """Return ``username`` if the password is right; otherwise raise 401.

    One reason for "no such user" and "wrong password" alike: telling them apart
    would let anyone list the accounts. With a ``throttle``, 429 when ``username``
    or ``client`` has failed too often lately (see :class:`LoginThrottle`).
    """
    if throttle is not None:
        throttle.check(username, client)             # cheap: before the slow hash
    ok = passwords.verify(username, password)
    if throttle is not None:
        throttle.settle(username, client, ok)        # 429 if over by now, whatever ok is
    if not ok:
        raise ApiError(401, "bad_credentials", "Wrong username or password.")
    return username


class LoginThrottle:
    """Slow down password guessing (ASVS 4 V2.2.1): a window of failures per key.

    Keys are ``"user:<name>"`` (limit ``failures``) and ``"addr:<ip>"`` (limit
    ``failures * ADDRESS_FACTOR``, against one address spraying many accounts). A key
    with that many failures in the last ``window`` seconds is refused with 429 and
    ``Retry-After`` *before* the password is checked: even the right password waits,
    or the lock would only slow down the attacker's wrong guesses. The count is
    checked again after the password check, in one locked step with recording the
    outcome (:meth:`settle`), so guesses sent all at once get no more answers than
    the limit. A success clears the account's failures (not the address's: an
    attacker could log in to their own account between guesses).

    >>> throttle = LoginThrottle(2, 60.0, clock=lambda: 0.0)
    >>> for _ in range(2):
    ...     throttle.check("alice", "10.0.0.9"); throttle.settle("alice", "10.0.0.9", False)
    >>> throttle.check("alice", "10.0.0.9")
    Traceback (most recent call last):
    ...
    labkit.serving.json_api.ApiError: 429 Too Many Requests: Too many wrong passwords; try again in 60 s.
    """

    def __init__(self, failures: int | None, window: float,
                 clock: Callable[[], float]) -> None:
        self.failures = failures
        self.window = window
        self.clock = clock
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _keys(self, user: str, client: str) -> list[tuple[str, int]]:
        assert self.failures is not None
        # Keyed by a hash of the name: a client-chosen string never becomes a key as is
        # (a 16 KiB "user name" would cost 16 KiB of memory per failure).
        user = hashlib.sha256(user.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return [(f"user:{user}", self.failures),
                (f"addr:{client}", self.failures * ADDRESS_FACTOR)]

    def check(self, user: str, client: str) -> None:
        """Raise 429 if ``user`` or ``client`` is over its limit (before the slow check)."""
        if self.failures is None:
            return
        with self._lock:
            self._refuse_if_over(user, client, self.clock())

    def settle(self, user: str, client: str, ok: bool) -> None:
        """Record how a password check came out, or raise 429 if over the limit now.

        The count is checked again *after* the (slow) password check, in one locked
        step with recording the failure. Counting only before would be a race: twenty
        guesses sent at once would all pass the first check before any failure was
        counted. Over the limit, the answer is 429 whatever the password was, so a
        guess beyond the limit tells the guesser nothing; a right password under
        the limit clears the account's failures.
        """
        if self.failures is None:
            return
        now = self.clock()
        with self._lock:
            self._refuse_if_over(user, client, now)
            keys = self._keys(user, client)
            if ok:
                self._seen.pop(keys[0][0], None)
            else:
                for key, _ in keys:
                    self._recent(key, now).append(now)

    def _refuse_if_over(self, user: str, client: str, now: float) -> None:
        waits = []
        for key, limit in self._keys(user, client):
            times = self._recent(key, now)
            if len(times) >= limit:
                waits.append(times[len(times) - limit] + self.window - now)
        if waits:
            retry = max(1, math.ceil(max(waits)))
            raise ApiError(429, "too_many_failed_logins",
                           f"Too many wrong passwords; try again in {retry} s.",
                           headers=[("Retry-After", str(retry))])

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._seen.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(self._seen) > 10_000:  # forget quiet keys, so memory stays bounded
            for old in [k for k, t in self._seen.items() if not t and k != key]:
                del self._seen[old]
        return times


@dataclass
class Caller:
    """Who sent this request, and (stateful modes) the session data that came with it."""

    user: str
    session: dict | None = None
    sid: str | None = None


class Auth(Protocol):
    """How an app in some mode knows who is asking. The seam for new modes.

    ``install`` runs once when the app is built; ``identify`` runs on every request
    and returns a :class:`Caller` or raises :class:`ApiError` (401); ``login`` runs
    after a correct password and returns extra JSON for the login answer (a token
    mode returns its token here); ``remember`` saves ``caller.session`` back;
    ``logout`` ends whatever ``login`` started.
    """

    name: str

    def install(self, app: Flask, passwords: PasswordBook) -> None: ...
    def identify(self, req: Request) -> Caller: ...
    def login(self, user: str, response: Response) -> dict: ...
    def remember(self, caller: Caller) -> None: ...
    def logout(self, req: Request, response: Response) -> None: ...
