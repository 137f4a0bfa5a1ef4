"""A step of your own in a model: a global model, then smooth trends removed by one
polynomial surface per image (``my_steps.PolynomialDetrend``, beside this script).

    python examples/polynomial_detrend.py [FOLDER]

Writes matched/, model.json and again/ (the saved model applied once more) into FOLDER
(default: a new temporary folder, printed).
"""

from __future__ import annotations

from pathlib import Path

from example_output import output_folder
from my_steps import PolynomialDetrend

import spectralmatch as sm

ROOT = Path(__file__).resolve().parents[1]


def main(folder: Path) -> None:
    """Global model, then the detrend, on the sample tiles; save, load and apply."""
    out = Path(folder)
    model = sm.Mosaic(steps=[sm.GlobalModel(), PolynomialDetrend(degree=2)])
    model.fit_transform(ROOT / "data", out / "matched")
    print(model, "read", sum(model.reads_.values()), "windows")
    print("plane and curvature terms of tile_01, band 1:", model.steps_[1].coefficients_[1, 0])
    saved = model.save(out / "model.json")  # saved as my_steps:PolynomialDetrend
    sm.Mosaic.load(saved).transform(ROOT / "data", out / "again")


if __name__ == "__main__":
    main(output_folder())
