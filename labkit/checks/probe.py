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


# -- random inputs the learner cannot see (draw them from context().rng) -------------

_FIRST = ("ada", "grace", "linus", "barbara", "edsger", "frances", "alan", "margaret",
          "ken", "radia", "dennis", "katherine", "tim", "hedy", "donald", "shafi",
          "whitfield", "sophie", "john", "karen", "leslie", "niklaus", "anita", "guido")


def random_user(rng: Any, taken: set[str] | None = None) -> str:
    """A fresh lower-case user name such as ``"radia47"`` (never one in ``taken``)."""
    while True:
        name = f"{rng.choice(_FIRST)}{rng.randrange(10, 1000)}"
        if taken is None or name not in taken:
            if taken is not None:
                taken.add(name)
            return name


def random_secret(rng: Any, length: int = 16) -> str:
    """A password or key made of letters and digits, ``length`` characters long."""
    alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(rng.choice(alphabet) for _ in range(length))


def random_users(rng: Any, count: int) -> dict[str, str]:
    """``count`` users with their passwords: ``{"radia47": "x8Kq...", ...}``."""
    taken: set[str] = set()
    return {random_user(rng, taken): random_secret(rng) for _ in range(count)}


# -- bodies, headers and cookies -------------------------------------------------------

def expect_json_object(response: requests.Response, what: str) -> dict:
    """The body as a dict; fails unless it is a JSON object sent as application/json."""
    kind = response.headers.get("Content-Type", "")
    if not kind.split(";")[0].strip().lower().endswith("json"):
        raise CheckFailed(
            f"{what} should answer JSON with the header Content-Type: application/json"
            f" (return a dict from the view, or use jsonify), but it answered with"
            f" Content-Type {kind or 'missing'!r}.")
    data = expect_json(response, what)
    if not isinstance(data, dict):
        raise CheckFailed(f"{what} should answer a JSON object (a dict), but your app"
                          f" answered {describe(response)}.")
    return data


def set_cookie_values(response: requests.Response, name: str) -> list[str]:
    """Every value the answer's Set-Cookie headers give cookie ``name`` (in order)."""
    from http.cookies import CookieError, SimpleCookie

    values = []
    raw = getattr(response.raw, "headers", None)
    headers = raw.get_all("Set-Cookie") if raw is not None and hasattr(raw, "get_all") else None
    if headers is None:
        one = response.headers.get("Set-Cookie")
        headers = [one] if one else []
    for header in headers:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(header)
        except CookieError:
            continue
        if name in jar:
            values.append(jar[name].value)
    return values


# -- session ids: fresh, unguessable, never derived from what the user sent ----------

def id_bits(ids: list[str]) -> float:
    """Estimate the random bits of ids like these from a sample of them.

    Characters that are the same in every id of the sample (a fixed prefix, a
    version digit, dashes) carry nothing; each varying position counts as many bits
    as its alphabet allows: 4 for hex, 6 for base64, 3.3 for digits. Give it at
    least 16 ids: with fewer, a random position is too often the same in all of
    them by chance, and the estimate comes out low.
    """
    import math
    import string

    if len(ids) < 2:
        return 0.0
    width = min(len(i) for i in ids)
    varying = [p for p in range(width) if len({i[p] for i in ids}) > 1]
    # Ids of different lengths (str(random int)): the extra tail counts, but the
    # alphabet still bounds it.
    chars = {i[p] for i in ids for p in varying}
    if chars <= set(string.digits):
        per_char = math.log2(10)
    elif chars <= set(string.hexdigits.lower()) or chars <= set(string.digits + "ABCDEF"):
        per_char = 4.0
    elif chars <= set(string.ascii_letters + string.digits + "-_+/="):
        per_char = math.log2(64)
    else:
        per_char = math.log2(max(2, len(chars)))
    return len(varying) * per_char


def expect_random_ids(ids: list[str], what: str, *, bits: int = 128,
                      derived_from: tuple[str, ...] = ()) -> None:
    """Fail unless ``ids`` are distinct strings with at least ``bits`` random bits.

    ``derived_from`` lists what the user sent (names, data): an id containing one
    of them is derived from user input, which makes it guessable.
    """
    for value in ids:
        if not isinstance(value, str) or not value:
            raise CheckFailed(f"{what} should be a non-empty string, not {value!r}.")
    if len(set(ids)) != len(ids):
        raise CheckFailed(f"{what}: two of them were the same. Every session needs its"
                          " own fresh random id (secrets.token_urlsafe(32)).")
    for value in ids:
        for secret in derived_from:
            # Short words turn up in random ids by chance ("tea" in 43 base64
            # characters: about 1 in 800), so only longer strings count.
            if len(secret) >= 5 and secret.lower() in value.lower():
                raise CheckFailed(
                    f"{what} contained what the user sent (a user name or session"
                    " data). An id must be pure randomness, e.g."
                    " secrets.token_urlsafe(32): anything derived from the user can be"
                    " guessed.")
    estimate = id_bits(ids)
    if estimate < bits:
        raise CheckFailed(
            f"{what} carried only about {estimate:.0f} random bits (compared over"
            f" {len(ids)} ids); at least {bits} are needed so nobody can guess one. Use"
            " secrets.token_urlsafe(32) (256 bits).")


def predictable_with_random(make_id: Callable[[], Any]) -> bool:
    """True when ``make_id()`` gives the same id twice after seeding Python's ``random``
    and stopping the wall clock.

    The ``random`` module is a Mersenne Twister: after 624 outputs anybody can
    predict the rest; and an id made from the time (a hash of the user and
    ``time.time()``, a ``uuid1``) is as guessable as the moment of the login. Ids
    must come from ``secrets`` (the OS's CSPRNG), which no seed or clock can replay.
    ``time.time`` and ``time.time_ns`` read one fixed moment during both calls; the
    global random state and the clock are restored afterwards.
    """
    import random
    import time as time_module

    state = random.getstate()
    real_time, real_time_ns = time_module.time, time_module.time_ns
    moment = real_time_ns()
    time_module.time = lambda: moment / 1e9
    time_module.time_ns = lambda: moment
    try:
        random.seed(0x5EED)
        first = make_id()
        random.seed(0x5EED)
        second = make_id()
    finally:
        time_module.time, time_module.time_ns = real_time, real_time_ns
        random.setstate(state)
    return first is not None and first == second


# -- concurrency: many callers at the same instant -------------------------------------

def concurrently(work: Callable[[int], Any], count: int, *, timeout: float = 10.0
                 ) -> list[Any]:
    """Run ``work(0) ... work(count - 1)`` on ``count`` threads released together.

    A :class:`threading.Barrier` lines the threads up so they really overlap. Returns
    the results in order; an exception inside ``work`` is returned (not raised) in
    its slot, so the caller can say which call broke. Threads are daemons joined
    within ``timeout`` seconds; a straggler makes the check fail, not hang.
    """
    import threading

    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait(timeout)
            results[index] = work(index)
        except BaseException as exc:  # reported to the caller, never lost
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True,
                                name=f"labkit-check-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    import time

    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        barrier.abort()
        raise CheckFailed(f"{count} simultaneous calls did not finish within"
                          f" {timeout:g} s: does your code wait on a lock it never"
                          " releases?")
    return results


def first_error(results: list[Any]) -> BaseException | None:
    """The first exception among the results of :func:`concurrently`, if any."""
    for result in results:
        if isinstance(result, BaseException):
            return result
    return None


# -- what code uses (a last resort, when behaviour cannot show it) --------------------

def code_uses(obj: Any, names: set[str], *, modules: tuple[str, ...] = (),
              depth: int = 3) -> bool:
    """True when the code of ``obj`` (a function or class), or of the functions it
    calls by global name, refers to one of ``names``, or to an object of one of the
    ``modules`` (e.g. ``"itsdangerous"``).

    Reads compiled code, not source text, so it works on notebook cells too.
    """
    import inspect
    import types

    seen: set[int] = set()

    def codes(code: types.CodeType):
        yield code
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                yield from codes(const)

    def visit(thing: Any, level: int) -> bool:
        if id(thing) in seen or level > depth:
            return False
        seen.add(id(thing))
        if inspect.isclass(thing):
            members = [v for k, v in vars(thing).items()]
            return any(visit(getattr(m, "__func__", m), level) for m in members
                       if callable(getattr(m, "__func__", m)))
        func = getattr(thing, "__func__", thing)
        code = getattr(func, "__code__", None)
        if code is None:
            module = getattr(thing, "__module__", "") or ""
            return module.startswith(modules) if modules else False
        global_names = getattr(func, "__globals__", {})
        for part in codes(code):
            if names & set(part.co_names):
                return True
            for name in part.co_names:
                target = global_names.get(name)
                if target is None:
                    continue
                if getattr(target, "__name__", None) in names:  # imported under an alias
                    return True
                module = getattr(target, "__module__", None) or getattr(target, "__name__", "")
                if modules and isinstance(module, str) and module.startswith(modules):
                    return True
                if (inspect.isfunction(target) or inspect.isclass(target)) and \
                        visit(target, level + 1):
                    return True
        return False

    return visit(obj, 0)


def compare_digest_calls(obj: Any, call: Callable[[], Any]) -> int:
    """How many times ``call()`` called ``hmac.compare_digest`` (under any name).

    Behaviour, not source text: a class whose code mentions compare_digest but
    compares with ``==`` on the path it takes is caught. Replaces the function in
    :mod:`hmac` and :mod:`secrets`, and wherever ``obj``'s methods (and their module)
    hold it under a global name or a default argument, for the length of ``call()``.
    """
    import hmac
    import inspect
    import secrets

    original = hmac.compare_digest
    calls = [0]

    def counting(a: Any, b: Any) -> bool:
        calls[0] += 1
        return original(a, b)

    patched: list[tuple[Any, str]] = [(hmac, "compare_digest"), (secrets, "compare_digest")]
    functions = [getattr(v, "__func__", v) for v in
                 (vars(obj).values() if inspect.isclass(obj) else [obj])]
    for func in functions:
        namespace = getattr(func, "__globals__", None)
        if isinstance(namespace, dict):
            patched += [(namespace, k) for k, v in namespace.items() if v is original]
    if inspect.isclass(obj):
        patched += [(obj, k) for k, v in vars(obj).items()
                    if getattr(v, "__func__", v) is original]
    saved = []
    for target, key in patched:
        if isinstance(target, dict):
            saved.append((target, key, target[key]))
            target[key] = counting
        else:
            saved.append((target, key, getattr(target, key)))
            setattr(target, key, staticmethod(counting) if inspect.isclass(target)
                    else counting)
    try:
        call()
    finally:
        for target, key, value in reversed(saved):
            if isinstance(target, dict):
                target[key] = value
            else:
                setattr(target, key, value)
    return calls[0]


def expect_cookie_sent_back(response: requests.Response, name: str, what: str) -> None:
    """Fail clearly when cookie ``name`` is marked Secure: over the plain HTTP of a
    check (http://127.0.0.1) clients never send such a cookie back, so the session
    would seem lost for a reason the learner cannot see."""
    from http.cookies import CookieError, SimpleCookie

    raw = getattr(response.raw, "headers", None)
    headers = raw.get_all("Set-Cookie") if raw is not None and hasattr(raw, "get_all") else []
    for header in headers or []:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(header)
        except CookieError:
            continue
        if name in jar and jar[name]["secure"]:
            raise CheckFailed(
                f"{what} set the cookie {name!r} with the Secure attribute. Clients send a"
                " Secure cookie only over HTTPS, and the check's server speaks plain HTTP"
                " on 127.0.0.1, so the cookie never comes back. Leave secure=True out"
                " here (use it in production, behind HTTPS).")


# -- copies of one request at once (used by the chapter 04-07 checks) -------------------

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
