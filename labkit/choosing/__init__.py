"""Choosing a design: the cost model of chapter 08, its plots and its sliders.

* :mod:`.cost` -- the model itself, pure arithmetic (``lk.CostModel``);
* :mod:`.plots` -- the cost breakdown and the break-even plot (matplotlib);
* :mod:`.explorer` -- ipywidgets sliders that redraw both plots.
"""

from __future__ import annotations

from .cost import CATEGORIES, DESIGNS, PRICE_SOURCES, BreakEven, CostModel, CostTable, Estimate

__all__ = ["CATEGORIES", "DESIGNS", "PRICE_SOURCES", "BreakEven", "CostModel", "CostTable",
           "Estimate"]
