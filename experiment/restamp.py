"""Carry a calibrated ensemble over a change of model code that changed no output.

An ensemble records the fingerprint of the model code it was calibrated on
(``provenance.model_fingerprint``), and a batch drawing from it warns when today's code
differs. A refactor or speed-up that leaves every output bit unchanged does not invalidate
the calibration, and recalibrating would not reproduce the ensemble (pyabc's proposals are
not bit-reproducible, docs/calibration.md): the fitted values and every number measured
with them would move for no model reason. So such a change *re-stamps* the ensemble
instead: ``benchmarks/reference_outputs.py --check REF --restamp ENSEMBLE`` compares every
output column of the reference runs (written on the ensemble's code) exactly and, only if
all are identical, records the new fingerprint and the evidence in
``provenance.restamped`` (newest first). Members, weights and diagnostics are not touched.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from model.ensemble import load_ensemble


class RestampError(ValueError):
    """The ensemble cannot be carried over (wrong reference, or not an ensemble file)."""


def restamp_ensemble(
    path: str | Path, reference_fingerprint: str, now_fingerprint: str, evidence: str, when: str
) -> bool:
    """Record ``now_fingerprint`` as the ensemble's model code; returns whether it changed.

    Call it only after the reference outputs compared identical. The reference must have
    been written on the code the ensemble records, so that the chain calibrated-on ->
    reference -> now is checked.

    Args:
        path: the ensemble file (``decouple calibrate`` output).
        reference_fingerprint: model fingerprint the reference outputs were written with.
        now_fingerprint: today's model fingerprint (the outputs compared identical).
        evidence: one line saying what compared identical (runs, columns, reference file).
        when: ISO timestamp of the check.

    Raises:
        RestampError: if the ensemble records another fingerprint than the reference's, or
            its file does not have exactly one ``model_fingerprint`` line.
    """
    path = Path(path)
    before = load_ensemble(path)
    made = before.provenance.get("model_fingerprint")
    if made == now_fingerprint:
        return False
    if made != reference_fingerprint:
        raise RestampError(
            f"{path}: provenance.model_fingerprint is {str(made)[:12]}, but the reference "
            f"outputs were written with model {reference_fingerprint[:12]}: write the "
            "reference on the code the ensemble was calibrated on, or rerun decouple calibrate"
        )
    text = path.read_text(encoding="utf-8")
    line = re.compile(rf"^( +)model_fingerprint: {re.escape(made)}\n", re.M)
    found = line.findall(text)
    if len(found) != 1:
        raise RestampError(
            f"{path}: expected one 'model_fingerprint: {made[:12]}...' line under provenance, "
            f"found {len(found)}"
        )
    indent = found[0]
    quoted = evidence.replace("'", "''")
    entry = (
        f"{indent}- from: {made}\n{indent}  to: {now_fingerprint}\n"
        f"{indent}  when: '{when}'\n{indent}  evidence: '{quoted}'\n"
    )
    stamp = f"{indent}model_fingerprint: {now_fingerprint}\n"
    history = re.compile(rf"^{indent}restamped:\n", re.M)
    if history.search(text):  # newest first: the entry goes right under the key
        text = history.sub(lambda m: m.group(0) + entry, line.sub(stamp, text), count=1)
    else:
        text = line.sub(lambda _: stamp + f"{indent}restamped:\n" + entry, text)
    tmp = path.with_name(path.name + ".restamp.tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        after = load_ensemble(tmp)
        same = (
            after.members == before.members
            and after.weights == before.weights
            and after.provenance.get("model_fingerprint") == now_fingerprint
        )
        if not same:
            raise RestampError(f"{path}: the re-stamped file does not read back the same")
    except BaseException:
        tmp.unlink()
        raise
    os.replace(tmp, path)
    return True
