"""spectralmatch: relative radiometric normalization of raster mosaics and time series."""

from ._version import __version__
from .adjuster import Adjuster
from .block_map import BlockGrid, BlockMap
from .collection import ImageCollection
from .errors import NotFittedError, SpectralMatchError
from .global_model import FitDiagnostics, GlobalModel
from .image import Image
from .mosaic import Mosaic
from .overlap import OverlapEdge, OverlapGraph, OverlapStatistics
from .stats import Moments
from .workflow import global_regression, local_block_adjustment

__all__ = [
    "Adjuster",
    "BlockGrid",
    "BlockMap",
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
    "local_block_adjustment",
]
