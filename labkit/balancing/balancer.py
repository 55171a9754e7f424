"""The kit's load balancer: a small HTTP reverse proxy you can read in one sitting.

For each request from a client it:

1. reads the request (head and body) with strict framing rules (see ``_http``), so
   that it and the servers behind it always agree on where a request ends;
2. asks the **policy** which live server should take it (see ``policies``);
3. forwards it to that server on a fresh connection (werkzeug's development server
   closes after every answer anyway), with ``X-Forwarded-For`` set to the client's
   real address, replacing whatever the client sent;
4. relays the answer back, adding a pin cookie when the policy pins clients.

If the chosen server is dead, a request with an idempotent method (GET, PUT, ...)
is tried once more on another server; a POST is not, because the balancer cannot
know whether the dead server acted on it. With no live server at all, the client
gets ``503`` with a reason, straight away.

It also defends itself, as HAProxy and nginx do: a request head must arrive within
``head_timeout`` seconds and a body within ``body_timeout`` (else ``408``), a body
is at most ``max_body`` bytes (else ``413``), at most ``max_connections`` clients
are served at once (the next one gets ``503``), the
kit's own ``/__labkit__/`` endpoints are never routed, however the path is spelled,
and a connection thread that fails records the error in ``balancer.errors``
instead of printing it into a notebook cell.

Production balancers (HAProxy, nginx) do the same jobs in C; the policy is the part
worth reading, and the part you can swap.
"""

from __future__ import annotations

import collections
import contextlib
import io
import socket
import threading
import traceback
from typing import Any, Iterator, Sequence
from urllib.parse import unquote, urlsplit

from .. import _guards, _http
from ..serving._middleware import INTERNAL_PREFIX, PROOF_HEADER, balancer_proof
from .policies import Backend, Policy, RequestInfo

HOST = "127.0.0.1"
IDEMPOTENT = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}
UPSTREAM_TIMEOUT = 30.0  # seconds a server may take to answer
PIN_MEMORY = 10_000      # client pins remembered for drawings
MAX_CONNECTIONS = 256    # clients served at once; the next one gets 503
# Headers a client must not be able to set: the balancer writes its own.
NOT_FORWARDED = {"content-length", "transfer-encoding", "expect", "host",
                 "x-forwarded-for", "forwarded", "x-real-ip", PROOF_HEADER.lower()}


class _Unreachable(Exception):
    """The server could not be reached, or hung up before answering."""


def internal_path(target: str) -> bool:
    """True when ``target`` names the kit's own endpoints, however it is spelled.

    werkzeug reads ``//__labkit__/log`` as ``/__labkit__/log`` and decodes
    ``%5F`` to ``_``, so the check runs on the path as a server could see it:
    percent-decoded (repeatedly), backslashes as slashes, empty and dot segments
    dropped, ``;parameters`` ignored, in any letter case.

        >>> internal_path("//__labkit__/log"), internal_path("/%5F_labkit__/stats")
        (True, True)
        >>> internal_path("/shop/__labkit__")
        False
    """
    path = target.split("?", 1)[0]
    name = INTERNAL_PREFIX.strip("/")
    if not any(c in path for c in "%\\.;") and "//" not in path:  # the usual case
        first = path.split("/", 2)[1:2]
        return bool(first) and first[0].lower() == name
    for _ in range(5):  # %255F -> %5F -> _
        decoded = unquote(path, errors="replace")
        if decoded == path:
            break
        path = decoded
    segments = [s.split(";", 1)[0].strip().lower()
                for s in path.replace("\\", "/").split("/")]
    kept = [s for s in segments if s not in ("", ".", "..")]
    resolved: list[str] = []  # and with "a/../" resolved, as some servers do
    for s in segments:
        if s == "..":
            resolved = resolved[:-1]
        elif s not in ("", "."):
            resolved.append(s)
    return any(found and found[0] == name for found in (kept, resolved))


class Balancer:
    """Relay HTTP from clients to live servers, as chosen by a policy.

    ``servers`` are kit :class:`~labkit.serving.server.Server` objects (anything with
    ``name``, ``port`` and ``alive`` works). The keyword options are the defences
    described in the module docstring.
    """

    def __init__(self, servers: Sequence[Any], policy: Policy, *,
                 head_timeout: float = _guards.HEAD_TIMEOUT,
                 body_timeout: float = _guards.BODY_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS,
                 max_body: int = _http.MAX_BODY) -> None:
        self.policy = policy
        self.max_body = max_body
        self.head_timeout = head_timeout
        self.body_timeout = body_timeout
        self.max_connections = max_connections
        self._servers = {s.name: s for s in servers}
        self.backends = [Backend(s.name) for s in servers]
        self.pins: collections.OrderedDict[str, str] = collections.OrderedDict()
        self.rejected = 0  # requests the balancer answered itself (no server)
        self.retries = 0   # requests sent again to another server after a failure
        self.refused_connections = 0  # clients over max_connections
        self.errors: collections.deque[str] = collections.deque(maxlen=100)
        self.policy_error: str | None = None
        self._lock = threading.Lock()
        self._clients: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._refuser = _guards.Refuser()
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
        self._refuser.reap(everything=True)

    def connections(self) -> int:
        """Client connections open now."""
        with self._lock:
            return len(self._threads)

    def _accept_loop(self) -> None:
        listener = self._listener
        while True:
            try:
                conn, addr = listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                full = len(self._threads) >= self.max_connections
                if full:
                    self.refused_connections += 1
            if full:
                self._refuser.refuse(conn, _http.json_response(
                    503, "too_many_connections",
                    f"The balancer serves at most {self.max_connections} connections"
                    " at once; try again shortly.", close=True))
                continue
            self._refuser.reap()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(target=self._serve_client, args=(conn, addr),
                                      name="labkit-balancer-conn", daemon=True)
            with self._lock:
                self._clients.add(conn)
                self._threads.add(thread)
            thread.start()

    # -- one client connection ----------------------------------------------------

    def _serve_client(self, conn: socket.socket, addr: tuple) -> None:
        timer = _guards.TimedReader(conn)
        rfile = io.BufferedReader(timer, 65536)
        try:
            while self._relay_one(conn, rfile, timer, addr[0]):
                pass
        except _http.Closed:
            pass
        except _http.HTTPError as exc:
            # A refused request closes the connection: after a framing error the
            # balancer no longer knows where the next request would begin.
            self._count(rejected=True)
            with contextlib.suppress(OSError):
                conn.sendall(_http.json_response(exc.status, exc.reason, exc.message,
                                                 close=True))
        except OSError:
            pass  # the client went away
        except Exception:  # a bug: keep it, never print it into a notebook cell
            self.errors.append(traceback.format_exc())
            with contextlib.suppress(OSError):
                conn.sendall(_http.json_response(
                    500, "balancer_error", "The balancer failed on this request (a bug);"
                    " the traceback is in balancer.errors.", close=True))
        finally:
            rfile.close()
            conn.close()
            with self._lock:
                self._clients.discard(conn)
                self._threads.discard(threading.current_thread())

    def _read_request(self, conn: socket.socket, rfile: Any,
                      timer: _guards.TimedReader) -> tuple[_http.Request, bytes]:
        """Read one whole request, within the head and body deadlines."""
        timer.start(self.head_timeout)
        before = timer.received
        try:
            request = _http.read_request(rfile)
        except _guards.TimedOut:
            if timer.received == before:
                raise _http.Closed() from None  # an idle connection: just close it
            raise _http.HTTPError(408, "head_timeout", "The request head did not arrive"
                                  f" within {self.head_timeout:g} s.") from None
        timer.start(self.body_timeout)
        try:
            if request.framing != "none" and request.version == "HTTP/1.1" and (
                    _http.header(request.headers, "expect") or "").lower() == "100-continue":
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = _http.read_body(rfile, request, limit=self.max_body)
        except _guards.TimedOut:
            raise _http.HTTPError(408, "body_timeout", "The request body did not arrive"
                                  f" within {self.body_timeout:g} s.") from None
        timer.start(None)
        return request, body

    def _relay_one(self, conn: socket.socket, rfile: Any, timer: _guards.TimedReader,
                   client_ip: str) -> bool:
        """Relay one request and its answer. Returns False to close the connection."""
        request, body = self._read_request(conn, rfile, timer)
        close = request.wants_close()
        path, host = self._origin_form(request)
        if path == "*":
            return self._answer(conn, 204, b"", close,
                                extra="Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
        if internal_path(path):
            return self._answer_error(conn, 404, "internal_endpoint",
                                      "The kit's own endpoints are not served through"
                                      " the balancer; ask the server directly.", close)

        info = self._request_info(request.method, path, request.headers, client_ip)
        forward = self._forward_message(request, path, host, body, client_ip)
        tried: set[str] = set()
        while True:
            with self._claim(info, exclude=tried) as backend:
                if backend is None:
                    reason, message = ("no_live_server", "Every server is down.") if not tried \
                        else ("retry_failed", "The server died and no other could answer.")
                    if self.policy_error:
                        reason, message = "policy_error", self.policy_error
                    return self._answer_error(conn, 503, reason, message, close)
                tried.add(backend.name)
                try:
                    return self._exchange(conn, backend, forward, request.method, info,
                                          close)
                except _Unreachable:
                    retry = request.method in IDEMPOTENT and len(tried) == 1
                    self._count(backend, error=True, retry=retry)
                    if retry:
                        continue  # one retry, on another server
                    return self._answer_error(
                        conn, 502, "upstream_failed",
                        f"Server {backend.name} failed before answering. A"
                        f" {request.method} is not retried, because it may not be safe"
                        " to repeat.", close)

    def _answer(self, conn: socket.socket, status: int, body: bytes, close: bool, *,
                extra: str = "") -> bool:
        head = f"HTTP/1.1 {status} {_http._PHRASES.get(status, 'OK')}\r\n"
        head += f"{extra}\r\n" if extra else ""
        head += "Connection: close\r\n" if close else ""
        conn.sendall(head.encode("latin-1") + b"\r\n" + body)
        return not close

    def _answer_error(self, conn: socket.socket, status: int, reason: str, message: str,
                      close: bool) -> bool:
        self._count(rejected=True)
        conn.sendall(_http.json_response(status, reason, message, close=close))
        return not close

    # -- what is forwarded --------------------------------------------------------

    @staticmethod
    def _origin_form(request: _http.Request) -> tuple[str, str | None]:
        """The path to forward (``/a?b``) and the Host it names (absolute form only)."""
        target = request.target
        if target.startswith("/"):
            return target, None
        if target == "*":
            if request.method != "OPTIONS":
                raise _http.HTTPError(400, "bad_target", "'*' is only a target for OPTIONS.")
            return target, None
        parts = urlsplit(target)
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            raise _http.HTTPError(400, "bad_target",
                                  "A request target is /path or http://host/path.")
        path = parts.path or "/"
        host = parts.netloc.rpartition("@")[2]  # never forward user:password@
        return (path + ("?" + parts.query if parts.query else ""), host)

    def _request_info(self, method: str, path: str, headers: list[tuple[str, str]],
                      client_ip: str) -> RequestInfo:
        lower = {k.lower(): v for k, v in headers}
        cookies: dict[str, str] = {}
        for part in lower.get("cookie", "").split(";"):
            name, sep, value = part.strip().partition("=")
            if sep:
                cookies.setdefault(name, value)
        return RequestInfo(method=method, path=path.split("?", 1)[0], headers=lower,
                           cookies=cookies,
                           client_id=lower.get("x-client-id") or client_ip)

    def _forward_message(self, request: _http.Request, path: str, host: str | None,
                         body: bytes, client_ip: str) -> bytes:
        """The request as the server gets it: the balancer's framing and addresses."""
        pin_cookie = getattr(self.policy, "cookie", None)
        # Headers named in Connection are hop-by-hop too (RFC 9110 §7.6.1).
        named = {o.strip().lower() for v in (_http.header(request.headers, "connection"),)
                 if v for o in v.split(",")}
        lines = [f"{request.method} {path} HTTP/1.1",
                 f"Host: {host or _http.header(request.headers, 'host') or HOST}"]
        for name, value in request.headers:
            lower = name.lower()
            if lower in _http.HOP_BY_HOP or lower in NOT_FORWARDED or lower in named:
                continue
            if lower == "cookie" and pin_cookie:
                # The pin is the balancer's business: the app never sees it.
                value = "; ".join(p.strip() for p in value.split(";")
                                  if p.strip().partition("=")[0] != pin_cookie)
                if not value:
                    continue
            lines.append(f"{name}: {value}")
        if request.framing == "chunked":
            # Re-framed as one plain chunk: extensions and trailers stay here.
            body = (f"{len(body):x}\r\n".encode() + body + b"\r\n" if body else b"") \
                + b"0\r\n\r\n"
            lines.append("Transfer-Encoding: chunked")
        elif request.framing == "length":
            lines.append(f"Content-Length: {len(body)}")
        lines.append(f"X-Forwarded-For: {client_ip}")  # replaces what the client sent
        lines.append(f"{PROOF_HEADER}: {balancer_proof()}")  # lets servers trust it
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    # -- choosing a server ----------------------------------------------------------

    @contextlib.contextmanager
    def _claim(self, info: RequestInfo, *, exclude: set[str]) -> Iterator[Backend | None]:
        """Pick a live server and count the request as active on it until done."""
        with self._lock:
            backend = self._pick(info, exclude)
            if backend is not None:
                backend.active += 1
        try:
            yield backend
        finally:
            if backend is not None:
                with self._lock:
                    backend.active -= 1

    def _pick(self, info: RequestInfo, exclude: set[str]) -> Backend | None:
        """The policy's choice among live servers (called with the lock held)."""
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
        return chosen

    def _count(self, backend: Backend | None = None, *, served: bool = False,
               error: bool = False, rejected: bool = False, retry: bool = False,
               client_id: str | None = None) -> None:
        """Every counter changes here, under the lock."""
        with self._lock:
            self.rejected += rejected
            self.retries += retry
            if backend is not None:
                backend.served += served
                backend.errors += error
            if client_id is not None and backend is not None:
                self.pins[client_id] = backend.name
                self.pins.move_to_end(client_id)
                if len(self.pins) > PIN_MEMORY:
                    self.pins.popitem(last=False)

    # -- one exchange with a server -------------------------------------------------

    def _exchange(self, conn: socket.socket, backend: Backend, request: bytes,
                  method: str, info: RequestInfo, close: bool) -> bool:
        """Send ``request`` to ``backend`` and relay its answer. False: close."""
        try:
            upstream = socket.create_connection((HOST, self._servers[backend.name].port),
                                                timeout=UPSTREAM_TIMEOUT)
        except OSError as exc:
            raise _Unreachable(str(exc)) from exc
        with upstream, upstream.makefile("rb", buffering=65536) as rfile:
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            status, head, body, framing = self._read_answer(upstream, rfile, request,
                                                            method, backend)
            self._count(backend, served=True, error=status >= 500,
                        client_id=info.client_id)
            close = close or framing == "until_close"
            head += self._pin_header(info, backend) + ("Connection: close\r\n" if close else "")
            try:
                conn.sendall(head.encode("latin-1") + b"\r\n" + body)
                if framing == "chunked":
                    _http.read_chunked(rfile, conn.sendall)
                elif framing == "until_close":
                    while piece := rfile.read1(65536):
                        conn.sendall(piece)
            except (_http.HTTPError, OSError):
                # The server died mid-answer; the client sees a cut connection, as it
                # would from a real proxy.
                return False
        return not close

    def _read_answer(self, upstream: socket.socket, rfile: Any, request: bytes,
                     method: str, backend: Backend) -> tuple[int, str, bytes, str]:
        """Send the request; read the answer's head (and a sized body) before relaying.

        Reading a sized body whole before answering means that if the server dies
        now, nothing has reached the client yet, so the request can still be retried.
        """
        try:
            upstream.sendall(request)
            status_line, headers = _http.read_head(rfile)
            status = int(status_line.split(" ", 2)[1])
            no_body = method == "HEAD" or status in (204, 304) or status < 200
            length = None if no_body else _http.content_length(headers)
            body = rfile.read(length) if length else b""
            if length and len(body) < length:
                raise _Unreachable("the server died while answering")
        except socket.timeout:
            raise _http.HTTPError(504, "upstream_timeout",
                                  f"Server {backend.name} did not answer in time.") from None
        except (OSError, ValueError, IndexError, _http.Closed, _http.HTTPError) as exc:
            raise _Unreachable(str(exc)) from exc
        if no_body or length is not None:
            framing = "sized"
        elif _http.is_chunked(headers):
            framing = "chunked"
        else:
            framing = "until_close"
        out = ["HTTP/1.1 " + status_line.split(" ", 1)[1]]
        out += [f"{k}: {v}" for k, v in headers if k.lower() not in _http.HOP_BY_HOP]
        return status, "\r\n".join(out) + "\r\n", body, framing

    def _pin_header(self, info: RequestInfo, backend: Backend) -> str:
        pin_cookie = getattr(self.policy, "cookie", None)
        if pin_cookie and info.cookies.get(pin_cookie) != backend.name:
            return (f"Set-Cookie: {pin_cookie}={backend.name}; Path=/; HttpOnly;"
                    " SameSite=Lax\r\n")
        return ""
