"""Technology: the world frontier, Chinese firms' learning, and the ceilings controls impose.

Mechanism 4 of DESIGN.md. The frontier moves at a documented pace (14 nm in 2014, 3 nm in
2022, IRDS after). A Chinese firm's technology (node generation, 28 nm = 0, x0.7 per
generation) rises with R&D relative to its size, with a catch-up bonus for being behind,
scaled by the share of needed talent it can hire (F15). It cannot pass the ceiling set by
the tools and design software it can get: foreign ones where controls leave enough supply
open, otherwise domestic ones (lithography gains two generations from multipatterning, as
SMIC's DUV-made 7 nm shows). Installed tools keep working, so a ceiling never pushes a firm
back, and a fab whose tools bind learns to stretch the ones it holds further by
multipatterning (faster with R&D, stopped when the extra tools it needs cannot be bought);
champions' rare breakthroughs add to that know-how, so the best node moves within bounds
(docs/ODD.md 7.11). Champions draw breakthroughs and setbacks from the model's generator.
"""

from __future__ import annotations

import numpy as np

from .calendar import QUARTERS_PER_YEAR
from .firms import COMPOUND, FIRM_LINE_INDEX, FIRM_LINES, FOUNDRY, MEMORY, in_lines
from .taxonomy import ADVANCED_MIN_GEN, LEADING_MIN_GEN, node_nm_to_gen

#: Upstream items a fab needs to move to a new node.
NODE_INPUTS: tuple[str, ...] = ("litho_equipment", "other_equipment", "eda_ip")
#: Sentinel generation of a line (or of China's best foundry) with no firm to measure:
#: far below any real node, so it never reads as capability.
NO_FIRM_GEN = -10.0
#: How far below a control threshold "just below it" is, in generations (rules are step
#: functions of the generation, binding at and above their threshold).
BELOW_THRESHOLD_GEN = 1e-6
#: Random draws per champion per quarter: a breakthrough and a setback.
DRAWS_PER_CHAMPION = 2


def frontier_gen(p: dict, year: float) -> float:
    """World frontier logic node generation at ``year``."""
    g0 = node_nm_to_gen(p["frontier.node_nm_2014"])
    early = p["frontier.generations_per_year_to_2022"]
    late = p["frontier.generations_per_year_after_2022"]
    start = p["frontier.start_year"]
    pace_break = p["frontier.pace_break_year"]
    if year <= pace_break:
        return g0 + early * (year - start)
    return g0 + early * (pace_break - start) + late * (year - pace_break)


def line_frontiers(p: dict, year: float) -> np.ndarray:
    """Frontier generation per firm line (compound moves slower: CLM70)."""
    f = frontier_gen(p, year)
    out = np.full(len(FIRM_LINES), f)
    g0 = node_nm_to_gen(p["frontier.node_nm_2014"])
    out[COMPOUND] = g0 + (f - g0) * p["frontier.compound_pace_ratio"]
    return out


def foreign_access_gen(model, item: str, listed: bool) -> float:
    """Highest generation for which enough foreign supply of ``item`` is open to a fab.

    Rules are step functions of the generation, so it is enough to test each binding
    threshold from the lowest up. Returns ``inf`` when nothing binds enough. Several phases
    ask each quarter; the answer is kept in the regime's memo until its tables change.
    """
    minimum_pct = model.p["controls.access_minimum_pct"]
    memo = model.regime.memo(model.quarter, model.compliance, model.us_technology)
    key = ("foreign_access_gen", item, bool(listed), minimum_pct)
    gen = memo.get(key)
    if gen is None:
        gen = memo[key] = _foreign_access_gen(model, item, listed, minimum_pct)
    return gen


def _foreign_access_gen(model, item: str, listed: bool, minimum_pct: float) -> float:
    """:func:`foreign_access_gen` computed from the regime's tables."""
    thresholds, blocked = model.regime.thresholds_blocked(
        item, listed, model.quarter, model.compliance, model.us_technology
    )
    if not thresholds.size:
        return np.inf
    open_share = (1.0 - blocked) @ model.foreign_share[item]
    below = np.nonzero(open_share < minimum_pct / 100.0)[0]
    if below.size == 0:
        return np.inf
    return float(thresholds[below[0]]) - BELOW_THRESHOLD_GEN


def line_best_gen(firms, min_share: float) -> np.ndarray:
    """Best generation per line among live, honest firms holding >= ``min_share`` of its capacity.

    A firm also counts when it is its line's largest, or a champion. Lines without such a
    firm get :data:`NO_FIRM_GEN` (see :func:`fill_empty_lines`).
    """
    n_lines = len(FIRM_LINES)
    n = firms.n
    # Rows by index, found once (cheaper to gather by than a mask; same rows, same order).
    ok = np.flatnonzero(firms.alive[:n] & ~firms.fraud[:n])
    line = firms.line_index().take(ok)
    cap = firms.total_capacity()[ok]
    gen = firms.gen[ok]
    line_cap = np.bincount(line, weights=cap, minlength=n_lines)
    line_max = np.full(n_lines, -np.inf)
    np.maximum.at(line_max, line, cap)
    big = (cap >= np.minimum(min_share * line_cap, line_max)[line]) | firms.champion[ok]
    out = np.full(n_lines, -np.inf)
    np.maximum.at(out, line[big], gen[big])
    return np.where(np.isfinite(out), out, NO_FIRM_GEN)


def fill_empty_lines(line_best: np.ndarray, frontiers: np.ndarray, gens_behind: float) -> None:
    """Give lines without a firm (:data:`NO_FIRM_GEN`) a generation ``gens_behind`` the frontier.

    Edits ``line_best`` in place.
    """
    missing = line_best <= NO_FIRM_GEN
    line_best[missing] = frontiers[missing] - gens_behind


def by_tier(by_line: np.ndarray) -> np.ndarray:
    """(tiers,) from (lines, vintages) capacity: foundry vintages are the logic tiers."""
    return np.array([*by_line[FOUNDRY], by_line[MEMORY].sum(), by_line[COMPOUND].sum()])


def tier_generations(china_best_gen, line_best, frontier, compound_frontier):
    """Per tier, the generation domestic supply reaches and the one buyers compare it with.

    Logic tiers: China's best foundry node, capped at each tier's own upper end (a 7 nm
    foundry's mature line is a mature-node product); buyers compare the leading tier with
    the frontier and the others with their tier's upper end. Memory and compound are
    compared with their own frontiers.

    Returns:
        ``(domestic_gen, reference_gen)``, each (tiers,).
    """
    domestic = np.array(
        [
            china_best_gen,
            min(china_best_gen, LEADING_MIN_GEN),
            min(china_best_gen, ADVANCED_MIN_GEN),
            line_best[MEMORY],
            line_best[COMPOUND],
        ]
    )
    reference = np.array([frontier, LEADING_MIN_GEN, ADVANCED_MIN_GEN, frontier, compound_frontier])
    return domestic, reference


def domestic_input_gens(p: dict, best: np.ndarray) -> dict[str, float]:
    """Highest generation Chinese makers of each node input can serve, by item.

    Lithography reaches ``frontier.multipatterning_bonus_generations`` past its
    single-exposure node by multipatterning (SMIC's DUV 7 nm).
    """
    out = {item: float(best[FIRM_LINE_INDEX[item]]) for item in NODE_INPUTS}
    out["litho_equipment"] += p["frontier.multipatterning_bonus_generations"]
    return out


def tool_ceilings(model, best: np.ndarray) -> np.ndarray:
    """Per-firm generation the tools and design software a fab can get now reach.

    For each node input, foreign supply where controls leave enough open (plus what installed
    tools stretch past it), else the domestic one; the fab needs all of them, so the lowest.
    Rows outside the fab lines get ``inf`` (no tools bind them).
    """
    p = model.p
    f = model.firms
    n = f.n
    tools = np.full(n, np.inf)
    fab = in_lines(f.line_index(), (FOUNDRY, MEMORY))
    if not fab.any():
        return tools
    domestic = domestic_input_gens(p, best)
    stretch = p["technology.installed_tool_stretch_generations"]
    for listed in (False, True):
        rows = fab & (f.listed[:n] == listed)
        if not rows.any():
            continue
        cap_gen = np.inf
        for item in NODE_INPUTS:
            foreign = foreign_access_gen(model, item, listed) + stretch
            cap_gen = min(cap_gen, max(foreign, domestic[item]))
        tools[rows] = cap_gen
    return tools


def node_ceilings(
    model, best: np.ndarray, tools: np.ndarray | None = None, lag: np.ndarray | None = None
) -> np.ndarray:
    """Per-firm ceiling generation: the follower lag, and what the firm's tools reach.

    A fab reaches the better of the tools it can get now (:func:`tool_ceilings`) and the
    node it already runs on tools it holds (``tool_gen``) stretched by its multipatterning
    know-how (``patterning_gen``), and never more than the follower lag behind the frontier
    (know-how, not tools, binds there). ``lag`` is that per-firm limit when the caller has
    it already (:func:`follower_limits`).
    """
    f = model.firms
    n = f.n
    if lag is None:
        lag = follower_limits(model, line_frontiers(model.p, model.year_float).take(f.line_index()))
    if tools is None:
        tools = tool_ceilings(model, best)
    reach = np.maximum(tools, f.tool_gen[:n] + f.patterning_gen[:n])
    return np.minimum(lag, reach)


def follower_limits(model, firm_frontiers: np.ndarray) -> np.ndarray:
    """Per-firm generation the follower lag allows, from each firm's line frontier."""
    return firm_frontiers - model.p["technology.follower_lag_generations"]


def patterning_step(model, tools, lag, rd_factor, talent_factor, breakthrough) -> np.ndarray:
    """One quarter's gain in multipatterning know-how per firm, generations (docs/ODD.md 7.11).

    Fabs that run the best node their tools reach, below the follower lag (the tools bind,
    not know-how), learn to stretch the tools they hold, at
    ``technology.patterning_learning_gen_per_year`` scaled by R&D and talent as other
    learning is, and by how far the tools still for sale reach toward the node they run:
    more passes need more scanners and etchers, so learning stops when what can be bought is
    ``frontier.multipatterning_bonus_generations`` below it. A champion's breakthrough adds
    ``technology.breakthrough_generations`` (a new process qualified on tools held: SMIC's
    N+2, N+3).
    """
    p = model.p
    f = model.firms
    n = f.n
    bound = np.minimum(tools, lag) - BELOW_THRESHOLD_GEN
    pressed = f.alive[:n] & ~f.fraud[:n] & (tools < lag) & (f.gen[:n] >= bound)
    span = max(p["frontier.multipatterning_bonus_generations"], BELOW_THRESHOLD_GEN)
    support = np.clip(1.0 + (tools - f.tool_gen[:n]) / span, 0.0, 1.0)
    rate = p["technology.patterning_learning_gen_per_year"] / QUARTERS_PER_YEAR
    step = rate * talent_factor * rd_factor * support + breakthrough
    return np.where(pressed, step, 0.0)


def broaden_tool_coverage(coverage: float, pull: float, gain_per_quarter: float) -> float:
    """Next quarter's domestic coverage of a tool item's set (0-1; docs/ODD.md 7.11).

    Chinese tool makers add the categories they lack (metrology, implant, track) where
    fabs cannot get them abroad: coverage grows by ``gain_per_quarter`` times the pull, the
    share of the quarter's tool needs not bought abroad (bought at home, or not obtained).
    """
    return min(1.0, coverage + gain_per_quarter * pull)


def learn(model, talent_factor: float, best: np.ndarray) -> None:
    """Advance every live firm's technology by one quarter (vectorised)."""
    p = model.p
    f = model.firms
    n = f.n
    alive = f.alive[:n]
    line = f.line_index()
    gen = f.gen[:n]
    frontiers = line_frontiers(p, model.year_float)
    rates = model.line_table("technology.learning_gen_per_year")
    ref = model.line_table("technology.rd_reference_usd_bn_per_year")
    rd_ratio = QUARTERS_PER_YEAR * f.rd_usd_bn[:n] / ref.take(line)
    rd_ratio = np.clip(rd_ratio, p["technology.rd_ratio_floor"], p["technology.rd_ratio_ceiling"])
    rd_factor = rd_ratio ** p["technology.rd_elasticity"]
    firm_frontiers = frontiers.take(line)
    behind = np.maximum(0.0, firm_frontiers - gen)
    # The per-line part of the product is formed per line (the same values), then looked up.
    step = (
        (rates / QUARTERS_PER_YEAR * talent_factor).take(line)
        * rd_factor
        * (1.0 + p["technology.catchup_per_generation_behind"] * behind)
    )
    tools = tool_ceilings(model, best)
    # Tools once bought keep working: the most advanced node run on tools the firm could get.
    f.tool_gen[:n] = np.maximum(f.tool_gen[:n], np.minimum(gen, tools))
    lag = follower_limits(model, firm_frontiers)
    ceiling = node_ceilings(model, best, tools, lag)
    breakthrough = np.zeros(n)
    champs = np.nonzero(alive & f.champion[:n])[0]
    if champs.size:
        u = model.stream("technology").random((DRAWS_PER_CHAMPION, champs.size))
        breakthrough[champs] = np.where(
            u[0] < p["technology.breakthrough_pct_per_quarter"] / 100.0,
            p["technology.breakthrough_generations"],
            0.0,
        )
        step[champs] += breakthrough[champs]
        step[champs] -= np.where(
            u[1] < p["technology.setback_pct_per_quarter"] / 100.0,
            p["technology.setback_generations"],
            0.0,
        )
    new = np.minimum(gen + np.maximum(step, 0.0), np.maximum(gen, ceiling))
    # A setback delays progress but never undoes a node already in production.
    f.gen[:n] = np.where(alive & ~f.fraud[:n], new, gen)
    gained = patterning_step(model, tools, lag, rd_factor, talent_factor, breakthrough)
    f.patterning_gen[:n] = np.minimum(
        f.patterning_gen[:n] + gained, p["technology.patterning_max_generations"]
    )


__all__ = [
    "broaden_tool_coverage",
    "by_tier",
    "fill_empty_lines",
    "follower_limits",
    "frontier_gen",
    "learn",
    "line_best_gen",
    "line_frontiers",
    "node_ceilings",
    "patterning_step",
    "tool_ceilings",
    "tier_generations",
]
