"""The function API: global_regression with folders, lists and patterns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import (
    FIELD_LAYOUT,
    file_digest,
    folder_listing,
    inverse,
    make_tiles,
    read_raster,
    rmse,
    seam_error,
    smooth_fields,
)

from spectralmatch import Mosaic, SpectralMatchError, global_regression, local_block_adjustment


def _assert_recovered(tiles, outputs, bound=3.5):
    """Every output is back on the truth (the reference, tile 0, is undistorted)."""
    for index, path in enumerate(outputs):
        valid = tiles.valid_of(index)
        assert rmse(read_raster(path)[valid], tiles.truth_of(index)[valid]) < bound


def test_folder_to_folder_keeps_names(tiles, tmp_path):
    digests = [file_digest(path) for path in tiles.paths]
    outputs = global_regression(
        tiles.folder, tmp_path / "out", reference_images=["tile_0"], threads=2
    )
    assert outputs == [str(tmp_path / "out" / f"{name}.tif") for name in tiles.names]
    assert all(isinstance(path, str) for path in outputs)
    assert folder_listing(tmp_path / "out") == [f"{name}.tif" for name in tiles.names]
    assert np.array_equal(read_raster(outputs[0]), tiles.data_of(0))
    _assert_recovered(tiles, outputs)
    assert [file_digest(path) for path in tiles.paths] == digests


def test_list_outputs(tiles, tmp_path):
    targets = [tmp_path / "a" / f"matched_{k}.tif" for k in range(4)]
    outputs = global_regression([str(p) for p in tiles.paths], targets, reference_images=[0])
    assert outputs == [str(p) for p in targets]
    assert all(p.is_file() for p in targets)
    _assert_recovered(tiles, outputs)


def test_pattern_output(tiles, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outputs = global_regression(
        str(tiles.folder / "*.tif"), "out/*_matched.tif", reference_images=["tile_0"]
    )
    assert outputs == [f"out/{name}_matched.tif" for name in tiles.names]
    assert folder_listing(tmp_path / "out") == [f"{name}_matched.tif" for name in tiles.names]
    _assert_recovered(tiles, [tmp_path / path for path in outputs])


def test_specify_model_images_include(tiles, tmp_path):
    outputs = global_regression(
        tiles.folder,
        tmp_path / "out",
        specify_model_images=("include", ["tile_0"]),
        save_adjustments=tmp_path / "model.json",
    )
    assert np.array_equal(read_raster(outputs[0]), tiles.data_of(0))
    for index in (1, 2, 3):
        assert not np.array_equal(read_raster(outputs[index]), tiles.data_of(index))
    _assert_recovered(tiles, outputs)
    state = json.loads((tmp_path / "model.json").read_text())["steps"][0]["state"]
    assert state["reference"] == ["tile_0"]
    np.testing.assert_allclose(state["gains"], inverse(tiles.gains, tiles.offsets)[0], rtol=5e-3)


def test_specify_model_images_exclude(tiles, tmp_path):
    outputs = global_regression(
        tiles.folder,
        tmp_path / "out",
        specify_model_images=("exclude", ["tile_1.tif", "tile_2", "tile_3"]),
    )
    assert np.array_equal(read_raster(outputs[0]), tiles.data_of(0))
    _assert_recovered(tiles, outputs)


def test_specify_model_images_bad_mode(tiles, tmp_path):
    with pytest.raises(SpectralMatchError, match="'only'"):
        global_regression(tiles.folder, tmp_path / "out", specify_model_images=("only", ["a"]))
    assert not (tmp_path / "out").exists()


def test_options_reach_the_model_and_files(tiles, tmp_path):
    model_path = tmp_path / "m" / "model.json"
    outputs = global_regression(
        tiles.folder,
        tmp_path / "out",
        custom_mean_factor=2.0,
        custom_std_factor=0.5,
        weight_by_overlap=False,
        robust=True,
        save_as_cog=True,
        save_adjustments=model_path,
        window_size=128,
    )
    data = json.loads(model_path.read_text())
    assert data["params"]["window_size"] == 128
    assert data["steps"][0]["params"] == {
        "reference": None,
        "weight_by_overlap": False,
        "mean_weight": 2.0,
        "std_weight": 0.5,
        "robust": True,
    }
    with rasterio.open(outputs[0]) as dataset:
        assert dataset.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    # the saved model reproduces the written pixels
    again = Mosaic.load(model_path).transform(tiles.folder, tmp_path / "again")
    for path, image in zip(outputs, again, strict=True):
        assert np.array_equal(read_raster(path), read_raster(image.path))
    assert Path(outputs[0]).name == "tile_0.tif"


def test_errors_name_the_input(tmp_path):
    with pytest.raises(SpectralMatchError, match="nothing_here"):
        global_regression(str(tmp_path / "nothing_here" / "*.tif"), tmp_path / "out")


# ---------------------------------------------------------------------- local_block_adjustment


@pytest.fixture
def field_tiles(tmp_path, truth):
    """Four uint16 tiles (40 % overlaps), each with a gain and its own +-8 % gradient."""
    gains = np.array([[1.0] * 3, [1.1] * 3, [0.9] * 3, [1.05] * 3])
    return make_tiles(
        tmp_path / "in",
        truth,
        gains=gains,
        offsets=np.zeros((4, 3)),
        windows=FIELD_LAYOUT,
        fields=smooth_fields(FIELD_LAYOUT, 0.08),
        noise_sd=1.0,
    )


def test_global_then_local_from_folder_to_folder(field_tiles, tmp_path):
    tiles = field_tiles
    global_outputs = global_regression(tiles.folder, tmp_path / "global", threads=2)
    local_outputs = local_block_adjustment(
        tmp_path / "global",
        tmp_path / "local",
        block_size=16,
        correction_method="offset",
        threads=2,
        save_model=tmp_path / "local.json",
        save_block_maps=tmp_path / "maps",
    )
    assert local_outputs == [str(tmp_path / "local" / f"{name}.tif") for name in tiles.names]
    assert folder_listing(tmp_path / "local") == [f"{name}.tif" for name in tiles.names]
    before = seam_error(tiles, tiles.paths)
    global_seam = seam_error(tiles, global_outputs)
    local_seam = seam_error(tiles, local_outputs)
    assert global_seam < 0.5 * before
    assert local_seam < 0.5 * global_seam
    for index, path in enumerate(local_outputs):
        np.testing.assert_array_equal(read_raster(path) != 0, tiles.data_of(index) != 0)
    # the maps and the model describe the local step
    assert folder_listing(tmp_path / "maps") == sorted(
        f"{name}_{kind}.tif" for name in tiles.names for kind in ("local", "reference")
    )
    with rasterio.open(tmp_path / "maps" / "tile_2_reference.tif") as dataset:
        assert (dataset.height, dataset.width, dataset.count) == (13, 13, 3)
        assert dataset.dtypes == ("float32",) * 3
        assert np.isfinite(dataset.read()).all()
    assert sorted(entry.name for entry in tmp_path.iterdir()) == [
        "global",
        "in",
        "local",
        "local.json",
        "local.npz",
        "maps",
    ]
    step = json.loads((tmp_path / "local.json").read_text())["steps"][0]
    assert step["params"]["block_size"] == 16 and step["params"]["correction"] == "gamma"
    again = Mosaic.load(tmp_path / "local.json").transform(tmp_path / "global", tmp_path / "again")
    for path, image in zip(local_outputs, again, strict=True):
        assert file_digest(path) == file_digest(image.path)


@pytest.mark.parametrize("correction", ["gain", "wallis"])
def test_local_block_adjustment_with_a_number_of_blocks(field_tiles, tmp_path, correction):
    tiles = field_tiles
    outputs = local_block_adjustment(
        [str(p) for p in tiles.paths],
        tmp_path / "out/*_local.tif",
        number_of_blocks=(5, 5),
        correction_method=correction,
        reference_images=["tile_0"],
        threads=2,
        save_block_maps=tmp_path / "maps",
    )
    assert [Path(p).name for p in outputs] == [f"{name}_local.tif" for name in tiles.names]
    assert np.array_equal(read_raster(outputs[0]), tiles.data_of(0))
    with rasterio.open(tmp_path / "maps" / "tile_1_local.tif") as dataset:
        assert (dataset.height, dataset.width) == (5, 5)  # 200 px / 5 = 40 px blocks
        assert dataset.transform.a == 40 * 30.0
    assert seam_error(tiles, outputs) < 0.3 * seam_error(tiles, tiles.paths)


def test_local_block_adjustment_refuses_bad_arguments(field_tiles, tmp_path):
    with pytest.raises(SpectralMatchError, match="correction_method.*'lin'"):
        local_block_adjustment(
            field_tiles.folder, tmp_path / "out", block_size=16, correction_method="lin"
        )
    assert not (tmp_path / "out").exists()
