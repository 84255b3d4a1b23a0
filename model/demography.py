"""Firm entry and failure: the swarm of small Chinese chip firms (F12, F13, F19).

Registered chip firms grew more than 700% in a decade to ~14,000 (F12). Entry here follows
the money available (state plus private, F11): each US$ bn brings a calibrated number of new
registrations, some of them frauds that chase local subsidies (F19), more so when money per
firm is plentiful. Firms fail at a base hazard, faster when out of cash, and frauds are
exposed at their own hazard. National champions are rescued rather than closed (Tsinghua
Unigroup's restructuring kept its fabs running), so they do not fail here.
"""

from __future__ import annotations

import numpy as np

from .firms import FIRM_LINE_INDEX, FIRM_LINES, SwarmCohort
from .parameters import group

#: Floor of the money-per-firm ratio before its logarithm (no money at all).
RATIO_FLOOR = 1e-9


def line_mix(p: dict) -> np.ndarray:
    """Shares (sum 1) of swarm entrants by firm line, from ``china_firms.swarm_line_mix_pct``."""
    mix_pct = group(p, "china_firms.swarm_line_mix_pct")
    mix = np.array([mix_pct[name] for name in FIRM_LINES], dtype=float)
    return mix / mix.sum()


def swarm_lines(model, size: int) -> np.ndarray:
    """Draw firm lines for ``size`` swarm agents from the model's entrant line mix."""
    rng = model.stream("firms")
    # What ``rng.choice(len(FIRM_LINES), size, p=mix)`` does (the same draws and lines),
    # without its checks of ``mix`` (a validated parameter) on every call.
    cdf = model.swarm_line_mix.cumsum()
    cdf /= cdf[-1]
    return cdf.searchsorted(rng.random(size), side="right").astype(np.int8)


def fraud_probability(p: dict, money_per_firm_ratio: float) -> float:
    """Share of entrants that are frauds; rises when money per firm is plentiful (F19)."""
    base = p["china_firms.fraud_pct_of_entrants"] / 100.0
    frenzy = p["china_firms.fraud_frenzy_elasticity"] * max(
        0.0, np.log2(max(money_per_firm_ratio, RATIO_FLOOR))
    )
    cap = p["china_firms.fraud_max_pct_of_entrants"] / 100.0
    return float(min(cap, base * (1.0 + frenzy)))


def add_swarm(model, size: int, capacity_by_line: dict[str, float] | None, fraud_p: float) -> int:
    """Add ``size`` swarm firm rows as one :class:`SwarmCohort`; returns the count added."""
    if size <= 0:
        return 0
    p = model.p
    rng = model.stream("firms")
    lines = swarm_lines(model, size)
    weights = rng.lognormal(0.0, p["china_firms.swarm_capacity_sigma"], size)
    if capacity_by_line is None:
        capacity = (
            p["firm_finance.minimum_scale_usd_bn"] * p["china_firms.real_firms_per_agent"] * weights
        )
    else:
        capacity = np.zeros(size)
        for name, total in capacity_by_line.items():
            m = lines == FIRM_LINE_INDEX[name]
            if m.any():
                capacity[m] = total * weights[m] / weights[m].sum()
    gen = model.line_best[lines] + p["china_firms.swarm_gen_offset_generations"]
    fraud = rng.random(size) < fraud_p
    capacity = np.where(fraud, 0.0, capacity)
    backing = rng.lognormal(0.0, p["china_firms.swarm_backing_sigma"], size)
    cohort = len(model.swarm_cohorts_created)
    rows = model.firms.add(
        lines, capacity, gen, backing, model.quarter, champion=False, fraud=fraud, cohort=cohort
    )
    agent = SwarmCohort(model, cohort, model.quarter, model.firms.ids[rows])
    model.swarm_cohorts[cohort] = agent
    model.swarm_cohorts_created.append(model.quarter)
    return size


def enter(model, money_usd_bn: float) -> int:
    """New swarm agents this quarter; returns how many entered."""
    p = model.p
    per_agent = p["china_firms.real_firms_per_agent"]
    expected = (
        p["china_firms.entry_firms_per_sqrt_usd_bn"] * np.sqrt(max(money_usd_bn, 0.0)) / per_agent
    )
    count = int(model.stream("firms").poisson(max(expected, 0.0)))
    alive_swarm = max(
        1, int((model.firms.alive[: model.firms.n] & ~model.firms.champion[: model.firms.n]).sum())
    )
    ratio = (money_usd_bn / alive_swarm) / model.money_per_firm_reference
    return add_swarm(model, count, None, fraud_probability(p, ratio))


def fail(model) -> tuple[int, float]:
    """Swarm agents that fail this quarter; returns (count, state money wasted with them)."""
    p = model.p
    f = model.firms
    n = f.n
    alive = f.alive[:n] & ~f.champion[:n]
    hazard = np.full(n, p["china_firms.failure_hazard_pct_per_quarter"] / 100.0)
    hazard += np.where(
        f.cash_usd_bn[:n] < 0, p["china_firms.distress_hazard_pct_per_quarter"] / 100.0, 0.0
    )
    hazard += np.where(f.fraud[:n], p["china_firms.fraud_exposure_pct_per_quarter"] / 100.0, 0.0)
    draw = model.stream("firms").random(n)
    dying = np.nonzero(alive & (draw < hazard))[0]
    if dying.size == 0:
        return 0, 0.0
    # Money already counted as wasted when paid to frauds is not counted again.
    wasted = float(f.state_funds_usd_bn[dying][~f.fraud[dying]].sum())
    f.alive[dying] = False
    counts = np.bincount(f.cohort[dying])
    for cohort in np.nonzero(counts)[0].tolist():
        model.swarm_cohorts[cohort].lose(int(counts[cohort]))
    return int(dying.size), wasted
