"""Put images on one pixel grid: one CRS, one pixel size, aligned grid lines."""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, get_args

import numpy as np
from attrs import frozen
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rasterio.windows import Window

from .._typing import Bounds, OutputsLike, ResamplingName, ResolutionName
from .._validation import BOOLEAN, POSITIVE, POSITIVE_INTEGER, Options, check
from ..engine.published import ResumeMode, takes_engine_keywords
from ..errors import SpectralMatchError
from ..geo.grid import PixelGrid, split_window
from ..raster.collection import ImageCollection, ImagesLike
from ..raster.image import DEFAULT_WINDOW_SIZE, Image
from ..raster.paths import output_arguments, resolve_outputs
from ..raster.records import reusable_output
from ..raster.write import output_profile, write_raster

RESAMPLINGS: tuple[ResamplingName, ...] = get_args(ResamplingName)


@frozen
class NativeGrid:
    """An image's extent and pixel size as they are in the target CRS (before any
    choice of a common grid)."""

    bounds: Bounds
    pixel_size: tuple[float, float]

    @classmethod
    def of(cls, image: Image, crs: CRS) -> NativeGrid:
        """``image``'s native grid in ``crs`` (GDAL's default for a reprojection)."""
        from rasterio.transform import array_bounds
        from rasterio.warp import calculate_default_transform

        grid = PixelGrid(image.transform, image.width, image.height)
        if image.crs == crs:
            return cls(grid.envelope, grid.pixel_size)
        if image.crs is None:
            raise SpectralMatchError(
                f"{image.path}: has no CRS, so it cannot be reprojected to {crs.to_string()}"
            )
        transform, width, height = calculate_default_transform(
            image.crs, crs, image.width, image.height, *grid.envelope
        )
        left, bottom, right, top = array_bounds(height, width, transform)
        return cls((left, bottom, right, top), (transform.a, -transform.e))


def target_crs(collection: ImageCollection, crs: Any = None) -> CRS | None:
    """The CRS to align to: ``crs`` as given (anything rasterio reads: ``"EPSG:32621"``,
    a WKT, a CRS), else the most common CRS of the images (the first image's on a tie)."""
    if crs is not None:
        try:
            return CRS.from_user_input(crs)
        except Exception as error:  # rasterio raises several kinds for a bad CRS
            raise SpectralMatchError(
                f"align_rasters: crs must be a CRS (e.g. 'EPSG:32621'), got {crs!r} ({error})"
            ) from None
    keys = [image.crs.to_wkt() if image.crs else None for image in collection]
    counts = Counter(keys)
    most = max(counts.values())
    return next(i.crs for i, key in zip(collection, keys, strict=True) if counts[key] == most)


def target_resolution(
    grids: list[NativeGrid],
    resolution: ResolutionName | float | tuple[float, float] | None,
    unmoved: list[bool] | None = None,
    keyword: str = "align_rasters: resolution",
) -> tuple[float, float]:
    """(x, y) pixel size: ``"highest"``, ``"lowest"``, ``"average"`` of the images' native
    pixel sizes in the target CRS, or a given pair. None: the finest pixel size of the
    images already in the target CRS (``unmoved``; all where none is), so that they keep
    their pixel size and a reprojected image does not impose a near-miss one."""
    if resolution is None:
        kept = [grid for grid, keep in zip(grids, unmoved or [], strict=False) if keep]
        return target_resolution(kept or grids, "highest")
    sizes = np.array([grid.pixel_size for grid in grids])
    choose: dict[str, Callable[..., Any]] = {
        "highest": np.min,
        "lowest": np.max,
        "average": np.mean,
    }
    if isinstance(resolution, str) and resolution in choose:
        x, y = choose[resolution](sizes, axis=0)
        return float(x), float(y)
    if isinstance(resolution, (int, float)) and POSITIVE.accepts(resolution):
        return float(resolution), float(resolution)
    if (
        isinstance(resolution, (tuple, list))
        and len(resolution) == 2
        and all(POSITIVE.accepts(value) for value in resolution)
    ):
        return float(resolution[0]), float(resolution[1])
    raise SpectralMatchError(
        f"{keyword} must be 'highest', 'lowest', 'average', a positive pixel size or a pair "
        f"of them (x, y), got {resolution!r}"
    )


def aligned_grid(
    bounds: Bounds, resolution: tuple[float, float], tap: bool, origin: tuple[float, float]
) -> tuple[Affine, int, int]:
    """Transform and size of ``bounds`` on the target grid.

    With ``tap`` the grid's lines fall on multiples of the pixel size (GDAL's -tap);
    otherwise on the lines through ``origin`` (the top-left corner of the first image).
    """
    x_size, y_size = resolution
    left, bottom, right, top = bounds
    x0, y0 = (0.0, 0.0) if tap else origin
    left = x0 + math.floor((left - x0) / x_size + 1e-9) * x_size
    right = x0 + math.ceil((right - x0) / x_size - 1e-9) * x_size
    top = y0 + math.ceil((top - y0) / y_size - 1e-9) * y_size
    bottom = y0 + math.floor((bottom - y0) / y_size + 1e-9) * y_size
    width = max(1, round((right - left) / x_size))
    height = max(1, round((top - bottom) / y_size))
    return Affine(x_size, 0.0, left, 0.0, -y_size, top), width, height


def compute_resolution(
    paths: ImagesLike, strategy: ResolutionName | float | tuple[float, float] | None
) -> tuple[float, float] | None:
    """The (x, y) pixel size ``strategy`` gives for the images at ``paths``, as
    :func:`align_rasters` and :func:`merge_rasters` choose it.

    Parameters
    ----------
    paths : folder, glob pattern or list of paths
    strategy : {"highest", "lowest", "average"}, number, (x, y) or None
        The finest, coarsest or mean of the images' pixel sizes (in the CRS most of
        them share, the others' reprojected), or a given one; None: None (each image
        keeps its own grid).

    Returns
    -------
    (float, float) or None

    Examples
    --------
    >>> compute_resolution("data/", "highest")
    (30.0, 30.0)
    """
    if strategy is None:
        return None
    if not isinstance(strategy, str):
        return target_resolution([], strategy, keyword="compute_resolution: strategy")
    collection = ImageCollection.coerce(paths, any_grid=True)
    crs = target_crs(collection)
    grids = [NativeGrid.of(image, crs) for image in collection]
    return target_resolution(grids, strategy, keyword="compute_resolution: strategy")


@takes_engine_keywords
def align_rasters(
    input_images: ImagesLike,
    output_images: OutputsLike,
    *,
    crs: Any = None,
    resolution: ResolutionName | float | tuple[float, float] | None = None,
    tap: bool = False,
    resampling_method: ResamplingName = "nearest",
    window_size: int = DEFAULT_WINDOW_SIZE,
    save_as_cog: bool = False,
    resume_from_outputs: ResumeMode = "no",
) -> list[str]:
    """Put every image on one pixel grid: one CRS, one pixel size, aligned lines.

    Also takes the other published engine keywords (``debug_logs``, ``cache``, the
    thread counts, ``concurrent_processing_backend``, ``dask_scheduler``): see
    :func:`~spectralmatch.engine.published.takes_engine_keywords`.

    Images in another CRS are reprojected, and images with a rotated or sheared
    geotransform are warped north-up (the only operation that takes them), window by
    window. Images already on the common grid keep their pixels where they are.

    Parameters
    ----------
    input_images : folder, glob pattern or list of paths
    output_images : folder, pattern with ``*`` or list of paths
    crs : CRS, optional
        The target CRS (``"EPSG:32621"``, a WKT, a rasterio CRS); default: the most
        common CRS of the images (the first image's on a tie).
    resolution : {"highest", "lowest", "average"}, number or (x, y), optional
        The pixel size, chosen among the images' native pixel sizes in the target CRS,
        or given in its units; default: the finest pixel size of the images already in
        the target CRS (of all images where none is).
    tap : bool, default False
        Put the grid lines on multiples of the pixel size (GDAL's -tap); by default
        they run through the top-left corner of the first image already in the target
        CRS.
    resampling_method : str, default "nearest"
        A rasterio/GDAL resampling name (``"nearest"``, ``"bilinear"``, ``"average"``...);
        nearest keeps every value as it was (the published package's default is
        bilinear).
    window_size, save_as_cog
        Windowed writing and COG output.
    resume_from_outputs : {"no", "yes", "validate"}, default "no"
        Keep an output an earlier run wrote instead of writing it again: with ``"yes"``
        each that exists, with ``"validate"`` each that opens as a whole raster (the
        others are written again). It assumes the inputs and options are unchanged.

    Notes
    -----
    Each output covers its input's extent on the common grid; nodata, dtype, bands and
    their descriptions are kept. An image without a nodata value gets a mask of where
    it has data (reprojection leaves empty corners).

    Examples
    --------
    >>> import tempfile
    >>> outputs = align_rasters("data/", tempfile.mkdtemp(), resolution=(60, 60))
    >>> Image(outputs[0]).transform.a
    60.0
    """
    check("align_rasters", "resampling_method", resampling_method, Options(RESAMPLINGS))
    check("align_rasters", "tap", tap, BOOLEAN)
    check("align_rasters", "window_size", window_size, POSITIVE_INTEGER)
    check("align_rasters", "save_as_cog", save_as_cog, BOOLEAN)
    collection = ImageCollection.coerce(input_images, any_grid=True)
    crs = target_crs(collection, crs)
    grids = [NativeGrid.of(image, crs) for image in collection]
    unmoved = [image.crs == crs for image in collection]
    size = target_resolution(grids, resolution, unmoved)
    first = grids[unmoved.index(True)] if any(unmoved) else grids[0]
    origin = (first.bounds[0], first.bounds[3])
    paths = resolve_outputs(collection, **output_arguments(collection, output_images))
    for image, grid, path in zip(collection, grids, paths, strict=True):
        if reusable_output(path, resume_from_outputs):
            continue
        transform, width, height = aligned_grid(grid.bounds, size, tap, origin)
        profile = output_profile(image, width=width, height=height, transform=transform, crs=crs)
        with warped_onto(
            image, crs, transform, width, height, Resampling[resampling_method]
        ) as warped:
            pieces = _pieces(warped, image, width, height, window_size)
            write_raster(path, profile, pieces, descriptions=image.descriptions, cog=save_as_cog)
    return [str(path) for path in paths]


@contextlib.contextmanager
def warped_onto(image: Image, crs, transform, width, height, resampling) -> Iterator[Any]:
    """``image`` read through a warped VRT onto the target grid, its nodata value (a given
    one too, which the file does not declare) left out of the resampling."""
    from rasterio.vrt import WarpedVRT

    options: dict[str, Any] = {"crs": crs, "nodata": image.nodata, "src_nodata": image.nodata}
    if image.nodata is None:
        options["add_alpha"] = True  # so the VRT knows where the image has no data
    with (
        image.open() as source,
        WarpedVRT(
            source,
            transform=transform,
            width=width,
            height=height,
            resampling=resampling,
            **{key: value for key, value in options.items() if value is not None},
        ) as warped,
    ):
        yield warped


def _pieces(warped, image: Image, width: int, height: int, window_size: int) -> Iterator[tuple]:
    bands = list(range(1, image.count + 1))
    for window in split_window(Window(0, 0, width, height), window_size):
        mask = warped.dataset_mask(window=window) if image.nodata is None else None
        yield window, warped.read(bands, window=window), mask
