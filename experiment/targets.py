"""Calibration targets, priors and settings (``experiment/calibration.yaml``), and the fit.

The file is the one place where the calibration's figures, their tolerances and sources,
and the fitted parameters' prior ranges live (``docs/calibration.md``). This module reads
and checks it (every problem at once, as ``file:line:col: key.path: message``), computes a
run's statistic for each target, and the distance ABC uses: the root mean square over the
targets of ``(simulated - figure) / tolerance`` (for a ``below``/``above`` bound only the
excess counts). A distance of 1 means the run misses its figures by one tolerance on
average.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from model import parameters as params_mod
from model.calendar import parse_quarter
from model.outputs import OUTPUT_COLUMNS
from model.scenario import Distribution, suggest
from model.scenario_yaml import YamlDocument, YamlInputError, load_yaml

#: The calibration file shipped with the project.
CONFIG_FILE = Path(__file__).with_name("calibration.yaml")
#: The model's first calendar year (the targets' years start here at the earliest).
FIRST_YEAR = 2014


class CalibrationError(ValueError):
    """The calibration file, or the options given, are not valid.

    Attributes:
        problems: one message per problem (``file:line:col: key.path: message`` for the file).
    """

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Target(_Strict):
    """One calibration target: a statistic of one output over calendar years, and its figure."""

    output: str
    year: int | None = None
    years: tuple[int, int] | None = None
    aggregate: Literal["mean", "sum"]
    scale_by: str | None = None
    kind: Literal["equal", "below", "above"]
    value: float
    tolerance: Annotated[float, Field(gt=0)]
    source: Annotated[str, Field(min_length=1)]
    tolerance_reason: Annotated[str, Field(min_length=1)]

    @model_validator(mode="after")
    def _one_span(self):
        if (self.year is None) == (self.years is None):
            raise ValueError("give either 'year' or 'years: [first, last]'")
        if self.years is not None and self.years[0] > self.years[1]:
            raise ValueError(f"years {list(self.years)}: first after last")
        return self

    @property
    def span(self) -> tuple[int, int]:
        """``(first, last)`` calendar year, inclusive."""
        return (self.year, self.year) if self.year is not None else self.years

    def z(self, simulated: float) -> float:
        """The miss in tolerances: signed for ``equal``, the excess (>= 0) for a bound."""
        if not math.isfinite(simulated):
            return math.inf
        miss = (simulated - self.value) / self.tolerance
        if self.kind == "below":
            return max(0.0, miss)
        if self.kind == "above":
            return max(0.0, -miss)
        return miss

    def figure_text(self) -> str:
        """``16 +- 2``, ``< 30 (+- 5)`` or ``> 50 (+- 5)`` for tables."""
        v, t = f"{self.value:g}", f"{self.tolerance:g}"
        return {"equal": f"{v} ± {t}", "below": f"< {v} (± {t})", "above": f"> {v} (± {t})"}[
            self.kind
        ]


class Prior(_Strict):
    """A fitted parameter's prior range and why it is that wide."""

    prior: Distribution
    reason: Annotated[str, Field(min_length=1)]


class Settings(_Strict):
    """The defaults of ``decouple calibrate`` (its options override them)."""

    scenario: str
    horizon_end: Annotated[str, Field(pattern=r"^\d{4}Q[1-4]$")]
    population: Annotated[int, Field(ge=2)]
    generations: Annotated[int, Field(ge=1)]
    min_acceptance_rate: Annotated[float, Field(ge=0, le=1)]
    min_epsilon: Annotated[float, Field(ge=0)]
    root_entropy: Annotated[int, Field(ge=0)]


class CalibrationConfig(_Strict):
    """The whole calibration file."""

    targets: Annotated[dict[str, Target], Field(min_length=1)]
    parameters: Annotated[dict[str, Prior], Field(min_length=1)]
    settings: Settings

    def identity(self) -> dict:
        """Targets and priors as plain data: what a resumed calibration must match."""
        return {
            "targets": {k: t.model_dump(mode="json") for k, t in self.targets.items()},
            "parameters": {
                k: p.prior.model_dump(mode="json", exclude_none=True)
                for k, p in self.parameters.items()
            },
        }

    def sha256(self) -> str:
        """sha256 of :meth:`identity` (canonical JSON)."""
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def load_config(path: str | Path = CONFIG_FILE) -> CalibrationConfig:
    """Read and check a calibration file.

    Raises:
        CalibrationError: with every problem, each located in the file.
    """
    path = Path(path)
    try:
        doc = load_yaml(path)
    except YamlInputError as exc:
        raise CalibrationError(exc.problems) from None
    except OSError as exc:
        raise CalibrationError(
            f"{path}: cannot read the calibration file ({exc.strerror})"
        ) from None
    if not isinstance(doc.data, dict):
        raise CalibrationError(f"{path}: expected a mapping with targets, parameters, settings")
    try:
        config = CalibrationConfig.model_validate(doc.data)
    except ValidationError as exc:
        raise CalibrationError(
            [f"{doc.where(tuple(e['loc']))}{e['msg']}" for e in exc.errors(include_url=False)]
        ) from None
    problems = _check(config, doc)
    if problems:
        raise CalibrationError(problems)
    return config


def _numeric_parameter_problem(path: str) -> str | None:
    """Why ``path`` cannot be fitted or scaled by, or ``None``."""
    if not params_mod.known_path(path):
        return f"unknown parameter '{path}' (see `decouple params`)"
    default = params_mod.default_value(path)
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        return f"'{path}' is not a number ({default!r}); only numeric parameters can be fitted"
    return None


def _check(config: CalibrationConfig, doc: YamlDocument) -> list[str]:
    """Known numeric parameters, priors inside their ranges, target years in the horizon."""
    problems = []
    last_year = parse_quarter(config.settings.horizon_end)[0]
    for name, t in config.targets.items():
        if t.output not in OUTPUT_COLUMNS:
            problems.append(
                f"{doc.where(('targets', name, 'output'))}unknown output '{t.output}'"
                f"{suggest(t.output, OUTPUT_COLUMNS)}; the outputs are listed in docs/outputs.md"
            )
        first, last = t.span
        if first < FIRST_YEAR or last > last_year:
            key = "year" if t.year is not None else "years"
            problems.append(
                f"{doc.where(('targets', name, key))}years {first}-{last} are outside the "
                f"calibration horizon {FIRST_YEAR}-{last_year} (settings.horizon_end)"
            )
        if t.scale_by is not None and (msg := _numeric_parameter_problem(t.scale_by)):
            problems.append(f"{doc.where(('targets', name, 'scale_by'))}{msg}")
    for path, p in config.parameters.items():
        if msg := _numeric_parameter_problem(path):
            problems.append(f"{doc.where(('parameters', path))}{msg}")
            continue
        rng = params_mod.bounds(path)
        lo, hi = p.prior.frozen().support()
        if rng is not None and not (rng[0] <= lo and hi <= rng[1]):
            problems.append(
                f"{doc.where(('parameters', path, 'prior'))}the prior spans {lo:g} to {hi:g}, "
                f"outside the parameter's range [{rng[0]:g}, {rng[1]:g}] (model/parameters.yaml)"
            )
    return problems


# --------------------------------------------------------------------------------------
# Statistics and distance
# --------------------------------------------------------------------------------------


def statistic(columns: dict[str, Any], target: Target, parameters: dict[str, Any]) -> float:
    """A target's statistic of one run (``columns`` as :func:`model.run.simulate` returns)."""
    years = np.asarray(columns["year"])
    first, last = target.span
    mask = (years >= first) & (years <= last)
    values = np.asarray(columns[target.output], dtype=float)[mask]
    if not values.size:
        return math.nan
    value = float(values.mean() if target.aggregate == "mean" else values.sum())
    if target.scale_by is not None:
        value *= float(parameters[target.scale_by])
    return value


def statistics(
    columns: dict[str, Any], targets: dict[str, Target], parameters: dict[str, Any]
) -> dict[str, float]:
    """``{target name: statistic}`` of one run."""
    return {name: statistic(columns, t, parameters) for name, t in targets.items()}


def z_scores(stats: dict[str, float], targets: dict[str, Target]) -> dict[str, float]:
    """``{target name: miss in tolerances}`` (see :meth:`Target.z`)."""
    return {name: t.z(float(stats[name])) for name, t in targets.items()}


def distance(stats: dict[str, float], targets: dict[str, Target]) -> float:
    """Root mean square of the targets' misses in tolerances (``inf`` if any is not finite)."""
    z = np.array(list(z_scores(stats, targets).values()), dtype=float)
    if not np.all(np.isfinite(z)):
        return math.inf
    return float(np.sqrt(np.mean(z**2)))
