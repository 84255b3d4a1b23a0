"""Chinese firms: the firm arrays, their ids across compaction, swarm cohorts, best generations."""

from __future__ import annotations

import numpy as np
import pytest

from model import demography, technology
from model.firms import FIRM_LINE_INDEX, FIRM_LINES, FirmPopulation, SwarmCohort, in_lines
from model.model import DecouplingModel
from model.run import replicate_seed
from model.scenario import load_scenario

FOUNDRY, MEMORY, DESIGN = (FIRM_LINE_INDEX[x] for x in ("foundry", "memory", "design"))


def test_compaction_drops_dead_rows_and_keeps_every_firm_findable_by_id():
    pop = FirmPopulation(16)
    rows = pop.add(np.arange(40) % 3, np.arange(40, dtype=float), 1.0, 1.0, quarter=5)
    ids = pop.ids[rows].copy()
    dead = ids[::3]
    pop.alive[pop.row_of[dead]] = False
    assert pop.compact() is True
    assert pop.n == 40 - dead.size
    assert (pop.row_of[dead] == -1).all()
    live = np.setdiff1d(ids, dead)
    # each surviving firm kept its own numbers (capacity was set to its creation index)
    assert np.array_equal(pop.total_capacity()[pop.row_of[live]], live.astype(float))
    assert np.array_equal(pop.ids[pop.row_of[live]], live)
    # few dead rows: not worth a copy yet
    pop.alive[pop.row_of[live[:2]]] = False
    assert pop.compact() is False


def test_ids_keep_growing_after_compaction():
    pop = FirmPopulation(16)
    pop.add(np.zeros(10), 1.0, 0.0, 1.0, quarter=0)
    pop.alive[:5] = False
    pop.compact()
    new = pop.add(np.zeros(3), 1.0, 0.0, 1.0, quarter=1)
    assert pop.ids[new].tolist() == [10, 11, 12]
    assert pop.row_of[[10, 11, 12]].tolist() == new.tolist()


def test_swarm_cohorts_count_exactly_their_live_members():
    model = DecouplingModel(
        load_scenario("scenarios/baseline.yaml"), rng=replicate_seed(20211013, 3)
    )
    model.run_for(30)
    f = model.firms
    n = f.n
    swarm = f.alive[:n] & ~f.champion[:n]
    cohorts = model.swarm_cohorts
    assert set(model.agents_by_type[SwarmCohort]) == set(cohorts.values())
    assert sum(c.survivors for c in cohorts.values()) == int(swarm.sum())
    for index, cohort in cohorts.items():
        members = np.nonzero(swarm & (f.cohort[:n] == index))[0]
        assert cohort.survivors == members.size > 0
        assert np.array_equal(np.sort(cohort.rows), members)
        assert 0 < cohort.survival_share <= 1
    assert model.swarm_cohorts_created[0] == model.start_q  # the initial swarm is cohort 0
    # a cohort leaves the model with its last member
    last = cohorts[max(cohorts)]
    last.lose(last.survivors - 1)
    assert last in model.agents_by_type[SwarmCohort]
    last.lose(1)
    assert last not in model.agents_by_type[SwarmCohort]
    assert last.cohort not in cohorts


def test_line_best_gen_counts_firms_with_a_real_share_of_their_line():
    pop = FirmPopulation(16)
    # foundry: a big firm at gen 2, a tiny one at gen 6 (below 5% of the line), a champion at gen 4
    pop.add(
        [FOUNDRY, FOUNDRY, FOUNDRY],
        [10.0, 0.1, 0.01],
        [2.0, 6.0, 4.0],
        1.0,
        quarter=0,
        champion=np.array([False, False, True]),
    )
    # memory: a fraud at gen 9 does not count
    pop.add([MEMORY, MEMORY], [1.0, 5.0], [1.0, 9.0], 1.0, quarter=0, fraud=np.array([False, True]))
    best = technology.line_best_gen(pop, min_share=0.05)
    assert best[FOUNDRY] == 4.0
    assert best[MEMORY] == 1.0
    assert best[DESIGN] == technology.NO_FIRM_GEN  # no firm in the line
    # with a 0.5% threshold the tiny gen-6 firm counts too
    assert technology.line_best_gen(pop, min_share=0.005)[FOUNDRY] == 6.0


def test_empty_lines_sit_behind_their_frontier():
    best = np.array([2.0, technology.NO_FIRM_GEN, -1.0])
    technology.fill_empty_lines(best, np.array([5.0, 5.0, 3.0]), 4.0)
    assert best.tolist() == [2.0, 1.0, -1.0]


@pytest.mark.parametrize("lines", [(FOUNDRY,), (FOUNDRY, MEMORY), ()])
def test_in_lines_matches_isin(lines):
    line = np.array([0, 1, 2, 3, 0, 8, 1], dtype=np.int8)
    assert np.array_equal(in_lines(line, lines), np.isin(line, lines))


def test_line_index_follows_rows_added_and_dropped():
    pop = FirmPopulation(4)
    pop.add(np.array([0, 1, 2, 1]), 1.0, 0.0, 1.0, quarter=0)
    assert pop.line_index().dtype == np.intp
    assert pop.line_index().tolist() == [0, 1, 2, 1]
    pop.add(np.array([3, 3]), 1.0, 0.0, 1.0, quarter=1)
    assert pop.line_index().tolist() == [0, 1, 2, 1, 3, 3]
    pop.alive[[1, 3, 4]] = False
    assert pop.compact() is True
    assert pop.line_index().tolist() == [0, 2, 3]


def test_swarm_lines_are_numpys_choice_from_the_same_state():
    """The CDF draw in swarm_lines gives exactly the lines ``Generator.choice`` would."""
    model = DecouplingModel(load_scenario("scenarios/baseline.yaml"), rng=replicate_seed(7, 0))
    state = model.stream("firms").bit_generator.state
    lines = demography.swarm_lines(model, 5000)
    rng = model.stream("firms")
    rng.bit_generator.state = state
    expected = rng.choice(len(FIRM_LINES), size=5000, p=model.swarm_line_mix)
    assert lines.dtype == np.int8
    assert np.array_equal(lines, expected)
    assert set(np.unique(lines).tolist()) <= set(range(len(FIRM_LINES)))
