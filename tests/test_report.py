"""Tests of the policy report: plotted numbers, tables, HTML, CLI and a headless browser.

The run store is synthetic (tests/report_fixtures.py): every value is a closed-form
function of scenario, seed, sample and quarter, so the numbers in the figure CSVs and
tables are checked against answers derived by hand. The key findings are checked against
the tables they quote, the figures against clipping, and the page in headless Chromium:
rendered, printed to PDF and laid out for A4 without a table wider than the page.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import os
import re
import subprocess
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from report_fixtures import (
    EQUIP_SLOPE,
    EXPECTED_PROBABILITIES,
    FUNDING_OFFSET,
    SEGMENT_FACTOR,
    SURGE_EXPLANATION,
    TIER_FACTOR,
    ss_offset,
    write_store,
)

from analysis import report as report_mod
from analysis.report import build_report, figures, register

ARTIFACTS = Path(__file__).parent / "artifacts"
STEMS = [spec.stem for spec in figures()]
BATCH = "policy_batch_2025"
K = np.arange(64)  # quarter index 2020Q1 .. 2035Q4
YEAR = 2020 + K // 4


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("store") / BATCH, layout="batch")


@pytest.fixture(scope="module")
def built(store):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete store must not warn
        path = build_report(store)
    return path


def read_csv(built: Path, stem: str) -> pd.DataFrame:
    return pd.read_csv(built.parent / f"{stem}.csv")


def series(df: pd.DataFrame, panel: str, name: str) -> pd.DataFrame:
    out = df[(df["panel"] == panel) & (df["series"] == name)].sort_values("t")
    assert len(out) == 64, (panel, name, len(out))
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


def test_report_writes_every_figure_and_table(built, store):
    assert built == store / "report" / "report.html"
    for stem in STEMS:
        png = built.parent / f"{stem}.png"
        with Image.open(png) as im:
            assert im.width == 1600, stem
        svg = (built.parent / f"{stem}.svg").read_text()
        assert "<svg" in svg and "http://www.w3.org/2000/svg" in svg
        assert (built.parent / f"{stem}.csv").stat().st_size > 0
    for table in ("table_summary.csv", "table_thresholds.csv", "table_expectations.csv"):
        assert (built.parent / table).is_file()


# --------------------------------------------------------------------------------------
# Plotted numbers (read back from the figure CSVs)
# --------------------------------------------------------------------------------------


def test_effects_chart_draws_the_summary_table(built):
    """Figure 1's CSV is the summary table's paired effects, ordered by the 2035 effect."""
    drawn = read_csv(built, "fig01_scenario_effects")
    table = pd.read_csv(built.parent / "table_summary.csv")
    assert set(drawn["year"]) == {2030, 2035}
    assert set(drawn["scenario"]) == {"surge", "bust"}  # no baseline row
    ss = table[table["variable"] == "self_sufficiency_pct"].set_index(["scenario", "year"])
    for r in drawn.itertuples():
        row = ss.loc[(r.scenario, r.year)]
        for col in ("median", "q05", "q25", "q75", "q95"):
            assert getattr(r, col) == pytest.approx(row[f"diff_{col}"]), (r.scenario, col)
        assert r.median == pytest.approx(ss_offset(r.scenario, np.array(r.year)))
    rows = report_mod.effect_rows(table, "baseline")
    assert report_mod.effect_order(rows, ["bust", "surge"]) == ["surge", "bust"]


def test_fan_chart_numbers(built):
    df = read_csv(built, "fig02_self_sufficiency_fan")
    assert set(df["panel"]) == {"baseline", "surge", "bust"}
    assert (df["panel"] == df["series"]).all()
    assert list(df.columns) == [
        "panel",
        "series",
        "statistic",
        "quarter",
        "t",
        "y",
        "lo90",
        "lo50",
        "hi50",
        "hi90",
    ]
    # across s = 0..4, m = 0..1 the values are {0,2,5,7,10,12,15,17,20,22} + 10 + 0.5 k
    # + offset: type-7 quantiles 0.9, 5.5, 11, 16.5, 21.1
    for scen in ("baseline", "surge", "bust"):
        s = series(df, scen, scen)
        base = 10 + 0.5 * K + ss_offset(scen, YEAR)
        for col, add in {"lo90": 0.9, "lo50": 5.5, "y": 11.0, "hi50": 16.5, "hi90": 21.1}.items():
            np.testing.assert_allclose(s[col], base + add, err_msg=f"{scen} {col}")
        np.testing.assert_allclose(s["t"], 2020 + (K + 0.5) / 4)
    assert s["quarter"].iloc[0] == "2020Q1" and s["quarter"].iloc[-1] == "2035Q4"


def test_paired_difference_numbers(built):
    df = read_csv(built, "fig04_self_sufficiency_vs_baseline")
    assert set(df["panel"]) == {"surge", "bust"}  # no baseline-minus-baseline panel
    for scen in ("surge", "bust"):
        s = series(df, scen, scen)
        expected = ss_offset(scen, YEAR)  # the constructed offset, identical in every pair
        for col in ("y", "lo90", "lo50", "hi50", "hi90"):
            np.testing.assert_allclose(s[col], expected, err_msg=f"{scen} {col}")


def test_comparison_numbers(built):
    medians = read_csv(built, "fig03_self_sufficiency_medians")
    assert set(medians["panel"]) == {"self_sufficiency_pct"}
    assert "lo90" not in medians.columns  # medians only
    tiers = read_csv(built, "fig05_self_sufficiency_by_tier")
    segments = read_csv(built, "fig06_self_sufficiency_by_segment")
    for scen in ("baseline", "surge", "bust"):
        median = 21 + 0.5 * K + ss_offset(scen, YEAR)
        np.testing.assert_allclose(series(medians, "self_sufficiency_pct", scen)["y"], median)
        for tier, factor in TIER_FACTOR.items():
            np.testing.assert_allclose(
                series(tiers, f"self_sufficiency_tier_{tier}_pct", scen)["y"], factor * median
            )
        for seg, factor in SEGMENT_FACTOR.items():
            np.testing.assert_allclose(
                series(segments, f"self_sufficiency_segment_{seg}_pct", scen)["y"],
                factor * median,
            )
        # the volumes beside the shares: purchases (2 + 0.1 k) split by the domestic share
        # 20 + s + slope k / 63, median over seeds at s = 2
        share = (22 + EQUIP_SLOPE[scen] * K / 63) / 100
        domestic = series(segments, "domestic_equipment_purchases_usd_bn", scen)["y"]
        foreign = series(segments, "foreign_equipment_purchases_usd_bn", scen)["y"]
        np.testing.assert_allclose(domestic, (2 + 0.1 * K) * share)
        np.testing.assert_allclose(foreign, (2 + 0.1 * K) * (1 - share))
    funding = read_csv(built, "fig11_state_funding")
    for scen, offset in FUNDING_OFFSET.items():
        np.testing.assert_allclose(
            series(funding, "state_funding_usd_bn", scen)["y"], 5 + 0.1 * K + offset
        )
        np.testing.assert_allclose(
            series(funding, "state_funding_wasted_usd_bn", scen)["y"], 0.2 * (5 + 0.1 * K + offset)
        )


def test_technology_figure_has_frontier_overlay(built):
    df = read_csv(built, "fig07_technology_and_shortage")
    assert set(df["panel"]) == {
        "china_best_node_nm",
        "unmet_demand_usd_bn",
        "domestic_equipment_share_pct",
    }
    frontier = series(df, "china_best_node_nm", "overlay:frontier_node_nm")
    np.testing.assert_allclose(frontier["y"], 5 * 0.7 ** (K // 12))
    np.testing.assert_allclose(
        series(df, "china_best_node_nm", "surge")["y"], 28 * 0.7 ** (K // 16)
    )
    # unmet demand: 0.5 + 0.25 s + offset per quarter, median over s at s = 2
    np.testing.assert_allclose(series(df, "unmet_demand_usd_bn", "bust")["y"], 3.0)


def test_defection_share(built):
    df = read_csv(built, "fig09_ally_defection")
    assert (df["statistic"] == "mean").all()
    japan = series(df, "ally_defected_japan", "bust")
    # seeds 0 and 1 (of 5), both samples, defect from 2028: 4 of 10 runs
    np.testing.assert_allclose(japan["y"], np.where(YEAR >= 2028, 0.4, 0.0))
    others = df[~((df["panel"] == "ally_defected_japan") & (df["series"] == "bust"))]
    assert (others["y"] == 0).all()
    align = read_csv(built, "fig08_ally_alignment")
    # median alignment of japan in bust after 2028: 6 of 10 runs at 0.9 - 0.002 k, 4 at 0.3
    np.testing.assert_allclose(series(align, "ally_alignment_japan", "bust")["y"], 0.9 - 0.002 * K)


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------


def test_threshold_table(built):
    thr = pd.read_csv(built.parent / "table_thresholds.csv")
    got = {(r.scenario, r.threshold_pct, r.year): r.probability for r in thr.itertuples()}
    assert got == pytest.approx(EXPECTED_PROBABILITIES)
    assert (thr["ci_low"] <= thr["probability"]).all()
    assert (thr["probability"] <= thr["ci_high"]).all()
    assert (thr["ci_high"] > 0).all()  # 0 of 10 is never read as "impossible"


def test_summary_table(built):
    table = pd.read_csv(built.parent / "table_summary.csv")
    assert set(table["year"]) == {2025, 2030, 2035}
    idx = table.set_index(["scenario", "year", "variable"])
    # self-sufficiency, calendar-year mean: 10.75 + 5 s + 2 m + 2 (Y - 2020) + offset
    for scen in ("baseline", "surge", "bust"):
        for year in (2025, 2030, 2035):
            row = idx.loc[(scen, year, "self_sufficiency_pct")]
            centre = 10.75 + 2 * (year - 2020) + ss_offset(scen, np.array(year))
            assert (row["q05"], row["median"], row["q95"]) == pytest.approx(
                (centre + 0.9, centre + 11, centre + 21.1)
            )
            # Monte-Carlo interval of the median: the 2nd and 9th of the 10 runs
            assert (row["median_ci_low"], row["median_ci_high"]) == pytest.approx(
                (centre + 2, centre + 20)
            )
            if scen == "baseline":
                assert np.isnan(row["diff_median"])
            else:
                assert (row["diff_q05"], row["diff_median"], row["diff_q95"]) == pytest.approx(
                    (ss_offset(scen, np.array(year)),) * 3
                )
    # state funding is a flow: sum over the year's four quarters
    row = idx.loc[("surge", 2030, "state_funding_usd_bn")]
    assert row["median"] == pytest.approx(4 * (5 + 0.1 * 41.5 + 4))
    assert row["diff_median"] == pytest.approx(16.0)
    assert row["unit"] == "US$ bn per year"
    # derived total of foreign revenue: sum over countries of 10 - i - 0.05 k + 0.1 s
    row = idx.loc[("baseline", 2025, "foreign_revenue_from_china_usd_bn_total")]
    assert row["median"] == pytest.approx(4 * (45 - 6 * 0.05 * 21.5 + 6 * 0.1 * 2))


def test_expectations_table(built):
    checks = pd.read_csv(built.parent / "table_expectations.csv")
    got = {(r.scenario, r.output, r.year): (r.status, r.diff_median) for r in checks.itertuples()}
    assert got == {
        ("surge", "self_sufficiency_pct", 2030): ("held", pytest.approx(10.0)),
        ("surge", "unmet_demand_usd_bn", 2030): ("held", pytest.approx(4.0)),
        ("bust", "self_sufficiency_pct", 2030): ("not held", pytest.approx(-5.0)),
        ("bust", "domestic_equipment_share_pct", 2035): (
            "held",
            pytest.approx(-12.6 * 61.5 / 63),
        ),
    }


# --------------------------------------------------------------------------------------
# Key findings: every number equals the table cell it names
# --------------------------------------------------------------------------------------


class _Collector(HTMLParser):
    """Collects tags and attributes of a page, and the text of tagged numbers (stdlib only)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.numbers: list[dict] = []  # the <span class='v'> of the key findings
        self._open: list[str] = []
        self._in_kf = 0
        self._span: dict | None = None
        self.kf_text = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "section" and attrs.get("id") == "key-findings":
            self._in_kf = 1
        elif self._in_kf and tag == "section":
            self._in_kf += 1
        if tag == "span" and "v" in (attrs.get("class") or "").split():
            self._span = {**attrs, "text": "", "in_key_findings": bool(self._in_kf)}

    def handle_endtag(self, tag):
        if tag == "span" and self._span is not None:
            self.numbers.append(self._span)
            self._span = None
        if tag == "section" and self._in_kf:
            self._in_kf -= 1

    def handle_data(self, data):
        if self._span is not None:
            self._span["text"] += data
        if self._in_kf:
            self.kf_text += data


def _number_of(text: str) -> float:
    """The number shown: "22.6%", "+1.5 pp", "\u22123.0" -> float."""
    m = re.search(r"[+\u2212-]?\d[\d,]*(\.\d+)?", text)
    assert m, text
    return float(m.group(0).replace("\u2212", "-").replace(",", ""))


def check_key_findings(page: str, report_dir: Path) -> list[dict]:
    """Assert that every tagged number of the key findings equals its table cell.

    Returns the numbers checked (each a dict of the span's attributes and text).
    """
    parser = _Collector()
    parser.feed(page)
    numbers = [n for n in parser.numbers if n["in_key_findings"]]
    assert numbers, "the key findings quote no tagged number"
    tables: dict[str, pd.DataFrame] = {}
    for n in numbers:
        table = tables.setdefault(n["data-table"], pd.read_csv(report_dir / n["data-table"]))
        keys = {k[5:]: v for k, v in n.items() if k.startswith("data-")}
        col, value, scale = keys.pop("col"), float(keys.pop("value")), float(keys.pop("scale"))
        keys.pop("table")
        sel = table
        for k, v in keys.items():
            if pd.api.types.is_numeric_dtype(sel[k]):
                sel = sel[np.isclose(sel[k].astype(float), float(v))]
            else:
                sel = sel[sel[k].astype(str) == v]
        assert len(sel) == 1, (n, len(sel))
        cell = float(sel.iloc[0][col])
        assert cell == pytest.approx(value, rel=1e-9, abs=1e-12), n
        shown = _number_of(n["text"])
        decimals = len(n["text"].split(".")[1].rstrip("% p")) if "." in n["text"] else 0
        assert abs(shown - cell * scale) <= 0.5 * 10**-decimals + 1e-9, (n, cell)
    return numbers


def test_key_findings_come_first_and_equal_the_tables(built):
    page = built.read_text(encoding="utf-8")
    assert page.index("id='key-findings'") < page.index('id="effects"')
    assert page.index("id='key-findings'") < page.index('id="appendix"')
    numbers = check_key_findings(page, built.parent)
    quoted = {(n.get("data-scenario"), n.get("data-year"), n["data-col"]) for n in numbers}
    # the baseline's median and 90% band in 2025, 2030 and 2035
    for year in ("2025", "2030", "2035"):
        for col in ("median", "q05", "q95"):
            assert ("baseline", year, col) in quoted, (year, col)
    # the largest effects with their bands, and the gap to the goal
    for scen in ("surge", "bust"):
        for col in ("diff_median", "diff_q05", "diff_q95"):
            assert (scen, "2035", col) in quoted
    assert ("baseline", "2025", "median") in quoted
    parser = _Collector()
    parser.feed(page)
    text = " ".join(parser.kf_text.split())
    assert "short in 2025" in text  # the goal gap
    # the failed expectation, with its measured value
    assert "3 of 4 measured scenario expectations held" in text
    assert "bust: self_sufficiency_pct in 2030 expected higher, measured \u22125.00" in text
    # the bands say what they include: this store has 2 parameter draws x 5 seeds
    assert (
        "Bands include parameter uncertainty and seed noise: 2 draws (lhs) of 2 uncertain" in text
    )
    assert "Seed noise alone (one parameter draw) spans a typical 18.0 pp in 2035" in text
    # the surge's explanation, first sentence only
    assert "Why: " + SURGE_EXPLANATION.split(". ")[0] + "." in text
    assert "A second sentence" not in text


def test_what_each_scenario_changed(built):
    page = built.read_text(encoding="utf-8")
    section = page[page.index('id="scenarios"') : page.index('id="figures"')]
    surge = section[section.index("id='scenario-surge'") :]
    surge = surge[: surge.index("</div>", surge.index("result</th>"))]
    assert "What if money pours in from 2025?" in surge
    assert "Changes against <b>baseline</b>" in surge
    assert "Events added</b> (1)" in surge
    assert "2025Q1 funding program: program surge_fund; amount usd bn 100.0; quarters 40" in surge
    assert "<code>china.procurement_preference</code>" in surge and "&rarr; 0.8" in surge
    assert "Events dropped" not in surge
    assert SURGE_EXPLANATION.replace("'", "&#x27;") in surge
    assert surge.count("class='held'>held</span>") == 2
    bust = section[section.index("id='scenario-bust'") :]
    assert "Events dropped</b> (1): ctl_a (2022Q1)" in bust
    assert "class='failed'>not held</span>" in bust
    assert "the story says so" in bust
    assert "The reference scenario" in section[section.index("id='scenario-baseline'") :]


def test_explanations_stand_beside_the_effects(built):
    page = built.read_text(encoding="utf-8")
    effects = page[page.index('id="effects"') : page.index('id="scenarios"')]
    assert "<img" in effects and "fig01_scenario_effects" in effects
    row = effects[effects.index("#scenario-surge") :]
    row = row[: row.index("</tr>")]
    assert "+10.0 pp" in row and SURGE_EXPLANATION.replace("'", "&#x27;") in row
    assert "2 of 2" in row


def test_funding_cliff_is_explained(built):
    page = built.read_text(encoding="utf-8")
    fig = page[page.index("id='fig11_state_funding'") :]
    fig = html.unescape(fig[: fig.index("</figure>")])
    # the baseline's programme fund_a runs 2020Q1-2024Q4; the surge adds 2025Q1-2034Q4
    assert "The dotted line marks 2024Q4" in fig and "fund_a 2020Q1-2024Q4" in fig
    assert "surge's surge_fund 2025Q1-2034Q4" in fig


# --------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------


def _check_self_contained(page: str, n_figures: int) -> list[dict]:
    parser = _Collector()
    parser.feed(page)
    tags = [t for t, _ in parser.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    for tag, attrs in parser.tags:
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            assert not value.startswith(("http:", "https:", "//")), (tag, value)
    assert "url(" not in page and "@import" not in page
    imgs = [a for t, a in parser.tags if t == "img"]
    assert len(imgs) == n_figures
    for attrs in imgs:
        src = attrs["src"]
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            assert im.width == 1600
    return imgs


def test_html_is_self_contained_and_names_the_batch_once(built):
    page = built.read_text(encoding="utf-8")
    _check_self_contained(page, len(STEMS))
    # figures, effects table, thresholds, one table per key output, scenarios (appendix)
    assert page.count("<figcaption>") == len(STEMS) + 1 + 1 + 14 + 1
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page, flags=re.S)
    for cap in captions:
        assert BATCH not in cap and "11111111" not in cap, cap[:120]
    lede = page[page.index('<p class="lede">') : page.index("id='key-findings'")]
    assert f"Batch <b>{BATCH}</b>" in lede and "10 runs per scenario (30 in all)" in lede
    # the hashes live in the appendix only
    appendix = page[page.index('id="appendix"') :]
    assert page.count("11111111") == appendix.count("11111111") == 1
    assert "F01" in page and "F03" in page and "70%" in page and "16%" in page
    assert "Notes on this batch" not in page  # nothing to warn about


def test_figures_use_okabe_ito_and_readable_fonts(store):
    """Every text in a figure is >= 12 pt at 1600 px width; lines use the palette."""
    from matplotlib.text import Text

    from analysis import plots
    from analysis.load import load
    from analysis.stats import quantile_bands

    frame = load(store, columns=["self_sufficiency_pct", "ally_defected_japan"])
    bands = quantile_bands(frame)
    specs = {s.stem: s for s in figures()}
    order = ["baseline", "bust", "surge"]
    prov = report_mod._provenance(store, {}, pd.Series({s: 10 for s in order}), order, frame)
    with plots.rc_context():
        for stem in (
            "fig02_self_sufficiency_fan",
            "fig03_self_sufficiency_medians",
            "fig09_ally_defection",
        ):
            fd = report_mod._figure_data(
                specs[stem], bands, None, bands.iloc[:0], order, "baseline", prov
            )
            fig = plots.small_multiples(fd)
            assert fig.get_size_inches()[0] * fig.dpi == 1600
            sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text().strip()]
            assert sizes and min(sizes) >= 12
            colours = {ln.get_color() for ax in fig.axes for ln in ax.get_lines()}
            assert colours <= set(plots.OKABE_ITO) | {plots.REFERENCE_GREY}


def test_every_scenario_has_its_own_line_style():
    from analysis.plots import scenario_styles

    names = [f"s{i}" for i in range(28)]
    styles = scenario_styles(names)
    pairs = [(st.color, st.linestyle) for st in styles.values()]
    assert len(set(pairs)) == 28
    assert pairs[0] == ("#000000", "-")
    assert all(c != "#000000" for c, _ in pairs[1:])  # no black line to mistake for the baseline


@pytest.fixture(scope="module")
def long_names_figures(tmp_path_factory, request):
    """Every figure of a report on scenarios with long names, captured as drawn."""
    from analysis import plots

    store = write_store(
        tmp_path_factory.mktemp("long") / "long_names",
        layout="run",
        seeds=2,
        samples=1,
        rename={
            "surge": "allied_defection_endogenous_with_a_long_descriptive_name",
            "bust": "countermeasure_spiral_three_rounds_and_more",
        },
    )
    drawn: dict[str, object] = {}
    real_save = plots.save

    def capture(fig, stem):
        drawn[Path(stem).name] = fig
        return real_save(fig, stem)

    mp = pytest.MonkeyPatch()
    mp.setattr(plots, "save", capture)
    try:
        build_report(store)
    finally:
        mp.undo()
    return drawn


def test_no_figure_legend_or_text_is_clipped(long_names_figures):
    """The legend's bounding box lies inside the figure's, and so does every text."""
    from analysis.plots import clipped_elements

    assert set(long_names_figures) == set(STEMS)
    for stem, fig in long_names_figures.items():
        renderer = fig.canvas.get_renderer()
        box = fig.bbox
        assert fig.legends, stem
        for legend in fig.legends:
            bb = legend.get_window_extent(renderer)
            assert bb.x0 >= box.x0 - 1 and bb.x1 <= box.x1 + 1, (stem, bb)
            assert bb.y0 >= box.y0 - 1 and bb.y1 <= box.y1 + 1, (stem, bb)
        assert clipped_elements(fig) == [], stem


def test_clipped_elements_finds_a_legend_outside_the_figure():
    """The check itself can fail: a legend anchored past the right edge is reported."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from analysis.plots import clipped_elements

    fig = Figure(figsize=(4, 3), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], label="a long label that cannot fit")
    fig.legend(loc="lower left", bbox_to_anchor=(0.8, 0.0))
    problems = clipped_elements(fig)
    assert problems and problems[0].startswith("legend")


def test_shared_scales_on_the_effect_panels(built, long_names_figures):
    fig = long_names_figures["fig04_self_sufficiency_vs_baseline"]
    limits = {ax.get_ylim() for ax in fig.axes if ax.get_visible()}
    assert len(limits) == 1  # one y scale for every scenario's panel
    effects = long_names_figures["fig01_scenario_effects"]
    assert len({ax.get_xlim() for ax in effects.axes}) == 1
    assert [ax.get_title(loc="left") for ax in effects.axes] == ["Effect in 2030", "Effect in 2035"]


def test_goal_is_an_annotation_not_a_squashed_axis():
    """Data far below the 70% goal fill the panel; the goal is noted at the edge.

    Data close to the goal keep it as a line on the scale.
    """
    from analysis import plots

    t = np.arange(2014, 2036, 0.25)
    for level, goal_on_scale in ((18.0, False), (60.0, True)):
        data = pd.DataFrame({"panel": "ss", "series": "baseline", "t": t, "y": level + 0 * t})
        data.loc[data["t"] > 2030, "y"] += 5
        fd = plots.FigureData(
            data=data,
            panels=[
                plots.PanelSpec(
                    "ss", "Self-sufficiency", "% of demand", references=report_mod._references()
                )
            ],
            styles=plots.scenario_styles(["baseline"]),
            title="t",
            ncols=1,
            direct_labels=True,
        )
        with plots.rc_context():
            fig = plots.small_multiples(fd)
        ax = fig.axes[0]
        lo, hi = ax.get_ylim()
        notes = [x.get_text() for x in ax.texts]
        edge_note = any("F01 goal: 70% by 2025" in n and "above this scale" in n for n in notes)
        if goal_on_scale:
            assert hi >= 70 and not edge_note
        else:
            assert hi < 30 and lo > 10 and edge_note  # 18-23% fill the panel
        assert plots.clipped_elements(fig) == []


# --------------------------------------------------------------------------------------
# Missing baseline, partial stores
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def no_baseline_store(tmp_path_factory):
    return write_store(
        tmp_path_factory.mktemp("nb") / "variants_only",
        layout="run",
        scenarios=("surge", "bust"),
        seeds=2,
        samples=1,
    )


def test_missing_default_baseline_skips_differences(no_baseline_store, tmp_path):
    with pytest.warns(UserWarning, match="'baseline' is not in run store"):
        path = build_report(no_baseline_store, out=tmp_path / "rep")
    assert path == tmp_path / "rep" / "report.html"
    page = path.read_text()
    assert "Paired differences from the baseline are skipped" in page
    assert "scenarios present: bust, surge" in page
    assert not (tmp_path / "rep" / "fig04_self_sufficiency_vs_baseline.csv").exists()
    assert not (tmp_path / "rep" / "fig01_scenario_effects.csv").exists()
    _check_self_contained(page, len(STEMS) - 2)
    table = pd.read_csv(tmp_path / "rep" / "table_summary.csv")
    assert table["diff_median"].isna().all()
    assert "2 runs per scenario" in page
    assert "Bands are seed noise only: 2 replicate seeds" in page
    # the parent is not in the batch: said so, no made-up changes
    assert "its parent &#x27;baseline&#x27; is not in this batch" in page
    checks = pd.read_csv(tmp_path / "rep" / "table_expectations.csv")
    assert (checks["status"] == "not measured: baseline not in this batch").all()


def test_explicit_missing_baseline_is_an_error(no_baseline_store, tmp_path):
    with pytest.raises(ValueError, match="'bau' is not in run store.*present: bust, surge"):
        build_report(no_baseline_store, baseline="bau", out=tmp_path / "x")
    with pytest.raises(ValueError, match="present: bust, surge"):
        build_report(no_baseline_store, out=tmp_path / "x", require_baseline=True)


def test_partial_store_skips_figures_with_notes(tmp_path):
    """A store without ally or tier outputs still gives a report, with notes.

    The notes say what was left out; failed runs recorded in failures.jsonl are mentioned,
    and so are scenarios the store holds no resolved copy of.
    """
    store = write_store(
        tmp_path / "partial",
        layout="run",
        seeds=2,
        samples=1,
        drop=("ally_", "self_sufficiency_tier_", "firms_active"),
        failures=2,
    )
    (store / "resolved" / "bust.yaml").unlink()
    path = build_report(store)
    page = path.read_text()
    assert "Figure &#x27;Allies&#x27; alignment with US export controls&#x27; skipped" in page
    assert "Self-sufficiency by chip tier&#x27; skipped" in page
    assert "left out of the tables: firms_active" in page
    assert "2 run(s) failed" in page
    assert "scenario &#x27;bust&#x27;: no resolved scenario in the store" in page
    assert "The store holds no resolved copy of this scenario" in page
    assert not (path.parent / "fig08_ally_alignment.png").exists()
    _check_self_contained(page, len(STEMS) - 3)  # tiers, alignment, defection skipped
    assert (path.parent / "fig02_self_sufficiency_fan.csv").is_file()


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="decouple")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_bad_input_exits_2_without_traceback(tmp_path, capsys, no_baseline_store):
    assert _cli(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and str(tmp_path / "missing") in err
    assert "Traceback" not in err

    assert _cli(["report", str(tmp_path)]) == 2  # a directory without a manifest
    assert "no manifest.json" in capsys.readouterr().err

    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "batch"}))
    assert _cli(["report", str(tmp_path)]) == 2  # a manifest but no data
    assert "holds no data" in capsys.readouterr().err

    assert (
        _cli(
            [
                "report",
                str(no_baseline_store),
                "--baseline",
                "baseline",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    captured = capsys.readouterr()
    assert "present: bust, surge" in captured.err and captured.out == ""


def test_cli_success_prints_the_paths_and_writes_a_pdf(no_baseline_store, tmp_path, capsys):
    out = tmp_path / "cli_report"
    argv = ["report", str(no_baseline_store), "--baseline", "surge", "--out", str(out)]
    with_pdf = CHROMIUM.exists() or bool(os.environ.get("CI"))
    assert _cli(argv + (["--pdf"] if with_pdf else [])) == 0
    lines = capsys.readouterr().out.split()
    assert lines[0] == str(out / "report.html")
    assert (out / "fig04_self_sufficiency_vs_baseline.csv").is_file()
    diff = pd.read_csv(out / "fig04_self_sufficiency_vs_baseline.csv")
    # bust - surge = -15 except +20 in 2027, for each seed
    s = diff.sort_values("t")
    np.testing.assert_allclose(s["y"], np.where(YEAR == 2027, 20.0, -15.0))
    if not with_pdf:
        pytest.skip("Chromium is not installed: the PDF half of this test did not run")
    assert lines == [str(out / "report.html"), str(out / "report.pdf")]
    pdf = (out / "report.pdf").read_bytes()
    assert pdf[:5] == b"%PDF-" and len(re.findall(rb"/Type\s*/Page[^s]", pdf)) >= 3


def test_cli_pdf_without_chromium_keeps_the_html(tmp_path, capsys, monkeypatch):
    page = tmp_path / "r" / "report.html"
    page.parent.mkdir()
    page.write_text("<!DOCTYPE html><title>x</title>")
    monkeypatch.setattr(report_mod, "build_report", lambda *a, **k: page)
    monkeypatch.setenv("DECOUPLE_CHROMIUM", str(tmp_path / "no-such-browser"))
    assert _cli(["report", str(tmp_path), "--pdf"]) == 2
    captured = capsys.readouterr()
    assert "--pdf needs a headless Chromium and none was found" in captured.err
    assert "the HTML report is written" in captured.err and "Traceback" not in captured.err
    assert captured.out.strip() == str(page)
    assert page.is_file() and not page.with_suffix(".pdf").exists()


# --------------------------------------------------------------------------------------
# Headless browser
# --------------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
#: A4 minus the report's 12 mm side margins, in CSS px (96 per inch).
A4_CONTENT_PX = round((210 - 2 * 12) / 25.4 * 96)


def _chromium() -> str:
    if CHROMIUM.exists():
        return str(CHROMIUM)
    if os.environ.get("CI"):
        pytest.fail("/usr/bin/chromium is missing in CI (.ci/run installs it)")
    pytest.skip(
        f"the report's headless-browser test needs Chromium at {CHROMIUM}: "
        "install it with 'sudo apt-get install chromium' (CI installs it: .ci/run)"
    )


def _page_requests(netlog: Path) -> list[str]:
    """URLs the page itself asked the network for (browser housekeeping excluded)."""
    log = json.loads(netlog.read_text())
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    urls = []
    for event in log.get("events", []):
        params = event.get("params") or {}
        # initiator "not an origin" marks the browser's own housekeeping requests
        if (
            names.get(event["type"]) == "URL_REQUEST_START_JOB"
            and "url" in params
            and params.get("initiator") != "not an origin"
        ):
            urls.append(params["url"])
    return urls


def test_report_renders_in_headless_chromium(built, tmp_path):
    chromium = _chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report_first_screen.png"
    shot.unlink(missing_ok=True)
    netlog = tmp_path / "netlog.json"
    cmd = [
        chromium,
        *report_mod.CHROMIUM_FLAGS,
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # any network request would fail loudly
        f"--log-net-log={netlog}",
        "--window-size=1600,1000",
        f"--screenshot={shot}",
        "--dump-dom",
        built.resolve().as_uri(),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=180, cwd=tmp_path, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    page_lines = [
        line
        for line in proc.stderr.splitlines()
        if ":CONSOLE" in line
        or "Uncaught" in line
        or (
            ("ERR_" in line or "Failed to load" in line)
            and ("file://" in line or "report.html" in line)
        )
    ]
    assert page_lines == []
    assert _page_requests(netlog) == []

    dom = proc.stdout
    assert "scenario report" in dom
    imgs = _check_self_contained(dom, len(STEMS))
    assert all(a.get("alt") for a in imgs)
    check_key_findings(dom, built.parent)  # the rendered page quotes the tables

    with Image.open(shot) as im:
        assert im.size == (1600, 1000)
        grey = np.asarray(im.convert("L"))
    # the first screen is not blank: the key findings' text covers a good part of it
    assert (grey < 200).mean() > 0.02


class DevTools:
    """A headless Chromium driven through the DevTools protocol over a pipe (stdlib only).

    ``--remote-debugging-pipe`` makes the browser read commands on fd 3 and answer on
    fd 4, as NUL-terminated JSON; this lets the test emulate print media, measure the
    layout and print to PDF in one browser, with no network port and no extra package.
    """

    def __init__(self, chromium: str, profile: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def child_fds() -> None:  # runs in the child: put the pipe ends at fds 3 and 4
            a, b = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [
                chromium,
                *report_mod.CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            preexec_fn=child_fds,  # noqa: PLW1509 - the fds must be set before exec
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._id = 0
        self._events: list[dict] = []
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]

    def _read(self) -> dict:
        while b"\0" not in self._buf:
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("the browser closed the DevTools pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, page: bool = False) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if page:
            msg["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._id:
                assert "error" not in reply, (method, reply["error"])
                return reply["result"]
            self._events.append(reply)

    def wait_for(self, method: str) -> None:
        while not any(e.get("method") == method for e in self._events):
            self._events.append(self._read())

    def evaluate(self, expression: str):
        result = self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, page=True
        )
        return result["result"]["value"]

    def open(self, url: str, width: int, height: int, media: str = "screen") -> None:
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            page=True,
        )
        self.send("Emulation.setEmulatedMedia", {"media": media}, page=True)
        self.send("Emulation.setScrollbarsHidden", {"hidden": True}, page=True)
        self.send("Page.enable", page=True)
        self._events.clear()
        self.send("Page.navigate", {"url": url}, page=True)
        self.wait_for("Page.loadEventFired")

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (OSError, RuntimeError, AssertionError):
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._to_browser)
        os.close(self._from_browser)


#: Layout measurements of the page, as JSON (run in the browser by DevTools).
_MEASURE = """JSON.stringify({
  page: document.documentElement.clientWidth,
  scroll: document.documentElement.scrollWidth,
  tables: [...document.querySelectorAll('table')].map(t => ({
    right: t.getBoundingClientRect().right, width: t.scrollWidth,
    box: t.parentElement.clientWidth, head: t.rows[0].innerText.slice(0, 60)})),
  images: [...document.querySelectorAll('img')].map(i => i.getBoundingClientRect().right),
  kf: !!document.querySelector('#key-findings'),
  effects: (() => { const r = document.querySelector('#fig01_scenario_effects img')
                      .getBoundingClientRect();
                    return [r.x + window.scrollX, r.y + window.scrollY, r.width, r.height]; })()
})"""


@pytest.fixture(scope="module")
def devtools(tmp_path_factory):
    chromium = _chromium()
    browser = DevTools(chromium, tmp_path_factory.mktemp("devtools-profile"))
    yield browser
    browser.close()


def test_page_prints_to_a4_with_no_table_wider_than_the_page(built, devtools, tmp_path):
    """Print layout (print stylesheet, A4 content width): every table and image fits."""
    devtools.open(built.resolve().as_uri(), A4_CONTENT_PX, 1100, media="print")
    m = json.loads(devtools.evaluate(_MEASURE))
    assert m["page"] == A4_CONTENT_PX and m["kf"]
    assert m["scroll"] <= m["page"], "something is wider than the printed page"
    assert len(m["tables"]) >= 17
    for t in m["tables"]:
        assert t["right"] <= m["page"] + 1, t
        assert t["width"] <= t["box"] + 1, t  # no table scrolls inside its box either
    assert all(right <= m["page"] + 1 for right in m["images"])
    pdf = base64.b64decode(
        devtools.send(
            "Page.printToPDF",
            {"paperWidth": 210 / 25.4, "paperHeight": 297 / 25.4, "preferCSSPageSize": True},
            page=True,
        )["data"]
    )
    assert pdf[:5] == b"%PDF-"
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
    assert pages >= 5  # a printed report of several A4 pages, not one clipped sheet
    (tmp_path / "report.pdf").write_bytes(pdf)


def test_screenshots_of_the_first_screen_and_the_effects_chart(built, devtools):
    """Keep screenshots for a human to look at (tests/artifacts/, git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    devtools.open(built.resolve().as_uri(), 1600, 1000)
    x, y, w, h = json.loads(devtools.evaluate(_MEASURE))["effects"]
    shot = devtools.send(
        "Page.captureScreenshot",
        {
            "format": "png",
            "clip": {"x": x, "y": y, "width": w, "height": h, "scale": 1},
            "captureBeyondViewport": True,
        },
        page=True,
    )
    path = ARTIFACTS / "report_effects_chart.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    with Image.open(path) as im:
        assert im.width >= 1000
        grey = np.asarray(im.convert("L"))
    assert (grey < 200).mean() > 0.01  # the chart is drawn, not a blank box
