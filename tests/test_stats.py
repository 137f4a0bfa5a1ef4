"""Moments: streaming, mergeable per-band count / mean / M2."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from spectralmatch import Moments, Mosaic
from spectralmatch.stats import moments as moments_module
from spectralmatch.stats.moments import (
    EXACT_BLOCK_PIXELS,
    MAX_RUNS,
    NARROW_SEGMENT,
    SUM_CHUNK,
    _segment_sums,
)

needs_compiled = pytest.mark.skipif(
    moments_module.compiled_sums is None,
    reason="spectralmatch.stats._sums was not built (no C compiler when installed)",
)


@pytest.fixture(params=["compiled", "numpy"])
def sums(request, monkeypatch):
    """Each test of exact sums twice: with the compiled sums, and with numpy's."""
    if request.param == "compiled" and moments_module.compiled_sums is None:
        pytest.skip("spectralmatch.stats._sums was not built (no C compiler when installed)")
    if request.param == "numpy":
        monkeypatch.setattr(moments_module, "compiled_sums", None)
    return request.param


def split_moments(
    values: np.ndarray, valid: np.ndarray, rng: np.random.Generator, pieces: int
) -> Moments:
    """Moments of ``values`` built from random column chunks merged in random order."""
    cuts = np.sort(rng.choice(np.arange(1, values.shape[2]), size=pieces - 1, replace=False))
    bounds = list(zip([0, *cuts], [*cuts, values.shape[2]], strict=True))
    rng.shuffle(bounds)
    total = Moments.empty(values.shape[0])
    for start, stop in bounds:
        total = total.merge(Moments.from_array(values[:, :, start:stop], valid[:, :, start:stop]))
    return total


def reference_stats(values: np.ndarray, valid: np.ndarray):
    """Count, mean and population variance per band, computed by numpy in float64."""
    counts, means, variances = [], [], []
    for band in range(values.shape[0]):
        selected = values[band][valid[band]].astype(np.float64)
        counts.append(selected.size)
        means.append(selected.mean())
        variances.append(selected.var())
    return np.array(counts), np.array(means), np.array(variances)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_merge_of_random_chunks_equals_numpy(seed):
    rng = np.random.default_rng(seed)
    values = rng.normal(100.0, 15.0, size=(3, 40, 97))
    valid = rng.random(values.shape) > 0.3
    merged = split_moments(values, valid, rng, pieces=int(rng.integers(2, 12)))
    count, mean, variance = reference_stats(values, valid)
    np.testing.assert_array_equal(merged.count, count)
    np.testing.assert_allclose(merged.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(merged.variance, variance, rtol=1e-10)
    np.testing.assert_allclose(merged.std, np.sqrt(variance), rtol=1e-10)


def test_uint16_with_large_pedestal_keeps_small_variance():
    """60000 +- 3 in uint16: a naive sum of squares would lose every digit."""
    rng = np.random.default_rng(7)
    values = (60000 + rng.integers(-3, 4, size=(2, 64, 150))).astype(np.uint16)
    valid = rng.random(values.shape) > 0.1
    merged = split_moments(values, valid, rng, pieces=9)
    whole = Moments.from_array(values, valid)
    count, mean, variance = reference_stats(values, valid)
    assert 3.5 < variance[0] < 4.5  # the data: uniform on 7 integers has variance 4
    for moments in (merged, whole):
        np.testing.assert_array_equal(moments.count, count)
        np.testing.assert_allclose(moments.mean, mean, rtol=1e-13)
        np.testing.assert_allclose(moments.variance, variance, rtol=1e-9)


def test_float_data_around_one_million():
    rng = np.random.default_rng(11)
    values = 1e6 + rng.normal(0.0, 0.01, size=(2, 50, 120))
    valid = np.ones(values.shape, dtype=bool)
    merged = split_moments(values, valid, rng, pieces=13)
    count, mean, variance = reference_stats(values, valid)
    assert 0.8e-4 < variance[0] < 1.2e-4
    np.testing.assert_allclose(merged.mean, mean, rtol=1e-14)
    np.testing.assert_allclose(merged.variance, variance, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16"])
def test_small_integers_are_summed_exactly(dtype, sums):
    """Mean and M2 of integers up to 16 bits are the exact values, correctly rounded, over
    several chunks of the sums (one of them with no valid pixel)."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(3)
    shape = (2, 5, SUM_CHUNK // 2)
    values = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    values[0, :1] = info.max  # the extremes, whose squares fill 32 bits
    values[1, :1] = info.min
    valid = rng.random(values.shape) > 0.2
    valid[1, 2:4] = False  # the second chunk of band 1
    moments = Moments.from_array(values, valid)
    for band in range(2):
        pixels = [int(v) for v in values[band][valid[band]]]
        n, total = len(pixels), sum(pixels)
        m2 = Fraction(sum(v * v for v in pixels)) - Fraction(total * total, n)
        assert moments.count[band] == n
        assert moments.mean[band] == float(Fraction(total, n))
        assert moments.m2[band] == float(m2)
        assert (moments.minimum[band], moments.maximum[band]) == (min(pixels), max(pixels))


def test_merge_is_order_independent_and_empty_is_neutral():
    rng = np.random.default_rng(3)
    values = rng.normal(size=(2, 10, 30))
    valid = np.ones(values.shape, dtype=bool)
    a = Moments.from_array(values[:, :, :7], valid[:, :, :7])
    b = Moments.from_array(values[:, :, 7:], valid[:, :, 7:])
    ab, ba = a.merge(b), b.merge(a)
    np.testing.assert_allclose(ab.mean, ba.mean, rtol=1e-14)
    np.testing.assert_allclose(ab.m2, ba.m2, rtol=1e-12)
    with_empty = Moments.empty(2).merge(a)
    np.testing.assert_array_equal(with_empty.count, a.count)
    np.testing.assert_allclose(with_empty.mean, a.mean, rtol=0, atol=0)
    np.testing.assert_allclose(with_empty.m2, a.m2, rtol=0, atol=0)


def test_invalid_pixels_are_ignored_even_when_nan():
    values = np.array([[[1.0, 2.0, np.nan, 3.0, 1e30]]])
    valid = np.array([[[True, True, False, True, False]]])
    moments = Moments.from_array(values, valid)
    assert moments.count.tolist() == [3.0]
    np.testing.assert_allclose(moments.mean, [2.0])
    np.testing.assert_allclose(moments.variance, [2.0 / 3.0])


def test_band_without_valid_pixels_has_zero_count_mean_and_variance():
    values = np.arange(24, dtype=float).reshape(2, 3, 4)
    valid = np.zeros(values.shape, dtype=bool)
    valid[0] = True
    moments = Moments.from_array(values, valid)
    assert moments.count.tolist() == [12.0, 0.0]
    assert moments.mean[1] == 0.0 and moments.variance[1] == 0.0 and moments.std[1] == 0.0
    assert np.isfinite(moments.mean).all()
    empty = Moments.empty(3)
    assert empty.count.tolist() == [0.0, 0.0, 0.0]
    assert empty.variance.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("gain", "offset"), [((1.3, 0.7), (-250.0, 12.5)), ((-0.5, 2.0), (1000.0, 0.0))]
)
def test_affine_matches_recomputed_moments(gain, offset):
    rng = np.random.default_rng(5)
    values = rng.normal(6000.0, 400.0, size=(2, 30, 40))
    valid = rng.random(values.shape) > 0.2
    mapped = np.asarray(gain)[:, None, None] * values + np.asarray(offset)[:, None, None]
    expected = Moments.from_array(mapped, valid)
    derived = Moments.from_array(values, valid).affine(np.asarray(gain), np.asarray(offset))
    np.testing.assert_array_equal(derived.count, expected.count)
    np.testing.assert_allclose(derived.mean, expected.mean, rtol=1e-12)
    np.testing.assert_allclose(derived.m2, expected.m2, rtol=1e-9)
    # and numpy agrees with both
    _, mean, variance = reference_stats(mapped, valid)
    np.testing.assert_allclose(derived.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(derived.variance, variance, rtol=1e-9)


# ---------------------------------------------------------------------- block statistics


def _blocks_of(values, valid, row_starts, col_starts):
    """from_array on each block (row-major): the reference for from_blocks."""
    row_stops = [*row_starts[1:], values.shape[1]]
    col_stops = [*col_starts[1:], values.shape[2]]
    return [
        Moments.from_array(values[:, r0:r1, c0:c1], valid[:, r0:r1, c0:c1])
        for r0, r1 in zip(row_starts, row_stops, strict=True)
        for c0, c1 in zip(col_starts, col_stops, strict=True)
    ]


@pytest.mark.parametrize("kind", ["float", "uint16-pedestal", "int16-negative"])
def test_from_blocks_equals_from_array_on_each_block(kind):
    rng = np.random.default_rng(21)
    if kind == "float":
        values = rng.normal(250.0, 40.0, size=(3, 37, 53))
    elif kind == "uint16-pedestal":  # 60000 +- 3: the spread must survive the pedestal
        values = (60000 + rng.integers(-3, 4, size=(3, 37, 53))).astype(np.uint16)
    else:  # whole numbers summed as they are, about a pivot taken out of the sums
        values = rng.integers(-32768, 32768, size=(3, 37, 53)).astype(np.int16)
    valid = rng.random(values.shape) > 0.25
    valid[1, 10:25, :] = False  # band 1: a whole block row without a valid pixel
    row_starts, col_starts = np.array([0, 10, 25, 36]), np.array([0, 1, 20, 40])
    blocks = Moments.from_blocks(values, valid, row_starts, col_starts)
    assert blocks.count.shape == blocks.mean.shape == blocks.m2.shape == (3, 16)
    assert blocks.minimum is None and blocks.maximum is None
    expected = _blocks_of(values, valid, row_starts, col_starts)
    for k, moments in enumerate(expected):
        np.testing.assert_array_equal(blocks.count[:, k], moments.count)
        present = moments.count > 0
        np.testing.assert_allclose(blocks.mean[present, k], moments.mean[present], rtol=1e-13)
        np.testing.assert_allclose(blocks.m2[present, k], moments.m2[present], rtol=1e-9, atol=1e-9)
        assert (blocks.m2[~present, k] == 0).all()
    assert (blocks.count[1, 4:8] == 0).all() and (blocks.count[0] > 0).all()
    if kind == "uint16-pedestal":
        assert 3.0 < blocks.variance[0].mean() < 5.0
    # all blocks together are the whole window
    whole = Moments.from_array(values, valid)
    total = blocks.total()
    np.testing.assert_array_equal(total.count, whole.count)
    np.testing.assert_allclose(total.mean, whole.mean, rtol=1e-13)
    np.testing.assert_allclose(total.m2, whole.m2, rtol=1e-9)


@pytest.mark.parametrize("everywhere", [True, False])
def test_from_blocks_on_narrow_cells_equals_from_array_on_each(everywhere):
    """Cells of 3 and 4 pixels, the first and last cut short: the strided sums."""
    rng = np.random.default_rng(5)
    values = rng.normal(1000.0, 30.0, size=(2, 23, 30))
    valid = np.ones(values.shape, bool) if everywhere else rng.random(values.shape) > 0.3
    row_starts, col_starts = np.array([0, 2, 5, 8, 11, 14, 17, 20]), np.arange(0, 30, 4)
    blocks = Moments.from_blocks(values, valid, row_starts, col_starts)
    for k, moments in enumerate(_blocks_of(values, valid, row_starts, col_starts)):
        np.testing.assert_array_equal(blocks.count[:, k], moments.count)
        np.testing.assert_allclose(blocks.mean[:, k], moments.mean, rtol=1e-13)
        np.testing.assert_allclose(blocks.m2[:, k], moments.m2, rtol=1e-9)


def test_from_blocks_of_large_blocks_shift_by_a_pivot_first():
    """Blocks over EXACT_BLOCK_PIXELS are summed about a pivot in float64 instead."""
    rng = np.random.default_rng(5)
    values = (60000 + rng.integers(-3, 4, size=(1, 130, 70))).astype(np.uint16)
    valid = np.ones(values.shape, bool)
    starts = np.array([0, 65]), np.array([0])
    assert 65 * 70 > EXACT_BLOCK_PIXELS
    blocks = Moments.from_blocks(values, valid, *starts)
    for k, moments in enumerate(_blocks_of(values, valid, *starts)):
        np.testing.assert_allclose(blocks.mean[:, k], moments.mean, rtol=1e-13)
        np.testing.assert_allclose(blocks.m2[:, k], moments.m2, rtol=1e-9)


def test_segment_sums_along_rows_of_many_runs_take_reduceat():
    rng = np.random.default_rng(8)
    values = rng.normal(size=(2, 200, 5))
    starts = np.cumsum(np.r_[0, np.tile([1, 2], 60)])  # 120 runs of one segment
    assert len(starts) - 1 > MAX_RUNS
    expected = np.add.reduceat(values, starts, axis=1)
    np.testing.assert_allclose(_segment_sums(values, starts, 1), expected, rtol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_segment_sums_equal_reduceat(seed):
    rng = np.random.default_rng(seed)
    for _ in range(50):
        length, width = int(rng.integers(1, 40)), int(rng.integers(1, 3 * NARROW_SEGMENT))
        first = int(rng.integers(1, width + 1))
        starts = np.r_[0, np.arange(first, length, width)]
        if rng.random() < 0.2:  # irregular segments take reduceat itself
            starts = np.unique(np.r_[0, rng.integers(0, length, int(rng.integers(1, 6)))])
        values = rng.normal(size=(2, length, 3))
        for axis, array in ((1, values), (2, np.ascontiguousarray(values.transpose(0, 2, 1)))):
            expected = np.add.reduceat(array, starts, axis=axis)
            np.testing.assert_allclose(_segment_sums(array, starts, axis), expected, rtol=1e-12)
        flags = (values > 0).view(np.uint8)
        counted = _segment_sums(flags, starts, 1, np.int32)
        assert counted.dtype == np.int32
        np.testing.assert_array_equal(counted, np.add.reduceat(flags, starts, 1, np.int32))


def test_merging_with_no_pixels_keeps_every_bit():
    """0.1 * 3 / 3 is not 0.1 in float64: an empty side must not go through it."""
    moments = Moments(np.array([3.0, 7.0]), np.array([0.1, 1 / 3]), np.array([2.5, 0.7]))
    empty = Moments.empty(2, extremes=False)
    for merged in (empty.merge(moments), moments.merge(empty)):
        for got, expected in zip(merged._arrays(), moments._arrays(), strict=True):
            assert (got is None and expected is None) or (got == expected).all()


def test_merge_at_merges_windows_into_their_blocks_in_place():
    """Two windows of a 40 x 60 px image over a 2 x 3 grid of 20 px blocks."""
    rng = np.random.default_rng(4)
    values = rng.normal(1000.0, 50.0, size=(2, 40, 60))
    valid = rng.random(values.shape) > 0.2
    grid = Moments.empty((2, 6), extremes=False)
    counts = grid.count  # merged in place: the same arrays are updated
    # the left window, columns 0-35: blocks 0, 1, 3, 4 (block 1 cut at column 35)
    left = Moments.from_blocks(
        values[:, :, :35], valid[:, :, :35], np.array([0, 20]), np.array([0, 20])
    )
    grid.merge_at(np.array([0, 1, 3, 4]), left)
    assert grid.count is counts
    np.testing.assert_array_equal(grid.count[:, 2], 0.0)
    # the right window, columns 35-60: blocks 1, 2, 4, 5 (block 1 completed)
    right = Moments.from_blocks(
        values[:, :, 35:], valid[:, :, 35:], np.array([0, 20]), np.array([0, 5])
    )
    grid.merge_at(np.array([1, 2, 4, 5]), right)
    expected = _blocks_of(values, valid, np.array([0, 20]), np.array([0, 20, 40]))
    for k, moments in enumerate(expected):
        np.testing.assert_array_equal(grid.count[:, k], moments.count)
        np.testing.assert_allclose(grid.mean[:, k], moments.mean, rtol=1e-13)
        np.testing.assert_allclose(grid.m2[:, k], moments.m2, rtol=1e-10)
    assert grid.count.sum() == valid.sum()
    # merging nothing changes nothing
    before = grid.mean.copy()
    grid.merge_at(np.array([0, 5]), Moments.empty((2, 2), extremes=False))
    np.testing.assert_array_equal(grid.mean, before)


def test_from_blocks_keeps_a_small_spread_on_a_large_pedestal_with_sparse_validity():
    """1e6 +- 0.01 (as in test_float_data_around_one_million), valid everywhere except
    on every 16th row and column: block sums must still be taken about a data-centred
    pivot, or the spread is lost in the squares of 1e6."""
    rng = np.random.default_rng(12)
    values = 1e6 + rng.normal(0.0, 0.01, size=(2, 40, 60))
    valid = np.ones(values.shape, dtype=bool)
    valid[:, ::16, :] = False
    valid[:, :, ::16] = False
    row_starts, col_starts = np.array([0, 20]), np.array([0, 30])
    blocks = Moments.from_blocks(values, valid, row_starts, col_starts)
    for k, moments in enumerate(_blocks_of(values, valid, row_starts, col_starts)):
        assert 0.7e-4 < moments.variance[0] < 1.3e-4
        np.testing.assert_array_equal(blocks.count[:, k], moments.count)
        np.testing.assert_allclose(blocks.mean[:, k], moments.mean, rtol=1e-14)
        np.testing.assert_allclose(blocks.variance[:, k], moments.variance, rtol=1e-6)


def _random_window(rng: np.random.Generator, dtype: str):
    """A strided view of random ``dtype`` values, validity and blocks of up to
    EXACT_BLOCK_PIXELS (uneven rows, even columns but the last)."""
    info = np.iinfo(dtype)
    bands, rows, cols = (int(n) for n in rng.integers(1, [4, 90, 90]))
    low, high = (info.min, info.max) if rng.random() < 0.5 else (max(info.min, -9), 300)
    values = rng.integers(low, min(high, info.max), (bands, rows + 3, cols + 5), endpoint=True)
    values = values.astype(dtype)[:, 1 : 1 + rows, 2 : 2 + cols]
    valid = rng.random(values.shape) < rng.choice([0.0, 0.4, 0.95, 1.0])
    cuts = rng.choice(np.arange(1, rows), size=min(rows - 1, 6), replace=False) if rows > 1 else []
    row_starts = np.r_[0, np.sort(cuts)].astype(np.int64)
    tallest = int(np.diff(row_starts, append=rows).max())
    col_starts = np.arange(0, cols, max(1, min(64, EXACT_BLOCK_PIXELS // tallest)))
    return values, valid, row_starts, col_starts


@needs_compiled
@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16"])
def test_compiled_and_numpy_sums_give_the_same_bits(dtype, monkeypatch):
    """The compiled sums are an acceleration only: block and whole-band moments of
    random windows (strided views, all, some or no pixels valid, in the machine's byte
    order or the other, which only numpy reads) are the same to the bit with numpy's."""
    rng = np.random.default_rng(sum(map(ord, dtype)))
    cases = [_random_window(rng, dtype) for _ in range(40)]
    swapped = [(v.astype(v.dtype.newbyteorder()), *rest) for v, *rest in cases[:5]]
    cases += swapped

    def measured():
        results = []
        for values, valid, row_starts, col_starts in cases:
            blocks = Moments.from_blocks(values, valid, row_starts, col_starts)
            whole = Moments.from_array(values, valid)
            results.append([blocks.count, blocks.mean, blocks.m2, *whole._arrays()])
        return results

    compiled = measured()
    monkeypatch.setattr(moments_module, "compiled_sums", None)
    for ours, numpys in zip(compiled, measured(), strict=True):
        for a, b in zip(ours, numpys, strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


@needs_compiled
def test_compiled_sums_refuse_what_they_cannot_sum_exactly():
    """Called directly with the wrong arrays, the compiled sums raise instead of
    returning wrong numbers."""
    sums = moments_module.compiled_sums
    values = np.ones((1, 8, 8), np.uint16)

    def out_of(blocks):
        return [np.empty((1, blocks)) for _ in range(3)]

    out = out_of(4)
    starts = np.array([0, 4], np.int64)
    with pytest.raises(ValueError, match="8- or 16-bit"):
        sums.block_sums(values.astype(np.int32), None, starts, starts, *out)
    with pytest.raises(ValueError, match="64-bit integers"):
        sums.block_sums(values, None, starts.astype(np.float64), starts, *out)
    with pytest.raises(ValueError, match="float64"):
        sums.block_sums(values, None, starts, starts, *[np.empty((1, 4), np.int64)] * 3)
    with pytest.raises(ValueError, match="increase from 0"):
        sums.block_sums(values, None, np.array([1, 4], np.int64), starts, *out)
    with pytest.raises(ValueError, match="increase from 0"):  # an empty block
        sums.block_sums(values, None, np.array([0, 4, 4], np.int64), starts, *out_of(6))
    with pytest.raises(ValueError, match="booleans"):
        sums.block_sums(values, np.ones((1, 8, 8), np.uint8), starts, starts, *out)
    one = np.array([0], np.int64)
    with pytest.raises(ValueError, match="at most 2"):  # 128 x 64 pixels in one block
        sums.block_sums(np.ones((1, 128, 64), np.uint16), None, one, one, *out_of(1))
    with pytest.raises(ValueError, match="shaped like values"):
        sums.block_sums(values, np.ones((1, 8, 4), bool), starts, starts, *out)
    with pytest.raises(ValueError, match="contiguous 8- or 16-bit"):
        sums.band_sums(np.ones(8, np.float32), None)
    with pytest.raises(ValueError, match="booleans"):
        sums.band_sums(np.ones(8, np.uint16), np.ones(8, np.uint8))


@needs_compiled
def test_a_fitted_model_is_the_same_with_and_without_the_compiled_sums(
    data_dir, tmp_path, monkeypatch
):
    """The samples' default model (global and local steps, changed cells left out) to
    the bit, fitted with the compiled sums and with numpy's."""
    paths = sorted(data_dir.glob("*.tif"))

    def saved(folder: str) -> list[bytes]:
        Mosaic(cache=False).fit(paths).save(tmp_path / folder / "model.json")
        return [path.read_bytes() for path in sorted((tmp_path / folder).iterdir())]

    compiled = saved("compiled")
    monkeypatch.setattr(moments_module, "compiled_sums", None)
    assert saved("numpy") == compiled
