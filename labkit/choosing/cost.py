"""A cost model of one service under four designs, to move with sliders.

The post ends with its real advice: choose by *what context you must remember*, and
weigh bandwidth, memory and cost. This module puts numbers on that advice. It is pure
arithmetic (no servers, no Flask), so the same model runs in a notebook, a test or a
graded check, and every number it gives can be traced to one line below.

The four designs, and where each keeps a user's context:

``sticky``      sessions in each server's memory; the balancer pins a user to a server
``store``       sessions in a shared store (Redis); any server can answer anyone
``tokens``      the context travels in a signed token; servers verify it every time
``serverless``  functions that remember nothing, plus the same shared store

Example::

    >>> from labkit.choosing import CostModel
    >>> model = CostModel(users=50_000, session_bytes=4_000)
    >>> model.estimate("tokens").lost_per_server_crash
    0.0
    >>> model.cheapest() in CostModel.DESIGNS
    True

Units are in the names: ``_ms`` milliseconds, ``_bytes`` bytes, ``_gb`` gigabytes
(10**9 bytes), ``_usd`` US dollars, ``per_month`` a month of 730 hours. Prices are
parameters with dated defaults (see :data:`PRICE_SOURCES`); they change, so check
them before you trust a total.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Iterator

from ..errors import CostModelError

__all__ = ["CATEGORIES", "DESIGNS", "PRICE_SOURCES", "BreakEven", "Choice", "CostModel",
           "CostTable", "Estimate"]

HOURS_PER_MONTH = 730          # the month cloud bills use: 8,760 hours / 12
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
GB = 1e9                       # bytes in a (decimal) gigabyte

DESIGNS = ("sticky", "store", "tokens", "serverless")
CATEGORIES = ("compute", "memory", "bandwidth", "store", "failures")

#: Where each price default comes from. Checked on 2026-11-28 (AWS, us-east-1, on-demand,
#: list prices). Prices change and differ by provider, region and discount: treat them
#: as a starting point and set your own.
PRICE_DATE = "2026-11-28"
PRICE_SOURCES = {
    "price_server_hour": "AWS Fargate, Linux/x86, per vCPU-hour (aws.amazon.com/fargate/pricing)",
    "price_memory_gb_hour": "AWS Fargate, Linux/x86, per GB-hour of memory (aws.amazon.com/fargate/pricing)",
    "price_egress_gb": "AWS data transfer out to the internet, first 10 TB/month (aws.amazon.com/ec2/pricing/on-demand)",
    "price_ingress_gb": "AWS data transfer in from the internet is free (aws.amazon.com/ec2/pricing/on-demand)",
    "price_function_gb_second": "AWS Lambda, x86, per GB-second of duration (aws.amazon.com/lambda/pricing)",
    "price_function_million_requests": "AWS Lambda, per million requests (aws.amazon.com/lambda/pricing)",
    "price_store_gb_hour": "Amazon ElastiCache Serverless for Valkey (a Redis fork), per GB-hour"
                           " stored (aws.amazon.com/elasticache/pricing)",
    "price_store_million_requests": "Amazon ElastiCache Serverless for Valkey, per million ECPUs"
                                    " (about one per KB read) (aws.amazon.com/elasticache/pricing)",
    "store_min_gb": "Amazon ElastiCache Serverless for Valkey bills at least 100 MB"
                    " (Redis OSS: 1 GB) (aws.amazon.com/elasticache/pricing)",
}

# What each design adds to a request while it finds the user's context.
_STATE_TIME = {"sticky": "lookup_ms", "store": "store_rtt_ms", "tokens": "verify_ms",
               "serverless": "store_rtt_ms"}


@dataclass(frozen=True, kw_only=True)
class CostModel:
    """One service, four designs: what each costs per month, and what a crash costs.

    Every argument is keyword-only and has a unit in its name; bad values raise
    :class:`~labkit.errors.CostModelError` saying which and why. Defaults describe a
    small web app; a chapter replaces the ones it can measure (bytes per request,
    session bytes, verify time, store round trip) with its own measurements.

    >>> CostModel(users=-1)
    Traceback (most recent call last):
    ...
    labkit.errors.CostModelError: users must be 0 or more (a count of concurrent users), not -1.
    """

    # -- the workload
    users: float = 10_000                      # concurrent users
    requests_per_user_per_minute: float = 2.0
    session_bytes: float = 2_000               # context held per user (server memory)
    cookie_bytes: float = 60                   # what a session cookie adds to a request
    token_bytes: float = 300                   # what a signed token adds to a request
    request_bytes: float = 400                 # the rest of a request (line, headers, body)
    response_bytes: float = 2_000
    replication: int = 1                       # copies of each session (1 = no replica)
    # -- capacity (the kit's capacity model: a server answers workers / service time)
    workers: int = 4                           # requests one server handles at once
    service_time_ms: float = 20.0              # time per request (CPU and I/O waits)
    utilization: float = 0.6                   # how full servers may run (headroom)
    min_servers: int = 2                       # at least two, so one can crash
    server_memory_gb: float = 2.0              # memory each (1 vCPU) server is given
    # -- state handling, per request (measured in the chapter)
    lookup_ms: float = 0.002                   # a dict lookup in the server's memory
    verify_ms: float = 0.05                    # checking a token's signature (CPU)
    store_rtt_ms: float = 0.3                  # one round trip to the shared store
    client_uplink_mbps: float = 10.0           # the user's upload speed (carried bytes)
    latency_budget_ms: float = 50.0            # the most state handling may add
    # -- failures
    crashes_per_server_per_month: float = 2.0  # crashes and restarts (deploys count)
    store_crashes_per_month: float = 0.1       # the shared store losing its memory
    relogin_cost_usd: float = 0.002            # what one forced re-login costs you
    # -- serverless
    function_memory_gb: float = 0.125          # 128 MB functions (the model assumes they run a
    #   request as fast as a server; Lambda's CPU grows with memory, 1 vCPU at 1,769 MB)
    # -- prices in USD (dated defaults: see PRICE_SOURCES)
    price_server_hour: float = 0.04048
    price_memory_gb_hour: float = 0.004445
    price_egress_gb: float = 0.09
    price_ingress_gb: float = 0.0
    price_function_gb_second: float = 0.0000166667
    price_function_million_requests: float = 0.20
    price_store_gb_hour: float = 0.084
    price_store_million_requests: float = 0.0023
    store_min_gb: float = 0.1                  # a serverless store bills at least this

    DESIGNS = DESIGNS
    CATEGORIES = CATEGORIES
    PRICE_DATE = PRICE_DATE            # when the price defaults were checked
    PRICE_SOURCES = PRICE_SOURCES      # where each one comes from

    def __post_init__(self) -> None:
        for f in fields(self):
            _validate(f.name, getattr(self, f.name))

    # -- what the model is asked -----------------------------------------------------
    @property
    def requests_per_second(self) -> float:
        """Requests per second the whole service receives."""
        return self.users * self.requests_per_user_per_minute / 60

    @property
    def requests_per_month(self) -> float:
        return self.requests_per_second * SECONDS_PER_MONTH

    def estimate(self, design: str) -> Estimate:
        """What ``design`` costs per month, adds to each request, and loses in a crash."""
        design = _design(design)
        n = self.requests_per_month
        carried = self.token_bytes if design == "tokens" else self.cookie_bytes
        # Finding the context: uploading what the client carries, then the lookup,
        # the store round trip or the signature check.
        upload_ms = carried * 8 / (self.client_uplink_mbps * 1e6) * 1000
        state_ms = upload_ms + getattr(self, _STATE_TIME[design])
        sessions_gb = self.users * self.session_bytes * self.replication / GB
        cost = dict.fromkeys(CATEGORIES, 0.0)

        if design == "serverless":
            servers = 0.0
            seconds = (self.service_time_ms + state_ms) / 1000
            cost["compute"] = (n * seconds * self.function_memory_gb * self.price_function_gb_second
                               + n / 1e6 * self.price_function_million_requests)
        else:
            # A worker is busy for the whole request, computing or waiting for the store.
            busy = self.requests_per_second * (self.service_time_ms + state_ms) / 1000
            servers = max(float(self.min_servers), busy / (self.workers * self.utilization))
            per_hour = self.price_server_hour + self.server_memory_gb * self.price_memory_gb_hour
            cost["compute"] = servers * per_hour * HOURS_PER_MONTH

        if design == "sticky":
            cost["memory"] = sessions_gb * self.price_memory_gb_hour * HOURS_PER_MONTH
        if design in ("store", "serverless"):
            reads_per_request = max(1.0, self.session_bytes / 1024)   # ~1 ECPU per KB
            cost["store"] = (max(self.store_min_gb, sessions_gb) * self.price_store_gb_hour
                             * HOURS_PER_MONTH
                             + n * reads_per_request / 1e6 * self.price_store_million_requests)

        bytes_in = self.request_bytes + carried
        cost["bandwidth"] = n * (bytes_in * self.price_ingress_gb
                                 + self.response_bytes * self.price_egress_gb) / GB

        lost_per_server_crash = 0.0
        lost_per_store_crash = 0.0
        lost_per_month = 0.0
        remembers = self.session_bytes > 0      # with nothing held, a crash loses nothing
        if design == "sticky" and self.replication == 1 and remembers:
            lost_per_server_crash = self.users / servers
            lost_per_month = self.crashes_per_server_per_month * servers * lost_per_server_crash
        if design in ("store", "serverless") and self.replication == 1 and remembers:
            lost_per_store_crash = float(self.users)
            lost_per_month = self.store_crashes_per_month * lost_per_store_crash
        cost["failures"] = lost_per_month * self.relogin_cost_usd

        if not all(math.isfinite(v) for v in cost.values()):
            raise CostModelError("these inputs are too large to compute a cost; use"
                                 " numbers a real service could have.")
        return Estimate(
            design=design,
            cost_usd_per_month=cost,
            servers=servers,
            state_ms_p50=state_ms,
            bytes_per_request=bytes_in,
            memory_gb=sessions_gb if design == "sticky" else 0.0,
            store_gb=sessions_gb if design in ("store", "serverless") else 0.0,
            lost_per_server_crash=lost_per_server_crash,
            lost_per_store_crash=lost_per_store_crash,
            lost_sessions_per_month=lost_per_month,
        )

    def table(self) -> CostTable:
        """Every design side by side (renders as a table in a notebook)."""
        return CostTable(tuple(self.estimate(d) for d in DESIGNS))

    def cheapest(self) -> str:
        """The design with the lowest monthly total (a tie goes to the one that remembers least)."""
        return self.table().cheapest()

    def choose(self) -> Choice:
        """The design this model recommends, and why, in one reason code.

        The cheapest design whose added latency fits ``latency_budget_ms`` (reason
        ``"cheapest"`` when it is also the cheapest overall, ``"latency"`` when cheaper
        designs break the budget). When none fits, the fastest (reason ``"latency"``).
        """
        table = self.table()
        by_cost = sorted(table, key=_cost_key)
        fits = [e for e in by_cost if e.state_ms_p50 <= self.latency_budget_ms]
        if fits and fits[0] is by_cost[0]:
            return Choice(fits[0].design, "cheapest")
        if fits:
            return Choice(fits[0].design, "latency")
        return Choice(min(table, key=lambda e: e.state_ms_p50).design, "latency")

    def total(self, design: str) -> float:
        """Monthly total of ``design``, in USD."""
        return self.estimate(design).total_usd_per_month

    def replace(self, **changes: Any) -> CostModel:
        """A copy with some inputs changed (checked like the constructor)."""
        unknown = sorted(set(changes) - set(self.inputs()))
        if unknown:
            raise CostModelError(f"unknown input {unknown[0]!r}; the model's inputs are:"
                                 f" {', '.join(self.inputs())}.")
        return replace(self, **changes)

    def inputs(self) -> dict[str, float]:
        """Every input and its value, in declaration order."""
        return asdict(self)

    def break_even(self, a: str, b: str, *, vary: str, lo: float, hi: float,
                   steps: int = 400) -> list[BreakEven]:
        """Where designs ``a`` and ``b`` cost the same as input ``vary`` goes ``lo``..``hi``.

        Scans the range (log-spaced when ``lo > 0``), then bisects every change of sign
        of ``total(a) - total(b)``. Returns the crossings in increasing order; an empty
        list means one design is cheaper over the whole range.

        >>> point, = CostModel().break_even("tokens", "serverless", vary="users", lo=10, hi=1e6)
        >>> point.cheaper_above
        'tokens'
        """
        a, b = _design(a), _design(b)
        if a == b:
            raise CostModelError(f"compare two different designs, not {a!r} with itself.")
        if vary not in self.inputs():
            raise CostModelError(f"unknown input {vary!r} to vary; choose one of:"
                                 f" {', '.join(self.inputs())}.")
        _validate(vary, lo)
        _validate(vary, hi)
        if not hi > lo:
            raise CostModelError(f"the range must grow: lo={lo!r} is not below hi={hi!r}.")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
            raise CostModelError(f"steps must be a whole number of at least 2, not {steps!r}.")
        if vary in _INTEGERS:
            raise CostModelError(f"{vary} is a whole number; vary a continuous input instead.")

        def gap(x: float) -> float:
            m = replace(self, **{vary: x})
            return m.total(a) - m.total(b)

        xs = _grid(lo, hi, steps)
        gaps = [gap(x) for x in xs]
        scale = max(1e-9, max(abs(g) for g in gaps))
        points = []
        for x0, x1, g0, g1 in zip(xs, xs[1:], gaps, gaps[1:]):
            if g0 == 0 and abs(g1) > 1e-9 * scale:
                points.append(x0)
            elif g0 * g1 < 0:
                for _ in range(80):
                    mid = (x0 + x1) / 2
                    gm = gap(mid)
                    if (gm < 0) == (g0 < 0):
                        x0, g0 = mid, gm
                    else:
                        x1 = mid
                points.append((x0 + x1) / 2)
        result = []
        for x in points:
            above = gap(min(hi, x * 1.01 if x else (hi - lo) * 1e-3))
            result.append(BreakEven(a=a, b=b, vary=vary, at=x,
                                    cheaper_above=a if above < 0 else b))
        return result

    # -- pictures and sliders (matplotlib and ipywidgets, imported only when called) --
    def plot(self, *, ax: Any = None) -> Any:
        """Stacked bars: each design's monthly cost by category. Returns the Axes."""
        from .plots import plot_breakdown

        return plot_breakdown(self, ax=ax)

    def plot_break_even(self, *, vary: str = "users", lo: float = 100, hi: float = 1e6,
                        ax: Any = None) -> Any:
        """Each design's monthly total as ``vary`` goes ``lo``..``hi``. Returns the Axes."""
        from .plots import plot_break_even

        return plot_break_even(self, vary=vary, lo=lo, hi=hi, ax=ax)

    def explore(self, **ranges: tuple[float, float]) -> Any:
        """Sliders for the main inputs that redraw both plots live (ipywidgets)."""
        from .explorer import explorer

        return explorer(self, **ranges)

    def __repr__(self) -> str:
        return (f"<CostModel {self.users:,.0f} users, {self.requests_per_user_per_minute:g}"
                f" requests/user/min, session {self.session_bytes:,.0f} B,"
                f" token {self.token_bytes:,.0f} B>")


@dataclass(frozen=True)
class Estimate:
    """One design's numbers. Each field's unit is in its name (see :data:`UNITS`)."""

    design: str
    cost_usd_per_month: dict[str, float]
    servers: float
    state_ms_p50: float
    bytes_per_request: float
    memory_gb: float
    store_gb: float
    lost_per_server_crash: float
    lost_per_store_crash: float
    lost_sessions_per_month: float

    UNITS = {"cost_usd_per_month": "USD/month", "total_usd_per_month": "USD/month",
             "servers": "servers", "state_ms_p50": "ms added per request (p50)",
             "bytes_per_request": "bytes sent per request", "memory_gb": "GB in server memory",
             "store_gb": "GB in the store", "lost_per_server_crash": "sessions",
             "lost_per_store_crash": "sessions", "lost_sessions_per_month": "sessions/month"}

    @property
    def total_usd_per_month(self) -> float:
        return sum(self.cost_usd_per_month.values())

    def __repr__(self) -> str:
        return (f"<Estimate {self.design}: ${self.total_usd_per_month:,.0f}/month,"
                f" +{self.state_ms_p50:.3g} ms/request,"
                f" {self.lost_per_server_crash:,.0f} sessions lost per server crash>")


@dataclass(frozen=True)
class Choice:
    """The recommended design and the reason code: ``"cheapest"`` or ``"latency"``."""

    design: str
    reason: str

    def __iter__(self) -> Iterator[str]:   # design, reason = model.choose()
        return iter((self.design, self.reason))


@dataclass(frozen=True)
class BreakEven:
    """Designs ``a`` and ``b`` cost the same when input ``vary`` equals ``at``."""

    a: str
    b: str
    vary: str
    at: float
    cheaper_above: str

    def __repr__(self) -> str:
        return (f"<BreakEven {self.a} = {self.b} at {self.vary} = {_round(self.at):,g};"
                f" above it {self.cheaper_above} is cheaper>")


@dataclass(frozen=True)
class CostTable:
    """The four estimates side by side; text and HTML reprs from the same rows."""

    estimates: tuple[Estimate, ...]
    ROWS = (("compute", "USD/month"), ("memory", "USD/month"), ("bandwidth", "USD/month"),
            ("store", "USD/month"), ("failures", "USD/month"), ("total", "USD/month"),
            ("servers", "servers"), ("state_ms_p50", "ms/request"),
            ("bytes_per_request", "bytes"), ("lost_per_server_crash", "sessions"),
            ("lost_per_store_crash", "sessions"))

    def __iter__(self) -> Iterator[Estimate]:
        return iter(self.estimates)

    def __getitem__(self, design: str) -> Estimate:
        design = _design(design)
        return next(e for e in self.estimates if e.design == design)

    def cheapest(self) -> str:
        return min(self.estimates, key=_cost_key).design

    def rows(self) -> list[tuple[str, str, list[str]]]:
        out = []
        for name, unit in self.ROWS:
            cells = []
            for e in self.estimates:
                if name in CATEGORIES:
                    v = e.cost_usd_per_month[name]
                elif name == "total":
                    v = e.total_usd_per_month
                else:
                    v = getattr(e, name)
                cells.append(_fmt(v, unit))
            out.append((name, unit, cells))
        return out

    def __repr__(self) -> str:
        head = ["", "unit", *(e.design for e in self.estimates)]
        body = [[name, unit, *cells] for name, unit, cells in self.rows()]
        widths = [max(len(str(r[i])) for r in [head, *body]) for i in range(len(head))]
        lines = ["  ".join(str(c).rjust(w) if i > 1 else str(c).ljust(w)
                           for i, (c, w) in enumerate(zip(r, widths))) for r in [head, *body]]
        return "\n".join(lines) + f"\ncheapest: {self.cheapest()}"

    def _repr_html_(self) -> str:
        import html

        head = "".join(f"<th>{html.escape(e.design)}</th>" for e in self.estimates)
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(name)}</th><td>{html.escape(unit)}</td>"
            + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
            for name, unit, cells in self.rows())
        return (f"<table><tr><th></th><th>unit</th>{head}</tr>{body}</table>"
                f"<p>cheapest: <b>{html.escape(self.cheapest())}</b></p>")


# Ties (e.g. nothing to remember, so no design holds anything) go to the design that
# remembers least: tokens, serverless, store, then sticky.
_PREFER = ("tokens", "serverless", "store", "sticky")


def _cost_key(e: Estimate) -> tuple[float, int]:
    return (round(e.total_usd_per_month, 6), _PREFER.index(e.design))


# -- checking inputs ------------------------------------------------------------------
_INTEGERS = {"replication", "workers", "min_servers"}
_POSITIVE = {"workers", "service_time_ms", "utilization", "replication", "min_servers",
             "function_memory_gb", "client_uplink_mbps"}
_MEANING = {
    "users": "a count of concurrent users",
    "workers": "requests one server handles at once; 0 would mean no capacity",
    "service_time_ms": "milliseconds of work per request",
    "utilization": "how full a server may run, between 0 and 1",
    "replication": "copies of each session, 1 or more",
    "min_servers": "the fewest servers you run, 1 or more",
}


def _validate(name: str, value: Any) -> None:
    meaning = _MEANING.get(name, "")
    tail = f" ({meaning})" if meaning else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CostModelError(f"{name} must be a number{tail}, not {value!r}.")
    if not math.isfinite(value):
        raise CostModelError(f"{name} must be a finite number{tail}, not {value!r}.")
    if name in _INTEGERS and value != int(value):
        raise CostModelError(f"{name} must be a whole number{tail}, not {value!r}.")
    if name in _POSITIVE and value <= 0:
        raise CostModelError(f"{name} must be more than 0{tail}, not {value!r}.")
    if value < 0:
        raise CostModelError(f"{name} must be 0 or more{tail}, not {value!r}.")
    if name == "utilization" and value > 1:
        raise CostModelError(f"utilization must be at most 1{tail}, not {value!r}.")


def _design(design: Any) -> str:
    if not isinstance(design, str) or design not in DESIGNS:
        raise CostModelError(f"unknown design {design!r}; choose one of: {', '.join(DESIGNS)}.")
    return design


def _grid(lo: float, hi: float, steps: int) -> list[float]:
    if lo > 0:
        ratio = (hi / lo) ** (1 / steps)
        return [lo * ratio**i for i in range(steps)] + [hi]
    return [lo + (hi - lo) * i / steps for i in range(steps + 1)]


def _round(x: float) -> float:
    """Three significant figures: enough to read, stable to print."""
    if x == 0:
        return 0.0
    return round(x, 2 - int(math.floor(math.log10(abs(x)))))


def _fmt(value: float, unit: str) -> str:
    if unit == "USD/month":
        return f"${value:,.2f}" if value < 100 else f"${value:,.0f}"
    if unit == "ms/request":
        return f"{value:.3g}"
    return f"{_round(value):,g}"
