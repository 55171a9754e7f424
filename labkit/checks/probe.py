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
import time
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
            f"Pass an app factory (a function that returns a Flask app), not a"
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


def together(*calls: Callable[[], Any], timeout: float = 10.0) -> list[Any]:
    """Run each of ``calls`` in its own thread, all released at once by a barrier.

    Returns their results in order; the first exception raised in a thread is raised
    here (a CheckFailed stays a CheckFailed). Threads still running after ``timeout``
    seconds become a CheckFailed: the learner's code hung (a lock never released?).
    """
    import threading

    gate = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            gate.wait(timeout=timeout)
            results[i] = calls[i]()
        except BaseException as exc:  # reported by the caller, not lost in a thread
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True,
                                name=f"labkit-check-copy-{i}") for i in range(len(calls))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        raise CheckFailed(f"{len(calls)} simultaneous calls did not finish within"
                          f" {timeout:g} s: does your code wait for something that never"
                          " comes (a lock held by another request)?")
    for result in results:
        if isinstance(result, BaseException) and not isinstance(
                result, threading.BrokenBarrierError):
            raise result
    return results


def at_once(send: Callable[[], Any], *, copies: int, timeout: float = 10.0) -> list[Any]:
    """``together`` with ``copies`` copies of the same call."""
    return together(*([send] * copies), timeout=timeout)

def json_kind(response: requests.Response) -> bool:
    """True when the response says it is JSON (``Content-Type: application/json``)."""
    kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def expect_factory(factory: Any, *, example: str) -> None:
    """Fail clearly when the learner passed an app (or something else) for a factory.

    ``example`` is how the learner's factory is named in the exercise, e.g.
    ``"make_gateway"``. Use it before wrapping the factory in a lambda of the check's
    own, so that the learner's mistake is not reported as the check's.
    """
    from flask import Flask

    if isinstance(factory, Flask):
        raise CheckFailed(
            f"Pass the factory function itself (e.g. {example}), not an app it built"
            f" ({example}(...)): the check needs to build fresh apps.")
    if not callable(factory):
        raise CheckFailed(
            f"Pass an app factory (a function that returns a Flask app, like"
            f" {example}), not a {type(factory).__name__}.")
