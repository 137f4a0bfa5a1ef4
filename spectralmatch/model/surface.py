"""Block surfaces: filling blocks without data from their neighbours."""

from __future__ import annotations

import numpy as np


def fill_from_neighbours(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Grow the ``known`` cells of a grid outwards, ring by ring: each unknown cell next
    to known ones takes the mean of its known 4-neighbours.

    ``values`` and ``known`` may hold a stack of grids (any leading axes, the grid in the
    last two): each grows from its own known cells, as if alone, and a grid with none
    stays 0.

    Examples
    --------
    >>> fill_from_neighbours(np.array([[1.0, 0.0, 0.0]]), np.array([[True, False, False]]))
    array([[1., 1., 1.]])
    """
    filled = np.where(known, values, 0.0)
    have = known.copy()
    while not have.all():
        total, count = np.zeros_like(filled), np.zeros(filled.shape)
        for axis in (-2, -1):
            for step in (1, -1):
                total += _shifted(filled * have, step, axis)
                count += _shifted(have.astype(float), step, axis)
        grow = ~have & (count > 0)
        if not grow.any():
            break
        filled[grow] = total[grow] / count[grow]
        have |= grow
    return filled


def _shifted(array: np.ndarray, step: int, axis: int) -> np.ndarray:
    """``array`` moved by ``step`` cells along ``axis``, zeros shifted in."""
    result = np.zeros_like(array)
    source = [slice(None)] * array.ndim
    target = [slice(None)] * array.ndim
    source[axis] = slice(0, -step) if step > 0 else slice(-step, None)
    target[axis] = slice(step, None) if step > 0 else slice(0, step)
    result[tuple(target)] = array[tuple(source)]
    return result
