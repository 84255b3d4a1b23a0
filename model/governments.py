"""Governments: the US, China and the allies that choose how far to follow US controls."""

from __future__ import annotations

import math
from dataclasses import dataclass

import mesa
import numpy as np

from .calendar import QUARTERS_PER_YEAR
from .regimes import pressure_index
from .taxonomy import LEADING_MIN_GEN

#: Opinion poll share at which the public is split between US and Chinese ties: the
#: zero of the opinion term (``allies.weight_opinion`` is per (opinion - 50) / 50).
OPINION_NEUTRAL_PCT = 50.0
#: Tools whose thresholds rule-based US tightening lowers.
AUTO_TIGHTEN_ITEMS = ("other_equipment", "litho_equipment", "eda_ip")


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def alignment_pressure(alignments: list[float], target: float, per_gap: float) -> float:
    """Extra US pressure when the allies it asked fall short of the alignment it wants (F24).

    Args:
        alignments: the asked allies' alignments, 0-1.
        target: the alignment the US wants from them.
        per_gap: pressure per unit of the mean shortfall.
    """
    if not alignments:
        return 0.0
    return per_gap * sum(max(0.0, target - a) for a in alignments) / len(alignments)


class AllyGovernment(mesa.Agent):
    """An ally (Netherlands, Japan, South Korea, Taiwan, EU) deciding its alignment.

    In ``free`` mode it moves each quarter toward a target alignment
    ``logistic(intercept + w_p * US pressure + w_o * opinion + w_s * security
    - w_x * its firms' China revenue share - w_c * Chinese countermeasures + noise)``
    (F24 pressure, F27 opinion, F25 exposure, F22 countermeasures); a scenario event can
    force a value instead (``ally_alignment``) or hand the choice back (``free``).
    """

    def __init__(self, model, name: str, alignment: float, opinion_pct: float, security: float):
        super().__init__(model)
        self.name = name
        self.alignment = alignment
        self.opinion = (opinion_pct - OPINION_NEUTRAL_PCT) / OPINION_NEUTRAL_PCT
        self.security_dependence = security
        self.forced: float | None = None
        self.exposure = 0.0
        self.asked = False
        #: True once the ally, asked by the US, reached ``allies.join_threshold``: it has
        #: joined the controls and can defect from them.
        self.joined = False

    def decide(self) -> None:
        """Set this quarter's alignment (free choice or forced)."""
        m = self.model
        p = m.p
        if self.forced is not None:
            self.alignment = self.forced
            self._note_joined()
            return
        noise = m.stream("allies").normal(0.0, p["allies.decision_noise_sd"])
        x = (
            p["allies.decision_intercept"]
            + p["allies.weight_us_pressure"] * m.us.pressure
            + p["allies.weight_opinion"] * self.opinion
            + p["allies.weight_security"] * self.security_dependence
            - p["allies.weight_china_exposure"] * self.exposure
            - p["allies.weight_countermeasures"] * m.china.countermeasure_level
            - (p["countermeasures.mineral_leverage"] if m.china.minerals_controlled else 0.0)
            + noise
        )
        target = _logistic(x)
        self.alignment += p["allies.adjustment_pct_per_quarter"] / 100.0 * (target - self.alignment)
        self.alignment = min(1.0, max(0.0, self.alignment))
        self._note_joined()

    def _note_joined(self) -> None:
        if self.asked and self.alignment >= self.model.p["allies.join_threshold"]:
            self.joined = True

    def force(self, alignment: float | None) -> None:
        """Force the alignment to ``alignment`` from now on, or (``None``) decide freely again."""
        self.forced = alignment
        if alignment is not None:
            self.alignment = alignment

    @property
    def defected(self) -> bool:
        """Left an alignment it had joined: below the defection threshold after joining.

        An ally that never joined (alignment never reached ``allies.join_threshold`` after
        the US asked) has not defected, however low its alignment.
        """
        return self.joined and self.alignment < self.model.p["allies.defection_threshold"]


class USGovernment(mesa.Agent):
    """The US: presses allies, may tighten by rule, may relax under its firms' lobbying (F26)."""

    def __init__(self, model):
        super().__init__(model)
        self.pressure_boost = 0.0
        self.pressure = 0.0
        self.lost_revenue_usd_bn = 0.0
        self.relaxed = False

    def act(self) -> None:
        """Update pressure on allies, lobbying and rule-based tightening."""
        m = self.model
        p = m.p
        q = m.quarter
        index = pressure_index(
            m.regime.intensity(q),
            p["controls.intensity_per_pressure_unit"],
            p["us.pressure_max_index"],
        )
        self.pressure = (
            p["us.pressure_per_control_level"] * index
            + self.pressure_boost
            + alignment_pressure(
                [a.alignment for a in m.allies.values() if a.asked],
                p["us.alignment_target"],
                p["us.pressure_per_alignment_gap"],
            )
        )
        if self.pressure > 0:
            for ally in m.allies.values():
                ally.asked = True
        # F26: US firms' China revenue lost to controls feeds lobbying for relaxation.
        w = p["us.lobbying_weight"]
        if w > 0 and not self.relaxed and m.regime.intensity(q) > 0:
            if w * self.lost_revenue_usd_bn > p["us.lobbying_threshold_usd_bn"]:
                licence_pct = p["us.lobbying_relaxation_licence_pct"]
                m.regime.relax("all", "all", licence_pct)
                self.relaxed = True
                m.log_event(f"us lobbying relaxes country-wide controls (licence {licence_pct:g}%)")
        if p["us.auto_tighten"]:
            self._auto_tighten()

    def _auto_tighten(self) -> None:
        """Lower tool thresholds when China's best node closes in on them (DESIGN: regimes)."""
        m = self.model
        p = m.p
        q = m.quarter
        reg = m.regime
        if q - reg.last_tightened_q < p["us.auto_tighten_interval_quarters"]:
            return
        thresholds = [t for t in reg.binding_thresholds("other_equipment", q) if np.isfinite(t)]
        if not thresholds:
            return
        lowest = min(thresholds)
        if m.china_best_gen >= lowest - p["us.auto_tighten_margin_generations"]:
            new_thr = max(
                lowest - p["us.auto_tighten_step_generations"],
                p["us.auto_tighten_floor_generation"],
            )
            for item in AUTO_TIGHTEN_ITEMS:
                m.add_control(
                    item=item, target="all", threshold_gen=new_thr, fdp=True, label="auto-tighten"
                )
            if new_thr < LEADING_MIN_GEN:
                m.add_control(
                    item="chips_advanced",
                    target="all",
                    threshold_gen=-np.inf,
                    fdp=True,
                    coverage=p["us.auto_tighten_chip_coverage_pct"] / 100.0,
                    label="auto-tighten",
                )
            reg.last_tightened_q = q
            m.log_event(f"US auto-tightens tool controls to generation {new_thr:.1f}")


@dataclass
class PolicyResponse:
    """China's decision rule's state (docs/ODD.md section 7.10).

    Attributes:
        reference: (goal gap share, control pressure) when the rule starts: the policy
            the baseline holds answers these, the rule answers changes from them.
        money_usd_bn_per_year: response money, US$ bn a year (negative: programmes cut).
        preference: logit units added to procurement preference.
        talent_pct_per_year: extra workforce growth, %/year.
    """

    reference: tuple[float, float] | None = None
    money_usd_bn_per_year: float = 0.0
    preference: float = 0.0
    talent_pct_per_year: float = 0.0


def response_signal(gap_change: float, pressure_change: float, per_gap: float, per_pressure):
    """How much more (or less) the government must do: a weighted sum of the changes.

    Args:
        gap_change: change of the goal gap since the rule started, share of the goal.
        pressure_change: change of the control pressure index since then.
        per_gap: weight of a goal gap widening by the whole goal.
        per_pressure: weight of one unit of control pressure.
    """
    return per_gap * gap_change + per_pressure * pressure_change


def response_money_target(signal: float, usd_bn_per_signal: float, limit: float, floor: float):
    """Response money the government aims for, US$ bn a year, within its fiscal limits."""
    return min(limit, max(floor, signal * usd_bn_per_signal))


def response_waste_pct(
    money_usd_bn_per_year: float, waste_at_reference: float, pace: float, waste_max: float
) -> float:
    """Share of response money lost, %: it rises with the pace of money (F19, F32)."""
    if pace <= 0:
        return waste_max
    return min(waste_max, waste_at_reference * max(0.0, money_usd_bn_per_year) / pace)


class ChinaGovernment(mesa.Agent):
    """China: subsidies, Big Fund phases, procurement preference, talent, countermeasures.

    Its quarterly budget is the central subsidy (F07, growing with F20's R&D push), the
    funding programmes started by scenario events (Big Fund I-III, a whole-nation surge F29),
    and local governments' co-investment (F05's envelope, F19's HSMC money).
    """

    def __init__(self, model):
        super().__init__(model)
        self.programs: list[dict] = []
        self.countermeasure_level = 0.0
        self.minerals_controlled = False
        self.talent_programs: list[tuple[int, float]] = []
        self.talent_supply_k = 0.0
        #: The decision rule's state (docs/ODD.md section 7.10): what it answers, its money.
        self.response = PolicyResponse()

    @property
    def procurement_preference(self) -> float:
        """Logit units pushing state-linked buyers toward domestic chips.

        The parameter (events change it) plus the decision rule's response.
        """
        return self.model.p["china.procurement_preference"] + self.response.preference

    def decide(self, self_sufficiency_pct: float, control_pressure: float) -> None:
        """Answer the goal gap (F01) and control pressure with money, preference and talent.

        From ``china.response_start_year`` the government compares the goal gap and the
        control pressure with where they stood then (the policy the baseline holds) and
        moves its response money toward ``response_money_target`` of the change, within
        its fiscal limit; procurement preference and talent programmes follow the same
        signal. See :func:`response_signal`.
        """
        m = self.model
        p = m.p
        if m.year_float < p["china.response_start_year"]:
            return
        goal = p["china.self_sufficiency_goal_pct"]
        gap = max(0.0, goal - self_sufficiency_pct) / goal if goal > 0 else 0.0
        r = self.response
        if r.reference is None:
            r.reference = (gap, control_pressure)
        signal = response_signal(
            gap - r.reference[0],
            control_pressure - r.reference[1],
            p["china.response_per_goal_gap"],
            p["china.response_per_pressure"],
        )
        strength = p["china.response_strength"]
        target = response_money_target(
            strength * signal,
            p["china.response_usd_bn_per_year_per_signal"],
            p["china.response_fiscal_limit_usd_bn_per_year"],
            -p["china.response_cut_limit_usd_bn_per_year"],
        )
        speed = p["china.response_adjustment_pct_per_quarter"] / 100.0
        r.money_usd_bn_per_year += speed * (target - r.money_usd_bn_per_year)
        r.preference = strength * p["china.response_preference_per_signal"] * signal
        r.talent_pct_per_year = strength * p["china.response_talent_pct_per_signal"] * signal

    def add_program(
        self, name: str, amount_usd_bn: float, quarters: int, waste_pct: float | None, lines
    ) -> None:
        """Start a funding programme disbursed evenly over ``quarters``."""
        self.programs.append(
            {
                "name": name,
                "per_q": amount_usd_bn / quarters,
                "left": quarters,
                "waste": waste_pct,
                "lines": lines,
            }
        )

    def budget(self) -> tuple[float, float, list[tuple[float, list | None]]]:
        """This quarter's state money: (total, extra wasted up front, targeted parts).

        Returns:
            total US$ bn, the part lost before reaching firms (programmes with their own
            waste share, e.g. a surge), and the list of (amount, lines) for targeted money.
        """
        m = self.model
        p = m.p
        years = m.year_float - p["china.subsidy_reference_year"]
        central = (
            p["china.central_subsidy_usd_bn_per_year_2020"]
            / QUARTERS_PER_YEAR
            * (1 + p["china.subsidy_growth_pct_per_year"] / 100.0) ** years
        )
        total = central
        lost = 0.0
        targeted = []
        for prog in self.programs:
            if prog["left"] <= 0:
                continue
            prog["left"] -= 1
            amt = prog["per_q"]
            if prog["waste"] is not None:
                lost += amt * prog["waste"] / 100.0
                amt *= 1 - prog["waste"] / 100.0
            total += prog["per_q"]
            if prog["lines"]:
                targeted.append((amt, prog["lines"]))
        response = self.response.money_usd_bn_per_year / QUARTERS_PER_YEAR
        if response != 0.0:
            waste = response_waste_pct(
                response * QUARTERS_PER_YEAR,
                p["china.response_waste_pct_at_reference_pace"],
                p["china.response_reference_pace_usd_bn_per_year"],
                p["china.response_waste_max_pct"],
            )
            # A cut trims the programmes in force, never below nothing.
            total += max(response, -total)
            if response > 0:
                lost += response * waste / 100.0
                lines = [line for line, w in p["china.response_lines"].items() if w > 0]
                targeted.append((response * (1 - waste / 100.0), lines))
        total *= 1.0 + p["china.local_government_multiplier"]
        return total, lost, targeted

    def update_talent(self) -> None:
        """Grow the chip workforce (F15 gap, F16 programmes four years after they start)."""
        m = self.model
        p = m.p
        growth = (
            p["china.talent_supply_growth_pct_per_year"]
            + p["china.talent_supply_response_pct_per_year"] * m.talent_shortfall
            + self.response.talent_pct_per_year
        )
        lag = p["china.talent_program_lag_quarters"]
        for start_q, boost in self.talent_programs:
            # New schools graduate their first classes after the lag; restrictions bite at once.
            if boost < 0 or m.quarter >= start_q + lag:
                growth += boost
        self.talent_supply_k *= max(0.0, 1 + growth / 100.0) ** (1 / QUARTERS_PER_YEAR)

    def add_countermeasure(self, add: float, minerals: bool) -> None:
        """Raise (or lower) the countermeasure level, within 0-1; start mineral export controls."""
        self.countermeasure_level = min(1.0, max(0.0, self.countermeasure_level + add))
        self.minerals_controlled = self.minerals_controlled or minerals

    def add_talent_program(self, boost_pct_per_year: float) -> None:
        """Change workforce growth from this quarter (a boost only after the lag, F16)."""
        self.talent_programs.append((self.model.quarter, boost_pct_per_year))

    def answer_country_wide_rule(self) -> None:
        """Raise the countermeasure level after a new country-wide US rule (F22).

        China answers country-wide rules, not each listing.
        """
        response = self.model.p["countermeasures.response_to_us_rule"]
        self.countermeasure_level = min(1.0, self.countermeasure_level + response)
