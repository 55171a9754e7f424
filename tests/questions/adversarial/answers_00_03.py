"""Adversarial answers for questions 00-03, written blind from the exercise text.

CASES = [(qid, name, kind, valid_bool, factory)]; ``factory()`` builds the answers
tuple afresh (new closures, new classes) each time it is called.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import math
import random
import secrets
import threading
import time
import uuid
from collections import OrderedDict, defaultdict

import requests
from flask import Flask, Response, jsonify, make_response, request

CASES: list = []


def case(qid, name, kind, valid):
    def deco(factory):
        CASES.append((qid, name, kind, valid, factory))
        return factory
    return deco


# =====================================================================================
# 00.remember
# =====================================================================================

def guestbook(*, store_global=None, bad_status=400, bad_clears=False, missing_404=404,
              first_only=False, ct_json=True, mangle=None, silent=True, racy=False,
              per_client=False, hard_ada=False, post_status=200):
    """A configurable guestbook; the defaults make a valid one."""
    def make_guestbook():
        app = Flask("gb")
        memory = store_global if store_global is not None else {}

        @app.post("/guest")
        def post():
            data = request.get_json(silent=True) if silent else request.json
            if not isinstance(data, dict) or "name" not in data:
                if bad_clears:
                    memory.pop("name", None)
                return {"error": "need a name"}, bad_status
            name = data["name"]
            if mangle:
                name = mangle(name)
            if first_only and "name" in memory:
                return {"ok": True}, post_status
            if racy:
                memory.pop("name", None)
                time.sleep(0.01)
            key = request.remote_addr + request.headers.get("User-Agent", "") if per_client else "name"
            memory[key] = name
            if per_client:
                memory["name"] = name  # marks something was stored
            return {"ok": True}, post_status

        @app.get("/guest")
        def get():
            key = (request.remote_addr + request.headers.get("User-Agent", "")) if per_client else "name"
            if key not in memory:
                if missing_404 == 200:
                    return {"name": None}, 200
                return {"error": "no guest yet"}, missing_404
            name = "Ada" if hard_ada else memory[key]
            if not ct_json:
                return json.dumps({"name": name}), 200
            return {"name": name}
        return app
    return make_guestbook


@case("00.remember", "dict_jsonify", "", True)
def _():
    def make_guestbook():
        app = Flask("gb")
        memory = {}

        @app.route("/guest", methods=["GET", "POST"])
        def guest():
            if request.method == "POST":
                body = request.get_json(silent=True, force=True)
                if not isinstance(body, dict) or "name" not in body:
                    return jsonify(error="missing name"), 400
                memory["name"] = body["name"]
                return jsonify(stored=True)
            if "name" not in memory:
                return "nobody yet", 404
            return jsonify(name=memory["name"])
        return app
    return (make_guestbook,)


@case("00.remember", "class_list_201_extra_keys", "", True)
def _():
    class Book:
        def __init__(self):
            self.names = []
            self.lock = threading.Lock()

        def app(self):
            app = Flask("gb2")
            app.add_url_rule("/guest", "post", self.post, methods=["POST"])
            app.add_url_rule("/guest", "get", self.get, methods=["GET"])
            return app

        def post(self):
            try:
                body = json.loads(request.get_data(as_text=True))
            except ValueError:
                return {"error": "not json"}, 400
            if not isinstance(body, dict) or "name" not in body:
                return {"error": "no name"}, 400
            with self.lock:
                self.names.append(body["name"])
            return {"count": len(self.names)}, 201

        def get(self):
            with self.lock:
                if not self.names:
                    return Response(status=404)
                return {"name": self.names[-1], "visits": len(self.names)}
    return (lambda: Book().app(),)


@case("00.remember", "closure_nonlocal_make_response", "", True)
def _():
    def make_guestbook():
        app = Flask("gb3")
        latest = None
        have = False
        lock = threading.Lock()

        @app.post("/guest")
        def post():
            nonlocal latest, have
            data = request.get_json(silent=True)
            if type(data) is not dict or "name" not in data:
                return make_response(jsonify({"why": "bad body"}), 400)
            with lock:
                latest, have = data["name"], True
            return ("", 200)

        @app.get("/guest")
        def get():
            with lock:
                if not have:
                    return jsonify({}), 404
                resp = make_response(json.dumps({"name": latest}, ensure_ascii=False))
            resp.headers["Content-Type"] = "application/json; charset=utf-8"
            return resp
        return app
    return (make_guestbook,)


_SHARED = {}
case("00.remember", "global_memory_shared_between_apps", "visible-only", False)(
    lambda: (guestbook(store_global=_SHARED),))
case("00.remember", "missing_name_gives_200", "hostile-input", False)(
    lambda: (guestbook(bad_status=200),))
case("00.remember", "request_json_415_on_non_json", "hostile-input", False)(
    lambda: (guestbook(silent=False),))
case("00.remember", "bad_post_clears_stored_name", "logic", False)(
    lambda: (guestbook(bad_clears=True),))
case("00.remember", "get_before_any_is_200_null", "logic", False)(
    lambda: (guestbook(missing_404=200),))
case("00.remember", "keeps_first_name_not_latest", "logic", False)(
    lambda: (guestbook(first_only=True),))
case("00.remember", "body_json_but_text_html_ctype", "substance", False)(
    lambda: (guestbook(ct_json=False),))
case("00.remember", "strips_and_titles_name", "hostile-input", False)(
    lambda: (guestbook(mangle=lambda n: n.strip().title()),))
case("00.remember", "drops_non_ascii", "hostile-input", False)(
    lambda: (guestbook(mangle=lambda n: n.encode("ascii", "ignore").decode()),))
case("00.remember", "truncates_long_names", "hostile-input", False)(
    lambda: (guestbook(mangle=lambda n: n[:32]),))
case("00.remember", "clear_then_set_race", "concurrency", False)(
    lambda: (guestbook(racy=True),))
case("00.remember", "answers_ada_always", "visible-only", False)(
    lambda: (guestbook(hard_ada=True),))
case("00.remember", "one_name_per_client", "logic", False)(
    lambda: (guestbook(per_client=True),))


# =====================================================================================
# 00.after_revive
# =====================================================================================

def _good_after(server):
    server.kill()
    server.revive()
    r = requests.get(server.url + "/guest", timeout=10)
    if r.status_code == 404:
        return None
    return r.json()["name"]


@case("00.after_revive", "requests_plain", "", True)
def _():
    return (guestbook(), _good_after)


@case("00.after_revive", "session_and_status_200", "", True)
def _():
    def name_after_restart(server):
        server.kill()
        revived = server.revive()
        with requests.Session() as s:
            r = s.get(revived.url + "/guest", timeout=10)
        return r.json().get("name") if r.status_code == 200 else None
    return (guestbook(post_status=201), name_after_restart)


@case("00.after_revive", "urllib", "", True)
def _():
    import urllib.error
    import urllib.request

    def name_after_restart(server):
        server.kill()
        server.revive()
        try:
            with urllib.request.urlopen(server.url + "/guest", timeout=10) as resp:
                return json.loads(resp.read().decode("utf-8"))["name"]
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise
    return (guestbook(), name_after_restart)


@case("00.after_revive", "always_none", "visible-only", False)
def _():
    def name_after_restart(server):
        server.kill()
        server.revive()
        return None
    return (guestbook(), name_after_restart)


@case("00.after_revive", "name_read_before_kill", "logic", False)
def _():
    def name_after_restart(server):
        r = requests.get(server.url + "/guest", timeout=10)
        server.kill()
        server.revive()
        return r.json()["name"] if r.status_code == 200 else None
    return (guestbook(), name_after_restart)


@case("00.after_revive", "no_kill_no_revive", "logic", False)
def _():
    def name_after_restart(server):
        r = requests.get(server.url + "/guest", timeout=10)
        return r.json()["name"] if r.status_code == 200 else None
    return (guestbook(), name_after_restart)


@case("00.after_revive", "reads_404_body", "hostile-input", False)
def _():
    def name_after_restart(server):
        server.kill()
        server.revive()
        r = requests.get(server.url + "/guest", timeout=10)
        try:
            return r.json().get("name")
        except ValueError:
            return None
    return (guestbook(), name_after_restart)


@case("00.after_revive", "returns_text", "substance", False)
def _():
    def name_after_restart(server):
        server.kill()
        server.revive()
        r = requests.get(server.url + "/guest", timeout=10)
        return None if r.status_code == 404 else r.text.strip()
    return (guestbook(), name_after_restart)


@case("00.after_revive", "empty_string_not_none", "logic", False)
def _():
    def name_after_restart(server):
        server.kill()
        server.revive()
        r = requests.get(server.url + "/guest", timeout=10)
        return "" if r.status_code == 404 else r.json()["name"]
    return (guestbook(), name_after_restart)


@case("00.after_revive", "raise_for_status", "hostile-input", False)
def _():
    def name_after_restart(server):
        server.kill()
        server.revive()
        r = requests.get(server.url + "/guest", timeout=10)
        r.raise_for_status()
        return r.json()["name"]
    return (guestbook(), name_after_restart)


@case("00.after_revive", "global_guestbook_survives", "visible-only", False)
def _():
    return (guestbook(store_global={}), _good_after)


@case("00.after_revive", "lowercases", "hostile-input", False)
def _():
    def name_after_restart(server):
        name = _good_after(server)
        return name.lower() if name else name
    return (guestbook(), name_after_restart)


@case("00.after_revive", "fallback_to_before_if_404", "logic", False)
def _():
    def name_after_restart(server):
        r = requests.get(server.url + "/guest", timeout=10)
        before = r.json()["name"] if r.status_code == 200 else None
        server.kill()
        server.revive()
        r = requests.get(server.url + "/guest", timeout=10)
        return r.json()["name"] if r.status_code == 200 else before
    return (guestbook(), name_after_restart)


# =====================================================================================
# 01.session_store
# =====================================================================================

def make_store(*, ids=lambda d: secrets.token_urlsafe(32), copy_get=True, copy_in=True,
               strict_ge=True, touch_get=True, lru_get=True, len_live=True,
               save_creates=False, delete_true=False, evict="lru", off_by_one=False,
               locked=True, racy=False, hashable_guard=True, forget_expired=True):
    """A configurable SessionStore class; the defaults make a valid one."""

    class SessionStore:
        def __init__(self, *, idle_timeout=None, max_sessions=None, clock=time.monotonic):
            self.idle_timeout = idle_timeout
            self.max_sessions = max_sessions
            self.clock = clock
            self._d = OrderedDict()  # sid -> [data, last]
            self._lock = threading.RLock() if locked else _NoLock()

        def _expired(self, last):
            if self.idle_timeout is None:
                return False
            idle = self.clock() - last
            return idle >= self.idle_timeout if strict_ge else idle > self.idle_timeout

        def _live(self, sid):
            if hashable_guard and not isinstance(sid, str):
                return None
            entry = self._d.get(sid)
            if entry is None:
                return None
            if self._expired(entry[1]):
                if forget_expired:
                    del self._d[sid]
                return None
            return entry

        def new(self, data=None):
            data = dict(data or {}) if copy_in else (data if data is not None else {})
            with self._lock:
                sid = ids(data)
                if racy:
                    n = len(self._d)
                    time.sleep(0.002)
                    self._d[sid] = [data, self.clock()]
                    if self.max_sessions is not None and n >= self.max_sessions:
                        self._d.popitem(last=False)
                    return sid
                self._d[sid] = [data, self.clock()]
                limit = self.max_sessions
                if limit is not None:
                    if off_by_one:
                        limit -= 1
                    # expired first
                    for k in [k for k, e in self._d.items() if self._expired(e[1])]:
                        del self._d[k]
                    while len(self._d) > max(limit, 1 if off_by_one else 0):
                        if evict == "lru":
                            self._d.popitem(last=False)
                        else:
                            self._pop_mru(sid)
                return sid

        def _pop_mru(self, keep):
            for k in reversed(self._d):
                if k != keep:
                    del self._d[k]
                    return

        def get(self, sid):
            with self._lock:
                entry = self._live(sid)
                if entry is None:
                    return None
                if touch_get:
                    entry[1] = self.clock()
                if lru_get:
                    self._d.move_to_end(sid)
                return dict(entry[0]) if copy_get else entry[0]

        def save(self, sid, data):
            with self._lock:
                entry = self._live(sid)
                if entry is None:
                    if save_creates:
                        self._d[sid] = [dict(data), self.clock()]
                        return
                    raise KeyError(sid)
                entry[0] = dict(data) if copy_in else data

        def delete(self, sid):
            with self._lock:
                live = self._live(sid) is not None
                self._d.pop(sid, None) if isinstance(sid, str) else None
                return True if delete_true else live

        def __len__(self):
            with self._lock:
                if not len_live:
                    return len(self._d)
                for k in [k for k, e in self._d.items() if self._expired(e[1])]:
                    del self._d[k]
                return len(self._d)
    return SessionStore


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@case("01.session_store", "ordereddict_lru", "", True)
def _():
    return (make_store(),)


@case("01.session_store", "counter_ticks_min_evict", "", True)
def _():
    class SessionStore:
        def __init__(self, *, idle_timeout=None, max_sessions=None, clock=time.monotonic):
            self.idle, self.cap, self.clock = idle_timeout, max_sessions, clock
            self.data, self.seen, self.used = {}, {}, {}
            self.tick = itertools.count()
            self.lock = threading.Lock()

        def _alive(self, sid):
            if not isinstance(sid, str) or sid not in self.data:
                return False
            if self.idle is not None and self.clock() - self.seen[sid] >= self.idle:
                self._drop(sid)
                return False
            return True

        def _drop(self, sid):
            self.data.pop(sid, None), self.seen.pop(sid, None), self.used.pop(sid, None)

        def new(self, data=None):
            sid = secrets.token_hex(32)
            with self.lock:
                for s in list(self.data):
                    self._alive(s)
                if self.cap is not None and len(self.data) >= self.cap:
                    self._drop(min(self.used, key=self.used.get))
                self.data[sid] = {**(data or {})}
                self.seen[sid] = self.clock()
                self.used[sid] = next(self.tick)
            return sid

        def get(self, sid):
            with self.lock:
                if not self._alive(sid):
                    return None
                self.seen[sid] = self.clock()
                self.used[sid] = next(self.tick)
                return {**self.data[sid]}

        def save(self, sid, data):
            with self.lock:
                if not self._alive(sid):
                    raise KeyError("not live")
                self.data[sid] = {**data}

        def delete(self, sid):
            with self.lock:
                ok = self._alive(sid)
                self._drop(sid) if ok else None
                return ok

        def __len__(self):
            with self.lock:
                return sum(1 for s in list(self.data) if self._alive(s))
    return (SessionStore,)


@case("01.session_store", "timestamp_lru_with_seq_tiebreak_save_noop", "", True)
def _():
    class SessionStore:
        def __init__(self, *, idle_timeout=None, max_sessions=None, clock=time.monotonic):
            self.idle_timeout, self.max_sessions, self.clock = idle_timeout, max_sessions, clock
            self.entries = []  # list of dicts; linear scans are fine for a small store
            self.seq = 0
            self.lock = threading.Lock()

        def _find(self, sid):
            now = self.clock()
            keep = []
            for e in self.entries:
                if self.idle_timeout is None or now - e["last"] < self.idle_timeout:
                    keep.append(e)
            self.entries = keep
            for e in self.entries:
                if e["sid"] == sid:
                    return e
            return None

        def _use(self, e):
            self.seq += 1
            e["last"], e["seq"] = self.clock(), self.seq

        def new(self, data=None):
            with self.lock:
                self._find(None)
                e = {"sid": secrets.token_urlsafe(24), "data": dict(data or {})}
                self._use(e)
                self.entries.append(e)
                if self.max_sessions is not None and len(self.entries) > self.max_sessions:
                    victim = min(self.entries, key=lambda x: (x["last"], x["seq"]))
                    self.entries.remove(victim)
                return e["sid"]

        def get(self, sid):
            with self.lock:
                e = self._find(sid)
                if e is None:
                    return None
                self._use(e)
                return dict(e["data"])

        def save(self, sid, data):
            with self.lock:
                e = self._find(sid)
                if e is not None:
                    e["data"] = dict(data)

        def delete(self, sid):
            with self.lock:
                e = self._find(sid)
                if e is None:
                    return False
                self.entries.remove(e)
                return True

        def __len__(self):
            with self.lock:
                return len(self._find(None) and self.entries or self.entries)
    return (SessionStore,)


_counter = itertools.count(1)
case("01.session_store", "uuid4_ids", "security", False)(
    lambda: (make_store(ids=lambda d: str(uuid.uuid4())),))
case("01.session_store", "random_module_ids", "security", False)(
    lambda: (make_store(ids=lambda d: "%032x" % random.getrandbits(128)),))
case("01.session_store", "short_token_hex8", "security", False)(
    lambda: (make_store(ids=lambda d: secrets.token_hex(8)),))
case("01.session_store", "hash_of_data_and_time", "security", False)(
    lambda: (make_store(ids=lambda d: hashlib.sha256(
        (json.dumps(d, sort_keys=True) + str(time.time())).encode()).hexdigest()),))
case("01.session_store", "counter_ids", "security", False)(
    lambda: (make_store(ids=lambda d: f"s{next(_counter):040d}"),))
case("01.session_store", "get_returns_reference", "substance", False)(
    lambda: (make_store(copy_get=False),))
case("01.session_store", "new_keeps_callers_dict", "substance", False)(
    lambda: (make_store(copy_in=False),))
case("01.session_store", "expires_after_not_at_timeout", "logic", False)(
    lambda: (make_store(strict_ge=False),))
case("01.session_store", "get_does_not_reset_idle", "logic", False)(
    lambda: (make_store(touch_get=False),))
case("01.session_store", "fifo_not_lru", "logic", False)(
    lambda: (make_store(lru_get=False),))
case("01.session_store", "len_counts_expired", "logic", False)(
    lambda: (make_store(len_live=False),))
case("01.session_store", "save_creates_session", "security", False)(
    lambda: (make_store(save_creates=True),))
case("01.session_store", "delete_always_true", "logic", False)(
    lambda: (make_store(delete_true=True),))
case("01.session_store", "evicts_most_recent", "logic", False)(
    lambda: (make_store(evict="mru"),))
case("01.session_store", "keeps_one_fewer", "logic", False)(
    lambda: (make_store(off_by_one=True),))
case("01.session_store", "no_lock_check_then_evict", "concurrency", False)(
    lambda: (make_store(locked=False, racy=True),))
# The text promises None for an unknown id, not for a value of another type: an
# unguarded dict lookup that raises on a list is allowed.
case("01.session_store", "unguarded_types_allowed", "", True)(
    lambda: (make_store(hashable_guard=False),))


# =====================================================================================
# 01.remember_login
# =====================================================================================

def login_app(*, ids=lambda user: secrets.token_urlsafe(32), reuse_per_user=False,
              failed_session=False, me_unknown="401", verify_twice=False, shared=None,
              register=True, validate=True, me_key="user", me_ct=True, racy=False,
              status_ok=200):
    def make_app(verify):
        app = Flask("remember_login")
        sessions = shared if shared is not None else {}
        by_user = {}
        scratch = {}
        lock = threading.Lock()
        if register:
            app.extensions["labkit.sessions"] = sessions

        @app.post("/login")
        def login():
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                return {"error": "json please"}, 400
            user, pw = body.get("username"), body.get("password")
            if validate and not (isinstance(user, str) and isinstance(pw, str)):
                return {"error": "username and password strings"}, 400
            if racy:
                scratch["user"] = user
            ok = verify(user, pw)
            if verify_twice:
                ok = verify(user, pw) and ok
            if not ok:
                if failed_session:
                    sid = ids(user)
                    sessions[sid] = None
                    resp = make_response({"error": "bad"}, 401)
                    resp.set_cookie("sid", sid)
                    return resp
                return {"error": "wrong username or password"}, 401
            with lock:
                if reuse_per_user and user in by_user:
                    sid = by_user[user]
                else:
                    sid = ids(user)
                    by_user[user] = sid
                sessions[sid] = scratch["user"] if racy else user
            resp = make_response({"ok": True}, status_ok)
            resp.set_cookie("sid", sid, httponly=True)
            return resp

        @app.get("/me")
        def me():
            sid = request.cookies.get("sid")
            if me_unknown == "500":
                user = sessions[sid]
            else:
                user = sessions.get(sid)
            if user is None:
                if me_unknown == "200":
                    return {me_key: None}
                return {"error": "log in first"}, 401
            if not me_ct:
                return json.dumps({me_key: user})
            return {me_key: user}
        return app
    return make_app


@case("01.remember_login", "dict_token_urlsafe", "", True)
def _():
    return (login_app(),)


@case("01.remember_login", "class_based_token_hex16_415", "", True)
def _():
    class Sessions:
        def __init__(self):
            self.by_id = {}
            self.lock = threading.Lock()

        def start(self, user):
            sid = secrets.token_hex(16)
            with self.lock:
                self.by_id[sid] = {"user": user, "since": time.time()}
            return sid

        def user(self, sid):
            with self.lock:
                entry = self.by_id.get(sid) if isinstance(sid, str) else None
            return entry and entry["user"]

    def make_app(verify):
        app = Flask("remember_login")
        sessions = Sessions()
        app.extensions["labkit.sessions"] = sessions.by_id

        @app.route("/login", methods=["POST"])
        def login():
            if not request.is_json:
                return jsonify(error="send JSON"), 415
            body = request.get_json(silent=True)
            if not (isinstance(body, dict) and isinstance(body.get("username"), str)
                    and isinstance(body.get("password"), str)):
                return jsonify(error="bad credentials shape"), 401
            if not verify(body["username"], body["password"]):
                return jsonify(error="no"), 401
            resp = jsonify(user=body["username"])
            resp.set_cookie("sid", sessions.start(body["username"]), samesite="Lax")
            return resp

        @app.route("/me")
        def me():
            user = sessions.user(request.cookies.get("sid"))
            return (jsonify(user=user), 200) if user else (jsonify(error="who?"), 401)
        return app
    return (make_app,)


@case("01.remember_login", "try_except_token_bytes_b64", "", True)
def _():
    def make_app(verify):
        app = Flask("remember_login")
        sessions = {}
        app.extensions["labkit.sessions"] = sessions

        @app.post("/login")
        def login():
            try:
                body = json.loads(request.data or b"null")
                username, password = body["username"], body["password"]
                assert type(username) is str and type(password) is str
            except Exception:
                return "bad request", 400
            if not _v(verify, username, password):
                return "unauthorised", 401
            sid = base64.urlsafe_b64encode(secrets.token_bytes(20)).decode().rstrip("=")
            sessions[sid] = (username,)
            resp = Response(json.dumps({"hello": username}), mimetype="application/json")
            resp.set_cookie("sid", sid)
            return resp

        @app.get("/me")
        def me():
            got = sessions.get(request.cookies.get("sid", ""))
            if not got:
                return Response('{"error": "not logged in"}', 401, mimetype="application/json")
            return jsonify({"user": got[0]})
        return app
    return (make_app,)


def _v(verify, u, p):
    return bool(verify(u, p))


_SHARED_LOGIN = {}
case("01.remember_login", "sid_is_username", "security", False)(
    lambda: (login_app(ids=lambda u: u),))
case("01.remember_login", "sid_hash_user_time", "security", False)(
    lambda: (login_app(ids=lambda u: hashlib.sha256(f"{u}{time.time()}".encode()).hexdigest()),))
case("01.remember_login", "sid_uuid4", "security", False)(
    lambda: (login_app(ids=lambda u: uuid.uuid4().hex),))
case("01.remember_login", "sid_random_module", "security", False)(
    lambda: (login_app(ids=lambda u: "".join(random.choices("abcdef0123456789", k=40))),))
case("01.remember_login", "sid_short_8_bytes", "security", False)(
    lambda: (login_app(ids=lambda u: secrets.token_urlsafe(8)),))
case("01.remember_login", "one_session_per_user", "logic", False)(
    lambda: (login_app(reuse_per_user=True),))
case("01.remember_login", "failed_login_sets_session", "security", False)(
    lambda: (login_app(failed_session=True),))
case("01.remember_login", "me_unknown_cookie_200_null", "hostile-input", False)(
    lambda: (login_app(me_unknown="200"),))
case("01.remember_login", "me_no_cookie_keyerror_500", "hostile-input", False)(
    lambda: (login_app(me_unknown="500"),))
case("01.remember_login", "verify_called_twice", "substance", False)(
    lambda: (login_app(verify_twice=True),))
case("01.remember_login", "sessions_global_shared", "visible-only", False)(
    lambda: (login_app(shared=_SHARED_LOGIN),))
case("01.remember_login", "not_registered", "substance", False)(
    lambda: (login_app(register=False),))
case("01.remember_login", "no_type_validation", "hostile-input", False)(
    lambda: (login_app(validate=False),))
case("01.remember_login", "me_key_username", "substance", False)(
    lambda: (login_app(me_key="username"),))
case("01.remember_login", "me_text_html", "substance", False)(
    lambda: (login_app(me_ct=False),))
case("01.remember_login", "user_in_shared_scratch", "concurrency", False)(
    lambda: (login_app(racy=True),))


# =====================================================================================
# 01.chat_context
# =====================================================================================

def chat_app(*, in_cookie=False, adopt=False, global_history=False, locked=True,
             bad_appends=False, include_current=False, reply_key="reply", ct_json=True,
             ids=lambda: secrets.token_urlsafe(32), cookie_late=False, type_check=True,
             reject_empty=False, shared=None, cap=None):
    from labkit.apps import social

    def make_chat_app():
        app = Flask("chat_context")
        histories = shared if shared is not None else {}
        lock = threading.Lock()

        @app.post("/chat")
        def chat():
            body = request.get_json(silent=True)
            message = body.get("message") if isinstance(body, dict) else None
            bad = (not isinstance(message, str)) if type_check else (message is None)
            if reject_empty and message == "":
                bad = True
            sid = request.cookies.get("sid")
            if in_cookie:
                try:
                    history = json.loads(base64.b64decode(sid)) if sid else []
                except Exception:
                    history = []
                if bad:
                    return {"error": "message"}, 400
                reply = social.reply_to(history, message)
                resp = jsonify(reply=reply)
                resp.set_cookie("sid", base64.b64encode(json.dumps(history + [message]).encode()).decode())
                return resp
            new = False
            if global_history:
                sid = "everyone"
            elif sid not in histories:
                if adopt and sid:
                    histories[sid] = []
                else:
                    sid = ids()
                    new = True
                    histories[sid] = []
            if bad:
                if bad_appends:
                    histories.setdefault(sid, []).append(str(message))
                resp = make_response({"error": "need a string message"}, 400)
                if new:
                    resp.set_cookie("sid", sid)
                return resp
            if locked:
                with lock:
                    history = histories.setdefault(sid, [])
                    seen = list(history) + ([message] if include_current else [])
                    reply = social.reply_to(seen, message)
                    history.append(message)
                    if cap:
                        del history[:-cap]
            else:
                seen = list(histories.get(sid, []))
                reply = social.reply_to(seen, message)
                time.sleep(0.005)
                histories[sid] = seen + [message]
            resp = jsonify({reply_key: reply}) if ct_json else make_response(json.dumps({reply_key: reply}))
            if new and not (cookie_late and len(histories[sid]) == 1):
                resp.set_cookie("sid", sid)
            return resp
        return app
    return make_chat_app


@case("01.chat_context", "dict_of_lists_lock", "", True)
def _():
    return (chat_app(),)


@case("01.chat_context", "per_session_locks_defaultdict_422", "", True)
def _():
    from labkit.apps import social

    def make_chat_app():
        app = Flask("chat_context")
        histories = defaultdict(list)
        locks = {}
        guard = threading.Lock()

        @app.route("/chat", methods=["POST"])
        def chat():
            sid = request.cookies.get("sid")
            fresh = not (isinstance(sid, str) and sid in histories)
            data = request.get_json(silent=True) or {}
            msg = data.get("message") if isinstance(data, dict) else None
            if not isinstance(msg, str):
                return jsonify(error="message must be a string"), 422
            if fresh:
                sid = secrets.token_urlsafe(32)
                with guard:
                    histories[sid]  # create
                    locks[sid] = threading.Lock()
            with locks[sid]:
                reply = social.reply_to(histories[sid], msg)
                histories[sid].append(msg)
            resp = jsonify(reply=reply)
            if fresh:
                resp.set_cookie("sid", sid, httponly=True, samesite="Strict")
            return resp
        return app
    return (make_chat_app,)


@case("01.chat_context", "class_tuples_atomic_swap", "", True)
def _():
    from labkit.apps import social

    class Chat:
        def __init__(self):
            self.turns = {}
            self.lock = threading.RLock()

        def handle(self):
            if not request.is_json:
                try:
                    json.loads(request.get_data(as_text=True))
                except ValueError:
                    return Response("not json", 415)
            payload = request.get_json(force=True, silent=True)
            sid = request.cookies.get("sid")
            with self.lock:
                known = sid in self.turns if isinstance(sid, str) else False
            if not (isinstance(payload, dict) and isinstance(payload.get("message"), str)):
                return Response(json.dumps({"error": "bad message"}), 400, mimetype="application/json")
            message = payload["message"]
            if not known:
                sid = secrets.token_hex(32)
            with self.lock:
                before = self.turns.get(sid, ())
                self.turns[sid] = before + (message,)
            reply = social.reply_to(list(before), message)
            resp = Response(json.dumps({"reply": reply}), mimetype="application/json")
            if not known:
                resp.set_cookie("sid", sid)
            return resp

    def make_chat_app():
        app = Flask("chat_context")
        app.add_url_rule("/chat", view_func=Chat().handle, methods=["POST"])
        return app
    return (make_chat_app,)


_SHARED_CHAT = {}
case("01.chat_context", "history_in_cookie", "security", False)(
    lambda: (chat_app(in_cookie=True),))
case("01.chat_context", "adopts_client_sid", "security", False)(
    lambda: (chat_app(adopt=True),))
case("01.chat_context", "one_global_history", "logic", False)(
    lambda: (chat_app(global_history=True),))
case("01.chat_context", "unlocked_read_modify_write", "concurrency", False)(
    lambda: (chat_app(locked=False),))
case("01.chat_context", "bad_body_appends", "hostile-input", False)(
    lambda: (chat_app(bad_appends=True),))
case("01.chat_context", "history_includes_current", "logic", False)(
    lambda: (chat_app(include_current=True),))
case("01.chat_context", "key_answer_not_reply", "substance", False)(
    lambda: (chat_app(reply_key="answer"),))
case("01.chat_context", "text_html_ctype", "substance", False)(
    lambda: (chat_app(ct_json=False),))
case("01.chat_context", "uuid4_ids", "security", False)(
    lambda: (chat_app(ids=lambda: str(uuid.uuid4())),))
case("01.chat_context", "counter_ids", "security", False)(
    lambda: (chat_app(ids=lambda: str(next(_counter))),))
case("01.chat_context", "no_type_check_int_message", "hostile-input", False)(
    lambda: (chat_app(type_check=False),))
case("01.chat_context", "rejects_empty_string", "hostile-input", False)(
    lambda: (chat_app(reject_empty=True),))
# The chat text does not ask for one history dict per app: allowed.
case("01.chat_context", "global_dict_across_apps_allowed", "", True)(
    lambda: (chat_app(shared=_SHARED_CHAT),))
case("01.chat_context", "history_capped_at_5", "logic", False)(
    lambda: (chat_app(cap=5),))


# =====================================================================================
# 02.rotate_on_login / 02.revoking_logout
# =====================================================================================

def secure_login(*, rotate="rotate", root_always_new=False, root_keeps_unknown=False,
                 user_before_verify=False, me_anon_200=False, logout="delete",
                 logout_status=200, logout_invalid=None, shared_scratch=False,
                 set_cookie=True, validate=True, rotate_only_anon=False):
    def make_login_app(store, verify):
        app = Flask("login_app")
        app.extensions["labkit.sessions"] = store
        scratch = {}

        def current():
            sid = request.cookies.get("sid")
            data = store.get(sid) if sid else None
            return sid, data

        @app.get("/")
        def root():
            sid, data = current()
            resp = make_response({"ok": True})
            if root_always_new or (data is None and not (root_keeps_unknown and sid)):
                resp.set_cookie("sid", store.new({}))
            return resp

        @app.post("/login")
        def login():
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                return {"error": "json"}, 400
            user, pw = body.get("username"), body.get("password")
            if validate and not (isinstance(user, str) and isinstance(pw, str)):
                return {"error": "strings"}, 400
            sid, data = current()
            if user_before_verify and data is not None:
                store.save(sid, {"user": user})
            if not verify(user, pw):
                return {"error": "wrong password"}, 401
            if shared_scratch:
                scratch["user"] = user
                time.sleep(0.003)
                user = scratch["user"]
            if rotate_only_anon and data is not None and data.get("user"):
                store.save(sid, {"user": user})
                new = sid
            elif rotate == "none" and data is not None:
                store.save(sid, {"user": user})
                new = sid
            elif rotate == "keep_old" or data is None or rotate == "none":
                new = store.new({"user": user})
            elif rotate == "rotate":
                new = store.rotate(sid)
                store.save(new, {"user": user})
            else:  # delete then new
                store.delete(sid)
                new = store.new({"user": user})
            resp = make_response({"user": user})
            if set_cookie:
                resp.set_cookie("sid", new, httponly=True, samesite="Lax")
            return resp

        @app.get("/me")
        def me():
            sid, data = current()
            if not data or not data.get("user"):
                if me_anon_200 and data is not None:
                    return {"user": None}
                return {"error": "not logged in"}, 401
            return {"user": data["user"]}

        @app.post("/logout")
        def do_logout():
            sid, data = current()
            if data is None:
                if logout_invalid == 500:
                    raise RuntimeError("no session")
                if logout_invalid == "clear":
                    store.clear()
                return ("", logout_invalid if isinstance(logout_invalid, int) else 204)
            if logout == "delete":
                store.delete(sid)
            elif logout == "clear":
                store.clear()
            elif logout == "empty":
                store.save(sid, {})
            elif logout == "rotate":
                store.rotate(sid)
            elif logout == "cookie_only":
                pass
            elif logout == "latest":
                store.delete(scratch.get("last", sid))
            resp = make_response("", logout_status)
            resp.delete_cookie("sid")
            return resp

        if logout == "latest":
            @app.after_request
            def remember_last(resp):
                if request.path == "/login" and resp.status_code == 200:
                    for c in resp.headers.getlist("Set-Cookie"):
                        if c.startswith("sid="):
                            scratch["last"] = c.split(";")[0][4:]
                return resp
        return app
    return make_login_app


@case("02.rotate_on_login", "store_rotate", "", True)
def _():
    return (secure_login(),)


@case("02.rotate_on_login", "delete_then_new_204_logout_all_of_user", "", True)
def _():
    def make_login_app(store, verify):
        app = Flask("login_app")
        app.extensions["labkit.sessions"] = store
        mine = defaultdict(set)
        lock = threading.Lock()

        def session():
            sid = request.cookies.get("sid")
            return sid, (store.get(sid) if isinstance(sid, str) and sid else None)

        @app.route("/")
        def index():
            sid, data = session()
            resp = jsonify(visitor=True)
            if data is None:
                resp.set_cookie("sid", store.new({}), httponly=True)
            return resp

        @app.route("/login", methods=["POST"])
        def login():
            body = request.get_json(silent=True)
            body = body if isinstance(body, dict) else {}
            u, p = body.get("username"), body.get("password")
            if not isinstance(u, str) or not isinstance(p, str) or not verify(u, p):
                return jsonify(error="no"), 401
            old, _ = session()
            if old:
                store.delete(old)
            sid = store.new({"user": u})
            with lock:
                mine[u].add(sid)
            resp = jsonify(user=u)
            resp.set_cookie("sid", sid, httponly=True)
            return resp

        @app.route("/me")
        def me():
            _, data = session()
            if data and "user" in data:
                return jsonify(user=data["user"])
            return jsonify(error="login"), 401

        @app.route("/logout", methods=["POST"])
        def logout():
            sid, data = session()
            if not data:
                return jsonify(error="no session"), 401
            user = data.get("user")
            with lock:
                victims = mine.pop(user, set()) | {sid} if user else {sid}
            for v in victims:
                store.delete(v)
            return "", 204
        return app
    return (make_login_app,)


@case("02.rotate_on_login", "class_view_rotate_then_save", "", True)
def _():
    class LoginApp:
        def __init__(self, store, verify):
            self.store, self.verify = store, verify

        def build(self):
            app = Flask("login_app")
            app.extensions["labkit.sessions"] = self.store
            for rule, fn, methods in (("/", self.index, ["GET"]), ("/login", self.login, ["POST"]),
                                      ("/me", self.me, ["GET"]), ("/logout", self.logout, ["POST"])):
                app.add_url_rule(rule, fn.__name__, fn, methods=methods)
            return app

        def _sid(self):
            return request.cookies.get("sid")

        def index(self):
            if self.store.get(self._sid()) is None:
                r = Response("welcome", mimetype="text/plain")
                r.set_cookie("sid", self.store.new({}))
                return r
            return "welcome back"

        def login(self):
            creds = request.get_json(silent=True)
            if not isinstance(creds, dict):
                return "bad", 400
            if not self.verify(creds.get("username"), creds.get("password")):
                return "wrong", 401
            old = self._sid()
            new = self.store.rotate(old) if self.store.get(old) is not None else None
            if new is None:
                new = self.store.new({})
            self.store.save(new, {"user": creds["username"]})
            r = jsonify(ok=1)
            r.set_cookie("sid", new)
            return r

        def me(self):
            data = self.store.get(self._sid()) or {}
            return ({"user": data["user"]}, 200) if "user" in data else ("no", 401)

        def logout(self):
            ok = self.store.delete(self._sid())
            return ("bye", 200) if ok else ("nothing to end", 200)

    return (lambda store, verify: LoginApp(store, verify).build(),)


for _q in ("02.revoking_logout",):
    CASES.append((_q, "store_rotate", "", True, lambda: (secure_login(),)))
    for _qid, _name, _kind, _valid, _f in list(CASES):
        if _qid == "02.rotate_on_login" and _valid and _name != "store_rotate":
            CASES.append((_q, _name, "", True, _f))

R, L = "02.rotate_on_login", "02.revoking_logout"
case(R, "no_rotation_save_into_session", "security", False)(lambda: (secure_login(rotate="none"),))
case(R, "new_id_old_left_alive", "security", False)(lambda: (secure_login(rotate="keep_old"),))
case(R, "rotates_only_anonymous_sessions", "security", False)(lambda: (secure_login(rotate_only_anon=True),))
case(R, "writes_user_before_verify", "security", False)(lambda: (secure_login(user_before_verify=True),))
case(R, "root_always_new_session", "logic", False)(lambda: (secure_login(root_always_new=True),))
case(R, "root_keeps_unknown_cookie", "security", False)(lambda: (secure_login(root_keeps_unknown=True),))
case(R, "me_anonymous_200_null", "substance", False)(lambda: (secure_login(me_anon_200=True),))
case(R, "login_sets_no_cookie", "substance", False)(lambda: (secure_login(set_cookie=False),))
case(R, "shared_scratch_user", "concurrency", False)(lambda: (secure_login(shared_scratch=True),))
# The kit's verify refuses non-strings, so passing them on is allowed.
case(R, "no_type_validation_allowed", "", True)(lambda: (secure_login(validate=False),))
case(L, "cookie_only_logout", "security", False)(lambda: (secure_login(logout="cookie_only"),))
case(L, "logout_everyone", "security", False)(lambda: (secure_login(logout="clear"),))
case(L, "logout_empties_data_keeps_id", "security", False)(lambda: (secure_login(logout="empty"),))
case(L, "logout_rotates_instead", "security", False)(lambda: (secure_login(logout="rotate"),))
case(L, "logout_redirect_302", "substance", False)(lambda: (secure_login(logout_status=302),))
case(L, "logout_invalid_500", "hostile-input", False)(lambda: (secure_login(logout_invalid=500),))
case(L, "logout_invalid_400", "hostile-input", False)(lambda: (secure_login(logout_invalid=400),))
case(L, "logout_invalid_clears_all", "security", False)(lambda: (secure_login(logout_invalid="clear"),))
case(L, "logout_latest_login", "concurrency", False)(lambda: (secure_login(logout="latest"),))
# A login without rotation is 02.rotate_on_login's fault; its logout is fine.
case(L, "no_rotation_logout_fine", "", True)(lambda: (secure_login(rotate="none"),))


# =====================================================================================
# 02.hijack_detector
# =====================================================================================

@case("02.hijack_detector", "dict_of_sets", "", True)
def _():
    def find_hijacks(log):
        seen = {}
        for e in log:
            if e["session"] is None:
                continue
            seen.setdefault(e["session"], set()).add((e["client"], e["user_agent"]))
        return {s for s, c in seen.items() if len(c) > 1}
    return (find_hijacks,)


@case("02.hijack_detector", "sorted_groupby", "", True)
def _():
    from itertools import groupby

    def find_hijacks(log):
        rows = sorted(((e["session"], e["client"], e["user_agent"]) for e in log
                       if e.get("session") is not None), key=lambda r: r[0])
        return {s for s, grp in groupby(rows, key=lambda r: r[0])
                if len({(c, u) for _, c, u in grp}) >= 2}
    return (find_hijacks,)


@case("02.hijack_detector", "first_client_compare", "", True)
def _():
    def find_hijacks(log):
        first, bad = {}, set()
        for e in log:
            s = e["session"]
            if s is None:
                continue
            who = (e["client"], e["user_agent"])
            if first.setdefault(s, who) != who:
                bad.add(s)
        return bad
    return (find_hijacks,)


def hj(key, *, threshold=1, skip_none=True, as_list=False, only_ok=False, fold=False):
    def find_hijacks(log):
        seen = defaultdict(set)
        for e in log:
            if skip_none and e["session"] is None:
                continue
            if only_ok and e["status"] >= 400:
                continue
            ua = e["user_agent"].lower() if fold and e["user_agent"] else e["user_agent"]
            seen[e["session"]].add(key(e) if key else (e["client"], ua))
        out = {s for s, c in seen.items() if len(c) > threshold}
        return sorted(out, key=str) if as_list else out
    return find_hijacks


H = "02.hijack_detector"
case(H, "address_only", "logic", False)(lambda: (hj(lambda e: e["client"]),))
case(H, "user_agent_only", "logic", False)(lambda: (hj(lambda e: e["user_agent"]),))
case(H, "more_than_two_clients", "logic", False)(lambda: (hj(None, threshold=2),))
case(H, "includes_none_session", "hostile-input", False)(lambda: (hj(None, skip_none=False),))
case(H, "returns_list", "substance", False)(lambda: (hj(None, as_list=True),))
# Whether a refused replay counts as a use is not asked: allowed.
case(H, "ignores_failed_requests_allowed", "", True)(lambda: (hj(None, only_ok=True),))
case(H, "case_folds_user_agent", "logic", False)(lambda: (hj(None, fold=True),))


@case(H, "many_requests_flagged", "logic", False)
def _():
    def find_hijacks(log):
        from collections import Counter
        n = Counter(e["session"] for e in log if e["session"])
        return {s for s, k in n.items() if k > 1}
    return (find_hijacks,)


@case(H, "clients_with_two_sessions", "logic", False)
def _():
    def find_hijacks(log):
        per_client = defaultdict(set)
        for e in log:
            if e["session"]:
                per_client[(e["client"], e["user_agent"])].add(e["session"])
        return {s for ss in per_client.values() if len(ss) > 1 for s in ss}
    return (find_hijacks,)


@case(H, "first_and_last_only", "logic", False)
def _():
    def find_hijacks(log):
        first, last = {}, {}
        for e in log:
            if e["session"]:
                first.setdefault(e["session"], (e["client"], e["user_agent"]))
                last[e["session"]] = (e["client"], e["user_agent"])
        return {s for s in first if first[s] != last[s]}
    return (find_hijacks,)


@case(H, "sorts_log_in_place", "substance", False)
def _():
    inner = hj(None)

    def find_hijacks(log):
        log.sort(key=lambda e: (str(e["session"]), e["time"]))
        return inner(log)
    return (find_hijacks,)


# =====================================================================================
# 02.rotating_signer
# =====================================================================================

def signer(*, sign_with=-1, verify_keys="all", eq=False, trunc=None, split_first=False,
           str_compare=False, plain_hash=False, prefix_ok=False, partial=None, swallow=False,
           sep="."):
    class RotatingSigner:
        def __init__(self, keys):
            self.keys = list(keys)

        def _mac(self, key, value):
            v = value[:partial] if partial else value
            if plain_hash:
                return hashlib.sha256((key + v).encode()).hexdigest()
            return hmac.new(key.encode(), v.encode(), hashlib.sha256).hexdigest()

        def sign(self, value):
            sig = self._mac(self.keys[sign_with], value)
            return value + sep + (sig[:trunc] if trunc else sig)

        def unsign(self, token):
            try:
                if split_first:
                    value, _, sig = token.partition(sep)
                else:
                    value, _, sig = token.rpartition(sep)
                if not _:
                    raise ValueError("no signature")
                keys = self.keys if verify_keys == "all" else self.keys[-1:]
                for key in keys:
                    good = self._mac(key, value)
                    if trunc:
                        good = good[:trunc]
                    if prefix_ok and sig and good.startswith(sig):
                        return value
                    if eq and good == sig:
                        return value
                    if str_compare and hmac.compare_digest(good, sig):
                        return value
                    if not (eq or str_compare) and hmac.compare_digest(good.encode(), sig.encode()):
                        return value
                raise ValueError("bad signature")
            except ValueError:
                if swallow:
                    return None
                raise
    return RotatingSigner


@case("02.rotating_signer", "hex_rpartition_bytes", "", True)
def _():
    return (signer(),)


@case("02.rotating_signer", "b64url_43_colon", "", True)
def _():
    class RotatingSigner:
        def __init__(self, keys):
            self.keys = [k.encode("utf-8") for k in keys]

        @staticmethod
        def _b64(raw):
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

        def sign(self, value):
            mac = hmac.digest(self.keys[-1], value.encode("utf-8"), "sha256")
            return f"{value}:{self._b64(mac)}"

        def unsign(self, token):
            if not isinstance(token, str) or ":" not in token:
                raise ValueError("no signature")
            value, sig = token.rsplit(":", 1)
            try:
                given = sig.encode("ascii")
            except UnicodeEncodeError:
                raise ValueError("signature is not ASCII") from None
            for key in reversed(self.keys):
                if hmac.compare_digest(self._b64(hmac.digest(key, value.encode("utf-8"), "sha256")).encode(), given):
                    return value
            raise ValueError("no key made this signature")
    return (RotatingSigner,)


@case("02.rotating_signer", "itsdangerous_signer", "", True)
def _():
    import itsdangerous

    class RotatingSigner:
        def __init__(self, keys):
            self.keys = list(keys)
            self._s = itsdangerous.Signer(self.keys, digest_method=hashlib.sha256,
                                          key_derivation="none")

        def sign(self, value):
            return self._s.sign(value).decode("utf-8")

        def unsign(self, token):
            try:
                return self._s.unsign(token.encode("utf-8")).decode("utf-8")
            except (itsdangerous.BadSignature, UnicodeError) as exc:
                raise ValueError(str(exc)) from None
    return (RotatingSigner,)


@case("02.rotating_signer", "digest_bytes_compare_per_key", "", True)
def _():
    class RotatingSigner:
        def __init__(self, keys):
            self.keys = list(keys)

        def sign(self, value):
            return value + "." + hmac.new(self.keys[-1].encode(), value.encode(), "sha256").hexdigest()

        def unsign(self, token):
            value, dot, sig = token.rpartition(".")
            if not dot or len(sig) != 64:
                raise ValueError("malformed")
            try:
                raw = bytes.fromhex(sig)
            except ValueError:
                raise ValueError("not hex") from None
            ok = False
            for k in self.keys:
                ok |= hmac.compare_digest(hmac.new(k.encode(), value.encode(), "sha256").digest(), raw)
            if not ok:
                raise ValueError("bad signature")
            return value
    return (RotatingSigner,)


S = "02.rotating_signer"
case(S, "signs_with_oldest_key", "security", False)(lambda: (signer(sign_with=0),))
case(S, "unsign_newest_only", "logic", False)(lambda: (signer(verify_keys="newest"),))
case(S, "eq_compare", "security", False)(lambda: (signer(eq=True),))
case(S, "truncated_mac_16", "security", False)(lambda: (signer(trunc=16),))
case(S, "split_on_first_dot", "hostile-input", False)(lambda: (signer(split_first=True),))
case(S, "compare_digest_on_str_nonascii", "hostile-input", False)(lambda: (signer(str_compare=True),))
case(S, "sha256_key_plus_value", "security", False)(lambda: (signer(plain_hash=True),))
case(S, "accepts_shortened_sig", "security", False)(lambda: (signer(prefix_ok=True),))
case(S, "mac_over_first_8_chars", "security", False)(lambda: (signer(partial=8),))
case(S, "returns_none_not_raise", "substance", False)(lambda: (signer(swallow=True),))


# =====================================================================================
# 03.sticky_policy
# =====================================================================================

@case("03.sticky_policy", "dict_lookup", "", True)
def _():
    class MySticky:
        cookie = "MYPIN"

        def __init__(self):
            self.turn = 0

        def choose(self, request, servers):
            by_name = {s.name: s for s in servers}
            pin = request.cookies.get(self.cookie)
            if pin in by_name:
                return by_name[pin]
            s = servers[self.turn % len(servers)]
            self.turn += 1
            return s
    return (MySticky,)


@case("03.sticky_policy", "next_generator_itertools", "", True)
def _():
    class MySticky:
        cookie = "MYPIN"

        def __init__(self):
            self.count = itertools.count()

        def choose(self, request, servers):
            pin = (request.cookies or {}).get("MYPIN")
            found = next((s for s in servers if s.name == pin), None)
            return found if found is not None else servers[next(self.count) % len(servers)]
    return (MySticky,)


@case("03.sticky_policy", "delegating_to_kit_roundrobin", "", True)
def _():
    from labkit.policies import RoundRobin

    class MySticky:
        cookie = "MYPIN"

        def __init__(self):
            self.turn = 0
            self.rr = RoundRobin()

        def choose(self, request, servers):
            for i, s in enumerate(servers):
                if request.cookies.get(self.cookie, object()) == s.name:
                    return servers[i]
            return self.rr.choose(request, servers)
    return (MySticky,)


def sticky(*, match="exact", place="rr", ret="obj", n_hard=None):
    class MySticky:
        cookie = "MYPIN"

        def __init__(self):
            self.turn = 0
            self.mem = {}

        def choose(self, request, servers):
            pin = request.cookies.get(self.cookie) if match != "keyerror" else request.cookies[self.cookie]
            for s in servers:
                if match in ("exact", "keyerror") and pin == s.name:
                    return s
                if match == "substr" and pin and pin in s.name:
                    return s
                if match == "fold" and pin and pin.lower() == s.name.lower():
                    return s
                if match == "index" and pin and pin[-1:].isdigit() and servers.index(s) == int(pin[-1]) - 1:
                    return s
            if match == "client_mem" and request.client_id in self.mem:
                for s in servers:
                    if s.name == self.mem[request.client_id]:
                        return s
            if place == "rr":
                s = servers[self.turn % len(servers)]
                self.turn += 1
            elif place == "first":
                s = servers[0]
            elif place == "hash":
                s = servers[int(hashlib.md5(request.client_id.encode()).hexdigest(), 16) % len(servers)]
            elif place == "random":
                s = random.choice(servers)
            elif place == "hard3":
                s = servers[self.turn]
                self.turn = (self.turn + 1) % 3
            self.mem[request.client_id] = s.name
            if ret == "name":
                return s.name
            if ret == "copy":
                from labkit.policies import Backend
                return Backend(s.name)
            return s
    return MySticky


P = "03.sticky_policy"
case(P, "substring_match", "hostile-input", False)(lambda: (sticky(match="substr"),))
case(P, "case_folded_match", "hostile-input", False)(lambda: (sticky(match="fold"),))
case(P, "pin_by_index", "visible-only", False)(lambda: (sticky(match="index"),))
case(P, "new_clients_first_server", "logic", False)(lambda: (sticky(place="first"),))
case(P, "hash_client_id", "logic", False)(lambda: (sticky(place="hash"),))
case(P, "random_placement", "logic", False)(lambda: (sticky(place="random"),))
case(P, "hardcoded_three_servers", "visible-only", False)(lambda: (sticky(place="hard3"),))
case(P, "returns_name", "substance", False)(lambda: (sticky(ret="name"),))
case(P, "returns_new_backend", "substance", False)(lambda: (sticky(ret="copy"),))
case(P, "keyerror_without_cookie", "hostile-input", False)(lambda: (sticky(match="keyerror"),))
case(P, "sticky_by_client_id_memory", "logic", False)(lambda: (sticky(match="client_mem"),))


# =====================================================================================
# 03.predict_logouts
# =====================================================================================

D = "03.predict_logouts"


@case(D, "set_comprehension", "", True)
def _():
    return (lambda pins, dead: {u for u, s in pins.items() if s in dead},)


@case(D, "loop_frozenset", "", True)
def _():
    def who_loses(pins, dead):
        dead = frozenset(dead)
        out = set()
        for user in pins:
            if pins[user] in dead:
                out.add(user)
        return out
    return (who_loses,)


@case(D, "invert_pins", "", True)
def _():
    def who_loses(pins, dead):
        by_server = defaultdict(set)
        for user, server in pins.items():
            by_server[server].add(user)
        return set().union(*(by_server.get(s, set()) for s in dead))
    return (who_loses,)


case(D, "returns_list", "substance", False)(
    lambda: (lambda pins, dead: [u for u, s in pins.items() if s in dead],))


@case(D, "pops_losers_from_pins", "substance", False)
def _():
    def who_loses(pins, dead):
        out = {u for u, s in pins.items() if s in dead}
        for u in out:
            pins.pop(u)
        return out
    return (who_loses,)


case(D, "returns_servers", "logic", False)(
    lambda: (lambda pins, dead: {s for s in pins.values() if s in dead},))
case(D, "first_dead_only", "logic", False)(
    lambda: (lambda pins, dead: {u for u, s in pins.items() if dead and s == sorted(dead)[0]},))
case(D, "substring_in_str_dead", "hostile-input", False)(
    lambda: (lambda pins, dead: {u for u, s in pins.items() if s in str(sorted(dead))},))
case(D, "survivors_instead", "logic", False)(
    lambda: (lambda pins, dead: {u for u, s in pins.items() if s not in dead},))
case(D, "next_iter_crashes_empty", "hostile-input", False)(
    lambda: (lambda pins, dead: {u for u, s in pins.items() if s == next(iter(dead))} if len(dead) < 2
             else {u for u, s in pins.items() if s in dead},))
case(D, "case_folded", "hostile-input", False)(
    lambda: (lambda pins, dead: {u for u, s in pins.items() if s.lower() in {d.lower() for d in dead}},))
case(D, "everyone_if_any_dead", "logic", False)(
    lambda: (lambda pins, dead: set(pins) if dead else set(),))


@case(D, "drains_dead", "substance", False)
def _():
    def who_loses(pins, dead):
        out = set()
        while dead:
            d = dead.pop()
            out |= {u for u, s in pins.items() if s == d}
        return out
    return (who_loses,)


# =====================================================================================
# 03.capacity_model
# =====================================================================================

C = "03.capacity_model"


@case(C, "max_form", "", True)
def _():
    def latency(*, users, servers, workers, service_time):
        return max(service_time, users * service_time / (servers * workers))
    return (latency,)


@case(C, "if_else", "", True)
def _():
    def latency(*, users, servers, workers, service_time):
        slots = servers * workers
        if users <= slots:
            return float(service_time)
        return service_time * users / slots
    return (latency,)


@case(C, "littles_law_throughput", "", True)
def _():
    def latency(*, users, servers, workers, service_time):
        throughput = min(users, servers * workers) / service_time  # requests per second
        return users / throughput
    return (latency,)


def cap(f):
    return lambda: (lambda *, users, servers, workers, service_time: f(users, servers, workers, service_time),)


case(C, "no_floor", "logic", False)(cap(lambda u, s, w, t: u * t / (s * w)))
case(C, "ceil_batches", "logic", False)(cap(lambda u, s, w, t: math.ceil(u / (s * w)) * t))
case(C, "ignores_workers", "logic", False)(cap(lambda u, s, w, t: max(t, u * t / s)))
case(C, "milliseconds", "substance", False)(cap(lambda u, s, w, t: 1000 * max(t, u * t / (s * w))))
case(C, "floor_division", "logic", False)(cap(lambda u, s, w, t: max(t, (u // (s * w)) * t)))
case(C, "lookup_table", "visible-only", False)(
    cap(lambda u, s, w, t: {(12, 3, 2): 0.04, (12, 2, 2): 0.06}.get((u, s, w), t)))
case(C, "wait_plus_service", "logic", False)(cap(lambda u, s, w, t: u * t / (s * w) + t))
case(C, "rounded_2dp", "logic", False)(cap(lambda u, s, w, t: round(max(t, u * t / (s * w)), 2)))
case(C, "int_result", "substance", False)(cap(lambda u, s, w, t: int(max(t, u * t / (s * w)))))
case(C, "users_minus_one", "logic", False)(cap(lambda u, s, w, t: max(t, (u - 1) * t / (s * w))))
case(C, "ignores_servers", "logic", False)(cap(lambda u, s, w, t: max(t, u * t / w)))
