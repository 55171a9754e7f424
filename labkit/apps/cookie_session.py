"""The login app on Flask's built-in session: a signed cookie, nothing on the server.

Flask keeps ``session`` *in the cookie itself*: the data is serialised, base64'd and
signed with ``SECRET_KEY`` (itsdangerous). That gives integrity (a changed cookie is
rejected: the session simply comes back empty) but **not** secrecy (anyone can read
it) and **not** revocation: the server keeps no list of live sessions, so "logout"
can only ask the browser to forget the cookie; a copy of it keeps working until it
expires. Chapter 02 shows all three, then rotates the key with Flask's
``SECRET_KEY_FALLBACKS`` (Flask >= 3.1.1: old keys verify, the current key signs).

Routes: ``POST /login`` (JSON ``username``, ``password``), ``GET /me``,
``POST /logout``. ``app.config`` is read on every request, so assigning
``SECRET_KEY`` / ``SECRET_KEY_FALLBACKS`` on a running app rotates the key at once.

>>> app = create_app()
>>> client = app.test_client()
>>> client.post("/login", json={"username": "bob", "password": "builder"}).json
{'user': 'bob'}
>>> client.get("/me").json
{'user': 'bob'}
"""

from __future__ import annotations

import secrets
import time

from flask import Flask, request, session

from ._auth import DEFAULT_USERS, LoginThrottle, PasswordBook, check_password
from ._json import ApiError, install_json_errors, json_body

__all__ = ["create_app"]


def create_app(*, secret_key: str | None = None,
               secret_key_fallbacks: tuple[str, ...] | list[str] = (),
               kdf_iterations: int = 1_000) -> Flask:
    """Build the app; ``secret_key`` signs, ``secret_key_fallbacks`` still verify.

    With no ``secret_key`` the app makes a random one: a default key written in the
    source would let anyone sign ``{"user": "alice"}`` and be alice.
    """
    passwords = PasswordBook(DEFAULT_USERS, iterations=kdf_iterations)
    # Five wrong passwords per account in 5 minutes, then 429 (ASVS 4 V2.2.1).
    throttle = LoginThrottle(5, 300.0, time.monotonic)
    app = Flask("labkit.apps.cookie_session")
    app.config.update(SECRET_KEY=secret_key if secret_key is not None
                      else secrets.token_urlsafe(32),
                      SECRET_KEY_FALLBACKS=list(secret_key_fallbacks),
                      SESSION_COOKIE_SAMESITE="Lax")
    install_json_errors(app)

    @app.post("/login")
    def login():
        body = json_body(username=str, password=str)
        session["user"] = check_password(  # written into the cookie, signed
            passwords, body["username"], body["password"], throttle=throttle,
            client=request.remote_addr or "?")
        return {"user": body["username"]}

    @app.get("/me")
    def me():
        if "user" not in session:  # missing, tampered and wrongly signed look alike
            raise ApiError(401, "login_required", "Log in first: POST /login.")
        return {"user": session["user"]}

    @app.post("/logout")
    def logout():
        session.clear()  # tells the browser to drop the cookie; copies still work
        return {"logged_out": True}

    return app
