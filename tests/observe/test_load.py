"""lk.load_test: users with cookie jars, determinism, faults, capacity model."""

from __future__ import annotations

import secrets
import threading
import time

import pytest
from flask import Flask, jsonify, request

import labkit as lk
from labkit.observe.load import LoadReport, Sample

from sample_apps import make_counter


def make_login_app() -> Flask:
    app = Flask("login")
    sessions: dict[str, str] = {}
    app.extensions["labkit.sessions"] = sessions

    @app.post("/login")
    def login():
        sid = secrets.token_urlsafe(16)
        sessions[sid] = request.get_json()["user"]
        response = jsonify(ok=True)
        response.set_cookie("sid", sid)
        return response

    @app.get("/me")
    def me():
        user = sessions.get(request.cookies.get("sid", ""))
        return (jsonify(user=user), 200) if user else (jsonify(error="no_session"), 401)

    @app.get("/a")
    def a():
        return "a"

    @app.get("/b")
    def b():
        return "b"

    return app


def test_counts_and_per_server_split():
    with lk.Cluster(make_counter, size=3) as cluster:
        report = lk.load_test(cluster, users=5, requests=90, progress=False)
    assert (report.requests, report.ok, report.failed) == (90, 90, 0)
    assert sum(report.per_server.values()) == 90 and set(report.per_server) == {"s1", "s2", "s3"}
    assert report.throughput > 0 and 0 < report.p50 <= report.p95 <= report.p99
    assert repr(report).startswith("<LoadReport requests: 90 from 5 users; ok / failed: 90 / 0")
    assert "<table>" in report._repr_html_()


def test_each_user_keeps_its_own_cookies():
    with lk.serve(make_login_app, name="login") as server:
        report = lk.load_test(server, users=4, requests=40, path="/me", progress=False,
                              setup=lambda u: [("POST", "/login", {"user": f"u{u}"})])
        assert report.statuses == {200: 40}
        assert server.stats()["sessions"] == 4
        no_login = lk.load_test(server, users=2, requests=10, path="/me", progress=False)
        assert no_login.statuses == {401: 10} and no_login.ok == 10


def test_the_request_sequence_is_fixed_by_the_seed():
    def paths(seed):
        with lk.serve(make_login_app, name="paths") as server:
            lk.load_test(server, users=3, requests=30, path=["/a", "/b"], seed=seed,
                         progress=False)
            log = server.request_log()
        return sorted((e["path"], i) for i, e in enumerate(log))

    def counts(seed):
        p = [path for path, _ in paths(seed)]
        return p.count("/a"), p.count("/b")

    assert counts(1) == counts(1)
    assert counts(1) != counts(2) or counts(1) != counts(3)


def test_a_fault_schedule_kills_and_revives_and_is_shaded():
    with lk.Cluster(make_counter, size=3, balancer="sticky") as cluster:
        report = lk.load_test(cluster, users=6, requests=300, progress=False,
                              faults=[lk.Fault("kill", "s2", at=0.3),
                                      lk.Fault("revive", "s2", at=0.7)])
        assert cluster.server("s2").alive
    assert [(a, s) for _, a, s in report.fault_log] == [("kill", "s2"), ("revive", "s2")]
    (server, start, end), = report.fault_periods()
    assert server == "s2" and 0 < start < end < report.duration
    assert report.failed == 0, report.statuses  # idempotent GETs are retried
    during = [s for s in report.samples if s.server == "s2" and start < s.start and s.end < end]
    assert not during, (start, end, during[:3])
    figure = report.plot()
    assert len(figure.axes[0].patches) == 1  # one shaded fault period


def test_a_dead_target_gives_failed_requests_not_an_exception():
    server = lk.serve(make_counter, name="gone")
    server.kill()
    try:
        report = lk.load_test(server, users=2, requests=6, progress=False)
        assert (report.ok, report.failed, report.statuses) == (0, 6, {0: 6})
    finally:
        server.close()


def test_capacity_model_bounds_throughput():
    # 1 server x 2 workers x 50 ms = at most 40 requests/s, whatever the load.
    with lk.serve(make_counter, name="cap", workers=2, service_time=0.05) as server:
        report = lk.load_test(server, users=8, requests=40, progress=False)
    assert report.ok == 40
    assert report.throughput <= 40 * 1.1  # an upper bound is safe on a noisy machine


@pytest.mark.parametrize("kwargs, match", [
    ({"users": 0}, "users"), ({"requests": 0}, "requests"),
    ({"faults": [lk.Fault("kill", "s1", at=0.5)]}, "Cluster"),
])
def test_bad_arguments_say_what_to_do(kwargs, match):
    with pytest.raises(lk.LabkitError, match=match):
        lk.load_test("http://127.0.0.1:9", **kwargs)


def test_a_fault_on_an_unknown_server_fails_before_the_load():
    with lk.Cluster(make_counter, size=2, name="unknown") as cluster:
        with pytest.raises(lk.LabkitError, match="s9"):
            lk.load_test(cluster, requests=10, progress=False,
                         faults=[lk.Fault("kill", "s9", at=0.5)])
        assert cluster.stats()["s1"]["requests"] == 0  # nothing was sent


def test_bad_targets_and_faults():
    with pytest.raises(lk.LabkitError, match="URL"):
        lk.load_test(42)
    with pytest.raises(lk.LabkitError, match="kill"):
        lk.Fault("explode", "s1", at=0.5)
    with pytest.raises(lk.LabkitError, match="fraction"):
        lk.Fault("kill", "s1", at=30)


def test_percentiles_use_nearest_rank():
    samples = [Sample(0, i, latency=i / 1000, status=200, server="s1") for i in range(1, 101)]
    report = LoadReport(users=1, samples=samples, duration=1.0)
    assert (report.p50, report.p95, report.p99) == (50.0, 95.0, 99.0)


def test_a_broken_setup_function_is_reported_not_swallowed():
    def setup(user):
        raise KeyError("oops")

    with lk.serve(make_counter, name="setup") as server:
        with pytest.raises(lk.LabkitError, match="setup"):
            lk.load_test(server, users=2, requests=4, setup=setup, progress=False)


SERVICE_TIME = 0.02


def make_slow_starting_counter() -> Flask:
    """The counter app, 0.3 s to start (like an app hashing its users' passwords)."""
    time.sleep(0.3)
    return make_counter()


def _longest_pause_on_live_servers(isolation: str) -> tuple[float, str]:
    with lk.Cluster(make_slow_starting_counter, size=3, isolation=isolation, workers=4,
                    service_time=SERVICE_TIME, name=f"pause-{isolation}") as cluster:
        report = lk.load_test(cluster, users=12, requests=900, progress=False,
                              faults=[lk.Fault("kill", "s2", at=0.3),
                                      lk.Fault("revive", "s2", at=0.6)])
    assert [(a, s) for _, a, s in report.fault_log] == [("kill", "s2"), ("revive", "s2")]
    assert min(s.start for s in report.samples) >= 0      # no sample before zero
    assert report.failed == 0, report.statuses
    live = sorted(s.end for s in report.samples if s.server in ("s1", "s3"))
    gap, at = max((b - a, a) for a, b in zip(live, live[1:]))
    return gap, f"{gap * 1000:.0f} ms from t={at:.3f} s, faults at {report.fault_log}"


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_a_kill_under_load_does_not_pause_the_live_servers(isolation):
    # 3 servers x 4 workers x 20 ms, s2 killed and revived under load. The harness
    # must not invent a pause: while s2 dies or restarts (0.3 s), users on s1 and s3
    # keep completing requests. A harness that stalls its users during a fault does
    # so at every fault, every run (0.3 s here); a busy machine can also stall this
    # process for a moment, at random. So one run without a pause of 10 service
    # times proves the harness makes none; a second run is allowed for the machine.
    seen = []
    for _attempt in range(2):
        gap, detail = _longest_pause_on_live_servers(isolation)
        seen.append(detail)
        if gap < 10 * SERVICE_TIME:
            return
    pytest.fail(f"completions on s1/s3 paused in every run: {seen}")


def test_no_sample_starts_before_zero_even_with_a_slow_setup():
    with lk.serve(make_login_app, name="clock") as server:
        report = lk.load_test(server, users=6, requests=60, path="/me", progress=False,
                              setup=lambda u: [("POST", "/login", {"user": f"u{u}"})])
    assert report.statuses == {200: 60}
    assert min(s.start for s in report.samples) >= 0
    assert max(s.end for s in report.samples) <= report.duration + 1e-6


def test_the_progress_bar_leaves_no_tqdm_monitor_behind():
    with lk.serve(make_counter, name="bar") as server:
        lk.load_test(server, users=2, requests=10, progress=True)
    assert "tqdm_monitor" not in {t.name for t in threading.enumerate()}


def test_failures_are_marked_and_throughput_over_time_shows_the_outage():
    samples = ([Sample(0, i / 100 + 0.001, 0.003, 200, "s1") for i in range(100)]
               + [Sample(1, 0.4 + i / 100, 0.002, 0, None, "ConnectionRefusedError")
                  for i in range(20)])
    report = LoadReport(users=2, samples=samples, duration=1.0,
                        fault_log=[(0.4, "kill", "s2"), (0.6, "revive", "s2")])
    curve = report.throughput_over_time(bin=0.1)
    assert [t for t, _ in curve] == [round(i / 10, 9) for i in range(10)]
    assert sum(r * 0.1 for _, r in curve) == pytest.approx(120)
    ok = dict(report.throughput_over_time(bin=0.1, ok_only=True))
    assert ok[0.2] == pytest.approx(100)  # ten answers in that bin
    figure = report.plot()
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert "failed (20)" in labels and "s1" in labels
    assert len(report.plot_throughput().axes[0].patches) == 1  # the shaded outage
    with pytest.raises(lk.LabkitError, match="bin"):
        report.throughput_over_time(bin=0)
