"""The joint solve of co-registration: one correction per image, from tie points.

Geometry only: tie points are pairs of map coordinates, corrections are affine maps of
map coordinates; no pixel is read here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from attrs import frozen

from .._typing import Bounds
from ..errors import SpectralMatchError
from .overlap import OverlapEdge, connected_groups

if TYPE_CHECKING:  # scipy is imported where it is used: it is slow to import
    from scipy import sparse

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
    from scipy import sparse

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
    from scipy import sparse

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
    from scipy import sparse
    from scipy.sparse.linalg import lsqr

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


# ------------------------------------------------------------------ the local mesh

LocalModelName = Literal["none", "bilinear", "piecewise_affine"]

#: The pull towards zero displacement never falls below this share of its full weight.
ANCHOR_FLOOR = 1e-3
#: Iterations, at most, of the inversion of a mesh-corrected map.
INVERSION_ITERATIONS = 20


@frozen(eq=False)
class Mesh:
    """A regular mesh of nodes over an image's footprint, each carrying a 2-D
    displacement (CRS units) of that image's map coordinates.

    ``xs`` and ``ys`` are the increasing node coordinates, ``displacement`` has shape
    (len(ys), len(xs), 2). Between nodes the displacement is interpolated bilinearly
    (``model`` "bilinear") or linearly on the two triangles of each cell, split along the
    diagonal from its (x0, y1) to its (x1, y0) node ("piecewise_affine"); outside the
    mesh it is that of the nearest point of the mesh.
    """

    xs: np.ndarray
    ys: np.ndarray
    model: LocalModelName
    displacement: np.ndarray

    @classmethod
    def over(cls, bounds: Bounds, spacing: float, model: LocalModelName) -> Mesh:
        """A mesh with no displacement over ``bounds``, nodes at most ``spacing`` apart."""
        left, bottom, right, top = bounds
        xs = np.linspace(left, right, max(2, int(np.ceil((right - left) / spacing)) + 1))
        ys = np.linspace(bottom, top, max(2, int(np.ceil((top - bottom) / spacing)) + 1))
        return cls(xs, ys, model, np.zeros((len(ys), len(xs), 2)))

    @property
    def nodes(self) -> np.ndarray:
        """(len(ys) * len(xs), 2) coordinates of the nodes, row by row."""
        xx, yy = np.meshgrid(self.xs, self.ys)
        return np.column_stack([xx.ravel(), yy.ravel()])

    def moved(self, displacement: np.ndarray) -> Mesh:
        """This mesh carrying ``displacement`` (one row of 2 per node)."""
        return Mesh(self.xs, self.ys, self.model, displacement.reshape(self.displacement.shape))

    def largest(self) -> float:
        """The largest displacement (CRS units) of any point."""
        return float(np.max(np.hypot(*self.displacement.reshape(-1, 2).T)))

    def cells(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, 4) node indices and (n, 4) interpolation weights at ``points`` (n, 2)."""
        column, fx = _cell_axis(self.xs, points[:, 0])
        row, fy = _cell_axis(self.ys, points[:, 1])
        first = row * len(self.xs) + column
        nodes = np.column_stack([first, first + 1, first + len(self.xs), first + len(self.xs) + 1])
        if self.model == "bilinear":
            weights = [(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy]
        else:
            lower = fx + fy <= 1
            weights = [
                np.where(lower, 1 - fx - fy, 0.0),
                np.where(lower, fx, 1 - fy),
                np.where(lower, fy, 1 - fx),
                np.where(lower, 0.0, fx + fy - 1),
            ]
        return nodes, np.column_stack(weights)

    def basis(self, points: np.ndarray) -> sparse.csr_matrix:
        """(n, nodes) matrix: the displacement at ``points`` is ``basis @ node values``."""
        from scipy import sparse

        nodes, weights = self.cells(points)
        rows = np.repeat(np.arange(len(points)), 4)
        shape = (len(points), self.displacement.shape[0] * self.displacement.shape[1])
        return sparse.csr_matrix((weights.ravel(), (rows, nodes.ravel())), shape=shape)

    def at(self, points: np.ndarray) -> np.ndarray:
        """(n, 2) displacement at ``points`` (n, 2)."""
        nodes, weights = self.cells(points)
        flat = self.displacement.reshape(-1, 2)
        return np.einsum("nk,nkd->nd", weights, flat[nodes])

    def folds(self, matrix: np.ndarray) -> bool:
        """Whether the map ``matrix`` (3x3 affine) followed by this displacement turns any
        part of a cell over (its Jacobian determinant not positive where ``matrix``'s is)."""
        nodes = self.nodes
        moved = (nodes @ matrix[:2, :2].T + matrix[:2, 2] + self.at(nodes)).reshape(
            self.displacement.shape
        )
        along_x = (moved[:-1, 1:] - moved[:-1, :-1], moved[1:, 1:] - moved[1:, :-1])
        along_y = (moved[1:, :-1] - moved[:-1, :-1], moved[1:, 1:] - moved[:-1, 1:])
        # the determinant at each corner of a cell; a triangle's is that of its corner
        corners = (
            [(0, 0), (1, 1)]
            if self.model == "piecewise_affine"
            else [(0, 0), (0, 1), (1, 0), (1, 1)]
        )
        sign = np.sign(np.linalg.det(matrix[:2, :2]))
        return any(
            np.any(sign * _cross(along_x[top], along_y[right]) <= 0) for top, right in corners
        )


def _cell_axis(coordinates: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cell index along one axis and the fraction (0 to 1) across it."""
    index = np.clip(np.searchsorted(coordinates, values, side="right") - 1, 0, len(coordinates) - 2)
    low, high = coordinates[index], coordinates[index + 1]
    return index, np.clip((values - low) / (high - low), 0.0, 1.0)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


@frozen
class MeshSettings:
    """How the local meshes are solved: node ``spacing`` and ``falloff`` distance (CRS
    units), the weights of ``smoothness`` (neighbouring nodes alike) and ``bending``
    (second differences small), and the ``strength`` (0 to 1) of the solved movement."""

    model: LocalModelName
    spacing: float
    smoothness: float
    bending: float
    falloff: float
    strength: float


def solve_meshes(
    bounds: Sequence[Bounds],
    ties: Sequence[TiePoints],
    matrices: Sequence[np.ndarray],
    settings: MeshSettings,
    preservation: Sequence[float],
    loss: RobustLoss = "huber",
    loss_scale: float = 1.0,
) -> list[Mesh]:
    """One mesh per image (over ``bounds``) whose displacements, added after the global
    corrections ``matrices``, close what those leave of every tie point, solved jointly.

    Every tie point asks that the two images' displacements at its two ends differ by
    the residual of the global solve (each pair weighing as much as any other, with the
    robust ``loss`` as there). Each image's mesh is held smooth (differences of
    neighbouring nodes and second differences along rows and columns, each term weighing
    ``settings.smoothness`` or ``settings.bending`` times as much as one pair) and
    pulled towards no displacement, by its ``preservation`` weight times a share growing
    from ``ANCHOR_FLOOR`` at a tie point to 1 beyond ``settings.falloff``: nodes far from
    any tie point stay put, and as the pull never vanishes, no linked group drifts.
    """
    from scipy import sparse

    meshes = [Mesh.over(box, settings.spacing, settings.model) for box in bounds]
    if settings.strength == 0 or not ties:
        return meshes
    starts = np.cumsum([0] + [len(mesh.nodes) for mesh in meshes])
    priors = [
        _mesh_prior(mesh, _support(index, ties), weight, settings)
        for index, (mesh, weight) in enumerate(zip(meshes, preservation, strict=True))
    ]
    prior = (
        sparse.block_diag([rows for rows, _ in priors]).tocsr(),
        np.concatenate([weights for _, weights in priors]),
    )
    solution = _robust_mesh_solve(
        _mesh_tie_equations(meshes, starts, ties, matrices), prior, loss, loss_scale
    )
    return [
        mesh.moved(solution[start:stop] * settings.strength)
        for mesh, start, stop in zip(meshes, starts[:-1], starts[1:], strict=True)
    ]


def _support(index: int, ties: Sequence[TiePoints]) -> np.ndarray:
    """(n, 2) the ends in image ``index`` of all tie points."""
    ends = [tie.first if tie.pair[0] == index else tie.second for tie in ties if index in tie.pair]
    return np.concatenate(ends) if ends else np.empty((0, 2))


def _mesh_tie_equations(
    meshes: Sequence[Mesh],
    starts: np.ndarray,
    ties: Sequence[TiePoints],
    matrices: Sequence[np.ndarray],
) -> tuple[sparse.csr_matrix, np.ndarray, np.ndarray]:
    """Rows D_i(p_i) - D_j(p_j) = G_j(p_j) - G_i(p_i) (one per tie point, the same for x
    and y: targets are (n, 2)), each pair's rows weighing 1 in all."""
    from scipy import sparse

    blocks, targets, weights = [], [], []
    total = int(starts[-1])
    for tie in ties:
        (i, j), count = tie.pair, len(tie.first)
        block = sparse.hstack(
            [
                sparse.csr_matrix((count, int(starts[i]))),
                meshes[i].basis(tie.first),
                sparse.csr_matrix((count, total - int(starts[i + 1]))),
            ]
        ) - sparse.hstack(
            [
                sparse.csr_matrix((count, int(starts[j]))),
                meshes[j].basis(tie.second),
                sparse.csr_matrix((count, total - int(starts[j + 1]))),
            ]
        )
        blocks.append(block)
        targets.append(_apply(matrices[j], tie.second) - _apply(matrices[i], tie.first))
        weights.append(np.full(count, 1.0 / count))
    return sparse.vstack(blocks).tocsr(), np.concatenate(targets), np.concatenate(weights)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def _mesh_prior(
    mesh: Mesh, support: np.ndarray, preservation: float, settings: MeshSettings
) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Rows (= 0) and weights of the pull towards no displacement, the differences of
    neighbouring nodes and the second differences of one mesh; each of the three weighs
    its weight in all (the pull: ``preservation`` at full share)."""
    from scipy import sparse
    from scipy.spatial import cKDTree

    rows, columns = mesh.displacement.shape[:2]
    index = np.arange(rows * columns).reshape(rows, columns)
    pairs = [(index[:, :-1], index[:, 1:]), (index[:-1], index[1:])]
    triples = [(index[:, :-2], index[:, 1:-1], index[:, 2:]), (index[:-2], index[1:-1], index[2:])]
    difference = _stencil(pairs, (1.0, -1.0), rows * columns)
    second = _stencil(triples, (1.0, -2.0, 1.0), rows * columns)
    if support.size:
        distance = cKDTree(support).query(mesh.nodes)[0]
        share = np.maximum(1 - np.exp(-((distance / settings.falloff) ** 2)), ANCHOR_FLOOR)
    else:
        share = np.ones(rows * columns)
    terms = [
        (sparse.identity(rows * columns, format="csr"), preservation * share),
        (difference, np.full(difference.shape[0], settings.smoothness)),
        (second, np.full(second.shape[0], settings.bending)),
    ]
    return (
        sparse.vstack([matrix for matrix, _ in terms]).tocsr(),
        np.concatenate([weights / max(len(weights), 1) for _, weights in terms]),
    )


def _stencil(groups, coefficients: tuple[float, ...], count: int) -> sparse.csr_matrix:
    """One row per position of ``groups`` (tuples of node-index arrays, one array per
    coefficient): the sum of ``coefficients`` times those nodes."""
    from scipy import sparse

    nodes = np.concatenate([np.column_stack([part.ravel() for part in group]) for group in groups])
    rows = np.repeat(np.arange(len(nodes)), len(coefficients))
    values = np.tile(coefficients, len(nodes))
    return sparse.csr_matrix((values, (rows, nodes.ravel())), shape=(len(nodes), count))


def _robust_mesh_solve(
    ties: tuple[sparse.csr_matrix, np.ndarray, np.ndarray],
    prior: tuple[sparse.csr_matrix, np.ndarray],
    loss: RobustLoss,
    loss_scale: float,
) -> np.ndarray:
    """(nodes, 2) weighted least squares of the tie rows and the ``prior`` rows (= 0),
    the tie rows reweighted for a robust loss (x and y share the rows and weights)."""
    from scipy import sparse
    from scipy.sparse.linalg import splu

    matrix, target, weights = ties
    fixed = prior[0].T @ sparse.diags(prior[1]) @ prior[0]
    robust = np.ones(len(target))
    solution = np.zeros((matrix.shape[1], 2))
    for _ in range(ROBUST_ITERATIONS if loss != "none" else 1):
        weighted = matrix.T @ sparse.diags(weights * robust)
        updated = splu((weighted @ matrix + fixed).tocsc()).solve(weighted @ target)
        converged = np.linalg.norm(updated - solution) <= 1e-9 * (1 + np.linalg.norm(updated))
        solution = updated
        if converged:
            break
        residual = matrix @ solution - target
        robust = loss_weights(np.hypot(*residual.T), loss, loss_scale)
    return solution


def invert(matrix: np.ndarray, mesh: Mesh | None, points: np.ndarray, tolerance: float):
    """(n, 2) the points p that ``matrix`` followed by ``mesh``'s displacement sends to
    ``points`` (n, 2), by fixed-point iteration, or None when that does not settle within
    ``tolerance`` (CRS units)."""
    inverse = np.linalg.inv(matrix)
    source = _apply(inverse, points)
    if mesh is None:
        return source
    for _ in range(INVERSION_ITERATIONS):
        updated = _apply(inverse, points - mesh.at(source))
        change = float(np.max(np.abs(updated - source), initial=0.0))
        source = updated
        if change <= tolerance:
            return source
    return None
