"""A step with nothing to learn: ``scale * x + offset`` on every image and band.

It lives in a module of its own so that a saved model can import it again
(``rescale:Rescale``): a class defined in the script being run (``__main__``) could not
be found by a later ``Mosaic.load`` or ``spectralmatch transform --model``.
"""

from __future__ import annotations

import numpy as np

import spectralmatch as sm


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
