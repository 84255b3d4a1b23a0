"""Tests of the run store (experiment/store.py): its layout and the operations on it.

The layout's file names are spelled once, in experiment/store.py: a test walks the source of
``experiment/``, ``analysis/`` and ``decouple/`` and fails on a string literal (docstrings
aside) that spells one of them. Whole batches (resume, failures, executors) are tested in
test_batch.py.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from experiment import store
from experiment.errors import BatchError

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("experiment", "analysis", "decouple")

# ---------------------------------------------------------------------------------------
# The layout is spelled in one place
# ---------------------------------------------------------------------------------------

LAYOUT_NAMES = (
    store.MANIFEST,
    store.TRAJECTORIES,
    store.SHARDS,
    store.FAILURES,
    store.RESOLVED,
    store.LOCK,
)
_FILE_NAMES = re.compile(
    "|".join(re.escape(n) for n in (store.MANIFEST, store.TRAJECTORIES, store.FAILURES))
)
_DIR_NAMES = "|".join(re.escape(n) for n in (store.SHARDS, store.RESOLVED))
_DIR_PATHS = re.compile(rf"(?<![\w.-])(?:{_DIR_NAMES})/|/(?:{_DIR_NAMES})(?![\w-])")


def _skipped_nodes(tree: ast.AST) -> set[int]:
    """Docstrings, and keys of dicts and subscripts (the manifest's ``"resolved"`` key)."""
    nodes = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                nodes.add(id(first.value))
        elif isinstance(node, ast.Dict):
            nodes |= {id(k) for k in node.keys if k is not None}
        elif isinstance(node, ast.Subscript):
            nodes.add(id(node.slice))
    return nodes


def layout_literals(source: str) -> list[tuple[int, str]]:
    """``(line, literal)`` of each string literal (not a docstring) spelling a layout name.

    A literal spells a name if it is the name (``"shards"``, ``"/.lock"``), contains one of
    the file names (``"see failures.jsonl"``) or uses a directory name as a path component
    (``"shards/*.parquet"``, ``"{out}/resolved"``). Prose such as "the resolved hash" is not
    a spelling, nor is a dict or subscript key (the manifest's ``"resolved"`` entry).
    """
    tree = ast.parse(source)
    skip = _skipped_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        if id(node) in skip:
            continue
        text = node.value
        if text.strip("/ ") in LAYOUT_NAMES or _FILE_NAMES.search(text) or _DIR_PATHS.search(text):
            found.append((node.lineno, text))
    return found


def test_the_layout_checker_finds_spellings_and_ignores_prose():
    source = '''
"""Module docstring naming manifest.json and shards/ is documentation."""
def f(out, n):
    """So is a function's: trajectories.parquet."""
    a = out / "shards"
    b = f"see {out / 'failures.jsonl'}"
    c = f"{out}/resolved/{n}.yaml"
    d = out / ".lock"
    e = "expected shards/*.parquet"
    ok = "the resolved hash; the other runs are in the shards"
    key = {"resolved": n}["resolved"]
    return a, b, c, d, e, ok, key
'''
    found = layout_literals(source)
    assert sorted(line for line, _ in found) == [5, 6, 7, 8, 9]


def test_store_layout_names_are_spelled_only_in_store_py():
    offenders = []
    for package in SCANNED:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "experiment" / "store.py":
                continue
            for line, text in layout_literals(path.read_text(encoding="utf-8")):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {text!r}")
    assert not offenders, (
        "run-store file names must come from experiment.store (MANIFEST, TRAJECTORIES, "
        "SHARDS, FAILURES, RESOLVED, LOCK, resolved_file()):\n" + "\n".join(offenders)
    )


def test_layout_names_are_the_documented_ones():
    """Stores written by earlier versions must stay readable: the names never change."""
    assert store.MANIFEST == "manifest.json"
    assert store.TRAJECTORIES == "trajectories.parquet"
    assert store.SHARDS == "shards"
    assert store.FAILURES == "failures.jsonl"
    assert store.RESOLVED == "resolved"
    assert store.LOCK == ".lock"
    assert store.resolved_file("baseline") == "resolved/baseline.yaml"
    docs = (ROOT / "docs" / "batch.md").read_text(encoding="utf-8")
    for name in (store.MANIFEST, store.FAILURES, store.LOCK, "resolved/<scenario>.yaml"):
        assert f"`{name}`" in docs
    assert f"`{store.SHARDS}/<scenario>-k<sample>-r<first>-<last>.parquet`" in docs


def test_the_cli_imports_only_the_standard_library_at_start_up():
    """``decouple --help`` stays fast: registering the sub-commands imports nothing heavy."""
    heavy = ("numpy", "pandas", "pyarrow", "scipy", "model", "tqdm", "yaml", "pydantic")
    code = (
        "import sys, decouple.cli as c; c.build_parser(); "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert proc.stdout.strip() == "[]", proc.stdout


# ---------------------------------------------------------------------------------------
# Shards and finished runs
# ---------------------------------------------------------------------------------------


def _table(scenario: str, seeds: list[int], sample: int = 0) -> pa.Table:
    n = 2  # quarters per run
    rows = [(s, q) for s in seeds for q in range(n)]
    return pa.table(
        {
            "scenario": [scenario] * len(rows),
            "seed": [s for s, _ in rows],
            "sample": [sample] * len(rows),
            "quarter": [f"2014Q{q + 1}" for _, q in rows],
            "x": [float(s * 10 + q) for s, q in rows],
        }
    )


def test_shard_name_follows_its_runs():
    assert store.shard_name("baseline", 3, [4, 5, 6]) == "baseline-k00003-r00004-00006.parquet"
    assert store.shard_name("a", 0, (7,)) == "a-k00000-r00007-00007.parquet"


def test_shards_round_trip_through_finished_runs(tmp_path):
    assert store.finished_runs(tmp_path) == {}  # no shards directory yet
    shard_dir = store.prepare_shards(tmp_path)
    assert shard_dir == tmp_path / store.SHARDS and shard_dir.is_dir()
    first = store.write_shard(shard_dir, "a", 0, [0, 1], _table("a", [0, 1]))
    store.write_shard(shard_dir, "a", 1, [2], _table("a", [2], sample=1))
    assert first.name == store.shard_name("a", 0, [0, 1])
    assert not list(shard_dir.glob(store.PART_GLOB))  # no temporary file left
    assert store.finished_runs(tmp_path) == {
        ("a", 0, 0): first.name,
        ("a", 1, 0): first.name,
        ("a", 2, 1): store.shard_name("a", 1, [2]),
    }
    meta = pa.parquet.read_schema(first).metadata
    assert json.loads(meta[store.RUNS_META_KEY]) == [["a", 0, 0], ["a", 1, 0]]


def test_a_shard_without_run_keys_is_read_by_its_id_columns(tmp_path):
    import pyarrow.parquet as pq

    shard_dir = store.prepare_shards(tmp_path)
    pq.write_table(_table("other", [3, 4]), shard_dir / "by-another-tool.parquet")
    assert set(store.finished_runs(tmp_path)) == {("other", 3, 0), ("other", 4, 0)}


def test_prepare_shards_removes_what_a_killed_write_left(tmp_path):
    shard_dir = store.prepare_shards(tmp_path)
    stale = shard_dir / ".a-k00000-r00000-00001.parquet.1234.part"
    stale.write_bytes(b"half a shard")
    store.prepare_shards(tmp_path)
    assert not stale.exists()


def test_duplicate_and_unreadable_shards_are_refused(tmp_path):
    shard_dir = store.prepare_shards(tmp_path)
    store.write_shard(shard_dir, "a", 0, [0, 1], _table("a", [0, 1]))
    copy = shard_dir / "copied-by-hand.parquet"
    copy.write_bytes((shard_dir / store.shard_name("a", 0, [0, 1])).read_bytes())
    with pytest.raises(BatchError, match="duplicate rows"):
        store.finished_runs(tmp_path)
    copy.write_bytes(b"not parquet")
    with pytest.raises(BatchError, match="cannot read this shard"):
        store.finished_runs(tmp_path)


# ---------------------------------------------------------------------------------------
# The failures log
# ---------------------------------------------------------------------------------------


def test_failure_records_and_their_compaction(tmp_path):
    assert store.read_failures(tmp_path) == [] and store.compact_failures(tmp_path, []) == 0
    exc = ValueError("boom")
    first = store.failure_record(("a", 1, 0), exc, "tb 1")
    assert first["run"] == {"scenario": "a", "seed": 1, "sample": 0}
    assert first["exception"] == "ValueError" and first["message"] == "boom"
    assert {"time", "host", "pid", "traceback"} <= set(first)
    again = store.failure_record(("a", 1, 0), exc, "tb 2")
    other = store.failure_record(("a", 2, 0), exc, "tb 3")
    store.append_failures(tmp_path, [first, other])
    store.append_failures(tmp_path, [again])
    with open(tmp_path / store.FAILURES, "a", encoding="utf-8") as fh:
        fh.write("\nnot json\n")
    assert len(store.read_failures(tmp_path)) == 3  # blank and unreadable lines skipped

    # run ("a", 2, 0) has since finished: dropped; ("a", 1, 0) keeps its latest record
    assert store.compact_failures(tmp_path, [("a", 2, 0)]) == 1
    assert store.read_failures(tmp_path) == [again]
    assert store.compact_failures(tmp_path, [("a", 1, 0)]) == 0
    assert not (tmp_path / store.FAILURES).exists()


# ---------------------------------------------------------------------------------------
# The manifest and the lock
# ---------------------------------------------------------------------------------------


def test_read_manifest_of_new_and_unusable_stores(tmp_path):
    assert store.read_manifest(tmp_path / "new") is None
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / store.LOCK).touch()
    assert store.read_manifest(empty) is None  # only a lock: a batch that never started
    cases = {
        "file": "exists and is not a directory",
        "junk": f"a non-empty directory without {store.MANIFEST} (not a batch store)",
        "bad": "cannot read the manifest",
        "run": "holds a 'run' store, not a batch",
    }
    (tmp_path / "file").write_text("x")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("x")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / store.MANIFEST).write_text("{")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / store.MANIFEST).write_text(json.dumps({"kind": "run"}))
    for name, message in cases.items():
        with pytest.raises(BatchError, match=re.escape(message)):
            store.read_manifest(tmp_path / name)
    ok = tmp_path / "ok"
    ok.mkdir()
    store.write_manifest(ok, {"kind": "batch", "seeds": 3})
    assert store.read_manifest(ok) == {"kind": "batch", "seeds": 3}


def test_resumed_manifest_records_the_resume():
    manifest = {"kind": "batch", "finished": "2026-01-01T00:00:00+00:00", "resumed": "bad"}
    out = store.resumed_manifest(manifest, "decouple batch x.yaml", 5)
    assert out["finished"] is None
    assert [(r["command"], r["finished_before"]) for r in out["resumed"]] == [
        ("decouple batch x.yaml", 5)
    ]


def test_describe_mismatch_names_each_difference():
    samples = {"method": "lhs", "n": 2, "seed": 1, "paths": ["p"], "distributions": {}}
    old = {
        "scenarios": {"a": {"hash": "1" * 64}, "b": {"hash": "2" * 64}},
        "seeds": 3,
        "root_entropy": 7,
        "samples": samples,
        "sample_values": [{"p": 1.0}, {"p": 2.0}],
    }
    same = {
        "scenarios": {"a": "1" * 64, "b": "2" * 64},
        "seeds": 3,
        "root_entropy": 7,
        "samples": samples,
        "sample_values": [{"p": 1.0}, {"p": 2.0}],
    }
    assert store.describe_mismatch(old, same) == []
    new = {
        **same,
        "scenarios": {"a": "3" * 64, "c": "4" * 64},
        "seeds": 4,
        "root_entropy": 8,
        "samples": {**samples, "seed": 2},
    }
    assert store.describe_mismatch(old, new) == [
        "scenario 'a' has changed (resolved hash 111111111111 in the store, 333333333333 now: "
        "the file, its parents or --set differ)",
        "scenario 'b' is in the store but not asked for",
        "scenario 'c' is asked for but not in the store",
        "seeds: 3 in the store, 4 asked for",
        "root entropy: 7 in the store, 8 asked for",
        "sample seed: 1 in the store, 2 asked for",
    ]
    values = {**same, "sample_values": [{"p": 1.0}, {"p": 2.5}]}
    assert store.describe_mismatch(old, values) == [
        "sampled values differ for the same design and seed (a different scipy version?)"
    ]


def test_the_lock_is_exclusive(tmp_path):
    with store.StoreLock(tmp_path):
        assert (tmp_path / store.LOCK).exists()
        with pytest.raises(BatchError, match="another decouple batch is writing"):
            with store.StoreLock(tmp_path):
                pass
    with store.StoreLock(tmp_path):  # released on exit
        pass


# ---------------------------------------------------------------------------------------
# Integrity: digests, half-made stores, manifest field types
# ---------------------------------------------------------------------------------------


def test_the_digest_covers_values_names_types_and_run_keys():
    table = _table("a", [0, 1])
    digest = store.table_digest(table, b"runs")
    rechunked = pa.Table.from_batches(table.to_batches(max_chunksize=1))
    assert store.table_digest(rechunked, b"runs") == digest  # the data, not their layout
    assert store.table_digest(table, b"other runs") != digest
    changed = table.set_column(4, "x", pa.array([0.0, 1.0, 10.0, 11.5]))
    assert store.table_digest(changed, b"runs") != digest
    assert store.table_digest(table.rename_columns([*table.column_names[:4], "y"]), b"runs") != (
        digest
    )
    as_int = table.set_column(4, "x", pa.array([0, 1, 10, 11]))
    assert store.table_digest(as_int, b"runs") != digest


def test_half_made_stores_are_recognised(tmp_path):
    out = tmp_path / "s"
    (out / store.SHARDS).mkdir(parents=True)
    (out / store.LOCK).touch()
    (out / f".{store.MANIFEST}.12.part").write_text("{")
    (out / store.SHARDS / ".a.parquet.12.part").write_bytes(b"x")
    (out / store.RESOLVED).mkdir()
    (out / store.RESOLVED / "a.yaml").write_text("name: a\n")
    assert store.half_made(out) and store.read_manifest(out) is None
    store.clear_half_made(out)
    left = {p.relative_to(out).as_posix() for p in out.rglob("*")}
    assert left == {
        store.LOCK,
        f"{store.SHARDS}/.a.parquet.12.part",  # prepare_shards removes those
        store.RESOLVED,
        store.SHARDS,
    }
    (out / store.SHARDS / "a.parquet").write_bytes(b"data")  # data: not half-made
    assert not store.half_made(out)
    with pytest.raises(BatchError, match="not a batch store"):
        store.read_manifest(out)


def test_manifest_field_problems_name_the_field():
    fields = store.BATCH_MANIFEST_FIELDS
    good = {"kind": "batch", "seeds": 3, "scenarios": {"a": {"hash": "h"}}, "resumed": [{}]}
    assert store.manifest_field_problem(good, fields) is None
    cases = {
        "seeds": (
            {"seeds": True},
            "field 'seeds' is true or false (true); expected a whole number",
        ),
        "nested": (
            {"scenarios": {"a": {"hash": 5}}},
            "field 'scenarios.a.hash' is a whole number (5); expected a string",
        ),
        "item": (
            {"resumed": ["x"]},
            "field 'resumed[0]' is a string (\"x\"); expected a JSON object",
        ),
        "null": ({"samples": {"n": None}}, "field 'samples.n' is null; expected a whole number"),
    }
    for name, (manifest, message) in cases.items():
        assert store.manifest_field_problem(manifest, fields) == message, name
