"""``decouple``: run scenarios, batches and reports from the command line.

Sub-commands import their heavy dependencies lazily so ``decouple --help`` and
``decouple validate`` start fast. Bad input ends with a message naming the file, the
key path and what is allowed, and exit code 2; never a traceback. A reader that closes
the output early (``decouple params | head``) ends any sub-command quietly, with the exit
code 141 a shell gives a program stopped by a closed pipe (128 + SIGPIPE).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

#: Exit code when stdout is closed by its reader: 128 + SIGPIPE (13), as a shell reports it.
EXIT_CLOSED_PIPE = 141


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


def version_text() -> str:
    """``decouple VERSION (git COMMIT)``: the package version and, in a git checkout, its commit.

    ``COMMIT`` is the first 12 hex digits of HEAD, followed by ``, with uncommitted changes``
    when tracked files differ from it. Outside a git checkout only the version is given.
    """
    from experiment.provenance import git_state, model_version

    text = f"decouple {model_version()}"
    state = git_state()
    commit = str(state.get("commit", "unknown"))
    if commit != "unknown":
        dirty = ", with uncommitted changes" if state.get("dirty") else ""
        text += f" (git {commit[:12]}{dirty})"
    return text


class _Parser(argparse.ArgumentParser):
    """argparse's parser, except that a closed stdout is not ignored: :func:`main` ends quietly.

    argparse swallows an ``OSError`` while printing help, so ``decouple --help | head``
    would end with status 0 or not, depending on buffering; here it raises.
    """

    def _print_message(self, message, file=None):
        if message:
            try:
                (file or sys.stderr).write(message)
            except AttributeError:  # no stream at all (e.g. pythonw)
                pass


class _VersionAction(argparse.Action):
    """``--version``: print :func:`version_text` and exit (computed only when asked)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, **kw):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The ``decouple`` argument parser with every sub-command registered.

    Sub-commands that live elsewhere (``report``, ``batch``, ``calibrate``) register
    themselves; their modules import only the standard library at module level, so this
    stays fast.
    """
    parser = _Parser(
        prog="decouple",
        description=(
            "Scenario model of semiconductor supply-chain decoupling "
            "(China's chip self-sufficiency to 2035)."
        ),
    )
    parser.add_argument(
        "--version",
        action=_VersionAction,
        help="print the package version (and git commit) and exit",
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
        from experiment import batch, calibration
    except ImportError:
        pass
    else:
        batch.register(sub)
        calibration.register(sub)
        from decouple import sensitivity

        sensitivity.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``decouple`` command line; return its exit code.

    The code is the sub-command's (0 success, 2 bad input, ...), 130 when interrupted, and
    :data:`EXIT_CLOSED_PIPE` (141), with nothing printed, when the reader of stdout closes
    it before the output ends (``decouple params | head``), whatever the sub-command.
    """
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe is found here, not at interpreter exit
        return code
    except KeyboardInterrupt:
        print("decouple: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_CLOSED_PIPE
    except SystemExit:  # argparse after --help, --version or a usage error
        try:
            sys.stdout.flush()  # a closed pipe is found here, not at interpreter exit
        except BrokenPipeError:
            _silence_stdout()
            return EXIT_CLOSED_PIPE
        raise


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit does not fail a second time."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (e.g. captured by a test)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
