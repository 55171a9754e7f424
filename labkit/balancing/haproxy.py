"""HAProxy in front of the servers: the production twin of the kit's balancer.

``lk.Cluster(make_app, engine="haproxy")`` starts each server under gunicorn and puts
a real HAProxy process in front, configured from the cluster. The policies map to
HAProxy's own directives:

=====================  ====================================================
kit policy             HAProxy
=====================  ====================================================
``round_robin``        ``balance roundrobin``
``least_connections``  ``balance leastconn``
``hash``               ``balance hdr(X-Client-Id)`` + ``hash-type consistent``
``sticky``             ``cookie LKSERVER insert indirect nocache``
=====================  ====================================================

What the kit's balancer does by hand, HAProxy does with configuration: health checks
mark a killed server down (``check inter 100ms fall 1``), and from then on a sticky
cookie that names it is ignored (HAProxy's default; ``option persist`` would insist);
a request whose connection is refused is sent again to another server (``retries``
with ``option redispatch``), which is safe for any method because the server never
saw it; a request that reached a server which then died is retried only when its
method is idempotent. That last rule is the config's, not HAProxy's: ``retry-on
empty-response`` replays any method, so ``disable-l7-retry`` switches it off for the
others (tests/balancing/test_engine_haproxy.py checks both ways). Such layer-7 retries need the
request buffered: one larger than ``tune.bufsize`` (16 kB by default) is never retried.
``cluster.haproxy_config()`` returns the exact text that runs.

A learner's own policy object cannot run inside HAProxy (it is Python; HAProxy is
C): the engine says so instead of silently ignoring it.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Sequence

from .. import _lifecycle
from ..errors import EngineError
from .policies import STICKY_COOKIE

HOST = "127.0.0.1"
READY_TIMEOUT = 10.0
IDEMPOTENT = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE")
DIRECTIVES = {
    "round_robin": ["balance roundrobin"],
    "least_connections": ["balance leastconn"],
    "hash": ["balance hdr(X-Client-Id)", "hash-type consistent"],
    "sticky": ["balance roundrobin", f"cookie {STICKY_COOKIE} insert indirect nocache"],
}


def find_haproxy() -> str:
    """The path of the ``haproxy`` binary, or an :class:`EngineError` saying what to install."""
    found = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(p, os.X_OK)),
        None)
    if found is None:
        raise EngineError(
            "engine='haproxy' needs HAProxy, which is not installed. On Debian or"
            " Ubuntu: `sudo apt-get install haproxy` (macOS: `brew install haproxy`),"
            " then run the cell again. `labkit doctor` shows what is missing.")
    return found


def policy_name(policy: Any) -> str:
    """The kit policy's name if HAProxy has a twin for it, else a clear EngineError."""
    name = getattr(policy, "name", None)
    if type(policy).__module__ == "labkit.balancing.policies" and name in DIRECTIVES:
        return name
    raise EngineError(
        f"HAProxy cannot run your policy object {type(policy).__name__}: its"
        " choose() is Python and HAProxy is a C program with its own algorithms."
        f" Use one of {', '.join(map(repr, DIRECTIVES))} with engine='haproxy', or"
        " keep engine='kit' to run your own policy.")


def render_config(*, port: int, servers: Sequence[tuple[str, int]], policy: str,
                  stats_socket: str) -> str:
    """The HAProxy configuration for ``servers`` (name, port) behind ``port``."""
    backend = [f"    {line}" for line in DIRECTIVES[policy]]
    cookie = policy == "sticky"
    lines = [
        "# Written by labkit for this cluster; HAProxy 2.6 syntax.",
        "global",
        "    maxconn 1024",
        f"    stats socket {stats_socket} mode 600 level operator",
        "",
        "defaults",
        "    mode http",
        "    timeout connect 1s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    timeout http-request 10s     # a slow request head gets 408",
        "    retries 1",
        "    option redispatch 1          # a retry goes to another server",
        "    retry-on conn-failure empty-response response-timeout",
        "",
        "frontend web",
        f"    bind {HOST}:{port}",
        "    # the kit's internal endpoints are for the kit only, however they are spelled",
        "    http-request deny deny_status 404 if { path,url_dec,lower -m sub __labkit__ }",
        "    # the client's address as HAProxy saw it; whatever the client sent is dropped",
        "    http-request set-header X-Forwarded-For %[src]",
        "    default_backend app",
        "",
        "backend app",
        *backend,
        "    # a request a server received may run twice if retried: only idempotent ones",
        f"    http-request disable-l7-retry unless {{ method {' '.join(IDEMPOTENT)} }}",
        "    option httpchk GET /__labkit__/ready",
        "    default-server check inter 100ms fall 1 rise 1",
        "    http-response set-header X-Served-By %[srv_name]",
    ]
    for name, server_port in servers:
        lines.append(f"    server {name} {HOST}:{server_port}"
                     + (f" cookie {name}" if cookie else ""))
    return "\n".join(lines) + "\n"


@dataclass
class BackendStats:
    """One server as HAProxy counts it."""

    name: str
    served: int
    errors: int
    status: str
    active: int = 0


class HAProxy:
    """A real HAProxy process in front of ``servers``, on a port of 127.0.0.1.

    It has what :class:`~labkit.balancing.cluster.Cluster` needs of a balancer:
    ``port``, ``backends`` (counts read from HAProxy's stats socket), ``pins`` (empty:
    HAProxy keeps pins in the clients' cookies, not in a table) and ``close()``.
    """

    def __init__(self, servers: Sequence[Any], policy: Any, *, name: str = "haproxy",
                 ready_timeout: float = READY_TIMEOUT) -> None:
        self.servers = list(servers)
        self.policy = policy_name(policy)
        self.binary = find_haproxy()
        self.name = name
        self.ready_timeout = ready_timeout
        self.port = 0
        self.pins: dict[str, str] = {}
        self._dir = tempfile.mkdtemp(prefix="labkit-haproxy-")
        self._process: subprocess.Popen | None = None
        self._key = f"haproxy:{name}"
        self.config = ""

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> HAProxy:
        """Write the config, check it with ``haproxy -c``, run HAProxy, wait until ready."""
        _lifecycle.claim(self._key, self)
        try:
            for _attempt in range(3):  # another program may take the port we picked
                self.port = _free_port()
                self.config = render_config(
                    port=self.port, servers=[(s.name, s.port) for s in self.servers],
                    policy=self.policy, stats_socket=self._stats_path)
                path = os.path.join(self._dir, "haproxy.cfg")
                with open(path, "w") as file:
                    file.write(self.config)
                self._validate(path)
                if self._run(path):
                    return self
            raise EngineError("HAProxy could not bind a free port after 3 tries; try again.")
        except BaseException:
            self.close()
            raise

    def _validate(self, path: str) -> None:
        check = subprocess.run([self.binary, "-c", "-f", path], capture_output=True,
                               text=True, timeout=30)
        if check.returncode != 0:
            raise EngineError(
                "HAProxy rejected the configuration the kit wrote: "
                + _alerts((check.stderr + check.stdout).replace(self._dir + os.sep, ""))
                + ". This is a bug in the kit: tell your instructor.")

    def _run(self, path: str) -> bool:
        log = open(os.path.join(self._dir, "haproxy.log"), "w")
        try:
            self._process = subprocess.Popen(
                [self.binary, "-db", "-f", path], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_lifecycle.die_with_parent())
        except OSError as err:
            raise EngineError(f"HAProxy ({self.binary}) could not be started: {err}.") from None
        finally:
            log.close()
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                said = self._log_tail()
                if "cannot bind" in said.lower() or "address already in use" in said.lower():
                    self._process = None
                    return False
                raise EngineError(f"HAProxy exited at start. It said: {_alerts(said) or '(nothing)'}")
            if os.path.exists(self._stats_path) and _answers(self.port):
                return True
            time.sleep(0.02)
        raise EngineError(
            f"HAProxy did not answer within {self.ready_timeout:g} s. The machine may be"
            f" overloaded: try again. Its log says: {self._log_tail() or '(nothing)'}")

    def close(self) -> None:
        """Stop HAProxy and delete its files. Safe to call twice."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(5.0)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5.0)
        shutil.rmtree(self._dir, ignore_errors=True)
        _lifecycle.release(self._key, self)

    # -- what the cluster reads ---------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def retries(self) -> int:
        """Requests HAProxy sent again (``wretr`` + ``wredis`` of the backend)."""
        for row in self.show_stat():
            if row.get("pxname") == "app" and row.get("svname") == "BACKEND":
                return int(row.get("wretr") or 0) + int(row.get("wredis") or 0)
        return 0

    @property
    def backends(self) -> list[BackendStats]:
        """Per server: HTTP answers relayed, 5xx among them, and HAProxy's status."""
        rows = self.show_stat()
        result = []
        for row in rows:
            if row.get("pxname") != "app" or row.get("svname") in ("BACKEND", "FRONTEND"):
                continue
            answers = sum(int(row.get(f"hrsp_{k}xx") or 0) for k in range(1, 6))
            result.append(BackendStats(row["svname"], answers, int(row.get("hrsp_5xx") or 0),
                                       row.get("status", ""), int(row.get("scur") or 0)))
        return result

    def show_stat(self) -> list[dict[str, str]]:
        """HAProxy's ``show stat`` table, one dict per proxy or server."""
        if not self.alive:
            return []
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(self._stats_path)
            sock.sendall(b"show stat\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        text = b"".join(chunks).decode("utf-8", "replace").lstrip("# ")
        return list(csv.DictReader(io.StringIO(text)))

    def status(self, name: str) -> str:
        """HAProxy's view of server ``name``: ``"UP"``, ``"DOWN"``, ..."""
        for backend in self.backends:
            if backend.name == name:
                return backend.status
        return "unknown"

    @property
    def _stats_path(self) -> str:
        return os.path.join(self._dir, "stats.sock")

    def _log_tail(self) -> str:
        try:
            with open(os.path.join(self._dir, "haproxy.log")) as file:
                return " | ".join(file.read().strip().splitlines()[-3:])
        except OSError:
            return ""

    def __repr__(self) -> str:
        return f"<HAProxy {self.policy} {'up' if self.alive else 'down'}>"


def _alerts(output: str) -> str:
    """HAProxy's own ALERT lines, without the pid and file prefix, in one line."""
    said = []
    for line in output.splitlines():
        if "[ALERT]" in line and "Fatal errors" not in line and "Error(s) found" not in line:
            said.append(line.split(" : ", 2)[-1].strip())
    return " | ".join(said) or output.strip()[-300:]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False
