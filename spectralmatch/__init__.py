"""spectralmatch: relative radiometric normalization of raster mosaics and time series."""

from ._version import __version__
from .adjuster import Adjuster
from .block_map import BlockGrid, BlockMap
from .collection import ImageCollection
from .errors import NotFittedError, SpectralMatchError
from .global_model import FitDiagnostics, GlobalModel
from .image import Image
from .masks import FunctionMask, RasterMask, VectorMask
from .mosaic import Mosaic
from .ops import align_rasters, mask_rasters, merge_rasters
from .overlap import OverlapEdge, OverlapGraph, OverlapStatistics
from .pif import IRMAD, ResidualPIF
from .seamline import Seamline, voronoi_center_seamline
from .stats import Moments
from .workflow import global_regression, local_block_adjustment

__all__ = [
    "Adjuster",
    "BlockGrid",
    "BlockMap",
    "FitDiagnostics",
    "FunctionMask",
    "IRMAD",
    "GlobalModel",
    "Image",
    "ImageCollection",
    "Moments",
    "Mosaic",
    "NotFittedError",
    "OverlapEdge",
    "OverlapGraph",
    "OverlapStatistics",
    "RasterMask",
    "ResidualPIF",
    "Seamline",
    "SpectralMatchError",
    "VectorMask",
    "__version__",
    "align_rasters",
    "global_regression",
    "local_block_adjustment",
    "mask_rasters",
    "merge_rasters",
    "voronoi_center_seamline",
]
