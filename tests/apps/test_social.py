"""The social app of chapters 01, 03-06, served for real on loopback."""

from __future__ import annotations

import pytest
import requests

import labkit as lk
from labkit.apps import social
from labkit.apps._json import ApiError
from labkit.state.sessions import ManualClock

ALICE = {"username": "alice", "password": "wonderland"}


@pytest.fixture
def served():
    """Serve a social app built with the given options; close everything after."""
    servers = []

    def start(**options):
        server = lk.serve(lambda: social.create_app(**options), name=f"social{len(servers)}")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def test_login_once_then_react_without_credentials(served):
    s = served(kdf_iterations=2_000)
    with requests.Session() as client:
        assert client.post(s.url + "/login", json=ALICE).status_code == 200
        for _ in range(5):
            r = client.post(s.url + "/posts/1/react", json={"reaction": "HAHA"})
            assert r.status_code == 200 and r.json()["by"] == "alice"
            assert "Authorization" not in r.request.headers  # only the cookie went
        assert r.json()["reactions"] == {"HAHA": 5}
        stats = client.get(s.url + "/stats").json()
    assert stats["verifications"] == 1 and stats["sessions"] == 1
    assert s.stats()["sessions"] == 1  # the kit sees the registered store


def test_basic_mode_checks_the_password_every_time(served):
    s = served(mode="basic", kdf_iterations=2_000)
    auth = ("alice", "wonderland")
    for _ in range(5):
        assert requests.post(s.url + "/posts/1/react", json={"reaction": "HAHA"},
                             auth=auth).status_code == 200
    assert requests.post(s.url + "/posts/1/react", json={"reaction": "HAHA"},
                         auth=("alice", "nope")).json()["error"] == "bad_credentials"
    stats = requests.get(s.url + "/stats").json()
    assert stats["verifications"] == 6 and stats["sessions"] is None
    assert requests.post(s.url + "/chat", json={"message": "hi"}, auth=auth
                         ).json()["error"] == "no_server_context"


def test_errors_are_json_reason_codes(served):
    s = served(kdf_iterations=1_000)
    cases = [
        (dict(data="x"), 415, "expected_json"),
        (dict(data="{", headers={"Content-Type": "application/json"}), 400, "malformed_json"),
        (dict(json=[1]), 422, "wrong_shape"),
        (dict(json={"username": "alice"}), 422, "wrong_shape"),
        (dict(json={"username": "alice", "password": "x"}), 401, "bad_credentials"),
        (dict(json={"username": "nobody", "password": "x"}), 401, "bad_credentials"),
    ]
    for kwargs, status, reason in cases:
        r = requests.post(s.url + "/login", **kwargs)
        assert (r.status_code, r.json()["error"]) == (status, reason), kwargs
    assert requests.get(s.url + "/me").json()["error"] == "login_required"
    r = requests.get(s.url + "/me", cookies={"sid": "made-up"})
    assert (r.status_code, r.json()["error"]) == (401, "unknown_session")
    with requests.Session() as c:
        c.post(s.url + "/login", json=ALICE)
        r = c.post(s.url + "/posts/1/react", json={"reaction": "MEH"})
        assert (r.status_code, r.json()["error"]) == (422, "unknown_reaction")
        assert c.post(s.url + "/posts/99/react", json={"reaction": "HAHA"}).status_code == 404
    assert requests.get(s.url + "/nowhere").json()["error"] == "not_found"


def test_logout_ends_the_session(served):
    s = served(kdf_iterations=1_000)
    with requests.Session() as c:
        c.post(s.url + "/login", json=ALICE)
        stolen = c.cookies["sid"]
        assert c.post(s.url + "/logout").status_code == 200
    r = requests.get(s.url + "/me", cookies={"sid": stolen})
    assert r.status_code == 401 and s.stats()["sessions"] == 0


def test_idle_expiry_with_injected_clock(served):
    clock = ManualClock()
    s = served(idle_timeout=300, clock=clock, kdf_iterations=1_000)
    with requests.Session() as c:
        c.post(s.url + "/login", json=ALICE)
        clock.advance(299)
        assert c.get(s.url + "/me").status_code == 200
        clock.advance(299)  # the previous request reset the idle timer
        assert c.get(s.url + "/me").status_code == 200
        clock.advance(300)
        r = c.get(s.url + "/me")
    assert (r.status_code, r.json()["error"]) == (401, "unknown_session")


def test_memory_grows_with_logged_in_users(served):
    s = served(extra_users=60, kdf_iterations=500)
    sizes = []
    for i in range(1, 61):
        requests.post(s.url + "/login", json={"username": f"user{i}", "password": f"pw-user{i}"})
        if i % 20 == 0:
            sizes.append(requests.get(s.url + "/stats").json()["session_bytes"])
    assert sizes[0] < sizes[1] < sizes[2]
    per_user = [sizes[0] / 20, (sizes[1] - sizes[0]) / 20, (sizes[2] - sizes[1]) / 20]
    assert max(per_user) - min(per_user) <= 2  # linear: the same cost per session


def test_chat_context_on_server_vs_resent_by_client(served):
    s = served(kdf_iterations=1_000)
    messages = [f"message number {i} about tea" for i in range(12)]
    with requests.Session() as c:
        c.post(s.url + "/login", json=ALICE)
        stateful, replay, history = [], [], []
        for m in messages:
            r1 = c.post(s.url + "/chat", json={"message": m})
            r2 = c.post(s.url + "/chat/replay", json={"history": history, "message": m})
            assert r1.json() == r2.json()  # same answer either way
            history.append(m)
            stateful.append(int(r1.headers["X-Request-Bytes"]))
            replay.append(int(r2.headers["X-Request-Bytes"]))
    assert max(stateful) - min(stateful) <= 3  # flat (message lengths differ by a digit)
    assert all(b < a for b, a in zip(replay, replay[1:]))  # grows every turn
    assert replay[-1] > 2 * stateful[-1]
    r = requests.post(s.url + "/chat/replay", json={"history": [1], "message": "x"},
                      cookies={"sid": c.cookies.get("sid") or ""})
    assert r.status_code in (401, 422)


def test_request_bytes_header_matches_the_wire(served):
    s = served(kdf_iterations=1_000)
    r = requests.post(s.url + "/chat/replay", json={"history": [], "message": "x"})
    assert r.status_code == 401
    prepared = r.request
    body = len(prepared.body)
    head = sum(len(k) + len(v) + 4 for k, v in prepared.headers.items())
    # requests adds Host and the request line below what PreparedRequest shows.
    assert body + head < int(r.headers["X-Request-Bytes"]) < body + head + 80


def test_mode_seam_accepts_an_auth_object(served):
    class HeaderAuth(social.BasicAuth):
        """A toy mode: trust an X-User header (never do this for real)."""

        name = "header"

        def identify(self, req):
            user = req.headers.get("X-User")
            if not user:
                raise ApiError(401, "login_required", "no X-User")
            return social.Caller(user=user)

        def login(self, user, response):
            return {"hint": "send X-User"}

    s = served(mode=HeaderAuth(), kdf_iterations=1_000)
    assert requests.post(s.url + "/login", json=ALICE).json() == {
        "mode": "header", "user": "alice", "hint": "send X-User"}
    r = requests.post(s.url + "/posts/2/react", json={"reaction": "WOW"}, headers={"X-User": "bob"})
    assert r.json()["by"] == "bob"
    with pytest.raises(ValueError):
        social.create_app(mode="telepathy")


def test_reply_is_deterministic_and_uses_context():
    assert social.reply_to([], "") == "turn 1: say something!"
    assert social.reply_to(["b a"], "a") == "turn 2: your favourite word so far is 'a' (2 times)"
