"""The post's upload example: a size-counting gateway in front of a main server.

The main server (:func:`create_upload_server`) reads and counts every byte it is sent.
The gateway (:func:`create_size_gateway`) is a small stateless service in front of it:
it counts the size of each upload and turns away the oversized ones with 413, so the
main server never sees them. Chapter 07 measures what that saves::

    upstream = lk.serve(create_upload_server, name="main")
    gateway = lk.serve(lambda: create_size_gateway(upstream.url), name="gateway")

Read :mod:`labkit.state.serverless` next: the function runtime a gateway like this
would run on.
"""

from __future__ import annotations

import threading
from typing import Any

import requests
from flask import Flask, Response, jsonify, request

from ._json import install_json_errors

DEFAULT_LIMIT = 256 * 1024   # bytes: the gateway's upload limit
READ_CHUNK = 64 * 1024
DRAIN_CAP = 64 * 1024 * 1024  # bytes a refusing gateway reads and drops, at most

__all__ = ["DEFAULT_LIMIT", "create_size_gateway", "create_upload_server"]

def create_upload_server() -> Flask:
    """The main server: ``POST /upload`` stores nothing, but reads and counts every byte.

    ``GET /received`` answers ``{"uploads": n, "bytes": n, "largest": n}``: how much
    work the uploads cost this server. It has no size limit of its own on purpose.
    """
    app = Flask("upload_server")
    install_json_errors(app)
    seen = {"uploads": 0, "bytes": 0, "largest": 0}
    lock = threading.Lock()

    @app.post("/upload")
    def upload():
        # Count as it reads, keep nothing: reachable without the gateway too, a body
        # of any size costs this server time but never more than one chunk of memory.
        size = 0
        while chunk := request.stream.read(READ_CHUNK):
            size += len(chunk)
        with lock:
            seen["uploads"] += 1
            seen["bytes"] += size
            seen["largest"] = max(seen["largest"], size)
        return jsonify(received=size)

    @app.get("/received")
    def received():
        with lock:
            return jsonify(seen)

    return app


def _waits_for_continue(req: Any) -> bool:
    """True when the client sent ``Expect: 100-continue`` and has not been told to go.

    Such a client holds its body back until the server says "100 Continue"; refusing
    now keeps every byte of it off the wire (RFC 9110, section 10.1.1).
    """
    stream = req.environ.get("wsgi.input")
    return (req.headers.get("Expect", "").lower() == "100-continue"
            and getattr(stream, "continued", True) is False)


def _drain(stream: Any) -> int:
    """Read and drop what the client is still sending, so it hears our answer.

    (Closing the socket on unread bytes can reset the connection before the client
    reads the 413.) Stops at ``DRAIN_CAP`` or when the client stops.
    """
    dropped = 0
    try:
        while dropped < DRAIN_CAP:
            chunk = stream.read(READ_CHUNK)
            if not chunk:
                break
            dropped += len(chunk)
    except Exception:  # the client hung up or lied about the length: nothing to drain
        pass
    return dropped


def _too_large(limit: int, size: int | None) -> tuple[Response, int]:
    said = f"{size} bytes" if size is not None else "more than that"
    return jsonify(error="too_large", limit=limit, size=size,
                   message=f"Uploads are limited to {limit} bytes; this one is {said}."), 413


def create_size_gateway(upstream: str, *, limit: int = DEFAULT_LIMIT,
                        timeout: float = 30.0) -> Flask:
    """A stateless gateway: ``POST /upload`` is counted, then forwarded or refused.

    * a declared ``Content-Length`` over ``limit``: 413 without forwarding a byte. A
      client that sent ``Expect: 100-continue`` is refused before it sends its body;
      any other client is already sending, so the gateway reads and drops the body
      (so that the client hears the 413 instead of a reset connection);
    * otherwise (no length, chunked, or a length that may lie) it *counts* the body
      as it reads, and stops with 413 as soon as it passes ``limit``;
    * an upload within the limit goes to ``upstream + "/upload"``, and the main
      server's answer comes back unchanged.

    It remembers nothing between requests, so any number of copies can run.

    >>> gateway = lk.serve(lambda: create_size_gateway(main.url, limit=1024))  # doctest: +SKIP
    """

    app = Flask("size_gateway")
    install_json_errors(app)

    @app.post("/upload")
    def upload():
        declared = request.content_length      # None when missing (e.g. chunked)
        if declared is not None and declared > limit:
            if not _waits_for_continue(request):
                _drain(request.stream)         # it is sending anyway: let it finish
            return _too_large(limit, declared)
        body = bytearray()
        while True:                             # count while reading, never past limit + 1
            chunk = request.stream.read(min(READ_CHUNK, limit + 1 - len(body)))
            if not chunk:
                break
            body += chunk
            if len(body) > limit:
                _drain(request.stream)
                return _too_large(limit, None)
        try:
            answer = requests.post(upstream.rstrip("/") + "/upload", data=bytes(body),
                                   headers={"Content-Type": request.content_type
                                            or "application/octet-stream"},
                                   timeout=timeout)
        except requests.RequestException:
            return jsonify(error="upstream_unavailable",
                           message="The main server did not answer; try again later."), 502
        return Response(answer.content, status=answer.status_code,
                        content_type=answer.headers.get("Content-Type"))

    return app
