"""``decouple batch``: many scenarios x seeds x parameter samples, streamed to a run store.

A batch is the cross product of

* **scenarios** (files, resolved with ``extends`` and ``--set``),
* **replicates** ``i = 0..seeds-1``: replicate *i* draws from
  :func:`model.run.replicate_seed` ``(root_entropy, i)`` in every scenario and every sample
  (common random numbers, so scenario differences are paired comparisons), and
* **parameter samples** ``k = 0..K-1`` drawn once per batch from the union of the scenarios'
  ``uncertain`` blocks with a scrambled Latin hypercube or Sobol' design
  (:mod:`scipy.stats.qmc`). Sample *k* is the same parameter vector in every run of every
  scenario, so samples are comparable across scenarios. Without ``--sample`` there is one
  sample, ``k = 0``, with no sampled values.

Why it is built this way (the pains of other tools it avoids):

* Results never accumulate in memory (Mesa #1915, EMA Workbench #304): each task is a small
  group of runs of one scenario and sample; its rows are written to one Parquet *shard* as
  soon as it completes, atomically (temporary file in the same directory, then
  :func:`os.replace`), and dropped. At most ``2 x workers`` tasks are in flight.
* Every run depends only on its key (scenario, replicate, sample) and the batch's recorded
  root entropy (Mesa #1060), so the data are bit-identical whatever the executor (in-process,
  local processes, a Dask cluster) or the number of workers, and a killed batch resumes
  exactly: the finished runs are those found in the shards (their run keys are stored in
  each shard's Parquet metadata), and only the others are run again.
* A failing run is recorded in ``failures.jsonl`` (run key, exception, traceback) and the
  batch goes on; the command then exits 1. Rerunning the same command retries failed runs.
* A tqdm bar on stderr shows runs done, failures and an ETA; ``--dry-run`` counts the runs
  and estimates wall time from a short pilot.

Testing hook: the environment variable ``DECOUPLE_FAIL_RUN="scenario:seed:sample[,...]"``
makes the named runs raise ``RuntimeError`` in the worker. It is read by the process that
starts the batch and sent with each task, so it reaches every executor.

Only the standard library is imported at module level: the CLI imports this module to
register the sub-command, and ``decouple --help`` must stay fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import sys
import time
import traceback
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import provenance

#: Default number of runs (consecutive replicates of one scenario and sample) per shard.
RUNS_PER_SHARD = 10

#: Environment variable of the failure-injection testing hook (see the module docstring).
FAIL_ENV = "DECOUPLE_FAIL_RUN"

#: Parquet key-value metadata key listing the run keys a shard holds.
RUNS_META_KEY = b"decouple.runs"

#: Sampling methods accepted by ``--sample``.
SAMPLE_METHODS = ("lhs", "sobol")

#: Tasks kept in flight per worker: enough to keep workers busy, few enough that memory
#: stays flat however many runs the batch has.
IN_FLIGHT_PER_WORKER = 2

PROG = "decouple batch"


class BatchError(Exception):
    """Bad input or a store that cannot be used: reported without a traceback, exit 2.

    Attributes:
        problems: one human-readable message per problem.
    """

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


# --------------------------------------------------------------------------------------
# Run keys, tasks and results
# --------------------------------------------------------------------------------------

RunKey = tuple[str, int, int]
"""``(scenario, seed, sample)``: identifies one run of a batch."""


def shard_name(scenario: str, sample: int, seeds: Sequence[int]) -> str:
    """Deterministic shard file name for runs of one scenario and sample.

    Named after the first and last replicate the shard holds. A resumed batch only reruns
    runs not found in any shard, so a new shard's first replicate is never the first
    replicate of an existing shard: names cannot collide and resume never overwrites data.
    """
    return f"{scenario}-k{sample:05d}-r{min(seeds):05d}-{max(seeds):05d}.parquet"


@dataclass(frozen=True)
class Task:
    """A unit of work sent to a worker: some replicates of one scenario and one sample.

    Carries everything a run needs (the resolved scenario as plain data, the sampled
    values, the root entropy), so a worker needs no access to the scenario files or the
    store, which is what lets it run on a remote cluster.
    """

    scenario: str
    scenario_hash: str
    scenario_data: dict
    sample: int
    values: dict
    seeds: tuple[int, ...]
    root_entropy: int
    fail_runs: frozenset = frozenset()

    def run_keys(self) -> list[RunKey]:
        """The run keys of this task."""
        return [(self.scenario, s, self.sample) for s in self.seeds]


@dataclass
class TaskResult:
    """What a worker sends back: the finished runs' rows (an Arrow table) and failures.

    ``fingerprint`` is :func:`model_fingerprint` in the worker: rows computed by other
    model code than the batch's (a cluster worker with another installed version, a
    file edited mid-batch) are refused rather than mixed in.
    """

    table: Any  # pyarrow.Table or None when every run failed
    done: list[int]
    failures: list[dict]
    fingerprint: str = ""


_FINGERPRINT: str | None = None


def model_fingerprint() -> str:
    """sha256 of the model's source (``model/*.py`` and ``model/*.yaml``), once per process.

    The git commit and dirty flag do not identify uncommitted code; this does. It is
    recorded in the manifest, checked on resume and compared with every worker's.
    """
    global _FINGERPRINT
    if _FINGERPRINT is None:
        import hashlib
        import importlib.util

        spec = importlib.util.find_spec("model")
        digest = hashlib.sha256()
        for loc in (spec.submodule_search_locations or []) if spec else []:
            for path in sorted(Path(loc).iterdir()):
                if path.suffix in (".py", ".yaml") and path.is_file():
                    digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        _FINGERPRINT = digest.hexdigest()
    return _FINGERPRINT


_SCENARIO_CACHE: dict[str, Any] = {}
_PREPARED = False
_FROZEN = False


def _prepare_process(own: bool = False) -> None:
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


def _scenario_of(task: Task):
    """The task's :class:`~model.scenario.Scenario`, rebuilt once per worker and hash."""
    sc = _SCENARIO_CACHE.get(task.scenario_hash)
    if sc is None:
        from model.scenario import Scenario

        sc = Scenario.model_validate(task.scenario_data)
        _SCENARIO_CACHE[task.scenario_hash] = sc
    return sc


def _run_table(cols: dict, scenario: str, seed: int, sample: int):
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


def _failure_record(key: RunKey, exc: BaseException, tb: str) -> dict:
    scenario, seed, sample = key
    return {
        "run": {"scenario": scenario, "seed": seed, "sample": sample},
        "exception": type(exc).__name__,
        "message": str(exc),
        "traceback": tb,
        "time": provenance.now(),
        "host": os.uname().nodename if hasattr(os, "uname") else "unknown",
        "pid": os.getpid(),
    }


def run_task(task: Task) -> TaskResult:
    """Run every replicate of ``task`` and return the rows in columnar form.

    A run that raises is recorded as a failure; the task goes on with its other runs.
    This is the function every executor calls (in-process, process pool, Dask).
    """
    import gc

    import pyarrow as pa

    from model.run import replicate_seed, simulate

    _prepare_process()
    scenario = _scenario_of(task)
    tables, done, failures = [], [], []
    for seed in task.seeds:
        key = (task.scenario, seed, task.sample)
        try:
            if key in task.fail_runs:
                raise RuntimeError(f"injected failure of run {key} ({FAIL_ENV} testing hook)")
            cols = simulate(
                scenario, replicate_seed(task.root_entropy, seed), sample=dict(task.values)
            )
            tables.append(_run_table(cols, task.scenario, seed, task.sample))
            done.append(seed)
        except Exception as exc:  # noqa: BLE001 - a failing run must not kill the batch
            failures.append(_failure_record(key, exc, traceback.format_exc()))
        if _FROZEN:
            gc.collect()  # free the run's reference cycles now (see _prepare_process)
    if not _FROZEN:
        gc.collect()  # in the caller's process: once per task, a full collection is slower
    table = pa.concat_tables(tables) if tables else None
    return TaskResult(table, done, failures, model_fingerprint())


def _init_worker() -> None:
    """Process-pool initializer: import the model once per worker, before the first task.

    Workers ignore SIGINT: Ctrl-C reaches the whole process group, and the parent, which
    handles it, stops the workers itself (otherwise each would fail its current task and
    go on with the queued ones).
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import pyarrow  # noqa: F401

    import model.run  # noqa: F401

    model_fingerprint()
    _prepare_process()


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
# Parameter samples
# --------------------------------------------------------------------------------------


def parse_sample_spec(spec: str | tuple | None) -> tuple[str, int]:
    """``"lhs:16"`` / ``"sobol:64"`` / ``None`` / ``"none"`` -> ``(method, K)``.

    Raises:
        BatchError: naming the allowed forms.
    """
    if spec is None:
        return ("none", 1)
    if isinstance(spec, tuple):
        method, n = spec
    else:
        text = str(spec).strip().lower()
        if text == "none":
            return ("none", 1)
        method, sep, n = text.partition(":")
        if not sep:
            raise BatchError(
                f"--sample {spec}: expected METHOD:K with METHOD one of {', '.join(SAMPLE_METHODS)}, e.g. lhs:32"
            )
    if method not in SAMPLE_METHODS:
        raise BatchError(
            f"--sample {spec}: unknown method '{method}'; allowed: {', '.join(SAMPLE_METHODS)} (or none)"
        )
    try:
        n = int(n)
    except (TypeError, ValueError):
        raise BatchError(f"--sample {spec}: K must be a whole number, e.g. {method}:32") from None
    if n < 1:
        raise BatchError(f"--sample {spec}: K must be at least 1")
    return (method, n)


def _ppf(dist, u):
    """Map unit-interval points ``u`` to a :class:`~model.scenario.Distribution`'s values.

    ``uniform`` on [low, high]; ``loguniform`` on [low, high]; ``triangular`` with its mode;
    ``normal`` with mean and sd, truncated to [low, high] when either bound is given.
    """
    import numpy as np
    from scipy import stats

    u = np.clip(np.asarray(u, dtype=float), 1e-12, 1 - 1e-12)
    if dist.dist == "uniform":
        return stats.uniform(loc=dist.low, scale=dist.high - dist.low).ppf(u)
    if dist.dist == "loguniform":
        return stats.loguniform(dist.low, dist.high).ppf(u)
    if dist.dist == "triangular":
        width = dist.high - dist.low
        return stats.triang((dist.mode - dist.low) / width, loc=dist.low, scale=width).ppf(u)
    if dist.dist == "normal":
        if dist.low is None and dist.high is None:
            return stats.norm(dist.mean, dist.sd).ppf(u)
        a = -np.inf if dist.low is None else (dist.low - dist.mean) / dist.sd
        b = np.inf if dist.high is None else (dist.high - dist.mean) / dist.sd
        return stats.truncnorm(a, b, loc=dist.mean, scale=dist.sd).ppf(u)
    raise BatchError(f"unknown distribution '{dist.dist}'")  # pragma: no cover - schema forbids it


def _unit_points(method: str, n: int, d: int, seed: int) -> tuple[Any, list[str]]:
    """``n`` x ``d`` points in the unit cube (scrambled LHS or Sobol') and any notes."""
    import warnings

    import numpy as np
    from scipy.stats import qmc

    rng = np.random.default_rng(seed)
    cls = qmc.LatinHypercube if method == "lhs" else qmc.Sobol
    try:
        engine = cls(d, scramble=True, rng=rng)
    except TypeError:  # scipy < 1.15 names the argument ``seed``
        engine = cls(d, scramble=True, seed=rng)
    notes = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        points = engine.random(n)
    for w in caught:
        notes.append(f"note: {w.message}")
    return points, notes


@dataclass
class SampleDesign:
    """The batch's parameter samples.

    Attributes:
        method: ``"none"``, ``"lhs"`` or ``"sobol"``.
        n: number of samples K (1 for ``"none"``).
        seed: the seed of the QMC engine (``None`` for ``"none"``).
        distributions: ``{path: Distribution}`` sampled, in sorted path order (the design's
            dimension order).
        values: per sample index, ``{path: value}`` (empty dicts for ``"none"``).
        notes: messages for the user (e.g. Sobol' balance, overridden fixed values).
    """

    method: str
    n: int
    seed: int | None
    distributions: dict
    values: list[dict]
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        """The manifest's ``samples`` entry (method, K, seed, paths, distributions)."""
        return {
            "method": self.method,
            "n": self.n,
            "seed": self.seed,
            "paths": list(self.distributions),
            "distributions": {
                p: d.model_dump(mode="json", exclude_none=True)
                for p, d in self.distributions.items()
            },
        }


def design_samples(
    scenarios, method: str, n: int, seed: int | None, fixed: Iterable[str] = ()
) -> SampleDesign:
    """Draw the batch's parameter samples from the union of the scenarios' ``uncertain`` blocks.

    Every sample is applied to every run of every scenario (so sample *k* is comparable
    across scenarios). A path fixed with ``--set`` is not sampled. Values of integer
    parameters are rounded to the nearest integer.

    Args:
        scenarios: resolved :class:`~model.scenario.Scenario` objects.
        method: ``"none"``, ``"lhs"`` or ``"sobol"``.
        n: number of samples K.
        seed: QMC seed (recorded in the manifest).
        fixed: paths given with ``--set`` (removed from the sampled paths).

    Raises:
        BatchError: if two scenarios declare the same path with different distributions,
            a path is not a known parameter or not a number, or ``--sample`` is given but
            no scenario declares an ``uncertain`` block.
    """
    from model import parameters as params_mod

    if method == "none":
        return SampleDesign("none", 1, None, {}, [{}])
    fixed = set(fixed)
    union: dict = {}
    declared_by: dict[str, str] = {}
    problems, notes = [], []
    for sc in scenarios:
        for path, dist in sc.uncertain.items():
            if path in union and union[path] != dist:
                problems.append(
                    f"uncertain parameter '{path}' has different distributions in scenarios "
                    f"'{declared_by[path]}' ({_dist_text(union[path])}) and '{sc.name}' ({_dist_text(dist)}); "
                    "a batch samples one value per sample index for all scenarios, so declare the same range"
                )
            union.setdefault(path, dist)
            declared_by.setdefault(path, sc.name)
    for path in sorted(union):
        if not params_mod.known_path(path):
            problems.append(
                f"uncertain parameter '{path}' (scenario '{declared_by[path]}') is not a known parameter (see `decouple params`)"
            )
        elif isinstance(params_mod.default_value(path), bool) or not isinstance(
            params_mod.default_value(path), (int, float)
        ):
            problems.append(
                f"uncertain parameter '{path}' (scenario '{declared_by[path]}') has a non-numeric default "
                f"({params_mod.default_value(path)!r}); only numbers can be sampled"
            )
    if problems:
        raise BatchError(problems)
    for path in sorted(fixed & set(union)):
        notes.append(f"note: --set {path} fixes it: it is not sampled")
    paths = [p for p in sorted(union) if p not in fixed]
    if not paths:
        if not union:
            raise BatchError(
                f"--sample {method}:{n} given, but none of the scenarios ({', '.join(s.name for s in scenarios)}) "
                "declares an 'uncertain' block: nothing to sample (drop --sample)"
            )
        raise BatchError(
            f"--sample {method}:{n}: every uncertain parameter is fixed by --set; nothing to sample"
        )
    for sc in scenarios:
        for path in paths:
            if path in sc.parameters and path not in sc.uncertain:
                notes.append(
                    f"warning: scenario '{sc.name}' fixes {path} = {sc.parameters[path]!r}, but the batch samples it "
                    f"(declared uncertain in '{declared_by[path]}'); the sampled value replaces the fixed one"
                )
    points, engine_notes = _unit_points(method, n, len(paths), seed)
    notes.extend(engine_notes)
    columns = {}
    for j, path in enumerate(paths):
        vals = _ppf(union[path], points[:, j])
        if isinstance(params_mod.default_value(path), int):
            columns[path] = [round(float(v)) for v in vals]
        else:
            columns[path] = [float(v) for v in vals]
    values = [{p: columns[p][k] for p in paths} for k in range(n)]
    problems = []
    for p in paths:
        try:
            params_mod.resolve({p: values[0][p]})
        except params_mod.ParameterError as exc:
            problems.append(f"uncertain parameter '{p}': {exc}")
    if problems:
        raise BatchError(problems)
    return SampleDesign(method, n, seed, {p: union[p] for p in paths}, values, notes)


def _dist_text(d) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.model_dump(exclude_none=True).items())


# --------------------------------------------------------------------------------------
# The plan of a batch
# --------------------------------------------------------------------------------------


@dataclass
class BatchPlan:
    """Everything that defines a batch's data: scenarios, seeds, root entropy, samples.

    Two invocations with equal :meth:`identity` produce the same data, which is what a
    resume checks.
    """

    scenarios: list  # [(file, Scenario)]
    seeds: int
    root_entropy: int
    design: SampleDesign
    overrides: list[str]

    @property
    def total(self) -> int:
        """Number of runs: scenarios x seeds x samples."""
        return len(self.scenarios) * self.seeds * self.design.n

    def identity(self) -> dict:
        """The fields a resume must match exactly."""
        return {
            "scenarios": {sc.name: sc.hash for _, sc in self.scenarios},
            "seeds": self.seeds,
            "root_entropy": self.root_entropy,
            "samples": self.design.describe(),
            "sample_values": self.design.values,
        }

    def all_keys(self) -> Iterator[RunKey]:
        """Every run key of the batch."""
        for _, sc in self.scenarios:
            for k in range(self.design.n):
                for i in range(self.seeds):
                    yield (sc.name, i, k)

    def tasks(
        self,
        finished: set,
        runs_per_shard: int = RUNS_PER_SHARD,
        fail_runs: frozenset = frozenset(),
    ) -> Iterator[Task]:
        """The tasks still to run: groups of up to ``runs_per_shard`` unfinished replicates.

        Generated lazily (a batch of a million runs does not build a million objects), in
        scenario, sample, replicate order. Groups are aligned on multiples of
        ``runs_per_shard`` so an interrupted batch resumes with the same groups.
        """
        for _, sc in self.scenarios:
            data = sc.to_dict()
            h = sc.hash
            for k in range(self.design.n):
                values = self.design.values[k]
                for start in range(0, self.seeds, runs_per_shard):
                    todo = tuple(
                        i
                        for i in range(start, min(start + runs_per_shard, self.seeds))
                        if (sc.name, i, k) not in finished
                    )
                    if todo:
                        yield Task(sc.name, h, data, k, values, todo, self.root_entropy, fail_runs)


def load_scenarios(paths: Sequence[str | Path], overrides: Sequence[str] = ()) -> list:
    """Load and resolve the scenario files; ``[(file, Scenario)]`` in the order given.

    Raises:
        BatchError: with every problem of every file (unknown keys, bad values, missing
            files, duplicate scenario names).
    """
    from model.scenario import ScenarioError, load_scenario

    if not paths:
        raise BatchError(
            "no scenario files given (e.g. decouple batch scenarios/*.yaml --seeds 20)"
        )
    out, problems, seen = [], [], {}
    for p in paths:
        try:
            sc = load_scenario(p, list(overrides))
        except ScenarioError as exc:
            problems.extend(exc.problems)
            continue
        if sc.name in seen:
            problems.append(
                f"{p}: scenario name '{sc.name}' is also the name of {seen[sc.name]}; names in a batch must be unique"
            )
            continue
        seen[sc.name] = str(p)
        out.append((str(p), sc))
    if problems:
        # --set problems repeat once per file: report each once.
        raise BatchError(list(dict.fromkeys(problems)))
    return out


def _fresh_entropy() -> int:
    import numpy as np

    return int(np.random.SeedSequence().entropy)


def _fresh_seed() -> int:
    import numpy as np

    return int(np.random.SeedSequence().generate_state(1, np.uint64)[0])


def make_plan(
    scenario_paths: Sequence[str | Path],
    seeds: int,
    sample: str | tuple | None = None,
    overrides: Sequence[str] = (),
    root_entropy: int | None = None,
    sample_seed: int | None = None,
    previous: dict | None = None,
) -> BatchPlan:
    """Resolve the scenarios and draw the sample design.

    A root entropy or sample seed not given is taken from ``previous`` (the manifest of
    the store being resumed) or drawn fresh; either way it is recorded.

    Raises:
        BatchError: on bad input.
    """
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise BatchError(f"--seeds must be a whole number of at least 1, got {seeds!r}")
    method, n = parse_sample_spec(sample)
    scenarios = load_scenarios(scenario_paths, overrides)
    if root_entropy is None:
        prev = (previous or {}).get("root_entropy")
        root_entropy = int(prev) if isinstance(prev, int) else _fresh_entropy()
    if root_entropy < 0:
        raise BatchError(f"--root-entropy must be a non-negative integer, got {root_entropy}")
    if method != "none" and sample_seed is None:
        prev = (previous or {}).get("samples") or {}
        prev_seed = prev.get("seed") if isinstance(prev, dict) else None
        sample_seed = int(prev_seed) if isinstance(prev_seed, int) else _fresh_seed()
    if sample_seed is not None and sample_seed < 0:
        raise BatchError(f"--sample-seed must be a non-negative integer, got {sample_seed}")
    fixed = [o.split("=", 1)[0].strip() for o in overrides]
    design = design_samples(
        [sc for _, sc in scenarios], method, n, sample_seed if method != "none" else None, fixed
    )
    return BatchPlan(scenarios, seeds, int(root_entropy), design, list(overrides))


# --------------------------------------------------------------------------------------
# The run store
# --------------------------------------------------------------------------------------


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_shard(shard_dir: Path, scenario: str, sample: int, seeds: Sequence[int], table) -> Path:
    """Write one shard atomically: a temporary file in ``shard_dir``, fsync, then rename.

    A reader (or a resume) therefore sees either the whole shard or none of it. The run
    keys are stored in the file's metadata so that a resume need not read the data.
    """
    import pyarrow.parquet as pq

    name = shard_name(scenario, sample, seeds)
    runs = [[scenario, int(s), int(sample)] for s in seeds]
    meta = dict(table.schema.metadata or {})
    meta[RUNS_META_KEY] = json.dumps(runs).encode()
    table = table.replace_schema_metadata(meta)
    final = shard_dir / name
    tmp = shard_dir / f".{name}.{os.getpid()}.part"
    pq.write_table(table, tmp)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    return final


def finished_runs(out: Path) -> dict:
    """``{run key: shard file name}`` of every run found in ``out/shards``.

    Raises:
        BatchError: if a shard cannot be read or two shards hold the same run.
    """
    import pyarrow.parquet as pq

    shard_dir = Path(out) / "shards"
    found: dict = {}
    if not shard_dir.is_dir():
        return found
    for path in sorted(shard_dir.glob("*.parquet")):
        try:
            meta = pq.read_schema(path).metadata or {}
            if RUNS_META_KEY in meta:
                keys = [tuple(r) for r in json.loads(meta[RUNS_META_KEY])]
            else:  # a shard written by another tool: read its id columns
                t = pq.read_table(path, columns=["scenario", "seed", "sample"])
                keys = sorted(
                    set(zip(*(t.column(c).to_pylist() for c in ("scenario", "seed", "sample"))))
                )
        except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
            raise BatchError(
                f"{path}: cannot read this shard ({type(exc).__name__}: {exc}); move it away and rerun to recompute its runs"
            ) from None
        for key in keys:
            key = (str(key[0]), int(key[1]), int(key[2]))
            if key in found:
                raise BatchError(
                    f"{path}: run {key} is also in {found[key]}; the store holds duplicate rows (was a shard copied in by hand?); remove one of the two"
                )
            found[key] = path.name
    return found


def _read_failures(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _failure_key(rec: dict) -> RunKey | None:
    run = rec.get("run")
    if isinstance(run, dict):
        return (run.get("scenario"), run.get("seed"), run.get("sample"))
    if isinstance(run, list) and len(run) == 3:
        return tuple(run)
    return None


def compact_failures(out: Path, finished: Iterable[RunKey]) -> int:
    """Rewrite ``failures.jsonl`` keeping only runs still missing (latest record per run).

    A failed run that a resume has since finished is dropped, so the file always lists
    exactly the runs absent from the data. Returns the number of records kept.
    """
    path = Path(out) / "failures.jsonl"
    records = _read_failures(path)
    if not records:
        return 0
    finished = set(finished)
    latest: dict = {}
    for rec in records:
        key = _failure_key(rec)
        if key is not None and key not in finished:
            latest[key] = rec
    if latest:
        _atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in latest.values()))
    else:
        path.unlink()
    return len(latest)


def _describe_mismatch(old: dict, new: dict) -> list[str]:
    """Human-readable differences between a stored manifest and the batch asked for."""
    diffs = []
    old_sc = (
        {name: (entry or {}).get("hash") for name, entry in (old.get("scenarios") or {}).items()}
        if isinstance(old.get("scenarios"), dict)
        else {}
    )
    new_sc = new["scenarios"]
    for name in sorted(set(old_sc) | set(new_sc)):
        if name not in new_sc:
            diffs.append(f"scenario '{name}' is in the store but not asked for")
        elif name not in old_sc:
            diffs.append(f"scenario '{name}' is asked for but not in the store")
        elif old_sc[name] != new_sc[name]:
            diffs.append(
                f"scenario '{name}' has changed (resolved hash {str(old_sc[name])[:12]} in the store, {new_sc[name][:12]} now: "
                "the file, its parents or --set differ)"
            )
    if old.get("seeds") != new["seeds"]:
        diffs.append(f"seeds: {old.get('seeds')} in the store, {new['seeds']} asked for")
    if old.get("root_entropy") != new["root_entropy"]:
        diffs.append(
            f"root entropy: {old.get('root_entropy')} in the store, {new['root_entropy']} asked for"
        )
    o, n = old.get("samples") or {}, new["samples"]
    if not isinstance(o, dict):
        o = {}
    if (o.get("method"), o.get("n")) != (n["method"], n["n"]):
        diffs.append(
            f"sample design: {o.get('method')}:{o.get('n')} in the store, {n['method']}:{n['n']} asked for"
        )
    elif o.get("seed") != n["seed"]:
        diffs.append(f"sample seed: {o.get('seed')} in the store, {n['seed']} asked for")
    elif o.get("paths") != n["paths"] or o.get("distributions") != n["distributions"]:
        diffs.append(
            f"sampled parameters: {o.get('paths')} in the store, {n['paths']} asked for (or their distributions differ)"
        )
    elif old.get("sample_values") != new["sample_values"]:
        diffs.append(
            "sampled values differ for the same design and seed (a different scipy version?)"
        )
    return diffs


class _StoreLock:
    """An exclusive ``flock`` on ``DIR/.lock`` so two batches never write one store.

    The lock dies with its process (even on kill -9), so it never needs cleaning up.
    """

    def __init__(self, out: Path):
        self.path = Path(out) / ".lock"
        self.fh = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.close()
            self.fh = None
            raise BatchError(
                f"{self.path.parent}: another decouple batch is writing to this directory; wait for it or use another --out"
            ) from None
        return self

    def __exit__(self, *exc):
        if self.fh is not None:
            self.fh.close()


def _read_manifest(out: Path) -> dict | None:
    """The existing batch manifest of ``out``, ``None`` for a new or empty directory.

    Raises:
        BatchError: if ``out`` is a file, a non-batch store or an unrelated non-empty directory.
    """
    if not out.exists():
        return None
    if not out.is_dir():
        raise BatchError(f"--out {out}: exists and is not a directory")
    mpath = out / "manifest.json"
    if not mpath.is_file():
        if any(p for p in out.iterdir() if p.name != ".lock"):
            raise BatchError(
                f"--out {out}: a non-empty directory without manifest.json (not a batch store); choose another --out"
            )
        return None
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BatchError(
            f"{mpath}: cannot read the manifest ({exc}); choose another --out"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("kind") != "batch":
        kind = manifest.get("kind") if isinstance(manifest, dict) else None
        raise BatchError(
            f"--out {out}: holds a '{kind}' store, not a batch; choose another --out (results are never overwritten)"
        )
    return manifest


def _new_manifest(
    plan: BatchPlan, out: Path, command: str, jobs: int, scheduler: str | None, runs_per_shard: int
) -> dict:
    ident = plan.identity()
    return {
        "kind": "batch",
        "model_version": provenance.model_version(),
        "model_fingerprint": model_fingerprint(),
        "command": command,
        "created": provenance.now(),
        "finished": None,
        "git": provenance.git_state(),
        "packages": provenance.package_versions(),
        "root_entropy": plan.root_entropy,
        "seeds": plan.seeds,
        "samples": ident["samples"],
        "sample_values": ident["sample_values"],
        "overrides": plan.overrides,
        "scenarios": {
            sc.name: {
                "file": file,
                "hash": sc.hash,
                "resolved_file": f"resolved/{sc.name}.yaml",
                "resolved": sc.to_dict(),
            }
            for file, sc in plan.scenarios
        },
        "parameters": {sc.name: sc.resolved_parameters() for _, sc in plan.scenarios},
        "executor": {"jobs": jobs, "scheduler": scheduler, "runs_per_shard": runs_per_shard},
        "runs": {"total": plan.total, "finished": None, "failed": None},
        "resumed": [],
    }


def _write_manifest(out: Path, manifest: dict) -> None:
    _atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2, default=str))


# --------------------------------------------------------------------------------------
# Executors: each yields (task, TaskResult | BaseException) as tasks complete
# --------------------------------------------------------------------------------------


def _execute_inprocess(
    tasks: Iterator[Task], own_process: bool = False
) -> Iterator[tuple[Task, Any]]:
    if own_process:
        import pyarrow  # noqa: F401

        import model.run  # noqa: F401

        _prepare_process(own=True)
    for task in tasks:
        yield task, run_task(task)


#: Thread pools of numerical libraries, one thread each in pool workers (set unless the user
#: set them): parallelism is across runs, and idle BLAS threads spinning in J workers on J
#: cores take CPU time from the runs.
_SINGLE_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


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
    import multiprocessing as mp

    methods = mp.get_all_start_methods()
    ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
    if ctx.get_start_method() == "forkserver":
        # Workers fork from a server that has already imported the model.
        with contextlib.suppress(Exception):
            ctx.set_forkserver_preload(["experiment.batch", "model.run", "model.model", "pyarrow"])
    return ctx


def _start_forkserver() -> None:
    """Start the forkserver now: it imports the model while this process plans the batch.

    Workers fork from it; started only when the pool is created, its imports (about a
    second) would come on top of the planning instead of beside it.
    """
    ctx = _mp_context()
    if ctx.get_start_method() != "forkserver":
        return
    from multiprocessing import forkserver

    with _single_threaded_children(), contextlib.suppress(Exception):
        forkserver.ensure_running()


def _execute_pool(tasks: Iterator[Task], jobs: int) -> Iterator[tuple[Task, Any]]:
    """Local processes (forkserver or spawn), at most ``IN_FLIGHT_PER_WORKER x jobs`` tasks queued.

    A worker that dies (out of memory, segfault) breaks the pool: its tasks are reported
    as failed and a fresh pool takes the remaining tasks. Workers get single-threaded
    numerical libraries (``_SINGLE_THREAD_ENV``) unless the caller set those variables.
    """
    with _single_threaded_children():
        yield from _execute_pool_inner(tasks, jobs)


def _execute_pool_inner(tasks: Iterator[Task], jobs: int) -> Iterator[tuple[Task, Any]]:
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = _mp_context()
    limit = max(1, jobs * IN_FLIGHT_PER_WORKER)
    tasks = iter(tasks)
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker)
    pending: dict = {}
    completed = False
    try:
        exhausted = False
        while True:
            while not exhausted and len(pending) < limit:
                task = next(tasks, None)
                if task is None:
                    exhausted = True
                    break
                pending[pool.submit(run_task, task)] = task
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            broken = False
            for fut in done:
                task = pending.pop(fut)
                try:
                    yield task, fut.result()
                except BrokenProcessPool as exc:
                    broken = True
                    yield task, exc
                except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result
                    yield task, exc
            if broken:
                for fut, task in list(pending.items()):
                    yield (
                        task,
                        BrokenProcessPool(
                            "a worker process died while this task was queued or running"
                        ),
                    )
                pending.clear()
                _stop_pool(pool)
                pool = ProcessPoolExecutor(
                    max_workers=jobs, mp_context=ctx, initializer=_init_worker
                )
        completed = True
    finally:
        if completed:
            pool.shutdown(wait=True)
        else:  # interrupted (Ctrl-C) or abandoned: stop the workers now
            _stop_pool(pool)


def _stop_pool(pool) -> None:
    """Cancel queued tasks and terminate a process pool's workers without waiting for them."""
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        with contextlib.suppress(Exception):
            terminate()
    else:
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            with contextlib.suppress(Exception):
                proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def _dask_client(address):
    """A ``dask.distributed.Client`` for ``address`` (or the Client itself if given one)."""
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
            f"--scheduler {address}: cannot connect to a Dask scheduler there ({type(exc).__name__}: {exc})"
        ) from None


def _dask_threads(client) -> int:
    """Worker threads of a Dask cluster (1 if the scheduler cannot tell)."""
    try:
        threads = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values())
    except Exception:  # noqa: BLE001 - the count only sizes queues and tasks
        threads = 1
    return max(1, threads)


def task_size(runs_per_shard: int, todo: int, workers: int) -> int:
    """Replicates per task: ``runs_per_shard``, smaller when a batch is small.

    At least about 4 tasks per worker keep every worker busy to the end; a task never
    spans scenarios or samples. Shard names follow the runs they hold, so a resume may use
    another size without any effect on the data.
    """
    if workers <= 1:
        return runs_per_shard
    return max(1, min(runs_per_shard, math.ceil(todo / (4 * workers))))


def _execute_dask(tasks: Iterator[Task], client) -> Iterator[tuple[Task, Any]]:
    """A Dask distributed cluster; at most ``IN_FLIGHT_PER_WORKER x threads`` tasks submitted.

    Workers must be able to import this package (``pip install .`` on every worker).
    """
    from dask.distributed import as_completed

    limit = max(2, IN_FLIGHT_PER_WORKER * _dask_threads(client))
    tasks = iter(tasks)
    futures: dict = {}
    ac = as_completed()
    try:
        for _ in range(limit):
            task = next(tasks, None)
            if task is None:
                break
            fut = client.submit(run_task, task, pure=False)
            futures[fut.key] = task
            ac.add(fut)
        for fut in ac:
            task = futures.pop(fut.key)
            try:
                yield task, fut.result()
            except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker
                yield task, exc
            fut.release()
            nxt = next(tasks, None)
            if nxt is not None:
                nf = client.submit(run_task, nxt, pure=False)
                futures[nf.key] = nxt
                ac.add(nf)
    finally:
        for key in list(futures):
            futures.pop(key)
        with contextlib.suppress(Exception):
            ac.clear()


# --------------------------------------------------------------------------------------
# Running a batch
# --------------------------------------------------------------------------------------


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


def _default_out() -> Path:
    stamp = provenance.now().replace(":", "").replace("-", "").replace("+0000", "Z")
    return Path("runs") / f"batch-{stamp}"


def _api_command(scenario_paths, seeds, sample, overrides, out) -> str:
    parts = ["decouple", "batch", *map(str, scenario_paths), "--seeds", str(seeds)]
    if sample:
        parts += ["--sample", sample if isinstance(sample, str) else f"{sample[0]}:{sample[1]}"]
    for o in overrides:
        parts += ["--set", o]
    parts += ["--out", str(out)]
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
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def execute(
    scenario_paths: Sequence[str | Path],
    seeds: int,
    sample: str | tuple | None = None,
    jobs: int = 1,
    scheduler: Any = None,
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    root_entropy: int | None = None,
    progress: bool = True,
    sample_seed: int | None = None,
    runs_per_shard: int = RUNS_PER_SHARD,
    dry_run: bool = False,
    command: str | None = None,
    log=None,
    own_process: bool = False,
) -> BatchResult:
    """Run (or resume, or dry-run) a batch; see :func:`run_batch` for the arguments.

    Args:
        dry_run: count the runs and time a 2-run pilot; write nothing.
        command: the command line to record (default: rebuilt from the arguments).
        log: where notes and warnings go (default: stderr).
        own_process: this process is the ``decouple batch`` command itself, so ``--jobs 1``
            may tune its garbage collector (see :func:`_prepare_process`).

    Returns:
        A :class:`BatchResult` with the counts the CLI needs for its exit code.

    Raises:
        BatchError: bad input, an unusable store, or a resume that asks for another batch.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if not isinstance(jobs, int) or jobs < 1:
        raise BatchError(f"--jobs must be at least 1, got {jobs!r}")
    if not isinstance(runs_per_shard, int) or runs_per_shard < 1:
        raise BatchError(f"--runs-per-shard must be at least 1, got {runs_per_shard!r}")
    fail_runs = parse_fail_runs(os.environ.get(FAIL_ENV))
    if jobs > 1 and scheduler is None and not dry_run:
        _start_forkserver()
    out = Path(out) if out is not None else _default_out()
    previous = _read_manifest(out)
    plan = make_plan(scenario_paths, seeds, sample, overrides, root_entropy, sample_seed, previous)
    for note in plan.design.notes:
        log(f"{PROG}: {note}")
    if previous is not None:
        diffs = _describe_mismatch(previous, plan.identity())
        if diffs:
            raise BatchError(
                [f"--out {out} holds a different batch; refusing to mix results:"]
                + [f"  {d}" for d in diffs]
                + [
                    "repeat the original command to resume it (see its manifest.json 'command'), or choose another --out"
                ]
            )
        old_fp = previous.get("model_fingerprint")
        if old_fp is not None and old_fp != model_fingerprint():
            raise BatchError(
                f"--out {out}: the model code (model/*.py, model/*.yaml) has changed since this batch was started "
                f"(fingerprint {str(old_fp)[:12]} then, {model_fingerprint()[:12]} now); resuming would mix two model "
                "versions. Choose another --out (or delete the directory to start over)"
            )
        old_git = previous.get("git")
        if isinstance(old_git, dict) and old_git.get("commit") != provenance.git_state().get(
            "commit"
        ):
            log(
                f"{PROG}: note: git commit differs from the one the store was started with (model code is unchanged)"
            )

    finished = finished_runs(out) if previous is not None else {}
    stray = [k for k in finished if k[0] not in {sc.name for _, sc in plan.scenarios}]
    if stray:
        raise BatchError(
            f"{out}/shards: holds runs of scenario(s) {sorted({k[0] for k in stray})} not in this batch; choose another --out"
        )
    done_before = len(finished)
    todo = plan.total - done_before

    if dry_run:
        try:
            per_run = _pilot(plan) if todo else 0.0
        except Exception as exc:  # noqa: BLE001 - report the model's failure, not a traceback
            log(
                f"{PROG}: the pilot run of '{plan.scenarios[0][1].name}' failed: {type(exc).__name__}: {exc}"
            )
            return BatchResult(out, plan.total, done_before, 1, 0, done_before, dry_run=True)
        nsc, ns = len(plan.scenarios), plan.design.n
        print(
            f"{PROG} (dry run): {nsc} scenario(s) x {plan.seeds} seed(s) x {ns} sample(s) = {plan.total} runs"
        )
        print(f"  already finished in {out}: {done_before}; to run: {todo}")
        if todo:
            print(
                f"  pilot: {plan.scenarios[0][1].name}, 2 runs in-process: {per_run:.2f} s per run"
            )
            if scheduler is not None:
                print(
                    f"  estimated wall time: {_fmt_duration(per_run * todo)} of computing, divided by the cluster's worker threads"
                )
            else:
                startup = 0 if jobs == 1 else 2.0
                print(
                    f"  estimated wall time with --jobs {jobs}: about {_fmt_duration(per_run * todo / jobs + startup)}"
                )
        return BatchResult(out, plan.total, done_before, 0, 0, done_before, dry_run=True)

    # Connect before creating the store: a wrong address leaves nothing behind.
    client, own_client = _dask_client(scheduler) if scheduler is not None else (None, False)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with _StoreLock(out):
            # Re-read under the lock: another batch may have finished runs meanwhile.
            if previous is None and (out / "manifest.json").exists():
                raise BatchError(
                    f"--out {out}: another decouple batch started in this directory meanwhile; "
                    "rerun the command to resume it, or choose another --out"
                )
            if previous is not None:
                finished = finished_runs(out)
                done_before = len(finished)
                todo = plan.total - done_before
            shard_dir = out / "shards"
            shard_dir.mkdir(exist_ok=True)
            for stale in shard_dir.glob(".*.part"):
                stale.unlink(missing_ok=True)
            command = command or _api_command(scenario_paths, seeds, sample, overrides, out)
            sched_name = (
                scheduler
                if isinstance(scheduler, str)
                else (None if scheduler is None else repr(scheduler))
            )
            if previous is None:
                manifest = _new_manifest(plan, out, command, jobs, sched_name, runs_per_shard)
                (out / "resolved").mkdir(exist_ok=True)
                for _, sc in plan.scenarios:
                    _atomic_write_text(out / "resolved" / f"{sc.name}.yaml", sc.to_yaml())
            else:
                manifest = previous
                manifest["finished"] = None
                manifest.setdefault("resumed", [])
                if not isinstance(manifest["resumed"], list):
                    manifest["resumed"] = []
                manifest["resumed"].append(
                    {
                        "time": provenance.now(),
                        "command": command,
                        "finished_before": done_before,
                        "git": provenance.git_state(),
                    }
                )
            _write_manifest(out, manifest)
            compact_failures(out, finished)

            if done_before:
                log(
                    f"{PROG}: resuming {out}: {done_before} of {plan.total} runs already finished, {todo} to run"
                )
            else:
                log(
                    f"{PROG}: {plan.total} runs into {out} (rerun the same command with --out {out} to resume if interrupted)"
                )

            workers = jobs if client is None else _dask_threads(client)
            size = task_size(runs_per_shard, todo, workers)
            tasks = plan.tasks(set(finished), size, fail_runs)
            if client is not None:
                stream = _execute_dask(tasks, client)
            elif jobs == 1:
                stream = _execute_inprocess(tasks, own_process)
            else:
                stream = _execute_pool(tasks, jobs)

            from tqdm import tqdm

            bar = tqdm(
                total=todo,
                unit="run",
                file=sys.stderr,
                disable=not progress,
                dynamic_ncols=True,
                desc="batch",
            )
            ran = failed_now = 0
            fpath = out / "failures.jsonl"
            fingerprint = manifest.get("model_fingerprint") or model_fingerprint()
            try:
                for task, result in stream:
                    if isinstance(result, BaseException):
                        tb = "".join(traceback.format_exception(result))
                        result = TaskResult(
                            None, [], [_failure_record(k, result, tb) for k in task.run_keys()]
                        )
                    elif result.fingerprint != fingerprint:
                        exc = RuntimeError(
                            f"the worker ran model code with fingerprint {result.fingerprint[:12]}, the batch's is "
                            f"{fingerprint[:12]}: install the same version everywhere (or do not edit model/ mid-batch)"
                        )
                        exc_name = "ModelMismatch"
                        recs = [
                            _failure_record(k, exc, "") | {"exception": exc_name}
                            for k in task.run_keys()
                        ]
                        result = TaskResult(None, [], recs)
                    if result.table is not None and result.done:
                        write_shard(
                            shard_dir, task.scenario, task.sample, result.done, result.table
                        )
                        for s in result.done:
                            finished[(task.scenario, s, task.sample)] = True
                    if result.failures:
                        with open(fpath, "a", encoding="utf-8") as ffh:
                            ffh.writelines(json.dumps(rec) + "\n" for rec in result.failures)
                    ran += len(task.seeds)
                    failed_now += len(result.failures)
                    bar.update(len(task.seeds))
                    if result.failures:
                        bar.set_postfix(failed=failed_now, refresh=False)
                    del result
            finally:
                bar.close()
                with contextlib.suppress(Exception):
                    stream.close()

            n_failed = compact_failures(out, finished)
            manifest["finished"] = provenance.now()
            manifest["runs"] = {"total": plan.total, "finished": len(finished), "failed": n_failed}
            _write_manifest(out, manifest)
        return BatchResult(out, plan.total, len(finished), n_failed, ran, done_before)
    finally:
        if own_client:
            with contextlib.suppress(Exception):
                client.close()


def run_batch(
    scenario_paths: Sequence[str | Path],
    seeds: int,
    sample: str | tuple | None = None,
    jobs: int = 1,
    scheduler: Any = None,
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    root_entropy: int | None = None,
    progress: bool = True,
    *,
    sample_seed: int | None = None,
    runs_per_shard: int = RUNS_PER_SHARD,
) -> Path:
    """Run every scenario x replicate x parameter sample into a run store; resume if it exists.

    Args:
        scenario_paths: scenario YAML files (each resolved with ``extends`` and ``overrides``).
        seeds: replicates per scenario and sample (replicate *i* uses the same random stream
            in every scenario and sample).
        sample: ``None`` (one sample, no sampled values), ``"lhs:K"`` or ``"sobol:K"`` (or a
            ``(method, K)`` tuple).
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

    Returns:
        The run-store directory. Runs that failed are listed in ``failures.jsonl`` there
        (and counted in the manifest's ``runs``); rerunning retries them.

    Raises:
        BatchError: on bad input or when ``out`` holds a different batch.
    """
    return execute(
        scenario_paths,
        seeds,
        sample=sample,
        jobs=jobs,
        scheduler=scheduler,
        out=out,
        overrides=overrides,
        root_entropy=root_entropy,
        progress=progress,
        sample_seed=sample_seed,
        runs_per_shard=runs_per_shard,
    ).out


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def _nonneg_int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _pos_int(text: str) -> int:
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
            "DIR/shards/*.parquet. Rerunning the same command on the same --out resumes: "
            "finished runs are skipped and failed ones retried. See docs/batch.md."
        ),
    )
    p.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="scenario YAML files")
    p.add_argument(
        "--seeds", type=_pos_int, default=20, help="replicates per scenario and sample (default 20)"
    )
    p.add_argument(
        "--sample",
        metavar="lhs:K|sobol:K",
        help="draw K parameter samples from the scenarios' 'uncertain' blocks",
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
        help="run-store directory (default runs/batch-<timestamp>); an existing one with the same batch is resumed",
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
        "--dry-run",
        action="store_true",
        help="print the number of runs and a wall-time estimate from a 2-run pilot; run nothing",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_batch)


def _cmd_batch(args) -> int:
    out = Path(args.out) if args.out else _default_out()
    own_process = sys.argv[1:2] == ["batch"]  # the `decouple batch` command, not a caller's main()
    if own_process:
        command = "decouple " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    else:  # called as decouple.cli.main([...]) from Python: rebuild the command
        command = _api_command(args.scenarios, args.seeds, args.sample, args.set, out)
    if args.scheduler and args.jobs is not None:
        print(
            f"{PROG}: note: --jobs is ignored with --scheduler (the cluster's workers run the tasks)",
            file=sys.stderr,
        )
    jobs = args.jobs or os.cpu_count() or 1
    try:
        result = execute(
            args.scenarios,
            args.seeds,
            sample=args.sample,
            jobs=jobs,
            scheduler=args.scheduler,
            out=out,
            overrides=args.set,
            root_entropy=args.root_entropy,
            progress=not args.quiet,
            sample_seed=args.sample_seed,
            runs_per_shard=args.runs_per_shard,
            dry_run=args.dry_run,
            command=command,
            own_process=own_process,
        )
    except BatchError as exc:
        for problem in exc.problems:
            print(f"{PROG}: error: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = f" in {out}"
        print(
            f"{PROG}: interrupted; finished runs are kept{where}. Rerun the same command (with the same --out) to resume.",
            file=sys.stderr,
        )
        return 130
    if result.dry_run:
        return 1 if result.failed else 0
    if result.failed:
        print(
            f"{PROG}: {result.failed} of {result.total} runs failed (see {result.out / 'failures.jsonl'}); "
            f"the other {result.finished} are in {result.out / 'shards'}. Rerun the same command to retry the failed runs.",
            file=sys.stderr,
        )
        return 1
    print(
        f"{PROG}: {result.finished} runs in {result.out} ({result.ran} run now, {result.skipped} already finished)"
    )
    return 0


__all__ = [
    "FAIL_ENV",
    "BatchError",
    "BatchResult",
    "design_samples",
    "execute",
    "finished_runs",
    "register",
    "run_batch",
    "shard_name",
]
