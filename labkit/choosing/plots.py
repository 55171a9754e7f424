"""Two pictures of the cost model: what each design pays for, and where they cross.

Both take ``ax=None`` (a new figure when none is given) and return the Axes, in the
manner of networkx's drawing functions. matplotlib is imported only when called.
"""

from __future__ import annotations

from typing import Any

from .cost import CATEGORIES, DESIGNS, CostModel, _round

COLORS = {"compute": "#4c72b0", "memory": "#dd8452", "bandwidth": "#55a868",
          "store": "#c44e52", "failures": "#8172b3"}
LINES = {"sticky": "#dd8452", "store": "#c44e52", "tokens": "#4c72b0", "serverless": "#55a868"}


def _axes(ax: Any, size: tuple[float, float]) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=size)
    return ax


def plot_breakdown(model: CostModel, *, ax: Any = None) -> Any:
    """Stacked bars, one per design: monthly cost split into compute, memory, ..."""
    ax = _axes(ax, (6.4, 4.0))
    table = model.table()
    bottoms = [0.0] * len(DESIGNS)
    for category in CATEGORIES:
        values = [table[d].cost_usd_per_month[category] for d in DESIGNS]
        ax.bar(DESIGNS, values, bottom=bottoms, label=category, color=COLORS[category])
        bottoms = [b + v for b, v in zip(bottoms, values)]
    cheapest = table.cheapest()
    for i, (design, top) in enumerate(zip(DESIGNS, bottoms)):
        ax.annotate(f"${top:,.0f}", (i, top), ha="center", va="bottom", fontsize=8,
                    fontweight="bold" if design == cheapest else "normal")
    ax.set_ylabel("USD per month")
    ax.set_title(f"{model.users:,.0f} users: cheapest is {cheapest}", fontsize=10)
    # Room above the tallest bar for the legend, so it never hides a bar or a total.
    ax.legend(fontsize=8, loc="upper center", ncol=3, frameon=False)
    ax.set_ylim(0, max(bottoms) * 1.45 or 1)
    return ax


def plot_break_even(model: CostModel, *, vary: str = "users", lo: float = 100,
                    hi: float = 1e6, ax: Any = None, steps: int = 120) -> Any:
    """Each design's monthly total as one input varies; crossings of the cheapest marked."""
    ax = _axes(ax, (6.4, 4.0))
    log = lo > 0 and hi / lo >= 100
    if log:
        xs = [lo * (hi / lo) ** (i / steps) for i in range(steps + 1)]
    else:
        xs = [lo + (hi - lo) * i / steps for i in range(steps + 1)]
    totals = {d: [model.replace(**{vary: x}).total(d) for x in xs] for d in DESIGNS}
    for design, ys in totals.items():
        ax.plot(xs, ys, label=design, color=LINES[design], lw=2)
    now = getattr(model, vary)
    if lo <= now <= hi:
        ax.axvline(now, color="grey", ls=":", lw=1)
    # Mark where the cheapest design changes: the break-even points that matter.
    cheapest = [min(DESIGNS, key=lambda d, i=i: totals[d][i]) for i in range(len(xs))]
    for i in range(1, len(xs)):
        if cheapest[i] != cheapest[i - 1]:
            for p in model.break_even(cheapest[i - 1], cheapest[i], vary=vary,
                                      lo=xs[i - 1], hi=xs[i], steps=4):
                y = model.replace(**{vary: p.at}).total(p.a)
                ax.plot([p.at], [y], "ko", ms=4)
                ax.annotate(f"{_round(p.at):,g}", (p.at, y), textcoords="offset points",
                            xytext=(4, -12), fontsize=8)
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(vary.replace("_", " "))
    ax.set_ylabel("USD per month")
    ax.set_title(f"Monthly total as {vary.replace('_', ' ')} varies", fontsize=10)
    ax.legend(fontsize=8)
    return ax


def figure(model: CostModel, *, vary: str = "users", lo: float = 100, hi: float = 1e6,
           size: tuple[float, float] = (9.5, 3.6)) -> Any:
    """Both plots side by side in one figure (what the sliders redraw)."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=size)
    plot_breakdown(model, ax=left)
    plot_break_even(model, vary=vary, lo=lo, hi=hi, ax=right)
    fig.tight_layout()
    return fig
