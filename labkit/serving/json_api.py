"""JSON in and out for every app the kit serves: reason codes, never a 500.

A server that answers ``400 <html>...`` leaves a client guessing; one that answers
``{"error": "malformed_json"}`` tells it what to fix. Every course app (and the two
apps the kit itself serves: the replication shop and the function runtime) calls
:func:`install_json_errors` and reads bodies through :func:`json_body`, so bad input
gets a clear 4xx and never reaches code that could crash into a 500.

What a hostile client can send, and what it gets (security.md (c) and (e)):

=====================================  ============================================
JSON nested 100,000 deep               400 ``malformed_json`` (the parser's
                                       ``RecursionError`` is caught, not a 500)
JSON nested 65 to 999 deep             400 ``too_deep`` (see :data:`MAX_DEPTH`)
a string with a lone surrogate         400 ``malformed_json`` (``"\\ud800"`` is valid
(``"\\ud800"``)                          JSON but no UTF-8 text; ``.encode()`` would fail)
a list where an object is expected     422 ``wrong_shape``
a body that never arrives in full      408 ``request_timeout`` after
                                       :data:`READ_TIMEOUT` seconds: a slow client
                                       cannot hold a worker for ever
a chunked body with a bad chunk size   400 ``malformed_body`` (the server's chunk
(``-5``, ``zz``)                         decoder raises ``OSError``; not a 500)
any other exception in a view          500 ``internal_error`` with no exception text
                                       (the traceback goes to the server log only)
=====================================  ============================================

It lives with the serving machinery, not with the course apps, because kit modules
(:mod:`labkit.state.replication`, :mod:`labkit.state.serverless`) serve apps too and
must not import :mod:`labkit.apps`.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import ClientDisconnected, HTTPException

__all__ = ["MAX_DEPTH", "READ_TIMEOUT", "ApiError", "guard_request_body", "install_json_errors",
           "json_body", "parse_json", "read_json"]

#: Seconds a server waits for the next bytes of a request body. A client that
#: declares ``Content-Length: 1000`` and sends 10 bytes gets 408 after this long,
#: and the worker it held is free again. Override per app with
#: ``app.config["LABKIT_READ_TIMEOUT"]``.
READ_TIMEOUT = 5.0

#: Deepest JSON nesting a body may have. The parser itself stops near 1,000 levels
#: (RecursionError), but code that walks the data (``copy.deepcopy``, ``jsonify``)
#: recurses several frames per level and would crash far earlier; no real request
#: needs more than a few levels.
MAX_DEPTH = 64


class ApiError(HTTPException):
    """An HTTP error with a machine-readable reason code.

    >>> ApiError(401, "login_required", "Log in first.").reason
    'login_required'
    """

    def __init__(self, status: int, reason: str, message: str = "", *,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(description=message or reason)
        self.code = status
        self.reason = reason
        self.extra_headers = list(headers or ())


# Reason codes for werkzeug's own errors, so that every error body looks alike.
_WERKZEUG_REASONS = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "body_too_large",
    415: "unsupported_media_type",
    431: "headers_too_large",
}


def install_json_errors(app: Flask) -> None:
    """Make every error of ``app`` a JSON body with a reason code, and bound body reads.

    * HTTP errors (ours and werkzeug's) become ``{"error": reason, "message": ...}``;
    * a body read that times out becomes 408 (see :data:`READ_TIMEOUT`);
    * anything else a view raises becomes a bare 500 ``internal_error``: the client
      never sees exception text (it could hold secrets or internals).
    """
    app.config.setdefault("LABKIT_READ_TIMEOUT", READ_TIMEOUT)

    app.before_request(guard_request_body)

    @app.errorhandler(HTTPException)
    def _as_json(exc: HTTPException):  # noqa: ANN202 (Flask handler)
        if isinstance(exc, ClientDisconnected) and isinstance(exc.__context__, TimeoutError):
            # werkzeug reports a body read that timed out as a disconnect (400); it
            # is the client that was too slow: 408.
            return _timed_out(exc.__context__)
        reason = getattr(exc, "reason", None) or _WERKZEUG_REASONS.get(
            exc.code or 400, "http_error")
        response = jsonify(error=reason, message=exc.description)
        response.status_code = exc.code or 400
        for name, value in getattr(exc, "extra_headers", ()):
            response.headers.add(name, value)
        return response

    @app.errorhandler(TimeoutError)
    def _timed_out(exc: TimeoutError):  # noqa: ANN202
        response = jsonify(error="request_timeout",
                           message="The request body did not arrive in time.")
        response.status_code = 408
        response.headers["Connection"] = "close"
        return response

    @app.errorhandler(Exception)
    def _internal(exc: Exception):  # noqa: ANN202
        # Flask routes HTTPExceptions to the handler above; this is a real bug. Log it
        # for the operator (the kit's middleware keeps wsgi.errors), tell the client
        # nothing about it.
        app.logger.error("unhandled %s in %s %s", type(exc).__name__, request.method,
                         request.path, exc_info=exc)
        response = jsonify(error="internal_error", message="The server failed.")
        response.status_code = 500
        return response


def guard_request_body() -> None:
    """Bound this request's body reads; a hook :func:`install_json_errors` installs.

    * werkzeug's dev server hands the connection's socket to the app; a timeout on it
      turns "waits for ever for bytes that never come" into a TimeoutError (408);
    * the body stream is wrapped so that a framing error found while reading it (a
      chunk size of ``-5`` or ``zz``: the server's chunk decoder raises ``OSError``)
      is 400 ``malformed_body``, not a 500.

    Call it yourself from a hook that reads the body before the app's own hooks run
    (as :mod:`labkit.apps.idempotency` does); a second call does nothing.
    """
    environ = request.environ
    if environ.get("labkit.body_guarded"):
        return
    environ["labkit.body_guarded"] = True
    sock = environ.get("werkzeug.socket")
    timeout = current_app.config.get("LABKIT_READ_TIMEOUT")
    if sock is not None and timeout:
        try:
            sock.settimeout(float(timeout))
        except OSError:
            pass  # the client already hung up; the read will say so
    if environ.get("wsgi.input") is not None:
        environ["wsgi.input"] = _FramedInput(environ["wsgi.input"])


class _FramedInput:
    """A request body stream whose framing errors are 400 ``malformed_body``.

    A timeout stays a TimeoutError (408, see :func:`install_json_errors`); every other
    attribute (``continued`` of an ``Expect: 100-continue`` body...) is the stream's.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def _guarded(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._stream, method)(*args)
        except TimeoutError:
            raise
        except (OSError, ValueError):
            raise ApiError(400, "malformed_body", "The request body is not well framed"
                           " (a bad chunk size, or the connection was cut).") from None

    def read(self, *args: Any) -> bytes:
        return self._guarded("read", *args)

    def readline(self, *args: Any) -> bytes:
        return self._guarded("readline", *args)

    def readinto(self, buffer: Any) -> int | None:
        if not hasattr(self._stream, "readinto"):  # (gunicorn's body has only read)
            data = self.read(len(buffer))
            buffer[:len(data)] = data
            return len(data)
        return self._guarded("readinto", buffer)

    def __iter__(self) -> Any:
        return iter(self.readline, b"")


def parse_json(raw: bytes | str) -> Any:
    """``raw`` parsed as JSON, or 400 ``malformed_json`` (never a 500).

    Refused: what is not JSON, JSON nested too deep for the parser (its
    ``RecursionError``), and strings that are not valid Unicode text: a lone
    surrogate (``"\\ud800"``) is a legal JSON escape, but ``.encode()`` of it
    fails later, far from here.

    >>> parse_json(b'{"a": [1]}')
    {'a': [1]}
    """
    try:
        data = json.loads(raw)
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeError, RecursionError):
        raise ApiError(400, "malformed_json",
                       "The body is not valid JSON text (or is nested too deep).") from None
    if _depth(data) > MAX_DEPTH:
        raise ApiError(400, "too_deep", f"JSON nested deeper than {MAX_DEPTH} levels.")
    return data


def _depth(data: Any) -> int:
    """How deeply lists and objects nest in ``data`` (no recursion: it may be deep)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, (list, dict)):
            deepest = max(deepest, level)
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, level + 1) for child in children)
    return deepest


def read_json() -> Any:
    """The request body parsed as JSON (any type), or an :class:`ApiError` (4xx).

    415 ``expected_json`` (content type), 400 ``malformed_json`` (not JSON, nested too
    deep for the parser, or a string that is not valid Unicode text).
    """
    if request.mimetype != "application/json":
        raise ApiError(415, "expected_json", "Send the body as application/json.")
    return parse_json(request.get_data(cache=True))  # 413 when the body is too large


def json_body(**fields: type | tuple[type, ...]) -> dict[str, Any]:
    """Read the request body as a JSON object with exactly-typed ``fields``.

    Raises the right 4xx, in the order a careful server checks:
    415 ``expected_json`` (wrong content type), 400 ``malformed_json``,
    422 ``wrong_shape`` (not an object, a field missing or of the wrong type).
    Extra fields are ignored. 413 for a body over ``MAX_CONTENT_LENGTH`` comes from
    Flask itself when the body is read.

    >>> # inside a view:  data = json_body(username=str, password=str)
    """
    data = read_json()
    if not isinstance(data, dict):
        raise ApiError(422, "wrong_shape", "The body must be a JSON object.")
    for name, kind in fields.items():
        value = data.get(name)
        # bool is an int in Python; a JSON true is never a valid count or text.
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            expected = kind.__name__ if isinstance(kind, type) else "/".join(
                k.__name__ for k in kind)
            raise ApiError(422, "wrong_shape", f"Field {name!r} must be a {expected}.")
    return data
