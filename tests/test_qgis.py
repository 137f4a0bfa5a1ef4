"""The QGIS plugin, for real: the zip that ``spectralmatch qgis-plugin`` builds, installed
into a headless QGIS, its algorithms run through ``processing.run``.

QGIS's Python bindings belong to the system's Python (Debian: /usr/bin/python3), which
may not be the Python running the tests. So each QGIS check runs a script in a Python
that imports ``qgis.core``: this one, or /usr/bin/python3 when it is the same version,
given this environment's packages on PYTHONPATH (they are wheels for this version, and
come first, so the library sees the versions it was installed with). Without QGIS the
checks skip, saying why.
"""

from __future__ import annotations

import ast
import os
import site
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import folder_listing, read_raster

from spectralmatch.cli.main import main
from spectralmatch.qgis.build import MODULES, PLUGIN_FOLDER, WHEELS

ROOT = Path(__file__).resolve().parents[1]
VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"


def _has_qgis(python: str) -> bool:
    code = "import sys, qgis.core; print('%d.%d' % sys.version_info[:2])"
    try:
        result = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0 and result.stdout.strip() == VERSION


def _qgis_python() -> tuple[str, list[str]] | None:
    """A Python of this version that imports qgis.core, and what its path needs."""
    if _has_qgis(sys.executable):
        return sys.executable, [str(ROOT)]
    if _has_qgis("/usr/bin/python3"):
        return "/usr/bin/python3", [str(ROOT), *site.getsitepackages()]
    return None


QGIS = _qgis_python()
needs_qgis = pytest.mark.skipif(
    QGIS is None,
    reason=f"QGIS's Python bindings (qgis.core) are not importable by this Python nor by a "
    f"/usr/bin/python3 {VERSION}: install QGIS (apt-get install qgis python3-qgis)",
)

PRELUDE = """
import json, sys
from pathlib import Path
from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback
app = QgsApplication([], False, sys.argv[1])
app.initQgis()
sys.path.append(str(Path(QgsApplication.pkgDataPath()) / "python" / "plugins"))
from processing.core.Processing import Processing
Processing.initialize()
import processing
sys.path.insert(0, sys.argv[2])
import spectralmatch_qgis
plugin = spectralmatch_qgis.classFactory(None)
plugin.initProcessing()
provider = plugin.provider
"""


@pytest.fixture(scope="module")
def plugin_folder(tmp_path_factory) -> Path:
    """The plugin zip built by the command, unpacked as QGIS installs it (once: building
    it builds a wheel of the library)."""
    root = tmp_path_factory.mktemp("plugin")
    archive = root / "spectralmatch.zip"
    result = CliRunner().invoke(main, ["qgis-plugin", "-o", str(archive)])
    assert result.exit_code == 0, result.output
    folder = root / "plugins"
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(folder)
    return folder


def run_in_qgis(script: str, tmp_path: Path, plugins: Path, with_library: bool = True) -> str:
    """Run PRELUDE + ``script`` in QGIS's Python; its standard output (fails on an error)."""
    assert QGIS is not None
    python, path = QGIS
    program = tmp_path / "script.py"
    program.write_text(PRELUDE + textwrap.dedent(script))
    environment = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    environment["PYTHONPATH"] = os.pathsep.join(path if with_library else [])
    profile = tmp_path / "profile"
    result = subprocess.run(
        [python, str(program), str(profile), str(plugins)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


# ---------------------------------------------------------------------- without QGIS


def test_the_zip_holds_an_installable_plugin(plugin_folder):
    plugin = plugin_folder / PLUGIN_FOLDER
    assert sorted(p.name for p in plugin.iterdir()) == sorted(
        ["metadata.txt", "__init__.py", WHEELS, *(f"{m}.py" for m in MODULES)]
    )
    # the wheel of the library as installed, of its version
    assert [p.name for p in (plugin / WHEELS).iterdir()] == ["spectralmatch-0.1.0-py3-none-any.whl"]
    metadata = (plugin / "metadata.txt").read_text()
    assert "version=0.1.0" in metadata.splitlines()  # the library's version
    assert "hasProcessingProvider=yes" in metadata.splitlines()
    assert "qgisMinimumVersion=3.22" in metadata.splitlines()
    assert "classFactory" in (plugin / "__init__.py").read_text()


def test_the_plugin_imports_the_library_only_inside_functions(plugin_folder):
    """So that it loads in a QGIS without the library; running.py (which imports the
    library) is itself imported only inside functions."""
    for module in (plugin_folder / PLUGIN_FOLDER).glob("*.py"):
        tree = ast.parse(module.read_text())
        top = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
        names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in top if isinstance(n, ast.ImportFrom) and not n.level]
        relative = [n.module for n in top if isinstance(n, ast.ImportFrom) and n.level]
        if module.name != "running.py":
            assert not [n for n in names if n.split(".")[0] == "spectralmatch"], module.name
            assert "running" not in relative, module.name


def test_the_carried_wheel_installs_this_library_without_the_network(plugin_folder, tmp_path):
    """What the install algorithm does by default, less the dependencies (which pip
    takes from the package index): the wheel holds the library's modules."""
    (wheel,) = (plugin_folder / PLUGIN_FOLDER / WHEELS).iterdir()
    target = tmp_path / "packages"
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet"]
    subprocess.run([*command, "--target", str(target), str(wheel)], check=True, timeout=300)
    environment = dict(os.environ, PYTHONPATH=str(target))
    shown = subprocess.run(
        [sys.executable, "-c", "import spectralmatch as s; print(s.__version__, s.__file__)"],
        capture_output=True, text=True, env=environment, cwd=tmp_path, check=True,
    )  # fmt: skip
    version, location = shown.stdout.split()
    assert version == "0.1.0" and Path(location).is_relative_to(target)
    assert (target / "spectralmatch" / "qgis" / "install.py").is_file()


def test_a_given_wheel_is_carried_and_a_missing_one_refused(tmp_path, plugin_folder):
    (wheel,) = (plugin_folder / PLUGIN_FOLDER / WHEELS).iterdir()
    archive = tmp_path / "plugin.zip"
    given = CliRunner().invoke(main, ["qgis-plugin", "-o", str(archive), "--wheel", str(wheel)])
    assert given.exit_code == 0, given.output
    with zipfile.ZipFile(archive) as opened:
        assert f"{PLUGIN_FOLDER}/{WHEELS}/{wheel.name}" in opened.namelist()
    missing = CliRunner().invoke(
        main, ["qgis-plugin", "-o", str(tmp_path / "other.zip"), "--wheel", "no.whl"]
    )
    assert missing.exit_code == 2 and "no.whl" in missing.output


def test_the_zip_is_written_atomically_and_replaced(tmp_path):
    archive = tmp_path / "plugin.zip"
    archive.write_bytes(b"old")
    assert CliRunner().invoke(main, ["qgis-plugin", "-o", str(archive)]).exit_code == 0
    assert zipfile.is_zipfile(archive)
    assert folder_listing(tmp_path) == ["plugin.zip"]


# ---------------------------------------------------------------------- in QGIS


@needs_qgis
def test_the_provider_lists_typed_algorithms(tmp_path, plugin_folder):
    output = run_in_qgis(
        """
        from typing import get_args
        from spectralmatch import _typing
        from spectralmatch_qgis import matching
        assert matching.CORRECTIONS == list(get_args(_typing.Correction))
        assert matching.STEPS == list(get_args(_typing.StepName))
        assert matching.OUTPUT_DTYPES == list(get_args(_typing.OutputDtype))
        assert matching.WORKING_DTYPES == list(get_args(_typing.WorkingDtype))
        print(json.dumps({
            a.id(): {p.name(): p.type() for p in a.parameterDefinitions()}
            for a in provider.algorithms()
        }))
        """,
        tmp_path,
        plugin_folder,
    )
    algorithms = __import__("json").loads(output.splitlines()[-1])
    names = {name.split(":")[1] for name in algorithms}
    assert names == {
        "install", "match", "transform", "report", "align", "seamlines", "mask", "merge",
        "cloud_mask", "index", "band_math", "threshold", "polygons",
    }  # fmt: skip
    match = algorithms["spectralmatch:match"]
    assert match["INPUT"] == "multilayer"
    assert match["STEPS"] == match["CORRECTION"] == match["PIF"] == "enum"
    assert match["ROBUST"] == match["MASK_CLOUD"] == "boolean"
    assert match["BLOCK_SIZE"] == "number"
    assert match["OUTPUT"] == "folderDestination"
    assert match["SAVE_MODEL"] == "fileDestination"
    assert algorithms["spectralmatch:align"]["DST_CRS"] == "crs"
    assert algorithms["spectralmatch:merge"]["SEAMLINES"] == "vector"
    assert algorithms["spectralmatch:merge"]["OUTPUT"] == "rasterDestination"
    assert algorithms["spectralmatch:seamlines"]["OUTPUT"] == "vectorDestination"


@needs_qgis
def test_without_the_library_only_the_install_algorithm_loads(tmp_path, plugin_folder):
    output = run_in_qgis(
        """
        assert "spectralmatch" not in sys.modules
        install = provider.algorithms()[0]
        print(Path(install.parameterDefinition("REQUIREMENT").defaultValue()).name)
        print([a.id() for a in provider.algorithms()])
        """,
        tmp_path,
        plugin_folder,
        with_library=False,
    )
    # the install algorithm offers the wheel that came with the plugin
    assert output.splitlines()[-2:] == [
        "spectralmatch-0.1.0-py3-none-any.whl",
        "['spectralmatch:install']",
    ]


@needs_qgis
def test_match_and_merge_in_qgis_equal_the_command_line(tmp_path, plugin_folder, sample_copy):
    before = {path.name: path.read_bytes() for path in sample_copy.glob("*.tif")}
    expected = tmp_path / "expected"
    result = CliRunner().invoke(main, ["match", str(sample_copy), "-o", str(expected), "-q"])
    assert result.exit_code == 0, result.output
    run_in_qgis(
        f"""
        inputs = sorted(str(p) for p in Path({str(sample_copy)!r}).glob("*.tif"))
        result = processing.run("spectralmatch:match", {{
            "INPUT": inputs, "OUTPUT": "matched", "SAVE_MODEL": "model.json",
        }})
        assert result["OUTPUT_LAYERS"] == [str(Path("matched", Path(p).name)) for p in inputs]
        processing.run("spectralmatch:merge", {{
            "INPUT": result["OUTPUT_LAYERS"], "OUTPUT": "mosaic.tif", "FEATHER": 4,
        }})
        """,
        tmp_path,
        plugin_folder,
    )
    for name in before:
        assert np.array_equal(
            read_raster(tmp_path / "matched" / name), read_raster(expected / name)
        )
    assert (tmp_path / "model.json").is_file()
    merged = tmp_path / "expected_mosaic.tif"
    matched = sorted(str(p) for p in expected.glob("*.tif"))
    assert CliRunner().invoke(main, ["merge", *matched, "-o", str(merged)]).exit_code == 0
    assert np.array_equal(read_raster(tmp_path / "mosaic.tif"), read_raster(merged))
    # the inputs are as they were (QGIS itself may leave .aux.xml statistics beside them)
    assert {path.name: path.read_bytes() for path in sample_copy.glob("*.tif")} == before


@needs_qgis
def test_a_cancel_stops_the_run_and_leaves_no_output(tmp_path, plugin_folder, sample_copy):
    output = run_in_qgis(
        f"""
        class CancelAtTransform(QgsProcessingFeedback):
            def setProgressText(self, text):
                super().setProgressText(text)
                if text == "transform":
                    self.cancel()

        inputs = sorted(str(p) for p in Path({str(sample_copy)!r}).glob("*.tif"))
        Path("matched").mkdir()
        try:
            processing.run(
                "spectralmatch:match",
                {{"INPUT": inputs, "OUTPUT": "matched", "WINDOW_SIZE": 64, "CACHE": False}},
                feedback=CancelAtTransform(),
            )
        except QgsProcessingException as error:
            print("raised", error)
        """,
        tmp_path,
        plugin_folder,
    )
    assert "raised" in output
    assert folder_listing(tmp_path / "matched") == []


@needs_qgis
def test_a_library_error_becomes_a_processing_error(tmp_path, plugin_folder, sample_copy):
    output = run_in_qgis(
        f"""
        inputs = sorted(str(p) for p in Path({str(sample_copy)!r}).glob("*.tif"))
        try:
            processing.run(
                "spectralmatch:threshold",
                {{"INPUT": inputs, "THRESHOLD": "about 5", "OUTPUT": "masks"}},
            )
        except QgsProcessingException as error:
            print("raised", error)
        """,
        tmp_path,
        plugin_folder,
    )
    assert "threshold must be a comparison and a number" in output
    assert "raised" in output


@needs_qgis
def test_the_install_algorithm_reports_a_failed_pip(tmp_path, plugin_folder):
    """A requirement pip cannot install (a missing wheel file): the run fails, saying
    the common causes and pip's own words, and the profile's install folder exists."""
    output = run_in_qgis(
        """
        missing = str(Path("missing-0.1.0-py3-none-any.whl").resolve())
        try:
            processing.run("spectralmatch:install", {"REQUIREMENT": missing})
        except QgsProcessingException as error:
            print("raised", error)
        from spectralmatch_qgis.install import install_folder
        print("folder", install_folder().is_dir(), install_folder().is_relative_to(Path.cwd()))
        """,
        tmp_path,
        plugin_folder,
    )
    assert "raised pip failed" in output
    assert "folder True True" in output
