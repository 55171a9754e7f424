"""Token mode of the social app (labkit/state/tokens.py), served for real on loopback.

security.md b13-15 and c18: alg none in any casing, algorithm confusion, a weak secret
refused, logout fixed by a deny-list; every bad token is a 401 with a reason, never a 500.
"""

from __future__ import annotations

import time

import jwt
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

import labkit as lk
from labkit.state import tokens
from labkit.apps import social
from labkit.state.redis import RedisServer
from labkit.state.sessions import ManualClock

ALICE = {"username": "alice", "password": "wonderland"}
KEY = tokens.new_key()


def token_app(**options):
    return lambda: social.create_app(mode=tokens.TokenAuth(KEY, **options), kdf_iterations=1_000)


def login(url: str, who: dict = ALICE) -> dict:
    r = requests.post(url + "/login", json=who)
    assert r.status_code == 200, r.text
    return {"Authorization": "Bearer " + r.json()["token"]}


@pytest.fixture
def served():
    servers = []

    def start(factory, name="tokens"):
        server = lk.serve(factory, name=f"{name}{len(servers)}")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def claims(**changes) -> dict:
    now = int(time.time())
    base = {"iss": tokens.ISSUER, "aud": tokens.AUDIENCE, "sub": "alice", "iat": now,
            "exp": now + 600, "jti": "some-id"}
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


# -------------------------------------------------------------------------- verify()
def test_issue_then_verify_round_trip():
    token = tokens.issue("alice", KEY, ttl=60)
    got = tokens.verify(token, KEY)
    assert got["sub"] == "alice" and got["exp"] - got["iat"] == 60
    assert set(got) == {"iss", "aud", "sub", "iat", "exp", "jti"}
    assert tokens.issue("alice", KEY) != tokens.issue("alice", KEY)  # a fresh jti each time


def sign(payload, key=KEY, algorithm="HS256"):
    return jwt.encode(payload, key, algorithm=algorithm)


def _tampered():
    head, _, signature = sign(claims()).split(".")
    return f"{head}.{tokens.forge({}, claims(sub='ex')).split('.')[1]}.{signature}"


BAD_TOKENS = [
    ("payload changed", _tampered, "bad_signature"),
    ("signature removed", lambda: sign(claims()).rsplit(".", 1)[0] + ".", "bad_signature"),
    ("another key", lambda: sign(claims(), tokens.new_key()), "bad_signature"),
    ("alg none", lambda: jwt.encode(claims(), None, algorithm="none"), "alg_not_allowed"),
    *[(f"alg {alg}", lambda alg=alg: tokens.forge({"alg": alg, "typ": "JWT"}, claims()),
       "alg_not_allowed") for alg in ("None", "NONE", "nOnE", "")],
    ("HS512", lambda: sign(claims(), tokens.new_key() * 2, "HS512"), "alg_not_allowed"),
    ("no alg", lambda: tokens.forge({"typ": "JWT"}, claims(), key=KEY), "alg_not_allowed"),
    ("expired", lambda: sign(claims(exp=int(time.time()) - 5)), "token_expired"),
    ("issued in the future", lambda: sign(claims(iat=int(time.time()) + 600)),
     "token_not_yet_valid"),
    ("nbf in the future", lambda: sign(claims(nbf=int(time.time()) + 600)),
     "token_not_yet_valid"),
    ("wrong audience", lambda: sign(claims(aud="payments")), "wrong_audience"),
    ("wrong issuer", lambda: sign(claims(iss="evil")), "wrong_issuer"),
    *[(f"no {name}", lambda name=name: sign(claims(**{name: None})), "missing_claim")
      for name in ("exp", "iat", "sub", "jti", "aud", "iss")],
    ("exp a string", lambda: sign(claims(exp="tomorrow")), "malformed_token"),
    ("exp a bool", lambda: sign(claims(exp=True)), "malformed_token"),
    ("exp NaN", lambda: tokens.forge({"alg": "HS256"}, claims(exp=float("nan")), key=KEY),
     "malformed_token"),
    ("sub a number", lambda: sign(claims(sub=5)), "invalid_token"),
    ("one segment", lambda: "hello", "malformed_token"),
    ("two segments", lambda: "abc.def", "malformed_token"),
    ("bad base64", lambda: "e$$.e$$.e$$", "malformed_token"),
    ("payload not JSON", lambda: _signed_raw(b"not json"), "malformed_token"),
    ("payload a list", lambda: _signed_raw(b"[1, 2]"), "malformed_token"),
]


def _signed_raw(payload: bytes) -> str:
    import base64
    import hashlib
    import hmac

    b64 = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode()  # noqa: E731
    header = b64(b'{"alg":"HS256"}')
    signing_input = f"{header}.{b64(payload)}"
    return signing_input + "." + b64(hmac.new(KEY, signing_input.encode(), hashlib.sha256).digest())


@pytest.mark.parametrize("name,make,reason", BAD_TOKENS, ids=[b[0] for b in BAD_TOKENS])
def test_verify_rejects_with_a_reason(name, make, reason):
    with pytest.raises(tokens.TokenRejected) as caught:
        tokens.verify(make(), KEY)
    assert caught.value.reason == reason and reason in tokens.REASONS


def test_every_bad_token_is_a_401_with_its_reason_on_a_live_server(served):
    server = served(token_app())
    for name, make, reason in BAD_TOKENS:
        r = requests.get(server.url + "/me", headers={"Authorization": "Bearer " + make()})
        assert (r.status_code, r.json()["error"]) == (401, reason), name
        assert r.headers["WWW-Authenticate"] == (
            f'Bearer error="invalid_token", error_description="{reason}"')
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Basic YTpi"}):
        r = requests.get(server.url + "/me", headers=headers)
        assert (r.status_code, r.json()["error"]) == (401, "token_required")
        assert r.headers["WWW-Authenticate"] == "Bearer"
    assert server.stats()["errors"] == 0  # not one 500


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(max_size=200),
    st.lists(st.text(alphabet="ABCxyz019-_=+/$.", max_size=40), min_size=1, max_size=5)
    .map(".".join),
    st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=5),
                                                    st.floats(), st.none(), st.booleans()),
                    max_size=6).map(lambda d: tokens.forge({"alg": "HS256"}, d, key=KEY)),
))
def test_garbage_is_always_a_token_rejected(garbage):
    try:
        tokens.verify(garbage, KEY)
    except tokens.TokenRejected as exc:
        assert exc.reason in tokens.REASONS


def test_bearer_scheme_is_case_insensitive(served):
    server = served(token_app())
    token = login(server.url)["Authorization"].split()[1]
    r = requests.get(server.url + "/me", headers={"Authorization": "bearer " + token})
    assert r.json() == {"mode": "token", "user": "alice"}


# ------------------------------------------------------------------------- the mode
def test_token_mode_checks_the_password_once_and_remembers_nothing(served):
    server = served(lambda: social.create_app(mode="token", kdf_iterations=1_000))
    answer = requests.post(server.url + "/login", json=ALICE).json()
    assert answer["mode"] == "token" and answer["token_type"] == "Bearer"
    headers = {"Authorization": "Bearer " + answer["token"]}
    for _ in range(5):
        r = requests.post(server.url + "/posts/1/react", json={"reaction": "HAHA"}, headers=headers)
        assert r.json()["by"] == "alice"
    stats = requests.get(server.url + "/stats").json()
    assert stats["verifications"] == 1 and stats["sessions"] is None
    assert server.stats()["sessions"] is None
    # create_app's default clock is time.monotonic; token times must be Unix times.
    assert abs(tokens.verify(answer["token"], tokens.DEFAULT_KEY)["iat"] - time.time()) < 5
    assert requests.post(server.url + "/chat", json={"message": "hi"},
                         headers=headers).json()["error"] == "no_server_context"
    assert requests.post(server.url + "/chat/replay", json={"history": ["hi"], "message": "hi"},
                         headers=headers).json()["turn"] == 2


def test_bad_configurations_are_refused():
    with pytest.raises(tokens.WeakKeyError, match="32 random bytes"):
        tokens.TokenAuth("sunshine")
    with pytest.raises(lk.LabkitError):
        tokens.TokenAuth(b"x" * 31)
    assert tokens.TokenAuth(b"x" * 32).key == b"x" * 32
    with pytest.raises(ValueError):
        tokens.TokenAuth(KEY, algorithm="none")
    with pytest.raises(TypeError):
        tokens.TokenAuth(12345)
    with pytest.raises(ValueError):
        tokens.new_key("ES256")


def test_a_weak_secret_is_cracked_offline_and_forges_any_user(served):
    server = served(lambda: social.create_app(
        mode=tokens.TokenAuth("sunshine", allow_weak_key=True), kdf_iterations=1_000))
    token = login(server.url)["Authorization"].split()[1]
    words = ["password", "secret", "sunshine"]
    found = next(w for w in words if _signed_with(token, w))
    forged = tokens.forge({"alg": "HS256", "typ": "JWT"},
                          {**jwt.decode(token, options={"verify_signature": False}), "sub": "ex"},
                          key=found)
    r = requests.get(server.url + "/me", headers={"Authorization": "Bearer " + forged})
    assert found == "sunshine" and r.json()["user"] == "ex"
    strong = login(served(token_app()).url)["Authorization"].split()[1]
    assert not any(_signed_with(strong, w) for w in words)


def _signed_with(token: str, secret: str) -> bool:
    """The attacker's offline test: does HMAC-SHA256 with ``secret`` give the signature?"""
    import base64
    import hashlib
    import hmac

    signing_input, _, signature = token.rpartition(".")
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return hmac.compare_digest(mac, base64.urlsafe_b64decode(signature + "=="))


def test_rs256_and_algorithm_confusion(served):
    private = tokens.new_key("RS256")
    auth = tokens.TokenAuth(private, algorithm="RS256")
    server = served(lambda: social.create_app(mode=tokens.TokenAuth(private, algorithm="RS256"),
                                              kdf_iterations=1_000))
    headers = login(server.url)
    assert requests.get(server.url + "/me", headers=headers).json()["user"] == "alice"
    token = headers["Authorization"].split()[1]
    pem = auth.public_key
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert tokens.verify(token, pem, algorithm="RS256")["sub"] == "alice"  # public key verifies
    assert tokens.TokenAuth(KEY).public_key is None
    forged = tokens.forge({"alg": "HS256", "typ": "JWT"},
                          {**jwt.decode(token, options={"verify_signature": False}), "sub": "ex"},
                          key=pem)
    r = requests.get(server.url + "/me", headers={"Authorization": "Bearer " + forged})
    assert (r.status_code, r.json()["error"]) == (401, "alg_not_allowed")
    with pytest.raises(jwt.InvalidKeyError):  # PyJWT's second guard
        jwt.decode(forged, pem, algorithms=["RS256", "HS256"], audience=tokens.AUDIENCE)
    hs_token = tokens.issue("alice", KEY)
    r = requests.get(server.url + "/me", headers={"Authorization": "Bearer " + hs_token})
    assert r.json()["error"] == "alg_not_allowed"


def test_expiry_follows_the_injected_clock_with_leeway(served):
    clock = ManualClock(time.time())
    start = clock()
    server = served(token_app(ttl=600, leeway=30, clock=clock))
    headers = login(server.url)
    seen = []
    for seconds in (599, 629, 631):
        clock.advance(start + seconds - clock())
        r = requests.get(server.url + "/me", headers=headers)
        seen.append((r.status_code, r.json().get("error")))
    assert seen == [(200, None), (200, None), (401, "token_expired")]


def test_any_server_of_a_round_robin_cluster_verifies_even_after_a_crash():
    with lk.Cluster(token_app(), size=3, balancer="round_robin", isolation="process",
                    name="test-tokens") as cluster:
        headers = login(cluster.url)
        served_by = []
        for i in range(12):
            if i == 4:
                cluster.kill("s2")
            r = requests.get(cluster.url + "/me", headers=headers)
            assert r.status_code == 200 and r.json()["user"] == "alice"
            served_by.append(r.headers["X-Served-By"])
    assert set(served_by[:4]) == {"s1", "s2", "s3"} and "s2" not in served_by[4:]


def test_a_token_costs_more_bytes_than_a_session_cookie(served):
    token_server = served(token_app())
    session_server = served(lambda: social.create_app(kdf_iterations=1_000), name="session")
    with requests.Session() as browser:
        browser.post(session_server.url + "/login", json=ALICE)
        cookie = int(browser.get(session_server.url + "/me").headers["X-Request-Bytes"])
    token = int(requests.get(token_server.url + "/me", headers=login(token_server.url))
                .headers["X-Request-Bytes"])
    assert 150 < token - cookie < 400


# ------------------------------------------------------------------ logout, deny-lists
def test_logout_without_a_deny_list_leaves_the_token_valid(served):
    server = served(token_app())
    headers = login(server.url)
    assert requests.post(server.url + "/logout", headers=headers).json() == {"logged_out": True}
    assert requests.get(server.url + "/me", headers=headers).status_code == 200


def test_deny_list_revokes_one_token_and_logout_everywhere_all(served):
    clock = ManualClock(time.time())
    deny = tokens.DenyList()
    server = served(token_app(clock=clock, deny=deny, ttl=600))
    phone, laptop = login(server.url), login(server.url)
    requests.post(server.url + "/logout", headers=phone)
    assert requests.get(server.url + "/me", headers=phone).json()["error"] == "token_revoked"
    assert requests.get(server.url + "/me", headers=laptop).status_code == 200
    assert len(deny) == 1
    requests.post(server.url + "/logout?everywhere=1", headers=laptop)
    assert requests.get(server.url + "/me", headers=laptop).json()["error"] == "token_revoked"
    assert len(deny) == 2 and deny.generation("alice") == 1
    fresh = login(server.url)  # the same second: a counter, not a time, tells them apart
    assert requests.get(server.url + "/me", headers=fresh).status_code == 200
    assert requests.get(server.url + "/me", headers=laptop).json()["error"] == "token_revoked"
    # logging out with a bad token, or none, revokes nothing and is no error
    assert requests.post(server.url + "/logout", headers={"Authorization": "Bearer x"}
                         ).status_code == 200
    clock.advance(602)  # every revoked token has expired: the list forgets them
    assert requests.get(server.url + "/me", headers=login(server.url)).status_code == 200
    assert len(deny) == 1  # only the generation count stays, for good


def test_deny_list_purges_in_expiry_order():
    deny = tokens.DenyList()
    for i in range(100):
        deny.revoke(f"t{i}", exp=1000 + i)
    deny.revoke("t0", exp=5000)  # revoked again with a later exp: kept until then
    assert deny.is_revoked("t50", now=1050) is False and len(deny) == 50
    assert deny.is_revoked("t0", now=1200) and len(deny) == 1
    assert deny.revoke_user("bob") == 1 and deny.generation("bob") == 1
    deny.is_revoked("x", now=20.0)
    assert deny.generation("bob") == 1 and repr(deny) == "<DenyList 2 entries>"


def test_a_deny_list_per_server_revokes_on_one_server_only():
    def make():
        return social.create_app(mode=tokens.TokenAuth(KEY, deny=tokens.DenyList()),
                                 kdf_iterations=1_000)

    with lk.Cluster(make, size=3, name="test-deny-local") as cluster:
        headers = login(cluster.url)
        requests.post(cluster.url + "/logout", headers=headers)
        codes = sorted(requests.get(cluster.url + "/me", headers=headers).status_code
                       for _ in range(3))
    assert codes == [200, 200, 401]


def test_a_shared_redis_deny_list_revokes_everywhere_and_fails_closed():
    with RedisServer(name="test-deny") as store:
        make = lambda: social.create_app(  # noqa: E731
            mode=tokens.TokenAuth(KEY, deny=tokens.RedisDenyList(store)), kdf_iterations=1_000)
        with lk.Cluster(make, size=3, name="test-deny-shared") as cluster:
            phone, laptop = login(cluster.url), login(cluster.url)
            requests.post(cluster.url + "/logout", headers=phone)
            assert [requests.get(cluster.url + "/me", headers=phone).json()["error"]
                    for _ in range(3)] == ["token_revoked"] * 3
            assert all(requests.get(cluster.url + "/me", headers=laptop).status_code == 200
                       for _ in range(3))
            (key,) = store.client().keys("deny:jti:*")
            assert 0 < store.client().ttl(key) <= 900
            assert len(tokens.RedisDenyList(store)) == 1
            requests.post(cluster.url + "/logout?everywhere=1", headers=laptop)
            revoked = requests.get(cluster.url + "/me", headers=laptop).json()
            assert revoked["error"] == "token_revoked"
            assert store.client().get("deny:user:alice") == "1"
            fresh = login(cluster.url)  # at once: no need to wait for the next second
            assert all(requests.get(cluster.url + "/me", headers=fresh).status_code == 200
                       for _ in range(3))

            store.kill()
            down = requests.get(cluster.url + "/me", headers=laptop)
            assert (down.status_code, down.json()["error"]) == (503, "store_unavailable")
            out = requests.post(cluster.url + "/logout", headers=phone)
            assert (out.status_code, out.json()["error"]) == (503, "store_unavailable")
            refused = requests.post(cluster.url + "/login", json=ALICE)  # no count, no token
            assert (refused.status_code, refused.json()["error"]) == (503, "store_unavailable")
            store.revive()  # empty: the revocations are forgotten
            assert requests.get(cluster.url + "/me", headers=phone).status_code == 200


def test_redis_deny_list_entries_expire_with_the_token():
    with RedisServer(name="test-deny-expiry") as store:
        deny = tokens.RedisDenyList(store.client(), prefix="d:")
        deny.revoke("gone", exp=time.time() - 10)      # already expired: never stored
        revoked_at = time.time()
        deny.revoke("soon", exp=revoked_at + 1)
        assert not deny.is_revoked("gone", time.time()) and deny.is_revoked("soon", time.time())
        deadline = time.monotonic() + 10.0
        while len(deny):  # Redis drops the entry by itself once the token has expired
            assert time.monotonic() < deadline, "the deny-list entry never expired"
            time.sleep(0.05)
        assert time.time() - revoked_at >= 0.9 and not deny.is_revoked("soon", time.time())
        assert repr(deny) == "<RedisDenyList prefix='d:'>"
