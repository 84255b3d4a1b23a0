"""Scenario events: dated policy changes applied to the model at the start of a quarter.

Each event type of :mod:`model.scenario` maps to one change of agent state here, so a
scenario file never needs code. A control binds from the quarter of its event; tools bought
ahead of it (stockpiles) soften it for fabs' expansion during ``controls.stockpile_quarters``
(see :mod:`model.regimes`).
"""

from __future__ import annotations

import numpy as np

from . import parameters as params_mod
from .firms import FIRM_LINE_INDEX
from .regimes import threshold_to_gen


def apply_event(model, ev) -> None:
    """Apply one scenario event to ``model``."""
    action = ev.action
    handler = _HANDLERS[action]
    handler(model, ev)
    model.regime._version += 1  # any event may change what the regime blocks
    model.log_event(f"{action} {ev.note or ''}".strip())


def _control(model, ev) -> None:
    model.add_control(
        item=ev.item,
        target=ev.target,
        threshold_gen=threshold_to_gen(ev.threshold_nm),
        fdp=ev.foreign_direct_product,
        coverage=ev.coverage_pct / 100.0,
        licence=ev.licence_pct / 100.0,
        enforced_by=ev.enforced_by,
        label=ev.id or ev.note or "",
    )


def _relax(model, ev) -> None:
    model.regime.relax(ev.item, ev.target, ev.licence_pct)


def _entities(model, name: str):
    """Agents behind an entity name: a buyer (with its design arm for the flagship) or a firm."""
    out = []
    if name in model.buyers:
        out.append(model.buyers[name])
        if name == "flagship" and "design_flagship" in model.champions:
            out.append(model.champions["design_flagship"])
    if name in model.champions:
        out.append(model.champions[name])
    return out


def _list(model, ev) -> None:
    flag = ev.action == "list_entity"
    if ev.entity == "swarm":
        f = model.firms
        n = f.n
        rows = f.alive[:n] & ~f.champion[:n]
        if ev.lines:
            rows &= np.isin(f.line[:n], [FIRM_LINE_INDEX[x] for x in ev.lines])
        draw = model.rng.random(n) < ev.share_pct / 100.0
        f.listed[:n] = (f.listed[:n] & ~(rows & draw)) | (rows & draw & flag)
        return
    agents = _entities(model, ev.entity)
    if not agents:
        # A champion that has not entered yet is listed when it enters (or delisted).
        if flag:
            model.pending_listings.add(ev.entity)
        else:
            model.pending_listings.discard(ev.entity)
        return
    for a in agents:
        a.entity_listed = flag


def _reach(model, ev) -> None:
    model.regime.state.reach = ev.reach


def _leakage(model, ev) -> None:
    model.p["controls.leakage_pct"] = ev.leakage_pct


def _alignment(model, ev) -> None:
    ally = model.allies[ev.ally]
    ally.forced = None if ev.alignment == "free" else float(ev.alignment)
    if ally.forced is not None:
        ally.alignment = ally.forced


def _pressure(model, ev) -> None:
    model.us.pressure_boost += ev.add


def _funding(model, ev) -> None:
    amount = (
        ev.amount_usd_bn
        if ev.amount_usd_bn is not None
        else ev.amount_rmb_bn / model.p["china.rmb_per_usd"]
    )
    model.china.add_program(ev.program, amount, ev.quarters, ev.waste_pct, ev.lines)


def _procurement(model, ev) -> None:
    model.p["china.procurement_preference"] = ev.preference


def _countermeasure(model, ev) -> None:
    c = model.china
    c.countermeasure_level = min(1.0, max(0.0, c.countermeasure_level + ev.add))
    c.minerals_controlled = c.minerals_controlled or ev.minerals


def _talent(model, ev) -> None:
    model.china.talent_programs.append((model.quarter, ev.boost_pct_per_year))


def _set_parameter(model, ev) -> None:
    resolved = params_mod.resolve({ev.path: ev.value})
    if ev.path in model.p:
        model.p[ev.path] = resolved[ev.path]
    else:
        parent = ev.path.rpartition(".")[0]
        model.p[parent] = {**model.p[parent], ev.path.rpartition(".")[2]: ev.value}


_HANDLERS = {
    "control": _control,
    "relax_control": _relax,
    "list_entity": _list,
    "delist_entity": _list,
    "extraterritorial_reach": _reach,
    "leakage": _leakage,
    "ally_alignment": _alignment,
    "us_pressure": _pressure,
    "funding_program": _funding,
    "procurement_preference": _procurement,
    "countermeasure": _countermeasure,
    "talent_program": _talent,
    "set_parameter": _set_parameter,
}
