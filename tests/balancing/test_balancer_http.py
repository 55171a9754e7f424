"""The balancer relays HTTP faithfully, whatever the app does."""

from __future__ import annotations

import http.client
import socket

import pytest
import requests
from flask import Flask, Response, jsonify, request, session

import labkit as lk


def make_odd_app() -> Flask:
    app = Flask("odd")
    app.secret_key = "test-only-key"

    @app.route("/head", methods=["GET", "HEAD"])
    def head():
        return "x" * 100

    @app.get("/empty")
    def empty():
        return "", 204

    @app.get("/cached")
    def cached():
        return Response(status=304, headers={"ETag": '"v1"'})

    @app.get("/cookies")
    def cookies():
        response = jsonify(ok=True)
        response.set_cookie("a", "1")
        response.set_cookie("b", "2")
        return response

    @app.get("/big")
    def big():
        return b"z" * (5 * 1024 * 1024)

    @app.get("/query")
    def query():
        return jsonify(dict(request.args))

    @app.post("/login")
    def login():
        session["user"] = request.get_json()["user"]
        return jsonify(ok=True)

    @app.get("/me")
    def me():
        return jsonify(user=session.get("user"), cookie_names=sorted(request.cookies))

    return app


@pytest.fixture
def cluster():
    with lk.Cluster(make_odd_app, size=2, balancer="sticky", name="odd") as c:
        yield c


def test_head_204_and_304_have_no_body_and_keep_the_connection(cluster):
    session = requests.Session()
    head = session.head(cluster.url + "/head")
    assert head.status_code == 200 and head.headers["Content-Length"] == "100" and head.content == b""
    assert session.get(cluster.url + "/empty").status_code == 204
    assert session.get(cluster.url + "/cached").status_code == 304
    assert session.get(cluster.url + "/head").text == "x" * 100  # same connection still fine


def test_every_set_cookie_survives_next_to_the_pin(cluster):
    response = requests.get(cluster.url + "/cookies")
    assert {c.name for c in response.cookies} == {"a", "b", "LKSERVER"}


def test_flask_cookie_session_works_through_a_sticky_balancer(cluster):
    client = requests.Session()
    client.post(cluster.url + "/login", json={"user": "ada"})
    me = client.get(cluster.url + "/me").json()
    assert me == {"user": "ada", "cookie_names": ["session"]}  # the pin is stripped


def test_big_bodies_and_query_strings(cluster):
    assert len(requests.get(cluster.url + "/big").content) == 5 * 1024 * 1024
    assert requests.get(cluster.url + "/query?a=1&b=two").json() == {"a": "1", "b": "two"}


def test_connection_close_and_http_1_0_clients(cluster):
    port = int(cluster.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/head", headers={"Connection": "close"})
    response = conn.getresponse()
    assert response.status == 200 and response.read() == b"x" * 100
    assert response.getheader("Connection") == "close"
    conn.close()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /query?v=1 HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):  # an HTTP/1.0 answer ends when the balancer closes
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b'{"v":"1"}\n')


def test_oversized_headers_get_431(cluster):
    response = requests.get(cluster.url + "/query", headers={"X-Big": "y" * 20_000})
    assert response.status_code == 431 and response.json()["error"] == "headers_too_large"
