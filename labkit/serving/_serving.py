"""The machinery under :class:`labkit.serving.server.Server`: werkzeug made quiet and killable.

* :class:`QuietHandler` turns werkzeug's console log off (the kit keeps a
  structured log instead: output printed by a background thread would land in
  whatever notebook cell runs at that moment).
* :class:`KillableServer` remembers its connections, so a crash can cut them all.
* :func:`child_main` is what a forked server process runs.
"""

from __future__ import annotations

import ctypes
import http.client
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

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from ._middleware import INTERNAL_PREFIX, KitMiddleware
from ..errors import AppFactoryError, BadAppError, PortInUseError

HOST = "127.0.0.1"
POLL_INTERVAL = 0.05  # how often serve_forever looks for a shutdown request

# -- werkzeug, made quiet and killable -----------------------------------------------


class QuietHandler(WSGIRequestHandler):
    """werkzeug's handler, speaking HTTP/1.1, with its console log off.

    (werkzeug's development server still answers every request with
    ``Connection: close``, so each request gets a connection of its own.)

    Output printed by a background thread lands in whatever notebook cell runs at
    that moment, so the kit keeps a structured log instead (see _middleware).
    """

    protocol_version = "HTTP/1.1"

    def log(self, type: str, message: str, *args: Any) -> None:
        pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


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
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
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
        pass  # a client that hangs up mid-request is not news; never print it

    def drop_connections(self) -> None:
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
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except OSError:
            pass

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
