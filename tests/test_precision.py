"""Tests of ``decouple batch --dry-run --precision`` (experiment/precision.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from decouple.cli import main as cli_main
from experiment import precision

SCEN = """\
name: short_p
question: test scenario (short horizon, one uncertain parameter)
start: 2014Q1
end: 2017Q4
uncertain:
  demand.china_share_of_world_pct: {dist: uniform, low: 20, high: 40}
"""

Z = norm.ppf(0.975)


def test_runs_for_a_probability_follow_the_binomial_variance():
    # the worst case p = 50%: z^2 / (4 h^2), h = 0.5 pp = 0.005
    assert precision.runs_for_probability(0.5) == math.ceil(Z**2 / 4 / 0.005**2) == 38415
    assert precision.runs_for_probability(2.5) == math.ceil(Z**2 / 4 / 0.025**2)
    assert precision.runs_for_probability(0.5, p=0.1) < precision.runs_for_probability(0.5)
    with pytest.raises(ValueError):
        precision.runs_for_probability(0)


def test_runs_for_a_median_follow_its_normal_approximation():
    n = precision.runs_for_median(2.0, 0.5)
    assert n == math.ceil((Z * math.sqrt(math.pi / 2) * 2.0 / 0.5) ** 2)
    assert precision.runs_for_median(4.0, 0.5) == pytest.approx(4 * n, rel=0.01)


def test_runs_for_a_median_give_the_half_width_asked_for():
    """Simulated: the order-statistic interval of n normal runs is about +/-H wide."""
    from analysis.stats import quantile_interval

    sd, h = 3.0, 0.5
    n = precision.runs_for_median(sd, h)
    block = np.random.default_rng(0).normal(0, sd, (40, n))
    lo, hi = quantile_interval(block, 0.5)
    assert np.mean((hi - lo) / 2) == pytest.approx(h, rel=0.1)


def test_spread_splits_variance_between_and_within_draws():
    rng = np.random.default_rng(1)
    between_only = np.repeat(rng.normal(0, 1, (50, 1)), 4, axis=1)
    assert precision.spread_of(between_only)[1] == pytest.approx(1.0)
    within_only = rng.normal(0, 1, (50, 4))
    assert precision.spread_of(within_only)[1] < 0.1
    sd, rho = precision.spread_of(rng.normal(0, 1, (1, 8)))
    assert rho == 0.0 and sd > 0


def test_draws_needed_follow_the_design_effect():
    assert precision.draws_needed(100, 1, 0.7) == 100
    assert precision.draws_needed(100, 10, 0.0) == 10  # seeds are as good as draws
    assert precision.draws_needed(100, 10, 1.0) == 100  # seeds add nothing
    assert precision.draws_needed(100, 5, 0.5) == math.ceil(100 * (1 + 4 * 0.5) / 5)


def _batch(args, capsys):
    code = cli_main(["batch", *args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_dry_run_plans_seeds_and_draws(tmp_path, capsys):
    f = tmp_path / "p.yaml"
    f.write_text(SCEN)
    base = [str(f), "--out", str(tmp_path / "out"), "--root-entropy", "3", "--quiet"]
    code, out, err = _batch(
        [*base, "--seeds", "5", "--sample", "lhs:8", "--sample-seed", "2", "--dry-run",
         "--precision", "0.5", "--precision-year", "2016"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "pilot: short_p, 8 runs in-process" in out
    assert "precision: 95% interval half-width 0.5 pp, self_sufficiency_pct in 2016" in out
    assert "pilot: 4 draw(s) x 2 seed(s)" in out and "between parameter draws" in out
    assert "the median:" in out and "with --seeds 5:" in out
    assert "a threshold probability (worst case p = 50%): 38,415 independent runs" in out
    assert not (tmp_path / "out").exists()
    # without a sample, only seeds vary
    code, out, _ = _batch(
        [*base, "--sample", "none", "--dry-run", "--precision", "1", "--precision-year", "2016"],
        capsys,
    )  # fmt: skip
    assert code == 0 and "pilot: 1 draw(s) x 8 seed(s)" in out and "= --seeds" in out


def test_precision_bad_input(tmp_path, capsys):
    f = tmp_path / "p.yaml"
    f.write_text(SCEN)
    base = [str(f), "--out", str(tmp_path / "out"), "--quiet"]
    code, _, err = _batch([*base, "--precision", "0.5"], capsys)
    assert code == 2 and "--precision plans a batch: use it with --dry-run" in err
    code, _, err = _batch([*base, "--dry-run", "--precision", "0.5"], capsys)
    assert code == 2
    assert "--precision-year 2030 is outside scenario 'short_p''s horizon (2014Q1-2017Q4)" in err
    with pytest.raises(SystemExit):
        cli_main(["batch", *base, "--dry-run", "--precision", "-1"])
    assert "must be a positive number" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
