"""Per-image and per-overlap statistics of collections of any size, read window by
window (never a whole image at once)."""

from __future__ import annotations

import numpy as np
from attrs import frozen

from ..errors import SpectralMatchError
from ..raster.collection import ImageCollection
from ..raster.image import DEFAULT_WINDOW_SIZE, Image
from ..stats.histogram import Histogram
from ..stats.moments import Moments
from .metrics import OverlapDifference, overlap_differences

#: Percentiles reported by default.
DEFAULT_PERCENTILES = (2.0, 25.0, 50.0, 75.0, 98.0)


@frozen
class ImageStatistics:
    """Per-band statistics of one image's valid pixels (its mask not applied).

    Attributes
    ----------
    name : str
        Image name.
    count : ndarray (n_bands,)
        Valid pixels.
    mean, std, minimum, maximum : ndarray (n_bands,)
        Population standard deviation; NaN (mean, std) or +-inf (extremes) for a band
        without valid pixels.
    percentiles : ndarray (n_levels,)
        The levels, in percent.
    values : ndarray (n_bands, n_levels)
        The value at each level, from a histogram whose bins are at most
        ``bin_width`` wide (values taken as spread evenly within a bin).
    bin_width : ndarray (n_bands,)
        Width of the histogram's bins: 1 for integer data spanning under 4096 values.
    """

    name: str
    count: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    percentiles: np.ndarray
    values: np.ndarray
    bin_width: np.ndarray


@frozen
class OverlapChange:
    """Mean absolute difference of an overlapping pair before and after matching.

    Attributes
    ----------
    first, second : str
        Image names (before matching).
    count : ndarray (n_bands,)
        Jointly valid pixels before matching.
    before, after : ndarray (n_bands,)
        Mean absolute difference over the jointly valid pixels, in each collection's
        units.
    """

    first: str
    second: str
    count: np.ndarray
    before: np.ndarray
    after: np.ndarray


def image_statistics(
    images,
    percentiles=DEFAULT_PERCENTILES,
    window_size: int = DEFAULT_WINDOW_SIZE,
) -> list[ImageStatistics]:
    """Per image and band: mean, standard deviation, extremes and percentiles.

    One read of each image, window by window, into mergeable moments and histograms, so
    memory does not grow with the image.

    Parameters
    ----------
    images : ImageCollection, Image, folder, glob pattern or list of paths
    percentiles : sequence of float
        Levels in percent (0 to 100).
    window_size : int
        Pixels per side of the windows read one at a time.

    Examples
    --------
    >>> first = image_statistics("data/", percentiles=[50])[0]
    >>> first.name, first.values.shape
    ('tile_00', (3, 1))
    """
    levels = np.asarray(percentiles, dtype=np.float64).reshape(-1)
    if not ((levels >= 0) & (levels <= 100)).all():
        raise SpectralMatchError(f"percentiles must lie in [0, 100], got {levels.tolist()}")
    return [
        _one_image(image, levels, window_size)
        for image in ImageCollection.coerce(images, any_grid=True)
    ]


def _one_image(image: Image, levels: np.ndarray, window_size: int) -> ImageStatistics:
    moments = Moments.empty(image.count)
    histogram = Histogram.empty(image.count, np.dtype(image.dtype).kind in "iub")
    with image.open() as dataset:
        for window in image.windows(window_size):
            values, valid = image.read(window, dataset)
            moments = moments.merge(Moments.from_array(values, valid))
            histogram = histogram.merge(Histogram.from_array(values, valid))
    empty = moments.count == 0
    assert moments.minimum is not None and moments.maximum is not None
    return ImageStatistics(
        name=image.name,
        count=moments.count,
        mean=np.where(empty, np.nan, moments.mean),
        std=np.where(empty, np.nan, moments.std),
        minimum=moments.minimum,
        maximum=moments.maximum,
        percentiles=levels,
        values=histogram.quantiles(levels / 100.0),
        bin_width=np.exp2(histogram.exponents.astype(np.float64)),
    )


def overlap_changes(before, after, window_size: int = DEFAULT_WINDOW_SIZE) -> list[OverlapChange]:
    """Per overlapping pair and band, the mean absolute difference before and after
    matching (see :func:`~spectralmatch.report.metrics.overlap_differences`).

    Parameters
    ----------
    before, after : collections (or folders, paths) of the same images in the same order
        The inputs and the matched outputs.
    window_size : int
        Pixels per side of the windows read one at a time.

    Raises
    ------
    SpectralMatchError
        When the two do not hold as many images, or their overlaps differ.

    Examples
    --------
    >>> change = overlap_changes("data/", "data/")[0]
    >>> bool((change.before == change.after).all())
    True
    """
    before, after = ImageCollection.coerce(before), ImageCollection.coerce(after)
    if len(before.images) != len(after.images):
        raise SpectralMatchError(
            f"{len(before.images)} images before matching but {len(after.images)} after "
            f"({after.images[0].path.parent if after.images else 'no images'})"
        )
    renamed = dict(zip(after.names, before.names, strict=True))
    first = {(d.first, d.second): d for d in overlap_differences(before, window_size)}
    second = {
        (renamed[d.first], renamed[d.second]): d for d in overlap_differences(after, window_size)
    }
    if first.keys() != second.keys():
        raise SpectralMatchError(
            "the images overlap differently before and after matching: "
            f"{sorted(first.keys() ^ second.keys())}"
        )
    return [_change(first[key], second[key]) for key in first]


def _change(before: OverlapDifference, after: OverlapDifference) -> OverlapChange:
    return OverlapChange(
        before.first,
        before.second,
        before.count,
        before.mean_abs_difference,
        after.mean_abs_difference,
    )
