"""Merge images on one grid into one raster: by seamline polygons (feathered) or first
valid value wins."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
from rasterio.transform import Affine
from rasterio.windows import Window, from_bounds
from rasterio.windows import bounds as window_bounds

from .._validation import BOOLEAN, NON_NEGATIVE, POSITIVE_INTEGER, check
from ..errors import SpectralMatchError
from ..geo.grid import split_window
from ..raster.collection import ImageCollection, ImagesLike
from ..raster.image import DEFAULT_WINDOW_SIZE
from ..raster.lock import folder_lock
from ..raster.paths import check_not_input
from ..raster.write import output_profile, write_raster
from .seamline import Seamline


def merge_rasters(
    input_images: ImagesLike,
    output_image_path: str | os.PathLike,
    *,
    seamlines: Seamline | str | os.PathLike | None = None,
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
    >>> from spectralmatch import Image
    >>> path = merge_rasters("data/", tempfile.mkdtemp() + "/mosaic.tif")
    >>> Image(path).count
    3
    """
    check("merge_rasters", "feather", feather, NON_NEGATIVE)
    check("merge_rasters", "window_size", window_size, POSITIVE_INTEGER)
    check("merge_rasters", "save_as_cog", save_as_cog, BOOLEAN)
    if feather and seamlines is None:
        warnings.warn(
            "merge_rasters: feather has no effect without seamlines (the first valid value "
            "wins, there are no cut lines to blend across)",
            stacklevel=2,
        )
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
    polygons = (
        None
        if seamlines is None
        else Seamline.coerce(seamlines, image_field, collection.crs).polygons
    )
    blend = _Blend(collection, transform, polygons, feather if polygons else 0)
    out = Path(output_image_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    check_not_input(out, [image.path for image in collection])
    with blend:
        pieces = (
            (window, blend.window(window), None)
            for window in split_window(Window(0, 0, width, height), window_size)
        )
        with folder_lock([out.parent]):
            write_raster(out, profile, pieces, descriptions=first.descriptions, cog=save_as_cog)
    return str(output_image_path)


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


def _same_grid(a: Affine, b: Affine) -> bool:
    if not np.allclose([a.a, a.e, a.b, a.d], [b.a, b.e, b.b, b.d]):
        return False
    offsets = np.array([(a.c - b.c) / a.a, (a.f - b.f) / a.e])
    return bool(np.allclose(offsets, np.round(offsets), atol=1e-6))
