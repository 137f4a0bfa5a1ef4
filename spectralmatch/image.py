"""One raster on disk, opened lazily with rasterio."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
from attrs import define, field
from rasterio.enums import MaskFlags
from rasterio.windows import Window

from .errors import SpectralMatchError
from .masks import Mask, as_mask
from .stats import Moments

if TYPE_CHECKING:
    from rasterio.io import DatasetReader
    from shapely.geometry.base import BaseGeometry

DEFAULT_WINDOW_SIZE = 1024


def _as_path(value: str | os.PathLike) -> Path:
    return Path(value)


@define(eq=False)
class Image:
    """A raster file: metadata on first use, pixels only through windowed reads.

    Parameters
    ----------
    path : str or path-like
        Any raster GDAL can read.
    name : str, optional
        The image's name in a collection and a saved model; defaults to the file stem.
    mask : Mask, path or callable, optional
        Pixels to leave out of every statistic of a fit (they are still transformed):
        a :class:`~spectralmatch.masks.Mask`, a raster (non-zero = excluded) or vector
        file (polygons = excluded), or a function of the window's values.

    Examples
    --------
    >>> image = Image("data/tile_00.tif")
    >>> image.name, image.count, image.dtype
    ('tile_00', 3, 'uint16')
    """

    path: Path = field(converter=_as_path)
    name: str = field(default=None)
    mask: Mask | None = field(default=None, converter=as_mask)
    _statistics: Moments | None = field(default=None, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.name is None:
            self.name = self.path.stem

    # ------------------------------------------------------------------ metadata

    @cached_property
    def profile(self) -> dict[str, Any]:
        """The rasterio profile (driver, dtype, nodata, size, CRS, transform, ...)."""
        try:
            with rasterio.open(self.path) as dataset:
                profile = dict(dataset.profile)
                profile["descriptions"] = dataset.descriptions
                profile["dataset_mask"] = _uses_dataset_mask(dataset)
        except rasterio.errors.RasterioIOError as error:
            raise SpectralMatchError(f"{self.path}: cannot be read as a raster ({error})") from None
        return profile

    @property
    def crs(self) -> rasterio.crs.CRS | None:
        return self.profile["crs"]

    @property
    def transform(self) -> rasterio.Affine:
        return self.profile["transform"]

    @property
    def nodata(self) -> float | None:
        return self.profile["nodata"]

    @property
    def count(self) -> int:
        """Number of bands."""
        return self.profile["count"]

    @property
    def dtype(self) -> str:
        return self.profile["dtype"]

    @property
    def width(self) -> int:
        return self.profile["width"]

    @property
    def height(self) -> int:
        return self.profile["height"]

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""
        return self.height, self.width

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units."""
        return rasterio.windows.bounds(Window(0, 0, self.width, self.height), self.transform)

    @property
    def descriptions(self) -> tuple[str | None, ...]:
        """Band descriptions."""
        return self.profile["descriptions"]

    # ------------------------------------------------------------------ pixels

    def open(self) -> DatasetReader:
        """Open the file with rasterio (use as a context manager)."""
        return rasterio.open(self.path)

    def windows(self, size: int = DEFAULT_WINDOW_SIZE) -> Iterator[Window]:
        """Square windows of ``size`` pixels covering the image, row by row."""
        return split_window(Window(0, 0, self.width, self.height), size)

    def read(
        self, window: Window | None = None, dataset: DatasetReader | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pixels and validity of a window.

        Parameters
        ----------
        window : rasterio.windows.Window, optional
            Whole image if omitted.
        dataset : open dataset of this image, optional
            Saves re-opening the file in loops.

        Returns
        -------
        values : ndarray of shape (count, rows, cols), the file's dtype
        valid : bool ndarray of the same shape; True where the pixel holds data
        """
        if dataset is None:
            with self.open() as dataset:
                return self.read(window, dataset)
        values = dataset.read(window=window)
        return values, self.valid_mask(values, dataset, window)

    def valid_mask(
        self, values: np.ndarray, dataset: DatasetReader, window: Window | None = None
    ) -> np.ndarray:
        """Validity of ``values`` read from ``window``: not nodata, finite, not masked.

        ``values`` may have been read at another resolution (``out_shape``); an internal
        mask is then read at the same shape.
        """
        nodata = self.nodata
        if nodata is not None and math.isnan(nodata):
            return ~np.isnan(values)
        if nodata is not None:
            valid = values != np.array(nodata).astype(values.dtype)
        elif self.profile["dataset_mask"]:
            valid = dataset.read_masks(window=window, out_shape=values.shape) > 0
        else:
            valid = np.ones(values.shape, dtype=bool)
        if values.dtype.kind == "f":
            valid &= np.isfinite(values)
        return valid

    def included(
        self, values: np.ndarray, valid: np.ndarray, bounds: tuple[float, float, float, float]
    ) -> np.ndarray:
        """``valid`` less the pixels this image's mask leaves out of statistics.

        ``values`` and ``valid`` cover the grid spanning ``bounds`` (any resolution).
        """
        if self.mask is None:
            return valid
        excluded = self.mask.excluded(self, values, bounds, valid.shape[1:])
        return valid & ~excluded[None]

    # ------------------------------------------------------------------ derived

    def statistics(self, window_size: int = DEFAULT_WINDOW_SIZE) -> Moments:
        """Per-band count, mean and spread of all valid pixels (computed once, then cached)."""
        if self._statistics is None:
            moments = Moments.empty(self.count)
            with self.open() as dataset:
                for window in self.windows(window_size):
                    moments = moments.merge(Moments.from_array(*self.read(window, dataset)))
            self.set_statistics(moments)
        return self._statistics

    def set_statistics(self, moments: Moments) -> None:
        """Cache statistics computed elsewhere (by a collection-wide pass)."""
        self._statistics = moments

    @cached_property
    def footprint(self) -> BaseGeometry:
        """Valid-data footprint as a shapely geometry in the image's CRS.

        Traced from the validity mask read at a decimated resolution (overviews are used
        where the file has them), so it is accurate to a few pixels.
        """
        from rasterio.features import shapes
        from shapely.geometry import shape
        from shapely.ops import unary_union

        factor = max(1, max(self.shape) // 512)
        out_shape = (self.count, math.ceil(self.height / factor), math.ceil(self.width / factor))
        with self.open() as dataset:
            values = dataset.read(out_shape=out_shape)
            valid = self.valid_mask(values, dataset).any(axis=0).astype(np.uint8)
        scale = rasterio.Affine.scale(self.width / out_shape[2], self.height / out_shape[1])
        polygons = [
            shape(geometry)
            for geometry, value in shapes(
                valid, mask=valid.astype(bool), transform=self.transform @ scale
            )
            if value
        ]
        return unary_union(polygons)

    def __repr__(self) -> str:
        return f"Image({str(self.path)!r})"


def split_window(window: Window, size: int) -> Iterator[Window]:
    """Windows of at most ``size`` x ``size`` pixels covering ``window``, row by row."""
    for row in range(0, int(window.height), size):
        for col in range(0, int(window.width), size):
            yield Window(
                window.col_off + col,
                window.row_off + row,
                min(size, window.width - col),
                min(size, window.height - row),
            )


def _uses_dataset_mask(dataset: DatasetReader) -> bool:
    flags = {flag for band in dataset.mask_flag_enums for flag in band}
    return bool(flags & {MaskFlags.per_dataset, MaskFlags.alpha})
