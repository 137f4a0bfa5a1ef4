"""stats.histogram.Histogram: exact merging, quantiles, mapping and serialization.

The values are real texture: the truth image (the valid interior of ``data/tile_00.tif``)
as uint16, shifted into int16 with negative values, and scaled to negative float32
reflectances. Every expectation comes from numpy (``np.bincount``, ``np.median``,
``np.quantile``) or from the lattice arithmetic the module documents, never from the
histogram's own output.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import corner_mask, load_truth

from spectralmatch.stats.histogram import DEFAULT_BINS, Histogram

#: Row boundaries of the parts an array is split into (uneven on purpose: parts of a
#: few rows hold a narrower range and get finer bins than the whole).
ROW_SPLITS = [0, 1, 4, 11, 30, 64, 65, 120, 200]


@pytest.fixture(scope="module")
def texture() -> np.ndarray:
    """(3, 200, 200) float64 DN of real Landsat texture, about 4850 .. 16035."""
    return load_truth().data


def as_dtype(texture: np.ndarray, kind: str) -> np.ndarray:
    if kind == "uint16":
        return texture.astype(np.uint16)  # spans ~11000 values: more than 4096 bins
    if kind == "int16":
        return (texture - 9000.0).astype(np.int16)  # -4150 .. 7035
    # reflectance-like floats around zero (-0.42 .. 0.70), with a little noise
    noise = np.random.default_rng(3).normal(0.0, 3e-5, texture.shape)
    return ((texture - 9000.0) / 10000.0 + noise).astype(np.float32)


def valid_of(values: np.ndarray) -> np.ndarray:
    """A realistic mask: a nodata triangle in one corner and a few scattered holes."""
    valid = np.ones(values.shape, dtype=bool)
    valid &= ~corner_mask(values.shape[1], values.shape[2], "nw", 40)[None]
    rng = np.random.default_rng(7)
    valid &= rng.random(values.shape) > 0.02
    return valid


def assert_same_histogram(a: Histogram, b: Histogram) -> None:
    np.testing.assert_array_equal(a.exponents, b.exponents)
    np.testing.assert_array_equal(a.firsts, b.firsts)
    assert len(a.counts) == len(b.counts)
    for band, (x, y) in enumerate(zip(a.counts, b.counts, strict=True)):
        assert x.shape == y.shape, band
        np.testing.assert_array_equal(x, y)
    assert a.origin == b.origin and a.max_bins == b.max_bins
    np.testing.assert_array_equal(a.gains, b.gains)
    np.testing.assert_array_equal(a.offsets, b.offsets)


def merged(parts: list[Histogram], order) -> Histogram:
    result = parts[order[0]]
    for index in order[1:]:
        result = result.merge(parts[index])
    return result


def tree_merged(parts: list[Histogram]) -> Histogram:
    while len(parts) > 1:
        pairs = [parts[i].merge(parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
        parts = pairs + ([parts[-1]] if len(parts) % 2 else [])
    return parts[0]


def width(histogram: Histogram, band: int) -> float:
    return 2.0 ** int(histogram.exponents[band])


# ---------------------------------------------------------------------- merging


@pytest.mark.parametrize("max_bins", [DEFAULT_BINS, 256])
@pytest.mark.parametrize("kind", ["uint16", "int16", "float32"])
def test_merging_parts_in_any_order_gives_the_histogram_of_the_whole(texture, kind, max_bins):
    values = as_dtype(texture, kind)
    valid = valid_of(values)
    if kind == "int16":
        assert values[valid].min() < 0
    if kind == "float32":
        assert values[valid].min() < 0 < values[valid].max()
    whole = Histogram.from_array(values, valid, max_bins)
    parts = [
        Histogram.from_array(values[:, a:b], valid[:, a:b], max_bins)
        for a, b in zip(ROW_SPLITS[:-1], ROW_SPLITS[1:], strict=True)
    ]
    # the whole needs coarser bins than its parts: merging has to coarsen
    if kind != "float32":  # integers spanning more than max_bins (unit bins would not do)
        spread = np.array([np.ptp(values[b][valid[b]].astype(np.int64)) for b in range(3)])
        assert (spread > max_bins).all()
    assert any((part.exponents < whole.exponents).any() for part in parts)
    rng = np.random.default_rng(11)
    n = len(parts)
    orders = [
        list(range(n)),
        list(range(n))[::-1],
        list(rng.permutation(n)),
        [3, 0, 6, 1, 7, 2, 5, 4],
    ]
    for order in orders:
        assert_same_histogram(merged(parts, order), whole)
    assert_same_histogram(tree_merged(parts), whole)
    assert_same_histogram(tree_merged(parts[::-1]), whole)
    np.testing.assert_array_equal(whole.count, valid.reshape(3, -1).sum(axis=1))


def test_merge_coarsens_by_whole_powers_of_two(texture):
    """Two images that each fit in 4096 unit bins, but not together."""
    values = texture[:1].astype(np.uint16)
    low, high = int(values.min()), int(values.max())
    a = np.clip(values, low, low + 4000)  # the dark end
    b = np.clip(values, high - 4000, high)  # the bright end
    valid = np.ones(values.shape, bool)
    ha, hb = Histogram.from_array(a, valid), Histogram.from_array(b, valid)
    assert ha.exponents.tolist() == [0] and hb.exponents.tolist() == [0]
    both = ha.merge(hb)
    exponent = int(both.exponents[0])
    # the finest width whose lattice (origin -0.5) holds low .. high in 4096 bins
    expected = next(
        e for e in range(16) if (high + 0.5) // 2**e - (low + 0.5) // 2**e + 1 <= DEFAULT_BINS
    )
    assert exponent == expected and exponent >= 1
    combined = np.concatenate([a.ravel(), b.ravel()]).astype(np.int64)
    index = (combined + 0.5) // 2**exponent
    np.testing.assert_array_equal(
        both.counts[0], np.bincount((index - index.min()).astype(np.int64))
    )
    assert both.firsts[0] == index.min()


# ---------------------------------------------------------------------- quantiles


@pytest.mark.parametrize(
    ("kind", "max_bins"), [("uint8", DEFAULT_BINS), ("uint16", 16384), ("int16", 16384)]
)
def test_integer_quantiles_are_exact_at_bin_centres(texture, kind, max_bins):
    flat = texture.reshape(3, 1, -1)[:, :, :39999]  # an odd number of values per band
    if kind == "uint8":
        values = (flat // 64).astype(np.uint8)
    elif kind == "uint16":
        values = flat.astype(np.uint16)
    else:
        values = (flat - 9000).astype(np.int16)
    histogram = Histogram.from_array(values, np.ones(values.shape, bool), max_bins)
    assert histogram.exponents.tolist() == [0, 0, 0]  # range below max_bins: unit bins
    for band in range(3):
        data = values[band].ravel().astype(np.int64)
        low = int(data.min())
        assert histogram.firsts[band] == low
        np.testing.assert_array_equal(histogram.counts[band], np.bincount(data - low))
        median = histogram.quantiles([0.5])[band, 0]
        assert abs(median - np.median(data)) <= 0.5
        # every value present is its own quantile at the middle of its share
        counts = np.bincount(data - low)
        present = np.flatnonzero(counts)
        starts = np.cumsum(counts)[present] - counts[present]
        levels = (starts + counts[present] / 2) / data.size
        np.testing.assert_allclose(
            histogram.quantiles(levels)[band], present + low, rtol=0, atol=1e-6
        )
    # the extremes are the outer edges of the extreme bins
    np.testing.assert_allclose(
        histogram.quantiles([0.0, 1.0]),
        np.stack([values.min(axis=(1, 2)) - 0.5, values.max(axis=(1, 2)) + 0.5], axis=1),
    )


@pytest.mark.parametrize("max_bins", [DEFAULT_BINS, 512])
def test_float_quantiles_within_one_bin_width(texture, max_bins):
    values = as_dtype(texture, "float32")
    valid = valid_of(values)
    histogram = Histogram.from_array(values, valid, max_bins)
    levels = np.linspace(0.0, 1.0, 41)
    quantiles = histogram.quantiles(levels)
    for band in range(3):
        data = values[band][valid[band]].astype(np.float64)
        bin_width = width(histogram, band)
        # the bins are as fine as max_bins allows: half the width would not hold the range
        assert bin_width < 2 * np.ptp(data) / (max_bins - 1)
        np.testing.assert_allclose(
            quantiles[band], np.quantile(data, levels, method="inverted_cdf"), atol=bin_width
        )
        np.testing.assert_allclose(quantiles[band], np.quantile(data, levels), atol=bin_width)
    assert (np.diff(quantiles, axis=1) >= 0).all()


def test_affine_maps_quantiles_exactly_and_a_negative_gain_reverses_them(texture):
    values = as_dtype(texture, "uint16")
    valid = valid_of(values)
    histogram = Histogram.from_array(values, valid)
    gains, offsets = np.array([1.7, -0.6, 1.0]), np.array([-100.0, 5000.0, 0.25])
    mapped = histogram.affine(gains, offsets)
    levels = np.linspace(0.0, 1.0, 33)
    raw = histogram.quantiles(levels)
    reversed_raw = histogram.quantiles(1.0 - levels)
    result = mapped.quantiles(levels)
    for band in range(3):
        source = raw[band] if gains[band] > 0 else reversed_raw[band]
        np.testing.assert_allclose(
            result[band], gains[band] * source + offsets[band], rtol=1e-14, atol=1e-9
        )
    assert (np.diff(result, axis=1) >= 0).all()  # still quantiles: non-decreasing
    # and they are the quantiles of the mapped values themselves (within a mapped bin)
    for band in range(3):
        data = gains[band] * values[band][valid[band]].astype(np.float64) + offsets[band]
        tolerance = abs(gains[band]) * width(histogram, band)
        np.testing.assert_allclose(result[band], np.quantile(data, levels), atol=tolerance)
    # counts are not touched, maps compose
    np.testing.assert_array_equal(mapped.count, histogram.count)
    twice = mapped.affine([2.0, -1.0, 0.5], [3.0, 10.0, -1.0])
    once = histogram.affine(
        gains * [2.0, -1.0, 0.5], [2.0, -1.0, 0.5] * offsets + [3.0, 10.0, -1.0]
    )
    np.testing.assert_allclose(twice.quantiles(levels), once.quantiles(levels), rtol=1e-12)


def test_merging_commutes_with_a_common_map(texture):
    values = as_dtype(texture, "int16")
    valid = valid_of(values)
    top = Histogram.from_array(values[:, :70], valid[:, :70])
    bottom = Histogram.from_array(values[:, 70:], valid[:, 70:])
    gains, offsets = np.array([0.8, -1.3, 2.0]), np.array([12.0, -40.0, 0.5])
    levels = np.linspace(0.0, 1.0, 17)
    mapped_then_merged = top.affine(gains, offsets).merge(bottom.affine(gains, offsets))
    merged_then_mapped = top.merge(bottom).affine(gains, offsets)
    np.testing.assert_array_equal(
        mapped_then_merged.quantiles(levels), merged_then_mapped.quantiles(levels)
    )


def test_merging_differently_mapped_histograms_raises(texture):
    values = as_dtype(texture, "uint16")
    valid = np.ones(values.shape, bool)
    histogram = Histogram.from_array(values, valid)
    with pytest.raises(ValueError, match="differently mapped"):
        histogram.affine([2.0, 1.0, 1.0], [0.0, 0.0, 0.0]).merge(histogram)
    with pytest.raises(ValueError, match="differently mapped"):
        histogram.merge(histogram.affine([1.0, 1.0, 1.0], [0.0, 0.0, 5.0]))
    with pytest.raises(ValueError, match="differently mapped"):
        histogram.affine([1.0, 1.0, -1.0], [0.0] * 3).merge(
            histogram.affine([1.0, 1.0, 1.0], [0.0] * 3)
        )
    # integer (origin -0.5) and float (origin 0) lattices do not mix either
    floats = Histogram.from_array(values.astype(np.float32), valid)
    with pytest.raises(ValueError):
        histogram.merge(floats)
    # the identity map is no map: these merge
    same = histogram.affine([1.0, 1.0, 1.0], [0.0, 0.0, 0.0]).merge(histogram)
    np.testing.assert_array_equal(same.count, 2 * histogram.count)


# ---------------------------------------------------------------------- empty bands


def test_empty_bands_give_nan_quantiles_and_merge_with_full_ones(texture):
    values = as_dtype(texture, "float32")
    valid = valid_of(values)
    partly = valid.copy()
    partly[1] = False  # band 1: no valid value
    histogram = Histogram.from_array(values, partly)
    assert histogram.count[1] == 0 and histogram.count[0] == valid[0].sum()
    quantiles = histogram.quantiles([0.0, 0.5, 1.0])
    assert np.isnan(quantiles[1]).all() and np.isfinite(quantiles[[0, 2]]).all()

    full = Histogram.from_array(values, valid)
    for merged_histogram in (histogram.merge(full), full.merge(histogram)):
        np.testing.assert_array_equal(merged_histogram.count, full.count + histogram.count)
        # band 1 is exactly the full histogram's band 1
        assert merged_histogram.exponents[1] == full.exponents[1]
        assert merged_histogram.firsts[1] == full.firsts[1]
        np.testing.assert_array_equal(merged_histogram.counts[1], full.counts[1])

    empty = Histogram.empty(3, integer=False)
    np.testing.assert_array_equal(empty.count, [0, 0, 0])
    assert np.isnan(empty.quantiles([0.1, 0.9])).all()
    assert_same_histogram(empty.merge(full), full)
    assert_same_histogram(full.merge(empty), full)
    assert np.isnan(empty.merge(Histogram.empty(3, integer=False)).quantiles([0.5])).all()
    nothing = Histogram.from_array(values, np.zeros(values.shape, bool))
    np.testing.assert_array_equal(nothing.count, [0, 0, 0])
    assert np.isnan(nothing.quantiles([0.5])).all()


# ---------------------------------------------------------------------- arrays


def test_arrays_round_trip_exactly_through_a_file(texture, tmp_path):
    values = as_dtype(texture, "int16")
    valid = valid_of(values)
    valid[2] = False  # an empty band among full ones
    histogram = Histogram.from_array(values, valid, 1024).affine(
        [1.5, -0.25, 3.0], [-7.0, 100.0, 0.0]
    )
    np.savez(tmp_path / "histogram.npz", **histogram.to_arrays())
    with np.load(tmp_path / "histogram.npz") as stored:
        restored = Histogram.from_arrays(dict(stored))
    assert_same_histogram(restored, histogram)
    assert restored.origin == -0.5 and restored.max_bins == 1024
    levels = np.linspace(0, 1, 11)
    np.testing.assert_array_equal(restored.quantiles(levels), histogram.quantiles(levels))
    # a float histogram and an all-empty one as well
    floats = Histogram.from_array(as_dtype(texture, "float32"), valid_of(values))
    assert_same_histogram(Histogram.from_arrays(floats.to_arrays()), floats)
    empty = Histogram.empty(2, integer=True)
    assert_same_histogram(Histogram.from_arrays(empty.to_arrays()), empty)


# ---------------------------------------------------------------------- validity


@pytest.mark.parametrize("kind", ["uint16", "float32"])
def test_only_valid_values_are_counted(texture, kind):
    values = as_dtype(texture, kind).copy()
    valid = valid_of(values)
    # what lies under the invalid pixels must be counted nowhere: extreme values, NaN
    if kind == "uint16":
        values[~valid] = np.where(np.arange((~valid).sum()) % 2, 0, 65535)
    else:
        values[~valid] = np.where(np.arange((~valid).sum()) % 2, np.nan, -1e30)
    histogram = Histogram.from_array(values, valid)
    np.testing.assert_array_equal(histogram.count, valid.reshape(3, -1).sum(axis=1))
    assert np.isfinite(histogram.quantiles([0.0, 1.0])).all()
    for band in range(3):
        selected = values[band][valid[band]]
        alone = Histogram.from_array(
            selected.reshape(1, 1, -1), np.ones((1, 1, selected.size), bool)
        )
        assert histogram.exponents[band] == alone.exponents[0]
        assert histogram.firsts[band] == alone.firsts[0]
        np.testing.assert_array_equal(histogram.counts[band], alone.counts[0])
        low, high = histogram.quantiles([0.0, 1.0])[band]
        bin_width = width(histogram, band)
        assert selected.min() - bin_width <= low <= selected.min()
        assert selected.max() <= high <= selected.max() + bin_width
    # a mask that is False nowhere counts every value
    clean = as_dtype(texture, kind)
    everything = Histogram.from_array(clean, np.ones(clean.shape, bool))
    np.testing.assert_array_equal(everything.count, [clean[0].size] * 3)
    if kind == "uint16":
        for band in range(3):
            data = clean[band].ravel().astype(np.int64)
            exponent = int(everything.exponents[band])
            index = (data + 0.5) // 2**exponent
            np.testing.assert_array_equal(
                everything.counts[band], np.bincount((index - index.min()).astype(np.int64))
            )


def test_a_negative_value_too_small_to_divide_lies_in_the_bin_below_zero():
    """-5e-324 divided by a bin width underflows to -0.0: it still belongs below zero."""
    values = np.array([[[-5e-324, 0.0, 1.0, 3.0]]])
    whole = Histogram.from_array(values, np.ones_like(values, dtype=bool), max_bins=4)
    width = 2.0 ** int(whole.exponents[0])
    low = whole.origin + int(whole.firsts[0]) * width
    assert low <= values.min() < low + width
    parts = [
        Histogram.from_array(values[:, :, :1], np.ones((1, 1, 1), dtype=bool), max_bins=4),
        Histogram.from_array(values[:, :, 1:], np.ones((1, 1, 3), dtype=bool), max_bins=4),
    ]
    merged = Histogram.merge(*parts)
    np.testing.assert_array_equal(merged.counts[0], whole.counts[0])
