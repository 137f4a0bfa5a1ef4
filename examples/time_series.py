"""Time series: fit once against a reference date, keep the model, normalize later scenes.

    python examples/time_series.py [FOLDER]

Makes four "dates" of one footprint from data/tile_00.tif (the same ground, each with
its own gain and offset per band and two patches of land-cover change), fits global +
local adjustment to the first date with pseudo-invariant features (IR-MAD), saves the
model, and normalizes a fifth date that arrives later against it. Writes scenes/,
change_masks/, normalized/ and model.json into FOLDER (default: a new temporary folder,
printed).
"""

from pathlib import Path

import numpy as np
import rasterio
from example_output import output_folder

import spectralmatch as sm

DATA = Path(__file__).resolve().parents[1] / "data"


def make_dates(folder: Path, count: int = 5, seed: int = 1) -> list[Path]:
    """``date_0`` ... : tile_00 with a gain/offset per band and changed patches."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(DATA / "tile_00.tif") as source:
        truth, profile = source.read().astype(float), source.profile
    valid = (truth != 0).all(axis=0)
    paths = []
    for date in range(count):
        values = truth.copy()
        if date:
            gain = rng.uniform(0.8, 1.2, (3, 1, 1))
            values = values * gain + rng.uniform(-200, 200, (3, 1, 1))
            for _ in range(2):  # a new field, a flooded area...
                row, col = rng.integers(60, 260, 2)
                values[:, row : row + 40, col : col + 50] *= rng.uniform(0.6, 1.4)
        values = np.where(valid, np.clip(np.rint(values), 1, 65535), 0).astype("uint16")
        path = folder / f"date_{date}.tif"
        with rasterio.open(path, "w", **profile) as target:
            target.write(values)
        paths.append(path)
    return paths


def main(workdir: Path) -> None:
    """Make the dates in ``workdir``, fit, save, and normalize the late one."""
    dates = make_dates(workdir / "scenes")
    model = sm.Mosaic(
        steps=[sm.GlobalModel(reference=["date_0"]), sm.BlockMap(reference=["date_0"])],
        pif=sm.IRMAD(),
        pif_dir=workdir / "change_masks",
    )
    model.fit(dates[:4])
    model.transform(dates[:4], out_dir=workdir / "normalized")
    model.save(workdir / "model.json")
    later = sm.Mosaic.load(workdir / "model.json")
    later.transform(dates[4], out_dir=workdir / "normalized")  # solved against the model
    print("gains of the global step (dates x bands):")
    print(np.round(later.steps_[0].gains_, 3))
    print(f"outputs in {workdir / 'normalized'}, change masks in {workdir / 'change_masks'}")


if __name__ == "__main__":
    main(output_folder())
