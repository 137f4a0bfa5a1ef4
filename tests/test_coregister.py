"""joint_coregistration on real Landsat tiles moved by known amounts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from conftest import DATA_DIR, read_raster, write_four_band_masked, write_raster
from rasterio.transform import Affine
from scipy import ndimage

from spectralmatch import SpectralMatchError, joint_coregistration
from spectralmatch.errors import SpectralMatchWarning
from spectralmatch.ops.tiepoints import match_pair
from spectralmatch.raster.image import Image

PIXEL = 30.0
FIXED = {"tile_00": 1e6}


def _tile(name: str):
    with rasterio.open(DATA_DIR / f"{name}.tif") as dataset:
        return dataset.read(), dataset.transform


def _shifted_pair(folder, columns=2.5, rows=-1.5):
    """tile_00 as it is and tile_01 with its geotransform moved by (columns, rows) pixels."""
    first, first_transform = _tile("tile_00")
    second, second_transform = _tile("tile_01")
    write_raster(folder / "tile_00.tif", first, transform=first_transform, nodata=0)
    moved = second_transform * Affine.translation(columns, rows)
    write_raster(folder / "tile_01_shifted.tif", second, transform=moved, nodata=0)
    return second, second_transform


def _affine(angle: float, scale: tuple[float, float], shape) -> tuple[np.ndarray, np.ndarray]:
    """Matrix and offset (array coordinates, as scipy takes them) of a rotation by
    ``angle`` degrees and a scale (rows, columns) about the centre of ``shape``."""
    theta = np.deg2rad(angle)
    matrix = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    matrix *= np.array(scale)[:, None]
    centre = (np.array(shape) - 1) / 2
    return matrix, centre - matrix @ centre


def _warp(values: np.ndarray, matrix: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``values`` sampled bilinearly at ``matrix @ index + offset``; 0 where a sample
    touches a 0 or falls outside."""
    warped = [
        ndimage.affine_transform(band.astype(float), matrix, offset, order=1) for band in values
    ]
    inside = ndimage.affine_transform((values > 0).all(axis=0).astype(float), matrix, offset)
    return np.where(inside > 0.999, np.rint(warped), 0).astype(values.dtype)


def _warped_part(folder, angle: float, scale: tuple[float, float]):
    """tile_00 and its columns 150.. with their content rotated and scaled (``_affine``)
    on a north-up geotransform, and that part warped back by the exact inverse (the best
    any co-registration that resamples bilinearly can do)."""
    values, transform = _tile("tile_00")
    part = values[:, :, 150:]
    matrix, offset = _affine(angle, scale, part.shape[1:])
    warped = _warp(part, matrix, offset)
    inverse = np.linalg.inv(matrix)
    write_raster(folder / "tile_00.tif", values, transform=transform, nodata=0)
    part_transform = transform * Affine.translation(150, 0)
    write_raster(folder / "tile_00_part.tif", warped, transform=part_transform, nodata=0)
    return values, warped, _warp(warped, inverse, -inverse @ offset)


def _on_grid_of(output, reference_transform, shape):
    """``output`` (a path) cut to the rows and columns of an image at
    ``reference_transform`` with ``shape`` (both on the same 30 m grid)."""
    with rasterio.open(output) as dataset:
        values, transform = dataset.read(), dataset.transform
    row = round((transform.f - reference_transform.f) / PIXEL)
    col = round((reference_transform.c - transform.c) / PIXEL)
    full = np.zeros((values.shape[0], *shape), dtype=values.dtype)
    top, left = max(0, -row), max(0, -col)
    piece = values[:, max(0, row) :, max(0, col) :][:, : shape[0] - top, : shape[1] - left]
    full[:, top : top + piece.shape[1], left : left + piece.shape[2]] = piece
    return full


def _mean_difference(a, b):
    valid = (a > 0) & (b > 0)
    return float(np.abs(a.astype(float) - b.astype(float))[valid].mean())


def test_translation_is_measured_and_undone_within_a_fifth_of_a_pixel(tmp_path):
    truth, truth_transform = _shifted_pair(tmp_path / "in")
    outputs = joint_coregistration(
        tmp_path / "in",
        tmp_path / "out",
        global_image_position_preservation_weights=FIXED,
        save_adjustments=tmp_path / "ties.json",
    )
    assert [path.rsplit("/", 1)[1] for path in outputs] == ["tile_00.tif", "tile_01_shifted.tif"]
    # the measured tie points: the content sits 2.5 px right and 1.5 px up in the copy
    (record,) = json.loads((tmp_path / "ties.json").read_text())["tie_points"]
    assert (record["image_1"], record["image_2"]) == ("tile_00", "tile_01_shifted")
    points = np.array(record["points"])
    first_map = np.array(_tile("tile_00")[1] * (points[:, 0] + 0.5).T)
    second_map = np.array(
        (truth_transform * Affine.translation(2.5, -1.5)) * (points[:, 1] + 0.5).T
    )
    shift = np.median(second_map - first_map, axis=1) / PIXEL
    assert shift == pytest.approx([2.5, 1.5], abs=0.2)
    # the weighted image is copied exactly; the other lands back where tile_01 is
    assert np.array_equal(read_raster(outputs[0]), _tile("tile_00")[0])
    recovered = _on_grid_of(outputs[1], truth_transform, truth.shape[1:])
    fifth = np.stack([ndimage.shift(band.astype(float), (0, 0.2), order=1) for band in truth])
    assert _mean_difference(recovered, truth) < _mean_difference(np.rint(fifth), truth)


def test_overlap_agrees_much_better_after_than_before(tmp_path):
    values, transform = _tile("tile_00")
    write_raster(tmp_path / "in" / "whole.tif", values, transform=transform, nodata=0)
    moved = transform * Affine.translation(150 + 2.5, -1.5)
    write_raster(tmp_path / "in" / "part.tif", values[:, :, 150:], transform=moved, nodata=0)
    before = joint_coregistration(tmp_path / "in", tmp_path / "before", global_model="none")
    after = joint_coregistration(tmp_path / "in", tmp_path / "after")

    def disagreement(paths):
        return _mean_difference(*(_on_grid_of(path, transform, values.shape[1:]) for path in paths))

    assert disagreement(after) < 0.2 * disagreement(before)


@pytest.mark.parametrize(
    ("model", "angle", "scale"),
    [("similarity", 0.5, (1.003, 1.003)), ("affine", 0.3, (1.004, 0.997))],
)
def test_rotation_and_scale_are_undone(tmp_path, model, angle, scale):
    truth, warped, best = _warped_part(tmp_path / "in", angle, scale)
    outputs = joint_coregistration(
        tmp_path / "in",
        tmp_path / "out",
        global_model=model,
        global_image_position_preservation_weights=FIXED,
    )
    assert np.array_equal(read_raster(outputs[0]), truth)
    part_transform = _tile("tile_00")[1] * Affine.translation(150, 0)
    recovered = _on_grid_of(outputs[1], part_transform, warped.shape[1:])
    fifth = np.stack([ndimage.shift(band.astype(float), (0.2, 0), order=1) for band in best])
    assert _mean_difference(recovered, best) < _mean_difference(np.rint(fifth), best)
    assert _mean_difference(recovered, best) < 0.1 * _mean_difference(warped, best)


def test_saved_tie_points_load_to_identical_outputs(tmp_path):
    _shifted_pair(tmp_path / "in")
    ties = tmp_path / "ties.json"
    first = joint_coregistration(tmp_path / "in", tmp_path / "a", save_adjustments=ties)
    second = joint_coregistration(tmp_path / "in", tmp_path / "b", load_adjustments=ties)
    # the published layout with the pair the other way round loads the same
    (record,) = json.loads(ties.read_text())["tie_points"]
    flipped = {
        "image_1": record["image_2"],
        "image_2": record["image_1"],
        "points": [[two, one] for one, two in record["points"]],
    }
    (tmp_path / "flipped.json").write_text(json.dumps({"tie_points": [flipped]}))
    third = joint_coregistration(
        tmp_path / "in", tmp_path / "c", load_adjustments=tmp_path / "flipped.json"
    )
    for paths in zip(first, second, third, strict=True):
        arrays = [read_raster(path) for path in paths]
        assert np.array_equal(arrays[0], arrays[1]) and np.array_equal(arrays[0], arrays[2])


def test_registered_inputs_come_out_bit_identical(tmp_path):
    values, transform = _tile("tile_00")
    write_raster(tmp_path / "in" / "whole.tif", values, transform=transform, nodata=0)
    part = transform * Affine.translation(120, 40)
    write_raster(tmp_path / "in" / "part.tif", values[:, 40:, 120:], transform=part, nodata=0)
    for model, local in [("translation", "none"), ("affine", "none"), ("translation", "bilinear")]:
        outputs = joint_coregistration(
            tmp_path / "in", tmp_path / model / local, global_model=model, local_model=local
        )
        for output, name in zip(outputs, ("part", "whole"), strict=True):
            assert np.array_equal(read_raster(output), read_raster(tmp_path / "in" / f"{name}.tif"))


def test_a_pair_without_tie_points_is_left_out_with_warnings(tmp_path):
    values, transform = _tile("tile_00")
    write_raster(tmp_path / "in" / "left.tif", values[:, :, :200], transform=transform, nodata=0)
    right = transform * Affine.translation(190, 0)
    write_raster(tmp_path / "in" / "right.tif", values[:, :, 190:], transform=right, nodata=0)
    with pytest.warns(SpectralMatchWarning) as caught:
        outputs = joint_coregistration(tmp_path / "in", tmp_path / "out")
    messages = [str(warning.message) for warning in caught]
    assert any("left and right overlap but have 0 usable tie points" in m for m in messages)
    assert any("left has no tie point" in m for m in messages)
    assert np.array_equal(read_raster(outputs[0]), values[:, :, :200])


def test_bad_inputs_are_clear_errors(tmp_path):
    _shifted_pair(tmp_path / "in")
    with pytest.raises(SpectralMatchError, match="no input image is named 'tile_99'"):
        joint_coregistration(
            tmp_path / "in",
            tmp_path / "out",
            global_image_position_preservation_weights={"tile_99": 2.0},
        )
    with pytest.raises(SpectralMatchError, match="at least two .*tile_00.tif"):
        joint_coregistration([tmp_path / "in" / "tile_00.tif"], tmp_path / "out")
    (tmp_path / "bad.json").write_text('{"points": []}')
    with pytest.raises(SpectralMatchError, match="bad.json: load_adjustments"):
        joint_coregistration(
            tmp_path / "in", tmp_path / "out", load_adjustments=tmp_path / "bad.json"
        )


def test_lanczos_is_cubic_with_a_warning_and_nodata_is_not_filled(tmp_path):
    _shifted_pair(tmp_path / "in")
    with pytest.warns(SpectralMatchWarning, match="'lanczos' is done as 'cubic'"):
        outputs = joint_coregistration(
            tmp_path / "in", tmp_path / "out", resampling_method="lanczos"
        )
    for output, name in zip(outputs, ("tile_00", "tile_01"), strict=True):
        values = read_raster(output)
        # a sample touching nodata is nodata: no more valid pixels than the input had
        assert 0 < np.count_nonzero(values) <= np.count_nonzero(_tile(name)[0])


# ------------------------------------------------------------------ the local mesh


def _sinusoid_warped(folder):
    """tile_00 and tile_02 as they are, and tile_01 with its content displaced by up to
    1.5 pixels, in x and y, by a sinusoid of one period down the tile."""
    for name in ("tile_00", "tile_02"):
        values, transform = _tile(name)
        write_raster(folder / f"{name}.tif", values, transform=transform, nodata=0)
    values, transform = _tile("tile_01")
    rows, cols = np.mgrid[0 : values.shape[1], 0 : values.shape[2]].astype(float)
    phase = 2 * np.pi * rows / values.shape[1]
    coordinates = np.array([rows + 1.5 * np.cos(phase), cols + 1.5 * np.sin(phase)])
    warped = [ndimage.map_coordinates(band.astype(float), coordinates, order=1) for band in values]
    inside = ndimage.map_coordinates((values > 0).all(axis=0).astype(float), coordinates, order=1)
    warped = np.where(inside > 0.999, np.rint(warped), 0).astype(values.dtype)
    write_raster(folder / "tile_01.tif", warped, transform=transform, nodata=0)


def _misregistration(first, second) -> tuple[float, int]:
    """Root mean square distance (pixels) between where phase correlation of patches
    finds the same ground in two outputs, over their overlap, and the number of patches."""
    a, b = Image(first), Image(second)
    bounds = (*np.maximum(a.bounds[:2], b.bounds[:2]), *np.minimum(a.bounds[2:], b.bounds[2:]))
    raw = match_pair(a, b, bounds)
    at_a = np.array(a.transform * (raw[:, :2] + 0.5).T)
    at_b = np.array(b.transform * (raw[:, 2:] + 0.5).T)
    return float(np.sqrt(np.mean(np.sum((at_b - at_a) ** 2, axis=0)))) / PIXEL, len(raw)


@pytest.mark.parametrize("local_model", ["bilinear", "piecewise_affine"])
def test_a_local_mesh_undoes_a_smooth_warp_that_translation_leaves(tmp_path, local_model):
    _sinusoid_warped(tmp_path / "in")
    translated = joint_coregistration(tmp_path / "in", tmp_path / "translation")
    meshed = joint_coregistration(tmp_path / "in", tmp_path / "mesh", local_model=local_model)
    before, patches = _misregistration(*translated[:2])
    after, _ = _misregistration(*meshed[:2])
    # a 1.5 px sinusoid leaves about 1.06 px (its root mean square) to a translation
    assert patches >= 10 and before > 1.0
    assert after < 0.3 * before
    # tile_00 and tile_02 overlap away from the warp: the mesh does not make them worse
    assert _misregistration(meshed[0], meshed[2])[0] < 0.25


def test_local_preservation_weights_decide_which_image_bends(tmp_path):
    """With the warped tile trusted and its neighbours not, the neighbours bend towards
    it; the other way round, the neighbours stay as they were and the warped tile bends."""
    _sinusoid_warped(tmp_path / "in")
    values, transform = _tile("tile_00")

    def bend_of_tile_00(weights, folder):
        outputs = joint_coregistration(
            tmp_path / "in",
            tmp_path / folder,
            global_model="none",
            local_model="bilinear",
            local_image_position_preservation_weights=weights,
        )
        return _mean_difference(_on_grid_of(outputs[0], transform, values.shape[1:]), values)

    neighbours_trusted = bend_of_tile_00({"tile_00": 100.0, "tile_02": 100.0}, "kept")
    warped_trusted = bend_of_tile_00({"tile_01": 100.0}, "bent")
    assert neighbours_trusted < 0.25 * warped_trusted


def test_a_mesh_that_folds_over_is_refused(tmp_path):
    _shifted_pair(tmp_path / "in")
    # tie points along a row whose residuals swing 4 cells' worth to and fro
    columns = np.arange(265, 365, 10.0)
    swing = np.where(np.arange(len(columns)) % 2, 40.0, -40.0)
    first = np.column_stack([columns, np.full(len(columns), 100.0)])
    second = np.column_stack([columns - 2.5 - 262 + swing, np.full(len(columns), 100.0 + 1.5)])
    ties = {
        "tie_points": [
            {
                "image_1": "tile_00",
                "image_2": "tile_01_shifted",
                "points": np.stack([first, second], axis=1).tolist(),
            }
        ]
    }
    (tmp_path / "ties.json").write_text(json.dumps(ties))
    with pytest.raises(SpectralMatchError, match="tile_0.*folds over.*local_smoothness_weight"):
        joint_coregistration(
            tmp_path / "in",
            tmp_path / "out",
            load_adjustments=tmp_path / "ties.json",
            ransac_reprojection_threshold=10_000.0,
            robust_loss="none",
            local_model="piecewise_affine",
            local_grid_spacing=300.0,
            local_smoothness_weight=0.0,
            local_bending_weight=0.0,
        )
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_local_keywords_are_checked(tmp_path):
    _shifted_pair(tmp_path / "in")
    bad = [
        ("local_grid_spacing", -500.0),
        ("local_anchor_falloff_distance", 0.0),
        ("local_smoothness_weight", -1.0),
        ("local_tie_point_alignment_strength", 1.5),
        ("local_model", "thin_plate"),
    ]
    for keyword, value in bad:
        with pytest.raises(SpectralMatchError, match=keyword):
            joint_coregistration(tmp_path / "in", tmp_path / "out", **{keyword: value})
    with pytest.raises(SpectralMatchError, match="local_image_position.*'tile_99'"):
        joint_coregistration(
            tmp_path / "in",
            tmp_path / "out",
            local_model="bilinear",
            local_image_position_preservation_weights={"tile_99": 2.0},
        )
    with pytest.warns(SpectralMatchWarning, match="local_grid_spacing=300.0 has no effect"):
        joint_coregistration(tmp_path / "in", tmp_path / "none", local_grid_spacing=300.0)


def test_tie_points_of_four_band_images_masked_by_a_mask_band(tmp_path):
    """Tie points read the first three bands: validity from the mask band must be read
    of those bands too (it was read of all four, and the shapes clashed)."""
    images = []
    for name in ("tile_00", "tile_01"):
        write_four_band_masked(DATA_DIR / f"{name}.tif", tmp_path / f"{name}.tif")
        images.append(Image(tmp_path / f"{name}.tif"))
    assert all(image.uses_mask_band and image.count == 4 for image in images)
    a, b = images
    bounds = (*np.maximum(a.bounds[:2], b.bounds[:2]), *np.minimum(a.bounds[2:], b.bounds[2:]))
    points = match_pair(a, b, bounds)
    assert len(points) > 3
    # the same ground: these tiles are cut from one image, so no shift between them
    at_a = np.array(a.transform @ (points[:, :2] + 0.5).T)
    at_b = np.array(b.transform @ (points[:, 2:] + 0.5).T)
    assert np.abs(at_a - at_b).max() < 0.5 * a.transform.a
