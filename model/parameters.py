"""Default parameters: loading, provenance and overrides.

``parameters.yaml`` beside this module is the single source of truth. Each leaf carries a
``value``, a ``unit``, a ``source`` and, for numbers, a ``range``; this module flattens the
tree to dotted paths (``demand.world_market_usd_bn_2022``), applies a scenario's overrides,
and refuses a parameter whose provenance is missing or a value outside its range, so a
policy reader can always ask where a number came from and a run never starts from a value
the model cannot mean.

A ``range`` is ``[low, high]`` (inclusive; YAML's ``.inf`` for no bound). For a mapping of
numbers it applies to every number in the mapping; for ``[[year, value], ...]`` points, to
the values; for a mapping of mixed fields (a champion, a buyer) it is a mapping of ranges
by field.
"""

from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

#: A source must start with one of these: a seed figure, a seed document, a publication,
#: the supply-chain structure notes, a flagged assumption or a calibration target.
SOURCE_PATTERN = re.compile(
    r"^(F\d{2}\b|CLM70\b|TIME22\b|publication:|structure:|assumption:|calibrated:)"
)
LEAF_KEYS = {"value", "unit", "source"}
OPTIONAL_LEAF_KEYS = {"range"}


@dataclass(frozen=True)
class Parameter:
    """One default parameter with its provenance."""

    path: str
    value: Any
    unit: str
    source: str
    range: Any = None

    @property
    def kind(self) -> str:
        """``figure``, ``publication``, ``assumption`` or ``calibrated``, for tables."""
        head = self.source.split(":", 1)[0]
        if re.match(r"F\d{2}", head) or head in ("CLM70", "TIME22"):
            return "figure"
        if head in ("publication", "structure"):
            return "publication"
        return head


class ParameterError(ValueError):
    """A parameter path or value is not valid."""


def _walk(node: Any, prefix: str, out: dict[str, Parameter]) -> None:
    if isinstance(node, dict) and LEAF_KEYS <= set(node) <= LEAF_KEYS | OPTIONAL_LEAF_KEYS:
        rng = node.get("range")
        if rng is not None and not _valid_range(rng):
            raise ParameterError(
                f"parameters.yaml: '{prefix}.range' must be [low, high] numbers with low <= high "
                f"(or a mapping of such ranges by field); found {rng!r}"
            )
        out[prefix] = Parameter(prefix, node["value"], str(node["unit"]), str(node["source"]), rng)
        return
    if not isinstance(node, dict):
        raise ParameterError(
            f"parameters.yaml: '{prefix}' must be a group or a leaf with value, unit and source"
        )
    for key, child in node.items():
        _walk(child, f"{prefix}.{key}" if prefix else str(key), out)


@lru_cache(maxsize=1)
def _defaults() -> dict[str, Parameter]:
    text = resources.files("model").joinpath("parameters.yaml").read_text(encoding="utf-8")
    out: dict[str, Parameter] = {}
    _walk(yaml.safe_load(text), "", out)
    return out


def defaults() -> dict[str, Parameter]:
    """Return every default parameter keyed by dotted path (a fresh copy)."""
    return dict(_defaults())


def missing_sources() -> list[str]:
    """Paths whose source is empty or does not start with an allowed prefix."""
    return [p.path for p in _defaults().values() if not SOURCE_PATTERN.match(p.source.strip())]


def _valid_range(rng: Any) -> bool:
    if isinstance(rng, dict):
        return all(_valid_range(r) for r in rng.values())
    return (
        isinstance(rng, list)
        and len(rng) == len([0, 0])
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in rng)
        and rng[0] <= rng[-1]
    )


def _numbers(value: Any, where: str):
    """``(label, number)`` for each number a value holds (points: their values only)."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield where, value
    elif isinstance(value, dict):
        for key, sub in value.items():
            yield from _numbers(sub, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        points = all(isinstance(x, list) and len(x) == len([0, 0]) for x in value)
        for i, x in enumerate(value):
            yield from _numbers(x[-1] if points else x, f"{where}[{i}]")


def out_of_range(value: Any, rng: Any, where: str = "") -> str | None:
    """The first number of ``value`` outside ``rng``, described; ``None`` if all are inside.

    Non-finite numbers (NaN, infinities) are outside every finite bound.
    """
    if rng is None:
        return None
    if isinstance(rng, dict):
        if not isinstance(value, dict):
            return None
        for key, sub in rng.items():
            if key in value:
                msg = out_of_range(value[key], sub, f"{where}.{key}" if where else key)
                if msg:
                    return msg
        return None
    low, high = rng
    for label, x in _numbers(value, where):
        if not low <= x <= high:
            inside = f"its range [{_num(low)}, {_num(high)}]"
            return (
                f"'{label}' is {x!r}, outside {inside}" if label else f"{x!r} is outside {inside}"
            )
    return None


def _num(x: float) -> str:
    return format(x, "g")


def bounds(path: str) -> tuple[float, float] | None:
    """Inclusive range of a numeric parameter (or a key of a mapping-valued one), else ``None``."""
    table = _defaults()
    if path in table:
        rng = table[path].range
    else:
        parent, _, key = path.rpartition(".")
        if parent not in table:
            return None
        rng = table[parent].range
        if isinstance(rng, dict):
            rng = rng.get(key)
    if isinstance(rng, list):
        return float(rng[0]), float(rng[-1])
    return None


def out_of_range_defaults() -> list[str]:
    """Defaults outside their own range (a test keeps this empty)."""
    return [
        f"{p.path}: {msg}"
        for p in _defaults().values()
        if (msg := out_of_range(p.value, p.range)) is not None
    ]


def _check_range(path: str, value: Any, rng: Any, unit: str) -> None:
    msg = out_of_range(value, rng)
    if msg:
        shown_unit = "" if unit.startswith("mixed") else f" ({unit})"
        raise ParameterError(f"parameter '{path}': {msg}{shown_unit}")


def _check_consistency(values: dict[str, Any]) -> None:
    """Cross-parameter rules the ranges alone cannot say.

    China's demand tier shares leave a non-negative mature share; every foreign supply
    structure has some supply (shares are renormalised, so they cannot all be zero).
    """
    for path, shares in values.items():
        if path.startswith("foreign.supply_share_pct.") and not sum(shares.values()) > 0:
            raise ParameterError(
                f"parameter '{path}': the shares add up to {sum(shares.values()):g}; at least "
                "one origin must supply the item (shares are renormalised to 100%)"
            )
    series = [
        values[f"demand.tier_share_pct.{t}"] for t in ("leading", "advanced", "memory", "compound")
    ]
    years = sorted({float(pt[0]) for s in series for pt in s})
    xs = [[float(pt[0]) for pt in s] for s in series]
    for year in years:
        total = sum(_interp(year, x, [float(pt[1]) for pt in s]) for x, s in zip(xs, series))
        if total > 100.0:
            raise ParameterError(
                "parameters 'demand.tier_share_pct.*': the leading, advanced, memory and "
                f"compound shares add up to {total:g}% in {year:g}; they must leave a "
                "non-negative mature share (at most 100% together)"
            )


def _interp(year: float, xs: list[float], ys: list[float]) -> float:
    """Piecewise-linear value at ``year``, flat outside (as ``numpy.interp``)."""
    if year <= xs[0]:
        return ys[0]
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if year <= x1:
            return y0 + (y1 - y0) * (year - x0) / (x1 - x0)
    return ys[-1]


def _same_shape(default: Any, value: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, dict):
        return isinstance(value, dict)
    if isinstance(default, list):
        return isinstance(value, list)
    return isinstance(value, type(default))


def resolve(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return ``{path: value}`` for all parameters with ``overrides`` applied.

    An override may name a leaf (``china.procurement_preference``) or, for leaves whose value
    is a mapping, one key inside it (``allies.initial_alignment.japan``).

    Raises:
        ParameterError: naming the unknown path (with the nearest valid one) or the wrong type.
    """
    table = _defaults()
    values = {path: copy.deepcopy(p.value) for path, p in table.items()}
    for path, value in (overrides or {}).items():
        if path in values:
            if not _same_shape(values[path], value):
                raise ParameterError(
                    f"parameter '{path}' expects {_describe(values[path])}, got {value!r}"
                )
            values[path] = _merge(values[path], value) if isinstance(value, dict) else value
            _check_range(path, values[path], table[path].range, table[path].unit)
            continue
        parent, _, key = path.rpartition(".")
        if parent in values and isinstance(values[parent], dict):
            inner = values[parent]
            if key not in inner:
                raise ParameterError(
                    f"parameter '{path}': '{key}' is not a key of '{parent}'"
                    f"{_suggest(key, inner)}; allowed: {', '.join(map(str, inner))}"
                )
            if not _same_shape(inner[key], value):
                raise ParameterError(
                    f"parameter '{path}' expects {_describe(inner[key])}, got {value!r}"
                )
            inner[key] = value
            rng = table[parent].range
            _check_range(
                path, value, rng.get(key) if isinstance(rng, dict) else rng, table[parent].unit
            )
            continue
        raise ParameterError(f"unknown parameter '{path}'{_suggest(path, values)}")
    if overrides:
        _check_consistency(values)
    return values


def default_value(path: str) -> Any:
    """Default value at ``path``: a parameter, or a key inside a mapping-valued parameter.

    Raises:
        KeyError: if ``path`` is neither (check with :func:`known_path` first).
    """
    table = _defaults()
    if path in table:
        return copy.deepcopy(table[path].value)
    parent, _, key = path.rpartition(".")
    if parent in table and isinstance(table[parent].value, dict):
        return copy.deepcopy(table[parent].value[key])
    raise KeyError(path)


def known_path(path: str) -> bool:
    """True if ``path`` names a parameter or a key inside a mapping-valued parameter."""
    table = _defaults()
    if path in table:
        return True
    parent, _, key = path.rpartition(".")
    return parent in table and isinstance(table[parent].value, dict) and key in table[parent].value


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if key not in base:
            raise ParameterError(f"'{key}' is not a valid key here; allowed: {', '.join(base)}")
        out[key] = (
            _merge(base[key], value)
            if isinstance(value, dict) and isinstance(base[key], dict)
            else value
        )
    return out


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, dict):
        return "a mapping with keys " + ", ".join(map(str, value))
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _suggest(word: str, choices) -> str:
    match = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def table_rows() -> list[tuple[str, str, str, str]]:
    """Rows ``(path, value, unit, source)`` for ``decouple params``."""
    return [(p.path, _fmt(p.value), p.unit, p.source) for p in _defaults().values()]


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def group(values: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Children of a parameter group as ``{child_name: value}`` (e.g. all champions)."""
    head = prefix + "."
    return {
        path[len(head) :]: v
        for path, v in values.items()
        if path.startswith(head) and "." not in path[len(head) :]
    }
