"""Mergeable histograms, for quantiles of images and overlaps.

Bins lie on a lattice of powers of two: band ``b`` counts value ``v`` in bin
``floor((v - origin) / w_b)`` with ``w_b = 2 ** exponent_b``. Each window picks the
finest width that holds its values in ``max_bins`` bins; merging coarsens the finer of
two histograms by whole powers of two (pairs of adjacent bins add up exactly, as the
lattices nest), so partial results from windows, threads or processes merge to the same
histogram in any order. Integer data use ``origin = -0.5``, which puts every integer at
a bin centre (widths start at 1, so uint8 and uint16 data with a range under
``max_bins`` are counted exactly).

A histogram can be reported through a per-band map ``gain * v + offset`` (the statistics
after a linear step), which moves its quantiles exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from attrs import define, field

DEFAULT_BINS = 4096
#: Bins are never finer than 2 ** -RELATIVE_BITS of the largest magnitude counted (so
#: lattice indices stay below 2 ** RELATIVE_BITS).
RELATIVE_BITS = 40
#: The width of the smallest float: no bin is finer.
FINEST_EXPONENT = -1074


def _int_array(values: Any) -> np.ndarray:
    return np.array(values, dtype=np.int64, ndmin=1)


def _float_array(values: Any) -> np.ndarray:
    return np.array(values, dtype=np.float64, ndmin=1)


@define
class Histogram:
    """Per-band counts on a power-of-two lattice, reported through ``gain * v + offset``.

    Attributes
    ----------
    exponents, firsts : int ndarray (n_bands,)
        Bin width ``2 ** exponent`` and lattice index of the first bin, per band.
    counts : list of float ndarray
        Per band, the counts of consecutive bins from ``first``.
    origin : float
        -0.5 for integer data (integers at bin centres), 0 otherwise.
    max_bins : int
        Most bins per band; merging coarsens beyond it.
    gains, offsets : float ndarray (n_bands,)
        The map through which values are reported.

    Examples
    --------
    >>> values = np.arange(1000, dtype=np.uint16).reshape(1, 10, 100)
    >>> histogram = Histogram.from_array(values, np.ones(values.shape, bool))
    >>> histogram.quantiles([0.0, 0.5, 1.0]).round(1).tolist()
    [[-0.5, 499.5, 999.5]]
    """

    exponents: np.ndarray = field(converter=_int_array)
    firsts: np.ndarray = field(converter=_int_array)
    counts: list[np.ndarray]
    origin: float = 0.0
    max_bins: int = DEFAULT_BINS
    gains: np.ndarray = field(factory=lambda: np.zeros(0), converter=_float_array)
    offsets: np.ndarray = field(factory=lambda: np.zeros(0), converter=_float_array)

    def __attrs_post_init__(self) -> None:
        n_bands = len(self.counts)
        self.counts = [np.asarray(c, dtype=np.float64) for c in self.counts]
        if not self.gains.size:  # reported as they were counted
            self.gains, self.offsets = np.ones(n_bands), np.zeros(n_bands)

    @classmethod
    def empty(cls, n_bands: int, integer: bool, max_bins: int = DEFAULT_BINS) -> Histogram:
        """The histogram of no values."""
        return cls(
            np.zeros(n_bands),
            np.zeros(n_bands),
            [np.zeros(0) for _ in range(n_bands)],
            -0.5 if integer else 0.0,
            max_bins,
        )

    @classmethod
    def from_array(
        cls, values: np.ndarray, valid: np.ndarray, max_bins: int = DEFAULT_BINS
    ) -> Histogram:
        """Histogram of ``values`` (bands, rows, cols) where ``valid`` is true."""
        n_bands = values.shape[0]
        integer = values.dtype.kind in "iub"
        origin = -0.5 if integer else 0.0
        flat, mask = values.reshape(n_bands, -1), valid.reshape(n_bands, -1)
        exponents, firsts, counts = np.zeros(n_bands), np.zeros(n_bands), []
        for band in range(n_bands):
            selected = flat[band] if mask[band].all() else flat[band][mask[band]]
            if not selected.size:
                counts.append(np.zeros(0))
                continue
            low, high = float(selected.min()), float(selected.max())
            exponent = _finest_exponent(low, high, origin, max_bins, integer)
            index = _bin_index(selected, exponent, origin)
            first = int(index.min())
            exponents[band], firsts[band] = exponent, first
            counts.append(np.bincount(index - first).astype(np.float64))
        return cls(exponents, firsts, counts, origin, max_bins)

    @property
    def n_bands(self) -> int:
        return len(self.counts)

    @property
    def count(self) -> np.ndarray:
        """Number of values per band."""
        return np.array([c.sum() for c in self.counts])

    def merge(self, other: Histogram) -> Histogram:
        """The histogram of both sets of values (exact, order-independent).

        Both must count values on the same lattice and report them through the same map
        (as the parts of one image or overlap do).
        """
        if self.origin != other.origin or not (
            np.array_equal(self.gains, other.gains) and np.array_equal(self.offsets, other.offsets)
        ):
            raise ValueError("histograms of differently mapped values cannot be merged")
        exponents, firsts, counts = [], [], []
        for band in range(self.n_bands):
            exponent, first, merged = _merge_band(
                (self.exponents[band], self.firsts[band], self.counts[band]),
                (other.exponents[band], other.firsts[band], other.counts[band]),
                min(self.max_bins, other.max_bins),
            )
            exponents.append(exponent)
            firsts.append(first)
            counts.append(merged)
        return Histogram(
            exponents, firsts, counts, self.origin, self.max_bins, self.gains, self.offsets
        )

    def affine(self, gain: np.ndarray, offset: np.ndarray) -> Histogram:
        """The histogram of ``gain * x + offset`` (per band), derived exactly."""
        gain, offset = _float_array(gain), _float_array(offset)
        return Histogram(
            self.exponents,
            self.firsts,
            self.counts,
            self.origin,
            self.max_bins,
            gain * self.gains,
            gain * self.offsets + offset,
        )

    def quantiles(self, levels: Any) -> np.ndarray:
        """Values at ``levels`` (fractions in [0, 1]) per band: (n_bands, n_levels).

        Values are taken as spread evenly within each bin; NaN for a band without values.
        """
        levels = np.clip(np.asarray(levels, dtype=np.float64), 0.0, 1.0)
        result = np.full((self.n_bands, levels.size), np.nan)
        for band in range(self.n_bands):
            counts = self.counts[band]
            total = counts.sum()
            if total <= 0:
                continue
            gain = self.gains[band]
            wanted = levels if gain >= 0 else 1.0 - levels
            raw = _lattice_quantiles(
                counts, self.exponents[band], self.firsts[band], self.origin, wanted * total
            )
            result[band] = gain * raw + self.offsets[band]
        return result

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat arrays (for a cache entry); inverse: :meth:`from_arrays`."""
        lengths = np.array([len(c) for c in self.counts])
        return {
            "exponents": self.exponents,
            "firsts": self.firsts,
            "lengths": lengths,
            "counts": np.concatenate(self.counts) if lengths.sum() else np.zeros(0),
            "settings": np.array([self.origin, self.max_bins], dtype=np.float64),
            "gains": self.gains,
            "offsets": self.offsets,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Histogram:
        """Inverse of :meth:`to_arrays`."""
        splits = np.cumsum(arrays["lengths"])[:-1]
        origin, max_bins = arrays["settings"]
        return cls(
            arrays["exponents"],
            arrays["firsts"],
            list(np.split(arrays["counts"], splits)),
            float(origin),
            int(max_bins),
            arrays["gains"],
            arrays["offsets"],
        )


def _bin_index(values: np.ndarray, exponent: int, origin: float) -> np.ndarray:
    shifted = values.astype(np.float64) - origin if origin else values.astype(np.float64)
    return _floor_scaled(shifted, exponent).astype(np.int64)


def _floor_scaled(shifted: np.ndarray | float, exponent: int) -> np.ndarray:
    """``floor(shifted / 2 ** exponent)``; a negative value so small that the division
    underflows to -0.0 is in bin -1, not 0."""
    scaled = np.floor(np.ldexp(shifted, -int(exponent)))
    return np.where((scaled == 0) & (np.asarray(shifted) < 0), -1.0, scaled)


def _span(low: float, high: float, exponent: int, origin: float) -> int:
    """Bins from ``low`` to ``high`` at width ``2 ** exponent``."""
    first = int(_floor_scaled(low - origin, exponent))
    return int(_floor_scaled(high - origin, exponent)) - first + 1


def _finest_exponent(low: float, high: float, origin: float, max_bins: int, integer: bool) -> int:
    """The smallest exponent whose bins hold [low, high] in ``max_bins`` bins, and no finer
    than ``2 ** -RELATIVE_BITS`` of the largest magnitude. That bound depends on the values
    alone and grows with them, so every part of a set of values gets an exponent no coarser
    than the whole set's, and the parts' histograms merge to the set's own (a part holding
    one value would otherwise get a width finer than any the whole could use)."""
    exponent = FINEST_EXPONENT
    magnitude = max(abs(low), abs(high))
    if magnitude > 0:
        exponent = max(exponent, math.frexp(magnitude)[1] - RELATIVE_BITS)
    spread = high - low
    if spread > 0:
        exponent = max(exponent, math.ceil(math.log2(spread / max_bins)))
    if integer:
        exponent = max(exponent, 0)
    while _span(low, high, exponent, origin) > max_bins:
        exponent += 1
    return exponent


def _merge_band(
    a: tuple[int, int, np.ndarray], b: tuple[int, int, np.ndarray], max_bins: int
) -> tuple[int, int, np.ndarray]:
    """Merge the counts of one band from two lattices (coarsening as needed)."""
    if not a[2].size:
        return int(b[0]), int(b[1]), b[2].copy()
    if not b[2].size:
        return int(a[0]), int(a[1]), a[2].copy()
    exponent = int(max(a[0], b[0]))
    while True:
        parts = [_coarsened(part, exponent) for part in (a, b)]
        first = min(part[0] for part in parts)
        last = max(part[0] + len(part[1]) - 1 for part in parts)
        if last - first + 1 <= max_bins:
            break
        exponent += 1
    merged = np.zeros(last - first + 1)
    for start, counts in parts:
        merged[start - first : start - first + len(counts)] += counts
    return exponent, first, merged


def _coarsened(part: tuple[int, int, np.ndarray], exponent: int) -> tuple[int, np.ndarray]:
    """Counts of ``part`` on the lattice of width ``2 ** exponent`` (adjacent bins added)."""
    own_exponent, first, counts = int(part[0]), int(part[1]), part[2]
    shift = exponent - own_exponent
    if shift == 0:
        return first, counts
    # a right shift floors the division by 2 ** shift; beyond 63 every int64 index gives
    # 0 or -1, as it does at 63 (a part on a far finer lattice, e.g. of zeros alone)
    index = (first + np.arange(len(counts))) >> min(shift, 63)
    return int(index[0]), np.bincount(index - index[0], weights=counts)


def _lattice_quantiles(
    counts: np.ndarray, exponent: int, first: int, origin: float, targets: np.ndarray
) -> np.ndarray:
    """Values below which ``targets`` of the counts lie, linear within each bin."""
    width = math.ldexp(1.0, int(exponent))
    filled = np.flatnonzero(counts > 0)
    ends = np.cumsum(counts[filled])
    starts = ends - counts[filled]
    bins = np.clip(np.searchsorted(ends, targets, side="left"), 0, len(filled) - 1)
    fraction = np.clip((targets - starts[bins]) / counts[filled][bins], 0.0, 1.0)
    return origin + (first + filled[bins] + fraction) * width
