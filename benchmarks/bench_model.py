"""Benchmark one run of the model: wall time at default scale and µs per firm-quarter.

Not a test: timing depends on the machine and on what else runs. Run on an idle machine:

    .venv/bin/python benchmarks/bench_model.py [--repeats 5] [--write]

``--write`` replaces the "One run" section of docs/performance.md (between its markers),
leaving other sections (the batch engine's) as they are.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import date
from pathlib import Path

from model.run import simulate
from model.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench_model:begin -->", "<!-- bench_model:end -->"


def measure(scenario, scale: float, repeats: int) -> dict:
    """Time ``repeats`` seeds at firm scale ``scale``; medians, so one slow run does not skew."""
    per_agent = 5.0 / scale
    times, firm_quarters, peak = [], [], []
    for seed in range(repeats):
        start = time.perf_counter()
        cols = simulate(scenario, seed, sample={"china_firms.real_firms_per_agent": per_agent})
        times.append(time.perf_counter() - start)
        firm_quarters.append(int(cols["firms_active"].sum()))
        peak.append(int(cols["firms_active"].max()))
    t = statistics.median(times)
    fq = statistics.median(firm_quarters)
    return {
        "scale": scale,
        "seconds": t,
        "min_seconds": min(times),
        "mean_firms": fq / len(cols["quarter"]),
        "peak_firms": statistics.median(peak),
        "us_per_firm_quarter": t / fq * 1e6,
    }


def render(rows: list[dict], repeats: int) -> str:
    """The "One run" Markdown section for docs/performance.md, between its markers."""
    lines = [
        BEGIN,
        "## One run (model only)",
        "",
        f"Measured {date.today().isoformat()} on {platform.machine()} ({os.cpu_count()} cores), "
        f"Python {platform.python_version()}, "
        f"`benchmarks/bench_model.py --repeats {repeats}`: baseline scenario, "
        f"2014Q1-2035Q4 (88 quarters), median of {repeats} seeds. "
        "Firms are the model's Chinese firms (champions and swarm members; rows of the firm "
        "arrays); scale k divides `china_firms.real_firms_per_agent` by k.",
        "",
        "| scale | mean firms | peak firms | wall time per run (s) | fastest (s) "
        "| µs per firm-quarter |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scale']:g}x | {r['mean_firms']:,.0f} | {r['peak_firms']:,.0f} "
            f"| {r['seconds']:.3f} | {r['min_seconds']:.3f} | {r['us_per_firm_quarter']:.2f} |"
        )
    lines += [
        "",
        "Targets: <= 0.25 s per run at default scale (issue 10; it was 0.5 s before); "
        "<= 1 µs per firm-quarter at ~20,000 firms (5x). The host is shared: the same "
        "commit measures up to ~15% slower when other work runs, so compare commits "
        "interleaved (see the sections below).",
        END,
    ]
    return "\n".join(lines)


def write(section: str) -> None:
    """Replace the section in docs/performance.md, keeping the other sections as they are."""
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + section + tail
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    DOC.write_text(text)


def main() -> None:
    """Command line: warm up, measure each scale, print the section and optionally write it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scales", type=float, nargs="+", default=[1, 5])
    parser.add_argument("--write", action="store_true", help="update docs/performance.md")
    args = parser.parse_args()
    scenario = load_scenario(ROOT / "scenarios" / "baseline.yaml")
    simulate(scenario, 0)  # warm-up: imports and caches
    rows = [measure(scenario, s, args.repeats) for s in args.scales]
    section = render(rows, args.repeats)
    print(section)
    if args.write:
        write(section)


if __name__ == "__main__":
    main()
