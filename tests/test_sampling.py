"""Tests of the sample design (experiment/sampling.py): ``--sample`` specs and ``ppf``.

The whole-batch behaviour of samples (sample *k* is the same vector in every scenario, a
mismatched resume is refused) is tested in test_batch.py.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import stats

from experiment import sampling
from experiment.errors import BatchError
from experiment.sampling import design_samples, parse_sample_spec
from model.scenario import Distribution, load_scenario


def test_sample_design_maps_each_distribution(tmp_path):
    d = tmp_path / "dists"
    d.mkdir()
    (d / "s.yaml").write_text(
        """\
name: dists
question: every distribution
start: 2014Q1
end: 2014Q4
uncertain:
  demand.quarterly_shock_sd_pct: {dist: loguniform, low: 0.5, high: 8.0}
  demand.shock_persistence: {dist: normal, mean: 0.8, sd: 0.05, low: 0.7, high: 0.9}
  demand.world_market_growth_pct_per_year: {dist: normal, mean: 6.5, sd: 1.0, low: -20, high: 50}
  frontier.compound_pace_ratio: {dist: triangular, low: 0.2, high: 0.6, mode: 0.5}
  china_firms.registered_firms_2014: {dist: uniform, low: 3000, high: 3600}
"""
    )
    sc = load_scenario(d / "s.yaml")
    design = design_samples([sc], "sobol", 64, seed=3)
    assert design.notes == []  # 64 is a power of two
    vals = {p: np.array([v[p] for v in design.values]) for p in design.distributions}
    assert (
        (vals["demand.quarterly_shock_sd_pct"] >= 0.5)
        & (vals["demand.quarterly_shock_sd_pct"] <= 8)
    ).all()
    # loguniform: the log is uniform, so about half the points are below the geometric mean 2
    assert 20 <= (vals["demand.quarterly_shock_sd_pct"] < 2.0).sum() <= 44
    assert (
        (vals["demand.shock_persistence"] >= 0.7) & (vals["demand.shock_persistence"] <= 0.9)
    ).all()
    assert abs(np.median(vals["demand.world_market_growth_pct_per_year"]) - 6.5) < 0.3
    assert (
        (vals["frontier.compound_pace_ratio"] >= 0.2)
        & (vals["frontier.compound_pace_ratio"] <= 0.6)
    ).all()
    firms = vals["china_firms.registered_firms_2014"]
    assert firms.dtype.kind == "i" and firms.min() >= 3000 and firms.max() <= 3600  # int parameter
    # reproducible from the seed; another seed gives other points
    assert design_samples([sc], "sobol", 64, seed=3).values == design.values
    assert design_samples([sc], "sobol", 64, seed=4).values != design.values
    # --set fixes a path: it is not sampled
    fixed = design_samples([sc], "lhs", 4, seed=3, fixed=["demand.shock_persistence"])
    assert "demand.shock_persistence" not in fixed.distributions


def test_parse_sample_spec_forms_and_errors():
    assert parse_sample_spec(None) == ("none", 1)
    assert parse_sample_spec("none") == ("none", 1)
    assert parse_sample_spec(" LHS:16 ") == ("lhs", 16)
    assert parse_sample_spec(("sobol", 8)) == ("sobol", 8)
    for spec, message in (
        ("lhs", "expected METHOD:K with METHOD one of lhs, sobol, e.g. lhs:32"),
        ("grid:4", "unknown method 'grid'; allowed: lhs, sobol (or none)"),
        ("lhs:x", "K must be a whole number, e.g. lhs:32"),
        ("lhs:0", "K must be at least 1"),
        ("sobol:100001", "K must be at most 100000 (each sample's values are kept in the "),
    ):
        with pytest.raises(BatchError, match=re.escape(message)):
            parse_sample_spec(spec)


U = np.array([0.0, 1e-6, 0.1, 0.25, 0.5, 0.75, 0.9, 1 - 1e-6, 1.0])


def _reference_ppf(dist, u):
    """The mapping as it was written before the registry (kept to pin the values)."""
    u = np.clip(np.asarray(u, dtype=float), 1e-12, 1 - 1e-12)
    if dist.dist == "uniform":
        return stats.uniform(loc=dist.low, scale=dist.high - dist.low).ppf(u)
    if dist.dist == "loguniform":
        return stats.loguniform(dist.low, dist.high).ppf(u)
    if dist.dist == "triangular":
        width = dist.high - dist.low
        return stats.triang((dist.mode - dist.low) / width, loc=dist.low, scale=width).ppf(u)
    if dist.low is None and dist.high is None:
        return stats.norm(dist.mean, dist.sd).ppf(u)
    a = -np.inf if dist.low is None else (dist.low - dist.mean) / dist.sd
    b = np.inf if dist.high is None else (dist.high - dist.mean) / dist.sd
    return stats.truncnorm(a, b, loc=dist.mean, scale=dist.sd).ppf(u)


@pytest.mark.parametrize(
    "fields",
    [
        {"dist": "uniform", "low": 1.0, "high": 3.0},
        {"dist": "loguniform", "low": 0.5, "high": 8.0},
        {"dist": "triangular", "low": 0.2, "high": 0.6, "mode": 0.5},
        {"dist": "normal", "mean": 6.5, "sd": 1.0},
        {"dist": "normal", "mean": 0.8, "sd": 0.05, "low": 0.7, "high": 0.9},
        {"dist": "normal", "mean": 0.8, "sd": 0.05, "low": 0.7},
    ],
)
def test_ppf_is_scipys_inverse_cdf_of_each_kind(fields):
    dist = Distribution(**fields)
    got = sampling.ppf(dist, U)
    np.testing.assert_array_equal(got, _reference_ppf(dist, U))  # bit for bit
    assert np.isfinite(got).all()  # 0 and 1 are clipped: never an infinite value
    assert (np.diff(got) >= 0).all()
    if dist.low is not None:
        assert got.min() >= dist.low


def test_every_distribution_kind_maps_to_a_scipy_distribution():
    """Each ``dist`` kind the schema allows has a frozen scipy distribution (none falls through)."""
    kinds = Distribution.model_fields["dist"].annotation.__args__
    examples = {
        "uniform": {"low": 1.0, "high": 2.0},
        "loguniform": {"low": 1.0, "high": 2.0},
        "triangular": {"low": 1.0, "high": 2.0, "mode": 1.5},
        "normal": {"mean": 1.0, "sd": 0.1},
    }
    assert set(kinds) == set(examples)
    for kind, fields in examples.items():
        frozen = Distribution(dist=kind, **fields).frozen()
        assert frozen.dist.name == {"normal": "norm", "triangular": "triang"}.get(kind, kind)


def test_sampling_clips_then_asks_the_distribution():
    """Sampling only clips the points; what a kind means is the distribution's own ``ppf``."""

    class Owning:
        def ppf(self, u):
            return np.asarray(u) * 10

    np.testing.assert_array_equal(sampling.ppf(Owning(), [0.5, 1.0]), [5.0, 10 * (1 - 1e-12)])
