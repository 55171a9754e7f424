"""The chapter 04 checks: the reference passes, the released stub and wrong answers fail."""

from __future__ import annotations

import json
import secrets

import pytest

from labkit.apps import social
from exercise_kit import STUB_MESSAGE, run
from labkit.state.redis import StoreUnavailable
from labkit.state.replication import Copy, Replica, WriteInvalidate, WriteUpdate

STUB = NotImplementedError("Replace this line with your solution.")


# ------------------------------------------------------------------ write-invalidate
class ReferenceInvalidate(Replica):
    """What the solution notebook writes (no quiet-write refinement)."""

    def read(self, sid):
        with self.lock:
            copy = self.copies.get(sid)
        if copy is None:
            return None
        if copy.data is not None:
            return copy.data
        reply = self.send(copy.owner, "fetch", sid)
        if reply is None:
            return None
        with self.lock:
            self.copies[sid] = Copy(reply["data"], reply["version"], copy.owner)
        return reply["data"]

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
        return super().on_message(kind, sid, body, sender)


class StubInvalidate(Replica):
    def read(self, sid):
        raise STUB

    def write(self, sid, data):
        raise STUB

    def on_message(self, kind, sid, body, sender):
        raise STUB


class ForgetsToInvalidate(ReferenceInvalidate):
    """Writes locally and announces new sessions only: peers keep stale copies."""

    def write(self, sid, data):
        with self.lock:
            old = self.copies.get(sid)
            self.copies[sid] = Copy(data, (old.version if old else 0) + 1, self.name)
        if old is None:
            for peer in self.peers():
                self.send(peer, "invalidate", sid, {"version": 1})


class RefetchesEveryTime(ReferenceInvalidate):
    """Never keeps a fetched copy."""

    def read(self, sid):
        with self.lock:
            copy = self.copies.get(sid)
        if copy is None or copy.owner == self.name:
            return copy.data if copy else None
        reply = self.send(copy.owner, "fetch", sid)
        return reply["data"] if reply else None


def test_write_invalidate_reference_and_kit_protocol_pass():
    assert run("04.write_invalidate", ReferenceInvalidate).passed
    assert run("04.write_invalidate", WriteInvalidate).passed


def test_write_invalidate_stub_fails_with_the_stub_message():
    result = run("04.write_invalidate", StubInvalidate)
    assert not result.passed and result.message == STUB_MESSAGE


@pytest.mark.parametrize("wrong, words", [
    (WriteUpdate, "That is write-update"),
    (ForgetsToInvalidate, "Stale read"),
    (RefetchesEveryTime, "Keep the copy you fetched"),
    (dict, "subclass of labkit.state.replication.Replica"),
])
def test_write_invalidate_wrong_answers_fail_with_a_reason(wrong, words):
    result = run("04.write_invalidate", wrong)
    assert not result.passed and words in result.message, result.message


# ------------------------------------------------------------------ redis store
class ReferenceRedisStore:
    def __init__(self, client, *, idle_timeout=1800, prefix="sess:"):
        self.client, self.idle_timeout, self.prefix = client, idle_timeout, prefix

    def new(self, data=None):
        sid = secrets.token_urlsafe(32)
        self.client.set(self.prefix + sid, json.dumps(data or {}), ex=self.idle_timeout)
        return sid

    def get(self, sid):
        raw = self.client.getex(self.prefix + sid, ex=self.idle_timeout)
        return None if raw is None else json.loads(raw)

    def save(self, sid, data):
        self.client.set(self.prefix + sid, json.dumps(data), ex=self.idle_timeout)

    def delete(self, sid):
        return self.client.delete(self.prefix + sid) == 1


class StubRedisStore(ReferenceRedisStore):
    def new(self, data=None):
        raise STUB


class DictStore(ReferenceRedisStore):
    """Keeps sessions in the Python object: each app server would have its own."""

    def __init__(self, client, *, idle_timeout=1800, prefix="sess:"):
        super().__init__(client, idle_timeout=idle_timeout, prefix=prefix)
        self.data = {}

    def new(self, data=None):
        sid = secrets.token_urlsafe(32)
        self.data[sid] = data or {}
        return sid

    def get(self, sid):
        return self.data.get(sid)


class NoExpiryStore(ReferenceRedisStore):
    def new(self, data=None):
        sid = secrets.token_urlsafe(32)
        self.client.set(self.prefix + sid, json.dumps(data or {}))
        return sid


def test_redis_store_reference_passes():
    result = run("04.redis_store", ReferenceRedisStore)
    assert result.passed, result.message


def test_redis_store_stub_fails_with_the_stub_message():
    result = run("04.redis_store", StubRedisStore)
    assert not result.passed and result.message == STUB_MESSAGE


@pytest.mark.parametrize("wrong, words", [
    (DictStore, "lives in your Python object"),
    (NoExpiryStore, "is still there"),
])
def test_redis_store_wrong_answers_fail_with_a_reason(wrong, words):
    result = run("04.redis_store", wrong)
    assert not result.passed and words in result.message, result.message


# ------------------------------------------------------------------ store down
def reference_make_app(sessions):
    app = social.create_app(store=sessions, kdf_iterations=1_000)
    app.register_error_handler(StoreUnavailable, lambda e: ({"error": e.reason}, 503))
    return app


def stub_make_app(sessions):
    raise STUB


def no_handler_make_app(sessions):
    return social.create_app(store=sessions, kdf_iterations=1_000)


def vague_make_app(sessions):
    app = social.create_app(store=sessions, kdf_iterations=1_000)
    app.register_error_handler(StoreUnavailable, lambda e: ("try later", 503))
    return app


def test_store_down_reference_passes():
    result = run("04.store_down", reference_make_app)
    assert result.passed, result.message


def test_store_down_stub_fails_with_the_stub_message():
    result = run("04.store_down", stub_make_app)
    assert not result.passed and result.message == STUB_MESSAGE


@pytest.mark.parametrize("wrong, words", [
    (no_handler_make_app, "should answer 503"),
    (vague_make_app, "should say why"),
])
def test_store_down_wrong_answers_fail_with_a_reason(wrong, words):
    result = run("04.store_down", wrong)
    assert not result.passed and words in result.message, result.message
