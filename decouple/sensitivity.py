"""``decouple sensitivity``: which assumptions drive the answer, year by year.

Two ways in (``docs/sensitivity.md``):

* ``decouple sensitivity BASELINE [SCENARIO...]`` runs a study: Morris screening of every
  sampleable numeric parameter (:func:`experiment.sensitivity.factor_space`), then Sobol'
  indices of the screened top set from Saltelli's design. Each stage's points run as a
  batch (process pool, resumable) into ``OUT/morris`` and ``OUT/sobol``; the indices go
  to ``OUT/indices/`` and the figures to ``OUT/figures/``. Scenarios after the first are
  also analysed as paired effects (scenario minus baseline at the same point and seeds).
* ``decouple sensitivity --from-store DIR`` estimates PAWN and given-data first-order
  indices from an existing batch of any sample design (``--sample lhs:K``), seeds
  averaged first, into ``DIR/sensitivity/``: no model runs.

This module only strings the stages together: designs and running are in
:mod:`experiment.sensitivity`, estimation and figures in :mod:`analysis.sensitivity`.
Only the standard library is imported at module level.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from experiment import sensitivity as design_mod
from experiment.errors import BatchError

PROG = "decouple sensitivity"


@dataclass(frozen=True)
class StudyOptions:
    """What a study runs and how (the fields of the command line).

    Attributes:
        scenario_paths: scenario files; the first is the baseline.
        out: the sensitivity store.
        outputs: output columns to analyse (``None``: the defaults).
        seeds: replicate seeds per design point (shared by all points and scenarios).
        spread: relative half-width of a factor without an ``uncertain`` range.
        trajectories: Morris trajectories r.
        levels: Morris grid levels.
        top: size of the screened set analysed with Sobol'.
        base_samples: Saltelli's base sample N (a power of two).
        screen_output: the output whose Morris indices choose the top set.
        year: the tornado figures' year.
        jobs: local worker processes.
        root_entropy: root of the replicate seeds (default: the store's, or fresh).
        design_seed: seed of the Morris and Saltelli designs (default: the store's, or fresh).
        overrides: ``--set`` strings (fixed, so not varied).
        parameters: shell patterns restricting the factors (``demand.*``).
        progress: show progress bars.
        dry_run: count the runs and estimate the time; run nothing.
        command: the command line to record.
    """

    scenario_paths: Sequence[str]
    out: Path
    outputs: Sequence[str] | None = None
    seeds: int = design_mod.DEFAULT_SEEDS
    spread: float = design_mod.DEFAULT_SPREAD
    trajectories: int = design_mod.DEFAULT_TRAJECTORIES
    levels: int = design_mod.DEFAULT_LEVELS
    top: int = design_mod.DEFAULT_TOP
    base_samples: int = design_mod.DEFAULT_BASE_SAMPLES
    screen_output: str = "self_sufficiency_pct"
    year: int = 2030
    jobs: int = 1
    root_entropy: int | None = None
    design_seed: int | None = None
    overrides: Sequence[str] = ()
    parameters: Sequence[str] = ()
    progress: bool = True
    dry_run: bool = False
    command: str = ""


@dataclass
class StudyResult:
    """What a study produced: its store, the runs, the screened set and the files."""

    out: Path
    runs: dict = field(default_factory=dict)
    ran: int = 0
    screened: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    dry_run: bool = False


class StageFailed(RuntimeError):
    """Some runs of a stage failed: no indices can be estimated until they are rerun."""


# --------------------------------------------------------------------------------------
# A study
# --------------------------------------------------------------------------------------


def check_outputs(outputs: Sequence[str] | None, screen_output: str) -> list[str]:
    """The outputs to analyse (screen output included), or ``BatchError`` naming bad ones."""
    from analysis.sensitivity import DEFAULT_OUTPUTS
    from model.outputs import OUTPUT_BY_NAME, OUTPUT_COLUMNS

    if outputs is None:
        chosen = list(DEFAULT_OUTPUTS)
    elif list(outputs) == ["all"]:
        chosen = list(OUTPUT_COLUMNS)
    else:
        chosen = list(dict.fromkeys(outputs))
    unknown = [o for o in [*chosen, screen_output] if o not in OUTPUT_BY_NAME]
    if unknown:
        raise BatchError(
            f"--outputs/--screen-output: unknown output(s) {', '.join(unknown)}; see "
            "docs/outputs.md for the columns (or --outputs all)"
        )
    return list(dict.fromkeys([screen_output, *chosen]))


def _fresh_seed() -> int:
    import numpy as np

    return int(np.random.SeedSequence().generate_state(1)[0])


def _stored_settings(out: Path) -> dict:
    """The settings of an existing study at ``out`` (for seeds a rerun reuses), else ``{}``."""
    import json

    from experiment.store import MANIFEST

    try:
        manifest = json.loads((Path(out) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(manifest, dict) or manifest.get("kind") != design_mod.KIND:
        return {}
    settings = manifest.get("settings")
    return settings if isinstance(settings, dict) else {}


def run_study(options: StudyOptions, log: Callable[[str], None] | None = None) -> StudyResult:
    """Run (or resume, or dry-run) a study: Morris screening, then Sobol' of the top set.

    Raises:
        BatchError: on bad input (files, outputs, settings, a store holding another study).
        StageFailed: if runs of a stage failed (they are recorded; rerun to retry).
    """
    from experiment.plan import load_scenarios

    log = log or (lambda msg: print(msg, file=sys.stderr))
    _check_settings(options)
    outputs = check_outputs(options.outputs, options.screen_output)
    scenarios = [sc for _, sc in load_scenarios(options.scenario_paths, options.overrides)]
    fixed = [o.split("=", 1)[0].strip() for o in options.overrides]
    factors, notes = design_mod.factor_space(scenarios, options.spread, fixed, options.parameters)
    for note in notes:
        log(f"{PROG}: {note}")
    stored = _stored_settings(options.out)
    settings = {
        "spread": options.spread,
        "trajectories": options.trajectories,
        "levels": options.levels,
        "top": min(options.top, len(factors)),
        "base_samples": options.base_samples,
        "seeds": options.seeds,
        "screen_output": options.screen_output,
        "overrides": list(options.overrides),
        "parameters": list(options.parameters),
        "root_entropy": _pick(options.root_entropy, stored.get("root_entropy")),
        "design_seed": _pick(options.design_seed, stored.get("design_seed")),
    }
    n_sc, d, k = len(scenarios), len(factors), settings["top"]
    morris_n = options.trajectories * (d + 1)
    sobol_n = options.base_samples * (k + 2)
    runs = {
        "morris": n_sc * options.seeds * morris_n,
        "sobol": n_sc * options.seeds * sobol_n,
    }
    log(
        f"{PROG}: {d} factors; Morris: {options.trajectories} trajectories x {d + 1} = "
        f"{morris_n} points; Sobol': top {k} x Saltelli N = {options.base_samples} = "
        f"{sobol_n} points; x {n_sc} scenario(s) x {options.seeds} seed(s) = "
        f"{runs['morris'] + runs['sobol']} runs"
    )
    if options.dry_run:
        _dry_run(scenarios[0], runs, options.jobs)
        return StudyResult(options.out, runs, dry_run=True)
    manifest = design_mod.open_study(
        options.out, design_mod.study_identity(scenarios, factors, settings), options.command
    )
    return _stages(options, scenarios, factors, settings, outputs, manifest, runs, log)


def _pick(given, stored):
    if given is not None:
        return int(given)
    return int(stored) if isinstance(stored, int) else _fresh_seed()


def _check_settings(o: StudyOptions) -> None:
    problems = []
    for name in ("seeds", "trajectories", "top", "base_samples", "jobs"):
        value = getattr(o, name)
        if not isinstance(value, int) or value < 1:
            problems.append(f"--{name.replace('_', '-')} must be at least 1, got {value!r}")
    if problems:
        raise BatchError(problems)
    design_mod.morris_points(1, o.trajectories, o.levels, 0)  # checks r and levels
    design_mod.saltelli_points(1, o.base_samples, 0)  # checks N


def _dry_run(scenario, runs: dict, jobs: int) -> None:
    """Print the runs of each stage and a wall-time estimate from a 2-run pilot."""
    from model.run import replicate_seed, simulate

    t0 = time.perf_counter()
    for i in range(2):
        simulate(scenario, replicate_seed(0, i))
    per_run = (time.perf_counter() - t0) / 2
    total = sum(runs.values())
    print(f"{PROG} (dry run): Morris {runs['morris']} runs, Sobol' {runs['sobol']} runs")
    print(f"  pilot: {scenario.name}, 2 runs in-process: {per_run:.2f} s per run")
    print(f"  estimated wall time with --jobs {jobs}: about {per_run * total / jobs / 60:.1f} min")


def _stages(options, scenarios, factors, settings, outputs, manifest, runs, log) -> StudyResult:
    """Morris stage, screening, Sobol' stage, tables and figures."""
    from analysis import sensitivity as est

    out, baseline = Path(options.out), scenarios[0].name
    seed, names = settings["design_seed"], [f.path for f in factors]
    files: list[Path] = []
    stage_log = _stage_log(log)

    # Morris screening over every factor
    points = design_mod.morris_points(len(factors), options.trajectories, options.levels, seed)
    design = design_mod.sample_design("morris", factors, points, seed)
    ran = _run(out / design_mod.MORRIS_DIR, options, design, settings, stage_log)
    values = est.point_values(out / design_mod.MORRIS_DIR, outputs, len(points))
    long = est.with_effects(values, baseline)
    morris, skipped_m = est.morris_indices(long, points, names, options.levels, seed=seed)
    files += est.write_table(morris, out / est.INDICES_DIR, "morris")
    top = est.screen(morris, settings["top"], options.screen_output)
    if manifest.get("screened") not in (None, top):
        raise BatchError(
            f"{out}: the screened set {top} differs from the stored {manifest['screened']} "
            "(the Morris data changed?); choose another --out"
        )
    manifest["screened"] = top
    design_mod.write_manifest(out, manifest)
    log(f"{PROG}: screened by Morris mu* of {options.screen_output}: {', '.join(top)}")

    # Sobol' indices of the top set
    by_path = {f.path: f for f in factors}
    top_factors = [by_path[p] for p in top]
    s_points = design_mod.saltelli_points(len(top), options.base_samples, seed + 1)
    s_design = design_mod.sample_design("saltelli", top_factors, s_points, seed + 1)
    ran += _run(out / design_mod.SOBOL_DIR, options, s_design, settings, stage_log)
    s_values = est.point_values(out / design_mod.SOBOL_DIR, outputs, len(s_points))
    s_long = est.with_effects(s_values, baseline)
    sobol, skipped_s = est.sobol_indices(s_long, top, len(s_points), seed=seed)
    files += est.write_table(sobol, out / est.INDICES_DIR, "sobol")

    figures = est.write_figures(sobol, "sobol", out / est.FIGURES_DIR, options.year, None, baseline)
    figures += est.write_figures(
        morris, "morris", out / est.FIGURES_DIR, options.year, [options.screen_output], baseline
    )
    files += figures
    results = {
        "kind": "study",
        "primary": "sobol",
        "baseline": baseline,
        "scenarios": [sc.name for sc in scenarios],
        "outputs": outputs,
        "year": options.year,
        "screened": top,
        "tables": {"morris": "indices/morris.csv", "sobol": "indices/sobol.csv"},
        "figures": [str(p.relative_to(out)) for p in figures],
        "skipped_constant": {"morris": skipped_m, "sobol": skipped_s},
        "method": _method_text(len(factors), settings, len(scenarios), baseline),
    }
    est.write_results(out, results)
    from experiment import provenance

    manifest["finished"] = provenance.now()
    design_mod.write_manifest(out, manifest)
    return StudyResult(out, runs, ran, top, files)


def _method_text(d: int, s: dict, n_sc: int, baseline: str) -> str:
    effects = (
        f" Scenarios after {baseline} are also analysed as paired effects (scenario minus "
        f"{baseline} at the same parameter values and seeds)."
        if n_sc > 1
        else ""
    )
    return (
        f"Morris screening of {d} parameters ({s['trajectories']} trajectories, "
        f"{s['levels']} levels; each parameter over its 'uncertain' range or its value "
        f"+/-{s['spread']:.0%}), then first- and total-order Sobol' indices of the "
        f"{s['top']} parameters with the largest Morris mu* for {s['screen_output']} "
        f"(Saltelli design, N = {s['base_samples']}); calendar-year values, "
        f"{s['seeds']} seed(s) per point averaged first; 95% bootstrap intervals.{effects} "
        "Parameters outside the top set are held at their values, so ST describes shares "
        "of the variance the top set causes."
    )


def _stage_log(log):
    import re

    def stage_log(msg: str) -> None:
        msg = msg.replace("decouple batch", PROG, 1)
        log(re.sub(r"rerun the same command with --out \S+", "rerun the same command", msg))

    return stage_log


def _run(stage_out: Path, options: StudyOptions, design, settings: dict, log) -> int:
    """Run one stage's design as a batch; return the runs done now.

    Raises:
        StageFailed: if runs failed.
    """
    from experiment.store import FAILURES

    result = design_mod.run_stage(
        stage_out,
        list(options.scenario_paths),
        design,
        seeds=options.seeds,
        root_entropy=settings["root_entropy"],
        overrides=options.overrides,
        jobs=options.jobs,
        progress=options.progress,
        command=options.command,
        log=log,
    )
    if result.failed:
        raise StageFailed(
            f"{result.failed} of {result.total} runs of {stage_out} failed (see "
            f"{stage_out / FAILURES}); no indices without them. Rerun the same "
            "command to retry them"
        )
    return result.ran


# --------------------------------------------------------------------------------------
# The cheap path: an existing batch
# --------------------------------------------------------------------------------------


def analyse_store(
    store_dir: Path,
    outputs: Sequence[str] | None = None,
    baseline: str = "baseline",
    year: int = 2030,
    out: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Path]:
    """PAWN and given-data S1 of an existing batch's sampled parameters; no model runs.

    Returns:
        The files written (tables, figures) under ``out`` (default ``DIR/sensitivity``).

    Raises:
        BatchError: if the store has no parameter sample (or too few points), or an
            output is unknown.
    """
    import numpy as np

    from analysis import sensitivity as est
    from analysis.load import load_manifest

    log = log or (lambda msg: print(msg, file=sys.stderr))
    outputs = check_outputs(outputs, "self_sufficiency_pct")
    try:
        manifest = load_manifest(store_dir)
    except ValueError as exc:
        raise BatchError(f"--from-store: {exc}") from None
    samples = manifest.get("samples") if isinstance(manifest.get("samples"), dict) else {}
    paths, values = samples.get("paths") or [], manifest.get("sample_values")
    n = samples.get("n") if isinstance(samples.get("n"), int) else 0
    if manifest.get("kind") != "batch" or not paths or not isinstance(values, list):
        raise BatchError(
            f"--from-store {store_dir}: not a batch with sampled parameters (run `decouple "
            "batch ... --sample lhs:K` first); nothing to estimate"
        )
    if n < est.MIN_GIVEN_POINTS:
        raise BatchError(
            f"--from-store {store_dir}: {n} parameter sample(s); at least "
            f"{est.MIN_GIVEN_POINTS} are needed (64 or more for useful intervals)"
        )
    x = np.array([[float(v[p]) for p in paths] for v in values])
    try:
        data = est.point_values(store_dir, outputs, n)
    except ValueError as exc:
        raise BatchError(f"--from-store: {exc}") from None
    names = set(data["scenario"])
    if baseline not in names:
        log(f"{PROG}: note: no scenario '{baseline}' in {store_dir}: levels only, no effects")
    long = est.with_effects(data, baseline)
    table, skipped = est.given_data_indices(long, x, paths)
    target = Path(out) if out is not None else Path(store_dir) / est.GIVEN_DATA_DIR
    files = est.write_table(table, target / est.INDICES_DIR, "given_data")
    figures = est.write_figures(table, "given_data", target / est.FIGURES_DIR, year, None, baseline)
    est.write_results(
        target,
        {
            "kind": "given_data",
            "primary": "given_data",
            "source": str(store_dir),
            "baseline": baseline,
            "outputs": outputs,
            "year": year,
            "tables": {"given_data": "indices/given_data.csv"},
            "figures": [str(p.relative_to(target)) for p in figures],
            "skipped_constant": skipped,
            "method": (
                f"PAWN (median KS distance over {est.PAWN_SLIDES} slides, bootstrap interval "
                f"over the {n} sample points) and SALib's given-data first-order index, from "
                f"the batch's {samples.get('method')}:{n} sample of {len(paths)} parameters; "
                "calendar-year values, seeds averaged first."
            ),
        },
    )
    return files + figures


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def register(subparsers) -> None:
    """Add the ``sensitivity`` sub-command to the ``decouple`` CLI."""
    from experiment.batch import _nonneg_int, _pos_int

    p = subparsers.add_parser(
        "sensitivity",
        help="global sensitivity: Morris screening, then Sobol' indices by year (SALib)",
        description=(
            "Morris screening of every sampleable numeric parameter, then Sobol' indices "
            "(Saltelli design) of the top set, for each year of the outputs; scenarios after "
            "the first are also analysed as paired effects. Or, with --from-store, PAWN "
            "indices from an existing sampled batch. See docs/sensitivity.md."
        ),
    )
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="baseline first, then others")
    p.add_argument("--from-store", metavar="DIR", help="estimate from an existing sampled batch")
    p.add_argument("--baseline", default="baseline", help="with --from-store: the baseline")
    p.add_argument("--out", help="sensitivity store (default runs/sensitivity-<timestamp>)")
    p.add_argument(
        "--outputs",
        metavar="A,B",
        help="outputs to analyse, comma-separated, or 'all' (default "
        "self_sufficiency_pct,self_sufficiency_china_hq_pct)",
    )
    d = design_mod
    numbers = (
        ("--seeds", d.DEFAULT_SEEDS, "seeds per design point"),
        ("--trajectories", d.DEFAULT_TRAJECTORIES, "Morris trajectories r"),
        ("--levels", d.DEFAULT_LEVELS, "Morris grid levels (even)"),
        ("--top", d.DEFAULT_TOP, "parameters kept for Sobol'"),
        ("--base-samples", d.DEFAULT_BASE_SAMPLES, "Saltelli base sample N (a power of 2)"),
    )
    for flag, default, what in numbers:
        p.add_argument(flag, type=_pos_int, default=default, help=f"{what} (default {default})")
    p.add_argument(
        "--spread",
        type=float,
        default=d.DEFAULT_SPREAD,
        help=f"relative half-range of a parameter without 'uncertain' (default {d.DEFAULT_SPREAD})",
    )
    p.add_argument(
        "--screen-output",
        default="self_sufficiency_pct",
        metavar="OUTPUT",
        help="output whose Morris mu* picks the top set (default self_sufficiency_pct)",
    )
    p.add_argument(
        "--parameters",
        action="append",
        default=[],
        metavar="PATTERN",
        help="vary only parameters matching this shell pattern, e.g. 'demand.*' (repeatable)",
    )
    p.add_argument("--year", type=_pos_int, default=2030, help="tornado year (default 2030)")
    p.add_argument("--jobs", type=_pos_int, default=None, help="worker processes (default: CPUs)")
    p.add_argument("--root-entropy", type=_nonneg_int, help="root of the replicate seeds")
    p.add_argument("--design-seed", type=_nonneg_int, help="seed of the designs")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="fix a parameter in every scenario (not varied; repeatable)",
    )
    p.add_argument("--dry-run", action="store_true", help="count runs, estimate time; run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_sensitivity)


def _default_out() -> Path:
    from experiment import provenance

    stamp = provenance.now().replace(":", "").replace("-", "").replace("+0000", "Z")
    return Path("runs") / f"sensitivity-{stamp}"


def _cmd_sensitivity(args) -> int:
    """Run ``decouple sensitivity``: 0 done, 1 runs failed, 2 bad input, 128 + signal."""
    from experiment import executors, interrupts

    outputs = args.outputs.split(",") if args.outputs else None
    if args.from_store:
        if args.scenarios:
            return _error("give scenario files or --from-store DIR, not both")
        try:
            out = Path(args.out) if args.out else None
            files = analyse_store(Path(args.from_store), outputs, args.baseline, args.year, out)
        except BatchError as exc:
            return _error(*exc.problems)
        print(f"{PROG}: wrote {len(files)} files under {files[0].parent.parent}")
        return 0
    if not args.scenarios:
        return _error("give at least one scenario file (the baseline first), or --from-store DIR")
    out = Path(args.out) if args.out else _default_out()
    own = sys.argv[1:2] == ["sensitivity"]
    command = (
        "decouple " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if own else "(python API)"
    )
    options = StudyOptions(
        args.scenarios,
        out,
        outputs,
        seeds=args.seeds,
        spread=args.spread,
        trajectories=args.trajectories,
        levels=args.levels,
        top=args.top,
        base_samples=args.base_samples,
        screen_output=args.screen_output,
        year=args.year,
        jobs=args.jobs or os.cpu_count() or 1,
        root_entropy=args.root_entropy,
        design_seed=args.design_seed,
        overrides=args.set,
        parameters=args.parameters,
        progress=not args.quiet,
        dry_run=args.dry_run,
        command=command,
    )
    started = time.perf_counter()
    with interrupts.signals_interrupt():
        try:
            result = run_study(options)
        except BatchError as exc:
            return _error(*exc.problems)
        except (StageFailed, ValueError) as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 1
        except interrupts.Interrupted as exc:
            return _interrupted(out, exc.name, exc.exit_code)
        except KeyboardInterrupt:
            return _interrupted(out, "SIGINT", 130)
        finally:
            if options.jobs > 1:
                executors.stop_forkserver()
    if result.dry_run:
        return 0
    minutes = (time.perf_counter() - started) / 60
    print(
        f"{PROG}: {sum(result.runs.values())} runs ({result.ran} run now), indices and "
        f"{len(result.files)} files in {result.out} ({minutes:.1f} min); top set: "
        f"{', '.join(result.screened)}"
    )
    return 0


def _error(*problems: str) -> int:
    for p in problems:
        print(f"{PROG}: error: {p}", file=sys.stderr)
    return 2


def _interrupted(out: Path, name: str, code: int) -> int:
    print(
        f"{PROG}: interrupted ({name}); finished runs are kept in {out}. Rerun the same "
        "command (with the same --out) to resume.",
        file=sys.stderr,
    )
    return code


__all__ = ["StudyOptions", "StudyResult", "analyse_store", "register", "run_study"]
