"""Market clearing: conservation, priority of cut-off buyers, unmet demand."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from model.market import clear, tier_shares
from model.parameters import resolve

unit = st.floats(0.0, 1.0)


@settings(max_examples=200, deadline=None)
@given(
    demand=arrays(float, (3, 2), elements=st.floats(0.0, 50.0)),
    want=arrays(float, (3, 2), elements=unit),
    open_=arrays(float, (3, 2), elements=unit),
    supply=arrays(float, (2,), elements=st.floats(0.0, 80.0)),
)
def test_demand_is_split_exactly(demand, want, open_, supply):
    res = clear(demand, want, open_, supply)
    np.testing.assert_allclose(res.domestic + res.foreign + res.unmet, demand, atol=1e-9)
    assert (
        (res.domestic >= -1e-12).all()
        and (res.foreign >= -1e-12).all()
        and (res.unmet >= -1e-12).all()
    )
    assert (res.domestic.sum(axis=0) <= supply + 1e-9).all()


def test_cut_off_buyer_is_served_first():
    demand = np.array([[10.0], [10.0]])
    want = np.array([[0.0], [1.0]])  # buyer 0 would buy foreign chips, buyer 1 domestic ones
    open_ = np.array([[0.0], [1.0]])  # buyer 0 is cut off from foreign supply
    res = clear(demand, want, open_, np.array([12.0]))
    assert res.domestic[0, 0] == 10.0  # the cut-off buyer gets all it needs first
    assert res.domestic[1, 0] == 2.0
    assert res.foreign[1, 0] == 8.0  # the rest of buyer 1 falls back on foreign supply
    assert res.unmet.sum() == 0.0


def test_no_domestic_supply_leaves_blocked_demand_unmet():
    res = clear(np.array([[10.0]]), np.array([[0.2]]), np.array([[0.25]]), np.array([0.0]))
    assert res.domestic[0, 0] == 0.0
    assert res.foreign[0, 0] == 2.5  # all that is open abroad, including what it wanted at home
    assert res.unmet[0, 0] == 7.5  # the blocked three quarters


def test_inadequate_domestic_supply_cannot_replace_blocked_imports():
    res = clear(
        np.array([[10.0]]),
        np.array([[1.0]]),
        np.array([[0.5]]),
        np.array([100.0]),
        adequate=np.array([[0.0]]),
    )
    assert res.domestic[0, 0] == 0.0
    assert res.foreign[0, 0] == 5.0
    assert res.unmet[0, 0] == 5.0


def test_tier_shares_sum_to_one_and_follow_points():
    p = resolve()
    for year in (2014.1, 2021.5, 2035.9):
        shares = tier_shares(p, year)
        assert abs(shares.sum() - 1.0) < 1e-12
        assert (shares >= 0).all()
    assert tier_shares(p, 2014.0)[0] == 0.0  # no sub-10 nm demand before the first 10 nm chips
    assert abs(tier_shares(p, 2021.0)[0] - 0.12) < 1e-12
