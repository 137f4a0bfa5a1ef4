"""Moments: streaming, mergeable per-band count / mean / M2."""

from __future__ import annotations

import numpy as np
import pytest

from spectralmatch import Moments


def split_moments(values: np.ndarray, valid: np.ndarray, rng: np.random.Generator,
                  pieces: int) -> Moments:
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


@pytest.mark.parametrize(("gain", "offset"), [((1.3, 0.7), (-250.0, 12.5)),
                                              ((-0.5, 2.0), (1000.0, 0.0))])
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


def test_dict_round_trip_is_exact():
    rng = np.random.default_rng(9)
    values = rng.normal(size=(3, 8, 8))
    moments = Moments.from_array(values, values > -0.5)
    restored = Moments.from_dict(moments.to_dict())
    for name in ("count", "mean", "m2"):
        np.testing.assert_array_equal(getattr(restored, name), getattr(moments, name))
    assert isinstance(moments.to_dict()["mean"], list)
