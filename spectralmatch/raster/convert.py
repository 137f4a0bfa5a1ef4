"""Converting results (floats) to an output dtype without losing a valid pixel, and
counting what had to be clipped to its range."""

from __future__ import annotations

import math

import numpy as np


def to_dtype(values: np.ndarray, valid: np.ndarray, dtype: str, nodata: float | None) -> np.ndarray:
    """Convert float results to ``dtype`` without losing a valid pixel (``values`` is reused).

    Integers are rounded and clipped to the dtype's range; floats are clipped to its
    finite range. A valid pixel never becomes NaN, inf or the nodata value (it is moved
    to the nearest representable neighbour); invalid pixels become nodata (0 without one).
    """
    target = np.dtype(dtype)
    invalid = _set_aside(values, valid, target, nodata)
    return _converted(values, valid, invalid, target, nodata, _extremes(values))


def count_clipped(values: np.ndarray, valid: np.ndarray, dtype: str) -> int:
    """How many valid ``values`` lie outside the range ``dtype`` can hold (after rounding,
    for integers); NaN and infinities count as clipped."""
    return _clipped(values, valid, np.dtype(dtype), _extremes(values))


def to_dtype_counting(
    values: np.ndarray, valid: np.ndarray, dtype: str, nodata: float | None
) -> tuple[np.ndarray, int]:
    """:func:`to_dtype` and :func:`count_clipped` of the same ``values`` (counted before
    they are converted), with their range measured once for both."""
    target = np.dtype(dtype)
    invalid = _set_aside(values, valid, target, nodata)
    extremes = _extremes(values)
    clipped = _clipped(values, valid, target, extremes)
    return _converted(values, valid, invalid, target, nodata, extremes), clipped


def _extremes(values: np.ndarray) -> tuple[float, float]:
    """Smallest and largest value (NaN if one is NaN; +inf, -inf when empty)."""
    if values.size == 0:
        return math.inf, -math.inf
    return float(values.min()), float(values.max())


def _within(extremes: tuple[float, float], low: float, high: float) -> bool:
    """Whether values of these ``extremes`` all lie in [low, high] (False with a NaN)."""
    return low <= extremes[0] and extremes[1] <= high


def _limits(target: np.dtype, nodata: float | None) -> tuple[float, float]:
    """The range a valid value is clipped to: the dtype's (finite) range, less a nodata
    value at either end of an integer range."""
    info = np.iinfo(target) if target.kind in "iu" else np.finfo(target)
    low, high = float(info.min), float(info.max)
    if target.kind in "iu" and nodata is not None:
        low += nodata == low
        high -= nodata == high
    return low, high


def _set_aside(
    values: np.ndarray, valid: np.ndarray, target: np.dtype, nodata: float | None
) -> np.ndarray | None:
    """Where ``values`` are invalid (None where all are valid), after filling them with a
    value the conversion keeps as it is: whatever the correction made of them (NaN,
    values out of range), they neither widen the range measured nor cost a clip."""
    if valid.all():
        return None
    invalid = ~valid
    low, high = _limits(target, nodata)
    filler = min(max(0.0, low), high)
    if filler == nodata:  # a nodata of 0 inside the range: the next value up or down
        filler = filler + 1 if filler + 1 <= high else filler - 1
    np.copyto(values, filler, where=invalid)
    return invalid


def _converted(
    values: np.ndarray,
    valid: np.ndarray,
    invalid: np.ndarray | None,
    target: np.dtype,
    nodata: float | None,
    extremes: tuple[float, float],
) -> np.ndarray:
    """:func:`to_dtype`, given where ``values`` are ``invalid`` and their ``extremes``."""
    info = np.iinfo(target) if target.kind in "iu" else np.finfo(target)
    exact_nodata = nodata is not None and not math.isnan(nodata)
    # the nodata value at an end of the range is avoided by the clip itself
    low, high = _limits(target, nodata if exact_nodata else None)
    # the common case, every value finite and in range, needs no clip
    inside = _within(extremes, low, high)
    if not inside and not np.isfinite(values).all():
        np.nan_to_num(values, copy=False, nan=0.0, posinf=info.max, neginf=info.min)
    if target.kind in "iu":
        np.rint(values, out=values)
    if not inside:
        np.clip(values, low, high, out=values)
    if (
        exact_nodata
        and nodata is not None
        and low < nodata < high
        and _may_become(extremes, nodata)
    ):
        clash = valid & (values.astype(target) == target.type(nodata))
        # the next value up: nodata + 1 for integers (nextafter would round back to it)
        up = nodata + 1 if target.kind in "iu" else np.nextafter(target.type(nodata), high)
        values[clash] = up
    result = values.astype(target)
    if invalid is not None:
        np.copyto(result, target.type(0 if nodata is None else nodata), where=invalid)
    return result


def _may_become(extremes: tuple[float, float], value: float) -> bool:
    """Whether values of these ``extremes``, once rounded or cast, may equal ``value``
    (always with a NaN, which may become 0)."""
    margin = max(1.0, abs(value) * 1e-6)
    return not (extremes[0] > value + margin or extremes[1] < value - margin)


def _clipped(
    values: np.ndarray, valid: np.ndarray, target: np.dtype, extremes: tuple[float, float]
) -> int:
    """:func:`count_clipped`, given the ``extremes`` of ``values``."""
    if target.kind == "f":
        info = np.finfo(target)
        low, high = float(info.min), float(info.max)
    else:
        integer = np.iinfo(target)
        low, high = integer.min - 0.5, integer.max + 0.5
    if _within(extremes, low, high):
        return 0
    inside = (values >= low) & (values <= high)
    return int(np.count_nonzero(valid & ~inside))
