"""Global sensitivity indices, screening, tables and figures (``decouple sensitivity``).

Estimators are SALib's: Morris elementary effects (``mu_star``, its bootstrap interval,
``sigma``), Sobol' first- and total-order indices from Saltelli's design (``S1``, ``ST``
with bootstrap intervals), and, for the cheap path that reuses an existing batch of any
design, PAWN (with a bootstrap interval over the runs) and the given-data first-order
index of SALib's delta module. See ``docs/sensitivity.md``.

Conventions:

* **Annual values, seeds averaged first.** Each run is reduced to calendar years as the
  report does (:func:`analysis.stats.annual`: the mean of a stock's quarters, the sum of a
  flow's), then the runs of one design point are averaged over their replicate seeds. Each
  ``(scenario, measure, output, year)`` is one analysis.
* **Levels and paired effects.** ``measure = "level"`` is a scenario's own output;
  ``measure = "effect"`` is a scenario minus the baseline (the study's first scenario) at
  the same design point and seed, so common random numbers and common parameter draws
  cancel and the index says which assumptions decide how much the scenario matters.
* **Degenerate cases.** An output that does not vary over the design in a year (an effect
  before the scenario's first event, a constant) has no indices: it is left out of the
  table, and counted in a note.
* **Intervals.** ``*_conf`` columns are SALib's: the half-width of the bootstrap interval
  at ``conf_level`` (95%), so the interval is ``value +/- conf``.

Tables are tidy (one row per scenario x measure x output x year x parameter) and written as
CSV and Parquet under ``indices/``; figures (PNG) under ``figures/``: a heatmap of the
index by year and a tornado of one year. :func:`report_section` returns the HTML that
``decouple report`` can include.

Only the standard library is imported at module level (numpy, pandas, SALib and matplotlib
inside the functions).
"""

from __future__ import annotations

import html
import json
import re
import textwrap
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    import pandas as pd

#: Identifier columns of every index table, in order.
KEYS: tuple[str, ...] = ("scenario", "measure", "output", "year", "parameter")
MORRIS_COLUMNS: tuple[str, ...] = (*KEYS, "mu_star", "mu_star_conf", "sigma", "mu")
SOBOL_COLUMNS: tuple[str, ...] = (*KEYS, "S1", "S1_conf", "ST", "ST_conf")
GIVEN_DATA_COLUMNS: tuple[str, ...] = (*KEYS, "pawn", "pawn_null", "S1", "S1_conf")

#: Where a sensitivity store keeps its results.
INDICES_DIR = "indices"
FIGURES_DIR = "figures"
#: The results' description (methods, settings, files), beside the tables.
RESULTS_FILE = "results.json"
#: Where the cheap path writes inside a batch store.
GIVEN_DATA_DIR = "sensitivity"

LEVEL, EFFECT = "level", "effect"

#: Outputs analysed by default.
DEFAULT_OUTPUTS: tuple[str, ...] = ("self_sufficiency_pct", "self_sufficiency_china_hq_pct")
#: Year of the tornado figures by default.
DEFAULT_YEAR = 2030
#: Years of the top-parameters table of the report.
REPORT_YEARS: tuple[int, ...] = (2025, 2030, 2035)

CONF_LEVEL = 0.95
NUM_RESAMPLES = 100
#: PAWN's number of conditioning slides (SALib's default).
PAWN_SLIDES = 10
#: Most parameters a figure shows (largest first).
MAX_FIGURE_ROWS = 20
#: Inputs without influence that measure PAWN's noise floor (:func:`pawn_null`).
NULL_DUMMIES = 40
#: Fewest design points the cheap path accepts.
MIN_GIVEN_POINTS = 8


# --------------------------------------------------------------------------------------
# Outputs per design point
# --------------------------------------------------------------------------------------


def point_values(store_dir: str | Path, outputs: Sequence[str], n_points: int) -> pd.DataFrame:
    """Seed-averaged annual values of each design point of a batch store.

    Args:
        store_dir: a batch store whose ``sample`` index is the design point.
        outputs: output columns.
        n_points: the design's number of points (every one must be present).

    Returns:
        Long frame ``scenario, sample, year, output, value`` (full calendar years only).

    Raises:
        ValueError: if an output is unknown or a point is missing (failed runs).
    """
    from analysis.load import load
    from analysis.stats import annual

    frame = load(store_dir, columns=list(outputs))
    ann = annual(frame, list(outputs))
    ann = ann[ann["n_quarters"] == 4]
    means = ann.groupby(["scenario", "sample", "year"], sort=True)[list(outputs)].mean()
    counts = means.groupby(["scenario", "year"]).size()
    short = counts[counts != n_points]
    if len(short):
        (scenario, year), got = short.index[0], int(short.iloc[0])
        raise ValueError(
            f"{store_dir}: scenario '{scenario}' has {got} of {n_points} design points in "
            f"{year}; every point is needed (rerun the command to retry failed runs)"
        )
    long = means.reset_index().melt(
        id_vars=["scenario", "sample", "year"], var_name="output", value_name="value"
    )
    return long


def with_effects(values: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Add a ``measure`` column: every scenario's ``level``, and ``effect`` = it minus baseline.

    Effects pair each point (and year and output) with the baseline's same point, whose
    runs share the seeds (common random numbers) and the parameter values.
    """
    import pandas as pd

    levels = values.assign(measure=LEVEL)
    base = values[values["scenario"] == baseline].drop(columns="scenario")
    others = values[values["scenario"] != baseline]
    if base.empty or others.empty:
        return levels
    merged = others.merge(
        base, on=["sample", "year", "output"], suffixes=("", "_base"), validate="many_to_one"
    )
    merged["value"] = merged["value"] - merged["value_base"]
    effects = merged.drop(columns="value_base").assign(measure=EFFECT)
    return pd.concat([levels, effects], ignore_index=True)


def _vectors(long: pd.DataFrame, n_points: int) -> Iterable[tuple[tuple, np.ndarray]]:
    """``((scenario, measure, output, year), Y ordered by point)`` of each analysis that varies."""
    import numpy as np

    for key, group in long.groupby(["scenario", "measure", "output", "year"], sort=True):
        y = group.sort_values("sample")["value"].to_numpy(dtype=float)
        if len(y) != n_points or not np.all(np.isfinite(y)):
            continue
        if np.ptp(y) <= 1e-12 * max(1.0, float(np.max(np.abs(y)))):
            continue  # does not vary: no indices
        yield key, y


def _problem(names: Sequence[str], bounds=None) -> dict:
    bounds = bounds if bounds is not None else [[0.0, 1.0]] * len(names)
    return {"num_vars": len(names), "names": list(names), "bounds": [list(b) for b in bounds]}


def _rows(key: tuple, names: Sequence[str], columns: dict) -> list[dict]:
    scenario, measure, output, year = key
    import numpy as np

    rows = []
    for j, name in enumerate(names):
        row = {
            "scenario": scenario,
            "measure": measure,
            "output": output,
            "year": int(year),
            "parameter": name,
        }
        for col, arr in columns.items():
            row[col] = float(np.ma.filled(np.ma.asarray(arr, dtype=float), np.nan)[j])
        rows.append(row)
    return rows


def _frame(rows: list[dict], columns: Sequence[str]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(rows, columns=list(columns))


# --------------------------------------------------------------------------------------
# Estimators (SALib)
# --------------------------------------------------------------------------------------


def morris_indices(
    long: pd.DataFrame,
    unit_points,
    names: Sequence[str],
    levels: int,
    *,
    seed: int = 0,
    num_resamples: int = NUM_RESAMPLES,
    conf_level: float = CONF_LEVEL,
) -> tuple[pd.DataFrame, int]:
    """Morris indices of every analysis in ``long`` (``mu_star`` in the output's unit).

    ``unit_points`` are the design's unit-cube points (what SALib's analysis needs to find
    each step), so ``mu_star`` is the mean absolute change of the output when a parameter
    moves across its whole range, measured in steps of ``levels / (2 (levels - 1))``.

    Returns:
        ``(table with MORRIS_COLUMNS, number of analyses skipped as constant)``.
    """
    from SALib.analyze import morris

    problem = _problem(names)
    rows, done = [], 0
    for key, y in _vectors(long, len(unit_points)):
        res = morris.analyze(
            problem,
            unit_points,
            y,
            num_resamples=num_resamples,
            conf_level=conf_level,
            num_levels=levels,
            seed=seed,
        )
        rows += _rows(key, names, {c: res[c] for c in ("mu_star", "mu_star_conf", "sigma", "mu")})
        done += 1
    return _frame(rows, MORRIS_COLUMNS), _n_groups(long) - done


def sobol_indices(
    long: pd.DataFrame,
    names: Sequence[str],
    n_points: int,
    *,
    seed: int = 0,
    num_resamples: int = NUM_RESAMPLES,
    conf_level: float = CONF_LEVEL,
) -> tuple[pd.DataFrame, int]:
    """First- and total-order Sobol' indices of every analysis (Saltelli design, no 2nd order).

    Returns:
        ``(table with SOBOL_COLUMNS, number of analyses skipped as constant)``.
    """
    from SALib.analyze import sobol

    problem = _problem(names)
    rows, done = [], 0
    for key, y in _vectors(long, n_points):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = sobol.analyze(
                problem,
                y,
                calc_second_order=False,
                num_resamples=num_resamples,
                conf_level=conf_level,
                seed=seed,
            )
        rows += _rows(key, names, {c: res[c] for c in ("S1", "S1_conf", "ST", "ST_conf")})
        done += 1
    return _frame(rows, SOBOL_COLUMNS), _n_groups(long) - done


def given_data_indices(
    long: pd.DataFrame,
    x_values,
    names: Sequence[str],
    *,
    seed: int = 0,
    num_resamples: int = NUM_RESAMPLES,
    conf_level: float = CONF_LEVEL,
    slides: int = PAWN_SLIDES,
) -> tuple[pd.DataFrame, int]:
    """PAWN and given-data first-order indices from any sample (an LHS batch).

    ``pawn`` is SALib's PAWN index: the median over ``slides`` conditioning slides of the
    Kolmogorov-Smirnov distance between the output's conditional and unconditional
    distributions (0 = no influence; moment-independent, so it also sees interactions).
    SALib gives it no interval, and a bootstrap would cost ``num_resamples`` times the
    estimate (scipy's KS test takes milliseconds a call), so ``pawn_null`` gives instead
    its noise floor: the ``conf_level`` quantile of the PAWN index of inputs that have no
    influence at all (:func:`pawn_null`); an index at or below it cannot be told from
    none. ``S1`` and ``S1_conf`` are the given-data first-order index of SALib's delta
    module with its bootstrap interval.

    Args:
        long: values per point (``sample`` = row of ``x_values``).
        x_values: ``points x parameters`` array of the sampled values.
        names: the parameters, in the columns' order.
        seed: seed of the bootstrap and of the null reference.
        num_resamples: bootstrap resamples of ``S1``.
        conf_level: confidence level of the interval and of the noise floor.
        slides: PAWN's conditioning slides.

    Returns:
        ``(table with GIVEN_DATA_COLUMNS, number of analyses skipped as constant)``.
    """
    import numpy as np
    from SALib.analyze import delta, pawn

    x = np.asarray(x_values, dtype=float)
    bounds = [[float(x[:, j].min()), float(x[:, j].max())] for j in range(x.shape[1])]
    problem = _problem(names, bounds)
    floor = pawn_null(len(x), slides, conf_level, seed)
    rows, done = [], 0
    for key, y in _vectors(long, len(x)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = pawn.analyze(problem, x, y, S=slides)["median"]
            d = delta.analyze(
                problem,
                x,
                y,
                num_resamples=num_resamples,
                conf_level=conf_level,
                seed=seed + 1,
                method="sobol",
            )
        cols = {
            "pawn": p,
            "pawn_null": np.full(len(names), floor),
            "S1": d["S1"],
            "S1_conf": d["S1_conf"],
        }
        rows += _rows(key, names, cols)
        done += 1
    return _frame(rows, GIVEN_DATA_COLUMNS), _n_groups(long) - done


def pawn_null(n: int, slides: int = PAWN_SLIDES, level: float = CONF_LEVEL, seed: int = 0) -> float:
    """The ``level`` quantile of SALib's PAWN index for inputs without influence, ``n`` points.

    PAWN compares ranks only, so under no influence its distribution depends on ``n`` and
    ``slides`` alone: it is measured once by :data:`NULL_DUMMIES` independent random
    inputs against one random output (SALib's PAWN, one call).
    """
    import numpy as np
    from SALib.analyze import pawn

    rng = np.random.default_rng(seed)
    x = rng.random((n, NULL_DUMMIES))
    y = rng.random(n)
    problem = _problem([f"dummy{i}" for i in range(NULL_DUMMIES)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        medians = pawn.analyze(problem, x, y, S=slides)["median"]
    return float(np.quantile(medians, level))


def _n_groups(long: pd.DataFrame) -> int:
    return int(long.groupby(["scenario", "measure", "output", "year"]).ngroups)


# --------------------------------------------------------------------------------------
# Screening
# --------------------------------------------------------------------------------------


def screen(morris: pd.DataFrame, top: int, output: str) -> list[str]:
    """The ``top`` parameters of a Morris table for ``output``, largest influence first.

    Within each analysis (scenario, measure, year), ``mu_star`` is divided by the largest
    ``mu_star`` of that analysis, so a level and an effect, or an early and a late year,
    count alike; a parameter's score is its largest such share over all analyses, and
    ties go by name.

    Raises:
        ValueError: if ``output`` has no Morris indices.
    """
    table = morris[morris["output"] == output]
    if table.empty:
        raise ValueError(f"no Morris indices for output '{output}' (it does not vary?)")
    group = ["scenario", "measure", "year"]
    peak = table.groupby(group)["mu_star"].transform("max")
    share = (table["mu_star"] / peak).where(peak > 0)
    score = share.groupby(table["parameter"]).max().fillna(0.0)
    ranked = sorted(score.items(), key=lambda kv: (-kv[1], kv[0]))
    return [name for name, _ in ranked[:top]]


def top_parameters(
    table: pd.DataFrame,
    output: str,
    years: Sequence[int],
    n: int,
    value: str = "ST",
) -> pd.DataFrame:
    """The ``n`` largest rows by ``value`` per scenario, measure and year of ``output``."""
    sub = table[(table["output"] == output) & table["year"].isin(list(years))]
    sub = sub.sort_values(
        ["scenario", "measure", "year", value, "parameter"],
        ascending=[True, False, True, False, True],
    )
    return sub.groupby(["scenario", "measure", "year"], sort=False).head(n).reset_index(drop=True)


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


def write_table(table: pd.DataFrame, directory: str | Path, name: str) -> list[Path]:
    """Write ``table`` as ``name.csv`` and ``name.parquet`` in ``directory`` (atomically)."""
    import pyarrow as pa

    from experiment.store import atomic_write_text, write_parquet_atomic

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    csv_path, pq_path = directory / f"{name}.csv", directory / f"{name}.parquet"
    atomic_write_text(csv_path, table.to_csv(index=False, float_format="%.6g"))
    write_parquet_atomic(pa.Table.from_pandas(table, preserve_index=False), pq_path)
    return [csv_path, pq_path]


def read_table(directory: str | Path, name: str) -> pd.DataFrame | None:
    """The table ``name`` of a results directory, or ``None`` when absent."""
    import pandas as pd

    path = Path(directory) / f"{name}.parquet"
    return pd.read_parquet(path) if path.is_file() else None


def write_results(directory: str | Path, results: dict) -> None:
    """Write the results' description (``results.json``) atomically."""
    from experiment.store import atomic_write_text

    atomic_write_text(Path(directory) / RESULTS_FILE, json.dumps(results, indent=2, default=str))


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexStyle:
    """How a table's index is drawn and tabulated.

    Attributes:
        value: the index column.
        conf: its interval half-width column, if any.
        second: a second index (drawn thinner, tabulated beside), if any.
        floor: a noise-floor column (drawn as a dashed line), if any.
        label: the colour bar's label.
    """

    value: str
    conf: str | None
    second: str | None
    floor: str | None
    label: str


INDEX_STYLE: dict[str, IndexStyle] = {
    "sobol": IndexStyle("ST", "ST_conf", "S1", None, "total-order Sobol' index ST"),
    "morris": IndexStyle(
        "mu_star", "mu_star_conf", None, None, "Morris mu* (share of the year's largest)"
    ),
    "given_data": IndexStyle("pawn", None, None, "pawn_null", "PAWN index (median KS distance)"),
}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "-", text).strip("-")


def _title(kind: str, scenario: str, measure: str, output: str, baseline: str | None) -> str:
    from analysis.stats import describe

    what = describe(output).label
    target = (
        f"effect of {scenario} (minus {baseline})" if measure == EFFECT else f"scenario {scenario}"
    )
    name = {"sobol": "Sobol' indices", "morris": "Morris screening", "given_data": "PAWN"}[kind]
    return f"{name}: {what}, {target}"


def _ordered_parameters(sub: pd.DataFrame, value: str, limit: int) -> list[str]:
    score = sub.groupby("parameter")[value].mean().sort_values(ascending=False, kind="stable")
    return list(score.index[:limit])


def heatmap_figure(sub: pd.DataFrame, kind: str, title: str):
    """Heatmap of one analysis family's index: parameters (rows) by year (columns)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    style = INDEX_STYLE[kind]
    value, label = style.value, style.label
    sub = sub.copy()
    if kind == "morris":  # comparable across years: share of the year's largest mu*
        peak = sub.groupby("year")["mu_star"].transform("max")
        sub["mu_star"] = (sub["mu_star"] / peak).where(peak > 0)
    params = _ordered_parameters(sub, value, MAX_FIGURE_ROWS)
    years = sorted(sub["year"].unique())
    grid = sub.pivot_table(index="parameter", columns="year", values=value, aggfunc="first")
    grid = grid.reindex(index=params, columns=years)
    height = 1.6 + 0.38 * len(params)
    fig = Figure(figsize=(14.0, height), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    data = np.clip(grid.to_numpy(dtype=float), 0.0, 1.0)
    im = ax.imshow(data, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(years)), [str(y) for y in years], rotation=90, fontsize=9)
    ax.set_yticks(range(len(params)), params, fontsize=9)
    ax.set_title(textwrap.fill(title, 120), fontsize=11, loc="left")
    cbar = fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
    cbar.set_label(label, fontsize=9)
    fig.tight_layout()
    return fig


def tornado_figure(sub: pd.DataFrame, kind: str, year: int, title: str):
    """Horizontal bars of one year's index, largest on top, with its bootstrap interval."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    style = INDEX_STYLE[kind]
    value, conf, second = style.value, style.conf, style.second
    one = sub[sub["year"] == year].sort_values([value, "parameter"], ascending=[False, True])
    one = one.head(MAX_FIGURE_ROWS).iloc[::-1]
    height = 1.6 + 0.38 * max(len(one), 1)
    fig = Figure(figsize=(11.0, height + 0.3), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    pos = np.arange(len(one))
    xerr = one[conf] if conf else None
    error_kw = {"ecolor": "#333333", "capsize": 2, "lw": 0.8}
    ax.barh(pos, one[value], xerr=xerr, color="#0072B2", height=0.6, label=value, error_kw=error_kw)
    if second is not None:
        ax.barh(pos, one[second], color="#E69F00", height=0.25, label=second)
    if style.floor is not None and len(one):
        floor = float(one[style.floor].iloc[0])
        ax.axvline(floor, color="#D55E00", ls="--", lw=1.0, label="noise floor (no influence)")
    ax.set_yticks(pos, list(one["parameter"]), fontsize=9)
    ax.axvline(0, color="#6E6E6E", lw=0.8)
    unit = " (output units per whole range)" if kind == "morris" else ""
    whiskers = f"; whiskers: 95% bootstrap interval of {value}" if conf else ""
    ax.set_xlabel(f"{value}{unit}{whiskers}", fontsize=9)
    ax.set_title(textwrap.fill(f"{title}, {year}", 80), fontsize=11, loc="left")
    ax.legend(loc="lower right", fontsize=9, frameon=False)
    fig.tight_layout()
    return fig


def write_figures(
    table: pd.DataFrame,
    kind: str,
    directory: str | Path,
    year: int,
    outputs: Sequence[str] | None = None,
    baseline: str | None = None,
) -> list[Path]:
    """Heatmap by year and tornado for ``year`` of each scenario, measure and output.

    Returns:
        The PNG files written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    sel = table if outputs is None else table[table["output"].isin(list(outputs))]
    for (scenario, measure, output), sub in sel.groupby(["scenario", "measure", "output"]):
        title = _title(kind, scenario, measure, output, baseline)
        stem = _slug(f"{kind}_{scenario}_{measure}_{output}")
        path = directory / f"{stem}_heatmap.png"
        heatmap_figure(sub, kind, title).savefig(path)
        written.append(path)
        if (sub["year"] == year).any():
            path = directory / f"{stem}_tornado_{year}.png"
            tornado_figure(sub, kind, year, title).savefig(path)
            written.append(path)
    return written


# --------------------------------------------------------------------------------------
# The report's section
# --------------------------------------------------------------------------------------


def results_dir(store: str | Path) -> Path | None:
    """The directory holding a store's sensitivity results, or ``None``.

    A sensitivity store holds them itself; a batch store analysed by the cheap path holds
    them in ``sensitivity/``.
    """
    store = Path(store)
    for candidate in (store, store / GIVEN_DATA_DIR):
        if (candidate / RESULTS_FILE).is_file():
            return candidate
    return None


def report_section(store: str | Path, output: str = "self_sufficiency_pct") -> str | None:
    """HTML for ``decouple report``: the sensitivity results of ``store``, or ``None``.

    The section (a ``<section id='sensitivity'>``) shows the baseline's level and the
    paired effects (other scenarios' own levels stay in the tables): a sentence on the
    method and its settings; a table of the five largest indices of ``output`` in 2025,
    2030 and 2035 (the last year when none of them is analysed) with their intervals; and
    the stored heatmap and tornado of ``output`` (Sobol' or, for the cheap path, PAWN; not
    Morris's) embedded as base64 PNG, so the page stays self-contained.
    """
    import base64

    where = results_dir(store)
    if where is None:
        return None
    try:
        results = json.loads((where / RESULTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    kind = "sobol" if "sobol" in results.get("tables", {}) else results.get("primary")
    if kind not in INDEX_STYLE:
        return None
    table = read_table(where / INDICES_DIR, kind)
    if table is None or table.empty:
        return None
    if output not in set(table["output"]):
        output = str(table["output"].iloc[0])
    style = INDEX_STYLE[kind]
    baseline = results.get("baseline")
    if baseline in set(table["scenario"]):  # the baseline's level and the effects
        table = table[(table["scenario"] == baseline) | (table["measure"] == EFFECT)]
    shown = {
        _slug(f"{kind}_{sc}_{measure}_{output}")
        for sc, measure in set(zip(table["scenario"], table["measure"]))
    }
    parts = [
        "<section id='sensitivity'><h2>Which assumptions drive the answer: global sensitivity</h2>",
        f"<p>{html.escape(results.get('method', ''))}</p>",
        _top_table_html(table, output, style, baseline),
    ]
    for name in results.get("figures", []):
        path = where / name
        stem = Path(name).name.split("_heatmap")[0].split("_tornado")[0]
        if stem in shown and path.is_file():
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            parts.append(
                f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(name)}' "
                f"style='max-width:100%'><figcaption>{html.escape(name)}</figcaption></figure>"
            )
    parts.append("</section>")
    return "\n".join(parts)


def _top_table_html(table, output: str, style: IndexStyle, baseline: str | None) -> str:
    value, second = style.value, style.second
    present = set(table.loc[table["output"] == output, "year"])
    years = [y for y in REPORT_YEARS if y in present] or [max(present)]
    top = top_parameters(table, output, years, 5, value)
    cols = [value, second, style.floor]
    head = "".join(
        f"<th>{c}{' (95% interval)' if c in (value, second) and _conf_of(c, style) else ''}</th>"
        for c in cols
        if c
    )
    rows = []
    for _, r in top.iterrows():
        target = f"{r['scenario']} minus {baseline}" if r["measure"] == EFFECT else r["scenario"]
        cells = "".join(
            f"<td>{_ci(r[c], r[_conf_of(c, style)]) if _conf_of(c, style) else f'{r[c]:.2f}'}</td>"
            for c in cols
            if c
        )
        rows.append(
            f"<tr><td>{html.escape(str(target))}</td><td>{int(r['year'])}</td>"
            f"<td>{html.escape(str(r['parameter']))}</td>{cells}</tr>"
        )
    return (
        f"<table><caption>Five largest {value} of {html.escape(output)} by year</caption>"
        f"<tr><th>scenario or effect</th><th>year</th><th>parameter</th>{head}</tr>"
        + "".join(rows)
        + "</table>"
    )


def _conf_of(column: str, style: IndexStyle) -> str | None:
    """The interval column of ``column``: its ``_conf`` column where the table has one."""
    if column == style.value:
        return style.conf
    return f"{column}_conf" if column in ("S1", "ST", "mu_star") else None


def _ci(v: float, c: float) -> str:
    return f"{v:.2f} [{v - c:.2f}, {v + c:.2f}]"
