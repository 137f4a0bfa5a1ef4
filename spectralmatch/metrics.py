"""How well a collection agrees: differences between overlapping images."""

from __future__ import annotations

import numpy as np
from attrs import frozen
from rasterio.windows import bounds as window_bounds

from .collection import ImageCollection
from .engine import read_on_grid
from .image import DEFAULT_WINDOW_SIZE, split_window
from .overlap import OverlapGraph


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


def overlap_differences(images, window_size: int = DEFAULT_WINDOW_SIZE
                        ) -> list[OverlapDifference]:
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
        overlap = edge.window_in(first)
        count, total = np.zeros(first.count), np.zeros(first.count)
        if overlap is not None:
            with first.open() as dataset, second.open() as partner:
                for window in split_window(overlap, window_size):
                    values, valid = first.read(window, dataset)
                    other, other_valid = read_on_grid(second, partner,
                                                      window_bounds(window, first.transform),
                                                      (window.height, window.width))
                    joint = valid & other_valid
                    difference = np.abs(values.astype(np.float64) - other)
                    count += joint.sum(axis=(1, 2))
                    total += np.where(joint, difference, 0).sum(axis=(1, 2))
        if count.any():
            mean = np.divide(total, count, out=np.full_like(total, np.nan), where=count > 0)
            results.append(OverlapDifference(first.name, second.name, count, mean))
    return results


def seam_error(differences: list[OverlapDifference]) -> np.ndarray:
    """Count-weighted mean absolute difference over all overlaps, per band."""
    count = np.sum([d.count for d in differences], axis=0)
    total = np.sum([d.count * np.nan_to_num(d.mean_abs_difference) for d in differences], axis=0)
    return np.divide(total, count, out=np.full_like(total, np.nan), where=count > 0)
