"""The load test's HTTP client: one simulated user, its connection and its cookies.

It speaks HTTP/1.1 over a plain socket with the kit's own framing helpers
(``_http``): the standard library's clients parse every response header with the
email package, which would make the client, not the servers, the bottleneck.

    >>> user = LoadClient(0, "127.0.0.1", server.port, timeout=10.0, headers={})
    >>> user.request("GET", "/")
    (200, 'host')
    >>> user.close()
"""

from __future__ import annotations

import json
import socket
from typing import Any

from .. import _http

__all__ = ["LoadClient"]


class _Dropped(Exception):
    """A kept-alive connection was closed by the server before it answered."""


class LoadClient:
    """One simulated user: a connection (reused when the server allows) and cookies.

    Every request carries ``X-Client-Id: user-N`` (so a hash balancer can tell users
    apart), ``User-Agent: labkit-load`` and the cookies this user was given, like a
    browser's jar: a ``Set-Cookie`` adds or replaces one, ``Max-Age=0`` removes it.
    """

    def __init__(self, index: int, host: str, port: int, *, timeout: float,
                 headers: dict[str, str]) -> None:
        self.index = index
        self.host, self.port, self.timeout = host, port, timeout
        self.cookies: dict[str, str] = {}
        fixed = {"Host": f"{host}:{port}", "X-Client-Id": f"user-{index}",
                 "User-Agent": "labkit-load", **headers}
        self._fixed_head = "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
        self._sock: socket.socket | None = None
        self._rfile: Any = None
        self._reused = False

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, str | None]:
        """Send one request; return ``(status, X-Served-By or None)``.

        Raises ``OSError`` (refused, reset, timed out) when no answer came.
        """
        head = f"{method} {path} HTTP/1.1\r\n{self._fixed_head}"
        if self.cookies:
            head += "Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()) + "\r\n"
        data = b""
        if body is not None:
            data = json.dumps(body).encode()
            head += "Content-Type: application/json\r\n"
        if data or method in ("POST", "PUT", "PATCH"):
            head += f"Content-Length: {len(data)}\r\n"
        message = (head + "\r\n").encode("latin-1") + data
        try:
            return self._exchange(message, method)
        except _Dropped:
            # The server had closed this kept-alive connection before reading the
            # request: one fresh try, as browsers and HTTP libraries do.
            return self._exchange(message, method)

    def _exchange(self, message: bytes, method: str) -> tuple[int, str | None]:
        if self._sock is None:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._rfile = self._sock.makefile("rb", buffering=65536)
            self._reused = False
        reused, self._reused = self._reused, True
        try:
            self._sock.sendall(message)
            status_line, headers = _http.read_head(self._rfile)
        except (_http.Closed, ConnectionResetError, BrokenPipeError) as exc:
            self.close()
            if reused:
                raise _Dropped() from exc
            raise ConnectionError("the server closed the connection") from exc
        except BaseException:
            self.close()
            raise
        status = int(status_line.split(" ", 2)[1])
        try:
            self._skip_body(method, status, headers)
        except BaseException:
            self.close()
            raise
        served_by = None
        for name, value in headers:
            lower = name.lower()
            if lower == "set-cookie":
                self._remember_cookie(value)
            elif lower == "x-served-by":
                served_by = value
            elif lower == "connection" and value.lower() == "close":
                self.close()
        return status, served_by

    def _skip_body(self, method: str, status: int, headers: list) -> None:
        if method == "HEAD" or status in (204, 304) or status < 200:
            return
        length = _http.content_length(headers)
        if length is not None:
            if len(self._rfile.read(length)) < length:
                raise ConnectionError("the connection closed mid-body")
        elif _http.is_chunked(headers):
            _http.read_chunked(self._rfile, lambda piece: None)
        else:
            self._rfile.read()  # the body runs until the server closes
            self.close()

    def _remember_cookie(self, line: str) -> None:
        pair, *attributes = line.split(";")
        name, _, value = pair.strip().partition("=")
        expired = value == "" or any(
            a.strip().lower() in ("max-age=0", "max-age=-1") for a in attributes)
        if expired:
            self.cookies.pop(name, None)
        else:
            self.cookies[name] = value

    def close(self) -> None:
        """Close the connection (the cookies stay). Safe to call twice."""
        if self._sock is not None:
            self._rfile.close()
            self._sock.close()
            self._sock = self._rfile = None
