"""The QGIS Processing plugin: a provider whose algorithms call the library.

``spectralmatch qgis-plugin -o spectralmatch.zip`` builds the installable plugin from these
modules (:mod:`spectralmatch.qgis.build`). Only :mod:`.build` runs without QGIS; the others
import ``qgis``, and none imports the library at import time, so that the plugin loads
(with its install algorithm alone) in a QGIS whose Python lacks spectralmatch.
"""
