"""Writing rasters: output profiles, atomic and COG writes."""

from __future__ import annotations

import errno
import math
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.enums import Interleaving

from .._ahead import ComputedAhead
from .._interrupt import check_interrupted
from ..errors import SpectralMatchError
from .files import atomic_path, gdal_path, temporary_folder
from .image import GDAL_ERRORS, Image, error_cause

TILE_SIZE = 256


def output_profile(
    image: Image, dtype: str | None = None, **creation_options: Any
) -> dict[str, Any]:
    """Profile of a tiled, DEFLATE-compressed GeoTIFF on ``image``'s grid and nodata, in
    ``dtype`` (default: the image's)."""
    dtype = dtype or image.dtype
    is_float = np.dtype(dtype).kind == "f"
    profile = {
        "driver": "GTiff",
        "dtype": dtype,
        "nodata": image.nodata,
        "count": image.count,
        "width": image.width,
        "height": image.height,
        "crs": image.crs,
        "transform": image.transform,
        "tiled": True,
        "blockxsize": TILE_SIZE,
        "blockysize": TILE_SIZE,
        "compress": "deflate",
        "predictor": 3 if is_float else 2,
        "interleave": "pixel",
        "bigtiff": "if_safer",
        # GDAL compresses tiles on every core while the caller computes the next window
        "num_threads": "all_cpus",
    }
    profile.update(creation_options)
    return profile


#: One piece of output: the window, its values and, where the format needs one, a mask.
Piece = tuple  # (Window, ndarray, ndarray | None)


def write_raster(
    path: Path,
    profile: dict[str, Any],
    pieces: Iterable[Piece],
    *,
    descriptions: Sequence[str | None] = (),
    cog: bool = False,
    overviews: Sequence[int] = (),
) -> Path:
    """Write ``pieces`` (window, values, optional dataset mask) to ``path`` atomically.

    The file appears under ``path`` only once complete, with its ``overviews`` (decimation
    factors, see :func:`build_overviews`) built; with ``cog`` it is converted to a Cloud
    Optimized GeoTIFF by GDAL's COG driver on the way (which keeps those overviews).
    """
    path = Path(path)
    try:
        with atomic_path(path) as temporary:
            if not cog:
                _write_pieces(temporary, profile, pieces, descriptions)
                build_overviews(temporary, overviews)
                if not _sparse(profile):
                    check_blocks_written(temporary)
                return path
            with temporary_folder(path.parent) as scratch:
                tiled = scratch / "tiled.tif"
                _write_pieces(tiled, profile, pieces, descriptions)
                build_overviews(tiled, overviews)
                translate_to_cog(tiled, temporary, profile)
                if not _sparse(profile):
                    check_blocks_written(temporary)
    except GDAL_ERRORS as error:
        cause = error_cause(error, path.name)
        if _disk_full(path.parent):
            cause = f"no space left on the device; {cause}"
        raise SpectralMatchError(f"{path}: cannot be written ({cause})") from None
    return path


def check_blocks_written(path: Path) -> None:
    """Raise OSError unless every block of the GeoTIFF at ``path`` lies whole in the file.

    GDAL compresses and writes blocks in its own threads (``NUM_THREADS``) and flushes
    its block cache from whichever thread needs room, so a failed write (a full disk, a
    file-size limit) is not always raised where the file is written; a block it could
    not write is left with no bytes, or pointing past the end of the file.
    """
    import rasterio

    size = path.stat().st_size
    with rasterio.open(gdal_path(path)) as dataset:
        rows, cols = dataset.block_shapes[0]
        bands = [1] if dataset.interleaving != Interleaving.band else dataset.indexes
        for band in bands:
            for row in range(math.ceil(dataset.height / rows)):
                for col in range(math.ceil(dataset.width / cols)):
                    offset = dataset.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", band)
                    length = dataset.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", band)
                    if not offset or not length or int(offset) + int(length) > size:
                        raise OSError(
                            errno.EIO, f"block {row}, {col} of band {band} was not written"
                        )


def _sparse(profile: dict[str, Any]) -> bool:
    """Whether the profile lets GDAL leave empty blocks out (``SPARSE_OK``)."""
    return str(profile.get("sparse_ok", "")).upper() in ("TRUE", "YES", "ON", "1")


def _disk_full(folder: Path) -> bool:
    """Less than a MiB left where ``folder`` is (the likely cause of a failed write)."""
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def _write_pieces(path: Path, profile, pieces, descriptions) -> None:
    import rasterio

    with rasterio.open(gdal_path(path), "w", **profile) as destination:
        for index, description in enumerate(descriptions, start=1):
            if description:
                destination.set_band_description(index, description)
        # the next piece is read and computed while GDAL compresses this one
        with ComputedAhead(pieces) as computed:
            for window, values, mask in computed:
                check_interrupted()
                destination.write(values, window=window)
                if mask is not None:
                    destination.write_mask(mask, window=window)


def build_overviews(path: Path, factors: Sequence[int]) -> None:
    """Add internal overviews to the raster at ``path``, one per decimation factor in
    ``factors`` that leaves it more than one pixel a side (nothing when none does), each
    pixel the average of the valid pixels it covers."""
    import rasterio
    from rasterio.enums import Resampling

    if not factors:
        return
    with rasterio.open(gdal_path(path), "r+") as dataset:
        useful = [f for f in factors if min(dataset.width, dataset.height) // f > 1]
        if useful:
            dataset.build_overviews(useful, Resampling.average)


def translate_to_cog(source: Path, destination: Path, profile: dict[str, Any]) -> None:
    """Copy a GeoTIFF to a Cloud Optimized GeoTIFF with GDAL's COG driver.

    Compression, predictor and tile size follow ``profile`` (the GeoTIFF's options).
    """
    import rasterio.shutil

    predictor = "YES" if str(profile.get("predictor", "1")) in ("2", "3") else "NO"
    rasterio.shutil.copy(
        gdal_path(source),
        gdal_path(destination),
        driver="COG",
        compress=str(profile.get("compress", "deflate")).upper(),
        predictor=predictor,
        blocksize=profile["blockxsize"],
        bigtiff="IF_SAFER",
        num_threads=profile.get("num_threads", "ALL_CPUS"),
    )
