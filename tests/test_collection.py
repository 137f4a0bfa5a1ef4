"""ImageCollection and resolve_paths: how images are named, found and validated."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import SAMPLE_TILES, write_raster
from rasterio.transform import from_origin

from spectralmatch import Image, ImageCollection, Mosaic, SpectralMatchError
from spectralmatch.raster.collection import resolve_paths

# ---------------------------------------------------------------------- finding files


def test_folder_gives_its_rasters_sorted(sample_copy):
    (sample_copy / "notes.txt").write_text("not a raster")
    (sample_copy / ".hidden.tif").write_bytes(b"")
    paths = resolve_paths(sample_copy)
    assert [p.name for p in paths] == [f"{name}.tif" for name in SAMPLE_TILES]


def test_glob_list_and_file_inputs(data_dir):
    pattern = str(data_dir / "tile_0[13].tif")
    assert [p.stem for p in resolve_paths(pattern)] == ["tile_01", "tile_03"]
    # order of a list is kept; entries may mix files and patterns
    mixed = resolve_paths([data_dir / "tile_02.tif", str(data_dir / "tile_0[01].tif")])
    assert [p.stem for p in mixed] == ["tile_02", "tile_00", "tile_01"]
    assert resolve_paths(str(data_dir / "tile_03.tif")) == [data_dir / "tile_03.tif"]


def test_folder_without_rasters_raises_naming_it(tmp_path):
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    (empty / "readme.md").write_text("nothing here")
    with pytest.raises(SpectralMatchError, match="empty_folder") as error:
        ImageCollection.from_paths(empty)
    assert "no raster" in str(error.value)


def test_glob_matching_nothing_raises_naming_it(tmp_path):
    pattern = str(tmp_path / "nothing_*.tif")
    with pytest.raises(SpectralMatchError, match="pattern matches no file") as error:
        ImageCollection.from_paths(pattern)
    assert pattern in str(error.value)


def test_missing_path_raises_naming_it(tmp_path):
    with pytest.raises(SpectralMatchError, match="ghost.tif"):
        resolve_paths([tmp_path / "ghost.tif"])


# ---------------------------------------------------------------------- the collection


def test_collection_of_the_sample(data_dir):
    collection = ImageCollection.from_paths(data_dir)
    assert len(collection) == 4
    assert collection.names == SAMPLE_TILES
    assert collection.count == 3
    assert collection.crs.to_epsg() == 32621
    boxes = np.array([image.bounds for image in collection])
    assert collection.bounds == (
        boxes[:, 0].min(),
        boxes[:, 1].min(),
        boxes[:, 2].max(),
        boxes[:, 3].max(),
    )
    assert [image.name for image in collection] == SAMPLE_TILES


def test_index_by_name_position_file_name_and_path(data_dir):
    collection = ImageCollection.from_paths(data_dir)
    assert collection.index("tile_02") == 2
    assert collection.index("tile_02.tif") == 2
    assert collection.index(2) == 2
    assert collection.index(-1) == 3
    assert collection.index(data_dir / "tile_01.tif") == 1
    relative = os.path.relpath(data_dir / "tile_03.tif")
    assert collection.index(relative) == 3
    assert collection["tile_01"].name == "tile_01"
    with pytest.raises(SpectralMatchError, match="tile_99"):
        collection.index("tile_99")
    with pytest.raises(SpectralMatchError, match="out of range"):
        collection.index(4)


def test_coerce_accepts_every_form(data_dir):
    paths = [data_dir / f"{name}.tif" for name in SAMPLE_TILES[:2]]
    collection = ImageCollection(paths)
    assert ImageCollection.coerce(collection) is collection
    assert ImageCollection.coerce(Image(paths[0])).names == ["tile_00"]
    assert ImageCollection.coerce(str(data_dir)).names == SAMPLE_TILES
    assert ImageCollection.coerce(paths).names == ["tile_00", "tile_01"]
    assert ImageCollection.coerce([Image(p) for p in paths]).names == ["tile_00", "tile_01"]


def test_empty_collection_raises():
    with pytest.raises(SpectralMatchError, match="no images"):
        ImageCollection([])


# ---------------------------------------------------------------------- validation


def _write(path, bands=3, crs="EPSG:32621", origin=(700000.0, 7000000.0), value=100):
    data = np.full((bands, 20, 20), value, dtype=np.uint16)
    return write_raster(path, data, crs=crs, transform=from_origin(*origin, 30.0, 30.0), nodata=0)


def test_different_band_counts_raise_naming_the_file(tmp_path):
    first = _write(tmp_path / "three.tif", bands=3)
    second = _write(tmp_path / "two_bands.tif", bands=2)
    with pytest.raises(SpectralMatchError, match="two_bands.tif") as error:
        ImageCollection([first, second])
    assert "2 bands" in str(error.value) and "three.tif" in str(error.value)


def test_different_crs_raises_and_suggests_aligning(tmp_path):
    first = _write(tmp_path / "utm21.tif")
    second = _write(tmp_path / "utm22.tif", crs="EPSG:32622")
    with pytest.raises(SpectralMatchError, match="utm22.tif") as error:
        ImageCollection([first, second])
    message = str(error.value)
    assert "CRS" in message and "align" in message
    assert "32622" in message and "32621" in message


def test_duplicate_names_raise_naming_both_files(tmp_path):
    first = _write(tmp_path / "a" / "scene.tif")
    second = _write(tmp_path / "b" / "scene.tif")
    with pytest.raises(SpectralMatchError, match="duplicate image name 'scene'") as error:
        ImageCollection.from_paths([tmp_path / "a", tmp_path / "b"])
    assert str(first) in str(error.value) and str(second) in str(error.value)


def test_unreadable_file_raises_naming_it(tmp_path):
    good = _write(tmp_path / "good.tif")
    bad = tmp_path / "broken.tif"
    bad.write_text("plain text, not a GeoTIFF")
    with pytest.raises(SpectralMatchError, match="broken.tif") as error:
        ImageCollection.from_paths(tmp_path)
    assert "cannot be read" in str(error.value)
    with pytest.raises(SpectralMatchError, match="broken.tif"):
        ImageCollection([good, bad])


def test_image_without_valid_pixels_raises_naming_it(tmp_path):
    good = _write(tmp_path / "good.tif")
    empty = _write(tmp_path / "all_nodata.tif", origin=(700300.0, 7000000.0), value=0)
    with pytest.raises(SpectralMatchError, match="all_nodata.tif") as error:
        Mosaic().fit([good, empty])
    assert "no valid pixels" in str(error.value)
