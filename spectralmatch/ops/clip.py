"""Set the pixels outside (or inside) polygons to nodata."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
from rasterio.windows import Window

from .._typing import MaskMode, OutputsLike
from .._validation import BOOLEAN, NONE, POSITIVE_INTEGER, AnyOf, InstanceOf, Options, check
from ..engine.published import ResumeMode, takes_engine_keywords
from ..errors import SpectralMatchError
from ..masks.vector import MASK_MODES, VectorMask
from ..raster.collection import ImageCollection, ImagesLike
from ..raster.convert import to_dtype
from ..raster.image import DEFAULT_WINDOW_SIZE, Image
from ..raster.paths import output_arguments, resolve_outputs
from ..raster.records import reusable_output
from ..raster.write import output_profile, write_raster

#: ``(mode, path)`` or ``(mode, path, field)``.
VectorMaskSpec = tuple[MaskMode, str | os.PathLike] | tuple[MaskMode, str | os.PathLike, str]
#: Any real number (NaN too) or None.
OPTIONAL_NUMBER = AnyOf((NONE, InstanceOf((numbers.Real,), "a number")))


@takes_engine_keywords
def mask_rasters(
    input_images: ImagesLike,
    output_images: OutputsLike,
    *,
    vector_mask: VectorMaskSpec | None = None,
    window_size: int = DEFAULT_WINDOW_SIZE,
    include_touched_pixels: bool = False,
    custom_nodata_value: float | None = None,
    save_as_cog: bool = False,
    resume_from_outputs: ResumeMode = "no",
) -> list[str]:
    """Set pixels outside (``"include"``) or inside (``"exclude"``) polygons to nodata.

    Also takes the other published engine keywords (``debug_logs``, ``cache``, the
    thread counts, ``concurrent_processing_backend``, ``dask_scheduler``): see
    :func:`~spectralmatch.engine.published.takes_engine_keywords`.

    Parameters
    ----------
    input_images : folder, glob pattern, list of paths or ImageCollection
    output_images : folder, pattern with ``*`` or list of paths
    vector_mask : (mode, path) or (mode, path, field), optional
        With a field each image is masked by the features whose field holds its name
        (file stem), without one by all features. None: nothing is masked (the images
        are copied, with ``custom_nodata_value`` applied).
    window_size : int
        Pixels per side of the windows read and written.
    include_touched_pixels : bool
        Every pixel a polygon touches counts as inside it (else only those whose centre
        it covers): ``"include"`` keeps more pixels, ``"exclude"`` removes more.
    custom_nodata_value : number, optional
        The outputs' nodata value, given to the masked pixels and to the pixels that
        were nodata in the input. A valid pixel equal to it is moved to the nearest
        value the data type holds, so it stays valid.
    save_as_cog : bool
        Write Cloud Optimized GeoTIFFs.
    resume_from_outputs : {"no", "yes", "validate"}, default "no"
        Keep an output an earlier run wrote instead of writing it again: with ``"yes"``
        each that exists, with ``"validate"`` each that opens as a whole raster (the
        others are written again). It assumes the inputs and options are unchanged.

    Returns
    -------
    list of str
        The output paths.

    Notes
    -----
    An image without a nodata value (and no ``custom_nodata_value``) is written with an
    internal mask of its valid pixels, the masked ones 0 under it: readers that honour
    GDAL masks (rasterio, GDAL, QGIS, this package) see them as missing.
    """
    mask = _vector_mask(vector_mask, include_touched_pixels)
    check("mask_rasters", "window_size", window_size, POSITIVE_INTEGER)
    check("mask_rasters", "custom_nodata_value", custom_nodata_value, OPTIONAL_NUMBER)
    check("mask_rasters", "save_as_cog", save_as_cog, BOOLEAN)
    collection = ImageCollection.coerce(input_images)
    paths = resolve_outputs(collection, **output_arguments(collection, output_images))
    for image, out in zip(collection, paths, strict=True):
        if reusable_output(out, resume_from_outputs):
            continue
        nodata = image.nodata if custom_nodata_value is None else custom_nodata_value
        if custom_nodata_value is not None:
            _check_representable(image, custom_nodata_value)
        with image.open() as dataset:
            write_raster(
                out,
                output_profile(image, nodata=nodata),
                _masked(image, dataset, mask, window_size, nodata),
                descriptions=image.descriptions,
                cog=save_as_cog,
            )
    return [str(p) for p in paths]


def _vector_mask(vector_mask: Any, all_touched: Any) -> VectorMask | None:
    """The mask ``vector_mask`` describes (None for None), checked."""
    check("mask_rasters", "include_touched_pixels", all_touched, BOOLEAN)
    if vector_mask is None:
        return None
    if not isinstance(vector_mask, (tuple, list)) or len(vector_mask) not in (2, 3):
        raise SpectralMatchError(
            "mask_rasters: vector_mask must be (mode, path) or (mode, path, field), "
            f"got {vector_mask!r}"
        )
    mode, path, *field = vector_mask
    check("mask_rasters", "vector_mask mode", mode, Options(MASK_MODES))
    field_name = field[0] if field else None
    return VectorMask(path, mode=mode, field=field_name, all_touched=all_touched)


def _check_representable(image: Image, nodata: float) -> None:
    """A clear error unless the image's data type holds ``custom_nodata_value`` exactly."""
    if math.isnan(nodata):
        held = np.dtype(image.dtype).kind == "f"
    else:
        with np.errstate(invalid="ignore", over="ignore"):
            held = bool(np.array(nodata).astype(image.dtype) == nodata)
    if not held:
        raise SpectralMatchError(
            f"{image.path}: custom_nodata_value {nodata!r} cannot be held by {image.dtype} data"
        )


def _masked(
    image: Image, dataset: Any, mask: VectorMask | None, window_size: int, nodata: float | None
) -> Iterator[tuple[Window, np.ndarray, np.ndarray | None]]:
    """The image's windows with the pixels ``mask`` excludes (and the invalid ones) set to
    ``nodata``; without one, set to 0 and left out of the dataset mask returned."""
    for window in image.windows(window_size):
        values = dataset.read(window=window)
        keep = image.valid_mask(values, dataset, window)
        if mask is not None:
            keep &= ~mask.excluded(image, values, image.grid.window_grid(window))[None]
        if nodata is None:
            values[~keep] = 0
            yield window, values, keep.any(axis=0).astype(np.uint8) * 255
        else:
            yield window, to_dtype(values.astype(np.float64), keep, image.dtype, nodata), None
