"""Band math: an expression of an image's bands written as a raster, window by window;
spectral indices and thresholds as its common cases."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
from attrs import define
from rasterio.windows import Window

from .._typing import OutputsLike
from .._validation import NONE, POSITIVE_INTEGER, AnyOf, InstanceOf, Options, check, dtype_name
from ..engine.published import takes_engine_keywords
from ..errors import SpectralMatchError, SpectralMatchWarning
from ..masks.expression import Expression
from ..raster.collection import ImageCollection, ImagesLike
from ..raster.convert import to_dtype_counting
from ..raster.image import DEFAULT_WINDOW_SIZE, Image
from ..raster.paths import output_arguments, resolve_outputs
from ..raster.write import output_profile, write_raster
from ..stats.histogram import Histogram

#: Histogram bins for percentile terms: integer data of up to 16 bits counted exactly.
PERCENTILE_BINS = 1 << 16
CALCULATION_DTYPES = ("float32", "float64")
OPTIONAL_NUMBER = AnyOf((NONE, InstanceOf((int, float), "a number")))
THRESHOLD = re.compile(r"\s*(<=|>=|==|!=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(%?)\s*")


def bind(image: Image, expression: Expression) -> Expression:
    """``expression`` bound to ``image``'s bands; errors name the image."""
    try:
        return expression.bind(image.count, image.descriptions)
    except SpectralMatchError as error:
        raise SpectralMatchError(f"{image.path}: {error}") from None


def image_percentiles(
    image: Image, expression: Expression, window_size: int
) -> dict[tuple[float, int], float]:
    """The value of each percentile term of ``expression`` (bound to ``image``) over the
    band's valid pixels, from a histogram merged window by window (exact for integer
    data of up to 16 bits, else within one bin of :data:`PERCENTILE_BINS` over the
    band's range)."""
    terms = expression.percentiles
    if not terms:
        return {}
    bands = sorted({band for _, band in terms})
    histogram = Histogram.empty(len(bands), np.dtype(image.dtype).kind in "iub", PERCENTILE_BINS)
    with image.open() as dataset:
        for window in image.windows(window_size):
            values, valid = image.read(window, dataset)
            part = Histogram.from_array(values[bands], valid[bands], PERCENTILE_BINS)
            histogram = histogram.merge(part)
    result = {}
    for percent, band in terms:
        value = float(histogram.quantiles([percent / 100.0])[bands.index(band), 0])
        if math.isnan(value):
            raise SpectralMatchError(
                f"{image.path}: {percent:g}%B{band + 1} in {expression.text!r}: band "
                f"{band + 1} has no valid pixels"
            )
        result[(percent, band)] = value
    return result


@define
class Evaluation:
    """An expression evaluated on an image, window by window; counts the valid pixels
    whose result was not a finite number (written as nodata)."""

    image: Image
    expression: Expression
    window_size: int = DEFAULT_WINDOW_SIZE
    calculation_dtype: str = "float64"
    not_finite: int = 0
    clipped: int = 0

    def windows(self) -> Iterator[tuple[Window, np.ndarray, np.ndarray]]:
        """(window, result as float64 (rows, cols), valid (rows, cols)) per window. A pixel
        is valid where every band the expression reads is (any band, if it reads none)
        and the result is finite."""
        percentiles = image_percentiles(self.image, self.expression, self.window_size)
        used = self.expression.bands
        with self.image.open() as dataset:
            for window in self.image.windows(self.window_size):
                values, valid = self.image.read(window, dataset)
                keep = valid[used].all(axis=0) if used else valid.any(axis=0)
                values = values.astype(self.calculation_dtype)
                result = np.array(self.expression.evaluate(values, percentiles), np.float64)
                finite = np.isfinite(result)
                self.not_finite += int(np.count_nonzero(keep & ~finite))
                yield window, result, keep & finite

    def pieces(self, dtype: str, nodata: float) -> Iterator[tuple[Window, np.ndarray, None]]:
        """The results as ``dtype`` (invalid pixels ``nodata``), one band, per window."""
        for window, result, valid in self.windows():
            converted, clipped = to_dtype_counting(result, valid, dtype, nodata)
            self.clipped += clipped
            yield window, converted[None], None

    def warn(self, owner: str, dtype: str) -> None:
        """Warn when some valid pixels had no finite result or were clipped to ``dtype``."""
        where = f"{owner}: {self.image.path}: {self.expression.text!r}:"
        if self.not_finite:
            warnings.warn(
                f"{where} {self.not_finite} valid pixels have no finite value (e.g. a "
                "division by zero) and were written as nodata",
                SpectralMatchWarning,
                stacklevel=4,
            )
        if self.clipped:
            warnings.warn(
                f"{where} {self.clipped} values lie outside the range of {dtype} and were "
                "clipped to it",
                SpectralMatchWarning,
                stacklevel=4,
            )


def with_nodata(owner: str, collection: ImageCollection, nodata: Any) -> ImageCollection:
    """``collection`` with ``nodata`` (when not None) as every image's nodata value."""
    check(owner, "custom_nodata_value", nodata, OPTIONAL_NUMBER)
    if nodata is None:
        return collection
    images = [Image(image.path, image.name, nodata=nodata) for image in collection]
    return ImageCollection(images, any_grid=True)


def output_nodata(image: Image, dtype: str, custom: float | None) -> float:
    """The nodata value of an output of ``dtype``: ``custom`` if given, else NaN for
    floats and the type's largest value for integers (never 0, which a mask needs)."""
    if custom is not None:
        with np.errstate(invalid="ignore", over="ignore"):
            held = bool(np.array(custom).astype(dtype) == custom) or (
                math.isnan(custom) and np.dtype(dtype).kind == "f"
            )
        if not held:
            raise SpectralMatchError(
                f"{image.path}: custom_nodata_value {custom!r} cannot be held by {dtype} data"
            )
        return float(custom)
    if np.dtype(dtype).kind == "f":
        return math.nan
    return float(np.iinfo(np.dtype(dtype)).max)


def evaluate_to_rasters(
    owner: str,
    input_images: ImagesLike,
    output_images: OutputsLike,
    expression: Expression,
    *,
    custom_nodata_value: float | None,
    window_size: int,
    custom_output_dtype: str | None,
    calculation_dtype: str,
) -> list[str]:
    """Write ``expression`` of each image as a one-band raster on the image's grid."""
    check(owner, "window_size", window_size, POSITIVE_INTEGER)
    check(owner, "calculation_dtype", calculation_dtype, Options(CALCULATION_DTYPES))
    output_dtype = dtype_name(owner, "custom_output_dtype", custom_output_dtype)
    collection = with_nodata(
        owner, ImageCollection.coerce(input_images, any_grid=True), custom_nodata_value
    )
    paths = resolve_outputs(collection, **output_arguments(collection, output_images))
    for image, path in zip(collection, paths, strict=True):
        bound = bind(image, expression)
        dtype = output_dtype or ("uint8" if bound.is_boolean else "float32")
        nodata = output_nodata(image, dtype, custom_nodata_value)
        evaluation = Evaluation(image, bound, window_size, calculation_dtype)
        profile = output_profile(image, dtype, count=1, nodata=nodata)
        write_raster(path, profile, evaluation.pieces(dtype, nodata), descriptions=(bound.text,))
        evaluation.warn(owner, dtype)
    return [str(path) for path in paths]


def one_expression(owner: str, threshold_math: Any, expression: Any) -> Expression:
    """The expression given as exactly one of the two keywords, parsed."""
    if (threshold_math is None) == (expression is None):
        raise SpectralMatchError(
            f"{owner}: give exactly one of threshold_math and expression (the same thing)"
        )
    return Expression.parse(threshold_math if expression is None else expression)


@takes_engine_keywords
def band_math(
    input_images: ImagesLike,
    output_images: OutputsLike,
    threshold_math: str | None = None,
    *,
    expression: str | None = None,
    custom_nodata_value: float | None = None,
    window_size: int = DEFAULT_WINDOW_SIZE,
    custom_output_dtype: str | None = None,
    calculation_dtype: str = "float64",
) -> list[str]:
    """Write an expression of each image's bands as a one-band raster on its grid.

    Also takes the published engine keywords (``debug_logs``, ``cache``, the thread
    counts, ``concurrent_processing_backend``, ``dask_scheduler``): see
    :func:`~spectralmatch.engine.published.takes_engine_keywords`.

    Parameters
    ----------
    input_images : folder, glob pattern, list of paths or ImageCollection
    output_images : folder, template with ``$`` or list of paths
        A folder keeps the input file names.
    threshold_math, expression : str
        The expression (give exactly one; ``threshold_math`` is the published name), in
        the grammar of :mod:`spectralmatch.masks.expression`: bands as ``B1``..``Bn`` or
        by their descriptions, ``+ - * / ^``, comparisons, ``&& || !``, ``c ? a : b``,
        functions such as ``sqrt`` and ``max``, and percentiles such as ``5%B1`` (of the
        band's valid pixels, from a histogram of the whole image). It is never run as
        Python.
    custom_nodata_value : number, optional
        The images' nodata value, instead of the files' own, and the output's. Default:
        the files' own for the inputs; for the output NaN for a float type, the type's
        largest value for an integer one (255 for uint8).
    window_size : int
        Pixels per side of the windows read and written.
    custom_output_dtype : str, optional
        The output's data type (numpy or GDAL name). Default: ``uint8`` when the
        expression is a comparison or logic (values 0 and 1), else ``float32``.
    calculation_dtype : {"float64", "float32"}
        The type the bands are converted to before the expression is evaluated.

    Returns
    -------
    list of str
        The output paths.

    Notes
    -----
    A pixel is nodata in the output where any band the expression reads is nodata, or
    where the result is not a finite number (a division by zero; a warning says how
    many). Results outside the output type's range are clipped to it, with a warning; a
    valid result equal to the nodata value is moved to the nearest value the type holds.
    """
    return evaluate_to_rasters(
        "band_math",
        input_images,
        output_images,
        one_expression("band_math", threshold_math, expression),
        custom_nodata_value=custom_nodata_value,
        window_size=window_size,
        custom_output_dtype=custom_output_dtype,
        calculation_dtype=calculation_dtype,
    )


@takes_engine_keywords
def create_ndvi_raster(
    input_images: ImagesLike,
    output_images: OutputsLike,
    *,
    red_band: int,
    nir_band: int,
    custom_nodata_value: float | None = None,
    window_size: int = DEFAULT_WINDOW_SIZE,
    custom_output_dtype: str | None = None,
    calculation_dtype: str = "float64",
) -> list[str]:
    """Write the NDVI, ``(nir - red) / (nir + red)``, of each image as a float32 raster.

    Parameters
    ----------
    input_images, output_images
        As for :func:`band_math`.
    red_band, nir_band : int
        The bands (1-based, as ``B1``) holding red and near-infrared.
    custom_nodata_value, window_size, custom_output_dtype, calculation_dtype
        As for :func:`band_math` (engine keywords too).

    Returns
    -------
    list of str
        The output paths.
    """
    return _normalized_difference_rasters(
        "create_ndvi_raster",
        input_images,
        output_images,
        {"nir_band": nir_band, "red_band": red_band},
        custom_nodata_value=custom_nodata_value,
        window_size=window_size,
        custom_output_dtype=custom_output_dtype,
        calculation_dtype=calculation_dtype,
    )


@takes_engine_keywords
def create_ndwi_raster(
    input_images: ImagesLike,
    output_images: OutputsLike,
    *,
    green_band: int,
    nir_band: int,
    custom_nodata_value: float | None = None,
    window_size: int = DEFAULT_WINDOW_SIZE,
    custom_output_dtype: str | None = None,
    calculation_dtype: str = "float64",
) -> list[str]:
    """Write the NDWI (McFeeters), ``(green - nir) / (green + nir)``, of each image as a
    float32 raster (water is positive).

    Parameters
    ----------
    input_images, output_images
        As for :func:`band_math`.
    green_band, nir_band : int
        The bands (1-based, as ``B1``) holding green and near-infrared.
    custom_nodata_value, window_size, custom_output_dtype, calculation_dtype
        As for :func:`band_math` (engine keywords too).

    Returns
    -------
    list of str
        The output paths.
    """
    return _normalized_difference_rasters(
        "create_ndwi_raster",
        input_images,
        output_images,
        {"green_band": green_band, "nir_band": nir_band},
        custom_nodata_value=custom_nodata_value,
        window_size=window_size,
        custom_output_dtype=custom_output_dtype,
        calculation_dtype=calculation_dtype,
    )


def _normalized_difference_rasters(
    owner: str,
    input_images: ImagesLike,
    output_images: OutputsLike,
    bands: dict[str, int],
    **options: Any,
) -> list[str]:
    """The normalized difference of the two ``bands`` (keyword -> band, the first minus
    the second) of each image, written by ``owner``."""
    for keyword, band in bands.items():
        check(owner, keyword, band, POSITIVE_INTEGER)
    first, second = bands.values()
    expression = normalized_difference(first, second)
    return evaluate_to_rasters(owner, input_images, output_images, expression, **options)


def normalized_difference(first: int, second: int) -> Expression:
    """``(B[first] - B[second]) / (B[first] + B[second])``."""
    return Expression.parse(f"(B{first} - B{second}) / (B{first} + B{second})")


def threshold_expression(owner: str, threshold: Any, band: int) -> Expression:
    """The comparison ``threshold`` (``">0.5"``, ``"<=100"``, ``"<5%"``) of band ``band``."""
    match = THRESHOLD.fullmatch(threshold) if isinstance(threshold, str) else None
    if match is None:
        raise SpectralMatchError(
            f"{owner}: threshold must be a comparison and a number, optionally a "
            f"percentile, such as '>0.5', '<=100' or '<5%', got {threshold!r}"
        )
    operator, number, percent = match.groups()
    if percent and not 0 <= float(number) <= 100:
        raise SpectralMatchError(f"{owner}: a percentile must lie in 0..100, got {threshold!r}")
    value = f"{number}%B{band}" if percent else number
    return Expression.parse(f"B{band} {operator} {value}")


@takes_engine_keywords
def threshold_raster(
    input_images: ImagesLike,
    output_images: OutputsLike,
    threshold: str,
    *,
    band: int = 1,
    window_size: int = DEFAULT_WINDOW_SIZE,
) -> list[str]:
    """Write a uint8 mask of each image: 1 where ``band`` meets ``threshold``, else 0.

    Also takes the published engine keywords: see
    :func:`~spectralmatch.engine.published.takes_engine_keywords`.

    Parameters
    ----------
    input_images, output_images
        As for :func:`band_math`.
    threshold : str
        A comparison (``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=``) and a number
        (``">0.5"``, ``"<=100"``) or a percentile of the band's valid pixels (``"<5%"``,
        from a histogram of the whole image: exact for integer data of up to 16 bits).
    band : int
        The band compared (1-based).
    window_size : int
        Pixels per side of the windows read and written.

    Returns
    -------
    list of str
        The output paths; each mask lies on its image's grid, with nodata 255 where the
        band is nodata.
    """
    check("threshold_raster", "band", band, POSITIVE_INTEGER)
    return evaluate_to_rasters(
        "threshold_raster",
        input_images,
        output_images,
        threshold_expression("threshold_raster", threshold, band),
        custom_nodata_value=None,
        window_size=window_size,
        custom_output_dtype="uint8",
        calculation_dtype="float64",
    )
