"""Tests of the policy report: plotted numbers, tables, HTML, CLI and a headless browser.

The run store is synthetic (tests/report_fixtures.py): every value is a closed-form
function of scenario, seed, sample and quarter, so the numbers in the figure CSVs and
tables are checked against answers derived by hand.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import subprocess
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from report_fixtures import (
    EXPECTED_PROBABILITIES,
    FUNDING_OFFSET,
    SEGMENT_FACTOR,
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
    for table in ("table_summary.csv", "table_thresholds.csv"):
        assert (built.parent / table).is_file()


# --------------------------------------------------------------------------------------
# Plotted numbers (read back from the figure CSVs)
# --------------------------------------------------------------------------------------


def test_fan_chart_numbers(built):
    df = read_csv(built, "fig01_self_sufficiency_fan")
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
    df = read_csv(built, "fig03_self_sufficiency_vs_baseline")
    assert set(df["panel"]) == {"surge", "bust"}  # no baseline-minus-baseline panel
    for scen in ("surge", "bust"):
        s = series(df, scen, scen)
        expected = ss_offset(scen, YEAR)  # the constructed offset, identical in every pair
        for col in ("y", "lo90", "lo50", "hi50", "hi90"):
            np.testing.assert_allclose(s[col], expected, err_msg=f"{scen} {col}")


def test_comparison_numbers(built):
    medians = read_csv(built, "fig02_self_sufficiency_medians")
    assert set(medians["panel"]) == {"self_sufficiency_pct"}
    assert "lo90" not in medians.columns  # medians only
    tiers = read_csv(built, "fig04_self_sufficiency_by_tier")
    segments = read_csv(built, "fig05_self_sufficiency_by_segment")
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
    funding = read_csv(built, "fig10_state_funding")
    for scen, offset in FUNDING_OFFSET.items():
        np.testing.assert_allclose(
            series(funding, "state_funding_usd_bn", scen)["y"], 5 + 0.1 * K + offset
        )
        np.testing.assert_allclose(
            series(funding, "state_funding_wasted_usd_bn", scen)["y"], 0.2 * (5 + 0.1 * K + offset)
        )


def test_technology_figure_has_frontier_overlay(built):
    df = read_csv(built, "fig06_technology_and_shortage")
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
    df = read_csv(built, "fig08_ally_defection")
    assert (df["statistic"] == "mean").all()
    japan = series(df, "ally_defected_japan", "bust")
    # seeds 0 and 1 (of 5), both samples, defect from 2028: 4 of 10 runs
    np.testing.assert_allclose(japan["y"], np.where(YEAR >= 2028, 0.4, 0.0))
    others = df[~((df["panel"] == "ally_defected_japan") & (df["series"] == "bust"))]
    assert (others["y"] == 0).all()
    align = read_csv(built, "fig07_ally_alignment")
    # median alignment of japan in bust after 2028: 6 of 10 runs at 0.9 - 0.002 k, 4 at 0.3
    np.testing.assert_allclose(series(align, "ally_alignment_japan", "bust")["y"], 0.9 - 0.002 * K)


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------


def test_threshold_table(built):
    thr = pd.read_csv(built.parent / "table_thresholds.csv")
    got = {(r.scenario, r.threshold_pct, r.year): r.probability for r in thr.itertuples()}
    assert got == pytest.approx(EXPECTED_PROBABILITIES)


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


# --------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------


class _Collector(HTMLParser):
    """Collects tags and attributes of a page (stdlib only)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


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


def test_html_is_self_contained_and_captioned(built):
    page = built.read_text(encoding="utf-8")
    _check_self_contained(page, len(STEMS))
    captions = page.count("<figcaption>")
    assert captions == len(STEMS) + 1 + 1 + 3  # figures, scenarios, thresholds, 3 years
    # provenance on every figure and data table caption
    line = (
        f"Batch {BATCH} | model version 0.1.0-test | 10 runs per scenario (30 in all) | "
        "scenario hashes: baseline 11111111, bust 33333333, surge 22222222"
    )
    assert page.count(line) >= len(STEMS) + 4
    assert "F01" in page and "F03" in page and "70%" in page and "16%" in page
    assert "Notes" not in page  # nothing to warn about


def test_figures_use_okabe_ito_and_readable_fonts(store):
    """Every text in a figure is >= 12 pt at 1600 px width; lines use the palette."""
    from matplotlib.text import Text

    from analysis import plots
    from analysis.load import load
    from analysis.stats import quantile_bands

    frame = load(store, columns=["self_sufficiency_pct", "ally_defected_japan"])
    bands = quantile_bands(frame)
    specs = {s.stem: s for s in figures()}
    prov = report_mod._provenance(
        store,
        {},
        pd.Series({"baseline": 10, "surge": 10, "bust": 10}),
        ["baseline", "bust", "surge"],
    )
    with plots.rc_context():
        for stem in ("fig01_self_sufficiency_fan", "fig08_ally_defection"):
            fd = report_mod._figure_data(
                specs[stem],
                bands,
                None,
                bands.iloc[:0],
                ["baseline", "bust", "surge"],
                "baseline",
                prov,
            )
            fig = plots.small_multiples(fd)
            assert fig.get_size_inches()[0] * fig.dpi == 1600
            sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text().strip()]
            assert sizes and min(sizes) >= 12
            colours = {ln.get_color() for ax in fig.axes for ln in ax.get_lines()}
            assert colours <= set(plots.OKABE_ITO) | {plots.REFERENCE_GREY}


# --------------------------------------------------------------------------------------
# Missing baseline
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
    assert not (tmp_path / "rep" / "fig03_self_sufficiency_vs_baseline.csv").exists()
    _check_self_contained(page, len(STEMS) - 1)
    table = pd.read_csv(tmp_path / "rep" / "table_summary.csv")
    assert table["diff_median"].isna().all()
    assert "2 runs per scenario" in page


def test_explicit_missing_baseline_is_an_error(no_baseline_store, tmp_path):
    with pytest.raises(ValueError, match="'bau' is not in run store.*present: bust, surge"):
        build_report(no_baseline_store, baseline="bau", out=tmp_path / "x")
    with pytest.raises(ValueError, match="present: bust, surge"):
        build_report(no_baseline_store, out=tmp_path / "x", require_baseline=True)


def test_partial_store_skips_figures_with_notes(tmp_path):
    """A store without ally or tier outputs still gives a report, with notes.

    The notes say what was left out; failed runs recorded in failures.jsonl are mentioned.
    """
    store = write_store(
        tmp_path / "partial",
        layout="run",
        seeds=2,
        samples=1,
        drop=("ally_", "self_sufficiency_tier_", "firms_active"),
        failures=2,
    )
    path = build_report(store)
    page = path.read_text()
    assert "Figure &#x27;Allies&#x27; alignment with US export controls&#x27; skipped" in page
    assert "Self-sufficiency by chip tier&#x27; skipped" in page
    assert "left out of the tables: firms_active" in page
    assert "2 run(s) failed" in page
    assert not (path.parent / "fig07_ally_alignment.png").exists()
    _check_self_contained(page, len(STEMS) - 3)  # tiers, alignment, defection skipped
    assert (path.parent / "fig01_self_sufficiency_fan.csv").is_file()


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


def test_cli_success_prints_the_path(no_baseline_store, tmp_path, capsys):
    out = tmp_path / "cli_report"
    assert _cli(["report", str(no_baseline_store), "--baseline", "surge", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out / "report.html")
    assert (out / "fig03_self_sufficiency_vs_baseline.csv").is_file()
    diff = pd.read_csv(out / "fig03_self_sufficiency_vs_baseline.csv")
    # bust - surge = -15 except +20 in 2027, for each seed
    s = diff.sort_values("t")
    np.testing.assert_allclose(s["y"], np.where(YEAR == 2027, 20.0, -15.0))


# --------------------------------------------------------------------------------------
# Headless browser
# --------------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")


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
    shot = ARTIFACTS / "report_screenshot.png"
    shot.unlink(missing_ok=True)
    netlog = tmp_path / "netlog.json"
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # any network request would fail loudly
        f"--log-net-log={netlog}",
        "--window-size=1600,4000",
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

    with Image.open(shot) as im:
        assert im.size == (1600, 4000)
        grey = np.asarray(im.convert("L"))
    # the page is not blank: text, tables and figures cover a good part of it
    assert (grey < 200).mean() > 0.02
