"""Path forms: what inputs and outputs may be, and the search / create / match helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import SAMPLE_TILES, folder_listing

import spectralmatch
from spectralmatch import (
    ImageCollection,
    SpectralMatchError,
    create_paths,
    match_paths,
    search_paths,
)
from spectralmatch.raster.collection import resolve_paths
from spectralmatch.raster.paths import output_arguments, resolve_outputs


def touch(folder: Path, *names: str) -> list[Path]:
    """Empty files (where only names matter), their folders created."""
    paths = [folder / name for name in names]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return paths


@pytest.fixture(scope="module")
def sample(data_dir) -> ImageCollection:
    return ImageCollection.from_paths(data_dir)


def outputs_for(collection, output_images) -> list[str]:
    paths = resolve_outputs(collection, **output_arguments(collection, output_images))
    return [str(path) for path in paths]


# ---------------------------------------------------------------------- inputs


def test_folder_gives_every_raster_suffix(tmp_path):
    touch(tmp_path, "a.tif", "b.TIFF", "c.vrt", "d.img", "e.jp2", "f.txt", "g.gpkg")
    assert [p.name for p in resolve_paths(tmp_path)] == [
        "a.tif",
        "b.TIFF",
        "c.vrt",
        "d.img",
        "e.jp2",
    ]


def test_folder_pattern_pair_is_the_pattern_inside_the_folder(tmp_path):
    folder = tmp_path / "scenes [2024]"  # a folder name with glob characters is literal
    touch(folder, "x.tif", "y.tif", "y.vrt")
    assert resolve_paths((folder, "*.tif")) == [folder / "x.tif", folder / "y.tif"]
    assert resolve_paths((str(folder), "y.*")) == [folder / "y.tif", folder / "y.vrt"]
    # pairs may be entries of a list, mixed with files
    other = touch(tmp_path, "z.tif")[0]
    assert resolve_paths([other, (folder, "x*")]) == [other, folder / "x.tif"]


def test_pair_in_a_collection_and_a_real_call(data_dir, tmp_path):
    collection = ImageCollection.coerce((data_dir, "tile_0[13].tif"))
    assert collection.names == ["tile_01", "tile_03"]
    written = spectralmatch.global_regression((data_dir, "tile_0[01].tif"), tmp_path)
    assert [Path(p).name for p in written] == ["tile_00.tif", "tile_01.tif"]


def test_a_tuple_of_two_files_is_two_files(data_dir):
    first, second = data_dir / "tile_02.tif", data_dir / "tile_00.tif"
    assert resolve_paths((first, second)) == [first, second]


def test_double_star_reaches_subfolders(tmp_path):
    touch(tmp_path, "top.tif", "a/one.tif", "a/b/two.tif", "a/b/c/three.tif")
    deep = sorted(p.name for p in resolve_paths(str(tmp_path / "**" / "*.tif")))
    assert deep == ["one.tif", "three.tif", "top.tif", "two.tif"]
    shallow = search_paths(str(tmp_path / "**" / "*.tif"))  # recursive=False: ** is *
    assert [Path(p).name for p in shallow] == ["one.tif"]
    found = search_paths(tmp_path / "a", default_file_pattern="**/*.tif", recursive=True)
    assert sorted(Path(p).name for p in found) == ["one.tif", "three.tif", "two.tif"]


def test_input_errors_name_the_problem(tmp_path):
    touch(tmp_path, "x.tif")
    with pytest.raises(SpectralMatchError, match=r"\*\.jp2: pattern matches no file"):
        resolve_paths((tmp_path, "*.jp2"))
    with pytest.raises(SpectralMatchError, match="nor a \\(folder, pattern\\) pair"):
        resolve_paths([(tmp_path, 3)])
    with pytest.raises(SpectralMatchError, match="missing: no such file or folder"):
        resolve_paths((tmp_path / "missing", "*.tif"))


# ---------------------------------------------------------------------- outputs


def test_folder_output_keeps_the_input_names(sample, tmp_path):
    out = tmp_path / "out"
    assert outputs_for(sample, out) == [str(out / f"{name}.tif") for name in SAMPLE_TILES]
    assert folder_listing(tmp_path) == ["out"]


def test_existing_folder_with_a_suffix_stays_a_folder(sample, tmp_path):
    out = tmp_path / "run.v2"
    out.mkdir()
    assert outputs_for(sample, out)[0] == str(out / "tile_00.tif")


@pytest.mark.parametrize(
    "template, expected",
    [
        ("$_Global.tif", "{}_Global.tif"),
        ("$.tif", "{}.tif"),
        ("*_matched.tif", "{}_matched.tif"),
        ("by_image/$/result.tif", "by_image/{}/result.tif"),
    ],
)
def test_template_puts_each_name_in_place_of_the_symbol(sample, tmp_path, template, expected):
    paths = outputs_for(sample, str(tmp_path / template))
    assert paths == [str(tmp_path / expected.format(name)) for name in SAMPLE_TILES]
    assert not any("$" in entry or "*" in entry for entry in folder_listing(tmp_path))


def test_folder_template_pair(sample, tmp_path):
    paths = outputs_for(sample, (tmp_path / "out", "$_Global.tif"))
    assert paths == [str(tmp_path / "out" / f"{name}_Global.tif") for name in SAMPLE_TILES]
    assert folder_listing(tmp_path) == ["out"]


def test_one_output_file_for_one_image(data_dir, tmp_path):
    single = ImageCollection.from_paths(data_dir / "tile_02.tif")
    assert outputs_for(single, tmp_path / "result.tif") == [str(tmp_path / "result.tif")]
    assert folder_listing(tmp_path) == []


def test_outputs_that_collide_or_name_no_file_are_refused(sample, tmp_path):
    with pytest.raises(SpectralMatchError, match="one output file for 4 images") as error:
        outputs_for(sample, tmp_path / "result.tif")
    assert "$_result.tif" in str(error.value)
    with pytest.raises(SpectralMatchError, match="same output path") as error:
        outputs_for(sample, [tmp_path / "a.tif"] * 4)
    assert "tile_00 and tile_01" in str(error.value)
    with pytest.raises(SpectralMatchError, match="end it with a file name such as"):
        outputs_for(sample, tmp_path / "out" / "$")
    with pytest.raises(SpectralMatchError, match="not in a list"):
        outputs_for(sample, [tmp_path / f"{i}_$.tif" for i in range(4)])
    assert folder_listing(tmp_path) == []


def test_dollar_template_through_a_real_call(data_dir, tmp_path):
    written = spectralmatch.global_regression(str(data_dir), str(tmp_path / "$_Global.tif"))
    names = [f"{name}_Global.tif" for name in SAMPLE_TILES]
    assert written == [str(tmp_path / name) for name in names]
    assert folder_listing(tmp_path) == names  # no folder named "$_Global.tif"
    for name, path in zip(SAMPLE_TILES, written, strict=True):
        with rasterio.open(data_dir / f"{name}.tif") as source, rasterio.open(path) as output:
            assert (output.width, output.height, output.count) == (
                source.width,
                source.height,
                source.count,
            )
            assert not np.array_equal(output.read(), source.read())  # corrected, not copied


# ---------------------------------------------------------------------- search_paths


def test_search_paths_forms(data_dir, capsys):
    pattern = search_paths(str(data_dir / "tile_0[23].tif"))
    assert pattern == [str(data_dir / "tile_02.tif"), str(data_dir / "tile_03.tif")]
    in_folder = search_paths(data_dir, default_file_pattern="*.tif", debug_logs=True)
    assert in_folder == [str(data_dir / f"{name}.tif") for name in SAMPLE_TILES]
    assert "Found 4 file(s)" in capsys.readouterr().out
    assert search_paths(data_dir) == in_folder  # a folder alone: its rasters


def test_search_paths_matched_to_references(tmp_path):
    masks = touch(tmp_path, "tile_01_Mask.gpkg", "tile_00_Mask.gpkg", "other.gpkg")
    references = ["data/tile_00.tif", "data/tile_01.tif", "data/tile_02.tif"]
    matched = search_paths(tmp_path / "*.gpkg", match_to_paths=(references, r"(.*)_Mask\.gpkg$"))
    assert matched == [str(masks[1]), str(masks[0]), None]


def test_search_paths_matching_nothing_raises(tmp_path):
    with pytest.raises(SpectralMatchError, match="pattern matches no file"):
        search_paths(tmp_path, default_file_pattern="*.tif")


# ---------------------------------------------------------------------- create_paths


def test_create_paths_from_templates_and_folders(tmp_path):
    refs = ["data/tile_00.tif", "tile_01"]
    assert create_paths(str(tmp_path / "a" / "$_Global.tif"), refs) == [
        str(tmp_path / "a" / "tile_00_Global.tif"),
        str(tmp_path / "a" / "tile_01_Global.tif"),
    ]
    folder = create_paths(tmp_path / "b", refs, default_file_pattern="$_Mask.gpkg")
    assert folder == [str(tmp_path / "b" / f"{n}_Mask.gpkg") for n in ("tile_00", "tile_01")]
    assert create_paths(tmp_path / "c", refs)[1] == str(tmp_path / "c" / "tile_01.tif")
    assert create_paths(str(tmp_path / "d" / "#.tif"), refs, replace_symbol="#")[0] == str(
        tmp_path / "d" / "tile_00.tif"
    )
    create_paths(str(tmp_path / "e" / "$.tif"), refs, create_folders=False)
    assert folder_listing(tmp_path) == ["a", "b", "c", "d"]  # folders only, no files


def test_create_paths_refuses_collisions(tmp_path):
    with pytest.raises(SpectralMatchError, match="same output path") as error:
        create_paths(str(tmp_path / "result.tif"), ["x/a.tif", "x/b.tif"])
    assert "x/a.tif and x/b.tif" in str(error.value)
    with pytest.raises(SpectralMatchError, match="same output path"):
        create_paths(str(tmp_path / "$.tif"), ["x/a.tif", "y/a.tif"])
    with pytest.raises(SpectralMatchError, match="names files"):
        create_paths(str(tmp_path / "$"), ["x/a.tif"])
    assert folder_listing(tmp_path) == []


# ---------------------------------------------------------------------- match_paths


def test_match_paths_pairs_by_key():
    inputs = ["m/tile_1_Mask.gpkg", "m/tile_10_Mask.gpkg", "m/notes.txt"]
    references = ["d/tile_10.tif", "d/tile_1.tif", "d/tile_2.tif"]
    regex = r"(.*)_Mask\.gpkg$"
    # the longest key wins: tile_10.tif contains both "tile_1" and "tile_10"
    assert match_paths(inputs, references, regex) == [inputs[1], inputs[0], None]
    # without a group the whole match is the key
    assert match_paths(["a/tile_2.gpkg"], references, r"tile_\d") == [None, None, "a/tile_2.gpkg"]


def test_match_paths_refuses_ambiguous_keys():
    with pytest.raises(SpectralMatchError, match="gives the key 'tile_1'"):
        match_paths(["a/tile_1_x.gpkg", "b/tile_1_y.gpkg"], ["tile_1.tif"], r"(tile_\d)")
    with pytest.raises(SpectralMatchError, match="empty key"):
        match_paths(["a/tile_1.gpkg"], ["tile_1.tif"], r"(x*)")
