"""Money: state funding and its waste, private capital, capex, building capacity.

Mechanism 5 of DESIGN.md. State money (F05-F07, Big Fund phases, a surge F29) goes mostly to
national champions and the rest to the swarm by state backing; fraudulent firms court local
officials and draw more of it (F19). Private money (F11 VC, F21 STAR Market) grows, and grows
faster when US controls make domestic suppliers the only option (CLM70, Dan Wang). Firms turn
cash into capacity; fabs need tools for that, bought at home or abroad under the controls
(:func:`buy_tools`), so a fab cut off from foreign tools with no domestic substitute cannot
expand. Waste (F19, F32) is money paid to fraudulent firms, money that programmes lose before
reaching firms, and money paid in the two years before a firm fails.
"""

from __future__ import annotations

import numpy as np

from .calendar import QUARTERS_PER_YEAR, quarter_ordinal
from .firms import FAB_LINES, FIRM_LINE_INDEX, FIRM_LINES, VINTAGE_BASE, in_lines, vintage_column
from .market import clear, domestic_preference
from .taxonomy import MATURE_BEST_GEN

#: Tolerance when comparing node generations computed along different paths.
GEN_TOLERANCE = 1e-9


def private_money(model) -> float:
    """Private capital into Chinese chip firms this quarter, US$ bn."""
    p = model.p
    years = model.year_float - p["private.growth_reference_year"]
    vc = (
        p["private.vc_usd_bn_per_quarter_2014"]
        * (1 + p["private.growth_pct_per_year"] / 100.0) ** years
    )
    vc *= 1.0 + p["private.control_spur"] * model.control_pressure_index
    if model.quarter >= quarter_ordinal(str(p["private.star_market_opens"])):
        vc *= 1.0 + p["private.star_market_boost_pct"] / 100.0
    return float(min(vc, p["private.cap_usd_bn_per_quarter"]))


def wasted_state_money(lost_up_front: float, paid_to_fraud: float, paid_to_failed: float) -> float:
    """State money wasted this quarter (F19, F32): the one place waste is counted.

    Args:
        lost_up_front: money programmes lose before it reaches firms (a programme's own
            ``waste_pct``, :meth:`ChinaGovernment.budget`).
        paid_to_fraud: state money paid this quarter to fraudulent firms.
        paid_to_failed: state money paid in the ``firm_finance.state_funds_memory_quarters``
            before a firm failed (:func:`demography.fail`), frauds excluded (already counted).
    """
    return lost_up_front + paid_to_fraud + paid_to_failed


def allocate(amount: float, weights: np.ndarray) -> np.ndarray:
    """Split ``amount`` proportionally to non-negative ``weights`` (zeros if all zero)."""
    total = weights.sum()
    if amount <= 0 or total <= 0:
        return np.zeros_like(weights)
    return amount * weights / total


def distribute_state_money(
    model, total: float, targeted: list[tuple[float, list | None]]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-firm state money this quarter: (all money, the part earmarked for R&D).

    General money goes to champions first, then to the swarm by backing; a programme that
    targets lines (a whole-nation push for breakthroughs, TIME22) goes to firms in those
    lines and spends a larger share on R&D.
    """
    p = model.p
    f = model.firms
    n = f.n
    alive = f.alive[:n]
    backing = f.backing[:n] * alive
    champ = f.champion[:n]
    targeted_total = sum(a for a, _ in targeted)
    general = max(0.0, total - targeted_total)
    share = p["china.champion_share_of_funding_pct"] / 100.0
    money = allocate(general * share, backing * champ)
    fraud_weight = p["china_firms.fraud_funding_weight"]
    swarm_w = backing * ~champ * np.where(f.fraud[:n], fraud_weight, 1.0)
    money += allocate(general * (1 - share), swarm_w)
    rd = money * p["firm_finance.state_rd_share_pct"] / 100.0
    for amount, lines in targeted:
        idx = [FIRM_LINE_INDEX[name] for name in lines]
        in_lines_mask = in_lines(f.line[:n], idx)
        champion_weight = p["china.targeted_champion_weight"]
        part = allocate(amount, backing * in_lines_mask * np.where(champ, champion_weight, 1.0))
        money += part
        rd += part * p["china.targeted_rd_share_pct"] / 100.0
    return money, rd


def buy_tools(
    model, rows: np.ndarray, spend: np.ndarray, gen: np.ndarray, best: np.ndarray, security: float
) -> dict:
    """Fabs buy the tools their capex needs; returns the share of each request obtained.

    Each request (a fab's spending at one node generation) needs tools able to make that
    node. A fab prefers foreign tools unless domestic ones are good enough and policy pushes
    it; where controls block foreign tools it must buy domestic, and where domestic tools
    cannot make the node the expansion stalls. One domestic tool pool serves all requests.

    Args:
        rows: firm row of each request.
        spend: capex of each request, US$ bn.
        gen: node generation each request builds at.
        best: best domestic generation per firm line.
        security: buyers' supply-security concern (logit units).

    Returns:
        dict with ``fraction`` (per request), ``domestic`` and ``foreign`` spending by tool
        item, and ``foreign_by_origin`` (origins,) in US$ bn.
    """
    p = model.p
    f = model.firms
    tool_share = p["firm_finance.tool_share_of_fab_capex_pct"] / 100.0
    litho_share = p["firm_finance.litho_share_of_tools_pct"] / 100.0
    result = {
        "fraction": np.ones(rows.size),
        "domestic": {},
        "foreign": {},
        "foreign_by_origin": np.zeros(len(model.origins)),
        "foreign_by_origin_item": {},
    }
    listed = f.listed[rows]
    bias = p["sourcing.domestic_bias"]
    gap_cost = p["technology.ramp_quality_gap_cost"]
    for item, share in (("litho_equipment", litho_share), ("other_equipment", 1.0 - litho_share)):
        need = spend * tool_share * share
        dom_gen = best[FIRM_LINE_INDEX[item]]
        if item == "litho_equipment":
            dom_gen = dom_gen + p["frontier.multipatterning_bonus_generations"]
        adequate = (dom_gen >= gen - GEN_TOLERANCE).astype(float)
        gap = np.maximum(0.0, gen - dom_gen)
        want = domestic_preference(
            bias[item], gap_cost, gap, model.china.procurement_preference, security
        )
        # Open shares per interval of the rules (a handful), then per request by index.
        foreign_open = np.zeros(rows.size)
        per_origin = np.zeros((rows.size, len(model.origins)))
        for flag in (False, True):
            m = listed == flag
            if m.any():
                index, blocked = model.regime.blocked_rows(
                    item,
                    flag,
                    gen[m],
                    model.quarter,
                    model.compliance,
                    model.us_technology,
                    for_expansion=True,
                )
                open_by_origin = (1.0 - blocked) * model.foreign_share[item][None, :]
                open_total = open_by_origin.sum(axis=1)
                split = np.divide(
                    open_by_origin,
                    open_total[:, None],
                    out=np.zeros_like(open_by_origin),
                    where=open_total[:, None] > 0,
                )
                foreign_open[m] = open_total[index]
                per_origin[m] = split[index]
        supply = model.line_supply[FIRM_LINE_INDEX[item]]
        if rows.size == 0:
            result["domestic"][item] = result["foreign"][item] = 0.0
            result["foreign_by_origin_item"][item] = np.zeros(len(model.origins))
            continue
        # Requests are the rows of a single-column market: one domestic tool pool for all.
        cleared = clear(
            need[:, None],
            want[:, None],
            foreign_open[:, None],
            np.array([supply]),
            adequate[:, None],
        )
        domestic = cleared.domestic[:, 0]
        foreign = cleared.foreign[:, 0]
        got = np.where(need > 0, (domestic + foreign) / np.where(need > 0, need, 1.0), 1.0)
        result["fraction"] = np.minimum(result["fraction"], got)
        result["domestic"][item] = float(domestic.sum())
        result["foreign"][item] = float(foreign.sum())
        by_origin = (foreign[:, None] * per_origin).sum(axis=0)
        result["foreign_by_origin_item"][item] = by_origin
        result["foreign_by_origin"] += by_origin
    return result


def invest_and_build(
    model,
    state_money: np.ndarray,
    state_rd: np.ndarray,
    private: np.ndarray,
    best: np.ndarray,
    talent_factor: float,
    security: float,
) -> dict:
    """Cash, capex, tools, building and depreciation for one quarter.

    Returns:
        dict with tool purchases (see :func:`buy_tools`) and ``capex_usd_bn`` (fab capex).
    """
    p = model.p
    f = model.firms
    n = f.n
    alive = f.alive[:n]
    fraud = f.fraud[:n] & alive
    honest = alive & ~fraud
    line = f.line[:n]
    margin = p["firm_finance.operating_margin_pct"] / 100.0
    fab_line = in_lines(line, FAB_LINES)
    fab = honest & fab_line
    margin_vec = np.where(
        fab_line, margin + p["firm_finance.tax_exemption_margin_pp"] / 100.0, margin
    )
    cap_total = f.total_capacity()
    overhead = (
        p["firm_finance.overhead_pct_of_capacity_per_quarter"]
        / 100.0
        * (
            cap_total
            + p["firm_finance.minimum_scale_usd_bn"] * p["china_firms.real_firms_per_agent"]
        )
    )
    revenue = f.revenue_usd_bn[:n]
    f.rd_usd_bn[:n] = np.where(
        honest, p["firm_finance.rd_intensity_pct"] / 100.0 * revenue + state_rd, 0.0
    )
    profit = revenue * margin_vec - overhead
    f.cash_usd_bn[:n] += np.where(alive, profit + state_money - state_rd + private, 0.0)
    # Fraudsters keep what they get; the state's share of it is wasted (F19).
    f.cash_usd_bn[:n] = np.where(fraud, 0.0, f.cash_usd_bn[:n])
    memory_q = p["firm_finance.state_funds_memory_quarters"]
    f.state_funds_usd_bn[:n] = f.state_funds_usd_bn[:n] * (1 - 1.0 / memory_q) + state_money
    # Firms expand when they sell most of what they make; a new firm (no capacity yet) builds.
    utilisation = np.where(
        cap_total > 0, np.minimum(1.0, revenue / np.where(cap_total > 0, cap_total, 1.0)), 1.0
    )
    threshold = p["firm_finance.expansion_utilisation_threshold_pct"] / 100.0
    width = p["firm_finance.expansion_ramp_width_pct"] / 100.0
    appetite = np.clip((utilisation - (threshold - width)) / width, 0.0, 1.0)
    spend = np.where(
        honest,
        appetite
        * p["firm_finance.cash_spend_pct_per_quarter"]
        / 100.0
        * np.maximum(f.cash_usd_bn[:n], 0.0),
        0.0,
    )
    # Requests: a foundry spends part of its capex at its best node and the rest on mature
    # capacity; other fabs build at their node; non-fab lines need no controlled tools.
    foundry = fab & (line == FIRM_LINE_INDEX["foundry"])
    other_fab = fab & ~foundry & (spend > 0)
    frontier_share = p["firm_finance.foundry_frontier_capex_pct"] / 100.0
    fr = np.nonzero(foundry & (spend > 0))[0]
    of = np.nonzero(other_fab)[0]
    req_rows = np.concatenate([fr, fr, of])
    req_spend = np.concatenate(
        [spend[fr] * frontier_share, spend[fr] * (1 - frontier_share), spend[of]]
    )
    req_gen = np.concatenate([f.gen[fr], np.minimum(f.gen[fr], MATURE_BEST_GEN), f.gen[of]])
    req_col = np.concatenate(
        [vintage_column(f.gen[fr]), np.full(fr.size, VINTAGE_BASE), np.full(of.size, VINTAGE_BASE)]
    )
    tools = buy_tools(model, req_rows, req_spend, req_gen, best, security)
    used_req = req_spend * tools["fraction"]
    kappa = np.array([p["firm_finance.capex_per_annual_output"][name] for name in FIRM_LINES])
    build_q = np.array([p["firm_finance.build_quarters"][name] for name in FIRM_LINES], dtype=float)
    used = np.where(honest & ~fab, spend, 0.0)
    np.add.at(used, req_rows, used_req)
    f.cash_usd_bn[:n] -= used
    np.add.at(f.pending[:n], (req_rows, req_col), used_req / (kappa[line[req_rows]] * QUARTERS_PER_YEAR))
    plain = np.nonzero(honest & ~fab)[0]
    f.pending[plain, VINTAGE_BASE] += used[plain] / (kappa[line[plain]] * QUARTERS_PER_YEAR)
    done = f.pending[:n] * (talent_factor / build_q[line])[:, None]
    f.pending[:n] -= done
    f.cap[:n] = f.cap[:n] * (1 - p["firm_finance.depreciation_pct_per_quarter"] / 100.0) + done
    tools["capex_usd_bn"] = float(used_req.sum())
    return tools
