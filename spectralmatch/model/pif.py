"""Pseudo-invariant features: the pixels whose relation between overlapping images is
stable, so that land-cover change, clouds or shadows stay out of the statistics of a fit.

A detector looks at each overlap (at a decimated resolution, after the model fitted so
far) and marks the changed pixels. :func:`select_pseudo_invariant` writes, per image, a
GeoTIFF of its changed pixels (1 = changed) that a user can inspect and give back as a
mask (``RasterMask("folder/{name}.tif")``); :class:`~spectralmatch.Mosaic` with ``pif=``
does all of this and fits again without the changed pixels.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import ClassVar

import numpy as np
from attrs import define
from rasterio.enums import Resampling
from rasterio.windows import Window, from_bounds

from .._validation import POSITIVE, POSITIVE_INTEGER, Constraint, Interval
from ..geo.grid import PixelGrid
from ..geo.overlap import OverlapEdge
from ..raster.collection import ImageCollection
from ..raster.image import Image
from .base import Estimator

#: Largest decimated overlap held in memory at once (pixels).
MAX_OVERLAP_PIXELS = 4_000_000


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
    """Write ``folder/<image>.tif`` per image: 1 where the image changed, 0 elsewhere,
    at ``detector.decimation`` pixels per cell.

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
    with image.open() as dataset:
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

    @classmethod
    def of(cls, image: Image, decimation: int) -> _MaskGrid:
        shape = (math.ceil(image.height / decimation), math.ceil(image.width / decimation))
        return cls(
            np.zeros(shape, np.uint16), np.zeros(shape, np.uint16), image.grid.resampled(shape)
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
        """1 where the cell changed in more than half of the overlaps that examined it."""
        import rasterio

        changed = (2 * self.flagged.astype(np.int32) > self.examined).astype(np.uint8)
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=changed.shape[1],
            height=changed.shape[0],
            count=1,
            dtype="uint8",
            crs=crs,
            transform=self.grid.transform,
            compress="deflate",
        ) as dataset:
            dataset.write(changed, 1)
