"""Just enough HTTP/1.1 framing for the balancer: read a head, read a body.

The balancer relays bytes; it only needs to know where a message ends. A message
ends after ``Content-Length`` bytes, after the last chunk of a chunked body, or
(for a response with neither) when the server closes the connection.
"""

from __future__ import annotations

import json
from typing import BinaryIO, Callable

MAX_LINE = 16 * 1024        # one request or header line
MAX_HEADERS = 100
MAX_BODY = 32 * 1024 * 1024  # what the balancer agrees to relay in one request
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "upgrade",
              "trailer", "proxy-authenticate", "proxy-authorization"}


class HTTPError(Exception):
    """A message the balancer cannot relay; becomes a 4xx answer to the client."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


class Closed(Exception):
    """The peer closed the connection before a message began."""


def read_head(rfile: BinaryIO) -> tuple[str, list[tuple[str, str]]]:
    """Read a start line and its headers. Raises :class:`Closed` on a clean EOF."""
    line = rfile.readline(MAX_LINE + 1)
    while line in (b"\r\n", b"\n"):  # RFC 9112: ignore empty lines before a request
        line = rfile.readline(MAX_LINE + 1)
    if not line:
        raise Closed()
    if len(line) > MAX_LINE:
        raise HTTPError(414, "start_line_too_long", "The request line is too long.")
    start = line.decode("latin-1").rstrip("\r\n")
    headers: list[tuple[str, str]] = []
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if not line:
            raise HTTPError(400, "truncated_headers", "The connection closed mid-headers.")
        if line in (b"\r\n", b"\n"):
            return start, headers
        if len(line) > MAX_LINE or len(headers) >= MAX_HEADERS:
            raise HTTPError(431, "headers_too_large", "Request headers are too large.")
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or not name or name != name.strip():
            raise HTTPError(400, "bad_header", f"Malformed header line {name[:40]!r}.")
        headers.append((name, value.strip()))


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    """The value of the first header called ``name`` (case-insensitive)."""
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def content_length(headers: list[tuple[str, str]]) -> int | None:
    value = header(headers, "content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise HTTPError(400, "bad_content_length", f"Bad Content-Length {value[:20]!r}.")
    return int(value)


def is_chunked(headers: list[tuple[str, str]]) -> bool:
    value = header(headers, "transfer-encoding")
    return value is not None and value.lower().endswith("chunked")


def read_chunked(rfile: BinaryIO, emit: Callable[[bytes], None], *,
                 limit: int | None = None) -> None:
    """Pass a chunked body to ``emit`` piece by piece, framing bytes included."""
    total = 0
    while True:
        size_line = rfile.readline(MAX_LINE + 1)
        if not size_line:
            raise HTTPError(400, "truncated_body", "The connection closed mid-body.")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise HTTPError(400, "bad_chunk", "Malformed chunk size.") from None
        total += size
        if limit is not None and total > limit:
            raise HTTPError(413, "body_too_large", "The request body is too large.")
        if size == 0:
            emit(size_line)
            while True:  # trailers, then the empty line
                line = rfile.readline(MAX_LINE + 1)
                emit(line)
                if line in (b"\r\n", b"\n", b""):
                    return
        data = rfile.read(size + 2)  # the chunk and its CRLF
        if len(data) < size + 2:
            raise HTTPError(400, "truncated_body", "The connection closed mid-chunk.")
        emit(size_line + data)


def json_response(status: int, reason: str, message: str, *,
                  close: bool = False) -> bytes:
    """A complete HTTP response whose JSON body says why (``{"error": reason}``)."""
    body = json.dumps({"error": reason, "message": message}).encode()
    phrase = {400: "Bad Request", 404: "Not Found", 413: "Content Too Large",
              414: "URI Too Long", 431: "Request Header Fields Too Large",
              502: "Bad Gateway", 503: "Service Unavailable",
              504: "Gateway Timeout"}.get(status, "Error")
    head = (f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Labkit-Reason: {reason}\r\n")
    if close:
        head += "Connection: close\r\n"
    return head.encode("latin-1") + b"\r\n" + body
