"""A cache of image statistics, so re-runs read only what changed.

Each entry is a small ``.npz`` file in the cache folder, named by a hash of what it
depends on: the file's resolved path, size and modification time (of both images, for
an overlap), the overlap's bounds and the block grids. A changed file therefore never
matches its old entries. Images with a mask, and statistics of corrected values (a
second pass), are not cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from attrs import asdict

from ..geo.overlap import OverlapEdge
from ..raster.image import Image
from ..stats.moments import Moments

_FIELDS = ("count", "mean", "m2", "minimum", "maximum")


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

    # ---------------------------------------------------------------- keys

    @staticmethod
    def _file_key(image: Image) -> list:
        status = image.path.stat()
        return [str(image.path.resolve()), status.st_size, status.st_mtime_ns]

    def whole_key(self, image: Image) -> str | None:
        """Key of an image's whole-image moments (None: not cacheable)."""
        if image.mask is not None:
            return None
        return _digest(["whole", self._file_key(image)])

    def pair_key(self, image: Image, partner: Image, edge: OverlapEdge, grids) -> str | None:
        """Key of ``image``'s side of an overlap with ``partner`` (None: not cacheable)."""
        if image.mask is not None or partner.mask is not None:
            return None
        return _digest(
            [
                "pair",
                self._file_key(image),
                self._file_key(partner),
                list(edge.bounds),
                [asdict(grid) for grid in grids],
            ]
        )

    # ---------------------------------------------------------------- entries

    def load(self, key: str | None) -> dict[str, Moments] | None:
        """The moments stored under ``key``, or None."""
        if key is None:
            return None
        try:
            with np.load(self.folder / f"{key}.npz") as stored:
                arrays = dict(stored)
        except (OSError, ValueError):
            return None
        names = {name.rsplit(".", 1)[0] for name in arrays}
        return {name: Moments(*(arrays.get(f"{name}.{f}") for f in _FIELDS)) for name in names}

    def store(self, key: str | None, moments: dict[str, Moments]) -> None:
        """Keep ``moments`` under ``key`` (written atomically; a failure is harmless)."""
        if key is None:
            return
        arrays = {
            f"{name}.{f}": getattr(m, f)
            for name, m in moments.items()
            for f in _FIELDS
            if getattr(m, f) is not None
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


def _digest(parts: list) -> str:
    return hashlib.sha1(json.dumps(parts).encode()).hexdigest()
