"""Small Flask app factories for the kit's own tests."""

from __future__ import annotations

import threading

from flask import Flask, jsonify, request


def make_counter() -> Flask:
    """Remembers a number per name in this server's memory."""
    app = Flask("counter")
    memory: dict[str, int] = {}
    app.extensions["labkit.sessions"] = memory
    app.config["LABKIT_SESSION_COOKIE"] = "sid"

    @app.get("/")
    def index():
        return "hello"

    @app.post("/count/<name>")
    def count(name: str):
        memory[name] = memory.get(name, 0) + 1
        return jsonify(name=name, count=memory[name])

    @app.get("/count/<name>")
    def read(name: str):
        return jsonify(name=name, count=memory.get(name, 0))

    @app.get("/echo")
    def echo():
        return jsonify(cookie=request.headers.get("Cookie"),
                       forwarded=request.headers.get("X-Forwarded-For"))

    @app.post("/body")
    def body():
        return jsonify(size=len(request.get_data()))

    @app.get("/stream")
    def stream():
        def chunks():
            for i in range(5):
                yield f"part{i};"
        return app.response_class(chunks(), mimetype="text/plain")

    @app.get("/boom")
    def boom():
        raise RuntimeError("boom")

    return app


def make_slow(gate: threading.Event) -> Flask:
    """Answers /wait only once `gate` is set (for in-flight tests)."""
    app = Flask("slow")

    @app.get("/wait")
    def wait():
        gate.wait(10)
        return "done"

    @app.get("/")
    def index():
        return "hi"

    return app
