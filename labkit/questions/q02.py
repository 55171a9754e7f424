"""Chapter 02 questions: defend a session, and catch a stolen one.

* ``02.rotate_on_login`` and ``02.revoking_logout`` check the same login app
  factory, ``make_login_app(store, verify)``, for two separate defences.
* ``02.hijack_detector``: a function over a kit request log.
* ``02.rotating_signer``: a signer whose newest key signs and whose older keys
  still verify, plugged into a small live app and rotated.
"""

from __future__ import annotations

from typing import Any, Callable

import requests
from flask import Flask, jsonify, request

from ..apps import guarded, social
from ..apps.clients import client
from ..checks import CheckFailed, probe, question
from ..serving.server import serve
from ..state.sessions import MemorySessionStore

ALICE = {"username": "alice", "password": "wonderland"}


def _login_app(make_login_app: Callable[..., Flask], name: str):
    store = MemorySessionStore()
    book = social.PasswordBook(social.DEFAULT_USERS, iterations=1_000)
    return store, probe.serve_factory(lambda: make_login_app(store, book.verify), name=name)


def _cookie(response: requests.Response, what: str) -> str:
    value = response.cookies.get("sid")
    if not value:
        raise CheckFailed(f"{what} should set a cookie named 'sid', but your app's answer"
                          f" had no such Set-Cookie header ({probe.describe(response)}).")
    return value


@question("02.rotate_on_login", points=2, hints=[
    "At login you may already have a session id (from GET /). Do not reuse it.",
    "Call store.rotate(old_sid) or store.delete(old_sid) followed by store.new(...):"
    " either way the pre-login id must stop working.",
    "Set the NEW id in the cookie: response.set_cookie('sid', new_sid, httponly=True).",
])
def rotate_on_login(make_login_app: Callable[..., Flask]) -> str:
    "Write a login that issues a fresh session id, so that fixation fails."
    store, server_cm = _login_app(make_login_app, "check-rotate")
    with server_cm as server, requests.Session() as mallory, client() as alice:
        r = probe.call("GET", server.url + "/", session=mallory, what="GET /")
        probe.expect_status(r, 200, "GET / (a first visit)")
        planted = _cookie(r, "GET / for a visitor without a session")
        if planted not in store:
            raise CheckFailed("GET / should start a session in the store it was given"
                              " (store.new({})) and put its id in the 'sid' cookie.")
        alice.cookies.set("sid", planted)  # Mallory plants her id on Alice
        r = probe.call("POST", server.url + "/login", session=alice, json=ALICE,
                       what="POST /login")
        probe.expect_status(r, 200, "POST /login with alice's password")
        fresh = _cookie(r, "POST /login")
        if fresh == planted:
            raise CheckFailed(
                "POST /login kept the id the visitor already had. That is session"
                " fixation: whoever planted that id is now logged in as alice. Issue a"
                " fresh id at login.")
        r = probe.call("GET", server.url + "/me", what="GET /me",
                       session=_jar(mallory, planted))
        if r.status_code != 401:
            raise CheckFailed(
                "After alice logged in, the pre-login id still answers GET /me with"
                f" {probe.describe(r)}. Kill it: rotate or delete it in the store.")
        r = probe.call("GET", server.url + "/me", session=_jar(mallory, fresh),
                       what="GET /me")
        probe.expect_status(r, 200, "GET /me with the id set at login")
        if probe.expect_json(r, "GET /me") != {"user": "alice"}:
            raise CheckFailed(f"GET /me should answer {{\"user\": \"alice\"}}, but your app"
                              f" answered {probe.describe(r)}.")
        r = probe.call("POST", server.url + "/login", json={**ALICE, "password": "x"},
                       what="POST /login")
        probe.expect_status(r, 401, "POST /login with a wrong password")
    return "A planted id dies at login; the user gets one nobody else has seen."


def _jar(session: requests.Session, sid: str) -> requests.Session:
    session.cookies.clear()
    session.cookies.set("sid", sid)
    return session


@question("02.revoking_logout", points=2, hints=[
    "Clearing the cookie only makes Alice's browser forget it. A thief has a copy.",
    "In POST /logout, delete the session from the store: store.delete(sid).",
])
def revoking_logout(make_login_app: Callable[..., Flask]) -> str:
    "Write a logout that revokes the session on the server."
    store, server_cm = _login_app(make_login_app, "check-logout")
    with server_cm as server, client() as alice, requests.Session() as thief:
        r = probe.call("POST", server.url + "/login", session=alice, json=ALICE,
                       what="POST /login")
        probe.expect_status(r, 200, "POST /login with alice's password")
        copy = _cookie(r, "POST /login")
        probe.expect_status(probe.call("GET", server.url + "/me", session=alice,
                                       what="GET /me"), 200, "GET /me after login")
        r = probe.call("POST", server.url + "/logout", session=alice, what="POST /logout")
        probe.expect_status(r, (200, 204), "POST /logout")
        r = probe.call("GET", server.url + "/me", session=_jar(thief, copy), what="GET /me")
        if r.status_code != 401:
            raise CheckFailed(
                "After POST /logout, a copy of alice's cookie still answers GET /me"
                f" with {probe.describe(r)}. Logout must delete the session on the"
                " server, not only ask the browser to forget the cookie.")
        if copy in store:
            raise CheckFailed("The session is still in the store after logout.")
    return "Logout ends the session everywhere, copies included."


def _stolen_log(*, thief_agent: str, thief_source: str = "127.0.0.2") -> tuple[list, str, set]:
    """Run a naive server with two honest users and a thief; return its log."""
    import hashlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", guarded.LoopbackProfileWarning)
        server = serve(lambda: guarded.create_app("naive"), name="check-hijack")
    with server:
        cookies = {}
        for user, password, agent in (("alice", "wonderland", "Alice/1.0"),
                                      ("bob", "builder", "Bob/2.0"),
                                      ("bob", "builder", "Bob/2.0")):  # bob twice
            with client(user_agent=agent) as browser:
                browser.get(server.url + "/")  # a pre-login visit, no cookie yet
                browser.post(server.url + "/login",
                             json={"username": user, "password": password})
                for _ in range(3):
                    browser.get(server.url + "/notes")
                cookies.setdefault(user, browser.cookies["sid"])
        with client(source=thief_source, user_agent=thief_agent,
                    keep_cookies=False) as thief:
            thief.get(server.url + "/notes", cookies={"sid": cookies["alice"]})
        log = server.request_log()
    stolen = hashlib.sha256(cookies["alice"].encode()).hexdigest()[:16]
    honest = {e["session"] for e in log if e["session"]} - {stolen}
    return log, stolen, honest


@question("02.hijack_detector", points=3, hints=[
    "Group the log entries by entry['session'] (skip entries whose session is None).",
    "For each session, collect the set of (entry['client'], entry['user_agent']) pairs.",
    "Return the set of sessions with more than one pair: same session, another client.",
])
def hijack_detector(find_hijacks: Callable[[list[dict]], Any]) -> str:
    "Write a detector that finds stolen sessions in a server's request log."
    for thief_agent, story in (("Mallory/1.0", "with her own user agent"),
                               ("Alice/1.0", "copying alice's user agent, from 127.0.0.2")):
        log, stolen, honest = _stolen_log(thief_agent=thief_agent)
        found = find_hijacks(log)
        try:
            found = set(found)
        except TypeError:
            raise CheckFailed(f"find_hijacks should return a set of session hashes, not"
                              f" {type(found).__name__}.") from None
        if None in found:
            raise CheckFailed("Your result contains None: requests without a session"
                              " cookie (session None) are not a session; skip them.")
        if stolen not in found:
            raise CheckFailed(f"A thief replayed alice's session {story}, but your"
                              " detector did not flag it. Compare the (client,"
                              " user_agent) pairs seen for each session.")
        wrongly = found & honest
        if wrongly:
            raise CheckFailed(f"Your detector flagged {len(wrongly)} honest session(s)"
                              " (several requests from one and the same client are"
                              " normal). Flag a session only when a second client uses it.")
        if found - {stolen}:
            raise CheckFailed(f"Your detector flagged values that are not sessions of"
                              f" this log: {sorted(map(str, found - {stolen}))[:3]}.")
    clean = [e for e in log if e["session"] != stolen]
    if set(find_hijacks(clean)):
        raise CheckFailed("On a log with only honest users, your detector still flagged"
                          " something; it should return an empty set.")
    return "Stolen session found; honest users left alone."


def _expect_verifies(signer: Any, token: str, message: str) -> None:
    try:
        ok = signer.unsign(token) == "alice"
    except ValueError:
        ok = False
    if not ok:
        raise CheckFailed(message)


def _signed_app(make_signer: Callable[[list[str]], Any], keys: list[str]) -> Flask:
    """A tiny app whose session cookie is signed by the learner's signer."""
    app = Flask("check_signer")

    @app.post("/login")
    def login():
        response = jsonify(user="alice")
        response.set_cookie("sid", make_signer(list(keys)).sign("alice"))
        return response

    @app.get("/me")
    def me():
        try:
            user = make_signer(list(keys)).unsign(request.cookies.get("sid", ""))
        except ValueError:
            return {"error": "bad_signature"}, 401
        return {"user": user}

    return app


@question("02.rotating_signer", points=3, hints=[
    "sign(value) returns value + '.' + a signature made with the LAST key;"
    " unsign tries every key.",
    "A signature: hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()."
    " Compare with hmac.compare_digest, never ==.",
    "unsign: value, _, sig = token.rpartition('.'); if no key gives sig, raise"
    " ValueError('bad signature'); else return value.",
])
def rotating_signer(RotatingSigner: Callable[[list[str]], Any]) -> str:
    "Write a signer whose newest key signs while older keys still verify."
    old = RotatingSigner(["k-2024"]).sign("alice")
    if not isinstance(old, str) or "alice" not in old or old == "alice":
        raise CheckFailed(f"sign('alice') should return 'alice' plus a signature, as a"
                          f" string, not {old!r}.")
    _expect_verifies(RotatingSigner(["k-2024", "k-2025"]), old,
                     "With keys ['k-2024', 'k-2025'] (the old key kept as a fallback), a"
                     " value signed with 'k-2024' should still verify.")
    new = RotatingSigner(["k-2024", "k-2025"]).sign("alice")
    _expect_verifies(RotatingSigner(["k-2025"]), new,
                     "A value signed with keys ['k-2024', 'k-2025'] must be signed with"
                     " the newest (last) key 'k-2025', so that it still verifies once"
                     " 'k-2024' is dropped.")
    for token, keys, why in (
        (old, ["k-2025"], "signed with 'k-2024', checked with ['k-2025'] only"),
        (old.replace("alice", "mallo"), ["k-2024"], "a changed value"),
        (old[:-2] + ("00" if not old.endswith("00") else "11"), ["k-2024"],
         "a changed signature"),
        ("alice", ["k-2024"], "no signature at all"),
    ):
        try:
            got = RotatingSigner(keys).unsign(token)
        except ValueError:
            continue
        raise CheckFailed(f"unsign should raise ValueError for {why}, but returned {got!r}.")

    keys = ["k-2024"]
    with probe.serve_factory(lambda: _signed_app(RotatingSigner, keys),
                             name="check-signer") as server, \
            requests.Session() as early, requests.Session() as sleeper:
        for c in (early, sleeper):
            probe.expect_status(probe.call("POST", server.url + "/login", session=c,
                                           what="POST /login"), 200, "POST /login")
        keys[:] = ["k-2024", "k-2025"]  # rotate: new key signs, old verifies
        r = probe.call("GET", server.url + "/me", session=sleeper, what="GET /me")
        probe.expect_status(r, 200, "During the grace period, an old cookie on GET /me")
        probe.call("POST", server.url + "/login", session=early, what="POST /login")
        keys[:] = ["k-2025"]  # the old key is dropped
        r = probe.call("GET", server.url + "/me", session=sleeper, what="GET /me")
        probe.expect_status(r, 401, "After the old key is dropped, a cookie signed with it")
        r = probe.call("GET", server.url + "/me", session=early, what="GET /me")
        probe.expect_status(r, 200, "After the old key is dropped, a cookie re-issued"
                            " during the grace period")
    return "New key signs, old keys verify until you drop them."
