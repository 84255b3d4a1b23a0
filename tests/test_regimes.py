"""Export-control rules: who complies, leakage, reach, thresholds and stockpiles."""

from __future__ import annotations

import numpy as np
import pytest

from model.model import DecouplingModel
from model.regimes import ORIGINS, ControlRule, ExportControlRegime, threshold_to_gen
from model.scenario import Scenario

US, NL, TW, OTHER = (ORIGINS.index(c) for c in ("united_states", "netherlands", "taiwan", "other"))


@pytest.fixture
def regime():
    model = DecouplingModel(Scenario(name="empty", question="q", start="2014Q1", end="2014Q4"), rng=1)
    return ExportControlRegime(model, "test")


def _rule(**kw):
    base = dict(item=1, target="all", threshold_gen=-np.inf, coverage=1.0, licence=0.0, foreign_direct_product=False, enforced_by=frozenset(), effective_q=10)
    base.update(kw)
    return ControlRule(**base)


def _blocked(regime, listed=False, gen=0.0, quarter=10, alignment=0.5, tech=0.9, expansion=False):
    comp = np.array([1.0] + [alignment] * 5 + [0.0])
    us_tech = np.full(len(ORIGINS), tech)
    return regime.blocked("chips_advanced", listed, gen, quarter, comp, us_tech, for_expansion=expansion)[0]


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
    regime.add_rule(_rule(threshold_gen=threshold_to_gen(16), enforced_by=frozenset({"netherlands"})))
    assert _blocked(regime, gen=threshold_to_gen(28))[US] == 0.0  # below the threshold: not covered
    covered = _blocked(regime, gen=threshold_to_gen(7), alignment=0.0)
    assert covered[NL] == pytest.approx(covered[US])  # the Netherlands enforces it regardless
    assert (_blocked(regime, gen=threshold_to_gen(7), quarter=9) == 0.0).all()  # not yet binding


def test_stockpiles_soften_rules_for_new_capacity_only(regime):
    regime.add_rule(_rule(target="listed"))
    quarters = regime.model.p["controls.stockpile_quarters"]
    assert _blocked(regime, listed=True, quarter=10, expansion=True)[US] == 0.0
    assert _blocked(regime, listed=True, quarter=10 + quarters // 2, expansion=True)[US] == pytest.approx(0.5)
    assert _blocked(regime, listed=True, quarter=10 + quarters, expansion=True)[US] == 1.0
    assert _blocked(regime, listed=True, quarter=10)[US] == 1.0


def test_licences_reduce_the_block(regime):
    regime.add_rule(_rule(target="listed", licence=0.4))
    assert _blocked(regime, listed=True)[US] == pytest.approx(0.6)
    regime.relax("chips_advanced", "any", 100.0)
    assert _blocked(regime, listed=True)[US] == 0.0
