"""Which images overlap, where, and the statistics of each overlap."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from attrs import define, field, frozen
from rasterio.windows import Window, from_bounds

from .collection import ImageCollection
from .image import Image
from .stats import Moments

_EPSILON = 1e-6


@frozen
class OverlapEdge:
    """Two images whose bounds intersect.

    Attributes
    ----------
    first, second : int
        Positions of the two images in the collection (``first < second``).
    bounds : tuple of float
        (left, bottom, right, top) of the intersection of their bounds.
    """

    first: int
    second: int
    bounds: tuple[float, float, float, float]

    def other(self, index: int) -> int:
        """The image at the other end of the edge."""
        return self.second if index == self.first else self.first

    def window_in(self, image: Image) -> Window | None:
        """Pixel window of the overlap in ``image`` (whole pixels inside it), or None."""
        return pixel_window(image, self.bounds)


def pixel_window(image: Image, bounds: tuple[float, float, float, float]) -> Window | None:
    """Whole pixels of ``image`` inside ``bounds`` (snapped when within 1e-6 px), or None."""
    exact = from_bounds(*bounds, transform=image.transform)
    col_start = _snap(exact.col_off, math.ceil)
    row_start = _snap(exact.row_off, math.ceil)
    col_stop = _snap(exact.col_off + exact.width, math.floor)
    row_stop = _snap(exact.row_off + exact.height, math.floor)
    col_start, row_start = max(col_start, 0), max(row_start, 0)
    col_stop, row_stop = min(col_stop, image.width), min(row_stop, image.height)
    if col_stop <= col_start or row_stop <= row_start:
        return None
    return Window(col_start, row_start, col_stop - col_start, row_stop - row_start)


def _snap(value: float, rounding) -> int:
    nearest = round(value)
    return int(nearest) if abs(value - nearest) < _EPSILON else int(rounding(value))


@define(eq=False)
class OverlapGraph:
    """The overlap graph of a collection: one edge per pair of intersecting bounds.

    Edges come from bounds only (no pixel is read); whether two images really share
    valid pixels is known once their pairwise statistics are counted.

    Examples
    --------
    >>> graph = OverlapGraph.from_collection(ImageCollection.from_paths("data/"))
    >>> [(edge.first, edge.second) for edge in graph.edges][:3]
    [(0, 1), (0, 2), (0, 3)]
    """

    n_images: int
    edges: list[OverlapEdge] = field(factory=list)

    @classmethod
    def from_collection(cls, collection: ImageCollection) -> OverlapGraph:
        """Edges between every pair of images whose bounds overlap with positive area."""
        boxes = np.array([image.bounds for image in collection])
        edges = []
        for first in range(len(boxes)):
            left = np.maximum(boxes[first, 0], boxes[first + 1 :, 0])
            bottom = np.maximum(boxes[first, 1], boxes[first + 1 :, 1])
            right = np.minimum(boxes[first, 2], boxes[first + 1 :, 2])
            top = np.minimum(boxes[first, 3], boxes[first + 1 :, 3])
            for offset in np.flatnonzero((right > left) & (top > bottom)):
                second = first + 1 + int(offset)
                box = (
                    float(left[offset]),
                    float(bottom[offset]),
                    float(right[offset]),
                    float(top[offset]),
                )
                edges.append(OverlapEdge(first, second, box))
        return cls(len(boxes), edges)

    def edges_of(self, index: int) -> list[OverlapEdge]:
        """Edges that touch image ``index``."""
        return [edge for edge in self.edges if index in (edge.first, edge.second)]

    def components(self) -> list[list[int]]:
        """Groups of images linked by edges, largest first."""
        return connected_groups(self.n_images, self.edges)


def connected_groups(n_images: int, edges: list[OverlapEdge]) -> list[list[int]]:
    """Groups of image positions linked by ``edges``, largest first."""
    parent = list(range(n_images))

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for edge in edges:
        parent[root(edge.first)] = root(edge.second)
    groups: dict[int, list[int]] = {}
    for node in range(n_images):
        groups.setdefault(root(node), []).append(node)
    return sorted(groups.values(), key=lambda group: (-len(group), group))


@define
class PairMoments:
    """Statistics of both images of an edge over the pixels where both are valid.

    ``blocks`` holds, per block grid, the same per block: a pair of Moments (first
    image, second image) with arrays of shape (n_bands, n_blocks).
    """

    edge: OverlapEdge
    first: Moments
    second: Moments
    blocks: dict[Any, tuple[Moments, Moments]] = field(factory=dict)

    def of(self, index: int) -> Moments:
        """Moments of image ``index`` (one end of the edge)."""
        return self.first if index == self.edge.first else self.second

    def blocks_of(self, index: int, grid: Any) -> Moments:
        """Per-block moments of image ``index`` on ``grid``."""
        return self.blocks[grid][0 if index == self.edge.first else 1]


@define
class OverlapStatistics:
    """What a fit needs: whole-image and pairwise-overlap moments of a collection.

    Attributes
    ----------
    names : list of str
        Image names, in collection order.
    images : list of Moments
        Whole-image moments per image (None where they were not computed).
    pairs : list of PairMoments
        Moments of both images of each edge over their jointly valid pixels.
    reads : dict
        Windows read from each image to measure these statistics.
    """

    names: list[str]
    images: list[Moments | None]
    pairs: list[PairMoments]
    reads: dict[str, int] = field(factory=dict)

    def affine(self, gains: np.ndarray, offsets: np.ndarray) -> OverlapStatistics:
        """The statistics of the images after ``gain * x + offset`` (per image and band)."""

        def mapped(moments: Moments | None, index: int) -> Moments | None:
            return None if moments is None else moments.affine(gains[index], offsets[index])

        def mapped_pair(pair: PairMoments) -> PairMoments:
            first, second = pair.edge.first, pair.edge.second
            blocks = {
                grid: (mapped(a, first), mapped(b, second)) for grid, (a, b) in pair.blocks.items()
            }
            return PairMoments(
                pair.edge, mapped(pair.first, first), mapped(pair.second, second), blocks
            )

        images = [mapped(moments, index) for index, moments in enumerate(self.images)]
        return OverlapStatistics(
            self.names, images, [mapped_pair(p) for p in self.pairs], self.reads
        )
