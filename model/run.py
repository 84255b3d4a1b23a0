"""Running the model: one scenario with one seed, as columns of the output contract.

This is the boundary between the model and the experiment: the batch engine and
``decouple run`` call :func:`simulate` and never reach into the model's internals.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .model import DecouplingModel
from .scenario import Scenario

#: Root entropy used when a caller gives none (recorded in every manifest).
DEFAULT_ROOT_ENTROPY = 20211013


def replicate_seed(root_entropy: int, replicate: int) -> np.random.SeedSequence:
    """The random stream of replicate ``replicate``: child ``replicate`` of the root.

    Every scenario's replicate *i* gets this same stream (common random numbers), so
    scenario differences for the same replicate are paired comparisons.
    """
    return np.random.SeedSequence(root_entropy, spawn_key=(replicate,))


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
    if not isinstance(seed, np.random.SeedSequence):
        seed = replicate_seed(DEFAULT_ROOT_ENTROPY, int(seed))
    params = parameters if parameters is not None else scenario.resolved_parameters(sample)
    model = DecouplingModel(scenario, rng=seed, parameters=params)
    n_quarters = model.end_q - model.start_q + 1
    model.run_for(n_quarters)
    return model.recorder.columns()
