"""Chapter 07 questions: serverless.

* ``07.size_gateway``: the post's size-counting service, written as a Flask gateway
  in front of an upload server, checked over live HTTP;
* ``07.stateless_handler``: a visit counter that stays right across cold starts,
  warm starts and concurrent containers (no reliance on module state);
* ``07.predict_cold_starts``: predict the cold starts of an event timeline, then
  watch the runtime play it.

Every check draws what the learner cannot see (the limit, sizes and bytes of uploads,
users, bursts, timelines) from the run's seed: see :mod:`labkit.checks.context`.
"""

from __future__ import annotations

import hashlib
import socket
import string
import threading
import time
from typing import Any, Callable

import requests

from ..checks import CheckFailed, context, probe, question


def _word(rng: Any, length: int = 6) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(length))


# ------------------------------------------------------------------ size gateway
def _upload_server(tag: str) -> Callable[[], Any]:
    """An upload server that notes what it received, and refuses bodies starting with '!'.

    Its answers carry a random ``tag`` and a digest of the bytes, so that a gateway
    that makes up its own answer, or forwards other bytes, is caught.
    """
    from flask import Flask, jsonify, request

    seen = {"uploads": 0, "bytes": 0, "largest": 0, "digests": []}
    lock = threading.Lock()

    def make() -> Any:
        app = Flask("check_upload_server")

        @app.post("/upload")
        def upload():
            body = request.get_data()
            digest = hashlib.sha256(body).hexdigest()
            with lock:
                seen["uploads"] += 1
                seen["bytes"] += len(body)
                seen["largest"] = max(seen["largest"], len(body))
                seen["digests"].append(digest)
            if body.startswith(b"!"):
                return jsonify(error="insufficient_storage", tag=tag, free=len(body) // 2), 507
            return jsonify(received=len(body), sha256=digest, tag=tag)

        @app.get("/received")
        def received():
            with lock:
                return jsonify(seen)

        return app

    return make


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


def _chunks(data: bytes, size: int = 1000):
    for i in range(0, len(data), size):
        yield data[i:i + size]


def _raw_post(port: int, head: bytes, body: bytes) -> bytes:
    """Send bytes as they are (a lying Content-Length), return the raw answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=probe.TIMEOUT) as sock:
        try:
            sock.sendall(head + body)
        except OSError:               # the gateway closed early: fine, it read enough
            pass
        answer = b""
        try:
            while b"}" not in answer and (chunk := sock.recv(65536)):
                answer += chunk       # stop at the end of a JSON answer
        except OSError:               # a timeout, or a reset on the unread lie
            pass
    return answer


class _CountingInput:
    """A WSGI input stream that counts what the app read, and whether it reached the end."""

    def __init__(self, stream: Any) -> None:
        self._stream, self.count, self.eof = stream, 0, False

    def _note(self, data: bytes) -> bytes:
        self.count += len(data)
        self.eof = self.eof or not data
        return data

    def read(self, *args: Any) -> bytes:
        return self._note(self._stream.read(*args))

    def readline(self, *args: Any) -> bytes:
        return self._note(self._stream.readline(*args))

    def readinto(self, buffer: Any) -> int | None:
        n = self._stream.readinto(buffer)
        self.count += n or 0
        self.eof = self.eof or not n
        return n

    def __iter__(self) -> Any:
        for line in self._stream:
            yield self._note(line)
        self.eof = True


def _counting(app: Any, log: list[tuple[str | None, _CountingInput]]) -> Any:
    """Wrap a Flask app so that each request notes how much of its body the app read."""
    inner = app.wsgi_app

    def wsgi_app(environ: dict, start_response: Any) -> Any:
        stream = _CountingInput(environ["wsgi.input"])
        environ["wsgi.input"] = stream
        log.append((environ.get("CONTENT_LENGTH"), stream))
        return inner(environ, start_response)

    app.wsgi_app = wsgi_app
    return app


def _upload_while_reading(port: int, size: int) -> tuple[bytes, BaseException | None, bool]:
    """Declare and send ``size`` bytes while reading the answer at the same time.

    Returns (the raw answer, the error the sender met, whether it finished). A gateway
    that answers 413 and closes without reading the rest of the body resets the
    connection: the client, still sending, gets an error (and may lose the 413). The
    body is far larger than the socket buffers, so it cannot all slip in unread.
    """
    piece = b"d" * 65536
    sock = socket.create_connection(("127.0.0.1", port), timeout=probe.TIMEOUT)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)  # no deep buffer to hide in
    state: dict[str, Any] = {"error": None, "done": False}

    def send() -> None:
        try:
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: gateway\r\nContent-Type:"
                         b" application/octet-stream\r\nContent-Length: "
                         + str(size).encode() + b"\r\nConnection: close\r\n\r\n")
            left = size
            while left:
                sock.sendall(piece[:min(left, len(piece))])
                left -= min(left, len(piece))
            state["done"] = True
        except OSError as exc:
            state["error"] = exc

    sender = threading.Thread(target=send, name="check-07-sender", daemon=True)
    sender.start()
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except OSError:
        pass
    sender.join(timeout=2)      # a drained upload has been sent by the time of the EOF
    try:
        sock.shutdown(socket.SHUT_RDWR)   # wakes a sender still blocked in sendall
    except OSError:
        pass
    sock.close()
    sender.join(timeout=2)
    return answer, state["error"], state["done"]


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

    probe.expect_factory(make_gateway, example="make_gateway")
    rng = context().rng
    limit = rng.randrange(1500, 6000)
    tag = _word(rng, 8)
    reads: list[tuple[str | None, _CountingInput]] = []
    if not callable(make_gateway):
        probe.expect_factory(make_gateway, example="make_gateway")
    with lk.serve(_upload_server(tag), name="check-07-main") as main, \
            probe.serve_factory(lambda: _counting(make_gateway(main.url, limit=limit), reads),
                                name="check-07-gateway") as gateway:
        url = gateway.url + "/upload"

        def upstream_answer(data: bytes) -> tuple[int, dict]:
            digest = hashlib.sha256(data).hexdigest()
            if data.startswith(b"!"):
                return 507, {"error": "insufficient_storage", "tag": tag,
                             "free": len(data) // 2}
            return 200, {"received": len(data), "sha256": digest, "tag": tag}

        def forwarded(data: bytes, what: str, *, chunked: bool = False) -> None:
            before = _received(main)
            answer = _post(url, _chunks(data) if chunked else data, what)
            status, body = upstream_answer(data)
            if answer.status_code == 413:
                raise CheckFailed(f"{what} is within the limit ({len(data)} of at most"
                                  f" {limit} bytes), but your gateway refused it with 413.")
            after = _received(main)
            if after["uploads"] != before["uploads"] + 1:
                raise CheckFailed(f"{what}: the main server should have received it once,"
                                  f" but it received {after['uploads'] - before['uploads']}"
                                  " upload(s).")
            if after["digests"][-1] != hashlib.sha256(data).hexdigest():
                raise CheckFailed(f"{what}: the main server received other bytes than the"
                                  " client sent. Forward the body exactly as it came.")
            if answer.status_code != status or probe.body(answer) != body:
                extra = (" (the main server refused this one: pass its status and JSON on,"
                         " do not make up your own)" if status != 200 else "")
                raise CheckFailed(f"{what}: pass the main server's answer back unchanged"
                                  f" (its status and its JSON){extra}, but your gateway"
                                  f" answered {probe.describe(answer)}.")
            if not probe.json_kind(answer):
                raise CheckFailed(f"{what}: the main server answered JSON; your gateway's"
                                  " answer should keep Content-Type: application/json.")

        def refused(data: Any, size: int, what: str) -> None:
            before = _received(main)
            answer = _post(url, data, what)
            if answer.status_code != 413:
                got = _received(main)
                sent = got["largest"] if got["uploads"] != before["uploads"] else 0
                raise CheckFailed(
                    f"{what} is over the limit ({size} bytes, limit {limit}): your gateway"
                    f" should answer 413, but it answered {probe.describe(answer)}"
                    + (f", and the main server received {sent} bytes" if sent else "")
                    + ". Without a Content-Length (or with a false one) you must count the"
                    " bytes as you read them.")
            body = probe.body(answer)
            if not isinstance(body, dict) or not body.get("error"):
                raise CheckFailed(f"{what}: answer 413 with a JSON reason, e.g."
                                  f" {{'error': 'too_large'}}, not {probe.describe(answer)}.")
            if not probe.json_kind(answer):
                raise CheckFailed(f"{what}: the 413 should be JSON (Content-Type:"
                                  " application/json).")
            after = _received(main)
            if after["uploads"] != before["uploads"]:
                raise CheckFailed(
                    f"{what}: your gateway answered 413, but it still sent the upload"
                    f" to the main server ({after['bytes'] - before['bytes']} bytes).")

        blob = lambda n: rng.randbytes(n).replace(b"!", b"?")  # noqa: E731
        probes: list[Callable[[], None]] = [
            lambda: forwarded(blob(rng.randrange(1, limit // 2)), "A small upload"),
            lambda: forwarded(blob(limit), "An upload of exactly the limit"),
            lambda: forwarded(b"", "An empty upload"),
            lambda: refused(blob(limit + 1), limit + 1, "An upload one byte over the limit"),
            lambda: refused(blob(limit * rng.randrange(3, 30)), 0,
                            "An upload several times the limit"),
            lambda: forwarded(blob(rng.randrange(limit // 2, limit)),
                              "A chunked upload within the limit (no Content-Length)",
                              chunked=True),
            lambda: refused(_chunks(blob(limit * rng.randrange(3, 40))), 0,
                            "A chunked upload over the limit (no Content-Length)"),
            lambda: refused(_chunks(blob(limit + rng.randrange(1, 50))), 0,
                            "A chunked upload just over the limit (no Content-Length)"),
            lambda: forwarded(b"!" + blob(rng.randrange(10, limit - 1)),
                              "An upload the main server refuses (507)"),
        ]
        rng.shuffle(probes)
        for run_probe in probes:
            run_probe()
        for i in range(3):  # many small uploads add up to more than the limit: all go
            forwarded(blob(rng.randrange(limit // 2, limit)),
                      f"Upload {i + 1} of three, each within the limit (their sum is not)")
        refused(b"h" * 2_000_000, 2_000_000, "A 2,000,000-byte upload")
        # Refused, but drained: the client keeps sending while the 413 comes back.
        big = rng.randrange(3_000_000, 5_000_000)
        answer, error, done = _upload_while_reading(gateway.port, big)
        if not answer.startswith(b"HTTP/1.1 413") and not answer.startswith(b"HTTP/1.0 413"):
            raise CheckFailed(
                "A large upload (a few megabytes, declared in Content-Length) sent while"
                " reading the answer did not get a 413"
                + (": the connection was reset before the client heard one" if not answer
                   else "") + ". Read (and drop) the rest of the body, then answer 413.")
        consumed = [stream.count for length, stream in reads if length == str(big)]
        if error is not None or not done or not consumed or consumed[-1] < big:
            raise CheckFailed(
                "Your gateway answered 413 to a large upload (a few megabytes, declared in"
                " Content-Length) without reading the rest of the body. A server that"
                " closes a connection with unread bytes resets it: the client, still"
                " sending, gets an error and may never see the 413. Read (and drop) the"
                " rest of the body before you answer.")
        # A client that lies: declares a few bytes, then sends far more.
        declared = rng.randrange(5, 50)
        _raw_post(gateway.port, b"POST /upload HTTP/1.1\r\nHost: gateway\r\n"
                  b"Content-Type: application/octet-stream\r\nContent-Length: "
                  + str(declared).encode() + b"\r\nConnection: close\r\n\r\n",
                  blob(limit * 20))
        seen = _received(main)
        if seen["largest"] > limit:
            raise CheckFailed(
                f"The main server received an upload of {seen['largest']} bytes through"
                f" your gateway; it must never see more than the limit ({limit}).")
    return ("Uploads within the limit went through byte for byte with the main server's"
            " answer (refusals included); oversized ones (declared, chunked or lying) got"
            " a JSON 413 and never reached the main server.")


# ------------------------------------------------------------------ stateless handler
class _SlowStore:
    """The runtime's shared store, with a network's latency on reads and writes, so
    that a read-then-write from two containers really overlaps. incr stays atomic."""

    PAUSE = 0.02

    def __init__(self) -> None:
        from ..state.serverless import Store

        self._store = Store()

    def get(self, key: str, default: Any = None) -> Any:
        value = self._store.get(key, default)
        time.sleep(self.PAUSE)
        return value

    def set(self, key: str, value: Any) -> None:
        time.sleep(self.PAUSE)
        self._store.set(key, value)

    def incr(self, key: str, by: int = 1) -> int:
        value = self._store.incr(key, by)     # atomic in the store; the answer then takes
        time.sleep(self.PAUSE)                # its time to come back, as over a network
        return value

    def __len__(self) -> int:
        return len(self._store)


@question("07.stateless_handler", points=2, hints=[
    "A container's variables vanish at every cold start, and two containers never see"
    " each other's: they can cache, but not remember.",
    "Keep the count where every container can reach it: context.store, the runtime's"
    " shared database. Two containers may run at the same moment: a get then a set"
    " loses one of two visits.",
    "In the handler: user = event['user']; n = context.store.incr('visits:' + user);"
    " return {'user': user, 'visits': n}.",
])
def stateless_handler(visits_module: Callable[[], Any]) -> str:
    "Write a visit counter that is right across cold starts, warm starts and concurrency."
    if not callable(visits_module):
        raise CheckFailed("Pass the module function (visits_module), which returns the"
                          " handler when called.")
    rng = context().rng
    name = _word(rng, 5)
    # Users whose names share a prefix (as "ad", "ada", "adam") must not share a count.
    users = [name, name.capitalize(), _word(rng, 4) + ":" + _word(rng, 3), name[:2],
             name[:3], name[:4], name + _word(rng, 2)]
    for deployment in ("First deployment", "A second deployment (new, empty store)"):
        _visit_scenario(visits_module, deployment, rng, users)
    return ("Right every time: warm and cold starts, users that differ only in case or share"
            " a prefix, and simultaneous visits on several containers, each told its own"
            " count, kept in the shared store.")


def _visit_scenario(visits_module: Callable[[], Any], deployment: str, rng: Any,
                    users: list[str]) -> None:
    from ..state.serverless import FunctionRuntime
    from ..state.sessions import ManualClock

    clock = ManualClock()
    runtime = FunctionRuntime(keep_warm=60, clock=clock, store=_SlowStore())
    gates: dict[int, threading.Barrier] = {}

    def wrapped_module():  # the learner's module, plus a way to force several containers
        inner = visits_module()

        def handler(event: dict, context_: Any) -> Any:
            if "burst" in event:
                gates[event["burst"]].wait(timeout=5)
            return inner({"user": event["user"]}, context_)
        return handler

    runtime.register("visits", wrapped_module)
    expected: dict[str, int] = {}

    def check(user: str, got: Any, what: str) -> None:
        want = {"user": user, "visits": expected[user]}
        if got != want:
            if isinstance(got, dict) and isinstance(got.get("visits"), int):
                diff = got["visits"] - expected[user]
                off = f"a count {abs(diff)} too {'high' if diff > 0 else 'low'}"
            else:
                off = f"{type(got).__name__} {got!r}"[:80]
            raise CheckFailed(f"{deployment}, {what}: your handler returned {off}, not"
                              " {'user': <the user>, 'visits': <all their visits so far>}."
                              " Keep nothing in variables: use context.store.")

    def visit(user: str, what: str) -> None:
        expected[user] = expected.get(user, 0) + 1
        check(user, runtime.invoke("visits", {"user": user}).result, what)

    def burst(user: str, copies: int, what: str) -> None:
        index = len(gates)
        gates[index] = threading.Barrier(copies)
        results = probe.at_once(
            lambda: runtime.invoke("visits", {"user": user, "burst": index}).result,
            copies=copies)
        counts = sorted(r.get("visits") if isinstance(r, dict) else -1 for r in results)
        first = expected.get(user, 0)
        want = list(range(first + 1, first + copies + 1))
        if counts != want:
            raise CheckFailed(
                f"{deployment}, {what}: {copies} simultaneous visits (on {copies} containers)"
                f" should get {copies} different counts, one after the other, but they got"
                f" {len(set(counts))} different one(s) ending {max(counts) - first} after the"
                " previous count. A get then a set from two containers loses a visit, and a"
                " get after incr may read another container's visit: return what the"
                " store's atomic incr returns.")
        expected[user] = first + copies

    for _ in range(rng.randrange(2, 4)):
        visit(users[0], "visits on one warm container")
    visit(users[1], "a user whose name differs only in case (another user)")
    visit(users[2], "a user whose name contains ':'")
    for user in users[3:]:
        visit(user, "a user whose name starts like another user's (another user)")
    clock.advance(61 + rng.randrange(60))  # idle longer than keep_warm: reaped
    visit(users[0], "after a cold start (the old container was reaped)")
    burst(users[1], rng.randrange(2, 5), "a burst of visits at the same time")
    for _ in range(3):   # now several warm containers: each visit may land on any
        visit(rng.choice(users), "a visit after a burst (several warm containers)")
    for user in rng.sample(users[3:], 2):
        visit(user, "a user whose name starts like another user's (another user)")
    burst(users[0], rng.randrange(2, 5), "another burst of visits at the same time")
    visit(users[0], "a visit after two bursts")


# ------------------------------------------------------------------ predict cold starts
def _play(bursts: list[tuple[float, int]], keep_warm: float) -> int:
    """Play ``bursts`` on a real runtime with a manual clock; return its cold starts."""
    from ..state.serverless import FunctionRuntime
    from ..state.sessions import ManualClock

    clock = ManualClock()
    runtime = FunctionRuntime(keep_warm=keep_warm, clock=clock)
    barriers: dict[int, threading.Barrier] = {}

    def module():
        def handler(event: dict, context_: Any) -> dict:
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


def _random_timeline(rng: Any) -> tuple[list[tuple[float, int]], int]:
    keep_warm = rng.randrange(5, 121)
    at, bursts = 0, []
    for _ in range(rng.randrange(4, 8)):
        bursts.append((at, rng.choice([1, 1, 2, 2, 3, 4])))
        at += rng.choice([keep_warm, keep_warm, keep_warm + 1, keep_warm - 1,
                          rng.randrange(1, max(2, keep_warm)),
                          keep_warm + rng.randrange(2, 300)])
    return bursts, keep_warm


def _model(bursts: list, keep_warm: float, *, reap_at_equal: bool = False,
           concurrent: bool = True) -> int:
    """Other readings of the rules, to name a likely mistake (not the expected value)."""
    warm: list[float] = []
    cold = 0
    for at, n in bursts:
        n = n if concurrent else 1
        live = [t for t in warm if (at - t < keep_warm if reap_at_equal else at - t <= keep_warm)]
        warm = sorted(live, reverse=True)
        cold += max(0, n - len(warm))
        warm = [at] * n + warm[n:]
    return cold


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
    rng = context().rng
    if cold_starts([], 60) != 0:
        raise CheckFailed("With no events at all there is no cold start: cold_starts([], 60)"
                          " should be 0.")
    timelines = [_random_timeline(rng) for _ in range(6 if context().hidden else 4)]
    k = rng.randrange(10, 121)      # one timeline where which container is reused matters
    timelines.insert(rng.randrange(len(timelines) + 1),
                     ([(0, 2), (k * 6 // 10, 1), (k * 7 // 10, 1), (k * 12 // 10, 2),
                       (k * 12 // 10 + rng.randrange(1, 5 * k), rng.randrange(1, 4))], k))
    for bursts, keep_warm in timelines:
        predicted = cold_starts([tuple(b) for b in bursts], keep_warm)
        if not isinstance(predicted, int) or isinstance(predicted, bool):
            raise CheckFailed(f"cold_starts(...) should return a whole number (an int), not"
                              f" {type(predicted).__name__}.")
        actual = _play(bursts, keep_warm)
        if predicted != actual:
            diff = predicted - actual
            hint = ""
            if predicted == _model(bursts, keep_warm, reap_at_equal=True) != actual:
                hint = (" A container idle for exactly keep_warm seconds is still warm: it is"
                        " reaped only when idle for more.")
            elif predicted == _model(bursts, keep_warm, concurrent=False) != actual:
                hint = (" The events of a burst are all in flight at once: a burst of n needs"
                        " n containers.")
            raise CheckFailed(
                f"For bursts {bursts} (time, events at once) with keep_warm={keep_warm}, your"
                f" prediction was {abs(diff)} too {'high' if diff > 0 else 'low'} (the"
                f" runtime played it).{hint}")
    return "Every random timeline predicted exactly, as the runtime played it."
