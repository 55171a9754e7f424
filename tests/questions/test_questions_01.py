"""Chapter 01 checks: the reference passes, the released stubs fail, and one answer
table of valid alternatives and wrong answers (each wrong one must fail naming what
broke)."""

from __future__ import annotations

import json
import random
import secrets
import threading
import time
import uuid
from collections import OrderedDict, deque
from pathlib import Path

from flask import Flask, jsonify, make_response, request, session

from exercise_kit import (assert_case, assert_released_stubs_fail, reference, table, valid,
                          wrong)
from labkit.apps import social

SOLUTION = Path(__file__).resolve().parents[2] / "solutions" / "01_stateful_sessions_exercises.ipynb"
REF = reference(SOLUTION)
Store = REF["SessionStore"]


# -- 01.session_store: valid alternatives ---------------------------------------------

class TimestampStore:
    """A plain dict with last-used times; evicts min(last_used). Valid since the
    check's clock moves between operations (it used to tie and fail)."""

    def __init__(self, *, idle_timeout=None, max_sessions=None, clock=time.monotonic):
        self.idle, self.max, self.clock = idle_timeout, max_sessions, clock
        self.data: dict = {}
        self.used: dict = {}
        self.lock = threading.Lock()

    def _expired(self, sid):
        return self.idle is not None and self.clock() - self.used[sid] >= self.idle

    def new(self, data=None):
        with self.lock:
            sid = secrets.token_hex(16)  # exactly 128 bits
            self.data[sid], self.used[sid] = dict(data or {}), self.clock()
            if self.max is not None and len(self.data) > self.max:
                oldest = min(self.used, key=self.used.get)
                del self.data[oldest], self.used[oldest]
            return sid

    def get(self, sid):
        with self.lock:
            if sid not in self.data:
                return None
            if self._expired(sid):
                del self.data[sid], self.used[sid]
                return None
            self.used[sid] = self.clock()
            return dict(self.data[sid])

    def save(self, sid, data):
        with self.lock:
            if sid in self.data and not self._expired(sid):
                self.data[sid] = dict(data)
                self.used[sid] = self.clock()

    def delete(self, sid):
        with self.lock:
            live = sid in self.data and not self._expired(sid)
            self.data.pop(sid, None)
            self.used.pop(sid, None)
            return live

    def __len__(self):
        with self.lock:
            return sum(1 for sid in list(self.data) if not self._expired(sid))


class DequeStore:
    """Sessions in a dict, recency in a deque of ids; ids from token_bytes as base64."""

    def __init__(self, *, idle_timeout=None, max_sessions=None, clock=time.monotonic):
        import base64

        self._b64 = base64.urlsafe_b64encode
        self.idle_timeout, self.max_sessions, self.clock = idle_timeout, max_sessions, clock
        self.sessions = {}
        self.recency = deque()
        self.guard = threading.RLock()

    def _touch(self, sid):
        self.recency.remove(sid)
        self.recency.append(sid)

    def _live(self, sid):
        item = self.sessions.get(sid)
        if item is None:
            return None
        if self.idle_timeout is not None and self.clock() - item["at"] >= self.idle_timeout:
            self.sessions.pop(sid)
            self.recency.remove(sid)
            return None
        return item

    def new(self, data=None):
        with self.guard:
            sid = self._b64(secrets.token_bytes(24)).decode()
            self.sessions[sid] = {"data": json.loads(json.dumps(data or {})), "at": self.clock()}
            self.recency.append(sid)
            while self.max_sessions and len(self.sessions) > self.max_sessions:
                self.sessions.pop(self.recency.popleft())
            return sid

    def get(self, sid):
        with self.guard:
            item = self._live(sid)
            if item is None:
                return None
            item["at"] = self.clock()
            self._touch(sid)
            return json.loads(json.dumps(item["data"]))

    def save(self, sid, data):
        with self.guard:
            item = self._live(sid)
            if item is None:
                raise KeyError(sid)
            item["data"] = json.loads(json.dumps(data))

    def delete(self, sid):
        with self.guard:
            if self._live(sid) is None:
                return False
            self.sessions.pop(sid)
            self.recency.remove(sid)
            return True

    def __len__(self):
        with self.guard:
            for sid in list(self.sessions):
                self._live(sid)
            return len(self.sessions)


# -- 01.session_store: wrong answers ---------------------------------------------------

class FifoStore(Store):
    """Evicts the oldest created, not the least recently used."""

    def _live(self, sid):
        entry = self.entries.get(sid)
        if entry is None:
            return None
        if self.idle_timeout is not None and self.clock() - entry[1] >= self.idle_timeout:
            del self.entries[sid]
            return None
        entry[1] = self.clock()  # touches the timer but never reorders
        return entry


class NoTouchStore(Store):
    """Expiry counted from creation: get is not activity."""

    def _live(self, sid):
        entry = self.entries.get(sid)
        if entry is None:
            return None
        if self.idle_timeout is not None and self.clock() - entry[1] >= self.idle_timeout:
            del self.entries[sid]
            return None
        self.entries.move_to_end(sid)
        return entry


class StrictlyMoreStore(Store):
    """Expires only after *more* than idle_timeout seconds (> instead of >=)."""

    def _live(self, sid):
        entry = self.entries.get(sid)
        if entry is None:
            return None
        if self.idle_timeout is not None and self.clock() - entry[1] > self.idle_timeout:
            del self.entries[sid]
            return None
        entry[1] = self.clock()
        self.entries.move_to_end(sid)
        return entry


class AliasingStore(Store):
    """get() hands out the stored dict itself."""

    def get(self, sid):
        with self.lock:
            entry = self._live(sid)
            return None if entry is None else entry[0]


class KeepsCallersDict(Store):
    """new() keeps the caller's dict."""

    def new(self, data=None):
        with self.lock:
            sid = secrets.token_urlsafe(32)
            self.entries[sid] = [data if data is not None else {}, self.clock()]
            while self.max_sessions is not None and len(self.entries) > self.max_sessions:
                self.entries.popitem(last=False)
            return sid


class CounterIds(Store):
    """Sequential ids, padded to look long."""

    def new(self, data=None):
        with self.lock:
            self.n = getattr(self, "n", 0) + 1
            sid = f"{self.n:043d}"
            self.entries[sid] = [dict(data or {}), self.clock()]
            while self.max_sessions is not None and len(self.entries) > self.max_sessions:
                self.entries.popitem(last=False)
            return sid


def _with_ids(make_id):
    class IdStore(Store):
        def new(self, data=None):
            with self.lock:
                sid = make_id(data)
                self.entries[sid] = [dict(data or {}), self.clock()]
                while self.max_sessions is not None and len(self.entries) > self.max_sessions:
                    self.entries.popitem(last=False)
                return sid

    return IdStore


RandomModuleIds = _with_ids(lambda data: "%032x" % random.getrandbits(256))
Uuid4Ids = _with_ids(lambda data: uuid.uuid4().hex)
ShortIds = _with_ids(lambda data: secrets.token_hex(8))
UserInIds = _with_ids(lambda data: f"{(data or {}).get('user', 'anon')}-{secrets.token_urlsafe(32)}")


class AdoptingSave(Store):
    """save() on an unknown id creates the session: fixation at store level."""

    def save(self, sid, data):
        with self.lock:
            entry = self._live(sid)
            if entry is None:
                self.entries[sid] = [dict(data), self.clock()]
            else:
                entry[0] = dict(data)


class LenCountsExpired(Store):
    def __len__(self):
        with self.lock:
            return len(self.entries)


class NoLock:
    """The reference logic without any lock."""

    def __init__(self, *, idle_timeout=None, max_sessions=None, clock=time.monotonic):
        self.idle_timeout, self.max_sessions, self.clock = idle_timeout, max_sessions, clock
        self.entries = OrderedDict()

    _live = Store._live

    def new(self, data=None):
        sid = secrets.token_urlsafe(32)
        self.entries[sid] = [dict(data or {}), self.clock()]
        while self.max_sessions is not None and len(self.entries) > self.max_sessions:
            self.entries.popitem(last=False)
        return sid

    def get(self, sid):
        entry = self._live(sid)
        return None if entry is None else dict(entry[0])

    def save(self, sid, data):
        entry = self._live(sid)
        if entry is None:
            raise KeyError(sid)
        entry[0] = dict(data)

    def delete(self, sid):
        return self.entries.pop(sid, None) is not None

    def __len__(self):
        for sid in list(self.entries):
            self._live(sid)
        return len(self.entries)


class LockPerCall(Store):
    """`with threading.Lock():` makes a new lock each time: it guards nothing."""

    def __init__(self, **options):
        super().__init__(**options)
        self.lock = _FreshLock()


class _FreshLock:
    def __enter__(self):
        self._lock = threading.Lock()
        return self._lock.__enter__()

    def __exit__(self, *exc):
        return self._lock.__exit__(*exc)


class CheckThenInsert(Store):
    """Makes room *before* inserting, without holding the lock across the two steps."""

    def new(self, data=None):
        with self.lock:
            full = self.max_sessions is not None and len(self.entries) >= self.max_sessions
        if full:
            with self.lock:
                self.entries.popitem(last=False)
        now = self.clock()
        sid = secrets.token_urlsafe(32)
        with self.lock:
            self.entries[sid] = [dict(data or {}), now]
        return sid


class SharedDictStore(Store):
    entries_shared = OrderedDict()

    def __init__(self, **options):
        super().__init__(**options)
        self.entries = SharedDictStore.entries_shared


class Fixed60Store(Store):
    """Ignores idle_timeout and uses the 60 s of an old example."""

    def __init__(self, *, idle_timeout=None, max_sessions=None, clock=time.monotonic):
        super().__init__(idle_timeout=60 if idle_timeout else None,
                         max_sessions=max_sessions, clock=clock)


class Fixed3Store(Store):
    """Ignores max_sessions and keeps at most 3, as in an old example."""

    def __init__(self, *, idle_timeout=None, max_sessions=None, clock=time.monotonic):
        super().__init__(idle_timeout=idle_timeout,
                         max_sessions=3 if max_sessions else None, clock=clock)


class DeleteSaysNothing(Store):
    def delete(self, sid):
        with self.lock:
            self.entries.pop(sid, None)


class DeleteDoesNotFreeSlot(Store):
    """Counts every session ever made against max_sessions."""

    def new(self, data=None):
        with self.lock:
            self.made = getattr(self, "made", 0) + 1
            sid = secrets.token_urlsafe(32)
            self.entries[sid] = [dict(data or {}), self.clock()]
            if self.max_sessions is not None and self.made > self.max_sessions:
                self.entries.popitem(last=False)
            return sid


# -- 01.remember_login ----------------------------------------------------------------

def _login_app(*, make_sid=lambda user: secrets.token_urlsafe(32), me_verifies=False,
               register=True, bad_body_status=None, session_before_verify=False,
               one_session_per_user=False, me_as_text=False):
    """The reference login with one behaviour swapped for a mistake."""

    def make_app(verify):
        app = Flask("variant")
        sessions: dict = {}
        by_user: dict = {}
        if register:
            app.extensions["labkit.sessions"] = sessions

        @app.post("/login")
        def login():
            if bad_body_status is not None:
                body = request.json
                user, password = body["username"], body["password"]
            else:
                body = request.get_json(silent=True) or {}
                user, password = body.get("username"), body.get("password")
                if not isinstance(user, str) or not isinstance(password, str):
                    return {"error": "bad"}, 400
            response = jsonify(user=user)
            if session_before_verify:
                sid = make_sid(user)
                sessions[sid] = user
                response.set_cookie("sid", sid)
            if not verify(user, password):
                return ({"error": "bad"}, 401, {"Set-Cookie": response.headers.get(
                    "Set-Cookie", "x=y")})
            if one_session_per_user and user in by_user:
                sid = by_user[user]
            else:
                sid = make_sid(user)
            sessions[sid] = user
            by_user[user] = sid
            if me_verifies:
                sessions[sid] = (user, password)
            response.set_cookie("sid", sid, httponly=True)
            return response

        @app.get("/me")
        def me():
            entry = sessions.get(request.cookies.get("sid"))
            if entry is None:
                return {"error": "login_required"}, 401
            if me_verifies:
                user, password = entry
                if not verify(user, password):
                    return {"error": "login_required"}, 401
                return {"user": user}
            if me_as_text:
                return entry
            return {"user": entry}

        return app

    return make_app


def global_user_app(verify):
    """One 'current user' for everybody."""
    app = Flask("global_user")
    current = {}
    sessions = {}
    app.extensions["labkit.sessions"] = sessions

    @app.post("/login")
    def login():
        body = request.get_json(silent=True) or {}
        if not verify(str(body.get("username")), str(body.get("password"))):
            return {"error": "bad"}, 401
        current["user"] = body["username"]
        sid = secrets.token_urlsafe(32)
        sessions[sid] = True
        response = jsonify(ok=True)
        response.set_cookie("sid", sid)
        return response

    @app.get("/me")
    def me():
        if request.cookies.get("sid") not in sessions:
            return {"error": "login_required"}, 401
        return {"user": current["user"]}

    return app


def pending_user_app(verify):
    """Remembers who is logging in in a shared variable while verify runs."""
    app = Flask("pending")
    sessions = {}
    pending = {}
    app.extensions["labkit.sessions"] = sessions

    @app.post("/login")
    def login():
        body = request.get_json(silent=True) or {}
        user, password = body.get("username"), body.get("password")
        if not isinstance(user, str) or not isinstance(password, str):
            return {"error": "bad"}, 400
        pending["user"] = user
        if not verify(user, password):
            return {"error": "bad"}, 401
        sid = secrets.token_urlsafe(32)
        sessions[sid] = pending["user"]
        response = jsonify(ok=True)
        response.set_cookie("sid", sid)
        return response

    @app.get("/me")
    def me():
        user = sessions.get(request.cookies.get("sid"))
        return ({"user": user}, 200) if user else ({"error": "login_required"}, 401)

    return app


def flask_cookie_app(verify):
    """Flask's signed cookie, so nothing is kept on the server."""
    app = Flask("flask_cookie")
    app.secret_key = "dev"

    @app.post("/login")
    def login():
        body = request.get_json(silent=True) or {}
        if not verify(str(body.get("username")), str(body.get("password"))):
            return {"error": "bad"}, 401
        session["user"] = body["username"]
        response = jsonify(user=body["username"])
        response.set_cookie("sid", secrets.token_urlsafe(32))
        return response

    @app.get("/me")
    def me():
        if "user" not in session:
            return {"error": "login_required"}, 401
        return {"user": session["user"]}

    return app


class LoginApp:
    """Valid: a class that builds the app; sessions hold dicts; 400 for bad bodies."""

    def __init__(self, verify):
        self.verify = verify
        self.sessions = {}
        self.lock = threading.Lock()

    def build(self):
        app = Flask("login_class")
        app.extensions["labkit.sessions"] = self.sessions
        app.post("/login")(self.login)
        app.get("/me")(self.me)
        return app

    def login(self):
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not all(
                isinstance(body.get(k), str) for k in ("username", "password")):
            return jsonify(error="send username and password"), 400
        if not self.verify(body["username"], body["password"]):
            return jsonify(error="bad_credentials"), 401
        sid = secrets.token_hex(32)
        with self.lock:
            self.sessions[sid] = {"user": body["username"], "since": time.time()}
        response = make_response(jsonify(ok=True))
        response.set_cookie("sid", sid, httponly=True, samesite="Strict")
        return response

    def me(self):
        with self.lock:
            entry = self.sessions.get(request.cookies.get("sid", ""))
        if entry is None:
            return jsonify(error="login_required"), 401
        return jsonify(user=entry["user"])


def login_class_factory(verify):
    return LoginApp(verify).build()


_u4 = _login_app(make_sid=lambda user: uuid.uuid4().hex + uuid.uuid4().hex)


# -- 01.chat_context ------------------------------------------------------------------

def _chat_app(*, make_sid=lambda: secrets.token_urlsafe(32), adopt=False, reply_after=False,
              rmw=False, strict_body=False, text_reply=False, parity=False):
    def make():
        app = Flask("chat_variant")
        histories: dict = {}
        turns = [[], []]

        @app.post("/chat")
        def chat():
            if strict_body:
                message = request.json["message"]
            else:
                message = (request.get_json(silent=True) or {}).get("message")
                if not isinstance(message, str):
                    return {"error": "wrong_shape"}, 400
            sid = request.cookies.get("sid")
            if adopt:
                sid = sid or make_sid()
                histories.setdefault(sid, [])
            elif sid not in histories:
                sid = make_sid()
                histories[sid] = []
            if parity:
                history = turns[sum(map(len, turns)) % 2]
            else:
                history = histories[sid]
            if reply_after:
                history.append(message)
                reply = social.reply_to(history[:-0] and history, message)
            elif rmw:
                old = list(histories[sid])
                reply = social.reply_to(old, message)
                histories[sid] = old + [message]
            else:
                reply = social.reply_to(history, message)
                history.append(message)
            response = make_response(reply if text_reply else jsonify(reply=reply))
            response.set_cookie("sid", sid, httponly=True)
            return response

        return app

    return make


def shared_history_app():
    app = Flask("shared_history")
    history: list = []

    @app.post("/chat")
    def chat():
        message = (request.get_json(silent=True) or {}).get("message")
        if not isinstance(message, str):
            return {"error": "bad"}, 400
        reply = social.reply_to(history, message)
        history.append(message)
        response = jsonify(reply=reply)
        if "sid" not in request.cookies:
            response.set_cookie("sid", secrets.token_urlsafe(32))
        return response

    return app


def history_in_cookie_app():
    app = Flask("cookie_history")
    app.secret_key = "dev"

    @app.post("/chat")
    def chat():
        message = (request.get_json(silent=True) or {}).get("message")
        if not isinstance(message, str):
            return {"error": "bad"}, 400
        history = session.get("history", [])
        reply = social.reply_to(history, message)
        session["history"] = [*history, message]
        return {"reply": reply}

    return app


class ChatServer:
    """Valid: a class; deques; a lock; 422 for bad bodies; cookie only when new."""

    def __init__(self):
        self.histories = {}
        self.lock = threading.Lock()

    def __call__(self):
        app = Flask("chat_class")
        app.extensions["labkit.sessions"] = self.histories

        @app.post("/chat")
        def chat():
            body = request.get_json(silent=True)
            if not isinstance(body, dict) or not isinstance(body.get("message"), str):
                return jsonify(error="send {\"message\": \"...\"}"), 422
            sid = request.cookies.get("sid")
            fresh = False
            with self.lock:
                if sid not in self.histories:
                    sid, fresh = secrets.token_urlsafe(24), True
                    self.histories[sid] = deque()
                history = self.histories[sid]
                reply = social.reply_to(list(history), body["message"])
                history.append(body["message"])
            response = jsonify(reply=reply)
            if fresh:
                response.set_cookie("sid", sid, httponly=True, samesite="Lax")
            return response

        return app


def locked_rmw_chat():
    """Valid: read-modify-write, but under one lock."""
    app = Flask("locked_rmw")
    histories: dict = {}
    lock = threading.Lock()

    @app.post("/chat")
    def chat():
        message = (request.get_json(silent=True) or {}).get("message")
        if not isinstance(message, str):
            return {"error": "bad"}, 400
        sid = request.cookies.get("sid")
        with lock:
            if sid not in histories:
                sid = secrets.token_hex(20)
                histories[sid] = ()
            old = histories[sid]
            reply = social.reply_to(list(old), message)
            histories[sid] = old + (message,)
        response = jsonify(reply=reply)
        response.set_cookie("sid", sid)
        return response

    return app


_COUNTER = iter(range(10 ** 9))

class EvictsNewest(Store):
    """popitem() without last=False: evicts the most recently used session."""

    def new(self, data=None):
        with self.lock:
            sid = secrets.token_urlsafe(32)
            self.entries[sid] = [dict(data or {}), self.clock()]
            while self.max_sessions is not None and len(self.entries) > self.max_sessions:
                self.entries.popitem()
            return sid


def by_user_agent_chat():
    """Keys histories by the client's User-Agent instead of a session id."""
    app = Flask("by_agent")
    histories: dict = {}

    @app.post("/chat")
    def chat():
        message = (request.get_json(silent=True) or {}).get("message")
        if not isinstance(message, str):
            return {"error": "bad"}, 400
        history = histories.setdefault(request.headers.get("User-Agent", ""), [])
        reply = social.reply_to(history, message)
        history.append(message)
        response = jsonify(reply=reply)
        if "sid" not in request.cookies:
            response.set_cookie("sid", secrets.token_urlsafe(32))
        return response

    return app


class ResurrectingSave(Store):
    """save() on an expired (not yet purged) session brings it back."""

    def save(self, sid, data):
        with self.lock:
            if sid not in self.entries:
                raise KeyError(sid)
            self.entries[sid] = [dict(data), self.clock()]


class WallClockStore(Store):
    """Ignores the clock it is given and reads time.monotonic()."""

    def __init__(self, *, idle_timeout=None, max_sessions=None, clock=time.monotonic):
        super().__init__(idle_timeout=idle_timeout, max_sessions=max_sessions,
                         clock=time.monotonic)


_MODULE_SESSIONS: dict = {}


def module_dict_login(verify):
    """The sessions dict lives outside make_app: every app shares it."""
    app = Flask("module_dict")
    app.extensions["labkit.sessions"] = _MODULE_SESSIONS

    @app.post("/login")
    def login():
        body = request.get_json(silent=True) or {}
        user, password = body.get("username"), body.get("password")
        if not (isinstance(user, str) and isinstance(password, str) and verify(user, password)):
            return {"error": "bad"}, 401
        sid = secrets.token_urlsafe(32)
        _MODULE_SESSIONS[sid] = user
        response = jsonify(user=user)
        response.set_cookie("sid", sid)
        return response

    @app.get("/me")
    def me():
        user = _MODULE_SESSIONS.get(request.cookies.get("sid"))
        return ({"user": user}, 200) if user else ({"error": "login_required"}, 401)

    return app


def secure_cookie_login(verify):
    """Marks the cookie Secure: over plain http the client never sends it back."""
    app = REF["make_app"](verify)

    @app.after_request
    def secure(response):
        cookie = response.headers.get("Set-Cookie")
        if cookie and "sid=" in cookie:
            response.headers["Set-Cookie"] = cookie + "; Secure"
        return response

    return app


def strict_json_chat():
    """Valid: request.get_json() without silent: Flask answers 415 to a non-JSON body."""
    app = Flask("strict_chat")
    histories: dict = {}
    lock = threading.Lock()

    @app.post("/chat")
    def chat():
        body = request.get_json()
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, str):
            return {"error": "message must be a string"}, 400
        sid = request.cookies.get("sid")
        with lock:
            if sid not in histories:
                sid = secrets.token_urlsafe(32)
                histories[sid] = []
            reply = social.reply_to(histories[sid], message)
            histories[sid].append(message)
        response = jsonify(reply=reply)
        response.set_cookie("sid", sid, httponly=True)
        return response

    return app


def strict_json_login(verify):
    """Valid: request.get_json() without silent (415 for a non-JSON body)."""
    app = Flask("strict_login")
    sessions: dict = {}
    app.extensions["labkit.sessions"] = sessions

    @app.post("/login")
    def login():
        body = request.get_json()
        user = body.get("username") if isinstance(body, dict) else None
        password = body.get("password") if isinstance(body, dict) else None
        if not isinstance(user, str) or not isinstance(password, str):
            return {"error": "bad request"}, 400
        if not verify(user, password):
            return {"error": "bad_credentials"}, 401
        sid = secrets.token_urlsafe(32)
        sessions[sid] = user
        response = jsonify(user=user)
        response.set_cookie("sid", sid, httponly=True)
        return response

    @app.get("/me")
    def me():
        user = sessions.get(request.cookies.get("sid"))
        return ({"user": user}, 200) if user else ({"error": "login_required"}, 401)

    return app


S, L, C = "01.session_store", "01.remember_login", "01.chat_context"
CASES = [
    valid(S, "reference", Store),
    valid(S, "timestamps-min-eviction-hex128", TimestampStore),
    valid(S, "deque-recency-json-copies", DequeStore),
    wrong(S, "fifo-eviction", FifoStore, says="least recently used", kind="logic"),
    wrong(S, "get-is-not-use", NoTouchStore, says="count as use", kind="logic"),
    wrong(S, "expires-after-more-than", StrictlyMoreStore, says="exactly idle_timeout",
          kind="hostile-input"),
    wrong(S, "get-returns-stored-dict", AliasingStore, says="return a copy", kind="substance"),
    wrong(S, "new-keeps-callers-dict", KeepsCallersDict, says="passing it to new()",
          kind="substance"),
    wrong(S, "counter-ids", CounterIds, says="random bits", kind="security"),
    wrong(S, "random-module-ids", RandomModuleIds, says="`secrets` module", kind="security"),
    wrong(S, "uuid4-ids", Uuid4Ids, says="random bits", kind="security"),
    wrong(S, "short-ids", ShortIds, says="random bits", kind="security"),
    wrong(S, "user-in-id", UserInIds, says="what the user sent", kind="security"),
    wrong(S, "save-adopts-unknown-id", AdoptingSave, says="never issued", kind="security"),
    wrong(S, "len-counts-expired", LenCountsExpired, says="only live sessions", kind="logic"),
    wrong(S, "no-lock", NoLock, says="threading.Lock", kind="concurrency"),
    wrong(S, "new-lock-per-call", LockPerCall, says="threading.Lock", kind="concurrency"),
    wrong(S, "check-then-insert", CheckThenInsert, says="more than max_sessions",
          kind="concurrency"),
    wrong(S, "class-level-dict", SharedDictStore, says="share", kind="logic"),
    wrong(S, "fixed-60-seconds", Fixed60Store, says="idle", kind="visible-only"),
    wrong(S, "fixed-3-sessions", Fixed3Store, says="max_sessions", kind="visible-only"),
    wrong(S, "delete-returns-none", DeleteSaysNothing, says="return true", kind="substance"),
    wrong(S, "delete-frees-no-slot", DeleteDoesNotFreeSlot, says="freed a slot",
          kind="logic"),

    valid(L, "reference", REF["make_app"]),
    valid(L, "class-built-app-hex-ids", login_class_factory),
    valid(L, "two-uuid4s", _u4),
    wrong(L, "global-current-user", global_user_app, says="own session", kind="logic"),
    wrong(L, "pending-user-race", pending_user_app, says="another user", kind="concurrency"),
    wrong(L, "flask-signed-cookie", flask_cookie_app, says="on the server", kind="logic"),
    wrong(L, "username-as-id", _login_app(make_sid=lambda user: user),
          says="what the user sent", kind="security"),
    wrong(L, "counter-ids", _login_app(make_sid=lambda user: f"{next(_COUNTER):064d}"),
          says="random bits", kind="security"),
    wrong(L, "random-module-ids", _login_app(make_sid=lambda user: "%064x" % random.getrandbits(256)),
          says="`secrets` module", kind="security"),
    wrong(L, "short-ids", _login_app(make_sid=lambda user: secrets.token_hex(6)),
          says="random bits", kind="security"),
    wrong(L, "verify-on-every-request", _login_app(me_verifies=True), says="called verify",
          kind="logic"),
    wrong(L, "not-registered", _login_app(register=False), says="app.extensions",
          kind="substance"),
    wrong(L, "500-on-bad-body", _login_app(bad_body_status=500), says="400 or 401",
          kind="hostile-input"),
    wrong(L, "session-before-verify", _login_app(session_before_verify=True),
          says="after only failed logins", kind="security"),
    wrong(L, "one-session-per-user", _login_app(one_session_per_user=True), says="new id",
          kind="visible-only"),
    wrong(L, "me-as-text", _login_app(me_as_text=True), says="Content-Type",
          kind="substance"),

    valid(C, "reference", REF["make_chat_app"]),
    valid(C, "class-deque-422-cookie-once", ChatServer()),
    valid(C, "locked-read-modify-write", locked_rmw_chat),
    wrong(C, "shared-history", shared_history_app, says="own history", kind="logic"),
    wrong(C, "history-in-cookie", history_in_cookie_app, says="cookie", kind="logic"),
    wrong(C, "two-clients-by-parity", _chat_app(parity=True), says="own history",
          kind="visible-only"),
    wrong(C, "reply-after-append", _chat_app(reply_after=True), says="before the new message",
          kind="logic"),
    wrong(C, "adopts-client-id", _chat_app(adopt=True), says="never adopt",
          kind="security"),
    wrong(C, "counter-ids", _chat_app(make_sid=lambda: str(next(_COUNTER))), says="random bits",
          kind="security"),
    wrong(C, "random-module-ids", _chat_app(make_sid=lambda: "%064x" % random.getrandbits(256)),
          says="`secrets` module", kind="security"),
    wrong(C, "unlocked-read-modify-write", _chat_app(rmw=True), says="every message",
          kind="concurrency"),
    wrong(C, "500-on-bad-body", _chat_app(strict_body=True), says="400 or 422",
          kind="hostile-input"),
    wrong(C, "reply-as-text", _chat_app(text_reply=True), says="Content-Type",
          kind="substance"),
    wrong(S, "evicts-newest", EvictsNewest, says="least recently used", kind="logic"),
    wrong(C, "history-per-user-agent", by_user_agent_chat, says="own history", kind="logic"),
    wrong(S, "save-resurrects-expired", ResurrectingSave, says="back to life",
          kind="security"),
    wrong(S, "ignores-given-clock", WallClockStore, says="idle", kind="logic"),
    wrong(L, "module-level-sessions", module_dict_login, says="share one dict",
          kind="logic"),
    wrong(L, "secure-cookie-over-http", secure_cookie_login, says="Secure attribute",
          kind="substance"),
    valid(L, "hex-128-bits", _login_app(make_sid=lambda user: secrets.token_hex(16))),
    valid(C, "hex-128-bits", _chat_app(make_sid=lambda: secrets.token_hex(16))),
    wrong(C, "uuid4-ids", _chat_app(make_sid=lambda: str(uuid.uuid4())), says="random bits",
          kind="security"),
    wrong(L, "uuid4-ids", _login_app(make_sid=lambda user: uuid.uuid4().hex), says="random bits",
          kind="security"),
    valid(L, "strict-json-415", strict_json_login),
    valid(C, "strict-json-415", strict_json_chat),
]


@table(CASES)
def test_answer_table(case):
    assert_case(case)


def test_released_stubs_fail_with_the_stub_message():
    assert_released_stubs_fail(SOLUTION)
