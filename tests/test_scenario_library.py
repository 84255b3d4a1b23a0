"""The scenario library: each file is well formed and moves its outputs the way it says.

Every library scenario in ``scenarios/`` (all but the baseline) runs with the same 20
replicates as the baseline: ``model.run.simulate(scenario, i)`` gives replicate *i* the same
random stream in every scenario (common random numbers), so each replicate yields a paired
difference. For each ``expects`` entry the test takes the calendar-year mean of the output
in each run, the paired differences scenario minus baseline, and checks the sign of their
median. The runs are made once per session (module-scoped fixture, about 0.5 s each),
spread over the machine's cores (a process pool) and announced on the terminal while they
run, since they are the suite's longest set-up (about 45 s on 2 cores).
``python tests/test_scenario_library.py`` prints the table of median differences without
pytest.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import cache
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # when run as a script
    sys.path.insert(0, str(ROOT))

# The model imports come after the sys.path line above so that the file also runs as a script.
from model.scenario import (  # noqa: E402
    INIT_ONLY_PREFIXES,
    OUTPUT_COLUMNS,
    ControlEvent,
    Scenario,
    ScenarioFile,
    load_scenario,
)
from model.scenario_yaml import load_yaml  # noqa: E402

SCENARIOS = ROOT / "scenarios"
BASELINE = SCENARIOS / "baseline.yaml"
LIBRARY = sorted(p for p in SCENARIOS.glob("*.yaml") if p.stem != "baseline")
SEEDS = range(20)


@cache
def _load(path: Path) -> Scenario:
    return load_scenario(path)


def _expectation_cases():
    cases = []
    for path in LIBRARY:
        sc = _load(path)
        for ex in sc.expects:
            cases.append(
                pytest.param(sc.name, ex, id=f"{sc.name}-{ex.output}-{ex.year}-{ex.direction}")
            )
    return cases


def _yearly_means(cols: dict) -> dict[str, dict[int, float]]:
    years = cols["year"]
    out = {}
    for c in OUTPUT_COLUMNS:
        values = np.asarray(cols[c], dtype=float)
        out[c] = {int(y): float(values[years == y].mean()) for y in np.unique(years)}
    return out


def _jobs() -> int:
    """Worker processes for the library runs: the cores this process may use (at most 8)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def run_library(
    seeds=SEEDS, baseline_frame=None, say=None, jobs=None
) -> dict[str, list[dict[str, dict[int, float]]]]:
    """Calendar-year means of the outputs, per replicate, for the baseline and the library.

    Args:
        seeds: replicate indexes (the same for every scenario: paired comparisons).
        baseline_frame: the baseline's runs of these seeds as a DataFrame with a ``seed``
            column (conftest's session fixture), to avoid running the baseline twice.
        say: called with progress text (no newline added), e.g. a terminal writer.
        jobs: worker processes (default: one per core); 1 runs in this process. A run's
            numbers do not depend on where it runs (each replicate has its own seed).

    Returns:
        ``{scenario name: per replicate, {output: {year: calendar-year mean}}}``.
    """
    from model.run import simulate

    say = say or (lambda text: None)
    seeds = list(seeds)
    results = {}
    if baseline_frame is not None:
        results["baseline"] = [
            _yearly_means({c: g[c].to_numpy() for c in ("year", *OUTPUT_COLUMNS)})
            for _, g in sorted(baseline_frame.groupby("seed"), key=lambda kv: kv[0])
        ]
        assert len(results["baseline"]) == len(seeds)
    todo = [sc for sc in map(_load, [BASELINE, *LIBRARY]) if sc.name not in results]
    jobs = jobs or _jobs()
    start = time.monotonic()
    say(
        f"test_scenario_library: {len(todo)} scenarios x {len(seeds)} seeds "
        f"= {len(todo) * len(seeds)} runs on {jobs} process{'es' * (jobs > 1)}:"
    )
    with contextlib.ExitStack() as stack:
        if jobs > 1:
            # forkserver: the pytest process may hold threads (Dask tests), so do not fork it.
            ctx = multiprocessing.get_context(
                "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else None
            )
            pool = stack.enter_context(ProcessPoolExecutor(jobs, mp_context=ctx))
            runs = pool.map(simulate, [sc for sc in todo for _ in seeds], seeds * len(todo))
        else:
            runs = (simulate(sc, i) for sc in todo for i in seeds)
        for sc in todo:
            results[sc.name] = [_yearly_means(next(runs)) for _ in seeds]
            say(f" {sc.name}")
    say(f" (done in {time.monotonic() - start:.0f} s)\n")
    return results


def paired_differences(
    results, name: str, output: str, year: int, vs: str = "baseline"
) -> np.ndarray:
    """Scenario minus ``vs``, one difference per replicate."""
    return np.array(
        [s[output][year] - b[output][year] for s, b in zip(results[name], results[vs], strict=True)]
    )


@pytest.fixture(scope="module")
def results(baseline_runs, request):
    """The library's runs, announced on the terminal as they finish (even under ``-q``)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    terminal = request.config.pluginmanager.getplugin("terminalreporter")

    def say(text: str) -> None:
        if terminal is None:
            return
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            if text.startswith("test_scenario_library"):
                terminal.write("\n")  # off the line of progress dots
            terminal.write(text, flush=True)

    return run_library(baseline_frame=baseline_runs, say=say)


# -- the files ---------------------------------------------------------------------------


def test_library_is_there():
    names = {p.stem for p in LIBRARY}
    assert {
        "tighter_us_controls",
        "allied_defection",
        "allied_defection_endogenous",
        "whole_nation_surge",
        "talent_crunch",
        "countermeasure_spiral",
        "detente",
    } <= names


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_library_file_contract(path):
    """Each file extends the baseline, states its question, seed-figure sources and expectations."""
    doc = load_yaml(path)
    sf = ScenarioFile.model_validate(doc.data)
    assert sf.name == path.stem, "a library scenario's name is its file name"
    assert sf.extends == "baseline"
    assert sf.question.strip().endswith("?")
    assert sf.description, "explain the story and where the numbers come from"
    assert any(re.search(r"\bF\d{2}\b", s) for s in sf.sources), (
        "cite at least one seed figure (F01-F32)"
    )
    assert sf.expects, "state the direction of effect against the baseline"
    assert all(ex.vs == "baseline" for ex in sf.expects)
    assert all(ev.source for ev in sf.events), "every event says where its numbers come from"


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_library_never_copies_the_baseline(path):
    """A scenario is the baseline plus changes: none of its events restates a baseline event."""
    base = load_scenario(BASELINE)
    strip = {"id", "note", "source"}
    base_events = [e.model_dump(exclude=strip) for e in base.events]
    sf = ScenarioFile.model_validate(load_yaml(path).data)
    for ev in sf.events:
        assert ev.model_dump(exclude=strip) not in base_events, f"{ev.id} repeats a baseline event"
    for p, v in sf.parameters.items():
        assert base.parameters.get(p, object()) != v


def test_output_columns_match_the_recorder():
    """``expects`` may name exactly the columns the model records (docs/outputs.md)."""
    from model.records import OUTPUT_COLUMNS as RECORDED

    assert tuple(OUTPUT_COLUMNS) == tuple(RECORDED)


def test_entities_exist():
    """Every entity an event may list is a buyer or a champion of the parameter table."""
    from model import parameters
    from model.scenario import ENTITIES

    values = parameters.resolve()
    known = set(parameters.group(values, "sourcing.buyers")) | set(
        parameters.group(values, "china_firms.champions")
    )
    assert set(ENTITIES) <= known


def test_control_items_cover_the_regime():
    from model.regimes import ITEM_INDEX

    assert set(ControlEvent.model_fields["item"].annotation.__args__) == set(ITEM_INDEX)


def test_init_only_prefixes_match_the_model(monkeypatch):
    """Parameters read only while the model is built are refused in ``set_parameter`` events.

    Instruments a baseline run: reads during ``DecouplingModel.__init__`` versus reads during
    the quarters. A parameter read at set-up and never afterwards must be listed in
    ``INIT_ONLY_PREFIXES``, else a ``set_parameter`` event would silently do nothing. (The
    list may also hold structural parameters that are read during the run but must not
    change in mid-run, such as ``china_firms.real_firms_per_agent``.)
    """
    import model.model as mm
    from model import parameters

    reads: dict[str, set] = {"init": set(), "run": set()}

    class Recording(dict):
        phase = "init"

        def __getitem__(self, key):
            reads[Recording.phase].add(key)
            return super().__getitem__(key)

    real_dict, real_group = dict, mm.group

    def keep(values=(), **kw):
        return values if isinstance(values, Recording) else real_dict(values, **kw)

    def group(values, prefix):
        reads[Recording.phase].add(prefix)
        return real_group(real_dict(values), prefix)

    monkeypatch.setattr(mm, "dict", keep, raising=False)
    monkeypatch.setattr(mm, "group", group)
    monkeypatch.setattr(mm.demography, "group", group)
    sc = _load(BASELINE)
    p = Recording(sc.resolved_parameters())
    model = mm.DecouplingModel(sc, rng=0, parameters=p)
    if not reads["init"] or model.p is not p:
        pytest.skip("the model no longer builds its parameter table the way this test instruments")
    Recording.phase = "run"
    model.run_for(16)
    init, run = reads["init"], reads["run"]
    leaves = set(parameters.defaults())

    def covered(path):
        return path.startswith(INIT_ONLY_PREFIXES)

    init_only = {k for k in init - run if k in leaves or any(x.startswith(k + ".") for x in leaves)}
    assert sorted(k for k in init_only if not covered(k)) == [], "add these to INIT_ONLY_PREFIXES"
    stale = [
        x for x in INIT_ONLY_PREFIXES if not any(k == x or k.startswith(x + ".") for k in leaves)
    ]
    assert stale == [], "these INIT_ONLY_PREFIXES name no parameter"


def test_library_runs_say_their_progress_and_match_in_a_pool(monkeypatch):
    """The set-up announces its runs; a pool gives the very numbers of one process."""
    monkeypatch.setattr(sys.modules[__name__], "LIBRARY", [SCENARIOS / "detente.yaml"])
    said: list[str] = []
    pooled = run_library(seeds=[3], say=said.append, jobs=2)
    text = "".join(said)
    assert re.fullmatch(
        r"test_scenario_library: 2 scenarios x 1 seeds = 2 runs on 2 processes: "
        r"baseline detente \(done in \d+ s\)\n",
        text,
    ), text
    assert pooled == run_library(seeds=[3], jobs=1)


# -- the effects -------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "expectation"), _expectation_cases())
def test_expected_direction(results, name, expectation):
    """The median over replicates of the paired difference has the stated sign."""
    diffs = paired_differences(results, name, expectation.output, expectation.year, expectation.vs)
    median = float(np.median(diffs))
    base = float(
        np.median([r[expectation.output][expectation.year] for r in results[expectation.vs]])
    )
    detail = (
        f"{name} vs {expectation.vs}: {expectation.output} in {expectation.year}: "
        "median paired difference "
        f"{median:+.4g} (baseline median {base:.4g}; "
        f"{int((diffs > 0).sum())} of {len(diffs)} replicates higher), "
        f"expected {expectation.direction}"
    )
    ok = {"higher": median > 0, "lower": median < 0, "different": median != 0}[
        expectation.direction
    ]
    assert ok, detail


def table(results) -> str:
    """Markdown table of every expectation's median paired difference (for reports)."""
    rows = [
        "| scenario | output | year | expected | baseline median | median difference "
        "| replicates higher | ok |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path in LIBRARY:
        sc = _load(path)
        for ex in sc.expects:
            d = paired_differences(results, sc.name, ex.output, ex.year, ex.vs)
            med = float(np.median(d))
            base = float(np.median([r[ex.output][ex.year] for r in results[ex.vs]]))
            ok = {"higher": med > 0, "lower": med < 0, "different": med != 0}[ex.direction]
            rows.append(
                f"| {sc.name} | {ex.output} | {ex.year} | {ex.direction} | {base:.4g} "
                f"| {med:+.4g} | {int((d > 0).sum())}/{len(d)} | {'yes' if ok else 'NO'} |"
            )
    return "\n".join(rows)


if __name__ == "__main__":
    print(table(run_library(say=lambda text: print(text, end="", file=sys.stderr, flush=True))))
