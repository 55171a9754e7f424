"""Just enough HTTP/1.1 framing to relay a message safely: read a head, read a body.

The balancer, the kit's servers and the load client all use this module, so that
they agree on where a message ends. Two programs that disagree about that are how
*request smuggling* works: a proxy reads one request where the server behind it
reads two, and the second one (the attacker's) is answered as if it came from the
next client. So the rules here are strict on purpose, and every refusal says why:

* a request head must arrive whole, within caps on its size and field count (431);
* a field line with a bare CR, a NUL or another control character, an obsolete
  folded line, or whitespace before the colon is refused (400; RFC 9112 §5, RFC 9110
  §5.5);
* ``Content-Length`` is ``[0-9]+`` in ASCII digits, given once (400);
* ``Transfer-Encoding`` together with ``Content-Length``, twice, in an HTTP/1.0
  request, or with ``chunked`` not last is ambiguous framing (400, RFC 9112 §6.1 and
  §6.3); any other coding than exactly ``chunked`` is not implemented (501);
* chunk sizes are 1 to 16 hex digits (no sign, no ``0x``); chunk extensions and
  trailer fields count toward the body cap (413), and trailers are checked like
  header fields.

Example: a chunked body, decoded::

    >>> import io
    >>> read_chunked_body(io.BytesIO(b"3\\r\\nabc\\r\\n0\\r\\n\\r\\n"))
    b'abc'
    >>> content_length([("Content-Length", "²")])
    Traceback (most recent call last):
    ...
    labkit._http.HTTPError: Content-Length must be ASCII digits, not '²'.

Slow clients and connection caps are the business of :mod:`labkit._guards`.
Next: :mod:`labkit.balancing.balancer` reads requests with these functions.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from typing import BinaryIO, Callable

MAX_LINE = 16 * 1024         # one request line or field line
MAX_HEAD = 64 * 1024         # a whole request head
MAX_HEADERS = 100            # field lines in a head (and in a trailer section)
MAX_CHUNK_LINE = 4 * 1024    # a chunk-size line with its extensions
MAX_BODY = 32 * 1024 * 1024  # a request body, chunk framing and trailers included
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "upgrade",
              "trailer", "proxy-authenticate", "proxy-authorization"}

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # CTLs but HTAB (RFC 9110 §5.5)
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# A header section of valid field lines (name: value, CRLF or LF), and its pairs.
_FIELD_BLOCK = re.compile(r"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\x00-\x08\x0a-\x1f\x7f]*\r?\n)*")
_FIELD_PAIRS = re.compile(
    r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*)\r?\n")
_DIGITS = re.compile(r"[0-9]+")  # not str.isdigit(): that accepts '²' and '٣'
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(;[^\x00-\x08\x0a-\x1f\x7f]*)?")
_TARGET = re.compile(r"[\x21-\x7e]+")
_VERSION = re.compile(r"HTTP/([0-9])\.([0-9])")


class HTTPError(Exception):
    """A message the kit will not relay; becomes a 4xx (or 501) answer with a reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


class Closed(Exception):
    """The peer closed the connection before a message began."""


# -- heads -----------------------------------------------------------------------------


def _line(rfile: BinaryIO, limit: int, status: int, reason: str, what: str) -> bytes:
    line = rfile.readline(limit + 1)
    if len(line) > limit:
        raise HTTPError(status, reason, f"{what} is longer than {limit} bytes.")
    return line


def _field(raw: bytes) -> tuple[str, str]:
    """Split one field line (without its line end) into a name and a trimmed value."""
    text = raw.decode("latin-1")
    if text[:1] in (" ", "\t"):
        raise HTTPError(400, "obsolete_line_folding",
                        "A field line starts with whitespace (obsolete line folding).")
    name, sep, value = text.partition(":")
    if not sep or not _TOKEN.fullmatch(name):
        raise HTTPError(400, "bad_header_name",
                        f"Malformed field name {name[:40]!r} (no spaces before the colon).")
    value = value.strip(" \t")
    if _BAD_VALUE.search(value):
        raise HTTPError(400, "bad_header_value",
                        f"The value of {name[:40]} holds a control character"
                        " (a bare CR, a NUL, ...).")
    return name, value


def _end(line: bytes) -> bytes | None:
    """The line without its CRLF (or bare LF); None at EOF; bare CRs are refused."""
    if not line.endswith(b"\n"):
        return None
    line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
    if b"\r" in line:
        raise HTTPError(400, "bare_cr", "A line holds a bare CR.")
    return line


def _fields(rfile: BinaryIO, budget: int) -> list[tuple[str, str]]:
    """Read field lines up to the empty line (headers or trailers)."""
    lines: list[bytes] = []
    readline = rfile.readline
    while True:
        raw = readline(MAX_LINE + 1)
        budget -= len(raw)
        if raw == b"\r\n" or raw == b"\n":
            break
        if budget < 0 or len(raw) > MAX_LINE or len(lines) >= MAX_HEADERS:
            raise HTTPError(431, "headers_too_large", f"The head is over {MAX_HEAD} bytes,"
                            f" {MAX_HEADERS} field lines or {MAX_LINE} bytes in a line.")
        if not raw.endswith(b"\n"):
            raise HTTPError(400, "truncated_headers", "The connection closed mid-headers.")
        lines.append(raw)
    text = b"".join(lines).decode("latin-1")
    if _FIELD_BLOCK.fullmatch(text):  # the usual case: every line valid, in one step
        return [(name, value.rstrip(" \t")) for name, value in _FIELD_PAIRS.findall(text)]
    for raw in lines:  # find the bad line and say what is wrong with it
        _field(_end(raw))
    raise HTTPError(400, "bad_header", "Malformed header section.")  # not reached


def read_head(rfile: BinaryIO) -> tuple[str, list[tuple[str, str]]]:
    """Read a start line and its header fields. Raises :class:`Closed` on a clean EOF."""
    raw = _line(rfile, MAX_LINE, 414, "start_line_too_long", "The start line")
    while raw in (b"\r\n", b"\n"):  # RFC 9112 §2.2: ignore empty lines before a request
        raw = _line(rfile, MAX_LINE, 414, "start_line_too_long", "The start line")
    if not raw:
        raise Closed()
    start = _end(raw)
    if start is None:
        raise HTTPError(400, "truncated_headers", "The connection closed mid-line.")
    if _CONTROL.search(start):
        raise HTTPError(400, "bad_request_line", "The start line holds a control character.")
    return start.decode("latin-1"), _fields(rfile, MAX_HEAD - len(raw))


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    """The value of the first header called ``name`` (lower case)."""
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _all(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [value for key, value in headers if key.lower() == name]


def content_length(headers: list[tuple[str, str]]) -> int | None:
    """The one ``Content-Length``, checked: ``[0-9]+`` in ASCII, given once."""
    return _length(_all(headers, "content-length"))


def _length(values: list[str]) -> int | None:
    if not values:
        return None
    if len(values) > 1:
        raise HTTPError(400, "duplicate_content_length",
                        "Content-Length is given more than once.")
    value = values[0]
    if not _DIGITS.fullmatch(value):
        raise HTTPError(400, "bad_content_length",
                        f"Content-Length must be ASCII digits, not {value[:20]!r}.")
    if len(value) > 18:  # int() of thousands of digits is slow; this is over any cap
        raise HTTPError(413, "body_too_large", "The declared body is far too large.")
    return int(value)


def is_chunked(headers: list[tuple[str, str]]) -> bool:
    """True when the message says ``Transfer-Encoding: chunked`` and nothing else."""
    values = _all(headers, "transfer-encoding")
    return len(values) == 1 and values[0].strip(" \t").lower() == "chunked"


@dataclass
class Request:
    """A request head that passed every check. ``framing``: none, length, chunked."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    framing: str
    length: int = 0
    close: bool = False  # the client asked to close the connection after this one

    def wants_close(self) -> bool:
        """True when the client asked to close after this request."""
        return self.close


def read_request(rfile: BinaryIO) -> Request:
    """Read and check a request head: start line, fields, Host, framing."""
    start, headers = read_head(rfile)
    parts = start.split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not _TARGET.fullmatch(parts[1]):
        raise HTTPError(400, "bad_request_line",
                        "A request line is METHOD SP target SP HTTP/1.1, in ASCII.")
    method, target, version = parts
    found = _VERSION.fullmatch(version)
    if not found:
        raise HTTPError(400, "bad_request_line", f"Unknown protocol {version[:20]!r}.")
    if found.group(1) != "1":
        raise HTTPError(505, "version_not_supported", "Only HTTP/1.0 and 1.1 are spoken.")
    version = "HTTP/1.0" if found.group(2) == "0" else "HTTP/1.1"
    seen: dict[str, list[str]] = {"host": [], "content-length": [],
                                  "transfer-encoding": [], "connection": []}
    for name, value in headers:  # one pass over the fields that decide framing
        values = seen.get(name.lower())
        if values is not None:
            values.append(value)
    if len(seen["host"]) > 1 or (version == "HTTP/1.1" and not seen["host"]):
        raise HTTPError(400, "bad_host", "An HTTP/1.1 request needs exactly one Host"
                        " header (RFC 9112 §3.2).")
    framing, length = _framing(seen["transfer-encoding"], seen["content-length"], version)
    options = {o.strip(" \t").lower() for v in seen["connection"] for o in v.split(",")}
    close = "keep-alive" not in options if version == "HTTP/1.0" else "close" in options
    return Request(method, target, version, headers, framing, length, close)


def body_framing(headers: list[tuple[str, str]], version: str = "HTTP/1.1") -> tuple[str, int]:
    """How a request's body ends: ``("none", 0)``, ``("length", n)`` or ``("chunked", 0)``.

    Anything two parsers could read two ways is refused (RFC 9112 §6.1, §6.3).
    """
    return _framing(_all(headers, "transfer-encoding"), _all(headers, "content-length"),
                    version)


def _framing(codings: list[str], lengths: list[str], version: str) -> tuple[str, int]:
    if not codings:
        length = _length(lengths)
        return ("none", 0) if length is None else ("length", length)
    if lengths:
        raise HTTPError(400, "ambiguous_framing",
                        "Both Transfer-Encoding and Content-Length: refused, because a"
                        " proxy and a server could read two different bodies.")
    if version == "HTTP/1.0":
        raise HTTPError(400, "ambiguous_framing",
                        "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1).")
    if len(codings) > 1:
        raise HTTPError(400, "ambiguous_framing", "Transfer-Encoding is given twice.")
    names = [c.strip(" \t").lower() for c in codings[0].split(",")]
    if names == ["chunked"]:
        return "chunked", 0
    if "chunked" in names and (names[-1] != "chunked" or names.count("chunked") > 1):
        raise HTTPError(400, "ambiguous_framing",
                        f"Transfer-Encoding {codings[0][:40]!r}: chunked must be the only"
                        " coding, once and last (RFC 9112 §6.3).")
    raise HTTPError(501, "unsupported_transfer_coding",
                    f"Transfer-Encoding {codings[0][:40]!r} is not supported; send the"
                    " body with Content-Length or as exactly 'chunked'.")


# -- bodies ----------------------------------------------------------------------------


def _chunks(rfile: BinaryIO, limit: int | None):
    """Yield ``(raw, data)`` for each chunk, then ``(raw, b"")`` for the end.

    ``raw`` is the bytes as received (framing included); ``data`` the content.
    Every byte counts toward ``limit``: extensions and trailers are not free.
    """
    total = 0

    def count(n: int) -> None:
        nonlocal total
        total += n
        if limit is not None and total > limit:
            raise HTTPError(413, "body_too_large",
                            f"The body is over {limit} bytes (framing and trailers count).")

    while True:
        raw = _line(rfile, MAX_CHUNK_LINE, 400, "bad_chunk", "A chunk-size line")
        count(len(raw))
        line = _end(raw)
        if line is None:
            raise HTTPError(400, "truncated_body", "The connection closed mid-body.")
        found = _CHUNK_LINE.fullmatch(line)
        if not found:
            raise HTTPError(400, "bad_chunk",
                            f"A chunk size is 1 to 16 hex digits, not {line[:20]!r}.")
        size = int(found.group(1), 16)
        if size == 0:
            trailer = io.BytesIO()
            _fields(_Recorder(rfile, trailer), MAX_HEAD)  # checked like headers
            count(len(trailer.getvalue()))
            yield raw + trailer.getvalue(), b""
            return
        count(size)
        data = _read_exactly(rfile, size)
        end = rfile.readline(3)
        if len(data) < size or end not in (b"\r\n", b"\n"):
            raise HTTPError(400, "bad_chunk" if len(end) else "truncated_body",
                            "A chunk is shorter than its size, or not followed by CRLF.")
        count(len(end))
        yield raw + data + end, data


def _read_exactly(rfile: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes, read a MiB at a time (a lying size allocates nothing)."""
    pieces = []
    while size > 0:
        piece = rfile.read(min(size, 1 << 20))
        if not piece:
            break
        pieces.append(piece)
        size -= len(piece)
    return b"".join(pieces)


class _Recorder:
    """Reads lines from ``rfile`` and keeps a copy of what it read."""

    def __init__(self, rfile: BinaryIO, copy: io.BytesIO) -> None:
        self.rfile, self.copy = rfile, copy

    def readline(self, limit: int = -1) -> bytes:
        line = self.rfile.readline(limit)
        self.copy.write(line)
        return line


def read_chunked(rfile: BinaryIO, emit: Callable[[bytes], None], *,
                 limit: int | None = None) -> None:
    """Pass a chunked body to ``emit`` piece by piece, framing bytes included."""
    for raw, _data in _chunks(rfile, limit):
        emit(raw)


def read_chunked_body(rfile: BinaryIO, *, limit: int | None = MAX_BODY) -> bytes:
    """Decode a chunked body (extensions and trailers are checked, then dropped)."""
    return b"".join(data for _raw, data in _chunks(rfile, limit))


def read_body(rfile: BinaryIO, request: Request, *, limit: int = MAX_BODY) -> bytes:
    """The request's body, decoded, whatever its framing."""
    if request.framing == "chunked":
        return read_chunked_body(rfile, limit=limit)
    if request.length > limit:
        raise HTTPError(413, "body_too_large", f"The body is over {limit} bytes.")
    body = rfile.read(request.length) if request.length else b""
    if len(body) < request.length:
        raise HTTPError(400, "truncated_body", "The connection closed mid-body.")
    return body


# -- answers ---------------------------------------------------------------------------

_PHRASES = {400: "Bad Request", 404: "Not Found", 408: "Request Timeout",
            413: "Content Too Large", 414: "URI Too Long",
            431: "Request Header Fields Too Large", 501: "Not Implemented",
            500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout",
            505: "HTTP Version Not Supported"}


def json_response(status: int, reason: str, message: str, *,
                  close: bool = False) -> bytes:
    """A complete HTTP response whose JSON body says why (``{"error": reason}``)."""
    body = json.dumps({"error": reason, "message": message}).encode()
    head = (f"HTTP/1.1 {status} {_PHRASES.get(status, 'Error')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"X-Labkit-Reason: {reason}\r\n")
    if close:
        head += "Connection: close\r\n"
    return head.encode("latin-1") + b"\r\n" + body
