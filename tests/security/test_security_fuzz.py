"""security.md (c) 16, 17, 19, 20: bad input gets its 4xx and a JSON reason, never a 5xx.

Hundreds of malformed requests (hypothesis plus a fixed table) go over real HTTP to
the defended app; each gets the status and reason code its kind of mistake deserves.
"""

from __future__ import annotations

import http.client
import json
import warnings
from urllib.parse import urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import labkit as lk
from labkit.apps import guarded

COOKIE_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E)


def send(url: str, method: str, path: str, *, body: bytes = b"",
         headers: dict[str, str] | None = None) -> tuple[int, dict]:
    """One request on its own connection; return (status, JSON body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        response = conn.getresponse()
        status, raw = response.status, response.read()
    finally:
        conn.close()
    return status, json.loads(raw)  # every answer must be JSON


def test_hundreds_of_malformed_requests_get_clean_4xx():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", guarded.LoopbackProfileWarning)
        server = lk.serve(lambda: guarded.create_app("defended", guess_limit=None),
                          name="fuzz")
    try:
        conn = http.client.HTTPConnection(urlsplit(server.url).hostname,
                                          urlsplit(server.url).port, timeout=10)
        conn.request("POST", "/login", body=b'{"username":"alice","password":"wonderland"}',
                     headers={"Content-Type": "application/json", "User-Agent": "fuzz"})
        r = conn.getresponse()
        r.read()
        cookie = r.getheader("Set-Cookie").split(";")[0]
        conn.close()
        auth = {"Cookie": cookie, "User-Agent": "fuzz"}
        seen: list[tuple[str, int, str]] = []

        def expect(kind: str, status: int, body: dict, allowed: dict[int, set[str]]) -> None:
            seen.append((kind, status, body.get("error", "")))
            assert status < 500, (kind, status, body)
            assert status in allowed and body.get("error") in allowed[status], (kind, status, body)

        @settings(max_examples=120, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.text(COOKIE_CHARS, min_size=1, max_size=200))
        def garbage_cookie(value):  # 16, 17
            status, body = send(server.url, "GET", "/me",
                                headers={"Cookie": f"sid={value}", "User-Agent": "fuzz"})
            expect("cookie", status, body, {401: {"bad_signature", "login_required",
                                                  "unknown_session"}})

        @settings(max_examples=60, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.sampled_from(["text/plain", "application/x-www-form-urlencoded",
                                "multipart/form-data", "application/xml", ""]),
               st.binary(max_size=300))
        def wrong_content_type(ctype, raw):  # 19: 415
            headers = {**auth, "Content-Type": ctype} if ctype else dict(auth)
            status, body = send(server.url, "POST", "/notes", body=raw, headers=headers)
            expect("content-type", status, body, {415: {"expected_json"}})

        @settings(max_examples=80, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.binary(min_size=1, max_size=300))
        def malformed_json(raw):  # 19: 400 (or 422 when the bytes happen to be JSON)
            status, body = send(server.url, "POST", "/notes", body=raw,
                                headers={**auth, "Content-Type": "application/json"})
            expect("json", status, body, {400: {"malformed_json"}, 422: {"wrong_shape"}})

        json_values = st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner,
                                                                        max_size=4),
            max_leaves=10)

        @settings(max_examples=80, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(json_values)
        def wrong_shape(value):  # 19: 422 (a few shapes are right: then 201)
            status, body = send(server.url, "POST", "/notes", body=json.dumps(value).encode(),
                                headers={**auth, "Content-Type": "application/json"})
            ok = (isinstance(value, dict) and isinstance(value.get("text"), str)
                  and 0 < len(value["text"].strip()) and len(value["text"]) <= 500)
            if ok:
                assert status == 201
            else:
                expect("shape", status, body, {422: {"wrong_shape"}})

        garbage_cookie()
        wrong_content_type()
        malformed_json()
        wrong_shape()

        # 20: bodies over the limit and huge headers, a fixed table.
        for size in (16 * 1024 + 1, 20_000, 60_000):
            status, body = send(server.url, "POST", "/notes", body=b"x" * size,
                                headers={**auth, "Content-Type": "application/json"})
            expect("body", status, body, {413: {"body_too_large"}})
        for size in (9_000, 20_000, 50_000):
            status, body = send(server.url, "GET", "/me",
                                headers={**auth, "X-Padding": "p" * size})
            expect("headers", status, body, {431: {"headers_too_large"}})
        for n in (60, 90):
            many = {f"X-H{i}": "v" * 200 for i in range(n)}
            status, body = send(server.url, "GET", "/me", headers={**auth, **many})
            expect("headers", status, body, {431: {"headers_too_large"}})

        assert len(seen) >= 300
        assert not any(status >= 500 for _, status, _ in seen)
        assert server.stats()["errors"] == 0  # the kit counted no 5xx either
    finally:
        server.close()


def test_cookies_never_exceed_4096_bytes():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", guarded.LoopbackProfileWarning)
        server = lk.serve(lambda: guarded.create_app("defended"), name="cookie-size")
    try:
        status, _ = send(server.url, "GET", "/")
        conn = http.client.HTTPConnection(urlsplit(server.url).hostname,
                                          urlsplit(server.url).port, timeout=10)
        conn.request("POST", "/login", body=b'{"username":"alice","password":"wonderland"}',
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        conn.close()
        assert status == 200 and len(r.getheader("Set-Cookie")) < 4096
    finally:
        server.close()
