"""Per-quarter records: one row of the output contract (:mod:`model.outputs`) per step.

Each declared output has one *measure* here: a function of the model and the finished
:class:`~model.quarter.Quarter` that returns the column's value for the quarter. The
recorder keeps model-level values only (not per-agent records: mesa-notes.md measured
DataCollector's agent reporters doubling step cost) and hands them back as columns.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .calendar import ordinal_to_label
from .firms import FIRM_LINE_INDEX
from .outputs import INT, OUTPUT_BY_NAME, OUTPUT_COLUMNS, check_contract
from .quarter import Quarter
from .regimes import ORIGINS
from .taxonomy import ALLIES, COUNTRIES, TIERS, UPSTREAM, gen_to_node_nm

Measure = Callable[[object, Quarter], float]


def pct(part: float, whole: float) -> float:
    """``100 * part / whole``, 0 when ``whole`` is not positive."""
    return 100.0 * part / whole if whole > 0 else 0.0


def self_sufficiency(m, q: Quarter) -> float:
    """China-located production's share of China's chip demand, % (F03's definition)."""
    c = q.chips
    made = c.domestic_by_tier.sum() + c.substituted_by_tier.sum() + c.located_by_tier.sum()
    return pct(made, q.demand.total_usd_bn)


def _located_growth(m) -> float:
    """Capacity-weighted growth the foreign fab groups chose for their China fabs, %/year."""
    capacity = sum(g.china_capacity_usd_bn for g, _, _ in m.located_groups)
    chosen = sum(g.china_growth_pct * g.china_capacity_usd_bn for g, _, _ in m.located_groups)
    return chosen / capacity if capacity > 0 else 0.0


def _tier(k: int) -> Measure:
    def measure(m, q: Quarter) -> float:
        c = q.chips
        made = c.domestic_by_tier[k] + c.substituted_by_tier[k] + c.located_by_tier[k]
        return pct(made, q.demand.by_tier_usd_bn[k])

    return measure


def _segment(seg: str) -> Measure:
    if seg in ("litho_equipment", "other_equipment"):
        return _tool_segment(seg)

    def measure(m, q: Quarter) -> float:
        bought = q.upstream[seg]
        return min(100.0, pct(bought["domestic"], bought["demand"]))

    return measure


def _tool_segment(seg: str) -> Measure:
    def measure(m, q: Quarter) -> float:
        litho_share = m.p["firm_finance.litho_share_of_tools_pct"] / 100.0
        total = q.money.foreign_tools_usd_bn + q.money.domestic_tools_usd_bn
        share = litho_share if seg == "litho_equipment" else 1 - litho_share
        return min(100.0, pct(m.tool_sales[FIRM_LINE_INDEX[seg]], total * share))

    return measure


def _foreign_revenue(country: str) -> Measure:
    i = ORIGINS.index(country)
    return lambda m, q: float(q.foreign_by_origin[i])


def _domestic_tools_share(m, q: Quarter) -> float:
    domestic = q.money.domestic_tools_usd_bn
    return pct(domestic, domestic + q.money.foreign_tools_usd_bn)


MEASURES: dict[str, Measure] = {
    "self_sufficiency_pct": self_sufficiency,
    "self_sufficiency_china_hq_pct": lambda m, q: pct(
        q.chips.domestic_by_tier.sum() + q.chips.substituted_by_tier.sum(), q.demand.total_usd_bn
    ),
    **{f"self_sufficiency_tier_{t}_pct": _tier(k) for k, t in enumerate(TIERS)},
    **{f"self_sufficiency_segment_{s}_pct": _segment(s) for s in UPSTREAM},
    "goal_gap_pp": lambda m, q: m.p["china.self_sufficiency_goal_pct"] - self_sufficiency(m, q),
    "china_best_node_nm": lambda m, q: float(gen_to_node_nm(m.china_best_gen)),
    "frontier_node_nm": lambda m, q: float(gen_to_node_nm(q.frontier_gen)),
    "node_gap_generations": lambda m, q: max(0.0, q.frontier_gen - m.china_best_gen),
    "domestic_equipment_share_pct": _domestic_tools_share,
    "domestic_tool_coverage_pct": lambda m, q: 100.0 * m.tool_coverage["other_equipment"],
    "china_demand_usd_bn": lambda m, q: float(q.demand.total_usd_bn),
    "fab_equipment_purchases_usd_bn": lambda m, q: float(
        q.money.domestic_tools_usd_bn + q.money.foreign_tools_usd_bn
    ),
    "china_located_foreign_output_usd_bn": lambda m, q: float(q.chips.located_by_tier.sum()),
    "foreign_fab_growth_pct": lambda m, q: _located_growth(m),
    "china_firm_cash_usd_bn": lambda m, q: float(
        np.maximum(m.firms.cash_usd_bn[: m.firms.n][m.firms.alive[: m.firms.n]], 0.0).sum()
    ),
    "unmet_demand_usd_bn": lambda m, q: float(q.chips.cleared.unmet.sum()),
    "unmet_substituted_usd_bn": lambda m, q: float(q.chips.unmet.substituted.sum()),
    "unmet_grey_imports_usd_bn": lambda m, q: float(q.chips.unmet.grey.sum()),
    "unmet_lost_sales_usd_bn": lambda m, q: float(q.chips.unmet.lost.sum()),
    **{f"foreign_revenue_from_china_usd_bn_{c}": _foreign_revenue(c) for c in COUNTRIES},
    **{
        f"ally_alignment_{a}": (lambda a: lambda m, q: float(m.allies[a].alignment))(a)
        for a in ALLIES
    },
    **{f"ally_defected_{a}": (lambda a: lambda m, q: int(m.allies[a].defected))(a) for a in ALLIES},
    "state_funding_usd_bn": lambda m, q: float(q.money.state_total_usd_bn),
    "state_funding_wasted_usd_bn": lambda m, q: float(q.wasted_usd_bn),
    "private_investment_usd_bn": lambda m, q: float(q.money.private_usd_bn),
    "firms_active": lambda m, q: int(m.firms.alive[: m.firms.n].sum()),
    "firms_entered": lambda m, q: int(q.entered),
    "firms_failed": lambda m, q: int(q.failed),
    "flagship_domestic_share_pct": lambda m, q: 100.0 * m.flagship.domestic_share,
    "flagship_foreign_sales_index": lambda m, q: float(m.flagship.foreign_sales_index),
    "talent_shortfall_pct": lambda m, q: 100.0 * q.money.talent_shortfall,
}

_missing = set(OUTPUT_COLUMNS) ^ set(MEASURES)
if _missing:  # caught at import, not mid-run
    raise ImportError(
        "model.records: outputs without a measure, or measures without an output: "
        f"{sorted(_missing)}"
    )
_ORDERED = tuple((name, MEASURES[name]) for name in OUTPUT_COLUMNS)


class Recorder:
    """Collects one row per quarter."""

    def __init__(self, model):
        self.model = model
        self.quarters: list[str] = []
        self.rows: dict[str, list] = {c: [] for c in OUTPUT_COLUMNS}

    def record(self, q: Quarter) -> None:
        """Append the row of the quarter ``q`` describes."""
        m = self.model
        self.quarters.append(ordinal_to_label(q.ordinal))
        rows = self.rows
        for name, measure in _ORDERED:
            rows[name].append(measure(m, q))

    def columns(self) -> dict[str, np.ndarray]:
        """The recorded quarters as columns (``quarter``, ``year`` and every output column).

        Raises:
            OutputContractError: if a column holds a non-finite value or one outside its
                contract (:mod:`model.outputs`), naming the column and the quarter.
        """
        out: dict[str, np.ndarray] = {
            "quarter": np.array(self.quarters, dtype=object),
            "year": np.array([int(label[:4]) for label in self.quarters], dtype=np.int32),
        }
        for c in OUTPUT_COLUMNS:
            check_contract(c, self.rows[c], self.quarters)
            out[c] = np.asarray(self.rows[c], dtype=OUTPUT_BY_NAME[c].dtype)
        return out


__all__ = ["INT", "MEASURES", "OUTPUT_COLUMNS", "Recorder", "pct", "self_sufficiency"]
