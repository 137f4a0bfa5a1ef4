"""Mosaic algorithms: align onto one grid, seamlines, clip by polygons, merge."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterCrs,
    QgsProcessingParameterField,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProcessingParameterVectorLayer,
)

from .algorithms import (
    INPUT,
    OUTPUT,
    SpectralMatchAlgorithm,
    advanced,
    choices,
    load_on_completion,
    number,
    output_layers,
    rasters,
)
from .matching import output_folder

GROUP = ("mosaic", "Mosaic")
RESOLUTIONS = ["highest", "lowest", "average"]
SEAMLINE_METHODS = ["voronoi", "least-cost"]
POLYGONS = [QgsProcessing.TypeVectorPolygon]


def cog_parameter() -> Any:
    return advanced(QgsProcessingParameterBoolean("COG", "Cloud Optimized GeoTIFF", False))


def pixel_size_parameter() -> Any:
    return number("PIXEL_SIZE", "Pixel size in CRS units (instead of the resolution)", minValue=0)


class MosaicAlgorithm(SpectralMatchAlgorithm):
    group_id, group_title = GROUP

    def resolution(self, parameters: dict, context: QgsProcessingContext) -> Any:
        """A pixel size given, else the resolution chosen (highest, lowest, average)."""
        size = self.optional_number(parameters, "PIXEL_SIZE", context)
        return (size, size) if size else self.choice(parameters, "RESOLUTION", context)


class AlignAlgorithm(MosaicAlgorithm):
    key = "align"
    title = "Align rasters onto one grid"
    help = (
        "Puts the input rasters on one pixel grid (one CRS, one pixel size, aligned "
        "lines) and writes them into the output folder. Without a target CRS, the "
        "images' most common CRS. As `spectralmatch align`."
    )

    def parameters(self) -> list:
        return [
            rasters(),
            QgsProcessingParameterCrs("DST_CRS", "Target CRS", optional=True),
            choices("RESOLUTION", "Resolution", RESOLUTIONS),
            pixel_size_parameter(),
            QgsProcessingParameterBoolean("TAP", "Target-aligned pixels", False),
            choices(
                "RESAMPLING", "Resampling", ["nearest", "bilinear", "cubic", "average", "mode"]
            ),
            cog_parameter(),
            output_folder(),
        ]

    def outputs(self) -> list:
        return [output_layers("Aligned images")]

    def process(self, parameters: dict, context: QgsProcessingContext, run: Any) -> dict:
        from spectralmatch import align_rasters

        crs = self.parameterAsCrs(parameters, "DST_CRS", context)
        out_dir = self.parameterAsString(parameters, OUTPUT, context)
        written = run.call(
            align_rasters,
            self.raster_paths(parameters, INPUT, context),
            out_dir,
            crs=crs.toWkt() if crs.isValid() else None,
            resolution=self.resolution(parameters, context),
            tap=self.parameterAsBool(parameters, "TAP", context),
            resampling_method=self.choice(parameters, "RESAMPLING", context),
            save_as_cog=self.parameterAsBool(parameters, "COG", context),
        )
        return {OUTPUT: out_dir, "OUTPUT_LAYERS": load_on_completion(context, written)}


class SeamlinesAlgorithm(MosaicAlgorithm):
    key = "seamlines"
    title = "Seamlines"
    help = (
        "One polygon per input raster, no gaps, no overlaps: each overlap split between "
        "the images at the nearest footprint centre (voronoi), or along cuts moved to "
        "where the images differ least (least-cost). As `spectralmatch seamlines`."
    )

    def parameters(self) -> list:
        return [
            rasters(),
            choices("METHOD", "Method", SEAMLINE_METHODS),
            QgsProcessingParameterString("FIELD", "Field holding the image names", "image"),
            QgsProcessingParameterVectorDestination(
                OUTPUT, "Seamlines", QgsProcessing.TypeVectorPolygon
            ),
        ]

    def process(self, parameters: dict, context: QgsProcessingContext, run: Any) -> dict:
        from spectralmatch import Seamline

        build = {"voronoi": Seamline.voronoi, "least-cost": Seamline.least_cost}
        method = build[self.choice(parameters, "METHOD", context)]
        out_path = self.parameterAsOutputLayer(parameters, OUTPUT, context)
        seamlines = run.call(method, self.raster_paths(parameters, INPUT, context))
        field = self.parameterAsString(parameters, "FIELD", context)
        run.call(seamlines.to_file, out_path, field)
        return {OUTPUT: out_path}


class MaskAlgorithm(MosaicAlgorithm):
    key = "mask"
    title = "Clip rasters by polygons (seamlines)"
    help = (
        "Sets the pixels of the input rasters outside (include) or inside (exclude) the "
        "polygons to nodata. With a field, each image is clipped only by the features "
        "whose field holds its name (seamlines). As `spectralmatch mask`."
    )

    def parameters(self) -> list:
        return [
            rasters(),
            QgsProcessingParameterVectorLayer("VECTOR", "Polygons (seamlines)", POLYGONS),
            choices("MODE", "Keep the pixels", ["include", "exclude"]),
            QgsProcessingParameterField(
                "FIELD", "Field holding the image names", "image", "VECTOR", optional=True
            ),
            cog_parameter(),
            output_folder(),
        ]

    def outputs(self) -> list:
        return [output_layers("Clipped images")]

    def process(self, parameters: dict, context: QgsProcessingContext, run: Any) -> dict:
        from spectralmatch import mask_rasters

        vector = self.vector_path(parameters, "VECTOR", context, run.feedback)
        mode = self.choice(parameters, "MODE", context)
        field = self.parameterAsString(parameters, "FIELD", context)
        out_dir = self.parameterAsString(parameters, OUTPUT, context)
        written = run.call(
            mask_rasters,
            self.raster_paths(parameters, INPUT, context),
            out_dir,
            vector_mask=(mode, vector, field) if field else (mode, vector),
            save_as_cog=self.parameterAsBool(parameters, "COG", context),
        )
        return {OUTPUT: out_dir, "OUTPUT_LAYERS": load_on_completion(context, written)}


class MergeAlgorithm(MosaicAlgorithm):
    key = "merge"
    title = "Merge into one mosaic"
    help = (
        "Merges the input rasters (in one CRS) into one raster. With seamlines each image "
        "fills its polygon, optionally feathered across the cut lines; without, the first "
        "valid value in input order wins. Images off the mosaic's grid are resampled onto "
        "it. As `spectralmatch merge`."
    )

    def parameters(self) -> list:
        return [
            rasters(),
            QgsProcessingParameterVectorLayer("SEAMLINES", "Seamlines", POLYGONS, optional=True),
            QgsProcessingParameterField(
                "FIELD", "Field holding the image names", "image", "SEAMLINES", optional=True
            ),
            number("FEATHER", "Feather across cut lines, pixels", 0.0, minValue=0),
            choices("RESOLUTION", "Resolution", RESOLUTIONS),
            pixel_size_parameter(),
            choices(
                "RESAMPLING",
                "Resampling",
                ["nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average"],
            ),
            advanced(QgsProcessingParameterBoolean("OVERVIEWS", "Build overviews", False)),
            cog_parameter(),
            QgsProcessingParameterRasterDestination(OUTPUT, "Mosaic"),
        ]

    def process(self, parameters: dict, context: QgsProcessingContext, run: Any) -> dict:
        from spectralmatch import merge_rasters

        out_path = self.parameterAsOutputLayer(parameters, OUTPUT, context)
        run.call(
            merge_rasters,
            self.raster_paths(parameters, INPUT, context),
            out_path,
            seamlines=self.vector_path(parameters, "SEAMLINES", context, run.feedback),
            feather=self.parameterAsDouble(parameters, "FEATHER", context),
            image_field=self.parameterAsString(parameters, "FIELD", context) or "image",
            resolution=self.resolution(parameters, context),
            resampling_method=self.choice(parameters, "RESAMPLING", context),
            build_overviews=self.parameterAsBool(parameters, "OVERVIEWS", context),
            save_as_cog=self.parameterAsBool(parameters, "COG", context),
        )
        return {OUTPUT: out_path}
