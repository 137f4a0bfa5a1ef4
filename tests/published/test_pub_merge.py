"""The published package's tests of ``merge_rasters`` (one file, tiles, VRTs, overviews) and
``compute_overviews``, ported: the same calls with the same keywords."""

from __future__ import annotations

import inspect
import math
import os
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
import rasterio
from published_data import dummy_raster

from spectralmatch import (
    Match,
    SpectralMatchError,
    compute_overviews,
    joint_coregistration,
    merge_rasters,
    pipeline,
)
from spectralmatch.errors import SpectralMatchWarning


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


@pytest.fixture
def three_flat_rasters(tmp_path) -> list[str]:
    """50, 100 and 150: three uint8 32 px squares on one place, nodata 0."""
    return [
        dummy_raster(tmp_path / "input" / f"raster_{i}.tif", width=32, height=32, count=1, fill=v)
        for i, v in enumerate((50, 100, 150))
    ]


def test_merge_rasters_with_no_option_keeps_the_first_valid_value(tmp_path, three_flat_rasters):
    """The published test_merge_rasters_minimal: its parametrized body is never run there."""
    output = tmp_path / "output" / "merged_minimal.tif"
    assert merge_rasters(input_images=three_flat_rasters, output_image_path=str(output)) == str(
        output
    )
    with rasterio.open(output) as dataset:
        assert (dataset.dtypes, dataset.nodata, dataset.shape) == (("uint8",), 0, (32, 32))
        np.testing.assert_array_equal(dataset.read(1), 50)


def test_merge_rasters_with_every_option_gives_the_nodata_to_the_mosaic(
    tmp_path, three_flat_rasters
):
    """uint8 inputs cannot hold 9999: they keep their nodata (0), which the mosaic marks
    with 9999 in uint16, and a warning names them."""
    first = three_flat_rasters[0]
    with rasterio.open(first, "r+") as dataset:  # a nodata corner in the first image
        dataset.write(np.zeros((1, 8, 8), "uint8"), window=((0, 8), (0, 8)))
    output = tmp_path / "output" / "merged_all.tif"
    with pytest.warns(SpectralMatchWarning, match="9999 cannot be held by the data of raster_0"):
        merge_rasters(
            input_images=three_flat_rasters,
            output_image_path=str(output),
            io_threads=2,
            tile_threads=2,
            debug_logs=True,
            output_dtype="uint16",
            custom_nodata_value=9999,
        )
    with rasterio.open(output) as dataset:
        assert (dataset.dtypes, dataset.nodata) == (("uint16",), 9999)
        pixels = dataset.read(1)
    assert (pixels[:8, :8] == 100).all()  # the second image fills the first one's hole
    pixels[:8, :8] = 50
    np.testing.assert_array_equal(pixels, 50)
    with pytest.raises(SpectralMatchError, match="9999 cannot be held by the mosaic's uint8"):
        merge_rasters(three_flat_rasters, str(tmp_path / "m.tif"), custom_nodata_value=9999)


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
        ({"image_threads": 2}, "requires output_tiles"),
        ({"overlap": 1}, "overlap needs output_tiles"),
        ({"custom_tiles_csv": "index.csv"}, "custom_tiles_csv needs output_tiles"),
        ({"output_tiles": True, "overlap": -1}, "overlap"),
        ({"output_tiles": True, "overlap": 1.5}, "overlap"),
        ({"output_tiles": True, "overlap": True}, "overlap"),
        ({"output_tiles": True, "overlap": 256}, "overlap"),
        ({"output_tiles": True, "window_size": 16, "overlap": 16}, "overlap"),
        ({"output_tiles": True, "custom_tiles_csv": "../index.csv"}, "custom_tiles_csv"),
        ({"output_tiles": True, "custom_tiles_csv": True}, "custom_tiles_csv"),
        ({"resampling_method": "unknown"}, "resampling_method"),
        ({"resume_from_outputs": "maybe"}, "resume_from_outputs"),
        ({"window_scales": (2, 2)}, "window_scales"),
        ({"output_tiles": True, "window_scales": (2, 8)}, "window_scales"),
        ({"window_size": True}, "window_size"),
        ({"window_size": 17}, "multiple of 16"),
        ({"create_vrts": "Custom.vrt"}, "create_vrts needs output_tiles"),
        ({"output_tiles": True, "create_vrts": "../Custom.vrt"}, "create_vrts"),
        ({"output_tiles": True, "create_vrts": "/Custom.vrt"}, "create_vrts"),
        ({"output_tiles": True, "create_vrts": "Custom.tif"}, "create_vrts"),
        ({"output_tiles": True, "create_vrts": ".vrt"}, "create_vrts"),
        ({"output_tiles": True, "create_vrts": True}, "create_vrts"),
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


@pytest.mark.parametrize("scales", [(2, 8), None, ()])
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


def test_output_paths_must_be_a_folder_for_tiles_and_a_file_without(tmp_path):
    (tmp_path / "existing").write_text("file")
    for path in (tmp_path / "output.tif", tmp_path / "existing"):
        with pytest.raises(ValueError, match="must be a folder"):
            merge_rasters(["unused.tif"], str(path), output_tiles=True)
    with pytest.raises(ValueError, match="must be a file"):
        merge_rasters(["unused.tif"], str(tmp_path))


@pytest.mark.parametrize("workers", [None, 2])
def test_tiles_with_overlap_put_together_are_the_single_mosaic(merge_sources, tmp_path, workers):
    single = tmp_path / "merged.tif"
    folder = tmp_path / "tiles"
    merge_rasters(merge_sources, str(single), custom_nodata_value=65535)
    result = merge_rasters(
        merge_sources,
        str(folder),
        output_tiles=True,
        image_threads=workers,
        window_size=24,
        overlap=4,
        custom_tiles_csv="index.csv",
        custom_nodata_value=65535,
        output_dtype="Float32",
    )
    assert result == str(folder)
    tiles = sorted(folder.glob("*.tif"))
    # 112 x 64 pixels in tiles of 24 stepping 20: 6 columns, 3 rows
    assert len(tiles) == 18
    with rasterio.open(single) as reference:
        expected = reference.read()
    np.testing.assert_array_equal(tiles_on_grid(folder, single), expected)
    rows = [line.split(";") for line in (folder / "index.csv").read_text().splitlines()]
    assert len(rows) == len(tiles)
    for name, minx, maxx, miny, maxy in rows:
        with rasterio.open(folder / name) as tile:
            left, bottom, right, top = tile.bounds
            assert tuple(map(float, (minx, maxx, miny, maxy))) == (left, right, bottom, top)
            assert tile.nodata == 65535
            assert tile.dtypes[0] == "float32"


def test_pyramids_written_in_threads_are_those_written_in_one(merge_sources, tmp_path):
    for workers, name in [(None, "serial"), (2, "parallel")]:
        merge_rasters(
            merge_sources,
            str(tmp_path / name),
            output_tiles=True,
            image_threads=workers,
            window_size=24,
            overlap=3,
            build_overviews=True,
            resampling_method="bilinear",
            custom_tiles_csv="index.csv",
        )
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    assert [p.name for p in sorted(serial.iterdir()) if p.is_dir()] == ["1", "2", "3", "4", "5"]
    assert {p.relative_to(serial) for p in serial.rglob("*")} == {
        p.relative_to(parallel) for p in parallel.rglob("*")
    }
    for path in serial.rglob("*.tif"):
        with rasterio.open(path) as a, rasterio.open(parallel / path.relative_to(serial)) as b:
            assert a.transform == b.transform
            np.testing.assert_array_equal(a.read(), b.read())
    for path in serial.rglob("*.csv"):
        assert path.read_text() == (parallel / path.relative_to(serial)).read_text()


@pytest.mark.parametrize("workers", [None, 2])
def test_tile_resume_keeps_valid_tiles_and_rewrites_missing_and_broken(
    merge_sources, tmp_path, workers
):
    folder = tmp_path / "tiles"
    options = {
        "output_tiles": True,
        "image_threads": workers,
        "window_size": 32,
        "build_overviews": True,
        "custom_tiles_csv": "index.csv",
    }
    merge_rasters(merge_sources, str(folder), **options)
    tiles = sorted(folder.rglob("*.tif"))
    original = {path: path.read_bytes() for path in tiles}
    untouched = tiles[-1]
    stamp = untouched.stat().st_mtime_ns
    broken, missing = tiles[0], tiles[1]
    missing.unlink()
    merge_rasters(merge_sources, str(folder), resume_from_outputs="yes", **options)
    assert missing.exists()
    # a broken tile of the pyramid and one of the top level are written again
    broken.write_bytes(b"invalid raster")
    next(folder.glob("*.tif")).write_bytes(b"invalid base tile")
    merge_rasters(merge_sources, str(folder), resume_from_outputs="validate", **options)
    assert all(path.read_bytes() == original[path] for path in tiles)
    assert untouched.stat().st_mtime_ns == stamp
    merge_rasters(merge_sources, str(folder), resume_from_outputs="no", **options)
    assert untouched.stat().st_mtime_ns != stamp


def test_single_file_overviews_and_a_resume_that_needs_no_input(merge_sources, tmp_path):
    output = str(tmp_path / "merged.tif")
    merge_rasters(merge_sources, output, build_overviews=True)
    with rasterio.open(output) as dataset:
        assert len(dataset.overviews(1)) == 5
    assert merge_rasters(["missing.tif"], output, resume_from_outputs="validate") == output


def test_a_small_mosaic_gets_only_the_pyramid_levels_it_can_hold(tmp_path):
    source = dummy_raster(tmp_path / "tiny.tif", width=3, height=3, count=1)
    folder = tmp_path / "tiles"
    merge_rasters([source], str(folder), output_tiles=True, build_overviews=True)
    assert (folder / "1" / "mosaic_1_1.tif").exists()
    assert not (folder / "2").exists()


def test_the_vrt_links_every_band_to_the_pyramid_and_moves_with_it(tmp_path):
    source = dummy_raster(tmp_path / "source.tif", width=128, height=64, dtype="uint16")
    folder = tmp_path / "tiles"
    merge_rasters(
        [source],
        str(folder),
        output_tiles=True,
        window_size=32,
        build_overviews=True,
        create_vrts="My Mosaic.vrt",
    )
    for path in (folder / "1").glob("*.tif"):
        with rasterio.open(path, "r+") as tile:
            for band in range(1, 4):
                tile.write(np.full((tile.height, tile.width), 1000 + band, "uint16"), band)
    with rasterio.open(folder / "My Mosaic.vrt") as dataset:
        assert dataset.count == 3
        assert len(dataset.overviews(1)) == 5
        np.testing.assert_array_equal(dataset.read(), 100)
        half = dataset.read(out_shape=(3, 32, 64))
    for band in range(3):
        np.testing.assert_array_equal(half[band], 1001 + band)
    for path in folder.rglob("*.vrt"):
        sources = ElementTree.parse(path).findall(".//SourceFilename")
        assert all(node.attrib.get("relativeToVRT") == "1" for node in sources)
        assert str(tmp_path) not in path.read_text()
    moved = tmp_path / "moved"
    folder.rename(moved)
    with rasterio.open(moved / "My Mosaic.vrt") as dataset:
        np.testing.assert_array_equal(dataset.read(), 100)
        np.testing.assert_array_equal(dataset.read(1, out_shape=(32, 64)), 1001)


def test_pyramid_levels_cover_the_mosaic_and_its_odd_edges(tmp_path):
    source = dummy_raster(
        tmp_path / "odd.tif", width=95, height=79, count=1, fill=100, origin=(0, 79)
    )
    folder = tmp_path / "tiles"
    merge_rasters([source], str(folder), output_tiles=True, window_size=24, build_overviews=True)
    with rasterio.open(folder / "MergedImage.vrt") as dataset:
        assert len(dataset.overviews(1)) == 5
        for factor in (2, 4, 8, 16, 32):
            shape = (math.ceil(79 / factor), math.ceil(95 / factor))
            np.testing.assert_array_equal(dataset.read(1, out_shape=shape), 100)
    for level, factor in enumerate((2, 4, 8, 16, 32), start=1):
        with rasterio.open(folder / str(level) / "MergedImage.vrt") as dataset:
            assert dataset.shape == (math.ceil(79 / factor), math.ceil(95 / factor))
            assert dataset.res == (factor, factor)
            # its own grid: from the mosaic's corner, past its far edges by less than a pixel
            left, bottom, right, top = dataset.bounds
            assert (left, top) == (0, 79) and 95 <= right < 95 + factor and -factor < bottom <= 0
            np.testing.assert_array_equal(dataset.read(1), 100)


def test_resume_writes_the_vrts_again_and_ignores_other_rasters(merge_sources, tmp_path):
    folder = tmp_path / "tiles"
    options = {
        "output_tiles": True,
        "window_size": 32,
        "build_overviews": True,
        "window_scales": (2, 4),
    }
    merge_rasters(merge_sources, str(folder), **options)
    vrt = folder / "MergedImage.vrt"
    with rasterio.open(vrt) as dataset:
        expected = dataset.read()
    stamps = {path: path.stat().st_mtime_ns for path in folder.rglob("*.tif")}
    vrt.unlink()
    (folder / "1" / "MergedImage.vrt").unlink()
    dummy_raster(folder / "unrelated.tif", origin=(200, 10))
    merge_rasters(merge_sources, str(folder), resume_from_outputs="yes", **options)
    assert all(path.stat().st_mtime_ns == stamp for path, stamp in stamps.items())
    with rasterio.open(vrt) as dataset:
        np.testing.assert_array_equal(dataset.read(), expected)
        assert len(dataset.overviews(1)) == 2
        assert dataset.read(1, out_shape=(32, 56)).shape == (32, 56)


@pytest.mark.parametrize(
    "function",
    [
        Match.global_regression,
        Match.local_block_adjustment,
        joint_coregistration,
    ],
)
def test_overview_scales_are_checked_before_any_work(function):
    with pytest.raises(ValueError, match="window_scales"):
        function(["missing.tif"], "unused", window_scales=(4, 2), build_overviews=True)
    assert not os.path.exists("unused")


def test_every_overview_function_defaults_to_the_same_scales():
    """The published test also checks gdal_retile's flags with a mock; only the defaults
    are ours to check."""
    scales = (2, 4, 8, 16, 32)
    functions = [merge_rasters, compute_overviews, Match.global_regression]
    functions += [Match.local_block_adjustment, joint_coregistration]
    for function in functions:
        assert inspect.signature(function).parameters["window_scales"].default == scales
    assert inspect.signature(pipeline).parameters["shared_window_scales"].default == scales
