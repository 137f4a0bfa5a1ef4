"""Pseudo-invariant features: the pixels whose relation between overlapping images is
stable, so that land-cover change, clouds or shadows stay out of the statistics of a fit.

A detector looks at each overlap (at a decimated resolution, after the model fitted so
far) and marks the changed pixels. :func:`select_pseudo_invariant` writes, per image, a
GeoTIFF of its changed pixels (1 = changed) that a user can inspect and give back as a
mask (``RasterMask("folder/{name}.tif")``); :class:`~spectralmatch.Mosaic` with ``pif=``
does all of this and fits again without the changed pixels.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import ClassVar

import numpy as np
from attrs import define, evolve
from rasterio.enums import Resampling
from rasterio.windows import Window, from_bounds

from .._validation import POSITIVE, POSITIVE_INTEGER, Constraint, Interval
from ..geo.blocks import BlockGrid, positions_in
from ..geo.cells import CellGrid
from ..geo.grid import PixelGrid
from ..geo.overlap import OverlapEdge
from ..raster.collection import ImageCollection
from ..raster.image import Image
from ..raster.vrt import open_for_resampling
from ..stats.moments import Moments
from ..stats.overlap import OverlapStatistics, PairMoments
from .base import Estimator

#: Largest decimated overlap held in memory at once (pixels).
MAX_OVERLAP_PIXELS = 4_000_000

#: Nodata value declared by the change masks (which hold only 0 and 1).
MASK_NODATA = 255

#: Memory the overlap cells of a fit may take (bytes): cells grow when the overlaps
#: are so large that cells of ``decimation`` pixels would not fit.
CELL_MEMORY = 32 * 2**20


class ChangeDetector(Estimator):
    """Base class: which pixels of two co-located images changed.

    Subclasses take keyword-only hyper-parameters, among them ``decimation`` (pixels per
    side of the cells an overlap is examined at).
    """

    decimation: int = 4

    def changed(self, first: np.ndarray, second: np.ndarray, joint: np.ndarray) -> np.ndarray:
        """Bool (rows, cols): True where changed. ``first`` and ``second`` are
        (bands, rows, cols) on one grid; only pixels where ``joint`` is True count."""
        raise NotImplementedError


class ResidualPIF(ChangeDetector):
    """Changed where the difference of the corrected images departs from its typical
    value by more than ``threshold`` robust standard deviations (1.4826 x the median
    absolute deviation) in any band.

    Parameters
    ----------
    threshold : float, default 3.0
    decimation : int, default 4
        Pixels per side of the cells the overlap is examined at.
    """

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "threshold": POSITIVE,
        "decimation": POSITIVE_INTEGER,
    }

    def __init__(self, *, threshold: float = 3.0, decimation: int = 4) -> None:
        self.threshold = threshold
        self.decimation = decimation

    def changed(self, first: np.ndarray, second: np.ndarray, joint: np.ndarray) -> np.ndarray:
        result = np.zeros(joint.shape, dtype=bool)
        if not joint.any():
            return result
        residual = (first - second)[:, joint]
        centre = np.median(residual, axis=1, keepdims=True)
        spread = 1.4826 * np.median(np.abs(residual - centre), axis=1, keepdims=True)
        outlying = np.abs(residual - centre) > self.threshold * np.maximum(spread, 1e-12)
        result[joint] = outlying.any(axis=0)
        return result


class CellPIF(ResidualPIF):
    """The residual test of :class:`ResidualPIF` on small cells measured in the first
    statistics pass, so that change costs no second read (the default of
    :class:`~spectralmatch.Mosaic`, ``pif="auto"``).

    Each overlap is measured per cell of ``decimation`` x ``decimation`` pixels (larger
    when the overlaps would not fit in :data:`CELL_MEMORY`); after the whole-image
    steps, a cell is changed where the difference of the two images' cell means departs
    from a smooth surface over the overlap by more than ``threshold`` robust standard
    deviations in any band. The model is then fitted again from the other cells' moments,
    which the cells hold exactly. Steps that ask for histograms cannot be fitted from
    cells; they are fitted as with :class:`ResidualPIF`, reading the overlaps again.

    Parameters
    ----------
    threshold : float, default 4.0
        Higher than :class:`ResidualPIF`'s: a cell mean averages its pixels' noise, and
        cells flagged in overlaps without change cost the local step some of its data.
    decimation : int, default 4
        Pixels per side of the cells.
    """

    def __init__(self, *, threshold: float = 4.0, decimation: int = 4) -> None:
        super().__init__(threshold=threshold, decimation=decimation)

    def changed_cells(self, first: Moments, second: Moments, shape: tuple[int, int]) -> np.ndarray:
        """Bool (n_cells,): the changed cells of an overlap, from both images' cell
        moments (bands, cells on a grid of ``shape``) after the model fitted so far.

        The difference of the cell means is taken relative to a smooth surface (a
        quadratic in the cells' position, fitted robustly), so that a residual shading
        field that the whole-image steps leave does not hide the change."""
        counts = np.minimum(first.count, second.count)
        full = counts >= 0.5 * counts.max(axis=1, keepdims=True)
        residual = first.mean - second.mean
        changed = np.zeros(counts.shape[1], dtype=bool)
        for band in range(len(counts)):
            outlying = _robust_outliers(residual[band], full[band], shape, self.threshold)
            changed |= outlying & (counts[band] > 0)
        return changed


#: The terms of the smooth surface, as exponents of x and y: 1, x, y, x^2, xy, y^2.
_TERMS = np.array([(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)])

#: Added to the normal matrix of the smooth surface, so that a degenerate overlap (all
#: its usable cells on a line) still solves.
_RIDGE = 1e-9 * np.eye(len(_TERMS))

#: Where each entry of the normal matrix is among the sums of x^p y^q: at [q, p], the
#: exponents of its two terms added.
_NORMAL_SUMS = (_TERMS[:, None, 1] + _TERMS[:, 1], _TERMS[:, None, 0] + _TERMS[:, 0])

#: Overlaps of more cells than this fit their surface from sums over the grid's rows
#: and columns (separable); smaller ones, where numpy's cost per call outweighs its cost
#: per cell, from the design matrix of their cells.
SEPARABLE_CELLS = 1024


def _robust_outliers(
    values: np.ndarray, usable: np.ndarray, shape: tuple[int, int], threshold: float
) -> np.ndarray:
    """Where ``values`` (of the cells of a grid of ``shape``, row by row) depart from a
    smooth surface by more than ``threshold`` robust standard deviations: the surface
    is fitted by least squares, three times, each time on the usable values that the
    previous fit did not find outlying."""
    inliers = usable.copy()
    outlying = np.zeros(len(values), dtype=bool)
    for _ in range(3):
        if np.count_nonzero(inliers) <= len(_TERMS):
            return outlying
        deviation = np.abs(values - _smooth_surface(values, inliers, shape))
        spread = 1.4826 * _median(deviation[inliers])
        outlying = deviation > threshold * max(spread, 1e-12)
        inliers = usable & ~outlying
    return outlying


def _smooth_surface(values: np.ndarray, inliers: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The quadratic in the cells' position fitted to ``values`` over the ``inliers`` by
    least squares, at every cell of the grid of ``shape``."""
    if values.size <= SEPARABLE_CELLS:
        design = _quadratic_design(shape)
        chosen = design[inliers]
        normal = chosen.T @ chosen + _RIDGE
        return design @ np.linalg.solve(normal, chosen.T @ values[inliers])
    # the grid is regular: the sum of x^p y^q over the inliers is ys.T @ mask @ xs
    xs, ys = _powers(shape)
    mask = inliers.reshape(shape)
    sums = ys.T @ (np.stack([mask, np.where(mask, values.reshape(shape), 0.0)]) @ xs)
    normal = sums[0][_NORMAL_SUMS] + _RIDGE
    c = np.linalg.solve(normal, sums[1][_TERMS[:, 1], _TERMS[:, 0]])
    x, y = xs[:, 1], ys[:, 1]
    surface = (c[1] + c[4] * y)[:, None] * x + (c[0] + (c[2] + c[5] * y) * y)[:, None]
    surface += c[3] * x * x
    return surface.ravel()


@functools.lru_cache(maxsize=64)
def _quadratic_design(shape: tuple[int, int]) -> np.ndarray:
    """(cells, 6): 1, x, y, x^2, xy, y^2 of each cell's position, scaled to [-1, 1]
    (read-only: kept for the overlaps of the same shape)."""
    rows, cols = np.meshgrid(
        np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij"
    )
    y, x = rows.ravel(), cols.ravel()
    design = np.column_stack([np.ones_like(x), x, y, x * x, x * y, y * y])
    design.flags.writeable = False
    return design


@functools.lru_cache(maxsize=64)
def _powers(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """x and y of the cells of a grid of ``shape`` (columns and rows scaled to [-1, 1],
    as in :func:`_quadratic_design`) to the powers 0 to 4: (columns, 5) and (rows, 5),
    read-only."""
    xs = np.vander(np.linspace(-1, 1, shape[1]), 5, increasing=True)
    ys = np.vander(np.linspace(-1, 1, shape[0]), 5, increasing=True)
    xs.flags.writeable = ys.flags.writeable = False
    return xs, ys


def _median(values: np.ndarray) -> float:
    """``np.median`` of a 1-D float array, to the bit, without its overhead per call
    (which the many small overlaps of a large mosaic pay thousands of times)."""
    size = len(values)
    half = size // 2
    ranked = np.partition(values, [half - 1, half, size - 1] if size > 1 else [0])
    if np.isnan(ranked[-1]):
        return float("nan")
    if size % 2:
        return float(ranked[half])
    return float((ranked[half - 1] + ranked[half]) / 2)


def cell_side(collection: ImageCollection, edges: list[OverlapEdge], decimation: int) -> float:
    """Side of the overlap cells in CRS units: ``decimation`` pixels of the finest image,
    or more where the overlaps' cells would not fit in :data:`CELL_MEMORY`; always a
    whole number of those pixels, so that the cells are as wide as each other and their
    sums take whole runs of rows at once."""
    pixel = min(min(abs(i.transform.a), abs(i.transform.e)) for i in collection)
    area = sum((e.bounds[2] - e.bounds[0]) * (e.bounds[3] - e.bounds[1]) for e in edges)
    cells = CELL_MEMORY / (collection.count * 3 * 8 * 2)
    return pixel * max(decimation, math.ceil(math.sqrt(area / cells) / pixel - 1e-9))


def without_cells(
    statistics: OverlapStatistics,
    left_out: dict[OverlapEdge, np.ndarray],
    side: float,
    keep_cells: bool = False,
) -> OverlapStatistics:
    """``statistics`` with the cells ``left_out`` of each overlap removed from its
    moments and block moments (recomposed exactly from the other cells); with
    ``keep_cells``, the pairs keep all their cells."""
    pairs = []
    for pair in statistics.pairs:
        if pair.cells is None or pair.edge not in left_out:
            pairs.append(pair)
            continue
        grid = CellGrid.over(pair.edge.bounds, side, list(pair.near_blocks))
        first, second = (cells.without(left_out[pair.edge]) for cells in pair.cells)
        blocks = {}
        for block_grid in pair.near_blocks:
            near = block_grid.blocks_near(pair.edge.bounds)
            index = positions_in(near, grid.block_index(block_grid))
            blocks[block_grid] = (first.grouped(index, len(near)), second.grouped(index, len(near)))
        cells = pair.cells if keep_cells else None
        pairs.append(PairMoments(pair.edge, first.total(), second.total(), blocks, None, cells))
    return evolve(statistics, pairs=pairs)


def write_cell_masks(
    collection: ImageCollection,
    left_out: dict[OverlapEdge, np.ndarray],
    side: float,
    grids: list[BlockGrid],
    folder: str | os.PathLike,
) -> Path:
    """Write ``folder/<image>.tif`` per image on its own grid: 1 where the image's pixel
    lies in a changed cell of more than half of the overlaps that examined it (as
    :func:`select_pseudo_invariant`), 0 elsewhere."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(collection):
        examined = np.zeros(image.grid.shape, dtype=np.uint16)
        flagged = np.zeros(image.grid.shape, dtype=np.uint16)
        for edge, changed in left_out.items():
            window = edge.window_in(image.grid) if index in (edge.first, edge.second) else None
            if window is None:
                continue
            cells = CellGrid.over(edge.bounds, side, grids)
            rows, cols = cells.pixel_cells(image.grid.window_grid(window))
            part = window.toslices()
            examined[part] += 1
            flagged[part] += changed.reshape(cells.shape)[np.ix_(rows, cols)]
        mask = (2 * flagged.astype(np.int32) > examined).astype(np.uint8)
        write_change_mask(folder / f"{image.name}.tif", mask, image.grid, collection.crs)
    return folder


class IRMAD(ChangeDetector):
    """Iteratively re-weighted multivariate alteration detection (Nielsen 2007; Canty and
    Nielsen 2008).

    The canonical variates of the two images' bands are differenced (MAD variates); the
    sum of their squares over their no-change variances is chi-square with ``bands``
    degrees of freedom for unchanged pixels. Observations are re-weighted by their
    no-change probability until the canonical correlations settle. Pixels whose
    no-change probability is below ``significance`` are changed. Invariant to any
    affine map of either image's bands.

    Parameters
    ----------
    significance : float, default 0.01
    iterations : int, default 30
    decimation : int, default 4
    """

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "significance": Interval(0, 1, "neither"),
        "iterations": POSITIVE_INTEGER,
        "decimation": POSITIVE_INTEGER,
    }

    def __init__(
        self, *, significance: float = 0.01, iterations: int = 30, decimation: int = 4
    ) -> None:
        self.significance = significance
        self.iterations = iterations
        self.decimation = decimation

    def changed(self, first: np.ndarray, second: np.ndarray, joint: np.ndarray) -> np.ndarray:
        result = np.zeros(joint.shape, dtype=bool)
        if joint.sum() <= 2 * first.shape[0] + 1:
            return result
        no_change = irmad_no_change(first[:, joint].T, second[:, joint].T, self.iterations)
        result[joint] = no_change < self.significance
        return result


def irmad_no_change(
    x: np.ndarray, y: np.ndarray, iterations: int = 30, tolerance: float = 1e-5
) -> np.ndarray:
    """No-change probability of each observation (rows of ``x`` and ``y``, bands in
    columns) by IR-MAD.

    The canonical directions come from the iteration (observations weighted by their
    no-change probability); the final chi-square statistic standardizes each MAD variate
    by its robust spread (1.4826 x median absolute deviation) rather than by
    ``2 (1 - rho)``, which real data with a little residual non-linearity make far too
    small (everything would look changed).
    """
    from scipy.stats import chi2

    bands = x.shape[1]
    weights = np.ones(len(x))
    correlations = np.zeros(bands)
    for _ in range(iterations):
        mad, rho = _mad_variates(x, y, weights)
        statistic = np.sum(mad * mad / np.maximum(2.0 * (1.0 - rho), 1e-12), axis=1)
        weights = chi2.sf(statistic, bands)
        if np.max(np.abs(rho - correlations)) < tolerance:
            break
        correlations = rho
    centre = np.median(mad, axis=0)
    spread = np.maximum(1.4826 * np.median(np.abs(mad - centre), axis=0), 1e-12)
    return chi2.sf(np.sum(((mad - centre) / spread) ** 2, axis=1), bands)


def _mad_variates(x: np.ndarray, y: np.ndarray, weights: np.ndarray):
    """MAD variates (observations x bands) and canonical correlations, weighted."""
    from scipy.linalg import eigh

    bands = x.shape[1]
    total = weights.sum()
    centred_x = x - weights @ x / total
    centred_y = y - weights @ y / total
    s11 = (centred_x * weights[:, None]).T @ centred_x / total
    s22 = (centred_y * weights[:, None]).T @ centred_y / total
    s12 = (centred_x * weights[:, None]).T @ centred_y / total
    ridge = 1e-12 * np.eye(bands)
    inverse22 = np.linalg.inv(s22 + ridge * np.trace(s22))
    # S12 S22^-1 S21 a = rho^2 S11 a, with a' S11 a = 1
    squared, vectors_a = eigh(s12 @ inverse22 @ s12.T, s11 + ridge * np.trace(s11))
    rho = np.sqrt(np.clip(squared, 0.0, 1.0))
    vectors_b = inverse22 @ s12.T @ vectors_a / np.maximum(rho, 1e-12)
    return centred_x @ vectors_a - centred_y @ vectors_b, rho


def select_pseudo_invariant(
    collection: ImageCollection,
    edges: list[OverlapEdge],
    correct,
    detector: ChangeDetector,
    folder: str | os.PathLike,
) -> Path:
    """Write ``folder/<image>.tif`` per image, on the image's own grid: 1 where the image
    changed, 0 elsewhere (found at ``detector.decimation`` pixels per cell).

    A cell of an image counts as changed where the detector flags it in more than half
    of the overlaps that examined it: a change of the image itself shows against every
    partner, a partner's change only against that partner. With a single overlap, both
    images are marked.

    Parameters
    ----------
    collection : ImageCollection
    edges : list of OverlapEdge
    correct : callable or None
        ``correct(image, window, values, valid)``: the model fitted so far, applied to
        both images before they are compared.
    detector : ChangeDetector
    folder : path

    Returns
    -------
    Path of the folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    masks = [_MaskGrid.of(image, detector.decimation) for image in collection]
    for edge in edges:
        first, second = collection.images[edge.first], collection.images[edge.second]
        window = edge.window_in(first.grid)
        if window is None:
            continue
        factor = max(
            detector.decimation,
            math.ceil(math.sqrt(window.width * window.height / MAX_OVERLAP_PIXELS)),
        )
        shape = (math.ceil(window.height / factor), math.ceil(window.width / factor))
        cells = first.grid.window_grid(window).resampled(shape)
        values, valid = [], []
        for image, image_window in (
            (first, window),
            (second, from_bounds(*cells.bounds, transform=second.transform)),
        ):
            corrected, usable = _read_corrected(image, image_window, cells, correct)
            values.append(corrected)
            valid.append(usable)
        joint = valid[0].all(axis=0) & valid[1].all(axis=0)
        changed = detector.changed(values[0], values[1], joint)
        for index in (edge.first, edge.second):
            masks[index].mark(changed, joint, cells, collection.crs)
    for image, mask in zip(collection, masks, strict=True):
        mask.write(folder / f"{image.name}.tif", collection.crs)
    return folder


def _read_corrected(image: Image, window: Window, cells: PixelGrid, correct):
    """Values of ``window`` averaged over the ``cells`` spanning it, through ``correct``."""
    with open_for_resampling(image) as dataset:
        values = dataset.read(
            window=window, out_shape=(image.count, *cells.shape), resampling=Resampling.average
        )
        valid = image.included(values, image.valid_mask(values, dataset, window), cells)
    values = values.astype(np.float64)
    if correct is not None:
        values = correct(image, window, values, valid)
    return values, valid


@define
class _MaskGrid:
    """An image's change votes on its own grid, decimated: in how many of its overlaps
    each cell was examined, and in how many it was found changed."""

    examined: np.ndarray
    flagged: np.ndarray
    grid: PixelGrid
    image_grid: PixelGrid

    @classmethod
    def of(cls, image: Image, decimation: int) -> _MaskGrid:
        shape = (math.ceil(image.height / decimation), math.ceil(image.width / decimation))
        return cls(
            np.zeros(shape, np.uint16),
            np.zeros(shape, np.uint16),
            image.grid.resampled(shape),
            image.grid,
        )

    def mark(self, changed: np.ndarray, joint: np.ndarray, cells: PixelGrid, crs) -> None:
        """Count one overlap's verdict (arrays on ``cells``)."""
        self.examined += self._placed(joint, cells, crs)
        self.flagged += self._placed(changed, cells, crs)

    def _placed(self, flags: np.ndarray, cells: PixelGrid, crs) -> np.ndarray:
        from rasterio.warp import reproject

        placed = np.zeros(self.examined.shape, dtype=np.uint8)
        reproject(
            flags.astype(np.uint8),
            placed,
            src_transform=cells.transform,
            dst_transform=self.grid.transform,
            src_crs=crs,
            dst_crs=crs,
            resampling=Resampling.nearest,
        )
        return placed

    def write(self, path: Path, crs) -> None:
        """1 where the cell changed in more than half of the overlaps that examined it,
        on the image's own grid."""
        from rasterio.warp import reproject

        changed = (2 * self.flagged.astype(np.int32) > self.examined).astype(np.uint8)
        placed = np.zeros(self.image_grid.shape, dtype=np.uint8)
        reproject(
            changed,
            placed,
            src_transform=self.grid.transform,
            dst_transform=self.image_grid.transform,
            src_crs=crs,
            dst_crs=crs,
            resampling=Resampling.nearest,
        )
        write_change_mask(path, placed, self.image_grid, crs)


def write_change_mask(path: Path, changed: np.ndarray, grid: PixelGrid, crs) -> None:
    """Write ``changed`` (uint8, 1 = changed) on ``grid`` as a GeoTIFF: the image's
    transform and size, nodata 255 (never written: every pixel is 0 or 1)."""
    import rasterio

    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=grid.width,
        height=grid.height,
        count=1,
        dtype="uint8",
        crs=crs,
        transform=grid.transform,
        nodata=MASK_NODATA,
        compress="deflate",
        tiled=grid.width >= 256 and grid.height >= 256,
    ) as dataset:
        dataset.write(changed, 1)
