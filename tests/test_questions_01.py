"""Checks of chapter 01: the reference passes, the stub and plausible mistakes fail."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from flask import Flask, jsonify, request, session

from exercise_kit import STUB_MESSAGE, assert_released_stubs_fail, reference, run

SOLUTION = Path(__file__).parent.parent / "solutions" / "01_stateful_sessions_exercises.ipynb"




REF = reference(SOLUTION)




def stub(*args, **kwargs):
    raise NotImplementedError("replace this stub with your solution")


# -- 01.session_store ----------------------------------------------------------------

def test_store_reference_passes():
    result = run("01.session_store", REF["SessionStore"])
    assert result.passed, result.message


def test_store_stub_fails():
    class Stub:
        def __init__(self, **kwargs):
            raise NotImplementedError

    result = run("01.session_store", Stub)
    assert not result.passed and result.message == STUB_MESSAGE


class FifoStore(REF["SessionStore"]):
    """Plausible mistake: evicts the oldest created, not the least recently used."""

    def _live(self, sid):
        entry = self.entries.get(sid)
        if entry is None:
            return None
        if self.idle_timeout is not None and self.clock() - entry[1] >= self.idle_timeout:
            del self.entries[sid]
            return None
        entry[1] = self.clock()  # touches the timer but never reorders
        return entry


class NoTouchStore(REF["SessionStore"]):
    """Plausible mistake: expiry counted from creation (get is not activity)."""

    def _live(self, sid):
        entry = self.entries.get(sid)
        if entry is None:
            return None
        if self.idle_timeout is not None and self.clock() - entry[1] >= self.idle_timeout:
            del self.entries[sid]
            return None
        self.entries.move_to_end(sid)
        return entry


class AliasingStore(REF["SessionStore"]):
    """Plausible mistake: get() hands out the stored dict itself."""

    def get(self, sid):
        entry = self._live(sid)
        return None if entry is None else entry[0]


@pytest.mark.parametrize("wrong, words", [
    (FifoStore, "least recently used"),
    (NoTouchStore, "activity"),
    (AliasingStore, "copy"),
])
def test_store_mistakes_fail_with_a_useful_message(wrong, words):
    result = run("01.session_store", wrong)
    assert not result.passed and words in result.message, result.message


# -- 01.remember_login ---------------------------------------------------------------

def test_login_reference_passes():
    result = run("01.remember_login", REF["make_app"])
    assert result.passed, result.message


def test_login_stub_fails():
    result = run("01.remember_login", stub)
    assert not result.passed and result.message == STUB_MESSAGE


def global_user_app(verify):
    """Plausible mistake: one 'current user' for everybody."""
    app = Flask("global_user")
    current = {}
    app.extensions["labkit.sessions"] = current

    @app.post("/login")
    def login():
        body = request.get_json()
        if not verify(body["username"], body["password"]):
            return {"error": "bad"}, 401
        current["user"] = body["username"]
        response = jsonify(ok=True)
        response.set_cookie("sid", secrets.token_urlsafe(16))
        return response

    @app.get("/me")
    def me():
        if "user" not in current or "sid" not in request.cookies:
            return {"error": "login_required"}, 401
        return {"user": current["user"]}

    return app


def flask_cookie_app(verify):
    """Plausible mistake: Flask's signed cookie, so nothing is kept on the server."""
    app = Flask("flask_cookie")
    app.secret_key = "dev"

    @app.post("/login")
    def login():
        body = request.get_json()
        if not verify(body["username"], body["password"]):
            return {"error": "bad"}, 401
        session["user"] = body["username"]
        return {"user": body["username"]}

    @app.get("/me")
    def me():
        if "user" not in session:
            return {"error": "login_required"}, 401
        return {"user": session["user"]}

    return app


@pytest.mark.parametrize("wrong, words", [
    (global_user_app, "own session"),
    (flask_cookie_app, "server"),
])
def test_login_mistakes_fail(wrong, words):
    result = run("01.remember_login", wrong)
    assert not result.passed and words in result.message, result.message


# -- 01.chat_context -----------------------------------------------------------------

def test_chat_reference_passes():
    result = run("01.chat_context", REF["make_chat_app"])
    assert result.passed, result.message


def test_chat_stub_fails():
    result = run("01.chat_context", stub)
    assert not result.passed and result.message == STUB_MESSAGE


def shared_history_app():
    """Plausible mistake: one history for all clients."""
    from labkit.apps import social

    app = Flask("shared_history")
    history: list = []

    @app.post("/chat")
    def chat():
        message = request.get_json()["message"]
        reply = social.reply_to(history, message)
        history.append(message)
        response = jsonify(reply=reply)
        response.set_cookie("sid", "x" * 43)
        return response

    return app


def history_in_cookie_app():
    """Plausible mistake: the context travels in Flask's cookie, growing every turn."""
    from labkit.apps import social

    app = Flask("cookie_history")
    app.secret_key = "dev"

    @app.post("/chat")
    def chat():
        message = request.get_json()["message"]
        history = session.get("history", [])
        reply = social.reply_to(history, message)
        session["history"] = [*history, message]
        return {"reply": reply}

    return app


@pytest.mark.parametrize("wrong, words", [
    (shared_history_app, "own history"),
    (history_in_cookie_app, "cookie"),
])
def test_chat_mistakes_fail(wrong, words):
    result = run("01.chat_context", wrong)
    assert not result.passed and words in result.message, result.message



def test_released_stubs_fail_with_the_stub_message():
    assert_released_stubs_fail(SOLUTION)
