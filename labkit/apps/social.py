"""The course's small social network: users, posts, "HAHA" reactions, a chat bot.

Several chapters serve this one app, in different *modes* that differ only in how
the server knows who is asking:

* ``mode="session"`` (stateful): ``POST /login`` checks the password once, stores
  ``{"user": ...}`` in a server-side session store and sets a ``sid`` cookie. Every
  later request carries only that cookie; the server looks the user up in memory.
* ``mode="basic"`` (re-authenticate every time): there is no session. Each request
  carries the username and password (HTTP Basic auth) and the server checks the
  password again, every single time.
* ``mode="token"`` or ``mode=tokens.TokenAuth(key)`` (chapter 05): a signed token
  (JWT) at login, checked on every request, nothing remembered
  (:mod:`labkit.apps.token_auth`). Any object with the :class:`Auth` methods can be
  passed as ``mode=`` too (see :data:`AUTH_MODES`).

Passwords are checked with a deliberately slow key-derivation function
(PBKDF2-HMAC-SHA256), as real servers do, so that "checking the password again" has
a real, measurable cost. ``GET /stats`` counts the checks.

Routes (JSON in, JSON out; errors are ``{"error": "<reason>"}`` with a 4xx):

====================================  ===============================================
``POST /login``                       ``{"username", "password"}``; 200 or 401
                                      (429 after repeated wrong passwords)
``POST /logout``                      ends the session (session mode)
``GET  /me``                          who the server thinks you are
``GET  /posts``, ``GET /posts/<id>``  posts with their reaction counts
``POST /posts/<id>/react``            ``{"reaction": "HAHA"}``
``POST /chat``                        ``{"message"}``; context kept on the server
``POST /chat/replay``                 ``{"history": [...], "message"}``; the client
                                      sends the whole context every time
``GET  /stats``                       verifications, sessions, session bytes
====================================  ===============================================

Every response carries ``X-Request-Bytes``: the size of the request as the server
received it (request line, headers and body), to compare what each design sends.

Example::

    >>> app = create_app(mode="session")
    >>> client = app.test_client()
    >>> client.post("/login", json={"username": "alice", "password": "wonderland"}).json
    {'mode': 'session', 'user': 'alice'}
    >>> client.post("/posts/1/react", json={"reaction": "HAHA"}).json["reactions"]
    {'HAHA': 1}
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Request, Response, jsonify, request

from ..errors import AppConfigError
from ..state import tokens
from ..state.sessions import MemorySessionStore
from ._auth import (DEFAULT_KDF_ITERATIONS, DEFAULT_USERS, Auth, Caller, LoginThrottle,
                    PasswordBook, check_password)
from ._json import ApiError, install_json_errors, json_body
from .token_auth import TokenMode, token_mode

__all__ = ["AUTH_MODES", "Auth", "BasicAuth", "Caller", "PasswordBook", "SessionAuth",
           "create_app", "DEFAULT_USERS", "REACTIONS", "reply_to"]

# DEFAULT_KDF_ITERATIONS, DEFAULT_USERS, Auth, Caller and PasswordBook live in
# ._auth (shared with the other apps) and are re-exported here, where chapters
# have always found them: social.DEFAULT_USERS, social.PasswordBook.

DEFAULT_POSTS = (
    ("ex", "Enjoying life at the beach, never been happier!"),
    ("bob", "Fixed my bike all by myself."),
)
REACTIONS = ("LIKE", "LOVE", "HAHA", "WOW", "SAD", "ANGRY")
# What one conversation kept on the server may hold. Without a bound, one logged-in
# client grows its session by a megabyte per request (the body limit) for ever.
MAX_MESSAGE = 4_096   # characters in one chat message
MAX_TURNS = 1_000     # messages kept in one session's history


class SessionAuth:
    """Stateful: check the password once, then know the user by a session cookie."""

    name = "session"
    cookie = "sid"

    def __init__(self, store: Any | None = None, **store_options: Any) -> None:
        self.store = store if store is not None else MemorySessionStore(**store_options)

    def install(self, app: Flask, passwords: PasswordBook) -> None:
        app.config["LABKIT_SESSION_COOKIE"] = self.cookie  # the kit logs its hash
        app.extensions["labkit.sessions"] = self.store      # the kit counts sessions

    def identify(self, req: Request) -> Caller:
        sid = req.cookies.get(self.cookie)
        if not sid:
            raise ApiError(401, "login_required", "Log in first: POST /login.")
        data = self.store.get(sid)  # no password check here: that is the point
        if data is None:
            raise ApiError(401, "unknown_session",
                           "This session is unknown or has expired; log in again.")
        return Caller(user=data["user"], session=data, sid=sid)

    def login(self, user: str, response: Response) -> dict:
        sid = self.store.new({"user": user, "history": []})
        response.set_cookie(self.cookie, sid, httponly=True, samesite="Lax")
        return {}

    def remember(self, caller: Caller) -> None:
        if caller.sid is not None and caller.session is not None:
            try:
                self.store.save(caller.sid, caller.session)
            except KeyError:  # expired between identify and now: nothing to keep
                pass

    def logout(self, req: Request, response: Response) -> None:
        self.store.delete(req.cookies.get(self.cookie))
        response.delete_cookie(self.cookie)


class BasicAuth:
    """Stateless about users: every request carries the password, checked every time."""

    name = "basic"

    def install(self, app: Flask, passwords: PasswordBook) -> None:
        self.passwords = passwords
        self.throttle = app.extensions["labkit.social"]["throttle"]

    def identify(self, req: Request) -> Caller:
        try:
            auth = req.authorization
        except ValueError:  # werkzeug's parser fails on non-ASCII bytes after "Basic "
            auth = None
        if auth is None or auth.type != "basic" or not auth.username:
            raise ApiError(401, "credentials_required",
                           "Send your username and password with every request.")
        # Every request checks a password here: each one is a guess to throttle.
        return Caller(user=check_password(self.passwords, auth.username,
                                          auth.password or "", throttle=self.throttle,
                                          client=req.remote_addr or "?"))

    def login(self, user: str, response: Response) -> dict:
        return {}  # nothing to remember: the next request brings the password again

    def remember(self, caller: Caller) -> None:
        pass

    def logout(self, req: Request, response: Response) -> None:
        pass


#: Mode names accepted by :func:`create_app`; each maps to a constructor taking the
#: store options as keyword arguments (``store=``, ``idle_timeout=``, ``clock=``...)
#: and returning an :class:`Auth`. A new mode is either passed directly,
#: ``create_app(mode=MyAuth())``, or registered here: ``AUTH_MODES["mine"] = ...``.
AUTH_MODES: dict[str, Callable[..., Auth]] = {
    "session": SessionAuth,
    "basic": lambda **_: BasicAuth(),
    "token": token_mode,
}


def reply_to(history: list[str], message: str) -> str:
    """The chat bot's answer: it needs the *whole* conversation to give it.

    A toy stand-in for a model that "learns" from previous context: it answers with
    the word you have used most across every message so far.

    >>> reply_to(["I like tea", "tea is hot"], "more tea please")
    "turn 3: your favourite word so far is 'tea' (3 times)"
    """
    words = Counter(w.strip(".,!?").lower() for m in [*history, message] for w in m.split())
    words.pop("", None)
    if not words:
        return f"turn {len(history) + 1}: say something!"
    # Most frequent first; ties broken alphabetically so the answer is deterministic.
    word, count = min(words.items(), key=lambda kv: (-kv[1], kv[0]))
    return (f"turn {len(history) + 1}: your favourite word so far is {word!r} "
            f"({count} time{'s' if count != 1 else ''})")


@dataclass
class _Post:
    id: int
    author: str
    text: str
    reactions: Counter = field(default_factory=Counter)

    def as_json(self) -> dict:
        return {"id": self.id, "author": self.author, "text": self.text,
                "reactions": dict(sorted(self.reactions.items()))}


def create_app(
    mode: str | Auth = "session",
    *,
    store: Any | None = None,
    idle_timeout: float | None = None,
    absolute_timeout: float | None = None,
    max_sessions: int | None = None,
    clock: Callable[[], float] = time.monotonic,
    users: dict[str, str] | None = None,
    extra_users: int = 0,
    kdf_iterations: int = DEFAULT_KDF_ITERATIONS,
    login_failures: int | None = 5,
    login_window: float = 300.0,
) -> Flask:
    """Build the social app in the given ``mode`` (``"session"`` or ``"basic"``).

    Arguments:

    * ``mode``: a name from :data:`AUTH_MODES`, or an :class:`Auth` object.
    * ``store``: the session store (session mode). Default: a fresh
      :class:`~labkit.state.sessions.MemorySessionStore` built with ``idle_timeout``,
      ``absolute_timeout``, ``max_sessions`` and ``clock``, living in this app's
      memory (so it dies with the server).
    * ``users``: ``{name: password}``; default :data:`DEFAULT_USERS`.
      ``extra_users=n`` adds ``user1`` ... ``usern`` with password ``pw-user1`` etc.
    * ``kdf_iterations``: PBKDF2 cost; lower it for experiments with many logins.
    * ``login_failures``: wrong passwords for one account within ``login_window``
      seconds before ``429 too_many_failed_logins`` (one address gets four times as
      many, across accounts; ASVS 4 V2.2.1); ``None`` turns the throttle off.
    """
    if isinstance(mode, str):
        if mode not in AUTH_MODES:
            raise AppConfigError(f"unknown mode {mode!r}; choose one of {sorted(AUTH_MODES)}"
                             " or pass an Auth object")
        auth = AUTH_MODES[mode](store=store, idle_timeout=idle_timeout,
                                absolute_timeout=absolute_timeout,
                                max_sessions=max_sessions, clock=clock)
    elif isinstance(mode, tokens.TokenAuth):
        auth = TokenMode(mode)  # the JWT rules, plugged into the app as an Auth
    else:
        auth = mode

    people = dict(DEFAULT_USERS if users is None else users)
    people.update({f"user{i}": f"pw-user{i}" for i in range(1, extra_users + 1)})
    passwords = PasswordBook(people, iterations=kdf_iterations)
    posts = {i: _Post(i, author, text) for i, (author, text) in enumerate(DEFAULT_POSTS, 1)}
    posts_lock = threading.Lock()
    chat_lock = threading.Lock()  # one conversation update at a time (see /chat)

    app = Flask("labkit.apps.social")
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    throttle = LoginThrottle(login_failures, login_window, time.monotonic)
    app.extensions["labkit.social"] = {"auth": auth, "passwords": passwords,
                                       "throttle": throttle}
    install_json_errors(app)
    auth.install(app, passwords)

    @app.after_request
    def _count_bytes(response: Response) -> Response:
        response.headers["X-Request-Bytes"] = str(_request_size(request))
        return response

    @app.post("/login")
    def login():
        body = json_body(username=str, password=str)
        check_password(passwords, body["username"], body["password"], throttle=throttle,
                       client=request.remote_addr or "?")  # 429 after repeated failures
        # The mode decides what "logged in" means: a cookie, nothing, a token...
        response = Response(mimetype="application/json")
        extra = auth.login(body["username"], response)
        response.set_data(json.dumps({"mode": auth.name, "user": body["username"], **extra}))
        return response

    @app.post("/logout")
    def logout():
        response = jsonify(logged_out=True)
        auth.logout(request, response)
        return response

    @app.get("/me")
    def me():
        return {"mode": auth.name, "user": auth.identify(request).user}

    @app.get("/posts")
    def list_posts():
        with posts_lock:
            return {"posts": [p.as_json() for p in posts.values()]}

    @app.get("/posts/<int:post_id>")
    def show_post(post_id: int):
        with posts_lock:
            return _post(posts, post_id).as_json()

    @app.post("/posts/<int:post_id>/react")
    def react(post_id: int):
        caller = auth.identify(request)
        body = json_body(reaction=str)
        if body["reaction"] not in REACTIONS:
            raise ApiError(422, "unknown_reaction", f"Pick one of {', '.join(REACTIONS)}.")
        with posts_lock:
            post = _post(posts, post_id)
            post.reactions[body["reaction"]] += 1
            return {**post.as_json(), "by": caller.user}

    @app.post("/chat")
    def chat():
        caller = auth.identify(request)
        if caller.session is None:
            raise ApiError(409, "no_server_context",
                           f"Mode {auth.name!r} keeps no context; use POST /chat/replay.")
        message = json_body(message=str)["message"]
        if len(message) > MAX_MESSAGE:
            raise ApiError(422, "message_too_long",
                           f"A chat message has at most {MAX_MESSAGE} characters.")
        # Read, append, save as one step: two messages sent at once would otherwise
        # both start from the same history, and the second save would drop the first.
        with chat_lock:
            caller = auth.identify(request)  # the session as it is now
            history = caller.session.setdefault("history", [])
            if len(history) >= MAX_TURNS:
                raise ApiError(422, "conversation_full", f"A conversation kept on the"
                               f" server holds {MAX_TURNS} messages; log in again for a"
                               " new one.")
            answer = reply_to(history, message)
            history.append(message)      # the context grows on the server...
            auth.remember(caller)
        return {"reply": answer, "turn": len(history)}

    @app.post("/chat/replay")
    def chat_replay():
        auth.identify(request)
        body = json_body(history=list, message=str)
        if not all(isinstance(m, str) for m in body["history"]):
            raise ApiError(422, "wrong_shape", "history must be a list of strings.")
        # ...or the client carries it and sends all of it, every time.
        return {"reply": reply_to(body["history"], body["message"]),
                "turn": len(body["history"]) + 1}

    @app.get("/stats")
    def stats():
        store_ = app.extensions.get("labkit.sessions")
        return {
            "mode": auth.name,
            "users": len(passwords),
            "verifications": passwords.verifications,
            "sessions": len(store_) if store_ is not None else None,
            "session_bytes": store_.nbytes() if hasattr(store_, "nbytes") else None,
        }

    return app


def _post(posts: dict[int, _Post], post_id: int) -> _Post:
    try:
        return posts[post_id]
    except KeyError:
        raise ApiError(404, "no_such_post", f"There is no post {post_id}.") from None


def _request_size(req: Request) -> int:
    """Bytes of the request as received: request line, headers, blank line, body.

    Rebuilt from what the server parsed (WSGI keeps no raw copy); header names keep
    their length when WSGI upper-cases them, so the count matches the wire.
    """
    env = req.environ
    uri = env.get("REQUEST_URI") or env.get("RAW_URI") or req.full_path
    size = len(f"{req.method} {uri} {env.get('SERVER_PROTOCOL', 'HTTP/1.1')}\r\n")
    for key, value in env.items():
        if key.startswith("HTTP_") or key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if value == "" and key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                continue
            name = key[5:] if key.startswith("HTTP_") else key
            size += len(name) + 2 + len(str(value).encode("latin-1", "replace")) + 2
    return size + 2 + (req.content_length or 0)
