"""Faults outside the model end with a clear message and exit code, never a traceback.

A full disk, a read-only or malformed ``--out``, a huge design and ``decouple run`` failing
are each reported, and the same command works once the cause is gone.

The full-disk and read-only cases use a real size-limited tmpfs (``mount -t tmpfs -o
size=2m``, which needs root and a kernel that allows it; skipped otherwise); a full disk is
also simulated in-process (a shard write raising ENOSPC), which runs everywhere.
"""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from pathlib import Path

import pandas as pd
import pytest

from analysis import load
from decouple.cli import main as cli_main
from experiment import batch, executors, single, store
from experiment.batch import run_batch

SCEN = """\
name: short_a
question: test scenario A (short horizon)
start: 2014Q1
end: 2017Q4
"""
RUN_SCEN = SCEN.replace("short_a", "short")


@pytest.fixture(scope="module")
def scen(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scenarios") / "a.yaml"
    path.write_text(SCEN)
    return path


def _args(scen: Path, out: Path, *extra: str) -> list[str]:
    return [
        "batch", str(scen), "--seeds", "4", "--root-entropy", "91", "--jobs", "1",
        "--runs-per-shard", "1", "--out", str(out), "--quiet", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def reference(scen, tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("ref") / "store"
    run_batch([scen], seeds=4, root_entropy=91, out=out, progress=False)
    return load(out)


def _cli(args: list[str], capsys) -> tuple[int, str]:
    code = cli_main(args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _full(out: Path) -> str:
    return (
        "the disk is full: cannot write {where} (No space left on device). The runs finished "
        f"so far are kept in {out}: free some space and rerun the same command to resume."
    )


# ---------------------------------------------------------------------------------------
# A small disk (tmpfs)
# ---------------------------------------------------------------------------------------


@pytest.fixture
def disk(tmp_path):
    """A 2 MiB tmpfs mounted for the test (skipped where mounting is not permitted)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path) -> Path:
    """Fill the file system until it is full; the filler file."""
    filler = mnt / f"filler-{uuid.uuid4().hex}"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_a_full_disk_at_the_start_then_the_same_command(disk, scen, reference, capsys):
    out = disk / "store"
    filler = _fill(disk)
    code, text = _cli(_args(scen, out), capsys)
    assert code == 1 and "Traceback" not in text
    assert text.endswith(
        f"decouple batch: error: {_full(out)}\n".format(where=out / store.MANIFEST)
    )
    assert sorted(p.name for p in out.iterdir()) == [store.LOCK]  # no half-written file
    filler.unlink()
    code, text = _cli(_args(scen, out), capsys)
    assert code == 0, text
    pd.testing.assert_frame_equal(load(out), reference)


def test_a_full_disk_mid_batch_then_the_same_command(disk, scen, reference, capsys, monkeypatch):
    out = disk / "store"
    real, written = store.write_shard, []

    def fill_after_two(*args):
        if len(written) == 2:
            written.append(_fill(disk))  # the disk fills up while the batch runs
        path = real(*args)
        written.append(path)
        return path

    monkeypatch.setattr(store, "write_shard", fill_after_two)
    code, text = _cli(_args(scen, out), capsys)
    assert code == 1 and "Traceback" not in text
    third = out / store.SHARDS / store.shard_name("short_a", 0, [2])
    assert text.endswith(f"decouple batch: error: {_full(out)}\n".format(where=third))
    assert len(store.finished_runs(out)) == 2
    assert not list((out / store.SHARDS).glob(store.PART_GLOB))
    monkeypatch.undo()
    written[2].unlink()  # free the space
    code, text = _cli(_args(scen, out), capsys)
    assert code == 0, text
    assert f"resuming {out}: 2 of 4 runs already finished" in text
    pd.testing.assert_frame_equal(load(out), reference)


def test_a_full_disk_is_reported_where_no_disk_can_be_mounted(
    tmp_path, scen, reference, capsys, monkeypatch
):
    """The same, simulated: the third shard's write raises ENOSPC as pyarrow does."""
    out = tmp_path / "store"
    real, calls = store.write_parquet_atomic, []

    def third_fails(table, final):
        calls.append(final)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "Error writing bytes to file. No space left on device")
        return real(table, final)

    monkeypatch.setattr(store, "write_parquet_atomic", third_fails)
    code, text = _cli(_args(scen, out), capsys)
    assert code == 1
    assert text.endswith(f"decouple batch: error: {_full(out)}\n".format(where=out))
    monkeypatch.undo()
    code, text = _cli(_args(scen, out), capsys)
    assert code == 0, text
    pd.testing.assert_frame_equal(load(out), reference)


def _remount_read_only(mnt: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)


def test_a_read_only_out_and_a_read_only_store(disk, scen, capsys):
    store_dir = disk / "store"
    assert _cli(_args(scen, store_dir), capsys)[0] == 0
    _remount_read_only(disk)
    new = disk / "new"
    code, text = _cli(_args(scen, new), capsys)
    assert code == 2
    assert text == (
        f"decouple batch: error: --out {new}: cannot create the directory (Read-only file "
        "system); choose a writable --out\n"
    )
    code, text = _cli(_args(scen, store_dir), capsys)
    assert code == 2
    assert text == (
        f"decouple batch: error: {store_dir}: cannot write to this run store (Read-only file "
        "system); a batch writes its lock, manifest and shards there: copy the store to a "
        "writable place and rerun with that --out (or choose another --out)\n"
    )
    assert load(store_dir) is not None  # still readable


def test_decouple_run_on_a_full_disk_leaves_nothing(disk, tmp_path, capsys):
    scenario = tmp_path / "short.yaml"
    scenario.write_text(RUN_SCEN)
    out = disk / "run"
    filler = _fill(disk)
    code, text = _cli(["run", str(scenario), "--seeds", "2", "--out", str(out)], capsys)
    assert code == 1
    assert text == (
        f"decouple run: error: cannot write the run store {out} (No space left on device: "
        "free some space); nothing was written there: rerun the same command\n"
    )
    assert sorted(p.name for p in disk.iterdir()) == [filler.name]
    filler.unlink()
    assert _cli(["run", str(scenario), "--seeds", "2", "--out", str(out)], capsys)[0] == 0


# ---------------------------------------------------------------------------------------
# Bad --out, a huge design
# ---------------------------------------------------------------------------------------


def test_an_over_long_or_non_utf8_out_is_refused(tmp_path, scen, capsys):
    long_out = tmp_path / ("x" * 300) / "store"
    code, text = _cli(_args(scen, long_out), capsys)
    assert code == 2
    assert text == (
        f"decouple batch: error: --out {long_out}: the name '{'x' * 24}...' is 300 bytes long; "
        "the file system allows at most 255 bytes per name: choose a shorter --out\n"
    )
    bad = Path(os.fsdecode(bytes(tmp_path) + b"/st\xffore"))  # as argv gives such bytes
    code, text = _cli(_args(scen, bad), capsys)
    assert code == 2
    assert text == (
        f"decouple batch: error: --out {os.fsencode(bad)!r}: the path is not valid UTF-8; "
        "name the run store with UTF-8 characters (its path is recorded in the manifest and "
        "printed)\n"
    )
    scenario = tmp_path / "short.yaml"
    scenario.write_text(RUN_SCEN)
    code, text = _cli(["run", str(scenario), "--seeds", "1", "--out", str(bad)], capsys)
    assert code == 2 and "the path is not valid UTF-8" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["short.yaml"]  # nothing created


def test_a_huge_sample_design_is_refused_before_allocating(scen, tmp_path, capsys):
    code, text = _cli(
        [*_args(scen, tmp_path / "dry"), "--sample", "lhs:400000000", "--dry-run"], capsys
    )
    assert code == 2
    assert text == (
        "decouple batch: error: --sample lhs:400000000: K must be at most 100000 (each "
        "sample's values are kept in the manifest, so K = 400000000 would take gigabytes of "
        "memory and disk before the first run); split the study into several batches\n"
    )


# ---------------------------------------------------------------------------------------
# decouple run
# ---------------------------------------------------------------------------------------


def test_decouple_run_failing_in_the_model_names_the_run_and_leaves_nothing(
    tmp_path, capsys, monkeypatch
):
    scenario = tmp_path / "short.yaml"
    scenario.write_text(RUN_SCEN)
    out = tmp_path / "runs" / "short"
    args = ["run", str(scenario), "--seeds", "3", "--out", str(out)]
    monkeypatch.setenv(executors.FAIL_ENV, "short:1:0")
    code, text = _cli(args, capsys)
    assert code == 1
    assert text == (
        "decouple run: error: scenario 'short', seed 1 failed: RuntimeError: injected failure "
        f"of seed 1 ({executors.FAIL_ENV} testing hook); nothing was written to {out}\n"
    )
    assert not out.exists()
    monkeypatch.delenv(executors.FAIL_ENV)
    stale = out.parent / f".{out.name}.999999{store.PART_SUFFIX}"  # left by a killed run
    stale.mkdir(parents=True)
    (stale / store.TRAJECTORIES).write_bytes(b"half")
    code, text = _cli(args, capsys)  # the same command: not refused
    assert code == 0, text
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # the stale one is gone
    assert len(load(out)) == 3 * 16
    assert store.read_data_file(out / store.TRAJECTORIES).num_rows == 3 * 16  # checksummed
    code, text = _cli(args, capsys)
    assert code == 2 and "already exists" in text


def test_the_failure_hook_reaches_decouple_run_and_batch_alike(monkeypatch):
    monkeypatch.setenv(executors.FAIL_ENV, "short:1:0")
    assert executors.parse_fail_runs(os.environ[executors.FAIL_ENV]) == {("short", 1, 0)}
    assert batch.FAIL_ENV == single.FAIL_ENV == executors.FAIL_ENV
