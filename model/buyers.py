"""Chinese chip buyers: device makers choosing domestic or foreign chips.

Buyers (a Huawei-like flagship, a Xiaomi-like phone maker, PC and server makers, auto and
industrial, consumer and IoT makers, and foreign OEMs assembling in China) split each tier's
demand between domestic and foreign chips by price/performance, availability under export
controls, China's procurement pressure and their own supply-security concern. A buyer that
is cut off raises its security concern and keeps choosing domestic afterwards (CLM70, Dan
Wang: US controls "made that decision for them"); part of that concern spills over to the
other buyers. The choice itself is vectorised over buyers in :mod:`model.market`.
"""

from __future__ import annotations

import mesa
import numpy as np

from .taxonomy import TIERS


class Buyer(mesa.Agent):
    """A Chinese chip buyer.

    Attributes:
        name: key in ``sourcing.buyers`` (``flagship`` is the Huawei-like buyer of F17/F18).
        demand_share: share of China's chip demand in 2014 (0-1).
        tier_weights: (tiers,) relative intensity of each tier in its purchases.
        state_linked: 0-1, how strongly China's procurement preference moves it.
        security: logit units added to its domestic preference after being cut off.
        market_scale: its demand relative to its starting share (shrinks when chips are missing).
        foreign_sales_index: its device sales abroad, 100 at the start.
        entity_listed: on the US Entity List.
    """

    def __init__(self, model, name: str, spec: dict):
        super().__init__(model)
        self.name = name
        self.demand_share = spec["demand_share_pct"] / 100.0
        self.tier_weights = np.array([float(spec["tiers"][t]) for t in TIERS])
        self.state_linked = float(spec["state_linked"])
        self.foreign_sales_share = spec["foreign_sales_pct"] / 100.0
        self.security = 0.0
        self.max_security = float(model.p["sourcing.security_max"])
        self.market_scale = 1.0
        self.foreign_sales_index = 100.0
        self.entity_listed = False
        self.blocked_share = 0.0
        self.unmet_share = 0.0
        self.domestic_share = 0.0
        self.relocated_share = 0.0

    @property
    def demand_weight(self) -> float:
        """This buyer's weight in China's demand: its share, markets lost, assembly moved out."""
        return self.demand_share * self.market_scale * (1.0 - self.relocated_share)

    def react(
        self,
        spillover: float,
        jump: float,
        decay: float,
        market_loss: float,
        foreign_multiplier: float = 1.0,
    ) -> None:
        """Update security concern and market after this quarter's purchases.

        Args:
            spillover: security concern caused by other buyers' cut-offs this quarter.
            jump: logit units per unit share of own supply blocked.
            decay: share of concern forgotten per quarter.
            market_loss: share of demand lost per unit share of demand unmet.
            foreign_multiplier: how much faster foreign customers leave (F18).
        """
        self.security = min(
            self.max_security, self.security * (1.0 - decay) + jump * self.blocked_share + spillover
        )
        loss = market_loss * self.unmet_share
        self.market_scale *= max(0.0, 1.0 - loss)
        # Foreign customers leave faster than domestic ones (F18: China two-thirds of revenue).
        self.foreign_sales_index *= max(0.0, 1.0 - min(1.0, foreign_multiplier * loss))
