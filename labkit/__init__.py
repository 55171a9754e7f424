"""labkit: the lab kit of the course "Two Ways to Serve".

One import gives a notebook everything it needs::

    import labkit as lk

    with lk.serve(make_app, name="guestbook") as server:
        requests.get(server.url + "/hello")

The kit starts real Flask servers on 127.0.0.1, puts a load balancer in front of
them, kills and revives them, measures load, draws the topology and grades
exercises. Every name below is the public surface; the rest is internal.

The folders show the architecture; read them in this order:

* ``serving/``   one server: a Flask app on a real socket, in a thread or a process;
* ``balancing/`` policies (read first), the balancer, and clusters of servers;
* ``state/``     where a session can live: memory, Redis, replicas, tokens, functions;
* ``observe/``   load tests, their reports, and the topology drawing;
* ``choosing/``  the cost model of the four designs, its plots and sliders;
* ``apps/``      the course's Flask apps (social, guarded, cookie session, uploads...);
* ``checks/`` and ``questions/``  the graded exercises;
* ``instructor/`` release, grade and doctor: the command line.
"""

from __future__ import annotations

import sys as _sys

from .balancing import policies
from .balancing.cluster import Cluster
from .checks import check, hint, trying
from .choosing import CostModel
from .errors import LabkitError
from .observe.load import Fault, LoadReport, load_test
from .serving.server import Server, serve
from .state import replication, tokens
from .state.redis import RedisServer, RedisSessionStore, StoreUnavailable
from .state.replication import Replication
from .state.serverless import FunctionRuntime
from .state.sessions import ManualClock, MemorySessionStore

__all__ = [
    "Cluster",
    "CostModel",
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
    "StoreUnavailable",
    "check",
    "hint",
    "load_test",
    "policies",
    "replication",
    "serve",
    "tokens",
    "trying",
]

__version__ = "0.1.0"

# The three namespaces are importable by their short public names too, as os.path is:
# ``from labkit.policies import RequestInfo`` works without knowing the folders.
for _name, _module in (("policies", policies), ("tokens", tokens),
                       ("replication", replication)):
    _sys.modules[f"{__name__}.{_name}"] = _module
del _name, _module
