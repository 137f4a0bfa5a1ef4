"""A catalogue of bad or awkward inputs, each with its exact behaviour.

Every case either fails with one line that names the file (or option) and the problem,
or gives a correct output, checked here; none ends in a traceback or in a wrong raster,
and no input is ever modified (checked after every case). docs/reliability.md lists
the same catalogue for users.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from click.testing import CliRunner
from conftest import SAMPLE_TILES, file_digest, folder_listing, write_raster
from rasterio.transform import Affine

from spectralmatch.cli.main import main

# ---------------------------------------------------------------------- helpers


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def tiles(sample_copy) -> Path:
    """A private copy of the sample tiles (cases damage or add files beside them)."""
    return sample_copy


@pytest.fixture(autouse=True)
def inputs_are_never_modified(data_dir):
    before = {name: file_digest(data_dir / f"{name}.tif") for name in SAMPLE_TILES}
    yield
    assert before == {name: file_digest(data_dir / f"{name}.tif") for name in SAMPLE_TILES}


def invoke(runner: CliRunner, *args):
    return runner.invoke(main, [str(arg) for arg in args], catch_exceptions=False)


def assert_one_line_error(result, *fragments: str) -> str:
    """Exit code 1, one line on stderr starting "Error: " that holds every fragment."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if not line.startswith("Warning: ")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read()


def profile_of(path: Path) -> dict:
    with rasterio.open(path) as dataset:
        return dict(dataset.profile)


def rewrite(path: Path, data: np.ndarray | None = None, **changes) -> Path:
    """Write ``path`` again with ``data`` (default: its own) and profile ``changes``."""
    with rasterio.open(path) as dataset:
        profile, own = dict(dataset.profile), dataset.read()
    profile.update(changes)
    if data is None:
        data = own
    profile["count"] = data.shape[0]
    path.unlink()
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(data.astype(profile["dtype"]))
    return path


def match(runner, inputs, out, *extra):
    return invoke(runner, "match", inputs, "-o", out, "--no-cache", "-q", *extra)


def outputs_of(out: Path) -> list[str]:
    return sorted(name for name in os.listdir(out) if not name.startswith("."))


# ---------------------------------------------------------------------- clear errors


def _text_file(tiles: Path) -> list:
    (tiles / "tile_01.tif").write_text("not a raster")
    return [tiles]


def _empty_file(tiles: Path) -> list:
    (tiles / "tile_01.tif").write_bytes(b"")
    return [tiles]


def _truncated_geotiff(tiles: Path) -> list:
    data = (tiles / "tile_01.tif").read_bytes()
    (tiles / "tile_01.tif").write_bytes(data[: len(data) // 2])
    return [tiles]


def _truncated_cog(tiles: Path) -> list:
    rasterio.shutil.copy(tiles / "tile_02.tif", tiles / "cog.tif", driver="COG", blocksize=64)
    (tiles / "tile_02.tif").unlink()
    data = (tiles / "cog.tif").read_bytes()
    (tiles / "tile_02.tif").write_bytes(data[: int(len(data) * 0.6)])
    (tiles / "cog.tif").unlink()
    return [tiles]


def _corrupt_tile(tiles: Path) -> list:
    """The compressed bytes of one internal tile zeroed (a damaged sector)."""
    path = tiles / "tile_01.tif"
    with rasterio.open(path) as dataset:
        offset = int(dataset.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
        size = int(dataset.get_tag_item("BLOCK_SIZE_0_0", "TIFF", bidx=1))
    data = bytearray(path.read_bytes())
    data[offset + 10 : offset + size - 10] = bytes(size - 20)
    path.write_bytes(bytes(data))
    return [tiles]


def _other_band_count(tiles: Path) -> list:
    rewrite(tiles / "tile_03.tif", read(tiles / "tile_03.tif")[:1])
    return [tiles]


def _other_crs(tiles: Path) -> list:
    rewrite(tiles / "tile_03.tif", crs="EPSG:32622")
    return [tiles]


def _no_crs(tiles: Path) -> list:
    rewrite(tiles / "tile_03.tif", crs=None)
    return [tiles]


def _all_nodata(tiles: Path) -> list:
    rewrite(tiles / "tile_01.tif", np.zeros_like(read(tiles / "tile_01.tif")))
    return [tiles]


def _rotated(tiles: Path) -> list:
    transform = profile_of(tiles / "tile_02.tif")["transform"]
    rewrite(tiles / "tile_02.tif", transform=transform * Affine.rotation(20))
    return [tiles]


def _sheared(tiles: Path) -> list:
    transform = profile_of(tiles / "tile_02.tif")["transform"]
    rewrite(tiles / "tile_02.tif", transform=transform * Affine.shear(10, 0))
    return [tiles]


def _mixed_dtypes(tiles: Path) -> list:
    data = read(tiles / "tile_01.tif") // 100
    rewrite(tiles / "tile_01.tif", data.astype("uint8"), dtype="uint8")
    return [tiles]


def _missing(tiles: Path) -> list:
    return [tiles / "missing.tif"]


def _empty_folder(tiles: Path) -> list:
    (tiles.parent / "empty").mkdir()
    return [tiles.parent / "empty"]


def _glob_matching_nothing(tiles: Path) -> list:
    return [tiles / "*.jp2"]


def _duplicate_names(tiles: Path) -> list:
    (tiles.parent / "again").mkdir()
    shutil.copy(tiles / "tile_00.tif", tiles.parent / "again" / "tile_00.tif")
    return [tiles, tiles.parent / "again" / "tile_00.tif"]


def _reference_not_an_image(tiles: Path) -> list:
    return [tiles, "--reference", "tile_99"]


def _nodata_out_of_range(tiles: Path) -> list:
    return [tiles, "--nodata", "-1"]


def _nodata_nan_for_integers(tiles: Path) -> list:
    return [tiles, "--nodata", "nan"]


#: (case, inputs and options, fragments of the one-line error)
ERRORS: list[tuple[str, Callable[[Path], list], tuple[str, ...]]] = [
    ("missing file", _missing, ("missing.tif", "no such file or folder")),
    ("text file named .tif", _text_file, ("tile_01.tif", "cannot be read as a raster")),
    ("empty file", _empty_file, ("tile_01.tif", "cannot be read as a raster")),
    ("truncated GeoTIFF", _truncated_geotiff, ("tile_01.tif", "cannot be read")),
    ("truncated COG", _truncated_cog, ("tile_02.tif", "cannot be read at row", "Read error")),
    ("corrupt tile", _corrupt_tile, ("tile_01.tif", "cannot be read at row", "Decoding error")),
    ("different band counts", _other_band_count, ("tile_03.tif", "has 1 bands")),
    ("different CRS", _other_crs, ("tile_03.tif", "CRS EPSG:32622 differs", "align --dst-crs")),
    ("one image without CRS", _no_crs, ("tile_03.tif", "CRS none differs")),
    ("all-nodata image", _all_nodata, ("tile_01.tif", "has no valid pixels")),
    ("rotated geotransform", _rotated, ("tile_02.tif", "rotated or sheared geotransform")),
    ("sheared geotransform", _sheared, ("tile_02.tif", "rotated or sheared geotransform")),
    ("mixed dtypes", _mixed_dtypes, ("tile_01.tif (uint8)", "--output-dtype uint16")),
    ("empty folder", _empty_folder, ("empty", "holds no raster files")),
    ("glob matching nothing", _glob_matching_nothing, ("*.jp2", "matches no file")),
    ("duplicate names", _duplicate_names, ("tile_00.tif", "duplicate image name")),
    ("reference not an image", _reference_not_an_image, ("tile_99", "not one of the images")),
    ("nodata out of range", _nodata_out_of_range, ("tile_00.tif", "nodata -1 cannot be held")),
    ("nodata NaN for integers", _nodata_nan_for_integers, ("tile_00.tif", "NaN cannot be held")),
]


@pytest.mark.parametrize(("case", "make", "fragments"), ERRORS, ids=[c[0] for c in ERRORS])
def test_match_fails_with_one_line_naming_the_file(runner, tiles, tmp_path, case, make, fragments):
    result = invoke(runner, "match", *make(tiles), "-o", tmp_path / "out", "--no-cache", "-q")
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "out").exists() or outputs_of(tmp_path / "out") == []


@pytest.mark.parametrize("command", ["seamlines", "merge", "mask"])
def test_every_command_refuses_a_rotated_image_the_same_way(runner, tiles, tmp_path, command):
    _rotated(tiles)
    extra = {"mask": ["--vector", tiles / "x.gpkg"]}.get(command, [])
    target = tmp_path / ("out.gpkg" if command == "seamlines" else "out")
    if command == "mask":
        from conftest import write_polygons
        from shapely.geometry import box

        write_polygons(tiles / "x.gpkg", [box(*rasterio.open(tiles / "tile_00.tif").bounds)])
    result = invoke(runner, command, tiles, "-o", target, *extra)
    assert_one_line_error(result, "tile_02.tif", "rotated or sheared geotransform")


def test_align_puts_a_rotated_image_on_a_north_up_grid(runner, tiles, tmp_path):
    _rotated(tiles)
    result = invoke(runner, "align", tiles / "tile_02.tif", "-o", tmp_path / "aligned")
    assert result.exit_code == 0, result.output
    source = profile_of(tiles / "tile_02.tif")["transform"]
    aligned = tmp_path / "aligned" / "tile_02.tif"
    with rasterio.open(aligned) as dataset:
        assert dataset.transform.b == dataset.transform.d == 0
        data = dataset.read()
        # the pixel at a point of the ground holds the source pixel there
        for col, row in [(100.5, 150.5), (200.5, 60.5)]:
            x, y = source * (col, row)
            r, c = dataset.index(x, y)
            assert (data[:, r, c] == read(tiles / "tile_02.tif")[:, int(row), int(col)]).all()


# ---------------------------------------------------------------------- outputs


def test_output_folder_equal_to_the_input_folder(runner, tiles):
    before = {p.name: file_digest(p) for p in tiles.iterdir()}
    result = match(runner, tiles, tiles)
    assert_one_line_error(result, "tile_00.tif", "is an input image")
    assert before == {p.name: file_digest(p) for p in tiles.iterdir()}


def test_output_folder_inside_the_input_folder_works(runner, tiles):
    result = match(runner, tiles, tiles / "matched")
    assert result.exit_code == 0, result.output
    assert outputs_of(tiles / "matched") == [f"{name}.tif" for name in SAMPLE_TILES]
    again = match(runner, tiles, tiles / "matched")  # the subfolder is not an input
    assert again.exit_code == 0


def test_output_path_that_is_a_file(runner, tiles, tmp_path):
    (tmp_path / "out").write_text("a file")
    result = match(runner, tiles, tmp_path / "out")
    assert result.exit_code == 2 and "is a file" in result.stderr


def test_merge_over_one_of_its_inputs_is_refused(runner, tiles):
    before = file_digest(tiles / "tile_00.tif")
    result = invoke(runner, "merge", tiles, "-o", tiles / "tile_00.tif")
    assert_one_line_error(result, "tile_00.tif", "is an input image")
    assert file_digest(tiles / "tile_00.tif") == before


def test_merge_output_that_is_a_folder(runner, tiles, tmp_path):
    (tmp_path / "mosaic.tif").mkdir()
    result = invoke(runner, "merge", tiles, "-o", tmp_path / "mosaic.tif")
    assert result.exit_code == 2 and "is a directory" in result.stderr


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody may write to: a read-only tmpfs for root (who ignores modes)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", folder])
    if mounted.returncode != 0:
        pytest.skip("running as root without the right to mount a read-only tmpfs")
    yield folder
    subprocess.run(["umount", folder], check=True)


def test_read_only_output_folder_is_named(runner, tiles, read_only_folder):
    result = match(runner, tiles, read_only_folder)
    assert_one_line_error(result, f"{read_only_folder.name}: cannot write there")
    assert ".spectralmatch-tmp" not in result.stderr


def test_read_only_parent_of_a_new_output_folder(runner, tiles, read_only_folder):
    result = match(runner, tiles, read_only_folder / "new")
    assert_one_line_error(result, "new: cannot write there")


@pytest.fixture(params=["full disk", "file-size limit"])
def small_disk(request, tmp_path):
    """A folder on a 400 kB file system (a tmpfs, where one can be mounted), or one in
    which the process's files may not grow past 400 kB (RLIMIT_FSIZE)."""
    folder = tmp_path / "small"
    folder.mkdir()
    if request.param == "file-size limit":
        yield folder, False
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", folder], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root); the file-size case runs")
    yield folder, True
    subprocess.run(["umount", folder], check=True)


def test_a_full_disk_or_a_file_size_limit_is_one_line_naming_the_file(data_dir, small_disk):
    folder, is_tmpfs = small_disk
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"if {not is_tmpfs}: resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))\n"
        "from spectralmatch.cli.main import main\n"
        "main(sys.argv[1:])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "match", data_dir, "-o", folder / "out", "--no-cache"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "out/tile_0" in last and "cannot be written" in last
    if is_tmpfs:
        assert "no space left on the device" in last
    assert "Traceback" not in result.stderr
    assert [n for n in folder_listing(folder / "out") if "tmp" in n] == []


# ---------------------------------------------------------------------- command-line options


USAGE_ERRORS = [
    ("--threads", "0"),
    ("--window-size", "10"),
    ("--block-size", "1"),
    ("--correction", "median"),
    ("--steps", "global,sharpen"),
    ("--steps", ","),
    ("--pif", "magic"),
    ("--output-dtype", "complex64"),
    ("--working-dtype", "float16"),
    ("--nodata", "none"),
    ("--exclude", "missing.gpkg"),
]


@pytest.mark.parametrize(("option", "value"), USAGE_ERRORS)
def test_out_of_range_options_are_usage_errors_naming_the_option(
    runner, tiles, tmp_path, option, value
):
    result = invoke(runner, "match", tiles, "-o", tmp_path / "out", option, value)
    assert result.exit_code == 2
    assert option in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_no_local_with_only_the_local_step(runner, tiles, tmp_path):
    result = match(runner, tiles, tmp_path / "out", "--steps", "local", "--no-local")
    assert_one_line_error(result, "--no-local leaves no step")


# ---------------------------------------------------------------------- model files


@pytest.fixture
def model_file(runner, data_dir, tmp_path) -> Path:
    path = tmp_path / "model.json"
    result = invoke(runner, "fit", data_dir, "--model", path, "--no-cache", "-q")
    assert result.exit_code == 0, result.output
    return path


def _set(field, value):
    def edit(document):
        target = document
        *parents, last = field
        for key in parents:
            target = target[key]
        target[last] = value

    return edit


MODEL_EDITS = [
    ("format", _set(["format"], "other"), "format"),
    ("format_version", _set(["format_version"], 99), "format_version"),
    ("n_bands", _set(["n_bands"], "three"), "n_bands"),
    ("images", _set(["images"], "all"), "images"),
    ("image name", _set(["images", 0, "name"], 7), "images"),
    ("steps", _set(["steps"], {}), "steps"),
    ("class", _set(["steps", 0, "class"], "os:system"), "class"),
    ("params", _set(["steps", 0, "params"], {"gain": 2}), "params"),
    ("state", _set(["steps", 0, "state"], {"gains": "high"}), "state"),
    ("gains shape", _set(["steps", 0, "state", "gains"], [[1.0]]), "gains"),
]


@pytest.mark.parametrize(("case", "edit", "field"), MODEL_EDITS, ids=[e[0] for e in MODEL_EDITS])
def test_a_malformed_model_field_is_named(
    runner, data_dir, model_file, tmp_path, case, edit, field
):
    document = json.loads(model_file.read_text())
    edit(document)
    model_file.write_text(json.dumps(document))
    result = invoke(runner, "transform", data_dir, "--model", model_file, "-o", tmp_path / "o")
    assert_one_line_error(result, "model.json", field)


@pytest.mark.parametrize(
    ("case", "content"), [("not JSON", "{not json"), ("truncated", None), ("a list", "[1, 2]")]
)
def test_a_model_file_that_is_not_a_model(runner, data_dir, model_file, tmp_path, case, content):
    text = model_file.read_text()
    model_file.write_text(text[: len(text) // 2] if content is None else content)
    result = invoke(runner, "transform", data_dir, "--model", model_file, "-o", tmp_path / "o")
    assert_one_line_error(result, "model.json")


@pytest.fixture
def local_model(runner, data_dir, tmp_path) -> Path:
    path = tmp_path / "local.json"
    result = invoke(runner, "fit", data_dir, "--model", path, "--no-cache", "-q")
    assert result.exit_code == 0 and path.with_suffix(".npz").exists()
    return path


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_missing_or_truncated_sidecar_is_named(runner, data_dir, local_model, tmp_path, damage):
    sidecar = local_model.with_suffix(".npz")
    if damage == "missing":
        sidecar.unlink()
    else:
        sidecar.write_bytes(sidecar.read_bytes()[:200])
    result = invoke(runner, "transform", data_dir, "--model", local_model, "-o", tmp_path / "o")
    assert_one_line_error(result, "local.npz")


def test_a_model_for_another_band_count(runner, tiles, model_file, tmp_path):
    rewrite(tiles / "tile_00.tif", read(tiles / "tile_00.tif")[:1])
    result = invoke(
        runner, "transform", tiles / "tile_00.tif", "--model", model_file, "-o", tmp_path / "o"
    )
    assert_one_line_error(result, "tile_00.tif", "has 1 bands", "fitted on 3")


def test_a_new_scene_whose_fitted_images_are_gone(runner, tiles, tmp_path):
    model = tmp_path / "m.json"
    assert invoke(runner, "fit", tiles, "--model", model, "--no-cache", "-q").exit_code == 0
    shutil.copy(tiles / "tile_03.tif", tmp_path / "new.tif")
    (tiles / "tile_00.tif").unlink()
    result = invoke(
        runner, "transform", tmp_path / "new.tif", "--model", model, "-o", tmp_path / "o"
    )
    assert_one_line_error(result, "tile_00.tif", "image of the fitted model is missing")


# ---------------------------------------------------------------------- handled correctly


def test_sidecar_files_beside_the_tiles_are_ignored(runner, tiles, tmp_path):
    for suffix in (".tif.aux.xml", ".tfw", ".tif.ovr.txt", ".txt"):
        (tiles / f"tile_00{suffix}").write_text("sidecar")
    result = match(runner, tiles, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert outputs_of(tmp_path / "out") == [f"{name}.tif" for name in SAMPLE_TILES]


def test_a_folder_named_like_a_raster_is_skipped_with_a_notice(runner, tiles, tmp_path):
    (tiles / "scenes.tif").mkdir()
    result = invoke(runner, "match", tiles, "-o", tmp_path / "out", "--no-cache")
    assert result.exit_code == 0, result.output
    assert "Warning: " in result.stderr and "scenes.tif: skipped, a folder" in result.stderr
    assert outputs_of(tmp_path / "out") == [f"{name}.tif" for name in SAMPLE_TILES]


def test_unicode_and_spaces_in_names(runner, tiles, tmp_path):
    named = tmp_path / "près de l'eau"
    named.mkdir()
    for index, path in enumerate(sorted(tiles.glob("*.tif"))):
        shutil.copy(path, named / f"scène {index} δ.tif")
    result = match(runner, named, tmp_path / "sortie été")
    assert result.exit_code == 0, result.output
    assert outputs_of(tmp_path / "sortie été") == [f"scène {i} δ.tif" for i in range(4)]


def test_a_249_character_file_name(runner, tiles, tmp_path):
    long = tmp_path / "long"
    long.mkdir()
    for index, path in enumerate(sorted(tiles.glob("*.tif"))):
        shutil.copy(path, long / f"{index}{'n' * 244}.tif")
    result = match(runner, long, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert len(outputs_of(tmp_path / "out")) == 4


def test_a_2100_character_path(runner, tiles, tmp_path):
    deep = tmp_path.joinpath(*[f"{'d' * 200}{i}" for i in range(11)])
    deep.mkdir(parents=True)
    for path in sorted(tiles.glob("*.tif")):
        shutil.copy(path, deep / path.name)
    out = deep / "out"
    assert len(str(out / "tile_00.tif")) > 2100
    result = match(runner, deep, out)
    assert result.exit_code == 0, result.output
    assert outputs_of(out) == [f"{name}.tif" for name in SAMPLE_TILES]


def test_mixed_dtypes_with_an_output_dtype_keep_the_uint8_image(runner, tiles, tmp_path):
    _mixed_dtypes(tiles)
    result = match(runner, tiles, tmp_path / "out", "--output-dtype", "uint16")
    assert result.exit_code == 0, result.output
    out = read(tmp_path / "out" / "tile_01.tif")
    assert out.dtype == np.uint16
    valid = out != 0
    # matched to the uint16 neighbours, not saturated at 255
    assert np.median(out[valid]) > 1000 and np.unique(out[valid]).size > 1000


def test_clipping_over_a_thousandth_is_reported_with_name_and_fraction(runner, tiles, tmp_path):
    data = read(tiles / "tile_01.tif").astype(np.float64)
    valid = data != 0
    scaled = np.where(valid, np.clip(data / 40, 1, 255), 0)
    rewrite(tiles / "tile_01.tif", scaled.astype("uint8"), dtype="uint8")
    for name in ("tile_00", "tile_02", "tile_03"):
        rewrite(
            tiles / f"{name}.tif", np.clip(read(tiles / f"{name}.tif") / 20, 0, 255), dtype="uint8"
        )
    result = invoke(runner, "match", tiles, "-o", tmp_path / "out", "--no-cache", "-q")
    assert result.exit_code == 0, result.output
    notices = [line for line in result.stderr.splitlines() if "clipped" in line]
    assert notices and all(line.startswith("Warning: tile_0") for line in notices)
    assert "tile_01" in " ".join(notices)
    fraction = float(notices[0].split(": ")[2].split("%")[0]) / 100
    assert fraction > 0.001


def test_float64_inputs_keep_float64_precision(runner, tmp_path, data_dir):
    folder = tmp_path / "f64"
    for name in SAMPLE_TILES:
        with rasterio.open(data_dir / f"{name}.tif") as dataset:
            data = dataset.read().astype(np.float64)
            profile = dict(dataset.profile)
        data = np.where(data == 0, np.nan, 1e6 + data / 1000)
        write_raster(folder / f"{name}.tif", data, transform=profile["transform"], nodata=math.nan)
    before = np.unique(read(folder / "tile_01.tif")[0]).size
    result = match(runner, folder, tmp_path / "out", "--no-local")
    assert result.exit_code == 0, result.output
    out = read(tmp_path / "out" / "tile_01.tif")
    assert out.dtype == np.float64
    assert np.unique(out[0]).size >= 0.99 * before  # float32 would leave a few hundred
    single = match(runner, folder, tmp_path / "f32", "--no-local", "--working-dtype", "float32")
    assert single.exit_code == 0
    assert np.unique(read(tmp_path / "f32" / "tile_01.tif")[0]).size < before / 5


def test_inputs_without_nodata_get_a_notice_and_nodata_sets_it(runner, tiles, tmp_path):
    for name in SAMPLE_TILES:
        rewrite(tiles / f"{name}.tif", nodata=None)
    result = invoke(runner, "match", tiles, "-o", tmp_path / "out", "--no-cache", "-q")
    assert result.exit_code == 0
    notices = [line for line in result.stderr.splitlines() if "taken as valid" in line]
    assert len(notices) == 1 and "tile_00.tif" in notices[0] and "--nodata" in notices[0]
    given = invoke(runner, "match", tiles, "-o", tmp_path / "o2", "--no-cache", "--nodata", "0")
    assert given.exit_code == 0 and "taken as valid" not in given.stderr
    assert profile_of(tmp_path / "o2" / "tile_00.tif")["nodata"] == 0
    assert (read(tmp_path / "o2" / "tile_00.tif") == 0).sum() == (
        read(tiles / "tile_00.tif") == 0
    ).sum()


def test_nan_and_minus_9999_float_nodata(runner, tiles, tmp_path):
    for index, name in enumerate(SAMPLE_TILES):
        data = read(tiles / f"{name}.tif").astype(np.float32)
        nodata = math.nan if index % 2 else -9999.0
        rewrite(
            tiles / f"{name}.tif", np.where(data == 0, nodata, data), dtype="float32", nodata=nodata
        )
    result = match(runner, tiles, tmp_path / "out")
    assert result.exit_code == 0, result.output
    for index, name in enumerate(SAMPLE_TILES):
        source, out = read(tiles / f"{name}.tif"), read(tmp_path / "out" / f"{name}.tif")
        invalid = np.isnan(source) if index % 2 else source == -9999
        assert (np.isnan(out) if index % 2 else out == -9999)[invalid].all()
        assert np.isfinite(out[~invalid]).all() and (out[~invalid] != -9999).all()


@pytest.mark.parametrize("dtype", ["int8", "int16"])
def test_signed_integer_full_range(runner, tiles, tmp_path, dtype):
    info = np.iinfo(dtype)
    for name in SAMPLE_TILES:
        data = read(tiles / f"{name}.tif").astype(np.float64)
        valid = data != 0
        scaled = info.min + 1 + (data - 5000) / 6000 * (int(info.max) - int(info.min) - 1)
        values = np.where(valid, np.clip(np.round(scaled), info.min + 1, info.max), info.min)
        rewrite(tiles / f"{name}.tif", values, dtype=dtype, nodata=int(info.min))
    result = match(runner, tiles, tmp_path / "out")
    assert result.exit_code == 0, result.output
    out = read(tmp_path / "out" / "tile_01.tif")
    assert out.dtype == np.dtype(dtype)
    source = read(tiles / "tile_01.tif")
    assert ((out == info.min) == (source == info.min)).all()  # nodata kept, never created


def test_uint16_saturated_at_65535(runner, tiles, tmp_path):
    data = read(tiles / "tile_01.tif")
    data[:, 100:200, 100:200] = 65535
    rewrite(tiles / "tile_01.tif", data)
    result = match(runner, tiles, tmp_path / "out")
    assert result.exit_code == 0, result.output
    out = read(tmp_path / "out" / "tile_01.tif")
    assert out[:, 100:200, 100:200].min() > 20000  # saturated ground stays bright


def test_a_constant_image_is_shifted_not_scaled_to_infinity(runner, tiles, tmp_path):
    data = read(tiles / "tile_01.tif")
    rewrite(tiles / "tile_01.tif", np.where(data == 0, 0, 5000))
    result = match(runner, tiles, tmp_path / "out")
    assert result.exit_code == 0, result.output
    out = read(tmp_path / "out" / "tile_01.tif")
    valid = out != 0
    assert np.isfinite(out).all() and valid.sum() == (data != 0).sum()
    assert 1000 < out[valid].mean() < 20000


@pytest.mark.parametrize("bands", [1, 12])
def test_one_and_twelve_bands(runner, tiles, tmp_path, bands):
    for name in SAMPLE_TILES:
        data = read(tiles / f"{name}.tif")
        rewrite(tiles / f"{name}.tif", np.resize(data, (bands, *data.shape[1:])))
    result = match(runner, tiles, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert read(tmp_path / "out" / "tile_00.tif").shape[0] == bands


def test_non_square_pixels(runner, tiles, tmp_path):
    for name in SAMPLE_TILES:
        transform = profile_of(tiles / f"{name}.tif")["transform"]
        rewrite(tiles / f"{name}.tif", transform=transform * Affine.scale(1.0, 1.5))
    result = match(runner, tiles, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert (
        profile_of(tmp_path / "out" / "tile_02.tif")["transform"]
        == profile_of(tiles / "tile_02.tif")["transform"]
    )


def test_mixed_resolutions(runner, tiles, tmp_path):
    rasterio_path = tiles / "tile_01.tif"
    with rasterio.open(rasterio_path) as dataset:
        half = dataset.read(out_shape=(3, dataset.height // 2, dataset.width // 2))
        transform = dataset.transform * Affine.scale(
            dataset.width / (dataset.width // 2), dataset.height / (dataset.height // 2)
        )
    rewrite(rasterio_path, half, width=half.shape[2], height=half.shape[1], transform=transform)
    result = match(runner, tiles, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert read(tmp_path / "out" / "tile_01.tif").shape == half.shape


def test_two_disconnected_groups_warn_and_are_matched_within_each(runner, tiles, tmp_path):
    far = Affine.translation(1e5, 0)
    for name in ("tile_02", "tile_03"):
        transform = profile_of(tiles / f"{name}.tif")["transform"]
        rewrite(tiles / f"{name}.tif", transform=far * transform)
    result = invoke(runner, "match", tiles, "-o", tmp_path / "out", "--no-cache", "--no-local")
    assert result.exit_code == 0, result.output
    assert "Warning: " in result.stderr and "group" in result.stderr


def test_a_single_image_comes_out_unchanged_with_a_warning(runner, tiles, tmp_path):
    result = invoke(runner, "match", tiles / "tile_00.tif", "-o", tmp_path / "out", "--no-cache")
    assert result.exit_code == 0, result.output
    assert "left unchanged" in result.stderr and "tile_00" in result.stderr
    assert (read(tmp_path / "out" / "tile_00.tif") == read(tiles / "tile_00.tif")).all()


def test_images_that_overlap_nothing_come_out_unchanged_with_a_warning(runner, tiles, tmp_path):
    transform = profile_of(tiles / "tile_03.tif")["transform"]
    rewrite(tiles / "tile_03.tif", transform=Affine.translation(2e5, 0) * transform)
    result = invoke(runner, "match", tiles, "-o", tmp_path / "out", "--no-cache")
    assert result.exit_code == 0, result.output
    assert "left unchanged" in result.stderr and "tile_03" in result.stderr
    assert (read(tmp_path / "out" / "tile_03.tif") == read(tiles / "tile_03.tif")).all()
    assert not (read(tmp_path / "out" / "tile_01.tif") == read(tiles / "tile_01.tif")).all()


def test_an_overlap_of_a_handful_of_pixels_is_named_and_left_out(runner, tiles, tmp_path):
    data = read(tiles / "tile_00.tif")
    patch = np.zeros_like(data)
    patch[:, 150:153, 150:153] = data[:, 150:153, 150:153]  # 9 valid pixels
    shutil.copy(tiles / "tile_00.tif", tiles / "patch.tif")
    rewrite(tiles / "patch.tif", patch)
    inputs = [tiles / "tile_00.tif", tiles / "tile_01.tif", tiles / "patch.tif"]
    result = invoke(runner, "match", *inputs, "-o", tmp_path / "out", "--no-cache", "--no-local")
    assert result.exit_code == 0, result.output
    named = [line for line in result.stderr.splitlines() if "patch" in line]
    assert named and any("9" in line and "left out" in line for line in named), result.stderr
    assert (read(tmp_path / "out" / "patch.tif") == patch).all()


def test_a_block_size_too_small_for_any_block_is_named(runner, tiles, tmp_path):
    result = invoke(
        runner, "match", tiles, "-o", tmp_path / "out", "--no-cache", "--block-size", "4"
    )
    assert result.exit_code == 0, result.output
    assert "Warning: " in result.stderr and "block" in result.stderr and "4" in result.stderr
