"""Block surfaces: filling blocks without data from their neighbours."""

from __future__ import annotations

import numpy as np


def fill_from_neighbours(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Grow the ``known`` cells of a grid outwards, ring by ring: each unknown cell next
    to known ones takes the mean of its known 4-neighbours.

    ``values`` and ``known`` may hold a stack of grids (any leading axes, the grid in the
    last two): each grows from its own known cells, as if alone, and a grid with none
    stays 0.

    Each ring is found from the one before it, so the work is proportional to the
    number of cells, not to the cells times the rings (a mosaic of hundreds of images
    has a grid per image over the whole mosaic, each known in a small part of it).

    Examples
    --------
    >>> fill_from_neighbours(np.array([[1.0, 0.0, 0.0]]), np.array([[True, False, False]]))
    array([[1., 1., 1.]])
    """
    known = np.asarray(known, dtype=bool)
    filled = np.where(known, values, 0.0)
    flat, have = filled.reshape(-1), known.reshape(-1).copy()
    rows, cols = known.shape[-2:]
    ring, slots = np.flatnonzero(have), np.empty(have.size, dtype=np.intp)
    while True:
        ring = _unknown_neighbours(ring, have, slots, rows, cols)
        if not ring.size:
            return filled
        total, count = np.zeros(ring.size), np.zeros(ring.size)
        # the known neighbours above, below, left and right, added in that order
        for neighbour in _neighbours(ring, rows, cols):
            counted = have[neighbour]
            total += flat[neighbour] * counted
            count += counted
        flat[ring] = total / count
        have[ring] = True


def _neighbours(cells: np.ndarray, rows: int, cols: int) -> list[np.ndarray]:
    """Flat indices of the cells above, below, left and right of ``cells`` (flat indices
    into a stack of ``rows`` x ``cols`` grids); a cell on the grid's edge stands in for
    its missing neighbour."""
    row, col = (cells // cols) % rows, cells % cols
    return [
        np.where(row > 0, cells - cols, cells),
        np.where(row < rows - 1, cells + cols, cells),
        np.where(col > 0, cells - 1, cells),
        np.where(col < cols - 1, cells + 1, cells),
    ]


def _unknown_neighbours(
    cells: np.ndarray, have: np.ndarray, slots: np.ndarray, rows: int, cols: int
) -> np.ndarray:
    """The cells not in ``have`` next to any of ``cells``, each once (``slots``: scratch
    of ``have``'s size, where each cell notes its last place among the candidates)."""
    candidates = np.concatenate(_neighbours(cells, rows, cols))
    candidates = candidates[~have[candidates]]
    places = np.arange(candidates.size)
    slots[candidates] = places
    return candidates[slots[candidates] == places]
