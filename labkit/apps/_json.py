"""JSON in and out for the course apps: see :mod:`labkit.serving.json_api`.

The helpers live with the serving machinery because kit modules serve apps too and
must not import :mod:`labkit.apps`; the course apps import them from here.
"""

from __future__ import annotations

from ..serving.json_api import (ApiError, guard_request_body, install_json_errors, json_body,
                                read_json)

__all__ = ["ApiError", "guard_request_body", "install_json_errors", "json_body", "read_json"]
