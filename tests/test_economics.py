"""The economics (docs/ODD.md 7.5-7.8): each mechanism switched off moves what it is for.

Every test pairs runs by seed (common random numbers: each mechanism draws from its own
stream per quarter, model/streams.py) and asserts the documented direction in every seed,
with a minimum size, so an effect inside the seed noise fails. Plausibility bounds check
levels against public figures (SEMI's China equipment series, idle cash, lithography).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import cut_at, run_frame

SEEDS = 6
END = "2030Q4"


def _short(scenario, end=END):
    return cut_at(scenario, end)


def _with(scenario, **params):
    merged = {**scenario.parameters, **params}
    return scenario.model_copy(update={"parameters": merged})


def _yearly(frame: pd.DataFrame, column: str, years, how="mean") -> pd.Series:
    """Per seed: the column's calendar-year mean (stocks) or sum (flows) over ``years``."""
    rows = frame[frame["year"].isin(list(years))]
    per_year = rows.groupby(["seed", "year"])[column].agg(how)
    return per_year.groupby("seed").mean()


@pytest.fixture(scope="module")
def base(baseline):
    return run_frame(_short(baseline), SEEDS)


def _paired(base_frame, scenario, column, years, how="mean") -> np.ndarray:
    other = run_frame(scenario, SEEDS)
    return (_yearly(other, column, years, how) - _yearly(base_frame, column, years, how)).to_numpy()


def test_fallback_investment_builds_what_fabs_can_equip(baseline, base):
    """Off, a fab blocked at its best node builds nothing: memory and equipment fall."""
    off = _with(_short(baseline), **{"firm_finance.fallback_investment": False})
    d = _paired(base, off, "fab_equipment_purchases_usd_bn", range(2023, 2031), "sum")
    assert (d < -1.0).all(), d


def test_co_investment_carries_the_equipment_market(baseline, base):
    off = _with(
        _short(baseline),
        **{
            "firm_finance.fab_co_investment_ratio": {"foundry": 0.0, "memory": 0.0, "compound": 0.0}
        },
    )
    d = _paired(base, off, "fab_equipment_purchases_usd_bn", [2021, 2022], "sum")
    assert (d < -5.0).all(), d


def test_stockpiling_front_loads_dutch_tools_before_the_2023_rule(baseline, base):
    """Off, the Netherlands sells China less in the announcement window (2023Q1-Q2)."""
    off = _with(
        _short(baseline),
        **{"controls.frontload_quarters": 0, "controls.anticipation_quarters": 0},
    )
    d = _paired(base, off, "foreign_revenue_from_china_usd_bn_netherlands", [2023], "sum")
    assert (d < -0.5).all(), d
    d = _paired(base, off, "fab_equipment_purchases_usd_bn", [2023, 2024], "sum")
    assert (d < -3.0).all(), d


def test_idle_cash_goes_back(baseline, base):
    off = _with(_short(baseline), **{"firm_finance.idle_cash_return_pct_per_quarter": 0})
    d = _paired(base, off, "china_firm_cash_usd_bn", [2030])
    assert (d > 20.0).all(), d


def test_the_domestic_discount_wins_buyers(baseline, base):
    """Off (domestic chips at foreign prices), fewer buyers choose them: China-HQ share down.

    The discount trades revenue per unit for volume; in the baseline volume wins.
    """
    off = _with(_short(baseline), **{"sourcing.domestic_discount_pct_per_generation": 0})
    d = _paired(base, off, "self_sufficiency_china_hq_pct", [2030])
    assert (d < -0.3).all(), d


def test_grey_imports_take_part_of_unmet_demand(baseline, base):
    off = _with(_short(baseline), **{"controls.grey_import_pct": 0})
    other = run_frame(off, SEEDS)
    assert other["unmet_grey_imports_usd_bn"].sum() == 0.0
    assert base["unmet_grey_imports_usd_bn"].sum() > 0.0
    d = _paired(base, off, "unmet_lost_sales_usd_bn", range(2023, 2031), "sum")
    assert (d > 0.0).all(), d


def test_relocation_moves_chinas_demand_abroad(baseline, base):
    off = _with(_short(baseline), **{"demand.relocation_pct_per_year_per_pressure": 0})
    d = _paired(base, off, "china_demand_usd_bn", [2030], "sum")
    assert (d > 2.0).all(), d


def test_the_demand_cycle_swings_like_wsts(base):
    """WSTS: annual world sales growth 2015-2024 has a s.d. of about 12%."""
    annual = base.groupby(["seed", "year"])["china_demand_usd_bn"].sum()
    growth = annual.groupby("seed").apply(lambda s: np.diff(np.log(s.to_numpy())).std())
    assert 0.06 <= float(growth.median()) <= 0.18, growth


def test_unmet_paths_add_up(base):
    paths = base[
        ["unmet_substituted_usd_bn", "unmet_grey_imports_usd_bn", "unmet_lost_sales_usd_bn"]
    ]
    assert np.allclose(paths.sum(axis=1), base["unmet_demand_usd_bn"])


@pytest.mark.parametrize(
    ("year", "semi_usd_bn"),
    [(2021, 29.6), (2022, 28.3), (2023, 36.6), (2024, 49.6)],
)
def test_equipment_market_at_semis_scale(base, year, semi_usd_bn):
    """SEMI: China's fab-equipment spending, the world's largest market (within 30%)."""
    value = float(_yearly(base, "fab_equipment_purchases_usd_bn", [year], "sum").median())
    assert 0.7 * semi_usd_bn <= value <= 1.3 * semi_usd_bn, value


def test_idle_cash_is_a_small_fraction_of_a_years_investment(baseline):
    """Cash beyond the working reserve stays under half a year's equipment purchases.

    The working reserve is a quarter of revenue; measured: 0.2-0.4 of the year's
    fab-equipment purchases in 2021-2030 (median over seeds), highest after the 2024 rules.
    """
    from model import finance
    from model.model import DecouplingModel
    from model.run import replicate_seed

    ratios = []
    for seed in range(3):
        model = DecouplingModel(_short(baseline), rng=replicate_seed(99, seed))
        idle, equipment = {}, {}
        record = model.recorder.record

        def watch(q, model=model, record=record, idle=idle, equipment=equipment):
            record(q)
            year = q.ordinal // 4
            idle[year] = float(finance.idle_cash(model).sum())
            spent = q.money.domestic_tools_usd_bn + q.money.foreign_tools_usd_bn
            equipment[year] = equipment.get(year, 0.0) + spent

        model.recorder.record = watch
        model.run_for(model.end_q - model.start_q + 1)
        ratios.append([idle[y] / equipment[y] for y in range(2021, 2031)])
    assert float(np.median(ratios, axis=0).max()) < 0.5, np.median(ratios, axis=0)


def _champion_capacity_usd_bn(scenario, names, years, seeds=3) -> dict[tuple[str, int], float]:
    """Median over seeds of each champion's capacity (US$ bn/yr) at the end of each year."""
    from model.calendar import quarter_ordinal
    from model.run import run_until, start

    values: dict[tuple[str, int], list[float]] = {}
    for seed in range(seeds):
        model = start(scenario, seed)
        for year in years:
            run_until(model, quarter_ordinal(f"{year + 1}Q1"))
            for name in names:
                cap = 4 * model.champions[name].capacity_usd_bn
                values.setdefault((name, year), []).append(cap)
    return {k: float(np.median(v)) for k, v in values.items()}


def test_memory_champions_ramp_like_cxmt_and_ymtc(baseline):
    """The memory champions' capacity against their public counterparts.

    CXMT's revenue was RMB 8.29, 9.09 and 24.18 bn in 2022-2024 (STAR Market prospectus),
    US$1.96 bn/yr on average; YMTC had ~8% of a ~US$67 bn NAND market at end-2024
    (DigiTimes, TrendForce), ~US$4 bn/yr at a domestic discount. Measured: 1.8 and 3.5.
    """
    years = (2022, 2023, 2024)
    cap = _champion_capacity_usd_bn(
        _short(baseline, "2024Q4"), ("memory_dram", "memory_nand"), years
    )
    cxmt = np.mean([cap[("memory_dram", y)] for y in years])
    assert 0.7 * 1.96 <= cxmt <= 1.3 * 1.96, cxmt
    assert 0.6 * 4.0 <= cap[("memory_nand", 2024)] <= 1.4 * 4.0, cap


def test_materials_stay_mostly_imported(base):
    """Fab materials in 2024 are between 15% and 50% domestic.

    SEMI puts photoresist below 5% domestic (2024), Bernstein 12-inch wafers above 50% for
    Chinese-owned fabs (Nikkei Asia, 2024); measured: 31%.
    """
    value = float(_yearly(base, "self_sufficiency_segment_materials_pct", [2024]).median())
    assert 15.0 <= value <= 50.0, value


def test_domestic_lithography_stays_small_without_an_adequate_scanner(base):
    value = float(
        _yearly(base, "self_sufficiency_segment_litho_equipment_pct", range(2021, 2031)).max()
    )
    assert value < 15.0, value


def test_multipatterning_costs_capacity_beyond_single_exposure(baseline, base):
    """Off (multipatterned nodes as cheap as single exposure), more leading-tier capacity."""
    off = _with(_short(baseline), **{"technology.multipatterning_cost_pct_per_generation": 0})
    d = _paired(base, off, "self_sufficiency_tier_leading_pct", range(2025, 2031))
    assert (d > 0.0).all(), d


def test_no_segment_turns_near_totally_domestic_within_five_years_of_a_rule(base):
    """The segments the 2019-2024 rules cover stay well short of all-domestic supply.

    Through 2029, five years after the last of them: EDA/IP, lithography, other tools and
    the equipment market as a whole. (Packaging, not controlled, is mostly Chinese already.)
    """
    columns = [
        f"self_sufficiency_segment_{s}_pct"
        for s in ("eda_ip", "litho_equipment", "other_equipment")
    ]
    columns.append("domestic_equipment_share_pct")
    worst = {c: float(_yearly(base, c, range(2025, 2030)).median()) for c in columns}
    assert max(worst.values()) < 80.0, worst
