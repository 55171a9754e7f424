"""Load tests: many simulated users, each with its own cookie jar, on real HTTP.

    >>> report = lk.load_test(cluster, users=10, requests=200, seed=0)
    >>> report.ok, report.failed
    (200, 0)
    >>> report.per_server
    {'s1': 67, 's2': 67, 's3': 66}

Each user is a thread with its own connection (reused when the server allows it) and
a lean HTTP/1.1 client (``observe._client``), so that the measurement is of the
servers, not of the client. Users send ``X-Client-Id: user-N``, keep the cookies
they are given, and send them back, like browsers. The sequence of requests is
fixed by ``seed``. What comes back is a :class:`~labkit.observe.report.LoadReport`.

A fault schedule can run during the test: ``faults=[lk.Fault("kill", "s2", at=0.3),
lk.Fault("revive", "s2", at=0.7)]`` kills ``s2`` once 30% of the requests are done.

Two rules keep the instrument honest:

* The clock starts before any user is let go, so no request starts before 0.
* Faults run in their own thread, never while the users' shared counter is locked:
  killing a server can take a while (its threads are stopped, its process reaped),
  and users talking to the live servers must not wait for that. A pause in the
  plot is then the system's, not the harness's.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from ..errors import LabkitError
from ._client import LoadClient
from .report import LoadReport, Sample

__all__ = ["Fault", "LoadReport", "Sample", "load_test"]

Step = tuple  # (method, path) or (method, path, json_body)


@dataclass(frozen=True)
class Fault:
    """Kill or revive a cluster's server once a fraction ``at`` of the run is done.

    The report's ``fault_log`` records when a server was surely down: a kill when it
    had *finished* (the server is down from then on; a request cut while it was
    dying may end a few milliseconds earlier), a revive when it *began* (the server
    was down until then, and answers again a moment later, once it has started).
    """

    action: str
    server: str
    at: float

    def __post_init__(self) -> None:
        if self.action not in ("kill", "revive"):
            raise LabkitError(f"A fault's action is 'kill' or 'revive', not {self.action!r}.")
        if not 0.0 <= self.at <= 1.0:
            raise LabkitError(f"A fault's `at` is a fraction of the run, 0 to 1, not {self.at!r}.")


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
    lookup = getattr(target, "server", None)
    for fault in faults if callable(lookup) else ():
        lookup(fault.server)  # an unknown name fails now, with the names there are
    paths = [path] if isinstance(path, str) else list(path)
    run = _Run(target, url, users=min(users, requests), requests=requests, seed=seed,
               paths=paths, method=method, setup=setup, faults=faults,
               headers=headers or {}, timeout=timeout)
    return run.execute(progress=progress)


class _Run:
    """One load test in progress: its users, its shared counter, its fault schedule."""

    def __init__(self, target: Any, url: str, *, users: int, requests: int, seed: int,
                 paths: list[str], method: str, setup: Callable | None,
                 faults: Sequence[Fault], headers: dict[str, str], timeout: float) -> None:
        parts = urlsplit(url)
        self.target, self.host, self.port = target, parts.hostname, parts.port or 80
        self.base = parts.path.rstrip("/")
        self.users, self.requests, self.seed = users, requests, seed
        self.paths, self.method, self.setup = paths, method, setup
        self.headers, self.timeout = headers, timeout
        self.faults = sorted(faults, key=lambda f: f.at)

        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # a request completed, or all did
        self.done = 0                # requests completed so far (under `lock`)
        self.users_finished = False  # (under `lock`)
        self.samples: list[Sample] = []
        self.fault_log: list[tuple[float, str, str]] = []
        self.errors: list[BaseException] = []
        self.t0 = 0.0
        # Everyone (users and this thread) meets here once the setups are done. The
        # action runs before the barrier lets anyone through, so t0 precedes every
        # request's start.
        self.ready = threading.Barrier(users + 1, action=self._start_clock)

    def _start_clock(self) -> None:
        self.t0 = time.perf_counter()

    def execute(self, *, progress: bool) -> LoadReport:
        threads = [threading.Thread(target=self._user, args=(i,), name=f"labkit-user-{i}",
                                    daemon=True) for i in range(self.users)]
        if self.faults:
            threads.append(threading.Thread(target=self._fault_schedule,
                                            name="labkit-faults", daemon=True))
        # The bar is drawn before the users start: drawing a notebook widget takes
        # this process a moment, which must not land inside the measurement.
        bar = _Progress(self) if progress else None
        for thread in threads:
            thread.start()
        self.ready.wait()
        if bar is not None:
            bar.start()
        users, faulter = threads[:self.users], threads[self.users:]
        for thread in users:
            thread.join()
        duration = time.perf_counter() - self.t0
        with self.changed:
            self.users_finished = True
            self.changed.notify_all()
        for thread in faulter:
            thread.join()
        if bar is not None:
            bar.close()
        if self.errors:
            raise self.errors[0]
        self.samples.sort(key=lambda s: s.start)
        return LoadReport(users=self.users, samples=self.samples, duration=duration,
                          fault_log=self.fault_log)

    # -- one simulated user -------------------------------------------------------

    def _user(self, index: int) -> None:
        client = LoadClient(index, self.host, self.port, timeout=self.timeout,
                            headers=self.headers)
        try:
            steps = self._setup_steps(index)
            try:
                for m, p, body, *_ in steps or []:
                    try:
                        client.request(m, self.base + p, body)
                    except Exception:
                        pass  # a failed setup request shows up in the measured ones
            finally:
                self.ready.wait()
            if steps is not None:
                self._measure(index, client)
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            client.close()

    def _setup_steps(self, index: int) -> list[tuple] | None:
        if self.setup is None:
            return []
        try:
            return [tuple(step) + (None,) for step in self.setup(index)]
        except Exception as exc:  # the learner's setup function itself failed
            self.errors.append(LabkitError(
                f"setup({index}) raised {exc!r}; it should return a list of"
                " (method, path) or (method, path, json)."))
            return None

    def _measure(self, index: int, client: LoadClient) -> None:
        rng = random.Random(f"{self.seed}:{index}")
        quota = self.requests // self.users + (1 if index < self.requests % self.users else 0)
        mine: list[Sample] = []
        try:
            for _ in range(quota):
                p = self.paths[0] if len(self.paths) == 1 else rng.choice(self.paths)
                start = time.perf_counter()
                try:
                    status, server = client.request(self.method, self.base + p)
                    error = None
                except Exception as exc:  # refused, cut, timed out: a failed request
                    status, server, error = 0, None, type(exc).__name__
                end = time.perf_counter()
                mine.append(Sample(index, start - self.t0, end - start, status, server, error))
                with self.changed:  # held for a counter update only, never for a fault
                    self.done += 1
                    if self.faults:
                        self.changed.notify_all()
        finally:
            with self.lock:
                self.samples.extend(mine)

    # -- the fault schedule -------------------------------------------------------

    def _fault_schedule(self) -> None:
        """Fire each fault once its share of requests is done, in this thread only."""
        try:
            for fault in self.faults:
                with self.changed:
                    while self.done < fault.at * self.requests and not self.users_finished:
                        self.changed.wait()
                    if self.done < fault.at * self.requests:
                        return  # the users stopped early (an error); nothing more to do
                began = time.perf_counter() - self.t0
                getattr(self.target, fault.action)(fault.server)
                when = time.perf_counter() - self.t0 if fault.action == "kill" else began
                self.fault_log.append((when, fault.action, fault.server))
        except BaseException as exc:
            self.errors.append(exc)


class _Progress:
    """A progress bar fed from the run's counter, so users never wait on the bar.

    tqdm normally starts a ``tqdm_monitor`` thread that outlives every bar; this bar
    turns it off, since nothing the kit starts may outlive the call that started it.
    """

    def __init__(self, run: _Run) -> None:
        self._run = run
        self._stop = threading.Event()
        self._bar = _bar_class()(total=run.requests, unit="req", leave=False,
                                 mininterval=0.5)
        self._thread = threading.Thread(target=self._update, name="labkit-progress",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _update(self) -> None:
        shown = 0
        while not self._stop.wait(0.25):
            done = self._run.done
            self._bar.update(done - shown)
            shown = done
        self._bar.update(self._run.done - shown)
        self._bar.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        else:  # never started (the run failed early): close the bar here
            self._bar.close()


_BAR: type | None = None


def _bar_class() -> type:
    global _BAR
    if _BAR is None:
        from tqdm.auto import tqdm

        class _Bar(tqdm):  # type: ignore[misc, valid-type]
            monitor_interval = 0  # no tqdm_monitor thread

        _BAR = _Bar
    return _BAR


def _target_url(target: Any) -> str:
    url = target if isinstance(target, str) else getattr(target, "url", None)
    if not isinstance(url, str) or not url.startswith("http://"):
        raise LabkitError(
            f"load_test() needs a URL like 'http://127.0.0.1:8000', a Server or a"
            f" Cluster, not {target!r:.60}.")
    return url
