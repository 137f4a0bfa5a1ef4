"""What users may give as a mask, turned into a :class:`~spectralmatch.masks.base.Mask`."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .base import Mask
from .function import FunctionMask
from .raster import RasterMask
from .vector import VectorMask

VECTOR_SUFFIXES = (".gpkg", ".shp", ".geojson", ".json", ".fgb")

MaskLike = Mask | str | os.PathLike | Callable | None


def as_mask(value: MaskLike) -> Mask | None:
    """A Mask from a Mask, a raster or vector path (excluded areas), or a function."""
    if value is None or isinstance(value, Mask):
        return value
    if callable(value):
        return FunctionMask(value)
    path = Path(value)
    if path.suffix.lower() in VECTOR_SUFFIXES:
        return VectorMask(path)
    return RasterMask(str(path))
