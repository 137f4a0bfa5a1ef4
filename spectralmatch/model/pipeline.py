"""The facade: a sequence of steps fitted together on a collection and applied to rasters."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

import numpy as np

from .._typing import (
    DEFAULT_STEPS,
    ExecutorName,
    SeamlineMethod,
    StepName,
    WorkingDtype,
)
from .._validation import (
    BOOLEAN,
    NONE,
    PATH,
    POSITIVE_INTEGER,
    AnyOf,
    Constraint,
    InstanceOf,
    Options,
    dtype_name,
)
from ..engine.cache import StatisticsCache
from ..engine.collect import StatisticsPass
from ..engine.executors import Executor, ExecutorLike, as_executor
from ..engine.passes import WriteTask, Written, write_corrected
from ..errors import SpectralMatchError, SpectralMatchWarning
from ..geo.cells import CellGrid
from ..geo.overlap import OverlapEdge, OverlapGraph
from ..masks.raster import RasterMask
from ..ops.merge import merge_rasters
from ..ops.seamline import Seamline
from ..raster.collection import ImageCollection, ImagesLike
from ..raster.image import DEFAULT_WINDOW_SIZE, Image
from ..raster.lock import folder_lock
from ..raster.paths import resolve_outputs
from ..raster.records import is_complete
from ..stats.overlap import OverlapStatistics
from ..stats.requests import (
    BlockMoments,
    ImageMoments,
    OverlapCells,
    OverlapMoments,
    Plan,
    Request,
)
from .adjuster import Adjuster, StepChain
from .base import Estimator, check_is_fitted, clone
from .block_map import BlockMap
from .global_model import GlobalModel
from .histogram_match import HistogramMatch
from .persistence import ModelDocument, read_model, steps_digest, write_model
from .pif import (
    CellPIF,
    ChangeDetector,
    cell_side,
    select_pseudo_invariant,
    without_cells,
    write_cell_masks,
)

if TYPE_CHECKING:
    from distributed import Client

WORKING_DTYPES: tuple[WorkingDtype, ...] = get_args(WorkingDtype)

#: Rounds of change detection from overlap cells: each compares the cells after the
#: whole-image steps fitted without the changes the round before found (the first fit,
#: on every pixel, is biased by the change it is to find).
CHANGE_ROUNDS = 2


#: Warn when more than this fraction of an image's valid values were clipped on output.
CLIPPED_WARNING_FRACTION = 0.001

#: Fits one step on the statistics it asked for.
FitOne = Callable[[Adjuster, OverlapStatistics], Any]


#: The built-in steps by the names the command line uses (``--steps``).
STEP_CLASSES: dict[StepName, type[Adjuster]] = {
    "global": GlobalModel,
    "histogram": HistogramMatch,
    "local": BlockMap,
}


def default_steps() -> list[Adjuster]:
    """The default model, of ``Mosaic()`` and ``spectralmatch match``: a global gain and
    offset per image and band, then a local block adjustment."""
    return [STEP_CLASSES[name]() for name in DEFAULT_STEPS]


class Mosaic(Estimator):
    """A radiometric model: steps fitted together from one pass of statistics.

    Parameters
    ----------
    steps : list of Adjuster, optional
        Applied in order; default: :func:`default_steps` (``GlobalModel``, then
        ``BlockMap``). Each step fits on the statistics as transformed by the steps
        before it. ``fit`` fits copies of them (``steps_``); ``steps`` are left as given.
    window_size : int, default 1024
        Pixels per side of the windows read and written; memory grows with its square.
    threads : int, optional
        Workers running at once (default: the number of CPUs).
    executor : {"threads", "processes", "serial"}, Executor or dask.distributed.Client, \
default "threads"
        Who runs the tasks of each pass (see :mod:`spectralmatch.engine.executors`); a
        Client runs them on its cluster's workers
        (:class:`~spectralmatch.engine.dask.DaskExecutor`), with the same results.
    progress : bool, default False
        Show progress bars.
    pif : "auto", ChangeDetector or None, default "auto"
        Restrict the fit to pseudo-invariant pixels, so that real change (land cover,
        clouds) does not bend the correction: after the whole-image steps, each overlap
        is examined for change and the model is fitted again without the changed
        pixels. ``"auto"`` is :class:`~spectralmatch.model.pif.CellPIF`, which needs no
        second read; :class:`~spectralmatch.ResidualPIF` and
        :class:`~spectralmatch.IRMAD` read the overlaps again. None fits on every
        overlap pixel.
    pif_dir : path, optional
        Where to keep the change masks (``<image>.tif`` on the image's grid, 1 =
        changed) for inspection and reuse; by default none are written.
    cache : bool or path, default False
        Keep the statistics of each image and overlap in a cache folder (``True``: the
        default folder, see :func:`~spectralmatch.engine.cache.default_cache_folder`), so
        that a later fit reads only new or changed images (and the others only where they
        overlap a new one). Keys include each file's path, size and modification time.

    Attributes
    ----------
    steps_ : list of Adjuster
        The fitted steps.
    images_ : list of dict
        Name and path of every image the model was fitted on (or solved for later), the
        nodata value it was given instead of its file's own, if any, and whether it had a
        mask (``masked``; masks themselves are not kept).
    n_bands_ : int
    reads_ : dict
        Windows read from each image by the last fit (0 for an image whose statistics
        all came from the cache).

    Examples
    --------
    >>> import tempfile
    >>> model = Mosaic(steps=[GlobalModel()]).fit("data/")
    >>> outputs = model.transform("data/", out_dir=tempfile.mkdtemp())
    >>> len(outputs), model.steps_[0].gains_.shape
    (4, (4, 3))
    """

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "window_size": POSITIVE_INTEGER,
        "threads": AnyOf((NONE, POSITIVE_INTEGER)),
        "executor": ExecutorLike(),
        "progress": BOOLEAN,
        "pif": AnyOf((NONE, Options(("auto",)), InstanceOf((ChangeDetector,), "a ChangeDetector"))),
        "pif_dir": AnyOf((NONE, PATH)),
        "cache": AnyOf((BOOLEAN, PATH)),
    }

    def __init__(
        self,
        *,
        steps: Sequence[Adjuster] | None = None,
        window_size: int = DEFAULT_WINDOW_SIZE,
        threads: int | None = None,
        executor: ExecutorName | Executor | Client = "threads",
        progress: bool = False,
        pif: ChangeDetector | Literal["auto"] | None = "auto",
        pif_dir: str | os.PathLike | None = None,
        cache: bool | str | os.PathLike = False,
    ) -> None:
        self.steps = steps
        self.window_size = window_size
        self.threads = threads
        self.executor = executor
        self.progress = progress
        self.pif = pif
        self.pif_dir = pif_dir
        self.cache = cache

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.steps is not None:
            if isinstance(self.steps, (str, bytes)) or not isinstance(self.steps, Sequence):
                raise SpectralMatchError(
                    f"Mosaic: steps must be a list of Adjuster, got {self.steps!r}"
                )
            if not self.steps:
                raise SpectralMatchError("Mosaic: steps is empty; give at least one Adjuster")
            for step in self.steps:
                if not isinstance(step, Adjuster):
                    raise SpectralMatchError(
                        f"Mosaic: steps must be Adjuster instances, got {step!r}"
                    )
        for step in self._new_steps():
            step._validate_params()
        if isinstance(self.pif, ChangeDetector):
            self.pif._validate_params()

    def _new_steps(self) -> list[Adjuster]:
        """Unfitted copies of the steps (or the default steps)."""
        return clone(list(self.steps)) if self.steps is not None else default_steps()

    def _statistics_pass(self) -> StatisticsPass:
        cache = None
        if self.cache:
            cache = StatisticsCache(None if self.cache is True else self.cache)
        return StatisticsPass(self.window_size, self._executor(), self.progress, cache)

    def _records_folder(self) -> Path | None:
        """Where completion records of outputs are kept: in the cache folder, if any."""
        if not self.cache:
            return None
        return StatisticsCache(None if self.cache is True else self.cache).folder / "outputs"

    def _executor(self) -> Executor:
        if self._call_executor is not None:
            return self._call_executor
        return as_executor(self.executor, self.threads)

    #: The executor given to the running fit or transform, in place of ``executor``.
    _call_executor: Executor | None = None

    @contextlib.contextmanager
    def _running_on(self, executor: ExecutorName | Executor | Client | None) -> Iterator[None]:
        """Run this call's tasks on ``executor`` (None: the model's own)."""
        if executor is None:
            yield
            return
        if not ExecutorLike().accepts(executor):
            raise SpectralMatchError(
                f"Mosaic: executor must be {ExecutorLike().describe()}, got {executor!r}"
            )
        self._call_executor = as_executor(executor, self.threads)
        try:
            yield
        finally:
            del self._call_executor  # back to the class's None

    # ---------------------------------------------------------------- fit

    def fit(
        self,
        images: ImagesLike,
        *,
        executor: ExecutorName | Executor | Client | None = None,
    ) -> Mosaic:
        """Read the statistics of ``images`` once and fit every step; returns ``self``.

        Linear steps hand their successors the statistics mapped through themselves, so
        the whole model fits from one read pass; after a step that cannot do that, the
        statistics its successors ask for are measured again through the fitted steps
        (no files are written). On any error the model is left as it was.

        Parameters
        ----------
        images : ImageCollection, Image, folder, glob or list of paths
        executor : {"threads", "processes", "serial"}, Executor or dask.distributed.Client, \
optional
            Who runs this fit's tasks, in place of the model's ``executor``: e.g. a Client,
            whose workers then read the images. The fitted model is the same on any.
        """
        with self._running_on(executor):
            return self._fit_images(images)

    def _fit_images(self, images: ImagesLike) -> Mosaic:
        self._validate_params()
        collection = ImageCollection.coerce(images)
        _notice_all_valid(collection)
        edges = OverlapGraph.from_collection(collection).edges
        steps = self._new_steps()
        detector = CellPIF() if self.pif == "auto" else self.pif
        if detector is None or not edges:
            reads = self._fit_steps(steps, collection, edges, _fit)
        elif isinstance(detector, CellPIF) and self._fits_from_cells(steps, collection):
            reads = self._fit_without_changed_cells(steps, detector, collection, edges)
        else:
            reads = self._fit_on_pseudo_invariant(steps, detector, collection, edges)
        self.steps_ = steps
        self.images_ = [_image_entry(image) for image in collection]
        self.n_bands_ = collection.count
        self.reads_ = {name: reads.get(name, 0) for name in collection.names}
        return self

    def _detection_steps(self, collection: ImageCollection) -> list[Adjuster]:
        """New copies of the whole-image steps, which change is looked for after: a
        local step fitted on the contaminated statistics bends towards the changes and
        blurs them."""
        return [
            step
            for step in self._new_steps()
            if not any(isinstance(r, BlockMoments) for r in step.requests(collection))
        ] or self._new_steps()[:1]

    def _fits_from_cells(self, steps: list[Adjuster], collection: ImageCollection) -> bool:
        """Whether overlap cells serve ``steps``: they ask only for moments, which cells
        recompose."""
        return all(
            isinstance(r, (ImageMoments, OverlapMoments, BlockMoments))
            for step in steps
            for r in step.requests(collection)
        )

    def _cell_detection_steps(self, collection: ImageCollection) -> list[Adjuster]:
        """The steps the cells are compared after: the whole-image steps, when they map
        statistics; otherwise a global model of its own (not part of the fit)."""
        detection = self._detection_steps(collection)
        if all(
            type(s).transform_statistics is not Adjuster.transform_statistics for s in detection
        ):
            return detection
        return [GlobalModel()]

    def _fit_on_pseudo_invariant(
        self,
        steps: list[Adjuster],
        detector: ChangeDetector,
        collection: ImageCollection,
        edges: list[OverlapEdge],
    ) -> Counter[str]:
        """Fit the whole-image steps, mark the changed pixels of every overlap after them,
        then fit ``steps`` without those pixels."""
        detection = self._detection_steps(collection)
        reads = self._fit_steps(detection, collection, edges, _fit)
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(self.pif_dir) if self.pif_dir is not None else Path(scratch)
            select_pseudo_invariant(
                collection, edges, StepChain(tuple(detection)), detector, folder
            )
            # each image as it was given (its nodata too), less its changed pixels
            masked = collection.with_mask(RasterMask(str(folder / "{name}.tif")))
            reads += self._fit_steps(steps, masked, edges, _fit)
        return reads

    def _fit_without_changed_cells(
        self,
        steps: list[Adjuster],
        detector: CellPIF,
        collection: ImageCollection,
        edges: list[OverlapEdge],
    ) -> Counter[str]:
        """One read: each overlap measured per cell too; the whole-image steps fitted,
        the changed cells found after them, and ``steps`` fitted from the other cells."""
        side = cell_side(collection, edges, detector.decimation)
        cells = OverlapCells(side)
        requests = [step.requests(collection) for step in steps]
        flat = [r for own in requests for r in own]
        detection = [
            r for step in self._cell_detection_steps(collection) for r in step.requests(collection)
        ]
        statistics = self._statistics_pass().collect(collection, edges, [*flat, *detection, cells])
        grids = list(Plan.of(flat).grids)
        shapes = {edge: CellGrid.over(edge.bounds, side, grids).shape for edge in edges}
        left_out: dict[OverlapEdge, np.ndarray] = {}
        # the rounds need what the detection steps ask for and the cells, not the blocks
        detected = statistics.select([*detection, cells])
        for _ in range(CHANGE_ROUNDS):
            mapped = without_cells(detected, left_out, side, keep_cells=True)
            with warnings.catch_warnings():  # the final fit says what these would
                warnings.simplefilter("ignore", SpectralMatchWarning)
                for step in self._cell_detection_steps(collection):
                    step.fit(mapped.select(step.requests(collection)))
                    mapped = step.transform_statistics(mapped)
            left_out = {
                pair.edge: detector.changed_cells(*pair.cells, shapes[pair.edge])
                for pair in mapped.pairs
                if pair.cells is not None
            }
        if self.pif_dir is not None:
            write_cell_masks(collection, left_out, side, grids, self.pif_dir)

        def keep(measured: OverlapStatistics) -> OverlapStatistics:
            return without_cells(measured, left_out, side)

        return self._fit_measured(
            steps, keep(statistics), requests, collection, edges, _fit, extra=[cells], keep=keep
        )

    def _fit_steps(
        self,
        steps: list[Adjuster],
        collection: ImageCollection,
        edges: list[OverlapEdge],
        fit_one: FitOne,
        whole_images: Sequence[int] | None = None,
        new_images: bool = False,
    ) -> Counter[str]:
        """Fit ``steps`` in order, each on the statistics it asked for after the steps
        before it; returns the windows read per image."""
        requests: list[list[Request]] = [
            step.new_image_requests(collection) if new_images else step.requests(collection)
            for step in steps
        ]
        statistics = self._statistics_pass().collect(
            collection, edges, [r for own in requests for r in own], whole_images
        )
        return self._fit_measured(
            steps, statistics, requests, collection, edges, fit_one, whole_images
        )

    def _fit_measured(
        self,
        steps: list[Adjuster],
        statistics: OverlapStatistics,
        requests: list[list[Request]],
        collection: ImageCollection,
        edges: list[OverlapEdge],
        fit_one: FitOne,
        whole_images: Sequence[int] | None = None,
        extra: Sequence[Request] = (),
        keep: Callable[[OverlapStatistics], OverlapStatistics] = lambda s: s,
    ) -> Counter[str]:
        """Fit ``steps`` from ``statistics`` (measured for ``requests``, one list per
        step). After a step that cannot map statistics, what the later steps ask for
        (and ``extra``) is measured again through the fitted steps and passed through
        ``keep``. Returns the windows read per image."""
        reads = Counter(statistics.reads)
        for position, step in enumerate(steps):
            fit_one(step, statistics.select(requests[position]))
            if position + 1 == len(steps):
                break
            try:
                statistics = step.transform_statistics(statistics)
            except NotImplementedError:
                later = [r for own in requests[position + 1 :] for r in own]
                correct = StepChain(tuple(steps[: position + 1]))
                statistics = self._statistics_pass().collect(
                    collection, edges, [*later, *extra], whole_images, correct
                )
                reads.update(statistics.reads)
                statistics = keep(statistics)
        return reads

    def _fit_new_images(
        self, steps: list[Adjuster], collection: ImageCollection, new: list[int]
    ) -> list[dict[str, Any]]:
        """Solve the parameters of images that were not in the fit, on ``steps`` (copies
        of the fitted ones), their earlier state frozen; returns the new ``images_``.

        The new images are measured against the fitted ones as ``collection`` gives them
        (with their masks) where it holds them, else as the model recorded them: their
        files and nodata, but not their masks, which a warning names."""
        given = {image.name: image for image in collection}
        fitted = [given.get(entry["name"]) or _recorded_image(entry) for entry in self.images_]
        unmasked = [
            entry["name"]
            for entry in self.images_
            if entry.get("masked") and entry["name"] not in given
        ]
        if unmasked:
            warnings.warn(
                f"{', '.join(unmasked)}: masked in the fit, but a model does not keep masks: "
                "the new images are measured against all their valid pixels (give these "
                "images with their masks in the same transform to measure without them)",
                SpectralMatchWarning,
                stacklevel=5,  # the caller of Mosaic.transform
            )
        for image in fitted:
            if not image.path.exists():
                raise SpectralMatchError(
                    f"{image.path}: image of the fitted model is missing; "
                    "new images are normalized against its overlaps"
                )
        combined = ImageCollection(fitted + [collection.images[i] for i in new])
        first_new = len(fitted)
        edges = [
            edge
            for edge in OverlapGraph.from_collection(combined).edges
            if edge.first < first_new <= edge.second
        ]
        names = [collection.names[i] for i in new]

        def fit_new(step: Adjuster, statistics: OverlapStatistics) -> None:
            step.fit_new(statistics, names)

        self._fit_steps(
            steps, combined, edges, fit_new, range(first_new, len(combined)), new_images=True
        )
        return self.images_ + [_image_entry(collection.images[i]) for i in new]

    # ---------------------------------------------------------------- transform

    def transform(
        self,
        images: ImagesLike,
        out_dir: str | os.PathLike | None = None,
        *,
        outputs: Sequence[str | os.PathLike] | None = None,
        cog: bool = False,
        working_dtype: WorkingDtype | None = None,
        output_dtype: str | None = None,
        resume: bool = False,
        executor: ExecutorName | Executor | Client | None = None,
        **creation_options: Any,
    ) -> ImageCollection:
        """Write the corrected images; returns them as a new collection.

        Images that were not in the fit are first solved against the frozen model (their
        own parameters only), which is how a new time-series scene is normalized; the
        fitted images must then still exist at their recorded paths. The model takes the
        new images in only once every output is written: a failed transform leaves it
        as it was.

        While it writes, the output folders are locked against other runs
        (:mod:`spectralmatch.raster.lock`); each output appears under its name only
        once complete, and with the cache on, a completion record is kept for ``resume``.

        Parameters
        ----------
        images : ImageCollection, Image, folder, glob or list of paths
        out_dir : path, optional
            Folder for the outputs, which keep the input file names.
        outputs : list of paths, optional
            One output path per image, instead of ``out_dir``.
        cog : bool, default False
            Write Cloud Optimized GeoTIFFs (GDAL's COG driver) instead of tiled GeoTIFFs.
        working_dtype : {"float32", "float64"}, optional
            Precision of the computation; default: float64 for float64 data and integers
            wider than 16 bits, float32 otherwise (each exact for its data).
        output_dtype : str, optional
            Data type of every output (e.g. ``"uint16"``, ``"float32"``, or GDAL's
            ``"Float32"``); default: each input's own. Required when the inputs' dtypes
            differ.
        resume : bool, default False
            Keep outputs that a previous run of the same model, inputs and settings
            completed (verified by their completion records: size and checksum), and
            write only the others. Needs the cache, where the records are kept.
        executor : {"threads", "processes", "serial"}, Executor or dask.distributed.Client, \
optional
            Who runs this transform's tasks, in place of the model's ``executor``: e.g. a
            Client, whose workers then write the outputs. The bytes are the same on any.
        **creation_options
            GDAL GeoTIFF creation options that override the defaults (e.g. ``compress``).

        Warns
        -----
        SpectralMatchWarning
            For an image of which more than 0.1 % of the valid values were clipped to
            the output dtype's range.

        Raises
        ------
        NotFittedError
            If the model was not fitted or loaded.
        SpectralMatchError
            If an output would overwrite an input, an image does not fit the model, the
            inputs' dtypes differ without ``output_dtype``, or another run is writing
            into an output folder.
        """
        with self._running_on(executor):
            return self._transform_images(
                images, out_dir, outputs, cog, working_dtype, output_dtype, resume, creation_options
            )

    def _transform_images(
        self,
        images: ImagesLike,
        out_dir: str | os.PathLike | None,
        outputs: Sequence[str | os.PathLike] | None,
        cog: bool,
        working_dtype: WorkingDtype | None,
        output_dtype: str | None,
        resume: bool,
        creation_options: dict[str, Any],
    ) -> ImageCollection:
        check_is_fitted(self)
        self._validate_params()
        output_dtype = dtype_name("Mosaic.transform", "output_dtype", output_dtype)
        _check_transform_options(working_dtype, cog, resume)
        collection = ImageCollection.coerce(images)
        if collection.count != self.n_bands_:
            raise SpectralMatchError(
                f"{collection.images[0].path}: has {collection.count} bands, "
                f"the model was fitted on {self.n_bands_}"
            )
        if output_dtype is None:
            _check_same_dtype(collection)
        if resume and not self.cache:
            raise SpectralMatchError(
                "Mosaic.transform: resume needs the cache (cache=True or a folder), where "
                "the completion records of the outputs are kept"
            )
        paths = resolve_outputs(collection, out_dir, outputs)
        with folder_lock(path.parent for path in paths):
            steps, images_ = self._steps_for(collection)
            correct = StepChain(tuple(steps))
            settings = [cog, working_dtype, output_dtype, sorted(creation_options.items())]
            records = self._records_folder()
            # hashed once: the model's arrays grow with the images
            model = steps_digest(steps) if records else ""
            tasks = []
            for image, path in zip(collection, paths, strict=True):
                # a last affine step is left to the pass that converts to the output dtype
                before, affine = correct.for_image(image.name).split_affine(image.name)
                digest = _output_digest(model, image, settings) if records else ""
                tasks.append(
                    WriteTask(
                        image,
                        path,
                        before,
                        cog,
                        self.window_size,
                        working_dtype,
                        creation_options,
                        output_dtype,
                        records,
                        digest,
                        affine,
                    )
                )
            todo = [t for t in tasks if not (resume and _completed(t))]
            written = self._executor().map(
                write_corrected, todo, progress=self.progress, label="transform"
            )
        for result, task in zip(written, todo, strict=True):
            _warn_if_clipped(result, task.image.name, output_dtype or task.image.dtype)
        self.steps_, self.images_ = steps, images_
        return ImageCollection(
            [Image(path, name=name) for path, name in zip(paths, collection.names, strict=True)]
        )

    def _steps_for(self, collection: ImageCollection) -> tuple[list[Adjuster], list[dict]]:
        """The steps (and ``images_``) that transform ``collection``: the fitted ones, or
        copies extended by the images that were not in the fit."""
        known = {entry["name"] for entry in self.images_}
        new = [i for i, name in enumerate(collection.names) if name not in known]
        if not new:
            return self.steps_, self.images_
        steps = copy.deepcopy(self.steps_)
        return steps, self._fit_new_images(steps, collection, new)

    def fit_transform(
        self, images: ImagesLike, out_dir: str | os.PathLike | None = None, **kwargs: Any
    ) -> ImageCollection:
        """``fit(images)`` then ``transform(images, out_dir, ...)``."""
        return self.fit(images).transform(images, out_dir, **kwargs)

    def merge(
        self,
        images: ImagesLike,
        output: str | os.PathLike,
        *,
        seamlines: SeamlineMethod | Seamline | str | os.PathLike | None = "least-cost",
        feather: float = 0,
        cog: bool = False,
    ) -> Path:
        """Merge images (e.g. the output of :meth:`transform`) into one raster.

        Parameters
        ----------
        images : ImageCollection, folder, glob or list of paths (on one grid)
        output : path
        seamlines : {"least-cost", "voronoi"}, Seamline, vector file or None
            How the overlaps are split; None: the first valid value wins.
        feather : float
            Blend width across the cut lines, in pixels.
        cog : bool
            Write a Cloud Optimized GeoTIFF.
        """
        collection = ImageCollection.coerce(images)
        builders: dict[str, Callable[[ImageCollection], Seamline]] = {
            "least-cost": Seamline.least_cost,
            "voronoi": Seamline.voronoi,
        }
        if isinstance(seamlines, str) and seamlines in builders:
            seamlines = builders[seamlines](collection)
        return Path(
            merge_rasters(
                collection,
                output,
                seamlines=seamlines,
                feather=feather,
                window_size=self.window_size,
                save_as_cog=cog,
            )
        )

    # ---------------------------------------------------------------- persistence

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model to a human-readable JSON file (atomically).

        Each step is recorded by its importable class path, its hyper-parameters and
        its learned state; large arrays (block surfaces) go to a sidecar ``.npz`` beside
        it, with the same stem, referenced from the JSON.

        Raises
        ------
        SpectralMatchError
            If a step's class cannot be imported by a later run (defined in ``__main__``).
        """
        check_is_fitted(self)
        params = {"window_size": self.window_size, "threads": self.threads}
        document = ModelDocument(params, self.n_bands_, self.images_, list(self.steps_))
        return write_model(document, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Mosaic:
        """Read a model written by :meth:`save`.

        Only subclasses of :class:`Adjuster` are accepted as steps; every field is
        checked, and a bad file raises :class:`SpectralMatchError` naming it and the field.
        """
        document = read_model(path)
        model = cls(steps=[clone(step) for step in document.steps], **document.params)
        model.steps_ = document.steps
        model.images_ = document.images
        model.n_bands_ = document.n_bands
        return model


def _fit(step: Adjuster, statistics: OverlapStatistics) -> None:
    step.fit(statistics)


def _image_entry(image: Image) -> dict[str, Any]:
    """An image as the model records it (``images_``): its name, its file, the nodata
    value it was given instead of the file's own, which new images are measured against
    the fitted ones with, and whether it had a mask (which is not kept)."""
    entry: dict[str, Any] = {"name": image.name, "path": str(image.path.resolve())}
    if image.nodata_given:
        entry["nodata"] = image.nodata
    if image.mask is not None:
        entry["masked"] = True
    return entry


def _recorded_image(entry: dict[str, Any]) -> Image:
    """A fitted image as the model recorded it (without its mask)."""
    return Image(entry["path"], name=entry["name"], nodata=entry.get("nodata"))


def _check_transform_options(working_dtype: Any, cog: Any, resume: Any) -> None:
    if working_dtype is not None and working_dtype not in WORKING_DTYPES:
        raise SpectralMatchError(
            f"Mosaic.transform: working_dtype must be one of {', '.join(WORKING_DTYPES)}, "
            f"got {working_dtype!r}"
        )
    for name, value in (("cog", cog), ("resume", resume)):
        if not BOOLEAN.accepts(value):
            raise SpectralMatchError(
                f"Mosaic.transform: {name} must be True or False, got {value!r}"
            )


def _notice_all_valid(collection: ImageCollection) -> None:
    """Say which images have neither a nodata value nor a mask: all their pixels count."""
    names = [
        image.path.name
        for image in collection
        if image.nodata is None and not image.profile["dataset_mask"]
    ]
    if names:
        listed = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        warnings.warn(
            f"{listed}: no nodata value and no mask, so every pixel is taken as valid "
            "(set one with nodata= / --nodata)",
            SpectralMatchWarning,
            stacklevel=3,
        )


def _check_same_dtype(collection: ImageCollection) -> None:
    """Refuse inputs of different dtypes when each output would keep its own: the
    matched values of one would not fit the range of another."""
    dtypes = {image.dtype for image in collection}
    if len(dtypes) > 1:
        listing = ", ".join(f"{image.path.name} ({image.dtype})" for image in collection)
        common = np.result_type(*dtypes).name
        raise SpectralMatchError(
            f"{collection.images[0].path.parent}: the images have different data types "
            f"({listing}); matched values may not fit the smaller ones. Give one output "
            f"data type: output_dtype={common!r} (--output-dtype {common})"
        )


def _output_digest(model: str, image: Image, settings: list[Any]) -> str:
    """What identifies an output's content: the model (its :func:`steps_digest`), the
    input file and the settings."""
    status = image.path.stat()
    source = [str(image.path.resolve()), status.st_size, status.st_mtime_ns, image.name]
    parts = json.dumps([model, source, settings], default=repr)
    return hashlib.sha256(parts.encode()).hexdigest()


def _completed(task: WriteTask) -> bool:
    return task.records is not None and is_complete(task.records, task.path, task.digest)


def _warn_if_clipped(result: Written, name: str, dtype: str) -> None:
    if result.valid and result.clipped / result.valid > CLIPPED_WARNING_FRACTION:
        warnings.warn(
            f"{name}: {result.clipped / result.valid:.2%} of the valid values were clipped "
            f"to the range of {dtype} ({result.path}); give a wider output dtype "
            "(output_dtype / --output-dtype) to keep them",
            SpectralMatchWarning,
            stacklevel=3,
        )
