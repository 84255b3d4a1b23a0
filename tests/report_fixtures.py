"""Synthetic run stores with known answers, for the load / stats / report tests.

Every value is a closed-form function of scenario, seed, sample and quarter, so the tests
can state the expected quantiles, paired differences and threshold probabilities exactly.

Quarter index ``k`` runs from 0 (2020Q1) to 63 (2035Q4); ``s`` is the seed (0-4 by default),
``m`` the sample (0-1), so each scenario has 10 runs.

* ``self_sufficiency_pct = 10 + 5 s + 2 m + 0.5 k + SS_OFFSET[scenario](year)`` with
  offsets baseline 0, surge +10, bust -5 except +30 in 2027.
* ``domestic_equipment_share_pct = 20 + s + EQUIP_SLOPE[scenario] * k / 63``: a paired
  difference that grows over time.
* ``unmet_demand_usd_bn = 0.5 + 0.25 s + UNMET_OFFSET[scenario]`` per quarter (a flow).
* ``ally_defected_japan = 1`` for seeds 0 and 1 from 2028 in scenario bust, else 0.
* ``fab_equipment_purchases_usd_bn = 2 + 0.1 k`` per quarter in every run.

:func:`write_store` also writes the resolved scenarios (:data:`RESOLVED`): ``surge`` adds a
funding programme and a parameter to the baseline and expects two outputs higher in 2030
(both hold: +10 pp and +4 US$ bn a year); ``bust`` drops the baseline's control and expects
self-sufficiency higher in 2030 (it is 5 pp lower: not held) and the domestic equipment
share lower in 2035 (held).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

TIERS = ("leading", "advanced", "mature", "memory", "compound")
TIER_FACTOR = {"leading": 0.1, "advanced": 0.3, "mature": 1.0, "memory": 0.5, "compound": 0.8}
SEGMENTS = ("eda_ip", "design", "litho_equipment", "other_equipment", "materials", "packaging")
SEGMENT_FACTOR = {
    "eda_ip": 0.2,
    "design": 0.9,
    "litho_equipment": 0.1,
    "other_equipment": 0.4,
    "materials": 0.6,
    "packaging": 0.95,
}
COUNTRIES = ("united_states", "netherlands", "japan", "south_korea", "taiwan", "eu")
ALLIES = ("netherlands", "japan", "south_korea", "taiwan", "eu")

SCENARIOS = ("baseline", "surge", "bust")
EQUIP_SLOPE = {"baseline": 0.0, "surge": 6.3, "bust": -12.6}
UNMET_OFFSET = {"baseline": 0.0, "surge": 1.0, "bust": 2.0}
FUNDING_OFFSET = {"baseline": 0.0, "surge": 4.0, "bust": 1.0}

# Hand-derived: the calendar-year mean of run (s, m) in year Y is
# 10.75 + 5 s + 2 m + 2 (Y - 2020) + offset(Y); thresholds counted in Y or any earlier year.
EXPECTED_PROBABILITIES = {
    # (scenario, threshold, year): probability over the 10 runs
    ("baseline", 30.0, 2030): 1.0,
    ("baseline", 50.0, 2030): 0.2,
    ("baseline", 70.0, 2030): 0.0,
    ("baseline", 30.0, 2035): 1.0,
    ("baseline", 50.0, 2035): 0.6,
    ("baseline", 70.0, 2035): 0.0,
    ("surge", 30.0, 2030): 1.0,
    ("surge", 50.0, 2030): 0.6,
    ("surge", 70.0, 2030): 0.0,
    ("surge", 30.0, 2035): 1.0,
    ("surge", 50.0, 2035): 1.0,
    ("surge", 70.0, 2035): 0.2,
    # bust: +30 in 2027 only, so every run passes 50% in 2027 and falls back; reaching
    # 70% in 2027 needs 5 s + 2 m >= 15.25: (3, 1), (4, 0), (4, 1).
    ("bust", 30.0, 2030): 1.0,
    ("bust", 50.0, 2030): 1.0,
    ("bust", 70.0, 2030): 0.3,
    ("bust", 30.0, 2035): 1.0,
    ("bust", 50.0, 2035): 1.0,
    ("bust", 70.0, 2035): 0.3,
}


BASE_EVENTS = [
    {
        "at": "2020Q1",
        "id": "fund_a",
        "action": "funding_program",
        "program": "fund_a",
        "amount_rmb_bn": 100.0,
        "quarters": 20,
    },
    {
        "at": "2022Q1",
        "id": "ctl_a",
        "note": "tools for 16 nm and below",
        "action": "control",
        "item": "other_equipment",
        "target": "all",
        "threshold_nm": 16.0,
        "coverage_pct": 100.0,
        "licence_pct": 0.0,
        "foreign_direct_product": False,
        "enforced_by": [],
        "regime": "us",
    },
]
SURGE_EVENT = {
    "at": "2025Q1",
    "id": "surge_fund",
    "action": "funding_program",
    "program": "surge_fund",
    "amount_usd_bn": 100.0,
    "quarters": 40,
}
SURGE_EXPLANATION = (
    "Money binds in this synthetic world, so every extra yuan of the surge lifts the "
    "self-sufficiency of every run by the same ten points. "
    "A second sentence the key findings leave out."
)
RESOLVED = {
    "baseline": {
        "name": "baseline",
        "question": "Where does the synthetic world go if nothing changes?",
        "lineage": ["baseline"],
        "parameters": {},
        "events": BASE_EVENTS,
        "uncertain": {},
        "expects": [],
    },
    "surge": {
        "name": "surge",
        "question": "What if money pours in from 2025?",
        "explanation": SURGE_EXPLANATION,
        "lineage": ["baseline", "surge"],
        "parameters": {"china.procurement_preference": 0.8},
        "events": [*BASE_EVENTS, SURGE_EVENT],
        "uncertain": {},
        "expects": [
            {"output": "self_sufficiency_pct", "year": 2030, "direction": "higher"},
            {"output": "unmet_demand_usd_bn", "year": 2030, "direction": "higher"},
        ],
    },
    "bust": {
        "name": "bust",
        "question": "What if the boom of 2027 collapses?",
        "lineage": ["baseline", "bust"],
        "parameters": {},
        "events": BASE_EVENTS[:1],
        "uncertain": {},
        "expects": [
            {
                "output": "self_sufficiency_pct",
                "year": 2030,
                "direction": "higher",
                "note": "the story says so",
            },
            {"output": "domestic_equipment_share_pct", "year": 2035, "direction": "lower"},
        ],
    },
}


def ss_offset(scenario: str, year: np.ndarray) -> np.ndarray:
    """Scenario offset of self_sufficiency_pct in a calendar year (see module docstring)."""
    year = np.asarray(year)
    if scenario == "baseline":
        return np.zeros(year.shape)
    if scenario == "surge":
        return np.full(year.shape, 10.0)
    if scenario == "bust":
        return np.where(year == 2027, 30.0, -5.0)
    raise KeyError(scenario)


def quarters(first_year: int = 2020, last_year: int = 2035) -> list[str]:
    """Quarter labels from ``first_year``Q1 to ``last_year``Q4."""
    return [f"{y}Q{q}" for y in range(first_year, last_year + 1) for q in range(1, 5)]


def make_frame(
    scenarios=SCENARIOS, seeds: int = 5, samples: int = 2, first_year: int = 2020
) -> pd.DataFrame:
    """Build the full synthetic trajectories frame (all columns of docs/outputs.md)."""
    qs = quarters(first_year)
    parts = []
    for scen in scenarios:
        s, m, k = np.meshgrid(
            np.arange(seeds), np.arange(samples), np.arange(len(qs)), indexing="ij"
        )
        s, m, k = s.ravel(), m.ravel(), k.ravel()
        year = first_year + k // 4
        kk = k + 4 * (first_year - 2020)  # k counted from 2020Q1
        df = pd.DataFrame(
            {
                "scenario": scen,
                "seed": s.astype("int64"),
                "sample": m.astype("int64"),
                "quarter": np.asarray(qs)[k],
                "year": year.astype("int64"),
            }
        )
        ss = 10 + 5 * s + 2 * m + 0.5 * kk + ss_offset(scen, year)
        df["self_sufficiency_pct"] = ss
        df["self_sufficiency_china_hq_pct"] = 0.4 * ss
        for tier in TIERS:
            df[f"self_sufficiency_tier_{tier}_pct"] = TIER_FACTOR[tier] * ss
        for seg in SEGMENTS:
            df[f"self_sufficiency_segment_{seg}_pct"] = SEGMENT_FACTOR[seg] * ss
        df["goal_gap_pp"] = 70 - ss
        best = 28 * 0.7 ** (kk // 16)
        frontier = 5 * 0.7 ** (kk // 12)
        df["china_best_node_nm"] = best
        df["frontier_node_nm"] = frontier
        df["node_gap_generations"] = np.log(best / frontier) / np.log(1 / 0.7)
        df["domestic_equipment_share_pct"] = 20 + s + EQUIP_SLOPE[scen] * kk / 63
        df["china_demand_usd_bn"] = 40 + 0.5 * kk
        df["fab_equipment_purchases_usd_bn"] = 2 + 0.1 * kk
        df["unmet_demand_usd_bn"] = 0.5 + 0.25 * s + UNMET_OFFSET[scen]
        for i, c in enumerate(COUNTRIES):
            df[f"foreign_revenue_from_china_usd_bn_{c}"] = 10 - i - 0.05 * kk + 0.1 * s
        defected = (scen == "bust") & (s < 2) & (year >= 2028)
        for ally in ALLIES:
            d = defected if ally == "japan" else np.zeros_like(defected)
            df[f"ally_defected_{ally}"] = d.astype("int64")
            df[f"ally_alignment_{ally}"] = np.where(d, 0.3, 0.9 - 0.002 * kk)
        df["state_funding_usd_bn"] = 5 + 0.1 * kk + FUNDING_OFFSET[scen]
        df["state_funding_wasted_usd_bn"] = 0.2 * df["state_funding_usd_bn"]
        df["private_investment_usd_bn"] = 3.0
        df["firms_active"] = 100 + s
        df["firms_entered"] = 5
        df["firms_failed"] = 2
        df["flagship_domestic_share_pct"] = 30 + 0.3 * ss
        df["talent_shortfall_pct"] = 10.0
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def manifest(scenarios=SCENARIOS, seeds: int = 5, samples: int = 2, kind: str = "batch") -> dict:
    """A manifest in the shape of docs/outputs.md."""
    return {
        "kind": kind,
        "model_version": "0.1.0-test",
        "command": "decouple batch scenarios/*.yaml --seeds 5",
        "created": "2025-01-01T00:00:00Z",
        "finished": "2025-01-01T00:01:00Z",
        "git": {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": False},
        "packages": {"mesa": "3.5.1"},
        "root_entropy": 12345,
        "seeds": seeds,
        "samples": {
            "method": "lhs" if samples > 1 else "none",
            "n": samples,
            "seed": 7,
            "paths": ["china.talent_elasticity", "technology.rd_elasticity"] if samples > 1 else [],
        },
        "scenarios": {
            name: {
                "file": f"scenarios/{name}.yaml",
                "hash": "sha256:" + f"{i + 1:x}" * 64,
                "resolved_file": f"resolved/{name}.yaml",
            }
            for i, name in enumerate(scenarios)
        },
    }


def write_store(
    root: Path,
    layout: str = "batch",
    scenarios=SCENARIOS,
    seeds: int = 5,
    samples: int = 2,
    n_shards: int = 3,
    drop: tuple[str, ...] = (),
    failures: int = 0,
    rename: dict[str, str] | None = None,
    resolved: bool = True,
) -> Path:
    """Write a synthetic run store under ``root`` and return its directory.

    Args:
        root: directory to create the store in (created if absent).
        layout: ``"batch"`` (``shards/*.parquet``, runs dealt round-robin to ``n_shards``
            shards, shards written in shuffled row order) or ``"run"``
            (``trajectories.parquet``).
        scenarios: the scenario names of the design.
        seeds: replicates per scenario and sample.
        samples: parameter samples per scenario.
        n_shards: number of shards for the batch layout.
        drop: column prefixes to leave out (a store from an older model version).
        failures: number of failed runs to record in ``failures.jsonl``.
        rename: new names for scenarios (e.g. long names, to test legends).
        resolved: write ``resolved/<scenario>.yaml`` (:data:`RESOLVED`).
    """
    import yaml

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    frame = make_frame(scenarios, seeds, samples)
    frame = frame[[c for c in frame.columns if not c.startswith(drop)]] if drop else frame
    rename = rename or {}
    if resolved:
        (root / "resolved").mkdir(exist_ok=True)
        for name in scenarios:
            sc = dict(RESOLVED[name])
            new = rename.get(name, name)
            sc["name"] = new
            sc["lineage"] = [rename.get(x, x) for x in sc["lineage"]]
            (root / "resolved" / f"{new}.yaml").write_text(yaml.safe_dump(sc, sort_keys=False))
    if rename:
        frame["scenario"] = frame["scenario"].map(lambda x: rename.get(x, x))
        scenarios = tuple(rename.get(x, x) for x in scenarios)
    if failures:
        lines = [
            json.dumps({"run": [scenarios[0], i, 0], "exception": "RuntimeError"})
            for i in range(failures)
        ]
        (root / "failures.jsonl").write_text("\n".join(lines) + "\n")
    (root / "manifest.json").write_text(
        json.dumps(manifest(scenarios, seeds, samples, "batch" if layout == "batch" else "run"))
    )
    if layout == "run":
        frame.to_parquet(root / "trajectories.parquet", index=False)
        return root
    (root / "shards").mkdir(exist_ok=True)
    run_id = frame.groupby(["scenario", "seed", "sample"], sort=False).ngroup()
    for i in range(n_shards):
        shard = frame[run_id % n_shards == i]
        shard = shard.iloc[::-1]  # reverse order: load() must sort
        shard.to_parquet(root / "shards" / f"shard-{i:03d}.parquet", index=False)
    return root
