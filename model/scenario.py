"""Scenario files: schema, inheritance, overrides and the resolved scenario.

A scenario is a YAML file that states the policy question it answers, where its numbers come
from, and how it differs from its parent (``extends``): parameter overrides by dotted path,
timed policy events, ranges for uncertain parameters that a batch may sample, and the
direction of effect it expects against the baseline. Loading resolves the inheritance chain
into one :class:`Scenario`, validated against the parameter table and the model's vocabulary.
Every problem found is reported at once, each as ``file:line:col: key.path: message`` saying
what was expected and what was found, with the nearest valid name for a misspelling.
``docs/scenarios.md`` is the user's guide.

Merge rules for ``extends`` (the chain is applied root first, each child on top):

* ``extends`` names a scenario by name (``baseline``) or by a relative path into a subfolder
  (``sub/parent``), ``.yaml`` or ``.yml`` optional. It is looked up in the child's folder,
  then in the scenario library (:data:`LIBRARY_DIR`, the project's ``scenarios/``), and may
  not leave either (no absolute path, no ``..`` above it). Only a ``.yaml``/``.yml`` file
  whose top level is a mapping with ``name`` and ``question`` is a parent; anything else is
  refused at the child's ``extends`` line without showing the file's content.
  Chains may be of any length up to :data:`MAX_CHAIN`; a cycle is an error.
* ``name`` and ``question`` are required in every file (a child answers its own question);
  ``name`` must differ from every ancestor's, since results are stored by name.
* ``description``, ``start``, ``end``: the child's value replaces the parent's when given.
* ``parameters``: merged key by key, the child's value wins. A child that fixes a parameter
  an ancestor declared ``uncertain`` removes it from ``uncertain`` (the later statement wins).
* ``uncertain``: merged key by key, the child's distribution wins.
* ``uncertain_ensemble``: a parameter ensemble file (:mod:`model.ensemble`, written by
  ``decouple calibrate``), named relative to the file that declares it; the child's wins.
  A batch draws whole members of it (together with the ``uncertain`` ranges); a path that
  is also in ``uncertain`` is drawn from the range instead.
* ``events``: the parent's events, minus those whose ``id`` is listed in the child's
  ``drop_events``, then the child's own. Events are applied in date order; events of the same
  quarter in file order, parents' first. Event ids must be unique in the resolved scenario.
* ``sources``: appended, duplicates removed.
* ``expects``: the child's own only (an expectation is about one scenario's effect).
* ``explanation``: the child's own only, for the same reason: it says why this scenario's
  result is what it is (the report prints it beside the effect), and a parent's reason
  does not explain a child's different result.
* ``--set PATH=VALUE`` overrides (``decouple run``, ``decouple validate``) are applied last:
  they win over every file and remove PATH from ``uncertain``.

Events dated before ``start`` are applied when the model is built. An event a file dates after
the horizon is an error; a child that sets an earlier ``end`` than its parents drops the
parents' events after it (a short test run of a long scenario).
"""

from __future__ import annotations

import datetime as _dt
import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

import yaml
from annotated_types import Ge, Gt, Le, Lt
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from . import parameters as params_mod
from .calendar import parse_quarter, quarter_ordinal
from .ensemble import EnsembleError, file_sha256, load_ensemble
from .outputs import OUTPUT_COLUMNS
from .scenario_yaml import MAX_BYTES as MAX_FILE_BYTES
from .scenario_yaml import YamlDocument, YamlInputError, dotted_path, load_yaml, parse_yaml
from .taxonomy import ALLIES, CONTROLLABLE, COUNTRIES, LINES, TIERS, UPSTREAM

#: Named entities an event may list or delist: champion firms and buyers.
ENTITIES: tuple[str, ...] = (
    "flagship",
    "phone_maker",
    "pc_server",
    "auto_industrial",
    "consumer_iot",
    "foundry_champion",
    "foundry_second",
    "memory_nand",
    "memory_dram",
    "design_flagship",
    "design_second",
    "eda_champion",
    "litho_champion",
    "tool_champion",
    "materials_champion",
    "packaging_champion",
    "compound_champion",
)
#: Product lines of Chinese firms that events may target (funding, swarm listings).
FIRM_LINES: tuple[str, ...] = ("foundry", "memory", "compound") + UPSTREAM

#: Seed figures that ``sources`` may cite (shared/seed-figures.md).
SEED_FIGURES: tuple[str, ...] = tuple(f"F{i:02d}" for i in range(1, 33))

#: Parameters read only when the model is built: a timed ``set_parameter`` event cannot
#: change them (set them under ``parameters`` instead). Measured by instrumenting a baseline
#: run (tests/test_scenario_library.py keeps this list honest). ``real_firms_per_agent`` is
#: read during the run too, but fixes the swarm's scale at set-up, so it must not change.
INIT_ONLY_PREFIXES: tuple[str, ...] = (
    "allies.initial_alignment",
    "allies.opinion_us_ties_pct",
    "allies.security_dependence",
    "china.talent_reference_year",
    "china.talent_workforce_k_2019",
    "china_firms.champions",
    "china_firms.registered_firms_2014",
    "china_firms.real_firms_per_agent",
    "china_firms.swarm_capacity_usd_bn_per_quarter_2014",
    "china_firms.swarm_line_mix_pct",
    "foreign.fabs_in_china_usd_bn_per_quarter_2014",
    "foreign.supply_share_pct",
    "foreign.us_technology_pct",
    "sourcing.buyers",
    "sourcing.security_max",
    "technology.domestic_tool_coverage_pct",
)

#: The model's data start in 2014Q1; horizons past 2050 extrapolate every path too far.
EARLIEST_START = "2014Q1"
LATEST_END = "2050Q4"
#: Longest ``extends`` chain followed.
MAX_CHAIN = 20
#: Where this process read each ensemble's content, by sha256 (``Scenario.ensemble_path``).
_ENSEMBLE_LOCATIONS: dict[str, Path] = {}
#: The scenario library: ``extends`` looks here after the child's own folder.
LIBRARY_DIR = Path(__file__).resolve().parent.parent / "scenarios"
#: The only file names ``extends`` accepts.
SCENARIO_SUFFIXES = (".yaml", ".yml")
#: The rule ``extends`` follows, said in messages about a refused parent.
EXTENDS_RULE = (
    "'extends' names a scenario of this file's folder or of the library by name "
    "(e.g. baseline) or by a path into a subfolder (e.g. sub/parent), without '.yaml'"
)
#: Longest ``--set`` text echoed in a message; a longer one is cut (and its length said).
MAX_ECHO = 80
#: What a ``--set`` parameter path may look like: names joined by dots.
OVERRIDE_PATH_PATTERN = r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$"

QUARTER_PATTERN = r"^\d{4}Q[1-4]$"
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
EXTENDS_PATTERN = r"^[^\x00-\x1f]+$"

Quarter = Annotated[
    str, Field(pattern=QUARTER_PATTERN, description="calendar quarter, e.g. 2021Q4")
]
Identifier = Annotated[str, Field(pattern=ID_PATTERN, max_length=64)]
Text = Annotated[str, Field(min_length=1, max_length=5000)]
Pct = Annotated[float, Field(ge=0, le=100)]
Share = Annotated[float, Field(ge=0, le=1)]


class _Strict(BaseModel):
    # strict: YAML gives real types, so "5" is not silently a number nor 1 a boolean.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class _Event(_Strict):
    at: Quarter
    id: Identifier | None = None
    note: Text | None = None
    source: Text | None = None


class ControlEvent(_Event):
    """A regime starts covering an item (chips of a tier, tools, EDA/IP, materials).

    ``threshold_nm``: covers the item for nodes at or below this size (none: every node).
    ``target``: ``all`` Chinese buyers, or only ``listed`` entities. ``coverage_pct``: share
    of the item's trade covered; ``licence_pct``: share of covered trade licensed anyway.
    ``foreign_direct_product``: the rule reaches foreign items made with US technology.
    ``enforced_by``: countries that enforce it fully whatever their alignment.
    ``announced``: when the rule became known, if before ``at``: buyers front-load the item
    in between (:mod:`model.stockpile`).
    """

    action: Literal["control"]
    item: Literal[CONTROLLABLE]  # type: ignore[valid-type]
    target: Literal["all", "listed"] = "all"
    threshold_nm: Annotated[float, Field(gt=0, le=1000)] | None = None
    coverage_pct: Annotated[float, Field(gt=0, le=100)] = 100.0
    licence_pct: Annotated[float, Field(ge=0, lt=100)] = 0.0
    foreign_direct_product: bool = False
    enforced_by: list[Literal[COUNTRIES]] = []  # type: ignore[valid-type]
    regime: Literal["us"] = "us"
    announced: Quarter | None = None

    @model_validator(mode="after")
    def _announced_before(self):
        if self.announced is not None and quarter_ordinal(self.announced) > quarter_ordinal(
            self.at
        ):
            raise ValueError(
                f"announced {self.announced} is after the rule takes effect ({self.at}); "
                "a rule is announced at or before 'at'"
            )
        return self


class RelaxControlEvent(_Event):
    """Existing rules on an item are loosened (licences granted) or lifted (licence 100%)."""

    action: Literal["relax_control"]
    item: Literal[CONTROLLABLE + ("all",)] = "all"  # type: ignore[valid-type]
    target: Literal["all", "listed", "any"] = "any"
    licence_pct: Pct
    regime: Literal["us"] = "us"


class ListEntityEvent(_Event):
    """Named entities, or a share of the swarm in some lines, go on (or off) the Entity List."""

    action: Literal["list_entity", "delist_entity"]
    entity: Literal[ENTITIES + ("swarm",)]  # type: ignore[valid-type]
    share_pct: Annotated[float, Field(gt=0, le=100)] = 100.0
    lines: Annotated[list[Literal[FIRM_LINES]], Field(min_length=1)] | None = None  # type: ignore[valid-type]
    regime: Literal["us"] = "us"

    @model_validator(mode="after")
    def _swarm_only_fields(self):
        if self.entity != "swarm" and (self.lines is not None or self.share_pct != 100.0):
            raise ValueError(
                "'lines' and 'share_pct' apply only to entity: swarm, "
                f"not to the named entity '{self.entity}'"
            )
        return self


class ReachEvent(_Event):
    """The regime's extraterritorial reach (foreign direct product rule) changes (0-1)."""

    action: Literal["extraterritorial_reach"]
    reach: Share
    regime: Literal["us"] = "us"


class LeakageEvent(_Event):
    """Enforcement changes: the share of country-wide controlled trade that still leaks."""

    action: Literal["leakage"]
    leakage_pct: Pct
    regime: Literal["us"] = "us"


class AllyAlignmentEvent(_Event):
    """An ally's alignment is forced to a value (0-1), or left to the ally's own rule (``free``)."""

    action: Literal["ally_alignment"]
    ally: Literal[ALLIES]  # type: ignore[valid-type]
    alignment: Share | Literal["free"]


class UsPressureEvent(_Event):
    """US coordination with allies (TTC, Quad, F24) adds (or removes) pressure to align."""

    action: Literal["us_pressure"]
    add: Annotated[float, Field(ge=-5, le=5)]


class FundingProgramEvent(_Event):
    """A Chinese state funding programme (Big Fund phase, whole-nation surge) starts.

    Exactly one of ``amount_usd_bn`` and ``amount_rmb_bn``; paid evenly over ``quarters``.
    ``waste_pct`` is lost before reaching firms; ``lines`` targets part of it.
    """

    action: Literal["funding_program"]
    program: Identifier
    amount_usd_bn: Annotated[float, Field(gt=0, le=5000)] | None = None
    amount_rmb_bn: Annotated[float, Field(gt=0, le=35000)] | None = None
    quarters: Annotated[int, Field(ge=1, le=80)] = 20
    waste_pct: Pct | None = None
    lines: Annotated[list[Literal[FIRM_LINES]], Field(min_length=1)] | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _one_amount(self):
        if (self.amount_usd_bn is None) == (self.amount_rmb_bn is None):
            given = "both" if self.amount_usd_bn is not None else "neither"
            raise ValueError(f"give exactly one of amount_usd_bn or amount_rmb_bn; found {given}")
        return self


class ProcurementEvent(_Event):
    """China changes how hard it pushes buyers to buy domestic chips (logit units)."""

    action: Literal["procurement_preference"]
    preference: Annotated[float, Field(ge=-5, le=10)]


class CountermeasureEvent(_Event):
    """China adds countermeasures (blocking rules F22, mineral export controls)."""

    action: Literal["countermeasure"]
    add: Annotated[float, Field(ge=-1, le=1)]
    minerals: bool = False


class TalentProgramEvent(_Event):
    """A talent programme (F16) or restriction changes the growth of China's chip workforce."""

    action: Literal["talent_program"]
    boost_pct_per_year: Annotated[float, Field(ge=-20, le=20)]


class SetParameterEvent(_Event):
    """Any parameter read during the run changes from this quarter on."""

    action: Literal["set_parameter"]
    path: Annotated[str, Field(min_length=1, max_length=200)]
    value: Any


EVENT_CLASSES: tuple[type[_Event], ...] = (
    ControlEvent,
    RelaxControlEvent,
    ListEntityEvent,
    ReachEvent,
    LeakageEvent,
    AllyAlignmentEvent,
    UsPressureEvent,
    FundingProgramEvent,
    ProcurementEvent,
    CountermeasureEvent,
    TalentProgramEvent,
    SetParameterEvent,
)
Event = Annotated[Union[EVENT_CLASSES], Field(discriminator="action")]  # type: ignore[valid-type]  # noqa: UP007 (a tuple of classes)
#: Event ``action`` values, each handled by :mod:`model.events`.
EVENT_ACTIONS: tuple[str, ...] = tuple(
    a for cls in EVENT_CLASSES for a in get_args(cls.model_fields["action"].annotation)
)
_EVENT_CLASS_BY_ACTION = {
    a: cls for cls in EVENT_CLASSES for a in get_args(cls.model_fields["action"].annotation)
}


class Distribution(_Strict):
    """An uncertain parameter's range for batch sampling.

    ``uniform`` and ``loguniform`` take ``low`` and ``high``; ``triangular`` also ``mode``;
    ``normal`` takes ``mean`` and ``sd`` and optionally ``low``/``high`` to truncate it.
    ``reason`` says why the parameter is uncertain over this range (it does not change
    the draws).
    """

    dist: Literal["uniform", "triangular", "normal", "loguniform"] = "uniform"
    low: float | None = None
    high: float | None = None
    mode: float | None = None
    mean: float | None = None
    sd: Annotated[float, Field(gt=0)] | None = None
    reason: Text | None = None

    @model_validator(mode="after")
    def _bounds(self):
        d = self.dist
        if d == "normal":
            if self.mean is None or self.sd is None:
                raise ValueError("a normal distribution needs mean and sd")
            if self.mode is not None:
                raise ValueError("'mode' applies only to dist: triangular")
            if self.low is not None and self.high is not None and not self.low < self.high:
                raise ValueError(f"low ({self.low}) must be below high ({self.high})")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"a {d} distribution needs low and high")
        if self.mean is not None or self.sd is not None:
            raise ValueError(f"'mean' and 'sd' apply only to dist: normal, not {d}")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if d == "triangular":
            if self.mode is None or not self.low <= self.mode <= self.high:
                raise ValueError(
                    f"a triangular distribution needs mode between low ({self.low}) "
                    f"and high ({self.high}); found {self.mode}"
                )
        elif self.mode is not None:
            raise ValueError(f"'mode' applies only to dist: triangular, not {d}")
        if d == "loguniform" and self.low <= 0:
            raise ValueError(f"a loguniform distribution needs low > 0; found {self.low}")
        return self

    def frozen(self):
        """The frozen :mod:`scipy.stats` distribution this range stands for.

        ``uniform`` and ``loguniform`` on [low, high]; ``triangular`` on [low, high] with its
        mode; ``normal`` with mean and sd, truncated to [low, high] when either is given.
        scipy is imported here, not at module level, so loading scenarios stays fast.
        """
        import numpy as np
        from scipy import stats

        if self.dist == "uniform":
            return stats.uniform(loc=self.low, scale=self.high - self.low)
        if self.dist == "loguniform":
            return stats.loguniform(self.low, self.high)
        if self.dist == "triangular":
            width = self.high - self.low
            return stats.triang((self.mode - self.low) / width, loc=self.low, scale=width)
        if self.low is None and self.high is None:
            return stats.norm(self.mean, self.sd)
        a = -np.inf if self.low is None else (self.low - self.mean) / self.sd
        b = np.inf if self.high is None else (self.high - self.mean) / self.sd
        return stats.truncnorm(a, b, loc=self.mean, scale=self.sd)

    def ppf(self, u):
        """Values at unit-interval points ``u``: the inverse of this distribution's CDF."""
        return self.frozen().ppf(u)


class Expectation(_Strict):
    """A direction of effect a scenario expects against an ancestor (checked by tests).

    The test compares the calendar-year mean of ``output`` in ``year`` with the same
    replicate of ``vs`` and takes the median over replicates of the paired differences.
    """

    output: Literal[OUTPUT_COLUMNS]  # type: ignore[valid-type]
    year: Annotated[int, Field(ge=2014, le=2050)]
    direction: Literal["higher", "lower", "different"]
    vs: Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)] = "baseline"
    note: Text | None = None


class ScenarioFile(_Strict):
    """One scenario file as written (before inheritance is resolved)."""

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]
    question: Text
    description: Text | None = None
    sources: list[Text] = []
    extends: Annotated[str, Field(pattern=EXTENDS_PATTERN, max_length=500)] | None = None
    start: Quarter | None = None
    end: Quarter | None = None
    parameters: dict[str, Any] = {}
    events: list[Event] = []  # type: ignore[valid-type]
    drop_events: list[Identifier] = []
    uncertain: dict[str, Distribution] = {}
    uncertain_ensemble: Annotated[str, Field(pattern=EXTENDS_PATTERN, max_length=500)] | None = None
    expects: list[Expectation] = []
    explanation: Text | None = None


class EnsembleRef(_Strict):
    """A resolved scenario's parameter ensemble file and the sha256 of its content.

    ``file`` is as the declaring scenario names it; the content's sha256 makes a changed
    ensemble change the scenario's hash (so a batch store is not resumed across it).
    """

    file: str
    sha256: str


class Scenario(_Strict):
    """A fully resolved scenario: what the model runs and what the manifest records."""

    name: str
    question: str
    description: str = ""
    sources: list[str] = []
    lineage: list[str] = []
    start: Quarter = "2014Q1"
    end: Quarter = "2035Q4"
    parameters: dict[str, Any] = {}
    events: list[Event] = []  # type: ignore[valid-type]
    uncertain: dict[str, Distribution] = {}
    uncertain_ensemble: EnsembleRef | None = None
    expects: list[Expectation] = []
    #: Why the result is what it is, for readers of the report (None: not given; left out
    #: of the hash then, so scenarios without one keep their hash).
    explanation: str | None = None

    @field_validator("events")
    @classmethod
    def _sorted(cls, events):
        return sorted(events, key=lambda e: quarter_ordinal(e.at))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON/YAML-ready), the form that is hashed and written next to results."""
        return self.model_dump(mode="json", exclude_none=True)

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON of the resolved scenario."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def to_yaml(self) -> str:
        """The resolved scenario as YAML (``resolved/<name>.yaml`` in a run directory)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def resolved_parameters(self, sample: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults with this scenario's overrides and an optional parameter sample applied."""
        return params_mod.resolve({**self.parameters, **(sample or {})})

    @property
    def ensemble_path(self) -> Path | None:
        """Where this scenario's ensemble file is (``None`` without one, or if unknown).

        The location is not part of the scenario (a moved checkout is the same scenario):
        :func:`load_scenario` records where it read each ensemble's content, by sha256, in
        this process. A scenario rebuilt from data (a batch worker's) needs only the values
        drawn from it.
        """
        ref = self.uncertain_ensemble
        return None if ref is None else _ENSEMBLE_LOCATIONS.get(ref.sha256)


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One located problem: ``file:line:col: key.path: message``."""

    file: str
    message: str
    line: int | None = None
    col: int | None = None
    path: str = ""

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}:{self.col}"
        return (
            (f"{where}: " if where else "") + (f"{self.path}: " if self.path else "") + self.message
        )

    @classmethod
    def at(cls, doc: YamlDocument, key_path: tuple, message: str) -> Problem:
        """A problem located at ``key_path`` of ``doc``, so the user is pointed at the line."""
        line, col = doc.position(key_path)
        return cls(str(doc.path), message, line, col, dotted_path(tuple(key_path)))


class ScenarioError(ValueError):
    """Bad scenario input (a file, its parents or a ``--set`` override).

    Attributes:
        problems: one ``file:line:col: key.path: message`` string per problem, in file order.
        details: the same as :class:`Problem` objects.
    """

    def __init__(self, problems: list[str] | list[Problem] | str):
        if isinstance(problems, str):  # e.g. when unpickled from its message
            problems = problems.split("\n")
        self.details = [p if isinstance(p, Problem) else Problem("", str(p)) for p in problems]
        self.problems = [str(p) for p in problems]
        super().__init__("\n".join(self.problems))


def suggest(word: Any, choices) -> str:
    """`` (did you mean 'x'?)`` for the nearest of ``choices`` to ``word``, ignoring case."""
    if not isinstance(word, str) or not word:
        return ""
    options = [str(c) for c in choices]
    lowered = {o.lower(): o for o in options}
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean '{lowered[match[0]]}'?)" if match and lowered[match[0]] != word else ""


def _show(value: Any) -> str:
    """A found value as the user wrote it, briefly."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (_dt.date, _dt.datetime)):
        return f"the date {value.isoformat()}"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, list):
        return f"a list of {len(value)} item{'s' * (len(value) != 1)}"
    if isinstance(value, dict):
        return (
            "a mapping ("
            + ", ".join(map(str, list(value)[:4]))
            + (", ..." if len(value) > 4 else "")
            + ")"
        )
    return type(value).__name__


def _loc_to_path(loc: tuple, data: Any, error_type: str) -> tuple:
    """Keep the parts of a pydantic location that exist in the data (drop union-branch tags)."""
    node, out = data, []
    for i, part in enumerate(loc):
        is_key = isinstance(node, dict) and isinstance(part, str) and part in node
        is_index = isinstance(node, list) and type(part) is int and 0 <= part < len(node)
        if is_key or is_index:
            out.append(part)
            node = node[part]
        elif i == len(loc) - 1 and error_type == "missing" and isinstance(node, dict):
            out.append(part)
        # anything else is a union-branch tag ('control', 'constrained-float', ...)
    return tuple(out)


def _model_at(prefix: tuple, data: Any) -> type[BaseModel] | None:
    """The schema class that validates the mapping at ``prefix`` of a scenario file."""
    if prefix == ():
        return ScenarioFile
    if len(prefix) == 2 and prefix[0] == "events" and isinstance(prefix[1], int):
        try:
            action = data["events"][prefix[1]].get("action")
        except (KeyError, IndexError, TypeError, AttributeError):
            return None
        return _EVENT_CLASS_BY_ACTION.get(action) if isinstance(action, str) else None
    if len(prefix) == 2 and prefix[0] == "uncertain":
        return Distribution
    if len(prefix) == 2 and prefix[0] == "expects" and isinstance(prefix[1], int):
        return Expectation
    return None


def _field_of(path: tuple, data: Any):
    """(model, field name) for the deepest schema field on ``path``, or (None, None)."""
    for cut in range(len(path) - 1, -1, -1):
        model = _model_at(path[:cut], data)
        if model is not None and isinstance(path[cut], str) and path[cut] in model.model_fields:
            return model, path[cut]
    return None, None


def _bounds(annotation, metadata=()) -> dict[str, float]:
    """Numeric bounds (ge/gt/le/lt) declared on a field, looking inside unions."""
    found: dict[str, float] = {}
    for m in metadata:
        if isinstance(m, FieldInfo):
            found.update(_bounds(None, m.metadata))
        for cls, key in ((Ge, "ge"), (Gt, "gt"), (Le, "le"), (Lt, "lt")):
            if isinstance(m, cls):
                found[key] = getattr(m, key)
    for arg in get_args(annotation):
        if hasattr(arg, "__metadata__"):
            found.update(_bounds(None, arg.__metadata__))
        elif get_args(arg):
            found.update(_bounds(arg))
    if hasattr(annotation, "__metadata__"):
        found.update(_bounds(None, annotation.__metadata__))
    return found


def _num(x: float) -> str:
    return f"{x:g}"


def _range_text(b: dict[str, float]) -> str:
    if "ge" in b and "le" in b:
        return f"a number from {_num(b['ge'])} to {_num(b['le'])}"
    lo = (
        f"at least {_num(b['ge'])}"
        if "ge" in b
        else (f"above {_num(b['gt'])}" if "gt" in b else "")
    )
    hi = (
        f"at most {_num(b['le'])}" if "le" in b else (f"below {_num(b['lt'])}" if "lt" in b else "")
    )
    return "a number " + " and ".join(x for x in (lo, hi) if x)


def _patterns(annotation, metadata=()) -> list[str]:
    """Regex patterns declared on a field (to tell a quarter from other text)."""
    found = []
    for m in metadata:
        if isinstance(m, FieldInfo):
            found += _patterns(None, m.metadata)
        pat = getattr(m, "pattern", None)
        if isinstance(pat, str):
            found.append(pat)
    for arg in get_args(annotation):
        found += (
            _patterns(None, getattr(arg, "__metadata__", ()))
            if hasattr(arg, "__metadata__")
            else _patterns(arg)
        )
    return found


def _pattern_text(pattern: str) -> str:
    if pattern == QUARTER_PATTERN:
        return "a quarter written YYYYQn, e.g. 2026Q1"
    if pattern == NAME_PATTERN:
        return (
            "a name of lower-case letters, digits and '_' that starts with a letter, "
            "e.g. tighter_us_controls"
        )
    if pattern == EXTENDS_PATTERN:
        return "a scenario name or a relative path to one, e.g. baseline"
    if pattern == ID_PATTERN:
        return "an id of letters, digits, '_', '.' and '-', e.g. dec24_tools"
    return f"text matching {pattern}"


def _literal_options(e: dict) -> list[str]:
    expected = (e.get("ctx") or {}).get("expected", "")
    return [o.strip().strip("'") for o in re.split(r",| or ", expected) if o.strip()]


def _expected(e: dict, path: tuple, data: Any) -> str | None:
    """The 'expected ...' phrase for a type or value error, or None for other errors."""
    t, ctx = e["type"], e.get("ctx") or {}
    if t == "literal_error":
        options = _literal_options(e)
        if len(options) > 15:
            return (
                f"one of the {len(options)} names listed in docs/outputs.md"
                if "self_sufficiency_pct" in options
                else f"one of {len(options)} names"
            )
        return ("one of " + ", ".join(options)) if len(options) > 1 else f"'{options[0]}'"
    if t in ("float_type", "float_parsing"):
        return "a number"
    if t in ("int_type", "int_parsing", "int_from_float"):
        return "a whole number"
    if t == "finite_number":
        return "a finite number"
    if t == "string_type":
        model, name = _field_of(path, data)
        pats = (
            _patterns(model.model_fields[name].annotation, model.model_fields[name].metadata)
            if model
            else []
        )
        return _pattern_text(pats[0]) if pats else "text"
    if t in ("bool_type", "bool_parsing"):
        return "true or false"
    if t == "list_type":
        return "a list"
    if t in ("dict_type", "model_type", "model_attributes_type"):
        return "a mapping of keys"
    if t in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        model, name = _field_of(path, data)
        b = (
            _bounds(model.model_fields[name].annotation, model.model_fields[name].metadata)
            if model
            else {}
        )
        return _range_text(b or {k: v for k, v in ctx.items() if k in ("ge", "gt", "le", "lt")})
    if t == "string_pattern_mismatch":
        return _pattern_text(ctx.get("pattern", ""))
    if t == "string_too_long":
        return f"text of at most {ctx.get('max_length')} characters"
    if t == "string_too_short":
        return "text (it is empty)"
    if t == "too_short":
        return "a list with at least one item"
    return None


def _hint(found: Any, expected: str) -> str:
    if isinstance(found, bool) and ("text" in expected or "one of" in expected or "'" in expected):
        return "; YAML reads yes/no/on/off/true/false as a boolean: put the text in quotes"
    if isinstance(found, str) and expected.startswith("a list"):
        return "; write a list as [a, b] or as lines starting with '- '"
    if "quarter" in expected:
        if isinstance(found, _dt.date):
            return (
                " (YAML reads it as a date); "
                f"did you mean {found.year}Q{(found.month - 1) // 3 + 1}?"
            )
        if isinstance(found, int) and not isinstance(found, bool) and 1000 <= found <= 9999:
            return f"; name the quarter too, e.g. {found}Q1"
        m = re.search(r"(\d{4})\D{0,3}[Qq]([1-4])\b", found) if isinstance(found, str) else None
        if m and f"{m.group(1)}Q{m.group(2)}" != found:
            return f"; did you mean {m.group(1)}Q{m.group(2)}?"
        return ""
    if (
        isinstance(found, str)
        and (expected in ("a whole number", "true or false") or expected.startswith("a number"))
        and _reads_as_value(found)
    ):
        return "; remove the quotes if it is meant as a value"
    return ""


def _reads_as_value(text: str) -> bool:
    """True if unquoted ``text`` would be a YAML number or boolean (so quotes made it text)."""
    try:
        value = parse_yaml(text, "<value>").data
    except YamlInputError:
        return False
    return isinstance(value, (bool, int, float))


def _message(path: tuple, errs: list[dict], data: Any) -> str:
    """One message for all pydantic errors at one key path (union branches merged)."""
    first = errs[0]
    t = first["type"]
    if t == "extra_forbidden":
        model = _model_at(path[:-1], data)
        allowed = list(model.model_fields) if model else []
        return (
            f"unknown key '{path[-1]}'{suggest(path[-1], allowed)}; "
            f"allowed keys: {', '.join(allowed)}"
        )
    if t == "missing":
        model = _model_at(path[:-1], data)
        if model is ScenarioFile:
            what = "every scenario file"
        elif model is not None and "action" in model.model_fields:
            what = f"a '{data['events'][path[1]]['action']}' event"
        else:
            what = "this entry"
        return f"missing required key '{path[-1]}'; {what} needs one"
    if t == "union_tag_invalid":
        found = (first.get("ctx") or {}).get("tag")
        return (
            f"unknown action '{found}'{suggest(found, EVENT_ACTIONS)}; "
            f"expected one of {', '.join(EVENT_ACTIONS)}"
        )
    if t == "union_tag_not_found":
        return f"an event needs an 'action'; expected one of {', '.join(EVENT_ACTIONS)}"
    if t == "value_error":
        msg = first["msg"].removeprefix("Value error, ")
        return msg
    found = first.get("input")
    expectations, options = [], []
    for e in errs:
        exp = _expected(e, path, data)
        if exp and exp not in expectations:
            expectations.append(exp)
        if e["type"] == "literal_error":
            options += _literal_options(e)
    if expectations:
        expected = " or ".join(expectations)
        return (
            f"expected {expected}, found {_show(found)}"
            f"{suggest(found, options)}{_hint(found, expected)}"
        )
    return f"{first['msg']}, found {_show(found)}"


def _format_pydantic(err: ValidationError, doc: YamlDocument) -> list[Problem]:
    groups: dict[tuple, list[dict]] = {}
    for e in err.errors(include_url=False):
        path = _loc_to_path(e["loc"], doc.data, e["type"])
        groups.setdefault(path, []).append(e)
    return [Problem.at(doc, path, _message(path, errs, doc.data)) for path, errs in groups.items()]


# --------------------------------------------------------------------------------------
# Checks beyond the schema
# --------------------------------------------------------------------------------------


def _is_group(path: str) -> bool:
    head = path + "."
    return any(p.startswith(head) for p in params_mod.defaults())


def _check_parameter(path: str, value: Any) -> str | None:
    """None if ``path = value`` is a valid override, else the message."""
    if _is_group(path):
        if isinstance(value, dict) and value:
            key = next(iter(value))
            example = f"'{path}.{key}: ...'"
        else:
            example = next(p for p in params_mod.defaults() if p.startswith(path + "."))
        return (
            f"'{path}' is a group of parameters, not one; "
            f"write one dotted path per parameter, e.g. {example}"
        )
    if params_mod.known_path(path):
        default = params_mod.default_value(path)
        if not params_mod._same_shape(default, value):
            hint = ""
            if (
                isinstance(value, str)
                and isinstance(default, (bool, int, float))
                and _reads_as_value(value)
            ):
                hint = "; remove the quotes if it is meant as a value"
            return (
                f"parameter '{path}' expects {params_mod._describe(default)}, "
                f"found {_show(value)}{hint}"
            )
    try:
        params_mod.resolve({path: value})
    except params_mod.ParameterError as exc:
        return str(exc)
    return None


def _check_sources(texts: list[tuple[tuple, str]], doc: YamlDocument) -> list[Problem]:
    problems = []
    for key_path, text in texts:
        if not params_mod.SOURCE_PATTERN.match(text.strip()):
            problems.append(
                Problem.at(
                    doc,
                    key_path,
                    "a source must start with a seed figure id (F01-F32), CLM70, TIME22, "
                    "'publication:', 'structure:', 'assumption:' or 'calibrated:'; "
                    f"found {_show(text)}",
                )
            )
            continue
        unknown = [f for f in re.findall(r"\bF\d{2}\b", text) if f not in SEED_FIGURES]
        if unknown:
            problems.append(
                Problem.at(
                    doc,
                    key_path,
                    f"{', '.join(unknown)} is not a seed figure; "
                    "ids run from F01 to F32 (seed-figures.md)",
                )
            )
    return problems


def _check_file(sf: ScenarioFile, doc: YamlDocument) -> list[Problem]:
    """Checks of one file that pydantic cannot do alone: parameters, sources, dates, ids."""
    problems = []
    for path, value in sf.parameters.items():
        msg = _check_parameter(path, value)
        if msg:
            problems.append(Problem.at(doc, ("parameters", path), msg))
    problems += _check_uncertain(sf, doc)
    problems += _check_ensemble(sf, doc)
    sources = [(("sources", i), s) for i, s in enumerate(sf.sources)]
    sources += [(("events", i, "source"), e.source) for i, e in enumerate(sf.events) if e.source]
    problems += _check_sources(sources, doc)
    problems += _check_file_events(sf, doc)
    if sf.start and sf.end and quarter_ordinal(sf.start) > quarter_ordinal(sf.end):
        problems.append(Problem.at(doc, ("end",), f"end {sf.end} is before start {sf.start}"))
    if sf.drop_events and sf.extends is None:
        problems.append(
            Problem.at(
                doc,
                ("drop_events",),
                "drop_events removes a parent's events, but this scenario has no 'extends'",
            )
        )
    return problems


def _check_uncertain(sf: ScenarioFile, doc: YamlDocument) -> list[Problem]:
    """Each ``uncertain`` path names one numeric parameter."""
    problems = []
    for path in sf.uncertain:
        if _is_group(path):
            problems.append(
                Problem.at(
                    doc,
                    ("uncertain", path),
                    f"'{path}' is a group of parameters; name one parameter by its dotted path",
                )
            )
        elif not params_mod.known_path(path):
            problems.append(
                Problem.at(
                    doc,
                    ("uncertain", path),
                    f"unknown parameter '{path}'{suggest(path, params_mod.defaults())}",
                )
            )
        else:
            default = params_mod.default_value(path)
            if isinstance(default, bool) or not isinstance(default, (int, float)):
                problems.append(
                    Problem.at(
                        doc,
                        ("uncertain", path),
                        f"only numeric parameters can be sampled; '{path}' is {_show(default)}",
                    )
                )
            else:
                msg = _sampled_outside_range(path, sf.uncertain[path])
                if msg:
                    problems.append(Problem.at(doc, ("uncertain", path), msg))
    return problems


def ensemble_file(sf: ScenarioFile, doc: YamlDocument) -> Path | None:
    """The ensemble file a scenario file names, relative to the scenario file's folder."""
    if sf.uncertain_ensemble is None:
        return None
    return Path(doc.path).parent / sf.uncertain_ensemble


def _check_ensemble(sf: ScenarioFile, doc: YamlDocument) -> list[Problem]:
    """``uncertain_ensemble`` names a valid ensemble file inside the scenario's folder."""
    if sf.uncertain_ensemble is None:
        return []
    ref = sf.uncertain_ensemble
    norm = ref.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm) or ".." in norm.split("/"):
        return [
            Problem.at(
                doc,
                ("uncertain_ensemble",),
                f"'{ref}': name the ensemble file by a path relative to this file's folder, "
                "without '..' (e.g. ensembles/baseline.yaml)",
            )
        ]
    if not norm.endswith(SCENARIO_SUFFIXES):
        return [
            Problem.at(
                doc,
                ("uncertain_ensemble",),
                f"'{ref}': an ensemble file ends in .yaml or .yml (decouple calibrate writes one)",
            )
        ]
    try:
        load_ensemble(ensemble_file(sf, doc))
    except EnsembleError as exc:
        return [Problem.at(doc, ("uncertain_ensemble",), p) for p in exc.problems]
    return []


def _sampled_outside_range(path: str, dist: Distribution) -> str | None:
    """A message if ``dist`` can draw values outside the parameter's range, else ``None``."""
    rng = params_mod.bounds(path)
    if rng is None:
        return None
    low = float("-inf") if dist.low is None else dist.low
    high = float("inf") if dist.high is None else dist.high
    if rng[0] <= low and high <= rng[1]:
        return None
    fix = "; truncate it with low and high" if dist.dist == "normal" else ""
    return (
        f"'{path}' would be sampled from {low:g} to {high:g}, outside the parameter's range "
        f"[{rng[0]:g}, {rng[1]:g}] (model/parameters.yaml){fix}"
    )


def _check_file_events(sf: ScenarioFile, doc: YamlDocument) -> list[Problem]:
    """Event ids are unique in a file; ``set_parameter`` events name a run-time parameter."""
    problems = []
    seen_ids: dict[str, int] = {}
    for i, ev in enumerate(sf.events):
        if ev.id is not None:
            if ev.id in seen_ids:
                problems.append(
                    Problem.at(
                        doc,
                        ("events", i, "id"),
                        f"duplicate event id '{ev.id}' (also events[{seen_ids[ev.id]}]); "
                        "ids must be unique",
                    )
                )
            seen_ids.setdefault(ev.id, i)
        if isinstance(ev, SetParameterEvent):
            if ev.path.startswith(INIT_ONLY_PREFIXES):
                problems.append(
                    Problem.at(
                        doc,
                        ("events", i, "path"),
                        f"'{ev.path}' is read only when the model is built, "
                        "so a timed event cannot change it; set it under 'parameters' instead",
                    )
                )
                continue
            msg = _check_parameter(ev.path, ev.value)
            if msg:
                problems.append(Problem.at(doc, ("events", i, "path"), msg))
    return problems


def _read_file(
    path: Path, child: tuple[YamlDocument, str] | None = None, ensemble: bool = True
) -> tuple[ScenarioFile | None, YamlDocument | None, list[Problem]]:
    """Parse and validate one file. Returns (file, document, problems).

    Args:
        path: the file, named in messages as given.
        child: for a parent named by ``extends``, the child's document and its ``extends``
            text. The parent must then be a scenario file (:func:`_looks_like_scenario`);
            any other file is refused at the child's ``extends`` line, and nothing of its
            content is shown.
        ensemble: keep and check ``uncertain_ensemble`` (else it is dropped unread).
    """
    try:
        doc = load_yaml(path)
    except YamlInputError as exc:
        if child is not None and not _looks_like_scenario(path, None):
            return None, None, [_not_a_scenario(path, *child)]
        return None, None, [_problem_from_text(p) for p in exc.problems]
    if child is not None and not _looks_like_scenario(path, doc.data):
        return None, None, [_not_a_scenario(path, *child)]
    if not isinstance(doc.data, dict):
        return (
            None,
            doc,
            [
                Problem.at(
                    doc,
                    (),
                    "a scenario file must be a mapping of keys (name: ..., question: ...), "
                    f"found {_show(doc.data)}",
                )
            ],
        )
    try:
        sf = ScenarioFile.model_validate(doc.data)
    except ValidationError as exc:
        return None, doc, _format_pydantic(exc, doc)
    if not ensemble:
        sf = sf.model_copy(update={"uncertain_ensemble": None})
    return sf, doc, _check_file(sf, doc)


def _looks_like_scenario(path: Path, data: Any) -> bool:
    """True if a parent file is a scenario: its top level is a mapping with name and question.

    ``data`` is the parsed document, or None when the file is not valid YAML; then its
    text must have top-level ``name:`` and ``question:`` lines, so that the YAML problems
    of a scenario file are reported while a file of another kind is not shown at all.
    """
    if data is not None:
        return isinstance(data, dict) and {"name", "question"} <= set(data)
    try:
        with path.open("rb") as fh:
            text = fh.read(MAX_FILE_BYTES).decode("utf-8", errors="replace")
    except (OSError, ValueError):
        return False
    return all(re.search(rf"(?m)^{key}[ \t]*:", text) for key in ("name", "question"))


def _not_a_scenario(path: Path, child: YamlDocument, ref: str) -> Problem:
    """The problem of an ``extends`` that names a file that is not a scenario file."""
    return Problem.at(
        child,
        ("extends",),
        f"parent '{ref}' ({path}) is not a scenario file: 'extends' accepts only a YAML "
        "mapping with 'name' and 'question' keys, and does not show other files "
        f"(decouple validate {path} says more)",
    )


def _problem_from_text(text: str) -> Problem:
    m = re.match(r"^(.*?):(\d+):(\d+): (.*)$", text, re.DOTALL)
    if m:
        return Problem(m.group(1), m.group(4), int(m.group(2)), int(m.group(3)))
    file, _, msg = text.partition(": ")
    return Problem(file, msg)


def _locate_parent(
    ref: str, doc: YamlDocument, child_display: Path, child_real: Path
) -> tuple[Path, Path] | Problem:
    """(display path, real path) of the parent file named by ``extends``, or the problem.

    ``ref`` is a name (``baseline``) or a relative path (``sub/parent``), with ``.yaml`` or
    ``.yml`` or without a suffix (then ``.yaml``, then ``.yml`` is tried). It is looked up in
    the child's folder, then in the scenario library (:data:`LIBRARY_DIR`); it may go into a
    subfolder of either but not leave it (no absolute path, no ``..`` above it). Only
    ``.yaml`` and ``.yml`` files are found.
    """
    if ref.startswith(("/", "\\")) or Path(ref).is_absolute():
        return Problem.at(doc, ("extends",), f"'{ref}' is an absolute path; {EXTENDS_RULE}")
    norm = os.path.normpath(ref)
    if norm == ".." or norm.startswith(("../", "..\\")):
        return Problem.at(
            doc, ("extends",), f"'{ref}' leads out of this file's folder; {EXTENDS_RULE}"
        )
    names = [norm] if norm.endswith(SCENARIO_SUFFIXES) else [norm + x for x in SCENARIO_SUFFIXES]
    for base, shown in _extends_bases(child_display, child_real):
        for name in names:
            candidate = base / name
            try:
                if candidate.is_file():
                    return Path(os.path.normpath(shown / name)), candidate.resolve()
            except (OSError, ValueError):  # a name the file system cannot hold
                continue
    return _parent_not_found(ref, norm, doc, child_display, child_real)


def _extends_bases(child_display: Path, child_real: Path) -> list[tuple[Path, Path]]:
    """Where ``extends`` looks, in order: (folder, folder as shown in messages)."""
    bases = [(child_real.parent, child_display.parent)]
    try:
        library = LIBRARY_DIR.resolve()
        if library.is_dir() and library != child_real.parent.resolve():
            bases.append((library, _shown_path(library)))
    except (OSError, ValueError):  # pragma: no cover - an unreadable library folder
        pass
    return bases


def _shown_path(path: Path) -> Path:
    """``path`` relative to the working directory when it is inside it, else absolute."""
    try:
        return path.relative_to(Path.cwd().resolve())
    except (OSError, ValueError):
        return path


def _echo(text: str) -> str:
    """``text`` as echoed in a message: whole if short, else its start and its length."""
    if len(text) <= MAX_ECHO:
        return text
    return f"{text[:MAX_ECHO]}... ({len(text):,} characters)"


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``PATH=VALUE`` (``--set``); the value is read as safe YAML.

    Safe YAML means plain values such as ``1.5``, ``true`` or ``[1, 2]``; a tag
    (``!!python/object``, ``!include``) is refused, never constructed. ``PATH`` is names
    joined by dots. Messages echo the text cut to :data:`MAX_ECHO` characters.

    Raises:
        ScenarioError: no ``=``, an empty or malformed path, or a value that is not safe YAML.
    """
    where = "--set " + (_echo(text) if isinstance(text, str) else repr(text))
    if not isinstance(text, str) or "=" not in text:
        raise ScenarioError(
            [Problem(where, "expected PATH=VALUE, e.g. --set china.procurement_preference=1.2")]
        )
    path, raw = text.split("=", 1)
    path = path.strip()
    if not path:
        raise ScenarioError(
            [
                Problem(
                    where,
                    "the parameter path before '=' is empty; "
                    "e.g. --set china.procurement_preference=1.2",
                )
            ]
        )
    if not re.match(OVERRIDE_PATH_PATTERN, path) or len(path) > 200:
        raise ScenarioError(
            [
                Problem(
                    where,
                    f"'{_echo(path)}' is not a parameter path; a path is names joined by '.', "
                    "e.g. china.procurement_preference (decouple params lists them)",
                )
            ]
        )
    if not raw.strip():
        raise ScenarioError(
            [
                Problem(
                    where,
                    f"no value after '='; e.g. --set {path}=1.2 "
                    f"(quote text: --set '{path}=\"text\"')",
                )
            ]
        )
    try:
        value = parse_yaml(raw, "--set").data
    except YamlInputError as exc:
        detail = (
            exc.problems[0].split(": ", 2)[-1]
            if exc.problems[0].startswith("--set:")
            else exc.problems[0].split(": ", 1)[-1]
        )
        tag = re.match(r"tag '([^']*)' is not allowed", detail)
        if tag:
            detail = (
                f"a YAML tag ('{_echo(tag.group(1))}') is not allowed; a --set value is plain "
                "YAML (a number, true or false, text, a [list] or a {mapping}); "
                f"to pass text that starts with '!', quote it: --set '{path}=\"!...\"'"
            )
            raise ScenarioError([Problem(where, detail)]) from None
        raise ScenarioError([Problem(where, f"the value is not valid YAML: {detail}")]) from None
    return path, value


# Kept for callers of the earlier private name.
_parse_override = parse_override


def load_scenario(
    path: str | Path,
    overrides: list[str] | dict[str, Any] | None = None,
    *,
    ensemble: bool = True,
) -> Scenario:
    """Load a scenario file, resolve its ``extends`` chain and apply ``--set`` overrides.

    Args:
        path: the scenario YAML file; messages name it (and its parents) relative to it.
        overrides: ``["path=value", ...]`` as given to ``--set``, or a ``{path: value}`` mapping.
        ensemble: read and check the ``uncertain_ensemble`` file; ``False`` leaves it out of
            the resolved scenario (``decouple calibrate`` makes the ensemble, so it must
            load a scenario whose ensemble is missing or out of date).

    Returns:
        The resolved :class:`Scenario`.

    Raises:
        ScenarioError: with one located message per problem found in the file, its parents
            and the overrides. No other exception is raised for bad input.
    """
    display = Path(path)
    problems: list[Problem] = []
    chain: list[tuple[ScenarioFile, YamlDocument]] = []
    seen: list[Path] = []
    real = display.resolve() if display.exists() else display
    child: tuple[YamlDocument, str] | None = None
    while True:
        seen.append(real)
        sf, doc, file_problems = _read_file(display, child, ensemble)
        problems += sorted(file_problems, key=lambda p: (p.line or 0, p.col or 0))
        if sf is None or doc is None:
            break
        chain.append((sf, doc))
        if sf.extends is None:
            break
        if len(chain) >= MAX_CHAIN:
            problems.append(
                Problem.at(
                    doc, ("extends",), f"'extends' chain longer than {MAX_CHAIN} files; refused"
                )
            )
            break
        found = _locate_parent(sf.extends, doc, display, real)
        if isinstance(found, Problem):
            problems.append(found)
            break
        child = (doc, sf.extends)
        display, real = found
        if real in seen:
            cycle = " -> ".join(p.name for p in seen + [real])
            problems.append(
                Problem.at(
                    doc,
                    ("extends",),
                    f"'extends' forms a cycle: {cycle}; a scenario cannot inherit from itself",
                )
            )
            break
    if problems:
        raise ScenarioError(problems)
    return _resolve(chain, overrides)


def _parent_not_found(ref: str, norm: str, doc: YamlDocument, display: Path, real: Path) -> Problem:
    """The problem of an ``extends`` that names no scenario file: where it looked, the nearest."""
    bases = _extends_bases(display, real)
    ref_dir, _, ref_stem = norm.rpartition("/")
    prefix = f"{ref_dir}/" if ref_dir else ""
    stems: set[str] = set()
    other_kind = False
    for base, _ in bases:
        here = base / ref_dir
        try:
            other_kind = other_kind or (base / norm).is_file()
            if here.is_dir():
                stems |= {p.stem for p in here.iterdir() if p.suffix in SCENARIO_SUFFIXES}
        except (OSError, ValueError):  # unreadable directory or impossible name
            pass
    if other_kind:  # e.g. extends: notes.txt
        return Problem.at(
            doc,
            ("extends",),
            f"'{ref}' is not a .yaml or .yml file; 'extends' accepts only scenario files",
        )
    if not ref_dir:
        stems.discard(real.stem)
    stem = ref_stem.removesuffix(".yaml").removesuffix(".yml")
    nearest = suggest(prefix + stem, sorted(prefix + x for x in stems))
    target = norm if norm.endswith(SCENARIO_SUFFIXES) else f"{norm}.yaml"
    places = f"{bases[0][1]}/" + "".join(f" nor in the library {b}/" for _, b in bases[1:])
    return Problem.at(
        doc,
        ("extends",),
        f"parent scenario '{ref}' not found (no {target} in {places}){nearest}; {EXTENDS_RULE}",
    )


def _resolve(chain: list[tuple[ScenarioFile, YamlDocument]], overrides) -> Scenario:
    """Merge a valid chain (child first) by the module's merge rules and check the result."""
    chain = list(reversed(chain))
    merged, origin, problems = _merge_chain(chain)
    problems += _apply_overrides(merged, overrides)
    if problems:
        raise ScenarioError(problems)
    try:
        scenario = Scenario.model_validate(merged)
    except ValidationError as exc:  # pragma: no cover - every part was validated above
        raise ScenarioError(
            [f"{chain[-1][1].path}: {e['msg']}" for e in exc.errors(include_url=False)]
        ) from None
    scenario = _trim_to_horizon(scenario, chain, origin)
    problems = _check_resolved(scenario, chain, origin)
    if problems:
        raise ScenarioError(problems)
    return scenario


def _merge_chain(chain) -> tuple[dict[str, Any], dict[int, tuple[YamlDocument, int]], list]:
    """Merge the chain's files (parent first): ``(merged fields, event origins, problems)``.

    Scalars: the last file that sets them wins; parameters and uncertain ranges merge by
    path (a fixed value cancels an inherited range); events accumulate after ``drop_events``;
    sources accumulate; ``expects`` and ``explanation`` are the last file's own.
    """
    problems: list[Problem] = []
    merged: dict[str, Any] = {
        "parameters": {},
        "uncertain": {},
        "events": [],
        "sources": [],
        "expects": [],
    }
    origin: dict[int, tuple[YamlDocument, int]] = {}
    names: list[str] = []
    for sf, doc in chain:
        if sf.name in names:
            problems.append(
                Problem.at(
                    doc,
                    ("name",),
                    f"name '{sf.name}' is already used by a scenario this one extends; "
                    "give it its own name",
                )
            )
        names.append(sf.name)
        for key in ("name", "question", "description", "start", "end"):
            if getattr(sf, key) is not None:
                merged[key] = getattr(sf, key)
        for p in sf.parameters:
            merged["uncertain"].pop(p, None)
        merged["parameters"].update(sf.parameters)
        merged["uncertain"].update(sf.uncertain)
        if sf.uncertain_ensemble is not None:
            where = ensemble_file(sf, doc)
            sha = file_sha256(where)
            _ENSEMBLE_LOCATIONS[sha] = where
            merged["uncertain_ensemble"] = {"file": sf.uncertain_ensemble, "sha256": sha}
        problems += _merge_events(sf, doc, merged, origin)
        merged["sources"].extend(s for s in sf.sources if s not in merged["sources"])
        merged["expects"] = list(sf.expects)
        merged["explanation"] = sf.explanation
    merged["lineage"] = names
    return merged, origin, problems


def _merge_events(sf: ScenarioFile, doc: YamlDocument, merged: dict, origin: dict) -> list:
    """Drop the inherited events ``sf`` names, then add its own; returns the problems."""
    problems = []
    if sf.drop_events:
        known = [e.id for e in merged["events"] if e.id]
        for i, d in enumerate(sf.drop_events):
            if d not in known:
                problems.append(
                    Problem.at(
                        doc,
                        ("drop_events", i),
                        f"no inherited event has id '{d}'{suggest(d, known)}",
                    )
                )
        merged["events"] = [e for e in merged["events"] if e.id not in sf.drop_events]
    for i, ev in enumerate(sf.events):
        origin[id(ev)] = (doc, i)
        if ev.id is not None:
            clash = next((e for e in merged["events"] if e.id == ev.id), None)
            if clash is not None:
                problems.append(
                    Problem.at(
                        doc,
                        ("events", i, "id"),
                        f"event id '{ev.id}' is already used by an inherited event; "
                        f"drop that one first (drop_events: [{ev.id}]) or choose another id",
                    )
                )
    merged["events"].extend(sf.events)
    return problems


def _apply_overrides(merged: dict, overrides) -> list:
    """Apply ``--set`` overrides to the merged parameters; returns their problems."""
    problems: list[Problem] = []
    items: list[tuple[Any, Any, str]] = []
    if isinstance(overrides, dict):
        items = [(p, v, f"--set {_echo(f'{p}={_override_text(v)}')}") for p, v in overrides.items()]
    else:
        for o in overrides or []:
            try:
                items.append((*parse_override(o), f"--set {_echo(o)}"))
            except ScenarioError as exc:
                problems += exc.details
    for p, v, shown in items:
        msg = (
            _check_parameter(p, v) if isinstance(p, str) and p else f"'{p}' is not a parameter path"
        )
        if msg:
            problems.append(Problem(shown, msg))
        else:
            merged["parameters"][p] = v
            merged["uncertain"].pop(p, None)
    return problems


def _trim_to_horizon(scenario: Scenario, chain, origin) -> Scenario:
    """Drop inherited events after a child's earlier ``end``.

    A child that ends the horizon earlier than its parents simply does not reach the
    parents' later events; only events a file dates after its own horizon are an error.
    """
    top_doc = chain[-1][1]
    if chain[-1][0].end is None:
        return scenario
    last = quarter_ordinal(scenario.end)
    kept = [
        e for e in scenario.events if quarter_ordinal(e.at) <= last or origin[id(e)][0] is top_doc
    ]
    if len(kept) != len(scenario.events):
        scenario = scenario.model_copy(update={"events": kept})
    return scenario


def _override_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    except yaml.YAMLError:  # pragma: no cover
        return repr(value)


def _check_resolved(sc: Scenario, chain, origin) -> list[Problem]:
    """Horizon, event dates and expectations of the resolved scenario."""
    problems = []
    top = chain[-1][1]

    def where_key(key: str) -> YamlDocument:
        for sf, doc in reversed(chain):
            if getattr(sf, key) is not None:
                return doc
        return top

    first, last = quarter_ordinal(sc.start), quarter_ordinal(sc.end)
    if first > last:
        problems.append(
            Problem.at(where_key("end"), ("end",), f"end {sc.end} is before start {sc.start}")
        )
    if first < quarter_ordinal(EARLIEST_START):
        problems.append(
            Problem.at(
                where_key("start"),
                ("start",),
                f"start {sc.start} is before {EARLIEST_START}, where the model's data begin",
            )
        )
    if last > quarter_ordinal(LATEST_END):
        problems.append(
            Problem.at(
                where_key("end"),
                ("end",),
                f"end {sc.end} is after {LATEST_END}; "
                "the model's demand and technology paths are not meaningful that far out",
            )
        )
    for ev in sc.events:
        if quarter_ordinal(ev.at) > last:
            doc, i = origin[id(ev)]
            problems.append(
                Problem.at(
                    doc,
                    ("events", i, "at"),
                    f"event '{ev.action}' at {ev.at} is after the horizon's end {sc.end}; "
                    "move it or extend 'end'",
                )
            )
    return problems + _check_expects(sc, top)


def _check_expects(sc: Scenario, top: YamlDocument) -> list[Problem]:
    """Expectations name a year in the horizon and compare with a scenario this one extends."""
    problems = []
    first_year, last_year = parse_quarter(sc.start)[0], parse_quarter(sc.end)[0]
    ancestors = sc.lineage[:-1]
    for i, ex in enumerate(sc.expects):
        if not first_year <= ex.year <= last_year:
            problems.append(
                Problem.at(
                    top,
                    ("expects", i, "year"),
                    f"expected a year from {first_year} to {last_year} (the horizon), "
                    f"found {ex.year}",
                )
            )
        if ex.vs not in ancestors:
            problems.append(
                Problem.at(
                    top,
                    ("expects", i, "vs"),
                    "an expectation compares with a scenario this one extends "
                    f"({', '.join(ancestors) or 'none: add extends'}); found '{ex.vs}'",
                )
            )
    return problems


__all__ = [
    "ENTITIES",
    "EVENT_ACTIONS",
    "EVENT_CLASSES",
    "FIRM_LINES",
    "INIT_ONLY_PREFIXES",
    "LINES",
    "OUTPUT_COLUMNS",
    "TIERS",
    "Distribution",
    "EnsembleRef",
    "Expectation",
    "Problem",
    "Scenario",
    "ScenarioError",
    "ScenarioFile",
    "load_scenario",
    "parse_override",
    "suggest",
]
