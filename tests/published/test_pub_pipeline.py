"""The published package's tests of ``pipeline``, ported: the same calls with the same
keywords. Where ours differs on purpose (outputs in a folder keep the input names; no
mock of GDAL, the files themselves are checked) the test says so."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from conftest import write_polygons
from published_data import dummy_raster
from shapely.geometry import box

from spectralmatch import pipeline
from spectralmatch.errors import SpectralMatchWarning


@pytest.fixture
def two_images(tmp_path) -> list[str]:
    """A (50) and B (75), 16 px squares, B four columns to the right of A."""
    return [
        dummy_raster(
            tmp_path / "input" / f"{name}.tif",
            width=16,
            height=16,
            count=1,
            origin=(left, 16),
            fill=value,
        )
        for name, left, value in (("A", 0, 50), ("B", 4, 75))
    ]


def test_merge_only_with_a_custom_working_directory(tmp_path, two_images):
    work = tmp_path / "pipeline_temp"
    output = tmp_path / "merged.tif"
    results = pipeline(
        shared_input_images=two_images,
        shared_output_image_path=str(output),
        shared_temp_dir=str(work),
        steps=("merge",),
        merge_rasters_build_overviews=False,
    )
    assert results["temp_dir"] == str(work)
    assert results["output"] == str(output)
    assert results["num_input_images"] == 2
    for step in ("global_regression", "local_block_adjustment", "align_rasters", "mask_rasters"):
        assert step not in results
    with rasterio.open(output) as mosaic:
        assert mosaic.width == 20
        pixels = mosaic.read(1)
    assert (pixels[:, :4] == 50).all() and (pixels[:, 16:] == 75).all()


def test_the_weighted_seamline_step(tmp_path, two_images):
    polygons = write_polygons(
        tmp_path / "footprints.gpkg",
        [box(0, 0, 10, 10), box(5, 0, 15, 10)],
        crs="EPSG:4326",
        image=two_images,
        quality=[1.0, 2.0],
    )
    output = tmp_path / "seamlines.gpkg"
    results = pipeline(
        shared_input_images=two_images,
        shared_output_image_path=str(output),
        shared_temp_dir=str(tmp_path / "pipeline_temp"),
        delete_temp_dir=False,
        steps=("weighted_seamline",),
        weighted_seamline_input_polygons=str(polygons),
        weighted_seamline_rank_function="{quality}",
    )
    assert results["output"] == results["weighted_seamline"] == str(output)
    assert output.is_file()


def test_resume_yes_keeps_a_finished_mosaic(tmp_path, two_images):
    """Published: BuildVRT must not be called. Here: the finished file is kept as it was."""
    output = dummy_raster(
        tmp_path / "merged.tif", width=32, height=16, count=1, origin=(0, 16), fill=123
    )
    results = pipeline(
        shared_input_images=two_images,
        shared_output_image_path=output,
        shared_resume_from_steps="yes",
        steps=("merge",),
        merge_rasters_build_overviews=False,
    )
    assert results["output"] == output
    with rasterio.open(output) as kept:
        assert kept.width == 32 and (kept.read(1) == 123).all()


def test_resume_validate_rewrites_an_invalid_mosaic(tmp_path, two_images):
    output = tmp_path / "merged.tif"
    output.write_text("not a raster", encoding="utf-8")
    pipeline(
        shared_input_images=two_images,
        shared_output_image_path=str(output),
        shared_resume_from_steps="validate",
        steps=("merge",),
        merge_rasters_build_overviews=False,
    )
    with rasterio.open(output) as mosaic:
        assert mosaic.width == 20


def test_delete_previous_step_removes_the_replaced_intermediate(tmp_path, two_images):
    """Published names the outputs A_Global_Local.tif; a folder keeps the input names here."""
    work = tmp_path / "pipeline_temp"
    output = tmp_path / "global_outputs"
    results = pipeline(
        shared_input_images=two_images,
        shared_output_image_path=str(output),
        shared_temp_dir=str(work),
        delete_temp_dir=False,
        delete_previous_step=True,
        steps=("global_regression", "local_block_adjustment"),
        global_regression_pif_method="entire",
    )
    assert results["output"] == [str(output / "A.tif"), str(output / "B.tif")]
    assert not (work / "global").exists()


def test_step_keywords_reach_their_step(tmp_path, two_images):
    """Published: a mocked global_regression sees pif_load_tie_points. Here the keyword
    reaches the real function, which names it (or its missing file)."""
    missing = str(tmp_path / "tie_points.json")
    with pytest.raises(ValueError, match="pif_load_tie_points|tie_points.json"):
        pipeline(
            shared_input_images=two_images,
            shared_output_image_path=str(tmp_path / "output"),
            steps=("global_regression",),
            global_regression_pif_method="flood_from_match_points",
            global_regression_pif_load_tie_points=missing,
        )


@pytest.mark.parametrize(
    "output_name, options, message",
    [
        ("tiles.tif", {"merge_rasters_output_tiles": True}, "must be a folder"),
        ("merged.tif", {"merge_rasters_overlap": 4}, "output_tiles"),
        ("merged", {}, "no file extension"),
        ("merged.tif", {"steps": ("merge", "merge")}, "twice"),
        ("merged.tif", {"steps": ("merged",)}, "unknown step 'merged'"),
        ("out", {"steps": ("mask",)}, "mask_rasters_vector_mask"),
        ("out.tif", {"steps": ("global_regression",)}, "one raster per image"),
    ],
)
def test_bad_options_are_refused_before_any_work(tmp_path, output_name, options, message):
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("keep")
    with pytest.raises(ValueError, match=message):
        pipeline(
            shared_input_images=[str(tmp_path / "unused.tif")],
            shared_output_image_path=str(tmp_path / output_name),
            shared_temp_dir=str(work),
            **{"steps": ("merge",), **options},
        )
    assert (work / "keep.txt").read_text() == "keep"
    assert sorted(path.name for path in work.iterdir()) == ["keep.txt"]


def test_an_unknown_keyword_names_the_closest_ones(tmp_path, two_images):
    with pytest.raises(TypeError, match="merge_rasters_build_overviews"):
        pipeline(two_images, str(tmp_path / "m.tif"), merge_raster_build_overviews=True)


def test_keywords_of_steps_that_do_not_run_are_named(tmp_path, two_images):
    with pytest.warns(SpectralMatchWarning, match="local_block_adjustment_alpha"):
        pipeline(
            two_images,
            str(tmp_path / "m.tif"),
            steps=("merge",),
            local_block_adjustment_alpha=0.5,
        )


def test_the_full_workflow_gives_the_functions_result(tmp_path, data_dir):
    """The pipeline equals the same steps called one by one, and cleans up after itself."""
    sample_paths = sorted(str(path) for path in data_dir.glob("tile_*.tif"))
    from spectralmatch import (
        global_regression,
        local_block_adjustment,
        mask_rasters,
        merge_rasters,
        voronoi_center_seamline,
    )

    steps = (
        "global_regression",
        "local_block_adjustment",
        "voronoi_center_seamline",
        "mask",
        "merge",
    )
    work = tmp_path / "work"
    output = tmp_path / "pipeline.tif"
    pipeline(sample_paths, str(output), steps=steps, shared_temp_dir=str(work))
    assert not work.exists()

    by_hand = tmp_path / "by_hand"
    global_regression(sample_paths, str(by_hand / "global"))
    local_block_adjustment(str(by_hand / "global"), str(by_hand / "local"))
    voronoi_center_seamline(str(by_hand / "local"), str(by_hand / "masks.gpkg"))
    mask_rasters(
        str(by_hand / "local"),
        str(by_hand / "clip"),
        vector_mask=("include", str(by_hand / "masks.gpkg"), "image"),
    )
    merge_rasters(str(by_hand / "clip"), str(by_hand / "merged.tif"))
    with rasterio.open(output) as piped, rasterio.open(by_hand / "merged.tif") as called:
        np.testing.assert_array_equal(piped.read(), called.read())
        assert piped.transform == called.transform
        assert piped.overviews(1), "the pipeline builds overviews of the mosaic by default"


@pytest.mark.parametrize(
    "overview_options",
    [
        {},
        {
            "shared_window_scales": (2, 8),
            "joint_coregistration_build_overviews": True,
            "global_regression_build_overviews": True,
            "local_block_adjustment_build_overviews": True,
            "merge_rasters_build_overviews": True,
        },
    ],
)
def test_the_full_default_flow(tmp_path, overview_options):
    """The default steps, co-registration first, on two flat images whose one tie point
    (in the published JSON layout) says they are already in place."""
    images = [
        dummy_raster(
            tmp_path / "input" / f"{name}.tif",
            width=32,
            height=32,
            count=1,
            origin=(left, 32),
            fill=value,
        )
        for name, left, value in (("A", 0, 100), ("B", 8, 120))
    ]
    ties = tmp_path / "tie_points.json"
    ties.write_text(
        json.dumps(
            {
                "tie_points": [
                    {"image_1": "A", "image_2": "B", "points": [[[10.0, 10.0], [2.0, 10.0]]]}
                ]
            }
        ),
        encoding="utf-8",
    )
    output = tmp_path / "merged.tif"
    results = pipeline(
        shared_input_images=images,
        shared_output_image_path=str(output),
        delete_temp_dir=False,
        shared_debug_logs=True,
        shared_window_size=16,
        joint_coregistration_local_model="none",
        joint_coregistration_load_adjustments=str(ties),
        joint_coregistration_robust_loss="none",
        **{"merge_rasters_build_overviews": False, **overview_options},
    )
    assert results["output"] == str(output) and output.is_file()
    assert (tmp_path / results["temp_dir"]).is_dir()
    assert results["num_input_images"] == 2
    for key in ("start_time", "end_time", "duration_seconds", "resolved_shared_cache"):
        assert key in results
    for threads in ("image_threads", "io_threads", "tile_threads"):
        assert results[f"resolved_shared_{threads}"] >= 1
    assert results["steps"][0] == "joint_coregistration" and "align" not in results["steps"]
    assert "joint_coregistration" in results
    with rasterio.open(output) as mosaic:
        assert (mosaic.width, mosaic.height) == (40, 32)
        pixels = mosaic.read(1)
    # matched to one level between the two: no seam where the images meet
    assert pixels.min() > 100 and pixels.max() < 120
    scales = overview_options.get("shared_window_scales")
    if scales is None:
        return
    for stage in (
        "joint_coregistration",
        "global_regression",
        "local_block_adjustment",
        "merge_rasters",
    ):
        outputs = results[stage]
        for path in outputs if isinstance(outputs, list) else [outputs]:
            with rasterio.open(path) as dataset:
                assert dataset.overviews(1) == list(scales), (stage, path)


def test_a_resumed_pipeline_keeps_every_finished_step(tmp_path, data_dir):
    """Run again with the same working directory and resume: every step keeps what the
    first run wrote (nothing is rewritten), and the thread keywords shared with a merge
    into one file do not stop it."""
    sample = sorted(str(path) for path in data_dir.glob("tile_*.tif"))
    options = {
        "shared_temp_dir": str(tmp_path / "work"),
        "delete_temp_dir": False,
        "shared_resume_from_steps": "yes",
        "shared_image_threads": 2,
    }
    first = pipeline(sample, str(tmp_path / "mosaic.tif"), **options)
    written = sorted(path for path in tmp_path.rglob("*") if path.is_file())
    stamps = [path.stat().st_mtime_ns for path in written]
    second = pipeline(sample, str(tmp_path / "mosaic.tif"), **options)
    assert sorted(path for path in tmp_path.rglob("*") if path.is_file()) == written
    assert [path.stat().st_mtime_ns for path in written] == stamps
    for step in first["steps"]:
        assert first[step] == second[step]


def test_a_folder_of_yours_in_the_working_directory_is_left_alone(tmp_path, two_images):
    """A folder with a step's name that no pipeline run made stops the run before any
    step, and keeps its files."""
    work = tmp_path / "work"
    (work / "global").mkdir(parents=True)
    (work / "global" / "mine.txt").write_text("mine")
    with pytest.raises(ValueError, match="global exists and was not made by a pipeline run"):
        pipeline(
            two_images,
            str(tmp_path / "out"),
            shared_temp_dir=str(work),
            steps=("global_regression", "local_block_adjustment"),
        )
    assert sorted(p.name for p in work.rglob("*")) == ["global", "mine.txt"]
    assert not (tmp_path / "out").exists()
