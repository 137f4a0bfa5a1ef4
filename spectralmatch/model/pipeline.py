"""The facade: a sequence of steps fitted on a collection and applied to rasters."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from .._typing import PathsLike
from .._version import __version__
from ..engine.cache import StatisticsCache
from ..engine.passes import collect_statistics, run_tasks, write_corrected
from ..errors import SpectralMatchError
from ..geo.overlap import OverlapEdge, OverlapGraph
from ..masks.base import combine
from ..masks.raster import RasterMask
from ..ops.merge import merge_rasters
from ..ops.seamline import Seamline
from ..raster.collection import ImageCollection
from ..raster.image import DEFAULT_WINDOW_SIZE, Image
from ..raster.paths import resolve_outputs
from ..stats.overlap import OverlapStatistics
from .adjuster import Adjuster
from .base import Estimator, check_is_fitted
from .global_model import GlobalModel
from .pif import ChangeDetector, select_pseudo_invariant

MODEL_FORMAT = "spectralmatch.Mosaic"
MODEL_VERSION = 1

ImagesLike = ImageCollection | Image | PathsLike


class Mosaic(Estimator):
    """A radiometric model: steps fitted together from one pass of statistics.

    Parameters
    ----------
    steps : sequence of Adjuster, optional
        Applied in order; default ``[GlobalModel()]``. Each step fits on the statistics
        as transformed by the steps before it.
    window_size : int, default 1024
        Pixels per side of the windows read and written; memory grows with its square.
    threads : int, optional
        Images processed at once (default: the number of CPUs).
    progress : bool, default False
        Show progress bars.
    pif : ChangeDetector, optional
        Restrict the fit to pseudo-invariant pixels: after a first fit, each overlap is
        examined for change (e.g. :class:`~spectralmatch.pif.ResidualPIF`,
        :class:`~spectralmatch.pif.IRMAD`) and the model is fitted again without the
        changed pixels.
    pif_dir : path, optional
        Where to keep the change masks (``<image>.tif``, 1 = changed) for inspection and
        reuse; by default they are temporary.
    cache : bool or path, default False
        Keep the statistics of each image and overlap in a cache folder (``True``: the
        default folder, see :func:`~spectralmatch.cache.default_cache_folder`), so that a
        later fit reads only new or changed images (and the others only where they
        overlap a new one). Keys include each file's path, size and modification time.

    Attributes
    ----------
    images_ : list of dict
        Name and path of every image the model was fitted on.
    n_bands_ : int
    reads_ : dict
        Windows read from each image by the last fit (0 for an image whose statistics
        all came from the cache).

    Examples
    --------
    >>> import tempfile
    >>> model = Mosaic([GlobalModel()]).fit("data/")
    >>> outputs = model.transform("data/", out_dir=tempfile.mkdtemp())
    >>> len(outputs)
    4
    """

    def __init__(
        self,
        steps: Sequence[Adjuster] | None = None,
        window_size: int = DEFAULT_WINDOW_SIZE,
        threads: int | None = None,
        progress: bool = False,
        pif: ChangeDetector | None = None,
        pif_dir: str | os.PathLike | None = None,
        cache: bool | str | os.PathLike = False,
    ) -> None:
        self.steps = steps
        self.window_size = window_size
        self.threads = threads
        self.progress = progress
        self.pif = pif
        self.pif_dir = pif_dir
        self.cache = cache

    @property
    def steps_(self) -> list[Adjuster]:
        """The steps in use (``steps``, or the default)."""
        return list(self.steps) if self.steps is not None else [GlobalModel()]

    # ---------------------------------------------------------------- fit

    def fit(self, images: ImagesLike) -> Mosaic:
        """Read the statistics of ``images`` once and fit every step; returns ``self``.

        Linear steps hand their successors the statistics mapped through themselves, so
        the whole model fits from one read pass; after a step that cannot do that, the
        images are streamed through the fitted steps once more (no files are written).
        """
        collection = ImageCollection.coerce(images)
        steps = self.steps_
        for step in steps:
            if not isinstance(step, Adjuster):
                raise SpectralMatchError(f"steps must be Adjuster instances, got {step!r}")
            step.prepare(collection)
        graph = OverlapGraph.from_collection(collection)
        self.reads_ = dict.fromkeys(collection.names, 0)
        self._fit_steps(steps, collection, graph.edges, None, lambda step, stats: step.fit(stats))
        if self.pif is not None:
            self._refit_on_pseudo_invariant(steps, collection, graph.edges)
        self.steps = steps
        self.images_ = [
            {"name": image.name, "path": str(image.path.resolve())} for image in collection
        ]
        self.n_bands_ = collection.count
        return self

    def _refit_on_pseudo_invariant(
        self, steps: list[Adjuster], collection: ImageCollection, edges: list[OverlapEdge]
    ) -> None:
        """Mark the changed pixels of every overlap, then fit again without them."""
        # compare after the steps fitted on whole images only: a local step fitted on
        # the contaminated statistics bends towards the changes and blurs them
        detection = [step for step in steps if not step.block_grids] or steps[:1]
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(self.pif_dir) if self.pif_dir is not None else Path(scratch)
            select_pseudo_invariant(collection, edges, _compose(detection), self.pif, folder)
            change = RasterMask(str(folder / "{name}.tif"))
            masked = ImageCollection(
                [
                    Image(image.path, name=image.name, mask=combine(image.mask, change))
                    for image in collection
                ]
            )
            self._fit_steps(steps, masked, edges, None, lambda step, stats: step.fit(stats))

    def _fit_steps(
        self,
        steps: list[Adjuster],
        collection: ImageCollection,
        edges: list[OverlapEdge],
        whole_images: Sequence[int] | None,
        fit_one,
    ) -> None:
        grids = list(dict.fromkeys(grid for step in steps for grid in step.block_grids))

        cache = None
        if self.cache:
            cache = StatisticsCache(None if self.cache is True else self.cache)

        def statistics_after(fitted: list[Adjuster]) -> OverlapStatistics:
            correct = _compose(fitted) if fitted else None
            statistics = collect_statistics(
                collection,
                edges,
                whole_images,
                grids,
                correct,
                self.window_size,
                self.threads,
                self.progress,
                cache,
            )
            for name, count in statistics.reads.items():
                self.reads_[name] = self.reads_.get(name, 0) + count
            return statistics

        statistics = statistics_after([])
        for position, step in enumerate(steps):
            fit_one(step, statistics)
            if position + 1 == len(steps):
                break
            try:
                statistics = step.transform_statistics(statistics)
            except NotImplementedError:
                statistics = statistics_after(steps[: position + 1])

    def _fit_new_images(self, collection: ImageCollection, new: list[int]) -> None:
        """Solve the parameters of images that were not in the fit, steps frozen."""
        fitted = [Image(entry["path"], name=entry["name"]) for entry in self.images_]
        for image in fitted:
            if not image.path.exists():
                raise SpectralMatchError(
                    f"{image.path}: image of the fitted model is missing; "
                    "new images are normalized against its overlaps"
                )
        combined = ImageCollection(fitted + [collection.images[i] for i in new])
        graph = OverlapGraph.from_collection(combined)
        first_new = len(fitted)
        edges = [edge for edge in graph.edges if edge.first < first_new <= edge.second]
        names = [collection.names[i] for i in new]
        self.reads_ = {}
        self._fit_steps(
            self.steps_,
            combined,
            edges,
            range(first_new, len(combined)),
            lambda step, stats: step.fit_new(stats, names),
        )
        self.images_ += [
            {"name": collection.names[i], "path": str(collection.images[i].path.resolve())}
            for i in new
        ]

    # ---------------------------------------------------------------- transform

    def transform(
        self,
        images: ImagesLike,
        out_dir: str | os.PathLike | None = None,
        *,
        outputs: Sequence[str | os.PathLike] | None = None,
        cog: bool = False,
        working_dtype: str = "float32",
        **creation_options: Any,
    ) -> ImageCollection:
        """Write the corrected images; returns them as a new collection.

        Images that were not in the fit are first solved against the frozen model (their
        own parameters only), which is how a new time-series scene is normalized; the
        fitted images must then still exist at their recorded paths.

        Parameters
        ----------
        images : ImageCollection, Image, folder, glob or list of paths
        out_dir : path, optional
            Folder for the outputs, which keep the input file names.
        outputs : list of paths, optional
            One output path per image, instead of ``out_dir``.
        cog : bool, default False
            Write Cloud Optimized GeoTIFFs (GDAL's COG driver) instead of tiled GeoTIFFs.
        working_dtype : {"float32", "float64"}
            Precision of the computation.
        **creation_options
            GDAL GeoTIFF creation options that override the defaults (e.g. ``compress``).

        Raises
        ------
        NotFittedError
            If the model was not fitted or loaded.
        SpectralMatchError
            If an output would overwrite an input, or an image does not fit the model.
        """
        check_is_fitted(self, "images_")
        collection = ImageCollection.coerce(images)
        if collection.count != self.n_bands_:
            raise SpectralMatchError(
                f"{collection.images[0].path}: has {collection.count} bands, "
                f"the model was fitted on {self.n_bands_}"
            )
        paths = resolve_outputs(collection, out_dir, outputs)
        known = {entry["name"] for entry in self.images_}
        new = [i for i, name in enumerate(collection.names) if name not in known]
        if new:
            self._fit_new_images(collection, new)
        correct_any = _compose(self.steps_)

        def write(index: int) -> Path:
            image = collection.images[index]

            def correct(values: np.ndarray, valid: np.ndarray, window: Window) -> np.ndarray:
                return correct_any(image, window, values, valid)

            return write_corrected(
                image,
                paths[index],
                correct,
                cog=cog,
                window_size=self.window_size,
                working_dtype=working_dtype,
                **creation_options,
            )

        written = run_tasks(write, range(len(collection)), self.threads, self.progress, "transform")
        return ImageCollection(
            [Image(path, name=name) for path, name in zip(written, collection.names, strict=True)]
        )

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
        seamlines="least-cost",
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
        builders = {"least-cost": Seamline.least_cost, "voronoi": Seamline.voronoi}
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

    def to_dict(self) -> dict[str, Any]:
        """The fitted model as JSON-ready data."""
        check_is_fitted(self, "images_")
        fitting_only = ("steps", "progress", "pif", "pif_dir", "cache")
        params = {k: v for k, v in self.get_params().items() if k not in fitting_only}
        return {
            "format": MODEL_FORMAT,
            "format_version": MODEL_VERSION,
            "spectralmatch_version": __version__,
            "params": params,
            "n_bands": self.n_bands_,
            "images": self.images_,
            "steps": [step.to_dict() for step in self.steps_],
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model to a human-readable JSON file (atomically).

        Large arrays (block surfaces) go to a sidecar ``.npz`` beside it, with the same
        stem, referenced from the JSON.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        document = _extract_arrays(self.to_dict(), "", arrays)
        sidecar = path.with_suffix(".npz")
        if arrays:
            document["arrays"] = sidecar.name
            temporary = sidecar.with_name(f".{sidecar.stem}.tmp.npz")
            np.savez_compressed(temporary, **arrays)
            os.replace(temporary, sidecar)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(json.dumps(document, indent=1))
        os.replace(temporary, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Mosaic:
        """Read a model written by :meth:`save`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            if data.get("format") != MODEL_FORMAT:
                raise SpectralMatchError(f"{path}: not a spectralmatch model file")
            if "arrays" in data:
                with np.load(path.with_name(data["arrays"])) as arrays:
                    data = _restore_arrays(data, dict(arrays))
        except (OSError, ValueError) as error:
            raise SpectralMatchError(f"{path}: cannot read model ({error})") from None
        model = cls(steps=[Adjuster.from_dict(step) for step in data["steps"]], **data["params"])
        model.images_ = data["images"]
        model.n_bands_ = data["n_bands"]
        return model


def _compose(steps: list[Adjuster]):
    """One function applying ``steps`` in order to a window of any image."""

    def correct(image: Image, window: Window, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        for step in steps:
            values = step.transform_window(image, window, values, valid)
        return values

    return correct


def _extract_arrays(value: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` with every ndarray replaced by ``{"array": key}``, collected in ``arrays``."""
    if isinstance(value, np.ndarray):
        arrays[key] = value
        return {"array": key}
    if isinstance(value, dict):
        return {k: _extract_arrays(v, f"{key}.{k}" if key else k, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_extract_arrays(v, f"{key}.{i}", arrays) for i, v in enumerate(value)]
    return value


def _restore_arrays(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of :func:`_extract_arrays`."""
    if isinstance(value, dict):
        if set(value) == {"array"}:
            return arrays[value["array"]]
        return {k: _restore_arrays(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore_arrays(v, arrays) for v in value]
    return value
