"""The joint solve of co-registration: one correction per image, from tie points.

Geometry only: tie points are pairs of map coordinates, corrections are affine maps of
map coordinates; no pixel is read here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from attrs import frozen
from scipy import sparse
from scipy.sparse.linalg import lsqr

from .._typing import Bounds
from ..errors import SpectralMatchError
from .overlap import OverlapEdge, connected_groups

GlobalModelName = Literal["none", "translation", "similarity", "affine"]
RobustLoss = Literal["none", "huber", "soft_l1", "cauchy"]

#: Parameters per image of each global model.
PARAMETER_COUNT = {"none": 0, "translation": 2, "similarity": 4, "affine": 6}

#: How much more than all tie points together the zero-mean (gauge) rows weigh.
GAUGE_WEIGHT = 1e6
#: Iterations of reweighting for a robust loss.
ROBUST_ITERATIONS = 10


@frozen
class TiePoints:
    """Where the same ground lies in two images: ``first[k]`` in image ``pair[0]`` and
    ``second[k]`` in image ``pair[1]``, both (n, 2) arrays of map coordinates."""

    pair: tuple[int, int]
    first: np.ndarray
    second: np.ndarray


@frozen
class Frame:
    """The common frame the model parameters are expressed in: map coordinates less
    ``center``, divided by ``scale`` (so that the parameters are of similar size)."""

    center: tuple[float, float]
    scale: float

    @classmethod
    def of(cls, bounds: Bounds) -> Frame:
        """The frame centred on ``bounds`` and scaled by their larger side."""
        left, bottom, right, top = bounds
        return cls(((left + right) / 2, (bottom + top) / 2), max(right - left, top - bottom))


def model_rows(model: GlobalModelName, points: np.ndarray, frame: Frame) -> np.ndarray:
    """(n, 2, p) coefficients: the correction (dx, dy) at ``points`` is ``rows @ params``."""
    x = (points[:, 0] - frame.center[0]) / frame.scale
    y = (points[:, 1] - frame.center[1]) / frame.scale
    one, zero = np.ones_like(x), np.zeros_like(x)
    columns = {
        "none": ([], []),
        "translation": ([one, zero], [zero, one]),
        "similarity": ([one, zero, x, -y], [zero, one, y, x]),
        "affine": ([one, zero, x, y, zero, zero], [zero, one, zero, zero, x, y]),
    }[model]
    if not columns[0]:
        return np.zeros((len(points), 2, 0))
    return np.stack([np.stack(columns[0], axis=1), np.stack(columns[1], axis=1)], axis=1)


def correction_matrix(model: GlobalModelName, params: np.ndarray, frame: Frame) -> np.ndarray:
    """The 3x3 affine matrix taking an image's map coordinates to corrected ones."""
    origin = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]) * frame.scale + frame.center
    corrected = origin + model_rows(model, origin, frame) @ params
    # the affine map fixed by where it sends the frame's origin and unit vectors
    linear = (corrected[1:] - corrected[0]).T / frame.scale
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = corrected[0] - linear @ origin[0]
    return matrix


def solve_corrections(
    n_images: int,
    ties: Sequence[TiePoints],
    model: GlobalModelName,
    frame: Frame,
    preservation: Sequence[float],
    strength: float = 1.0,
    loss: RobustLoss = "huber",
    loss_scale: float = 1.0,
) -> list[np.ndarray]:
    """One 3x3 correction matrix per image that brings every tie point's two ends
    together, solved jointly over all pairs.

    Each pair weighs as much as any other (its equations are divided by its number of
    points). Tie points fix only relative positions: within each group of images linked
    by tie points, the mean correction weighted by ``preservation`` is held at zero (a
    large weight keeps an image where it is; without this, shrinking the whole group to
    a point would fit every tie point). ``strength`` (0 to 1) scales the solved
    movement; ``loss`` down-weights tie points far (compared with ``loss_scale``, CRS
    units) from agreement, by reweighting.
    """
    count = PARAMETER_COUNT[model]
    params = np.zeros((n_images, count))
    if count and strength > 0 and ties:
        matrix, target, weights = _equations(n_images, ties, model, frame)
        gauge = _gauge(n_images, ties, count, preservation)
        solution = _robust_solve(matrix, target, weights, gauge, loss, loss_scale)
        params = (solution * strength).reshape(n_images, count)
    return [correction_matrix(model, p, frame) for p in params]


def _gauge(
    n_images: int, ties: Sequence[TiePoints], count: int, preservation: Sequence[float]
) -> sparse.csr_matrix:
    """Rows that hold each linked group's weighted mean of every parameter at zero."""
    edges = [OverlapEdge(*tie.pair, bounds=(0.0, 0.0, 0.0, 0.0)) for tie in ties]
    rows = []
    for group in connected_groups(n_images, edges):
        share = np.zeros(n_images)
        share[group] = np.asarray(preservation, dtype=float)[group]
        share /= share.sum()
        rows.append(sparse.kron(share[None, :], sparse.identity(count)))
    return sparse.vstack(rows).tocsr()


def _equations(
    n_images: int, ties: Sequence[TiePoints], model: GlobalModelName, frame: Frame
) -> tuple[sparse.csr_matrix, np.ndarray, np.ndarray]:
    """Rows c_i(p_i) - c_j(p_j) = p_j - p_i, x then y for every tie point."""
    count = PARAMETER_COUNT[model]
    blocks, targets, weights = [], [], []
    for tie in ties:
        rows = np.concatenate(
            [model_rows(model, tie.first, frame), -model_rows(model, tie.second, frame)], axis=2
        ).reshape(2 * len(tie.first), 2 * count)
        columns = np.concatenate([np.arange(count) + image * count for image in tie.pair])
        blocks.append(
            sparse.csr_matrix(
                (rows.ravel(), np.tile(columns, len(rows)), np.arange(len(rows) + 1) * 2 * count),
                shape=(len(rows), n_images * count),
            )
        )
        targets.append((tie.second - tie.first).ravel())
        weights.append(np.full(len(rows), 1.0 / len(tie.first)))
    return sparse.vstack(blocks).tocsr(), np.concatenate(targets), np.concatenate(weights)


def _robust_solve(
    matrix: sparse.csr_matrix,
    target: np.ndarray,
    weights: np.ndarray,
    gauge: sparse.csr_matrix,
    loss: RobustLoss,
    loss_scale: float,
) -> np.ndarray:
    """Weighted least squares of the tie rows, reweighted for a robust loss, with the
    ``gauge`` rows (= 0) weighted so heavily that they hold."""
    system = sparse.vstack([matrix, gauge]).tocsr()
    hold = np.full(gauge.shape[0], GAUGE_WEIGHT * (1 + weights.sum()))
    robust = np.ones_like(target)
    solution = np.zeros(matrix.shape[1])
    for _ in range(ROBUST_ITERATIONS if loss != "none" else 1):
        root = np.sqrt(np.concatenate([weights * robust, hold]))
        rhs = np.concatenate([target, np.zeros(gauge.shape[0])]) * root
        updated = lsqr(sparse.diags(root) @ system, rhs, atol=1e-14, btol=1e-14, iter_lim=10_000)[0]
        converged = np.linalg.norm(updated - solution) <= 1e-9 * (1 + np.linalg.norm(updated))
        solution = updated
        if converged:
            break
        residual = (matrix @ solution - target).reshape(-1, 2)
        robust = np.repeat(loss_weights(np.hypot(*residual.T), loss, loss_scale), 2)
    return solution


def loss_weights(residual: np.ndarray, loss: RobustLoss, scale: float) -> np.ndarray:
    """Reweighting factors of a robust ``loss`` for residuals (CRS units) at ``scale``."""
    ratio = np.abs(residual) / max(scale, np.finfo(float).tiny)
    if loss == "huber":
        return 1.0 / np.maximum(ratio, 1.0)
    if loss == "soft_l1":
        return 1.0 / np.sqrt(1.0 + ratio**2)
    if loss == "cauchy":
        return 1.0 / (1.0 + ratio**2)
    return np.ones_like(ratio)


def largest_shift(matrix: np.ndarray, corners: np.ndarray) -> float:
    """The largest distance (CRS units) that ``matrix`` moves any of ``corners`` (n, 2):
    for an affine map, the largest over the whole image they bound."""
    moved = corners @ matrix[:2, :2].T + matrix[:2, 2]
    return float(np.max(np.hypot(*(moved - corners).T)))


def preservation_weights(
    weights: Mapping[str, float] | None, names: Sequence[str], keyword: str
) -> list[float]:
    """Per-image weights from a mapping by image name (1 for those not named), divided by
    their mean; unknown names or non-positive weights are a clear error."""
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise SpectralMatchError(
            f"{keyword}: no input image is named {', '.join(map(repr, unknown))} "
            f"(the images are {', '.join(names)})"
        )
    values = np.array([float(weights.get(name, 1.0)) for name in names])
    if not np.all(np.isfinite(values) & (values > 0)):
        raise SpectralMatchError(f"{keyword}: weights must be positive numbers, got {weights}")
    return list(values / values.mean())
