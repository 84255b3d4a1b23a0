"""``decouple calibrate``: fit uncertain parameters to the calibration targets by ABC-SMC.

Approximate Bayesian computation by sequential Monte Carlo (pyabc, Klinger et al. 2018;
the choice is argued in ``docs/calibration.md``): particles (parameter vectors) are drawn
from the priors of ``experiment/calibration.yaml``, each is run once through the scenario
to the last target year, and a particle is kept when the distance of its run to the
targets (:func:`experiment.targets.distance`: the RMS miss in tolerances) is under the
generation's threshold, the median distance of the previous generation. The final
generation's weighted particles are the **ensemble**: a file of plausible parameter
vectors (:mod:`model.ensemble`) a scenario declares with ``uncertain_ensemble`` and a batch
draws from.

pyabc works on unbounded coordinates ``z = Phi^-1(F(theta))``, ``F`` the prior's CDF and
``Phi`` the standard normal's: every ``z`` has a standard normal prior, which pyabc's
Gaussian perturbation kernel matches in the tails and meets no boundary. The importance
weights (prior over proposal density) then stay even. Measured in two first tries of the
baseline calibration (150 particles, 14 parameters): on the bounded parameters themselves
the effective sample size fell to 36, then 6, of 150 by the second and third generation
(the kernel loses mass outside the uniform priors' box, 14 times over); on logistic
coordinates ``logit(F(theta))`` to 18 by the second (the logistic prior's tails are heavier
than the Gaussian kernel's).

The calibration store (default ``runs/calibration-<scenario>``) is resumable like a batch
store: pyabc's SQLite history ``abc.db`` holds every finished generation, so rerunning the
same command continues from the last finished one (a generation interrupted midway is run
again), and a larger ``--generations`` extends a finished calibration. The store's
``calibration.json`` records what was asked (targets, priors, scenario, population, seeds,
model fingerprint); a resume that asks for another calibration, or runs other model code,
is refused. Each run's seed derives from the root entropy and the particle's values, so a
particle's run is reproducible; the proposals themselves are pyabc's (numpy's global
generator, per worker process), so two calibrations agree in distribution, not bit for bit.

Outputs, rewritten at the end of every invocation: the ensemble file, ``fit.csv`` and
``fit.md`` (per target: figure, tolerance, the defaults' fit, the ensemble's median and 90%
range, the share of the ensemble within one tolerance), ``generations.csv`` (threshold,
proposals, acceptance rate) and ``posterior_marginals.png``.

Only the standard library is imported at module level (pyabc, numpy and the model inside
the functions): the CLI imports this module to register the sub-command.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROG = "decouple calibrate"
#: The store's record of what was asked.
MANIFEST = "calibration.json"
#: pyabc's history (SQLite).
DB = "abc.db"
#: Replicates of the scenario at its defaults, for the fit table's "defaults" column.
DEFAULT_CHECK_SEEDS = 5
#: First element of every calibration run's spawn key, so its streams differ from batch
#: replicates' (whose spawn key is ``(replicate,)``).
SEED_STREAM = 0xCA1
#: The project's root (settings.scenario is relative to it).
ROOT = Path(__file__).resolve().parent.parent
INSTALL_HINT = (
    "decouple calibrate needs pyabc, an optional dependency: pip install -e '.[calibrate]'"
)


@dataclass(frozen=True)
class CalibrateOptions:
    """What :func:`calibrate` runs; ``None`` fields take the calibration file's settings."""

    scenario: str | Path | None = None
    config: str | Path | None = None
    out: str | Path | None = None
    ensemble: str | Path | None = None
    population: int | None = None
    generations: int | None = None
    min_acceptance_rate: float | None = None
    min_epsilon: float | None = None
    root_entropy: int | None = None
    jobs: int = 1
    max_minutes: float | None = None
    progress: bool = True
    command: str | None = None


@dataclass
class CalibrationResult:
    """Outcome of :func:`calibrate`: where things are and how the fit went."""

    out: Path
    ensemble: Path
    generations: int
    stopped: str
    fit: list[dict] = field(default_factory=list)
    table: list[dict] = field(default_factory=list)


# --------------------------------------------------------------------------------------
# The model as pyabc sees it
# --------------------------------------------------------------------------------------


def pyabc_name(path: str) -> str:
    """A parameter path as a pyabc parameter name (dots are not safe in its SQL columns)."""
    return path.replace(".", "__")


def applied_values(values: dict[str, float]) -> dict[str, float | int]:
    """Values as a run applies them: integer parameters rounded (as a batch's samples are)."""
    from model import parameters as params_mod

    out = {}
    for path, v in values.items():
        out[path] = round(float(v)) if isinstance(params_mod.default_value(path), int) else float(v)
    return out


def run_seed(root_entropy: int, sample: dict[str, Any]):
    """The random stream of a calibration run: from the root entropy and the values run."""
    import zlib

    import numpy as np

    key = zlib.crc32(json.dumps(sample, sort_keys=True).encode())
    return np.random.SeedSequence(root_entropy, spawn_key=(SEED_STREAM, key))


class Coordinates:
    """The map between pyabc's coordinates ``z`` and parameter values: ``F^-1(Phi(z))``.

    ``z = Phi^-1(F(theta))`` is standard normal when ``theta`` follows its prior ``F`` (any
    continuous prior), so the pyabc prior is a standard normal in every coordinate.
    """

    #: Phi(z) is clipped to [EPS, 1 - EPS] so that an unbounded prior stays finite.
    EPS = 1e-12

    def __init__(self, config):
        self.paths = list(config.parameters)
        self.frozen = {q: config.parameters[q].prior.frozen() for q in self.paths}

    def values(self, z: dict[str, float]) -> dict[str, float]:
        """``{path: theta}`` of one particle's ``{pyabc name: z}``."""
        from scipy.special import ndtr

        out = {}
        for q in self.paths:
            u = float(ndtr(float(z[pyabc_name(q)])))
            out[q] = float(self.frozen[q].ppf(min(max(u, self.EPS), 1 - self.EPS)))
        return out

    def values_array(self, frame) -> Any:
        """Parameter values (members x paths) of a DataFrame of pyabc coordinates."""
        import numpy as np
        from scipy.special import ndtr

        cols = []
        for q in self.paths:
            u = np.clip(ndtr(frame[pyabc_name(q)].to_numpy(dtype=float)), self.EPS, 1 - self.EPS)
            cols.append(self.frozen[q].ppf(u))
        return np.column_stack(cols)


class Simulator:
    """pyabc's model: one run of the scenario for a particle, reduced to the targets' statistics.

    A run that fails returns NaN statistics (an infinite distance: the particle is rejected)
    rather than stopping the calibration.
    """

    def __init__(self, scenario, coordinates: Coordinates | None, targets: dict, root_entropy: int):
        self.scenario = scenario
        self.coordinates = coordinates
        self.targets = targets
        self.root_entropy = int(root_entropy)

    def statistics_of(self, sample: dict[str, Any], seed) -> dict[str, float]:
        """The targets' statistics of one run with ``sample`` applied."""
        from model.run import simulate

        from .targets import statistics

        try:
            columns = simulate(self.scenario, seed, sample=sample)
            params = self.scenario.resolved_parameters(sample)
        except Exception:  # noqa: BLE001 - a failed run is a rejected particle
            return {name: math.nan for name in self.targets}
        return statistics(columns, self.targets, params)

    def __call__(self, par) -> dict[str, float]:
        """The statistics of the particle ``par`` (a pyabc ``Parameter``)."""
        sample = applied_values(self.coordinates.values(par))
        return self.statistics_of(sample, run_seed(self.root_entropy, sample))


class TargetDistance:
    """pyabc's distance: :func:`experiment.targets.distance` (the observed data are the targets)."""

    def __init__(self, targets: dict):
        self.targets = targets

    def __call__(self, x: dict, x_0: dict) -> float:
        """The distance of the statistics ``x`` to the targets (``x_0`` is their figures)."""
        from .targets import distance

        return distance(x, self.targets)


def shortened(scenario, end: str):
    """``scenario`` ending at ``end``: later events dropped (a target-horizon run is cheaper)."""
    from model.calendar import quarter_ordinal

    last = quarter_ordinal(end)
    if last > quarter_ordinal(scenario.end):
        return scenario
    events = [e for e in scenario.events if quarter_ordinal(e.at) <= last]
    return scenario.model_copy(update={"end": end, "events": events})


def priors(config) -> Any:
    """The pyabc prior: a standard normal per coordinate (see :class:`Coordinates`)."""
    import pyabc

    return pyabc.Distribution(
        **{pyabc_name(path): pyabc.RV("norm", 0, 1) for path in config.parameters}
    )


# --------------------------------------------------------------------------------------
# Running (and resuming) a calibration
# --------------------------------------------------------------------------------------


@dataclass
class _Plan:
    """A calibration resolved from the file and the options."""

    config: Any
    config_path: Path
    scenario_path: Path
    scenario: Any  # the full horizon (for its name and hash)
    short: Any  # the target horizon
    out: Path
    ensemble: Path
    population: int
    generations: int
    min_acceptance_rate: float
    min_epsilon: float
    root_entropy: int

    def identity(self) -> dict:
        """What a resume must match."""
        from . import provenance

        return {
            "calibration_sha256": self.config.sha256(),
            "scenario": {"name": self.scenario.name, "hash": self.scenario.hash},
            "horizon_end": self.short.end,
            "population": self.population,
            "root_entropy": self.root_entropy,
            "model_fingerprint": provenance.model_fingerprint(),
        }


def plan(options: CalibrateOptions):
    """Resolve the calibration file, the scenario and the options.

    Raises:
        CalibrationError: bad file, scenario or option.
    """
    from model.scenario import ScenarioError, load_scenario

    from .targets import CONFIG_FILE, CalibrationError, load_config

    config_path = Path(options.config) if options.config is not None else CONFIG_FILE
    config = load_config(config_path)
    s = config.settings
    scen = Path(options.scenario) if options.scenario is not None else ROOT / s.scenario
    try:
        scenario = load_scenario(scen, ensemble=False)
    except ScenarioError as exc:
        raise CalibrationError(exc.problems) from None
    population = options.population if options.population is not None else s.population
    generations = options.generations if options.generations is not None else s.generations
    problems = []
    if population < 2:
        problems.append(f"--population must be at least 2, got {population}")
    if generations < 1:
        problems.append(f"--generations must be at least 1, got {generations}")
    if options.jobs < 1:
        problems.append(f"--jobs must be at least 1, got {options.jobs}")
    if options.max_minutes is not None and not options.max_minutes > 0:
        problems.append(f"--max-minutes must be positive, got {options.max_minutes}")
    if problems:
        raise CalibrationError(problems)
    out = (
        Path(options.out)
        if options.out is not None
        else Path("runs") / (f"calibration-{scenario.name}")
    )
    ensemble = (
        Path(options.ensemble)
        if options.ensemble is not None
        else scen.parent / "ensembles" / f"{scenario.name}.yaml"
    )
    return _Plan(
        config,
        config_path,
        scen,
        scenario,
        shortened(scenario, s.horizon_end),
        out,
        ensemble,
        population,
        generations,
        options.min_acceptance_rate
        if options.min_acceptance_rate is not None
        else s.min_acceptance_rate,
        options.min_epsilon if options.min_epsilon is not None else s.min_epsilon,
        options.root_entropy if options.root_entropy is not None else s.root_entropy,
    )


def calibrate(options: CalibrateOptions, log=None) -> CalibrationResult:
    """Run, resume or extend a calibration, then write the ensemble and the diagnostics.

    Raises:
        CalibrationError: bad input, pyabc missing, or a store holding another calibration.
    """
    from .targets import CalibrationError

    log = log or (lambda msg: print(msg, file=sys.stderr))
    try:
        import pyabc
    except ImportError:
        raise CalibrationError(INSTALL_HINT) from None
    from .abc_transition import GaussianTransition

    p = plan(options)
    manifest = _open_store(p, options, log)
    if p.ensemble.suffix not in (".yaml", ".yml"):
        raise CalibrationError(f"--ensemble {p.ensemble}: the file must end in .yaml or .yml")
    _quiet_logging(options.progress)
    abc = pyabc.ABCSMC(
        Simulator(p.short, Coordinates(p.config), p.config.targets, p.root_entropy),
        priors(p.config),
        TargetDistance(p.config.targets),
        population_size=p.population,
        transitions=GaussianTransition(),
        eps=pyabc.epsilon.QuantileEpsilon(alpha=0.5),
        sampler=_sampler(options.jobs),
    )
    db = f"sqlite:///{(p.out / DB).resolve()}"
    history = None
    if manifest.get("abc_id") is not None:
        history = abc.load(db, int(manifest["abc_id"]))
        if history.max_t < 0:  # stopped before its first generation: start afresh
            history = None
            (p.out / DB).unlink(missing_ok=True)
    if history is None:
        history = abc.new(db, {name: t.value for name, t in p.config.targets.items()})
        manifest["abc_id"] = int(history.id)
        _write_json(p.out / MANIFEST, manifest)
    done = history.max_t + 1
    stopped = _stop_reason(history, p) or _aborted_before(manifest, done, p)
    if done:
        log(f"{PROG}: resuming {p.out}: {done} generation(s) finished")
    todo = p.generations - done
    if todo > 0 and stopped is None:
        log(
            f"{PROG}: {todo} generation(s) of {p.population} particles into {p.out} with "
            f"{options.jobs} worker(s) (rerun the same command to resume if interrupted)"
        )
        history, stopped = _run(abc, p, options, todo)
        done = history.max_t + 1
        if stopped is not None and stopped.startswith("generation"):
            manifest["aborted"] = {
                "at_generation": done,
                "min_acceptance_rate": p.min_acceptance_rate,
                "reason": stopped,
            }
    elif stopped is not None and todo > 0:
        log(f"{PROG}: not continuing: {stopped} (loosen --min-epsilon/--min-acceptance-rate)")
    if done == 0:
        raise CalibrationError(
            f"no generation finished ({stopped}); the store {p.out} is kept: rerun to retry"
        )
    stopped = stopped or f"{done} generations done"
    manifest.update(
        {
            "finished": _now(),
            "generations_done": done,
            "stopped": stopped,
            "command": _command(p, options),
        }
    )
    _write_json(p.out / MANIFEST, manifest)
    return _write_outputs(p, history, manifest, stopped, log)


def _run(abc, p: _Plan, options: CalibrateOptions, todo: int):
    """Run up to ``todo`` generations; return the history and why it stopped early, if so."""
    import datetime as _dt

    walltime = None if options.max_minutes is None else _dt.timedelta(minutes=options.max_minutes)
    start, t0 = abc.history.max_t + 1, time.monotonic()
    history = abc.run(
        minimum_epsilon=p.min_epsilon,
        max_nr_populations=todo,
        min_acceptance_rate=p.min_acceptance_rate,
        max_walltime=walltime,
    )
    done = history.max_t + 1
    if done - start >= todo:
        return history, None
    reason = _stop_reason(history, p)
    if reason is not None:
        return history, reason
    if walltime is not None and time.monotonic() - t0 >= walltime.total_seconds():
        return history, f"--max-minutes {options.max_minutes:g} reached (rerun to continue)"
    cap = p.population / max(p.min_acceptance_rate, 1e-12)
    return history, (
        f"generation {done} abandoned: fewer than {p.population} of {cap:.0f} proposals "
        f"accepted (minimum acceptance rate {p.min_acceptance_rate:g})"
    )


def _aborted_before(manifest: dict, done: int, p: _Plan) -> str | None:
    """The reason a previous invocation abandoned the next generation, if the same one would."""
    ab = manifest.get("aborted") or {}
    if ab.get("at_generation") == done and ab.get("min_acceptance_rate") == p.min_acceptance_rate:
        return str(ab.get("reason"))
    return None


def _sampler(jobs: int):
    """The pyabc sampler: one process, or ``jobs`` forked workers; a hopeless generation stops."""
    import pyabc

    if jobs == 1:
        return pyabc.sampler.SingleCoreSampler(check_max_eval=True)
    return pyabc.sampler.MulticoreEvalParallelSampler(n_procs=jobs, check_max_eval=True)


def _quiet_logging(progress: bool) -> None:
    """Show pyabc's per-generation messages on stderr when ``progress``, else warnings only."""
    import logging

    logger = logging.getLogger("ABC")
    logger.setLevel(logging.INFO if progress else logging.WARNING)
    for name in ("ABC.Sampler", "ABC.Distance", "ABC.Epsilon", "ABC.Transition"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _stop_reason(history, p: _Plan) -> str | None:
    """Why the calibration is finished before its generations (``None`` if it is not)."""
    if history.max_t < 0:
        return None
    pops = history.get_all_populations()
    last = pops[pops["t"] == history.max_t].iloc[0]
    eps, samples, particles = float(last["epsilon"]), int(last["samples"]), int(last["particles"])
    if eps <= p.min_epsilon:
        return f"threshold {eps:.3g} reached the minimum epsilon {p.min_epsilon:g}"
    if samples and particles / samples < p.min_acceptance_rate:
        return (
            f"acceptance rate {particles / samples:.3g} below the minimum {p.min_acceptance_rate:g}"
        )
    return None


def _open_store(p: _Plan, options: CalibrateOptions, log) -> dict:
    """The store's manifest: a new one, or the stored one if it is the same calibration.

    Raises:
        CalibrationError: ``--out`` holds another calibration, other model code, or
            something that is not a calibration store.
    """
    from . import provenance
    from .targets import CalibrationError

    path = p.out / MANIFEST
    ident = p.identity()
    if path.is_file():
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CalibrationError(f"--out {p.out}: cannot read {MANIFEST} ({exc})") from None
        old = manifest.get("identity") or {}
        diffs = [
            f"  {key}: {old.get(key)!r} in the store, {ident[key]!r} now"
            for key in ident
            if old.get(key) != ident[key]
        ]
        if diffs:
            raise CalibrationError(
                [f"--out {p.out} holds a different calibration; refusing to mix them:"]
                + diffs
                + [
                    "choose another --out (or delete the directory to start over; a changed "
                    "model or calibration file needs a new calibration)"
                ]
            )
        manifest.setdefault("resumed", []).append({"time": _now(), "command": _command(p, options)})
        return manifest
    if p.out.exists() and any(p.out.iterdir()):
        raise CalibrationError(
            f"--out {p.out} exists and is not a calibration store (no {MANIFEST}); choose "
            "another --out"
        )
    p.out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "kind": "calibration",
        "identity": ident,
        "calibration_file": str(p.config_path),
        "calibration": p.config.identity(),
        "scenario_file": str(p.scenario_path),
        "method": _method_text(p),
        "seeds": _seed_text(p),
        "created": _now(),
        "command": _command(p, options),
        "git": provenance.git_state(),
        "packages": _packages(),
        "abc_id": None,
        "finished": None,
        "resumed": [],
    }
    _write_json(path, manifest)
    return manifest


def _method_text(p: _Plan) -> str:
    return (
        f"ABC-SMC (pyabc): {p.population} particles per generation; threshold = the "
        "median distance of the previous generation (QuantileEpsilon, alpha 0.5); "
        "proposals from one Gaussian fitted to the previous generation (covariance x 1.5, "
        "experiment/abc_transition.py) on z = Phi^-1(prior CDF(value)); distance = "
        "RMS of (simulated - figure) / tolerance over the targets; one run per particle"
    )


def _seed_text(p: _Plan) -> str:
    return (
        f"root entropy {p.root_entropy}; a particle's run uses SeedSequence(root entropy, "
        f"spawn_key=({SEED_STREAM}, crc32 of its values as sorted JSON)); the fit table's "
        f"defaults column uses replicates 0-{DEFAULT_CHECK_SEEDS - 1} of the batch seed "
        "scheme with the same root entropy"
    )


def _packages() -> dict:
    from importlib import metadata

    from . import provenance

    out = provenance.package_versions()
    try:
        out["pyabc"] = metadata.version("pyabc")
    except metadata.PackageNotFoundError:  # pragma: no cover - checked before
        out["pyabc"] = "not installed"
    return out


def _now() -> str:
    from . import provenance

    return provenance.now()


def _command(p: _Plan, options: CalibrateOptions) -> str:
    if options.command:
        return options.command
    return "(python API) decouple calibrate " + shlex.quote(str(p.scenario_path))


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(path)


# --------------------------------------------------------------------------------------
# Outputs: the ensemble and the diagnostics
# --------------------------------------------------------------------------------------


def _write_outputs(p: _Plan, history, manifest: dict, stopped: str, log) -> CalibrationResult:
    """Write the ensemble file, the fit table, the generations table and the figure."""
    import numpy as np

    paths = list(p.config.parameters)
    frame, weights = history.get_distribution(m=0, t=history.max_t)
    members = Coordinates(p.config).values_array(frame)
    weights = np.asarray(weights, dtype=float)
    ss_weights, sum_stats = history.get_weighted_sum_stats(t=history.max_t)
    generations = _generations_table(history)
    fit = _fit_rows(p, np.asarray(ss_weights, dtype=float), sum_stats)
    _write_table(p.out / "fit.csv", fit)
    (p.out / "fit.md").write_text(fit_markdown(fit) + "\n")
    _write_table(p.out / "generations.csv", generations)
    _marginals_figure(p, members, weights, p.out / "posterior_marginals.png")
    _write_ensemble(p, paths, members, weights, manifest, stopped, generations, fit)
    log(f"{PROG}: ensemble of {len(weights)} members written to {p.ensemble}")
    log(f"{PROG}: diagnostics in {p.out} (fit.md, generations.csv, posterior_marginals.png)")
    return CalibrationResult(p.out, p.ensemble, history.max_t + 1, stopped, fit, generations)


def _generations_table(history) -> list[dict]:
    """Per generation: threshold, proposals, accepted, acceptance rate, wall time."""
    pops = history.get_all_populations()
    rows = []
    for _, r in pops[pops["t"] >= 0].sort_values("t").iterrows():
        samples, particles = int(r["samples"]), int(r["particles"])
        wall = r.get("wall_time")
        rows.append(
            {
                "generation": int(r["t"]),
                "epsilon": round(float(r["epsilon"]), 4),
                "proposals": samples,
                "accepted": particles,
                "acceptance_rate": round(particles / samples, 4) if samples else None,
                "wall_time_s": None if wall is None or wall != wall else round(float(wall), 1),
            }
        )
    return rows


def _weighted_quantiles(values, weights, qs) -> list[float]:
    """Quantiles ``qs`` of ``values`` under ``weights`` (inverse of the weighted CDF)."""
    import numpy as np

    values, weights = np.asarray(values, dtype=float), np.asarray(weights, dtype=float)
    ok = np.isfinite(values)
    values, weights = values[ok], weights[ok]
    if not values.size:
        return [math.nan for _ in qs]
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    cum /= cum[-1]
    return [float(values[order][min(np.searchsorted(cum, q), values.size - 1)]) for q in qs]


def _defaults_statistics(p: _Plan) -> dict[str, list[float]]:
    """The targets' statistics of the scenario at its defaults, over a few replicates."""
    from model.run import replicate_seed

    sim = Simulator(p.short, None, p.config.targets, p.root_entropy)
    runs = [
        sim.statistics_of({}, replicate_seed(p.root_entropy, i)) for i in range(DEFAULT_CHECK_SEEDS)
    ]
    return {name: [r[name] for r in runs] for name in p.config.targets}


def _fit_rows(p: _Plan, weights, sum_stats: list[dict]) -> list[dict]:
    """Per target: figure, tolerance, defaults' median, ensemble median and 90% range, share fit."""
    import numpy as np

    from .targets import distance

    defaults = _defaults_statistics(p)
    rows = []
    w = weights / weights.sum()
    for name, t in p.config.targets.items():
        sims = np.array([float(s[name]) for s in sum_stats])
        lo, med, hi = _weighted_quantiles(sims, w, [0.05, 0.5, 0.95])
        within = float(np.sum(w[[abs(t.z(v)) <= 1 for v in sims]]))
        rows.append(
            {
                "target": name,
                "output": t.output,
                "years": f"{t.span[0]}" if t.span[0] == t.span[1] else f"{t.span[0]}-{t.span[1]}",
                "figure": t.figure_text(),
                "defaults_median": round(float(np.median(defaults[name])), 3),
                "ensemble_median": round(med, 3),
                "ensemble_5pct": round(lo, 3),
                "ensemble_95pct": round(hi, 3),
                "within_tolerance_pct": round(100 * within, 1),
            }
        )
    d_def = [
        distance({n: defaults[n][i] for n in defaults}, p.config.targets)
        for i in range(DEFAULT_CHECK_SEEDS)
    ]
    d_ens = np.array([distance(s, p.config.targets) for s in sum_stats])
    lo, med, hi = _weighted_quantiles(d_ens, w, [0.05, 0.5, 0.95])
    rows.append(
        {
            "target": "distance (RMS miss in tolerances)",
            "output": "",
            "years": "",
            "figure": "0",
            "defaults_median": round(float(np.median(d_def)), 3),
            "ensemble_median": round(med, 3),
            "ensemble_5pct": round(lo, 3),
            "ensemble_95pct": round(hi, 3),
            "within_tolerance_pct": round(100 * float(np.sum(w[d_ens <= 1])), 1),
        }
    )
    return rows


def fit_markdown(fit: list[dict]) -> str:
    """The fit table as Markdown (for docs/calibration.md and the terminal)."""
    head = (
        "| target | output | years | figure | defaults (median of "
        f"{DEFAULT_CHECK_SEEDS} seeds) | ensemble median [5%, 95%] | ensemble within 1 tolerance |"
    )
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in fit:
        lines.append(
            f"| {r['target']} | {r['output']} | {r['years']} | {r['figure']} | "
            f"{r['defaults_median']:g} | {r['ensemble_median']:g} "
            f"[{r['ensemble_5pct']:g}, {r['ensemble_95pct']:g}] | {r['within_tolerance_pct']:g}% |"
        )
    return "\n".join(lines)


def _write_table(path: Path, rows: list[dict]) -> None:
    import csv

    with path.open("w", newline="") as fh:
        if not rows:
            return
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _marginals_figure(p: _Plan, members, weights, path: Path) -> None:
    """Histograms of the ensemble's marginals over each prior's range, defaults marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from model import parameters as params_mod

    paths = list(p.config.parameters)
    ncol = 4
    nrow = math.ceil(len(paths) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.4 * nrow), squeeze=False)
    for ax, (j, q) in zip(axes.flat, enumerate(paths)):
        lo, hi = p.config.parameters[q].prior.frozen().support()
        ax.hist(members[:, j], bins=15, range=(lo, hi), weights=weights, density=True,
                color="#4c72b0", alpha=0.8, label="ensemble")  # fmt: skip
        ax.axhline(1 / (hi - lo), color="grey", lw=1, ls=":", label="prior (uniform)")
        ax.axvline(float(params_mod.default_value(q)), color="#c44e52", lw=1.5, label="default")
        ax.set_title(q.split(".", 1)[-1], fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
    for ax in list(axes.flat)[len(paths) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6, loc="upper right")
    fig.suptitle(
        f"Posterior marginals of the {p.scenario.name} calibration (ABC-SMC, "
        f"{len(weights)} particles)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _write_ensemble(p, paths, members, weights, manifest, stopped, generations, fit) -> None:
    """The ensemble file: parameters, weights, members, provenance and diagnostics."""
    import yaml

    from model.ensemble import KIND

    from . import provenance

    total = sum(g["proposals"] for g in generations)
    data = {
        "kind": KIND,
        "scenario": p.scenario.name,
        "provenance": {
            "made_by": manifest.get("command"),
            "created": _now(),
            "method": _method_text(p),
            "stopped": stopped,
            "generations": len(generations),
            "simulations": total,
            "calibration_file": _shown(p.config_path),
            "calibration_sha256": p.config.sha256(),
            "targets": {
                k: {
                    "output": t.output,
                    "years": list(t.span),
                    "figure": t.figure_text(),
                    "source": t.source,
                }
                for k, t in p.config.targets.items()
            },  # fmt: skip
            "priors": {
                k: pr.prior.model_dump(mode="json", exclude_none=True)
                for k, pr in p.config.parameters.items()
            },
            "scenario_file": _shown(p.scenario_path),
            "scenario_hash": p.scenario.hash,
            "horizon_end": p.short.end,
            "seeds": _seed_text(p),
            "model_fingerprint": provenance.model_fingerprint(),
            "git": provenance.git_state(),
            "packages": _packages(),
            "store": _shown(p.out),
        },
        "diagnostics": {"generations": generations, "fit": fit},
        "parameters": paths,
    }
    head = (
        f"# Parameter ensemble of scenario '{p.scenario.name}', written by decouple calibrate\n"
        "# (docs/calibration.md). Do not edit by hand: rerun the calibration.\n"
    )
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    # one member per line, values in the order of `parameters`
    tail = "weights: [" + ", ".join(f"{w:.6g}" for w in weights) + "]\nmembers:\n"
    tail += "".join("- [" + ", ".join(f"{v:.6g}" for v in row) + "]\n" for row in members)
    p.ensemble.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.ensemble.with_suffix(".tmp")
    tmp.write_text(head + body + tail)
    tmp.replace(p.ensemble)


def _shown(path: Path) -> str:
    """A path relative to the project root when inside it (provenance without the machine)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def register(subparsers) -> None:
    """Add the ``calibrate`` sub-command to the ``decouple`` CLI."""
    p = subparsers.add_parser(
        "calibrate",
        help="fit uncertain parameters to the calibration targets (ABC-SMC) into an ensemble",
        description=(
            "Fit the parameters of experiment/calibration.yaml to its targets by ABC-SMC "
            "(pyabc) and write the plausible-parameter ensemble the scenario declares "
            "(uncertain_ensemble). Rerunning the same command resumes the store; a larger "
            "--generations extends it. See docs/calibration.md."
        ),
    )
    p.add_argument(
        "scenario", nargs="?", help="scenario YAML file (default: settings.scenario of the file)"
    )
    p.add_argument("--config", help="calibration file (default experiment/calibration.yaml)")
    p.add_argument("--out", help="calibration store (default runs/calibration-<scenario>)")
    p.add_argument(
        "--ensemble", help="ensemble file to write (default <scenario dir>/ensembles/<name>.yaml)"
    )
    p.add_argument("--population", type=int, help="particles per generation")
    p.add_argument("--generations", type=int, help="ABC-SMC generations in all (first: prior)")
    p.add_argument("--min-acceptance-rate", type=float, help="stop below this acceptance rate")
    p.add_argument("--min-epsilon", type=float, help="stop when the threshold reaches this")
    p.add_argument("--root-entropy", type=int, help="root entropy of the runs' seeds")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--max-minutes", type=float, help="stop after the generation passing this")
    p.add_argument("--quiet", action="store_true", help="no per-generation messages")
    p.set_defaults(func=_cmd_calibrate)


def _cmd_calibrate(args) -> int:
    """Run ``decouple calibrate``; exit 0, 2 (bad input) or 130 (interrupted, resumable)."""
    from .targets import CalibrationError

    options = CalibrateOptions(
        scenario=args.scenario,
        config=args.config,
        out=args.out,
        ensemble=args.ensemble,
        population=args.population,
        generations=args.generations,
        min_acceptance_rate=args.min_acceptance_rate,
        min_epsilon=args.min_epsilon,
        root_entropy=args.root_entropy,
        jobs=args.jobs,
        max_minutes=args.max_minutes,
        progress=not args.quiet,
        command="decouple " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    from . import interrupts

    t0 = time.perf_counter()
    try:
        with interrupts.signals_interrupt():
            result = calibrate(options)
    except CalibrationError as exc:
        for problem in exc.problems:
            print(f"{PROG}: error: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(
            f"{PROG}: interrupted; finished generations are kept in the store. Rerun the same "
            "command to resume.",
            file=sys.stderr,
        )
        return exc.exit_code if isinstance(exc, interrupts.Interrupted) else 130
    print(fit_markdown(result.fit))
    last = result.table[-1] if result.table else {}
    print(
        f"{PROG}: {result.generations} generation(s) ({result.stopped}); last acceptance rate "
        f"{last.get('acceptance_rate')}; {time.perf_counter() - t0:.0f} s; ensemble "
        f"{result.ensemble}"
    )
    return 0
