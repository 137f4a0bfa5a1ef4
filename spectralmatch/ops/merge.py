"""Merge images into one raster or a folder of tiles: by seamline polygons (feathered)
or first valid value wins, images on other grids resampled onto the output grid."""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rasterio.windows import Window, from_bounds
from rasterio.windows import bounds as window_bounds
from rasterio.windows import transform as window_transform

from .._typing import ResolutionName
from .._validation import (
    BOOLEAN,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INTEGER,
    Options,
    check,
    dtype_name,
)
from ..engine.published import takes_engine_keywords
from ..errors import SpectralMatchError
from ..geo.grid import split_window
from ..raster.collection import RASTER_SUFFIXES, ImageCollection, ImagesLike
from ..raster.files import write_atomically
from ..raster.image import DEFAULT_WINDOW_SIZE, Image
from ..raster.lock import folder_lock
from ..raster.paths import check_not_input
from ..raster.write import output_profile, to_dtype, write_raster
from .align import RESAMPLINGS, NativeGrid, aligned_grid, target_resolution, warped_onto
from .overviews import DEFAULT_WINDOW_SCALES, check_window_scales
from .seamline import Seamline

#: The resampling names of GDAL's tools that rasterio spells otherwise.
_GDAL_SPELLINGS = {"near": "nearest", "cubicspline": "cubic_spline"}
RESAMPLING_METHODS = (*RESAMPLINGS, *_GDAL_SPELLINGS)
RESOLUTIONS = ("highest", "lowest", "average")
DEFAULT_TILE_SIZE = 256
DEFAULT_VRT_NAME = "MergedImage.vrt"
#: Tiles are named as GDAL's gdal_retile names those of a mosaic called this.
TILE_STEM = "mosaic"


@takes_engine_keywords
def merge_rasters(
    input_images: ImagesLike,
    output_image_path: str | os.PathLike,
    *,
    seamlines: Seamline | str | os.PathLike | None = None,
    feather: float = 0,
    image_field: str = "image",
    resolution: ResolutionName | float | tuple[float, float] = "highest",
    resampling_method: str = "nearest",
    output_tiles: bool = False,
    overlap: int = 0,
    custom_tiles_csv: str | None = None,
    create_vrts: str | None = DEFAULT_VRT_NAME,
    build_overviews: bool = False,
    window_scales: Sequence[int] | None = DEFAULT_WINDOW_SCALES,
    window_size: int | None = None,
    save_as_cog: bool = False,
    output_dtype: str | None = None,
    custom_nodata_value: float | None = None,
) -> str:
    """One raster (or a folder of tiles) over the union of the images.

    Also takes the published engine keywords (``debug_logs``, ``cache``, the thread
    counts, ``concurrent_processing_backend``, ``dask_scheduler``,
    ``resume_from_outputs``): see :func:`~spectralmatch.engine.published.takes_engine_keywords`.

    The images must share a CRS (see :func:`align_rasters`); on one grid they are merged
    pixel for pixel, otherwise each is resampled onto the output grid as it is read.

    Parameters
    ----------
    input_images : folder, glob pattern or list of paths
    output_image_path : path
        The mosaic; with ``output_tiles``, the folder of tiles.
    seamlines : Seamline or vector file, optional
        Each image supplies the pixels of its polygon (the feature whose ``image_field``
        holds its name). Without, the first valid value in input order wins.
    feather : float, default 0
        Width in pixels of a blend across each cut line: each image's weight ramps from
        1 to 0 over ``feather`` pixels centred on its polygon's edge (with seamlines).
    resolution : {"highest", "lowest", "average"}, number or (x, y), default "highest"
        The output pixel size: the finest, coarsest or mean of the images', or given in
        CRS units. The grid lines run through the first image's top-left corner.
    resampling_method : str, default "nearest"
        How images not on the output grid are resampled: a rasterio name
        (``"bilinear"``, ``"cubic"``, ``"lanczos"``...) or GDAL's ``"near"``,
        ``"cubicspline"``.
    output_tiles : bool, default False
        Write tiles of ``window_size`` pixels (default 256) into the folder
        ``output_image_path``, named ``mosaic_<row>_<column>.tif`` from 1 (zero-padded
        to equal length) as GDAL's gdal_retile names them. Tiles over no image are not
        written.
    overlap : int, default 0
        Pixels shared by neighbouring tiles (tiles only; less than the tile size).
    custom_tiles_csv : str, optional
        File name of a tile index written in the tile folder: one line per tile,
        ``name;minx;maxx;miny;maxy`` (no header, output CRS units).
    create_vrts : str or None, default "MergedImage.vrt"
        File name of a VRT over the tiles written in the tile folder (None: none); it
        reads as the single-file mosaic does. A name other than the default needs tiles.
    build_overviews : bool, default False
        Build internal overviews (averaged) in the mosaic, or in each tile.
    window_scales : tuple of int or None, default (2, 4, 8, 16, 32)
        Their decimation factors; None or ``()``: none.
    window_size : int, optional
        Without tiles, the size of the windows merged at a time (default 1024; a mosaic
        larger than memory works); with tiles, the tile size (default 256).
    save_as_cog : bool, default False
        Write Cloud Optimized GeoTIFFs.
    output_dtype : str, optional
        Data type of the mosaic (``"float32"``, or GDAL's ``"Float32"``...; default: the
        first image's); values are rounded and clipped to its range.
    custom_nodata_value : float, optional
        The nodata value of the inputs (instead of their own) and of the mosaic. Without
        one anywhere, the mosaic gets a mask of where it has data.

    Returns
    -------
    str
        ``output_image_path``.

    Examples
    --------
    >>> import tempfile
    >>> from spectralmatch import Image
    >>> path = merge_rasters("data/", tempfile.mkdtemp() + "/mosaic.tif")
    >>> Image(path).count
    3
    """
    _check_arguments(locals())
    if feather and seamlines is None:
        warnings.warn(
            "merge_rasters: feather has no effect without seamlines (the first valid value "
            "wins, there are no cut lines to blend across)",
            stacklevel=2,
        )
    collection = ImageCollection.coerce(input_images)
    if custom_nodata_value is not None:
        collection = ImageCollection(
            [Image(i.path, name=i.name, nodata=custom_nodata_value) for i in collection]
        )
    first = collection.images[0]
    transform, width, height = _output_grid(collection, resolution)
    dtype = dtype_name("merge_rasters", "output_dtype", output_dtype)
    profile = output_profile(first, dtype, width=width, height=height, transform=transform)
    polygons = (
        None
        if seamlines is None
        else Seamline.coerce(seamlines, image_field, collection.crs).polygons
    )
    resampling = Resampling[_GDAL_SPELLINGS.get(resampling_method, resampling_method)]
    blend = _Blend(
        collection,
        profile,
        polygons,
        feather if polygons else 0,
        resampling,
        DEFAULT_WINDOW_SIZE if output_tiles else window_size or DEFAULT_WINDOW_SIZE,
    )
    write: dict[str, Any] = {
        "descriptions": first.descriptions,
        "cog": save_as_cog,
        "overviews": check_window_scales("merge_rasters", window_scales) if build_overviews else (),
    }
    out = Path(output_image_path)
    inputs = [image.path for image in collection]
    with blend:
        if output_tiles:
            tiles = _Tiles(out, window_size or DEFAULT_TILE_SIZE, overlap, blend)
            with folder_lock([out]):
                tiles.write(inputs, write, custom_tiles_csv, create_vrts)
            return str(output_image_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        check_not_input(out, inputs)
        with folder_lock([out.parent]):
            write_raster(out, profile, blend.pieces(Window(0, 0, width, height)), **write)
    return str(output_image_path)


def _check_arguments(arguments: dict[str, Any]) -> None:
    """A clear error naming the first argument of :func:`merge_rasters` that is wrong."""
    check("merge_rasters", "feather", arguments["feather"], NON_NEGATIVE)
    for name in ("output_tiles", "build_overviews", "save_as_cog"):
        check("merge_rasters", name, arguments[name], BOOLEAN)
    if arguments["window_size"] is not None:
        check("merge_rasters", "window_size", arguments["window_size"], POSITIVE_INTEGER)
    check(
        "merge_rasters",
        "resampling_method",
        arguments["resampling_method"],
        Options(RESAMPLING_METHODS),
    )
    check_window_scales("merge_rasters", arguments["window_scales"])
    if arguments["resolution"] not in RESOLUTIONS:
        _given_pixel_size(arguments["resolution"])
    overlap, tiles = arguments["overlap"], arguments["output_tiles"]
    if not isinstance(overlap, int) or isinstance(overlap, bool) or overlap < 0:
        raise SpectralMatchError(
            f"merge_rasters: overlap must be an integer >= 0 (pixels), got {overlap!r}"
        )
    tile_size = arguments["window_size"] or DEFAULT_TILE_SIZE
    if tiles and overlap >= tile_size:
        raise SpectralMatchError(
            f"merge_rasters: overlap ({overlap}) must be less than the tile size "
            f"(window_size, {tile_size})"
        )
    for name, suffix, default in (
        ("custom_tiles_csv", ".csv", None),
        ("create_vrts", ".vrt", DEFAULT_VRT_NAME),
    ):
        _check_file_name(name, arguments[name], suffix)
        if not tiles and arguments[name] != default:
            raise SpectralMatchError(f"merge_rasters: {name} needs output_tiles=True")
    if not tiles and overlap:
        raise SpectralMatchError("merge_rasters: overlap needs output_tiles=True")
    path = Path(arguments["output_image_path"])
    if tiles and path.exists() and not path.is_dir():
        raise SpectralMatchError(f"{path}: is a file; with output_tiles it must be a folder")
    if tiles and not path.exists() and path.suffix.lower() in RASTER_SUFFIXES:
        raise SpectralMatchError(
            f"{path}: names a raster file; with output_tiles give the folder for the tiles"
        )
    if not tiles and path.is_dir():
        raise SpectralMatchError(f"{path}: is a folder; merge_rasters writes one file there")


def _check_file_name(name: str, value: Any, suffix: str) -> None:
    if value is None:
        return
    if (
        not isinstance(value, str)
        or not value.lower().endswith(suffix)
        or os.path.basename(value) != value
        or not value[: -len(suffix)].strip()
    ):
        raise SpectralMatchError(
            f"merge_rasters: {name} must be a file name ending in {suffix} (written in the "
            f"tile folder), got {value!r}"
        )


def _pixel_size(resolution: Any, images: list[Image]) -> tuple[float, float]:
    """The output pixel size (x, y) ``resolution`` asks for among ``images``."""
    if resolution in RESOLUTIONS:
        grids = [NativeGrid.of(image, images[0].crs) for image in images]
        return target_resolution(grids, resolution)
    return _given_pixel_size(resolution)


def _given_pixel_size(resolution: Any) -> tuple[float, float]:
    pair = resolution if isinstance(resolution, (tuple, list)) else (resolution, resolution)
    if len(pair) == 2 and all(POSITIVE.accepts(value) for value in pair):
        return float(pair[0]), float(pair[1])
    raise SpectralMatchError(
        "merge_rasters: resolution must be 'highest', 'lowest', 'average', a positive pixel "
        f"size or a pair of them (x, y), got {resolution!r}"
    )


def _output_grid(collection: ImageCollection, resolution: Any) -> tuple[Affine, int, int]:
    """Transform and size of the output grid over the union of the images."""
    first = collection.images[0]
    size = _pixel_size(resolution, collection.images)
    on_one_grid = all(_same_grid(image.transform, first.transform) for image in collection)
    if on_one_grid and np.allclose(size, (first.transform.a, -first.transform.e), rtol=1e-9):
        left, bottom, right, top = collection.bounds
        transform = Affine(first.transform.a, 0.0, left, 0.0, first.transform.e, top)
        width = round((right - left) / first.transform.a)
        height = round((top - bottom) / -first.transform.e)
        return transform, width, height
    origin = (first.transform.c, first.transform.f)
    return aligned_grid(collection.bounds, size, False, origin)


class _Blend:
    """Merges the images window by window: by seamline polygons (feathered) or first
    valid value wins."""

    def __init__(
        self,
        collection: ImageCollection,
        profile: dict[str, Any],
        polygons,
        feather: float,
        resampling: Resampling,
        window_size: int,
    ):
        self.collection = collection
        self.profile = profile
        self.transform = profile["transform"]
        self.polygons = polygons
        self.feather = feather
        self.margin = math.ceil(feather)
        self.resampling = resampling
        self.window_size = window_size
        first = collection.images[0]
        self.dtype, self.count = profile["dtype"], first.count
        self.nodata = profile["nodata"]
        self.stack = contextlib.ExitStack()

    def __enter__(self) -> _Blend:
        with contextlib.ExitStack() as stack:
            self.datasets = [self._open(image, stack) for image in self.collection]
            self.stack = stack.pop_all()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stack.close()

    def _open(self, image: Image, stack: contextlib.ExitStack):
        """``image`` opened as it is, when on the output grid; else warped onto it (with
        a margin of ``self.margin`` pixels all round, for the feathering)."""
        if _same_grid(image.transform, self.transform):
            return stack.enter_context(image.open())
        m = self.margin
        return stack.enter_context(
            warped_onto(
                image,
                self.profile["crs"],
                self.transform * Affine.translation(-m, -m),
                self.profile["width"] + 2 * m,
                self.profile["height"] + 2 * m,
                self.resampling,
            )
        )

    def pieces(self, region: Window) -> Iterator[tuple[Window, np.ndarray, np.ndarray | None]]:
        """The merged pixels of ``region`` of the output grid, window by window (their
        offsets from the region's)."""
        for window in split_window(region, self.window_size):
            offset = Window(
                window.col_off - region.col_off,
                window.row_off - region.row_off,
                window.width,
                window.height,
            )
            values, valid = self.window(window)
            mask = valid.any(axis=0).astype(np.uint8) * 255 if self.nodata is None else None
            yield offset, values, mask

    def window(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """The merged pixels of ``window`` of the output grid, in the output dtype, and
        where they hold data."""
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
            read = self._read(image, dataset, expanded, bounds)
            if read is None:
                continue
            data, valid = read
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
        return to_dtype(merged, valid, self.dtype, self.nodata), valid

    def _read(self, image: Image, dataset, expanded: Window, bounds) -> tuple | None:
        """Values and validity of ``image`` over ``expanded`` (a window of the output grid
        with margins, of ``bounds``); None where the image is not."""
        if _same_grid(image.transform, self.transform):
            part = from_bounds(*bounds, transform=image.transform).round_offsets()
            part = part.round_lengths()
            if (
                part.col_off >= image.width
                or part.row_off >= image.height
                or part.col_off + part.width <= 0
                or part.row_off + part.height <= 0
            ):
                return None
            data = dataset.read(window=part, boundless=True, fill_value=image.nodata)
            return data, image.valid_mask(data, dataset, part) & _inside(image, part)[None]
        m = self.margin
        part = Window(expanded.col_off + m, expanded.row_off + m, expanded.width, expanded.height)
        data = dataset.read(list(range(1, image.count + 1)), window=part)
        if image.nodata is not None:
            return data, image.valid_mask(data, dataset, part)
        valid = np.broadcast_to(dataset.dataset_mask(window=part) > 0, data.shape)
        return data, valid & np.isfinite(data)


def _inside(image: Image, part: Window) -> np.ndarray:
    """Which pixels of ``part`` (a window that may reach past the image) lie in it."""
    rows = np.arange(part.row_off, part.row_off + part.height)
    cols = np.arange(part.col_off, part.col_off + part.width)
    return ((rows >= 0) & (rows < image.height))[:, None] & ((cols >= 0) & (cols < image.width))


class _Tiles:
    """The output grid cut into tiles of ``size`` pixels sharing ``overlap`` pixels,
    named and laid out as GDAL's gdal_retile does."""

    def __init__(self, folder: Path, size: int, overlap: int, blend: _Blend):
        self.folder = folder
        self.blend = blend
        profile = blend.profile
        rows = _tile_offsets(profile["height"], size, overlap)
        cols = _tile_offsets(profile["width"], size, overlap)
        digits = len(str(max(len(rows), len(cols))))
        self.tiles = [
            (
                f"{TILE_STEM}_{row + 1:0{digits}d}_{col + 1:0{digits}d}.tif",
                Window(
                    col_off,
                    row_off,
                    min(size, profile["width"] - col_off),
                    min(size, profile["height"] - row_off),
                ),
            )
            for row, row_off in enumerate(rows)
            for col, col_off in enumerate(cols)
        ]

    def write(
        self, inputs: list[Path], options: dict[str, Any], csv: str | None, vrt: str | None
    ) -> None:
        """Write the tiles over any image, then the tile index and the VRT if asked."""
        transform = self.blend.transform
        written = []
        for name, tile in self.tiles:
            if not _over_any(window_bounds(tile, transform), self.blend.collection.images):
                continue
            path = self.folder / name
            check_not_input(path, inputs)
            profile = {
                **self.blend.profile,
                "width": int(tile.width),
                "height": int(tile.height),
                "transform": window_transform(tile, transform),
            }
            write_raster(path, profile, self.blend.pieces(tile), **options)
            written.append((name, tile))
        if csv is not None:
            write_atomically(self.folder / csv, _tile_index(written, transform).encode())
        if vrt is not None:
            vrt_xml = _vrt(self.blend.profile, options["descriptions"], written)
            write_atomically(self.folder / vrt, vrt_xml)


def _tile_offsets(length: int, size: int, overlap: int) -> list[int]:
    """Offsets of the tiles along an axis of ``length`` pixels (the last may be short)."""
    step = size - overlap
    count = 1 if length <= size else 1 + math.ceil((length - size) / step)
    return [index * step for index in range(count)]


def _over_any(bounds, images: list[Image]) -> bool:
    """Whether ``bounds`` share an area with the extent of one of ``images``."""
    left, bottom, right, top = bounds
    return any(
        left < b[2] and b[0] < right and bottom < b[3] and b[1] < top
        for b in (image.bounds for image in images)
    )


def _tile_index(tiles: list[tuple[str, Window]], transform: Affine) -> str:
    """One line per tile: ``name;minx;maxx;miny;maxy`` (gdal_retile's -csv index)."""
    lines = []
    for name, tile in tiles:
        left, bottom, right, top = (float(value) for value in window_bounds(tile, transform))
        lines.append(f"{name};{left!r};{right!r};{bottom!r};{top!r}\n")
    return "".join(lines)


def _vrt(profile: dict[str, Any], descriptions, tiles: list[tuple[str, Window]]) -> bytes:
    """A GDAL VRT of the output grid whose pixels come from ``tiles`` (beside it)."""
    from rasterio.dtypes import dtype_rev, typename_fwd

    root = ElementTree.Element(
        "VRTDataset", rasterXSize=str(profile["width"]), rasterYSize=str(profile["height"])
    )
    if profile["crs"] is not None:
        ElementTree.SubElement(root, "SRS").text = profile["crs"].to_wkt()
    geotransform = ", ".join(repr(float(value)) for value in profile["transform"].to_gdal())
    ElementTree.SubElement(root, "GeoTransform").text = geotransform
    data_type = typename_fwd[dtype_rev[profile["dtype"]]]
    for band in range(1, profile["count"] + 1):
        element = ElementTree.SubElement(root, "VRTRasterBand", dataType=data_type, band=str(band))
        if profile["nodata"] is not None:
            ElementTree.SubElement(element, "NoDataValue").text = repr(float(profile["nodata"]))
        description = descriptions[band - 1] if band <= len(descriptions) else None
        if description:
            ElementTree.SubElement(element, "Description").text = description
        for name, tile in tiles:
            source = ElementTree.SubElement(element, "SimpleSource")
            ElementTree.SubElement(source, "SourceFilename", relativeToVRT="1").text = name
            ElementTree.SubElement(source, "SourceBand").text = str(band)
            size = {"xSize": str(int(tile.width)), "ySize": str(int(tile.height))}
            ElementTree.SubElement(source, "SrcRect", {"xOff": "0", "yOff": "0", **size})
            offsets = {"xOff": str(int(tile.col_off)), "yOff": str(int(tile.row_off))}
            ElementTree.SubElement(source, "DstRect", {**offsets, **size})
    return ElementTree.tostring(root)


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
