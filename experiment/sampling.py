"""A batch's parameter samples: ``--sample`` specs, unit-cube points and the sample design.

Samples ``k = 0..K-1`` are drawn once per batch from the union of the scenarios'
``uncertain`` blocks and their ``uncertain_ensemble`` (a calibrated parameter ensemble,
:mod:`model.ensemble`) with a scrambled Latin hypercube or Sobol' design
(:mod:`scipy.stats.qmc`). Each ``uncertain`` path is one coordinate of the unit cube,
mapped to a value through the inverse CDF (``ppf``) of its
:class:`~model.scenario.Distribution`; the ensemble is one more coordinate, mapped to a
member through the inverse CDF of the members' weights, and the sample takes that whole
member (so the calibration's correlations are kept). Sample *k* is the same parameter
vector in every run of every scenario, so samples are comparable across scenarios, and
paired differences cancel parameter draws as replicate *i* cancels random streams.

By default (``--sample auto``) a batch samples what its scenarios declare: a resumed store's
design, else ``lhs:DEFAULT_DRAWS`` when any scenario declares ``uncertain`` or
``uncertain_ensemble``, else nothing. ``--sample none`` runs one sample, ``k = 0``, with no
sampled values (seed noise only, at the scenarios' own values).

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
#: ``--sample auto`` (the default): the scenarios' declared uncertainty, see the module doc.
AUTO = "auto"
#: Draws of ``--sample auto`` when the scenarios declare uncertainty (``lhs:20``).
DEFAULT_DRAWS = 20
DEFAULT_METHOD = "lhs"
#: The ensemble's coordinate in ``SampleDesign.describe()["paths"]`` (not a parameter).
ENSEMBLE_DIMENSION = "<ensemble member>"

#: Largest K accepted by ``--sample``: every sample's values are kept in the manifest (and
#: the unit-cube points in memory while they are drawn), so a larger design would take
#: gigabytes before the first run.
MAX_SAMPLES = 100_000

#: Unit-interval points are clipped to ``[EPS, 1 - EPS]`` before the inverse CDF, so that an
#: unbounded distribution never maps a point to infinity.
EPS = 1e-12


def parse_sample_spec(spec: str | tuple | None) -> tuple[str, int]:
    """``"lhs:16"`` / ``"sobol:64"`` / ``None`` / ``"none"`` / ``"auto"`` -> ``(method, K)``.

    ``"auto"`` gives ``("auto", 0)``: :func:`auto_spec` decides once the scenarios are read.

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
        if text == AUTO:
            return (AUTO, 0)
        method, sep, n = text.partition(":")
        if not sep:
            raise BatchError(
                f"--sample {spec}: expected METHOD:K with METHOD one of {allowed}, e.g. lhs:32 "
                "(or auto, or none)"
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


def declares_uncertainty(scenarios) -> bool:
    """True if any scenario declares ``uncertain`` ranges or an ``uncertain_ensemble``."""
    return any(sc.uncertain or sc.uncertain_ensemble is not None for sc in scenarios)


def auto_spec(scenarios, previous: dict | None) -> tuple[tuple[str, int], str | None]:
    """What ``--sample auto`` means for these scenarios: ``((method, K), note)``.

    A resumed store keeps its own design (so the same command resumes it); otherwise
    ``lhs:DEFAULT_DRAWS`` when any scenario declares uncertainty, else no sampling.
    """
    prev = (previous or {}).get("samples")
    if isinstance(prev, dict) and prev.get("method") in (*SAMPLE_METHODS, "none"):
        if isinstance(prev.get("n"), int):
            return (prev["method"], prev["n"]), None
    if not declares_uncertainty(scenarios):
        return ("none", 1), None
    spec = f"{DEFAULT_METHOD}:{DEFAULT_DRAWS}"
    return (DEFAULT_METHOD, DEFAULT_DRAWS), (
        f"note: sampling the scenarios' declared parameter uncertainty (--sample {spec}, the "
        "default): each run is one of "
        f"{DEFAULT_DRAWS} parameter draws x the seeds; --sample none for seed noise only"
    )


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
        ensemble: the ensemble drawn from, if any: ``file``, ``sha256``, ``members``, the
            ``paths`` taken from it and, per sample index, the ``member`` drawn (its
            coordinate is the design's last dimension).
    """

    method: str
    n: int
    seed: int | None
    distributions: dict
    values: list[dict]
    notes: list[str] = field(default_factory=list)
    ensemble: dict | None = None

    def describe(self) -> dict:
        """The manifest's ``samples`` entry (method, K, seed, paths, distributions, ensemble)."""
        out = {
            "method": self.method,
            "n": self.n,
            "seed": self.seed,
            "paths": list(self.distributions) + ([ENSEMBLE_DIMENSION] if self.ensemble else []),
            "distributions": {
                p: d.model_dump(mode="json", exclude_none=True)
                for p, d in self.distributions.items()
            },
        }
        if self.ensemble is not None:
            out["ensemble"] = self.ensemble
        return out


def design_samples(
    scenarios, method: str, n: int, seed: int | None, fixed: Iterable[str] = ()
) -> SampleDesign:
    """Draw the batch's parameter samples from the scenarios' ``uncertain`` blocks and ensemble.

    Every sample is applied to every run of every scenario (so sample *k* is comparable
    across scenarios). A path fixed with ``--set`` is not sampled. Values of integer
    parameters are rounded to the nearest integer. A path both in an ``uncertain`` block
    and in the ensemble is drawn from its range (and the batch says so).

    Args:
        scenarios: resolved :class:`~model.scenario.Scenario` objects.
        method: ``"none"``, ``"lhs"`` or ``"sobol"``.
        n: number of samples K.
        seed: QMC seed (recorded in the manifest).
        fixed: paths given with ``--set`` (removed from the sampled paths).

    Raises:
        BatchError: if two scenarios declare the same path with different distributions
            or different ensembles, a path is not a known parameter or not a number, or
            ``--sample`` is given but no scenario declares uncertainty.
    """
    if method == "none":
        return SampleDesign("none", 1, None, {}, [{}])
    fixed = set(fixed)
    union, declared_by = _union_of_uncertain(scenarios)
    ens, ens_paths, ens_notes = _ensemble_of(scenarios, set(union), fixed)
    paths, notes = _sampled_paths(
        scenarios, union, declared_by, fixed, f"{method}:{n}", ens_paths, ens
    )
    notes.extend(ens_notes)
    dims = len(paths) + (1 if ens is not None else 0)
    points, engine_notes = unit_points(method, n, dims, seed)
    notes.extend(engine_notes)
    values = _sample_values(union, paths, points, n)
    ensemble = None
    if ens is not None:
        members = _draw_members(ens["ensemble"], points[:, -1], ens_paths, values)
        ensemble = {
            "file": ens["file"],
            "sha256": ens["sha256"],
            "members": len(ens["ensemble"].members),
            "paths": ens_paths,
            "member": members,
        }
    return SampleDesign(method, n, seed, {p: union[p] for p in paths}, values, notes, ensemble)


def _ensemble_of(scenarios, uncertain_paths: set, fixed: set) -> tuple[dict | None, list, list]:
    """The batch's ensemble (one for all scenarios), the paths drawn from it, and notes.

    Returns:
        ``({"file", "sha256", "ensemble"} or None, paths, notes)``.

    Raises:
        BatchError: if scenarios declare different ensembles, or one cannot be read.
    """
    from model.ensemble import EnsembleError, load_ensemble

    found: dict | None = None
    by = ""
    problems = []
    for sc in scenarios:
        ref = sc.uncertain_ensemble
        if ref is None:
            continue
        if found is not None:
            if found["sha256"] != ref.sha256:
                problems.append(
                    f"scenarios '{by}' and '{sc.name}' declare different parameter ensembles "
                    f"({found['file']}, {ref.file}); a batch draws one member per sample index "
                    "for all scenarios, so declare the same ensemble"
                )
            continue
        if sc.ensemble_path is None:
            problems.append(
                f"scenario '{sc.name}': its ensemble {ref.file} was not located (load the "
                "scenario from its file)"
            )
            continue
        try:
            ens = load_ensemble(sc.ensemble_path)
        except EnsembleError as exc:
            problems.extend(exc.problems)
            continue
        found, by = {"file": ref.file, "sha256": ref.sha256, "ensemble": ens}, sc.name
    if problems:
        raise BatchError(problems)
    if found is None:
        return None, [], []
    params = found["ensemble"].parameters
    notes = [
        f"note: --set {p} fixes it: it is not drawn from the ensemble" for p in params if p in fixed
    ]
    notes += [
        f"note: {p} is in the ensemble and in an 'uncertain' block: drawn from the range"
        for p in params
        if p in uncertain_paths and p not in fixed
    ]
    paths = [p for p in params if p not in fixed and p not in uncertain_paths]
    notes += _fingerprint_note(found)
    return found, paths, notes


def _fingerprint_note(found: dict) -> list[str]:
    """A warning when the ensemble was calibrated on other model code than this one."""
    from .provenance import model_fingerprint

    made = (found["ensemble"].provenance or {}).get("model_fingerprint")
    if made is None or made == model_fingerprint():
        return []
    return [
        f"warning: the parameter ensemble {found['file']} was calibrated with other model code "
        f"(fingerprint {str(made)[:12]}, now {model_fingerprint()[:12]}); its members may no "
        "longer fit the targets: rerun decouple calibrate (docs/calibration.md)"
    ]


def _draw_members(ens, u, paths: list[str], values: list[dict]) -> list[int]:
    """Pick a member per sample from the ensemble coordinate ``u``; add its values to ``values``.

    Raises:
        BatchError: if a member's value is not a valid value of its parameter.
    """
    from model import parameters as params_mod

    members = [int(m) for m in ens.member_at(u)]
    column = {p: ens.parameters.index(p) for p in paths}
    for k, m in enumerate(members):
        row = ens.members[m]
        for p in paths:
            v = row[column[p]]
            values[k][p] = round(v) if isinstance(params_mod.default_value(p), int) else float(v)
    if paths:
        try:
            params_mod.resolve({p: values[0][p] for p in paths})
        except params_mod.ParameterError as exc:
            raise BatchError(f"parameter ensemble: {exc}") from None
    return members


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
    scenarios,
    union: dict,
    declared_by: dict[str, str],
    fixed: set,
    spec: str,
    ensemble_paths: Iterable[str] = (),
    ensemble: dict | None = None,
) -> tuple[list[str], list[str]]:
    """The sampled ``uncertain`` paths (sorted, without ``--set`` ones) and notes for the user.

    The notes also warn about scenarios that fix a path the ensemble provides.

    Raises:
        BatchError: if nothing is left to sample.
    """
    notes = [
        f"note: --set {path} fixes it: it is not sampled" for path in sorted(fixed & set(union))
    ]
    paths = [p for p in sorted(union) if p not in fixed]
    ensemble_paths = list(ensemble_paths)
    for sc in scenarios:
        for path in ensemble_paths:
            if path in sc.parameters:
                notes.append(
                    f"warning: scenario '{sc.name}' fixes {path} = {sc.parameters[path]!r}, but "
                    f"the batch draws it from the parameter ensemble {ensemble['file']}; the "
                    "drawn value replaces the fixed one"
                )
    if not paths and ensemble is None:
        if not union:
            names = ", ".join(s.name for s in scenarios)
            raise BatchError(
                f"--sample {spec} given, but none of the scenarios ({names}) declares an "
                "'uncertain' block or an 'uncertain_ensemble': nothing to sample (drop --sample)"
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
    if not paths:
        return [{} for _ in range(n)]
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
