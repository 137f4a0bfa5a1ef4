"""What a thread working for its caller takes from it: the pass's interrupt flag and the
caller's GDAL options.

``rasterio.Env`` entered in the main thread sets GDAL's options for the whole process,
but entered in any other thread, for that thread only: a thread started from there (a
worker of a pass, the thread that computes a write's next window) would read without
them, e.g. without the credentials of ``/vsis3/`` paths given as ``rasterio.Env``
options.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

import rasterio
import rasterio.env
from attrs import field, frozen

from ._interrupt import current_flag, run_with_flag

T = TypeVar("T")
R = TypeVar("R")


@frozen
class Inherited:
    """The interrupt ``flag`` and the rasterio environment's ``gdal_options`` that a
    thread runs with on behalf of the thread that made this."""

    flag: Any
    gdal_options: dict[str, Any] = field(factory=dict)

    @classmethod
    def from_caller(cls, flag: Any = None) -> Inherited:
        """What the calling thread passes on: ``flag`` (default: its own pass's) and
        the options of the rasterio environment it is in, if any."""
        options = rasterio.env.getenv() if rasterio.env.hasenv() else {}
        return cls(current_flag() if flag is None else flag, options)

    def run(self, function: Callable[[T], R], item: T) -> R:
        """``function(item)`` with the flag and in the environment of the caller."""
        environment = rasterio.Env(**self.gdal_options) if self.gdal_options else None
        with environment or contextlib.nullcontext():
            return run_with_flag(self.flag, function, item)
