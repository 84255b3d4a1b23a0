"""Scenario files: schema, inheritance, overrides and the resolved scenario.

A scenario is a YAML file that states the policy question it answers and how it differs
from its parent (``extends``): parameter overrides by dotted path, timed policy events, and
ranges for uncertain parameters that a batch may sample. Loading resolves the inheritance
chain into one :class:`Scenario`, validated against the parameter table and the model's
vocabulary; every problem is reported with file, line, column and key path.

Merge rules for ``extends`` (parent first, then child):

* ``name``, ``question``, ``description``, ``start``, ``end``: the child's value replaces
  the parent's when given.
* ``parameters`` and ``uncertain``: merged key by key; the child's key wins.
* ``events``: appended after the parent's; ``drop_events`` removes parent events by ``id``.
* ``sources``: appended, duplicates removed. ``expects``: the child's own only.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import parameters as params_mod
from .calendar import parse_quarter, quarter_ordinal
from .scenario_yaml import YamlDocument, YamlInputError, load_yaml
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
FIRM_LINES: tuple[str, ...] = ("foundry", "memory", "compound") + UPSTREAM

Quarter = Annotated[str, Field(pattern=r"^\d{4}Q[1-4]$", description="calendar quarter, e.g. 2021Q4")]
Pct = Annotated[float, Field(ge=0, le=100)]
Share = Annotated[float, Field(ge=0, le=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Event(_Strict):
    at: Quarter
    id: str | None = None
    note: str | None = None
    source: str | None = None


class ControlEvent(_Event):
    """A regime starts covering an item (chips of a tier, tools, EDA/IP, materials)."""

    action: Literal["control"]
    item: Literal[CONTROLLABLE]  # type: ignore[valid-type]
    target: Literal["all", "listed"] = "all"
    threshold_nm: Annotated[float, Field(gt=0, le=1000)] | None = None
    coverage_pct: Pct = 100.0
    licence_pct: Pct = 0.0
    foreign_direct_product: bool = False
    enforced_by: list[Literal[COUNTRIES]] = []  # type: ignore[valid-type]
    regime: Literal["us"] = "us"


class RelaxControlEvent(_Event):
    """Existing rules on an item are loosened (licences granted) or lifted (licence 100%)."""

    action: Literal["relax_control"]
    item: Literal[CONTROLLABLE] | Literal["all"] = "all"  # type: ignore[valid-type]
    target: Literal["all", "listed", "any"] = "any"
    licence_pct: Pct
    regime: Literal["us"] = "us"


class ListEntityEvent(_Event):
    """Named entities, or a share of the swarm in some lines, go on the Entity List."""

    action: Literal["list_entity", "delist_entity"]
    entity: Literal[ENTITIES + ("swarm",)]  # type: ignore[valid-type]
    share_pct: Pct = 100.0
    lines: list[Literal[FIRM_LINES]] | None = None  # type: ignore[valid-type]
    regime: Literal["us"] = "us"

    @model_validator(mode="after")
    def _swarm_only_fields(self):
        if self.entity != "swarm" and (self.lines is not None or self.share_pct != 100.0):
            raise ValueError("'lines' and 'share_pct' apply only to entity: swarm")
        return self


class ReachEvent(_Event):
    """The regime's extraterritorial reach (foreign direct product rule) changes."""

    action: Literal["extraterritorial_reach"]
    reach: Share
    regime: Literal["us"] = "us"


class LeakageEvent(_Event):
    """Enforcement changes: the share of country-wide controlled trade that still leaks."""

    action: Literal["leakage"]
    leakage_pct: Pct
    regime: Literal["us"] = "us"


class AllyAlignmentEvent(_Event):
    """An ally's alignment is forced to a value, or left to the ally's own choice (``free``)."""

    action: Literal["ally_alignment"]
    ally: Literal[ALLIES]  # type: ignore[valid-type]
    alignment: Share | Literal["free"]


class UsPressureEvent(_Event):
    """US coordination with allies (TTC, Quad, F24) adds pressure on them to align."""

    action: Literal["us_pressure"]
    add: Annotated[float, Field(ge=-5, le=5)]


class FundingProgramEvent(_Event):
    """A Chinese state funding programme (Big Fund phase, whole-nation surge) starts."""

    action: Literal["funding_program"]
    program: str
    amount_usd_bn: Annotated[float, Field(ge=0, le=5000)] | None = None
    amount_rmb_bn: Annotated[float, Field(ge=0, le=35000)] | None = None
    quarters: Annotated[int, Field(ge=1, le=80)] = 20
    waste_pct: Pct | None = None
    lines: list[Literal[FIRM_LINES]] | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _one_amount(self):
        if (self.amount_usd_bn is None) == (self.amount_rmb_bn is None):
            raise ValueError("give exactly one of amount_usd_bn or amount_rmb_bn")
        return self


class ProcurementEvent(_Event):
    """China changes how hard it pushes buyers to buy domestic chips."""

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
    path: str
    value: Any


Event = Annotated[
    Union[
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
    ],
    Field(discriminator="action"),
]
EVENT_ACTIONS: tuple[str, ...] = (
    "control",
    "relax_control",
    "list_entity",
    "delist_entity",
    "extraterritorial_reach",
    "leakage",
    "ally_alignment",
    "us_pressure",
    "funding_program",
    "procurement_preference",
    "countermeasure",
    "talent_program",
    "set_parameter",
)

#: Parameters read only when the model is built: a timed event cannot change them.
INIT_ONLY_PREFIXES: tuple[str, ...] = (
    "china_firms.champions",
    "china_firms.swarm_agents_2014",
    "china_firms.swarm_capacity_usd_bn_per_quarter_2014",
    "china_firms.real_firms_per_agent",
    "foreign.fabs_in_china_usd_bn_per_quarter_2014",
    "allies.initial_alignment",
    "sourcing.buyers",
)


class Distribution(_Strict):
    """An uncertain parameter's range for batch sampling."""

    dist: Literal["uniform", "triangular", "normal", "loguniform"] = "uniform"
    low: float | None = None
    high: float | None = None
    mode: float | None = None
    mean: float | None = None
    sd: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _bounds(self):
        if self.dist == "normal":
            if self.mean is None or self.sd is None:
                raise ValueError("a normal distribution needs mean and sd")
        else:
            if self.low is None or self.high is None:
                raise ValueError(f"a {self.dist} distribution needs low and high")
            if not self.low < self.high:
                raise ValueError(f"low ({self.low}) must be below high ({self.high})")
            if self.dist == "triangular" and (self.mode is None or not self.low <= self.mode <= self.high):
                raise ValueError("a triangular distribution needs mode between low and high")
            if self.dist == "loguniform" and self.low <= 0:
                raise ValueError("a loguniform distribution needs low > 0")
        return self


class Expectation(_Strict):
    """A direction of effect a scenario expects against the baseline (checked by tests)."""

    output: str
    year: Annotated[int, Field(ge=2014, le=2100)]
    direction: Literal["higher", "lower", "different"]
    vs: str = "baseline"


class ScenarioFile(_Strict):
    """One scenario file as written (before inheritance is resolved)."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
    question: str | None = None
    description: str | None = None
    sources: list[str] = []
    extends: str | None = None
    start: Quarter | None = None
    end: Quarter | None = None
    parameters: dict[str, Any] = {}
    events: list[Event] = []
    drop_events: list[str] = []
    uncertain: dict[str, Distribution] = {}
    expects: list[Expectation] = []


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
    events: list[Event] = []
    uncertain: dict[str, Distribution] = {}
    expects: list[Expectation] = []

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
        """The resolved scenario as YAML (``resolved.yaml`` in a run directory)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def resolved_parameters(self, sample: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults with this scenario's overrides and an optional parameter sample applied."""
        return params_mod.resolve({**self.parameters, **(sample or {})})


class ScenarioError(ValueError):
    """Bad scenario input. ``problems`` holds one ``file:line:col: path: message`` per error."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _loc_to_path(loc: tuple) -> tuple:
    """Drop pydantic's union-branch tags (the ``action`` value) from an error location."""
    out = []
    for part in loc:
        if isinstance(part, str) and part in EVENT_ACTIONS and out and isinstance(out[-1], int):
            continue
        out.append(part)
    return tuple(out)


def _format_pydantic(err: ValidationError, doc: YamlDocument) -> list[str]:
    problems = []
    for e in err.errors():
        path = _loc_to_path(e["loc"])
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(path[:-1], doc.data)
            msg = f"unknown key '{path[-1]}'{params_mod._suggest(str(path[-1]), allowed)}; allowed: {', '.join(allowed)}"
        elif e["type"] in ("literal_error", "enum"):
            expected = e.get("ctx", {}).get("expected", "")
            found = e.get("input")
            options = [o.strip().strip("'") for o in expected.replace(" or ", ", ").split(",")]
            msg = f"'{found}' is not allowed{params_mod._suggest(str(found), options)}; expected {expected}"
        elif e["type"] == "union_tag_invalid":
            found = e.get("ctx", {}).get("tag")
            msg = f"unknown action '{found}'{params_mod._suggest(str(found), EVENT_ACTIONS)}; allowed: {', '.join(EVENT_ACTIONS)}"
        elif e["type"] == "union_tag_not_found":
            msg = f"an event needs an 'action'; allowed: {', '.join(EVENT_ACTIONS)}"
        elif "input" in e and e["type"] not in ("missing",):
            msg = f"{msg}, found {e['input']!r}"
        problems.append(doc.where(path) + msg)
    return problems


def _allowed_keys(path: tuple, data: Any) -> list[str]:
    """Allowed keys at a mapping location, for 'did you mean' hints."""
    if len(path) == 0:
        return list(ScenarioFile.model_fields)
    if path[0] == "events" and len(path) == 2:
        node = data.get("events", [])[path[1]] if isinstance(data, dict) else {}
        action = node.get("action") if isinstance(node, dict) else None
        for cls in Event.__origin__.__args__:  # type: ignore[attr-defined]
            if action in cls.model_fields["action"].annotation.__args__:
                return list(cls.model_fields)
    if path[0] == "uncertain":
        return list(Distribution.model_fields)
    if path[0] == "expects":
        return list(Expectation.model_fields)
    return []


def _check_semantics(sf: ScenarioFile, doc: YamlDocument) -> list[str]:
    """Checks pydantic cannot do alone: parameter paths and types, horizon, event dates."""
    problems = []
    for path, value in sf.parameters.items():
        try:
            params_mod.resolve({path: value})
        except params_mod.ParameterError as exc:
            problems.append(doc.where(("parameters", path)) + str(exc))
    for path in sf.uncertain:
        if not params_mod.known_path(path):
            problems.append(
                doc.where(("uncertain", path))
                + f"unknown parameter '{path}'{params_mod._suggest(path, params_mod.defaults())}"
            )
    for i, ev in enumerate(sf.events):
        if isinstance(ev, SetParameterEvent):
            if ev.path.startswith(INIT_ONLY_PREFIXES):
                problems.append(
                    doc.where(("events", i, "path"))
                    + f"'{ev.path}' is read only when the model is built; set it under 'parameters' instead"
                )
                continue
            try:
                params_mod.resolve({ev.path: ev.value})
            except params_mod.ParameterError as exc:
                problems.append(doc.where(("events", i, "path")) + str(exc))
    if sf.start and sf.end and quarter_ordinal(sf.start) > quarter_ordinal(sf.end):
        problems.append(doc.where(("end",)) + f"end {sf.end} is before start {sf.start}")
    return problems


def _check_horizon(sc: Scenario, docs: dict[str, YamlDocument], origin: dict[int, str]) -> list[str]:
    problems = []
    first, last = quarter_ordinal(sc.start), quarter_ordinal(sc.end)
    if first > last:
        problems.append(f"{sc.name}: end {sc.end} is before start {sc.start}")
    if parse_quarter(sc.start)[0] < 2014:
        problems.append(f"{sc.name}: start {sc.start} is before 2014Q1, where the model's data begin")
    for ev in sc.events:
        if quarter_ordinal(ev.at) > last:
            file, idx = origin.get(id(ev), (sc.name, None))
            where = docs[file].where(("events", idx, "at")) if file in docs else f"{file}: "
            problems.append(where + f"event '{ev.action}' at {ev.at} is after the horizon's end {sc.end}")
    return problems


def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ScenarioError([f"--set {text}: expected PATH=VALUE, e.g. china.procurement_preference=1.2"])
    path, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        value = raw
    return path.strip(), value


def _read_file(path: Path) -> tuple[ScenarioFile, YamlDocument]:
    try:
        doc = load_yaml(path)
    except YamlInputError as exc:
        raise ScenarioError(exc.problems) from None
    if not isinstance(doc.data, dict):
        raise ScenarioError([doc.where(()) + "a scenario file must be a mapping of keys (name, question, ...)"])
    try:
        sf = ScenarioFile.model_validate(doc.data)
    except ValidationError as exc:
        raise ScenarioError(_format_pydantic(exc, doc)) from None
    problems = _check_semantics(sf, doc)
    if problems:
        raise ScenarioError(problems)
    return sf, doc


def _find_parent(ref: str, child: Path) -> Path:
    candidates = [child.parent / ref, child.parent / f"{ref}.yaml"]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise FileNotFoundError(ref)


def load_scenario(path: str | Path, overrides: list[str] | dict[str, Any] | None = None) -> Scenario:
    """Load a scenario file, resolve its ``extends`` chain and apply ``--set`` overrides.

    Args:
        path: the scenario YAML file.
        overrides: ``["path=value", ...]`` as given to ``--set``, or a ``{path: value}`` mapping.

    Raises:
        ScenarioError: with one located message per problem found.
    """
    path = Path(path)
    if not path.is_file():
        raise ScenarioError([f"{path}: no such scenario file"])
    chain: list[tuple[ScenarioFile, YamlDocument]] = []
    seen: list[Path] = []
    current = path.resolve()
    while True:
        if current in seen:
            cycle = " -> ".join(p.name for p in seen + [current])
            raise ScenarioError([f"{path}: 'extends' forms a cycle: {cycle}"])
        seen.append(current)
        sf, doc = _read_file(current)
        chain.append((sf, doc))
        if sf.extends is None:
            break
        try:
            current = _find_parent(sf.extends, current)
        except FileNotFoundError:
            raise ScenarioError(
                [doc.where(("extends",)) + f"parent scenario '{sf.extends}' not found next to {current.name}"]
            ) from None
    chain.reverse()
    merged: dict[str, Any] = {"parameters": {}, "uncertain": {}, "events": [], "sources": []}
    docs: dict[str, YamlDocument] = {}
    origin: dict[int, tuple[str, int]] = {}
    for sf, doc in chain:
        docs[str(doc.path)] = doc
        for key in ("name", "question", "description", "start", "end"):
            if getattr(sf, key) is not None:
                merged[key] = getattr(sf, key)
        merged["parameters"].update(sf.parameters)
        merged["uncertain"].update(sf.uncertain)
        if sf.drop_events:
            known = {e.id for e in merged["events"] if e.id}
            unknown = [d for d in sf.drop_events if d not in known]
            if unknown:
                raise ScenarioError(
                    [doc.where(("drop_events",)) + f"no inherited event has id {', '.join(map(repr, unknown))}; ids: {', '.join(sorted(known)) or 'none'}"]
                )
            merged["events"] = [e for e in merged["events"] if e.id not in sf.drop_events]
        for i, ev in enumerate(sf.events):
            origin[id(ev)] = (str(doc.path), i)
        merged["events"].extend(sf.events)
        merged["sources"].extend(s for s in sf.sources if s not in merged["sources"])
        merged["expects"] = list(sf.expects)
    merged["lineage"] = [sf.name for sf, _ in chain]
    top = chain[-1][1]
    if not merged.get("question"):
        raise ScenarioError([top.where(()) + "a scenario needs a 'question' (the policy question it answers), here or in a parent"])
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        items = [_parse_override(o) for o in (overrides or [])]
    problems = []
    for p, v in items:
        try:
            params_mod.resolve({p: v})
        except params_mod.ParameterError as exc:
            problems.append(f"--set {p}={v}: {exc}")
        else:
            merged["parameters"][p] = v
    if problems:
        raise ScenarioError(problems)
    scenario = Scenario.model_validate(merged)
    problems = _check_horizon(scenario, docs, origin)
    if problems:
        raise ScenarioError(problems)
    return scenario


__all__ = [
    "Scenario",
    "ScenarioError",
    "ScenarioFile",
    "load_scenario",
    "ENTITIES",
    "EVENT_ACTIONS",
    "LINES",
    "TIERS",
]
