"""Raster values to polygons: the pixels where an expression is non-zero, traced window
by window and dissolved per value."""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.transform import Affine

from .._typing import OutputsLike
from .._validation import BOOLEAN, NON_NEGATIVE, POSITIVE_INTEGER, Options, check, dtype_name
from ..engine.published import ResumeMode, takes_engine_keywords
from ..errors import SpectralMatchError, SpectralMatchWarning
from ..masks.expression import Expression
from ..raster.collection import ImageCollection, ImagesLike
from ..raster.convert import to_dtype_counting
from ..raster.image import DEFAULT_WINDOW_SIZE
from ..raster.paths import output_arguments, resolve_outputs
from .bandmath import Evaluation, bind, with_nodata
from .vectors import reusable_vector, write_frame

#: The data types rasterio.features.shapes traces.
SHAPE_DTYPES = ("uint8", "int16", "uint16", "int32", "float32")
SIZE_FILTER = re.compile(r"\s*(<=|>=|==|!=|<|>)\s*(\d+\.?\d*|\.\d+)(%?)\s*")
COMPARE = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
}
OWNER = "process_raster_values_to_vector_polygons"


@takes_engine_keywords
def process_raster_values_to_vector_polygons(
    input_images: ImagesLike,
    output_vectors: OutputsLike,
    *,
    extraction_expression: str,
    custom_nodata_value: float | None = None,
    custom_output_dtype: str | None = None,
    filter_by_polygon_size: str | None = None,
    polygon_buffer: float = 0.0,
    buffer_pixels: float = 0.0,
    value_mapping: Mapping[float, float | None] | None = None,
    estimate_statistics: bool = True,
    window_size: int = DEFAULT_WINDOW_SIZE,
    resume_from_outputs: ResumeMode = "no",
) -> list[str]:
    """Write the pixels where an expression is non-zero as polygons, one GeoPackage per
    image, in the image's CRS, with the pixel value in a ``value`` field.

    Also takes the published engine keywords (``debug_logs``, ``cache``, the thread
    counts, ``concurrent_processing_backend``, ``dask_scheduler``): see
    :func:`~spectralmatch.engine.published.takes_engine_keywords`.

    Parameters
    ----------
    input_images : folder, glob pattern, list of paths or ImageCollection
    output_vectors : folder, template with ``$`` or list of paths
        A folder holds one ``.gpkg`` per image, named as the image.
    extraction_expression : str
        An expression of the bands, as for :func:`~spectralmatch.band_math` (e.g.
        ``"B1 > 5%B1"``); pixels where it is zero or nodata give no polygon.
    custom_nodata_value : number, optional
        The images' nodata value, instead of the files' own.
    custom_output_dtype : str, optional
        The type the values are converted to before they are traced (one of
        ``uint8``, ``int16``, ``uint16``, ``int32``, ``float32``). Default: ``uint8`` for
        a comparison or logic, else ``float32``.
    filter_by_polygon_size : str, optional
        Keep the polygons whose area meets a comparison: in map units squared
        (``">100"``) or against a percentile of the image's polygon areas (``">95%"``).
    polygon_buffer : float
        Grow the polygons by this distance in map units.
    buffer_pixels : float
        Grow them by this many pixels (of the image's pixel width); not together with
        ``polygon_buffer``.
    value_mapping : dict, optional
        Values replaced before tracing (``{2: 5}``); ``None`` as a new value makes those
        pixels nodata. A value mapped to 0 gives no polygon.
    estimate_statistics : bool
        Accepted for the published package's sake: percentiles are computed from a
        histogram of every valid pixel either way (exact for integer data of up to 16
        bits).
    window_size : int
        Pixels per side of the windows read and traced.
    resume_from_outputs : {"no", "yes", "validate"}
        Keep an output an earlier run wrote (``"validate"``: one that reads with at least
        one feature).

    Returns
    -------
    list of str
        The output paths.

    Notes
    -----
    Memory holds the polygons of an image, not its pixels: each window is traced on its
    own (in pixel coordinates, so that pieces meet exactly) and the pieces of each value
    are unioned at the end, which dissolves polygons cut by window edges. The union
    takes time growing somewhat faster than the number of pieces, so a fragmented mask
    of a large image (many small polygons) is the slow case; the filter and the buffer
    apply to the dissolved polygons.
    """
    check(OWNER, "window_size", window_size, POSITIVE_INTEGER)
    check(OWNER, "polygon_buffer", polygon_buffer, NON_NEGATIVE)
    check(OWNER, "buffer_pixels", buffer_pixels, NON_NEGATIVE)
    check(OWNER, "estimate_statistics", estimate_statistics, BOOLEAN)
    if polygon_buffer and buffer_pixels:
        raise SpectralMatchError(f"{OWNER}: give polygon_buffer or buffer_pixels, not both")
    size_filter = _size_filter(filter_by_polygon_size)
    mapping = _mapping(value_mapping)
    dtype = dtype_name(OWNER, "custom_output_dtype", custom_output_dtype)
    if dtype is not None:
        check(OWNER, "custom_output_dtype", dtype, Options(SHAPE_DTYPES))
    expression = Expression.parse(extraction_expression)
    collection = ImageCollection.coerce(input_images, any_grid=True)
    collection = with_nodata(OWNER, collection, custom_nodata_value)
    paths = resolve_outputs(collection, outputs=_vector_paths(collection, output_vectors))
    for image, path in zip(collection, paths, strict=True):
        if reusable_vector(path, resume_from_outputs):
            continue
        bound = bind(image, expression)
        evaluation = Evaluation(image, bound, window_size)
        traced = dtype or ("uint8" if bound.is_boolean else "float32")
        frame = _polygons(evaluation, traced, mapping)
        frame = _filtered(frame, size_filter)
        distance = polygon_buffer or buffer_pixels * abs(image.transform.a)
        if distance:
            frame["geometry"] = frame.geometry.buffer(distance)
        if frame.empty:
            warnings.warn(
                f"{OWNER}: {image.path}: {extraction_expression!r} is zero or nodata on every "
                f"pixel; {path} holds no polygon",
                SpectralMatchWarning,
                stacklevel=3,
            )
        write_frame(path, frame, what="polygons")
        evaluation.warn(OWNER, traced)
    return [str(path) for path in paths]


def _vector_paths(collection: ImageCollection, output_vectors: OutputsLike) -> list[Path]:
    """One GeoPackage path per image; a folder holds them under the images' names."""
    arguments = output_arguments(collection, output_vectors)
    if "outputs" in arguments:
        return [Path(p) for p in arguments["outputs"]]
    folder = Path(arguments["out_dir"])
    return [folder / image.path.with_suffix(".gpkg").name for image in collection]


def _size_filter(text: Any) -> tuple[str, float, bool] | None:
    """(operator, number, is a percentile) of ``filter_by_polygon_size``."""
    if text is None:
        return None
    match = SIZE_FILTER.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise SpectralMatchError(
            f"{OWNER}: filter_by_polygon_size must be a comparison and an area or a "
            f"percentile of the areas, such as '>100' or '>95%', got {text!r}"
        )
    operator, number, percent = match.groups()
    if percent and float(number) > 100:
        raise SpectralMatchError(
            f"{OWNER}: filter_by_polygon_size: a percentile must lie in 0..100, got {text!r}"
        )
    return operator, float(number), bool(percent)


def _mapping(value_mapping: Any) -> dict[float, float | None]:
    if value_mapping is None:
        return {}
    if not isinstance(value_mapping, Mapping) or not all(
        isinstance(value, (int, float)) and (new is None or isinstance(new, (int, float)))
        for value, new in value_mapping.items()
    ):
        raise SpectralMatchError(
            f"{OWNER}: value_mapping must map numbers to numbers or None, got {value_mapping!r}"
        )
    return dict(value_mapping)


def _polygons(evaluation: Evaluation, dtype: str, mapping: dict[float, float | None]) -> Any:
    """The dissolved polygons of each non-zero value, as a GeoDataFrame."""
    import geopandas as gpd
    from rasterio.features import shapes
    from shapely import affinity
    from shapely.geometry import shape
    from shapely.ops import unary_union

    pieces: dict[float, list[Any]] = {}
    for window, result, valid in evaluation.windows():
        original, clipped = to_dtype_counting(result, valid, dtype, None)
        evaluation.clipped += clipped
        values = original.copy()
        for old, new in mapping.items():
            hit = original == old
            if new is None:
                valid &= ~hit
            else:
                values[hit] = new
        offset = Affine.translation(window.col_off, window.row_off)
        for geometry, value in shapes(values, mask=valid & (values != 0), transform=offset):
            pieces.setdefault(float(value), []).append(shape(geometry))
    to_map = evaluation.image.transform
    matrix = [to_map.a, to_map.b, to_map.d, to_map.e, to_map.c, to_map.f]
    values, geometries = [], []
    for value, parts in sorted(pieces.items()):
        dissolved = unary_union(parts)
        for polygon in getattr(dissolved, "geoms", [dissolved]):
            values.append(value)
            geometries.append(affinity.affine_transform(polygon, matrix))
    return gpd.GeoDataFrame({"value": values}, geometry=geometries, crs=evaluation.image.crs)


def _filtered(frame: Any, size_filter: tuple[str, float, bool] | None) -> Any:
    """The polygons of ``frame`` whose area meets ``size_filter``."""
    if size_filter is None or frame.empty:
        return frame
    operator, number, percent = size_filter
    areas = frame.geometry.area.to_numpy()
    threshold = float(np.percentile(areas, number)) if percent else number
    return frame[COMPARE[operator](areas, threshold)].reset_index(drop=True)
