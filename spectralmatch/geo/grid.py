"""One pixel-grid type, and the window arithmetic everything else builds on."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

from attrs import frozen
from rasterio import Affine
from rasterio.windows import Window, from_bounds
from rasterio.windows import bounds as window_bounds
from rasterio.windows import transform as window_transform

from .._typing import Bounds

_EPSILON = 1e-6


@frozen
class PixelGrid:
    """``height`` x ``width`` pixels placed by an affine ``transform``.

    The grid of an image, of a window of it, or of a decimated read spanning a window:
    whatever a mask, a block surface or a resampled read needs to know about where the
    cells of an array lie.

    Examples
    --------
    >>> grid = PixelGrid.from_bounds((0.0, 0.0, 40.0, 20.0), width=4, height=2)
    >>> grid.transform.a, grid.shape
    (10.0, (2, 4))
    """

    transform: Affine
    width: int
    height: int

    @classmethod
    def from_bounds(cls, bounds: Bounds, width: int, height: int) -> PixelGrid:
        """A north-up grid of ``width`` x ``height`` cells spanning ``bounds``."""
        from rasterio.transform import from_bounds as transform_from_bounds

        return cls(transform_from_bounds(*bounds, width, height), int(width), int(height))

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""
        return self.height, self.width

    @property
    def bounds(self) -> Bounds:
        """(left, bottom, right, top) in CRS units."""
        return window_bounds(Window(0, 0, self.width, self.height), self.transform)

    @property
    def envelope(self) -> Bounds:
        """(left, bottom, right, top) of the four corners: the bounds also of a rotated
        or sheared grid."""
        corners = [
            self.transform @ (col, row) for col in (0, self.width) for row in (0, self.height)
        ]
        xs, ys = zip(*corners, strict=True)
        return min(xs), min(ys), max(xs), max(ys)

    @property
    def pixel_size(self) -> tuple[float, float]:
        """(x, y) size of a pixel along its columns and rows, also of a rotated grid."""
        a, b, _, d, e, _ = self.transform[:6]
        return math.hypot(a, d), math.hypot(b, e)

    def window_grid(self, window: Window) -> PixelGrid:
        """The grid of the pixels of ``window``."""
        return PixelGrid(
            window_transform(window, self.transform), int(window.width), int(window.height)
        )

    def resampled(self, shape: tuple[int, int]) -> PixelGrid:
        """The same extent in ``shape`` cells (a decimated or enlarged read)."""
        scale = Affine.scale(self.width / shape[1], self.height / shape[0])
        return PixelGrid(self.transform @ scale, shape[1], shape[0])

    def inner_window(self, bounds: Bounds) -> Window | None:
        """The whole pixels inside ``bounds`` (edges snapped within 1e-6 px), or None."""
        exact = from_bounds(*bounds, transform=self.transform)
        col_start = max(_snap(exact.col_off, math.ceil), 0)
        row_start = max(_snap(exact.row_off, math.ceil), 0)
        col_stop = min(_snap(exact.col_off + exact.width, math.floor), self.width)
        row_stop = min(_snap(exact.row_off + exact.height, math.floor), self.height)
        if col_stop <= col_start or row_stop <= row_start:
            return None
        return Window(col_start, row_start, col_stop - col_start, row_stop - row_start)

    def windows(self, size: int) -> Iterator[Window]:
        """Square windows of at most ``size`` pixels covering the grid, row by row."""
        return split_window(Window(0, 0, self.width, self.height), size)


def common_grid(grids: Sequence[PixelGrid]) -> PixelGrid | None:
    """The grid over the union of ``grids`` of which each is a window, or None.

    That is so when they are north-up with the same pixel size and their origins lie
    whole pixels apart (within 1e-6 px): images cut from one product's grid, or aligned.

    Examples
    --------
    >>> from rasterio.transform import from_origin
    >>> a = PixelGrid(from_origin(0, 100, 10, 10), 4, 4)
    >>> b = PixelGrid(from_origin(20, 80, 10, 10), 4, 4)
    >>> common_grid([a, b]).shape, common_grid([a, b]).transform.c
    ((6, 6), 0.0)
    >>> common_grid([a, PixelGrid(from_origin(5, 80, 10, 10), 4, 4)]) is None
    True
    """
    first = grids[0].transform
    if not all(is_north_up(grid.transform) for grid in grids):
        return None
    if any(
        not math.isclose(grid.transform.a, first.a, rel_tol=1e-9)
        or not math.isclose(grid.transform.e, first.e, rel_tol=1e-9)
        for grid in grids
    ):
        return None
    left = min(grid.transform.c for grid in grids)
    top = max(grid.transform.f for grid in grids)
    origin = Affine(first.a, 0.0, left, 0.0, first.e, top)
    offsets = [(~origin) @ (grid.transform.c, grid.transform.f) for grid in grids]
    if any(abs(v - round(v)) > _EPSILON for offset in offsets for v in offset):
        return None
    width = max(round(col) + grid.width for (col, _), grid in zip(offsets, grids, strict=True))
    height = max(round(row) + grid.height for (_, row), grid in zip(offsets, grids, strict=True))
    return PixelGrid(origin, width, height)


def offset_in(grid: PixelGrid, part: PixelGrid) -> tuple[int, int]:
    """(column, row) of ``part``'s first pixel in ``grid`` (a window of it)."""
    col, row = (~grid.transform) @ (part.transform.c, part.transform.f)
    return round(col), round(row)


def shifted(window: Window, columns: int, rows: int) -> Window:
    """``window`` moved by ``columns`` and ``rows``."""
    return Window(window.col_off + columns, window.row_off + rows, window.width, window.height)


def split_window(window: Window, size: int) -> Iterator[Window]:
    """Windows of at most ``size`` x ``size`` pixels covering ``window``, row by row."""
    for row in range(0, int(window.height), size):
        for col in range(0, int(window.width), size):
            yield Window(
                window.col_off + col,
                window.row_off + row,
                min(size, window.width - col),
                min(size, window.height - row),
            )


def intersect(a: Window, b: Window) -> Window | None:
    """The pixels both windows hold, or None."""
    col = max(a.col_off, b.col_off)
    row = max(a.row_off, b.row_off)
    col_stop = min(a.col_off + a.width, b.col_off + b.width)
    row_stop = min(a.row_off + a.height, b.row_off + b.height)
    if col_stop <= col or row_stop <= row:
        return None
    return Window(col, row, col_stop - col, row_stop - row)


def local_slices(part: Window, window: Window) -> tuple[slice, slice]:
    """Row and column slices of ``part`` in an array holding ``window``."""
    row = int(part.row_off - window.row_off)
    col = int(part.col_off - window.col_off)
    return slice(row, row + int(part.height)), slice(col, col + int(part.width))


def is_north_up(transform: Affine) -> bool:
    """No rotation and rows going south."""
    return transform.b == 0 and transform.d == 0 and transform.e < 0


def _snap(value: float, rounding: Callable[[float], float]) -> int:
    nearest = round(value)
    return int(nearest) if abs(value - nearest) < _EPSILON else int(rounding(value))
