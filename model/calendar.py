"""Calendar quarters: the model steps quarterly and labels every record with its quarter."""

from __future__ import annotations

import re

QUARTER_RE = re.compile(r"^(\d{4})Q([1-4])$")
#: Quarters in a year: flows are recorded per quarter, many parameters are per year.
QUARTERS_PER_YEAR = 4
#: Where in its quarter a quarter's calendar time is read (the middle).
MID_QUARTER = 0.5


def parse_quarter(label: str) -> tuple[int, int]:
    """Parse ``"2021Q4"`` into ``(2021, 4)``.

    Raises:
        ValueError: if the label is not a year followed by Q1-Q4.
    """
    m = QUARTER_RE.match(str(label))
    if not m:
        raise ValueError(f"'{label}' is not a quarter; write it as YYYYQn, e.g. 2021Q4")
    year, quarter = m.groups()
    return int(year), int(quarter)


def quarter_ordinal(label: str) -> int:
    """Return a count of quarters since year 0, so quarters can be subtracted."""
    year, q = parse_quarter(label)
    return year * QUARTERS_PER_YEAR + (q - 1)


def ordinal_to_label(ordinal: int) -> str:
    """Inverse of :func:`quarter_ordinal`."""
    return f"{ordinal // QUARTERS_PER_YEAR}Q{ordinal % QUARTERS_PER_YEAR + 1}"


def quarter_range(start: str, end: str) -> list[str]:
    """All quarter labels from ``start`` to ``end`` inclusive."""
    return [ordinal_to_label(o) for o in range(quarter_ordinal(start), quarter_ordinal(end) + 1)]


def quarter_year_float(label: str) -> float:
    """Mid-quarter calendar time, e.g. 2021Q1 -> 2021.125 (for interpolation and plots)."""
    year, q = parse_quarter(label)
    return year + (q - MID_QUARTER) / QUARTERS_PER_YEAR
