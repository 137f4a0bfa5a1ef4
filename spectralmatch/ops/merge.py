"""Merge images into one raster or a folder of tiles: by seamline polygons (feathered)
or first valid value wins, images on other grids resampled onto the output grid."""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
from attrs import frozen
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
from ..engine.executors import ThreadExecutor
from ..engine.published import LOGGER, ResumeMode, Threads, takes_engine_keywords
from ..errors import SpectralMatchError, SpectralMatchWarning
from ..geo.grid import split_window
from ..raster.collection import RASTER_SUFFIXES, ImageCollection, ImagesLike
from ..raster.convert import to_dtype
from ..raster.files import gdal_path, new_temporary, write_atomically
from ..raster.image import DEFAULT_WINDOW_SIZE, Image
from ..raster.lock import folder_lock
from ..raster.paths import InputFiles
from ..raster.records import reusable_output
from ..raster.write import output_profile, write_raster
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
    resume_from_outputs: ResumeMode = "no",
    image_threads: Threads = None,
) -> str:
    """One raster (or a folder of tiles) over the union of the images.

    Also takes the other published engine keywords (``debug_logs``, ``cache``,
    ``io_threads``, ``tile_threads``, ``concurrent_processing_backend``,
    ``dask_scheduler``): see :func:`~spectralmatch.engine.published.takes_engine_keywords`.

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
        written. With ``build_overviews``, pyramid levels go to the sub-folders ``1``,
        ``2``, ... (as gdal_retile's ``-levels``): each halves the level above (a pixel is
        the mean of the valid pixels of the 2 x 2 it covers; an odd last row or column
        covers what is left), cut into tiles the same way, with its own index and VRT.
    overlap : int, default 0
        Pixels shared by neighbouring tiles (tiles only; less than the tile size).
    custom_tiles_csv : str, optional
        File name of a tile index written in the tile folder (and in each level's):
        one line per tile, ``name;minx;maxx;miny;maxy`` (no header, output CRS units).
    create_vrts : str or None, default "MergedImage.vrt"
        File name of a VRT over the tiles written in the tile folder and in each level's
        (None: none); it reads as the single-file mosaic does, and the levels' VRTs are
        its overviews (paths relative to it, so the folder can be moved). A name other
        than the default needs tiles.
    build_overviews : bool, default False
        Build internal overviews (averaged) in the mosaic, or the tile pyramid.
    window_scales : tuple of int or None, default (2, 4, 8, 16, 32)
        Their decimation factors; None or ``()``: none. With tiles, 2, 4, 8...: one
        pyramid level each, as many as leave a level at least a pixel a side.
    window_size : int, optional
        Without tiles, the size of the windows merged at a time (default 1024; a mosaic
        larger than memory works), a multiple of 16; with tiles, the tile size (default
        256).
    save_as_cog : bool, default False
        Write Cloud Optimized GeoTIFFs.
    output_dtype : str, optional
        Data type of the mosaic (``"float32"``, or GDAL's ``"Float32"``...; default: the
        first image's); values are rounded and clipped to its range.
    custom_nodata_value : float, optional
        The nodata value of the mosaic (its data type must hold it) and of the inputs
        instead of their own; an input whose data type cannot hold it keeps its own, with
        a warning. Without one anywhere, the mosaic gets a mask of where it has data.
    resume_from_outputs : {"no", "yes", "validate"}, default "no"
        Keep what an earlier run wrote instead of writing it again: with ``"yes"`` the
        mosaic (without reading the inputs) or each tile that exists, with
        ``"validate"`` only those that open as whole rasters (the others are written
        again). The index and VRTs are always written. It assumes the inputs and
        options are those of the earlier run.
    image_threads : "cpu", int or None
        Tiles written at once (threads; with tiles only). Default: one.

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
    if not output_tiles and reusable_output(Path(output_image_path), resume_from_outputs):
        LOGGER.debug("merge_rasters: %s is kept (resume_from_outputs)", output_image_path)
        return str(output_image_path)
    if feather and seamlines is None:
        warnings.warn(
            "merge_rasters: feather has no effect without seamlines (the first valid value "
            "wins, there are no cut lines to blend across)",
            stacklevel=2,
        )
    collection = ImageCollection.coerce(input_images)
    dtype = dtype_name("merge_rasters", "output_dtype", output_dtype) or collection[0].dtype
    nodata = collection[0].nodata if custom_nodata_value is None else custom_nodata_value
    if nodata is not None and not _holds(dtype, nodata):
        raise SpectralMatchError(
            f"merge_rasters: custom_nodata_value {nodata:g} cannot be held by the mosaic's "
            f"{dtype} data; give an output_dtype that holds it"
        )
    if custom_nodata_value is not None:
        collection = _with_nodata(collection, custom_nodata_value)
    first = collection.images[0]
    transform, width, height = _output_grid(collection, resolution)
    profile = output_profile(
        first, dtype, width=width, height=height, transform=transform, nodata=nodata
    )
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
    scales = check_window_scales("merge_rasters", window_scales) if build_overviews else ()
    write: dict[str, Any] = {"descriptions": first.descriptions, "cog": save_as_cog}
    out = Path(output_image_path)
    inputs = [image.path for image in collection]
    if output_tiles:
        job = _TileJob(
            collection.images,
            inputs,
            write,
            custom_tiles_csv,
            resume_from_outputs,
            _thread_count(image_threads),
        )
        levels = min(len(scales), min(width, height).bit_length() - 1)
        with folder_lock([out]):
            _write_tiles(
                blend, out, window_size or DEFAULT_TILE_SIZE, overlap, levels, job, create_vrts
            )
        return str(output_image_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    InputFiles(inputs).refuse(out)
    pieces = _as_pieces(Window(0, 0, width, height), blend.window_size, blend.window, profile)
    with blend, folder_lock([out.parent]):
        write_raster(out, profile, pieces, **write, overviews=scales)
    return str(output_image_path)


def _with_nodata(collection: ImageCollection, nodata: float) -> ImageCollection:
    """``collection`` with ``nodata`` as the nodata value of each image whose data type can
    hold it; the others (no pixel of theirs can equal it) keep their own, with a warning."""
    kept = [image.name for image in collection if not _holds(image.dtype, nodata)]
    if kept:
        warnings.warn(
            f"merge_rasters: custom_nodata_value {nodata:g} cannot be held by the data of "
            f"{', '.join(kept)}: they keep their own nodata, and it is the mosaic's only",
            SpectralMatchWarning,
            stacklevel=4,  # the caller of merge_rasters, past its keyword wrapper
        )
    return ImageCollection(
        [
            Image(image.path, name=image.name, nodata=None if image.name in kept else nodata)
            for image in collection
        ]
    )


def _holds(dtype: str, value: float) -> bool:
    """Whether ``dtype`` holds ``value`` exactly (NaN: only floating types)."""
    if math.isnan(value):
        return np.dtype(dtype).kind == "f"
    return bool(np.array(value).astype(dtype) == value)


def _thread_count(image_threads: Threads) -> int:
    """The tiles written at once for ``image_threads`` (checked): one by default."""
    if image_threads == "cpu":
        return os.cpu_count() or 1
    return image_threads or 1


def _check_arguments(arguments: dict[str, Any]) -> None:
    """A clear error naming the first argument of :func:`merge_rasters` that is wrong."""
    check("merge_rasters", "feather", arguments["feather"], NON_NEGATIVE)
    for name in ("output_tiles", "build_overviews", "save_as_cog"):
        check("merge_rasters", name, arguments[name], BOOLEAN)
    check(
        "merge_rasters",
        "resampling_method",
        arguments["resampling_method"],
        Options(RESAMPLING_METHODS),
    )
    _check_window(arguments["window_size"], arguments["window_scales"], arguments["output_tiles"])
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
            f"{path}: names a raster file; with output_tiles it must be a folder (for the tiles)"
        )
    if not tiles and path.is_dir():
        raise SpectralMatchError(
            f"{path}: is a folder; without output_tiles it must be a file (the mosaic)"
        )
    if arguments["image_threads"] is not None and not tiles:
        raise SpectralMatchError(
            "merge_rasters: image_threads (tiles written at once) requires output_tiles=True"
        )


def _check_window(window_size: Any, window_scales: Any, tiles: bool) -> None:
    """The published rules: a mosaic's window size is a multiple of 16; a tile pyramid's
    levels halve each other (window_scales 2, 4, 8...)."""
    scales = check_window_scales("merge_rasters", window_scales)
    if window_size is not None:
        check("merge_rasters", "window_size", window_size, POSITIVE_INTEGER)
    if not tiles and window_size is not None and window_size % 16:
        raise SpectralMatchError(
            f"merge_rasters: window_size must be a multiple of 16 for one file, got {window_size}"
        )
    if tiles and scales != tuple(2**level for level in range(1, len(scales) + 1)):
        raise SpectralMatchError(
            "merge_rasters: window_scales must be consecutive powers of two from 2 with "
            f"output_tiles=True (each pyramid level halves the one above), got {window_scales!r}"
        )


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
                self.transform @ Affine.translation(-m, -m),
                self.profile["width"] + 2 * m,
                self.profile["height"] + 2 * m,
                self.resampling,
            )
        )

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


class _Level:
    """One level of the tile pyramid: a grid cut into tiles of ``size`` pixels sharing
    ``overlap`` pixels, named and laid out as GDAL's gdal_retile does (level 0 is the
    output grid; level ``k`` halves it ``k`` times and lives in the sub-folder ``k``)."""

    def __init__(
        self, root: Path, profile: dict[str, Any], size: int, overlap: int, index: int = 0
    ):
        self.root, self.index = root, index
        self.folder = root / str(index) if index else root
        self.profile = profile
        self.size, self.overlap = size, overlap
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

    def halved(self) -> _Level:
        """The next level, in the next numbered sub-folder: pixels twice as large, the last
        row and column covering what is left of an odd size."""
        profile = {
            **self.profile,
            "width": math.ceil(self.profile["width"] / 2),
            "height": math.ceil(self.profile["height"] / 2),
            "transform": self.profile["transform"] * Affine.scale(2),
        }
        return _Level(self.root, profile, self.size, self.overlap, self.index + 1)

    def write(self, job: _TileJob, opener: Callable[[], Any], read: Callable) -> list:
        """Write the tiles over any image (``read(reader, window)`` gives a window's
        values and validity, ``reader`` one per worker from ``opener``); the written."""
        transform = self.profile["transform"]
        wanted = [
            (name, tile)
            for name, tile in self.tiles
            if _over_any(window_bounds(tile, transform), job.images)
        ]
        self.folder.mkdir(parents=True, exist_ok=True)
        inputs = InputFiles(job.inputs)  # here, on the worker that writes the tiles

        def write_tile(reader: Any, name: str, tile: Window) -> None:
            path = self.folder / name
            if reusable_output(path, job.resume):
                return
            inputs.refuse(path)
            profile = {
                **self.profile,
                "width": int(tile.width),
                "height": int(tile.height),
                "transform": window_transform(tile, transform),
            }
            pieces = _as_pieces(tile, job.window_size, functools.partial(read, reader), profile)
            write_raster(path, profile, pieces, **job.options)

        _per_worker(write_tile, wanted, opener, job.workers)
        return wanted

    def write_index(self, job: _TileJob, tiles: list, vrt_name: str) -> None:
        """The tile index (if asked) and the VRT ``vrt_name`` over ``tiles``."""
        transform = self.profile["transform"]
        if job.csv is not None:
            write_atomically(self.folder / job.csv, _tile_index(tiles, transform).encode())
        vrt = _vrt(self.profile, job.options["descriptions"], tiles)
        write_atomically(self.folder / vrt_name, vrt)


@frozen
class _TileJob:
    """What every level of a tile pyramid is written with."""

    images: list[Image]
    inputs: list[Path]
    options: dict[str, Any]
    csv: str | None
    resume: str
    workers: int
    window_size: int = DEFAULT_WINDOW_SIZE


def _write_tiles(
    blend: _Blend, out: Path, size: int, overlap: int, levels: int, job: _TileJob, vrt: str | None
) -> None:
    """Tiles of the mosaic into ``out``, then ``levels`` pyramid levels, each halving the
    one above it, into the sub-folders 1, 2, ...; an index and a VRT at each level (the
    VRTs of the levels are the top VRT's overviews)."""
    import rasterio

    level = _Level(out, blend.profile, size, overlap)
    written = level.write(job, lambda: copy.copy(blend), _Blend.window)
    for _ in range(levels):
        with _level_vrt(level, job, written, vrt) as above:
            level = level.halved()
            nodata = blend.profile["nodata"]
            opener = functools.partial(rasterio.open, gdal_path(above))
            written = level.write(job, opener, functools.partial(_halved, nodata=nodata))
    if vrt is not None:
        level.write_index(job, written, vrt)
    if vrt is not None and levels:
        _link_overviews(out / vrt, [f"{index}/{vrt}" for index in range(1, levels + 1)])


@contextlib.contextmanager
def _level_vrt(level: _Level, job: _TileJob, tiles: list, name: str | None) -> Iterator[Path]:
    """The index and VRT of ``level`` written (a temporary VRT without ``name``), for the
    next level to be read from."""
    if name is not None:
        level.write_index(job, tiles, name)
        yield level.folder / name
        return
    temporary = new_temporary(level.folder, ".vrt")
    try:
        level.write_index(job, tiles, temporary.name)
        yield temporary
    finally:
        temporary.unlink(missing_ok=True)


def _halved(source: Any, window: Window, *, nodata: float | None) -> tuple:
    """The pixels of ``window`` of a level, each the mean of the valid pixels of the
    2 x 2 block of the level above (``source``) it covers, and where there were any."""
    above = Window(window.col_off * 2, window.row_off * 2, window.width * 2, window.height * 2)
    inside = above.intersection(Window(0, 0, source.width, source.height))
    data = np.zeros((source.count, int(above.height), int(above.width)))
    valid = np.zeros(data.shape, bool)
    rows = slice(0, int(inside.height))
    cols = slice(0, int(inside.width))
    data[:, rows, cols] = source.read(window=inside)
    valid[:, rows, cols] = source.read_masks(window=inside) > 0
    shape = (source.count, int(window.height), 2, int(window.width), 2)
    counts = valid.reshape(shape).sum(axis=(2, 4))
    sums = np.where(valid, data, 0).reshape(shape).sum(axis=(2, 4))
    mean = np.divide(sums, counts, out=np.zeros(sums.shape), where=counts > 0)
    return to_dtype(mean, counts > 0, source.dtypes[0], nodata), counts > 0


def _as_pieces(
    region: Window, window_size: int, read: Callable, profile: dict[str, Any]
) -> Iterator[tuple[Window, np.ndarray, np.ndarray | None]]:
    """The pixels of ``region`` (``read(window)`` gives values and validity) as pieces
    to write, window by window (their offsets from the region's); with a mask of where
    they hold data when the output has no nodata value."""
    for window in split_window(region, window_size):
        offset = Window(
            window.col_off - region.col_off,
            window.row_off - region.row_off,
            window.width,
            window.height,
        )
        values, valid = read(window)
        mask = valid.any(axis=0).astype(np.uint8) * 255 if profile["nodata"] is None else None
        yield offset, values, mask


def _per_worker(function: Callable, items: list[tuple], opener: Callable, workers: int) -> None:
    """``function(reader, *item)`` for every item, on ``workers`` threads; each thread
    opens its own ``reader`` with ``opener`` (a context manager: datasets are neither
    shared between threads nor closed in another) for its share of the items."""

    def run(share: list[tuple]) -> None:
        with opener() as reader:
            for item in share:
                function(reader, *item)

    ThreadExecutor(workers).map(
        run, [share for start in range(workers) if (share := items[start::workers])]
    )


def _link_overviews(vrt: Path, levels: list[str]) -> None:
    """Make the VRTs ``levels`` (paths relative to ``vrt``) the overviews of each band."""
    root = ElementTree.fromstring(vrt.read_bytes())
    for band in root.findall("VRTRasterBand"):
        for level in levels:
            overview = ElementTree.SubElement(band, "Overview")
            ElementTree.SubElement(overview, "SourceFilename", relativeToVRT="1").text = level
            ElementTree.SubElement(overview, "SourceBand").text = band.attrib["band"]
    write_atomically(vrt, ElementTree.tostring(root))


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
        _add_sources(element, tiles, str(band))
    if profile["nodata"] is None:  # the tiles' masks say where the mosaic has data
        mask = ElementTree.SubElement(root, "MaskBand")
        _add_sources(
            ElementTree.SubElement(mask, "VRTRasterBand", dataType="Byte"), tiles, "mask,1"
        )
    return ElementTree.tostring(root)


def _add_sources(band: ElementTree.Element, tiles: list[tuple[str, Window]], source: str) -> None:
    """Put band ``source`` of each of ``tiles`` (beside the VRT) in its place in ``band``."""
    for name, tile in tiles:
        element = ElementTree.SubElement(band, "SimpleSource")
        ElementTree.SubElement(element, "SourceFilename", relativeToVRT="1").text = name
        ElementTree.SubElement(element, "SourceBand").text = source
        size = {"xSize": str(int(tile.width)), "ySize": str(int(tile.height))}
        ElementTree.SubElement(element, "SrcRect", {"xOff": "0", "yOff": "0", **size})
        offsets = {"xOff": str(int(tile.col_off)), "yOff": str(int(tile.row_off))}
        ElementTree.SubElement(element, "DstRect", {**offsets, **size})


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
