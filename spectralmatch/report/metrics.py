"""How well a collection agrees: differences between overlapping images."""

from __future__ import annotations

import os
import warnings

import numpy as np
from attrs import frozen
from rasterio.windows import Window

from ..errors import SpectralMatchWarning
from ..geo.grid import split_window
from ..geo.overlap import OverlapGraph
from ..ops.seamline import Seamline
from ..raster.collection import ImageCollection
from ..raster.image import DEFAULT_WINDOW_SIZE, Image


@frozen
class OverlapDifference:
    """Mean absolute difference of two overlapping images over their common valid pixels.

    Attributes
    ----------
    first, second : str
        Image names.
    count : ndarray (n_bands,)
        Jointly valid pixels.
    mean_abs_difference : ndarray (n_bands,)
        In the images' units (NaN where ``count`` is 0).
    """

    first: str
    second: str
    count: np.ndarray
    mean_abs_difference: np.ndarray


def overlap_differences(images, window_size: int = DEFAULT_WINDOW_SIZE) -> list[OverlapDifference]:
    """Per overlapping pair and band, the mean absolute difference over the pixels where
    both images are valid (the second image read on the first one's grid).

    Examples
    --------
    >>> differences = overlap_differences("data/")
    >>> (differences[0].first, differences[0].second), differences[0].count.shape
    (('tile_00', 'tile_01'), (3,))
    """
    collection = ImageCollection.coerce(images)
    results = []
    for edge in OverlapGraph.from_collection(collection).edges:
        first, second = collection.images[edge.first], collection.images[edge.second]
        overlap = edge.window_in(first.grid)
        count, total = np.zeros(first.count), np.zeros(first.count)
        if overlap is not None:
            with first.open() as dataset, second.open() as partner:
                for window in split_window(overlap, window_size):
                    values, valid = first.read(window, dataset)
                    other, other_valid = second.read_on_grid(
                        first.grid.window_grid(window), partner
                    )
                    joint = valid & other_valid
                    difference = np.abs(values.astype(np.float64) - other)
                    count += joint.sum(axis=(1, 2))
                    total += np.where(joint, difference, 0).sum(axis=(1, 2))
        if count.any():
            mean = np.divide(total, count, out=np.full_like(total, np.nan), where=count > 0)
            results.append(OverlapDifference(first.name, second.name, count, mean))
    return results


def seam_contrast(
    mosaic: str | os.PathLike,
    seamlines,
    field: str = "image",
    band_width: int = 3,
    window_size: int = DEFAULT_WINDOW_SIZE,
) -> np.ndarray:
    """How visible the cut lines of a merged mosaic are, per band.

    The mean absolute difference between neighbouring pixels that come from different
    seamline polygons (across a cut), divided by the mean absolute difference between
    neighbouring pixels of the same polygon within ``band_width`` pixels of a cut (the
    same ground, beside the cut). Each direction (rows, columns) is compared with
    itself, so textures that differ along and across the cut do not count: images of
    identical radiometry score about 1, cuts that show score more.

    Parameters
    ----------
    mosaic : path of the merged raster
    seamlines : Seamline or vector file with one polygon per image
    field : str
        Field naming the image, for a vector file.
    band_width : int
        How far from a cut (in pixels) the pairs beside it are taken.
    window_size : int
        Pixels per side of the windows read one at a time.

    Returns
    -------
    ndarray (n_bands,)
        The ratio per band; inf where the pixels beside the cuts do not differ at all,
        NaN (with a warning) where the mosaic has no cut between valid pixels.
    """
    import rasterio
    from rasterio.features import rasterize

    image = Image(mosaic)
    polygons = Seamline.coerce(seamlines, field, image.crs).polygons
    shapes = [
        (geometry, number)
        for number, geometry in enumerate(polygons.values(), start=1)
        if geometry is not None and not geometry.is_empty
    ]
    # [across, beside] x [row pairs, column pairs] x bands
    sums = np.zeros((2, 2, image.count))
    counts = np.zeros((2, 2, image.count))
    margin = band_width + 1
    with rasterio.open(image.path) as dataset:
        for window in image.windows(window_size):
            grown, core = _with_margin(window, margin, image)
            values, valid = image.read(grown, dataset)
            source = rasterize(
                shapes,
                out_shape=values.shape[1:],
                fill=0,
                transform=rasterio.windows.transform(grown, image.transform),
            )
            near = _near_cut(source, band_width)
            for index, axis in enumerate((1, 2)):
                pairs = _NeighbourPairs(axis)
                selected = pairs.of(valid) & pairs.behind(core)[None]
                difference = np.abs(pairs.ahead(values.astype(np.float64)) - pairs.behind(values))
                across = pairs.across(source)
                beside = ~across & pairs.of(near) & pairs.of(source > 0)
                for row, kind in enumerate((across, beside)):
                    chosen = selected & kind[None]
                    sums[row, index] += np.where(chosen, difference, 0).sum(axis=(1, 2))
                    counts[row, index] += chosen.sum(axis=(1, 2))
    return _contrast(sums, counts, image.path)


def _with_margin(window: Window, margin: int, image: Image) -> tuple[Window, np.ndarray]:
    """``window`` grown by ``margin`` pixels on every side (within the image), and a mask
    of the grown window's pixels that lie in ``window``."""
    col_off = max(window.col_off - margin, 0)
    row_off = max(window.row_off - margin, 0)
    col_end = min(window.col_off + window.width + margin, image.width)
    row_end = min(window.row_off + window.height + margin, image.height)
    grown = Window(col_off, row_off, col_end - col_off, row_end - row_off)
    core = np.zeros((grown.height, grown.width), dtype=bool)
    core[
        window.row_off - row_off : window.row_off - row_off + window.height,
        window.col_off - col_off : window.col_off - col_off + window.width,
    ] = True
    return grown, core


def _near_cut(source: np.ndarray, band_width: int) -> np.ndarray:
    """Pixels within ``band_width`` pixels (in rows and columns) of a cut: of a pixel
    whose row or column neighbour comes from another polygon."""
    from scipy import ndimage

    on_cut = np.zeros(source.shape, dtype=bool)
    for axis in (1, 2):
        pairs = _NeighbourPairs(axis)
        across = pairs.across(source)
        pairs.behind(on_cut)[...] |= across
        pairs.ahead(on_cut)[...] |= across
    return ndimage.binary_dilation(on_cut, np.ones((3, 3), bool), iterations=band_width)


@frozen
class _NeighbourPairs:
    """Each pixel and its next neighbour along ``axis`` of a (bands, rows, cols) array
    (axis 1 or 2; 2-d arrays of rows and cols are indexed one axis lower)."""

    axis: int

    def _slice(self, array: np.ndarray, part: slice) -> np.ndarray:
        axis = self.axis - (3 - array.ndim)
        index = [slice(None)] * array.ndim
        index[axis] = part
        return array[tuple(index)]

    def ahead(self, array: np.ndarray) -> np.ndarray:
        return self._slice(array, slice(1, None))

    def behind(self, array: np.ndarray) -> np.ndarray:
        return self._slice(array, slice(None, -1))

    def of(self, mask: np.ndarray) -> np.ndarray:
        """Pairs whose two pixels are both in ``mask``."""
        return self.ahead(mask) & self.behind(mask)

    def across(self, source: np.ndarray) -> np.ndarray:
        """Pairs from two different polygons (both inside one)."""
        return self.of(source > 0) & (self.ahead(source) != self.behind(source))


def _contrast(sums: np.ndarray, counts: np.ndarray, path) -> np.ndarray:
    """Across-cut mean difference over the beside-cut one expected for the same mix of
    row and column pairs, per band (1 where neither differs at all)."""
    mean = np.divide(sums, counts, out=np.full_like(sums, np.nan), where=counts > 0)
    across_count = counts[0].sum(axis=0)
    if not across_count.any():
        warnings.warn(
            f"{path}: no neighbouring valid pixels from different seamline polygons, "
            "so no seam to measure; seam contrast is NaN",
            SpectralMatchWarning,
            stacklevel=3,
        )
        return np.full(across_count.shape, np.nan)
    # each direction's beside-cut mean, weighted by its share of the across-cut pairs
    weighted = (counts[0] * np.where(counts[0] > 0, mean[1], 0)).sum(axis=0)
    nan = np.full_like(across_count, np.nan)
    expected = np.divide(weighted, across_count, out=nan.copy(), where=across_count > 0)
    across = np.divide(sums[0].sum(axis=0), across_count, out=nan.copy(), where=across_count > 0)
    ratio = np.divide(across, expected, out=np.full_like(across, np.inf), where=expected > 0)
    return np.where((expected == 0) & (across == 0), 1.0, ratio)
