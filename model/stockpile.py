"""Stockpiling: Chinese fabs buy foreign tools ahead of export controls and draw on them after.

Buyers front-load purchases of the tools a rule will cover between its announcement and
its effective date (a control event's ``announced``), and, in proportion to how far they
anticipate (``controls.anticipation_quarters``), keep a precautionary stock while rounds of
rules keep coming. Tools in stock are foreign tools already paid for: when controls block
a fab's new purchases, the blocked part of its tool needs is served from the stock, which
is also lost to obsolescence over ``controls.stockpile_life_quarters``. Purchases for the
stock count in China's fab-equipment purchases and in the selling countries' China
revenue the quarter they are made (CLM70: "in addition to stockpiling equipment").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .calendar import quarter_ordinal
from .regimes import threshold_to_gen


@dataclass(frozen=True)
class Announcement:
    """A control rule known before it binds: buyers front-load the item in between."""

    announced_q: int
    effective_q: int
    item: str
    threshold_gen: float


def announcements(events) -> list[Announcement]:
    """The scenario's control events that are announced before they take effect."""
    out = []
    for ev in events:
        announced = getattr(ev, "announced", None)
        if ev.action == "control" and announced is not None and announced != ev.at:
            out.append(
                Announcement(
                    quarter_ordinal(announced),
                    quarter_ordinal(ev.at),
                    ev.item,
                    threshold_to_gen(ev.threshold_nm),
                )
            )
    return out


@dataclass
class ToolStockpile:
    """Foreign tools held by Chinese fabs, bought but not yet installed, by item (US$ bn).

    Attributes:
        stock: tools in stock.
        reference: recent quarterly foreign purchases (an exponential average), which
            sizes the stock buyers aim for.
    """

    items: tuple[str, ...]
    stock: dict[str, float] = field(default_factory=dict)
    reference: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        for item in self.items:
            self.stock.setdefault(item, 0.0)
            self.reference.setdefault(item, 0.0)

    def draw(self, item: str, amount: float) -> float:
        """Take up to ``amount`` from the stock; returns what was taken."""
        taken = min(self.stock[item], max(0.0, amount))
        self.stock[item] -= taken
        return taken


def stock_cover(stock: float, blocked_need: np.ndarray) -> float:
    """Share (0-1) of the blocked part of tool needs the stock can serve."""
    total = float(blocked_need.sum())
    if stock <= 0 or total <= 0:
        return 0.0
    return min(1.0, stock / total)


def target_quarters(model, item: str) -> float:
    """Quarters of recent purchases buyers want in stock this quarter for ``item``.

    Front-loading while a rule on the item is announced but not yet in force; a
    precautionary stock while rules on tools keep coming (a tool rule took effect within
    ``controls.expectation_memory_quarters``).
    """
    p = model.p
    q = model.quarter
    quarters = 0.0
    if any(a.item == item and a.announced_q <= q < a.effective_q for a in model.announcements):
        quarters += p["controls.frontload_quarters"]
    memory = p["controls.expectation_memory_quarters"]
    recent = any(
        r.effective_q <= q < r.effective_q + memory and r.target == "all"
        for r in model.regime.state.rules
        if r.item in model.regime_tool_items
    )
    if recent:
        quarters += p["controls.anticipation_quarters"]
    return quarters


def update_reference(pile: ToolStockpile, item: str, purchases: float, memory_q: float) -> None:
    """Move the reference purchase level toward this quarter's purchases."""
    pile.reference[item] += (purchases - pile.reference[item]) / memory_q


def buy_for_stock(pile: ToolStockpile, item: str, target_q: float, fill_share: float) -> float:
    """Purchases this quarter toward the target stock (never negative)."""
    gap = target_q * pile.reference[item] - pile.stock[item]
    amount = max(0.0, gap) * fill_share
    pile.stock[item] += amount
    return amount


def age(pile: ToolStockpile, life_quarters: float) -> None:
    """Tools in stock lose value as they wait (obsolescence, idle storage)."""
    if life_quarters <= 0:
        for item in pile.items:
            pile.stock[item] = 0.0
        return
    for item in pile.items:
        pile.stock[item] *= 1.0 - 1.0 / life_quarters
