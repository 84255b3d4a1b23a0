"""China's chip demand and the sourcing choice between domestic and foreign supply.

Mechanisms 1 and 2 of DESIGN.md. Demand grows with the world market (F30) and is split by
tier; each buyer wants a share of each tier from domestic suppliers (a logit of quality gap,
procurement pressure and supply-security concern), is forced to domestic supply where
controls block foreign supply, and is left short (unmet demand) when domestic supply cannot
make up the difference. The same clearing serves upstream purchases (tools, EDA, materials,
packaging, design) with China's industry as the single buyer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .taxonomy import TIERS


def interpolate_points(points: list, year: float) -> float:
    """Piecewise-linear value of ``[[year, value], ...]`` at ``year`` (flat outside)."""
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    return float(np.interp(year, xs, ys))


def tier_shares(p: dict, year: float) -> np.ndarray:
    """Shares (sum 1) of China's chip demand by tier; ``mature`` is the remainder."""
    shares = {
        t: interpolate_points(p[f"demand.tier_share_pct.{t}"], year) for t in TIERS if t != "mature"
    }
    shares["mature"] = 100.0 - sum(shares.values())
    if shares["mature"] < 0:
        raise ValueError(f"demand tier shares exceed 100% in {year:.0f}: {shares}")
    return np.array([shares[t] for t in TIERS]) / 100.0


def world_market_usd_bn_per_year(p: dict, year: float) -> float:
    """World semiconductor market at ``year`` (F30's US$600 bn in 2022, grown or backcast)."""
    g = p["demand.world_market_growth_pct_per_year"] / 100.0
    years = year - p["demand.world_market_reference_year"]
    return p["demand.world_market_usd_bn_2022"] * (1.0 + g) ** years


def logistic(x):
    """The logistic function, elementwise: a logit (log-odds) to a share in (0, 1)."""
    return 1.0 / (1.0 + np.exp(-x))


def domestic_preference(bias, gap_cost, gap, pressure, security):
    """Share of a purchase a buyer wants from domestic suppliers where it has a choice.

    A logit of the item's domestic bias, less the cost of each generation the domestic
    product is behind (``gap``), plus procurement pressure and supply-security concern
    (mechanism 2). Arguments broadcast; the terms are added in this order.
    """
    return logistic(bias - gap_cost * gap + pressure + security)


def reachable_share(open_share, domestic_ok):
    """Share of a need that can be met: open abroad, or adequate at home.

    The share still open abroad, plus the rest where domestic supply is adequate
    (``domestic_ok`` 1) and none of it where it is not (0).
    """
    return open_share + (1 - open_share) * domestic_ok


def with_exports(sold_at_home, export_ratio: float):
    """Share of capacity sold, exports (up to ``export_ratio`` per US$ sold at home) included."""
    return min(1.0, sold_at_home * (1.0 + export_ratio))


def safe_share(part, whole) -> float:
    """``part / whole`` as a float, 0 when ``whole`` is not positive."""
    return float(part / whole) if whole > 0 else 0.0


@dataclass
class Cleared:
    """Result of clearing one market (arrays broadcast over buyers and items)."""

    domestic: np.ndarray
    foreign: np.ndarray
    unmet: np.ndarray
    blocked_demand: np.ndarray
    fill: np.ndarray


def clear(demand, want_domestic_share, foreign_open, domestic_supply, adequate=1.0) -> Cleared:
    """Split demand between domestic supply, foreign supply and unmet demand.

    The part of a buyer's demand that controls keep from foreign suppliers must be bought at
    home (forced); of the part still open abroad, the buyer chooses the domestic share it
    wants. Forced demand is served first (buyers with no alternative pay what it takes, and
    the state sees to it); voluntary domestic demand shares what is left and falls back on
    foreign suppliers when domestic supply runs out. Forced demand that domestic suppliers
    cannot meet, or cannot meet at the needed technology (``adequate`` = 0), is unmet.

    Args:
        demand: (B, K) demand by buyer and item, US$ bn.
        want_domestic_share: (B, K) domestic share each buyer chooses where it has a choice.
        foreign_open: (B, K) share of foreign supply still reachable under controls.
        domestic_supply: (K,) what domestic suppliers can deliver.
        adequate: (B, K) or scalar, 1 where domestic supply can do the job (technology).

    Returns:
        :class:`Cleared`; ``domestic + foreign + unmet == demand`` element-wise.
    """
    blocked = demand * (1.0 - foreign_open)
    # Products used twice below are computed once (the same operations, in the same order).
    forced = blocked if isinstance(adequate, float) and adequate == 1.0 else blocked * adequate
    open_demand = demand * foreign_open
    want = open_demand * want_domestic_share * adequate
    forced_total = forced.sum(axis=0)
    want_total = want.sum(axis=0)
    has_forced = forced_total > 0
    has_want = want_total > 0
    # A market fills fully unless its demand exceeds supply; only there is the quotient
    # (below 1) computed, so no division can overflow or divide by zero.
    fill_forced = _fill(domestic_supply, forced_total, has_forced)
    left = np.maximum(0.0, domestic_supply - forced_total * fill_forced)
    fill_want = _fill(left, want_total, has_want)
    forced_met = forced * fill_forced
    want_met = want * fill_want
    domestic = forced_met + want_met
    foreign = open_demand - want_met
    unmet = blocked - forced_met
    return Cleared(domestic, foreign, unmet, blocked, fill_want)


def _fill(supply, total, has_demand):
    """``min(1, supply / total)`` where there is demand, else 1 (``total``'s shape).

    ``supply`` is (K,) or broadcasts to ``total``'s shape.
    """
    short = has_demand & (total > supply)
    # Where not short the quotient is supply / 1 and is replaced: no division by zero.
    return np.where(short, supply / np.where(short, total, 1.0), 1.0)


@dataclass
class UnmetPaths:
    """Where demand that controls cut off and domestic fabs could not meet goes.

    Attributes:
        substituted: (B, K) met by domestic chips of an older logic tier (by demand tier).
        substituted_from: (K,) that substitution by the tier that supplied it.
        grey: (B, K) bought through third countries (grey imports).
        lost: (B, K) not bought at all: device sales lost.
    """

    substituted: np.ndarray
    substituted_from: np.ndarray
    grey: np.ndarray
    lost: np.ndarray


def unmet_paths(unmet, spare, n_logic: int, substitution_share: float, grey_share: float):
    """Split unmet demand (B, K) into substitution, grey imports and lost sales.

    Up to ``substitution_share`` of each logic tier's unmet demand moves to domestic
    capacity left unsold in the next older logic tier (a design moved one node back: tiers
    are ordered leading, advanced, mature, then non-logic tiers, which do not substitute);
    ``grey_share`` of the rest is bought through third countries; the remainder is lost.

    Args:
        unmet: (B, K) unmet demand by buyer and tier.
        spare: (K,) domestic capacity not sold this quarter.
        n_logic: how many leading tiers are logic tiers that can move to an older one.
        substitution_share: 0-1.
        grey_share: 0-1.
    """
    spare = np.maximum(spare, 0.0).astype(float)
    unmet_k = unmet.sum(axis=0)
    sub_k = np.zeros_like(unmet_k)
    sub_from = np.zeros_like(unmet_k)
    for k in range(n_logic - 1):  # each logic tier to the next older one only
        take = min(substitution_share * unmet_k[k], spare[k + 1])
        spare[k + 1] -= take
        sub_k[k] += take
        sub_from[k + 1] += take
    share = np.divide(sub_k, unmet_k, out=np.zeros_like(unmet_k), where=unmet_k > 0)
    substituted = unmet * share[None, :]
    rest = unmet - substituted
    grey = rest * grey_share
    return UnmetPaths(substituted, sub_from, grey, rest - grey)


def relocation_step(relocated: float, ceiling: float, rate: float) -> float:
    """Share of China's demand relocated abroad after one more quarter at ``rate``.

    The relocatable part (``ceiling``) moves at ``rate`` per quarter of what is still in
    China; nothing comes back.
    """
    return relocated + rate * max(0.0, ceiling - relocated)


def domestic_discount_pct(gap, per_generation_pct: float, max_pct: float):
    """Discount of a domestic product to the foreign one, % of its price, by quality gap.

    Domestic chips sell below the foreign product they compete with, more so the more
    generations they are behind, up to a ceiling; the discount narrows as the gap closes.
    """
    return np.minimum(max_pct, per_generation_pct * gap)
