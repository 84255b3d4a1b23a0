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
    """Add derived columns (total foreign revenue from China) when their inputs exist.

    Args:
        frame: a tidy run-store frame.

    Returns:
        The same frame (modified in place and returned for chaining).
    """
    parts = [c for c in frame.columns if c.startswith("foreign_revenue_from_china_usd_bn_")]
    parts = [c for c in parts if c != FOREIGN_REVENUE_TOTAL]
    if parts and FOREIGN_REVENUE_TOTAL not in frame.columns:
        frame[FOREIGN_REVENUE_TOTAL] = frame[parts].sum(axis=1, min_count=1)
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
        (runs evaluated). Every scenario x threshold x year combination is present;
        ``probability`` is NaN when no run covers the year.
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
    return out


def summary_table(
    frame: pd.DataFrame,
    columns: Iterable[str] | None = None,
    years: Sequence[int] = SUMMARY_YEARS,
    baseline: str | None = None,
) -> pd.DataFrame:
    """Calendar-year summary: median and 5-95% range per scenario, plus paired differences.

    Values are calendar-year aggregates per run (:func:`annual`: means of stocks/shares,
    sums of per-quarter flows). Differences from the baseline are paired on seed, sample
    and year, then summarised by their own median and 5-95% range.

    Args:
        frame: tidy quarterly frame.
        columns: value columns; default all numeric non-identifier columns.
        years: calendar years to report.
        baseline: baseline scenario for paired differences; ``None`` (or a baseline absent
            from ``frame``) leaves the ``diff_*`` columns empty. They are also empty on the
            baseline's own rows: it is the reference, not a scenario compared with it.

    Returns:
        Long frame: ``scenario``, ``year``, ``variable``, ``unit``, ``runs``, ``median``,
        ``q05``, ``q95``, ``diff_pairs``, ``diff_median``, ``diff_q05``, ``diff_q95``.
    """
    import numpy as np

    cols = _numeric(frame, columns)
    ann = annual(frame, cols)
    ann = ann[ann["year"].isin(list(years))]
    keep = ["scenario", "year", "variable", "n", "median", "q05", "q95"]
    table = quantile_bands(ann, cols, by=("scenario", "year"))[keep].rename(columns={"n": "runs"})
    table.insert(3, "unit", table["variable"].map(annual_unit))
    if baseline is not None and (ann["scenario"] == baseline).any():
        diff = paired_differences(ann, baseline, cols, on=("seed", "sample", "year"))
        if len(diff):
            dband = quantile_bands(diff, cols, by=("scenario", "year"))[keep]
            dband = dband.rename(
                columns={
                    "n": "diff_pairs",
                    "median": "diff_median",
                    "q05": "diff_q05",
                    "q95": "diff_q95",
                }
            )
            table = table.merge(dband, on=["scenario", "year", "variable"], how="left")
    for col in ("diff_pairs", "diff_median", "diff_q05", "diff_q95"):
        if col not in table.columns:
            table[col] = np.nan
    table["diff_pairs"] = table["diff_pairs"].astype("Int64")
    order = {v: i for i, v in enumerate(cols)}
    table = table.sort_values(
        ["year", "scenario", "variable"], key=lambda s: s.map(order) if s.name == "variable" else s
    )
    return table.reset_index(drop=True)
