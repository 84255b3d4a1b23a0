"""Calendar quarters: the model steps quarterly and labels every record with its quarter."""

from __future__ import annotations

import re

QUARTER_RE = re.compile(r"^(\d{4})Q([1-4])$")


def parse_quarter(label: str) -> tuple[int, int]:
    """Parse ``"2021Q4"`` into ``(2021, 4)``.

    Raises:
        ValueError: if the label is not a year followed by Q1-Q4.
    """
    m = QUARTER_RE.match(str(label))
    if not m:
        raise ValueError(f"'{label}' is not a quarter; write it as YYYYQn, e.g. 2021Q4")
    return int(m.group(1)), int(m.group(2))


def quarter_ordinal(label: str) -> int:
    """Return a count of quarters since year 0, so quarters can be subtracted."""
    year, q = parse_quarter(label)
    return year * 4 + (q - 1)


def ordinal_to_label(ordinal: int) -> str:
    """Inverse of :func:`quarter_ordinal`."""
    return f"{ordinal // 4}Q{ordinal % 4 + 1}"


def quarter_range(start: str, end: str) -> list[str]:
    """All quarter labels from ``start`` to ``end`` inclusive."""
    return [ordinal_to_label(o) for o in range(quarter_ordinal(start), quarter_ordinal(end) + 1)]


def quarter_year_float(label: str) -> float:
    """Mid-quarter calendar time, e.g. 2021Q1 -> 2021.125 (for interpolation and plots)."""
    year, q = parse_quarter(label)
    return year + (q - 0.5) / 4
