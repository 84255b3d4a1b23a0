"""``decouple run``: one scenario, N seeds, one run directory.

Writes ``trajectories.parquet`` (one row per seed x quarter, with the sha256 of its data in
its metadata), ``manifest.json`` and ``resolved/<scenario>.yaml``, then prints the median and
5-95% range of self-sufficiency at 2021, 2025, 2030 and 2035. An existing directory is never
overwritten.

The store is written into a temporary directory beside ``--out`` (``.<name>.<pid>.part``,
locked while it is written) and renamed to ``--out`` when complete, so ``--out`` exists only
whole: a run that fails (in the model, a full disk) or is stopped (Ctrl-C, SIGTERM) leaves
nothing behind, and the same command can simply be run again. A temporary directory left by
a killed run is removed by the next run with the same ``--out``. A run that fails in the
model is reported with its scenario, seed and exception (exit 1), without a traceback; the
``DECOUPLE_FAIL_RUN`` testing hook (``scenario:seed:0``) makes a seed fail.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from model.run import DEFAULT_ROOT_ENTROPY, replicate_seed, simulate
from model.scenario import Scenario

from . import interrupts, provenance, store
from .errors import BatchError
from .executors import FAIL_ENV, parse_fail_runs

PROG = "decouple run"


class RunFailed(Exception):
    """A seed of ``decouple run`` raised in the model.

    Attributes:
        seed: the replicate that failed.
        error: the exception it raised.
    """

    def __init__(self, seed: int, error: BaseException):
        super().__init__(f"seed {seed}: {type(error).__name__}: {error}")
        self.seed = seed
        self.error = error


SUMMARY_YEARS = (2021, 2025, 2030, 2035)


def default_out_dir(name: str) -> Path:
    """``runs/<name>-<UTC timestamp>``."""
    stamp = provenance.now().replace(":", "").replace("-", "").replace("+0000", "Z")
    return Path("runs") / f"{name}-{stamp}"


def run_seeds(
    scenario: Scenario,
    seeds: int,
    root_entropy: int = DEFAULT_ROOT_ENTROPY,
    fail_runs: frozenset = frozenset(),
):
    """Run replicates ``0..seeds-1``; returns a pandas DataFrame of all rows.

    Raises:
        RunFailed: naming the seed, if a run raises (or the failure hook names it).
    """
    import pandas as pd

    frames = []
    for i in range(seeds):
        try:
            if (scenario.name, i, 0) in fail_runs:
                raise RuntimeError(f"injected failure of seed {i} ({FAIL_ENV} testing hook)")
            cols = simulate(scenario, replicate_seed(root_entropy, i))
        except Exception as exc:  # noqa: BLE001 - reported with its scenario and seed
            raise RunFailed(i, exc) from exc
        df = pd.DataFrame(cols)
        df.insert(0, "sample", 0)
        df.insert(0, "seed", i)
        df.insert(0, "scenario", scenario.name)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def write_run(
    out: Path,
    scenario: Scenario,
    source_file: str,
    df,
    seeds: int,
    root_entropy: int,
    command: str,
    started: str,
) -> None:
    """Write a run store into ``out`` (an empty or new directory): data first, manifest last.

    ``main`` writes into a temporary directory and renames it, so readers see it whole.
    """
    import pyarrow as pa

    out.mkdir(parents=True, exist_ok=True)
    (out / store.RESOLVED).mkdir()
    resolved_file = out / store.resolved_file(scenario.name)
    resolved_file.write_text(scenario.to_yaml(), encoding="utf-8")
    table = store.with_digest(pa.Table.from_pandas(df, preserve_index=False))
    store.write_parquet_atomic(table, out / store.TRAJECTORIES)
    manifest = {
        "kind": "run",
        "model_version": provenance.model_version(),
        "command": command,
        "created": started,
        "finished": provenance.now(),
        "git": provenance.git_state(),
        "packages": provenance.package_versions(),
        "root_entropy": root_entropy,
        "seeds": seeds,
        "samples": {"method": "none", "n": 1},
        "scenarios": {
            scenario.name: {
                "file": source_file,
                "file_sha256": hashlib.sha256(Path(source_file).read_bytes()).hexdigest(),
                "hash": scenario.hash,
                "resolved_file": str(resolved_file.relative_to(out)),
                "resolved": scenario.to_dict(),
            }
        },
        "parameters": {scenario.name: scenario.resolved_parameters()},
    }
    (out / store.MANIFEST).write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")


def summary_table(df, column: str = "self_sufficiency_pct") -> str:
    """Median and 5-95% range of the calendar-year mean of ``column`` at the summary years."""
    yearly = df.groupby(["scenario", "seed", "year"])[column].mean().reset_index()
    lines = [f"{column}: median [5%-95%] across {df['seed'].nunique()} seeds (calendar-year mean)"]
    for year in SUMMARY_YEARS:
        vals = yearly.loc[yearly["year"] == year, column].to_numpy()
        if vals.size == 0:
            continue
        q5, q50, q95 = np.percentile(vals, [5, 50, 95])
        lines.append(f"  {year}: {q50:6.1f}  [{q5:5.1f} - {q95:5.1f}]")
    return "\n".join(lines)


def main(scenario: Scenario, source_file: str, seeds: int, out: Path | None, command: str) -> int:
    """Run ``decouple run``: ``seeds`` replicates into a new run store ``out``.

    Returns:
        0 on success; 1 if a run failed in the model or the store could not be written (a
        full disk); 2 for a bad or existing ``--out``; 128 + the signal if stopped. In
        every case but 0, ``out`` is not created.
    """
    out = out or default_out_dir(scenario.name)
    try:
        store.check_out_path(out)
        fail_runs = parse_fail_runs(os.environ.get(FAIL_ENV))
    except BatchError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if out.exists():
        print(
            f"{PROG}: error: {out} already exists; choose another --out "
            "(results are never overwritten)",
            file=sys.stderr,
        )
        return 2
    with interrupts.signals_interrupt():
        try:
            return _run_into(out, scenario, source_file, seeds, command, fail_runs)
        except interrupts.Interrupted as exc:
            print(
                f"{PROG}: interrupted ({exc.name}); nothing was written to {out}", file=sys.stderr
            )
            return exc.exit_code


def _run_into(
    out: Path, scenario: Scenario, source_file: str, seeds: int, command: str, fail_runs
) -> int:
    """Run the seeds, write the store into a temporary directory, rename it to ``out``."""
    started = provenance.now()
    try:
        df = run_seeds(scenario, seeds, fail_runs=fail_runs)
    except RunFailed as exc:
        print(
            f"{PROG}: error: scenario '{scenario.name}', seed {exc.seed} failed: "
            f"{type(exc.error).__name__}: {exc.error}; nothing was written to {out}",
            file=sys.stderr,
        )
        return 1
    try:
        with _temporary_store(out) as tmp:
            write_run(tmp, scenario, source_file, df, seeds, DEFAULT_ROOT_ENTROPY, command, started)
            try:
                os.rename(tmp, out)
            except OSError:
                if out.exists():
                    print(
                        f"{PROG}: error: {out} was created by someone else meanwhile; choose "
                        "another --out (results are never overwritten)",
                        file=sys.stderr,
                    )
                    return 2
                raise
    except OSError as exc:
        code = 2 if store.not_writable(exc) else 1
        what = exc.strerror or str(exc)
        if "No space left on device" in str(exc):
            what = "No space left on device: free some space"
        print(
            f"{PROG}: error: cannot write the run store {out} ({what}); nothing was written "
            "there: rerun the same command",
            file=sys.stderr,
        )
        return code
    print(summary_table(df))
    print(f"wrote {out / store.TRAJECTORIES} ({len(df)} rows) and {out / store.MANIFEST}")
    return 0


@contextlib.contextmanager
def _temporary_store(out: Path):
    """A new locked directory ``.<out name>.<pid>.part`` beside ``out``, removed unless renamed.

    Temporary directories of the same ``--out`` whose lock is free (left by a killed run)
    are removed first.
    """
    import fcntl

    parent = out.parent
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.glob(f".{out.name}.*{store.PART_SUFFIX}"):
        with contextlib.suppress(OSError):
            fd = os.open(stale, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(stale, ignore_errors=True)
            finally:
                os.close(fd)
    tmp = parent / f".{out.name}.{os.getpid()}{store.PART_SUFFIX}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    fd = os.open(tmp, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held until renamed or removed
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        os.close(fd)
