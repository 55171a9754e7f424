"""Balancing policies: how the balancer picks a server for each request.

A policy is any object with one method::

    def choose(self, request, servers):
        return servers[0]          # one of `servers`

* ``request`` is a :class:`RequestInfo`: ``method``, ``path``, ``headers`` (names in
  lower case), ``cookies`` and ``client_id`` (the ``X-Client-Id`` header, or the
  client's address).
* ``servers`` is the list of **live** backends, in order (``s1``, ``s2``, ...). Each
  has ``name``, ``active`` (requests in flight) and ``served`` (requests so far).

The balancer calls ``choose`` under a lock, so a policy need not be thread-safe.
A policy that sets ``cookie = "NAME"`` asks the balancer to pin clients: the
balancer sends ``Set-Cookie: NAME=<server name>`` whenever the request's cookie does
not already name the chosen server (HAProxy calls this ``cookie NAME insert``).

Write your own in a few lines::

    class FirstLive:
        def choose(self, request, servers):
            return servers[0]

    lk.Cluster(make_app, balancer=FirstLive())
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from ..errors import UnknownPolicyError

__all__ = [
    "Backend",
    "ConsistentHash",
    "LeastConnections",
    "Policy",
    "RequestInfo",
    "RoundRobin",
    "Sticky",
    "by_name",
]

STICKY_COOKIE = "LKSERVER"


@dataclass
class RequestInfo:
    """What a policy may look at to place one request."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    client_id: str = ""


@dataclass
class Backend:
    """The balancer's view of one server."""

    name: str
    alive: bool = True
    active: int = 0
    served: int = 0
    errors: int = 0

    def __repr__(self) -> str:
        return f"<Backend {self.name} {'up' if self.alive else 'down'}>"


class Policy(Protocol):
    def choose(self, request: RequestInfo, servers: Sequence[Backend]) -> Backend: ...


class RoundRobin:
    """Each server in turn: s1, s2, s3, s1, ..."""

    name = "round_robin"

    def __init__(self) -> None:
        self._turn = 0

    def choose(self, request: RequestInfo, servers: Sequence[Backend]) -> Backend:
        server = servers[self._turn % len(servers)]
        self._turn += 1
        return server


class LeastConnections:
    """The server with the fewest requests in flight (ties: the least used)."""

    name = "least_connections"

    def choose(self, request: RequestInfo, servers: Sequence[Backend]) -> Backend:
        return min(servers, key=lambda s: (s.active, s.served))


class Sticky:
    """Pin each client to one server with a cookie, as HAProxy's ``cookie insert``.

    A client without a pin, or pinned to a server that is down, is placed by the
    ``fallback`` policy (round robin unless told otherwise) and pinned again.
    """

    name = "sticky"

    def __init__(self, *, cookie: str = STICKY_COOKIE, fallback: Policy | None = None):
        self.cookie = cookie
        self.fallback = fallback or RoundRobin()

    def choose(self, request: RequestInfo, servers: Sequence[Backend]) -> Backend:
        pinned = request.cookies.get(self.cookie)
        for server in servers:
            if server.name == pinned:
                return server
        return self.fallback.choose(request, servers)


class ConsistentHash:
    """Hash a client key onto a ring of servers (with virtual nodes).

    The same key always lands on the same live server; when a server dies only its
    own keys move (to the next server on the ring), and they come back when it does.
    ``key`` picks what to hash; by default the client id (``X-Client-Id``).
    """

    name = "hash"

    def __init__(self, *, key: Callable[[RequestInfo], str] | None = None,
                 replicas: int = 64) -> None:
        self.key = key or (lambda request: request.client_id)
        self.replicas = replicas
        self._ring: list[tuple[int, str]] = []
        self._names: tuple[str, ...] = ()

    @staticmethod
    def _hash(text: str) -> int:
        # Python's hash() changes between runs; md5 does not (no security role here).
        return int.from_bytes(hashlib.md5(text.encode()).digest()[:8], "big")

    def _ring_for(self, names: tuple[str, ...]) -> list[tuple[int, str]]:
        if names != self._names:
            self._names = names
            self._ring = sorted(
                (self._hash(f"{name}#{i}"), name)
                for name in names for i in range(self.replicas))
        return self._ring

    def choose(self, request: RequestInfo, servers: Sequence[Backend]) -> Backend:
        # The ring is built over the live servers: removing one only remaps the keys
        # that were on its arcs; everyone else keeps their server.
        ring = self._ring_for(tuple(s.name for s in servers))
        point = self._hash(self.key(request))
        index = bisect.bisect(ring, (point, "")) % len(ring)
        name = ring[index][1]
        return next(s for s in servers if s.name == name)


_BY_NAME: dict[str, Callable[[], Policy]] = {
    "round_robin": RoundRobin,
    "least_connections": LeastConnections,
    "sticky": Sticky,
    "hash": ConsistentHash,
}


def by_name(policy: str | Policy) -> Policy:
    """Return a policy object for a name such as ``"sticky"`` (objects pass through)."""
    if isinstance(policy, str):
        try:
            return _BY_NAME[policy]()
        except KeyError:
            raise UnknownPolicyError(
                f"Unknown balancing policy {policy!r}. Use one of"
                f" {', '.join(map(repr, _BY_NAME))}, or pass an object with a"
                " choose(request, servers) method.") from None
    if not callable(getattr(policy, "choose", None)):
        raise UnknownPolicyError(
            f"{policy!r} is not a balancing policy: it needs a method"
            " choose(request, servers) that returns one of the servers.")
    return policy
