"""Every default parameter carries its provenance; overrides are validated precisely."""

from __future__ import annotations

from pathlib import Path

import pytest

from model import parameters as P

MODEL_DIR = Path(__file__).resolve().parent.parent / "model"


def test_every_parameter_has_a_source_or_flagged_assumption():
    assert P.missing_sources() == []
    for p in P.defaults().values():
        assert p.unit.strip(), p.path
        if p.source.startswith(("assumption:", "calibrated:")):
            # The one-line reason must say something.
            assert len(p.source.split(":", 1)[1].strip()) >= 10, p.path


def test_walker_flags_a_parameter_without_source(monkeypatch):
    bad = {"g": {"x": {"value": 1, "unit": "u", "source": "my guess"}}}
    out = {}
    P._walk(bad, "", out)
    monkeypatch.setattr(P, "_defaults", lambda: out)
    assert P.missing_sources() == ["g.x"]


def test_every_parameter_is_read_by_the_model():
    code = "\n".join(f.read_text() for f in MODEL_DIR.glob("*.py"))
    unused = []
    for path in P.defaults():
        group = path.rsplit(".", 1)[0]
        # Read by full path, as a group, or by an f-string over the group's keys.
        if f'"{path}"' in code or f'"{group}"' in code or f'f"{group}.{{' in code:
            continue
        unused.append(path)
    assert unused == []


def test_override_replaces_a_value():
    values = P.resolve(
        {"china.procurement_preference": 1.25, "allies.initial_alignment.japan": 0.9}
    )
    assert values["china.procurement_preference"] == 1.25
    assert values["allies.initial_alignment"]["japan"] == 0.9
    assert (
        values["allies.initial_alignment"]["netherlands"]
        == P.defaults()["allies.initial_alignment"].value["netherlands"]
    )


def test_unknown_parameter_suggests_the_nearest():
    with pytest.raises(P.ParameterError) as exc:
        P.resolve({"china.procurement_preferenc": 1})
    assert str(exc.value) == (
        "unknown parameter 'china.procurement_preferenc' "
        "(did you mean 'china.procurement_preference'?)"
    )


def test_wrong_type_names_what_is_expected():
    with pytest.raises(P.ParameterError) as exc:
        P.resolve({"china.procurement_preference": "high"})
    assert str(exc.value) == "parameter 'china.procurement_preference' expects a number, got 'high'"


def test_unknown_key_inside_a_mapping():
    with pytest.raises(P.ParameterError) as exc:
        P.resolve({"allies.initial_alignment.netherland": 0.5})
    assert str(exc.value).startswith(
        "parameter 'allies.initial_alignment.netherland': "
        "'netherland' is not a key of 'allies.initial_alignment' (did you mean 'netherlands'?)"
    )


def test_params_table_lists_every_parameter(capsys):
    from decouple.cli import main

    assert main(["params"]) == 0
    out = capsys.readouterr().out
    for path in P.defaults():
        assert path in out
    assert "source: F30" in out


def test_default_value_reads_parameters_and_mapping_keys():
    assert P.default_value("demand.world_market_usd_bn_2022") == 600
    assert P.default_value("allies.initial_alignment.japan") == 0.4
    with pytest.raises(KeyError):
        P.default_value("allies.initial_alignment.narnia")
