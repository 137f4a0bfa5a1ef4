"""The published package's command-line tests, ported, and its form of calling a function
(``spectralmatch FUNCTION ARGS --keyword=value``) run for real in a subprocess."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import rasterio

from spectralmatch.cli.functions import FUNCTIONS, NAMESPACES, parse_arguments


def run_cli(*arguments: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spectralmatch", *arguments],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


def test_the_help_lists_every_function_and_namespace():
    result = run_cli("--help")
    assert result.returncode == 0
    for name in [*FUNCTIONS, *NAMESPACES]:
        assert name in result.stdout, name


def test_a_function_help_lists_its_keywords():
    result = run_cli("global_regression", "--help")
    assert result.returncode == 0
    assert "global_regression" in result.stdout
    assert "pif_load_tie_points" in result.stdout
    result = run_cli("joint_coregistration", "--help")
    assert result.returncode == 0, result.stderr
    assert "joint_coregistration" in result.stdout
    assert "--load_adjustments" in result.stdout


def test_joint_coregistration_runs_as_a_command(tmp_path, data_dir):
    saved = tmp_path / "ties.json"
    result = run_cli(
        "joint_coregistration", str(data_dir), str(tmp_path / "out"), f"--save_adjustments={saved}"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(tmp_path / "out" / f"tile_0{i}.tif") for i in range(4)]
    assert json.loads(saved.read_text())["tie_points"][0]["image_1"] == "tile_00"


def test_the_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert re.search(r"\b\d+\.\d+\.\d+\b", result.stdout)


def test_the_published_pipeline_command_writes_the_mosaic(tmp_path, data_dir):
    """The published README's command: a folder in, a mosaic out."""
    output = tmp_path / "file.tif"
    result = run_cli(
        "pipeline",
        str(data_dir),
        str(output),
        "--shared_debug_logs=True",
        "--steps=['global_regression', 'merge']",
        "--merge-rasters-build-overviews",
        "False",
    )
    assert result.returncode == 0, result.stderr
    assert "pipeline step 2 of 2: merge" in result.stderr
    assert str(output) in result.stdout
    with rasterio.open(output) as mosaic:
        assert mosaic.count == 3 and not mosaic.overviews(1)


def test_a_namespace_method_runs(tmp_path, data_dir):
    result = run_cli(
        "Match", "global_regression", str(data_dir), str(tmp_path / "out"), "--window_size=512"
    )
    assert result.returncode == 0, result.stderr
    written = sorted((tmp_path / "out").glob("*.tif"))
    assert [path.name for path in written] == [f"tile_0{i}.tif" for i in range(4)]
    assert result.stdout.split() == [str(path) for path in written]


def test_a_bad_value_is_one_line_naming_the_keyword(tmp_path, data_dir):
    result = run_cli("global_regression", str(data_dir), str(tmp_path), "--pif_method=nope")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: pif_method: must be one of entire, flood_from_match_points, residual, irmad, "
        "got 'nope'"
    ]


@pytest.mark.parametrize(
    "arguments, positional, keywords",
    [
        (["in", "out.tif"], ["in", "out.tif"], {}),
        (["in", "--window_size=512"], ["in"], {"window_size": 512}),
        (["--window-size", "512", "in"], ["in"], {"window_size": 512}),
        (["--save_as_cog", "--tap", "False"], [], {"save_as_cog": True, "tap": False}),
        (
            ["--vector_mask=('include', 'm.gpkg', 'image')"],
            [],
            {"vector_mask": ("include", "m.gpkg", "image")},
        ),
        (["--resolution=None", "--scales=[2, 4]"], [], {"resolution": None, "scales": [2, 4]}),
        (["--name=tile_00.tif"], [], {"name": "tile_00.tif"}),
    ],
)
def test_arguments_are_read_as_literals(arguments, positional, keywords):
    assert parse_arguments(arguments) == (positional, keywords)


def test_typed_text_is_never_run(tmp_path):
    hostile = f"__import__('os').system('touch {tmp_path}/ran')"
    assert parse_arguments([f"--x={hostile}"]) == ([], {"x": hostile})
    assert not (tmp_path / "ran").exists()


def test_a_repeated_keyword_is_refused():
    result = run_cli("search_paths", "data", "--recursive", "--recursive")
    assert result.returncode == 2
    assert "--recursive is given twice" in result.stderr


def test_search_paths_prints_one_path_per_line(data_dir):
    result = run_cli("search_paths", str(data_dir / "*.tif"))
    assert result.returncode == 0
    assert result.stdout.split() == sorted(str(path) for path in data_dir.glob("*.tif"))
