"""Small rasters and vectors like the ones the published package's tests write.

The published tests build constant GeoTIFFs in EPSG:4326 with one-unit pixels and an upper
left corner at (0, 10), nodata 0; these helpers write the same files with rasterio.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import write_polygons, write_raster
from rasterio.transform import Affine
from shapely.geometry import box

GEOGRAPHIC = "EPSG:4326"


def dummy_raster(
    path,
    *,
    width: int = 10,
    height: int = 10,
    count: int = 3,
    dtype: str = "uint8",
    nodata: float | None = 0,
    origin: tuple[float, float] = (0.0, 10.0),
    pixel: float = 1.0,
    crs: str = GEOGRAPHIC,
    fill: float = 100,
    data: np.ndarray | None = None,
) -> str:
    """Write ``data`` (or a constant ``fill``) with its upper left corner at ``origin``."""
    if data is None:
        data = np.full((count, height, width), fill, dtype=dtype)
    transform = Affine(pixel, 0.0, origin[0], 0.0, -pixel, origin[1])
    return str(write_raster(path, data, transform=transform, crs=crs, nodata=nodata))


def dummy_rasters(folder, names_and_values, *, size: int = 16) -> list[str]:
    """One single-band ``size`` px square per (name, value), all on the same grid."""
    return [
        dummy_raster(Path(folder) / f"{name}.tif", width=size, height=size, count=1, fill=value)
        for name, value in names_and_values
    ]


def dummy_vector(path, bounds=(0, 0, 5, 5), crs: str = GEOGRAPHIC) -> str:
    """One rectangle with an ``id`` attribute."""
    return str(write_polygons(path, [box(*bounds)], crs=crs, id=[1]))
