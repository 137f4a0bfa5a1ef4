"""Cloud and shadow masks written as rasters, one per image on the image's own grid."""

from __future__ import annotations

import csv
import importlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from .._typing import OutputsLike
from .._validation import BOOLEAN, NONE, POSITIVE, POSITIVE_INTEGER, AnyOf, check
from ..engine.published import ResumeMode, Threads, takes_engine_keywords
from ..errors import SpectralMatchError
from ..geo.grid import intersect, local_slices
from ..masks.cloud import CloudMask
from ..raster.collection import ImageCollection, ImagesLike
from ..raster.image import DEFAULT_WINDOW_SIZE, Image
from ..raster.paths import output_arguments, resolve_outputs
from ..raster.records import reusable_output
from ..raster.write import output_profile, write_raster

#: The value of a written mask where the image has no data.
MASK_NODATA = 255
#: None or a positive pixel size.
OPTIONAL_SIZE = AnyOf((NONE, POSITIVE))


@takes_engine_keywords
def create_cloud_mask(
    input_images: ImagesLike,
    output_images: OutputsLike,
    *,
    blue_band: int | None = None,
    green_band: int | None = None,
    red_band: int | None = None,
    nir_band: int | None = None,
    swir_band: int | None = None,
    buffer: int = 2,
    shadows: bool = True,
    sun_azimuth: float | None = None,
    sun_elevation: float | None = None,
    window_size: int = DEFAULT_WINDOW_SIZE,
    resume_from_outputs: ResumeMode = "no",
    **tests: Any,
) -> list[str]:
    """Write a cloud and shadow mask per image, found by a spectral test (offline).

    Also takes the other published engine keywords (``debug_logs``, ``cache``, the
    thread counts, ``concurrent_processing_backend``, ``dask_scheduler``): see
    :func:`~spectralmatch.engine.published.takes_engine_keywords`.

    Parameters
    ----------
    input_images : folder, glob pattern or list of paths
    output_images : folder, template with ``$`` or list of paths
        A folder keeps the input file names.
    blue_band, green_band, red_band, nir_band, swir_band : int, optional
        Band numbers (1-based); the ones not given are read from the band descriptions.
        Blue, green and red are needed; NIR and SWIR add their tests where given.
    buffer : int, default 2
        Pixels by which clouds and shadows are grown.
    shadows : bool, default True
        Mark cloud shadows too.
    sun_azimuth, sun_elevation : float, optional
        The sun's position in degrees (azimuth clockwise from north): shadows are then
        looked for only where the clouds cast them.
    window_size : int
        Pixels per side of the windows written; each is read with a margin so that the
        buffer and the shadow search see across its edges (no seams).
    resume_from_outputs : {"no", "yes", "validate"}, default "no"
        Keep an output an earlier run wrote instead of writing it again: with ``"yes"``
        each that exists, with ``"validate"`` each that opens as a whole raster.
    **tests
        The other settings of :class:`~spectralmatch.masks.cloud.CloudMask` (thresholds,
        ``reflectance``, ``cloud_heights``, ``min_cloud_pixels``...).

    Returns
    -------
    list of str
        The output paths: single-band uint8 GeoTIFFs on each image's grid (same CRS,
        transform and size), 0 clear, 1 cloud, 2 shadow, 255 (nodata) where the image
        has no data in some band.

    Notes
    -----
    Each image is scaled by its own robust statistics, measured on a read of at most
    1024 pixels a side (see :mod:`spectralmatch.masks.cloud`).
    """
    check("create_cloud_mask", "window_size", window_size, POSITIVE_INTEGER)
    check("create_cloud_mask", "shadows", shadows, BOOLEAN)
    mask = CloudMask(
        blue_band=blue_band,
        green_band=green_band,
        red_band=red_band,
        nir_band=nir_band,
        swir_band=swir_band,
        buffer=buffer,
        shadows=shadows,
        sun_azimuth=sun_azimuth,
        sun_elevation=sun_elevation,
        **tests,
    )
    collection = ImageCollection.coerce(input_images, any_grid=True)
    paths = resolve_outputs(collection, **output_arguments(collection, output_images))
    for image, path in zip(collection, paths, strict=True):
        if reusable_output(path, resume_from_outputs):
            continue
        profile = output_profile(image, dtype="uint8", count=1, nodata=MASK_NODATA)
        write_raster(path, profile, _labelled(image, mask, window_size))
    return [str(path) for path in paths]


def _labelled(image: Image, mask: CloudMask, window_size: int) -> Iterator[tuple]:
    """The image's windows classified, each read with the mask's margin around it."""
    roles = mask.roles(image, image.count)
    margin = mask.margin(image.grid.pixel_size)
    whole = Window(0, 0, image.width, image.height)
    with image.open() as dataset:
        scale = mask.image_scale(image, dataset)
        for window in image.windows(window_size):
            padded = Window(
                window.col_off - margin,
                window.row_off - margin,
                window.width + 2 * margin,
                window.height + 2 * margin,
            )
            padded = intersect(padded, whole) or window
            values, valid = image.read(padded, dataset)
            judged: np.ndarray = np.all(valid, axis=0)
            labels = mask.classify(values, judged, roles, scale, image.grid.pixel_size)
            labels[~judged] = MASK_NODATA
            yield window, labels[local_slices(window, padded)][None], None


@takes_engine_keywords
def create_cloud_mask_with_omnicloudmask(
    input_images: ImagesLike,
    output_images: OutputsLike,
    red_band_index: int,
    green_band_index: int,
    nir_band_index: int,
    *,
    down_sample_m: float | None = None,
    image_threads: Threads = None,
    omnicloud_kwargs: dict | None = None,
) -> list[str]:
    """Write a cloud mask per image predicted by OmniCloudMask (a deep-learning model
    for red, green and NIR bands), as the published function does.

    Also takes the other published engine keywords (``debug_logs``,
    ``concurrent_processing_backend``, ``dask_scheduler``...): see
    :func:`~spectralmatch.engine.published.takes_engine_keywords`. Images are
    predicted one after another (``image_threads`` is checked but changes nothing).

    Parameters
    ----------
    input_images : folder, glob pattern or list of paths
    output_images : folder, template with ``$`` or list of paths
    red_band_index, green_band_index, nir_band_index : int
        The bands (1-based) given to the model, in this order.
    down_sample_m : float, optional
        Predict on a grid of this pixel size (in CRS units, metres for a projected
        CRS) instead of the image's, to save time; the mask is written on that grid.
    omnicloud_kwargs : dict, optional
        Passed on to ``omnicloudmask.predict_from_array`` (``patch_size``,
        ``inference_device``, ``destination_model_dir``...).

    Returns
    -------
    list of str
        The output paths: single-band uint8 GeoTIFFs, OmniCloudMask's classes: 0 clear,
        1 thick cloud, 2 thin cloud, 3 cloud shadow; 255 (nodata) where the image has
        no data in a band given (the published package marked 0, clear, as nodata).

    Raises
    ------
    SpectralMatchError
        When omnicloudmask is not installed, or its model weights are not on this
        machine: nothing is ever downloaded.
    """
    del image_threads  # checked by the engine keywords; the images run one by one
    check("create_cloud_mask_with_omnicloudmask", "down_sample_m", down_sample_m, OPTIONAL_SIZE)
    options = dict(omnicloud_kwargs or {})
    predict = _omnicloudmask_predictor(options)
    collection = ImageCollection.coerce(input_images, any_grid=True)
    paths = resolve_outputs(collection, **output_arguments(collection, output_images))
    bands = [red_band_index, green_band_index, nir_band_index]
    for image, path in zip(collection, paths, strict=True):
        _check_bands(image, bands)
        shape = _prediction_shape(image, down_sample_m)
        grid = image.grid.resampled(shape)
        with image.open() as dataset:
            values, valid = image.read_on_grid(grid, dataset)
        chosen = [band - 1 for band in bands]
        labels = np.asarray(predict(values[chosen], **options)).squeeze().astype(np.uint8)
        labels[~valid[chosen].all(axis=0)] = MASK_NODATA
        profile = output_profile(
            image,
            dtype="uint8",
            count=1,
            nodata=MASK_NODATA,
            width=shape[1],
            height=shape[0],
            transform=grid.transform,
        )
        write_raster(path, profile, [(Window(0, 0, shape[1], shape[0]), labels[None], None)])
    return [str(path) for path in paths]


def _check_bands(image: Image, bands: list[int]) -> None:
    for band in bands:
        if isinstance(band, bool) or not isinstance(band, int) or not 1 <= band <= image.count:
            raise SpectralMatchError(
                f"{image.path}: band {band!r} asked for, but the image has bands 1 to {image.count}"
            )


def _prediction_shape(image: Image, down_sample_m: float | None) -> tuple[int, int]:
    if down_sample_m is None:
        return image.shape
    x_size, y_size = image.grid.pixel_size
    width = max(1, round(image.width * x_size / down_sample_m))
    height = max(1, round(image.height * y_size / down_sample_m))
    return height, width


def _omnicloudmask_predictor(options: dict) -> Any:
    """``omnicloudmask.predict_from_array``, once its model weights are known to be on
    this machine (in ``destination_model_dir`` or omnicloudmask's own models folder)."""
    spec = importlib.util.find_spec("omnicloudmask")
    if spec is None or spec.origin is None:
        raise SpectralMatchError(
            "create_cloud_mask_with_omnicloudmask needs the omnicloudmask package "
            "(pip install omnicloudmask), and its model weights saved on this machine; "
            "create_cloud_mask finds clouds without it"
        )
    package = Path(spec.origin).parent
    folder = Path(options.get("destination_model_dir") or package / "models")
    missing = _missing_weights(package, folder)
    if missing:
        raise SpectralMatchError(
            f"{folder}: omnicloudmask's model weights are not there ({', '.join(missing)}); "
            "nothing is downloaded here: save them in that folder (or give another as "
            "omnicloud_kwargs={'destination_model_dir': ...}), e.g. by running "
            "omnicloudmask.predict_from_array once where downloads are allowed"
        )
    return importlib.import_module("omnicloudmask").predict_from_array


def _missing_weights(package: Path, folder: Path) -> list[str]:
    """The model files omnicloudmask lists that ``folder`` lacks (or holds truncated)."""
    listing = next((path for path in package.rglob("model_download_links.csv")), None)
    if listing is None:
        return ["its list of model files, model_download_links.csv, is missing"]
    with listing.open(newline="") as handle:
        names = [row["file_name"] for row in csv.DictReader(handle)]
    return [
        name
        for name in names
        if not (folder / name).is_file() or (folder / name).stat().st_size <= 1 << 20
    ]
