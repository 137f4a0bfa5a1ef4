"""Masks in the fit: raster, vector and function masks leave pixels out of every statistic
(the image's own and its overlap partners'), but not out of the transform.

The tiles are the usual four (``conftest.make_tiles``, tile 0 undistorted) with a bright
"cloud" painted into tile 1 where it overlaps tile 0: a plain fit is pulled far off the
true inverse distortion by it; with the cloud masked, the fit recovers it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
from conftest import CRS, inverse, paint, read_raster, valid_mask, write_polygons, write_raster
from rasterio.transform import Affine
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds
from shapely.geometry import box

from spectralmatch import (
    ExpressionMask,
    FunctionMask,
    GlobalModel,
    Image,
    ImageCollection,
    Mosaic,
    RasterMask,
    SpectralMatchError,
    VectorMask,
)
from spectralmatch.errors import SpectralMatchWarning
from spectralmatch.masks.base import AnyMask, combine
from spectralmatch.masks.convert import as_mask

#: The cloud in tile 1's own pixels: rows 20..60, cols 4..36, i.e. truth rows 20..60,
#: cols 84..116, inside the 40 px overlap of tiles 0 and 1 and no other overlap.
CLOUD = Window(4, 20, 32, 40)
CLOUD_VALUE = 40000
CLOUD_PIXELS = 32 * 40
#: Bound on the relative gain error of a fit that is not fooled by the cloud.
BOUND = 5e-3


@pytest.fixture
def clouded(tiles):
    """The four tiles, tile 1 with a bright cloud in its overlap with tile 0."""
    paint(tiles.paths[1], CLOUD, CLOUD_VALUE)
    return tiles


def fit(images, **kwargs) -> tuple[Mosaic, GlobalModel]:
    """No change detection: the pixels left out are the masks' alone."""
    model = Mosaic(steps=[GlobalModel(**kwargs)], threads=2, pif=None).fit(images)
    return model, model.steps_[0]


def gain_error(step, tiles) -> float:
    """Largest relative error of the fitted gains against the true inverse distortion."""
    expected, _ = inverse(tiles.gains, tiles.offsets)
    return float(np.abs(step.gains_ / expected - 1).max())


def with_mask(tiles, masks: dict[int, object]) -> list[Image]:
    return [Image(path, mask=masks.get(index)) for index, path in enumerate(tiles.paths)]


def tile_bounds(tiles, index: int, window: Window | None = None):
    with rasterio.open(tiles.paths[index]) as dataset:
        window = window or Window(0, 0, dataset.width, dataset.height)
        return window_bounds(window, dataset.transform)


def raster_mask_on(tiles, index: int, window: Window, path) -> RasterMask:
    """A uint8 raster on tile ``index``'s grid, 1 inside ``window``."""
    with rasterio.open(tiles.paths[index]) as dataset:
        marked = np.zeros((dataset.height, dataset.width), dtype=np.uint8)
        transform = dataset.transform
    marked[window.toslices()] = 1
    return RasterMask(write_raster(path, marked, transform=transform))


def pair_row(step, first: str, second: str) -> int:
    return step.diagnostics_.pairs.index((first, second))


def joint_count(tiles, i: int, j: int, excluded=None) -> int:
    """Pixels of the overlap of tiles i and j valid (all bands) in both and not in
    ``excluded`` (bool, on the truth grid)."""
    shape = tiles.truth.data.shape[1:]
    joint = np.ones(shape, dtype=bool)
    for index in (i, j):
        placed = np.zeros(shape, dtype=bool)
        placed[tiles.windows[index].toslices()] = tiles.valid_of(index).all(axis=0)
        joint &= placed
    if excluded is not None:
        joint &= ~excluded
    return int(joint.sum())


# ---------------------------------------------------------------------- 1. masks in the fit


def test_the_cloud_biases_the_plain_fit(clouded):
    _, step = fit(clouded.paths, reference=[0])
    assert gain_error(step, clouded) > 0.2


def mask_kinds(tiles, tmp_path) -> dict[str, list[Image]]:
    """Every way of masking the cloud, as the images to fit."""
    cloud = box(*tile_bounds(tiles, 1, CLOUD))
    whole = [box(*tile_bounds(tiles, index)) for index in range(4)]
    # a polygon that would take 400 more pixels out of the 0-1 overlap if it were used
    # for tile 0 or 1: it belongs to tile 2, which it does not touch
    decoy = box(*tile_bounds(tiles, 1, Window(0, 70, 40, 10)))
    exclude_file = write_polygons(
        tmp_path / "clouds.gpkg", [cloud, decoy], image=["tile_1", "tile_2"]
    )
    include_file = write_polygons(
        tmp_path / "clear.gpkg",
        [whole[0], whole[1].difference(cloud), whole[2], whole[3]],
        image=tiles.names,
    )
    plain_exclude = write_polygons(tmp_path / "cloud.geojson", [cloud])
    bright = FunctionMask(lambda values: values[0] > 30000)
    return {
        "raster": with_mask(tiles, {1: raster_mask_on(tiles, 1, CLOUD, tmp_path / "m.tif")}),
        "raster {name}": [
            Image(path, mask=RasterMask(str(tmp_path / "masks" / "{name}.tif")))
            for path in tiles.paths
        ],
        "vector exclude": with_mask(tiles, {1: VectorMask(plain_exclude)}),
        "vector exclude, all images": [
            Image(path, mask=VectorMask(plain_exclude)) for path in tiles.paths
        ],
        "vector exclude by field": [
            Image(path, mask=VectorMask(exclude_file, field="image")) for path in tiles.paths
        ],
        "vector include by field": [
            Image(path, mask=VectorMask(include_file, mode="include", field="image"))
            for path in tiles.paths
        ],
        "vector value": [
            Image(path, mask=VectorMask(exclude_file, field="image", value="tile_1"))
            for path in tiles.paths
        ],
        "function": [Image(path, mask=bright) for path in tiles.paths],
        "expression": [Image(path, mask=ExpressionMask("b1 > 30000")) for path in tiles.paths],
        "plain callable": with_mask(tiles, {1: lambda values: values[0] > 30000}),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "raster",
        "raster {name}",
        "vector exclude",
        "vector exclude, all images",
        "vector exclude by field",
        "vector include by field",
        "vector value",
        "function",
        "expression",
        "plain callable",
    ],
)
def test_masked_cloud_is_left_out_of_the_fit(clouded, tmp_path, kind):
    for index in range(4):  # per-image masks for "raster {name}": only tile 1's marks
        raster_mask_on(
            clouded,
            index,
            CLOUD if index == 1 else Window(0, 0, 0, 0),
            tmp_path / "masks" / f"tile_{index}.tif",
        )
    _, plain = fit(clouded.paths, reference=[0])
    _, masked = fit(mask_kinds(clouded, tmp_path)[kind], reference=[0])
    assert gain_error(masked, clouded) < BOUND < gain_error(plain, clouded)
    assert masked.gains_[0].tolist() == [1.0, 1.0, 1.0]
    # the overlap of tiles 0 and 1 lost exactly the cloud's pixels, no other overlap lost any
    row = pair_row(masked, "tile_0", "tile_1")
    expected = plain.diagnostics_.count.copy()
    expected[row] -= CLOUD_PIXELS
    np.testing.assert_array_equal(masked.diagnostics_.count, expected)
    assert plain.diagnostics_.count[row].tolist() == [joint_count(clouded, 0, 1)] * 3


def test_whole_image_statistics_leave_the_masked_pixels_out(clouded):
    """Without a reference the gauge keeps the mean of the images' means and stds: those
    of the unmasked pixels."""
    bright = FunctionMask(lambda values: values[0] > 30000)
    _, step = fit([Image(path, mask=bright) for path in clouded.paths])
    means, stds = [], []
    for index in range(4):
        data = clouded.data_of(index).astype(float)
        keep = clouded.valid_of(index) & ~(data[0] > 30000)[None]
        means.append([data[b][keep[b]].mean() for b in range(3)])
        stds.append([data[b][keep[b]].std() for b in range(3)])
    means, stds = np.array(means), np.array(stds)
    np.testing.assert_allclose(
        (step.gains_ * means + step.offsets_).mean(axis=0), means.mean(axis=0), rtol=1e-9
    )
    np.testing.assert_allclose((step.gains_ * stds).mean(axis=0), stds.mean(axis=0), rtol=1e-6)
    # and the relative gains are right, which the cloud would spoil
    expected, _ = inverse(clouded.gains, clouded.offsets)
    ratio = step.gains_ / expected
    assert np.abs(ratio / ratio[0] - 1).max() < BOUND


def test_masked_pixels_are_still_transformed(clouded, tmp_path):
    images = with_mask(clouded, {1: raster_mask_on(clouded, 1, CLOUD, tmp_path / "m.tif")})
    model, step = fit(images, reference=[0])
    outputs = model.transform(images, tmp_path / "out")
    data = clouded.data_of(1).astype(np.float64)
    output = read_raster(outputs.images[1].path).astype(np.float64)
    expected = np.rint(step.gains_[1][:, None, None] * data + step.offsets_[1][:, None, None])
    rows, cols = CLOUD.toslices()
    cloud_out = output[:, rows, cols]
    assert np.abs(cloud_out - expected[:, rows, cols]).max() <= 1
    assert (np.abs(cloud_out - CLOUD_VALUE) > 1000).all()  # not left as it was
    valid = clouded.valid_of(1)
    assert np.abs(output - expected)[valid].max() <= 1
    # and the cloud-free tile 0 (the reference) is unchanged
    assert np.array_equal(read_raster(outputs.images[0].path), clouded.data_of(0))


# ---------------------------------------------------------------------- counts


@pytest.mark.parametrize("masked_tile", [0, 1])
def test_overlap_counts_drop_by_the_masked_jointly_valid_pixels(tiles, tmp_path, masked_tile):
    """A mask on the first or on the second image of the pair 0-1 (truth rows 10..70, 60
    columns, 20 of them outside the overlap, where they count for no pair); 6 x 6 pixels
    under it are nodata in tile 1 and were never counted."""
    # in the masked tile's own pixels: truth cols 60..120 for tile 0, 80..140 for tile 1
    window = Window(60, 10, 60, 60) if masked_tile == 0 else Window(0, 10, 60, 60)
    images = with_mask(
        tiles, {masked_tile: raster_mask_on(tiles, masked_tile, window, tmp_path / "m.tif")}
    )
    paint(tiles.paths[1], Window(0, 10, 6, 6), 0)  # truth rows 10..16, cols 80..86
    _, plain = fit(tiles.paths)
    _, masked = fit(images)
    excluded = np.zeros(tiles.truth.data.shape[1:], dtype=bool)
    excluded[10:70, 60 + 20 * masked_tile : 120 + 20 * masked_tile] = True
    dropped = joint_count(tiles, 0, 1) - joint_count(tiles, 0, 1, excluded)
    assert dropped == 40 * 60 - 36
    row = pair_row(masked, "tile_0", "tile_1")
    expected = plain.diagnostics_.count.copy()
    expected[row] -= dropped
    np.testing.assert_array_equal(masked.diagnostics_.count, expected)


def test_coarse_raster_mask_is_read_with_nearest_neighbour(clouded, tmp_path):
    """One cloud mask for the whole scene at 4 x the pixel size (120 m), given to every
    image: its cells cover exactly the cloud."""
    cells = np.zeros((50, 50), dtype=np.uint8)
    cells[5:15, 21:29] = 1  # truth rows 20..60, cols 84..116
    origin = clouded.truth.transform
    coarse = Affine(120.0, 0.0, origin.c, 0.0, -120.0, origin.f)
    path = write_raster(tmp_path / "scene_mask.tif", cells, transform=coarse)
    _, plain = fit(clouded.paths, reference=[0])
    _, masked = fit([Image(p, mask=RasterMask(path)) for p in clouded.paths], reference=[0])
    assert gain_error(masked, clouded) < BOUND
    row = pair_row(masked, "tile_0", "tile_1")
    expected = plain.diagnostics_.count.copy()
    expected[row] -= CLOUD_PIXELS
    np.testing.assert_array_equal(masked.diagnostics_.count, expected)


def test_raster_mask_in_another_crs_is_reprojected(data_dir, tmp_path):
    """A mask in degrees given to an image in UTM marks the same ground: here the half of
    the image west of its middle meridian (it was read as if in the image's CRS)."""
    from rasterio.transform import from_bounds
    from rasterio.warp import transform, transform_bounds

    image = Image(data_dir / "tile_00.tif")
    west, south, east, north = transform_bounds(image.crs, "EPSG:4326", *image.bounds)
    marked = np.zeros((200, 200), dtype=np.uint8)
    marked[:, :100] = 1
    path = tmp_path / "west.tif"
    grid = from_bounds(west, south, east, north, 200, 200)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=200,
        height=200,
        count=1,
        dtype="uint8",
        crs="EPSG:4326",
        transform=grid,
    ) as dataset:
        dataset.write(marked, 1)
    values, _ = image.read()
    excluded = RasterMask(path).excluded(image, values, image.grid)
    # each pixel's centre in degrees: excluded where west of the middle meridian
    rows, cols = np.mgrid[0 : image.height, 0 : image.width]
    xs, ys = image.transform @ (cols.ravel() + 0.5, rows.ravel() + 0.5)
    lons, _ = transform(image.crs, "EPSG:4326", xs, ys)
    west_of_middle = (np.array(lons) < (west + east) / 2).reshape(image.shape)
    far = np.abs(np.array(lons) - (west + east) / 2).reshape(image.shape) > 2 * grid.a
    assert 0.3 < excluded.mean() < 0.7
    np.testing.assert_array_equal(excluded[far], west_of_middle[far])


@pytest.mark.filterwarnings("ignore:'crs' was not provided")  # writing the test's file
@pytest.mark.parametrize("kind", ["raster", "vector"])
def test_a_mask_without_crs_is_taken_in_the_images_with_a_warning(data_dir, tmp_path, kind):
    image = Image(data_dir / "tile_00.tif")
    left, bottom, right, top = image.bounds
    west = box(left, bottom, (left + right) / 2, top)
    if kind == "raster":
        marked = np.zeros(image.shape, dtype=np.uint8)
        marked[:, : image.width // 2] = 1
        path = write_raster(tmp_path / "west.tif", marked, transform=image.transform, crs=None)
        mask = RasterMask(path)
    else:
        mask = VectorMask(write_polygons(tmp_path / "west.gpkg", [west], crs=None))
    values, _ = image.read()
    with pytest.warns(
        SpectralMatchWarning, match="west.*no CRS in this mask file; taken to be EPSG"
    ):
        excluded = mask.excluded(image, values, image.grid)
    assert (
        excluded[:, : image.width // 2 - 1].all() and not excluded[:, image.width // 2 + 1 :].any()
    )


def test_a_new_scene_is_measured_against_the_fitted_images_masks_where_given(clouded, tmp_path):
    """A model does not keep masks: a new scene solved against a fitted image that was
    masked in the fit is told so, and measured against its masked pixels when the image
    is given again with its mask."""
    cloud = box(*tile_bounds(clouded, 1, CLOUD))
    images = with_mask(clouded, {1: VectorMask(write_polygons(tmp_path / "c.gpkg", [cloud]))})
    fitted = Mosaic(steps=[GlobalModel(reference=["tile_2"])], threads=2, pif=None)
    path = fitted.fit(images[1:]).save(tmp_path / "model.json")
    joint = fit(images, reference=["tile_2"])[1].gains_[0]  # the scene fitted with the rest

    alone = Mosaic.load(path)
    with pytest.warns(SpectralMatchWarning, match="tile_1: masked in the fit, but a model"):
        alone.transform(images[:1], tmp_path / "alone")
    with_masked = Mosaic.load(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpectralMatchWarning)
        with_masked.transform(images[:2], tmp_path / "with")
    error_alone = np.abs(alone.steps_[0].gains_[-1] / joint - 1).max()
    error_with = np.abs(with_masked.steps_[0].gains_[-1] / joint - 1).max()
    assert error_alone > 10 * error_with and error_alone > BOUND  # the cloud counted


def test_misaligned_coarse_raster_mask_takes_the_cell_under_each_pixel_centre(truth, tmp_path):
    """Random cells of 120 m on a grid shifted by (17 m, -61 m) against the image's 30 m
    pixels: every pixel of any window gets the cell its centre falls in."""
    image = Image(
        write_raster(
            tmp_path / "image.tif",
            truth.data.astype(np.uint16),
            transform=truth.transform,
            nodata=0,
        )
    )
    cells = (np.random.default_rng(0).uniform(size=(60, 60)) > 0.5).astype(np.uint8)
    origin = truth.transform
    coarse = Affine(120.0, 0.0, origin.c - 300 + 17.0, 0.0, -120.0, origin.f + 300 - 61.0)
    mask = RasterMask(write_raster(tmp_path / "cells.tif", cells, transform=coarse))
    for window in (Window(0, 0, 200, 200), Window(80, 0, 40, 120), Window(13, 57, 61, 33)):
        excluded = mask.excluded(image, None, image.grid.window_grid(window))
        ys = origin.f + (np.arange(window.row_off, window.row_off + window.height) + 0.5) * -30
        xs = origin.c + (np.arange(window.col_off, window.col_off + window.width) + 0.5) * 30
        rows = np.floor((ys - coarse.f) / coarse.e).astype(int)
        cols = np.floor((xs - coarse.c) / coarse.a).astype(int)
        np.testing.assert_array_equal(excluded, cells[rows][:, cols].astype(bool))
        inverted = RasterMask(mask.path, include=True).excluded(
            image, None, image.grid.window_grid(window)
        )
        np.testing.assert_array_equal(inverted, ~excluded)


def test_include_raster_mask_keeps_only_its_pixels(clouded, tmp_path):
    """``RasterMask(include=True)``: only the non-zero pixels count; here all of tile 1
    but the cloud."""
    with rasterio.open(clouded.paths[1]) as dataset:
        keep = np.ones((dataset.height, dataset.width), dtype=np.uint8)
        transform = dataset.transform
    keep[CLOUD.toslices()] = 0
    mask = RasterMask(write_raster(tmp_path / "keep.tif", keep, transform=transform), include=True)
    _, plain = fit(clouded.paths, reference=[0])
    _, masked = fit(with_mask(clouded, {1: mask}), reference=[0])
    assert gain_error(masked, clouded) < BOUND
    row = pair_row(masked, "tile_0", "tile_1")
    assert (plain.diagnostics_.count[row] - masked.diagnostics_.count[row]).tolist() == [
        CLOUD_PIXELS
    ] * 3


def test_combined_masks_exclude_what_either_excludes(clouded, tmp_path):
    second = Window(4, 70, 32, 10)  # another 320 px of the 0-1 overlap, below the cloud
    mask = combine(
        None,
        FunctionMask(lambda values: values[0] > 30000),
        raster_mask_on(clouded, 1, second, tmp_path / "m.tif"),
        None,
    )
    assert isinstance(mask, AnyMask) and len(mask.masks) == 2
    _, plain = fit(clouded.paths, reference=[0])
    _, masked = fit(with_mask(clouded, {1: mask}), reference=[0])
    row = pair_row(masked, "tile_0", "tile_1")
    assert (plain.diagnostics_.count[row] - masked.diagnostics_.count[row]).tolist() == [
        CLOUD_PIXELS + 320
    ] * 3
    assert gain_error(masked, clouded) < BOUND


def test_combine_and_as_mask(tmp_path):
    function = FunctionMask(lambda values: values[0] > 0)
    assert combine() is None and combine(None, None) is None
    assert combine(None, function) is function
    assert isinstance(as_mask(lambda values: values[0] > 0), FunctionMask)
    for name in ("a.gpkg", "a.shp", "a.geojson", "a.fgb", "A.GPKG"):
        assert isinstance(as_mask(tmp_path / name), VectorMask)
    assert isinstance(as_mask(str(tmp_path / "a.tif")), RasterMask)
    assert as_mask(None) is None and as_mask(function) is function
    assert Image(tmp_path / "x.tif", mask=str(tmp_path / "m.gpkg")).mask == VectorMask(
        tmp_path / "m.gpkg"
    )


def test_vector_mask_in_another_crs_is_reprojected(clouded, tmp_path):
    """The cloud polygon stored in geographic coordinates (a few pixels of slack around
    the cloud, so that the reprojected edges stay outside the next pixel centres)."""
    import geopandas

    left, bottom, right, top = tile_bounds(clouded, 1, CLOUD)
    utm = geopandas.GeoSeries([box(left - 10, bottom - 10, right + 10, top + 10)], crs=CRS)
    path = write_polygons(tmp_path / "cloud.gpkg", utm.to_crs("EPSG:4326"), crs="EPSG:4326")
    _, plain = fit(clouded.paths, reference=[0])
    _, masked = fit(with_mask(clouded, {1: VectorMask(path)}), reference=[0])
    assert gain_error(masked, clouded) < BOUND
    row = pair_row(masked, "tile_0", "tile_1")
    assert (plain.diagnostics_.count[row] - masked.diagnostics_.count[row]).tolist() == [
        CLOUD_PIXELS
    ] * 3


# ---------------------------------------------------------------------- errors


def test_unreadable_raster_mask_names_the_file(tiles, tmp_path):
    missing = tmp_path / "no_such_mask.tif"
    with pytest.raises(SpectralMatchError, match="no_such_mask.tif"):
        fit(with_mask(tiles, {1: RasterMask(missing)}))
    garbage = tmp_path / "garbage_mask.tif"
    garbage.write_text("not a raster")
    with pytest.raises(SpectralMatchError, match="garbage_mask.tif"):
        fit(with_mask(tiles, {0: RasterMask(garbage)}))
    # "{name}" is filled in before the file is opened: the message names the real file
    for index in (0, 1, 3):
        raster_mask_on(tiles, index, CLOUD, tmp_path / "per_image" / f"tile_{index}.tif")
    with pytest.raises(SpectralMatchError, match="per_image/tile_2.tif"):
        fit(
            [
                Image(p, mask=RasterMask(str(tmp_path / "per_image" / "{name}.tif")))
                for p in tiles.paths
            ]
        )


def test_mask_function_of_the_wrong_shape(tiles):
    mask = FunctionMask(lambda values: values[0, :10, :10] > 0)
    with pytest.raises(SpectralMatchError, match="shape"):
        fit(with_mask(tiles, {2: mask}))
    with pytest.raises(SpectralMatchError, match="shape"):
        fit(with_mask(tiles, {2: FunctionMask(lambda values: values > 0)}))  # (bands, r, c)


def test_vector_mask_errors(tiles, tmp_path):
    path = write_polygons(
        tmp_path / "m.gpkg", [box(*tile_bounds(tiles, 1, CLOUD))], image=["tile_1"]
    )
    with pytest.raises(SpectralMatchError, match="'missing_field'"):
        fit([Image(p, mask=VectorMask(path, field="missing_field")) for p in tiles.paths])
    broken = tmp_path / "broken.gpkg"
    broken.write_text("not a geopackage")
    with pytest.raises(SpectralMatchError, match="broken.gpkg"):
        fit(with_mask(tiles, {0: VectorMask(broken)}))
    with pytest.raises(SpectralMatchError, match="'both'"):
        VectorMask(path, mode="both")


def test_include_mask_that_leaves_nothing_is_an_error_naming_the_image(tiles, tmp_path):
    """An include-mode mask without a feature for an image leaves it no pixel."""
    path = write_polygons(tmp_path / "m.gpkg", [box(*tile_bounds(tiles, 1))], image=["tile_1"])
    with pytest.raises(SpectralMatchError, match=r"tile_[023]\.tif: has no valid pixels"):
        fit([Image(p, mask=VectorMask(path, mode="include", field="image")) for p in tiles.paths])


def test_function_mask_on_the_partner_and_nan_nodata_together(tmp_path, truth):
    """Float images with NaN nodata, a function mask on the second: NaN pixels of the
    first and bright pixels of the second are both left out of the overlap."""
    data = truth.data[:, :120, :120].copy()
    data[:, 50:60, 90:100] = np.nan
    left = write_raster(
        tmp_path / "a.tif", data, transform=truth.transform, nodata=np.nan, dtype="float32"
    )
    shifted = Affine.translation(80 * 30.0, 0.0) @ truth.transform
    right = write_raster(
        tmp_path / "b.tif",
        1.1 * truth.data[:, :120, 80:200] + 5,
        transform=shifted,
        nodata=np.nan,
        dtype="float32",
    )
    assert valid_mask(read_raster(left), np.nan).all(axis=0).sum() == 120 * 120 - 100
    threshold = np.percentile(1.1 * truth.data[0, :120, 80:120] + 5, 80)
    mask = FunctionMask(lambda values: values[0] > threshold)
    _, step = fit([Image(left), Image(right, mask=mask)], reference=[0])
    bright = (1.1 * truth.data[0, :120, 80:120] + 5).astype(np.float32) > threshold
    nan = np.zeros((120, 40), dtype=bool)
    nan[50:60, 10:20] = True
    assert 900 < bright.sum() < 1000
    assert step.diagnostics_.count[0].tolist() == [float((~bright & ~nan).sum())] * 3
    np.testing.assert_allclose(step.gains_[1], 1 / 1.1, rtol=1e-4)
    np.testing.assert_allclose(step.offsets_[1], -5 / 1.1, atol=0.05)


def test_a_list_of_masks_excludes_what_any_of_them_excludes(data_dir):
    image = Image(data_dir / "tile_00.tif")
    values, _ = image.read(Window(0, 0, 64, 64))
    grid = image.grid.window_grid(Window(0, 0, 64, 64))
    first = ExpressionMask("B1 > 8000")
    second = ExpressionMask("B2 > 7000")
    both = Image(data_dir / "tile_00.tif", mask=[first, second]).mask
    expected = first.excluded(image, values, grid) | second.excluded(image, values, grid)
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(both.excluded(image, values, grid), expected)


def test_a_collection_mask_adds_to_each_images_own(data_dir):
    own = ExpressionMask("B1 > 8000")
    added = ExpressionMask("B2 > 7000")
    collection = ImageCollection(
        [Image(data_dir / "tile_00.tif", mask=own), Image(data_dir / "tile_01.tif")]
    ).with_mask(added)
    window = Window(0, 0, 64, 64)
    first, second = collection.images
    values, _ = first.read(window)
    grid = first.grid.window_grid(window)
    expected = own.excluded(first, values, grid) | added.excluded(first, values, grid)
    np.testing.assert_array_equal(first.mask.excluded(first, values, grid), expected)
    assert second.mask is added
    masked = ImageCollection.from_paths(data_dir, mask=added)
    assert all(image.mask is added for image in masked)
