"""A batch stopped at a chosen point, by a chosen signal, then resumed by the same command.

Each test starts ``decouple batch`` as its own process group (``start_new_session=True``)
with the pause testing hook (``DECOUPLE_PAUSE``: the engine writes its pid to a file at a
named point and waits), signals it there, checks the exit status, the message and that no
process of the group is left, then reruns the same command and checks that the data equal
an uninterrupted batch exactly. The batches are tiny: 2 scenarios x 4 seeds x 2 samples of
a 16-quarter horizon, one run per shard.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from analysis import load, load_manifest
from decouple.cli import main as cli_main
from experiment import executors, interrupts, provenance, store
from experiment.batch import run_batch

ROOT = 5151
SAMPLE_SEED = 3
RUNS = 2 * 4 * 2

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
"""


@pytest.fixture(autouse=True)
def _model_fingerprint_of_now(monkeypatch):
    """This process fingerprints the model files afresh, as the batches it starts do.

    The fingerprint is cached once per process; if ``model/`` was edited since the suite
    started, an in-process resume would otherwise refuse the store those batches made.
    """
    monkeypatch.setattr(provenance, "_FINGERPRINT", None)


@pytest.fixture(scope="module")
def scen(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("scenarios")
    (d / "a.yaml").write_text(SCEN_A)
    (d / "b.yaml").write_text(SCEN_B)
    return d


def _args(scen: Path, out: Path, seeds: int = 4) -> list[str]:
    return [
        "batch", str(scen / "a.yaml"), str(scen / "b.yaml"),
        "--seeds", str(seeds), "--sample", "lhs:2",
        "--root-entropy", str(ROOT), "--sample-seed", str(SAMPLE_SEED),
        "--jobs", "2", "--runs-per-shard", "1", "--out", str(out), "--quiet",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def reference(scen, tmp_path_factory) -> pd.DataFrame:
    """The data of the same batch, uninterrupted (in-process)."""
    out = tmp_path_factory.mktemp("ref") / "store"
    run_batch(
        [scen / "a.yaml", scen / "b.yaml"],
        seeds=4,
        sample="lhs:2",
        root_entropy=ROOT,
        sample_seed=SAMPLE_SEED,
        out=out,
        progress=False,
    )
    return load(out)


def _start(args: list[str], point: str, pause: Path, sigint=signal.SIG_DFL) -> subprocess.Popen:
    """``decouple batch`` in its own process group, told to pause at ``point``.

    ``sigint`` is the SIGINT disposition it starts with (a shell script's ``cmd &`` starts
    it ignored).
    """
    env = dict(os.environ, **{interrupts.PAUSE_ENV: point, interrupts.PAUSE_FILE_ENV: str(pause)})
    env.pop(executors.FAIL_ENV, None)
    return subprocess.Popen(
        [sys.executable, "-m", "decouple.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, sigint),
    )


def _wait_paused(proc: subprocess.Popen, pause: Path) -> int:
    """Wait until the batch reaches its pause point; the pid it wrote there."""
    deadline = time.monotonic() + 120  # a liveness bound, not a timing check
    while not pause.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the batch never reached its pause point:\n{out}\n{err}")
        time.sleep(0.01)
    return int(pause.read_text())


def _group(pgid: int) -> list[str]:
    """The live (not zombie) processes of process group ``pgid``, as ``pid command``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(f"{entry} {cmd[:100]}")
    return found


def _left_running(pgid: int) -> list[str]:
    """The group's processes still alive once it has had a moment to exit (normally none)."""
    deadline = time.monotonic() + 30  # a liveness bound, not a timing check
    while (left := _group(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _interrupted(out: Path, name: str) -> str:
    return (
        f"decouple batch: interrupted ({name}); finished runs are kept in {out}. Rerun the "
        "same command (with the same --out) to resume.\n"
    )


def _resume(args: list[str], capsys) -> tuple[int, str]:
    """The same command again (in this process), with no pause hook: exit code, all output."""
    code = cli_main(args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_sigint_before_the_manifest_then_the_same_command_resumes(
    scen, reference, tmp_path, capsys
):
    """Started with SIGINT ignored (``cmd &`` in a script), a Ctrl-C still stops the batch."""
    out, pause = tmp_path / "store", tmp_path / "pause"
    args = _args(scen, out)
    proc = _start(args, "before-manifest", pause, sigint=signal.SIG_IGN)
    _wait_paused(proc, pause)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
    _, err = proc.communicate()
    assert proc.returncode == 130
    assert err == _interrupted(out, "SIGINT")  # no traceback, from the forkserver or else
    assert _left_running(proc.pid) == []
    assert sorted(p.name for p in out.iterdir()) == [store.LOCK]

    code, err = _resume(args, capsys)
    assert code == 0, err
    assert "holds a batch store whose start was interrupted" in err
    pd.testing.assert_frame_equal(load(out), reference)


def test_sigkill_after_the_manifest_a_different_command_is_refused(
    scen, reference, tmp_path, capsys
):
    out, pause = tmp_path / "store", tmp_path / "pause"
    args = _args(scen, out)
    proc = _start(args, "after-manifest", pause)
    _wait_paused(proc, pause)
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9 of the job, workers and all
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert _left_running(proc.pid) == []
    assert not (out / store.SHARDS).exists()  # killed before anything but the manifest

    code, err = _resume(_args(scen, out, seeds=3), capsys)
    assert code == 2
    assert "seeds: 4 in the store, 3 asked for (a batch can be extended with more seeds" in err
    code, err = _resume(args, capsys)
    assert code == 0, err
    pd.testing.assert_frame_equal(load(out), reference)


def test_sigterm_mid_batch_stops_the_workers_and_the_same_command_resumes(
    scen, reference, tmp_path, capsys
):
    out, pause = tmp_path / "store", tmp_path / "pause"
    args = _args(scen, out)
    proc = _start(args, "shard:3", pause)
    _wait_paused(proc, pause)
    assert len(_group(proc.pid)) >= 4  # the batch, the forkserver, 2 workers (and a tracker)
    os.kill(proc.pid, signal.SIGTERM)  # `kill PID` of the main process only
    _, err = proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM
    assert err.endswith(_interrupted(out, "SIGTERM")) and "Traceback" not in err
    assert "leaked" not in err
    assert _left_running(proc.pid) == []  # workers and forkserver stopped with it
    done = len(store.finished_runs(out))
    assert 3 <= done < RUNS

    code, err = _resume(args, capsys)
    assert code == 0, err
    assert f"resuming {out}: {done} of {RUNS} runs already finished" in err
    pd.testing.assert_frame_equal(load(out), reference)
    assert len(load_manifest(out)["resumed"]) == 1


@pytest.mark.skipif(
    signal.getsignal(signal.SIGHUP) == signal.SIG_IGN,
    reason="SIGHUP is ignored in this session (started under nohup), so the batch it starts "
    "rightly ignores it too (experiment/interrupts.py) and would never stop",
)
def test_sighup_at_the_end_then_the_same_command_finishes(scen, reference, tmp_path, capsys):
    out, pause = tmp_path / "store", tmp_path / "pause"
    args = _args(scen, out)
    proc = _start(args, "before-finish", pause)
    _wait_paused(proc, pause)
    os.killpg(proc.pid, signal.SIGHUP)  # the terminal closed
    _, err = proc.communicate()
    assert proc.returncode == 128 + signal.SIGHUP
    assert err.endswith(_interrupted(out, "SIGHUP"))
    assert _left_running(proc.pid) == []
    assert json.loads((out / store.MANIFEST).read_text())["finished"] is None
    assert len(store.finished_runs(out)) == RUNS

    code, err = _resume(args, capsys)
    assert code == 0, err
    assert f"decouple batch: {RUNS} runs in {out} (0 run now, {RUNS} already finished)" in err
    pd.testing.assert_frame_equal(load(out), reference)
    assert load_manifest(out)["finished"] is not None


def test_a_killed_worker_costs_only_its_own_runs(scen, reference, tmp_path, capsys):
    out, pause = tmp_path / "store", tmp_path / "pause"
    args = _args(scen, out)
    proc = _start(args, "run:short_a:1:0", pause)
    worker = _wait_paused(proc, pause)
    assert worker != proc.pid  # the pid of the worker about to run short_a seed 1 sample 0
    os.kill(worker, signal.SIGKILL)  # as the out-of-memory killer would
    pause.unlink()
    _, err = proc.communicate()
    assert proc.returncode == 1
    assert (
        f"decouple batch: 1 of {RUNS} runs failed (see {out / store.FAILURES}); the other "
        f"{RUNS - 1} are in {out / store.SHARDS}" in err
    )
    assert _left_running(proc.pid) == []
    (record,) = store.read_failures(out)
    assert record["run"] == {"scenario": "short_a", "seed": 1, "sample": 0}
    assert record["exception"] == "WorkerDied"
    assert record["message"].startswith(
        f"the worker process (pid {worker}) running this task was killed by signal 9 (SIGKILL): "
        "the kernel's out-of-memory killer sends SIGKILL"
    )
    assert len(store.finished_runs(out)) == RUNS - 1  # the runs in flight beside it were retried

    code, err = _resume(args, capsys)
    assert code == 0, err
    assert not (out / store.FAILURES).exists()
    pd.testing.assert_frame_equal(load(out), reference)


def test_a_half_made_store_is_started_afresh_and_other_directories_refused(
    scen, reference, tmp_path, capsys
):
    """What an interrupted start (or a full disk at the start) of an older version left."""
    out = tmp_path / "half"
    (out / store.SHARDS).mkdir(parents=True)
    (out / store.LOCK).touch()
    (out / store.SHARDS / ".short_a-k00000-r00000-00000.parquet.77.part").write_bytes(b"PAR")
    (out / store.RESOLVED).mkdir()
    (out / store.RESOLVED / "short_a.yaml").write_text("name: short_a\n")
    (out / store.RESOLVED / ".short_b.yaml.77.part").write_text("na")
    (out / f".{store.MANIFEST}.77.part").write_text("{")
    args = [a if a != "2" else "1" for a in _args(scen, out)]  # --jobs 1: in this process
    code, err = _resume(args, capsys)
    assert code == 0, err
    assert (
        f"decouple batch: note: {out} holds a batch store whose start was interrupted (no "
        f"{store.MANIFEST}, no data yet): starting it afresh" in err
    )
    pd.testing.assert_frame_equal(load(out), reference)
    assert not [p for p in out.rglob("*") if p.name.endswith(store.PART_SUFFIX)]

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    code, err = _resume([a if a != str(out) else str(other) for a in args], capsys)
    assert code == 2
    assert (
        f"--out {other}: a non-empty directory without {store.MANIFEST} (not a batch store)" in err
    )


def test_the_cause_of_a_worker_death_is_named():
    assert executors._death_cause(3) == "exited with code 3"
    assert executors._death_cause(-signal.SIGSEGV).startswith(
        "was killed by signal 11 (SIGSEGV): a crash in native code"
    )
    assert "out-of-memory killer" in executors._death_cause(-signal.SIGKILL)


def test_a_worker_killed_by_sigterm_is_not_told_apart_so_its_tasks_run_again(
    scen, reference, tmp_path, monkeypatch
):
    """A worker SIGTERMed from outside cannot be told from the ones the pool stops itself.

    Such a death names no task, so every task in flight runs again (at most 3 times), and
    here they all succeed: no run is failed for it.
    """
    import threading

    out, pause = tmp_path / "store", tmp_path / "pause"
    monkeypatch.setenv(interrupts.PAUSE_ENV, "run:short_b:2:1")
    monkeypatch.setenv(interrupts.PAUSE_FILE_ENV, str(pause))
    outcome: list = []

    def batch() -> None:
        try:
            outcome.append(
                run_batch(
                    [scen / "a.yaml", scen / "b.yaml"],
                    seeds=4,
                    sample="lhs:2",
                    jobs=2,
                    root_entropy=ROOT,
                    sample_seed=SAMPLE_SEED,
                    out=out,
                    progress=False,
                    runs_per_shard=1,
                )
            )
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            outcome.append(exc)

    thread = threading.Thread(target=batch)
    thread.start()
    killed = None
    deadline = time.monotonic() + 120  # a liveness bound, not a timing check
    while thread.is_alive() and time.monotonic() < deadline:
        if pause.exists():
            if killed is None:
                killed = int(pause.read_text())
                os.kill(killed, signal.SIGTERM)
            pause.unlink(missing_ok=True)  # the retried run pauses again: let it go on
        time.sleep(0.01)
    thread.join()
    assert outcome == [out], outcome
    assert killed is not None
    assert not (out / store.FAILURES).exists()
    pd.testing.assert_frame_equal(load(out), reference)
