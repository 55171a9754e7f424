"""What a load test measured: one sample per request, and the report over them.

    >>> report.ok, report.failed
    (200, 0)
    >>> report.per_server
    {'s1': 67, 's2': 67, 's3': 66}
    >>> report.throughput_over_time(bin=0.5)[:2]      # (bin start, requests/s)
    [(0.0, 196.0), (0.5, 204.0)]

Times are seconds since the load began (``start`` of the first request is >= 0);
latencies are seconds in a :class:`Sample` and milliseconds in the percentiles.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..errors import LabkitError
from .topology import _enable_inline_figures

__all__ = ["Sample", "LoadReport"]


@dataclass
class Sample:
    """One request of a load test."""

    user: int
    start: float          # seconds since the load began
    latency: float        # seconds
    status: int           # 0 when no answer came (connection refused or cut)
    server: str | None    # from X-Served-By
    error: str | None = None

    @property
    def ok(self) -> bool:
        """An answer below 500 (a 401 is an answer; a 502 or no answer is not)."""
        return 0 < self.status < 500

    @property
    def end(self) -> float:
        """When the answer (or the failure) came, in seconds since the load began."""
        return self.start + self.latency


@dataclass
class LoadReport:
    """What a load test measured. ``plot()`` draws latency over time, failures marked;
    ``plot_throughput()`` draws completed requests per second, so an outage shows as a dip.
    """

    users: int
    samples: list[Sample]
    duration: float
    fault_log: list[tuple[float, str, str]] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.samples)

    @property
    def ok(self) -> int:
        return sum(s.ok for s in self.samples)

    @property
    def failed(self) -> int:
        return self.requests - self.ok

    @property
    def throughput(self) -> float:
        """Completed requests per second."""
        return self.requests / self.duration if self.duration else 0.0

    def percentile(self, q: float) -> float:
        """The q-th percentile of latency, in milliseconds (nearest rank)."""
        latencies = sorted(s.latency for s in self.samples)
        if not latencies:
            return 0.0
        rank = max(0, min(len(latencies) - 1, math.ceil(q / 100 * len(latencies)) - 1))
        return latencies[rank] * 1000

    p50 = property(lambda self: self.percentile(50))
    p95 = property(lambda self: self.percentile(95))
    p99 = property(lambda self: self.percentile(99))

    @property
    def per_server(self) -> dict[str, int]:
        """Requests answered by each server (from ``X-Served-By``), by name."""
        return dict(sorted(Counter(s.server for s in self.samples if s.server).items()))

    @property
    def statuses(self) -> dict[int, int]:
        """How many answers of each HTTP status (0 = no answer at all)."""
        return dict(sorted(Counter(s.status for s in self.samples).items()))

    def throughput_over_time(self, *, bin: float | None = None,
                             ok_only: bool = False) -> list[tuple[float, float]]:
        """Requests completed per second in consecutive bins of ``bin`` seconds.

        Returns ``[(bin_start, requests_per_second), ...]`` over the whole run (a bin
        with no completion is there, as 0). ``bin`` defaults to a 40th of the run.
        With ``ok_only=True`` failed requests are not counted: a stateless cluster
        that retries shows a dip while a server is down; one that drops requests
        shows a deeper one.
        """
        if bin is None:
            bin = max(self.duration / 40, 0.01)
        if bin <= 0:
            raise LabkitError(f"bin is a number of seconds above 0, not {bin!r}.")
        count = max(1, math.ceil(self.duration / bin))
        completed = [0] * count
        for s in self.samples:
            if ok_only and not s.ok:
                continue
            completed[min(count - 1, max(0, int(s.end / bin)))] += 1
        return [(round(i * bin, 9), n / bin) for i, n in enumerate(completed)]

    def _summary(self) -> list[tuple[str, str]]:
        servers = ", ".join(f"{k} {v}" for k, v in self.per_server.items()) or "-"
        return [("requests", f"{self.requests} from {self.users} users"),
                ("ok / failed", f"{self.ok} / {self.failed}"),
                ("throughput", f"{self.throughput:.1f} requests/s"),
                ("latency p50 / p95 / p99", f"{self.p50:.1f} / {self.p95:.1f} / {self.p99:.1f} ms"),
                ("per server", servers)]

    def __repr__(self) -> str:
        return "<LoadReport " + "; ".join(f"{k}: {v}" for k, v in self._summary()) + ">"

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                       f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
                       for k, v in self._summary())
        return f"<table><caption>Load test</caption>{rows}</table>"

    def fault_periods(self) -> list[tuple[str, float, float]]:
        """``(server, down_from, down_until)`` in seconds: when each server was surely down."""
        periods, down = [], {}
        for when, action, server in self.fault_log:
            if action == "kill":
                down.setdefault(server, when)
            elif server in down:
                periods.append((server, down.pop(server), when))
        periods += [(server, start, self.duration) for server, start in down.items()]
        return sorted(periods, key=lambda p: (p[1], p[0]))

    def _shade_faults(self, ax: Any) -> None:
        for server, start, end in self.fault_periods():
            ax.axvspan(start, end, color="tab:red", alpha=0.12)
            ax.text(start, 1.0, f" {server} down", transform=ax.get_xaxis_transform(),
                    va="top", fontsize=8, color="tab:red")

    def plot(self, ax: Any = None) -> Any:
        """Latency over time, one colour per server, fault periods shaded.

        Each dot is one request, at the time it was sent. A failed request (no
        answer, or a 5xx) is a red cross at the time it failed, so failures stand
        out wherever they land, as in a Jepsen history.
        """
        ax = _axes(ax)
        good = [s for s in self.samples if s.ok]
        for name in sorted({s.server or "unnamed" for s in good}):
            mine = [s for s in good if (s.server or "unnamed") == name]
            ax.scatter([s.start for s in mine], [s.latency * 1000 for s in mine],
                       s=6, label=name)
        bad = [s for s in self.samples if not s.ok]
        if bad:
            ax.scatter([s.end for s in bad], [s.latency * 1000 for s in bad], s=28,
                       marker="x", color="tab:red", linewidths=1.2, zorder=3,
                       label=f"failed ({len(bad)})")
        self._shade_faults(ax)
        ax.set_xlabel("time since start (s)")
        ax.set_ylabel("latency (ms)")
        ax.legend(fontsize=8, loc="upper right")
        return ax.figure

    def plot_throughput(self, ax: Any = None, *, bin: float | None = None) -> Any:
        """Requests answered per second over time (failed ones apart), faults shaded."""
        ax = _axes(ax)
        every = self.throughput_over_time(bin=bin)
        ok = self.throughput_over_time(bin=bin, ok_only=True)
        width = every[1][0] - every[0][0] if len(every) > 1 else self.duration or 1.0
        ax.step([t for t, _ in ok], [r for _, r in ok], where="post", label="answered")
        failed = [(t, r - o) for (t, r), (_, o) in zip(every, ok)]
        if any(r for _, r in failed):
            ax.step([t for t, _ in failed], [r for _, r in failed], where="post",
                    color="tab:red", label="failed")
        self._shade_faults(ax)
        ax.set_xlim(0, len(every) * width)
        ax.set_xlabel("time since start (s)")
        ax.set_ylabel("requests per second")
        ax.legend(fontsize=8, loc="lower right")
        return ax.figure


def _axes(ax: Any) -> Any:
    from matplotlib.figure import Figure

    _enable_inline_figures()
    if ax is None:
        fig = Figure(figsize=(7, 3.2), layout="constrained")
        ax = fig.add_subplot()
    return ax
