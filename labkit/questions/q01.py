"""Chapter 01 questions: build the pieces of a stateful server yourself.

* ``01.session_store``: a session store with idle expiry and LRU eviction. Checked
  directly with a manual clock (which can also be made slow, to widen the window of
  a race between threads), then plugged into the course's social app and driven
  over real HTTP.
* ``01.remember_login``: a login that checks the password once and remembers the
  user server-side.
* ``01.chat_context``: a chat server that keeps each client's context on the server.

User names, passwords, timeouts, sizes and the order of operations come from the
check's seed (``context().rng``): a failure can be replayed with
``lk.check(..., seed=N)``, and an answer that only fits the notebook's examples fails.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import requests
from flask import Flask

from ..apps import social
from ..checks import CheckFailed, context, probe, question
from ..state.sessions import ManualClock


class _Clock(ManualClock):
    """A manual clock that can also be made slow: each reading then takes ``delay`` s.

    A slow clock widens the gap between a store's "read" and its "write" (stores
    read the clock in between), which is what makes a race between threads show.
    """

    delay = 0.0

    def __call__(self) -> float:
        if self.delay:
            time.sleep(self.delay)
        return super().__call__()


def _store(make_store: Callable[..., Any], **options: Any) -> Any:
    try:
        return make_store(**options)
    except TypeError as exc:
        if "argument" not in str(exc):
            raise
        raise CheckFailed(
            "The check builds your store as SessionStore(idle_timeout=...,"
            f" max_sessions=..., clock=...), keyword arguments only, but that failed: {exc}."
        ) from None


def _alive(store: Any, sid: str) -> bool:
    return store.get(sid) is not None


def _check_ids_and_copies(SessionStore: Callable[..., Any], rng: Any) -> None:
    clock = _Clock()
    store = _store(SessionStore, idle_timeout=None, max_sessions=None, clock=clock)
    users = [probe.random_user(rng) for _ in range(24)]
    ids = []
    for user in users:
        sid = store.new({"user": user})
        ids.append(sid)
        clock.advance(1)
    probe.expect_random_ids(ids, "The ids new() returned", derived_from=tuple(users))
    if probe.predictable_with_random(
            lambda: _store(SessionStore, clock=ManualClock()).new({"user": users[0]})):
        raise CheckFailed(
            "Two fresh stores returned the same first id after Python's `random` module"
            " was seeded the same way and the clock (time.time) was held still: the ids"
            " come from `random`, a counter or the time, and can be predicted. Take them from the `secrets` module, e.g."
            " secrets.token_urlsafe(32).")
    sid, user = rng.choice(list(zip(ids, users)))
    got = store.get(sid)
    if got != {"user": user}:
        raise CheckFailed("get(sid) right after new(data) should return a dict equal to"
                          f" that data, but it returned {type(got).__name__}"
                          f"{'' if got is None else ' with other contents'}.")
    if store.new() is None or store.get(store.new()) != {}:
        raise CheckFailed("new() with no data should start a session whose get()"
                          " returns an empty dict {}.")
    for unknown in ("", probe.random_secret(rng, 43), sid[::-1] if sid[::-1] != sid else "x"):
        if store.get(unknown) is not None:
            raise CheckFailed("get() of an id the store never issued should return None.")
    other = _store(SessionStore, clock=clock)
    if other.get(sid) is not None or len(other) != 0:
        raise CheckFailed(
            "A second SessionStore already knew the first store's sessions: they share"
            " one dict. Create the dict in __init__ (self.entries = ...), not on the"
            " class.")

    data = {"user": user, "n": rng.randrange(100)}
    store.save(sid, data)
    if store.get(sid) != data:
        raise CheckFailed("After save(sid, data), get(sid) should return that data.")
    got = store.get(sid)
    got["n"] = -1
    got["intruder"] = True
    if store.get(sid) != data:
        raise CheckFailed("Changing the dict that get() returned changed the stored"
                          " session. Return a copy, so that only save() changes it.")
    data["n"] = -2
    if store.get(sid) == data:
        raise CheckFailed("Changing a dict after passing it to save() changed the stored"
                          " session. Keep a copy of what save() is given.")
    given = {"user": users[1]}
    fresh = store.new(given)
    given["user"] = "mallory"
    if store.get(fresh) != {"user": users[1]}:
        raise CheckFailed("Changing a dict after passing it to new() changed the stored"
                          " session. Keep a copy of what new() is given.")

    # A store never adopts an id it did not issue: save() on one creates nothing.
    planted = probe.random_secret(rng, 43)
    before = len(store)
    try:
        store.save(planted, {"user": "mallory"})
    except KeyError:
        pass
    if store.get(planted) is not None or len(store) != before:
        raise CheckFailed(
            "save() on an id the store never issued created a session under that id."
            " That lets an attacker choose a victim's session id (fixation): raise"
            " KeyError (or do nothing) for an id that is not live.")

    if store.delete(fresh) is not True or store.get(fresh) is not None:
        raise CheckFailed("delete(sid) of a live session should return True and make"
                          " the id stop working.")
    if store.delete(fresh) is not False or store.delete(planted) is not False:
        raise CheckFailed("delete() of an id that is not live (already deleted, or never"
                          " issued) should return False.")


def _check_expiry(SessionStore: Callable[..., Any], rng: Any) -> None:
    timeout = rng.randrange(30, 900)
    slack = rng.randrange(1, 10)
    clock = _Clock(float(rng.randrange(1000)))
    store = _store(SessionStore, idle_timeout=timeout, max_sessions=None, clock=clock)
    sid = store.new({"user": probe.random_user(rng)})
    clock.advance(timeout - slack)
    if not _alive(store, sid):
        raise CheckFailed("A session used less than idle_timeout seconds ago should still"
                          " be alive, but get() returned None.")
    clock.advance(timeout - slack)
    if not _alive(store, sid):
        raise CheckFailed("get() should count as use: a session read less than"
                          " idle_timeout seconds ago is alive even if it was created"
                          " longer ago, but get() returned None. Reset the idle timer"
                          " on every successful get().")
    clock.advance(timeout)
    if _alive(store, sid):
        raise CheckFailed("A session idle for exactly idle_timeout seconds should be gone"
                          " (idle for idle_timeout seconds *or more*), but get() still"
                          " returned its data.")
    if store.get(sid) is not None:
        raise CheckFailed("Once a session expired, get() must keep returning None.")
    # save() on a session that expired (nobody has asked for it since) must not bring
    # it back: an expired id is dead, like one that was never issued.
    lapsed = store.new({"user": probe.random_user(rng)})
    clock.advance(timeout + slack)
    try:
        store.save(lapsed, {"user": "mallory"})
    except KeyError:
        pass
    if store.get(lapsed) is not None:
        raise CheckFailed("save() on a session idle for idle_timeout seconds or more"
                          " brought it back to life. An expired id is dead: raise"
                          " KeyError (or do nothing), as for an id never issued.")

    # len() counts only live sessions, also ones nobody has asked for since.
    for i in range(rng.randrange(1, 4)):  # these will expire, never asked for again
        store.new({"n": i})
    clock.advance(slack)
    used = [store.new({"n": i}) for i in range(rng.randrange(2, 5))]
    clock.advance(timeout - slack)  # the first ones are now exactly timeout old
    for sid in used:
        store.get(sid)
    clock.advance(slack)
    if len(store) != len(used):
        raise CheckFailed(
            "len(store) should count only live sessions, but it still counted sessions"
            " idle for idle_timeout seconds or more that nobody had asked for since"
            " they expired. Drop (or skip) expired sessions when counting.")

    forever = _store(SessionStore, clock=clock)  # defaults: no timeout, no bound
    many = [forever.new({"n": i}) for i in range(rng.randrange(20, 40))]
    clock.advance(10 ** 7)
    if len(forever) != len(many) or not all(_alive(forever, s) for s in many):
        raise CheckFailed("With the defaults (idle_timeout=None, max_sessions=None) no"
                          " session should ever expire or be evicted.")


def _check_lru(SessionStore: Callable[..., Any], rng: Any) -> None:
    for _round in range(3):
        size = rng.randrange(2, 6)
        clock = _Clock(float(rng.randrange(1000)))
        store = _store(SessionStore, idle_timeout=10 ** 6, max_sessions=size, clock=clock)
        order = []  # least recently used first
        for i in range(size):
            order.append(store.new({"n": i}))
            clock.advance(rng.choice((0.5, 1, 2)))
        if len(store) != size:
            raise CheckFailed(f"After max_sessions new() calls, len(store) should be"
                              f" max_sessions, not {len(store)}.")
        # Touch some sessions, always including the oldest one (last), so that the
        # least recently used is never simply the first created.
        touched = rng.sample(order[1:], rng.randrange(0, size)) + [order[0]]
        for sid in touched:
            store.get(sid)
            order.remove(sid)
            order.append(sid)
            clock.advance(rng.choice((0.5, 1, 2)))
        for _ in range(rng.randrange(1, 3)):
            order.append(store.new({"n": "new"}))
            clock.advance(1)
            victim = order.pop(0)
            if len(store) > size:
                raise CheckFailed("The store held more than max_sessions sessions: evict"
                                  " one when a new session would exceed the bound.")
            if store.get(victim) is not None:
                raise CheckFailed(
                    "When a new session exceeded max_sessions, the session evicted was"
                    " not the least recently used one (a successful get() counts as"
                    " use, and so does new()). Evict the session used longest ago.")
            clock.advance(1)
        for sid in order:
            if store.get(sid) is None:
                raise CheckFailed(
                    "Making room for a new session evicted more than the one least"
                    " recently used session (or the wrong one).")
            clock.advance(1)
        # A deleted session frees its slot: the next new() evicts nobody.
        gone = rng.choice(order)
        store.delete(gone)
        order.remove(gone)
        clock.advance(1)
        order.append(store.new({"n": "after delete"}))
        clock.advance(1)
        if not all(_alive(store, sid) for sid in order):
            raise CheckFailed("After delete() freed a slot, the next new() still evicted a"
                              " session. Count only the sessions the store holds.")


def _check_threads(SessionStore: Callable[..., Any], rng: Any) -> None:
    threads = 8
    clock = _Clock()
    timeout = rng.randrange(30, 300)
    store = _store(SessionStore, idle_timeout=timeout, max_sessions=None, clock=clock)
    try:
        for _attempt in range(3):  # a race may hide once; three tries make it show
            clock.delay = 0.0
            old = store.new({"user": probe.random_user(rng)})
            clock.advance(timeout + 1)
            clock.delay = 0.01
            results = probe.concurrently(lambda i: store.get(old), threads)
            error = probe.first_error(results)
            if error is not None or any(r is not None for r in results):
                raise CheckFailed(
                    f"{threads} threads called get() on the same expired session at the"
                    " same moment, and one of them "
                    + (f"raised {type(error).__name__}" if error else "got its data")
                    + ". Flask serves requests on several threads: guard the store with a"
                    " threading.Lock (`with self.lock:` in every method).")
        before = len(store)
        results = probe.concurrently(lambda i: store.new({"n": i}), threads)
        error = probe.first_error(results)
        if error is not None:
            raise CheckFailed(f"{threads} threads called new() at the same moment and one"
                              f" raised {type(error).__name__}. Guard the store with a"
                              " threading.Lock.")
        if len(set(results)) != threads or len(store) != before + threads:
            raise CheckFailed(
                f"{threads} threads called new() at the same moment, but the store then"
                " held a different number of distinct sessions: some were lost."
                " Guard the store with a threading.Lock.")

        size = rng.randrange(2, 5)
        bounded = _store(SessionStore, idle_timeout=None, max_sessions=size, clock=clock)
        clock.delay = 0.0
        for i in range(size - 1):
            bounded.new({"n": i})
            clock.advance(1)
        clock.delay = 0.01
        results = probe.concurrently(lambda i: bounded.new({"n": i}), threads)
        error = probe.first_error(results)
        if error is not None or len(bounded) > size:
            raise CheckFailed(
                f"{threads} threads called new() at the same moment on a store with"
                " max_sessions set, and "
                + (f"one raised {type(error).__name__}" if error else
                   "the store ended up holding more than max_sessions sessions")
                + ". Check the size and insert under one threading.Lock.")
    finally:
        clock.delay = 0.0


@question("01.session_store", points=3, hints=[
    "Keep, for each id, the data and the time it was last used (from self.clock()),"
    " and one threading.Lock that every method holds while it works.",
    "In get(): if clock() - last_used >= idle_timeout, delete the entry and return"
    " None; otherwise update last_used. An OrderedDict with move_to_end(sid) keeps"
    " the least recently used entry first.",
    "In new(): after inserting, while len(entries) > max_sessions:"
    " entries.popitem(last=False). Store and return copies (dict(data)) so callers"
    " cannot change a session without save(); len() must skip expired sessions.",
])
def session_store(SessionStore: Callable[..., Any]) -> str:
    "Build a session store with idle expiry and a size bound with LRU eviction."
    rng = context().rng
    _check_ids_and_copies(SessionStore, rng)
    _check_expiry(SessionStore, rng)
    _check_lru(SessionStore, rng)
    _check_threads(SessionStore, rng)

    # The same store, plugged into the course's social app, over real HTTP.
    users = probe.random_users(rng, 3)
    timeout = rng.randrange(60, 900)
    clock = _Clock()
    store = _store(SessionStore, idle_timeout=timeout, max_sessions=2, clock=clock)
    from ..serving.server import serve
    factory = lambda: social.create_app(store=store, users=users,  # noqa: E731
                                        kdf_iterations=1_000)
    first, second, third = users
    active, idle = rng.sample([first, second], 2)
    with serve(factory, name="check-store") as server, requests.Session() as a, \
            requests.Session() as b, requests.Session() as c:
        clients = {first: a, second: b, third: c}
        for user in (first, second):
            r = probe.call("POST", server.url + "/login", session=clients[user],
                           json={"username": user, "password": users[user]},
                           what="POST /login")
            probe.expect_status(r, 200, "POST /login (on the social app, with your store)")
            clock.advance(1)
        probe.expect_status(probe.call("GET", server.url + "/me", session=clients[active],
                                       what="GET /me"), 200,
                            "GET /me right after logging in (social app, your store)")
        clock.advance(1)
        r = probe.call("POST", server.url + "/login", session=c,
                       json={"username": third, "password": users[third]}, what="POST /login")
        probe.expect_status(r, 200, "A third POST /login (social app, your store)")
        r = probe.call("GET", server.url + "/me", session=clients[idle], what="GET /me")
        probe.expect_status(r, 401, "On the social app with max_sessions=2, after two"
                            " users logged in, one of them was active and a third logged"
                            " in, GET /me from the inactive one")
        probe.expect_status(probe.call("GET", server.url + "/me", session=clients[active],
                                       what="GET /me"), 200,
                            "On the social app with max_sessions=2, GET /me from the"
                            " user who was active")
        clock.advance(timeout)
        r = probe.call("GET", server.url + "/me", session=clients[active], what="GET /me")
        probe.expect_status(r, 401, "On the social app, after idle_timeout idle seconds,"
                            " GET /me")
    return ("Your store issues unguessable ids, hands out copies, never adopts an"
            " unknown id, expires idle sessions at the timeout, evicts the least"
            " recently used one, survives concurrent threads, and works in the social"
            " app.")


# ------------------------------------------------------------------ remember login
def _login(server: Any, client: requests.Session, user: str, password: str) -> Any:
    return probe.call("POST", server.url + "/login", session=client,
                      json={"username": user, "password": password},
                      what="POST /login")


def _raw_post(url: str, client: requests.Session, *, data: Any = None,
              json: Any = None) -> requests.Response:
    try:
        return client.post(url, data=data, json=json, timeout=probe.TIMEOUT)
    except requests.RequestException:
        raise CheckFailed("POST /login: the server did not answer.") from None


def _me(server: Any, client: requests.Session, what: str) -> Any:
    return probe.call("GET", server.url + "/me", session=client, what=what)


def _expect_user(response: requests.Response, user: str, what: str) -> None:
    probe.expect_status(response, 200, what)
    got = probe.expect_json_object(response, what)
    if got.get("user") != user:
        raise CheckFailed(
            f"{what} should answer {{\"user\": <that client's name>}}, but it named"
            f" {'nobody' if got.get('user') is None else 'another user'}. Each client"
            " needs its own session: look the user up by the cookie's id, not in one"
            " shared 'current user' variable.")


@question("01.remember_login", points=2, hints=[
    "Keep a dict from a random id (secrets.token_urlsafe(32)) to the username,"
    " created inside make_app, and register it: app.extensions['labkit.sessions'] = it.",
    "In /login: call verify(username, password) once; if True, make an id, store it,"
    " and response.set_cookie('sid', sid, httponly=True). Anything else is a 401"
    " (or a 400 for a body that is not {\"username\": str, \"password\": str}).",
    "In /me: sid = request.cookies.get('sid'); if sid not in sessions return"
    " ({'error': 'login_required'}, 401); else return {'user': sessions[sid]}.",
])
def remember_login(make_app: Callable[[Callable[[str, str], bool]], Flask]) -> str:
    "Write a login that checks the password once and remembers the user on the server."
    rng = context().rng
    users = probe.random_users(rng, 6)
    names = list(users)
    calls: list[str] = []
    book = social.PasswordBook(users, iterations=1_000)
    slow = {"delay": 0.0}

    def verify(username: str, password: str) -> bool:
        calls.append(username)
        if slow["delay"]:
            time.sleep(slow["delay"])  # a slow password hash: logins overlap
        return book.verify(username, password)

    with probe.serve_factory(lambda: make_app(verify), name="check-login") as server, \
            requests.Session() as anon:
        probe.expect_status(_me(server, anon, "GET /me"), 401, "GET /me with no cookie")
        first = names[0]
        probe.expect_status(_login(server, anon, first, users[first] + "x"), 401,
                            "POST /login with a wrong password")
        probe.expect_status(_login(server, anon, probe.random_user(rng), users[first]), 401,
                            "POST /login for a user that does not exist")
        probe.expect_status(_me(server, anon, "GET /me"), 401,
                            "GET /me after only failed logins")
        for body, why in ((None, "a body that is not JSON"),
                          ({"username": first}, "no password"),
                          ({"password": users[first]}, "no username"),
                          ({"username": [first], "password": users[first]},
                           "a username that is not a string")):
            what = f"POST /login with {why}"
            r = (_raw_post(server.url + "/login", anon, data="username=" + first)
                 if body is None else _raw_post(server.url + "/login", anon, json=body))
            # 415 (Unsupported Media Type) is also right for a body that is not JSON.
            probe.expect_status(r, (400, 401, 415) if body is None else (400, 401), what)
        if server.stats()["sessions"] not in (0, None):
            raise CheckFailed("Before any successful login the server already held"
                              " sessions: failed logins created some, or your apps share"
                              " one dict (made outside make_app). Only a successful login"
                              " starts a session, in a dict created inside make_app.")

        # Logins that overlap in time, through a slow password check.
        slow["delay"] = 0.05
        order = rng.sample(names, len(names))
        clients = {name: requests.Session() for name in order}
        try:
            calls.clear()
            results = probe.concurrently(
                lambda i: _login(server, clients[order[i]], order[i], users[order[i]]),
                len(order))
            slow["delay"] = 0.0
            error = probe.first_error(results)
            if error is not None:
                raise CheckFailed(f"{len(order)} users logged in at the same time, and one"
                                  f" POST /login failed: {error}")
            for response in results:
                probe.expect_status(response, 200,
                                    "POST /login with the right password (several users"
                                    " logging in at the same time)")
            if len(calls) != len(order):
                raise CheckFailed(
                    f"{len(order)} logins called verify {len(calls)} times: call it"
                    " exactly once per login.")
            sids = []
            for name in order:
                probe.expect_cookie_sent_back(results[order.index(name)], "sid",
                                              "POST /login")
                values = probe.set_cookie_values(results[order.index(name)], "sid")
                if not values:
                    raise CheckFailed("A successful POST /login should set a cookie named"
                                      " 'sid', but the answer had no such Set-Cookie"
                                      " header.")
                sids.append(values[-1])
            # Distinct and not derived from the user now; their strength is measured
            # at the end, over more ids (a few ids say little about their bits).
            probe.expect_random_ids(sids, "The session ids in the 'sid' cookies", bits=0,
                                    derived_from=tuple(order) + tuple(users[n] for n in order))

            calls.clear()
            visits = [name for name in order for _ in range(rng.randrange(2, 4))]
            rng.shuffle(visits)
            for name in visits:
                _expect_user(_me(server, clients[name], "GET /me"), name,
                             "GET /me from a logged-in client")
            results = probe.concurrently(
                lambda i: _me(server, clients[order[i]], "GET /me"), len(order))
            for name, response in zip(order, results):
                if isinstance(response, BaseException):
                    raise CheckFailed(f"Simultaneous GET /me requests: one failed: {response}")
                _expect_user(response, name, "GET /me (several clients at the same time)")
            if calls:
                raise CheckFailed(
                    f"After login, {len(visits) + len(order)} GET /me requests called"
                    f" verify {len(calls)} times. A session exists to avoid that: look"
                    " the user up by the cookie.")
            sessions = server.stats()["sessions"]
            if isinstance(sessions, int) and sessions > len(order):
                raise CheckFailed(
                    "The server should hold one session per logged-in client, but the"
                    " kit counted more sessions than logins: your apps share one dict"
                    " (made outside make_app), or failed logins left sessions behind."
                    " Create the sessions dict inside make_app.")
            if sessions != len(order):
                raise CheckFailed(
                    f"The server should hold one session per logged-in client"
                    f" ({len(order)}), but the kit counted {sessions}. Keep them on the"
                    " server and register the dict: app.extensions['labkit.sessions'] ="
                    " sessions.")

            # Forged cookies: a made-up id, a user's name, an empty value, another
            # user's id with a character changed.
            victim = rng.choice(order)
            sid = sids[order.index(victim)]
            tampered = sid[:-1] + ("A" if sid[-1] != "A" else "B")
            for forged, why in ((probe.random_secret(rng, 43), "a session id the server"
                                 " never issued"), (victim, "a user's name as its id"),
                                ("", "an empty session id"),
                                (tampered, "a real id with one character changed")):
                with requests.Session() as stranger:
                    stranger.cookies.set("sid", forged)
                    r = _me(server, stranger, "GET /me")
                probe.expect_status(r, 401, f"GET /me with {why}")
            # Logging in again gives the same user a second, different session.
            with requests.Session() as again:
                r = _login(server, again, victim, users[victim])
                probe.expect_status(r, 200, "A second POST /login for the same user")
                second = (probe.set_cookie_values(r, "sid") or [None])[-1]
                if second is None or second == sid:
                    raise CheckFailed("Logging in again (from another client) should"
                                      " start a new session with a new id, but the"
                                      " answer reused the old id or set none.")
                _expect_user(_me(server, again, "GET /me"), victim,
                             "GET /me after logging in a second time")
            _expect_user(_me(server, clients[victim], "GET /me"), victim,
                         "GET /me from the first client after the same user logged in"
                         " again elsewhere")
            # Ids from Python's `random` (or a counter, or the clock) repeat when the
            # generator is seeded the same way: `secrets` cannot be replayed.
            def login_sid() -> str | None:
                with requests.Session() as fresh:
                    r = _login(server, fresh, victim, users[victim])
                    return (probe.set_cookie_values(r, "sid") or [None])[-1]

            if probe.predictable_with_random(login_sid):
                raise CheckFailed(
                    "Two logins gave the same session id after Python's `random` module"
                    " was seeded the same way and the clock (time.time) was held still:"
                    " your ids come from `random` or the time, which can be predicted. Use the `secrets` module: secrets.token_urlsafe(32).")
            more = [login_sid() for _ in range(16 - len(sids))]
            probe.expect_random_ids(sids + [m for m in more if m],
                                    "The session ids in the 'sid' cookies")
        finally:
            for c in clients.values():
                c.close()
        # A second app from the same factory has its own, empty sessions.
        with probe.serve_factory(lambda: make_app(verify), name="check-login-2") as other, \
                requests.Session() as visitor:
            visitor.cookies.set("sid", sids[0])
            r = _me(other, visitor, "GET /me")
            if r.status_code != 401:
                raise CheckFailed(
                    "A second server built from make_app accepted a session id issued by"
                    " the first one: they share one dict. Create the sessions dict inside"
                    " make_app.")
    return ("One password check per login; random, unguessable session ids; each client"
            " known by its own id, also when logins overlap; forged ids refused.")


# ------------------------------------------------------------------ chat context
_WORDS = ("tea", "coffee", "cake", "rain", "sun", "bikes", "jazz", "code", "trains",
          "cats", "dogs", "books", "pasta", "snow")


def _message(rng: Any) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randrange(1, 5))]
    if rng.random() < 0.3:
        words[0] = words[0].capitalize() + rng.choice(("!", "?", ","))
    return " ".join(words)


def _chat(server: Any, client: requests.Session, message: Any, what: str) -> Any:
    return probe.call("POST", server.url + "/chat", session=client,
                      json={"message": message} if message is not None else {}, what=what)


def _expect_reply(response: requests.Response, expected: str, what: str) -> None:
    probe.expect_status(response, 200, what)
    got = probe.expect_json_object(response, what)
    if got.get("reply") != expected:
        raise CheckFailed(
            f"{what}: the reply was not social.reply_to(this client's earlier messages,"
            " message). Each client needs its own history, kept by the server, and the"
            " reply is computed before the new message is added.")


def _sid_of(client: requests.Session) -> str | None:
    """The 'sid' the server set on this client (one set by hand has no domain)."""
    mine = [c for c in client.cookies if c.name == "sid"]
    served = [c.value for c in mine if c.domain] or [c.value for c in mine]
    return served[-1] if served else None


@question("01.chat_context", points=2, hints=[
    "Give each client a session: if the request has no known 'sid' cookie, create"
    " one (a random id -> an empty history list) and set the cookie on the answer."
    " Never use an id the client made up.",
    "Reply with social.reply_to(history, message) BEFORE appending the message to"
    " that client's history. A body without a string 'message' gets a 400 and"
    " changes nothing.",
    "Keep histories in a dict created inside make_chat_app: {sid: [messages]}, and"
    " hold a threading.Lock while you read and extend one. Never put the history in"
    " the cookie: the cookie would grow every turn.",
])
def chat_context(make_chat_app: Callable[[], Flask]) -> str:
    "Write a chat server that keeps each client's conversation on the server."
    rng = context().rng
    count = rng.randrange(2, 5)
    turns = rng.randrange(3, 6)
    with probe.serve_factory(make_chat_app, name="check-chat") as server:
        clients = [requests.Session() for _ in range(count)]
        try:
            histories: list[list[str]] = [[] for _ in range(count)]
            first_sid: list[str | None] = [None] * count
            schedule = [i for i in range(count) for _ in range(turns)]
            rng.shuffle(schedule)
            # One turn sends an empty message: "" is a string, so it is a turn too.
            empty_turn = rng.randrange(1, len(schedule))
            for turn, who in enumerate(schedule):
                message = "" if turn == empty_turn else _message(rng)
                r = _chat(server, clients[who], message, "POST /chat")
                probe.expect_cookie_sent_back(r, "sid", "POST /chat")
                _expect_reply(r, social.reply_to(histories[who], message),
                              f"POST /chat (turn {len(histories[who]) + 1} of one of"
                              f" {count} clients whose turns interleave"
                              + (", with an empty message: \"\" is a string, answer it"
                                 if message == "" else "") + ")")
                histories[who].append(message)
                sid = _sid_of(clients[who])
                if not sid:
                    raise CheckFailed("POST /chat should set a cookie named 'sid' holding"
                                      " the session id, but the client has none.")
                if first_sid[who] is None:
                    first_sid[who] = sid
                elif sid != first_sid[who]:
                    raise CheckFailed(
                        "The client's 'sid' cookie changed between turns. Send one"
                        " session id, once, and keep the history on the server, not in"
                        " the cookie.")
            probe.expect_random_ids([s for s in first_sid if s], "The session ids in the"
                                    " 'sid' cookies", bits=0,
                                    derived_from=tuple(m for h in histories for m in h))

            def new_sid() -> str | None:
                with requests.Session() as fresh:
                    r = _chat(server, fresh, _WORDS[0], "POST /chat")
                    return (probe.set_cookie_values(r, "sid") or [None])[-1]

            if probe.predictable_with_random(new_sid):
                raise CheckFailed(
                    "Two new clients got the same session id after Python's `random`"
                    " module was seeded the same way and the clock (time.time) was held"
                    " still: your ids come from `random` or the time, which can be"
                    " predicted. Use the `secrets` module: secrets.token_urlsafe(32).")
            more = [new_sid() for _ in range(16)]
            probe.expect_random_ids([s for s in first_sid + more if s],
                                    "The session ids in the 'sid' cookies")

            # Refused bodies change nothing.
            who = rng.randrange(count)
            for body, why in (({}, "no 'message'"), ({"message": 42}, "a message that is"
                              " not a string"), ("text", "a body that is not JSON")):
                if body == "text":
                    r = clients[who].post(server.url + "/chat", data="message=hello",
                                          timeout=probe.TIMEOUT)
                else:
                    r = probe.call("POST", server.url + "/chat", session=clients[who],
                                   json=body, what="POST /chat")
                allowed = (400, 415, 422) if body == "text" else (400, 422)
                probe.expect_status(r, allowed, f"POST /chat with {why}")
            message = _message(rng)
            _expect_reply(_chat(server, clients[who], message, "POST /chat"),
                          social.reply_to(histories[who], message),
                          "POST /chat after some refused requests (a refused request"
                          " must not change the history)")
            histories[who].append(message)

            # A made-up or stolen-looking id is never adopted.
            chosen = probe.random_secret(rng, 43)
            with requests.Session() as planter, requests.Session() as victim:
                planter.cookies.set("sid", chosen)
                message = _message(rng)
                r = _chat(server, planter, message, "POST /chat")
                _expect_reply(r, social.reply_to([], message),
                              "POST /chat from a client with a made-up 'sid'")
                if chosen in probe.set_cookie_values(r, "sid") or not probe.set_cookie_values(
                        r, "sid"):
                    raise CheckFailed(
                        "A client sent a 'sid' the server never issued, and your server"
                        " kept using that id. Never adopt an id the client chose: give"
                        " it a fresh random one (someone could plant a known id on a"
                        " victim and read their conversation).")
                victim.cookies.set("sid", chosen)
                message = _message(rng)
                _expect_reply(_chat(server, victim, message, "POST /chat"),
                              social.reply_to([], message),
                              "POST /chat from a second client with the same made-up"
                              " 'sid'")

            # One client sends several messages at the same instant: none is lost.
            who = rng.randrange(count)
            burst = [_message(rng) for _ in range(6)]
            senders = [requests.Session() for _ in burst]  # one connection each
            for sender in senders:
                sender.cookies.set("sid", first_sid[who])
            slowed = _slow_reply_to(0.01)
            try:
                results = probe.concurrently(
                    lambda i: _chat(server, senders[i], burst[i], "POST /chat"),
                    len(burst))
            finally:
                slowed()
                for sender in senders:
                    sender.close()
            error = probe.first_error(results)
            if error is not None:
                raise CheckFailed(f"Six simultaneous POST /chat from one client: one"
                                  f" failed ({error}).")
            for response in results:
                probe.expect_status(response, 200, "Six simultaneous POST /chat from"
                                    " one client")
            histories[who].extend(burst)
            message = _message(rng)
            _expect_reply(_chat(server, clients[who], message, "POST /chat"),
                          social.reply_to(histories[who], message),
                          "After one client sent six messages at the same moment, its"
                          " next POST /chat (every message must be in the history: hold"
                          " a threading.Lock while you read and extend it)")
        finally:
            for c in clients:
                c.close()
    return ("Each conversation lives on the server under one random id; the cookie"
            " never grows; made-up ids are not adopted; bad bodies are refused; no"
            " message is lost when they arrive together.")


def _slow_reply_to(delay: float) -> Callable[[], None]:
    """Make ``social.reply_to`` slow for a while, to widen a read-modify-write race.

    A chat view reads the history, calls reply_to, then appends: while reply_to is
    slow, a second request for the same client runs in between. Returns the undo.
    """
    original = social.reply_to

    def slow(history: list[str], message: str) -> str:
        time.sleep(delay)
        return original(history, message)

    social.reply_to = slow

    def undo() -> None:
        social.reply_to = original

    return undo
