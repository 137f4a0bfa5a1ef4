"""Mergeable streaming statistics.

:class:`Moments` holds count, mean, sum of squared deviations (``M2``) and, where
known, minimum and maximum, in float64, per band (and per block for block statistics).
Partial results from windows, threads or cluster workers merge exactly with Chan et
al.'s pairwise update, which stays accurate for data with a large pedestal (uint16
digital numbers, reflectance with an offset) where naive sums of squares lose every
significant digit.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
from attrs import define, field

compiled_sums: ModuleType | None
try:  # the compiled sums, where the package was built with them (setup.py)
    from . import _sums as compiled_sums
except ImportError:  # the same numbers from numpy
    compiled_sums = None


def _float_array(values) -> np.ndarray:
    return np.array(values, dtype=np.float64, ndmin=1)


def _optional_float_array(values) -> np.ndarray | None:
    return None if values is None else _float_array(values)


def _per_band(values: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Per-band ``values`` shaped to broadcast against ``like`` (bands first)."""
    values = np.asarray(values, dtype=np.float64)
    return values.reshape(values.shape + (1,) * (like.ndim - values.ndim))


def _rough_mean(values: np.ndarray, valid: np.ndarray, step: int = 16) -> np.ndarray:
    """Per-band mean of a sparse sample of the valid values: a cheap, data-centred pivot
    for shifted sums (a band whose sample holds no valid value takes its first valid
    value; 0 when it has none)."""
    sample, sample_valid = values[:, ::step, ::step], valid[:, ::step, ::step]
    count = sample_valid.sum(axis=(1, 2))
    total = np.where(sample_valid, sample, 0).sum(axis=(1, 2), dtype=np.float64)
    pivot = np.divide(total, count, out=np.zeros(len(count)), where=count > 0)
    for band in np.flatnonzero(count == 0):
        first = np.argmax(valid[band])
        if valid[band].flat[first]:
            pivot[band] = values[band].flat[first]
    return pivot


#: Blocks of at most this many pixels of integers of up to 16 bits are summed as they
#: are, in integers, without first taking a pivot from every pixel: their sums, sums of
#: squares and the pivot's share of both (``2 * pivot * sum``, ``n * pivot**2``) are
#: whole numbers below 2**53, exact in float64, so the sums about the pivot are exact.
EXACT_BLOCK_PIXELS = 1 << 12


def _sums_exact(values: np.ndarray, row_starts: np.ndarray, col_starts: np.ndarray) -> bool:
    """Whether :meth:`Moments.from_blocks` may sum ``values`` without a pivot."""
    if values.dtype.kind not in "iu" or values.dtype.itemsize > 2:
        return False
    rows = np.diff(row_starts, append=values.shape[1]).max(initial=0)
    cols = np.diff(col_starts, append=values.shape[2]).max(initial=0)
    return int(rows) * int(cols) <= EXACT_BLOCK_PIXELS


def _block_sums(array: np.ndarray, row_starts, col_starts, dtype=None) -> np.ndarray:
    """Sums of ``array`` (bands, rows, cols) per block, (bands, blocks) in row-major order;
    rows first: whole rows added together shrink the array the columns walk."""
    rows = _segment_sums(array, row_starts, axis=1, dtype=dtype)
    return _segment_sums(rows, col_starts, axis=2).reshape(array.shape[0], -1)


def _block_counts(
    values: np.ndarray, valid: np.ndarray, everywhere: bool, row_starts, col_starts, exact: bool
) -> np.ndarray:
    """The valid pixels per band and block, in float64 (``exact``: blocks of at most
    :data:`EXACT_BLOCK_PIXELS`, whose counts fit 16 bits)."""
    if everywhere:
        sizes = np.diff(row_starts, append=values.shape[1])[:, None] * np.diff(
            col_starts, append=values.shape[2]
        )
        return np.tile(sizes.ravel().astype(np.float64), (values.shape[0], 1))
    counted = _block_sums(
        valid.view(np.uint8), row_starts, col_starts, np.uint16 if exact else np.int32
    )
    return counted.astype(np.float64)


def _compiled_layout(array: np.ndarray, axis: int) -> bool:
    """Whether :data:`compiled_sums` reads ``array`` as it is: native byte order, and
    contiguous along ``axis`` (its last)."""
    return array.dtype.isnative and array.strides[axis] == array.itemsize


def _exact_block_sums(
    values: np.ndarray,
    valid: np.ndarray,
    everywhere: bool,
    row_starts: np.ndarray,
    col_starts: np.ndarray,
    count: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per band and block of small integers (:func:`_sums_exact`): the valid pixels,
    their sum and their sum of squares, exactly, in float64 (``count`` where known).

    In one compiled pass where :data:`compiled_sums` is built and each row of ``values``
    is contiguous; else with numpy, a block's sum within 32 bits and its sum of squares
    within 64. Both give the same numbers."""
    if compiled_sums is not None and _compiled_layout(values, axis=2):
        shape = (values.shape[0], len(row_starts) * len(col_starts))
        counted, total, squares = np.empty(shape), np.empty(shape), np.empty(shape)
        mask = None
        if not everywhere:
            mask = valid if _compiled_layout(valid, axis=2) else np.ascontiguousarray(valid)
        compiled_sums.block_sums(
            values,
            mask,
            np.ascontiguousarray(row_starts, dtype=np.int64),
            np.ascontiguousarray(col_starts, dtype=np.int64),
            counted,
            total,
            squares,
        )
        return (counted if count is None else count), total, squares
    if count is None:
        count = _block_counts(values, valid, everywhere, row_starts, col_starts, exact=True)
    kept = values if everywhere else values * valid
    unsigned = values.dtype.kind == "u"
    wide, wider = (np.uint32, np.uint64) if unsigned else (np.int32, np.int64)
    total = _block_sums(kept, row_starts, col_starts, wide).astype(np.float64)
    squares = _block_sums(np.square(kept, dtype=wide), row_starts, col_starts, wider)
    return count, total, squares.astype(np.float64)


#: Whole-image moments of small integers are summed this many pixels at a time, so that
#: the selected values, their squares and the sums stay in the processor's cache.
SUM_CHUNK = 1 << 16


#: Count, mean, M2, minimum and maximum of no pixels.
NO_PIXELS = (0.0, 0.0, 0.0, np.inf, -np.inf)


def _band_moments(values: np.ndarray, valid: np.ndarray) -> tuple[float, ...]:
    """Count, mean, M2, minimum and maximum of a 1-D array where ``valid`` is true (0, 0,
    0, inf, -inf where none is).

    Integers of up to 16 bits are summed exactly (their squares fit 32 bits, and their
    sums 64 bits for fewer than 2**32 values), so the result is correctly rounded and
    independent of the order of the pixels; other types take two passes in float64.
    """
    small = values.dtype.kind in "iu" and values.dtype.itemsize <= 2 and values.size < 1 << 32
    return _integer_moments(values, valid) if small else _float_moments(values, valid)


def _integer_moments(values: np.ndarray, valid: np.ndarray) -> tuple[float, ...]:
    """:func:`_band_moments` of small integers: in one compiled pass where
    :data:`compiled_sums` is built, else summed :data:`SUM_CHUNK` at a time."""
    everywhere = bool(valid.all())
    contiguous = values.flags.c_contiguous and valid.flags.c_contiguous
    if compiled_sums is not None and contiguous and values.dtype.isnative:
        count, total, sum_of_squares, low, high = compiled_sums.band_sums(
            values, None if everywhere else valid
        )
    else:
        count, total, sum_of_squares, low, high = _integer_sums(values, valid, everywhere)
    if not count:
        return NO_PIXELS
    m2 = (count * sum_of_squares - total * total) / count
    return count, total / count, m2, float(low), float(high)


def _integer_sums(values: np.ndarray, valid: np.ndarray, everywhere: bool) -> tuple:
    """Count, sum, sum of squares (Python integers) and extremes of the valid
    ``values``, with numpy, :data:`SUM_CHUNK` at a time."""
    square = np.uint32 if values.dtype.kind == "u" else np.int32
    count = total = sum_of_squares = 0
    low, high = np.inf, -np.inf
    for start in range(0, values.size, SUM_CHUNK):
        chunk = values[start : start + SUM_CHUNK]
        if not everywhere:
            chunk = chunk[valid[start : start + SUM_CHUNK]]
        if chunk.size:
            count += chunk.size
            total += int(chunk.sum(dtype=np.int64))
            sum_of_squares += int(np.square(chunk, dtype=square).sum(dtype=np.uint64))
            low, high = min(low, chunk.min()), max(high, chunk.max())
    return count, total, sum_of_squares, low, high


def _float_moments(values: np.ndarray, valid: np.ndarray) -> tuple[float, ...]:
    """:func:`_band_moments` in two passes in float64."""
    selected = values if valid.all() else values[valid]
    if not selected.size:
        return NO_PIXELS
    mean = selected.mean(dtype=np.float64)
    deviation = selected - mean
    # einsum, not np.dot: BLAS splits a long dot product by its number of threads, so
    # the sum would depend on the machine (a Dask worker has one)
    m2 = float(np.einsum("i,i->", deviation, deviation))
    return selected.size, float(mean), m2, float(selected.min()), float(selected.max())


@define
class Moments:
    """Count, mean, M2 (sum of squared deviations), minimum and maximum.

    Arrays have shape (n_bands,) for whole images and overlaps, and (n_bands, n_blocks)
    for block statistics. ``minimum`` and ``maximum`` may be None (not tracked).

    Examples
    --------
    >>> import numpy as np
    >>> values = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    >>> whole = Moments.from_array(values, np.ones_like(values, dtype=bool))
    >>> left = Moments.from_array(values[:, :, :1], np.ones((1, 2, 1), dtype=bool))
    >>> right = Moments.from_array(values[:, :, 1:], np.ones((1, 2, 1), dtype=bool))
    >>> merged = left.merge(right)
    >>> bool(np.allclose(merged.std, whole.std)), merged.maximum.tolist()
    (True, [4.0])
    """

    count: np.ndarray = field(converter=_float_array)
    mean: np.ndarray = field(converter=_float_array)
    m2: np.ndarray = field(converter=_float_array)
    minimum: np.ndarray | None = field(default=None, converter=_optional_float_array)
    maximum: np.ndarray | None = field(default=None, converter=_optional_float_array)

    @classmethod
    def empty(cls, shape: int | tuple[int, ...], extremes: bool = True) -> Moments:
        """Moments of no pixels (with extremes at +inf / -inf when tracked)."""
        zeros = np.zeros(shape)
        if not extremes:
            return cls(zeros, zeros, zeros)
        return cls(zeros, zeros, zeros, np.full(shape, np.inf), np.full(shape, -np.inf))

    @classmethod
    def from_array(cls, values: np.ndarray, valid: np.ndarray) -> Moments:
        """Moments of ``values`` where ``valid`` is true.

        Parameters
        ----------
        values : ndarray of shape (n_bands, rows, cols)
        valid : bool ndarray of the same shape
        """
        n_bands = values.shape[0]
        flat = values.reshape(n_bands, -1)
        mask = valid.reshape(n_bands, -1)
        moments = np.array([_band_moments(flat[band], mask[band]) for band in range(n_bands)])
        return cls(*moments.T)

    @classmethod
    def from_blocks(
        cls,
        values: np.ndarray,
        valid: np.ndarray,
        row_starts: np.ndarray,
        col_starts: np.ndarray,
        count: np.ndarray | None = None,
    ) -> Moments:
        """Moments of each rectangular block of a window (no extremes).

        Parameters
        ----------
        values : ndarray of shape (n_bands, rows, cols)
        valid : bool ndarray of the same shape
        row_starts, col_starts : int ndarray
            First row (column) of each block in the window, increasing, starting at 0.
        count : ndarray, optional
            The valid pixels per band and block, where already known (the ``count`` of
            these moments for the same ``valid`` and blocks).

        Returns
        -------
        Moments with arrays of shape (n_bands, len(row_starts) * len(col_starts)),
        blocks in row-major order.
        """
        everywhere = bool(valid.all())
        pivot = _rough_mean(values, valid).reshape(values.shape[0], 1)
        if _sums_exact(values, row_starts, col_starts):
            # whole numbers, summed exactly as integers; the pivot is taken out after
            count, total, squares = _exact_block_sums(
                values, valid, everywhere, row_starts, col_starts, count
            )
            pivot = np.round(pivot)
            # sums about the pivot, still whole numbers below 2**53: exact
            squares = squares - 2 * pivot * total + count * pivot * pivot
            total = total - count * pivot
        else:  # shifted by the pivot, so that a large pedestal does not swamp the spread
            if count is None:
                count = _block_counts(
                    values, valid, everywhere, row_starts, col_starts, exact=False
                )
            summed = values - _per_band(pivot.ravel(), values)
            if not everywhere:
                np.copyto(summed, 0.0, where=~valid)
            total = _block_sums(summed, row_starts, col_starts)
            squares = _block_sums(np.square(summed, out=summed), row_starts, col_starts)
        shift = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
        return cls(count, pivot + shift, np.maximum(squares - shift * total, 0.0))

    def merge(self, other: Moments) -> Moments:
        """Moments of the union of both pixel sets (exact, order-independent). Merged
        with no pixels, moments keep their every bit (so that cells put together in
        parts or at once, from a pass or from the cache, agree exactly)."""
        count = self.count + other.count
        safe = np.where(count > 0, count, 1.0)
        delta = other.mean - self.mean
        only_other = (self.count == 0) & (other.count > 0)
        mean = np.where(only_other, other.mean, self.mean + delta * other.count / safe)
        m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / safe
        if (
            self.minimum is None
            or other.minimum is None
            or self.maximum is None
            or other.maximum is None
        ):
            return Moments(count, mean, m2)
        return Moments(
            count,
            mean,
            m2,
            np.minimum(self.minimum, other.minimum),
            np.maximum(self.maximum, other.maximum),
        )

    def total(self) -> Moments:
        """Merge along the last axis (e.g. all blocks of an image into whole-image moments)."""
        count = self.count.sum(axis=-1)
        safe = np.where(count > 0, count, 1.0)
        mean = (self.count * self.mean).sum(axis=-1) / safe
        spread = self.count * (self.mean - mean[..., None]) ** 2
        return Moments(count, mean, self.m2.sum(axis=-1) + spread.sum(axis=-1))

    def grouped(self, index: np.ndarray, size: int) -> Moments:
        """Merge along the last axis into ``size`` groups: entry ``k`` goes to group
        ``index[k]`` (e.g. cells into the blocks holding them); no extremes."""
        count = _group_sums(self.count, index, size)
        safe = np.where(count > 0, count, 1.0)
        mean = _group_sums(self.count * self.mean, index, size) / safe
        spread = self.count * (self.mean - mean[..., index]) ** 2
        return Moments(count, mean, _group_sums(self.m2 + spread, index, size))

    def without(self, left_out: np.ndarray) -> Moments:
        """These moments with the entries of the last axis where ``left_out`` is true
        emptied (counted as no pixels); no extremes."""
        kept = ~np.asarray(left_out, dtype=bool)
        return Moments(self.count * kept, self.mean, self.m2 * kept)

    def affine(self, gain: np.ndarray, offset: np.ndarray) -> Moments:
        """Moments of ``gain * x + offset`` (gain and offset per band), derived exactly."""
        gain, offset = _per_band(gain, self.mean), _per_band(offset, self.mean)
        mean, m2 = gain * self.mean + offset, gain * gain * self.m2
        if self.minimum is None:
            return Moments(self.count, mean, m2)
        low, high = gain * self.minimum + offset, gain * self.maximum + offset
        return Moments(self.count, mean, m2, np.minimum(low, high), np.maximum(low, high))

    @property
    def variance(self) -> np.ndarray:
        """Population variance (0 where there are no pixels)."""
        return np.divide(self.m2, self.count, out=np.zeros_like(self.m2), where=self.count > 0)

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation."""
        return np.sqrt(self.variance)

    def merge_at(self, index: np.ndarray | slice, other: Moments) -> None:
        """Merge ``other`` into positions ``index`` of the last axis, in place."""
        merged = Moments(*(None if a is None else a[..., index] for a in self._arrays()))
        merged = merged.merge(other)
        for array, value in zip(self._arrays(), merged._arrays(), strict=True):
            if array is not None:
                array[..., index] = value

    def _arrays(self) -> tuple[np.ndarray | None, ...]:
        return self.count, self.mean, self.m2, self.minimum, self.maximum


#: Along the contiguous last axis, segments narrower than this are summed as strided
#: slices added one by one: numpy's reduceat spends more on each segment than on its
#: few terms.
NARROW_SEGMENT = 6

#: Along another axis, each run of segments of one width is summed apart (cells cut by
#: block edges make a few short segments between long runs of full ones), unless there
#: are more runs than this; beyond, reduceat's single call costs less.
MAX_RUNS = 32


def _segment_sums(array: np.ndarray, starts: np.ndarray, axis: int, dtype=None) -> np.ndarray:
    """Sums of ``array`` over the consecutive segments of ``axis`` beginning at ``starts``
    (increasing, the first 0), like ``np.add.reduceat``.

    Along an axis other than the last, each run of segments of one width is one sum over
    an axis of that width (whole rows added together, several times faster than
    reduceat), for up to :data:`MAX_RUNS` runs. Along the last axis, segments of one
    width (but the first and the last, which may be shorter) narrower than
    :data:`NARROW_SEGMENT` are summed as that many strided slices.
    """
    axis = axis % array.ndim
    widths = np.diff(starts, append=array.shape[axis])
    if axis < array.ndim - 1:
        bounds = np.r_[0, np.flatnonzero(np.diff(widths)) + 1, len(widths)]
        if len(bounds) - 1 > MAX_RUNS:
            return np.add.reduceat(array, starts, axis=axis, dtype=dtype)
        runs = [
            _run_sums(array, int(starts[first]), int(last - first), int(widths[first]), axis, dtype)
            for first, last in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        return np.concatenate(runs, axis=axis) if len(runs) > 1 else runs[0]
    width = int(widths.max(initial=0))
    full = np.flatnonzero(widths == width)
    # the full-width segments must run on together, only the first and last cut short
    uneven = len(full) < 2 or full[-1] - full[0] + 1 != len(full)
    uneven = uneven or full[0] > 1 or full[-1] < len(widths) - 2
    if width >= NARROW_SEGMENT or uneven:
        return np.add.reduceat(array, starts, axis=axis, dtype=dtype)
    begin, end = int(starts[full[0]]), int(starts[full[0]]) + len(full) * width
    core = array[..., begin:end:width].astype(dtype or array.dtype)
    for offset in range(1, width):
        core += array[..., begin + offset : end : width]
    pieces = [core]
    if begin > 0:
        pieces.insert(0, array[..., :begin].sum(axis=-1, keepdims=True, dtype=core.dtype))
    if end < array.shape[-1]:
        pieces.append(array[..., end:].sum(axis=-1, keepdims=True, dtype=core.dtype))
    return np.concatenate(pieces, axis=-1) if len(pieces) > 1 else core


def _run_sums(
    array: np.ndarray, begin: int, count: int, width: int, axis: int, dtype=None
) -> np.ndarray:
    """Sums of ``count`` segments of ``width`` along ``axis`` (not the last), the first
    at ``begin``."""
    index = [slice(None)] * array.ndim
    index[axis] = slice(begin, begin + count * width)
    run = array[tuple(index)]
    shape = (*run.shape[:axis], count, width, *run.shape[axis + 1 :])
    return run.reshape(shape).sum(axis=axis + 1, dtype=dtype or array.dtype)


def _group_sums(values: np.ndarray, index: np.ndarray, size: int) -> np.ndarray:
    """Sums of ``values`` along the last axis by group ``index`` (``size`` groups)."""
    rows = values.reshape(-1, values.shape[-1])
    sums = [np.bincount(index, weights=row, minlength=size) for row in rows]
    return np.array(sums).reshape(values.shape[:-1] + (size,))
