"""Chapter 04 questions: keeping sessions alive.

* ``04.write_invalidate``: a write-invalidate replica of your own, run on three real
  servers that talk HTTP to each other;
* ``04.redis_store``: a session store that lives in a real Redis, with an idle TTL;
* ``04.store_down``: an app that answers 503 with a reason while the store is down and
  recovers by itself when it returns.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import requests

from ..checks import CheckFailed, probe, question

BIG_ITEM = "x" * 2_000  # makes a write-update message impossible to miss


# ------------------------------------------------------------------ write-invalidate
def _dry_run(replica_class: Any) -> None:
    """Call the learner's methods once, alone, so a stub fails before any server starts."""
    from ..state.replication import Replica, Replication

    if not (isinstance(replica_class, type) and issubclass(replica_class, Replica)):
        raise CheckFailed("Pass your class itself (e.g. MyInvalidate), a subclass of"
                          f" labkit.state.replication.Replica, not {type(replica_class).__name__}.")
    alone = replica_class("s1", Replication(replica_class))  # no peers: nothing is sent
    alone.write("probe", {"user": "ada", "cart": []})
    got = alone.read("probe")
    if got != {"user": "ada", "cart": []}:
        raise CheckFailed(f"On a server alone, read() right after write() should return the"
                          f" data just written, but it returned {got!r}.")


def _cart(server: Any, client: requests.Session, what: str) -> tuple[list, int]:
    response = probe.call("GET", server.url + "/cart", session=client, what=what)
    probe.expect_status(response, 200, what)
    return probe.expect_json(response, what)["cart"], int(response.headers["X-Peer-Messages"])


@question("04.write_invalidate", points=3, hints=[
    "A write keeps the data on the writing server and sends each peer only a short"
    " 'invalidate' message; a read that finds no valid copy asks the owner ('fetch').",
    "Keep a Copy(data, version, owner) per session. On 'invalidate', store"
    " Copy(None, version, owner=sender). In read(), if copy.data is None, call"
    " self.send(copy.owner, 'fetch', sid) and keep what comes back.",
    "on_message: for 'fetch' return {'data': copy.data, 'version': copy.version} when"
    " you hold valid data; for anything else, fall back to super().on_message(...).",
])
def write_invalidate(replica_class: Any) -> str:
    "Write a Replica subclass that keeps sessions coherent by write-invalidate."
    import labkit as lk
    from ..state.replication import Replication

    _dry_run(replica_class)
    group = Replication(replica_class)
    with lk.Cluster(group.factory, size=3, name="check-04-invalidate") as cluster, \
            requests.Session() as ada:
        group.connect(cluster)
        s1, s2, s3 = cluster.servers
        login = probe.call("POST", s1.url + "/login", json={"user": "ada"}, session=ada,
                           what="POST /login on s1")
        probe.expect_status(login, 200, "POST /login on s1")
        cart, _ = _cart(s2, ada, "GET /cart on s2 after logging in on s1")
        if cart != []:
            raise CheckFailed(f"s2 should find ada's empty cart, but found {cart!r}.")

        group.reset()
        write = probe.call("POST", s1.url + "/cart", json={"item": BIG_ITEM}, session=ada,
                           what="POST /cart on s1")
        probe.expect_status(write, 200, "POST /cart on s1")
        big = [m for m in group.messages if m.nbytes > 500]
        if big:
            raise CheckFailed(
                f"Your write sent {big[0].nbytes} bytes to {big[0].receiver} (a"
                f" {big[0].kind!r} message): the whole session travelled. That is"
                " write-update. Write-invalidate sends peers only a short notice.")
        cart, _ = _cart(s2, ada, "GET /cart on s2 after a write on s1")
        if cart != [BIG_ITEM]:
            raise CheckFailed(
                "Stale read: after a write on s1, s2 still answered the old cart"
                f" ({len(cart)} items). The write must invalidate s2's copy, and s2"
                " must then fetch the new version from its owner.")
        cart, sent = _cart(s2, ada, "GET /cart on s2 a second time")
        if sent:
            raise CheckFailed(
                f"Reading again on s2 cost {sent} message(s). Keep the copy you fetched:"
                " it stays valid until the next invalidation.")
        if _cart(s3, ada, "GET /cart on s3")[0] != [BIG_ITEM]:
            raise CheckFailed("s3 did not see the cart written on s1.")

        tea = probe.call("POST", s3.url + "/cart", json={"item": "tea"}, session=ada,
                         what="POST /cart on s3")
        probe.expect_status(tea, 200, "POST /cart on s3")
        for server in (s1, s2):
            cart, _ = _cart(server, ada, f"GET /cart on {server.name} after a write on s3")
            if cart != [BIG_ITEM, "tea"]:
                raise CheckFailed(
                    f"After a write on s3, {server.name} answered a cart of"
                    f" {len(cart)} item(s) instead of 2: its copy was not invalidated,"
                    " or it fetched from a server that is no longer the owner.")
    return "Coherent, and cheap: peers got short notices and fetched only when needed."


# ------------------------------------------------------------------ a store in Redis
@question("04.redis_store", points=3, hints=[
    "Every method talks to Redis through self.client; keep nothing in the object"
    " itself, so that every app server sees the same sessions.",
    "new(): sid = secrets.token_urlsafe(32); self.client.set(self.prefix + sid,"
    " json.dumps(data), ex=self.idle_timeout). get(): read it back with json.loads.",
    "get() must also push the expiry back: self.client.getex(key, ex=self.idle_timeout)"
    " reads and refreshes in one step. delete() returns self.client.delete(key) == 1.",
])
def redis_store(store_class: Callable[..., Any]) -> str:
    "Write a session store that keeps each session in Redis with an idle timeout."
    import labkit as lk
    from ..state.redis import RedisServer

    with RedisServer(name="check-04-redis") as redis_server:
        client = redis_server.client()
        store = store_class(client, idle_timeout=1)
        sid = store.new({"user": "ada"})
        if not isinstance(sid, str) or len(sid) < 22:
            raise CheckFailed(f"new() should return a random id of at least 128 bits (22"
                              f" URL-safe characters), not {sid!r}.")
        if len({store.new({}) for _ in range(20)}) != 20:
            raise CheckFailed("new() returned the same id twice: use secrets.token_urlsafe.")
        got = store.get(sid)
        if got != {"user": "ada"}:
            raise CheckFailed(f"get(sid) right after new({{'user': 'ada'}}) returned {got!r}.")
        other = store_class(redis_server.client(), idle_timeout=1)
        if other.get(sid) != {"user": "ada"}:
            raise CheckFailed(
                "A second store on the same Redis did not find the session: it lives in"
                " your Python object, not in Redis. Every app server has its own object;"
                " only what is in Redis is shared.")
        keys = [k for k in client.keys("*") if sid in k]
        if len(keys) != 1:
            raise CheckFailed(f"Expected one Redis key holding the session, found {len(keys)}.")
        if not 0 < client.pttl(keys[0]) <= 1_000:
            raise CheckFailed(
                f"The key {keys[0].replace(sid, '<sid>')!r} has no expiry of at most"
                " idle_timeout seconds (PTTL says"
                f" {client.pttl(keys[0])}). Pass ex=self.idle_timeout when you SET it.")
        store.save(sid, {"user": "ada", "cart": ["tea"]})
        if store.get(sid) != {"user": "ada", "cart": ["tea"]}:
            raise CheckFailed("save(sid, data) did not replace the session's data.")

        for _ in range(3):  # 1.35 s in all, but never 1 s without use
            time.sleep(0.45)
            if store.get(sid) is None:
                raise CheckFailed(
                    "A session used less than a second ago expired with idle_timeout=1:"
                    " get() must push the expiry back (GETEX, or EXPIRE after GET).")
        idle = store.new({"user": "bob"})
        time.sleep(1.3)
        if store.get(idle) is not None:
            raise CheckFailed("A session idle for 1.3 s is still there with idle_timeout=1.")
        if store.get("never-issued") is not None:
            raise CheckFailed("get() of an id that was never issued should return None.")
        gone = store.new({"user": "eve"})
        if store.delete(gone) is not True or store.get(gone) is not None:
            raise CheckFailed("delete(sid) should return True and make get(sid) None.")
        if store.delete(gone) is not False:
            raise CheckFailed("delete() of a session that is already gone should return False.")

        from ..apps import social  # the real test: two servers share the store
        make = lambda: social.create_app(store=store_class(redis_server.client(),
                                                           idle_timeout=60),
                                         kdf_iterations=1_000)
        with lk.Cluster(make, size=2, name="check-04-redis-app") as cluster, \
                requests.Session() as alice:
            login = probe.call("POST", cluster.url + "/login", session=alice,
                               json={"username": "alice", "password": "wonderland"},
                               what="POST /login")
            probe.expect_status(login, 200, "POST /login on an app using your store")
            for _ in range(2):  # round robin: one request on each server
                probe.expect_status(probe.call("GET", cluster.url + "/me", session=alice,
                                               what="GET /me"),
                                    200, "GET /me on both servers (round robin)")
    return "Your sessions live in Redis, expire when idle, and every server sees them."


# ------------------------------------------------------------------ store down: 503
@question("04.store_down", points=2, hints=[
    "When Redis is down, RedisSessionStore raises StoreUnavailable, and Flask turns an"
    " unhandled exception into a 500. Register an error handler for it.",
    "app.register_error_handler(StoreUnavailable, handler), where the handler returns"
    " ({'error': exc.reason}, 503).",
])
def store_down(make_app: Callable[[Any], Any]) -> str:
    "Make the app answer 503 with a reason while the store is down, and recover."
    from ..state.redis import RedisServer, RedisSessionStore

    with RedisServer(name="check-04-down") as redis_server:
        sessions = RedisSessionStore(redis_server, idle_timeout=60)
        with probe.serve_factory(lambda: make_app(sessions), name="check-04-down-app") as app, \
                requests.Session() as alice:
            url = app.url
            credentials = {"username": "alice", "password": "wonderland"}
            probe.expect_status(probe.call("POST", url + "/login", json=credentials,
                                           session=alice, what="POST /login"),
                                200, "POST /login (as alice) while the store is up")
            redis_server.kill()
            down = probe.call("GET", url + "/me", session=alice, what="GET /me")
            if down.status_code != 503:
                raise CheckFailed(
                    f"With the store down, GET /me should answer 503, but your app answered"
                    f" {probe.describe(down)}. Catch StoreUnavailable and answer 503.")
            reason = probe.body(down)
            if not isinstance(reason, dict) or reason.get("error") != "store_unavailable":
                raise CheckFailed(
                    f"The 503 should say why, as JSON {{'error': 'store_unavailable'}}"
                    f" (exc.reason), but the body was {reason!r}.")
            redis_server.revive()  # back, and empty: kill -9 kept nothing
            back = probe.call("GET", url + "/me", session=alice, what="GET /me")
            if back.status_code != 401:
                raise CheckFailed(
                    "Once the store is back (empty), GET /me with the old cookie should"
                    f" answer 401, but your app answered {probe.describe(back)}.")
            probe.expect_status(probe.call("POST", url + "/login", json=credentials,
                                           session=alice, what="POST /login"),
                                200, "POST /login once the store is back")
            probe.expect_status(probe.call("GET", url + "/me", session=alice, what="GET /me"),
                                200, "GET /me after logging in again")
    return "503 with a reason while the store is down, and back to normal without a restart."
