"""Completion records: proof that an output is whole and what made it.

After an output is renamed onto its final name, a record is written to a records
folder (in the statistics cache folder, so output folders hold only outputs), named by
a hash of the output's absolute path: the digest of what produced the output (the
model, the input, the settings), its size and a SHA-256 of its bytes. A resumed run
reuses an output only if its record says the same digest and the file still has that
size and checksum; anything else is written again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .files import write_atomically

_CHUNK = 1 << 20


def record_path(records: Path, output: Path) -> Path:
    """Where the completion record of ``output`` is kept in the folder ``records``."""
    key = hashlib.sha256(os.fsencode(output.resolve())).hexdigest()
    return records / f"{key}.json"


def file_checksum(path: Path) -> str:
    """SHA-256 of the bytes of ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_record(records: Path, output: Path, digest: str) -> None:
    """Record that ``output`` is complete and was made by ``digest`` (best effort: a
    records folder that cannot be written only means a resumed run writes it again)."""
    record = {
        "output": str(output.resolve()),
        "digest": digest,
        "size": output.stat().st_size,
        "sha256": file_checksum(output),
    }
    try:
        records.mkdir(parents=True, exist_ok=True)
        write_atomically(record_path(records, output), json.dumps(record).encode())
    except (OSError, ValueError):
        pass


def forget_record(records: Path, output: Path) -> None:
    """Remove the record of ``output`` (before it is written again)."""
    try:
        record_path(records, output).unlink(missing_ok=True)
    except OSError:
        pass


def is_complete(records: Path, output: Path, digest: str) -> bool:
    """True if ``output`` is complete and was made by ``digest`` (its record says so and
    its size and checksum still match)."""
    try:
        record = json.loads(record_path(records, output).read_text())
        if not isinstance(record, dict) or record.get("digest") != digest:
            return False
        if record.get("output") != str(output.resolve()):
            return False
        if output.stat().st_size != record.get("size"):
            return False
        return file_checksum(output) == record.get("sha256")
    except (OSError, ValueError):
        return False


def opens_as_raster(path: Path) -> bool:
    """True if ``path`` opens as a raster with pixels, and the first and last windows of
    every band (and their masks) can be read: a truncated or garbled file fails here."""
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    try:
        with rasterio.open(path) as dataset:
            if min(dataset.count, dataset.width, dataset.height) < 1:
                return False
            width, height = min(dataset.width, 256), min(dataset.height, 256)
            for window in (
                Window(0, 0, width, height),
                Window(dataset.width - width, dataset.height - height, width, height),
            ):
                dataset.read(window=window)
                dataset.read_masks(window=window)
    except (RasterioError, OSError):
        return False
    return True


def reusable_output(path: Path, mode: str) -> bool:
    """Whether a resumed run keeps the output at ``path`` instead of writing it again:
    never with ``mode`` ``"no"``; if it exists with ``"yes"``; if it exists and opens as
    a whole raster (:func:`opens_as_raster`) with ``"validate"``."""
    if mode == "no" or not path.is_file():
        return False
    return mode == "yes" or opens_as_raster(path)
