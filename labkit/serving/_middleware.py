"""The thin WSGI layer the kit puts around every app it serves.

It does four jobs, all outside the learner's app:

* stamps every response with ``X-Served-By: <server name>``;
* keeps a structured request log (never printed, never the raw session id);
* models capacity: at most ``workers`` requests are worked on at once, each taking
  ``service_time`` seconds, so a laptop can imitate a server farm faithfully;
* answers the kit's own endpoints under ``/__labkit__/`` (readiness, log, stats),
  which the app never sees;
* trusts ``X-Forwarded-For`` only from the kit's balancer.

How a server knows a request came through the balancer: every server and
balancer of this Python process share a random secret (:func:`balancer_proof`);
the balancer sends it in ``X-Labkit-Balancer`` and drops any copy a client sent.
A request that carries it gets ``REMOTE_ADDR`` set to the address the balancer
saw (what werkzeug's ProxyFix does for one trusted proxy), and is never answered
by the kit's own endpoints, however its path is spelled. Any other request loses
its ``X-Forwarded-For``, ``Forwarded`` and ``X-Real-IP`` headers: a client cannot
pick the address that the request log and the app see. The secret itself is
removed before the app runs, so no app can echo it.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import io
import json
import secrets
import threading
import time
from http.cookies import CookieError, SimpleCookie
from typing import Any, Callable, Iterable

INTERNAL_PREFIX = "/__labkit__/"
LOG_LIMIT = 20_000  # entries kept per server; the oldest fall off
PROOF_HEADER = "X-Labkit-Balancer"
_PROOF_ENVIRON = "HTTP_X_LABKIT_BALANCER"
_PROOF = secrets.token_urlsafe(32)  # forked servers inherit it; clients never see it
_CLIENT_SET = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


def balancer_proof() -> str:
    """The secret the kit's balancer sends so that servers trust its headers."""
    return _PROOF


def _via_balancer(environ: dict) -> bool:
    """Check (and remove) the balancer's proof; drop forwarding headers without it."""
    proof = environ.pop(_PROOF_ENVIRON, "")
    if proof and hmac.compare_digest(proof.encode("latin-1"), _PROOF.encode()):
        forwarded = environ.get("HTTP_X_FORWARDED_FOR", "").strip()
        if forwarded:
            environ["labkit.peer"] = environ.get("REMOTE_ADDR", "")
            environ["REMOTE_ADDR"] = forwarded
        return True
    for key in _CLIENT_SET:
        environ.pop(key, None)
    return False


def session_hash(raw_id: str) -> str:
    """A short, stable fingerprint of a session id, safe to write in a log."""
    return hashlib.sha256(raw_id.encode()).hexdigest()[:16]


class _ErrorSink(io.TextIOBase):
    """Stands in for ``wsgi.errors``: tracebacks go to the log, not into a cell."""

    def __init__(self, errors: collections.deque[str]) -> None:
        self._errors = errors

    def write(self, text: str) -> int:
        if text.strip():
            self._errors.append(text)
        return len(text)


class KitMiddleware:
    """Wrap a Flask (WSGI) app with the kit's stamp, log and capacity model."""

    def __init__(
        self,
        app: Any,
        *,
        name: str,
        workers: int | None = None,
        service_time: float = 0.0,
    ) -> None:
        self.app = app
        self.name = name
        self.service_time = service_time
        self._slots = threading.BoundedSemaphore(workers) if workers else None
        self._lock = threading.Lock()
        self.log: collections.deque[dict] = collections.deque(maxlen=LOG_LIMIT)
        self.errors: collections.deque[str] = collections.deque(maxlen=200)
        self._sink = _ErrorSink(self.errors)
        self.requests = 0
        self.failures = 0
        config = getattr(app, "config", {})
        self.cookie_name = config.get("LABKIT_SESSION_COOKIE") or config.get(
            "SESSION_COOKIE_NAME", "session"
        )

    # -- what the kit itself reads ------------------------------------------------

    def sessions(self) -> int | None:
        """Live sessions, if the app registered a sized store (see module docs)."""
        store = getattr(self.app, "extensions", {}).get("labkit.sessions")
        try:
            return len(store) if store is not None else None
        except Exception:
            return None

    def stats(self) -> dict:
        with self._lock:
            return {
                "requests": self.requests,
                "errors": self.failures,
                "sessions": self.sessions(),
            }

    # -- WSGI ------------------------------------------------------------------------

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        via_balancer = _via_balancer(environ)
        if path.startswith(INTERNAL_PREFIX) and not via_balancer:
            return self._internal(path[len(INTERNAL_PREFIX) :], start_response)

        environ["wsgi.errors"] = self._sink
        status_seen: list[int] = [0]

        def stamped_start_response(status: str, headers: list, exc_info=None):
            status_seen[0] = int(status.split(" ", 1)[0])
            headers = [h for h in headers if h[0].lower() != "x-served-by"]
            headers.append(("X-Served-By", self.name))
            return start_response(status, headers, exc_info)

        if self._slots is None:
            body = self.app(environ, stamped_start_response)
        else:
            # Hold a worker slot for the whole request, body included: that is what
            # makes `workers / service_time` the real capacity of this server. The
            # app's own work counts as part of the service time (the slot is held
            # for `service_time` in all, or longer if the work takes longer), so a
            # busy machine that slows the app does not lower the modelled capacity.
            with self._slots:
                started = time.perf_counter()
                body = self.app(environ, stamped_start_response)
                try:
                    body = [b"".join(body)]
                finally:
                    close = getattr(body, "close", None)
                    if close:
                        close()
                remaining = self.service_time - (time.perf_counter() - started)
                if remaining > 0:
                    time.sleep(remaining)
        self._record(environ, status_seen[0])
        return body

    def _record(self, environ: dict, status: int) -> None:
        client = environ.get("REMOTE_ADDR", "")  # the balancer's word, or the peer
        session = None
        cookie_header = environ.get("HTTP_COOKIE")
        if cookie_header:
            try:
                morsel = SimpleCookie(cookie_header).get(self.cookie_name)
            except CookieError:
                morsel = None
            if morsel is not None and morsel.value:
                session = session_hash(morsel.value)
        entry = {
            "time": time.time(),
            "server": self.name,
            "client": client,
            "method": environ.get("REQUEST_METHOD", ""),
            "path": environ.get("PATH_INFO", ""),
            "status": status,
            "user_agent": environ.get("HTTP_USER_AGENT", ""),
            "session": session,
        }
        with self._lock:
            self.requests += 1
            if status >= 500:
                self.failures += 1
            self.log.append(entry)

    def _internal(self, what: str, start_response: Callable) -> list[bytes]:
        if what == "ready":
            payload: Any = {"server": self.name}
        elif what == "log":
            with self._lock:
                payload = list(self.log)
        elif what == "stats":
            payload = self.stats()
        else:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [b'{"error": "unknown_labkit_endpoint"}']
        body = json.dumps(payload).encode()
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("X-Served-By", self.name),
            ],
        )
        return [body]
