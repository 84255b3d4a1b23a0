"""``decouple run``: the run store it writes and the errors it gives."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import yaml

from decouple.cli import main
from model.records import OUTPUT_COLUMNS


def _short_scenario(tmp_path):
    child = tmp_path / "short.yaml"
    child.write_text(
        yaml.safe_dump(
            {
                "name": "short",
                "question": "Does a short run work?",
                "end": "2016Q4",
                "events": [
                    {
                        "at": "2014Q4",
                        "action": "funding_program",
                        "program": "big_fund_1",
                        "amount_rmb_bn": 139,
                        "quarters": 20,
                    }
                ],
            }
        )
    )
    return child


def test_run_writes_trajectories_manifest_and_summary(tmp_path, capsys):
    out = tmp_path / "store"
    assert (
        main(
            [
                "run",
                str(_short_scenario(tmp_path)),
                "--seeds",
                "2",
                "--out",
                str(out),
                "--set",
                "china.procurement_preference=0.7",
            ]
        )
        == 0
    )
    df = pd.read_parquet(out / "trajectories.parquet")
    assert len(df) == 2 * 12
    assert list(df.columns[:5]) == ["scenario", "seed", "sample", "quarter", "year"]
    assert set(OUTPUT_COLUMNS) <= set(df.columns)
    assert df["quarter"].iloc[0] == "2014Q1" and df["quarter"].iloc[-1] == "2016Q4"
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["scenarios"]["short"]
    assert len(entry["hash"]) == 64
    assert (
        entry["file_sha256"] == hashlib.sha256(_short_scenario(tmp_path).read_bytes()).hexdigest()
    )
    assert entry["resolved"]["parameters"] == {"china.procurement_preference": 0.7}
    assert manifest["parameters"]["short"]["china.procurement_preference"] == 0.7
    assert manifest["seeds"] == 2 and manifest["packages"]["mesa"].startswith("3.5")
    assert (out / "resolved" / "short.yaml").is_file()
    printed = capsys.readouterr().out
    assert "self_sufficiency_pct: median [5%-95%] across 2 seeds" in printed


def test_run_refuses_an_existing_directory(tmp_path, capsys):
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("results")
    assert main(["run", str(_short_scenario(tmp_path)), "--seeds", "1", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "results"


def test_run_reports_a_bad_override(tmp_path, capsys):
    assert (
        main(
            [
                "run",
                str(_short_scenario(tmp_path)),
                "--set",
                "china.procurement_preferenc=1",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert (
        "unknown parameter 'china.procurement_preferenc' "
        "(did you mean 'china.procurement_preference'?)" in err
    )
    assert not (tmp_path / "x").exists()
