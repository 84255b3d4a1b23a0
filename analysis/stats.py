"""Batch statistics over a run store: bands, paired differences, thresholds, summary tables.

Conventions (documented for readers in ``docs/report.md``):

* **Runs.** A run is one (scenario, seed, sample). Bands and probabilities pool all runs of a
  scenario: every replicate seed of every parameter sample counts once.
* **Quantiles** use linear interpolation between order statistics (numpy's and pandas'
  default, "type 7"); ``n`` is the number of non-missing values behind each statistic.
* **Calendar years.** Stocks and shares (``*_pct``, ``*_nm``, alignment, ``firms_active``, ...)
  are end-of-quarter values; a calendar year's value is the mean of its quarters. Flows
  (``*_usd_bn``, ``firms_entered``, ``firms_failed``) are per quarter; a calendar year's
  value is the sum of its four quarters, and is missing when the run lacks a quarter of that
  year (so that a partial year is never mistaken for a full one).
* **Paired differences** compare scenario *s* with the baseline replicate by replicate:
  rows are matched on seed AND sample AND quarter (or calendar year). Replicate *i* of every
  scenario shares its random stream (common random numbers), so the difference removes the
  noise both runs share and isolates the effect of the scenario. Quantiles are then taken
  over the per-replicate differences (not the difference of the quantiles).
* **Thresholds.** A run has "reached X% self-sufficiency by year Y" when the calendar-year
  mean of its quarterly ``self_sufficiency_pct`` is >= X in Y or in any earlier year. A
  run that later falls back below X still counts as having reached it.
* **Monte-Carlo error.** Every estimate from a finite number of runs carries its own error:
  threshold probabilities get a Wilson score interval (``scipy.stats.binomtest``), and
  quantiles (medians, band ends, median paired differences) a distribution-free
  order-statistic interval (``scipy.stats.quantile_test``), both at
  :data:`MC_CONFIDENCE`. An interval end that the runs cannot bound (too few runs for that
  quantile at that confidence) is NaN: "more runs needed", never a made-up number.

All functions are vectorised (groupby / quantile / merge); none loops over rows.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from model.outputs import FLOW_COLUMNS, OUTPUT_BY_NAME, nice  # noqa: F401 (nice re-exported)
from model.parameters import default_value
from model.taxonomy import ALLIES, COUNTRIES, TIERS, UPSTREAM  # noqa: F401 (re-exported)

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    import pandas as pd

#: Named quantiles reported everywhere: column name -> probability.
QUANTILES: dict[str, float] = {
    "q05": 0.05,
    "q25": 0.25,
    "median": 0.50,
    "q75": 0.75,
    "q95": 0.95,
}

#: Columns that identify one run.
RUN_KEYS: tuple[str, ...] = ("scenario", "seed", "sample")

SEGMENTS = UPSTREAM

#: Derived column: total revenue foreign firms earn from China (sum over home countries).
FOREIGN_REVENUE_TOTAL = "foreign_revenue_from_china_usd_bn_total"

#: Self-sufficiency levels whose probability the report gives: two milestones and the goal
#: (``china.self_sufficiency_goal_pct``, F01).
THRESHOLDS_PCT: tuple[float, ...] = (
    30.0,
    50.0,
    float(default_value("china.self_sufficiency_goal_pct")),
)
THRESHOLD_YEARS: tuple[int, ...] = (2030, 2035)
SUMMARY_YEARS: tuple[int, ...] = (2025, 2030, 2035)

#: Confidence level of the Monte-Carlo intervals (Wilson and order-statistic).
MC_CONFIDENCE = 0.95

#: Quantiles of the summary table that get a Monte-Carlo interval: column -> probability.
CI_QUANTILES: dict[str, float] = {"median": 0.50, "q05": 0.05, "q95": 0.95}

#: Derived columns: fab equipment bought in China split by supplier origin (US$ bn).
DOMESTIC_EQUIPMENT = "domestic_equipment_purchases_usd_bn"
FOREIGN_EQUIPMENT = "foreign_equipment_purchases_usd_bn"

# --------------------------------------------------------------------------------------
# Variable catalogue: labels, units and definitions for captions and tables, read from the
# model's declared outputs (model/outputs.py), plus the columns analysis derives.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variable:
    """How an output column is labelled and what it means.

    Attributes:
        label: short human label for axes and table rows.
        unit: unit as printed (per quarter for flows).
        definition: one-sentence definition, with source where the contract gives one.
    """

    label: str
    unit: str
    definition: str


#: Columns the analysis derives from recorded ones: their description and whether they flow.
_DERIVED: dict[str, tuple[Variable, bool]] = {
    FOREIGN_REVENUE_TOTAL: (
        Variable(
            "Foreign firms' revenue from China (all countries)",
            "US$ bn",
            "revenue foreign-headquartered firms earn from Chinese buyers, summed over the "
            "six home countries",
        ),
        True,
    ),
    DOMESTIC_EQUIPMENT: (
        Variable(
            "Tools bought from Chinese makers",
            "US$ bn",
            "fab_equipment_purchases_usd_bn x domestic_equipment_share_pct / 100: tools bought "
            "in China from Chinese-headquartered tool makers",
        ),
        True,
    ),
    FOREIGN_EQUIPMENT: (
        Variable(
            "Tools bought from foreign makers",
            "US$ bn",
            "fab_equipment_purchases_usd_bn x (1 - domestic_equipment_share_pct / 100): tools "
            "bought in China from foreign-headquartered tool makers",
        ),
        True,
    ),
}


def is_flow(column: str) -> bool:
    """Return True if ``column`` is a per-quarter flow (summed, not averaged, over a year).

    Flows are declared in ``model/outputs.py`` (the ``*_usd_bn`` columns and
    ``firms_entered`` / ``firms_failed``); everything else is an end-of-quarter stock or share.
    """
    if column in _DERIVED:
        return _DERIVED[column][1]
    return column in FLOW_COLUMNS


def describe(column: str) -> Variable:
    """Return label, unit and definition of an output column.

    Flow units gain "per quarter" (the frequency of the stored value); annual tables state
    "per year" themselves.

    Args:
        column: an output column name (or a derived one such as
            :data:`FOREIGN_REVENUE_TOTAL`).
    """
    if column in _DERIVED:
        return _DERIVED[column][0]
    out = OUTPUT_BY_NAME.get(column)
    if out is None:
        return Variable(column.replace("_", " "), "", column)
    return Variable(out.label, out.unit, out.definition)


def annual_unit(column: str) -> str:
    """Unit of a column after calendar-year aggregation (flows become per year)."""
    unit = describe(column).unit
    return f"{unit} per year" if is_flow(column) else unit


def quarterly_unit(column: str) -> str:
    """Unit of a column as stored (flows are per quarter)."""
    unit = describe(column).unit
    return f"{unit} per quarter" if is_flow(column) else unit


# --------------------------------------------------------------------------------------
# Time helpers
# --------------------------------------------------------------------------------------


def fractional_year(quarter: pd.Series) -> pd.Series:
    """Map quarter labels such as ``"2021Q4"`` to the mid-point of the quarter in years.

    Quarter q of year Y maps to ``Y + (q - 0.5) / 4`` (2021Q1 -> 2021.125, 2021Q4 ->
    2021.875), so that a calendar-year figure plotted at ``Y + 0.5`` sits in the middle of
    its four quarters.
    """
    parts = quarter.astype(str).str.extract(r"^(\d{4})[Qq]([1-4])$")
    if parts.isna().any().any():
        bad = quarter[parts[0].isna()].iloc[0]
        raise ValueError(f"quarter label {bad!r} is not of the form YYYYQn")
    return parts[0].astype(int) + (parts[1].astype(int) - 0.5) / 4.0


def add_derived(frame: pd.DataFrame) -> pd.DataFrame:
    """Add derived columns when their inputs exist.

    The derived columns are the total foreign revenue from China (sum over home countries)
    and the fab equipment bought in China split into domestic and foreign suppliers (the
    volumes behind the domestic equipment share, so that a share near 100% of a shrunken
    market is not read as Chinese tools replacing foreign ones).

    Args:
        frame: a tidy run-store frame.

    Returns:
        The same frame (modified in place and returned for chaining).
    """
    parts = [c for c in frame.columns if c.startswith("foreign_revenue_from_china_usd_bn_")]
    parts = [c for c in parts if c != FOREIGN_REVENUE_TOTAL]
    if parts and FOREIGN_REVENUE_TOTAL not in frame.columns:
        frame[FOREIGN_REVENUE_TOTAL] = frame[parts].sum(axis=1, min_count=1)
    tools, share = "fab_equipment_purchases_usd_bn", "domestic_equipment_share_pct"
    if {tools, share} <= set(frame.columns) and DOMESTIC_EQUIPMENT not in frame.columns:
        frame[DOMESTIC_EQUIPMENT] = frame[tools] * frame[share] / 100.0
        frame[FOREIGN_EQUIPMENT] = frame[tools] - frame[DOMESTIC_EQUIPMENT]
    return frame


def run_counts(frame: pd.DataFrame) -> pd.Series:
    """Number of runs (distinct seed x sample) per scenario, indexed by scenario."""
    return frame[list(RUN_KEYS)].drop_duplicates().groupby("scenario").size().rename("runs")


# --------------------------------------------------------------------------------------
# Core statistics
# --------------------------------------------------------------------------------------


def _numeric(frame: pd.DataFrame, columns: Iterable[str] | None) -> list[str]:
    from pandas.api.types import is_numeric_dtype

    ids = {"scenario", "seed", "sample", "quarter", "year"}
    if columns is None:
        return [c for c in frame.columns if c not in ids and is_numeric_dtype(frame[c])]
    cols = list(dict.fromkeys(columns))
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ValueError(f"column(s) {missing} not in the frame; present: {list(frame.columns)}")
    return cols


def quantile_bands(
    frame: pd.DataFrame,
    columns: Iterable[str] | None = None,
    by: Sequence[str] = ("scenario", "quarter"),
) -> pd.DataFrame:
    """Quantiles (5/25/50/75/95%), mean and count of each column across runs.

    Pools all runs (seeds x samples) within each group of ``by``.

    Args:
        frame: tidy frame (one row per run and period).
        columns: value columns; default all numeric non-identifier columns.
        by: grouping keys, normally ``("scenario", "quarter")`` for trajectories or
            ``("scenario", "year")`` for calendar-year tables.

    Returns:
        Long frame: ``by`` columns, then ``variable``, ``n`` (non-missing values),
        ``mean``, ``q05``, ``q25``, ``median``, ``q75``, ``q95``; plus ``year`` and ``t``
        (fractional year of the quarter mid-point) when ``quarter`` is a key, or ``t`` =
        year + 0.5 when ``year`` is.
    """
    import pandas as pd

    cols = _numeric(frame, columns)
    by = list(by)
    if frame.empty:  # e.g. no run reaches the years asked for: an empty table, same columns
        extra = ["year", "t"] if "quarter" in by else ["t"]
        names = [*by, *[c for c in extra if c not in by], "variable", "n", "mean", *QUANTILES]
        return pd.DataFrame(columns=names)
    grouped = frame.groupby(by, sort=True)[cols]
    q = grouped.quantile(list(QUANTILES.values()))
    q.index = q.index.set_names([*by, "q"])
    q.columns.name = "variable"
    q = q.stack(future_stack=True).unstack("q")
    q.columns = list(QUANTILES)

    mean = grouped.mean()
    mean.columns.name = "variable"
    count = grouped.count()
    count.columns.name = "variable"
    out = pd.concat(
        {
            "n": count.stack(future_stack=True),
            "mean": mean.stack(future_stack=True),
        },
        axis=1,
    ).join(q)
    out = out.reset_index()
    out["n"] = out["n"].astype(int)
    if "quarter" in by:
        t = fractional_year(out["quarter"])
        out.insert(len(by), "t", t)
        if "year" not in by:
            out.insert(len(by), "year", t.astype(int))
    elif "year" in by:
        out.insert(len(by), "t", out["year"] + 0.5)
    return out


def paired_differences(
    frame: pd.DataFrame,
    baseline: str,
    columns: Iterable[str] | None = None,
    on: Sequence[str] = ("seed", "sample", "quarter"),
) -> pd.DataFrame:
    """Per-replicate differences of every scenario from the baseline.

    Each non-baseline row is matched with the baseline row that has the same seed AND
    sample AND period (``on``); the result is ``value - baseline value``. Because replicate
    *i* of every scenario draws from the same random stream (common random numbers), the
    difference cancels shared noise and measures the scenario's effect run by run.

    Args:
        frame: tidy frame holding the baseline and other scenarios.
        baseline: name of the baseline scenario.
        columns: value columns; default all numeric non-identifier columns.
        on: matching keys besides the scenario: ``("seed", "sample", "quarter")`` for
            trajectories, ``("seed", "sample", "year")`` for calendar-year values.

    Returns:
        Frame with the identifier columns of the non-baseline rows that found a partner
        and one difference column per input column (same names).

    Raises:
        ValueError: if the baseline is absent or has duplicate rows for a key.

    Warns:
        UserWarning: when rows have no baseline partner (e.g. a failed run); they are
            dropped.
    """
    cols = _numeric(frame, columns)
    on = list(on)
    is_base = frame["scenario"] == baseline
    if not is_base.any():
        present = sorted(frame["scenario"].unique())
        raise ValueError(
            f"baseline scenario {baseline!r} is not in the data; present: {', '.join(present)}"
        )
    base = frame.loc[is_base, on + cols]
    if base.duplicated(on).any():
        raise ValueError(f"baseline {baseline!r} has several rows for one {'/'.join(on)} key")
    others = frame.loc[~is_base]
    ids = [c for c in ("scenario", "seed", "sample", "quarter", "year") if c in others.columns]
    ids = list(dict.fromkeys(ids + on))
    merged = others[ids + cols].merge(
        base, on=on, how="inner", suffixes=("", "__base"), validate="many_to_one"
    )
    dropped = len(others) - len(merged)
    if dropped:
        warnings.warn(
            f"{dropped} row(s) have no baseline partner with the same {', '.join(on)} "
            "and were left out of the paired differences",
            UserWarning,
            stacklevel=2,
        )
    diff = merged[cols].to_numpy(dtype=float) - merged[[c + "__base" for c in cols]].to_numpy(
        dtype=float
    )
    out = merged[ids].copy()
    out[cols] = diff
    return out


def annual(frame: pd.DataFrame, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """Aggregate each run to calendar years.

    Stocks and shares -> mean of the year's quarters; flows (:func:`is_flow`) -> sum of the
    year's quarters, missing unless the run has all four quarters of that year.

    Args:
        frame: tidy quarterly frame.
        columns: value columns; default all numeric non-identifier columns.

    Returns:
        One row per scenario x seed x sample x year with the value columns and
        ``n_quarters``.
    """
    cols = _numeric(frame, columns)
    keys = [*RUN_KEYS, "year"]
    grouped = frame.groupby(keys, sort=True)[cols]
    out = grouped.mean()
    flows = [c for c in cols if is_flow(c)]
    n_quarters = frame.groupby(keys, sort=True)["quarter"].nunique()
    if flows:
        sums = grouped.sum(min_count=1)[flows]
        sums.loc[(n_quarters < 4).to_numpy()] = float("nan")
        out[flows] = sums
    out["n_quarters"] = n_quarters
    return out.reset_index()


# --------------------------------------------------------------------------------------
# Monte-Carlo error
# --------------------------------------------------------------------------------------


def wilson_interval(
    successes: Sequence[int], trials: Sequence[int], confidence: float = MC_CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion, element by element.

    The probability of reaching a threshold is a share of runs; its Monte-Carlo error is
    that of a binomial proportion. Wilson's interval (via ``scipy.stats.binomtest``) stays
    inside [0, 1] and is informative at 0 of n: with 20 runs none of which reached 70%, the
    chance may still be up to about 16%.

    Args:
        successes: runs that reached the threshold.
        trials: runs evaluated (0 gives NaN bounds).
        confidence: confidence level.

    Returns:
        Lower and upper bounds, as float arrays.
    """
    import numpy as np
    from scipy.stats import binomtest

    k = np.asarray(successes, dtype=int)
    n = np.asarray(trials, dtype=int)
    low = np.full(k.shape, np.nan)
    high = np.full(k.shape, np.nan)
    cache: dict[tuple[int, int], tuple[float, float]] = {}
    for i, (ki, ni) in enumerate(zip(k.ravel(), n.ravel(), strict=True)):
        if ni <= 0:
            continue
        key = (int(ki), int(ni))
        if key not in cache:
            ci = binomtest(key[0], key[1]).proportion_ci(
                confidence_level=confidence, method="wilson"
            )
            cache[key] = (float(ci.low), float(ci.high))
        low.flat[i], high.flat[i] = cache[key]
    return low, high


def quantile_interval(
    block: np.ndarray, p: float, confidence: float = MC_CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """Distribution-free confidence interval of the ``p``-quantile of each row of ``block``.

    The interval is bounded by two order statistics of the row, chosen from the binomial
    distribution of the number of runs below the true quantile (``scipy.stats.quantile_test``);
    it assumes nothing about the shape of the distribution. A bound the row is too short to
    give at ``confidence`` (e.g. the lower bound of the 5th percentile with 20 runs) is NaN.

    Args:
        block: 2-D array, one row per group, one column per run (no NaN).
        p: the quantile's probability, strictly between 0 and 1.
        confidence: confidence level.

    Returns:
        Lower and upper bounds, one per row.
    """
    import numpy as np
    from scipy.stats import quantile_test

    block = np.atleast_2d(np.asarray(block, dtype=float))
    rows, n = block.shape
    if n < 2 or rows == 0:
        return np.full(rows, np.nan), np.full(rows, np.nan)
    try:
        ci = quantile_test(block, p=p, axis=1).confidence_interval(confidence)
        return np.asarray(ci.low, dtype=float), np.asarray(ci.high, dtype=float)
    except TypeError:  # a SciPy whose quantile_test takes one sample at a time
        bounds = [quantile_test(row, p=p).confidence_interval(confidence) for row in block]
        return (
            np.array([b.low for b in bounds], dtype=float),
            np.array([b.high for b in bounds], dtype=float),
        )


def quantile_intervals(
    frame: pd.DataFrame,
    columns: Iterable[str],
    by: Sequence[str],
    probs: dict[str, float] = CI_QUANTILES,
    confidence: float = MC_CONFIDENCE,
) -> pd.DataFrame:
    """Monte-Carlo intervals of quantiles of each column across runs, per group of ``by``.

    Args:
        frame: one row per run (and period).
        columns: value columns.
        by: grouping keys, e.g. ``("scenario", "year")``.
        probs: ``{name: probability}``; each gives ``<name>_ci_low`` and ``<name>_ci_high``.
        confidence: confidence level.

    Returns:
        Long frame: ``by``, ``variable`` and the interval columns.
    """
    import numpy as np

    by = list(by)
    cols = _numeric(frame, columns)
    long = frame.melt(id_vars=by, value_vars=cols, var_name="variable", value_name="value")
    long = long.dropna(subset=["value"]).sort_values([*by, "variable"], kind="stable")
    sizes = long.groupby([*by, "variable"], sort=False).size()
    out = sizes.index.to_frame(index=False)
    counts = sizes.to_numpy()
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)
    values = long["value"].to_numpy(dtype=float)
    for name, p in probs.items():
        low = np.full(len(counts), np.nan)
        high = np.full(len(counts), np.nan)
        for n in np.unique(counts):
            idx = np.flatnonzero(counts == n)
            block = values[starts[idx, None] + np.arange(n)[None, :]]
            low[idx], high[idx] = quantile_interval(block, p, confidence)
        out[f"{name}_ci_low"] = low
        out[f"{name}_ci_high"] = high
    return out


def threshold_probabilities(
    frame: pd.DataFrame,
    thresholds: Sequence[float] = THRESHOLDS_PCT,
    years: Sequence[int] = THRESHOLD_YEARS,
    column: str = "self_sufficiency_pct",
) -> pd.DataFrame:
    """Probability, across runs, of reaching each self-sufficiency threshold by each year.

    A run has reached threshold X by year Y when the calendar-year mean of its quarterly
    ``column`` is >= X in Y or in any earlier year. The probability is the share of the
    scenario's runs (seeds x samples) that have; runs whose data stop before Y are left out.

    Args:
        frame: tidy quarterly frame with ``column``.
        thresholds: thresholds in percent.
        years: calendar years to evaluate.
        column: the self-sufficiency column.

    Returns:
        Long frame: ``scenario``, ``threshold_pct``, ``year``, ``probability``, ``runs``
        (runs evaluated), ``reached`` (runs that reached it) and ``ci_low`` / ``ci_high``
        (Wilson interval of the probability at :data:`MC_CONFIDENCE`, its Monte-Carlo
        error). Every scenario x threshold x year combination is present; ``probability``
        and its interval are NaN when no run covers the year.
    """
    import numpy as np
    import pandas as pd

    ann = annual(frame, [column])
    run_keys = list(RUN_KEYS)
    thr = np.asarray(thresholds, dtype=float)
    reached = pd.DataFrame(
        ann[column].to_numpy()[:, None] >= thr[None, :], columns=thr, index=ann.index
    )
    ever = reached.groupby([ann[k] for k in run_keys]).cummax()
    ever[run_keys + ["year"]] = ann[run_keys + ["year"]]
    at = ever[ever["year"].isin(list(years))]
    long = at.melt(
        id_vars=run_keys + ["year"],
        value_vars=list(thr),
        var_name="threshold_pct",
        value_name="reached",
    )
    long["reached"] = long["reached"].astype(float)
    out = long.groupby(["scenario", "threshold_pct", "year"])["reached"].agg(
        probability="mean", runs="count"
    )
    full = pd.MultiIndex.from_product(
        [sorted(frame["scenario"].unique()), thr, list(years)],
        names=["scenario", "threshold_pct", "year"],
    )
    out = out.reindex(full).reset_index()
    out["runs"] = out["runs"].fillna(0).astype(int)
    out["reached"] = (out["probability"].fillna(0) * out["runs"]).round().astype(int)
    out["ci_low"], out["ci_high"] = wilson_interval(out["reached"], out["runs"])
    return out


def summary_table(
    frame: pd.DataFrame,
    columns: Iterable[str] | None = None,
    years: Sequence[int] = SUMMARY_YEARS,
    baseline: str | None = None,
    confidence: float = MC_CONFIDENCE,
) -> pd.DataFrame:
    """Calendar-year summary: median and 5-95% range per scenario, plus paired differences.

    Values are calendar-year aggregates per run (:func:`annual`: means of stocks/shares,
    sums of per-quarter flows). Differences from the baseline are paired on seed, sample
    and year, then summarised by their own quantiles. Each median and band end carries its
    Monte-Carlo interval (:func:`quantile_intervals`).

    Args:
        frame: tidy quarterly frame.
        columns: value columns; default all numeric non-identifier columns.
        years: calendar years to report.
        baseline: baseline scenario for paired differences; ``None`` (or a baseline absent
            from ``frame``) leaves the ``diff_*`` columns empty. They are also empty on the
            baseline's own rows: it is the reference, not a scenario compared with it.
        confidence: confidence level of the Monte-Carlo intervals.

    Returns:
        Long frame: ``scenario``, ``year``, ``variable``, ``unit``, ``runs``, ``samples``
        (parameter samples among the runs), ``median``, ``q05``, ``q95``,
        ``seed_band_width`` (median over samples of the 5-95% range across seeds at one
        sample: the seed-only band; equal to ``q95 - q05`` without parameter samples), the
        paired differences ``diff_pairs``, ``diff_median``, ``diff_q05``, ``diff_q25``,
        ``diff_q75``, ``diff_q95``, and ``<stat>_ci_low`` / ``<stat>_ci_high`` for
        ``median``, ``q05``, ``q95``, ``diff_median``, ``diff_q05`` and ``diff_q95``.
    """
    import numpy as np

    cols = _numeric(frame, columns)
    ann = annual(frame, cols)
    ann = ann[ann["year"].isin(list(years))]
    keys = ["scenario", "year", "variable"]
    keep = [*keys, "n", "median", "q05", "q95"]
    table = quantile_bands(ann, cols, by=("scenario", "year"))[keep].rename(columns={"n": "runs"})
    table.insert(3, "unit", table["variable"].map(annual_unit))
    samples = ann.groupby(["scenario", "year"])["sample"].nunique().rename("samples")
    table = table.merge(samples.reset_index(), on=["scenario", "year"], how="left")
    table = table.merge(
        quantile_intervals(ann, cols, ("scenario", "year"), confidence=confidence),
        on=keys,
        how="left",
    )
    table = table.merge(_seed_band_width(ann, cols), on=keys, how="left")
    diff_cols = ["diff_pairs", "diff_median", "diff_q05", "diff_q25", "diff_q75", "diff_q95"]
    ci_cols = [f"diff_{q}_ci_{e}" for q in CI_QUANTILES for e in ("low", "high")]
    if baseline is not None and (ann["scenario"] == baseline).any():
        diff = paired_differences(ann, baseline, cols, on=("seed", "sample", "year"))
        if len(diff):
            dband = quantile_bands(diff, cols, by=("scenario", "year"))
            dband = dband[[*keys, "n", "median", "q05", "q25", "q75", "q95"]]
            dband.columns = [*keys, *diff_cols]
            dci = quantile_intervals(diff, cols, ("scenario", "year"), confidence=confidence)
            dci.columns = [*keys, *(f"diff_{c}" for c in dci.columns[len(keys) :])]
            table = table.merge(dband, on=keys, how="left").merge(dci, on=keys, how="left")
    for col in diff_cols + ci_cols:
        if col not in table.columns:
            table[col] = np.nan
    table["diff_pairs"] = table["diff_pairs"].astype("Int64")
    front = [*keys[:2], "variable", "unit", "runs", "samples", "median", "q05", "q95"]
    level_ci = [f"{q}_ci_{e}" for q in CI_QUANTILES for e in ("low", "high")]
    table = table[[*front, "seed_band_width", *diff_cols, *level_ci, *ci_cols]]
    order = {v: i for i, v in enumerate(cols)}
    table = table.sort_values(
        ["year", "scenario", "variable"], key=lambda s: s.map(order) if s.name == "variable" else s
    )
    return table.reset_index(drop=True)


def _seed_band_width(ann: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Median over parameter samples of the 5-95% range across seeds, per scenario and year."""
    grouped = ann.groupby(["scenario", "year", "sample"])[cols]
    width = grouped.quantile(0.95) - grouped.quantile(0.05)
    width = width.groupby(level=["scenario", "year"]).median()
    width.columns.name = "variable"
    return width.stack(future_stack=True).rename("seed_band_width").reset_index()


def expectation_checks(
    frame: pd.DataFrame,
    expectations: Iterable[dict],
    confidence: float = MC_CONFIDENCE,
) -> pd.DataFrame:
    """Check scenarios' ``expects`` against the runs, as ``tests/test_scenario_library.py`` does.

    For each expectation the calendar-year value of ``output`` in ``year`` (:func:`annual`)
    is paired run by run with the same seed and sample of the scenario ``vs``; the
    expectation *holds* when the median of the paired differences has the stated sign
    (``higher`` > 0, ``lower`` < 0, ``different`` != 0). The Monte-Carlo interval of that
    median says whether it is clear of zero.

    Args:
        frame: tidy quarterly frame holding the scenarios and their ``vs`` scenarios.
        expectations: dicts with ``scenario``, ``output``, ``year``, ``direction`` and
            optionally ``vs`` (default ``"baseline"``) and ``note``.
        confidence: confidence level of the interval of the median difference.

    Returns:
        One row per expectation: ``scenario``, ``output``, ``year``, ``direction``, ``vs``,
        ``note``, ``pairs``, ``vs_median`` (the comparison scenario's median), ``diff_median``,
        ``diff_ci_low``, ``diff_ci_high``, ``share_in_direction`` (share of pairs with the
        expected sign), ``held`` (True/False, NA when not measured), ``clear`` (the interval
        excludes zero on the expected side; NA when too few pairs bound it) and ``status``
        (``held``, ``not held`` or ``not measured: <reason>``).
    """
    import numpy as np
    import pandas as pd

    rows = []
    for ex in expectations:
        row = {
            "scenario": ex["scenario"],
            "output": ex["output"],
            "year": int(ex["year"]),
            "direction": ex["direction"],
            "vs": ex.get("vs") or "baseline",
            "note": ex.get("note") or "",
            "pairs": 0,
            "vs_median": np.nan,
            "diff_median": np.nan,
            "diff_ci_low": np.nan,
            "diff_ci_high": np.nan,
            "share_in_direction": np.nan,
            "held": pd.NA,
            "clear": pd.NA,
        }
        rows.append(row)
        present = set(frame["scenario"].unique())
        missing = [s for s in (row["scenario"], row["vs"]) if s not in present]
        if missing:
            row["status"] = f"not measured: {', '.join(missing)} not in this batch"
            continue
        if row["output"] not in frame.columns:
            row["status"] = f"not measured: {row['output']} not in this store"
            continue
        sel = frame[
            frame["scenario"].isin([row["scenario"], row["vs"]]) & (frame["year"] == row["year"])
        ]
        ann = annual(sel, [row["output"]])
        if ann.empty:
            row["status"] = f"not measured: no runs cover {row['year']}"
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unpaired runs are simply left out here
            diff = paired_differences(
                ann, row["vs"], [row["output"]], on=("seed", "sample", "year")
            )
        d = diff.loc[diff["scenario"] == row["scenario"], row["output"]].dropna().to_numpy()
        if not len(d):
            row["status"] = "not measured: no paired runs"
            continue
        base = ann.loc[ann["scenario"] == row["vs"], row["output"]]
        sign = {"higher": d > 0, "lower": d < 0, "different": d != 0}[row["direction"]]
        median = float(np.median(d))
        low, high = quantile_interval(d[None, :], 0.5, confidence)
        row.update(
            pairs=len(d),
            vs_median=float(base.median()),
            diff_median=median,
            diff_ci_low=float(low[0]),
            diff_ci_high=float(high[0]),
            share_in_direction=float(sign.mean()),
        )
        held = {"higher": median > 0, "lower": median < 0, "different": median != 0}
        row["held"] = bool(held[row["direction"]])
        lo, hi = row["diff_ci_low"], row["diff_ci_high"]
        if not (np.isnan(lo) or np.isnan(hi)):  # too few pairs: the error is not bounded
            row["clear"] = bool(
                {"higher": lo > 0, "lower": hi < 0, "different": lo > 0 or hi < 0}[row["direction"]]
            )
        row["status"] = "held" if row["held"] else "not held"
    columns = [
        "scenario",
        "output",
        "year",
        "direction",
        "vs",
        "note",
        "pairs",
        "vs_median",
        "diff_median",
        "diff_ci_low",
        "diff_ci_high",
        "share_in_direction",
        "held",
        "clear",
        "status",
    ]
    out = pd.DataFrame(rows, columns=columns)
    out["held"] = out["held"].astype("boolean")
    out["clear"] = out["clear"].astype("boolean")
    out["pairs"] = out["pairs"].astype(int)
    return out
