"""``extends`` resolves only to scenario files, and says which file asked for a refused one.

The rule (docs/scenarios.md, "How extends finds the parent"): a name or a relative path is
looked up in the child's folder, then in the scenario library ``scenarios/``; it may go into
a subfolder but not leave the folder (no absolute path, no ``..`` above it); only ``.yaml``
and ``.yml`` files whose top level is a mapping with ``name`` and ``question`` are accepted.
A refused or missing parent is reported at the child's ``extends`` line, and nothing of a
file that is not a scenario is printed. Each test asserts the exit code and the exact text.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from pathlib import Path

import pytest

from decouple.cli import main
from model.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "scenarios"
RULE = (
    "'extends' names a scenario of this file's folder or of the library by name "
    "(e.g. baseline) or by a path into a subfolder (e.g. sub/parent), without '.yaml'"
)
SUMMARY_1 = "decouple validate: 1 of 1 file has errors"
SECRET = "hunter2-do-not-print"


def not_a_scenario(ref: str, path: str) -> str:
    return (
        f"child.yaml:3:1: extends: parent '{ref}' ({path}) is not a scenario file: 'extends' "
        "accepts only a YAML mapping with 'name' and 'question' keys, and does not show other "
        f"files (decouple validate {path} says more)"
    )


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A scratch folder as the working directory, with a writer of its files."""
    monkeypatch.chdir(tmp_path)

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write


def child(folder, ref: str) -> None:
    folder("child.yaml", f"name: child\nquestion: Which parent?\nextends: {ref}\n")


def validate(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", *argv])
    return code, out.getvalue(), err.getvalue()


def test_etc_passwd_is_refused_at_the_childs_line(folder):
    child(folder, "../../../../etc/passwd")
    assert validate("child.yaml") == (
        2,
        "",
        f"child.yaml:3:1: extends: '../../../../etc/passwd' leads out of this file's folder; "
        f"{RULE}\n{SUMMARY_1}\n",
    )


def test_absolute_path_is_refused(folder):
    child(folder, "/etc/passwd")
    assert validate("child.yaml") == (
        2,
        "",
        f"child.yaml:3:1: extends: '/etc/passwd' is an absolute path; {RULE}\n{SUMMARY_1}\n",
    )


def test_a_subfolder_path_may_not_climb_back_out(folder):
    child(folder, "sub/../../outside")
    assert validate("child.yaml") == (
        2,
        "",
        f"child.yaml:3:1: extends: 'sub/../../outside' leads out of this file's folder; "
        f"{RULE}\n{SUMMARY_1}\n",
    )


def test_a_yaml_file_that_is_not_a_scenario_is_refused_unseen(folder):
    folder("secrets.yaml", f"password: {SECRET}\ntoken: 123456789012345678901234567890\n")
    child(folder, "secrets")
    code, out, err = validate("child.yaml")
    expected = f"{not_a_scenario('secrets', 'secrets.yaml')}\n{SUMMARY_1}\n"
    assert (code, out, err) == (2, "", expected)
    assert SECRET not in err


def test_a_file_that_is_not_yaml_is_refused_unseen(folder):
    folder("broken.yml", f"{SECRET}: [unclosed\n\tand a tab\n")
    child(folder, "broken.yml")
    assert validate("child.yaml") == (
        2,
        "",
        f"{not_a_scenario('broken.yml', 'broken.yml')}\n{SUMMARY_1}\n",
    )


@pytest.mark.skipif(not Path("/etc/passwd").is_file(), reason="no /etc/passwd to link to")
def test_a_link_to_etc_passwd_is_refused_unseen(folder, tmp_path):
    os.symlink("/etc/passwd", tmp_path / "passwd.yaml")
    child(folder, "passwd")
    code, out, err = validate("child.yaml")
    assert (code, out, err) == (2, "", f"{not_a_scenario('passwd', 'passwd.yaml')}\n{SUMMARY_1}\n")
    assert "root:" not in err


def test_a_file_that_is_not_yaml_by_name_is_refused(folder):
    folder("notes.txt", f"{SECRET}\n")
    child(folder, "notes.txt")
    assert validate("child.yaml") == (
        2,
        "",
        "child.yaml:3:1: extends: 'notes.txt' is not a .yaml or .yml file; "
        f"'extends' accepts only scenario files\n{SUMMARY_1}\n",
    )


def test_a_missing_parent_names_the_child_and_both_places(folder):
    child(folder, "basline")
    assert validate("child.yaml") == (
        2,
        "",
        "child.yaml:3:1: extends: parent scenario 'basline' not found (no basline.yaml in ./ "
        f"nor in the library {LIBRARY}/) (did you mean 'baseline'?); {RULE}\n{SUMMARY_1}\n",
    )


def test_a_name_is_looked_up_in_the_folder_then_the_library(folder, tmp_path):
    child(folder, "baseline")
    assert validate("child.yaml") == (0, "child.yaml: ok\n", "")
    assert load_scenario("child.yaml").lineage == ["baseline", "child"]
    assert "china.procurement_preference" not in load_scenario("child.yaml").parameters
    shutil.copy(LIBRARY / "baseline.yaml", tmp_path / "baseline.yaml")
    shutil.copytree(LIBRARY / "ensembles", tmp_path / "ensembles")  # the baseline declares one
    with (tmp_path / "baseline.yaml").open("a", encoding="utf-8") as fh:
        fh.write("parameters:\n  china.procurement_preference: 0.9\n")
    assert load_scenario("child.yaml").parameters["china.procurement_preference"] == 0.9


def test_a_path_may_go_into_a_subfolder(folder):
    folder("sub/mid.yaml", "name: mid\nquestion: A parent in a subfolder?\nextends: baseline\n")
    child(folder, "sub/mid")
    assert validate("child.yaml") == (0, "child.yaml: ok\n", "")
    assert load_scenario("child.yaml").lineage == ["baseline", "mid", "child"]


def test_a_scenario_parents_own_problems_name_the_parent(folder):
    folder("parent.yaml", "name: parent\nquestion: q?\nparameters:\n\tus.auto_tighten: true\n")
    child(folder, "parent")
    assert validate("child.yaml") == (
        2,
        "",
        "parent.yaml:4:1: YAML syntax error: a tab character cannot indent YAML; "
        f"indent with spaces\n{SUMMARY_1}\n",
    )
