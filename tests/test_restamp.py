"""Re-stamping an ensemble after a change of model code that changed no output."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from experiment.restamp import RestampError, restamp_ensemble
from model.ensemble import load_ensemble

SHIPPED = Path(__file__).resolve().parents[1] / "scenarios" / "ensembles" / "baseline.yaml"


@pytest.fixture
def ensemble(tmp_path):
    path = tmp_path / "baseline.yaml"
    shutil.copy(SHIPPED, path)
    return path


def test_restamp_records_the_new_code_and_the_evidence(ensemble):
    before = load_ensemble(ensemble)
    made = before.provenance["model_fingerprint"]
    assert restamp_ensemble(ensemble, made, "a" * 64, "10 runs identical", "2026-12-03T23:00:00")
    after = load_ensemble(ensemble)
    assert after.provenance["model_fingerprint"] == "a" * 64
    assert after.provenance["restamped"] == [
        {
            "from": made,
            "to": "a" * 64,
            "when": "2026-12-03T23:00:00",
            "evidence": "10 runs identical",
        }
    ] + before.provenance.get("restamped", [])
    assert after.members == before.members and after.weights == before.weights
    assert after.diagnostics == before.diagnostics
    # A second carry-over is listed first; the first stays.
    assert restamp_ensemble(ensemble, "a" * 64, "b" * 64, "it's identical", "2026-12-04T00:00:00")
    history = load_ensemble(ensemble).provenance["restamped"]
    assert [h["to"] for h in history[:2]] == ["b" * 64, "a" * 64]
    assert history[0]["evidence"] == "it's identical"


def test_restamp_is_a_no_op_on_the_same_code(ensemble):
    made = load_ensemble(ensemble).provenance["model_fingerprint"]
    text = ensemble.read_text()
    assert not restamp_ensemble(ensemble, "0" * 64, made, "x", "2026-12-03T23:00:00")
    assert ensemble.read_text() == text


def test_restamp_refuses_a_reference_from_other_code(ensemble):
    made = load_ensemble(ensemble).provenance["model_fingerprint"]
    text = ensemble.read_text()
    with pytest.raises(RestampError) as err:
        restamp_ensemble(ensemble, "c" * 64, "a" * 64, "x", "2026-12-03T23:00:00")
    assert str(err.value) == (
        f"{ensemble}: provenance.model_fingerprint is {made[:12]}, but the reference outputs "
        f"were written with model {'c' * 12}: write the reference on the code the ensemble "
        "was calibrated on, or rerun decouple calibrate"
    )
    assert ensemble.read_text() == text
