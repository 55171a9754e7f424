"""Serverless, small enough to read: a function runtime and a size-counting gateway.

A *function runtime* (AWS Lambda, Google Cloud Functions, ...) runs your code only
when an event arrives. It keeps no conversation with the client: each event is handed
to a handler on its own. What it does keep, for speed, is *containers*: a container
is your module loaded once (its top-level code run: imports, clients, caches) and then
reused for the next events while it stays busy enough.

* **cold start**: no idle container, so the runtime loads your module first (slow);
* **warm start**: an idle container is reused (fast), *module globals and all*;
* **reaping**: a container idle for more than ``keep_warm`` seconds is thrown away;
* **concurrency**: two events at once need two containers, each with its own globals.

::

    >>> rt = FunctionRuntime(keep_warm=300)
    >>> rt.register("hello", '''
    ... def handler(event, context):
    ...     return {"hello": event.get("name", "world")}
    ... ''')
    >>> rt.invoke("hello", {"name": "ada"})
    <Invocation hello#1 cold {'hello': 'ada'}>
    >>> rt.invoke("hello", {})
    <Invocation hello#1 warm {'hello': 'world'}>

``rt.create_app`` is a Flask factory: ``lk.serve(rt.create_app)`` puts the runtime on
real HTTP (``POST /invoke/<function>`` with the event as JSON).

A *module* is either Python source text that defines ``handler(event, context)``
(what Lambda loads from your file), or a function whose body plays the module's
top-level code and which returns the handler::

    def counter_module():
        count = 0                          # "module state": set up once per cold start
        def handler(event, context):
            nonlocal count
            count += 1
            return {"count": count}
        return handler

The blog post's other example, a small stateless service in front of the main server
that counts the size of each upload and turns away the oversized ones, is a course
app: :mod:`labkit.apps.uploads`.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from flask import Flask, jsonify, request

from ..apps._json import install_json_errors
from ..errors import LabkitError

DEFAULT_KEEP_WARM = 600.0    # seconds an idle container is kept (Lambda: minutes)

__all__ = [
    "Context",
    "FunctionRuntime",
    "HandlerError",
    "Invocation",
    "Store",
    "UnknownFunctionError",
]


class UnknownFunctionError(LabkitError, KeyError):
    """An event for a function name the runtime does not have."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class HandlerError(LabkitError):
    """A module or handler given to ``register`` cannot be used."""


# -- state that lives outside the containers --------------------------------------------


class Store:
    """A tiny shared key-value store: the "database" a serverless function talks to.

    Containers come and go; whatever must outlive one event lives here (in real life:
    DynamoDB, Redis, a SQL database). Thread-safe; ``incr`` is atomic.

    >>> store = Store()
    >>> store.incr("visits:ada")
    1
    >>> store
    <Store 1 key>
    """

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return self._data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self._data[key] = value

    def incr(self, key: str, by: int = 1) -> int:
        """Add ``by`` to the number at ``key`` (0 if absent) and return the new value."""
        with self._lock:
            self._data[key] = self._data.get(key, 0) + by
            return self._data[key]

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        n = len(self)
        return f"<Store {n} key{'s' if n != 1 else ''}>"


# -- the runtime --------------------------------------------------------------------------


@dataclass
class Context:
    """What a handler gets besides the event: where it runs, and the shared store."""

    function: str
    container: str
    cold: bool
    store: Store


@dataclass
class Invocation:
    """The outcome of one event: the handler's result and which container ran it."""

    function: str
    container: str
    cold: bool
    result: Any

    def __repr__(self) -> str:
        return (f"<Invocation {self.container} {'cold' if self.cold else 'warm'}"
                f" {self.result!r}>")


@dataclass
class _Container:
    name: str
    function: str
    handler: Callable[[dict, Context], Any]
    last_used: float
    busy: bool = True
    invocations: int = 0


@dataclass
class _Stats:
    invocations: int = 0
    cold_starts: int = 0
    warm_starts: int = 0
    reaped: int = 0
    init_seconds: float = 0.0
    started: int = field(default=0, repr=False)  # numbers containers: name#1, name#2


def _load(module: Any, function: str) -> Callable[[dict, Context], Any]:
    """Load a module once (a cold start) and return its handler."""
    if isinstance(module, str):
        namespace: dict[str, Any] = {"__name__": f"lambda_{function}"}
        exec(compile(module, f"<function {function}>", "exec"), namespace)  # noqa: S102
        handler = namespace.get("handler")
    else:
        handler = module()
    if not callable(handler):
        raise HandlerError(
            f"Function {function!r}: the module gave {type(handler).__name__}, not a"
            " handler. Source text must define `def handler(event, context)`; a module"
            " function must `return handler`.")
    return handler


class FunctionRuntime:
    """Run registered handlers one event at a time, in reusable containers.

    Options (keyword-only):

    * ``keep_warm``: seconds an idle container survives; one idle for longer is
      reaped before the next event looks for a warm container;
    * ``init_cost``: extra seconds every cold start takes (imports, connections);
    * ``clock``: a zero-argument callable returning seconds (``time.monotonic``);
      pass ``lk``'s ``ManualClock`` to play a timeline;
    * ``store``: the shared :class:`Store` handlers see as ``context.store``.
    """

    def __init__(self, *, keep_warm: float = DEFAULT_KEEP_WARM, init_cost: float = 0.0,
                 clock: Callable[[], float] = time.monotonic,
                 store: Store | None = None) -> None:
        if keep_warm < 0 or init_cost < 0:
            raise LabkitError("keep_warm and init_cost are seconds: pass numbers >= 0.")
        self.keep_warm = float(keep_warm)
        self.init_cost = float(init_cost)
        self.clock = clock
        self.store = store if store is not None else Store()
        self._modules: dict[str, Any] = {}
        self._stats: dict[str, _Stats] = {}
        self._containers: list[_Container] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"<FunctionRuntime {len(self._modules)} functions,"
                f" {len(self._containers)} containers>")

    def register(self, name: str, module: Any) -> None:
        """Deploy ``module`` (source text, or a function returning the handler) as ``name``.

        Re-registering a name deploys a new version: its old containers are dropped.
        """
        if not (isinstance(module, str) or callable(module)):
            raise HandlerError(f"register({name!r}, ...) needs source text or a function"
                               f" returning the handler, not {type(module).__name__}.")
        with self._lock:
            self._modules[name] = module
            self._stats.setdefault(name, _Stats())
            self._containers = [c for c in self._containers if c.function != name]

    def invoke(self, name: str, event: dict | None = None) -> Invocation:
        """Handle one event: on a warm container if one is idle, else after a cold start."""
        if name not in self._modules:
            raise UnknownFunctionError(
                f"No function named {name!r}; register it first"
                f" (known: {sorted(self._modules)}).")
        event = copy.deepcopy(event if event is not None else {})  # nothing shared
        with self._lock:
            self._reap_locked()
            stats = self._stats[name]
            idle = [c for c in self._containers if c.function == name and not c.busy]
            container = max(idle, key=lambda c: c.last_used) if idle else None
            if container is not None:
                container.busy = True
                stats.warm_starts += 1
            else:
                stats.cold_starts += 1
                stats.started += 1
                cname = f"{name}#{stats.started}"
            module = self._modules[name]
        cold = container is None
        if cold:
            started = time.perf_counter()
            try:
                handler = _load(module, name)   # the module's top-level code runs here
                if self.init_cost:
                    time.sleep(self.init_cost)
            finally:
                with self._lock:
                    stats.init_seconds += time.perf_counter() - started
            container = _Container(cname, name, handler, self.clock())
            with self._lock:
                self._containers.append(container)
        context = Context(name, container.name, cold, self.store)
        try:
            result = container.handler(event, context)
        finally:
            with self._lock:
                container.busy = False
                container.last_used = self.clock()
                container.invocations += 1
                stats.invocations += 1
        return Invocation(name, container.name, cold, result)

    def reap(self) -> list[str]:
        """Drop containers idle for more than ``keep_warm``; return their names."""
        with self._lock:
            return self._reap_locked()

    def _reap_locked(self) -> list[str]:
        now = self.clock()
        gone = [c for c in self._containers
                if not c.busy and now - c.last_used > self.keep_warm]
        for c in gone:
            self._containers.remove(c)
            self._stats[c.function].reaped += 1
        return [c.name for c in gone]

    def containers(self, name: str | None = None) -> list[str]:
        """Names of the live containers (of one function, or of all)."""
        with self._lock:
            return [c.name for c in self._containers if name in (None, c.function)]

    def stats(self, name: str | None = None) -> dict:
        """Counts per function (or for one): invocations, cold/warm starts, reaped.

        Only counts, so the output is the same on every run; the time spent in cold
        starts is :meth:`init_seconds`.
        """
        with self._lock:
            table = {
                fn: {"invocations": s.invocations, "cold_starts": s.cold_starts,
                     "warm_starts": s.warm_starts, "reaped": s.reaped,
                     "containers": sum(c.function == fn for c in self._containers)}
                for fn, s in self._stats.items()}
        return table[name] if name is not None else table

    def init_seconds(self, name: str) -> float:
        """Seconds spent so far in the cold starts of ``name`` (a measurement)."""
        with self._lock:
            return self._stats[name].init_seconds

    def create_app(self) -> Flask:
        """A Flask app in front of this runtime: ``POST /invoke/<function>``."""
        app = Flask("function_runtime")
        install_json_errors(app)

        @app.post("/invoke/<function>")
        def invoke(function: str):
            raw = request.get_data() or b"{}"
            try:
                event = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                return jsonify(error="malformed_json", message="The event must be JSON."), 400
            if not isinstance(event, dict):
                return jsonify(error="wrong_shape", message="The event must be a JSON object."), 422
            try:
                done = self.invoke(function, event)
            except UnknownFunctionError as exc:
                return jsonify(error="unknown_function", message=str(exc)), 404
            except Exception as exc:  # the handler's bug: reported, never a crash
                # 502 as Lambda behind an API gateway: the function failed, not the request
                return jsonify(error="handler_error", type=type(exc).__name__,
                               message=str(exc)), 502
            return jsonify(result=done.result, cold=done.cold, container=done.container)

        @app.get("/functions")
        def functions():
            return jsonify(self.stats())

        return app
