"""Tests of analysis.stats against answers known in closed form (see report_fixtures)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from report_fixtures import (
    EQUIP_SLOPE,
    EXPECTED_PROBABILITIES,
    UNMET_OFFSET,
    make_frame,
    ss_offset,
)

from analysis import stats


@pytest.fixture(scope="module")
def frame():
    return make_frame()  # 3 scenarios x 5 seeds x 2 samples x 2020Q1-2035Q4


def test_fractional_year_is_quarter_midpoint():
    t = stats.fractional_year(pd.Series(["2021Q1", "2021Q4", "2035Q2"]))
    assert t.tolist() == [2021.125, 2021.875, 2035.375]
    with pytest.raises(ValueError, match="2021-3"):
        stats.fractional_year(pd.Series(["2021Q1", "2021-3"]))


def test_quantile_bands_match_hand_computed_values(frame):
    # baseline at quarter k: values 10 + 5 s + 2 m + 0.5 k over s = 0..4, m = 0..1, i.e.
    # {0, 2, 5, 7, 10, 12, 15, 17, 20, 22} + 10 + 0.5 k. Linear interpolation (type 7):
    # q05 = 0.9, q25 = 5.5, median = 11, q75 = 16.5, q95 = 21.1, mean = 11.
    bands = stats.quantile_bands(frame, ["self_sufficiency_pct"])
    base = bands[bands["scenario"] == "baseline"].reset_index(drop=True)
    k = np.arange(64)
    for col, offset in {
        "q05": 0.9,
        "q25": 5.5,
        "median": 11.0,
        "q75": 16.5,
        "q95": 21.1,
        "mean": 11.0,
    }.items():
        np.testing.assert_allclose(base[col], 10 + offset + 0.5 * k, err_msg=col)
    assert (base["n"] == 10).all()
    assert base["t"].iloc[0] == 2020.125 and base["year"].iloc[-1] == 2035
    surge = bands[(bands["scenario"] == "surge") & (bands["quarter"] == "2030Q3")]
    assert surge["median"].item() == pytest.approx(21 + 0.5 * 42 + 10)


def test_quantile_bands_equal_numpy_on_every_group(frame):
    cols = ["domestic_equipment_share_pct", "unmet_demand_usd_bn"]
    bands = stats.quantile_bands(frame, cols)
    sel = frame[(frame["scenario"] == "bust") & (frame["quarter"] == "2027Q2")]
    for col in cols:
        row = bands[
            (bands["scenario"] == "bust")
            & (bands["quarter"] == "2027Q2")
            & (bands["variable"] == col)
        ]
        expected = np.quantile(sel[col], [0.05, 0.25, 0.5, 0.75, 0.95])
        np.testing.assert_allclose(
            row[["q05", "q25", "median", "q75", "q95"]].to_numpy()[0], expected
        )


def test_paired_differences_equal_the_constructed_offsets(frame):
    diff = stats.paired_differences(
        frame, "baseline", ["self_sufficiency_pct", "domestic_equipment_share_pct"]
    )
    assert set(diff["scenario"]) == {"surge", "bust"}
    assert len(diff) == 2 * 10 * 64
    for scen in ("surge", "bust"):
        d = diff[diff["scenario"] == scen]
        np.testing.assert_allclose(d["self_sufficiency_pct"], ss_offset(scen, d["year"]))
        kk = (d["year"] - 2020) * 4 + d["quarter"].str[-1].astype(int) - 1
        np.testing.assert_allclose(
            d["domestic_equipment_share_pct"], EQUIP_SLOPE[scen] * kk / 63, atol=1e-12
        )


def test_paired_differences_cancel_common_random_numbers(frame):
    """Noise shared by replicate i across scenarios must cancel exactly.

    Pairing on seed alone (ignoring sample) or on quarter alone would leave it in.
    """
    noisy = frame.copy()
    rng = np.random.default_rng(0)
    noise = pd.Series(rng.normal(0, 7, 5 * 2 * 64))
    key = (noisy["seed"] * 2 + noisy["sample"]) * 64 + noisy.groupby(
        ["scenario", "seed", "sample"]
    ).cumcount()
    noisy["self_sufficiency_pct"] += noise.to_numpy()[key.to_numpy()]
    # shuffle the rows: pairing must use the keys, not the order
    noisy = noisy.sample(frac=1.0, random_state=1)
    diff = stats.paired_differences(noisy, "baseline", ["self_sufficiency_pct"])
    np.testing.assert_allclose(diff["self_sufficiency_pct"], ss_offset_for(diff), atol=1e-9)


def ss_offset_for(diff: pd.DataFrame) -> np.ndarray:
    out = np.empty(len(diff))
    for scen in ("surge", "bust"):
        mask = (diff["scenario"] == scen).to_numpy()
        out[mask] = ss_offset(scen, diff.loc[mask, "year"].to_numpy())
    return out


def test_paired_differences_missing_partner_and_missing_baseline(frame):
    partial = frame[~((frame["scenario"] == "baseline") & (frame["seed"] == 4))]
    with pytest.warns(UserWarning, match="256 row"):
        diff = stats.paired_differences(partial, "baseline", ["self_sufficiency_pct"])
    assert set(diff["seed"]) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="present: baseline, bust, surge"):
        stats.paired_differences(frame, "bau", ["self_sufficiency_pct"])


def test_annual_means_stocks_and_sums_flows(frame):
    ann = stats.annual(frame, ["self_sufficiency_pct", "unmet_demand_usd_bn"])
    row = ann[
        (ann["scenario"] == "surge")
        & (ann["seed"] == 3)
        & (ann["sample"] == 1)
        & (ann["year"] == 2030)
    ].iloc[0]
    # mean of 10 + 15 + 2 + 0.5 k + 10 over k = 40..43
    assert row["self_sufficiency_pct"] == pytest.approx(37 + 0.5 * 41.5)
    # four quarters of 0.5 + 0.25 * 3 + 1.0
    assert row["unmet_demand_usd_bn"] == pytest.approx(4 * (0.5 + 0.75 + UNMET_OFFSET["surge"]))
    assert row["n_quarters"] == 4
    # a partial year: the flow is missing, the stock is the mean of the quarters present
    part = frame[~frame["quarter"].isin(["2035Q3", "2035Q4"])]
    last = stats.annual(part, ["self_sufficiency_pct", "unmet_demand_usd_bn"])
    last = last[last["year"] == 2035]
    assert last["unmet_demand_usd_bn"].isna().all()
    assert (last["n_quarters"] == 2).all()
    assert last["self_sufficiency_pct"].notna().all()


def test_threshold_probabilities(frame):
    probs = stats.threshold_probabilities(frame)
    assert len(probs) == 3 * 3 * 2
    got = {(r.scenario, r.threshold_pct, r.year): r.probability for r in probs.itertuples()}
    assert got == pytest.approx(EXPECTED_PROBABILITIES)
    assert (probs["runs"] == 10).all()


def test_threshold_counts_earlier_years_not_only_the_year_itself(frame):
    """The ``bust`` scenario is below 50% in 2030 in every run, yet reached it in 2027."""
    ann = stats.annual(frame[frame["scenario"] == "bust"], ["self_sufficiency_pct"])
    assert (ann.loc[ann["year"] == 2030, "self_sufficiency_pct"] < 50).all()
    probs = stats.threshold_probabilities(frame, thresholds=[50], years=[2026, 2027, 2030])
    bust = probs[probs["scenario"] == "bust"].set_index("year")["probability"]
    assert bust.to_dict() == {2026: 0.0, 2027: 1.0, 2030: 1.0}


def test_threshold_year_beyond_the_data_is_missing(frame):
    probs = stats.threshold_probabilities(frame, thresholds=[30], years=[2040])
    assert probs["probability"].isna().all() and (probs["runs"] == 0).all()


def test_summary_table(frame):
    cols = ["self_sufficiency_pct", "unmet_demand_usd_bn", "domestic_equipment_share_pct"]
    table = stats.summary_table(frame, cols, baseline="baseline")
    assert set(table["year"]) == {2025, 2030, 2035}
    idx = table.set_index(["scenario", "year", "variable"])
    # baseline 2030 self-sufficiency: 30.75 + {5 s + 2 m}: median 41.75, q05 31.65, q95 51.85
    row = idx.loc[("baseline", 2030, "self_sufficiency_pct")]
    assert (row["median"], row["q05"], row["q95"]) == pytest.approx((41.75, 31.65, 51.85))
    assert row["runs"] == 10 and pd.isna(row["diff_median"])
    assert row["unit"] == "% of demand"
    # surge: +10 in every run, so every quantile of the paired difference is 10
    row = idx.loc[("surge", 2035, "self_sufficiency_pct")]
    assert (row["diff_median"], row["diff_q05"], row["diff_q95"]) == pytest.approx((10, 10, 10))
    assert row["diff_pairs"] == 10
    # unmet demand is a flow: annual sum 4 * (0.5 + 0.25 s + offset); median over s = 2
    row = idx.loc[("bust", 2025, "unmet_demand_usd_bn")]
    assert row["median"] == pytest.approx(4 * (0.5 + 0.5 + 2.0))
    assert row["diff_median"] == pytest.approx(8.0)
    assert row["unit"] == "US$ bn per year"
    # a paired difference growing over time: bust - baseline = -12.6 k / 63 -> mean over 2030
    row = idx.loc[("bust", 2030, "domestic_equipment_share_pct")]
    assert row["diff_median"] == pytest.approx(-12.6 * 41.5 / 63)


def test_is_flow_and_describe():
    assert stats.is_flow("state_funding_usd_bn")
    assert stats.is_flow("foreign_revenue_from_china_usd_bn_japan")
    assert stats.is_flow("firms_entered") and not stats.is_flow("firms_active")
    assert not stats.is_flow("self_sufficiency_pct")
    assert stats.describe("ally_alignment_south_korea").label == "South Korea"
    assert stats.describe("self_sufficiency_segment_eda_ip_pct").label == "Segment: EDA & IP"
    assert stats.quarterly_unit("unmet_demand_usd_bn") == "US$ bn per quarter"


# --------------------------------------------------------------------------------------
# Monte-Carlo error
# --------------------------------------------------------------------------------------


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson's score interval written out (Wilson 1927), to check the library call."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_wilson_interval_matches_the_formula():
    low, high = stats.wilson_interval([0, 2, 10, 7], [20, 10, 10, 0])
    for i, (k, n) in enumerate([(0, 20), (2, 10), (10, 10)]):
        assert (low[i], high[i]) == pytest.approx(_wilson(k, n), abs=1e-12)
    assert high[0] == pytest.approx(0.1611, abs=1e-4)  # 0 of 20 still allows ~16%
    assert np.isnan(low[3]) and np.isnan(high[3])  # no run: no interval


def test_quantile_interval_is_the_order_statistic_interval():
    # Classical table: with n = 10 the 95% interval of the median is (x_(2), x_(9)), with
    # n = 20 it is (x_(6), x_(15)); with n = 5 no two order statistics give 95%.
    rng = np.random.default_rng(3)
    for n, (lo_rank, hi_rank) in {10: (2, 9), 20: (6, 15)}.items():
        x = rng.permutation(np.arange(1.0, n + 1))
        low, high = stats.quantile_interval(np.vstack([x, 100 + x]), 0.5)
        assert low.tolist() == [lo_rank, 100 + lo_rank]
        assert high.tolist() == [hi_rank, 100 + hi_rank]
    low, high = stats.quantile_interval(np.arange(5.0)[None, :], 0.5)
    assert np.isnan(low[0]) and np.isnan(high[0])
    # the 95th percentile of 20 runs: a lower bound, but no upper one
    low, high = stats.quantile_interval(np.arange(1.0, 21)[None, :], 0.95)
    assert low[0] == 17 and np.isnan(high[0])


def test_threshold_probabilities_carry_wilson_intervals(frame):
    probs = stats.threshold_probabilities(frame).set_index(["scenario", "threshold_pct", "year"])
    row = probs.loc[("baseline", 50.0, 2030)]  # 2 of 10 runs
    assert row["reached"] == 2 and row["runs"] == 10
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(_wilson(2, 10))
    row = probs.loc[("surge", 70.0, 2030)]  # 0 of 10
    assert row["ci_low"] == pytest.approx(0.0, abs=1e-12)
    assert row["ci_high"] == pytest.approx(_wilson(0, 10)[1])


def test_summary_table_intervals_and_seed_only_band(frame):
    table = stats.summary_table(frame, ["self_sufficiency_pct"], baseline="baseline")
    row = table.set_index(["scenario", "year", "variable"]).loc[
        ("baseline", 2030, "self_sufficiency_pct")
    ]
    # the 10 runs are 30.75 + {0, 2, 5, 7, 10, 12, 15, 17, 20, 22}: median interval (x_(2), x_(9))
    assert (row["median_ci_low"], row["median_ci_high"]) == pytest.approx((32.75, 50.75))
    assert row["samples"] == 2
    # seed noise alone (one sample, seeds 0-4: 5 s = 0..20): 5-95% range 1 to 19 -> 18 pp,
    # narrower than the pooled band (20.2 pp) that also spans the two samples
    assert row["seed_band_width"] == pytest.approx(18.0)
    assert row["q95"] - row["q05"] == pytest.approx(20.2)
    surge = table.set_index(["scenario", "year", "variable"]).loc[
        ("surge", 2035, "self_sufficiency_pct")
    ]
    # every pair differs by exactly +10: every quantile and interval end is 10
    for col in ("diff_median", "diff_q25", "diff_q75", "diff_median_ci_low", "diff_median_ci_high"):
        assert surge[col] == pytest.approx(10.0), col


def test_expectation_checks(frame):
    checks = stats.expectation_checks(
        frame,
        [
            {
                "scenario": "surge",
                "output": "self_sufficiency_pct",
                "year": 2030,
                "direction": "higher",
            },
            {
                "scenario": "bust",
                "output": "self_sufficiency_pct",
                "year": 2030,
                "direction": "higher",
                "note": "wrong on purpose",
            },
            {
                "scenario": "bust",
                "output": "unmet_demand_usd_bn",
                "year": 2030,
                "direction": "different",
            },
            {
                "scenario": "ghost",
                "output": "self_sufficiency_pct",
                "year": 2030,
                "direction": "lower",
            },
            {"scenario": "surge", "output": "not_an_output", "year": 2030, "direction": "lower"},
        ],
    )
    assert checks["status"].tolist() == [
        "held",
        "not held",
        "held",
        "not measured: ghost not in this batch",
        "not measured: not_an_output not in this store",
    ]
    first, second, third = (checks.iloc[i] for i in range(3))
    assert first["diff_median"] == pytest.approx(10.0) and first["pairs"] == 10
    assert bool(first["clear"]) and first["share_in_direction"] == 1.0
    assert second["diff_median"] == pytest.approx(-5.0) and not bool(second["held"])
    assert second["share_in_direction"] == 0.0 and second["note"] == "wrong on purpose"
    # unmet demand is a flow: the calendar-year sum, 4 x 2.0 more per year in bust
    assert third["diff_median"] == pytest.approx(8.0)
    assert pd.isna(checks.iloc[3]["held"])


def test_add_derived_splits_equipment_purchases(frame):
    df = stats.add_derived(frame.copy())
    share = df["domestic_equipment_share_pct"] / 100
    np.testing.assert_allclose(
        df[stats.DOMESTIC_EQUIPMENT], df["fab_equipment_purchases_usd_bn"] * share
    )
    np.testing.assert_allclose(
        df[stats.DOMESTIC_EQUIPMENT] + df[stats.FOREIGN_EQUIPMENT],
        df["fab_equipment_purchases_usd_bn"],
    )
    assert stats.is_flow(stats.DOMESTIC_EQUIPMENT)
