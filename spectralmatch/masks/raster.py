"""A raster of excluded (or included) pixels."""

from __future__ import annotations

import numpy as np
from attrs import define, field
from rasterio.enums import Resampling
from rasterio.windows import from_bounds

from ..errors import SpectralMatchError
from ..geo.grid import PixelGrid
from .base import Mask, MaskTarget, same_crs


@define
class RasterMask(Mask):
    """A raster whose non-zero pixels are excluded (or, with ``include=True``, the only
    ones kept). Any grid, in the image's CRS or reprojected to it; read with nearest
    neighbour; outside the raster nothing is excluded (everything, with ``include=True``).

    ``{name}`` in the path stands for the image's name, so one mask per image can be
    given to a whole collection (``RasterMask("pif/{name}.tif")``).
    """

    path: str = field(converter=str)
    include: bool = False

    def excluded(self, target: MaskTarget, values: np.ndarray, grid: PixelGrid) -> np.ndarray:
        import rasterio

        path = self.path.replace("{name}", target.name)
        try:
            with rasterio.open(path) as dataset:
                if not same_crs(path, dataset.crs, target.crs):
                    marked = _reprojected(dataset, target.crs, grid) != 0
                else:
                    window = from_bounds(*grid.bounds, transform=dataset.transform)
                    marked = (
                        dataset.read(
                            1,
                            window=window,
                            out_shape=grid.shape,
                            boundless=True,
                            fill_value=0,
                            resampling=Resampling.nearest,
                        )
                        != 0
                    )
        except rasterio.errors.RasterioIOError as error:
            raise SpectralMatchError(f"{path}: cannot read mask ({error})") from None
        return ~marked if self.include else marked


def _reprojected(dataset, crs, grid: PixelGrid) -> np.ndarray:
    """The first band of ``dataset`` warped onto ``grid`` (in ``crs``) by nearest
    neighbour; 0 where it does not reach, and where it holds its nodata value."""
    import rasterio
    from rasterio.warp import reproject

    placed = np.zeros(grid.shape, dtype=dataset.dtypes[0])
    reproject(
        rasterio.band(dataset, 1),
        placed,
        dst_transform=grid.transform,
        dst_crs=crs,
        dst_nodata=0,
        resampling=Resampling.nearest,
    )
    return placed
