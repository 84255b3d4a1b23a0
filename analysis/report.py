"""The policy report of a run store: figures, tables and one self-contained HTML page.

``build_report(DIR)`` writes ``DIR/report/`` (or ``out``) holding

* ``report.html``: self-contained (figures embedded as base64 PNG, inline CSS, no script,
  no external URL), readable offline and attachable to an e-mail;
* for every figure ``figNN_<name>.png`` (1600 px wide), ``.svg`` and ``.csv`` (exactly the
  numbers drawn);
* ``table_summary.csv`` (2025 / 2030 / 2035 medians, 5-95% ranges and paired differences
  from the baseline) and ``table_thresholds.csv`` (probability of reaching 30 / 50 / 70%
  self-sufficiency by 2030 and 2035).

The figures are declared in :data:`FIGURES` (data, not code): each is a fan chart or a
comparison grid drawn by :func:`analysis.plots.small_multiples`. Definitions and statistical
conventions are in :mod:`analysis.stats` and ``docs/report.md``.

:func:`register` adds ``decouple report DIR [--baseline NAME] [--out PATH]`` to the CLI. This
module imports nothing heavy at import time: pandas, pyarrow and matplotlib are imported
inside :func:`build_report`, so registering the sub-command costs nothing at CLI start-up.
"""

from __future__ import annotations

import html
import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiment.store import FAILURES

if TYPE_CHECKING:  # pragma: no cover - typing only
    import argparse

    import pandas as pd

    from analysis.plots import FigureData

DEFAULT_BASELINE = "baseline"

#: Goal year and observed value marked on self-sufficiency charts
#: (docs: /work/shared/seed-figures.md). The goal's level is the model's own parameter,
#: ``china.self_sufficiency_goal_pct`` (:func:`goal_pct`), not repeated here.
F01_YEAR = 2025
F03_VALUE_PCT, F03_YEAR = 16.0, 2021

def goal_pct() -> float:
    """F01's self-sufficiency goal, % (``china.self_sufficiency_goal_pct``).

    Read when a report is drawn, not at import: ``decouple --help`` imports this module.
    """
    from model.parameters import default_value

    return float(default_value("china.self_sufficiency_goal_pct"))


SS = "self_sufficiency_pct"
SS_DEFINITION = (
    "Self-sufficiency = share of China's chip demand, by value, met by China-located "
    "production whoever owns the fab (the Nikkei Asia / IC Insights definition behind F03), "
    "end-of-quarter value of self_sufficiency_pct"
)
REFERENCE_NOTE = (
    "Marked: F01, Made in China 2025's goal of 70% of chips used produced domestically by "
    "2025 (CLM70, Semiconductor Self-reliance), dashed line and diamond at 2025; F03, the "
    "estimated 16% self-sufficiency in 2021 (CLM70, Outcomes, citing Nikkei Asia), circle at "
    "2021. Annual figures are placed at mid-year."
)

#: Key outputs of the summary tables, in row order (those missing from a store are skipped).
TABLE_VARIABLES: tuple[str, ...] = (
    "self_sufficiency_pct",
    "self_sufficiency_china_hq_pct",
    "goal_gap_pp",
    "china_best_node_nm",
    "node_gap_generations",
    "domestic_equipment_share_pct",
    "unmet_demand_usd_bn",
    "flagship_domestic_share_pct",
    "state_funding_usd_bn",
    "state_funding_wasted_usd_bn",
    "private_investment_usd_bn",
    "foreign_revenue_from_china_usd_bn_total",
    "firms_active",
    "talent_shortfall_pct",
)


@dataclass(frozen=True)
class FigureSpec:
    """Declaration of one report figure.

    Attributes:
        stem: file name stem, e.g. ``"fig01_self_sufficiency_fan"``.
        title: figure title.
        kind: ``"fan"`` (one panel per scenario, median with 50% and 90% bands of one
            variable) or ``"compare"`` (one panel per variable, one line per scenario).
        variables: output columns drawn (one for ``"fan"``).
        what: caption sentence saying what is drawn.
        measure: caption sentence defining the measure and its source.
        stat: statistic drawn by a comparison: ``"median"`` or ``"mean"``.
        diff: a fan of paired differences from the baseline instead of levels.
        ylim: fixed y limits for every panel.
        log: columns drawn on a log scale.
        references: draw F01 and F03 on the panels.
        overlay: ``{column: (overlay column, label)}``: add the median over all runs of the
            overlay column to the column's panel (e.g. the world frontier node).
        ncols: panels per row.
        ylabel: y label overriding the variable's unit.
        from_zero: start linear y axes at 0.
    """

    stem: str
    title: str
    kind: str
    variables: tuple[str, ...]
    what: str
    measure: str
    stat: str = "median"
    diff: bool = False
    ylim: tuple[float, float] | None = None
    log: tuple[str, ...] = ()
    references: bool = False
    overlay: tuple[tuple[str, str, str], ...] = ()
    ncols: int = 3
    ylabel: str | None = None
    from_zero: bool = False


def _tiers() -> tuple[str, ...]:
    from analysis.stats import TIERS

    return tuple(f"self_sufficiency_tier_{t}_pct" for t in TIERS)


def _segments() -> tuple[str, ...]:
    from analysis.stats import SEGMENTS

    return tuple(f"self_sufficiency_segment_{s}_pct" for s in SEGMENTS)


def _by(prefix: str, names: Sequence[str]) -> tuple[str, ...]:
    return tuple(f"{prefix}{n}" for n in names)


def figures() -> list[FigureSpec]:
    """The report's figures, in order (see docs/report.md for what each one shows)."""
    from analysis.stats import ALLIES, COUNTRIES

    band_text = (
        "Line: median across runs; dark band: 25th-75th percentile (50% of runs); light band: "
        "5th-95th percentile (90% of runs); runs = every seed of every parameter sample."
    )
    return [
        FigureSpec(
            stem="fig01_self_sufficiency_fan",
            title="China's chip self-sufficiency by scenario, with uncertainty",
            kind="fan",
            variables=(SS,),
            what="Fan chart of China's chip self-sufficiency, one panel per scenario. " + band_text,
            measure=SS_DEFINITION + ". " + REFERENCE_NOTE,
            ylim=(0, 100),
            references=True,
        ),
        FigureSpec(
            stem="fig02_self_sufficiency_medians",
            title="China's chip self-sufficiency: scenario medians compared",
            kind="compare",
            variables=(SS,),
            what="Median across runs of China's chip self-sufficiency, all scenarios on one chart.",
            measure=SS_DEFINITION + ". " + REFERENCE_NOTE,
            ylim=(0, 100),
            references=True,
            ncols=1,
        ),
        FigureSpec(
            stem="fig03_self_sufficiency_vs_baseline",
            title="Effect of each scenario on self-sufficiency: paired difference from the "
            "baseline",
            kind="fan",
            variables=(SS,),
            diff=True,
            what="Difference in self-sufficiency between each scenario and the baseline, "
            "computed run by run: each run is paired with the baseline run of the same seed "
            "and parameter sample (common random numbers), then the differences are "
            "summarised. " + band_text.replace("runs;", "run pairs;", 1),
            measure=SS_DEFINITION + "; difference in percentage points.",
            ylabel="percentage points vs baseline",
        ),
        FigureSpec(
            stem="fig04_self_sufficiency_by_tier",
            title="Self-sufficiency by chip tier",
            kind="compare",
            variables=_tiers(),
            what="Median across runs of self-sufficiency within each chip tier, one line per "
            "scenario.",
            measure="Share of China's demand for the tier met by China-located production: "
            "leading = logic < 10 nm, advanced = logic 10-22 nm, mature = logic, analog and "
            "discretes >= 28 nm, memory = DRAM and NAND, compound = SiC and GaN "
            "(self_sufficiency_tier_<tier>_pct).",
            ylim=(0, 100),
        ),
        FigureSpec(
            stem="fig05_self_sufficiency_by_segment",
            title="Domestic sourcing by upstream segment",
            kind="compare",
            variables=_segments(),
            what="Median across runs of the share of China's purchases from each upstream "
            "segment bought from Chinese-headquartered suppliers, one line per scenario.",
            measure="self_sufficiency_segment_<segment>_pct: EDA & IP = design tools and "
            "core IP; design = chips bought that Chinese firms designed; lithography "
            "equipment; other equipment = deposition, etch, metrology and other fab tools; "
            "materials = wafers, photomasks, gases, chemicals; packaging = assembly, test "
            "and packaging.",
            ylim=(0, 100),
        ),
        FigureSpec(
            stem="fig06_technology_and_shortage",
            title="Technology gap, unmet demand and domestic equipment",
            kind="compare",
            variables=("china_best_node_nm", "unmet_demand_usd_bn", "domestic_equipment_share_pct"),
            what="Median across runs, one line per scenario: China's best logic node in "
            "volume production against the world frontier (grey dashed: median over all "
            "runs; log scale, smaller is more advanced), demand left unmet, and the share of "
            "fab equipment bought in China supplied by Chinese tool makers.",
            measure="china_best_node_nm: most advanced node in volume production at a "
            "Chinese-headquartered foundry; frontier_node_nm: world's most advanced node; "
            "unmet_demand_usd_bn: demand (US$ bn per quarter) no supplier could serve because "
            "controls blocked foreign supply and no adequate domestic supply existed; "
            "domestic_equipment_share_pct: share by value of lithography and other tools.",
            log=("china_best_node_nm",),
            from_zero=True,
            overlay=(
                ("china_best_node_nm", "frontier_node_nm", "World frontier (median, all runs)"),
            ),
        ),
        FigureSpec(
            stem="fig07_ally_alignment",
            title="Allies' alignment with US export controls",
            kind="compare",
            variables=_by("ally_alignment_", ALLIES),
            what="Median across runs of each ally's alignment, one line per scenario.",
            measure="ally_alignment_<ally>: how far the ally's export controls follow the US "
            "regime, 0 (none) to 1 (full alignment).",
            ylim=(0, 1.02),
            ylabel="alignment (0-1)",
        ),
        FigureSpec(
            stem="fig08_ally_defection",
            title="Share of runs in which each ally has defected",
            kind="compare",
            variables=_by("ally_defected_", ALLIES),
            stat="mean",
            what="Share of runs (seeds x samples) in which the ally is in a defected state in "
            "the quarter, one line per scenario.",
            measure="ally_defected_<ally> = 1 when the ally's alignment is below 0.5 after the "
            "US has asked it to align; the share is the mean of this 0/1 flag across runs.",
            ylim=(-0.02, 1.02),
            ylabel="share of runs",
        ),
        FigureSpec(
            stem="fig09_foreign_revenue_from_china",
            title="Foreign firms' revenue from China, by home country",
            kind="compare",
            variables=_by("foreign_revenue_from_china_usd_bn_", COUNTRIES),
            what="Median across runs of the revenue foreign-headquartered firms earn from "
            "Chinese buyers, one panel per home country, one line per scenario.",
            measure="foreign_revenue_from_china_usd_bn_<country>: chips, tools, materials, "
            "EDA/IP and packaging sold to Chinese buyers, US$ bn per quarter.",
            from_zero=True,
        ),
        FigureSpec(
            stem="fig10_state_funding",
            title="Chinese state funding of chip firms and the part wasted",
            kind="compare",
            variables=("state_funding_usd_bn", "state_funding_wasted_usd_bn"),
            what="Median across runs of state funding paid to chip firms and of the part lost "
            "to failed projects and fraud, one line per scenario.",
            measure="state_funding_usd_bn: central subsidies, Big Fund and local government "
            "funds, US$ bn per quarter; state_funding_wasted_usd_bn: the part lost (F19, "
            "F32: e.g. HSMC's collapse with 15.3 bn RMB of local money).",
            ncols=2,
            from_zero=True,
        ),
    ]


# --------------------------------------------------------------------------------------
# Provenance: what every caption says about the batch
# --------------------------------------------------------------------------------------


def _short_hash(value: Any) -> str:
    if not isinstance(value, str) or not value or value == "unknown":
        return "unknown"
    return value.split(":", 1)[-1][:8]


@dataclass
class Provenance:
    """Identity of the batch a report describes.

    Attributes:
        batch: name of the run-store directory.
        model_version: ``model_version`` from the manifest.
        runs: runs (seed x sample) per scenario, in report order.
        hashes: short (8 hex) scenario hash per scenario, ``"unknown"`` if not recorded.
        manifest: the manifest (defaults filled in).
    """

    batch: str
    model_version: str
    runs: dict[str, int]
    hashes: dict[str, str]
    manifest: dict

    @property
    def total_runs(self) -> int:
        """Number of runs over all scenarios."""
        return sum(self.runs.values())

    def runs_text(self) -> str:
        """Text like "10 runs per scenario (30 in all)", or a per-scenario list if counts differ."""
        counts = set(self.runs.values())
        if len(counts) == 1:
            return f"{counts.pop()} runs per scenario ({self.total_runs} in all)"
        per = ", ".join(f"{s} {n}" for s, n in self.runs.items())
        return f"runs per scenario: {per} ({self.total_runs} in all)"

    def line(self) -> str:
        """One-line provenance printed on every figure and caption."""
        hashes = ", ".join(f"{s} {h}" for s, h in self.hashes.items())
        return (
            f"Batch {self.batch} | model version {self.model_version} | {self.runs_text()} | "
            f"scenario hashes: {hashes}"
        )


def _provenance(run_dir: Path, manifest: dict, runs: pd.Series, order: list[str]) -> Provenance:
    entries = manifest.get("scenarios")
    entries = entries if isinstance(entries, dict) else {}
    hashes = {}
    for name in order:
        entry = entries.get(name)
        hashes[name] = _short_hash(entry.get("hash") if isinstance(entry, dict) else None)
    return Provenance(
        batch=run_dir.resolve().name,
        model_version=str(manifest.get("model_version", "unknown")),
        runs={s: int(runs.get(s, 0)) for s in order},
        hashes=hashes,
        manifest=manifest,
    )


# --------------------------------------------------------------------------------------
# Figure data
# --------------------------------------------------------------------------------------


def _figure_data(
    spec: FigureSpec,
    bands: pd.DataFrame,
    diff_bands: pd.DataFrame | None,
    overlay_bands: pd.DataFrame,
    order: list[str],
    baseline: str | None,
    provenance: Provenance,
) -> FigureData | None:
    """Turn precomputed bands into the long frame and layout of one figure.

    Returns ``None`` when the store has none of the figure's data (the caller notes it).
    """
    import pandas as pd

    from analysis.plots import FigureData, PanelSpec, Reference, Style, scenario_styles
    from analysis.stats import describe, quarterly_unit

    styles = scenario_styles(order)
    refs = ()
    if spec.references:
        refs = (
            Reference(
                f"F01: Made in China 2025 goal, {goal_pct():.0f}% by {F01_YEAR}",
                goal_pct(),
                x=F01_YEAR + 0.5,
                hline=True,
                marker="D",
            ),
            Reference(
                f"F03: {F03_VALUE_PCT:.0f}% self-sufficiency in {F03_YEAR} (Nikkei Asia)",
                F03_VALUE_PCT,
                x=F03_YEAR + 0.5,
                marker="o",
                color="#000000",
                facecolor="#FFFFFF",
            ),
        )
    subtitle = provenance.line()

    if spec.kind == "fan":
        source = diff_bands if spec.diff else bands
        if source is None:
            return None
        var = spec.variables[0]
        sel = source[source["variable"] == var]
        if sel.empty:
            return None
        data = pd.DataFrame(
            {
                "panel": sel["scenario"],
                "series": sel["scenario"],
                "statistic": "median",
                "quarter": sel["quarter"],
                "t": sel["t"],
                "y": sel["median"],
                "lo90": sel["q05"],
                "lo50": sel["q25"],
                "hi50": sel["q75"],
                "hi90": sel["q95"],
            }
        )
        keys = [s for s in order if s in set(sel["scenario"])]
        ylabel = spec.ylabel or quarterly_unit(var)
        panels = [
            PanelSpec(
                key=s,
                title=f"{s} minus {baseline}" if spec.diff else s,
                ylabel=ylabel,
                ylim=spec.ylim,
                zero_line=spec.diff,
                references=refs,
            )
            for s in keys
        ]
        if spec.diff:
            styles = {
                k: Style(
                    label=f"median difference: {k} minus {baseline}",
                    color=v.color,
                    linestyle=v.linestyle,
                )
                for k, v in styles.items()
            }
        else:
            styles = {
                k: Style(label=f"median: {k}", color=v.color, linestyle=v.linestyle)
                for k, v in styles.items()
            }  # one series per panel: full width
        ncols = spec.ncols
    else:
        present = [v for v in spec.variables if v in set(bands["variable"])]
        if not present:
            return None
        sel = bands[bands["variable"].isin(present)]
        data = pd.DataFrame(
            {
                "panel": sel["variable"],
                "series": sel["scenario"],
                "statistic": spec.stat,
                "quarter": sel["quarter"],
                "t": sel["t"],
                "y": sel[spec.stat],
            }
        )
        for var, over, label in spec.overlay:
            ov = overlay_bands[overlay_bands["variable"] == over]
            if var in present and not ov.empty:
                key = f"overlay:{over}"
                data = pd.concat(
                    [
                        data,
                        pd.DataFrame(
                            {
                                "panel": var,
                                "series": key,
                                "statistic": "median",
                                "quarter": ov["quarter"],
                                "t": ov["t"],
                                "y": ov["median"],
                            }
                        ),
                    ],
                    ignore_index=True,
                )
                styles[key] = Style(label=label, color="#6E6E6E", linestyle="--", linewidth=2.2)
        panels = [
            PanelSpec(
                key=v,
                title=describe(v).label,
                ylabel=spec.ylabel or quarterly_unit(v),
                log=v in spec.log,
                ylim=spec.ylim,
                from_zero=spec.from_zero,
                references=refs,
            )
            for v in present
        ]
        ncols = spec.ncols
    return FigureData(
        data=data.reset_index(drop=True),
        panels=panels,
        styles=styles,
        title=spec.title,
        subtitle=subtitle,
        ncols=ncols,
    )


# --------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------

_CSS = """
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; font-size: 17px;
       line-height: 1.45; color: #1a1a1a; max-width: 1640px; margin: 0 auto; padding: 24px; }
h1 { font-size: 30px; margin-bottom: 4px; } h2 { font-size: 24px; margin-top: 40px;
     border-bottom: 2px solid #ddd; padding-bottom: 4px; } h3 { font-size: 20px; }
figure { margin: 28px 0 40px 0; } figure img { width: 100%; max-width: 1600px; height: auto;
     border: 1px solid #e5e5e5; }
figcaption { font-size: 16px; color: #333; text-align: left; margin-top: 8px; }
figure.table { margin: 16px 0 32px 0; } figure.table figcaption { margin: 0 0 8px 0; }
.prov { color: #555; font-size: 15px; }
.notes { background: #fff6e0; border-left: 5px solid #E69F00; padding: 10px 16px; }
table { border-collapse: collapse; margin: 12px 0 28px 0; font-size: 16px; }
th, td { border: 1px solid #ccc; padding: 6px 10px; vertical-align: top; }
th { background: #f2f2f2; text-align: left; } td.num { text-align: right; white-space: nowrap; }
td .rng, td .dif { display: block; font-size: 14px; color: #444; }
.files { font-size: 14px; } code { font-size: 15px; }
table.meta td:first-child { font-weight: bold; background: #fafafa; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, signed: bool = False) -> str:
    """Format a number for tables: 3 significant-ish digits, "n/a" when missing."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "n/a"
    if math.isnan(x):
        return "n/a"
    ax = abs(x)
    spec = ",.0f" if ax >= 100 else ".1f" if ax >= 10 else ".2f"
    text = format(x, spec)
    if signed and x > 0:
        text = "+" + text
    return text.replace("-", "\u2212")


def _caption(number: str, title: str, what: str, measure: str, prov: Provenance) -> str:
    return (
        f"<b>{_e(number)}. {_e(title)}.</b> {_e(what)} <i>Measure:</i> {_e(measure)} "
        f"<span class='prov'>{_e(prov.line())}.</span>"
    )


def _meta_table(prov: Provenance) -> str:
    """HTML tables of the manifest: what was run, and the scenarios with hash and file."""
    m = prov.manifest

    def get(*keys: str) -> str:
        value: Any = m
        for key in keys:
            value = value.get(key, "unknown") if isinstance(value, dict) else "unknown"
        if isinstance(value, (list, tuple)):
            return " ".join(str(v) for v in value)
        if isinstance(value, dict):
            return ", ".join(f"{k} {v}" for k, v in value.items())
        return "unknown" if value is None else str(value)

    entries = m.get("scenarios") if isinstance(m.get("scenarios"), dict) else {}
    scen_rows = ""
    for s in prov.runs:
        entry = entries.get(s) if isinstance(entries.get(s), dict) else {}
        scen_rows += (
            f"<tr><td>{_e(s)}</td><td><code>{_e(prov.hashes[s])}</code></td>"
            f"<td>{_e(entry.get('file', 'unknown'))}</td>"
            f"<td class='num'>{prov.runs[s]}</td></tr>"
        )
    rows = [
        ("Batch (directory)", prov.batch),
        ("Kind", get("kind")),
        ("Model version", prov.model_version),
        ("Command", get("command")),
        ("Created / finished", f"{get('created')} / {get('finished')}"),
        ("Git commit", f"{get('git', 'commit')} (dirty: {get('git', 'dirty')})"),
        ("Root entropy", get("root_entropy")),
        ("Seeds (replicates)", get("seeds")),
        ("Parameter samples", get("samples")),
        ("Runs", prov.runs_text()),
    ]
    meta = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table class='meta'>{meta}</table>" + _table_figure(
        "Scenarios in this batch (hash = first 8 hex digits of the sha256 of the resolved "
        "scenario; runs = seeds x parameter samples present in the data).",
        f"<tr><th>scenario</th><th>hash</th><th>file</th><th>runs</th></tr>{scen_rows}",
    )


def _threshold_html(thr: pd.DataFrame, prov: Provenance, number: str) -> str:
    cols = thr[["threshold_pct", "year"]].drop_duplicates().sort_values(["year", "threshold_pct"])
    head = "".join(
        f"<th>&ge;{r.threshold_pct:.0f}% by {int(r.year)}</th>" for r in cols.itertuples()
    )
    lookup = thr.set_index(["scenario", "threshold_pct", "year"])["probability"]
    body = ""
    for s in prov.runs:
        cells = "".join(
            f"<td class='num'>{_pct(lookup.get((s, r.threshold_pct, r.year)))}</td>"
            for r in cols.itertuples()
        )
        body += f"<tr><th>{_e(s)}</th><td class='num'>{prov.runs[s]}</td>{cells}</tr>"
    cap = _caption(
        number,
        "Probability of reaching self-sufficiency thresholds",
        "Share of runs (seeds x parameter samples) in which China reaches 30%, 50% and 70% "
        "self-sufficiency by 2030 and by 2035 (70% is the Made in China 2025 goal, F01).",
        "a run has reached X% by year Y when the calendar-year mean of its quarterly "
        "self_sufficiency_pct (China-located production, F03's definition) is at least X in "
        "Y or any earlier year.",
        prov,
    )
    return _table_figure(cap, f"<tr><th>scenario</th><th>runs</th>{head}</tr>{body}")


def _table_figure(caption_html: str, rows_html: str) -> str:
    """A table with its caption above it, full page width (long captions stay readable)."""
    return (
        f"<figure class='table'><figcaption>{caption_html}</figcaption>"
        f"<table>{rows_html}</table></figure>"
    )


def _pct(value: Any) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if math.isnan(x) else f"{100 * x:.0f}%"


def _summary_html(
    table: pd.DataFrame, prov: Provenance, baseline: str | None, number: str, year: int
) -> str:
    from analysis.stats import describe

    sel = table[table["year"] == year]
    if sel.empty:
        return f"<p>No data for {year}.</p>"
    lookup = sel.set_index(["variable", "scenario"])
    head = "".join(f"<th>{_e(s)}</th>" for s in prov.runs)
    body = ""
    for var in dict.fromkeys(sel["variable"]):
        unit = sel.loc[sel["variable"] == var, "unit"].iloc[0]
        cells = ""
        for s in prov.runs:
            if (var, s) not in lookup.index:
                cells += "<td class='num'>n/a</td>"
                continue
            r = lookup.loc[(var, s)]
            cell = (
                f"{_fmt(r['median'])}<span class='rng'>5&ndash;95%: {_fmt(r['q05'])} to "
                f"{_fmt(r['q95'])}</span>"
            )
            if baseline is not None and s != baseline and not math.isnan(r["diff_median"]):
                cell += (
                    f"<span class='dif'>vs {_e(baseline)}: {_fmt(r['diff_median'], True)} "
                    f"({_fmt(r['diff_q05'], True)} to {_fmt(r['diff_q95'], True)})</span>"
                )
            cells += f"<td class='num'>{cell}</td>"
        body += f"<tr><th>{_e(describe(var).label)}<br><small>{_e(unit)}</small></th>{cells}</tr>"
    diff_text = (
        f" Second line: 5-95% range across runs. Third line: paired difference from "
        f"{baseline} (median, and 5-95% range, of the run-by-run differences with the same "
        f"seed and sample)."
        if baseline
        else " Second line: 5-95% range across runs."
    )
    cap = _caption(
        number,
        f"Key outputs in {year}",
        f"Median across runs of each output's {year} value for every scenario.{diff_text}",
        "calendar-year values per run: mean of the four quarters for stocks and shares "
        "(%, nm, generations, firms), sum of the four quarters for flows (US$ bn per year). "
        "Self-sufficiency: China-located production (F03's definition).",
        prov,
    )
    return _table_figure(cap, f"<tr><th>output</th>{head}</tr>{body}")


def _write_html(
    path: Path,
    prov: Provenance,
    notes: list[str],
    figure_blocks: list[str],
    table_blocks: list[str],
) -> None:
    notes_html = (
        "<div class='notes'><b>Notes</b><ul>"
        + "".join(f"<li>{_e(n)}</li>" for n in notes)
        + "</ul></div>"
        if notes
        else ""
    )
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Decoupling scenarios: batch {_e(prov.batch)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>China's chip self-sufficiency to 2035: scenario report</h1>
<p class="prov">{_e(prov.line())}</p>
{notes_html}
<h2>About this batch</h2>
{_meta_table(prov)}
<h2>Headline: chances of reaching self-sufficiency thresholds</h2>
{table_blocks[0] if table_blocks else ""}
<h2>Figures</h2>
{"".join(figure_blocks)}
<h2>Tables: 2025, 2030 and 2035</h2>
{"".join(table_blocks[1:])}
<h2>Definitions and method</h2>
<ul>
<li>{_e(SS_DEFINITION)}. The narrower Chinese-headquartered measure
(IC Insights: 6.6% in 2021) is <code>self_sufficiency_china_hq_pct</code>.</li>
<li>Runs: every replicate seed of every parameter sample of a scenario. Bands and
probabilities pool all runs of a scenario. Quantiles use linear interpolation.</li>
<li>Paired differences: each scenario's run is matched with the baseline run of the same seed
AND sample AND quarter (or calendar year); replicate <i>i</i> shares its random stream across
scenarios (common random numbers), so the difference isolates the scenario's effect. The
median and bands are those of the run-by-run differences.</li>
<li>Time: quarterly values are plotted at the middle of the quarter (2021Q1 at 2021.125);
stocks and shares are end-of-quarter values; flows (US$ bn, firm entries and exits) are per
quarter in the figures and summed to calendar years in the tables.</li>
<li>Files: each figure's PNG, SVG and CSV (the exact numbers drawn) and the tables as CSV sit
beside this page. See <code>docs/report.md</code> in the project.</li>
</ul>
</body>
</html>
"""
    path.write_text(page, encoding="utf-8")


def _figure_block(
    number: str, spec: FigureSpec, png: bytes, prov: Provenance, extra_what: str = ""
) -> str:
    import base64

    data = base64.b64encode(png).decode("ascii")
    cap = _caption(number, spec.title, spec.what + extra_what, spec.measure, prov)
    files = " | ".join(
        f"<a href='{_e(spec.stem)}.{ext}'>{ext.upper()}</a>" for ext in ("png", "svg", "csv")
    )
    return (
        f"<figure id='{_e(spec.stem)}'><img src='data:image/png;base64,{data}' "
        f"alt='{_e(spec.title)}' width='1600'>"
        f"<figcaption>{cap} <span class='files'>Files: {files}</span></figcaption></figure>"
    )


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------


def build_report(
    run_dir: str | Path,
    baseline: str = DEFAULT_BASELINE,
    out: str | Path | None = None,
    *,
    require_baseline: bool | None = None,
) -> Path:
    """Build the policy report of a run store.

    Args:
        run_dir: the run store (``manifest.json`` + ``trajectories.parquet`` or
            ``shards/*.parquet``).
        baseline: scenario the paired differences are taken from.
        out: output folder; default ``<run_dir>/report/``.
        require_baseline: raise if ``baseline`` is absent. Default: only when ``baseline``
            is not the default name ``"baseline"`` (a name given on purpose must exist; the
            default may be absent, e.g. in a batch of variants only).

    Returns:
        Path of ``report.html``.

    Raises:
        ValueError: if the store is missing or empty (see :func:`analysis.load.load`), or
            the baseline is required but absent (the message names the scenarios present).

    Warns:
        UserWarning: when the baseline is absent and not required (paired differences are
            skipped and the report says so), and for other data problems also listed in
            the report's notes.
    """
    from analysis.load import available_columns, load, load_manifest
    from analysis.stats import (
        add_derived,
        paired_differences,
        quantile_bands,
        run_counts,
        summary_table,
        threshold_probabilities,
    )

    run_dir = Path(run_dir)
    manifest = load_manifest(run_dir)
    columns = available_columns(run_dir)
    specs = figures()
    wanted = {v for spec in specs for v in spec.variables}
    wanted |= {over for spec in specs for _, over, _ in spec.overlay}
    wanted |= set(TABLE_VARIABLES)
    wanted |= {c for c in columns if c.startswith("foreign_revenue_from_china_usd_bn_")}
    load_cols = [c for c in columns if c in wanted]
    frame = add_derived(load(run_dir, columns=load_cols))
    if frame.empty:
        raise ValueError(f"run store {str(run_dir)!r} holds no rows")

    if require_baseline is None:
        require_baseline = baseline != DEFAULT_BASELINE
    present = sorted(frame["scenario"].unique())
    notes: list[str] = []
    if baseline not in present:
        msg = (
            f"baseline scenario {baseline!r} is not in run store {str(run_dir)!r}; "
            f"scenarios present: {', '.join(present)}"
        )
        if require_baseline:
            raise ValueError(msg + " (choose one with --baseline NAME)")
        notes.append(msg + ". Paired differences from the baseline are skipped.")
        warnings.warn(msg + "; paired differences skipped", UserWarning, stacklevel=2)
        base: str | None = None
    else:
        base = baseline
    order = ([base] if base else []) + [s for s in present if s != base]

    runs = run_counts(frame)
    prov = _provenance(run_dir, manifest, runs, order)
    if len(set(prov.runs.values())) > 1:
        notes.append(f"Scenarios have different numbers of runs: {prov.runs_text()}.")
    failures = run_dir / FAILURES
    if failures.is_file():
        n_failed = sum(1 for line in failures.read_text().splitlines() if line.strip())
        if n_failed:
            notes.append(
                f"{n_failed} run(s) failed and are missing from the data (see {FAILURES})."
            )
    missing_table = [v for v in TABLE_VARIABLES if v not in frame.columns]
    if missing_table:
        notes.append(
            "Outputs not in this store, left out of the tables: " + ", ".join(missing_table) + "."
        )

    plotted = sorted({v for spec in specs for v in spec.variables} & set(frame.columns))
    overlays = sorted({over for spec in specs for _, over, _ in spec.overlay} & set(frame.columns))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bands = quantile_bands(frame, plotted)
        overlay_bands = quantile_bands(frame.assign(scenario="all runs"), overlays)
        diff_bands = None
        if base is not None and len(order) > 1 and SS in frame.columns:
            diff = paired_differences(frame, base, [SS])
            if len(diff):
                diff_bands = quantile_bands(diff, [SS])
        table_cols = [v for v in TABLE_VARIABLES if v in frame.columns]
        summary = summary_table(frame, table_cols, baseline=base)
        thresholds = threshold_probabilities(frame) if SS in frame.columns else None
    for w in caught:
        notes.append(str(w.message))
        warnings.warn(str(w.message), UserWarning, stacklevel=2)
    if base is not None and len(order) == 1:
        notes.append(f"Only the baseline {base!r} is present: no paired differences to show.")

    out_dir = Path(out) if out is not None else run_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)

    from analysis.plots import rc_context, save, small_multiples

    blocks: list[str] = []
    number = 0
    with rc_context():
        for spec in specs:
            fig_data = _figure_data(spec, bands, diff_bands, overlay_bands, order, base, prov)
            if fig_data is None:
                reason = (
                    "no baseline to difference from"
                    if spec.diff and base is None
                    else "its outputs are not in this store"
                )
                notes.append(f"Figure '{spec.title}' skipped: {reason}.")
                continue
            number += 1
            fig = small_multiples(fig_data)
            _, _, png = save(fig, out_dir / spec.stem)
            fig_data.data.to_csv(out_dir / f"{spec.stem}.csv", index=False)
            blocks.append(_figure_block(f"Figure {number}", spec, png, prov))

    summary.to_csv(out_dir / "table_summary.csv", index=False)
    tables: list[str] = []
    if thresholds is not None:
        thresholds.to_csv(out_dir / "table_thresholds.csv", index=False)
        tables.append(_threshold_html(thresholds, prov, "Table 1"))
    else:
        notes.append("self_sufficiency_pct is not in this store: no threshold table.")
        tables.append("<p>No self-sufficiency data.</p>")
    for i, year in enumerate(sorted(summary["year"].unique()), start=2):
        tables.append(_summary_html(summary, prov, base, f"Table {i}", int(year)))

    report = out_dir / "report.html"
    _write_html(report, prov, notes, blocks, tables)
    return report


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``report`` sub-command to the ``decouple`` CLI.

    ``decouple report DIR [--baseline NAME] [--out PATH]`` builds the report and prints the
    path of ``report.html``. The handler is stored as ``func`` and returns an exit code:
    0 on success, 2 on bad input (message on stderr, no traceback).

    Args:
        subparsers: the object returned by ``ArgumentParser.add_subparsers()``.

    Returns:
        The sub-command's parser.
    """
    parser = subparsers.add_parser(
        "report",
        help="build the policy report (HTML, figures, tables) of a run store",
        description="Build the policy report of a run store: report.html (self-contained), "
        "every figure as PNG, SVG and CSV, and the tables as CSV.",
    )
    parser.add_argument("run_dir", metavar="DIR", help="run store written by run or batch")
    parser.add_argument(
        "--baseline",
        metavar="NAME",
        default=None,
        help=f"scenario to take paired differences from (default: {DEFAULT_BASELINE!r}; "
        "if that is absent the differences are skipped, a name given here must exist)",
    )
    parser.add_argument(
        "--out", metavar="PATH", default=None, help="output folder (default: DIR/report)"
    )
    parser.set_defaults(func=_cmd_report)
    return parser


def _cmd_report(args: argparse.Namespace) -> int:
    """Run ``decouple report``; return the exit code."""
    baseline = args.baseline if args.baseline is not None else DEFAULT_BASELINE
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            path = build_report(
                args.run_dir,
                baseline=baseline,
                out=args.out,
                require_baseline=args.baseline is not None,
            )
    except ValueError as exc:
        print(f"decouple report: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"decouple report: error: {exc}", file=sys.stderr)
        return 2
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"decouple report: warning: {w.message}", file=sys.stderr)
    print(path)
    return 0
