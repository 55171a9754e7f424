"""Checks of chapter 02: the reference passes, the stub and plausible mistakes fail."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest
from flask import Flask, jsonify, request

from exercise_kit import STUB_MESSAGE, assert_released_stubs_fail, reference, run

SOLUTION = Path(__file__).parent.parent / "solutions" / "02_session_security_exercises.ipynb"




REF = reference(SOLUTION)




def stub(*args, **kwargs):
    raise NotImplementedError


def login_app(*, rotate: bool, revoke: bool):
    """A variant of the reference login app with one defence switched off."""

    def make_login_app(store, verify):
        app = Flask("variant")

        @app.get("/")
        def home():
            response = jsonify(ok=True)
            if store.get(request.cookies.get("sid")) is None:
                response.set_cookie("sid", store.new({}))
            return response

        @app.post("/login")
        def login():
            body = request.get_json()
            if not verify(body["username"], body["password"]):
                return {"error": "bad_credentials"}, 401
            sid = request.cookies.get("sid")
            if rotate or store.get(sid) is None:
                store.delete(sid)
                sid = store.new({"user": body["username"]})
            else:
                store.save(sid, {"user": body["username"]})  # fixation!
            response = jsonify(user=body["username"])
            response.set_cookie("sid", sid)
            return response

        @app.get("/me")
        def me():
            data = store.get(request.cookies.get("sid")) or {}
            return ({"user": data["user"]}, 200) if "user" in data else ({"error": "no"}, 401)

        @app.post("/logout")
        def logout():
            if revoke:
                store.delete(request.cookies.get("sid"))
            response = jsonify(ok=True)
            response.delete_cookie("sid")
            return response

        return app

    return make_login_app


@pytest.mark.parametrize("qid", ["02.rotate_on_login", "02.revoking_logout"])
def test_login_reference_passes_and_stub_fails(qid):
    result = run(qid, REF["make_login_app"])
    assert result.passed, result.message
    result = run(qid, stub)
    assert not result.passed and result.message == STUB_MESSAGE


def test_login_without_rotation_fails_only_the_rotation_check():
    wrong = login_app(rotate=False, revoke=True)
    result = run("02.rotate_on_login", wrong)
    assert not result.passed and "fixation" in result.message
    assert run("02.revoking_logout", wrong).passed


def test_logout_that_only_clears_the_cookie_fails():
    wrong = login_app(rotate=True, revoke=False)
    result = run("02.revoking_logout", wrong)
    assert not result.passed and "delete the session on the server" in result.message
    assert run("02.rotate_on_login", wrong).passed


def test_detector_reference_passes_and_stub_fails():
    result = run("02.hijack_detector", REF["find_hijacks"])
    assert result.passed, result.message
    assert run("02.hijack_detector", stub).message == STUB_MESSAGE


def user_agent_only(log):
    agents = {}
    for e in log:
        if e["session"]:
            agents.setdefault(e["session"], set()).add(e["user_agent"])
    return {s for s, a in agents.items() if len(a) > 1}


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


@pytest.mark.parametrize("wrong, words", [
    (user_agent_only, "did not flag"),
    (busy_sessions, "honest"),
    (with_none, "None"),
])
def test_detector_mistakes_fail(wrong, words):
    result = run("02.hijack_detector", wrong)
    assert not result.passed and words in result.message, result.message


def test_signer_reference_passes_and_stub_fails():
    result = run("02.rotating_signer", REF["RotatingSigner"])
    assert result.passed, result.message

    class Stub(REF["RotatingSigner"]):
        def sign(self, value):
            raise NotImplementedError

    assert run("02.rotating_signer", Stub).message == STUB_MESSAGE


def _mac(key, value):
    return hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()


class OldestKeySigns(REF["RotatingSigner"]):
    """Plausible mistake: signs with the first key (the CVE-2025-47278 bug, in spirit)."""

    def sign(self, value):
        return f"{value}.{_mac(self.keys[0], value)}"


class OnlyNewestVerifies(REF["RotatingSigner"]):
    """Plausible mistake: no grace period, only the newest key verifies."""

    def unsign(self, token):
        value, _, signature = token.rpartition(".")
        if hmac.compare_digest(_mac(self.keys[-1], value), signature):
            return value
        raise ValueError("bad signature")


class NeverRejects(REF["RotatingSigner"]):
    def unsign(self, token):
        return token.rpartition(".")[0] or token


@pytest.mark.parametrize("wrong, words", [
    (OldestKeySigns, "newest"),
    (OnlyNewestVerifies, "still verify"),
    (NeverRejects, "ValueError"),
])
def test_signer_mistakes_fail(wrong, words):
    result = run("02.rotating_signer", wrong)
    assert not result.passed and words in result.message, result.message



def test_released_stubs_fail_with_the_stub_message():
    assert_released_stubs_fail(SOLUTION)
