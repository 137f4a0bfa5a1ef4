"""Masks over a sample tile: clouds and their shadows found by the offline spectral test,
and water found by a band-math index.

    python examples/masks_figure.py [FOLDER]

Writes ``masks_over_sample.png`` into FOLDER (default: a new temporary folder, printed;
never over an existing file: to regenerate the figure of docs/masks.md, give a new
folder and copy the figure to docs/images) and prints how much of the tile
each mask covers.

The sample has no clouds and no near-infrared band: a synthetic cloud and its shadow are
pasted into a copy of tile_01 (``synthetic_cloud.py``), and the water mask uses a
visible-band index, (green - red) / (green + red), where an image with a near-infrared
band would use NDWI or NDVI (``create_ndwi_raster``, ``create_ndvi_raster``,
``--mask-ndvi``).
"""

import tempfile
from pathlib import Path

import numpy as np
import rasterio
from example_output import new_file, output_folder
from synthetic_cloud import SUN_AZIMUTH, SUN_ELEVATION, paste_cloud

import spectralmatch as sm
from spectralmatch.report.plots import plot_masks

ROOT = Path(__file__).resolve().parents[1]
#: Water by the green-red index of the sample's bands (1 red, 2 green, 3 blue), each with
#: its darkest ground (1st percentile: the haze of at-sensor values) taken off: the
#: reservoir is green, the fields and the forest are not, in these at-sensor values.
WATER = "((B2 - 1%B2) - (B1 - 1%B1)) / ((B2 - 1%B2) + (B1 - 1%B1)) > 0.2"


def main(folder: Path) -> dict[str, float]:
    """Write the figure into ``folder``; returns the fraction of the tile's valid pixels
    each class covers."""
    figure = new_file(folder, "masks_over_sample.png")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        pasted = paste_cloud(ROOT / "data" / "tile_01.tif", work / "tile_01.tif")
        [clouds] = sm.create_cloud_mask(
            [pasted.path], work / "clouds", sun_azimuth=SUN_AZIMUTH, sun_elevation=SUN_ELEVATION
        )
        [water] = sm.band_math([pasted.path], work / "water", expression=WATER)
        plot_masks(
            pasted.path,
            {"Clouds (red), shadows (blue)": clouds, "Water: green-red index > 0.2 (red)": water},
            figure,
        )
        return {
            "cloud": _fraction(clouds, 1),
            "shadow": _fraction(clouds, 2),
            "water": _fraction(water, 1),
            "pasted cloud": float(pasted.cloud.sum() / _valid_pixels(clouds)),
        }


def _fraction(mask_path, value: int) -> float:
    with rasterio.open(mask_path) as dataset:
        classes = dataset.read(1, masked=True)
    return float(np.ma.sum(classes == value) / classes.count())


def _valid_pixels(mask_path) -> int:
    with rasterio.open(mask_path) as dataset:
        return int(dataset.read(1, masked=True).count())


if __name__ == "__main__":
    target = output_folder()
    for name, fraction in main(target).items():
        print(f"{name}: {100 * fraction:.1f} % of the tile")
    print(f"wrote {target / 'masks_over_sample.png'}")
