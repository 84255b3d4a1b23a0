"""The model's fixed vocabulary: chip tiers, supply-chain segments, countries and allies.

These are structure, not parameters: scenario files, parameter paths and output columns
are all spelled with these names, so they live in one place. Numbers attached to them
(shares, capacities) are parameters and live in ``parameters.yaml``.
"""

from __future__ import annotations

import math

#: Chip tiers of China's demand and of fab capacity. Logic tiers follow DESIGN.md
#: (leading < 10 nm, advanced 10-22 nm, mature >= 28 nm); memory and compound
#: ("third-generation" SiC/GaN) are separate because their chokepoints differ.
TIERS: tuple[str, ...] = ("leading", "advanced", "mature", "memory", "compound")

#: Upstream segments whose output Chinese fabs and buyers purchase.
UPSTREAM: tuple[str, ...] = (
    "eda_ip",
    "design",
    "litho_equipment",
    "other_equipment",
    "materials",
    "packaging",
)

#: A firm's product line: one of the tiers (a fab line) or an upstream segment.
LINES: tuple[str, ...] = TIERS + UPSTREAM
LINE_INDEX: dict[str, int] = {name: i for i, name in enumerate(LINES)}
TIER_INDEX: dict[str, int] = {name: i for i, name in enumerate(TIERS)}

#: Items an export control can cover: chips of a tier, or an upstream segment.
CONTROLLABLE: tuple[str, ...] = tuple(f"chips_{t}" for t in TIERS) + (
    "eda_ip",
    "litho_equipment",
    "other_equipment",
    "materials",
)

#: Foreign firms' home countries (``eu`` stands for European countries other than the Netherlands).
COUNTRIES: tuple[str, ...] = (
    "united_states",
    "netherlands",
    "japan",
    "south_korea",
    "taiwan",
    "eu",
)
COUNTRY_INDEX: dict[str, int] = {name: i for i, name in enumerate(COUNTRIES)}

#: US allies that choose how far to align with US export controls.
ALLIES: tuple[str, ...] = ("netherlands", "japan", "south_korea", "taiwan", "eu")

#: Node generations: generation g is ``REFERENCE_NODE_NM * NODE_SHRINK ** g`` nm (28 nm is g = 0;
#: each generation shrinks the node name by about 0.7x, the industry's conventional step).
REFERENCE_NODE_NM = 28.0
NODE_SHRINK = 0.7


def node_nm_to_gen(node_nm: float) -> float:
    """Return the node generation of a process node given in nm (28 nm -> 0, 14 nm -> ~1.94)."""
    return math.log(node_nm / REFERENCE_NODE_NM) / math.log(NODE_SHRINK)


def gen_to_node_nm(gen):
    """Return the node in nm of a generation (scalar or numpy array)."""
    return REFERENCE_NODE_NM * NODE_SHRINK**gen


#: Generation thresholds of the logic tiers: leading means below 10 nm, advanced 22 nm or below.
LEADING_MIN_GEN = node_nm_to_gen(10.0)
ADVANCED_MIN_GEN = node_nm_to_gen(22.0)
#: The most advanced node of the mature tier: 28 nm, generation 0 by definition. Foundries
#: build mature capacity here, or at their own node if it is older.
MATURE_BEST_GEN = 0.0
