"""Scenario events: dated policy changes applied to the model at the start of a quarter.

Each event action of the scenario schema (:mod:`model.scenario`) has one
:class:`EventAction` subclass here whose :meth:`~EventAction.apply` changes the agents
through their public methods, so a scenario file never needs code. Every schema action must
have a class: a missing one fails at import (and in ``tests/test_events.py``), not mid-run.
A control binds from the quarter of its event; tools bought ahead of it (stockpiles)
soften it for fabs' expansion during ``controls.stockpile_quarters`` (see
:mod:`model.regimes`).
"""

from __future__ import annotations

from typing import ClassVar

from .firms import FIRM_LINE_INDEX, in_lines
from .regimes import threshold_to_gen
from .scenario import EVENT_ACTIONS


class EventAction:
    """One kind of scenario event; subclasses name their ``action`` and implement ``apply``.

    Args:
        event: the validated event (its fields are the schema's for this action).
    """

    action: ClassVar[str]
    #: Several schema actions one class handles (instead of ``action``).
    actions: ClassVar[tuple[str, ...]] = ()
    registry: ClassVar[dict[str, type[EventAction]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        names = cls.__dict__.get("actions") or (cls.action,)
        for name in names:
            EventAction.registry[name] = cls

    def __init__(self, event):
        self.event = event

    def apply(self, model) -> None:
        """Change the model's agents as the event says."""
        raise NotImplementedError


class Control(EventAction):
    """A new export-control rule."""

    action = "control"

    def apply(self, model) -> None:
        """Add the rule to the regime, effective this quarter."""
        ev = self.event
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


class RelaxControl(EventAction):
    """Licences granted again on rules already in force."""

    action = "relax_control"

    def apply(self, model) -> None:
        """Raise the licence share of the matching rules."""
        model.regime.relax(self.event.item, self.event.target, self.event.licence_pct)


class ListEntity(EventAction):
    """An entity put on (or taken off) the Entity List."""

    actions = ("list_entity", "delist_entity")

    def apply(self, model) -> None:
        """List or delist a buyer, a champion, or a random share of the swarm."""
        ev = self.event
        listed = ev.action == "list_entity"
        if ev.entity == "swarm":
            self._swarm(model, listed)
            return
        agents = _entities(model, ev.entity)
        if not agents:
            # A champion that has not entered yet is listed when it enters (or delisted).
            if listed:
                model.pending_listings.add(ev.entity)
            else:
                model.pending_listings.discard(ev.entity)
            return
        for agent in agents:
            agent.entity_listed = listed

    def _swarm(self, model, listed: bool) -> None:
        ev = self.event
        f = model.firms
        n = f.n
        rows = f.alive[:n] & ~f.champion[:n]
        if ev.lines:
            rows &= in_lines(f.line_index(), [FIRM_LINE_INDEX[x] for x in ev.lines])
        draw = model.stream("events").random(n) < ev.share_pct / 100.0
        f.listed[:n] = (f.listed[:n] & ~(rows & draw)) | (rows & draw & listed)


def _entities(model, name: str) -> list:
    """Agents behind an entity name: a buyer (with its design arm for the flagship) or a firm."""
    out = []
    if name in model.buyers:
        out.append(model.buyers[name])
        if name == "flagship" and "design_flagship" in model.champions:
            out.append(model.champions["design_flagship"])
    if name in model.champions:
        out.append(model.champions[name])
    return out


class ExtraterritorialReach(EventAction):
    """How far foreign direct product rules reach third-country items."""

    action = "extraterritorial_reach"

    def apply(self, model) -> None:
        """Set the regime's reach."""
        model.regime.set_reach(self.event.reach)


class Leakage(EventAction):
    """The share of country-wide controlled trade that still reaches China."""

    action = "leakage"

    def apply(self, model) -> None:
        """Set ``controls.leakage_pct`` from this quarter on."""
        model.set_parameter("controls.leakage_pct", self.event.leakage_pct)


class AllyAlignment(EventAction):
    """An ally's alignment forced to a value, or handed back to its own choice."""

    action = "ally_alignment"

    def apply(self, model) -> None:
        """Force the ally's alignment (or free it)."""
        alignment = self.event.alignment
        model.allies[self.event.ally].force(None if alignment == "free" else float(alignment))


class UsPressure(EventAction):
    """Extra US pressure on allies (diplomacy beyond what its own controls imply)."""

    action = "us_pressure"

    def apply(self, model) -> None:
        """Add to the US's pressure boost."""
        model.us.pressure_boost += self.event.add


class FundingProgram(EventAction):
    """A Chinese state funding programme (Big Fund phases, a whole-nation surge)."""

    action = "funding_program"

    def apply(self, model) -> None:
        """Start the programme, its amount in US$ (RMB converted at ``china.rmb_per_usd``)."""
        ev = self.event
        amount = (
            ev.amount_usd_bn
            if ev.amount_usd_bn is not None
            else ev.amount_rmb_bn / model.p["china.rmb_per_usd"]
        )
        model.china.add_program(ev.program, amount, ev.quarters, ev.waste_pct, ev.lines)


class ProcurementPreference(EventAction):
    """China's push on state-linked buyers toward domestic chips."""

    action = "procurement_preference"

    def apply(self, model) -> None:
        """Set ``china.procurement_preference`` from this quarter on."""
        model.set_parameter("china.procurement_preference", self.event.preference)


class Countermeasure(EventAction):
    """Chinese countermeasures: blocking rules, sanctions law, mineral export controls."""

    action = "countermeasure"

    def apply(self, model) -> None:
        """Raise (or lower) China's countermeasure level; start mineral controls."""
        model.china.add_countermeasure(self.event.add, self.event.minerals)


class TalentProgram(EventAction):
    """A change in the growth of China's chip workforce (new schools, restrictions)."""

    action = "talent_program"

    def apply(self, model) -> None:
        """Register the programme; it takes effect after its lag (F16)."""
        model.china.add_talent_program(self.event.boost_pct_per_year)


class SetParameter(EventAction):
    """Any parameter changed from this quarter on."""

    action = "set_parameter"

    def apply(self, model) -> None:
        """Set the parameter (checked like a scenario override)."""
        model.set_parameter(self.event.path, self.event.value)


_missing = sorted(set(EVENT_ACTIONS) - set(EventAction.registry))
if _missing:
    raise ImportError(f"model.events: scenario actions without an EventAction class: {_missing}")


def apply_event(model, ev) -> None:
    """Apply one scenario event to ``model`` and log it."""
    EventAction.registry[ev.action](ev).apply(model)
    model.regime.invalidate()  # any event may change what the regime blocks
    model.log_event(f"{ev.action} {ev.note or ''}".strip())


__all__ = ["EventAction", "apply_event"]
