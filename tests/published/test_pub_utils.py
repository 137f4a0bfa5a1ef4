"""The published package's tests of ``mask_rasters``, ``merge_vectors`` and
``align_rasters``, ported: the same calls with the same keywords."""

from __future__ import annotations

import functools
import os

import geopandas
import pytest
import rasterio
from published_data import dummy_raster, dummy_vector

from spectralmatch import (
    align_rasters,
    compute_resolution,
    mask_rasters,
    merge_vectors,
)

# ---------------------------------------------------------------------- mask_rasters


@pytest.mark.parametrize(
    "options",
    [
        {},
        {
            "debug_logs": True,
            "window_size": 16,
            "io_threads": 2,
            "tile_threads": 2,
            "include_touched_pixels": True,
            "custom_nodata_value": 99,
        },
    ],
)
def test_mask_rasters_excluding_a_polygon_keeps_the_grid_and_nodata(tmp_path, options):
    source = dummy_raster(tmp_path / "input" / "masked_input.tif", width=32, height=32, count=1)
    mask = dummy_vector(tmp_path / "mask.gpkg", bounds=(8, 8, 24, 24))
    output = str(tmp_path / "output" / "masked_output.tif")
    mask_rasters(
        input_images=[source],
        output_images=[output],
        vector_mask=("exclude", mask),
        **options,
    )
    with rasterio.open(output) as dataset:
        assert dataset.nodata == options.get("custom_nodata_value", 0)
        assert dataset.read(1).shape == (32, 32)


# ---------------------------------------------------------------------- merge_vectors


@pytest.fixture
def two_vectors(tmp_path) -> list[str]:
    return [
        dummy_vector(tmp_path / "input" / f"vector_{i}.gpkg", bounds=(i, i, i + 5, i + 5))
        for i in range(2)
    ]


def test_merge_vectors_union_writes_features(tmp_path, two_vectors):
    output = tmp_path / "output" / "merged_union.gpkg"
    merge_vectors(input_vectors=two_vectors, merged_vector_path=str(output), method="union")
    assert output.is_file()
    assert not geopandas.read_file(output).empty


def test_merge_vectors_keep_names_each_feature_by_its_file(tmp_path, two_vectors):
    output = tmp_path / "output" / "merged_keep.gpkg"
    merge_vectors(
        input_vectors=two_vectors,
        merged_vector_path=str(output),
        method="keep",
        debug_logs=True,
        create_name_attribute=("src", "_"),
    )
    assert output.is_file()
    merged = geopandas.read_file(output)
    assert "src" in merged.columns
    assert len(merged) == 2


# ---------------------------------------------------------------------- align_rasters


@pytest.fixture
def misaligned(tmp_path) -> tuple[list[str], list[str]]:
    """A 16 px raster with 1 unit pixels and an 8 px one with 2 unit pixels, same extent."""
    inputs = [
        dummy_raster(tmp_path / "input" / "raster1.tif", width=16, height=16, origin=(0, 16)),
        dummy_raster(
            tmp_path / "input" / "raster2.tif", width=8, height=8, origin=(0, 16), pixel=2.0
        ),
    ]
    outputs = [str(tmp_path / "output" / f"aligned{i}.tif") for i in (1, 2)]
    return inputs, outputs


def test_align_rasters_with_every_option_writes_every_image(misaligned):
    inputs, outputs = misaligned
    align_rasters(
        input_images=inputs,
        output_images=outputs,
        resampling_method="nearest",
        tap=True,
        resolution="average",
        debug_logs=True,
        window_size=16,
        io_threads=2,
        image_threads=2,
    )
    for output in outputs:
        with rasterio.open(output) as dataset:
            assert dataset.width > 0 and dataset.height > 0


@pytest.mark.parametrize("resolution", [2, 1.5])
def test_align_rasters_numeric_resolution_sets_the_pixel_and_snaps_the_grid(misaligned, resolution):
    inputs, outputs = misaligned
    align_rasters(input_images=inputs, output_images=outputs, resolution=resolution, tap=True)
    for output in outputs:
        with rasterio.open(output) as dataset:
            transform = dataset.transform
        assert abs(transform.a) == pytest.approx(resolution)
        assert abs(transform.e) == pytest.approx(resolution)
        assert transform.c / resolution == pytest.approx(round(transform.c / resolution))
        assert transform.f / resolution == pytest.approx(round(transform.f / resolution))


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [("highest", (1.0, 1.0)), ("lowest", (2.0, 2.0)), ("average", (1.5, 1.5)), (2.5, (2.5, 2.5))],
)
def test_compute_resolution_chooses_among_the_pixel_sizes(misaligned, strategy, expected):
    assert compute_resolution(misaligned[0], strategy) == expected


def test_compute_resolution_without_a_strategy_keeps_the_grids(misaligned):
    assert compute_resolution(misaligned[0], None) is None
    with pytest.raises(ValueError, match="strategy"):
        compute_resolution(misaligned[0], "finest")


@pytest.mark.parametrize("operation", ["align", "mask"])
def test_resume_keeps_the_outputs_that_exist_or_validate(tmp_path, misaligned, operation):
    inputs, outputs = misaligned
    if operation == "align":
        run = functools.partial(align_rasters, inputs, outputs)
    else:
        mask = dummy_vector(tmp_path / "mask.gpkg", bounds=(4, 4, 12, 12))
        run = functools.partial(mask_rasters, inputs, outputs, vector_mask=("exclude", mask))
    run()
    written = [open(path, "rb").read() for path in outputs]
    kept, other = outputs
    stamp = os.stat(kept).st_mtime_ns
    os.remove(other)
    run(resume_from_outputs="yes")
    assert os.stat(kept).st_mtime_ns == stamp and open(other, "rb").read() == written[1]
    with open(other, "wb") as file:
        file.write(b"not a raster")
    run(resume_from_outputs="yes")  # it exists: kept as it is
    assert open(other, "rb").read() == b"not a raster"
    run(resume_from_outputs="validate")
    assert os.stat(kept).st_mtime_ns == stamp and open(other, "rb").read() == written[1]
    run(resume_from_outputs="no")
    assert os.stat(kept).st_mtime_ns != stamp
