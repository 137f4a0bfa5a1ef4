"""HistogramMatch through Mosaic: monotone curves fitted from the overlaps' quantiles.

Tiles are cut from the truth (the valid interior of ``data/tile_00.tif``) with known
gains and offsets per band (``conftest.GAINS`` / ``OFFSETS``), or with a power law on
top that no gain and offset can undo. Expectations come from those distortions, from
numpy (quantiles of the overlaps, the curves evaluated with ``np.interp``) or from a
second fit on the files a step wrote, never from the step's own output.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from conftest import (
    FIELD_LAYOUT,
    GAINS,
    LAYOUT,
    OFFSETS,
    Truth,
    make_tiles,
    on_truth_grid,
    read_raster,
    seam_error,
    smooth_fields,
    valid_mask,
    write_raster,
)

from spectralmatch import BlockMap, GlobalModel, HistogramMatch, Mosaic


def fit(paths, *steps, **kwargs) -> Mosaic:
    """The steps on every overlap pixel unless ``pif`` is given (change detection would
    read the overlaps again for the curves)."""
    return Mosaic(steps=list(steps), threads=2, **{"pif": None, **kwargs}).fit(paths)


def output_paths(collection):
    return [image.path for image in collection]


def mean_slopes(step) -> np.ndarray:
    """Each curve's slope from its first to its last knot (n_images, n_bands)."""
    return (step.values_[..., -1] - step.values_[..., 0]) / (
        step.knots_[..., -1] - step.knots_[..., 0]
    )


def segment_slopes(step) -> np.ndarray:
    return np.diff(step.values_, axis=-1) / np.diff(step.knots_, axis=-1)


def apply_curve(x: np.ndarray, knots: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The piecewise-linear curve through (knots, values), continued along its end
    segments, by numpy."""
    first = (values[1] - values[0]) / (knots[1] - knots[0])
    last = (values[-1] - values[-2]) / (knots[-1] - knots[-2])
    inside = np.interp(x, knots, values)
    below = values[0] + first * (x - knots[0])
    above = values[-1] + last * (x - knots[-1])
    return np.where(x < knots[0], below, np.where(x > knots[-1], above, inside))


def rewrite(path, data, nodata, dtype=None) -> None:
    """Write ``data`` over the raster at ``path`` on its own grid."""
    with rasterio.open(path) as dataset:
        transform, dtype = dataset.transform, dtype or dataset.dtypes[0]
    write_raster(path, data, transform=transform, nodata=nodata, dtype=dtype)


def overlap_values(tiles, index: int, band: int) -> np.ndarray:
    """Tile ``index``'s values over all of its overlaps (a pixel counted once per
    overlap it lies in), from the files, by numpy."""
    placed = on_truth_grid(tiles, tiles.paths)
    own = placed[index][band]
    parts = [
        own[np.isfinite(own) & np.isfinite(other[band])]
        for other_index, other in enumerate(placed)
        if other_index != index
    ]
    return np.concatenate(parts)


# ---------------------------------------------------------------------- recovery


def test_reference_curves_undo_known_gains_and_offsets(tiles, tmp_path):
    model = fit(tiles.paths, HistogramMatch(reference=["tile_0"]))
    step = model.steps_[0]
    assert step.images_ == tiles.names and step.reference_ == ["tile_0"]
    assert step.knots_.shape == step.values_.shape == (4, 3, 9)

    # the knots are each tile's quantiles over its overlaps (within one histogram bin)
    levels = np.linspace(0.005, 0.995, 9)
    for index in range(4):
        for band in range(3):
            values = overlap_values(tiles, index, band)
            bin_width = max(1.0, 2 * np.ptp(values) / (4096 - 1))
            expected = np.quantile(values, levels, method="inverted_cdf")
            np.testing.assert_allclose(step.knots_[index, band], expected, atol=bin_width)

    # straight lines with the slopes of the inverse distortions (relative to tile 0)
    np.testing.assert_allclose(mean_slopes(step), GAINS[0] / GAINS, rtol=0.03)
    ratio = segment_slopes(step) / mean_slopes(step)[..., None]
    np.testing.assert_allclose(ratio, 1.0, atol=0.05)
    # ... that take each tile's values back to the truth: T_i(g x + o) = x
    truth_at_knots = (step.knots_ - OFFSETS[..., None]) / GAINS[..., None]
    spread = step.knots_[..., -1] - step.knots_[..., 0]
    error = np.abs(step.values_ - truth_at_knots)
    assert (error < 0.01 * spread[..., None]).all(), error.max(axis=-1).round(1).tolist()

    outputs = output_paths(model.transform(tiles.paths, tmp_path / "out"))
    # the reference comes out bit-identical
    assert np.array_equal(read_raster(outputs[0]), tiles.data_of(0))
    # the others are their curves applied pixel by pixel (then rounded to uint16)
    for index in (1, 2, 3):
        data, valid = tiles.data_of(index), tiles.valid_of(index)
        output = read_raster(outputs[index]).astype(np.float64)
        for band in range(3):
            expected = apply_curve(
                data[band].astype(np.float64),
                step.knots_[index, band],
                step.values_[index, band],
            )
            difference = np.abs(output[band] - expected)[valid[band]]
            assert difference.max() <= 0.52, (index, band, difference.max())
        np.testing.assert_array_equal(output == 0, ~valid)
    before, after = seam_error(tiles, tiles.paths), seam_error(tiles, outputs)
    assert before > 500
    assert after < before / 100, (before, after)


# ---------------------------------------------------------------------- non-linear


def power_law_tiles(tile_factory, dtype: str, power: float = 0.8):
    """The default tiles, with tiles 1 and 3 also put through ``c * (x - x0) ** power +
    x0`` per band (x0 just below the band's minimum, c keeping its maximum): the same
    range, bent."""
    nodata = float("nan") if dtype == "float32" else 0
    tiles = tile_factory(f"power-{dtype}", dtype=dtype, nodata=nodata)
    for index in (1, 3):
        data = tiles.data_of(index).astype(np.float64)
        valid = valid_mask(tiles.data_of(index), nodata)
        bent = data.copy()
        for band in range(3):
            x = data[band][valid[band]]
            x0 = x.min() - 100.0
            c = (x.max() - x0) ** (1.0 - power)
            bent[band][valid[band]] = c * (x - x0) ** power + x0
            assert np.isclose(bent[band][valid[band]].max(), x.max())
        if dtype != "float32":
            bent = np.where(valid, np.rint(bent), nodata)
        rewrite(tiles.paths[index], bent, nodata)
    return tiles


@pytest.mark.parametrize("dtype", ["float32", "uint16"])
def test_a_power_law_is_undone_where_a_linear_model_cannot(tile_factory, tmp_path, dtype):
    tiles = power_law_tiles(tile_factory, dtype)
    linear = fit(tiles.paths, GlobalModel(reference=["tile_0"]))
    curves = fit(tiles.paths, HistogramMatch(reference=["tile_0"]))
    raw = seam_error(tiles, tiles.paths)
    linear_error = seam_error(tiles, output_paths(linear.transform(tiles.paths, tmp_path / "g")))
    curve_error = seam_error(tiles, output_paths(curves.transform(tiles.paths, tmp_path / "h")))
    assert raw > 500
    assert linear_error < raw / 10  # the linear model does its share ...
    assert curve_error < 0.4 * linear_error, (raw, linear_error, curve_error)  # ... not all
    # the bent tiles' curves bend (the others stay nearly straight)
    step = curves.steps_[0]
    ratio = segment_slopes(step) / mean_slopes(step)[..., None]
    bend = ratio.max(axis=-1) - ratio.min(axis=-1)
    assert bend[[1, 3]].min() > 3 * bend[2].max(), bend.round(2).tolist()


# ---------------------------------------------------------------------- curve shape


@pytest.fixture(scope="module")
def loose_sample_step(data_dir):
    """HistogramMatch on the sample data with the least slope all but switched off."""
    return fit(data_dir, HistogramMatch(min_slope=1e-6)).steps_[0]


@pytest.mark.parametrize("min_slope", [0.25, 0.75])
def test_curves_rise_at_least_min_slope_times_their_mean_slope(
    data_dir, loose_sample_step, min_slope
):
    step = fit(data_dir, HistogramMatch(min_slope=min_slope)).steps_[0]
    assert step.reference_ == [] and step.images_ == [f"tile_{i:02d}" for i in range(4)]
    assert (np.diff(step.knots_, axis=-1) > 0).all()
    assert (np.diff(step.values_, axis=-1) >= 0).all()  # non-decreasing
    loose_ratio = segment_slopes(loose_sample_step) / mean_slopes(loose_sample_step)[..., None]
    if min_slope > 0.5:  # here the bound has work to do: without it some segments are flatter
        assert loose_ratio.min() < min_slope
        assert np.abs(step.values_ - loose_sample_step.values_).max() > 1.0
    ratio = segment_slopes(step) / mean_slopes(step)[..., None]
    assert (mean_slopes(step) > 0).all()
    assert ratio.min() >= min_slope * (1 - 1e-9), (
        f"a segment rises at {ratio.min():.4f} x its curve's mean slope, "
        f"below min_slope={min_slope}; per curve: {ratio.min(axis=-1).round(3).tolist()}"
    )


@pytest.mark.parametrize("source", ["sample", "tiles"])
def test_without_reference_the_collection_keeps_its_level(data_dir, tiles, source):
    paths = data_dir if source == "sample" else tiles.paths
    step = fit(paths, HistogramMatch()).steps_[0]
    assert step.reference_ == []
    assert np.abs(step.values_ - step.knots_).max() > 50  # the curves do move the images
    # per band: the mean over images of each curve's mean value over its knots equals
    # the mean of the knots
    np.testing.assert_allclose(
        step.values_.mean(axis=-1).mean(axis=0), step.knots_.mean(axis=-1).mean(axis=0), rtol=1e-9
    )
    # and the images' mean quantile spread is kept as well (documented gauge)
    np.testing.assert_allclose(
        step.values_.std(axis=-1).mean(axis=0), step.knots_.std(axis=-1).mean(axis=0), rtol=1e-6
    )


# ---------------------------------------------------------------------- passes


def test_after_a_linear_step_no_second_pass_and_the_same_curves(tiles, tmp_path):
    bins = 65536  # unit bins for the uint16 data: only the written rounding differs
    linear = fit(tiles.paths, GlobalModel(), window_size=64)
    chained = fit(tiles.paths, GlobalModel(), HistogramMatch(bins=bins), window_size=64)
    assert chained.reads_ == linear.reads_  # the same windows, read once
    assert all(count > 0 for count in linear.reads_.values())
    alone = fit(tiles.paths, HistogramMatch(bins=bins), window_size=64)
    then_local = fit(
        tiles.paths, HistogramMatch(bins=bins), BlockMap(block_size=32), window_size=64
    )
    for name in tiles.names:  # a non-linear step: what follows it needs a second pass
        assert then_local.reads_[name] > alone.reads_[name], (then_local.reads_, alone.reads_)

    np.testing.assert_array_equal(chained.steps_[0].gains_, linear.steps_[0].gains_)
    written = linear.transform(tiles.paths, tmp_path / "global")
    on_files = fit(written, HistogramMatch(bins=bins)).steps_[0]
    one_pass = chained.steps_[1]
    # the linear step moved what the curves see
    assert np.abs(one_pass.knots_ - alone.steps_[0].knots_).max() > 50
    # the histograms mapped through the linear step are those of its written outputs, up
    # to their rounding to integers (half a DN) and a unit bin
    np.testing.assert_allclose(one_pass.knots_, on_files.knots_, rtol=0, atol=1.5)
    np.testing.assert_allclose(one_pass.values_, on_files.values_, rtol=0, atol=1.5)


@pytest.mark.parametrize(
    ("dtype", "nodata", "shift_atol", "factor_rtol"),
    [("float32", float("nan"), 1e-3, 1e-5), ("uint16", 0, 0.5, 1e-2)],
)
def test_a_local_step_after_the_curves_fits_as_on_their_outputs(
    tmp_path, truth, dtype, nodata, shift_atol, factor_rtol
):
    tiles = make_tiles(
        tmp_path / "in",
        truth,
        windows=FIELD_LAYOUT,
        fields=smooth_fields(FIELD_LAYOUT, 0.08),
        noise_sd=1.0,
        dtype=dtype,
        nodata=nodata,
    )
    chain = fit(tiles.paths, HistogramMatch(reference=["tile_0"]), BlockMap(block_size=16))
    first = fit(tiles.paths, HistogramMatch(reference=["tile_0"]))
    np.testing.assert_array_equal(chain.steps_[0].values_, first.steps_[0].values_)
    written = first.transform(tiles.paths, tmp_path / "curves", working_dtype="float64")
    alone = fit(written, BlockMap(block_size=16)).steps_[0]
    local = chain.steps_[1]
    assert local.grid_ == alone.grid_
    np.testing.assert_array_equal(local.counts_, alone.counts_)
    known = local.counts_ >= local.min_pixels
    assert known.sum() > 100
    assert np.abs(local.shifts_[known]).max() > 50  # there is something to compare
    np.testing.assert_allclose(local.shifts_[known], alone.shifts_[known], atol=shift_atol)
    np.testing.assert_allclose(
        local.spread_factors_[known], alone.spread_factors_[known], rtol=factor_rtol
    )
    outputs = output_paths(chain.transform(tiles.paths, tmp_path / "out"))
    assert seam_error(tiles, outputs) < 0.5 * seam_error(tiles, output_paths(written))


# ---------------------------------------------------------------------- persistence


def test_save_load_round_trip_gives_identical_outputs(tiles, tmp_path):
    model = fit(tiles.paths, GlobalModel(), HistogramMatch())
    step = model.steps_[1]
    path = model.save(tmp_path / "model" / "model.json")
    sidecar = path.with_suffix(".npz")
    assert sidecar.is_file()
    with np.load(sidecar) as stored:
        arrays = [stored[key] for key in stored.files]
    assert any(np.array_equal(array, step.knots_) for array in arrays)
    assert any(np.array_equal(array, step.values_) for array in arrays)
    document = json.loads(path.read_text())
    assert "HistogramMatch" in json.dumps(document["steps"][1])

    loaded = Mosaic.load(path)
    assert isinstance(loaded.steps_[1], HistogramMatch)
    np.testing.assert_array_equal(loaded.steps_[1].knots_, step.knots_)
    np.testing.assert_array_equal(loaded.steps_[1].values_, step.values_)
    first = output_paths(model.transform(tiles.paths, tmp_path / "first"))
    second = output_paths(loaded.transform(tiles.paths, tmp_path / "second"))
    for index, (a, b) in enumerate(zip(first, second, strict=True)):
        assert np.array_equal(read_raster(a), read_raster(b))
        assert not np.array_equal(read_raster(a), tiles.data_of(index))


def test_new_scene_is_solved_against_the_frozen_curves(tiles, tmp_path):
    fitted = tiles.paths[:3]
    model = fit(fitted, HistogramMatch(reference=["tile_0"]))
    frozen = model.steps_[0]
    knots, values = frozen.knots_.copy(), frozen.values_.copy()
    before = output_paths(model.transform(fitted, tmp_path / "before"))
    path = model.save(tmp_path / "model" / "model.json")

    loaded = Mosaic.load(path)
    new = output_paths(loaded.transform([tiles.paths[3]], tmp_path / "new"))
    step = loaded.steps_[0]
    assert step.images_ == tiles.names
    np.testing.assert_array_equal(step.knots_[:3], knots)  # the fitted curves are frozen
    np.testing.assert_array_equal(step.values_[:3], values)
    slope = (step.values_[3, :, -1] - step.values_[3, :, 0]) / (
        step.knots_[3, :, -1] - step.knots_[3, :, 0]
    )
    np.testing.assert_allclose(slope, GAINS[0] / GAINS[3], rtol=0.03)

    with_fitted = [(0, 3), (1, 3), (2, 3)]
    raw = seam_error(tiles, [*before, tiles.paths[3]], with_fitted)
    solved = seam_error(tiles, [*before, *new], with_fitted)
    assert raw > 300
    assert solved < raw / 50, (raw, solved)
    # the fitted images come out as before
    again = output_paths(loaded.transform(fitted, tmp_path / "again"))
    for a, b in zip(before, again, strict=True):
        assert np.array_equal(read_raster(a), read_raster(b))


# ---------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("reference", [None, "p0"])
def test_image_that_overlaps_nothing_is_left_unchanged(tmp_path, truth, reference):
    pair = make_tiles(
        tmp_path / "in",
        truth,
        windows=LAYOUT[:2],
        names=["p0", "p1"],
        gains=GAINS[:2],
        offsets=OFFSETS[:2],
    )
    far = make_tiles(
        tmp_path / "in",
        truth,
        windows=LAYOUT[2:3],
        names=["faraway"],
        gains=GAINS[2:3],
        offsets=OFFSETS[2:3],
        seed=4,
        grid_offset=(60_000.0, 0.0),
    )
    paths = pair.paths + far.paths
    with pytest.warns(UserWarning, match="faraway") as record:
        model = fit(paths, HistogramMatch(reference=reference))
    message = next(str(w.message) for w in record if "faraway" in str(w.message))
    assert "p0" not in message and "p1" not in message
    step = model.steps_[0]
    np.testing.assert_array_equal(step.values_[2], step.knots_[2])  # the identity
    outputs = output_paths(model.transform(paths, tmp_path / "out"))
    assert np.array_equal(read_raster(outputs[2]), far.data_of(0))
    # the pair is still matched
    assert seam_error(pair, outputs[:2]) < seam_error(pair, pair.paths) / 50


DTYPE_CASES = {
    # dtype, nodata, truth scaled to (low, high), noise
    "float32": ("float32", float("nan"), (-0.05, 0.4), 1e-4),
    "int16": ("int16", -32768, (-2000.0, 3000.0), 1.0),
}


@pytest.mark.parametrize("case", list(DTYPE_CASES))
def test_negative_and_float_values(tmp_path, truth, case):
    dtype, nodata, (low, high), noise = DTYPE_CASES[case]
    p1, p99 = np.percentile(truth.data, [1, 99], axis=(1, 2))
    scaled = low + (high - low) * (truth.data - p1[:, None, None]) / (p99 - p1)[:, None, None]
    span = high - low
    tiles = make_tiles(
        tmp_path / "in",
        Truth(scaled, truth.transform),
        gains=GAINS,
        offsets=OFFSETS / 1000.0 * span,
        noise_sd=noise,
        dtype=dtype,
        nodata=nodata,
    )
    assert all((tiles.data_of(i)[tiles.valid_of(i)] < 0).any() for i in range(4))
    assert all((~tiles.valid_of(i)).any() for i in range(4))  # the cut corners
    model = fit(tiles.paths, HistogramMatch())
    step = model.steps_[0]
    assert np.isfinite(step.knots_).all() and np.isfinite(step.values_).all()
    assert (step.knots_[..., 0] < 0).any()
    outputs = output_paths(model.transform(tiles.paths, tmp_path / "out"))
    for index, path in enumerate(outputs):
        output, valid = read_raster(path), tiles.valid_of(index)
        assert output.dtype == np.dtype(dtype)
        assert np.isfinite(output[valid]).all()
        np.testing.assert_array_equal(valid_mask(output, nodata), valid)  # NaN kept
        assert (output[valid] < 0).any()
        for band in range(3):  # the curve, applied by numpy
            expected = apply_curve(
                tiles.data_of(index)[band][valid[band]].astype(np.float64),
                step.knots_[index, band],
                step.values_[index, band],
            )
            tolerance = 0.51 if dtype == "int16" else 1e-6 * span
            assert np.abs(output[band][valid[band]] - expected).max() <= tolerance
    before, after = seam_error(tiles, tiles.paths), seam_error(tiles, outputs)
    assert after < before / 50, (before, after)
