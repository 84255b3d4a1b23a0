"""Merge rules of ``extends`` and ``--set``, and the resolved form.

The rules tested are those of model/scenario.py's module docstring.
"""

from __future__ import annotations

import pickle
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

from model.scenario import Scenario, ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tree(tmp_path):
    """A baseline copy plus a helper writing more scenario files next to it."""
    shutil.copy(ROOT / "scenarios" / "baseline.yaml", tmp_path / "baseline.yaml")
    shutil.copytree(ROOT / "scenarios" / "ensembles", tmp_path / "ensembles")  # it declares one

    def write(name: str, text: str) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    write(
        "parent",
        """\
        name: parent
        question: A parent that changes things?
        extends: baseline
        sources: ["F29: surge", "F05: envelope"]
        end: 2033Q4
        parameters:
          china.procurement_preference: 0.8
          us.lobbying_weight: 0.5
        uncertain:
          china.talent_elasticity: {low: 0.5, high: 1.5}
          technology.rd_elasticity: {low: 0.3, high: 0.7}
        events:
          - {at: 2025Q1, action: us_pressure, id: p1, add: 0.5}
          - {at: 2026Q1, action: us_pressure, id: p2, add: 0.5}
        expects:
          - {output: self_sufficiency_pct, year: 2030, direction: higher}
        """,
    )
    return write


def test_child_merges_by_the_documented_rules(tree):
    child = tree(
        "child",
        """\
        name: child
        question: A child of the parent?
        extends: parent
        sources: ["F29: surge", "F15: talent"]
        end: 2034Q4
        parameters:
          us.lobbying_weight: 1.0
          technology.rd_elasticity: 0.6
        uncertain:
          china.talent_elasticity: {dist: triangular, low: 0.5, high: 1.5, mode: 1.0}
        drop_events: [p1]
        events:
          - {at: 2024Q3, action: us_pressure, id: c1, add: 0.1}
        """,
    )
    sc = load_scenario(child)
    assert sc.name == "child" and sc.question == "A child of the parent?"
    assert sc.lineage == ["baseline", "parent", "child"]
    assert (sc.start, sc.end) == ("2014Q1", "2034Q4")
    # parameters: key by key, child wins
    assert sc.parameters == {
        "china.procurement_preference": 0.8,
        "us.lobbying_weight": 1.0,
        "technology.rd_elasticity": 0.6,
    }
    # uncertain: child wins; a parameter the child fixes is no longer uncertain
    baseline_ranges = set(load_scenario(child.parent / "baseline.yaml").uncertain)
    assert set(sc.uncertain) == {"china.talent_elasticity"} | baseline_ranges
    assert sc.uncertain["china.talent_elasticity"].dist == "triangular"
    # events: parent's minus dropped, plus child's, in date order
    ids = [e.id for e in sc.events]
    assert "p1" not in ids and "p2" in ids and "c1" in ids
    assert ids.index("c1") < ids.index("p2")
    assert [e.at for e in sc.events] == sorted(
        (e.at for e in sc.events), key=lambda q: (int(q[:4]), q[-1])
    )
    # sources appended without duplicates; expects: the child's own only
    assert sc.sources[-3:] == ["F29: surge", "F05: envelope", "F15: talent"]
    assert sc.expects == []


def test_set_overrides_win_and_fix_uncertain_parameters(tree):
    sc = load_scenario(
        tree("p2", "name: p2\nquestion: q?\nextends: parent\n"),
        ["us.lobbying_weight=2", "china.talent_elasticity=0.9"],
    )
    assert sc.parameters["us.lobbying_weight"] == 2
    assert sc.parameters["china.talent_elasticity"] == 0.9
    assert "china.talent_elasticity" not in sc.uncertain
    assert (
        load_scenario(
            tree("p3", "name: p3\nquestion: q?\nextends: parent\n"), {"us.auto_tighten": True}
        ).parameters["us.auto_tighten"]
        is True
    )


def test_same_quarter_events_keep_file_order_parents_first(tree):
    child = tree(
        "order",
        """\
        name: order
        question: Same-quarter events?
        extends: parent
        events:
          - {at: 2025Q1, action: us_pressure, id: c_first, add: 0.1}
          - {at: 2025Q1, action: us_pressure, id: c_second, add: 0.1}
        """,
    )
    ids = [e.id for e in load_scenario(child).events if e.at == "2025Q1"]
    assert ids == ["p1", "c_first", "c_second"]


def test_extends_with_explicit_suffix_and_subdirectory(tree, tmp_path):
    """A parent may be named with its suffix (.yaml or .yml) and lie in a subfolder."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mid.yml").write_text(
        "name: mid\nquestion: q?\nextends: baseline\n", encoding="utf-8"
    )
    path = tmp_path / "deep.yaml"
    path.write_text("name: deep\nquestion: q?\nextends: sub/mid.yml\n", encoding="utf-8")
    assert load_scenario(path).lineage == ["baseline", "mid", "deep"]
    path.write_text("name: deep\nquestion: q?\nextends: sub/mid\n", encoding="utf-8")
    assert load_scenario(path).lineage == ["baseline", "mid", "deep"]


def test_errors_in_a_parent_name_the_parent(tree, tmp_path):
    tree(
        "bad_parent",
        "name: bad_parent\nquestion: q?\nextends: baseline\n"
        "parameters: {china.procurment_preference: 1}\n",
    )
    child = tree("kid", "name: kid\nquestion: q?\nextends: bad_parent\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(child)
    assert err.value.problems == [
        (
            f"{tmp_path}/bad_parent.yaml:4:14: parameters.china.procurment_preference: "
            "unknown parameter "
            "'china.procurment_preference' (did you mean 'china.procurement_preference'?)"
        )
    ]


def test_all_problems_of_a_file_are_reported_at_once(tree, tmp_path):
    child = tree(
        "many",
        """\
        name: many
        question: q?
        extends: baseline
        events:
          - {at: 2025Q1, action: ally_alignment, ally: Japan, alignment: 2}
          - {at: 2025Q1, action: contrl}
        """,
    )
    with pytest.raises(ScenarioError) as err:
        load_scenario(child)
    assert [p.split(": ", 2)[1] for p in err.value.problems] == [
        "events[0].ally",
        "events[0].alignment",
        "events[1]",
    ]


def test_resolved_scenario_round_trips_and_hash_is_stable():
    """The resolved YAML written next to results loads back to the same scenario and hash."""
    sc = load_scenario(ROOT / "scenarios" / "tighter_us_controls.yaml")
    again = Scenario.model_validate(yaml.safe_load(sc.to_yaml()))
    assert again == sc and again.hash == sc.hash
    assert load_scenario(ROOT / "scenarios" / "tighter_us_controls.yaml").hash == sc.hash
    assert len(sc.hash) == 64


def test_scenario_error_pickles():
    """Batch workers may send the error across processes."""
    err = ScenarioError(["a.yaml:1:1: name: bad", "b.yaml:2:1: end: bad"])
    back = pickle.loads(pickle.dumps(err))
    assert back.problems == err.problems


def test_event_before_start_is_allowed(tree):
    """Events dated before the horizon's start are applied when the model is built."""
    sc = load_scenario(tree("late", "name: late\nquestion: q?\nextends: baseline\nstart: 2020Q1\n"))
    assert sc.start == "2020Q1" and any(e.at < "2020Q1" for e in sc.events)


def test_docs_examples_validate(tmp_path):
    """The YAML examples in docs/scenarios.md are valid scenario text."""
    import re

    shutil.copy(ROOT / "scenarios" / "baseline.yaml", tmp_path / "baseline.yaml")
    shutil.copytree(ROOT / "scenarios" / "ensembles", tmp_path / "ensembles")  # it declares one
    blocks = re.findall(
        r"```yaml\n(.*?)```",
        (ROOT / "docs" / "scenarios.md").read_text(encoding="utf-8"),
        re.DOTALL,
    )
    assert len(blocks) >= 4
    head = "name: doc_example\nquestion: q?\nextends: baseline\n"
    for i, block in enumerate(blocks):
        text = block if block.startswith("name:") else head + block
        path = tmp_path / f"example{i}.yaml"
        path.write_text(text, encoding="utf-8")
        load_scenario(path)


def test_child_with_earlier_end_drops_parents_later_events(tmp_path):
    root = Path(__file__).resolve().parent.parent / "scenarios" / "baseline.yaml"
    shutil.copy(root, tmp_path / "baseline.yaml")
    shutil.copytree(root.parent / "ensembles", tmp_path / "ensembles")
    child = tmp_path / "short.yaml"
    child.write_text("name: short\nquestion: a short run?\nextends: baseline\nend: 2016Q4\n")
    scenario = load_scenario(child)
    assert scenario.end == "2016Q4"
    assert [e.id for e in scenario.events] == ["big_fund_1"]
    child.write_text(
        child.read_text() + "events:\n  - {at: 2017Q1, action: us_pressure, add: 0.1}\n"
    )
    with pytest.raises(ScenarioError) as exc:
        load_scenario(child)
    assert exc.value.problems == [
        f"{child}:6:6: events[0].at: event 'us_pressure' at 2017Q1 "
        "is after the horizon's end 2016Q4; move it or extend 'end'"
    ]


def test_explanation_is_the_files_own_and_validated(tree):
    """``explanation`` is the file's own, must be text, and is left out when absent.

    A parent's reason does not explain a child's result, and a scenario without one keeps
    its hash.
    """
    parent = tree(
        "explained",
        """\
        name: explained
        question: A parent with a reason?
        extends: baseline
        explanation: Because the parent's mechanism says so.
        """,
    )
    child = tree(
        "quiet_child",
        """\
        name: quiet_child
        question: A child without one?
        extends: explained
        """,
    )
    assert load_scenario(parent).explanation == "Because the parent's mechanism says so."
    sc = load_scenario(child)
    assert sc.explanation is None and "explanation" not in sc.to_dict()
    plain = load_scenario(tree("plain", "name: plain\nquestion: Plain?\nextends: baseline\n"))
    assert "explanation" not in plain.to_dict()
    bad = tree("bad", "name: bad\nquestion: Bad?\nextends: baseline\nexplanation: [1, 2]\n")
    with pytest.raises(ScenarioError, match="explanation"):
        load_scenario(bad)
