"""The base class of one step of a radiometric model, and a chain of fitted steps."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from attrs import frozen
from rasterio.windows import Window

from ..engine.collect import StatisticsPass
from ..errors import SpectralMatchError, SpectralMatchWarning
from ..geo.overlap import OverlapGraph
from ..raster.collection import ImageCollection
from ..raster.convert import BandAffine
from ..raster.image import Image
from ..stats.overlap import OverlapStatistics
from ..stats.requests import ImageMoments, OverlapMoments, Request
from .base import Estimator, check_is_fitted


class Adjuster(Estimator):
    """One step of a radiometric model: asks for statistics, learns, corrects windows.

    Subclass it (keyword-only hyper-parameters in ``__init__``) and put an instance in
    ``Mosaic(steps=[...])``. A subclass implements

    - ``requests(collection)``: the statistics it needs (default: moments of whole
      images and of overlaps); the engine measures the requests of every step in one
      read pass;
    - ``fit(statistics)``: learn state (attributes ending in ``_``) from the results of
      its requests, as corrected by the steps before it, and return ``self``;
    - ``transform_window(image, window, values, valid)``: the corrected float values
      (``values`` usually holds the pixels of ``window``; for change detection it may be
      a decimated read spanning it, so use ``values.shape`` for its grid); ``values``
      may be changed in place and returned, but not kept: the engine reuses its memory
      for the next window;
    - ``get_state()`` / ``set_state(state)``: the learned state as JSON-ready data
      (lists, numbers, strings, or numpy arrays, which go to a sidecar file);

    and, where it can,

    - ``transform_statistics(statistics)``: the statistics after this step, so the
      steps after it fit without another read pass (exact for linear steps, through
      ``statistics.affine``); without it, the engine measures what they ask for again,
      through the fitted steps;
    - ``fit_new(statistics, names)``: parameters for images not seen at fit, solved
      against the frozen state (how a new time-series scene is normalized), with
      ``new_image_requests`` saying what that needs measured;
    - ``for_image(name)``: the step as one image's transform needs it, what a task
      sends to a worker, where its state holds every image's (default: itself);
    - ``band_affine(name)``: image ``name``'s correction as a
      :class:`~spectralmatch.BandAffine`, where it is exactly a gain and an offset
      per band (default: None); a last step's is applied in the pass that
      converts to the output dtype.

    docs/extending.md walks through two complete steps.
    """

    def requests(self, collection: ImageCollection) -> list[Request]:
        """Statistics this step needs to fit on ``collection`` (nothing is read here)."""
        return [ImageMoments(), OverlapMoments()]

    def new_image_requests(self, collection: ImageCollection) -> list[Request]:
        """Statistics :meth:`fit_new` needs (default: the same as :meth:`requests`)."""
        return self.requests(collection)

    def fit(self, statistics: OverlapStatistics) -> Adjuster:
        raise NotImplementedError(f"{type(self).__name__} does not implement fit(statistics)")

    def transform_window(
        self, image: Image, window: Window, values: np.ndarray, valid: np.ndarray
    ) -> np.ndarray:
        raise NotImplementedError(
            f"{type(self).__name__} does not implement transform_window(image, window, "
            "values, valid)"
        )

    def transform_statistics(self, statistics: OverlapStatistics) -> OverlapStatistics:
        """The statistics after this step; raises NotImplementedError where only another
        read pass can tell (a non-linear step)."""
        raise NotImplementedError(f"{type(self).__name__} cannot map statistics")

    def band_affine(self, name: str) -> BandAffine | None:
        """This fitted step's correction of image ``name`` as a gain and an offset per
        band, where it is one (None, the default, where it is not). The transform then
        applies it in the pass that converts to the output dtype, with the same float
        arithmetic as :meth:`transform_window` (:meth:`BandAffine.apply`)."""
        return None

    def for_image(self, name: str) -> Adjuster:
        """This fitted step as the transform of image ``name`` needs it: what a transform
        task carries to a worker. The default is the step itself; a step whose state
        grows with the images (per image and block over the whole mosaic) gives a copy
        with that image's part only, so that what is sent does not grow with them."""
        return self

    def fit_new(self, statistics: OverlapStatistics, names: list[str]) -> None:
        raise SpectralMatchError(
            f"{type(self).__name__} cannot transform images that were not in the fit: "
            f"{', '.join(names)}"
        )

    def get_state(self) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} does not implement get_state()")

    def set_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement set_state(state)")

    def _image_row(self, name: str) -> int:
        """Position of image ``name`` in the learned ``images_``, or a clear error."""
        check_is_fitted(self)
        images: list[str] = getattr(self, "images_", [])
        try:
            return images.index(name)
        except ValueError:
            raise SpectralMatchError(
                f"{name}: not in this {type(self).__name__} (fitted on {', '.join(images)})"
            ) from None

    def _statistics(self, statistics: Any) -> OverlapStatistics:
        """``statistics`` as given, or measured for this step alone when images are
        given instead (so that ``GlobalModel().fit("folder/")`` works too)."""
        if isinstance(statistics, OverlapStatistics):
            return statistics
        try:
            collection = ImageCollection.coerce(statistics)
        except (TypeError, SpectralMatchError) as error:
            raise SpectralMatchError(
                f"{type(self).__name__}.fit expects OverlapStatistics or images (a "
                f"collection, folder, glob or list of paths), got {statistics!r} ({error})"
            ) from None
        edges = OverlapGraph.from_collection(collection).edges
        requests = self.requests(collection)
        return StatisticsPass().collect(collection, edges, requests).select(requests)


def warn_left_unchanged(names: Sequence[str]) -> None:
    """Warn that the images ``names`` have no usable overlap with any other image, so a
    step leaves them unchanged.

    Every step words it the same and issues it from here, so that in a model whose steps
    all leave the same images unchanged Python's default filter shows it once.
    """
    warnings.warn(
        f"left unchanged, no usable overlap with any other image: {', '.join(names)}",
        SpectralMatchWarning,
        stacklevel=1,
    )


@frozen
class StepChain:
    """Fitted steps applied in order to a window of any image (picklable, so that a
    process pool can run it)."""

    steps: tuple[Adjuster, ...]

    def for_image(self, name: str) -> StepChain:
        """The chain as the transform of image ``name`` needs it
        (:meth:`Adjuster.for_image` of each step)."""
        return StepChain(tuple(step.for_image(name) for step in self.steps))

    def split_affine(self, name: str) -> tuple[StepChain | None, BandAffine | None]:
        """The chain for image ``name`` as the transform applies it: the steps before a
        last step that is a :class:`BandAffine` (None where there are none) and that
        affine; or the whole chain and None."""
        affine = self.steps[-1].band_affine(name) if self.steps else None
        if affine is None:
            return self, None
        return (StepChain(self.steps[:-1]) if len(self.steps) > 1 else None), affine

    def __call__(
        self, image: Image, window: Window, values: np.ndarray, valid: np.ndarray
    ) -> np.ndarray:
        for step in self.steps:
            values = step.transform_window(image, window, values, valid)
        return values
