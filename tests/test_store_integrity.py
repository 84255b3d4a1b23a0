"""A damaged run store is reported, naming the file and what to do; a resume repairs shards.

The corpus is made here from one small real batch store (1 scenario x 4 seeds, 2 runs per
shard): a truncated, zero-length, garbled, byte-flipped and unreadable shard, duplicate
rows, and a manifest that is not UTF-8, not JSON or has a field of the wrong type. Each is
read by ``analysis.load``, by ``decouple report`` and by a resume of the batch.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import load, load_manifest
from decouple.cli import main as cli_main
from experiment import store

SCEN = """\
name: short_a
question: test scenario A (short horizon)
start: 2014Q1
end: 2017Q4
"""


@pytest.fixture(scope="module")
def scen(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scenarios") / "a.yaml"
    path.write_text(SCEN)
    return path


def _args(scen: Path, out: Path) -> list[str]:
    return [
        "batch", str(scen), "--seeds", "4", "--root-entropy", "77", "--jobs", "1",
        "--runs-per-shard", "2", "--out", str(out), "--quiet",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def pristine(scen, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pristine") / "store"
    assert cli_main(_args(scen, out)) == 0
    return out


@pytest.fixture(scope="module")
def reference(pristine) -> pd.DataFrame:
    return load(pristine)


@pytest.fixture
def copy(pristine, tmp_path) -> Path:
    """A fresh copy of the store, to damage."""
    out = tmp_path / "store"
    shutil.copytree(pristine, out)
    return out


def _first_shard(out: Path) -> Path:
    return sorted((out / store.SHARDS).glob("*.parquet"))[0]


def _todo(out: Path) -> str:
    command = json.loads((out / store.MANIFEST).read_text())["command"]
    return (
        "delete this shard and rerun the batch's command on this store "
        f"({command}) to compute its runs again (see manifest.json 'command')"
    )


def _report(out: Path, capsys) -> tuple[int, str]:
    code = cli_main(["report", str(out)])
    return code, capsys.readouterr().err


def _flip_in_data(data: bytes) -> bytes:
    """``data`` with one byte flipped where the file still parses but reads other values.

    The search starts a third into the file: a flip in padding or statistics changes
    nothing the reader sees, so the first flip that changes the data is used.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    original = pq.read_table(pa.BufferReader(data))
    for pos in range(len(data) // 3, len(data)):
        flipped = data[:pos] + bytes([data[pos] ^ 0x10]) + data[pos + 1 :]
        try:
            table = pq.read_table(pa.BufferReader(flipped))
        except Exception:  # noqa: BLE001 - unreadable: not the case this helper makes
            continue
        if not table.equals(original):
            return flipped
    raise AssertionError("no single-byte flip changes the data while the file still parses")


def _damage(kind: str, shard: Path) -> str:
    """Damage ``shard``; the start of the reason the message gives."""
    data = shard.read_bytes()
    if kind == "zero-length":
        shard.write_bytes(b"")
        return "the file is empty (0 bytes)"
    if kind == "truncated":
        shard.write_bytes(data[: len(data) // 2])
        return "not a readable Parquet file (ArrowInvalid: "
    if kind == "garbled":
        shard.write_bytes(bytes((b * 7 + 13) % 256 for b in data))
        return "not a readable Parquet file (ArrowInvalid: "
    if kind == "byte-flipped":  # in the data pages: the file still parses, the data change
        shard.write_bytes(_flip_in_data(data))
        return "its data do not match the sha256 checksum written with them"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["zero-length", "truncated", "garbled", "byte-flipped"])
def test_a_damaged_shard_is_named_then_recomputed_by_the_resume(
    kind, copy, scen, reference, capsys
):
    shard = _first_shard(copy)
    reason = _damage(kind, shard)
    expected_start = f"{shard}: damaged data file: {reason}"
    with pytest.raises(ValueError) as err:
        load(copy)
    message = str(err.value)
    assert message.startswith(expected_start) and message.endswith(_todo(copy))

    code, err_text = _report(copy, capsys)
    assert code == 2
    assert err_text.startswith(f"decouple report: error: {expected_start}")
    assert err_text.rstrip().endswith(_todo(copy)) and "Traceback" not in err_text

    code = cli_main(_args(scen, copy))
    out = capsys.readouterr().err
    assert code == 0, out
    assert f"decouple batch: warning: {shard} is damaged ({reason}" in out
    assert f"moved to {shard.name}.damaged and its runs will be computed again" in out
    assert (shard.parent / f"{shard.name}.damaged").is_file()
    pd.testing.assert_frame_equal(load(copy), reference)


def test_no_single_byte_flip_changes_the_data_silently(copy, reference):
    """Twelve flips across the shard: each is reported, or leaves the data read unchanged."""
    shard = _first_shard(copy)
    data = shard.read_bytes()
    detected = 0
    for i in range(12):
        pos = 4 + (len(data) - 12) * i // 11  # from the first page to the footer's end
        shard.write_bytes(data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1 :])
        try:
            got = load(copy)
        except ValueError as exc:
            assert str(exc).startswith(f"{shard}: damaged data file: "), exc
            detected += 1
            raised = True
        else:  # the byte was one the reader does not use (e.g. a statistics field)
            pd.testing.assert_frame_equal(got, reference)
            raised = False
        _, damaged = store.scan_shards(copy)  # the resume's check agrees with the reader's
        assert [d.path for d in damaged] == ([shard] if raised else [])
    shard.write_bytes(data)
    # Most of the twelve land in data pages (8 on today's columns; the rest in bytes no reader
    # uses). Each flip was checked above; this guards against a checksum that never fires.
    assert detected >= 6


@contextlib.contextmanager
def _unprivileged():
    """Inside: this process acts as the user ``nobody`` (root bypasses file permissions).

    Only the effective ids change (restored after), so the modules already imported stay.
    """
    if os.geteuid() != 0:
        yield
        return
    try:
        import pwd

        nobody = pwd.getpwnam("nobody")
    except (ImportError, KeyError):
        pytest.skip("running as root without a 'nobody' user to act as")
    os.setegid(nobody.pw_gid)
    os.seteuid(nobody.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_an_unreadable_shard_is_named(pristine, scen, capsys):
    base = Path(tempfile.mkdtemp(prefix="decouple-unreadable-"))  # outside pytest's 0700 dir
    try:
        out = base / "store"
        shutil.copytree(pristine, out)
        for path in [base, *out.rglob("*")]:
            path.chmod(0o777 if path.is_dir() else 0o666)
        readable_scen = base / "a.yaml"
        shutil.copyfile(scen, readable_scen)
        shard = _first_shard(out)
        shard.chmod(0)
        expected = (
            f"{shard}: cannot read this data file (PermissionError: Permission denied); check "
            "its permissions (it must be readable by you)"
        )
        with _unprivileged():
            with pytest.raises(ValueError) as err:
                load(out)
            code, report_err = _report(out, capsys)
            batch_code = cli_main(_args(readable_scen, out))
        batch_err = capsys.readouterr().err
        assert str(err.value) == expected
        assert code == 2 and report_err == f"decouple report: error: {expected}\n"
        assert batch_code == 2, batch_err
        assert batch_err.endswith(  # (after a note: git cannot tell this user the commit)
            f"decouple batch: error: {shard}: cannot read this shard (Permission denied); fix "
            "its permissions (or move it away to recompute its runs) and rerun the same command\n"
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_duplicate_rows_are_refused_naming_the_key_and_the_files(copy, scen, capsys):
    shard = _first_shard(copy)
    twin = shard.with_name("copied-by-hand.parquet")
    shutil.copyfile(shard, twin)
    with pytest.raises(ValueError) as err:
        load(copy)
    assert str(err.value) == (
        f"run store {str(copy)!r} holds more than one row for (scenario 'short_a', seed 0, "
        f"sample 0, quarter '2014Q1'): in {twin} and {shard}; a run is stored once, so one of "
        "these copies must go (a shard copied in by hand? delete the copy; for a batch store, "
        "rerun its command if runs are then missing)"
    )
    code = cli_main(_args(scen, copy))
    assert code == 2
    assert "the store holds duplicate rows (was a shard copied in by hand?)" in (
        capsys.readouterr().err
    )

    twin.unlink()  # one file holding a quarter twice (written by another tool: no checksum)
    table = pq.read_table(shard)
    pq.write_table(
        pa.concat_tables([table, table.slice(0, 1)]).replace_schema_metadata(None), shard
    )
    with pytest.raises(ValueError) as err:
        load(copy)
    assert f"(scenario 'short_a', seed 0, sample 0, quarter '2014Q1'): in {shard} (twice);" in str(
        err.value
    )


MANIFEST_CASES = {
    "not UTF-8": (
        b'\xff{"kind": "batch"}',
        "not UTF-8 text (byte 0 is 0xff)",
        "is not UTF-8 text (byte 0 is 0xff)",
    ),
    "not JSON": (b'{"kind": "batch",', "cannot read the manifest (not JSON: ", "is not valid JSON"),
}
FIELD_CASES = {
    "seeds": ("4", "field 'seeds' is a string (\"4\"); expected a whole number"),
    "samples": ("lhs", "field 'samples' is a string (\"lhs\"); expected a JSON object"),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_CASES))
def test_a_garbled_manifest_is_named(case, copy, scen, capsys):
    raw, batch_says, load_says = MANIFEST_CASES[case]
    mpath = copy / store.MANIFEST
    mpath.write_bytes(raw)
    damaged = "the manifest is damaged (edited by hand?): restore it from a copy"
    code = cli_main(_args(scen, copy))
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith(f"decouple batch: error: {mpath}: {batch_says}")
    assert err.endswith(f"{damaged}, or choose another --out\n")
    with pytest.raises(ValueError) as exc:
        load_manifest(copy)
    assert str(exc.value).startswith(f"{str(mpath)!r} {load_says}")
    assert str(exc.value).endswith(damaged)
    code, err = _report(copy, capsys)
    assert code == 2 and err.startswith(f"decouple report: error: {str(mpath)!r} {load_says}")


@pytest.mark.parametrize("field", sorted(FIELD_CASES))
def test_a_wrong_typed_manifest_field_is_named(field, copy, scen, capsys):
    value, problem = FIELD_CASES[field]
    mpath = copy / store.MANIFEST
    manifest = json.loads(mpath.read_text())
    manifest[field] = value
    mpath.write_text(json.dumps(manifest))
    damaged = "the manifest is damaged (edited by hand?): restore it from a copy"
    code = cli_main(_args(scen, copy))
    err = capsys.readouterr().err
    assert code == 2
    assert err == f"decouple batch: error: {mpath}: {problem}: {damaged}, or choose another --out\n"
    with pytest.raises(ValueError) as exc:
        load_manifest(copy)
    assert str(exc.value) == f"{str(mpath)!r}: {problem} or null: {damaged}"
    code, err = _report(copy, capsys)
    assert (
        code == 2
        and err == f"decouple report: error: {str(mpath)!r}: {problem} or null: {damaged}\n"
    )


def test_shards_carry_a_checksum_of_their_data(pristine):
    meta = pq.read_schema(_first_shard(pristine)).metadata
    table = pq.read_table(_first_shard(pristine))
    assert meta[store.DIGEST_META_KEY].decode() == store.table_digest(
        table, meta[store.RUNS_META_KEY]
    )
    assert store.scan_shards(pristine)[1] == []
