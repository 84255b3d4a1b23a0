"""The baseline reproduces the documented targets (medians over 20 seeds)."""

from __future__ import annotations

from conftest import yearly_median


def test_self_sufficiency_2021_matches_f03(baseline_runs):
    # F03: "In 2021, its estimated self-sufficiency rate was only 16 percent".
    value = yearly_median(baseline_runs, "self_sufficiency_pct", 2021)
    assert 14.0 <= value <= 18.0, value


def test_china_hq_share_2021_below_located_share(baseline_runs):
    # IC Insights: China-HQ firms made 6.6% of the 2021 market, China-located fabs 16.7%.
    hq = yearly_median(baseline_runs, "self_sufficiency_china_hq_pct", 2021)
    located = yearly_median(baseline_runs, "self_sufficiency_pct", 2021)
    assert 4.5 <= hq <= 9.0, hq
    assert hq < located


def test_flagship_domestic_share_f17(baseline_runs):
    # F17: Mate 40E ~60% Chinese components (2021), more than double the Mate 30 (2019).
    assert yearly_median(baseline_runs, "flagship_domestic_share_pct", 2021) >= 50.0
    assert yearly_median(baseline_runs, "flagship_domestic_share_pct", 2019) < 30.0


def test_goal_missed_by_far_in_2025(baseline_runs):
    # F01 (70% by 2025) missed by a wide margin.
    value = yearly_median(baseline_runs, "self_sufficiency_pct", 2025)
    assert value < 35.0, value
    assert yearly_median(baseline_runs, "goal_gap_pp", 2025) > 35.0


def test_flagship_loses_most_foreign_market_f18(baseline_runs):
    # F18: world no. 1 in June 2020, ninth by October 2021.
    assert yearly_median(baseline_runs, "flagship_foreign_sales_index", 2018) == 100.0
    assert yearly_median(baseline_runs, "flagship_foreign_sales_index", 2021) < 50.0


def test_best_node_follows_smic(baseline_runs):
    # SMIC: 28 nm (2015), 14 nm in volume (end 2019), 7 nm (2022).
    assert 9.0 <= yearly_median(baseline_runs, "china_best_node_nm", 2019) <= 16.0
    assert 5.0 <= yearly_median(baseline_runs, "china_best_node_nm", 2023) <= 9.0


def test_state_money_matches_f05_envelope(baseline_runs):
    # F05: over US$150 bn of state-directed investment 2014-2030.
    window = baseline_runs[(baseline_runs["year"] >= 2014) & (baseline_runs["year"] <= 2030)]
    total = window.groupby("seed")["state_funding_usd_bn"].sum().median()
    assert 110.0 <= total <= 200.0, total


def test_firm_count_matches_f12(baseline_runs, baseline):
    # F12: close to 14,000 registered chip firms in 2021 (agents x firms per agent).
    per_agent = baseline.resolved_parameters()["china_firms.real_firms_per_agent"]
    firms = yearly_median(baseline_runs, "firms_active", 2021) * per_agent
    assert 10_000 <= firms <= 18_000, firms


def test_talent_gap_near_f15(baseline_runs):
    # F15: a gap of ~300,000 against ~812,000 needed (37%) in 2019-2021.
    value = yearly_median(baseline_runs, "talent_shortfall_pct", 2020)
    assert 25.0 <= value <= 45.0, value
