"""The ``decouple`` command line: a closed stdout ends any sub-command quietly; ``--version``.

Each test asserts the exit code and the exact text. Most call :func:`decouple.cli.main`
in-process; a few run the installed command, since exit codes and a closed pipe are what a
shell sees. (Bad ``--set`` input is tested with the other input errors, in
tests/test_scenario_errors.py.)
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from decouple.cli import EXIT_CLOSED_PIPE, main

ROOT = Path(__file__).resolve().parents[1]


def _command() -> list[str]:
    exe = Path(sys.executable).with_name("decouple")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "decouple.cli"]


@pytest.fixture
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


# --------------------------------------------------------------------------------------
# A closed stdout ends every sub-command quietly
# --------------------------------------------------------------------------------------


class _ClosedPipe(io.StringIO):
    """A stdout whose reader has gone: every write or flush fails as a closed pipe does."""

    def write(self, text):  # noqa: D102
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):  # noqa: D102
        raise BrokenPipeError(32, "Broken pipe")


def _closed_stdout(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(_ClosedPipe()), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, err.getvalue()


def _short(tmp_path: Path) -> Path:
    path = tmp_path / "short.yaml"
    path.write_text("name: short\nquestion: Does a short run work?\nend: 2015Q4\n")
    return path


def test_closed_stdout_params_validate_help(at_root):
    assert _closed_stdout("params") == (EXIT_CLOSED_PIPE, "")
    assert _closed_stdout("params", "--format", "csv") == (EXIT_CLOSED_PIPE, "")
    assert _closed_stdout("validate", "scenarios/baseline.yaml") == (EXIT_CLOSED_PIPE, "")
    assert _closed_stdout("--help") == (EXIT_CLOSED_PIPE, "")
    assert _closed_stdout("--version") == (EXIT_CLOSED_PIPE, "")


def test_closed_stdout_run_batch_report(tmp_path, monkeypatch):
    short = _short(tmp_path)
    assert _closed_stdout("run", str(short), "--seeds", "1", "--out", str(tmp_path / "r")) == (
        EXIT_CLOSED_PIPE,
        "",
    )
    store = tmp_path / "b"
    assert _closed_stdout(
        "batch", str(short), "--seeds", "1", "--jobs", "1", "--quiet", "--out", str(store)
    ) == (
        EXIT_CLOSED_PIPE,
        f"decouple batch: 1 runs into {store} (rerun the same command with --out {store} "
        "to resume if interrupted)\n",
    )
    from analysis import report

    monkeypatch.setattr(report, "build_report", lambda *a, **k: tmp_path / "report.html")
    assert _closed_stdout("report", str(store)) == (EXIT_CLOSED_PIPE, "")


@pytest.mark.parametrize(
    "argv", [["params"], ["--help"], ["validate", "scenarios/baseline.yaml"]], ids=" ".join
)
def test_closed_pipe_in_the_installed_command(argv):
    """``decouple params | head``: the reader has gone before the first line; no traceback."""
    proc = subprocess.Popen(
        [*_command(), *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader leaves before the command writes anything
    err = proc.stderr.read()
    proc.stderr.close()
    assert (proc.wait(timeout=120), err) == (EXIT_CLOSED_PIPE, b"")


# --------------------------------------------------------------------------------------
# --version
# --------------------------------------------------------------------------------------


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_version_names_the_package_version_and_commit():
    try:
        commit = _git("rev-parse", "HEAD")
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    expected = (
        f"decouple {metadata.version('decouple')} (git {commit[:12]}"
        + (", with uncommitted changes" if dirty else "")
        + ")"
    )
    proc = subprocess.run(
        [*_command(), "--version"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, expected + "\n", "")
    assert re.fullmatch(r"decouple \d+\.\d+\.\d+\S* \(git [0-9a-f]{12}.*\)", expected)


def test_version_outside_a_git_checkout(monkeypatch, capsys):
    from experiment import provenance

    monkeypatch.setattr(provenance, "git_state", lambda: {"commit": "unknown", "dirty": None})
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr() == (f"decouple {metadata.version('decouple')}\n", "")
