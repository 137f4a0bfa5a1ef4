"""The install algorithm: pip-install the library into a folder of the QGIS profile, with
the Python QGIS runs, and put that folder on ``sys.path``.

It imports nothing of the library, so it works (and the provider loads it) when the
library is missing.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsApplication,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputFolder,
    QgsProcessingParameterString,
)

PACKAGE = "spectralmatch"
FAILURES = (
    "pip failed. Common causes: no pip in QGIS's Python (install it, e.g. "
    "python3-pip on Debian/Ubuntu, or 'python -m ensurepip'); no network or a proxy "
    "pip does not know (set HTTPS_PROXY, or give a downloaded wheel file as the "
    "requirement); no permission to write the folder; no wheel of a dependency for "
    "this Python. pip's last lines:\n"
)


def install_folder() -> Path:
    """Where the install algorithm puts the library: python/spectralmatch-packages in the
    QGIS profile folder."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "python" / f"{PACKAGE}-packages"


def use_install_folder() -> None:
    """Put :func:`install_folder` at the end of ``sys.path`` (QGIS's own packages first),
    where it exists."""
    folder = str(install_folder())
    if Path(folder).is_dir() and folder not in sys.path:
        sys.path.append(folder)
        importlib.invalidate_caches()


def bundled_wheel() -> Path | None:
    """The library's wheel the plugin zip carries, if it carries one."""
    wheels = sorted(Path(__file__).with_name("wheels").glob(f"{PACKAGE}-*.whl"))
    return wheels[-1] if wheels else None


def plugin_version() -> str | None:
    """The version of the plugin: its metadata.txt's, or inside the library the library's
    installed version (None if unknown)."""
    metadata = Path(__file__).with_name("metadata.txt")
    if metadata.is_file():
        for line in metadata.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "version":
                return value.strip()
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def qgis_python() -> str:
    """The Python interpreter QGIS runs (``sys.executable`` is QGIS itself on most
    installs): the first candidate of the same version as this Python."""
    prefix = Path(sys.exec_prefix)
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = [
        Path(sys.executable),
        prefix / "python.exe",
        prefix / "python3.exe",
        prefix / "bin" / f"python{version}",
        prefix / "bin" / "python3",
    ]
    for candidate in candidates:
        if candidate.is_file() and _python_version(candidate) == version:
            return str(candidate)
    raise QgsProcessingException(
        f"cannot find the Python {version} interpreter QGIS runs (looked for "
        f"{', '.join(map(str, candidates))}); install spectralmatch with that interpreter's "
        "pip yourself"
    )


def _python_version(path: Path) -> str | None:
    code = "import sys; print('%d.%d' % sys.version_info[:2])"
    try:
        result = subprocess.run([str(path), "-c", code], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


class InstallAlgorithm(QgsProcessingAlgorithm):
    """Install (or update) the library with pip into :func:`install_folder`."""

    def name(self) -> str:
        return "install"

    def displayName(self) -> str:
        return "Install or update the spectralmatch library"

    def group(self) -> str:
        return "Setup"

    def groupId(self) -> str:
        return "setup"

    def shortHelpString(self) -> str:
        return (
            "Runs pip with the Python QGIS runs: python -m pip install --upgrade --target "
            f"<profile>/python/{PACKAGE}-packages REQUIREMENT, and puts that folder on "
            "Python's path (after QGIS's own packages). The requirement is by default "
            "the library's wheel that came with this plugin (the same version); a "
            "wheel file or another pip "
            "requirement works too. Needs pip, and network access for the library's "
            "dependencies; restart QGIS after an update of a library already loaded."
        )

    def createInstance(self) -> InstallAlgorithm:
        return InstallAlgorithm()

    def initAlgorithm(self, config: Any = None) -> None:
        version, wheel = plugin_version(), bundled_wheel()
        default = str(wheel) if wheel else f"{PACKAGE}=={version}" if version else PACKAGE
        self.addParameter(QgsProcessingParameterString("REQUIREMENT", "Requirement", default))
        self.addOutput(QgsProcessingOutputFolder("FOLDER", "Install folder"))

    def processAlgorithm(
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict:
        requirement = self.parameterAsString(parameters, "REQUIREMENT", context)
        folder = install_folder()
        folder.mkdir(parents=True, exist_ok=True)
        command = [qgis_python(), "-m", "pip", "install", "--upgrade", "--target", str(folder)]
        command.append(requirement)
        feedback.pushCommandInfo(" ".join(command))
        lines = run_streamed(command, feedback)
        if lines is None:
            raise QgsProcessingException("canceled: pip was stopped")
        if lines[-1] != "0":
            raise QgsProcessingException(FAILURES + "\n".join(lines[-12:-1]))
        use_install_folder()
        feedback.pushInfo(f"installed {requirement} into {folder}")
        provider = self.provider()
        if provider is not None:
            provider.refreshAlgorithms()
        return {"FOLDER": str(folder)}


def run_streamed(command: list[str], feedback: QgsProcessingFeedback) -> list[str] | None:
    """Run ``command``, its output to the Processing log; its lines and, last, its exit
    code as text, or None if the user canceled (the process is then killed)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line.rstrip())
        feedback.pushConsoleInfo(line.rstrip())
        if feedback.isCanceled():
            process.kill()
            process.wait()
            return None
    return [*lines, str(process.wait())]
