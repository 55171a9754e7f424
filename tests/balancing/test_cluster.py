"""lk.Cluster and the balancer: policies, pins, faults, retries, bad input."""

from __future__ import annotations

import socket
import threading

import pytest
import requests

import labkit as lk
from labkit import errors
from labkit.balancing.policies import Backend, ConsistentHash, RequestInfo

from sample_apps import make_counter, make_slow


def served_by(url, n, **kw):
    session = requests.Session()
    return [session.get(url + "/", **kw).headers["X-Served-By"] for _ in range(n)]


def test_round_robin_takes_turns():
    with lk.Cluster(make_counter, size=3) as cluster:
        assert served_by(cluster.url, 6) == ["s1", "s2", "s3", "s1", "s2", "s3"]
        assert repr(cluster) == "<Cluster cluster round_robin: s1 up, s2 up, s3 up>"


def test_each_server_has_its_own_memory():
    with lk.Cluster(make_counter, size=2) as cluster:
        session = requests.Session()
        session.post(cluster.url + "/count/ada")  # lands on s1
        counts = [session.get(cluster.url + "/count/ada").json()["count"] for _ in range(2)]
        assert counts == [0, 1]  # s2 has never heard of ada; s1 has


def test_sticky_pins_a_client_with_a_cookie_the_app_never_sees():
    with lk.Cluster(make_counter, size=3, balancer="sticky") as cluster:
        session = requests.Session()
        first = session.get(cluster.url + "/echo")
        assert session.cookies.get("LKSERVER") == first.headers["X-Served-By"]
        again = [session.get(cluster.url + "/echo") for _ in range(5)]
        assert {r.headers["X-Served-By"] for r in again} == {first.headers["X-Served-By"]}
        assert all(r.json()["cookie"] is None for r in again)
        assert again[0].json()["forwarded"] == "127.0.0.1"


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_a_pinned_client_is_repinned_when_its_server_dies(isolation):
    with lk.Cluster(make_counter, size=3, balancer="sticky", isolation=isolation) as cluster:
        session = requests.Session()
        session.post(cluster.url + "/count/ada")
        home = session.cookies["LKSERVER"]
        cluster.kill(home)
        response = session.get(cluster.url + "/count/ada")
        assert response.status_code == 200
        assert response.headers["X-Served-By"] != home
        assert session.cookies["LKSERVER"] == response.headers["X-Served-By"]
        assert response.json()["count"] == 0  # the new server has no memory of ada


def test_least_connections_avoids_the_busy_server():
    gate = threading.Event()
    with lk.Cluster(lambda: make_slow(gate), size=2, balancer="least_connections") as cluster:
        slow = threading.Thread(target=requests.get, args=(cluster.url + "/wait",))
        slow.start()
        try:
            deadline = threading.Event()
            for _ in range(200):  # wait (event-driven) until the request is in flight
                if any(b.active for b in cluster.balancer.backends):
                    break
                deadline.wait(0.02)
            busy = next(b.name for b in cluster.balancer.backends if b.active)
            assert set(served_by(cluster.url, 4)) == {"s1", "s2"} - {busy}
        finally:
            gate.set()
            slow.join()


def test_hash_keeps_a_client_on_one_server_and_moves_only_the_dead_ones_keys():
    with lk.Cluster(make_counter, size=3, balancer="hash") as cluster:
        homes = {}
        for i in range(30):
            (home,) = set(served_by(cluster.url, 3, headers={"X-Client-Id": f"user-{i}"}))
            homes[i] = home
        assert len(set(homes.values())) == 3
        cluster.kill("s2")
        for i, home in homes.items():
            (now,) = set(served_by(cluster.url, 2, headers={"X-Client-Id": f"user-{i}"}))
            assert now == home if home != "s2" else now != "s2"


def test_consistent_hash_is_deterministic_across_instances():
    servers = [Backend("s1"), Backend("s2"), Backend("s3")]
    picks = [ConsistentHash().choose(RequestInfo("GET", "/", client_id="user-7"), servers).name
             for _ in range(3)]
    assert len(set(picks)) == 1


def test_idempotent_requests_are_retried_once_but_posts_are_not():
    with lk.Cluster(make_counter, size=2) as cluster:
        session = requests.Session()
        assert session.get(cluster.url + "/").ok  # s1, kept-alive via the balancer
        # Crash s1 behind the balancer's back (as a real crash would be discovered).
        s1 = cluster.server("s1")
        s1._http.shutdown()
        s1._http.server_close()
        s1._http.drop_connections()
        s1.state = "up"  # the balancer still believes it is alive
        assert session.get(cluster.url + "/").ok and session.get(cluster.url + "/").ok
        posts = [session.post(cluster.url + "/count/x") for _ in range(2)]
        statuses = sorted(r.status_code for r in posts)
        assert statuses == [200, 502]
        failed = next(r for r in posts if r.status_code == 502)
        assert failed.json()["error"] == "upstream_failed"
        s1.state = "down"


def test_every_server_dead_gives_503_with_a_reason_not_a_hang():
    with lk.Cluster(make_counter, size=2) as cluster:
        cluster.kill("s1")
        cluster.kill("s2")
        response = requests.get(cluster.url + "/", timeout=5)
        assert response.status_code == 503
        assert response.json()["error"] == "no_live_server"
        cluster.revive("s2")
        assert requests.get(cluster.url + "/").headers["X-Served-By"] == "s2"


def test_stats_count_requests_errors_and_sessions():
    with lk.Cluster(make_counter, size=2) as cluster:
        session = requests.Session()
        session.post(cluster.url + "/count/a")   # s1
        session.get(cluster.url + "/boom")       # s2: 500
        stats = cluster.stats()
        assert stats["s1"] == {"alive": True, "requests": 1, "errors": 0, "sessions": 1}
        assert stats["s2"] == {"alive": True, "requests": 1, "errors": 1, "sessions": 0}
        cluster.kill("s1")
        assert cluster.stats()["s1"] == {"alive": False, "requests": 1, "errors": 0,
                                         "sessions": None}
        assert repr(cluster.stats()).splitlines()[0].split() == [
            "server", "alive", "requests", "errors", "sessions"]


def test_bodies_chunked_responses_and_internal_paths_through_the_balancer():
    with lk.Cluster(make_counter, size=1) as cluster:
        assert requests.post(cluster.url + "/body", data=b"x" * 100_000).json() == {"size": 100_000}
        chunks = (b"ab" for _ in range(10))  # requests sends this chunked
        assert requests.post(cluster.url + "/body", data=chunks).json() == {"size": 20}
        assert requests.get(cluster.url + "/stream").text.count("part") == 5
        internal = requests.get(cluster.url + "/__labkit__/log")
        assert internal.status_code == 404 and internal.json()["error"] == "internal_endpoint"


def test_garbage_to_the_balancer_gets_a_400():
    with lk.Cluster(make_counter, size=1) as cluster:
        port = int(cluster.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"NONSENSE\r\n\r\n")
            assert sock.recv(1000).startswith(b"HTTP/1.1 400")


def test_a_learners_policy_object_is_used_and_its_mistakes_are_reported():
    class AlwaysLast:
        def choose(self, request, servers):
            return servers[-1]

    class Broken:
        def choose(self, request, servers):
            return "s1"

    with lk.Cluster(make_counter, size=3, balancer=AlwaysLast()) as cluster:
        assert served_by(cluster.url, 3) == ["s3"] * 3
    with lk.Cluster(make_counter, size=2, balancer=Broken(), name="broken") as cluster:
        response = requests.get(cluster.url + "/")
        assert response.status_code == 503 and response.json()["error"] == "policy_error"


def test_unknown_policy_and_unknown_server_say_what_exists():
    with pytest.raises(errors.UnknownPolicyError, match="sticky"):
        lk.Cluster(make_counter, balancer="random")
    with pytest.raises(errors.UnknownPolicyError, match="choose"):
        lk.Cluster(make_counter, balancer=object())
    with lk.Cluster(make_counter, size=2) as cluster:
        with pytest.raises(errors.UnknownServerError, match="s1, s2"):
            cluster.kill("s9")


def test_cluster_needs_a_factory_not_an_app():
    with pytest.raises(errors.BadAppError, match="factory"):
        lk.Cluster(make_counter())


def test_a_rerun_cell_replaces_the_cluster_of_the_same_name():
    first = lk.Cluster(make_counter, size=2, name="rerun")
    second = lk.Cluster(make_counter, size=2, name="rerun")
    try:
        assert repr(first) == "<Cluster rerun round_robin closed>"
        assert requests.get(second.url + "/").ok
    finally:
        second.close()


def test_two_clusters_with_different_names_live_side_by_side():
    with lk.Cluster(make_counter, size=1, name="a") as a, \
         lk.Cluster(make_counter, size=1, name="b") as b:
        assert requests.get(a.url + "/").ok and requests.get(b.url + "/").ok


def test_draw_is_deterministic_and_marks_dead_servers():
    from labkit.observe.topology import build_graph

    with lk.Cluster(make_counter, size=3, balancer="sticky") as cluster:
        lk.load_test(cluster, users=6, requests=12, progress=False)
        cluster.kill("s2")
        graph = build_graph(cluster)
        assert graph.nodes["s2"]["alive"] is False and "(down)" in graph.nodes["s2"]["label"]
        assert {n for n, d in graph.nodes(data=True) if d["kind"] == "client"} == {
            f"user-{i}" for i in range(6)}
        pins = {u: v for u, v, d in graph.edges(data=True) if d["kind"] == "pin"}
        assert pins == cluster.pins
        assert build_graph(cluster).nodes(data=True) == graph.nodes(data=True)
        figure = cluster.draw()
        assert repr(figure) == "<Figure size 750x420 with 1 Axes>"
