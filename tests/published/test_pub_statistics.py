"""The published package's tests of its comparison figures, ported: the same calls with
the same keywords. Its tests of the private GDAL helper behind the difference map run
here against :func:`spectral_difference_band_average`, the array that map draws."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import write_raster
from matplotlib.image import imread
from published_data import dummy_raster
from rasterio.transform import Affine

from spectralmatch import (
    SpectralMatchError,
    compare_before_after_all_images,
    compare_image_spectral_profiles_pairs,
    compare_spatial_spectral_difference_band_average,
)
from spectralmatch.errors import SpectralMatchWarning
from spectralmatch.report.published import spectral_difference_band_average


@pytest.fixture
def spectral_test_rasters(tmp_path):
    """Two constant 5-band rasters (80 and 160) by label, and an empty output folder."""
    output_dir = tmp_path / "output"
    output_dir.mkdir()
    image_dict = {
        label: dummy_raster(
            tmp_path / "input" / f"{label.replace(' ', '_')}.tif",
            width=16,
            height=16,
            count=5,
            fill=value,
        )
        for label, value in [("Image A", 80), ("Image B", 160)]
    }
    return image_dict, str(output_dir)


def after_copy(before_path: str, count: int, fill: float) -> str:
    """A constant raster beside ``before_path``, named ``<stem>_after.tif``."""
    path = before_path.replace(".tif", "_after.tif")
    return dummy_raster(path, width=16, height=16, count=count, fill=fill)


def test_compare_image_spectral_profiles_pairs(spectral_test_rasters):
    image_dict, output_dir = spectral_test_rasters
    pair_dict = {label: [path, after_copy(path, 5, 200)] for label, path in image_dict.items()}
    output_path = os.path.join(output_dir, "paired_profiles.png")
    compare_image_spectral_profiles_pairs(
        image_groups_dict=pair_dict,
        output_figure_path=output_path,
        title="Before vs After Comparison",
        xlabel="Band",
        ylabel="Mean Value",
    )
    assert os.path.exists(output_path)
    assert imread(output_path).shape[:2] == (500, 800)


def test_compare_spatial_spectral_difference_band_average(spectral_test_rasters):
    image_dict, output_dir = spectral_test_rasters
    images = list(image_dict.values())
    output_path = os.path.join(output_dir, "spatial_diff.png")
    compare_spatial_spectral_difference_band_average(
        input_images=[images[0], images[1]],
        output_figure_path=output_path,
        title="Difference Map",
        diff_label="Mean Band Abs Diff",
        subtitle="Test difference between A and B",
    )
    assert os.path.exists(output_path)
    np.testing.assert_allclose(spectral_difference_band_average(*images), 80)


def test_compare_before_after_all_images(spectral_test_rasters):
    image_dict, output_dir = spectral_test_rasters
    input_images_1 = list(image_dict.values())
    input_images_2 = [after_copy(path, 3, 180) for path in input_images_1]
    image_names = [os.path.splitext(os.path.basename(p))[0] for p in input_images_1]
    output_path = os.path.join(output_dir, "compare_before_after_all_images.png")
    compare_before_after_all_images(
        input_images_1=input_images_1,
        input_images_2=input_images_2,
        image_names=image_names,
        output_figure_path=output_path,
        title="Before vs After Grid",
        ylabel_1="Original",
        ylabel_2="Processed",
    )
    assert os.path.exists(output_path)
    with pytest.raises(SpectralMatchError, match="2 images but input_images_2 has 1"):
        compare_before_after_all_images(
            input_images_1, input_images_2[:1], output_path, "t", "before", "after"
        )


def float_raster(path, data, transform=(0, 1, 0, 10, 0, -1), crs="EPSG:3857", nodata=None):
    """Write float ``data`` with a GDAL-ordered geotransform."""
    x, a, b, y, d, e = transform
    return str(
        write_raster(
            path,
            np.asarray(data, np.float32),
            transform=Affine(a, b, x, d, e, y),
            crs=crs,
            nodata=nodata,
        )
    )


@pytest.mark.parametrize("after_width", [5, 6])
@pytest.mark.parametrize("rotated", [False, True])
def test_spatial_difference_compares_locations_instead_of_array_indices(
    tmp_path, after_width, rotated
):
    before = np.tile(np.arange(6, dtype=np.float32) + 10, (4, 1))
    after = np.tile(np.arange(after_width, dtype=np.float32) + 19, (4, 1))
    transform = (100, 1, 0.2 if rotated else 0, 200, 0.1 if rotated else 0, -1)
    x, y = Affine.from_gdal(*transform) * (2, 0)
    after_transform = (x, transform[1], transform[2], y, transform[4], transform[5])
    first = float_raster(tmp_path / "before.tif", before, transform)
    second = float_raster(tmp_path / "after.tif", after, after_transform)
    diff = spectral_difference_band_average(first, second, "nearest")
    assert diff.shape == (4, 6)
    assert np.isnan(diff[:, :2]).all()
    np.testing.assert_allclose(diff[:, 2:], 7)


def test_spatial_difference_resamples_different_resolutions(tmp_path):
    before = 100 + np.arange(8)[None, :] + 0.5 + 2 * (7.5 - np.arange(8)[:, None])
    after = 105.0 + (2 * np.arange(4)[None, :] + 1) + 2 * (7 - 2 * np.arange(4)[:, None])
    first = float_raster(tmp_path / "before.tif", before, (0, 1, 0, 8, 0, -1))
    second = float_raster(tmp_path / "after.tif", after, (0, 2, 0, 8, 0, -2))
    diff = spectral_difference_band_average(first, second, "bilinear")
    np.testing.assert_allclose(diff[1:-1, 1:-1], 5, rtol=1e-6)
    nearest = spectral_difference_band_average(first, second, "nearest")
    assert np.any(nearest[1:-1, 1:-1] != diff[1:-1, 1:-1])


def test_spatial_difference_reprojects_different_crs(tmp_path):
    from pyproj import Transformer

    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(0.04, 0.04)
    first = float_raster(
        tmp_path / "before.tif", np.full((4, 4), 100), (0, 0.01, 0, 0.04, 0, -0.01), "EPSG:4326"
    )
    second = float_raster(tmp_path / "after.tif", np.full((6, 6), 112), (0, x / 6, 0, y, 0, -y / 6))
    diff = spectral_difference_band_average(first, second, "bilinear")
    np.testing.assert_allclose(diff, 12)


def test_spatial_difference_masks_each_images_nodata_and_mask(tmp_path):
    import rasterio

    before = np.stack([np.full((4, 6), 100.0), np.full((4, 6), 200.0)])
    after = np.stack([np.full((4, 6), 110.0), np.full((4, 6), 230.0)])
    before[0, 0, 0] = -99
    after[1, 0, 1] = -999
    before[1, 0, 2] = np.nan
    after[0, 0, 3] = np.nan
    paths = [
        float_raster(tmp_path / "before.tif", before, nodata=-99),
        float_raster(tmp_path / "after.tif", after, nodata=-999),
    ]
    for path, col in zip(paths, (4, 5), strict=True):
        with rasterio.open(path, "r+") as dataset:
            mask = np.full((4, 6), 255, dtype=np.uint8)
            mask[0, col] = 0
            dataset.write_mask(mask)
    # the after image's mask beside its nodata value is not honoured, and a warning says so
    with pytest.warns(SpectralMatchWarning, match="after.tif: has both a nodata value"):
        diff = spectral_difference_band_average(*paths, "nearest")
    assert np.isnan(diff[0, :5]).all()
    np.testing.assert_allclose(diff[1:], 20)


@pytest.mark.parametrize("all_nodata", [False, True])
def test_spatial_difference_rejects_no_shared_valid_coverage(tmp_path, all_nodata):
    first = dummy_raster(tmp_path / "before.tif", count=1)
    second = dummy_raster(
        tmp_path / "after.tif",
        count=1,
        fill=0 if all_nodata else 100,
        origin=(0 if all_nodata else 100, 10),
    )
    with pytest.raises(SpectralMatchError, match="no overlapping pixels valid"):
        spectral_difference_band_average(first, second, "nearest")


def test_spatial_difference_rejects_mismatched_bands_and_missing_georeferencing(tmp_path):
    first = dummy_raster(tmp_path / "before.tif", count=1)
    second = dummy_raster(tmp_path / "after.tif", count=2)
    with pytest.raises(SpectralMatchError, match="same number of bands"):
        spectral_difference_band_average(first, second, "nearest")
    second = dummy_raster(tmp_path / "after2.tif", count=1, crs=None)
    with pytest.raises(SpectralMatchError, match="CRS and affine geotransform"):
        spectral_difference_band_average(first, second, "nearest")


def test_spatial_difference_plot_supports_changed_dimensions(tmp_path):
    before = dummy_raster(tmp_path / "before.tif", width=8, height=6, count=2, fill=100)
    after = dummy_raster(
        tmp_path / "after.tif", width=5, height=4, count=2, fill=110, origin=(2, 9)
    )
    output = tmp_path / "new_folder" / "projected_difference.png"
    compare_spatial_spectral_difference_band_average(
        [before, after],
        str(output),
        "Projected difference",
        "After minus before",
        "Shared valid coverage",
        scale=(-20, 20),
    )
    assert output.is_file() and output.stat().st_size > 0
