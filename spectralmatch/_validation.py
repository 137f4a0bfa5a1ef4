"""Rules a parameter value must follow, and the check that names what went wrong."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Hashable, Sequence
from typing import Any

from attrs import frozen

from .errors import SpectralMatchError


def check(owner: str, name: str, value: Any, constraint: Constraint) -> None:
    """Raise :class:`SpectralMatchError` unless ``value`` follows ``constraint``.

    Examples
    --------
    >>> check("merge_rasters", "feather", -3, NON_NEGATIVE)
    Traceback (most recent call last):
    ...
    spectralmatch.errors.SpectralMatchError: merge_rasters: feather must be a number >= 0, got -3
    """
    if not constraint.accepts(value):
        raise SpectralMatchError(f"{owner}: {name} must be {constraint.describe()}, got {value!r}")


class Constraint:
    """One rule a parameter value must follow."""

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@frozen
class Interval(Constraint):
    """A real (or, with ``integer``, an integral) number within bounds."""

    low: float | None = None
    high: float | None = None
    closed: str = "both"  # which ends belong to the interval: both, left, right, neither
    integer: bool = False

    def accepts(self, value: Any) -> bool:
        kind = numbers.Integral if self.integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind):
            return False
        try:
            value = float(value)
        except OverflowError:  # an integer beyond the range of floats
            return False
        if math.isnan(value):
            return False
        if self.low is not None:
            if value < self.low or (value == self.low and self.closed in ("right", "neither")):
                return False
        if self.high is not None:
            if value > self.high or (value == self.high and self.closed in ("left", "neither")):
                return False
        return True

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        parts = []
        if self.low is not None:
            parts.append(f"{'>=' if self.closed in ('both', 'left') else '>'} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<=' if self.closed in ('both', 'right') else '<'} {self.high:g}")
        return f"{kind} {' and '.join(parts)}".rstrip()


@frozen
class Options(Constraint):
    """One of a few values (``None`` among them where it is allowed)."""

    values: tuple[Any, ...]

    def accepts(self, value: Any) -> bool:
        if not isinstance(value, Hashable):  # e.g. an array, which compares element-wise
            return False
        return any(
            value is option or (option is not None and value == option) for option in self.values
        )

    def describe(self) -> str:
        return "one of " + ", ".join(repr(option) for option in self.values)


@frozen
class InstanceOf(Constraint):
    """An instance of one of ``types``, described in words."""

    types: tuple[type, ...]
    description: str

    def accepts(self, value: Any) -> bool:
        if bool not in self.types and isinstance(value, bool):
            return False
        return isinstance(value, self.types)

    def describe(self) -> str:
        return self.description


@frozen
class AnyOf(Constraint):
    """Any of ``constraints``."""

    constraints: tuple[Constraint, ...]

    def accepts(self, value: Any) -> bool:
        return any(constraint.accepts(value) for constraint in self.constraints)

    def describe(self) -> str:
        return " or ".join(constraint.describe() for constraint in self.constraints)


@frozen
class References(Constraint):
    """Reference images: None, a name or position, or a list of them."""

    def accepts(self, value: Any) -> bool:
        if value is None or _is_key(value):
            return True
        return isinstance(value, Sequence) and all(_is_key(item) for item in value)

    def describe(self) -> str:
        return "None, an image name or position, or a list of them"


@frozen
class Extent(Constraint):
    """Bounds ``(left, bottom, right, top)``: four finite numbers, left < right and
    bottom < top."""

    def accepts(self, value: Any) -> bool:
        if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 4:
            return False
        if not all(FINITE.accepts(item) for item in value):
            return False
        left, bottom, right, top = value
        return left < right and bottom < top

    def describe(self) -> str:
        return "(left, bottom, right, top) with left < right and bottom < top"


def _is_key(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


BOOLEAN = InstanceOf((bool,), "True or False")
NONE = Options((None,))
PATH = InstanceOf((str, os.PathLike), "a path")
POSITIVE = Interval(0, None, "neither")
NON_NEGATIVE = Interval(0, None)
POSITIVE_INTEGER = Interval(1, None, integer=True)
FINITE = Interval(-math.inf, math.inf, "neither")


#: GDAL's data type names, as the published package takes them, by numpy's names.
GDAL_DTYPE_NAMES = {
    "byte": "uint8",
    "int8": "int8",
    "uint16": "uint16",
    "int16": "int16",
    "uint32": "uint32",
    "int32": "int32",
    "float32": "float32",
    "float64": "float64",
}


def dtype_name(owner: str, keyword: str, value: Any) -> str | None:
    """``value`` (None, a numpy or a GDAL data type name such as ``"Float32"``) as the
    numpy name of an output data type, or a clear error naming ``keyword``."""
    if value is None:
        return None
    name = GDAL_DTYPE_NAMES.get(value.lower()) if isinstance(value, str) else None
    if name is None and value in GDAL_DTYPE_NAMES.values():
        name = value
    if name is None:
        raise SpectralMatchError(
            f"{owner}: {keyword} must be one of {', '.join(GDAL_DTYPE_NAMES.values())} "
            f"(or GDAL's names: Byte, UInt16, Float32, ...), got {value!r}"
        )
    return name
