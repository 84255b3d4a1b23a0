"""``decouple calibrate``: the targets file, the distance, and a tiny ABC-SMC end to end.

The real calibration (150 particles, 6 generations, ~15 minutes) is a documented command,
not a test. Here the calibration file is a toy one (two targets on a two-year horizon, two
parameters), the population 4 and the generations 2, so pyabc runs in seconds: what is
checked is the machinery (the ensemble written and readable by a scenario, its provenance,
the diagnostics, resume and extension of the store, refusal of another calibration), not
today's fitted values, which change with the model.
"""

from __future__ import annotations

import json
import math

import pytest
import yaml

from decouple.cli import main as cli_main
from experiment import provenance
from experiment.targets import CONFIG_FILE, CalibrationError, Target, distance, load_config
from model.ensemble import load_ensemble
from model.scenario import load_scenario

SHORT = """\
name: short
question: a two-year scenario to calibrate
start: 2014Q1
end: 2015Q4
"""

TOY = {
    "targets": {
        "ss_2015": {
            "output": "self_sufficiency_pct", "year": 2015, "aggregate": "mean",
            "kind": "equal", "value": 12.0, "tolerance": 2.0,
            "source": "a test", "tolerance_reason": "a test",
        },
        "firms_2015": {
            "output": "firms_active", "years": [2014, 2015], "aggregate": "mean",
            "scale_by": "china_firms.real_firms_per_agent", "kind": "above", "value": 1000,
            "tolerance": 500, "source": "a test", "tolerance_reason": "a test",
        },
    },
    "parameters": {
        "china.procurement_preference": {
            "prior": {"dist": "uniform", "low": 0.0, "high": 1.0}, "reason": "a test",
        },
        "demand.china_share_of_world_pct": {
            "prior": {"dist": "uniform", "low": 26, "high": 36}, "reason": "a test",
        },
    },
    "settings": {
        "scenario": "unused.yaml", "horizon_end": "2015Q4", "population": 4, "generations": 2,
        "min_acceptance_rate": 0.0, "min_epsilon": 0.0, "root_entropy": 7,
    },
}  # fmt: skip


def _write_config(path, data=TOY):
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------
# The targets file and the distance (no pyabc needed)
# ---------------------------------------------------------------------------------------


def test_shipped_calibration_file_is_valid():
    config = load_config(CONFIG_FILE)
    assert {"self_sufficiency_2021", "fab_equipment_2024", "firms_2021"} <= set(config.targets)
    # the SEMI series (issue 12)
    assert [config.targets[f"fab_equipment_{y}"].value for y in range(2021, 2025)] == [
        29.6, 28.3, 36.6, 49.6
    ]  # fmt: skip
    for t in config.targets.values():
        assert t.source and t.tolerance_reason and t.tolerance > 0
    assert all(p.reason for p in config.parameters.values())


def test_distance_is_the_rms_miss_in_tolerances():
    eq = Target(output="self_sufficiency_pct", year=2021, aggregate="mean", kind="equal",
                value=16, tolerance=2, source="s", tolerance_reason="r")  # fmt: skip
    below = eq.model_copy(update={"kind": "below", "value": 35, "tolerance": 5})
    assert eq.z(19.0) == 1.5 and eq.z(13.0) == -1.5
    assert below.z(30.0) == 0.0 and below.z(45.0) == 2.0  # only the excess counts
    targets = {"a": eq, "b": below}
    assert distance({"a": 19.0, "b": 45.0}, targets) == pytest.approx(math.sqrt((1.5**2 + 4) / 2))
    assert distance({"a": math.nan, "b": 30.0}, targets) == math.inf  # a failed run


def test_bad_calibration_files_are_refused_with_located_messages(tmp_path):
    bad = json.loads(json.dumps(TOY))
    bad["targets"]["ss_2015"]["output"] = "self_sufficiency"
    bad["targets"]["firms_2015"]["years"] = [2014, 2019]
    bad["parameters"]["demand.nope"] = {"prior": {"low": 0, "high": 1}, "reason": "r"}
    bad["parameters"]["demand.china_share_of_world_pct"]["prior"]["high"] = 140
    path = _write_config(tmp_path / "bad.yaml", bad)
    with pytest.raises(CalibrationError) as err:
        load_config(path)
    assert err.value.problems == [
        f"{path}:3:5: targets.ss_2015.output: unknown output 'self_sufficiency' (did you mean "
        "'self_sufficiency_pct'?); the outputs are listed in docs/outputs.md",
        f"{path}:13:5: targets.firms_2015.years: years 2014-2019 are outside the calibration "
        "horizon 2014-2015 (settings.horizon_end)",
        f"{path}:31:5: parameters.demand.china_share_of_world_pct.prior: the prior spans 26 to "
        "140, outside the parameter's range [0, 100] (model/parameters.yaml)",
        f"{path}:36:3: parameters.demand.nope: unknown parameter 'demand.nope' (see `decouple "
        "params`)",
    ]


# ---------------------------------------------------------------------------------------
# A tiny calibration end to end
# ---------------------------------------------------------------------------------------


@pytest.fixture
def toy(tmp_path):
    pytest.importorskip("pyabc")
    scen = tmp_path / "short.yaml"
    scen.write_text(SHORT)
    config = _write_config(tmp_path / "toy.yaml")
    store, ens = tmp_path / "store", tmp_path / "ensembles" / "short.yaml"
    args = ["calibrate", str(scen), "--config", str(config), "--out", str(store),
            "--ensemble", str(ens), "--jobs", "1", "--quiet"]  # fmt: skip
    return scen, config, store, ens, args


def test_calibrate_writes_an_ensemble_a_scenario_can_use(toy, capsys):
    scen, config, store, ens, args = toy
    assert cli_main(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "| ss_2015 | self_sufficiency_pct | 2015 | 12 ± 2 |" in out
    assert "decouple calibrate: 2 generation(s) (2 generations done)" in out
    e = load_ensemble(ens)
    assert e.parameters == ["china.procurement_preference", "demand.china_share_of_world_pct"]
    assert len(e.members) == 4 and len(e.weights) == 4
    assert all(0 <= a <= 1 and 26 <= b <= 36 for a, b in e.members)  # inside the priors
    prov = e.provenance
    assert prov["model_fingerprint"] == provenance.model_fingerprint()
    assert prov["calibration_sha256"] == load_config(config).sha256()
    assert prov["horizon_end"] == "2015Q4" and prov["generations"] == 2
    assert "root entropy 7" in prov["seeds"] and "ABC-SMC (pyabc)" in prov["method"]
    assert [g["generation"] for g in e.diagnostics["generations"]] == [0, 1]
    assert [r["target"] for r in e.diagnostics["fit"]][:2] == ["ss_2015", "firms_2015"]
    for name in ("fit.csv", "fit.md", "generations.csv", "posterior_marginals.png", "abc.db"):
        assert (store / name).is_file(), name
    # a scenario declaring it loads, and a batch can draw from it
    (ens.parent.parent / "user.yaml").write_text(
        SHORT.replace("name: short", "name: user") + "uncertain_ensemble: ensembles/short.yaml\n"
    )
    assert load_scenario(ens.parent.parent / "user.yaml").uncertain_ensemble is not None


def test_rerunning_resumes_and_more_generations_extend(toy, capsys, tmp_path):
    scen, config, store, ens, args = toy
    assert cli_main(args) == 0
    capsys.readouterr()
    first = load_ensemble(ens)
    assert cli_main(args) == 0  # the same command: nothing left to do
    err = capsys.readouterr().err
    assert f"decouple calibrate: resuming {store}: 2 generation(s) finished" in err
    assert load_ensemble(ens).members == first.members
    assert cli_main([*args, "--generations", "3"]) == 0
    captured = capsys.readouterr()
    assert "1 generation(s) of 4 particles" in captured.err
    m = json.loads((store / "calibration.json").read_text())
    assert m["generations_done"] == 3 and len(m["resumed"]) == 2
    assert len(load_ensemble(ens).diagnostics["generations"]) == 3

    other = json.loads(json.dumps(TOY))
    other["targets"]["ss_2015"]["tolerance"] = 1.0
    _write_config(config, other)
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert f"decouple calibrate: error: --out {store} holds a different calibration" in err
    assert "calibration_sha256" in err


def test_calibrate_refuses_a_directory_that_is_not_its_store(toy, capsys):
    scen, config, store, ens, args = toy
    store.mkdir()
    (store / "junk.txt").write_text("x")
    assert cli_main(args) == 2
    assert (
        f"decouple calibrate: error: --out {store} exists and is not a calibration store (no "
        "calibration.json); choose another --out" in capsys.readouterr().err
    )
