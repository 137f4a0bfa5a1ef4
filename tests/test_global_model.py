"""GlobalModel: recovery of known distortions, invariance, groups and mismatched grids."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from conftest import (
    GAINS,
    LAYOUT,
    OFFSETS,
    cast_to_dtype,
    inverse,
    make_tiles,
    measure_moments,
    paint,
    read_raster,
    rmse,
    write_raster,
)
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.warp import reproject
from rasterio.windows import Window

from spectralmatch import GlobalModel, ImageCollection, Mosaic, OverlapGraph, SpectralMatchError
from spectralmatch.errors import SpectralMatchWarning
from spectralmatch.model.global_model import (
    MIN_OVERLAP_PIXELS,
    MIN_ROBUST_WEIGHT,
    _BandSystem,
    robust_weights,
)


def fit_model(paths, **kwargs) -> tuple[Mosaic, GlobalModel]:
    """The global model on every overlap pixel (no change detection): its own solution."""
    model = Mosaic(steps=[GlobalModel(**kwargs)], threads=2, pif=None).fit(paths)
    return model, model.steps_[0]


def noise_rmse(tiles, index: int) -> float:
    """RMSE expected between a corrected tile and the truth: its noise and roundings."""
    gain = tiles.gains[index].min()
    return float(np.sqrt((2.0**2 + 1 / 12) / gain**2 + 1 / 12))


def overlap_abs_difference(tiles, arrays) -> float:
    """Mean |a - b| over the jointly valid overlap pixels of every pair, all bands."""
    total, count = 0.0, 0
    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            wa, wb = tiles.windows[i], tiles.windows[j]
            rows = (
                max(wa.row_off, wb.row_off),
                min(wa.row_off + wa.height, wb.row_off + wb.height),
            )
            cols = (max(wa.col_off, wb.col_off), min(wa.col_off + wa.width, wb.col_off + wb.width))
            if rows[1] <= rows[0] or cols[1] <= cols[0]:
                continue
            a = arrays[i][
                :,
                rows[0] - wa.row_off : rows[1] - wa.row_off,
                cols[0] - wa.col_off : cols[1] - wa.col_off,
            ].astype(float)
            b = arrays[j][
                :,
                rows[0] - wb.row_off : rows[1] - wb.row_off,
                cols[0] - wb.col_off : cols[1] - wb.col_off,
            ].astype(float)
            joint = (a != tiles.nodata) & (b != tiles.nodata)
            total += np.abs(a - b)[joint].sum()
            count += joint.sum()
    return total / count


# ---------------------------------------------------------------------- 1. recovery


@pytest.mark.parametrize("weight_by_overlap", [True, False])
def test_reference_recovers_known_gains_and_offsets(tiles, tmp_path, weight_by_overlap):
    model, step = fit_model(tiles.paths, reference=[0], weight_by_overlap=weight_by_overlap)
    assert step.images_ == tiles.names and step.reference_ == ["tile_0"]
    expected_gain, expected_offset = inverse(tiles.gains, tiles.offsets)
    np.testing.assert_allclose(step.gains_, expected_gain, rtol=5e-3)
    assert step.gains_[0].tolist() == [1.0, 1.0, 1.0]
    assert step.offsets_[0].tolist() == [0.0, 0.0, 0.0]
    # the fitted map undoes the distortion over the whole range of the data
    low, high = tiles.truth.data.min(), tiles.truth.data.max()
    for truth_value in (low, tiles.truth.data.mean(), high):
        distorted = tiles.gains * truth_value + tiles.offsets
        restored = step.gains_ * distorted + step.offsets_
        np.testing.assert_allclose(restored, truth_value, atol=4.0)

    outputs = model.transform(tiles.paths, tmp_path / "out")
    for index, image in enumerate(outputs):
        corrected = read_raster(image.path).astype(float)
        truth = tiles.truth_of(index)
        valid = tiles.valid_of(index)
        for band in range(3):
            mean_error = corrected[band][valid[band]].mean() - truth[band][valid[band]].mean()
            assert abs(mean_error) < 1.5, (index, band, mean_error)
        assert rmse(corrected[valid], truth[valid]) < 1.2 * noise_rmse(tiles, index) + 0.3
        # before the correction the tiles were far from the truth
        if index:
            assert rmse(tiles.data_of(index)[valid], truth[valid]) > 100


def test_without_reference_overlaps_agree_and_truth_is_one_affine_map(tiles, tmp_path):
    model, step = fit_model(tiles.paths)
    assert step.reference_ == []
    outputs = [read_raster(image.path) for image in model.transform(tiles.paths, tmp_path / "out")]
    before = overlap_abs_difference(tiles, [tiles.data_of(i) for i in range(4)])
    after = overlap_abs_difference(tiles, outputs)
    assert before > 200
    assert after < 4.0 and after < before / 50
    # all tiles together equal the truth up to one affine map per band
    for band in range(3):
        truth_values = np.concatenate(
            [tiles.truth_of(i)[band][tiles.valid_of(i)[band]] for i in range(4)]
        )
        output_values = np.concatenate(
            [outputs[i][band][tiles.valid_of(i)[band]] for i in range(4)]
        ).astype(float)
        slope, intercept = np.polyfit(truth_values, output_values, 1)
        residual = output_values - (slope * truth_values + intercept)
        assert 0.75 < slope < 1.3
        assert np.sqrt(np.mean(residual**2)) < 3.5
    # the documented gauge: the images' mean of means and of stds is kept
    means = np.array(
        [[d[b][d[b] != 0].mean() for b in range(3)] for d in (tiles.data_of(i) for i in range(4))]
    )
    stds = np.array(
        [[d[b][d[b] != 0].std() for b in range(3)] for d in (tiles.data_of(i) for i in range(4))]
    )
    np.testing.assert_allclose(
        (step.gains_ * means + step.offsets_).mean(axis=0), means.mean(axis=0), rtol=1e-9
    )
    np.testing.assert_allclose((step.gains_ * stds).mean(axis=0), stds.mean(axis=0), rtol=1e-6)


def test_diagnostics_report_the_improvement(tiles):
    _, step = fit_model(tiles.paths, reference=["tile_0"])
    diagnostics = step.diagnostics_
    assert len(diagnostics.pairs) == 6 and diagnostics.pairs[0] == ("tile_0", "tile_1")
    assert diagnostics.count.shape == (6, 3) and (diagnostics.count > 0).all()
    assert diagnostics.count[0].tolist() == [40 * 120] * 3
    assert np.abs(diagnostics.mean_difference_before).max() > 100
    assert np.abs(diagnostics.mean_difference_after).max() < 2.0
    assert np.abs(diagnostics.std_difference_after).max() < 2.0


# ---------------------------------------------------------------------- 2. invariance


@pytest.mark.parametrize("reference", [None, [0]])
def test_matching_matched_outputs_changes_nothing(tiles, tmp_path, reference):
    model, _ = fit_model(tiles.paths, reference=reference)
    first = model.transform(tiles.paths, tmp_path / "first")
    again, step = fit_model([image.path for image in first], reference=reference)
    np.testing.assert_allclose(step.gains_, 1.0, atol=1e-3)
    second = again.transform(first, tmp_path / "second")
    for a, b in zip(first, second, strict=True):
        diff = np.abs(read_raster(a.path).astype(int) - read_raster(b.path).astype(int))
        assert diff.max() <= 1


# ---------------------------------------------------------------------- groups


def _two_far_pairs(tmp_path, truth, gains_b=None):
    pair = [LAYOUT[0], LAYOUT[1]]
    gains_b = np.array([[1.0, 1.0, 1.0], [1.2, 0.8, 1.1]]) if gains_b is None else gains_b
    a = make_tiles(
        tmp_path / "groups",
        truth,
        windows=pair,
        names=["a0", "a1"],
        gains=[[1.0, 1.0, 1.0], [0.85, 1.15, 0.9]],
        offsets=[[0, 0, 0], [100.0, -50.0, 200.0]],
        seed=1,
    )
    b = make_tiles(
        tmp_path / "groups",
        truth,
        windows=pair,
        names=["b0", "b1"],
        gains=gains_b,
        offsets=[[0, 0, 0], [-150.0, 220.0, 30.0]],
        seed=2,
        grid_offset=(50_000.0, 0.0),
    )
    return a, b


def test_disconnected_groups_warn_and_are_matched_separately(tmp_path, truth):
    a, b = _two_far_pairs(tmp_path, truth)
    paths = a.paths + b.paths
    with pytest.warns(UserWarning, match="2 groups") as record:
        _, step = fit_model(paths, reference=["a0", "b0"])
    message = next(str(w.message) for w in record if "groups" in str(w.message))
    assert "[a0, a1]" in message and "[b0, b1]" in message
    for tiles, rows in ((a, [0, 1]), (b, [2, 3])):
        gain, _ = inverse(tiles.gains, tiles.offsets)
        np.testing.assert_allclose(step.gains_[rows], gain, rtol=5e-3)
        restored = step.gains_[rows] * (tiles.gains * 7000 + tiles.offsets) + step.offsets_[rows]
        np.testing.assert_allclose(restored, 7000, atol=3.0)


def test_group_without_reference_keeps_its_own_central_tendency(tmp_path, truth):
    a, b = _two_far_pairs(tmp_path, truth, gains_b=np.array([[1.3, 1.3, 1.3], [1.2, 0.8, 1.1]]))
    with pytest.warns(UserWarning) as record:
        _, step = fit_model(a.paths + b.paths, reference=["a0"])
    messages = [str(w.message) for w in record if issubclass(w.category, UserWarning)]
    assert any("2 groups" in m for m in messages)
    assert any("no reference image among [b0, b1]" in m for m in messages)
    # group a: matched to a0; group b: its mean of means is kept, its images agree
    gain_a, _ = inverse(a.gains, a.offsets)
    np.testing.assert_allclose(step.gains_[:2], gain_a, rtol=5e-3)
    means = np.array(
        [[d[k][d[k] != 0].mean() for k in range(3)] for d in (b.data_of(0), b.data_of(1))]
    )
    corrected = step.gains_[2:] * means + step.offsets_[2:]
    np.testing.assert_allclose(corrected.mean(axis=0), means.mean(axis=0), rtol=1e-9)
    # the map between b0 and b1 is the one that makes them consistent: b1 -> b0 units
    relative_gain = step.gains_[3] / step.gains_[2]
    np.testing.assert_allclose(relative_gain, b.gains[0] / b.gains[1], rtol=5e-3)


def test_image_that_overlaps_nothing_is_left_unchanged(tmp_path, truth):
    tiles = make_tiles(
        tmp_path / "t",
        truth,
        windows=[LAYOUT[0], LAYOUT[1], LAYOUT[0]],
        names=["p0", "p1", "alone"],
        gains=[[1, 1, 1], [0.9, 1.1, 1.0], [1.2, 1.2, 1.2]],
        offsets=np.zeros((3, 3)),
    )
    # move "alone" far away
    data = tiles.data_of(2)
    with rasterio.open(tiles.paths[2]) as dataset:
        transform = dataset.transform
    write_raster(
        tiles.paths[2],
        data,
        transform=rasterio.Affine.translation(300_000.0, 0.0) @ transform,
        nodata=0,
    )
    with pytest.warns(SpectralMatchWarning, match="left unchanged") as record:
        model, step = fit_model(tiles.paths)
    assert [str(w.message) for w in record if "left unchanged" in str(w.message)] == [
        "left unchanged, no usable overlap with any other image: alone"
    ]
    assert not [w for w in record if "groups" in str(w.message)]  # one group is matched
    assert step.gains_[2].tolist() == [1.0, 1.0, 1.0]
    assert step.offsets_[2].tolist() == [0.0, 0.0, 0.0]
    outputs = model.transform(tiles.paths, tmp_path / "out")
    np.testing.assert_array_equal(read_raster(outputs.images[2].path), data)


def test_an_overlap_of_a_few_pixels_is_left_out_with_a_warning(tmp_path, truth):
    # tile_0 and tile_1 overlap by 50 x 100 px; tile_2 touches tile_0 in a 3 x 3 px corner
    windows = [Window(0, 0, 110, 110), Window(60, 0, 110, 100), Window(107, 107, 93, 93)]
    tiles = make_tiles(
        tmp_path / "t",
        truth,
        windows=windows,
        gains=GAINS[:3],
        offsets=OFFSETS[:3],
        cut_corners=False,
    )
    with pytest.warns(SpectralMatchWarning) as record:
        model, step = fit_model(tiles.paths, reference=["tile_0"])
    assert [str(w.message) for w in record if w.category is SpectralMatchWarning] == [
        f"overlaps with fewer than {MIN_OVERLAP_PIXELS} jointly valid pixels are left out of "
        "the fit: tile_0 - tile_2 (9 px)",
        "left unchanged, no usable overlap with any other image: tile_2",
    ]
    assert step.diagnostics_.pairs == [("tile_0", "tile_1")]
    expected_gain, _ = inverse(tiles.gains, tiles.offsets)
    np.testing.assert_allclose(step.gains_[1], expected_gain[1], rtol=5e-3)
    assert step.gains_[2].tolist() == [1.0] * 3 and step.offsets_[2].tolist() == [0.0] * 3


# ---------------------------------------------------------------------- 10. grids


def _distort(values, gains, offsets, rng, noise_sd=2.0):
    return (
        np.asarray(gains)[:, None, None] * values
        + np.asarray(offsets)[:, None, None]
        + rng.normal(0.0, noise_sd, size=values.shape)
    )


def test_half_pixel_shifted_grid_is_matched(tmp_path, truth):
    """Both images are 2 x 2 means of the same 15 m field, one grid shifted by 15 m."""
    fine = truth.data  # read as a 15 m field here
    x0, y0 = 700_000.0, 7_000_000.0

    def aggregate(rows, cols):
        block = fine[:, rows[0] : rows[1], cols[0] : cols[1]]
        bands, height, width = block.shape
        return block.reshape(bands, height // 2, 2, width // 2, 2).mean(axis=(2, 4))

    rng = np.random.default_rng(3)
    gains, offsets = np.array([1.15, 0.88, 1.05]), np.array([-200.0, 150.0, 60.0])
    reference = aggregate((0, 160), (0, 160))
    shifted_truth = aggregate((1, 161), (59, 199))
    shifted = _distort(shifted_truth, gains, offsets, rng)
    valid_ref = np.ones(reference.shape, dtype=bool)
    valid_shift = np.ones(shifted.shape, dtype=bool)
    ref_path = write_raster(
        tmp_path / "in" / "ref.tif",
        cast_to_dtype(reference + rng.normal(0, 2.0, reference.shape), valid_ref, "uint16", 0),
        transform=from_origin(x0, y0, 30.0, 30.0),
        nodata=0,
    )
    shift_path = write_raster(
        tmp_path / "in" / "shifted.tif",
        cast_to_dtype(shifted, valid_shift, "uint16", 0),
        transform=from_origin(x0 + 59 * 15.0, y0 - 15.0, 30.0, 30.0),
        nodata=0,
    )
    model, step = fit_model([ref_path, shift_path], reference=["ref"])
    pair = step.diagnostics_
    # overlap: A's whole pixels inside 80 - 29.5 = 50.5 cols by 79.5 rows
    assert pair.count[0, 0] == 50 * 79
    np.testing.assert_allclose(step.gains_[1], 1.0 / gains, rtol=0.02)
    output = read_raster(model.transform([ref_path, shift_path], tmp_path / "out").images[1].path)
    assert rmse(output, shifted_truth) < 0.01 * shifted_truth.std() + 5.0
    assert rmse(output, shifted_truth) < rmse(shifted, shifted_truth) / 20


def test_double_resolution_image_made_with_reproject_is_matched(tmp_path, truth):
    """A 30 m reference and a 60 m image (average of the 30 m field) overlap and match."""
    coarse = truth.data[:, :100, :100]
    fine = coarse.repeat(2, axis=1).repeat(2, axis=2)  # a 30 m field with 60 m detail
    x0, y0 = 700_000.0, 7_000_000.0
    rng = np.random.default_rng(5)
    gains, offsets = np.array([0.86, 1.12, 1.2]), np.array([90.0, -160.0, -40.0])

    reference = fine[:, :, :120] + rng.normal(0, 2.0, (3, 200, 120))
    ref_path = write_raster(
        tmp_path / "in" / "ref30.tif",
        cast_to_dtype(reference, np.ones(reference.shape, bool), "uint16", 0),
        transform=from_origin(x0, y0, 30.0, 30.0),
        nodata=0,
    )
    distorted_fine = _distort(fine[:, :, 80:], gains, offsets, rng)
    source_transform = from_origin(x0 + 80 * 30.0, y0, 30.0, 30.0)
    target_transform = from_origin(x0 + 80 * 30.0, y0, 60.0, 60.0)
    resampled = np.zeros((3, 100, 60), dtype=np.float64)
    reproject(
        distorted_fine,
        resampled,
        src_transform=source_transform,
        src_crs=truth.crs,
        dst_transform=target_transform,
        dst_crs=truth.crs,
        resampling=Resampling.average,
    )
    coarse_data = cast_to_dtype(resampled, np.ones(resampled.shape, bool), "uint16", 0)
    coarse_data[:, :, :10] = 0  # nodata over the western half of the overlap
    coarse_path = write_raster(
        tmp_path / "in" / "img60.tif", coarse_data, transform=target_transform, nodata=0
    )
    collection = ImageCollection([ref_path, coarse_path])
    model, step = fit_model(collection, reference=[0])
    np.testing.assert_allclose(step.gains_[1], 1.0 / gains, rtol=0.02)
    # the overlap is 40 x 200 px at 30 m and 20 x 100 px at 60 m; each side counts the
    # pixels where the other image is valid, mapped across the two grids
    edges = OverlapGraph.from_collection(collection).edges
    pair = measure_moments(collection, edges, threads=1).pairs[0]
    assert pair.first.count.tolist() == [20 * 200] * 3
    assert pair.second.count.tolist() == [10 * 100] * 3
    reference_part = read_raster(ref_path)[:, :, 100:120].reshape(3, -1).astype(float)
    np.testing.assert_allclose(pair.first.mean, reference_part.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(pair.first.std, reference_part.std(axis=1), rtol=1e-9)
    coarse_part = coarse_data[:, :, 10:20].reshape(3, -1).astype(float)
    np.testing.assert_allclose(pair.second.mean, coarse_part.mean(axis=1), rtol=1e-12)

    output = read_raster(model.transform(collection, tmp_path / "out").images[1].path)
    expected = coarse[:, :, 40:]
    valid = coarse_data != 0
    np.testing.assert_array_equal(output != 0, valid)
    assert rmse(output[valid], expected[valid]) < 5.0
    assert rmse(resampled[valid], expected[valid]) > 100


# ---------------------------------------------------------------------- parameters


def test_unknown_reference_raises_naming_it(tiles):
    with pytest.raises(SpectralMatchError, match="'tile_9'") as error:
        fit_model(tiles.paths, reference=["tile_9"])
    assert "tile_0" in str(error.value)


def test_reference_by_negative_index_and_single_name(tiles):
    _, step = fit_model(tiles.paths, reference=-1)
    assert step.reference_ == ["tile_3"]
    assert step.gains_[3].tolist() == [1.0, 1.0, 1.0]
    _, by_name = fit_model(tiles.paths, reference="tile_2")
    assert by_name.reference_ == ["tile_2"]


def test_params_are_the_constructor_arguments():
    step = GlobalModel(reference=["a"], mean_weight=2.0)
    assert step.get_params() == {
        "reference": ["a"],
        "weight_by_overlap": True,
        "mean_weight": 2.0,
        "std_weight": 1.0,
        "robust": False,
    }
    assert step.set_params(std_weight=0.5) is step and step.std_weight == 0.5
    with pytest.raises(SpectralMatchError, match="no parameter 'gain'"):
        step.set_params(gain=1.0)
    assert repr(step).startswith("GlobalModel(reference=['a']")


def test_transform_statistics_equals_statistics_of_outputs(tiles, tmp_path):
    """The exact moment algebra agrees with the statistics re-read from the outputs."""
    model, step = fit_model(tiles.paths, reference=[0])
    collection = ImageCollection(tiles.paths)
    edges = OverlapGraph.from_collection(collection).edges
    predicted = step.transform_statistics(measure_moments(collection, edges, threads=1))
    outputs = model.transform(collection, tmp_path / "out")
    measured = measure_moments(outputs, edges, threads=1)
    for a, b in zip(predicted.pairs, measured.pairs, strict=True):
        np.testing.assert_allclose(a.first.mean, b.first.mean, atol=0.05)
        np.testing.assert_allclose(a.second.std, b.second.std, rtol=1e-3)


def test_images_that_share_no_valid_pixel_are_left_unchanged(tmp_path, truth):
    """Bounds overlap but the data do not (one tile's overlap is all nodata): no pair."""
    tiles = make_tiles(
        tmp_path / "t",
        truth,
        windows=[LAYOUT[0], LAYOUT[1]],
        gains=[[1, 1, 1], [1.2, 0.9, 1.1]],
        offsets=np.zeros((2, 3)),
        cut_corners=False,
    )
    data = tiles.data_of(1)
    data[:, :, :40] = 0  # tile_1's part of the overlap holds no data
    with rasterio.open(tiles.paths[1]) as dataset:
        transform = dataset.transform
    write_raster(tiles.paths[1], data, transform=transform, nodata=0)
    with pytest.warns(SpectralMatchWarning, match="other image: tile_0, tile_1"):
        model, step = fit_model(tiles.paths)
    np.testing.assert_array_equal(step.gains_, np.ones((2, 3)))
    np.testing.assert_array_equal(step.offsets_, np.zeros((2, 3)))
    assert step.diagnostics_.pairs == []
    outputs = model.transform(tiles.paths, tmp_path / "out")
    for index, image in enumerate(outputs):
        assert np.array_equal(read_raster(image.path), tiles.data_of(index))


# ---------------------------------------------------------------------- robust solve

#: 2 x 3 layout of 80 x 110 px tiles over the truth: 20 px overlaps between neighbours
#: and 20 x 20 px diagonal corners, 11 pairs.
GRID_LAYOUT = [Window(col, row, 80, 110) for row in (0, 90) for col in (0, 60, 120)]
GRID_GAINS = np.array(
    [
        [1.00, 1.00, 1.00],
        [0.82, 1.18, 0.90],
        [1.22, 0.86, 1.10],
        [0.91, 1.07, 1.24],
        [1.10, 0.95, 0.88],
        [0.87, 1.12, 1.05],
    ]
)
GRID_OFFSETS = np.array(
    [
        [0.0, 0.0, 0.0],
        [150.0, -180.0, 260.0],
        [-120.0, 240.0, -60.0],
        [280.0, -90.0, 40.0],
        [-60.0, 120.0, 180.0],
        [200.0, 60.0, -150.0],
    ]
)
#: In tile 1's pixels: truth rows 90..110, cols 80..120, the half of the overlap of tiles
#: 1 and 4 (the middle column) that no other tile covers.
MIDDLE_OVERLAP = Window(20, 90, 40, 20)
ROBUST_BOUND = 0.01


@pytest.fixture
def grid_tiles(tmp_path, truth):
    return make_tiles(
        tmp_path / "grid",
        truth,
        windows=GRID_LAYOUT,
        gains=GRID_GAINS,
        offsets=GRID_OFFSETS,
        cut_corners=False,
    )


def relative_gain_error(step, tiles) -> float:
    """Largest error of the gains relative to the true inverse distortion, after the one
    common factor per band that a fit without reference is free to choose."""
    expected, _ = inverse(tiles.gains, tiles.offsets)
    ratio = step.gains_ / expected
    return float(np.abs(ratio / ratio[0] - 1).max())


def corrupted_pair_is_singled_out(step) -> None:
    row = step.diagnostics_.pairs.index(("tile_1", "tile_4"))
    weights = step.diagnostics_.robust_weights
    assert weights.shape == (11, 3)
    for band in range(3):
        others = np.delete(weights[:, band], row)
        assert weights[row, band] < 0.5 and weights[row, band] < others.min(), (
            band,
            weights[:, band].round(2).tolist(),
        )
    assert "tile_1-tile_4" in step.down_weighted_


@pytest.mark.parametrize("reference", [[0], None])
def test_robust_fit_resists_a_bright_patch_on_one_overlap(grid_tiles, reference):
    """A cloud over half of one overlap (11 pairs in all): the plain fit is pulled off the
    true gains, the robust fit down-weights that pair and recovers them."""
    paint(grid_tiles.paths[1], MIDDLE_OVERLAP, 12000)
    _, plain = fit_model(grid_tiles.paths, reference=reference)
    _, robust = fit_model(grid_tiles.paths, reference=reference, robust=True)
    assert relative_gain_error(plain, grid_tiles) > ROBUST_BOUND
    assert (plain.diagnostics_.robust_weights == 1).all() and plain.down_weighted_ == []
    assert relative_gain_error(robust, grid_tiles) < ROBUST_BOUND, (
        robust.gains_.round(3).tolist(),
        robust.diagnostics_.robust_weights.round(2).tolist(),
        robust.down_weighted_,
    )
    corrupted_pair_is_singled_out(robust)


@pytest.mark.parametrize("reference", [[0], None])
def test_robust_fit_resists_a_haze_on_one_overlap(grid_tiles, reference):
    """The same overlap 200 DN brighter (a thin haze): plain and robust fits compared."""
    paint(grid_tiles.paths[1], MIDDLE_OVERLAP, lambda values: values + 200)
    _, plain = fit_model(grid_tiles.paths, reference=reference)
    _, robust = fit_model(grid_tiles.paths, reference=reference, robust=True)
    assert relative_gain_error(plain, grid_tiles) > 3 * ROBUST_BOUND
    assert relative_gain_error(robust, grid_tiles) < ROBUST_BOUND
    corrupted_pair_is_singled_out(robust)
    if reference:
        assert robust.gains_[0].tolist() == [1.0, 1.0, 1.0]
        expected, _ = inverse(grid_tiles.gains, grid_tiles.offsets)
        np.testing.assert_allclose(robust.gains_, expected, rtol=ROBUST_BOUND)


@pytest.mark.parametrize("reference", [[0], None])
def test_robust_fit_of_clean_data_is_the_plain_fit(grid_tiles, reference):
    _, plain = fit_model(grid_tiles.paths, reference=reference)
    _, robust = fit_model(grid_tiles.paths, reference=reference, robust=True)
    np.testing.assert_allclose(robust.gains_, plain.gains_, rtol=1e-3)
    scale = np.abs(plain.offsets_).max() + grid_tiles.truth.data.mean()
    np.testing.assert_allclose(robust.offsets_, plain.offsets_, atol=1e-3 * scale)
    assert relative_gain_error(robust, grid_tiles) < 2e-3
    weights = robust.diagnostics_.robust_weights
    assert ((weights > 0) & (weights <= 1)).all()
    # whatever was down-weighted is harmless: every overlap agrees after the fit
    assert len(robust.down_weighted_) <= 3
    assert np.abs(robust.diagnostics_.mean_difference_after).max() < 3.0
    assert np.abs(robust.diagnostics_.std_difference_after).max() < 3.0


#: Three tiles in a row: each overlap alone joins two parts of the mosaic.
CHAIN_LAYOUT = [Window(col, 40, 80, 80) for col in (0, 60, 120)]


@pytest.mark.parametrize("layout", ["grid", "chain"])
@pytest.mark.parametrize("fixed", [set(), {0}])
def test_deletion_residuals_are_those_of_refits_without_each_pair(tmp_path, truth, layout, fixed):
    """One inverse of the system gives each pair's misfit under a fit without it, as
    refitting without the pair does, also where removing it splits the mosaic."""
    windows = GRID_LAYOUT if layout == "grid" else CHAIN_LAYOUT
    gains, offsets = GRID_GAINS[: len(windows)], GRID_OFFSETS[: len(windows)]
    tiles = make_tiles(
        tmp_path / layout, truth, windows=windows, gains=gains, offsets=offsets, cut_corners=False
    )
    collection = ImageCollection(tiles.paths)
    edges = OverlapGraph.from_collection(collection).edges
    statistics = measure_moments(collection, edges)
    group = list(range(len(collection)))
    for band in range(collection.count):
        system = _BandSystem.build(GlobalModel(), band, group, statistics.pairs, statistics, fixed)
        refitted = [system._residual_without(k) for k in range(len(statistics.pairs))]
        np.testing.assert_allclose(system.deletion_residuals(), refitted, rtol=1e-9, atol=1e-12)


def test_robust_weights_are_tukey_bisquare():
    residual = np.array([1.0, -1.0, 0.5, 10.0, -4.0])
    limit = 4.685 * 1.4826 * 1.0  # median |r| = 1
    expected = [(1 - (r / limit) ** 2) ** 2 for r in (1.0, 1.0, 0.5)]
    np.testing.assert_allclose(
        robust_weights(residual), [*expected, MIN_ROBUST_WEIGHT, (1 - (4.0 / limit) ** 2) ** 2]
    )
    np.testing.assert_array_equal(robust_weights(np.zeros(4)), np.ones(4))
    assert (robust_weights(residual, threshold=1000.0) > 0.999).all()
    # a gross outlier is as good as dropped, never exactly zero (no image is cut off)
    assert robust_weights(np.array([1.0, 1.0, 1.0, 1e6]))[-1] == MIN_ROBUST_WEIGHT
