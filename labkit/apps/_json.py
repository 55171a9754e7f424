"""JSON in and out for the course apps: reason codes instead of HTML error pages.

A server that answers ``400 <html>...`` leaves a client guessing; one that answers
``{"error": "malformed_json"}`` tells it what to fix. Every app in
:mod:`labkit.apps` calls :func:`install_json_errors` and reads bodies through
:func:`json_body`, so bad input gets a clear 4xx and never reaches code that could
crash into a 500.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException


class ApiError(HTTPException):
    """An HTTP error with a machine-readable reason code.

    >>> raise ApiError(401, "login_required", "Log in first.")   # doctest: +SKIP
    """

    def __init__(self, status: int, reason: str, message: str = "") -> None:
        super().__init__(description=message or reason)
        self.code = status
        self.reason = reason


# Reason codes for werkzeug's own errors, so that every error body looks alike.
_WERKZEUG_REASONS = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    431: "headers_too_large",
}


def install_json_errors(app: Flask) -> None:
    """Make every HTTP error of ``app`` a JSON body with a reason code."""

    @app.errorhandler(HTTPException)
    def _as_json(exc: HTTPException):  # noqa: ANN202 (Flask handler)
        reason = getattr(exc, "reason", None) or _WERKZEUG_REASONS.get(
            exc.code or 400, "http_error")
        response = jsonify(error=reason, message=exc.description)
        response.status_code = exc.code or 400
        for name, value in getattr(exc, "extra_headers", ()):
            response.headers.add(name, value)
        return response


def json_body(**fields: type | tuple[type, ...]) -> dict[str, Any]:
    """Read the request body as a JSON object with exactly-typed ``fields``.

    Raises the right 4xx, in the order a careful server checks:
    415 ``expected_json`` (wrong content type), 400 ``malformed_json``,
    422 ``wrong_shape`` (not an object, a field missing or of the wrong type).
    Extra fields are ignored. 413 for a body over ``MAX_CONTENT_LENGTH`` comes from
    Flask itself when the body is read.

    >>> # inside a view:  data = json_body(username=str, password=str)
    """
    if request.mimetype != "application/json":
        raise ApiError(415, "expected_json", "Send the body as application/json.")
    raw = request.get_data(cache=True)  # raises 413 when the body is too large
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "malformed_json", "The body is not valid JSON.") from None
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
