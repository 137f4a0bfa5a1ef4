"""Local block adjustment: smooth per-pixel corrections from a grid of block statistics."""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Iterator, Sequence
from functools import reduce
from pathlib import Path
from typing import Any, ClassVar, get_args

import numpy as np
from attrs import asdict, define
from rasterio.windows import Window

from .._typing import Bounds, Correction
from .._validation import (
    NON_NEGATIVE,
    NONE,
    POSITIVE_INTEGER,
    AnyOf,
    Constraint,
    Extent,
    Interval,
    Options,
    References,
)
from ..errors import SpectralMatchError, SpectralMatchWarning
from ..geo.blocks import BlockGrid, BlockWindows
from ..geo.grid import is_north_up
from ..raster.collection import ImageCollection
from ..raster.image import Image
from ..raster.write import write_raster
from ..stats.moments import Moments
from ..stats.overlap import OverlapStatistics, PairMoments
from ..stats.requests import BlockMoments, ImageMoments, Request
from .adjuster import Adjuster, warn_left_unchanged
from .base import check_is_fitted, reference_indices
from .persistence import StateError, state_array, state_names
from .surface import BlockSurfaces

CORRECTIONS: tuple[Correction, ...] = get_args(Correction)
_MAX_RATIO = 10.0
#: A block's spread in an image at or below this fraction of the band's spread over all
#: the overlaps is degenerate (flat), as is that of a block mostly at the image's least or
#: greatest value (clipped, saturated): the overlap sets no spread factor there.
MIN_RELATIVE_SPREAD = 0.05
#: Spread factors are bounded to [1 / MAX_SPREAD_FACTOR, MAX_SPREAD_FACTOR].
MAX_SPREAD_FACTOR = 2.0


class BlockMap(Adjuster):
    """Local block adjustment: a smooth correction field per image from block overlaps.

    A grid of blocks covers the union extent of the collection. For every overlapping
    pair and block the means and standard deviations of both images over their jointly
    valid pixels (as corrected by the steps before) are measured. In each block, the
    images that overlap there get a shift ``d`` of their mean (and a factor ``f`` of
    their spread) by least squares, so that every pair agrees in that block; the shifts
    are count-weighted to sum to zero (the block keeps its average brightness), or are
    zero for reference images. ``m`` is an image's mean over its overlaps in the block.
    Blocks where an image overlaps nothing are filled from their neighbours, ring by
    ring outwards from the blocks where it does. The block values are interpolated
    bilinearly between block centres to every pixel, and each pixel is corrected:

    - ``offset``: ``x + d``
    - ``gain``: ``p + (x - p) * (m + d - p) / (m - p)``
    - ``gamma``: ``p + r * ((x - p) / r) ** (ln((m + d - p) / r) / ln((m - p) / r))``
    - ``wallis``: ``m + d + (x - m) * f``

    where ``p`` is 0 for non-negative data (just below the collection's minimum when it
    has negative values) and ``r`` spans the collection's range above ``p``. Ratios are
    bounded to [1/10, 10], so zeros, negative values and empty blocks never produce NaN
    or inf. With ``alpha`` below 1, ``d`` is ``alpha * d`` and ``f`` is
    ``1 + alpha * (f - 1)`` in these formulas.

    Where an image's spread in a block is degenerate, that overlap sets no spread factor
    in the block: there ``wallis`` falls back to a shift (``f = 1``) unless another
    overlap sets one. Degenerate is at most ``MIN_RELATIVE_SPREAD`` (5 %) of the band's
    spread over all the overlaps (flat), or a block mean within one standard deviation
    of the image's least or greatest value (more than half of the pixels clipped or
    saturated there). Spread factors are bounded to [1/2, 2] (``MAX_SPREAD_FACTOR``).

    Images with no overlap of ``min_pixels`` jointly valid pixels are left unchanged, and
    when no block of any overlap has ``min_pixels`` the step changes nothing; a warning
    says so.

    Parameters
    ----------
    block_size : int, optional
        Block side in pixels of the finest image. Default: an eighth of the images'
        median longer side (about 8 x 8 blocks per image), unless ``n_blocks`` is set.
    n_blocks : int, optional
        Number of blocks along the longer side of the union extent (instead of
        ``block_size``).
    correction : {"wallis", "offset", "gain", "gamma"}, default "wallis"
        Wallis matches the spread as well as the mean, which also removes the contrast
        differences a multiplicative haze or illumination field leaves; it scored best
        on the benchmark (docs/benchmarks.md).
    min_pixels : int, default 100
        Overlaps with fewer jointly valid pixels in a block are not used there (a
        warning says when that leaves no block at all: make the blocks larger).
    smoothing : float, default 0.0
        Standard deviation, in blocks, of a Gaussian filter applied to the block values.
    reference : sequence of str or int, optional
        Reference images: left unchanged, the others are brought to them where they
        overlap. Default: none (all images are adjusted).
    alpha : float, default 1.0
        How far each block is brought from its local mean and spread towards the ones it
        is matched to: its target is ``alpha`` x the matched value plus ``1 - alpha`` x
        its own (0 leaves the images unchanged, 1 corrects fully). For the offset, gain
        and wallis corrections this is the same as blending each corrected pixel with
        the input, ``alpha * x' + (1 - alpha) * x`` (up to the bounds on ratios); for
        gamma the exponent moves from 1 towards the full one.
    canvas : (left, bottom, right, top), optional
        Lay the block grid over these bounds (in the images' CRS) instead of the union
        of the images: a canvas larger than today's images keeps the grid when images
        added later fall inside it (``Mosaic.transform`` of new scenes). Pixels outside
        it take the values of the nearest block (a warning says so).

    Attributes
    ----------
    grid_ : BlockGrid
    images_ : list of str
    surfaces_ : BlockSurfaces
        What the correction uses: each image's values over the blocks near it (its
        window of the grid), so that the model grows with the images, not with the
        images times the mosaic's grid (with ``smoothing``, over the whole grid).
    local_means_ : ndarray (n_images, n_bands, rows, cols)
        ``m``: each image's mean over its overlaps per block (filled).
    shifts_, spread_factors_ : ndarray (n_images, n_bands, rows, cols)
        ``d`` and ``f`` per image and block (filled).
    counts_ : ndarray (n_images, n_bands, rows, cols)
        Overlap pixels of each image in each block (summed over its overlaps).
    pivot_, range_ : ndarray (n_bands,)
        ``p`` and ``r`` of the gain and gamma corrections.

    The whole-grid arrays are built from ``surfaces_`` when read (each window's
    numbers, and beyond it the filling from the image's known blocks).

    Examples
    --------
    >>> from spectralmatch import GlobalModel, Mosaic
    >>> model = Mosaic(steps=[GlobalModel(), BlockMap(block_size=64)]).fit("data/")
    >>> model.steps_[1].shifts_.shape
    (4, 3, 10, 10)
    """

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "block_size": AnyOf((NONE, POSITIVE_INTEGER)),
        "n_blocks": AnyOf((NONE, POSITIVE_INTEGER)),
        "correction": Options(CORRECTIONS),
        "min_pixels": POSITIVE_INTEGER,
        "smoothing": NON_NEGATIVE,
        "reference": References(),
        "alpha": Interval(0, 1),
        "canvas": AnyOf((NONE, Extent())),
    }

    def __init__(
        self,
        *,
        block_size: int | None = None,
        n_blocks: int | None = None,
        correction: Correction = "wallis",
        min_pixels: int = 100,
        smoothing: float = 0.0,
        reference: Sequence[str | int] | str | int | None = None,
        alpha: float = 1.0,
        canvas: Bounds | None = None,
    ) -> None:
        self.block_size = block_size
        self.n_blocks = n_blocks
        self.correction = correction
        self.min_pixels = min_pixels
        self.smoothing = smoothing
        self.reference = reference
        self.alpha = alpha
        self.canvas = canvas

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.block_size is not None and self.n_blocks is not None:
            raise SpectralMatchError("BlockMap: give either block_size or n_blocks, not both")

    def requests(self, collection: ImageCollection) -> list[Request]:
        """Whole-image moments, and the overlaps' moments per block of a grid laid over
        the union extent of ``collection``."""
        self._validate_params()
        for image in collection:
            if not is_north_up(image.transform):
                raise SpectralMatchError(
                    f"{image.path}: rotated or south-up grids are not supported by BlockMap; "
                    "warp the image north-up first"
                )
        grid = BlockGrid.covering(collection.images, self.block_size, self.n_blocks, self.canvas)
        return [ImageMoments(), BlockMoments(grid)]

    def new_image_requests(self, collection: ImageCollection) -> list[Request]:
        """The fitted grid's block moments (and whole-image moments)."""
        check_is_fitted(self, "grid_")
        return [ImageMoments(), BlockMoments(self.grid_)]

    # ---------------------------------------------------------------- fit

    def fit(self, statistics: OverlapStatistics) -> BlockMap:
        """Solve the per-block shifts and spread factors of every image (of the
        statistics of :meth:`requests`, or of images)."""
        self._validate_params()
        statistics = self._statistics(statistics)
        grids = statistics.block_grids
        if len(grids) != 1:
            raise SpectralMatchError(
                f"BlockMap.fit needs the block statistics of one grid, got {len(grids)}"
            )
        self.grid_, self.crs_ = grids[0], statistics.crs
        names = statistics.names
        fixed = np.zeros(len(names), dtype=bool)
        fixed[sorted(reference_indices(self.reference, names))] = True
        windows = self._windows(statistics, range(len(names)))
        overlaps = _BlockOverlaps.gather(statistics, windows, self.min_pixels)
        self._warn_unused(statistics, overlaps, fixed)
        shifts = overlaps.solve(overlaps.means, overlaps.pair_counts, fixed)
        log_factors = overlaps.solve(overlaps.log_stds, overlaps.spread_counts, fixed)
        self.images_ = list(names)
        self.reference_ = [name for name, is_fixed in zip(names, fixed, strict=True) if is_fixed]
        self.surfaces_ = self._surfaces(
            windows, overlaps.counts, overlaps.local_means(), shifts, log_factors
        )
        low, high = _extremes(statistics)
        self.pivot_ = np.where(low >= 0, 0.0, low - 0.01 * (high - low))
        self.range_ = np.maximum(high - self.pivot_, 1e-12)
        return self

    def _warn_unused(
        self, statistics: OverlapStatistics, overlaps: _BlockOverlaps, fixed: np.ndarray
    ) -> None:
        """Warn about images without a usable overlap, and when no block is usable."""
        usable = [p for p in statistics.pairs if p.first.count.min() >= self.min_pixels]
        linked = {index for pair in usable for index in (pair.edge.first, pair.edge.second)}
        alone = [
            name
            for index, name in enumerate(statistics.names)
            if index not in linked and not fixed[index]
        ]
        if alone:
            warn_left_unchanged(alone)
        if usable and not overlaps.pair_counts.any():
            sides = [pair.near_blocks[self.grid_] for pair in usable]
            largest = max(int(np.minimum(a.count, b.count).max()) for a, b in sides)
            size = (
                f"block_size={self.block_size} px"
                if self.block_size is not None
                else f"blocks of {self.grid_.block_width:g} CRS units"
            )
            warnings.warn(
                f"BlockMap: no block of any overlap has min_pixels={self.min_pixels} "
                f"jointly valid pixels (at most {largest}, {size}), so the local step "
                "changes nothing; use a larger block_size",
                SpectralMatchWarning,
                stacklevel=3,
            )

    def _windows(self, statistics: OverlapStatistics, images: Sequence[int]) -> BlockWindows:
        """The windows of the grid that ``images`` get: the blocks near each (the whole
        grid with ``smoothing``, which reads beyond them, or without their bounds)."""
        if self.smoothing > 0 or not statistics.bounds:
            return BlockWindows.whole(self.grid_, len(images))
        return BlockWindows.near(self.grid_, [statistics.bounds[i] for i in images])

    def _surfaces(self, windows, counts, local_means, shifts, log_factors) -> BlockSurfaces:
        bound = np.log(MAX_SPREAD_FACTOR)
        return BlockSurfaces.filled(
            windows,
            counts,
            local_means,
            shifts,
            np.clip(log_factors, -bound, bound),
            self.smoothing,
        )

    def fit_new(self, statistics: OverlapStatistics, names: list[str]) -> None:
        """Shifts and factors of new images against the frozen, corrected fitted images."""
        check_is_fitted(self, "surfaces_")
        position = {name: k for k, name in enumerate(self.images_)}
        fitted = np.array([name in position for name in statistics.names])
        new = [statistics.names.index(name) for name in names]
        # the fitted images keep their windows (and values); the new ones get theirs
        frozen = self.surfaces_.select([position.get(name, 0) for name in statistics.names])
        windows = frozen.windows.windows.copy()
        windows[new] = self._windows(statistics, new).windows
        frame = BlockWindows(self.grid_, windows)
        overlaps = _BlockOverlaps.gather(statistics, frame, self.min_pixels)
        frozen_shifts = _fitted_values(frozen.shifts, frozen.windows, frame, fitted)
        frozen_logs = _fitted_values(np.log(frozen.spread_factors), frozen.windows, frame, fitted)
        shifts = overlaps.solve(overlaps.means, overlaps.pair_counts, fitted, frozen_shifts)
        log_factors = overlaps.solve(overlaps.log_stds, overlaps.spread_counts, fitted, frozen_logs)
        added = self._surfaces(
            frame.select(new),
            frame.take(overlaps.counts, new),
            frame.take(overlaps.local_means(), new),
            frame.take(shifts, new),
            frame.take(log_factors, new),
        )
        self.surfaces_ = self.surfaces_.extended(added)
        self.images_ += names

    @property
    def counts_(self) -> np.ndarray:
        return self._on_whole_grid("counts")

    @property
    def local_means_(self) -> np.ndarray:
        return self._on_whole_grid("local_means")

    @property
    def shifts_(self) -> np.ndarray:
        return self._on_whole_grid("shifts")

    @property
    def spread_factors_(self) -> np.ndarray:
        return self._on_whole_grid("spread_factors")

    def _on_whole_grid(self, field: str) -> np.ndarray:
        check_is_fitted(self, "surfaces_")
        return self.surfaces_.on_whole_grid(field)

    # ---------------------------------------------------------------- transform

    def transform_window(
        self, image: Image, window: Window, values: np.ndarray, valid: np.ndarray
    ) -> np.ndarray:
        """Correct each pixel by its interpolated block values."""
        check_is_fitted(self, "surfaces_")
        if image.name in self.reference_:
            return values
        row = self._image_row(image.name)
        dtype = values.dtype
        cells = image.grid.window_grid(window).resampled(values.shape[1:])
        origin = self.surfaces_.origin(row)
        local_means, shifts = (self.surfaces_.of(f, row) for f in ("local_means", "shifts"))
        if self.correction == "gamma":
            local, target = self.grid_.interpolate(
                [surface.astype(dtype) for surface in self._means_and_targets(local_means, shifts)],
                cells,
                origin,
            )
            return _gamma(
                values,
                local,
                target,
                self.pivot_.astype(dtype)[:, None, None],
                self.range_.astype(dtype)[:, None, None],
            )
        factors = self.surfaces_.of("spread_factors", row)
        fields = self._linear_fields(local_means, shifts, factors)
        return self.grid_.correct_linear(values, *fields, cells, origin)

    def for_image(self, name: str) -> BlockMap:
        """A copy with image ``name``'s surfaces only, what a transform task needs.

        A subclass gets itself back unless it overrides this: state of its own, kept per
        image, would otherwise be looked up at the wrong row."""
        if type(self) is not BlockMap:
            return self
        row = self._image_row(name)
        one = copy.copy(self)
        one.images_ = [name]
        one.surfaces_ = self.surfaces_.select([row])
        return one

    def block_gains_offsets(
        self, name: str, *, near: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per band and block, the gain and offset of ``x' = gain * x + offset`` by which
        image ``name`` is corrected (between blocks they are interpolated); 1 and 0 for
        a reference image.

        Parameters
        ----------
        name : str
        near : bool, default False
            Only over the blocks near the image (``surfaces_``' window of it, which
            holds every block its correction reads), instead of the whole grid.

        Returns
        -------
        gains, offsets : ndarray (n_bands, rows, cols)
            Of the grid, or of the window with ``near``.

        Raises
        ------
        SpectralMatchError
            For the gamma correction (not a gain and an offset), or an unknown image.
        """
        check_is_fitted(self, "surfaces_")
        if self.correction == "gamma":
            raise SpectralMatchError(
                f"BlockMap: the gamma correction of {name} has no gain and offset per block"
            )
        row = self._image_row(name)
        fields = ("local_means", "shifts", "spread_factors")
        if near:
            local, shifts, factors = (self.surfaces_.of(field, row) for field in fields)
        else:
            local, shifts, factors = (self.surfaces_.on_whole_grid(f, [row])[0] for f in fields)
        if name in self.reference_:
            return np.ones_like(shifts), np.zeros_like(shifts)
        return self._linear_fields(local, shifts, factors)

    def _linear_fields(
        self, local: np.ndarray, shifts: np.ndarray, factors: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Block values of ``F`` and ``G`` in ``x' = F * x + G`` (offset, gain, wallis),
        from an image's local means, shifts and spread factors."""
        shift = self.alpha * shifts
        if self.correction == "offset":
            return np.ones_like(shift), shift
        if self.correction == "gain":
            pivot = self.pivot_[:, None, None]
            gain = _bounded_ratio(local + shift - pivot, local - pivot)
            return gain, pivot * (1 - gain)
        factor = np.clip(factors, 1 / MAX_SPREAD_FACTOR, MAX_SPREAD_FACTOR)
        gain = 1 + self.alpha * (factor - 1)
        return gain, local + shift - gain * local

    def _means_and_targets(
        self, local: np.ndarray, shifts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Block values of the local mean and the mean it is brought to, ``m + alpha * d``."""
        return local, local + self.alpha * shifts

    # ---------------------------------------------------------------- state

    def get_state(self) -> dict[str, Any]:
        check_is_fitted(self, "surfaces_")
        crs = self.crs_.to_wkt() if self.crs_ else None
        surfaces = {name: getattr(self.surfaces_, name) for name in BlockSurfaces.FIELDS}
        return {
            "grid": asdict(self.grid_),
            "crs": crs,
            "images": self.images_,
            "reference": self.reference_,
            "pivot": self.pivot_.tolist(),
            "range": self.range_.tolist(),
            "windows": self.surfaces_.windows.windows,
            **surfaces,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        grid = _grid_from_state(state)
        images = state_names(state, "images")
        reference = state_names(state, "reference")
        pivot = state_array(state, "pivot", 1)
        range_ = state_array(state, "range", 1, pivot.shape)
        surfaces = _surfaces_from_state(state, grid, len(images), len(pivot))
        if not set(reference) <= set(images):
            raise StateError("reference", "names images the model does not hold")
        for name, values in (("range", range_), ("spread_factors", surfaces.spread_factors)):
            if (values <= 0).any():
                raise StateError(name, "must be positive")
        self.grid_, self.crs_ = grid, _crs_from_state(state)
        self.images_, self.reference_, self.pivot_, self.range_ = images, reference, pivot, range_
        self.surfaces_ = surfaces

    def to_rasters(self, folder: str | os.PathLike) -> list[Path]:
        """Write the block surfaces as GeoTIFFs (one pixel per block) for inspection.

        Per image, ``<image>_local.tif`` holds its block means ``m`` and
        ``<image>_reference.tif`` the means it is brought to, ``m + alpha * d``, as
        filled and used by the correction; one band per image band.
        """
        check_is_fitted(self, "surfaces_")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for row, name in enumerate(self.images_):
            local, shifts = (
                self.surfaces_.on_whole_grid(field, [row])[0] for field in ("local_means", "shifts")
            )
            for kind, surface in zip(
                ("local", "reference"), self._means_and_targets(local, shifts), strict=True
            ):
                written.append(self.write_surface(folder / f"{name}_{kind}.tif", surface))
        return written

    def write_surface(self, path: str | os.PathLike, surface: np.ndarray) -> Path:
        """Write ``surface`` (bands, rows, cols of the block grid; NaN where unknown) as a
        float32 GeoTIFF on the block grid, atomically."""
        check_is_fitted(self)
        profile = {
            "driver": "GTiff",
            "width": self.grid_.cols,
            "height": self.grid_.rows,
            "count": surface.shape[0],
            "dtype": "float32",
            "transform": self.grid_.transform,
            "crs": self.crs_,
            "nodata": float("nan"),
        }
        window = Window(0, 0, self.grid_.cols, self.grid_.rows)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_raster(path, profile, [(window, surface.astype("float32"), None)])


def _fitted_values(
    values: np.ndarray, windows: BlockWindows, frame: BlockWindows, fitted: np.ndarray
) -> np.ndarray:
    """``values`` of the ``fitted`` images (over ``windows``, which ``frame`` keeps for
    them) laid out on ``frame``; 0 for the others."""
    placed = np.zeros((values.shape[0], frame.total))
    for image in np.flatnonzero(fitted).tolist():
        frame.of(placed, image)[...] = windows.of(values, image)
    return placed


def _extremes(statistics: OverlapStatistics) -> tuple[np.ndarray, np.ndarray]:
    """Per band, the least and greatest value of all images."""
    lows, highs = [], []
    for moments in statistics.images:
        if moments is not None and moments.minimum is not None and moments.maximum is not None:
            lows.append(moments.minimum)
            highs.append(moments.maximum)
    return np.min(lows, axis=0), np.max(highs, axis=0)


def _grid_from_state(state: dict[str, Any]) -> BlockGrid:
    value = state.get("grid")
    names = ("left", "top", "block_width", "block_height", "rows", "cols")
    if not isinstance(value, dict) or set(value) != set(names):
        raise StateError("grid", f"expected an object with {', '.join(names)}")
    left, top, width, height = (
        float(state_array(value, name, 0))
        for name in ("left", "top", "block_width", "block_height")
    )
    rows, cols = value["rows"], value["cols"]
    if min(width, height) <= 0 or not all(isinstance(n, int) and n >= 1 for n in (rows, cols)):
        raise StateError("grid", "block sizes must be positive and rows, cols whole numbers")
    return BlockGrid(left, top, width, height, rows, cols)


def _surfaces_from_state(
    state: dict[str, Any], grid: BlockGrid, n_images: int, n_bands: int
) -> BlockSurfaces:
    """The surfaces of a saved BlockMap: per image over its window (``windows``), or, in
    files of format 1, over the whole grid."""
    if "windows" not in state:
        shape = (n_images, n_bands, grid.rows, grid.cols)
        return BlockSurfaces(
            BlockWindows.whole(grid, n_images),
            *(
                np.moveaxis(state_array(state, name, 4, shape), 0, 1).reshape(n_bands, -1)
                for name in BlockSurfaces.FIELDS
            ),
        )
    windows = state_array(state, "windows", 2, (n_images, 4))
    first_row, first_col, rows, cols = windows.T
    if (
        (windows != np.round(windows)).any()
        or (windows[:, :2] < 0).any()
        or (windows[:, 2:] < 1).any()
        or (first_row + rows > grid.rows).any()
        or (first_col + cols > grid.cols).any()
    ):
        raise StateError("windows", "must be whole numbers of blocks within the grid")
    frame = BlockWindows(grid, windows.astype(int))
    return BlockSurfaces(
        frame,
        *(state_array(state, name, 2, (n_bands, frame.total)) for name in BlockSurfaces.FIELDS),
    )


def _crs_from_state(state: dict[str, Any]) -> Any:
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    text = state.get("crs")
    if text is None:
        return None
    try:
        return CRS.from_wkt(text)
    except (CRSError, TypeError):
        raise StateError("crs", f"not a coordinate reference system: {text!r:.60}") from None


@define
class _BlockOverlaps:
    """The overlaps' block statistics, each pair's over the blocks near its overlap only
    (a grid spans the whole mosaic): one entry per pair and block, pair by pair, in
    arrays of bands x entries. Values per image and block are over each image's window
    (``windows``), in arrays of bands x ``windows.total``."""

    windows: BlockWindows
    first: np.ndarray  # (n_pairs,) image index of each pair's first image
    second: np.ndarray
    pair_of: np.ndarray  # (n_entries,) the pair of each entry, ascending
    block_of: np.ndarray  # (n_entries,) its block, a flat index in the grid
    first_at: np.ndarray  # (n_entries,) where the entry's block is in its first image's window
    second_at: np.ndarray
    pair_counts: np.ndarray  # (n_bands, n_entries), 0 below min_pixels
    spread_counts: np.ndarray  # the same, 0 also where either spread is degenerate
    means: tuple[np.ndarray, np.ndarray]  # first's and second's block means
    log_stds: tuple[np.ndarray, np.ndarray]

    @classmethod
    def gather(
        cls, statistics: OverlapStatistics, windows: BlockWindows, min_pixels: int
    ) -> _BlockOverlaps:
        grid, pairs = windows.grid, statistics.pairs
        n_bands = statistics.n_bands
        floor = MIN_RELATIVE_SPREAD * _overlap_spread(pairs, n_bands)[:, None]
        near = [grid.blocks_near(pair.edge.bounds) for pair in pairs]
        # each list starts with no entry, so that no pair at all is no entry at all
        counts, degenerate = [np.zeros((n_bands, 0))], [np.zeros((n_bands, 0), dtype=bool)]
        means, log_stds = [np.zeros((2, n_bands, 0))], [np.zeros((2, n_bands, 0))]
        for pair in pairs:
            a, b = pair.near_blocks[grid]
            counts.append(np.minimum(a.count, b.count))
            means.append(np.array([a.mean, b.mean]))
            log_stds.append(np.log(np.maximum([a.std, b.std], 1e-12)))
            degenerate.append(
                _degenerate(a, statistics.images[pair.edge.first], floor)
                | _degenerate(b, statistics.images[pair.edge.second], floor)
            )
        count = np.concatenate(counts, axis=1)
        count[count < min_pixels] = 0
        mean, log_std = np.concatenate(means, axis=2), np.concatenate(log_stds, axis=2)
        first = np.array([p.edge.first for p in pairs], dtype=int)
        second = np.array([p.edge.second for p in pairs], dtype=int)
        pair_of = np.repeat(np.arange(len(pairs)), [len(blocks) for blocks in near]).astype(int)
        block_of = np.concatenate([np.zeros(0, dtype=int), *near])
        return cls(
            windows,
            first,
            second,
            pair_of,
            block_of,
            windows.positions(first[pair_of], block_of),
            windows.positions(second[pair_of], block_of),
            count,
            np.where(np.concatenate(degenerate, axis=1), 0.0, count),
            (mean[0], mean[1]),
            (log_std[0], log_std[1]),
        )

    @property
    def n_images(self) -> int:
        return len(self.windows.windows)

    @property
    def n_blocks(self) -> int:
        return self.windows.grid.size

    def totals(self, weights: np.ndarray) -> np.ndarray:
        """(n_bands, windows.total): each image's sum of the pairs' ``weights``."""
        return self._per_image(weights, weights)

    def _per_image(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """(n_bands, windows.total): each image's sum of ``first`` over the pairs it is
        the first of, then of ``second`` over those it is the second of (entries in pair
        order, as over dense pairs x blocks arrays: the same sums to the bit)."""
        sums = np.zeros((first.shape[0], self.windows.total))
        for places, values in ((self.first_at, first), (self.second_at, second)):
            np.add.at(sums, (slice(None), places), values)  # type: ignore[arg-type]
        return sums

    @property
    def counts(self) -> np.ndarray:
        """(n_bands, windows.total): each image's overlap pixels per block."""
        return self.totals(self.pair_counts)

    def local_means(self) -> np.ndarray:
        """(n_bands, windows.total): each image's count-weighted mean over its overlaps."""
        sums = self._per_image(self.pair_counts * self.means[0], self.pair_counts * self.means[1])
        totals = self.counts
        return np.divide(sums, totals, out=np.zeros_like(sums), where=totals > 0)

    def solve(
        self,
        values: tuple[np.ndarray, np.ndarray],
        pair_weights: np.ndarray,
        fixed: np.ndarray,
        fixed_values: np.ndarray | None = None,
    ) -> np.ndarray:
        """Per band and block, shifts ``s`` with ``values_i + s_i = values_j + s_j`` for
        every pair in the least-squares sense, weighted by ``pair_weights`` (pixel
        counts, 0 where a pair is not used).

        Images in ``fixed`` keep ``fixed_values`` (default 0; bands x windows.total); in
        blocks without a fixed image, the count-weighted sum of the shifts is zero.
        Blocks with the same set of overlapping pairs share one design and are solved
        together.

        Returns
        -------
        ndarray (n_bands, windows.total)
        """
        n_bands = pair_weights.shape[0]
        if fixed_values is None:
            fixed_values = np.zeros((n_bands, self.windows.total))
        owner = np.repeat(np.arange(self.n_images), self.windows.sizes)
        shifts = fixed_values * fixed[owner]
        sizes = self.totals(pair_weights)
        used = _UsedEntries.of(self, pair_weights)
        targets = values[1] - values[0]
        for chosen, pairs, entries in used.patterns():
            members = np.unique(np.concatenate([self.first[pairs], self.second[pairs]]))
            design = np.zeros((len(pairs), len(members)))
            design[np.arange(len(pairs)), np.searchsorted(members, self.first[pairs])] = 1.0
            design[np.arange(len(pairs)), np.searchsorted(members, self.second[pairs])] = -1.0
            # (members, chosen cells): each member's value in each cell's band and block
            band = (chosen // self.n_blocks)[None, :]
            at = self.windows.positions(members[:, None], (chosen % self.n_blocks)[None, :])
            solution = _solve_cells(
                design,
                pair_weights[used.band[entries], used.entry[entries]],
                targets[used.band[entries], used.entry[entries]],
                fixed[members],
                fixed_values[band, at].T,
                sizes[band, at].T,
            )
            shifts[band, at] = solution.T
        return shifts


@define
class _UsedEntries:
    """The entries a solve uses (weight above 0), cell by cell (a cell: a band of a
    block, ``band * n_blocks + block``), each cell's pairs ascending."""

    cell: np.ndarray
    pair: np.ndarray
    band: np.ndarray
    entry: np.ndarray

    @classmethod
    def of(cls, overlaps: _BlockOverlaps, weights: np.ndarray) -> _UsedEntries:
        band, entry = np.nonzero(weights > 0)
        cell = band * overlaps.n_blocks + overlaps.block_of[entry]
        pair = overlaps.pair_of[entry]
        order = np.lexsort((pair, cell))
        return cls(cell[order], pair[order], band[order], entry[order])

    def patterns(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per set of pairs used together: the cells using exactly those (ascending),
        the pairs, and the positions of their entries here (cells x pairs)."""
        if not len(self.cell):
            return
        cells, starts, sizes = np.unique(self.cell, return_index=True, return_counts=True)
        padded = np.full((len(cells), int(sizes.max())), -1)
        rows = np.repeat(np.arange(len(cells)), sizes)
        padded[rows, np.arange(len(self.cell)) - starts[rows]] = self.pair
        patterns, inverse = np.unique(padded, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        for number, pattern in enumerate(patterns):
            which = np.flatnonzero(inverse == number)
            pairs = pattern[pattern >= 0]
            yield cells[which], pairs, starts[which][:, None] + np.arange(len(pairs))


def _overlap_spread(pairs: Sequence[PairMoments], n_bands: int) -> np.ndarray:
    """Per band, the spread of both images' pixels over every overlap together."""
    sides = [side for pair in pairs for side in (pair.first, pair.second)]
    return reduce(Moments.merge, sides, Moments.empty(n_bands, extremes=False)).std


def _degenerate(blocks: Moments, image: Moments | None, floor: np.ndarray) -> np.ndarray:
    """Blocks whose spread says nothing of the image's contrast: at most ``floor``, or
    mostly at the image's least or greatest value (clipped or saturated).

    "Mostly" is a mean within one standard deviation of the extreme, which holds for
    every block with more than half of its pixels there. Without the image's extremes
    (images a new one is solved against), only the floor is checked.
    """
    flat = blocks.std <= floor
    if image is None or image.minimum is None or image.maximum is None:
        return flat
    low, high = image.minimum[:, None], image.maximum[:, None]
    return flat | (high - blocks.mean < blocks.std) | (blocks.mean - low < blocks.std)


def _solve_cells(design, weights, targets, known, known_values, sizes) -> np.ndarray:
    """Weighted least squares ``design @ s = targets`` for many cells at once.

    ``design`` (pairs, members) is shared; ``weights``, ``targets`` (cells, pairs) and
    ``known_values``, ``sizes`` (cells, members) are per cell. Members in ``known`` are
    fixed to their known values; when none is, ``sum(sizes * s) = 0`` holds exactly.
    """
    free = ~known
    weights = weights / weights.mean(axis=1, keepdims=True)
    rhs = targets - known_values[:, known] @ design[:, known].T
    matrix = design[:, free]
    normal = np.einsum("pi,cp,pj->cij", matrix, weights, matrix)
    moment = np.einsum("pi,cp,cp->ci", matrix, weights, rhs)
    solution = known_values.astype(float).copy()
    if known.any():
        solution[:, free] = np.einsum("cij,cj->ci", np.linalg.pinv(normal, rcond=1e-10), moment)
        return solution
    gauge = sizes / sizes.sum(axis=1, keepdims=True)
    n_cells, n = gauge.shape
    system = np.zeros((n_cells, n + 1, n + 1))
    system[:, :n, :n] = normal
    system[:, :n, n] = system[:, n, :n] = gauge
    augmented = np.concatenate([moment, np.zeros((n_cells, 1))], axis=1)
    return np.einsum("cij,cj->ci", np.linalg.pinv(system, rcond=1e-10), augmented)[:, :n]


def _bounded_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    ratio = np.divide(numerator, denominator, out=np.ones_like(numerator), where=denominator != 0)
    return np.clip(ratio, 1 / _MAX_RATIO, _MAX_RATIO)


def _gamma(values, local, target, pivot, scale) -> np.ndarray:
    """``p + r * ((x - p) / r) ** (ln((t - p) / r) / ln((m - p) / r))``, bounded."""
    tiny = np.finfo(values.dtype).tiny

    def scaled(array):
        return np.clip((array - pivot) / scale, tiny, None)

    log_local = np.log(np.clip(scaled(local), 1e-6, 1 - 1e-6))
    log_target = np.log(np.clip(scaled(target), 1e-6, 1 - 1e-6))
    return pivot + scale * scaled(values) ** _bounded_ratio(log_target, log_local)
