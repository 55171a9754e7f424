"""Fuzz every app the course serves: 2,000 generated malformed requests each, no 5xx.

Each app runs on a real kit server (loopback, port 0). Hypothesis, derandomized (the
same requests on every run), builds requests from the app's own routes, then breaks
them: odd methods and paths, percent-encoded and non-ASCII path parts, garbage
cookies, tokens, Basic credentials, idempotency and peer keys, wrong content types,
and bodies that are random bytes, invalid UTF-8, JSON nested thousands deep, JSON of
the wrong shape, or strings with lone surrogates. Half the requests carry a valid
login, so the code behind the login is reached too.

Every answer must be a 4xx or 2xx/3xx: not one 5xx, no traceback in any body or in
the captured output, every answer within the client's timeout (no worker held), and
the server's own 5xx counter at 0. The figures (requests per app, 5xx seen) are
printed; run with ``-s`` to see them. About 80 s of CPU for all eight apps (half of it
hypothesis building requests); ``FUZZ_EXAMPLES=200`` makes a quick local run.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
import warnings
from collections import Counter
from urllib.parse import quote, urlsplit

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import labkit as lk
from labkit import FunctionRuntime, Replication
from labkit.apps import cookie_session, guarded, social, uploads
from labkit.apps.idempotency import with_idempotency_keys

EXAMPLES = int(__import__("os").environ.get("FUZZ_EXAMPLES", "2000"))
CLIENT_TIMEOUT = 10.0  # seconds; a worker held longer than this fails the test
ALICE = {"username": "alice", "password": "wonderland"}

# -- what a request can be made of -------------------------------------------------------

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                      st.text(max_size=20), st.sampled_from(["\ud800", "a\udfffb", "HAHA"]))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
FIELDS = ["username", "password", "reaction", "message", "history", "text", "user",
          "item", "data", "version", "name"]


@st.composite
def bodies(draw) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "object", "deep", "utf8", "empty"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(json_value)).encode()
    if kind == "object":  # the right field names, any values (lone surrogates included)
        obj = draw(st.dictionaries(st.sampled_from(FIELDS), json_value, max_size=4))
        return json.dumps(obj).encode()  # ensure_ascii: "\ud800" travels as an escape
    if kind == "deep":
        depth = draw(st.one_of(st.integers(min_value=60, max_value=999),
                                 st.integers(min_value=1_000, max_value=6_000)))
        opener = draw(st.sampled_from([b"[", b'{"a":']))
        closer = b"]" if opener == b"[" else b"}"
        return opener * depth + closer * depth
    if kind == "utf8":
        return b'{"username": "\xff\xfe", "password": "\xc3"}'
    return b""


printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
latin1 = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                               exclude_characters="\x7f"), max_size=40)


@st.composite
def paths(draw, routes: list[str]) -> str:
    path = draw(st.sampled_from(routes))
    segment = draw(st.one_of(
        st.sampled_from(["1", "2", "0", "-1", "999999999999999999999", "..", "%2e%2e",
                         "%2F", "a" * 43, "hello", "echo", "boom", "update", "fetch"]),
        printable.map(lambda t: quote(t, safe="")),
        st.text(max_size=10).map(lambda t: quote(t.encode("utf-8", "surrogatepass"),
                                                 safe=""))))
    path = path.replace("<x>", segment)
    tail = draw(st.sampled_from(["", "", "", "/", "//x", "/../me", "?sid=" + "a" * 43,
                                 "?everywhere=1", "?" + "a" * 300]))
    return path + tail


def headers(app: dict) -> st.SearchStrategy[dict]:
    """Headers for ``app``: garbage, or (half the time) its valid credentials."""
    garbage = st.fixed_dictionaries({}, optional={
        "Content-Type": st.sampled_from([
            "application/json", "application/json", "text/plain", "",
            "application/json; charset=latin-1", "multipart/form-data; boundary=x",
            "application/x-www-form-urlencoded", "application/octet-stream"]),
        "Cookie": st.tuples(st.sampled_from(["sid", "session", "__Host-sid"]),
                            printable).map(lambda kv: f"{kv[0]}={kv[1]}"),
        "Authorization": st.one_of(
            printable.map(lambda t: "Bearer " + t),
            st.binary(max_size=30).map(lambda b: "Basic " + base64.b64encode(b).decode()),
            st.just("Basic " + base64.b64encode(b"alice:\xed\xa0\x80").decode()),
            printable),
        "Idempotency-Key": latin1,
        "X-Peer-Key": latin1,
        "X-Peer-From": latin1,
        "User-Agent": latin1,
        "Accept": printable,
    })
    valid = st.sampled_from(app["valid"]) if app["valid"] else st.just({})
    return st.tuples(garbage, valid, st.booleans()).map(
        lambda t: {**t[0], **t[1]} if t[2] else t[0])


# -- the apps ----------------------------------------------------------------------------

def _quiet(factory):
    def build():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", guarded.LoopbackProfileWarning)
            app = factory()
        app.config["LABKIT_READ_TIMEOUT"] = 2.0
        return app
    return build


SOCIAL_ROUTES = ["/login", "/logout", "/me", "/posts", "/posts/<x>", "/posts/<x>/react",
                 "/chat", "/chat/replay", "/stats", "/<x>"]
GUARDED_ROUTES = ["/", "/login", "/logout", "/me", "/notes", "/security", "/<x>"]


def _start(name: str, stack: list) -> dict:
    """Start the app ``name`` (and what it needs); return its url, routes, valid headers."""
    def serve(factory, **options):
        server = lk.serve(_quiet(factory), name=f"fuzz-{name}-{len(stack)}", **options)
        stack.append(server)
        return server

    if name in ("social-session", "social-token"):
        mode = name.split("-")[1]
        s = serve(lambda: with_idempotency_keys(
            social.create_app(mode=mode, kdf_iterations=1_000)))
        login = requests.post(s.url + "/login", json=ALICE, timeout=10)
        valid = ([{"Cookie": "sid=" + login.cookies["sid"]}] if mode == "session" else
                 [{"Authorization": "Bearer " + login.json()["token"]}])
        return {"server": s, "routes": SOCIAL_ROUTES, "valid": valid}
    if name in ("guarded-naive", "guarded-defended"):
        profile = name.split("-")[1]
        options = {} if profile == "naive" else {"guess_limit": None,
                                                  "login_failures": 10**9}
        s = serve(lambda: guarded.create_app(profile, **options))
        ua = "fuzzer"
        with requests.Session() as c:
            c.headers["User-Agent"] = ua
            c.post(s.url + "/login", json=ALICE, timeout=10)
            cookie = c.cookies["sid"]
        return {"server": s, "routes": GUARDED_ROUTES,
                "valid": [{"Cookie": "sid=" + cookie, "User-Agent": ua}]}
    if name == "cookie-session":
        s = serve(cookie_session.create_app)
        login = requests.post(s.url + "/login", json=ALICE, timeout=10)
        return {"server": s, "routes": ["/login", "/me", "/logout", "/<x>"],
                "valid": [{"Cookie": "session=" + login.cookies["session"]}]}
    if name == "runtime":
        rt = FunctionRuntime()
        rt.register("echo", "def handler(event, context):\n    return event\n")
        rt.register("count", "def handler(event, context):\n"
                             "    return {'n': context.store.incr('n')}\n")
        # (A handler that raises gets 502 handler_error by design, as Lambda behind a
        # gateway; test_security_apps tests that. Here no handler fails, so any 5xx
        # would be the runtime's own.)
        s = serve(rt.create_app, workers=1)
        return {"server": s, "routes": ["/invoke/<x>", "/invoke/echo", "/invoke/count",
                                        "/functions", "/<x>"], "valid": []}
    if name == "gateway":
        main = serve(uploads.create_upload_server)
        s = serve(lambda: uploads.create_size_gateway(main.url, limit=1024), workers=1)
        return {"server": s, "routes": ["/upload", "/<x>"], "valid": [], "also": [main]}
    if name == "shop":
        group = Replication("invalidate")
        cluster = lk.Cluster(_quiet(group.factory), size=2, balancer="sticky",
                             name="fuzz-shop")
        stack.append(cluster)
        group.connect(cluster)
        s = cluster["s1"]
        login = requests.post(s.url + "/login", json={"user": "ada"}, timeout=10)
        return {"server": s, "also": list(cluster.servers),
                "routes": ["/login", "/cart", "/logout", "/peer/<x>/<x>",
                           "/peer/update/" + login.cookies["sid"], "/<x>"],
                "valid": [{"Cookie": "sid=" + login.cookies["sid"]},
                          {"X-Peer-Key": group.key, "X-Peer-From": "s2"}]}
    raise AssertionError(name)


APPS = ["social-session", "social-token", "guarded-naive", "guarded-defended",
        "cookie-session", "runtime", "gateway", "shop"]


@pytest.mark.parametrize("name", APPS)
def test_two_thousand_malformed_requests_get_no_5xx(name, capfd):
    stack: list = []
    try:
        app = _start(name, stack)
        server = app["server"]
        host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
        statuses: Counter[int] = Counter()
        bad: list = []

        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(method=st.sampled_from(["GET", "POST", "POST", "POST", "PUT", "DELETE",
                                       "PATCH", "OPTIONS", "FUZZ"]),
               path=paths(app["routes"]), head=headers(app), body=bodies())
        def attack(method, path, head, body):
            conn = http.client.HTTPConnection(host, port, timeout=CLIENT_TIMEOUT)
            try:
                started = time.monotonic()
                conn.request(method, path, body=body if method not in ("GET",) or body
                             else None, headers=head)
                answer = conn.getresponse()
                text = answer.read()
                elapsed = time.monotonic() - started
            finally:
                conn.close()
            statuses[answer.status] += 1
            if answer.status >= 500 or b"Traceback" in text or elapsed > CLIENT_TIMEOUT:
                bad.append((method, path, head, body[:80], answer.status, text[:200]))

        attack()
        total = sum(statuses.values())
        fives = sum(n for s, n in statuses.items() if s >= 500)
        print(f"\n{name}: {total} requests, {fives} answers 5xx, statuses "
              f"{dict(sorted(statuses.items()))}")
        assert total >= EXAMPLES * 0.95, (name, total)  # hypothesis ran them all
        assert not bad, f"{name}: {len(bad)} bad answers, first: {bad[0]}"
        for s in [server, *app.get("also", [])]:
            assert s.stats()["errors"] == 0, (s, s.stats())
    finally:
        for thing in reversed(stack):
            thing.close()
    out, err = capfd.readouterr()
    print(out, end="")
    assert "Traceback" not in out + err
