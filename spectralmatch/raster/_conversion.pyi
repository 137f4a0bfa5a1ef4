"""Corrected values converted to 8- or 16-bit integers in one pass (``_conversion.c``;
optional, see setup.py)."""

from typing import Any

def convert(
    values: Any,
    valid: Any,
    gains: Any | None,
    offsets: Any | None,
    out: Any,
    count_low: float,
    count_high: float,
    low: float,
    high: float,
    clash: float | None,
    fill: float,
) -> int: ...
