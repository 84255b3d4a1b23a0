"""Random streams: one per mechanism and quarter, all derived from the model's seed.

A run's randomness comes from the model's generator (``Model(rng=SeedSequence)``). Drawing
every mechanism from that one generator in sequence would make the draws of one mechanism
depend on how many draws another made before it: a scenario that adds a few entrants
would shift next quarter's demand shock and every ally's decision noise, and a paired
scenario difference (common random numbers) would be mostly noise. So each mechanism gets
its own stream for each quarter, a child of the run's seed keyed by (mechanism, quarter):
the same replicate draws the same demand cycle, ally noise and breakthroughs in every
scenario, whatever else differs.

A stream is the generator ``np.random.default_rng(SeedSequence(entropy, spawn_key=key))``
would give. Building one that way costs about 33 µs (most of it numpy's per-object set-up),
and a run builds about 350; so the seed states of a block of quarters are derived at once
(:func:`pcg64_seed_states`, numpy's SeedSequence hash and PCG64 seeding over arrays of keys)
and set into one reusable generator per mechanism (about 2 µs). The derivation is checked
against numpy's own on the first block of every model: where they differ (an entropy numpy
coerces otherwise, a future numpy), the streams are built numpy's way.
"""

from __future__ import annotations

import numpy as np

#: The mechanisms that draw random numbers, in a fixed order (the order is part of the key).
STREAMS: tuple[str, ...] = ("demand", "allies", "technology", "firms", "events")

#: Quarters whose seed states are derived together (a run has 88).
BLOCK_QUARTERS = 128

# numpy.random.SeedSequence's hash constants (O'Neill's seed_seq_fe) and PCG64's multiplier.
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_MULT_L, _MIX_MULT_R = 0xCA01F9DD, 0x4973F715
_XSHIFT, _MASK32, _POOL_SIZE = 16, 0xFFFFFFFF, 4
_WORD_BITS, _HALF_BITS = 32, 64  # a hash word; a uint64 half of a 128-bit PCG64 value
_STATE_WORDS = 8  # generate_state(4, uint64): four 64-bit words as eight 32-bit ones
_PCG_MULT = (2549297995355413924 << _HALF_BITS) + 4865540595714422341
_MASK128 = (1 << (2 * _HALF_BITS)) - 1


def _words(value) -> list[int]:
    """A non-negative int, or a sequence of them, as little-endian 32-bit words.

    As numpy's SeedSequence coerces its entropy and each spawn key element: an int is at
    least one word.
    """
    if isinstance(value, (int, np.integer)):
        value = int(value)
        if value < 0:
            raise ValueError("seed entropy must be non-negative")
        out = [value & _MASK32]
        value >>= _WORD_BITS
        while value:
            out.append(value & _MASK32)
            value >>= _WORD_BITS
        return out
    return [w for v in value for w in _words(v)]


class _Hash:
    """SeedSequence's multiplicative hash, applied to arrays (one key per element)."""

    def __init__(self, init: int, mult: int):
        self.const, self.mult = init, mult

    def __call__(self, value: np.ndarray) -> np.ndarray:
        value = value ^ np.uint32(self.const)
        self.const = (self.const * self.mult) & _MASK32
        value = value * np.uint32(self.const)
        return value ^ (value >> np.uint32(_XSHIFT))


def _mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    result = np.uint32(_MIX_MULT_L) * x - np.uint32(_MIX_MULT_R) * y
    return result ^ (result >> np.uint32(_XSHIFT))


def pcg64_seed_states(entropy, keys: np.ndarray) -> list[tuple[int, int]]:
    """PCG64 ``(state, inc)`` of ``default_rng(SeedSequence(entropy, spawn_key=k))`` per key.

    Args:
        entropy: the root SeedSequence's entropy (int or sequence of ints).
        keys: (K, L) spawn keys whose elements are all below 2**32 (one word each).

    Returns:
        One ``(state, inc)`` pair per key, as ``PCG64.state["state"]`` gives them.
    """
    run = _words(entropy)
    if keys.shape[1] and len(run) < _POOL_SIZE:
        run = run + [0] * (_POOL_SIZE - len(run))
    k = keys.shape[0]
    words = np.concatenate(
        [np.tile(np.array(run, dtype=np.uint32), (k, 1)), keys.astype(np.uint32)], axis=1
    )
    n_words = words.shape[1]
    hashmix = _Hash(_INIT_A, _MULT_A)
    pool = [
        hashmix(words[:, i] if i < n_words else np.zeros(k, dtype=np.uint32))
        for i in range(_POOL_SIZE)
    ]
    for src in range(_POOL_SIZE):
        for dst in range(_POOL_SIZE):
            if src != dst:
                pool[dst] = _mix(pool[dst], hashmix(pool[src]))
    for src in range(_POOL_SIZE, n_words):
        for dst in range(_POOL_SIZE):
            pool[dst] = _mix(pool[dst], hashmix(words[:, src]))
    # generate_state(4, uint64): eight 32-bit words cycling over the pool.
    out_hash = _Hash(_INIT_B, _MULT_B)
    state = np.stack([out_hash(pool[i % _POOL_SIZE]) for i in range(_STATE_WORDS)], axis=1)
    u64 = state[:, 0::2].astype(np.uint64) | (
        state[:, 1::2].astype(np.uint64) << np.uint64(_WORD_BITS)
    )
    seeds = []
    for s0, s1, i0, i1 in u64.tolist():
        initstate, initseq = (s0 << _HALF_BITS) | s1, (i0 << _HALF_BITS) | i1
        inc = ((initseq << 1) | 1) & _MASK128
        st = (0 * _PCG_MULT + inc) & _MASK128
        st = ((st + initstate) * _PCG_MULT + inc) & _MASK128
        seeds.append((st, inc))
    return seeds


def _numpy_stream(entropy, key: tuple) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=key))


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
        self._seeds: dict[tuple[int, int], tuple[int, int]] = {}
        self._generators: dict[str, np.random.Generator] = {}
        self._derived: bool | None = None  # whether the array derivation matches numpy's

    def get(self, name: str, quarter: int) -> np.random.Generator:
        """The generator of mechanism ``name`` for ``quarter`` (the same object all quarter).

        Its draws are those of ``default_rng(SeedSequence(entropy, spawn_key=key + (index
        of name, quarter)))``; the object is reused from quarter to quarter, so a caller
        must not keep it past the quarter.
        """
        if quarter != self._quarter:
            self._quarter, self._open = quarter, {}
        gen = self._open.get(name)
        if gen is None:
            gen = self._open[name] = self._fresh(STREAMS.index(name), quarter, name)
        return gen

    def _fresh(self, index: int, quarter: int, name: str) -> np.random.Generator:
        seed = self._seeds.get((index, quarter))
        if seed is None and self._derived is not False:
            self._derive(quarter)
            seed = self._seeds.get((index, quarter))
        if seed is None:
            return _numpy_stream(self._entropy, (*self._key, index, quarter))
        gen = self._generators.get(name)
        if gen is None:
            gen = self._generators[name] = np.random.Generator(np.random.PCG64(0))
        gen.bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {"state": seed[0], "inc": seed[1]},
            "has_uint32": 0,
            "uinteger": 0,
        }
        return gen

    def _derive(self, quarter: int) -> None:
        """Seed states of every stream for ``BLOCK_QUARTERS`` quarters from ``quarter``."""
        quarters = range(quarter, quarter + BLOCK_QUARTERS)
        pairs = [(i, q) for i in range(len(STREAMS)) for q in quarters]
        if any(not 0 <= v <= _MASK32 for v in (*self._key, quarter, quarters[-1])):
            self._derived = False
            return
        keys = np.array([(*self._key, i, q) for i, q in pairs], dtype=np.int64)
        seeds = pcg64_seed_states(self._entropy, keys)
        if self._derived is None:
            check = _numpy_stream(self._entropy, (*self._key, 0, quarter)).bit_generator.state
            self._derived = (check["state"]["state"], check["state"]["inc"]) == seeds[0]
            if not self._derived:
                return
        self._seeds.update(zip(pairs, seeds, strict=True))
