"""Parameter ensembles: the file's checks, ``uncertain_ensemble`` in scenarios, and sampling.

The ensembles here are small files written by the tests (not the shipped calibration), so
what is checked does not depend on the model's current numbers: that a batch draws whole
members in proportion to their weights, the same member for sample *k* in every scenario
(common parameter draws, as replicate *i* is a common random stream), that ``--set`` and
``uncertain`` ranges take precedence, that ``--sample`` defaults to the declared
uncertainty, and that bad files are refused with located messages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analysis import load, load_manifest
from decouple.cli import main as cli_main
from experiment.batch import BatchError, run_batch
from experiment.plan import make_plan
from experiment.sampling import DEFAULT_DRAWS, ENSEMBLE_DIMENSION, design_samples
from model.ensemble import EnsembleError, load_ensemble
from model.run import simulate
from model.scenario import ScenarioError, load_scenario

ENSEMBLE = """\
kind: decouple-parameter-ensemble
scenario: parent
provenance: {method: "written by a test"}
parameters: [china.procurement_preference, demand.china_share_of_world_pct]
weights: [0.5, 0.0, 0.25, 0.25]
members:
- [0.1, 28.0]
- [0.9, 35.0]
- [0.3, 30.0]
- [0.6, 33.0]
"""
PARENT = """\
name: parent
question: a short scenario with a parameter ensemble
start: 2014Q1
end: 2015Q4
uncertain_ensemble: ens/parent.yaml
uncertain:
  demand.world_market_growth_pct_per_year: {dist: uniform, low: 5, high: 8, reason: "a test"}
"""
CHILD = """\
name: child
question: the same with a stronger procurement push from 2015
extends: parent.yaml
events:
  - {at: 2015Q1, action: procurement_preference, preference: 2.0}
"""
TWIN = PARENT.replace("name: parent", "name: twin")


@pytest.fixture
def scen(tmp_path):
    (tmp_path / "ens").mkdir()
    (tmp_path / "ens" / "parent.yaml").write_text(ENSEMBLE)
    for name, text in (("parent", PARENT), ("child", CHILD), ("twin", TWIN)):
        (tmp_path / f"{name}.yaml").write_text(text)
    return tmp_path


def _problems(path, **kw) -> list[str]:
    with pytest.raises(ScenarioError) as err:
        load_scenario(path, **kw)
    return [str(p) for p in err.value.problems]


# ---------------------------------------------------------------------------------------
# The file
# ---------------------------------------------------------------------------------------


def test_ensemble_file_is_read_and_members_follow_the_weights(scen):
    ens = load_ensemble(scen / "ens" / "parent.yaml")
    assert ens.parameters == ["china.procurement_preference", "demand.china_share_of_world_pct"]
    np.testing.assert_allclose(ens.probabilities(), [0.5, 0.0, 0.25, 0.25])
    # inverse CDF of the weights: [0, .5) -> 0, [.5, .75) -> 2, [.75, 1) -> 3; 1 is never drawn
    assert ens.member_at([0.0, 0.49, 0.5, 0.74, 0.75, 0.999]).tolist() == [0, 0, 2, 2, 3, 3]
    assert ens.values_of(3) == {
        "china.procurement_preference": 0.6,
        "demand.china_share_of_world_pct": 33.0,
    }


def test_bad_ensemble_files_are_refused_with_located_messages(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        ENSEMBLE.replace("demand.china_share_of_world_pct]", "demand.nope, frontier.start_year]")
        .replace("weights: [0.5, 0.0, 0.25, 0.25]", "weights: [0.5, -1, 0.25]")
        .replace("- [0.1, 28.0]", "- [0.1, 28.0, 2001, 4]")
        .replace("- [0.9, 35.0]", "- [0.9, 35.0, 1999]")
        .replace("- [0.3, 30.0]", "- [0.3, 30.0, 2002]")
        .replace("- [0.6, 33.0]", "- [0.6, 33.0, 2003]")
    )
    with pytest.raises(EnsembleError) as err:
        load_ensemble(bad)
    assert err.value.problems == [
        f"{bad}:4:44: parameters[1]: unknown parameter 'demand.nope' (see `decouple params`)",
        f"{bad}:5:1: weights: 3 weights for 4 members; give one weight per member",
        f"{bad}:5:1: weights: weights must be non-negative and not all zero",
        f"{bad}:7:3: members[0]: 4 values for 3 parameters; give one value per parameter, in "
        "the order of 'parameters'",
        f"{bad}:8:15: members[1][2]: 'frontier.start_year' = 1999 is outside the parameter's "
        "range [2000, 2035] (model/parameters.yaml)",
    ]


def test_a_file_that_is_not_an_ensemble_is_refused_without_showing_it(scen, tmp_path):
    secret = tmp_path / "secret.yaml"
    secret.write_text("password: hunter2\n")
    (scen / "p2.yaml").write_text(PARENT.replace("ens/parent.yaml", "secret.yaml"))
    (scen / "secret.yaml").write_text("password: hunter2\n")
    problems = _problems(scen / "p2.yaml")
    assert problems == [
        f"{scen / 'p2.yaml'}:5:1: uncertain_ensemble: {scen / 'secret.yaml'}: not a parameter "
        "ensemble (no top-level 'kind: decouple-parameter-ensemble' line)"
    ]
    assert "hunter2" not in " ".join(problems)


def test_ensemble_paths_must_stay_in_the_scenario_folder(scen):
    for ref in ("../elsewhere.yaml", "/etc/ens.yaml", "ens/parent.txt"):
        (scen / "p3.yaml").write_text(PARENT.replace("ens/parent.yaml", ref))
        (problem,) = _problems(scen / "p3.yaml")
        assert problem.startswith(f"{scen / 'p3.yaml'}:5:1: uncertain_ensemble: '{ref}': ")
    (scen / "p4.yaml").write_text(PARENT.replace("ens/parent.yaml", "ens/missing.yaml"))
    assert _problems(scen / "p4.yaml") == [
        f"{scen / 'p4.yaml'}:5:1: uncertain_ensemble: {scen / 'ens' / 'missing.yaml'}: ensemble "
        "file not found (decouple calibrate writes it; docs/calibration.md)"
    ]
    # the calibration loads a scenario whose ensemble it is about to write
    assert load_scenario(scen / "p4.yaml", ensemble=False).uncertain_ensemble is None


# ---------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------


def test_children_inherit_the_ensemble_and_its_content_is_in_the_hash(scen):
    parent, child = load_scenario(scen / "parent.yaml"), load_scenario(scen / "child.yaml")
    assert child.uncertain_ensemble == parent.uncertain_ensemble
    assert parent.uncertain_ensemble.file == "ens/parent.yaml"
    assert child.ensemble_path == (scen / "ens" / "parent.yaml")
    assert child.uncertain["demand.world_market_growth_pct_per_year"].reason == "a test"
    before = parent.hash
    (scen / "ens" / "parent.yaml").write_text(ENSEMBLE.replace("- [0.1, 28.0]", "- [0.2, 28.0]"))
    assert load_scenario(scen / "parent.yaml").hash != before


# ---------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------


def _scenarios(scen, *names):
    return [load_scenario(scen / f"{n}.yaml") for n in names]


def test_samples_take_whole_members_in_proportion_to_their_weights(scen):
    design = design_samples(_scenarios(scen, "parent", "child"), "lhs", 40, seed=3)
    ens = load_ensemble(scen / "ens" / "parent.yaml")
    members = design.ensemble["member"]
    assert design.ensemble["paths"] == ens.parameters and design.ensemble["members"] == 4
    assert 1 not in members  # weight 0
    # a stratified design: the counts follow the weights (40 x 0.5, 0.25, 0.25)
    assert [members.count(m) for m in (0, 2, 3)] == [20, 10, 10]
    for k, m in enumerate(members):
        row = ens.values_of(m)  # both calibrated values from the same member: joint kept
        assert {p: design.values[k][p] for p in row} == row
        assert 5 <= design.values[k]["demand.world_market_growth_pct_per_year"] <= 8
    d = design.describe()
    assert d["paths"] == ["demand.world_market_growth_pct_per_year", ENSEMBLE_DIMENSION]
    assert d["ensemble"]["member"] == members


def test_set_fixes_an_ensemble_path_and_a_range_wins_over_the_ensemble(scen):
    scs = _scenarios(scen, "parent")
    design = design_samples(scs, "lhs", 4, seed=1, fixed=["china.procurement_preference"])
    assert design.ensemble["paths"] == ["demand.china_share_of_world_pct"]
    assert all("china.procurement_preference" not in v for v in design.values)
    assert "note: --set china.procurement_preference fixes it: it is not drawn from the " \
        "ensemble" in design.notes  # fmt: skip
    (scen / "r.yaml").write_text(
        PARENT.replace("name: parent", "name: ranged")
        + "  china.procurement_preference: {dist: uniform, low: 1.5, high: 2.0}\n"
    )
    design = design_samples(_scenarios(scen, "r"), "lhs", 4, seed=1)
    assert all(1.5 <= v["china.procurement_preference"] <= 2.0 for v in design.values)
    assert (
        "note: china.procurement_preference is in the ensemble and in an 'uncertain' block: "
        "drawn from the range" in design.notes
    )


def test_two_ensembles_in_one_batch_are_refused(scen):
    (scen / "ens" / "other.yaml").write_text(ENSEMBLE.replace("0.6, 33.0", "0.7, 33.0"))
    (scen / "o.yaml").write_text(
        PARENT.replace("name: parent", "name: other").replace("parent.yaml", "other.yaml")
    )
    with pytest.raises(BatchError, match="declare different parameter ensembles"):
        design_samples(_scenarios(scen, "parent", "o"), "lhs", 2, seed=1)


def test_sample_defaults_to_the_declared_uncertainty(scen):
    plan = make_plan([scen / "parent.yaml"], seeds=1)
    assert (plan.design.method, plan.design.n) == ("lhs", DEFAULT_DRAWS)
    assert plan.design.notes[0].startswith(
        f"note: sampling the scenarios' declared parameter uncertainty (--sample lhs:"
        f"{DEFAULT_DRAWS}, the default)"
    )
    assert make_plan([scen / "parent.yaml"], seeds=1, sample="none").design.n == 1
    # a resume without --sample keeps the store's design
    previous = {"samples": {"method": "sobol", "n": 4, "seed": 9}}
    plan = make_plan([scen / "parent.yaml"], seeds=1, previous=previous)
    assert (plan.design.method, plan.design.n, plan.design.seed) == ("sobol", 4, 9)
    (scen / "plain.yaml").write_text("name: plain\nquestion: q\nstart: 2014Q1\nend: 2014Q4\n")
    assert make_plan([scen / "plain.yaml"], seeds=1).design.method == "none"


def test_batch_uses_common_parameter_draws_and_common_random_numbers(scen, tmp_path):
    out = run_batch(
        [scen / "parent.yaml", scen / "twin.yaml", scen / "child.yaml"],
        seeds=2, sample="lhs:3", sample_seed=11, root_entropy=5, out=tmp_path / "store",
        progress=False,
    )  # fmt: skip
    m = load_manifest(out)
    assert m["samples"]["ensemble"]["file"] == "ens/parent.yaml"
    assert len(m["samples"]["ensemble"]["member"]) == 3 and len(m["sample_values"]) == 3
    df = load(out, columns=["self_sufficiency_pct", "china_demand_usd_bn"])
    runs = {
        key: g[["self_sufficiency_pct", "china_demand_usd_bn"]].to_numpy()
        for key, g in df.groupby(["scenario", "seed", "sample"])
    }
    for seed in range(2):
        for k in range(3):
            # same seed and sample in two scenarios of one model: identical runs
            np.testing.assert_array_equal(runs[("parent", seed, k)], runs[("twin", seed, k)])
            # the child differs from 2015 only: 2014 is the same run
            np.testing.assert_array_equal(
                runs[("parent", seed, k)][:4], runs[("child", seed, k)][:4]
            )
    # other draws give other runs (the demand share differs between members)
    assert not np.array_equal(runs[("parent", 0, 0)], runs[("parent", 0, 1)])


def test_per_sample_streams_give_every_run_its_own_stream(scen, tmp_path, capsys):
    """The default design's runs: stream (i, k) in every scenario; (i,) for sample 0."""
    out = run_batch(
        [scen / "parent.yaml", scen / "twin.yaml"], seeds=2, sample="lhs:2", sample_seed=3,
        root_entropy=8, streams="per-sample", out=tmp_path / "ps", progress=False,
    )  # fmt: skip
    m = load_manifest(out)
    assert m["streams"] == "per-sample"
    df = load(out, columns=["china_demand_usd_bn"])
    sc = load_scenario(scen / "parent.yaml")
    for seed in range(2):
        for k in range(2):
            stream = np.random.SeedSequence(8, spawn_key=(seed, k) if k else (seed,))
            cols = simulate(sc, stream, sample=m["sample_values"][k])
            for name in ("parent", "twin"):
                got = df[(df.scenario == name) & (df.seed == seed) & (df["sample"] == k)]
                np.testing.assert_array_equal(
                    got["china_demand_usd_bn"], cols["china_demand_usd_bn"]
                )
    # the default (auto) design uses per-sample streams, an explicit one shared streams
    assert make_plan([scen / "parent.yaml"], seeds=1).streams == "per-sample"
    assert make_plan([scen / "parent.yaml"], seeds=1, sample="lhs:2").streams == "shared"
    # a resume asking for the other kind is refused
    code = cli_main(
        ["batch", str(scen / "parent.yaml"), str(scen / "twin.yaml"), "--seeds", "2",
         "--sample", "lhs:2", "--streams", "shared", "--out", str(out), "--quiet", "--jobs", "1"]
    )  # fmt: skip
    assert code == 2
    assert "streams: per-sample in the store, shared asked for" in capsys.readouterr().err


def test_batch_sample_none_runs_the_defaults(scen, tmp_path, capsys):
    out = tmp_path / "none"
    code = cli_main(
        ["batch", str(scen / "parent.yaml"), "--seeds", "1", "--sample", "none", "--jobs", "1",
         "--quiet", "--out", str(out)]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    m = load_manifest(out)
    assert m["samples"]["method"] == "none" and m["sample_values"] == [{}]


# ---------------------------------------------------------------------------------------
# The shipped baseline ensemble
# ---------------------------------------------------------------------------------------

LIBRARY = sorted(Path(__file__).resolve().parent.parent.glob("scenarios/*.yaml"))


def test_every_library_scenario_inherits_the_baselines_uncertainty():
    scenarios = [load_scenario(p) for p in LIBRARY]
    base = next(sc for sc in scenarios if sc.name == "baseline")
    assert base.uncertain_ensemble.file == "ensembles/baseline.yaml"
    assert base.uncertain and all(d.reason for d in base.uncertain.values())
    for sc in scenarios:
        assert sc.uncertain_ensemble == base.uncertain_ensemble, sc.name
        assert set(base.uncertain) <= set(sc.uncertain), sc.name
    # `decouple batch scenarios/*.yaml` samples it by default, one design for all scenarios
    plan = make_plan(LIBRARY, seeds=1, sample_seed=1)
    assert (plan.design.method, plan.design.n) == ("lhs", DEFAULT_DRAWS)
    assert plan.design.ensemble["file"] == "ensembles/baseline.yaml"


def test_the_shipped_ensemble_was_fitted_to_the_shipped_calibration_file():
    from experiment.targets import CONFIG_FILE, load_config

    base = load_scenario(LIBRARY[0].parent / "baseline.yaml")
    ens = load_ensemble(base.ensemble_path)
    config = load_config(CONFIG_FILE)
    assert ens.parameters == list(config.parameters)
    # editing experiment/calibration.yaml needs a new `decouple calibrate` (docs/calibration.md)
    assert ens.provenance["calibration_sha256"] == config.sha256()
    for j, path in enumerate(ens.parameters):
        lo, hi = config.parameters[path].prior.frozen().support()
        assert all(lo <= row[j] <= hi for row in ens.members), path
    assert len(ens.members) == len(ens.weights) > 0
