"""Designs of a global sensitivity study (``decouple sensitivity``) and running them as batches.

A study screens every sampleable numeric parameter with the method of Morris, then
estimates Sobol' indices of the screened top set with Saltelli's design (both from SALib);
see ``docs/sensitivity.md``. This module owns the *inputs*:

* the **factor space** (:func:`factor_space`): every numeric parameter of
  ``model/parameters.yaml`` (scalars, and each number of a mapping of numbers) except
  calendar dates, booleans and what the study's scenarios set differently; each factor
  varies over the scenarios' ``uncertain`` distribution when one is declared, else
  uniformly over ``value x (1 -/+ spread)`` clipped to the parameter's range (the +/-30%
  of ``benchmarks/levers.py``); a default of 0 has no relative range and is left out;
* the **designs** in the unit cube (:func:`morris_points`, :func:`saltelli_points`, both
  SALib samplers) and their mapping to parameter values through each factor's inverse CDF
  (:func:`sample_design`), as the :class:`~experiment.sampling.SampleDesign` a batch runs;
* **running** a design (:func:`run_stage`): the batch engine runs the design's points
  (every scenario x seed x point, common random numbers and common points across
  scenarios), into a resumable run store of its own;
* the study's **manifest** (:func:`study_identity`, :func:`open_study`), which a rerun
  of the same command must match.

Index estimation, screening and figures are in :mod:`analysis.sensitivity`; the command
that strings the stages together is :mod:`decouple.sensitivity`.

Only the standard library is imported at module level (numpy, SALib, the model inside the
functions): the CLI imports this module at start-up.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import provenance, store
from .errors import BatchError

#: The study's manifest kind (``manifest.json`` of a sensitivity store).
KIND = "sensitivity"

#: The stages' run stores inside a sensitivity store.
MORRIS_DIR = "morris"
SOBOL_DIR = "sobol"

#: Relative half-width of a factor's range when no ``uncertain`` distribution is declared.
DEFAULT_SPREAD = 0.3

#: Parameters that are dates (when a figure applies), not quantities: never factors.
CALENDAR_DATES = ("reference_year", "start_year", "pace_break_year")

#: Morris defaults: trajectories r and grid levels p (r (D + 1) points).
DEFAULT_TRAJECTORIES = 4
DEFAULT_LEVELS = 4

#: Sobol' defaults: the screened top set k and Saltelli's base sample N (N (k + 2) points).
DEFAULT_TOP = 8
DEFAULT_BASE_SAMPLES = 64

#: Replicate seeds per design point (all points share them: common random numbers).
DEFAULT_SEEDS = 1


@dataclass(frozen=True)
class Factor:
    """One parameter a study varies.

    Attributes:
        path: the dotted parameter path (a leaf, or ``leaf.key`` in a mapping).
        center: the first scenario's value (the nominal value).
        distribution: a :class:`~model.scenario.Distribution` the unit interval maps to.
        integer: True if the parameter is an integer (sampled values are rounded).
        origin: ``"uncertain"`` (declared by a scenario) or ``"spread"`` (value +/- spread).
    """

    path: str
    center: float
    distribution: Any
    integer: bool
    origin: str


# --------------------------------------------------------------------------------------
# The factor space
# --------------------------------------------------------------------------------------


def numeric_paths() -> list[str]:
    """Every numeric parameter path: scalars and each number of a mapping (not dates, bools)."""
    from model import parameters as params_mod

    out = []
    for p in params_mod.defaults().values():
        if p.path.endswith(CALENDAR_DATES):
            continue
        if _is_number(p.value):
            out.append(p.path)
        elif isinstance(p.value, dict):
            out.extend(f"{p.path}.{k}" for k, v in p.value.items() if _is_number(v))
    return out


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _value_at(resolved: dict, path: str):
    """A path's value in ``resolve()`` output (a leaf, or a key inside a mapping leaf)."""
    if path in resolved:
        return resolved[path]
    parent, _, key = path.rpartition(".")
    return resolved[parent][key]


def factor_space(
    scenarios: Sequence,
    spread: float = DEFAULT_SPREAD,
    fixed: Sequence[str] = (),
    patterns: Sequence[str] = (),
) -> tuple[list[Factor], list[str]]:
    """The factors a study over ``scenarios`` varies, and notes on what was left out.

    Args:
        scenarios: resolved scenarios; the first is the baseline whose values are the
            centres.
        spread: relative half-width of a factor without an ``uncertain`` distribution.
        fixed: paths fixed with ``--set`` (left out).
        patterns: if given, only paths matching one of these shell patterns
            (``demand.*``) are factors.

    Returns:
        ``(factors sorted by path, notes)``.

    Raises:
        BatchError: if ``spread`` is not in (0, 1), if two scenarios declare one path with
            different distributions, if a declared path is not a numeric parameter, if a
            factor's range end is not a valid value, or if no factor is left.
    """
    from model import parameters as params_mod
    from model.scenario import Distribution

    from .sampling import _union_of_uncertain

    if not 0 < spread < 1:
        raise BatchError(
            f"--spread must be between 0 and 1 (a fraction: 0.3 = +/-30%), got {spread}"
        )
    union, declared_by = _union_of_uncertain(scenarios)
    resolved = [sc.resolved_parameters() for sc in scenarios]
    fixed = set(fixed)
    paths = sorted(set(numeric_paths()) | set(union))
    if patterns:
        paths = [p for p in paths if any(fnmatch.fnmatchcase(p, pat) for pat in patterns)]
        if not paths:
            raise BatchError(
                f"--parameters {' '.join(patterns)}: no numeric parameter matches "
                "(see `decouple params`)"
            )
    factors, left_out = [], {"fixed": [], "lever": [], "zero": [], "flat": []}
    for path in paths:
        if path in fixed:
            left_out["fixed"].append(path)
            continue
        values = [_value_at(r, path) for r in resolved]
        if any(v != values[0] for v in values[1:]):
            left_out["lever"].append(path)
            continue
        center = values[0]
        integer = isinstance(params_mod.default_value(path), int)
        if path in union:
            factors.append(Factor(path, float(center), union[path], integer, "uncertain"))
            continue
        if center == 0:
            left_out["zero"].append(path)
            continue
        low, high = sorted((center * (1 - spread), center * (1 + spread)))
        rng = params_mod.bounds(path)
        if rng is not None:
            low, high = max(low, rng[0]), min(high, rng[1])
        if integer:
            low, high = float(round(low)), float(round(high))
        if not low < high:
            left_out["flat"].append(path)
            continue
        dist = Distribution(dist="uniform", low=float(low), high=float(high))
        factors.append(Factor(path, float(center), dist, integer, "spread"))
    _check_ends(scenarios[0], factors)
    if not factors:
        raise BatchError("no parameter is left to vary (see the notes above)")
    return factors, _notes(left_out, declared_by)


def _check_ends(scenario, factors: list[Factor]) -> None:
    """Refuse a factor whose range ends are not valid values of the parameter.

    Raises:
        BatchError: naming each such factor and the parameter's own complaint.
    """
    from model import parameters as params_mod

    problems = []
    for f in factors:
        for u in (0.0, 1.0):
            value = _unit_to_value(f, u)
            try:
                params_mod.resolve({**scenario.parameters, f.path: value})
            except params_mod.ParameterError as exc:
                problems.append(f"factor '{f.path}' ({f.origin}): {exc}")
                break
    if problems:
        raise BatchError(problems)


def _notes(left_out: dict, declared_by: dict) -> list[str]:
    """One note per reason a parameter is left out."""
    why = {
        "fixed": "fixed by --set",
        "lever": "set differently by the scenarios (what they compare, not an uncertainty)",
        "zero": "default 0 has no relative range; declare an 'uncertain' range to vary it",
        "flat": "its range is a single value (clipped, or an integer rounding to one value)",
    }
    notes = []
    for reason, paths in left_out.items():
        if paths:
            shown = ", ".join(paths[:6]) + (
                f", ... ({len(paths)} in all)" if len(paths) > 6 else ""
            )
            notes.append(f"note: left out ({why[reason]}): {shown}")
    return notes


def factor_table(factors: Sequence[Factor]) -> list[dict]:
    """The factors as rows for the manifest and docs: path, centre, range, origin."""
    return [
        {
            "path": f.path,
            "center": f.center,
            "integer": f.integer,
            "origin": f.origin,
            "distribution": f.distribution.model_dump(mode="json", exclude_none=True),
        }
        for f in factors
    ]


# --------------------------------------------------------------------------------------
# Designs
# --------------------------------------------------------------------------------------


def unit_problem(names: Sequence[str]) -> dict:
    """A SALib problem over the unit cube: values are mapped to parameters afterwards."""
    return {"num_vars": len(names), "names": list(names), "bounds": [[0.0, 1.0]] * len(names)}


def morris_points(d: int, trajectories: int, levels: int, seed: int):
    """``trajectories x (d + 1)`` unit-cube points of Morris trajectories (SALib, seeded).

    Raises:
        BatchError: for fewer than 2 trajectories, or an odd or too small number of levels.
    """
    from SALib.sample import morris

    if trajectories < 2:
        raise BatchError(f"--trajectories must be at least 2, got {trajectories}")
    if levels < 2 or levels % 2:
        raise BatchError(f"--levels must be an even number of at least 2, got {levels}")
    names = [f"x{i}" for i in range(d)]
    return morris.sample(unit_problem(names), trajectories, num_levels=levels, seed=seed)


def saltelli_points(d: int, base_samples: int, seed: int):
    """``base_samples x (d + 2)`` unit-cube points of Saltelli's design (no second order).

    Raises:
        BatchError: unless ``base_samples`` is a power of two (the Sobol' sequence's balance).
    """
    from SALib.sample import sobol

    n = base_samples
    if n < 2 or n & (n - 1):
        raise BatchError(f"--base-samples must be a power of two (e.g. 64), got {n}")
    names = [f"x{i}" for i in range(d)]
    return sobol.sample(unit_problem(names), n, calc_second_order=False, scramble=True, seed=seed)


def _unit_to_value(factor: Factor, u: float) -> float | int:
    """One unit-interval coordinate mapped through the factor's inverse CDF (rounded for ints)."""
    from .sampling import ppf

    value = float(ppf(factor.distribution, [u])[0])
    return round(value) if factor.integer else value


def sample_design(method: str, factors: Sequence[Factor], points, seed: int):
    """A :class:`~experiment.sampling.SampleDesign` of unit-cube ``points`` over ``factors``.

    Point *k*'s coordinate *j* goes through factor *j*'s inverse CDF
    (:func:`experiment.sampling.ppf`) and is rounded for integer parameters.
    """
    from .sampling import SampleDesign, ppf

    columns = []
    for j, f in enumerate(factors):
        vals = ppf(f.distribution, points[:, j])
        columns.append([round(float(v)) for v in vals] if f.integer else [float(v) for v in vals])
    values = [{f.path: col[k] for f, col in zip(factors, columns)} for k in range(len(points))]
    dists = {f.path: f.distribution for f in factors}
    return SampleDesign(method, len(points), seed, dists, values)


# --------------------------------------------------------------------------------------
# Running a design
# --------------------------------------------------------------------------------------


def run_stage(
    out: Path,
    scenario_paths: Sequence[str],
    design,
    *,
    seeds: int,
    root_entropy: int,
    overrides: Sequence[str] = (),
    jobs: int = 1,
    progress: bool = True,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
):
    """Run every scenario x seed x design point into the batch store ``out`` (or resume it).

    The batch engine does the work: process pool, shards written as runs finish, resume of
    an interrupted stage, failures recorded. Every point runs with the same replicate
    seeds in every scenario (common random numbers and common parameter draws).

    Returns:
        The :class:`~experiment.batch.BatchResult`.
    """
    from .batch import BatchOptions, execute

    options = BatchOptions(
        scenario_paths,
        seeds,
        overrides=overrides,
        root_entropy=root_entropy,
        jobs=jobs,
        out=out,
        progress=progress,
        command=command,
        sample=None,
        design=design,
    )
    return execute(options, log)


# --------------------------------------------------------------------------------------
# The study's manifest
# --------------------------------------------------------------------------------------


def study_identity(
    scenarios: Sequence,
    factors: Sequence[Factor],
    settings: dict,
) -> dict:
    """What a rerun of a study must match: scenarios, factors and the design settings."""
    return {
        "scenarios": {sc.name: sc.hash for sc in scenarios},
        "factors": factor_table(factors),
        "settings": settings,
    }


def open_study(out: Path, identity: dict, command: str) -> dict:
    """Create the sensitivity store ``out`` with its manifest, or check and reopen it.

    Returns:
        The manifest (new, or the stored one with this command appended to ``resumed``).

    Raises:
        BatchError: if ``out`` is not a sensitivity store, or holds another study (listing
            what differs).
    """
    out = Path(out)
    mpath = out / store.MANIFEST
    if mpath.is_file():
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BatchError(
                f"{mpath}: cannot read the manifest ({exc}); choose another --out"
            ) from None
        if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
            kind = manifest.get("kind") if isinstance(manifest, dict) else None
            raise BatchError(
                f"--out {out}: holds a '{kind}' store, not a sensitivity study; choose "
                "another --out (results are never overwritten)"
            )
        diffs = _identity_diffs(manifest, identity)
        if diffs:
            raise BatchError(
                [f"--out {out} holds a different sensitivity study; refusing to mix results:"]
                + [f"  {d}" for d in diffs]
                + [f"repeat its command ({manifest.get('command')}) or choose another --out"]
            )
        manifest.setdefault("resumed", []).append({"time": provenance.now(), "command": command})
        write_manifest(out, manifest)
        return manifest
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BatchError(
            f"--out {out}: exists and is not a sensitivity store (no {store.MANIFEST}); "
            "choose another --out"
        )
    store.make_store_dir(out)
    manifest = {
        "kind": KIND,
        "command": command,
        "created": provenance.now(),
        "finished": None,
        "model_version": provenance.model_version(),
        "model_fingerprint": provenance.model_fingerprint(),
        "git": provenance.git_state(),
        "packages": provenance.package_versions(),
        **identity,
        "screened": None,
        "resumed": [],
    }
    write_manifest(out, manifest)
    return manifest


def _identity_diffs(manifest: dict, identity: dict) -> list[str]:
    """What differs between a stored study and the one asked for, for the message."""
    diffs = []
    old_sc, new_sc = manifest.get("scenarios") or {}, identity["scenarios"]
    if old_sc != new_sc:
        diffs.append(
            f"scenarios: {sorted(old_sc)} in the store, {sorted(new_sc)} asked for (or a "
            "scenario file changed)"
        )
    old_s, new_s = manifest.get("settings") or {}, identity["settings"]
    for key in sorted(set(old_s) | set(new_s)):
        if old_s.get(key) != new_s.get(key):
            diffs.append(f"{key}: {old_s.get(key)!r} in the store, {new_s.get(key)!r} asked for")
    if manifest.get("factors") != identity["factors"]:
        old = {f["path"] for f in manifest.get("factors") or []}
        new = {f["path"] for f in identity["factors"]}
        diffs.append(
            f"factors: {len(old)} in the store, {len(new)} asked for"
            + (
                f" (added {sorted(new - old)[:4]}, removed {sorted(old - new)[:4]})"
                if old != new
                else " (their ranges differ)"
            )
        )
    return diffs


def write_manifest(out: Path, manifest: dict) -> None:
    """Write the study's ``manifest.json`` atomically."""
    store.atomic_write_text(Path(out) / store.MANIFEST, json.dumps(manifest, indent=2, default=str))
