"""Where a batch's tasks run: in this process, local worker processes or a Dask cluster.

Every executor calls :func:`run_task` on each :class:`~experiment.plan.Task` (or, with shared
history, :class:`~experiment.branching.TreeTask`) and yields ``(task, TaskResult |
TreeResult | BaseException)`` as tasks complete; :func:`stream_results` picks one.
At most ``IN_FLIGHT_PER_WORKER x workers`` tasks are in flight, so memory stays flat
however many runs the batch has. A run depends only on its task, so the data are
bit-identical whatever the executor or the number of workers.

A local worker process that dies (killed, out of memory, a crash) costs only the runs of
the task it was running: the pool is rebuilt, the other tasks in flight are run again (at
most :data:`MAX_TASK_RETRIES` times each), and the dead worker's task is reported as
:class:`WorkerDied` naming the cause (the signal or exit code). Each worker notes the task it
is running in a small file (:func:`_pool_task`), which is how the task is found.

Testing hooks: the environment variable ``DECOUPLE_FAIL_RUN="scenario:seed:sample[,...]"``
(:data:`FAIL_ENV`) makes the named runs raise ``RuntimeError`` in the worker. It is read by
the process that starts the batch (:func:`parse_fail_runs`) and sent with each task, so it
reaches every executor. The pause hook's ``run:SCENARIO:SEED:SAMPLE`` point
(:mod:`experiment.interrupts`) travels the same way.

Only the standard library is imported at module level.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import interrupts, provenance, store
from .errors import BatchError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .plan import Task

#: Environment variable of the failure-injection testing hook (see the module docstring).
FAIL_ENV = "DECOUPLE_FAIL_RUN"

#: Tasks kept in flight per worker: enough to keep workers busy, few enough that memory
#: stays flat however many runs the batch has.
IN_FLIGHT_PER_WORKER = 2

#: Times a task is run again after the pool broke while it was queued or running in a
#: worker that did not die (another worker did); then its runs are failed.
MAX_TASK_RETRIES = 3

#: Seconds a stopped worker or forkserver is given to exit before it is killed.
STOP_GRACE = 5.0

#: Thread pools of numerical libraries, one thread each in pool workers (set unless the user
#: set them): parallelism is across runs, and idle BLAS threads spinning in J workers on J
#: cores take CPU time from the runs.
_SINGLE_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

#: Modules the forkserver imports once, before it forks the workers.
_FORKSERVER_PRELOAD = [
    "experiment.branching",
    "experiment.executors",
    "experiment.plan",
    "model.run",
    "model.model",
    "pyarrow",
]


def parse_fail_runs(text: str | None) -> frozenset:
    """Parse the ``DECOUPLE_FAIL_RUN`` hook: ``"scenario:seed:sample[,...]"``."""
    out = set()
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        parts = item.split(":")
        if len(parts) != 3:
            raise BatchError(
                f"{FAIL_ENV}={text!r}: expected scenario:seed:sample[,scenario:seed:sample...]"
            )
        try:
            out.add((parts[0], int(parts[1]), int(parts[2])))
        except ValueError:
            raise BatchError(f"{FAIL_ENV}={text!r}: seed and sample must be integers") from None
    return frozenset(out)


# --------------------------------------------------------------------------------------
# Running a task (in whatever process)
# --------------------------------------------------------------------------------------


@dataclass
class TaskResult:
    """What a worker sends back: the finished runs' rows (an Arrow table) and failures.

    ``fingerprint`` is :func:`~experiment.provenance.model_fingerprint` in the worker: rows
    computed by other model code than the batch's (a cluster worker with another installed
    version, a file edited mid-batch) are refused rather than mixed in.
    """

    table: Any  # pyarrow.Table or None when every run failed
    done: list[int]
    failures: list[dict]
    fingerprint: str = ""


_SCENARIO_CACHE: dict[str, Any] = {}
_PREPARED = False
_FROZEN = False


def prepare_process(own: bool = False) -> None:
    """Once per process: in a process of ours, freeze the import-time heap for the GC.

    A model run leaves reference cycles (model, agents, scheduled events) that only a full
    garbage collection frees; left to Python's thresholds they pile up (about 11 MiB per
    baseline run measured here, so a worker grew past 400 MiB). ``gc.freeze()`` moves the
    objects alive after the imports out of the collector's sight, so a full collection
    after every run costs a few ms instead of ~100 ms, and a worker's memory stays flat.
    Only done in child processes (pool or Dask workers) and, with ``own=True``, in the
    ``decouple batch`` command's process for ``--jobs 1``: a Python caller's process is left
    alone (its runs are followed by one full collection per task instead).
    """
    global _PREPARED, _FROZEN
    if _PREPARED:
        return
    _PREPARED = True
    import gc
    import multiprocessing

    if own or multiprocessing.parent_process() is not None:
        gc.collect()
        gc.freeze()
        _FROZEN = True


def frozen() -> bool:
    """True if :func:`prepare_process` froze this process's heap (then collect after runs)."""
    return _FROZEN


def scenario_from(scenario_hash: str, data: dict):
    """The :class:`~model.scenario.Scenario` of resolved ``data``, rebuilt once per worker."""
    sc = _SCENARIO_CACHE.get(scenario_hash)
    if sc is None:
        from model.scenario import Scenario

        sc = Scenario.model_validate(data)
        _SCENARIO_CACHE[scenario_hash] = sc
    return sc


def _scenario_of(task: Task):
    """The task's :class:`~model.scenario.Scenario`, rebuilt once per worker and hash."""
    return scenario_from(task.scenario_hash, task.scenario_data)


def run_table(cols: dict, scenario: str, seed: int, sample: int):
    """One run's columns (from :func:`model.run.simulate`) as an Arrow table with ids."""
    import numpy as np
    import pyarrow as pa

    n = len(cols["quarter"])
    arrays = {
        "scenario": pa.array([scenario] * n, type=pa.string()),
        "seed": pa.array(np.full(n, seed, dtype=np.int64)),
        "sample": pa.array(np.full(n, sample, dtype=np.int64)),
    }
    for name, values in cols.items():
        arrays[name] = pa.array(values)
    return pa.table(arrays)


def run_task(task: Task) -> TaskResult:
    """Run every replicate of ``task`` and return the rows in columnar form.

    A run that raises is recorded as a failure; the task goes on with its other runs.
    This is the function every executor calls (in-process, process pool, Dask). A
    :class:`~experiment.branching.TreeTask` (shared history) is run by
    :func:`~experiment.branching.run_tree_task`, which returns a ``TreeResult``.
    """
    import gc

    if hasattr(task, "tree"):  # a TreeTask
        from .branching import run_tree_task

        return run_tree_task(task)

    import pyarrow as pa

    from model.run import simulate

    from .plan import run_stream

    prepare_process()
    scenario = _scenario_of(task)
    tables, done, failures = [], [], []
    for seed in task.seeds:
        key = (task.scenario, seed, task.sample)
        if task.pause:
            interrupts.pause_at(f"run:{task.scenario}:{seed}:{task.sample}", task.pause)
        try:
            if key in task.fail_runs:
                raise RuntimeError(f"injected failure of run {key} ({FAIL_ENV} testing hook)")
            stream = run_stream(task.root_entropy, seed, task.sample, task.streams)
            cols = simulate(scenario, stream, sample=dict(task.values))
            tables.append(run_table(cols, task.scenario, seed, task.sample))
            done.append(seed)
        except Exception as exc:  # noqa: BLE001 - a failing run must not kill the batch
            failures.append(store.failure_record(key, exc, traceback.format_exc()))
        if _FROZEN:
            gc.collect()  # free the run's reference cycles now (see prepare_process)
    if not _FROZEN:
        gc.collect()  # in the caller's process: once per task, a full collection is slower
    table = pa.concat_tables(tables) if tables else None
    return TaskResult(table, done, failures, provenance.model_fingerprint())


class WorkerDied(RuntimeError):
    """The worker process running a task died: killed, out of memory or crashed."""


_NOTES: Path | None = None


def init_worker(notes: str | None = None) -> None:
    """Process-pool initializer: import the model once per worker, before the first task.

    Workers ignore SIGINT: Ctrl-C reaches the whole process group, and the parent, which
    handles it, stops the workers itself (otherwise each would fail its current task and
    go on with the queued ones). SIGTERM and SIGHUP keep their default: a worker so
    signalled dies, and the parent (signalled too, or not) deals with it.

    Args:
        notes: the directory where the worker notes the task it runs (see :func:`_pool_task`).
    """
    global _NOTES
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _NOTES = Path(notes) if notes else None
    import pyarrow  # noqa: F401

    import model.run  # noqa: F401

    provenance.model_fingerprint()
    prepare_process()


def _pool_task(seq: int, task: Task) -> TaskResult:
    """What a pool worker runs: note ``seq`` (and the memory so far) as its task, then run it.

    The note is the file ``<notes>/<pid>`` (written atomically: no lock a killed worker
    could leave held), read by the parent when a worker dies to find the task it ran.
    """
    if _NOTES is not None:
        import resource

        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        note = _NOTES / str(os.getpid())
        tmp = _NOTES / f".{os.getpid()}.tmp"
        with contextlib.suppress(OSError):
            tmp.write_text(f"{seq} {peak_kib}", encoding="ascii")
            os.replace(tmp, note)
    return run_task(task)


# --------------------------------------------------------------------------------------
# The executors: each yields (task, TaskResult | BaseException) as tasks complete
# --------------------------------------------------------------------------------------


def stream_results(
    tasks: Iterator[Task], jobs: int = 1, client=None, own_process: bool = False
) -> Iterator[tuple[Task, Any]]:
    """The executor for the options: Dask if ``client``, in-process if ``jobs == 1``, a pool."""
    if client is not None:
        return execute_dask(tasks, client)
    if jobs == 1:
        return execute_inprocess(tasks, own_process)
    return execute_pool(tasks, jobs)


def execute_inprocess(
    tasks: Iterator[Task], own_process: bool = False
) -> Iterator[tuple[Task, Any]]:
    """Run the tasks one after the other in this process (``--jobs 1``)."""
    if own_process:
        import pyarrow  # noqa: F401

        import model.run  # noqa: F401

        prepare_process(own=True)
    for task in tasks:
        yield task, run_task(task)


@contextlib.contextmanager
def _single_threaded_children():
    """Set ``_SINGLE_THREAD_ENV`` for the processes started inside, then restore the caller's."""
    saved = {var: os.environ.get(var) for var in _SINGLE_THREAD_ENV}
    for var in _SINGLE_THREAD_ENV:
        os.environ.setdefault(var, "1")
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def _mp_context():
    """The multiprocessing context of the pool: forkserver (preloaded) where there is one."""
    import multiprocessing as mp

    methods = mp.get_all_start_methods()
    ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
    if ctx.get_start_method() == "forkserver":
        # Workers fork from a server that has already imported the model.
        with contextlib.suppress(Exception):
            ctx.set_forkserver_preload(_FORKSERVER_PRELOAD)
    return ctx


def start_forkserver() -> None:
    """Start the forkserver now: it imports the model while this process plans the batch.

    Workers fork from it; started only when the pool is created, its imports (about a
    second) would come on top of the planning instead of beside it.
    """
    ctx = _mp_context()
    if ctx.get_start_method() != "forkserver":
        return
    from multiprocessing import forkserver

    # Started with SIGINT ignored: a Ctrl-C during its imports would print a traceback.
    with _single_threaded_children(), interrupts.sigint_ignored(), contextlib.suppress(Exception):
        forkserver.ensure_running()


def stop_forkserver() -> None:
    """Stop the forkserver this process started, if any, so that nothing is left running.

    Called by the ``decouple batch`` command when its pool is gone (its workers hold the
    forkserver's "alive" pipe, so it would outlive them otherwise only briefly). Bounded:
    a forkserver that does not exit within :data:`STOP_GRACE` seconds is killed.
    """
    try:
        from multiprocessing import forkserver, util

        server = forkserver._forkserver
        pid, alive = server._forkserver_pid, server._forkserver_alive_fd
    except (ImportError, AttributeError):  # pragma: no cover - another Python's internals
        return
    if pid is None:
        return
    with server._lock:
        with contextlib.suppress(OSError):
            os.close(alive)
        server._forkserver_alive_fd = None
        _reap(pid)
        server._forkserver_pid = None
        address = server._forkserver_address
        if address and not util.is_abstract_socket_namespace(address):
            with contextlib.suppress(OSError):
                os.unlink(address)
        server._forkserver_address = None


def _reap(pid: int) -> None:
    """Wait up to :data:`STOP_GRACE` seconds for child ``pid`` to exit, then kill it."""
    deadline = time.monotonic() + STOP_GRACE
    try:
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return
            time.sleep(0.01)
    except ChildProcessError:  # already reaped
        return


def execute_pool(tasks: Iterator[Task], jobs: int) -> Iterator[tuple[Task, Any]]:
    """Local processes (forkserver or spawn), at most ``IN_FLIGHT_PER_WORKER x jobs`` tasks queued.

    A worker that dies (out of memory, segfault, killed) breaks the pool: its task is
    reported as :class:`WorkerDied`, a fresh pool takes over and the other tasks in flight
    run again. Workers get single-threaded numerical libraries (``_SINGLE_THREAD_ENV``)
    unless the caller set those variables.
    """
    with _single_threaded_children():
        yield from _execute_pool_inner(tasks, jobs)


def _new_pool(jobs: int, ctx, notes: Path):
    """A process pool of ``jobs`` workers initialised by :func:`init_worker`."""
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(
        max_workers=jobs, mp_context=ctx, initializer=init_worker, initargs=(str(notes),)
    )


def _execute_pool_inner(tasks: Iterator[Task], jobs: int) -> Iterator[tuple[Task, Any]]:
    """The loop of :func:`execute_pool`: keep the pool fed, rebuild it if a worker dies."""
    import collections
    import itertools
    import shutil
    import tempfile
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = _mp_context()
    limit = max(1, jobs * IN_FLIGHT_PER_WORKER)
    tasks = iter(tasks)
    notes = Path(tempfile.mkdtemp(prefix="decouple-workers-"))
    pool = _new_pool(jobs, ctx, notes)
    pending: dict = {}  # future -> (seq, task)
    retry: collections.deque = collections.deque()  # (seq, task) to run again
    breaks: dict[int, int] = {}  # seq -> pool breaks the task was in flight for
    numbers = itertools.count()
    completed = False
    try:
        exhausted = False
        while True:
            broken = False
            while len(pending) < limit:
                if retry:
                    item = retry.popleft()
                elif exhausted or (task := next(tasks, None)) is None:
                    exhausted = True
                    break
                else:
                    item = (next(numbers), task)
                try:
                    pending[pool.submit(_pool_task, *item)] = item
                except BrokenProcessPool:  # it broke since the last wait
                    retry.appendleft(item)
                    broken = True
                    break
            if not pending and not broken:
                break
            if not broken:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                broken = any(_is_broken(f) for f in done)
            if broken:
                wait(pending)  # a broken pool fails every future it holds
                yield from _after_break(pool, pending, retry, breaks, notes)
                _stop_pool(pool)
                pool = _new_pool(jobs, ctx, notes)
                continue
            for fut in done:
                seq, task = pending.pop(fut)
                breaks.pop(seq, None)
                try:
                    result = fut.result()
                except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result
                    result = exc
                yield task, result
        completed = True
    finally:
        if completed:
            pool.shutdown(wait=True)
        else:  # interrupted (Ctrl-C, SIGTERM) or abandoned: stop the workers now
            _stop_pool(pool)
        shutil.rmtree(notes, ignore_errors=True)


def _is_broken(fut) -> bool:
    """True if ``fut`` failed because its pool broke (a worker died)."""
    from concurrent.futures.process import BrokenProcessPool

    return isinstance(fut.exception(), BrokenProcessPool)


def _after_break(pool, pending: dict, retry, breaks: dict, notes: Path):
    """Sort a broken pool's futures: results, the dead worker's task, tasks to run again.

    Yields the results that were in before the break and ``(task, WorkerDied)`` for the
    task each dead worker was running; the other tasks go to ``retry`` (or fail after
    :data:`MAX_TASK_RETRIES` breaks). Forgets every future.
    """
    deaths = _dead_workers(pool)  # {pid: cause}
    running = _running_tasks(notes, deaths)  # {seq: (pid, note)}
    last = "; ".join(f"pid {pid} {cause}" for pid, cause in deaths.items()) or "no cause known"
    for fut, (seq, task) in list(pending.items()):
        if not _is_broken(fut):
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001
                result = exc
            yield task, result
            continue
        if seq in running:
            pid, peak = running[seq]
            yield (
                task,
                WorkerDied(
                    f"the worker process (pid {pid}) running this task {deaths[pid]} "
                    f"(its peak memory when the task started: {peak})"
                ),
            )
            continue
        breaks[seq] = breaks.get(seq, 0) + 1
        if breaks[seq] > MAX_TASK_RETRIES:
            yield (
                task,
                WorkerDied(
                    f"the worker pool broke {breaks[seq]} times while this task was queued "
                    f"or running (a worker died each time; the last: {last})"
                ),
            )
        else:
            retry.append((seq, task))
    pending.clear()


def _dead_workers(pool) -> dict[int, str]:
    """``{pid: cause}`` of the workers of a broken pool that died on their own.

    The pool terminates (SIGTERM) the workers still alive when one dies; those are not
    counted. Waits (boundedly) for the pool's manager thread to finish that first, so the
    exit codes are known.
    """
    thread = getattr(pool, "_executor_manager_thread", None)
    if thread is not None:
        thread.join(STOP_GRACE)
    out = {}
    for pid, proc in list((getattr(pool, "_processes", None) or {}).items()):
        code = proc.exitcode
        if code is None or code == -signal.SIGTERM:
            continue
        out[pid] = _death_cause(code)
    return out


def _death_cause(exitcode: int) -> str:
    """How a worker died, from its exit code, e.g. ``was killed by signal 9 (SIGKILL: ...)``."""
    if exitcode >= 0:
        return f"exited with code {exitcode}"
    num = -exitcode
    try:
        name = signal.Signals(num).name
    except ValueError:
        name = f"signal {num}"
    text = f"was killed by signal {num} ({name})"
    if num == signal.SIGKILL:
        text += (
            ": the kernel's out-of-memory killer sends SIGKILL, so the machine may have run "
            "out of memory (see dmesg; fewer --jobs use less)"
        )
    elif num in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT):
        text += ": a crash in native code"
    return text


def _running_tasks(notes: Path, pids) -> dict[int, tuple[int, str]]:
    """``{seq: (pid, peak memory)}`` of the tasks the workers ``pids`` last noted."""
    out = {}
    for pid in pids:
        try:
            seq, peak_kib = (notes / str(pid)).read_text(encoding="ascii").split()
            out[int(seq)] = (pid, f"{int(peak_kib) / 1024:.0f} MiB")
        except (OSError, ValueError):
            continue
    return out


def _stop_pool(pool) -> None:
    """Cancel queued tasks and stop a process pool's workers: terminate, wait a little, kill."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        with contextlib.suppress(Exception):
            terminate()
    else:
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.terminate()
    with contextlib.suppress(Exception):
        pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + STOP_GRACE
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.exitcode is None:
                proc.kill()
                proc.join(1.0)


def dask_client(address):
    """A ``dask.distributed.Client`` for ``address`` and whether it is ours to close.

    ``address`` may be a Client already (the caller's, so not ours).

    Raises:
        BatchError: if dask.distributed is missing or no scheduler answers at ``address``.
    """
    try:
        from dask.distributed import Client
    except ImportError:
        raise BatchError(
            "--scheduler needs dask.distributed, which is not installed: pip install .[cluster]"
        ) from None
    if isinstance(address, Client):
        return address, False
    try:
        return Client(address, timeout="20s"), True
    except (OSError, TimeoutError, ValueError) as exc:
        raise BatchError(
            f"--scheduler {address}: cannot connect to a Dask scheduler there "
            f"({type(exc).__name__}: {exc})"
        ) from None


def dask_threads(client) -> int:
    """Worker threads of a Dask cluster (1 if the scheduler cannot tell)."""
    try:
        threads = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values())
    except Exception:  # noqa: BLE001 - the count only sizes queues and tasks
        threads = 1
    return max(1, threads)


def execute_dask(tasks: Iterator[Task], client) -> Iterator[tuple[Task, Any]]:
    """A Dask distributed cluster; at most ``IN_FLIGHT_PER_WORKER x threads`` tasks submitted.

    Workers must be able to import this package (``pip install .`` on every worker).
    """
    from dask.distributed import as_completed

    limit = max(2, IN_FLIGHT_PER_WORKER * dask_threads(client))
    tasks = iter(tasks)
    futures: dict = {}
    ac = as_completed()

    def submit(task) -> None:
        fut = client.submit(run_task, task, pure=False)
        futures[fut.key] = task
        ac.add(fut)

    try:
        for _ in range(limit):
            task = next(tasks, None)
            if task is None:
                break
            submit(task)
        for fut in ac:
            task = futures.pop(fut.key)
            try:
                yield task, fut.result()
            except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker
                yield task, exc
            fut.release()
            nxt = next(tasks, None)
            if nxt is not None:
                submit(nxt)
    finally:
        for key in list(futures):
            futures.pop(key)
        with contextlib.suppress(Exception):
            ac.clear()
