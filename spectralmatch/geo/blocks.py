"""A grid of equal blocks over the union extent of a collection, and surfaces on it."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from attrs import frozen
from rasterio import Affine

from .._typing import Bounds, Georeferenced
from ..errors import SpectralMatchWarning
from .grid import PixelGrid

#: Default number of blocks along an image's longer side.
BLOCKS_PER_IMAGE = 8

#: Rows of a window that :meth:`BlockGrid.correct_linear` corrects at once.
STRIP_ROWS = 64


@frozen
class BlockGrid:
    """A grid of ``rows`` x ``cols`` equal blocks, north-up, from (``left``, ``top``)."""

    left: float
    top: float
    block_width: float
    block_height: float
    rows: int
    cols: int

    @classmethod
    def covering(
        cls,
        images: Sequence[Georeferenced],
        block_size: int | None = None,
        n_blocks: int | None = None,
        canvas: Bounds | None = None,
    ) -> BlockGrid:
        """Square blocks over the union extent of ``images`` (north-up grids), or over
        ``canvas`` (a warning says when it does not contain the images).

        ``block_size`` is in pixels of the finest image; ``n_blocks`` is the number of
        blocks along the longer side of the extent; with neither, blocks are an eighth
        of the images' median longer side (about 8 x 8 blocks per image).
        """
        left, bottom, right, top = union_bounds([image.bounds for image in images])
        if canvas is not None:
            if not contains(canvas, (left, bottom, right, top)):
                warnings.warn(
                    f"the block canvas {tuple(canvas)} does not contain the images' extent "
                    f"{(left, bottom, right, top)}: pixels outside it take the values of the "
                    "nearest block",
                    SpectralMatchWarning,
                    stacklevel=4,
                )
            left, bottom, right, top = canvas
        longest = max(right - left, top - bottom)
        if n_blocks is not None:
            side = longest / n_blocks
        elif block_size is not None:
            pixel = min(min(abs(i.transform.a), abs(i.transform.e)) for i in images)
            side = min(block_size * pixel, longest)
        else:
            sides = [max(b[2] - b[0], b[3] - b[1]) for b in (i.bounds for i in images)]
            side = float(np.median(sides)) / BLOCKS_PER_IMAGE
        rows = math.ceil((top - bottom) / side - 1e-9)
        cols = math.ceil((right - left) / side - 1e-9)
        return cls(left, top, side, side, max(rows, 1), max(cols, 1))

    @property
    def size(self) -> int:
        return self.rows * self.cols

    @property
    def transform(self) -> Affine:
        """Affine transform of the grid as a raster (one pixel per block)."""
        from rasterio.transform import from_origin

        return from_origin(self.left, self.top, self.block_width, self.block_height)

    def cell_blocks(self, cells: PixelGrid) -> tuple[np.ndarray, np.ndarray]:
        """Block row of each row and block column of each column of ``cells``."""
        rows, cols = self._coordinates(cells)
        return (
            np.clip(np.floor(rows), 0, self.rows - 1).astype(int),
            np.clip(np.floor(cols), 0, self.cols - 1).astype(int),
        )

    def _coordinates(self, cells: PixelGrid) -> tuple[np.ndarray, np.ndarray]:
        """Centres of the rows and columns of ``cells`` in block units (0 at the grid's
        top-left corner); ``cells`` is north-up."""
        transform = cells.transform
        x = transform.c + transform.a * (np.arange(cells.width) + 0.5)
        y = transform.f + transform.e * (np.arange(cells.height) + 0.5)
        return (self.top - y) / self.block_height, (x - self.left) / self.block_width

    def blocks_near(self, bounds: Bounds) -> np.ndarray:
        """Flat indices, ascending, of the blocks ``bounds`` meets and of their neighbours:
        every block that a pixel or cell of an area within ``bounds`` falls in (a pixel
        straddling the area's edge included; those outside the grid fall in its edge
        blocks, as by :meth:`cell_blocks`)."""
        rows, cols = self.spans_near(bounds)
        return (rows[:, None] * self.cols + cols[None, :]).ravel()

    def spans_near(self, bounds: Bounds) -> tuple[np.ndarray, np.ndarray]:
        """The block rows and columns, ascending, of :meth:`blocks_near`."""
        left, bottom, right, top = bounds
        rows = self._span(
            (self.top - top) / self.block_height, (self.top - bottom) / self.block_height, self.rows
        )
        cols = self._span(
            (left - self.left) / self.block_width, (right - self.left) / self.block_width, self.cols
        )
        return rows, cols

    @staticmethod
    def _span(start: float, stop: float, size: int) -> np.ndarray:
        """Block positions from ``start`` to ``stop`` (in block units), one more each
        side, within ``[0, size)``."""
        first = min(max(math.floor(start) - 1, 0), size - 1)
        last = min(max(math.floor(stop) + 1, 0), size - 1)
        return np.arange(first, last + 1)

    def window_blocks(self, cells: PixelGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Blocks the cells touch: flat block indices and the first row and column of
        each block run in the cells."""
        block_rows, block_cols = self.cell_blocks(cells)
        row_starts = np.flatnonzero(np.diff(block_rows, prepend=-1))
        col_starts = np.flatnonzero(np.diff(block_cols, prepend=-1))
        index = block_rows[row_starts][:, None] * self.cols + block_cols[col_starts][None, :]
        return index.ravel(), row_starts, col_starts

    def interpolate(
        self, surfaces: Sequence[np.ndarray], cells: PixelGrid, origin: tuple[int, int] = (0, 0)
    ) -> list[np.ndarray]:
        """Bilinear interpolation of block-centre surfaces (bands, rows, cols) to ``cells``.

        The surfaces cover the grid, or a window of it whose first block is at ``origin``
        (row, column) that holds every block the cells' interpolation reads.

        Edges are clamped: cells beyond the outermost block centres take their values.
        Computed as ``W_rows @ (surface @ W_cols.T)`` restricted to the blocks the cells
        touch (the small product first), so no full-size grid is built but the result.
        The products are einsum's own loops, not BLAS: a multi-threaded BLAS called from
        every worker thread at once oversubscribes the cores (ten times slower), and its
        sums would depend on its number of threads.
        """
        row_weights, along_cols = self._along_columns(surfaces, cells, origin)
        return [
            np.einsum("ik,bkj->bij", row_weights.astype(part.dtype), part) for part in along_cols
        ]

    def correct_linear(
        self,
        values: np.ndarray,
        gain: np.ndarray,
        offset: np.ndarray,
        cells: PixelGrid,
        origin: tuple[int, int] = (0, 0),
    ) -> np.ndarray:
        """``values * gain + offset`` in place, ``gain`` and ``offset`` being block-centre
        surfaces (over the grid, or a window of it from ``origin``) interpolated to
        ``cells`` (the shape of ``values``) as by :meth:`interpolate`, to the same numbers.

        The surfaces are interpolated :data:`STRIP_ROWS` rows at a time, so that they
        stay in the processor's cache and in the heap: surfaces as large as the window
        were fresh memory in every window, each page zeroed by the kernel.
        """
        dtype = values.dtype
        row_weights, (gains, offsets) = self._along_columns(
            [gain.astype(dtype), offset.astype(dtype)], cells, origin
        )
        row_weights = row_weights.astype(dtype)
        for start in range(0, values.shape[1], STRIP_ROWS):
            rows = slice(start, start + STRIP_ROWS)
            # the block rows this strip's weights use (two, mostly, of the window's span):
            # the terms left out are zeros, which add nothing to the sums
            used = np.flatnonzero(row_weights[rows].any(axis=0))
            span = slice(used[0], used[-1] + 1)
            weights = row_weights[rows, span]
            values[:, rows] *= np.einsum("ik,bkj->bij", weights, gains[:, span])
            values[:, rows] += np.einsum("ik,bkj->bij", weights, offsets[:, span])
        return values

    def _along_columns(
        self, surfaces: Sequence[np.ndarray], cells: PixelGrid, origin: tuple[int, int]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The interpolation weights of the rows of ``cells`` (rows x blocks spanned),
        and each surface (from block ``origin``), over the blocks the cells span,
        interpolated along columns."""
        rows, cols = self._coordinates(cells)
        row_weights, row_span = _bilinear_weights(rows - 0.5, self.rows)
        col_weights, col_span = _bilinear_weights(cols - 0.5, self.cols)
        shape = surfaces[0].shape[-2:]
        row_span, col_span = (
            _within(row_span, origin[0], shape[0]),
            _within(col_span, origin[1], shape[1]),
        )
        along_cols = [
            np.einsum("bik,jk->bij", part, col_weights.astype(part.dtype))
            for part in (surface[:, row_span, col_span] for surface in surfaces)
        ]
        return row_weights, along_cols


@frozen(eq=False)
class BlockWindows:
    """Each image's window of a :class:`BlockGrid` (``first row, first column, rows,
    columns`` in blocks), laid end to end: values per image and block are one array of
    bands x :attr:`total`, each image's blocks row by row in its window.

    An image's window holds the blocks near it (:meth:`BlockGrid.blocks_near` of its
    bounds), so that the arrays grow with the images, not with the images times the
    mosaic's grid; :meth:`whole` gives every image the whole grid.
    """

    grid: BlockGrid
    windows: np.ndarray  # (n_images, 4) int

    @classmethod
    def near(cls, grid: BlockGrid, bounds: Sequence[Bounds]) -> BlockWindows:
        """Windows of the blocks near each of ``bounds``."""
        windows = []
        for box in bounds:
            near_rows, near_cols = grid.spans_near(box)
            rows = _two_at_least(near_rows, grid.rows)
            cols = _two_at_least(near_cols, grid.cols)
            windows.append((rows[0], cols[0], rows[1] - rows[0], cols[1] - cols[0]))
        return cls(grid, np.array(windows, dtype=int).reshape(-1, 4))

    @classmethod
    def whole(cls, grid: BlockGrid, n_images: int) -> BlockWindows:
        """The whole grid for each of ``n_images`` images."""
        return cls(grid, np.tile([0, 0, grid.rows, grid.cols], (n_images, 1)))

    @property
    def sizes(self) -> np.ndarray:
        """Blocks in each image's window."""
        return self.windows[:, 2] * self.windows[:, 3]

    @property
    def starts(self) -> np.ndarray:
        """Where each image's blocks start (and, last, :attr:`total`)."""
        return np.concatenate([[0], np.cumsum(self.sizes)]).astype(int)

    @property
    def total(self) -> int:
        return int(self.sizes.sum())

    def positions(self, images: np.ndarray, blocks: np.ndarray) -> np.ndarray:
        """Where block ``blocks[k]`` (a flat index of the grid) of image ``images[k]`` is.

        Raises
        ------
        ValueError
            If a block is outside its image's window.
        """
        images, blocks = np.broadcast_arrays(np.asarray(images), np.asarray(blocks))
        first_row, first_col, rows, cols = (self.windows[images, k] for k in range(4))
        row = blocks // self.grid.cols - first_row
        col = blocks % self.grid.cols - first_col
        if ((row < 0) | (row >= rows) | (col < 0) | (col >= cols)).any():
            raise ValueError("a block lies outside its image's window")
        return self.starts[images] + row * cols + col

    def of(self, values: np.ndarray, image: int) -> np.ndarray:
        """Image ``image``'s part of ``values`` (... x :attr:`total`), as (..., rows, cols)
        of its window (a view)."""
        start = self.starts[image]
        rows, cols = self.windows[image, 2:]
        return values[..., start : start + rows * cols].reshape(*values.shape[:-1], rows, cols)

    def placed(self, values: np.ndarray, image: int, fill: float = 0.0) -> np.ndarray:
        """Image ``image``'s part of ``values`` on the whole grid, ``fill`` elsewhere."""
        part = self.of(values, image)
        whole = np.full((*part.shape[:-2], self.grid.rows, self.grid.cols), fill, part.dtype)
        rows, cols = self.slices(image)
        whole[..., rows, cols] = part
        return whole

    def slices(self, image: int) -> tuple[slice, slice]:
        """The rows and columns of the grid in image ``image``'s window."""
        first_row, first_col, rows, cols = (int(v) for v in self.windows[image])
        return slice(first_row, first_row + rows), slice(first_col, first_col + cols)

    def select(self, images: Sequence[int]) -> BlockWindows:
        """The windows of ``images`` only (values: :meth:`take`)."""
        return BlockWindows(self.grid, self.windows[list(images)])

    def take(self, values: np.ndarray, images: Sequence[int]) -> np.ndarray:
        """The parts of ``values`` of ``images``, end to end (for :meth:`select`)."""
        starts = self.starts
        parts = [values[..., starts[i] : starts[i + 1]] for i in images]
        return np.concatenate([values[..., :0], *parts], axis=-1)


def positions_in(near: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """Where each of ``blocks`` (flat indices) is in ``near`` (ascending, from
    :meth:`BlockGrid.blocks_near`).

    Raises
    ------
    ValueError
        If a block is not in ``near``.
    """
    places = np.minimum(np.searchsorted(near, blocks), len(near) - 1)
    if len(blocks) and not np.array_equal(near[places], blocks):
        missing = sorted(set(np.asarray(blocks).tolist()) - set(near.tolist()))
        raise ValueError(f"blocks {missing[:5]} are not among the blocks near the overlap")
    return places


def _two_at_least(positions: np.ndarray, size: int) -> tuple[int, int]:
    """The span (start, stop) of ``positions`` in ``[0, size)``, widened to two where
    ``size`` allows: interpolation reads a block and the next even where the next
    weighs nothing (an image beyond the grid's edge)."""
    start, stop = int(positions.min()), int(positions.max()) + 1
    if stop - start < 2 and size >= 2:
        start, stop = (start, start + 2) if start + 2 <= size else (size - 2, size)
    return start, stop


def union_bounds(boxes: Sequence[Bounds]) -> Bounds:
    """The smallest bounds holding every one of ``boxes``."""
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def contains(outer: Bounds, inner: Bounds) -> bool:
    """Whether ``outer`` holds all of ``inner``."""
    return (
        outer[0] <= inner[0]
        and outer[1] <= inner[1]
        and outer[2] >= inner[2]
        and outer[3] >= inner[3]
    )


def _within(span: slice, origin: int, size: int) -> slice:
    """``span`` (of the grid) in a window of ``size`` blocks from ``origin``.

    Raises
    ------
    ValueError
        If the window does not hold the whole span.
    """
    start, stop = span.start - origin, span.stop - origin
    if start < 0 or stop > size:
        raise ValueError(
            f"blocks {span.start} to {span.stop - 1} are outside the surfaces' window "
            f"({origin} to {origin + size - 1})"
        )
    return slice(start, stop)


def _bilinear_weights(position: np.ndarray, size: int) -> tuple[np.ndarray, slice]:
    """Interpolation weights (cells x blocks spanned) and the span of blocks used."""
    position = np.clip(position, 0, size - 1)
    lower = np.minimum(np.floor(position).astype(int), max(size - 2, 0))
    upper = np.minimum(lower + 1, size - 1)
    fraction = position - lower
    first, last = lower.min(), upper.max()
    weights = np.zeros((len(position), last - first + 1))
    cells = np.arange(len(position))
    np.add.at(weights, (cells, lower - first), 1 - fraction)
    np.add.at(weights, (cells, upper - first), fraction)
    return weights, slice(first, last + 1)
