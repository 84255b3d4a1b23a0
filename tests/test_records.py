"""The recorded columns are exactly the documented output contract."""

from __future__ import annotations

import re
from pathlib import Path

from model.records import OUTPUT_COLUMNS
from model.taxonomy import ALLIES, COUNTRIES, TIERS, UPSTREAM

DOC = Path(__file__).resolve().parent.parent / "docs" / "outputs.md"


def _documented_columns() -> set[str]:
    names = set(re.findall(r"^\| `([a-z0-9_<>]+)` \|", DOC.read_text(), flags=re.MULTILINE))
    expanded = set()
    for name in names:
        if "<tier>" in name:
            expanded |= {name.replace("<tier>", t) for t in TIERS}
        elif "<segment>" in name:
            expanded |= {name.replace("<segment>", s) for s in UPSTREAM}
        elif "<country>" in name:
            expanded |= {name.replace("<country>", c) for c in COUNTRIES}
        elif "<ally>" in name:
            expanded |= {name.replace("<ally>", a) for a in ALLIES}
        else:
            expanded.add(name)
    return expanded


def test_every_recorded_column_is_documented_and_vice_versa():
    documented = _documented_columns() - {"scenario", "seed", "sample", "quarter", "year"}
    assert set(OUTPUT_COLUMNS) == documented


def test_records_have_one_row_per_quarter(baseline):
    from model.run import simulate

    short = baseline.model_copy(
        update={"end": "2015Q4", "events": [e for e in baseline.events if e.at <= "2015Q4"]}
    )
    cols = simulate(short, 0)
    assert list(cols["quarter"]) == [f"{y}Q{q}" for y in (2014, 2015) for q in (1, 2, 3, 4)]
    assert list(cols["year"]) == [2014] * 4 + [2015] * 4
    for name in OUTPUT_COLUMNS:
        assert len(cols[name]) == 8, name
    assert (cols["goal_gap_pp"] == 70.0 - cols["self_sufficiency_pct"]).all()
