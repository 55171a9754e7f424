"""security.md (e) 32-36 and issue 9's classes 1, 6-10: the defended apps hold, over real HTTP.

One test per class of attack, run the way an attacker would: raw bytes on a socket
where the bytes matter, a second loopback address where the address matters. Where
a naive app exists, the same attack is run against it too and must still succeed:
the lessons of chapter 02 depend on it.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests
from flask.sessions import SecureCookieSessionInterface

import labkit as lk
from labkit import FunctionRuntime, ManualClock, Replication
from labkit.apps import cookie_session, guarded, social, uploads
from labkit.apps.clients import client
from labkit.apps.idempotency import with_idempotency_keys
from labkit.errors import AppConfigError, LabkitError

ALICE = {"username": "alice", "password": "wonderland"}
UA = "Mozilla/5.0 (Alice's laptop)"
DEEP = b"[" * 6_000 + b"]" * 6_000  # deeper than the parser recurses; under 16 KiB


def raw(url: str, method: str, path: str, body: bytes = b"", headers: dict | None = None,
        ) -> tuple[int, bytes]:
    """One request with exactly these bytes as the body; (status, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def social_token_app():
    return social.create_app(mode="token", kdf_iterations=1_000)


# 1 ---------------------------------------------------------------------------------
def _is(reason: str, expected: str | tuple[str, ...]) -> bool:
    return reason in expected if isinstance(expected, tuple) else reason == expected


JSON = {"Content-Type": "application/json"}
BAD_BODIES = {
    # Python 3.11/3.12's parser gives up at this depth (malformed_json); 3.13's parses
    # it, and the app's own depth limit refuses it (too_deep). Either is a clear 400.
    "nested 6,000 deep": (DEEP, 400, ("malformed_json", "too_deep")),
    "nested 500 deep": (b'{"a":' * 500 + b"1" + b"}" * 500, 400, "too_deep"),
    "lone surrogate password": (b'{"username": "alice", "password": "\\ud800"}', 400,
                                "malformed_json"),
    "a list, not an object": (b'[{"username": "alice", "password": "x"}]', 422,
                              "wrong_shape"),
    "invalid UTF-8": (b'{"username": "\xff"}', 400, "malformed_json"),
}


@pytest.mark.parametrize("factory,path", [
    (lambda: social.create_app(mode="session", kdf_iterations=1_000), "/login"),
    (social_token_app, "/login"),
    (lambda: guarded.create_app("defended"), "/login"),
    (lambda: guarded.create_app("naive"), "/login"),
    (cookie_session.create_app, "/login"),
], ids=["social-session", "social-token", "guarded-defended", "guarded-naive", "cookie"])
def test_1_bad_input_gets_a_4xx_with_a_reason(serve, factory, path):
    s = serve(factory)
    for kind, (body, status, reason) in BAD_BODIES.items():
        got, text = raw(s.url, "POST", path, body, JSON)
        assert got == status and _is(json.loads(text)["error"], reason), kind
        assert b"Traceback" not in text
    assert s.stats()["errors"] == 0


def test_1_bad_input_on_the_social_routes_behind_login(serve):
    s = serve(lambda: social.create_app(mode="session", kdf_iterations=1_000))
    with requests.Session() as c:
        c.post(s.url + "/login", json=ALICE)
        cookie = {"Cookie": "sid=" + c.cookies["sid"], **JSON}
    for path in ("/chat/replay", "/posts/1/react", "/chat"):
        for kind, (body, status, reason) in BAD_BODIES.items():
            got, text = raw(s.url, "POST", path, body, cookie)
            assert got == status and _is(json.loads(text)["error"], reason), (path, kind)
    assert s.stats()["errors"] == 0


def test_1_bad_input_on_the_runtime_and_the_shop(serve):
    rt = FunctionRuntime()
    rt.register("echo", "def handler(event, context):\n    return event\n")
    runtime = serve(rt.create_app)
    for kind, (body, status, reason) in BAD_BODIES.items():
        if kind.startswith("lone") or kind.startswith("a list"):
            continue  # an event has no password; a list is checked below
        got, text = raw(runtime.url, "POST", "/invoke/echo", body, JSON)
        assert got == status and _is(json.loads(text)["error"], reason), kind
    assert raw(runtime.url, "POST", "/invoke/echo", b"[1]", JSON)[0] == 422
    assert raw(runtime.url, "POST", "/invoke/echo", b'"\\udc00"', JSON)[0] == 400

    group = Replication("update")
    with lk.Cluster(group.factory, size=2, balancer="sticky", name="shop") as cluster:
        group.connect(cluster)
        shop = cluster["s1"]
        for body in (DEEP, b'{"user": "\\ud800"}', b"[1]", b'{"user": 5}', b'{"user": ""}'):
            got, text = raw(shop.url, "POST", "/login", body, JSON)
            assert 400 <= got < 500 and json.loads(text)["error"], body[:20]
        # a non-ASCII peer key: compare_digest on str would raise TypeError (a 500)
        got, text = raw(shop.url, "POST", "/peer/update/" + "a" * 43, b"{}",
                        {**JSON, "X-Peer-Key": "\u00e9t\u00e9".encode().decode("latin-1")})
        assert (got, json.loads(text)["error"]) == (403, "peers_only")
        assert all(server.stats()["errors"] == 0 for server in cluster.servers)


# 6 ---------------------------------------------------------------------------------
def forge_flask_cookie(secret: str, data: dict) -> str:
    app = cookie_session.create_app(secret_key=secret)
    return SecureCookieSessionInterface().get_signing_serializer(app).dumps(data)


def test_6_no_hard_coded_default_secret(serve):
    a, b = cookie_session.create_app(), cookie_session.create_app()
    assert a.config["SECRET_KEY"] != b.config["SECRET_KEY"]
    assert len(a.config["SECRET_KEY"]) >= 32
    g1, g2 = (guarded.create_app("naive") for _ in range(2))
    assert g1.config["SECRET_KEY"] != g2.config["SECRET_KEY"]
    s = serve(cookie_session.create_app)
    for guess in ("course-key-2024", "dev", "secret", ""):  # the old default, and friends
        forged = forge_flask_cookie(guess or "x", {"user": "alice"})
        r = requests.get(s.url + "/me", cookies={"session": forged})
        assert (r.status_code, r.json()["error"]) == (401, "login_required"), guess
    # A key given on purpose is used: the lesson on forging with a leaked key still works.
    leaked = serve(lambda: cookie_session.create_app(secret_key="leaked-key"))
    r = requests.get(leaked.url + "/me",
                     cookies={"session": forge_flask_cookie("leaked-key", {"user": "alice"})})
    assert r.json() == {"user": "alice"}


# 7 ---------------------------------------------------------------------------------
def test_7_ids_sent_to_login_count_toward_the_guess_limit(serve):
    s = serve(lambda: guarded.create_app("defended", guess_limit=5))
    with client(source="127.0.0.6", keep_cookies=False) as prober:
        codes = [prober.post(s.url + "/login", json=ALICE,
                             cookies={"sid": f"guess-{i}"}).status_code for i in range(7)]
        me = prober.get(s.url + "/me", cookies={"sid": "guess-again"})
    assert codes == [200] * 5 + [429] * 2
    assert me.status_code == 429
    assert requests.get(s.url + "/security").json()["flagged_clients"] == ["127.0.0.6"]
    # the naive app has no limit: the attack of chapter 02 still runs
    naive = serve(lambda: guarded.create_app("naive"))
    with client(source="127.0.0.6", keep_cookies=False) as prober:
        assert all(prober.post(naive.url + "/login", json=ALICE,
                               cookies={"sid": f"guess-{i}"}).status_code == 200
                   for i in range(30))


def test_7_a_live_id_at_login_from_another_browser_does_not_log_its_owner_out(serve):
    s = serve(lambda: guarded.create_app("defended"))
    with client(user_agent=UA) as alice:
        alice.post(s.url + "/login", json=ALICE)
        live = alice.cookies["sid"]
        with client(source="127.0.0.2", user_agent="Mallory/1.0", keep_cookies=False) as m:
            wrong = m.post(s.url + "/login", cookies={"sid": live},
                           json={"username": "alice", "password": "guess"})
            bob = m.post(s.url + "/login", cookies={"sid": live},
                         json={"username": "bob", "password": "builder"})
        assert wrong.status_code == 401 and bob.status_code == 200
        assert bob.cookies["sid"] != live  # Mallory got an id of her own...
        assert alice.get(s.url + "/me").json() == {"user": "alice"}  # ...Alice kept hers
        # Used on another route from another browser, the id still dies (chapter 02).
        with client(source="127.0.0.2", user_agent="Mallory/1.0", keep_cookies=False) as m:
            assert m.get(s.url + "/me", cookies={"sid": live}).json()["error"] == \
                "session_binding_mismatch"
        assert alice.get(s.url + "/me").status_code == 401


def test_7_wrong_passwords_are_throttled(serve):
    clock = ManualClock()
    s = serve(lambda: guarded.create_app("defended", clock=clock, kdf_iterations=1_000))
    wrong = {"username": "alice", "password": "guess"}
    with client(source="127.0.0.7", keep_cookies=False) as mallory:
        codes = [mallory.post(s.url + "/login", json=wrong).status_code for _ in range(7)]
        locked = mallory.post(s.url + "/login", json=ALICE)
        bob = mallory.post(s.url + "/login", json={"username": "bob", "password": "builder"})
        clock.advance(299)
        still = mallory.post(s.url + "/login", json=ALICE)
        clock.advance(1)
        free = mallory.post(s.url + "/login", json=ALICE)
    assert codes == [401] * 5 + [429] * 2
    assert (locked.status_code, locked.json()["error"]) == (429, "too_many_failed_logins")
    assert locked.headers["Retry-After"] == "300"
    assert bob.status_code == 200            # another account is not locked
    assert still.status_code == 429 and free.status_code == 200
    # one address spraying many accounts: 20 failures, then 429 for any account
    with client(source="127.0.0.8", keep_cookies=False) as sprayer:
        spray = [sprayer.post(s.url + "/login", json={"username": f"user{i}",
                                                      "password": "123456"}).status_code
                 for i in range(21)]
        blocked = sprayer.post(s.url + "/login", json=ALICE)
    assert spray == [401] * 20 + [429] and blocked.status_code == 429
    # the naive profile does not throttle: the guessing attack still works there
    naive = serve(lambda: guarded.create_app("naive"))
    assert [requests.post(naive.url + "/login", json=wrong).status_code
            for _ in range(30)] == [401] * 30
    assert requests.post(naive.url + "/login", json=ALICE).status_code == 200


def test_7_unknown_profile_or_switch_is_a_labkit_error():
    with pytest.raises(AppConfigError, match="naive"):
        guarded.create_app("paranoid")
    with pytest.raises(LabkitError, match="switch"):
        guarded.create_app("naive", rotate_on_logon=True)


# 8 ---------------------------------------------------------------------------------
def slow_client(url: str, path: str, *, declared: int, sent: bytes) -> socket.socket:
    """Declare ``declared`` bytes, send ``sent``, and keep the connection open."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=20)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {declared}\r\n\r\n".encode() + sent)
    return sock


def _short_timeout(factory, seconds=0.5):
    def build():
        app = factory()
        app.config["LABKIT_READ_TIMEOUT"] = seconds
        return app
    return build


@pytest.mark.parametrize("which", ["runtime", "gateway"])
def test_8_a_client_that_sends_less_than_it_declares_cannot_hold_the_only_worker(
        serve, which):
    if which == "runtime":
        rt = FunctionRuntime()
        rt.register("hello", "def handler(event, context):\n    return {'hi': 1}\n")
        s = serve(_short_timeout(rt.create_app), workers=1)
        path, good = "/invoke/hello", lambda: requests.post(s.url + "/invoke/hello", json={},
                                                             timeout=20)
    else:
        main = serve(uploads.create_upload_server)
        s = serve(_short_timeout(lambda: uploads.create_size_gateway(main.url)), workers=1)
        path, good = "/upload", lambda: requests.post(s.url + "/upload", data=b"x" * 10,
                                                      timeout=20)
    sock = slow_client(s.url, path, declared=1000, sent=b'{"a": ')
    try:
        started = time.monotonic()
        answer = good()  # waits for the only worker, which the slow client holds...
        waited = time.monotonic() - started
        assert answer.status_code == 200
        assert waited < 5.0  # ...for about the read timeout (0.5 s), not for ever
        sock.settimeout(5)
        head = sock.recv(4096)
    finally:
        sock.close()
    assert head.startswith(b"HTTP/1.1 408") and b"request_timeout" in head


def test_8_the_runtime_never_shows_exception_text_or_its_function_list(serve):
    rt = FunctionRuntime()
    rt.register("payroll", "def handler(event, context):\n"
                           "    raise RuntimeError('db password is hunter2')\n")
    rt.register("secret_admin_tool", "def handler(event, context):\n    return 1\n")
    s = serve(rt.create_app)
    boom = requests.post(s.url + "/invoke/payroll", json={})
    assert (boom.status_code, boom.json()["error"]) == (502, "handler_error")
    assert "hunter2" not in boom.text and "RuntimeError" not in boom.text
    missing = requests.post(s.url + "/invoke/nope", json={})
    assert (missing.status_code, missing.json()["error"]) == (404, "unknown_function")
    assert "payroll" not in missing.text and "secret_admin_tool" not in missing.text
    assert requests.get(s.url + "/functions").status_code == 404  # no listing either
    assert rt.failures[-1] == "payroll: RuntimeError: db password is hunter2"  # operator's view
    # a handler that returns something that is not JSON: 502, not 500
    rt.register("bytes", "def handler(event, context):\n    return b'raw'\n")
    assert requests.post(s.url + "/invoke/bytes", json={}).status_code == 502


# 9 ---------------------------------------------------------------------------------
def test_9_client_chosen_session_ids_never_reach_a_peer_url():
    group = Replication("invalidate")
    with lk.Cluster(group.factory, size=2, balancer="sticky", name="shop") as cluster:
        group.connect(cluster)
        s1 = cluster["s1"]
        with requests.Session() as ada:
            ada.post(s1.url + "/login", json={"user": "ada"}, timeout=5)
            sent = group.count()
            for evil in ("../update/x", "..%2Fupdate%2Fx", "a/b", "x" * 43 + "/..",
                         "%2e%2e", "\u00e9" * 43):
                for method, path in (("GET", "/cart"), ("POST", "/cart"), ("POST", "/logout")):
                    r = requests.request(method, s1.url + path, json={"item": "tea"}, timeout=5,
                                         headers={"Cookie": f"sid={evil}"})
                    assert r.status_code in (200, 401), (evil, path)
                    if path != "/logout":
                        assert r.json()["error"] == "unknown_session"
            assert group.count() == sent  # not one peer message was caused
        # a peer message with a malformed id or kind is refused, even with the key
        for path in ("/peer/update/short", "/peer/UPDATE/" + "a" * 43):
            r = requests.post(s1.url + path, json={"data": {}, "version": 1},
                              headers={"X-Peer-Key": group.key}, timeout=5)
            assert r.status_code == 404, path


# 10 --------------------------------------------------------------------------------
@pytest.fixture
def shop(serve):
    """The social app in token mode with idempotency keys; Alice's and Bob's headers."""
    s = serve(lambda: with_idempotency_keys(social_token_app()))

    def bearer(user, password):
        token = requests.post(s.url + "/login", json={"username": user,
                                                      "password": password}).json()["token"]
        return {"Authorization": "Bearer " + token}

    return s, bearer("alice", "wonderland"), bearer("bob", "builder")


def haha(s):
    return requests.get(s.url + "/posts/1").json()["reactions"].get("HAHA", 0)


def test_10_keys_are_checked_after_authentication_and_scoped_to_the_user(shop):
    s, alice, bob = shop
    key = {"Idempotency-Key": "shared-key-1"}
    react = s.url + "/posts/1/react"
    first = requests.post(react, json={"reaction": "HAHA"}, headers={**alice, **key})
    thief = requests.post(react, json={"reaction": "HAHA"}, headers=key)  # no login
    forged = requests.post(react, json={"reaction": "HAHA"},
                           headers={**key, "Authorization": "Bearer x.y.z"})
    by_bob = requests.post(react, json={"reaction": "HAHA"}, headers={**bob, **key})
    assert first.json()["by"] == "alice"
    assert thief.status_code == 401 and forged.status_code == 401  # never Alice's answer
    assert "alice" not in thief.text + forged.text
    assert by_bob.json()["by"] == "bob" and "Idempotent-Replayed" not in by_bob.headers
    assert haha(s) == 2


def test_10_a_401_is_never_stored(shop):
    s, alice, _ = shop
    key = {"Idempotency-Key": "planted-by-mallory"}
    react = s.url + "/posts/1/react"
    for _ in range(3):
        assert requests.post(react, json={"reaction": "HAHA"},
                             headers={**key, "Authorization": "Bearer bad"}).status_code == 401
    real = requests.post(react, json={"reaction": "HAHA"}, headers={**alice, **key})
    assert real.status_code == 200 and "Idempotent-Replayed" not in real.headers
    assert haha(s) == 1


def test_10_same_key_different_body_is_422_and_replays_are_marked(shop):
    s, alice, _ = shop
    key = {**alice, "Idempotency-Key": "k-422"}
    react = s.url + "/posts/1/react"
    first = requests.post(react, json={"reaction": "HAHA"}, headers=key)
    again = requests.post(react, json={"reaction": "HAHA"}, headers=key)
    other = requests.post(react, json={"reaction": "WOW"}, headers=key)
    other_post = requests.post(s.url + "/posts/2/react", json={"reaction": "HAHA"}, headers=key)
    assert first.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert (other.status_code, other.json()["error"]) == (422, "idempotency_key_reused")
    assert other_post.status_code == 422
    assert haha(s) == 1
    bad = requests.post(react, json={"reaction": "HAHA"},
                        headers={**alice, "Idempotency-Key": "x" * 300})
    assert (bad.status_code, bad.json()["error"]) == (400, "bad_idempotency_key")
    # a client that sends a key with every POST can still log in (nobody to scope it to)
    login = requests.post(s.url + "/login", json={"username": "bob", "password": "builder"},
                          headers={"Idempotency-Key": "k-login"})
    assert login.status_code == 200 and "Idempotent-Replayed" not in login.headers


def test_10_copies_racing_run_once_and_a_failed_request_releases_its_key(serve):
    gate, entered = threading.Event(), threading.Event()

    def app():
        a = with_idempotency_keys(social.create_app(mode="basic", kdf_iterations=1_000))

        @a.before_request
        def test_hook():
            from flask import request
            if request.headers.get("X-Test") == "hold":
                entered.set()
                gate.wait(10)
            if request.headers.get("X-Test") == "crash":
                raise RuntimeError("storage failed")
        return a

    s = serve(app)
    auth = ("alice", "wonderland")
    react = s.url + "/posts/1/react"
    results: list = []

    def post(test=""):
        results.append(requests.post(react, json={"reaction": "HAHA"}, auth=auth,
                                     headers={"Idempotency-Key": "race", "X-Test": test},
                                     timeout=20))

    holder = threading.Thread(target=post, args=("hold",))
    holder.start()
    assert entered.wait(10)
    racers = [threading.Thread(target=post) for _ in range(8)]
    for t in racers:
        t.start()
    for t in racers:
        t.join(20)
    gate.set()
    holder.join(20)
    codes = sorted(r.status_code for r in results)
    assert codes == [200] + [409] * 8, codes
    assert all(r.json()["error"] == "idempotency_key_in_flight"
               for r in results if r.status_code == 409)
    assert haha(s) == 1
    # a crash releases the key: the retry runs (not 409 for ever, not a stored 500)
    crash = requests.post(react, json={"reaction": "HAHA"}, auth=auth,
                          headers={"Idempotency-Key": "crashy", "X-Test": "crash"})
    assert (crash.status_code, crash.json()["error"]) == (500, "internal_error")
    assert "storage failed" not in crash.text
    retry = requests.post(react, json={"reaction": "HAHA"}, auth=auth,
                          headers={"Idempotency-Key": "crashy"})
    assert retry.status_code == 200 and "Idempotent-Replayed" not in retry.headers
    assert haha(s) == 2


# the oracle paragraph: the chapters say the reasons are for teaching -------------------
def test_reason_codes_are_declared_teaching_aids():
    assert "oracle" in guarded.__doc__
    for chapter in ("02_session_security", "05b_tokens"):
        with open(f"chapters/{chapter}.ipynb", encoding="utf-8") as f:
            assert "oracle" in f.read(), chapter
