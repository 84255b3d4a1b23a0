"""Shared history: scenarios that agree up to a quarter are simulated once up to it, then branch.

Replicate *i* draws the same random numbers in every scenario (common random numbers:
:func:`model.run.replicate_seed`, and :mod:`model.streams` keys every mechanism's stream by
the replicate and the quarter only, never by the scenario), so two scenarios whose runs
read the same inputs up to a quarter are in exactly the same state there. A library
scenario typically repeats the baseline to 2024 and adds its own events from 2025: the
batch simulates those quarters once per replicate and parameter sample, copies the model
(:func:`model.run.branch`) and lets each scenario go on from the copy. The results are
bit-identical to running every scenario from the start (``tests/test_branching.py``).

What a run reads from its scenario (:data:`model.run.SCENARIO_INPUTS`) decides where two
runs can part (:func:`first_difference`):

* at their construction, if they start at different quarters, have different parameters
  (the scenario's overrides with the sample's values, compared after resolution) or
  different events dated before the start (applied when the model is built): then they
  share nothing;
* else at the first quarter whose inputs differ: the events applied that quarter (in
  order, every field compared, ``id`` and ``note`` included), or the control rules
  *announced* but not yet in force that quarter (buyers stock tools ahead of them,
  :mod:`model.stockpile`, so a rule announced in 2024Q2 for 2024Q4 parts the runs in 2024Q2);
* else after the earlier end: the shorter run is a prefix of the longer.

Values are compared with their types (``1`` is not ``1.0``) and mapping order, so two inputs
count as equal only when the model cannot tell them apart.

:func:`build_forest` groups a batch's scenarios into trees of :class:`Branch` es for one
parameter sample; :func:`run_tree` runs one tree for one replicate; :class:`TreeTask` is the
batch's unit of work with shared history on (a tree x a group of replicates x one sample),
and :func:`run_tree_task` what a worker runs for it. A failure in one branch fails only
the scenarios that would have met it when run alone: the branch and those that share its
history past the quarter where it failed; the others go on.

Only the standard library is imported at module level.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .plan import RUNS_PER_SHARD, Task

# --------------------------------------------------------------------------------------
# Where two scenarios' runs part
# --------------------------------------------------------------------------------------


def canonical(value: Any) -> str:
    """A string equal for two values exactly when the model cannot tell them apart.

    Types are kept (``1``, ``1.0`` and ``True`` differ), floats exactly (``float.hex``),
    mapping and sequence order kept.
    """
    return repr(_canon(value))


def _canon(value: Any):
    if isinstance(value, dict):
        return ("dict", tuple((_canon(k), _canon(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_canon(v) for v in value))
    if isinstance(value, (set, frozenset)):
        return (type(value).__name__, tuple(sorted(repr(_canon(v)) for v in value)))
    if type(value) is float:
        return ("float", value.hex())
    if hasattr(value, "model_dump"):  # a pydantic model (an event)
        return (type(value).__name__, _canon(value.model_dump(mode="python")))
    return (type(value).__name__, repr(value))


@dataclass(frozen=True)
class RunInputs:
    """What a run of one scenario (with one parameter sample) reads, by quarter.

    Attributes:
        name: the scenario.
        start_q: ordinal of its first quarter.
        end_q: ordinal of its last quarter.
        construction: canonical form of what the model is built from (start, resolved
            parameters, events dated before the start).
        by_quarter: canonical form of each quarter's inputs (events applied, announced
            rules pending), for ``start_q..end_q``.
        lineage: the scenario's ``extends`` chain (its own name last).
    """

    name: str
    start_q: int
    end_q: int
    construction: str
    by_quarter: tuple[str, ...]
    lineage: tuple[str, ...] = ()


def run_inputs(scenario, parameters: dict) -> RunInputs:
    """The :class:`RunInputs` of ``scenario`` run with the resolved ``parameters``."""
    from model.calendar import quarter_ordinal

    start_q, end_q = quarter_ordinal(scenario.start), quarter_ordinal(scenario.end)
    before, applied = [], {}
    pending: dict[int, list[str]] = {}
    for ev in scenario.events:
        q = quarter_ordinal(ev.at)
        text = canonical(ev)
        if q < start_q:
            before.append(text)
        else:
            applied.setdefault(q, []).append(text)
        announced = getattr(ev, "announced", None)
        if announced is not None:
            for p in range(max(start_q, quarter_ordinal(announced)), min(q, end_q + 1)):
                pending.setdefault(p, []).append(text)
    by_quarter = tuple(
        repr((tuple(applied.get(q, ())), tuple(sorted(pending.get(q, ())))))
        for q in range(start_q, end_q + 1)
    )
    construction = repr((start_q, canonical(parameters), tuple(before)))
    return RunInputs(
        scenario.name, start_q, end_q, construction, by_quarter, tuple(scenario.lineage)
    )


def first_difference(a: RunInputs, b: RunInputs) -> int | None:
    """The first quarter (ordinal) at which runs of ``a`` and ``b`` can differ.

    Returns:
        ``None`` if they differ from their construction on (nothing shared); else the
        first quarter whose inputs differ; else the quarter after the earlier end (the
        shorter run is then a prefix of the longer).
    """
    if a.construction != b.construction:
        return None
    last = min(a.end_q, b.end_q)
    for i in range(last - a.start_q + 1):
        if a.by_quarter[i] != b.by_quarter[i]:
            return a.start_q + i
    return last + 1


# --------------------------------------------------------------------------------------
# The branching trees
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Branch:
    """A node of a branching tree: a scenario's run and the runs that branch off it.

    Attributes:
        scenario: the scenario this branch runs.
        at_q: the quarter (ordinal) from which it runs on its own, from a copy of its
            parent's model made before that quarter; ``None`` for a tree's root, built from
            scratch.
        children: the branches taken from this one, by ``at_q``.
    """

    scenario: str
    at_q: int | None = None
    children: tuple[Branch, ...] = ()

    def names(self) -> list[str]:
        """This branch's scenario and every descendant's, depth first."""
        out = [self.scenario]
        for child in self.children:
            out.extend(child.names())
        return out

    def quarters(self, ends: dict[str, tuple[int, int]]) -> int:
        """Quarters simulated for the whole tree (``ends``: ``{name: (start_q, end_q)}``).

        Each branch from its ``at_q`` (its start for the root) to its end; for a
        prefix-only branch, none.
        """
        start_q, end_q = ends[self.scenario]
        first = start_q if self.at_q is None else self.at_q
        return max(0, end_q + 1 - first) + sum(c.quarters(ends) for c in self.children)

    def describe(self, label=str, indent: str = "") -> list[str]:
        """Text lines of the tree (``label`` turns a quarter ordinal into text)."""
        at = "from scratch" if self.at_q is None else f"from {label(self.at_q)}"
        lines = [f"{indent}{self.scenario} ({at})"]
        for child in self.children:
            lines.extend(child.describe(label, indent + "  "))
        return lines


def build_forest(inputs: Sequence[RunInputs]) -> tuple[Branch, ...]:
    """Group scenarios into branching trees: one root per set sharing a construction.

    In each set, a *carrier* runs from the root (the scenario the most others extend, then
    the first given); every other scenario leaves it at its :func:`first_difference` with
    it, and those leaving at the same quarter form a subtree with its own carrier. Only
    the carrier's own agreement with each scenario is relied on, so the tree is valid for
    any grouping; for the exact first differences computed here it is also the one that
    simulates fewest quarters.
    """
    remaining = list(inputs)
    roots = []
    while remaining:
        head = remaining[0]
        group = [r for r in remaining if r.construction == head.construction]
        roots.append(_build(group, None))
        remaining = [r for r in remaining if r.construction != head.construction]
    return tuple(roots)


def _carrier(group: list[RunInputs]) -> RunInputs:
    """The scenario of ``group`` the others extend most often (ties: the first)."""
    counts = [sum(r.name in o.lineage[:-1] for o in group) for r in group]
    return group[counts.index(max(counts))]


def _build(group: list[RunInputs], at_q: int | None) -> Branch:
    """The tree of ``group``, whose runs all agree before ``at_q`` (``None``: the root)."""
    carrier = _carrier(group)
    floor = carrier.start_q if at_q is None else at_q
    by_quarter: dict[int, list[RunInputs]] = {}
    for other in group:
        if other is carrier:
            continue
        d = first_difference(carrier, other)
        q = floor if d is None else max(floor, d)  # None cannot occur within a group
        by_quarter.setdefault(q, []).append(other)
    children = tuple(
        _build(cluster, q) for q in sorted(by_quarter) for cluster in _clusters(by_quarter[q], q)
    )
    return Branch(carrier.name, at_q, children)


def _clusters(group: list[RunInputs], q: int) -> list[list[RunInputs]]:
    """Split runs that leave the carrier at ``q`` into sets that still agree after ``q``.

    Each set becomes one subtree; runs that already differ from one another at ``q`` are
    sibling branches of the carrier (rather than branches of one another at ``q``).
    """
    clusters: list[list[RunInputs]] = []
    for run in group:
        for cluster in clusters:
            d = first_difference(cluster[0], run)
            if d is not None and d > q:
                cluster.append(run)
                break
        else:
            clusters.append([run])
    return clusters


def forest_for(scenarios: Sequence, values: dict) -> tuple[Branch, ...]:
    """The branching trees of resolved ``scenarios`` run with one sample's ``values``."""
    return build_forest([run_inputs(sc, sc.resolved_parameters(values)) for sc in scenarios])


# --------------------------------------------------------------------------------------
# Running one tree for one replicate
# --------------------------------------------------------------------------------------


@dataclass
class Failure:
    """A run that raised: the exception and its traceback.

    Attributes:
        error: the exception.
        traceback: its formatted traceback.
        shared_with: for a run that shares the history where the exception was raised,
            the scenario whose run raised it, and the quarter (label).
    """

    error: BaseException
    traceback: str
    shared_with: tuple[str, str] | None = None


def _needed(node: Branch, wanted: set) -> bool:
    return node.scenario in wanted or any(_needed(c, wanted) for c in node.children)


def run_tree(
    tree: Branch,
    scenarios: dict,
    seed,
    sample: dict | None,
    wanted: set,
) -> dict[str, Any]:
    """Run the scenarios ``wanted`` of ``tree`` for one replicate, sharing their history.

    Args:
        tree: a root :class:`Branch`.
        scenarios: ``{name: Scenario}`` for every scenario of the tree.
        seed: the replicate's ``SeedSequence``.
        sample: the sampled parameter values.
        wanted: the scenarios whose results are wanted; the others are simulated only as
            far as a wanted one needs their history.

    Returns:
        ``{name: columns}`` (as :func:`model.run.simulate`) or ``{name: Failure}`` for each
        wanted scenario.
    """
    from model.run import start

    out: dict[str, Any] = {}
    if not _needed(tree, wanted):
        return out
    try:
        model = start(scenarios[tree.scenario], seed, sample=sample)
    except Exception as exc:  # noqa: BLE001 - each wanted run of the tree fails with it
        _fail_subtree(tree, wanted, Failure(exc, traceback.format_exc()), out)
        return out
    _run_branch(tree, model, scenarios, wanted, out)
    return out


def _fail_subtree(node: Branch, wanted: set, failure: Failure, out: dict) -> None:
    for name in node.names():
        if name in wanted:
            out[name] = failure


def _run_branch(node: Branch, model, scenarios: dict, wanted: set, out: dict) -> None:
    """Run ``node`` from ``model`` (at the branch's first quarter), its children on copies."""
    from model.calendar import ordinal_to_label
    from model.run import branch, next_quarter, run_until

    children = [c for c in node.children if _needed(c, wanted)]
    for i, child in enumerate(children):
        try:
            run_until(model, child.at_q)
        except Exception as exc:  # noqa: BLE001 - a failing run must not kill its siblings
            failure = Failure(exc, traceback.format_exc())
            # Mesa counts a step before running it: the quarter that raised is the last.
            where = ordinal_to_label(next_quarter(model) - 1)
            shared = Failure(exc, failure.traceback, (node.scenario, where))
            for later in children[i:]:
                _fail_subtree(later, wanted, shared, out)
            if node.scenario in wanted:
                out[node.scenario] = failure
            return
        if not child.children and child.scenario in wanted and _ends_before(child, scenarios):
            # A prefix of this run: its quarters are all simulated already.
            _collect(child.scenario, model, out)
            continue
        try:
            clone = branch(model, scenarios[child.scenario])
        except Exception as exc:  # noqa: BLE001
            _fail_subtree(child, wanted, Failure(exc, traceback.format_exc()), out)
            continue
        _run_branch(child, clone, scenarios, wanted, out)
        del clone
    if node.scenario in wanted:
        try:
            run_until(model, model.end_q + 1)
        except Exception as exc:  # noqa: BLE001
            out[node.scenario] = Failure(exc, traceback.format_exc())
            return
        _collect(node.scenario, model, out)


def _ends_before(child: Branch, scenarios: dict) -> bool:
    """True if ``child``'s horizon ends before its branch quarter (nothing left to run)."""
    from model.calendar import quarter_ordinal

    return quarter_ordinal(scenarios[child.scenario].end) < child.at_q


def _collect(name: str, model, out: dict) -> None:
    """Put ``model``'s columns (or their failure: the output contract) in ``out[name]``."""
    from model.run import results

    try:
        out[name] = results(model)
    except Exception as exc:  # noqa: BLE001 - e.g. OutputContractError
        out[name] = Failure(exc, traceback.format_exc())


# --------------------------------------------------------------------------------------
# The batch's tasks with shared history
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TreeTask:
    """A unit of work with shared history: one tree's scenarios, some replicates, one sample.

    Carries everything its runs need, as :class:`~experiment.plan.Task` does, so it runs on
    a remote cluster too. Each scenario's finished replicates go to its own shard, as
    without shared history, so the store is laid out the same.

    Attributes:
        tree: the root :class:`Branch`.
        scenarios: ``(name, hash, resolved data)`` of every scenario of the tree.
        sample: the parameter sample ``k``.
        values: its sampled values.
        todo: ``(name, replicates)`` still to run for each scenario of the tree.
        root_entropy: the batch's root entropy.
        fail_runs: runs the failure testing hook makes fail.
        pause: the pause testing hook's ``(point, file)``, if a run's.
        streams: how replicate streams relate across samples (the plan's ``streams``).
    """

    tree: Branch
    scenarios: tuple[tuple[str, str, dict], ...]
    sample: int
    values: dict
    todo: tuple[tuple[str, tuple[int, ...]], ...]
    root_entropy: int
    fail_runs: frozenset = frozenset()
    pause: tuple[str, str] | None = None
    streams: str = "shared"  # see experiment.plan.run_stream

    @property
    def seeds(self) -> tuple[int, ...]:
        """Every replicate the task runs for some scenario, in order."""
        return tuple(sorted({s for _, seeds in self.todo for s in seeds}))

    def run_keys(self) -> list:
        """The run keys of this task."""
        return [(name, s, self.sample) for name, seeds in self.todo for s in seeds]

    def part(self, name: str) -> Task:
        """The plain :class:`~experiment.plan.Task` of one scenario's runs in this task."""
        info = {n: (h, d) for n, h, d in self.scenarios}
        seeds = dict(self.todo)[name]
        h, data = info[name]
        return Task(
            name, h, data, self.sample, self.values, seeds, self.root_entropy, self.fail_runs,
            self.pause,
        )  # fmt: skip


@dataclass
class TreeResult:
    """What a worker sends back for a :class:`TreeTask`: one result per scenario.

    Attributes:
        parts: ``(Task, TaskResult)`` of each scenario with runs in the task.
        fingerprint: the worker's model fingerprint (checked like a TaskResult's).
    """

    parts: list = field(default_factory=list)
    fingerprint: str = ""

    @property
    def failures(self) -> list[dict]:
        """Every part's failure records."""
        return [rec for _, result in self.parts for rec in result.failures]


def tree_tasks(
    plan,
    finished: set,
    runs_per_shard: int = RUNS_PER_SHARD,
    fail_runs: frozenset = frozenset(),
    pause: tuple[str, str] | None = None,
) -> Iterator[TreeTask]:
    """The tasks still to run with shared history, like :meth:`BatchPlan.tasks`.

    For each sample, each tree of its forest and each group of ``runs_per_shard``
    replicates (aligned on multiples of it, so a resume forms the same groups): the
    scenarios' unfinished replicates in the group. Generated lazily.
    """
    scenarios = [sc for _, sc in plan.scenarios]
    info = {sc.name: (sc.name, sc.hash, sc.to_dict()) for sc in scenarios}
    forests: dict[str, tuple[Branch, ...]] = {}
    for k in range(plan.design.n):
        values = plan.design.values[k]
        key = canonical(values)
        if key not in forests:
            forests[key] = forest_for(scenarios, values)
        for tree in forests[key]:
            names = tree.names()
            for first in range(0, plan.seeds, runs_per_shard):
                group = range(first, min(first + runs_per_shard, plan.seeds))
                todo = tuple(
                    (name, seeds)
                    for name in names
                    if (seeds := tuple(i for i in group if (name, i, k) not in finished))
                )
                if todo:
                    yield TreeTask(
                        tree,
                        tuple(info[name] for name in names),
                        k,
                        values,
                        todo,
                        plan.root_entropy,
                        fail_runs,
                        pause,
                        plan.streams,
                    )


#: Tree tasks aimed at per worker, against :func:`~experiment.plan.task_size`'s 4 plain
#: ones: a tree task runs a whole tree per replicate, so a batch has few of them, and the
#: last ones, when a worker may wait for the other to finish, weigh more.
TREE_TASKS_PER_WORKER = 8


def tree_task_size(plan, runs_per_shard: int, todo: int, workers: int) -> int:
    """Replicates per tree task: up to ``runs_per_shard``, fewer when trees are few.

    A tree task holds a run of each of its tree's scenarios per replicate, so it is
    counted as (runs of a replicate) / (scenarios per tree) units of work; at least about
    :data:`TREE_TASKS_PER_WORKER` tasks per worker keep the workers busy to the end.
    """
    if workers <= 1:
        return runs_per_shard
    scenarios = [sc for _, sc in plan.scenarios]
    trees = len(forest_for(scenarios, plan.design.values[0]))
    units = -(-todo * trees // max(1, len(scenarios)))
    return max(1, min(runs_per_shard, -(-units // (TREE_TASKS_PER_WORKER * workers))))


def run_tree_task(task: TreeTask):
    """Run every replicate of a :class:`TreeTask`; one ``TaskResult`` per scenario.

    What every executor calls for a tree task (through
    :func:`experiment.executors.run_task`). A run that fails is recorded as a failure; the
    others go on.
    """
    import gc

    import pyarrow as pa

    from . import executors, interrupts, provenance
    from .plan import run_stream

    executors.prepare_process()
    scenarios = {name: executors.scenario_from(h, data) for name, h, data in task.scenarios}
    todo = dict(task.todo)
    tables: dict[str, list] = {name: [] for name in todo}
    done: dict[str, list[int]] = {name: [] for name in todo}
    failures: dict[str, list[dict]] = {name: [] for name in todo}
    for seed in task.seeds:
        wanted = {name for name, seeds in todo.items() if seed in seeds}
        if task.pause:
            for name in wanted:
                interrupts.pause_at(f"run:{name}:{seed}:{task.sample}", task.pause)
        injected = {name for name in wanted if (name, seed, task.sample) in task.fail_runs}
        outcomes = run_tree(
            task.tree,
            scenarios,
            run_stream(task.root_entropy, seed, task.sample, task.streams),
            dict(task.values),
            wanted - injected,
        )
        for name in sorted(wanted, key=list(todo).index):
            key = (name, seed, task.sample)
            outcome = outcomes.get(name)
            if name in injected:
                failures[name].append(_injected_failure(key, executors.FAIL_ENV))
            elif isinstance(outcome, Failure):
                failures[name].append(_failure_record(key, outcome))
            else:
                tables[name].append(executors.run_table(outcome, name, seed, task.sample))
                done[name].append(seed)
        del outcomes
        if executors.frozen():
            gc.collect()  # free the runs' reference cycles now (see prepare_process)
    if not executors.frozen():
        gc.collect()
    fingerprint = provenance.model_fingerprint()
    parts = []
    for name in todo:
        table = pa.concat_tables(tables[name]) if tables[name] else None
        result = executors.TaskResult(table, done[name], failures[name], fingerprint)
        parts.append((task.part(name), result))
    return TreeResult(parts, fingerprint)


def _injected_failure(key, hook: str) -> dict:
    """The failure record of a run the failure testing hook names (raised, as in run_task)."""
    from . import store

    try:
        raise RuntimeError(f"injected failure of run {key} ({hook} testing hook)")
    except RuntimeError as exc:
        return store.failure_record(key, exc, traceback.format_exc())


def _failure_record(key, failure: Failure) -> dict:
    """The failures-log record of a run that met ``failure``."""
    from . import store

    rec = store.failure_record(key, failure.error, failure.traceback)
    if failure.shared_with is not None:
        scenario, quarter = failure.shared_with
        rec["shared_history"] = {"scenario": scenario, "quarter": quarter}
        rec["message"] = (
            f"{rec['message']} (raised in {quarter}, in the history this run shares with "
            f"'{scenario}': the run meets it when run alone too)"
        )
    return rec


def describe(plan, label=None) -> list[str]:
    """Text lines on the batch's sharing for sample 0: its trees and quarters simulated."""
    from model.calendar import ordinal_to_label, quarter_ordinal

    scenarios = [sc for _, sc in plan.scenarios]
    forest = forest_for(scenarios, plan.design.values[0])
    ends = {sc.name: (quarter_ordinal(sc.start), quarter_ordinal(sc.end)) for sc in scenarios}
    shared = sum(tree.quarters(ends) for tree in forest)
    alone = sum(e - s + 1 for s, e in ends.values())
    lines = [
        f"shared history: {len(scenarios)} scenario(s) in {len(forest)} tree(s); a replicate "
        f"simulates {shared} quarters instead of {alone} ({shared / max(1, alone):.0%})"
    ]
    for tree in forest:
        lines.extend("  " + line for line in tree.describe(label or ordinal_to_label))
    return lines


__all__ = [
    "Branch",
    "Failure",
    "RunInputs",
    "TreeResult",
    "TreeTask",
    "build_forest",
    "canonical",
    "describe",
    "first_difference",
    "forest_for",
    "run_inputs",
    "run_tree",
    "run_tree_task",
    "tree_task_size",
    "tree_tasks",
]
