"""Statistics and agreement measures of spectralmatch.report on real rasters."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from conftest import DATA_DIR, write_raster
from rasterio.windows import Window, transform

from spectralmatch import Seamline
from spectralmatch.ops.merge import merge_rasters
from spectralmatch.report.metrics import seam_contrast


def cut_into_tiles(path, folder, per_side: int, margin: int, distort=None):
    """Overlapping tiles of one real image (``per_side`` x ``per_side``, each grown by
    ``margin`` pixels), written to ``folder``; ``distort(index, values)`` changes tile
    ``index`` (nodata stays 0)."""
    with rasterio.open(path) as dataset:
        data, whole = dataset.read(), dataset.transform
    rows, cols = data.shape[1:]
    for index in range(per_side * per_side):
        row, col = divmod(index, per_side)
        top, left = max(row * rows // per_side - margin, 0), max(col * cols // per_side - margin, 0)
        bottom = min((row + 1) * rows // per_side + margin, rows)
        right = min((col + 1) * cols // per_side + margin, cols)
        values = data[:, top:bottom, left:right].astype(np.float64)
        if distort is not None:
            values = np.where(values > 0, np.clip(distort(index, values), 1, 65535), 0)
        window = Window(left, top, right - left, bottom - top)
        write_raster(
            folder / f"tile_{index:02d}.tif",
            values,
            transform=transform(window, whole),
            nodata=0,
            dtype="uint16",
        )
    return folder


def merged_contrast(folder, output, feather: int = 0) -> np.ndarray:
    seams = Seamline.voronoi(folder)
    return seam_contrast(merge_rasters(folder, output, seamlines=seams, feather=feather), seams)


def test_seam_contrast_is_one_for_tiles_of_one_image(tmp_path):
    """Tiles cut from one real image merge back into it: the cuts cannot be seen, and
    the measure says so. It is known to a few percent only: the texture along one
    line of pixels differs from that beside it (about 12 % over one 359-pixel cut of this
    image), so 14 cuts are taken."""
    tiles = cut_into_tiles(DATA_DIR / "tile_00.tif", tmp_path / "same", 8, 20)
    contrast = merged_contrast(tiles, tmp_path / "same.tif")
    assert contrast.shape == (3,)
    assert ((contrast > 0.95) & (contrast < 1.05)).all(), contrast


def test_seam_contrast_shows_tiles_of_different_radiometry(tmp_path):
    rng = np.random.default_rng(0)
    gains, offsets = rng.uniform(0.85, 1.15, 25), rng.uniform(-300, 300, 25)
    tiles = cut_into_tiles(
        DATA_DIR / "tile_00.tif",
        tmp_path / "distorted",
        5,
        20,
        distort=lambda index, values: values * gains[index] + offsets[index],
    )
    hard = merged_contrast(tiles, tmp_path / "hard.tif")
    feathered = merged_contrast(tiles, tmp_path / "feathered.tif", feather=8)
    assert (hard > 1.5).all(), hard
    assert (feathered < hard).all() and (feathered > 1.05).all(), feathered


def test_seam_contrast_warns_without_a_cut(tmp_path):
    image = DATA_DIR / "tile_00.tif"
    seams = Seamline.voronoi([image])
    with pytest.warns(UserWarning, match="tile_00.tif: no neighbouring valid pixels"):
        contrast = seam_contrast(image, seams)
    assert np.isnan(contrast).all()
