"""Session replication between app servers, with two coherence protocols.

A stateful server loses its sessions when it dies. One way out is to keep a copy of
every session on the other servers too, and to keep those copies *coherent*: when a
session changes on one server, the others must not go on using the old version.
Two classic protocols do that (the same two that CPU caches use):

* **write-update** (:class:`WriteUpdate`): every write is sent, in full, to every
  peer. Reads are always local and free; writes cost one message per peer, each
  carrying the whole session.
* **write-invalidate** (:class:`WriteInvalidate`): a write sends only a short "your
  copy is stale, I own it now" to every peer. A peer that later needs the session
  fetches it from the owner (one message), then reads it locally until the next
  invalidation. While nobody else has fetched a copy, the owner's further writes
  send nothing at all.

A protocol is a small :class:`Replica` subclass: what one server does on a read, on
a write and when a peer's message arrives. Everything else (the HTTP between servers,
counting messages, delaying them) is done here, once, for every protocol. Every
message is a real HTTP request between kit servers, recorded in
:attr:`Replication.messages`; every answer to a client says how many messages its
request caused, in the ``X-Peer-Messages`` header.

    >>> group = Replication("invalidate")          # or your own Replica subclass
    >>> cluster = lk.Cluster(group.factory, size=3, balancer="sticky")
    >>> group.connect(cluster)
    <Replication invalidate: s1, s2, s3; 0 messages>

The app each server runs is a tiny shop: ``POST /login {"user"}`` starts a session
(cookie ``sid``), ``GET /cart`` reads it, ``POST /cart {"item"}`` writes it and
``POST /logout`` ends it. Unknown sessions get ``401 {"error": "unknown_session"}``;
an id that does not have the shape of one this kit issues never reaches a replica or
a peer URL (it could otherwise steer the servers' own messages: ``sid=../update/x``).

What this leaves out, on purpose: two servers writing the *same* session at the same
moment (sticky balancing keeps a client's writes on one server; real systems add
locks or version vectors), and a revived server catching up on sessions written
while it was down (it starts empty, like any restarted process).
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from flask import Flask, g, has_request_context, jsonify, request

from ..errors import BadOptionError, LabkitError
from ..serving.json_api import ApiError, install_json_errors, json_body
from .sessions import is_session_id, new_session_id

__all__ = ["Copy", "Message", "Replica", "Replication", "WriteInvalidate", "WriteUpdate"]

PEER_TIMEOUT = 2.0  # seconds a peer may take to answer one message
MAX_TEXT = 4096    # characters in a user name or a cart item
MAX_CART = 1000    # items in one cart
MAX_BODY = 1024 * 1024  # bytes a server accepts in one request, peer messages included
# A session must fit, with room to spare, in the one peer message that carries it:
# bigger, every peer would answer 413 and its copy would silently stay behind.
MAX_SESSION_BYTES = MAX_BODY // 2
# Message kinds are short lower-case words ("update", "fetch"...): a protocol of your
# own may add kinds, but never one that could change the shape of a URL.
_KIND = re.compile(r"[a-z][a-z_]{0,31}")


@dataclass(frozen=True)
class Message:
    """One message between two servers: what kind, from whom, to whom, how big."""

    kind: str  # "update", "invalidate", "fetch", "delete", ...
    sender: str
    receiver: str
    nbytes: int  # bytes of the JSON body (the session itself, for "update")
    delivered: bool  # False when the receiver could not be reached


@dataclass
class Copy:
    """One server's copy of one session. ``data`` is None when it was invalidated."""

    data: dict | None
    version: int
    owner: str  # the name of the server that holds the latest version
    exclusive: bool = False  # write-invalidate: no peer holds a valid copy now


# ------------------------------------------------------------------------ protocols
class Replica:
    """One server's sessions, and the rules that keep them coherent with its peers.

    A protocol overrides three methods: :meth:`read`, :meth:`write` and
    :meth:`on_message`. To talk to peers it calls ``self.peers()`` (the other
    servers' names) and ``self.send(peer, kind, sid, body)``, which delivers a message
    over HTTP to the peer's :meth:`on_message` and returns its reply (a dict), or
    None when the peer could not be reached or sent nothing back.

    ``self.copies`` maps session id to :class:`Copy`; ``self.lock`` guards it (the
    server answers requests on several threads). Never hold the lock while sending:
    the peer may be sending to you at the same moment.
    """

    def __init__(self, name: str, group: Replication) -> None:
        self.name = name
        self.copies: dict[str, Copy] = {}
        self.lock = threading.Lock()
        self._group = group

    def peers(self) -> list[str]:
        """The names of the other servers of the group."""
        return self._group.peers_of(self.name)

    def send(self, peer: str, kind: str, sid: str, body: dict | None = None) -> dict | None:
        """Send one message to ``peer``; return its reply, or None."""
        if not _KIND.fullmatch(kind):
            raise LabkitError(f"A message kind is a short lower-case word like 'update',"
                              f" not {kind!r}.")
        return self._group._send(kind, self.name, peer, sid, body or {})

    def read(self, sid: str) -> dict | None:
        """The session's data, or None when this server cannot find it."""
        raise NotImplementedError

    def write(self, sid: str, data: dict) -> None:
        """Store a new version of the session and tell the peers what they must know."""
        raise NotImplementedError

    def on_message(self, kind: str, sid: str, body: dict, sender: str) -> dict | None:
        """Handle a peer's message; what you return is the reply ``send`` gives back."""
        if kind == "delete":
            with self.lock:
                self.copies.pop(sid, None)
        return None

    def delete(self, sid: str) -> None:
        """Forget the session here and on every peer (logout)."""
        with self.lock:
            self.copies.pop(sid, None)
        for peer in self.peers():
            self.send(peer, "delete", sid)

    def __len__(self) -> int:  # the sessions this server could answer from memory
        with self.lock:
            return sum(1 for c in self.copies.values() if c.data is not None)


class WriteUpdate(Replica):
    """Write-update: send every new version, in full, to every peer."""

    def read(self, sid: str) -> dict | None:
        with self.lock:
            copy = self.copies.get(sid)
        return copy.data if copy else None  # always up to date (unless a message is late)

    def write(self, sid: str, data: dict) -> None:
        with self.lock:
            old = self.copies.get(sid)
            version = (old.version if old else 0) + 1
            self.copies[sid] = Copy(data, version, owner=self.name)
        for peer in self.peers():  # the whole session goes to every peer
            self.send(peer, "update", sid, {"data": data, "version": version})

    def on_message(self, kind: str, sid: str, body: dict, sender: str) -> dict | None:
        if kind == "update":
            with self.lock:
                old = self.copies.get(sid)
                if old is None or body["version"] > old.version:  # never go back in time
                    self.copies[sid] = Copy(body["data"], body["version"], owner=sender)
            return None
        return super().on_message(kind, sid, body, sender)


class WriteInvalidate(Replica):
    """Write-invalidate: tell peers their copy is stale; they fetch from the owner."""

    def read(self, sid: str) -> dict | None:
        with self.lock:
            copy = self.copies.get(sid)
        if copy is None:
            return None
        if copy.data is not None:
            return copy.data  # a valid local copy: free
        reply = self.send(copy.owner, "fetch", sid)  # invalidated: ask the owner
        if reply is None:
            return None  # the owner is gone, and the only fresh copy with it
        with self.lock:
            self.copies[sid] = Copy(reply["data"], reply["version"], owner=copy.owner)
        return reply["data"]

    def write(self, sid: str, data: dict) -> None:
        with self.lock:
            old = self.copies.get(sid)
            version = (old.version if old else 0) + 1
            # If we own it and nobody fetched it since our last invalidation, every
            # peer's copy is already invalid: there is nothing to send.
            quiet = old is not None and old.exclusive
            self.copies[sid] = Copy(data, version, owner=self.name, exclusive=True)
        if not quiet:
            for peer in self.peers():  # just "yours is stale; I own it now"
                self.send(peer, "invalidate", sid, {"version": version})

    def on_message(self, kind: str, sid: str, body: dict, sender: str) -> dict | None:
        with self.lock:
            copy = self.copies.get(sid)
            if kind == "invalidate":
                if copy is None or body["version"] > copy.version:
                    self.copies[sid] = Copy(None, body["version"], owner=sender)
                return None
            if kind == "fetch":
                if copy is None or copy.data is None:
                    return None
                copy.exclusive = False  # a peer holds a copy now: next write invalidates
                return {"data": copy.data, "version": copy.version}
        return super().on_message(kind, sid, body, sender)


PROTOCOLS = {"update": WriteUpdate, "invalidate": WriteInvalidate}


# ------------------------------------------------------------------------ the group
class Replication:
    """A group of servers that replicate their sessions with one protocol.

    Args:
        protocol: ``"update"``, ``"invalidate"``, or a :class:`Replica` subclass of
            your own.

    Use :meth:`factory` as the app factory of a cluster (or of ``lk.serve``), then
    :meth:`connect` the servers so each knows its peers. Servers must use
    ``isolation="thread"`` (the default): the message log lives in this process.
    """

    def __init__(self, protocol: str | type[Replica] = "update") -> None:
        if isinstance(protocol, str):
            if protocol not in PROTOCOLS:
                raise BadOptionError(f"protocol must be one of {sorted(PROTOCOLS)} or a "
                                 f"Replica subclass, not {protocol!r}")
            self.protocol, self.replica_class = protocol, PROTOCOLS[protocol]
        elif isinstance(protocol, type) and issubclass(protocol, Replica):
            self.protocol, self.replica_class = protocol.__name__, protocol
        else:
            raise BadOptionError(f"protocol must be 'update', 'invalidate' or a Replica "
                             f"subclass, not {protocol!r}")
        self.key = secrets.token_hex(32)  # peers prove they are peers with it
        self.messages: list[Message] = []
        self._servers: list[Any] = []
        self._delays: dict[str, float] = {}
        self._late: list[threading.Thread] = []
        self._lock = threading.Lock()

    def connect(self, cluster_or_servers: Any) -> Replication:
        """Tell the servers of a cluster (or a list of servers) about each other."""
        servers = list(getattr(cluster_or_servers, "servers", cluster_or_servers))
        if any(getattr(s, "isolation", "thread") != "thread" for s in servers):
            raise LabkitError(
                "Replication keeps its message log in this process: start the servers "
                "with isolation='thread' (the default)."
            )
        self._servers = servers
        return self

    def peers_of(self, name: str) -> list[str]:
        return [s.name for s in self._servers if s.name != name]

    def _name_at(self, port: int) -> str:
        """Which server of the group listens on this port (a server's own identity)."""
        for server in self._servers:
            if server.port == port:
                return server.name
        raise LabkitError("This server is not in the group: call group.connect() first.")

    def delay(self, server: Any, seconds: float) -> None:
        """Make every message *to* ``server`` arrive ``seconds`` late (0: on time).

        A late message is sent in the background and its sender gets no reply (None):
        the writer does not wait, as a replication that does not wait for slow peers
        would behave.
        """
        self._delays[getattr(server, "name", server)] = float(seconds)

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until every late message has been delivered."""
        deadline = time.monotonic() + timeout
        while self._late:
            self._late.pop().join(max(0.0, deadline - time.monotonic()))

    def count(self, kind: str | None = None) -> int:
        """How many messages were sent (of one kind, or all)."""
        return sum(1 for m in self.messages if kind in (None, m.kind))

    def reset(self) -> None:
        """Forget the message log (to measure one experiment at a time)."""
        self.settle()
        self.messages.clear()

    def __repr__(self) -> str:
        names = ", ".join(s.name for s in self._servers) or "no servers"
        return f"<Replication {self.protocol}: {names}; {len(self.messages)} messages>"

    # ---------------------------------------------------------------- messages
    def _send(self, kind: str, sender: str, receiver: str, sid: str, body: dict) -> dict | None:
        if has_request_context():  # counted for the client request that caused it
            g.peer_messages = g.get("peer_messages", 0) + 1
        late = self._delays.get(receiver, 0.0)
        if late:
            def deliver() -> None:
                time.sleep(late)
                self._deliver(kind, sender, receiver, sid, body)
            thread = threading.Thread(target=deliver, name="labkit-late-message", daemon=True)
            self._late.append(thread)
            thread.start()
            return None
        return self._deliver(kind, sender, receiver, sid, body)

    def _deliver(self, kind: str, sender: str, receiver: str, sid: str, body: dict) -> dict | None:
        """One real HTTP request to the peer; its JSON reply, or None."""
        data = json.dumps(body, separators=(",", ":")).encode()
        url = next((s.url for s in self._servers if s.name == receiver), None)
        reply = None
        try:
            # The id went through is_session_id already; quoting each part anyway means
            # no value can ever add a path segment ("../update/x") to a peer URL.
            path = f"/peer/{quote(kind, safe='')}/{quote(sid, safe='')}"
            answer = requests.post(f"{url}{path}", data=data, timeout=PEER_TIMEOUT,
                                   headers={"X-Peer-Key": self.key, "X-Peer-From": sender,
                                            "Content-Type": "application/json"})
            delivered = answer.ok
            reply = answer.json().get("reply") if answer.ok else None
        except (requests.RequestException, ValueError):
            delivered = False
        with self._lock:
            self.messages.append(Message(kind, sender, receiver, len(data), delivered))
        return reply

    # ---------------------------------------------------------------- the app
    def factory(self) -> Flask:
        """Build one server's app: its own memory, replicated to its peers.

        Every value a client chooses is checked before it goes anywhere: the ``sid``
        cookie must have the shape of an id this kit issues (:func:`is_session_id`)
        before it reaches a replica or a peer URL, and bodies are read with
        :func:`~labkit.serving.json_api.json_body` (4xx with a reason, never a 500).
        """
        group = self
        holder: dict[str, Replica] = {}  # the replica, made once we know our name
        made = threading.Lock()
        app = Flask("labkit.replication")
        app.config["LABKIT_SESSION_COOKIE"] = "sid"
        app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
        app.extensions["labkit.sessions"] = _Sized(holder)
        install_json_errors(app)

        def replica() -> Replica:
            with made:  # the port we listen on tells us who we are
                if "r" not in holder:
                    name = group._name_at(int(request.environ["SERVER_PORT"]))
                    holder["r"] = group.replica_class(name, group)
                return holder["r"]

        @app.after_request
        def count_messages(response):
            response.headers["X-Peer-Messages"] = str(g.get("peer_messages", 0))
            return response

        def session_id() -> str:
            """The client's session id, if it has the shape of one; else 401."""
            sid = request.cookies.get("sid", "")
            if not is_session_id(sid):
                raise ApiError(401, "unknown_session", "Log in first: POST /login.")
            return sid

        def text(body: dict, field: str) -> str:
            value = body[field]
            if not value or len(value) > MAX_TEXT:
                raise ApiError(422, "wrong_shape",
                               f"{field!r} must be 1 to {MAX_TEXT} characters.")
            return value

        # -- what clients call ---------------------------------------------------
        @app.post("/login")
        def login():
            user = text(json_body(user=str), "user")
            sid = new_session_id()
            replica().write(sid, {"user": user, "cart": []})
            response = jsonify(user=user)
            response.set_cookie("sid", sid, httponly=True, samesite="Lax")
            return response

        @app.get("/cart")
        def show_cart():
            data = replica().read(session_id())
            if data is None:
                raise ApiError(401, "unknown_session", "Log in first: POST /login.")
            return jsonify(data)

        @app.post("/cart")
        def add_to_cart():
            sid = session_id()
            data = replica().read(sid)
            if data is None:
                raise ApiError(401, "unknown_session", "Log in first: POST /login.")
            item = text(json_body(item=str), "item")
            if len(data["cart"]) >= MAX_CART:
                raise ApiError(422, "cart_full", f"A cart holds at most {MAX_CART} items.")
            data = {**data, "cart": [*data["cart"], item]}
            if len(json.dumps(data, separators=(",", ":"))) > MAX_SESSION_BYTES:
                raise ApiError(422, "cart_full", "This cart is too big to copy to the"
                               " other servers; remove something first.")
            replica().write(sid, data)
            return jsonify(data)

        @app.post("/logout")
        def logout():
            sid = request.cookies.get("sid", "")
            if is_session_id(sid):
                replica().delete(sid)
            response = jsonify(logged_out=True)
            response.delete_cookie("sid")
            return response

        # -- what peers call (never clients: the group key proves a peer) ---------
        @app.post("/peer/<kind>/<sid>")
        def from_peer(kind: str, sid: str):
            # Compare bytes: compare_digest refuses a str with non-ASCII characters
            # (a TypeError, so a 500). WSGI header values are latin-1 strings.
            sent = request.headers.get("X-Peer-Key", "").encode("latin-1", "replace")
            if not hmac.compare_digest(sent, group.key.encode()):
                raise ApiError(403, "peers_only", "Only the servers of the group may"
                               " send peer messages.")
            if not _KIND.fullmatch(kind) or not is_session_id(sid):
                raise ApiError(404, "not_found", "No such peer message.")
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                raise ApiError(422, "wrong_shape", "A peer message is a JSON object.")
            try:
                reply = replica().on_message(kind, sid, body,
                                             request.headers.get("X-Peer-From", ""))
            except (KeyError, TypeError, ValueError):
                # a message without the fields its kind needs (a "version", a "data")
                raise ApiError(422, "bad_peer_message", f"A {kind!r} message without"
                               " the fields it needs.") from None
            return jsonify(reply=reply)

        return app


class _Sized:
    """What the kit counts as this server's sessions: the replica's usable copies."""

    def __init__(self, holder: dict[str, Replica]) -> None:
        self._holder = holder

    def __len__(self) -> int:
        replica = self._holder.get("r")
        try:
            return len(replica) if replica is not None else 0
        except TypeError:  # a learner's replica without __len__
            return 0
