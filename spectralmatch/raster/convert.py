"""Converting results (floats) to an output dtype without losing a valid pixel, and
counting what had to be clipped to its range.

To 8- and 16-bit integer outputs, a compiled pass (``_conversion.c``, built where a C
compiler is found at install) does the conversion of a window in one go, with a
per-band gain and offset before it (:class:`BandAffine`); numpy's code here gives the
same bits where it is not built.
"""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np
from attrs import frozen

compiled_conversion: ModuleType | None
try:
    from . import _conversion as compiled_conversion
except ImportError:  # built without a C compiler: numpy's passes below
    compiled_conversion = None

#: The dtypes the compiled conversion reads (the pixels as read, or float32 results) and
#: writes, in this machine's byte order.
_COMPILED_SOURCES = frozenset(np.dtype(d) for d in ("uint8", "int8", "uint16", "int16", "float32"))
_COMPILED_TARGETS = frozenset(np.dtype(d) for d in ("uint8", "int8", "uint16", "int16"))


@frozen
class BandAffine:
    """``gains * values + offsets``, band by band: a step's correction of an image where
    it is one, which the conversion to the output dtype applies in its own pass.

    Attributes
    ----------
    gains, offsets : ndarray of shape (bands,)
    """

    gains: np.ndarray
    offsets: np.ndarray

    def apply(self, values: np.ndarray) -> np.ndarray:
        """``values`` (bands, rows, cols; float) corrected in place, in their own dtype."""
        values *= self.gains.astype(values.dtype)[:, None, None]
        values += self.offsets.astype(values.dtype)[:, None, None]
        return values


def converts_compiled(source: np.dtype | str, dtype: np.dtype | str, nodata: float | None) -> bool:
    """Whether :func:`to_dtype_counting` converts values of ``source`` to ``dtype`` in its
    compiled pass; it then takes the pixels as read (integers), computing in float32."""
    target = np.dtype(dtype)
    if compiled_conversion is None or target not in _COMPILED_TARGETS:
        return False
    if np.dtype(source) not in _COMPILED_SOURCES:
        return False
    info = np.iinfo(target)
    return nodata is None or (
        math.isfinite(nodata) and float(nodata).is_integer() and info.min <= nodata <= info.max
    )


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
    values: np.ndarray,
    valid: np.ndarray,
    dtype: str,
    nodata: float | None,
    affine: BandAffine | None = None,
) -> tuple[np.ndarray, int]:
    """:func:`to_dtype` and :func:`count_clipped` of the same ``values`` (counted before
    they are converted), with their range measured once for both; with ``affine``, of
    ``affine.apply(values)``.

    ``values`` are floats, or the integers :func:`converts_compiled` says the compiled
    pass takes as they are (float32 arithmetic, as on ``values`` cast to float32).
    """
    target = np.dtype(dtype)
    if _laid_out_for_compiled(values, valid) and converts_compiled(values.dtype, target, nodata):
        return _compiled(values, valid, target, nodata, affine)
    if values.dtype.kind != "f":
        raise TypeError(f"to_dtype_counting converts floats, not {values.dtype} to {target}")
    if affine is not None:
        affine.apply(values)
    invalid = _set_aside(values, valid, target, nodata)
    extremes = _extremes(values)
    clipped = _clipped(values, valid, target, extremes)
    return _converted(values, valid, invalid, target, nodata, extremes), clipped


def _laid_out_for_compiled(values: np.ndarray, valid: np.ndarray) -> bool:
    """Whether the compiled pass reads these arrays as they are: (bands, rows, cols)
    values and booleans of that shape, each contiguous along a row (numpy's passes take
    any other layout, a broadcast validity, say)."""
    return (
        values.ndim == 3
        and valid.dtype == np.bool_
        and valid.shape == values.shape
        and values.strides[2] == values.itemsize
        and valid.strides[2] == 1
    )


def _compiled(
    values: np.ndarray,
    valid: np.ndarray,
    target: np.dtype,
    nodata: float | None,
    affine: BandAffine | None,
) -> tuple[np.ndarray, int]:
    """:func:`to_dtype_counting` in the compiled pass, which does what numpy's passes do
    to each value (the limits and the nodata value a valid value must not become are
    the same)."""
    assert compiled_conversion is not None
    low, high = _limits(target, nodata)
    info = np.iinfo(target)
    clash = nodata if nodata is not None and low < nodata < high else None
    gains = offsets = None
    if affine is not None:
        gains = np.ascontiguousarray(affine.gains, dtype=np.float32)
        offsets = np.ascontiguousarray(affine.offsets, dtype=np.float32)
    result = np.empty(values.shape, dtype=target)
    clipped = compiled_conversion.convert(
        values,
        valid,
        gains,
        offsets,
        result,
        info.min - 0.5,
        info.max + 0.5,
        low,
        high,
        clash,
        0 if nodata is None else nodata,
    )
    return result, clipped


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
