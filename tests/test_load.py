"""lk.load_test: users with cookie jars, determinism, faults, capacity model."""

from __future__ import annotations

import secrets

import pytest
from flask import Flask, jsonify, request

import labkit as lk
from labkit.observe.load import LoadReport, Sample

from apps import make_counter


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
    during = [s for s in report.samples if s.server == "s2" and start < s.start < end]
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
