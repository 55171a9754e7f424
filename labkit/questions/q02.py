"""Chapter 02 questions: defend a session, and catch a stolen one.

* ``02.rotate_on_login`` and ``02.revoking_logout`` check the same login app
  factory, ``make_login_app(store, verify)``, for two separate defences.
* ``02.hijack_detector``: a function over a kit request log.
* ``02.rotating_signer``: a signer whose newest key signs and whose older keys
  still verify, plugged into a small live app and rotated.

Users, passwords, keys, values, the thief's address and user agent and the shape
of each log come from the check's seed (``context().rng``), so a failure can be
replayed with ``lk.check(..., seed=N)`` and an answer tuned to the notebook's
examples fails.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import warnings
from typing import Any, Callable

import requests
from flask import Flask, jsonify, request

from ..apps import guarded, social
from ..apps.clients import client
from ..checks import CheckFailed, context, probe, question
from ..serving.server import serve
from ..state.sessions import MemorySessionStore


class _WatchedStore(MemorySessionStore):
    """The kit's store, with a look inside for the check: which ids hold a user."""

    def users(self) -> dict[str, str | None]:
        """``{sid: user or None}`` for every live session."""
        with self._lock:
            self.purge()
            return {sid: json.loads(e.payload).get("user")
                    for sid, e in self._entries.items()}


def _login_app(make_login_app: Callable[..., Flask], users: dict[str, str], name: str,
               slow: dict | None = None) -> tuple[_WatchedStore, Any]:
    store = _WatchedStore()
    book = social.PasswordBook(users, iterations=1_000)

    def verify(username: str, password: str) -> bool:
        if slow and slow.get("delay"):
            # A slow hash: logins overlap in time (staggered: by user, 0-30 ms more).
            extra = (sum(map(ord, str(username))) % 7) * 0.005 if slow.get("stagger") else 0.0
            time.sleep(slow["delay"] + extra)
        return book.verify(username, password)

    return store, probe.serve_factory(lambda: make_login_app(store, verify), name=name)


def _sid(response: requests.Response, what: str) -> str:
    probe.expect_cookie_sent_back(response, "sid", what)
    values = probe.set_cookie_values(response, "sid")
    if not values or not values[-1]:
        raise CheckFailed(f"{what} should set a cookie named 'sid', but your app's answer"
                          f" had no such Set-Cookie header ({probe.describe(response)}).")
    return values[-1]


def _as(sid: str | None) -> requests.Session:
    """A fresh client that sends exactly this 'sid' (or none)."""
    c = requests.Session()
    if sid is not None:
        c.cookies.set("sid", sid)
    return c


def _call(method: str, server: Any, path: str, sid: str | None, *, json: Any = None,
          what: str) -> requests.Response:
    with _as(sid) as c:
        return probe.call(method, server.url + path, session=c, json=json, what=what)


def _who(server: Any, sid: str | None) -> str | None:
    """The user GET /me reports for this id, or None for a 401."""
    r = _call("GET", server, "/me", sid, what="GET /me")
    probe.expect_status(r, (200, 401), "GET /me")
    if r.status_code == 401:
        return None
    data = probe.expect_json_object(r, "GET /me")
    if not isinstance(data.get("user"), str):
        raise CheckFailed("GET /me should answer 200 with JSON {\"user\": <name>} for a"
                          " logged-in session and 401 otherwise, but your app answered"
                          f" {probe.describe(r)}.")
    return data["user"]


def _visit(server: Any, sid: str | None = None) -> str:
    r = _call("GET", server, "/", sid, what="GET /")
    probe.expect_status(r, 200, "GET / (a first visit)")
    return _sid(r, "GET / for a visitor without a valid session")


def _log_in(server: Any, sid: str | None, user: str, password: str, what: str) -> str:
    r = _call("POST", server, "/login", sid, json={"username": user, "password": password},
              what="POST /login")
    probe.expect_status(r, 200, what)
    return _sid(r, what)


@question("02.rotate_on_login", points=2, hints=[
    "At login you may already have a session id (from GET /). Do not reuse it, and"
    " never put a user into an id you did not just create.",
    "Call store.rotate(old_sid) or store.delete(old_sid) followed by store.new(...):"
    " either way the pre-login id must stop working.",
    "Set the NEW id in the cookie: response.set_cookie('sid', new_sid, httponly=True).",
])
def rotate_on_login(make_login_app: Callable[..., Flask]) -> str:
    "Write a login that issues a fresh session id, so that fixation fails."
    rng = context().rng
    users = probe.random_users(rng, 6)
    names = list(users)
    slow: dict = {"delay": 0.0}
    store, server_cm = _login_app(make_login_app, users, "check-rotate", slow)
    with server_cm as server:
        planted = _visit(server)
        if planted not in store:
            raise CheckFailed("GET / should start a session in the store it was given"
                              " (store.new({})) and put its id in the 'sid' cookie.")
        count = len(store)
        r = _call("GET", server, "/", planted, what="GET /")
        probe.expect_status(r, 200, "GET / with a valid session")
        if len(store) != count or planted not in store:
            raise CheckFailed("GET / from a visitor who already has a valid session"
                              " should keep that session, not start another.")
        made_up = probe.random_secret(rng, 43)
        visitor = _visit(server, made_up)
        if visitor == made_up or made_up in store:
            raise CheckFailed("GET / with a 'sid' the server never issued adopted that id."
                              " Give the visitor a new id from store.new({}).")

        victim, other = rng.sample(names, 2)
        r = _call("POST", server, "/login", planted,
                  json={"username": victim, "password": users[other]}, what="POST /login")
        probe.expect_status(r, 401, "POST /login with a wrong password")
        if _who(server, planted) is not None or victim in store.users().values():
            raise CheckFailed("A POST /login with a wrong password logged the session in."
                              " Check the password before you touch the session.")

        # Mallory got `planted` from GET / and planted it on the victim's browser.
        fresh = _log_in(server, planted, victim, users[victim],
                        "POST /login with the right password")
        if fresh == planted:
            raise CheckFailed(
                "POST /login kept the id the visitor already had. That is session"
                " fixation: whoever planted that id is now logged in as that user."
                " Issue a fresh id at login.")
        if _who(server, planted) is not None or planted in store:
            raise CheckFailed(
                "After the login, the pre-login id still works (GET /me, or it is still"
                " in the store). Kill it: rotate or delete it in the store.")
        if fresh not in store:
            raise CheckFailed("The id set at login is not a session of the store the app"
                              " was given: create it with store.new(...) or"
                              " store.rotate(...).")
        if _who(server, fresh) != victim:
            raise CheckFailed("GET /me with the id set at login should answer"
                              " {\"user\": <the name that logged in>}, but it did not.")

        # An id the attacker made up (never issued) is not adopted either.
        chosen = probe.random_secret(rng, 43)
        target = rng.choice([n for n in names if n != victim])
        got = _log_in(server, chosen, target, users[target],
                      "POST /login with a made-up 'sid' cookie and the right password")
        if got == chosen or chosen in store or _who(server, chosen) is not None:
            raise CheckFailed("POST /login from a client whose 'sid' the server never"
                              " issued kept that id. Issue a fresh id at login.")

        # Logging in over someone else's live session: that id dies too.
        switch = _log_in(server, got, victim, users[victim],
                         "POST /login from a client already logged in as another user")
        if switch == got or _who(server, got) is not None:
            raise CheckFailed("A login from a client already logged in as someone else"
                              " kept the old id alive. Every login kills the id it came"
                              " with and issues a fresh one.")
        if _who(server, switch) != victim:
            raise CheckFailed("After logging in over another user's session, GET /me"
                              " should name the user who logged in last.")

        # Several victims log in at the same moment, each with a planted id: twice,
        # once with equally slow password checks and once with staggered ones, so
        # that a shared variable is overwritten between one request's read and write.
        fresh_ids = []
        for staggered in (False, True):
            crowd = rng.sample(names, 4)
            plants = [_visit(server) for _ in crowd]
            slow["delay"] = 0.03
            slow["stagger"] = staggered
            try:
                results = probe.concurrently(
                    lambda i: _call("POST", server, "/login", plants[i],
                                    json={"username": crowd[i], "password": users[crowd[i]]},
                                    what="POST /login"), len(crowd))
            finally:
                slow["delay"] = 0.0
                slow["stagger"] = False
            error = probe.first_error(results)
            if error is not None:
                raise CheckFailed(f"Several users logged in at the same time and one POST /login"
                                  f" failed: {error}")
            for name, planted_id, response in zip(crowd, plants, results):
                probe.expect_status(response, 200, "POST /login (several at the same time)")
                new_id = _sid(response, "POST /login (several at the same time)")
                fresh_ids.append(new_id)
                if new_id == planted_id or _who(server, planted_id) is not None:
                    raise CheckFailed("When several users logged in at the same time, one"
                                      " pre-login id was kept or stayed alive.")
                if _who(server, new_id) != name:
                    raise CheckFailed("When several users logged in at the same time, one of"
                                      " them got a session of another user. Keep per-request"
                                      " data in local variables, never in shared ones.")
        probe.expect_random_ids(fresh_ids + [fresh, switch], "The ids set at login")
    return ("Every login kills the id it came with (planted, made up, or another user's)"
            " and issues a fresh one; a wrong password logs nobody in.")


@question("02.revoking_logout", points=2, hints=[
    "Clearing the cookie only makes Alice's browser forget it. A thief has a copy.",
    "In POST /logout, delete the session from the store: store.delete(sid). Delete only"
    " that one session: other people stay logged in.",
])
def revoking_logout(make_login_app: Callable[..., Flask]) -> str:
    "Write a logout that revokes the session on the server."
    rng = context().rng
    users = probe.random_users(rng, 6)
    names = list(users)
    store, server_cm = _login_app(make_login_app, users, "check-logout")
    with server_cm as server:
        sids = {name: _log_in(server, None, name, users[name], "POST /login")
                for name in names}
        for name in names:
            if _who(server, sids[name]) != name:
                raise CheckFailed("GET /me right after login should answer"
                                  " {\"user\": <the name that logged in>}.")
        # Requests with no session, a made-up one, or a user's name as the id must not
        # log anybody out.
        for sid, why in ((None, "no cookie"), (probe.random_secret(rng, 43), "a made-up"
                         " 'sid'"), (rng.choice(names), "a user's name as the 'sid'")):
            r = _call("POST", server, "/logout", sid, what="POST /logout")
            probe.expect_status(r, (200, 204, 401), f"POST /logout with {why}")
            if any(_who(server, sids[n]) != n for n in names):
                raise CheckFailed(f"A POST /logout with {why} logged somebody out. Only"
                                  " the session named by the request's own cookie ends.")

        victim = rng.choice(names)
        copy = sids[victim]
        held_before = len(store)
        r = _call("POST", server, "/logout", copy, what="POST /logout")
        probe.expect_status(r, (200, 204), "POST /logout from a logged-in client")
        if _who(server, copy) is not None:
            raise CheckFailed(
                "After POST /logout, a copy of the user's cookie still answers GET /me."
                " Logout must delete the session on the server, not only ask the browser"
                " to forget the cookie.")
        if copy in store:
            raise CheckFailed("The session is still in the store after logout (perhaps"
                              " emptied, but alive). Delete it: store.delete(sid).")
        if len(store) >= held_before or victim in store.users().values():
            raise CheckFailed("After logout the store still held the user's session under"
                              " another id (moved, e.g. by rotate, rather than deleted)."
                              " Logout ends the session: store.delete(sid).")
        for name in names:
            if name != victim and _who(server, sids[name]) != name:
                raise CheckFailed("One user's logout logged other users out too. Delete"
                                  " only the session of the request's own cookie.")
        again = _log_in(server, None, victim, users[victim], "POST /login after logout")
        if again == copy or _who(server, again) != victim:
            raise CheckFailed("Logging in again after a logout should give a new, working"
                              " session.")

        # Logouts at the same moment: some users, and two copies of one session.
        leaving = rng.sample([n for n in names if n != victim], 3)
        staying = [n for n in names if n not in leaving and n != victim]
        order = leaving + [leaving[0]]
        results = probe.concurrently(
            lambda i: _call("POST", server, "/logout", sids[order[i]], what="POST /logout"),
            len(order))
        error = probe.first_error(results)
        if error is not None:
            raise CheckFailed(f"Simultaneous POST /logout requests: one failed ({error}).")
        for response in results:
            probe.expect_status(response, (200, 204, 401),
                                "POST /logout (several at the same time, two of them"
                                " with copies of one cookie)")
        if any(_who(server, sids[n]) is not None or sids[n] in store for n in leaving):
            raise CheckFailed("After several users logged out at the same time, one of"
                              " their sessions still worked.")
        if any(_who(server, sids[n]) != n for n in staying):
            raise CheckFailed("Several users logging out at the same time logged out"
                              " someone who did not.")
    return ("Logout deletes that session on the server (copies die too), leaves"
            " everybody else logged in, and bad logouts end nothing.")


# ------------------------------------------------------------------ hijack detector
def _hash(rng: Any) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(16))


_AGENTS = ("Firefox/128.0", "Chrome/131.0", "Safari/17.6", "Edge/130.0", "curl/8.5.0",
           "Brave/1.73", "Opera/114.0", "Vivaldi/7.0", "")


def _synthetic_log(rng: Any, force: str | None = None
                   ) -> tuple[list[dict], set[str], dict[str, str]]:
    """A made-up request log: honest users (some behind one address, some logging in
    twice, some very busy) and 0-3 stolen sessions, each replayed by a thief who
    differs from the owner in address, user agent or both.

    Returns the log, the stolen hashes and, per stolen hash, how the thief differed.
    """
    start = 1_700_000_000.0 + rng.randrange(10 ** 6)
    entries: list[dict] = []
    addresses = [f"127.0.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(4)]
    owners: list[tuple[str, tuple[str, str]]] = []
    for _user in range(rng.randrange(3, 7)):
        device = (rng.choice(addresses), rng.choice(_AGENTS))
        for _login in range(rng.choice((1, 1, 2))):  # some log in twice
            session = _hash(rng)
            owners.append((session, device))
            entries.append({"client": device[0], "user_agent": device[1], "session": None,
                            "method": "GET", "path": "/"})
            for _ in range(rng.choice((1, 2, 5, 12))):
                entries.append({"client": device[0], "user_agent": device[1],
                                "session": session, "method": "GET", "path": "/notes"})
    stolen: dict[str, str] = {}
    victims = rng.sample(owners, rng.randrange(1 if force else 0, min(3, len(owners)) + 1))
    if force == "agent-case":  # the forced victim needs an agent with letters to swap
        victims.sort(key=lambda owner: owner[1][1] == "")
        if victims[0][1][1] == "":
            victims[0] = (victims[0][0], (victims[0][1][0], "Firefox/128.0"))
            for entry in entries:
                if entry["session"] == victims[0][0]:
                    entry["user_agent"] = "Firefox/128.0"
    for index, (session, (address, agent)) in enumerate(victims):
        how = force if force and index == 0 else rng.choice(("address", "agent", "both"))
        how_kind = how
        thief_address = address if how == "agent" else rng.choice(
            [a for a in addresses if a != address] + ["127.0.0.66"])
        thief_agent = agent if how == "address" else rng.choice(
            [a for a in _AGENTS if a != agent])
        if how == "agent-case":  # same address, the agent differs only in case
            thief_address = address
            thief_agent = (agent.swapcase() if agent.swapcase() != agent
                           else agent + "x")
        status = 200  # the replay works (whether a refused one counts is not asked)
        for _ in range(rng.randrange(1, 3)):
            entries.append({"client": thief_address, "user_agent": thief_agent,
                            "session": session, "method": "GET", "path": "/notes",
                            "status": status})
        stolen[session] = how_kind
    rng.shuffle(entries)  # then put them in time order with increasing times
    for i, entry in enumerate(entries):
        # Requests with a session all succeed (the naive server accepts a stolen
        # one too); only some cookie-less requests are refused.
        entry.setdefault("status", 200 if entry["session"] else rng.choice((200, 401)))
        entry.update(time=start + i * rng.uniform(0.01, 2.0), server="s1")
    entries.sort(key=lambda e: e["time"])
    return [dict(sorted(e.items())) for e in entries], set(stolen), stolen


def _stolen_log(rng: Any) -> tuple[list, str, set, str]:
    """Run a naive server with honest users and a thief; return its log."""
    users = probe.random_users(rng, 2)
    agents = rng.sample([a for a in _AGENTS if a], 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", guarded.LoopbackProfileWarning)
        server = serve(lambda: guarded.create_app("naive", users=users),
                       name="check-hijack")
    (first, first_pw), (second, second_pw) = users.items()
    with server:
        cookies = {}
        for user, password, agent in ((first, first_pw, agents[0]),
                                      (second, second_pw, agents[1]),
                                      (second, second_pw, agents[1])):  # twice
            with client(user_agent=agent) as browser:
                browser.get(server.url + "/")  # a pre-login visit, no cookie yet
                browser.post(server.url + "/login",
                             json={"username": user, "password": password})
                for _ in range(rng.randrange(1, 5)):
                    browser.get(server.url + "/notes")
                cookies.setdefault(user, browser.cookies["sid"])
        how = rng.choice(("copied", "own"))
        source = f"127.0.{rng.randrange(256)}.{rng.randrange(2, 255)}"
        with client(source=source, user_agent=agents[0] if how == "copied" else agents[2],
                    keep_cookies=False) as thief:
            thief.get(server.url + "/notes", cookies={"sid": cookies[first]})
        log = server.request_log()
    stolen = hashlib.sha256(cookies[first].encode()).hexdigest()[:16]
    honest = {e["session"] for e in log if e["session"]} - {stolen}
    story = ("from another address, copying the user's user agent" if how == "copied"
             else "from another address, with its own user agent")
    return log, stolen, honest, story


def _flagged(find_hijacks: Callable[[list[dict]], Any], log: list[dict],
             what: str = "a request log") -> set:
    given = json.loads(json.dumps(log))
    try:
        found = find_hijacks(given)
    except NotImplementedError:
        raise
    except Exception as exc:
        raise CheckFailed(f"find_hijacks raised {type(exc).__name__} on {what}. It must"
                          " handle any log of that shape, including an empty one and"
                          " entries whose session or user agent is empty.") from exc
    if given != log:
        raise CheckFailed(f"find_hijacks changed the log it was given ({what}):"
                          " sorted, filtered or edited it. Read the log; never"
                          " change it (other code reads the same log).")
    if not isinstance(found, (set, frozenset)):
        raise CheckFailed(f"find_hijacks should return a set of session hashes, not a"
                          f" {type(found).__name__}.")
    if None in found:
        raise CheckFailed("Your result contains None: requests without a session"
                          " cookie (session None) are not a session; skip them.")
    return set(found)


_HOW = {"agent-case": "from the same address with a user agent that differs only in"
                      " upper and lower case (a different string is a different agent)",
        "address": "from another address with the same user agent",
        "agent": "from the same address (one network) with another user agent",
        "both": "from another address with another user agent"}


@question("02.hijack_detector", points=3, hints=[
    "Group the log entries by entry['session'] (skip entries whose session is None).",
    "For each session, collect the set of (entry['client'], entry['user_agent']) pairs:"
    " both parts count, an address alone or a user agent alone is not enough.",
    "Return the set of sessions with more than one pair: same session, another client.",
])
def hijack_detector(find_hijacks: Callable[[list[dict]], Any]) -> str:
    "Write a detector that finds stolen sessions in a server's request log."
    rng = context().rng
    log, stolen, honest, story = _stolen_log(rng)
    found = _flagged(find_hijacks, log)
    if stolen not in found:
        raise CheckFailed(f"On a live server, a thief replayed a user's session {story},"
                          " but your detector did not flag it. Compare the (client,"
                          " user_agent) pairs seen for each session.")
    if found & honest:
        raise CheckFailed("On a live server's log your detector flagged an honest session"
                          " (several requests from one and the same client are normal,"
                          " and so is logging in twice). Flag a session only when a"
                          " second client uses it.")
    if found - {stolen}:
        raise CheckFailed("Your detector returned values that are not session hashes of"
                          " this log's stolen sessions.")
    if _flagged(find_hijacks, [e for e in log if e["session"] != stolen],
                "a log with only honest users"):
        raise CheckFailed("On a log with only honest users, your detector still flagged"
                          " something; it should return an empty set.")
    if _flagged(find_hijacks, [], "an empty log") != set():
        raise CheckFailed("On an empty log your detector should return an empty set.")

    kinds: list[str | None] = ["address", "agent", "both", "agent-case", None, None]
    rng.shuffle(kinds)
    for force in kinds + ([None] * 3 if context().hidden else []):
        log, stolen, how = _synthetic_log(rng, force)
        found = _flagged(find_hijacks, log)
        missed = stolen - found
        if missed:
            raise CheckFailed(
                "Your detector did not flag a session replayed"
                f" {_HOW[how[next(iter(sorted(missed)))]]}. A client is the pair"
                " (address, user agent): a session seen with two different pairs is"
                " stolen.")
        if found - stolen:
            raise CheckFailed(
                "Your detector flagged a session that only one client used (a busy user,"
                " a user who logged in twice, or users sharing one address are honest),"
                " or a value that is not a session of the log.")
    return ("Stolen sessions found whichever part of the client differs; honest users,"
            " busy or not, left alone; empty logs give an empty set.")


# ------------------------------------------------------------------ rotating signer
def _unsign(signer: Any, token: str) -> tuple[bool, Any]:
    """(True, value) when ``signer.unsign`` accepted ``token``; (False, None) on ValueError."""
    try:
        return True, signer.unsign(token)
    except ValueError:
        return False, None
    except NotImplementedError:
        raise
    except Exception as exc:
        raise CheckFailed(
            f"unsign raised {type(exc).__name__} ({exc}) instead of ValueError for a"
            " token it cannot verify. Raise ValueError for every bad token, whatever"
            " characters it holds.") from exc


def _plain_hashes(key: str, value: str) -> set[str]:
    """A key and a value hashed together without HMAC, in the usual encodings."""
    out = set()
    for text in (key + value, value + key, f"{key}.{value}", f"{value}.{key}",
                 f"{key}:{value}", f"{value}:{key}"):
        digest = hashlib.sha256(text.encode()).digest()
        out |= {digest.hex(), base64.urlsafe_b64encode(digest).decode().rstrip("="),
                base64.b64encode(digest).decode().rstrip("=")}
    return out


def _signed_app(make_signer: Callable[[list[str]], Any], keys: list[str], user: str) -> Flask:
    """A tiny app whose session cookie is signed by the learner's signer."""
    app = Flask("check_signer")

    @app.post("/login")
    def login():
        response = jsonify(user=user)
        response.set_cookie("sid", make_signer(list(keys)).sign(user))
        return response

    @app.get("/me")
    def me():
        try:
            value = make_signer(list(keys)).unsign(request.cookies.get("sid", ""))
        except ValueError:
            return {"error": "bad_signature"}, 401
        return {"user": value}

    return app


def _values(rng: Any) -> list[str]:
    """Values to sign: a plain name, one with dots, one with odd characters."""
    return [probe.random_user(rng), f"{probe.random_user(rng)}.{rng.randrange(100)}.x",
            rng.choice(("zoë|admin=1", "a b.c", "..", "名前.テスト", "user:42;role=admin"))]


@question("02.rotating_signer", points=3, hints=[
    "sign(value) returns value + '.' + a signature made with the LAST key;"
    " unsign tries every key. Split with rpartition('.'): values may contain dots.",
    "A signature: hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()"
    " (all 64 characters). Compare with hmac.compare_digest on bytes (.encode() both"
    " sides: it refuses non-ASCII str), never ==.",
    "unsign: value, _, sig = token.rpartition('.'); if no key gives sig, raise"
    " ValueError('bad signature'); else return value.",
])
def rotating_signer(RotatingSigner: Callable[[list[str]], Any]) -> str:
    "Write a signer whose newest key signs while older keys still verify."
    rng = context().rng
    k1, k2, k3, stranger = (probe.random_secret(rng, rng.randrange(16, 40)) for _ in range(4))
    for value in _values(rng):
        token = RotatingSigner([k1]).sign(value)
        if not isinstance(token, str) or not token.startswith(value) or token == value:
            raise CheckFailed("sign(value) should return a string that starts with the"
                              " value, then a separator and the signature, not"
                              f" {type(token).__name__}"
                              f"{' in another shape' if isinstance(token, str) else ''}.")
        accepted, got = _unsign(RotatingSigner([k1]), token)
        if not accepted or got != value:
            raise CheckFailed("unsign(sign(value)) with the same key should give back"
                              " exactly the value (values may contain dots and any"
                              " character), but it did not.")
        if len(token) - len(value) - 1 < 43:
            raise CheckFailed("The signature is shorter than a full HMAC-SHA256 (32 bytes:"
                              " 64 hex or 43 base64 characters). A short signature is"
                              " easier to forge: keep all of it.")
        if k1 in token:
            raise CheckFailed("The signed token contains the key itself. A signature must"
                              " never reveal the key.")
        if any(h in token for h in _plain_hashes(k1, value)):
            raise CheckFailed("The signature is a plain SHA-256 of the key and the value."
                              " Use HMAC (hmac.new(key, value, hashlib.sha256)): a plain"
                              " hash of key + value can be extended by an attacker.")
        if RotatingSigner([k2]).sign(value) == token:
            raise CheckFailed("Two different keys gave the same signature: the signature"
                              " must depend on the key.")

    value = _values(rng)[rng.randrange(3)]
    old = RotatingSigner([k1]).sign(value)
    accepted, got = _unsign(RotatingSigner([k1, k2, k3]), old)
    if not accepted or got != value:
        raise CheckFailed("With three keys (the old ones kept as fallbacks), a value signed"
                          " with the oldest key should still verify.")
    accepted, got = _unsign(RotatingSigner([k1, k2, k3]), RotatingSigner([k2]).sign(value))
    if not accepted or got != value:
        raise CheckFailed("With three keys, a value signed with the middle key should"
                          " still verify: unsign tries every key.")
    new = RotatingSigner([k1, k2, k3]).sign(value)
    if not _unsign(RotatingSigner([k3]), new)[0]:
        raise CheckFailed("sign must use the newest (last) key of the list, so that its"
                          " tokens still verify once the older keys are dropped.")

    separator = len(value)
    tail = old[separator:]
    forgeries = [
        (old, [k2, k3], "a token signed with a key that is no longer in the list"),
        (new, [k1, k2], "a token signed with a key that is not (yet) in the list"),
        (RotatingSigner([stranger]).sign(value), [k1, k2], "a token signed with an"
         " unknown key"),
        (probe.random_user(rng) + tail, [k1], "a changed value with the old signature"),
        (old[:-2] + ("0" if old[-2] != "0" else "1") + old[-1], [k1], "a changed"
         " character near the end of the signature"),
        (value + "." + "名前テスト" * 9, [k1], "a signature with non-ASCII characters"),
        (old[:-(rng.randrange(4, 20))], [k1], "a shortened signature"),
        (old[:separator + 1], [k1], "an empty signature"),
        (value, [k1], "a value with no signature at all"),
        ("", [k1], "an empty token"),
        (value + RotatingSigner([k1]).sign(value + "x")[separator + 1:], [k1],
         "the value with the signature of a different value"),
    ]
    # Not the last character: in base64 its low bits may be padding that decoders
    # ignore, so changing it need not change the signature's bytes.
    position = separator + 1 + rng.randrange(max(1, len(old) - separator - 2))
    flipped = old[position]
    for candidate in "0aA_-9f":
        if candidate != flipped:
            forgeries.append((old[:position] + candidate + old[position + 1:], [k1],
                              "one changed character inside the signature"))
            break
    for token, keys, why in forgeries:
        accepted, _got = _unsign(RotatingSigner(keys), token)
        if accepted:
            raise CheckFailed(f"unsign should raise ValueError for {why}, but it accepted"
                              " the token.")

    spied = RotatingSigner([k1])
    genuine = spied.sign(probe.random_user(rng))
    if not probe.compare_digest_calls(RotatingSigner, lambda: _unsign(spied, genuine)):
        raise CheckFailed("unsign accepted a genuine token without calling"
                          " hmac.compare_digest: it compares signatures with == (or another"
                          " early-exit comparison), whose timing leaks how many leading"
                          " characters matched. Use hmac.compare_digest(expected, given).")

    keys = [k1]
    user = probe.random_user(rng)
    with probe.serve_factory(lambda: _signed_app(RotatingSigner, keys, user),
                             name="check-signer") as server, \
            requests.Session() as early, requests.Session() as sleeper:
        for c in (early, sleeper):
            probe.expect_status(probe.call("POST", server.url + "/login", session=c,
                                           what="POST /login"), 200, "POST /login")
        keys[:] = [k1, k2]  # rotate: new key signs, old verifies
        r = probe.call("GET", server.url + "/me", session=sleeper, what="GET /me")
        probe.expect_status(r, 200, "During the grace period, an old cookie on GET /me")
        probe.call("POST", server.url + "/login", session=early, what="POST /login")
        keys[:] = [k2]  # the old key is dropped
        r = probe.call("GET", server.url + "/me", session=sleeper, what="GET /me")
        probe.expect_status(r, 401, "After the old key is dropped, a cookie signed with it")
        r = probe.call("GET", server.url + "/me", session=early, what="GET /me")
        probe.expect_status(r, 200, "After the old key is dropped, a cookie re-issued"
                            " during the grace period")
    return ("New key signs with a full-length HMAC, old keys verify until dropped, every"
            " forgery tried is refused, and your code calls hmac.compare_digest.")
