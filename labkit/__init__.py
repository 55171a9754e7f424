"""labkit: the lab kit of the course "Two Ways to Serve".

One import gives a notebook everything it needs::

    import labkit as lk

    with lk.serve(make_app, name="guestbook") as server:
        requests.get(server.url + "/hello")

The kit starts real Flask servers on 127.0.0.1, puts a load balancer in front of
them, kills and revives them, measures load, draws the topology and grades
exercises. Every name below is the public surface; the rest is internal.
"""

from __future__ import annotations

from . import policies
from .checks import check, hint
from .cluster import Cluster
from .errors import LabkitError
from .load import Fault, LoadReport, load_test
from .redis_server import RedisServer, RedisSessionStore
from .replication import Replication
from .server import Server, serve
from .serverless import FunctionRuntime
from .sessions import ManualClock, MemorySessionStore

__all__ = [
    "Cluster",
    "Fault",
    "FunctionRuntime",
    "LabkitError",
    "LoadReport",
    "ManualClock",
    "MemorySessionStore",
    "RedisServer",
    "RedisSessionStore",
    "Replication",
    "Server",
    "check",
    "hint",
    "load_test",
    "policies",
    "serve",
]

__version__ = "0.1.0"
