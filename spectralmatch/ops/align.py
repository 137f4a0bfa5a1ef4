"""Put images on one pixel grid: same pixel size, aligned grid lines."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, get_args

import numpy as np
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rasterio.windows import Window

from .._typing import OutputsLike, ResamplingName, ResolutionName
from .._validation import BOOLEAN, POSITIVE, POSITIVE_INTEGER, Options, check
from ..errors import SpectralMatchError
from ..geo.grid import PixelGrid, split_window
from ..raster.collection import ImageCollection, ImagesLike
from ..raster.image import DEFAULT_WINDOW_SIZE, Image
from ..raster.paths import output_arguments, resolve_outputs
from ..raster.write import output_profile, write_raster

RESAMPLINGS: tuple[ResamplingName, ...] = get_args(ResamplingName)


def target_resolution(
    collection: ImageCollection, resolution: ResolutionName | tuple[float, float]
) -> tuple[float, float]:
    """(x, y) pixel size: ``"highest"``, ``"lowest"``, ``"average"`` or a given pair."""
    sizes = np.array([PixelGrid(i.transform, i.width, i.height).pixel_size for i in collection])
    choose: dict[str, Callable[..., Any]] = {
        "highest": np.min,
        "lowest": np.max,
        "average": np.mean,
    }
    if isinstance(resolution, str) and resolution in choose:
        x, y = choose[resolution](sizes, axis=0)
        return float(x), float(y)
    if (
        isinstance(resolution, (tuple, list))
        and len(resolution) == 2
        and all(POSITIVE.accepts(value) for value in resolution)
    ):
        return float(resolution[0]), float(resolution[1])
    raise SpectralMatchError(
        "align_rasters: resolution must be 'highest', 'lowest', 'average' or a pair of "
        f"positive pixel sizes (x, y), got {resolution!r}"
    )


def aligned_grid(
    image: Image, resolution: tuple[float, float], tap: bool, origin: tuple[float, float]
) -> tuple[Affine, int, int]:
    """Transform and size of ``image``'s extent on the target grid.

    With ``tap`` the grid's lines fall on multiples of the pixel size (GDAL's -tap);
    otherwise on the lines through ``origin`` (the collection's top-left corner).
    """
    x_size, y_size = resolution
    left, bottom, right, top = image.bounds
    x0, y0 = (0.0, 0.0) if tap else origin
    left = x0 + math.floor((left - x0) / x_size + 1e-9) * x_size
    right = x0 + math.ceil((right - x0) / x_size - 1e-9) * x_size
    top = y0 + math.ceil((top - y0) / y_size - 1e-9) * y_size
    bottom = y0 + math.floor((bottom - y0) / y_size + 1e-9) * y_size
    width = max(1, round((right - left) / x_size))
    height = max(1, round((top - bottom) / y_size))
    return Affine(x_size, 0.0, left, 0.0, -y_size, top), width, height


def align_rasters(
    input_images: ImagesLike,
    output_images: OutputsLike,
    *,
    resolution: ResolutionName | tuple[float, float] = "highest",
    tap: bool = True,
    resampling: ResamplingName = "nearest",
    window_size: int = DEFAULT_WINDOW_SIZE,
    save_as_cog: bool = False,
) -> list[str]:
    """Put every image on one pixel grid (same pixel size and aligned lines).

    Images with a rotated or sheared geotransform are warped onto the north-up grid
    (the only operation that takes them).

    Each output covers its input's extent on the common grid; values are resampled with
    ``resampling`` (a rasterio/GDAL name such as ``"nearest"``, ``"bilinear"``,
    ``"average"``); nodata, dtype, bands and their descriptions are kept.

    Examples
    --------
    >>> import tempfile
    >>> outputs = align_rasters("data/", tempfile.mkdtemp(), resolution=(60, 60))
    >>> Image(outputs[0]).transform.a
    60.0
    """
    from rasterio.vrt import WarpedVRT

    check("align_rasters", "resampling", resampling, Options(RESAMPLINGS))
    check("align_rasters", "tap", tap, BOOLEAN)
    check("align_rasters", "window_size", window_size, POSITIVE_INTEGER)
    check("align_rasters", "save_as_cog", save_as_cog, BOOLEAN)
    collection = ImageCollection.coerce(input_images, allow_rotated=True)
    size = target_resolution(collection, resolution)
    left, _, _, top = collection.bounds
    method = Resampling[resampling]
    paths = resolve_outputs(collection, **output_arguments(collection, output_images))
    for image, path in zip(collection, paths, strict=True):
        transform, width, height = aligned_grid(image, size, tap, (left, top))
        profile = output_profile(image, width=width, height=height, transform=transform)
        with (
            image.open() as source,
            WarpedVRT(
                source,
                transform=transform,
                width=width,
                height=height,
                resampling=method,
                nodata=image.nodata,
            ) as warped,
        ):
            pieces = (
                (window, warped.read(window=window), None)
                for window in split_window(Window(0, 0, width, height), window_size)
            )
            write_raster(path, profile, pieces, descriptions=image.descriptions, cog=save_as_cog)
    return [str(path) for path in paths]
