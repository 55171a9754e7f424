"""The security tests' one fixture: serve course apps, close them all afterwards."""

from __future__ import annotations

import warnings

import pytest

import labkit as lk
from labkit.apps import guarded


@pytest.fixture
def serve():
    """``serve(factory, **options)`` starts a kit server (quietly: the guarded app's
    loopback-profile warning is expected here) and closes every one at the end."""
    started: list = []

    def start(factory, **options):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", guarded.LoopbackProfileWarning)
            server = lk.serve(factory, name=f"sec{len(started)}", **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()
