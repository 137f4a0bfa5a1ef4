"""Histogram matching over the overlaps: a monotone curve per image and band."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from rasterio.windows import Window

from .._validation import Constraint, Interval, References
from ..errors import SpectralMatchWarning
from ..geo.overlap import OverlapGraph, connected_groups
from ..raster.collection import ImageCollection
from ..raster.image import Image
from ..stats.histogram import DEFAULT_BINS, Histogram
from ..stats.overlap import OverlapStatistics, PairMoments
from ..stats.requests import ImageMoments, OverlapHistogram, Request
from .adjuster import Adjuster, warn_left_unchanged
from .base import check_is_fitted, reference_indices
from .persistence import StateError, state_array, state_names

#: Rounds of raising a curve's slope floor to its new mean slope (converges in a few).
MAX_FLOOR_ROUNDS = 200


class HistogramMatch(Adjuster):
    """Per image and band, a monotone curve that makes overlapping images' distributions
    agree: the non-linear counterpart of :class:`~spectralmatch.GlobalModel`.

    Each image's curve ``T_i`` is piecewise linear through ``n_quantiles`` knots placed at
    the quantiles of its own values over all of its overlaps (beyond the outer knots it
    continues with the curve's mean slope). For every overlapping pair (i, j), band and
    quantile level ``p`` of a fine ladder, the curves must bring the two images' values
    over their common pixels to the same quantile::

        T_i(Q_ij(p)) = T_j(Q_ji(p))

    weighted by the overlap's pixel count; a light smoothness term (on each curve's
    changes of slope) settles what the overlaps leave open, so a curve bends only where
    the overlaps ask it to. Reference images keep the identity (they come out
    bit-identical) and the others are matched to them. Without references, the
    best-connected image of each group is held fixed while solving (pairwise overlaps
    say nothing about a curve shared by all images, and a free one would flatten the
    contrast to reduce the disagreement), then one gain and offset per band, for all
    images of the group, restore the collection's level and spread: the images' mean
    quantile and mean quantile spread over their overlaps are those of the input. The
    system is solved per band and connected group of images; each curve is then made to
    rise at least ``min_slope`` times its mean slope everywhere (pooling adjacent
    violators above a slope floor), so no stretch of values is flattened into one.

    The quantiles come from histograms of the overlaps, measured in the one read pass
    together with the other steps' statistics; after a linear step they are mapped
    exactly, so ``GlobalModel`` then ``HistogramMatch`` needs no second pass. The step is
    not linear, so a step after it is fitted on a second pass through it.

    Parameters
    ----------
    reference : sequence of str or int, optional
        Reference images by name or position; default: none (the collection's level
        and spread over the overlaps are kept).
    n_quantiles : int, default 9
        Knots per curve (at equally spaced quantile levels).
    tail : float, default 0.005
        Fraction of each overlap left out at either end of the quantile ladder (the
        extremes are noisy).
    bins : int, default 4096
        Histogram bins per band (exact for integer data whose range is smaller).
    smoothness : float, default 1.0
        Weight of the curves' changes of slope against the quantile equations (higher:
        closer to straight lines).
    min_slope : float, default 0.25
        Least slope of a curve, as a fraction of its mean slope.

    Attributes
    ----------
    images_ : list of str
    reference_ : list of str
    knots_, values_ : ndarray (n_images, n_bands, n_quantiles)
        Each curve's knots and the values it maps them to.

    Examples
    --------
    >>> from spectralmatch import Mosaic
    >>> model = Mosaic(steps=[HistogramMatch(reference=["tile_00"])]).fit("data/")
    >>> model.steps_[0].knots_.shape
    (4, 3, 9)
    """

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "reference": References(),
        "n_quantiles": Interval(3, None, integer=True),
        "tail": Interval(0, 0.25, "right"),
        "bins": Interval(16, None, integer=True),
        "smoothness": Interval(0, None),
        "min_slope": Interval(0, 1, "right"),
    }

    def __init__(
        self,
        *,
        reference: Sequence[str | int] | str | int | None = None,
        n_quantiles: int = 9,
        tail: float = 0.005,
        bins: int = DEFAULT_BINS,
        smoothness: float = 1.0,
        min_slope: float = 0.25,
    ) -> None:
        self.reference = reference
        self.n_quantiles = n_quantiles
        self.tail = tail
        self.bins = bins
        self.smoothness = smoothness
        self.min_slope = min_slope

    def requests(self, collection: ImageCollection) -> list[Request]:
        """Histograms of both images of every overlap; where no two images' bounds even
        intersect, whole-image moments instead (they tell :meth:`fit` the bands)."""
        if not OverlapGraph.from_collection(collection).edges:
            return [ImageMoments()]
        return [OverlapHistogram(self.bins)]

    @property
    def _levels(self) -> np.ndarray:
        """Quantile levels of the knots."""
        return np.linspace(self.tail, 1.0 - self.tail, self.n_quantiles)

    @property
    def _ladder(self) -> np.ndarray:
        """Quantile levels the pairs are compared at: the knots' and the midpoints."""
        return np.linspace(self.tail, 1.0 - self.tail, 2 * self.n_quantiles - 1)

    # ---------------------------------------------------------------- fit

    def fit(self, statistics: OverlapStatistics) -> HistogramMatch:
        """Solve every image's curves from the overlaps' histograms (or from images)."""
        self._validate_params()
        statistics = self._statistics(statistics)
        names, n_bands = statistics.names, statistics.n_bands
        fixed = reference_indices(self.reference, names)
        pairs = _sharing(statistics.pairs)
        knots = _knots(len(names), n_bands, pairs, self._levels)
        values = knots.copy()
        groups = connected_groups(len(names), [pair.edge for pair in pairs])
        _warn_unmatched(groups, names, fixed)
        for group in groups:
            members = set(group)
            anchors = fixed & members or {_best_connected(group, pairs)}
            free = [i for i in group if i not in anchors]
            if not free:
                continue
            own = [pair for pair in pairs if pair.edge.first in members]
            for band in range(n_bands):
                system = _CurveSystem(knots[:, band], free, self._ladder, self.smoothness)
                for pair in own:
                    system.add_pair(pair, band)
                values[free, band] = system.solve()
            if not fixed & members:
                values[group] = _keep_level_and_spread(knots[group], values[group])
        self.images_ = list(names)
        self.reference_ = [names[i] for i in sorted(fixed)]
        self.knots_, self.values_ = knots, _monotone(knots, values, self.min_slope)
        return self

    def fit_new(self, statistics: OverlapStatistics, names: list[str]) -> None:
        """Curves of new images against the frozen curves of the fitted ones."""
        check_is_fitted(self, "values_")
        position = {name: row for row, name in enumerate(self.images_)}
        pairs = _sharing(statistics.pairs)
        n_bands = self.knots_.shape[1]
        knots = _knots(len(statistics.names), n_bands, pairs, self._levels)
        fitted = [i for i, name in enumerate(statistics.names) if name in position]
        rows = [position[statistics.names[i]] for i in fitted]
        knots[fitted] = self.knots_[rows]
        values = knots.copy()
        values[fitted] = self.values_[rows]
        new = [statistics.names.index(name) for name in names]
        for index in new:
            own = [pair for pair in pairs if index in (pair.edge.first, pair.edge.second)]
            if not own:
                warnings.warn(
                    f"{statistics.names[index]}: shares no valid pixel with the fitted "
                    "images; its curve is left as the identity",
                    SpectralMatchWarning,
                    stacklevel=2,
                )
                continue
            for band in range(n_bands):
                system = _CurveSystem(
                    knots[:, band], [index], self._ladder, self.smoothness, values[:, band]
                )
                for pair in own:
                    system.add_pair(pair, band)
                values[index, band] = system.solve()
        self.images_ = self.images_ + list(names)
        self.knots_ = np.concatenate([self.knots_, knots[new]])
        self.values_ = np.concatenate(
            [self.values_, _monotone(knots[new], values[new], self.min_slope)]
        )

    # ---------------------------------------------------------------- transform

    def transform_window(
        self, image: Image, window: Window, values: np.ndarray, valid: np.ndarray
    ) -> np.ndarray:
        """Each band through its image's curve (a reference image is left unchanged)."""
        check_is_fitted(self, "values_")
        if image.name in self.reference_:
            return values
        row = self._image_row(image.name)
        for band in range(values.shape[0]):
            values[band] = _curve(values[band], self.knots_[row, band], self.values_[row, band])
        return values

    # ---------------------------------------------------------------- state

    def get_state(self) -> dict[str, Any]:
        check_is_fitted(self, "values_")
        return {
            "images": self.images_,
            "reference": self.reference_,
            "knots": self.knots_,
            "values": self.values_,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        images = state_names(state, "images")
        reference = state_names(state, "reference")
        knots = state_array(state, "knots", 3, (len(images), None, self.n_quantiles))
        values = state_array(state, "values", 3, knots.shape)
        if not set(reference) <= set(images):
            raise StateError("reference", "names images the model does not hold")
        if (np.diff(knots, axis=-1) <= 0).any():
            raise StateError("knots", "must be strictly increasing along each curve")
        if (np.diff(values, axis=-1) < 0).any():
            raise StateError("values", "curves must be non-decreasing")
        self.images_, self.reference_, self.knots_, self.values_ = images, reference, knots, values


def _sharing(pairs: Sequence[PairMoments]) -> list[PairMoments]:
    """The pairs whose images share valid pixels in every band."""
    return [p for p in pairs if (p.first.count > 0).all() and (p.second.count > 0).all()]


def _knots(
    n_images: int, n_bands: int, pairs: Sequence[PairMoments], levels: np.ndarray
) -> np.ndarray:
    """Each image's quantiles over all of its overlaps (n_images, n_bands, levels);
    0, 1, 2, ... for an image without overlaps (its curve stays the identity)."""
    pooled: list[Histogram | None] = [None] * n_images
    for pair in pairs:
        for index in (pair.edge.first, pair.edge.second):
            histogram = pair.histogram_of(index)
            earlier = pooled[index]
            pooled[index] = histogram if earlier is None else earlier.merge(histogram)
    knots = np.tile(np.arange(len(levels), dtype=float), (n_images, n_bands, 1))
    for index, merged in enumerate(pooled):
        if merged is not None:
            knots[index] = _strictly_increasing(merged.quantiles(levels))
    return knots


def _strictly_increasing(knots: np.ndarray) -> np.ndarray:
    """Knots nudged apart where quantiles coincide (a constant stretch of values)."""
    knots = knots.copy()
    for row in knots.reshape(-1, knots.shape[-1]):
        span = max(row[-1] - row[0], 1e-9 * max(abs(row[-1]), 1.0))
        step = 1e-6 * span
        for k in range(1, len(row)):
            row[k] = max(row[k], row[k - 1] + step)
    return knots


def _hat_weights(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """(len(x), len(knots)) weights with ``weights @ t`` = the curve through (knots, t)
    at x, continued beyond the ends along its first and last segments."""
    n = len(knots)
    segment = np.clip(np.searchsorted(knots, x, side="right") - 1, 0, n - 2)
    fraction = (x - knots[segment]) / (knots[segment + 1] - knots[segment])
    weights = np.zeros((len(x), n))
    rows = np.arange(len(x))
    weights[rows, segment] = 1 - fraction
    weights[rows, segment + 1] = fraction
    return weights


def _curve(x: np.ndarray, knots: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The curve through (knots, values) at ``x``, continued along its end segments."""
    segment = np.clip(np.searchsorted(knots, x, side="right") - 1, 0, len(knots) - 2)
    slope = np.diff(values) / np.diff(knots)
    result = values[segment] + slope[segment] * (x - knots[segment])
    return result.astype(x.dtype, copy=False)


def _monotone(knots: np.ndarray, values: np.ndarray, min_slope: float) -> np.ndarray:
    """Each curve (last axis) replaced by a nearby one whose slope is at least
    ``min_slope`` times its own mean slope everywhere: the least-squares monotone curve
    above a slope floor (pooling adjacent violators), the floor raised to the result's
    mean slope until it holds. No stretch of values is flattened into one."""
    result = values.copy()
    curves = zip(
        result.reshape(-1, result.shape[-1]), knots.reshape(-1, knots.shape[-1]), strict=True
    )
    for curve, x in curves:
        original, span = curve.copy(), x[-1] - x[0]
        slope = max((curve[-1] - curve[0]) / span, 0.0)
        for _ in range(MAX_FLOOR_ROUNDS):
            floor = min_slope * slope
            curve[:] = _pool_adjacent_violators(original - floor * x) + floor * x
            slope, previous = (curve[-1] - curve[0]) / span, slope
            if slope - previous <= 1e-12 * max(abs(slope), 1e-300):
                break
    return result


def _pool_adjacent_violators(values: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest to ``values`` in least squares."""
    means: list[float] = []
    sizes: list[int] = []
    for value in values:
        means.append(float(value))
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            mean, size = means.pop(), sizes.pop()
            means[-1] = (means[-1] * sizes[-1] + mean * size) / (sizes[-1] + size)
            sizes[-1] += size
    return np.repeat(means, sizes)


class _CurveSystem:
    """The least-squares system of one band: the knot values of the ``free`` images'
    curves, in units centred and scaled on their knots (well conditioned for any data
    units)."""

    def __init__(
        self,
        knots: np.ndarray,
        free: list[int],
        ladder: np.ndarray,
        smoothness: float,
        frozen: np.ndarray | None = None,
    ) -> None:
        self.smoothness = smoothness
        self.knots = knots  # (n_images, n_quantiles), this band
        self.frozen = knots if frozen is None else frozen  # values of the fixed curves
        self.free = free
        self.ladder = ladder
        self.size = knots.shape[1]
        self.column = {image: k * self.size for k, image in enumerate(free)}
        self.centre = float(np.mean(knots[free]))
        self.scale = float(np.mean(knots[free][:, -1] - knots[free][:, 0])) or 1.0
        self.rows: list[np.ndarray] = []
        self.rhs: list[np.ndarray] = []
        self.counts: list[float] = []

    def _units(self, values: np.ndarray) -> np.ndarray:
        return (values - self.centre) / self.scale

    def add_pair(self, pair: PairMoments, band: int) -> None:
        """``T_i(Q_ij(p)) - T_j(Q_ji(p)) = 0`` at every level of the ladder."""
        n = len(self.free) * self.size
        design = np.zeros((len(self.ladder), n))
        target = np.zeros(len(self.ladder))
        for index, sign in ((pair.edge.first, 1.0), (pair.edge.second, -1.0)):
            quantiles = pair.histogram_of(index).quantiles(self.ladder)[band]
            weights = _hat_weights(quantiles, self.knots[index])
            if index in self.column:
                start = self.column[index]
                design[:, start : start + self.size] += sign * weights
            else:
                target -= sign * (weights @ self._units(self.frozen[index]))
        if not design.any():
            return
        self.rows.append(design)
        self.rhs.append(target)
        self.counts.append(float(pair.first.count[band]))

    def solve(self) -> np.ndarray:
        """Knot values of the free curves (free images x n_quantiles)."""
        from scipy.sparse import csr_matrix, identity, vstack
        from scipy.sparse.linalg import spsolve

        weights = np.sqrt(np.array(self.counts) / np.mean(self.counts))
        design = vstack([csr_matrix(rows * w) for rows, w in zip(self.rows, weights, strict=True)])
        target = np.concatenate([rhs * w for rhs, w in zip(self.rhs, weights, strict=True)])
        smooth, smooth_target = self._smoothness()
        matrix = vstack([design, smooth]).tocsr()
        rhs = np.concatenate([target, smooth_target])
        normal = (matrix.T @ matrix).tocsc()
        moment = matrix.T @ rhs
        solution = spsolve((normal + 1e-12 * identity(normal.shape[0])).tocsc(), moment)
        curves = solution.reshape(len(self.free), self.size)
        return curves * self.scale + self.centre

    def _smoothness(self) -> tuple[Any, np.ndarray]:
        """Each curve's changes of slope from knot to knot, lightly weighted (a straight
        line, the identity included, costs nothing)."""
        from scipy.sparse import csr_matrix

        rows = np.zeros(((self.size - 2) * len(self.free), len(self.free) * self.size))
        for number, image in enumerate(self.free):
            spacing = np.diff(self._units(self.knots[image]))
            scale = spacing.mean()
            start = self.column[image]
            for k in range(1, self.size - 1):
                row = rows[number * (self.size - 2) + k - 1]
                row[start + k - 1] = scale / spacing[k - 1]
                row[start + k] = -scale / spacing[k - 1] - scale / spacing[k]
                row[start + k + 1] = scale / spacing[k]
        return csr_matrix(self.smoothness * rows), np.zeros(len(rows))


def _best_connected(group: list[int], pairs: Sequence[PairMoments]) -> int:
    """The image of ``group`` with the most overlap pixels."""
    shared = dict.fromkeys(group, 0.0)
    for pair in pairs:
        for index in (pair.edge.first, pair.edge.second):
            if index in shared:
                shared[index] += float(pair.first.count.sum())
    return max(group, key=lambda index: (shared[index], -index))


def _keep_level_and_spread(knots: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` (images, bands, knots) moved by one gain and offset per band, so that
    the images' mean quantile and mean quantile spread are those of ``knots``."""
    gain = knots.std(axis=-1).mean(axis=0) / np.maximum(values.std(axis=-1).mean(axis=0), 1e-300)
    offset = knots.mean(axis=(0, -1)) - gain * values.mean(axis=(0, -1))
    return gain[None, :, None] * values + offset[None, :, None]


def _warn_unmatched(groups: list[list[int]], names: list[str], fixed: set[int]) -> None:
    """Say which images stay unchanged: alone, or in a group without a reference."""
    alone = [names[group[0]] for group in groups if len(group) == 1 and group[0] not in fixed]
    if alone:
        warn_left_unchanged(alone)
    if fixed:
        loose = [g for g in groups if len(g) > 1 and not fixed & set(g)]
        for group in loose:
            warnings.warn(
                "HistogramMatch: no reference image among "
                f"[{', '.join(names[i] for i in group)}]: that group keeps its own distribution",
                SpectralMatchWarning,
                stacklevel=3,
            )
