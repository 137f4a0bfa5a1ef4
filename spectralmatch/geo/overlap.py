"""Which images overlap: edges between images whose bounds intersect."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from attrs import define, field, frozen
from rasterio.windows import Window

from .._typing import Bounds, Georeferenced
from .grid import PixelGrid


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
    bounds: Bounds

    def other(self, index: int) -> int:
        """The image at the other end of the edge."""
        return self.second if index == self.first else self.first

    def window_in(self, grid: PixelGrid) -> Window | None:
        """Pixel window of the overlap in an image's ``grid`` (whole pixels), or None."""
        return grid.inner_window(self.bounds)


@define(eq=False)
class OverlapGraph:
    """The overlap graph of a collection: one edge per pair of intersecting bounds.

    Edges come from bounds only (no pixel is read); whether two images really share
    valid pixels is known once their pairwise statistics are counted.

    Examples
    --------
    >>> from spectralmatch import ImageCollection
    >>> graph = OverlapGraph.from_collection(ImageCollection.from_paths("data/"))
    >>> [(edge.first, edge.second) for edge in graph.edges][:3]
    [(0, 1), (0, 2), (0, 3)]
    """

    n_images: int
    edges: list[OverlapEdge] = field(factory=list)

    @classmethod
    def from_collection(cls, images: Iterable[Georeferenced]) -> OverlapGraph:
        """Edges between every pair of images whose bounds overlap with positive area.

        ``images`` is an :class:`~spectralmatch.ImageCollection` or any sequence of
        objects with ``bounds``.
        """
        boxes = np.array([image.bounds for image in images], dtype=float)
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


def connected_groups(n_images: int, edges: Sequence[OverlapEdge]) -> list[list[int]]:
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
