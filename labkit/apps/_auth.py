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
import os
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from flask import Flask, Request, Response

from ._json import ApiError

__all__ = ["Auth", "Caller", "DEFAULT_KDF_ITERATIONS", "DEFAULT_USERS", "PasswordBook",
           "check_password"]

# Three people: the course's cast.
DEFAULT_USERS = {"alice": "wonderland", "bob": "builder", "ex": "beach-life"}

# About 15-20 ms per check on a laptop: slow enough to measure, fast enough to teach.
# OWASP asks real servers for 600,000 PBKDF2-SHA256 iterations (a few hundred ms).
DEFAULT_KDF_ITERATIONS = 100_000


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


def check_password(passwords: PasswordBook, username: str, password: str) -> str:
    """Return ``username`` if the password is right; otherwise raise 401.

    One reason for "no such user" and "wrong password" alike: telling them apart
    would let anyone list the accounts.
    """
    if not passwords.verify(username, password):
        raise ApiError(401, "bad_credentials", "Wrong username or password.")
    return username


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
