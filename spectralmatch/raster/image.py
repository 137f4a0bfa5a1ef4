"""One raster on disk, opened lazily with rasterio."""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
from attrs import define, field
from rasterio._err import CPLE_BaseError
from rasterio.enums import MaskFlags, Resampling
from rasterio.windows import Window, from_bounds

from .._typing import Bounds
from ..errors import SpectralMatchError
from ..geo.grid import PixelGrid
from ..masks.base import Mask
from ..masks.convert import as_mask
from ..stats.moments import Moments
from .files import TEMPORARY_PREFIX, gdal_path

if TYPE_CHECKING:
    from rasterio.io import DatasetReader
    from shapely.geometry.base import BaseGeometry

DEFAULT_WINDOW_SIZE = 1024

#: What a failed GDAL read or write raises (CPLE errors are not all RasterioErrors).
GDAL_ERRORS = (rasterio.errors.RasterioError, CPLE_BaseError, OSError)


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
    mask : Mask, path, callable or list of these, optional
        Pixels to leave out of every statistic of a fit (they are still transformed):
        a :class:`~spectralmatch.masks.base.Mask`, a raster (non-zero = excluded) or
        vector file (polygons = excluded), a function of the window's values, or a list
        of these (what any of them excludes).
    nodata : float, optional
        The value to take as nodata, instead of the file's own (outputs carry it too).
        Without either, and without an internal mask, every pixel is valid.

    Examples
    --------
    >>> image = Image("data/tile_00.tif")
    >>> image.name, image.count, image.dtype
    ('tile_00', 3, 'uint16')
    """

    path: Path = field(converter=_as_path)
    name: str = field(default=None)
    mask: Mask | None = field(default=None, converter=as_mask)
    _nodata: float | None = field(default=None, alias="nodata", kw_only=True)

    def __attrs_post_init__(self) -> None:
        if self.name is None:
            self.name = self.path.stem
        if self._nodata is not None and not isinstance(self._nodata, (int, float)):
            raise SpectralMatchError(f"{self.path}: nodata must be a number, got {self._nodata!r}")

    # ------------------------------------------------------------------ metadata

    @cached_property
    def profile(self) -> dict[str, Any]:
        """The rasterio profile (driver, dtype, nodata, size, CRS, transform, ...)."""
        try:
            with rasterio.open(gdal_path(self.path)) as dataset:
                profile = dict(dataset.profile)
                profile["descriptions"] = dataset.descriptions
                profile["dataset_mask"] = _uses_dataset_mask(dataset)
        except GDAL_ERRORS as error:
            raise SpectralMatchError(
                f"{self.path}: cannot be read as a raster ({error_cause(error)})"
            ) from None
        if self._nodata is not None:
            profile["nodata"] = _representable_nodata(self.path, self._nodata, profile["dtype"])
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
    def grid(self) -> PixelGrid:
        """The image's pixel grid.

        Raises
        ------
        SpectralMatchError
            If the geotransform is rotated or sheared: only :func:`align_rasters` takes
            such an image (it puts it on a north-up grid).
        """
        transform = self.transform
        if transform.b != 0 or transform.d != 0:
            raise SpectralMatchError(
                f"{self.path}: has a rotated or sheared geotransform; put it on a north-up "
                "grid first (spectralmatch align, or align_rasters)"
            )
        return PixelGrid(transform, self.width, self.height)

    @property
    def bounds(self) -> Bounds:
        """(left, bottom, right, top) in CRS units (of all four corners, for a rotated
        geotransform)."""
        return PixelGrid(self.transform, self.width, self.height).envelope

    @property
    def descriptions(self) -> tuple[str | None, ...]:
        """Band descriptions."""
        return self.profile["descriptions"]

    # ------------------------------------------------------------------ pixels

    def open(self) -> DatasetReader:
        """Open the file with rasterio (use as a context manager).

        For reads at another resolution that average, which would count a nodata value
        given instead of the file's own, see
        :func:`~spectralmatch.raster.vrt.open_for_resampling`."""
        return rasterio.open(gdal_path(self.path))

    def windows(self, size: int = DEFAULT_WINDOW_SIZE) -> Iterator[Window]:
        """Square windows of ``size`` pixels covering the image, row by row."""
        return self.grid.windows(size)

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
        with self._reading(window):
            values = dataset.read(window=window)
            return values, self.valid_mask(values, dataset, window)

    def read_on_grid(
        self, grid: PixelGrid, dataset: DatasetReader
    ) -> tuple[np.ndarray, np.ndarray]:
        """Values and validity of this image on another ``grid`` (in its CRS).

        Reads the matching window directly where the grids are aligned, and resamples
        with nearest neighbour where they are not (another resolution or a sub-pixel
        shift).
        """
        exact = from_bounds(*grid.bounds, transform=self.transform)
        offsets = np.array([exact.col_off, exact.row_off, exact.width, exact.height])
        aligned = np.allclose(offsets, np.round(offsets), atol=1e-6)
        with self._reading(exact):
            if aligned and (round(exact.height), round(exact.width)) == grid.shape:
                window = Window(*(int(v) for v in np.round(offsets)))
                values = dataset.read(window=window)
            else:
                window = exact
                values = dataset.read(
                    window=exact,
                    out_shape=(self.count, *grid.shape),
                    resampling=Resampling.nearest,
                )
            return values, self.valid_mask(values, dataset, window)

    @contextlib.contextmanager
    def _reading(self, window: Window | None) -> Iterator[None]:
        """Turn a failed read (a corrupt tile, a truncated file) into a clear error."""
        try:
            yield
        except GDAL_ERRORS as error:
            where = "" if window is None else f" at row {window.row_off:.0f}, column "
            where += "" if window is None else f"{window.col_off:.0f}"
            raise SpectralMatchError(
                f"{self.path}: cannot be read{where} ({error_cause(error)})"
            ) from None

    @property
    def nodata_given(self) -> bool:
        """Whether the nodata value was given (``nodata=``) instead of read from the file."""
        return self._nodata is not None

    @property
    def uses_mask_band(self) -> bool:
        """Whether validity comes from the file's mask band: it has one, and no nodata
        value (the file's or the one given)."""
        return self.nodata is None and bool(self.profile["dataset_mask"])

    def valid_mask(
        self,
        values: np.ndarray,
        dataset: DatasetReader,
        window: Window | None = None,
        indexes: list[int] | None = None,
    ) -> np.ndarray:
        """Validity of ``values`` read from ``window``: not nodata, finite, not masked.

        ``values`` may have been read at another resolution (``out_shape``), and of some
        bands only (``indexes``, 1-based; default every band); an internal mask is then
        read of the same bands at the same shape.
        """
        nodata = self.nodata
        if nodata is not None and not math.isnan(nodata):
            valid = values != np.array(nodata).astype(values.dtype)
        elif self.uses_mask_band:
            valid = dataset.read_masks(indexes, window=window, out_shape=values.shape) > 0
        else:
            valid = np.ones(values.shape, dtype=bool)
        if values.dtype.kind == "f":
            valid &= np.isfinite(values)
        return valid

    def included(self, values: np.ndarray, valid: np.ndarray, grid: PixelGrid) -> np.ndarray:
        """``valid`` less the pixels this image's mask leaves out of statistics.

        ``values`` and ``valid`` cover ``grid`` (a window of the image, at any resolution).
        """
        if self.mask is None:
            return valid
        excluded = self.mask.excluded(self, values, grid)
        return valid & ~excluded[None]

    # ------------------------------------------------------------------ derived

    @cached_property
    def _moments(self) -> Moments:
        moments = Moments.empty(self.count)
        with self.open() as dataset:
            for window in self.windows():
                moments = moments.merge(Moments.from_array(*self.read(window, dataset)))
        return moments

    def statistics(self) -> Moments:
        """Per-band count, mean, spread, minimum and maximum of all valid pixels (the
        mask is not applied), read window by window on the first call, then kept."""
        return self._moments

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
        with self.open() as dataset, self._reading(None):
            values = dataset.read(out_shape=out_shape)
            valid = self.valid_mask(values, dataset).any(axis=0).astype(np.uint8)
        cells = self.grid.resampled(out_shape[1:])
        polygons = [
            shape(geometry)
            for geometry, value in shapes(valid, mask=valid.astype(bool), transform=cells.transform)
            if value
        ]
        return unary_union(polygons)

    def __repr__(self) -> str:
        return f"Image({str(self.path)!r})"


def error_cause(error: BaseException, output: str | None = None) -> str:
    """The cause a GDAL or OS error gives, in one line: rasterio's own diagnosis where it
    gives one, else the innermost GDAL message (the root cause, where rasterio only says
    "See previous exception for details"). With ``output``, a temporary file's name in
    it is replaced by the name of the output being written."""
    cause = _chain_cause(error)
    if output is None:
        return cause
    return re.sub(rf"\S*{TEMPORARY_PREFIX}[^\s:]*", output, cause)


def _chain_cause(error: BaseException) -> str:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    messages = [(item, _first_line(item)) for item in chain]
    for item, text in messages:
        if isinstance(item, rasterio.errors.RasterioError) and text:
            return text
    return next((text for _, text in reversed(messages) if text), type(error).__name__)


def _first_line(error: BaseException) -> str:
    """The message of ``error`` in one line; empty where it only points elsewhere."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error).splitlines()[0].strip().rstrip(".") if str(error) else ""
    return "" if "See previous exception" in text else text


def _representable_nodata(path: Path, nodata: float, dtype: str) -> float:
    """``nodata`` if ``dtype`` can hold it exactly, else a clear error."""
    if math.isnan(nodata):
        if np.dtype(dtype).kind != "f":
            raise SpectralMatchError(f"{path}: nodata NaN cannot be held by {dtype} data")
        return nodata
    if np.array(nodata).astype(dtype) != nodata:
        raise SpectralMatchError(f"{path}: nodata {nodata:g} cannot be held by {dtype} data")
    return nodata


def _uses_dataset_mask(dataset: DatasetReader) -> bool:
    flags = {flag for band in dataset.mask_flag_enums for flag in band}
    return bool(flags & {MaskFlags.per_dataset, MaskFlags.alpha})
