"""Read a run store (the output of ``decouple run`` or ``decouple batch``) into pandas.

A run store is a directory holding ``manifest.json`` and either one ``trajectories.parquet``
(``decouple run``) or ``shards/*.parquet`` (``decouple batch``; each shard holds complete runs).
Both layouts share the columns of ``docs/outputs.md``. :func:`load` hides the difference and
returns one tidy frame (one row per scenario x sample x seed x quarter), reading only the
columns and scenarios asked for so that a report on a large batch does not pull every column
into memory.

The file names of the layout come from :mod:`experiment.store`, the one module that owns it.
pandas and pyarrow are imported inside the functions so that ``import analysis`` (done by the
CLI at start-up) stays cheap.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiment.store import FAILURES, MANIFEST, SHARD_GLOB, SHARDS, TRAJECTORIES

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
            manifest is not a JSON object.
    """
    path = _run_dir(run_dir)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ValueError(
            f"{str(path)!r} is not a run store: it has no {MANIFEST} "
            "(expected the output directory of `decouple run` or `decouple batch`)"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{str(manifest_path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ValueError(  # noqa: TRY004 - the contract: bad input is a ValueError
            f"{str(manifest_path)!r} does not hold a JSON object"
        )
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


def _dataset(run_dir: str | Path):
    """Open the run store's Parquet files as one pyarrow dataset with a unified schema."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    files = data_files(run_dir)
    try:
        schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(
            f"the Parquet files of run store {str(run_dir)!r} have incompatible schemas: {exc}"
        ) from exc
    missing = [c for c in IDENTIFIERS if c not in schema.names]
    if missing:
        raise ValueError(
            f"run store {str(run_dir)!r} lacks identifier column(s) {missing}; see docs/outputs.md"
        )
    return ds.dataset([str(f) for f in files], schema=schema, format="parquet")


def available_columns(run_dir: str | Path) -> list[str]:
    """Return the columns of a run store (identifiers first) without reading any data.

    Args:
        run_dir: the run-store directory.

    Returns:
        Column names in file order.
    """
    return list(_dataset(run_dir).schema.names)


def available_scenarios(run_dir: str | Path) -> list[str]:
    """Return the sorted scenario names present in a run store (reads one column only).

    Args:
        run_dir: the run-store directory.
    """
    return _scenarios_in(_dataset(run_dir))


def _scenarios_in(dataset) -> list[str]:
    import pyarrow.compute as pc

    table = dataset.to_table(columns=["scenario"])
    values = pc.unique(table.column("scenario").combine_chunks())
    if hasattr(values, "dictionary_decode"):
        values = values.dictionary_decode()
    return sorted(str(v) for v in values.to_pylist() if v is not None)


def load(
    run_dir: str | Path,
    scenarios: Iterable[str] | str | None = None,
    columns: Iterable[str] | str | None = None,
) -> pd.DataFrame:
    """Load a run store into one tidy DataFrame.

    Reads ``trajectories.parquet`` and/or ``shards/*.parquet`` with pyarrow, pushing the
    column selection and the scenario filter down to the Parquet reader, so that only what
    is asked for is read.

    Args:
        run_dir: the run-store directory (it must hold ``manifest.json``).
        scenarios: scenario name(s) to keep; ``None`` keeps all.
        columns: output column(s) to return besides the identifiers; ``None`` returns all.
            Identifier columns (:data:`IDENTIFIERS`) are always included.

    Returns:
        One row per scenario x sample x seed x quarter, sorted by scenario, sample, seed,
        quarter, with a fresh RangeIndex. ``scenario`` and ``quarter`` are Python strings.

    Raises:
        ValueError: naming the directory, if it does not exist, has no manifest or no
            data, or if an unknown column or scenario is asked for (the message lists the
            valid ones).
    """
    import pyarrow.dataset as ds

    dataset = _dataset(run_dir)
    names = list(dataset.schema.names)

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

    flt = None
    if scenarios is not None:
        if isinstance(scenarios, str):
            scenarios = [scenarios]
        scenarios = list(dict.fromkeys(scenarios))
        present = _scenarios_in(dataset)
        unknown = [s for s in scenarios if s not in present]
        if unknown:
            raise ValueError(
                f"unknown scenario(s) {unknown} in run store {str(run_dir)!r}; "
                f"present: {', '.join(present) or '(none)'}"
            )
        flt = ds.field("scenario").isin(scenarios)

    table = dataset.to_table(columns=list(IDENTIFIERS) + wanted, filter=flt)
    return _to_tidy(table)


def _to_tidy(table: pa.Table) -> pd.DataFrame:
    """Convert an Arrow table to the sorted tidy frame described in :func:`load`."""
    import pandas as pd

    frame = table.to_pandas()
    for col in ("scenario", "quarter"):
        if isinstance(frame[col].dtype, pd.CategoricalDtype) or frame[col].dtype != object:
            frame[col] = frame[col].astype(str).astype(object)
    frame = frame.sort_values(list(SORT_KEYS), kind="stable", ignore_index=True)
    return frame
