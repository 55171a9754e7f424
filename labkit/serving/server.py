"""Serve a Flask app on a real socket, and crash it on purpose.

``lk.serve(factory)`` binds 127.0.0.1 on a free port, starts werkzeug's threaded
server (in a thread of this process, or in a forked child process), waits until it
answers, and hands back a :class:`Server`::

    >>> server = lk.serve(make_app, name="guestbook")
    >>> server
    <Server guestbook up>
    >>> server.kill()        # a crash: connections refused, memory gone
    >>> server.revive()      # a restart: a fresh app from the factory
    >>> server.close()

Creating the server is separate from running it (as in werkzeug): the socket is
bound first, so the real port is known before anything runs, and a busy port gives
a clear error instead of werkzeug's ``SystemExit``.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import warnings
from typing import Any, Callable

from .. import _lifecycle
from ._middleware import KitMiddleware
from ._serving import (
    HOST,
    POLL_INTERVAL,
    KillableServer,
    QuietHandler,
    bind,
    build_app,
    check_target,
    child_main,
    fetch_json,
    probe,
)
from ..errors import (AppFactoryError, LabkitWarning, PortInUseError, ServerStartError,
                      ServerStateError)

READY_TIMEOUT = 10.0  # seconds a server gets to answer its first request
# isolation="process" forks a child from a process that runs threads. Linux does
# that safely; macOS's system libraries may crash such a child (Python itself
# switched macOS to "spawn" for this reason) and Windows has no fork at all.
PROCESS_ISOLATION = sys.platform.startswith("linux") and hasattr(os, "fork")
ISOLATIONS = ("thread", "process", "gunicorn")


def _require_gunicorn() -> None:
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        raise ServerStartError(
            "isolation='gunicorn' needs the gunicorn package: run `pip install"
            " gunicorn` in the course environment (make setup installs it).") from None


# -- the public object -----------------------------------------------------------------


class Server:
    """One live web server on 127.0.0.1, which the kit can crash and restart.

    Use :func:`serve` to make one. States: ``"up"``, ``"down"`` (killed) and
    ``"closed"``.
    """

    def __init__(self, target: Any, *, name: str, isolation: str = "thread",
                 workers: int | None = None, service_time: float = 0.0,
                 ready_timeout: float = READY_TIMEOUT, registry_key: str | None = None):
        check_target(target)
        if isolation not in ISOLATIONS:
            raise ServerStartError(
                f"isolation must be 'thread', 'process' or 'gunicorn', not {isolation!r}.")
        if isolation == "process" and not PROCESS_ISOLATION:
            isolation = "thread"
            warnings.warn(
                f"Server {name}: isolation='process' forks the server from this process,"
                f" which only Linux (and WSL) supports safely; on {sys.platform} the server"
                " runs as a thread instead. Everything works, but kill() stops a thread"
                " rather than SIGKILLing a process, and all servers share this process's"
                " CPU, so throughput figures come out lower.", LabkitWarning, stacklevel=3)
        if isolation == "gunicorn" and not PROCESS_ISOLATION:
            raise ServerStartError(
                "isolation='gunicorn' forks gunicorn from this process, which only Linux"
                f" (and WSL on Windows) supports safely, not {sys.platform}; use"
                " isolation='thread' (the kit's own server) here.")
        if isolation == "gunicorn":
            _require_gunicorn()
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise ServerStartError(f"workers must be a whole number >= 1, not {workers!r}.")
        if service_time < 0:
            raise ServerStartError(f"service_time must be >= 0 seconds, not {service_time!r}.")
        self.name = name
        self.isolation = isolation
        self.workers = workers
        self.service_time = float(service_time)
        self.ready_timeout = ready_timeout
        self._target = target
        self._key = registry_key or f"server:{name}"
        self._port = 0
        self.state = "new"
        self.generation = 0  # counts starts (a revived server is a new generation)
        self._lock = threading.RLock()
        # thread isolation
        self._wsgi: KitMiddleware | None = None
        self._http: KillableServer | None = None
        self._thread: threading.Thread | None = None
        # process isolation
        self._process: Any = None

    # -- what a notebook reads ---------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def alive(self) -> bool:
        if self.state != "up":
            return False
        if self._process is not None and not self._process.is_alive():
            return False  # killed from outside the kit: still a crash
        return True

    @property
    def app(self) -> Any:
        """The live Flask app (thread isolation only; ``None`` when down)."""
        return self._wsgi.app if self._wsgi is not None else None

    def __repr__(self) -> str:
        state = self.state if self.state != "up" or self.alive else "down"
        return f"<Server {self.name} {state}>"

    def request_log(self) -> list[dict]:
        """The server's structured request log, oldest first (empty when down)."""
        if not self.alive:
            return []
        if self._wsgi is not None:
            return list(self._wsgi.log)
        return fetch_json(self._port, "log")

    def stats(self) -> dict:
        """Requests, 5xx errors and live sessions, as the server itself counts them."""
        if not self.alive:
            return {"requests": 0, "errors": 0, "sessions": None}
        if self._wsgi is not None:
            return self._wsgi.stats()
        return fetch_json(self._port, "stats")

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> Server:
        """Bind, run and wait until the server answers. Returns ``self``."""
        with self._lock:
            if self.state == "closed":
                raise ServerStateError(
                    f"Server {self.name} is closed; start a new one with lk.serve().")
            if self.state == "up":
                return self
            _lifecycle.claim(self._key, self)
            sock = self._bind_again()
            try:
                if self.isolation == "thread":
                    self._start_thread(sock)
                else:
                    self._start_process(sock)  # a forked child, or gunicorn's group
            except BaseException:
                sock.close()  # harmless if already handed over and closed
                self._stop(graceful=False)
                _lifecycle.release(self._key, self)
                self.state = "new" if self.state == "new" else "down"
                raise
            self.state = "up"
            self.generation += 1
            return self

    def _bind_again(self) -> socket.socket:
        # A revived server keeps its URL, unless another program took the port.
        if self._port:
            try:
                return bind(self._port)
            except PortInUseError:
                pass
        sock = bind(0)
        self._port = sock.getsockname()[1]
        return sock

    def _start_thread(self, sock: socket.socket) -> None:
        app = self._build_in_time()
        self._wsgi = KitMiddleware(app, name=self.name, workers=self.workers,
                                   service_time=self.service_time)
        try:
            self._http = KillableServer(HOST, 0, self._wsgi, handler=QuietHandler,
                                         fd=sock.fileno())
        finally:
            sock.close()  # werkzeug holds its own duplicate of the socket
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": POLL_INTERVAL},
            name=f"labkit-server-{self.name}", daemon=True)
        self._thread.start()
        self._wait_ready(lambda: self._thread.is_alive(), None)

    def _build_in_time(self) -> Any:
        """Run the factory, but give up after ``ready_timeout`` seconds."""
        result: dict[str, Any] = {}

        def build() -> None:
            try:
                result["app"] = build_app(self._target)
            except BaseException as exc:
                result["error"] = exc

        builder = threading.Thread(target=build, name="labkit-app-factory", daemon=True)
        builder.start()
        builder.join(self.ready_timeout)
        if builder.is_alive():
            raise ServerStartError(
                f"Server {self.name}: the app factory did not return within"
                f" {self.ready_timeout:g} s. Does it wait for something? Make it return"
                " the app quickly, or pass a larger ready_timeout.")
        if "error" in result:
            raise result["error"]
        return result["app"]

    def _start_process(self, sock: socket.socket) -> None:
        ctx = multiprocessing.get_context("fork")
        parent_end, child_end = ctx.Pipe(duplex=False)
        if self.isolation == "gunicorn":
            from ._gunicorn import gunicorn_main as main
        else:
            main = child_main
        self._process = ctx.Process(
            target=main,
            args=(sock, self._target, self.name, self.workers, self.service_time,
                  child_end, os.getpid(),
                  threading.current_thread() is threading.main_thread()),
            name=f"labkit-server-{self.name}", daemon=True)
        self._process.start()
        sock.close()  # the child owns the listening socket now
        child_end.close()
        try:
            if not parent_end.poll(self.ready_timeout):
                raise ServerStartError(
                    f"Server {self.name} did not start within {self.ready_timeout:g} s."
                    " Does the app factory wait for something? Pass a larger"
                    " ready_timeout, or use isolation='thread' to see the problem.")
            try:
                kind, exc, text = parent_end.recv()
            except EOFError:
                raise ServerStartError(
                    f"Server {self.name} died while starting (exit code"
                    f" {self._process.exitcode}). Try isolation='thread' to see why.")
        finally:
            parent_end.close()
        if kind == "error":
            if isinstance(exc, Exception):
                raise exc
            raise AppFactoryError(f"Server {self.name} failed to start: {text}")
        self._wait_ready(self._process.is_alive, self._process)

    def _wait_ready(self, running: Callable[[], bool], process: Any) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if probe(self._port, timeout=max(0.1, deadline - time.monotonic())):
                return
            if not running():
                break
            time.sleep(0.01)
        raise ServerStartError(
            f"Server {self.name} on port {self._port} did not answer within"
            f" {self.ready_timeout:g} s. Check that the app starts, then run the cell"
            " again (or pass a larger ready_timeout).")

    def kill(self) -> None:
        """Crash the server: connections refused from now on, its memory gone."""
        with self._lock:
            self._require_open("kill")
            if self.state == "up":
                self._stop(graceful=False)
                self.state = "down"

    def revive(self) -> Server:
        """Start a killed server again (a fresh app when built from a factory)."""
        with self._lock:
            self._require_open("revive")
            return self.start()

    def close(self) -> None:
        """Stop gracefully and release everything. Safe to call twice."""
        with self._lock:
            if self.state == "closed":
                return
            self._stop(graceful=True)
            self.state = "closed"
            _lifecycle.release(self._key, self)

    def _require_open(self, verb: str) -> None:
        if self.state == "closed":
            raise ServerStateError(
                f"Cannot {verb} server {self.name}: it is closed. Start a new one with"
                " lk.serve().")

    def _stop(self, *, graceful: bool) -> None:
        if self._http is not None:
            http_server, self._http = self._http, None
            http_server.shutdown()      # from this thread, never the serving one
            try:  # stop listening even if a forked child holds a copy of the socket
                http_server.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            http_server.server_close()  # the listening socket: new connections refused
            http_server.drop_connections()
            http_server.join_threads(5.0 if graceful else 2.0)
            if self._thread is not None:
                self._thread.join(5.0)
            self._thread = None
        self._wsgi = None  # the app and everything it remembered goes with it
        if self._process is not None:
            process, self._process = self._process, None
            group = self.isolation == "gunicorn"  # master and worker: one process group
            if process.is_alive():
                if graceful:
                    process.terminate()
                    process.join(5.0 + (5.0 if group else 0.0))
                if process.is_alive():
                    process.kill()
            if group:
                _kill_group(process.pid)  # the worker too, even if the master is gone
            process.join(5.0)
            process.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _kill_group(pgid: int) -> None:
    """SIGKILL every process of group ``pgid`` and wait until none is left."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)  # signal 0: does any member still exist?
        except ProcessLookupError:
            return
        time.sleep(0.01)


def serve(app_or_factory: Any, *, name: str | None = None, isolation: str = "thread",
          workers: int | None = None, service_time: float = 0.0,
          ready_timeout: float = READY_TIMEOUT) -> Server:
    """Serve a Flask app (or a factory of one) on 127.0.0.1 and wait until it answers.

    Args:
        app_or_factory: a Flask app, or a zero-argument function returning one. With
            a factory, every start and revive builds a fresh app (empty memory).
        name: the server's name (shown in reprs and ``X-Served-By``). Serving again
            under a name that is already live replaces that server.
        isolation: ``"thread"`` (default), ``"process"`` (a forked child, so that
            ``kill()`` is a real SIGKILL and servers use more than one core) or
            ``"gunicorn"`` (the app under gunicorn, a real pre-fork server, in its own
            process group; ``kill()`` is SIGKILL of the group). Forking needs Linux or
            WSL: elsewhere ``"process"`` runs the server as a thread, with a
            :class:`LabkitWarning` that says so, and ``"gunicorn"`` is refused.
        workers: at most this many requests are worked on at once (capacity model).
        service_time: seconds of work each request takes (capacity model).

    Example::

        >>> with lk.serve(make_app, name="hello") as server:
        ...     requests.get(server.url).headers["X-Served-By"]
        'hello'
    """
    check_target(app_or_factory)
    if name is None:
        name = getattr(app_or_factory, "name", None) or getattr(
            app_or_factory, "__name__", "server")
        if name == "<lambda>":
            name = "server"
    if not isinstance(name, str) or not name:
        raise ServerStartError(f"A server name must be a non-empty string, not {name!r}.")
    server = Server(app_or_factory, name=name, isolation=isolation, workers=workers,
                    service_time=service_time, ready_timeout=ready_timeout)
    return server.start()
