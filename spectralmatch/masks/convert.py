"""What users may give as a mask, turned into a :class:`~spectralmatch.masks.base.Mask`."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .base import Mask, combine
from .function import FunctionMask
from .raster import RasterMask
from .vector import VectorMask

VECTOR_SUFFIXES = (".gpkg", ".shp", ".geojson", ".json", ".fgb")

MaskLike = Mask | str | os.PathLike | Callable | list | tuple | None


def as_mask(value: MaskLike) -> Mask | None:
    """A Mask from a Mask, a raster or vector path (excluded areas), a function, or a list
    of these (excluding what any of them excludes)."""
    if value is None or isinstance(value, Mask):
        return value
    if isinstance(value, (list, tuple)):
        return combine(*(as_mask(item) for item in value))
    if callable(value):
        return FunctionMask(value)
    path = Path(value)
    if path.suffix.lower() in VECTOR_SUFFIXES:
        return VectorMask(path)
    return RasterMask(str(path))
