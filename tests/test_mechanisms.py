"""Each mechanism matters: switching it off moves the outputs the way the seeds say."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_frame, yearly_median

from model.calendar import quarter_ordinal
from model.model import DecouplingModel
from model.run import replicate_seed, simulate
from model.scenario import AllyAlignmentEvent, ControlEvent, ListEntityEvent, Scenario
from model.taxonomy import ALLIES

SEEDS = 8
US_CONTROL_ACTIONS = ("control", "list_entity", "extraterritorial_reach")


def _without(scenario: Scenario, actions) -> Scenario:
    return scenario.model_copy(
        update={"events": [e for e in scenario.events if e.action not in actions]}
    )


def _allies_forced(scenario: Scenario, value: float) -> Scenario:
    events = [e for e in scenario.events if e.action != "ally_alignment"]
    events += [
        AllyAlignmentEvent(at="2014Q1", action="ally_alignment", ally=a, alignment=value)
        for a in ALLIES
    ]
    return scenario.model_copy(
        update={"events": sorted(events, key=lambda e: quarter_ordinal(e.at))}
    )


@pytest.fixture(scope="module")
def baseline_8(baseline):
    return run_frame(baseline, SEEDS)


def test_us_controls_push_flagship_to_domestic_chips(baseline, baseline_8):
    no_controls = run_frame(_without(baseline, US_CONTROL_ACTIONS), SEEDS)
    with_controls = yearly_median(baseline_8, "flagship_domestic_share_pct", 2021)
    without = yearly_median(no_controls, "flagship_domestic_share_pct", 2021)
    assert without < with_controls - 20.0, (without, with_controls)


def test_state_funding_raises_self_sufficiency(baseline, baseline_8):
    unfunded = _without(baseline, ("funding_program",))
    # No state money at all: no programmes, no central subsidy, no decision-rule response.
    runs = run_frame(
        unfunded,
        SEEDS,
        sample={"china.central_subsidy_usd_bn_per_year_2020": 0.0, "china.response_strength": 0.0},
    )
    assert runs["state_funding_usd_bn"].sum() == 0.0
    base = baseline_8[baseline_8["year"] == 2030].groupby("seed")["self_sufficiency_pct"].mean()
    low = runs[runs["year"] == 2030].groupby("seed")["self_sufficiency_pct"].mean()
    # Paired by seed (common random numbers).
    assert float((base - low).median()) >= 3.0


def test_allied_alignment_changes_chinas_best_node(baseline):
    aligned = run_frame(_allies_forced(baseline, 1.0), SEEDS)
    defected = run_frame(_allies_forced(baseline, 0.0), SEEDS)
    node_aligned = yearly_median(aligned, "china_best_node_nm", 2030)
    node_defected = yearly_median(defected, "china_best_node_nm", 2030)
    assert node_defected < node_aligned - 1.0, (node_defected, node_aligned)


def _step_with_ledger(scenario, seed=0):
    model = DecouplingModel(scenario, rng=replicate_seed(7, seed))
    for _ in range(model.end_q - model.start_q + 1):
        model.step()
        yield model


def test_controlled_item_never_reaches_listed_entity_while_binding(baseline):
    # Flagship listed in 2019Q2; US advanced chips denied to listed entities only from 2021Q1.
    events = [e for e in baseline.events if e.action not in US_CONTROL_ACTIONS]
    events += [
        ListEntityEvent(at="2019Q2", action="list_entity", entity="flagship"),
        ControlEvent(at="2021Q1", action="control", item="chips_advanced", target="listed"),
    ]
    scenario = baseline.model_copy(
        update={"events": sorted(events, key=lambda e: quarter_ordinal(e.at)), "end": "2023Q4"}
    )
    delivered_before, delivered_while = [], []
    for model in _step_with_ledger(scenario):
        value = model.ledger.get(("chips_advanced", True, "united_states"))
        if model.quarter < quarter_ordinal("2019Q2"):
            assert value is None  # nobody is listed yet
        elif model.quarter < quarter_ordinal("2021Q1"):
            delivered_before.append(value)
        else:
            delivered_while.append(value)
    assert min(delivered_before) > 0.0
    assert delivered_while and all(v == 0.0 for v in delivered_while)


def test_same_seed_same_trajectory_and_different_seeds_differ(baseline):
    a = simulate(baseline, 3)
    b = simulate(baseline, 3)
    c = simulate(baseline, 4)
    for column in a:
        np.testing.assert_array_equal(a[column], b[column])
    assert not np.array_equal(a["self_sufficiency_pct"], c["self_sufficiency_pct"])
    assert not np.array_equal(a["firms_active"], c["firms_active"])


def test_champion_listed_before_it_enters_is_listed_on_entry(baseline):
    events = [e for e in baseline.events if e.at <= "2017Q4"]
    events.append(ListEntityEvent(at="2015Q1", action="list_entity", entity="memory_nand"))
    scenario = baseline.model_copy(
        update={"events": sorted(events, key=lambda e: quarter_ordinal(e.at)), "end": "2017Q4"}
    )
    model = DecouplingModel(scenario, rng=replicate_seed(7, 0))
    model.run_for(12)  # to 2016Q4; the NAND champion enters in 2016Q3
    assert "memory_nand" in model.champions
    assert model.champions["memory_nand"].entity_listed
    assert not model.champions["memory_dram"].entity_listed
