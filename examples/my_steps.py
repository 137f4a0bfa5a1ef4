"""Steps of your own, in a module of their own.

A saved model records each step by its importable class path (``my_steps:Rescale``), so
a later ``Mosaic.load`` or ``spectralmatch transform --model`` can import it again; a
class defined in the script being run (``__main__``) could not be found, and saving it
is refused. docs/extending.md walks through both steps.

- ``Rescale``: nothing to learn; ``scale * x + offset`` on every image and band. Linear,
  so it maps the statistics and the steps after it need no second read pass.
- ``PolynomialDetrend``: one low-order polynomial surface per image and band, fitted
  from the overlaps' block statistics so that overlapping images agree block by block.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import spectralmatch as sm
from spectralmatch.model.persistence import state_array, state_names
from spectralmatch.stats.requests import BlockMoments


class Rescale(sm.Adjuster):
    """Fixed ``scale * x + offset`` (e.g. Landsat Collection 2's 2.75e-5 and -0.2)."""

    def __init__(self, *, scale: float = 1.0, offset: float = 0.0) -> None:
        self.scale = scale
        self.offset = offset

    def requests(self, collection):
        return []  # nothing to measure

    def fit(self, statistics):
        self.fitted_ = True
        return self

    def fit_new(self, statistics, names):
        """Nothing depends on the image, so new scenes need no solving."""

    def transform_window(self, image, window, values, valid):
        return values * self.scale + self.offset

    def transform_statistics(self, statistics):
        """Linear: the statistics after this step, so the next one needs no second pass."""
        n_images, n_bands = len(statistics.names), statistics.n_bands
        return statistics.affine(
            np.full((n_images, n_bands), self.scale), np.full((n_images, n_bands), self.offset)
        )

    def get_state(self):
        return {}

    def set_state(self, state):
        self.fitted_ = True


class PolynomialDetrend(sm.Adjuster):
    """An additive polynomial surface per image and band, fitted from block overlaps.

    Parameters
    ----------
    degree : int, default 1
        1: a tilted plane; 2: a quadratic surface.
    n_blocks : int, default 16
        Blocks along the longer side of the collection's extent.
    min_pixels : int, default 50
        Blocks where a pair shares fewer valid pixels are not used.
    ridge : float, default 0.3
        Pull of every coefficient towards zero, relative to a typical block equation:
        a surface is known only near the overlaps and must not run away beyond them.
    """

    def __init__(
        self, *, degree: int = 1, n_blocks: int = 16, min_pixels: int = 50, ridge: float = 0.3
    ) -> None:
        self.degree = degree
        self.n_blocks = n_blocks
        self.min_pixels = min_pixels
        self.ridge = ridge

    # what to measure: both images of every overlap, per block of a grid
    def requests(self, collection: sm.ImageCollection) -> list:
        grid = sm.BlockGrid.covering(collection.images, n_blocks=self.n_blocks)
        return [BlockMoments(grid)]

    def fit(self, statistics: sm.OverlapStatistics) -> PolynomialDetrend:
        (grid,) = statistics.block_grids
        rows, cols = np.divmod(np.arange(grid.size), grid.cols)
        x = grid.left + (cols + 0.5) * grid.block_width
        y = grid.top - (rows + 0.5) * grid.block_height
        self.centre_ = np.array([x.mean(), y.mean()])
        self.scale_ = float(max(np.ptp(x), np.ptp(y), grid.block_width))
        terms = self._terms(x, y)  # (n_blocks, n_terms)
        n_images, n_terms = len(statistics.names), terms.shape[1]
        coefficients = np.zeros((n_images, statistics.n_bands, n_terms))
        for band in range(statistics.n_bands):
            design, target, weight = [], [], []
            for pair in statistics.pairs:
                first, second = pair.blocks[grid]
                usable = np.minimum(first.count[band], second.count[band]) >= self.min_pixels
                for block in np.flatnonzero(usable):
                    row = np.zeros(n_images * n_terms)
                    row[pair.edge.first * n_terms : (pair.edge.first + 1) * n_terms] = terms[block]
                    row[pair.edge.second * n_terms : (pair.edge.second + 1) * n_terms] = -terms[
                        block
                    ]
                    design.append(row)
                    target.append(second.mean[band, block] - first.mean[band, block])
                    weight.append(np.sqrt(first.count[band, block]))
            if not design:
                continue
            # the surfaces sum to zero over the images: the collection keeps its average
            gauge = np.tile(np.eye(n_terms), n_images) * max(weight)
            # a light pull towards no surface where the overlaps say little (far from them)
            ridge = np.eye(n_images * n_terms) * self.ridge * np.median(weight)
            matrix = np.vstack([np.array(design) * np.array(weight)[:, None], gauge, ridge])
            rhs = np.concatenate(
                [np.array(target) * weight, np.zeros(n_terms), np.zeros(n_images * n_terms)]
            )
            solution = np.linalg.lstsq(matrix, rhs, rcond=None)[0]
            coefficients[:, band] = solution.reshape(n_images, n_terms)
        self.images_ = list(statistics.names)
        self.coefficients_ = coefficients
        return self

    def transform_window(self, image, window, values, valid):
        row = self.images_.index(image.name)
        cells = image.grid.window_grid(window).resampled(values.shape[1:])
        cols, rows = np.meshgrid(np.arange(cells.width) + 0.5, np.arange(cells.height) + 0.5)
        x, y = cells.transform * (cols.ravel(), rows.ravel())
        surface = self._terms(np.asarray(x), np.asarray(y)) @ self.coefficients_[row].T
        values += surface.T.reshape(values.shape).astype(values.dtype)
        return values

    def _terms(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Polynomial terms of the centred, scaled coordinates (no constant: an offset
        per image is the global model's business)."""
        u, v = (x - self.centre_[0]) / self.scale_, (y - self.centre_[1]) / self.scale_
        powers = [(i, d - i) for d in range(1, self.degree + 1) for i in range(d + 1)]
        return np.stack([u**a * v**b for a, b in powers], axis=-1)

    # the learned state, for saving (arrays go to the .npz sidecar)
    def get_state(self) -> dict[str, Any]:
        return {
            "images": self.images_,
            "centre": self.centre_,
            "scale": self.scale_,
            "coefficients": self.coefficients_,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.images_ = state_names(state, "images")
        self.centre_ = state_array(state, "centre", 1, (2,))
        self.scale_ = float(state_array(state, "scale", 0))
        self.coefficients_ = state_array(state, "coefficients", 3, (len(self.images_), None, None))
