"""The same experiments on production parts: HAProxy in front, gunicorn behind.

Each lesson the kit's own balancer teaches is run again with ``engine="haproxy"``
and ends in the same assert. Skipped on a developer machine without HAProxy; under
CI (``CI=true``) a missing HAProxy fails, since .ci/run installs it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time

import psutil
import pytest
import requests
import yaml

import labkit as lk
from labkit.apps import social
from labkit.balancing import deploy, haproxy
from labkit.errors import EngineError, LabkitError

HAVE_HAPROXY = shutil.which("haproxy") or os.path.exists("/usr/sbin/haproxy")
if not HAVE_HAPROXY and os.environ.get("CI") != "true":
    pytest.skip("HAProxy is not installed (apt-get install haproxy)", allow_module_level=True)

USERS = [f"user{i}" for i in range(1, 13)]


def stateful_app():
    return social.create_app(mode="session", extra_users=len(USERS), kdf_iterations=1_000)


def log_in(cluster, name):
    client = requests.Session()
    response = client.post(cluster.url + "/login", timeout=10,
                           json={"username": name, "password": f"pw-{name}"})
    assert response.status_code == 200, response.text
    return client


def wait_for(condition, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_haproxy_is_what_runs():
    assert HAVE_HAPROXY, "CI must install haproxy (.ci/run)"
    with lk.Cluster(stateful_app, size=2, balancer="round_robin", engine="haproxy",
                    name="hx-basic") as cluster:
        assert repr(cluster) == "<Cluster hx-basic round_robin on haproxy: s1 up, s2 up>"
        pids = {p.name() for p in psutil.Process().children(recursive=True)}
        assert "haproxy" in pids and any("gunicorn" in n or "python" in n for n in pids)
        served = [requests.get(cluster.url + "/posts", timeout=10).headers["X-Served-By"]
                  for _ in range(6)]
        assert served == ["s1", "s2"] * 3  # balance roundrobin
        config = cluster.haproxy_config()
        assert "balance roundrobin" in config and f"bind 127.0.0.1:{cluster.balancer.port}" in config


def test_sticky_outage_logs_out_exactly_the_dead_servers_users():
    with lk.Cluster(stateful_app, size=3, balancer="sticky", engine="haproxy",
                    name="hx-sticky") as cluster:
        clients = {name: log_in(cluster, name) for name in USERS}
        pins = {name: c.cookies.get("LKSERVER") for name, c in clients.items()}
        assert set(pins.values()) == {"s1", "s2", "s3"}  # cookie insert spread them
        for name, client in clients.items():  # pinned: every request to the same server
            assert client.get(cluster.url + "/me", timeout=10).headers["X-Served-By"] == pins[name]
        cluster.kill("s2")
        wait_for(lambda: cluster.balancer.status("s2").startswith("DOWN"), "s2 marked down")
        logged_out = {name for name, c in clients.items()
                      if c.get(cluster.url + "/me", timeout=10).status_code == 401}
        assert logged_out == {name for name, server in pins.items() if server == "s2"}
        assert "cookie LKSERVER insert indirect nocache" in cluster.haproxy_config()


def test_round_robin_kill_under_load_loses_no_idempotent_request():
    with lk.Cluster(stateful_app, size=3, balancer="round_robin", engine="haproxy",
                    workers=4, name="hx-rr") as cluster:
        report = lk.load_test(cluster, users=6, requests=600, path="/posts", progress=False,
                              faults=[lk.Fault("kill", "s2", at=0.3),
                                      lk.Fault("revive", "s2", at=0.7)])
        assert report.failed == 0 and report.ok == 600
        assert set(report.per_server) == {"s1", "s2", "s3"}


def test_post_to_a_dead_server_is_redispatched_only_before_it_was_sent():
    """Connection refused: HAProxy retries any method (the server never saw it)."""
    with lk.Cluster(stateful_app, size=2, balancer="round_robin", engine="haproxy",
                    name="hx-post") as cluster:
        client = log_in(cluster, "user1")
        cluster.kill("s1")
        statuses = {client.post(cluster.url + "/login", timeout=10,
                                json={"username": "user1", "password": "pw-user1"}).status_code
                    for _ in range(4)}
        assert statuses == {200}


@pytest.mark.parametrize("post_may_retry", [False, True])
def test_a_post_cut_mid_request_gets_502_because_of_disable_l7_retry(tmp_path, monkeypatch,
                                                                        post_may_retry):
    """Chapter 06b's 502 comes from the config line, not from HAProxy looking at methods.

    The control (POST added to the line's list) is retried on the other server: HAProxy's
    ``retry-on empty-response`` itself replays any method.
    """
    if post_may_retry:
        monkeypatch.setattr(haproxy, "IDEMPOTENT", haproxy.IDEMPOTENT + ("POST",))
    started = tmp_path / "started"

    def slow_app():
        from flask import Flask
        app = Flask("slow")

        @app.route("/work", methods=["GET", "POST"])
        def work():
            started.touch()          # the request has reached this server
            time.sleep(1.0)
            return {"done": True}
        return app

    with lk.Cluster(slow_app, size=2, balancer="hash", engine="haproxy",
                    name="hx-midway") as cluster:
        ada = {"X-Client-Id": "ada"}
        first = requests.get(cluster.url + "/work", headers=ada, timeout=10).headers["X-Served-By"]
        started.unlink()
        answer = {}
        sender = threading.Thread(target=lambda: answer.update(r=requests.post(
            cluster.url + "/work", headers=ada, timeout=30)))
        sender.start()
        wait_for(started.exists, "the POST to start on its server")
        cluster.kill(first)
        sender.join(30)
        if post_may_retry:
            assert answer["r"].status_code == 200 and answer["r"].headers["X-Served-By"] != first
        else:
            assert answer["r"].status_code == 502


def test_shared_redis_store_loses_no_session():
    with lk.RedisServer(name="hx-redis") as redis:
        def shared():
            return social.create_app(mode="session", extra_users=len(USERS),
                                     kdf_iterations=1_000,
                                     store=lk.RedisSessionStore(redis, idle_timeout=600))

        with lk.Cluster(shared, size=3, balancer="round_robin", engine="haproxy",
                        name="hx-shared") as cluster:
            clients = {name: log_in(cluster, name) for name in USERS[:6]}
            cluster.kill("s1")
            cluster.kill("s3")
            for client in clients.values():
                assert client.get(cluster.url + "/me", timeout=10).status_code == 200


def test_internal_endpoints_and_forwarded_for_at_the_haproxy_edge():
    with lk.Cluster(stateful_app, size=1, engine="haproxy", name="hx-edge") as cluster:
        for path in ("/__labkit__/log", "//__labkit__/log", "/%5F_labkit__/stats",
                     "/%5f%5flabkit%5f%5f/log", "/x/../__labkit__/log"):
            assert requests.get(cluster.url + path, timeout=10).status_code == 404, path
        requests.get(cluster.url + "/posts", headers={"X-Forwarded-For": "6.6.6.6"}, timeout=10)
        config = cluster.haproxy_config()
        assert "http-request set-header X-Forwarded-For %[src]" in config


def test_kill_is_sigkill_of_the_whole_gunicorn_group():
    with lk.serve(stateful_app, name="hx-gunicorn", isolation="gunicorn") as server:
        master = psutil.Process(server._process.pid)
        wait_for(lambda: master.children(), "the gunicorn worker")
        group = [master.pid] + [p.pid for p in master.children(recursive=True)]
        assert all(os.getpgid(pid) == master.pid for pid in group)  # its own group
        server.kill()
        assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status()
                       != psutil.STATUS_ZOMBIE for pid in group)
        with pytest.raises(requests.ConnectionError):
            requests.get(server.url + "/posts", timeout=2)
        server.revive()
        assert requests.get(server.url + "/posts", timeout=10).headers["X-Served-By"] == "hx-gunicorn"


def test_a_learner_policy_cannot_run_inside_haproxy():
    class Mine:
        def choose(self, request, servers):
            return servers[0]

    with pytest.raises(EngineError, match="cannot run your policy object Mine"):
        lk.Cluster(stateful_app, size=2, balancer=Mine(), engine="haproxy", name="hx-mine")
    with pytest.raises(EngineError, match="engine must be"):
        lk.Cluster(stateful_app, engine="nginx")


def test_missing_haproxy_names_the_package(monkeypatch):
    monkeypatch.setattr(haproxy.shutil, "which", lambda name: None)
    monkeypatch.setattr(haproxy.os, "access", lambda path, mode: False)
    with pytest.raises(EngineError, match="apt-get install haproxy"):
        lk.Cluster(stateful_app, size=1, engine="haproxy", name="hx-missing")


def test_a_rejected_config_shows_haproxys_own_message(monkeypatch):
    monkeypatch.setitem(haproxy.DIRECTIVES, "round_robin", ["balance no-such-algorithm"])
    with pytest.raises(EngineError, match="HAProxy rejected the configuration") as err:
        lk.Cluster(stateful_app, size=1, engine="haproxy", name="hx-bad")
    assert "balance only supports" in str(err.value) and "haproxy.cfg:" in str(err.value)


def test_a_factory_that_raises_under_gunicorn_is_a_clear_error():
    def broken():
        raise RuntimeError("no database")

    with pytest.raises(LabkitError, match="no database"):
        lk.Cluster(broken, size=1, engine="haproxy", name="hx-broken")


def test_manifests_describe_the_live_topology():
    with lk.Cluster(stateful_app, size=3, balancer="sticky", engine="haproxy",
                    name="hx-deploy") as cluster:
        compose = yaml.safe_load(cluster.compose_file(store=True))
        servers = [s.name for s in cluster.servers]
        assert set(compose["services"]) == {*servers, "balancer", "redis"}
        assert compose["services"]["balancer"]["depends_on"] == servers
        assert compose["services"]["balancer"]["labels"]["labkit.policy"] == "sticky"
        manifests = cluster.kubernetes_manifests(store=True)
        docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(manifests) if d}
        assert docs[("Deployment", "labkit-app")]["spec"]["replicas"] == len(servers)
        assert ("Service", "redis") in docs
        assert deploy.policy_of_manifests(manifests) == "sticky"
    for policy in ("round_robin", "least_connections", "hash"):
        with lk.Cluster(stateful_app, size=2, balancer=policy, name=f"k-{policy}") as kit:
            assert deploy.policy_of_manifests(kit.kubernetes_manifests()) == policy


@pytest.mark.skipif(not shutil.which("nginx") and not os.path.exists("/usr/sbin/nginx")
                    and os.environ.get("CI") != "true",
                    reason="nginx is not installed")
def test_the_nginx_config_really_runs_and_sticks(tmp_path):
    """Open-source nginx, no Plus: the routing cookie pins the login and what follows."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    with lk.Cluster(stateful_app, size=3, balancer="sticky", name="ngx") as cluster:
        port = haproxy._free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(cluster.nginx_config(port=port))
        subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf)], check=True,
                       capture_output=True, timeout=30)
        proc = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(conf),
                                 "-g", "daemon off;"], stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: haproxy._answers(port), "nginx to listen")
            url = f"http://127.0.0.1:{port}"
            landed = set()
            for name in USERS[:6]:
                client = requests.Session()
                stranger = client.get(url + "/me", timeout=10)  # a 401 still sets the pin
                assert stranger.status_code == 401 and "LKROUTE" in client.cookies
                login = client.post(url + "/login", json={"username": name,
                                                          "password": f"pw-{name}"}, timeout=10)
                assert login.status_code == 200
                assert login.headers["X-Served-By"] == stranger.headers["X-Served-By"]
                me = [client.get(url + "/me", timeout=10) for _ in range(3)]
                assert all(r.status_code == 200 for r in me)  # the session is where it lands
                assert {r.headers["X-Served-By"] for r in me} == {login.headers["X-Served-By"]}
                landed.add(login.headers["X-Served-By"])
            assert len(landed) >= 2  # clients are spread, not all on one server
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


def test_engine_benchmark_prints_its_figures():
    """The kit vs HAProxy benchmark runs (its figures are read in the closing note)."""
    import json
    import pathlib
    import sys

    root = pathlib.Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, str(root / "benchmarks/engine.py"), "--repeats",
                             "1", "--quick"], capture_output=True, text=True, timeout=600,
                            cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("kit_vs_haproxy_rps", "kit_fidelity", "haproxy_fidelity",
                "kit_p50_added_ms", "haproxy_p50_added_ms", "kit_cpu_ms_per_request"):
        assert isinstance(figures[key], float), key
    assert "Why the kit is slower" in result.stdout
