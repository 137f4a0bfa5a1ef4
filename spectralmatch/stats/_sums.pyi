"""Exact sums of small integers in one pass (``_sums.c``; optional, see setup.py)."""

from typing import Any

def block_sums(
    values: Any,
    valid: Any | None,
    row_starts: Any,
    col_starts: Any,
    count: Any,
    total: Any,
    squares: Any,
) -> None: ...
def band_sums(values: Any, valid: Any | None) -> tuple[int, int, int, int, int]: ...
