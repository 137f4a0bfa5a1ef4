"""Matching algorithms: fit and apply a model (match), apply a saved one (transform), and
the HTML report comparing images before and after."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingOutputHtml,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterString,
)

from .algorithms import (
    INPUT,
    OUTPUT,
    SpectralMatchAlgorithm,
    advanced,
    choices,
    integer,
    layer_file,
    load_on_completion,
    number,
    output_layers,
    rasters,
)

GROUP = ("matching", "Matching")
#: As spectralmatch._typing.StepName, Correction, OutputDtype and WorkingDtype (the
#: plugin must not import the library to build its dialogs; a test checks they agree).
STEPS = ["global", "histogram", "local"]
CORRECTIONS = ["wallis", "offset", "gain", "gamma"]
OUTPUT_DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"]
WORKING_DTYPES = ["float32", "float64"]
PIF_METHODS = ["auto", "residual", "irmad", "none"]
ROLES = ["blue", "green", "red", "nir", "swir"]
SAME = "as the inputs"
AUTOMATIC = "automatic"


def output_folder(description: str = "Output folder") -> QgsProcessingParameterFolderDestination:
    return QgsProcessingParameterFolderDestination(OUTPUT, description)


def write_parameters() -> list:
    """How the outputs are written: data type, precision, COG."""
    return [
        advanced(choices("OUTPUT_DTYPE", "Output data type", [SAME, *OUTPUT_DTYPES])),
        advanced(choices("WORKING_DTYPE", "Working precision", [AUTOMATIC, *WORKING_DTYPES])),
        advanced(QgsProcessingParameterBoolean("COG", "Cloud Optimized GeoTIFF", False)),
    ]


def nodata_parameter() -> Any:
    return advanced(number("NODATA", "Nodata value of every input (overrides the files')"))


class WritingAlgorithm(SpectralMatchAlgorithm):
    """An algorithm writing corrected images: reads :func:`write_parameters`."""

    group_id, group_title = GROUP

    def write_settings(self, parameters: dict, context: QgsProcessingContext) -> dict:
        """The keywords of ``Mosaic.transform`` the write parameters set."""
        dtype = self.choice(parameters, "OUTPUT_DTYPE", context)
        working = self.choice(parameters, "WORKING_DTYPE", context)
        return {
            "cog": self.parameterAsBool(parameters, "COG", context),
            "output_dtype": None if dtype == SAME else dtype,
            "working_dtype": None if working == AUTOMATIC else working,
            "resume": False,
        }


class MatchAlgorithm(WritingAlgorithm):
    key = "match"
    title = "Match images (global and local)"
    help = (
        "Fits a model of per-image corrections on the overlaps of the input rasters and "
        "writes them matched into the output folder, with the inputs' file names. Steps: "
        "global (a gain and offset per image and band), histogram (a monotone curve), "
        "local (block adjustment). Changed pixels (new land cover, clouds) are found and "
        "left out of the fit; masks leave more out. As `spectralmatch match`."
    )

    def parameters(self) -> list:
        return [
            rasters(),
            rasters("Reference images (kept unchanged)", "REFERENCE", optional=True),
            choices("STEPS", "Steps", STEPS, default=[0, 2], allowMultiple=True),
            integer("BLOCK_SIZE", "Block size of the local step, pixels", minValue=2),
            choices("CORRECTION", "Local correction", CORRECTIONS),
            QgsProcessingParameterBoolean("ROBUST", "Down-weight disagreeing overlaps", False),
            choices("PIF", "Change detection", PIF_METHODS),
            QgsProcessingParameterMultipleLayers(
                "EXCLUDE",
                "Areas left out of the fit (rasters: non-zero; polygons)",
                QgsProcessing.TypeMapLayer,
                optional=True,
            ),
            QgsProcessingParameterString(
                "MASK_EXPRESSION", "Leave out where (e.g. B1 > 9000 && B3 > 8000)", optional=True
            ),
            QgsProcessingParameterString(
                "MASK_NDVI", "Leave out where NDVI is (e.g. >0.5)", optional=True
            ),
            QgsProcessingParameterBoolean("MASK_CLOUD", "Leave out clouds and shadows", False),
            *[advanced(integer(f"{r.upper()}_BAND", f"{r} band", minValue=1)) for r in ROLES],
            nodata_parameter(),
            *write_parameters(),
            advanced(QgsProcessingParameterBoolean("CACHE", "Cache statistics", True)),
            advanced(integer("WINDOW_SIZE", "Window size, pixels", 1024, minValue=64)),
            QgsProcessingParameterFolderDestination(
                "PIF_DIR", "Change masks", optional=True, createByDefault=False
            ),
            QgsProcessingParameterFileDestination(
                "SAVE_MODEL",
                "Fitted model",
                "JSON files (*.json)",
                optional=True,
                createByDefault=False,
            ),
            QgsProcessingParameterFolderDestination(
                "REPORT", "HTML report", optional=True, createByDefault=False
            ),
            output_folder(),
        ]

    def outputs(self) -> list:
        return [output_layers("Matched images"), QgsProcessingOutputHtml("REPORT_PAGE", "Report")]

    def options(self, parameters: dict, context: QgsProcessingContext) -> dict[str, Any]:
        """The parameters as the options of ``spectralmatch match`` (so that both build
        the same model)."""
        steps = [STEPS[i] for i in self.parameterAsEnums(parameters, "STEPS", context)]
        pif = self.choice(parameters, "PIF", context)
        block_size = self.optional_band(parameters, "BLOCK_SIZE", context)
        return {
            "inputs": self.raster_paths(parameters, INPUT, context),
            "references": self.raster_paths(parameters, "REFERENCE", context),
            "steps": steps,
            "local": True,
            "block_size": block_size,
            "correction": self.choice(parameters, "CORRECTION", context),
            "robust": self.parameterAsBool(parameters, "ROBUST", context),
            "pif": "auto" if pif == "none" else pif,
            "no_pif": pif == "none",
            "pif_dir": self.parameterAsString(parameters, "PIF_DIR", context) or None,
            "exclude": [layer_file(layer) for layer in self.layers(parameters, context)],
            "mask_expressions": self.strings(parameters, "MASK_EXPRESSION", context),
            "mask_ndvi": self.parameterAsString(parameters, "MASK_NDVI", context) or None,
            "mask_cloud": self.parameterAsBool(parameters, "MASK_CLOUD", context),
            "band_roles": self.band_roles(parameters, context),
            "nodata": self.optional_number(parameters, "NODATA", context),
            "cache": self.parameterAsBool(parameters, "CACHE", context),
            "cache_dir": None,
            "window_size": self.parameterAsInt(parameters, "WINDOW_SIZE", context),
            "threads": None,
            "processes": False,  # QGIS's executable cannot be spawned as a worker
            "scheduler": None,
            "quiet": True,
        }

    def layers(self, parameters: dict, context: QgsProcessingContext) -> list:
        return self.parameterAsLayerList(parameters, "EXCLUDE", context)

    def strings(self, parameters: dict, name: str, context: QgsProcessingContext) -> list[str]:
        text = self.parameterAsString(parameters, name, context)
        return [text] if text else []

    def band_roles(self, parameters: dict, context: QgsProcessingContext) -> dict[str, int]:
        roles = {
            role: self.optional_band(parameters, f"{role.upper()}_BAND", context) for role in ROLES
        }
        return {role: band for role, band in roles.items() if band is not None}

    def process(self, parameters: dict, context: QgsProcessingContext, run: Any) -> dict:
        from spectralmatch.cli.options import build_model
        from spectralmatch.report.summary import fit_summary

        options = self.options(parameters, context)
        out_dir = self.parameterAsString(parameters, OUTPUT, context)
        save_model = self.parameterAsFileOutput(parameters, "SAVE_MODEL", context)
        report_dir = self.parameterAsString(parameters, "REPORT", context)
        model, collection = build_model(tuple(options.pop("inputs")), options)
        model.set_params(executor=run.executor(), progress=False)
        run.call(model.fit, collection)
        run.feedback.pushInfo(fit_summary(model))
        if save_model:
            model.save(save_model)
        written = run.call(
            model.transform, collection, out_dir, **self.write_settings(parameters, context)
        )
        results = {
            OUTPUT: out_dir,
            "OUTPUT_LAYERS": load_on_completion(context, [image.path for image in written]),
        }
        if save_model:
            results["SAVE_MODEL"] = save_model
        if report_dir:
            inputs = [image.path for image in collection]
            outputs = [image.path for image in written]
            page = run.call(write_report, inputs, outputs, report_dir, model, options["nodata"])
            results.update(REPORT=report_dir, REPORT_PAGE=str(page))
        return results


class TransformAlgorithm(WritingAlgorithm):
    key = "transform"
    title = "Apply a saved model to new images"
    help = (
        "Applies a model saved by Match (its JSON file) to the input rasters and writes "
        "them into the output folder. Images that were not in the fit (new scenes) are "
        "first solved against the frozen model through their overlaps with the fitted "
        "ones. As `spectralmatch transform`."
    )

    def parameters(self) -> list:
        return [
            rasters(),
            QgsProcessingParameterFile("MODEL", "Saved model", extension="json"),
            QgsProcessingParameterBoolean(
                "UPDATE_MODEL", "Save the model back with the new images' parameters", False
            ),
            nodata_parameter(),
            *write_parameters(),
            output_folder(),
        ]

    def outputs(self) -> list:
        return [output_layers("Matched images")]

    def process(self, parameters: dict, context: QgsProcessingContext, run: Any) -> dict:
        from spectralmatch import Image, ImageCollection, Mosaic

        model_path = self.parameterAsFile(parameters, "MODEL", context)
        nodata = self.optional_number(parameters, "NODATA", context)
        out_dir = self.parameterAsString(parameters, OUTPUT, context)
        images = [Image(p, nodata=nodata) for p in self.raster_paths(parameters, INPUT, context)]
        model = Mosaic.load(model_path).set_params(executor=run.executor(), progress=False)
        written = run.call(
            model.transform,
            ImageCollection(images),
            out_dir,
            **self.write_settings(parameters, context),
        )
        if self.parameterAsBool(parameters, "UPDATE_MODEL", context):
            model.save(model_path)
        paths = [image.path for image in written]
        return {OUTPUT: out_dir, "OUTPUT_LAYERS": load_on_completion(context, paths)}


def write_report(inputs: list, outputs: list, out_dir: str, model: Any, nodata: Any) -> Path:
    """The HTML report of ``inputs`` (before) against ``outputs`` (after)."""
    from spectralmatch.cli.report import write_html_report

    return write_html_report(inputs, outputs, out_dir, model, nodata, ["QGIS Processing"])


class ReportAlgorithm(SpectralMatchAlgorithm):
    key = "report"
    title = "HTML report: before and after"
    group_id, group_title = GROUP
    help = (
        "Compares the input rasters with their matched versions (the same file names in "
        "the matched folder): writes figures and one self-contained HTML page (spectral "
        "profiles, histograms, the overlap graph, where images still disagree). As "
        "`spectralmatch report`."
    )

    def parameters(self) -> list:
        return [
            rasters("Input rasters (before)"),
            QgsProcessingParameterFile(
                "MATCHED", "Folder of the matched images", QgsProcessingParameterFile.Folder
            ),
            QgsProcessingParameterFile("MODEL", "Saved model", extension="json", optional=True),
            nodata_parameter(),
            QgsProcessingParameterFolderDestination(OUTPUT, "Report folder"),
        ]

    def outputs(self) -> list:
        return [QgsProcessingOutputHtml("REPORT_PAGE", "Report")]

    def process(self, parameters: dict, context: QgsProcessingContext, run: Any) -> dict:
        from spectralmatch import Mosaic
        from spectralmatch.errors import SpectralMatchError

        inputs = [Path(p) for p in self.raster_paths(parameters, INPUT, context)]
        matched = Path(self.parameterAsFile(parameters, "MATCHED", context))
        outputs = [matched / path.name for path in inputs]
        missing = [str(path) for path in outputs if not path.is_file()]
        if missing:
            raise SpectralMatchError(f"report: no matched image {', '.join(missing)}")
        model_path = self.parameterAsFile(parameters, "MODEL", context)
        model = Mosaic.load(model_path) if model_path else None
        nodata = self.optional_number(parameters, "NODATA", context)
        out_dir = self.parameterAsString(parameters, OUTPUT, context)
        page = run.call(write_report, inputs, outputs, out_dir, model, nodata)
        return {OUTPUT: out_dir, "REPORT_PAGE": str(page)}
