"""Session replication between kit servers: write-update and write-invalidate."""

from __future__ import annotations

import pytest
import requests

import labkit as lk
from labkit.errors import LabkitError
from labkit.state.replication import Copy, Replica, Replication


@pytest.fixture(params=["update", "invalidate"])
def protocol(request):
    return request.param


def _group(protocol: str, balancer: str = "round_robin"):
    group = Replication(protocol)
    cluster = lk.Cluster(group.factory, size=3, balancer=balancer, name="replication-test")
    group.connect(cluster)
    return group, cluster


def _on(server, client: requests.Session, method: str, path: str, **kw):
    """Send one request straight to one server (the tests choose where it lands)."""
    return client.request(method, server.url + path, timeout=5, **kw)


def test_messages_per_write_and_per_read(protocol):
    group, cluster = _group(protocol)
    with cluster, requests.Session() as ada:
        s1, s2, s3 = cluster.servers
        login = _on(s1, ada, "POST", "/login", json={"user": "ada"})
        assert login.status_code == 200
        assert login.headers["X-Peer-Messages"] == "2"  # one to each peer
        assert group.count(protocol) == 2

        first_read = _on(s2, ada, "GET", "/cart")
        again = _on(s2, ada, "GET", "/cart")
        assert first_read.json() == again.json() == {"user": "ada", "cart": []}
        # update: the copy is already there; invalidate: fetched once from the owner
        expected = "0" if protocol == "update" else "1"
        assert first_read.headers["X-Peer-Messages"] == expected
        assert again.headers["X-Peer-Messages"] == "0"

        write = _on(s3, ada, "POST", "/cart", json={"item": "tea"})
        assert write.json()["cart"] == ["tea"]
        reads = [_on(s, ada, "GET", "/cart") for s in (s1, s2, s3)]
        assert all(r.json()["cart"] == ["tea"] for r in reads)  # coherent everywhere
        assert cluster.stats()["s1"]["sessions"] == 1


def test_the_chapter_script(protocol):
    """The request sequence of chapter 04, message by message."""
    group, cluster = _group(protocol)
    with cluster, requests.Session() as ada:
        s1, s2, s3 = cluster.servers
        steps = [(s1, "POST", "/login", {"user": "ada"}), (s2, "GET", "/cart", None),
                 (s2, "GET", "/cart", None), (s3, "POST", "/cart", {"item": "tea"}),
                 (s3, "POST", "/cart", {"item": "jam"}), (s1, "GET", "/cart", None),
                 (s2, "GET", "/cart", None), (s3, "GET", "/cart", None),
                 (s3, "POST", "/cart", {"item": "pie"}), (s3, "POST", "/cart", {"item": "ham"})]
        sent = [int(_on(server, ada, method, path, json=body).headers["X-Peer-Messages"])
                for server, method, path, body in steps]
        expected = {"update": [2, 0, 0, 2, 2, 0, 0, 0, 2, 2],
                    # fetch before the first write on s3; its second write is free;
                    # after s1 and s2 fetched, s3 must invalidate again, then not.
                    "invalidate": [2, 1, 0, 3, 0, 1, 1, 0, 2, 0]}[protocol]
        assert sent == expected
        assert group.count() == sum(expected)


def test_update_carries_the_session_invalidate_does_not():
    sizes = {}
    for protocol in ("update", "invalidate"):
        group, cluster = _group(protocol)
        with cluster, requests.Session() as ada:
            s1, s2, _ = cluster.servers
            _on(s1, ada, "POST", "/login", json={"user": "ada"})
            _on(s2, ada, "GET", "/cart")  # s2 holds a copy: the write must reach it
            group.reset()
            _on(s1, ada, "POST", "/cart", json={"item": "x" * 1000})
            sizes[protocol] = {m.nbytes for m in group.messages}
            assert len(group.messages) == 2
    assert min(sizes["update"]) > 1000  # the whole session travels to every peer
    assert max(sizes["invalidate"]) < 100  # only "yours is stale, I own it"


def test_late_message_gives_a_stale_read(protocol):
    group, cluster = _group(protocol)
    with cluster, requests.Session() as ada:
        s1, s2, _ = cluster.servers
        _on(s1, ada, "POST", "/login", json={"user": "ada"})
        assert _on(s2, ada, "GET", "/cart").json()["cart"] == []  # s2 holds a copy
        group.delay(s2, 0.5)
        _on(s1, ada, "POST", "/cart", json={"item": "tea"})
        assert _on(s2, ada, "GET", "/cart").json()["cart"] == []  # stale!
        group.settle()
        group.delay(s2, 0)
        assert _on(s2, ada, "GET", "/cart").json()["cart"] == ["tea"]


def test_session_survives_its_server_only_with_write_update(protocol):
    group, cluster = _group(protocol, balancer="sticky")
    with cluster, requests.Session() as ada:
        ada.post(cluster.url + "/login", json={"user": "ada"}, timeout=5)
        home = ada.post(cluster.url + "/cart", json={"item": "tea"}, timeout=5)
        cluster.kill(home.headers["X-Served-By"])
        after = ada.get(cluster.url + "/cart", timeout=5)
        assert after.headers["X-Served-By"] != home.headers["X-Served-By"]
        if protocol == "update":
            assert after.status_code == 200 and after.json()["cart"] == ["tea"]
        else:  # the peers only knew "the owner has it", and the owner is dead
            assert after.status_code == 401
            assert after.json()["error"] == "unknown_session"
            assert group.messages[-1].kind == "fetch" and not group.messages[-1].delivered


def test_logout_is_replicated(protocol):
    group, cluster = _group(protocol)
    with cluster, requests.Session() as ada:
        s1, s2, s3 = cluster.servers
        _on(s1, ada, "POST", "/login", json={"user": "ada"})
        _on(s2, ada, "GET", "/cart")
        sid = ada.cookies["sid"]
        _on(s1, ada, "POST", "/logout")
        ada.cookies.set("sid", sid)  # replay the old cookie everywhere
        assert all(_on(s, ada, "GET", "/cart").status_code == 401 for s in (s1, s2, s3))


def test_peer_endpoints_refuse_clients():
    group, cluster = _group("update")
    with cluster, requests.Session() as mallory:
        forged = mallory.post(cluster.url + "/peer/update/abc", timeout=5,
                              json={"data": {"user": "admin", "cart": []}, "version": 99})
        assert forged.status_code == 403 and forged.json()["error"] == "peers_only"
        mallory.cookies.set("sid", "abc")
        assert mallory.get(cluster.url + "/cart", timeout=5).status_code == 401


def test_bad_arguments():
    with pytest.raises(ValueError, match="protocol"):
        Replication("gossip")
    with pytest.raises(ValueError, match="Replica subclass"):
        Replication(dict)
    group = Replication("update")
    with lk.serve(group.factory, name="rep-proc", isolation="process") as server:
        with pytest.raises(LabkitError, match="isolation='thread'"):
            group.connect([server])


def test_a_protocol_of_your_own():
    """A Replica subclass plugs in: here, a server that never tells anyone."""

    class Lonely(Replica):
        def read(self, sid):
            with self.lock:
                copy = self.copies.get(sid)
            return copy.data if copy else None

        def write(self, sid, data):
            with self.lock:
                self.copies[sid] = Copy(data, 1, self.name)

    group = Replication(Lonely)
    cluster = lk.Cluster(group.factory, size=2, name="replication-test")
    group.connect(cluster)
    with cluster, requests.Session() as ada:
        s1, s2 = cluster.servers
        login = _on(s1, ada, "POST", "/login", json={"user": "ada"})
        assert login.headers["X-Peer-Messages"] == "0" and group.count() == 0
        assert _on(s2, ada, "GET", "/cart").status_code == 401  # s2 never heard of ada
        assert repr(group) == "<Replication Lonely: s1, s2; 0 messages>"
