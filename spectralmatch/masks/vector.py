"""Polygons from vector files: as masks, and by an image-name field (seamlines)."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from attrs import define, field

from .._typing import MaskMode
from ..errors import SpectralMatchError
from ..geo.grid import PixelGrid
from .base import Mask, MaskTarget, same_crs

MASK_MODES: tuple[MaskMode, ...] = ("include", "exclude")


def read_layer(path: str | os.PathLike, what: str = "vector file", layer: str | None = None) -> Any:
    """The features of a vector file (of its ``layer``, default the first) as a
    GeoDataFrame; a clear error if unreadable."""
    import geopandas

    try:
        return geopandas.read_file(path, layer=layer)
    except Exception as error:  # noqa: BLE001 - any reader failure is a bad input file
        raise SpectralMatchError(f"{path}: cannot read {what} ({error})") from None


def polygons_by_name(
    path: str | os.PathLike, field: str, crs: Any = None, what: str = "polygons"
) -> dict[str, Any]:
    """Name (the value of ``field``) -> geometry, reprojected to ``crs`` (a layer without a
    CRS is taken to be in ``crs``, with a warning)."""
    layer = read_layer(path, what)
    if field not in layer.columns:
        raise SpectralMatchError(f"{path}: no field {field!r}")
    if not same_crs(str(path), layer.crs, crs, what):
        layer = layer.to_crs(crs)
    return {
        str(name): geometry for name, geometry in zip(layer[field], layer.geometry, strict=True)
    }


@define
class VectorMask(Mask):
    """Polygons from a vector file: ``mode="exclude"`` leaves out the pixels inside them,
    ``mode="include"`` keeps only those.

    With ``field``, only the features whose ``field`` equals the image's name (or
    ``value``, when given) are used. With ``all_touched``, every pixel a polygon touches
    counts as inside it (else only those whose centre it covers).
    """

    path: Path = field(converter=Path)
    mode: MaskMode = "exclude"
    field: str | None = None
    value: Any = None
    all_touched: bool = False

    def __attrs_post_init__(self) -> None:
        if self.mode not in MASK_MODES:
            raise SpectralMatchError(
                f"{self.path}: mask mode must be 'include' or 'exclude', got {self.mode!r}"
            )

    @cached_property
    def _layer(self) -> Any:
        return read_layer(self.path, "vector mask")

    def _geometries(self, target: MaskTarget) -> list[Any]:
        layer = self._layer
        if self.field is not None:
            if self.field not in layer.columns:
                raise SpectralMatchError(f"{self.path}: no field {self.field!r}")
            wanted = target.name if self.value is None else self.value
            layer = layer[layer[self.field].astype(str) == str(wanted)]
        if not same_crs(str(self.path), layer.crs, target.crs):
            layer = layer.to_crs(target.crs)
        return [geometry for geometry in layer.geometry if geometry is not None]

    def excluded(self, target: MaskTarget, values: np.ndarray, grid: PixelGrid) -> np.ndarray:
        from rasterio.features import geometry_mask

        geometries = self._geometries(target)
        inside = (
            geometry_mask(
                geometries,
                out_shape=grid.shape,
                transform=grid.transform,
                invert=True,
                all_touched=self.all_touched,
            )
            if geometries
            else np.zeros(grid.shape, dtype=bool)
        )
        return inside if self.mode == "exclude" else ~inside
