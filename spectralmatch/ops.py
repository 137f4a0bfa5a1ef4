"""Raster operations of the mosaic workflow: align to one grid, clip by polygons, merge.

Every operation works window by window and writes atomically, like the transform.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rasterio.windows import Window, from_bounds
from rasterio.windows import bounds as window_bounds

from .collection import ImageCollection, PathsLike
from .errors import SpectralMatchError
from .image import DEFAULT_WINDOW_SIZE, Image, split_window
from .io import output_profile, write_raster
from .masks import VectorMask
from .mosaic import resolve_outputs
from .workflow import OutputsLike, output_arguments


def target_resolution(collection: ImageCollection, resolution) -> tuple[float, float]:
    """(x, y) pixel size: ``"highest"``, ``"lowest"``, ``"average"`` or a given pair."""
    sizes = np.array([(abs(i.transform.a), abs(i.transform.e)) for i in collection])
    if isinstance(resolution, str):
        choose = {"highest": sizes.min, "lowest": sizes.max, "average": sizes.mean}
        if resolution not in choose:
            raise SpectralMatchError(
                f"resolution must be 'highest', 'lowest', 'average' or (x, y), got {resolution!r}"
            )
        return tuple(float(v) for v in choose[resolution](axis=0))
    x, y = resolution
    return float(x), float(y)


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
    input_images: PathsLike,
    output_images: OutputsLike,
    *,
    resolution: str | tuple[float, float] = "highest",
    tap: bool = True,
    resampling: str = "nearest",
    window_size: int = DEFAULT_WINDOW_SIZE,
    save_as_cog: bool = False,
) -> list[str]:
    """Put every image on one pixel grid (same pixel size and aligned lines).

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

    collection = ImageCollection.coerce(input_images)
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


def mask_rasters(
    input_images: PathsLike,
    output_images: OutputsLike,
    *,
    vector_mask: tuple,
    window_size: int = DEFAULT_WINDOW_SIZE,
    save_as_cog: bool = False,
) -> list[str]:
    """Set pixels outside (``"include"``) or inside (``"exclude"``) polygons to nodata.

    ``vector_mask`` is ``(mode, path)`` or ``(mode, path, field)``; with a field each
    image is clipped by the features whose field holds its name (file stem), without one
    by all features.
    """
    mode, path, *field = vector_mask
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


def merge_rasters(
    input_images: PathsLike,
    output_image_path: str | os.PathLike,
    *,
    seamlines=None,
    feather: float = 0,
    image_field: str = "image",
    window_size: int = DEFAULT_WINDOW_SIZE,
    save_as_cog: bool = False,
) -> str:
    """One raster over the union of the images (on one grid; see :func:`align_rasters`).

    Parameters
    ----------
    input_images : folder, glob pattern or list of paths
    output_image_path : path
    seamlines : Seamline or vector file, optional
        Each image supplies the pixels of its polygon (the feature whose ``image_field``
        holds its name). Without, the first valid value in input order wins.
    feather : float, default 0
        Width in pixels of a blend across each cut line: each image's weight ramps from
        1 to 0 over ``feather`` pixels centred on its polygon's edge (with seamlines).
    window_size, save_as_cog
        Windowed writing (a mosaic larger than memory works) and COG output.

    Examples
    --------
    >>> import tempfile
    >>> path = merge_rasters("data/", tempfile.mkdtemp() + "/mosaic.tif")
    >>> Image(path).count
    3
    """
    collection = ImageCollection.coerce(input_images)
    first = collection.images[0]
    for image in collection:
        if not _same_grid(image.transform, first.transform):
            raise SpectralMatchError(
                f"{image.path}: not on the grid of {first.path}; "
                "align the images first (align_rasters)"
            )
    left, bottom, right, top = collection.bounds
    transform = Affine(first.transform.a, 0.0, left, 0.0, first.transform.e, top)
    width = round((right - left) / first.transform.a)
    height = round((top - bottom) / -first.transform.e)
    profile = output_profile(first, width=width, height=height, transform=transform)
    polygons = _seamline_polygons(seamlines, image_field, collection)
    blend = _Blend(collection, transform, polygons, feather if polygons else 0)
    out = Path(output_image_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with blend:
        pieces = (
            (window, blend.window(window), None)
            for window in split_window(Window(0, 0, width, height), window_size)
        )
        write_raster(out, profile, pieces, descriptions=first.descriptions, cog=save_as_cog)
    return str(output_image_path)


def _seamline_polygons(seamlines, field: str, collection: ImageCollection) -> dict | None:
    """Image name -> polygon, from a Seamline or a vector file (None: no seamlines)."""
    if seamlines is None:
        return None
    from .seamline import Seamline

    if isinstance(seamlines, Seamline):
        return seamlines.polygons
    import geopandas

    try:
        layer = geopandas.read_file(seamlines)
    except Exception as error:  # noqa: BLE001 - any reader failure is a bad input file
        raise SpectralMatchError(f"{seamlines}: cannot read seamlines ({error})") from None
    if field not in layer.columns:
        raise SpectralMatchError(f"{seamlines}: no field {field!r}")
    if layer.crs is not None and collection.crs is not None and layer.crs != collection.crs:
        layer = layer.to_crs(collection.crs)
    return {
        str(name): geometry for name, geometry in zip(layer[field], layer.geometry, strict=True)
    }


class _Blend:
    """Merges the images window by window: by seamline polygons (feathered) or first
    valid value wins."""

    def __init__(self, collection: ImageCollection, transform: Affine, polygons, feather):
        self.collection = collection
        self.transform = transform
        self.polygons = polygons
        self.feather = feather
        self.margin = math.ceil(feather)
        first = collection.images[0]
        self.dtype, self.count = first.dtype, first.count
        self.nodata = 0 if first.nodata is None else first.nodata

    def __enter__(self) -> _Blend:
        self.datasets = [image.open() for image in self.collection]
        return self

    def __exit__(self, *exc_info) -> None:
        for dataset in self.datasets:
            dataset.close()

    def window(self, window: Window) -> np.ndarray:
        """The merged pixels of ``window`` of the output grid."""
        m = self.margin
        expanded = Window(
            window.col_off - m, window.row_off - m, window.width + 2 * m, window.height + 2 * m
        )
        bounds = window_bounds(expanded, self.transform)
        shape = (int(expanded.height), int(expanded.width))
        total = np.zeros((self.count, *shape))
        weights = np.zeros((self.count, *shape))
        first_valid = np.full((self.count, *shape), np.nan)
        for image, dataset in zip(self.collection, self.datasets, strict=True):
            part = from_bounds(*bounds, transform=image.transform).round_offsets()
            part = part.round_lengths()
            if (
                part.col_off >= image.width
                or part.row_off >= image.height
                or part.col_off + part.width <= 0
                or part.row_off + part.height <= 0
            ):
                continue
            data = dataset.read(window=part, boundless=True, fill_value=self.nodata)
            valid = image.valid_mask(data, dataset, part)
            np.copyto(first_valid, data, where=valid & np.isnan(first_valid))
            if self.polygons is not None:
                weight = (
                    _seam_weights(self.polygons.get(image.name), bounds, shape, self.feather)[None]
                    * valid
                )
                total += weight * data
                weights += weight
        merged = np.divide(total, weights, out=first_valid.copy(), where=weights > 0)
        merged = merged[:, m : m + int(window.height), m : m + int(window.width)]
        valid = ~np.isnan(merged)
        if np.dtype(self.dtype).kind in "iu":
            np.rint(merged, out=merged)
        return np.where(valid, merged, self.nodata).astype(self.dtype)


def _seam_weights(polygon, bounds, shape: tuple[int, int], feather: float) -> np.ndarray:
    """An image's weight on a grid: 1 inside its polygon, 0 outside, ramping over
    ``feather`` pixels centred on the edge."""
    from rasterio.features import geometry_mask
    from rasterio.transform import from_bounds as transform_from_bounds

    if polygon is None or polygon.is_empty:
        return np.zeros(shape)
    inside = geometry_mask(
        [polygon],
        out_shape=shape,
        invert=True,
        transform=transform_from_bounds(*bounds, shape[1], shape[0]),
    )
    if feather <= 0 or inside.all() or not inside.any():
        return inside.astype(float)
    from scipy.ndimage import distance_transform_edt

    # signed distance of pixel centres to the edge: +-0.5 next to it
    signed = np.where(
        inside, distance_transform_edt(inside) - 0.5, 0.5 - distance_transform_edt(~inside)
    )
    return np.clip(0.5 + signed / feather, 0.0, 1.0)


def _clipped(image: Image, dataset, mask: VectorMask, window_size: int):
    """The image's windows with the pixels ``mask`` excludes set to nodata."""
    nodata = np.array(image.nodata).astype(image.dtype)
    for window in image.windows(window_size):
        values = dataset.read(window=window)
        excluded = mask.excluded(
            image, values, window_bounds(window, image.transform), values.shape[1:]
        )
        values[:, excluded] = nodata
        yield window, values, None


def _same_grid(a: Affine, b: Affine) -> bool:
    if not np.allclose([a.a, a.e, a.b, a.d], [b.a, b.e, b.b, b.d]):
        return False
    offsets = np.array([(a.c - b.c) / a.a, (a.f - b.f) / a.e])
    return bool(np.allclose(offsets, np.round(offsets), atol=1e-6))
