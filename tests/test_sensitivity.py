"""Tests of global sensitivity (experiment/sensitivity.py, analysis/sensitivity.py, the CLI).

The estimators are checked on functions whose indices are known exactly: Ishigami's
function (Sobol' indices, analytic) and a linear function (Morris: mu* is the slope). The
study itself runs on short scenarios (2014Q1-2017Q4) with a handful of factors, in-process.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import sensitivity as est
from decouple.cli import main as cli_main
from decouple.sensitivity import StudyOptions, analyse_store, run_study
from experiment import sensitivity as design
from experiment.batch import run_batch
from experiment.errors import BatchError
from model import parameters as P
from model.scenario import load_scenario

SCEN_A = """\
name: short_a
question: test scenario A (short horizon)
start: 2014Q1
end: 2017Q4
uncertain:
  demand.quarterly_shock_sd_pct: {dist: uniform, low: 1.0, high: 3.0}
"""
SCEN_B = """\
name: short_b
question: test scenario B (a larger Chinese share of demand)
extends: a.yaml
parameters:
  demand.china_share_of_world_pct: 35
"""


@pytest.fixture(scope="module")
def scen(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("scenarios")
    (d / "a.yaml").write_text(SCEN_A)
    (d / "b.yaml").write_text(SCEN_B)
    return d


def _long(y: np.ndarray, output: str = "y") -> pd.DataFrame:
    """One analysis (one scenario, output and year) of values per design point."""
    return pd.DataFrame(
        {
            "scenario": "f",
            "measure": est.LEVEL,
            "output": output,
            "year": 2030,
            "sample": np.arange(len(y)),
            "value": y,
        }
    )


# ---------------------------------------------------------------------------------------
# The estimators on known functions
# ---------------------------------------------------------------------------------------

A, B = 7.0, 0.1  # Ishigami's constants


def _ishigami(u: np.ndarray) -> np.ndarray:
    x = -math.pi + 2 * math.pi * u
    return np.sin(x[:, 0]) + A * np.sin(x[:, 1]) ** 2 + B * x[:, 2] ** 4 * np.sin(x[:, 0])


def _ishigami_indices() -> tuple[np.ndarray, np.ndarray]:
    """Analytic first- and total-order indices of Ishigami's function (x uniform on [-pi, pi])."""
    pi = math.pi
    v1 = 0.5 * (1 + B * pi**4 / 5) ** 2
    v2 = A**2 / 8
    v13 = 8 * B**2 * pi**8 / 225
    v = v1 + v2 + v13
    return np.array([v1, v2, 0.0]) / v, np.array([v1 + v13, v2, v13]) / v


def test_ishigami_analytic_indices_are_the_known_values():
    s1, st = _ishigami_indices()
    assert np.round(s1, 3).tolist() == [0.314, 0.442, 0.0]
    assert np.round(st, 3).tolist() == [0.558, 0.442, 0.244]


@pytest.mark.parametrize("seed", range(5))
def test_sobol_pipeline_finds_ishigami_indices_within_their_intervals(seed):
    s1, st = _ishigami_indices()
    points = design.saltelli_points(3, 1024, seed)
    assert points.shape == (1024 * 5, 3)
    table, skipped = est.sobol_indices(
        _long(_ishigami(points)), ["x1", "x2", "x3"], len(points), seed=seed
    )
    assert skipped == 0
    assert list(table.columns) == list(est.SOBOL_COLUMNS)
    assert (np.abs(table["S1"] - s1) <= table["S1_conf"]).all(), table
    assert (np.abs(table["ST"] - st) <= table["ST_conf"]).all(), table
    # the intervals are informative: x2's S1 excludes 0, x3's includes it
    assert table["ST_conf"].max() < 0.1
    assert table["S1"][1] - table["S1_conf"][1] > 0.3
    assert abs(table["S1"][2]) <= table["S1_conf"][2]


def test_morris_mu_star_is_the_slope_of_a_linear_function():
    slopes = np.array([3.0, -1.5, 0.0, 0.25])
    points = design.morris_points(4, 6, 4, seed=3)
    assert points.shape == (6 * 5, 4)
    table, _ = est.morris_indices(_long(points @ slopes), points, list("abcd"), 4)
    assert list(table.columns) == list(est.MORRIS_COLUMNS)
    np.testing.assert_allclose(table["mu_star"], np.abs(slopes), atol=1e-9)
    np.testing.assert_allclose(table["mu"], slopes, atol=1e-9)
    np.testing.assert_allclose(table["sigma"], 0.0, atol=1e-9)


def test_given_data_ranks_ishigami_inputs_and_finds_a_dummy_inert():
    from scipy.stats import qmc

    u = qmc.LatinHypercube(4, rng=np.random.default_rng(5)).random(512)
    table, _ = est.given_data_indices(
        _long(_ishigami(u)), u, ["x1", "x2", "x3", "dummy"], num_resamples=30
    )
    assert list(table.columns) == list(est.GIVEN_DATA_COLUMNS)
    pawn = dict(zip(table["parameter"], table["pawn"]))
    floor = table["pawn_null"].iloc[0]
    assert (table["pawn_null"] == floor).all() and 0 < floor < 0.3
    assert pawn["x2"] > pawn["x1"] > floor >= pawn["dummy"]
    dummy = table.set_index("parameter").loc["dummy"]
    assert abs(dummy["S1"]) <= dummy["S1_conf"]
    # the floor is PAWN's quantile under no influence: about 5% of dummies exceed it
    assert est.pawn_null(512, seed=1) == pytest.approx(floor, abs=0.03)


def test_constant_outputs_have_no_indices():
    points = design.saltelli_points(2, 8, 0)
    table, skipped = est.sobol_indices(_long(np.full(len(points), 4.2)), ["a", "b"], len(points))
    assert table.empty and skipped == 1


def test_screen_ranks_by_share_of_each_analysis_largest():
    rows = []
    # level: a dominates; effect: c dominates at a much smaller scale
    for measure, mus in ((est.LEVEL, {"a": 10.0, "b": 5.0, "c": 0.1}),
                         (est.EFFECT, {"a": 0.0, "b": 0.01, "c": 0.2})):  # fmt: skip
        for name, mu in mus.items():
            rows.append(
                {
                    "scenario": "s",
                    "measure": measure,
                    "output": "y",
                    "year": 2030,
                    "parameter": name,
                    "mu_star": mu,
                }  # fmt: skip
            )
    table = pd.DataFrame(rows)
    assert est.screen(table, 2, "y") == ["a", "c"]
    assert est.screen(table, 3, "y") == ["a", "c", "b"]
    with pytest.raises(ValueError, match="no Morris indices for output 'z'"):
        est.screen(table, 2, "z")


# ---------------------------------------------------------------------------------------
# The factor space and designs
# ---------------------------------------------------------------------------------------


def test_factor_space_ranges_sources_and_exclusions(scen):
    a, b = load_scenario(scen / "a.yaml"), load_scenario(scen / "b.yaml")
    factors, notes = design.factor_space([a, b], 0.3, fixed=["demand.shock_persistence"])
    by = {f.path: f for f in factors}
    # declared uncertain: its distribution
    f = by["demand.quarterly_shock_sd_pct"]
    assert f.origin == "uncertain" and (f.distribution.low, f.distribution.high) == (1.0, 3.0)
    # otherwise value +/- 30%, integers rounded
    g = by["demand.world_market_growth_pct_per_year"]
    v = P.default_value("demand.world_market_growth_pct_per_year")
    assert g.origin == "spread" and g.distribution.low == pytest.approx(0.7 * v)
    assert g.distribution.high == pytest.approx(1.3 * v)
    m = by["demand.world_market_usd_bn_2022"]
    assert m.integer and m.distribution.low == round(0.7 * P.default_value(m.path))
    # left out: the scenarios' lever, --set, calendar dates, booleans, zero defaults
    assert "demand.china_share_of_world_pct" not in by
    assert "demand.shock_persistence" not in by
    assert not [p for p in by if p.endswith(design.CALENDAR_DATES)]
    assert all(not isinstance(P.default_value(p), bool) for p in by)
    assert all(fc.center != 0 or fc.origin == "uncertain" for fc in factors)
    text = "\n".join(notes)
    assert "demand.china_share_of_world_pct" in text and "fixed by --set" in text
    # every range end is inside the parameter's own range
    for fc in factors:
        rng = P.bounds(fc.path)
        if rng is not None and fc.origin == "spread":
            assert rng[0] <= fc.distribution.low < fc.distribution.high <= rng[1]


def test_factor_space_patterns_and_bad_settings(scen):
    a = load_scenario(scen / "a.yaml")
    factors, _ = design.factor_space([a], patterns=["frontier.*"])
    assert factors and all(f.path.startswith("frontier.") for f in factors)
    with pytest.raises(BatchError, match=r"--parameters nosuch\.\*: no numeric parameter"):
        design.factor_space([a], patterns=["nosuch.*"])
    with pytest.raises(BatchError, match="--spread must be between 0 and 1"):
        design.factor_space([a], spread=1.5)
    with pytest.raises(BatchError, match="--base-samples must be a power of two"):
        design.saltelli_points(2, 48, 0)
    with pytest.raises(BatchError, match="--levels must be an even number"):
        design.morris_points(2, 4, 3, 0)


def test_sample_design_maps_points_through_each_factor(scen):
    a = load_scenario(scen / "a.yaml")
    factors, _ = design.factor_space([a], patterns=["demand.world_market_*"])
    points = design.morris_points(len(factors), 2, 4, 0)
    sd = design.sample_design("morris", factors, points, 0)
    assert sd.n == len(points) and sd.method == "morris"
    for f in factors:
        vals = [v[f.path] for v in sd.values]
        assert min(vals) >= f.distribution.low and max(vals) <= f.distribution.high
        if f.integer:
            assert all(isinstance(x, int) for x in vals)
    # a point at the cube's corner maps to the range's ends
    j = 0
    lo = [k for k, p in enumerate(points) if p[j] == 0.0][0]
    assert sd.values[lo][factors[j].path] == pytest.approx(factors[j].distribution.low)


# ---------------------------------------------------------------------------------------
# A whole study (short scenarios, few factors, in-process)
# ---------------------------------------------------------------------------------------

STUDY = {
    "trajectories": 2,
    "top": 2,
    "base_samples": 4,
    "year": 2016,
    "root_entropy": 11,
    "design_seed": 5,
    "parameters": ["demand.world_market_growth*", "demand.quarterly_shock*", "frontier.gen*"],
    "progress": False,
}


@pytest.fixture(scope="module")
def study(scen, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "sens"
    files = [str(scen / "a.yaml"), str(scen / "b.yaml")]
    result = run_study(StudyOptions(files, out, command="test", **STUDY), log=lambda m: None)
    return files, out, result


def test_study_writes_tidy_tables_with_levels_and_effects(study):
    _, out, result = study
    sobol = pd.read_csv(out / "indices" / "sobol.csv")
    morris = pd.read_parquet(out / "indices" / "morris.parquet")
    assert list(sobol.columns) == list(est.SOBOL_COLUMNS)
    assert list(morris.columns) == list(est.MORRIS_COLUMNS)
    d = len(json.loads((out / "manifest.json").read_text())["factors"])
    assert morris["parameter"].nunique() == d == 4
    assert sorted(sobol["parameter"].unique()) == sorted(result.screened)
    assert len(result.screened) == 2
    targets = set(zip(sobol["scenario"], sobol["measure"]))
    assert targets == {("short_a", "level"), ("short_b", "level"), ("short_b", "effect")}
    assert set(sobol["year"]) == {2014, 2015, 2016, 2017}
    assert result.runs == {"morris": 2 * 2 * 5, "sobol": 2 * 4 * 4}
    # the design stages are batch stores whose points are the design's
    stage = json.loads((out / design.SOBOL_DIR / "manifest.json").read_text())
    assert stage["samples"]["method"] == "saltelli" and stage["samples"]["n"] == 16
    assert stage["samples"]["paths"] == result.screened


def test_study_effects_are_paired_differences(study):
    from analysis import load
    from analysis.stats import annual

    _, out, _ = study
    values = est.point_values(out / design.SOBOL_DIR, ["self_sufficiency_pct"], 16)
    long = est.with_effects(values, "short_a")
    eff = long[(long["measure"] == est.EFFECT) & (long["year"] == 2016)].set_index("sample")
    ann = annual(load(out / design.SOBOL_DIR, columns=["self_sufficiency_pct"]))
    ann = ann[ann["year"] == 2016].pivot(index="sample", columns="scenario")
    ss = ann["self_sufficiency_pct"]
    np.testing.assert_allclose(eff["value"], ss["short_b"] - ss["short_a"])
    assert (eff["value"] != 0).any()


def test_study_figures_results_and_report_section(study):
    _, out, _ = study
    results = json.loads((out / est.RESULTS_FILE).read_text())
    assert results["primary"] == "sobol" and results["baseline"] == "short_a"
    figs = [out / f for f in results["figures"]]
    assert figs and all(f.is_file() and f.stat().st_size > 1000 for f in figs)
    names = {f.name for f in figs}
    assert "sobol_short_b_effect_self_sufficiency_pct_heatmap.png" in names
    assert "sobol_short_b_effect_self_sufficiency_pct_tornado_2016.png" in names
    html = est.report_section(out)
    assert html.startswith("<section id='sensitivity'>")
    # the baseline's level and the effect, heatmap and tornado, for self-sufficiency only
    assert html.count("<img src='data:image/png;base64,") == 4
    assert "sobol_short_b_level" not in html and "morris_" not in html
    assert "short_b minus short_a" in html and "Morris screening of 4 parameters" in html
    assert est.report_section(out / "morris") is None  # a batch store without results


def test_study_rerun_resumes_and_refuses_another_study(study):
    files, out, result = study
    shards = sorted((out / design.MORRIS_DIR / "shards").iterdir())
    again = run_study(StudyOptions(files, out, command="again", **STUDY), log=lambda m: None)
    assert again.screened == result.screened
    assert result.ran == 2 * 2 * 5 + 2 * 4 * 4 and again.ran == 0
    assert sorted((out / design.MORRIS_DIR / "shards").iterdir()) == shards
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resumed"][-1]["command"] == "again" and manifest["finished"]
    with pytest.raises(BatchError) as err:
        run_study(StudyOptions(files, out, **{**STUDY, "top": 3}), log=lambda m: None)
    assert "holds a different sensitivity study" in err.value.problems[0]
    assert any("top: 2 in the store, 3 asked for" in p for p in err.value.problems)


def test_given_data_path_on_a_sampled_batch(scen, tmp_path):
    store = run_batch(
        [str(scen / "a.yaml"), str(scen / "b.yaml")],
        seeds=2,
        sample="lhs:8",
        jobs=1,
        out=tmp_path / "b",
        root_entropy=3,
        sample_seed=4,
        progress=False,
    )
    files = analyse_store(store, baseline="short_a", year=2016, log=lambda m: None)
    table = pd.read_csv(store / est.GIVEN_DATA_DIR / "indices" / "given_data.csv")
    assert list(table.columns) == list(est.GIVEN_DATA_COLUMNS)
    assert set(table["parameter"]) == {"demand.quarterly_shock_sd_pct"}
    assert {"level", "effect"} <= set(table["measure"])
    assert all(f.is_file() for f in files)
    assert "PAWN" in est.report_section(store)
    from analysis.report import build_report

    page = build_report(store, baseline="short_a").read_text()
    assert page.count("<section id='sensitivity'>") == 1 and "PAWN" in page
    with pytest.raises(ValueError, match="no sensitivity results there"):
        build_report(store, baseline="short_a", sensitivity=tmp_path)


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def _cli(args, capsys):
    code = cli_main(["sensitivity", *args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_cli_bad_input(scen, tmp_path, capsys):
    a = str(scen / "a.yaml")
    code, _, err = _cli([], capsys)
    assert code == 2 and "give at least one scenario file" in err
    code, _, err = _cli([a, "--from-store", str(tmp_path)], capsys)
    assert code == 2 and "not both" in err
    code, _, err = _cli([a, "--outputs", "nope_pct", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "unknown output(s) nope_pct" in err
    code, _, err = _cli([a, "--base-samples", "6", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "--base-samples must be a power of two" in err
    assert not (tmp_path / "x").exists()
    unsampled = run_batch([a], seeds=1, sample="none", jobs=1, out=tmp_path / "u", progress=False)
    code, _, err = _cli(["--from-store", str(unsampled)], capsys)
    assert code == 2 and "not a batch with sampled parameters" in err


def test_cli_dry_run_counts_runs(scen, tmp_path, capsys):
    args = [str(scen / "a.yaml"), "--parameters", "frontier.*", "--dry-run", "--jobs", "2"]
    code, out, err = _cli([*args, "--out", str(tmp_path / "d")], capsys)
    d = len(design.factor_space([load_scenario(scen / "a.yaml")], patterns=["frontier.*"])[0])
    assert code == 0, err
    assert f"Morris {4 * (d + 1)} runs, Sobol' {64 * (min(8, d) + 2)} runs" in out
    assert "estimated wall time with --jobs 2" in out
    assert not (tmp_path / "d").exists()
