"""``decouple batch``: many scenarios x seeds x parameter samples, streamed to a run store.

A batch is the cross product of scenarios, replicates ``i = 0..seeds-1`` (common random
numbers: replicate *i* has the same random stream in every scenario and sample) and
parameter samples ``k = 0..K-1`` (the same parameter vector in every scenario); see
``docs/batch.md``. The engine is in modules:

* :mod:`experiment.sampling`: ``--sample`` specs, unit-cube points, the sample design;
* :mod:`experiment.plan`: the batch's plan (scenarios, seeds, root entropy, samples) and the
  tasks still to run;
* :mod:`experiment.store`: the run store's layout and files (shards, manifest, failures
  log, lock);
* :mod:`experiment.executors`: running tasks in-process, in local processes or on Dask;
* this module: :func:`execute` (a batch as a few named steps), :func:`run_batch` (the
  Python API) and the command line.

Why it is built this way (the pains of other tools it avoids):

* Results never accumulate in memory (Mesa #1915, EMA Workbench #304): each task is a small
  group of runs of one scenario and sample; its rows are written to one Parquet *shard* as
  soon as it completes, atomically, and dropped. At most ``2 x workers`` tasks are in flight.
* Every run depends only on its key (scenario, replicate, sample) and the batch's recorded
  root entropy (Mesa #1060), so the data are bit-identical whatever the executor (in-process,
  local processes, a Dask cluster) or the number of workers, and a killed batch resumes
  exactly: the finished runs are those found in the shards (their run keys are stored in
  each shard's Parquet metadata), and only the others are run again.
* A failing run is recorded in the failures log (run key, exception, traceback) and the
  batch goes on; the command then exits 1. Rerunning the same command retries failed runs.
  A dying worker process costs only its own task's runs (:mod:`experiment.executors`).
* The store is recognisable from its first write: the manifest is written before anything
  else, so a batch stopped at any moment (signal, full disk) is resumed by the same
  command; a directory left with only the lock and temporary files is started afresh.
* SIGINT, SIGTERM and SIGHUP stop the command alike (:mod:`experiment.interrupts`): the
  runs written are kept, the workers stopped, exit 128 + the signal.
* A resume checks every shard against its checksum and recomputes the runs of a damaged
  one; a finished batch can be extended with more seeds (or Sobol' samples).
* A tqdm bar on stderr shows runs done, failures and an ETA; ``--dry-run`` counts the runs
  and estimates wall time from a short pilot.
* Scenarios that agree up to a quarter are simulated once up to it for each replicate and
  sample, then branch (:mod:`experiment.branching`; bit-identical data, the same store
  layout); ``--no-shared-history`` runs every scenario from the start.

Testing hooks: ``DECOUPLE_FAIL_RUN`` (:data:`experiment.executors.FAIL_ENV`) and
``DECOUPLE_PAUSE`` (:data:`experiment.interrupts.PAUSE_ENV`).

Only the standard library is imported at module level, here and in the modules above: the
CLI imports this module to register the sub-command, and ``decouple --help`` must stay fast.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import executors, interrupts, provenance, store
from . import precision as precision_mod
from .errors import BatchError
from .executors import FAIL_ENV, TaskResult, run_task
from .plan import RUNS_PER_SHARD, BatchPlan, Task, make_plan, task_size
from .sampling import SAMPLE_METHODS, design_samples
from .store import finished_runs, shard_name

PROG = "decouple batch"


@dataclass(frozen=True)
class BatchOptions:
    """What :func:`execute` runs and how; see :func:`run_batch` for the fields it shares.

    Attributes:
        dry_run: count the runs and time a 2-run pilot; write nothing.
        command: the command line to record (default: rebuilt from the options).
        own_process: this process is the ``decouple batch`` command itself, so ``--jobs 1``
            may tune its garbage collector (see :func:`experiment.executors.prepare_process`).
        shared_history: simulate the history scenarios share once per replicate and sample
            (:mod:`experiment.branching`); False runs every scenario from its start.
        design: a ready-made :class:`~experiment.sampling.SampleDesign` used instead of
            ``sample`` (the Morris and Saltelli designs of ``decouple sensitivity``).
        precision: with ``dry_run``, the 95% interval half-width (pp) to plan seeds x draws
            for (:mod:`experiment.precision`); ``None`` plans nothing.
        precision_year: the calendar year of the planned estimates.
    """

    scenario_paths: Sequence[str | Path]
    seeds: int
    sample: str | tuple | None = "auto"
    overrides: Sequence[str] = ()
    root_entropy: int | None = None
    sample_seed: int | None = None
    streams: str | None = None
    jobs: int = 1
    scheduler: Any = None
    out: str | Path | None = None
    runs_per_shard: int = RUNS_PER_SHARD
    progress: bool = True
    dry_run: bool = False
    command: str | None = None
    own_process: bool = False
    shared_history: bool = True
    design: Any = None
    precision: float | None = None
    precision_year: int = precision_mod.DEFAULT_YEAR


@dataclass
class BatchResult:
    """Outcome of :func:`execute`.

    Attributes:
        out: the run-store directory.
        total: runs in the batch.
        finished: runs present in the shards at the end.
        failed: runs recorded in ``failures.jsonl`` (missing from the data).
        ran: runs attempted by this invocation.
        skipped: runs found finished at the start (resume).
        dry_run: True if nothing was run.
    """

    out: Path
    total: int
    finished: int
    failed: int
    ran: int = 0
    skipped: int = 0
    dry_run: bool = False


@dataclass
class _Work:
    """A batch under way: its plan, the store's previous manifest and the finished runs."""

    out: Path
    plan: BatchPlan
    previous: dict | None
    finished: dict  # {run key: ...}, updated as runs finish
    done_before: int  # runs finished when the batch (re)started
    growth: dict = dataclasses.field(default_factory=dict)  # what an extension adds

    @property
    def todo(self) -> int:
        """Runs still to do."""
        return self.plan.total - self.done_before


# --------------------------------------------------------------------------------------
# Running a batch
# --------------------------------------------------------------------------------------


def execute(options: BatchOptions, log: Callable[[str], None] | None = None) -> BatchResult:
    """Run (or resume, or dry-run) a batch.

    Args:
        options: what to run and how.
        log: where notes and warnings go (default: stderr).

    Returns:
        A :class:`BatchResult` with the counts the CLI needs for its exit code.

    Raises:
        BatchError: bad input, an unusable store, or a resume that asks for another batch.
        OSError: the store could not be written (e.g. a full disk); the runs written so far
            are kept and the same call resumes.
        KeyboardInterrupt: on Ctrl-C (or :class:`~experiment.interrupts.Interrupted` inside
            :func:`~experiment.interrupts.signals_interrupt`); the runs written are kept.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    try:
        return _execute(options, log)
    finally:
        if options.own_process and options.jobs > 1 and options.scheduler is None:
            executors.stop_forkserver()  # nothing of this command is left running


def _execute(options: BatchOptions, log) -> BatchResult:
    """The steps of :func:`execute`."""
    fail_runs = _check_options(options)
    out = Path(options.out) if options.out is not None else _default_out()
    store.check_out_path(out)
    work = _plan_work(options, out, log)
    if options.dry_run:
        return _dry_run(work, options, log)
    # Connect before creating the store: a wrong address leaves nothing behind.
    client, own_client = (
        executors.dask_client(options.scheduler) if options.scheduler is not None else (None, False)
    )
    try:
        # Everything slow to gather (git, package versions) before the directory exists, so
        # the manifest follows the lock at once.
        manifest = None if work.previous is not None else _new_manifest(work, options, out)
        store.make_store_dir(out)
        with store.StoreLock(out):
            manifest = _open_store(work, options, log, manifest)
            ran = _run_tasks(work, options, manifest, client, fail_runs)
            interrupts.pause_at("before-finish")
            n_failed = _finish(work, manifest)
        total, finished = work.plan.total, len(work.finished)
        return BatchResult(out, total, finished, n_failed, ran, work.done_before)
    finally:
        if own_client:
            with contextlib.suppress(Exception):
                client.close()


def _check_options(options: BatchOptions) -> frozenset:
    """Check the executor options, read the failure hook, start the forkserver early.

    Returns:
        The runs the ``DECOUPLE_FAIL_RUN`` hook makes fail.
    """
    jobs, runs_per_shard = options.jobs, options.runs_per_shard
    if not isinstance(jobs, int) or jobs < 1:
        raise BatchError(f"--jobs must be at least 1, got {jobs!r}")
    if not isinstance(runs_per_shard, int) or runs_per_shard < 1:
        raise BatchError(f"--runs-per-shard must be at least 1, got {runs_per_shard!r}")
    if options.precision is not None:
        if not options.dry_run:
            raise BatchError(
                "--precision plans a batch: use it with --dry-run (which runs nothing)"
            )
        if not options.precision > 0:
            raise BatchError(
                f"--precision must be a positive half-width in pp, got {options.precision!r}"
            )
    fail_runs = executors.parse_fail_runs(os.environ.get(FAIL_ENV))
    if jobs > 1 and options.scheduler is None and not options.dry_run:
        executors.start_forkserver()
    return fail_runs


def _plan_work(options: BatchOptions, out: Path, log) -> _Work:
    """Plan the batch against the store's manifest, if any, and find its finished runs.

    Raises:
        BatchError: on bad input, or if ``out`` holds another batch.
    """
    previous = store.read_manifest(out)
    plan = make_plan(
        options.scenario_paths,
        options.seeds,
        options.sample,
        options.overrides,
        options.root_entropy,
        options.sample_seed,
        previous,
        options.streams,
        design=options.design,
    )
    for note in plan.design.notes:
        log(f"{PROG}: {note}")
    growth = {}
    if previous is not None:
        growth = _check_resume(previous, plan, out, log)
    elif store.half_made(out):
        log(
            f"{PROG}: note: {out} holds a batch store whose start was interrupted (no "
            f"{store.MANIFEST}, no data yet): starting it afresh"
        )
    finished = store.finished_runs(out, skip_unreadable=True) if previous is not None else {}
    names = {sc.name for _, sc in plan.scenarios}
    stray = [k for k in finished if k[0] not in names]
    if stray:
        raise BatchError(
            f"{out / store.SHARDS}: holds runs of scenario(s) {sorted({k[0] for k in stray})} "
            "not in this batch; choose another --out"
        )
    return _Work(out, plan, previous, finished, len(finished), growth)


def _check_resume(previous: dict, plan: BatchPlan, out: Path, log) -> dict:
    """Refuse to resume a store holding another batch or made by other model code.

    Returns:
        What the batch asked for adds to the store (:func:`experiment.store.growth`): more
        seeds or samples; empty for a plain resume.
    """
    diffs = store.describe_mismatch(previous, plan.identity(), extend=True)
    if diffs:
        raise BatchError(
            [f"--out {out} holds a different batch; refusing to mix results:"]
            + [f"  {d}" for d in diffs]
            + [
                "repeat the original command to resume it (see its "
                f"{store.MANIFEST} 'command'), or choose another --out"
            ]
        )
    old_fp, now_fp = previous.get("model_fingerprint"), provenance.model_fingerprint()
    if old_fp is not None and old_fp != now_fp:
        raise BatchError(
            f"--out {out}: the model code (model/*.py, model/*.yaml) has changed since this "
            f"batch was started (fingerprint {str(old_fp)[:12]} then, {now_fp[:12]} now); "
            "resuming would mix two model versions. Choose another --out (or delete the "
            "directory to start over)"
        )
    old_git = previous.get("git")
    if isinstance(old_git, dict) and old_git.get("commit") != provenance.git_state().get("commit"):
        log(
            f"{PROG}: note: git commit differs from the one the store was started with "
            "(model code is unchanged)"
        )
    growth = store.growth(previous, plan.identity())
    for what, (before, after) in growth.items():
        log(
            f"{PROG}: extending {out}: {what} {before} -> {after} (the runs already stored "
            "are kept; only the new ones are run)"
        )
    return growth


def _new_manifest(work: _Work, options: BatchOptions, out: Path) -> dict:
    """The manifest of a new store (gathered before the directory is created)."""
    command = options.command or _api_command(options, out)
    manifest = store.new_manifest(
        work.plan,
        command,
        options.jobs,
        _scheduler_name(options.scheduler),
        options.runs_per_shard,
    )
    manifest["executor"]["shared_history"] = options.shared_history
    return manifest


def _open_store(work: _Work, options: BatchOptions, log, manifest: dict | None) -> dict:
    """Under the lock: write the manifest first, then the rest; or check and resume the store.

    A new store gets its manifest before anything else (a half-made directory left by an
    interrupted start is emptied first), so from its first file on it is recognisably this
    batch. A resumed store has its shards checked (damaged ones are moved aside and their
    runs recomputed) and its manifest marked resumed (and extended).

    Returns:
        The manifest, new or marked as resumed.
    """
    out, plan = work.out, work.plan
    if work.previous is None:
        # Re-read under the lock: another batch may have started here meanwhile.
        if (out / store.MANIFEST).exists():
            raise BatchError(
                f"--out {out}: another decouple batch started in this directory meanwhile; "
                "rerun the command to resume it, or choose another --out"
            )
        if store.half_made(out):
            store.clear_half_made(out)
        interrupts.pause_at("before-manifest")
        store.write_manifest(out, manifest)
        interrupts.pause_at("after-manifest")
        store.write_resolved(out, [sc for _, sc in plan.scenarios])
    else:
        store.clear_temporaries(out)
        finished, damaged = store.scan_shards(out)
        for problem in damaged:
            moved = store.quarantine_shard(problem.path)
            log(
                f"{PROG}: warning: {problem.path} is damaged ({problem.reason}); moved to "
                f"{moved.name} and its runs will be computed again"
            )
        work.finished, work.done_before = finished, len(finished)
        command = options.command or _api_command(options, out)
        manifest = store.resumed_manifest(
            work.previous, command, work.done_before, plan=plan, extended=work.growth
        )
        store.write_manifest(out, manifest)
        missing = [
            sc for _, sc in plan.scenarios if not (out / store.resolved_file(sc.name)).is_file()
        ]
        if missing:  # the first start was stopped before it wrote them
            store.write_resolved(out, missing)
    store.prepare_shards(out)
    store.compact_failures(out, work.finished)
    if work.done_before:
        log(
            f"{PROG}: resuming {out}: {work.done_before} of {plan.total} runs already finished, "
            f"{work.todo} to run"
        )
    else:
        log(
            f"{PROG}: {plan.total} runs into {out} (rerun the same command with --out {out} "
            "to resume if interrupted)"
        )
    return manifest


def _scheduler_name(scheduler) -> str | None:
    """The scheduler as the manifest records it: its address, or the Client's repr."""
    if isinstance(scheduler, str):
        return scheduler
    return None if scheduler is None else repr(scheduler)


def _run_tasks(work: _Work, options: BatchOptions, manifest: dict, client, fail_runs) -> int:
    """Run the unfinished runs, writing each task's shard and failures as it completes.

    Returns:
        The number of runs attempted.
    """
    from tqdm import tqdm

    workers = options.jobs if client is None else executors.dask_threads(client)
    pause = interrupts.pause_target()
    run_pause = pause if pause is not None and pause[0].startswith("run:") else None
    if options.shared_history:
        from . import branching

        size = branching.tree_task_size(work.plan, options.runs_per_shard, work.todo, workers)
        tasks = branching.tree_tasks(work.plan, set(work.finished), size, fail_runs, run_pause)
    else:
        size = task_size(options.runs_per_shard, work.todo, workers)
        tasks = work.plan.tasks(set(work.finished), size, fail_runs, run_pause)
    stream = executors.stream_results(tasks, options.jobs, client, options.own_process)
    bar = tqdm(
        total=work.todo,
        unit="run",
        file=sys.stderr,
        disable=not options.progress,
        dynamic_ncols=True,
        desc="batch",
    )
    ran = failed_now = shards = 0
    shard_dir = work.out / store.SHARDS
    fingerprint = manifest.get("model_fingerprint") or provenance.model_fingerprint()
    try:
        for task, result in stream:
            result = _checked(task, result, fingerprint)
            for part, part_result in _parts(task, result):
                if _save(work, shard_dir, part, part_result):
                    shards += 1
                    interrupts.pause_at(f"shard:{shards}", pause)
            n_runs = len(task.run_keys())
            ran += n_runs
            failed_now += len(result.failures)
            bar.update(n_runs)
            if result.failures:
                bar.set_postfix(failed=failed_now, refresh=False)
            del result
    finally:
        bar.close()
        with contextlib.suppress(Exception):
            stream.close()
    return ran


def _parts(task, result) -> list:
    """``[(Task, TaskResult)]``: a tree task's result per scenario, or the task's own."""
    parts = getattr(result, "parts", None)
    return parts if parts is not None else [(task, result)]


def _checked(task: Task, result, fingerprint: str):
    """An executor's result (a TaskResult or a tree task's TreeResult) as one to save.

    An exception, or rows computed by other model code, fails every run of the task.
    """
    if isinstance(result, BaseException):
        # A dead worker's traceback would only show this process noticing it.
        died = isinstance(result, executors.WorkerDied)
        tb = "" if died else "".join(traceback.format_exception(result))
        return TaskResult(None, [], [store.failure_record(k, result, tb) for k in task.run_keys()])
    if result.fingerprint != fingerprint:
        exc = RuntimeError(
            f"the worker ran model code with fingerprint {result.fingerprint[:12]}, the batch's "
            f"is {fingerprint[:12]}: install the same version everywhere (or do not edit "
            "model/ mid-batch)"
        )
        recs = [
            store.failure_record(k, exc, "") | {"exception": "ModelMismatch"}
            for k in task.run_keys()
        ]
        return TaskResult(None, [], recs)
    return result


def _save(work: _Work, shard_dir: Path, task: Task, result: TaskResult) -> bool:
    """Write a task's finished runs to their shard and its failures to the failures log.

    Returns:
        True if a shard was written.
    """
    wrote = False
    if result.table is not None and result.done:
        store.write_shard(shard_dir, task.scenario, task.sample, result.done, result.table)
        for s in result.done:
            work.finished[(task.scenario, s, task.sample)] = True
        wrote = True
    if result.failures:
        store.append_failures(work.out, result.failures)
    return wrote


def _finish(work: _Work, manifest: dict) -> int:
    """Compact the failures log and mark the manifest finished; return the failed runs."""
    n_failed = store.compact_failures(work.out, work.finished)
    manifest["finished"] = provenance.now()
    manifest["runs"] = {
        "total": work.plan.total,
        "finished": len(work.finished),
        "failed": n_failed,
    }
    store.write_manifest(work.out, manifest)
    return n_failed


def _dry_run(work: _Work, options: BatchOptions, log) -> BatchResult:
    """Print the number of runs and a wall-time estimate from a 2-run pilot; write nothing."""
    plan, out, todo, done_before = work.plan, work.out, work.todo, work.done_before
    spread = None
    try:
        if options.precision is not None:
            spread = precision_mod.pilot(plan, options.precision_year)
            per_run = spread.seconds_per_run
        else:
            per_run = _pilot(plan) if todo else 0.0
    except BatchError:
        raise
    except Exception as exc:  # noqa: BLE001 - report the model's failure, not a traceback
        log(
            f"{PROG}: the pilot run of '{plan.scenarios[0][1].name}' failed: "
            f"{type(exc).__name__}: {exc}"
        )
        return BatchResult(out, plan.total, done_before, 1, 0, done_before, dry_run=True)
    nsc, ns = len(plan.scenarios), plan.design.n
    print(
        f"{PROG} (dry run): {nsc} scenario(s) x {plan.seeds} seed(s) x {ns} sample(s) "
        f"= {plan.total} runs"
    )
    print(f"  already finished in {out}: {done_before}; to run: {todo}")
    if options.shared_history:
        from . import branching

        for line in branching.describe(plan):
            print(f"  {line}")
    if todo or spread is not None:
        pilot_runs = 2 if spread is None else spread.draws * spread.seeds
        print(
            f"  pilot: {plan.scenarios[0][1].name}, {pilot_runs} runs in-process: "
            f"{per_run:.2f} s per run"
        )
        if options.shared_history:
            print(
                "  (the estimate below runs every scenario from its start; shared history "
                "saves part of it)"
            )
        if options.scheduler is not None:
            print(
                f"  estimated wall time: {_fmt_duration(per_run * todo)} of computing, "
                "divided by the cluster's worker threads"
            )
        else:
            jobs = options.jobs
            startup = 0 if jobs == 1 else 2.0
            print(
                f"  estimated wall time with --jobs {jobs}: "
                f"about {_fmt_duration(per_run * todo / jobs + startup)}"
            )
    if spread is not None:
        lines = precision_mod.plan_lines(
            spread,
            options.precision,
            plan.seeds,
            plan.design.method != "none",
            options.precision_year,
            plan.scenarios[0][1].name,
        )
        print("\n".join(lines))
    return BatchResult(out, plan.total, done_before, 0, 0, done_before, dry_run=True)


def _default_out() -> Path:
    """``runs/batch-<UTC timestamp>``."""
    stamp = provenance.now().replace(":", "").replace("-", "").replace("+0000", "Z")
    return Path("runs") / f"batch-{stamp}"


def _api_command(options: BatchOptions, out: Path) -> str:
    """The ``decouple batch`` command equivalent to a Python call, for the manifest."""
    parts = ["decouple", "batch", *map(str, options.scenario_paths), "--seeds", str(options.seeds)]
    sample = "none" if options.sample is None else options.sample
    if sample != "auto":
        parts += ["--sample", sample if isinstance(sample, str) else f"{sample[0]}:{sample[1]}"]
    if options.streams is not None:
        parts += ["--streams", options.streams]
    for o in options.overrides:
        parts += ["--set", o]
    parts += ["--out", str(out)]
    if not options.shared_history:
        parts.append("--no-shared-history")
    return "(python API) " + " ".join(shlex.quote(p) for p in parts)


def _pilot(plan: BatchPlan, n: int = 2) -> float:
    """Seconds per run of the first scenario, timed in-process over ``n`` runs."""
    from model.run import replicate_seed, simulate

    _, sc = plan.scenarios[0]
    values = plan.design.values[0]
    t0 = time.perf_counter()
    for i in range(n):
        simulate(sc, replicate_seed(plan.root_entropy, i), sample=dict(values))
    return (time.perf_counter() - t0) / n


def _fmt_duration(seconds: float) -> str:
    """``42 s``, ``3.5 min`` or ``2.1 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def run_batch(
    scenario_paths: Sequence[str | Path],
    seeds: int,
    sample: str | tuple | None = "auto",
    jobs: int = 1,
    scheduler: Any = None,
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    root_entropy: int | None = None,
    progress: bool = True,
    *,
    sample_seed: int | None = None,
    runs_per_shard: int = RUNS_PER_SHARD,
    shared_history: bool = True,
    streams: str | None = None,
) -> Path:
    """Run every scenario x replicate x parameter sample into a run store; resume if it exists.

    Args:
        scenario_paths: scenario YAML files (each resolved with ``extends`` and ``overrides``).
        seeds: replicates per scenario and sample (replicate *i* uses the same random stream
            in every scenario and sample).
        sample: ``"auto"`` (the default: the store's design when resuming, else
            ``lhs:20`` if a scenario declares ``uncertain`` ranges or an
            ``uncertain_ensemble``, else none), ``None`` or ``"none"`` (one sample, no sampled
            values: seed noise only), ``"lhs:K"`` or ``"sobol:K"`` (or a ``(method, K)``
            tuple).
        jobs: local worker processes; 1 runs in this process.
        scheduler: a Dask scheduler address (``"tcp://host:8786"``) or a
            ``dask.distributed.Client``; overrides ``jobs``.
        out: the run-store directory (default ``runs/batch-<timestamp>``). If it holds the
            same batch, finished runs are skipped (resume).
        overrides: ``"path=value"`` strings applied to every scenario (``--set``); a path
            so fixed is not sampled.
        root_entropy: the root ``SeedSequence`` entropy; default: the resumed store's, or
            fresh entropy (recorded in the manifest either way).
        progress: show a tqdm bar on stderr.
        sample_seed: seed of the QMC design; default like ``root_entropy``.
        runs_per_shard: replicates per task and shard.
        shared_history: simulate once the history scenarios share (per replicate and
            sample), then branch (:mod:`experiment.branching`); the data are the same.
        streams: ``"shared"`` (replicate *i* has one stream in every sample) or
            ``"per-sample"`` (each sample's replicates have their own streams; see
            :func:`experiment.plan.run_stream`); default: the resumed store's, else
            ``per-sample`` with ``sample="auto"`` and ``shared`` otherwise.

    Returns:
        The run-store directory. Runs that failed are listed in ``failures.jsonl`` there
        (and counted in the manifest's ``runs``); rerunning retries them.

    Raises:
        BatchError: on bad input or when ``out`` holds a different batch.
    """
    options = BatchOptions(
        scenario_paths,
        seeds,
        sample=sample,
        overrides=overrides,
        root_entropy=root_entropy,
        sample_seed=sample_seed,
        streams=streams,
        jobs=jobs,
        scheduler=scheduler,
        out=out,
        runs_per_shard=runs_per_shard,
        progress=progress,
        shared_history=shared_history,
    )
    return execute(options).out


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def _nonneg_int(text: str) -> int:
    """Argparse type: a whole number >= 0 (any base Python reads, e.g. ``0x2a``)."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _pos_float(text: str) -> float:
    """Argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _pos_int(text: str) -> int:
    """Argparse type: a whole number >= 1."""
    value = _nonneg_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def register(subparsers) -> None:
    """Add the ``batch`` sub-command to the ``decouple`` CLI."""
    p = subparsers.add_parser(
        "batch",
        help="run scenarios x seeds x parameter samples into a resumable run store",
        description=(
            "Run every scenario x replicate seed x parameter sample, streaming results to "
            f"DIR/{store.SHARDS}/*.parquet. Rerunning the same command on the same --out "
            "resumes: finished runs are skipped and failed ones retried. See docs/batch.md."
        ),
    )
    p.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="scenario YAML files")
    _add_design_arguments(p)
    _add_execution_arguments(p)
    p.set_defaults(func=_cmd_batch)


def _add_design_arguments(p: argparse.ArgumentParser) -> None:
    """The options that define the batch's data (a resume must repeat them)."""
    p.add_argument(
        "--seeds", type=_pos_int, default=20, help="replicates per scenario and sample (default 20)"
    )
    p.add_argument(
        "--sample",
        metavar="lhs:K|sobol:K|none",
        default="auto",
        help=(
            "draw K parameter samples from the scenarios' 'uncertain' ranges and "
            "'uncertain_ensemble' (default: lhs:20 when a scenario declares them, or the "
            "resumed store's design); none: seed noise only"
        ),
    )
    p.add_argument(
        "--sample-seed",
        type=_nonneg_int,
        help="seed of the sample design (default: fresh, recorded; a resume reuses the store's)",
    )
    p.add_argument(
        "--root-entropy",
        type=_nonneg_int,
        help="root SeedSequence entropy (default: fresh, recorded; a resume reuses the store's)",
    )
    p.add_argument(
        "--streams",
        choices=("shared", "per-sample"),
        help=(
            "replicate i's random stream across parameter samples: shared (common random "
            "numbers across parameter points, for sensitivity analysis) or per-sample (every "
            "run its own stream, for bands over seeds and draws); default: the resumed "
            "store's, else per-sample without --sample and shared with it"
        ),
    )


def _add_execution_arguments(p: argparse.ArgumentParser) -> None:
    """The options of where and how the batch runs (and ``--set``, kept in help order)."""
    p.add_argument(
        "--jobs",
        type=_pos_int,
        default=None,
        help="local worker processes; 1 runs in-process (default: the number of CPUs)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 (needs pip install .[cluster])",
    )
    p.add_argument(
        "--out",
        help=(
            "run-store directory (default runs/batch-<timestamp>); an existing one with the "
            "same batch is resumed"
        ),
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a parameter in every scenario (repeatable)",
    )
    p.add_argument(
        "--runs-per-shard",
        type=_pos_int,
        default=RUNS_PER_SHARD,
        help=f"replicates per shard file (default {RUNS_PER_SHARD})",
    )
    p.add_argument(
        "--no-shared-history",
        action="store_true",
        help=(
            "run every scenario from its start instead of simulating the quarters scenarios "
            "share once per seed and sample (the data are identical either way)"
        ),
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the number of runs and a wall-time estimate from a 2-run pilot; run nothing",
    )
    p.add_argument(
        "--precision",
        type=_pos_float,
        metavar="PP",
        help=(
            "with --dry-run: how many seeds x draws give the median and a threshold "
            "probability of self-sufficiency a 95%% interval half-width of PP percentage "
            "points (an 8-run pilot; see docs/batch.md)"
        ),
    )
    p.add_argument(
        "--precision-year",
        type=_pos_int,
        default=precision_mod.DEFAULT_YEAR,
        metavar="YEAR",
        help=f"calendar year of the --precision estimates (default {precision_mod.DEFAULT_YEAR})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _options_from_args(args) -> BatchOptions:
    """The :class:`BatchOptions` of a parsed ``decouple batch`` command line."""
    out = Path(args.out) if args.out else _default_out()
    own_process = sys.argv[1:2] == ["batch"]  # the `decouple batch` command, not a caller's main()
    options = BatchOptions(
        args.scenarios,
        args.seeds,
        sample=args.sample,
        overrides=args.set,
        root_entropy=args.root_entropy,
        sample_seed=args.sample_seed,
        streams=args.streams,
        jobs=args.jobs or os.cpu_count() or 1,
        scheduler=args.scheduler,
        out=out,
        runs_per_shard=args.runs_per_shard,
        progress=not args.quiet,
        dry_run=args.dry_run,
        own_process=own_process,
        shared_history=not args.no_shared_history,
        precision=args.precision,
        precision_year=args.precision_year,
    )
    if own_process:
        command = "decouple " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    else:  # called as decouple.cli.main([...]) from Python: rebuild the command
        command = _api_command(options, out)
    return dataclasses.replace(options, command=command)


def _cmd_batch(args) -> int:
    """Run ``decouple batch``; exit 0 (all runs finished), 1 (some failed), 2, or 128 + signal.

    SIGINT, SIGTERM and SIGHUP stop it alike (:func:`experiment.interrupts.signals_interrupt`);
    a write error (a full disk) ends it with a message, the finished runs kept.
    """
    options = _options_from_args(args)
    if args.scheduler and args.jobs is not None:
        print(
            f"{PROG}: note: --jobs is ignored with --scheduler (the cluster's workers run the "
            "tasks)",
            file=sys.stderr,
        )
    with interrupts.signals_interrupt():
        try:
            code = _run_command(options)
        except interrupts.Interrupted as exc:
            code = _interrupted(options.out, exc.name, exc.exit_code)
        except KeyboardInterrupt:
            code = _interrupted(options.out, "SIGINT", 130)
        if options.own_process and interrupts.received() is None:
            # Done: a signal from now on, while the process exits, changes nothing.
            interrupts.ignore_stop_signals()
    return code


def _run_command(options: BatchOptions) -> int:
    """:func:`execute` and the messages and exit code of its outcome."""
    out = options.out
    try:
        result = execute(options)
    except BatchError as exc:
        for problem in exc.problems:
            print(f"{PROG}: error: {problem}", file=sys.stderr)
        return 2
    except OSError as exc:
        code, message = _os_error_message(exc, out)
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return code
    if result.dry_run:
        return 1 if result.failed else 0
    if result.failed:
        print(
            f"{PROG}: {result.failed} of {result.total} runs failed (see "
            f"{result.out / store.FAILURES}); the other {result.finished} are in "
            f"{result.out / store.SHARDS}. Rerun the same command to retry the failed runs.",
            file=sys.stderr,
        )
        return 1
    print(
        f"{PROG}: {result.finished} runs in {result.out} ({result.ran} run now, "
        f"{result.skipped} already finished)"
    )
    return 0


def _interrupted(out, name: str, code: int) -> int:
    """Print that the batch was stopped by signal ``name`` and return ``code``."""
    print(
        f"{PROG}: interrupted ({name}); finished runs are kept in {out}. Rerun the same "
        "command (with the same --out) to resume.",
        file=sys.stderr,
    )
    return code


def _os_error_message(exc: OSError, out) -> tuple[int, str]:
    """Exit code and message for an error writing the store: 1 for a full disk, 2 if unwritable."""
    import errno

    where = exc.filename or out
    reason = exc.strerror or str(exc)
    full = exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)) or (
        "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc)
    )
    if full:
        return 1, (
            f"the disk is full: cannot write {where} (No space left on device). The runs "
            f"finished so far are kept in {out}: free some space and rerun the same command "
            "to resume."
        )
    if store.not_writable(exc):
        return 2, f"cannot write {where} ({reason}); choose a writable --out"
    return 1, (
        f"cannot write {where} ({reason}). The runs finished so far are kept in {out}: "
        "rerun the same command to resume."
    )


#: The engine's public names, importable from here too (tests, scripts, docs/batch.md).
__all__ = [
    "FAIL_ENV",
    "RUNS_PER_SHARD",
    "SAMPLE_METHODS",
    "BatchError",
    "BatchOptions",
    "BatchPlan",
    "BatchResult",
    "Task",
    "TaskResult",
    "design_samples",
    "execute",
    "finished_runs",
    "make_plan",
    "register",
    "run_batch",
    "run_task",
    "shard_name",
    "task_size",
]
