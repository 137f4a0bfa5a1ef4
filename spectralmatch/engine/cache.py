"""A cache of image statistics, so re-runs read only what changed.

Each entry is a small ``.npz`` file in the cache folder, named by a hash of what it
depends on: the file's resolved path, size and modification time (of both images, for
an overlap), the overlap's bounds, and what was measured (block grids, histogram bins).
A changed file therefore never matches its old entries. Images with a mask, and
statistics of corrected values (a second pass), are not cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from attrs import asdict

from ..geo.overlap import OverlapEdge
from ..raster.image import Image
from ..stats.histogram import Histogram
from ..stats.moments import Moments
from ..stats.requests import Plan

_MOMENT_FIELDS = ("count", "mean", "m2", "minimum", "maximum")

#: What an entry holds: named moments and histograms.
Entry = dict[str, Moments | Histogram]


def default_cache_folder() -> Path:
    """``$SPECTRALMATCH_CACHE``, else ``$XDG_CACHE_HOME/spectralmatch`` (``~/.cache``)."""
    if os.environ.get("SPECTRALMATCH_CACHE"):
        return Path(os.environ["SPECTRALMATCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "spectralmatch"


class StatisticsCache:
    """Statistics of images and overlaps kept in ``folder`` between runs."""

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_cache_folder()

    def __repr__(self) -> str:
        return f"StatisticsCache({str(self.folder)!r})"

    # ---------------------------------------------------------------- keys

    @staticmethod
    def _file_key(image: Image) -> list[Any]:
        status = image.path.stat()
        return [str(image.path.resolve()), status.st_size, status.st_mtime_ns]

    def whole_key(self, image: Image, plan: Plan) -> str | None:
        """Key of an image's whole-image statistics (None: not cacheable)."""
        if image.mask is not None:
            return None
        return _digest(["whole", self._file_key(image), plan.image_bins])

    def pair_key(self, image: Image, partner: Image, edge: OverlapEdge, plan: Plan) -> str | None:
        """Key of ``image``'s side of an overlap with ``partner`` (None: not cacheable)."""
        if image.mask is not None or partner.mask is not None:
            return None
        return _digest(
            [
                "pair",
                self._file_key(image),
                self._file_key(partner),
                list(edge.bounds),
                [asdict(grid) for grid in plan.grids],
                plan.overlap_bins,
            ]
        )

    # ---------------------------------------------------------------- entries

    def load(self, key: str | None) -> Entry | None:
        """The statistics stored under ``key``, or None."""
        if key is None:
            return None
        try:
            with np.load(self.folder / f"{key}.npz") as stored:
                arrays = dict(stored)
        except (OSError, ValueError, EOFError):
            return None
        groups: dict[str, dict[str, np.ndarray]] = {}
        for name, array in arrays.items():
            entry, _, field = name.rpartition(".")
            groups.setdefault(entry, {})[field] = array
        return {name: _from_arrays(fields) for name, fields in groups.items()}

    def store(self, key: str | None, entry: Entry) -> None:
        """Keep ``entry`` under ``key`` (written atomically; a failure is harmless)."""
        if key is None:
            return
        arrays: dict[str, Any] = {
            f"{name}.{field}": array
            for name, value in entry.items()
            for field, array in _to_arrays(value).items()
        }
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=".", suffix=".npz", dir=self.folder)
        except OSError:
            return
        try:
            with os.fdopen(handle, "wb") as file:
                np.savez(file, **arrays)
            os.replace(temporary, self.folder / f"{key}.npz")
        except OSError:
            Path(temporary).unlink(missing_ok=True)


def _to_arrays(value: Moments | Histogram) -> dict[str, np.ndarray]:
    if isinstance(value, Histogram):
        return value.to_arrays()
    return {f: getattr(value, f) for f in _MOMENT_FIELDS if getattr(value, f) is not None}


def _from_arrays(fields: dict[str, np.ndarray]) -> Moments | Histogram:
    if "count" in fields:
        return Moments(*(fields.get(f) for f in _MOMENT_FIELDS))
    return Histogram.from_arrays(fields)


def _digest(parts: list[Any]) -> str:
    return hashlib.sha1(json.dumps(parts).encode()).hexdigest()
