"""A newcomer's first steps: the README's scenario example and the browser test's skip.

The README's example, written outside the library, validates and runs; the browser test
says, when it skips, what it needs and how to get it.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from decouple.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Writing a scenario", 1)[1]
    return re.search(r"```yaml\n(.*?)```", section, re.DOTALL).group(1)


def test_readme_example_validates_and_runs_outside_the_library(tmp_path, monkeypatch):
    """Written anywhere, ``extends: baseline`` finds the library's baseline.

    ``--set`` changes parameters only (not the horizon), so the run is the full horizon
    with one seed.
    """
    monkeypatch.chdir(tmp_path)
    example = _readme_example()
    assert "extends: baseline" in example
    (tmp_path / "nl_jp_defect.yaml").write_text(example, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", "nl_jp_defect.yaml"])
    assert (code, out.getvalue(), err.getvalue()) == (0, "nl_jp_defect.yaml: ok\n", "")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["run", "nl_jp_defect.yaml", "--seeds", "1", "--out", "store"])
    assert (code, err.getvalue()) == (0, "")
    assert out.getvalue().splitlines()[-1] == (
        "wrote store/trajectories.parquet (88 rows) and store/manifest.json"
    )


def test_browser_test_skip_says_how_to_get_chromium(monkeypatch, tmp_path):
    import test_report

    monkeypatch.setattr(test_report, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        test_report._chromium()
    assert skipped.value.msg == (
        f"the report's headless-browser test needs Chromium at {tmp_path / 'no-chromium'}: "
        "install it with 'sudo apt-get install chromium' (CI installs it: .ci/run)"
    )
