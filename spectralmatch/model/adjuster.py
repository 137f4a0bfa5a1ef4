"""The base class of one fit/transform stage of a :class:`~spectralmatch.Mosaic`."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
from rasterio.windows import Window

from ..errors import SpectralMatchError
from ..raster.collection import ImageCollection
from ..raster.image import Image
from ..stats.overlap import OverlapStatistics
from .base import Estimator


class Adjuster(Estimator):
    """One stage of a radiometric model: learns from statistics, corrects windows.

    Subclass it and put an instance in ``Mosaic(steps=[...])``. A subclass implements

    - ``fit(statistics)``: learn state (attributes ending in ``_``) and return ``self``;
    - ``transform_window(image, window, values, valid)``: the corrected float values
      (``values`` usually holds the pixels of ``window``; for change detection it may be
      a decimated read spanning it, so use ``values.shape`` for its grid);
    - ``get_state()`` / ``set_state(state)``: the learned state as JSON-ready data;

    and, where it can,

    - ``transform_statistics(statistics)``: the statistics after this step, so the next
      step fits without another read pass (exact for linear steps);
    - ``fit_new(statistics, names)``: parameters for images not seen at fit, solved
      against the frozen state (how a new time-series scene is normalized).
    """

    def prepare(self, collection: ImageCollection) -> None:
        """Called by :class:`Mosaic` with the collection before the statistics pass."""

    @property
    def block_grids(self) -> list:
        """Block grids whose per-block statistics this step needs (after ``prepare``)."""
        return []

    def fit(self, statistics: OverlapStatistics) -> Adjuster:
        raise NotImplementedError

    def transform_window(
        self, image: Image, window: Window, values: np.ndarray, valid: np.ndarray
    ) -> np.ndarray:
        raise NotImplementedError

    def transform_statistics(self, statistics: OverlapStatistics) -> OverlapStatistics:
        raise NotImplementedError(f"{type(self).__name__} cannot map statistics")

    def fit_new(self, statistics: OverlapStatistics, names: list[str]) -> None:
        raise SpectralMatchError(
            f"{type(self).__name__} cannot transform images that were not "
            f"in the fit: {', '.join(names)}"
        )

    def get_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def set_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """Class, hyper-parameters and learned state, for JSON."""
        cls = type(self)
        return {
            "class": f"{cls.__module__}:{cls.__qualname__}",
            "params": self.get_params(),
            "state": self.get_state(),
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Adjuster:
        """Rebuild a step saved with :meth:`to_dict` (any importable subclass)."""
        module_name, _, qualname = data["class"].partition(":")
        try:
            cls = importlib.import_module(module_name)
            for part in qualname.split("."):
                cls = getattr(cls, part)
        except (ImportError, AttributeError) as error:
            raise SpectralMatchError(f"cannot load step {data['class']!r}: {error}") from None
        step = cls(**data["params"])
        step.set_state(data["state"])
        return step
