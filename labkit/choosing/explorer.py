"""Sliders that move the cost model: each change redraws the breakdown and break-even plot.

Built from ipywidgets (``interactive_output``), so it works in JupyterLab, Notebook 7
and VS Code. Without a live kernel (a notebook read on GitHub, or run by nbval) only
the widget's text form shows; the chapter draws a static figure below it for that.
"""

from __future__ import annotations

from typing import Any

from ..errors import CostModelError
from .cost import CostModel

#: Slider ranges: (min, max, step, log scale?). Override any with explorer(model, name=(lo, hi)).
RANGES: dict[str, tuple[float, float, float, bool]] = {
    "users": (100, 1_000_000, 0.05, True),
    "requests_per_user_per_minute": (0.1, 60, 0.05, True),
    "session_bytes": (100, 1_000_000, 0.05, True),
    "token_bytes": (50, 4_000, 0.05, True),
    "crashes_per_server_per_month": (0, 30, 0.5, False),
    "relogin_cost_usd": (0, 0.1, 0.001, False),
    "price_memory_gb_hour": (0, 0.05, 0.0005, False),
    "price_egress_gb": (0, 0.2, 0.005, False),
}


def explorer(model: CostModel, **ranges: tuple[float, float]) -> Any:
    """A box of sliders for ``model``'s main inputs and the two plots they redraw."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    from .plots import figure

    unknown = sorted(set(ranges) - set(RANGES))
    if unknown:
        raise CostModelError(f"no slider for {unknown[0]!r}; the sliders are:"
                             f" {', '.join(RANGES)}.")
    sliders = {}
    for name, (lo, hi, step, log) in RANGES.items():
        if name in ranges:
            lo, hi = ranges[name]
            if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo < hi
                    and (lo > 0 or not log)):
                raise CostModelError(f"the range of {name} must be (low, high) with low <"
                                     f" high{' and low > 0' if log else ''}, not {ranges[name]!r}.")
        value = min(max(getattr(model, name), lo), hi)
        style = {"description_width": "220px"}
        layout = widgets.Layout(width="520px")
        label = name.replace("_", " ")
        if log:
            import math

            sliders[name] = widgets.FloatLogSlider(
                value=value, base=10, min=math.log10(lo), max=math.log10(hi), step=step,
                description=label, style=style, layout=layout, continuous_update=False)
        else:
            sliders[name] = widgets.FloatSlider(
                value=value, min=lo, max=hi, step=step, description=label, style=style,
                layout=layout, continuous_update=False, readout_format=".3g")

    def redraw(**values: float) -> None:
        moved = model.replace(**values)
        fig = figure(moved)
        display(fig)          # into the Output widget, replacing the last drawing
        plt.close(fig)        # and never a second time by the inline backend

    out = widgets.interactive_output(redraw, sliders)
    return widgets.VBox([*sliders.values(), out])
