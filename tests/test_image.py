"""Image: lazy metadata, windowed reads, validity, statistics and footprint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from conftest import BAND_NAMES, valid_mask, write_raster
from rasterio.windows import Window

from spectralmatch import Image, SpectralMatchError


def test_sample_tile_metadata(data_dir):
    sample = json.loads((data_dir / "sample.json").read_text())["tiles"][1]
    image = Image(data_dir / "tile_01.tif")
    assert image.name == "tile_01"
    assert (image.count, image.dtype, image.nodata) == (3, "uint16", 0)
    assert image.shape == (sample["height"], sample["width"])
    assert (image.width, image.height) == (sample["width"], sample["height"])
    np.testing.assert_allclose(image.bounds, sample["bounds"])
    assert image.crs.to_epsg() == 32621
    assert image.transform.a == 30.0 and image.transform.e == -30.0
    assert image.descriptions == BAND_NAMES


def test_explicit_name_overrides_the_stem(data_dir):
    assert Image(data_dir / "tile_02.tif", name="scene").name == "scene"
    assert Image(str(data_dir / "tile_02.tif")).name == "tile_02"


def test_read_window_matches_rasterio(data_dir):
    image = Image(data_dir / "tile_00.tif")
    window = Window(10, 20, 50, 30)
    values, valid = image.read(window)
    with rasterio.open(data_dir / "tile_00.tif") as dataset:
        expected = dataset.read(window=window)
    assert values.shape == (3, 30, 50) and values.dtype == np.uint16
    np.testing.assert_array_equal(values, expected)
    np.testing.assert_array_equal(valid, expected != 0)
    # the tile's nodata border reaches into this corner window
    assert 0 < valid.mean() < 1


def test_windows_cover_the_image_exactly_once(data_dir):
    image = Image(data_dir / "tile_03.tif")
    cover = np.zeros(image.shape, dtype=int)
    windows = list(image.windows(100))
    for window in windows:
        rows, cols = window.toslices()
        cover[rows, cols] += 1
        assert window.width <= 100 and window.height <= 100
    assert (cover == 1).all()
    assert len(windows) == 4 * 4  # 360 x 362 px in 100 px windows


def test_statistics_equal_numpy_over_valid_pixels(data_dir):
    image = Image(data_dir / "tile_02.tif")
    moments = image.statistics()
    with rasterio.open(data_dir / "tile_02.tif") as dataset:
        data = dataset.read()
    for band in range(3):
        selected = data[band][data[band] != 0].astype(np.float64)
        assert moments.count[band] == selected.size
        np.testing.assert_allclose(moments.mean[band], selected.mean(), rtol=1e-12)
        np.testing.assert_allclose(moments.std[band], selected.std(), rtol=1e-9)
    # cached: a second call returns the very same object
    assert image.statistics() is moments


def test_numeric_nodata_and_non_finite_values_are_invalid(tmp_path):
    data = np.array([[[1.0, -9999.0, np.nan], [np.inf, 5.0, -np.inf]]], dtype=np.float32)
    path = write_raster(tmp_path / "f.tif", data, nodata=-9999.0)
    values, valid = Image(path).read()
    assert valid.tolist() == [[[True, False, False], [False, True, False]]]
    np.testing.assert_array_equal(values[valid], [1.0, 5.0])


def test_nan_nodata(tmp_path):
    data = np.array([[[1.0, np.nan], [2.5, 0.0]]], dtype=np.float32)
    path = write_raster(tmp_path / "nan.tif", data, nodata=np.nan)
    image = Image(path)
    assert np.isnan(image.nodata)
    _, valid = image.read()
    assert valid.tolist() == [[[True, False], [True, True]]]


def test_nan_nodata_leaves_infinities_out_too(tmp_path):
    data = np.array([[[1.0, np.nan], [np.inf, -np.inf]]], dtype=np.float32)
    image = Image(write_raster(tmp_path / "nan_inf.tif", data, nodata=np.nan))
    _, valid = image.read()
    assert valid.tolist() == [[[True, False], [False, False]]]
    assert image.statistics().count.tolist() == [1] and image.statistics().mean[0] == 1.0


def test_float_without_nodata_still_rejects_nan(tmp_path):
    data = np.array([[[1.0, np.nan], [0.0, 3.0]]], dtype=np.float64)
    _, valid = Image(write_raster(tmp_path / "plain.tif", data)).read()
    assert valid.tolist() == [[[True, False], [True, True]]]


def test_integer_without_nodata_or_mask_is_all_valid(tmp_path):
    data = np.zeros((2, 4, 5), dtype=np.uint8)
    _, valid = Image(write_raster(tmp_path / "zeros.tif", data)).read()
    assert valid.all() and valid.shape == (2, 4, 5)


def test_internal_dataset_mask_defines_validity(tmp_path):
    data = np.full((2, 6, 8), 7, dtype=np.uint16)
    mask = np.full((6, 8), 255, dtype=np.uint8)
    mask[:, :3] = 0
    path = tmp_path / "masked.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        dtype="uint16",
        count=2,
        width=8,
        height=6,
        crs="EPSG:32621",
        transform=rasterio.transform.from_origin(0, 60, 10, 10),
    ) as dataset:
        dataset.write(data)
        dataset.write_mask(mask)
    image = Image(path)
    assert image.nodata is None and image.profile["dataset_mask"]
    _, valid = image.read()
    np.testing.assert_array_equal(valid, np.broadcast_to(mask > 0, (2, 6, 8)))
    _, part = image.read(Window(2, 1, 3, 2))
    assert part.tolist() == [[[False, True, True]] * 2] * 2
    assert image.statistics().count.tolist() == [30.0, 30.0]


def test_footprint_area_matches_valid_pixels(data_dir):
    sample = json.loads((data_dir / "sample.json").read_text())["tiles"][0]
    image = Image(data_dir / "tile_00.tif")
    _, valid = image.read()
    pixel_area = abs(image.transform.a * image.transform.e)
    expected = valid.any(axis=0).sum() * pixel_area
    assert image.footprint.area == pytest.approx(expected, rel=1e-9)
    assert image.footprint.area / (image.width * image.height * pixel_area) == pytest.approx(
        sample["valid_fraction"], abs=0.002
    )
    left, bottom, right, top = image.footprint.bounds
    assert image.bounds[0] <= left < right <= image.bounds[2]
    assert image.bounds[1] <= bottom < top <= image.bounds[3]


def test_unreadable_file_raises_naming_it(tmp_path):
    path = tmp_path / "notes.tif"
    path.write_text("this is not a raster\n")
    with pytest.raises(SpectralMatchError, match="notes.tif") as error:
        _ = Image(path).count
    assert "cannot be read" in str(error.value)


def test_missing_file_raises_naming_it(tmp_path):
    with pytest.raises(SpectralMatchError, match="absent.tif"):
        _ = Image(tmp_path / "absent.tif").profile


def test_valid_mask_helper_agrees_with_image(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(-5, 5, size=(3, 20, 30)).astype(np.int16)
    path = write_raster(tmp_path / "i16.tif", data, nodata=0)
    values, valid = Image(path).read()
    np.testing.assert_array_equal(valid, valid_mask(values, 0))
    assert 0.8 < valid.mean() < 0.95
