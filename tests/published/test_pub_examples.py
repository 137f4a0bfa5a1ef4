"""The published package's example workflows, run against ours with the calls and keywords
its examples use, on data made here.

The Landsat time-series example makes its cloud and vegetation polygons with
``create_cloud_mask_with_omnicloudmask``, ``band_math`` and
``process_raster_values_to_vector_polygons`` (issue 12) and ends with the ``compare_*``
plots (issue 13); here the polygons are drawn where the series has its clouds, and
everything from ``merge_vectors`` to the local step runs as in the example.
"""

from __future__ import annotations

import numpy as np
import rasterio
from conftest import make_series, rectangles_mask, write_polygons
from shapely.geometry import box

from spectralmatch import Match, mask_rasters, merge_vectors, search_paths


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
