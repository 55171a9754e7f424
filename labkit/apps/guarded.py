"""A login app in two profiles: ``"naive"`` to attack, ``"defended"`` to learn from.

Chapter 02 attacks the naive profile on loopback, then repeats each attack against
the defended one. Each defence is one switch in :class:`Defenses`, so you can turn
one off and watch its attack work again::

    create_app("defended")                        # everything on
    create_app("defended", rotate_on_login=False) # ...except a fresh id at login
    create_app("naive")                           # everything off

The defences (OWASP Session Management Cheat Sheet, ASVS 4 V2/V3, ASVS 5 V6/V7):

=================== ====================================================== ==========
switch              what it does                                           naive
=================== ====================================================== ==========
signed_cookie       cookie = id + HMAC signature (itsdangerous), keys from  off
                    ``SECRET_KEY`` / ``SECRET_KEY_FALLBACKS`` (rotation)
reject_unknown_ids  an id the server never issued is refused, not adopted   adopts
rotate_on_login     a fresh id at login; the pre-login id dies              keeps id
revoke_on_logout    logout deletes the session on the server                cookie only
idle_timeout        seconds unused before a session ends                   never
absolute_timeout    seconds before any session ends                        never
cookie_flags        HttpOnly, SameSite=Strict, Secure + ``__Host-`` prefix  none
bind_user_agent     a session used with another User-Agent is revoked       off
ids_in_url          accept ``?sid=...`` in the URL (never do this)          on
guess_limit         bad session ids from one address before 429, counting   no limit
                    the ids sent to ``POST /login`` too; past it, every id
                    that address sends is refused, live ones too
login_failures      wrong passwords for one account within                 no limit
                    ``login_window`` seconds before 429 (ASVS 4 V2.2.1);
                    one address gets four times as many, across accounts
=================== ====================================================== ==========

Reading order: :class:`Defenses` (the switches), then one small class per defence
(:class:`SessionCookie`, :class:`GuessCounter`, :class:`LoginThrottle`,
:class:`SessionBook`), then :func:`create_app`, which only wires them together.

**Loopback profile.** A ``Secure`` cookie is meant for HTTPS, and the course's
servers speak plain HTTP on 127.0.0.1. ``requests`` (like ``http.cookiejar``) stores
such a cookie but never sends it back over plain HTTP, so the user would look logged
out. (Browsers differ: Chrome and Firefox treat ``http://localhost`` and loopback
addresses as secure contexts and do send it there; on other plain-HTTP origins they
refuse to store it.) With ``loopback=True`` (the default) the
defended app leaves ``Secure`` (and the ``__Host-`` prefix, which requires it) off and
says so with a :class:`LoopbackProfileWarning`. ``loopback=False`` is the production
setting.

**Secret key.** With no ``secret_key`` the app makes a random one (32 bytes from
:mod:`secrets`): a key written in the source is a key everybody has.

Bad input gets a 4xx with a JSON reason code, never a 500: 401 ``bad_signature``,
``unknown_session`` (with a fresh id), ``login_required``,
``session_binding_mismatch``, ``bad_credentials``; 415 ``expected_json``; 400
``malformed_json``; 422 ``wrong_shape``; 413 ``body_too_large``; 431
``headers_too_large``; 429 ``too_many_bad_sessions``, ``too_many_failed_logins``.
The distinct 401 reasons are there for teaching: a production server would send
one generic 401 and keep the reason in its log, because telling an attacker *why*
an id failed helps them (an oracle).
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import itsdangerous
from flask import Flask, Response, g, jsonify, request

from ..errors import AppConfigError
from ..state.sessions import MemorySessionStore
# LoginThrottle lives in ._auth (the social app throttles too); named here as before.
from ._auth import (ADDRESS_FACTOR, DEFAULT_USERS, LoginThrottle,  # noqa: F401
                    PasswordBook, check_password)
from ._json import ApiError, install_json_errors, json_body

__all__ = ["DEFENDED", "NAIVE", "Defenses", "LoopbackProfileWarning", "create_app"]

MAX_BODY = 16 * 1024          # bytes; more is 413
MAX_HEADER_BYTES = 8 * 1024   # bytes of all header lines together; more is 431
MAX_NOTE = 500                # characters in one note
MAX_NOTES = 100               # notes kept per user
# Sessions held at most (the least recently used goes first). Every visit without a
# cookie makes a pre-login session: without a bound, a loop of GET / fills memory.
MAX_SESSIONS = 100_000
SIGNING_SALT = "labkit.guarded.sid"  # separates these signatures from other uses of the key


class LoopbackProfileWarning(UserWarning):
    """The defended app runs without ``Secure`` cookies because it serves plain HTTP."""


@dataclass(frozen=True)
class Defenses:
    """Which defences the app applies; see the module docstring for each."""

    signed_cookie: bool
    reject_unknown_ids: bool
    rotate_on_login: bool
    revoke_on_logout: bool
    idle_timeout: float | None
    absolute_timeout: float | None
    cookie_flags: bool
    bind_user_agent: bool
    ids_in_url: bool
    guess_limit: int | None
    login_failures: int | None = None
    login_window: float = 300.0


NAIVE = Defenses(signed_cookie=False, reject_unknown_ids=False, rotate_on_login=False,
                 revoke_on_logout=False, idle_timeout=None, absolute_timeout=None,
                 cookie_flags=False, bind_user_agent=False, ids_in_url=True,
                 guess_limit=None, login_failures=None)
DEFENDED = Defenses(signed_cookie=True, reject_unknown_ids=True, rotate_on_login=True,
                    revoke_on_logout=True, idle_timeout=15 * 60,
                    absolute_timeout=8 * 3600, cookie_flags=True, bind_user_agent=True,
                    ids_in_url=False, guess_limit=20, login_failures=5,
                    login_window=300.0)
PROFILES = {"naive": NAIVE, "defended": DEFENDED}


def _fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]


class _Refused(Exception):
    """A presented session id that cannot be used, and why (a 401 reason code)."""

    def __init__(self, reason: str, message: str, *, fresh_id: bool = False) -> None:
        super().__init__(message)
        self.reason, self.message, self.fresh_id = reason, message, fresh_id


@dataclass
class _Visit:
    """What the cookie of one request turned out to be (kept in ``flask.g.visit``)."""

    sid: str | None = None        # the live session id, if the cookie held one
    data: dict | None = None      # its data
    new_sid: str | None = None    # hand the client this fresh id...
    clear_cookie: bool = False    # ...or tell it to forget its cookie
    resign: bool = False          # verified by a retired key: sign it again


# -- one class per defence --------------------------------------------------------------


class SessionCookie:
    """The cookie: its name and attributes, and (``signed_cookie``) its signature.

    The keys are read from ``app.config`` on every call, so assigning
    ``SECRET_KEY`` / ``SECRET_KEY_FALLBACKS`` on a running app rotates them at once.
    """

    def __init__(self, app: Flask, defenses: Defenses, *, loopback: bool) -> None:
        self.app = app
        self.signed = defenses.signed_cookie
        self.flags = defenses.cookie_flags
        self.secure = defenses.cookie_flags and not loopback
        self.name = "__Host-sid" if self.secure else "sid"  # __Host- requires Secure

    def _keys(self) -> list[str]:
        # Like Flask: the fallbacks (oldest first), then the current key, which signs.
        return [*self.app.config["SECRET_KEY_FALLBACKS"], self.app.config["SECRET_KEY"]]

    def _signer(self, keys: list[str]) -> itsdangerous.Signer:
        return itsdangerous.Signer(keys, salt=SIGNING_SALT, digest_method=hashlib.sha256)

    def decode(self, raw: str) -> tuple[str, bool]:
        """The id inside ``raw``, and whether only a retired key verified it."""
        if not self.signed:
            return raw, False
        try:
            sid = self._signer(self._keys()).unsign(raw).decode()
        except (itsdangerous.BadSignature, UnicodeError):
            raise _Refused("bad_signature", "The session cookie was not signed by this"
                           " server (tampered, garbage, or signed with a retired key)."
                           ) from None
        return sid, not self._signer(self._keys()[-1:]).validate(raw)

    def set(self, response: Response, sid: str) -> None:
        value = self._signer(self._keys()).sign(sid).decode() if self.signed else sid
        if self.flags:
            response.set_cookie(self.name, value, httponly=True, samesite="Strict",
                                secure=self.secure, path="/")
        else:
            response.set_cookie(self.name, value)

    def clear(self, response: Response) -> None:
        response.delete_cookie(self.name, path="/")


class GuessCounter:
    """Bad session ids per client address; past ``limit``, that address gets 429.

    Every bad id counts, including one sent along with ``POST /login``: otherwise
    the login form would be a free oracle for guessing live ids.
    """

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.bad_ids: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count(self, client: str) -> None:
        """Record one bad id from ``client``; raise 429 once it is over the limit."""
        with self._lock:
            self.bad_ids[client] += 1
            over = self.limit is not None and self.bad_ids[client] > self.limit
        if over:
            raise ApiError(429, "too_many_bad_sessions",
                           "Too many invalid session ids from this address.")

    def check(self, client: str) -> None:
        """Raise 429 if ``client`` is already over the limit, whatever id it sends.

        Refusing only the bad ids would leave the oracle open: a flagged guesser
        would go on at full speed and spot a live id by its 200.
        """
        with self._lock:
            over = self.limit is not None and self.bad_ids[client] > self.limit
        if over:
            raise ApiError(429, "too_many_bad_sessions",
                           "Too many invalid session ids from this address.")

    def flagged(self) -> list[str]:
        with self._lock:
            return sorted(c for c, n in self.bad_ids.items()
                          if self.limit is not None and n > self.limit)


class SessionBook:
    """The sessions: a store with timeouts, plus what the naive profile adopts.

    With ``bind_user_agent`` a session remembers a hash of the browser string it was
    created with; another browser string means someone else holds the id.
    """

    def __init__(self, defenses: Defenses, clock: Callable[[], float], *,
                 max_sessions: int | None = MAX_SESSIONS) -> None:
        self.defenses = defenses
        self.store = MemorySessionStore(idle_timeout=defenses.idle_timeout,
                                        absolute_timeout=defenses.absolute_timeout,
                                        max_sessions=max_sessions, clock=clock)
        self.adopted: dict[str, dict] = {}  # naive only: ids the server took from clients

    def lookup(self, sid: str) -> dict:
        """The data of ``sid`` or :class:`_Refused`; the naive app adopts any id."""
        data = self.store.get(sid)
        if data is None and not self.defenses.reject_unknown_ids:
            data = self.adopted.setdefault(sid, {})
        if data is None:
            raise _Refused("unknown_session", "This session is unknown, expired or"
                           " revoked; here is a fresh one.", fresh_id=True)
        return data

    def bound_elsewhere(self, data: dict, user_agent: str) -> bool:
        return (self.defenses.bind_user_agent and "ua" in data
                and data["ua"] != _fingerprint(user_agent))

    def login_data(self, user: str, user_agent: str) -> dict:
        data = {"user": user}
        if self.defenses.bind_user_agent:
            data["ua"] = _fingerprint(user_agent)
        return data

    def new(self, data: dict) -> str:
        return self.store.new(data)

    def save(self, sid: str, data: dict) -> None:
        if sid in self.adopted:
            self.adopted[sid] = data
        else:
            self.store.save(sid, data)

    def delete(self, sid: str) -> None:
        self.store.delete(sid)


# -- the app: wiring ---------------------------------------------------------------------


def _defenses(profile: str | Defenses, overrides: dict[str, Any]) -> Defenses:
    if isinstance(profile, Defenses):
        base = profile
    elif profile in PROFILES:
        base = PROFILES[profile]
    else:
        raise AppConfigError(f"unknown profile {profile!r}: use 'naive', 'defended' or a"
                             " guarded.Defenses(...)")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Defenses)}
    if unknown:
        raise AppConfigError(f"unknown defence switch(es) {sorted(unknown)}; the switches"
                             f" are {[f.name for f in dataclasses.fields(Defenses)]}")
    return dataclasses.replace(base, **overrides)


def create_app(
    profile: str | Defenses = "defended",
    *,
    loopback: bool = True,
    clock: Callable[[], float] = time.monotonic,
    secret_key: str | None = None,
    secret_key_fallbacks: tuple[str, ...] | list[str] = (),
    users: dict[str, str] | None = None,
    kdf_iterations: int = 1_000,
    max_sessions: int | None = MAX_SESSIONS,
    **overrides: Any,
) -> Flask:
    """Build the login app with a profile (``"naive"``, ``"defended"`` or Defenses).

    ``overrides`` switch single defences, e.g. ``rotate_on_login=False``. Keys for the
    signed cookie live in ``app.config["SECRET_KEY"]`` (signs; random when not given)
    and ``app.config["SECRET_KEY_FALLBACKS"]`` (oldest first; still verify), read on
    every request, so changing them on a running app rotates the key at once.
    ``max_sessions`` bounds the sessions held (the least recently used goes first).
    """
    defenses = _defenses(profile, overrides)
    if defenses.cookie_flags and loopback:
        warnings.warn(
            "Loopback profile: session cookies are sent WITHOUT the Secure attribute"
            " (and without the __Host- prefix) because this server speaks plain HTTP"
            " on 127.0.0.1, where requests and other non-browser clients never send a"
            " Secure cookie back. Never use it beyond"
            " loopback: serve HTTPS and pass loopback=False.",
            LoopbackProfileWarning, stacklevel=2)

    app = Flask("labkit.apps.guarded")
    app.config.update(
        SECRET_KEY=secret_key if secret_key is not None else secrets.token_urlsafe(32),
        SECRET_KEY_FALLBACKS=list(secret_key_fallbacks),
        MAX_CONTENT_LENGTH=MAX_BODY,
    )
    install_json_errors(app)
    cookie = SessionCookie(app, defenses, loopback=loopback)
    guesses = GuessCounter(defenses.guess_limit)
    throttle = LoginThrottle(defenses.login_failures, defenses.login_window, clock)
    sessions = SessionBook(defenses, clock, max_sessions=max_sessions)
    passwords = PasswordBook(DEFAULT_USERS if users is None else users,
                             iterations=kdf_iterations)
    notes: dict[str, list[str]] = {}
    notes_lock = threading.Lock()

    app.config["LABKIT_SESSION_COOKIE"] = cookie.name  # the kit logs its hash
    app.extensions["labkit.sessions"] = sessions.store
    app.extensions["labkit.guarded"] = {"defenses": defenses, "bad_ids": guesses.bad_ids,
                                        "adopted": sessions.adopted, "throttle": throttle}

    def client() -> str:
        return request.remote_addr or "?"

    # -- every request: headers, then the session behind the cookie ------------------

    @app.before_request
    def guard_headers() -> None:
        size = sum(len(k) + len(v) + 4 for k, v in request.headers.items())
        if size > MAX_HEADER_BYTES:
            raise ApiError(431, "headers_too_large",
                           f"Request headers over {MAX_HEADER_BYTES} bytes.")

    @app.before_request
    def resolve_session() -> None:
        visit = g.visit = _Visit()
        raw = request.cookies.get(cookie.name)
        if raw is None and defenses.ids_in_url:
            raw = request.args.get("sid")  # the naive app even takes ids from URLs
        if not raw:
            return
        at_login = request.path == "/login"
        guesses.check(client())  # a flagged address may not test any id, live or not
        try:
            sid, visit.resign = cookie.decode(raw)
            data = sessions.lookup(sid)
            if sessions.bound_elsewhere(data, request.user_agent.string):
                if at_login:  # never let a login form end somebody else's session
                    raise _Refused("session_binding_mismatch", "")
                sessions.delete(sid)  # someone else holds this id: end it for everybody
                raise _Refused("session_binding_mismatch", "This session was used from"
                               " another browser; log in again.")
        except _Refused as refused:
            guesses.count(client())  # 429 past the limit, at login too
            if at_login:
                return  # login ignores the id it was sent and hands out a new one
            if refused.fresh_id:
                # A fresh, server-issued id replaces the bad one (OWASP: strict sessions).
                visit.new_sid = sessions.new({})
            else:
                visit.clear_cookie = True
            raise ApiError(401, refused.reason, refused.message) from None
        visit.sid, visit.data = sid, data

    @app.after_request
    def refresh_cookie(response: Response) -> Response:
        visit: _Visit | None = g.get("visit")
        if visit is None:
            return response
        if visit.new_sid:
            cookie.set(response, visit.new_sid)
        elif visit.clear_cookie:
            cookie.clear(response)
        elif visit.resign and visit.sid and "Set-Cookie" not in response.headers:
            cookie.set(response, visit.sid)
        return response

    def current_user() -> str:
        data = g.visit.data
        if data is None:
            raise ApiError(401, "login_required", "Log in first: POST /login.")
        if "user" not in data:
            raise ApiError(401, "login_required", "This session is not logged in.")
        return data["user"]

    # -- views --------------------------------------------------------------------

    @app.get("/")
    def home():
        """Visit: get a (pre-login) session if you have none."""
        response = jsonify(user=(g.visit.data or {}).get("user"))
        if g.visit.sid is None:
            cookie.set(response, sessions.new({}))
        return response

    @app.post("/login")
    def login():
        body = json_body(username=str, password=str)
        user = body["username"]
        check_password(passwords, user, body["password"], throttle=throttle,
                       client=client())  # 429 past the limit, 401 for a wrong password
        visit = g.visit
        data = sessions.login_data(user, request.user_agent.string)
        if visit.sid is not None and not defenses.rotate_on_login:
            sid = visit.sid        # naive: the pre-login id now belongs to the user
            sessions.save(sid, {**visit.data, **data})
        else:
            # The pre-login id dies (fixation), but only if it was a pre-login id or
            # this user's own: a login must never end another user's session.
            if visit.sid is not None and visit.data.get("user") in (None, user):
                sessions.delete(visit.sid)
            sid = sessions.new(data)    # the user gets an id nobody has seen
        response = jsonify(user=user)
        cookie.set(response, sid)
        visit.resign = False
        return response

    @app.post("/logout")
    def logout():
        if g.visit.sid is not None and defenses.revoke_on_logout:
            sessions.delete(g.visit.sid)  # the id stops working everywhere, at once
        response = jsonify(logged_out=True)
        cookie.clear(response)  # naive: only the client forgets
        g.visit.resign = False
        return response

    @app.get("/me")
    def me():
        return {"user": current_user()}

    @app.get("/notes")
    def list_notes():
        user = current_user()
        with notes_lock:
            return {"notes": list(notes.get(user, []))}

    @app.post("/notes")
    def add_note():
        user = current_user()
        text = json_body(text=str)["text"]
        if not text.strip() or len(text) > MAX_NOTE:
            raise ApiError(422, "wrong_shape", f"A note has 1 to {MAX_NOTE} characters.")
        with notes_lock:
            if len(notes.get(user, [])) >= MAX_NOTES:
                raise ApiError(422, "too_many_notes", f"At most {MAX_NOTES} notes each.")
            notes.setdefault(user, []).append(text)
            return {"notes": list(notes[user])}, 201

    @app.get("/security")
    def security():
        """What this server does, for the notebook to show (no secrets in it)."""
        name = next((k for k, v in PROFILES.items() if v == defenses), "custom")
        return {"profile": name, "loopback": loopback, "cookie": cookie.name,
                "defenses": dataclasses.asdict(defenses),
                "flagged_clients": guesses.flagged()}

    return app
