"""The statistics of a collection's overlaps, as a step of a model is handed them."""

from __future__ import annotations

from typing import Any

import numpy as np
from attrs import define, field

from ..geo.overlap import OverlapEdge
from .moments import Moments


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
