"""``decouple run``: one scenario, N seeds, one run directory.

Writes ``trajectories.parquet`` (one row per seed x quarter), ``manifest.json`` and
``resolved/<scenario>.yaml``, then prints the median and 5-95% range of self-sufficiency at
2021, 2025, 2030 and 2035. An existing directory is never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from model.run import DEFAULT_ROOT_ENTROPY, replicate_seed, simulate
from model.scenario import Scenario

from . import provenance, store

SUMMARY_YEARS = (2021, 2025, 2030, 2035)


def default_out_dir(name: str) -> Path:
    """``runs/<name>-<UTC timestamp>``."""
    stamp = provenance.now().replace(":", "").replace("-", "").replace("+0000", "Z")
    return Path("runs") / f"{name}-{stamp}"


def run_seeds(scenario: Scenario, seeds: int, root_entropy: int = DEFAULT_ROOT_ENTROPY):
    """Run replicates ``0..seeds-1``; returns a pandas DataFrame of all rows."""
    import pandas as pd

    frames = []
    for i in range(seeds):
        cols = simulate(scenario, replicate_seed(root_entropy, i))
        df = pd.DataFrame(cols)
        df.insert(0, "sample", 0)
        df.insert(0, "seed", i)
        df.insert(0, "scenario", scenario.name)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def write_run(
    out: Path,
    scenario: Scenario,
    source_file: str,
    df,
    seeds: int,
    root_entropy: int,
    command: str,
    started: str,
) -> None:
    """Write the run store atomically enough: data first, manifest last."""
    out.mkdir(parents=True, exist_ok=False)
    (out / store.RESOLVED).mkdir()
    resolved_file = out / store.resolved_file(scenario.name)
    resolved_file.write_text(scenario.to_yaml(), encoding="utf-8")
    tmp = out / f"{store.TRAJECTORIES}.tmp"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, out / store.TRAJECTORIES)
    manifest = {
        "kind": "run",
        "model_version": provenance.model_version(),
        "command": command,
        "created": started,
        "finished": provenance.now(),
        "git": provenance.git_state(),
        "packages": provenance.package_versions(),
        "root_entropy": root_entropy,
        "seeds": seeds,
        "samples": {"method": "none", "n": 1},
        "scenarios": {
            scenario.name: {
                "file": source_file,
                "file_sha256": hashlib.sha256(Path(source_file).read_bytes()).hexdigest(),
                "hash": scenario.hash,
                "resolved_file": str(resolved_file.relative_to(out)),
                "resolved": scenario.to_dict(),
            }
        },
        "parameters": {scenario.name: scenario.resolved_parameters()},
    }
    (out / store.MANIFEST).write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")


def summary_table(df, column: str = "self_sufficiency_pct") -> str:
    """Median and 5-95% range of the calendar-year mean of ``column`` at the summary years."""
    yearly = df.groupby(["scenario", "seed", "year"])[column].mean().reset_index()
    lines = [f"{column}: median [5%-95%] across {df['seed'].nunique()} seeds (calendar-year mean)"]
    for year in SUMMARY_YEARS:
        vals = yearly.loc[yearly["year"] == year, column].to_numpy()
        if vals.size == 0:
            continue
        q5, q50, q95 = np.percentile(vals, [5, 50, 95])
        lines.append(f"  {year}: {q50:6.1f}  [{q5:5.1f} - {q95:5.1f}]")
    return "\n".join(lines)


def main(scenario: Scenario, source_file: str, seeds: int, out: Path | None, command: str) -> int:
    """Run ``decouple run``: ``seeds`` replicates into a new run store ``out``; exit 0 or 2."""
    out = out or default_out_dir(scenario.name)
    if out.exists():
        print(
            f"decouple run: error: {out} already exists; choose another --out "
            "(results are never overwritten)",
            file=sys.stderr,
        )
        return 2
    started = provenance.now()
    df = run_seeds(scenario, seeds)
    write_run(out, scenario, source_file, df, seeds, DEFAULT_ROOT_ENTROPY, command, started)
    print(summary_table(df))
    print(f"wrote {out / store.TRAJECTORIES} ({len(df)} rows) and {out / store.MANIFEST}")
    return 0
