"""Foreign-owned fabs in China: each foreign fab group decides to expand, hold or divest.

Samsung's Xi'an NAND, SK Hynix's Wuxi DRAM and Dalian NAND, TSMC Nanjing and Shanghai,
UMC HeJian, Intel Dalian and Texas Instruments Chengdu made about 60% of China-located
chip output in 2021 (F03 counts them). Their owners decide each quarter how their China
capacity grows from what they see (docs/ODD.md section 7.9):

* **the market they serve** - the share of China's demand in their tier still bought from
  foreign suppliers (buyers that switch to Chinese chips shrink it) and how much of their
  China capacity that demand keeps busy;
* **controls that reach them** - the share of the fab tools they need that US and allied
  rules block, less the licences their fabs hold (validated end-user status);
* **Chinese countermeasures** - blocking rules and the Anti-Foreign Sanctions Law raise
  the compliance cost and legal risk of staying (F22);
* **their home government's pressure** - the US presses its allies (F24), and a firm
  answers it as far as its government is aligned with the US, once the pressure goes
  beyond what entity-targeted rules brought (Samsung, SK Hynix and TSMC expanded their
  China fabs through 2021 and held them from 2022).

The four are summed into one *drag*; a group expands at its base rate times ``1 - drag``,
holds at ``drag = 1`` and divests above it. The functions here are pure; the
:class:`~model.firms.ForeignFirmGroup` agents call them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LocatedSignals:
    """What one foreign fab group sees this quarter, each a 0-1 share or index.

    Attributes:
        foreign_take: share of China's demand in the group's tier bought from foreign
            suppliers (including China-located foreign fabs).
        utilisation: share of the group's China capacity that foreign purchases keep busy.
        tools_blocked: share of the fab tools the group needs blocked to its China fabs,
            after its licences.
        countermeasure_level: China's countermeasure level, 0-1 (F22).
        home_pressure: US pressure on allies times the home government's alignment (the
            US itself counts as fully aligned), beyond what firms tolerate
            (``foreign.located_home_pressure_tolerance``).
    """

    foreign_take: float
    utilisation: float
    tools_blocked: float
    countermeasure_level: float
    home_pressure: float


def located_drag(s: LocatedSignals, weights: dict) -> float:
    """Sum of what holds a foreign group back from expanding in China (0 = nothing).

    Args:
        s: the group's signals this quarter.
        weights: ``foreign.located_drag_weights`` (one weight per signal; see
            parameters.yaml for each one's source).
    """
    return (
        weights["lost_market"] * (1.0 - s.foreign_take)
        + weights["idle_capacity"] * (1.0 - s.utilisation)
        + weights["controls"] * s.tools_blocked
        + weights["countermeasures"] * s.countermeasure_level
        + weights["home_pressure"] * s.home_pressure
    )


def located_growth_pct(base_pct: float, drag: float, divest_pct: float, divest_max_pct: float):
    """Annual growth of a group's China capacity, %: expand, hold or divest.

    Below ``drag = 1`` the group expands at ``base_pct * (1 - drag)``; above it, it sells
    or closes capacity at ``divest_pct`` per unit of drag beyond 1, at most
    ``divest_max_pct`` a year.
    """
    if drag <= 1.0:
        return base_pct * (1.0 - drag)
    return -min(divest_max_pct, divest_pct * (drag - 1.0))


def quarterly_rate(annual_pct: float, quarters_per_year: int) -> float:
    """The quarterly growth rate that compounds to ``annual_pct`` a year."""
    return (1.0 + annual_pct / 100.0) ** (1.0 / quarters_per_year) - 1.0
