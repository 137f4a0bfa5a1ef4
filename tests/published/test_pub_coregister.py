"""The published package's tests of ``joint_coregistration``, ported: the same calls with
the same keywords, checked through the written files (no private function is called).

Ours resamples every output onto one pixel grid (docs/migrating.md), so where the
published tests read an output's geotransform to see how far an image moved, these read
where its valid pixels lie on that grid."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from conftest import DATA_DIR
from published_data import dummy_raster

from spectralmatch import joint_coregistration
from spectralmatch.errors import SpectralMatchWarning

METRIC = "EPSG:3857"


def tie_record(first: str, second: str, *pairs) -> dict:
    """One pair of the published tie-point JSON: pixel (col, row) in each image."""
    points = [[list(a), list(b)] for a, b in pairs] or [[[10.0, 10.0], [10.0, 10.0]]]
    return {"image_1": first, "image_2": second, "points": points}


def write_ties(path, *records) -> str:
    path.write_text(json.dumps({"tie_points": list(records)}), encoding="utf-8")
    return str(path)


def two_flat_images(tmp_path, offset: float) -> tuple[list[str], str]:
    """a and b, 24 px flat squares ``offset`` pixels apart, and one tie point saying that
    pixel (10, 10) is the same place in both (so b lies ``offset`` pixels too far east)."""
    inputs = [
        dummy_raster(tmp_path / f"{name}.tif", width=24, height=24, count=1, crs=METRIC,
                     origin=(left, 24))
        for name, left in (("a", 0), ("b", offset))
    ]  # fmt: skip
    return inputs, write_ties(tmp_path / "ties.json", tie_record("a", "b"))


@pytest.fixture
def translated(tmp_path) -> tuple[list[str], str]:
    """The published pair: b two pixels east of where its tie point puts it."""
    return two_flat_images(tmp_path, 2)


def valid_left_edge(path) -> float:
    """The map x of the leftmost valid pixel's left edge."""
    with rasterio.open(path) as dataset:
        columns = np.flatnonzero(dataset.dataset_mask().any(axis=0))
        return dataset.transform.c + dataset.transform.a * columns[0]


def outputs_in(tmp_path, *names) -> list[str]:
    return [str(tmp_path / "out" / f"{name}.tif") for name in names]


def test_build_overviews_uses_the_window_scales(tmp_path, translated):
    inputs, ties = translated
    outputs = outputs_in(tmp_path, "a", "b")
    joint_coregistration(
        inputs,
        outputs,
        local_model="none",
        load_adjustments=ties,
        build_overviews=True,
        window_scales=(2, 4),
    )
    for output in outputs:
        with rasterio.open(output) as dataset:
            assert dataset.overviews(1) == [2, 4]
            width = dataset.width
        for level, factor in enumerate((2, 4)):
            with rasterio.open(output, overview_level=level) as overview:
                assert overview.width == -(-width // factor)


def test_a_heavier_weight_keeps_its_image_in_place(tmp_path):
    """Published with b 2 px off, read from the geotransforms; here b is 8 px off, so that
    the moves show in the valid pixels even though a pixel only partly covered by a moved
    image is left out (up to one pixel at an edge)."""
    inputs, ties = two_flat_images(tmp_path, 8)
    outputs = outputs_in(tmp_path, "a", "b")
    result = joint_coregistration(
        inputs,
        outputs,
        global_model="translation",
        global_image_position_preservation_weights={"a": 100.0, "b": 1.0},
        local_model="none",
        robust_loss="none",
        load_adjustments=ties,
    )
    assert result == outputs
    moved_a = valid_left_edge(outputs[0]) - 0
    moved_b = valid_left_edge(outputs[1]) - 8
    assert abs(moved_a) < abs(moved_b)
    # a moves 8 / 101 px and b the rest (equal weights: 4 px each), to one place
    assert moved_a == pytest.approx(0, abs=1) and moved_b == pytest.approx(-8, abs=1)
    assert moved_a == moved_b + 8


def test_zero_alignment_strength_keeps_the_geotransforms(tmp_path, translated):
    inputs, ties = translated
    outputs = outputs_in(tmp_path, "a", "b")
    joint_coregistration(
        inputs,
        outputs,
        global_tie_point_alignment_strength=0.0,
        local_model="none",
        load_adjustments=ties,
    )
    for source, output in zip(inputs, outputs, strict=True):
        with rasterio.open(source) as before, rasterio.open(output) as after:
            assert after.transform == before.transform
            np.testing.assert_array_equal(after.read(), before.read())


def test_a_shared_resolution_and_tap_set_the_grid(tmp_path, translated):
    inputs, ties = translated
    outputs = outputs_in(tmp_path, "a", "b")
    joint_coregistration(
        inputs, outputs, local_model="none", load_adjustments=ties, resolution=2.0, tap=True
    )
    for output in outputs:
        with rasterio.open(output) as dataset:
            transform = dataset.transform
        assert (abs(transform.a), abs(transform.e)) == (2.0, 2.0)
        assert transform.c / 2 == round(transform.c / 2)
        assert transform.f / 2 == round(transform.f / 2)


def test_saved_tie_points_are_the_raw_pixel_points(tmp_path, translated):
    inputs, ties = translated
    saved = tmp_path / "saved.json"
    joint_coregistration(
        inputs,
        outputs_in(tmp_path, "a", "b"),
        global_model="translation",
        local_model="none",
        load_adjustments=ties,
        save_adjustments=str(saved),
    )
    assert json.loads(saved.read_text(encoding="utf-8")) == {"tie_points": [tie_record("a", "b")]}


def test_tie_points_load_and_save_unchanged_in_the_compact_layout(tmp_path, translated):
    inputs, _ = translated
    record = tie_record("a", "b", ((1.25, 2.5), (3.75, 4.0)), ((5.0, 6.25), (7.5, 8.75)))
    loaded = write_ties(tmp_path / "compact.json", record)
    saved = tmp_path / "saved.json"
    joint_coregistration(
        inputs,
        outputs_in(tmp_path, "a", "b"),
        load_adjustments=loaded,
        save_adjustments=str(saved),
        robust_loss="none",
    )
    assert json.loads(saved.read_text(encoding="utf-8")) == {"tie_points": [record]}


def test_three_images_are_solved_as_one_network(tmp_path):
    """a-b and b-c are tied, a-c is not: still all three end in one place."""
    inputs = [
        dummy_raster(tmp_path / f"{name}.tif", width=16, height=16, count=1, crs=METRIC,
                     origin=(left, 16))
        for name, left in (("a", 0), ("b", 2), ("c", 4))
    ]  # fmt: skip
    same = ((5.0, 5.0), (5.0, 5.0))
    ties = write_ties(
        tmp_path / "ties.json", tie_record("a", "b", same), tie_record("b", "c", same)
    )
    outputs = outputs_in(tmp_path, "a", "b", "c")
    with pytest.warns(SpectralMatchWarning, match="a and c overlap but have 0 usable tie"):
        joint_coregistration(
            inputs, outputs, global_model="translation", robust_loss="none", load_adjustments=ties
        )
    edges = [valid_left_edge(output) for output in outputs]
    assert edges == pytest.approx([edges[0]] * 3, abs=1e-9)


def test_a_partial_tie_point_file_is_completed_by_matching_only_the_other_pairs(tmp_path):
    """Published with a mocked matcher; here three sample tiles: the pair in the file keeps
    its points as loaded, the two others get the points a run without a file finds."""
    inputs = [str(DATA_DIR / f"tile_0{index}.tif") for index in range(3)]
    found = tmp_path / "found.json"
    joint_coregistration(inputs, str(tmp_path / "first"), save_adjustments=str(found))
    matched = json.loads(found.read_text(encoding="utf-8"))["tie_points"]
    assert [(r["image_1"], r["image_2"]) for r in matched] == [
        ("tile_00", "tile_01"),
        ("tile_00", "tile_02"),
        ("tile_01", "tile_02"),
    ]
    loaded = {**matched[0], "points": matched[0]["points"][:5]}
    again = tmp_path / "again.json"
    joint_coregistration(
        inputs,
        str(tmp_path / "second"),
        load_adjustments=write_ties(tmp_path / "partial.json", loaded),
        save_adjustments=str(again),
    )
    assert json.loads(again.read_text(encoding="utf-8"))["tie_points"] == [loaded, *matched[1:]]


def test_local_alignment_writes_readable_rasters(tmp_path, translated):
    inputs, ties = translated
    outputs = outputs_in(tmp_path, "a", "b")
    joint_coregistration(
        inputs,
        outputs,
        global_model="none",
        local_model="bilinear",
        local_grid_spacing=8.0,
        local_anchor_falloff_distance=6.0,
        robust_loss="none",
        load_adjustments=ties,
    )
    for output in outputs:
        with rasterio.open(output) as dataset:
            assert dataset.width > 0 and dataset.height > 0
            assert dataset.dataset_mask().any()


def test_unknown_weight_names_and_repeated_names_are_refused(tmp_path, translated):
    inputs, ties = translated
    outputs = outputs_in(tmp_path, "a", "b")
    with pytest.raises(ValueError, match="missing"):
        joint_coregistration(
            inputs,
            outputs,
            global_image_position_preservation_weights={"missing": 1.0},
            load_adjustments=ties,
        )
    duplicate = dummy_raster(tmp_path / "duplicate" / "a.tif", crs=METRIC)
    with pytest.raises(ValueError, match="duplicate image name 'a'"):
        joint_coregistration(
            [inputs[0], duplicate], outputs, global_model="none", local_model="none"
        )
    assert not (tmp_path / "out").exists()
