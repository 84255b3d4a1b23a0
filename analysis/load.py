"""Read a run store (the output of ``decouple run`` or ``decouple batch``) into pandas.

A run store is a directory holding ``manifest.json`` and either one ``trajectories.parquet``
(``decouple run``) or ``shards/*.parquet`` (``decouple batch``; each shard holds complete runs).
Both layouts share the columns of ``docs/outputs.md``. :func:`load` hides the difference and
returns one tidy frame (one row per scenario x sample x seed x quarter). Files are read one
at a time, each checked against the sha256 of its data written with it, and only the columns
and scenarios asked for are kept, so a report on a large batch does not hold every column in
memory.

Nothing damaged is read as data: an empty, truncated, garbled or byte-flipped file, an
unreadable one, duplicate rows for one ``(scenario, seed, sample, quarter)`` and a manifest
that is not UTF-8 JSON or has a field of the wrong type each raise ``ValueError`` with a
message naming the file (and the key or field) and what to do.

The file names of the layout come from :mod:`experiment.store`, the one module that owns it.
pandas and pyarrow are imported inside the functions so that ``import analysis`` (done by the
CLI at start-up) stays cheap.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiment.errors import DamagedFile
from experiment.store import (
    FAILURES,
    MANIFEST,
    SHARD_GLOB,
    SHARDS,
    STORE_MANIFEST_FIELDS,
    TRAJECTORIES,
    manifest_field_problem,
    read_data_file,
    resolved_file,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd
    import pyarrow as pa

#: Identifier columns, always returned by :func:`load`, in this order.
IDENTIFIERS: tuple[str, ...] = ("scenario", "seed", "sample", "quarter", "year")

#: Sort order of the tidy frame.
SORT_KEYS: tuple[str, ...] = ("scenario", "sample", "seed", "quarter")

#: Manifest keys documented in docs/outputs.md; missing ones read as "unknown".
MANIFEST_KEYS: tuple[str, ...] = (
    "kind",
    "model_version",
    "command",
    "created",
    "finished",
    "git",
    "packages",
    "root_entropy",
    "seeds",
    "samples",
    "scenarios",
)

UNKNOWN = "unknown"


def _run_dir(run_dir: str | Path) -> Path:
    """Return ``run_dir`` as a Path, raising ValueError if it is not an existing directory."""
    path = Path(run_dir)
    if not path.exists():
        raise ValueError(f"run store {str(path)!r} does not exist")
    if not path.is_dir():
        raise ValueError(f"run store {str(path)!r} is not a directory")
    return path


def load_manifest(run_dir: str | Path) -> dict[str, Any]:
    """Read ``manifest.json`` of a run store.

    The manifest is read defensively: every documented top-level key
    (:data:`MANIFEST_KEYS`) is present in the result, set to ``"unknown"`` when the file
    lacks it, so that report captions never fail on an older or partial manifest. Keys
    the documentation does not list are passed through unchanged.

    Args:
        run_dir: the run-store directory.

    Returns:
        The manifest as a dict.

    Raises:
        ValueError: if the directory does not exist, has no ``manifest.json``, or the
            manifest cannot be read, is not UTF-8 JSON, not a JSON object, or has a
            documented field of the wrong type (the message names the file and field).
    """
    path = _run_dir(run_dir)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ValueError(
            f"{str(path)!r} is not a run store: it has no {MANIFEST} "
            "(expected the output directory of `decouple run` or `decouple batch`)"
        )
    damaged = "the manifest is damaged (edited by hand?): restore it from a copy"
    try:
        raw = manifest_path.read_bytes()
    except OSError as exc:
        raise ValueError(
            f"{str(manifest_path)!r}: cannot read the manifest ({exc.strerror or exc}); "
            "check its permissions"
        ) from None
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{str(manifest_path)!r} is not UTF-8 text (byte {exc.start} is "
            f"{raw[exc.start]:#04x}): {damaged}"
        ) from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(manifest_path)!r} is not valid JSON: {exc}: {damaged}") from None
    if not isinstance(manifest, dict):
        raise ValueError(  # noqa: TRY004 - the contract: bad input is a ValueError
            f"{str(manifest_path)!r} does not hold a JSON object"
        )
    problem = manifest_field_problem(manifest, STORE_MANIFEST_FIELDS)
    if problem:
        raise ValueError(f"{str(manifest_path)!r}: {problem}: {damaged}")
    for key in MANIFEST_KEYS:
        if manifest.get(key) is None:
            manifest[key] = UNKNOWN
    return manifest


def data_files(run_dir: str | Path) -> list[Path]:
    """List the Parquet files of a run store: ``trajectories.parquet`` and ``shards/*.parquet``.

    Args:
        run_dir: the run-store directory.

    Returns:
        The files, sorted by path (trajectories first).

    Raises:
        ValueError: if the directory has no manifest or no data file.
    """
    path = _run_dir(run_dir)
    load_manifest(path)  # validates that this is a run store
    files: list[Path] = []
    single = path / TRAJECTORIES
    if single.is_file():
        files.append(single)
    shard_dir = path / SHARDS
    if shard_dir.is_dir():
        files.extend(sorted(p for p in shard_dir.glob(SHARD_GLOB) if p.is_file()))
    if not files:
        raise ValueError(
            f"run store {str(path)!r} holds no data: expected {TRAJECTORIES} "
            f"or {SHARDS}/{SHARD_GLOB} (did the run or every batch shard fail? see {FAILURES})"
        )
    return files


def _what_to_do(run_dir: Path) -> str:
    """What to do about a damaged data file of this store, for messages."""
    try:
        manifest = json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}
    command = manifest.get("command") if isinstance(manifest, dict) else None
    kind = manifest.get("kind") if isinstance(manifest, dict) else None
    if kind == "batch":
        again = f" ({command})" if isinstance(command, str) else ""
        return (
            "delete this shard and rerun the batch's command on this store"
            f"{again} to compute its runs again (see {MANIFEST} 'command')"
        )
    again = f" ({command})" if isinstance(command, str) else ""
    return f"rerun the command that made this store{again} into a new --out"


def _read_file(run_dir: Path, path: Path):
    """One data file read whole and checked, or ``ValueError`` naming it and what to do."""
    try:
        return read_data_file(path)
    except DamagedFile as exc:
        raise ValueError(f"{exc}; {_what_to_do(run_dir)}") from None
    except OSError as exc:
        raise ValueError(
            f"{path}: cannot read this data file ({type(exc).__name__}: "
            f"{exc.strerror or exc}); check its permissions (it must be readable by you)"
        ) from None


def _schema(run_dir: Path, files: list[Path]):
    """The unified schema of the files (types promoted), read from their footers."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = []
    for f in files:
        try:
            schemas.append(pq.read_schema(f))
        except Exception as exc:  # noqa: BLE001 - say which file, and why, in the user's terms
            _read_file(run_dir, f)  # raises for a damaged or unreadable file, naming it
            raise ValueError(f"{f}: cannot read its schema ({exc})") from None
    try:
        schema = pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(
            f"the Parquet files of run store {str(run_dir)!r} have incompatible schemas: {exc}"
        ) from exc
    missing = [c for c in IDENTIFIERS if c not in schema.names]
    if missing:
        raise ValueError(
            f"run store {str(run_dir)!r} lacks identifier column(s) {missing}; see docs/outputs.md"
        )
    return schema


def available_columns(run_dir: str | Path) -> list[str]:
    """Return the columns of a run store (identifiers first) without reading any data.

    Args:
        run_dir: the run-store directory.

    Returns:
        Column names in file order.
    """
    path = _run_dir(run_dir)
    return list(_schema(path, data_files(path)).names)


def available_scenarios(run_dir: str | Path) -> list[str]:
    """Return the sorted scenario names present in a run store (each file read and checked).

    Args:
        run_dir: the run-store directory.
    """
    path = _run_dir(run_dir)
    names: set[str] = set()
    for f in data_files(path):
        names |= _scenarios_of(_read_file(path, f))
    return sorted(names)


def _scenarios_of(table) -> set[str]:
    """The scenario names in a table's ``scenario`` column."""
    import pyarrow.compute as pc

    values = pc.unique(table.column("scenario").combine_chunks())
    if hasattr(values, "dictionary_decode"):
        values = values.dictionary_decode()
    return {str(v) for v in values.to_pylist() if v is not None}


def load(
    run_dir: str | Path,
    scenarios: Iterable[str] | str | None = None,
    columns: Iterable[str] | str | None = None,
) -> pd.DataFrame:
    """Load a run store into one tidy DataFrame.

    Reads ``trajectories.parquet`` and/or ``shards/*.parquet`` with pyarrow one file at a
    time: each is read whole and checked against the sha256 of its data written with it
    (files written before checksums existed are read unchecked), then only the columns and
    scenarios asked for are kept.

    Args:
        run_dir: the run-store directory (it must hold ``manifest.json``).
        scenarios: scenario name(s) to keep; ``None`` keeps all.
        columns: output column(s) to return besides the identifiers; ``None`` returns all.
            Identifier columns (:data:`IDENTIFIERS`) are always included.

    Returns:
        One row per scenario x sample x seed x quarter, sorted by scenario, sample, seed,
        quarter, with a fresh RangeIndex. ``scenario`` and ``quarter`` are Python strings.

    Raises:
        ValueError: naming the directory or file, if it does not exist, has no manifest or
            no data, if a data file is damaged or unreadable, if two rows share a
            ``(scenario, seed, sample, quarter)`` key, or if an unknown column or scenario
            is asked for (the message lists the valid ones).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    path = _run_dir(run_dir)
    files = data_files(path)
    schema = _schema(path, files)
    names = list(schema.names)

    if isinstance(columns, str):
        columns = [columns]
    if columns is None:
        wanted = [c for c in names if c not in IDENTIFIERS]
    else:
        wanted = list(dict.fromkeys(c for c in columns if c not in IDENTIFIERS))
        unknown = [c for c in wanted if c not in names]
        if unknown:
            valid = ", ".join(c for c in names if c not in IDENTIFIERS)
            raise ValueError(
                f"unknown column(s) {unknown} for run store {str(run_dir)!r}; "
                f"valid columns: {valid}"
            )
    if isinstance(scenarios, str):
        scenarios = [scenarios]
    if scenarios is not None:
        scenarios = list(dict.fromkeys(scenarios))

    keep = [*IDENTIFIERS, *wanted]
    target = pa.schema([schema.field(c) for c in keep])
    present: set[str] = set()
    tables = []
    for i, f in enumerate(files):
        table = _read_file(path, f)
        present |= _scenarios_of(table)
        if scenarios is not None:
            table = table.filter(pc.is_in(table.column("scenario"), pa.array(scenarios)))
        tables.append(
            _conform(table, target).append_column("__file", pa.array([i] * len(table), pa.int32()))
        )
    if scenarios is not None:
        unknown = [s for s in scenarios if s not in present]
        if unknown:
            raise ValueError(
                f"unknown scenario(s) {unknown} in run store {str(run_dir)!r}; "
                f"present: {', '.join(sorted(present)) or '(none)'}"
            )
    frame = _to_tidy(pa.concat_tables(tables))
    _refuse_duplicates(frame, files, path)
    return frame.drop(columns="__file")


def _conform(table, target):
    """``table``'s columns of ``target``, cast to its types; absent ones filled with nulls."""
    import pyarrow as pa

    arrays = []
    for field in target:
        if field.name in table.column_names:
            arrays.append(table.column(field.name).cast(field.type))
        else:  # a file from an older model version: the column did not exist
            arrays.append(pa.nulls(len(table), field.type))
    return pa.table(arrays, schema=target.remove_metadata())


def _refuse_duplicates(frame: pd.DataFrame, files: list[Path], run_dir: Path) -> None:
    """Refuse rows sharing a ``(scenario, seed, sample, quarter)`` key, naming key and files."""
    keys = ["scenario", "seed", "sample", "quarter"]
    dup = frame.duplicated(keys, keep=False)
    if not dup.any():
        return
    first = frame.loc[dup.idxmax(), keys]
    same = dup & (frame[keys] == first.to_numpy()).all(axis=1)
    where = sorted({str(files[i]) for i in frame.loc[same, "__file"]})
    values = {k: first[k].item() if hasattr(first[k], "item") else first[k] for k in keys}
    key = ", ".join(f"{k} {values[k]!r}" for k in keys)
    holders = " and ".join(where) if len(where) > 1 else f"{where[0]} (twice)"
    raise ValueError(
        f"run store {str(run_dir)!r} holds more than one row for ({key}): in {holders}; "
        "a run is stored once, so one of these copies must go (a shard copied in by hand? "
        "delete the copy; for a batch store, rerun its command if runs are then missing)"
    )


def _to_tidy(table: pa.Table) -> pd.DataFrame:
    """Convert an Arrow table to the sorted tidy frame described in :func:`load`."""
    import pandas as pd

    frame = table.to_pandas()
    for col in ("scenario", "quarter"):
        if isinstance(frame[col].dtype, pd.CategoricalDtype) or frame[col].dtype != object:
            frame[col] = frame[col].astype(str).astype(object)
    frame = frame.sort_values(list(SORT_KEYS), kind="stable", ignore_index=True)
    return frame


def load_resolved(
    run_dir: str | Path, manifest: dict[str, Any] | None = None
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Read the resolved scenarios a run store keeps (``resolved/<scenario>.yaml``).

    A report shows what each scenario changed, so it needs the scenarios exactly as they
    ran: inheritance applied, ``--set`` overrides included. They are read from the files
    the manifest names (``scenarios.<name>.resolved_file``, default
    :func:`experiment.store.resolved_file`), or from the copy a batch manifest embeds
    (``scenarios.<name>.resolved``) when the file is missing. Nothing here is fatal: a
    scenario whose resolved form cannot be read is left out and named in the problems, so
    that the rest of the report is still built.

    Args:
        run_dir: the run-store directory.
        manifest: the manifest if already read (:func:`load_manifest`).

    Returns:
        ``({scenario: resolved scenario as plain data}, [problem, ...])``.
    """
    import yaml

    path = _run_dir(run_dir)
    manifest = manifest if manifest is not None else load_manifest(path)
    entries = manifest.get("scenarios")
    entries = entries if isinstance(entries, dict) else {}
    resolved: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for name, entry in entries.items():
        entry = entry if isinstance(entry, dict) else {}
        rel = entry.get("resolved_file") or resolved_file(str(name))
        file = path / str(rel)
        data = None
        if file.is_file():
            try:
                data = yaml.safe_load(file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
                problems.append(f"{file}: cannot read the resolved scenario ({exc})")
        try:  # the copy a batch manifest embeds
            embedded = entry["resolved"]
        except KeyError:
            embedded = None
        if not isinstance(data, dict) and isinstance(embedded, dict):
            data = embedded
        if isinstance(data, dict):
            resolved[str(name)] = data
        elif not problems or str(file) not in problems[-1]:
            problems.append(
                f"scenario {name!r}: no resolved scenario in the store ({rel} is missing)"
            )
    return resolved, problems
