"""Mask-making algorithms: clouds and shadows, NDVI / NDWI, band math, thresholds, and
polygons of raster values."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterString,
)

from .algorithms import (
    INPUT,
    OUTPUT,
    SpectralMatchAlgorithm,
    advanced,
    choices,
    integer,
    load_on_completion,
    number,
    output_layers,
    rasters,
)
from .matching import OUTPUT_DTYPES, SAME, output_folder

GROUP = ("masks", "Masks")
BANDS = ["blue", "green", "red", "nir", "swir"]


class MaskMakingAlgorithm(SpectralMatchAlgorithm):
    """Writes one output per input raster into a folder, loaded into the project."""

    group_id, group_title = GROUP

    def outputs(self) -> list:
        return [output_layers("Masks")]

    def written(self, parameters: dict, context: QgsProcessingContext, paths: list) -> dict:
        out_dir = self.parameterAsString(parameters, OUTPUT, context)
        return {OUTPUT: out_dir, "OUTPUT_LAYERS": load_on_completion(context, paths)}


class CloudMaskAlgorithm(MaskMakingAlgorithm):
    key = "cloud_mask"
    title = "Cloud and shadow mask"
    help = (
        "Finds clouds and their shadows by an offline spectral test (brightness, "
        "whiteness, haze; NIR and SWIR tests where those bands are given) and writes one "
        "uint8 mask per raster: 0 clear, 1 cloud, 2 shadow, 255 nodata. Bands not given "
        "are read from the band descriptions; blue, green and red are needed."
    )

    def parameters(self) -> list:
        return [
            rasters(),
            *[integer(f"{band.upper()}_BAND", f"{band} band", minValue=1) for band in BANDS],
            integer("BUFFER", "Grow clouds and shadows by, pixels", 2, minValue=0),
            QgsProcessingParameterBoolean("SHADOWS", "Mark cloud shadows", True),
            number("SUN_AZIMUTH", "Sun azimuth, degrees from north", minValue=0, maxValue=360),
            number("SUN_ELEVATION", "Sun elevation, degrees", minValue=0, maxValue=90),
            output_folder("Cloud masks"),
        ]

    def process(self, parameters: dict, context: QgsProcessingContext, run: Any) -> dict:
        from spectralmatch import create_cloud_mask

        bands = {
            f"{band}_band": self.optional_band(parameters, f"{band.upper()}_BAND", context)
            for band in BANDS
        }
        written = run.call(
            create_cloud_mask,
            self.raster_paths(parameters, INPUT, context),
            self.parameterAsString(parameters, OUTPUT, context),
            buffer=self.parameterAsInt(parameters, "BUFFER", context),
            shadows=self.parameterAsBool(parameters, "SHADOWS", context),
            sun_azimuth=self.optional_number(parameters, "SUN_AZIMUTH", context),
            sun_elevation=self.optional_number(parameters, "SUN_ELEVATION", context),
            **bands,
        )
        return self.written(parameters, context, written)


class IndexAlgorithm(MaskMakingAlgorithm):
    key = "index"
    title = "NDVI or NDWI"
    help = (
        "Writes the NDVI, (nir - red) / (nir + red), or the NDWI (McFeeters), (green - "
        "nir) / (green + nir), of each raster as a float32 raster on its grid."
    )

    def parameters(self) -> list:
        return [
            rasters(),
            choices("INDEX", "Index", ["NDVI", "NDWI"]),
            integer("VISIBLE_BAND", "Red band (NDVI) or green band (NDWI)", 1, minValue=1),
            integer("NIR_BAND", "Near-infrared band", 4, minValue=1),
            output_folder("Indices"),
        ]

    def process(self, parameters: dict, context: QgsProcessingContext, run: Any) -> dict:
        from spectralmatch import create_ndvi_raster, create_ndwi_raster

        index = self.choice(parameters, "INDEX", context)
        visible = self.parameterAsInt(parameters, "VISIBLE_BAND", context)
        function, keyword = {
            "NDVI": (create_ndvi_raster, "red_band"),
            "NDWI": (create_ndwi_raster, "green_band"),
        }[index]
        written = run.call(
            function,
            self.raster_paths(parameters, INPUT, context),
            self.parameterAsString(parameters, OUTPUT, context),
            nir_band=self.parameterAsInt(parameters, "NIR_BAND", context),
            **{keyword: visible},
        )
        return self.written(parameters, context, written)


EXPRESSION_HELP = (
    "Bands are B1..Bn or their descriptions; + - * / ^, comparisons, && || !, c ? a : b, "
    "abs, sqrt, ln, min, max, and percentiles such as 5%B1. The expression is never run "
    "as Python."
)


class BandMathAlgorithm(MaskMakingAlgorithm):
    key = "band_math"
    title = "Band math"
    help = (
        "Writes an expression of each raster's bands as a one-band raster on its grid "
        "(uint8 0/1 for a comparison or logic, else float32, unless a type is chosen). "
        + EXPRESSION_HELP
    )

    def parameters(self) -> list:
        return [
            rasters(),
            QgsProcessingParameterString("EXPRESSION", "Expression (e.g. B4 > 2 * B3)"),
            advanced(choices("OUTPUT_DTYPE", "Output data type", [SAME, *OUTPUT_DTYPES])),
            advanced(number("NODATA", "Nodata value (inputs and output)")),
            output_folder("Results"),
        ]

    def process(self, parameters: dict, context: QgsProcessingContext, run: Any) -> dict:
        from spectralmatch import band_math

        dtype = self.choice(parameters, "OUTPUT_DTYPE", context)
        written = run.call(
            band_math,
            self.raster_paths(parameters, INPUT, context),
            self.parameterAsString(parameters, OUTPUT, context),
            expression=self.parameterAsString(parameters, "EXPRESSION", context),
            custom_nodata_value=self.optional_number(parameters, "NODATA", context),
            custom_output_dtype=None if dtype == SAME else dtype,
        )
        return self.written(parameters, context, written)


class ThresholdAlgorithm(MaskMakingAlgorithm):
    key = "threshold"
    title = "Threshold"
    help = (
        "Writes a uint8 mask of each raster: 1 where the band meets the threshold, else "
        "0 (255 where the band is nodata). The threshold is a comparison and a number "
        "(>0.5, <=100) or a percentile of the band's valid pixels (<5%)."
    )

    def parameters(self) -> list:
        return [
            rasters(),
            integer("BAND", "Band", 1, minValue=1),
            QgsProcessingParameterString("THRESHOLD", "Threshold (e.g. >0.5 or <5%)"),
            output_folder("Masks"),
        ]

    def process(self, parameters: dict, context: QgsProcessingContext, run: Any) -> dict:
        from spectralmatch import threshold_raster

        written = run.call(
            threshold_raster,
            self.raster_paths(parameters, INPUT, context),
            self.parameterAsString(parameters, OUTPUT, context),
            self.parameterAsString(parameters, "THRESHOLD", context),
            band=self.parameterAsInt(parameters, "BAND", context),
        )
        return self.written(parameters, context, written)


class PolygonsAlgorithm(MaskMakingAlgorithm):
    key = "polygons"
    title = "Polygons of raster values"
    help = (
        "Writes the pixels where an expression is non-zero as polygons, one GeoPackage "
        "per raster in its CRS, with the pixel value in a 'value' field. " + EXPRESSION_HELP
    )

    def parameters(self) -> list:
        return [
            rasters(),
            QgsProcessingParameterString("EXPRESSION", "Expression (e.g. B1 > 95%B1)"),
            QgsProcessingParameterString(
                "SIZE_FILTER", "Keep polygons whose area is (e.g. >100 or >95%)", optional=True
            ),
            number("BUFFER", "Grow polygons by, map units", 0.0, minValue=0),
            output_folder("Polygons"),
        ]

    def outputs(self) -> list:
        return [output_layers("Polygons")]

    def process(self, parameters: dict, context: QgsProcessingContext, run: Any) -> dict:
        from spectralmatch import process_raster_values_to_vector_polygons

        written = run.call(
            process_raster_values_to_vector_polygons,
            self.raster_paths(parameters, INPUT, context),
            self.parameterAsString(parameters, OUTPUT, context),
            extraction_expression=self.parameterAsString(parameters, "EXPRESSION", context),
            filter_by_polygon_size=self.parameterAsString(parameters, "SIZE_FILTER", context)
            or None,
            polygon_buffer=self.parameterAsDouble(parameters, "BUFFER", context),
        )
        return self.written(parameters, context, written)
