"""The chapter 04 checks: the reference passes, the released stubs fail, and every row of
the answer table (valid alternatives, wrong answers by class) gets the right verdict."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import random
import secrets
import time
import uuid

from flask import jsonify

from exercise_kit import (SOLUTIONS, assert_case, assert_released_stubs_fail, check_calls,
                          reference, run, table, valid, wrong)
from labkit.apps import social
from labkit.state.redis import RedisSessionStore, StoreUnavailable
from labkit.state.replication import Copy, Replica, WriteInvalidate, WriteUpdate

SOLUTION = SOLUTIONS / "04_keeping_sessions_alive_exercises.ipynb"
REF = reference(SOLUTION)


def test_reference_answers_pass():
    for qid, names in check_calls(SOLUTION):
        result = run(qid, *(REF[n] for n in names))
        assert result.passed, (qid, result.message)


def test_released_stubs_fail_with_the_stub_message():
    assert_released_stubs_fail(SOLUTION, at_least=3)


# ------------------------------------------------------------------ write-invalidate
class DictOfTuples(Replica):
    """Valid: the same protocol, written with explicit branches and a version check."""

    def read(self, sid):
        with self.lock:
            copy = self.copies.get(sid)
        if copy is None:
            return None
        if copy.data is None:
            reply = self.send(copy.owner, "fetch", sid)
            if not reply:
                return None
            with self.lock:
                current = self.copies.get(sid)
                if current is not None and current.version <= reply["version"]:
                    self.copies[sid] = Copy(reply["data"], reply["version"], copy.owner)
            return reply["data"]
        return copy.data

    def write(self, sid, data):
        with self.lock:
            version = self.copies[sid].version + 1 if sid in self.copies else 1
            self.copies[sid] = Copy(data, version, self.name)
        notices = [(peer, version) for peer in self.peers()]
        for peer, v in notices:
            self.send(peer, "invalidate", sid, {"version": v})

    def on_message(self, kind, sid, body, sender):
        if kind == "invalidate":
            with self.lock:
                old = self.copies.get(sid)
                if old is None or body["version"] > old.version:
                    self.copies[sid] = Copy(None, body["version"], sender)
            return None
        if kind == "fetch":
            with self.lock:
                copy = self.copies.get(sid)
            return None if copy is None or copy.data is None else {
                "data": copy.data, "version": copy.version}
        return super().on_message(kind, sid, body, sender)


class ForgetsToInvalidate(WriteInvalidate):
    """Writes locally and announces new sessions only: peers keep stale copies."""

    def write(self, sid, data):
        with self.lock:
            old = self.copies.get(sid)
            self.copies[sid] = Copy(data, (old.version if old else 0) + 1, self.name)
        if old is None:
            for peer in self.peers():
                self.send(peer, "invalidate", sid, {"version": 1})


class RefetchesEveryTime(REF["MyInvalidate"]):
    """Never keeps a fetched copy."""

    def read(self, sid):
        with self.lock:
            copy = self.copies.get(sid)
        if copy is None or copy.owner == self.name:
            return copy.data if copy else None
        reply = self.send(copy.owner, "fetch", sid)
        return reply["data"] if reply else None


class UpdatesWhenSmall(REF["MyInvalidate"]):
    """Games a size threshold: sends the whole session when it is 'small'."""

    def write(self, sid, data):
        if len(json.dumps(data)) > 500:
            return super().write(sid, data)
        with self.lock:
            old = self.copies.get(sid)
            version = (old.version if old else 0) + 1
            self.copies[sid] = Copy(data, version, self.name)
        for peer in self.peers():
            self.send(peer, "update", sid, {"data": data, "version": version})

    def on_message(self, kind, sid, body, sender):
        if kind == "update":
            with self.lock:
                self.copies[sid] = Copy(body["data"], body["version"], sender)
            return None
        return super().on_message(kind, sid, body, sender)


class UpdateCalledFetch(REF["MyInvalidate"]):
    """Write-update in disguise: the whole session travels in a message named 'fetch'."""

    def write(self, sid, data):
        with self.lock:
            old = self.copies.get(sid)
            version = (old.version if old else 0) + 1
            self.copies[sid] = Copy(data, version, self.name)
        for peer in self.peers():
            self.send(peer, "fetch", sid, {"push": data, "version": version})

    def on_message(self, kind, sid, body, sender):
        if kind == "fetch" and "push" in body:
            with self.lock:
                self.copies[sid] = Copy(body["push"], body["version"], sender)
            return None
        return super().on_message(kind, sid, body, sender)


class HoldsLockWhileSending(REF["MyInvalidate"]):
    """Sends its invalidations while holding self.lock: two writers wait on each other."""

    def write(self, sid, data):
        with self.lock:
            old = self.copies.get(sid)
            version = (old.version if old else 0) + 1
            self.copies[sid] = Copy(data, version, self.name)
            for peer in self.peers():
                self.send(peer, "invalidate", sid, {"version": version})

    def on_message(self, kind, sid, body, sender):
        with self.lock:
            copy = self.copies.get(sid)
            if kind == "invalidate":
                self.copies[sid] = Copy(None, body["version"], sender)
                return None
            if kind == "fetch" and copy is not None and copy.data is not None:
                return {"data": copy.data, "version": copy.version}
        return Replica.on_message(self, kind, sid, body, sender)


class CrashesOnUnknown(REF["MyInvalidate"]):
    """self.copies[sid]: a KeyError for a session this server never heard of."""

    def read(self, sid):
        copy = self.copies[sid]
        if copy.data is not None:
            return copy.data
        return super().read(sid)


class FetchesFromEveryone(REF["MyInvalidate"]):
    """Asks every peer instead of the owner."""

    def read(self, sid):
        with self.lock:
            copy = self.copies.get(sid)
        if copy is None or copy.data is not None:
            return None if copy is None else copy.data
        found = None
        for peer in self.peers():
            reply = self.send(peer, "fetch", sid)
            if reply and found is None:
                found = reply
        if found is None:
            return None
        with self.lock:
            self.copies[sid] = Copy(found["data"], found["version"], copy.owner)
        return found["data"]


class FetchesFromFirstPeer(REF["MyInvalidate"]):
    """Forgets who the owner is: asks the first peer in the list."""

    def read(self, sid):
        with self.lock:
            copy = self.copies.get(sid)
        if copy is None or copy.data is not None:
            return None if copy is None else copy.data
        reply = self.send(self.peers()[0], "fetch", sid)
        if reply is None:
            return None
        with self.lock:
            self.copies[sid] = Copy(reply["data"], reply["version"], copy.owner)
        return reply["data"]


class InvalidatesOnTie(REF["MyInvalidate"]):
    """Drops its copy on a notice of the version it already holds (>= instead of >)."""

    def on_message(self, kind, sid, body, sender):
        if kind == "invalidate":
            with self.lock:
                copy = self.copies.get(sid)
                if copy is None or body["version"] >= copy.version:
                    self.copies[sid] = Copy(None, body["version"], sender)
            return None
        return super().on_message(kind, sid, body, sender)


class IgnoresVersions(REF["MyInvalidate"]):
    """Drops its copy on every notice, whatever its version."""

    def on_message(self, kind, sid, body, sender):
        if kind == "invalidate":
            with self.lock:
                self.copies[sid] = Copy(None, body["version"], sender)
            return None
        return super().on_message(kind, sid, body, sender)


# ------------------------------------------------------------------ redis store
Ref = REF["MyRedisStore"]


class UuidStore(Ref):
    """Valid: 128-bit hex ids, and a read-then-expire pipeline instead of GETEX."""

    def new(self, data=None):
        sid = secrets.token_hex(16)
        self.client.set(self.prefix + sid, json.dumps(data or {}), ex=self.idle_timeout)
        return sid

    def get(self, sid):
        pipe = self.client.pipeline()
        pipe.get(self.prefix + sid)
        pipe.expire(self.prefix + sid, self.idle_timeout)
        raw, _ = pipe.execute()
        return None if raw is None else json.loads(raw)

    def save(self, sid, data):
        if not self.client.set(self.prefix + sid, json.dumps(data), ex=self.idle_timeout,
                               xx=True):
            raise KeyError(sid)

    def delete(self, sid):
        return bool(self.client.delete(self.prefix + sid))


class Uuid4Store(Ref):
    """uuid4 ids: 122 random bits, under the 128 the task asks for."""

    def new(self, data=None):
        sid = str(uuid.uuid4())
        self.client.set(self.prefix + sid, json.dumps(data or {}), ex=self.idle_timeout)
        return sid


class MersenneStore(Ref):
    """Ids from the `random` module: 624 words of output give away every later id."""

    def new(self, data=None):
        sid = "%032x" % random.getrandbits(128)
        self.client.set(self.prefix + sid, json.dumps(data or {}), ex=self.idle_timeout)
        return sid


class RandbytesStore(Ref):
    """random.randbytes, base64: the same Mersenne Twister behind another encoding."""

    def new(self, data=None):
        sid = base64.urlsafe_b64encode(random.randbytes(24)).decode().rstrip("=")
        self.client.set(self.prefix + sid, json.dumps(data or {}), ex=self.idle_timeout)
        return sid


class ClockHashStore(Ref):
    """A hash of the clock: looks random, but an attacker tries the likely instants."""

    def new(self, data=None):
        sid = hashlib.sha256(str(time.time_ns()).encode()).hexdigest()
        self.client.set(self.prefix + sid, json.dumps(data or {}), ex=self.idle_timeout)
        return sid


class NullDataStore(Ref):
    """new() without data stores JSON null: get() then says 'no session'."""

    def new(self, data=None):
        sid = secrets.token_urlsafe(32)
        self.client.set(self.prefix + sid, json.dumps(data), ex=self.idle_timeout)
        return sid


class CheckThenSetStore(Ref):
    """save() checks EXISTS, then SETs without xx: an expiry in between resurrects it."""

    def save(self, sid, data):
        if not self.client.exists(self.prefix + sid):
            raise KeyError(sid)
        self.client.set(self.prefix + sid, json.dumps(data), ex=self.idle_timeout)


class TtlThenSetStore(Ref):
    """save() reads the TTL first, then SETs without xx: the same race."""

    def save(self, sid, data):
        if self.client.ttl(self.prefix + sid) < 0:
            return
        self.client.set(self.prefix + sid, json.dumps(data), ex=self.idle_timeout)


class Urlsafe16Store(Ref):
    """Valid: exactly 128 bits (token_urlsafe(16)), save as SET XX then a no-op."""

    def new(self, data=None):
        sid = secrets.token_urlsafe(16)
        self.client.set(self.prefix + sid, json.dumps(data or {}), ex=self.idle_timeout)
        return sid

    def save(self, sid, data):
        self.client.set(self.prefix + sid, json.dumps(data), ex=self.idle_timeout, xx=True)


class RefreshAfterSetStore(Ref):
    """Valid: SET XX with KEEPTTL, then EXPIRE (a read after the write is fine)."""

    def save(self, sid, data):
        if not self.client.set(self.prefix + sid, json.dumps(data), xx=True, keepttl=True):
            raise KeyError(sid)
        self.client.expire(self.prefix + sid, self.idle_timeout)


class DictStore(Ref):
    """Keeps sessions in the Python object: each app server would have its own."""

    def __init__(self, client, *, idle_timeout=1800, prefix="sess:"):
        super().__init__(client, idle_timeout=idle_timeout, prefix=prefix)
        self.data = {}

    def new(self, data=None):
        sid = secrets.token_urlsafe(32)
        self.data[sid] = data or {}
        self.client.set(self.prefix + sid, json.dumps(data or {}), ex=self.idle_timeout)
        return sid

    def get(self, sid):
        return self.data.get(sid)


class CachingStore(Ref):
    """Reads Redis once, then answers from a cache in the object."""

    def __init__(self, client, **options):
        super().__init__(client, **options)
        self.cache = {}

    def get(self, sid):
        if sid not in self.cache:
            self.cache[sid] = super().get(sid)
        return self.cache[sid]


class NoExpiryStore(Ref):
    def new(self, data=None):
        sid = secrets.token_urlsafe(32)
        self.client.set(self.prefix + sid, json.dumps(data or {}))
        return sid


class DefaultTimeoutStore(Ref):
    """Uses the default 1800 s, whatever idle_timeout the store was given."""

    def new(self, data=None):
        sid = secrets.token_urlsafe(32)
        self.client.set(self.prefix + sid, json.dumps(data or {}), ex=1800)
        return sid


class NoRefreshStore(Ref):
    def get(self, sid):
        raw = self.client.get(self.prefix + sid)
        return None if raw is None else json.loads(raw)


class AdoptingStore(Ref):
    def save(self, sid, data):
        self.client.set(self.prefix + sid, json.dumps(data), ex=self.idle_timeout)


class CounterIdStore(Ref):
    """Ids from the clock: long enough, unique, and guessable."""

    def new(self, data=None):
        sid = f"{time.time_ns():024d}"
        self.client.set(self.prefix + sid, json.dumps(data or {}), ex=self.idle_timeout)
        return sid


class UserInIdStore(Ref):
    def new(self, data=None):
        sid = f"{(data or {}).get('user', 'anon')}-{secrets.token_urlsafe(24)}"
        self.client.set(self.prefix + sid, json.dumps(data or {}), ex=self.idle_timeout)
        return sid


class ShortIdStore(Ref):
    def new(self, data=None):
        sid = secrets.token_hex(6)
        self.client.set(self.prefix + sid, json.dumps(data or {}), ex=self.idle_timeout)
        return sid


class ReprStore(Ref):
    """Stores str(data) and reads it back with literal_eval: not JSON."""

    def new(self, data=None):
        sid = secrets.token_urlsafe(32)
        self.client.set(self.prefix + sid, str(data or {}), ex=self.idle_timeout)
        return sid

    def get(self, sid):
        raw = self.client.getex(self.prefix + sid, ex=self.idle_timeout)
        return None if raw is None else ast.literal_eval(raw)

    def save(self, sid, data):
        self.client.set(self.prefix + sid, str(data), ex=self.idle_timeout, xx=True)


class FixedPrefixStore(Ref):
    def __init__(self, client, *, idle_timeout=1800, prefix="sess:"):
        super().__init__(client, idle_timeout=idle_timeout, prefix="sess:")


class IntDeleteStore(Ref):
    def delete(self, sid):
        return self.client.delete(self.prefix + sid)


# ------------------------------------------------------------------ store down
def decorator_make_app(sessions):
    """Valid: the errorhandler decorator, jsonify, extra keys and a Retry-After header."""
    app = social.create_app(store=sessions, kdf_iterations=1_000)

    @app.errorhandler(StoreUnavailable)
    def store_is_down(exc):
        response = jsonify(error=exc.reason, message=str(exc), retry=True)
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response

    return app


def no_handler_make_app(sessions):
    return social.create_app(store=sessions, kdf_iterations=1_000)


def vague_make_app(sessions):
    app = social.create_app(store=sessions, kdf_iterations=1_000)
    app.register_error_handler(StoreUnavailable, lambda e: ("try later", 503))
    return app


def string_json_make_app(sessions):
    app = social.create_app(store=sessions, kdf_iterations=1_000)
    app.register_error_handler(StoreUnavailable,
                               lambda e: ('{"error": "store_unavailable"}', 503))
    return app


def catch_all_make_app(sessions):
    """Every exception becomes a 503: a 404 or a bad password too."""
    app = social.create_app(store=sessions, kdf_iterations=1_000)
    app.register_error_handler(Exception, lambda e: ({"error": "store_unavailable"}, 503))
    return app


def sticky_down_make_app(sessions):
    """Remembers the outage for ever: never recovers without a restart."""
    app = social.create_app(store=sessions, kdf_iterations=1_000)
    down = {"since": None}

    @app.before_request
    def still_down():
        if down["since"] is not None:
            return {"error": "store_unavailable"}, 503

    def handler(exc):
        down["since"] = time.monotonic()
        return {"error": exc.reason}, 503

    app.register_error_handler(StoreUnavailable, handler)
    return app


def only_me_make_app(sessions):
    """Wraps only GET /me, the one path the exercise text happens to mention."""
    app = social.create_app(store=sessions, kdf_iterations=1_000)
    view = app.view_functions["me"]

    def me():
        try:
            return view()
        except StoreUnavailable as exc:
            return {"error": exc.reason}, 503

    app.view_functions["me"] = me
    return app


def wrong_status_make_app(sessions):
    app = social.create_app(store=sessions, kdf_iterations=1_000)
    app.register_error_handler(StoreUnavailable, lambda e: ({"error": e.reason}, 500))
    return app


Q1, Q2, Q3 = "04.write_invalidate", "04.redis_store", "04.store_down"
CASES = [
    valid(Q1, "reference", REF["MyInvalidate"]),
    valid(Q1, "kit WriteInvalidate (quiet writes)", WriteInvalidate),
    valid(Q1, "explicit branches and a version check", DictOfTuples),
    wrong(Q1, "write-update", WriteUpdate, says="write-update", kind="substance"),
    wrong(Q1, "update when the session is small", UpdatesWhenSmall, says="write-update",
          kind="visible-only"),
    wrong(Q1, "update disguised as a fetch", UpdateCalledFetch, says="write-update",
          kind="visible-only"),
    wrong(Q1, "announces new sessions only", ForgetsToInvalidate, says="Stale read",
          kind="logic"),
    wrong(Q1, "refetches every time", RefetchesEveryTime, says="valid copy", kind="substance"),
    wrong(Q1, "holds the lock while sending", HoldsLockWhileSending, says="self.lock",
          kind="concurrency"),
    wrong(Q1, "KeyError for an unknown session", CrashesOnUnknown, says="never heard of",
          kind="hostile-input"),
    wrong(Q1, "fetches from every peer", FetchesFromEveryone, says="one 'fetch'",
          kind="substance"),
    wrong(Q1, "fetches from the first peer", FetchesFromFirstPeer, says="should answer 200",
          kind="logic"),
    wrong(Q1, "invalidates on an equal version", InvalidatesOnTie, says="repeated",
          kind="concurrency"),
    wrong(Q1, "invalidates whatever the version", IgnoresVersions, says="repeated",
          kind="logic"),
    wrong(Q1, "not a class", dict, says="subclass of labkit.state.replication.Replica",
          kind="hostile-input"),

    valid(Q2, "reference", Ref),
    valid(Q2, "the kit's RedisSessionStore", RedisSessionStore),
    valid(Q2, "hex ids and a pipeline", UuidStore),
    valid(Q2, "exactly 128 bits, save without KeyError", Urlsafe16Store),
    valid(Q2, "SET XX KEEPTTL then EXPIRE", RefreshAfterSetStore),
    wrong(Q2, "uuid4 ids (122 bits)", Uuid4Store, says="random bits", kind="security"),
    wrong(Q2, "getrandbits ids", MersenneStore, says="`random` module", kind="security"),
    wrong(Q2, "randbytes ids in base64", RandbytesStore, says="`random` module",
          kind="security"),
    wrong(Q2, "a hash of the clock", ClockHashStore, says="hash of the clock", kind="security"),
    wrong(Q2, "new() stores null", NullDataStore, says="empty session", kind="hostile-input"),
    wrong(Q2, "EXISTS then SET", CheckThenSetStore, says="came back to life",
          kind="concurrency"),
    wrong(Q2, "TTL then SET", TtlThenSetStore, says="came back to life", kind="concurrency"),
    wrong(Q2, "sessions in the object", DictStore, says="lives in your Python object",
          kind="substance"),
    wrong(Q2, "a cache in the object", CachingStore, says="answers from a copy",
          kind="substance"),
    wrong(Q2, "no expiry", NoExpiryStore, says="idle_timeout", kind="logic"),
    wrong(Q2, "hard-coded 1800 s", DefaultTimeoutStore, says="idle_timeout=",
          kind="visible-only"),
    wrong(Q2, "get does not refresh", NoRefreshStore, says="push the expiry back",
          kind="logic"),
    wrong(Q2, "save adopts any id", AdoptingStore, says="never issued", kind="security"),
    wrong(Q2, "ids from the clock", CounterIdStore, says="guess", kind="security"),
    wrong(Q2, "the user's name in the id", UserInIdStore, says="user's name", kind="security"),
    wrong(Q2, "48-bit ids", ShortIdStore, says="128 bits", kind="security"),
    wrong(Q2, "str() instead of JSON", ReprStore, says="as JSON", kind="substance"),
    wrong(Q2, "ignores the prefix", FixedPrefixStore, says="prefix", kind="visible-only"),
    wrong(Q2, "delete returns an int", IntDeleteStore, says="a bool", kind="hostile-input"),

    valid(Q3, "reference", REF["make_app"]),
    valid(Q3, "errorhandler decorator with extra keys", decorator_make_app),
    wrong(Q3, "no handler", no_handler_make_app, says="should answer 503", kind="logic"),
    wrong(Q3, "plain-text reason", vague_make_app, says="should say why", kind="substance"),
    wrong(Q3, "JSON text with an HTML content type", string_json_make_app,
          says="should be JSON", kind="substance"),
    wrong(Q3, "every exception is a 503", catch_all_make_app, says="store is down when it is not",
          kind="hostile-input"),
    wrong(Q3, "stays down for ever", sticky_down_make_app, says="needs no session",
          kind="logic"),
    wrong(Q3, "only GET /me handled", only_me_make_app, says="should answer 503",
          kind="visible-only"),
    wrong(Q3, "500 with the reason", wrong_status_make_app, says="should answer 503",
          kind="substance"),
]


@table(CASES)
def test_answer_table(case):
    assert_case(case)
