"""Tests of shared history (experiment/branching.py, model.run.branch, ``--no-shared-history``).

The heart is bit-identity: every scenario of the library, plus the test scenarios of
tests/scenarios_branching/ (a difference in the very first quarter, a scenario extending a
non-baseline scenario, a rule announced before it binds, other parameters, a shorter
horizon, a twin of the baseline), run through the branching trees gives exactly the columns
of running it alone from the start. The horizon is cut to 2026Q4 to keep it cheap; every
branch quarter of those scenarios lies before it. The batch-level tests use 16-quarter
scenarios written to a temporary directory (in-process, 2 local processes, Dask, resume,
failure isolation), as tests/test_batch.py does.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import load, load_manifest
from decouple.cli import main as cli_main
from experiment import batch, branching, store
from experiment.batch import BatchOptions, execute, run_batch
from model.calendar import quarter_ordinal
from model.run import branch, replicate_seed, results, run_until, simulate, start
from model.scenario import Scenario, load_scenario

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = sorted((ROOT / "scenarios").glob("*.yaml"))
TEST_SCENARIOS = sorted((ROOT / "tests" / "scenarios_branching").glob("*.yaml"))
CUT = "2026Q4"  # the identity test's horizon
ENTROPY = 99


def _cut(sc: Scenario, end: str = CUT) -> Scenario:
    """``sc`` ending at ``end`` (or its own earlier end)."""
    if quarter_ordinal(sc.end) <= quarter_ordinal(end):
        return sc
    return sc.model_copy(update={"end": end})


@pytest.fixture(scope="module")
def scenarios() -> dict[str, Scenario]:
    return {sc.name: sc for sc in (load_scenario(p) for p in LIBRARY + TEST_SCENARIOS)}


def _tree_of(forest, name: str) -> tuple[branching.Branch, branching.Branch | None]:
    """The branch running ``name`` and its parent (None for a root)."""

    def walk(node, parent):
        if node.scenario == name:
            return node, parent
        for child in node.children:
            found = walk(child, node)
            if found:
                return found
        return None

    for tree in forest:
        found = walk(tree, None)
        if found:
            return found
    raise AssertionError(f"{name} is in no tree")


# ---------------------------------------------------------------------------------------
# Bit-identity over the whole library
# ---------------------------------------------------------------------------------------


def test_every_library_scenario_is_bit_identical_with_shared_history(scenarios):
    cut = {name: _cut(sc) for name, sc in scenarios.items()}
    forest = branching.forest_for(list(cut.values()), {})
    assert len(forest) == 2  # other_parameters shares nothing with the rest
    seed = replicate_seed(ENTROPY, 3)
    shared = {}
    for tree in forest:
        shared.update(branching.run_tree(tree, cut, seed, {}, set(cut)))
    assert set(shared) == set(cut)
    for name, sc in cut.items():
        alone = simulate(sc, replicate_seed(ENTROPY, 3))
        got = shared[name]
        assert not isinstance(got, branching.Failure), f"{name}: {got.error}"
        assert list(got) == list(alone), name
        for column, values in alone.items():
            assert got[column].dtype == values.dtype, (name, column)
            np.testing.assert_array_equal(got[column], values, err_msg=f"{name}: {column}")
    # a scenario whose run has no quarter of its own (the twin) is the baseline's run
    np.testing.assert_array_equal(
        shared["baseline_twin"]["self_sufficiency_pct"], shared["baseline"]["self_sufficiency_pct"]
    )
    assert shared["short_horizon"]["quarter"][-1] == "2024Q4"
    assert len(shared["short_horizon"]["quarter"]) == 44


def _expected_branch_quarter(sc: Scenario, parent: Scenario) -> int:
    """Where ``sc`` parts from ``parent``, found from event ids (not as branching does)."""
    own = {e.id: e for e in sc.events}
    theirs = {e.id: e for e in parent.events}
    differ = [e for i, e in own.items() if theirs.get(i) != e]
    differ += [e for i, e in theirs.items() if i not in own]
    dates = [quarter_ordinal(getattr(e, "announced", None) or e.at) for e in differ]
    if sc.end != parent.end:
        dates.append(min(quarter_ordinal(sc.end), quarter_ordinal(parent.end)) + 1)
    return min(dates) if dates else quarter_ordinal(sc.end) + 1


def test_each_scenario_branches_where_its_inputs_first_differ(scenarios):
    forest = branching.forest_for(list(scenarios.values()), {})
    assert [t.scenario for t in forest] == ["baseline", "other_parameters"]
    base = scenarios["baseline"]
    for name, sc in scenarios.items():
        node, parent = _tree_of(forest, name)
        if name in ("baseline", "other_parameters"):
            assert parent is None and node.at_q is None
            continue
        assert parent.scenario == sc.lineage[-2], name  # its own parent scenario
        assert node.at_q == _expected_branch_quarter(sc, scenarios[parent.scenario]), name
        if parent.scenario != "baseline":
            # and it shared the baseline's history up to where its parent left it
            assert _tree_of(forest, parent.scenario)[0].at_q == _expected_branch_quarter(
                scenarios[parent.scenario], base
            )
    assert _tree_of(forest, "first_quarter")[0].at_q == quarter_ordinal("2014Q1")
    assert _tree_of(forest, "announced_rule")[0].at_q == quarter_ordinal("2025Q3")  # announced
    assert _tree_of(forest, "tighter_then_relax")[0].at_q == quarter_ordinal("2026Q3")


# ---------------------------------------------------------------------------------------
# Where two runs part
# ---------------------------------------------------------------------------------------


def _scenario(name="s", events=(), **fields) -> Scenario:
    return Scenario.model_validate(
        {"name": name, "question": "q", "start": "2014Q1", "end": "2016Q4", "events": list(events),
         **fields}
    )  # fmt: skip


def _diff(a: Scenario, b: Scenario) -> int | None:
    return branching.first_difference(
        branching.run_inputs(a, a.resolved_parameters()),
        branching.run_inputs(b, b.resolved_parameters()),
    )


PUSH = {"at": "2015Q2", "action": "procurement_preference", "id": "push", "preference": 1.0}
SET = {"at": "2015Q3", "action": "set_parameter", "path": "us.lobbying_weight", "value": 1.0}


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (_scenario(), _scenario("other_name"), "2017Q1"),  # the name does not enter the run
        # a float field holds 1.0 either way; a set_parameter value keeps its type
        (_scenario(), _scenario(events=[PUSH]), "2015Q2"),
        (_scenario(events=[PUSH]), _scenario(events=[{**PUSH, "note": "n"}]), "2015Q2"),
        (_scenario(events=[PUSH]), _scenario(events=[{**PUSH, "preference": 1}]), "2017Q1"),
        (_scenario(events=[SET]), _scenario(events=[{**SET, "value": 1}]), "2015Q3"),  # 1.0 / 1
        (_scenario(), _scenario(end="2015Q3"), "2015Q4"),  # a prefix
        (_scenario(), _scenario(parameters={"demand.china_share_of_world_pct": 35}), None),
        (_scenario(), _scenario(start="2014Q2"), None),
        (_scenario(), _scenario(events=[{**PUSH, "at": "2014Q1"}]), "2014Q1"),
        (
            _scenario(),
            _scenario(
                events=[
                    {
                        "at": "2016Q2",
                        "action": "control",
                        "item": "other_equipment",
                        "threshold_nm": 28,
                        "announced": "2015Q1",
                    }
                ]
            ),
            "2015Q1",
        ),  # fmt: skip
    ],
)
def test_first_difference(a, b, expected):
    assert _diff(a, b) == (None if expected is None else quarter_ordinal(expected))
    assert _diff(b, a) == _diff(a, b)


def test_an_event_dated_before_the_start_is_part_of_the_construction():
    early = {**PUSH, "at": "2013Q4"}
    a = _scenario(start="2014Q1")
    assert _diff(a, _scenario(events=[early])) is None
    assert _diff(_scenario(events=[early]), _scenario("t", events=[early])) == quarter_ordinal(
        "2017Q1"
    )


def test_the_order_of_two_events_in_one_quarter_counts():
    other = {"at": "2015Q2", "action": "us_pressure", "id": "press", "add": 0.5}
    a, b = _scenario(events=[PUSH, other]), _scenario(events=[other, PUSH])
    assert _diff(a, b) == quarter_ordinal("2015Q2")


def test_canonical_tells_types_and_order_apart():
    assert branching.canonical(1) != branching.canonical(1.0) != branching.canonical(True)
    assert branching.canonical({"a": 1, "b": 2}) != branching.canonical({"b": 2, "a": 1})
    assert branching.canonical(0.0) != branching.canonical(-0.0)
    assert branching.canonical([1.5, "x"]) == branching.canonical([1.5, "x"])


def test_branch_refuses_a_scenario_with_another_start():
    model = start(_scenario(), 0)
    with pytest.raises(ValueError, match="cannot branch scenario 'late' .start 2014Q2."):
        branch(model, _scenario("late", start="2014Q2"))


def test_a_branch_leaves_its_parent_unchanged():
    base, push = _scenario(), _scenario("push", events=[PUSH])
    model = start(base, replicate_seed(ENTROPY, 0))
    run_until(model, quarter_ordinal(PUSH["at"]))
    clone = branch(model, push)
    run_until(clone, clone.end_q + 1)  # the branch runs first, to its end
    run_until(model, model.end_q + 1)
    alone = simulate(base, replicate_seed(ENTROPY, 0))
    for column, values in alone.items():
        np.testing.assert_array_equal(results(model)[column], values)
    assert not np.array_equal(
        results(clone)["flagship_domestic_share_pct"], alone["flagship_domestic_share_pct"]
    )


def test_the_model_reads_no_other_scenario_field():
    """model/ reads of a scenario only what branching compares (model.run.SCENARIO_INPUTS).

    A new read (say ``scenario.name`` keying a random stream) must be taught to
    experiment/branching.py's first-difference computation first, or shared history
    would no longer be bit-identical.
    """
    allowed = {"start", "end", "events", "resolved_parameters"}
    found = {}
    for path in sorted((ROOT / "model").glob("*.py")):
        if path.name in ("scenario.py", "scenario_yaml.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Attribute):
                continue
            base = node.value
            reads = (isinstance(base, ast.Name) and base.id == "scenario") or (
                isinstance(base, ast.Attribute) and base.attr == "spec"
            )
            if reads:
                found.setdefault(node.attr, set()).add(path.name)
    extra = {a: files for a, files in found.items() if a not in allowed}
    assert extra == {"name": {"run.py"}}  # only in model.run.branch's error message
    assert {"start", "end", "events"} <= set(found)


# ---------------------------------------------------------------------------------------
# The batch with shared history
# ---------------------------------------------------------------------------------------

SHORT = {
    "sh_base": """\
name: sh_base
question: test base (short horizon)
start: 2014Q1
end: 2017Q4
uncertain:
  demand.quarterly_shock_sd_pct: {dist: uniform, low: 1.0, high: 3.0}
""",
    "sh_first": """\
name: sh_first
question: differs from the first quarter
extends: sh_base
events:
  - {at: 2014Q1, action: us_pressure, id: first_press, add: 0.5}
""",
    "sh_child": """\
name: sh_child
question: differs from 2015Q1
extends: sh_base
events:
  - {at: 2015Q1, action: procurement_preference, id: child_push, preference: 1.5}
""",
    "sh_grandchild": """\
name: sh_grandchild
question: extends sh_child, differs from it from 2016Q2
extends: sh_child
events:
  - {at: 2016Q2, action: us_pressure, id: grandchild_press, add: -0.5}
""",
    "sh_params": """\
name: sh_params
question: other parameters
extends: sh_base
parameters:
  demand.china_share_of_world_pct: 35
""",
}
SEEDS = 3
SHORT_BATCH = {"seeds": SEEDS, "sample": "lhs:2", "root_entropy": 4242, "sample_seed": 7}


@pytest.fixture(scope="module")
def short(tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("branching")
    for name, text in SHORT.items():
        (d / f"{name}.yaml").write_text(text)
    return [str(d / f"{name}.yaml") for name in SHORT]


@pytest.fixture(scope="module")
def unshared(short, tmp_path_factory) -> Path:
    """The reference: every run from its start, in this process (through the CLI)."""
    out = tmp_path_factory.mktemp("unshared") / "store"
    args = [*short, "--seeds", str(SEEDS), "--sample", "lhs:2", "--root-entropy", "4242"]
    args += ["--sample-seed", "7", "--jobs", "1", "--out", str(out), "--quiet"]
    assert cli_main(["batch", *args, "--no-shared-history"]) == 0
    return out


def _shards(out: Path) -> dict[str, list]:
    """``{shard file name: its run keys}``."""
    return {p.name: store._shard_keys(p) for p in sorted((out / store.SHARDS).glob("*.parquet"))}


def test_shared_history_gives_the_same_store(short, unshared, tmp_path):
    m = load_manifest(unshared)
    assert m["executor"]["shared_history"] is False and "--no-shared-history" in m["command"]
    shared = run_batch(short, jobs=2, out=tmp_path / "shared", progress=False, **SHORT_BATCH)
    pd.testing.assert_frame_equal(load(shared), load(unshared))
    assert load_manifest(shared)["executor"]["shared_history"] is True
    # the same layout: shards of one scenario and sample each, holding the same runs
    for name, keys in {**_shards(shared), **_shards(unshared)}.items():
        scenario, sample = re.match(r"^(\w+)-k(\d{5})-r", name).groups()
        assert {(k[0], k[2]) for k in keys} == {(scenario, int(sample))}
    keys = sorted(k for ks in _shards(shared).values() for k in ks)
    assert keys == sorted(k for ks in _shards(unshared).values() for k in ks)
    assert len(keys) == len(SHORT) * SEEDS * 2


def test_shared_history_on_dask(short, unshared, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        out = run_batch(
            short, scheduler=cluster.scheduler_address, out=tmp_path / "dask", progress=False,
            **SHORT_BATCH,
        )  # fmt: skip
    pd.testing.assert_frame_equal(load(out), load(unshared))


def test_resume_runs_only_the_missing_branches(short, unshared, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(unshared, out)
    removed = [p for p in (out / store.SHARDS).glob("*.parquet") if p.name.startswith("sh_child-")]
    assert removed
    for p in removed:
        p.unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in (out / store.SHARDS).glob("*.parquet")}
    options = BatchOptions(short, **SHORT_BATCH, jobs=1, out=out, progress=False)
    result = execute(options, log=lambda _msg: None)
    assert (result.ran, result.failed) == (SEEDS * 2, 0)  # sh_child's runs only
    pd.testing.assert_frame_equal(load(out), load(unshared))
    now = {p.name: p.stat().st_mtime_ns for p in (out / store.SHARDS).glob("*.parquet")}
    assert {n: t for n, t in now.items() if n in kept} == kept  # finished shards untouched


def test_a_failing_carrier_loses_none_of_its_branches(short, unshared, tmp_path, monkeypatch):
    monkeypatch.setenv(batch.FAIL_ENV, "sh_base:1:0")
    out = run_batch(short, jobs=1, out=tmp_path / "fail", progress=False, **SHORT_BATCH)
    (record,) = store.read_failures(out)
    assert record["run"] == {"scenario": "sh_base", "seed": 1, "sample": 0}
    ref = load(unshared)
    missing = (ref["scenario"] == "sh_base") & (ref["seed"] == 1) & (ref["sample"] == 0)
    pd.testing.assert_frame_equal(load(out), ref[~missing].reset_index(drop=True))


def test_a_failing_branch_fails_only_what_shares_its_history(
    short, unshared, tmp_path, monkeypatch
):
    import model.model

    real = model.model.apply_event

    def failing(m, ev):
        if ev.id == "child_push":
            raise RuntimeError("the child's event fails")
        real(m, ev)

    monkeypatch.setattr(model.model, "apply_event", failing)
    out = run_batch(short, jobs=1, out=tmp_path / "branch", progress=False, **SHORT_BATCH)
    records = store.read_failures(out)
    failed = {(r["run"]["scenario"], r["run"]["seed"], r["run"]["sample"]) for r in records}
    assert failed == {
        (name, i, k) for name in ("sh_child", "sh_grandchild") for i in range(SEEDS) for k in (0, 1)
    }
    for r in records:
        assert r["exception"] == "RuntimeError"
        if r["run"]["scenario"] == "sh_grandchild":  # it branches from sh_child at 2016Q2
            assert r["shared_history"] == {"scenario": "sh_child", "quarter": "2015Q1"}
            assert "the run meets it when run alone too" in r["message"]
        else:
            assert "shared_history" not in r and r["message"] == "the child's event fails"
    ref = load(unshared)
    ok = ~ref["scenario"].isin(["sh_child", "sh_grandchild"])
    pd.testing.assert_frame_equal(load(out), ref[ok].reset_index(drop=True))


def test_dry_run_shows_the_trees(short, tmp_path, capsys):
    code = cli_main(["batch", *short, "--seeds", "2", "--dry-run", "--out", str(tmp_path / "d")])
    out = capsys.readouterr().out
    assert code == 0
    assert (
        "shared history: 5 scenario(s) in 2 tree(s); a replicate simulates 67 quarters "
        "instead of 80 (84%)" in out
    )  # 16 each for sh_base, sh_params and sh_first (from 2014Q1, after a shared build),
    # 12 for sh_child (from 2015Q1), 7 for sh_grandchild (from 2016Q2)
    assert "\n      sh_child (from 2015Q1)\n        sh_grandchild (from 2016Q2)\n" in out
    code = cli_main(
        ["batch", *short, "--seeds", "2", "--dry-run", "--no-shared-history", "--out",
         str(tmp_path / "d")]
    )  # fmt: skip
    assert code == 0 and "shared history" not in capsys.readouterr().out


def test_tree_tasks_follow_the_plan(short):
    plan = batch.make_plan(short, 5, "lhs:2", root_entropy=1, sample_seed=2)
    finished = {("sh_child", 1, 0), ("sh_base", 4, 1)}
    tasks = list(branching.tree_tasks(plan, finished, runs_per_shard=2))
    keys = [k for t in tasks for k in t.run_keys()]
    assert len(keys) == len(set(keys)) == plan.total - len(finished)
    assert set(keys) == set(plan.all_keys()) - finished
    for t in tasks:
        assert {s // 2 for s in t.seeds} == {t.seeds[0] // 2}  # groups aligned on 2
        part = t.part(t.todo[0][0])
        assert part.run_keys() == [k for k in t.run_keys() if k[0] == part.scenario]
    assert sorted({t.tree.scenario for t in tasks}) == ["sh_base", "sh_params"]
