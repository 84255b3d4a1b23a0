"""A batch's parameter samples: ``--sample`` specs, unit-cube points and the sample design.

Samples ``k = 0..K-1`` are drawn once per batch from the union of the scenarios'
``uncertain`` blocks with a scrambled Latin hypercube or Sobol' design
(:mod:`scipy.stats.qmc`), and each unit-cube coordinate is mapped to a parameter value
through the inverse CDF (``ppf``) of its :class:`~model.scenario.Distribution`. Sample *k*
is the same parameter vector in every run of every scenario, so samples are comparable
across scenarios. Without ``--sample`` there is one sample, ``k = 0``, with no sampled
values.

The inverse CDF belongs to the distribution: :func:`ppf` uses a ``ppf(u)`` method of the
distribution (``Distribution.ppf`` in :mod:`model.scenario`).

Only the standard library is imported at module level (numpy and scipy inside the
functions): the CLI imports the batch engine to register its sub-command.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import BatchError

#: Sampling methods accepted by ``--sample``.
SAMPLE_METHODS = ("lhs", "sobol")

#: Largest K accepted by ``--sample``: every sample's values are kept in the manifest (and
#: the unit-cube points in memory while they are drawn), so a larger design would take
#: gigabytes before the first run.
MAX_SAMPLES = 100_000

#: Unit-interval points are clipped to ``[EPS, 1 - EPS]`` before the inverse CDF, so that an
#: unbounded distribution never maps a point to infinity.
EPS = 1e-12


def parse_sample_spec(spec: str | tuple | None) -> tuple[str, int]:
    """``"lhs:16"`` / ``"sobol:64"`` / ``None`` / ``"none"`` -> ``(method, K)``.

    Raises:
        BatchError: naming the allowed forms.
    """
    if spec is None:
        return ("none", 1)
    allowed = ", ".join(SAMPLE_METHODS)
    if isinstance(spec, tuple):
        method, n = spec
    else:
        text = str(spec).strip().lower()
        if text == "none":
            return ("none", 1)
        method, sep, n = text.partition(":")
        if not sep:
            raise BatchError(
                f"--sample {spec}: expected METHOD:K with METHOD one of {allowed}, e.g. lhs:32"
            )
    if method not in SAMPLE_METHODS:
        raise BatchError(
            f"--sample {spec}: unknown method '{method}'; allowed: {allowed} (or none)"
        )
    try:
        n = int(n)
    except (TypeError, ValueError):
        raise BatchError(f"--sample {spec}: K must be a whole number, e.g. {method}:32") from None
    if n < 1:
        raise BatchError(f"--sample {spec}: K must be at least 1")
    if n > MAX_SAMPLES:
        raise BatchError(
            f"--sample {spec}: K must be at most {MAX_SAMPLES} (each sample's values are kept "
            f"in the manifest, so K = {n} would take gigabytes of memory and disk before the "
            "first run); split the study into several batches"
        )
    return (method, n)


def ppf(dist, u):
    """Map unit-interval points ``u`` to a :class:`~model.scenario.Distribution`'s values.

    The points are clipped to ``[EPS, 1 - EPS]``, then mapped by the distribution's own
    :meth:`~model.scenario.Distribution.ppf` (the distribution owns what its kind means).
    """
    import numpy as np

    u = np.clip(np.asarray(u, dtype=float), EPS, 1 - EPS)
    return dist.ppf(u)


def unit_points(method: str, n: int, d: int, seed: int) -> tuple[Any, list[str]]:
    """``n`` x ``d`` points in the unit cube (scrambled LHS or Sobol') and any notes."""
    import warnings

    import numpy as np
    from scipy.stats import qmc

    rng = np.random.default_rng(seed)
    cls = qmc.LatinHypercube if method == "lhs" else qmc.Sobol
    try:
        engine = cls(d, scramble=True, rng=rng)
    except TypeError:  # scipy < 1.15 names the argument ``seed``
        engine = cls(d, scramble=True, seed=rng)
    notes = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        points = engine.random(n)
    for w in caught:
        notes.append(f"note: {w.message}")
    return points, notes


# --------------------------------------------------------------------------------------
# The sample design
# --------------------------------------------------------------------------------------


@dataclass
class SampleDesign:
    """The batch's parameter samples.

    Attributes:
        method: ``"none"``, ``"lhs"`` or ``"sobol"``.
        n: number of samples K (1 for ``"none"``).
        seed: the seed of the QMC engine (``None`` for ``"none"``).
        distributions: ``{path: Distribution}`` sampled, in sorted path order (the design's
            dimension order).
        values: per sample index, ``{path: value}`` (empty dicts for ``"none"``).
        notes: messages for the user (e.g. Sobol' balance, overridden fixed values).
    """

    method: str
    n: int
    seed: int | None
    distributions: dict
    values: list[dict]
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        """The manifest's ``samples`` entry (method, K, seed, paths, distributions)."""
        return {
            "method": self.method,
            "n": self.n,
            "seed": self.seed,
            "paths": list(self.distributions),
            "distributions": {
                p: d.model_dump(mode="json", exclude_none=True)
                for p, d in self.distributions.items()
            },
        }


def design_samples(
    scenarios, method: str, n: int, seed: int | None, fixed: Iterable[str] = ()
) -> SampleDesign:
    """Draw the batch's parameter samples from the union of the scenarios' ``uncertain`` blocks.

    Every sample is applied to every run of every scenario (so sample *k* is comparable
    across scenarios). A path fixed with ``--set`` is not sampled. Values of integer
    parameters are rounded to the nearest integer.

    Args:
        scenarios: resolved :class:`~model.scenario.Scenario` objects.
        method: ``"none"``, ``"lhs"`` or ``"sobol"``.
        n: number of samples K.
        seed: QMC seed (recorded in the manifest).
        fixed: paths given with ``--set`` (removed from the sampled paths).

    Raises:
        BatchError: if two scenarios declare the same path with different distributions,
            a path is not a known parameter or not a number, or ``--sample`` is given but
            no scenario declares an ``uncertain`` block.
    """
    if method == "none":
        return SampleDesign("none", 1, None, {}, [{}])
    union, declared_by = _union_of_uncertain(scenarios)
    paths, notes = _sampled_paths(scenarios, union, declared_by, set(fixed), f"{method}:{n}")
    points, engine_notes = unit_points(method, n, len(paths), seed)
    notes.extend(engine_notes)
    values = _sample_values(union, paths, points, n)
    return SampleDesign(method, n, seed, {p: union[p] for p in paths}, values, notes)


def _union_of_uncertain(scenarios) -> tuple[dict, dict[str, str]]:
    """``({path: Distribution}, {path: first scenario declaring it})`` over the scenarios.

    Raises:
        BatchError: for a path declared with different distributions, not a known
            parameter, or with a non-numeric default.
    """
    from model import parameters as params_mod

    union: dict = {}
    declared_by: dict[str, str] = {}
    problems = []
    for sc in scenarios:
        for path, dist in sc.uncertain.items():
            if path in union and union[path] != dist:
                problems.append(
                    f"uncertain parameter '{path}' has different distributions in scenarios "
                    f"'{declared_by[path]}' ({_dist_text(union[path])}) and '{sc.name}' "
                    f"({_dist_text(dist)}); a batch samples one value per sample index for all "
                    "scenarios, so declare the same range"
                )
            union.setdefault(path, dist)
            declared_by.setdefault(path, sc.name)
    for path in sorted(union):
        where = f"uncertain parameter '{path}' (scenario '{declared_by[path]}')"
        default = params_mod.default_value(path) if params_mod.known_path(path) else None
        if not params_mod.known_path(path):
            problems.append(f"{where} is not a known parameter (see `decouple params`)")
        elif isinstance(default, bool) or not isinstance(default, (int, float)):
            problems.append(
                f"{where} has a non-numeric default ({default!r}); only numbers can be sampled"
            )
    if problems:
        raise BatchError(problems)
    return union, declared_by


def _sampled_paths(
    scenarios, union: dict, declared_by: dict[str, str], fixed: set, spec: str
) -> tuple[list[str], list[str]]:
    """The sampled paths (sorted, without those fixed by ``--set``) and notes for the user.

    Raises:
        BatchError: if nothing is left to sample.
    """
    notes = [
        f"note: --set {path} fixes it: it is not sampled" for path in sorted(fixed & set(union))
    ]
    paths = [p for p in sorted(union) if p not in fixed]
    if not paths:
        if not union:
            names = ", ".join(s.name for s in scenarios)
            raise BatchError(
                f"--sample {spec} given, but none of the scenarios ({names}) declares an "
                "'uncertain' block: nothing to sample (drop --sample)"
            )
        raise BatchError(
            f"--sample {spec}: every uncertain parameter is fixed by --set; nothing to sample"
        )
    for sc in scenarios:
        for path in paths:
            if path in sc.parameters and path not in sc.uncertain:
                notes.append(
                    f"warning: scenario '{sc.name}' fixes {path} = {sc.parameters[path]!r}, but "
                    f"the batch samples it (declared uncertain in '{declared_by[path]}'); the "
                    "sampled value replaces the fixed one"
                )
    return paths, notes


def _sample_values(union: dict, paths: list[str], points, n: int) -> list[dict]:
    """Per sample index ``{path: value}``: ``points`` mapped through each path's ``ppf``.

    Raises:
        BatchError: if a sampled value is not a valid value of its parameter.
    """
    from model import parameters as params_mod

    columns = {}
    for j, path in enumerate(paths):
        vals = ppf(union[path], points[:, j])
        if isinstance(params_mod.default_value(path), int):
            columns[path] = [round(float(v)) for v in vals]
        else:
            columns[path] = [float(v) for v in vals]
    values = [{p: columns[p][k] for p in paths} for k in range(n)]
    problems = []
    for p in paths:
        try:
            params_mod.resolve({p: values[0][p]})
        except params_mod.ParameterError as exc:
            problems.append(f"uncertain parameter '{p}': {exc}")
    if problems:
        raise BatchError(problems)
    return values


def _dist_text(d) -> str:
    """``dist=uniform, low=1.0, high=3.0``: a distribution's fields for messages."""
    return ", ".join(f"{k}={v}" for k, v in d.model_dump(exclude_none=True).items())
