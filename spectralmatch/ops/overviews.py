"""Overviews (reduced-resolution copies inside a raster) for fast display."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

from .._typing import OutputsLike
from ..engine.published import takes_engine_keywords
from ..errors import SpectralMatchError
from ..raster.collection import ImageCollection, ImagesLike
from ..raster.files import atomic_path
from ..raster.image import GDAL_ERRORS, error_cause
from ..raster.lock import folder_lock
from ..raster.paths import output_arguments, resolve_outputs
from ..raster.write import build_overviews

#: The decimation factors built by default: 1/2 down to 1/32 of the full resolution.
DEFAULT_WINDOW_SCALES = (2, 4, 8, 16, 32)


def check_window_scales(owner: str, window_scales: Sequence[int] | None) -> tuple[int, ...]:
    """``window_scales`` as a tuple (empty for None), or a clear error naming ``owner``."""
    if window_scales is None:
        return ()
    scales = tuple(window_scales) if isinstance(window_scales, (tuple, list)) else None
    if (
        scales is None
        or not all(
            isinstance(factor, int) and not isinstance(factor, bool) and factor >= 2
            for factor in scales
        )
        or scales != tuple(sorted(set(scales)))
    ):
        raise SpectralMatchError(
            f"{owner}: window_scales must be None or increasing integers >= 2 "
            f"(overview decimation factors), got {window_scales!r}"
        )
    return scales


@takes_engine_keywords
def compute_overviews(
    input_images_paths: ImagesLike,
    *,
    output_image_paths: OutputsLike | None = None,
    window_scales: Sequence[int] | None = DEFAULT_WINDOW_SCALES,
) -> list[str]:
    """Build overviews (internal, averaged) in each image, or in a copy of it.

    Also takes the published engine keywords (``debug_logs``, ``cache``, the thread
    counts, ``concurrent_processing_backend``, ``dask_scheduler``,
    ``resume_from_outputs``): see :func:`~spectralmatch.engine.published.takes_engine_keywords`.

    Each file is rewritten through a temporary copy renamed over it once its overviews
    are complete, so an interrupted run leaves every file as it was.

    Parameters
    ----------
    input_images_paths : folder, glob pattern or list of paths
    output_image_paths : folder, pattern with ``*`` or list of paths, optional
        Where to write copies with overviews; default: add them to the inputs.
    window_scales : tuple of int or None, default (2, 4, 8, 16, 32)
        Decimation factors: 2 is half the resolution. None or ``()`` builds none (the
        copies are still written).

    Returns
    -------
    list of str
        The paths of the images that hold the overviews.

    Examples
    --------
    >>> import tempfile, rasterio
    >>> paths = compute_overviews("data/", output_image_paths=tempfile.mkdtemp())
    >>> with rasterio.open(paths[0]) as dataset:
    ...     len(dataset.overviews(1))
    5
    """
    scales = check_window_scales("compute_overviews", window_scales)
    collection = ImageCollection.coerce(input_images_paths, any_grid=True)
    sources = [image.path for image in collection]
    if output_image_paths is None:
        targets = sources
    else:
        targets = resolve_outputs(collection, **output_arguments(collection, output_image_paths))
    with folder_lock({target.parent for target in targets}):
        for source, target in zip(sources, targets, strict=True):
            _copy_with_overviews(source, target, scales)
    return [str(target) for target in targets]


def _copy_with_overviews(source: os.PathLike, target: os.PathLike, scales: tuple[int, ...]):
    try:
        with atomic_path(target, suffix=os.path.splitext(target)[1]) as temporary:
            shutil.copyfile(source, temporary)
            build_overviews(temporary, scales)
    except GDAL_ERRORS as error:
        cause = error_cause(error, os.path.basename(target))
        raise SpectralMatchError(f"{target}: overviews cannot be built ({cause})") from None
