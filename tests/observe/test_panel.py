"""The live lab's model: button presses as method calls, a load that keeps going."""

from __future__ import annotations

import time

import pytest

import labkit as lk
from labkit.apps import social
from labkit.errors import LabkitError


def stateful_app():
    return social.create_app(mode="session", extra_users=8, kdf_iterations=1_000)


def login(user):
    return "/login", {"username": f"user{user}", "password": f"pw-user{user}"}


def wait_for(condition, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_buttons_kill_and_revive_while_the_load_keeps_going():
    with lk.Cluster(stateful_app, size=3, balancer="sticky", name="panel-test") as cluster:
        panel = cluster.panel(path="/me", users=4, rate=80, login=login)
        assert "s1 up, s2 up, s3 up" in panel.summary() and "stopped" in panel.summary()
        panel.start()
        wait_for(lambda: panel.counters()["ok"] >= 30, "the load to start")
        panel.toggle("s2")                       # the "kill s2" button
        assert not panel.is_up("s2") and not cluster["s2"].alive
        ok_at_kill = panel.counters()["ok"]
        wait_for(lambda: panel.counters()["ok"] >= ok_at_kill + 40,
                 "requests to go on while s2 is down")
        assert {s.server for s in panel.samples() if s.ok and s.start > panel.down_periods()[0][1]
                } <= {"s1", "s3"}
        panel.toggle("s2")                       # the "revive s2" button
        assert panel.is_up("s2")
        wait_for(lambda: panel.counters()["per_server"].get("s2", 0) > 0
                 and any(s.server == "s2" for s in panel.samples(window=2)),
                 "s2 to take requests again", timeout=30)
        (name, down_from, down_to), = panel.down_periods()
        assert name == "s2" and down_from < down_to
        counts = panel.counters()
        assert counts["ok"] > 0 and set(counts["per_server"]) == {"s1", "s2", "s3"}
        assert counts["retries"] == cluster.balancer.retries
        panel.stop()  # joins every user thread: nothing sends after this
        assert not panel.running and panel._threads == []


def test_a_sticky_users_sessions_lost_are_counted():
    with lk.Cluster(stateful_app, size=2, balancer="sticky", name="panel-lost") as cluster:
        panel = cluster.panel(path="/me", users=4, rate=80, login=login)
        panel.start()
        wait_for(lambda: len(panel.counters()["per_server"]) == 2, "both servers to be used")
        panel.kill("s1")
        wait_for(lambda: panel.counters()["sessions_lost"] >= 1, "a lost session")
        panel.close()


def test_closing_the_cluster_stops_the_panel():
    cluster = lk.Cluster(stateful_app, size=2, name="panel-close")
    panel = cluster.panel(path="/posts", users=3, rate=60)
    panel.start()
    wait_for(lambda: panel.counters()["ok"] > 5, "the load")
    cluster.close()
    assert not panel.running  # and the leak fixture checks no thread is left
    with pytest.raises(LabkitError, match="closed"):
        panel.start()


def test_bad_settings_and_names_are_clear_errors():
    with lk.Cluster(stateful_app, size=1, name="panel-bad") as cluster:
        with pytest.raises(LabkitError, match="users must be"):
            cluster.panel(users=0)
        with pytest.raises(LabkitError, match="rate must be"):
            cluster.panel(rate=-1)
        panel = cluster.panel()
        with pytest.raises(LabkitError, match="no store"):
            panel.kill("store")
        with pytest.raises(LabkitError):
            panel.kill("s9")
        with pytest.raises(LabkitError, match="users must be"):
            panel.set_load(users=10_000)


def test_the_store_has_its_own_button():
    with lk.RedisServer(name="panel-redis") as redis, \
            lk.Cluster(stateful_app, size=1, name="panel-store") as cluster:
        panel = cluster.panel(store=redis)
        panel.toggle("store")
        assert not redis.alive and "store down" in panel.summary()
        panel.toggle("store")
        assert redis.alive


def test_without_a_front_end_it_is_a_text_summary(capsys):
    with lk.Cluster(stateful_app, size=2, name="panel-text") as cluster:
        panel = cluster.panel()
        panel.show()  # plain Python: prints, never blocks
        out = capsys.readouterr().out
        assert out.startswith("Panel for panel-text: s1 up, s2 up") and "ok 0, failed 0" in out
        assert repr(panel) == "<Panel panel-text stopped>"


def test_the_widgets_drive_the_same_model():
    with lk.Cluster(stateful_app, size=2, name="panel-widgets") as cluster:
        panel = cluster.panel(path="/posts", users=2, rate=40)
        box = panel.widget()
        view = panel._view
        assert view.buttons["s1"].description == "kill s1"
        view.buttons["s1"].click()
        assert not cluster["s1"].alive and view.buttons["s1"].description == "revive s1"
        assert view.buttons["s1"].button_style == "danger"
        view.buttons["s1"].click()
        assert cluster["s1"].alive and view.buttons["s1"].button_style == "success"
        view.go.value = True                      # the "start load" toggle
        wait_for(lambda: panel.counters()["ok"] > 5, "the load from the widget")
        view.users.value = 3                      # the slider restarts the load at 3 users
        assert panel.running and panel._users == 3
        view.go.value = False
        assert not panel.running and box is panel.widget()
        panel.close()
