"""Block surfaces: each image's block values, blocks without data filled from their
neighbours."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from attrs import define

from ..geo.blocks import BlockWindows


def fill_from_neighbours(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Grow the ``known`` cells of a grid outwards, ring by ring: each unknown cell next
    to known ones takes the mean of its known 4-neighbours.

    ``values`` and ``known`` may hold a stack of grids (any leading axes, the grid in the
    last two): each grows from its own known cells, as if alone, and a grid with none
    stays 0.

    Each ring is found from the one before it, so the work is proportional to the
    number of cells, not to the cells times the rings (a mosaic of hundreds of images
    has a grid per image over the whole mosaic, each known in a small part of it).

    Examples
    --------
    >>> fill_from_neighbours(np.array([[1.0, 0.0, 0.0]]), np.array([[True, False, False]]))
    array([[1., 1., 1.]])
    """
    known = np.asarray(known, dtype=bool)
    filled = np.where(known, values, 0.0)
    flat, have = filled.reshape(-1), known.reshape(-1).copy()
    rows, cols = known.shape[-2:]
    ring, slots = np.flatnonzero(have), np.empty(have.size, dtype=np.intp)
    while True:
        ring = _unknown_neighbours(ring, have, slots, rows, cols)
        if not ring.size:
            return filled
        total, count = np.zeros(ring.size), np.zeros(ring.size)
        # the known neighbours above, below, left and right, added in that order
        for neighbour in _neighbours(ring, rows, cols):
            counted = have[neighbour]
            total += flat[neighbour] * counted
            count += counted
        flat[ring] = total / count
        have[ring] = True


def _neighbours(cells: np.ndarray, rows: int, cols: int) -> list[np.ndarray]:
    """Flat indices of the cells above, below, left and right of ``cells`` (flat indices
    into a stack of ``rows`` x ``cols`` grids); a cell on the grid's edge stands in for
    its missing neighbour."""
    row, col = (cells // cols) % rows, cells % cols
    return [
        np.where(row > 0, cells - cols, cells),
        np.where(row < rows - 1, cells + cols, cells),
        np.where(col > 0, cells - 1, cells),
        np.where(col < cols - 1, cells + 1, cells),
    ]


def _unknown_neighbours(
    cells: np.ndarray, have: np.ndarray, slots: np.ndarray, rows: int, cols: int
) -> np.ndarray:
    """The cells not in ``have`` next to any of ``cells``, each once (``slots``: scratch
    of ``have``'s size, where each cell notes its last place among the candidates)."""
    candidates = np.concatenate(_neighbours(cells, rows, cols))
    candidates = candidates[~have[candidates]]
    places = np.arange(candidates.size)
    slots[candidates] = places
    return candidates[slots[candidates] == places]


@define(eq=False)
class BlockSurfaces:
    """Each image's block values over its window of the block grid
    (:class:`~spectralmatch.geo.blocks.BlockWindows`), each field an array of
    bands x ``windows.total``.

    Attributes
    ----------
    windows : BlockWindows
    counts : ndarray
        Overlap pixels of the image in each block (summed over its overlaps); where
        there are none, the other fields are filled from the neighbouring blocks.
    local_means, shifts, spread_factors : ndarray
        ``m``, ``d`` and ``f`` of :class:`~spectralmatch.BlockMap` (filled).
    """

    windows: BlockWindows
    counts: np.ndarray
    local_means: np.ndarray
    shifts: np.ndarray
    spread_factors: np.ndarray

    FIELDS: ClassVar[tuple[str, ...]] = ("counts", "local_means", "shifts", "spread_factors")

    @classmethod
    def filled(
        cls,
        windows: BlockWindows,
        counts: np.ndarray,
        local_means: np.ndarray,
        shifts: np.ndarray,
        log_factors: np.ndarray,
        smoothing: float = 0.0,
    ) -> BlockSurfaces:
        """Surfaces from the values of the known blocks (``counts`` above 0), the others
        filled from their neighbours (:func:`fill_from_neighbours`), then smoothed by a
        Gaussian of ``smoothing`` blocks; spread factors from their logarithms.

        Filling within a window gives the numbers of filling the whole grid, to the bit,
        where the window is a rectangle that holds every known block of its image: ring
        by ring, no path to a cell of the window is shorter outside it. Smoothing reads
        beyond the window; with ``smoothing``, ``windows`` must cover the whole grid.

        Raises
        ------
        ValueError
            With ``smoothing`` and a window smaller than the grid.
        """
        whole = [0, 0, windows.grid.rows, windows.grid.cols]
        if smoothing > 0 and (windows.windows != whole).any():
            raise ValueError("smoothing reads beyond the windows: give each the whole grid")
        # the three fields filled at once, each grid of the stack as if alone
        means, moved, logs = _filled_windows(
            windows, np.stack([local_means, shifts, log_factors]), counts > 0, smoothing
        )
        return cls(windows, counts, means, moved, np.exp(logs))

    def origin(self, image: int) -> tuple[int, int]:
        """The grid block (row, column) of the first block of image ``image``'s window."""
        return int(self.windows.windows[image, 0]), int(self.windows.windows[image, 1])

    def of(self, field: str, image: int) -> np.ndarray:
        """Field ``field`` of image ``image`` over its window (bands, rows, cols)."""
        return self.windows.of(getattr(self, field), image)

    def select(self, images: Sequence[int]) -> BlockSurfaces:
        """The surfaces of ``images`` only, in that order."""
        parts = {name: self.windows.take(getattr(self, name), images) for name in self.FIELDS}
        return BlockSurfaces(self.windows.select(images), **parts)

    def extended(self, other: BlockSurfaces) -> BlockSurfaces:
        """These images' surfaces followed by ``other``'s (on the same grid)."""
        windows = BlockWindows(
            self.windows.grid, np.concatenate([self.windows.windows, other.windows.windows])
        )
        parts = {
            name: np.concatenate([getattr(self, name), getattr(other, name)], axis=-1)
            for name in self.FIELDS
        }
        return BlockSurfaces(windows, **parts)

    def on_whole_grid(self, field: str, images: Sequence[int] | None = None) -> np.ndarray:
        """Field ``field`` of ``images`` (default: all) over the whole grid (images,
        bands, rows, cols): each window's values, and beyond it what filling the whole
        grid from the image's known blocks gives."""
        images = range(len(self.windows.windows)) if images is None else images
        if field == "counts":
            return np.stack([self.windows.placed(self.counts, i) for i in images])
        inside = np.stack([self.windows.placed(getattr(self, field), i, np.nan) for i in images])
        known = np.stack([self.windows.placed(self.counts, i) > 0 for i in images])
        if field == "spread_factors":
            logs = np.log(np.where(known, inside, 1.0))
            beyond = np.exp(fill_from_neighbours(logs, known))
        else:
            beyond = fill_from_neighbours(np.where(known, inside, 0.0), known)
        return np.where(np.isnan(inside), beyond, inside)


def _filled_windows(
    windows: BlockWindows, values: np.ndarray, known: np.ndarray, smoothing: float
) -> np.ndarray:
    """``values`` (fields x bands x total) with each image's blocks not ``known`` (bands
    x total) filled, the images with windows of one shape filled together."""
    filled = np.empty_like(values, dtype=float)
    known = np.broadcast_to(known, values.shape)
    shapes = [tuple(shape) for shape in windows.windows[:, 2:].tolist()]
    for shape in dict.fromkeys(shapes):
        images = [i for i, other in enumerate(shapes) if other == shape]
        stack = fill_from_neighbours(
            np.stack([windows.of(values, i) for i in images]),
            np.stack([windows.of(known, i) for i in images]),
        )
        if smoothing > 0:
            from scipy import ndimage

            for index in np.ndindex(stack.shape[:-2]):
                stack[index] = ndimage.gaussian_filter(stack[index], smoothing, mode="nearest")
        for k, image in enumerate(images):
            windows.of(filled, image)[...] = stack[k]
    return filled
