"""Broken scenarios in tests/scenarios_broken/ fail `decouple validate` with their exact messages.

Each file is one realistic mistake (a typo, a wrong type, a value out of range, an unknown
ally or segment, a malformed quarter, an event after the horizon, an ``extends`` cycle or a
missing parent, duplicate keys, unsafe tags, a YAML bomb, nesting too deep, ...). The test
asserts the full text on stderr, including ``file:line:col``, and exit code 2, calling
:func:`decouple.cli.main` in-process; one test runs the installed command in a subprocess.
Messages are part of the user interface: when one changes on purpose, update it here.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from decouple.cli import main

ROOT = Path(__file__).resolve().parents[1]
B = "tests/scenarios_broken/"
VALID = B + "valid_child.yaml"


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch):
    """Paths in messages are as given on the command line: run from the repository root."""
    monkeypatch.chdir(ROOT)


def run_cli(*argv: str) -> tuple[int, str, str]:
    """``decouple ARGV`` in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def summary(bad: int, total: int) -> str:
    return (
        f"decouple validate: {bad} of {total} file{'s' * (total != 1)} "
        f"{'has' if bad == 1 else 'have'} errors"
    )


EXPECTED: dict[str, list[str]] = {
    "a_list.yaml": [
        "{B}a_list.yaml:1:1: a scenario file must be a mapping of keys (name: ..., "
        "question: ...), found a list of 2 items",
    ],
    "bad_name.yaml": [
        "{B}bad_name.yaml:1:1: name: expected a name of lower-case letters, "
        "digits and '_' that starts with a letter, e.g. tighter_us_controls, "
        "found 'Tighter US controls'",
    ],
    "binary.yaml": [
        "{B}binary.yaml: binary file (it contains NUL bytes); a scenario is a YAML text file",
    ],
    "boolean_key.yaml": [
        "{B}boolean_key.yaml:5:3: parameters: keys must be text, found the boolean true "
        "(YAML reads yes/no/on/off/true/false as booleans); put the key in quotes",
    ],
    "both_amounts.yaml": [
        "{B}both_amounts.yaml:5:5: events[0]: give exactly one of amount_usd_bn or amount_rmb_bn; "
        "found both",
    ],
    "comment_only.yaml": [
        "{B}comment_only.yaml:1:1: the file is empty; "
        "a scenario needs at least 'name' and 'question'",
    ],
    "control_char.yaml": [
        "{B}control_char.yaml:2:40: control character U+0007 is not allowed in YAML text; "
        "remove it",
    ],
    "custom_tag.yaml": [
        "{B}custom_tag.yaml:4:13: parameters: tag '!include' is not allowed; "
        "scenario files hold plain mappings, lists, text and numbers",
    ],
    "cycle_a.yaml": [
        "{B}cycle_b.yaml:3:1: extends: 'extends' forms a cycle: cycle_a.yaml -> cycle_b.yaml -> "
        "cycle_a.yaml; a scenario cannot inherit from itself",
    ],
    "cycle_b.yaml": [
        "{B}cycle_a.yaml:3:1: extends: 'extends' forms a cycle: cycle_b.yaml -> cycle_a.yaml -> "
        "cycle_b.yaml; a scenario cannot inherit from itself",
    ],
    "drop_unknown_event.yaml": [
        "{B}drop_unknown_event.yaml:4:15: drop_events[0]: no inherited event has id 'oct22_tool' "
        "(did you mean 'oct22_tools'?)",
    ],
    "duplicate_event_id.yaml": [
        "{B}duplicate_event_id.yaml:6:39: events[1].id: duplicate event id 'push' "
        "(also events[0]); ids must be unique",
    ],
    "duplicate_key.yaml": [
        "{B}duplicate_key.yaml:6:3: parameters.china.procurement_preference: duplicate key "
        "'china.procurement_preference' (first at line 5); each key may appear once in a mapping",
    ],
    "empty.yaml": [
        "{B}empty.yaml:1:1: the file is empty; a scenario needs at least 'name' and 'question'",
    ],
    "end_before_start.yaml": [
        "{B}end_before_start.yaml:5:1: end: end 2020Q4 is before start 2030Q1",
    ],
    "event_after_horizon.yaml": [
        "{B}event_after_horizon.yaml:6:6: events[0].at: event 'us_pressure' at 2031Q1 is after "
        "the horizon's end 2030Q4; move it or extend 'end'",
    ],
    "event_not_mapping.yaml": [
        "{B}event_not_mapping.yaml:5:5: events[0]: expected a mapping of keys, "
        "found 'control eda_ip from 2025Q1'",
    ],
    "expects_outside_horizon.yaml": [
        "{B}expects_outside_horizon.yaml:6:36: expects[0].year: expected a year from 2014 to 2030 "
        "(the horizon), found 2035",
    ],
    "expects_vs_unknown.yaml": [
        "{B}expects_vs_unknown.yaml:5:67: expects[0].vs: an expectation compares with a scenario "
        "this one extends (baseline); found 'detente'",
    ],
    "inherited_event_id.yaml": [
        "{B}inherited_event_id.yaml:5:39: events[0].id: event id 'ttc' is already used by an "
        "inherited event; drop that one first (drop_events: [ttc]) or choose another id",
    ],
    "init_only_set_parameter.yaml": [
        "{B}init_only_set_parameter.yaml:5:41: events[0].path: 'allies.initial_alignment.japan' "
        "is read only when the model is built, so a timed event cannot change it; "
        "set it under 'parameters' instead",
    ],
    "latin1.yaml": [
        "{B}latin1.yaml: not UTF-8 text (undecodable byte at offset 57); save the file as UTF-8",
    ],
    "malformed_quarter.yaml": [
        "{B}malformed_quarter.yaml:5:6: events[0].at: expected a quarter written YYYYQn, "
        "e.g. 2026Q1, found '2026-Q1'; did you mean 2026Q1?",
    ],
    "merge_key.yaml": [
        "{B}merge_key.yaml:6:5: events[0]: merge keys ('<<') are not supported; "
        "to build on another scenario use 'extends', otherwise write the keys out",
    ],
    "missing_action.yaml": [
        "{B}missing_action.yaml:5:5: events[0]: an event needs an 'action'; "
        "expected one of control, relax_control, list_entity, delist_entity, "
        "extraterritorial_reach, leakage, ally_alignment, us_pressure, funding_program, "
        "procurement_preference, countermeasure, talent_program, set_parameter",
    ],
    "missing_event_field.yaml": [
        "{B}missing_event_field.yaml:5:5: events[0].licence_pct: missing required key "
        "'licence_pct'; a 'relax_control' event needs one",
    ],
    "missing_parent.yaml": [
        "{B}missing_parent.yaml:3:1: extends: parent scenario 'basline' not found "
        "(no basline.yaml in tests/scenarios_broken/ nor in the library scenarios/) "
        "(did you mean 'baseline'?); 'extends' names a scenario of this file's folder or of "
        "the library by name (e.g. baseline) or by a path into a subfolder (e.g. sub/parent), "
        "without '.yaml'",
    ],
    "missing_question.yaml": [
        "{B}missing_question.yaml:1:1: question: missing required key 'question'; "
        "every scenario file needs one",
    ],
    "nan_value.yaml": [
        "{B}nan_value.yaml:5:33: parameters.china.procurement_preference: '.nan' is not a finite "
        "number; scenario numbers must be finite",
    ],
    "normal_without_sd.yaml": [
        "{B}normal_without_sd.yaml:5:3: uncertain.china.procurement_preference: a normal "
        "distribution needs mean and sd",
    ],
    "out_of_range_alignment.yaml": [
        "{B}out_of_range_alignment.yaml:5:55: events[0].alignment: expected a number from 0 to 1 "
        "or 'free', found 1.5",
    ],
    "out_of_range_pct.yaml": [
        "{B}out_of_range_pct.yaml:5:56: events[0].coverage_pct: expected a number above 0 and at "
        "most 100, found 150",
    ],
    "parameter_group.yaml": [
        "{B}parameter_group.yaml:5:3: parameters.us: 'us' is a group of parameters, not one; "
        "write one dotted path per parameter, e.g. 'us.auto_tighten: ...'",
    ],
    "parameter_wrong_type.yaml": [
        "{B}parameter_wrong_type.yaml:5:3: parameters.us.auto_tighten: parameter "
        "'us.auto_tighten' expects true or false, found 'yes'; "
        "remove the quotes if it is meant as a value",
    ],
    "quarter_as_date.yaml": [
        "{B}quarter_as_date.yaml:5:6: events[0].at: expected a quarter written YYYYQn, "
        "e.g. 2026Q1, found the date 2026-01-01 (YAML reads it as a date); did you mean 2026Q1?",
    ],
    "quarter_five.yaml": [
        "{B}quarter_five.yaml:4:1: end: expected a quarter written YYYYQn, e.g. 2026Q1, "
        "found '2035Q5'",
    ],
    "quoted_number.yaml": [
        "{B}quoted_number.yaml:5:39: events[0].add: expected a number, found '0.5'; "
        "remove the quotes if it is meant as a value",
    ],
    "same_name_as_parent.yaml": [
        "{B}same_name_as_parent.yaml:1:1: name: name 'baseline' is already used by a scenario "
        "this one extends; give it its own name",
    ],
    "set_parameter_wrong_type.yaml": [
        "{B}set_parameter_wrong_type.yaml:5:41: events[0].path: parameter 'us.lobbying_weight' "
        "expects a number, found a list of 2 items",
    ],
    "source_without_prefix.yaml": [
        "{B}source_without_prefix.yaml:5:5: sources[0]: a source must start with a seed figure id "
        "(F01-F32), CLM70, TIME22, 'publication:', 'structure:', 'assumption:' or 'calibrated:'; "
        "found 'my own guess'",
    ],
    "start_before_data.yaml": [
        "{B}start_before_data.yaml:4:1: start: start 2010Q1 is before 2014Q1, "
        "where the model's data begin",
    ],
    "swarm_fields_on_named.yaml": [
        "{B}swarm_fields_on_named.yaml:5:5: events[0]: 'lines' and 'share_pct' apply only to "
        "entity: swarm, not to the named entity 'foundry_second'",
    ],
    "syntax_error.yaml": [
        "{B}syntax_error.yaml:5:4: YAML syntax error: this line's indentation does not line up "
        "with the lines above it (parser: expected <block end>, but found '<block mapping start>')",
    ],
    "tab_indent.yaml": [
        "{B}tab_indent.yaml:4:1: YAML syntax error: a tab character cannot indent YAML; "
        "indent with spaces",
    ],
    "too_deep.yaml": [
        "{B}too_deep.yaml:4:44: nesting deeper than 40 levels; "
        "refused (a scenario needs about six)",
    ],
    "triangular_mode.yaml": [
        "{B}triangular_mode.yaml:5:3: uncertain.china.procurement_preference: a triangular "
        "distribution needs mode between low (0.2) and high (0.8); found 1.5",
    ],
    "two_documents.yaml": [
        "{B}two_documents.yaml:3:1: YAML syntax error: the file holds more than one YAML document "
        "('---'); a scenario file is one document",
    ],
    "typo_event_key.yaml": [
        "{B}typo_event_key.yaml:8:5: events[0].threshhold_nm: unknown key 'threshhold_nm' "
        "(did you mean 'threshold_nm'?); allowed keys: at, id, note, source, action, item, "
        "target, threshold_nm, coverage_pct, licence_pct, foreign_direct_product, enforced_by, "
        "regime, announced",
    ],
    "typo_top_key.yaml": [
        "{B}typo_top_key.yaml:1:1: question: missing required key 'question'; "
        "every scenario file needs one",
        "{B}typo_top_key.yaml:2:1: qestion: unknown key 'qestion' (did you mean 'question'?); "
        "allowed keys: name, question, description, sources, extends, start, end, parameters, "
        "events, drop_events, uncertain, uncertain_ensemble, expects, explanation",
    ],
    "uncertain_switch.yaml": [
        "{B}uncertain_switch.yaml:5:3: uncertain.us.auto_tighten: only numeric parameters can be "
        "sampled; 'us.auto_tighten' is false",
    ],
    "unknown_action.yaml": [
        "{B}unknown_action.yaml:5:5: events[0]: unknown action 'contrl' "
        "(did you mean 'control'?); expected one of control, relax_control, list_entity, "
        "delist_entity, extraterritorial_reach, leakage, ally_alignment, us_pressure, "
        "funding_program, procurement_preference, countermeasure, talent_program, set_parameter",
    ],
    "unknown_ally.yaml": [
        "{B}unknown_ally.yaml:5:42: events[0].ally: expected one of netherlands, japan, "
        "south_korea, taiwan, eu, found 'Netherland' (did you mean 'netherlands'?)",
    ],
    "unknown_item.yaml": [
        "{B}unknown_item.yaml:5:35: events[0].item: expected one of chips_leading, "
        "chips_advanced, chips_mature, chips_memory, chips_compound, eda_ip, litho_equipment, "
        "other_equipment, materials, found 'litho_equipmnt' (did you mean 'litho_equipment'?)",
    ],
    "unknown_output.yaml": [
        "{B}unknown_output.yaml:5:6: expects[0].output: expected one of the 53 names listed in "
        "docs/outputs.md, found 'selfsufficiency_pct' (did you mean 'self_sufficiency_pct'?)",
    ],
    "unknown_parameter.yaml": [
        "{B}unknown_parameter.yaml:5:3: parameters.china.procurment_preference: unknown parameter "
        "'china.procurment_preference' (did you mean 'china.procurement_preference'?)",
    ],
    "unknown_seed_figure.yaml": [
        "{B}unknown_seed_figure.yaml:5:5: sources[0]: F33 is not a seed figure; "
        "ids run from F01 to F32 (seed-figures.md)",
    ],
    "unknown_segment.yaml": [
        "{B}unknown_segment.yaml:9:22: events[0].lines[1]: expected one of foundry, memory, "
        "compound, eda_ip, design, litho_equipment, other_equipment, materials, packaging, "
        "found 'fab_tools'",
    ],
    "unsafe_tag.yaml": [
        "{B}unsafe_tag.yaml:4:14: description: tag '!!python/object/apply:os.system' is not "
        "allowed; scenario files hold plain mappings, lists, text and numbers",
    ],
    "wrong_type_list.yaml": [
        "{B}wrong_type_list.yaml:4:1: sources: expected a list, found 'F29'; "
        "write a list as [a, b] or as lines starting with '- '",
    ],
    "wrong_type_number.yaml": [
        "{B}wrong_type_number.yaml:5:49: events[0].licence_pct: expected a number, found 'high'",
    ],
    "yaml_bomb.yaml": [
        "{B}yaml_bomb.yaml:3:64: the document expands to more than 50,000 values through aliases "
        "(*name); refused (a 'billion laughs' bomb?)",
    ],
}


def test_corpus_is_complete():
    """Every file in the corpus has its expected message, and there are at least 25."""
    files = {p.name for p in (ROOT / B).glob("*.yaml")} - {"valid_child.yaml"}
    assert files == set(EXPECTED)
    assert len(files) >= 25


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_broken_file(name):
    code, out, err = run_cli("validate", B + name)
    expected = [line.replace("{B}", B) for line in EXPECTED[name]] + [summary(1, 1)]
    assert err.splitlines() == expected
    assert code == 2
    assert out == ""
    assert "Traceback" not in err


def test_all_at_once_reports_each_file():
    """Several files: valid ones are listed on stdout, each broken one's problems on stderr."""
    code, out, err = run_cli(
        "validate", "scenarios/baseline.yaml", B + "unknown_ally.yaml", VALID, B + "empty.yaml"
    )
    assert code == 2
    assert out.splitlines() == ["scenarios/baseline.yaml: ok", f"{VALID}: ok"]
    assert err.splitlines() == [
        *(line.replace("{B}", B) for line in EXPECTED["unknown_ally.yaml"]),
        *(line.replace("{B}", B) for line in EXPECTED["empty.yaml"]),
        summary(2, 4),
    ]


TAG_TAIL = (
    "is not allowed; a --set value is plain YAML (a number, true or false, text, a [list] "
    "or a {mapping}); to pass text that starts with '!', quote it: --set 'x=\"!...\"'"
)
PATH_TAIL = (
    "is not a parameter path; a path is names joined by '.', "
    "e.g. china.procurement_preference (decouple params lists them)"
)
SET_CASES = {
    "missing '='": (
        ["china.procurement_preference"],
        [
            "--set china.procurement_preference: expected PATH=VALUE, "
            "e.g. --set china.procurement_preference=1.2"
        ],
    ),
    "empty path": (
        ["=3"],
        [
            "--set =3: the parameter path before '=' is empty; "
            "e.g. --set china.procurement_preference=1.2"
        ],
    ),
    "empty value": (
        ["us.auto_tighten="],
        [
            "--set us.auto_tighten=: no value after '='; "
            "e.g. --set us.auto_tighten=1.2 (quote text: --set 'us.auto_tighten=\"text\"')"
        ],
    ),
    "unknown path": (
        ["china.procurment_preference=1"],
        [
            "--set china.procurment_preference=1: unknown parameter 'china.procurment_preference' "
            "(did you mean 'china.procurement_preference'?)"
        ],
    ),
    "wrong type": (
        ["china.procurement_preference=high"],
        [
            "--set china.procurement_preference=high: parameter 'china.procurement_preference' "
            "expects a number, found 'high'"
        ],
    ),
    "quoted boolean": (
        ['us.auto_tighten="true"'],
        [
            "--set us.auto_tighten=\"true\": parameter 'us.auto_tighten' expects true or false, "
            "found 'true'; remove the quotes if it is meant as a value"
        ],
    ),
    "bad YAML value": (
        ["us.auto_tighten=[1"],
        [
            "--set us.auto_tighten=[1: the value is not valid YAML: a [list] is not closed with "
            "']' (parser: expected ',' or ']', but got '<stream end>')"
        ],
    ),
    "group": (
        ["us=1"],
        [
            "--set us=1: 'us' is a group of parameters, not one; "
            "write one dotted path per parameter, e.g. us.pressure_per_control_level"
        ],
    ),
    "unknown key of a mapping": (
        ["allies.initial_alignment.japn=0.2"],
        [
            (
                "--set allies.initial_alignment.japn=0.2: parameter "
                "'allies.initial_alignment.japn': 'japn' is not a key of "
                "'allies.initial_alignment' (did you mean 'japan'?); "
                "allowed: netherlands, japan, south_korea, taiwan, eu"
            )
        ],
    ),
    # Input safety: a tag is refused, never constructed; a path is dotted names.
    "python object": (
        ['x=!!python/object/apply:os.system ["touch pwned"]'],
        [
            '--set x=!!python/object/apply:os.system ["touch pwned"]: a YAML tag '
            f"('!!python/object/apply:os.system') {TAG_TAIL}"
        ],
    ),
    "python name": (
        ["x=!!python/name:os.system"],
        [f"--set x=!!python/name:os.system: a YAML tag ('!!python/name:os.system') {TAG_TAIL}"],
    ),
    "include": (
        ["x=!include ../../etc/passwd"],
        [f"--set x=!include ../../etc/passwd: a YAML tag ('!include') {TAG_TAIL}"],
    ),
    "path climbing": (["../../etc=1"], [f"--set ../../etc=1: '../../etc' {PATH_TAIL}"]),
    "tag as path": (
        ["!!python/name:os.system=1"],
        [f"--set !!python/name:os.system=1: '!!python/name:os.system' {PATH_TAIL}"],
    ),
    "two bad overrides": (
        ["=3", "china.procurment_preference=1"],
        [
            "--set =3: the parameter path before '=' is empty; "
            "e.g. --set china.procurement_preference=1.2",
            "--set china.procurment_preference=1: unknown parameter 'china.procurment_preference' "
            "(did you mean 'china.procurement_preference'?)",
        ],
    ),
}


@pytest.mark.parametrize("case", sorted(SET_CASES))
def test_bad_set(case):
    """A bad --set is reported like a bad file line, by validate and by run (before running)."""
    overrides, expected = SET_CASES[case]
    args = [a for o in overrides for a in ("--set", o)]
    code, out, err = run_cli("validate", VALID, *args)
    assert (code, out, err.splitlines()) == (2, "", expected + [summary(1, 1)])
    code, out, err = run_cli("run", VALID, "--seeds", "1", *args)
    assert (code, out, err.splitlines()) == (
        2,
        "",
        [f"decouple run: error: {line}" for line in expected],
    )
    assert not (ROOT / "pwned").exists()


def test_long_set_value_is_echoed_cut_with_its_length():
    text = "china.procurement_preference=" + "a" * 120_000
    code, out, err = run_cli("validate", VALID, "--set", text)
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"--set {text[:80]}... (120,029 characters): parameter 'china.procurement_preference' "
        f"expects a number, found '{'a' * 57}...'",
        summary(1, 1),
    ]


def test_long_set_path_is_echoed_cut_with_its_length():
    text = "p" * 300 + "=1"
    code, out, err = run_cli("validate", VALID, "--set", text)
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"--set {'p' * 80}... (302 characters): '{'p' * 80}... (300 characters)' {PATH_TAIL}",
        summary(1, 1),
    ]


def test_unsafe_set_in_the_installed_command(tmp_path):
    """The real command, as a shell sees it: exit 2, the message, nothing executed."""
    exe = Path(sys.executable).with_name("decouple")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "decouple.cli"]
    (text,), expected = SET_CASES["python object"]
    proc = subprocess.run(
        [*cmd, "validate", str(ROOT / VALID), "--set", text],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.splitlines() == [*expected, summary(1, 1)]
    assert list(tmp_path.iterdir()) == []  # no 'pwned' file


def test_good_set_is_accepted():
    code, out, err = run_cli(
        "validate",
        VALID,
        "--set",
        "us.auto_tighten=true",
        "--set",
        "allies.initial_alignment.japan=0.6",
    )
    assert (code, out, err) == (0, f"{VALID}: ok\n", "")


def test_directory():
    code, out, err = run_cli("validate", "scenarios")
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        "scenarios: is a directory, not a scenario file "
        "(to check every scenario in it: scenarios/*.yaml)",
        summary(1, 1),
    ]


def test_missing_file():
    code, out, err = run_cli("validate", "scenarios/no_such_scenario.yaml")
    assert (code, out) == (2, "")
    assert err.splitlines() == ["scenarios/no_such_scenario.yaml: no such file", summary(1, 1)]


def test_oversized_file(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text(
        "name: big\nquestion: q?\ndescription: '" + "x" * 1_000_001 + "'\n", encoding="utf-8"
    )
    code, out, err = run_cli("validate", str(big))
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"{big}: file is larger than 1,000,000 bytes; a scenario file is a few kB of YAML",
        summary(1, 1),
    ]


def test_unreadable_file(tmp_path):
    locked = tmp_path / "locked.yaml"
    locked.write_text("name: locked\nquestion: q?\n", encoding="utf-8")
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):  # running as root: permissions are not enforced
            pytest.skip("file permissions are not enforced for this user")
        code, out, err = run_cli("validate", str(locked))
        assert (code, out) == (2, "")
        assert err.splitlines() == [
            f"{locked}: cannot read the file (Permission denied)",
            summary(1, 1),
        ]
    finally:
        locked.chmod(0o644)


def test_library_validates():
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "scenarios").glob("*.yaml"))
    code, out, err = run_cli("validate", *files)
    assert (code, err) == (0, "")
    assert out.splitlines() == [f"{f}: ok" for f in files]


def test_subprocess_exit_code_and_stderr():
    """The installed command: exit 2, the located message on stderr, no traceback."""
    exe = Path(sys.executable).with_name("decouple")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "decouple.cli"]
    proc = subprocess.run(
        [*cmd, "validate", B + "unknown_ally.yaml", B + "unsafe_tag.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        *(line.replace("{B}", B) for line in EXPECTED["unknown_ally.yaml"]),
        *(line.replace("{B}", B) for line in EXPECTED["unsafe_tag.yaml"]),
        summary(2, 2),
    ]
    ok = subprocess.run(
        [*cmd, "validate", "scenarios/baseline.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "scenarios/baseline.yaml: ok\n", "")
