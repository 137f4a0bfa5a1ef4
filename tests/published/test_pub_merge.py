"""The published package's tests of ``merge_rasters`` (one file, tiles, VRTs, overviews) and
``compute_overviews``, ported: the same calls with the same keywords."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from published_data import dummy_raster

from spectralmatch import compute_overviews, merge_rasters


@pytest.fixture
def merge_sources(tmp_path) -> list[str]:
    """Two 64 px uint16 ramps overlapping by 16 columns, each with an 8 px nodata hole."""
    paths = []
    for index, left in enumerate((0, 48)):
        pixels = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) + 100 * index
        pixels[16:24, 16:24] = 65535
        path = tmp_path / f"source_{index}.tif"
        paths.append(dummy_raster(path, data=pixels, nodata=65535, origin=(left, 64)))
    return paths


@pytest.mark.parametrize("resolution, output_tiles", [(2, True), (0.5, False)])
def test_a_numeric_resolution_sets_the_pixel_size(tmp_path, resolution, output_tiles):
    source = dummy_raster(tmp_path / "source.tif", width=32, height=32, count=1, fill=75)
    output = tmp_path / ("tiles" if output_tiles else "merged.tif")
    merge_rasters(
        [source], str(output), output_tiles=output_tiles, resolution=resolution, window_size=16
    )
    mosaic = output / "MergedImage.vrt" if output_tiles else output
    with rasterio.open(mosaic) as dataset:
        assert dataset.width == dataset.height == int(32 / resolution)
        assert (dataset.transform.a, dataset.transform.e) == (resolution, -resolution)
        np.testing.assert_array_equal(dataset.read(), 75)


@pytest.mark.parametrize("resolution", [True, 0, float("nan")])
def test_a_bad_resolution_is_refused(tmp_path, resolution):
    with pytest.raises(ValueError, match="resolution"):
        merge_rasters(["unused.tif"], str(tmp_path / "merged.tif"), resolution=resolution)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"output_tiles": "yes"}, "output_tiles"),
        ({"output_tiles": True, "overlap": -1}, "overlap"),
        ({"output_tiles": True, "window_size": 16, "overlap": 16}, "overlap"),
        ({"output_tiles": True, "custom_tiles_csv": "../index.csv"}, "custom_tiles_csv"),
        ({"resampling_method": "unknown"}, "resampling_method"),
        ({"output_tiles": True, "create_vrts": "../Custom.vrt"}, "create_vrts"),
        ({"output_tiles": True, "create_vrts": "Custom.tif"}, "create_vrts"),
    ],
)
def test_tile_options_are_checked(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        merge_rasters(["unused.tif"], str(tmp_path / "output"), **options)


def test_without_overviews_the_vrt_has_none_and_one_file_gets_no_vrt(merge_sources, tmp_path):
    folder = tmp_path / "tiles"
    merge_rasters(merge_sources, str(folder), output_tiles=True)
    with rasterio.open(folder / "MergedImage.vrt") as dataset:
        assert dataset.overviews(1) == []
    merge_rasters(merge_sources, str(tmp_path / "single.tif"))
    assert not (tmp_path / "MergedImage.vrt").exists()


@pytest.mark.parametrize("scales", [(2, 8), None])
def test_compute_overviews_builds_the_scales_in_place(tmp_path, scales):
    source = dummy_raster(tmp_path / "source.tif", width=64, height=64, count=1)
    assert compute_overviews([source], window_scales=scales) == [source]
    with rasterio.open(source) as dataset:
        assert dataset.overviews(1) == list(scales or ())
    for level, factor in enumerate(scales or ()):
        with rasterio.open(source, overview_level=level) as overview:
            assert overview.width == 64 // factor


def tiles_on_grid(folder, like) -> np.ndarray:
    """The tiles in ``folder`` put back on the grid of the raster ``like``, each tile's
    pixels where its transform says."""
    with rasterio.open(like) as reference:
        mosaic = np.zeros((reference.count, reference.height, reference.width), "float64")
        grid = reference.transform
    for path in sorted(folder.glob("*.tif")):
        with rasterio.open(path) as tile:
            col, row = (round(value) for value in ~grid * (tile.transform.c, tile.transform.f))
            mosaic[:, row : row + tile.height, col : col + tile.width] = tile.read()
    return mosaic


def test_resampling_applies_to_mixed_resolution_inputs(tmp_path):
    fine = dummy_raster(
        tmp_path / "fine.tif", width=32, height=32, count=1, dtype="uint16", origin=(0, 32)
    )
    ramp = np.arange(16 * 16, dtype=np.uint16).reshape(1, 16, 16) + 1
    coarse = dummy_raster(tmp_path / "coarse.tif", data=ramp, origin=(32, 32), pixel=2.0)
    outputs = {}
    for method in ("nearest", "bilinear"):
        single = tmp_path / f"{method}.tif"
        folder = tmp_path / method
        merge_rasters([fine, coarse], str(single), resampling_method=method)
        merge_rasters(
            [fine, coarse],
            str(folder),
            output_tiles=True,
            window_size=32,
            image_threads=2,
            resampling_method=method,
        )
        with rasterio.open(single) as reference:
            outputs[method] = reference.read()
        np.testing.assert_array_equal(tiles_on_grid(folder, single), outputs[method])
    assert np.any(outputs["nearest"] != outputs["bilinear"])
