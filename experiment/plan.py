"""The plan of a batch: its scenarios, replicates, root entropy and samples, and its tasks.

A batch is the cross product of

* **scenarios** (files, resolved with ``extends`` and ``--set``),
* **replicates** ``i = 0..seeds-1``: replicate *i* draws from
  :func:`model.run.replicate_seed` ``(root_entropy, i)`` in every scenario (common random
  numbers, so scenario differences are paired comparisons), and
* **parameter samples** ``k = 0..K-1`` (:mod:`experiment.sampling`), the same in every
  scenario.

Across samples, the streams are ``shared`` (replicate *i* has the same stream in every
sample: common random numbers across parameter points, which a sensitivity analysis wants)
or ``per-sample`` (replicate *i* of sample *k* >= 1 draws from child ``(i, k)`` of the root,
sample 0 from child ``i``: every run of a scenario has its own stream, which bands pooled
over seeds and parameter draws need; with shared streams, 2 seeds x 25 draws would hold
only 2 seed realisations). See :func:`run_stream`.

Every run depends only on its key (scenario, replicate, sample) and the root entropy, so a
:class:`BatchPlan` and the set of runs already finished determine the remaining
:class:`Task` s exactly, whatever the executor.

Only the standard library is imported at module level.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import BatchError
from .sampling import AUTO, SampleDesign, auto_spec, design_samples, parse_sample_spec

#: Default number of runs (consecutive replicates of one scenario and sample) per shard.
RUNS_PER_SHARD = 10

RunKey = tuple[str, int, int]
"""``(scenario, seed, sample)``: identifies one run of a batch."""

#: How replicate streams relate across parameter samples (see the module docstring).
STREAMS = ("shared", "per-sample")


def run_stream(root_entropy: int, replicate: int, sample: int, streams: str = "shared"):
    """The ``SeedSequence`` of run (replicate, sample), the same in every scenario.

    ``shared``: child ``replicate`` of the root in every sample. ``per-sample``: child
    ``(replicate, sample)`` for samples >= 1, child ``replicate`` for sample 0 (so a batch
    without parameter samples has the streams it always had).
    """
    import numpy as np

    from model.run import replicate_seed

    if streams == "per-sample" and sample > 0:
        return np.random.SeedSequence(root_entropy, spawn_key=(replicate, sample))
    return replicate_seed(root_entropy, replicate)


@dataclass(frozen=True)
class Task:
    """A unit of work sent to a worker: some replicates of one scenario and one sample.

    Carries everything a run needs (the resolved scenario as plain data, the sampled
    values, the root entropy), so a worker needs no access to the scenario files or the
    store, which is what lets it run on a remote cluster.
    """

    scenario: str
    scenario_hash: str
    scenario_data: dict
    sample: int
    values: dict
    seeds: tuple[int, ...]
    root_entropy: int
    fail_runs: frozenset = frozenset()
    pause: tuple[str, str] | None = None  # the pause testing hook's (point, file), if a run's
    streams: str = "shared"  # see run_stream

    def run_keys(self) -> list[RunKey]:
        """The run keys of this task."""
        return [(self.scenario, s, self.sample) for s in self.seeds]


@dataclass
class BatchPlan:
    """Everything that defines a batch's data: scenarios, seeds, root entropy, samples.

    Two invocations with equal :meth:`identity` produce the same data, which is what a
    resume checks.
    """

    scenarios: list  # [(file, Scenario)]
    seeds: int
    root_entropy: int
    design: SampleDesign
    overrides: list[str]
    streams: str = "shared"

    @property
    def total(self) -> int:
        """Number of runs: scenarios x seeds x samples."""
        return len(self.scenarios) * self.seeds * self.design.n

    def identity(self) -> dict:
        """The fields a resume must match exactly."""
        return {
            "scenarios": {sc.name: sc.hash for _, sc in self.scenarios},
            "seeds": self.seeds,
            "root_entropy": self.root_entropy,
            "samples": self.design.describe(),
            "sample_values": self.design.values,
            "streams": self.streams,
        }

    def all_keys(self) -> Iterator[RunKey]:
        """Every run key of the batch."""
        for _, sc in self.scenarios:
            for k in range(self.design.n):
                for i in range(self.seeds):
                    yield (sc.name, i, k)

    def tasks(
        self,
        finished: set,
        runs_per_shard: int = RUNS_PER_SHARD,
        fail_runs: frozenset = frozenset(),
        pause: tuple[str, str] | None = None,
    ) -> Iterator[Task]:
        """The tasks still to run: groups of up to ``runs_per_shard`` unfinished replicates.

        Generated lazily (a batch of a million runs does not build a million objects), in
        scenario, sample, replicate order. Groups are aligned on multiples of
        ``runs_per_shard`` so an interrupted batch resumes with the same groups.
        """
        for _, sc in self.scenarios:
            data = sc.to_dict()
            h = sc.hash
            for k in range(self.design.n):
                values = self.design.values[k]
                for start in range(0, self.seeds, runs_per_shard):
                    todo = tuple(
                        i
                        for i in range(start, min(start + runs_per_shard, self.seeds))
                        if (sc.name, i, k) not in finished
                    )
                    if todo:
                        yield Task(
                            sc.name,
                            h,
                            data,
                            k,
                            values,
                            todo,
                            self.root_entropy,
                            fail_runs,
                            pause,
                            self.streams,
                        )


def task_size(runs_per_shard: int, todo: int, workers: int) -> int:
    """Replicates per task: ``runs_per_shard``, smaller when a batch is small.

    At least about 4 tasks per worker keep every worker busy to the end; a task never
    spans scenarios or samples. Shard names follow the runs they hold, so a resume may use
    another size without any effect on the data.
    """
    if workers <= 1:
        return runs_per_shard
    return max(1, min(runs_per_shard, math.ceil(todo / (4 * workers))))


def load_scenarios(paths: Sequence[str | Path], overrides: Sequence[str] = ()) -> list:
    """Load and resolve the scenario files; ``[(file, Scenario)]`` in the order given.

    Raises:
        BatchError: with every problem of every file (unknown keys, bad values, missing
            files, duplicate scenario names).
    """
    from model.scenario import ScenarioError, load_scenario

    if not paths:
        raise BatchError(
            "no scenario files given (e.g. decouple batch scenarios/*.yaml --seeds 20)"
        )
    out, problems, seen = [], [], {}
    for p in paths:
        try:
            sc = load_scenario(p, list(overrides))
        except ScenarioError as exc:
            problems.extend(exc.problems)
            continue
        except OSError as exc:  # e.g. a file (or a parent) not readable by this user
            problems.append(f"{exc.filename or p}: cannot read the scenario ({exc.strerror})")
            continue
        if sc.name in seen:
            problems.append(
                f"{p}: scenario name '{sc.name}' is also the name of {seen[sc.name]}; "
                "names in a batch must be unique"
            )
            continue
        seen[sc.name] = str(p)
        out.append((str(p), sc))
    if problems:
        # --set problems repeat once per file: report each once.
        raise BatchError(list(dict.fromkeys(problems)))
    return out


def _fresh_entropy() -> int:
    """Fresh 128-bit root entropy for a new batch."""
    import numpy as np

    return int(np.random.SeedSequence().entropy)


def _fresh_seed() -> int:
    """A fresh seed for a new batch's sample design."""
    import numpy as np

    return int(np.random.SeedSequence().generate_state(1, np.uint64)[0])


def make_plan(
    scenario_paths: Sequence[str | Path],
    seeds: int,
    sample: str | tuple | None = AUTO,
    overrides: Sequence[str] = (),
    root_entropy: int | None = None,
    sample_seed: int | None = None,
    previous: dict | None = None,
    streams: str | None = None,
    design: SampleDesign | None = None,
) -> BatchPlan:
    """Resolve the scenarios and draw the sample design.

    A root entropy or sample seed not given is taken from ``previous`` (the manifest of
    the store being resumed) or drawn fresh; either way it is recorded. ``sample="auto"``
    (the default) is the store's design, or the scenarios' declared uncertainty
    (:func:`experiment.sampling.auto_spec`); ``None`` or ``"none"`` samples nothing.
    ``streams`` not given is the resumed store's (``shared`` for a store made before the
    choice existed), else ``per-sample`` for the default design (its bands pool seeds and
    draws) and ``shared`` for one given explicitly.

    A ready-made ``design`` (the Morris and Saltelli designs of
    :mod:`experiment.sensitivity`) is used instead of drawing one from ``sample``, which
    must then be ``None``; it is recorded and checked on resume like a drawn one.

    Raises:
        BatchError: on bad input.
    """
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise BatchError(f"--seeds must be a whole number of at least 1, got {seeds!r}")
    if design is not None and sample is not None:
        raise BatchError("give either --sample or a ready-made sample design, not both")
    method, n = parse_sample_spec(sample)
    scenarios = load_scenarios(scenario_paths, overrides)
    auto_note = None
    auto = method == AUTO
    if auto:
        (method, n), auto_note = auto_spec([sc for _, sc in scenarios], previous)
    if streams is None:
        if previous is not None:
            streams = previous.get("streams", "shared")
        else:
            streams = "per-sample" if auto else "shared"
    if streams not in STREAMS:
        raise BatchError(f"--streams {streams}: expected one of {', '.join(STREAMS)}")
    if root_entropy is None:
        prev = (previous or {}).get("root_entropy")
        root_entropy = int(prev) if isinstance(prev, int) else _fresh_entropy()
    if root_entropy < 0:
        raise BatchError(f"--root-entropy must be a non-negative integer, got {root_entropy}")
    if method != "none" and sample_seed is None:
        prev = (previous or {}).get("samples") or {}
        prev_seed = prev.get("seed") if isinstance(prev, dict) else None
        sample_seed = int(prev_seed) if isinstance(prev_seed, int) else _fresh_seed()
    if sample_seed is not None and sample_seed < 0:
        raise BatchError(f"--sample-seed must be a non-negative integer, got {sample_seed}")
    fixed = [o.split("=", 1)[0].strip() for o in overrides]
    if design is None:
        design = design_samples(
            [sc for _, sc in scenarios], method, n, sample_seed if method != "none" else None, fixed
        )
    if auto_note:
        design.notes.insert(0, auto_note)
    return BatchPlan(scenarios, seeds, int(root_entropy), design, list(overrides), streams)
