"""The function API: one call per step of the published folder-to-folder workflow.

Each function is a thin wrapper over the classes: inputs and outputs may be a folder,
a glob pattern or a list of paths, and outputs keep the input file names. Every keyword
of the published ``global_regression`` and ``local_block_adjustment`` (spectralmatch
1.6.0) is accepted with its default; where our engine works differently, the docstring
says how the keyword is mapped, and a value that cannot be honoured raises
:class:`SpectralMatchError` naming the keyword.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from functools import reduce
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from attrs import frozen

from ._typing import Correction, MaskMode, OutputDtype, OutputsLike, WorkingDtype
from ._validation import Extent
from .engine.published import (
    LOGGER,
    EngineKeywords,
    Threads,
    keyword_error,
    warn_no_effect,
)
from .errors import SpectralMatchError, SpectralMatchWarning
from .masks.vector import VectorMask, read_layer
from .model.adjuster import Adjuster
from .model.block_map import BlockMap
from .model.global_model import GlobalModel
from .model.pif import IRMAD, CellPIF, ChangeDetector, ResidualPIF
from .model.pipeline import Mosaic
from .ops.overviews import check_window_scales, compute_overviews
from .raster.collection import ImageCollection, ImagesLike
from .raster.image import DEFAULT_WINDOW_SIZE, Image
from .raster.paths import TEMPLATE_SYMBOLS, names_a_file, output_arguments
from .stats.moments import Moments

VectorMaskSpec = tuple[str, str] | tuple[str, str, str] | None
NumberOfBlocks = int | tuple[int, int] | Literal["coefficient_of_variation"]

#: Published correction names -> ours. The published "offset" is a gamma correction on
#: values shifted above zero (for negative data): our "gamma" shifts by its pivot.
CORRECTION_NAMES: dict[str, Correction] = {
    "linear": "gain",
    "gamma": "gamma",
    "offset": "gamma",
    "gain": "gain",
    "wallis": "wallis",
}
#: Published PIF methods (and ours) -> a change detector (None: every overlap pixel).
PIF_METHODS = ("entire", "flood_from_match_points", "residual", "irmad")
#: The published coefficient-of-variation rule: (rows, cols) = 10 x CV / (45 / 125).
CV_REFERENCE = 45.0 / 125.0
CV_BASE_BLOCKS = 10


@frozen
class RunOptions:
    """The keywords both matching functions share, checked and mapped to our engine."""

    engine: EngineKeywords
    calculation_dtype: WorkingDtype = "float32"
    output_dtype: OutputDtype | None = None
    vector_mask: VectorMaskSpec = None
    custom_nodata_value: float | None = None
    threads: int | None = None
    window_size: int | tuple[int, int] | None = None
    save_as_cog: bool = False
    build_overviews: bool = False
    window_scales: tuple[int, ...] | None = (2, 4, 8, 16, 32)
    progress: bool = False

    def __attrs_post_init__(self) -> None:
        check_window_scales("build_overviews", self.window_scales)  # before any work
        if self.calculation_dtype not in ("float32", "float64"):
            raise keyword_error(
                "calculation_dtype",
                f"must be 'float32' or 'float64', got {self.calculation_dtype!r}",
            )

    def mosaic_params(self) -> dict[str, Any]:
        """Keywords of :class:`Mosaic` (the cache only when resuming)."""
        workers = self.threads if self.threads is not None else self.engine.workers()
        return {
            "window_size": self._window_size(),
            "threads": workers,
            "executor": self.engine.executor(workers),
            "cache": self.engine.resume_from_outputs != "no",
            "progress": self.progress,
        }

    def _window_size(self) -> int:
        size = self.window_size
        if size is None:
            return DEFAULT_WINDOW_SIZE
        if isinstance(size, tuple) and len(size) == 2:
            size = max(size)
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise keyword_error(
                "window_size",
                f"must be a positive int, (width, height) or None, got {self.window_size!r}",
            )
        return size

    def collection(self, input_images: ImagesLike) -> ImageCollection:
        """The inputs, with ``custom_nodata_value`` and ``vector_mask`` applied."""
        paths = ImageCollection.coerce(input_images)
        masks = self._masks(paths.names)
        images = [
            Image(image.path, mask=masks.get(image.name), nodata=self.custom_nodata_value)
            for image in paths
        ]
        LOGGER.debug("inputs: %s", [str(image.path) for image in images])
        return ImageCollection(images)

    def _masks(self, names: list[str]) -> dict[str, VectorMask]:
        """Per image, the published ``(mode, path[, field])`` vector mask; with a field,
        the features whose field value contains the image's name."""
        spec = self.vector_mask
        if spec is None:
            return {}
        if not isinstance(spec, tuple) or len(spec) not in (2, 3):
            raise keyword_error("vector_mask", f"must be (mode, path[, field]), got {spec!r}")
        given, path, *field = spec
        mode = next((m for m in get_args(MaskMode) if m == given), None)
        if mode is None:
            raise keyword_error(
                "vector_mask", f"mode must be 'include' or 'exclude', got {given!r}"
            )
        if not field:
            return dict.fromkeys(names, VectorMask(path, mode))
        values = _field_values(path, field[0])
        return {name: VectorMask(path, mode, field[0], _value_for(name, values)) for name in names}

    def transform(self, model: Mosaic, collection: ImageCollection, outputs: OutputsLike):
        """Write the outputs (and their overviews); returns their paths."""
        written = model.transform(
            collection,
            cog=self.save_as_cog,
            working_dtype=self.calculation_dtype,
            output_dtype=self.output_dtype,
            resume=self.engine.resume_from_outputs != "no",
            **output_arguments(collection, outputs),
        )
        paths = [str(image.path) for image in written]
        if self.build_overviews and self.window_scales and not self.save_as_cog:
            compute_overviews(paths, window_scales=self.window_scales)
        LOGGER.debug("outputs: %s", paths)
        return paths


def _field_values(path: str, field: str) -> list[str]:
    layer = read_layer(path, "vector mask")
    if field not in layer.columns:
        raise keyword_error("vector_mask", f"{path}: no field {field!r}")
    return sorted({str(value) for value in layer[field]})


def _value_for(name: str, values: list[str]) -> str:
    """The one field value that contains ``name`` (the image's own name when none does)."""
    matching = [value for value in values if name in value]
    if len(matching) > 1:
        raise keyword_error(
            "vector_mask", f"several field values contain the image name {name!r}: {matching}"
        )
    if not matching:
        warnings.warn(
            f"vector_mask: no feature's field value contains {name!r}; for that image the "
            "mask has no polygon",
            SpectralMatchWarning,
            stacklevel=5,
        )
    return matching[0] if matching else name


def _pif_detector(method: str) -> ChangeDetector | None:
    if method not in PIF_METHODS:
        raise keyword_error(
            "pif_method", f"must be one of {', '.join(PIF_METHODS)}, got {method!r}"
        )
    detectors: dict[str, type[ChangeDetector]] = {
        "flood_from_match_points": CellPIF,
        "residual": ResidualPIF,
        "irmad": IRMAD,
    }
    return detectors[method]() if method in detectors else None


def check_pif_keywords(
    prefix: str,
    feature_method: str,
    refused: dict[str, Any],
    no_effect: dict[str, tuple[Any, Any]],
) -> None:
    """Check the published PIF options (named ``prefix`` + the key): ``feature_method``
    must be ``"orb"`` and those of ``refused`` (its NDVI filter and tie points) None; a
    warning for each of ``no_effect`` (value, default) that was changed."""
    if feature_method != "orb":
        raise keyword_error(f"{prefix}feature_method", f"must be 'orb', got {feature_method!r}")
    for keyword, value in refused.items():
        if value is not None:
            raise keyword_error(
                f"{prefix}{keyword}",
                "the NDVI filter and tie points of the published PIF method do not exist "
                "here; PIFs come from ResidualPIF or IRMAD",
            )
    for keyword, (value, default) in no_effect.items():
        warn_no_effect(
            f"{prefix}{keyword}", value, default, "our change detectors have no such setting"
        )


def _loaded(path: str | os.PathLike, keyword: str, kind: type[Adjuster], run: RunOptions) -> Mosaic:
    """A saved model of one ``kind`` step, set to run with ``run``'s options."""
    model = Mosaic.load(path)
    if [type(step) for step in model.steps_] != [kind]:
        raise keyword_error(
            keyword,
            f"{path}: holds {[type(s).__name__ for s in model.steps_]}, not one {kind.__name__}",
        )
    for name, value in run.mosaic_params().items():
        setattr(model, name, value)
    LOGGER.debug("model loaded from %s: no statistics are read for its images", path)
    return model


def change_mask_folder(
    keyword: str, save_inz: str | os.PathLike | None, pif: ChangeDetector | None
) -> Path | None:
    """The folder our change masks go to for the published ``save_inz`` keyword (its
    per-pair INZ rasters): the folder itself, or a template's or file's folder."""
    if save_inz is None:
        return None
    if pif is None:
        raise keyword_error(
            keyword, "writes the PIF change masks: give a pif_method other than 'entire'"
        )
    text = os.fspath(save_inz)
    templated = any(symbol in text for symbol in TEMPLATE_SYMBOLS) or names_a_file(text)
    folder = Path(text).parent if templated else Path(text)
    warnings.warn(
        f"{keyword}: the change masks are written one per image, not one per pair, as "
        f"{folder}{os.sep}<image name>.tif (1 where the image changed, left out of the fit; "
        "on the image's own grid)",
        SpectralMatchWarning,
        stacklevel=3,
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def fitted(
    step: Adjuster,
    collection: ImageCollection,
    run: RunOptions,
    pif: ChangeDetector | None,
    pif_dir: Path | None = None,
) -> Mosaic:
    model = Mosaic(steps=[step], pif=pif, pif_dir=pif_dir, **run.mosaic_params())
    model.fit(collection)
    LOGGER.debug("fitted %s; windows read per image: %s", type(step).__name__, model.reads_)
    return model


def global_regression(
    input_images: ImagesLike,
    output_images: OutputsLike,
    *,
    calculation_dtype: WorkingDtype = "float32",
    output_dtype: OutputDtype | None = None,
    vector_mask: VectorMaskSpec = None,
    debug_logs: bool = False,
    custom_nodata_value: float | None = None,
    cache: float | None = None,
    image_threads: Threads = None,
    io_threads: Threads = None,
    tile_threads: Threads = None,
    concurrent_processing_backend: str = "process_pool",
    dask_scheduler: tuple[str, str] | None = None,
    window_size: int | tuple[int, int] | None = None,
    save_as_cog: bool = False,
    estimate_stats: bool = True,
    specify_model_images: tuple[str, Sequence[str]] | None = None,
    custom_mean_factor: float = 1.0,
    custom_std_factor: float = 1.0,
    save_adjustments: str | os.PathLike | None = None,
    load_adjustments: str | os.PathLike | None = None,
    pif_method: str = "flood_from_match_points",
    pif_red_band_index: int | None = None,
    pif_nir_band_index: int | None = None,
    pif_vegetation_threshold: float = 0.2,
    pif_inz_threshold: float = 0.25,
    pif_region_radius: int = 5,
    pif_max_samples: int | None = 10000,
    pif_min_samples: int | None = 10,
    pif_feature_method: str = "orb",
    pif_load_tie_points: str | None = None,
    pif_save_inz: str | None = None,
    build_overviews: bool = False,
    window_scales: tuple[int, ...] | None = (2, 4, 8, 16, 32),
    resume_from_outputs: str = "no",
    reference_images: Sequence[str | int] | None = None,
    weight_by_overlap: bool = True,
    robust: bool = False,
    threads: int | None = None,
    progress: bool = False,
) -> list[str]:
    """Match images with one gain and offset per image and band (global model).

    Parameters
    ----------
    input_images : folder, glob pattern or list of paths
    output_images : folder, pattern with ``*`` or ``$``, or list of paths
        A folder keeps the input file names.
    calculation_dtype : {"float32", "float64"}, default "float32"
        Precision of the correction (``Mosaic.transform(working_dtype=...)``).
    output_dtype : str, optional
        Data type of the outputs; default: the inputs'.
    vector_mask : ("include" | "exclude", path[, field]), optional
        Polygons whose pixels are kept in (``"include"``) or left out of (``"exclude"``)
        the statistics of the fit; every pixel is still corrected. With ``field``, each
        image uses the features whose field value contains its name.
    debug_logs : bool, default False
        Log what the call does at DEBUG on the ``"spectralmatch"`` logger (nothing is
        printed; configure :mod:`logging` to see it).
    custom_nodata_value : float, optional
        Nodata value of the inputs, instead of their own.
    cache : float, optional
        The published GDAL cache size; no effect here (a warning says so).
    image_threads, io_threads, tile_threads : "cpu", int or None
        Our engine has one pool of workers over windows of all images: it gets the
        largest of these (``"cpu"``: the number of CPUs); all None: every CPU (the
        published would run one image at a time; the results are the same).
    concurrent_processing_backend : {"process_pool", "thread", "process", "dask"}
        ``"process_pool"`` (default) and ``"thread"`` run the workers in threads (the
        published image work also runs in a thread pool), ``"process"`` in processes;
        ``"dask"`` on the workers of the Dask scheduler ``dask_scheduler`` names
        (:class:`~spectralmatch.engine.dask.DaskExecutor`), with the same results.
    dask_scheduler : tuple, optional
        With ``"dask"`` (and only then): ``("address", "tcp://HOST:PORT")`` or
        ``("file", path of a scheduler file)``.
    window_size : int, (width, height) or None
        Pixels per side of the windows read and written (the larger side of a tuple);
        None: 1024. It changes memory use, never the result.
    save_as_cog : bool, default False
        Write Cloud Optimized GeoTIFFs.
    estimate_stats : bool, default True
        Accepted for compatibility: statistics are always measured exactly, in one pass.
    specify_model_images : ("include" | "exclude", list of names), optional
        The images the model is built on (the reference images); the others are matched
        to them.
    custom_mean_factor, custom_std_factor : float, default 1.0
        Weights of the mean and standard-deviation equations.
    save_adjustments : path, optional
        Save the fitted model there as JSON (our model file: its gains, offsets and
        settings, not the published file of image and overlap statistics).
    load_adjustments : path, optional
        A model saved with ``save_adjustments``, used instead of fitting: its images
        are not read for statistics; images it does not hold are solved against it.
    pif_method : {"flood_from_match_points", "entire", "residual", "irmad"}
        Pseudo-invariant features. The published default, ``"flood_from_match_points"``
        (tie points grown into regions), is replaced by our default change detection,
        :class:`~spectralmatch.model.pif.CellPIF` (as ``spectralmatch match``): the
        overlaps are also measured per small cell in the one statistics pass, cells whose
        difference departs from the overlap's smooth trend are left out, and the model is
        fitted again from the others, with no second read. ``"entire"`` fits on every
        overlap pixel; ``"residual"`` (:class:`~spectralmatch.ResidualPIF`) and
        ``"irmad"`` (:class:`~spectralmatch.IRMAD`) read the overlaps again.
    pif_red_band_index, pif_nir_band_index, pif_load_tie_points
        Must be None: the NDVI filter and tie points do not exist here.
    pif_save_inz : path, folder or template, optional
        The published per-pair INZ rasters become our change masks, one per image
        (``<folder>/<image name>.tif``, 1 where the image changed), written in its
        folder; needs a ``pif_method`` other than ``"entire"``. A warning says so.
    pif_vegetation_threshold, pif_inz_threshold, pif_region_radius, pif_max_samples,
    pif_min_samples
        No effect (a warning says so when one is changed).
    pif_feature_method : {"orb"}
        No effect.
    build_overviews : bool, default False
        Add overviews at ``window_scales`` to the outputs (a COG has its own).
    window_scales : tuple of int, optional
    resume_from_outputs : {"no", "yes", "validate"}
        ``"yes"`` and ``"validate"`` keep the outputs a previous run with the same model,
        inputs and settings completed (verified by size and checksum; their completion
        records and the statistics live in the cache, ``$SPECTRALMATCH_CACHE``), and
        write only the others.
    reference_images : names or positions, optional
        Another way to give the images held fixed.
    weight_by_overlap : bool, default True
        Weight each overlap by its pixel count.
    robust : bool, default False
        Down-weight overlaps that disagree with the rest (robust IRLS).
    threads : int, optional
        Workers, instead of the published thread counts.
    progress : bool, default False
        Show progress bars.

    Returns
    -------
    list of str
        The output paths.

    Examples
    --------
    >>> import tempfile
    >>> outputs = global_regression("data/", tempfile.mkdtemp(), pif_method="entire")
    >>> [Path(path).name for path in outputs][:2]
    ['tile_00.tif', 'tile_01.tif']
    """
    engine = EngineKeywords(
        debug_logs, cache, image_threads, io_threads, tile_threads,
        concurrent_processing_backend, dask_scheduler, resume_from_outputs,
    )  # fmt: skip
    with engine.logging():
        run = RunOptions(
            engine, calculation_dtype, output_dtype, vector_mask, custom_nodata_value,
            threads, window_size, save_as_cog, build_overviews, window_scales, progress,
        )  # fmt: skip
        check_pif_keywords(
            "pif_",
            pif_feature_method,
            {
                "red_band_index": pif_red_band_index,
                "nir_band_index": pif_nir_band_index,
                "load_tie_points": pif_load_tie_points,
            },
            {
                "vegetation_threshold": (pif_vegetation_threshold, 0.2),
                "inz_threshold": (pif_inz_threshold, 0.25),
                "region_radius": (pif_region_radius, 5),
                "max_samples": (pif_max_samples, 10000),
                "min_samples": (pif_min_samples, 10),
            },
        )
        if not isinstance(estimate_stats, bool):
            raise keyword_error("estimate_stats", f"must be True or False, got {estimate_stats!r}")
        pif = _pif_detector(pif_method)
        masks_folder = change_mask_folder("pif_save_inz", pif_save_inz, pif)
        collection = run.collection(input_images)
        if load_adjustments is not None:
            model = _loaded(load_adjustments, "load_adjustments", GlobalModel, run)
        else:
            if reference_images is None:
                reference_images = model_references(specify_model_images, collection.names)
            step = GlobalModel(
                reference=reference_images,
                weight_by_overlap=weight_by_overlap,
                mean_weight=custom_mean_factor,
                std_weight=custom_std_factor,
                robust=robust,
            )
            model = fitted(step, collection, run, pif, masks_folder)
        if save_adjustments is not None:
            model.save(save_adjustments)
        return run.transform(model, collection, output_images)


def model_references(
    specify_model_images: tuple[str, Sequence[str]] | None, names: list[str]
) -> list[str] | None:
    """Reference names from ``("include" | "exclude", names)``."""
    if specify_model_images is None:
        return None
    mode, listed = specify_model_images
    listed = [Path(name).stem for name in listed]
    if mode == "include":
        return listed
    if mode == "exclude":
        return [name for name in names if name not in listed]
    raise SpectralMatchError(
        f"specify_model_images mode must be 'include' or 'exclude', got {mode!r}"
    )


def blocks_along_longer_side(
    collection: ImageCollection,
    number_of_blocks: NumberOfBlocks | None,
    canvas: tuple[float, float, float, float] | None = None,
) -> int | None:
    """Our ``BlockMap(n_blocks=...)`` for the published ``number_of_blocks``.

    Our blocks are square: an int (blocks per image) gives blocks of the same area as
    the published grid of ``number_of_blocks x images`` blocks over the union extent; a
    (rows, cols) tuple keeps the count along the extent's longer side; and
    ``"coefficient_of_variation"`` takes the published rule (band 1, 10 x CV / 0.36
    blocks per side); None leaves the choice to :class:`BlockMap` (an eighth of the
    median image side). With a ``canvas`` the count is along its longer side, for blocks
    of the same size.
    """
    if number_of_blocks is None:
        return None
    left, bottom, right, top = collection.bounds
    width, height = right - left, top - bottom
    if canvas is not None:
        left, bottom, right, top = canvas
        longest = max(right - left, top - bottom)
    else:
        longest = max(width, height)
    if number_of_blocks == "coefficient_of_variation":
        moments: Moments = reduce(Moments.merge, (image.statistics() for image in collection))
        ratio = float(moments.std[0] / moments.mean[0]) / CV_REFERENCE
        count = max(1, round(ratio * CV_BASE_BLOCKS))
        number_of_blocks = (count, count)
        LOGGER.debug("coefficient of variation: %d x %d blocks", count, count)
    if isinstance(number_of_blocks, tuple) and len(number_of_blocks) == 2:
        rows, cols = number_of_blocks
        if all(isinstance(n, int) and n > 0 for n in number_of_blocks):
            return cols if right - left >= top - bottom else rows
    elif isinstance(number_of_blocks, int) and not isinstance(number_of_blocks, bool):
        if number_of_blocks > 0:
            side = math.sqrt(width * height / (number_of_blocks * len(collection)))
            return max(1, round(longest / side))
    raise keyword_error(
        "number_of_blocks",
        "must be a positive int (blocks per image), (rows, cols) or "
        f"'coefficient_of_variation', got {number_of_blocks!r}",
    )


def local_block_adjustment(
    input_images: ImagesLike,
    output_images: OutputsLike,
    *,
    calculation_dtype: WorkingDtype = "float32",
    output_dtype: OutputDtype | None = None,
    vector_mask: VectorMaskSpec = None,
    debug_logs: bool = False,
    custom_nodata_value: float | None = None,
    cache: float | None = None,
    image_threads: Threads = None,
    io_threads: Threads = None,
    tile_threads: Threads = None,
    concurrent_processing_backend: str = "process_pool",
    dask_scheduler: tuple[str, str] | None = None,
    window_size: int | tuple[int, int] | None = None,
    save_as_cog: bool = False,
    number_of_blocks: NumberOfBlocks | None = None,
    alpha: float = 1.0,
    correction_method: str = "wallis",
    save_block_maps: tuple[str, str] | str | os.PathLike | None = None,
    load_block_maps: tuple[str | None, list[str] | None] | None = None,
    override_bounds_canvas_coords: tuple[float, float, float, float] | None = None,
    build_overviews: bool = False,
    window_scales: tuple[int, ...] | None = (2, 4, 8, 16, 32),
    resume_from_outputs: str = "no",
    block_size: int | None = None,
    min_pixels: int = 100,
    smoothing: float = 0.0,
    reference_images: Sequence[str | int] | None = None,
    threads: int | None = None,
    save_model: str | os.PathLike | None = None,
    progress: bool = False,
) -> list[str]:
    """Remove brightness that varies inside the images with a local block adjustment.

    Parameters
    ----------
    input_images : folder, glob pattern or list of paths
        Usually the outputs of :func:`global_regression`.
    output_images : folder, pattern with ``*`` or ``$``, or list of paths
    calculation_dtype, output_dtype, vector_mask, debug_logs, custom_nodata_value, cache,
    image_threads, io_threads, tile_threads, concurrent_processing_backend,
    dask_scheduler, window_size, save_as_cog, build_overviews, window_scales,
    resume_from_outputs, threads, progress
        As in :func:`global_regression`.
    number_of_blocks : int, (rows, cols) or "coefficient_of_variation", optional
        Blocks per image, a grid over the union extent, or the published rule from
        the coefficient of variation; our blocks are square, see
        :func:`blocks_along_longer_side` for the nearest grid taken. Default: our block
        size, an eighth of the median image side (the published default is 100 blocks
        per image).
    alpha : float, default 1.0
        Between 0 and 1: how far each block is brought towards the reference means
        (``BlockMap(alpha=...)``); 0 leaves the images unchanged. The published package
        documents it as this blend but multiplies its gamma output by it (and ignores it
        for ``"linear"``); here it blends every correction.
    correction_method : {"wallis", "offset", "gamma", "linear", "gain"}, default "wallis"
        ``"wallis"`` (mean and spread, see :class:`BlockMap`) is ours and the default, as
        in ``spectralmatch match`` (the published default, ``"offset"``, measured 1.7x the
        seam error and 1.2x the time on the benchmark's mosaic). The published
        ``"linear"`` (a gain) is our ``"gain"``; its ``"gamma"`` is our ``"gamma"``, and
        its ``"offset"`` (a gamma on values shifted above zero, for negative data) is our
        ``"gamma"`` too, which shifts negative data by itself.
    save_block_maps : (reference path, local path with "$") or folder, optional
        The tuple writes the reference block means (count-weighted over the images) and
        each image's block means (NaN where it overlaps no other image), one band per
        image band, and the fitted model beside the reference map, as
        ``<reference stem>.json`` (and ``.npz``), for ``load_block_maps``. A folder
        writes :meth:`BlockMap.to_rasters`.
    load_block_maps : (reference path, list of paths or None), optional
        Use the model saved beside that reference map instead of fitting (images it
        does not hold are solved against it). Block maps alone, as the published
        writes them, cannot drive our model: that raises.
    override_bounds_canvas_coords : (left, bottom, right, top), optional
        Lay the block grid over these bounds (the images' CRS) instead of the images'
        union (``BlockMap(canvas=...)``); pixels outside it take the nearest block's
        values, with a warning.
    block_size : int, optional
        Block side in pixels, used instead of ``number_of_blocks``.
    min_pixels, smoothing, reference_images
        See :class:`BlockMap`.
    save_model : path, optional
        Save the fitted model (JSON and an ``.npz`` sidecar) there.

    Returns
    -------
    list of str
        The output paths.

    Examples
    --------
    >>> import tempfile
    >>> outputs = local_block_adjustment("data/", tempfile.mkdtemp(), block_size=64)
    >>> len(outputs)
    4
    """
    engine = EngineKeywords(
        debug_logs, cache, image_threads, io_threads, tile_threads,
        concurrent_processing_backend, dask_scheduler, resume_from_outputs,
    )  # fmt: skip
    with engine.logging():
        run = RunOptions(
            engine, calculation_dtype, output_dtype, vector_mask, custom_nodata_value,
            threads, window_size, save_as_cog, build_overviews, window_scales, progress,
        )  # fmt: skip
        canvas = _canvas(override_bounds_canvas_coords)
        if correction_method not in CORRECTION_NAMES:
            raise keyword_error(
                "correction_method",
                f"must be one of {', '.join(CORRECTION_NAMES)}, got {correction_method!r}",
            )
        collection = run.collection(input_images)
        if load_block_maps is not None:
            model = _loaded(_model_beside(load_block_maps), "load_block_maps", BlockMap, run)
        else:
            n_blocks = None
            if block_size is None:
                n_blocks = blocks_along_longer_side(collection, number_of_blocks, canvas)
            step = BlockMap(
                block_size=block_size,
                n_blocks=n_blocks,
                correction=CORRECTION_NAMES[correction_method],
                min_pixels=min_pixels,
                smoothing=smoothing,
                reference=reference_images,
                alpha=alpha,
                canvas=canvas,
            )
            model = fitted(step, collection, run, None)
        if save_model is not None:
            model.save(save_model)
        _save_block_maps(model, save_block_maps)
        return run.transform(model, collection, output_images)


def _canvas(bounds: Any) -> tuple[float, float, float, float] | None:
    """The published ``override_bounds_canvas_coords`` (left, bottom, right, top)."""
    if bounds is None:
        return None
    if not Extent().accepts(bounds):
        raise keyword_error(
            "override_bounds_canvas_coords", f"must be {Extent().describe()}, got {bounds!r}"
        )
    left, bottom, right, top = (float(value) for value in bounds)
    return left, bottom, right, top


def _model_beside(load_block_maps: Any) -> Path:
    if not isinstance(load_block_maps, tuple) or len(load_block_maps) != 2:
        raise keyword_error(
            "load_block_maps", f"must be (reference path, paths), got {load_block_maps!r}"
        )
    reference = load_block_maps[0]
    path = None if reference is None else Path(reference).with_suffix(".json")
    if path is None or not path.is_file():
        raise keyword_error(
            "load_block_maps",
            f"no model beside the reference map {reference!r} (written by save_block_maps); "
            "block maps alone cannot drive our local model",
        )
    return path


def _save_block_maps(model: Mosaic, target: Any) -> None:
    if target is None:
        return
    step = model.steps_[0]
    assert isinstance(step, BlockMap)
    if isinstance(target, (str, os.PathLike)):
        step.to_rasters(target)
        return
    if not isinstance(target, tuple) or len(target) != 2 or "$" not in str(target[1]):
        raise keyword_error(
            "save_block_maps", f"must be (reference path, path with '$'), got {target!r}"
        )
    reference, local = target
    counts, local_means = step.counts_.astype(float), step.local_means_  # each built on reading
    totals = counts.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        weighted = (counts * (local_means + step.shifts_)).sum(axis=0) / totals
    step.write_surface(reference, np.where(totals > 0, weighted, np.nan))
    for name, means, count in zip(step.images_, local_means, counts, strict=True):
        step.write_surface(str(local).replace("$", name), np.where(count > 0, means, np.nan))
    model.save(Path(reference).with_suffix(".json"))


class Match:
    """The published namespace: ``Match.global_regression``, ``Match.local_block_adjustment``."""

    global_regression = staticmethod(global_regression)
    local_block_adjustment = staticmethod(local_block_adjustment)
