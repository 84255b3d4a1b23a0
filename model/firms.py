"""Chinese firms: Mesa agents for identity, a structure of arrays for the arithmetic.

Each Chinese firm, from a national champion to one agent of the small-firm swarm (F12, F13),
is a :class:`Firm` agent: it has a name when it is a champion, can be put on the Entity List
by a scenario event, and enters and fails as an agent. Its numbers (capacity, technology,
cash, state backing) live in :class:`FirmPopulation`, one numpy array per attribute over all
firms, because the market arithmetic runs every quarter over thousands of firms and per-agent
Python calls would dominate the run time (mesa-notes.md: ``shuffle_do`` costs 1.3-1.9 µs per
agent-step; numpy over arrays is 80-280x cheaper).

Foundry capacity is kept by vintage: capacity built while a firm's best node was in the
leading, advanced or mature tier stays in that tier, so SMIC-like firms keep their mature
lines when they reach 7 nm. Other lines use the last (mature/base) column only.
"""

from __future__ import annotations

import mesa
import numpy as np

from .calendar import QUARTERS_PER_YEAR
from .foreign_fabs import LocatedSignals, located_drag, located_growth_pct, quarterly_rate
from .taxonomy import ADVANCED_MIN_GEN, LEADING_MIN_GEN, UPSTREAM, gen_to_node_nm

#: A Chinese firm's product line.
FIRM_LINES: tuple[str, ...] = ("foundry", "memory", "compound") + UPSTREAM
FIRM_LINE_INDEX = {name: i for i, name in enumerate(FIRM_LINES)}
FOUNDRY, MEMORY, COMPOUND = 0, 1, 2
#: Vintage columns of the capacity matrix.
VINTAGE_LEADING, VINTAGE_ADVANCED, VINTAGE_BASE = 0, 1, 2
N_VINTAGES = 3
#: Fewest rows the firm arrays start with, and the default starting size.
MIN_ROWS, DEFAULT_ROWS = 16, 4096
#: Full arrays grow by this factor (amortised appends).
GROWTH_FACTOR = 2
#: Dead rows are dropped once they are more than this share of all rows: often enough
#: that per-quarter array work does not pay for the history of entries, rarely enough
#: that the copies are cheap. It changes which random draw a row gets, not the model.
MAX_DEAD_SHARE = 0.125
FAB_LINES = (FOUNDRY, MEMORY, COMPOUND)


class FirmPopulation:
    """Arrays over the firms, one row each.

    A firm that fails is masked by ``alive`` until :meth:`compact` drops its row.

    A firm's permanent identity is its ``firm_id`` (creation order); ``row_of[firm_id]``
    gives its current row (-1 once its row is dropped) and ``ids[row]`` the reverse.

    ``tool_gen`` is the most advanced node a firm runs on tools it holds (tools once bought
    keep working) and ``patterning_gen`` its know-how to stretch them past that node by
    multipatterning (generations; :mod:`model.technology`).
    """

    FLOAT_COLS = (
        "gen",
        "cash_usd_bn",
        "backing",
        "revenue_usd_bn",
        "rd_usd_bn",
        "state_funds_usd_bn",
        "utilisation",
        "tool_gen",
        "patterning_gen",
    )
    BOOL_COLS = ("alive", "champion", "fraud", "listed")

    def __init__(self, capacity_hint: int = DEFAULT_ROWS):
        n = max(MIN_ROWS, capacity_hint)
        self.n = 0
        self.ids = np.zeros(n, dtype=np.int64)
        self.row_of = np.zeros(n, dtype=np.int64)
        self.next_id = 0
        self.line = np.zeros(n, dtype=np.int8)
        self.entered_q = np.zeros(n, dtype=np.int32)
        self.cohort = np.full(n, -1, dtype=np.int32)
        self.cap = np.zeros((n, N_VINTAGES))
        self.pending = np.zeros((n, N_VINTAGES))
        for c in self.FLOAT_COLS:
            setattr(self, c, np.zeros(n))
        for c in self.BOOL_COLS:
            setattr(self, c, np.zeros(n, dtype=bool))
        self._line_index: np.ndarray | None = None  # see line_index

    def _grow(self, need: int) -> None:
        size = self.line.shape[0]
        if self.n + need <= size:
            return
        new = max(size * GROWTH_FACTOR, self.n + need)
        for name in ("ids", "line", "entered_q", "cohort", *self.FLOAT_COLS, *self.BOOL_COLS):
            old = getattr(self, name)
            arr = np.zeros(new, dtype=old.dtype)
            arr[: self.n] = old[: self.n]
            setattr(self, name, arr)
        for name in ("cap", "pending"):
            old = getattr(self, name)
            arr = np.zeros((new, N_VINTAGES))
            arr[: self.n] = old[: self.n]
            setattr(self, name, arr)

    def add(
        self,
        line,
        capacity,
        gen,
        backing,
        quarter: int,
        champion=False,
        fraud=False,
        cohort: int = -1,
    ) -> np.ndarray:
        """Append firms; returns their row indices. Array arguments give one value per firm.

        ``cohort`` is the swarm cohort the firms belong to (-1 for champions).
        """
        line = np.atleast_1d(np.asarray(line, dtype=np.int8))
        k = line.size
        self._line_index = None
        self._grow(k)
        rows = np.arange(self.n, self.n + k)
        self.n += k
        ids = np.arange(self.next_id, self.next_id + k)
        self.next_id += k
        if self.next_id > self.row_of.size:
            grown = np.full(max(GROWTH_FACTOR * self.row_of.size, self.next_id), -1, dtype=np.int64)
            grown[: self.row_of.size] = self.row_of
            self.row_of = grown
        added = slice(rows[0], rows[-1] + 1) if k else slice(0, 0)  # contiguous: cheaper than rows
        self.ids[added] = ids
        self.row_of[ids] = rows
        self.line[added] = line
        self.entered_q[added] = quarter
        self.cohort[added] = cohort
        gen_arr = _per_row(gen, k)
        self.gen[added] = gen_arr
        cap = _per_row(capacity, k)
        col = np.full(k, VINTAGE_BASE)
        is_foundry = line == FOUNDRY
        col[is_foundry] = vintage_column(gen_arr[is_foundry])
        self.cap[added] = 0.0
        self.cap[rows, col] = cap
        self.pending[added] = 0.0
        self.backing[added] = backing
        self.cash_usd_bn[added] = 0.0
        self.revenue_usd_bn[added] = 0.0
        self.rd_usd_bn[added] = 0.0
        self.state_funds_usd_bn[added] = 0.0
        self.utilisation[added] = 1.0
        self.tool_gen[added] = gen_arr
        self.patterning_gen[added] = 0.0
        self.alive[added] = True
        self.champion[added] = champion
        self.fraud[added] = fraud
        self.listed[added] = False
        return rows

    def line_index(self) -> np.ndarray:
        """Each row's line as ``intp``, for ``table.take(...)`` lookups by line.

        Kept until rows are added or dropped (lines of existing rows never change): a
        ``take`` by ``intp`` indices costs a third of indexing by the stored ``int8`` ones,
        and phases look tables up by line a dozen times a quarter.
        """
        if self._line_index is None:
            self._line_index = self.line[: self.n].astype(np.intp)
            self._line_index.flags.writeable = False  # shared by every phase: never edited
        return self._line_index

    def total_capacity(self) -> np.ndarray:
        """Each row's capacity over all vintages, US$ bn per quarter (a new array).

        Summed column by column: ``cap.sum(axis=1)`` over three columns is several times
        slower in numpy, and this runs a few times a quarter over every firm.
        """
        cap = self.cap
        n = self.n
        return cap[:n, 0] + cap[:n, 1] + cap[:n, 2]

    def compact(self, max_dead_share: float = MAX_DEAD_SHARE) -> bool:
        """Drop dead rows once they are more than ``max_dead_share`` of all rows.

        Dead firms would otherwise make every per-quarter array operation pay for the whole
        history of entries. Returns whether rows were dropped; ``row_of`` follows.
        """
        n = self.n
        alive = self.alive[:n]
        live = int(np.count_nonzero(alive))
        if n - live <= max_dead_share * n:
            return False
        keep = np.nonzero(alive)[0]
        self._line_index = None
        self.row_of[self.ids[:n][~alive]] = -1
        for name in (
            "ids",
            "line",
            "entered_q",
            "cohort",
            *self.FLOAT_COLS,
            *self.BOOL_COLS,
            "cap",
            "pending",
        ):
            arr = getattr(self, name)
            arr[: keep.size] = arr[keep]
        self.n = keep.size
        self.row_of[self.ids[: self.n]] = np.arange(self.n)
        return True


def _per_row(value, k: int) -> np.ndarray:
    """``value`` as a float array of ``k`` rows (a scalar repeated; a ready array as is)."""
    if isinstance(value, np.ndarray) and value.dtype == np.float64 and value.shape == (k,):
        return value
    return np.broadcast_to(np.asarray(value, dtype=float), (k,))


def in_lines(line: np.ndarray, lines) -> np.ndarray:
    """Mask of rows whose line index is one of ``lines`` (a lookup; ``np.isin`` sorts)."""
    lookup = np.zeros(len(FIRM_LINES), dtype=bool)
    lookup[list(lines)] = True
    return lookup.take(line)


def vintage_column(gen: np.ndarray) -> np.ndarray:
    """Capacity column a foundry builds into at node generation ``gen``."""
    gen = np.asarray(gen, dtype=float)
    return np.where(
        gen >= LEADING_MIN_GEN,
        VINTAGE_LEADING,
        np.where(gen >= ADVANCED_MIN_GEN, VINTAGE_ADVANCED, VINTAGE_BASE),
    )


class Firm(mesa.Agent):
    """A named Chinese firm: a national champion (SMIC-like, YMTC-like, ...).

    Its numeric state is a row of the model's :class:`FirmPopulation`; the properties below
    read it, so analysis code can treat champions as ordinary Mesa agents. Scenario events
    name champions (``list_entity``); the swarm of small firms is :class:`SwarmCohort`.
    """

    def __init__(self, model, firm_id: int, name: str | None = None):
        super().__init__(model)
        self.firm_id = firm_id
        self.name = name

    @property
    def row(self) -> int:
        """This firm's row in the model's :class:`FirmPopulation` (rows move on compaction)."""
        return int(self.model.firms.row_of[self.firm_id])

    @property
    def line(self) -> str:
        """The firm's product line (``foundry``, ``memory``, ``design``, ...)."""
        return FIRM_LINES[self.model.firms.line[self.row]]

    @property
    def capacity_usd_bn(self) -> float:
        """Output capacity, US$ bn per quarter (all vintages)."""
        return float(self.model.firms.cap[self.row].sum())

    @property
    def node_nm(self) -> float:
        """The firm's process node (or, for other lines, its technology level), nm."""
        return float(gen_to_node_nm(self.model.firms.gen[self.row]))

    @property
    def entity_listed(self) -> bool:
        """On the US Entity List (scenario events list and delist firms)."""
        return bool(self.model.firms.listed[self.row])

    @entity_listed.setter
    def entity_listed(self, value: bool) -> None:
        self.model.firms.listed[self.row] = bool(value)

    @property
    def is_fraud(self) -> bool:
        """A fraudulent firm: it draws money and builds nothing (F19)."""
        return bool(self.model.firms.fraud[self.row])


class SwarmCohort(mesa.Agent):
    """The swarm firms that entered in one quarter: a super-individual of small firms.

    The swarm (F12, F13, F19) is tens of thousands of small firms that enter with the money
    and fail at a hazard. Each member keeps its own state as a row of the model's
    :class:`FirmPopulation` (one row stands for ``china_firms.real_firms_per_agent``
    registered firms, with its own line, capacity, technology, cash, backing and fraud
    flag), and the mechanisms act on every member row each quarter. The Mesa agent is the
    cohort, not each member: members have no behaviour of their own outside the arrays,
    and registering and removing ~17,000 entrants a run as Mesa agents cost a fifth of a
    run (docs/performance.md). The cohort leaves the model when its last member fails.

    Attributes:
        cohort: index of this cohort (``FirmPopulation.cohort`` of its members).
        entered_q: quarter ordinal of entry (the model's start for the initial swarm).
        firm_ids: permanent ids of its members (``FirmPopulation.row_of`` finds their rows).
        entrants: members at entry; ``survivors``: members still in the market.
    """

    def __init__(self, model, cohort: int, entered_q: int, firm_ids: np.ndarray):
        super().__init__(model)
        self.cohort = cohort
        self.entered_q = entered_q
        self.firm_ids = np.asarray(firm_ids, dtype=np.int64)
        self.firm_ids.flags.writeable = False
        self.entrants = int(self.firm_ids.size)
        self.survivors = self.entrants

    @property
    def rows(self) -> np.ndarray:
        """Current rows of the members still in the market."""
        firms = self.model.firms
        rows = firms.row_of[self.firm_ids]
        rows = rows[rows >= 0]
        return rows[firms.alive[rows]]

    @property
    def survival_share(self) -> float:
        """Share of the cohort's entrants still in the market."""
        return self.survivors / self.entrants

    def lose(self, count: int) -> None:
        """``count`` members failed this quarter; the cohort leaves with its last member."""
        self.survivors -= count
        if self.survivors <= 0:
            self.model.swarm_cohorts.pop(self.cohort, None)
            self.remove()


class ForeignFirmGroup(mesa.Agent):
    """Foreign firms of one country in one segment (e.g. Dutch lithography, Korean memory).

    Sized from supply-chain-structure.md; tracks what the group sells to China and, for fab
    groups, the capacity it runs inside China (which counts toward F03's China-located
    production).
    """

    def __init__(self, model, country: str, item: str, world_share: float):
        super().__init__(model)
        self.country = country
        self.item = item
        self.world_share = world_share
        self.china_revenue_usd_bn = 0.0
        #: Output capacity of the group's fabs in China, US$ bn a quarter (fab groups only).
        self.china_capacity_usd_bn = 0.0
        #: This quarter's decision: annual growth of the China capacity, % (< 0: divest).
        self.china_growth_pct = 0.0
        self.drag = 0.0

    def decide_china_capacity(self, signals: LocatedSignals, weights: dict) -> float:
        """Expand, hold or divest the group's China fabs; returns the capacity added.

        The rule is :func:`model.foreign_fabs.located_growth_pct` of the drag the group's
        signals add up to (docs/ODD.md section 7.9). Expansion needs tools from abroad, so
        it is scaled by the share of the tools the group can still buy.

        Args:
            signals: what the group sees this quarter.
            weights: ``foreign.located_drag_weights``, one per signal.
        """
        p = self.model.p
        self.drag = located_drag(signals, weights)
        self.china_growth_pct = located_growth_pct(
            p["foreign.fabs_in_china_growth_pct_per_year"],
            self.drag,
            p["foreign.located_divest_pct_per_drag"],
            p["foreign.located_divest_max_pct_per_year"],
        )
        rate = quarterly_rate(self.china_growth_pct, QUARTERS_PER_YEAR)
        reach = 1.0 - signals.tools_blocked if rate > 0 else 1.0
        added = self.china_capacity_usd_bn * rate * reach
        depreciation = (
            p["firm_finance.depreciation_pct_per_quarter"]
            / 100.0
            * p["foreign.fabs_in_china_depreciation_ratio"]
        )
        self.china_capacity_usd_bn = self.china_capacity_usd_bn * (1 - depreciation) + added
        return added
