"""The base of the plugin's algorithms, and how they read layers and hand back outputs.

The modules of the plugin import the library only inside :meth:`process` (through
:mod:`.running`), never at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsMapLayer,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputMultipleLayers,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProviderRegistry,
)

INPUT = "INPUT"
OUTPUT = "OUTPUT"
OUTPUT_LAYERS = "OUTPUT_LAYERS"


class SpectralMatchAlgorithm(QgsProcessingAlgorithm):
    """An algorithm of the provider: its id, title, group and help text, its parameters
    (:meth:`parameters`), and what it does (:meth:`process`, run by
    :meth:`processAlgorithm` with cancel, warnings and errors wired to QGIS)."""

    key = ""
    title = ""
    group_id = ""
    group_title = ""
    help = ""

    def name(self) -> str:
        return self.key

    def displayName(self) -> str:
        return self.title

    def group(self) -> str:
        return self.group_title

    def groupId(self) -> str:
        return self.group_id

    def shortHelpString(self) -> str:
        return self.help

    def createInstance(self) -> SpectralMatchAlgorithm:
        return type(self)()

    def initAlgorithm(self, config: Any = None) -> None:
        for parameter in self.parameters():
            self.addParameter(parameter)
        for output in self.outputs():
            self.addOutput(output)

    def parameters(self) -> list[QgsProcessingParameterDefinition]:
        """The parameters, in the order the dialog shows them."""
        raise NotImplementedError

    def outputs(self) -> list[Any]:
        """Outputs beside the ones the destination parameters declare."""
        return []

    def processAlgorithm(
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict:
        from .running import Run, reporting

        with reporting(feedback):
            return self.process(parameters, context, Run(feedback))

    def process(self, parameters: dict, context: QgsProcessingContext, run: Any) -> dict:
        """Do the work; ``run`` is a :class:`.running.Run`."""
        raise NotImplementedError

    # ------------------------------------------------------------------ reading parameters

    def raster_paths(self, parameters: dict, name: str, context: QgsProcessingContext) -> list:
        """The files of the raster layers of parameter ``name``."""
        return [layer_file(layer) for layer in self.parameterAsLayerList(parameters, name, context)]

    def vector_path(
        self,
        parameters: dict,
        name: str,
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> str | None:
        """A file holding the features of vector parameter ``name`` (a copy when the layer
        is not a one-layer file the library reads, e.g. a memory layer), or None."""
        if parameters.get(name) is None:
            return None
        return self.parameterAsCompatibleSourceLayerPath(
            parameters, name, context, ["gpkg", "shp", "geojson"], "gpkg", feedback
        )

    def optional_number(self, parameters: dict, name: str, context: QgsProcessingContext) -> Any:
        """The number of an optional parameter, or None when it was left empty."""
        if parameters.get(name) in (None, ""):
            return None
        return self.parameterAsDouble(parameters, name, context)

    def optional_band(self, parameters: dict, name: str, context: QgsProcessingContext) -> Any:
        number = self.optional_number(parameters, name, context)
        return None if number is None else int(number)

    def choice(self, parameters: dict, name: str, context: QgsProcessingContext) -> str:
        """The option chosen in enum parameter ``name`` (its text)."""
        definition = self.parameterDefinition(name)
        return definition.options()[self.parameterAsEnum(parameters, name, context)]


def layer_file(layer: QgsMapLayer) -> str:
    """The file behind ``layer``; an error for a layer that is not a file."""
    parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source())
    path = parts.get("path") or ""
    if not Path(path).is_file():
        raise QgsProcessingException(f"{layer.name()}: not a file ({layer.source()})")
    return path


def load_on_completion(
    context: QgsProcessingContext, paths: list, output: str = OUTPUT_LAYERS
) -> list[str]:
    """Have QGIS add the files ``paths`` to the project when the algorithm ends."""
    names = [str(path) for path in paths]
    for path in names:
        details = QgsProcessingContext.LayerDetails(Path(path).stem, context.project(), output)
        context.addLayerToLoadOnCompletion(path, details)
    return names


def rasters(description: str = "Input rasters", name: str = INPUT, optional: bool = False):
    return QgsProcessingParameterMultipleLayers(
        name, description, QgsProcessing.TypeRaster, optional=optional
    )


def output_layers(description: str = "Output layers") -> QgsProcessingOutputMultipleLayers:
    return QgsProcessingOutputMultipleLayers(OUTPUT_LAYERS, description)


def choices(name: str, description: str, options: list[str], default: Any = 0, **kwargs: Any):
    return QgsProcessingParameterEnum(
        name, description, options=options, defaultValue=default, **kwargs
    )


def integer(name: str, description: str, default: Any = None, **kwargs: Any):
    """An integer parameter (optional when it has no default)."""
    kwargs.setdefault("optional", default is None)
    return QgsProcessingParameterNumber(
        name, description, QgsProcessingParameterNumber.Integer, default, **kwargs
    )


def number(name: str, description: str, default: Any = None, **kwargs: Any):
    """A decimal parameter (optional when it has no default)."""
    kwargs.setdefault("optional", default is None)
    return QgsProcessingParameterNumber(
        name, description, QgsProcessingParameterNumber.Double, default, **kwargs
    )


def advanced(parameter: QgsProcessingParameterDefinition) -> QgsProcessingParameterDefinition:
    """``parameter``, shown under the dialog's Advanced parameters."""
    parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return parameter
