"""Scenario event actions: one class each, applied through the agents' public methods."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from model import events
from model.firms import FIRM_LINE_INDEX
from model.model import DecouplingModel
from model.scenario import EVENT_ACTIONS, SetParameterEvent

MODEL = Path(__file__).resolve().parent.parent / "model"


def test_every_schema_action_has_an_event_class():
    assert set(EVENT_ACTIONS) == set(events.EventAction.registry)


def test_every_event_class_implements_apply():
    for action, cls in events.EventAction.registry.items():
        assert cls.apply is not events.EventAction.apply, action


def test_set_parameter_event_changes_the_value_and_refreshes_the_regime(baseline):
    model = DecouplingModel(baseline, rng=0)
    before = model.regime._version
    ev = SetParameterEvent(
        at="2014Q1", action="set_parameter", path="controls.leakage_pct", value=40.0
    )
    events.apply_event(model, ev)
    assert model.p["controls.leakage_pct"] == 40.0
    assert model.regime._version > before
    assert model.event_log[-1].startswith("2014Q1: set_parameter")


def test_set_parameter_event_changes_one_key_of_a_mapping(baseline):
    model = DecouplingModel(baseline, rng=0)
    ev = SetParameterEvent(
        at="2014Q1", action="set_parameter", path="sourcing.domestic_bias.mature", value=2.5
    )
    events.apply_event(model, ev)
    assert model.p["sourcing.domestic_bias"]["mature"] == 2.5
    assert (
        model.p["sourcing.domestic_bias"]["leading"]
        == baseline.resolved_parameters()["sourcing.domestic_bias"]["leading"]
    )


def _private_writes(source: str) -> list[tuple[int, str]]:
    """Assignments to ``x._name`` where ``x`` is not ``self`` (another object's private state)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for t in targets:
            if (
                isinstance(t, ast.Attribute)
                and t.attr.startswith("_")
                and not (isinstance(t.value, ast.Name) and t.value.id in ("self", "cls"))
            ):
                out.append((node.lineno, ast.unparse(t)))
    return out


@pytest.mark.parametrize("module", sorted(p.name for p in MODEL.glob("*.py")))
def test_no_module_writes_another_objects_private_attributes(module):
    assert _private_writes((MODEL / module).read_text(encoding="utf-8")) == []


def test_the_private_write_check_sees_one():
    assert _private_writes("def f(model):\n    model.regime._version += 1\n") == [
        (2, "model.regime._version")
    ]


def test_set_parameter_event_refreshes_the_per_line_tables(baseline):
    """A per-line table kept by the model follows a set_parameter event on one of its keys."""
    model = DecouplingModel(baseline, rng=0)
    path = "firm_finance.build_quarters"
    before = model.line_table(path)
    assert not before.flags.writeable
    assert model.line_table(path) is before  # kept, not rebuilt
    ev = SetParameterEvent(at="2014Q1", action="set_parameter", path=f"{path}.foundry", value=33)
    events.apply_event(model, ev)
    after = model.line_table(path)
    assert after[FIRM_LINE_INDEX["foundry"]] == 33.0
    assert after[FIRM_LINE_INDEX["memory"]] == before[FIRM_LINE_INDEX["memory"]]
    ratio = model.line_table("firm_finance.fab_co_investment_ratio", missing=0.0)
    assert ratio[FIRM_LINE_INDEX["design"]] == 0.0  # a line the mapping leaves out
    other = model.line_table("firm_finance.fab_co_investment_ratio", missing=-1.0)
    assert other[FIRM_LINE_INDEX["design"]] == -1.0  # another default, another table
    with pytest.raises(KeyError, match="eda_ip"):  # the first line it leaves out
        model.line_table("firm_finance.fab_co_investment_ratio")
