"""Random streams: one per mechanism and quarter, all derived from the model's seed.

A run's randomness comes from the model's generator (``Model(rng=SeedSequence)``). Drawing
every mechanism from that one generator in sequence would make the draws of one mechanism
depend on how many draws another made before it: a scenario that adds a few entrants
would shift next quarter's demand shock and every ally's decision noise, and a paired
scenario difference (common random numbers) would be mostly noise. So each mechanism gets
its own stream for each quarter, a child of the run's seed keyed by (mechanism, quarter):
the same replicate draws the same demand cycle, ally noise and breakthroughs in every
scenario, whatever else differs.
"""

from __future__ import annotations

import numpy as np

#: The mechanisms that draw random numbers, in a fixed order (the order is part of the key).
STREAMS: tuple[str, ...] = ("demand", "allies", "technology", "firms", "events")


class RandomStreams:
    """Per-quarter generators for each mechanism, children of the model generator's seed.

    Args:
        rng: the model's ``numpy.random.Generator`` (its seed sequence is the root).
    """

    def __init__(self, rng: np.random.Generator):
        seq = rng.bit_generator.seed_seq
        self._entropy = seq.entropy
        self._key = tuple(seq.spawn_key)
        self._quarter: int | None = None
        self._open: dict[str, np.random.Generator] = {}

    def get(self, name: str, quarter: int) -> np.random.Generator:
        """The generator of mechanism ``name`` for ``quarter`` (the same object all quarter)."""
        if quarter != self._quarter:
            self._quarter, self._open = quarter, {}
        gen = self._open.get(name)
        if gen is None:
            key = self._key + (STREAMS.index(name), quarter)
            gen = np.random.default_rng(np.random.SeedSequence(self._entropy, spawn_key=key))
            self._open[name] = gen
        return gen
