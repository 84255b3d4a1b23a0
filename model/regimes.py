"""Export-control regimes: rules, listed entities, reach, leakage and stockpiling.

A regime (today only the US-led one) holds dated rules. A rule covers an item (chips of a
tier, lithography or other tools, EDA/IP, materials), optionally only at or beyond a
technology threshold, and either every Chinese buyer (``all``) or only listed entities
(``listed``). Who complies:

* US firms always;
* an ally's firms in proportion to the ally's alignment (or fully, when the rule names the
  ally in ``enforced_by``: a bilateral decision such as the Dutch EUV licence refusal);
* the rest of a non-complying country's items only through a foreign direct product rule,
  in proportion to the regime's extraterritorial reach and the share of that country's
  items made with US technology (which firms can "design out": F23).

Country-wide rules leak (smuggling, front companies); rules on named entities do not.
Tools bought ahead of a rule are a stock of their own (:mod:`model.stockpile`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mesa
import numpy as np

from .taxonomy import ALLIES, CONTROLLABLE, COUNTRIES, node_nm_to_gen

#: Supply origins: the six countries plus ``other`` (outside every regime).
ORIGINS: tuple[str, ...] = COUNTRIES + ("other",)
ITEM_INDEX = {name: i for i, name in enumerate(CONTROLLABLE)}
#: Buyer kinds a rule can treat differently: unlisted (0) and listed (1) Chinese buyers.
BUYER_KINDS = 2
#: ``last_tightened_q`` before any rule-based tightening: long before every run.
NEVER_Q = -(10**6)
#: Cached regime tables kept before the cache is cleared (a run asks a few dozen per quarter).
MAX_CACHED_TABLES = 256


@dataclass
class ControlRule:
    """One dated rule of a regime."""

    item: int
    target: str  # "all" or "listed"
    threshold_gen: float  # covers items at or beyond this node generation (-inf: all)
    coverage: float
    licence: float
    foreign_direct_product: bool
    enforced_by: frozenset[str]
    effective_q: int
    label: str = ""


@dataclass
class RegimeState:
    """What the regime looks like this quarter (rebuilt by events)."""

    rules: list[ControlRule] = field(default_factory=list)
    reach: float = 1.0


class ExportControlRegime(mesa.Agent):
    """The US-led export-control regime.

    Attributes:
        name: regime key used by scenario events (``us``).
        state: its rules, reach and leakage.
    """

    def __init__(self, model, name: str):
        super().__init__(model)
        self.name = name
        self.state = RegimeState()
        self._cache: dict = {}
        self._last: tuple | None = None
        self._version = 0
        self._arrays: dict[str, np.ndarray] = {}
        self._arrays_stamp: tuple[int, int] | None = None
        self._memo_tables: np.ndarray | None = None
        self._memo: dict = {}
        self.last_tightened_q = NEVER_Q

    # -- changes ----------------------------------------------------------------------
    def add_rule(self, rule: ControlRule) -> None:
        """Add a rule (from a scenario event or the auto-tightening rule)."""
        self.state.rules.append(rule)

    def set_reach(self, reach: float) -> None:
        """Set how far foreign direct product rules reach third-country items (0-1)."""
        self.state.reach = reach
        self.invalidate()

    def invalidate(self) -> None:
        """Forget cached tables: something they depend on changed (an event, a parameter)."""
        self._version += 1

    def relax(self, item: str, target: str, licence_pct: float) -> None:
        """Raise the licence share of matching rules (F26: lobbying, detente)."""
        for r in self.state.rules:
            if (item == "all" or r.item == ITEM_INDEX[item]) and target in ("any", r.target):
                r.licence = max(r.licence, licence_pct / 100.0)
        self._version += 1

    # -- queries ------------------------------------------------------------------------
    def intensity(self, quarter: int) -> float:
        """A 0-∞ index of how much the regime covers: sum of binding coverage x (1-licence)."""
        return float(
            sum(r.coverage * (1 - r.licence) for r in self.state.rules if r.effective_q <= quarter)
        )

    def blocked(
        self,
        item: str,
        listed: bool,
        gen: np.ndarray | float,
        quarter: int,
        compliance: np.ndarray,
        us_technology: np.ndarray,
    ) -> np.ndarray:
        """Share of each origin's supply of ``item`` that cannot reach a buyer.

        Args:
            item: a name from ``CONTROLLABLE``.
            listed: whether the buyer is on the entity list.
            gen: node generation(s) the item is needed for; shape (n,) or scalar.
            quarter: current quarter ordinal.
            compliance: (origins,) each origin's alignment (1 for the US, 0 for ``other``).
            us_technology: (origins,) share of each origin's items made with US technology.

        Returns:
            Array (n, origins) of blocked shares in [0, 1].
        """
        index, rows = self.blocked_rows(item, listed, gen, quarter, compliance, us_technology)
        return rows[index]

    def blocked_rows(
        self,
        item: str,
        listed: bool,
        gen: np.ndarray | float,
        quarter: int,
        compliance: np.ndarray,
        us_technology: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`blocked` in factored form: ``blocked(...) == rows[index]``.

        Returns ``(index, rows)``: ``rows`` (intervals, origins) holds the blocked shares of
        each interval between rule thresholds and ``index`` (n,) the interval of each
        generation in ``gen``. Callers that reduce over origins can do so once per interval
        instead of once per buyer.
        """
        thresholds, rows = self.blocked_table(item, listed, quarter, compliance, us_technology)
        return interval_index(thresholds, gen), rows

    def blocked_table(
        self,
        item: str,
        listed: bool,
        quarter: int,
        compliance: np.ndarray,
        us_technology: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rule thresholds and, per interval between them, the blocked shares of ``item``.

        Returns ``(thresholds, rows)``: the thresholds of all binding rules, ascending (the
        same for every item and buyer kind), and ``rows`` (intervals, origins). A generation
        ``g`` lies in interval ``searchsorted(thresholds, g, side="right")``.
        """
        thresholds, tables = self._open_tables(quarter, compliance, us_technology)
        return thresholds, 1.0 - tables[BUYER_KINDS * ITEM_INDEX[item] + int(bool(listed))]

    def blocked_items(
        self,
        items,
        listed: bool,
        gen: float,
        quarter: int,
        compliance: np.ndarray,
        us_technology: np.ndarray,
    ) -> np.ndarray:
        """(items, origins): :meth:`blocked` of several items at one generation, in one call."""
        thresholds, tables = self._open_tables(quarter, compliance, us_technology)
        combos = np.array([BUYER_KINDS * ITEM_INDEX[item] + int(bool(listed)) for item in items])
        row = int(np.searchsorted(thresholds, float(gen), side="right"))
        return 1.0 - tables[combos, row]

    def thresholds_blocked(
        self,
        item: str,
        listed: bool,
        quarter: int,
        compliance: np.ndarray,
        us_technology: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Thresholds of all binding rules (ascending) and ``blocked`` at each of them."""
        thresholds, tables = self._open_tables(quarter, compliance, us_technology)
        return thresholds, 1.0 - tables[BUYER_KINDS * ITEM_INDEX[item] + int(bool(listed))][1:]

    def memo(self, quarter: int, compliance: np.ndarray, us_technology: np.ndarray) -> dict:
        """A dict for callers' results derived from the current tables (see :meth:`_open_tables`).

        Emptied whenever the tables change (new quarter, rules, compliance, reach, version),
        so a caller can keep there what it computes from them and fixed model inputs
        (foreign supply shares), keyed by its own arguments and the parameters it reads.
        """
        _, tables = self._open_tables(quarter, compliance, us_technology)
        if self._memo_tables is not tables:  # held here, so the identity is never reused
            self._memo_tables, self._memo = tables, {}
        return self._memo

    def _open_tables(self, quarter, compliance, us_technology):
        """Sorted rule thresholds and, per (item, listed) and interval, each origin's open share.

        Returns ``(thresholds, tables)``: ``tables[BUYER_KINDS * item + listed]`` has one row per
        interval between the thresholds of all binding rules; row 0 is below every threshold
        (all open) and row ``j`` applies the rules on that item (and, for an unlisted buyer,
        only country-wide ones) with thresholds at or below ``thresholds[j - 1]``, multiplied
        in rule order, so a result does not depend on how many generations a caller asks
        about at once. Rules, compliance and reach are fixed within a quarter and dozens of
        calls ask about them, so the tables are built once and cached until any changes.
        """
        last = self._last
        if (
            last is not None
            and last[2] is compliance
            and last[3] is us_technology
            and last[4] == (quarter, self.state.reach, len(self.state.rules), self._version)
            and not compliance.flags.writeable
            and not us_technology.flags.writeable
        ):
            return last[0], last[1]  # the same question as the last call: no key to build
        key = (
            quarter,
            _array_key(compliance),
            _array_key(us_technology),
            self.state.reach,
            len(self.state.rules),
            self._version,
        )
        cached = self._cache.get(key)
        if cached is not None:
            self._last = (
                *cached,
                (quarter, self.state.reach, len(self.state.rules), self._version),
            )
            return cached[0], cached[1]
        if len(self._cache) > MAX_CACHED_TABLES:
            self._cache.clear()
        thresholds, tables = self._build_tables(quarter, compliance, us_technology)
        tables.flags.writeable = False
        # The arrays are kept with the tables so that an id in the key is never reused.
        self._cache[key] = (thresholds, tables, compliance, us_technology)
        self._last = (
            thresholds,
            tables,
            compliance,
            us_technology,
            (quarter, self.state.reach, len(self.state.rules), self._version),
        )
        return thresholds, tables

    def _build_tables(self, quarter, compliance, us_technology):
        """Build the tables :meth:`_open_tables` caches (see there for their layout)."""
        rules = self._rule_arrays()
        open_factor, binds = self._open_factors(rules, quarter, compliance, us_technology)
        binding = np.nonzero(binds)[0]
        rule_thresholds = rules["threshold_gen"][binding]
        thresholds = np.array(sorted(set(rule_thresholds.tolist())), dtype=float)
        tables = np.ones((BUYER_KINDS * len(ITEM_INDEX), thresholds.size + 1, len(ORIGINS)))
        # A rule covers the intervals from its own threshold up (a suffix of the rows) for a
        # listed buyer, and for others too when it is country-wide. One entry per covered
        # (combination, row), grouped by rule: ``multiply.at`` applies entries in order, so
        # each cell multiplies its rules in rule order.
        first = 1 + np.searchsorted(thresholds, rule_thresholds, side="left")
        span = thresholds.size + 1 - first
        per_rule = span * (1 + rules["target_all"][binding])
        rule = np.repeat(np.arange(binding.size), per_rule)
        local = np.arange(rule.size) - np.repeat(np.cumsum(per_rule) - per_rule, per_rule)
        combo = BUYER_KINDS * rules["item"][binding][rule] + 1 - (local >= span[rule])
        row = first[rule] + local % span[rule]
        np.multiply.at(tables, (combo, row), open_factor[binding][rule])
        return thresholds, tables

    def _open_factors(self, rules, quarter, compliance, us_technology):
        """(rules, origins) share each rule leaves open this quarter, and whether it binds."""
        key = (
            "factors",
            quarter,
            _array_key(compliance),
            _array_key(us_technology),
            self.state.reach,
            len(self.state.rules),
            self._version,
        )
        cached = self._cache.get(key)
        if cached is not None:
            return cached[0], cached[1]
        leakage = self.model.p["controls.leakage_pct"] / 100.0
        strength = rules["strength"]
        comp = np.where(rules["enforced"], 1.0, compliance[None, :])
        fdp = np.where(rules["fdp"][:, None], self.state.reach * us_technology[None, :], 0.0)
        block = strength[:, None] * (comp + (1.0 - comp) * fdp)
        block = np.where(rules["target_all"][:, None], block * (1.0 - leakage), block)
        binds = (rules["effective_q"] <= quarter) & (strength > 0)
        result = (1.0 - block, binds)
        self._cache[key] = (*result, compliance, us_technology)
        return result

    def _rule_arrays(self) -> dict[str, np.ndarray]:
        """The rules as arrays (one entry per rule, in rule order), rebuilt when rules change."""
        stamp = (len(self.state.rules), self._version)
        if self._arrays_stamp != stamp:
            rules = self.state.rules
            enforced = np.zeros((len(rules), len(ORIGINS)), dtype=bool)
            for k, r in enumerate(rules):
                for c in r.enforced_by:
                    enforced[k, ORIGINS.index(c)] = True
            self._arrays = {
                "item": np.array([r.item for r in rules], dtype=np.int64),
                "target_all": np.array([r.target == "all" for r in rules], dtype=bool),
                "threshold_gen": np.array([r.threshold_gen for r in rules], dtype=float),
                "strength": np.array([r.coverage * (1.0 - r.licence) for r in rules], dtype=float),
                "effective_q": np.array([r.effective_q for r in rules], dtype=np.int64),
                "fdp": np.array([r.foreign_direct_product for r in rules], dtype=bool),
                "enforced": enforced,
            }
            self._arrays_stamp = stamp
        return self._arrays

    def binding_thresholds(self, item: str, quarter: int, target: str = "all") -> list[float]:
        """Thresholds (node generations) of binding rules on ``item`` for ``target``."""
        idx = ITEM_INDEX[item]
        return sorted(
            r.threshold_gen
            for r in self.state.rules
            if r.item == idx and r.effective_q <= quarter and r.target == target
        )


def interval_index(thresholds: np.ndarray, gen) -> np.ndarray:
    """(n,) interval between rule ``thresholds`` (ascending) of each generation in ``gen``.

    Rules are step functions of the generation: a buyer at ``gen`` faces the rules whose
    threshold is at or below ``gen``, so its interval is found by bisection. ``gen`` is a
    scalar or (n,); the result is always (n,).
    """
    if not (isinstance(gen, np.ndarray) and gen.ndim == 1 and gen.dtype == np.float64):
        gen = np.atleast_1d(np.asarray(gen, dtype=float))
    return thresholds.searchsorted(gen, side="right")


def pressure_index(intensity: float, intensity_per_unit: float, max_index: float) -> float:
    """Control pressure in units of ``intensity_per_unit`` of regime intensity, capped.

    ``controls.intensity_per_pressure_unit`` sets the unit; the US's pressure on allies and
    the spur to private money each have their own cap.
    """
    return min(max_index, intensity / intensity_per_unit)


def threshold_to_gen(threshold_nm: float | None) -> float:
    """A rule's threshold in nm as a node generation; no threshold covers everything."""
    return -np.inf if threshold_nm is None else node_nm_to_gen(threshold_nm)


def compliance_vector(alignment: dict[str, float]) -> np.ndarray:
    """Per-origin compliance: US 1, allies their alignment, ``other`` 0 (a read-only array)."""
    out = np.zeros(len(ORIGINS))
    out[ORIGINS.index("united_states")] = 1.0
    for ally in ALLIES:
        out[ORIGINS.index(ally)] = alignment[ally]
    out.flags.writeable = False
    return out


def _array_key(a: np.ndarray):
    """Cache key of a per-origin array: its identity when it cannot change, else its bytes.

    The model passes read-only arrays that it replaces rather than edits, so identity is
    enough and costs nothing; a writeable array (as tests pass) is keyed by its contents.
    """
    if not a.flags.writeable and a.base is None:
        return id(a)
    return a.tobytes()
