"""Serve an app under gunicorn, a real pre-fork server, in its own process group.

``isolation="gunicorn"`` is how the kit runs the production-like engine
(``lk.Cluster(..., engine="haproxy")``). The kernel forks a child that becomes a
session leader (its own process group), builds the app once to catch factory
errors early, then runs gunicorn's master in it. The master forks the worker, and
the worker builds the app again and serves it on the socket the kit bound::

    kernel ── fork ──> gunicorn master (setsid: its own process group)
                          └── fork ──> gunicorn worker (gthread: N threads)

One worker process with ``workers`` threads: a stateful app keeps its sessions in
one process's memory, as the course's servers do. (Several gunicorn worker
*processes* would each have their own memory: a session made in one would be
unknown to the next, the same problem as a cluster without stickiness, inside one
server.) ``kill()`` sends SIGKILL to the whole group, master and worker at once;
``revive()`` starts a new group on the same port.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from typing import Any

from ._middleware import KitMiddleware
from ._serving import _die_with_parent, _drop_inherited_sockets, build_app

DEFAULT_THREADS = 16  # gthread threads when no capacity model is given
GRACEFUL_TIMEOUT = 5  # seconds gunicorn gives its worker to finish on SIGTERM


def gunicorn_options(fd: int, workers: int | None) -> dict[str, Any]:
    """The gunicorn settings the kit uses (what ``gunicorn --help`` calls them)."""
    return {
        "bind": [f"fd://{fd}"],       # the socket the kit bound: the port is known
        "workers": 1,                 # one process: one memory per server
        "worker_class": "gthread",
        "threads": workers or DEFAULT_THREADS,
        "graceful_timeout": GRACEFUL_TIMEOUT,
        "timeout": 60,
        "keepalive": 2,
        "accesslog": None,            # the kit keeps its own structured log
        "errorlog": os.devnull,
        "loglevel": "critical",
        "proc_name": "labkit-gunicorn",
    }


def gunicorn_main(sock: Any, target: Any, name: str, workers: int | None,
                  service_time: float, report: Any, parent: int,
                  forked_by_main_thread: bool) -> None:
    """The body of the forked child: become a process group, then run gunicorn."""
    from gunicorn.app.base import BaseApplication

    os.setsid()  # its own process group, so kill() can SIGKILL master and worker
    _die_with_parent(parent, forked_by_main_thread)
    _drop_inherited_sockets(keep=sock.fileno())
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.stdout = sys.stderr = open(os.devnull, "w")
    fd = sock.fileno()
    os.set_inheritable(fd, True)

    def make_wsgi() -> Any:
        app = build_app(target)
        return KitMiddleware(app, name=name, workers=workers, service_time=service_time)

    class Application(BaseApplication):
        def load_config(self) -> None:
            for key, value in gunicorn_options(fd, workers).items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return make_wsgi()

    try:
        make_wsgi()  # fail here, with the factory's own error, not in a worker
    except BaseException as exc:
        report.send(("error", exc if isinstance(exc, Exception) else None,
                     "".join(traceback.format_exception_only(exc)).strip()))
        os._exit(1)
    report.send(("ready", None, ""))
    report.close()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # gunicorn installs its own
    try:
        Application().run()
    finally:
        os._exit(0)
