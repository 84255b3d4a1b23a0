"""Running the model: one scenario with one seed, as columns of the output contract.

This is the boundary between the model and the experiment: the batch engine and
``decouple run`` call :func:`simulate` and never reach into the model's internals.

A run can also be taken in steps (:func:`start`, :func:`run_until`, :func:`results`) and
*branched* (:func:`branch`): a copy of a model part-way through its run goes on as another
scenario. ``experiment.branching`` uses this to simulate once the history that several
scenarios share (see docs/batch.md, "Shared history").
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from .calendar import quarter_ordinal
from .model import DecouplingModel
from .scenario import Scenario

#: Root entropy used when a caller gives none (recorded in every manifest).
DEFAULT_ROOT_ENTROPY = 20211013

#: What a run reads from its scenario: its horizon, its events (with their announcement
#: dates) and its parameters. ``experiment.branching`` compares exactly these to find where
#: two scenarios' runs part, and :func:`branch` re-reads the ones that matter after the
#: quarter of the branch; ``tests/test_branching.py`` checks that ``model/`` reads no other
#: field of a scenario.
SCENARIO_INPUTS = ("start", "end", "events", "parameters")


def replicate_seed(root_entropy: int, replicate: int) -> np.random.SeedSequence:
    """The random stream of replicate ``replicate``: child ``replicate`` of the root.

    Every scenario's replicate *i* gets this same stream (common random numbers), so
    scenario differences for the same replicate are paired comparisons.
    """
    return np.random.SeedSequence(root_entropy, spawn_key=(replicate,))


def start(
    scenario: Scenario,
    seed: int | np.random.SeedSequence,
    parameters: dict[str, Any] | None = None,
    sample: dict[str, Any] | None = None,
) -> DecouplingModel:
    """The model of a run of ``scenario``, built and ready to simulate its first quarter.

    Args: as :func:`simulate`.
    """
    if not isinstance(seed, np.random.SeedSequence):
        seed = replicate_seed(DEFAULT_ROOT_ENTROPY, int(seed))
    params = parameters if parameters is not None else scenario.resolved_parameters(sample)
    return DecouplingModel(scenario, rng=seed, parameters=params)


def next_quarter(model: DecouplingModel) -> int:
    """Ordinal of the quarter ``model`` simulates next (its end + 1 when it has finished)."""
    return model.start_q + model.steps


def run_until(model: DecouplingModel, quarter: int) -> None:
    """Simulate the quarters before ordinal ``quarter`` not simulated yet, up to the end."""
    n_quarters = min(quarter, model.end_q + 1) - next_quarter(model)
    if n_quarters > 0:
        model.run_for(n_quarters)


def results(model: DecouplingModel) -> dict[str, np.ndarray]:
    """The quarters simulated so far as columns (``quarter``, ``year``, every output).

    Raises:
        OutputContractError: as :meth:`model.records.Recorder.columns`.
    """
    return model.recorder.columns()


def branch(model: DecouplingModel, scenario: Scenario) -> DecouplingModel:
    """A copy of ``model`` that goes on as ``scenario`` from its next quarter.

    The copy (``copy.deepcopy``: agents, firm arrays, the random generators' states, the
    quarters recorded so far) reads from ``scenario`` what a run reads after its start: the
    events of the quarters to come, the control rules announced ahead, and the end of the
    horizon. ``model`` itself is left as it was.

    The caller guarantees that a run of ``scenario`` with the same seed would be in exactly
    this state: the same start, parameters and events before the start, and the same events
    and announcements in every quarter simulated so far (``experiment.branching`` computes
    where that holds). Then the copy's results are bit-identical to that run's.

    Raises:
        ValueError: if ``scenario`` starts at another quarter than ``model``.
    """
    if quarter_ordinal(scenario.start) != model.start_q:
        raise ValueError(
            f"cannot branch scenario '{scenario.name}' (start {scenario.start}) from a run "
            f"that started at quarter ordinal {model.start_q}"
        )
    clone = copy.deepcopy(model)
    clone.follow(scenario, next_quarter(clone))
    # The copy's cached control tables are keyed partly by the identity of the original's
    # arrays; forget them (a cache, so the values are unchanged).
    clone.regime.invalidate()
    return clone


def simulate(
    scenario: Scenario,
    seed: int | np.random.SeedSequence,
    parameters: dict[str, Any] | None = None,
    sample: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Run ``scenario`` over its horizon and return its quarterly records as columns.

    Args:
        scenario: the resolved scenario.
        seed: a ``SeedSequence`` (see :func:`replicate_seed`) or a replicate index, which is
            turned into ``replicate_seed(DEFAULT_ROOT_ENTROPY, seed)``.
        parameters: fully resolved parameters (overrides ``scenario`` and ``sample``).
        sample: parameter values drawn for this run (dotted paths), applied on top of the
            scenario's own overrides.

    Returns:
        ``{column: array}`` with ``quarter``, ``year`` and every output column.
    """
    model = start(scenario, seed, parameters, sample)
    run_until(model, model.end_q + 1)
    return results(model)
