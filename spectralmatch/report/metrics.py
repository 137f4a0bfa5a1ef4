"""How well a collection agrees: differences between overlapping images."""

from __future__ import annotations

import os

import numpy as np
from attrs import frozen
from rasterio.windows import Window

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
    window_size: int = DEFAULT_WINDOW_SIZE,
) -> np.ndarray:
    """How visible the cut lines of a merged mosaic are, per band.

    The mean absolute difference between neighbouring pixels (right and lower
    neighbours) that come from different seamline polygons, divided by the same for
    neighbours from the same polygon: about 1 where the cuts cannot be seen, larger where
    they can.

    Parameters
    ----------
    mosaic : path of the merged raster
    seamlines : Seamline or vector file with one polygon per image
    field : str
        Field naming the image, for a vector file.
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
    sums = np.zeros((2, image.count))
    counts = np.zeros((2, image.count))
    with rasterio.open(image.path) as dataset:
        for window in image.windows(window_size):
            # one pixel more to the right and below, to pair the window's last pixels
            grown = Window(
                window.col_off,
                window.row_off,
                min(window.width + 1, image.width - window.col_off),
                min(window.height + 1, image.height - window.row_off),
            )
            values, valid = image.read(grown, dataset)
            source = rasterize(
                shapes,
                out_shape=values.shape[1:],
                fill=0,
                transform=rasterio.windows.transform(grown, image.transform),
            )
            for axis in (1, 2):
                _add_neighbour_differences(values, valid, source, axis, sums, counts)
    mean = np.divide(sums, counts, out=np.full_like(sums, np.nan), where=counts > 0)
    # no difference at all inside the images: any cut is infinitely visible
    return np.divide(mean[1], mean[0], out=np.full_like(mean[1], np.inf), where=mean[0] > 0)


def _add_neighbour_differences(values, valid, source, axis, sums, counts) -> None:
    """Accumulate |differences| of neighbours along ``axis``: same source (row 0 of
    ``sums``) and different sources (row 1)."""

    def ahead(array):
        return np.take(array, range(1, array.shape[axis]), axis=axis)

    def behind(array):
        return np.take(array, range(array.shape[axis] - 1), axis=axis)

    difference = np.abs(ahead(values.astype(np.float64)) - behind(values))
    both = ahead(valid) & behind(valid)
    across = (
        (ahead(source[None]) != behind(source[None]))
        & (behind(source[None]) > 0)
        & (ahead(source[None]) > 0)
    )
    for row, selected in enumerate((both & ~across, both & across)):
        sums[row] += np.where(selected, difference, 0).sum(axis=(1, 2))
        counts[row] += selected.sum(axis=(1, 2))
