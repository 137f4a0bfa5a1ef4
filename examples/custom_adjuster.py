"""A custom step: subclass Adjuster and put it in Mosaic(steps=[...]).

This one rescales digital numbers to reflectance-like units (``scale * x + offset``,
e.g. Landsat Collection 2's 2.75e-5 and -0.2) before the global model fits. Because it is
linear it also maps the statistics, so the global model still fits from the one pass.

    python examples/custom_adjuster.py OUT_DIR
"""

import sys
from pathlib import Path

import numpy as np

import spectralmatch as sm

ROOT = Path(__file__).resolve().parents[1]


class Rescale(sm.Adjuster):
    """Fixed ``scale * x + offset`` for every image and band (nothing to learn)."""

    def __init__(self, scale: float = 1.0, offset: float = 0.0) -> None:
        self.scale = scale
        self.offset = offset

    def fit(self, statistics):
        self.fitted_ = True
        return self

    def fit_new(self, statistics, names):
        """Nothing depends on the image, so new scenes need no solving."""

    def transform_window(self, image, window, values, valid):
        return values * self.scale + self.offset

    def transform_statistics(self, statistics):
        n_images, n_bands = len(statistics.names), len(statistics.images[0].count)
        return statistics.affine(
            np.full((n_images, n_bands), self.scale), np.full((n_images, n_bands), self.offset)
        )

    def get_state(self):
        return {}

    def set_state(self, state):
        self.fitted_ = True


def main(out_dir: str) -> None:
    model = sm.Mosaic([Rescale(1.0, -5000.0), sm.GlobalModel()])
    model.fit(ROOT / "data")
    print(model)
    print("gains after rescaling:\n", np.round(model.steps[1].gains_, 3))
    model.save(Path(out_dir) / "model.json")  # the custom class is saved by import path


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
