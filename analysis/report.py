"""The policy report of a run store: the answer first, then the evidence, then provenance.

``build_report(DIR)`` writes ``DIR/report/`` (or ``out``) holding

* ``report.html``: self-contained (figures embedded as base64 PNG, inline CSS, no script,
  no external URL), readable offline, attachable to an e-mail and printable (a print
  stylesheet lays it out for A4 and Letter). In reading order it holds

  1. **Key findings**: a generated summary with the numbers (the baseline's median and band
     in 2025 / 2030 / 2035, the largest scenario effects with their bands, the gap to the
     70% goal, and the scenario expectations that failed). Every number is a
     ``<span class='v'>`` naming the table, row and column it comes from, so a test can
     check it against the CSV;
  2. **Scenario effects**: a dot-and-whisker chart of each scenario's paired difference
     from the baseline in 2030 and 2035, and beside it each scenario's explanation;
  3. **What each scenario changed**: its question, its events and parameter changes
     against its parent (from the resolved scenarios in the store), and whether each
     ``expects`` held, with the measured effect;
  4. the figures, the detailed tables and, in an appendix, the provenance of the batch.

* for every figure ``figNN_<name>.png`` (1600 px wide), ``.svg`` and ``.csv`` (exactly the
  numbers drawn);
* ``table_summary.csv`` (2025 / 2030 / 2035 medians, 5-95% ranges, paired differences from
  the baseline and the Monte-Carlo intervals of them), ``table_thresholds.csv``
  (probability of reaching 30 / 50 / 70% self-sufficiency by 2030 and 2035, with Wilson
  intervals) and ``table_expectations.csv`` (each scenario ``expects`` checked);
* ``report.pdf`` with ``pdf=True`` (``decouple report --pdf``), printed by headless
  Chromium.

The figures are declared in :func:`figures` (data, not code). Definitions and statistical
conventions are in :mod:`analysis.stats` and ``docs/report.md``.

:func:`register` adds ``decouple report DIR [--baseline NAME] [--out PATH] [--pdf]`` to the
CLI. This module imports nothing heavy at import time: pandas, pyarrow and matplotlib are
imported inside :func:`build_report`, so registering the sub-command costs nothing at CLI
start-up.
"""

from __future__ import annotations

import html
import math
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
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

#: Horizons of the scenario-effects chart and of the key findings' effects.
EFFECT_YEARS: tuple[int, ...] = (2030, 2035)
#: Years of the baseline's level in the key findings.
LEVEL_YEARS: tuple[int, ...] = (2025, 2030, 2035)
#: Effects the key findings list by name (largest first by size).
TOP_EFFECTS = 3
#: A median effect smaller than this (pp) is called "small" in the key findings.
SMALL_EFFECT_PP = 0.5

#: Candidate names of a headless Chromium for ``--pdf`` (``DECOUPLE_CHROMIUM`` wins).
CHROMIUM_NAMES: tuple[str, ...] = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
)
#: Flags for a headless Chromium that prints a local file and touches no network.
CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: Seconds allowed for printing the PDF.
PDF_TIMEOUT_S = 180


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
    "2025 (CLM70, Semiconductor Self-reliance), noted at the top edge when it lies above the "
    "data's scale; F03, the estimated 16% self-sufficiency in 2021 (CLM70, Outcomes, citing "
    "Nikkei Asia), circle at 2021. Annual figures are placed at mid-year."
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
        stem: file name stem, e.g. ``"fig02_self_sufficiency_fan"``.
        title: figure title.
        kind: ``"fan"`` (one panel per scenario, median with 50% and 90% bands of one
            variable), ``"compare"`` (one panel per variable, one line per scenario) or
            ``"effects"`` (the dot-and-whisker chart of paired effects).
        variables: output columns drawn (one for ``"fan"`` and ``"effects"``).
        what: caption sentence saying what is drawn.
        measure: caption sentence defining the measure and its source.
        stat: statistic drawn by a comparison: ``"median"`` or ``"mean"``.
        diff: a fan of paired differences from the baseline instead of levels.
        ylim: fixed y limits of the panels (``None``: scaled to the data).
        log: columns drawn on a log scale.
        references: draw F01 and F03 on the panels.
        overlay: ``{column: (overlay column, label)}``: add the median over all runs of the
            overlay column to the column's panel (e.g. the world frontier node).
        ncols: panels per row.
        ylabel: y label overriding the variable's unit.
        from_zero: start linear y axes at 0.
        volumes: columns of a share figure drawn as volumes beside the shares (own unit,
            from zero, not held to ``ylim``).
        sharey: one y scale for all panels.
        programme_marks: mark the end of the last scheduled state funding programme.
        direct_labels: label lines at their right end instead of in the legend.
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
    volumes: tuple[str, ...] = ()
    sharey: bool = False
    programme_marks: bool = False
    direct_labels: bool = False


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
    from analysis.stats import ALLIES, COUNTRIES, DOMESTIC_EQUIPMENT, FOREIGN_EQUIPMENT

    band_text = (
        "Line: median across runs; dark band: 25th-75th percentile (50% of runs); light band: "
        "5th-95th percentile (90% of runs)."
    )
    return [
        FigureSpec(
            stem="fig01_scenario_effects",
            title="Effect of each scenario on China's chip self-sufficiency, 2030 and 2035",
            kind="effects",
            variables=(SS,),
            what="Each scenario's paired difference from the baseline in calendar-year "
            "self-sufficiency: every run is matched with the baseline run of the same seed "
            "and parameter draw, and the run-by-run differences are summarised. Dot: median; "
            "thick bar: 25th-75th percentile; thin bar: 5th-95th percentile of the "
            "differences. Both panels share one axis; scenarios are ordered by their 2035 "
            "effect.",
            measure=SS_DEFINITION + "; calendar-year mean of the four quarters; difference in "
            "percentage points.",
        ),
        FigureSpec(
            stem="fig02_self_sufficiency_fan",
            title="China's chip self-sufficiency by scenario, with uncertainty",
            kind="fan",
            variables=(SS,),
            what="Fan chart of China's chip self-sufficiency, one panel per scenario, all on "
            "one y scale fitted to the data. " + band_text,
            measure=SS_DEFINITION + ". " + REFERENCE_NOTE,
            references=True,
            sharey=True,
        ),
        FigureSpec(
            stem="fig03_self_sufficiency_medians",
            title="China's chip self-sufficiency: scenario medians compared",
            kind="compare",
            variables=(SS,),
            what="Median across runs of China's chip self-sufficiency, all scenarios on one "
            "chart (y scale fitted to the data), each line labelled at its end; every scenario "
            "has its own colour and line style.",
            measure=SS_DEFINITION + ". " + REFERENCE_NOTE,
            references=True,
            ncols=1,
            direct_labels=True,
        ),
        FigureSpec(
            stem="fig04_self_sufficiency_vs_baseline",
            title="Effect of each scenario on self-sufficiency over time: paired difference "
            "from the baseline",
            kind="fan",
            variables=(SS,),
            diff=True,
            what="Difference in self-sufficiency between each scenario and the baseline, "
            "computed run by run (same seed and parameter draw: common random numbers), then "
            "summarised; panels in the order of Figure 1 and on one shared y scale. "
            + band_text.replace("runs)", "run pairs)"),
            measure=SS_DEFINITION + "; difference in percentage points.",
            ylabel="pp vs baseline",
            sharey=True,
        ),
        FigureSpec(
            stem="fig05_self_sufficiency_by_tier",
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
            stem="fig06_self_sufficiency_by_segment",
            title="Domestic sourcing by upstream segment, and the volume of tools bought",
            kind="compare",
            variables=_segments() + (DOMESTIC_EQUIPMENT, FOREIGN_EQUIPMENT),
            volumes=(DOMESTIC_EQUIPMENT, FOREIGN_EQUIPMENT),
            what="Median across runs of the share of China's purchases from each upstream "
            "segment bought from Chinese-headquartered suppliers, one line per scenario; the "
            "last two panels give the volumes behind the equipment shares: fab tools bought "
            "in China from Chinese and from foreign suppliers. A share near 100% can mean "
            "that little is bought from anyone: read the shares with the volumes (e.g. "
            "under tighter controls the foreign tools that remain open are few, so the "
            "domestic share jumps while the tools bought shrink).",
            measure="self_sufficiency_segment_<segment>_pct: EDA & IP = design tools and "
            "core IP; design = chips bought that Chinese firms designed; lithography "
            "equipment; other equipment = deposition, etch, metrology and other fab tools; "
            "materials = wafers, photomasks, gases, chemicals; packaging = assembly, test "
            "and packaging. Tool volumes: fab_equipment_purchases_usd_bn split by "
            "domestic_equipment_share_pct (lithography and other tools together; the model "
            "records no per-segment volume), US$ bn per quarter.",
            ylim=(0, 100),
            ncols=4,
        ),
        FigureSpec(
            stem="fig07_technology_and_shortage",
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
            stem="fig08_ally_alignment",
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
            stem="fig09_ally_defection",
            title="Share of runs in which each ally has defected",
            kind="compare",
            variables=_by("ally_defected_", ALLIES),
            stat="mean",
            what="Share of runs (seeds x parameter draws) in which the ally is in a defected "
            "state in the quarter, one line per scenario.",
            measure="ally_defected_<ally> = 1 when the ally has left an alignment it had "
            "joined (alignment reached 0.7 after the US asked, now below 0.5); the share is "
            "the mean of this 0/1 flag across runs.",
            ylim=(-0.02, 1.02),
            ylabel="share of runs",
        ),
        FigureSpec(
            stem="fig10_foreign_revenue_from_china",
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
            stem="fig11_state_funding",
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
            programme_marks=True,
        ),
    ]


# --------------------------------------------------------------------------------------
# Provenance and what the bands include
# --------------------------------------------------------------------------------------


def _short_hash(value: Any) -> str:
    if not isinstance(value, str) or not value or value == "unknown":
        return "unknown"
    return value.split(":", 1)[-1][:8]


@dataclass
class Provenance:
    """Identity of the batch a report describes, and what its bands include.

    Attributes:
        batch: name of the run-store directory.
        model_version: ``model_version`` from the manifest.
        runs: runs (seed x sample) per scenario, in report order.
        hashes: short (8 hex) scenario hash per scenario, ``"unknown"`` if not recorded.
        manifest: the manifest (defaults filled in).
        seeds: replicate seeds per parameter draw in the data.
        samples: parameter draws in the data.
        sample_method: the design's method from the manifest (``none``, ``lhs``, ...).
        sampled_paths: the parameters the draws vary.
    """

    batch: str
    model_version: str
    runs: dict[str, int]
    hashes: dict[str, str]
    manifest: dict
    seeds: int = 0
    samples: int = 1
    sample_method: str = "none"
    sampled_paths: list[str] = field(default_factory=list)

    @property
    def total_runs(self) -> int:
        """Number of runs over all scenarios."""
        return sum(self.runs.values())

    @property
    def with_parameters(self) -> bool:
        """True when the runs vary parameters as well as seeds."""
        return self.samples > 1

    def runs_text(self) -> str:
        """Text like "10 runs per scenario (30 in all)", or a per-scenario list if counts differ."""
        counts = set(self.runs.values())
        if len(counts) == 1:
            return f"{counts.pop()} runs per scenario ({self.total_runs} in all)"
        per = ", ".join(f"{s} {n}" for s, n in self.runs.items())
        return f"runs per scenario: {per} ({self.total_runs} in all)"

    def band_short(self) -> str:
        """What a band includes, in a few words: "seeds only" or "parameters + seeds"."""
        if self.with_parameters:
            return f"parameters + seeds ({self.samples} parameter draws x {self.seeds} seeds)"
        return f"seeds only ({self.seeds} seeds, parameters fixed)"

    def band_sentence(self) -> str:
        """One sentence saying what the bands include, for captions and key findings."""
        if self.with_parameters:
            paths = len(self.sampled_paths)
            what = f"{paths} uncertain parameter{'s' * (paths != 1)}" if paths else "parameters"
            return (
                f"Bands include parameter uncertainty and seed noise: {self.samples} draws "
                f"({self.sample_method}) of {what}, each run with {self.seeds} replicate "
                "seeds; the same draws and seeds in every scenario."
            )
        return (
            f"Bands are seed noise only: {self.seeds} replicate seed"
            f"{'s' * (self.seeds != 1)} with every parameter at its scenario value; parameter "
            "uncertainty is not included, so the bands understate how uncertain the numbers "
            "are."
        )

    def line(self) -> str:
        """Short provenance printed under each figure's title (PNG files travel alone)."""
        return (
            f"Batch {self.batch} | model version {self.model_version} | {self.runs_text()} | "
            f"bands: {self.band_short()}"
        )


def _provenance(
    run_dir: Path, manifest: dict, runs: pd.Series, order: list[str], frame=None
) -> Provenance:
    entries = manifest.get("scenarios")
    entries = entries if isinstance(entries, dict) else {}
    hashes = {}
    for name in order:
        entry = entries.get(name)
        hashes[name] = _short_hash(entry.get("hash") if isinstance(entry, dict) else None)
    samples = manifest.get("samples") if isinstance(manifest.get("samples"), dict) else {}
    n_samples, n_seeds = 1, 0
    if frame is not None and len(frame):
        n_samples = int(frame["sample"].nunique())
        n_seeds = int(frame.groupby(["scenario", "sample"])["seed"].nunique().median())
    paths = samples.get("paths") if isinstance(samples.get("paths"), list) else []
    return Provenance(
        batch=run_dir.resolve().name,
        model_version=str(manifest.get("model_version", "unknown")),
        runs={s: int(runs.get(s, 0)) for s in order},
        hashes=hashes,
        manifest=manifest,
        seeds=n_seeds,
        samples=n_samples,
        sample_method=str(samples.get("method", "unknown")),
        sampled_paths=[str(p) for p in paths],
    )


# --------------------------------------------------------------------------------------
# What each scenario changed (from the resolved scenarios in the store)
# --------------------------------------------------------------------------------------

#: Event fields that are bookkeeping, not what the event does.
_EVENT_META = ("at", "action", "id", "note", "source")


@dataclass
class ScenarioChanges:
    """How a resolved scenario differs from the scenario it extends.

    Attributes:
        name: the scenario.
        question: its question.
        parent: the scenario compared with (its parent, or the baseline when the parent is
            not in the batch), ``None`` for a root.
        lineage: its chain of files, root first.
        explanation: its ``explanation`` (why the result is what it is), or ``""``.
        added: events it adds (resolved event dicts).
        dropped: events of the parent it drops.
        parameters: ``(path, parent value, value)`` of changed parameters.
        uncertain: ``(path, parent range, range)`` of changed uncertain ranges.
        note: a remark, e.g. that the parent is not in the batch.
    """

    name: str
    question: str
    parent: str | None
    lineage: list[str]
    explanation: str = ""
    added: list[dict] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)
    parameters: list[tuple[str, Any, Any]] = field(default_factory=list)
    uncertain: list[tuple[str, Any, Any]] = field(default_factory=list)
    note: str = ""


def _event_key(event: dict) -> str:
    """Identity of an event for comparing a scenario with its parent."""
    import json

    if event.get("id"):
        return f"id:{event['id']}"
    return json.dumps(event, sort_keys=True, default=str)


def scenario_changes(
    resolved: dict[str, dict], baseline: str | None, names: Sequence[str]
) -> dict[str, ScenarioChanges]:
    """Compare each resolved scenario with its parent: events, parameters, uncertain ranges.

    The parent is the last-but-one entry of the scenario's ``lineage``. When that scenario
    is not in the batch the comparison is made with the baseline (and said so).

    Args:
        resolved: ``{scenario: resolved scenario}`` (:func:`analysis.load.load_resolved`).
        baseline: the report's baseline, used when a parent is missing.
        names: scenarios to describe, in report order.

    Returns:
        ``{scenario: ScenarioChanges}`` for the names with a resolved scenario.
    """
    from model.parameters import default_value

    out = {}
    for name in names:
        sc = resolved.get(name)
        if sc is None:
            continue
        lineage = [str(x) for x in sc.get("lineage") or [name]]
        parent = lineage[-2] if len(lineage) >= 2 else None
        note = ""
        if parent is not None and parent not in resolved:
            if baseline is not None and baseline in resolved and baseline != name:
                note = f"its parent {parent!r} is not in this batch: compared with {baseline!r}"
                parent = baseline
            else:
                note = f"its parent {parent!r} is not in this batch: its changes are not shown"
                parent = None
        ch = ScenarioChanges(
            name=name,
            question=str(sc.get("question") or ""),
            parent=parent,
            lineage=lineage,
            explanation=str(sc.get("explanation") or "").strip(),
            note=note,
        )
        if parent is not None:
            base = resolved[parent]
            mine = {_event_key(e): e for e in sc.get("events") or [] if isinstance(e, dict)}
            theirs = {_event_key(e): e for e in base.get("events") or [] if isinstance(e, dict)}
            ch.added = [e for k, e in mine.items() if k not in theirs]
            ch.dropped = [e for k, e in theirs.items() if k not in mine]
            p_new, p_old = sc.get("parameters") or {}, base.get("parameters") or {}
            for path in sorted(set(p_new) | set(p_old)):
                if p_new.get(path, _MISSING) != p_old.get(path, _MISSING):
                    try:
                        default = default_value(path)
                    except KeyError:
                        default = "default"
                    ch.parameters.append((path, p_old.get(path, default), p_new.get(path, default)))
            u_new, u_old = sc.get("uncertain") or {}, base.get("uncertain") or {}
            for path in sorted(set(u_new) | set(u_old)):
                if u_new.get(path) != u_old.get(path):
                    ch.uncertain.append((path, u_old.get(path), u_new.get(path)))
        out[name] = ch
    return out


_MISSING = object()


def _event_defaults() -> dict[str, dict[str, Any]]:
    """Default value of every event field, by action (from the scenario schema)."""
    from typing import get_args

    from pydantic_core import PydanticUndefined

    from model.scenario import EVENT_CLASSES

    out: dict[str, dict[str, Any]] = {}
    for cls in EVENT_CLASSES:
        defaults = {
            k: f.default for k, f in cls.model_fields.items() if f.default is not PydanticUndefined
        }
        for action in get_args(cls.model_fields["action"].annotation):
            out[action] = defaults
    return out


def event_text(event: dict, defaults: dict[str, dict[str, Any]] | None = None) -> str:
    """One line for an event: its date, action, the fields that differ from the defaults."""
    defaults = _event_defaults() if defaults is None else defaults
    own = defaults.get(str(event.get("action")), {})
    parts = []
    for key, value in event.items():
        if key in _EVENT_META or (key in own and own[key] == value):
            continue
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        parts.append(f"{key.replace('_', ' ')} {value}")
    head = f"{event.get('at', '?')} {str(event.get('action', '?')).replace('_', ' ')}"
    text = head + (f": {'; '.join(parts)}" if parts else "")
    if event.get("note"):
        text += f" ({event['note']})"
    return text


def _funding_programmes(resolved: dict) -> list[tuple[str, str, str]]:
    """``(programme, first quarter, last quarter)`` of a scenario's funding programmes."""
    from model.calendar import ordinal_to_label, quarter_ordinal

    out = []
    for e in resolved.get("events") or []:
        if isinstance(e, dict) and e.get("action") == "funding_program":
            try:
                start = quarter_ordinal(str(e["at"]))
            except (KeyError, ValueError):
                continue
            end = start + int(e.get("quarters") or 1) - 1  # resolved events carry quarters
            name = str(e.get("program") or e.get("id") or "?")
            out.append((name, str(e["at"]), ordinal_to_label(end)))
    return out


def _programme_note(resolved: dict[str, dict], order: list[str]) -> tuple[str, float | None]:
    """Caption text explaining when scheduled funding ends, and the baseline's last end."""
    from model.calendar import parse_quarter, quarter_ordinal

    if not order or order[0] not in resolved:
        return "", None
    base = _funding_programmes(resolved[order[0]])
    if not base:
        return "", None
    last = max(base, key=lambda p: quarter_ordinal(p[2]))
    year, q = parse_quarter(last[2])
    spans = ", ".join(f"{p} {a}-{b}" for p, a, b in base)
    horizon = resolved[order[0]].get("end")
    if horizon and quarter_ordinal(last[2]) >= quarter_ordinal(str(horizon)):
        return (
            f" {order[0]}'s scheduled programmes ({spans}) run to the horizon, so policy is "
            "held without a funding cliff; China's government adds or trims money from "
            "2024Q4 as the goal gap and control pressure change (docs/ODD.md 7.10).",
            None,
        )
    text = (
        f" The dotted line marks {last[2]}, when the last state funding programme "
        f"{order[0]} schedules ends ({spans}). Funding drops there because no later "
        "programme is scheduled: the scenario files stop holding policy at that date, not "
        "a modelled decision to cut funding."
    )
    extra = []
    for name in order[1:]:
        sc = resolved.get(name)
        if sc is None:
            continue
        own = [p for p in _funding_programmes(sc) if p not in base]
        extra += [f"{name}'s {p} {a}-{b}" for p, a, b in own]
    if extra:
        text += " Programmes the scenarios add: " + ", ".join(extra) + "."
    return text, year + q / 4.0


# --------------------------------------------------------------------------------------
# Figure data
# --------------------------------------------------------------------------------------


def _references() -> tuple:
    from analysis.plots import Reference

    return (
        Reference(
            f"F01: Made in China 2025 goal, {goal_pct():.0f}% by {F01_YEAR}",
            goal_pct(),
            x=F01_YEAR + 0.5,
            hline=True,
            marker="D",
            short=f"F01 goal: {goal_pct():.0f}% by {F01_YEAR},",
        ),
        Reference(
            f"F03: {F03_VALUE_PCT:.0f}% self-sufficiency in {F03_YEAR} (Nikkei Asia)",
            F03_VALUE_PCT,
            x=F03_YEAR + 0.5,
            marker="o",
            color="#000000",
            facecolor="#FFFFFF",
            short=f"F03: {F03_VALUE_PCT:.0f}% in {F03_YEAR},",
        ),
    )


def _figure_data(
    spec: FigureSpec,
    bands: pd.DataFrame,
    diff_bands: pd.DataFrame | None,
    overlay_bands: pd.DataFrame,
    order: list[str],
    baseline: str | None,
    provenance: Provenance,
    effect_order: list[str] | None = None,
    mark_x: float | None = None,
) -> FigureData | None:
    """Turn precomputed bands into the long frame and layout of one time-series figure.

    Returns ``None`` when the store has none of the figure's data (the caller notes it).
    """
    import pandas as pd

    from analysis.plots import FigureData, Mark, PanelSpec, Style, scenario_styles
    from analysis.stats import describe, quarterly_unit

    styles = scenario_styles(order)
    refs = _references() if spec.references else ()
    marks = ()
    if spec.programme_marks and mark_x is not None:
        marks = (Mark(mark_x, "end of the last state funding programme the baseline schedules"),)
    subtitle = provenance.line()
    line_legend = None

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
        present = set(sel["scenario"])
        keys = [s for s in (effect_order if spec.diff and effect_order else order) if s in present]
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
        styles = {k: Style(label=k, color=v.color) for k, v in styles.items()}
        line_legend = (
            "median difference (panel title: which scenario minus the baseline)"
            if spec.diff
            else "median across runs (panel title: the scenario)"
        )
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
                ylabel=(spec.ylabel if v not in spec.volumes else None) or quarterly_unit(v),
                log=v in spec.log,
                ylim=spec.ylim if v not in spec.volumes else None,
                from_zero=spec.from_zero or v in spec.volumes,
                references=refs,
                marks=marks,
            )
            for v in present
        ]
    return FigureData(
        data=data.reset_index(drop=True),
        panels=panels,
        styles=styles,
        title=spec.title,
        subtitle=subtitle,
        ncols=spec.ncols,
        sharey=spec.sharey,
        line_legend=line_legend,
        direct_labels=spec.direct_labels,
    )


def effect_rows(summary: pd.DataFrame, baseline: str | None, variable: str = SS) -> pd.DataFrame:
    """The summary table's paired effects of ``variable`` at the effect horizons.

    These rows are what the effects chart draws and what the key findings quote, so both
    come from ``table_summary.csv``.
    """
    sel = summary[
        (summary["variable"] == variable)
        & summary["year"].isin(EFFECT_YEARS)
        & (summary["scenario"] != baseline)
        & summary["diff_median"].notna()
    ]
    cols = [
        "scenario",
        "year",
        "diff_pairs",
        "diff_median",
        "diff_q05",
        "diff_q25",
        "diff_q75",
        "diff_q95",
        "diff_median_ci_low",
        "diff_median_ci_high",
    ]
    return sel[cols].reset_index(drop=True)


def effect_order(effects: pd.DataFrame, names: Sequence[str]) -> list[str]:
    """Scenarios ordered by their effect at the last horizon present, largest gain first."""
    if effects.empty:
        return list(names)
    last = effects[effects["year"] == effects["year"].max()]
    ranked = last.sort_values("diff_median", ascending=False, kind="stable")["scenario"].tolist()
    return ranked + [n for n in names if n not in ranked]


def _effects_figure(spec: FigureSpec, effects: pd.DataFrame, order: list[str], styles, prov):
    from analysis.plots import EffectsData, effects_chart

    data = effects.rename(
        columns={
            "diff_median": "median",
            "diff_q05": "q05",
            "diff_q25": "q25",
            "diff_q75": "q75",
            "diff_q95": "q95",
        }
    )
    fx = EffectsData(
        data=data,
        order=order,
        styles=styles,
        title=spec.title,
        subtitle=prov.line(),
        xlabel="percentage points, scenario minus baseline (paired runs)",
        years=EFFECT_YEARS,
    )
    return effects_chart(fx), data


# --------------------------------------------------------------------------------------
# HTML helpers
# --------------------------------------------------------------------------------------

_CSS = """
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; font-size: 17px;
       line-height: 1.45; color: #1a1a1a; max-width: 1640px; margin: 0 auto; padding: 20px 24px; }
h1 { font-size: 30px; margin: 0 0 4px 0; } h2 { font-size: 24px; margin-top: 40px;
     border-bottom: 2px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 20px; margin-bottom: 4px; }
.lede { color: #333; font-size: 16px; margin: 0 0 12px 0; }
.kf { background: #f3f7fb; border-left: 6px solid #0072B2; padding: 6px 22px 10px 22px; }
.kf h2 { border: none; margin-top: 8px; }
.kf ul { margin: 0; padding-left: 22px; } .kf li { margin: 7px 0; }
.kf .why { display: block; color: #333; font-size: 15px; }
.v { font-weight: bold; white-space: nowrap; }
nav.toc { font-size: 15px; margin: 10px 0 0 0; color: #444; }
figure { margin: 24px 0 36px 0; } figure img { width: 100%; max-width: 1600px; height: auto;
     border: 1px solid #e5e5e5; }
figcaption { font-size: 16px; color: #333; text-align: left; margin-top: 8px; }
figure.table { margin: 16px 0 28px 0; } figure.table figcaption { margin: 0 0 8px 0; }
.tablewrap { max-width: 100%; overflow-x: auto; }
.notes { background: #fff6e0; border-left: 5px solid #E69F00; padding: 10px 16px; }
table { border-collapse: collapse; margin: 8px 0 20px 0; font-size: 16px; }
th, td { border: 1px solid #ccc; padding: 5px 9px; vertical-align: top; }
th { background: #f2f2f2; text-align: left; } td.num { text-align: right; }
td .rng, td .dif, td .ci { display: block; font-size: 14px; color: #444; white-space: nowrap; }
td.why { max-width: 640px; font-size: 15px; }
.held { color: #006d4f; font-weight: bold; } .failed { color: #b23c00; font-weight: bold; }
.scenario { border-top: 1px solid #ddd; padding-top: 4px; margin-top: 14px; }
.scenario .q { font-style: italic; margin: 2px 0 6px 0; }
.scenario ul { margin: 4px 0; } .scenario .why { background: #f6f6f6; padding: 6px 10px; }
.files { font-size: 14px; } code { font-size: 15px; }
table.meta td:first-child { font-weight: bold; background: #fafafa; }
@page { margin: 14mm 12mm; }
@media print {
  body { max-width: none; margin: 0; padding: 0; font-size: 10pt; }
  h1 { font-size: 18pt; } h2 { font-size: 14pt; margin-top: 18pt; break-after: avoid; }
  h3 { font-size: 11.5pt; break-after: avoid; }
  .kf { padding: 2pt 10pt 6pt 10pt; } .kf .why { font-size: 9pt; }
  figure { margin: 8pt 0 14pt 0; } figure img { border: none; }
  figure, tr, .kf li, .scenario { break-inside: avoid; }
  figcaption { font-size: 8.5pt; }
  table { font-size: 8pt; width: 100%; } th, td { padding: 2pt 3pt; }
  td .rng, td .dif, td .ci { font-size: 7pt; white-space: normal; }
  td.why { max-width: none; font-size: 8pt; }
  .tablewrap { overflow: visible; }
  nav.toc, .files { display: none; }
  a { color: inherit; text-decoration: none; }
  .appendix { break-before: page; }
  code { font-size: 8pt; word-break: break-all; }
}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _name(value: Any) -> str:
    """A scenario or column name that may break after its underscores in narrow cells."""
    return _e(value).replace("_", "_<wbr>")


def _isnan(value: Any) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def _fmt(value: Any, signed: bool = False) -> str:
    """Format a number for tables: 3 significant-ish digits, "n/a" when missing."""
    if _isnan(value):
        return "n/a"
    x = float(value)
    ax = abs(x)
    spec = ",.0f" if ax >= 100 else ".1f" if ax >= 10 else ".2f"
    text = format(x, spec)
    if text.lstrip("-").strip("0.,") == "":  # rounds to zero: no sign
        return text.lstrip("-")
    if signed and x > 0:
        text = "+" + text
    return text.replace("-", "\u2212")


def _one(value: float, signed: bool = False) -> str:
    """One decimal (key findings), unicode minus, ``+`` when asked."""
    if _isnan(value):
        return "n/a"
    x = float(value)
    text = f"{x:+.1f}" if signed else f"{x:.1f}"
    if text in ("+0.0", "-0.0"):
        text = "0.0"
    return text.replace("-", "\u2212")


def _pct(value: Any) -> str:
    """A probability as a whole percentage, "n/a" when missing."""
    return "n/a" if _isnan(value) else f"{100 * float(value):.0f}%"


def _v(text: str, table: str, col: str, value: Any, scale: float = 1.0, **keys: Any) -> str:
    """A number of the key findings, tagged with the table cell it comes from.

    ``data-table`` / ``data-col`` and one ``data-<key>`` per row key name the cell of the
    CSV; ``data-value`` is the cell's full-precision value; ``data-scale`` multiplies it to
    the number shown (100 for probabilities shown in %).
    """
    attrs = "".join(f" data-{k}='{_e(v)}'" for k, v in keys.items())
    return (
        f"<span class='v' data-table='{_e(table)}' data-col='{_e(col)}' "
        f"data-value='{float(value)!r}' data-scale='{scale:g}'{attrs}>{_e(text)}</span>"
    )


def _caption(number: str, title: str, what: str, measure: str) -> str:
    return f"<b>{_e(number)}. {_e(title)}.</b> {_e(what)} <i>Measure:</i> {_e(measure)}"


def _table_figure(caption_html: str, rows_html: str, cls: str = "") -> str:
    """A table with its caption above it (long captions stay readable)."""
    klass = f" class='{cls}'" if cls else ""
    return (
        f"<figure class='table'><figcaption>{caption_html}</figcaption>"
        f"<div class='tablewrap'><table{klass}>{rows_html}</table></div></figure>"
    )


#: A lead sentence shorter than this takes the next sentence with it in the key findings.
SHORT_LEAD_CHARS = 110


def _first_sentence(text: str) -> str:
    """The first sentence of a text (up to the first '. '), two when the first is short."""
    text = " ".join(text.split())
    cut = text.find(". ")
    if 0 <= cut < SHORT_LEAD_CHARS:
        more = text.find(". ", cut + 2)
        cut = more if more >= 0 else len(text) - 1
    return text if cut < 0 else text[: cut + 1]


# --------------------------------------------------------------------------------------
# Key findings
# --------------------------------------------------------------------------------------

SUMMARY_CSV = "table_summary.csv"
THRESHOLDS_CSV = "table_thresholds.csv"
EXPECTATIONS_CSV = "table_expectations.csv"


def _row(summary: pd.DataFrame, scenario: str, year: int, variable: str):
    sel = summary[
        (summary["scenario"] == scenario)
        & (summary["year"] == year)
        & (summary["variable"] == variable)
    ]
    return None if sel.empty else sel.iloc[0]


def _level_item(summary, base: str, prov: Provenance) -> str:
    """The baseline's median and 90% band of self-sufficiency in the level years."""
    parts = []
    ci_text = ""
    for year in LEVEL_YEARS:
        r = _row(summary, base, year, SS)
        if r is None:
            continue
        keys = {"scenario": base, "year": year, "variable": SS}
        parts.append(
            f"{_v(_one(r['median']) + '%', SUMMARY_CSV, 'median', r['median'], **keys)} in "
            f"{year} (90% of runs "
            f"{_v(_one(r['q05']), SUMMARY_CSV, 'q05', r['q05'], **keys)}&ndash;"
            f"{_v(_one(r['q95']) + '%', SUMMARY_CSV, 'q95', r['q95'], **keys)})"
        )
        if year == LEVEL_YEARS[-1]:
            if _isnan(r["median_ci_low"]) or _isnan(r["median_ci_high"]):
                ci_text = (
                    f" With {int(r['runs'])} runs the Monte-Carlo error of the {year} median "
                    "cannot be bounded at 95% (at least 6 runs are needed)."
                )
            else:
                ci_text = (
                    f" Monte-Carlo error: the {year} median lies in "
                    f"{_v(_one(r['median_ci_low']), SUMMARY_CSV, 'median_ci_low', r['median_ci_low'], **keys)}"  # noqa: E501
                    f"&ndash;"
                    f"{_v(_one(r['median_ci_high']) + '%', SUMMARY_CSV, 'median_ci_high', r['median_ci_high'], **keys)}"  # noqa: E501
                    " (95% interval from the runs)."
                )
    if not parts:
        return ""
    seeds = ""
    r = _row(summary, base, LEVEL_YEARS[-1], SS)
    if prov.with_parameters and r is not None and not _isnan(r["seed_band_width"]):
        keys = {"scenario": base, "year": LEVEL_YEARS[-1], "variable": SS}
        seeds = (
            f" Seed noise alone (one parameter draw) spans a typical "
            f"{_v(_one(r['seed_band_width']), SUMMARY_CSV, 'seed_band_width', r['seed_band_width'], **keys)}"  # noqa: E501
            f" pp in {LEVEL_YEARS[-1]}."
        )
    return (
        f"<li><b>Baseline:</b> China's chip self-sufficiency (China-located production) is "
        f"{', '.join(parts[:-1])}{' and ' if len(parts) > 1 else ''}{parts[-1]}. "
        f"{_e(prov.band_sentence())}{seeds}{ci_text}</li>"
    )


def _goal_item(summary, thresholds, base: str | None, order: list[str]) -> str:
    """The gap to the 70% goal and the best chance of reaching the thresholds."""
    goal = goal_pct()
    bits = []
    if base is not None:
        gaps = []
        for year in (LEVEL_YEARS[0], LEVEL_YEARS[-1]):
            r = _row(summary, base, year, "goal_gap_pp")
            if r is not None:
                keys = {"scenario": base, "year": year, "variable": "goal_gap_pp"}
                where = "short" if r["median"] > 0 else "past it"
                shown = _one(abs(r["median"]))
                gaps.append(
                    f"{_v(shown, SUMMARY_CSV, 'median', r['median'], 1 if r['median'] > 0 else -1, **keys)} pp "  # noqa: E501
                    f"{where} in {year}"
                )
        if gaps:
            bits.append(
                f"Against the Made in China 2025 goal of {goal:.0f}% by {F01_YEAR} (F01), the "
                f"baseline's median is {' and '.join(gaps)}."
            )
    if thresholds is not None and len(thresholds):
        bits.append(_threshold_sentence(thresholds, order))
    return f"<li><b>The goal:</b> {' '.join(bits)}</li>" if bits else ""


def _threshold_sentence(thresholds, order: list[str]) -> str:
    """The highest threshold some run reaches by the last year, and the best chance of it.

    When no run of any scenario reaches even the lowest threshold, say so with the largest
    Wilson upper bound: "none of 20 runs" still allows a chance of up to about 16%.
    """
    year = int(max(thresholds["year"]))
    at = thresholds[(thresholds["year"] == year) & thresholds["scenario"].isin(order)]
    at = at.dropna(subset=["probability"])
    if at.empty:
        return ""
    rank = {s: i for i, s in enumerate(order)}
    for level in sorted(set(at["threshold_pct"]), reverse=True):
        sel = at[at["threshold_pct"] == level]
        if sel["probability"].max() > 0:
            sel = sel.assign(rank=sel["scenario"].map(rank))
            best = sel.sort_values(["probability", "rank"], ascending=[False, True]).iloc[0]
            keys = {"scenario": best["scenario"], "threshold_pct": level, "year": year}
            return (
                f"The highest level any run reaches by {year} is {level:.0f}%; the best chance "
                f"of it is in {_e(best['scenario'])}: "
                f"{_v(_pct(best['probability']), THRESHOLDS_CSV, 'probability', best['probability'], 100, **keys)}"  # noqa: E501
                f" of runs (95% interval "
                f"{_v(_pct(best['ci_low']), THRESHOLDS_CSV, 'ci_low', best['ci_low'], 100, **keys)}"  # noqa: E501
                f"&ndash;"
                f"{_v(_pct(best['ci_high']), THRESHOLDS_CSV, 'ci_high', best['ci_high'], 100, **keys)})."  # noqa: E501
            )
    lowest = min(at["threshold_pct"])
    sel = at[at["threshold_pct"] == lowest]
    worst = sel.sort_values("ci_high", ascending=False).iloc[0]
    keys = {"scenario": worst["scenario"], "threshold_pct": lowest, "year": year}
    return (
        f"No run of any scenario reaches {lowest:.0f}% by {year}; with "
        f"{int(worst['runs'])} runs per scenario the chance is below "
        f"{_v(_pct(worst['ci_high']), THRESHOLDS_CSV, 'ci_high', worst['ci_high'], 100, **keys)} "
        "(95% Wilson bound)."
    )


def _effect_text(r, year: int) -> str:
    keys = {"scenario": r["scenario"], "year": year, "variable": SS}
    return (
        f"{_v(_one(r['diff_median'], True) + ' pp', SUMMARY_CSV, 'diff_median', r['diff_median'], **keys)}"  # noqa: E501
        f" in {year} (90% of run pairs "
        f"{_v(_one(r['diff_q05'], True), SUMMARY_CSV, 'diff_q05', r['diff_q05'], **keys)} to "
        f"{_v(_one(r['diff_q95'], True), SUMMARY_CSV, 'diff_q95', r['diff_q95'], **keys)})"
    )


def _effects_item(summary, base: str | None, changes: dict[str, ScenarioChanges]) -> str:
    """The largest paired effects at the last horizon, with their bands and reasons."""
    if base is None:
        return ""
    effects = effect_rows(summary, base)
    if effects.empty:
        return ""
    last_year = int(effects["year"].max())
    first_year = int(effects["year"].min())
    last = effects[effects["year"] == last_year].copy()
    last["size"] = last["diff_median"].abs()
    ranked = last.sort_values("size", ascending=False, kind="stable")
    top = ranked.head(TOP_EFFECTS)
    for sign in (1, -1):  # keep the largest gain and the largest loss in view
        side = ranked[ranked["diff_median"] * sign > 0]
        if len(side) and not (top["diff_median"] * sign > 0).any():
            top = ranked[ranked["scenario"].isin([*top["scenario"], side.iloc[0]["scenario"]])]
    lines = []
    for r in top.itertuples(index=False):
        r = r._asdict()
        earlier = effects[(effects["scenario"] == r["scenario"]) & (effects["year"] == first_year)]
        then = ""
        if first_year != last_year and len(earlier):
            e = earlier.iloc[0]
            keys = {"scenario": r["scenario"], "year": first_year, "variable": SS}
            then = (
                f"; {_v(_one(e['diff_median'], True), SUMMARY_CSV, 'diff_median', e['diff_median'], **keys)}"  # noqa: E501
                f" pp in {first_year}"
            )
        why = changes.get(r["scenario"]).explanation if r["scenario"] in changes else ""
        why_html = f"<span class='why'>Why: {_e(_first_sentence(why))}</span>" if why else ""
        lines.append(
            f"<li><a href='#scenario-{_e(r['scenario'])}'>{_e(r['scenario'])}</a>: "
            f"{_effect_text(r, last_year)}{then}.{why_html}</li>"
        )
    small = last[last["size"] < SMALL_EFFECT_PP].sort_values("diff_median")
    small_text = ""
    if len(small):
        listed = ", ".join(
            f"{_e(r.scenario)} "
            + _v(
                _one(r.diff_median, True),
                SUMMARY_CSV,
                "diff_median",
                r.diff_median,
                scenario=r.scenario,
                year=last_year,
                variable=SS,
            )
            for r in small.itertuples()
        )
        small_text = (
            f" Scenarios that move {last_year} self-sufficiency by less than "
            f"{SMALL_EFFECT_PP:g} pp: {listed}."
        )
    return (
        f"<li><b>Largest scenario effects</b> on self-sufficiency in {last_year} (scenario "
        f"minus baseline, run by run with the same seeds and draws; Figure 1):<ul>"
        f"{''.join(lines)}</ul>{small_text}</li>"
    )


def _expects_item(checks: pd.DataFrame | None) -> str:
    """How many scenario expectations held, and which failed with the measured value."""
    if checks is None or checks.empty:
        return ""
    measured = checks[checks["held"].notna()]
    failed = measured[~measured["held"].astype(bool)]
    unmeasured = len(checks) - len(measured)
    head = (
        f"<b>Expectations:</b> {int(measured['held'].astype(bool).sum())} of {len(measured)} "
        "measured scenario expectations held"
    )
    if unmeasured:
        head += f" ({unmeasured} could not be measured in this batch)"
    if failed.empty:
        return f"<li>{head}.</li>"
    items = []
    for r in failed.itertuples():
        keys = {"scenario": r.scenario, "output": r.output, "year": r.year}
        items.append(
            f"<li><a href='#scenario-{_e(r.scenario)}'>{_e(r.scenario)}</a>: {_e(r.output)} "
            f"in {r.year} expected {_e(r.direction)}, measured "
            f"{_v(_fmt(r.diff_median, True), EXPECTATIONS_CSV, 'diff_median', r.diff_median, **keys)}"  # noqa: E501
            f" (median paired difference; {r.share_in_direction:.0%} of pairs in the "
            "expected direction)</li>"
        )
    return f"<li>{head}; not held:<ul>{''.join(items)}</ul></li>"


def _key_findings_html(
    summary, thresholds, checks, base, order, prov, changes, notes_html: str
) -> str:
    items = []
    if base is not None:
        items.append(_level_item(summary, base, prov))
    items.append(_goal_item(summary, thresholds, base, order))
    items.append(_effects_item(summary, base, changes))
    items.append(_expects_item(checks))
    body = "".join(i for i in items if i)
    if not body:
        body = "<li>No self-sufficiency data in this store.</li>"
    toc = (
        "<nav class='toc'>Contents: <a href='#effects'>Scenario effects</a> &middot; "
        "<a href='#scenarios'>What each scenario changed</a> &middot; "
        "<a href='#figures'>Figures</a> &middot; <a href='#tables'>Tables</a> &middot; "
        "<a href='#appendix'>Appendix: provenance and method</a></nav>"
    )
    return (
        f"<section class='kf' id='key-findings'><h2>Key findings</h2><ul>{body}</ul>"
        f"{toc}</section>{notes_html}"
    )


# --------------------------------------------------------------------------------------
# Effects table, scenario sections, data tables, appendix
# --------------------------------------------------------------------------------------


def _effects_table(effects, order, changes, checks, base) -> str:
    years = sorted(set(effects["year"]))
    head = "".join(f"<th>effect in {y}</th>" for y in years)
    look = effects.set_index(["scenario", "year"])
    body = ""
    for s in order:
        cells = ""
        for y in years:
            if (s, y) not in look.index:
                cells += "<td class='num'>n/a</td>"
                continue
            r = look.loc[(s, y)]
            lo, hi = r["diff_median_ci_low"], r["diff_median_ci_high"]
            ci = (
                "median: more runs needed for a 95% interval"
                if _isnan(lo) or _isnan(hi)
                else f"median's 95% interval: {_fmt(lo, True)} to {_fmt(hi, True)}"
            )
            cells += (
                f"<td class='num'>{_fmt(r['diff_median'], True)} pp"
                f"<span class='rng'>90%: {_fmt(r['diff_q05'], True)} to "
                f"{_fmt(r['diff_q95'], True)}</span><span class='ci'>{ci}</span></td>"
            )
        held = ""
        if checks is not None and len(checks):
            mine = checks[(checks["scenario"] == s) & checks["held"].notna()]
            if len(mine):
                k = int(mine["held"].astype(bool).sum())
                cls = "held" if k == len(mine) else "failed"
                held = f"<span class='{cls}'>{k} of {len(mine)}</span>"
        why = changes[s].explanation if s in changes else ""
        body += (
            f"<tr><th><a href='#scenario-{_e(s)}'>{_name(s)}</a></th>{cells}"
            f"<td class='num'>{held}</td><td class='why'>{_e(why) or '&ndash;'}</td></tr>"
        )
    cap = (
        f"<b>Effects beside their reasons.</b> The numbers of Figure 1 (median paired "
        f"difference from {_e(base)} in percentage points, the 5th-95th percentile of the run "
        "pairs, and the Monte-Carlo 95% interval of the median), the scenario expectations "
        "that held, and the scenario file's <code>explanation</code> of the mechanism behind "
        "the result."
    )
    return _table_figure(
        cap,
        f"<tr><th>scenario</th>{head}<th>expects held</th><th>why</th></tr>{body}",
    )


def _value_text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "none" if value is None else str(value)


def _scenario_sections(order, changes, checks, summary, base, prov: Provenance) -> str:
    import pandas as pd

    from analysis.stats import annual_unit, describe

    defaults = _event_defaults()
    blocks = []
    for s in order:
        ch = changes.get(s)
        head = f"<h3>{_e(s)}</h3>"
        if ch is None:
            blocks.append(
                f"<div class='scenario' id='scenario-{_e(s)}'>{head}<p>The store holds no "
                "resolved copy of this scenario.</p></div>"
            )
            continue
        parts = [f"<p class='q'>{_e(ch.question)}</p>"]
        if ch.parent is None and len(ch.lineage) < 2:
            parts.append("<p>The reference scenario: every other scenario is compared with it.</p>")
        elif ch.parent is not None:
            changes_list = []
            if ch.added:
                changes_list.append(
                    f"<li><b>Events added</b> ({len(ch.added)}):<ul>"
                    + "".join(f"<li>{_e(event_text(e, defaults))}</li>" for e in ch.added)
                    + "</ul></li>"
                )
            if ch.dropped:
                names = ", ".join(
                    f"{e.get('id') or e.get('action')} ({e.get('at')})" for e in ch.dropped
                )
                changes_list.append(
                    f"<li><b>Events dropped</b> ({len(ch.dropped)}): {_e(names)}</li>"
                )
            for path, old, new in ch.parameters:
                changes_list.append(
                    f"<li><b>Parameter</b> <code>{_e(path)}</code>: {_e(_value_text(old))} "
                    f"&rarr; {_e(_value_text(new))}</li>"
                )
            for path, old, new in ch.uncertain:
                changes_list.append(
                    f"<li><b>Uncertain range</b> <code>{_e(path)}</code>: "
                    f"{_e(_value_text(old))} &rarr; {_e(_value_text(new))}</li>"
                )
            if not changes_list:
                changes_list.append("<li>No change of events or parameters.</li>")
            chain = " &rarr; ".join(_e(x) for x in ch.lineage)
            parts.append(
                f"<p>Changes against <b>{_e(ch.parent)}</b> (chain: {chain}):</p>"
                f"<ul>{''.join(changes_list)}</ul>"
            )
        if ch.note:
            parts.append(f"<p><i>Note: {_e(ch.note)}.</i></p>")
        eff = []
        for year in EFFECT_YEARS:
            r = _row(summary, s, year, SS)
            if r is not None and s != base and not _isnan(r["diff_median"]):
                eff.append(
                    f"{_fmt(r['diff_median'], True)} pp in {year} (90%: "
                    f"{_fmt(r['diff_q05'], True)} to {_fmt(r['diff_q95'], True)})"
                )
        if eff:
            parts.append(f"<p><b>Effect on self-sufficiency:</b> {'; '.join(eff)}.</p>")
        if ch.explanation:
            parts.append(f"<p class='why'><b>Why:</b> {_e(ch.explanation)}</p>")
        mine = checks[checks["scenario"] == s] if checks is not None and len(checks) else None
        if mine is not None and len(mine):
            rows = ""
            for r in mine.itertuples():
                if r.status.startswith("not measured"):
                    verdict, measured = _e(r.status), "&ndash;"
                else:
                    cls = "held" if r.status == "held" else "failed"
                    unclear = not pd.isna(r.clear) and not bool(r.clear)
                    clear = "; within Monte-Carlo error" if unclear else ""
                    verdict = f"<span class='{cls}'>{_e(r.status)}</span>{clear}"
                    ci = (
                        f"95%: {_fmt(r.diff_ci_low, True)} to {_fmt(r.diff_ci_high, True)}"
                        if not (_isnan(r.diff_ci_low) or _isnan(r.diff_ci_high))
                        else "95% interval: more runs needed"
                    )
                    measured = (
                        f"{_fmt(r.diff_median, True)} {_e(annual_unit(r.output))}"
                        f"<span class='ci'>{ci}; {r.share_in_direction:.0%} of "
                        f"{r.pairs} pairs {_e(r.direction)}</span>"
                    )
                note = f"<span class='ci'>{_e(r.note)}</span>" if r.note else ""
                rows += (
                    f"<tr><td>{_e(describe(r.output).label)}<span class='ci'>"
                    f"<code>{_name(r.output)}</code></span>{note}</td><td>{r.year}</td>"
                    f"<td>{_e(r.direction)} vs {_e(r.vs)}</td><td class='num'>{measured}</td>"
                    f"<td>{verdict}</td></tr>"
                )
            parts.append(
                "<div class='tablewrap'><table><tr><th>expected output</th><th>year</th>"
                "<th>direction</th><th>measured (median paired difference)</th><th>result</th>"
                f"</tr>{rows}</table></div>"
            )
        blocks.append(f"<div class='scenario' id='scenario-{_e(s)}'>{head}{''.join(parts)}</div>")
    intro = (
        "<p>Generated from the resolved scenarios stored with the runs (inheritance and "
        "overrides applied). Expectations are checked as the scenario library test checks "
        "them: the median over run pairs of the scenario-minus-comparison difference in the "
        "calendar-year value must have the stated sign; the 95% interval of that median "
        f"(its Monte-Carlo error with {_e(prov.runs_text())}) says whether the sign is "
        "clear.</p>"
    )
    return intro + "".join(blocks)


def _threshold_html(thr: pd.DataFrame, prov: Provenance, order: list[str], number: str) -> str:
    years = sorted(set(thr["year"]))
    levels = sorted(set(thr["threshold_pct"]))
    top = "".join(f"<th colspan='{len(levels)}'>by {int(y)}</th>" for y in years)
    sub = "".join(f"<th>&ge;{t:.0f}%</th>" for _ in years for t in levels)
    look = thr.set_index(["scenario", "threshold_pct", "year"])
    body = ""
    for s in order:
        cells = ""
        for y in years:
            for t in levels:
                if (s, t, y) not in look.index:
                    cells += "<td class='num'>n/a</td>"
                    continue
                r = look.loc[(s, t, y)]
                ci = (
                    ""
                    if _isnan(r["ci_low"])
                    else f"<span class='ci'>{_pct(r['ci_low'])}&ndash;{_pct(r['ci_high'])}</span>"
                )
                cells += f"<td class='num'>{_pct(r['probability'])}{ci}</td>"
        body += f"<tr><th>{_name(s)}</th><td class='num'>{prov.runs[s]}</td>{cells}</tr>"
    cap = _caption(
        number,
        "Probability of reaching self-sufficiency thresholds",
        "Share of runs in which China reaches 30%, 50% and 70% self-sufficiency by 2030 and "
        "by 2035 (70% is the Made in China 2025 goal, F01); second line: the 95% Wilson "
        "interval of that share (its Monte-Carlo error with this many runs).",
        "a run has reached X% by year Y when the calendar-year mean of its quarterly "
        "self_sufficiency_pct (China-located production, F03's definition) is at least X in "
        "Y or any earlier year.",
    )
    return _table_figure(
        cap,
        f"<tr><th rowspan='2'>scenario</th><th rowspan='2'>runs</th>{top}</tr><tr>{sub}</tr>{body}",
    )


def _output_tables(table: pd.DataFrame, order: list[str], baseline: str | None, first: int):
    """One table per key output: scenarios down, the summary years across."""
    from analysis.stats import describe

    years = sorted(set(table["year"]))
    look = table.set_index(["variable", "scenario", "year"])
    blocks = []
    number = first
    for var in dict.fromkeys(table["variable"]):
        unit = table.loc[table["variable"] == var, "unit"].iloc[0]
        head = "".join(f"<th>{int(y)}</th>" for y in years)
        body = ""
        for s in order:
            cells = ""
            for y in years:
                if (var, s, y) not in look.index:
                    cells += "<td class='num'>n/a</td>"
                    continue
                r = look.loc[(var, s, y)]
                cell = (
                    f"{_fmt(r['median'])}<span class='rng'>90%: {_fmt(r['q05'])} to "
                    f"{_fmt(r['q95'])}</span>"
                )
                if s != baseline and not _isnan(r["diff_median"]):
                    cell += (
                        f"<span class='dif'>&Delta; {_fmt(r['diff_median'], True)} "
                        f"({_fmt(r['diff_q05'], True)} to {_fmt(r['diff_q95'], True)})</span>"
                    )
                cells += f"<td class='num'>{cell}</td>"
            body += f"<tr><th>{_name(s)}</th>{cells}</tr>"
        cap = (
            f"<b>Table {number}. {_e(describe(var).label)}</b> ({_e(unit)}; "
            f"<code>{_name(var)}</code>)."
        )
        blocks.append(_table_figure(cap, f"<tr><th>scenario</th>{head}</tr>{body}"))
        number += 1
    return blocks


def _meta_html(prov: Provenance) -> str:
    """The appendix tables: what was run, and the scenarios with hash, file and runs."""
    m = prov.manifest

    def get(*keys: str) -> str:
        value: Any = m
        for key in keys:
            value = value.get(key, "unknown") if isinstance(value, dict) else "unknown"
        if isinstance(value, (list, tuple)):
            return " ".join(str(v) for v in value) or "none"
        if isinstance(value, dict):
            return ", ".join(f"{k} {v}" for k, v in value.items())
        return "unknown" if value is None else str(value)

    if prov.with_parameters:
        sampled = (
            f"{prov.samples} draws ({prov.sample_method}, design seed "
            f"{get('samples', 'seed')}) of {len(prov.sampled_paths)} parameters: "
            + (", ".join(prov.sampled_paths) or "see the manifest")
        )
    else:
        sampled = "none: every run uses the scenario's parameter values (seed noise only)"
    entries = m.get("scenarios") if isinstance(m.get("scenarios"), dict) else {}
    scen_rows = ""
    for s in prov.runs:
        entry = entries.get(s) if isinstance(entries.get(s), dict) else {}
        scen_rows += (
            f"<tr><td>{_name(s)}</td><td><code>{_e(prov.hashes[s])}</code></td>"
            f"<td>{_e(entry.get('file', 'unknown'))}</td>"
            f"<td class='num'>{prov.runs[s]}</td></tr>"
        )
    rows = [
        ("Batch (directory)", prov.batch),
        ("Kind", get("kind")),
        ("Model version", prov.model_version),
        ("Model fingerprint", get("model_fingerprint")[:16]),
        ("Command", get("command")),
        ("Created / finished", f"{get('created')} / {get('finished')}"),
        ("Git commit", f"{get('git', 'commit')} (dirty: {get('git', 'dirty')})"),
        ("Root entropy", get("root_entropy")),
        ("Seeds (replicates)", get("seeds")),
        ("Parameter draws", sampled),
        ("Overrides (--set)", get("overrides")),
        ("Runs", prov.runs_text()),
        ("Bands include", prov.band_short()),
    ]
    meta = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<div class='tablewrap'><table class='meta'>{meta}</table></div>" + _table_figure(
        "<b>Scenarios in this batch</b> (hash = first 8 hex digits of the sha256 of the "
        "resolved scenario; runs = seeds x parameter draws present in the data).",
        f"<tr><th>scenario</th><th>hash</th><th>file</th><th>runs</th></tr>{scen_rows}",
    )


def _figure_block(number: str, spec: FigureSpec, png: bytes, extra_what: str = "") -> str:
    import base64

    data = base64.b64encode(png).decode("ascii")
    cap = _caption(number, spec.title, spec.what + extra_what, spec.measure)
    files = " | ".join(
        f"<a href='{_e(spec.stem)}.{ext}'>{ext.upper()}</a>" for ext in ("png", "svg", "csv")
    )
    return (
        f"<figure id='{_e(spec.stem)}'><img src='data:image/png;base64,{data}' "
        f"alt='{_e(spec.title)}' width='1600'>"
        f"<figcaption>{cap} <span class='files'>Files: {files}</span></figcaption></figure>"
    )


def _write_html(path: Path, prov: Provenance, sections: dict[str, str]) -> None:
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>China's chip self-sufficiency to 2035: batch {_e(prov.batch)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>China's chip self-sufficiency to 2035: scenario report</h1>
<p class="lede">Batch <b>{_e(prov.batch)}</b>, model version {_e(prov.model_version)},
{_e(prov.runs_text())}; bands: {_e(prov.band_short())}. Every figure and table below comes
from this batch (provenance: <a href="#appendix">Appendix</a>).</p>
{sections["key_findings"]}
<h2 id="effects">Scenario effects</h2>
{sections["effects"]}
<h2 id="scenarios">What each scenario changed</h2>
{sections["scenarios"]}
<h2 id="figures">Figures</h2>
{sections["figures"]}
{sections["sensitivity"]}
<h2 id="tables">Tables</h2>
{sections["tables"]}
<section class="appendix" id="appendix">
<h2>Appendix A: provenance of the batch</h2>
{sections["provenance"]}
<h2>Appendix B: definitions and method</h2>
<ul>
<li>{_e(SS_DEFINITION)}. The narrower Chinese-headquartered measure
(IC Insights: 6.6% in 2021) is <code>self_sufficiency_china_hq_pct</code>.</li>
<li>Runs: every replicate seed of every parameter draw of a scenario. Bands and
probabilities pool all runs of a scenario. Quantiles use linear interpolation.
{_e(prov.band_sentence())}</li>
<li>Paired differences: each scenario's run is matched with the baseline run of the same seed
AND parameter draw AND quarter (or calendar year); replicate <i>i</i> shares its random stream
across scenarios (common random numbers), so the difference isolates the scenario's effect.
The median and bands are those of the run-by-run differences.</li>
<li>Monte-Carlo error: a probability's 95% interval is Wilson's; a median's or band end's is
the distribution-free order-statistic interval (the columns <code>*_ci_low</code> and
<code>*_ci_high</code> of <code>table_summary.csv</code>); "n/a" means too few runs to bound
it at 95%.</li>
<li>Time: quarterly values are plotted at the middle of the quarter (2021Q1 at 2021.125);
stocks and shares are end-of-quarter values; flows (US$ bn, firm entries and exits) are per
quarter in the figures and summed to calendar years in the tables.</li>
<li>Files: each figure's PNG, SVG and CSV (the exact numbers drawn) and the tables as CSV sit
beside this page. See <code>docs/report.md</code> in the project.</li>
</ul>
</section>
</body>
</html>
"""
    path.write_text(page, encoding="utf-8")


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------


def _sensitivity_html(run_dir: str | Path, study: str | Path | None) -> str:
    """The global-sensitivity section of a study (or of the store itself), else ``""``.

    Raises:
        ValueError: if ``study`` is given but holds no sensitivity results.
    """
    from analysis import sensitivity

    if study is None:
        return sensitivity.report_section(run_dir) or ""
    section = sensitivity.report_section(study)
    if section is None:
        raise ValueError(
            f"--sensitivity {study}: no sensitivity results there (expected the output "
            "directory of `decouple sensitivity`, or a batch store analysed with "
            "`decouple sensitivity --from-store`)"
        )
    return section


def _expectations(resolved: dict[str, dict], order: list[str]) -> list[dict]:
    out = []
    for s in order:
        for ex in (resolved.get(s) or {}).get("expects") or []:
            if isinstance(ex, dict) and {"output", "year", "direction"} <= set(ex):
                out.append({**ex, "scenario": s})
    return out


def build_report(
    run_dir: str | Path,
    baseline: str = DEFAULT_BASELINE,
    out: str | Path | None = None,
    *,
    require_baseline: bool | None = None,
    pdf: bool = False,
    sensitivity: str | Path | None = None,
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
        pdf: also print ``report.pdf`` with headless Chromium (:func:`write_pdf`).
        sensitivity: a ``decouple sensitivity`` study whose indices the report shows in a
            section of their own; default: the store's own (``decouple sensitivity
            --from-store DIR`` writes them into ``DIR/sensitivity/``), else no section.

    Returns:
        Path of ``report.html``.

    Raises:
        ValueError: if the store is missing or empty (see :func:`analysis.load.load`), or
            the baseline is required but absent (the message names the scenarios present).
        ReportPdfError: if ``pdf`` and the PDF cannot be printed (``report.html`` is
            written first and kept).

    Warns:
        UserWarning: when the baseline is absent and not required (paired differences are
            skipped and the report says so), and for other data problems also listed in
            the report's notes.
    """
    from analysis.load import available_columns, load, load_manifest, load_resolved
    from analysis.stats import (
        add_derived,
        expectation_checks,
        paired_differences,
        quantile_bands,
        run_counts,
        summary_table,
        threshold_probabilities,
    )

    run_dir = Path(run_dir)
    manifest = load_manifest(run_dir)
    columns = available_columns(run_dir)
    resolved, resolved_problems = load_resolved(run_dir, manifest)
    specs = figures()
    wanted = {v for spec in specs for v in spec.variables}
    wanted |= {over for spec in specs for _, over, _ in spec.overlay}
    wanted |= set(TABLE_VARIABLES) | {"fab_equipment_purchases_usd_bn"}
    wanted |= {c for c in columns if c.startswith("foreign_revenue_from_china_usd_bn_")}
    wanted |= {ex["output"] for ex in _expectations(resolved, list(resolved))}
    load_cols = [c for c in columns if c in wanted]
    frame = add_derived(load(run_dir, columns=load_cols))
    if frame.empty:
        raise ValueError(f"run store {str(run_dir)!r} holds no rows")

    if require_baseline is None:
        require_baseline = baseline != DEFAULT_BASELINE
    present = sorted(frame["scenario"].unique())
    notes: list[str] = list(resolved_problems)
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
    prov = _provenance(run_dir, manifest, runs, order, frame)
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
        expectations = _expectations(resolved, order)
        checks = expectation_checks(frame, expectations) if expectations else None
    for w in caught:
        notes.append(str(w.message))
        warnings.warn(str(w.message), UserWarning, stacklevel=2)
    if base is not None and len(order) == 1:
        notes.append(f"Only the baseline {base!r} is present: no paired differences to show.")

    out_dir = Path(out) if out is not None else run_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)

    from analysis.plots import clipped_elements, rc_context, save, scenario_styles, small_multiples

    changes = scenario_changes(resolved, base, order)
    effects = effect_rows(summary, base) if base is not None else summary.iloc[:0]
    ranked = effect_order(effects, [s for s in order if s != base])
    styles = scenario_styles(order)
    programme_text, mark_x = _programme_note(resolved, order)

    figure_blocks: list[str] = []
    effects_block = "<p>No paired effects: the batch has no baseline to compare with.</p>"
    number = 0
    with rc_context():
        for spec in specs:
            if spec.kind == "effects":
                if effects.empty:
                    notes.append(f"Figure '{spec.title}' skipped: no paired effects to show.")
                    continue
                fig, drawn = _effects_figure(spec, effects, ranked, styles, prov)
            else:
                fig_data = _figure_data(
                    spec, bands, diff_bands, overlay_bands, order, base, prov, ranked, mark_x
                )
                if fig_data is None:
                    reason = (
                        "no baseline to difference from"
                        if spec.diff and base is None
                        else "its outputs are not in this store"
                    )
                    notes.append(f"Figure '{spec.title}' skipped: {reason}.")
                    continue
                fig = small_multiples(fig_data)
                drawn = fig_data.data
            for problem in clipped_elements(fig):
                notes.append(f"Figure '{spec.title}': {problem} reaches outside the image.")
            number += 1
            _, _, png = save(fig, out_dir / spec.stem)
            drawn.to_csv(out_dir / f"{spec.stem}.csv", index=False)
            extra = ""
            if spec.kind in ("fan", "effects"):
                extra = " " + prov.band_sentence()
            if spec.programme_marks:
                extra += programme_text
            block = _figure_block(f"Figure {number}", spec, png, extra)
            if spec.kind == "effects":
                effects_block = block + _effects_table(effects, ranked, changes, checks, base)
            else:
                figure_blocks.append(block)

    summary.to_csv(out_dir / SUMMARY_CSV, index=False)
    if checks is not None:
        checks.to_csv(out_dir / EXPECTATIONS_CSV, index=False)
    tables: list[str] = []
    if thresholds is not None:
        thresholds.to_csv(out_dir / THRESHOLDS_CSV, index=False)
        tables.append(_threshold_html(thresholds, prov, order, "Table 1"))
    else:
        notes.append("self_sufficiency_pct is not in this store: no threshold table.")
    tables.append(
        "<p>Tables 2 onward: one key output per table, scenarios down, calendar years "
        "across. First line: median across runs of the calendar-year value (mean of the "
        "four quarters for stocks and shares; sum for flows, US$ bn per year); second line: "
        "5th-95th percentile across runs; third line (&Delta;): paired difference from "
        f"{_e(base or 'the baseline')}, median and 5th-95th percentile of the run-by-run "
        "differences. Monte-Carlo intervals of every median and band end are in "
        f"<code>{SUMMARY_CSV}</code>.</p>"
    )
    tables += _output_tables(summary, ([base] if base else []) + ranked, base, 2)

    notes_html = (
        "<div class='notes'><b>Notes on this batch</b><ul>"
        + "".join(f"<li>{_e(n)}</li>" for n in notes)
        + "</ul></div>"
        if notes
        else ""
    )
    scen_order = ([base] if base else []) + ranked
    sections = {
        "sensitivity": _sensitivity_html(run_dir, sensitivity),
        "key_findings": _key_findings_html(
            summary, thresholds, checks, base, order, prov, changes, notes_html
        ),
        "effects": effects_block,
        "scenarios": _scenario_sections(scen_order, changes, checks, summary, base, prov),
        "figures": "".join(figure_blocks),
        "tables": "".join(tables),
        "provenance": _meta_html(prov),
    }
    report = out_dir / "report.html"
    _write_html(report, prov, sections)
    if pdf:
        write_pdf(report, out_dir / "report.pdf")
    return report


# --------------------------------------------------------------------------------------
# PDF through headless Chromium
# --------------------------------------------------------------------------------------


class ReportPdfError(ValueError):
    """The PDF could not be printed (no Chromium, or Chromium failed); the HTML is kept."""


def find_chromium() -> str | None:
    """Path of a Chromium for printing: ``$DECOUPLE_CHROMIUM``, else the first on PATH."""
    env = os.environ.get("DECOUPLE_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def write_pdf(html_path: str | Path, pdf_path: str | Path, chromium: str | None = None) -> Path:
    """Print ``report.html`` to PDF with headless Chromium and its print stylesheet.

    Chromium runs with a fresh, temporary profile and without network services; the page
    is a local self-contained file. The paper is Chromium's default (Letter) with the
    report's ``@page`` margins; the layout also fits A4, which is narrower.

    Args:
        html_path: the report page.
        pdf_path: where to write the PDF.
        chromium: the browser executable (default: :func:`find_chromium`).

    Returns:
        ``pdf_path``.

    Raises:
        ReportPdfError: if no Chromium is found, it fails or times out, or writes no PDF.
    """
    html_path, pdf_path = Path(html_path), Path(pdf_path)
    chromium = chromium or find_chromium()
    if chromium is None:
        raise ReportPdfError(
            "--pdf needs a headless Chromium and none was found (looked for "
            f"{', '.join(CHROMIUM_NAMES)} on PATH and $DECOUPLE_CHROMIUM); install it, e.g. "
            f"'sudo apt-get install chromium', or print {html_path} from a browser"
        )
    pdf_path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="decouple-pdf-") as profile:
        cmd = [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf_path.resolve()}",
            html_path.resolve().as_uri(),
        ]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=PDF_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            raise ReportPdfError(
                f"{chromium} did not finish printing {html_path} within {PDF_TIMEOUT_S} s"
            ) from None
        except OSError as exc:
            raise ReportPdfError(f"cannot run {chromium}: {exc}") from None
    if proc.returncode != 0 or not pdf_path.is_file() or pdf_path.read_bytes()[:5] != b"%PDF-":
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        raise ReportPdfError(
            f"{chromium} could not print {html_path} to {pdf_path} (exit code "
            f"{proc.returncode}): {' | '.join(tail) or 'no message'}"
        )
    return pdf_path


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``report`` sub-command to the ``decouple`` CLI.

    ``decouple report DIR [--baseline NAME] [--out PATH] [--pdf]`` builds the report and
    prints the path of ``report.html`` (and of ``report.pdf``). The handler is stored as
    ``func`` and returns an exit code: 0 on success, 2 on bad input or a failed PDF
    (message on stderr, no traceback; the HTML is kept).

    Args:
        subparsers: the object returned by ``ArgumentParser.add_subparsers()``.

    Returns:
        The sub-command's parser.
    """
    parser = subparsers.add_parser(
        "report",
        help="build the policy report (HTML, figures, tables) of a run store",
        description="Build the policy report of a run store: report.html (self-contained, "
        "printable), every figure as PNG, SVG and CSV, and the tables as CSV.",
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
    parser.add_argument(
        "--pdf",
        action="store_true",
        help="also write report.pdf, printed by headless Chromium (chromium on PATH or "
        "$DECOUPLE_CHROMIUM)",
    )
    parser.add_argument(
        "--sensitivity",
        metavar="STUDY",
        default=None,
        help="include the indices of a `decouple sensitivity` study (default: the store's "
        "own, written by `decouple sensitivity --from-store DIR`)",
    )
    parser.set_defaults(func=_cmd_report)
    return parser


def _cmd_report(args: argparse.Namespace) -> int:
    """Run ``decouple report``; return the exit code."""
    baseline = args.baseline if args.baseline is not None else DEFAULT_BASELINE
    want_pdf = bool(getattr(args, "pdf", False))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            path = build_report(
                args.run_dir,
                baseline=baseline,
                out=args.out,
                require_baseline=args.baseline is not None,
                sensitivity=getattr(args, "sensitivity", None),
            )
    except (ValueError, OSError) as exc:
        print(f"decouple report: error: {exc}", file=sys.stderr)
        return 2
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"decouple report: warning: {w.message}", file=sys.stderr)
    print(path)
    if want_pdf:
        try:
            print(write_pdf(path, path.with_suffix(".pdf")))
        except ReportPdfError as exc:
            print(f"decouple report: error: {exc} (the HTML report is written)", file=sys.stderr)
            return 2
    return 0
