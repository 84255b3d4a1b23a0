"""``decouple``: run scenarios, batches and reports from the command line.

Sub-commands import their heavy dependencies lazily so ``decouple --help`` and
``decouple validate`` start fast. Bad input ends with a message naming the file, the
key path and what is allowed, and exit code 2; never a traceback.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def _cmd_params(args) -> int:
    from model import parameters

    rows = parameters.table_rows()
    if args.format == "csv":
        import csv

        w = csv.writer(sys.stdout)
        w.writerow(["path", "value", "unit", "source"])
        w.writerows(rows)
        return 0
    if args.grep:
        rows = [r for r in rows if args.grep.lower() in " ".join(r).lower()]
    width = max(len(r[0]) for r in rows)
    for path, value, unit, source in rows:
        print(f"{path:<{width}}  {value}  [{unit}]\n{'':<{width}}  source: {source}")
    return 0


def _cmd_run(args) -> int:
    from model.scenario import ScenarioError, load_scenario

    if args.seeds < 1:
        print("decouple run: error: --seeds must be at least 1", file=sys.stderr)
        return 2
    try:
        # --set values are read as safe YAML and checked like a file's `parameters`:
        # unknown paths (with the nearest valid one), wrong types, missing '='.
        scenario = load_scenario(args.scenario, args.set)
    except ScenarioError as exc:
        print("\n".join(f"decouple run: error: {p}" for p in exc.problems), file=sys.stderr)
        return 2
    from experiment import single

    command = "decouple " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return single.main(
        scenario, str(args.scenario), args.seeds, Path(args.out) if args.out else None, command
    )


def _cmd_validate(args) -> int:
    """Check each file (and its ``extends`` chain, and any ``--set``); exit 0 if all valid, else 2.

    Valid files are listed on stdout as ``FILE: ok``. Problems go to stderr, one per line as
    ``file:line:col: key.path: message`` (the format editors and CI annotate), followed by a
    count. Bad input never produces a traceback: an unexpected failure is reported as an
    internal error naming the file.
    """
    from model.scenario import ScenarioError, load_scenario

    bad = 0
    for path in args.files:
        try:
            load_scenario(path, args.set)
        except ScenarioError as exc:
            bad += 1
            for p in exc.problems:
                print(p, file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - a bug must not show a user a traceback
            bad += 1
            print(
                f"{path}: internal error while validating ({type(exc).__name__}: {exc}); "
                "this is a bug in decouple: please report it with the file",
                file=sys.stderr,
            )
        else:
            print(f"{path}: ok")
    if bad:
        n = len(args.files)
        verb = "has" if bad == 1 else "have"
        print(
            f"decouple validate: {bad} of {n} file{'s' * (n != 1)} {verb} errors",
            file=sys.stderr,
        )
    return 2 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    """The ``decouple`` argument parser with every sub-command registered.

    Sub-commands that live elsewhere (``report``, ``batch``) register themselves; their
    modules import only the standard library at module level, so this stays fast.
    """
    parser = argparse.ArgumentParser(
        prog="decouple",
        description=(
            "Scenario model of semiconductor supply-chain decoupling "
            "(China's chip self-sufficiency to 2035)."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run one scenario for N seeds")
    p.add_argument("scenario", help="scenario YAML file")
    p.add_argument("--seeds", type=int, default=20, help="number of replicates (default 20)")
    p.add_argument(
        "--out", help="output directory (default runs/<scenario>-<timestamp>; must not exist)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a parameter (repeatable)",
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("params", help="print every default parameter with its unit and source")
    p.add_argument("--format", choices=("text", "csv"), default="text")
    p.add_argument("--grep", help="only rows containing this text")
    p.set_defaults(func=_cmd_params)

    p = sub.add_parser(
        "validate", help="check scenario files; exit 0 if all are valid, 2 otherwise"
    )
    p.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="scenario YAML files (their 'extends' parents are checked too)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="also check a parameter override as `decouple run --set` would apply it (repeatable)",
    )
    p.set_defaults(func=_cmd_validate)

    from analysis import report

    report.register(sub)
    try:
        from experiment import batch
    except ImportError:
        pass
    else:
        batch.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``decouple`` command line; return its exit code (130 when interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("decouple: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
