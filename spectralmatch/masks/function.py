"""A mask computed from the pixels themselves."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from attrs import define

from ..errors import SpectralMatchError
from ..geo.grid import PixelGrid
from .base import Mask, MaskTarget


@define
class FunctionMask(Mask):
    """``function(values) -> bool array (rows, cols)``, True where excluded; ``values``
    are the window's pixels, shape (bands, rows, cols).

    Examples
    --------
    >>> bright = FunctionMask(lambda values: values[0] > 9000)   # e.g. clouds
    """

    function: Callable[[np.ndarray], np.ndarray]

    def excluded(self, target: MaskTarget, values: np.ndarray, grid: PixelGrid) -> np.ndarray:
        result = np.asarray(self.function(values), dtype=bool)
        if result.shape != grid.shape:
            raise SpectralMatchError(
                f"{target.name}: mask function returned shape {result.shape}, expected {grid.shape}"
            )
        return result
