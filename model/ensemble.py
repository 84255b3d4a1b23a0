"""Parameter ensembles: sets of plausible parameter vectors a scenario samples from.

An ensemble file (written by ``decouple calibrate``, see ``docs/calibration.md``) holds the
weighted particles of a calibration: ``parameters`` names the dotted paths, each row of
``members`` gives one plausible value per path, in that order, and ``weights`` says how
plausible each row is. A scenario declares one with ``uncertain_ensemble: FILE`` (a path
relative to the scenario file); a batch then draws whole rows, so the correlations the
calibration found between parameters are kept (sampling each parameter's marginal on its
own would lose them). ``provenance`` and ``diagnostics`` say how the ensemble was made:
targets, method, seeds, model fingerprint, the per-target fit.

The file is read with the scenario files' safe YAML reader and checked here: every path a
known numeric parameter, every value inside the parameter's range, weights non-negative
and not all zero, one value per path in every row. Problems are raised together as
:class:`EnsembleError`, each as ``file:line:col: key.path: message``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from . import parameters as params_mod
from .scenario_yaml import MAX_BYTES, YamlDocument, YamlInputError, load_yaml

#: The ``kind`` an ensemble file declares (so another YAML file is not taken for one).
KIND = "decouple-parameter-ensemble"


class EnsembleError(ValueError):
    """An ensemble file is missing or not valid.

    Attributes:
        problems: one ``file:line:col: key.path: message`` line per problem.
    """

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class Ensemble(BaseModel):
    """A parameter ensemble as written in its file.

    Attributes:
        kind: always :data:`KIND`.
        scenario: the scenario it was calibrated for (informative).
        parameters: the dotted parameter paths, the column order of ``members``.
        weights: one non-negative weight per member (they need not sum to 1).
        members: one row of values per member, in ``parameters`` order.
        provenance: how it was made (targets, method, seeds, model fingerprint, ...).
        diagnostics: the calibration's fit (per target), acceptance rates, ...
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["decouple-parameter-ensemble"]
    scenario: str
    parameters: list[str]
    weights: list[float]
    members: list[list[float]]
    provenance: dict[str, Any] = {}
    diagnostics: dict[str, Any] = {}

    def probabilities(self):
        """The members' weights normalised to sum to 1 (numpy array)."""
        import numpy as np

        w = np.asarray(self.weights, dtype=float)
        return w / w.sum()

    def member_at(self, u):
        """Member indices at unit-interval points ``u``: the inverse CDF of the weights.

        Member *m* is drawn for ``u`` in ``[c_{m-1}, c_m)`` where ``c`` are the cumulative
        normalised weights, so a stratified design over ``u`` (Latin hypercube, Sobol')
        draws members in proportion to their weights.
        """
        import numpy as np

        cum = np.cumsum(self.probabilities())
        idx = np.searchsorted(cum, np.asarray(u, dtype=float), side="right")
        return np.minimum(idx, len(self.members) - 1)

    def values_of(self, member: int) -> dict[str, float]:
        """``{path: value}`` of one member."""
        return dict(zip(self.parameters, self.members[member]))


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (an ensemble's identity in scenario hashes and manifests)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_ensemble(path: str | Path) -> Ensemble:
    """Read and check an ensemble file.

    Raises:
        EnsembleError: with every problem found (unreadable file, wrong schema, unknown or
            non-numeric parameter, value outside its range, bad weights, ragged rows).
    """
    path = Path(path)
    if not path.is_file():
        raise EnsembleError(
            [f"{path}: ensemble file not found (decouple calibrate writes it; docs/calibration.md)"]
        )
    try:
        with path.open("rb") as fh:
            head = fh.read(MAX_BYTES).decode("utf-8", errors="replace")
    except OSError as exc:
        raise EnsembleError([f"{path}: cannot read the ensemble ({exc.strerror})"]) from None
    if not re.search(rf"(?m)^kind:[ \t]*['\"]?{KIND}\b", head):
        # Not shown: a scenario may name any file, and its content is none of our business.
        raise EnsembleError(
            [f"{path}: not a parameter ensemble (no top-level 'kind: {KIND}' line)"]
        )
    try:
        doc = load_yaml(path)
    except YamlInputError as exc:
        raise EnsembleError(exc.problems) from None
    except OSError as exc:
        raise EnsembleError([f"{path}: cannot read the ensemble ({exc.strerror})"]) from None
    if not isinstance(doc.data, dict):
        raise EnsembleError([f"{path}: an ensemble file must be a mapping (kind: {KIND}, ...)"])
    try:
        ens = Ensemble.model_validate(doc.data)
    except ValidationError as exc:
        raise EnsembleError(
            [
                f"{doc.where(tuple(e['loc']))}{e['msg']}"
                + (f" (expected '{KIND}')" if e["loc"] == ("kind",) else "")
                for e in exc.errors(include_url=False)
            ]
        ) from None
    problems = _check(ens, doc)
    if problems:
        raise EnsembleError(problems)
    return ens


def _check(ens: Ensemble, doc: YamlDocument) -> list[str]:
    """What the schema cannot say: known numeric paths, ranges, weights, row lengths."""
    problems = []
    if len(set(ens.parameters)) != len(ens.parameters):
        dup = sorted({p for p in ens.parameters if ens.parameters.count(p) > 1})
        problems.append(f"{doc.where(('parameters',))}paths listed twice: {', '.join(dup)}")
    numeric = []
    for i, p in enumerate(ens.parameters):
        default = params_mod.default_value(p) if params_mod.known_path(p) else None
        if not params_mod.known_path(p):
            problems.append(
                f"{doc.where(('parameters', i))}unknown parameter '{p}' (see `decouple params`)"
            )
        elif isinstance(default, bool) or not isinstance(default, (int, float)):
            problems.append(
                f"{doc.where(('parameters', i))}'{p}' is not a number ({default!r}); only "
                "numeric parameters can be in an ensemble"
            )
        else:
            numeric.append(i)
    if not ens.members:
        problems.append(f"{doc.where(('members',))}the ensemble has no members")
    if len(ens.weights) != len(ens.members):
        problems.append(
            f"{doc.where(('weights',))}{len(ens.weights)} weights for {len(ens.members)} "
            "members; give one weight per member"
        )
    if any(w < 0 for w in ens.weights) or (ens.weights and not sum(ens.weights) > 0):
        problems.append(f"{doc.where(('weights',))}weights must be non-negative and not all zero")
    for m, row in enumerate(ens.members):
        if len(row) != len(ens.parameters):
            problems.append(
                f"{doc.where(('members', m))}{len(row)} values for {len(ens.parameters)} "
                "parameters; give one value per parameter, in the order of 'parameters'"
            )
            continue
        for i in numeric:
            rng = params_mod.bounds(ens.parameters[i])
            if rng is not None and not rng[0] <= row[i] <= rng[1]:
                problems.append(
                    f"{doc.where(('members', m, i))}'{ens.parameters[i]}' = {row[i]:g} is "
                    f"outside the parameter's range [{rng[0]:g}, {rng[1]:g}] "
                    "(model/parameters.yaml)"
                )
    return problems
