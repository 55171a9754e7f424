"""A login app in two profiles: ``"naive"`` to attack, ``"defended"`` to learn from.

Chapter 02 attacks the naive profile on loopback, then repeats each attack against
the defended one. Each defence is one switch in :class:`Defenses`, so you can turn
one off and watch its attack work again::

    create_app("defended")                        # everything on
    create_app("defended", rotate_on_login=False) # ...except a fresh id at login
    create_app("naive")                           # everything off

The defences (OWASP Session Management Cheat Sheet, ASVS 4 V3 / ASVS 5 V7):

================== ======================================================= =========
switch             what it does                                            naive
================== ======================================================= =========
signed_cookie      cookie = id + HMAC signature (itsdangerous), keys from   off
                   ``SECRET_KEY`` / ``SECRET_KEY_FALLBACKS`` (rotation)
reject_unknown_ids an id the server never issued is refused, not adopted    adopts
rotate_on_login    a fresh id at login; the pre-login id dies               keeps id
revoke_on_logout   logout deletes the session on the server                 cookie only
idle_timeout       seconds unused before a session ends                    never
absolute_timeout   seconds before any session ends                         never
cookie_flags       HttpOnly, SameSite=Strict, Secure + ``__Host-`` prefix   none
bind_user_agent    a session used with another User-Agent is revoked        off
ids_in_url         accept ``?sid=...`` in the URL (never do this)           on
guess_limit        bad session ids from one address before 429             no limit
================== ======================================================= =========

**Loopback profile.** A ``Secure`` cookie is only sent over HTTPS, and the course's
servers speak plain HTTP on 127.0.0.1, where clients (``requests`` included) silently
drop it: the user would look logged out. With ``loopback=True`` (the default) the
defended app leaves ``Secure`` (and the ``__Host-`` prefix, which requires it) off and
says so with a :class:`LoopbackProfileWarning`. ``loopback=False`` is the production
setting.

Bad input gets a 4xx with a JSON reason code, never a 500: 401 ``bad_signature``,
``unknown_session`` (with a fresh id), ``login_required``,
``session_binding_mismatch``; 415 ``expected_json``; 400 ``malformed_json``; 422
``wrong_shape``; 413 ``body_too_large``; 431 ``headers_too_large``; 429
``too_many_bad_sessions``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import itsdangerous
from flask import Flask, Response, g, jsonify, request

from ..state.sessions import MemorySessionStore
from ._json import ApiError, install_json_errors, json_body
from .social import DEFAULT_USERS, PasswordBook

__all__ = ["DEFENDED", "NAIVE", "Defenses", "LoopbackProfileWarning", "create_app"]

MAX_BODY = 16 * 1024          # bytes; more is 413
MAX_HEADER_BYTES = 8 * 1024   # bytes of all header lines together; more is 431
MAX_NOTE = 500                # characters in one note
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


NAIVE = Defenses(signed_cookie=False, reject_unknown_ids=False, rotate_on_login=False,
                 revoke_on_logout=False, idle_timeout=None, absolute_timeout=None,
                 cookie_flags=False, bind_user_agent=False, ids_in_url=True,
                 guess_limit=None)
DEFENDED = Defenses(signed_cookie=True, reject_unknown_ids=True, rotate_on_login=True,
                    revoke_on_logout=True, idle_timeout=15 * 60,
                    absolute_timeout=8 * 3600, cookie_flags=True, bind_user_agent=True,
                    ids_in_url=False, guess_limit=20)
PROFILES = {"naive": NAIVE, "defended": DEFENDED}


def _fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]


def create_app(
    profile: str | Defenses = "defended",
    *,
    loopback: bool = True,
    clock: Callable[[], float] = time.monotonic,
    secret_key: str = "course-key-2024",
    secret_key_fallbacks: tuple[str, ...] | list[str] = (),
    users: dict[str, str] | None = None,
    kdf_iterations: int = 1_000,
    **overrides: Any,
) -> Flask:
    """Build the login app with a profile (``"naive"``, ``"defended"`` or Defenses).

    ``overrides`` switch single defences, e.g. ``rotate_on_login=False``. Keys for the
    signed cookie live in ``app.config["SECRET_KEY"]`` (signs) and
    ``app.config["SECRET_KEY_FALLBACKS"]`` (oldest first; still verify), read on every
    request, so changing them on a running app rotates the key at once.
    """
    base = PROFILES[profile] if isinstance(profile, str) else profile
    defenses = dataclasses.replace(base, **overrides)
    secure = defenses.cookie_flags and not loopback
    cookie_name = "__Host-sid" if secure else "sid"  # __Host- requires Secure
    if defenses.cookie_flags and loopback:
        warnings.warn(
            "Loopback profile: session cookies are sent WITHOUT the Secure attribute"
            " (and without the __Host- prefix) because this server speaks plain HTTP"
            " on 127.0.0.1, where clients drop Secure cookies. Never use it beyond"
            " loopback: serve HTTPS and pass loopback=False.",
            LoopbackProfileWarning, stacklevel=2)

    store = MemorySessionStore(idle_timeout=defenses.idle_timeout,
                               absolute_timeout=defenses.absolute_timeout, clock=clock)
    adopted: dict[str, dict] = {}  # naive only: ids the server took from clients
    passwords = PasswordBook(DEFAULT_USERS if users is None else users,
                             iterations=kdf_iterations)
    notes: dict[str, list[str]] = {}
    bad_ids: Counter[str] = Counter()  # bad session ids seen, per client address
    lock = threading.Lock()

    app = Flask("labkit.apps.guarded")
    app.config.update(
        SECRET_KEY=secret_key,
        SECRET_KEY_FALLBACKS=list(secret_key_fallbacks),
        MAX_CONTENT_LENGTH=MAX_BODY,
        LABKIT_SESSION_COOKIE=cookie_name,
    )
    app.extensions["labkit.sessions"] = store
    app.extensions["labkit.guarded"] = {"defenses": defenses, "bad_ids": bad_ids,
                                        "adopted": adopted}
    install_json_errors(app)

    # -- the cookie: sign, verify, set --------------------------------------------

    def signer(keys: list[str]) -> itsdangerous.Signer:
        return itsdangerous.Signer(keys, salt=SIGNING_SALT, digest_method=hashlib.sha256)

    def keys() -> list[str]:
        # Like Flask: the fallbacks (oldest first), then the current key, which signs.
        return [*app.config["SECRET_KEY_FALLBACKS"], app.config["SECRET_KEY"]]

    def encode(sid: str) -> str:
        return signer(keys()).sign(sid).decode() if defenses.signed_cookie else sid

    def set_session_cookie(response: Response, sid: str) -> None:
        if defenses.cookie_flags:
            response.set_cookie(cookie_name, encode(sid), httponly=True,
                                samesite="Strict", secure=secure, path="/")
        else:
            response.set_cookie(cookie_name, encode(sid))

    def reject(reason: str, message: str, *, fresh_id: bool = False) -> None:
        """Refuse a bad session id; count it against the client; maybe hand a new id."""
        client = request.remote_addr or "?"
        with lock:
            bad_ids[client] += 1
            flagged = defenses.guess_limit is not None and bad_ids[client] > defenses.guess_limit
        if flagged:
            raise ApiError(429, "too_many_bad_sessions",
                           "Too many invalid session ids from this address.")
        error = ApiError(401, reason, message)
        if fresh_id:
            # A fresh, server-issued id replaces the bad one (OWASP: strict sessions).
            g.new_sid = store.new({})
        else:
            g.clear_cookie = True
        raise error

    # -- resolving the session of each request --------------------------------------

    @app.before_request
    def guard_headers() -> None:
        size = sum(len(k) + len(v) + 4 for k, v in request.headers.items())
        if size > MAX_HEADER_BYTES:
            raise ApiError(431, "headers_too_large",
                           f"Request headers over {MAX_HEADER_BYTES} bytes.")

    @app.before_request
    def resolve_session() -> None:
        g.sid, g.data = None, None
        raw = request.cookies.get(cookie_name)
        if raw is None and defenses.ids_in_url:
            raw = request.args.get("sid")  # the naive app even takes ids from URLs
        lenient = request.path == "/login"  # login issues a new id anyway
        if not raw:
            return
        sid = raw
        if defenses.signed_cookie:
            try:
                sid = signer(keys()).unsign(raw).decode()
            except (itsdangerous.BadSignature, UnicodeDecodeError):
                if lenient:
                    return
                reject("bad_signature", "The session cookie was not signed by this"
                       " server (tampered, garbage, or signed with a retired key).")
            # Verified by an old key only: re-sign it with the current key (below).
            g.resign = not signer(keys()[-1:]).validate(raw)
        data = store.get(sid)
        if data is None and not defenses.reject_unknown_ids:
            data = adopted.setdefault(sid, {})  # the naive app adopts any id
        if data is None:
            if lenient:
                return
            reject("unknown_session", "This session is unknown, expired or revoked;"
                   " here is a fresh one.", fresh_id=True)
        if defenses.bind_user_agent and "ua" in data and (
                data["ua"] != _fingerprint(request.user_agent.string)):
            store.delete(sid)  # someone else holds this id: end it for everybody
            g.clear_cookie = True
            raise ApiError(401, "session_binding_mismatch",
                           "This session was used from another browser; log in again.")
        g.sid, g.data = sid, data

    @app.after_request
    def refresh_cookie(response: Response) -> Response:
        if getattr(g, "new_sid", None):
            set_session_cookie(response, g.new_sid)
        elif getattr(g, "clear_cookie", False):
            response.delete_cookie(cookie_name, path="/")
        elif getattr(g, "resign", False) and g.sid and "Set-Cookie" not in response.headers:
            set_session_cookie(response, g.sid)
        return response

    def save(sid: str, data: dict) -> None:
        if sid in adopted:
            adopted[sid] = data
        else:
            store.save(sid, data)

    def current_user() -> str:
        if g.data is None:
            raise ApiError(401, "login_required", "Log in first: POST /login.")
        if "user" not in g.data:
            raise ApiError(401, "login_required", "This session is not logged in.")
        return g.data["user"]

    # -- views --------------------------------------------------------------------

    @app.get("/")
    def home():
        """Visit: get a (pre-login) session if you have none."""
        response = jsonify(user=(g.data or {}).get("user"))
        if g.sid is None:
            set_session_cookie(response, store.new({}))
        return response

    @app.post("/login")
    def login():
        body = json_body(username=str, password=str)
        if not passwords.verify(body["username"], body["password"]):
            raise ApiError(401, "bad_credentials", "Wrong username or password.")
        data = {"user": body["username"]}
        if defenses.bind_user_agent:
            data["ua"] = _fingerprint(request.user_agent.string)
        if g.sid is not None and not defenses.rotate_on_login:
            sid = g.sid            # naive: the pre-login id now belongs to the user
            save(sid, {**g.data, **data})
        else:
            if g.sid is not None:
                store.delete(g.sid)  # the pre-login id dies...
            sid = store.new(data)    # ...and the user gets one nobody has seen
        response = jsonify(user=body["username"])
        set_session_cookie(response, sid)
        g.resign = False
        return response

    @app.post("/logout")
    def logout():
        if g.sid is not None and defenses.revoke_on_logout:
            store.delete(g.sid)  # the id stops working everywhere, at once
        response = jsonify(logged_out=True)
        response.delete_cookie(cookie_name, path="/")  # naive: the client forgets
        g.resign = False
        return response

    @app.get("/me")
    def me():
        return {"user": current_user()}

    @app.get("/notes")
    def list_notes():
        user = current_user()
        with lock:
            return {"notes": list(notes.get(user, []))}

    @app.post("/notes")
    def add_note():
        user = current_user()
        text = json_body(text=str)["text"]
        if not text.strip() or len(text) > MAX_NOTE:
            raise ApiError(422, "wrong_shape", f"A note has 1 to {MAX_NOTE} characters.")
        with lock:
            notes.setdefault(user, []).append(text)
            return {"notes": list(notes[user])}, 201

    @app.get("/security")
    def security():
        """What this server does, for the notebook to show (no secrets in it)."""
        return {"profile": "custom" if defenses not in PROFILES.values() else
                next(k for k, v in PROFILES.items() if v == defenses),
                "loopback": loopback, "cookie": cookie_name,
                "defenses": dataclasses.asdict(defenses),
                "flagged_clients": sorted(
                    c for c, n in bad_ids.items()
                    if defenses.guess_limit is not None and n > defenses.guess_limit)}

    return app
