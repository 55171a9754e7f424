"""Held-out attacks on the defended apps (issue 9): attacks the first fix did not list.

Each test is one finding, run over real HTTP on loopback the way an attacker would
(raw bytes on a socket where the bytes matter, a 127.x source where the address
matters). Each failed before its fix; the fix is named in the test's docstring.
"""

from __future__ import annotations

import base64
import json
import socket
import threading

import pytest
import requests

from labkit import Replication
from labkit.apps import cookie_session, guarded, social, uploads
from labkit.apps.clients import client
from labkit.apps.idempotency import with_idempotency_keys
from labkit.state import tokens

ALICE = {"username": "alice", "password": "wonderland"}


def send_raw(server, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send exactly ``data``; return every byte the server answered until it closed."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def status_of(answer: bytes) -> int:
    # skip an interim "100 Continue" if the server sent one
    final = answer.split(b"HTTP/1.1 100 Continue\r\n\r\n")[-1]
    return int(final.split(b" ", 2)[1])


# 1 ---------------------------------------------------------------------------------
@pytest.mark.parametrize("size_line", [b"-5", b"zz", b"1;" + b"x" * 200])
def test_bad_chunk_sizes_are_400_not_500(serve, size_line):
    """A chunked body with a negative, non-hex or overlong chunk-size line: 400.

    werkzeug's dev server decodes chunked bodies itself and raises OSError on a bad
    size; nothing caught it, so every app that reads a body answered 500.
    Fix: json_api wraps the request body so a framing error is 400 ``malformed_body``.
    """
    main = serve(uploads.create_upload_server)
    apps = [serve(cookie_session.create_app), main,
            serve(lambda: uploads.create_size_gateway(main.url, limit=1024))]
    for server, path in zip(apps, ["/login", "/upload", "/upload"]):
        answer = send_raw(server, b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                          b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n"
                          b"\r\n" + size_line + b"\r\nabc\r\n0\r\n\r\n")
        assert status_of(answer) == 400, (server.name, answer[:200])
        assert b"Traceback" not in answer  # (the reason code is the serving layer's)


# 2 ---------------------------------------------------------------------------------
def test_basic_credentials_that_are_not_ascii_are_401_not_500(serve):
    """``Authorization: Basic`` followed by non-ASCII bytes: 401, not 500.

    werkzeug's ``request.authorization`` raises ValueError on them (b64decode of a
    non-ASCII str); the social app's Basic mode let it escape.
    """
    s = serve(lambda: with_idempotency_keys(social.create_app(mode="basic",
                                                              kdf_iterations=1_000)))
    for extra in (b"", b"Idempotency-Key: k1\r\n"):
        answer = send_raw(s, b"POST /posts/1/react HTTP/1.1\r\nHost: x\r\n"
                          b"Authorization: Basic \xff\xfe\xc3\x28\r\n" + extra +
                          b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        assert status_of(answer) == 401, answer[:200]
        assert b"credentials_required" in answer


# 3 ---------------------------------------------------------------------------------
def test_idempotency_key_body_read_is_bounded_by_the_read_timeout(serve):
    """A logged-in client with an Idempotency-Key that never sends its body: 408.

    The idempotency hook runs first and read the body (for its fingerprint) before
    the app's read timeout was set on the socket: the worker waited for ever.
    """
    def make():
        app = with_idempotency_keys(social.create_app(mode="basic", kdf_iterations=1_000))
        app.config["LABKIT_READ_TIMEOUT"] = 0.5
        return app

    s = serve(make)
    alice = base64.b64encode(b"alice:wonderland")
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(b"POST /posts/1/react HTTP/1.1\r\nHost: x\r\nAuthorization: Basic "
                     + alice + b"\r\nIdempotency-Key: k1\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 100\r\n\r\n{\"react")
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except socket.timeout:
            pytest.fail("the server held the connection past its read timeout")
    assert status_of(answer) == 408
    assert len(s.app.extensions["labkit.idempotency"]) == 0  # the key was released


# 4 ---------------------------------------------------------------------------------
def test_token_refusals_carry_no_library_exception_text(serve):
    """A bad token gets a reason code and our own words, not PyJWT's exception text.

    security.md 34: error answers never carry exception text (it names the library,
    its parser's state and what it was given).
    """
    s = serve(lambda: social.create_app(mode="token", kdf_iterations=1_000))

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    good = requests.post(s.url + "/login", json=ALICE).json()["token"]
    _, payload, signature = good.split(".")
    attempts = [
        b64(b"[" * 3000) + ".e30.x",                                   # nested header
        b64(b'{"alg":"HS256","x":' + b"1" * 5000 + b"}") + f".{payload}.{signature}",
        b64(b'{"alg":"HS256","kid":{"a":1}}') + f".{payload}.{signature}",
        b64(b'{"alg":"HS256","crit":["exp"]}') + f".{payload}.{signature}",
        b64(b'"abc"') + f".{payload}.{signature}",
        good + "x",
        "a.b",
    ]
    library_words = ("recursion", "Invalid header string", "Exceeds the limit", "Key ID",
                     "critical", "padding", "Not enough segments", "Expecting value",
                     "must be a json object")
    for token in attempts:
        r = requests.get(s.url + "/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401 and r.json()["error"] in tokens.REASONS, token[:40]
        leaked = [w for w in library_words if w.lower() in r.text.lower()]
        assert not leaked, (token[:40], r.text)


# 5 ---------------------------------------------------------------------------------
def test_a_flagged_address_cannot_go_on_testing_ids(serve):
    """Past the guess limit, *every* id from that address is refused, live ones too.

    Before: only bad ids got 429, and a live id still got 200; the limit changed the
    error code but not the oracle, so a guesser went on at full speed and noticed a
    hit by its 200 (OWASP Session Management: block the address, not the answer).
    """
    s = serve(lambda: guarded.create_app("defended", signed_cookie=False, guess_limit=5))
    with requests.Session() as alice:  # a live session the guesser will "find"
        assert alice.post(s.url + "/login", json=ALICE).status_code == 200
        live = alice.cookies["sid"]
    with client(source="127.0.0.9", keep_cookies=False) as guesser:
        codes = [guesser.get(s.url + "/me", cookies={"sid": f"guess-{i}"}).status_code
                 for i in range(7)]
        hit = guesser.get(s.url + "/me", cookies={"sid": live})
    assert codes == [401] * 5 + [429] * 2
    assert hit.status_code == 429, hit.text
    with requests.Session() as other:  # other addresses, and Alice herself, still work
        assert other.get(s.url + "/me", cookies={"sid": live}).status_code == 200


# 6 ---------------------------------------------------------------------------------
def test_concurrent_password_guesses_do_not_outrun_the_throttle(serve):
    """Twenty wrong passwords sent at once: at most ``login_failures`` are checked.

    Before: the throttle checked the count, then verified the password (slow), then
    counted the failure; every concurrent guess passed the check before the first
    failure was counted, so 20 guesses ran where 5 were allowed (a race).
    """
    s = serve(lambda: guarded.create_app("defended", kdf_iterations=200_000))
    n = 20
    barrier = threading.Barrier(n)
    codes: list[int] = []

    def guess(i: int) -> None:
        with requests.Session() as c:
            barrier.wait(timeout=30)
            r = c.post(s.url + "/login", json={"username": "alice", "password": f"g{i}"},
                       timeout=60)
            codes.append(r.status_code)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert sorted(codes) == sorted(codes) and len(codes) == n
    assert codes.count(401) <= 5 and codes.count(429) >= n - 5, sorted(codes)
    # the right password is refused too while the account is locked
    assert requests.post(s.url + "/login", json=ALICE).status_code == 429


# 7 ---------------------------------------------------------------------------------
def test_a_session_too_big_for_a_peer_message_is_refused_not_left_unreplicated(serve):
    """A cart that outgrows what a peer accepts: 422, never a silent loss of copies.

    Before: 1,000 items of 4,096 characters made a session of megabytes; each update
    to a peer got 413 (peers accept 1 MiB), the client still got 200, and the copies
    on the other servers stayed behind: a failover lost the writes.
    """
    group = Replication("update")
    servers = [serve(group.factory) for _ in range(2)]
    group.connect(servers)
    with requests.Session() as c:
        c.post(servers[0].url + "/login", json={"user": "mallory"})
        item = "é" * 4096  # 6 bytes each once JSON-escaped
        codes = [c.post(servers[0].url + "/cart", json={"item": item}).status_code
                 for _ in range(60)]
        assert 422 in codes, codes
        assert all(m.delivered for m in group.messages), "a peer message was refused"
        # what the client was told it has, the peer has too
        here = c.get(servers[0].url + "/cart").json()["cart"]
        there = c.get(servers[1].url + "/cart").json()["cart"]
        assert here == there and len(here) == codes.count(200)


# 8 ---------------------------------------------------------------------------------
def test_one_client_cannot_grow_server_memory_without_bound(serve, monkeypatch):
    """Memory a client makes the server keep is bounded, whatever it sends.

    Before: three ``POST /chat`` of 900 KB each made a 2.7 MB session (each message
    was kept for ever); a notes loop grew a list without end; every ``GET /`` of the
    defended profile without a cookie made a session that lived 15 minutes (300 a
    second from one loop). Now: a message is at most ``MAX_MESSAGE`` characters and
    a history ``MAX_TURNS`` messages (422), notes ``MAX_NOTES`` per user, and the
    defended profile holds at most ``max_sessions`` sessions (least recently used
    first out).
    """
    monkeypatch.setattr(social, "MAX_TURNS", 3)
    soc = serve(lambda: social.create_app(mode="session", kdf_iterations=1_000))
    with requests.Session() as alice:
        alice.post(soc.url + "/login", json=ALICE)
        big = alice.post(soc.url + "/chat", json={"message": "x" * 900_000})
        assert (big.status_code, big.json()["error"]) == (422, "message_too_long")
        codes = [alice.post(soc.url + "/chat", json={"message": "tea"}).status_code
                 for _ in range(5)]
        assert codes == [200] * 3 + [422] * 2
    assert requests.get(soc.url + "/stats").json()["session_bytes"] < 1_000

    monkeypatch.setattr(guarded, "MAX_NOTES", 4)
    gd = serve(lambda: guarded.create_app("defended", max_sessions=50))
    with requests.Session() as alice:
        alice.post(gd.url + "/login", json=ALICE)
        codes = [alice.post(gd.url + "/notes", json={"text": "n"}).status_code
                 for _ in range(6)]
        assert codes == [201] * 4 + [422] * 2
    for _ in range(120):
        requests.get(gd.url + "/").raise_for_status()
    assert len(gd.app.extensions["labkit.sessions"]) <= 50


# 9 ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["session", "token", "basic"])
def test_the_social_app_throttles_password_guessing_in_every_mode(serve, mode):
    """ASVS 4 V2.2.1 for the social app too: wrong passwords, then 429, even the right one.

    Before: only the guarded app throttled; the social app's ``POST /login`` (and in
    Basic mode *every* request, each a password check) let a client guess for ever.
    Concurrent right passwords are never refused: a load test of one user still runs.
    """
    s = serve(lambda: social.create_app(mode=mode, kdf_iterations=1_000))

    def attempt(password: str) -> int:
        if mode == "basic":
            return requests.get(s.url + "/me", auth=("alice", password)).status_code
        return requests.post(s.url + "/login", json={"username": "alice",
                                                     "password": password}).status_code

    n = 12
    barrier = threading.Barrier(n)
    right: list[int] = []

    def legit() -> None:
        barrier.wait(timeout=30)
        right.append(attempt("wonderland"))

    threads = [threading.Thread(target=legit) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert right == [200] * n

    codes = [attempt(f"guess-{i}") for i in range(7)]
    assert codes == [401] * 5 + [429] * 2
    assert attempt("wonderland") == 429  # locked: the right password waits too
    # the guesser's lock is alice's, not bob's
    bob = (requests.get(s.url + "/me", auth=("bob", "builder")) if mode == "basic" else
           requests.post(s.url + "/login", json={"username": "bob", "password": "builder"}))
    assert bob.status_code == 200


# 10 --------------------------------------------------------------------------------
def test_the_upload_server_counts_a_huge_body_without_holding_it(serve):
    """The main server reads and counts every byte, and keeps none of them.

    Before: ``len(request.get_data())`` held the whole body in memory, and the main
    server is reachable without the gateway: one 10 GB upload, 10 GB of memory.
    """
    import tracemalloc

    import http.client

    main = serve(uploads.create_upload_server)
    total = 40 * 1024 * 1024
    block = b"x" * (256 * 1024)
    conn = http.client.HTTPConnection("127.0.0.1", main.port, timeout=60)
    tracemalloc.start()
    try:
        # A declared length, streamed: (a chunked body is read whole, up to a cap, by
        # the kit's server before the app runs; a Content-Length body reaches the app
        # as a stream.)
        conn.putrequest("POST", "/upload")
        conn.putheader("Content-Length", str(total))
        conn.endheaders()
        for _ in range(total // len(block)):
            conn.send(block)
        answer = conn.getresponse()
        received = json.loads(answer.read())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        conn.close()
    assert received == {"received": total}
    assert peak < total / 3, f"peak {peak} bytes for a {total}-byte upload"


def test_the_cookie_session_app_throttles_password_guessing(serve):
    """Chapter 02's Flask-session app: wrong passwords, then 429, the right one too."""
    s = serve(cookie_session.create_app)
    codes = [requests.post(s.url + "/login", json={"username": "bob", "password": f"g{i}"}
                           ).status_code for i in range(7)]
    assert codes == [401] * 5 + [429] * 2
    assert requests.post(s.url + "/login", json={"username": "bob", "password": "builder"}
                         ).status_code == 429


# 11 --------------------------------------------------------------------------------
def test_chat_messages_sent_at_once_are_both_kept(serve):
    """Two ``POST /chat`` of one session at the same moment: both messages kept.

    Before: each request read the session, appended, and saved it back; two at once
    started from the same history and the later save dropped the other's message
    (a lost update), while both clients were told their message was kept. The store
    below makes the two first reads meet (a barrier), as a store across a network
    makes them overlap, so the interleaving is certain, not a matter of luck.
    """
    from labkit.state.sessions import MemorySessionStore

    class OverlappingReads(MemorySessionStore):
        meet = threading.Barrier(2)
        reads = 0

        def get(self, sid):
            data = super().get(sid)
            OverlappingReads.reads += 1
            if OverlappingReads.reads <= 2:  # the first two reads happen together
                self.meet.wait(timeout=20)
            return data

    s = serve(lambda: social.create_app(mode="session", store=OverlappingReads(),
                                        kdf_iterations=1_000))
    with requests.Session() as alice:
        alice.post(s.url + "/login", json=ALICE)
        cookie = alice.cookies["sid"]
    turns: list[int] = []

    def say(word: str) -> None:
        r = requests.post(s.url + "/chat", json={"message": word},
                          cookies={"sid": cookie}, timeout=30)
        turns.append(r.json()["turn"])

    threads = [threading.Thread(target=say, args=(w,)) for w in ("tea", "jam")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(turns) == [1, 2]
    last = requests.post(s.url + "/chat", json={"message": "end"}, cookies={"sid": cookie})
    assert last.json()["turn"] == 3
