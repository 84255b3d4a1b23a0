"""Property: the scenario loader accepts a document or raises ScenarioError, never anything else.

Hypothesis generates (a) random YAML-able documents, (b) mutations of valid scenario
documents (keys dropped or renamed, values replaced by values of the wrong type), (c) raw
text with random edits, and (d) random ``--set`` overrides. Whatever it produces,
:func:`model.scenario.load_scenario` must return a :class:`Scenario` or raise
:class:`ScenarioError` whose messages are located text; an ``IndexError``, ``KeyError``,
``RecursionError`` or pydantic's own ``ValidationError`` escaping would be a bug (a
traceback shown to a user).
"""

from __future__ import annotations

import copy
import itertools
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.scenario import Scenario, ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = sorted(p for p in (ROOT / "scenarios").glob("*.yaml"))
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_WORKDIR = Path(tempfile.mkdtemp(prefix="scenario-property-"))
shutil.copy(ROOT / "scenarios" / "baseline.yaml", _WORKDIR / "baseline.yaml")
_COUNTER = itertools.count()


def teardown_module(module):
    shutil.rmtree(_WORKDIR, ignore_errors=True)


def _documents() -> list[dict]:
    return [yaml.safe_load(p.read_text(encoding="utf-8")) for p in LIBRARY]


VALID_DOCS = _documents()

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        [
            "2025Q1",
            "2014Q1",
            "2099Q4",
            "2025Q5",
            "baseline",
            "free",
            "netherlands",
            "control",
            "us.auto_tighten",
            "F29",
        ]
    ),
)
keys = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "name",
            "question",
            "extends",
            "events",
            "parameters",
            "uncertain",
            "expects",
            "start",
            "end",
            "at",
            "action",
            "item",
            "ally",
            "alignment",
            "dist",
            "low",
            "high",
            "mode",
            "drop_events",
            "sources",
            "path",
            "value",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)
    ),
    max_leaves=20,
)


def _check(text: str, overrides=None):
    path = _WORKDIR / f"doc{next(_COUNTER)}.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        result = load_scenario(path, overrides)
    except ScenarioError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
    else:
        assert isinstance(result, Scenario)
    finally:
        path.unlink()


def _dump(doc) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


@SETTINGS
@given(doc=values)
def test_random_documents(doc):
    _check(_dump(doc))


@SETTINGS
@given(doc=st.dictionaries(keys, values, max_size=8), parent=st.sampled_from([None, "baseline"]))
def test_random_mappings(doc, parent):
    if parent:
        doc.setdefault("extends", parent)
    _check(_dump(doc))


def _paths(node, prefix=()):
    """Every key path in a document."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _parent(doc, path):
    node = doc
    for part in path[:-1]:
        node = node[part]
    return node


@st.composite
def mutated(draw):
    doc = copy.deepcopy(draw(st.sampled_from(VALID_DOCS)))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = _parent(doc, path), path[-1]
        kind = draw(st.sampled_from(["drop", "rename", "replace", "wrong_type"]))
        if kind == "drop":
            del parent[last]
        elif kind == "rename" and isinstance(parent, dict):
            parent[draw(keys)] = parent.pop(last)
        elif kind == "replace":
            parent[last] = draw(values)
        else:
            old = parent[last]
            parent[last] = draw(
                st.sampled_from(
                    [str(old), [old], {"x": old}, None, True, 1e9, -1, "", "2026-01-01"]
                )
            )
    return doc


@SETTINGS
@given(doc=mutated())
def test_mutated_library_documents(doc):
    _check(_dump(doc))


@SETTINGS
@given(
    base=st.sampled_from(LIBRARY),
    edits=st.lists(
        st.tuples(
            st.floats(0, 1),
            st.sampled_from(
                [
                    "",
                    ":",
                    "- ",
                    "{",
                    "]",
                    "&a ",
                    "*a",
                    "!!",
                    "\t",
                    "\n",
                    "  ",
                    "'",
                    "<<: ",
                    "\x07",
                    "?",
                ]
            ),
        ),
        max_size=4,
    ),
)
def test_text_edits(base, edits):
    text = base.read_text(encoding="utf-8")
    for where, insert in edits:
        i = int(where * len(text))
        text = text[:i] + insert + text[i:]
    _check(text)


@SETTINGS
@given(
    overrides=st.lists(
        st.one_of(
            st.text(max_size=30),
            st.builds(
                lambda k, v: f"{k}={v}",
                st.sampled_from(
                    [
                        "us.auto_tighten",
                        "china.procurement_preference",
                        "allies.initial_alignment",
                        "allies.initial_alignment.japan",
                        "x",
                        "",
                    ]
                ),
                st.text(max_size=20),
            ),
        ),
        max_size=3,
    )
)
def test_random_overrides(overrides):
    _check(_dump({"name": "child", "question": "q?", "extends": "baseline"}), overrides)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 10_000,
        "a: " + "{" * 5000,
        "- " * 3000 + "x",
        "&a [*a]",
        "x: *nope",
        "\ufeffname: bom\nquestion: q?",
    ],
)
def test_pathological_texts(text):
    _check(text)


@SETTINGS
@given(text=st.text(max_size=300))
def test_random_text(text):
    _check(text)
