"""The quarter's phases and their arithmetic, each tested on its own (docs/ODD.md section 3)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model import finance, technology
from model.market import domestic_preference, logistic, reachable_share, safe_share, with_exports
from model.model import DecouplingModel
from model.quarter import Quarter
from model.regimes import pressure_index
from model.taxonomy import ADVANCED_MIN_GEN, LEADING_MIN_GEN, TIERS


def test_domestic_preference_is_the_logit_of_its_terms():
    assert domestic_preference(0.0, 0.9, 0.0, 0.0, 0.0) == pytest.approx(0.5)
    # each generation behind costs gap_cost logits; pressure and security add
    assert domestic_preference(1.0, 0.9, 2.0, 0.4, 0.3) == pytest.approx(logistic(1.0 - 1.8 + 0.7))
    wants = domestic_preference(np.zeros(3), 1.0, np.array([0.0, 1.0, 2.0]), 0.0, 0.0)
    assert (np.diff(wants) < 0).all()  # further behind, less wanted


def test_reachable_share_adds_adequate_domestic_supply_to_what_is_open():
    assert reachable_share(0.3, 1.0) == pytest.approx(1.0)
    assert reachable_share(0.3, 0.0) == pytest.approx(0.3)
    assert reachable_share(0.3, 0.5) == pytest.approx(0.65)


def test_exports_top_up_sales_to_at_most_full_capacity():
    assert with_exports(0.5, 0.6) == pytest.approx(0.8)
    assert with_exports(0.9, 0.6) == 1.0
    assert safe_share(1.0, 0.0) == 0.0


def test_pressure_index_is_capped():
    assert pressure_index(3.0, 6.0, 2.0) == 0.5
    assert pressure_index(30.0, 6.0, 2.0) == 2.0


def test_expansion_appetite_ramps_from_zero_to_one_below_the_threshold():
    u = np.array([0.4, 0.55, 0.675, 0.8, 0.95])
    assert finance.expansion_appetite(u, 0.8, 0.25).tolist() == pytest.approx([0, 0, 0.5, 1, 1])


def test_waste_is_the_sum_of_its_three_sources():
    assert finance.wasted_state_money(1.0, 0.25, 0.5) == 1.75


def test_tier_generations_cap_logic_tiers_at_their_upper_end():
    best = np.zeros(9)
    best[1], best[2] = 3.0, 0.5  # memory, compound
    dom, ref = technology.tier_generations(5.0, best, 6.0, 2.0)
    assert dom.tolist() == [5.0, LEADING_MIN_GEN, ADVANCED_MIN_GEN, 3.0, 0.5]
    assert ref.tolist() == [6.0, LEADING_MIN_GEN, ADVANCED_MIN_GEN, 6.0, 2.0]
    # a foundry behind the advanced tier's upper end supplies every logic tier at its own node
    dom, _ = technology.tier_generations(-1.0, best, 6.0, 2.0)
    assert dom[:3].tolist() == [-1.0, -1.0, -1.0]


def test_by_tier_reads_foundry_vintages_as_logic_tiers():
    by_line = np.arange(27, dtype=float).reshape(9, 3)
    assert technology.by_tier(by_line).tolist() == [0.0, 1.0, 2.0, 3 + 4 + 5, 6 + 7 + 8]


@pytest.fixture
def first_quarter(baseline):
    model = DecouplingModel(baseline, rng=0)
    model.steps = 1  # what Mesa's step wrapper sets before calling step()
    return model, model._begin_quarter()


def test_begin_quarter_dates_the_quarter_and_reads_the_frontier(first_quarter):
    model, q = first_quarter
    assert isinstance(q, Quarter)
    assert q.ordinal == model.start_q
    assert q.frontier_gen == pytest.approx(technology.frontier_gen(model.p, 2014.125))


def test_demand_phase_alone(first_quarter):
    model, q = first_quarter
    model._demand(q)
    d = q.demand
    p = model.p
    assert d.total_usd_bn == pytest.approx(
        d.world_usd_bn * p["demand.china_share_of_world_pct"] / 100 * math.exp(model.demand_shock)
    )
    assert d.by_tier_usd_bn.sum() == pytest.approx(d.total_usd_bn)
    assert d.tier_shares.shape == (len(TIERS),)


def test_supply_and_chip_sourcing_phases_alone(first_quarter):
    model, q = first_quarter
    model._demand(q)
    model._domestic_supply(q)
    s = q.supply
    assert (s.supply_by_tier <= s.capacity_by_tier + 1e-12).all()
    model._source_chips(q)
    c = q.chips
    total = c.cleared.domestic + c.cleared.foreign + c.cleared.unmet
    assert np.allclose(total, c.demand_by_buyer)
    assert (c.located_by_tier <= c.cleared.foreign.sum(axis=0) + 1e-12).all()
    assert q.foreign_by_origin.sum() == pytest.approx(c.cleared.foreign.sum())
