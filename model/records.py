"""Per-quarter records: one row of the output contract (docs/outputs.md) per step.

The recorder keeps model-level values only (not per-agent records: mesa-notes.md measured
DataCollector's agent reporters doubling step cost) and hands them back as columns.
"""

from __future__ import annotations

import numpy as np

from .calendar import ordinal_to_label
from .regimes import ORIGINS
from .taxonomy import ALLIES, COUNTRIES, OUTPUT_COLUMNS, TIERS, UPSTREAM, gen_to_node_nm

TIER_COLUMNS = tuple(f"self_sufficiency_tier_{t}_pct" for t in TIERS)
_REVENUE_COLUMNS = tuple(
    (f"foreign_revenue_from_china_usd_bn_{c}", ORIGINS.index(c)) for c in COUNTRIES
)
_ALLY_COLUMNS = tuple((a, f"ally_alignment_{a}", f"ally_defected_{a}") for a in ALLIES)
_SEGMENT_COLUMNS = tuple((seg, f"self_sufficiency_segment_{seg}_pct") for seg in UPSTREAM)

INTEGER_COLUMNS = frozenset(
    {"firms_active", "firms_entered", "firms_failed", *(f"ally_defected_{a}" for a in ALLIES)}
)


def _pct(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole > 0 else 0.0


class Recorder:
    """Collects one row per quarter."""

    def __init__(self, model):
        self.model = model
        self.quarters: list[str] = []
        self.rows: dict[str, list] = {c: [] for c in OUTPUT_COLUMNS}

    def record(
        self,
        *,
        demand_total,
        demand_k,
        dom_k,
        located_k,
        unmet,
        upstream,
        domestic_tools,
        foreign_tools,
        foreign_by_origin,
        frontier,
        state_total,
        wasted,
        private,
        entered,
        failed,
        shortfall,
    ) -> None:
        """Append the row for the model's current quarter."""
        m = self.model
        row = self.rows
        self.quarters.append(ordinal_to_label(m.quarter))
        ss = _pct(dom_k.sum() + located_k.sum(), demand_total)
        row["self_sufficiency_pct"].append(ss)
        row["self_sufficiency_china_hq_pct"].append(_pct(dom_k.sum(), demand_total))
        for k, col in enumerate(TIER_COLUMNS):
            row[col].append(_pct(dom_k[k] + located_k[k], demand_k[k]))
        for seg, col in _SEGMENT_COLUMNS:
            if seg in ("litho_equipment", "other_equipment"):
                item_dom = m.tool_sales[_line(seg)]
                total = foreign_tools + domestic_tools
                value = _pct(
                    item_dom,
                    total
                    * (
                        m.p["firm_finance.litho_share_of_tools_pct"] / 100.0
                        if seg == "litho_equipment"
                        else 1 - m.p["firm_finance.litho_share_of_tools_pct"] / 100.0
                    ),
                )
            else:
                value = _pct(upstream[seg]["domestic"], upstream[seg]["demand"])
            row[col].append(min(100.0, value))
        row["goal_gap_pp"].append(70.0 - ss)
        row["china_best_node_nm"].append(float(gen_to_node_nm(m.china_best_gen)))
        row["frontier_node_nm"].append(float(gen_to_node_nm(frontier)))
        row["node_gap_generations"].append(max(0.0, frontier - m.china_best_gen))
        row["domestic_equipment_share_pct"].append(
            _pct(domestic_tools, domestic_tools + foreign_tools)
        )
        row["china_demand_usd_bn"].append(float(demand_total))
        row["unmet_demand_usd_bn"].append(float(unmet))
        for col, i in _REVENUE_COLUMNS:
            row[col].append(float(foreign_by_origin[i]))
        for a, alignment_col, defected_col in _ALLY_COLUMNS:
            row[alignment_col].append(float(m.allies[a].alignment))
            row[defected_col].append(int(m.allies[a].defected))
        row["state_funding_usd_bn"].append(float(state_total))
        row["state_funding_wasted_usd_bn"].append(float(wasted))
        row["private_investment_usd_bn"].append(float(private))
        f = m.firms
        row["firms_active"].append(int(f.alive[: f.n].sum()))
        row["firms_entered"].append(int(entered))
        row["firms_failed"].append(int(failed))
        row["flagship_domestic_share_pct"].append(100.0 * m.flagship.domestic_share)
        row["flagship_foreign_sales_index"].append(float(m.flagship.foreign_sales_index))
        row["talent_shortfall_pct"].append(100.0 * shortfall)

    def columns(self) -> dict[str, np.ndarray]:
        """The recorded quarters as columns (``quarter``, ``year`` and every output column)."""
        out: dict[str, np.ndarray] = {
            "quarter": np.array(self.quarters, dtype=object),
            "year": np.array([int(q[:4]) for q in self.quarters], dtype=np.int32),
        }
        for c in OUTPUT_COLUMNS:
            out[c] = np.asarray(
                self.rows[c], dtype=np.int64 if c in INTEGER_COLUMNS else np.float64
            )
        return out


def _line(seg: str) -> int:
    from .firms import FIRM_LINE_INDEX

    return FIRM_LINE_INDEX[seg]
