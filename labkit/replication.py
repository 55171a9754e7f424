"""Session replication between app servers, with two coherence protocols.

A stateful server loses its sessions when it dies. One way out is to keep a copy of
every session on the other servers too, and to keep those copies *coherent*: when a
session changes on one server, the others must not go on using the old version.
Two classic protocols do that (the same two that CPU caches use):

* **write-update**: every write is sent, in full, to every peer. Reads are always
  local and free; writes cost one message per peer, each carrying the whole session.
* **write-invalidate**: a write sends only a short "your copy is stale, I own it now"
  to every peer. A peer that later needs the session fetches it from the owner
  (one message), then reads it locally until the next invalidation. While nobody
  else has fetched a copy, the owner's further writes send nothing at all.

Every message here is a real HTTP request between kit servers, and every one is
recorded in :attr:`Replication.messages`. Each answer to a client also says how many
messages its request caused, in the ``X-Peer-Messages`` header.

    >>> group = Replication("invalidate")
    >>> cluster = lk.Cluster(group.factory, size=3, balancer="sticky")
    >>> group.connect(cluster)
    <Replication invalidate: s1, s2, s3; 0 messages>

The app each server runs is a tiny shop: ``POST /login {"user"}`` starts a session
(cookie ``sid``), ``GET /cart`` reads it, ``POST /cart {"item"}`` writes it and
``POST /logout`` ends it. Unknown sessions get ``401 {"error": "unknown_session"}``.

What this leaves out, on purpose: two servers writing the *same* session at the same
moment (sticky balancing keeps a client's writes on one server; real systems add
locks or version vectors), and a revived server catching up on sessions written
while it was down (it starts empty, like any restarted process).
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
from flask import Flask, jsonify, request

from .errors import LabkitError

__all__ = ["Message", "Replication", "PROTOCOLS"]

PROTOCOLS = ("update", "invalidate")
PEER_TIMEOUT = 2.0  # seconds a peer may take to answer one message


@dataclass(frozen=True)
class Message:
    """One message between two servers: what kind, from whom, to whom, how big."""

    kind: str  # "update", "invalidate", "fetch" or "delete"
    sender: str
    receiver: str
    nbytes: int  # bytes of the JSON body (the session itself, for "update")
    delivered: bool  # False when the receiver could not be reached


@dataclass
class _Copy:
    """One server's copy of one session. ``data`` is None when it was invalidated."""

    data: dict | None
    version: int
    owner: str  # the name of the server that holds the latest version
    exclusive: bool = False  # owner only: no peer holds a valid copy right now


class Replication:
    """A group of servers that replicate their sessions with ``protocol``.

    Args:
        protocol: ``"update"`` (write-update) or ``"invalidate"`` (write-invalidate).

    Use :meth:`factory` as the app factory of a cluster (or of ``lk.serve``), then
    :meth:`connect` the servers so each knows its peers.
    """

    def __init__(self, protocol: str = "update") -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
        self.protocol = protocol
        self.key = secrets.token_hex(16)  # peers prove they are peers with it
        self.messages: list[Message] = []
        self._servers: list[Any] = []
        self._delays: dict[str, float] = {}
        self._late: list[threading.Thread] = []
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- the group
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

    def _name_at(self, port: int) -> str:
        """Which server of the group listens on this port (a server's own identity)."""
        for server in self._servers:
            if server.port == port:
                return server.name
        raise LabkitError("this server is not in the group: call group.connect() first")

    def _server(self, name: str) -> Any:
        return next(s for s in self._servers if s.name == name)

    def peers_of(self, name: str) -> list[str]:
        return [s.name for s in self._servers if s.name != name]

    def delay(self, server: Any, seconds: float) -> None:
        """Make every message *to* ``server`` arrive ``seconds`` late (0: on time).

        A late message is sent in the background: the writer does not wait for it,
        as a replication that does not wait for slow peers would behave.
        """
        name = getattr(server, "name", server)
        self._delays[name] = float(seconds)

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
    def _send(self, kind: str, sender: str, receiver: str, method: str, path: str,
              body: dict | None = None) -> requests.Response | None:
        """Send one message now; return the reply, or None if nobody answered."""
        data = json.dumps(body).encode() if body is not None else b""
        try:
            reply = requests.request(
                method, self._server(receiver).url + path, data=data, timeout=PEER_TIMEOUT,
                headers={"X-Peer-Key": self.key, "X-Peer-From": sender,
                         "Content-Type": "application/json"})
        except requests.RequestException:
            reply = None
        with self._lock:
            self.messages.append(Message(kind, sender, receiver, len(data), reply is not None))
        return reply

    def _broadcast(self, kind: str, sender: str, method: str, path: str, body: dict) -> int:
        """Send one message to every peer (late ones in the background); return how many."""
        peers = self.peers_of(sender)
        for peer in peers:
            late = self._delays.get(peer, 0.0)
            if late:
                def deliver(peer: str = peer, late: float = late) -> None:
                    time.sleep(late)
                    self._send(kind, sender, peer, method, path, body)
                thread = threading.Thread(target=deliver, name="labkit-late-message", daemon=True)
                self._late.append(thread)
                thread.start()
            else:
                self._send(kind, sender, peer, method, path, body)
        return len(peers)

    # ---------------------------------------------------------------- the app
    def factory(self) -> Flask:
        """Build one server's app: its own memory, replicated to its peers."""
        group = self
        copies: dict[str, _Copy] = {}  # this server's memory: sid -> its copy
        lock = threading.Lock()
        app = Flask("labkit.replication")
        app.config["LABKIT_SESSION_COOKIE"] = "sid"
        app.extensions["labkit.sessions"] = _Counter(copies)

        def me() -> str:  # the port we listen on tells us who we are
            return group._name_at(int(request.environ["SERVER_PORT"]))

        def read(sid: str) -> tuple[dict | None, int]:
            """The session's data and how many messages it took to get it."""
            with lock:
                copy = copies.get(sid)
            if copy is None:
                return None, 0
            if copy.data is not None:
                return copy.data, 0  # a valid local copy: free
            # Invalidated: fetch the latest version from its owner (write-invalidate).
            reply = group._send("fetch", me(), copy.owner, "GET", f"/peer/session/{sid}")
            if reply is None or reply.status_code != 200:
                return None, 1  # the owner is gone, and the only fresh copy with it
            fresh = reply.json()
            with lock:
                copies[sid] = _Copy(fresh["data"], fresh["version"], copy.owner)
            return fresh["data"], 1

        def write(sid: str, data: dict) -> int:
            """Store a new version here, then tell the peers; return messages sent."""
            with lock:
                old = copies.get(sid)
                version = (old.version if old else 0) + 1
                # Write-invalidate: if we own it and nobody fetched it since our last
                # invalidation, every peer's copy is already invalid. Nothing to send.
                quiet = group.protocol == "invalidate" and old is not None and old.exclusive
                copies[sid] = _Copy(data, version, owner=me(),
                                    exclusive=group.protocol == "invalidate")
            if group.protocol == "update":  # the whole session goes to every peer
                body = {"data": data, "version": version}
                return group._broadcast("update", me(), "PUT", f"/peer/session/{sid}", body)
            if quiet:
                return 0
            body = {"owner": me(), "version": version}  # just "yours is stale"
            return group._broadcast("invalidate", me(), "POST", f"/peer/invalidate/{sid}", body)

        def answer(payload: dict, messages: int, status: int = 200):
            response = jsonify(payload)
            response.status_code = status
            response.headers["X-Peer-Messages"] = str(messages)
            return response

        # -- what clients call ---------------------------------------------------
        @app.post("/login")
        def login():
            user = str((request.get_json(silent=True) or {}).get("user", ""))
            if not user:
                return answer({"error": "user_required"}, 0, 422)
            sid = secrets.token_urlsafe(32)
            response = answer({"user": user}, write(sid, {"user": user, "cart": []}))
            response.set_cookie("sid", sid, httponly=True, samesite="Lax")
            return response

        @app.get("/cart")
        def show_cart():
            data, sent = read(request.cookies.get("sid", ""))
            if data is None:
                return answer({"error": "unknown_session"}, sent, 401)
            return answer(data, sent)

        @app.post("/cart")
        def add_to_cart():
            sid = request.cookies.get("sid", "")
            data, sent = read(sid)
            if data is None:
                return answer({"error": "unknown_session"}, sent, 401)
            item = str((request.get_json(silent=True) or {}).get("item", ""))
            data = {**data, "cart": [*data["cart"], item]}
            return answer(data, sent + write(sid, data))

        @app.post("/logout")
        def logout():
            sid = request.cookies.get("sid", "")
            with lock:
                copies.pop(sid, None)
            sent = group._broadcast("delete", me(), "DELETE", f"/peer/session/{sid}", {})
            response = answer({"logged_out": True}, sent)
            response.delete_cookie("sid")
            return response

        # -- what peers call (never clients: the group key proves a peer) ---------
        @app.before_request
        def peers_only():
            if request.path.startswith("/peer/") and not hmac.compare_digest(
                    request.headers.get("X-Peer-Key", ""), group.key):
                return answer({"error": "peers_only"}, 0, 403)

        @app.put("/peer/session/<sid>")
        def receive_update(sid: str):
            body = request.get_json()
            with lock:
                old = copies.get(sid)
                if old is None or body["version"] > old.version:  # never go back in time
                    copies[sid] = _Copy(body["data"], body["version"], request.headers["X-Peer-From"])
            return answer({"ok": True}, 0)

        @app.post("/peer/invalidate/<sid>")
        def receive_invalidate(sid: str):
            body = request.get_json()
            with lock:
                old = copies.get(sid)
                if old is None or body["version"] > old.version:
                    copies[sid] = _Copy(None, body["version"], body["owner"])
            return answer({"ok": True}, 0)

        @app.get("/peer/session/<sid>")
        def serve_copy(sid: str):
            with lock:
                copy = copies.get(sid)
                if copy is None or copy.data is None:
                    return answer({"error": "no_valid_copy"}, 0, 404)
                copy.exclusive = False  # a peer holds a copy now: next write invalidates
                return answer({"data": copy.data, "version": copy.version}, 0)

        @app.delete("/peer/session/<sid>")
        def receive_delete(sid: str):
            with lock:
                copies.pop(sid, None)
            return answer({"ok": True}, 0)

        return app


class _Counter:
    """What the kit counts as this server's sessions: the copies it can use now."""

    def __init__(self, copies: dict[str, _Copy]) -> None:
        self._copies = copies

    def __len__(self) -> int:
        return sum(1 for c in list(self._copies.values()) if c.data is not None)
