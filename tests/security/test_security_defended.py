"""security.md (a) 1-8: what the defended session server guarantees, one test each.

Every test talks to a live server on loopback.
"""

from __future__ import annotations

import base64
import warnings

import pytest
import requests

from labkit.apps import guarded
from labkit.state.sessions import ManualClock, new_session_id

ALICE = {"username": "alice", "password": "wonderland"}


@pytest.fixture
def serve_guarded(serve):
    """``serve_guarded(profile="defended", **options)``: the guarded app of chapter 02."""
    return lambda profile="defended", **options: serve(
        lambda: guarded.create_app(profile, **options))


def login(server, session):
    r = session.post(server.url + "/login", json=ALICE)
    assert r.status_code == 200
    return r.cookies["sid"]  # what the server just set


def raw_id(cookie_value: str) -> str:
    return cookie_value.rsplit(".", 1)[0]  # the id before the signature


# 1 ---------------------------------------------------------------------------------
def test_1_ids_are_random_and_long(serve_guarded):
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(base64.urlsafe_b64decode(i + "=")) * 8 >= 128 for i in ids)
    s = serve_guarded()
    seen = set()
    for _ in range(50):  # and the server really uses them
        with requests.Session() as c:
            c.get(s.url + "/")
            seen.add(raw_id(c.cookies["sid"]))
    assert len(seen) == 50 and all(len(i) == 43 for i in seen)


# 2 ---------------------------------------------------------------------------------
def test_2_fresh_id_at_login_and_pre_login_id_dies(serve_guarded):
    s = serve_guarded()
    with requests.Session() as c:
        c.get(s.url + "/")
        pre = c.cookies["sid"]
        post = login(s, c)
        assert raw_id(pre) != raw_id(post)
        r = requests.get(s.url + "/me", cookies={"sid": pre})
    assert (r.status_code, r.json()["error"]) == (401, "unknown_session")


# 3 ---------------------------------------------------------------------------------
def test_3_unissued_ids_are_rejected_not_adopted(serve_guarded):
    s = serve_guarded(signed_cookie=False)  # even without a signature to hide behind
    chosen = "attacker-chosen-id-" + "x" * 30
    r = requests.get(s.url + "/me", cookies={"sid": chosen})
    assert (r.status_code, r.json()["error"]) == (401, "unknown_session")
    assert raw_id(r.cookies["sid"]) != chosen  # a fresh, server-issued id instead
    with requests.Session() as c:
        c.cookies.set("sid", chosen)
        assert login(s, c) != chosen
    assert requests.get(s.url + "/me", cookies={"sid": chosen}).status_code == 401


# 4 ---------------------------------------------------------------------------------
def test_4_logout_revokes(serve_guarded):
    s = serve_guarded()
    with requests.Session() as c:
        stolen = login(s, c)
        assert c.post(s.url + "/logout").status_code == 200
        ua = c.headers["User-Agent"]
    r = requests.get(s.url + "/me", cookies={"sid": stolen}, headers={"User-Agent": ua})
    assert (r.status_code, r.json()["error"]) == (401, "unknown_session")
    assert s.stats()["sessions"] == 1  # only the fresh anonymous id handed out just now


# 5 ---------------------------------------------------------------------------------
def test_5_idle_and_absolute_timeouts_on_the_server(serve_guarded):
    clock = ManualClock()
    s = serve_guarded(clock=clock, idle_timeout=600, absolute_timeout=3600)
    with requests.Session() as c:
        login(s, c)
        clock.advance(599)
        assert c.get(s.url + "/me").status_code == 200
        clock.advance(600)  # idle 600 s
        assert c.get(s.url + "/me").json()["error"] == "unknown_session"
    with requests.Session() as c:
        login(s, c)
        for _ in range(7):  # busy all along...
            clock.advance(500)
            assert c.get(s.url + "/me").status_code == 200
        clock.advance(500)  # ...but 4,000 s old
        assert c.get(s.url + "/me").json()["error"] == "unknown_session"


# 6 ---------------------------------------------------------------------------------
def test_6_cookie_attributes_and_loopback_profile(serve_guarded):
    with pytest.warns(guarded.LoopbackProfileWarning, match="Secure"):
        guarded.create_app("defended")
    s = serve_guarded()
    header = requests.get(s.url + "/").headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Secure" not in header
    assert header.startswith("sid=")

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the production profile does not warn
        production = serve_guarded(loopback=False)
    r = requests.get(production.url + "/")
    header = r.headers["Set-Cookie"]
    assert header.startswith("__Host-sid=") and "Secure" in header and "Path=/" in header
    assert "Domain" not in header
    with requests.Session() as c:  # plain HTTP: the client keeps the cookie but
        assert c.post(production.url + "/login", json=ALICE).status_code == 200
        assert len(c.cookies) == 1
        r = c.get(production.url + "/me")  # never sends it back over http://
        assert "Cookie" not in r.request.headers and r.status_code == 401
    naive = requests.get(serve_guarded("naive").url + "/").headers["Set-Cookie"]
    assert "HttpOnly" not in naive and "SameSite" not in naive


# 7 ---------------------------------------------------------------------------------
def test_7_key_rotation_with_fallbacks(serve_guarded):
    s = serve_guarded(secret_key="old-key")
    with requests.Session() as c:
        old_cookie = login(s, c)
        ua = c.headers["User-Agent"]
    s.app.config.update(SECRET_KEY="new-key", SECRET_KEY_FALLBACKS=["old-key"])
    r = requests.get(s.url + "/me", cookies={"sid": old_cookie}, headers={"User-Agent": ua})
    assert r.status_code == 200  # old cookies still verify...
    resigned = r.cookies["sid"]  # ...and are re-signed with the new key on use
    assert raw_id(resigned) == raw_id(old_cookie) and resigned != old_cookie
    with requests.Session() as c:
        fresh = login(s, c)
    s.app.config.update(SECRET_KEY_FALLBACKS=[])  # the old key is finally dropped
    r = requests.get(s.url + "/me", cookies={"sid": old_cookie}, headers={"User-Agent": ua})
    assert (r.status_code, r.json()["error"]) == (401, "bad_signature")
    assert requests.get(s.url + "/me", cookies={"sid": resigned},
                        headers={"User-Agent": ua}).status_code == 200
    assert requests.get(s.url + "/me", cookies={"sid": fresh}).status_code == 200


# 8 ---------------------------------------------------------------------------------
def test_8_ids_never_in_urls_or_logs(serve_guarded):
    s = serve_guarded()
    with requests.Session() as c:
        cookie = login(s, c)
        c.get(s.url + "/me")
        r = requests.get(s.url + "/me", params={"sid": cookie})  # ids in URLs are ignored
        assert r.status_code == 401 and r.json()["error"] == "login_required"
        for response in (c.get(s.url + "/"), c.post(s.url + "/logout")):
            assert "Location" not in response.headers
    log = s.request_log()
    text = repr(log)
    assert cookie not in text and raw_id(cookie) not in text
    hashed = [e["session"] for e in log if e["session"]]
    assert hashed and all(len(h) == 16 for h in hashed)
