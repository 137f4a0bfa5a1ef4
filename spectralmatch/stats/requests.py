"""What a step asks the engine to measure, in the one read pass over the images.

A step returns a list of requests from ``Adjuster.requests(collection)``. The engine
gathers the requests of every step of a model, measures them all while it reads each
image once, and hands each step the results of its own requests, as transformed by the
steps before it. Requests are values: equal requests from two steps are measured once.
"""

from __future__ import annotations

from collections.abc import Iterable

from attrs import field, frozen

from ..geo.blocks import BlockGrid
from .histogram import DEFAULT_BINS


def _positive_bins(instance: object, attribute: object, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 2:
        raise ValueError(f"bins must be an integer >= 2, got {value!r}")


class Request:
    """Base class of the statistics a step can ask for."""


@frozen
class ImageMoments(Request):
    """Count, mean, spread, minimum and maximum of each image's valid, unmasked pixels."""


@frozen
class OverlapMoments(Request):
    """The same for both images of each overlap, over the pixels where both are valid
    and no mask excludes them."""


@frozen
class BlockMoments(Request):
    """Moments of both images of each overlap per block of ``grid`` (no extremes)."""

    grid: BlockGrid


@frozen
class OverlapCells(Request):
    """Moments of both images of each overlap per cell of about ``side`` CRS units
    (:class:`~spectralmatch.geo.cells.CellGrid`, split on the edges of the blocks asked
    for), from which the overlap's and the blocks' moments are recomposed."""

    side: float


@frozen
class ImageHistogram(Request):
    """A histogram of each image's valid, unmasked pixels, at most ``bins`` per band."""

    bins: int = field(default=DEFAULT_BINS, validator=_positive_bins)


@frozen
class OverlapHistogram(Request):
    """A histogram of both images of each overlap over their jointly valid pixels."""

    bins: int = field(default=DEFAULT_BINS, validator=_positive_bins)


@frozen
class Plan:
    """Everything to measure in one pass: the union of some steps' requests.

    Attributes
    ----------
    image_moments : bool
    image_bins : int or None
        Histogram bins of whole images (None: no histogram).
    overlaps : bool
        Whether overlaps are measured at all (moments always, when they are).
    overlap_bins : int or None
    grids : tuple of BlockGrid
    cell_side : float or None
        Side of the overlap cells (None: no cells).
    """

    image_moments: bool = False
    image_bins: int | None = None
    overlaps: bool = False
    overlap_bins: int | None = None
    grids: tuple[BlockGrid, ...] = ()
    cell_side: float | None = None

    @classmethod
    def of(cls, requests: Iterable[Request]) -> Plan:
        requests = list(dict.fromkeys(requests))
        for request in requests:
            if not isinstance(request, Request):
                raise TypeError(f"not a statistics request: {request!r}")
        image_bins = [r.bins for r in requests if isinstance(r, ImageHistogram)]
        overlap_bins = [r.bins for r in requests if isinstance(r, OverlapHistogram)]
        grids = tuple(r.grid for r in requests if isinstance(r, BlockMoments))
        sides = [r.side for r in requests if isinstance(r, OverlapCells)]
        return cls(
            image_moments=any(isinstance(r, ImageMoments) for r in requests),
            image_bins=max(image_bins) if image_bins else None,
            overlaps=bool(overlap_bins or grids or sides)
            or any(isinstance(r, OverlapMoments) for r in requests),
            overlap_bins=max(overlap_bins) if overlap_bins else None,
            grids=grids,
            cell_side=min(sides) if sides else None,
        )

    @property
    def whole_images(self) -> bool:
        """Whether anything is measured over whole images."""
        return self.image_moments or self.image_bins is not None
