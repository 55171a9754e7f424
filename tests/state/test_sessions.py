"""MemorySessionStore: the interface chapters 01-04 rely on (and the Redis store copies)."""

from __future__ import annotations

import threading
import tracemalloc

import pytest

from labkit.state.sessions import ManualClock, MemorySessionStore, new_session_id


def test_new_get_save_delete_roundtrip():
    store = MemorySessionStore()
    sid = store.new({"user": "alice"})
    assert store.get(sid) == {"user": "alice"}
    store.save(sid, {"user": "alice", "n": 2})
    assert store.get(sid) == {"user": "alice", "n": 2}
    assert sid in store and len(store) == 1
    assert store.delete(sid) is True
    assert store.get(sid) is None and sid not in store and len(store) == 0
    assert store.delete(sid) is False


def test_get_returns_a_copy_like_a_real_store():
    store = MemorySessionStore()
    sid = store.new({"history": []})
    store.get(sid)["history"].append("lost")  # not saved
    assert store.get(sid) == {"history": []}


def test_ids_are_long_random_and_distinct():
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 43 for i in ids)  # 32 bytes, base64url without padding


def test_unknown_ids_are_never_adopted():
    store = MemorySessionStore()
    assert store.get("chosen-by-attacker") is None
    with pytest.raises(KeyError):
        store.save("chosen-by-attacker", {"user": "mallory"})
    assert "chosen-by-attacker" not in store and len(store) == 0
    assert store.get(None) is None and store.rotate(None) is None


def test_idle_timeout_resets_on_use():
    clock = ManualClock()
    store = MemorySessionStore(idle_timeout=60, clock=clock)
    sid = store.new({"u": 1})
    clock.advance(59)
    assert store.get(sid) is not None  # activity: the idle timer restarts
    clock.advance(59)
    assert sid in store
    clock.advance(1)
    assert store.get(sid) is None
    assert store.expired == 1


def test_contains_does_not_touch():
    clock = ManualClock()
    store = MemorySessionStore(idle_timeout=10, clock=clock)
    sid = store.new()
    clock.advance(9)
    assert sid in store
    clock.advance(1)
    assert sid not in store


def test_absolute_timeout_even_when_busy():
    clock = ManualClock()
    store = MemorySessionStore(idle_timeout=60, absolute_timeout=100, clock=clock)
    sid = store.new()
    for _ in range(3):
        clock.advance(30)
        assert store.get(sid) is not None
    clock.advance(10)  # t=100: busy, but too old
    assert store.get(sid) is None and store.expired == 1


def test_rotate_moves_data_and_kills_old_id_but_keeps_age():
    clock = ManualClock()
    store = MemorySessionStore(absolute_timeout=100, clock=clock)
    old = store.new({"user": "alice"})
    clock.advance(60)
    new = store.rotate(old)
    assert new and new != old
    assert store.get(old) is None and store.get(new) == {"user": "alice"}
    assert len(store) == 1
    clock.advance(40)
    assert store.get(new) is None  # rotation did not extend the absolute lifetime


def test_lru_eviction_keeps_recently_used():
    store = MemorySessionStore(max_sessions=3)
    a, b, c = store.new(), store.new(), store.new()
    store.get(a)  # a becomes most recently used; b is now the oldest
    d = store.new()
    assert b not in store and {a, c, d} <= {s for s in (a, b, c, d) if s in store}
    assert store.evicted == 1 and len(store) == 3


def test_expired_sessions_go_before_lru_eviction():
    clock = ManualClock()
    store = MemorySessionStore(idle_timeout=10, max_sessions=2, clock=clock)
    a = store.new()
    clock.advance(5)
    b = store.new()
    clock.advance(6)  # a is idle 11 s (expired), b only 6 s
    c = store.new()
    assert a not in store and b in store and c in store
    assert store.expired == 1 and store.evicted == 0


def test_len_purges_and_repr_is_stable():
    clock = ManualClock()
    store = MemorySessionStore(idle_timeout=5, clock=clock)
    store.new(), store.new()
    assert repr(store) == "<MemorySessionStore 2 sessions, 0 expired, 0 evicted>"
    clock.advance(5)
    assert len(store) == 0
    assert repr(store) == "<MemorySessionStore 0 sessions, 2 expired, 0 evicted>"
    assert repr(clock) == "<ManualClock t=5.0>"


def test_bad_arguments_and_data():
    with pytest.raises(ValueError):
        MemorySessionStore(idle_timeout=0)
    with pytest.raises(ValueError):
        MemorySessionStore(max_sessions=0)
    with pytest.raises(ValueError):
        ManualClock().advance(-1)
    store = MemorySessionStore()
    with pytest.raises(TypeError):
        store.new({"when": object()})
    with pytest.raises(TypeError):
        store.new(["not", "a", "dict"])


def test_nbytes_grows_linearly_and_is_close_to_tracemalloc():
    store = MemorySessionStore()
    payload = {"user": "x" * 20, "history": ["some message"] * 10}
    store.new(payload)
    one = store.nbytes()
    for _ in range(99):
        store.new(payload)
    assert store.nbytes() == 100 * one  # same payload, same cost: linear
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(1000):
            store.new(payload)
        measured = (tracemalloc.get_traced_memory()[0] - before) / 1000
    finally:
        tracemalloc.stop()
    # The estimate stays within 25% of what Python really allocated.
    assert 0.8 * one < measured < 1.25 * one, (one, measured)


def test_thread_safety_under_concurrent_use():
    store = MemorySessionStore(max_sessions=50)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for i in range(300):
                sid = store.new({"i": i})
                store.get(sid)
                if i % 3 == 0:
                    store.rotate(sid)
                len(store)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(store) <= 50 and store.evicted >= 1200 - 50
