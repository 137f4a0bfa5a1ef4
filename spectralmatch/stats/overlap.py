"""The statistics of a collection and its overlaps, as a step of a model is handed them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
from attrs import define, evolve, field

from .._typing import Bounds
from ..geo.blocks import BlockGrid
from ..geo.overlap import OverlapEdge
from .histogram import Histogram
from .moments import Moments
from .requests import (
    BlockMoments,
    ImageHistogram,
    ImageMoments,
    OverlapCells,
    OverlapHistogram,
    OverlapMoments,
    Request,
)


@define
class PairMoments:
    """Statistics of both images of an edge over the pixels where both are valid.

    Attributes
    ----------
    edge : OverlapEdge
    first, second : Moments
        Of the edge's first and second image (``OverlapMoments``).
    near_blocks : dict
        Per block grid, the same per block near the overlap: (first's, second's) Moments
        with arrays of shape (n_bands, len(grid.blocks_near(edge.bounds))), the blocks in
        that order (``BlockMoments``). A grid spans the whole mosaic, so only these are
        kept; :attr:`blocks` gives them over the whole grid.
    histograms : (Histogram, Histogram) or None
        (first's, second's) histograms over the overlap (``OverlapHistogram``).
    cells : (Moments, Moments) or None
        (first's, second's) moments per cell of the overlap's
        :class:`~spectralmatch.geo.cells.CellGrid` (``OverlapCells``).
    """

    edge: OverlapEdge
    first: Moments
    second: Moments
    near_blocks: dict[BlockGrid, tuple[Moments, Moments]] = field(factory=dict)
    histograms: tuple[Histogram, Histogram] | None = None
    cells: tuple[Moments, Moments] | None = None

    @property
    def blocks(self) -> Mapping[BlockGrid, tuple[Moments, Moments]]:
        """Per block grid, (first's, second's) Moments per block of the whole grid,
        arrays of shape (n_bands, grid.size): no pixel in the blocks far from the
        overlap. Built on each access from :attr:`near_blocks`."""
        return _WholeGridBlocks(self.edge.bounds, self.near_blocks)

    def of(self, index: int) -> Moments:
        """Moments of image ``index`` (one end of the edge)."""
        return self.first if index == self.edge.first else self.second

    def blocks_of(self, index: int, grid: BlockGrid) -> Moments:
        """Per-block moments of image ``index`` on ``grid`` (the whole grid)."""
        kept = self.near_blocks[grid][0 if index == self.edge.first else 1]
        return _on_whole_grid(kept, grid.blocks_near(self.edge.bounds), grid.size)

    def histogram_of(self, index: int) -> Histogram:
        """Histogram of image ``index`` over the overlap."""
        if self.histograms is None:
            raise KeyError("no overlap histograms were measured (request OverlapHistogram)")
        return self.histograms[0 if index == self.edge.first else 1]

    def affine(self, gains: np.ndarray, offsets: np.ndarray) -> PairMoments:
        """This pair after ``gains[i] * x + offsets[i]`` on each image ``i``."""
        first, second = self.edge.first, self.edge.second

        def both(a: Any, b: Any) -> tuple[Any, Any]:
            return (
                a.affine(gains[first], offsets[first]),
                b.affine(gains[second], offsets[second]),
            )

        mapped_first, mapped_second = both(self.first, self.second)
        return PairMoments(
            self.edge,
            mapped_first,
            mapped_second,
            {grid: both(a, b) for grid, (a, b) in self.near_blocks.items()},
            None if self.histograms is None else both(*self.histograms),
            None if self.cells is None else both(*self.cells),
        )


class _WholeGridBlocks(Mapping[BlockGrid, tuple[Moments, Moments]]):
    """Block moments kept near an overlap, given over each whole grid on access."""

    def __init__(self, bounds: Bounds, near: dict[BlockGrid, tuple[Moments, Moments]]) -> None:
        self.bounds, self.near = bounds, near

    def __getitem__(self, grid: BlockGrid) -> tuple[Moments, Moments]:
        first, second = self.near[grid]
        blocks = grid.blocks_near(self.bounds)
        return _on_whole_grid(first, blocks, grid.size), _on_whole_grid(second, blocks, grid.size)

    def __iter__(self) -> Iterator[BlockGrid]:
        return iter(self.near)

    def __len__(self) -> int:
        return len(self.near)


def _on_whole_grid(moments: Moments, blocks: np.ndarray, size: int) -> Moments:
    """``moments`` of ``blocks`` placed on a grid of ``size`` blocks (no pixels elsewhere;
    no extremes, as block moments have none)."""

    def placed(values: np.ndarray) -> np.ndarray:
        whole = np.zeros((len(values), size))
        whole[:, blocks] = values
        return whole

    return Moments(placed(moments.count), placed(moments.mean), placed(moments.m2))


@define
class OverlapStatistics:
    """What a step fits on: statistics of every image and of every overlap.

    Each step sees the results of the requests it made (the rest is left out), as
    transformed by the steps before it.

    Attributes
    ----------
    names : list of str
        Image names, in collection order.
    images : list of Moments or None
        Whole-image moments (``ImageMoments``; None where not measured).
    pairs : list of PairMoments
        Both images of each overlapping pair, over their jointly valid pixels.
    image_histograms : list of Histogram or None
        Whole-image histograms (``ImageHistogram``).
    crs : CRS or None
        The images' coordinate reference system.
    reads : dict
        Windows read from each image to measure these statistics.
    grids : list of BlockGrid
        The block grids asked for (``BlockMoments``), as :meth:`select` keeps them: known
        even where no pair was measured on them.
    bounds : list of (left, bottom, right, top)
        Each image's bounds in the CRS (empty where not known).
    """

    names: list[str]
    images: list[Moments | None]
    pairs: list[PairMoments]
    image_histograms: list[Histogram | None] = field(factory=list)
    crs: Any = None
    reads: dict[str, int] = field(factory=dict)
    grids: list[BlockGrid] = field(factory=list)
    bounds: list[Bounds] = field(factory=list)

    def __attrs_post_init__(self) -> None:
        if not self.image_histograms:
            self.image_histograms = [None] * len(self.names)

    @property
    def n_bands(self) -> int:
        """Number of bands (from whatever was measured)."""
        for moments in [*self.images, *(p.first for p in self.pairs)]:
            if moments is not None:
                return len(moments.count)
        for histogram in self.image_histograms:
            if histogram is not None:
                return histogram.n_bands
        raise ValueError("these statistics hold no measurement")

    @property
    def block_grids(self) -> list[BlockGrid]:
        """The block grids the pairs were measured on (those asked for when nothing
        overlaps)."""
        return list(self.pairs[0].near_blocks) if self.pairs else list(self.grids)

    def affine(self, gains: np.ndarray, offsets: np.ndarray) -> OverlapStatistics:
        """The statistics after ``gains[i] * x + offsets[i]`` on image ``i`` (per band)."""

        def mapped(value: Any, index: int) -> Any:
            return None if value is None else value.affine(gains[index], offsets[index])

        return evolve(
            self,
            images=[mapped(m, i) for i, m in enumerate(self.images)],
            pairs=[pair.affine(gains, offsets) for pair in self.pairs],
            image_histograms=[mapped(h, i) for i, h in enumerate(self.image_histograms)],
        )

    def select(self, requests: Iterable[Request]) -> OverlapStatistics:
        """Only the results of ``requests`` (what one step asked for)."""
        requests = list(requests)
        grids = list(dict.fromkeys(r.grid for r in requests if isinstance(r, BlockMoments)))
        histograms = any(isinstance(r, OverlapHistogram) for r in requests)
        cells = any(isinstance(r, OverlapCells) for r in requests)
        pairs = [
            PairMoments(
                pair.edge,
                pair.first,
                pair.second,
                {grid: value for grid, value in pair.near_blocks.items() if grid in grids},
                pair.histograms if histograms else None,
                pair.cells if cells else None,
            )
            for pair in self.pairs
        ]
        keep_pairs = any(
            isinstance(r, (OverlapMoments, OverlapHistogram, BlockMoments, OverlapCells))
            for r in requests
        )
        keep_moments = any(isinstance(r, ImageMoments) for r in requests)
        keep_histograms = any(isinstance(r, ImageHistogram) for r in requests)
        return evolve(
            self,
            images=self.images if keep_moments else [None] * len(self.names),
            pairs=pairs if keep_pairs else [],
            image_histograms=self.image_histograms if keep_histograms else [None] * len(self.names),
            grids=grids,
        )
