"""How many seeds x parameter draws a requested Monte-Carlo precision needs (``--precision``).

``decouple batch --dry-run --precision H`` answers: how many runs make the 95% interval of
a headline estimate about ``H`` percentage points wide on each side (its half-width)? Two
estimates are planned, both of ``self_sufficiency_pct`` (:data:`OUTPUT`) in one calendar
year (``--precision-year``, default 2030), for the first scenario of the batch:

* **the median** over runs. For ``n`` independent runs the half-width of a median's
  interval is about ``z / (2 f(m) sqrt(n))``, ``f(m)`` the density at the median; for a
  normal spread ``1 / (2 f(m)) = sqrt(pi / 2) * sd``, so
  ``n = (z * sqrt(pi / 2) * sd / H)^2``, with ``sd`` measured by a pilot;
* **a threshold probability** (reaching X% by the year). Its Wilson interval's half-width
  is about ``z * sqrt(p (1 - p) / n)`` for large ``n``; planned at the worst case
  ``p = 50%`` (no pilot can tell ``p`` well), so ``n = z^2 / (4 H^2)`` with ``H`` a
  fraction.

Those ``n`` count *independent* runs. A batch crosses ``S`` seeds with ``K`` parameter
draws, and the runs of one draw are alike in their parameters, so ``K x S`` runs are worth
fewer independent ones: with ``rho`` the share of the runs' variance that lies between
draws (one-way analysis of variance of the pilot), the design effect of the clusters is
``1 + (S - 1) rho`` and the draws needed are ``K = n (1 + (S - 1) rho) / S``. Every run
costs the same whatever its draw, so the cheapest design for a pooled estimate is one
seed per draw (``--seeds 1 --sample lhs:n``), and more seeds per draw only help when
``rho`` is small. Without ``--sample`` only seeds vary and ``n`` seeds are needed.

The pilot runs the first scenario in-process: up to :data:`PILOT_DRAWS` draws of the
batch's own design x :data:`PILOT_SEEDS` seeds (or :data:`PILOT_SEEDS_ONLY` seeds when
nothing is sampled). Eight runs measure ``sd`` to within about +/-25% and ``rho`` only
roughly: the counts are a planning guide, to be checked against the intervals the report
prints once the batch has run.

Only the standard library is imported at module level (numpy and scipy inside the
functions): the CLI imports the batch engine at start-up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import BatchError

#: The output whose precision is planned: the report's headline.
OUTPUT = "self_sufficiency_pct"

#: Confidence level of the planned intervals: the report's (``analysis.stats.MC_CONFIDENCE``).
CONFIDENCE = 0.95

#: Default calendar year of the planned estimates.
DEFAULT_YEAR = 2030

#: Pilot: parameter draws x seeds per draw when the batch samples parameters.
PILOT_DRAWS = 4
PILOT_SEEDS = 2

#: Pilot: seeds when the batch samples nothing.
PILOT_SEEDS_ONLY = 8

#: Threshold probability planned at its worst case (the widest interval).
WORST_CASE_P = 0.5


@dataclass(frozen=True)
class Spread:
    """What a pilot measured of the planned output's spread across runs.

    Attributes:
        sd_pp: standard deviation across all pilot runs (pp).
        between_share: ``rho``, the share of the variance between parameter draws (0-1;
            0 when the pilot has one draw).
        draws: parameter draws in the pilot.
        seeds: seeds per draw in the pilot.
        seconds_per_run: mean wall time of a pilot run, in-process.
    """

    sd_pp: float
    between_share: float
    draws: int
    seeds: int
    seconds_per_run: float


def z_value(confidence: float = CONFIDENCE) -> float:
    """The two-sided normal quantile of ``confidence`` (1.96 for 95%)."""
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2))


def spread_of(values) -> tuple[float, float]:
    """``(sd, rho)`` of a ``draws x seeds`` array by one-way analysis of variance.

    ``sd`` is the standard deviation of all values; ``rho`` is the between-draw variance
    component over the total, ``(MSB - MSW) / S`` over ``that + MSW``, clipped to [0, 1]
    (0 with a single draw).

    Raises:
        ValueError: with fewer than two values.
    """
    import numpy as np

    y = np.asarray(values, dtype=float)
    if y.ndim != 2 or y.size < 2:
        raise ValueError("the pilot needs at least two runs")
    k, s = y.shape
    sd = float(np.std(y, ddof=1))
    if k < 2 or s < 2:
        return sd, 0.0 if k < 2 else 1.0
    msw = float(np.var(y, axis=1, ddof=1).mean())
    msb = float(s * np.var(y.mean(axis=1), ddof=1))
    between = max(0.0, (msb - msw) / s)
    total = between + msw
    return sd, (between / total if total > 0 else 0.0)


def runs_for_median(sd_pp: float, half_width_pp: float, confidence: float = CONFIDENCE) -> int:
    """Independent runs that give the median's interval a half-width of ``half_width_pp``.

    Normal approximation of the order-statistic interval: ``z sqrt(pi/2) sd / sqrt(n)``.
    """
    if half_width_pp <= 0:
        raise ValueError("the half-width must be positive")
    n = (z_value(confidence) * math.sqrt(math.pi / 2) * sd_pp / half_width_pp) ** 2
    return max(1, math.ceil(n))


def runs_for_probability(
    half_width_pp: float, p: float = WORST_CASE_P, confidence: float = CONFIDENCE
) -> int:
    """Independent runs that give a probability ``p`` an interval half-width of ``half_width_pp``.

    ``n = z^2 p (1 - p) / H^2`` (``H`` as a fraction), the large-``n`` width of the Wilson
    interval; at ``p = 0.5`` it is the most any probability needs.
    """
    if half_width_pp <= 0:
        raise ValueError("the half-width must be positive")
    h = half_width_pp / 100.0
    return max(1, math.ceil(z_value(confidence) ** 2 * p * (1 - p) / h**2))


def draws_needed(independent_runs: int, seeds: int, between_share: float) -> int:
    """Parameter draws ``K`` at ``seeds`` per draw worth ``independent_runs`` independent runs.

    ``K = n (1 + (S - 1) rho) / S``: the design effect of ``S`` runs sharing a draw.
    """
    deff = 1 + (seeds - 1) * between_share
    return max(1, math.ceil(independent_runs * deff / seeds))


def pilot(plan, year: int = DEFAULT_YEAR) -> Spread:
    """Run the pilot of the batch's first scenario and measure the output's spread in ``year``.

    Uses the batch's own root entropy and its first sample draws, so the pilot's runs are
    runs of the batch.

    Raises:
        BatchError: if ``year`` is outside the first scenario's horizon.
    """
    import numpy as np

    from model.run import replicate_seed, simulate

    _, sc = plan.scenarios[0]
    first, last = int(str(sc.start)[:4]), int(str(sc.end)[:4])
    if not first <= year <= last:
        raise BatchError(
            f"--precision-year {year} is outside scenario '{sc.name}''s horizon "
            f"({sc.start}-{sc.end}); choose a year from {first} to {last}"
        )
    sampled = plan.design.method != "none"
    draws = min(PILOT_DRAWS, plan.design.n) if sampled else 1
    seeds = PILOT_SEEDS if sampled else PILOT_SEEDS_ONLY
    values = np.empty((draws, seeds))
    t0 = time.perf_counter()
    for k in range(draws):
        sample = dict(plan.design.values[k])
        for i in range(seeds):
            cols = simulate(sc, replicate_seed(plan.root_entropy, i), sample=sample)
            values[k, i] = float(np.mean(cols[OUTPUT][cols["year"] == year]))
    per_run = (time.perf_counter() - t0) / values.size
    sd, rho = spread_of(values)
    return Spread(sd, rho, draws, seeds, per_run)


def plan_lines(
    spread: Spread,
    half_width_pp: float,
    seeds: int,
    sampled: bool,
    year: int,
    scenario: str,
    thresholds: Sequence[str] = ("a threshold probability",),
) -> list[str]:
    """The dry run's lines: runs, seeds and draws each planned estimate needs."""
    z_conf = f"{CONFIDENCE:.0%}"
    share = f", {spread.between_share:.0%} of it between parameter draws" if sampled else ""
    lines = [
        f"  precision: {z_conf} interval half-width {half_width_pp:g} pp, {OUTPUT} in {year}, "
        f"scenario '{scenario}' (pilot: {spread.draws} draw(s) x {spread.seeds} seed(s); "
        f"sd across runs {spread.sd_pp:.2f} pp{share}; a rough guide)"
    ]
    targets = [
        ("the median", runs_for_median(spread.sd_pp, half_width_pp)),
        (f"{thresholds[0]} (worst case p = 50%)", runs_for_probability(half_width_pp)),
    ]
    for what, n in targets:
        if not sampled:
            lines.append(f"    {what}: {n:,} independent runs = --seeds {n}")
            continue
        k = draws_needed(n, seeds, spread.between_share)
        lines.append(
            f"    {what}: {n:,} independent runs; with --seeds {seeds}: {k:,} draws "
            f"({seeds * k:,} runs); cheapest: --seeds 1 --sample lhs:{n}"
        )
    return lines
