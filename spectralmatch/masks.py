"""Masks that leave pixels out of the statistics of a fit (they are still transformed).

Give one to an image (``Image(path, mask=...)``). A pixel counts for a statistic only
where it is valid and no mask of an image involved excludes it (for an overlap: neither
image's mask).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from attrs import define, field
from rasterio.enums import Resampling
from rasterio.transform import from_bounds
from rasterio.windows import from_bounds as window_from_bounds

from .errors import SpectralMatchError

if TYPE_CHECKING:
    from .image import Image

Bounds = tuple[float, float, float, float]


class Mask:
    """Base class: which pixels of a grid to leave out of the statistics."""

    def excluded(
        self, image: Image, values: np.ndarray, bounds: Bounds, shape: tuple[int, int]
    ) -> np.ndarray:
        """Bool array of ``shape``: True where pixels of ``image`` on the grid of ``shape``
        pixels spanning ``bounds`` (holding ``values``) are excluded."""
        raise NotImplementedError


@define
class RasterMask(Mask):
    """A raster whose non-zero pixels are excluded (or, with ``include=True``, the only
    ones kept). Any grid in the image's CRS; read with nearest neighbour; outside the
    raster nothing is excluded (everything, with ``include=True``).

    ``{name}`` in the path stands for the image's name, so one mask per image can be
    given to a whole collection (``RasterMask("pif/{name}.tif")``).
    """

    path: str = field(converter=str)
    include: bool = False

    def excluded(self, image, values, bounds, shape) -> np.ndarray:
        import rasterio

        path = self.path.replace("{name}", image.name)
        try:
            with rasterio.open(path) as dataset:
                window = window_from_bounds(*bounds, transform=dataset.transform)
                marked = (
                    dataset.read(
                        1,
                        window=window,
                        out_shape=shape,
                        boundless=True,
                        fill_value=0,
                        resampling=Resampling.nearest,
                    )
                    != 0
                )
        except rasterio.errors.RasterioIOError as error:
            raise SpectralMatchError(f"{path}: cannot read mask ({error})") from None
        return ~marked if self.include else marked


@define
class VectorMask(Mask):
    """Polygons from a vector file: ``mode="exclude"`` leaves out the pixels inside them,
    ``mode="include"`` keeps only those.

    With ``field``, only the features whose ``field`` equals the image's name (or
    ``value``, when given) are used.
    """

    path: Path = field(converter=Path)
    mode: str = "exclude"
    field: str | None = None
    value: Any = None

    def __attrs_post_init__(self) -> None:
        if self.mode not in ("include", "exclude"):
            raise SpectralMatchError(
                f"{self.path}: mask mode must be 'include' or 'exclude', got {self.mode!r}"
            )

    @cached_property
    def _layer(self):
        import geopandas

        try:
            return geopandas.read_file(self.path)
        except Exception as error:  # noqa: BLE001 - any reader failure is a bad input file
            raise SpectralMatchError(f"{self.path}: cannot read vector mask ({error})") from None

    def _geometries(self, image: Image) -> list:
        layer = self._layer
        if self.field is not None:
            if self.field not in layer.columns:
                raise SpectralMatchError(f"{self.path}: no field {self.field!r}")
            wanted = image.name if self.value is None else self.value
            layer = layer[layer[self.field].astype(str) == str(wanted)]
        if layer.crs is not None and image.crs is not None and layer.crs != image.crs:
            layer = layer.to_crs(image.crs)
        return [geometry for geometry in layer.geometry if geometry is not None]

    def excluded(self, image, values, bounds, shape) -> np.ndarray:
        from rasterio.features import geometry_mask

        geometries = self._geometries(image)
        transform = from_bounds(*bounds, shape[1], shape[0])
        inside = (
            geometry_mask(geometries, out_shape=shape, transform=transform, invert=True)
            if geometries
            else np.zeros(shape, dtype=bool)
        )
        return inside if self.mode == "exclude" else ~inside


@define
class FunctionMask(Mask):
    """``function(values) -> bool array (rows, cols)``, True where excluded; ``values``
    are the window's pixels, shape (bands, rows, cols).

    Examples
    --------
    >>> bright = FunctionMask(lambda values: values[0] > 9000)   # e.g. clouds
    """

    function: Callable[[np.ndarray], np.ndarray]

    def excluded(self, image, values, bounds, shape) -> np.ndarray:
        result = np.asarray(self.function(values), dtype=bool)
        if result.shape != tuple(shape):
            raise SpectralMatchError(
                f"{image.path}: mask function returned shape "
                f"{result.shape}, expected {tuple(shape)}"
            )
        return result


@define
class AnyMask(Mask):
    """Excludes what any of ``masks`` excludes."""

    masks: list[Mask]

    def excluded(self, image, values, bounds, shape) -> np.ndarray:
        result = np.zeros(shape, dtype=bool)
        for mask in self.masks:
            result |= mask.excluded(image, values, bounds, shape)
        return result


def combine(*masks: Mask | None) -> Mask | None:
    """One mask excluding what any of ``masks`` (None for no mask) excludes."""
    present = [mask for mask in masks if mask is not None]
    if len(present) <= 1:
        return present[0] if present else None
    return AnyMask(present)


def as_mask(value: Mask | str | os.PathLike | Callable | None) -> Mask | None:
    """A Mask from a Mask, a raster or vector path (excluded areas), or a function."""
    if value is None or isinstance(value, Mask):
        return value
    if callable(value):
        return FunctionMask(value)
    path = Path(value)
    if path.suffix.lower() in (".gpkg", ".shp", ".geojson", ".json", ".fgb"):
        return VectorMask(path)
    return RasterMask(str(path))
