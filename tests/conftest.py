"""Shared fixtures: the baseline scenario and its 20-seed runs (computed once per session)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from model.run import simulate
from model.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "scenarios" / "baseline.yaml"
CALIBRATION_SEEDS = 20


def run_frame(scenario, seeds, sample=None) -> pd.DataFrame:
    """All quarters of ``seeds`` replicates of ``scenario`` as one DataFrame."""
    frames = []
    for i in range(seeds):
        df = pd.DataFrame(simulate(scenario, i, sample=sample))
        df["seed"] = i
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def cut_at(scenario, end: str):
    """``scenario`` ending at quarter ``end``, without the events after it (faster tests)."""
    return scenario.model_copy(
        update={"end": end, "events": [e for e in scenario.events if e.at <= end]}
    )


def per_seed(frame: pd.DataFrame, column: str, year: int, how: str = "mean"):
    """Per seed (in seed order): ``column`` over calendar ``year``, mean (stocks) or sum (flows)."""
    rows = frame[frame["year"] == year]
    return rows.groupby("seed")[column].agg(how).to_numpy()


def yearly_median(df: pd.DataFrame, column: str, year: int) -> float:
    """Median across seeds of the calendar-year mean of ``column``."""
    per_seed = df[df["year"] == year].groupby("seed")[column].mean()
    return float(per_seed.median())


@pytest.fixture(scope="session")
def baseline():
    return load_scenario(BASELINE)


@pytest.fixture(scope="session")
def baseline_runs(baseline) -> pd.DataFrame:
    return run_frame(baseline, CALIBRATION_SEEDS)
