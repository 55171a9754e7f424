"""A cluster: several servers of one app behind the kit's balancer.

    >>> cluster = lk.Cluster(make_app, size=3, balancer="sticky")
    >>> cluster
    <Cluster cluster sticky: s1 up, s2 up, s3 up>
    >>> cluster.kill("s2")
    >>> cluster
    <Cluster cluster sticky: s1 up, s2 down, s3 up>
    >>> cluster.close()

Clients only ever talk to ``cluster.url`` (the balancer). Each server builds its own
app from the factory, so each has its own memory, as separate machines would.
"""

from __future__ import annotations

import html
from typing import Any, Callable

from .. import _lifecycle
from .balancer import Balancer
from ..errors import BadAppError, ServerStartError, UnknownServerError
from .policies import Policy, by_name
from ..serving.server import Server


class ClusterStats(dict):
    """Per-server figures, ``{name: {"alive", "requests", "errors", "sessions"}}``.

    ``requests`` and ``errors`` are counted by the balancer (they survive a crash);
    ``sessions`` is what the live server holds now (``None`` when it is down or
    keeps no count).
    """

    _columns = ("alive", "requests", "errors", "sessions")

    def _rows(self) -> list[list[str]]:
        return [[name] + ["-" if row[c] is None else str(row[c]) for c in self._columns]
                for name, row in self.items()]

    def __repr__(self) -> str:
        header = ["server", *self._columns]
        rows = [header] + self._rows()
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip()
                         for r in rows)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{c}</th>" for c in ("server", *self._columns))
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                       for r in self._rows())
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Cluster:
    """Start ``size`` servers from ``factory`` behind a balancer.

    Args:
        factory: a zero-argument function returning a Flask app.
        size: how many servers (named ``s1``, ``s2``, ...).
        balancer: ``"round_robin"``, ``"least_connections"``, ``"sticky"``,
            ``"hash"``, or your own policy object (see :mod:`labkit.balancing.policies`).
        isolation: ``"thread"`` or ``"process"`` for every server.
        workers, service_time: the capacity model of each server.
        name: the cluster's name; creating a cluster again under the same name
            (a re-run cell) replaces the old one.
    """

    def __init__(self, factory: Callable[[], Any], *, size: int = 3,
                 balancer: str | Policy = "round_robin", isolation: str = "thread",
                 workers: int | None = None, service_time: float = 0.0,
                 name: str = "cluster") -> None:
        from flask import Flask

        if isinstance(factory, Flask) or not callable(factory):
            raise BadAppError(
                "lk.Cluster() needs an app *factory* (a function that returns a new"
                " Flask app), so that each server has its own memory. Pass make_app,"
                " not make_app().")
        if not isinstance(size, int) or size < 1:
            raise ServerStartError(f"A cluster needs size >= 1 servers, not {size!r}.")
        self.policy = by_name(balancer)
        self.name = name
        self._key = f"cluster:{name}"
        _lifecycle.claim(self._key, self)  # a re-run cell replaces the old cluster
        self.servers: list[Server] = []
        self._balancer: Balancer | None = None
        self._closed = False
        try:
            for i in range(1, size + 1):
                server = Server(factory, name=f"s{i}", isolation=isolation,
                                workers=workers, service_time=service_time,
                                registry_key=f"{self._key}/s{i}")
                self.servers.append(server)
                server.start()
            self._balancer = Balancer(self.servers, self.policy).start()
        except BaseException:
            self.close()
            raise

    # -- what a notebook reads ---------------------------------------------------

    @property
    def url(self) -> str:
        """The balancer's address: the only one clients use."""
        return f"http://127.0.0.1:{self._balancer.port if self._balancer else 0}"

    @property
    def balancer(self) -> Balancer:
        return self._balancer

    @property
    def pins(self) -> dict[str, str]:
        """Which server each client (by ``X-Client-Id`` or address) was last sent to."""
        return dict(self._balancer.pins) if self._balancer else {}

    def server(self, name: str) -> Server:
        """The server called ``name`` (``"s1"``, ...)."""
        for server in self.servers:
            if server.name == name:
                return server
        raise UnknownServerError(
            f"Cluster {self.name} has no server {name!r}; its servers are"
            f" {', '.join(s.name for s in self.servers)}.")

    def __getitem__(self, name: str) -> Server:
        return self.server(name)

    def __repr__(self) -> str:
        policy = getattr(self.policy, "name", type(self.policy).__name__)
        if self._closed:
            return f"<Cluster {self.name} {policy} closed>"
        states = ", ".join(f"{s.name} {'up' if s.alive else 'down'}" for s in self.servers)
        return f"<Cluster {self.name} {policy}: {states}>"

    def stats(self) -> ClusterStats:
        """Per server: alive, requests served, errors and live sessions."""
        result = ClusterStats()
        backends = {b.name: b for b in self._balancer.backends} if self._balancer else {}
        for server in self.servers:
            backend = backends.get(server.name)
            alive = server.alive
            result[server.name] = {
                "alive": alive,
                "requests": backend.served if backend else 0,
                "errors": backend.errors if backend else 0,
                "sessions": server.stats()["sessions"] if alive else None,
            }
        return result

    # -- faults -------------------------------------------------------------------

    def kill(self, name: str) -> None:
        """Crash server ``name``: its connections drop and its memory is gone."""
        self.server(name).kill()

    def revive(self, name: str) -> Server:
        """Restart server ``name`` with a fresh app (empty memory)."""
        return self.server(name).revive()

    def draw(self, ax: Any = None, **options: Any) -> Any:
        """Draw clients, balancer and servers (see :func:`labkit.observe.topology.draw`)."""
        from ..observe.topology import draw

        return draw(self, ax=ax, **options)

    # -- lifecycle ----------------------------------------------------------------

    def close(self) -> None:
        """Stop the balancer and every server. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._balancer is not None:
            self._balancer.close()
        for server in self.servers:
            server.close()
        _lifecycle.release(self._key, self)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
