"""The ``spectralmatch`` command line (click's CliRunner and the installed command)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from conftest import (
    DATA_DIR,
    SERIES_CHANGES,
    file_digest,
    folder_listing,
    inverse,
    make_series,
    paint,
    read_raster,
    rectangles_mask,
    rmse,
    write_polygons,
    write_raster,
)
from rasterio.transform import from_origin
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds
from shapely.geometry import box

import spectralmatch
from spectralmatch.cli.main import main


@pytest.fixture
def runner():
    return CliRunner()


def invoke(runner, *args):
    return runner.invoke(main, [str(arg) for arg in args])


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output


# ---------------------------------------------------------------------- help and version


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ([], ["match", "fit", "transform", "--version"]),
        (["match"], ["--output", "--reference", "--save-model", "--cog", "--threads"]),
        (["fit"], ["--model", "--reference", "--window-size"]),
        (["transform"], ["--model", "--output", "--update-model", "--cog"]),
    ],
)
def test_help_of_every_command(runner, command, expected):
    for flag in ("--help", "-h"):
        result = invoke(runner, *command, flag)
        assert result.exit_code == 0, result.output
        assert result.output.startswith("Usage: ")
        for text in expected:
            assert text in result.output


def test_version(runner):
    result = invoke(runner, "--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"spectralmatch, version {spectralmatch.__version__}"


def test_installed_command_version_and_exit_codes(tmp_path):
    command = shutil.which("spectralmatch")
    assert command, "the spectralmatch command is not installed"
    version = subprocess.run([command, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0
    assert version.stdout.strip() == f"spectralmatch, version {spectralmatch.__version__}"
    missing = tmp_path / "missing.tif"
    failed = subprocess.run(
        [command, "match", str(missing), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 1
    assert failed.stderr.strip() == f"Error: {missing}: no such file or folder"
    usage = subprocess.run([command, "match"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "Missing argument" in usage.stderr
    module = subprocess.run(
        [sys.executable, "-m", "spectralmatch.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert module.returncode == 0 and spectralmatch.__version__ in module.stdout


# ---------------------------------------------------------------------- match / fit / transform


def test_match_writes_outputs_and_model(runner, tiles, tmp_path):
    out, model = tmp_path / "out", tmp_path / "model.json"
    result = invoke(
        runner,
        "match",
        tiles.folder,
        "-o",
        out,
        "--save-model",
        model,
        "-r",
        "tile_0",
        "--threads",
        2,
    )
    assert result.exit_code == 0, result.output
    assert "matched 4 images" in result.stderr
    assert folder_listing(out) == [f"{name}.tif" for name in tiles.names]
    for index, name in enumerate(tiles.names):
        output = read_raster(out / f"{name}.tif")
        valid = tiles.valid_of(index)
        assert rmse(output[valid], tiles.truth_of(index)[valid]) < 3.5
    data = json.loads(model.read_text())
    assert [entry["name"] for entry in data["images"]] == tiles.names
    assert data["steps"][0]["state"]["reference"] == ["tile_0"]


def test_match_in_processes_writes_what_the_threads_write(runner, tmp_path):
    # a mask expression too (the brightest pixels): what a worker process is sent must pickle
    common = ["match", DATA_DIR, "-q", "--no-cache", "--mask-expression", "B1 > 9500"]
    written = {}
    for name, options in (("threads", ["--threads", "2"]), ("processes", ["--processes"])):
        result = invoke(runner, *common, "-o", tmp_path / name, *options)
        assert result.exit_code == 0, result.output
        paths = sorted((tmp_path / name).glob("*.tif"))
        written[name] = [(path.name, file_digest(path)) for path in paths]
    assert len(written["processes"]) == 4
    assert written["processes"] == written["threads"]


def test_match_refuses_processes_with_a_scheduler(runner, tiles, tmp_path):
    both = ["--processes", "--scheduler", "local:2"]
    result = invoke(runner, "match", tiles.folder, "-o", tmp_path / "out", *both)
    assert result.exit_code == 2
    assert "--processes and --scheduler exclude each other" in result.output
    assert not (tmp_path / "out").exists()


def test_match_quiet_prints_nothing(runner, tiles, tmp_path):
    result = invoke(runner, "match", *tiles.paths, "-o", tmp_path / "out", "-q")
    assert result.exit_code == 0 and result.output == ""
    assert len(folder_listing(tmp_path / "out")) == 4


@pytest.mark.parametrize("how", ["path", "file name", "stem"])
def test_reference_option_keeps_the_image(runner, tiles, tmp_path, how):
    key = {"path": tiles.paths[2].resolve(), "file name": "tile_2.tif", "stem": "tile_2"}[how]
    result = invoke(runner, "match", tiles.folder, "-o", tmp_path / "out", "--reference", key, "-q")
    assert result.exit_code == 0, result.output
    assert np.array_equal(read_raster(tmp_path / "out" / "tile_2.tif"), tiles.data_of(2))
    assert not np.array_equal(read_raster(tmp_path / "out" / "tile_0.tif"), tiles.data_of(0))


def test_two_references(runner, tiles, tmp_path):
    result = invoke(
        runner,
        "match",
        tiles.folder,
        "-o",
        tmp_path / "out",
        "-r",
        "tile_0",
        "-r",
        str(tiles.paths[3]),
        "-q",
    )
    assert result.exit_code == 0, result.output
    for index in (0, 3):
        assert np.array_equal(
            read_raster(tmp_path / "out" / f"tile_{index}.tif"), tiles.data_of(index)
        )


def test_fit_then_transform_equals_match(runner, tiles, tmp_path):
    model = tmp_path / "model.json"
    fitted = invoke(runner, "fit", tiles.folder, "--model", model, "-r", "tile_1")
    assert fitted.exit_code == 0, fitted.output
    assert "fitted 4 images" in fitted.stderr
    assert folder_listing(tmp_path) == ["model.json", "model.npz", "tiles"] + [
        f"tiles/{name}.tif" for name in tiles.names
    ]
    transformed = invoke(
        runner,
        "transform",
        tiles.folder,
        "--model",
        model,
        "-o",
        tmp_path / "two_step",
        "--window-size",
        64,
    )
    assert transformed.exit_code == 0, transformed.output
    matched = invoke(
        runner, "match", tiles.folder, "-o", tmp_path / "one_step", "-r", "tile_1", "-q"
    )
    assert matched.exit_code == 0, matched.output
    for name in tiles.names:
        a = read_raster(tmp_path / "two_step" / f"{name}.tif")
        b = read_raster(tmp_path / "one_step" / f"{name}.tif")
        assert np.array_equal(a, b)
    assert np.array_equal(read_raster(tmp_path / "two_step" / "tile_1.tif"), tiles.data_of(1))


def test_transform_of_a_new_scene(runner, tiles, tmp_path):
    model = tmp_path / "model.json"
    assert (
        invoke(runner, "fit", *tiles.paths[:3], "--model", model, "-r", "tile_0", "-q").exit_code
        == 0
    )
    saved = model.read_text()
    result = invoke(
        runner, "transform", tiles.paths[3], "--model", model, "-o", tmp_path / "new", "--cog", "-q"
    )
    assert result.exit_code == 0, result.output
    output = read_raster(tmp_path / "new" / "tile_3.tif")
    valid = tiles.valid_of(3)
    assert rmse(output[valid], tiles.truth_of(3)[valid]) < 3.5
    assert rmse(tiles.data_of(3)[valid], tiles.truth_of(3)[valid]) > 100
    assert model.read_text() == saved  # without --update-model the model is not rewritten
    assert folder_listing(tmp_path / "new") == ["tile_3.tif"]


def test_update_model_saves_the_new_scene_once(runner, tiles, tmp_path):
    model = tmp_path / "model.json"
    assert (
        invoke(runner, "fit", *tiles.paths[:3], "--model", model, "-r", "tile_0", "-q").exit_code
        == 0
    )
    for run in ("first", "second"):
        result = invoke(
            runner,
            "transform",
            tiles.paths[3],
            "--model",
            model,
            "-o",
            tmp_path / run,
            "--update-model",
            "-q",
        )
        assert result.exit_code == 0, result.output
    assert np.array_equal(
        read_raster(tmp_path / "first" / "tile_3.tif"),
        read_raster(tmp_path / "second" / "tile_3.tif"),
    )
    state = json.loads(model.read_text())["steps"][0]["state"]
    assert state["images"] == tiles.names
    assert len(state["gains"]) == 4


def test_update_model_reuses_the_saved_parameters(runner, tiles, tmp_path):
    """After --update-model the new scene is part of the model: no re-solve is needed."""
    model = tmp_path / "model.json"
    assert (
        invoke(runner, "fit", *tiles.paths[:3], "--model", model, "-r", "tile_0", "-q").exit_code
        == 0
    )
    assert (
        invoke(
            runner,
            "transform",
            tiles.paths[3],
            "--model",
            model,
            "-o",
            tmp_path / "first",
            "--update-model",
            "-q",
        ).exit_code
        == 0
    )
    tiles.paths[1].rename(tmp_path / "archived_tile_1.tif")  # a fitted image goes away
    result = invoke(
        runner, "transform", tiles.paths[3], "--model", model, "-o", tmp_path / "second", "-q"
    )
    assert result.exit_code == 0, result.output
    assert np.array_equal(
        read_raster(tmp_path / "first" / "tile_3.tif"),
        read_raster(tmp_path / "second" / "tile_3.tif"),
    )


# ---------------------------------------------------------------------- errors


def _raster(path, bands=3, crs="EPSG:32621", x=700000.0, value=500):
    data = np.full((bands, 16, 16), value, dtype=np.uint16)
    if value:
        data[:, :, 8:] += 50  # some contrast
    return write_raster(
        path, data, transform=from_origin(x, 7000000.0, 30.0, 30.0), crs=crs, nodata=0
    )


def _bands(tmp_path):
    return [_raster(tmp_path / "a.tif"), _raster(tmp_path / "b_two.tif", bands=2)], "b_two.tif"


def _crs(tmp_path):
    return [
        _raster(tmp_path / "a.tif"),
        _raster(tmp_path / "b_utm.tif", crs="EPSG:32622"),
    ], "b_utm.tif"


def _duplicate(tmp_path):
    return [_raster(tmp_path / "x" / "scene.tif"), _raster(tmp_path / "y" / "scene.tif")], str(
        tmp_path / "y" / "scene.tif"
    )


def _unreadable(tmp_path):
    bad = tmp_path / "text.tif"
    bad.write_text("hello")
    return [_raster(tmp_path / "a.tif"), bad], "text.tif"


def _no_valid_pixels(tmp_path):
    return [
        _raster(tmp_path / "a.tif"),
        _raster(tmp_path / "void.tif", x=700240.0, value=0),
    ], "void.tif"


def _empty_folder(tmp_path):
    (tmp_path / "empty_dir").mkdir()
    return [tmp_path / "empty_dir"], "empty_dir"


def _glob(tmp_path):
    return [str(tmp_path / "none_*.tif")], "none_*.tif"


@pytest.mark.parametrize(
    "case", [_bands, _crs, _duplicate, _unreadable, _no_valid_pixels, _empty_folder, _glob]
)
def test_errors_are_one_line_naming_the_file(runner, tmp_path, case):
    (tmp_path / "in").mkdir()
    inputs, name = case(tmp_path / "in")
    result = invoke(runner, "match", *inputs, "-o", tmp_path / "out")
    assert_one_line_error(result, name)
    if case is _crs:
        assert "align" in result.stderr
    # nothing is written when the inputs are rejected
    assert not (tmp_path / "out").exists() or folder_listing(tmp_path / "out") == []


def test_fit_error_exit_code(runner, tmp_path):
    result = invoke(runner, "fit", tmp_path / "nope.tif", "--model", tmp_path / "m.json")
    assert_one_line_error(result, "nope.tif", "no such file")
    assert not (tmp_path / "m.json").exists()


def test_transform_refuses_to_overwrite_inputs(runner, tiles, tmp_path):
    model = tmp_path / "model.json"
    assert invoke(runner, "fit", tiles.folder, "--model", model, "-q").exit_code == 0
    before = [path.read_bytes() for path in tiles.paths]
    result = invoke(runner, "transform", tiles.folder, "--model", model, "-o", tiles.folder)
    assert_one_line_error(result, "tile_0.tif", "input")
    assert [path.read_bytes() for path in tiles.paths] == before


def test_transform_with_a_missing_model_is_a_usage_error(runner, tiles, tmp_path):
    result = invoke(
        runner,
        "transform",
        tiles.folder,
        "--model",
        tmp_path / "absent.json",
        "-o",
        tmp_path / "out",
    )
    assert result.exit_code == 2 and "absent.json" in result.stderr


def test_transform_with_a_broken_model_file(runner, tiles, tmp_path):
    model = tmp_path / "model.json"
    model.write_text("[1, 2")
    result = invoke(runner, "transform", tiles.folder, "--model", model, "-o", tmp_path / "out")
    assert_one_line_error(result, "model.json", "cannot read model")


def test_unknown_reference_is_a_one_line_error(runner, tiles, tmp_path):
    result = invoke(runner, "match", tiles.folder, "-o", tmp_path / "out", "-r", "tile_7")
    assert_one_line_error(result, "tile_7", "not one of the images")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------- masks, robust, pif


def saved_gains(path, key: str = "gains") -> np.ndarray:
    """Gains (or offsets) of the GlobalModel in a saved model."""
    return np.array(json.loads(path.read_text())["steps"][0]["state"][key])


def test_help_lists_the_fit_options(runner):
    for command in ("match", "fit"):
        result = invoke(runner, command, "--help")
        assert result.exit_code == 0
        for option in (
            "--exclude",
            "--robust",
            "--pif [auto|residual|irmad]",
            "--no-pif",
            "--pif-dir",
            "--mask-cloud",
        ):
            assert option in result.output, (command, option)


@pytest.mark.parametrize("kind", ["vector", "raster"])
def test_exclude_leaves_a_cloud_out_of_the_fit(runner, tiles, tmp_path, kind):
    """Tile 1 with a bright cloud where it overlaps tile 0, left out with --exclude: the
    fit recovers the true gains, which the fit without it misses; the cloud itself is
    still corrected."""
    cloud = Window(4, 20, 32, 40)
    paint(tiles.paths[1], cloud, 40000)
    with rasterio.open(tiles.paths[1]) as dataset:
        transform, shape = dataset.transform, dataset.shape
    if kind == "vector":
        mask = write_polygons(tmp_path / "cloud.gpkg", [box(*window_bounds(cloud, transform))])
    else:
        marked = np.zeros(shape, dtype=np.uint8)
        marked[cloud.toslices()] = 255
        mask = write_raster(tmp_path / "cloud_mask.tif", marked, transform=transform)
    common = [tiles.folder, "-r", "tile_0", "--no-local", "--threads", 2, "-q"]
    plain = invoke(
        runner, "match", *common, "-o", tmp_path / "plain", "--save-model", tmp_path / "plain.json"
    )
    assert plain.exit_code == 0, plain.output
    masked = invoke(
        runner,
        "match",
        *common,
        "-o",
        tmp_path / "masked",
        "--save-model",
        tmp_path / "masked.json",
        "--exclude",
        mask,
    )
    assert masked.exit_code == 0, masked.output
    expected, _ = inverse(tiles.gains, tiles.offsets)
    assert np.abs(saved_gains(tmp_path / "plain.json") / expected - 1).max() > 0.2
    gains = saved_gains(tmp_path / "masked.json")
    assert np.abs(gains / expected - 1).max() < 5e-3
    output = read_raster(tmp_path / "masked" / "tile_1.tif").astype(float)
    rows, cols = cloud.toslices()
    offsets = saved_gains(tmp_path / "masked.json", "offsets")
    assert (
        np.abs(output[:, rows, cols] - (gains[1] * 40000 + offsets[1])[:, None, None]).max() <= 1.0
    )
    # `fit` takes the same option and saves the same model
    fitted = invoke(runner, "fit", *common, "--model", tmp_path / "fit.json", "--exclude", mask)
    assert fitted.exit_code == 0, fitted.output
    np.testing.assert_array_equal(saved_gains(tmp_path / "fit.json"), gains)


def test_exclude_with_a_missing_file_is_a_usage_error(runner, tiles, tmp_path):
    result = invoke(
        runner, "match", tiles.folder, "-o", tmp_path / "out", "--exclude", tmp_path / "absent.gpkg"
    )
    assert result.exit_code == 2 and "absent.gpkg" in result.stderr
    assert not (tmp_path / "out").exists()


def test_exclude_with_an_unreadable_file_is_a_one_line_error(runner, tiles, tmp_path):
    broken = tmp_path / "broken.gpkg"
    broken.write_text("not a geopackage")
    result = invoke(runner, "match", tiles.folder, "-o", tmp_path / "out", "--exclude", broken)
    assert_one_line_error(result, "broken.gpkg")


def test_robust_flag_on_clean_tiles(runner, tiles, tmp_path):
    result = invoke(
        runner,
        "match",
        tiles.folder,
        "-o",
        tmp_path / "out",
        "-r",
        "tile_0",
        "--robust",
        "--no-local",
        "--save-model",
        tmp_path / "m.json",
        "-q",
    )
    assert result.exit_code == 0, result.output
    expected, _ = inverse(tiles.gains, tiles.offsets)
    np.testing.assert_allclose(saved_gains(tmp_path / "m.json"), expected, rtol=5e-3)
    for index, name in enumerate(tiles.names):
        valid = tiles.valid_of(index)
        output = read_raster(tmp_path / "out" / f"{name}.tif")
        assert rmse(output[valid], tiles.truth_of(index)[valid]) < 3.5


@pytest.mark.parametrize("detector", ["irmad", "residual"])
def test_match_with_pif_writes_change_masks_and_outputs(runner, tmp_path, truth, detector):
    series = make_series(tmp_path / "series", truth)
    out, pifs, model = tmp_path / "out", tmp_path / "pifs", tmp_path / "model.json"
    result = invoke(
        runner,
        "match",
        series.folder,
        "-o",
        out,
        "--reference",
        "date_0",
        "--pif",
        detector,
        "--pif-dir",
        pifs,
        "--no-local",
        "--save-model",
        model,
        "--threads",
        2,
    )
    assert result.exit_code == 0, result.output
    assert "matched 4 images" in result.stderr
    names = [f"date_{k}.tif" for k in range(4)]
    assert folder_listing(out) == names and folder_listing(pifs) == names
    assert np.array_equal(read_raster(out / "date_0.tif"), read_raster(series.paths[0]))
    expected, _ = inverse(series.gains, series.offsets)
    assert np.abs(saved_gains(model) / expected - 1).max() < 0.01
    for date, rectangles in SERIES_CHANGES.items():
        marks = read_raster(pifs / f"date_{date}.tif")[0].astype(bool)
        own = rectangles_mask(rectangles, (200, 200))  # the masks are on the image's grid
        assert marks[own].mean() > 0.9 and marks[~own].mean() < 0.05
    assert read_raster(pifs / "date_0.tif").mean() < 0.05


def test_pif_with_the_default_local_step(runner, tmp_path, truth):
    """--pif with the block adjustment (the default): masks and outputs are written."""
    series = make_series(tmp_path / "series", truth)
    result = invoke(
        runner,
        "fit",
        series.folder,
        "--model",
        tmp_path / "m.json",
        "-r",
        "date_0",
        "--pif",
        "residual",
        "--pif-dir",
        tmp_path / "pifs",
        "--block-size",
        32,
        "-q",
    )
    assert result.exit_code == 0, result.output
    assert folder_listing(tmp_path / "pifs") == [f"date_{k}.tif" for k in range(4)]
    steps = json.loads((tmp_path / "m.json").read_text())["steps"]
    assert len(steps) == 2


def test_align_reprojects_with_dst_crs(runner, data_dir, tmp_path):
    result = invoke(runner, "align", data_dir, "-o", tmp_path / "out", "--dst-crs", "EPSG:3857")
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "out" / "tile_00.tif") as dataset:
        assert dataset.crs.to_epsg() == 3857
    bad = invoke(runner, "align", data_dir, "-o", tmp_path / "bad", "--dst-crs", "EPSG:0")
    assert_one_line_error(bad, "crs must be a CRS", "EPSG:0")


def test_python_dash_m_spectralmatch_is_the_command(data_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "spectralmatch", "match", data_dir, "-o", tmp_path / "out", "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"tile_0{i}.tif" for i in range(4)
    ]
    usage = subprocess.run([sys.executable, "-m", "spectralmatch", "--help"], capture_output=True)
    assert (
        b"Usage: python -m spectralmatch" in usage.stdout or b"Usage: spectralmatch" in usage.stdout
    )


# ---------------------------------------------------------------------- masks for the fit


def global_gains(runner, tmp_path, name, *options) -> np.ndarray:
    model = tmp_path / f"{name}.json"
    result = invoke(
        runner, "fit", DATA_DIR, "--model", model, "--steps", "global", "--no-cache", "-q", *options
    )
    assert result.exit_code == 0, result.output
    return spectralmatch.Mosaic.load(model).steps_[0].gains_


def test_mask_options_leave_their_pixels_out_of_the_fit(runner, tmp_path):
    """An expression true everywhere leaves nothing to fit on (an error that says so); one
    true on the brightest pixels changes the fit; so do repeated --exclude files, each
    adding its area."""
    plain = global_gains(runner, tmp_path, "plain")
    everything = invoke(
        runner, "fit", DATA_DIR, "--model", tmp_path / "m.json", "--mask-expression", "B1 >= 0"
    )
    assert_one_line_error(everything, "tile_00.tif: has no valid pixels left by its mask")
    bright = global_gains(runner, tmp_path, "bright", "--mask-expression", "B1 > 9000")
    assert not np.allclose(bright, plain, rtol=1e-3)
    tile = spectralmatch.Image(DATA_DIR / "tile_00.tif")
    left, bottom, right, top = tile.bounds
    halves = [
        write_polygons(tmp_path / f"{side}.gpkg", [polygon], crs=tile.crs)
        for side, polygon in (
            ("west", box(left - 1e5, bottom - 1e5, (left + right) / 2, top + 1e5)),
            ("east", box((left + right) / 2, bottom - 1e5, right + 1e5, top + 1e5)),
        )
    ]
    one = global_gains(runner, tmp_path, "one", "--exclude", halves[0])
    assert not np.allclose(one, plain, rtol=1e-3)
    both = invoke(
        runner,
        "fit",
        DATA_DIR,
        "--model",
        tmp_path / "m.json",
        "--exclude",
        halves[0],
        "--exclude",
        halves[1],
    )
    assert_one_line_error(both, "has no valid pixels left by its mask")


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        (["--mask-ndvi", ">0.5"], ["--mask-ndvi needs the nir band", "--bands nir=N"]),
        (["--mask-expression", "__import__('os')"], ["__import__"]),
        (["--mask-expression", "B9 > 1"], ["B9"]),
    ],
)
def test_mask_options_refuse_what_they_cannot_do(runner, tmp_path, options, fragments):
    result = invoke(runner, "match", DATA_DIR, "-o", tmp_path / "out", "--no-cache", "-q", *options)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ---------------------------------------------------------------------- fit summary / inspect


def table_rows(text: str, title: str) -> dict[str, list[list[float]]]:
    """The rows of the table under ``title``: first cell -> the other cells' numbers
    (``a / b / c`` per band; ``low..high`` split in two)."""
    lines = text.split(title, 1)[1].split("\n\n", 1)[0].splitlines()[3:]
    rows = {}
    for line in lines:
        first, *cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[first] = [
            [float(number) for value in cell.split(" / ") for number in value.split("..")]
            for cell in cells
        ]
    return rows


def test_match_ends_with_the_fit_and_inspect_prints_it_again(runner, tiles, tmp_path):
    from spectralmatch import Mosaic

    model_path = tmp_path / "model.json"
    matched = invoke(
        runner, "match", tiles.folder, "-o", tmp_path / "out", "--save-model", model_path
    )
    assert matched.exit_code == 0, matched.output
    model = Mosaic.load(model_path)
    global_step, block_step = model.steps_
    rows = table_rows(matched.stdout, "GlobalModel: gain and offset per image")
    assert list(rows) == global_step.images_
    for name, gains, offsets in zip(rows, global_step.gains_, global_step.offsets_, strict=True):
        np.testing.assert_allclose(rows[name][0], gains, atol=0.5e-4)
        np.testing.assert_allclose(rows[name][1], offsets, atol=0.5e-2)
    diagnostics = global_step.diagnostics_
    overlaps = table_rows(matched.stdout, "GlobalModel: per overlap")
    assert list(overlaps) == [f"{a} - {b}" for a, b in diagnostics.pairs]
    for row, before, after in zip(
        overlaps.values(),
        diagnostics.mean_difference_before,
        diagnostics.mean_difference_after,
        strict=True,
    ):
        np.testing.assert_allclose(row[1], np.abs(before), atol=0.5e-2)
        np.testing.assert_allclose(row[2], np.abs(after), atol=0.5e-2)
    blocks = table_rows(matched.stdout, "BlockMap: range of gain and offset")
    for name in block_step.images_:
        gains, offsets = block_step.block_gains_offsets(name, near=True)
        for cell, values, decimals in ((0, gains, 4), (1, offsets, 2)):
            low_high = np.array(blocks[name][cell]).reshape(-1, 2)
            expected = [(band.min(), band.max()) for band in values]
            np.testing.assert_allclose(low_high, expected, atol=0.5 * 10.0**-decimals)
    inspected = invoke(runner, "inspect", model_path)
    assert inspected.exit_code == 0, inspected.output
    assert inspected.stdout == matched.stdout


def test_inspect_a_model_saved_without_diagnostics(runner, tiles, tmp_path):
    from spectralmatch import Mosaic

    model_path = tmp_path / "model.json"
    assert invoke(runner, "fit", tiles.folder, "--model", model_path, "-q").exit_code == 0
    # the file as models were saved before the diagnostics were kept (its arrays stay in
    # model.npz, which it names)
    data = json.loads(model_path.read_text())
    del data["steps"][0]["state"]["diagnostics"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    new, loaded = Mosaic.load(model_path), Mosaic.load(old)
    assert loaded.steps_[0].diagnostics_ is None
    np.testing.assert_array_equal(loaded.steps_[0].gains_, new.steps_[0].gains_)
    result = invoke(runner, "inspect", old)
    assert result.exit_code == 0, result.output
    assert "overlap diagnostics are not available" in result.stdout
    assert "GlobalModel: gain and offset per image" in result.stdout
    broken = tmp_path / "broken.json"
    data["steps"][0]["state"]["diagnostics"] = {"pairs": [["tile_0", "nowhere"]]}
    broken.write_text(json.dumps(data))
    assert_one_line_error(invoke(runner, "inspect", broken), "steps[0].state.diagnostics.pairs")
