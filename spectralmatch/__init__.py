"""spectralmatch: relative radiometric normalization of raster mosaics and time series."""

from ._version import __version__
from .adjuster import Adjuster
from .collection import ImageCollection
from .errors import NotFittedError, SpectralMatchError
from .global_model import FitDiagnostics, GlobalModel
from .image import Image
from .mosaic import Mosaic
from .overlap import OverlapEdge, OverlapGraph, OverlapStatistics
from .stats import Moments
from .workflow import global_regression

__all__ = [
    "Adjuster",
    "FitDiagnostics",
    "GlobalModel",
    "Image",
    "ImageCollection",
    "Moments",
    "Mosaic",
    "NotFittedError",
    "OverlapEdge",
    "OverlapGraph",
    "OverlapStatistics",
    "SpectralMatchError",
    "__version__",
    "global_regression",
]
