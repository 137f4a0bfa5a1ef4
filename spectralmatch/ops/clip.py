"""Set the pixels outside (or inside) polygons to nodata."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
from rasterio.windows import Window

from .._typing import MaskMode, OutputsLike
from .._validation import BOOLEAN, POSITIVE_INTEGER, Options, check
from ..errors import SpectralMatchError
from ..masks.vector import MASK_MODES, VectorMask
from ..raster.collection import ImageCollection, ImagesLike
from ..raster.image import DEFAULT_WINDOW_SIZE, Image
from ..raster.paths import output_arguments, resolve_outputs
from ..raster.write import output_profile, write_raster


def mask_rasters(
    input_images: ImagesLike,
    output_images: OutputsLike,
    *,
    vector_mask: tuple[MaskMode, str | os.PathLike] | tuple[MaskMode, str | os.PathLike, str],
    window_size: int = DEFAULT_WINDOW_SIZE,
    save_as_cog: bool = False,
) -> list[str]:
    """Set pixels outside (``"include"``) or inside (``"exclude"``) polygons to nodata.

    ``vector_mask`` is ``(mode, path)`` or ``(mode, path, field)``; with a field each
    image is clipped by the features whose field holds its name (file stem), without one
    by all features.
    """
    if not isinstance(vector_mask, (tuple, list)) or len(vector_mask) not in (2, 3):
        raise SpectralMatchError(
            "mask_rasters: vector_mask must be (mode, path) or (mode, path, field), "
            f"got {vector_mask!r}"
        )
    check("mask_rasters", "window_size", window_size, POSITIVE_INTEGER)
    check("mask_rasters", "save_as_cog", save_as_cog, BOOLEAN)
    mode, path, *field = vector_mask
    check("mask_rasters", "vector_mask mode", mode, Options(MASK_MODES))
    mask = VectorMask(path, mode=mode, field=field[0] if field else None)
    collection = ImageCollection.coerce(input_images)
    paths = resolve_outputs(collection, **output_arguments(collection, output_images))
    for image, out in zip(collection, paths, strict=True):
        if image.nodata is None:
            raise SpectralMatchError(
                f"{image.path}: has no nodata value to mark clipped pixels with"
            )
        with image.open() as dataset:
            write_raster(
                out,
                output_profile(image),
                _clipped(image, dataset, mask, window_size),
                descriptions=image.descriptions,
                cog=save_as_cog,
            )
    return [str(p) for p in paths]


def _clipped(
    image: Image, dataset: Any, mask: VectorMask, window_size: int
) -> Iterator[tuple[Window, np.ndarray, None]]:
    """The image's windows with the pixels ``mask`` excludes set to nodata."""
    nodata = np.array(image.nodata).astype(image.dtype)
    for window in image.windows(window_size):
        values = dataset.read(window=window)
        excluded = mask.excluded(image, values, image.grid.window_grid(window))
        values[:, excluded] = nodata
        yield window, values, None
