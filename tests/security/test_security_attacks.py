"""security.md (b) 9-12: the attacks of chapter 02, naive app vs defended app, live."""

from __future__ import annotations

import base64
import json

import requests

from labkit.apps import cookie_session, guarded
from labkit.apps.clients import client

ALICE = {"username": "alice", "password": "wonderland"}
VICTIM_UA = "Mozilla/5.0 (Victim)"


def steal(server):
    """Alice logs in from 127.0.0.1; return her session cookie as an attacker would."""
    with client(user_agent=VICTIM_UA) as alice:
        r = alice.post(server.url + "/login", json=ALICE)
        assert r.status_code == 200
        assert alice.get(server.url + "/me").status_code == 200  # her honest use
        return r.cookies["sid"]


def test_9_stolen_cookie_replay_and_detection(serve):
    naive = serve(lambda: guarded.create_app("naive"))
    stolen = steal(naive)
    with client(source="127.0.0.2", user_agent="Mallory/1.0") as mallory:
        r = mallory.get(naive.url + "/me", cookies={"sid": stolen})
    assert r.json() == {"user": "alice"}  # the naive app cannot tell the difference
    # ...but its log can: one session hash, two addresses and two user agents.
    by_session: dict[str, set] = {}
    for entry in naive.request_log():
        if entry["session"]:
            by_session.setdefault(entry["session"], set()).add(
                (entry["client"], entry["user_agent"]))
    assert sorted(by_session.values(), key=len)[-1] == {
        ("127.0.0.1", VICTIM_UA), ("127.0.0.2", "Mallory/1.0")}

    defended = serve(lambda: guarded.create_app("defended"))
    stolen = steal(defended)
    with client(source="127.0.0.2", user_agent="Mallory/1.0") as mallory:
        r = mallory.get(defended.url + "/me", cookies={"sid": stolen})
    assert (r.status_code, r.json()["error"]) == (401, "session_binding_mismatch")
    # The binding revoked the session for the victim too: safe, at a cost.
    with client(user_agent=VICTIM_UA) as alice:
        assert alice.get(defended.url + "/me", cookies={"sid": stolen}).status_code == 401
    # Its limit: an attacker who copies the user agent as well gets in.
    stolen = steal(defended)
    with client(source="127.0.0.2", user_agent=VICTIM_UA) as mallory:
        assert mallory.get(defended.url + "/me", cookies={"sid": stolen}).json() == {
            "user": "alice"}


def fixation(server):
    """Mallory gets a pre-login id, plants it on Alice via a link, Alice logs in."""
    with requests.Session() as mallory:
        planted = mallory.get(server.url + "/").cookies["sid"]
    with requests.Session() as alice:  # the link Mallory sent: ...?sid=<planted>
        alice.post(server.url + "/login", params={"sid": planted}, json=ALICE)
    with requests.Session() as mallory:  # Mallory, with her own copy of the id
        return mallory.get(server.url + "/me", cookies={"sid": planted})


def test_10_session_fixation(serve):
    assert fixation(serve(lambda: guarded.create_app("naive"))).json() == {"user": "alice"}
    r = fixation(serve(lambda: guarded.create_app("defended")))
    assert r.status_code == 401
    # Fixation through a planted *cookie* fails too, thanks to the fresh id at login.
    s = serve(lambda: guarded.create_app("defended", ids_in_url=True, rotate_on_login=False))
    assert fixation(s).json() == {"user": "alice"}  # turn rotation off: it works again


def test_11_flask_cookie_is_readable_not_writable_and_not_revocable(serve):
    s = serve(lambda: cookie_session.create_app())
    with requests.Session() as c:
        c.post(s.url + "/login", json={"username": "bob", "password": "builder"})
        cookie = c.cookies["session"]
        payload = cookie.split(".")[0]
        assert json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))) == {
            "user": "bob"}  # anyone can read it
        forged_payload = base64.urlsafe_b64encode(b'{"user":"alice"}').decode().rstrip("=")
        forged = ".".join([forged_payload, *cookie.split(".")[1:]])
        r = requests.get(s.url + "/me", cookies={"session": forged})
        assert (r.status_code, r.json()["error"]) == (401, "login_required")  # not writable
        c.post(s.url + "/logout")
        assert "session" not in c.cookies
    r = requests.get(s.url + "/me", cookies={"session": cookie})
    assert r.json() == {"user": "bob"}  # the copy outlives "logout"


def test_11_flask_key_rotation_with_fallbacks(serve):
    s = serve(lambda: cookie_session.create_app(secret_key="k1"))
    with requests.Session() as c:
        c.post(s.url + "/login", json={"username": "bob", "password": "builder"})
        old = c.cookies["session"]
    s.app.config.update(SECRET_KEY="k2", SECRET_KEY_FALLBACKS=["k1"])
    assert requests.get(s.url + "/me", cookies={"session": old}).status_code == 200
    with requests.Session() as c:
        c.post(s.url + "/login", json={"username": "bob", "password": "builder"})
        new = c.cookies["session"]
    s.app.config.update(SECRET_KEY_FALLBACKS=[])
    assert requests.get(s.url + "/me", cookies={"session": old}).status_code == 401
    assert requests.get(s.url + "/me", cookies={"session": new}).status_code == 200


def test_12_guessing_ids(serve):
    import secrets

    naive = serve(lambda: guarded.create_app("naive", reject_unknown_ids=True))
    with client(source="127.0.0.3") as guesser:
        hits = [guesser.get(naive.url + "/me", cookies={"sid": secrets.token_urlsafe(32)})
                for _ in range(200)]
    assert not any(r.status_code == 200 for r in hits)

    defended = serve(lambda: guarded.create_app("defended", signed_cookie=False))
    codes = []
    with client(source="127.0.0.3") as guesser:
        for _ in range(30):
            guesser.cookies.clear()  # drop the fresh id the server handed back
            codes.append(guesser.get(defended.url + "/me",
                                     cookies={"sid": secrets.token_urlsafe(32)}).status_code)
    assert codes[:20] == [401] * 20 and set(codes[21:]) == {429}
    flagged = requests.get(defended.url + "/security").json()["flagged_clients"]
    assert flagged == ["127.0.0.3"]
    with requests.Session() as honest:  # another address is not affected
        assert honest.post(defended.url + "/login", json=ALICE).status_code == 200
        assert honest.get(defended.url + "/me").status_code == 200
