"""The recorded columns are exactly the declared output contract, documented in docs/outputs.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model import records
from model.outputs import OUTPUT_BY_NAME, OUTPUT_COLUMNS, markdown

DOC = Path(__file__).resolve().parent.parent / "docs" / "outputs.md"


def test_docs_tables_are_generated_from_the_declarations():
    text = DOC.read_text(encoding="utf-8")
    assert markdown() in text, "docs/outputs.md is stale: python -m model.outputs > the tables"


def test_every_declared_output_has_one_measure():
    assert set(records.MEASURES) == set(OUTPUT_COLUMNS)


def test_records_have_one_row_per_quarter_with_the_declared_dtypes(baseline):
    from model.run import simulate

    short = baseline.model_copy(
        update={"end": "2015Q4", "events": [e for e in baseline.events if e.at <= "2015Q4"]}
    )
    cols = simulate(short, 0)
    assert list(cols["quarter"]) == [f"{y}Q{q}" for y in (2014, 2015) for q in (1, 2, 3, 4)]
    assert list(cols["year"]) == [2014] * 4 + [2015] * 4
    for name in OUTPUT_COLUMNS:
        assert len(cols[name]) == 8, name
        assert cols[name].dtype == np.dtype(OUTPUT_BY_NAME[name].dtype), name
    goal = short.resolved_parameters()["china.self_sufficiency_goal_pct"]
    assert goal == 70
    assert (cols["goal_gap_pp"] == goal - cols["self_sufficiency_pct"]).all()


def test_goal_gap_follows_the_goal_parameter(baseline):
    from model.run import simulate

    short = baseline.model_copy(
        update={
            "end": "2014Q4",
            "events": [e for e in baseline.events if e.at <= "2014Q4"],
            "parameters": {**baseline.parameters, "china.self_sufficiency_goal_pct": 50.0},
        }
    )
    cols = simulate(short, 0)
    assert np.allclose(cols["goal_gap_pp"], 50.0 - cols["self_sufficiency_pct"])


def test_pct_of_nothing_is_zero():
    assert records.pct(3.0, 0.0) == 0.0
    assert records.pct(1.0, 4.0) == 25.0
