"""The per-mechanism random streams are numpy's, however they are built (model/streams.py)."""

import numpy as np
import pytest

from model import streams
from model.streams import STREAMS, RandomStreams, pcg64_seed_states


def _numpy_state(entropy, key):
    st = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=key)).bit_generator.state
    return st["state"]["state"], st["state"]["inc"]


@pytest.mark.parametrize("entropy", [0, 1, 20211013, 2**40 + 5, 2**128 - 1, [1, 2, 3], [2**33, 7]])
@pytest.mark.parametrize("key", [(0,), (3, 0, 8056), (5, 4, 2**32 - 1, 2)])
def test_seed_states_are_numpys(entropy, key):
    assert pcg64_seed_states(entropy, np.array([key])) == [_numpy_state(entropy, key)]


def test_streams_draw_what_numpy_seeding_draws():
    root = np.random.SeedSequence(20211013, spawn_key=(3,))
    rs = RandomStreams(np.random.default_rng(root))
    # Past one block of quarters, so the second block is derived too.
    for quarter in range(8056, 8056 + streams.BLOCK_QUARTERS + 10, 7):
        for index, name in enumerate(STREAMS):
            expected = np.random.default_rng(
                np.random.SeedSequence(20211013, spawn_key=(3, index, quarter))
            ).normal(size=4)
            assert np.array_equal(rs.get(name, quarter).normal(size=4), expected)
    assert rs._derived is True


def test_a_stream_is_one_object_all_quarter():
    rs = RandomStreams(np.random.default_rng(np.random.SeedSequence(7, spawn_key=(1,))))
    first = rs.get("demand", 8056).random()
    again = rs.get("demand", 8056).random()  # continues the quarter's stream
    gen = np.random.default_rng(np.random.SeedSequence(7, spawn_key=(1, 0, 8056)))
    assert [first, again] == gen.random(2).tolist()


def test_a_derivation_that_disagrees_with_numpy_falls_back_to_numpy(monkeypatch):
    monkeypatch.setattr(
        streams, "pcg64_seed_states", lambda entropy, keys: [(1, 3)] * keys.shape[0]
    )
    rs = RandomStreams(np.random.default_rng(np.random.SeedSequence(9, spawn_key=(2,))))
    got = rs.get("firms", 8100).random(3)
    gen = np.random.default_rng(np.random.SeedSequence(9, spawn_key=(2, 3, 8100)))
    assert np.array_equal(got, gen.random(3))
    assert rs._derived is False
