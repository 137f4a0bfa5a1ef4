"""A custom step in a model: rescale digital numbers, then fit the global model.

The step (``my_steps.Rescale``, beside this script) is linear, so it also maps the
statistics and the global model still fits from the one read pass. It is defined in a
module, not in this script, so the saved model can import it again.

    python examples/custom_adjuster.py [FOLDER]

Writes model.json into FOLDER (default: a new temporary folder, printed).
"""

from pathlib import Path

import numpy as np
from example_output import output_folder
from my_steps import Rescale

import spectralmatch as sm

ROOT = Path(__file__).resolve().parents[1]


def main(folder: Path) -> None:
    """Fit the rescale and the global model on the sample; save the model into ``folder``."""
    model = sm.Mosaic(steps=[Rescale(offset=-5000.0), sm.GlobalModel()])
    model.fit(ROOT / "data")
    print(model)
    print("gains after rescaling:\n", np.round(model.steps_[1].gains_, 3))
    saved = model.save(Path(folder) / "model.json")  # the step is saved as my_steps:Rescale
    print(
        "saved", saved, "with steps", [type(step).__name__ for step in sm.Mosaic.load(saved).steps_]
    )


if __name__ == "__main__":
    main(output_folder())
