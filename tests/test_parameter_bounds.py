"""Parameter ranges (model/parameters.yaml) and the output contract's bounds.

Every numeric parameter has a range; overrides, timed events and sampled ranges outside it
are refused with the path and the range; a run whose outputs leave their contract (or are
not finite) is refused with the column and the quarter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model import parameters as P
from model.outputs import OUTPUTS, OutputContractError, check_contract
from model.run import simulate

ROOT = Path(__file__).resolve().parent.parent


def _numeric(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, dict):
        return any(_numeric(v) for v in value.values())
    if isinstance(value, list):
        return True
    return False


def test_every_numeric_parameter_has_a_range_and_its_default_is_inside():
    missing = [p.path for p in P.defaults().values() if _numeric(p.value) and p.range is None]
    assert missing == []
    assert P.out_of_range_defaults() == []


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"firm_finance.depreciation_pct_per_quarter": 1e300},
            "parameter 'firm_finance.depreciation_pct_per_quarter': 1e+300 is outside its range "
            "[0, 100] (% of capacity per quarter)",
        ),
        (
            {"demand.world_market_usd_bn_2022": -600},
            "parameter 'demand.world_market_usd_bn_2022': -600 is outside its range [1, 10000] "
            "(US$ bn/year)",
        ),
        (
            {"demand.china_share_of_world_pct": float("nan")},
            "parameter 'demand.china_share_of_world_pct': nan is outside its range [0, 100] "
            "(% of world demand by value)",
        ),
        (
            {"allies.initial_alignment.japan": 2},
            "parameter 'allies.initial_alignment.japan': 2 is outside its range [0, 1] (0-1)",
        ),
        (
            {"china_firms.champions.memory_nand": {"capacity": -1}},
            "parameter 'china_firms.champions.memory_nand': 'capacity' is -1, outside its range "
            "[0, 100]",
        ),
        (
            {"demand.tier_share_pct.leading": [[2014, 0], [2035, 70]]},
            "parameters 'demand.tier_share_pct.*': the leading, advanced, memory and compound "
            "shares add up to 120% in 2035; they must leave a non-negative mature share (at "
            "most 100% together)",
        ),
        (
            {"foreign.supply_share_pct.chips_leading": {"taiwan": 0, "south_korea": 0}},
            "parameter 'foreign.supply_share_pct.chips_leading': the shares add up to 0; at "
            "least one origin must supply the item (shares are renormalised to 100%)",
        ),
    ],
)
def test_overrides_outside_their_range_are_refused_with_path_and_range(override, message):
    with pytest.raises(P.ParameterError) as err:
        P.resolve(override)
    assert str(err.value) == message


def test_bounds_of_a_scalar_a_mapping_key_and_a_mixed_record():
    assert P.bounds("controls.leakage_pct") == (0.0, 100.0)
    assert P.bounds("allies.initial_alignment.japan") == (0.0, 1.0)
    assert P.bounds("china_firms.champions.memory_nand") is None  # a record of mixed fields


def test_a_malformed_range_in_the_table_is_refused():
    with pytest.raises(P.ParameterError, match=r"'x.range' must be \[low, high\] numbers"):
        P._walk({"value": 1, "unit": "u", "source": "assumption: s", "range": [2, 1]}, "x", {})


def test_validate_refuses_an_out_of_range_set_with_exit_2(tmp_path):
    baseline_file = str(ROOT / "scenarios" / "baseline.yaml")
    res = subprocess.run(
        [sys.executable, "-m", "decouple.cli", "validate", baseline_file,
         "--set", "demand.world_market_usd_bn_2022=-600"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 2
    assert (
        "--set demand.world_market_usd_bn_2022=-600: parameter 'demand.world_market_usd_bn_2022': "
        "-600 is outside its range [1, 10000] (US$ bn/year)" in res.stderr
    )


def test_a_sampled_range_must_lie_inside_the_parameters_range(tmp_path):
    from model.scenario import ScenarioError, load_scenario

    path = tmp_path / "sampled.yaml"
    path.write_text(
        "name: sampled\nquestion: ranges?\nstart: 2014Q1\nend: 2015Q4\n"
        "uncertain:\n"
        "  controls.leakage_pct: {dist: uniform, low: 5, high: 120}\n"
        "  demand.china_share_of_world_pct: {dist: normal, mean: 31, sd: 3}\n"
        "  allies.initial_alignment.japan: {dist: uniform, low: 0.2, high: 0.6}\n",
        encoding="utf-8",
    )
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    shown = [str(p) for p in err.value.problems]
    assert shown == [
        f"{path}:6:3: uncertain.controls.leakage_pct: 'controls.leakage_pct' would be sampled "
        "from 5 to 120, outside the parameter's range [0, 100] (model/parameters.yaml)",
        f"{path}:7:3: uncertain.demand.china_share_of_world_pct: "
        "'demand.china_share_of_world_pct' would be sampled from -inf to inf, outside the "
        "parameter's range [0, 100] (model/parameters.yaml); truncate it with low and high",
    ]


def test_every_output_unit_has_a_contract():
    for o in OUTPUTS:
        low, high = o.bounds
        assert low < high, o.name


def test_the_contract_refuses_non_finite_and_out_of_range_values_naming_the_quarter():
    quarters = ["2014Q1", "2014Q2", "2014Q3"]
    check_contract("self_sufficiency_pct", [10.0, 100.0, 0.0], quarters)  # bounds included
    with pytest.raises(OutputContractError) as err:
        check_contract("self_sufficiency_pct", [10.0, float("nan"), 120.0], quarters)
    assert str(err.value).startswith(
        "output 'self_sufficiency_pct' is nan in 2014Q2: outside its contract [0, 100] "
        "(% of demand)"
    )
    with pytest.raises(OutputContractError, match="'china_demand_usd_bn' is -1.0 in 2014Q3"):
        check_contract("china_demand_usd_bn", [1.0, 2.0, -1.0], quarters)


def _extreme(p, pick: int):
    """The parameter's value at the low (0) or high (1) end of its range, or None."""
    rng, value = p.range, p.value
    if isinstance(rng, dict):
        return {
            k: (rng[k][pick] if k in rng and not isinstance(v, dict) else v)
            for k, v in value.items()
        }
    if not isinstance(rng, list) or isinstance(value, bool):
        return None
    x = rng[pick]
    if isinstance(value, dict):
        return {k: x for k in value}
    if isinstance(value, list):
        return [[pt[0], x] for pt in value]
    return x


def test_every_parameter_at_either_end_of_its_range_runs_within_the_contract(baseline):
    """One parameter at a time at its range's ends, 2014-2016: no crash, outputs in contract.

    Combinations the consistency rules refuse (tier shares over 100%) are skipped.
    """
    short = baseline.model_copy(
        update={"end": "2016Q4", "events": [e for e in baseline.events if e.at <= "2016Q4"]}
    )
    ran = 0
    for p in P.defaults().values():
        for pick in (0, 1):
            value = _extreme(p, pick)
            if value is None:
                continue
            try:
                P.resolve({p.path: value})
            except P.ParameterError:
                continue
            params = {**short.parameters, p.path: value}
            simulate(short.model_copy(update={"parameters": params}), 0)  # raises on a breach
            ran += 1
    assert ran > 300


def test_random_combinations_within_the_ranges_run_within_the_contract(baseline):
    rng = np.random.default_rng(11)
    scalars = [
        p for p in P.defaults().values()
        if isinstance(p.range, list) and isinstance(p.value, (int, float))
        and not isinstance(p.value, bool)
    ]  # fmt: skip
    short = baseline.model_copy(
        update={"end": "2017Q4", "events": [e for e in baseline.events if e.at <= "2017Q4"]}
    )
    for _ in range(12):
        chosen = rng.choice(len(scalars), size=8, replace=False)
        params = dict(short.parameters)
        for i in chosen:
            low, high = scalars[i].range
            params[scalars[i].path] = float(rng.uniform(low, high))
        simulate(short.model_copy(update={"parameters": params}), 0)
