"""Bit-identity check for refactors: every library scenario's outputs, column by column.

A refactor must not change a number. Run ``--write`` on the commit before the change and
``--check`` after it; the check compares every output column of every run exactly (no
tolerance) and prints the first differences it finds.

    python benchmarks/reference_outputs.py --write runs/reference-before.npz
    python benchmarks/reference_outputs.py --check runs/reference-before.npz

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

from model.run import replicate_seed, simulate  # noqa: E402
from model.scenario import load_scenario  # noqa: E402

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
    args = ap.parse_args()
    now = collect(args.seeds)
    if args.write:
        np.savez_compressed(
            args.write, **{k: v.astype(str) if v.dtype == object else v for k, v in now.items()}
        )
        print(f"wrote {len(now)} columns to {args.write}")
        return 0
    with np.load(args.check) as data:
        reference = {k: data[k] for k in data.files}
    now = {k: v.astype(str) if v.dtype == object else v for k, v in now.items()}
    problems = compare(reference, now)
    if problems:
        print(f"{len(problems)} columns differ; first 20:")
        print("\n".join(problems[:20]))
        return 1
    print(f"identical: {len(now)} columns of {len({k.rsplit('/', 1)[0] for k in now})} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
