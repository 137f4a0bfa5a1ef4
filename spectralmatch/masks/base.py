"""The mask contract: which cells of a grid to leave out of the statistics."""

from __future__ import annotations

import warnings
from typing import Any, Protocol

import numpy as np
from attrs import define

from ..errors import SpectralMatchWarning
from ..geo.grid import PixelGrid


class MaskTarget(Protocol):
    """What a mask may know of the image it judges: its name and CRS."""

    @property
    def name(self) -> str: ...

    @property
    def crs(self) -> Any: ...


class Mask:
    """Base class: which pixels of a grid to leave out of the statistics.

    Give one to an image (``Image(path, mask=...)``). A pixel counts for a statistic only
    where it is valid and no mask of an image involved excludes it (for an overlap:
    neither image's mask).
    """

    def excluded(self, target: MaskTarget, values: np.ndarray, grid: PixelGrid) -> np.ndarray:
        """Bool array of ``grid.shape``: True where the cells of ``grid`` (holding
        ``values``, shape (bands, rows, cols), read from ``target``) are excluded."""
        raise NotImplementedError


@define
class AnyMask(Mask):
    """Excludes what any of ``masks`` excludes."""

    masks: list[Mask]

    def excluded(self, target: MaskTarget, values: np.ndarray, grid: PixelGrid) -> np.ndarray:
        result = np.zeros(grid.shape, dtype=bool)
        for mask in self.masks:
            result |= mask.excluded(target, values, grid)
        return result


def combine(*masks: Mask | None) -> Mask | None:
    """One mask excluding what any of ``masks`` (None for no mask) excludes."""
    present = [mask for mask in masks if mask is not None]
    if len(present) <= 1:
        return present[0] if present else None
    return AnyMask(present)


def same_crs(source: str, source_crs: Any, target_crs: Any, what: str = "mask") -> bool:
    """Whether ``source`` (a file of a ``what``, in ``source_crs``) needs no reprojection to
    ``target_crs``; a source without a CRS is taken to be in the target's, with a warning."""
    if source_crs is None:
        if target_crs is not None:
            warnings.warn(
                f"{source}: no CRS in this {what} file; taken to be "
                f"{_crs_text(target_crs)} (the images')",
                SpectralMatchWarning,
                stacklevel=3,
            )
        return True
    return target_crs is None or source_crs == target_crs


def _crs_text(crs: Any) -> str:
    """A CRS as its authority code where it has one (rasterio's, pyproj's or a string)."""
    text = crs.to_string() if hasattr(crs, "to_string") else str(crs)
    return text or "a custom CRS"
