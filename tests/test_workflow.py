"""The function API: global_regression with folders, lists and patterns."""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import (
    DATA_DIR,
    FIELD_LAYOUT,
    file_digest,
    folder_listing,
    inverse,
    make_tiles,
    read_raster,
    rmse,
    seam_error,
    smooth_fields,
    write_polygons,
)

from spectralmatch import (
    Match,
    Mosaic,
    SpectralMatchError,
    global_regression,
    local_block_adjustment,
)
from spectralmatch.errors import SpectralMatchWarning


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


# ---------------------------------------------------------------------- published keywords


def _gains(model_path) -> np.ndarray:
    return np.array(json.loads(Path(model_path).read_text())["steps"][0]["state"]["gains"])


def test_published_output_keywords_shape_the_files(sample_copy, tmp_path):
    outputs = Match.global_regression(
        str(sample_copy),
        str(tmp_path / "out"),
        calculation_dtype="float64",
        output_dtype="float32",
        custom_nodata_value=0,
        window_size=(256, 128),
        image_threads=2,
        concurrent_processing_backend="thread",
        build_overviews=True,
        window_scales=(2, 4),
        estimate_stats=False,
        pif_method="entire",
    )
    with rasterio.open(outputs[1]) as dataset:
        assert dataset.dtypes == ("float32",) * 3
        assert dataset.nodata == 0
        assert dataset.overviews(1) == [2, 4]
        values = dataset.read()
    with rasterio.open(sample_copy / "tile_01.tif") as dataset:
        original = dataset.read()
    np.testing.assert_array_equal(values == 0, original == 0)
    assert not np.allclose(values[original != 0], np.rint(values[original != 0]))


def test_custom_nodata_value_is_the_outputs_nodata(sample_copy, tmp_path):
    for path in sample_copy.iterdir():
        with rasterio.open(path, "r+") as dataset:
            dataset.nodata = None
    outputs = global_regression(
        sample_copy, tmp_path / "out", custom_nodata_value=0, pif_method="entire"
    )
    with rasterio.open(outputs[0]) as dataset:
        assert dataset.nodata == 0
        np.testing.assert_array_equal(
            dataset.read() == 0, read_raster(sample_copy / "tile_00.tif") == 0
        )


def test_vector_mask_changes_the_fit(sample_copy, tmp_path):
    from shapely.geometry import box

    with rasterio.open(sample_copy / "tile_00.tif") as dataset:
        crs, (left, bottom, right, top) = dataset.crs, dataset.bounds
    cloud = box(left + 0.6 * (right - left), bottom, right, top)  # tile_00's overlaps
    plain = write_polygons(tmp_path / "plain.gpkg", [cloud], crs=crs)
    named = write_polygons(tmp_path / "named.gpkg", [cloud], crs=crs, label=["tile_00_cloud"])
    runs = {
        "none": {},
        "exclude": {"vector_mask": ("exclude", str(plain))},
        "field": {"vector_mask": ("exclude", str(named), "label")},
    }
    gains = {}
    for name, options in runs.items():
        model = tmp_path / f"{name}.json"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            global_regression(
                sample_copy,
                tmp_path / name,
                pif_method="entire",
                save_adjustments=str(model),
                **options,
            )
        unmatched = sorted(
            m for w in caught for m in re.findall(r"contains '(\w+)'", str(w.message))
        )
        assert unmatched == (["tile_01", "tile_02", "tile_03"] if name == "field" else [])
        gains[name] = _gains(model)
    assert not np.allclose(gains["none"], gains["exclude"], rtol=1e-4)
    assert not np.allclose(gains["none"], gains["field"], rtol=1e-4)
    # the field form masks tile_00 only (in the others' side of the overlap too)
    assert not np.allclose(gains["exclude"], gains["field"], rtol=1e-6)


def test_debug_logs_go_to_logging_not_print(sample_copy, tmp_path, caplog, capsys):
    global_regression(sample_copy, tmp_path / "quiet", pif_method="entire")
    assert not [r for r in caplog.records if r.name.startswith("spectralmatch")]
    global_regression(sample_copy, tmp_path / "loud", pif_method="entire", debug_logs=True)
    records = [r for r in caplog.records if r.name == "spectralmatch"]
    assert records and all(r.levelno == logging.DEBUG for r in records)
    assert any("windows read per image" in r.getMessage() for r in records)
    assert capsys.readouterr() == ("", "")
    assert logging.getLogger("spectralmatch").level == logging.NOTSET


def test_saved_adjustments_reload_without_reading(sample_copy, tmp_path, caplog):
    model = str(tmp_path / "adjustments.json")
    first = global_regression(sample_copy, tmp_path / "a", save_adjustments=model)
    with caplog.at_level(logging.DEBUG, logger="spectralmatch"):
        second = global_regression(sample_copy, tmp_path / "b", load_adjustments=model)
    assert [file_digest(p) for p in first] == [file_digest(p) for p in second]
    messages = [r.getMessage() for r in caplog.records]
    assert any("no statistics are read" in m for m in messages)
    assert not any("windows read per image" in m for m in messages)
    # a local model is not a global one
    local = tmp_path / "local.json"
    local_block_adjustment(sample_copy, tmp_path / "c", save_model=local, block_size=64)
    with pytest.raises(SpectralMatchError, match="load_adjustments.*BlockMap"):
        global_regression(sample_copy, tmp_path / "d", load_adjustments=str(local))


def _grid_shape(path) -> tuple[int, int]:
    with rasterio.open(path) as dataset:
        return dataset.height, dataset.width


def _band1_blocks(folder) -> int:
    """The published coefficient-of-variation rule on band 1 of all valid pixels."""
    values = np.concatenate(
        [read_raster(path)[0][read_raster(path)[0] != 0] for path in sorted(folder.iterdir())]
    ).astype(float)
    return max(1, round(values.std() / values.mean() / (45 / 125) * 10))


@pytest.mark.parametrize(
    ("number_of_blocks", "expected"),
    [(4, (4, 4)), ((3, 5), (5, 5)), ("coefficient_of_variation", None)],
)
def test_number_of_blocks_forms(sample_copy, tmp_path, number_of_blocks, expected):
    maps = (str(tmp_path / "maps" / "reference.tif"), str(tmp_path / "maps" / "$_local.tif"))
    outputs = local_block_adjustment(
        sample_copy, tmp_path / "out", number_of_blocks=number_of_blocks, save_block_maps=maps
    )
    if expected is None:
        count = _band1_blocks(sample_copy)
        expected = (count, count)
    assert _grid_shape(maps[0]) == expected
    assert _grid_shape(tmp_path / "maps" / "tile_02_local.tif") == expected
    with rasterio.open(maps[0]) as dataset:
        reference = dataset.read()
    assert np.isfinite(reference).any() and np.isnan(reference).any()
    # the saved maps reload the model: the same outputs
    again = local_block_adjustment(sample_copy, tmp_path / "again", load_block_maps=(maps[0], None))
    assert [file_digest(p) for p in outputs] == [file_digest(p) for p in again]


@pytest.mark.parametrize(
    ("published", "ours"),
    [("offset", "gamma"), ("linear", "gain"), ("gamma", "gamma"), ("wallis", "wallis")],
)
def test_each_correction_method(sample_copy, tmp_path, published, ours):
    model = tmp_path / "local.json"
    outputs = local_block_adjustment(
        sample_copy,
        tmp_path / "out",
        number_of_blocks=(6, 6),
        correction_method=published,
        save_model=model,
    )
    step = json.loads(model.read_text())["steps"][0]
    assert step["params"]["correction"] == ours
    assert not np.array_equal(read_raster(outputs[0]), read_raster(sample_copy / "tile_00.tif"))


def test_resume_from_outputs_keeps_completed_outputs(sample_copy, tmp_path):
    first = global_regression(
        sample_copy, tmp_path / "out", pif_method="entire", resume_from_outputs="yes"
    )
    stamps = [Path(p).stat().st_mtime_ns for p in first]
    again = global_regression(
        sample_copy, tmp_path / "out", pif_method="entire", resume_from_outputs="validate"
    )
    assert again == first
    assert [Path(p).stat().st_mtime_ns for p in again] == stamps


def test_no_effect_keywords_warn(sample_copy, tmp_path):
    with pytest.warns(SpectralMatchWarning, match="cache=2.0 has no effect"):
        global_regression(sample_copy, tmp_path / "a", pif_method="entire", cache=2.0)
    with pytest.warns(SpectralMatchWarning, match="pif_inz_threshold=0.5 has no effect"):
        global_regression(sample_copy, tmp_path / "b", pif_inz_threshold=0.5)


@pytest.mark.parametrize(
    ("function", "options", "keyword"),
    [
        (global_regression, {"concurrent_processing_backend": "dask"}, "concurrent_processing"),
        (global_regression, {"dask_scheduler": ("address", "tcp://x:8786")}, "dask_scheduler"),
        (global_regression, {"calculation_dtype": "int16"}, "calculation_dtype"),
        (global_regression, {"image_threads": 0}, "image_threads"),
        (global_regression, {"window_size": -1}, "window_size"),
        (global_regression, {"resume_from_outputs": "maybe"}, "resume_from_outputs"),
        (global_regression, {"pif_method": "orb"}, "pif_method"),
        (global_regression, {"pif_red_band_index": 1}, "pif_red_band_index"),
        (global_regression, {"pif_load_tie_points": "t.json"}, "pif_load_tie_points"),
        (global_regression, {"pif_feature_method": "sift"}, "pif_feature_method"),
        (global_regression, {"vector_mask": ("inside", "m.gpkg")}, "vector_mask"),
        (global_regression, {"debug_logs": "yes"}, "debug_logs"),
        (local_block_adjustment, {"alpha": 1.5}, "alpha"),
        (local_block_adjustment, {"override_bounds_canvas_coords": (1, 0, 0, 1)}, "override"),
        (local_block_adjustment, {"number_of_blocks": 0}, "number_of_blocks"),
        (local_block_adjustment, {"number_of_blocks": "many"}, "number_of_blocks"),
        (local_block_adjustment, {"correction_method": "lin"}, "correction_method"),
        (local_block_adjustment, {"load_block_maps": ("ref.tif", None)}, "load_block_maps"),
        (local_block_adjustment, {"save_block_maps": ("r.tif", "l.tif")}, "save_block_maps"),
    ],
)
def test_unsupported_values_name_the_keyword(sample_copy, tmp_path, function, options, keyword):
    with pytest.raises(SpectralMatchError, match=keyword):
        function(sample_copy, tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("scales", [(4, 2), (2, 2), (1, 2), (2.0, 4)])
def test_bad_window_scales_stop_before_any_output(tmp_path, scales):
    with pytest.raises(SpectralMatchError, match="window_scales must be None or increasing"):
        global_regression(DATA_DIR, tmp_path / "out", build_overviews=True, window_scales=scales)
    assert not (tmp_path / "out").exists()
