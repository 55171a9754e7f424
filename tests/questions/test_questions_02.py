"""Chapter 02 checks: the reference passes, the released stubs fail, and one answer
table of valid alternatives and wrong answers (each wrong one must fail naming what
broke)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import threading
import time
from collections import defaultdict
from pathlib import Path

import itsdangerous
from flask import Flask, jsonify, make_response, request

from exercise_kit import (assert_case, assert_released_stubs_fail, reference, table, valid,
                          wrong)

SOLUTION = Path(__file__).resolve().parents[2] / "solutions" / "02_session_security_exercises.ipynb"
REF = reference(SOLUTION)


# -- make_login_app: one factory with switchable mistakes ------------------------------

def login_app(*, rotate=True, kill_old=True, revoke=True, adopt_on_visit=False,
              user_before_check=False, shared_sid=False, rotate_only_fresh=False,
              new_on_every_visit=False, logout_all=False, logout_empties=False,
              logout_last=False, logout_strict=False, logout_raises_twice=False,
              logout_by_get=False, me_text=False, me_200_anonymous=False):
    """A login app with one defence switched off or one mistake switched on."""

    def make_login_app(store, verify):
        app = Flask("variant")
        app.extensions["labkit.sessions"] = store
        shared = {}
        last = {}

        def set_sid(response, sid):
            response.set_cookie("sid", sid, httponly=True)
            return response

        @app.get("/")
        def home():
            sid = request.cookies.get("sid")
            if adopt_on_visit and sid:
                return set_sid(jsonify(ok=True), sid)
            if new_on_every_visit or store.get(sid) is None:
                return set_sid(jsonify(ok=True), store.new({}))
            return jsonify(ok=True)

        @app.post("/login")
        def login():
            body = request.get_json(silent=True) or {}
            user, password = body.get("username"), body.get("password")
            old = request.cookies.get("sid")
            if user_before_check and store.get(old) is not None:
                store.save(old, {"user": user})
            if not (isinstance(user, str) and isinstance(password, str) and verify(user, password)):
                return {"error": "bad_credentials"}, 401
            data = store.get(old)
            fresh_visit = data == {}
            if not rotate or (rotate_only_fresh and data is not None and not fresh_visit):
                if data is not None:
                    store.save(old, {"user": user})
                    sid = old
                else:
                    sid = store.new({"user": user})
            else:
                if kill_old:
                    store.delete(old)
                if shared_sid:
                    shared["sid"] = store.new({"user": user})
                    verify(user, password)  # slow: another login may run meanwhile
                    sid = shared["sid"]
                else:
                    sid = store.new({"user": user})
            last["sid"] = sid
            return set_sid(jsonify(user=user), sid)

        @app.get("/me")
        def me():
            data = store.get(request.cookies.get("sid")) or {}
            if "user" not in data:
                if me_200_anonymous:
                    return {"user": None}
                return {"error": "login_required"}, 401
            if me_text:
                return data["user"]
            return {"user": data["user"]}

        @app.route("/logout", methods=["GET"] if logout_by_get else ["POST"])
        def logout():
            sid = request.cookies.get("sid")
            if logout_strict:
                sid = request.cookies["sid"]
            if logout_all:
                store.clear()
            elif logout_empties:
                if store.get(sid) is not None:
                    store.save(sid, {})
            elif logout_last:
                store.delete(last.get("sid"))
            elif logout_raises_twice:
                if store.get(sid) is not None:  # check, then act: a race
                    time.sleep(0.05)  # a slow database in between
                    if not store.delete(sid):
                        raise RuntimeError("no such session")
            elif revoke:
                store.delete(sid)
            response = jsonify(logged_out=True)
            response.delete_cookie("sid")
            return response

        return app

    return make_login_app


class LoginService:
    """Valid: a class; store.rotate at login; 204 at logout; logout ends all of the
    user's sessions (the text leaves that choice open)."""

    def __init__(self, store, verify):
        self.store, self.verify = store, verify
        self.by_user = defaultdict(set)
        self.lock = threading.Lock()

    def app(self):
        app = Flask("login_service")
        app.extensions["labkit.sessions"] = self.store
        app.get("/")(self.home)
        app.post("/login")(self.login)
        app.get("/me")(self.me)
        app.post("/logout")(self.logout)
        return app

    def _cookie(self, response, sid):
        response.set_cookie("sid", sid, httponly=True, samesite="Lax")
        return response

    def home(self):
        if self.store.get(request.cookies.get("sid")) is None:
            return self._cookie(jsonify(visiting=True), self.store.new({}))
        return jsonify(visiting=True)

    def login(self):
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return jsonify(error="json please"), 400
        user, password = body.get("username"), body.get("password")
        if not (isinstance(user, str) and isinstance(password, str)
                and self.verify(user, password)):
            return jsonify(error="bad_credentials"), 401
        sid = self.store.rotate(request.cookies.get("sid")) or self.store.new({})
        self.store.save(sid, {"user": user})
        with self.lock:
            self.by_user[user].add(sid)
        return self._cookie(jsonify(user=user), sid)

    def me(self):
        data = self.store.get(request.cookies.get("sid"))
        if not data or "user" not in data:
            return jsonify(error="login_required"), 401
        return jsonify(user=data["user"])

    def logout(self):
        data = self.store.get(request.cookies.get("sid"))
        if data is None or "user" not in data:
            return "", 204
        with self.lock:
            sids = self.by_user.pop(data["user"], set())
        for sid in sids | {request.cookies.get("sid")}:
            self.store.delete(sid)
        response = make_response("", 204)
        response.delete_cookie("sid")
        return response


def login_service(store, verify):
    return LoginService(store, verify).app()


def closures_login(store, verify):
    """Valid: blueprints-free closures, 401 for logout without a session, text body."""
    app = Flask("closures")

    def current():
        return request.cookies.get("sid"), store.get(request.cookies.get("sid"))

    @app.route("/", methods=["GET"])
    def index():
        sid, data = current()
        response = make_response(jsonify(hello=(data or {}).get("user", "visitor")))
        if data is None:
            response.set_cookie("sid", store.new({"visits": 1}))
        return response

    @app.route("/login", methods=["POST"])
    def login():
        body = request.get_json(silent=True) or {}
        if not verify(str(body.get("username", "")), str(body.get("password", ""))):
            return jsonify(error="nope"), 401
        old, data = current()
        if data is not None:
            store.delete(old)
        sid = store.new({**(data or {}), "user": body["username"]})
        response = jsonify(user=body["username"])
        response.set_cookie("sid", sid, httponly=True, samesite="Strict")
        return response

    @app.route("/me", methods=["GET"])
    def me():
        _sid, data = current()
        if data and "user" in data:
            return jsonify(user=data["user"])
        return jsonify(error="who are you?"), 401

    @app.route("/logout", methods=["POST"])
    def logout():
        sid, data = current()
        if data is None:
            return "not logged in", 401
        store.delete(sid)
        return "bye", 200

    return app


# -- find_hijacks ------------------------------------------------------------------------

def user_agent_only(log):
    agents = {}
    for e in log:
        if e["session"]:
            agents.setdefault(e["session"], set()).add(e["user_agent"])
    return {s for s, a in agents.items() if len(a) > 1}


def address_only(log):
    addresses = {}
    for e in log:
        if e["session"]:
            addresses.setdefault(e["session"], set()).add(e["client"])
    return {s for s, a in addresses.items() if len(a) > 1}


def busy_sessions(log):
    counts = {}
    for e in log:
        if e["session"]:
            counts[e["session"]] = counts.get(e["session"], 0) + 1
    return {s for s, n in counts.items() if n > 1}


def with_none(log):
    clients = {}
    for e in log:
        clients.setdefault(e["session"], set()).add((e["client"], e["user_agent"]))
    return {s for s, c in clients.items() if len(c) > 1}


def as_list(log):
    return sorted(REF["find_hijacks"](log))


def from_second_machine(log):
    return {e["session"] for e in log if e["session"] and e["client"] == "127.0.0.2"}


def mallory_agent(log):
    return {e["session"] for e in log if e["session"] and "Mallory" in e["user_agent"]}


def first_pair_differs(log):
    """Compares each request only with the session's first one... by address."""
    first = {}
    flagged = set()
    for e in log:
        if e["session"] is None:
            continue
        seen = first.setdefault(e["session"], e["client"])
        if seen != e["client"]:
            flagged.add(e["session"])
    return flagged


def crashes_on_empty(log):
    latest = max(e["time"] for e in log)  # ValueError on an empty log
    return {s for s in REF["find_hijacks"](log) if latest}


def global_pairs(log):
    """Counts distinct clients over the whole log instead of per session."""
    pairs = {(e["client"], e["user_agent"]) for e in log if e["session"]}
    return {e["session"] for e in log if e["session"]} if len(pairs) > 1 else set()


def grouped_frozenset(log):
    """Valid: sort, group, return a frozenset."""
    rows = sorted((e for e in log if e.get("session")), key=lambda e: e["session"])
    return frozenset(
        session for session, entries in itertools.groupby(rows, key=lambda e: e["session"])
        if len({(e["client"], e["user_agent"]) for e in entries}) > 1)


def two_dicts(log):
    """Valid: remember the first client of each session, flag any other."""
    first, flagged = {}, set()
    for e in log:
        if e["session"] is None:
            continue
        client = (e["client"], e["user_agent"])
        if first.setdefault(e["session"], client) != client:
            flagged.add(e["session"])
    return flagged


# -- RotatingSigner ----------------------------------------------------------------------

Signer = REF["RotatingSigner"]


def _mac(key, value):
    return hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()


class OldestKeySigns(Signer):
    def sign(self, value):
        return f"{value}.{_mac(self.keys[0], value)}"


class OnlyNewestVerifies(Signer):
    def unsign(self, token):
        value, _, signature = token.rpartition(".")
        if hmac.compare_digest(_mac(self.keys[-1], value), signature):
            return value
        raise ValueError("bad signature")


class FirstAndLastKeysOnly(Signer):
    """Right for two keys (the example), wrong for three."""

    def unsign(self, token):
        value, _, signature = token.rpartition(".")
        for key in {self.keys[0], self.keys[-1]}:
            if hmac.compare_digest(_mac(key, value), signature):
                return value
        raise ValueError("bad signature")


class NeverRejects(Signer):
    def unsign(self, token):
        return token.rpartition(".")[0] or token


class SplitsOnFirstDot(Signer):
    def unsign(self, token):
        value, signature = token.split(".", 1)
        for key in self.keys:
            if hmac.compare_digest(_mac(key, value), signature):
                return value
        raise ValueError("bad signature")


class TruncatedMac(Signer):
    def sign(self, value):
        return f"{value}.{_mac(self.keys[-1], value)[:16]}"

    def unsign(self, token):
        value, _, signature = token.rpartition(".")
        for key in self.keys:
            if hmac.compare_digest(_mac(key, value)[:16], signature):
                return value
        raise ValueError("bad signature")


class EqualsCompare:
    def __init__(self, keys):
        self.keys = list(keys)

    def sign(self, value):
        return f"{value}.{_mac(self.keys[-1], value)}"

    def unsign(self, token):
        value, _, signature = token.rpartition(".")
        for key in self.keys:
            if _mac(key, value) == signature:
                return value
        raise ValueError("bad signature")


class PlainHash:
    def __init__(self, keys):
        self.keys = list(keys)

    @staticmethod
    def _sig(key, value):
        return hashlib.sha256((key + value).encode()).hexdigest()

    def sign(self, value):
        return f"{value}.{self._sig(self.keys[-1], value)}"

    def unsign(self, token):
        value, _, signature = token.rpartition(".")
        if any(hmac.compare_digest(self._sig(k, value), signature) for k in self.keys):
            return value
        raise ValueError("bad signature")


class PrefixCompare(Signer):
    """Accepts any prefix of the right signature, including an empty one."""

    def unsign(self, token):
        value, _, signature = token.rpartition(".")
        for key in self.keys:
            mac = _mac(key, value)
            if hmac.compare_digest(mac[:len(signature)], signature):
                return value
        raise ValueError("bad signature")


class RemembersTokens(Signer):
    """Accepts any token it has signed before, whatever the keys are now."""

    issued: set = set()

    def sign(self, value):
        token = super().sign(value)
        RemembersTokens.issued.add(token)
        return token

    def unsign(self, token):
        if token in RemembersTokens.issued:
            return token.rpartition(".")[0]
        return super().unsign(token)


class ItsdangerousSha1:
    """itsdangerous with its default digest (SHA-1): a 27-character signature."""

    def __init__(self, keys):
        self.signer = itsdangerous.Signer(list(keys))

    def sign(self, value):
        return self.signer.sign(value).decode()

    def unsign(self, token):
        try:
            return self.signer.unsign(token).decode()
        except itsdangerous.BadSignature as exc:
            raise ValueError(str(exc)) from None


class ItsdangerousSha256(ItsdangerousSha1):
    """Valid: itsdangerous with SHA-256, as the text allows."""

    def __init__(self, keys):
        self.signer = itsdangerous.Signer(list(keys), digest_method=hashlib.sha256)


class Base64Signer:
    """Valid: base64url signature, ':' separator, compare_digest on bytes."""

    def __init__(self, keys):
        self.keys = [k.encode() for k in keys]

    def _sig(self, key, value):
        digest = hmac.digest(key, value.encode(), "sha256")
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(self, value):
        return value + ":" + self._sig(self.keys[-1], value)

    def unsign(self, token):
        value, sep, signature = token.rpartition(":")
        if sep and any(hmac.compare_digest(self._sig(k, value).encode(), signature.encode())
                       for k in reversed(self.keys)):
            return value
        raise ValueError("bad signature")


def rotate_without_fallback(store, verify):
    """store.rotate(old) for every login: None for a made-up or missing id, then 500."""
    make = REF["make_login_app"]
    app = make(store, verify)

    def login():
        body = request.get_json(silent=True) or {}
        user, password = body.get("username"), body.get("password")
        if not (isinstance(user, str) and isinstance(password, str) and verify(user, password)):
            return {"error": "bad_credentials"}, 401
        sid = store.rotate(request.cookies.get("sid"))
        store.save(sid, {"user": user})  # KeyError when rotate gave None
        response = jsonify(user=user)
        response.set_cookie("sid", sid, httponly=True)
        return response

    app.view_functions["login"] = login
    return app


def successful_requests_only(log):
    """Valid: counts only requests the server accepted (status < 400)."""
    return REF["find_hijacks"]([e for e in log if e["status"] < 400])


RO, LO, HD, RS = ("02.rotate_on_login", "02.revoking_logout", "02.hijack_detector",
                  "02.rotating_signer")
CASES = [
    valid(RO, "reference", REF["make_login_app"]),
    valid(RO, "class-rotate-204", login_service),
    valid(RO, "closures-text-logout", closures_login),
    wrong(RO, "no-rotation", login_app(rotate=False), says="fixation", kind="security"),
    wrong(RO, "old-id-kept-alive", login_app(kill_old=False), says="pre-login id still works",
          kind="security"),
    wrong(RO, "visit-adopts-made-up-id", login_app(adopt_on_visit=True),
          says="never issued adopted", kind="security"),
    wrong(RO, "user-written-before-check", login_app(user_before_check=True),
          says="wrong password logged the session in", kind="security"),
    wrong(RO, "rotates-only-after-visit", login_app(rotate_only_fresh=True),
          says="already logged in as", kind="visible-only"),
    wrong(RO, "shared-sid-variable", login_app(shared_sid=True), says="another user",
          kind="concurrency"),
    wrong(RO, "new-session-every-visit", login_app(new_on_every_visit=True),
          says="keep that session", kind="logic"),
    wrong(RO, "me-as-text", login_app(me_text=True), says="Content-Type", kind="substance"),
    wrong(RO, "me-200-when-anonymous", login_app(me_200_anonymous=True), says="401",
          kind="substance"),
    wrong(RO, "rotate-without-fallback", rotate_without_fallback, says="made-up 'sid'",
          kind="hostile-input"),
    valid(LO, "reference", REF["make_login_app"]),
    valid(LO, "class-204-all-user-sessions", login_service),
    valid(LO, "closures-text-logout", closures_login),
    wrong(LO, "cookie-only", login_app(revoke=False), says="delete the session on the server",
          kind="security"),
    wrong(LO, "empties-but-keeps", login_app(logout_empties=True), says="still in the store",
          kind="security"),
    wrong(LO, "logs-everyone-out", login_app(logout_all=True), says="logged somebody out",
          kind="security"),
    wrong(LO, "deletes-last-login", login_app(logout_last=True), says="logged somebody out",
          kind="visible-only"),
    wrong(LO, "500-without-cookie", login_app(logout_strict=True), says="with no cookie",
          kind="hostile-input"),
    wrong(LO, "500-on-second-copy", login_app(logout_raises_twice=True), says="same time",
          kind="concurrency"),
    wrong(LO, "logout-by-get-only", login_app(logout_by_get=True), says="200 or 204",
          kind="substance"),
    valid(HD, "reference", REF["find_hijacks"]),
    valid(HD, "groupby-frozenset", grouped_frozenset),
    valid(HD, "first-client-per-session", two_dicts),
    valid(HD, "successful-requests-only", successful_requests_only),
    wrong(HD, "user-agent-only", user_agent_only, says="did not flag", kind="logic"),
    wrong(HD, "address-only", address_only, says="did not flag", kind="logic"),
    wrong(HD, "first-address-only", first_pair_differs, says="did not flag", kind="logic"),
    wrong(HD, "busy-sessions", busy_sessions, says="honest", kind="logic"),
    wrong(HD, "keeps-none", with_none, says="None", kind="hostile-input"),
    wrong(HD, "returns-list", as_list, says="a set", kind="substance"),
    wrong(HD, "from-127.0.0.2", from_second_machine, says="did not flag", kind="visible-only"),
    wrong(HD, "mallory-agent", mallory_agent, says="did not flag", kind="visible-only"),
    wrong(HD, "crashes-on-empty-log", crashes_on_empty, says="empty", kind="hostile-input"),
    wrong(HD, "pairs-over-whole-log", global_pairs, says="honest", kind="logic"),
    valid(RS, "reference", Signer),
    valid(RS, "itsdangerous-sha256", ItsdangerousSha256),
    valid(RS, "base64-colon", Base64Signer),
    wrong(RS, "oldest-key-signs", OldestKeySigns, says="newest", kind="logic"),
    wrong(RS, "only-newest-verifies", OnlyNewestVerifies, says="should still verify",
          kind="logic"),
    wrong(RS, "first-and-last-keys", FirstAndLastKeysOnly, says="middle key",
          kind="visible-only"),
    wrong(RS, "never-rejects", NeverRejects, says="ValueError", kind="security"),
    wrong(RS, "splits-on-first-dot", SplitsOnFirstDot, says="exactly the value",
          kind="hostile-input"),
    wrong(RS, "truncated-mac", TruncatedMac, says="shorter", kind="security"),
    wrong(RS, "equals-compare", EqualsCompare, says="compare_digest", kind="security"),
    wrong(RS, "plain-sha256", PlainHash, says="plain SHA-256", kind="security"),
    wrong(RS, "prefix-compare", PrefixCompare, says="ValueError", kind="security"),
    wrong(RS, "remembers-tokens", RemembersTokens, says="no longer in the list",
          kind="security"),
    wrong(RS, "itsdangerous-sha1", ItsdangerousSha1, says="shorter", kind="security"),
]


@table(CASES)
def test_answer_table(case):
    assert_case(case)


def test_released_stubs_fail_with_the_stub_message():
    assert_released_stubs_fail(SOLUTION)
