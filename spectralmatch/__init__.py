"""spectralmatch: relative radiometric normalization of raster mosaics and time series."""

from ._version import __version__
from .chain import pipeline
from .errors import NotFittedError, SpectralMatchError
from .geo.blocks import BlockGrid
from .geo.overlap import OverlapEdge, OverlapGraph
from .masks.cloud import CloudMask
from .masks.expression import ExpressionMask
from .masks.function import FunctionMask
from .masks.raster import RasterMask
from .masks.vector import VectorMask
from .model.adjuster import Adjuster
from .model.block_map import BlockMap
from .model.global_model import FitDiagnostics, GlobalModel
from .model.histogram_match import HistogramMatch
from .model.pif import IRMAD, CellPIF, ResidualPIF
from .model.pipeline import Mosaic
from .ops.align import align_rasters, compute_resolution
from .ops.bandmath import band_math, create_ndvi_raster, create_ndwi_raster, threshold_raster
from .ops.clip import mask_rasters
from .ops.clouds import create_cloud_mask, create_cloud_mask_with_omnicloudmask
from .ops.coregister import joint_coregistration
from .ops.merge import merge_rasters
from .ops.overviews import compute_overviews
from .ops.polygons import process_raster_values_to_vector_polygons
from .ops.seamline import Seamline, voronoi_center_seamline, weighted_seamline
from .ops.vectors import merge_vectors
from .pif import Pif
from .raster.collection import ImageCollection
from .raster.convert import BandAffine
from .raster.image import Image
from .raster.paths import create_paths, match_paths, search_paths
from .report.published import (
    compare_before_after_all_images,
    compare_image_spectral_profiles_pairs,
    compare_spatial_spectral_difference_band_average,
)
from .stats.moments import Moments
from .stats.overlap import OverlapStatistics
from .workflow import Match, global_regression, local_block_adjustment

__all__ = [
    "Adjuster",
    "BandAffine",
    "BlockGrid",
    "BlockMap",
    "CellPIF",
    "CloudMask",
    "ExpressionMask",
    "FitDiagnostics",
    "FunctionMask",
    "IRMAD",
    "GlobalModel",
    "HistogramMatch",
    "Image",
    "ImageCollection",
    "Match",
    "Moments",
    "Mosaic",
    "NotFittedError",
    "OverlapEdge",
    "OverlapGraph",
    "OverlapStatistics",
    "Pif",
    "RasterMask",
    "ResidualPIF",
    "Seamline",
    "SpectralMatchError",
    "VectorMask",
    "__version__",
    "align_rasters",
    "band_math",
    "compare_before_after_all_images",
    "compare_image_spectral_profiles_pairs",
    "compare_spatial_spectral_difference_band_average",
    "compute_overviews",
    "compute_resolution",
    "create_cloud_mask",
    "create_cloud_mask_with_omnicloudmask",
    "create_ndvi_raster",
    "create_ndwi_raster",
    "create_paths",
    "global_regression",
    "joint_coregistration",
    "local_block_adjustment",
    "mask_rasters",
    "match_paths",
    "merge_rasters",
    "merge_vectors",
    "pipeline",
    "process_raster_values_to_vector_polygons",
    "search_paths",
    "threshold_raster",
    "voronoi_center_seamline",
    "weighted_seamline",
]
