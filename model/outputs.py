"""The output contract: every column a run records, declared once.

Each :class:`Output` names a column with its unit, a short label, a definition, whether it
is a per-quarter flow or an end-of-quarter stock, and its dtype. The recorder
(:mod:`model.records`) records exactly these columns, the analysis labels its figures and
tables from them (:func:`analysis.stats.describe`), and the column section of
docs/outputs.md is generated from them (``python -m model.outputs``; a test keeps the file
in step). Adding a column means one entry here and its measure in :mod:`model.records`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from .taxonomy import ALLIES, COUNTRIES, TIERS, UPSTREAM

FLOW, STOCK = "flow", "stock"
FLOAT, INT = "float64", "int64"
INF = float("inf")
#: The values a column may take, by unit: its contract. The recorder refuses a run whose
#: outputs leave it (or are not finite), naming the column and the quarter.
UNIT_BOUNDS: dict[str, tuple[float, float]] = {
    "% of demand": (0.0, 100.0),
    "% of purchases": (0.0, 100.0),
    "% of tool purchases": (0.0, 100.0),
    "% of tool set": (0.0, 100.0),
    "% of workforce need": (0.0, 100.0),
    "pp": (-100.0, 100.0),
    "%/year": (-100.0, 100.0),
    "nm": (0.0, INF),
    "generations": (0.0, INF),
    "US$ bn": (0.0, INF),
    "0-1": (0.0, 1.0),
    "0/1": (0.0, 1.0),
    "firms": (0.0, INF),
    "index, start = 100": (0.0, INF),
}
#: Rounding allowed at a contract's bounds (shares computed as sums of parts).
CONTRACT_TOLERANCE = 1e-9
#: Identifier columns that come first in every run store (not recorded by the model).
IDENTIFIERS: tuple[tuple[str, str, str], ...] = (
    ("scenario", "string", "scenario `name`"),
    (
        "seed",
        "int",
        "replicate index *i* (0-based). The random stream is the *i*-th child of the batch's "
        "root `SeedSequence`, so replicate *i* shares its stream across scenarios (common "
        "random numbers)",
    ),
    ("sample", "int", "index of the parameter sample (0 when the run uses no sampled parameters)"),
    ("quarter", "string", "calendar quarter, e.g. `2021Q4`"),
    ("year", "int", "calendar year of `quarter`"),
)

_NICE = {
    "eda_ip": "EDA & IP",
    "litho_equipment": "Lithography equipment",
    "united_states": "United States",
    "south_korea": "South Korea",
    "eu": "EU",
}


def nice(token: str) -> str:
    """Return a readable name for a tier, segment, country or ally token."""
    return _NICE.get(token, token.replace("_", " ").capitalize())


@dataclass(frozen=True)
class Output:
    """One recorded column.

    Attributes:
        name: column name (units in the name: ``_pct``, ``_usd_bn``, ``_nm``).
        unit: unit as printed, per quarter for flows (which ``unit_per_quarter`` spells out).
        label: short human label for axes and table rows.
        definition: what it measures, with its source where the contract gives one.
        kind: ``flow`` (per quarter: sum four for a year) or ``stock`` (end of quarter).
        dtype: ``float64`` or ``int64``.
        section: the docs/outputs.md section it is listed under.
        family: for columns declared by token (one per tier, country, ...), the family's
            name with its placeholder, e.g. ``self_sufficiency_tier_<tier>_pct``.
    """

    name: str
    unit: str
    label: str
    definition: str
    kind: str
    dtype: str = FLOAT
    section: str = ""
    family: str | None = None

    @property
    def is_flow(self) -> bool:
        """True for per-quarter flows."""
        return self.kind == FLOW

    @property
    def bounds(self) -> tuple[float, float]:
        """The values this column may take (its unit's contract, :data:`UNIT_BOUNDS`)."""
        return UNIT_BOUNDS[self.unit]

    @property
    def unit_per_quarter(self) -> str:
        """The unit as stored: flows are per quarter."""
        return f"{self.unit} per quarter" if self.is_flow else self.unit


@dataclass(frozen=True)
class Family:
    """Columns declared by token: ``template`` with ``{token}``, one column per token.

    ``label`` and ``definition`` are formatted with ``nice`` (the readable token) and
    ``token``; ``doc`` is the definition docs/outputs.md shows for the whole family.
    """

    template: str
    placeholder: str
    tokens: tuple[str, ...]
    unit: str
    label: str
    definition: str
    doc: str
    kind: str = STOCK
    dtype: str = FLOAT

    def outputs(self, section: str) -> list[Output]:
        """One :class:`Output` per token."""
        family = self.template.format(token=f"<{self.placeholder}>")
        return [
            Output(
                self.template.format(token=t),
                self.unit,
                self.label.format(nice=nice(t), token=t),
                self.definition.format(nice=nice(t), lower=nice(t).lower(), token=t),
                self.kind,
                self.dtype,
                section,
                family,
            )
            for t in self.tokens
        ]


def _tokens(tokens) -> str:
    return ", ".join(f"`{t}`" for t in tokens)


SELF_SUFFICIENCY = "Self-sufficiency"
TECHNOLOGY = "Technology"
MARKETS = "Markets and policy"

_DECLARED: tuple[tuple[str, Output | Family], ...] = (
    (SELF_SUFFICIENCY, Output(
        "self_sufficiency_pct", "% of demand", "Self-sufficiency (China-located production)",
        "share of China's chip demand by value met by China-located production, whoever owns "
        "the fab (F03's definition, Nikkei Asia / IC Insights: 16% in 2021); foreign firms' "
        "fabs in China count",
        STOCK)),
    (SELF_SUFFICIENCY, Output(
        "self_sufficiency_china_hq_pct", "% of demand", "Self-sufficiency (Chinese-HQ firms)",
        "share of China's chip demand by value met by Chinese-headquartered firms only "
        "(IC Insights' narrower measure: 6.6% in 2021); F02's 'around 20 percent' is a looser "
        "measure than both",
        STOCK)),
    (SELF_SUFFICIENCY, Family(
        "self_sufficiency_tier_{token}_pct", "tier", TIERS, "% of demand", "Tier: {nice}",
        "self-sufficiency (China-located production) within the {lower} chip tier",
        "the same as `self_sufficiency_pct` within one chip tier: `leading` (logic < 10 nm), "
        "`advanced` (logic 10-22 nm), `mature` (logic, analog and discretes >= 28 nm), "
        "`memory` (DRAM and NAND), `compound` (SiC, GaN: 'third-generation')")),
    (SELF_SUFFICIENCY, Family(
        "self_sufficiency_segment_{token}_pct", "segment", UPSTREAM, "% of purchases",
        "Segment: {nice}",
        "share of China's purchases in the {nice} segment bought from Chinese-headquartered "
        "suppliers",
        "share of China's purchases of an upstream segment's output bought from "
        "Chinese-headquartered suppliers: `eda_ip` (design tools and core IP), `design` (chip "
        "design: share of chips bought that Chinese firms designed), `litho_equipment`, "
        "`other_equipment` (deposition, etch, metrology, other fab tools), `materials` "
        "(wafers, photomasks, gases, chemicals), `packaging` (assembly, test, packaging)")),
    (SELF_SUFFICIENCY, Output(
        "goal_gap_pp", "pp", "Gap to the 70% goal",
        "the goal (`china.self_sufficiency_goal_pct`, F01: Made in China 2025's 70%) minus "
        "`self_sufficiency_pct`, in percentage points",
        STOCK)),
    (TECHNOLOGY, Output(
        "china_best_node_nm", "nm", "China's best logic node",
        "most advanced logic node in volume production by a Chinese-headquartered foundry",
        STOCK)),
    (TECHNOLOGY, Output(
        "frontier_node_nm", "nm", "World frontier node",
        "world's most advanced logic node in volume production", STOCK)),
    (TECHNOLOGY, Output(
        "node_gap_generations", "generations", "Node gap",
        "node generations (x0.7 each) China's best node is behind the frontier", STOCK)),
    (TECHNOLOGY, Output(
        "domestic_equipment_share_pct", "% of tool purchases", "Domestic equipment share",
        "share of fab equipment bought in China (by value, lithography and other tools "
        "together) supplied by Chinese-headquartered tool makers",
        STOCK)),
    (TECHNOLOGY, Output(
        "domestic_tool_coverage_pct", "% of tool set", "Domestic tool coverage",
        "share by value of a fab's non-lithography tool set (deposition, etch, metrology, "
        "implant, ...) for which a Chinese maker has a product; the rest must be bought abroad "
        "or the fab goes without it (`technology.domestic_tool_coverage_pct`, docs/ODD.md 7.11)",
        STOCK)),
    (MARKETS, Output(
        "china_demand_usd_bn", "US$ bn", "China's chip demand", "China's chip demand by value",
        FLOW)),
    (MARKETS, Output(
        "fab_equipment_purchases_usd_bn", "US$ bn", "Fab equipment bought in China",
        "fab tools (lithography and deposition/etch/metrology and the rest) bought in China, "
        "from every origin, for Chinese and foreign-owned fabs and for stockpiles; the "
        "quantity SEMI reports as China's equipment spending (US$29.6 bn in 2021, 49.6 bn in "
        "2024)",
        FLOW)),
    (MARKETS, Output(
        "china_located_foreign_output_usd_bn", "US$ bn", "Foreign-owned fabs' output in China",
        "chips made in China by foreign-owned fabs (Samsung, SK Hynix, TSMC, ...) and sold "
        "in China; part of F03's China-located production, decided by the foreign fab "
        "groups (model.foreign_fabs)",
        FLOW)),
    (MARKETS, Output(
        "foreign_fab_growth_pct", "%/year", "Foreign fabs' China capacity growth",
        "growth the foreign fab groups chose for their China capacity, capacity-weighted, % a "
        "year (negative: divesting)",
        STOCK)),
    (MARKETS, Output(
        "china_firm_cash_usd_bn", "US$ bn", "Chinese firms' cash",
        "cash Chinese firms hold at quarter end (money raised or earned and not yet spent); "
        "what the economics must keep small next to a year's investment",
        STOCK)),
    (MARKETS, Output(
        "unmet_demand_usd_bn", "US$ bn", "Unmet demand",
        "demand neither foreign nor domestic suppliers could serve because controls blocked "
        "the foreign supply and no adequate domestic supply existed",
        FLOW)),
    (MARKETS, Output(
        "unmet_substituted_usd_bn", "US$ bn", "Unmet demand: substituted",
        "the part of unmet demand met by domestic chips of an older logic node from capacity "
        "left unsold (`sourcing.substitution_max_pct` at most)",
        FLOW)),
    (MARKETS, Output(
        "unmet_grey_imports_usd_bn", "US$ bn", "Unmet demand: grey imports",
        "the part of unmet demand bought through third countries (`controls.grey_import_pct` "
        "of what substitution leaves), from third-country intermediaries (not counted as the "
        "blocked origins' firms' China revenue)",
        FLOW)),
    (MARKETS, Output(
        "unmet_lost_sales_usd_bn", "US$ bn", "Unmet demand: lost",
        "the rest of unmet demand: chips not bought, device sales lost (buyers' markets "
        "shrink with it)",
        FLOW)),
    (MARKETS, Family(
        "foreign_revenue_from_china_usd_bn_{token}", "country", COUNTRIES, "US$ bn", "{nice}",
        "revenue {nice}-headquartered firms earn from Chinese buyers",
        "revenue foreign-headquartered firms earn from Chinese buyers (chips, tools, "
        f"materials, EDA/IP, packaging), by home country: {_tokens(COUNTRIES)}",
        FLOW)),
    (MARKETS, Family(
        "ally_alignment_{token}", "ally", ALLIES, "0-1", "{nice}",
        "how far {nice}'s export controls follow the US regime (1 = full)",
        "how far an ally's export controls follow the US regime (1 = full alignment): "
        f"{_tokens(ALLIES)}")),
    (MARKETS, Family(
        "ally_defected_{token}", "ally", ALLIES, "0/1", "{nice}",
        "1 when {nice} has left an alignment it had joined: its alignment reached "
        "`allies.join_threshold` after the US asked, and is now below "
        "`allies.defection_threshold`",
        "1 when the ally has left an alignment it had joined: its alignment reached "
        "`allies.join_threshold` (0.7) after the US asked, and is now below "
        "`allies.defection_threshold` (0.5)",
        dtype=INT)),
    (MARKETS, Output(
        "state_funding_usd_bn", "US$ bn", "State funding",
        "Chinese state money (central subsidies, Big Fund, local government funds) paid to "
        "chip firms",
        FLOW)),
    (MARKETS, Output(
        "state_funding_wasted_usd_bn", "US$ bn", "State funding wasted",
        "part of state funding lost to failed projects and fraud (F19, F32): lost by "
        "programmes before reaching firms, paid to frauds, or paid in the two years before a "
        "firm failed",
        FLOW)),
    (MARKETS, Output(
        "private_investment_usd_bn", "US$ bn", "Private investment",
        "venture and listed-market capital into Chinese chip firms (F11, F21)", FLOW)),
    (MARKETS, Output(
        "firms_active", "firms", "Chinese firms active",
        "Chinese firms alive at quarter end, champions and swarm, in model firms (one swarm "
        "firm stands for `china_firms.real_firms_per_agent` registered firms)",
        STOCK, INT)),
    (MARKETS, Output(
        "firms_entered", "firms", "Firm entries",
        "swarm firms (model firms) that entered in the quarter", FLOW, INT)),
    (MARKETS, Output(
        "firms_failed", "firms", "Firm exits",
        "swarm firms (model firms) that exited in the quarter (bankruptcy or exposed fraud)",
        FLOW, INT)),
    (MARKETS, Output(
        "flagship_domestic_share_pct", "% of purchases", "Flagship buyer's domestic share",
        "share by value of the Huawei-like flagship buyer's chip purchases supplied by "
        "Chinese-headquartered fabs (F17's Mate 30 / Mate 40E comparison)",
        STOCK)),
    (MARKETS, Output(
        "flagship_foreign_sales_index", "index, start = 100", "Flagship buyer's foreign sales",
        "the flagship's device sales abroad; falls when it cannot get chips (F18: world no. 1 "
        "in June 2020, 9th by October 2021)",
        STOCK)),
    (MARKETS, Output(
        "talent_shortfall_pct", "% of workforce need", "Talent shortfall",
        "share of the chip workforce the industry needs but cannot staff (F15)", STOCK)),
)  # fmt: skip


def _expand() -> tuple[Output, ...]:
    out: list[Output] = []
    for section, item in _DECLARED:
        if isinstance(item, Family):
            out += item.outputs(section)
        else:
            out.append(Output(**{**item.__dict__, "section": section}))
    return tuple(out)


#: Every recorded column, in contract order.
OUTPUTS: tuple[Output, ...] = _expand()
OUTPUT_BY_NAME: dict[str, Output] = {o.name: o for o in OUTPUTS}
#: Column names in contract order (identifiers not included).
OUTPUT_COLUMNS: tuple[str, ...] = tuple(o.name for o in OUTPUTS)
INTEGER_COLUMNS = frozenset(o.name for o in OUTPUTS if o.dtype == INT)
FLOW_COLUMNS = frozenset(o.name for o in OUTPUTS if o.is_flow)


class OutputContractError(ValueError):
    """A run produced a value its output contract does not allow (non-finite or out of range)."""


def check_contract(name: str, values, quarters) -> None:
    """Refuse ``values`` of column ``name`` if any is non-finite or outside its bounds.

    Raises:
        OutputContractError: naming the column, the first offending quarter and value, and
            the allowed range.
    """
    import numpy as np

    out = OUTPUT_BY_NAME[name]
    low, high = out.bounds
    arr = np.asarray(values, dtype=float)
    bad = ~np.isfinite(arr) | (arr < low - CONTRACT_TOLERANCE) | (arr > high + CONTRACT_TOLERANCE)
    if bad.any():
        i = int(np.argmax(bad))
        raise OutputContractError(
            f"output '{name}' is {float(arr[i])!r} in {quarters[i]}: outside its contract "
            f"[{low:g}, {high:g}] ({out.unit}); the parameters drove the model where its "
            "equations no longer hold (check the values set in the scenario and --set)"
        )


def markdown() -> str:
    """The column tables of docs/outputs.md, generated from the declarations."""
    lines = ["Identifiers:", "", "| column | type | definition |", "|---|---|---|"]
    lines += [f"| `{name}` | {kind} | {text} |" for name, kind, text in IDENTIFIERS]
    for section in (SELF_SUFFICIENCY, TECHNOLOGY, MARKETS):
        lines += [
            "",
            f"{section}:",
            "",
            "| column | unit | allowed | kind | definition |",
            "|---|---|---|---|---|",
        ]
        for _, item in (d for d in _DECLARED if d[0] == section):
            if isinstance(item, Family):
                name = item.template.format(token=f"<{item.placeholder}>")
                unit, kind, text = item.unit, item.kind, item.doc
            else:
                name, unit, kind, text = item.name, item.unit, item.kind, item.definition
            low, high = UNIT_BOUNDS[unit]
            allowed = f"{low:g} to {high:g}".replace("inf", "∞")
            unit = f"{unit} / quarter" if kind == FLOW else unit
            lines.append(f"| `{name}` | {unit} | {allowed} | {kind} | {text} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
