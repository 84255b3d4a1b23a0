"""Default parameters: loading, provenance and overrides.

``parameters.yaml`` beside this module is the single source of truth. Each leaf carries a
``value``, a ``unit`` and a ``source``; this module flattens the tree to dotted paths
(``demand.world_market_usd_bn_2022``), applies a scenario's overrides, and refuses a
parameter whose provenance is missing, so a policy reader can always ask where a number
came from.
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


@dataclass(frozen=True)
class Parameter:
    """One default parameter with its provenance."""

    path: str
    value: Any
    unit: str
    source: str

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
    if isinstance(node, dict) and set(node) == LEAF_KEYS:
        out[prefix] = Parameter(prefix, node["value"], str(node["unit"]), str(node["source"]))
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
            continue
        raise ParameterError(f"unknown parameter '{path}'{_suggest(path, values)}")
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
