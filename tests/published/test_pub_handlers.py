"""The published package's tests of the path helpers ``search_paths``, ``create_paths``
and ``match_paths``, ported: the same calls with the same keywords."""

from __future__ import annotations

import os

import pytest

from spectralmatch import create_paths, match_paths, search_paths


@pytest.fixture
def matched_files(tmp_path):
    for name in ("A_GlobalMatch.tif", "B_GlobalMatch.tif", "C_Other.tif"):
        (tmp_path / name).write_text("test")
    return tmp_path


def test_search_paths_takes_a_glob(matched_files):
    found = search_paths(os.path.join(str(matched_files), "*_GlobalMatch.tif"))
    assert sorted(os.path.basename(path) for path in found) == [
        "A_GlobalMatch.tif",
        "B_GlobalMatch.tif",
    ]


def test_search_paths_keeps_the_files_matching_the_references(matched_files):
    found = search_paths(
        os.path.join(str(matched_files), "*_GlobalMatch.tif"),
        match_to_paths=(["A", "B"], r"(.*)_GlobalMatch\.tif$"),
    )
    assert len(found) == 2
    assert all(any(key in path for key in ("A", "B")) for path in found)


def test_create_paths_from_paths_makes_the_folder(tmp_path):
    inputs = [str(tmp_path / f"{key}_GlobalMatch.tif") for key in ("A", "B")]
    for path in inputs:
        open(path, "w").close()
    created = create_paths(os.path.join(str(tmp_path / "out"), "$_processed.tif"), inputs)
    assert len(created) == 2
    assert all(path.endswith("_processed.tif") for path in created)
    assert all(os.path.isdir(os.path.dirname(path)) for path in created)


def test_create_paths_from_names(tmp_path):
    names = ["A_GlobalMatch", "B_GlobalMatch"]
    folder = tmp_path / "out"
    created = create_paths(os.path.join(str(folder), "$_done.tif"), names)
    assert created == [str(folder / f"{name}_done.tif") for name in names]
    assert folder.is_dir()


def test_create_paths_can_leave_the_folder_alone(tmp_path):
    folder = tmp_path / "subdir"
    created = create_paths(
        os.path.join(str(folder), "$.tif"), ["Image1", "Image2"], create_folders=False
    )
    assert all(str(folder) in path for path in created)
    assert not folder.exists()


def test_match_paths_orders_the_matches_like_the_references():
    inputs = [f"/data/{key}_LocalMatch.gpkg" for key in "ABC"]
    references = [f"/ref/{key}_GlobalMatch.tif" for key in "ABC"]
    matched = match_paths(inputs, references, r"(.*)_LocalMatch\.gpkg$")
    assert [path.rsplit("/", 1)[1] for path in matched] == [
        f"{key}_LocalMatch.gpkg" for key in "ABC"
    ]


def test_match_paths_gives_none_for_a_reference_without_match():
    matched = match_paths(
        ["/data/B_LocalMatch.gpkg"],
        ["/ref/A_GlobalMatch.tif", "/ref/B_GlobalMatch.tif"],
        r"(.*)_LocalMatch\.gpkg$",
    )
    assert matched == [None, "/data/B_LocalMatch.gpkg"]


def test_match_paths_gives_none_when_nothing_matches():
    matched = match_paths(
        ["/data/X_LocalMatch.gpkg"], ["/ref/Y_GlobalMatch.tif"], r"(.*)_LocalMatch\.gpkg$"
    )
    assert matched == [None]


def test_match_paths_takes_the_candidate_whose_key_the_reference_holds():
    """A_LocalMatch gives the key "A", A_Alt_LocalMatch "A_Alt": only "A" is in the
    reference's name (the published test accepts either input)."""
    inputs = ["/data/A_LocalMatch.gpkg", "/data/A_Alt_LocalMatch.gpkg"]
    matched = match_paths(inputs, ["/ref/A_GlobalMatch.tif"], r"(.*)_LocalMatch\.gpkg$")
    assert matched == ["/data/A_LocalMatch.gpkg"]
