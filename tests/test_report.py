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


def test_image_statistics_agree_with_numpy_over_the_whole_image():
    from spectralmatch.report.statistics import image_statistics

    levels = [0, 2, 50, 98, 100]
    # windows of 100 px: each image is read in several parts that are merged
    results = image_statistics(DATA_DIR, percentiles=levels, window_size=100)
    assert [r.name for r in results] == [f"tile_0{i}" for i in range(4)]
    for result in results:
        with rasterio.open(DATA_DIR / f"{result.name}.tif") as dataset:
            data = dataset.read().astype(np.float64)
        for band in range(3):
            values = data[band][data[band] != 0]
            assert result.count[band] == values.size
            assert result.mean[band] == pytest.approx(values.mean(), rel=1e-12)
            assert result.std[band] == pytest.approx(values.std(), rel=1e-9)
            assert (result.minimum[band], result.maximum[band]) == (values.min(), values.max())
            # within one bin of numpy's (which interpolates between order statistics)
            expected = np.percentile(values, levels)
            assert np.abs(result.values[band] - expected).max() <= result.bin_width[band]


def test_image_statistics_reject_a_bad_percentile():
    from spectralmatch.errors import SpectralMatchError
    from spectralmatch.report.statistics import image_statistics

    with pytest.raises(SpectralMatchError, match=r"\[0, 100\]"):
        image_statistics(DATA_DIR, percentiles=[50, 101])


def test_overlap_changes_pair_the_overlaps_before_and_after(tmp_path):
    from spectralmatch import GlobalModel, Mosaic
    from spectralmatch.errors import SpectralMatchError
    from spectralmatch.report.metrics import overlap_differences
    from spectralmatch.report.statistics import overlap_changes

    matched = Mosaic(steps=[GlobalModel()]).fit_transform(DATA_DIR, tmp_path / "matched")
    changes = overlap_changes(DATA_DIR, matched)
    before, after = overlap_differences(DATA_DIR), overlap_differences(matched)
    assert [(c.first, c.second) for c in changes] == [(d.first, d.second) for d in before]
    for change, first, second in zip(changes, before, after, strict=True):
        np.testing.assert_array_equal(change.before, first.mean_abs_difference)
        np.testing.assert_array_equal(change.after, second.mean_abs_difference)
    # matching brings the overlaps together
    assert np.mean([c.after for c in changes]) < 0.5 * np.mean([c.before for c in changes])
    with pytest.raises(SpectralMatchError, match="4 images before matching but 1 after"):
        overlap_changes(DATA_DIR, DATA_DIR / "tile_00.tif")
