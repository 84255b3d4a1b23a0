"""What one quarter computed, phase by phase: the explicit state between the model's phases.

:meth:`model.model.DecouplingModel.step` runs the phases of docs/ODD.md section 3 in order;
each phase reads the model's agents and the parts of :class:`Quarter` that earlier phases
filled in, and fills in its own part. The recorder reads the finished :class:`Quarter`
(and the agents), so every output column is traceable to the phase that produced it.
Amounts are US$ bn per quarter; arrays "by tier" follow ``taxonomy.TIERS``, "by origin"
``regimes.ORIGINS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .market import Cleared, UnmetPaths


@dataclass
class Demand:
    """China's chip demand this quarter (mechanism 1).

    Attributes:
        world_usd_bn: the world chip market this quarter.
        tier_shares: (tiers,) shares of China's demand by tier (sum 1).
        total_usd_bn: China's chip demand, after the quarter's demand shock.
        by_tier_usd_bn: (tiers,) ``total_usd_bn * tier_shares``.
    """

    world_usd_bn: float
    tier_shares: np.ndarray
    total_usd_bn: float
    by_tier_usd_bn: np.ndarray


@dataclass
class DomesticSupply:
    """What Chinese-headquartered fabs can deliver, by tier.

    Attributes:
        capacity_by_tier: (tiers,) capacity of live, honest firms.
        listed_share_by_tier: (tiers,) share of that capacity held by listed entities.
        gen_by_tier: (tiers,) node generation domestic supply reaches in each tier.
        reference_gen_by_tier: (tiers,) generation buyers compare it with.
        supply_by_tier: (tiers,) capacity that inputs (materials under controls) let run.
    """

    capacity_by_tier: np.ndarray
    listed_share_by_tier: np.ndarray
    gen_by_tier: np.ndarray
    reference_gen_by_tier: np.ndarray
    supply_by_tier: np.ndarray


@dataclass
class ChipMarket:
    """Buyers' chip purchases after clearing (mechanism 2 under mechanism 3's controls).

    Attributes:
        demand_by_buyer: (buyers, tiers) demand.
        want_domestic: (buyers, tiers) domestic share wanted where foreign supply is open.
        cleared: the cleared market (domestic, foreign, unmet, blocked by buyer and tier).
        domestic_by_tier: (tiers,) bought from Chinese-headquartered fabs.
        located_by_tier: (tiers,) bought from foreign-owned fabs located in China.
        lost_us_usd_bn: sales US firms lost to controls (what lobbying weighs, F26).
        unmet: where unmet demand went (:class:`~model.market.UnmetPaths`).
    """

    demand_by_buyer: np.ndarray
    want_domestic: np.ndarray
    cleared: Cleared
    domestic_by_tier: np.ndarray
    located_by_tier: np.ndarray
    lost_us_usd_bn: float
    unmet: UnmetPaths | None = None

    @cached_property
    def substituted_by_tier(self) -> np.ndarray:
        """(tiers,) demand met by domestic chips of an older tier, by the tier demanded.

        Read only once ``unmet`` is set (the recorder reads it several times a quarter).
        """
        return self.unmet.substituted.sum(axis=0)


@dataclass
class Money:
    """State and private money, talent, and the tools bought for new capacity (mechanism 5).

    Attributes:
        state_total_usd_bn: state money this quarter (before programme losses).
        state_lost_usd_bn: money programmes lose before reaching firms.
        state_to_fraud_usd_bn: state money paid to fraudulent firms.
        private_usd_bn: private capital this quarter.
        talent_shortfall: share of needed chip workforce China cannot staff (0-1).
        talent_factor: how the shortfall scales building and learning (1 at the reference).
        domestic_tools_usd_bn: fab tools bought from Chinese tool makers.
        foreign_tools_usd_bn: fab tools bought abroad (Chinese and China-located foreign fabs).
    """

    state_total_usd_bn: float
    state_lost_usd_bn: float
    state_to_fraud_usd_bn: float
    private_usd_bn: float
    talent_shortfall: float
    talent_factor: float
    domestic_tools_usd_bn: float = 0.0
    foreign_tools_usd_bn: float = 0.0


@dataclass
class Quarter:
    """Everything one quarter computed; the phases fill it in order.

    Attributes:
        ordinal: the quarter (``calendar.quarter_ordinal``).
        frontier_gen: the world frontier's node generation.
        demand, supply, chips, money: the phases' results (``None`` until the phase ran).
        upstream: per segment, ``{"domestic", "demand", ...}`` purchases in US$ bn.
        mean_security: buyers' demand-weighted security concern, as upstream buyers feel it.
        foreign_by_origin: (origins,) foreign firms' revenue from China, every market.
        revenue_by_item: per item, (origins,) foreign revenue (for foreign firm groups).
        entered, failed: swarm firms (model rows) that entered and failed.
        wasted_usd_bn: state money wasted this quarter (:func:`finance.wasted_state_money`).
    """

    ordinal: int
    frontier_gen: float
    demand: Demand | None = None
    supply: DomesticSupply | None = None
    chips: ChipMarket | None = None
    money: Money | None = None
    upstream: dict[str, dict] = field(default_factory=dict)
    mean_security: float = 0.0
    foreign_by_origin: np.ndarray | None = None
    revenue_by_item: dict[str, np.ndarray] = field(default_factory=dict)
    entered: int = 0
    failed: int = 0
    wasted_usd_bn: float = 0.0
