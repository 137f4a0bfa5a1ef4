"""The facade: a sequence of steps fitted on a collection and applied to rasters."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from ._version import __version__
from .adjuster import Adjuster
from .base import Estimator, check_is_fitted
from .collection import ImageCollection, PathsLike
from .engine import collect_statistics, run_tasks, write_corrected
from .errors import SpectralMatchError
from .global_model import GlobalModel
from .image import DEFAULT_WINDOW_SIZE, Image
from .io import check_not_input
from .overlap import OverlapGraph, OverlapStatistics

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

    Attributes
    ----------
    images_ : list of dict
        Name and path of every image the model was fitted on.
    n_bands_ : int

    Examples
    --------
    >>> import tempfile
    >>> model = Mosaic([GlobalModel()]).fit("data/")
    >>> outputs = model.transform("data/", out_dir=tempfile.mkdtemp())
    >>> len(outputs)
    4
    """

    def __init__(self, steps: Sequence[Adjuster] | None = None,
                 window_size: int = DEFAULT_WINDOW_SIZE, threads: int | None = None,
                 progress: bool = False) -> None:
        self.steps = steps
        self.window_size = window_size
        self.threads = threads
        self.progress = progress

    @property
    def steps_(self) -> list[Adjuster]:
        """The steps in use (``steps``, or the default)."""
        return list(self.steps) if self.steps is not None else [GlobalModel()]

    # ---------------------------------------------------------------- fit

    def fit(self, images: ImagesLike) -> Mosaic:
        """Read the statistics of ``images`` once and fit every step; returns ``self``."""
        collection = ImageCollection.coerce(images)
        steps = self.steps_
        for step in steps:
            if not isinstance(step, Adjuster):
                raise SpectralMatchError(f"steps must be Adjuster instances, got {step!r}")
        graph = OverlapGraph.from_collection(collection)
        statistics = collect_statistics(collection, graph.edges, window_size=self.window_size,
                                        threads=self.threads, progress=self.progress)
        self._fit_steps(steps, statistics, lambda step, stats: step.fit(stats))
        self.steps = steps
        self.images_ = [{"name": image.name, "path": str(image.path.resolve())}
                        for image in collection]
        self.n_bands_ = collection.count
        return self

    @staticmethod
    def _fit_steps(steps: list[Adjuster], statistics: OverlapStatistics, fit_one) -> None:
        for position, step in enumerate(steps):
            fit_one(step, statistics)
            if position + 1 < len(steps):
                statistics = step.transform_statistics(statistics)

    def _fit_new_images(self, collection: ImageCollection, new: list[int]) -> None:
        """Solve the parameters of images that were not in the fit, steps frozen."""
        fitted = [Image(entry["path"], name=entry["name"]) for entry in self.images_]
        for image in fitted:
            if not image.path.exists():
                raise SpectralMatchError(f"{image.path}: image of the fitted model is missing; "
                                         "new images are normalized against its overlaps")
        combined = ImageCollection(fitted + [collection.images[i] for i in new])
        graph = OverlapGraph.from_collection(combined)
        first_new = len(fitted)
        edges = [edge for edge in graph.edges if edge.first < first_new <= edge.second]
        statistics = collect_statistics(combined, edges, whole_images=range(first_new,
                                        len(combined)), window_size=self.window_size,
                                        threads=self.threads, progress=self.progress)
        names = [collection.names[i] for i in new]
        self._fit_steps(self.steps_, statistics, lambda step, stats: step.fit_new(stats, names))
        self.images_ += [{"name": collection.names[i],
                          "path": str(collection.images[i].path.resolve())} for i in new]

    # ---------------------------------------------------------------- transform

    def transform(self, images: ImagesLike, out_dir: str | os.PathLike | None = None, *,
                  outputs: Sequence[str | os.PathLike] | None = None, cog: bool = False,
                  working_dtype: str = "float32", **creation_options: Any) -> ImageCollection:
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
            raise SpectralMatchError(f"{collection.images[0].path}: has {collection.count} bands, "
                                     f"the model was fitted on {self.n_bands_}")
        paths = resolve_outputs(collection, out_dir, outputs)
        known = {entry["name"] for entry in self.images_}
        new = [i for i, name in enumerate(collection.names) if name not in known]
        if new:
            self._fit_new_images(collection, new)
        steps = self.steps_

        def write(index: int) -> Path:
            image = collection.images[index]

            def correct(values: np.ndarray, valid: np.ndarray, window: Window) -> np.ndarray:
                for step in steps:
                    values = step.transform_window(image, window, values, valid)
                return values

            return write_corrected(image, paths[index], correct, cog=cog,
                                   window_size=self.window_size, working_dtype=working_dtype,
                                   **creation_options)

        written = run_tasks(write, range(len(collection)), self.threads, self.progress, "transform")
        return ImageCollection([Image(path, name=name)
                                for path, name in zip(written, collection.names, strict=True)])

    def fit_transform(self, images: ImagesLike, out_dir: str | os.PathLike | None = None,
                      **kwargs: Any) -> ImageCollection:
        """``fit(images)`` then ``transform(images, out_dir, ...)``."""
        return self.fit(images).transform(images, out_dir, **kwargs)

    # ---------------------------------------------------------------- persistence

    def to_dict(self) -> dict[str, Any]:
        """The fitted model as JSON-ready data."""
        check_is_fitted(self, "images_")
        params = {k: v for k, v in self.get_params().items() if k not in ("steps", "progress")}
        return {"format": MODEL_FORMAT, "format_version": MODEL_VERSION,
                "spectralmatch_version": __version__, "params": params,
                "n_bands": self.n_bands_, "images": self.images_,
                "steps": [step.to_dict() for step in self.steps_]}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model to a human-readable JSON file (atomically)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(temporary, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Mosaic:
        """Read a model written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise SpectralMatchError(f"{path}: cannot read model ({error})") from None
        if data.get("format") != MODEL_FORMAT:
            raise SpectralMatchError(f"{path}: not a spectralmatch model file")
        model = cls(steps=[Adjuster.from_dict(step) for step in data["steps"]], **data["params"])
        model.images_ = data["images"]
        model.n_bands_ = data["n_bands"]
        return model


def resolve_outputs(collection: ImageCollection, out_dir: str | os.PathLike | None,
                    outputs: Sequence[str | os.PathLike] | None) -> list[Path]:
    """Output paths: given one per image, or the input file names in ``out_dir``.

    Creates the output folder; refuses paths that are inputs.
    """
    if (out_dir is None) == (outputs is None):
        raise SpectralMatchError("give either out_dir or outputs")
    if outputs is not None:
        paths = [Path(p) for p in outputs]
        if len(paths) != len(collection):
            raise SpectralMatchError(f"{len(paths)} output paths for {len(collection)} images")
    else:
        paths = [Path(out_dir) / image.path.with_suffix(".tif").name for image in collection]
    if len(set(paths)) != len(paths):
        raise SpectralMatchError("two images would be written to the same output path")
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        check_not_input(path, [image.path for image in collection])
    return paths
