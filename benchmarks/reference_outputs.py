"""Bit-identity check for refactors: every library scenario's outputs, column by column.

A refactor must not change a number. Run ``--write`` on the commit before the change and
``--check`` after it; the check compares every output column of every run exactly (no
tolerance) and prints the first differences it finds.

    python benchmarks/reference_outputs.py --write runs/reference-before.npz
    python benchmarks/reference_outputs.py --check runs/reference-before.npz

A change that passes the check leaves a calibrated ensemble valid: ``--restamp ENSEMBLE``
then records today's model fingerprint in it, with the evidence (:mod:`experiment.restamp`;
the reference must have been written on the code the ensemble was calibrated on).

The runs are every scenario in ``scenarios/`` with seeds 0..N-1 under a fixed root entropy,
plus variants that switch on code paths no library scenario uses by default (rule-based
US tightening). This is a tool, not a test: a full check takes about a minute.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiment.provenance import model_fingerprint  # noqa: E402
from experiment.provenance import now as timestamp  # noqa: E402
from experiment.restamp import RestampError, restamp_ensemble  # noqa: E402
from model.run import replicate_seed, simulate  # noqa: E402
from model.scenario import load_scenario  # noqa: E402

#: Key of the model fingerprint the reference was written with, in the reference file.
FINGERPRINT_KEY = "__model_fingerprint__"
#: The root entropy of every reference run (any fixed value will do).
ROOT_ENTROPY = 424242
#: Extra runs: (label, scenario file, --set overrides) for paths the library leaves off.
VARIANTS = (
    ("baseline+auto_tighten", "baseline.yaml", ["us.auto_tighten=true"]),
    (
        "baseline+lobbying",
        "baseline.yaml",
        ["us.lobbying_weight=1.0", "us.lobbying_threshold_usd_bn=0.5"],
    ),
)


def collect(seeds: int) -> dict[str, np.ndarray]:
    """``{"<run label>/<seed>/<column>": values}`` for every reference run."""
    runs = [(p.stem, p, []) for p in sorted((ROOT / "scenarios").glob("*.yaml"))]
    runs += [(label, ROOT / "scenarios" / name, sets) for label, name, sets in VARIANTS]
    out: dict[str, np.ndarray] = {}
    for label, path, sets in runs:
        scenario = load_scenario(path, sets)
        for seed in range(seeds):
            cols = simulate(scenario, replicate_seed(ROOT_ENTROPY, seed))
            for column, values in cols.items():
                out[f"{label}/{seed}/{column}"] = np.asarray(values)
        print(f"{label}: {seeds} seeds", flush=True)
    return out


def compare(reference: dict[str, np.ndarray], now: dict[str, np.ndarray]) -> list[str]:
    """Differences between two collections (exact equality, NaN equal to NaN)."""
    problems = []
    for key in sorted(set(reference) | set(now)):
        if key not in now:
            problems.append(f"{key}: missing now")
        elif key not in reference:
            problems.append(f"{key}: new column")
        else:
            a, b = reference[key], now[key]
            same = a.shape == b.shape and (
                np.array_equal(a, b)
                if a.dtype.kind in "OUS"
                else np.array_equal(a, b, equal_nan=True)
            )
            if not same:
                where = np.nonzero(a != b)[0][:1] if a.shape == b.shape else []
                problems.append(f"{key}: differs (first at row {list(where)})")
    return problems


def main() -> int:
    """Write or check the reference file."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", metavar="FILE")
    mode.add_argument("--check", metavar="FILE")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument(
        "--restamp",
        metavar="ENSEMBLE",
        help="with --check: if identical, record today's model fingerprint in this ensemble",
    )
    args = ap.parse_args()
    if args.restamp and not args.check:
        ap.error("--restamp needs --check")
    now = collect(args.seeds)
    if args.write:
        columns = {k: v.astype(str) if v.dtype == object else v for k, v in now.items()}
        columns[FINGERPRINT_KEY] = np.array(model_fingerprint())
        np.savez_compressed(args.write, **columns)
        print(f"wrote {len(now)} columns to {args.write} (model {model_fingerprint()[:12]})")
        return 0
    with np.load(args.check) as data:
        reference = {k: data[k] for k in data.files}
    written_with = str(reference.pop(FINGERPRINT_KEY, ""))
    now = {k: v.astype(str) if v.dtype == object else v for k, v in now.items()}
    problems = compare(reference, now)
    if problems:
        print(f"{len(problems)} columns differ; first 20:")
        print("\n".join(problems[:20]))
        return 1
    runs = len({k.rsplit("/", 1)[0] for k in now})
    print(f"identical: {len(now)} columns of {runs} runs")
    if args.restamp:
        if not written_with:
            print(f"error: {args.check} records no model fingerprint (rewrite it with --write)")
            return 2
        evidence = (
            f"benchmarks/reference_outputs.py --seeds {args.seeds}: {len(now)} columns of "
            f"{runs} runs identical to a reference written on model {written_with[:12]}"
        )
        try:
            changed = restamp_ensemble(
                args.restamp, written_with, model_fingerprint(), evidence, timestamp()
            )
        except RestampError as exc:
            print(f"error: {exc}")
            return 2
        print(
            f"{args.restamp}: model fingerprint {'now' if changed else 'already'} "
            f"{model_fingerprint()[:12]}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
