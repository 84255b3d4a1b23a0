"""One-at-a-time levers: how far +/-30% on each numeric parameter moves the headline outputs.

For every scalar numeric parameter (and each key of mappings of numbers), runs the baseline
with the value at 70% and at 130% of its default (clipped to the parameter's range), with
common random numbers (the same seeds as the unchanged baseline), and reports the median
paired change in 2030 self-sufficiency and China-HQ share. This is a screening tool, not a
sensitivity analysis (see issue 12 for Morris/Sobol'); it answers "what does the headline
hang on" and flags parameters that move nothing.

    python benchmarks/levers.py --seeds 4 --jobs 2 --out runs/levers.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model import parameters as P  # noqa: E402
from model.run import replicate_seed, simulate  # noqa: E402
from model.scenario import load_scenario  # noqa: E402

OUTPUTS = ("self_sufficiency_pct", "self_sufficiency_china_hq_pct")
YEAR = 2030
STEP = 0.3
ROOT_ENTROPY = 424242
#: Parameters that are dates (when a figure applies), not levers.
CALENDAR_DATES = ("reference_year", "start_year", "pace_break_year")


def levers() -> list[tuple[str, float, float]]:
    """``(path, low value, high value)`` for every numeric scalar (and mapping key)."""
    out = []
    for p in P.defaults().values():
        if isinstance(p.value, bool) or p.path.endswith(CALENDAR_DATES):
            continue
        items = (
            [(p.path, p.value)]
            if isinstance(p.value, (int, float))
            else [(f"{p.path}.{k}", v) for k, v in p.value.items() if isinstance(v, (int, float))]
            if isinstance(p.value, dict)
            else []
        )
        for path, value in items:
            if isinstance(value, bool) or value == 0:
                continue
            rng = P.bounds(path) or (-np.inf, np.inf)
            low = float(np.clip(value * (1 - STEP), *rng))
            high = float(np.clip(value * (1 + STEP), *rng))
            out.append((path, low, high))
    return out


def _outputs(args) -> dict[str, float]:
    override, seed = args
    scenario = load_scenario(ROOT / "scenarios" / "baseline.yaml", override)
    cols = simulate(scenario, replicate_seed(ROOT_ENTROPY, seed))
    year = cols["year"]
    return {c: float(cols[c][year == YEAR].mean()) for c in OUTPUTS}


def main() -> int:
    """Run the screen and write the table (largest swing first)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="runs/levers.csv")
    args = ap.parse_args()
    table = levers()
    seeds = range(args.seeds)
    jobs = [({}, s) for s in seeds]
    for path, low, high in table:
        jobs += [({path: low}, s) for s in seeds] + [({path: high}, s) for s in seeds]
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(_outputs, jobs, chunksize=4))
    base = results[: args.seeds]
    rows = []
    for i, (path, low, high) in enumerate(table):
        start = args.seeds * (1 + 2 * i)
        lo_runs = results[start : start + args.seeds]
        hi_runs = results[start + args.seeds : start + 2 * args.seeds]
        row = {"parameter": path, "low": low, "high": high}
        for c in OUTPUTS:
            lo = np.median([r[c] - b[c] for r, b in zip(lo_runs, base)])
            hi = np.median([r[c] - b[c] for r, b in zip(hi_runs, base)])
            row[f"{c}_low_pp"], row[f"{c}_high_pp"] = round(lo, 3), round(hi, 3)
            row[f"{c}_swing_pp"] = round(abs(hi - lo), 3)
        rows.append(row)
    rows.sort(key=lambda r: -r["self_sufficiency_pct_swing_pp"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for c in OUTPUTS:
        print(f"ten largest swings of {c} in {YEAR} (pp, low -> high):")
        for r in sorted(rows, key=lambda r, c=c: -r[f"{c}_swing_pp"])[:10]:
            print(
                f"  {r['parameter']:<58} {r[f'{c}_swing_pp']:6.2f}  "
                f"({r[f'{c}_low_pp']:+.2f} / {r[f'{c}_high_pp']:+.2f})"
            )
    idle = calibrated_but_idle(rows)
    print(
        f"parameters billed as calibrated that move neither output by {IDLE_PP} pp: "
        + (", ".join(idle) if idle else "none")
    )
    print(f"wrote {args.out} ({len(rows)} levers, {args.seeds} seeds each way)")
    return 0


#: A swing below this (pp, both outputs) counts as moving nothing.
IDLE_PP = 0.05


def calibrated_but_idle(rows: list[dict]) -> list[str]:
    """Levers whose parameter's source is ``calibrated: ...`` but whose swings are all tiny.

    Such a parameter cannot have been calibrated to the headline targets: the issue-10 rule
    "no parameter billed as calibrated to a target moves nothing". Targets of other outputs
    (SEMI's equipment series, CXMT's revenue) are checked by their own tests.
    """
    defaults = P.defaults()
    out = []
    for r in rows:
        path = r["parameter"]
        param = defaults.get(path) or defaults.get(path.rsplit(".", 1)[0])
        if param is None or not str(param.source).startswith("calibrated"):
            continue
        if all(r[f"{c}_swing_pp"] < IDLE_PP for c in OUTPUTS):
            out.append(path)
    return out


if __name__ == "__main__":
    sys.exit(main())
