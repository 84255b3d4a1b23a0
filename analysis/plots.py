"""Figures of the policy report, drawn with matplotlib's Agg canvas.

There is one drawing function, :func:`small_multiples`: a grid of panels, each holding one
or more series over calendar time, optionally with 50% and 90% bands. Every figure of the
report is an instance of it, described by data, not by code:

* a *fan chart* is a grid with one panel per scenario, one series per panel, with bands;
* a *comparison* is a grid with one panel per variable and one line per scenario.

The data to draw is a long DataFrame with columns ``panel``, ``series``, ``t`` (fractional
calendar year) and ``y`` (plus ``lo90``, ``lo50``, ``hi50``, ``hi90`` for bands). The report
writes exactly that frame to the figure's CSV, so the CSV holds the numbers plotted.

This module imports matplotlib at import time; import it only while building a report (the
CLI must start without matplotlib). It never uses pyplot: figures are
``matplotlib.figure.Figure`` objects on an Agg canvas, so there is no global state and no
GUI backend.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg", force=False)

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, MultipleLocator, NullFormatter, ScalarFormatter

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd

#: Okabe & Ito (2008) colour-blind-safe palette, in the order scenarios get it: black first
#: (the baseline), the low-contrast yellow last.
OKABE_ITO: tuple[str, ...] = (
    "#000000",  # black
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
)
#: Line styles cycled when there are more series than colours.
LINESTYLES: tuple[str, ...] = ("-", "--", ":", "-.")
#: Neutral grey for reference lines (goal, frontier, zero).
REFERENCE_GREY = "#6E6E6E"

#: Figure width in inches and resolution: 16 in x 100 dpi = 1600 px, so a 12 pt font is
#: 12 pt at slide size.
FIG_WIDTH_IN = 16.0
DPI = 100

#: Width in inches kept right of a one-panel chart for the labels at the lines' ends.
LABEL_MARGIN_IN = 2.7

#: Fonts in points; none below 12 at 1600 px width.
RC = {
    "font.size": 14,
    "axes.titlesize": 15,
    "axes.labelsize": 14,
    "xtick.labelsize": 13,
    "ytick.labelsize": 13,
    "legend.fontsize": 13,
    "legend.title_fontsize": 13,
    "figure.titlesize": 18,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#DDDDDD",
    "grid.linewidth": 0.8,
    "svg.fonttype": "path",
    "svg.hashsalt": "decouple-report",
    "path.simplify": True,
}
MIN_FONT_PT = 12

#: Common logic nodes in nm, used as ticks on log-scaled node axes.
NODE_TICKS_NM: tuple[float, ...] = (1, 2, 3, 5, 7, 10, 14, 20, 28, 40, 65, 90, 130)

BAND_COLUMNS = ("lo90", "lo50", "hi50", "hi90")


@dataclass(frozen=True)
class Style:
    """How one series is drawn.

    Attributes:
        label: legend label.
        color: line and band colour.
        linestyle: matplotlib line style.
        linewidth: line width in points.
    """

    label: str
    color: str
    linestyle: str = "-"
    linewidth: float = 2.5


@dataclass(frozen=True)
class Reference:
    """A reference drawn on some panels: a horizontal line and/or a marked point.

    A reference outside the panel's data range does not stretch the axis: it is drawn as
    an arrow and a short note at the panel's edge ("70% goal (F01) above this scale"), so
    that the data keep the whole panel.

    Attributes:
        label: legend label (give the source, e.g. "F01: ...").
        y: value.
        x: fractional year of the point marker; ``None`` draws only the line.
        hline: draw a dashed horizontal line at ``y`` across the panel.
        marker: matplotlib marker of the point.
        color: colour of the line and of the marker's edge.
        facecolor: fill of the marker (default: ``color``).
        short: the note drawn at the edge when ``y`` is off the scale (default: ``label``).
    """

    label: str
    y: float
    x: float | None = None
    hline: bool = False
    marker: str = "D"
    color: str = REFERENCE_GREY
    facecolor: str | None = None
    short: str = ""


@dataclass(frozen=True)
class Mark:
    """A dated event drawn as a dotted vertical line on a panel (listed in the legend).

    Attributes:
        x: fractional year.
        label: legend label, e.g. "end of the last scheduled state funding programme".
    """

    x: float
    label: str


@dataclass(frozen=True)
class PanelSpec:
    """One panel of a grid.

    Attributes:
        key: value of the ``panel`` column drawn in this panel.
        title: panel title.
        ylabel: y-axis label (with unit).
        log: logarithmic y axis (with node ticks when the unit is nm).
        ylim: fixed y limits, or ``None`` to scale the axis to the data.
        zero_line: draw a horizontal line at 0 (paired differences).
        from_zero: start a linear y axis at 0 (money and counts: no exaggerated slopes).
        references: references drawn on this panel.
        marks: dated events drawn as vertical lines.
    """

    key: str
    title: str
    ylabel: str
    log: bool = False
    ylim: tuple[float, float] | None = None
    zero_line: bool = False
    from_zero: bool = False
    references: tuple[Reference, ...] = ()
    marks: tuple[Mark, ...] = ()


@dataclass
class FigureData:
    """Everything :func:`small_multiples` needs to draw one figure.

    Attributes:
        data: long frame: ``panel``, ``series``, ``t``, ``y`` and optional band columns
            ``lo90``, ``lo50``, ``hi50``, ``hi90``.
        panels: panels in drawing order.
        styles: style per series key, in legend order; series without a style are not
            drawn.
        title: figure title (drawn above the panels).
        subtitle: line under the title (the report puts the batch and the band's content
            here).
        ncols: panels per row.
        band_labels: legend labels of the 50% and 90% bands when bands are drawn.
        sharey: one y scale for every panel, so that panels compare by eye.
        line_legend: legend label of one generic line entry replacing the per-series
            entries (fan charts: the panel title names the series); ``None`` lists every
            series.
        direct_labels: write each series' name at the right end of its line (one-panel
            comparisons) instead of listing the series in the legend.
    """

    data: pd.DataFrame
    panels: list[PanelSpec]
    styles: dict[str, Style]
    title: str
    subtitle: str = ""
    ncols: int = 3
    band_labels: tuple[str, str] = ("50% band (25th-75th pct.)", "90% band (5th-95th pct.)")
    sharey: bool = False
    line_legend: str | None = None
    direct_labels: bool = False


def scenario_styles(scenarios: Sequence[str]) -> dict[str, Style]:
    """Assign each scenario a fixed colour and line style.

    The first scenario (the baseline) is the only solid black line. The others cycle
    through the remaining seven Okabe-Ito colours and, at the same time, through four line
    styles, so that neighbours in the list differ in both and no two of the first 28
    scenarios share colour and style (e.g. no black dashed line to mistake for the
    baseline). The same scenario gets the same style in every figure because the order of
    ``scenarios`` is the same throughout a report. Lines get a little thinner down the
    list, so that coinciding lines still show as nested stripes.
    """
    styles = {}
    others = OKABE_ITO[1:]
    for i, name in enumerate(scenarios):
        if i == 0:
            colour, style = OKABE_ITO[0], "-"
        else:
            colour, style = others[(i - 1) % len(others)], LINESTYLES[i % len(LINESTYLES)]
        width = 3.6 if i == 0 else max(1.8, 3.0 - 0.15 * i)
        styles[name] = Style(label=name, color=colour, linestyle=style, linewidth=width)
    return styles


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width=width) if text else []


def wrap_name(name: str, width: int) -> str:
    """A scenario name broken after underscores into lines of at most ``width`` characters."""
    if len(name) <= width:
        return name
    lines, line = [], ""
    for part in name.replace("_", "_\0").split("\0"):
        if line and len(line) + len(part) > width:
            lines.append(line)
            line = ""
        line += part
    lines.append(line)
    return "\n".join(textwrap.fill(x, width) for x in lines)


def _text_width_in(text: str, size_pt: float) -> float:
    """Rough width of a text's longest line in inches (DejaVu Sans averages 0.6 em)."""
    longest = max((len(x) for x in text.split("\n")), default=0)
    return longest * size_pt * 0.6 / 72


def _legend_handles(fig_data: FigureData, has_bands: bool) -> list:
    """The figure legend's entries: series (or one generic line), bands, references, marks."""
    data = fig_data.data
    present = set(data["series"]) if len(data) else set()
    handles: list = []
    if fig_data.line_legend is not None:
        handles.append(Line2D([], [], color="#333333", linewidth=2.5, label=fig_data.line_legend))
    elif not fig_data.direct_labels:
        for key, st in fig_data.styles.items():
            if key in present:
                handles.append(
                    Line2D(
                        [],
                        [],
                        color=st.color,
                        linestyle=st.linestyle,
                        linewidth=st.linewidth,
                        label=st.label,
                    )
                )
    else:  # direct labels: only the overlays (no scenario) stay in the legend
        for key, st in fig_data.styles.items():
            if key in present and key.startswith("overlay:"):
                handles.append(
                    Line2D([], [], color=st.color, linestyle=st.linestyle, label=st.label)
                )
    if has_bands:
        handles += [
            Patch(color="#555555", alpha=0.45, label=fig_data.band_labels[0]),
            Patch(color="#555555", alpha=0.17, label=fig_data.band_labels[1]),
        ]
    refs: dict[str, Reference] = {}
    marks: dict[str, Mark] = {}
    for panel in fig_data.panels:
        for ref in panel.references:
            refs.setdefault(ref.label, ref)
        for mark in panel.marks:
            marks.setdefault(mark.label, mark)
    for ref in refs.values():
        handles.append(
            Line2D(
                [],
                [],
                linestyle="--" if ref.hline else "none",
                label=ref.label,
                **(_marker_kw(ref) if ref.x is not None else {"color": ref.color}),
            )
        )
    for mark in marks.values():
        handles.append(
            Line2D([], [], color=REFERENCE_GREY, linestyle=":", linewidth=2.0, label=mark.label)
        )
    return handles


def _fit_legend(fig: Figure, handles: list, max_cols: int = 4):
    """Add the figure legend at the bottom with as many columns as fit inside the figure."""
    renderer = fig.canvas.get_renderer()
    width_px = fig.bbox.width * 0.98
    legend = None
    for ncol in range(min(len(handles), max_cols), 0, -1):
        if legend is not None:
            legend.remove()
        legend = fig.legend(
            handles=handles,
            loc="lower center",
            bbox_to_anchor=(0.5, 0.005),
            ncol=ncol,
            frameon=False,
            columnspacing=1.8,
            handlelength=2.4,
        )
        if legend.get_window_extent(renderer).width <= width_px:
            break
    return legend


def _panel_limits(frames: list, spec: PanelSpec, has_bands: bool) -> tuple[float, float] | None:
    """Y limits scaled to the data of some panels, with references near the data included."""
    import numpy as np

    values = []
    for frame in frames:
        if frame is None:
            continue
        cols = ["y", *(c for c in BAND_COLUMNS if has_bands and c in frame.columns)]
        values.append(frame[cols].to_numpy(dtype=float).ravel())
    if not values:
        return None
    v = np.concatenate(values)
    v = v[np.isfinite(v)]
    if not len(v):
        return None
    lo, hi = float(v.min()), float(v.max())
    span = max(hi - lo, abs(hi) * 0.05, 1e-9)
    for ref in spec.references:  # a reference that at most doubles the scale joins it
        if lo - span <= ref.y <= hi + span:
            lo, hi = min(lo, ref.y), max(hi, ref.y)
    if spec.zero_line:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    pad = 0.06 * max(hi - lo, 1e-9)
    lo, hi = lo - pad, hi + pad
    if spec.from_zero and lo < 0 <= float(v.min()):
        lo = 0.0
    if spec.from_zero and float(v.min()) >= 0:
        lo = 0.0
    return lo, hi


def small_multiples(fig_data: FigureData) -> Figure:
    """Draw a grid of panels over calendar time; the one time-series figure of the report.

    Each panel draws, for every series with a style, its 90% band (light), 50% band
    (darker) when the band columns are present, then its ``y`` line. Panels share the x axis
    (calendar years, major ticks every 5 years) and, with ``sharey``, the y axis. Linear
    axes without fixed limits are scaled to the data; a reference beyond the data is noted
    at the panel's edge instead of stretching the axis. One legend for the whole figure,
    inside it at the bottom, lists the series, the bands, the references and the marks,
    with as many columns as fit in the figure's width.

    Args:
        fig_data: the data and layout of the figure.

    Returns:
        A matplotlib Figure on an Agg canvas, ``FIG_WIDTH_IN`` wide.
    """
    data = fig_data.data
    panels = fig_data.panels
    ncols = max(1, min(fig_data.ncols, len(panels)))
    nrows = -(-len(panels) // ncols)
    has_bands = all(c in data.columns for c in BAND_COLUMNS)

    row_h = 4.2 if ncols > 1 else 5.5
    # Header: title (18 pt, ~120 characters a line) and subtitle (12 pt, ~175 a line) at
    # 1600 px; the header grows with the number of wrapped lines.
    title_lines = _wrap(fig_data.title, 120)
    sub_lines = _wrap(fig_data.subtitle, 175)
    title_top, line_title, line_sub = 0.18, 0.34, 0.24
    sub_top = title_top + line_title * len(title_lines) + 0.1
    top_in = sub_top + line_sub * len(sub_lines) + 0.45

    fig = Figure(figsize=(FIG_WIDTH_IN, 10.0), dpi=DPI)
    FigureCanvasAgg(fig)
    handles = _legend_handles(fig_data, has_bands)
    legend = _fit_legend(fig, handles) if handles else None
    legend_in = legend.get_window_extent(fig.canvas.get_renderer()).height / DPI if legend else 0
    bottom_in = 0.75 + legend_in
    height = top_in + nrows * row_h + bottom_in
    fig.set_size_inches(FIG_WIDTH_IN, height)
    right = 0.985
    if fig_data.direct_labels:
        right = 1 - (LABEL_MARGIN_IN + 0.2) / FIG_WIDTH_IN  # room for the line labels
    fig.subplots_adjust(
        left=0.07 if ncols > 1 else 0.08,
        right=right,
        top=1 - top_in / height,
        bottom=bottom_in / height,
        wspace=0.28,
        hspace=0.42,
    )
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=fig_data.sharey, squeeze=False).ravel()

    t_min, t_max = float(data["t"].min()), float(data["t"].max())
    groups = {key: frame for key, frame in data.groupby("panel", sort=False)}
    shared = None
    if fig_data.sharey and panels and panels[0].ylim is None and not panels[0].log:
        shared = _panel_limits([groups.get(p.key) for p in panels], panels[0], has_bands)
    for ax, spec in zip(axes, panels):
        frame = groups.get(spec.key)
        if frame is not None:
            _draw_series(ax, frame, fig_data, has_bands)
        if spec.zero_line:
            ax.axhline(0.0, color=REFERENCE_GREY, linewidth=1.2)
        for mark in spec.marks:
            ax.axvline(mark.x, color=REFERENCE_GREY, linestyle=":", linewidth=2.0)
        limits = spec.ylim or shared
        if limits is None and not spec.log:
            limits = _panel_limits([frame], spec, has_bands)
        _format_axis(ax, spec, t_min, t_max, limits)
        _draw_references(ax, spec)
        if fig_data.direct_labels and frame is not None:
            _label_line_ends(ax, frame, fig_data)
        if frame is None:
            ax.text(
                0.5,
                0.5,
                "no data",
                transform=ax.transAxes,
                ha="center",
                va="center",
                color=REFERENCE_GREY,
            )
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    for ax in axes[: len(panels)]:
        ax.tick_params(labelbottom=True, labelleft=True)

    _draw_heading(fig, title_lines, sub_lines, title_top / height, sub_top / height)
    return fig


def _draw_series(ax, frame: pd.DataFrame, fig_data: FigureData, has_bands: bool) -> None:
    """Bands and lines of one panel, series in style (legend) order."""
    by_series = dict(tuple(frame.groupby("series", sort=False)))
    for key, style in fig_data.styles.items():
        series = by_series.get(key)
        if series is None:
            continue
        series = series.sort_values("t")
        t = series["t"].to_numpy()
        if has_bands and series["lo90"].notna().any():
            ax.fill_between(
                t, series["lo90"], series["hi90"], color=style.color, alpha=0.15, linewidth=0
            )
            ax.fill_between(
                t, series["lo50"], series["hi50"], color=style.color, alpha=0.35, linewidth=0
            )
        ax.plot(
            t,
            series["y"],
            color=style.color,
            linestyle=style.linestyle,
            linewidth=style.linewidth,
        )


def _draw_references(ax, spec: PanelSpec) -> None:
    """References inside the axis as lines and markers; those beyond it as an edge note."""
    lo, hi = ax.get_ylim()
    for ref in spec.references:
        if lo <= ref.y <= hi:
            if ref.hline:
                ax.axhline(ref.y, color=ref.color, linestyle="--", linewidth=1.6)
            if ref.x is not None:
                ax.plot([ref.x], [ref.y], linestyle="none", zorder=5, **_marker_kw(ref))
            ax.set_ylim(lo, hi)
            continue
        above = ref.y > hi
        text = f"{ref.short or ref.label} {'above' if above else 'below'} this scale"
        ax.annotate(
            ("\u2191 " if above else "\u2193 ") + text,
            xy=(0.01, 0.985 if above else 0.015),
            xycoords="axes fraction",
            ha="left",
            va="top" if above else "bottom",
            fontsize=MIN_FONT_PT,
            color=ref.color,
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none"},
            zorder=6,
        )


def _label_line_ends(ax, frame: pd.DataFrame, fig_data: FigureData) -> None:
    """Write each series' label right of its last point, nudged apart so none overlap."""
    ends = []
    for key, style in fig_data.styles.items():
        series = frame[frame["series"] == key].sort_values("t")
        series = series[series["y"].notna()]
        if series.empty or key.startswith("overlay:"):
            continue
        ends.append([float(series["y"].iloc[-1]), float(series["t"].iloc[-1]), style])
    if not ends:
        return
    chars = int(LABEL_MARGIN_IN * 72 / (MIN_FONT_PT * 0.6))
    labels = [wrap_name(e[2].label, chars) for e in ends]
    lo, hi = ax.get_ylim()
    height_px = ax.get_window_extent().height
    line = (hi - lo) * (MIN_FONT_PT * 1.3 * DPI / 72) / max(height_px, 1.0)
    order = sorted(range(len(ends)), key=lambda i: ends[i][0])
    placed: dict[int, float] = {}
    previous = None
    for i in order:  # bottom up: each label at its line's end, or just above the last one
        half = 0.5 * line * labels[i].count("\n")
        y = ends[i][0]
        if previous is not None:
            y = max(y, previous + 0.5 * line + half + 0.05 * line)
        placed[i] = y
        previous = y + half
    overshoot = previous - hi if previous is not None else 0
    if overshoot > 0:  # shift the stack down into the axis
        placed = {i: max(p - overshoot, lo) for i, p in placed.items()}
    x_text = ax.get_xlim()[1]
    for i, (y, t_last, style) in enumerate(ends):
        y_text = placed[i]
        ax.annotate(
            labels[i],
            xy=(t_last, y),
            xytext=(x_text + 0.15, y_text),
            textcoords="data",
            ha="left",
            va="center",
            fontsize=MIN_FONT_PT,
            color=style.color,
            annotation_clip=False,
            arrowprops={"arrowstyle": "-", "color": style.color, "linewidth": 0.8, "alpha": 0.6},
        )


def _marker_kw(ref: Reference) -> dict:
    """Marker keywords of a reference point (filled or hollow)."""
    return {
        "color": ref.color,
        "marker": ref.marker,
        "markersize": 11,
        "markerfacecolor": ref.facecolor or ref.color,
        "markeredgecolor": ref.color,
        "markeredgewidth": 2.2,
    }


def _fit_title(ax, title: str) -> str:
    """The panel title wrapped to the panel's width (long titles in narrow panels)."""
    width_in = ax.get_position().width * ax.figure.get_size_inches()[0]
    chars = max(12, int(width_in * 72 / (RC["axes.titlesize"] * 0.6)))
    return "\n".join(_wrap(title, chars)) if len(title) > chars else title


def _format_axis(
    ax, spec: PanelSpec, t_min: float, t_max: float, limits: tuple[float, float] | None
) -> None:
    """Calendar-year x axis, labelled y axis, optional log scale and limits."""
    ax.set_title(_fit_title(ax, spec.title), loc="left")
    ax.set_ylabel(spec.ylabel)
    ax.set_xlim(t_min - 0.25, t_max + 0.25)
    ax.xaxis.set_major_locator(MultipleLocator(5))
    ax.xaxis.set_minor_locator(MultipleLocator(1))
    ax.xaxis.set_major_formatter(ScalarFormatter(useOffset=False))
    if spec.log:
        ax.set_yscale("log")
        ax.set_ylabel(f"{spec.ylabel} (log scale)")
        lo, hi = ax.get_ylim()
        ticks = [v for v in NODE_TICKS_NM if lo * 0.8 <= v <= hi * 1.25]
        if len(ticks) >= 2:
            ax.yaxis.set_major_locator(FixedLocator(ticks))
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(NullFormatter())
    if limits is not None:
        ax.set_ylim(*limits)
    elif spec.from_zero and not spec.log:
        ax.set_ylim(bottom=0)


# --------------------------------------------------------------------------------------
# The scenario-effects chart
# --------------------------------------------------------------------------------------


@dataclass
class EffectsData:
    """What :func:`effects_chart` draws: one dot-and-whisker row per scenario and horizon.

    Attributes:
        data: frame with ``scenario``, ``year``, ``median``, ``q05``, ``q25``, ``q75``,
            ``q95`` (paired differences from the baseline).
        order: scenarios from top to bottom.
        styles: colour per scenario (:func:`scenario_styles`).
        title: figure title.
        subtitle: line under the title.
        xlabel: x-axis label (unit of the difference).
        years: horizons, one panel each, left to right.
        labels: legend labels of the dot, the thick and the thin whisker.
    """

    data: pd.DataFrame
    order: list[str]
    styles: dict[str, Style]
    title: str
    subtitle: str
    xlabel: str
    years: tuple[int, ...] = (2030, 2035)
    labels: tuple[str, str, str] = (
        "median of the run-by-run differences",
        "50% of run pairs (25th-75th pct.)",
        "90% of run pairs (5th-95th pct.)",
    )


def effects_chart(fx: EffectsData) -> Figure:
    """Dot-and-whisker chart of each scenario's paired effect, one panel per horizon.

    Rows are scenarios (``fx.order``, top to bottom), panels horizons; all panels share one
    x axis, so an effect in 2030 compares with one in 2035 by eye. A dot is the median
    paired difference, the thick whisker the 50% band, the thin whisker the 90% band; the
    median's value is written beside each row.

    Args:
        fx: data and labels.

    Returns:
        A matplotlib Figure on an Agg canvas, ``FIG_WIDTH_IN`` wide.
    """
    import numpy as np

    years = [y for y in fx.years if (fx.data["year"] == y).any()] or list(fx.years)
    n_rows = max(len(fx.order), 1)
    title_lines = _wrap(fx.title, 120)
    sub_lines = _wrap(fx.subtitle, 175)
    title_top, line_title, line_sub = 0.18, 0.34, 0.24
    sub_top = title_top + line_title * len(title_lines) + 0.1
    top_in = sub_top + line_sub * len(sub_lines) + 0.5

    fig = Figure(figsize=(FIG_WIDTH_IN, 10.0), dpi=DPI)
    FigureCanvasAgg(fig)
    handles = [
        Line2D(
            [], [], color="#333333", marker="o", linestyle="none", markersize=10, label=fx.labels[0]
        ),
        Line2D([], [], color="#333333", linewidth=8, solid_capstyle="butt", label=fx.labels[1]),
        Line2D([], [], color="#333333", linewidth=2, label=fx.labels[2]),
        Line2D([], [], color=REFERENCE_GREY, linewidth=1.4, label="0 = no effect"),
    ]
    legend = _fit_legend(fig, handles)
    legend_in = legend.get_window_extent(fig.canvas.get_renderer()).height / DPI
    bottom_in = 0.95 + legend_in
    height = top_in + 0.62 * n_rows + 0.4 + bottom_in
    fig.set_size_inches(FIG_WIDTH_IN, height)
    names = [wrap_name(s, 30) for s in fx.order]
    label_in = max((_text_width_in(n, RC["ytick.labelsize"]) for n in names), default=1.0)
    left = min(0.45, (label_in + 0.45) / FIG_WIDTH_IN)
    fig.subplots_adjust(
        left=left, right=0.985, top=1 - top_in / height, bottom=bottom_in / height, wspace=0.08
    )
    axes = fig.subplots(1, len(years), sharex=True, sharey=True, squeeze=False).ravel()

    sel = fx.data[fx.data["scenario"].isin(fx.order) & fx.data["year"].isin(years)]
    vals = sel[["q05", "q95", "median"]].to_numpy(dtype=float).ravel()
    vals = vals[np.isfinite(vals)]
    lo, hi = (float(vals.min()), float(vals.max())) if len(vals) else (-1.0, 1.0)
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    span = max(hi - lo, 1e-6)
    xlim = (lo - 0.06 * span, hi + 0.2 * span)  # room on the right for the value labels
    rows = {s: i for i, s in enumerate(fx.order)}
    for ax, year in zip(axes, years):
        ax.axvline(0.0, color=REFERENCE_GREY, linewidth=1.4, zorder=1)
        for r in sel[sel["year"] == year].itertuples():
            y = rows[r.scenario]
            colour = fx.styles[r.scenario].color if r.scenario in fx.styles else "#333333"
            ax.plot([r.q05, r.q95], [y, y], color=colour, linewidth=2, solid_capstyle="butt")
            ax.plot([r.q25, r.q75], [y, y], color=colour, linewidth=8, solid_capstyle="butt")
            ax.plot(
                [r.median],
                [y],
                marker="o",
                markersize=10,
                color=colour,
                markeredgecolor="white",
                markeredgewidth=1.5,
                zorder=4,
            )
            right = np.nanmax([r.q95, r.median])
            ax.annotate(
                _signed(r.median),
                xy=(right, y),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                fontsize=MIN_FONT_PT,
                color="#222222",
            )
        ax.set_title(f"Effect in {year}", loc="left")
        ax.set_xlim(*xlim)
        ax.set_xlabel(fx.xlabel)
        ax.grid(axis="y", visible=False)
        ax.tick_params(labelleft=ax is axes[0])
    axes[0].set_ylim(n_rows - 0.5, -0.5)  # first scenario on top
    axes[0].set_yticks(range(len(fx.order)))
    axes[0].set_yticklabels(names)
    _draw_heading(fig, title_lines, sub_lines, title_top / height, sub_top / height)
    return fig


def _draw_heading(fig, title_lines, sub_lines, title_top: float, sub_top: float) -> None:
    """A figure's bold title and its subtitle, left-aligned, tops at figure fractions."""
    fig.text(
        0.01,
        1 - title_top,
        "\n".join(title_lines),
        ha="left",
        va="top",
        fontsize=RC["figure.titlesize"],
        fontweight="bold",
    )
    fig.text(
        0.01,
        1 - sub_top,
        "\n".join(sub_lines),
        ha="left",
        va="top",
        fontsize=MIN_FONT_PT,
        color="#333333",
    )


def _signed(value: float) -> str:
    """``+1.5`` / ``\u22123.0`` / ``0.0`` with one decimal (labels of the effects chart)."""
    import math

    if value is None or math.isnan(value):
        return "n/a"
    text = f"{value:+.1f}" if round(value, 1) != 0 else "0.0"
    return text.replace("-", "\u2212")


# --------------------------------------------------------------------------------------
# Checks and output
# --------------------------------------------------------------------------------------


def clipped_elements(fig: Figure, tolerance_px: float = 1.0) -> list[str]:
    """Legends, titles, labels and texts of ``fig`` that reach outside the figure.

    Anything listed here would be cut off in the saved PNG (the legend problem of an early
    report: "ied_defection minus baseline"). Each visible axes is measured with its tick
    labels, title and labels (``get_tightbbox``), then every legend and figure text.

    Returns:
        One description per clipped element (empty when everything fits).
    """
    renderer = fig.canvas.get_renderer()
    box = fig.bbox

    def outside(bb) -> bool:
        return (
            bb.x0 < box.x0 - tolerance_px
            or bb.y0 < box.y0 - tolerance_px
            or bb.x1 > box.x1 + tolerance_px
            or bb.y1 > box.y1 + tolerance_px
        )

    problems = []
    for legend in [*fig.legends, *(ax.get_legend() for ax in fig.axes)]:
        if legend is not None and outside(legend.get_window_extent(renderer)):
            problems.append(f"legend {legend.get_window_extent(renderer).bounds}")
    for ax in fig.axes:
        if ax.get_visible() and outside(ax.get_tightbbox(renderer)):
            problems.append(f"axes '{ax.get_title(loc='left')}' {ax.get_tightbbox(renderer)}")
    for text in fig.texts:
        if text.get_visible() and text.get_text() and outside(text.get_window_extent(renderer)):
            problems.append(f"text '{text.get_text()[:40]}'")
    return problems


def save(fig: Figure, stem: Path) -> tuple[Path, Path, bytes]:
    """Save a figure as ``<stem>.png`` (1600 px wide) and ``<stem>.svg``.

    Args:
        fig: the figure.
        stem: output path without suffix.

    Returns:
        The PNG path, the SVG path and the PNG bytes (for embedding in HTML).
    """
    import io

    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    png_bytes = buf.getvalue()
    png.write_bytes(png_bytes)
    fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    return png, svg, png_bytes


def rc_context(extra: Mapping[str, object] | None = None):
    """Context manager applying the report's matplotlib settings (fonts, grid, SVG)."""
    params = dict(RC)
    if extra:
        params.update(extra)
    return matplotlib.rc_context(params)
