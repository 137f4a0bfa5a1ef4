"""The published package's example workflows, run against ours with the calls and keywords
its examples use, on data made here: its README's usage block, its Worldview mosaic
example (up to its statistics plots, issue 13's) and its Landsat time-series example.

The Landsat example makes its cloud and vegetation polygons with
``create_cloud_mask_with_omnicloudmask``, ``band_math`` and
``process_raster_values_to_vector_polygons`` (issue 12) and ends with the ``compare_*``
plots (issue 13); here the polygons are drawn where the series has its clouds, and
everything from ``merge_vectors`` to the local step runs as in the example.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import make_series, rectangles_mask, write_polygons
from shapely.geometry import box

from spectralmatch import (
    Match,
    Seamline,
    global_regression,
    joint_coregistration,
    local_block_adjustment,
    mask_rasters,
    merge_rasters,
    merge_vectors,
    search_paths,
    voronoi_center_seamline,
)
from spectralmatch.errors import SpectralMatchWarning
from spectralmatch.report.metrics import seam_contrast


def rectangle_polygons(rectangles, transform):
    """(row start, row stop, col start, col stop) pixel rectangles as map polygons."""
    polygons = []
    for r0, r1, c0, c1 in rectangles:
        left, top = transform * (c0, r0)
        right, bottom = transform * (c1, r1)
        polygons.append(box(left, bottom, right, top))
    return polygons


def test_the_landsat_time_series_example(tmp_path, truth):
    series = make_series(tmp_path / "Input", truth)
    wd = tmp_path
    clouds = {date: [rects[0]] for date, rects in series.extra["changes"].items()}
    for date, rectangles in clouds.items():
        write_polygons(
            wd / "MaskCloud" / f"date_{date}.gpkg",
            rectangle_polygons(rectangles, truth.transform),
            crs=truth.crs,
            value=[1],
        )
    # A vegetation layer per date (the lower right quarter of the scene), named after the
    # cloud-masked image it belongs to: the mask's "image" field must contain that name.
    for date in range(len(series.paths)):
        write_polygons(
            wd / "MaskVegetation" / f"date_{date}_CloudMasked.gpkg",
            rectangle_polygons([(100, 200, 100, 200)], truth.transform),
            crs=truth.crs,
            value=[1],
        )

    for kind in ("Cloud", "Vegetation"):
        merge_vectors(
            input_vectors=str(wd / f"Mask{kind}"),
            merged_vector_path=str(wd / f"{kind}Masks.gpkg"),
            method="keep",
            create_name_attribute=("image", ", "),
            debug_logs=True,
        )
    mask_rasters(
        input_images=str(wd / "Input"),
        output_images=str(wd / "Masked" / "$_CloudMasked.tif"),
        vector_mask=("exclude", str(wd / "CloudMasks.gpkg"), "image"),
        debug_logs=True,
    )
    engine = {
        "window_size": 128,
        "image_threads": "cpu",
        "io_threads": "cpu",
        "tile_threads": "cpu",
        "debug_logs": True,
        "vector_mask": ("exclude", str(wd / "VegetationMasks.gpkg"), "image"),
    }
    matched = Match.global_regression(
        input_images=str(wd / "Masked"), output_images=str(wd / "GlobalMatch"), **engine
    )
    local = Match.local_block_adjustment(
        input_images=str(wd / "GlobalMatch"),
        output_images=str(wd / "LocalMatch"),
        number_of_blocks=100,
        save_block_maps=(
            str(wd / "LocalMatch" / "BlockMaps" / "ReferenceBLockMap.tif"),
            str(wd / "LocalMatch" / "BlockMaps" / "$_LocalBlockMap.tif"),
        ),
        **engine,
    )

    names = [f"date_{date}_CloudMasked" for date in range(len(series.paths))]
    assert [path.split("/")[-1] for path in search_paths(str(wd / "Masked" / "*.tif"))] == [
        f"{name}.tif" for name in names
    ]
    assert len(matched) == len(local) == len(names)
    assert (wd / "LocalMatch" / "BlockMaps" / "ReferenceBLockMap.tif").is_file()
    for name in names:
        assert (wd / "LocalMatch" / "BlockMaps" / f"{name}_LocalBlockMap.tif").is_file()
    for date, rectangles in clouds.items():
        with rasterio.open(wd / "Masked" / f"date_{date}_CloudMasked.tif") as masked:
            cloud = rectangles_mask(rectangles, (masked.height, masked.width))
            assert (masked.read(masked.count)[cloud] == 0).all()
    # Matching brings every date towards one radiometry: the spread of the band means
    # across dates, outside clouds, shrinks.
    before = [band_means(path) for path in search_paths(str(wd / "Masked" / "*.tif"))]
    after = [band_means(path) for path in local]
    assert (np.std(after, axis=0) < 0.5 * np.std(before, axis=0)).all()


def band_means(path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        data = dataset.read(masked=True)
    return np.array([band.mean() for band in data])


@pytest.fixture
def working_directory(tmp_path, data_dir):
    """``<wd>/Input`` with the sample tiles, as the published examples expect."""
    (tmp_path / "Input").mkdir()
    for path in data_dir.glob("tile_*.tif"):
        shutil.copy(path, tmp_path / "Input" / path.name)
    return tmp_path


def test_the_readme_usage_block(working_directory):
    """The published README's Python block, as written, with its working directory."""
    working_directory = str(working_directory)
    input_folder = os.path.join(working_directory, "Input")
    coregistered_folder = os.path.join(working_directory, "Coregistered")
    global_folder = os.path.join(working_directory, "GlobalMatch")
    local_folder = os.path.join(working_directory, "LocalMatch")
    clipped_folder = os.path.join(working_directory, "Clipped")

    joint_coregistration(
        input_images=input_folder,
        output_images=coregistered_folder,
        resolution="highest",
        tap=True,
    )
    Match.global_regression(input_images=coregistered_folder, output_images=global_folder)
    Match.local_block_adjustment(input_images=global_folder, output_images=local_folder)
    Seamline.voronoi(
        input_images=local_folder,
        output_mask=os.path.join(working_directory, "ImageMasks.gpkg"),
        image_field_name="image",
    )
    mask_rasters(
        input_images=local_folder,
        output_images=clipped_folder,
        vector_mask=("include", os.path.join(working_directory, "ImageMasks.gpkg"), "image"),
    )
    merge_rasters(
        input_images=clipped_folder,
        output_image_path=os.path.join(working_directory, "MergedImage.tif"),
    )

    assert_a_matched_mosaic(Path(working_directory), "MergedImage.tif")


def test_the_worldview_mosaic_example(working_directory):
    """The published Worldview example's calls and keywords (co-registration, global
    matching from flooded PIFs with saved adjustments and INZ masks, local matching with
    saved block maps, Voronoi seamlines with debug vectors, clip, merge with overviews);
    its statistics plots are issue 13's."""
    wd = str(working_directory)
    engine = {
        "debug_logs": True,
        "window_size": 1024,
        "image_threads": 3,
        "io_threads": 3,
        "tile_threads": 3,
        "concurrent_processing_backend": "process_pool",
        "dask_scheduler": None,
    }
    joint_coregistration(
        input_images=f"{wd}/Input",
        output_images=f"{wd}/Coregistration",
        tap=True,
        resolution="highest",
        **engine,
    )
    with pytest.warns(SpectralMatchWarning, match="one per image, not one per pair"):
        global_regression(
            input_images=f"{wd}/Coregistration",
            output_images=f"{wd}/GlobalMatch",
            save_as_cog=True,
            pif_method="flood_from_match_points",
            estimate_stats=True,
            save_adjustments=f"{wd}/GlobalMatch/GlobalAdjustments.json",
            pif_save_inz=f"{wd}/GlobalMatch/INZ/$_to_$_INZ.tif",
            **engine,
        )
    local_block_adjustment(
        input_images=f"{wd}/GlobalMatch",
        output_images=f"{wd}/LocalMatch",
        save_as_cog=True,
        correction_method="offset",
        number_of_blocks=50,
        save_block_maps=(
            f"{wd}/LocalMatch/ReferenceBlockMap/ReferenceBlockMap.tif",
            f"{wd}/LocalMatch/LocalBlockMap/$_LocalBlockMap.tif",
        ),
        **engine,
    )
    voronoi_center_seamline(
        input_images=f"{wd}/LocalMatch",
        output_mask=f"{wd}/ImageMasks.gpkg",
        image_field_name="image",
        debug_logs=True,
        debug_vectors_path=f"{wd}/DebugVectors.gpkg",
    )
    mask_rasters(
        input_images=f"{wd}/LocalMatch",
        output_images=f"{wd}/Clipped",
        vector_mask=("include", f"{wd}/ImageMasks.gpkg", "image"),
        **engine,
    )
    merge_rasters(
        input_images=f"{wd}/Clipped",
        output_image_path=f"{wd}/MergedImage.tif",
        debug_logs=True,
        window_size=1024,
        io_threads=3,
        tile_threads=3,
        build_overviews=True,
    )

    # the example asks for the "offset" correction, which cannot undo the contrast
    # differences of the sample (1.5 on its blue band; "wallis", our default, 1.15)
    assert_a_matched_mosaic(working_directory, "MergedImage.tif", contrast_below=1.7)
    assert (working_directory / "GlobalMatch" / "GlobalAdjustments.json").is_file()
    assert len(list((working_directory / "GlobalMatch" / "INZ").glob("*.tif"))) == 4
    assert len(list((working_directory / "LocalMatch" / "LocalBlockMap").glob("*.tif"))) == 4
    assert (working_directory / "DebugVectors.gpkg").is_file()
    with rasterio.open(working_directory / "MergedImage.tif") as mosaic:
        assert mosaic.overviews(1)


def assert_a_matched_mosaic(folder, name, contrast_below: float = 1.3) -> None:
    """The mosaic's cut lines are hard to see: across them neighbouring pixels differ
    about as much as inside the images (``seam_contrast`` below ``contrast_below``), while
    the input tiles cut by the same seamlines show them plainly (above 3)."""
    seamlines = folder / "ImageMasks.gpkg"
    raw = merge_rasters(folder / "Input", str(folder / "unmatched.tif"), seamlines=seamlines)
    with rasterio.open(folder / name) as mosaic, rasterio.open(raw) as unmatched:
        # the same extent, up to the pixel that tap=True may add on a side
        pixel = mosaic.res[0]
        assert np.allclose(mosaic.bounds, unmatched.bounds, atol=pixel)
    assert (seam_contrast(folder / name, seamlines) < contrast_below).all()
    assert (seam_contrast(raw, seamlines) > 3).all()
