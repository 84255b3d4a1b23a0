"""Tests of the batch engine (experiment/batch.py and its modules, ``decouple batch``).

The scenarios are small files written to a temporary directory with a short horizon
(2014Q1-2017Q4, about 0.05 s a run), so whole batches run in seconds. What is checked:
the same data whatever the executor (in-process, 2 local processes, a Dask LocalCluster),
exact resume after SIGKILL, failure recording, refusal of a mismatched resume, the seed
scheme (common random numbers) and the sample design.

Note: every worker checks that it runs the same model code as the batch (a fingerprint of
model/*.py and model/*.yaml). Editing those files while these tests run makes the batches
that start worker processes fail with ``ModelMismatch``: rerun the tests.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import load, load_manifest
from decouple.cli import main as cli_main
from experiment import batch, executors, provenance
from experiment.batch import BatchError, finished_runs, run_batch
from model.run import replicate_seed, simulate
from model.scenario import load_scenario

ROOT = 4242
SAMPLE_SEED = 7
QUARTERS = 16  # 2014Q1-2017Q4

SCEN_A = """\
name: short_a
question: test scenario A (short horizon)
start: 2014Q1
end: 2017Q4
uncertain:
  demand.quarterly_shock_sd_pct: {dist: uniform, low: 1.0, high: 3.0}
"""
SCEN_B = """\
name: short_b
question: test scenario B (a different demand share)
extends: a.yaml
parameters:
  demand.china_share_of_world_pct: 35
uncertain:
  frontier.compound_pace_ratio: {dist: triangular, low: 0.2, high: 0.6, mode: 0.4}
"""
# Same model as A under another name: a paired check of common random numbers.
SCEN_A_TWIN = SCEN_A.replace("name: short_a", "name: short_a_twin")


@pytest.fixture(scope="module")
def scen(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("scenarios")
    (d / "a.yaml").write_text(SCEN_A)
    (d / "b.yaml").write_text(SCEN_B)
    (d / "a_twin.yaml").write_text(SCEN_A_TWIN)
    return d


def _files(scen: Path) -> list[str]:
    return [str(scen / "a.yaml"), str(scen / "b.yaml")]


BATCH = {
    "seeds": 4,
    "sample": "lhs:3",
    "root_entropy": ROOT,
    "sample_seed": SAMPLE_SEED,
    "progress": False,
}


@pytest.fixture(scope="module")
def reference(scen, tmp_path_factory) -> Path:
    """An uninterrupted in-process batch: 2 scenarios x 4 seeds x 3 samples = 24 runs."""
    out = tmp_path_factory.mktemp("ref") / "store"
    return run_batch(_files(scen), jobs=1, out=out, runs_per_shard=3, **BATCH)


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli_main(["batch", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _cli_args(scen: Path, out: Path, *extra: str) -> list[str]:
    return [
        *_files(scen),
        "--seeds", "4", "--sample", "lhs:3",
        "--root-entropy", str(ROOT), "--sample-seed", str(SAMPLE_SEED),
        "--out", str(out), "--quiet", *extra,
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------
# The store and its contents
# ---------------------------------------------------------------------------------------


def test_reference_store_layout_and_contents(reference):
    df = load(reference)
    assert len(df) == 2 * 4 * 3 * QUARTERS
    assert sorted(df["scenario"].unique()) == ["short_a", "short_b"]
    assert sorted(df["sample"].unique()) == [0, 1, 2]
    assert sorted(df["seed"].unique()) == [0, 1, 2, 3]
    assert df.groupby(["scenario", "sample", "seed"]).size().eq(QUARTERS).all()
    m = load_manifest(reference)
    assert m["kind"] == "batch" and m["finished"] not in (None, "unknown")
    assert m["root_entropy"] == ROOT and m["seeds"] == 4
    assert m["samples"]["method"] == "lhs" and m["samples"]["n"] == 3
    assert m["samples"]["seed"] == SAMPLE_SEED
    assert m["samples"]["paths"] == [
        "demand.quarterly_shock_sd_pct",
        "frontier.compound_pace_ratio",
    ]
    assert len(m["sample_values"]) == 3
    assert m["runs"] == {"total": 24, "finished": 24, "failed": 0}
    assert set(m["scenarios"]) == {"short_a", "short_b"}
    for entry in m["scenarios"].values():
        assert (reference / entry["resolved_file"]).is_file()
        assert entry["hash"] == load_scenario(entry["file"]).hash
    assert m["git"]["commit"] and "mesa" in m["packages"] and m["model_fingerprint"]
    assert not (reference / "failures.jsonl").exists()
    # shards are named after their runs; no temporary file is left behind
    names = sorted(p.name for p in (reference / "shards").iterdir())
    assert "short_a-k00000-r00000-00002.parquet" in names
    assert "short_a-k00000-r00003-00003.parquet" in names
    assert all(n.endswith(".parquet") and not n.startswith(".") for n in names)
    assert len(finished_runs(reference)) == 24
    # filters of analysis.load work on batch stores
    one = load(reference, scenarios="short_b", columns=["self_sufficiency_pct"])
    assert set(one["scenario"]) == {"short_b"} and len(one) == 4 * 3 * QUARTERS


def test_each_run_is_simulate_with_its_seed_and_sample(reference, scen):
    """Run (scenario, i, k) equals simulate(scenario, replicate_seed(root, i), sample k)."""
    m = load_manifest(reference)
    df = load(reference, scenarios="short_b")
    sc = load_scenario(scen / "b.yaml")
    for seed, k in ((0, 0), (3, 2)):
        cols = simulate(sc, replicate_seed(ROOT, seed), sample=m["sample_values"][k])
        got = df[(df["seed"] == seed) & (df["sample"] == k)]
        np.testing.assert_array_equal(
            got["self_sufficiency_pct"].to_numpy(), cols["self_sufficiency_pct"]
        )
        assert got["quarter"].tolist() == list(cols["quarter"])


def test_sample_k_is_the_same_vector_in_every_scenario(reference):
    """Both scenarios' runs of sample k use all sampled paths (the manifest's values)."""
    m = load_manifest(reference)
    values = m["sample_values"]
    lo, hi = 1.0, 3.0
    shock = [v["demand.quarterly_shock_sd_pct"] for v in values]
    assert all(lo <= s <= hi for s in shock)
    # Latin hypercube: one point in each third of the range
    assert sorted(int((s - lo) / (hi - lo) * 3) for s in shock) == [0, 1, 2]
    # the path declared only by short_b changes short_a's runs too (applied everywhere):
    # two samples differ in both paths, so short_a's sample 0 and 1 differ
    df = load(reference, scenarios="short_a", columns="self_sufficiency_pct")
    s0 = df[(df["sample"] == 0) & (df["seed"] == 0)]["self_sufficiency_pct"].to_numpy()
    s1 = df[(df["sample"] == 1) & (df["seed"] == 0)]["self_sufficiency_pct"].to_numpy()
    assert not np.array_equal(s0, s1)


# ---------------------------------------------------------------------------------------
# Executors give identical data
# ---------------------------------------------------------------------------------------


def test_one_job_two_jobs_and_dask_give_identical_data(reference, scen, tmp_path):
    expected = load(reference)
    two = run_batch(_files(scen), jobs=2, out=tmp_path / "two", runs_per_shard=2, **BATCH)
    pd.testing.assert_frame_equal(load(two), expected)

    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        via_dask = run_batch(
            _files(scen), scheduler=cluster.scheduler_address, out=tmp_path / "dask", **BATCH
        )
    pd.testing.assert_frame_equal(load(via_dask), expected)
    assert load_manifest(via_dask)["runs"]["failed"] == 0


# ---------------------------------------------------------------------------------------
# Resume
# ---------------------------------------------------------------------------------------


def test_sigkill_then_resume_gives_the_uninterrupted_data(scen, tmp_path):
    seeds = 10  # 60 runs: long enough to be killed half-way
    uninterrupted = run_batch(
        _files(scen), jobs=1, out=tmp_path / "whole", **{**BATCH, "seeds": seeds}
    )
    out = tmp_path / "killed"
    args = [
        sys.executable, "-m", "decouple.cli", "batch",
        *[a if a != "4" else str(seeds) for a in _cli_args(scen, out, "--jobs", "2")],
    ]  # fmt: skip
    proc = subprocess.Popen(
        [*args, "--runs-per-shard", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    shards = out / "shards"
    wanted = random.randint(2, 20)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if shards.is_dir() and len(list(shards.glob("*.parquet"))) >= wanted:
            break
        time.sleep(0.005)
    time.sleep(random.uniform(0, 0.1))
    assert proc.poll() is None, (
        "the batch ended before it was killed: " + proc.stderr.read().decode()
    )
    os.killpg(proc.pid, signal.SIGKILL)  # the batch and its workers, as kill -9 of the job
    proc.wait()
    proc.stderr.close()
    done = len(finished_runs(out))
    assert 0 < done < 60
    assert json.loads((out / "manifest.json").read_text())["finished"] is None

    resumed = subprocess.run(args, capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{done} of 60 runs already finished" in resumed.stderr
    pd.testing.assert_frame_equal(load(out), load(uninterrupted))
    assert not list(shards.glob(".*"))  # no temporary file left
    m = load_manifest(out)
    assert m["finished"] is not None and m["runs"]["finished"] == 60
    assert len(m["resumed"]) == 1 and m["resumed"][0]["finished_before"] == done


def test_finished_batch_resumes_to_a_no_op(reference, scen, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in (reference / "shards").iterdir()}
    code, out, err = _cli(_cli_args(scen, reference, "--jobs", "1"), capsys)
    assert code == 0, err
    assert "0 run now, 24 already finished" in out
    assert {p.name: p.stat().st_mtime_ns for p in (reference / "shards").iterdir()} == before


def test_resume_adopts_the_stores_root_entropy_and_sample_seed(reference, scen, tmp_path, capsys):
    """The same command without --root-entropy resumes a store started with fresh entropy."""
    out = tmp_path / "fresh"
    run_batch(_files(scen), seeds=2, sample="none", out=out, progress=False)
    m = load_manifest(out)
    assert isinstance(m["root_entropy"], int) and m["root_entropy"] > 2**64  # fresh 128-bit
    # without --sample, a resume keeps the store's design (here: none), not the default
    code, _, err = _cli(
        [*_files(scen), "--seeds", "2", "--out", str(out), "--jobs", "1", "--quiet"], capsys
    )
    assert code == 0, err
    assert load_manifest(out)["root_entropy"] == m["root_entropy"]
    assert load_manifest(out)["samples"]["method"] == "none"


def test_mismatched_resume_is_refused(reference, scen, tmp_path, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in (reference / "shards").iterdir()}
    args = _cli_args(scen, reference, "--jobs", "1")

    # more seeds extend a batch (test_extension.py); fewer are refused
    code, _, err = _cli([a if a != "4" else "3" for a in args], capsys)
    assert code == 2 and "Traceback" not in err
    assert (
        "seeds: 4 in the store, 3 asked for (a batch can be extended with more seeds, not "
        "reduced: choose another --out for fewer)" in err
    )

    code, _, err = _cli([a if a != str(ROOT) else "99" for a in args], capsys)
    assert code == 2 and f"root entropy: {ROOT} in the store, 99 asked for" in err

    code, _, err = _cli([a if a != "lhs:3" else "sobol:4" for a in args], capsys)
    assert code == 2 and "sample design: lhs:3 in the store, sobol:4 asked for" in err

    code, _, err = _cli([*args, "--set", "demand.china_share_of_world_pct=33"], capsys)
    assert code == 2 and "scenario 'short_a' has changed" in err

    code, _, err = _cli([a for a in args if not a.endswith("b.yaml")], capsys)
    assert code == 2 and "scenario 'short_b' is in the store but not asked for" in err

    changed = tmp_path / "changed"
    changed.mkdir()
    (changed / "a.yaml").write_text(SCEN_A.replace("end: 2017Q4", "end: 2018Q4"))
    (changed / "b.yaml").write_text(SCEN_B)
    code, _, err = _cli([a.replace(str(scen), str(changed)) for a in args], capsys)
    assert (
        code == 2
        and "scenario 'short_a' has changed" in err
        and "scenario 'short_b' has changed" in err
    )
    assert "choose another --out" in err
    # nothing was touched
    assert {p.name: p.stat().st_mtime_ns for p in (reference / "shards").iterdir()} == before
    assert load_manifest(reference)["finished"] is not None


def test_resume_after_a_model_change_is_refused(reference, scen, capsys, monkeypatch):
    monkeypatch.setattr(provenance, "model_fingerprint", lambda: "f" * 64)
    code, _, err = _cli(_cli_args(scen, reference, "--jobs", "1"), capsys)
    assert code == 2 and "model code (model/*.py, model/*.yaml) has changed" in err


def test_results_from_other_model_code_are_refused(scen, tmp_path, capsys, monkeypatch):
    """A worker whose model fingerprint differs from the batch's has its runs refused."""
    real = executors.run_task

    def other_code(task):
        result = real(task)
        result.fingerprint = "0" * 64
        return result

    monkeypatch.setattr(executors, "run_task", other_code)
    out = tmp_path / "mismatch"
    code, _, err = _cli(
        [str(scen / "a.yaml"), "--seeds", "2", "--sample", "none", "--out", str(out),
         "--jobs", "1", "--quiet"],
        capsys,
    )  # fmt: skip
    assert code == 1 and "2 of 2 runs failed" in err
    records = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert {r["exception"] for r in records} == {"ModelMismatch"}
    assert not list((out / "shards").glob("*.parquet"))


def test_task_size_keeps_every_worker_busy():
    assert batch.task_size(10, 1000, 2) == 10
    assert batch.task_size(10, 10, 2) == 2  # a small batch is split for 2 workers
    assert batch.task_size(10, 3, 8) == 1
    assert batch.task_size(10, 5, 1) == 10  # in-process: no need to split


# ---------------------------------------------------------------------------------------
# Failures
# ---------------------------------------------------------------------------------------


def test_a_failing_run_is_recorded_and_the_rest_complete(
    reference, scen, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "failing"
    monkeypatch.setenv(batch.FAIL_ENV, "short_b:2:1")
    code, _, err = _cli(_cli_args(scen, out, "--jobs", "2"), capsys)
    assert code == 1
    assert "1 of 24 runs failed" in err and "failures.jsonl" in err and "Traceback" not in err
    records = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert len(records) == 1
    rec = records[0]
    assert rec["run"] == {"scenario": "short_b", "seed": 2, "sample": 1}
    assert rec["exception"] == "RuntimeError" and batch.FAIL_ENV in rec["message"]
    assert "Traceback" in rec["traceback"]
    df = load(out)
    assert len(df) == 23 * QUARTERS
    ref = load(reference)
    missing = (ref["scenario"] == "short_b") & (ref["seed"] == 2) & (ref["sample"] == 1)
    pd.testing.assert_frame_equal(df, ref[~missing].reset_index(drop=True))
    assert load_manifest(out)["runs"] == {"total": 24, "finished": 23, "failed": 1}

    # the same command retries the failed run; the failure record goes away
    monkeypatch.delenv(batch.FAIL_ENV)
    code, _, err = _cli(_cli_args(scen, out, "--jobs", "1"), capsys)
    assert code == 0, err
    assert not (out / "failures.jsonl").exists()
    pd.testing.assert_frame_equal(load(out), ref)


def test_bad_failure_hook_is_a_clear_error(scen, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(batch.FAIL_ENV, "short_b-2-1")
    code, _, err = _cli(_cli_args(scen, tmp_path / "x", "--jobs", "1"), capsys)
    assert code == 2 and "scenario:seed:sample" in err


# ---------------------------------------------------------------------------------------
# Seeds: common random numbers
# ---------------------------------------------------------------------------------------


def test_replicate_i_shares_its_stream_across_scenarios(scen, tmp_path):
    out = run_batch(
        [str(scen / "a.yaml"), str(scen / "a_twin.yaml"), str(scen / "b.yaml")],
        seeds=3, sample="none", jobs=1, out=tmp_path / "crn", root_entropy=ROOT, progress=False,
    )  # fmt: skip
    df = load(out, columns=["self_sufficiency_pct", "china_demand_usd_bn"])
    runs = {
        (s, i): g[["self_sufficiency_pct", "china_demand_usd_bn"]].to_numpy()
        for (s, i), g in df.groupby(["scenario", "seed"])
    }
    for i in range(3):
        # the same model under two names: identical, since replicate i has one stream
        np.testing.assert_array_equal(runs[("short_a", i)], runs[("short_a_twin", i)])
    # different replicates differ
    assert not np.array_equal(runs[("short_a", 0)], runs[("short_a", 1)])
    assert not np.array_equal(runs[("short_a", 1)], runs[("short_a", 2)])
    # replicate i is child i of the root SeedSequence
    ss = np.random.SeedSequence(ROOT, spawn_key=(1,))
    assert replicate_seed(ROOT, 1).generate_state(4).tolist() == ss.generate_state(4).tolist()


# ---------------------------------------------------------------------------------------
# Bad input (the sample design is tested in test_sampling.py)
# ---------------------------------------------------------------------------------------


def test_bad_input_exits_2_with_a_message(scen, tmp_path, capsys):
    out = tmp_path / "bad"
    cases = [
        (["nope.yaml", "--seeds", "2"], "nope.yaml"),
        (
            [str(scen / "a.yaml"), "--sample", "grid:4"],
            "unknown method 'grid'; allowed: lhs, sobol",
        ),
        ([str(scen / "a.yaml"), "--sample", "lhs"], "expected METHOD:K"),
        ([str(scen / "a.yaml"), "--set", "demand.nope=1"], "unknown parameter 'demand.nope'"),
        ([str(scen / "a.yaml"), str(scen / "a.yaml")], "names in a batch must be unique"),
    ]
    for args, message in cases:
        code, _, err = _cli([*args, "--out", str(out), "--quiet", "--jobs", "1"], capsys)
        assert code == 2, (args, err)
        assert message in err, (args, err)
        assert "Traceback" not in err
    assert not out.exists()  # bad input writes nothing

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "p.yaml").write_text("name: plain\nquestion: q\nstart: 2014Q1\nend: 2014Q4\n")
    code, _, err = _cli([str(plain / "p.yaml"), "--sample", "lhs:4", "--out", str(out)], capsys)
    assert code == 2 and "declares an 'uncertain' block" in err

    (plain / "c.yaml").write_text(
        SCEN_A.replace("short_a", "clash").replace("high: 3.0", "high: 4.0")
    )
    with pytest.raises(BatchError, match="different distributions"):
        run_batch(
            [scen / "a.yaml", plain / "c.yaml"], seeds=1, sample="lhs:2", out=out, progress=False
        )

    (out / "junk.txt").parent.mkdir()
    (out / "junk.txt").write_text("x")
    code, _, err = _cli([str(scen / "a.yaml"), "--out", str(out)], capsys)
    assert code == 2 and "not a batch store" in err


def test_dry_run_counts_runs_and_estimates_time(reference, scen, tmp_path, capsys):
    out = tmp_path / "dry"
    code, stdout, err = _cli(_cli_args(scen, out, "--jobs", "2", "--dry-run"), capsys)
    assert code == 0, err
    assert "2 scenario(s) x 4 seed(s) x 3 sample(s) = 24 runs" in stdout
    assert (
        "to run: 24" in stdout
        and "s per run" in stdout
        and "estimated wall time with --jobs 2" in stdout
    )
    assert not out.exists()
    code, stdout, _ = _cli(_cli_args(scen, reference, "--dry-run"), capsys)
    assert code == 0 and "already finished in" in stdout and "to run: 0" in stdout


def test_cli_help_lists_batch():
    proc = subprocess.run(
        [sys.executable, "-m", "decouple.cli", "batch", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0
    for flag in (
        "--seeds",
        "--sample",
        "--jobs",
        "--scheduler",
        "--out",
        "--dry-run",
        "--set",
        "--root-entropy",
    ):
        assert flag in proc.stdout
