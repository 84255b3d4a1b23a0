"""Tests of analysis.load: both run-store layouts, selection, sorting and error messages."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from report_fixtures import make_frame, write_store

from analysis import load, load_manifest
from analysis.load import IDENTIFIERS, available_columns, available_scenarios


@pytest.fixture(scope="module")
def batch_store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("batch") / "b1", layout="batch", seeds=3)


@pytest.fixture(scope="module")
def run_store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("run") / "r1", layout="run", seeds=3)


def test_both_layouts_give_the_same_sorted_frame(batch_store, run_store):
    batch = load(batch_store)
    single = load(run_store)
    expected = make_frame(seeds=3).sort_values(
        ["scenario", "sample", "seed", "quarter"], ignore_index=True
    )
    pd.testing.assert_frame_equal(batch, single)
    pd.testing.assert_frame_equal(batch, expected[batch.columns])
    assert list(batch.columns[:5]) == list(IDENTIFIERS)
    assert isinstance(batch.index, pd.RangeIndex)
    # 3 scenarios x 3 seeds x 2 samples x 64 quarters, shards written in reverse order
    assert len(batch) == 3 * 3 * 2 * 64
    assert batch.iloc[0][["scenario", "sample", "seed", "quarter"]].tolist() == [
        "baseline",
        0,
        0,
        "2020Q1",
    ]
    assert batch.iloc[1]["quarter"] == "2020Q2"
    assert batch.iloc[64][["seed", "quarter"]].tolist() == [1, "2020Q1"]


def test_columns_and_scenarios_select(batch_store):
    df = load(batch_store, scenarios=["surge"], columns=["self_sufficiency_pct", "seed"])
    assert list(df.columns) == [*IDENTIFIERS, "self_sufficiency_pct"]
    assert set(df["scenario"]) == {"surge"}
    assert len(df) == 3 * 2 * 64
    one = load(batch_store, scenarios="bust", columns="goal_gap_pp")
    assert list(one.columns) == [*IDENTIFIERS, "goal_gap_pp"]
    assert (one["goal_gap_pp"] == 70 - load(batch_store, "bust")["self_sufficiency_pct"]).all()


def test_available_columns_and_scenarios(batch_store):
    cols = available_columns(batch_store)
    assert cols[:5] == list(IDENTIFIERS)
    assert "ally_defected_japan" in cols
    assert available_scenarios(batch_store) == ["baseline", "bust", "surge"]


def test_unknown_column_lists_valid_ones(batch_store):
    with pytest.raises(ValueError) as err:
        load(batch_store, columns=["self_sufficiency_pct", "no_such_column"])
    msg = str(err.value)
    assert "no_such_column" in msg and str(batch_store) in msg
    assert "self_sufficiency_tier_memory_pct" in msg  # lists the valid columns


def test_unknown_scenario_lists_present_ones(batch_store):
    with pytest.raises(ValueError) as err:
        load(batch_store, scenarios=["baseline", "nope"])
    msg = str(err.value)
    assert "nope" in msg and "baseline, bust, surge" in msg and str(batch_store) in msg


def test_missing_directory_manifest_and_data(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load(tmp_path / "absent")
    with pytest.raises(ValueError, match="no manifest.json") as err:
        load(tmp_path)
    assert str(tmp_path) in str(err.value)
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "shards").mkdir()
    with pytest.raises(ValueError, match="holds no data") as err:
        load(tmp_path)
    assert str(tmp_path) in str(err.value)
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_manifest(tmp_path)


def test_manifest_missing_keys_read_as_unknown(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "run", "seeds": 4}))
    m = load_manifest(tmp_path)
    assert m["kind"] == "run" and m["seeds"] == 4
    for key in ("model_version", "git", "scenarios", "samples", "root_entropy", "created"):
        assert m[key] == "unknown"


def test_importing_the_report_module_is_cheap():
    """The CLI imports analysis.report to register the sub-command: no pandas/matplotlib."""
    code = (
        "import sys, analysis, analysis.report; "
        "heavy = [m for m in ('pandas', 'pyarrow', 'matplotlib') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
