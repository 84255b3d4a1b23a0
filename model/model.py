"""The decoupling model: one quarter of China's chip economy under export controls per step.

:class:`DecouplingModel` wires the agents (Chinese firms, buyers, foreign firm groups,
governments, the export-control regime) and the mechanisms (``market``, ``technology``,
``finance``, ``demography``) together, applies the scenario's dated events and records one
row of the output contract (docs/outputs.md) per quarter. docs/ODD.md describes it in the
ODD protocol.
"""

from __future__ import annotations

import math

import mesa
import numpy as np

from . import demography, finance, technology
from .buyers import Buyer
from .calendar import ordinal_to_label, quarter_ordinal, quarter_year_float
from .events import apply_event
from .firms import (
    COMPOUND,
    FIRM_LINE_INDEX,
    FIRM_LINES,
    FOUNDRY,
    MEMORY,
    VINTAGE_ADVANCED,
    VINTAGE_BASE,
    VINTAGE_LEADING,
    Firm,
    FirmPopulation,
    ForeignFirmGroup,
    SwarmCohort,
)
from .governments import AllyGovernment, ChinaGovernment, USGovernment
from .market import clear, logistic, tier_shares, world_market_usd_bn_per_year
from .parameters import group
from .records import Recorder
from .regimes import ITEM_INDEX, ORIGINS, ControlRule, ExportControlRegime, compliance_vector
from .scenario import Scenario
from .taxonomy import (
    ADVANCED_MIN_GEN,
    ALLIES,
    COUNTRIES,
    LEADING_MIN_GEN,
    TIERS,
    gen_to_node_nm,
)

#: World market value of upstream items relative to chip sales (for allies' exposure).
WORLD_UPSTREAM_RATIO = {
    "other_equipment": 0.13,
    "litho_equipment": 0.04,
    "eda_ip": 0.02,
    "materials": 0.11,
}
CHIP_ITEMS = tuple(f"chips_{t}" for t in TIERS)
TIER_VINTAGE = {"leading": VINTAGE_LEADING, "advanced": VINTAGE_ADVANCED, "mature": VINTAGE_BASE}


class DecouplingModel(mesa.Model):
    """China's chip self-sufficiency under US, allied and Chinese policies, quarter by quarter.

    Args:
        scenario: a resolved :class:`~model.scenario.Scenario`.
        rng: seed or ``numpy.random.SeedSequence``; all randomness comes from it.
        parameters: resolved parameters; by default the scenario's overrides on the defaults.
    """

    def __init__(self, scenario: Scenario, rng=None, parameters: dict | None = None):
        super().__init__(rng=rng)
        self.spec = scenario
        self.p = dict(parameters) if parameters is not None else scenario.resolved_parameters()
        p = self.p
        self.start_q = quarter_ordinal(scenario.start)
        self.end_q = quarter_ordinal(scenario.end)
        self.quarter = self.start_q
        self.year_float = quarter_year_float(scenario.start)
        self.origins = ORIGINS
        self.event_log: list[str] = []
        #: Swarm cohorts still in the market, by cohort index; entry quarter of every cohort.
        self.swarm_cohorts: dict[int, SwarmCohort] = {}
        self.swarm_cohorts_created: list[int] = []
        self.recorder = Recorder(self)

        # Foreign supply structure (supply-chain-structure.md), China's own share excluded.
        self.foreign_share = {}
        for item in CHIP_ITEMS + (
            "eda_ip",
            "litho_equipment",
            "other_equipment",
            "materials",
            "packaging",
        ):
            shares = p[f"foreign.supply_share_pct.{item}"]
            vec = np.array([float(shares.get(o, 0.0)) for o in ORIGINS])
            self.foreign_share[item] = vec / vec.sum()
        tech = p["foreign.us_technology_pct"]
        self.us_technology = np.array([float(tech.get(o, 0.0)) / 100.0 for o in ORIGINS])
        self.us_technology.flags.writeable = False  # replaced, never edited: see regimes._array_key
        self.fabs_in_china = np.zeros((len(ORIGINS), len(TIERS)))
        for country, by_tier in group(p, "foreign.fabs_in_china_usd_bn_per_quarter_2014").items():
            for tier, value in by_tier.items():
                self.fabs_in_china[ORIGINS.index(country), TIERS.index(tier)] = value
        self.foreign_groups = {
            (item, o): ForeignFirmGroup(self, o, item, float(self.foreign_share[item][i]))
            for item in self.foreign_share
            for i, o in enumerate(ORIGINS)
            if o in COUNTRIES and self.foreign_share[item][i] > 0
        }
        self._group_origins = [
            (g, item, ORIGINS.index(o)) for (item, o), g in self.foreign_groups.items()
        ]

        # Governments and the regime.
        self.regime = ExportControlRegime(self, "us")
        self.us = USGovernment(self)
        self.china = ChinaGovernment(self)
        self.allies = {
            a: AllyGovernment(
                self,
                a,
                float(p["allies.initial_alignment"][a]),
                float(p["allies.opinion_us_ties_pct"][a]),
                float(p["allies.security_dependence"][a]),
            )
            for a in ALLIES
        }
        self.compliance = compliance_vector({a: g.alignment for a, g in self.allies.items()})
        self.control_pressure_index = 0.0
        self.talent_shortfall = 0.0
        self.china.talent_supply_k = p["china.talent_workforce_k_2019"] / (
            1 + p["china.talent_supply_growth_pct_per_year"] / 100.0
        ) ** (2019.5 - self.year_float)

        # Buyers.
        self.buyers = {
            name: Buyer(self, name, spec) for name, spec in group(p, "sourcing.buyers").items()
        }
        self.flagship = self.buyers["flagship"]

        # Chinese firms: champions now or when they enter, then the swarm.
        self.firms = FirmPopulation(4096)
        self.champions: dict[str, Firm] = {}
        #: Champions listed by an event before they entered; listed on entry.
        self.pending_listings: set[str] = set()
        self._pending_champions = []
        for name, spec in group(p, "china_firms.champions").items():
            if quarter_ordinal(spec["enters"]) <= self.start_q:
                self._add_champion(name, spec)
            else:
                self._pending_champions.append((quarter_ordinal(spec["enters"]), name, spec))
        self.line_best = technology.line_best_gen(self.firms)
        self._fill_missing_line_best()
        swarm_n = int(
            round(p["china_firms.registered_firms_2014"] / p["china_firms.real_firms_per_agent"])
        )
        demography.add_swarm(
            self,
            swarm_n,
            group(p, "china_firms.swarm_capacity_usd_bn_per_quarter_2014"),
            p["china_firms.fraud_pct_of_entrants"] / 100.0,
        )
        self.money_per_firm_reference = 1.0 / swarm_n
        self.line_best = technology.line_best_gen(self.firms)
        self._fill_missing_line_best()
        self.line_supply = np.zeros(len(FIRM_LINES))
        self.tool_sales = np.zeros(len(FIRM_LINES))
        self.demand_shock = 0.0
        self.china_best_gen = self._china_best_gen()
        self.ledger: dict[tuple[str, bool, str], float] = {}

        # Events: those dated before the start are applied now, in order.
        self._events: dict[int, list] = {}
        for ev in scenario.events:
            q = quarter_ordinal(ev.at)
            if q < self.start_q:
                apply_event(self, ev)
            else:
                self._events.setdefault(q, []).append(ev)

    # -- set-up helpers -------------------------------------------------------------------
    def _add_champion(self, name: str, spec: dict) -> None:
        row = self.firms.add(
            FIRM_LINE_INDEX[spec["line"]],
            spec["capacity"],
            spec["gen"],
            spec["backing"],
            self.quarter,
            champion=True,
        )[0]
        self.champions[name] = Firm(self, int(self.firms.ids[row]), name=name)
        if name in self.pending_listings:
            self.champions[name].entity_listed = True

    def _fill_missing_line_best(self) -> None:
        frontier = technology.line_frontiers(self.p, self.year_float)
        missing = self.line_best <= -10.0
        self.line_best[missing] = frontier[missing] - 4.0

    def _china_best_gen(self) -> float:
        f = self.firms
        n = f.n
        m = f.alive[:n] & (f.line[:n] == FOUNDRY) & (f.total_capacity() > 0) & ~f.fraud[:n]
        return float(f.gen[:n][m].max()) if m.any() else -5.0

    # -- used by events and governments ---------------------------------------------------
    def add_control(
        self,
        item,
        target,
        threshold_gen,
        fdp=False,
        coverage=1.0,
        licence=0.0,
        enforced_by=(),
        label="",
        effective_q=None,
    ):
        """Add a rule to the regime (effective now unless ``effective_q`` is given)."""
        self.regime.add_rule(
            ControlRule(
                item=ITEM_INDEX[item],
                target=target,
                threshold_gen=threshold_gen,
                coverage=coverage,
                licence=licence,
                foreign_direct_product=fdp,
                enforced_by=frozenset(enforced_by),
                effective_q=self.quarter if effective_q is None else effective_q,
                label=label,
            )
        )
        if target == "all":
            # China answers country-wide rules, not each listing (F22).
            self.china.countermeasure_level = min(
                1.0, self.china.countermeasure_level + self.p["countermeasures.response_to_us_rule"]
            )

    def log_event(self, text: str) -> None:
        self.event_log.append(f"{ordinal_to_label(self.quarter)}: {text}")

    # -- the quarter ----------------------------------------------------------------------
    def step(self) -> None:
        """Advance one quarter."""
        p = self.p
        self.quarter = self.start_q + self.steps - 1
        self.year_float = quarter_year_float(ordinal_to_label(self.quarter))
        for q, name, spec in [c for c in self._pending_champions if c[0] == self.quarter]:
            self._add_champion(name, spec)
        for ev in self._events.get(self.quarter, ()):
            apply_event(self, ev)

        self.compliance = compliance_vector({a: g.alignment for a, g in self.allies.items()})
        self.control_pressure_index = min(3.0, self.regime.intensity(self.quarter) / 6.0)
        self.line_best = technology.line_best_gen(self.firms)
        self._fill_missing_line_best()
        self.china_best_gen = self._china_best_gen()
        frontier = technology.frontier_gen(p, self.year_float)

        # Demand (mechanism 1).
        self.demand_shock = p["demand.shock_persistence"] * self.demand_shock + self.rng.normal(
            0.0, p["demand.quarterly_shock_sd_pct"] / 100.0
        )
        world_q = world_market_usd_bn_per_year(p, self.year_float) / 4.0
        demand_total = (
            world_q * p["demand.china_share_of_world_pct"] / 100.0 * math.exp(self.demand_shock)
        )
        shares = tier_shares(p, self.year_float)
        demand_k = demand_total * shares

        # Domestic (Chinese-HQ) supply by line and vintage, and by tier for chips.
        f = self.firms
        n = f.n
        live = f.alive[:n] & ~f.fraud[:n]
        line = f.line[:n]
        cap = f.cap[:n]
        cap_total = f.total_capacity()
        by_line = self._capacity_by_line(live)
        listed_by_line = self._capacity_by_line(live & f.listed[:n])
        self.line_supply = by_line.sum(axis=1)
        supply_k = np.array(
            [*by_line[FOUNDRY], self.line_supply[MEMORY], self.line_supply[COMPOUND]]
        )
        listed_k = np.array(
            [*listed_by_line[FOUNDRY], listed_by_line[MEMORY].sum(), listed_by_line[COMPOUND].sum()]
        )
        listed_cap_share = np.divide(
            listed_k, supply_k, out=np.zeros_like(supply_k), where=supply_k > 0
        )
        best = self.line_best
        dom_gen = np.array(
            [
                self.china_best_gen,
                min(self.china_best_gen, LEADING_MIN_GEN),
                min(self.china_best_gen, ADVANCED_MIN_GEN),
                best[MEMORY],
                best[COMPOUND],
            ]
        )
        ref_gen = np.array(
            [
                frontier,
                LEADING_MIN_GEN,
                ADVANCED_MIN_GEN,
                frontier,
                technology.line_frontiers(p, self.year_float)[COMPOUND],
            ]
        )
        # Inputs needed to run production (EDA, materials): without them output is capped.
        output_factor = np.ones(len(TIERS))
        for item, line_idx, tolerance in (("materials", FIRM_LINE_INDEX["materials"], 2.0),):
            adequate = (best[line_idx] + tolerance >= dom_gen).astype(float)
            for flag in (False, True):
                open_ = self._open(item, flag, dom_gen)
                weight = listed_cap_share if flag else 1.0 - listed_cap_share
                output_factor = np.minimum(
                    output_factor, np.where(weight > 0, open_ + (1 - open_) * adequate, 1.0)
                )
        dom_supply_k = supply_k * output_factor

        # Buyers' sourcing choice (mechanism 2).
        buyers = list(self.buyers.values())
        weight = np.array([b.demand_share * b.market_scale for b in buyers])[:, None] * np.array(
            [b.tier_weights for b in buyers]
        )
        demand_bk = demand_k[None, :] * weight / weight.sum(axis=0, keepdims=True)
        gap = np.maximum(0.0, ref_gen - dom_gen)
        bias = np.array([p["sourcing.domestic_bias"][t] for t in TIERS])
        pressure = (
            np.array([b.state_linked for b in buyers])[:, None] * self.china.procurement_preference
        )
        security = np.array([b.security for b in buyers])[:, None]
        want = logistic(
            bias[None, :]
            - p["technology.ramp_quality_gap_cost"] * gap[None, :]
            + pressure
            + security
        )
        want = np.where(supply_k[None, :] > 0, want, 0.0)
        listed_b = np.array([b.entity_listed for b in buyers])
        open_bk = np.zeros_like(demand_bk)
        blocked_origin = {}
        for flag in (False, True):
            rows = listed_b == flag
            if not rows.any():
                continue
            chips_blocked = self.regime.blocked_items(
                CHIP_ITEMS, flag, frontier, self.quarter, self.compliance, self.us_technology
            )
            for k, item in enumerate(CHIP_ITEMS):
                blk = chips_blocked[k]
                blocked_origin[(item, flag)] = blk
                open_bk[rows, k] = ((1.0 - blk) * self.foreign_share[item]).sum()
        cleared = clear(demand_bk, want, open_bk, dom_supply_k)

        # China-located foreign fabs serve part of the foreign purchases (F03 counts them).
        foreign_k = cleared.foreign.sum(axis=0)
        located_capacity = self.fabs_in_china.sum(axis=0)
        located_k = np.minimum(located_capacity, foreign_k)
        dom_k = cleared.domestic.sum(axis=0)

        # Foreign revenue by origin, and what US firms lose to controls (F26).
        foreign_by_origin = np.zeros(len(ORIGINS))
        us = ORIGINS.index("united_states")
        lost_us = 0.0
        self.ledger = {}
        item_revenue = {item: np.zeros(len(ORIGINS)) for item in self.foreign_share}
        for flag in (False, True):
            rows = listed_b == flag
            if not rows.any():
                continue
            for k, item in enumerate(CHIP_ITEMS):
                blk = blocked_origin[(item, flag)]
                open_o = (1.0 - blk) * self.foreign_share[item]
                tot = open_o.sum()
                bought = cleared.foreign[rows, k].sum()
                delivered = bought * open_o / tot if tot > 0 else np.zeros(len(ORIGINS))
                foreign_by_origin += delivered
                item_revenue[item] += delivered
                for o, value in zip(ORIGINS, delivered):
                    self.ledger[(item, flag, o)] = float(value)
                wanted_foreign = (demand_bk[rows, k] * (1 - want[rows, k])).sum()
                lost_us += wanted_foreign * self.foreign_share[item][us] * blk[us]

        # Upstream purchases (segments): EDA/IP, materials, packaging, design.
        upstream = {}
        # Industry-wide supply-security concern, half-weighted for upstream purchases.
        # np.average's own arithmetic (multiply, sum, divide), without its Python overhead.
        shares_b = np.array([b.demand_share for b in buyers])
        mean_security = 0.5 * float(
            np.multiply(np.array([b.security for b in buyers]), shares_b).sum() / shares_b.sum()
        )
        design_rows = live & (line == FIRM_LINE_INDEX["design"])
        design_cap = cap[design_rows].sum()
        listed_design_share = _share(cap[design_rows & f.listed[:n]].sum(), design_cap)
        # Upstream demand by tier: EDA at the node designed for, materials at the node made,
        # packaging a few generations behind the chip (it is less node-bound).
        located_by_tier = dom_k + located_k
        seg_specs = {
            "eda_ip": (
                demand_k * p["demand.upstream_value_share_pct.eda_ip"] / 100.0,
                ref_gen,
                listed_design_share,
                True,
            ),
            "materials": (
                located_by_tier * p["demand.upstream_value_share_pct.materials"] / 100.0,
                dom_gen - 2.0,
                float(listed_cap_share.mean()),
                True,
            ),
            "packaging": (
                demand_k * p["demand.upstream_value_share_pct.packaging"] / 100.0,
                ref_gen - 3.0,
                0.0,
                False,
            ),
        }
        for seg, (seg_demand, need_gen, listed_share, controllable) in seg_specs.items():
            upstream[seg] = self._upstream(
                seg, seg_demand, need_gen, listed_share, controllable, mean_security
            )
            item_revenue[seg] += upstream[seg]["by_origin"]
            if seg != "packaging":
                foreign_by_origin += upstream[seg]["by_origin"]
        # Design: Chinese design houses need a foundry; a listed one loses foreign foundries
        # under a foreign direct product rule and must find a domestic one (F18).
        # Design houses also need EDA tools at the node they design for.
        listed_foundry_open = float(self._open("chips_leading", True, frontier)[0])
        design_gen_rows = f.gen[:n]
        eda_adequate = best[FIRM_LINE_INDEX["eda_ip"]] + 1.0 >= design_gen_rows
        eda_access = np.ones(n)
        for flag in (False, True):
            rows_f = design_rows & (f.listed[:n] == flag)
            if rows_f.any():
                open_eda = self._open("eda_ip", flag, design_gen_rows[rows_f])
                eda_access[rows_f] = open_eda + (1 - open_eda) * eda_adequate[rows_f]
        fallback = p["sourcing.design_fallback_pct"] / 100.0
        eda_access = eda_access + (1 - eda_access) * fallback
        access = (
            np.where(
                f.listed[:n],
                listed_foundry_open
                + (1 - listed_foundry_open) * (self.china_best_gen >= f.gen[:n] - 1.0),
                1.0,
            )
            * eda_access
        )
        design_supply = float((cap_total[design_rows] * access[design_rows]).sum())
        design_gap = max(0.0, frontier - 1.0 - best[FIRM_LINE_INDEX["design"]])
        design_want = float(
            logistic(
                p["sourcing.domestic_bias"]["design"]
                - p["technology.ramp_quality_gap_cost"] * design_gap
                + 0.5 * self.china.procurement_preference
                + mean_security
            )
        )
        design_sold = min(design_supply, design_want * demand_total)
        upstream["design"] = {
            "domestic": design_sold,
            "demand": demand_total,
            "supply": design_supply,
        }

        # Firms' revenue: domestic sales pro rata to capacity, plus exports of what is left,
        # up to a line's export ratio (exports per US$ of domestic sales).
        export_ratio = p["firm_finance.export_ratio"]
        sold_frac_k = np.where(supply_k > 0, dom_k / np.where(supply_k > 0, supply_k, 1.0), 0.0)

        def with_exports(s: float, ratio: float) -> float:
            return min(1.0, s * (1.0 + ratio))

        # Share of each line's capacity (by vintage) that is sold, at home or abroad.
        sold = np.zeros((len(FIRM_LINES), 3))
        for k, col in enumerate((VINTAGE_LEADING, VINTAGE_ADVANCED, VINTAGE_BASE)):
            sold[FOUNDRY, col] = with_exports(sold_frac_k[k], export_ratio["foundry"])
        sold[MEMORY, :] = with_exports(sold_frac_k[3], export_ratio["memory"])
        sold[COMPOUND, :] = with_exports(sold_frac_k[4], export_ratio["compound"])
        for seg in ("eda_ip", "materials", "packaging", "design"):
            li = FIRM_LINE_INDEX[seg]
            supply = self.line_supply[li]
            s = min(1.0, upstream[seg]["domestic"] / supply) if supply > 0 else 0.0
            sold[li, :] = with_exports(s, export_ratio.get(seg, 0.0))
        for seg in ("litho_equipment", "other_equipment"):
            li = FIRM_LINE_INDEX[seg]
            supply = self.line_supply[li]
            sold[li, :] = min(1.0, self.tool_sales[li] / supply) if supply > 0 else 0.0
        sold_by_firm = sold[line]
        revenue = np.where(
            live,
            cap[:, 0] * sold_by_firm[:, 0]
            + cap[:, 1] * sold_by_firm[:, 1]
            + cap[:, 2] * sold_by_firm[:, 2],
            0.0,
        )
        f.revenue_usd_bn[:n] = revenue

        # Money, tools and capacity (mechanism 5).
        state_total, state_lost, targeted = self.china.budget()
        state_money, state_rd = finance.distribute_state_money(
            self, state_total - state_lost, targeted
        )
        wasted = state_lost + float(state_money[f.fraud[:n]].sum())
        private_total = finance.private_money(self)
        # Investors follow sales (F21: STAR listings of firms with revenue), not capacity.
        private_w = np.where(
            live,
            revenue
            + p["firm_finance.minimum_scale_usd_bn"] * p["china_firms.real_firms_per_agent"],
            0.0,
        )
        private = finance.allocate(private_total, private_w)
        # Design houses hire from a wider software pool; F15's gap is about fabs and tools.
        non_design = self.line_supply.sum() - self.line_supply[FIRM_LINE_INDEX["design"]]
        talent_need = (
            p["china.talent_need_k_per_usd_bn_capacity"]
            * 4.0
            * (non_design + self.fabs_in_china.sum())
        )
        shortfall = (
            max(0.0, 1.0 - self.china.talent_supply_k / talent_need) if talent_need > 0 else 0.0
        )
        self.talent_shortfall = shortfall
        reference = 1.0 - p["china.talent_reference_shortfall_pct"] / 100.0
        talent_factor = ((1.0 - shortfall) / reference) ** p["china.talent_elasticity"]
        tools = finance.invest_and_build(
            self, state_money, state_rd, private, best, talent_factor, mean_security
        )
        self.tool_sales = np.zeros(len(FIRM_LINES))
        for item in ("litho_equipment", "other_equipment"):
            self.tool_sales[FIRM_LINE_INDEX[item]] = tools["domestic"][item]
        foreign_by_origin += tools["foreign_by_origin"]
        for item in ("litho_equipment", "other_equipment"):
            item_revenue[item] += tools["foreign_by_origin_item"][item]
        for firm_group, item, origin_index in self._group_origins:
            firm_group.china_revenue_usd_bn = float(item_revenue[item][origin_index])
        # Foreign fabs in China buy foreign tools too; count them in the equipment market.
        located_growth = (1 + p["foreign.fabs_in_china_growth_pct_per_year"] / 100.0) ** 0.25 - 1
        tool_blocked = self.regime.blocked(
            "other_equipment",
            False,
            ref_gen,
            self.quarter,
            self.compliance,
            self.us_technology,
            for_expansion=True,
        )
        tool_open = ((1 - tool_blocked) * self.foreign_share["other_equipment"]).sum(axis=1)
        added_located = self.fabs_in_china * located_growth * tool_open[None, :]
        located_capex = (
            float(added_located.sum())
            * 4.0
            * p["firm_finance.capex_per_annual_output"]["foundry"]
            * p["firm_finance.tool_share_of_fab_capex_pct"]
            / 100.0
        )
        self.fabs_in_china = (
            self.fabs_in_china * (1 - p["firm_finance.depreciation_pct_per_quarter"] / 100.0 * 0.5)
            + added_located
        )
        foreign_tools = (
            tools["foreign"]["litho_equipment"]
            + tools["foreign"]["other_equipment"]
            + located_capex
        )
        domestic_tools = tools["domestic"]["litho_equipment"] + tools["domestic"]["other_equipment"]

        # Technology (mechanism 4).
        technology.learn(self, talent_factor, best)
        self.china_best_gen = self._china_best_gen()

        # Policy feedback (mechanism 6): US, allies, China's workforce; buyers remember.
        world_rev = self._world_revenue_by_origin(world_q, shares)
        for i, o in enumerate(ORIGINS):
            if o in self.allies:
                self.allies[o].exposure = (
                    float(foreign_by_origin[i] / world_rev[i]) if world_rev[i] > 0 else 0.0
                )
        self.us.lost_revenue_usd_bn = lost_us
        self.us.act()
        self.agents_by_type[AllyGovernment].shuffle_do("decide")
        self.china.update_talent()
        self._update_design_out()
        blocked_b = cleared.blocked_demand.sum(axis=1) / np.maximum(demand_bk.sum(axis=1), 1e-12)
        unmet_b = cleared.unmet.sum(axis=1) / np.maximum(demand_bk.sum(axis=1), 1e-12)
        demand_b = demand_bk.sum(axis=1)
        spill = p["sourcing.security_spillover"] * float(
            np.multiply(blocked_b, demand_b).sum() / demand_b.sum()
        )
        for i, b in enumerate(buyers):
            b.blocked_share = float(blocked_b[i])
            b.unmet_share = float(unmet_b[i])
            bought = cleared.domestic[i].sum() + cleared.foreign[i].sum()
            b.domestic_share = float(cleared.domestic[i].sum() / bought) if bought > 0 else 0.0
            b.react(
                spill if b.state_linked > 0 else 0.0,
                p["sourcing.security_jump"],
                p["sourcing.security_decay_pct_per_quarter"] / 100.0,
                p["sourcing.flagship_market_loss_pct_per_unmet"] / 100.0
                if b is self.flagship
                else 0.0,
                p["sourcing.flagship_foreign_loss_multiplier"],
            )

        # Entry and failure.
        failed, wasted_fail = demography.fail(self)
        self.firms.compact()
        entered = demography.enter(self, state_total + private_total)

        self.recorder.record(
            demand_total=demand_total,
            demand_k=demand_k,
            dom_k=dom_k,
            located_k=located_k,
            unmet=float(cleared.unmet.sum()),
            upstream=upstream,
            domestic_tools=domestic_tools,
            foreign_tools=foreign_tools,
            foreign_by_origin=foreign_by_origin,
            frontier=frontier,
            state_total=state_total,
            wasted=wasted + wasted_fail,
            private=private_total,
            entered=entered,
            failed=failed,
            shortfall=shortfall,
        )

    # -- helpers ----------------------------------------------------------------------------
    def _capacity_by_line(self, mask: np.ndarray) -> np.ndarray:
        """(lines, vintages) capacity of the firms in ``mask``."""
        f = self.firms
        n = f.n
        rows = np.nonzero(mask)[0]
        line = f.line[rows]
        cap = f.cap[:n][rows]
        out = np.empty((len(FIRM_LINES), 3))
        for v in range(3):
            out[:, v] = np.bincount(line, weights=cap[:, v], minlength=len(FIRM_LINES))
        return out

    def _open(self, item: str, listed: bool, gen) -> np.ndarray:
        """Share of world foreign supply of ``item`` open to a (listed) Chinese buyer at ``gen``."""
        index, blocked = self.regime.blocked_rows(
            item, listed, gen, self.quarter, self.compliance, self.us_technology
        )
        return ((1.0 - blocked) @ self.foreign_share[item])[index]

    def _upstream(self, seg, demand_k, need_gen_k, listed_share, controllable, security) -> dict:
        """China's purchases of one upstream segment, tier by tier, from one domestic pool."""
        p = self.p
        li = FIRM_LINE_INDEX[seg]
        best = self.line_best[li]
        gap = np.maximum(0.0, need_gen_k - best)
        want = logistic(
            p["sourcing.domestic_bias"][seg]
            - p["technology.ramp_quality_gap_cost"] * gap
            + self.china.procurement_preference
            + security
        )
        adequate = (best + 1.0 >= need_gen_k).astype(float)
        if controllable:
            blk0 = self.regime.blocked(
                seg, False, need_gen_k, self.quarter, self.compliance, self.us_technology
            )
            blk1 = self.regime.blocked(
                seg, True, need_gen_k, self.quarter, self.compliance, self.us_technology
            )
            blk = (1 - listed_share) * blk0 + listed_share * blk1
        else:
            blk = np.zeros((len(TIERS), len(ORIGINS)))
        open_o = (1.0 - blk) * self.foreign_share[seg][None, :]
        open_k = open_o.sum(axis=1)
        # Tiers are the rows of a single-column market: one domestic pool serves them all.
        res = clear(
            demand_k[:, None],
            want[:, None],
            open_k[:, None],
            np.array([self.line_supply[li]]),
            adequate[:, None],
        )
        foreign_k = res.foreign[:, 0]
        split = np.divide(
            open_o, open_k[:, None], out=np.zeros_like(open_o), where=open_k[:, None] > 0
        )
        by_origin = (foreign_k[:, None] * split).sum(axis=0)
        return {
            "domestic": float(res.domestic.sum()),
            "foreign": float(foreign_k.sum()),
            "demand": float(demand_k.sum()),
            "by_origin": by_origin,
        }

    def _world_revenue_by_origin(self, world_q: float, shares: np.ndarray) -> np.ndarray:
        out = np.zeros(len(ORIGINS))
        for k, item in enumerate(CHIP_ITEMS):
            out += world_q * shares[k] * self.foreign_share[item]
        for item, ratio in WORLD_UPSTREAM_RATIO.items():
            out += world_q * ratio * self.foreign_share[item]
        return out

    def _update_design_out(self) -> None:
        """Third-country firms remove US technology under extraterritorial pressure (F23)."""
        p = self.p
        fdp_active = any(
            r.foreign_direct_product and r.effective_q <= self.quarter
            for r in self.regime.state.rules
        )
        if not fdp_active:
            return
        rate = (
            p["countermeasures.design_out_pct_per_quarter"]
            / 100.0
            * self.regime.state.reach
            * (0.5 + self.china.countermeasure_level)
        )
        keep = np.ones(len(ORIGINS))
        keep[[i for i, o in enumerate(ORIGINS) if o != "united_states"]] = 1.0 - rate
        self.us_technology = self.us_technology * keep
        self.us_technology.flags.writeable = False

    @property
    def china_best_node_nm(self) -> float:
        return float(gen_to_node_nm(self.china_best_gen))


def _share(part: float, whole: float) -> float:
    return float(part / whole) if whole > 0 else 0.0
