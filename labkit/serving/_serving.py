"""The machinery under :class:`labkit.serving.server.Server`: werkzeug made quiet and killable.

* :class:`QuietHandler` turns werkzeug's console log off (the kit keeps a
  structured log instead: output printed by a background thread would land in
  whatever notebook cell runs at that moment), and reads each request head with the
  kit's strict framing rules (``labkit._http``), the same as the balancer's: werkzeug
  alone accepts ``Content-Length`` with ``Transfer-Encoding``, two different
  ``Content-Length`` values, a bare CR inside a header, and waits forever for a slow
  client.
* :class:`KillableServer` remembers its connections, so a crash can cut them all,
  caps them, and keeps (never prints) what a connection thread raised.
* :func:`child_main` is what a forked server process runs.
"""

from __future__ import annotations

import collections
import http.client
import io
import json
import os
import signal
import socket
import stat
import sys
import threading
import time
import traceback
from typing import Any

from werkzeug.exceptions import RequestTimeout
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from .. import _guards, _http, _lifecycle
from ..errors import AppFactoryError, BadAppError, PortInUseError
from ._middleware import INTERNAL_PREFIX, KitMiddleware

HOST = "127.0.0.1"
POLL_INTERVAL = 0.05  # how often serve_forever looks for a shutdown request
MAX_CONNECTIONS = 128  # per server; the next client gets 503 at once
DRAIN_GRACE = 0.5      # after answering, how long werkzeug may read leftover input

# -- werkzeug, made quiet and killable -----------------------------------------------


class QuietHandler(WSGIRequestHandler):
    """werkzeug's handler, speaking HTTP/1.1, with its console log off.

    (werkzeug's development server still answers every request with
    ``Connection: close``, so each request gets a connection of its own.)

    Output printed by a background thread lands in whatever notebook cell runs at
    that moment, so the kit keeps a structured log instead (see _middleware).
    """

    protocol_version = "HTTP/1.1"
    head_timeout = _guards.HEAD_TIMEOUT  # seconds for a whole request head, else 408
    body_timeout = _guards.BODY_TIMEOUT  # seconds for a whole body, else 408
    max_body = _http.MAX_BODY          # bytes of a chunked body, else 413

    # werkzeug answers "Expect: 100-continue" with "100 Continue" before the app runs,
    # which invites the client to send a body the app may refuse. Like nginx, the kit
    # sends it only when the app starts reading the body, so an app can answer 413
    # (say) from the headers alone and the body never leaves the client.
    def handle_expect_100(self) -> bool:
        return True  # http.server would answer at once; ContinueOnRead answers later

    def run_wsgi(self) -> None:
        expects = self.headers.get("Expect", "").lower().strip(" \t") == "100-continue"
        if expects:
            del self.headers["Expect"]  # werkzeug must not answer it early
        # An HTTP/1.0 client gets no 100 at all: it must be ignored (RFC 9110 10.1.1).
        self._continue_pending = expects and self.request_version >= "HTTP/1.1"
        super().run_wsgi()

    def make_environ(self) -> dict:
        environ = super().make_environ()
        if self._chunked_body is not None:
            # Already read and decoded: the app reads it as a stream of known end.
            environ["wsgi.input"] = io.BytesIO(self._chunked_body)
            environ["wsgi.input_terminated"] = True
        elif getattr(self, "_continue_pending", False):
            environ["HTTP_EXPECT"] = "100-continue"  # the app still sees the header
            environ["wsgi.input"] = ContinueOnRead(environ["wsgi.input"], self.wfile)
        return environ

    def log(self, type: str, message: str, *args: Any) -> None:
        pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self._timer = _guards.TimedReader(self.connection)
        self.rfile = io.BufferedReader(self._timer, 65536)
        self._chunked_body: bytes | None = None

    def handle_one_request(self) -> None:
        """Read one request strictly, answer a bad one with a 4xx, else run the app."""
        self.close_connection = True  # werkzeug's dev server closes after each answer
        timer = self._timer
        timer.start(self.head_timeout)
        try:
            request = _http.read_request(self.rfile)
            timer.start(self.body_timeout)
            if request.framing == "chunked":
                # Decoded here with the strict rules (werkzeug's own decoder takes
                # "+5" or "0x5" as a size and fails on a trailer with a 500).
                if (_http.header(request.headers, "expect") or "").lower() == "100-continue":
                    self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                self._chunked_body = _http.read_chunked_body(self.rfile,
                                                             limit=self.max_body)
        except _http.Closed:
            return
        except _guards.TimedOut:
            if timer.received:  # a connection that sent nothing is just closed
                self._refuse(_http.HTTPError(408, "request_timeout",
                                             "The request did not arrive in time."))
            return
        except _http.HTTPError as exc:
            self._refuse(exc)
            return
        self.command, self.path = request.method, request.target
        self.request_version = request.version
        self.requestline = f"{request.method} {request.target} {request.version}"
        self.headers = http.client.HTTPMessage()
        for name, value in request.headers:
            if not (self._chunked_body is not None and name.lower() == "expect"):
                self.headers[name] = value  # adds; a repeated name stays repeated
        timer.on_timeout = lambda: RequestTimeout(
            f"The request body did not arrive within {self.body_timeout:g} s.")
        self.run_wsgi()
        self.wfile.flush()

    def _refuse(self, error: _http.HTTPError) -> None:
        try:
            self.wfile.write(_http.json_response(error.status, error.reason,
                                                 error.message, close=True))
        except OSError:
            pass

    def end_headers(self) -> None:
        super().end_headers()
        # The answer is on its way. werkzeug then reads what the client sent beyond
        # the request; a client that keeps sending must not hold this thread.
        if self._timer.deadline is not None:
            self._timer.deadline = min(self._timer.deadline,
                                       time.monotonic() + DRAIN_GRACE)
        self._timer.eof_on_timeout = True


class ContinueOnRead:
    """A request body that sends "100 Continue" the first time the app reads it.

    ``continued`` tells whether the client was invited to send its body; an app that
    refuses a request before reading leaves it False, and the client sends nothing.
    """

    def __init__(self, stream: Any, wfile: Any) -> None:
        self._stream = stream
        self._wfile = wfile
        self.continued = False

    def _continue(self) -> None:
        if not self.continued:
            self.continued = True
            self._wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._wfile.flush()

    def read(self, *args: Any) -> bytes:
        self._continue()
        return self._stream.read(*args)

    def readline(self, *args: Any) -> bytes:
        self._continue()
        return self._stream.readline(*args)

    def readinto(self, buffer: Any) -> int | None:
        self._continue()
        return self._stream.readinto(buffer)

    def __iter__(self) -> Any:
        self._continue()
        return iter(self._stream)


class KillableServer(ThreadedWSGIServer):
    """A threaded werkzeug server that knows its open connections.

    A real crash cuts every connection at once, including requests in flight.
    To imitate that, the server remembers each connection and its thread so that
    ``drop_connections`` can cut them and ``join_threads`` can wait for them.
    """

    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._conns: set[socket.socket] = set()
        self._conn_threads: set[threading.Thread] = set()
        self._conns_lock = threading.Lock()
        self._refuser = _guards.Refuser()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            full = len(self._conns) >= MAX_CONNECTIONS
        if full:
            self._refuser.refuse(request, _http.json_response(
                503, "too_many_connections",
                f"This server serves at most {MAX_CONNECTIONS} connections at once.",
                close=True))
            return
        self._refuser.reap()
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name="labkit-connection",
            daemon=True,
        )
        with self._conns_lock:
            self._conns.add(request)
            self._conn_threads.add(thread)
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._conns_lock:
                self._conns.discard(request)
                self._conn_threads.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Never printed (it would land in a notebook cell); kept with the app's errors.
        self._keep(traceback.format_exc())

    def log(self, type: str, message: str, *args: Any) -> None:
        if type == "error":  # werkzeug's "Error on request" with its traceback
            self._keep(message % args if args else message)

    def _keep(self, text: str) -> None:
        errors = getattr(self.app, "errors", None)
        if isinstance(errors, collections.deque):
            errors.append(text)

    def drop_connections(self) -> None:
        self._refuser.reap(everything=True)
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def join_threads(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self._conns_lock:
                threads = list(self._conn_threads)
            if not threads or time.monotonic() > deadline:
                return
            threads[0].join(max(0.0, deadline - time.monotonic()))


def bind(port: int) -> socket.socket:
    """Bind and listen on 127.0.0.1:port (0 = any free port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise PortInUseError(
            f"Port {port} on {HOST} is in use by another program. Either stop that"
            " program, or start the server without a port so that the kit picks a"
            " free one."
        ) from exc
    sock.listen(128)
    return sock


def build_app(target: Any) -> Any:
    """Return a Flask app: ``target`` itself, or what the factory ``target`` builds."""
    from flask import Flask

    if isinstance(target, Flask):
        return target
    try:
        app = target()
    except TypeError as exc:
        if "argument" in str(exc):
            raise BadAppError(
                f"{_describe(target)} needs arguments, but the kit calls a factory"
                " with none. Wrap it: lk.serve(lambda: make_app(...))."
            ) from exc
        raise AppFactoryError(
            f"The app factory {_describe(target)} raised {exc!r}. Fix the factory,"
            " then run the cell again."
        ) from exc
    except Exception as exc:
        raise AppFactoryError(
            f"The app factory {_describe(target)} raised {exc!r}. Fix the factory,"
            " then run the cell again."
        ) from exc
    if not isinstance(app, Flask):
        raise BadAppError(
            f"The factory {_describe(target)} returned {type(app).__name__}, not a"
            " Flask app. Make it end with `return app`."
        )
    return app


def _describe(target: Any) -> str:
    return getattr(target, "__qualname__", None) or repr(target)


def check_target(target: Any) -> None:
    from flask import Flask

    if isinstance(target, Flask) or (callable(target) and not isinstance(target, type)):
        return
    if isinstance(target, type) and issubclass(target, Flask):
        return  # a Flask subclass is a factory of sorts: Flask() needs a name, though
    raise BadAppError(
        f"lk.serve() needs a Flask app or a function that returns one, not"
        f" {type(target).__name__} ({target!r:.60}). Pass `app` or `make_app`."
    )


def probe(port: int, timeout: float = 2.0) -> bool:
    """Ask the kit's readiness endpoint; True when the server answered."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", INTERNAL_PREFIX + "ready")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def fetch_json(port: int, what: str) -> Any:
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", INTERNAL_PREFIX + what)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


# -- the forked child ------------------------------------------------------------------


def _die_with_parent(parent: int, forked_by_main_thread: bool) -> None:
    """End this child when the process that forked it ends (no orphans).

    Linux's PR_SET_PDEATHSIG fires when the *thread* that forked the child exits,
    not the process, so it is only used when the main thread forked; a watchdog
    thread that notices the parent is gone covers every case.
    """
    if forked_by_main_thread:
        _lifecycle.arm_parent_death(parent)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    if os.getppid() != parent:
        os._exit(0)
    threading.Thread(target=watch, name="labkit-watchdog", daemon=True).start()


def _drop_inherited_sockets(keep: int) -> None:
    """Detach the child from every socket it inherited, except ``keep``.

    A fork copies every open socket of the kernel: other servers' listening
    sockets, clients' kept-alive connections. While the child holds a copy, closing
    one in the parent does not really close it (a killed server's port would still
    accept connections). Pointing those descriptors at /dev/null releases the
    sockets without freeing the numbers, so nothing in the child can mistake a new
    connection for an old object's descriptor.
    """
    devnull = os.open(os.devnull, os.O_RDWR)
    for entry in os.listdir("/proc/self/fd"):
        fd = int(entry)
        if fd in (keep, devnull):
            continue
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.dup2(devnull, fd)
        except OSError:
            pass
    os.close(devnull)


def child_main(sock: socket.socket, target: Any, name: str, workers: int | None,
                service_time: float, report: Any, parent: int,
                forked_by_main_thread: bool) -> None:
    _die_with_parent(parent, forked_by_main_thread)
    _drop_inherited_sockets(keep=sock.fileno())
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.stdout = sys.stderr = open(os.devnull, "w")
    try:
        app = build_app(target)
        wsgi = KitMiddleware(app, name=name, workers=workers, service_time=service_time)
        server = KillableServer(HOST, 0, wsgi, handler=QuietHandler, fd=sock.fileno())
        sock.close()
    except BaseException as exc:
        report.send(("error", exc if isinstance(exc, Exception) else None,
                     "".join(traceback.format_exception_only(exc)).strip()))
        os._exit(1)
    signal.signal(signal.SIGTERM,
                  lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    report.send(("ready", None, ""))
    server.serve_forever(poll_interval=POLL_INTERVAL)
    server.server_close()
    server.drop_connections()
    server.join_threads(2.0)
    os._exit(0)
