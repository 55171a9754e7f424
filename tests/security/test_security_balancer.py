"""Attacks on the balancer and the kit's servers, over raw sockets (issue #9, items 2-5).

One test (or table) per class of attack:

* framing and request smuggling (RFC 9112 §6): the balancer and every server answer
  the same, and nothing smuggled ever reaches an app;
* parser exhaustion: strict numbers, caps, slow clients (408), connection caps,
  no connection thread that dies silently or prints;
* the kit's internal endpoints are unreachable through the balancer, whatever the
  spelling;
* ``X-Forwarded-For`` cannot be forged: the request log and chapter 02's hijack
  detector see the thief's real address.

Responses are parsed with the standard library's ``http.client``, not the kit's
own parser, so the tests do not trust the code they test.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import threading
import time

import pytest
import requests
from flask import Flask, jsonify, request

import labkit as lk
from labkit.apps import guarded
from labkit.apps.clients import client
from labkit.balancing import balancer as balancer_module
from labkit.serving import _serving
from labkit.serving._serving import QuietHandler

from sample_apps import make_counter


# -- helpers ------------------------------------------------------------------------


class _Kept(io.BytesIO):
    def close(self) -> None:  # HTTPResponse closes it after a `Connection: close`
        pass


class _Replay:
    """Enough of a socket for http.client.HTTPResponse: replays received bytes."""

    def __init__(self, data: bytes) -> None:
        self.file = _Kept(data)

    def makefile(self, *args, **kwargs):
        return self.file


def parse(data: bytes, method: str = "GET") -> list[tuple[int, dict, bytes]]:
    """Every response in ``data``, in order: (status, headers, body)."""
    replay, answers = _Replay(data), []
    while replay.file.tell() < len(data):
        response = http.client.HTTPResponse(replay, method=method)
        response.begin()
        if response.status == 100:
            continue
        body = response.read()
        answers.append((response.status, dict(response.getheaders()), body))
    return answers


def exchange(port: int, raw: bytes, *, timeout: float = 10.0, half_close: bool = True,
             source: str = "127.0.0.1") -> bytes:
    """Send raw bytes, then read until the other side closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0)) as sock:
        sock.sendall(raw)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    return data


def one(port: int, raw: bytes, **kwargs) -> tuple[int, dict, bytes]:
    answers = parse(exchange(port, raw, **kwargs))
    assert len(answers) == 1, answers
    return answers[0]


def reason(body: bytes) -> str | None:
    try:
        return json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None


def head(*lines: str, target: str = "/body", method: str = "POST") -> bytes:
    return (f"{method} {target} HTTP/1.1\r\nHost: t\r\n" + "".join(l + "\r\n" for l in lines)
            + "\r\n").encode("utf-8")


@pytest.fixture
def cluster():
    with lk.Cluster(make_counter, size=2, name="attacked") as c:
        yield c


def port_of(cluster, where: str) -> int:
    return cluster.balancer.port if where == "balancer" else cluster.servers[0].port


def app_requests(cluster) -> int:
    return sum(s.stats()["requests"] for s in cluster.servers)


# -- 1. framing and smuggling -------------------------------------------------------

CHUNKED_ABC = b"3\r\nabc\r\n0\r\n\r\n"
REFUSED = [
    # (name, raw request, status, reason)
    ("CL.TE", head("Content-Length: 13", "Transfer-Encoding: chunked")
     + b"0\r\n\r\nSMUGGLED", 400, "ambiguous_framing"),
    ("TE.CL", head("Transfer-Encoding: chunked", "Content-Length: 3") + CHUNKED_ABC,
     400, "ambiguous_framing"),
    ("two different Content-Length", head("Content-Length: 3", "Content-Length: 4")
     + b"abcd", 400, "duplicate_content_length"),
    ("two equal Content-Length", head("Content-Length: 3", "Content-Length: 3") + b"abc",
     400, "duplicate_content_length"),
    ("Content-Length list", head("Content-Length: 3, 3") + b"abc", 400,
     "bad_content_length"),
    ("xchunked", head("Transfer-Encoding: xchunked") + CHUNKED_ABC, 501,
     "unsupported_transfer_coding"),
    ("chunked, identity", head("Transfer-Encoding: chunked, identity") + CHUNKED_ABC,
     400, "ambiguous_framing"),
    ("gzip, chunked", head("Transfer-Encoding: gzip, chunked") + CHUNKED_ABC, 501,
     "unsupported_transfer_coding"),
    ("chunked twice in one", head("Transfer-Encoding: chunked, chunked") + CHUNKED_ABC,
     400, "ambiguous_framing"),
    ("two TE headers", head("Transfer-Encoding: chunked", "Transfer-Encoding: chunked")
     + CHUNKED_ABC, 400, "ambiguous_framing"),
    ("TE identity", head("Transfer-Encoding: identity") + b"abc", 501,
     "unsupported_transfer_coding"),
    ("TE quoted", head('Transfer-Encoding: "chunked"') + CHUNKED_ABC, 501,
     "unsupported_transfer_coding"),
    ("TE empty", head("Transfer-Encoding: ") + CHUNKED_ABC, 501,
     "unsupported_transfer_coding"),
    ("space before colon", head("Transfer-Encoding : chunked") + CHUNKED_ABC, 400,
     "bad_header_name"),
    ("TE with vertical tab", head("Transfer-Encoding: chunked\x0b") + CHUNKED_ABC, 400,
     "bad_header_value"),
    ("obs-fold TE", head("X-Pad: a", " Transfer-Encoding: chunked") + CHUNKED_ABC, 400,
     "obsolete_line_folding"),
    ("obs-fold with tab", head("Transfer-Encoding:", "\tchunked") + CHUNKED_ABC, 400,
     "obsolete_line_folding"),
    ("bare CR hides TE", head("X-Pad: a\rTransfer-Encoding: chunked") + CHUNKED_ABC, 400,
     "bare_cr"),
    ("bare CR line end", b"POST /body HTTP/1.1\r\nHost: t\rContent-Length: 3\r\n\r\nabc",
     400, "bare_cr"),
    ("NUL in a value", head("X-Pad: a\x00b", "Content-Length: 3") + b"abc", 400,
     "bad_header_value"),
    ("NUL in a name", head("X-P\x00ad: a") , 400, "bad_header_name"),
    ("TE in HTTP/1.0", b"POST /body HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
     + CHUNKED_ABC, 400, "ambiguous_framing"),
    ("no Host", b"GET /echo HTTP/1.1\r\n\r\n", 400, "bad_host"),
    ("two Hosts", b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "bad_host"),
    ("double space", b"GET  /echo HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad_request_line"),
    ("tab separator", b"GET\t/echo HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad_request_line"),
    ("non-ASCII target", "GET /é HTTP/1.1\r\nHost: t\r\n\r\n".encode(), 400,
     "bad_request_line"),
    ("HTTP/2.0 on HTTP/1", b"GET /echo HTTP/2.0\r\nHost: t\r\n\r\n", 505,
     "version_not_supported"),
    ("not HTTP", b"GET /echo HTTPS/1.1\r\nHost: t\r\n\r\n", 400, "bad_request_line"),
]
BAD_NUMBERS = [
    ("Content-Length: ² (UTF-8)", head("Content-Length: ²") + b"ab", 400,
     "bad_content_length"),
    ("Content-Length: ² (Latin-1)", b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: \xb2"
     b"\r\n\r\nab", 400, "bad_content_length"),
    ("Arabic-Indic digit", head("Content-Length: ٣") + b"abc", 400, "bad_content_length"),
    ("fullwidth digit", head("Content-Length: ３") + b"abc", 400, "bad_content_length"),
    ("plus sign", head("Content-Length: +3") + b"abc", 400, "bad_content_length"),
    ("negative", head("Content-Length: -1"), 400, "bad_content_length"),
    ("hex length", head("Content-Length: 0x3") + b"abc", 400, "bad_content_length"),
    ("exponent", head("Content-Length: 1e3"), 400, "bad_content_length"),
    ("inner space", head("Content-Length: 3 3") + b"abc", 400, "bad_content_length"),
    ("huge length", head("Content-Length: " + "9" * 40), 413, "body_too_large"),
    ("5,000 digits", head("Content-Length: " + "1" * 5000), 413, "body_too_large"),
    ("negative chunk", head("Transfer-Encoding: chunked") + b"-3\r\nabc\r\n0\r\n\r\n",
     400, "bad_chunk"),
    ("0x chunk", head("Transfer-Encoding: chunked") + b"0x3\r\nabc\r\n0\r\n\r\n", 400,
     "bad_chunk"),
    ("plus chunk", head("Transfer-Encoding: chunked") + b"+3\r\nabc\r\n0\r\n\r\n", 400,
     "bad_chunk"),
    ("underscore chunk", head("Transfer-Encoding: chunked") + b"1_0\r\n" + b"a" * 16
     + b"\r\n0\r\n\r\n", 400, "bad_chunk"),
    ("empty chunk size", head("Transfer-Encoding: chunked") + b"\r\nabc\r\n0\r\n\r\n",
     400, "bad_chunk"),
    ("unicode chunk size", head("Transfer-Encoding: chunked") + "３\r\nabc\r\n0\r\n\r\n"
     .encode(), 400, "bad_chunk"),
    ("17 hex digits", head("Transfer-Encoding: chunked") + b"1" * 17 + b"\r\n", 400,
     "bad_chunk"),
    ("huge chunk", head("Transfer-Encoding: chunked") + b"ffffffffffffffff\r\nabc", 413,
     "body_too_large"),
    ("chunk longer than its size", head("Transfer-Encoding: chunked")
     + b"3\r\nabcdef\r\n0\r\n\r\n", 400, "bad_chunk"),
    ("chunk extension abuse", head("Transfer-Encoding: chunked") + b"3;"
     + b"e" * 5000 + b"\r\nabc\r\n0\r\n\r\n", 400, "bad_chunk"),
    ("control char in extension", head("Transfer-Encoding: chunked")
     + b"3;a=\x00\r\nabc\r\n0\r\n\r\n", 400, "bad_chunk"),
    ("bad trailer", head("Transfer-Encoding: chunked") + b"3\r\nabc\r\n0\r\nX : y\r\n\r\n",
     400, "bad_header_name"),
    ("101 trailers", head("Transfer-Encoding: chunked") + b"3\r\nabc\r\n0\r\n"
     + b"".join(b"T%d: x\r\n" % i for i in range(101)) + b"\r\n", 431,
     "headers_too_large"),
    ("101 headers", head(*[f"H{i}: x" for i in range(101)], method="GET", target="/echo"),
     431, "headers_too_large"),
    ("65 KiB of headers", head(*[f"H{i}: {'x' * 8000}" for i in range(9)], method="GET",
                               target="/echo"), 431, "headers_too_large"),
    ("truncated head", b"GET /echo HTTP/1.1\r\nHost: t\r\n", 400, "truncated_headers"),
    ("truncated chunk", head("Transfer-Encoding: chunked") + b"a\r\nabc", 400,
     "truncated_body"),
]


@pytest.mark.parametrize("where", ["balancer", "server"])
def test_ambiguous_framing_is_refused_the_same_by_the_balancer_and_every_server(cluster, where):
    port = port_of(cluster, where)
    before = app_requests(cluster)
    for name, raw, status, why in REFUSED:
        got = one(port, raw)
        assert (got[0], reason(got[2])) == (status, why), name
        assert got[1].get("Connection") == "close", name
    assert app_requests(cluster) == before  # not one of them reached an app


@pytest.mark.parametrize("where", ["balancer", "server"])
def test_numbers_and_sizes_are_parsed_strictly(cluster, where):
    port = port_of(cluster, where)
    before = app_requests(cluster)
    for name, raw, status, why in BAD_NUMBERS:
        got = one(port, raw)
        assert (got[0], reason(got[2])) == (status, why), name
    assert app_requests(cluster) == before
    # A body shorter than its Content-Length: the balancer reads it first; a server
    # streams it to the app, whose read fails with werkzeug's 400.
    status, _, body = one(port, head("Content-Length: 10") + b"abc")
    assert status == 400
    if where == "balancer":
        assert reason(body) == "truncated_body"


@pytest.mark.parametrize("where", ["balancer", "server"])
def test_valid_variants_are_read_the_same_way_by_both(cluster, where):
    port = port_of(cluster, where)
    valid = [
        head("Transfer-Encoding: Chunked") + CHUNKED_ABC,           # names ignore case
        head("Transfer-Encoding:\tchunked\t") + CHUNKED_ABC,        # OWS is SP or HTAB
        head("Transfer-Encoding: chunked") + b"3;name=value\r\nabc\r\n0\r\n\r\n",
        head("Transfer-Encoding: chunked") + b"3\r\nabc\r\n0\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n",  # trailers: no say
        head("Transfer-Encoding: chunked") + b"3\nabc\n0\n\n",       # bare LF line ends
        head("Content-Length:  3 ") + b"abc",
        head("Transfer_Encoding: chunked", "Content-Length: 3") + b"abc",  # not TE
    ]
    for raw in valid:
        status, _headers, body = one(port, raw)
        assert (status, json.loads(body)) == (200, {"size": 3}), raw


def test_a_smuggled_request_never_reaches_a_server(cluster):
    port = cluster.balancer.port
    smuggle = b"GET /count/smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
    attacks = [
        head("Content-Length: %d" % (5 + len(smuggle)), "Transfer-Encoding: chunked")
        + b"0\r\n\r\n" + smuggle,                                            # CL.TE
        head("Transfer-Encoding: chunked", "Content-Length: 4")
        + b"%x\r\n" % len(smuggle) + smuggle + b"\r\n0\r\n\r\n",            # TE.CL
        head("Transfer-Encoding: xchunked", "Content-Length: 5") + b"0\r\n\r\n" + smuggle,
        head("Content-Length: 0", "Content-Length: %d" % len(smuggle)) + smuggle,
    ]
    for raw in attacks:
        answers = parse(exchange(port, raw + head(method="GET", target="/echo")))
        assert [a[0] for a in answers] in ([400], [501])  # then the connection closed
    # A valid request followed by a smuggling attempt on the same connection:
    answers = parse(exchange(port, head(method="GET", target="/echo") + attacks[0]))
    assert [a[0] for a in answers] == [200, 400]
    logs = [e["path"] for s in cluster.servers for e in s.request_log()]
    assert "/count/smuggled" not in logs and logs.count("/echo") == 1


def test_pipelined_requests_are_answered_in_order(cluster):
    raw = (head(method="GET", target="/count/a") + head("Content-Length: 3") + b"abc"
           + head("Transfer-Encoding: chunked") + CHUNKED_ABC
           + head(method="GET", target="/count/b"))
    answers = parse(exchange(cluster.balancer.port, raw))
    assert [(a[0], json.loads(a[2])) for a in answers] == [
        (200, {"name": "a", "count": 0}), (200, {"size": 3}), (200, {"size": 3}),
        (200, {"name": "b", "count": 0})]


def test_request_targets_in_every_form(cluster):
    port = cluster.balancer.port
    status, headers, _ = one(port, b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 204 and "GET" in headers["Allow"]
    assert reason(one(port, b"GET * HTTP/1.1\r\nHost: t\r\n\r\n")[2]) == "bad_target"
    assert reason(one(port, b"CONNECT t:80 HTTP/1.1\r\nHost: t\r\n\r\n")[2]) == "bad_target"
    assert reason(one(port, b"GET ftp://t/echo HTTP/1.1\r\nHost: t\r\n\r\n")[2]) == "bad_target"
    status, _, body = one(port, b"GET http://127.0.0.1/count/x?y=1 HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (status, json.loads(body)) == (200, {"name": "x", "count": 0})


def test_expect_100_continue_and_http_1_0(cluster):
    raw = head("Content-Length: 3", "Expect: 100-continue") + b"abc"
    data = exchange(cluster.balancer.port, raw)
    assert data.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200")
    data = exchange(cluster.balancer.port, b"POST /body HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc")
    assert parse(data)[0][0] == 200


def test_the_body_cap_counts_extensions_and_trailers(cluster):
    cluster.balancer.max_body = 1000
    plain = head("Transfer-Encoding: chunked") + b"%x\r\n" % 980 + b"a" * 980 + b"\r\n0\r\n\r\n"
    assert one(cluster.balancer.port, plain)[0] == 200
    padded = head("Transfer-Encoding: chunked") + b"".join(
        b"1;" + b"e" * 200 + b"\r\na\r\n" for _ in range(5)) + b"0\r\n\r\n"
    assert reason(one(cluster.balancer.port, padded)[2]) == "body_too_large"  # 5 bytes of data
    trailers = head("Transfer-Encoding: chunked") + b"a\r\n" + b"a" * 10 + b"\r\n0\r\n" + b"".join(
        b"T%d: %s\r\n" % (i, b"t" * 100) for i in range(20)) + b"\r\n"
    assert reason(one(cluster.balancer.port, trailers)[2]) == "body_too_large"
    declared = head("Content-Length: 1001") + b"a" * 1001
    assert reason(one(cluster.balancer.port, declared)[2]) == "body_too_large"


# -- 2. slow clients, caps, and threads that fail -----------------------------------


def _trickle(port: int, pieces: list[bytes], every: float, deadline: float) -> tuple[bytes, float]:
    """Send pieces slowly; return what came back and how long until the close."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=deadline) as sock:
        for piece in pieces:
            try:
                sock.sendall(piece)
            except OSError:
                break
            time.sleep(every)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    return data, time.monotonic() - start


@pytest.mark.parametrize("where", ["balancer", "server"])
def test_slow_heads_and_bodies_get_408_and_idle_connections_close(cluster, where, monkeypatch):
    cluster.balancer.head_timeout = cluster.balancer.body_timeout = 0.6
    monkeypatch.setattr(QuietHandler, "head_timeout", 0.6)
    monkeypatch.setattr(QuietHandler, "body_timeout", 0.6)
    port = port_of(cluster, where)
    # Slowloris: one byte every 0.1 s never trips a per-read timeout; the deadline does.
    loris = [bytes([b]) for b in b"GET /echo HTTP/1.1\r\nHost: t\r\nX-A: " + b"a" * 200]
    data, took = _trickle(port, loris, 0.1, 10)
    assert (parse(data)[0][0], reason(parse(data)[0][2])) == (
        408, "head_timeout" if where == "balancer" else "request_timeout")
    assert took < 5
    # A body that never completes: the worker is not held for long.
    data, took = _trickle(port, [head("Content-Length: 10") + b"abc"], 0, 10)
    assert parse(data)[0][0] == 408 and took < 5
    chunked = head("Transfer-Encoding: chunked") + b"5\r\nab"
    data, took = _trickle(port, [chunked], 0, 10)
    assert parse(data)[0][0] == 408 and took < 5
    # A connection that sends nothing at all is closed without an answer.
    data, took = _trickle(port, [], 0, 10)
    assert data == b"" and took < 5


def test_a_server_thread_is_freed_when_a_client_keeps_sending(cluster):
    port = cluster.servers[0].port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head(method="GET", target="/echo"))
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200")
        start = time.monotonic()
        try:
            while time.monotonic() - start < 5:
                sock.sendall(b"x" * 1000)  # werkzeug drains leftovers; not forever
                time.sleep(0.01)
        except OSError:
            pass
        assert time.monotonic() - start < 3


def test_connection_caps(cluster, monkeypatch):
    cluster.balancer.max_connections = 3
    idle = [socket.create_connection(("127.0.0.1", cluster.balancer.port)) for _ in range(3)]
    try:
        deadline = time.monotonic() + 5
        while cluster.balancer.connections() < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        status, _, body = one(cluster.balancer.port, head(method="GET", target="/echo"))
        assert (status, reason(body)) == (503, "too_many_connections")
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 5
    while cluster.balancer.connections() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert one(cluster.balancer.port, head(method="GET", target="/echo"))[0] == 200
    # Each server has its own cap.
    monkeypatch.setattr(_serving, "MAX_CONNECTIONS", 2)
    port = cluster.servers[0].port
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    try:
        deadline = time.monotonic() + 5
        while len(cluster.servers[0]._http._conns) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        status, _, body = one(port, head(method="GET", target="/echo"))
        assert (status, reason(body)) == (503, "too_many_connections")
    finally:
        for sock in idle:
            sock.close()


def test_a_failing_connection_thread_is_recorded_never_printed(cluster, monkeypatch, capfd):
    hooked: list = []
    monkeypatch.setattr(threading, "excepthook", hooked.append)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the balancer")

    monkeypatch.setattr(balancer_module.Balancer, "_request_info", broken)
    status, _, body = one(cluster.balancer.port, head(method="GET", target="/echo"))
    assert (status, reason(body)) == (500, "balancer_error")
    assert b"Traceback" not in body and b"a bug in the balancer" not in body
    assert "RuntimeError: a bug in the balancer" in cluster.balancer.errors[-1]
    monkeypatch.undo()
    assert one(cluster.balancer.port, head(method="GET", target="/echo"))[0] == 200

    monkeypatch.setattr(threading, "excepthook", hooked.append)
    monkeypatch.setattr(QuietHandler, "run_wsgi", broken)
    assert exchange(cluster.servers[0].port, head(method="GET", target="/echo")) == b""
    server_errors = cluster.servers[0]._wsgi.errors
    deadline = time.monotonic() + 5
    while not server_errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "RuntimeError: a bug in the balancer" in server_errors[-1]
    out, err = capfd.readouterr()
    assert (out, err, hooked) == ("", "", [])


# -- 3. internal endpoints -----------------------------------------------------------

SPELLINGS = ["/__labkit__/log", "//__labkit__/log", "///__labkit__/stats",
             "/%5F_labkit__/stats", "/%5f%5flabkit%5f%5f/log", "/%255F_labkit__/log",
             "/__LABKIT__/log", "/./__labkit__/log", "/x/../__labkit__/log",
             "/%2e/__labkit__/log", "/__labkit__;x/log", "/__labkit__%2Flog",
             "/\\__labkit__\\log", "/__labkit__/log?x=1", "http://127.0.0.1/__labkit__/log",
             "HTTP://t//__labkit__/stats", "http://t/%5F%5Flabkit__/ready"]


def test_internal_endpoints_are_unreachable_through_the_balancer_by_any_spelling(
        cluster, monkeypatch):
    requests.get(cluster.url + "/echo", headers={"User-Agent": "secret-agent"})
    for target in SPELLINGS:
        raw = f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
        status, _, body = one(cluster.balancer.port, raw)
        assert (status, reason(body)) == (404, "internal_endpoint"), target
    # Even if the balancer missed a spelling, the servers refuse: they serve their
    # own endpoints only to requests that did not come through the balancer.
    direct = requests.get(cluster.servers[0].url + "/__labkit__/log")
    assert direct.status_code == 200 and "secret-agent" in direct.text
    raw = b"GET \\__labkit__\\log HTTP/1.1\r\nHost: t\r\n\r\n"  # not a target at all
    assert reason(one(cluster.balancer.port, raw)[2]) == "bad_target"
    monkeypatch.setattr(balancer_module, "internal_path", lambda target: False)
    for target in SPELLINGS:
        raw = f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
        status, _, body = one(cluster.balancer.port, raw)
        assert status == 404 and b"secret-agent" not in body, target
        assert b'"requests":' not in body, target


# -- 4. X-Forwarded-For -----------------------------------------------------------------


def test_x_forwarded_for_is_set_by_the_balancer_and_trusted_only_from_it(cluster):
    forged = {"X-Forwarded-For": "10.9.8.7", "Forwarded": "for=10.9.8.7",
              "X-Real-IP": "10.9.8.7", "X-Labkit-Balancer": "a-guess"}
    with client(source="127.0.0.2") as thief:
        via = thief.get(cluster.url + "/echo", headers=forged).json()
        direct = thief.get(cluster.servers[0].url + "/echo", headers=forged).json()
    assert via["forwarded"] == "127.0.0.2"   # the balancer replaced the forgery
    assert direct["forwarded"] is None       # a server drops it from anyone else
    clients = {e["client"] for s in cluster.servers for e in s.request_log()}
    assert clients == {"127.0.0.2"}
    # Every spelling and count of the header is replaced; encoded line breaks stay
    # inert text, so no header can be injected into what the server receives.
    raw = (b"GET /echo%0d%0aX-Forwarded-For:%201.2.3.4 HTTP/1.1\r\nHost: t\r\n"
           b"x-forwarded-for: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2, 3.3.3.3\r\n"
           b"X-Pad: a%0d%0aX-Forwarded-For: 4.4.4.4\r\n\r\n")
    assert one(cluster.balancer.port, raw, source="127.0.0.3")[0] == 404  # odd path
    raw = raw.replace(b"/echo%0d%0aX-Forwarded-For:%201.2.3.4", b"/echo")
    status, _, body = one(cluster.balancer.port, raw, source="127.0.0.3")
    assert (status, json.loads(body)["forwarded"]) == (200, "127.0.0.3")


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_no_app_sees_the_balancers_proof_or_a_forged_address(isolation):
    def make_mirror() -> Flask:
        app = Flask("mirror")

        @app.get("/headers")
        def headers():
            return jsonify(headers=dict(request.headers), address=request.remote_addr)

        return app

    with lk.Cluster(make_mirror, size=1, isolation=isolation, name="mirror") as mirror:
        with client(source="127.0.0.3") as visitor:
            seen = visitor.get(mirror.url + "/headers",
                               headers={"X-Forwarded-For": "10.0.0.1"}).json()
            direct = visitor.get(mirror.servers[0].url + "/headers", headers={
                "X-Forwarded-For": "10.0.0.1", "X-Labkit-Balancer": "guess"}).json()
    assert seen["address"] == "127.0.0.3" and seen["headers"]["X-Forwarded-For"] == "127.0.0.3"
    assert not any(name.lower() == "x-labkit-balancer" for name in seen["headers"])
    assert direct["address"] == "127.0.0.3"
    assert not {"X-Forwarded-For", "X-Labkit-Balancer"} & set(direct["headers"])


@pytest.mark.parametrize("through", ["server", "cluster"])
def test_the_hijack_detector_sees_the_thief_despite_a_forged_address(through):
    """Chapter 02's detector: one session hash from two (address, user agent) pairs."""
    ua = "Mozilla/5.0 (Alice's laptop)"
    factory = lambda: guarded.create_app("naive")  # noqa: E731
    with (lk.serve(factory, name="watched") if through == "server"
          else lk.Cluster(factory, size=1, name="watched")) as target:
        with client(user_agent=ua) as alice:
            alice.post(target.url + "/login", json={"username": "alice",
                                                   "password": "wonderland"})
            alice.get(target.url + "/notes")
            stolen = alice.cookies["sid"]
        with client(source="127.0.0.2", user_agent=ua, keep_cookies=False) as thief:
            r = thief.get(target.url + "/notes", cookies={"sid": stolen},
                          headers={"X-Forwarded-For": "127.0.0.1"})
            assert r.status_code == 200  # the naive app lets the thief in...
        servers = [target] if through == "server" else target.servers
        log = [e for s in servers for e in s.request_log()]
    seen = {(e["client"], e["user_agent"]) for e in log if e["session"]}
    assert seen == {("127.0.0.1", ua), ("127.0.0.2", ua)}  # ...but the log tells
