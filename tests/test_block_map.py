"""BlockMap and BlockGrid: local block adjustment on real rasters.

Tiles are cut from the truth (the valid interior of ``data/tile_00.tif``) and get a
smooth multiplicative brightness gradient each (``conftest.smooth_fields``), the kind of
distortion a single gain and offset per image cannot remove. The seam error is the mean
absolute difference between overlapping tiles over their jointly valid pixels.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import rasterio
from conftest import (
    FIELD_LAYOUT,
    affine_rmse,
    file_digest,
    folder_listing,
    load_truth,
    make_tiles,
    on_truth_grid,
    read_raster,
    seam_error,
    smooth_fields,
    valid_mask,
    write_raster,
)
from rasterio.transform import Affine, from_origin
from rasterio.windows import Window

from spectralmatch import (
    Adjuster,
    BlockGrid,
    BlockMap,
    GlobalModel,
    HistogramMatch,
    Image,
    ImageCollection,
    Mosaic,
    SpectralMatchError,
)
from spectralmatch.errors import SpectralMatchWarning
from spectralmatch.geo.blocks import STRIP_ROWS, BlockWindows, positions_in
from spectralmatch.geo.grid import PixelGrid
from spectralmatch.model.block_map import MAX_SPREAD_FACTOR
from spectralmatch.model.surface import BlockSurfaces, fill_from_neighbours

CORRECTIONS = ("offset", "gain", "gamma", "wallis")
#: Per tile: an overall gain on top of the field (something for GlobalModel to do).
FIELD_GAINS = np.array([[1.0] * 3, [1.10] * 3, [0.90] * 3, [1.05] * 3])


def field_tiles(folder, truth, *, amplitude=0.08, gains=FIELD_GAINS, offsets=0.0, **kwargs):
    """Four uint16 tiles in FIELD_LAYOUT, each with its own +-8 % brightness gradient."""
    n = len(kwargs.get("windows", FIELD_LAYOUT))
    kwargs.setdefault("windows", FIELD_LAYOUT)
    kwargs.setdefault("noise_sd", 1.0)
    kwargs.setdefault("cut_corners", False)
    offsets = np.broadcast_to(np.asarray(offsets, dtype=float), (n, 3))
    return make_tiles(
        folder,
        truth,
        gains=gains[:n],
        offsets=offsets,
        fields=smooth_fields(kwargs["windows"], amplitude),
        **kwargs,
    )


def output_paths(collection):
    return [image.path for image in collection]


def known_blocks(step):
    return step.counts_ >= step.min_pixels


# ---------------------------------------------------------------------- 1. fields removed


@pytest.fixture(scope="module")
def field_set(tmp_path_factory, truth):
    """Field tiles and their global-only outputs, shared by the four corrections."""
    folder = tmp_path_factory.mktemp("fields")
    tiles = field_tiles(folder / "in", truth)
    global_only = Mosaic(steps=[GlobalModel()], threads=2).fit_transform(tiles.paths, folder / "g")
    return tiles, output_paths(global_only), folder


@pytest.mark.parametrize("correction", CORRECTIONS)
def test_smooth_fields_are_removed(field_set, correction):
    tiles, global_paths, folder = field_set
    model = Mosaic(steps=[GlobalModel(), BlockMap(block_size=16, correction=correction)], threads=2)
    outputs = output_paths(model.fit_transform(tiles.paths, folder / correction))
    before, global_only, after = (
        seam_error(tiles, paths) for paths in (tiles.paths, global_paths, outputs)
    )
    # 8 % gradients on ~6000-7500 DN: hundreds of DN along the seams
    assert before > 500 and global_only > 150
    assert after < 0.5 * global_only
    assert after < 0.1 * before
    # no relative method can know the common part of the fields: it is in the RMSE to the
    # truth after the best affine map, which still must beat the global model's
    rmse_before, rmse_global, rmse_after = (
        affine_rmse(tiles, paths) for paths in (tiles.paths, global_paths, outputs)
    )
    assert rmse_after < 0.9 * rmse_global < 0.9 * rmse_before

    step = model.steps_[1]
    assert step.grid_.rows == step.grid_.cols == 13  # 200 px / 16 px, the last one partial
    assert step.shifts_.shape == step.local_means_.shape == (4, 3, 13, 13)
    known = known_blocks(step)
    # without a reference every block keeps its count-weighted average brightness
    weighted = (step.counts_ * step.shifts_).sum(axis=0)
    scale = (step.counts_ * np.abs(step.shifts_)).sum(axis=0)
    assert (scale[known.any(axis=0)] > 0).all()
    np.testing.assert_allclose(weighted, 0.0, atol=1e-6 * scale.max())
    # blocks where an image overlaps nothing are filled from the blocks where it does:
    # averages of them, so inside their range
    for image in range(4):
        for band in range(3):
            values = step.shifts_[image, band]
            inside = known[image, band]
            assert 0 < inside.sum() < inside.size
            assert values[~inside].min() >= values[inside].min() - 1e-9
            assert values[~inside].max() <= values[inside].max() + 1e-9


# ---------------------------------------------------------------------- block values, formulas


def _expected_correction(correction, x, m, d, f, p, r):
    """The corrections as documented in BlockMap, in float64."""
    if correction == "offset":
        return x + d
    if correction == "gain":
        return p + (x - p) * (m + d - p) / (m - p)
    if correction == "wallis":
        return m + d + (x - m) * f
    return p + r * ((x - p) / r) ** (np.log((m + d - p) / r) / np.log((m - p) / r))


@pytest.mark.parametrize("correction", CORRECTIONS)
def test_block_values_and_corrections_follow_the_formulas(tmp_path, truth, correction):
    """Two float64 tiles, 15 px blocks: every value checked against numpy.

    The tiles are offset by 75 px = 5 blocks, so the pixels 7 + 15 k of both lie on block
    centres, where the interpolated block values are the block values themselves.
    Band 0 of the truth minus 5500 has negative values (a pivot below them), the others
    not (pivot 0).
    """
    shifted = type(truth)(truth.data - 5500.0, truth.transform)
    windows = FIELD_LAYOUT[:2]
    tiles = make_tiles(
        tmp_path / "in",
        shifted,
        gains=FIELD_GAINS[:2],
        offsets=np.array([[0.0] * 3, [40.0, -30.0, 20.0]]),
        windows=windows,
        fields=smooth_fields(windows, 0.05),
        noise_sd=1.0,
        dtype="float64",
        nodata=float("nan"),
    )
    model = Mosaic(pif=None, steps=[BlockMap(block_size=15, correction=correction)], threads=2)
    outputs = output_paths(
        model.fit_transform(tiles.paths, tmp_path / "out", working_dtype="float64")
    )
    step = model.steps_[0]
    grid = step.grid_
    assert (grid.rows, grid.cols) == (9, 14) and grid.block_width == 450.0  # 125 x 200 px
    data = [tiles.data_of(0), tiles.data_of(1)]
    low = np.min([np.nanmin(a, axis=(1, 2)) for a in data], axis=0)
    high = np.max([np.nanmax(a, axis=(1, 2)) for a in data], axis=0)
    assert low[0] < 0 < low[1] and low[2] > 0
    pivot = np.where(low >= 0, 0.0, low - 0.01 * (high - low))
    np.testing.assert_allclose(step.pivot_, pivot, rtol=1e-12)
    np.testing.assert_allclose(step.range_, high - pivot, rtol=1e-12)

    # numpy: each tile's moments over the jointly valid pixels of every block
    placed = on_truth_grid(tiles, tiles.paths)
    joint = np.isfinite(placed[0]) & np.isfinite(placed[1])
    checked = 0
    for row in range(grid.rows):
        for col in range(grid.cols):
            rows, cols = slice(15 * row, 15 * row + 15), slice(15 * col, 15 * col + 15)
            for band in range(3):
                inside = joint[band, rows, cols]
                count = inside.sum()
                assert step.counts_[0, band, row, col] == (count if count >= 100 else 0)
                if count < 100:
                    continue
                a = placed[0][band, rows, cols][inside]
                b = placed[1][band, rows, cols][inside]
                # equal counts: each image moves half way, means and log-spreads
                np.testing.assert_allclose(
                    step.local_means_[:, band, row, col], [a.mean(), b.mean()], rtol=1e-12
                )
                np.testing.assert_allclose(
                    step.shifts_[:, band, row, col],
                    [(b.mean() - a.mean()) / 2, (a.mean() - b.mean()) / 2],
                    rtol=1e-9,
                    atol=1e-9,
                )
                ratio = np.sqrt(b.std() / a.std())
                np.testing.assert_allclose(
                    step.spread_factors_[:, band, row, col], [ratio, 1 / ratio], rtol=1e-9
                )
                checked += 1
    # 8 rows x 3 columns of full blocks in the 50 px overlap (the partial ones: < 100 px)
    assert checked == 8 * 3 * 3
    assert np.abs(step.shifts_).max() > 100 and np.abs(np.log(step.spread_factors_)).max() > 0.02

    # the output at the block centres of each tile, by the documented formula
    for index, window in enumerate(windows):
        x = tiles.data_of(index)
        output = read_raster(outputs[index])
        np.testing.assert_array_equal(np.isnan(output), np.isnan(x))
        centre_rows = np.arange(7, window.height, 15)
        centre_cols = np.arange(7, window.width, 15)
        block_rows = (window.row_off + centre_rows) // 15
        block_cols = (window.col_off + centre_cols) // 15
        take = np.ix_(range(3), centre_rows, centre_cols)
        blocks = np.ix_([index], range(3), block_rows, block_cols)
        values = [
            step.local_means_[blocks][0],
            step.shifts_[blocks][0],
            step.spread_factors_[blocks][0],
        ]
        expected = _expected_correction(
            correction, x[take], *values, step.pivot_[:, None, None], step.range_[:, None, None]
        )
        np.testing.assert_allclose(output[take], expected, rtol=1e-9, atol=1e-6)
        assert np.nanmax(np.abs(output[take] - x[take])) > 50


# ---------------------------------------------------------------------- 2. nothing to do


@pytest.mark.parametrize("correction", CORRECTIONS)
@pytest.mark.parametrize("kind", ["textured", "constant"])
def test_consistent_collection_is_left_unchanged(tmp_path, truth, correction, kind):
    if kind == "constant":  # flat in the strict sense: one value everywhere
        truth = type(truth)(np.full_like(truth.data, 5000.0), truth.transform)
    tiles = make_tiles(
        tmp_path / "in", truth, gains=np.ones((4, 3)), offsets=np.zeros((4, 3)), noise_sd=0.0
    )
    model = Mosaic(steps=[BlockMap(block_size=16, correction=correction)], threads=2)
    outputs = model.fit_transform(tiles.paths, tmp_path / "out")
    step = model.steps_[0]
    np.testing.assert_allclose(step.shifts_, 0.0, atol=1e-6)
    np.testing.assert_allclose(step.spread_factors_, 1.0, atol=1e-9)
    for index, image in enumerate(outputs):
        output, data = read_raster(image.path), tiles.data_of(index)
        assert output.dtype == np.uint16
        np.testing.assert_array_equal(output != 0, data != 0)
        assert np.abs(output.astype(np.int64) - data.astype(np.int64)).max() <= 1


@pytest.mark.parametrize("correction", CORRECTIONS)
def test_an_image_that_overlaps_nothing_is_left_unchanged(tmp_path, truth, correction):
    tiles = field_tiles(tmp_path / "in", truth, windows=FIELD_LAYOUT[:2])
    # a third tile of the truth, 10 px east of the others: in the grid, in no overlap
    with rasterio.open(tiles.paths[1]) as dataset:
        transform = dataset.transform @ Affine.translation(135, 0)
    alone = write_raster(
        tmp_path / "in" / "alone.tif",
        np.rint(truth.data[:, :125, :125] * 1.2),
        transform=transform,
        nodata=0,
        dtype="uint16",
    )
    model = Mosaic(steps=[BlockMap(block_size=16, correction=correction)], threads=2)
    with pytest.warns(SpectralMatchWarning, match="with any other image: alone$"):
        outputs = output_paths(model.fit_transform([*tiles.paths, alone], tmp_path / "out"))
    step = model.steps_[0]
    assert step.images_[2] == "alone" and (step.counts_[2] == 0).all()
    assert (step.shifts_[2] == 0).all() and (step.spread_factors_[2] == 1).all()
    assert np.abs(step.shifts_[:2]).max() > 50
    difference = read_raster(outputs[2]).astype(np.int64) - read_raster(alone).astype(np.int64)
    assert np.abs(difference).max() <= 1


def _far_copy(source, path, east):
    """A copy of the raster ``source`` moved ``east`` metres east."""
    with rasterio.open(source) as dataset:
        profile, data = dataset.profile, dataset.read()
    profile["transform"] = Affine.translation(east, 0.0) @ profile["transform"]
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(data)
    return path


@pytest.mark.parametrize("steps", [None, [HistogramMatch()]], ids=["default", "histogram"])
@pytest.mark.parametrize("layout", ["single", "apart"])
def test_images_that_overlap_nothing_come_out_unchanged(tmp_path, data_dir, steps, layout):
    """One sample tile alone, or with another 100 km away: nothing to match, one warning."""
    paths = [data_dir / "tile_00.tif"]
    if layout == "apart":
        paths.append(_far_copy(data_dir / "tile_03.tif", tmp_path / "far.tif", 100_000.0))
    model = Mosaic(steps=steps, threads=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # as a user sees them: a repeated warning once
        outputs = model.fit_transform(paths, tmp_path / "out")
    names = ", ".join(path.stem for path in paths)
    assert [str(w.message) for w in caught if w.category is SpectralMatchWarning] == [
        f"left unchanged, no usable overlap with any other image: {names}"
    ]
    for path, output in zip(paths, outputs, strict=True):
        assert np.array_equal(read_raster(output.path), read_raster(path))
    if steps is None:  # the local step still holds the grid it asked for (for new scenes)
        grid = BlockGrid.covering(ImageCollection.coerce(paths).images)
        assert model.steps_[1].grid_ == grid


def test_blocks_too_small_for_min_pixels_warn(tmp_path, truth):
    """8 x 8 px blocks hold 64 pixels, fewer than min_pixels: the local step does nothing."""
    tiles = field_tiles(tmp_path / "in", truth)
    model = Mosaic(pif=None, steps=[GlobalModel(), BlockMap(block_size=8)], threads=2)
    with pytest.warns(SpectralMatchWarning) as record:
        model.fit(tiles.paths)
    (message,) = [str(w.message) for w in record if w.category is SpectralMatchWarning]
    assert "min_pixels=100" in message and "at most 64" in message
    assert "block_size=8 px" in message and "changes nothing" in message
    step = model.steps_[1]
    assert (step.counts_ == 0).all() and (step.shifts_ == 0).all()
    assert (step.spread_factors_ == 1).all()
    outputs = model.transform(tiles.paths, tmp_path / "out")
    global_only = Mosaic(pif=None, steps=[GlobalModel()], threads=2).fit_transform(
        tiles.paths, tmp_path / "g"
    )
    for ours, theirs in zip(outputs, global_only, strict=True):
        assert np.array_equal(read_raster(ours.path), read_raster(theirs.path))


# ---------------------------------------------------------------------- clipped data


def eight_bit_sample(folder, data_dir, saturated=0.2):
    """The sample tiles as one 8-bit product: one linear stretch per band over the whole
    mosaic (its 0.5 % - 99.5 % to 1 - 255), except that the red band saturates its
    brightest ``saturated`` fraction at 255. Nodata stays 0."""
    paths = sorted(data_dir.glob("tile_*.tif"))
    arrays = [read_raster(path).astype(np.float64) for path in paths]
    pooled = [np.concatenate([a[band][a[band] != 0] for a in arrays]) for band in range(3)]
    low = np.array([np.percentile(values, 0.5) for values in pooled])
    high = np.array([np.percentile(values, 99.5) for values in pooled])
    high[0] = np.percentile(pooled[0], 100 * (1 - saturated))
    written = []
    for path, data in zip(paths, arrays, strict=True):
        stretched = 1 + 254 * (data - low[:, None, None]) / (high - low)[:, None, None]
        values = np.where(data != 0, np.clip(np.rint(stretched), 1, 255), 0)
        with rasterio.open(path) as dataset:
            transform = dataset.transform
        written.append(
            write_raster(folder / path.name, values, transform=transform, nodata=0, dtype="uint8")
        )
    return written


def _red_on_union_grid(paths):
    """Band 1 of rasters on one pixel grid, placed on the union of their extents
    (float64, NaN where not valid), and the pixel size."""
    datasets = [rasterio.open(path) for path in paths]
    size = datasets[0].transform.a
    left = min(d.bounds.left for d in datasets)
    top = max(d.bounds.top for d in datasets)
    width = round((max(d.bounds.right for d in datasets) - left) / size)
    height = round((top - min(d.bounds.bottom for d in datasets)) / size)
    placed = []
    for dataset in datasets:
        row = round((top - dataset.bounds.top) / size)
        col = round((dataset.bounds.left - left) / size)
        canvas = np.full((height, width), np.nan)
        data = dataset.read(1).astype(np.float64)
        canvas[row : row + dataset.height, col : col + dataset.width] = np.where(
            data != dataset.nodata, data, np.nan
        )
        placed.append(canvas)
        dataset.close()
    return placed, size


def test_clipped_band_gets_no_spread_factor_where_it_is_saturated(tmp_path, data_dir):
    """Real 8-bit tiles whose red band saturates a fifth of the mosaic at 255.

    Before saturated blocks were recognized, their spreads gave factors from 3e-5 to 2e7
    (applied as 1/10 and 10): 4669 pixels went to DN 1-5 where the offset correction
    kept them above 40, and pixels ended up to 172 DN away from the offset result.
    """
    paths = eight_bit_sample(tmp_path / "in", data_dir)
    wallis = Mosaic(threads=2)
    outputs = output_paths(wallis.fit_transform(paths, tmp_path / "wallis"))
    offset = Mosaic(steps=[GlobalModel(), BlockMap(correction="offset")], threads=2)
    shifted = output_paths(offset.fit_transform(paths, tmp_path / "offset"))
    for path, ours, theirs in zip(paths, outputs, shifted, strict=True):
        data = read_raster(path).astype(int)
        valid = data != 0
        w, o = read_raster(ours).astype(int), read_raster(theirs).astype(int)
        assert not (valid & (w <= 5) & (o >= 40)).any()  # nothing pushed to black
        assert np.abs(w - o)[valid].max() <= 40  # a sixth of the range at most
        saturated = valid & (data == 255)
        assert (w[saturated] >= o[saturated] - 32).all()  # saturated stays bright

    # numpy: the blocks where, in every overlap of an image, more than half of its
    # pixels or of its partner's sit at 255 or at 1 get no spread factor (a shift only)
    step, grid = wallis.steps_[1], wallis.steps_[1].grid_
    red, size = _red_on_union_grid(paths)
    rows = ((np.arange(red[0].shape[0]) + 0.5) * size // grid.block_height).astype(int)
    cols = ((np.arange(red[0].shape[1]) + 0.5) * size // grid.block_width).astype(int)
    block = rows[:, None] * grid.cols + cols[None, :]

    def per_block(mask):
        return np.bincount(block[mask], minlength=grid.size)

    checked = 0
    for i, own in enumerate(red):
        used_somewhere, all_clipped = np.zeros(grid.size, bool), np.ones(grid.size, bool)
        for other in red[:i] + red[i + 1 :]:
            joint = np.isfinite(own) & np.isfinite(other)
            count = per_block(joint)
            at_limit = np.max(
                [per_block(joint & (side == value)) for side in (own, other) for value in (1, 255)],
                axis=0,
            )
            used = count >= step.min_pixels
            used_somewhere |= used
            all_clipped &= ~used | (2 * at_limit > count)
        fallback = used_somewhere & all_clipped
        assert (step.spread_factors_[i, 0].ravel()[fallback] == 1.0).all()
        checked += fallback.sum()
    assert checked >= 10
    # elsewhere the spreads are still matched, within the bound
    factors = step.spread_factors_[step.counts_ >= step.min_pixels]
    assert (np.abs(np.log(factors)) > 0.05).mean() > 0.3
    assert factors.min() >= 1 / MAX_SPREAD_FACTOR and factors.max() <= MAX_SPREAD_FACTOR


# ---------------------------------------------------------------------- 3. references


def test_reference_image_is_bit_identical_and_the_others_follow(tmp_path, truth):
    tiles = field_tiles(tmp_path / "in", truth, amplitude=[0.0, 0.08, 0.08, 0.08])
    steps = [
        GlobalModel(reference=["tile_0"]),
        BlockMap(block_size=16, correction="offset", reference=["tile_0"]),
    ]
    model = Mosaic(pif=None, steps=steps, threads=2)
    outputs = output_paths(model.fit_transform(tiles.paths, tmp_path / "out"))
    global_only = output_paths(
        Mosaic(pif=None, steps=[GlobalModel(reference=["tile_0"])], threads=2).fit_transform(
            tiles.paths, tmp_path / "g"
        )
    )
    assert np.array_equal(read_raster(outputs[0]), tiles.data_of(0))
    step = model.steps_[1]
    assert step.reference_ == ["tile_0"]
    assert (step.shifts_[0] == 0).all() and (step.spread_factors_[0] == 1).all()
    with_reference = [(0, 1), (0, 2), (0, 3)]
    before = seam_error(tiles, tiles.paths, with_reference)
    after = seam_error(tiles, outputs, with_reference)
    assert after < 0.5 * seam_error(tiles, global_only, with_reference)
    assert after < 0.1 * before
    # in the overlaps with the (undistorted) reference, the others are on the truth
    placed, raw = on_truth_grid(tiles, outputs), on_truth_grid(tiles, tiles.paths)
    for index in (1, 2, 3):
        joint = np.isfinite(placed[0]) & np.isfinite(placed[index])
        difference = placed[index][joint] - tiles.truth.data[joint]
        initial = raw[index][joint] - tiles.truth.data[joint]
        assert np.abs(initial).mean() > 400
        assert abs(difference.mean()) < 5.0  # the offsets are exact, over each overlap
        # what is left: the contrast an offset cannot change (+-8 % of the texture)
        assert np.abs(difference).mean() < 0.15 * np.abs(initial).mean()


# ---------------------------------------------------------------------- 4. persistence


def test_save_load_round_trip_and_sidecar(tmp_path, truth):
    tiles = field_tiles(tmp_path / "in", truth)
    model = Mosaic(steps=[GlobalModel(), BlockMap(block_size=32, correction="gamma")], threads=2)
    first = model.fit_transform(tiles.paths, tmp_path / "first")
    path = model.save(tmp_path / "models" / "model.json")
    assert folder_listing(tmp_path / "models") == ["model.json", "model.npz"]
    document = json.loads(path.read_text())
    assert document["arrays"] == "model.npz"
    state = document["steps"][1]["state"]
    surfaces = model.steps_[1].surfaces_
    with np.load(tmp_path / "models" / "model.npz") as arrays:
        for name in ("windows", "counts", "local_means", "shifts", "spread_factors"):
            key = state[name]["array"]
            assert set(state[name]) == {"array"}
            kept = surfaces.windows.windows if name == "windows" else getattr(surfaces, name)
            np.testing.assert_array_equal(arrays[key], kept)
    assert state["grid"]["rows"] == state["grid"]["cols"] == 7
    # each image's window: the blocks near it, not the whole grid
    assert (surfaces.windows.windows[:, 2:] < 7).any()
    assert document["steps"][1]["params"]["correction"] == "gamma"

    loaded = Mosaic.load(path)
    for name in ("shifts_", "local_means_", "spread_factors_", "counts_", "pivot_", "range_"):
        np.testing.assert_array_equal(
            getattr(loaded.steps_[1], name), getattr(model.steps_[1], name)
        )
    assert loaded.steps_[1].grid_ == model.steps_[1].grid_
    second = loaded.transform(tiles.paths, tmp_path / "second")
    for a, b in zip(first, second, strict=True):
        assert file_digest(a.path) == file_digest(b.path)


def test_to_rasters_writes_the_block_surfaces(tmp_path, truth):
    tiles = field_tiles(tmp_path / "in", truth)
    model = Mosaic(steps=[BlockMap(block_size=48, correction="wallis")], threads=2)
    step = model.fit(tiles.paths).steps_[0]
    written = step.to_rasters(tmp_path / "maps")
    expected = sorted(
        f"{name}_{kind}.tif" for name in tiles.names for kind in ("local", "reference")
    )
    assert folder_listing(tmp_path / "maps") == expected
    assert sorted(p.name for p in written) == expected
    grid = step.grid_
    assert (grid.rows, grid.cols) == (5, 5)  # 200 px / 48 px
    with rasterio.open(tiles.paths[0]) as source:
        crs = source.crs
    for index, name in enumerate(tiles.names):
        for kind, surface in (
            ("local", step.local_means_[index]),
            ("reference", step.local_means_[index] + step.shifts_[index]),
        ):
            with rasterio.open(tmp_path / "maps" / f"{name}_{kind}.tif") as dataset:
                assert dataset.transform == grid.transform
                assert dataset.transform == from_origin(grid.left, grid.top, 48 * 30.0, 48 * 30.0)
                assert dataset.crs == crs
                assert (dataset.height, dataset.width, dataset.count) == (5, 5, 3)
                assert dataset.dtypes == ("float32",) * 3
                data = dataset.read()
            assert np.isfinite(data).all()
            np.testing.assert_array_equal(data, surface.astype(np.float32))
            assert 3000 < data.mean() < 10000  # DN of the tiles, not zeros


@pytest.mark.parametrize("correction", ["wallis", "gamma"])
def test_alpha_blends_between_the_input_and_the_full_correction(tmp_path, data_dir, correction):
    def corrected(folder, **alpha):
        step = BlockMap(block_size=64, correction=correction, **alpha)
        model = Mosaic(pif=None, steps=[step], threads=2)
        outputs = output_paths(model.fit_transform(data_dir, tmp_path / folder))
        return model, np.concatenate([read_raster(path).ravel() for path in outputs]).astype(float)

    tiles = sorted(data_dir.glob("tile_*.tif"))
    inputs = np.concatenate([read_raster(path).ravel() for path in tiles]).astype(float)
    _, today = corrected("today")
    _, none = corrected("none", alpha=0.0)
    _, full = corrected("full", alpha=1.0)
    half_model, half = corrected("half", alpha=0.5)
    np.testing.assert_array_equal(none, inputs)
    np.testing.assert_array_equal(full, today)
    changed = full != inputs
    assert changed.mean() > 0.5
    assert (np.minimum(inputs, full) <= half).all() and (half <= np.maximum(inputs, full)).all()
    assert (half[changed] != full[changed]).mean() > 0.5
    if correction == "wallis":  # linear in the block targets: the midpoint, up to rounding
        assert np.abs(half - (inputs + full) / 2).max() <= 1.0
    document = json.loads(half_model.save(tmp_path / "model.json").read_text())
    assert document["steps"][0]["params"]["alpha"] == 0.5
    loaded = Mosaic.load(tmp_path / "model.json")
    again = output_paths(loaded.transform(data_dir, tmp_path / "again"))
    assert np.array_equal(np.concatenate([read_raster(path).ravel() for path in again]), half)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), "half"])
def test_alpha_outside_zero_to_one_is_refused(tiles, alpha):
    with pytest.raises(SpectralMatchError, match="alpha"):
        Mosaic(steps=[BlockMap(block_size=16, alpha=alpha)]).fit(tiles.paths)


def test_a_canvas_lays_the_grid_over_it_and_matches_as_well(tmp_path, tiles):
    left, bottom, right, top = ImageCollection(tiles.paths).bounds
    canvas = (left - 40, bottom - 40, right + 40, top + 40)

    def matched(folder, **canvas_option):
        model = Mosaic(steps=[BlockMap(block_size=16, **canvas_option)], threads=2)
        outputs = output_paths(model.fit_transform(tiles.paths, tmp_path / folder))
        return model.steps_[0], seam_error(tiles, outputs)

    grid, error = matched("canvas", canvas=canvas)
    _, error_without = matched("union")
    assert (grid.grid_.left, grid.grid_.top) == (canvas[0], canvas[3])
    assert grid.grid_.cols * grid.grid_.block_width >= canvas[2] - canvas[0]
    assert error < 1.25 * error_without < seam_error(tiles, tiles.paths)


def test_a_canvas_that_leaves_images_out_says_so(tiles):
    left, bottom, right, top = ImageCollection(tiles.paths).bounds
    with pytest.warns(SpectralMatchWarning, match="does not contain the images' extent"):
        Mosaic(steps=[BlockMap(block_size=16, canvas=(left, bottom, right - 50, top))]).fit(
            tiles.paths
        )


# ---------------------------------------------------------------------- 5. nodata and edges


def _rewrite(tiles, index, data):
    with rasterio.open(tiles.paths[index]) as dataset:
        transform = dataset.transform
    write_raster(
        tiles.paths[index], data, transform=transform, nodata=tiles.nodata, dtype=tiles.dtype
    )


def overlap_counts(tiles, index, block, min_pixels):
    """numpy: jointly valid pixels of tile ``index`` with each other tile per block of a
    grid from the truth's corner (pairs below ``min_pixels`` dropped), summed over pairs."""
    placed = [np.isfinite(canvas) for canvas in on_truth_grid(tiles, tiles.paths)]
    bands, height, width = placed[0].shape
    n_rows, n_cols = -(-height // block), -(-width // block)
    total = np.zeros((bands, n_rows, n_cols))
    for other in range(len(placed)):
        if other == index:
            continue
        joint = np.zeros((bands, n_rows * block, n_cols * block))
        joint[:, :height, :width] = placed[index] & placed[other]
        counts = joint.reshape(bands, n_rows, block, n_cols, block).sum(axis=(2, 4))
        total += np.where(counts >= min_pixels, counts, 0)
    return total


def _check_outputs(tiles, outputs):
    for index, path in enumerate(outputs):
        data, output = tiles.data_of(index), read_raster(path)
        assert output.dtype == data.dtype
        valid = valid_mask(data, tiles.nodata)
        np.testing.assert_array_equal(valid_mask(output, tiles.nodata), valid)
        assert np.isfinite(output[valid].astype(np.float64)).all()


@pytest.mark.parametrize("correction", CORRECTIONS)
def test_rotated_footprints_and_a_hole_keep_their_masks(tmp_path, truth, correction):
    tiles = field_tiles(tmp_path / "in", truth)
    rows, cols = np.mgrid[0:125, 0:125]
    # tile 0: valid inside a square rotated by 30 degrees (a real scene's footprint)
    theta = np.deg2rad(30.0)
    u = np.cos(theta) * (cols - 62) + np.sin(theta) * (rows - 62)
    v = -np.sin(theta) * (cols - 62) + np.cos(theta) * (rows - 62)
    data = tiles.data_of(0)
    data[:, (np.abs(u) > 50) | (np.abs(v) > 50)] = 0
    _rewrite(tiles, 0, data)
    # tile 1: a 40 x 40 px hole (more than a 16 px block) in its overlap with tile 0
    data = tiles.data_of(1)
    data[:, 40:80, 5:45] = 0
    _rewrite(tiles, 1, data)
    model = Mosaic(
        pif=None, steps=[GlobalModel(), BlockMap(block_size=16, correction=correction)], threads=2
    )
    outputs = output_paths(model.fit_transform(tiles.paths, tmp_path / "out"))
    _check_outputs(tiles, outputs)
    assert (read_raster(outputs[1])[:, 40:80, 5:45] == 0).all()
    step = model.steps_[1]
    # blocks 3-4 x 5-6 (truth rows 48-80, cols 80-112) lie inside tile 1's hole, where it
    # overlaps tile 0 and, from row 75, tiles 2 and 3: it has no overlap pixel there
    assert (step.counts_[1][:, 3:5, 5:7] == 0).all()
    # and every image's overlap pixels per block are those counted with numpy
    for index in range(4):
        np.testing.assert_array_equal(
            step.counts_[index], overlap_counts(tiles, index, 16, step.min_pixels)
        )
    assert np.isfinite(step.shifts_).all() and np.isfinite(step.spread_factors_).all()
    assert seam_error(tiles, outputs) < 0.2 * seam_error(tiles, tiles.paths)


def test_partial_edge_blocks_and_a_single_block(tmp_path, truth):
    # pure offsets: one block (a constant shift per image) is all that is needed
    offsets = np.array([[0, 0, 0], [150, -80, 60], [-120, 90, 30], [70, 40, -100]], float)
    tiles = make_tiles(
        tmp_path / "in",
        truth,
        gains=np.ones((4, 3)),
        offsets=offsets,
        windows=FIELD_LAYOUT,
        noise_sd=1.0,
    )
    model = Mosaic(pif=None, steps=[BlockMap(block_size=512, correction="offset")], threads=2)
    outputs = output_paths(model.fit_transform(tiles.paths, tmp_path / "single"))
    single = model.steps_[0]
    assert (single.grid_.rows, single.grid_.cols) == (1, 1)
    assert single.shifts_.shape == (4, 3, 1, 1)
    _check_outputs(tiles, outputs)
    for index, path in enumerate(outputs):
        data = tiles.data_of(index)
        valid = valid_mask(data, 0)
        change = read_raster(path).astype(np.int64) - data.astype(np.int64)
        for band in range(3):
            shift = single.shifts_[index, band, 0, 0]
            assert set(np.unique(change[band][valid[band]])) <= {np.floor(shift), np.ceil(shift)}
    # the offsets relative to their count-weighted mean are undone
    relative = -(offsets - offsets.mean(axis=0))
    np.testing.assert_allclose(single.shifts_[:, :, 0, 0], relative, atol=15.0)
    placed = on_truth_grid(tiles, outputs)
    for i in range(4):
        for j in range(i + 1, 4):
            difference = placed[i] - placed[j]
            means = np.nanmean(difference.reshape(3, -1), axis=1)
            assert np.abs(means).max() < 2.0
    # 200 px / 32 px: 7 blocks per side, the last one 8 px wide, measured and used
    model = Mosaic(pif=None, steps=[BlockMap(block_size=32, correction="offset")], threads=2)
    outputs = output_paths(model.fit_transform(tiles.paths, tmp_path / "edge"))
    edge = model.steps_[0]
    assert (edge.grid_.rows, edge.grid_.cols) == (7, 7)
    assert edge.grid_.block_width == 32 * 30.0
    # the last block row (truth rows 192-200): block 3 (cols 96-128) holds 8 x 29 px of
    # the overlap of tiles 2 and 3 (cols 75-125)
    assert (edge.counts_[2][:, 6, 3] == 8 * 29).all()
    assert (edge.counts_[3][:, 6, 3] == 8 * 29).all()
    _check_outputs(tiles, outputs)
    assert seam_error(tiles, outputs) < 0.05 * seam_error(tiles, tiles.paths)


DTYPE_CASES = {
    # dtype, nodata, truth scaled to (low, high), noise, exact values planted in the tiles
    "int16": ("int16", -32768, (-2000.0, 3000.0), 1.0, (0, -1, -2000)),
    "float32": ("float32", float("nan"), (-0.05, 0.4), 1e-4, (0.0, -0.05, -1e-3)),
}


@pytest.mark.parametrize("correction", CORRECTIONS)
@pytest.mark.parametrize("case", list(DTYPE_CASES))
def test_signed_and_float_data(tmp_path, truth, case, correction):
    dtype, nodata, (low, high), noise, planted = DTYPE_CASES[case]
    p1, p99 = np.percentile(truth.data, [1, 99], axis=(1, 2))
    scaled = low + (high - low) * (truth.data - p1[:, None, None]) / (p99 - p1)[:, None, None]
    scaled = type(truth)(np.clip(scaled, low, high), truth.transform)
    span = high - low
    tiles = make_tiles(
        tmp_path / "in",
        scaled,
        gains=np.ones((4, 3)),
        offsets=np.repeat([[0.0], [0.04], [-0.03], [0.02]], 3, axis=1) * span,
        windows=FIELD_LAYOUT,
        fields=smooth_fields(FIELD_LAYOUT, 0.06),
        noise_sd=noise,
        dtype=dtype,
        nodata=nodata,
    )
    for index in range(4):
        data = tiles.data_of(index)
        cols = slice(80, 90) if index in (0, 2) else slice(10, 20)  # in the overlaps
        for k, value in enumerate(planted):  # zeros and negatives
            data[:, 55 + 5 * k : 60 + 5 * k, cols] = value
        _rewrite(tiles, index, data)
    assert (tiles.data_of(1) < 0).any()
    model = Mosaic(steps=[GlobalModel(), BlockMap(block_size=16, correction=correction)], threads=2)
    outputs = output_paths(model.fit_transform(tiles.paths, tmp_path / "out"))
    _check_outputs(tiles, outputs)
    step = model.steps_[1]
    assert (step.pivot_ < 0).all()  # negative data: the pivot is below the minimum
    assert np.isfinite(step.shifts_).all() and np.isfinite(step.local_means_).all()
    for path in outputs:
        output = read_raster(path)
        values = output[valid_mask(output, nodata)].astype(np.float64)
        assert values.min() > low - 0.5 * span and values.max() < high + 0.5 * span
    assert seam_error(tiles, outputs) < 0.5 * seam_error(tiles, tiles.paths)


# ---------------------------------------------------------------------- 6. one pass


@pytest.mark.parametrize("correction", ["gain", "wallis"])
def test_statistics_mapped_through_the_global_step_equal_a_second_fit(tmp_path, truth, correction):
    tiles = field_tiles(
        tmp_path / "in", truth, dtype="float64", nodata=float("nan"), cut_corners=True
    )
    combined = Mosaic(
        pif=None, steps=[GlobalModel(), BlockMap(block_size=16, correction=correction)], threads=2
    ).fit(tiles.paths)
    first = Mosaic(pif=None, steps=[GlobalModel()], threads=2).fit(tiles.paths)
    written = first.transform(tiles.paths, tmp_path / "global", working_dtype="float64")
    with rasterio.open(written.images[1].path) as dataset:
        assert dataset.dtypes[0] == "float64"
    alone = Mosaic(pif=None, steps=[BlockMap(block_size=16, correction=correction)], threads=2).fit(
        written
    )
    a, b = combined.steps_[1], alone.steps_[0]
    np.testing.assert_allclose(combined.steps_[0].gains_, first.steps_[0].gains_, rtol=1e-12)
    assert a.grid_ == b.grid_
    np.testing.assert_array_equal(a.counts_, b.counts_)
    assert np.abs(a.shifts_).max() > 50  # there is something to compare
    np.testing.assert_allclose(a.shifts_, b.shifts_, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(a.spread_factors_, b.spread_factors_, rtol=1e-6)
    np.testing.assert_allclose(a.local_means_, b.local_means_, rtol=1e-9)
    np.testing.assert_allclose(a.pivot_, b.pivot_, atol=1e-6)
    np.testing.assert_allclose(a.range_, b.range_, rtol=1e-9)


class Sqrt(Adjuster):
    """A non-linear step without transform_statistics: values -> sqrt(values)."""

    def fit(self, statistics):
        self.fitted_ = True
        return self

    def transform_window(self, image, window, values, valid):
        return np.sqrt(np.where(valid, values, 0.0))

    def get_state(self):
        return {}

    def set_state(self, state):
        self.fitted_ = True


def test_non_linear_step_fits_the_next_steps_with_a_second_pass(tmp_path, truth):
    tiles = field_tiles(
        tmp_path / "in",
        truth,
        gains=np.array([[1.0] * 3, [1.3] * 3, [0.8] * 3, [1.1] * 3]),
        cut_corners=True,
    )
    rooted_folder = tmp_path / "rooted"
    for index, name in enumerate(tiles.names):
        data = tiles.data_of(index).astype(np.float64)
        with rasterio.open(tiles.paths[index]) as dataset:
            transform = dataset.transform
        write_raster(
            rooted_folder / f"{name}.tif",
            np.where(data == 0, np.nan, np.sqrt(data)),
            transform=transform,
            nodata=float("nan"),
            dtype="float64",
        )
    listing = folder_listing(tmp_path)

    model = Mosaic(
        pif=None,
        steps=[Sqrt(), GlobalModel(), BlockMap(block_size=32, correction="wallis")],
        threads=2,
    ).fit(tiles.paths)
    assert folder_listing(tmp_path) == listing  # the second pass writes nothing

    reference = Mosaic(
        pif=None, steps=[GlobalModel(), BlockMap(block_size=32, correction="wallis")], threads=2
    ).fit(sorted(rooted_folder.iterdir()))
    ours, theirs = model.steps_[1], reference.steps_[0]
    assert np.abs(ours.gains_ - 1).max() > 0.03  # the gains are not trivial
    np.testing.assert_allclose(ours.gains_, theirs.gains_, rtol=1e-9)
    np.testing.assert_allclose(ours.offsets_, theirs.offsets_, rtol=1e-9, atol=1e-9)
    blocks, their_blocks = model.steps_[2], reference.steps_[1]
    np.testing.assert_array_equal(blocks.counts_, their_blocks.counts_)
    np.testing.assert_allclose(blocks.shifts_, their_blocks.shifts_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(blocks.spread_factors_, their_blocks.spread_factors_, rtol=1e-6)
    # in sqrt units (~80 DN^0.5): the model's outputs are the square-rooted, matched tiles
    outputs = model.transform(tiles.paths, tmp_path / "out")
    assert read_raster(outputs.images[0].path).max() < 200


# ---------------------------------------------------------------------- 7. BlockGrid


@pytest.fixture
def grid_images(tmp_path):
    """A 100 x 60 px image at 30 m and a 50 x 50 px one at 10 m inside its extent."""
    a = write_raster(
        tmp_path / "a.tif",
        np.ones((1, 60, 100), np.uint8),
        transform=from_origin(700000.0, 5000000.0, 30.0, 30.0),
    )
    b = write_raster(
        tmp_path / "b.tif",
        np.ones((1, 50, 50), np.uint8),
        transform=from_origin(702000.0, 4999000.0, 10.0, 10.0),
    )
    return ImageCollection([a, b])


def test_grid_covering_by_block_size_and_by_count(grid_images):
    # extent 3000 x 1800 m; the finest pixel is 10 m
    grid = BlockGrid.covering(grid_images, block_size=32)
    assert (grid.left, grid.top) == (700000.0, 5000000.0)
    assert grid.block_width == grid.block_height == 320.0
    assert (grid.rows, grid.cols, grid.size) == (6, 10, 60)  # 5.6 and 9.4 blocks
    assert grid.transform == from_origin(700000.0, 5000000.0, 320.0, 320.0)
    grid = BlockGrid.covering(grid_images, n_blocks=4)  # along the longer side
    assert grid.block_width == 750.0 and (grid.rows, grid.cols) == (3, 4)
    grid = BlockGrid.covering(grid_images, n_blocks=6)  # 500 m: 1800 m is 3.6 blocks
    assert (grid.rows, grid.cols) == (4, 6)
    grid = BlockGrid.covering(grid_images, block_size=1000)  # larger than the extent
    assert (grid.rows, grid.cols) == (1, 1) and grid.block_width == 3000.0
    grid = BlockGrid.covering(grid_images, block_size=30)  # 300 m: exactly 10 x 6
    assert (grid.rows, grid.cols) == (6, 10)


def test_pixel_and_window_blocks(grid_images):
    grid = BlockGrid.covering(grid_images, block_size=32)  # 320 m = 10.67 px of image a
    image = grid_images.images[0]
    rows, cols = grid.cell_blocks(image.grid.window_grid(Window(5, 8, 30, 4)))
    # pixel centres at 30 * (col + 0.5) m: col 10 -> 315 m (block 0), col 11 -> 345 m
    assert cols.tolist() == [0] * 6 + [1] * 10 + [2] * 11 + [3] * 3
    assert rows.tolist() == [0, 0, 0, 1]
    blocks, row_starts, col_starts = grid.window_blocks(image.grid.window_grid(Window(5, 8, 30, 4)))
    assert row_starts.tolist() == [0, 3] and col_starts.tolist() == [0, 6, 16, 27]
    assert blocks.tolist() == [0, 1, 2, 3, 10, 11, 12, 13]
    # the 10 m image, at 2000 m east and 1000 m south of the grid's corner
    blocks, row_starts, col_starts = grid.window_blocks(
        grid_images.images[1].grid.window_grid(Window(0, 0, 50, 50))
    )
    assert row_starts.tolist() == [0, 28] and col_starts.tolist() == [0, 24]
    assert blocks.tolist() == [3 * 10 + 6, 3 * 10 + 7, 4 * 10 + 6, 4 * 10 + 7]


def test_blocks_near_an_area_hold_every_block_its_pixels_fall_in(grid_images):
    grid = BlockGrid.covering(grid_images, block_size=32)  # 6 x 10 blocks of 320 m
    rng = np.random.default_rng(5)
    for _ in range(200):
        # areas within, across and beyond the grid (pixels outside take the edge blocks)
        left, bottom = rng.uniform(699000.0, 703500.0), rng.uniform(4997500.0, 5000900.0)
        bounds = (left, bottom, left + rng.uniform(1.0, 1500.0), bottom + rng.uniform(1, 900))
        near = grid.blocks_near(bounds)
        assert np.all(np.diff(near) > 0) and near[0] >= 0 and near[-1] < grid.size
        width, height = (max(int(side // 10), 1) for side in (bounds[2] - left, bounds[3] - bottom))
        pixels = PixelGrid(from_origin(left, bounds[3], 10.0, 10.0), width, height)
        blocks, _, _ = grid.window_blocks(pixels)
        assert np.array_equal(near[positions_in(near, blocks)], blocks)
    # the 10 m image's area: its 2 x 2 blocks and their neighbours, 4 x 4
    near = grid.blocks_near(grid_images.images[1].bounds)
    assert near.tolist() == [r * 10 + c for r in (2, 3, 4, 5) for c in (5, 6, 7, 8)]
    with pytest.raises(ValueError, match=r"blocks \[0\] are not among"):
        positions_in(near, np.array([0, 26]))


def test_interpolation_of_a_linear_surface(grid_images):
    grid = BlockGrid.covering(grid_images, block_size=32)
    centres_r, centres_c = np.mgrid[0 : grid.rows, 0 : grid.cols] + 0.5  # in block units
    a, b, c = np.array([1000.0, -20.0]), np.array([35.0, 2.5]), np.array([-12.0, 7.0])
    surface = a[:, None, None] + b[:, None, None] * centres_r + c[:, None, None] * centres_c
    for image in grid_images:
        window = Window(0, 0, image.width, image.height)
        (values,) = grid.interpolate([surface], image.grid.window_grid(window))
        assert values.shape == (2, image.height, image.width)
        transform = image.transform
        x = transform.c + transform.a * (np.arange(image.width) + 0.5)
        y = transform.f + transform.e * (np.arange(image.height) + 0.5)
        r = (grid.top - y) / grid.block_height
        q = (x - grid.left) / grid.block_width
        clamped_r = np.clip(r, 0.5, grid.rows - 0.5)[None, :, None]
        clamped_q = np.clip(q, 0.5, grid.cols - 0.5)[None, None, :]
        expected = a[:, None, None] + b[:, None, None] * clamped_r + c[:, None, None] * clamped_q
        np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-4)
        inside = ((r >= 0.5) & (r <= grid.rows - 0.5))[:, None] & (
            (q >= 0.5) & (q <= grid.cols - 0.5)
        )[None, :]
        assert inside.mean() > 0.5
        exact = (
            a[:, None, None]
            + b[:, None, None] * r[None, :, None]
            + c[:, None, None] * q[None, None, :]
        )
        np.testing.assert_allclose(values[:, inside], exact[:, inside], rtol=1e-6, atol=1e-4)
    # image a reaches the grid's edges: its first pixel takes the first block centre
    (values,) = grid.interpolate(
        [surface], grid_images.images[0].grid.window_grid(Window(0, 0, 3, 3))
    )
    np.testing.assert_allclose(values[:, 0, 0], surface[:, 0, 0], rtol=1e-7)
    # its last pixel (centre 1785 m south, 2985 m east) is below the last row of centres
    (values,) = grid.interpolate(
        [surface], grid_images.images[0].grid.window_grid(Window(97, 57, 3, 3))
    )
    np.testing.assert_allclose(values[:, -1, -1], a + b * 5.5 + c * 2985 / 320, rtol=1e-6)
    # one block: a constant everywhere
    single = BlockGrid.covering(grid_images, block_size=1000)
    (values,) = single.interpolate(
        [np.array([[[7.5]]])], grid_images.images[1].grid.window_grid(Window(0, 0, 50, 50))
    )
    assert values.shape == (1, 50, 50) and (values == 7.5).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_correction_by_strips_is_the_whole_window_interpolated(grid_images, dtype):
    grid = BlockGrid.covering(grid_images, block_size=16)
    rng = np.random.default_rng(5)
    gain = rng.uniform(0.8, 1.2, (3, grid.rows, grid.cols))
    offset = rng.uniform(-50, 50, (3, grid.rows, grid.cols))
    image = grid_images.images[0]
    # rows in three strips, the last one short
    cells = image.grid.window_grid(Window(0, 0, image.width, image.height)).resampled(
        (2 * STRIP_ROWS + 22, 130)
    )
    values = rng.uniform(0, 10000, (3, cells.height, cells.width)).astype(dtype)
    whole_gain, whole_offset = grid.interpolate([gain.astype(dtype), offset.astype(dtype)], cells)
    expected = values * whole_gain + whole_offset
    corrected = grid.correct_linear(values, gain, offset, cells)
    assert corrected is values and corrected.dtype == dtype  # in place
    np.testing.assert_array_equal(corrected, expected)


@pytest.mark.parametrize(
    "transform",
    [
        Affine(30.0, 3.0, 700000.0, 3.0, -30.0, 5000000.0),
        Affine(30.0, 0.0, 700000.0, 0.0, 30.0, 5000000.0),
    ],
    ids=["rotated", "south-up"],
)
def test_rotated_grids_are_refused_naming_the_file(tmp_path, grid_images, transform):
    odd = write_raster(
        tmp_path / "odd_one.tif", np.ones((1, 20, 20), np.uint8), transform=transform
    )
    with pytest.raises(SpectralMatchError, match="odd_one.tif") as error:
        collection = ImageCollection([*grid_images.images, Image(odd)])
        Mosaic(steps=[BlockMap(block_size=16, correction="offset")]).fit(collection)
    assert "north-up" in str(error.value)


# ---------------------------------------------------------------------- 10. new scenes


@pytest.mark.parametrize("where", ["inside", "beyond"])
def test_new_scene_with_a_local_step(tmp_path, where):
    """The new scene lies inside the fitted images' extent, or reaches 35 px beyond it
    (off the block grid: its edge blocks and values are extended)."""
    windows = FIELD_LAYOUT[:3] + (
        [FIELD_LAYOUT[3]] if where == "inside" else [Window(110, 110, 125, 125)]
    )
    tiles = field_tiles(tmp_path / "in", load_truth(235), windows=windows, cut_corners=True)
    fitted = tiles.paths[:3]
    model = Mosaic(
        steps=[GlobalModel(), BlockMap(block_size=32, correction="wallis")], threads=2
    ).fit(fitted)
    before = output_paths(model.transform(fitted, tmp_path / "before"))
    step = model.steps_[1]
    arrays = {
        name: getattr(step, name).copy()
        for name in ("shifts_", "local_means_", "spread_factors_", "counts_")
    }
    path = model.save(tmp_path / "model" / "model.json")
    saved = (path.read_bytes(), path.with_suffix(".npz").read_bytes())

    loaded = Mosaic.load(path)
    new = output_paths(loaded.transform([tiles.paths[3]], tmp_path / "new"))
    with_fitted = [(0, 3), (1, 3), (2, 3)]
    raw_seam = seam_error(tiles, [*before, tiles.paths[3]], with_fitted)
    new_seam = seam_error(tiles, [*before, *new], with_fitted)
    assert raw_seam > 300
    assert new_seam < (0.2 if where == "inside" else 0.25) * raw_seam
    # better than the new scene's global parameters alone would do
    global_only = Mosaic(steps=[loaded.steps_[0]], threads=1)
    global_only.steps_ = [loaded.steps_[0]]
    global_only.images_, global_only.n_bands_ = loaded.images_, loaded.n_bands_
    global_new = output_paths(global_only.transform([tiles.paths[3]], tmp_path / "gnew"))
    assert new_seam < 0.7 * seam_error(tiles, [*before, *global_new], with_fitted)

    local = loaded.steps_[1]
    assert local.images_ == tiles.names
    assert local.shifts_.shape == (4, 3, 7, 7)
    for name, array in arrays.items():
        np.testing.assert_array_equal(getattr(local, name)[:3], array)
    assert np.abs(local.shifts_[3]).max() > 10
    assert (path.read_bytes(), path.with_suffix(".npz").read_bytes()) == saved
    again = loaded.transform(fitted, tmp_path / "again")
    for a, b in zip(before, output_paths(again), strict=True):
        assert np.array_equal(read_raster(a), read_raster(b))
    _check_outputs(tiles, [*before, *new])


def test_bad_parameters_are_refused(tiles):
    with pytest.raises(SpectralMatchError, match="'median'"):
        Mosaic(steps=[BlockMap(block_size=16, correction="median")]).fit(tiles.paths)
    with pytest.raises(SpectralMatchError, match="not both"):
        Mosaic(steps=[BlockMap(block_size=16, n_blocks=4, correction="offset")]).fit(tiles.paths)
    with pytest.raises(SpectralMatchError, match="'tile_9'"):
        Mosaic(steps=[BlockMap(block_size=16, correction="offset", reference=["tile_9"])]).fit(
            tiles.paths
        )


# ---------------------------------------------------------------------- chains and grids


def test_a_second_local_step_fits_after_a_second_pass(field_set):
    tiles, _, folder = field_set
    model = Mosaic(
        steps=[
            GlobalModel(),
            BlockMap(block_size=16, correction="offset"),
            BlockMap(block_size=16, correction="offset"),
        ],
        threads=2,
    )
    outputs = output_paths(model.fit_transform(tiles.paths, folder / "chain"))
    first, second = model.steps_[1], model.steps_[2]
    # the second step measured the images as corrected by the first: little is left
    assert np.abs(second.shifts_).mean() < 0.1 * np.abs(first.shifts_).mean()
    assert seam_error(tiles, outputs) < 0.1 * seam_error(tiles, tiles.paths)


def test_an_image_at_a_finer_resolution(field_set, tmp_path):
    tiles, _, _ = field_set
    with rasterio.open(tiles.paths[1]) as dataset:
        transform = dataset.transform
    paths = list(tiles.paths)
    fine = np.repeat(np.repeat(tiles.data_of(1), 3, axis=1), 3, axis=2)
    fine[:, :30, :30] = 0  # some nodata, at the fine resolution
    paths[1] = write_raster(
        tmp_path / "fine" / "tile_1.tif", fine, transform=transform @ Affine.scale(1 / 3), nodata=0
    )
    model = Mosaic(steps=[GlobalModel(), BlockMap(block_size=48, correction="offset")], threads=2)
    outputs = output_paths(model.fit_transform(paths, tmp_path / "out"))
    step = model.steps_[1]
    assert step.grid_.block_width == 48 * 10.0  # block_size is in the finest pixels
    assert (step.grid_.rows, step.grid_.cols) == (13, 13)
    output = read_raster(outputs[1])
    np.testing.assert_array_equal(output != 0, fine != 0)
    coarse = write_raster(
        tmp_path / "coarse.tif", output[:, 1::3, 1::3], transform=transform, nodata=0
    )
    after = seam_error(tiles, [outputs[0], coarse, outputs[2], outputs[3]])
    assert after < 0.1 * seam_error(tiles, tiles.paths)


@pytest.mark.parametrize("correction", ["wallis", "gamma"])
def test_a_block_map_for_one_image_corrects_it_alike_and_carries_its_part_only(
    data_dir, correction
):
    import pickle

    from spectralmatch.model.adjuster import StepChain

    model = Mosaic(steps=[GlobalModel(), BlockMap(block_size=64, correction=correction)])
    model.fit(data_dir)
    chain, block_map = StepChain(tuple(model.steps_)), model.steps_[1]
    for image in ImageCollection.from_paths(data_dir):
        one = chain.for_image(image.name)
        window = Window(7, 11, 150, 90)
        with image.open() as dataset:
            values, valid = image.read(window, dataset)
        values = values.astype(np.float32)
        expected = chain(image, window, values.copy(), valid)
        np.testing.assert_array_equal(one(image, window, values.copy(), valid), expected)
        light = one.steps[1]
        assert light.images_ == [image.name] and light.shifts_.shape[0] == 1
        assert len(pickle.dumps(light)) < len(pickle.dumps(block_map)) / 2
    assert len(block_map.images_) == 4  # the model itself is left whole
    # a subclass may keep state per image of its own: it is sent whole
    subclass = type("Curved", (BlockMap,), {})()
    subclass.__dict__.update(block_map.__dict__)
    assert subclass.for_image(block_map.images_[0]) is subclass


def test_fill_from_neighbours_grows_ring_by_ring():
    values = np.array([[4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 8.0]])
    known = np.array([[True, False, False, False], [False, False, False, True]])
    filled = fill_from_neighbours(values, known)
    # first ring: each unknown cell next to a known one takes the mean of those
    assert filled[0, 1] == 4.0 and filled[1, 0] == 4.0
    assert filled[0, 3] == 8.0 and filled[1, 2] == 8.0
    # second ring: cells between the two grown fronts average them
    assert filled[0, 2] == pytest.approx((4.0 + 8.0 + 8.0) / 3)
    assert filled[1, 1] == pytest.approx((4.0 + 4.0 + 8.0) / 3)
    assert filled[known].tolist() == [4.0, 8.0]
    assert np.array_equal(fill_from_neighbours(values, np.zeros_like(known)), np.zeros_like(values))


def _grown_over_whole_grids(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """The ring-by-ring fill as defined: each round, every unknown cell with known
    4-neighbours takes their mean (the sum taken above, below, left, right)."""
    filled, have = np.where(known, values, 0.0), known.copy()
    while True:
        padded = np.pad(filled * have, [(0, 0)] * (filled.ndim - 2) + [(1, 1), (1, 1)])
        counted = np.pad(have, [(0, 0)] * (have.ndim - 2) + [(1, 1), (1, 1)]).astype(float)
        total, count = np.zeros_like(filled), np.zeros_like(filled)
        for rows, cols in (
            (slice(0, -2), slice(1, -1)),
            (slice(2, None), slice(1, -1)),
            (slice(1, -1), slice(0, -2)),
            (slice(1, -1), slice(2, None)),
        ):
            total += padded[..., rows, cols]
            count += counted[..., rows, cols]
        grow = ~have & (count > 0)
        if not grow.any():
            return filled
        filled[grow] = total[grow] / count[grow]
        have |= grow


def test_fill_from_neighbours_matches_growing_over_whole_grids_to_the_bit():
    rng = np.random.default_rng(11)
    for shape, share in (((4, 3, 40, 33), 0.01), ((2, 17, 5), 0.2), ((1, 1), 1.0), ((30, 1), 0.05)):
        values = rng.normal(size=shape) * 1e3
        known = rng.random(shape) < share
        expected = _grown_over_whole_grids(values, known)
        assert np.array_equal(fill_from_neighbours(values, known), expected)


def test_fill_from_neighbours_grows_each_grid_of_a_stack_as_if_alone():
    rng = np.random.default_rng(3)
    values = rng.normal(size=(3, 2, 9, 7))
    known = rng.random(values.shape) < 0.15
    known[1, 0] = False  # a grid with nothing known stays 0
    known[2, 1] = True  # and one with everything known stays as it is
    stacked = fill_from_neighbours(values, known)
    for index in np.ndindex(values.shape[:2]):
        alone = fill_from_neighbours(values[index], known[index])
        assert np.array_equal(stacked[index], alone)
    assert not stacked[1, 0].any() and np.array_equal(stacked[2, 1], values[2, 1])


# ---------------------------------------------------------------------- 8. windows


def test_filling_a_window_gives_the_whole_grid_fill_to_the_bit():
    """An image's surfaces are filled over its window of the grid only: inside a
    rectangle holding every known block, the rings are those of the whole grid."""
    rng = np.random.default_rng(17)
    for _ in range(40):
        rows, cols = rng.integers(3, 25, size=2)
        grid = BlockGrid(0.0, 0.0, 1.0, 1.0, int(rows), int(cols))
        top, left = rng.integers(0, rows - 1), rng.integers(0, cols - 1)
        height, width = rng.integers(2, rows - top + 1), rng.integers(2, cols - left + 1)
        known = np.zeros((2, rows, cols), dtype=bool)
        inside = rng.random((2, height, width)) < rng.uniform(0.02, 0.5)
        known[:, top : top + height, left : left + width] = inside
        values = np.where(known, rng.normal(size=known.shape) * 100, 0.0)
        whole = fill_from_neighbours(values, known)
        windows = BlockWindows(grid, np.array([[top, left, height, width]]))
        part = (slice(None), slice(top, top + height), slice(left, left + width))
        counts = np.where(known[part], 150.0, 0.0).reshape(2, -1)
        surfaces = BlockSurfaces.filled(
            windows, counts, *(values[part].reshape(2, -1) for _ in range(3))
        )
        assert np.array_equal(surfaces.of("shifts", 0), whole[part])
        assert np.array_equal(surfaces.on_whole_grid("shifts")[0], whole)
        assert np.array_equal(surfaces.of("spread_factors", 0), np.exp(whole[part]))


def test_block_windows_lay_each_image_s_blocks_end_to_end(grid_images):
    grid = BlockGrid.covering(grid_images, block_size=32)  # 6 x 10 blocks
    windows = BlockWindows.near(grid, [image.bounds for image in grid_images])
    # image a covers the grid; image b's 2 x 2 blocks and one more around them
    assert windows.windows.tolist() == [[0, 0, 6, 10], [2, 5, 4, 4]]
    assert windows.total == 60 + 16 and windows.starts.tolist() == [0, 60, 76]
    values = np.arange(2 * windows.total, dtype=float).reshape(2, -1)
    assert windows.of(values, 1).shape == (2, 4, 4)
    assert windows.of(values, 1)[1, 0, 0] == values[1, 60]
    blocks = np.array([2 * 10 + 5, 5 * 10 + 8])
    assert windows.positions(np.array([1, 1]), blocks).tolist() == [60, 75]
    with pytest.raises(ValueError, match="outside its image's window"):
        windows.positions(np.array([1]), np.array([0]))
    placed = windows.placed(values, 1, np.nan)
    assert np.isnan(placed[:, :2]).all() and np.array_equal(
        placed[:, 2:6, 5:9], windows.of(values, 1)
    )
    one = windows.select([1])
    assert np.array_equal(one.of(windows.take(values, [1]), 0), windows.of(values, 1))
    # an image beyond the grid's edge still gets the two blocks interpolation reads
    beyond = BlockWindows.near(grid, [(690000.0, 4990000.0, 695000.0, 4995000.0)])
    assert beyond.windows.tolist() == [[4, 0, 2, 2]]


def test_surfaces_over_windows_fit_and_correct_as_over_the_whole_grid(tmp_path, truth):
    """The fit on each image's window (from the images' bounds) against the same fit
    with every image over the whole grid (bounds unknown): the same numbers, and every
    pixel corrected to the same bits."""
    from attrs import evolve

    from spectralmatch import OverlapGraph
    from spectralmatch.engine.collect import StatisticsPass

    tiles = field_tiles(tmp_path / "in", truth, gains=FIELD_GAINS, cut_corners=True)
    collection = ImageCollection.from_paths(tiles.paths)
    for correction in CORRECTIONS:
        step = BlockMap(block_size=16, correction=correction, reference=[1])
        statistics = StatisticsPass().collect(
            collection, OverlapGraph.from_collection(collection).edges, step.requests(collection)
        )
        near = BlockMap(**step.get_params()).fit(statistics)
        whole = BlockMap(**step.get_params()).fit(evolve(statistics, bounds=[]))
        grid = near.grid_
        assert (grid.rows, grid.cols) == (13, 13)
        assert near.surfaces_.windows.total < whole.surfaces_.windows.total == 4 * 13 * 13
        for name in ("counts_", "local_means_", "shifts_"):
            np.testing.assert_array_equal(getattr(near, name), getattr(whole, name))
        # spread factors beyond a window go through their logarithm: within 2 ulp
        np.testing.assert_allclose(near.spread_factors_, whole.spread_factors_, rtol=5e-16)
        assert np.abs(near.shifts_).max() > 50  # there is something to compare
        for row, image in enumerate(collection):
            rows, cols = near.surfaces_.windows.slices(row)
            assert np.array_equal(
                near.surfaces_.of("spread_factors", row), whole.spread_factors_[row][:, rows, cols]
            )
            window = Window(0, 0, image.width, image.height)
            values, valid = image.read(window)
            values = values.astype(np.float32)
            expected = whole.transform_window(image, window, values.copy(), valid)
            assert np.array_equal(
                near.transform_window(image, window, values.copy(), valid), expected
            )
            if correction != "gamma":
                gains, offsets = near.block_gains_offsets(image.name, near=True)
                all_gains, all_offsets = whole.block_gains_offsets(image.name)
                np.testing.assert_array_equal(gains, all_gains[:, rows, cols])
                np.testing.assert_array_equal(offsets, all_offsets[:, rows, cols])


def test_interpolating_beyond_the_surfaces_window_is_refused(grid_images):
    grid = BlockGrid.covering(grid_images, block_size=32)
    image = grid_images.images[0]
    surface = np.ones((1, 3, 3))
    cells = image.grid.window_grid(Window(0, 0, 100, 60))
    with pytest.raises(ValueError, match="outside the surfaces' window"):
        grid.interpolate([surface], cells, origin=(1, 1))


def test_a_model_file_of_format_1_loads_and_corrects_alike(tmp_path, data_dir):
    """Files written before the windows held every image's surfaces over the whole
    grid (format_version 1): they load, and correct to the same bits."""
    model = Mosaic(steps=[GlobalModel(), BlockMap(block_size=64)]).fit(data_dir)
    path = model.save(tmp_path / "model.json")
    step = model.steps_[1]
    document = json.loads(path.read_text())
    document["format_version"] = 1
    state = document["steps"][1]["state"]
    del state["windows"]
    for name in ("counts", "local_means", "shifts", "spread_factors"):
        state[name] = getattr(step, f"{name}_").tolist()  # whole grid, in the JSON
    path.write_text(json.dumps(document))
    old = Mosaic.load(path).steps_[1]
    assert old.surfaces_.windows.total == 4 * step.grid_.size
    np.testing.assert_array_equal(old.shifts_, step.shifts_)
    for image in ImageCollection.from_paths(data_dir):
        window = Window(0, 0, image.width, image.height)
        values, valid = image.read(window)
        values = values.astype(np.float32)
        expected = step.transform_window(image, window, values.copy(), valid)
        assert np.array_equal(old.transform_window(image, window, values.copy(), valid), expected)


def test_smoothing_over_windows_smaller_than_the_grid_is_refused():
    grid = BlockGrid(0.0, 0.0, 1.0, 1.0, 6, 6)
    windows = BlockWindows(grid, np.array([[1, 1, 3, 3]]))
    values = np.ones((1, 9))
    with pytest.raises(ValueError, match="smoothing reads beyond the windows"):
        BlockSurfaces.filled(windows, values, values, values, values, smoothing=1.0)
    whole = BlockWindows.whole(grid, 1)
    ones = np.ones((1, 36))
    smoothed = BlockSurfaces.filled(whole, ones, ones, ones, 0 * ones, smoothing=1.0)
    assert np.allclose(smoothed.spread_factors, 1.0) and np.allclose(smoothed.shifts, 1.0)
