"""The published six-call mosaic workflow, folder to folder, on the sample data.

    python examples/mosaic_workflow.py [FOLDER]

FOLDER (default: a new temporary folder, printed) gets Input/ (a copy of data/), then one folder
per step and MergedImage.tif.
"""

import shutil
from pathlib import Path

from example_output import output_folder

from spectralmatch import (
    align_rasters,
    global_regression,
    local_block_adjustment,
    mask_rasters,
    merge_rasters,
    voronoi_center_seamline,
)

DATA = Path(__file__).resolve().parents[1] / "data"


def run(wd: Path) -> Path:
    """The six calls, folder to folder, in ``wd``; returns the mosaic's path."""
    (wd / "Input").mkdir(parents=True, exist_ok=True)
    for tile in DATA.glob("*.tif"):
        shutil.copy(tile, wd / "Input" / tile.name)
    global_regression(input_images=f"{wd}/Input", output_images=f"{wd}/GlobalMatch")
    local_block_adjustment(input_images=f"{wd}/GlobalMatch", output_images=f"{wd}/LocalMatch")
    align_rasters(input_images=f"{wd}/LocalMatch", output_images=f"{wd}/Aligned", tap=True)
    voronoi_center_seamline(
        input_images=f"{wd}/Aligned", output_mask=f"{wd}/ImageMasks.gpkg", image_field_name="image"
    )
    mask_rasters(
        input_images=f"{wd}/Aligned",
        output_images=f"{wd}/Clipped",
        vector_mask=("include", f"{wd}/ImageMasks.gpkg", "image"),
    )
    merge_rasters(input_images=f"{wd}/Clipped", output_image_path=f"{wd}/MergedImage.tif")
    return wd / "MergedImage.tif"


if __name__ == "__main__":
    print(run(output_folder()))
