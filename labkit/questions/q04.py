"""Chapter 04 questions: keeping sessions alive.

* ``04.write_invalidate``: a write-invalidate replica of your own, run on three real
  servers that talk HTTP to each other;
* ``04.redis_store``: a session store that lives in a real Redis, with an idle TTL;
* ``04.store_down``: an app that answers 503 with a reason while the store is down and
  recovers by itself when it returns.

Every check draws what the learner cannot see (user names, items, which server
writes and which reads, timeouts, prefixes) from the run's seed: see
:mod:`labkit.checks.context`.
"""

from __future__ import annotations

import json
import math
import re
import string
import threading as _threading
import time
from typing import Any, Callable

import requests

from ..checks import CheckFailed, context, probe, question

SMALL_MESSAGE = 100   # bytes: a notice ("invalidate", version) is far below this,
                      # and every session of the check is bigger (long user names)
URL_SAFE = re.compile(r"^[A-Za-z0-9_\-]+$")


def _word(rng: Any, length: int = 6) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(length))


# ------------------------------------------------------------------ write-invalidate
def _dry_run(replica_class: Any) -> None:
    """Call the learner's methods once, alone, so a stub fails before any server starts."""
    from ..state.replication import Replica, Replication

    if not (isinstance(replica_class, type) and issubclass(replica_class, Replica)):
        raise CheckFailed("Pass your class itself (e.g. MyInvalidate), a subclass of"
                          " labkit.state.replication.Replica, not"
                          f" {type(replica_class).__name__}.")
    rng = context().rng
    alone = replica_class("s1", Replication(replica_class))  # no peers: nothing is sent
    data = {"user": _word(rng), "cart": [_word(rng)]}
    alone.write("probe", data)
    got = alone.read("probe")
    if got != data:
        raise CheckFailed("On a server alone, read() right after write() should return the"
                          f" data just written, but it returned {got!r}.")
    try:
        unknown = alone.read("never-written")
    except Exception as exc:
        raise CheckFailed("read() of a session this server never heard of should return None"
                          f" (nothing to answer from, nobody to ask), but it raised"
                          f" {type(exc).__name__}.") from None
    if unknown is not None:
        raise CheckFailed("read() of a session this server never heard of should return"
                          " None (nothing to answer from, nobody to ask).")


class _Carts:
    """Drives the replicated cart app and keeps the truth to compare with."""

    def __init__(self, servers: list, group: Any) -> None:
        self.servers, self.group = servers, group
        self.clients: dict[str, requests.Session] = {}
        self.truth: dict[str, list[str]] = {}
        self.owner: dict[str, str] = {}
        self.fresh: dict[str, set[str]] = {}   # servers that hold a valid copy

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def login(self, user: str, server: Any) -> None:
        client = self.clients.setdefault(user, requests.Session())
        what = f"POST /login as a new user on {server.name}"
        self.group.reset()
        probe.expect_status(probe.call("POST", server.url + "/login", json={"user": user},
                                       session=client, what=what), 200, what)
        self.truth[user], self.owner[user], self.fresh[user] = [], server.name, {server.name}
        self.no_session_sent(f"A login (a first write) on {server.name}")

    def write(self, user: str, server: Any, item: str) -> None:
        what = f"POST /cart on {server.name}"
        self.group.reset()
        answer = probe.call("POST", server.url + "/cart", json={"item": item},
                            session=self.clients[user], what=what)
        probe.expect_status(answer, 200, what)
        self.truth[user] = [*self.truth[user], item]
        self.owner[user], self.fresh[user] = server.name, {server.name}
        self.no_session_sent(f"A write on {server.name}")

    def no_session_sent(self, what: str) -> None:
        # Every message the writer sends is small, whatever its kind: the body of a
        # "fetch" is empty too (the data comes back in the reply, which is not counted).
        big = [m for m in self.group.messages if m.nbytes > SMALL_MESSAGE]
        if big:
            raise CheckFailed(
                f"{what} sent a {big[0].kind!r} message of {big[0].nbytes}"
                f" bytes to {big[0].receiver}: the session itself travelled. That is"
                " write-update. Write-invalidate sends peers only a short notice (the"
                " version), and they fetch the data when they need it.")

    def read(self, user: str, server: Any, story: str) -> None:
        what = f"GET /cart on {server.name} ({story})"
        answer = probe.call("GET", server.url + "/cart", session=self.clients[user], what=what)
        probe.expect_status(answer, 200, what)
        cart = probe.expect_json(answer, what).get("cart")
        if cart != self.truth[user]:
            raise CheckFailed(
                f"Stale read: {what} answered a cart of {len(cart or [])} item(s), but the"
                f" latest version has {len(self.truth[user])}. A write must invalidate the"
                " peers' copies, and a server with an invalid copy must fetch the latest"
                " version from the server that wrote it last.")
        sent = int(answer.headers.get("X-Peer-Messages", "0"))
        if server.name in self.fresh[user] and sent:
            why = ("it wrote the session last" if server.name == self.owner[user]
                   else "it already fetched the latest version")
            raise CheckFailed(
                f"{what} cost {sent} peer message(s), although {server.name} holds a valid"
                f" copy ({why}). Keep the copy you wrote or fetched: it stays valid until"
                " the next invalidation.")
        if sent > 1:
            raise CheckFailed(f"{what} sent {sent} peer messages: an invalidated copy needs"
                              " one 'fetch', to the owner (the sender of the invalidation).")
        self.fresh[user].add(server.name)


def _cart_writer(carts: _Carts, user: str, server: Any, item: str) -> Callable[[], None]:
    """One of several simultaneous writers (no checks on messages: they overlap)."""
    def write() -> None:
        what = f"POST /cart on {server.name} (two writes at the same time)"
        answer = probe.call("POST", server.url + "/cart", json={"item": item},
                            session=carts.clients[user], what=what)
        probe.expect_status(answer, 200, what)
    return write


class _OwnedLock:
    """A lock that knows which thread holds it (to catch a send made while holding it)."""

    def __init__(self) -> None:
        self._lock = _threading.Lock()
        self.owner: int | None = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = self._lock.acquire(blocking, timeout)
        if got:
            self.owner = _threading.get_ident()
        return got

    def release(self) -> None:
        self.owner = None
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    __enter__ = acquire

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _watched(replica_class: type, held: list[str],
             sent: list[tuple[str, str, str, str, Any]] | None = None) -> type:
    """The learner's class, with a lock that notes a send made while holding it.

    ``sent`` collects every message as (sender, peer, kind, sid, body), so that the
    check can deliver one again later, as a network that repeats itself would.
    """

    class Watched(replica_class):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if type(self.lock) is type(_threading.Lock()):  # the kit's plain lock only
                self.lock = _OwnedLock()

        def send(self, peer: str, kind: str, sid: str, body: dict | None = None) -> Any:
            if isinstance(self.lock, _OwnedLock) and self.lock.owner == _threading.get_ident():
                held.append(kind)
            if sent is not None:
                sent.append((self.name, peer, kind, sid, body))
            return super().send(peer, kind, sid, body)

    Watched.__name__ = Watched.__qualname__ = replica_class.__name__
    return Watched


@question("04.write_invalidate", points=3, hints=[
    "A write keeps the data on the writing server and sends each peer only a short"
    " 'invalidate' message; a read that finds no valid copy asks the owner ('fetch').",
    "Keep a Copy(data, version, owner) per session. On 'invalidate', store"
    " Copy(None, version, owner=sender). In read(), if copy.data is None, call"
    " self.send(copy.owner, 'fetch', sid) and keep what comes back.",
    "on_message: for 'fetch' return {'data': copy.data, 'version': copy.version} when"
    " you hold valid data; for anything else, fall back to super().on_message(...)."
    " Never hold self.lock while you send: the peer may be sending to you.",
])
def write_invalidate(replica_class: Any) -> str:
    "Write a Replica subclass that keeps sessions coherent by write-invalidate."
    import labkit as lk
    from ..state.replication import Replication

    _dry_run(replica_class)
    rng = context().rng
    item = lambda: _word(rng, rng.randrange(600, 1500))  # noqa: E731  (a session > notice)
    held: list[str] = []
    sent: list[tuple[str, str, str, str, Any]] = []
    group = Replication(_watched(replica_class, held, sent))
    with lk.Cluster(group.factory, size=3, name="check-04-invalidate") as cluster:
        group.connect(cluster)
        carts = _Carts(list(cluster.servers), group)
        try:
            users = [f"{_word(rng, rng.randrange(110, 160))}{i}" for i in range(2)]
            for user in users:
                a, b, c = rng.sample(carts.servers, 3)
                carts.login(user, a)
                carts.read(user, b, "after logging in on another server")
                carts.write(user, a, item())
                carts.read(user, b, "after a write on another server")
                carts.read(user, b, "a second time, with nothing written since")
                carts.read(user, c, "the third server")
                carts.write(user, c, item())
                carts.read(user, a, "after the session moved to another writer")
                carts.read(user, c, "on the server that wrote last")
                carts.read(user, b, "after the session moved to another writer")
            for _ in range(8):  # then a random walk of writes and reads
                user, server = rng.choice(users), rng.choice(carts.servers)
                if rng.random() < 0.4:
                    carts.write(user, server, item())
                else:
                    carts.read(user, server, "in a random sequence of writes and reads")
            for server in carts.servers:  # a cookie for a session nobody ever had
                what = f"GET /cart on {server.name} with an unknown session id"
                with requests.Session() as stranger:
                    stranger.cookies.set("sid", _word(rng, 40))
                    answer = probe.call("GET", server.url + "/cart", what=what,
                                        session=stranger)
                probe.expect_status(answer, 401, what)

            if held:
                raise CheckFailed(
                    f"Your replica sent a {held[0]!r} message while holding self.lock. Two"
                    " servers that do that at the same time wait for each other until the"
                    " message times out. Copy what you need under the lock, release it,"
                    " then send.")
            # A late, repeated notice: deliver again the last "invalidate" a server got
            # for a version it has fetched since. Its copy of that version stays valid.
            user = users[0]
            sid = carts.clients[user].cookies.get("sid")
            writer, server = rng.sample(carts.servers, 2)
            carts.write(user, writer, item())
            carts.read(user, server, "after a write on another server")
            carts.write(user, writer, item())   # the reader holds a copy: it is told
            carts.read(user, server, "after a second write on another server")
            notices = [m for m in sent if m[:4] == (writer.name, server.name, "invalidate", sid)]
            if notices:
                sender, peer, kind, sid_, body = notices[-1]
                group.reset()
                group._deliver(kind, sender, peer, sid_, body)
                what = f"GET /cart on {server.name} (after a repeated, late notice)"
                answer = probe.call("GET", server.url + "/cart",
                                    session=carts.clients[user], what=what)
                probe.expect_status(answer, 200, what)
                if int(answer.headers.get("X-Peer-Messages", "0")) or probe.expect_json(
                        answer, what).get("cart") != carts.truth[user]:
                    raise CheckFailed(
                        f"A late, repeated 'invalidate' for the version {server.name} had"
                        " already fetched made it drop its valid copy (the next read"
                        " fetched again). Ignore a notice that is not newer than your copy:"
                        " invalidate only when its version is greater than yours.")
            # Two writers at once, on two servers: each invalidates the other's copy
            # while being invalidated itself.
            for round_ in range(2):
                x, y = rng.sample(carts.servers, 2)
                items = {users[0]: item(), users[1]: item()}
                started = time.monotonic()
                pairs = [(users[0], x), (users[1], y)]
                probe.together(*(_cart_writer(carts, user, server, items[user])
                                 for user, server in pairs))
                took = time.monotonic() - started
                for user in users:
                    carts.truth[user] = [*carts.truth[user], items[user]]
                    carts.owner[user] = dict(pairs)[user].name
                    carts.fresh[user] = {carts.owner[user]}
                if took > 1.5:
                    raise CheckFailed(
                        f"Two writes on two servers at the same time took {took:.0f} s or"
                        " more: each server waited for the other. Do not hold self.lock"
                        " while you send a message; the peer may be sending to you.")
                for user in users:
                    for server in carts.servers:
                        carts.read(user, server, "after two simultaneous writes on two"
                                   " servers")
        finally:
            carts.close()
    return "Coherent, and cheap: peers got short notices and fetched only when needed."



# ------------------------------------------------------------------ a store in Redis
def _common_run(ids: list[str]) -> int:
    """The longest prefix or suffix two of ``ids`` share (random ids share ~nothing)."""
    longest = 0
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            for text_a, text_b in ((a, b), (a[::-1], b[::-1])):
                n = 0
                while n < min(len(text_a), len(text_b)) and text_a[n] == text_b[n]:
                    n += 1
                longest = max(longest, n)
    return longest


HEX = set("0123456789abcdef")
ALPHABETS = ((set("0123456789abcdef"), 4), (set("0123456789ABCDEF"), 4),
             (set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567="), 5),
             (set(string.ascii_letters + string.digits), math.log2(62)),
             (set(string.ascii_letters + string.digits + "-_"), 6))


def _id_bits(ids: list[str]) -> float:
    """At most how many random bits ids of this shape carry.

    The alphabet is the smallest usual one holding every character seen; a position
    that is the same in every id (a UUID's dashes and version digit) carries nothing.
    From the outside this is an upper bound: it cannot see a weak generator behind a
    wide alphabet (see :func:`_mt_predicts` and :func:`_time_hashed` for two of those).
    """
    shortest = min(len(i) for i in ids)
    varying = [pos for pos in range(shortest) if len({i[pos] for i in ids}) > 1]
    seen = {i[pos] for i in ids for pos in varying} | set("".join(i[shortest:] for i in ids))
    per_char = next((bits for alphabet, bits in ALPHABETS if seen <= alphabet), 6.0)
    return (len(varying) + max(len(i) for i in ids) - shortest) * per_char


def _as_ints(ids: list[str], order: str = "little") -> list[tuple[int, int]] | None:
    """(value, bits) of every id read as hex or URL-safe base64, or None if neither.

    ``order="number"`` reads hex as one number (``"%032x" % getrandbits(128)``); the
    byte orders read the bytes the id encodes (``randbytes(16).hex()``, base64).
    """
    import base64
    import binascii

    try:
        if all(set(i.lower()) <= HEX for i in ids):
            if order == "number":
                return [(int(i, 16), 4 * len(i)) for i in ids]
            raw = [bytes.fromhex(i) for i in ids]
        else:
            raw = [base64.urlsafe_b64decode(i + "=" * (-len(i) % 4)) for i in ids]
    except (ValueError, TypeError, binascii.Error):
        return None
    return [(int.from_bytes(b, "little" if order == "number" else order), 8 * len(b))
            for b in raw]


def _untemper(y: int) -> int:
    """Undo the Mersenne Twister's output tempering (each of its steps is invertible)."""
    y ^= y >> 18
    y ^= (y << 15) & 0xEFC60000
    x = y
    for _ in range(5):
        x = y ^ ((x << 7) & 0x9D2C5680)
    y = x & 0xFFFFFFFF
    x = y
    for _ in range(3):
        x = y ^ (x >> 11)
    return x & 0xFFFFFFFF


def _mt_predicts(new_id: Callable[[], str]) -> bool:
    """Do the ids issued so far predict the next one (``random``, not ``secrets``)?

    Python's ``random`` is a Mersenne Twister: 624 consecutive 32-bit outputs give its
    whole state, so an attacker who collects enough session ids computes every later
    one. ``getrandbits(128)`` or ``randbytes(16)`` ids, in hex or base64, fall to it.
    """

    first = _as_ints([new_id()], "number")
    if not first or not first[0][1] or first[0][1] % 32 or first[0][1] > 32 * 624:
        return False
    per = first[0][1] // 32                 # 32-bit words in one id
    needed = -(-624 // per)
    ids = [new_id() for _ in range(needed + 1)]
    for order in ("number", "little", "big"):
        values = _as_ints(ids, order)
        if values and all(bits == 32 * per for _, bits in values) and _clone_predicts(
                values, per, needed):
            return True
    return False


def _clone_predicts(values: list[tuple[int, int]], per: int, needed: int) -> bool:
    """Untemper the words of ``values[:needed]``; do they give ``values[needed]``?"""
    import random

    def words(value: int, reverse: bool) -> list[int]:
        chunk = [(value >> (32 * w)) & 0xFFFFFFFF for w in range(per)]
        return chunk[::-1] if reverse else chunk

    for reverse in (False, True):            # the words of an id, in either order
        stream = [w for value, _ in values[:needed] for w in words(value, reverse)]
        clone = random.Random()
        clone.setstate((3, tuple([_untemper(w) for w in stream[-624:]] + [624]), None))
        if [clone.getrandbits(32) for _ in range(per)] == words(values[needed][0], reverse):
            return True
    return False


def _time_hashed(new_id: Callable[[], str], client: Any) -> bool:
    """Is an id a hash (SHA-256, SHA-1, MD5) of the clock read while it was made?

    The window is from the call to new() to its SET (the id exists by then), read
    through ``client``, a :class:`_ExpiresWhileSaving` that notes when SET is called.
    """
    import hashlib

    for _ in range(6):
        client.set_at = None
        before = time.time_ns()
        sid = new_id().lower()
        after = client.set_at or time.time_ns()
        if not set(sid) <= HEX or len(sid) < 16 or after - before > 200_000:
            continue
        texts = [str(ns) for ns in range(before, after + 1)]
        texts += [str(us) for us in range(before // 1000, after // 1000 + 1)]
        moment, end = before / 1e9, after / 1e9
        while moment <= end:                 # time.time() floats in the window
            texts.append(repr(moment))
            moment = math.nextafter(moment, math.inf)
        for algorithm in ("sha256", "sha1", "md5"):
            for text in texts:
                digest = hashlib.new(algorithm, text.encode()).hexdigest()
                if digest.startswith(sid) or sid.startswith(digest):
                    return True
        return False
    return False


class _ExpiresWhileSaving:
    """A redis-py client that lets one key expire right after save() first reads it.

    save() that checks the key (EXISTS, GET, TTL...) and then SETs it without ``xx``
    brings the session back to life if it expires between the two steps; this wrapper
    makes that moment happen every time instead of once in a million.
    """

    READS = {"exists", "get", "ttl", "pttl", "type", "getex", "expire", "pexpire",
             "persist", "strlen"}

    def __init__(self, client: Any) -> None:
        self._client = client
        self.armed: str | None = None
        self.set_at: int | None = None      # time.time_ns() of the last SET

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if name == "set":
            def set_(*args: Any, **kwargs: Any) -> Any:
                self.set_at = time.time_ns()
                return method(*args, **kwargs)
            return set_
        if name not in self.READS:
            return method

        def read(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            if self.armed is not None and self.armed in args:
                self._client.delete(self.armed)       # expired right after the read
                self.armed = None
            return result
        return read


@question("04.redis_store", points=3, hints=[
    "Every method talks to Redis through self.client; keep nothing in the object"
    " itself, so that every app server sees the same sessions.",
    "new(): sid = secrets.token_urlsafe(32); self.client.set(self.prefix + sid,"
    " json.dumps(data), ex=self.idle_timeout). get(): read it back with json.loads.",
    "get() must also push the expiry back: self.client.getex(key, ex=self.idle_timeout)"
    " reads and refreshes in one step. save() uses set(..., xx=True), so that it never"
    " brings back a session that is gone. delete() returns self.client.delete(key) == 1.",
])
def redis_store(store_class: Callable[..., Any]) -> str:
    "Write a session store that keeps each session in Redis with an idle timeout."
    import labkit as lk
    from ..apps import social
    from ..state.redis import RedisServer

    rng = context().rng
    idle = rng.randrange(120, 900)
    prefix = f"{_word(rng, 4)}:"
    with RedisServer(name="check-04-redis") as redis_server:
        client = redis_server.client()
        store = store_class(client, idle_timeout=idle, prefix=prefix)
        user = _word(rng)
        data = {"user": user, "cart": [_word(rng), "thé <&>"], "n": rng.randrange(1000)}
        sid = store.new(dict(data))
        if not isinstance(sid, str) or len(sid) < 22 or not URL_SAFE.match(sid):
            raise CheckFailed(
                "new() should return a random id of at least 128 bits written with URL-safe"
                f" characters (22 or more of A-Z a-z 0-9 _ -), not {sid!r}:"
                " secrets.token_urlsafe(32).")
        if not client.exists(prefix + sid):
            found = [k.replace(sid, "<sid>") for k in client.keys("*") if sid in k]
            raise CheckFailed(
                f"There is no Redis key prefix + sid (the store was made with prefix"
                f" {prefix!r}); found {found or 'no key with the id'}. Use self.prefix.")
        if not (idle - 5) * 1000 <= client.pttl(prefix + sid) <= idle * 1000:
            raise CheckFailed(
                f"A new session should expire after idle_timeout seconds (the store was"
                f" made with idle_timeout={idle}), but its key's expiry is"
                f" {'missing' if client.pttl(prefix + sid) < 0 else 'something else'}."
                " Pass ex=self.idle_timeout when you SET it.")
        if user in sid:
            raise CheckFailed("The session id contains the user's name: an id must be pure"
                              " randomness, or anyone can guess another user's.")
        ids = [store.new({"user": user}) for _ in range(12)] + [sid]
        if len(set(ids)) != len(ids):
            raise CheckFailed("new() returned the same id twice: use secrets.token_urlsafe.")
        if _common_run(ids) >= 6:
            raise CheckFailed(
                "Several ids from new() share a long run of characters (a time stamp, a"
                " counter, a machine id?): an attacker who sees one can guess the next."
                " Use secrets.token_urlsafe(32).")
        bits = _id_bits(ids)
        if bits < 128:
            raise CheckFailed(
                f"Your ids carry at most {bits:.0f} random bits (counting the characters"
                " that vary from id to id; a UUID4 has 122), not the 128 the task asks"
                " for: secrets.token_urlsafe(32).")
        if _mt_predicts(lambda: store.new({"user": user})):
            raise CheckFailed(
                "After collecting enough of your session ids, the check computed the next"
                " one in advance: they come from the `random` module (a Mersenne Twister,"
                " whose state 624 outputs reveal), not from `secrets`. An attacker could"
                " do the same and take over the next user's session.")
        timed = _ExpiresWhileSaving(redis_server.client())
        if _time_hashed(lambda: store_class(timed, idle_timeout=idle, prefix=prefix).new(
                {"user": user}), timed):
            raise CheckFailed(
                "Your session id is a hash of the clock at the moment new() was called: an"
                " attacker who knows roughly when a user logged in tries the few candidate"
                " times and finds the id. Use secrets.token_urlsafe(32).")
        if store.get(sid) != data:
            raise CheckFailed("get(sid) right after new(data) should return that data, but"
                              f" it returned {store.get(sid)!r}.")
        raw = client.get(prefix + sid)
        try:
            stored = json.loads(raw)
        except ValueError:
            stored = None
        if stored != data:
            raise CheckFailed("The value under prefix + sid should be the data as JSON"
                              " (json.dumps), readable by any server in any language.")
        empty = store.new()
        if empty is None or store.get(empty) != {} or store.get(ids[0]) != {"user": user}:
            raise CheckFailed("new() with no data should store an empty session: get() of"
                              " its id returns {} (not None, which means 'no session'), and"
                              " every session keeps its own data.")
        other = store_class(redis_server.client(), idle_timeout=idle, prefix=prefix)
        if other.get(sid) != data:
            raise CheckFailed(
                "A second store on the same Redis did not find the session: it lives in"
                " your Python object, not in Redis. Every app server has its own object;"
                " only what is in Redis is shared.")
        changed = {**data, "cart": [_word(rng)]}
        other.save(sid, changed)
        if store.get(sid) != changed:
            raise CheckFailed(
                "After another store (another app server) saved new data, get() on the"
                " first store returned old data: it answers from a copy in the object."
                " Read from Redis every time.")

        client.pexpire(prefix + sid, 5_000)     # as if the session had been idle a while
        store.get(sid)
        if client.pttl(prefix + sid) < (idle - 5) * 1000:
            raise CheckFailed(
                "get() did not push the expiry back to idle_timeout: a session in use"
                " would expire. Use GETEX (or EXPIRE after GET).")
        client.pexpire(prefix + sid, 5_000)
        store.save(sid, data)
        if client.pttl(prefix + sid) < (idle - 5) * 1000 or store.get(sid) != data:
            raise CheckFailed("save(sid, data) should replace the data and push the expiry"
                              " back to idle_timeout.")
        client.pexpire(prefix + sid, 100)        # idle past its timeout
        deadline = time.monotonic() + 2
        while client.exists(prefix + sid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if store.get(sid) is not None or other.get(sid) is not None:
            raise CheckFailed("Once Redis expired the key, get() should return None, but it"
                              " still returned the session.")
        ghost = "x" + _word(rng, 30)
        try:
            store.save(ghost, {"user": "mallory"})
        except KeyError:
            pass
        if client.exists(prefix + ghost) or store.get(ghost) is not None:
            raise CheckFailed(
                "save() of an id the store never issued (or that expired) created a"
                " session under it: an attacker could choose their victim's session id."
                " Use set(..., xx=True), and raise KeyError or do nothing.")
        # A session that expires while save() runs, between a check and its SET.
        racing = _ExpiresWhileSaving(redis_server.client())
        racer = store_class(racing, idle_timeout=idle, prefix=prefix)
        doomed = racer.new({"user": user})
        racing.armed = prefix + doomed
        try:
            racer.save(doomed, {"user": "mallory"})
        except KeyError:
            pass
        fired, racing.armed = racing.armed is None, None   # None: it expired mid-save
        if fired and client.exists(prefix + doomed):
            raise CheckFailed(
                "A session that expired while save() was running came back to life: save()"
                " looked the key up, then wrote it with a plain SET, and in between Redis"
                " had expired it. Check and write in one step: set(..., xx=True).")
        for odd in ("", "*", prefix, "../" + _word(rng), "é" * 3, "x" * 3000, ids[0].upper()
                    if ids[0].upper() != ids[0] else ids[0] + "X"):
            if store.get(odd) is not None:
                raise CheckFailed(f"get() of an id that was never issued ({odd[:12]!r}...)"
                                  " should return None.")
            if store.delete(odd) is not False:
                raise CheckFailed(f"delete() of an id that was never issued ({odd[:12]!r}...)"
                                  " should return False (a bool), and delete nothing.")
        if store.get(ids[0]) != {"user": user}:
            raise CheckFailed("Deleting ids that were never issued deleted a real session.")
        gone = ids[1]
        if store.delete(gone) is not True or store.get(gone) is not None:
            raise CheckFailed("delete(sid) of a live session should return True (a bool)"
                              " and make get(sid) None.")
        if other.get(gone) is not None:
            raise CheckFailed("After delete(sid), another store still found the session.")
        if store.delete(gone) is not False:
            raise CheckFailed("delete() of a session that is already gone should return False.")

        name = rng.choice(sorted(social.DEFAULT_USERS))
        make = lambda: social.create_app(store=store_class(redis_server.client(),  # noqa: E731
                                                           idle_timeout=60),
                                         kdf_iterations=1_000)
        with lk.Cluster(make, size=2, name="check-04-redis-app") as cluster, \
                requests.Session() as person:
            login = probe.call("POST", cluster.url + "/login", session=person,
                               json={"username": name, "password": social.DEFAULT_USERS[name]},
                               what="POST /login")
            probe.expect_status(login, 200, "POST /login on an app using your store")
            for _ in range(2):  # round robin: one request on each server
                me = probe.call("GET", cluster.url + "/me", session=person, what="GET /me")
                probe.expect_status(me, 200, "GET /me on both servers (round robin)")
                if probe.body(me).get("user") != name:
                    raise CheckFailed("GET /me answered another user than the one logged in.")
    return ("Your sessions live in Redis, expire when idle, and every server sees them; ids"
            " have 128 random bits or more, are not the `random` module's nor a hash of the"
            " clock; save() never brings back an expired session.")


# ------------------------------------------------------------------ store down: 503
def _expect_down(answer: requests.Response, what: str) -> None:
    if answer.status_code != 503:
        raise CheckFailed(
            f"With the store down, {what} should answer 503, but your app answered"
            f" {probe.describe(answer)}. Catch StoreUnavailable and answer 503.")
    reason = probe.body(answer)
    if not isinstance(reason, dict) or reason.get("error") != "store_unavailable":
        raise CheckFailed(
            f"With the store down, the 503 of {what} should say why, as JSON"
            f" {{'error': 'store_unavailable'}} (exc.reason), but the body was {reason!r}.")
    if not probe.json_kind(answer):
        raise CheckFailed(f"The 503 of {what} should be JSON (Content-Type:"
                          " application/json): return a dict, not a string.")


@question("04.store_down", points=2, hints=[
    "When Redis is down, RedisSessionStore raises StoreUnavailable, and Flask turns an"
    " unhandled exception into a 500. Register an error handler for it.",
    "app.register_error_handler(StoreUnavailable, handler), where the handler returns"
    " ({'error': exc.reason}, 503). Handle that exception only: a 404 or a wrong"
    " password must keep their own answers.",
])
def store_down(make_app: Callable[[Any], Any]) -> str:
    "Make the app answer 503 with a reason while the store is down, and recover."
    from ..apps import social
    from ..state.redis import RedisServer, RedisSessionStore

    probe.expect_factory(make_app, example="make_app")
    rng = context().rng
    name = rng.choice(sorted(social.DEFAULT_USERS))
    credentials = {"username": name, "password": social.DEFAULT_USERS[name]}
    with RedisServer(name="check-04-down") as redis_server:
        sessions = RedisSessionStore(redis_server, idle_timeout=60)
        with probe.serve_factory(lambda: make_app(sessions), name="check-04-down-app") as app, \
                requests.Session() as person:
            url = app.url

            def call(method: str, path: str, **options: Any) -> requests.Response:
                return probe.call(method, url + path, session=person,
                                  what=f"{method} {path}", **options)

            def normal_answers(when: str) -> None:
                missing = call("GET", f"/{_word(rng)}")
                probe.expect_status(missing, 404, f"GET of an unknown path {when}")
                bad = call("POST", "/login", json={**credentials, "password": _word(rng)})
                probe.expect_status(bad, 401, f"POST /login with a wrong password {when}")

            probe.expect_status(call("POST", "/login", json=credentials), 200,
                                "POST /login while the store is up")
            normal_answers("while the store is up")
            client = redis_server.client()
            for value in {c.value for c in person.cookies}:   # a corrupt session: a bug,
                if client.exists(sessions.prefix + value):     # not an outage
                    client.set(sessions.prefix + value, "{not json", ex=60)
            corrupt = call("GET", "/me")
            if corrupt.status_code == 503:
                raise CheckFailed(
                    "With the store up but a corrupt session in it, GET /me answered 503:"
                    " your app says the store is down when it is not. Handle"
                    " StoreUnavailable only; other errors keep their own answers.")
            probe.expect_status(call("POST", "/login", json=credentials), 200,
                                "POST /login while the store is up")
            for cycle in range(2):  # down, back, and down again
                redis_server.kill()
                probes = [("GET", "/me", {}), ("POST", "/login", {"json": credentials}),
                          ("POST", "/logout", {})]
                rng.shuffle(probes)
                for method, path, options in probes:
                    _expect_down(call(method, path, **options),
                                 f"{method} {path}" + (" (the second outage)" if cycle else ""))
                posts = call("GET", "/posts")
                probe.expect_status(posts, 200, "GET /posts (it needs no session) while the"
                                    " store is down")
                redis_server.revive()  # back, and empty: kill -9 kept nothing
                back = call("GET", "/me")
                if back.status_code != 401:
                    raise CheckFailed(
                        "Once the store is back (empty), GET /me with the old cookie should"
                        f" answer 401, but your app answered {probe.describe(back)}.")
                probe.expect_status(call("POST", "/login", json=credentials), 200,
                                    "POST /login once the store is back")
                me = call("GET", "/me")
                probe.expect_status(me, 200, "GET /me after logging in again")
                normal_answers("once the store is back")
    return "503 with a reason while the store is down, and back to normal without a restart."
