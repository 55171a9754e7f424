"""Shared fixtures. The autouse fixture below fails any test that leaks.

"Nothing leaks" is a promise of the kit: after a test, no thread, listening socket
or child process that the test started may still be around. Clean-up can lag a
little (a thread finishing its last poll), so the check polls with a deadline.
"""

from __future__ import annotations

import os
import threading
import time

import psutil
import pytest

LEAK_DEADLINE = 10.0  # seconds clean-up may take before it counts as a leak
# Threads that live for the whole interpreter once started, so comparing before and
# after a test would miss them after the first test that starts one: none may be
# alive after any test. (tqdm starts its monitor with the first progress bar.)
NEVER_ALIVE = ("tqdm_monitor",)


def _threads() -> set[int]:
    return {t.ident for t in threading.enumerate() if t.is_alive()}


def _listening() -> set[tuple]:
    me = psutil.Process(os.getpid())
    return {(c.laddr.ip, c.laddr.port) for c in me.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN}


def _children() -> set[int]:
    return {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)
            if p.status() != psutil.STATUS_ZOMBIE}


def _leaks(before: dict) -> dict:
    now = {"threads": _threads(), "sockets": _listening(), "children": _children()}
    leaks = {k: now[k] - before[k] for k in now if now[k] - before[k]}
    survivors = {t.ident for t in threading.enumerate()
                 if t.name in NEVER_ALIVE and t.is_alive()}
    if survivors:
        leaks["threads"] = leaks.get("threads", set()) | survivors
    return leaks


@pytest.fixture(autouse=True)
def no_leaks():
    before = {"threads": _threads(), "sockets": _listening(), "children": _children()}
    yield
    deadline = time.monotonic() + LEAK_DEADLINE
    while (leaks := _leaks(before)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if leaks:
        names = {t.ident: t.name for t in threading.enumerate()}
        detail = dict(leaks)
        if "threads" in detail:
            detail["threads"] = sorted(names.get(i, str(i)) for i in detail["threads"])
        pytest.fail(f"the test left these behind: {detail}")
