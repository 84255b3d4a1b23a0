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
compared with the batch asked for, extended) and the lock.

Integrity: every shard (and ``decouple run``'s trajectories file) carries a sha256 of its data
(:func:`table_digest`, under :data:`DIGEST_META_KEY` in the Parquet metadata), and
:func:`read_data_file` checks it, so a truncated, garbled or byte-flipped file is reported
(:class:`~experiment.errors.DamagedFile`, naming the file) instead of read as other data. A
batch resume checks every shard (:func:`scan_shards`), moves damaged ones aside
(:func:`quarantine_shard`) and recomputes their runs.

Only the standard library is imported at module level (pyarrow inside the functions): the
CLI and :mod:`analysis` import this module at start-up.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import provenance
from .errors import BatchError, DamagedFile

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

#: Suffix of temporary files (see :func:`atomic_write_text` and :func:`write_shard`).
PART_SUFFIX = ".part"

#: Suffix given to a damaged shard that a resume moved aside (see :func:`quarantine_shard`).
DAMAGED_SUFFIX = ".damaged"

#: Parquet key-value metadata key listing the run keys a shard holds.
RUNS_META_KEY = b"decouple.runs"

#: Parquet key-value metadata key of the sha256 of a data file's contents (:func:`table_digest`).
DIGEST_META_KEY = b"decouple.sha256"


#: Longest file name (one path component) in bytes where the file system cannot tell.
NAME_MAX = 255

#: errno values that mean "this place cannot be written" (bad input, not a failure).
_NOT_WRITABLE = ("EROFS", "EACCES", "EPERM")


def check_out_path(out: Path, flag: str = "--out") -> None:
    """Refuse an output path that cannot be a run store's: not UTF-8, or a name too long.

    Raises:
        BatchError: naming the path (as bytes when it is not UTF-8) and what is allowed.
    """
    try:
        str(out).encode("utf-8")
    except UnicodeEncodeError:
        raw = os.fsencode(out)
        raise BatchError(
            f"{flag} {raw!r}: the path is not valid UTF-8; name the run store with UTF-8 "
            "characters (its path is recorded in the manifest and printed)"
        ) from None
    ancestor = Path(out).absolute()
    while ancestor != ancestor.parent:
        with contextlib.suppress(OSError):  # a name too long to even look up
            if ancestor.exists():
                break
        ancestor = ancestor.parent
    try:
        limit = os.pathconf(ancestor, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        limit = NAME_MAX
    for part in Path(out).parts:
        size = len(os.fsencode(part))
        if size > limit:
            raise BatchError(
                f"{flag} {out}: the name '{part[:24]}...' is {size} bytes long; the file "
                f"system allows at most {limit} bytes per name: choose a shorter --out"
            )


def not_writable(exc: OSError) -> bool:
    """True if ``exc`` says a place cannot be written (read-only, no permission)."""
    import errno

    return exc.errno in {getattr(errno, name) for name in _NOT_WRITABLE}


def make_store_dir(out: Path) -> None:
    """Create the store directory (and its parents) if needed.

    Raises:
        BatchError: if it cannot be created there (read-only, no permission, a parent is a
            file); other errors (a full disk) propagate as ``OSError``.
    """
    import errno

    try:
        Path(out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if not_writable(exc) or exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG):
            raise BatchError(
                f"--out {out}: cannot create the directory ({exc.strerror}); choose a "
                "writable --out"
            ) from None
        raise


def resolved_file(scenario: str) -> str:
    """``resolved/<scenario>.yaml``: where a store keeps a resolved scenario (relative path)."""
    return f"{RESOLVED}/{scenario}.yaml"


def _part_path(path: Path) -> Path:
    """The temporary file an atomic write of ``path`` goes through (matches :data:`PART_GLOB`)."""
    return path.with_name(f".{path.name}.{os.getpid()}{PART_SUFFIX}")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a fsynced temporary file and :func:`os.replace`.

    The temporary file is removed if the write fails (a full disk leaves nothing behind).
    """
    tmp = _part_path(path)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.filename in (None, str(tmp)):
            exc.filename = str(path)  # name the file meant, not the temporary one
        raise


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


def table_digest(table, runs: bytes = b"") -> str:
    """sha256 of a table's contents: column names, types and values, and ``runs``.

    Computed from the values (not the file's bytes), so the digest of the table written and
    of the table read back agree exactly when, and only when, the data read are the data
    written. Schema metadata is not covered, except the run keys passed as ``runs``.
    """
    import hashlib

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    digest = hashlib.sha256(b"decouple table v1\0" + runs + b"\0")
    for field, column in zip(table.schema, table.columns, strict=True):
        arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        typ = arr.type
        digest.update(f"{field.name}\0{typ}\0{len(arr)}\0{arr.null_count}\0".encode())
        if arr.null_count:
            digest.update(np.asarray(arr.is_valid(), dtype=bool).tobytes())
        if pa.types.is_string(typ) or pa.types.is_large_string(typ):
            for value in arr.to_pylist():
                raw = b"" if value is None else value.encode("utf-8", "surrogatepass")
                digest.update(len(raw).to_bytes(8, "little") + raw)
        elif pa.types.is_boolean(typ) or pa.types.is_integer(typ) or pa.types.is_floating(typ):
            filled = (
                pc.fill_null(arr, False if pa.types.is_boolean(typ) else 0)
                if arr.null_count
                else arr
            )
            digest.update(np.ascontiguousarray(filled.to_numpy(zero_copy_only=False)).tobytes())
        else:  # no such column today: a slow but exact fallback
            digest.update(repr(arr.to_pylist()).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def with_digest(table, runs: bytes = b""):
    """``table`` with its :func:`table_digest` (and ``runs``, if given) in its metadata."""
    meta = dict(table.schema.metadata or {})
    if runs:
        meta[RUNS_META_KEY] = runs
    meta[DIGEST_META_KEY] = table_digest(table, runs).encode()
    return table.replace_schema_metadata(meta)


def write_parquet_atomic(table, final: Path) -> Path:
    """Write ``table`` to ``final`` via a temporary file in its directory, fsync, rename.

    A reader (or a resume) therefore sees either the whole file or none of it; the temporary
    file is removed if the write fails (a full disk leaves nothing behind).
    """
    import pyarrow.parquet as pq

    tmp = _part_path(final)
    try:
        pq.write_table(table, tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(final)  # pyarrow's errors name no file
        raise
    return final


def write_shard(shard_dir: Path, scenario: str, sample: int, seeds: Sequence[int], table) -> Path:
    """Write one shard atomically (:func:`write_parquet_atomic`), with its run keys and digest.

    The run keys are stored in the file's metadata so that a resume need not read the data;
    the digest (:func:`table_digest`) lets every reader check that the data are intact.
    """
    runs = json.dumps([[scenario, int(s), int(sample)] for s in seeds]).encode()
    return write_parquet_atomic(
        with_digest(table, runs), shard_dir / shard_name(scenario, sample, seeds)
    )


def read_data_file(path: Path, columns: Sequence[str] | None = None):
    """Read a shard or trajectories file whole and check it against its digest.

    Args:
        path: the Parquet file.
        columns: the columns to return (all are read and checked; ``None`` returns all).

    Returns:
        The ``pyarrow.Table``. A file without a digest (written by an older version or
        another tool) is returned unchecked.

    Raises:
        OSError: if the file cannot be opened (e.g. ``PermissionError``): not damage.
        DamagedFile: if it is empty, not readable as Parquet, or its data do not match the
            digest written with it.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    with open(path, "rb") as fh:  # OSError (permissions) surfaces here, not as a Parquet error
        data = fh.read()
    if not data:
        raise DamagedFile(path, "the file is empty (0 bytes)")
    try:
        table = pq.read_table(pa.BufferReader(data))
    except Exception as exc:  # noqa: BLE001 - any unreadable content is damage
        raise DamagedFile(
            path, f"not a readable Parquet file ({type(exc).__name__}: {exc})"
        ) from None
    meta = table.schema.metadata or {}
    expected = meta.get(DIGEST_META_KEY)
    if expected is not None:
        try:
            actual = table_digest(table, meta.get(RUNS_META_KEY, b""))
        except Exception as exc:  # noqa: BLE001 - e.g. a flipped byte made a string invalid
            raise DamagedFile(path, f"its data cannot be decoded ({exc})") from None
        if actual.encode() != expected:
            raise DamagedFile(
                path,
                "its data do not match the sha256 checksum written with them (a changed byte?)",
            )
    if columns is not None:
        table = table.select(list(columns))
    return table


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


def _keys_of_table(path: Path, table) -> list:
    """The run keys of a shard read whole: from its metadata, else its id columns."""
    meta = table.schema.metadata or {}
    if RUNS_META_KEY in meta:
        try:
            return [tuple(r) for r in json.loads(meta[RUNS_META_KEY])]
        except (ValueError, TypeError):
            raise DamagedFile(path, "its run keys (Parquet metadata) are not readable") from None
    cols = [table.column(c).to_pylist() for c in ("scenario", "seed", "sample")]
    return sorted(set(zip(*cols)))


def finished_runs(out: Path, *, skip_unreadable: bool = False) -> dict:
    """``{run key: shard file name}`` of every run found in ``out/shards`` (metadata only).

    Args:
        out: the store.
        skip_unreadable: leave out shards that cannot be read instead of raising (a count
            for a dry run; a resume checks every shard with :func:`scan_shards`).

    Raises:
        BatchError: if a shard cannot be read or two shards hold the same run.
    """
    found: dict = {}
    for path in _shard_files(out):
        try:
            keys = _shard_keys(path)
        except BatchError:
            if skip_unreadable:
                continue
            raise
        _add_keys(found, path, keys)
    return found


def _shard_files(out: Path) -> list[Path]:
    """The shards of ``out``, sorted by name."""
    shard_dir = Path(out) / SHARDS
    return sorted(shard_dir.glob(SHARD_GLOB)) if shard_dir.is_dir() else []


def _add_keys(found: dict, path: Path, keys: Iterable) -> None:
    """Record ``path``'s run keys in ``found``, refusing a run held by two shards."""
    for key in keys:
        try:
            key = (str(key[0]), int(key[1]), int(key[2]))
        except (TypeError, ValueError, IndexError):
            raise DamagedFile(path, f"it lists an invalid run key {key!r}") from None
        if key in found:
            raise BatchError(
                f"{path}: run {key} is also in {found[key]}; the store holds duplicate rows "
                "(was a shard copied in by hand?); remove one of the two"
            )
        found[key] = path.name


def scan_shards(out: Path) -> tuple[dict, list[DamagedFile]]:
    """Read every shard whole, check its digest; the finished runs and the damaged shards.

    Returns:
        ``({run key: shard file name}, [DamagedFile, ...])``: runs of damaged shards are not
        counted as finished.

    Raises:
        BatchError: if a shard cannot be opened (e.g. its permissions) or two shards hold
            the same run.
    """
    found: dict = {}
    damaged: list[DamagedFile] = []
    for path in _shard_files(out):
        try:
            table = read_data_file(path, columns=["scenario"])
            keys = _keys_of_table(path, table)
            _add_keys({}, path, keys)
        except DamagedFile as exc:
            damaged.append(exc)
            continue
        except OSError as exc:
            raise BatchError(
                f"{path}: cannot read this shard ({exc.strerror or exc}); fix its permissions "
                "(or move it away to recompute its runs) and rerun the same command"
            ) from None
        _add_keys(found, path, keys)
    return found, damaged


def quarantine_shard(path: Path) -> Path:
    """Move a damaged shard aside (``<name>.damaged``, which no reader opens); return the path."""
    target = path.with_name(path.name + DAMAGED_SUFFIX)
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{DAMAGED_SUFFIX}{n}")
    os.replace(path, target)
    return target


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


#: Types of a batch manifest's fields, checked when a batch reads its store (a field may be
#: absent). ``a.*`` is every value of object ``a``, ``a[]`` every item of array ``a``.
BATCH_MANIFEST_FIELDS: tuple[tuple[str, tuple], ...] = (
    ("kind", (str,)),
    ("command", (str,)),
    ("created", (str,)),
    ("finished", (str, None)),
    ("model_version", (str,)),
    ("model_fingerprint", (str, None)),
    ("root_entropy", (int,)),
    ("seeds", (int,)),
    ("samples", (dict,)),
    ("samples.method", (str,)),
    ("samples.n", (int,)),
    ("samples.seed", (int, None)),
    ("samples.paths", (list,)),
    ("samples.paths[]", (str,)),
    ("samples.distributions", (dict,)),
    ("sample_values", (list,)),
    ("sample_values[]", (dict,)),
    ("streams", (str,)),
    ("overrides", (list,)),
    ("overrides[]", (str,)),
    ("scenarios", (dict,)),
    ("scenarios.*", (dict,)),
    ("scenarios.*.hash", (str,)),
    ("scenarios.*.file", (str,)),
    ("parameters", (dict,)),
    ("git", (dict, None)),
    ("packages", (dict,)),
    ("executor", (dict,)),
    ("runs", (dict,)),
    ("resumed", (list,)),
    ("resumed[]", (dict,)),
)

#: Types of the manifest fields every run store's readers use (``analysis.load_manifest``).
STORE_MANIFEST_FIELDS: tuple[tuple[str, tuple], ...] = (
    ("kind", (str,)),
    ("model_version", (str, None)),
    ("command", (str, None)),
    ("created", (str, None)),
    ("finished", (str, None)),
    ("git", (dict, None)),
    ("packages", (dict, None)),
    ("root_entropy", (int, None)),
    ("seeds", (int, None)),
    ("samples", (dict, None)),
    ("samples.n", (int,)),
    ("scenarios", (dict, None)),
    ("scenarios.*", (dict,)),
)

_TYPE_NAMES = {
    str: "a string",
    int: "a whole number",
    float: "a number",
    bool: "true or false",
    dict: "a JSON object",
    list: "a JSON array",
    None: "null",
}


def _json_kind(value) -> str:
    """What a JSON value is, for messages: ``a string ("20")``."""
    if value is None:
        return "null"
    kind = next(
        (name for t, name in _TYPE_NAMES.items() if t is not None and _has_type(value, t)),
        type(value).__name__,
    )
    text = json.dumps(value, default=str)
    return f"{kind} ({text if len(text) <= 40 else text[:37] + '...'})"


def _has_type(value, t) -> bool:
    """JSON typing: a bool is not a number, an int is a number."""
    if t is None:
        return value is None
    if t in (int, float) and isinstance(value, bool):
        return False
    if t is float:
        return isinstance(value, int | float)
    return isinstance(value, t)


def _values_at(obj, parts: list[str], where: str):
    """``(path, value)`` of every value at the field path ``parts`` present in ``obj``."""
    if not parts:
        yield where, obj
        return
    head, rest = parts[0], parts[1:]
    if head == "*":
        if isinstance(obj, dict):
            for key, value in obj.items():
                yield from _values_at(value, rest, f"{where}.{key}")
    elif head == "[]":
        if isinstance(obj, list):
            for i, value in enumerate(obj):
                yield from _values_at(value, rest, f"{where}[{i}]")
    elif isinstance(obj, dict) and head in obj:
        yield from _values_at(obj[head], rest, f"{where}.{head}" if where else head)


def manifest_field_problem(manifest: dict, fields: Iterable[tuple[str, tuple]]) -> str | None:
    """The first field of ``manifest`` of the wrong type, as a message; ``None`` if all fit.

    Args:
        manifest: the manifest (a dict).
        fields: ``(path, allowed types)`` pairs such as :data:`BATCH_MANIFEST_FIELDS`.
    """
    for spec, types in fields:
        parts = []
        for part in spec.split("."):
            if part.endswith("[]"):
                parts += [part[:-2], "[]"]
            else:
                parts.append(part)
        for where, value in _values_at(manifest, parts, ""):
            if not any(_has_type(value, t) for t in types):
                allowed = " or ".join(_TYPE_NAMES[t] for t in types)
                return f"field '{where}' is {_json_kind(value)}; expected {allowed}"
    return None


def _is_temporary(name: str) -> bool:
    """A temporary file of an atomic write (``.<name>.<pid>.part``)."""
    return name.startswith(".") and name.endswith(PART_SUFFIX)


def half_made(out: Path) -> bool:
    """True if ``out`` holds only what an interrupted or failed start of a batch leaves.

    That is: no manifest and no data, only the lock, temporary files of atomic writes, an
    ``shards/`` directory without a shard and resolved scenarios (an older version wrote
    those before the manifest). Such a store is started afresh (:func:`clear_half_made`).
    """
    out = Path(out)
    if not out.is_dir() or (out / MANIFEST).exists():
        return False
    for p in out.iterdir():
        if p.name == LOCK or _is_temporary(p.name):
            continue
        if p.name == SHARDS and p.is_dir() and all(_is_temporary(q.name) for q in p.iterdir()):
            continue
        if p.name == RESOLVED and p.is_dir() and all(q.is_file() for q in p.iterdir()):
            continue
        return False
    return True


def clear_temporaries(out: Path) -> None:
    """Remove the temporary files an interrupted write left in ``out`` and ``out/resolved``.

    (Those in ``out/shards`` go in :func:`prepare_shards`.)
    """
    for folder in (Path(out), Path(out) / RESOLVED):
        if folder.is_dir():
            for stale in folder.glob(PART_GLOB):
                stale.unlink(missing_ok=True)


def clear_half_made(out: Path) -> None:
    """Empty a :func:`half_made` store (its lock stays) so a batch can start in it afresh."""
    clear_temporaries(out)
    resolved = Path(out) / RESOLVED
    if resolved.is_dir():
        for leftover in resolved.iterdir():
            leftover.unlink(missing_ok=True)


def read_manifest(out: Path) -> dict | None:
    """The existing batch manifest of ``out``, ``None`` for a new, empty or half-made directory.

    A directory that :func:`half_made` recognises (an interrupted start: no manifest, no
    data) reads as new.

    Raises:
        BatchError: if ``out`` is a file, a non-batch store, an unrelated non-empty
            directory, or its manifest is not UTF-8 JSON or has a field of the wrong type.
    """
    if not out.exists():
        return None
    if not out.is_dir():
        raise BatchError(f"--out {out}: exists and is not a directory")
    mpath = out / MANIFEST
    if not mpath.is_file():
        try:
            if half_made(out):
                return None
        except OSError as exc:
            raise BatchError(
                f"--out {out}: cannot read the directory ({exc.strerror}); choose another --out"
            ) from None
        raise BatchError(
            f"--out {out}: a non-empty directory without {MANIFEST} (not a batch store); "
            "choose another --out"
        )
    damaged = (
        "the manifest is damaged (edited by hand?): restore it from a copy, or choose another --out"
    )
    try:
        text = mpath.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BatchError(
            f"{mpath}: not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x}); "
            + damaged
        ) from None
    except OSError as exc:
        raise BatchError(
            f"{mpath}: cannot read the manifest ({exc.strerror or exc}); choose another --out"
        ) from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BatchError(
            f"{mpath}: cannot read the manifest (not JSON: {exc}); {damaged}"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("kind") != "batch":
        kind = manifest.get("kind") if isinstance(manifest, dict) else None
        raise BatchError(
            f"--out {out}: holds a '{kind}' store, not a batch; choose another --out "
            "(results are never overwritten)"
        )
    problem = manifest_field_problem(manifest, BATCH_MANIFEST_FIELDS)
    if problem:
        raise BatchError(f"{mpath}: {problem}: {damaged}")
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
        "streams": plan.streams,
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


def resumed_manifest(
    manifest: dict,
    command: str,
    finished_before: int,
    *,
    plan: BatchPlan | None = None,
    extended: dict | None = None,
) -> dict:
    """``manifest`` marked as running again, with an entry for this resume in ``resumed``.

    Args:
        manifest: the store's manifest.
        command: this invocation's command line.
        finished_before: runs found finished.
        plan: the batch asked for (needed with ``extended``).
        extended: what this invocation adds (:func:`growth`), e.g. ``{"seeds": [20, 30]}``:
            recorded in the entry, and the manifest's seeds, samples and run total become
            the plan's.
    """
    manifest["finished"] = None
    manifest.setdefault("resumed", [])
    if not isinstance(manifest["resumed"], list):
        manifest["resumed"] = []
    entry = {
        "time": provenance.now(),
        "command": command,
        "finished_before": finished_before,
        "git": provenance.git_state(),
    }
    if extended and plan is not None:
        ident = plan.identity()
        manifest["seeds"] = plan.seeds
        manifest["samples"] = ident["samples"]
        manifest["sample_values"] = ident["sample_values"]
        manifest["runs"] = {"total": plan.total, "finished": None, "failed": None}
        entry["extended"] = extended
    manifest["resumed"].append(entry)
    return manifest


def write_manifest(out: Path, manifest: dict) -> None:
    """Write ``out/manifest.json`` atomically."""
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2, default=str))


def write_resolved(out: Path, scenarios: Iterable) -> None:
    """Write each scenario's resolved YAML to ``out/resolved/<name>.yaml`` atomically."""
    (out / RESOLVED).mkdir(exist_ok=True)
    for sc in scenarios:
        atomic_write_text(out / resolved_file(sc.name), sc.to_yaml())


def describe_mismatch(old: dict, new: dict, *, extend: bool = False) -> list[str]:
    """Human-readable differences between a stored manifest and the batch asked for.

    Args:
        old: the store's manifest.
        new: :meth:`~experiment.plan.BatchPlan.identity` of the batch asked for.
        extend: more seeds, or more samples of an extensible design (whose first points
            are the stored ones: Sobol'), are not differences (see :func:`growth`); fewer
            are, and so is a Latin hypercube of another size, with the reason.
    """
    diffs = _scenario_mismatch(old, new)
    old_seeds = old.get("seeds")
    if old_seeds != new["seeds"]:
        if not extend:
            diffs.append(f"seeds: {old_seeds} in the store, {new['seeds']} asked for")
        elif not isinstance(old_seeds, int) or old_seeds > new["seeds"]:
            diffs.append(
                f"seeds: {old_seeds} in the store, {new['seeds']} asked for (a batch can be "
                "extended with more seeds, not reduced: choose another --out for fewer)"
            )
    if old.get("streams", "shared") != new.get("streams", "shared"):
        diffs.append(
            f"streams: {old.get('streams', 'shared')} in the store, {new['streams']} asked for"
        )
    if old.get("root_entropy") != new["root_entropy"]:
        diffs.append(
            f"root entropy: {old.get('root_entropy')} in the store, {new['root_entropy']} asked for"
        )
    diffs.extend(_sample_mismatch(old, new, extend))
    return diffs


def _sample_mismatch(old: dict, new: dict, extend: bool) -> list[str]:
    """The differences of the sample design (see :func:`describe_mismatch`)."""
    o, n = old.get("samples") or {}, new["samples"]
    if not isinstance(o, dict):
        o = {}
    old_spec, new_spec = f"{o.get('method')}:{o.get('n')}", f"{n['method']}:{n['n']}"
    old_n = o.get("n")
    grows = False
    if (o.get("method"), old_n) != (n["method"], n["n"]):
        if not (extend and o.get("method") == n["method"] and isinstance(old_n, int)):
            return [f"sample design: {old_spec} in the store, {new_spec} asked for"]
        if old_n > n["n"]:
            return [
                f"sample design: {old_spec} in the store, {new_spec} asked for (a batch can be "
                "extended with more samples, not reduced: choose another --out for fewer)"
            ]
        grows = True
    if o.get("seed") != n["seed"]:
        return [f"sample seed: {o.get('seed')} in the store, {n['seed']} asked for"]
    if o.get("paths") != n["paths"] or o.get("distributions") != n["distributions"]:
        return [
            f"sampled parameters: {o.get('paths')} in the store, {n['paths']} asked for "
            "(or their distributions differ)"
        ]
    if grows and n["method"] == "lhs":
        return [
            f"sample design: {old_spec} in the store, {new_spec} asked for: a Latin hypercube "
            f"is drawn anew for each K, so the first {old_n} points of {new_spec} are not the "
            f"stored ones and the batch would not equal one run at {new_spec} from scratch "
            "(a sobol design keeps its first points and can be extended); choose another --out"
        ]
    new_values = new["sample_values"][:old_n] if grows else new["sample_values"]
    if old.get("sample_values") != new_values:
        return ["sampled values differ for the same design and seed (a different scipy version?)"]
    return []


def growth(old: dict, new: dict) -> dict:
    """What the batch asked for adds to a store it matches with ``describe_mismatch(extend=True)``.

    Returns:
        ``{"seeds": [old, new]}`` and/or ``{"samples": [old K, new K]}``; empty if the
        batch is the store's.
    """
    out = {}
    if isinstance(old.get("seeds"), int) and old["seeds"] < new["seeds"]:
        out["seeds"] = [old["seeds"], new["seeds"]]
    o = old.get("samples") if isinstance(old.get("samples"), dict) else {}
    if isinstance(o.get("n"), int) and o["n"] < new["samples"]["n"]:
        out["samples"] = [o["n"], new["samples"]["n"]]
    return out


def _scenario_mismatch(old: dict, new: dict) -> list[str]:
    """The scenarios added, removed or changed between a manifest and a batch identity."""
    diffs = []
    old_sc = (
        {
            name: entry.get("hash") if isinstance(entry, dict) else None
            for name, entry in (old.get("scenarios") or {}).items()
        }
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
        try:
            self.fh = open(self.path, "a+")
        except OSError as exc:
            if not not_writable(exc):
                raise
            raise BatchError(
                f"{self.path.parent}: cannot write to this run store ({exc.strerror}); a batch "
                "writes its lock, manifest and shards there: copy the store to a writable "
                "place and rerun with that --out (or choose another --out)"
            ) from None
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
