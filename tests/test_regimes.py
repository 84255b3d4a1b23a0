"""Export-control rules: who complies, leakage, reach and thresholds (stockpiles elsewhere)."""

from __future__ import annotations

import numpy as np
import pytest

from model.model import DecouplingModel
from model.regimes import ITEM_INDEX, ORIGINS, ControlRule, ExportControlRegime, threshold_to_gen
from model.scenario import Scenario

US, NL, TW, OTHER = (ORIGINS.index(c) for c in ("united_states", "netherlands", "taiwan", "other"))


@pytest.fixture
def regime():
    model = DecouplingModel(
        Scenario(name="empty", question="q", start="2014Q1", end="2014Q4"), rng=1
    )
    return ExportControlRegime(model, "test")


def _rule(**kw):
    base = dict(
        item=1,
        target="all",
        threshold_gen=-np.inf,
        coverage=1.0,
        licence=0.0,
        foreign_direct_product=False,
        enforced_by=frozenset(),
        effective_q=10,
    )
    base.update(kw)
    return ControlRule(**base)


def _blocked(regime, listed=False, gen=0.0, quarter=10, alignment=0.5, tech=0.9):
    comp = np.array([1.0] + [alignment] * 5 + [0.0])
    us_tech = np.full(len(ORIGINS), tech)
    return regime.blocked("chips_advanced", listed, gen, quarter, comp, us_tech)[0]


def test_listed_rule_blocks_us_completely_without_leakage(regime):
    regime.add_rule(_rule(target="listed"))
    blk = _blocked(regime, listed=True)
    assert blk[US] == 1.0
    assert blk[NL] == 0.5  # an ally complies as far as it is aligned
    assert blk[OTHER] == 0.0
    assert (_blocked(regime, listed=False) == 0.0).all()


def test_country_wide_rule_leaks(regime):
    regime.add_rule(_rule(target="all"))
    leakage = regime.model.p["controls.leakage_pct"] / 100.0
    assert _blocked(regime)[US] == pytest.approx(1.0 - leakage)


def test_foreign_direct_product_rule_reaches_non_aligned_origins(regime):
    regime.add_rule(_rule(target="listed", foreign_direct_product=True))
    blk = _blocked(regime, listed=True, alignment=0.0, tech=0.9)
    assert blk[TW] == pytest.approx(0.9)
    assert blk[OTHER] == pytest.approx(0.9)
    regime.state.reach = 0.5
    assert _blocked(regime, listed=True, alignment=0.0, tech=0.9)[TW] == pytest.approx(0.45)


def test_threshold_enforced_by_and_dates(regime):
    regime.add_rule(
        _rule(threshold_gen=threshold_to_gen(16), enforced_by=frozenset({"netherlands"}))
    )
    assert _blocked(regime, gen=threshold_to_gen(28))[US] == 0.0  # below the threshold: not covered
    covered = _blocked(regime, gen=threshold_to_gen(7), alignment=0.0)
    assert covered[NL] == pytest.approx(covered[US])  # the Netherlands enforces it regardless
    assert (_blocked(regime, gen=threshold_to_gen(7), quarter=9) == 0.0).all()  # not yet binding


def test_a_rule_binds_in_full_from_its_first_quarter(regime):
    """Tools bought ahead are a stock of their own (model.stockpile), not a softer rule."""
    regime.add_rule(_rule(target="listed"))
    assert _blocked(regime, listed=True, quarter=10)[US] == 1.0
    assert _blocked(regime, listed=True, quarter=9)[US] == 0.0


def test_licences_reduce_the_block(regime):
    regime.add_rule(_rule(target="listed", licence=0.4))
    assert _blocked(regime, listed=True)[US] == pytest.approx(0.6)
    regime.relax("chips_advanced", "any", 100.0)
    assert _blocked(regime, listed=True)[US] == 0.0


def _reference_blocked(regime, item, listed, gen, quarter, compliance, us_technology):
    """Rule by rule, buyer by buyer: the definition that the regime's cached tables implement."""
    leakage = regime.model.p["controls.leakage_pct"] / 100.0
    g = np.atleast_1d(np.asarray(gen, dtype=float))
    open_share = np.ones((g.size, len(ORIGINS)))
    for r in regime.state.rules:
        if (
            r.item != ITEM_INDEX[item]
            or r.effective_q > quarter
            or (r.target == "listed" and not listed)
        ):
            continue
        strength = r.coverage * (1.0 - r.licence)
        if strength <= 0:
            continue
        comp = compliance.copy()
        for c in r.enforced_by:
            comp[ORIGINS.index(c)] = 1.0
        fdp = regime.state.reach * us_technology if r.foreign_direct_product else 0.0
        block = strength * (comp + (1.0 - comp) * fdp)
        if r.target == "all":
            block = block * (1.0 - leakage)
        open_share *= np.where((g >= r.threshold_gen)[:, None], 1.0 - block[None, :], 1.0)
    return 1.0 - open_share


def test_cached_tables_equal_the_rule_by_rule_definition(regime):
    """Random rule sets, buyers and quarters: every query path gives the reference exactly."""
    rng = np.random.default_rng(7)
    items = list(ITEM_INDEX)
    for _ in range(40):
        regime.state.rules.clear()
        regime._version += 1
        regime.state.reach = float(rng.uniform(0.3, 1.0))
        for _ in range(int(rng.integers(0, 12))):
            regime.add_rule(
                _rule(
                    item=int(rng.integers(len(items))),
                    target=str(rng.choice(["all", "listed"])),
                    threshold_gen=float(rng.choice([-np.inf, *rng.uniform(-4, 6, 3).round(1)])),
                    coverage=float(rng.uniform(0, 1)),
                    licence=float(rng.choice([0.0, rng.uniform(0, 1)])),
                    foreign_direct_product=bool(rng.integers(2)),
                    enforced_by=frozenset(
                        rng.choice(
                            ["netherlands", "japan", "taiwan"],
                            int(rng.integers(0, 3)),
                            replace=False,
                        )
                    ),
                    effective_q=int(rng.integers(0, 20)),
                )
            )
        comp = np.concatenate([[1.0], rng.uniform(0, 1, 5), [0.0]])
        us_tech = rng.uniform(0, 1, len(ORIGINS))
        quarter = int(rng.integers(0, 25))
        gens = rng.uniform(-6, 8, 30)
        gens[:5] = [r.threshold_gen for r in regime.state.rules[:5]] + [0.0] * (
            5 - min(5, len(regime.state.rules))
        )
        for item in items:
            for listed in (False, True):
                ref = _reference_blocked(regime, item, listed, gens, quarter, comp, us_tech)
                assert np.array_equal(
                    regime.blocked(item, listed, gens, quarter, comp, us_tech), ref
                )
                index, rows = regime.blocked_rows(item, listed, gens, quarter, comp, us_tech)
                assert np.array_equal(rows[index], ref)
                one = regime.blocked_items([item], listed, gens[7], quarter, comp, us_tech)[0]
                assert np.array_equal(one, ref[7])
