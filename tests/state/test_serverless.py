"""The function runtime and the size-counting gateway of chapter 07."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests
from functools import partial

import labkit as lk
from labkit.errors import LabkitError
from labkit.state.serverless import (
    FunctionRuntime,
    HandlerError,
    Store,
    UnknownFunctionError,
)
from labkit.apps.uploads import create_size_gateway, create_upload_server
from labkit.state.sessions import ManualClock

COUNTER = """
count = 0
def handler(event, context):
    global count
    count += 1
    return {"count": count}
"""


def counter_module():
    count = 0

    def handler(event, context):
        nonlocal count
        count += 1
        return {"count": count}
    return handler


@pytest.mark.parametrize("module", [COUNTER, counter_module])
def test_globals_survive_warm_calls_and_reset_on_a_cold_start(module):
    clock = ManualClock()
    rt = FunctionRuntime(keep_warm=60, clock=clock)
    rt.register("count", module)
    got = [rt.invoke("count") for _ in range(3)]
    assert [g.result["count"] for g in got] == [1, 2, 3]
    assert [g.cold for g in got] == [True, False, False]
    clock.advance(60)                      # exactly keep_warm: still warm
    assert rt.invoke("count").result == {"count": 4}
    clock.advance(60.5)                    # longer: reaped, then a cold start
    fresh = rt.invoke("count")
    assert fresh.cold and fresh.result == {"count": 1} and fresh.container == "count#2"
    assert rt.stats("count") == {"invocations": 5, "cold_starts": 2, "warm_starts": 3,
                                 "reaped": 1, "containers": 1}


def test_each_event_is_a_copy_and_the_context_says_where_it_ran():
    seen = []

    def module():
        def handler(event, context):
            event["touched"] = True
            seen.append((context.function, context.container, context.cold))
            return event
        return handler

    rt = FunctionRuntime()
    rt.register("echo", module)
    event = {"a": 1}
    assert rt.invoke("echo", event).result == {"a": 1, "touched": True}
    assert event == {"a": 1}
    rt.invoke("echo", event)
    assert seen == [("echo", "echo#1", True), ("echo", "echo#1", False)]


def test_concurrent_events_need_more_containers():
    barrier = threading.Barrier(3)

    def module():
        def handler(event, context):
            barrier.wait(timeout=5)
            return context.container
        return handler

    rt = FunctionRuntime()
    rt.register("f", module)
    results = []
    threads = [threading.Thread(target=lambda: results.append(rt.invoke("f").result))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == ["f#1", "f#2", "f#3"]
    assert rt.stats("f")["cold_starts"] == 3 and rt.containers("f") == ["f#1", "f#2", "f#3"]


def test_init_cost_is_paid_only_on_cold_starts():
    rt = FunctionRuntime(init_cost=0.05)
    rt.register("f", counter_module)
    started = time.perf_counter()
    rt.invoke("f")
    rt.invoke("f")
    elapsed = time.perf_counter() - started  # the init cost is part of this, once
    assert rt.stats("f")["cold_starts"] == 1
    assert 0.05 <= rt.init_seconds("f") <= elapsed


def test_reap_and_redeploy():
    clock = ManualClock()
    rt = FunctionRuntime(keep_warm=10, clock=clock)
    rt.register("f", counter_module)
    rt.invoke("f")
    clock.advance(11)
    assert rt.reap() == ["f#1"] and rt.containers() == []
    rt.invoke("f")
    rt.register("f", counter_module)       # a new version: old containers dropped
    assert rt.containers() == [] and rt.invoke("f").cold


def test_the_store_outlives_containers():
    store = Store()
    assert store.incr("k") == 1 and store.incr("k", 2) == 3 and store.get("k") == 3
    store.set("x", "y")
    assert repr(store) == "<Store 2 keys>" and store.get("nope", 0) == 0


def test_mistakes_get_clear_errors():
    rt = FunctionRuntime()
    with pytest.raises(UnknownFunctionError, match="register it first"):
        rt.invoke("nope")
    with pytest.raises(HandlerError):
        rt.register("f", 42)
    rt.register("g", "x = 1")               # no handler defined
    with pytest.raises(HandlerError, match="def handler"):
        rt.invoke("g")
    with pytest.raises(LabkitError):
        FunctionRuntime(keep_warm=-1)


def test_the_runtime_over_http():
    rt = FunctionRuntime()
    rt.register("count", COUNTER)
    rt.register("boom", "def handler(event, context):\n    raise ValueError('bad')\n")
    with lk.serve(rt.create_app, name="runtime") as server:
        url = server.url + "/invoke/"
        first = requests.post(url + "count", json={}).json()
        assert first == {"result": {"count": 1}, "cold": True, "container": "count#1"}
        assert requests.post(url + "count", json={}).json()["cold"] is False
        assert requests.post(url + "count").status_code == 200      # no body: {}
        missing = requests.post(url + "nope", json={})
        assert missing.status_code == 404 and missing.json()["error"] == "unknown_function"
        assert requests.post(url + "count", data="{").json()["error"] == "malformed_json"
        assert requests.post(url + "count", json=[1]).status_code == 422
        boom = requests.post(url + "boom", json={})
        assert boom.status_code == 502 and boom.json()["error"] == "handler_error"
        assert "bad" not in boom.text and "ValueError" not in boom.text  # no internals
        assert list(rt.failures) == ["boom: ValueError: bad"]  # the operator's view
        assert "count" not in missing.text  # a 404 does not list what is deployed
        assert rt.stats("count")["invocations"] == 3


# ------------------------------------------------------------------ the gateway
requests = type("R", (), {"post": staticmethod(partial(requests.post, timeout=20)),
                           "get": staticmethod(partial(requests.get, timeout=20))})


def _chunks(total, size=1000):
    while total > 0:
        yield b"c" * min(size, total)
        total -= size


def test_gateway_forwards_small_and_refuses_large_uploads():
    with lk.serve(create_upload_server, name="main") as main, \
            lk.serve(lambda: create_size_gateway(main.url, limit=1000), name="gateway") as gw:
        up = gw.url + "/upload"
        assert requests.post(up, data=b"a" * 1000).json() == {"received": 1000}
        over = requests.post(up, data=b"a" * 1001)
        assert over.status_code == 413 and over.json()["error"] == "too_large"
        assert over.json()["size"] == 1001
        assert requests.post(up, data=b"a" * 3_000_000).status_code == 413
        assert requests.post(up, data=_chunks(900)).json() == {"received": 900}
        chunked = requests.post(up, data=_chunks(50_000))
        assert chunked.status_code == 413 and chunked.json()["size"] is None
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:  # a liar
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: g\r\nContent-Length: 10\r\n"
                         b"Connection: close\r\n\r\n" + b"L" * 20_000)
            answer = b""
            try:
                while b"}" not in answer and (chunk := sock.recv(4096)):
                    answer += chunk
            except ConnectionResetError:  # closed on the unread lie: fine if we got it
                pass
        assert b'"received":10' in answer
        assert requests.get(main.url + "/received").json() == {
            "uploads": 3, "bytes": 1910, "largest": 1000}
        assert main.stats()["requests"] == 4         # 3 uploads and one /received


def _expect_continue(port: int, size: int, body: bytes = b"") -> bytes:
    """Send headers with Expect: 100-continue; send `body` only if invited. The answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST /upload HTTP/1.1\r\nHost: g\r\nContent-Length: {size}\r\n"
                     "Expect: 100-continue\r\n\r\n".encode())
        answer = sock.recv(4096)
        if answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"):
            sock.sendall(body)
            while b"}" not in answer and (chunk := sock.recv(4096)):
                answer += chunk
        return answer


def test_expect_100_continue_refuses_before_the_body_and_invites_it_otherwise():
    with lk.serve(create_upload_server, name="main") as main, \
            lk.serve(lambda: create_size_gateway(main.url, limit=1000), name="gateway") as gw:
        refused = _expect_continue(gw.port, 2_000_000)  # never sends a byte of the body
        assert refused.startswith(b"HTTP/1.1 413") and b"100 Continue" not in refused
        invited = _expect_continue(gw.port, 10, b"0123456789")
        assert invited.startswith(b"HTTP/1.1 100 Continue") and b'"received":10' in invited
        assert requests.get(main.url + "/received").json()["uploads"] == 1


def test_a_request_without_expect_gets_no_100_continue():
    with lk.serve(create_upload_server, name="main") as main:
        with socket.create_connection(("127.0.0.1", main.port), timeout=10) as sock:
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: m\r\nContent-Length: 3\r\n"
                         b"Connection: close\r\n\r\nabc")
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and b"100 Continue" not in answer
        with socket.create_connection(("127.0.0.1", main.port), timeout=10) as sock:
            sock.sendall(b"POST /upload HTTP/1.0\r\nContent-Length: 3\r\n"
                         b"Expect: 100-continue\r\n\r\nabc")  # HTTP/1.0: ignore Expect
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        assert b" 200 " in answer.split(b"\r\n")[0] and b"100 Continue" not in answer


def test_gateway_answers_502_when_the_main_server_is_down():
    with lk.serve(create_upload_server, name="main") as main, \
            lk.serve(lambda: create_size_gateway(main.url, limit=1000), name="gateway") as gw:
        main.kill()
        answer = requests.post(gw.url + "/upload", data=b"x")
        assert answer.status_code == 502 and answer.json()["error"] == "upstream_unavailable"
