"""merge_rasters on other grids and resolutions, as tiles with a VRT, with overviews;
compute_overviews."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from conftest import DATA_DIR, read_raster, write_raster
from rasterio.transform import Affine
from rasterio.windows import from_bounds

from spectralmatch import SpectralMatchError, compute_overviews, merge_rasters
from spectralmatch.cli.main import main

TILES = sorted(DATA_DIR.glob("tile_*.tif"))


def _coarse_copy(source, path, factor: int = 2):
    """``source`` decimated by ``factor`` (every factor-th pixel) on a grid as much coarser."""
    with rasterio.open(source) as dataset:
        values = dataset.read()[:, ::factor, ::factor]
        transform = dataset.transform * Affine.scale(factor)
        write_raster(path, values, transform=transform, nodata=dataset.nodata, crs=dataset.crs)
    return path


@pytest.fixture
def mixed(tmp_path):
    """The sample tiles, the second one at twice the pixel size."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for path in TILES:
        shutil.copy(path, folder / path.name)
    _coarse_copy(TILES[1], folder / TILES[1].name)
    return folder


def test_merge_resamples_an_image_of_another_resolution_onto_the_finest_grid(mixed, tmp_path):
    merged = merge_rasters(mixed, tmp_path / "m.tif")
    with rasterio.open(merged) as mosaic, rasterio.open(TILES[0]) as first:
        assert mosaic.res == (30.0, 30.0) and mosaic.crs == first.crs
        # grid lines through the first image's corner, over the union (tile_01 is 30 m higher)
        assert (mosaic.bounds.left, mosaic.bounds.top) == (first.bounds.left, -2796855.0)
        full = mosaic.read()
    original = read_raster(TILES[1])
    # nearest from the 60 m copy: 30 m pixel (r, c) of tile_01 is 60 m pixel (r//2, c//2)
    _, height, width = original.shape
    expected = original[:, ::2, ::2].repeat(2, axis=1).repeat(2, axis=2)[:, :height, :width]
    # tile_01 starts at column 262; from its column 107 on, east of tile_00, it comes first
    got = full[:, :height, 262 + 107 : 262 + width]
    valid = expected[:, :, 107:] > 0
    assert valid.mean() > 0.9
    assert np.array_equal(got[valid], expected[:, :, 107:][valid])


def test_merge_to_a_coarser_resolution_bilinear_is_close_to_the_inputs(mixed, tmp_path):
    fine = read_raster(merge_rasters(DATA_DIR, tmp_path / "fine.tif"))
    merged = merge_rasters(
        mixed, tmp_path / "m.tif", resolution="lowest", resampling_method="bilinear"
    )
    with rasterio.open(merged) as mosaic:
        assert mosaic.res == (60.0, 60.0)
        coarse = mosaic.read()
        assert mosaic.bounds.left == 729405.0 and mosaic.bounds.top == -2796855.0 + 30
    # coarse row k + 1 covers fine rows 2k + 1 and 2k + 2 (the grid starts 30 m higher):
    # each 60 m pixel is close to the mean of the 2 x 2 fine pixels it covers (median
    # 4e-5 relative; a grid one 60 m pixel off gives 5e-3)
    blocks = fine[:, 1:613, :624].astype(float).reshape(3, 306, 2, 312, 2)
    valid = (blocks > 0).all(axis=(2, 4)) & (coarse[:, 1:307, :312] > 0)
    mean = blocks.mean(axis=(2, 4))
    assert np.median(np.abs(coarse[:, 1:307, :312][valid] / mean[valid] - 1)) < 1e-3


def test_merge_into_tiles_with_overlap_reads_through_the_vrt_as_one_mosaic(tmp_path):
    from spectralmatch import voronoi_center_seamline

    seams = voronoi_center_seamline(DATA_DIR, tmp_path / "seams.gpkg")
    options = {"seamlines": seams, "feather": 6}
    single = merge_rasters(DATA_DIR, tmp_path / "single.tif", **options)
    folder = tmp_path / "tiles"
    merge_rasters(
        DATA_DIR,
        folder,
        output_tiles=True,
        window_size=200,
        overlap=16,
        custom_tiles_csv="index.csv",
        **options,
    )
    with rasterio.open(single) as mosaic:
        expected, transform, crs, size = mosaic.read(), mosaic.transform, mosaic.crs, mosaic.shape
    # 625 x 615 pixels in tiles of 200 stepping 184: 4 columns, 4 rows (the last short)
    assert size == (615, 625)
    names = sorted(path.name for path in folder.glob("*.tif"))
    assert names == [f"mosaic_{row}_{col}.tif" for row in range(1, 5) for col in range(1, 5)]
    with rasterio.open(folder / "MergedImage.vrt") as vrt:
        assert (vrt.transform, vrt.crs, vrt.shape, vrt.nodata) == (transform, crs, size, 0)
        assert np.array_equal(vrt.read(), expected)
    index = (folder / "index.csv").read_text().splitlines()
    assert len(index) == len(names)
    for line in index:
        name, *bounds = line.split(";")
        with rasterio.open(folder / name) as tile:
            left, right, bottom, top = (float(value) for value in bounds)
            assert (left, bottom, right, top) == tuple(tile.bounds)
            window = from_bounds(*tile.bounds, transform=transform).round_offsets()
            assert tile.width <= 200 and tile.height <= 200
            assert np.array_equal(tile.read(), expected[(slice(None), *window.toslices())])
    with rasterio.open(folder / "mosaic_1_2.tif") as second:
        assert second.transform.c == transform.c + 184 * 30


def test_merge_skips_tiles_over_no_image(tmp_path):
    values = np.full((1, 10, 10), 7, "uint16")
    folder = tmp_path / "in"
    write_raster(folder / "a.tif", values, transform=Affine(10, 0, 0, 0, -10, 300), nodata=0)
    write_raster(folder / "b.tif", values, transform=Affine(10, 0, 200, 0, -10, 100), nodata=0)
    merge_rasters(folder, tmp_path / "t", output_tiles=True, window_size=10)
    assert sorted(p.name for p in (tmp_path / "t").glob("*.tif")) == [
        "mosaic_1_1.tif",
        "mosaic_3_3.tif",
    ]
    with rasterio.open(tmp_path / "t" / "MergedImage.vrt") as vrt:
        mosaic = vrt.read(1)
    assert mosaic.shape == (30, 30) and (mosaic == 7).sum() == 200 and (mosaic == 0).sum() == 700


@pytest.mark.parametrize("cog", [False, True])
def test_merge_builds_overviews_in_the_finished_file(tmp_path, cog):
    plain = read_raster(merge_rasters(DATA_DIR, tmp_path / "plain.tif"))
    path = merge_rasters(
        DATA_DIR, tmp_path / "m.tif", build_overviews=True, window_scales=(2, 4), save_as_cog=cog
    )
    with rasterio.open(path) as dataset:
        assert dataset.overviews(1) == [2, 4]
        assert np.array_equal(dataset.read(), plain)
        half = dataset.read(1, out_shape=(dataset.height // 2, dataset.width // 2))
    assert 0.9 < half[half > 0].mean() / plain[0][plain[0] > 0].mean() < 1.1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif", "plain.tif"]


def test_merge_builds_a_pyramid_of_tiles_whose_vrts_are_the_overviews(tmp_path):
    mosaic = read_raster(merge_rasters(DATA_DIR, tmp_path / "m.tif")).astype(float)
    folder = tmp_path / "t"
    options = {"build_overviews": True, "window_scales": (2, 4), "custom_tiles_csv": "i.csv"}
    merge_rasters(DATA_DIR, folder, output_tiles=True, window_size=128, **options)
    above = mosaic
    for level in (1, 2):
        with rasterio.open(folder / str(level) / "MergedImage.vrt") as vrt:
            assert vrt.res == (30.0 * 2**level, 30.0 * 2**level)
            assert vrt.shape == (math.ceil(above.shape[1] / 2), math.ceil(above.shape[2] / 2))
            values, valid = vrt.read().astype(float), vrt.read_masks() > 0
        tiles = sorted(p.name for p in (folder / str(level)).glob("*.tif"))
        assert len((folder / str(level) / "i.csv").read_text().splitlines()) == len(tiles) > 0
        # each pixel: the mean of the valid pixels of the 2 x 2 above it
        padded = np.pad(above, [(0, 0), (0, above.shape[1] % 2), (0, above.shape[2] % 2)])
        blocks = padded.reshape(3, padded.shape[1] // 2, 2, padded.shape[2] // 2, 2)
        counts = (blocks > 0).sum(axis=(2, 4))
        assert np.array_equal(valid, counts > 0)
        expected = blocks.sum(axis=(2, 4))[valid] / counts[valid]
        assert np.abs(values[valid] - expected).max() <= 0.5
        above = np.where(valid, values, 0)
    with rasterio.open(folder / "MergedImage.vrt") as vrt:
        assert len(vrt.overviews(1)) == 2
        assert np.array_equal(vrt.read(), mosaic)
        half = vrt.read(out_shape=(3, math.ceil(vrt.height / 2), math.ceil(vrt.width / 2)))
    with rasterio.open(folder / "1" / "MergedImage.vrt") as level_one:
        assert np.array_equal(half, level_one.read())
    assert not list(folder.rglob(".spectralmatch-tmp-*"))


def test_compute_overviews_in_place_or_into_copies(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for path in TILES[:2]:
        shutil.copy(path, inputs / path.name)
    copies = compute_overviews(inputs, output_image_paths=tmp_path / "out", window_scales=(2,))
    assert [p.split("/")[-1] for p in copies] == [p.name for p in TILES[:2]]
    for source, copy in zip(TILES[:2], copies, strict=True):
        with rasterio.open(copy) as dataset:
            assert dataset.overviews(1) == [2]
            assert np.array_equal(dataset.read(), read_raster(source))
        with rasterio.open(inputs / source.name) as dataset:
            assert dataset.overviews(1) == []
    assert compute_overviews(inputs) == [str(inputs / p.name) for p in TILES[:2]]
    with rasterio.open(inputs / TILES[0].name) as dataset:
        assert len(dataset.overviews(3)) == 5 and dataset.overviews(3)[:3] == [2, 4, 8]
        assert np.array_equal(dataset.read(), read_raster(TILES[0]))
    assert sorted(p.name for p in inputs.iterdir()) == [p.name for p in TILES[:2]]


@pytest.mark.parametrize(
    ("options", "keyword"),
    [
        ({"resolution": "finest"}, "resolution"),
        ({"resolution": -30}, "resolution"),
        ({"resolution": (30, 0)}, "resolution"),
        ({"resampling_method": "nearst"}, "resampling_method"),
        ({"overlap": 4}, "overlap"),
        ({"output_tiles": True, "overlap": -1}, "overlap"),
        ({"output_tiles": True, "overlap": 256}, "overlap"),
        ({"output_tiles": True, "window_size": 0}, "window_size"),
        ({"custom_tiles_csv": "tiles.csv"}, "custom_tiles_csv"),
        ({"output_tiles": True, "custom_tiles_csv": "sub/tiles.csv"}, "custom_tiles_csv"),
        ({"output_tiles": True, "create_vrts": "mosaic.tif"}, "create_vrts"),
        ({"create_vrts": "other.vrt"}, "create_vrts"),
        ({"build_overviews": "yes"}, "build_overviews"),
        ({"build_overviews": True, "window_scales": (1, 2)}, "window_scales"),
        ({"output_tiles": "yes"}, "output_tiles"),
    ],
)
def test_merge_refuses_bad_values_naming_the_keyword(tmp_path, options, keyword):
    with pytest.raises(SpectralMatchError, match=f"merge_rasters: {keyword} "):
        merge_rasters(DATA_DIR, tmp_path / "m", **options)
    assert list(tmp_path.iterdir()) == []


def test_merge_refuses_images_in_another_crs_pointing_to_align(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(TILES[0], folder / TILES[0].name)
    with rasterio.open(TILES[1]) as dataset:
        write_raster(
            folder / "b.tif",
            dataset.read(),
            transform=dataset.transform,
            nodata=0,
            crs="EPSG:32622",
        )
    with pytest.raises(SpectralMatchError, match=r"align --dst-crs"):
        merge_rasters(folder, tmp_path / "m.tif")
    assert not (tmp_path / "m.tif").exists()


def test_cli_merge_tiles(tmp_path):
    single = read_raster(merge_rasters(DATA_DIR, tmp_path / "single.tif"))
    folder = tmp_path / "tiles"
    arguments = ["merge", str(DATA_DIR), "-o", str(folder), "--tiles", "--tile-size", "400"]
    result = CliRunner().invoke(main, [*arguments, "--overlap", "8", "--tiles-csv", "i.csv"])
    assert result.exit_code == 0, result.output
    assert len((folder / "i.csv").read_text().splitlines()) == 4
    assert np.array_equal(read_raster(folder / "MergedImage.vrt"), single)
    result = CliRunner().invoke(
        main, ["merge", str(DATA_DIR), "-o", str(tmp_path / "x.tif"), "--tile-size", "400"]
    )
    assert result.exit_code != 0 and "--tile-size needs --tiles" in result.output


def test_overviews_of_a_tiny_mosaic_keep_only_the_useful_levels(tmp_path):
    from rasterio.transform import from_origin

    small = write_raster(
        tmp_path / "in" / "small.tif",
        np.full((1, 3, 3), 5, "uint16"),
        transform=from_origin(500000.0, 4000000.0, 30, 30),
        nodata=0,
    )
    out = merge_rasters([small], tmp_path / "mosaic.tif", build_overviews=True)
    with rasterio.open(out) as dataset:
        assert dataset.overviews(1) == [] and (dataset.read() == 5).all()


def test_merge_output_dtype_and_custom_nodata_value(tmp_path):
    out = merge_rasters(
        DATA_DIR, tmp_path / "f32.tif", output_dtype="float32", custom_nodata_value=0
    )
    single = merge_rasters(DATA_DIR, tmp_path / "u16.tif")
    with rasterio.open(out) as wide, rasterio.open(single) as plain:
        assert wide.dtypes[0] == "float32" and wide.nodata == 0
        assert np.array_equal(wide.read(), plain.read().astype("float32"))
    with pytest.raises(
        SpectralMatchError, match="custom_nodata_value -1 cannot be held by the mosaic's uint16"
    ):
        merge_rasters(DATA_DIR, tmp_path / "bad.tif", custom_nodata_value=-1)


def test_merging_images_without_nodata_masks_where_no_image_is(tmp_path):
    from rasterio.transform import from_origin

    folder = tmp_path / "in"
    write_raster(folder / "a.tif", np.full((1, 10, 10), 7, "uint8"),
                 transform=from_origin(0.0, 100.0, 1, 1))  # fmt: skip
    write_raster(folder / "b.tif", np.full((1, 10, 10), 9, "uint8"),
                 transform=from_origin(20.0, 80.0, 1, 1))  # fmt: skip
    out = merge_rasters(folder, tmp_path / "mosaic.tif")
    with rasterio.open(out) as dataset:
        data, mask = dataset.read(1), dataset.dataset_mask()
    assert dataset.nodata is None and data.shape == (30, 30)
    assert (mask[:10, :10] > 0).all() and (data[:10, :10] == 7).all()
    assert (mask[20:, 20:] > 0).all() and (data[20:, 20:] == 9).all()
    assert (mask[:10, 20:] == 0).all() and (mask[20:, :10] == 0).all()  # nothing there


def test_tiles_into_a_raster_file_name_are_refused(tmp_path):
    with pytest.raises(SpectralMatchError, match="output.tif: names a raster file"):
        merge_rasters(DATA_DIR, tmp_path / "output.tif", output_tiles=True)
    assert not (tmp_path / "output.tif").exists()


def test_output_dtype_takes_gdal_names_and_refuses_others(tmp_path):
    out = merge_rasters(DATA_DIR, tmp_path / "f.tif", output_dtype="Float32")
    with rasterio.open(out) as dataset:
        assert dataset.dtypes[0] == "float32"
    with pytest.raises(SpectralMatchError, match="merge_rasters: output_dtype must be one of"):
        merge_rasters(DATA_DIR, tmp_path / "bad.tif", output_dtype="complex64")
    assert not (tmp_path / "bad.tif").exists()
