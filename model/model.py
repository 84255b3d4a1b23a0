"""The decoupling model: one quarter of China's chip economy under export controls per step.

:class:`DecouplingModel` wires the agents (Chinese firms, buyers, foreign firm groups,
governments, the export-control regime) and the mechanisms (``market``, ``technology``,
``finance``, ``demography``) together. :meth:`DecouplingModel.step` runs the quarter as the
named phases of docs/ODD.md section 3, each a short method over an explicit
:class:`~model.quarter.Quarter`; the arithmetic lives in small functions of the mechanism
modules, which tests call on their own.
"""

from __future__ import annotations

import math

import mesa
import numpy as np

from . import demography, finance, stockpile, technology
from .buyers import Buyer
from .calendar import QUARTERS_PER_YEAR, ordinal_to_label, quarter_ordinal, quarter_year_float
from .events import apply_event
from .finance import TOOL_ITEMS
from .firms import (
    COMPOUND,
    FIRM_LINE_INDEX,
    FIRM_LINES,
    FOUNDRY,
    MEMORY,
    N_VINTAGES,
    Firm,
    FirmPopulation,
    ForeignFirmGroup,
    SwarmCohort,
)
from .foreign_fabs import LocatedSignals
from .governments import AllyGovernment, ChinaGovernment, USGovernment
from .market import (
    clear,
    domestic_discount_pct,
    domestic_preference,
    reachable_share,
    relocation_step,
    safe_share,
    tier_shares,
    unmet_paths,
    with_exports,
    world_market_usd_bn_per_year,
)
from .parameters import group, resolve
from .quarter import ChipMarket, Demand, DomesticSupply, Money, Quarter
from .records import Recorder, self_sufficiency
from .regimes import (
    ITEM_INDEX,
    ORIGINS,
    ControlRule,
    ExportControlRegime,
    compliance_vector,
    interval_index,
    pressure_index,
)
from .scenario import Scenario
from .stockpile import ToolStockpile
from .streams import RandomStreams
from .taxonomy import ALLIES, COUNTRIES, TIERS, gen_to_node_nm

CHIP_ITEMS = tuple(f"chips_{t}" for t in TIERS)
#: Items with a foreign supply structure: chips of every tier and the upstream segments.
SUPPLY_ITEMS = CHIP_ITEMS + (
    "eda_ip",
    "litho_equipment",
    "other_equipment",
    "materials",
    "packaging",
)
#: The buyer whose assembly can move out of China (``demand.relocatable_assembly_pct``).
RELOCATING_BUYER = "multinational_assembly"
#: Initial rows of the firm arrays (they grow as needed).
FIRM_ROWS_HINT = 4096
#: Floor of a buyer's demand when dividing by it (US$ bn; a buyer with no demand).
DEMAND_FLOOR_USD_BN = 1e-12


class DecouplingModel(mesa.Model):
    """China's chip self-sufficiency under US, allied and Chinese policies, quarter by quarter.

    Args:
        scenario: a resolved :class:`~model.scenario.Scenario`.
        rng: seed or ``numpy.random.SeedSequence``; all randomness comes from it.
        parameters: resolved parameters; by default the scenario's overrides on the defaults.
    """

    def __init__(self, scenario: Scenario, rng=None, parameters: dict | None = None):
        super().__init__(rng=rng)
        self.streams = RandomStreams(self.rng)
        self.spec = scenario
        self.p = dict(parameters) if parameters is not None else scenario.resolved_parameters()
        self._drag_weights: dict | None = None  # see _located_drag_weights
        self._line_tables: dict[tuple, np.ndarray] = {}  # see line_table
        self.start_q = quarter_ordinal(scenario.start)
        self.end_q = quarter_ordinal(scenario.end)
        self.quarter = self.start_q
        self.year_float = quarter_year_float(scenario.start)
        self.origins = ORIGINS
        self.event_log: list[str] = []
        self.recorder = Recorder(self)
        self._init_foreign_supply()
        self._init_governments()
        self.buyers = {
            name: Buyer(self, name, spec) for name, spec in group(self.p, "sourcing.buyers").items()
        }
        self.flagship = self.buyers["flagship"]
        self._init_firms()
        self.line_supply = np.zeros(len(FIRM_LINES))
        self.tool_sales = np.zeros(len(FIRM_LINES))
        self.demand_shock = 0.0
        self.relocated_share = 0.0
        self.china_best_gen = self._china_best_gen()
        self._delivered: dict[tuple[str, bool], np.ndarray] = {}  # see ledger
        self.stockpile = ToolStockpile(TOOL_ITEMS)
        coverage = self.p["technology.domestic_tool_coverage_pct"]
        self.tool_coverage = {item: coverage[item] / 100.0 for item in TOOL_ITEMS}
        self.announcements = stockpile.announcements(scenario.events)
        self.regime_tool_items = frozenset(ITEM_INDEX[item] for item in TOOL_ITEMS)
        self._init_events()

    # -- set-up ---------------------------------------------------------------------------
    def _init_foreign_supply(self) -> None:
        """Foreign supply shares (China excluded), US content, fabs in China, firm groups."""
        p = self.p
        self.foreign_share = {}
        for item in SUPPLY_ITEMS:
            shares = p[f"foreign.supply_share_pct.{item}"]
            vec = np.array([float(shares.get(o, 0.0)) for o in ORIGINS])
            self.foreign_share[item] = vec / vec.sum()
        tech = p["foreign.us_technology_pct"]
        self.us_technology = np.array([float(tech.get(o, 0.0)) / 100.0 for o in ORIGINS])
        self.us_technology.flags.writeable = False  # replaced, never edited (regimes._array_key)
        self.foreign_groups = {
            (item, o): ForeignFirmGroup(self, o, item, float(self.foreign_share[item][i]))
            for item in self.foreign_share
            for i, o in enumerate(ORIGINS)
            if o in COUNTRIES and self.foreign_share[item][i] > 0
        }
        self._group_origins = [
            (g, item, ORIGINS.index(o)) for (item, o), g in self.foreign_groups.items()
        ]
        #: The fab groups with capacity in China, with their (origin, tier) cell.
        self.located_groups: list[tuple[ForeignFirmGroup, int, int]] = []
        located = group(p, "foreign.fabs_in_china_usd_bn_per_quarter_2014")
        for country, by_tier in located.items():
            for tier, value in by_tier.items():
                firm_group = self.foreign_groups.get((f"chips_{tier}", country))
                if firm_group is None:
                    raise ValueError(
                        f"foreign.fabs_in_china_usd_bn_per_quarter_2014.{country}.{tier}: "
                        f"{country} has no share of world {tier} chip supply "
                        f"(foreign.supply_share_pct.chips_{tier}), so it cannot run fabs there"
                    )
                firm_group.china_capacity_usd_bn = float(value)
                self.located_groups.append((firm_group, ORIGINS.index(country), TIERS.index(tier)))
        self.fabs_in_china = np.zeros((len(ORIGINS), len(TIERS)))
        self._sync_fabs_in_china()

    def _init_governments(self) -> None:
        """The regime, the US, China and the allies."""
        p = self.p
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
        ) ** (p["china.talent_reference_year"] - self.year_float)

    def _init_firms(self) -> None:
        """Champions present at the start (the others enter on their date), then the swarm."""
        p = self.p
        self.firms = FirmPopulation(FIRM_ROWS_HINT)
        self.champions: dict[str, Firm] = {}
        #: Champions listed by an event before they entered; listed on entry.
        self.pending_listings: set[str] = set()
        #: Swarm cohorts still in the market, by cohort index; entry quarter of every cohort.
        self.swarm_cohorts: dict[int, SwarmCohort] = {}
        self.swarm_cohorts_created: list[int] = []
        self.swarm_line_mix = demography.line_mix(p)
        self._pending_champions = []
        for name, spec in group(p, "china_firms.champions").items():
            if quarter_ordinal(spec["enters"]) <= self.start_q:
                self._add_champion(name, spec)
            else:
                self._pending_champions.append((quarter_ordinal(spec["enters"]), name, spec))
        self._update_line_best()
        swarm_n = int(
            round(p["china_firms.registered_firms_2014"] / p["china_firms.real_firms_per_agent"])
        )
        capacity_2014 = group(p, "china_firms.swarm_capacity_usd_bn_per_quarter_2014")
        fraud_p = p["china_firms.fraud_pct_of_entrants"] / 100.0
        demography.add_swarm(self, swarm_n, capacity_2014, fraud_p)
        self.money_per_firm_reference = 1.0 / swarm_n
        self._update_line_best()

    def _init_events(self) -> None:
        """Apply events dated before the start now, in order; keep the rest by quarter."""
        self._events: dict[int, list] = {}
        for ev in self.spec.events:
            q = quarter_ordinal(ev.at)
            if q < self.start_q:
                apply_event(self, ev)
            else:
                self._events.setdefault(q, []).append(ev)

    def follow(self, scenario: Scenario, from_q: int) -> None:
        """Follow ``scenario`` from quarter ordinal ``from_q`` on (a branch of a shared run).

        Its horizon, announced rules and the events of quarters ``>= from_q`` replace the
        current scenario's; what happened before ``from_q`` is kept (model.run.branch).
        """
        self.spec = scenario
        self.end_q = quarter_ordinal(scenario.end)
        self.announcements = stockpile.announcements(scenario.events)
        self._events = {}
        for ev in scenario.events:
            q = quarter_ordinal(ev.at)
            if q >= from_q:
                self._events.setdefault(q, []).append(ev)

    def _add_champion(self, name: str, spec: dict) -> None:
        line = FIRM_LINE_INDEX[spec["line"]]
        rows = self.firms.add(
            line, spec["capacity"], spec["gen"], spec["backing"], self.quarter, champion=True
        )
        self.champions[name] = Firm(self, int(self.firms.ids[rows[0]]), name=name)
        if name in self.pending_listings:
            self.champions[name].entity_listed = True

    def _update_line_best(self) -> None:
        """Best generation per line; lines without a firm of size sit behind the frontier."""
        self.line_best = technology.line_best_gen(
            self.firms, self.p["technology.line_best_min_capacity_share_pct"] / 100.0
        )
        frontier = technology.line_frontiers(self.p, self.year_float)
        technology.fill_empty_lines(
            self.line_best, frontier, self.p["technology.empty_line_gens_behind_frontier"]
        )

    def _china_best_gen(self) -> float:
        f = self.firms
        n = f.n
        m = f.alive[:n] & (f.line_index() == FOUNDRY) & (f.total_capacity() > 0) & ~f.fraud[:n]
        return float(f.gen[:n][m].max()) if m.any() else technology.NO_FIRM_GEN

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
            self.china.answer_country_wide_rule()

    def set_parameter(self, path: str, value) -> None:
        """Change a parameter from this quarter on (a scenario event), checked like an override.

        ``path`` names a parameter or one key of a mapping-valued parameter. Cached regime
        tables are invalidated, since parameters such as leakage enter them.
        """
        resolved = resolve({path: value})
        if path in self.p:
            self.p[path] = resolved[path]
        else:
            parent, _, key = path.rpartition(".")
            self.p[parent] = {**self.p[parent], key: value}
        self._drag_weights = None
        self._line_tables = {}
        self.regime.invalidate()

    def stream(self, name: str) -> np.random.Generator:
        """This quarter's random generator for one mechanism (:mod:`model.streams`)."""
        return self.streams.get(name, self.quarter)

    def log_event(self, text: str) -> None:
        """Append ``text`` to the run's event log, dated with the current quarter."""
        self.event_log.append(f"{ordinal_to_label(self.quarter)}: {text}")

    # -- the quarter ----------------------------------------------------------------------
    def step(self) -> None:
        """Advance one quarter: the process overview of docs/ODD.md section 3, in order."""
        q = self._begin_quarter()
        self._demand(q)
        self._domestic_supply(q)
        self._source_chips(q)
        self._source_upstream(q)
        self._sell(q)
        self._finance(q)
        self._learn(q)
        self._policy_feedback(q)
        self._demography(q)
        self.recorder.record(q)

    def _begin_quarter(self) -> Quarter:
        """Date the quarter; champions enter; events apply; controls and technology are read."""
        self.quarter = self.start_q + self.steps - 1
        self.year_float = quarter_year_float(ordinal_to_label(self.quarter))
        for _, name, spec in [c for c in self._pending_champions if c[0] == self.quarter]:
            self._add_champion(name, spec)
        for ev in self._events.get(self.quarter, ()):
            apply_event(self, ev)
        self.compliance = compliance_vector({a: g.alignment for a, g in self.allies.items()})
        self.control_pressure_index = pressure_index(
            self.regime.intensity(self.quarter),
            self.p["controls.intensity_per_pressure_unit"],
            self.p["private.control_spur_max_index"],
        )
        self._update_line_best()
        self.china_best_gen = self._china_best_gen()
        frontier = technology.frontier_gen(self.p, self.year_float)
        return Quarter(ordinal=self.quarter, frontier_gen=frontier)

    def _demand(self, q: Quarter) -> None:
        """Mechanism 1: China's chip demand, with an AR(1) demand shock, split by tier."""
        p = self.p
        shock_sd = p["demand.quarterly_shock_sd_pct"] / 100.0
        self.demand_shock = p["demand.shock_persistence"] * self.demand_shock + self.stream(
            "demand"
        ).normal(0.0, shock_sd)
        world_q = world_market_usd_bn_per_year(p, self.year_float) / QUARTERS_PER_YEAR
        self._relocate_assembly()
        total = world_q * p["demand.china_share_of_world_pct"] / 100.0 * math.exp(self.demand_shock)
        total *= 1.0 - self.relocated_share
        shares = tier_shares(p, self.year_float)
        q.demand = Demand(world_q, shares, total, total * shares)

    def _relocate_assembly(self) -> None:
        """Foreign OEMs move part of their assembly out of China as controls tighten.

        China's share of world chip demand is where devices are assembled: the multinational
        assembly buyer's relocatable share moves abroad at a rate that grows with control
        pressure ("China+1"), and China's demand loses it.
        """
        p = self.p
        buyer = self.buyers[RELOCATING_BUYER]
        ceiling = buyer.demand_share * p["demand.relocatable_assembly_pct"] / 100.0
        rate = (
            p["demand.relocation_pct_per_year_per_pressure"]
            / 100.0
            * self.control_pressure_index
            / QUARTERS_PER_YEAR
        )
        self.relocated_share = relocation_step(self.relocated_share, ceiling, rate)
        buyer.relocated_share = safe_share(self.relocated_share, buyer.demand_share)

    def _domestic_supply(self, q: Quarter) -> None:
        """Chinese-HQ capacity by tier, its technology, and what controlled inputs let it run."""
        f = self.firms
        n = f.n
        live = f.alive[:n] & ~f.fraud[:n]
        by_line = self._capacity_by_line(live)
        listed_by_line = self._capacity_by_line(live & f.listed[:n])
        self.line_supply = by_line.sum(axis=1)
        supply_k = np.array(
            [*by_line[FOUNDRY], self.line_supply[MEMORY], self.line_supply[COMPOUND]]
        )
        listed_k = technology.by_tier(listed_by_line)
        listed_share = np.divide(
            listed_k, supply_k, out=np.zeros_like(supply_k), where=supply_k > 0
        )
        compound_frontier = technology.line_frontiers(self.p, self.year_float)[COMPOUND]
        dom_gen, ref_gen = technology.tier_generations(
            self.china_best_gen, self.line_best, q.frontier_gen, compound_frontier
        )
        # Materials are needed to run production: where controls block foreign materials
        # and domestic ones are too far behind, output is capped.
        tolerance = self.p["technology.materials_output_tolerance_generations"]
        materials_ok = (self.line_best[FIRM_LINE_INDEX["materials"]] + tolerance >= dom_gen).astype(
            float
        )
        output_factor = np.ones(len(TIERS))
        for listed in (False, True):
            weight = listed_share if listed else 1.0 - listed_share
            can_run = reachable_share(self._open("materials", listed, dom_gen), materials_ok)
            output_factor = np.minimum(output_factor, np.where(weight > 0, can_run, 1.0))
        q.supply = DomesticSupply(
            supply_k, listed_share, dom_gen, ref_gen, supply_k * output_factor
        )

    def _source_chips(self, q: Quarter) -> None:
        """Mechanism 2 under mechanism 3: buyers choose chips, controls block, the market clears.

        Buyers choose domestic or foreign chips; controls block part of the foreign supply;
        the market clears; foreign-owned fabs in China serve part of the foreign purchases
        (F03 counts them).
        """
        p = self.p
        s = q.supply
        buyers = list(self.buyers.values())
        weight = np.array([b.demand_weight for b in buyers])[:, None] * np.array(
            [b.tier_weights for b in buyers]
        )
        demand_bk = q.demand.by_tier_usd_bn[None, :] * weight / weight.sum(axis=0, keepdims=True)
        gap = np.maximum(0.0, s.reference_gen_by_tier - s.gen_by_tier)
        bias = np.array([p["sourcing.domestic_bias"][t] for t in TIERS])
        pressure = np.array([b.state_linked for b in buyers])[:, None] * (
            self.china.procurement_preference + self._market_access_pressure()[None, :]
        )
        security = np.array([b.security for b in buyers])[:, None]
        cost = p["technology.ramp_quality_gap_cost"]
        # The discount buys back part of the quality gap: cheaper chips win buyers.
        price_pull = p["sourcing.price_sensitivity"] * self._discount_pct(s) / 100.0
        want = domestic_preference(
            bias[None, :] + price_pull[None, :], cost, gap[None, :], pressure, security
        )
        want = np.where(s.capacity_by_tier[None, :] > 0, want, 0.0)
        listed_b = np.array([b.entity_listed for b in buyers])
        blocked_origin = self._chips_blocked(q, listed_b)
        open_bk = np.zeros_like(demand_bk)
        # {(chip item, listed): ((origins,) open supply, its total)}, for the ledger too.
        open_origin = {}
        for listed, blocked_k in blocked_origin.items():
            totals = []
            for item, blocked in zip(CHIP_ITEMS, blocked_k, strict=True):
                open_o = (1.0 - blocked) * self.foreign_share[item]
                total = open_o.sum()
                open_origin[(item, listed)] = (open_o, total)
                totals.append(total)
            open_bk[listed_b == listed] = totals
        cleared = clear(demand_bk, want, open_bk, s.supply_by_tier)
        foreign_k = cleared.foreign.sum(axis=0)
        located_k = np.minimum(self.fabs_in_china.sum(axis=0), foreign_k)
        dom_k = cleared.domestic.sum(axis=0)
        q.foreign_by_origin = np.zeros(len(ORIGINS))
        q.revenue_by_item = {item: np.zeros(len(ORIGINS)) for item in self.foreign_share}
        lost_us = self._chip_revenue(
            q, listed_b, demand_bk, want, cleared, blocked_origin, open_origin
        )
        q.chips = ChipMarket(demand_bk, want, cleared, dom_k, located_k, lost_us)
        q.chips.unmet = unmet_paths(
            cleared.unmet,
            s.supply_by_tier - dom_k,
            TIERS.index("mature") + 1,
            p["sourcing.substitution_max_pct"] / 100.0,
            p["controls.grey_import_pct"] / 100.0,
        )
        self._grey_revenue(q)

    def _market_access_pressure(self) -> np.ndarray:
        """(tiers,) logit units against foreign chips from the allies that align (F22).

        Chinese countermeasures press state-linked buyers to drop suppliers whose
        governments follow US controls: the push grows with the countermeasure level and
        with the share of a tier's foreign supply from aligned origins.
        """
        weight = self.p["countermeasures.market_access_pressure"]
        if weight == 0 or self.china.countermeasure_level == 0:
            return np.zeros(len(TIERS))
        aligned = np.array(
            [(self.foreign_share[item] * self.compliance).sum() for item in CHIP_ITEMS]
        )
        return weight * self.china.countermeasure_level * aligned

    def _grey_revenue(self, q: Quarter) -> None:
        """Grey imports are booked to ``other`` (third-country intermediaries).

        Not as the blocked origins' firms' China revenue, which is what F26's lobbying weighs.
        """
        grey = q.chips.unmet.grey.sum(axis=0)
        other = ORIGINS.index("other")
        for k, item in enumerate(CHIP_ITEMS):
            q.foreign_by_origin[other] += grey[k]
            q.revenue_by_item[item][other] += grey[k]

    def _chips_blocked(self, q: Quarter, listed_b: np.ndarray) -> dict:
        """``{listed: (chip items, origins) blocked shares}`` for the buyer kinds present."""
        out = {}
        for listed in (False, True):
            if not (listed_b == listed).any():
                continue
            out[listed] = self.regime.blocked_items(
                CHIP_ITEMS,
                listed,
                q.frontier_gen,
                self.quarter,
                self.compliance,
                self.us_technology,
            )
        return out

    def _chip_revenue(
        self, q, listed_b, demand_bk, want, cleared, blocked_origin, open_origin
    ) -> float:
        """Foreign chip revenue by origin (the ledger) and what US firms lose to controls.

        ``blocked_origin`` is :meth:`_chips_blocked`'s; ``open_origin`` holds, per (chip
        item, listed), the open supply by origin and its total (as :meth:`_source_chips`
        computed them for the market).
        """
        us = ORIGINS.index("united_states")
        lost_us = 0.0
        self._delivered = {}
        for listed, blocked_k in blocked_origin.items():
            rows = listed_b == listed
            # Per buyer kind, the rows' purchases and foreign wants; each item's column of
            # them is summed as before (the same elements, in the same order).
            foreign_rows = cleared.foreign[rows]
            wanted_rows = demand_bk[rows] * (1 - want[rows])
            for k, item in enumerate(CHIP_ITEMS):
                open_o, tot = open_origin[(item, listed)]
                bought = foreign_rows[:, k].sum()
                delivered = bought * open_o / tot if tot > 0 else np.zeros(len(ORIGINS))
                q.foreign_by_origin += delivered
                q.revenue_by_item[item] += delivered
                self._delivered[(item, listed)] = delivered
                wanted_foreign = wanted_rows[:, k].sum()
                lost_us += wanted_foreign * self.foreign_share[item][us] * blocked_k[k][us]
        return lost_us

    @property
    def ledger(self) -> dict[tuple[str, bool, str], float]:
        """This quarter's foreign chips delivered, US$ bn: ``{(chip item, listed, origin): value}``.

        Only the buyer kinds present this quarter have entries.
        """
        return {
            (item, listed, o): value
            for (item, listed), delivered in self._delivered.items()
            for o, value in zip(ORIGINS, delivered.tolist(), strict=True)
        }

    def _source_upstream(self, q: Quarter) -> None:
        """Upstream purchases (mechanism 2 with China's industry as the buyer).

        EDA/IP at the node designed for, materials at the node made, packaging less
        node-bound, and chip design.
        """
        p = self.p
        f = self.firms
        n = f.n
        buyers = list(self.buyers.values())
        shares_b = np.array([b.demand_share for b in buyers])
        security_b = np.array([b.security for b in buyers])
        # np.average's own arithmetic (multiply, sum, divide), without its Python overhead.
        q.mean_security = p["sourcing.upstream_security_weight"] * float(
            np.multiply(security_b, shares_b).sum() / shares_b.sum()
        )
        live = f.alive[:n] & ~f.fraud[:n]
        # Design houses' rows by index (found once; cheaper to gather by than a mask).
        design_rows = np.flatnonzero(live & (f.line[:n] == FIRM_LINE_INDEX["design"]))
        design_cap = f.cap[design_rows].sum()
        listed_design_share = safe_share(
            f.cap[design_rows[f.listed[design_rows]]].sum(), design_cap
        )
        s, demand_k, value_pct = (
            q.supply,
            q.demand.by_tier_usd_bn,
            "demand.upstream_value_share_pct",
        )
        behind = p["technology.upstream_gens_behind_chip"]
        made_k = q.chips.domestic_by_tier + q.chips.located_by_tier
        specs = {
            "eda_ip": (demand_k * p[f"{value_pct}.eda_ip"] / 100.0, s.reference_gen_by_tier,
                       listed_design_share, True),
            "materials": (made_k * p[f"{value_pct}.materials"] / 100.0,
                          s.gen_by_tier - behind["materials"],
                          float(s.listed_share_by_tier.mean()), True),
            "packaging": (demand_k * p[f"{value_pct}.packaging"] / 100.0,
                          s.reference_gen_by_tier - behind["packaging"], 0.0, False),
        }  # fmt: skip
        for seg, bought in self._upstream(specs, q).items():
            q.upstream[seg] = bought
            q.revenue_by_item[seg] += bought["by_origin"]
            if seg != "packaging":
                q.foreign_by_origin += bought["by_origin"]
        q.upstream["design"] = self._design_market(q, design_rows)

    def _upstream(self, specs: dict, q: Quarter) -> dict:
        """China's purchases of each upstream segment, tier by tier, from its domestic pool.

        ``specs`` maps a segment to ``(demand by tier, generation needed by tier, listed share
        of its buyers, whether controls reach it)``. Returns ``{segment: {"domestic",
        "foreign", "demand": US$ bn, "by_origin": (origins,) foreign purchases}}``.
        """
        p = self.p
        segs = list(specs)
        lines = np.array([FIRM_LINE_INDEX[seg] for seg in segs])
        # (segments, tiers) and (segments, tiers, origins) arrays, one row per segment.
        demand = np.array([spec[0] for spec in specs.values()])
        need_gen = np.array([spec[1] for spec in specs.values()])
        best = self.line_best.take(lines)[:, None]
        gap = np.maximum(0.0, need_gen - best)
        want = domestic_preference(
            np.array([[p["sourcing.domestic_bias"][seg]] for seg in segs]),
            p["technology.ramp_quality_gap_cost"],
            gap,
            self.china.procurement_preference,
            q.mean_security,
        )
        adequate = (best + p["technology.upstream_adequacy_generations"] >= need_gen).astype(float)
        blk = np.zeros((len(segs), len(TIERS), len(ORIGINS)))
        for i, (seg, (_, _, listed_share, controllable)) in enumerate(specs.items()):
            if controllable:
                args = (need_gen[i], self.quarter, self.compliance, self.us_technology)
                blk0 = self.regime.blocked(seg, False, *args)
                blk1 = self.regime.blocked(seg, True, *args)
                blk[i] = (1 - listed_share) * blk0 + listed_share * blk1
        share = np.array([self.foreign_share[seg] for seg in segs])
        open_o = (1.0 - blk) * share[:, None, :]
        open_k = open_o.sum(axis=-1)
        # Each segment is a column of one market, its tiers the rows: one domestic pool per
        # segment serves them all. Transposed views keep each column contiguous (summed as
        # on its own).
        res = clear(demand.T, want.T, open_k.T, self.line_supply.take(lines), adequate.T)
        foreign_k = res.foreign.T
        split = np.divide(
            open_o, open_k[..., None], out=np.zeros_like(open_o), where=open_k[..., None] > 0
        )
        by_origin = (foreign_k[..., None] * split).sum(axis=1)
        domestic = res.domestic.sum(axis=0).tolist()
        foreign = foreign_k.sum(axis=1).tolist()
        total = demand.sum(axis=1).tolist()
        return {
            seg: {
                "domestic": domestic[i],
                "foreign": foreign[i],
                "demand": total[i],
                "by_origin": by_origin[i],
            }
            for i, seg in enumerate(segs)
        }

    def _design_market(self, q: Quarter, design_rows: np.ndarray) -> dict:
        """Chinese design houses' sales: they need a foundry and EDA tools at their node.

        A listed design house loses foreign foundries under a foreign direct product rule
        and must find a domestic one (F18); without EDA tools for its node it keeps the
        designs it can move to older nodes (``sourcing.design_fallback_pct``).
        ``design_rows`` are the live design houses' row indices, ascending.
        """
        p = self.p
        f = self.firms
        best = self.line_best
        frontier = q.frontier_gen
        listed_foundry_open = float(self._open("chips_leading", True, frontier)[0])
        # Only design houses' access counts: computed for their rows alone, in row order.
        design_gen = f.gen[design_rows]
        design_listed = f.listed[design_rows]
        eda_adequate = (
            best[FIRM_LINE_INDEX["eda_ip"]] + p["technology.upstream_adequacy_generations"]
            >= design_gen
        )
        eda_access = np.ones(design_gen.size)
        for listed in (False, True):
            rows = design_listed == listed
            if rows.any():
                open_eda = self._open("eda_ip", listed, design_gen[rows])
                eda_access[rows] = reachable_share(open_eda, eda_adequate[rows])
        fallback = p["sourcing.design_fallback_pct"] / 100.0
        eda_access = reachable_share(eda_access, fallback)
        tolerance = p["technology.design_foundry_tolerance_generations"]
        domestic_foundry_ok = self.china_best_gen >= design_gen - tolerance
        foundry_access = np.where(
            design_listed, reachable_share(listed_foundry_open, domestic_foundry_ok), 1.0
        )
        access = foundry_access * eda_access
        cap = f.cap
        design_cap = cap[:, 0][design_rows] + cap[:, 1][design_rows] + cap[:, 2][design_rows]
        supply = float((design_cap * access).sum())
        lag = p["technology.design_reference_lag_generations"]
        gap = max(0.0, frontier - lag - best[FIRM_LINE_INDEX["design"]])
        want = float(
            domestic_preference(
                p["sourcing.domestic_bias"]["design"],
                p["technology.ramp_quality_gap_cost"],
                gap,
                p["sourcing.design_procurement_weight"] * self.china.procurement_preference,
                q.mean_security,
            )
        )
        demand = q.demand.total_usd_bn
        return {"domestic": min(supply, want * demand), "demand": demand, "supply": supply}

    def _sell(self, q: Quarter) -> None:
        """Firms' revenue: domestic sales pro rata to capacity, plus exports.

        Exports of what is left unsold at home go up to a line's export ratio (exports per
        US$ of domestic sales).
        """
        f = self.firms
        n = f.n
        live = f.alive[:n] & ~f.fraud[:n]
        cap = f.cap[:n]
        line = f.line_index()
        # (vintages, lines) tables, looked up per firm one vintage at a time: the same
        # values as looking up (firms, vintages) rows, without strided columns.
        sold = self._sold_shares(q).T.copy()
        price = self._price_factors(q).T.copy()
        # Capacity sold by vintage, computed once for both sums below.
        sold_0 = cap[:, 0] * sold[0].take(line)
        sold_1 = cap[:, 1] * sold[1].take(line)
        sold_2 = cap[:, 2] * sold[2].take(line)
        sold_cap = sold_0 + sold_1 + sold_2
        revenue = (
            sold_0 * price[0].take(line)
            + sold_1 * price[1].take(line)
            + sold_2 * price[2].take(line)
        )
        f.revenue_usd_bn[:n] = np.where(live, revenue, 0.0)
        total = f.total_capacity()
        has_cap = total > 0
        f.utilisation[:n] = np.where(has_cap, sold_cap / np.where(has_cap, total, 1.0), 1.0)

    def _discount_pct(self, s: DomesticSupply) -> np.ndarray:
        """(tiers,) domestic chips' discount to the foreign product, % of its price."""
        p = self.p
        gap = np.maximum(0.0, s.reference_gen_by_tier - s.gen_by_tier)
        return domestic_discount_pct(
            gap,
            p["sourcing.domestic_discount_pct_per_generation"],
            p["sourcing.domestic_discount_max_pct"],
        )

    def _price_factors(self, q: Quarter) -> np.ndarray:
        """(lines, vintages): price of domestic output relative to the foreign product.

        Chinese chips sell at a discount that grows with each generation they are behind
        what buyers compare them with, and narrows as the gap closes (mechanism 2).
        """
        price_k = 1.0 - self._discount_pct(q.supply) / 100.0
        out = np.ones((len(FIRM_LINES), N_VINTAGES))
        out[FOUNDRY, :] = price_k[:N_VINTAGES]  # foundry vintages are the logic tiers
        out[MEMORY, :] = price_k[TIERS.index("memory")]
        out[COMPOUND, :] = price_k[TIERS.index("compound")]
        return out

    def _sold_shares(self, q: Quarter) -> np.ndarray:
        """(lines, vintages): share of each line's capacity sold, at home or abroad."""
        export_ratio = self.p["firm_finance.export_ratio"]
        supply_k = q.supply.capacity_by_tier
        dom_k = q.chips.domestic_by_tier + q.chips.unmet.substituted_from
        sold_frac_k = np.where(supply_k > 0, dom_k / np.where(supply_k > 0, supply_k, 1.0), 0.0)
        sold = np.zeros((len(FIRM_LINES), N_VINTAGES))
        for k in range(N_VINTAGES):  # foundry tiers are its vintages, in the same order
            sold[FOUNDRY, k] = with_exports(sold_frac_k[k], export_ratio["foundry"])
        sold[MEMORY, :] = with_exports(sold_frac_k[TIERS.index("memory")], export_ratio["memory"])
        sold[COMPOUND, :] = with_exports(
            sold_frac_k[TIERS.index("compound")], export_ratio["compound"]
        )
        for seg in ("eda_ip", "materials", "packaging", "design"):
            li = FIRM_LINE_INDEX[seg]
            supply = self.line_supply[li]
            s = min(1.0, q.upstream[seg]["domestic"] / supply) if supply > 0 else 0.0
            sold[li, :] = with_exports(s, export_ratio[seg])
        for seg in TOOL_ITEMS:
            li = FIRM_LINE_INDEX[seg]
            supply = self.line_supply[li]
            sold[li, :] = min(1.0, self.tool_sales[li] / supply) if supply > 0 else 0.0
        return sold

    def _finance(self, q: Quarter) -> None:
        """Mechanism 5: state and private money, talent, capex, tools, capacity built."""
        f = self.firms
        n = f.n
        state_total, state_lost, targeted = self.china.budget()
        state_money, state_rd = finance.distribute_state_money(
            self, state_total - state_lost, targeted
        )
        to_fraud = float(state_money[f.fraud[:n]].sum())
        live = f.alive[:n] & ~f.fraud[:n]
        appetite = finance.firm_appetite(self)  # utilisation is fixed for the rest of _finance
        private_total = finance.private_money(self) * finance.investable_share(self, live, appetite)
        private = finance.allocate(private_total, finance.private_weights(self, live, appetite))
        shortfall, talent_factor = self._talent()
        q.money = Money(state_total, state_lost, to_fraud, private_total, shortfall, talent_factor)
        tools = finance.invest_and_build(
            self,
            state_money,
            state_rd,
            private,
            self.line_best,
            talent_factor,
            q.mean_security,
            appetite,
        )
        self.tool_sales = np.zeros(len(FIRM_LINES))
        for item in TOOL_ITEMS:
            self.tool_sales[FIRM_LINE_INDEX[item]] = tools["domestic"][item]
        self._broaden_tool_coverage(tools)
        q.foreign_by_origin += tools["foreign_by_origin"]
        for item in TOOL_ITEMS:
            q.revenue_by_item[item] += tools["foreign_by_origin_item"][item]
        revenue = {item: q.revenue_by_item[item].tolist() for item in q.revenue_by_item}
        for firm_group, item, origin_index in self._group_origins:
            firm_group.china_revenue_usd_bn = revenue[item][origin_index]
        stocked = self._stock_up(q, tools)
        located_capex = self._grow_foreign_fabs(q)
        q.money.foreign_tools_usd_bn = (
            tools["foreign"]["litho_equipment"]
            + tools["foreign"]["other_equipment"]
            + located_capex
            + stocked
        )
        q.money.domestic_tools_usd_bn = (
            tools["domestic"]["litho_equipment"] + tools["domestic"]["other_equipment"]
        )

    def _broaden_tool_coverage(self, tools: dict) -> None:
        """Domestic tool makers fill missing categories fabs cannot buy abroad (ODD 7.11)."""
        gain = self.p["technology.tool_coverage_gain_pct_per_year"] / 100.0 / QUARTERS_PER_YEAR
        for item in TOOL_ITEMS:
            need = tools["need"][item]
            pull = min(1.0, max(0.0, 1.0 - tools["foreign"][item] / need)) if need > 0 else 0.0
            self.tool_coverage[item] = technology.broaden_tool_coverage(
                self.tool_coverage[item], pull, gain
            )

    def _stock_up(self, q: Quarter, tools: dict) -> float:
        """Buyers stock foreign tools ahead of announced and expected rules (model.stockpile).

        Returns this quarter's purchases for the stock, US$ bn (they count in the equipment
        market and in the sellers' China revenue now); the stock then ages.
        """
        p = self.p
        pile = self.stockpile
        fill = 1.0 / p["controls.stockpile_fill_quarters"]
        total = 0.0
        for item in TOOL_ITEMS:
            stockpile.update_reference(
                pile, item, tools["foreign"][item], p["controls.stockpile_reference_quarters"]
            )
            target = stockpile.target_quarters(self, item)
            amount = stockpile.buy_for_stock(pile, item, target, fill)
            if amount > 0:
                args = (self.china_best_gen, self.quarter, self.compliance, self.us_technology)
                split = (1.0 - self.regime.blocked(item, False, *args)[0]) * self.foreign_share[
                    item
                ]
                by_origin = amount * split / split.sum() if split.sum() > 0 else 0.0 * split
                q.foreign_by_origin += by_origin
                q.revenue_by_item[item] += by_origin
                total += amount
        stockpile.age(pile, p["controls.stockpile_life_quarters"])
        return total

    def _talent(self) -> tuple[float, float]:
        """China's talent shortfall (F15) and the factor it puts on building and learning.

        Design houses hire from a wider software pool; F15's gap is about fabs and tools.
        """
        p = self.p
        non_design = self.line_supply.sum() - self.line_supply[FIRM_LINE_INDEX["design"]]
        need_per_capacity = p["china.talent_need_k_per_usd_bn_capacity"] * QUARTERS_PER_YEAR
        need = need_per_capacity * (non_design + self.fabs_in_china.sum())
        shortfall = max(0.0, 1.0 - self.china.talent_supply_k / need) if need > 0 else 0.0
        self.talent_shortfall = shortfall
        reference = 1.0 - p["china.talent_reference_shortfall_pct"] / 100.0
        factor = ((1.0 - shortfall) / reference) ** p["china.talent_elasticity"]
        return shortfall, factor

    def _grow_foreign_fabs(self, q: Quarter) -> float:
        """Foreign fab groups decide their China capacity (:mod:`model.foreign_fabs`).

        Returns their tool purchases, US$ bn (they count in China's equipment market).
        """
        p = self.p
        tool_blocked = self.regime.blocked(
            "other_equipment",
            False,
            q.supply.reference_gen_by_tier,
            self.quarter,
            self.compliance,
            self.us_technology,
        )
        licence = p["foreign.located_fab_licence_pct"] / 100.0
        blocked_k = (
            1.0 - ((1 - tool_blocked) * self.foreign_share["other_equipment"]).sum(axis=1)
        ) * (1.0 - licence)
        demand_k = q.demand.by_tier_usd_bn
        foreign_k = q.chips.cleared.foreign.sum(axis=0)
        take_k = np.divide(foreign_k, demand_k, out=np.ones_like(demand_k), where=demand_k > 0)
        capacity_k = self.fabs_in_china.sum(axis=0)
        busy_k = np.divide(
            q.chips.located_by_tier, capacity_k, out=np.ones_like(capacity_k),
            where=capacity_k > 0,
        )  # fmt: skip
        weights = self._located_drag_weights()
        tolerance = p["foreign.located_home_pressure_tolerance"]
        bought = 0.0
        take, busy, tools_blocked = take_k.tolist(), busy_k.tolist(), blocked_k.tolist()
        for firm_group, o, k in self.located_groups:
            alignment = self.allies[ORIGINS[o]].alignment if ORIGINS[o] in self.allies else 1.0
            signals = LocatedSignals(
                foreign_take=take[k],
                utilisation=busy[k],
                tools_blocked=tools_blocked[k],
                countermeasure_level=self.china.countermeasure_level,
                home_pressure=max(0.0, self.us.pressure * alignment - tolerance),
            )
            bought += max(0.0, firm_group.decide_china_capacity(signals, weights))
        self._sync_fabs_in_china()
        capex_per_output = p["firm_finance.capex_per_annual_output"]["foundry"]
        tool_share_pct = p["firm_finance.tool_share_of_fab_capex_pct"]
        return bought * QUARTERS_PER_YEAR * capex_per_output * tool_share_pct / 100.0

    def line_table(self, path: str, missing: float | None = None) -> np.ndarray:
        """(lines,) values of the per-line parameter ``path``, in :data:`FIRM_LINES` order.

        Lines the mapping leaves out get ``missing`` (a KeyError names the line when
        ``missing`` is None). Several phases look these tables up every quarter; each is
        built once and kept (read-only) until :meth:`set_parameter` forgets them all.
        """
        key = (path, missing)  # the same mapping read with another default is another table
        table = self._line_tables.get(key)
        if table is None:
            values = self.p[path]
            table = np.array(
                [float(values[name] if missing is None else values.get(name, missing))
                 for name in FIRM_LINES]
            )  # fmt: skip
            table.flags.writeable = False
            self._line_tables[key] = table
        return table

    def _located_drag_weights(self) -> dict:
        """``foreign.located_drag_weights`` (a scan of every parameter), kept until one changes.

        Parameters change only through :meth:`set_parameter`, which forgets it.
        """
        if self._drag_weights is None:
            self._drag_weights = group(self.p, "foreign.located_drag_weights")
        return self._drag_weights

    def _sync_fabs_in_china(self) -> None:
        """The (origins, tiers) table of foreign fab capacity in China, from the groups."""
        for firm_group, o, k in self.located_groups:
            self.fabs_in_china[o, k] = firm_group.china_capacity_usd_bn

    def _learn(self, q: Quarter) -> None:
        """Mechanism 4: firms' technology advances under the ceilings controls impose."""
        technology.learn(self, q.money.talent_factor, self.line_best)
        self.china_best_gen = self._china_best_gen()

    def _policy_feedback(self, q: Quarter) -> None:
        """Mechanism 6: the US, the allies and China respond; buyers remember being cut off."""
        world_rev = self._world_revenue_by_origin(q.demand.world_usd_bn, q.demand.tier_shares)
        for i, o in enumerate(ORIGINS):
            if o in self.allies:
                self.allies[o].exposure = safe_share(q.foreign_by_origin[i], world_rev[i])
        self.us.lost_revenue_usd_bn = q.chips.lost_us_usd_bn
        self.us.act()
        self.agents_by_type[AllyGovernment].shuffle_do("decide")
        self.china.decide(self_sufficiency(self, q), self.control_pressure_index)
        self.china.update_talent()
        self._update_design_out()
        self._buyers_react(q)

    def _buyers_react(self, q: Quarter) -> None:
        """Buyers remember being cut off (CLM70) and lose sales where chips are missing (F18).

        A buyer cut off raises its security concern and part of it spills over to the
        others; the flagship loses sales where its chips are missing.
        """
        p = self.p
        cleared = q.chips.cleared
        demand_b = q.chips.demand_by_buyer.sum(axis=1)
        floor = np.maximum(demand_b, DEMAND_FLOOR_USD_BN)
        blocked_b = cleared.blocked_demand.sum(axis=1) / floor
        unmet_b = q.chips.unmet.lost.sum(axis=1) / floor
        substituted_b = q.chips.unmet.substituted.sum(axis=1)
        spill = p["sourcing.security_spillover"] * safe_share(
            np.multiply(blocked_b, demand_b).sum(), demand_b.sum()
        )
        # Row sums (each row summed as on its own), once for all buyers.
        domestic_b = cleared.domestic.sum(axis=1)
        foreign_b = cleared.foreign.sum(axis=1)
        grey_b = q.chips.unmet.grey.sum(axis=1)
        for i, b in enumerate(self.buyers.values()):
            b.blocked_share = float(blocked_b[i])
            b.unmet_share = float(unmet_b[i])
            domestic = domestic_b[i] + substituted_b[i]
            bought = domestic + foreign_b[i] + grey_b[i]
            b.domestic_share = float(domestic / bought) if bought > 0 else 0.0
            b.react(
                spill if b.state_linked > 0 else 0.0,
                p["sourcing.security_jump"],
                p["sourcing.security_decay_pct_per_quarter"] / 100.0,
                p["sourcing.flagship_market_loss_pct_per_unmet"] / 100.0
                if b is self.flagship
                else p["sourcing.market_loss_pct_per_unmet"] / 100.0,
                p["sourcing.flagship_foreign_loss_multiplier"],
            )

    def _demography(self, q: Quarter) -> None:
        """Swarm firms fail, then enter with the quarter's money; waste is counted once."""
        q.failed, wasted_with_failed = demography.fail(self)
        self.firms.compact()
        q.entered = demography.enter(self, q.money.state_total_usd_bn + q.money.private_usd_bn)
        q.wasted_usd_bn = finance.wasted_state_money(
            q.money.state_lost_usd_bn, q.money.state_to_fraud_usd_bn, wasted_with_failed
        )

    # -- helpers --------------------------------------------------------------------------
    def _capacity_by_line(self, mask: np.ndarray) -> np.ndarray:
        """(lines, vintages) capacity of the firms in ``mask``."""
        f = self.firms
        n = f.n
        # Column by column through the rows' indices (found once; gathering by index is
        # cheaper than by mask): the same rows in the same order as the (rows, vintages) block.
        rows = np.flatnonzero(mask)
        line = f.line_index().take(rows)
        cap = f.cap[:n]
        out = np.empty((len(FIRM_LINES), N_VINTAGES))
        for v in range(N_VINTAGES):
            out[:, v] = np.bincount(line, weights=cap[:, v][rows], minlength=len(FIRM_LINES))
        return out

    def _open(self, item: str, listed: bool, gen) -> np.ndarray:
        """Share of world foreign supply of ``item`` open to a (listed) Chinese buyer at ``gen``."""
        # Per interval of the rules, kept until the tables change (foreign shares are fixed).
        memo = self.regime.memo(self.quarter, self.compliance, self.us_technology)
        kept = memo.get(("open", item, listed))
        if kept is None:
            thresholds, blocked = self.regime.blocked_table(
                item, listed, self.quarter, self.compliance, self.us_technology
            )
            per_interval = (1.0 - blocked) @ self.foreign_share[item]
            kept = memo[("open", item, listed)] = (thresholds, per_interval)
        thresholds, per_interval = kept
        return per_interval[interval_index(thresholds, gen)]

    def _world_revenue_by_origin(self, world_q: float, shares: np.ndarray) -> np.ndarray:
        out = np.zeros(len(ORIGINS))
        for k, item in enumerate(CHIP_ITEMS):
            out += world_q * shares[k] * self.foreign_share[item]
        for item, ratio in self.p["demand.world_upstream_ratio"].items():
            out += world_q * ratio * self.foreign_share[item]
        return out

    def _update_design_out(self) -> None:
        """Third-country firms remove US technology under extraterritorial pressure (F23)."""
        p = self.p
        rules = self.regime.state.rules
        if not any(r.foreign_direct_product and r.effective_q <= self.quarter for r in rules):
            return
        pressure = p["countermeasures.design_out_base_pressure"] + self.china.countermeasure_level
        rate = (
            p["countermeasures.design_out_pct_per_quarter"]
            / 100.0
            * self.regime.state.reach
            * pressure
        )
        keep = np.ones(len(ORIGINS))
        keep[[i for i, o in enumerate(ORIGINS) if o != "united_states"]] = 1.0 - rate
        self.us_technology = self.us_technology * keep
        self.us_technology.flags.writeable = False

    @property
    def china_best_node_nm(self) -> float:
        """China's best logic node in volume production, nm."""
        return float(gen_to_node_nm(self.china_best_gen))
