"""Chapter 07 questions: serverless.

* ``07.size_gateway``: the post's size-counting service, written as a Flask gateway
  in front of the kit's main upload server, checked over live HTTP;
* ``07.stateless_handler``: a visit counter that stays right across cold starts,
  warm starts and concurrent containers (no reliance on module state);
* ``07.predict_cold_starts``: predict the cold starts of an event timeline, then
  watch the runtime play it.
"""

from __future__ import annotations

import socket
import threading
from typing import Any, Callable

import requests

from ..checks import CheckFailed, probe, question

LIMIT = 4096  # bytes: the limit the size-gateway check asks for


# ------------------------------------------------------------------ size gateway
def _received(main: Any) -> dict:
    return requests.get(main.url + "/received", timeout=probe.TIMEOUT).json()


def _post(url: str, data: Any, what: str) -> requests.Response:
    try:
        return requests.post(url, data=data, timeout=probe.TIMEOUT,
                             headers={"Content-Type": "application/octet-stream"})
    except requests.Timeout:
        raise CheckFailed(f"{what}: the gateway did not answer within"
                          f" {probe.TIMEOUT:g} s.") from None
    except requests.ConnectionError:
        raise CheckFailed(f"{what}: the connection broke before the gateway answered."
                          " Read (and drop) the rest of the body before you refuse it,"
                          " so that the client hears your 413.") from None


def _chunks(total: int, size: int = 1000):
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b"c" * n


def _raw_post(port: int, head: bytes, body: bytes) -> bytes:
    """Send bytes as they are (a lying Content-Length), return the raw answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=probe.TIMEOUT) as sock:
        sock.sendall(head + body)
        answer = b""
        try:
            while b"}" not in answer and (chunk := sock.recv(65536)):
                answer += chunk       # stop at the end of a JSON answer
        except OSError:               # a timeout, or a reset on the unread lie
            pass
    return answer


@question("07.size_gateway", points=3, hints=[
    "Refuse early when you can: request.content_length is the size the client"
    " declared (None when it sent no Content-Length, e.g. a chunked upload).",
    "A declared size can be missing or wrong, so also count while you read:"
    " request.stream.read(n) in a loop, and stop with 413 as soon as you pass the limit."
    " Read (and drop) the rest before answering so the client hears you.",
    "Within the limit, forward: r = requests.post(upstream + '/upload', data=body) and"
    " return Response(r.content, status=r.status_code, content_type=r.headers['Content-Type'])."
    " Over it: return {'error': 'too_large', 'limit': limit}, 413.",
])
def size_gateway(make_gateway: Callable[..., Any]) -> str:
    "Write the size-counting gateway that keeps oversized uploads off the main server."
    import labkit as lk

    from ..apps.uploads import create_upload_server

    with lk.serve(create_upload_server, name="check-07-main") as main, \
            probe.serve_factory(lambda: make_gateway(main.url, limit=LIMIT),
                                name="check-07-gateway") as gateway:
        url = gateway.url + "/upload"

        def forwarded(data: Any, size: int, what: str) -> None:
            before = _received(main)
            answer = _post(url, data, what)
            probe.expect_status(answer, 200, what)
            body = probe.body(answer)
            if not isinstance(body, dict) or body.get("received") != size:
                raise CheckFailed(
                    f"{what}: the main server answers {{'received': {size}}}; pass its"
                    f" answer back unchanged, but your gateway answered"
                    f" {probe.describe(answer)}.")
            if _received(main)["uploads"] != before["uploads"] + 1:
                raise CheckFailed(f"{what}: the main server should have received it once.")

        def refused(data: Any, what: str) -> None:
            before = _received(main)
            answer = _post(url, data, what)
            probe.expect_status(answer, 413, what)
            body = probe.body(answer)
            if not isinstance(body, dict) or not body.get("error"):
                raise CheckFailed(f"{what}: answer 413 with a JSON reason, e.g."
                                  f" {{'error': 'too_large'}}, not {probe.describe(answer)}.")
            after = _received(main)
            if after["uploads"] != before["uploads"]:
                raise CheckFailed(
                    f"{what}: your gateway answered 413, but it still sent the upload"
                    f" to the main server ({after['bytes'] - before['bytes']} bytes).")

        forwarded(b"s" * 100, 100, "A 100-byte upload")
        forwarded(b"e" * LIMIT, LIMIT, f"An upload of exactly the limit ({LIMIT} bytes)")
        refused(b"o" * (LIMIT + 1), f"An upload one byte over the limit ({LIMIT + 1} bytes)")
        refused(b"h" * 3_000_000, "A 3,000,000-byte upload")
        forwarded(_chunks(1500), 1500,
                  "A 1,500-byte chunked upload (no Content-Length)")
        before = _received(main)
        answer = _post(url, _chunks(200_000), "A 200,000-byte chunked upload")
        if answer.status_code != 413:
            got = _received(main)["largest"]
            raise CheckFailed(
                "A 200,000-byte chunked upload (no Content-Length) should answer 413,"
                f" but your gateway answered {probe.describe(answer)}"
                + (f" and the main server received {got} bytes in one upload." if
                   got > LIMIT else ".")
                + " Without a Content-Length you must count the bytes as you read them.")
        if _received(main)["uploads"] != before["uploads"]:
            raise CheckFailed("A chunked upload over the limit reached the main server.")
        # A client that lies: declares 10 bytes, then sends 100,000.
        _raw_post(gateway.port, b"POST /upload HTTP/1.1\r\nHost: gateway\r\n"
                  b"Content-Type: application/octet-stream\r\nContent-Length: 10\r\n"
                  b"Connection: close\r\n\r\n", b"L" * 100_000)
        seen = _received(main)
        if seen["largest"] > LIMIT:
            raise CheckFailed(
                f"The main server received an upload of {seen['largest']} bytes through"
                f" your gateway; it must never see more than {LIMIT}.")
    return (f"Small and exact-limit uploads went through, oversized ones (declared,"
            f" chunked or lying) were stopped: the main server saw"
            f" {seen['uploads']} uploads, none over {LIMIT} bytes.")


# ------------------------------------------------------------------ stateless handler
@question("07.stateless_handler", points=2, hints=[
    "A container's variables vanish at every cold start, and two containers never see"
    " each other's: they can cache, but not remember.",
    "Keep the count where every container can reach it: context.store, the runtime's"
    " shared database.",
    "In the handler: user = event['user']; n = context.store.incr('visits:' + user);"
    " return {'user': user, 'visits': n}.",
])
def stateless_handler(visits_module: Callable[[], Any]) -> str:
    "Write a visit counter that is right across cold starts, warm starts and concurrency."
    if not callable(visits_module):
        raise CheckFailed("Pass the module function (visits_module), which returns the"
                          " handler when called.")
    for deployment in ("First deployment", "A second deployment (new, empty store)"):
        stats = _visit_scenario(visits_module, deployment)
    return (f"Right every time: {stats['invocations']} events per deployment,"
            f" {stats['cold_starts']} cold starts, counts kept in the shared store.")


def _visit_scenario(visits_module: Callable[[], Any], deployment: str) -> dict:
    from ..state.serverless import FunctionRuntime
    from ..state.sessions import ManualClock

    clock = ManualClock()
    runtime = FunctionRuntime(keep_warm=60, clock=clock)
    gate = threading.Barrier(2)

    def wrapped_module():  # the learner's module, plus a way to force two containers
        inner = visits_module()

        def handler(event: dict, context: Any) -> Any:
            if event.get("together"):
                gate.wait(timeout=5)
            return inner({"user": event["user"]}, context)
        return handler

    runtime.register("visits", wrapped_module)
    expected: dict[str, int] = {}

    def check(user: str, got: Any, what: str) -> None:
        want = {"user": user, "visits": expected[user]}
        if got != want:
            raise CheckFailed(f"{deployment}, {what}: visit number {expected[user]} of"
                              f" {user} should return {want}, but your handler returned"
                              f" {got!r}. Keep nothing in variables: use context.store.")

    def visit(user: str, what: str) -> None:
        expected[user] = expected.get(user, 0) + 1
        check(user, runtime.invoke("visits", {"user": user}).result, what)

    for _ in range(3):
        visit("ada", "three visits on one warm container")
    visit("bob", "a second user")
    clock.advance(120)  # idle longer than keep_warm: the container is reaped
    visit("ada", "after a cold start (the old container was reaped)")
    results: list[Any] = []

    def together() -> None:
        try:
            results.append(runtime.invoke("visits", {"user": "cy", "together": True}).result)
        except BaseException as exc:  # reported below, from the check's thread
            results.append(exc)

    threads = [threading.Thread(target=together) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    for got in results:
        if isinstance(got, BaseException):
            raise got
    want = [{"user": "cy", "visits": 1}, {"user": "cy", "visits": 2}]
    if sorted(results, key=lambda r: str(r)) != want:
        raise CheckFailed(f"{deployment}, two visits of cy at the same time (two"
                          f" containers) should return visits 1 and 2, but your handler"
                          f" returned {results!r}. Two containers share nothing but"
                          " context.store.")
    expected["cy"] = 2
    visit("cy", "a third visit after two concurrent ones")
    return runtime.stats("visits")


# ------------------------------------------------------------------ predict cold starts
def _play(bursts: list[tuple[float, int]], keep_warm: float) -> int:
    """Play ``bursts`` on a real runtime with a manual clock; return its cold starts."""
    from ..state.serverless import FunctionRuntime
    from ..state.sessions import ManualClock

    clock = ManualClock()
    runtime = FunctionRuntime(keep_warm=keep_warm, clock=clock)
    barriers: dict[int, threading.Barrier] = {}

    def module():
        def handler(event: dict, context: Any) -> dict:
            barriers[event["burst"]].wait(timeout=5)  # all of a burst in flight at once
            return {}
        return handler

    runtime.register("f", module)
    for i, (at, count) in enumerate(bursts):
        clock.advance(at - clock())
        barriers[i] = threading.Barrier(count)
        threads = [threading.Thread(target=runtime.invoke, args=("f", {"burst": i}))
                   for _ in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    return runtime.stats("f")["cold_starts"]


CASES = [
    ([(0, 1), (10, 1), (30, 1), (100, 1)], 60),
    ([(0, 1), (61, 1), (121, 1), (122, 1)], 60),
    ([(0, 3), (5, 1), (20, 2), (200, 2)], 60),
    ([(0, 2), (50, 1), (100, 2), (130, 3)], 60),
]


@question("07.predict_cold_starts", points=2, hints=[
    "A cold start happens when an event finds no idle container. Containers idle for"
    " more than keep_warm seconds are gone before the event looks.",
    "Keep a list of the containers' last-used times. At each burst of n events, drop"
    " those older than keep_warm; the burst needs max(0, n - len(warm)) new containers.",
    "The runtime reuses the most recently used containers first: after a burst of n,"
    " the n freshest containers (old and new) are marked used at that time; the others"
    " keep their older time.",
])
def predict_cold_starts(cold_starts: Callable[[list, float], Any]) -> str:
    "Predict the cold starts of an event timeline, then watch the runtime play it."
    for bursts, keep_warm in CASES:
        predicted = cold_starts(list(bursts), keep_warm)
        actual = _play(bursts, keep_warm)
        if predicted != actual:
            raise CheckFailed(
                f"For bursts {bursts} (time, events at once) with keep_warm={keep_warm},"
                f" the runtime made {actual} cold starts, but you predicted {predicted!r}.")
    return f"All {len(CASES)} timelines predicted exactly."
