"""A cache of image statistics, so re-runs read only what changed.

Each entry is a small file in the cache folder, named by a hash of its key: what
the statistics depend on. For each file read, that is its resolved path, size, inode,
device and modification and change times in nanoseconds (of both images, for an
overlap); then the overlap's bounds and what was measured (block grids, histogram bins).
A changed file therefore never matches its old entries, even when its modification time
was set back (``os.utime``): the change time cannot be set back.

An entry holds its key, its arrays and a SHA-256 checksum of all of them, in one
buffer: the length of a JSON header (8 bytes, little-endian), the header (the key, each
array's name, dtype and shape, the checksum), then the arrays' bytes. An entry that
cannot be read, has no checksum or a wrong one (truncated, emptied, altered, not ours),
or was stored under another key (copied or renamed) is ignored with a warning, deleted
and measured again. Images with a mask, and statistics of corrected values (a second
pass), are not cached. Entries are written to a temporary file (``.spectralmatch-tmp-*``)
created with the permissions the umask gives, then renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from attrs import asdict, frozen

from ..errors import SpectralMatchError, SpectralMatchWarning
from ..geo.overlap import OverlapEdge
from ..raster.files import atomic_path
from ..raster.image import Image
from ..stats.histogram import Histogram
from ..stats.moments import Moments
from ..stats.requests import Plan

_MOMENT_FIELDS = ("count", "mean", "m2", "minimum", "maximum")

#: Entries of another layout never share a key (nor a file name) with these.
_FORMAT = "spectralmatch-statistics-4"
#: The suffix of an entry's file.
SUFFIX = ".stats"
#: What an entry holds: named moments and histograms.
Entry = dict[str, Moments | Histogram]


def default_cache_folder() -> Path:
    """``$SPECTRALMATCH_CACHE``, else ``$XDG_CACHE_HOME/spectralmatch`` (``~/.cache``)."""
    if os.environ.get("SPECTRALMATCH_CACHE"):
        return Path(os.environ["SPECTRALMATCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "spectralmatch"


@frozen
class CacheKey:
    """What an entry's statistics depend on, as JSON text."""

    text: str

    @classmethod
    def of(cls, parts: list[Any]) -> CacheKey:
        return cls(json.dumps([_FORMAT, *parts]))

    @property
    def file_name(self) -> str:
        """The entry's file name in the cache folder."""
        return hashlib.sha256(self.text.encode()).hexdigest() + SUFFIX


class StatisticsCache:
    """Statistics of images and overlaps kept in ``folder`` between runs.

    The state of each file (path, size, times) is taken once per instance, when first
    needed: a fit makes one, so that its entries are loaded and stored under the same
    keys.
    """

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_cache_folder()
        self._file_keys: dict[Path, list[Any]] = {}

    def __repr__(self) -> str:
        return f"StatisticsCache({str(self.folder)!r})"

    # ---------------------------------------------------------------- keys

    def _file_key(self, image: Image) -> list[Any]:
        if image.path not in self._file_keys:
            status = image.path.stat()
            self._file_keys[image.path] = [
                str(image.path.resolve()),
                status.st_size,
                status.st_mtime_ns,
                status.st_ctime_ns,
                status.st_ino,
                status.st_dev,
            ]
        return self._file_keys[image.path]

    def whole_key(self, image: Image, plan: Plan) -> CacheKey | None:
        """Key of an image's whole-image statistics (None: not cacheable)."""
        if image.mask is not None:
            return None
        return CacheKey.of(["whole", self._file_key(image), plan.image_bins])

    def pair_key(
        self, image: Image, partner: Image, edge: OverlapEdge, plan: Plan
    ) -> CacheKey | None:
        """Key of ``image``'s side of an overlap with ``partner`` (None: not cacheable)."""
        if image.mask is not None or partner.mask is not None:
            return None
        return CacheKey.of(
            [
                "pair",
                self._file_key(image),
                self._file_key(partner),
                list(edge.bounds),
                [asdict(grid) for grid in plan.grids],
                plan.overlap_bins,
                plan.cell_side,
            ]
        )

    # ---------------------------------------------------------------- entries

    def load(self, key: CacheKey | None) -> Entry | None:
        """The statistics stored under ``key``, or None.

        A bad entry (unreadable, without or with a wrong checksum, or stored under another
        key) is deleted with a :class:`~spectralmatch.errors.SpectralMatchWarning`, and
        None is returned so that the statistics are measured again.
        """
        if key is None:
            return None
        path = self.folder / key.file_name
        try:
            return _entry(_read(path, key))
        except FileNotFoundError:
            return None
        except _BadEntry as bad:
            message = f"{path}: statistics cache entry {bad}; ignored and rebuilt"
            warnings.warn(message, SpectralMatchWarning, stacklevel=2)
            with contextlib.suppress(OSError):
                path.unlink()
            return None

    def store(self, key: CacheKey | None, entry: Entry) -> None:
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
            with atomic_path(self.folder / key.file_name, suffix=SUFFIX) as temporary:
                temporary.write_bytes(encode_entry(key.text, arrays))
        except (OSError, SpectralMatchError):
            pass


def encode_entry(key: str, arrays: dict[str, np.ndarray], checksum: str | None = None) -> bytes:
    """An entry's bytes: its header (``key``, each array's name, dtype and shape, and
    the checksum of it all, unless ``checksum`` is given) and the arrays' bytes."""
    arrays = {name: np.ascontiguousarray(array) for name, array in arrays.items()}
    specs = [[name, array.dtype.str, list(array.shape)] for name, array in arrays.items()]
    data = b"".join(array.tobytes() for array in arrays.values())
    header = {"key": key, "arrays": specs, "checksum": checksum or _checksum(key, specs, data)}
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


def decode_entry(content: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and the arrays of an entry's bytes (nothing checked but its layout).

    Raises
    ------
    ValueError
        If ``content`` is not laid out as an entry (cut short, say).
    """
    length = int.from_bytes(content[:8], "little")
    if len(content) < 8 + length:
        raise ValueError("shorter than its header says")
    header = json.loads(content[8 : 8 + length])
    arrays, offset = {}, 8 + length
    for name, dtype, shape in header["arrays"]:
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if offset + size > len(content):
            raise ValueError(f"array {name!r} cut short")
        buffer = content[offset : offset + size]
        arrays[name] = np.frombuffer(buffer, dtype=dtype).reshape(shape).copy()
        offset += size
    if offset != len(content):
        raise ValueError(f"{len(content) - offset} bytes beyond its arrays")
    return header, arrays


def _checksum(key: str, specs: list[Any], data: bytes) -> str:
    """SHA-256 of an entry's key, arrays' names, dtypes and shapes, and their bytes."""
    digest = hashlib.sha256(json.dumps([key, specs]).encode())
    digest.update(data)
    return digest.hexdigest()


class _BadEntry(Exception):
    """A cache entry that must not be used; the message says why."""


def _read(path: Path, key: CacheKey) -> dict[str, np.ndarray]:
    """The arrays of the entry at ``path``, checked against its checksum and ``key``.

    Raises
    ------
    FileNotFoundError
        If there is no such entry.
    _BadEntry
        If the entry cannot be read, has no checksum or a wrong one, or was stored under
        another key.
    """
    # Arbitrary bytes raise many kinds of errors on the way (UnicodeDecodeError,
    # JSONDecodeError, KeyError, TypeError, ValueError, ...): all mean a bad entry.
    try:
        content = path.read_bytes()
        header, arrays = decode_entry(content)
        checksum, specs, stored_key = header.get("checksum"), header["arrays"], header["key"]
    except FileNotFoundError:
        raise
    except Exception as error:
        raise _BadEntry(f"cannot be read ({type(error).__name__}: {error})") from error
    if not checksum:
        raise _BadEntry("has no checksum (not a statistics entry)")
    data = content[8 + int.from_bytes(content[:8], "little") :]
    if checksum != _checksum(stored_key, specs, data):
        raise _BadEntry("does not match its checksum (truncated or altered)")
    if stored_key != key.text:
        raise _BadEntry("was stored under another key (copied or renamed from another entry)")
    return arrays


def _entry(arrays: dict[str, np.ndarray]) -> Entry:
    groups: dict[str, dict[str, np.ndarray]] = {}
    for name, array in arrays.items():
        entry, _, field = name.rpartition(".")
        groups.setdefault(entry, {})[field] = array
    return {name: _from_arrays(fields) for name, fields in groups.items()}


def _to_arrays(value: Moments | Histogram) -> dict[str, np.ndarray]:
    if isinstance(value, Histogram):
        return value.to_arrays()
    return {f: getattr(value, f) for f in _MOMENT_FIELDS if getattr(value, f) is not None}


def _from_arrays(fields: dict[str, np.ndarray]) -> Moments | Histogram:
    if "count" in fields:
        return Moments(*(fields.get(f) for f in _MOMENT_FIELDS))
    return Histogram.from_arrays(fields)
