"""The run store: the one module that knows its layout.

A run store is a directory written by ``decouple run`` or ``decouple batch`` and read by
:mod:`analysis.load` and ``decouple report``::

    DIR/manifest.json                  MANIFEST: what was run, how, with which code
    DIR/trajectories.parquet           TRAJECTORIES: all rows of ``decouple run``
    DIR/shards/<shard_name>            SHARDS: complete runs of ``decouple batch``
    DIR/failures.jsonl                 FAILURES: runs that failed (batch; absent when none)
    DIR/resolved/<scenario>.yaml       RESOLVED: each scenario fully resolved
    DIR/.lock                          LOCK: held while a batch writes the store

Every other module takes these names from here. For batches this module also owns the
operations on the layout: shards written atomically (temporary file in the same directory,
fsync, :func:`os.replace`) with their run keys in the Parquet metadata, the finished runs
found in the shards, the failures log and its compaction, the manifest (new, resumed,
compared with the batch asked for) and the lock.

Only the standard library is imported at module level (pyarrow inside the functions): the
CLI and :mod:`analysis` import this module at start-up.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import provenance
from .errors import BatchError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .plan import BatchPlan, RunKey

#: The manifest: a JSON object describing the store (docs/outputs.md, docs/batch.md).
MANIFEST = "manifest.json"

#: The data of a ``decouple run`` store: one Parquet file.
TRAJECTORIES = "trajectories.parquet"

#: The directory of a batch's Parquet shards (see :func:`shard_name`).
SHARDS = "shards"

#: A batch's failures log: one JSON object per line, one per run missing from the data.
FAILURES = "failures.jsonl"

#: The directory of the resolved scenarios (see :func:`resolved_file`).
RESOLVED = "resolved"

#: The lock file a batch holds while it writes the store.
LOCK = ".lock"

#: Pattern of the data files in :data:`SHARDS`.
SHARD_GLOB = "*.parquet"

#: Pattern of temporary files left by an interrupted atomic write.
PART_GLOB = ".*.part"

#: Parquet key-value metadata key listing the run keys a shard holds.
RUNS_META_KEY = b"decouple.runs"


def resolved_file(scenario: str) -> str:
    """``resolved/<scenario>.yaml``: where a store keeps a resolved scenario (relative path)."""
    return f"{RESOLVED}/{scenario}.yaml"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a fsynced temporary file and :func:`os.replace`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------
# Shards
# --------------------------------------------------------------------------------------


def shard_name(scenario: str, sample: int, seeds: Sequence[int]) -> str:
    """Deterministic shard file name for runs of one scenario and sample.

    Named after the first and last replicate the shard holds. A resumed batch only reruns
    runs not found in any shard, so a new shard's first replicate is never the first
    replicate of an existing shard: names cannot collide and resume never overwrites data.
    """
    return f"{scenario}-k{sample:05d}-r{min(seeds):05d}-{max(seeds):05d}.parquet"


def prepare_shards(out: Path) -> Path:
    """Create ``out/shards`` if needed, remove temporary files a killed batch left; return it."""
    shard_dir = Path(out) / SHARDS
    shard_dir.mkdir(exist_ok=True)
    for stale in shard_dir.glob(PART_GLOB):
        stale.unlink(missing_ok=True)
    return shard_dir


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


def _shard_keys(path: Path) -> list:
    """The run keys a shard holds: from its metadata, else from its id columns.

    Raises:
        BatchError: if the file cannot be read.
    """
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
        if RUNS_META_KEY in meta:
            return [tuple(r) for r in json.loads(meta[RUNS_META_KEY])]
        # a shard written by another tool: read its id columns
        t = pq.read_table(path, columns=["scenario", "seed", "sample"])
        return sorted(set(zip(*(t.column(c).to_pylist() for c in ("scenario", "seed", "sample")))))
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise BatchError(
            f"{path}: cannot read this shard ({type(exc).__name__}: {exc}); "
            "move it away and rerun to recompute its runs"
        ) from None


def finished_runs(out: Path) -> dict:
    """``{run key: shard file name}`` of every run found in ``out/shards``.

    Raises:
        BatchError: if a shard cannot be read or two shards hold the same run.
    """
    shard_dir = Path(out) / SHARDS
    found: dict = {}
    if not shard_dir.is_dir():
        return found
    for path in sorted(shard_dir.glob(SHARD_GLOB)):
        for key in _shard_keys(path):
            key = (str(key[0]), int(key[1]), int(key[2]))
            if key in found:
                raise BatchError(
                    f"{path}: run {key} is also in {found[key]}; the store holds duplicate rows "
                    "(was a shard copied in by hand?); remove one of the two"
                )
            found[key] = path.name
    return found


# --------------------------------------------------------------------------------------
# The failures log
# --------------------------------------------------------------------------------------


def failure_record(key: RunKey, exc: BaseException, tb: str) -> dict:
    """The failures-log record of run ``key``, which raised ``exc`` (traceback ``tb``)."""
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


def append_failures(out: Path, records: Iterable[dict]) -> None:
    """Append failure records to ``out/failures.jsonl``, one JSON object per line."""
    with open(Path(out) / FAILURES, "a", encoding="utf-8") as fh:
        fh.writelines(json.dumps(rec) + "\n" for rec in records)


def read_failures(out: Path) -> list[dict]:
    """The records of ``out/failures.jsonl`` (none if absent; unreadable lines skipped)."""
    path = Path(out) / FAILURES
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _failure_key(rec: dict) -> RunKey | None:
    """The run key of a failure record (``None`` if it has none)."""
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
    records = read_failures(out)
    if not records:
        return 0
    finished = set(finished)
    latest: dict = {}
    for rec in records:
        key = _failure_key(rec)
        if key is not None and key not in finished:
            latest[key] = rec
    path = Path(out) / FAILURES
    if latest:
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in latest.values()))
    else:
        path.unlink()
    return len(latest)


# --------------------------------------------------------------------------------------
# The manifest and the resolved scenarios
# --------------------------------------------------------------------------------------


def read_manifest(out: Path) -> dict | None:
    """The existing batch manifest of ``out``, ``None`` for a new or empty directory.

    Raises:
        BatchError: if ``out`` is a file, a non-batch store or an unrelated non-empty
            directory.
    """
    if not out.exists():
        return None
    if not out.is_dir():
        raise BatchError(f"--out {out}: exists and is not a directory")
    mpath = out / MANIFEST
    if not mpath.is_file():
        if any(p for p in out.iterdir() if p.name != LOCK):
            raise BatchError(
                f"--out {out}: a non-empty directory without {MANIFEST} (not a batch store); "
                "choose another --out"
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
            f"--out {out}: holds a '{kind}' store, not a batch; choose another --out "
            "(results are never overwritten)"
        )
    return manifest


def new_manifest(
    plan: BatchPlan, command: str, jobs: int, scheduler: str | None, runs_per_shard: int
) -> dict:
    """The manifest of a new batch store (``finished`` is ``None`` until the batch ends)."""
    ident = plan.identity()
    return {
        "kind": "batch",
        "model_version": provenance.model_version(),
        "model_fingerprint": provenance.model_fingerprint(),
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
                "resolved_file": resolved_file(sc.name),
                "resolved": sc.to_dict(),
            }
            for file, sc in plan.scenarios
        },
        "parameters": {sc.name: sc.resolved_parameters() for _, sc in plan.scenarios},
        "executor": {"jobs": jobs, "scheduler": scheduler, "runs_per_shard": runs_per_shard},
        "runs": {"total": plan.total, "finished": None, "failed": None},
        "resumed": [],
    }


def resumed_manifest(manifest: dict, command: str, finished_before: int) -> dict:
    """``manifest`` marked as running again, with an entry for this resume in ``resumed``."""
    manifest["finished"] = None
    manifest.setdefault("resumed", [])
    if not isinstance(manifest["resumed"], list):
        manifest["resumed"] = []
    manifest["resumed"].append(
        {
            "time": provenance.now(),
            "command": command,
            "finished_before": finished_before,
            "git": provenance.git_state(),
        }
    )
    return manifest


def write_manifest(out: Path, manifest: dict) -> None:
    """Write ``out/manifest.json`` atomically."""
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2, default=str))


def write_resolved(out: Path, scenarios: Iterable) -> None:
    """Write each scenario's resolved YAML to ``out/resolved/<name>.yaml`` atomically."""
    (out / RESOLVED).mkdir(exist_ok=True)
    for sc in scenarios:
        atomic_write_text(out / resolved_file(sc.name), sc.to_yaml())


def describe_mismatch(old: dict, new: dict) -> list[str]:
    """Human-readable differences between a stored manifest and the batch asked for.

    Args:
        old: the store's manifest.
        new: :meth:`~experiment.plan.BatchPlan.identity` of the batch asked for.
    """
    diffs = _scenario_mismatch(old, new)
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
            f"sample design: {o.get('method')}:{o.get('n')} in the store, "
            f"{n['method']}:{n['n']} asked for"
        )
    elif o.get("seed") != n["seed"]:
        diffs.append(f"sample seed: {o.get('seed')} in the store, {n['seed']} asked for")
    elif o.get("paths") != n["paths"] or o.get("distributions") != n["distributions"]:
        diffs.append(
            f"sampled parameters: {o.get('paths')} in the store, {n['paths']} asked for "
            "(or their distributions differ)"
        )
    elif old.get("sample_values") != new["sample_values"]:
        diffs.append(
            "sampled values differ for the same design and seed (a different scipy version?)"
        )
    return diffs


def _scenario_mismatch(old: dict, new: dict) -> list[str]:
    """The scenarios added, removed or changed between a manifest and a batch identity."""
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
                f"scenario '{name}' has changed (resolved hash {str(old_sc[name])[:12]} in the "
                f"store, {new_sc[name][:12]} now: the file, its parents or --set differ)"
            )
    return diffs


# --------------------------------------------------------------------------------------
# The lock
# --------------------------------------------------------------------------------------


class StoreLock:
    """An exclusive ``flock`` on ``DIR/.lock`` so two batches never write one store.

    The lock dies with its process (even on kill -9), so it never needs cleaning up.
    """

    def __init__(self, out: Path):
        self.path = Path(out) / LOCK
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
                f"{self.path.parent}: another decouple batch is writing to this directory; "
                "wait for it or use another --out"
            ) from None
        return self

    def __exit__(self, *exc):
        if self.fh is not None:
            self.fh.close()
