"""The function API: global_regression with folders, lists and patterns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import file_digest, folder_listing, inverse, read_raster, rmse

from spectralmatch import Mosaic, SpectralMatchError, global_regression


def _assert_recovered(tiles, outputs, bound=3.5):
    """Every output is back on the truth (the reference, tile 0, is undistorted)."""
    for index, path in enumerate(outputs):
        valid = tiles.valid_of(index)
        assert rmse(read_raster(path)[valid], tiles.truth_of(index)[valid]) < bound


def test_folder_to_folder_keeps_names(tiles, tmp_path):
    digests = [file_digest(path) for path in tiles.paths]
    outputs = global_regression(tiles.folder, tmp_path / "out", reference_images=["tile_0"],
                                threads=2)
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
    outputs = global_regression(str(tiles.folder / "*.tif"), "out/*_matched.tif",
                                reference_images=["tile_0"])
    assert outputs == [f"out/{name}_matched.tif" for name in tiles.names]
    assert folder_listing(tmp_path / "out") == [f"{name}_matched.tif" for name in tiles.names]
    _assert_recovered(tiles, [tmp_path / path for path in outputs])


def test_specify_model_images_include(tiles, tmp_path):
    outputs = global_regression(tiles.folder, tmp_path / "out",
                                specify_model_images=("include", ["tile_0"]),
                                save_model=tmp_path / "model.json")
    assert np.array_equal(read_raster(outputs[0]), tiles.data_of(0))
    for index in (1, 2, 3):
        assert not np.array_equal(read_raster(outputs[index]), tiles.data_of(index))
    _assert_recovered(tiles, outputs)
    state = json.loads((tmp_path / "model.json").read_text())["steps"][0]["state"]
    assert state["reference"] == ["tile_0"]
    np.testing.assert_allclose(state["gains"], inverse(tiles.gains, tiles.offsets)[0],
                               rtol=5e-3)


def test_specify_model_images_exclude(tiles, tmp_path):
    outputs = global_regression(tiles.folder, tmp_path / "out",
                                specify_model_images=("exclude", ["tile_1.tif", "tile_2",
                                                                  "tile_3"]))
    assert np.array_equal(read_raster(outputs[0]), tiles.data_of(0))
    _assert_recovered(tiles, outputs)


def test_specify_model_images_bad_mode(tiles, tmp_path):
    with pytest.raises(SpectralMatchError, match="'only'"):
        global_regression(tiles.folder, tmp_path / "out", specify_model_images=("only", ["a"]))
    assert not (tmp_path / "out").exists()


def test_options_reach_the_model_and_files(tiles, tmp_path):
    model_path = tmp_path / "m" / "model.json"
    outputs = global_regression(tiles.folder, tmp_path / "out", custom_mean_factor=2.0,
                                custom_std_factor=0.5, weight_by_overlap=False,
                                save_as_cog=True, save_model=model_path, window_size=128)
    data = json.loads(model_path.read_text())
    assert data["params"]["window_size"] == 128
    assert data["steps"][0]["params"] == {"reference": None, "weight_by_overlap": False,
                                          "mean_weight": 2.0, "std_weight": 0.5}
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
