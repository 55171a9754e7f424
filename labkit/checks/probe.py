"""Helpers for writing checks that drive the learner's code black-box.

A check should treat the learner's app the way a user would: start it on a real
socket with ``lk.serve``, send it real HTTP requests, and complain in plain words
when an answer is off. These helpers keep each check short::

    with probe.serve_factory(make_guestbook, name="check-guest") as server:
        response = probe.call("GET", server.url + "/guest", what="GET /guest")
        probe.expect_status(response, 404, "GET /guest before anyone signed in")
"""

from __future__ import annotations

import json as jsonlib
from typing import Any, Callable

import requests

from .registry import CheckFailed

TIMEOUT = 5.0  # seconds one request of a check may take


def serve_factory(factory: Callable[[], Any], *, name: str) -> Any:
    """Serve the learner's app factory with ``lk.serve``; fail clearly if it is not one.

    The factory is called once here first, so that a stub's NotImplementedError or a
    factory that returns something else is reported in the learner's terms.
    """
    from flask import Flask

    from ..serving.server import serve

    if isinstance(factory, Flask):
        raise CheckFailed(
            "Pass the factory function itself (e.g. make_guestbook), not an app it"
            " built (make_guestbook()): the check needs to build fresh apps.")
    if not callable(factory):
        raise CheckFailed(
            f"Expected an app factory (a function that returns a Flask app), got"
            f" {type(factory).__name__}.")
    app = factory()
    if not isinstance(app, Flask):
        raise CheckFailed(
            f"Your factory returned {type(app).__name__}, not a Flask app. End it"
            " with `return app`.")
    return serve(factory, name=name)


def call(method: str, url: str, *, what: str, json: Any = None,
         session: requests.Session | None = None) -> requests.Response:
    """Send one request; a refused or hung connection becomes a CheckFailed."""
    sender = session if session is not None else requests
    try:
        return sender.request(method, url, json=json, timeout=TIMEOUT)
    except requests.Timeout:
        raise CheckFailed(f"{what}: the server did not answer within {TIMEOUT:g} s.") from None
    except requests.ConnectionError:
        raise CheckFailed(f"{what}: the server refused the connection (is it down?)."
                          ) from None


def body(response: requests.Response) -> Any:
    """The JSON body of ``response``, or its text when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return response.text


def describe(response: requests.Response) -> str:
    """``"404 with {'name': None}"``: status and a short view of the body."""
    shown = body(response)
    shown = jsonlib.dumps(shown) if not isinstance(shown, str) else repr(shown)
    if len(shown) > 120:
        shown = shown[:117] + "..."
    return f"{response.status_code} with {shown}" if shown not in ("''", '""') else (
        f"{response.status_code} with an empty body")


def expect_status(response: requests.Response, expected: int | tuple[int, ...],
                  what: str) -> None:
    """Fail unless ``response`` has (one of) the ``expected`` status code(s)."""
    allowed = expected if isinstance(expected, tuple) else (expected,)
    if response.status_code not in allowed:
        wanted = " or ".join(str(code) for code in allowed)
        extra = (" (500 means your view raised an exception: call it by hand to see"
                 " the traceback)" if response.status_code == 500 else "")
        raise CheckFailed(f"{what} should answer {wanted}, but your app answered"
                          f" {describe(response)}{extra}.")


def expect_json(response: requests.Response, what: str) -> Any:
    """Return the JSON body, failing with a clear message when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        raise CheckFailed(f"{what} should answer JSON (return a dict from the view),"
                          f" but your app answered {describe(response)}.") from None
