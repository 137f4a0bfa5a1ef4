"""Small cells over an overlap, nested in the block grids of the local step.

Both images of an overlap accumulate their pixels per cell of the same :class:`CellGrid`
(a pixel belongs to the cell holding its centre), so the cells of the two sides match
one to one. The cells' edges include every block edge of the given block grids, so that
each cell lies in one block and block statistics can be recomposed from cells exactly.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from attrs import define

from .._typing import Bounds
from .blocks import BlockGrid
from .grid import PixelGrid


@define(eq=False)
class CellGrid:
    """A rectilinear grid over ``bounds``: column edges ``xs`` (increasing) and row
    edges ``ys`` (decreasing, from the top)."""

    xs: np.ndarray
    ys: np.ndarray

    @classmethod
    def over(cls, bounds: Bounds, side: float, grids: Sequence[BlockGrid] = ()) -> CellGrid:
        """Cells of about ``side`` CRS units over ``bounds``, split on every block edge
        of ``grids`` (one shared, read-only grid per overlap: a fit asks for each
        overlap's cells several times)."""
        return _cell_grid(tuple(bounds), side, tuple(grids))

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.ys) - 1, len(self.xs) - 1

    @property
    def size(self) -> int:
        return (len(self.ys) - 1) * (len(self.xs) - 1)

    def pixel_cells(self, pixels: PixelGrid) -> tuple[np.ndarray, np.ndarray]:
        """Cell row of each row and cell column of each column of ``pixels`` (north-up),
        by the pixels' centres."""
        transform = pixels.transform
        x = transform.c + transform.a * (np.arange(pixels.width) + 0.5)
        y = transform.f + transform.e * (np.arange(pixels.height) + 0.5)
        cols = np.searchsorted(self.xs, x, side="right") - 1
        rows = np.searchsorted(-self.ys, -y, side="right") - 1
        return np.clip(rows, 0, self.shape[0] - 1), np.clip(cols, 0, self.shape[1] - 1)

    def runs(self, pixels: PixelGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cells the pixels fall in: flat cell indices and the first row and column of
        each run of pixels in one cell (as :meth:`BlockGrid.window_blocks`)."""
        rows, cols = self.pixel_cells(pixels)
        row_starts = np.flatnonzero(np.diff(rows, prepend=-1))
        col_starts = np.flatnonzero(np.diff(cols, prepend=-1))
        index = rows[row_starts][:, None] * self.shape[1] + cols[col_starts][None, :]
        return index.ravel(), row_starts, col_starts

    def block_index(self, grid: BlockGrid) -> np.ndarray:
        """Flat index in ``grid`` of the block holding each cell (by the cell's centre)."""
        x = (self.xs[:-1] + self.xs[1:]) / 2
        y = (self.ys[:-1] + self.ys[1:]) / 2
        cols = np.clip(np.floor((x - grid.left) / grid.block_width), 0, grid.cols - 1)
        rows = np.clip(np.floor((grid.top - y) / grid.block_height), 0, grid.rows - 1)
        return (rows[:, None] * grid.cols + cols[None, :]).astype(int).ravel()


@functools.lru_cache(maxsize=1024)
def _cell_grid(bounds: Bounds, side: float, grids: tuple[BlockGrid, ...]) -> CellGrid:
    left, bottom, right, top = bounds
    xs = [np.arange(left, right, side), [right]]
    ys = [np.arange(top, bottom, -side), [bottom]]
    for grid in grids:
        xs.append(grid.left + grid.block_width * np.arange(1, grid.cols))
        ys.append(grid.top - grid.block_height * np.arange(1, grid.rows))
    cells = CellGrid(_edges(xs, left, right, side), _edges(ys, bottom, top, side)[::-1])
    cells.xs.flags.writeable = cells.ys.flags.writeable = False
    return cells


def _edges(parts: list, low: float, high: float, side: float) -> np.ndarray:
    """Sorted edges within [low, high], without slivers narrower than a thousandth of a
    cell."""
    edges = np.unique(np.clip(np.concatenate(parts), low, high))
    keep = np.diff(edges, prepend=-np.inf) > side * 1e-3
    keep[-1] = True
    edges = edges[keep]
    edges[0], edges[-1] = low, high
    return edges
