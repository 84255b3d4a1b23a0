"""A finished batch extended with more seeds or Sobol' samples equals one run at that size.

Replicate *i* draws from child *i* of the root ``SeedSequence`` and the first K points of a
scrambled Sobol' design are the same whatever its size, so the runs already stored are kept
and only the new ones are run. A Latin hypercube is drawn anew for each K: its extension is
refused with the reason.
"""

from __future__ import annotations

import pandas as pd
import pytest

from analysis import load, load_manifest
from decouple.cli import main as cli_main
from experiment import store

SCEN = """\
name: short_a
question: test scenario A (short horizon)
start: 2014Q1
end: 2016Q4
uncertain:
  demand.quarterly_shock_sd_pct: {dist: uniform, low: 1.0, high: 3.0}
"""


@pytest.fixture(scope="module")
def scen(tmp_path_factory):
    path = tmp_path_factory.mktemp("scenarios") / "a.yaml"
    path.write_text(SCEN)
    return path


def _args(scen, out, seeds: int, sample: str | None = None) -> list[str]:
    design = ["--sample", sample, "--sample-seed", "5"] if sample else ["--sample", "none"]
    return [
        "batch", str(scen), "--seeds", str(seeds), *design, "--root-entropy", "12",
        "--jobs", "1", "--runs-per-shard", "2", "--out", str(out), "--quiet",
    ]  # fmt: skip


def _cli(args, capsys) -> tuple[int, str]:
    code = cli_main(args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _mtimes(out) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in (out / store.SHARDS).iterdir()}


def test_more_seeds_extend_a_finished_batch(scen, tmp_path, capsys):
    out = tmp_path / "grown"
    assert _cli(_args(scen, out, 3), capsys)[0] == 0
    before = _mtimes(out)
    code, text = _cli(_args(scen, out, 5), capsys)
    assert code == 0, text
    assert (
        f"decouple batch: extending {out}: seeds 3 -> 5 (the runs already stored are kept; only "
        "the new ones are run)" in text
    )
    assert f"resuming {out}: 3 of 5 runs already finished, 2 to run" in text
    assert f"5 runs in {out} (2 run now, 3 already finished)" in text
    after = _mtimes(out)
    assert {name: after[name] for name in before} == before  # nothing stored was rewritten

    scratch = tmp_path / "scratch"
    assert _cli(_args(scen, scratch, 5), capsys)[0] == 0
    pd.testing.assert_frame_equal(load(out), load(scratch))
    m = load_manifest(out)
    assert m["seeds"] == 5 and m["runs"] == {"total": 5, "finished": 5, "failed": 0}
    assert m["resumed"][-1]["extended"] == {"seeds": [3, 5]}
    assert m["resumed"][-1]["finished_before"] == 3

    code, text = _cli(_args(scen, out, 4), capsys)
    assert code == 2
    assert (
        "seeds: 5 in the store, 4 asked for (a batch can be extended with more seeds, not "
        "reduced: choose another --out for fewer)" in text
    )


def test_more_sobol_samples_extend_a_finished_batch(scen, tmp_path, capsys):
    out = tmp_path / "grown"
    assert _cli(_args(scen, out, 1, "sobol:2"), capsys)[0] == 0
    values = load_manifest(out)["sample_values"]
    code, text = _cli(_args(scen, out, 2, "sobol:4"), capsys)
    assert code == 0, text
    assert f"extending {out}: seeds 1 -> 2" in text and f"extending {out}: samples 2 -> 4" in text
    scratch = tmp_path / "scratch"
    assert _cli(_args(scen, scratch, 2, "sobol:4"), capsys)[0] == 0
    pd.testing.assert_frame_equal(load(out), load(scratch))
    m = load_manifest(out)
    assert m["samples"]["n"] == 4 and m["sample_values"][:2] == values
    assert m["sample_values"] == load_manifest(scratch)["sample_values"]
    assert m["resumed"][-1]["extended"] == {"seeds": [1, 2], "samples": [2, 4]}

    code, text = _cli(_args(scen, out, 2, "sobol:2"), capsys)
    assert code == 2
    assert (
        "sample design: sobol:4 in the store, sobol:2 asked for (a batch can be extended with "
        "more samples, not reduced: choose another --out for fewer)" in text
    )


def test_a_latin_hypercube_cannot_be_extended(scen, tmp_path, capsys):
    out = tmp_path / "lhs"
    assert _cli(_args(scen, out, 1, "lhs:2"), capsys)[0] == 0
    before = _mtimes(out)
    code, text = _cli(_args(scen, out, 1, "lhs:3"), capsys)
    assert code == 2
    assert (
        "sample design: lhs:2 in the store, lhs:3 asked for: a Latin hypercube is drawn anew "
        "for each K, so the first 2 points of lhs:3 are not the stored ones and the batch "
        "would not equal one run at lhs:3 from scratch (a sobol design keeps its first points "
        "and can be extended); choose another --out" in text
    )
    assert _mtimes(out) == before
