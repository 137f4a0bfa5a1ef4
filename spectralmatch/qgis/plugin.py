"""The QGIS plugin: adds the Processing provider when QGIS loads it."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication

from .provider import SpectralMatchProvider


class SpectralMatchPlugin:
    """A Processing-only plugin (``hasProcessingProvider=yes``)."""

    def __init__(self, iface: Any = None) -> None:
        self.iface = iface
        self.provider: SpectralMatchProvider | None = None

    def initProcessing(self) -> None:
        self.provider = SpectralMatchProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        self.initProcessing()

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None


def classFactory(iface: Any) -> SpectralMatchPlugin:
    """What QGIS calls to load the plugin."""
    return SpectralMatchPlugin(iface)
