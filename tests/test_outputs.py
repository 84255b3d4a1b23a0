"""The output declarations: names, units in names, families, flows."""

from __future__ import annotations

from model.outputs import FLOW_COLUMNS, INTEGER_COLUMNS, OUTPUT_BY_NAME, OUTPUT_COLUMNS, OUTPUTS
from model.taxonomy import ALLIES, COUNTRIES, TIERS, UPSTREAM


def test_names_are_unique_and_families_expand_to_every_token():
    assert len(OUTPUT_COLUMNS) == len(set(OUTPUT_COLUMNS))
    families = {}
    for o in OUTPUTS:
        if o.family:
            families.setdefault(o.family, []).append(o.name)
    assert len(families["self_sufficiency_tier_<tier>_pct"]) == len(TIERS)
    assert len(families["self_sufficiency_segment_<segment>_pct"]) == len(UPSTREAM)
    assert len(families["foreign_revenue_from_china_usd_bn_<country>"]) == len(COUNTRIES)
    assert len(families["ally_alignment_<ally>"]) == len(ALLIES)


def test_flows_are_the_money_and_entry_exit_columns():
    money = {c for c in OUTPUT_COLUMNS if "_usd_bn" in c}
    stocks = {"china_firm_cash_usd_bn"}  # money held at quarter end, not a flow
    assert FLOW_COLUMNS == (money - stocks) | {"firms_entered", "firms_failed"}
    assert OUTPUT_BY_NAME["china_demand_usd_bn"].unit_per_quarter == "US$ bn per quarter"
    assert OUTPUT_BY_NAME["self_sufficiency_pct"].unit_per_quarter == "% of demand"


def test_integer_columns_are_counts_and_flags():
    assert INTEGER_COLUMNS == {"firms_active", "firms_entered", "firms_failed"} | {
        f"ally_defected_{a}" for a in ALLIES
    }


def test_every_output_has_a_label_unit_and_definition():
    for o in OUTPUTS:
        assert o.label and o.unit and len(o.definition) > 20, o.name
        assert o.section, o.name
