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

from dataclasses import dataclass

import numpy as np

from .calendar import QUARTERS_PER_YEAR, quarter_ordinal
from .firms import FAB_LINES, FIRM_LINE_INDEX, VINTAGE_BASE, in_lines, vintage_column
from .market import clear, domestic_preference
from .stockpile import stock_cover
from .taxonomy import MATURE_BEST_GEN
from .technology import domestic_input_gens, foreign_access_gen

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
        in_lines_mask = in_lines(f.line_index(), idx)
        champion_weight = p["china.targeted_champion_weight"]
        part = allocate(amount, backing * in_lines_mask * np.where(champ, champion_weight, 1.0))
        money += part
        rd += part * p["china.targeted_rd_share_pct"] / 100.0
    return money, rd


def buy_tools(
    model,
    rows: np.ndarray,
    spend: np.ndarray,
    gen: np.ndarray,
    best: np.ndarray,
    security: float,
    domestic_used: dict | None = None,
) -> dict:
    """Fabs buy the tools their capex needs; returns the share of each request obtained.

    Each request (a fab's spending at one node generation) needs tools able to make that
    node. A fab prefers foreign tools unless domestic ones are good enough and policy pushes
    it; where controls block foreign tools it must buy domestic, and where domestic tools
    cannot make the node, or Chinese makers offer no tool of a category
    (``model.tool_coverage``), the expansion stalls. The fab buys a consistent set: the
    scarcest item decides how much it builds and how much of each item it takes. One
    domestic tool pool serves all requests.

    Args:
        model: the model (its firms, regime, foreign supply and domestic tool supply).
        rows: firm row of each request.
        spend: capex of each request, US$ bn.
        gen: node generation each request builds at.
        best: best domestic generation per firm line.
        security: buyers' supply-security concern (logit units).
        domestic_used: domestic tools already sold this quarter, by item (an earlier round
            of requests); the domestic pool serves what is left.

    Returns:
        dict with ``fraction`` (per request), ``domestic`` and ``foreign`` spending and
        ``need`` (what the requests asked for) by tool item, and ``foreign_by_origin``
        (origins,) in US$ bn.
    """
    p = model.p
    tool_share = p["firm_finance.tool_share_of_fab_capex_pct"] / 100.0
    litho_share = p["firm_finance.litho_share_of_tools_pct"] / 100.0
    n_origins = len(model.origins)
    result = {
        "domestic": {},
        "foreign": {},
        "foreign_by_origin": np.zeros(n_origins),
        "foreign_by_origin_item": {},
        "need": {},
    }
    if rows.size == 0:
        result["fraction"] = np.ones(0)
        for item in TOOL_ITEMS:
            result["domestic"][item] = result["foreign"][item] = result["need"][item] = 0.0
            result["foreign_by_origin_item"][item] = np.zeros(n_origins)
        return result
    # (items, requests): both items' markets in one set of array operations.
    need = (spend * tool_share)[None, :] * np.array([[litho_share], [1.0 - litho_share]])
    used = domestic_used or {}
    listed = model.firms.listed[rows]
    covered, uncovered, per_origin = _buy_tool_items(
        model, need, gen, listed, best, security, [used.get(item, 0.0) for item in TOOL_ITEMS]
    )
    # A fab buys a consistent tool set: of each part only what the capacity it can fully
    # equip needs (the scarcest part sets it), so no tools are bought for a fab not built.
    fraction = np.minimum(np.minimum(covered.got, uncovered.got).min(axis=0), 1.0)
    result["fraction"] = fraction
    keep_covered = _kept(fraction, covered.got)
    keep_uncovered = _kept(fraction, uncovered.got)
    domestic = covered.domestic * keep_covered
    foreign = covered.foreign * keep_covered + uncovered.foreign * keep_uncovered
    from_stock = covered.from_stock * keep_covered + uncovered.from_stock * keep_uncovered
    # Each item's row summed as on its own (rows of C-ordered (items, requests) arrays).
    need_i, stock_i = need.sum(axis=1).tolist(), from_stock.sum(axis=1).tolist()
    domestic_i, foreign_i = domestic.sum(axis=1).tolist(), foreign.sum(axis=1).tolist()
    for i, item in enumerate(TOOL_ITEMS):
        result["need"][item] = need_i[i]
        model.stockpile.draw(item, stock_i[i])
        result["domestic"][item] = domestic_i[i]
        result["foreign"][item] = foreign_i[i]
        by_origin = (foreign[i][:, None] * per_origin[i]).sum(axis=0)
        result["foreign_by_origin_item"][item] = by_origin
        result["foreign_by_origin"] += by_origin
    return result


#: The two tool items a fab's set is made of, in the order of :func:`buy_tools`' arrays.
TOOL_ITEMS = ("litho_equipment", "other_equipment")


@dataclass
class ToolPart:
    """What requests could obtain of one part of each tool item's set (US$ bn).

    Arrays are (items, requests), items in :data:`TOOL_ITEMS` order.

    Attributes:
        domestic: bought from Chinese tool makers (``None`` for the categories they lack).
        foreign: bought abroad (open under controls).
        from_stock: drawn from tools stockpiled before the rules.
        got: share of the part's need obtained (1 where nothing is needed).
    """

    domestic: np.ndarray | None
    foreign: np.ndarray
    from_stock: np.ndarray
    got: np.ndarray


def _obtained_share(obtained: np.ndarray, need: np.ndarray) -> np.ndarray:
    needed = need > 0
    return np.where(needed, obtained / np.where(needed, need, 1.0), 1.0)


def _kept(fraction: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Share of what a part obtained that the fab takes: ``fraction / got`` (0 if nothing)."""
    return np.divide(fraction, got, out=np.zeros_like(got), where=got > 0)


def _buy_tool_items(model, need, gen, listed, best, security, domestic_used):
    """Both tool items' markets, per request, each in two parts that complement each other.

    The categories Chinese makers offer (``model.tool_coverage``) are a market of domestic
    and foreign tools; the others (metrology, implant, ...) can only come from abroad or
    from the stock. What the fab actually takes (and draws from the stock) is decided in
    :func:`buy_tools`, once the scarcest part is known.

    Args:
        model: the model (its regime, foreign supply, stock and domestic tool supply).
        need: (items, requests) tools needed, US$ bn, items in :data:`TOOL_ITEMS` order.
        gen: (requests,) node generation each request builds at.
        listed: (requests,) whether the requesting firm is on the entity list.
        best: best domestic generation per firm line.
        security: buyers' supply-security concern (logit units).
        domestic_used: per item, domestic tools already sold this quarter.

    Returns ``(covered, uncovered, per_origin)``: two :class:`ToolPart` and, per item,
    each request's origin split of its foreign purchases. Requests of an item are the rows
    of a single-column market: one domestic tool pool per item serves them all.
    """
    p = model.p
    dom = domestic_input_gens(p, best)
    dom_gen = np.array([[dom[item]] for item in TOOL_ITEMS])
    adequate = (dom_gen >= gen - GEN_TOLERANCE).astype(float)
    gap = np.maximum(0.0, gen - dom_gen)
    bias = np.array([[p["sourcing.domestic_bias"][item]] for item in TOOL_ITEMS])
    want = domestic_preference(
        bias,
        p["technology.ramp_quality_gap_cost"],
        gap,
        model.china.procurement_preference,
        security,
    )
    foreign_open, splits = _tools_open(model, gen, listed)
    # Tools stockpiled before the rules serve part of what the rules now block. No stock
    # covers nothing (as stock_cover says) without computing the blocked needs.
    cover = np.array(
        [
            [0.0 if stock <= 0 else stock_cover(stock, need[i] * (1.0 - foreign_open[i]))]
            for i, stock in enumerate(model.stockpile.stock[item] for item in TOOL_ITEMS)
        ]
    )
    reachable = foreign_open + (1.0 - foreign_open) * cover
    supply = np.array(
        [
            max(0.0, model.line_supply[FIRM_LINE_INDEX[item]] - used)
            for item, used in zip(TOOL_ITEMS, domestic_used, strict=True)
        ]
    )
    coverage = np.array([[model.tool_coverage[item]] for item in TOOL_ITEMS])
    need_covered = need * coverage
    # The market takes (requests, items): transposed views, each item's column contiguous.
    cleared = clear(need_covered.T, want.T, reachable.T, supply, adequate.T)
    stock_part = np.divide(
        reachable - foreign_open, reachable, out=np.zeros_like(reachable), where=reachable > 0
    )
    not_stock = 1.0 - stock_part
    foreign = cleared.foreign.T
    domestic = cleared.domestic.T
    covered = ToolPart(
        domestic,
        foreign * not_stock,
        foreign * stock_part,
        _obtained_share(domestic + foreign, need_covered),
    )
    need_other = need - need_covered
    abroad = need_other * reachable
    uncovered = ToolPart(
        None,  # nothing of these categories is made at home
        abroad * not_stock,
        abroad * stock_part,
        _obtained_share(abroad, need_other),
    )
    return covered, uncovered, splits


def _tools_open(model, gen, listed):
    """Per item and request: share of foreign tool supply open for expansion, origin split.

    Returns ``(open_share, splits)``: ``open_share`` (items, requests) and ``splits``, per
    item in :data:`TOOL_ITEMS` order, each request's (requests, origins) split. Open shares
    are computed once per interval of the rules (a handful) and buyer kind, then looked up
    per request by index. The interval of a request does not depend on the item or on the
    buyer kind (the rules' thresholds are shared), so it is found once: a request's row is
    its interval, offset by the number of intervals for a listed buyer.
    """
    memo = model.regime.memo(model.quarter, model.compliance, model.us_technology)
    kept = memo.get("tools_open")
    if kept is None:
        args = (model.quarter, model.compliance, model.us_technology)
        totals, splits = [], []
        for item in TOOL_ITEMS:
            per_kind = []
            for flag in (False, True):
                thresholds, blocked = model.regime.blocked_table(item, flag, *args)
                per_kind.append(_open_split(model, item, blocked))
            totals.append(np.concatenate([total for total, _ in per_kind]))
            splits.append(np.concatenate([split for _, split in per_kind]))
        kept = memo["tools_open"] = (np.stack(totals), splits, thresholds)
    open_share, splits, thresholds = kept
    row = thresholds.searchsorted(gen, side="right")
    if listed.any():
        row = row + listed * (thresholds.size + 1)  # the listed kind's rows follow
    return open_share.take(row, axis=1), [split[row] for split in splits]


def _open_split(model, item: str, blocked: np.ndarray):
    """Per interval of the rules: open share of ``item`` and the origin split of it.

    ``blocked`` is (intervals, origins), as :meth:`ExportControlRegime.blocked_table` gives.
    """
    open_by_origin = (1.0 - blocked) * model.foreign_share[item][None, :]
    open_total = open_by_origin.sum(axis=1)
    split = np.divide(
        open_by_origin,
        open_total[:, None],
        out=np.zeros_like(open_by_origin),
        where=open_total[:, None] > 0,
    )
    return open_total, split


def expansion_appetite(utilisation, threshold: float, width: float):
    """Share of cash a firm is willing to spend on expansion, from its utilisation.

    0 below ``threshold - width``, rising linearly to 1 at ``threshold`` (shares of
    capacity sold).
    """
    return np.clip((utilisation - (threshold - width)) / width, 0.0, 1.0)


def invest_and_build(
    model,
    state_money: np.ndarray,
    state_rd: np.ndarray,
    private: np.ndarray,
    best: np.ndarray,
    talent_factor: float,
    security: float,
    appetite: np.ndarray | None = None,
) -> dict:
    """Cash, capex, tools, building and depreciation for one quarter.

    ``appetite`` is :func:`firm_appetite` when the caller has it already this quarter
    (utilisation does not change in between).

    Returns:
        dict with tool purchases (see :func:`buy_tools`) and ``capex_usd_bn`` (fab capex).
    """
    f = model.firms
    n = f.n
    honest = f.alive[:n] & ~(f.fraud[:n] & f.alive[:n])
    fab = honest & in_lines(f.line_index(), FAB_LINES)
    _cash_flow(model, state_money, state_rd, private)
    spend = _expansion_spend(model, honest, appetite)
    req_rows, req_spend, req_gen, req_col = _capex_requests(model, fab, spend)
    tools = buy_tools(model, req_rows, req_spend, req_gen, best, security)
    used_req = req_spend * tools["fraction"]
    rounds = [(req_rows, req_col, used_req, req_gen)]
    if model.p["firm_finance.fallback_investment"]:
        rounds += _fallback_rounds(
            model, tools, req_rows, req_spend - used_req, req_gen, best, security
        )
    rows = np.concatenate([r for r, _, _, _ in rounds])
    cols = np.concatenate([c for _, c, _, _ in rounds])
    used = np.concatenate([u for _, _, u, _ in rounds])
    gens = np.concatenate([g for _, _, _, g in rounds])
    cost = multipatterning_factor(model, rows, gens, best)
    _build(model, honest & ~fab, spend, rows, cols, used, talent_factor, cost)
    tools["capex_usd_bn"] = float(used.sum())
    tools["cash_returned_usd_bn"] = return_idle_cash(model)
    return tools


def _fallback_rounds(model, tools, rows, unplaced, gen, best, security) -> list:
    """Re-place capex that could not be equipped, at the best node the firm's tools allow.

    Then at the mature tier's best node; what still cannot be placed stays in cash. A fab
    whose tools are blocked at its best node builds what it can equip (SMIC kept adding
    28 nm capacity after its 2020 listing) rather than building nothing. Each round
    buys from what is left of the domestic tool pool, and its purchases are added to
    ``tools``. Returns ``[(rows, vintage columns, capex placed, generations)]`` per round.
    """
    out = []
    if not (unplaced > 0).any():
        return out
    listed = model.firms.listed[rows]
    unlisted_ceiling = equip_ceiling_gen(model, best, False)
    if listed.any():
        ceiling = np.where(listed, equip_ceiling_gen(model, best, True), unlisted_ceiling)
    else:
        ceiling = np.full(rows.size, unlisted_ceiling)
    for level in (ceiling, np.full(rows.size, MATURE_BEST_GEN)):
        target = np.minimum(gen, level)
        again = (unplaced > 0) & (target < gen - GEN_TOLERANCE)
        if not again.any():
            continue
        r, s, g = rows[again], unplaced[again], target[again]
        got = buy_tools(model, r, s, g, best, security, domestic_used=tools["domestic"])
        placed = s * got["fraction"]
        _add_purchases(tools, got)
        col = np.where(
            model.firms.line[r] == FIRM_LINE_INDEX["foundry"], vintage_column(g), VINTAGE_BASE
        )
        out.append((r, col, placed, g))
        unplaced = unplaced.copy()
        unplaced[again] -= placed
        gen = np.where(again, target, gen)
    return out


def _add_purchases(total: dict, extra: dict) -> None:
    """Add a round's tool purchases to the quarter's totals (in place).

    ``need`` stays the first round's: later rounds ask again for money it could not place.
    """
    for item in extra["domestic"]:
        total["domestic"][item] += extra["domestic"][item]
        total["foreign"][item] += extra["foreign"][item]
        total["foreign_by_origin_item"][item] = (
            total["foreign_by_origin_item"][item] + extra["foreign_by_origin_item"][item]
        )
    total["foreign_by_origin"] = total["foreign_by_origin"] + extra["foreign_by_origin"]


def equip_ceiling_gen(model, best: np.ndarray, listed: bool) -> float:
    """Highest node generation a (listed) fab can equip new capacity for this quarter.

    For each tool item, the higher of what foreign supply still opens (enough of it,
    ``controls.access_minimum_pct``) and what domestic tool makers can make (lithography
    with multipatterning); the fab needs both items, so the lower of the two.
    """
    domestic = domestic_input_gens(model.p, best)
    return min(
        max(foreign_access_gen(model, item, listed), domestic[item])
        for item in ("litho_equipment", "other_equipment")
    )


def _cash_flow(model, state_money, state_rd, private) -> None:
    """Profit, R&D, state and private money into each firm's cash; frauds keep nothing."""
    p = model.p
    f = model.firms
    n = f.n
    alive = f.alive[:n]
    fraud = f.fraud[:n] & alive
    honest = alive & ~fraud
    margin = p["firm_finance.operating_margin_pct"] / 100.0
    fab_line = in_lines(f.line_index(), FAB_LINES)
    margin_vec = np.where(
        fab_line, margin + p["firm_finance.tax_exemption_margin_pp"] / 100.0, margin
    )
    floor = p["firm_finance.minimum_scale_usd_bn"] * p["china_firms.real_firms_per_agent"]
    overhead_pct = p["firm_finance.overhead_pct_of_capacity_per_quarter"]
    overhead = overhead_pct / 100.0 * (f.total_capacity() + floor)
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


def firm_appetite(model) -> np.ndarray:
    """Each firm's appetite for expansion (0-1) from the share of its capacity it sold.

    Firms expand when they sell most of what they make; a new firm (no capacity yet) builds.
    """
    p = model.p
    f = model.firms
    return expansion_appetite(
        f.utilisation[: f.n],
        p["firm_finance.expansion_utilisation_threshold_pct"] / 100.0,
        p["firm_finance.expansion_ramp_width_pct"] / 100.0,
    )


def private_weights(model, live: np.ndarray, appetite: np.ndarray | None = None) -> np.ndarray:
    """How private capital spreads over firms: by sales, mostly of growing firms.

    It follows sales (F21: STAR listings of firms with revenue), and mostly the sales of
    firms that are growing, which can use it. ``appetite`` is :func:`firm_appetite` when the
    caller has it already this quarter.
    """
    p = model.p
    f = model.firms
    n = f.n
    floor = p["firm_finance.minimum_scale_usd_bn"] * p["china_firms.real_firms_per_agent"]
    idle = p["private.weight_without_expansion"]
    if appetite is None:
        appetite = firm_appetite(model)
    growth = idle + (1.0 - idle) * appetite
    return np.where(live, (f.revenue_usd_bn[:n] + floor) * growth, 0.0)


def investable_share(model, live: np.ndarray, appetite: np.ndarray | None = None) -> float:
    """Share of the private money on offer that is raised: as much as firms can invest.

    Investors fund firms that are growing; the sales-weighted appetite of the sector for
    expansion (0-1) scales what is raised, so money that could not be placed is not
    raised in the first place. ``appetite`` as in :func:`private_weights`.
    """
    f = model.firms
    n = f.n
    floor = (
        model.p["firm_finance.minimum_scale_usd_bn"] * model.p["china_firms.real_firms_per_agent"]
    )
    sales = np.where(live, f.revenue_usd_bn[:n] + floor, 0.0)
    total = sales.sum()
    if appetite is None:
        appetite = firm_appetite(model)
    return float((sales * appetite).sum() / total) if total > 0 else 0.0


def idle_cash(model) -> np.ndarray:
    """Each firm's cash beyond its working reserve (``cash_reserve_quarters`` of revenue)."""
    f = model.firms
    n = f.n
    reserve = model.p["firm_finance.cash_reserve_quarters"] * f.revenue_usd_bn[:n]
    return np.where(f.alive[:n], np.maximum(0.0, f.cash_usd_bn[:n] - reserve), 0.0)


def return_idle_cash(model) -> float:
    """Cash beyond a working reserve flows back to investors; returns the amount, US$ bn.

    Money a firm cannot invest is not held for ever (repaid loans, buy-backs, funds
    recalled): each quarter a share of the cash above ``firm_finance.cash_reserve_quarters``
    of revenue leaves the sector.
    """
    p = model.p
    f = model.firms
    n = f.n
    back = idle_cash(model) * p["firm_finance.idle_cash_return_pct_per_quarter"] / 100.0
    f.cash_usd_bn[:n] -= back
    return float(back.sum())


def _expansion_spend(model, honest: np.ndarray, appetite: np.ndarray | None = None) -> np.ndarray:
    """Capex each firm wants this quarter: a share of its cash, as its appetite allows."""
    p = model.p
    f = model.firms
    n = f.n
    if appetite is None:
        appetite = firm_appetite(model)
    spend_share = p["firm_finance.cash_spend_pct_per_quarter"]
    return np.where(
        honest, appetite * spend_share / 100.0 * np.maximum(f.cash_usd_bn[:n], 0.0), 0.0
    )


def _capex_requests(model, fab: np.ndarray, spend: np.ndarray):
    """Fabs' projects as requests (row, project capex, generation, vintage column).

    A foundry spends part of its capex at its best node and the rest on mature capacity;
    other fabs build at their node; non-fab lines need no controlled tools. A project is
    the firm's cash plus what co-investors put in beside it
    (``firm_finance.fab_co_investment_ratio``).
    """
    f = model.firms
    n = f.n
    foundry = fab & (f.line[:n] == FIRM_LINE_INDEX["foundry"])
    frontier_share = model.p["firm_finance.foundry_frontier_capex_pct"] / 100.0
    fr = np.nonzero(foundry & (spend > 0))[0]
    of = np.nonzero(fab & ~foundry & (spend > 0))[0]
    rows = np.concatenate([fr, fr, of])
    # Projects of the requesting rows only (per line: 1 + the co-investment ratio).
    with_partners = 1.0 + co_investment_ratio(model)
    project_fr = spend[fr] * with_partners[f.line[fr]]
    project_of = spend[of] * with_partners[f.line[of]]
    req_spend = np.concatenate(
        [project_fr * frontier_share, project_fr * (1 - frontier_share), project_of]
    )
    gen_fr = f.gen[fr]
    gen = np.concatenate([gen_fr, np.minimum(gen_fr, MATURE_BEST_GEN), f.gen[of]])
    col = np.concatenate(
        [vintage_column(gen_fr), np.full(fr.size, VINTAGE_BASE), np.full(of.size, VINTAGE_BASE)]
    )
    return rows, req_spend, gen, col


def co_investment_ratio(model) -> np.ndarray:
    """(lines,) co-investors' money per US$ of a firm's own cash in its fab projects."""
    return model.line_table("firm_finance.fab_co_investment_ratio", missing=0.0)


def single_exposure_gen(model, best: np.ndarray, listed: bool) -> float:
    """Highest generation a (listed) fab can print in one exposure with the scanners it gets.

    Foreign scanners where enough supply is open, else domestic ones.
    """
    domestic = best[FIRM_LINE_INDEX["litho_equipment"]]
    return max(foreign_access_gen(model, "litho_equipment", listed), domestic)


def multipatterning_factor(model, rows: np.ndarray, gens: np.ndarray, best: np.ndarray):
    """Capex per unit of capacity, relative to single exposure, for each request.

    Building beyond what the fab's scanners print in one exposure takes multipatterning
    (up to ``frontier.multipatterning_bonus_generations``): more passes per wafer and lower
    yields, so each generation beyond costs ``technology.multipatterning_cost_pct_per_generation``
    more capex per unit of output.
    """
    listed = model.firms.listed[rows]
    single = np.where(
        listed, single_exposure_gen(model, best, True), single_exposure_gen(model, best, False)
    )
    beyond = np.maximum(0.0, gens - single)
    return 1.0 + model.p["technology.multipatterning_cost_pct_per_generation"] / 100.0 * beyond


def _build(
    model, plain_mask, spend, req_rows, req_col, used_req, talent_factor, cost_factor
) -> None:
    """Spend the cash, queue the capacity it buys, complete part of the queue, depreciate.

    ``plain_mask`` marks honest firms outside the fab lines: they spend what they want
    without controlled tools. ``used_req`` is project capex placed; the firm pays its own
    share of it (the rest is co-investors'); ``cost_factor`` scales each request's capex per
    unit of output (multipatterning).
    """
    p = model.p
    f = model.firms
    n = f.n
    line = f.line_index()
    kappa = model.line_table("firm_finance.capex_per_annual_output")
    build_q = model.line_table("firm_finance.build_quarters")
    # Per-line factors are computed per line, then looked up per firm (the same values).
    kappa_q = kappa * QUARTERS_PER_YEAR
    used = np.where(plain_mask, spend, 0.0)
    own_share = 1.0 / (1.0 + co_investment_ratio(model))
    req_line = line[req_rows]
    np.add.at(used, req_rows, used_req * own_share.take(req_line))
    f.cash_usd_bn[:n] -= used
    per_output = kappa_q.take(req_line) * cost_factor
    np.add.at(f.pending[:n], (req_rows, req_col), used_req / per_output)
    # Plain firms queue what they spend at the base vintage; other rows add nothing (0.0).
    f.pending[:n, VINTAGE_BASE] += np.where(plain_mask, used / kappa_q.take(line), 0.0)
    # A quarter completes at most what is queued, however fast talent lets firms build.
    done = f.pending[:n] * np.minimum(1.0, talent_factor / build_q).take(line)[:, None]
    f.pending[:n] -= done
    cap = f.cap[:n]  # in place: the same products and sums, without temporaries
    cap *= 1 - p["firm_finance.depreciation_pct_per_quarter"] / 100.0
    cap += done
