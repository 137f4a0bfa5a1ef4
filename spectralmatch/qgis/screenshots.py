"""Screenshots of the plugin's dialogs, taken in a headless QGIS.

``python -m spectralmatch.qgis.screenshots OUTDIR`` (with ``QT_QPA_PLATFORM=offscreen``
where there is no display) writes ``match.png``, ``merge.png`` and ``cloud_mask.png``
into OUTDIR, which must not hold them yet (docs/images/qgis/ holds the published ones).
"""

from __future__ import annotations

import sys
from pathlib import Path

#: Algorithm -> file name of its screenshot.
DIALOGS = {"match": "match.png", "merge": "merge.png", "cloud_mask": "cloud_mask.png"}
#: Dialog size in pixels (width, height).
SIZE = (760, 720)


def take(out_dir: Path) -> list[Path]:
    """Show each algorithm's dialog offscreen and save it as a PNG in ``out_dir``."""
    from qgis.core import QgsApplication
    from qgis.gui import QgsGui

    app = QgsApplication([], True)
    app.initQgis()
    QgsGui.editorWidgetRegistry().initEditors()
    sys.path.append(str(Path(QgsApplication.pkgDataPath()) / "python" / "plugins"))
    from processing.core.Processing import Processing
    from processing.gui.AlgorithmDialog import AlgorithmDialog

    from .plugin import SpectralMatchPlugin

    Processing.initialize()
    plugin = SpectralMatchPlugin()
    plugin.initProcessing()
    written = []
    for name, file_name in DIALOGS.items():
        algorithm = QgsApplication.processingRegistry().createAlgorithmById(f"spectralmatch:{name}")
        dialog = AlgorithmDialog(algorithm)
        dialog.resize(*SIZE)
        dialog.show()
        app.processEvents()
        path = out_dir / file_name
        dialog.grab().save(str(path))
        dialog.close()
        written.append(path)
    plugin.unload()
    return written


def main(arguments: list[str]) -> int:
    if len(arguments) != 1:
        print("usage: python -m spectralmatch.qgis.screenshots OUTDIR", file=sys.stderr)
        return 2
    out_dir = Path(arguments[0])
    taken = [out_dir / name for name in DIALOGS.values() if (out_dir / name).exists()]
    if taken:
        print(f"{', '.join(map(str, taken))} exist: give an empty folder", file=sys.stderr)
        return 1
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in take(out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
