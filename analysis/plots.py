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

    Attributes:
        label: legend label (give the source, e.g. "F01: ...").
        y: value.
        x: fractional year of the point marker; ``None`` draws only the line.
        hline: draw a dashed horizontal line at ``y`` across the panel.
        marker: matplotlib marker of the point.
        color: colour of the line and of the marker's edge.
        facecolor: fill of the marker (default: ``color``).
    """

    label: str
    y: float
    x: float | None = None
    hline: bool = False
    marker: str = "D"
    color: str = REFERENCE_GREY
    facecolor: str | None = None


@dataclass(frozen=True)
class PanelSpec:
    """One panel of a grid.

    Attributes:
        key: value of the ``panel`` column drawn in this panel.
        title: panel title.
        ylabel: y-axis label (with unit).
        log: logarithmic y axis (with node ticks when the unit is nm).
        ylim: fixed y limits, or ``None`` for automatic.
        zero_line: draw a horizontal line at 0 (paired differences).
        from_zero: start a linear y axis at 0 (money and counts: no exaggerated slopes).
        references: references drawn on this panel.
    """

    key: str
    title: str
    ylabel: str
    log: bool = False
    ylim: tuple[float, float] | None = None
    zero_line: bool = False
    from_zero: bool = False
    references: tuple[Reference, ...] = ()


@dataclass
class FigureData:
    """Everything :func:`small_multiples` needs to draw one figure.

    Attributes:
        data: long frame: ``panel``, ``series``, ``t``, ``y`` and optional band columns
            ``lo90``, ``lo50``, ``hi50``, ``hi90``.
        panels: panels in drawing order.
        styles: style per series key; series without a style are not drawn.
        title: figure title (drawn above the panels).
        subtitle: line under the title (the report puts batch provenance here).
        ncols: panels per row.
        band_labels: legend labels of the 50% and 90% bands when bands are drawn.
    """

    data: pd.DataFrame
    panels: list[PanelSpec]
    styles: dict[str, Style]
    title: str
    subtitle: str = ""
    ncols: int = 3
    band_labels: tuple[str, str] = ("50% band (25th-75th pct.)", "90% band (5th-95th pct.)")


def scenario_styles(scenarios: Sequence[str]) -> dict[str, Style]:
    """Assign each scenario a fixed Okabe-Ito colour (and a line style past eight).

    The same scenario gets the same colour in every figure because the order of
    ``scenarios`` is the same throughout a report (baseline first). Lines get thinner down
    the list, so when scenarios coincide (e.g. no ally defects in any of them) the earlier
    ones still show as a wider stripe under the later ones instead of being hidden.
    """
    styles = {}
    for i, name in enumerate(scenarios):
        colour = OKABE_ITO[i % len(OKABE_ITO)]
        style = LINESTYLES[(i // len(OKABE_ITO)) % len(LINESTYLES)]
        width = max(1.5, 4.2 - 0.9 * i)
        styles[name] = Style(label=name, color=colour, linestyle=style, linewidth=width)
    return styles


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width=width) if text else []


def small_multiples(fig_data: FigureData) -> Figure:
    """Draw a grid of panels over calendar time; the one figure kind of the report.

    Each panel draws, for every series with a style, its 90% band (light), 50% band
    (darker) when the band columns are present, then its ``y`` line. Panels share the x axis
    (calendar years, major ticks every 5 years). One legend for the whole figure lists the
    series, the bands and the references.

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
    n_handles = _legend_size(fig_data, data, has_bands)
    legend_rows = -(-n_handles // 4) if n_handles else 0
    bottom_in = 0.65 + 0.32 * legend_rows
    height = top_in + nrows * row_h + bottom_in
    fig = Figure(figsize=(FIG_WIDTH_IN, height), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(
        left=0.07 if ncols > 1 else 0.08,
        right=0.985,
        top=1 - top_in / height,
        bottom=bottom_in / height,
        wspace=0.28,
        hspace=0.42,
    )
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False).ravel()

    t_min, t_max = float(data["t"].min()), float(data["t"].max())
    groups = {key: frame for key, frame in data.groupby("panel", sort=False)}
    drawn_series: list[str] = []
    drawn_refs: dict[str, Reference] = {}
    for ax, spec in zip(axes, panels):
        frame = groups.get(spec.key)
        if frame is not None:
            for key, series in frame.groupby("series", sort=False):
                style = fig_data.styles.get(key)
                if style is None:
                    continue
                series = series.sort_values("t")
                t = series["t"].to_numpy()
                if has_bands and series["lo90"].notna().any():
                    ax.fill_between(
                        t,
                        series["lo90"],
                        series["hi90"],
                        color=style.color,
                        alpha=0.15,
                        linewidth=0,
                    )
                    ax.fill_between(
                        t,
                        series["lo50"],
                        series["hi50"],
                        color=style.color,
                        alpha=0.35,
                        linewidth=0,
                    )
                ax.plot(
                    t,
                    series["y"],
                    color=style.color,
                    linestyle=style.linestyle,
                    linewidth=style.linewidth,
                )
                if key not in drawn_series:
                    drawn_series.append(key)
        for ref in spec.references:
            if ref.hline:
                ax.axhline(ref.y, color=ref.color, linestyle="--", linewidth=1.6)
            if ref.x is not None:
                ax.plot([ref.x], [ref.y], linestyle="none", zorder=5, **_marker_kw(ref))
            drawn_refs.setdefault(ref.label, ref)
        if spec.zero_line:
            ax.axhline(0.0, color=REFERENCE_GREY, linewidth=1.2)
        _format_axis(ax, spec, t_min, t_max)
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
        ax.tick_params(labelbottom=True)

    handles = [
        Line2D(
            [],
            [],
            color=fig_data.styles[k].color,
            linestyle=fig_data.styles[k].linestyle,
            linewidth=fig_data.styles[k].linewidth,
            label=fig_data.styles[k].label,
        )
        for k in drawn_series
    ]
    if has_bands:
        handles += [
            Patch(color="#555555", alpha=0.45, label=fig_data.band_labels[0]),
            Patch(color="#555555", alpha=0.17, label=fig_data.band_labels[1]),
        ]
    for ref in drawn_refs.values():
        handles.append(
            Line2D(
                [],
                [],
                linestyle="--" if ref.hline else "none",
                label=ref.label,
                **(_marker_kw(ref) if ref.x is not None else {"color": ref.color}),
            )
        )
    if handles:
        fig.legend(
            handles=handles,
            loc="lower center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=min(len(handles), 4),
            frameon=False,
            columnspacing=1.8,
            handlelength=2.4,
        )

    fig.text(
        0.01,
        1 - title_top / height,
        "\n".join(title_lines),
        ha="left",
        va="top",
        fontsize=RC["figure.titlesize"],
        fontweight="bold",
    )
    fig.text(
        0.01,
        1 - sub_top / height,
        "\n".join(sub_lines),
        ha="left",
        va="top",
        fontsize=MIN_FONT_PT,
        color="#333333",
    )
    return fig


def _legend_size(fig_data: FigureData, data: pd.DataFrame, has_bands: bool) -> int:
    """Number of legend entries the figure will have (to size the bottom margin)."""
    series = [k for k in dict.fromkeys(data["series"]) if k in fig_data.styles]
    refs = {r.label for p in fig_data.panels for r in p.references}
    return len(series) + (2 if has_bands else 0) + len(refs)


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


def _format_axis(ax, spec: PanelSpec, t_min: float, t_max: float) -> None:
    """Calendar-year x axis, labelled y axis, optional log scale and limits."""
    ax.set_title(spec.title, loc="left")
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
    if spec.ylim is not None:
        ax.set_ylim(*spec.ylim)
    elif spec.from_zero and not spec.log:
        ax.set_ylim(bottom=0)


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
