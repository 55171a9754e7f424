"""Load tests: many simulated users, each with its own cookie jar, on real HTTP.

    >>> report = lk.load_test(cluster, users=10, requests=200, seed=0)
    >>> report.ok, report.failed
    (200, 0)
    >>> report.per_server
    {'s1': 67, 's2': 67, 's3': 66}

Each user is a thread with its own connection (reused when the server allows it) and
a lean HTTP/1.1 client, so that the measurement is of the servers, not of the
client. Users send
``X-Client-Id: user-N``, keep the cookies they are given, and send them back, like
browsers. The sequence of requests is fixed by ``seed``.

A fault schedule can run during the test: ``faults=[lk.Fault("kill", "s2", at=0.3),
lk.Fault("revive", "s2", at=0.7)]`` kills ``s2`` once 30% of the requests are done.
"""

from __future__ import annotations

import html
import json as jsonlib
import math
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from .. import _http
from ..errors import LabkitError
from .topology import _enable_inline_figures

Step = tuple  # (method, path) or (method, path, json_body)


@dataclass(frozen=True)
class Fault:
    """Kill or revive a cluster's server once a fraction ``at`` of the run is done.

    The report's ``fault_log`` records when each action had *finished*: a killed
    server is down from then on (a request cut while it was dying may end a few
    milliseconds earlier), and a revived one is answering from then on.
    """

    action: str
    server: str
    at: float

    def __post_init__(self) -> None:
        if self.action not in ("kill", "revive"):
            raise LabkitError(f"A fault's action is 'kill' or 'revive', not {self.action!r}.")
        if not 0.0 <= self.at <= 1.0:
            raise LabkitError(f"A fault's `at` is a fraction of the run, 0 to 1, not {self.at!r}.")


@dataclass
class Sample:
    """One request of a load test."""

    user: int
    start: float          # seconds since the load began
    latency: float        # seconds
    status: int           # 0 when no answer came (connection refused or cut)
    server: str | None    # from X-Served-By
    error: str | None = None

    @property
    def ok(self) -> bool:
        return 0 < self.status < 500


@dataclass
class LoadReport:
    """What a load test measured. ``plot()`` draws latency over time."""

    users: int
    samples: list[Sample]
    duration: float
    fault_log: list[tuple[float, str, str]] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.samples)

    @property
    def ok(self) -> int:
        return sum(s.ok for s in self.samples)

    @property
    def failed(self) -> int:
        return self.requests - self.ok

    @property
    def throughput(self) -> float:
        """Completed requests per second."""
        return self.requests / self.duration if self.duration else 0.0

    def percentile(self, q: float) -> float:
        """The q-th percentile of latency, in milliseconds (nearest rank)."""
        latencies = sorted(s.latency for s in self.samples)
        if not latencies:
            return 0.0
        rank = max(0, min(len(latencies) - 1, math.ceil(q / 100 * len(latencies)) - 1))
        return latencies[rank] * 1000

    p50 = property(lambda self: self.percentile(50))
    p95 = property(lambda self: self.percentile(95))
    p99 = property(lambda self: self.percentile(99))

    @property
    def per_server(self) -> dict[str, int]:
        """Requests answered by each server (from ``X-Served-By``), by name."""
        return dict(sorted(Counter(s.server for s in self.samples if s.server).items()))

    @property
    def statuses(self) -> dict[int, int]:
        """How many answers of each HTTP status (0 = no answer at all)."""
        return dict(sorted(Counter(s.status for s in self.samples).items()))

    def _summary(self) -> list[tuple[str, str]]:
        servers = ", ".join(f"{k} {v}" for k, v in self.per_server.items()) or "-"
        return [("requests", f"{self.requests} from {self.users} users"),
                ("ok / failed", f"{self.ok} / {self.failed}"),
                ("throughput", f"{self.throughput:.1f} requests/s"),
                ("latency p50 / p95 / p99", f"{self.p50:.1f} / {self.p95:.1f} / {self.p99:.1f} ms"),
                ("per server", servers)]

    def __repr__(self) -> str:
        return "<LoadReport " + "; ".join(f"{k}: {v}" for k, v in self._summary()) + ">"

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                       f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
                       for k, v in self._summary())
        return f"<table><caption>Load test</caption>{rows}</table>"

    def fault_periods(self) -> list[tuple[str, float, float]]:
        """``(server, down_from, down_until)`` in seconds, from the fault schedule."""
        periods, down = [], {}
        for when, action, server in self.fault_log:
            if action == "kill":
                down.setdefault(server, when)
            elif server in down:
                periods.append((server, down.pop(server), when))
        periods += [(server, start, self.duration) for server, start in down.items()]
        return sorted(periods, key=lambda p: (p[1], p[0]))

    def plot(self, ax: Any = None) -> Any:
        """Latency over time, one colour per server, fault periods shaded."""
        from matplotlib.figure import Figure

        _enable_inline_figures()

        if ax is None:
            fig = Figure(figsize=(7, 3.2), layout="constrained")
            ax = fig.add_subplot()
        names = sorted({s.server or "no answer" for s in self.samples})
        for name in names:
            pts = [(s.start, s.latency * 1000) for s in self.samples
                   if (s.server or "no answer") == name]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=6, label=name,
                       marker="x" if name == "no answer" else "o")
        for server, start, end in self.fault_periods():
            ax.axvspan(start, end, color="tab:red", alpha=0.12)
            ax.text(start, 1.0, f" {server} down", transform=ax.get_xaxis_transform(),
                    va="top", fontsize=8, color="tab:red")
        ax.set_xlabel("time since start (s)")
        ax.set_ylabel("latency (ms)")
        ax.legend(fontsize=8, loc="upper right")
        return ax.figure


class _Dropped(Exception):
    """A kept-alive connection was closed by the server before it answered."""


class _User:
    """One simulated user: a connection (reused when the server allows) and cookies.

    It speaks HTTP/1.1 over a plain socket with the kit's own framing helpers
    (``_http``): the standard library's clients parse every response header with the
    email package, which would make the client, not the servers, the bottleneck.
    """

    def __init__(self, index: int, host: str, port: int, timeout: float,
                 headers: dict[str, str]) -> None:
        self.index = index
        self.host, self.port, self.timeout = host, port, timeout
        self.cookies: dict[str, str] = {}
        fixed = {"Host": f"{host}:{port}", "X-Client-Id": f"user-{index}",
                 "User-Agent": "labkit-load", **headers}
        self.fixed_head = "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
        self.sock: socket.socket | None = None
        self.rfile: Any = None
        self.reused = False

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, str | None]:
        head = f"{method} {path} HTTP/1.1\r\n{self.fixed_head}"
        if self.cookies:
            head += "Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()) + "\r\n"
        data = b""
        if body is not None:
            data = jsonlib.dumps(body).encode()
            head += "Content-Type: application/json\r\n"
        if data or method in ("POST", "PUT", "PATCH"):
            head += f"Content-Length: {len(data)}\r\n"
        message = (head + "\r\n").encode("latin-1") + data
        try:
            return self._exchange(message, method)
        except _Dropped:
            # The server had closed this kept-alive connection before reading the
            # request: one fresh try, as browsers and HTTP libraries do.
            return self._exchange(message, method)

    def _exchange(self, message: bytes, method: str) -> tuple[int, str | None]:
        if self.sock is None:
            self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.rfile = self.sock.makefile("rb", buffering=65536)
            self.reused = False
        reused, self.reused = self.reused, True
        try:
            self.sock.sendall(message)
            status_line, headers = _http.read_head(self.rfile)
        except (_http.Closed, ConnectionResetError, BrokenPipeError) as exc:
            self.close()
            if reused:
                raise _Dropped() from exc
            raise ConnectionError("the server closed the connection") from exc
        except BaseException:
            self.close()
            raise
        status = int(status_line.split(" ", 2)[1])
        try:
            self._skip_body(method, status, headers)
        except BaseException:
            self.close()
            raise
        served_by = None
        for name, value in headers:
            lower = name.lower()
            if lower == "set-cookie":
                self._remember_cookie(value)
            elif lower == "x-served-by":
                served_by = value
            elif lower == "connection" and value.lower() == "close":
                self.close()
        return status, served_by

    def _skip_body(self, method: str, status: int, headers: list) -> None:
        if method == "HEAD" or status in (204, 304) or status < 200:
            return
        length = _http.content_length(headers)
        if length is not None:
            if len(self.rfile.read(length)) < length:
                raise ConnectionError("the connection closed mid-body")
        elif _http.is_chunked(headers):
            _http.read_chunked(self.rfile, lambda piece: None)
        else:
            self.rfile.read()  # the body runs until the server closes
            self.close()

    def _remember_cookie(self, line: str) -> None:
        pair, *attributes = line.split(";")
        name, _, value = pair.strip().partition("=")
        expired = value == "" or any(
            a.strip().lower() in ("max-age=0", "max-age=-1") for a in attributes)
        if expired:
            self.cookies.pop(name, None)
        else:
            self.cookies[name] = value

    def close(self) -> None:
        if self.sock is not None:
            self.rfile.close()
            self.sock.close()
            self.sock = self.rfile = None


def _target_url(target: Any) -> str:
    url = target if isinstance(target, str) else getattr(target, "url", None)
    if not isinstance(url, str) or not url.startswith("http://"):
        raise LabkitError(
            f"load_test() needs a URL like 'http://127.0.0.1:8000', a Server or a"
            f" Cluster, not {target!r:.60}.")
    return url


def load_test(target: Any, *, users: int = 10, requests: int = 200, seed: int = 0,
              path: str | Sequence[str] = "/", method: str = "GET",
              setup: Callable[[int], list[Step]] | None = None,
              faults: Sequence[Fault] = (), headers: dict[str, str] | None = None,
              timeout: float = 10.0, progress: bool = True) -> LoadReport:
    """Run ``requests`` requests from ``users`` concurrent users against ``target``.

    Args:
        target: a URL, a :class:`Server` or a :class:`Cluster` (faults need one).
        users: simulated users, each with its own connection and cookie jar.
        requests: total requests across all users (shared out evenly).
        seed: fixes which path each request takes when ``path`` is a list.
        path: one path, or a list to pick from at random (seeded).
        setup: ``setup(user) -> [(method, path, json_body), ...]`` run by each user
            before the measured load (for example, a login). Not counted.
        faults: :class:`Fault` events, fired when that fraction of requests is done.

    Example::

        >>> lk.load_test(server, users=4, requests=100).ok
        100
    """
    url = _target_url(target)
    if not isinstance(users, int) or users < 1:
        raise LabkitError(f"users must be a whole number >= 1, not {users!r}.")
    if not isinstance(requests, int) or requests < 1:
        raise LabkitError(f"requests must be a whole number >= 1, not {requests!r}.")
    if faults and not callable(getattr(target, "kill", None)):
        raise LabkitError("A fault schedule needs the Cluster itself as the target"
                          " (load_test(cluster, faults=...)), not just its URL.")
    users = min(users, requests)
    parts = urlsplit(url)
    paths = [path] if isinstance(path, str) else list(path)
    base = parts.path.rstrip("/")

    samples: list[Sample] = []
    fault_log: list[tuple[float, str, str]] = []
    pending = sorted(faults, key=lambda f: f.at)
    lock = threading.Lock()
    done = [0]
    ready = threading.Barrier(users + 1)
    finished = threading.Event()
    t0 = [0.0]
    errors: list[BaseException] = []

    def fire_faults() -> None:
        # Called under `lock` by whichever user finished the request that crossed
        # a fault's threshold, so faults happen at the same point every run.
        while pending and done[0] >= pending[0].at * requests:
            fault = pending.pop(0)
            getattr(target, fault.action)(fault.server)
            fault_log.append((time.perf_counter() - t0[0], fault.action, fault.server))

    def run_user(index: int) -> None:
        user = _User(index, parts.hostname, parts.port or 80, timeout, headers or {})
        rng = random.Random(f"{seed}:{index}")
        quota = requests // users + (1 if index < requests % users else 0)
        mine: list[Sample] = []
        try:
            steps = [tuple(step) + (None,) for step in (setup(index) if setup else [])]
        except Exception as exc:  # the learner's setup function itself failed
            errors.append(LabkitError(f"setup({index}) raised {exc!r}; it should return"
                                      " a list of (method, path) or (method, path, json)."))
            steps = None
        try:
            for m, p, body, *_ in steps or []:
                try:
                    user.request(m, base + p, body)
                except Exception:
                    pass  # a failed setup request shows up in the measured requests
        finally:
            ready.wait()
        if steps is None:
            user.close()
            return
        try:
            for _ in range(quota):
                p = paths[0] if len(paths) == 1 else rng.choice(paths)
                start = time.perf_counter()
                try:
                    status, server = user.request(method, base + p)
                    error = None
                except Exception as exc:  # refused, cut, timed out: a failed request
                    status, server, error = 0, None, type(exc).__name__
                end = time.perf_counter()
                mine.append(Sample(index, start - t0[0], end - start, status, server, error))
                with lock:
                    done[0] += 1
                    if pending:
                        fire_faults()
        except BaseException as exc:
            errors.append(exc)
        finally:
            user.close()
            with lock:
                samples.extend(mine)

    threads = [threading.Thread(target=run_user, args=(i,), name=f"labkit-user-{i}",
                                daemon=True) for i in range(users)]
    for thread in threads:
        thread.start()
    ready.wait()
    t0[0] = time.perf_counter()
    monitor = _progress(requests, done, finished) if progress else None
    for thread in threads:
        thread.join()
    duration = time.perf_counter() - t0[0]
    finished.set()
    if monitor is not None:
        monitor.join()
    if errors:
        raise errors[0]
    samples.sort(key=lambda s: s.start)
    return LoadReport(users=users, samples=samples, duration=duration,
                      fault_log=fault_log)


def _progress(total: int, done: list[int], finished: threading.Event) -> threading.Thread:
    """A progress bar fed from a counter, so users never wait on the bar."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="req", leave=False, mininterval=0.5)

    def update() -> None:
        shown = 0
        while not finished.wait(0.25):
            bar.update(done[0] - shown)
            shown = done[0]
        bar.update(done[0] - shown)
        bar.close()

    thread = threading.Thread(target=update, name="labkit-progress", daemon=True)
    thread.start()
    return thread
