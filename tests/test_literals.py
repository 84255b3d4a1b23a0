"""Every behavioural number is a parameter: no new numeric literal in the model's code.

Walks the syntax tree of each module under ``model/`` and fails on a numeric literal that
is not (a) 0, 1 or 100 (identities, complements of shares, percent conversion), (b) an index
or slice bound inside ``[...]``, or (c) the value of a module-level UPPER_CASE constant (a
named unit, sentinel or structural constant). Behavioural numbers belong in
``model/parameters.yaml`` with their unit and source, where ``decouple params`` shows them and
a batch can sample them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

MODEL = Path(__file__).resolve().parent.parent / "model"
ALLOWED_VALUES = {0, 1, 100}
#: Modules outside the rule, with the reason.
EXEMPT = {
    "scenario.py": "the scenario language: validation bounds and message formatting",
    "scenario_yaml.py": "safe YAML loading: size and depth limits, positions in messages",
    "parameters.py": "the parameter loader: message formatting",
}


def _named_constant_nodes(tree: ast.Module) -> set[int]:
    inside: set[int] = set()
    for node in tree.body:
        targets = []
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        names = [t for t in targets if isinstance(t, ast.Name | ast.Tuple)]
        flat = [n for t in names for n in (t.elts if isinstance(t, ast.Tuple) else [t])]
        if flat and all(isinstance(n, ast.Name) and n.id.isupper() for n in flat):
            inside |= {id(sub) for sub in ast.walk(value)}
    return inside


def _index_nodes(tree: ast.Module) -> set[int]:
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript):
            parts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            for part in parts:
                bounds = (
                    [part.lower, part.upper, part.step] if isinstance(part, ast.Slice) else [part]
                )
                for b in bounds:
                    if b is None:
                        continue
                    inner = b.operand if isinstance(b, ast.UnaryOp) else b
                    if isinstance(inner, ast.Constant):
                        inside.add(id(inner))
    return inside


def stray_literals(source: str) -> list[tuple[int, object]]:
    """``(line, value)`` of numeric literals outside the allow-list, in source order."""
    tree = ast.parse(source)
    allowed = _named_constant_nodes(tree) | _index_nodes(tree)
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef)
        and n.body
        and isinstance(n.body[0], ast.Expr)
    }
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or id(node) in allowed | docstrings:
            continue
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if value in ALLOWED_VALUES:
            continue
        out.append((node.lineno, value))
    return sorted(out)


MODULES = sorted(p.name for p in MODEL.glob("*.py") if p.name not in EXEMPT)


@pytest.mark.parametrize("module", MODULES)
def test_no_behavioural_number_in_model_code(module):
    found = stray_literals((MODEL / module).read_text(encoding="utf-8"))
    where = ", ".join(f"line {line}: {value!r}" for line, value in found)
    assert not found, (
        f"model/{module} has numeric literals ({where}): move behavioural numbers to "
        "model/parameters.yaml (value, unit, source) or name a unit/sentinel as a module constant"
    )


def test_the_rule_catches_a_new_literal_and_spares_the_allowed_ones():
    source = (
        "RATE = 0.25\n"
        "def f(p, a):\n"
        "    x = a[:, 2] * p['k'] / 100.0 + 1 - a[-1]\n"
        "    return x * 0.7\n"
    )
    assert stray_literals(source) == [(4, 0.7)]


def test_exempt_modules_exist():
    assert all((MODEL / name).exists() for name in EXEMPT)
