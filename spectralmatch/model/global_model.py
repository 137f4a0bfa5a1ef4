"""Global gain and offset per image and band, solved over the overlap graph."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from attrs import define
from rasterio.windows import Window

from .._validation import BOOLEAN, POSITIVE, Constraint, References
from ..errors import SpectralMatchError, SpectralMatchWarning
from ..geo.overlap import connected_groups
from ..raster.convert import BandAffine
from ..raster.image import Image
from ..stats.overlap import OverlapStatistics, PairMoments
from .adjuster import Adjuster, warn_left_unchanged
from .base import check_is_fitted, reference_indices
from .persistence import StateError, state_array, state_names


@define
class FitDiagnostics:
    """How well the overlaps agree, per pair and band, before and after the fit.

    Attributes
    ----------
    pairs : list of (str, str)
    count : ndarray (n_pairs, n_bands)
        Jointly valid pixels of each overlap.
    mean_difference_before, mean_difference_after : ndarray (n_pairs, n_bands)
        Mean of the first image minus mean of the second over their overlap.
    std_difference_before, std_difference_after : ndarray (n_pairs, n_bands)
        The same for standard deviations.
    robust_weights : ndarray (n_pairs, n_bands)
        Final robust weight of each pair (1 unless ``robust`` down-weighted it).
    """

    pairs: list[tuple[str, str]]
    count: np.ndarray
    mean_difference_before: np.ndarray
    mean_difference_after: np.ndarray
    std_difference_before: np.ndarray
    std_difference_after: np.ndarray
    robust_weights: np.ndarray

    def to_state(self) -> dict[str, Any]:
        """The diagnostics as lists (for a model file); inverse: :meth:`from_state`."""
        return {
            "pairs": [list(pair) for pair in self.pairs],
            **{name: getattr(self, name).tolist() for name in _DIAGNOSTIC_ARRAYS},
        }

    @classmethod
    def from_state(cls, state: Any, images: list[str], n_bands: int) -> FitDiagnostics:
        """Diagnostics from :meth:`to_state`, checked against the model's ``images``.

        Raises
        ------
        StateError
            Naming the field (``diagnostics.count``), when one is missing or does not fit.
        """
        if not isinstance(state, dict):
            raise StateError("diagnostics", f"expected an object, got {state!r:.60}")
        pairs = state.get("pairs")
        if not isinstance(pairs, list) or not all(
            isinstance(pair, list) and len(pair) == 2 and set(pair) <= set(images) for pair in pairs
        ):
            raise StateError("diagnostics.pairs", "expected pairs of the model's image names")
        arrays = {}
        for name in _DIAGNOSTIC_ARRAYS:
            try:
                arrays[name] = state_array(state, name, 2, (len(pairs), n_bands))
            except StateError as error:
                raise StateError(f"diagnostics.{error.field}", error.problem) from None
        return cls(pairs=[(first, second) for first, second in pairs], **arrays)


_DIAGNOSTIC_ARRAYS = (
    "count",
    "mean_difference_before",
    "mean_difference_after",
    "std_difference_before",
    "std_difference_after",
    "robust_weights",
)

BISQUARE_THRESHOLD = 4.685
MAX_ROBUST_ITERATIONS = 50

#: Below this determinant, a pair's deletion block ``I - A_k K^-1 A_k^T`` is taken as
#: singular (the pair alone joins two parts of its group) and the pair is refitted.
SINGULAR_DELETION = 1e-9
DOWN_WEIGHTED = 0.5
MIN_ROBUST_WEIGHT = 1e-6
#: Overlaps with fewer jointly valid pixels (in any band) are left out of the fit: their
#: mean and spread are too noisy to set a gain (the spread's relative error is about
#: 1 / sqrt(2 n), 7 % at 100 pixels, more where neighbouring pixels are alike).
MIN_OVERLAP_PIXELS = 100


class GlobalModel(Adjuster):
    """Per-image, per-band gain and offset from weighted least squares over overlaps.

    For every overlapping pair (i, j) and band, with the mean ``m`` and standard
    deviation ``s`` of each image over the pixels where both are valid::

        (a_i m_ij + b_i) - (a_j m_ji + b_j) = 0     (weight mean_weight)
        a_i s_ij - a_j s_ji = 0                     (weight std_weight)

    each weighted by the overlap's pixel count when ``weight_by_overlap``. Reference
    images are held fixed (gain 1, offset 0, so they come out unchanged). Without
    reference images the collection's central tendency is kept: the mean over the images
    of their corrected means and standard deviations equals that of the inputs, as exact
    constraints (no shrinking of contrast, no drift).

    Overlaps with fewer than ``MIN_OVERLAP_PIXELS`` (100) jointly valid pixels are left
    out, with a warning naming them. Images fall into connected groups by the remaining
    overlaps; each group is solved on its own (a warning names the groups); a group
    without a reference keeps its own central tendency, and an image that overlaps
    nothing is left unchanged (a warning names it).

    Parameters
    ----------
    reference : sequence of str or int, optional
        Reference images by name or position; default: none (all images together).
    weight_by_overlap : bool, default True
        Weight each pair's equations by its number of jointly valid pixels.
    mean_weight, std_weight : float, default 1.0
        Factors on the mean and standard-deviation equations.
    robust : bool, default False
        Re-weight pairs by iteratively re-weighted least squares (Tukey bisquare, started
        from deletion residuals: each pair judged by a fit without it), so that one bad
        overlap (clouds, change, a misregistered pair) cannot pull the whole solution;
        the pairs it down-weighted are listed in ``down_weighted_``.

    Attributes
    ----------
    images_ : list of str
        Names of the images, in the rows of ``gains_`` and ``offsets_``.
    gains_, offsets_ : ndarray of shape (n_images, n_bands)
    reference_ : list of str
        The reference images' names.
    diagnostics_ : FitDiagnostics or None
        None for a model read from a file saved without them (before they were saved).
    down_weighted_ : list of str
        Pairs (``"a-b"``) whose robust weight fell below 0.5 in some band.

    Examples
    --------
    >>> from spectralmatch import ImageCollection, Mosaic
    >>> model = Mosaic(steps=[GlobalModel()]).fit(ImageCollection.from_paths("data/"))
    >>> model.steps_[0].gains_.shape
    (4, 3)
    """

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "reference": References(),
        "weight_by_overlap": BOOLEAN,
        "mean_weight": POSITIVE,
        "std_weight": POSITIVE,
        "robust": BOOLEAN,
    }

    def __init__(
        self,
        *,
        reference: Sequence[str | int] | str | int | None = None,
        weight_by_overlap: bool = True,
        mean_weight: float = 1.0,
        std_weight: float = 1.0,
        robust: bool = False,
    ) -> None:
        self.reference = reference
        self.weight_by_overlap = weight_by_overlap
        self.mean_weight = mean_weight
        self.std_weight = std_weight
        self.robust = robust

    # ---------------------------------------------------------------- fit

    def fit(self, statistics: OverlapStatistics) -> GlobalModel:
        """Solve gains and offsets for every image of ``statistics`` (or of images)."""
        self._validate_params()
        statistics = self._statistics(statistics)
        names = statistics.names
        fixed = reference_indices(self.reference, names)
        pairs = _usable_pairs(statistics.pairs, names)
        groups = connected_groups(len(names), [pair.edge for pair in pairs])
        _warn_about_groups(groups, names, fixed)
        n_bands = statistics.n_bands
        gains, offsets = np.ones((len(names), n_bands)), np.zeros((len(names), n_bands))
        robust = np.ones((len(pairs), n_bands))
        for group in groups:
            members = set(group)
            chosen = [k for k, pair in enumerate(pairs) if pair.edge.first in members]
            gains[group], offsets[group], robust[chosen] = self._solve_group(
                group, [pairs[k] for k in chosen], statistics, fixed, n_bands
            )
        self.images_ = list(names)
        self.reference_ = [names[i] for i in sorted(fixed)]
        self.gains_, self.offsets_ = gains, offsets
        self.diagnostics_: FitDiagnostics | None = _diagnostics(
            statistics, pairs, gains, offsets, robust
        )
        if self.robust and (robust < 1).any():
            down = [
                f"{a}-{b}"
                for (a, b), w in zip(self.diagnostics_.pairs, robust.min(axis=1), strict=True)
                if w < DOWN_WEIGHTED
            ]
            self.down_weighted_ = down
        else:
            self.down_weighted_ = []
        return self

    def _solve_group(
        self,
        group: list[int],
        pairs: list[PairMoments],
        statistics: OverlapStatistics,
        fixed: set[int],
        n_bands: int,
    ):
        """Gains, offsets and robust pair weights of one connected group, every band."""
        if not [i for i in group if i not in fixed] or len(group) == 1:
            ones = np.ones((len(group), n_bands))
            return ones, np.zeros_like(ones), np.ones((len(pairs), n_bands))
        systems = [
            _BandSystem.build(self, band, group, pairs, statistics, fixed)
            for band in range(n_bands)
        ]
        initial = None
        if self.robust:
            # a pair judged by fits without it, in every band: clouds or change that spoil
            # one band of an overlap spoil the others too
            standardized = [system.deletion_residuals() for system in systems]
            standardized = [r / max(1.4826 * np.median(r), 1e-300) for r in standardized]
            initial = robust_weights(np.max(standardized, axis=0), spread=1.0)
        results = [system.solve(initial) for system in systems]
        gains, offsets, weights = (np.stack(parts, axis=1) for parts in zip(*results, strict=True))
        return gains, offsets, weights

    # ---------------------------------------------------------------- new images

    def fit_new(self, statistics: OverlapStatistics, names: list[str]) -> None:
        """Solve gain and offset of each image in ``names`` against the frozen model."""
        check_is_fitted(self, "gains_")
        position = {name: k for k, name in enumerate(self.images_)}
        for name in names:
            index = statistics.names.index(name)
            pairs = [
                pair
                for pair in statistics.pairs
                if index in (pair.edge.first, pair.edge.second)
                and statistics.names[pair.edge.other(index)] in position
            ]
            gain, offset = self._solve_new(index, pairs, statistics.names, position)
            self.images_.append(name)
            position[name] = len(self.images_) - 1
            self.gains_ = np.vstack([self.gains_, gain])
            self.offsets_ = np.vstack([self.offsets_, offset])

    def _solve_new(self, index, pairs, names, position) -> tuple[np.ndarray, np.ndarray]:
        pairs = _usable_pairs(pairs, names)
        if not pairs:
            raise SpectralMatchError(
                f"{names[index]}: shares no valid pixel, or fewer than {MIN_OVERLAP_PIXELS} "
                "in every overlap, with the images of the fitted model, so it cannot be "
                "normalized against them"
            )
        n_bands = len(pairs[0].first.count)
        gains, offsets = np.ones(n_bands), np.zeros(n_bands)
        for band in range(n_bands):
            rows, rhs, weights = [], [], []
            for pair in pairs:
                other = pair.edge.other(index)
                k = position[names[other]]
                own, theirs = pair.of(index), pair.of(other)
                target_mean = self.gains_[k, band] * theirs.mean[band] + self.offsets_[k, band]
                target_std = abs(self.gains_[k, band]) * theirs.std[band]
                weight = own.count[band] if self.weight_by_overlap else 1.0
                rows += [[own.mean[band], 1.0], [own.std[band], 0.0]]
                rhs += [target_mean, target_std]
                weights += [weight * self.mean_weight**2, weight * self.std_weight**2]
            root = np.sqrt(np.array(weights) / np.mean(weights))
            design = np.array(rows) * root[:, None]
            solution = np.linalg.lstsq(design, np.array(rhs) * root, rcond=None)[0]
            gains[band], offsets[band] = solution
        return gains, offsets

    # ---------------------------------------------------------------- transform

    def transform_window(
        self, image: Image, window: Window, values: np.ndarray, valid: np.ndarray
    ) -> np.ndarray:
        """``gain * values + offset`` per band (unchanged for a reference image)."""
        return self._affine(image.name).apply(values)

    def band_affine(self, name: str) -> BandAffine | None:
        """Image ``name``'s gains and offsets, as :meth:`transform_window` applies them;
        None in a subclass that overrides :meth:`transform_window` (its correction is
        its own)."""
        if type(self).transform_window is not GlobalModel.transform_window:
            return None
        return self._affine(name)

    def _affine(self, name: str) -> BandAffine:
        row = self._image_row(name)
        return BandAffine(self.gains_[row], self.offsets_[row])

    def transform_statistics(self, statistics: OverlapStatistics) -> OverlapStatistics:
        """Statistics after this step: exact algebra on the moments."""
        rows = [self._image_row(name) for name in statistics.names]
        return statistics.affine(self.gains_[rows], self.offsets_[rows])

    # ---------------------------------------------------------------- state

    def get_state(self) -> dict[str, Any]:
        check_is_fitted(self, "gains_")
        return {
            "images": self.images_,
            "reference": self.reference_,
            "gains": self.gains_.tolist(),
            "offsets": self.offsets_.tolist(),
            **({} if self.diagnostics_ is None else {"diagnostics": self.diagnostics_.to_state()}),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        images = state_names(state, "images")
        reference = state_names(state, "reference")
        gains = state_array(state, "gains", 2, (len(images), None))
        offsets = state_array(state, "offsets", 2, gains.shape)
        if not set(reference) <= set(images):
            raise StateError("reference", "names images the model does not hold")
        diagnostics = state.get("diagnostics")
        self.images_, self.reference_, self.gains_, self.offsets_ = (
            images,
            reference,
            gains,
            offsets,
        )
        self.diagnostics_ = (
            None
            if diagnostics is None
            else FitDiagnostics.from_state(diagnostics, images, gains.shape[1])
        )


@define
class _BandSystem:
    """The weighted least-squares system of one band of one connected group, in units
    centred and scaled on the group (well conditioned for any data units)."""

    design: np.ndarray  # two rows per pair: means, spreads
    target: np.ndarray
    weights: np.ndarray  # per pair, the overlap weight
    column: dict[int, int]  # free image -> its gain column (offset: next one)
    group: list[int]
    gauge: _Gauge | None  # without a fixed image
    centre: float
    scale: float

    @classmethod
    def build(cls, model: GlobalModel, band, group, pairs, statistics, fixed) -> _BandSystem:
        free = [i for i in group if i not in fixed]
        images = [statistics.images[i] for i in group]
        centre = float(np.mean([m.mean[band] for m in images]))
        scale = float(np.mean([m.std[band] for m in images])) or 1.0
        column = {image: 2 * k for k, image in enumerate(free)}
        weights = np.array([pair.first.count[band] for pair in pairs], dtype=float)
        weights = weights / weights.mean() if model.weight_by_overlap else np.ones(len(pairs))
        root = np.sqrt(weights)
        factors = (root * model.mean_weight, root * model.std_weight)
        # rows 2k and 2k + 1: pair k's means and spreads, first side minus second
        design = np.zeros((2 * len(pairs), 2 * len(free)))
        target = np.zeros(2 * len(pairs))
        rows = 2 * np.arange(len(pairs))
        for side, sign in (("first", 1.0), ("second", -1.0)):
            moments = [getattr(pair, side) for pair in pairs]
            means = sign * (np.array([m.mean[band] for m in moments]) - centre) / scale
            spreads = sign * np.array([m.std[band] for m in moments]) / scale
            ends = [getattr(pair.edge, side) for pair in pairs]
            columns = np.array([column.get(image, -1) for image in ends], dtype=int)
            free_side = columns >= 0
            at, gain = rows[free_side], columns[free_side]
            design[at, gain] = means[free_side] * factors[0][free_side]
            design[at, gain + 1] = sign * factors[0][free_side]
            design[at + 1, gain] = spreads[free_side] * factors[1][free_side]
            # a fixed reference: gain 1, scaled offset 0, its terms moved to the target
            target[rows[~free_side]] -= means[~free_side]
            target[rows[~free_side] + 1] -= spreads[~free_side]
        target[0::2] *= factors[0]
        target[1::2] *= factors[1]
        gauge = None if fixed & set(group) else _Gauge.of(images, band, centre, scale)
        return cls(design, target, weights, column, group, gauge, centre, scale)

    def fit(self, pair_weights: np.ndarray) -> np.ndarray:
        """Least-squares solution with each pair's rows weighted by ``pair_weights``."""
        return self._solve(*self._normal_equations(pair_weights))

    def _normal_equations(self, pair_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        row_weights = np.repeat(np.sqrt(pair_weights), 2)
        weighted = self.design * row_weights[:, None]
        return weighted.T @ weighted, weighted.T @ (self.target * row_weights)

    def _solve(self, normal: np.ndarray, moment: np.ndarray) -> np.ndarray:
        if self.gauge is None:
            return np.linalg.lstsq(normal, moment, rcond=None)[0]
        return self.gauge.solve(normal, moment)

    def pair_residuals(self, solution: np.ndarray) -> np.ndarray:
        """Each pair's misfit (mean and spread rows together), without its weight."""
        residual = (self.design @ solution - self.target).reshape(-1, 2)
        return np.hypot(*residual.T) / np.sqrt(self.weights)

    def deletion_residuals(self) -> np.ndarray:
        """Each pair's misfit under a fit without it (an outlier cannot hide there).

        Not one fit per pair: taking a pair's two rows ``A_k`` out of the system ``K``
        (the normal equations, bordered by the gauge's constraints) turns its residual
        ``e_k`` under the full fit into ``S_k^-1 e_k``, with ``S_k = I - A_k K^-1 A_k^T``
        (the Woodbury identity), so one inverse of ``K`` serves every pair. A pair
        whose removal leaves the rest undetermined (``S_k`` singular: it alone joins
        two parts of the group) is fitted without it as the definition says.
        """
        n_pairs = len(self.weights)
        normal, moment = self._normal_equations(np.ones(n_pairs))
        inverse = _inverse(normal if self.gauge is None else self.gauge.bordered(normal))
        if inverse is None:
            return np.array([self._residual_without(k) for k in range(n_pairs)])
        columns, coefficients = self._pair_columns()
        size = normal.shape[0]
        block = inverse[:size, :size][columns[:, :, None], columns[:, None, :]]
        leverage = np.einsum("pai,pij,pbj->pab", coefficients, block, coefficients)
        s = np.eye(2) - leverage
        error = (self.design @ self._solve(normal, moment) - self.target).reshape(-1, 2)
        singular = np.abs(np.linalg.det(s)) <= SINGULAR_DELETION
        deleted = np.zeros_like(error)
        deleted[~singular] = np.linalg.solve(s[~singular], error[~singular, :, None])[..., 0]
        residuals = np.hypot(*deleted.T) / np.sqrt(self.weights)
        for k in np.flatnonzero(singular):
            residuals[k] = self._residual_without(int(k))
        return residuals

    def _residual_without(self, pair: int) -> float:
        """The misfit of ``pair`` under a fit without it, by refitting."""
        without = np.ones(len(self.weights))
        without[pair] = 0.0
        return float(self.pair_residuals(self.fit(without))[pair])

    def _pair_columns(self) -> tuple[np.ndarray, np.ndarray]:
        """Per pair, the (at most 4) columns its two rows use and their coefficients
        there: (pairs, 4) indices and (pairs, 2, 4) values, padded with zeros."""
        rows = self.design.reshape(len(self.weights), 2, -1)
        pair, column = np.nonzero((rows != 0).any(axis=1))  # by pair, then column
        place = np.arange(len(pair)) - np.searchsorted(pair, pair)
        columns = np.zeros((len(self.weights), 4), dtype=int)
        coefficients = np.zeros((len(self.weights), 2, 4))
        columns[pair, place] = column
        coefficients[pair, :, place] = rows[pair, :, column]
        return columns, coefficients

    def solve(self, initial: np.ndarray | None) -> tuple[np.ndarray, ...]:
        """Gains, offsets (per image of the group) and final pair weights; with
        ``initial`` weights, iteratively re-weighted (Tukey bisquare) from them."""
        weights = np.ones(len(self.weights)) if initial is None else initial
        solution = self.fit(weights)
        for _ in range(MAX_ROBUST_ITERATIONS if initial is not None else 0):
            updated = robust_weights(self.pair_residuals(solution))
            if np.allclose(updated, weights, atol=1e-4):
                break
            weights = updated
            solution = self.fit(weights)
        gain, offset = np.ones(len(self.group)), np.zeros(len(self.group))
        for k, image in enumerate(self.group):
            if image in self.column:
                gain[k] = solution[self.column[image]]
                offset[k] = solution[self.column[image] + 1]
        # back from centred-scaled units: x' = a x + (s * b~ + c - a c)
        return gain, self.scale * offset + self.centre - gain * self.centre, weights


def _usable_pairs(pairs: list[PairMoments], names: list[str]) -> list[PairMoments]:
    """The pairs with at least ``MIN_OVERLAP_PIXELS`` jointly valid pixels in every band;
    a warning names the others that share some pixels."""
    counts = [int(pair.first.count.min()) for pair in pairs]
    small = [
        f"{names[pair.edge.first]} - {names[pair.edge.second]} ({count} px)"
        for pair, count in zip(pairs, counts, strict=True)
        if count < MIN_OVERLAP_PIXELS and pair.first.count.any()
    ]
    if small:
        warnings.warn(
            f"overlaps with fewer than {MIN_OVERLAP_PIXELS} jointly valid pixels are left "
            f"out of the fit: {', '.join(small)}",
            SpectralMatchWarning,
            stacklevel=3,
        )
    return [pair for pair, count in zip(pairs, counts, strict=True) if count >= MIN_OVERLAP_PIXELS]


def _warn_about_groups(groups: list[list[int]], names: list[str], fixed: set[int]) -> None:
    def listing(group: list[int]) -> str:
        return ", ".join(names[i] for i in group)

    alone = [names[group[0]] for group in groups if len(group) == 1 and group[0] not in fixed]
    if alone:
        warn_left_unchanged(alone)
    matched = [group for group in groups if len(group) > 1]
    if len(matched) > 1:
        warnings.warn(
            f"the images form {len(matched)} groups that do not overlap each other; "
            "each group is matched on its own: "
            + "; ".join(f"[{listing(group)}]" for group in matched),
            SpectralMatchWarning,
            stacklevel=3,
        )
    for group in matched:
        if fixed and not fixed & set(group):
            warnings.warn(
                f"no reference image among [{listing(group)}]: that group keeps its "
                "own central tendency",
                SpectralMatchWarning,
                stacklevel=3,
            )


def _inverse(system: np.ndarray) -> np.ndarray | None:
    """The inverse of ``system``, or None where it is singular."""
    try:
        inverse = np.linalg.inv(system)
    except np.linalg.LinAlgError:
        return None
    return inverse if np.allclose(system @ inverse, np.eye(len(system)), atol=1e-8) else None


@define
class _Gauge:
    """The two constraints that fix a group without a reference: its mean corrected mean
    and std are kept (rows over the group's gain and offset columns), and their
    targets; built once per band system, used by every solve of it."""

    constraints: np.ndarray  # (2, columns)
    targets: np.ndarray  # (2,)

    @classmethod
    def of(cls, images, band: int, centre: float, scale: float) -> _Gauge:
        constraints = np.zeros((2, 2 * len(images)))
        for k, moments in enumerate(images):
            constraints[0, 2 * k] = (moments.mean[band] - centre) / scale
            constraints[0, 2 * k + 1] = 1.0
            constraints[1, 2 * k] = moments.std[band] / scale
        return cls(constraints, constraints[:, 0::2].sum(axis=1))

    def bordered(self, normal: np.ndarray) -> np.ndarray:
        """The normal equations bordered by the constraints."""
        return np.block([[normal, self.constraints.T], [self.constraints, np.zeros((2, 2))]])

    def solve(self, normal: np.ndarray, moment: np.ndarray) -> np.ndarray:
        """Least squares under the constraints."""
        system, right = self.bordered(normal), np.concatenate([moment, self.targets])
        return np.linalg.lstsq(system, right, rcond=None)[0][: normal.shape[0]]


def robust_weights(
    residual: np.ndarray, spread: float | None = None, threshold: float = BISQUARE_THRESHOLD
) -> np.ndarray:
    """Tukey bisquare IRLS weights: ``(1 - (r / (threshold * spread)) ** 2) ** 2`` inside
    the threshold, ``MIN_ROBUST_WEIGHT`` beyond (a gross outlier is as good as dropped,
    but no image is cut off). ``spread`` defaults to 1.4826 x the median absolute
    residual."""
    if spread is None:
        spread = 1.4826 * np.median(np.abs(residual))
    if spread <= 0:
        return np.ones_like(residual)
    scaled = np.abs(residual) / (threshold * spread)
    return np.maximum(np.clip(1.0 - scaled * scaled, 0.0, 1.0) ** 2, MIN_ROBUST_WEIGHT)


def _diagnostics(statistics, pairs, gains, offsets, robust) -> FitDiagnostics:
    names, n_bands = statistics.names, gains.shape[1]
    # only each side's moments over the overlap: its cells and blocks are not reported
    mapped = [
        PairMoments(
            pair.edge,
            pair.first.affine(gains[pair.edge.first], offsets[pair.edge.first]),
            pair.second.affine(gains[pair.edge.second], offsets[pair.edge.second]),
        )
        for pair in pairs
    ]

    def table(rows: list[np.ndarray]) -> np.ndarray:
        return np.array(rows, dtype=float).reshape(len(rows), n_bands)

    return FitDiagnostics(
        pairs=[(names[p.edge.first], names[p.edge.second]) for p in pairs],
        count=table([p.first.count for p in pairs]),
        mean_difference_before=table([p.first.mean - p.second.mean for p in pairs]),
        mean_difference_after=table([p.first.mean - p.second.mean for p in mapped]),
        std_difference_before=table([p.first.std - p.second.std for p in pairs]),
        std_difference_after=table([p.first.std - p.second.std for p in mapped]),
        robust_weights=table(list(robust)),
    )
