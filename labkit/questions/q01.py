"""Chapter 01 questions: build the pieces of a stateful server yourself.

* ``01.session_store``: a session store with idle expiry and LRU eviction. Checked
  directly with a manual clock, then plugged into the course's social app and driven
  over real HTTP.
* ``01.remember_login``: a login that checks the password once and remembers the
  user server-side.
* ``01.chat_context``: a chat server that keeps each client's context on the server.
"""

from __future__ import annotations

from typing import Any, Callable

import requests
from flask import Flask

from ..apps import social
from ..checks import CheckFailed, probe, question
from ..state.sessions import ManualClock


def _store(make_store: Callable[..., Any], **options: Any) -> Any:
    try:
        return make_store(**options)
    except TypeError as exc:
        if "argument" not in str(exc):
            raise
        raise CheckFailed(
            "The check builds your store as SessionStore(idle_timeout=..., "
            f"max_sessions=..., clock=...), keyword arguments only, but that failed: {exc}."
        ) from None


@question("01.session_store", points=3, hints=[
    "Keep, for each id, the data and the time it was last used (from self.clock()).",
    "In get(): if clock() - last_used >= idle_timeout, delete the entry and return"
    " None; otherwise update last_used. An OrderedDict with move_to_end(sid) keeps"
    " the least recently used entry first.",
    "In new(): after inserting, while len(entries) > max_sessions:"
    " entries.popitem(last=False). Return a copy of the data from get()"
    " (dict(data)) so callers cannot change the stored session without save().",
])
def session_store(SessionStore: Callable[..., Any]) -> str:
    "Build a session store with idle expiry and a size bound with LRU eviction."
    clock = ManualClock()
    store = _store(SessionStore, idle_timeout=60, max_sessions=3, clock=clock)
    a = store.new({"user": "ada"})
    if not isinstance(a, str) or len(a) < 22:
        raise CheckFailed(f"new() should return a long random string id (at least 128"
                          f" bits, e.g. secrets.token_urlsafe(32)), not {a!r}.")
    if store.get(a) != {"user": "ada"}:
        raise CheckFailed(f"get(sid) right after new({{'user': 'ada'}}) returned"
                          f" {store.get(a)!r}, not {{'user': 'ada'}}.")
    if store.get("never-issued") is not None:
        raise CheckFailed("get() of an id the store never issued should return None.")
    store.save(a, {"user": "ada", "n": 1})
    if store.get(a) != {"user": "ada", "n": 1}:
        raise CheckFailed("After save(sid, data), get(sid) should return that data.")
    got = store.get(a)
    got["n"] = 99
    if store.get(a) != {"user": "ada", "n": 1}:
        raise CheckFailed("Changing the dict that get() returned changed the stored"
                          " session. Return a copy, so that only save() changes it.")
    clock.advance(59)
    if store.get(a) is None:
        raise CheckFailed("A session used 59 s ago (idle_timeout=60) should still be"
                          " alive, but get() returned None.")
    clock.advance(59)
    if store.get(a) is None:
        raise CheckFailed("get() should count as activity: a session used 59 s ago"
                          " (and 59 s before that) is still alive, but get() returned"
                          " None. Reset the idle timer on every get().")
    clock.advance(60)
    if store.get(a) is not None:
        raise CheckFailed("A session idle for 60 s (idle_timeout=60) should be gone,"
                          " but get() still returned its data.")
    if len(store) != 0:
        raise CheckFailed(f"len(store) should be 0 once the only session expired, not"
                          f" {len(store)}.")

    b, c, d = store.new({"u": "b"}), store.new({"u": "c"}), store.new({"u": "d"})
    store.get(b)  # b is now the most recently used; c is the least
    e = store.new({"u": "e"})
    alive = {name for name, sid in zip("bcde", (b, c, d, e)) if store.get(sid) is not None}
    if alive != {"b", "d", "e"}:
        raise CheckFailed(
            "With max_sessions=3: create b, c, d, use b, then create e. The least"
            " recently used session (c) should be evicted, leaving b, d and e alive,"
            f" but the alive sessions were {sorted(alive)}.")
    if store.delete(b) is not True or store.get(b) is not None:
        raise CheckFailed("delete(sid) should return True and make the id stop working.")

    # The same store, plugged into the course's social app, over real HTTP.
    clock = ManualClock()
    store = _store(SessionStore, idle_timeout=600, max_sessions=2, clock=clock)
    from ..serving.server import serve
    factory = lambda: social.create_app(store=store, kdf_iterations=1_000)  # noqa: E731
    with serve(factory, name="check-store") as server, requests.Session() as alice, \
            requests.Session() as bob, requests.Session() as ex:
        for client, (user, pw) in ((alice, ("alice", "wonderland")),
                                   (bob, ("bob", "builder"))):
            r = probe.call("POST", server.url + "/login", session=client,
                           json={"username": user, "password": pw}, what="POST /login")
            probe.expect_status(r, 200, f"POST /login as {user} (with your store)")
        probe.expect_status(probe.call("GET", server.url + "/me", session=alice,
                                       what="GET /me"), 200, "GET /me as alice")
        probe.call("POST", server.url + "/login", session=ex,
                   json={"username": "ex", "password": "beach-life"}, what="POST /login")
        r = probe.call("GET", server.url + "/me", session=bob, what="GET /me")
        probe.expect_status(r, 401, "On the social app with max_sessions=2, after"
                            " alice, bob log in, alice is active and ex logs in,"
                            " bob's GET /me")
        clock.advance(600)
        r = probe.call("GET", server.url + "/me", session=alice, what="GET /me")
        probe.expect_status(r, 401, "After 600 idle seconds (idle_timeout=600), GET /me")
    return "Your store expires idle sessions and evicts the least recently used one."


def _login(server: Any, client: requests.Session, user: str, password: str) -> Any:
    return probe.call("POST", server.url + "/login", session=client,
                      json={"username": user, "password": password},
                      what=f"POST /login as {user}")


@question("01.remember_login", points=2, hints=[
    "Keep a dict from a random id (secrets.token_urlsafe(32)) to the username,"
    " created inside make_app, and register it: app.extensions['labkit.sessions'] = it.",
    "In /login: call verify(username, password); if True, make an id, store it,"
    " and response.set_cookie('sid', sid, httponly=True).",
    "In /me: sid = request.cookies.get('sid'); if sid not in sessions return"
    " ({'error': 'login_required'}, 401); else return {'user': sessions[sid]}.",
])
def remember_login(make_app: Callable[[Callable[[str, str], bool]], Flask]) -> str:
    "Write a login that checks the password once and remembers the user on the server."
    calls: list[str] = []
    book = social.PasswordBook(social.DEFAULT_USERS, iterations=1_000)

    def verify(username: str, password: str) -> bool:
        calls.append(username)
        return book.verify(username, password)

    with probe.serve_factory(lambda: make_app(verify), name="check-login") as server, \
            requests.Session() as alice, requests.Session() as bob:
        r = probe.call("GET", server.url + "/me", what="GET /me")
        probe.expect_status(r, 401, "GET /me with no cookie")
        probe.expect_status(_login(server, alice, "alice", "nope"), 401,
                            "POST /login with a wrong password")
        probe.expect_status(_login(server, alice, "alice", "wonderland"), 200,
                            "POST /login with alice's right password")
        probe.expect_status(_login(server, bob, "bob", "builder"), 200,
                            "POST /login with bob's right password")
        calls.clear()
        for client, user in ((alice, "alice"), (bob, "bob")) * 3:
            r = probe.call("GET", server.url + "/me", session=client, what="GET /me")
            probe.expect_status(r, 200, f"GET /me as {user} after logging in")
            got = probe.expect_json(r, "GET /me")
            if not isinstance(got, dict) or got.get("user") != user:
                raise CheckFailed(
                    f"GET /me from {user}'s client should answer {{\"user\": \"{user}\"}}"
                    f" but your app answered {probe.describe(r)}. Each client needs its"
                    " own session: look the user up by the cookie's id, not in one"
                    " shared 'current user' variable.")
        if calls:
            raise CheckFailed(
                f"After login, six GET /me requests called verify {len(calls)} times."
                " A session exists to avoid that: look the user up by the cookie.")
        with _with_cookie("made-up-id") as stranger:
            r = probe.call("GET", server.url + "/me", what="GET /me", session=stranger)
        probe.expect_status(r, 401, "GET /me with a session id the server never issued")
        sessions = server.stats()["sessions"]
        if sessions != 2:
            raise CheckFailed(
                "The server should hold two sessions (alice and bob), but the kit"
                f" counted {sessions}. Keep them on the server and register the dict:"
                " app.extensions['labkit.sessions'] = sessions.")
        for c in alice.cookies:
            if "alice" in c.value:
                raise CheckFailed("The cookie contains the username. Send only a"
                                  " random id; the server keeps who it belongs to.")
    return "One password check per login; after that the server knows you by your id."


def _with_cookie(value: str) -> requests.Session:
    client = requests.Session()
    client.cookies.set("sid", value)
    return client


@question("01.chat_context", points=2, hints=[
    "Give each client a session: if the request has no known 'sid' cookie, create"
    " one (a random id -> an empty history list) and set the cookie on the answer.",
    "Reply with social.reply_to(history, message) BEFORE appending the message to"
    " that client's history.",
    "Keep histories in a dict created inside make_chat_app: {sid: [messages]}."
    " Never put the history in the cookie: the cookie would grow every turn.",
])
def chat_context(make_chat_app: Callable[[], Flask]) -> str:
    "Write a chat server that keeps each client's conversation on the server."
    script = {"ann": ["I like tea", "tea is hot", "green tea please", "more tea"],
              "ben": ["coffee now", "coffee again", "tea never", "coffee coffee"]}
    with probe.serve_factory(make_chat_app, name="check-chat") as server, \
            requests.Session() as ann, requests.Session() as ben:
        clients = {"ann": ann, "ben": ben}
        cookie_sizes: list[int] = []
        for turn in range(4):
            for who in ("ann", "ben"):
                message = script[who][turn]
                r = probe.call("POST", server.url + "/chat", session=clients[who],
                               json={"message": message}, what="POST /chat")
                probe.expect_status(r, 200, f"POST /chat (turn {turn + 1})")
                got = probe.expect_json(r, "POST /chat")
                expected = social.reply_to(script[who][:turn], message)
                reply = got.get("reply") if isinstance(got, dict) else None
                if reply != expected:
                    raise CheckFailed(
                        f"Turn {turn + 1} of {who}'s conversation (the two clients take"
                        f" turns): expected the reply {expected!r} but got {reply!r}."
                        " Each client needs its own history, kept by the server, and"
                        " the reply is computed before the new message is added.")
                cookie_sizes.append(sum(len(c.value) for c in clients[who].cookies))
        if not cookie_sizes[0] or max(cookie_sizes) != min(cookie_sizes):
            raise CheckFailed(
                "The client's cookie should be one session id that never changes,"
                f" but its size went {cookie_sizes[0]} -> {max(cookie_sizes)} bytes."
                " Keep the history on the server, not in the cookie.")
    return "Each conversation lives on the server; the client sends only its new message."
