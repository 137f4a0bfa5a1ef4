"""The Processing provider: the install algorithm always, the library's algorithms when
the library is importable in QGIS's Python (in the plugin's version)."""

from __future__ import annotations

import importlib

from qgis.core import Qgis, QgsMessageLog, QgsProcessingProvider

from .install import InstallAlgorithm, plugin_version, use_install_folder


def library_problem() -> str | None:
    """Why the library's algorithms cannot be offered (None: they can)."""
    use_install_folder()
    try:
        library = importlib.import_module("spectralmatch")
    except ImportError as error:
        return f"the spectralmatch library is not installed in QGIS's Python ({error})"
    wanted = plugin_version()
    if wanted and library.__version__ != wanted:
        return (
            f"the spectralmatch library {library.__version__} is installed, the plugin is {wanted}"
        )
    return None


class SpectralMatchProvider(QgsProcessingProvider):
    """The spectralmatch algorithms in the Processing toolbox."""

    def id(self) -> str:
        return "spectralmatch"

    def name(self) -> str:
        return "spectralmatch"

    def longName(self) -> str:
        return "spectralmatch: relative radiometric normalization"

    def loadAlgorithms(self) -> None:
        self.addAlgorithm(InstallAlgorithm())
        problem = library_problem()
        if problem:
            QgsMessageLog.logMessage(
                f"{problem}: run 'Install or update the spectralmatch library' in the "
                "Processing toolbox",
                "spectralmatch",
                Qgis.Warning,
            )
            return
        for algorithm in library_algorithms():
            self.addAlgorithm(algorithm)


def library_algorithms() -> list:
    """One of each algorithm that calls the library (imported only if it is there)."""
    from .masks import (
        BandMathAlgorithm,
        CloudMaskAlgorithm,
        IndexAlgorithm,
        PolygonsAlgorithm,
        ThresholdAlgorithm,
    )
    from .matching import MatchAlgorithm, ReportAlgorithm, TransformAlgorithm
    from .mosaic import AlignAlgorithm, MaskAlgorithm, MergeAlgorithm, SeamlinesAlgorithm

    kinds = [MatchAlgorithm, TransformAlgorithm, ReportAlgorithm, AlignAlgorithm]
    kinds += [SeamlinesAlgorithm, MaskAlgorithm, MergeAlgorithm, CloudMaskAlgorithm]
    kinds += [IndexAlgorithm, BandMathAlgorithm, ThresholdAlgorithm, PolygonsAlgorithm]
    return [kind() for kind in kinds]
