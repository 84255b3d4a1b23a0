"""The Makefile a newcomer meets: ``make help``, one SEEDS variable, venv messages.

The Makefile is exercised in a scratch copy with a stand-in Python that installs nothing, so
the tests see the real recipes' messages in well under a second. Each test asserts the exit
code and the exact text.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")
needs_make = pytest.mark.skipif(MAKE is None, reason="GNU make is not installed")

HELP = [
    "make run     build .venv (once), run every library scenario x SEEDS seeds x DRAWS",
    "             parameter draws (default 2 x 25; 4-6 minutes on 2 cores) and write the",
    "             HTML report",
    "make test    build .venv (once) and run the test suite (3-6 minutes on 2 cores)",
    "make batch   every library scenario x SEEDS seeds x DRAWS draws (default 4 x 25) into",
    "             runs/library, resumed if interrupted",
    "make lint    ruff check (100-character lines, Google docstrings)",
    "make bench   the model and batch timing benchmarks",
    "make venv    only build .venv (1-2 minutes, once)",
    "make clean   remove .venv",
    "make help    this list",
    "Variables: SEEDS=N (replicates per draw), DRAWS=K (parameter draws; 0: defaults only),",
    "           JOBS=N (worker processes, default 2),",
    "           PYTHON_CANDIDATES='python3.13 ...' (the Pythons tried for .venv, first wins)",
]

FAKE_PYTHON = """\
#!/bin/bash
# A stand-in for python3.13: enough for the Makefile's venv recipe; installs nothing.
case "$1" in
  --version) echo "Python 3.13.9" ;;
  -m) if [ "$2" = venv ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; fi ;;
esac
exit 0
"""


@pytest.fixture
def project(tmp_path):
    """A scratch copy of the Makefile and pyproject.toml, and a stand-in python3.13."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    fake = tmp_path / "bin" / "python3.13"
    fake.parent.mkdir()
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    return tmp_path


def make(project: Path, *args: str) -> tuple[int, str, str]:
    """``make ARGS`` in ``project`` with the stand-in Python: (exit code, stdout, stderr)."""
    # not a sub-make of `make test` (that would say make[1]), nor given its variables
    drop = ("SEEDS", "RUN_SEEDS", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    proc = subprocess.run(
        # a later assignment on the command line wins: ARGS may replace the stand-in
        [MAKE, "--no-print-directory", f"PYTHON_CANDIDATES={project}/bin/python3.13", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    return proc.returncode, proc.stdout, re.sub(r"Makefile:\d+", "Makefile:N", proc.stderr)


@needs_make
def test_make_help_is_the_default(project):
    assert make(project, "help") == (0, "\n".join(HELP) + "\n", "")
    assert make(project) == (0, "\n".join(HELP) + "\n", "")


@needs_make
def test_first_make_says_it_is_building_the_venv(project):
    fake = project / "bin" / "python3.13"
    assert make(project, "venv") == (
        0,
        f"Creating .venv with {fake} (Python 3.13.9) and installing dependencies "
        "(1-2 minutes, once)...\n.venv is ready.\n",
        "",
    )
    assert make(project, "venv") == (0, "make: Nothing to be done for 'venv'.\n", "")
    earlier = (project / "pyproject.toml").stat().st_mtime - 10
    os.utime(project / ".venv" / ".installed", (earlier, earlier))  # pyproject.toml changed
    assert make(project, "venv") == (
        0,
        "Updating .venv (pyproject.toml changed): installing dependencies...\n.venv is ready.\n",
        "",
    )


@needs_make
def test_no_python_is_said_plainly(project):
    code, out, err = make(project, "venv", "PYTHON_CANDIDATES=/nonexistent/python3")
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        "error: no Python >= 3.12 found (tried: /nonexistent/python3).",
        "       mesa >= 3.4 needs Python 3.12+; install python3.12 or python3.13 and retry.",
        "make: *** [Makefile:N: .venv/.installed] Error 1",
    ]


def _seeds_line(project: Path, *args: str) -> tuple[int, str, str]:
    code, out, err = make(project, "-n", *args)
    return code, next((ln for ln in out.splitlines() if "--seeds" in ln), out), err


@needs_make
def test_seeds_is_one_variable_for_run_and_batch(project):
    assert make(project, "venv")[0] == 0
    run = (
        ".venv/bin/decouple batch scenarios/*.yaml --seeds {} --sample {} --streams per-sample "
        "--jobs 2 --out $out && \\"
    )
    batch = (
        ".venv/bin/decouple batch scenarios/*.yaml --seeds {} --sample {} --streams per-sample "
        "--jobs 2 --out runs/library"
    )
    assert _seeds_line(project, "run") == (0, run.format(2, "lhs:25"), "")
    assert _seeds_line(project, "run", "SEEDS=5") == (0, run.format(5, "lhs:25"), "")
    assert _seeds_line(project, "run", "SEEDS=20", "DRAWS=0") == (0, run.format(20, "none"), "")
    assert _seeds_line(project, "batch") == (0, batch.format(4, "lhs:25"), "")
    assert _seeds_line(project, "batch", "SEEDS=3", "DRAWS=8") == (0, batch.format(3, "lhs:8"), "")


@needs_make
def test_run_seeds_still_works_and_a_conflict_fails_loudly(project):
    assert make(project, "venv")[0] == 0
    run = (
        ".venv/bin/decouple batch scenarios/*.yaml --seeds 7 --sample lhs:25 --streams "
        "per-sample --jobs 2 --out $out && \\"
    )
    assert _seeds_line(project, "run", "RUN_SEEDS=7") == (
        0,
        run,
        "Makefile:N: RUN_SEEDS is now SEEDS: using SEEDS=7 (write: make run SEEDS=7)\n",
    )
    assert make(project, "-n", "run", "RUN_SEEDS=7", "SEEDS=3") == (
        2,
        "",
        "Makefile:N: *** RUN_SEEDS=7 and SEEDS=3 disagree: RUN_SEEDS is the former name of "
        "SEEDS, give SEEDS only.  Stop.\n",
    )
