"""The kit's load balancer: a small HTTP reverse proxy you can read in one sitting.

For each request from a client it:

1. reads the request (head and body),
2. asks the **policy** which live server should take it (see ``policies``),
3. forwards it to that server (reusing the connection when the server allows it;
   werkzeug's development server closes after every answer),
4. relays the answer back, adding a pin cookie when the policy pins clients.

If the chosen server is dead, a request with an idempotent method (GET, PUT, ...)
is tried once more on another server; a POST is not, because the balancer cannot
know whether the dead server acted on it. With no live server at all, the client
gets ``503`` with a reason, straight away.

Production balancers (HAProxy, nginx) do the same jobs in C; the policy is the part
worth reading, and the part you can swap.
"""

from __future__ import annotations

import collections
import socket
import threading
from typing import Any, Sequence

from .. import _http
from .policies import Backend, Policy, RequestInfo

HOST = "127.0.0.1"
IDEMPOTENT = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}
UPSTREAM_TIMEOUT = 30.0  # seconds a server may take to answer
PIN_MEMORY = 10_000      # client pins remembered for drawings


class _Unreachable(Exception):
    """The server could not be reached, or hung up before answering."""


class _Upstream:
    """A connection from the balancer to one server, reused while the server allows."""

    def __init__(self, port: int, generation: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=UPSTREAM_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb", buffering=65536)
        self.generation = generation

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()


class Balancer:
    """Relay HTTP from clients to live servers, as chosen by a policy.

    ``servers`` are kit :class:`~labkit.serving.server.Server` objects (anything with
    ``name``, ``port``, ``alive`` and ``generation`` works).
    """

    def __init__(self, servers: Sequence[Any], policy: Policy) -> None:
        self.policy = policy
        self._servers = {s.name: s for s in servers}
        self.backends = [Backend(s.name) for s in servers]
        self.pins: collections.OrderedDict[str, str] = collections.OrderedDict()
        self.rejected = 0  # requests the balancer answered itself (no server)
        self.policy_error: str | None = None
        self._lock = threading.Lock()
        self._clients: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._listener: socket.socket | None = None
        self._accepter: threading.Thread | None = None
        self.port = 0

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> Balancer:
        self._listener = socket.create_server((HOST, 0), backlog=256)
        self.port = self._listener.getsockname()[1]
        self._accepter = threading.Thread(target=self._accept_loop,
                                          name="labkit-balancer", daemon=True)
        self._accepter.start()
        return self

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            except OSError:
                pass
            listener.close()
        if self._accepter is not None:
            self._accepter.join(5.0)
        with self._lock:
            clients, threads = list(self._clients), list(self._threads)
        for conn in clients:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in threads:
            thread.join(5.0)

    def _accept_loop(self) -> None:
        listener = self._listener
        while True:
            try:
                conn, addr = listener.accept()
            except OSError:
                return  # closed
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(target=self._serve_client, args=(conn, addr),
                                      name="labkit-balancer-conn", daemon=True)
            with self._lock:
                self._clients.add(conn)
                self._threads.add(thread)
            thread.start()

    # -- one client connection ----------------------------------------------------

    def _serve_client(self, conn: socket.socket, addr: tuple) -> None:
        rfile = conn.makefile("rb", buffering=65536)
        upstreams: dict[str, _Upstream] = {}
        try:
            keep_going = True
            while keep_going:
                try:
                    keep_going = self._relay_one(conn, rfile, addr[0], upstreams)
                except _http.Closed:
                    break
                except _http.HTTPError as exc:
                    conn.sendall(_http.json_response(exc.status, exc.reason,
                                                     exc.message, close=True))
                    break
        except OSError:
            pass  # the client went away
        finally:
            for upstream in upstreams.values():
                upstream.close()
            rfile.close()
            conn.close()
            with self._lock:
                self._clients.discard(conn)
                self._threads.discard(threading.current_thread())

    def _relay_one(self, conn: socket.socket, rfile: Any, client_ip: str,
                   upstreams: dict[str, _Upstream]) -> bool:
        """Relay one request and its answer. Returns False to close the connection."""
        start, headers = _http.read_head(rfile)
        parts = start.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _http.HTTPError(400, "bad_request_line", "Malformed request line.")
        method, target, version = parts
        wants_close = (_http.header(headers, "connection") or "").lower() == "close" or (
            version == "HTTP/1.0"
            and (_http.header(headers, "connection") or "").lower() != "keep-alive")

        if (_http.header(headers, "expect") or "").lower() == "100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = self._read_body(rfile, headers)

        if target.startswith("/__labkit__/"):
            conn.sendall(_http.json_response(
                404, "internal_endpoint", "The kit's own endpoints are not served"
                " through the balancer; ask the server directly.", close=wants_close))
            return not wants_close

        info = self._request_info(method, target, headers, client_ip)
        forward = self._forward_head(method, target, headers, client_ip, info)
        tried: set[str] = set()
        while True:
            backend = self._pick(info, exclude=tried)
            if backend is None:
                self.rejected += 1
                reason, message = ("no_live_server", "Every server is down.") if not tried \
                    else ("retry_failed", "The server died and no other could answer.")
                if self.policy_error:
                    reason, message = "policy_error", self.policy_error
                conn.sendall(_http.json_response(503, reason, message, close=wants_close))
                return not wants_close
            tried.add(backend.name)
            try:
                return self._exchange(conn, backend, forward + body, method, info,
                                      upstreams, wants_close)
            except _Unreachable:
                backend.errors += 1
                if method in IDEMPOTENT and len(tried) == 1:
                    continue  # one retry, on another server
                self.rejected += 1
                conn.sendall(_http.json_response(
                    502, "upstream_failed",
                    f"Server {backend.name} failed before answering. A {method} is"
                    " not retried, because it may not be safe to repeat.",
                    close=wants_close))
                return not wants_close
            finally:
                with self._lock:
                    backend.active -= 1

    def _read_body(self, rfile: Any, headers: list[tuple[str, str]]) -> bytes:
        if _http.is_chunked(headers):
            pieces: list[bytes] = []
            _http.read_chunked(rfile, pieces.append, limit=_http.MAX_BODY)
            return b"".join(pieces)
        length = _http.content_length(headers) or 0
        if length > _http.MAX_BODY:
            raise _http.HTTPError(413, "body_too_large", "The request body is too large.")
        body = rfile.read(length) if length else b""
        if len(body) < length:
            raise _http.Closed()
        return body

    def _request_info(self, method: str, target: str, headers: list[tuple[str, str]],
                      client_ip: str) -> RequestInfo:
        lower = {k.lower(): v for k, v in headers}
        cookies: dict[str, str] = {}
        for part in lower.get("cookie", "").split(";"):
            name, sep, value = part.strip().partition("=")
            if sep:
                cookies.setdefault(name, value)
        return RequestInfo(method=method, path=target.split("?", 1)[0], headers=lower,
                           cookies=cookies,
                           client_id=lower.get("x-client-id") or client_ip)

    def _forward_head(self, method: str, target: str, headers: list[tuple[str, str]],
                      client_ip: str, info: RequestInfo) -> bytes:
        pin_cookie = getattr(self.policy, "cookie", None)
        lines = [f"{method} {target} HTTP/1.1"]
        for name, value in headers:
            lower = name.lower()
            if lower in _http.HOP_BY_HOP or lower == "expect":
                continue
            if lower == "cookie" and pin_cookie:
                # The pin is the balancer's business: the app never sees it.
                value = "; ".join(p.strip() for p in value.split(";")
                                  if p.strip().partition("=")[0] != pin_cookie)
                if not value:
                    continue
            lines.append(f"{name}: {value}")
        lines.append(f"X-Forwarded-For: {client_ip}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _pick(self, info: RequestInfo, *, exclude: set[str]) -> Backend | None:
        with self._lock:
            live = [b for b in self.backends
                    if b.name not in exclude and self._servers[b.name].alive]
            for b in self.backends:
                b.alive = self._servers[b.name].alive
            if not live:
                return None
            try:
                chosen = self.policy.choose(info, live)
            except Exception as exc:  # a learner's policy: report, don't crash
                self.policy_error = f"The balancing policy raised {exc!r}."
                return None
            if chosen not in live:
                self.policy_error = (f"The balancing policy returned {chosen!r}, which"
                                     " is not one of the live servers it was given.")
                return None
            self.policy_error = None
            chosen.active += 1
            return chosen

    def _upstream(self, backend: Backend, upstreams: dict[str, _Upstream]) -> tuple[_Upstream, bool]:
        server = self._servers[backend.name]
        upstream = upstreams.get(backend.name)
        if upstream is not None and upstream.generation != server.generation:
            upstream.close()  # the server was restarted: this connection is dead
            upstream = None
        if upstream is not None:
            return upstream, True
        try:
            upstream = _Upstream(server.port, server.generation)
        except OSError as exc:
            raise _Unreachable(str(exc)) from exc
        upstreams[backend.name] = upstream
        return upstream, False

    def _exchange(self, conn: socket.socket, backend: Backend, request: bytes,
                  method: str, info: RequestInfo, upstreams: dict[str, _Upstream],
                  wants_close: bool) -> bool:
        upstream, _reused = self._upstream(backend, upstreams)
        try:
            upstream.sock.sendall(request)
            status_line, headers = _http.read_head(upstream.rfile)
        except (OSError, _http.Closed, _http.HTTPError) as exc:
            upstreams.pop(backend.name, None).close()
            if isinstance(exc, socket.timeout):
                raise _http.HTTPError(504, "upstream_timeout",
                                      f"Server {backend.name} did not answer in time.")
            raise _Unreachable(str(exc)) from exc
        status = int(status_line.split(" ", 2)[1])
        server_closes = (_http.header(headers, "connection") or "").lower() == "close"
        no_body = method == "HEAD" or status in (204, 304) or status < 200
        length = None if no_body else _http.content_length(headers)
        chunked = not no_body and _http.is_chunked(headers)
        body = b""
        if length:
            # Read the whole body before answering: if the server dies now, nothing
            # has reached the client yet, so the request can still be retried.
            try:
                body = upstream.rfile.read(length)
            except OSError:
                body = b""
            if len(body) < length:
                upstreams.pop(backend.name, None).close()
                raise _Unreachable("the server died while answering")
        until_close = not no_body and length is None and not chunked
        close_client = wants_close or until_close

        out = ["HTTP/1.1 " + status_line.split(" ", 1)[1]]
        out += [f"{k}: {v}" for k, v in headers if k.lower() not in _http.HOP_BY_HOP]
        pin_cookie = getattr(self.policy, "cookie", None)
        if pin_cookie and info.cookies.get(pin_cookie) != backend.name:
            out.append(f"Set-Cookie: {pin_cookie}={backend.name}; Path=/; HttpOnly;"
                       " SameSite=Lax")
        if close_client:
            out.append("Connection: close")
        head = ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")

        with self._lock:
            backend.served += 1
            if status >= 500:
                backend.errors += 1
            self.pins[info.client_id] = backend.name
            self.pins.move_to_end(info.client_id)
            if len(self.pins) > PIN_MEMORY:
                self.pins.popitem(last=False)

        try:
            if no_body:
                conn.sendall(head)
            elif length is not None:
                conn.sendall(head + body)
            elif chunked:
                conn.sendall(head)
                _http.read_chunked(upstream.rfile, conn.sendall)
            else:
                conn.sendall(head)
                while chunk := upstream.rfile.read1(65536):
                    conn.sendall(chunk)
                server_closes = True
        except (_http.HTTPError, OSError):
            # The server died mid-answer; the client sees a cut connection, as it
            # would from a real proxy.
            upstreams.pop(backend.name, None).close()
            return False
        if server_closes:
            upstreams.pop(backend.name).close()
        return not close_client
