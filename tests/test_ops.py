"""Align, seamlines, mask and merge: the mosaic workflow after matching."""

from __future__ import annotations

import sys
from pathlib import Path

import geopandas
import numpy as np
import pytest
import rasterio
from conftest import DATA_DIR, read_raster, write_raster
from rasterio.transform import from_origin
from shapely.ops import unary_union

from spectralmatch import (
    Image,
    ImageCollection,
    Seamline,
    SpectralMatchError,
    align_rasters,
    compute_overviews,
    mask_rasters,
    merge_rasters,
    voronoi_center_seamline,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))


def test_align_puts_every_image_on_one_tapped_grid(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.integers(1, 1000, (1, 40, 50)).astype("uint16")
    folder = tmp_path / "in"
    write_raster(folder / "a.tif", values, transform=from_origin(1000.0, 2000.0, 10, 10), nodata=0)
    write_raster(folder / "b.tif", values, transform=from_origin(1203.0, 1957.0, 20, 20), nodata=0)
    outputs = align_rasters(tmp_path / "in", tmp_path / "out", resolution="highest", tap=True)
    for path in outputs:
        image = Image(path)
        assert (image.transform.a, image.transform.e) == (10.0, -10.0)
        assert image.transform.c % 10 == 0 and image.transform.f % 10 == 0
        assert image.nodata == 0 and image.dtype == "uint16"
    b = Image(outputs[1])
    assert b.bounds[0] <= 1203.0 and b.bounds[2] >= 1203.0 + 50 * 20
    assert np.array_equal(read_raster(outputs[0]), values)  # already on the grid
    lowest = align_rasters(tmp_path / "in", tmp_path / "low", resolution="lowest")
    assert Image(lowest[0]).transform.a == 20.0
    numeric = align_rasters(tmp_path / "in", tmp_path / "num", resolution=40)
    assert (Image(numeric[0]).transform.a, Image(numeric[0]).transform.e) == (40.0, -40.0)
    with pytest.raises(SpectralMatchError, match="resolution"):
        align_rasters(tmp_path / "in", tmp_path / "bad", resolution="finest")


def test_align_by_default_leaves_co_registered_tiles_where_they_are(tmp_path):
    outputs = align_rasters(DATA_DIR, tmp_path / "out")
    for path in outputs:
        source = DATA_DIR / Path(path).name
        with rasterio.open(source) as before, rasterio.open(path) as after:
            assert after.transform == before.transform and after.crs == before.crs
            assert np.array_equal(after.read(), before.read())


def reproject_file(source: Path, target: Path, crs: str) -> Path:
    """A real reprojection of ``source`` with GDAL (as another tool would deliver it)."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    with rasterio.open(source) as dataset:
        transform, width, height = calculate_default_transform(
            dataset.crs, crs, dataset.width, dataset.height, *dataset.bounds
        )
        profile = dict(dataset.profile, crs=crs, transform=transform, width=width, height=height)
        with rasterio.open(target, "w", **profile) as out:
            for band in range(1, dataset.count + 1):
                reproject(
                    rasterio.band(dataset, band),
                    rasterio.band(out, band),
                    resampling=Resampling.nearest,
                )
    return target


def test_align_reprojects_images_in_another_crs_onto_one_grid(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("tile_00", "tile_02", "tile_03"):
        (folder / f"{name}.tif").write_bytes((DATA_DIR / f"{name}.tif").read_bytes())
    reproject_file(DATA_DIR / "tile_01.tif", folder / "tile_01.tif", "EPSG:3857")
    with pytest.raises(SpectralMatchError, match="align --dst-crs"):
        ImageCollection.from_paths(folder)
    outputs = align_rasters(folder, tmp_path / "out")
    collection = ImageCollection.from_paths(outputs)  # one CRS, one grid: accepted
    assert collection.crs == Image(DATA_DIR / "tile_00.tif").crs
    for image in collection:
        assert (image.transform.a, image.transform.e) == (30.0, -30.0)
    # the reprojected tile is back on its original grid, with its original values almost
    # everywhere (two nearest-neighbour resamplings move some pixels by one)
    with rasterio.open(DATA_DIR / "tile_01.tif") as original:
        before, window_transform = original.read(), original.transform
    back = Image(tmp_path / "out" / "tile_01.tif")
    offset = ~back.transform * (window_transform.c, window_transform.f)
    rows, cols = round(offset[1]), round(offset[0])
    after = read_raster(back.path)[:, rows : rows + before.shape[1], cols : cols + before.shape[2]]
    both = (before != 0) & (after != 0)
    assert both.mean() > 0.8
    assert np.median(np.abs(after[both].astype(float) - before[both])) == 0
    matched = sm_match(tmp_path / "out", tmp_path / "matched")
    assert len(matched) == 4


def sm_match(inputs, out):
    from spectralmatch import GlobalModel, Mosaic

    return Mosaic(steps=[GlobalModel()]).fit_transform(inputs, out)


def test_align_to_a_given_crs_and_a_bad_crs(tmp_path):
    outputs = align_rasters(DATA_DIR, tmp_path / "out", crs="EPSG:3857")
    images = ImageCollection.from_paths(outputs)
    assert images.crs.to_epsg() == 3857
    assert len({(i.transform.a, i.transform.e) for i in images}) == 1
    with pytest.raises(SpectralMatchError, match="align_rasters: crs must be a CRS"):
        align_rasters(DATA_DIR, tmp_path / "bad", crs="EPSG:0")


def test_align_gives_an_image_without_nodata_a_mask_of_its_data(tmp_path):
    source = tmp_path / "in" / "plain.tif"
    values = np.full((1, 400, 400), 7, "uint16")  # 300 km from the central meridian
    write_raster(source, values, transform=from_origin(800000.0, -2800000.0, 30, 30))
    (out,) = align_rasters([source], tmp_path / "out", crs="EPSG:4326")
    with rasterio.open(out) as dataset:
        mask = dataset.dataset_mask()
        data = dataset.read(1)
    assert 0 < (mask > 0).mean() < 1  # the reprojected square does not fill its box
    assert (data[mask > 0] == 7).mean() > 0.99


def test_align_leaves_a_given_nodata_out_of_the_resampling(tmp_path):
    """Reprojected with bilinear resampling, images given the nodata value their files do
    not declare come out as the files that declare it do (not blended with it)."""
    declared = sorted(DATA_DIR.glob("*.tif"))[:2]
    given = []
    for path in declared:
        copy = tmp_path / "stripped" / path.name
        copy.parent.mkdir(exist_ok=True)
        copy.write_bytes(path.read_bytes())
        with rasterio.open(copy, "r+") as dataset:
            dataset.nodata = None
        given.append(Image(copy, nodata=0))
    options = {"crs": "EPSG:4326", "resampling_method": "bilinear"}
    expected = align_rasters(declared, tmp_path / "declared", **options)
    outputs = align_rasters(given, tmp_path / "given", **options)
    for path, output in zip(expected, outputs, strict=True):
        np.testing.assert_array_equal(read_raster(output), read_raster(path))


def test_voronoi_seamlines_partition_the_union_of_footprints(tmp_path):
    collection = ImageCollection.from_paths(DATA_DIR)
    seams = Seamline.voronoi(collection)
    union = unary_union([image.footprint for image in collection])
    polygons = list(seams.polygons.values())
    assert sorted(seams.polygons) == collection.names
    assert sum(p.area for p in polygons) == pytest.approx(union.area, rel=1e-9)
    for i in range(len(polygons)):
        assert polygons[i].within(collection.images[i].footprint.buffer(1e-6))
        for j in range(i + 1, len(polygons)):
            assert polygons[i].intersection(polygons[j]).area < 1e-6 * union.area
    path = voronoi_center_seamline(DATA_DIR, tmp_path / "seams.gpkg", image_field_name="img")
    layer = geopandas.read_file(path)
    assert sorted(layer["img"]) == collection.names
    assert layer.crs == collection.crs


def test_mask_rasters_clips_each_image_by_its_own_polygon(tmp_path):
    seams = tmp_path / "seams.gpkg"
    voronoi_center_seamline(DATA_DIR, seams)
    outputs = mask_rasters(DATA_DIR, tmp_path / "clipped", vector_mask=("include", seams, "image"))
    kept = []
    for source, path in zip(sorted(DATA_DIR.glob("*.tif")), outputs, strict=True):
        before, after = read_raster(source), read_raster(path)
        valid_after = after[0] != 0
        assert np.array_equal(after[:, valid_after], before[:, valid_after])
        assert valid_after.sum() < (before[0] != 0).sum()
        kept.append(valid_after.sum())
    # the clipped tiles share (almost) no pixel any more: their counts add up to the union
    merged = merge_rasters(tmp_path / "clipped", tmp_path / "merged.tif")
    assert (read_raster(merged)[0] != 0).sum() == pytest.approx(sum(kept), rel=0.01)


def test_merge_fills_the_union_first_image_first(tmp_path):
    a = np.full((1, 20, 20), 10, "uint16")
    b = np.full((1, 20, 20), 20, "uint16")
    b[:, :5, :5] = 0
    folder = tmp_path / "in"
    write_raster(folder / "a.tif", a, transform=from_origin(0.0, 200.0, 10, 10), nodata=0)
    write_raster(folder / "b.tif", b, transform=from_origin(100.0, 100.0, 10, 10), nodata=0)
    merged = read_raster(merge_rasters(tmp_path / "in", tmp_path / "m.tif"))
    assert merged.shape == (1, 30, 30)
    assert (merged[0, :20, :20] == 10).all()  # a first, over its whole extent
    assert (merged[0, 20:, 20:] == 20).all()  # b where only b is
    assert (merged[0, :10, 20:] == 0).all()  # outside both: nodata
    with rasterio.open(tmp_path / "m.tif") as dataset:
        assert dataset.nodata == 0 and dataset.profile["tiled"]


def test_merge_puts_an_image_off_the_grid_onto_the_first_images_grid(tmp_path):
    folder = tmp_path / "in"
    a = np.ones((1, 10, 10), "uint16")
    write_raster(folder / "a.tif", a, transform=from_origin(0.0, 100.0, 10, 10), nodata=0)
    write_raster(folder / "b.tif", a * 2, transform=from_origin(3.0, 90.0, 10, 10), nodata=0)
    with rasterio.open(merge_rasters(folder, tmp_path / "m.tif")) as merged:
        assert merged.transform == from_origin(0.0, 100.0, 10, 10)
        values = merged.read(1)
    assert values.shape == (11, 11)  # the union, 3 m wider and 10 m taller, on a's lines
    assert (values[:10, :10] == 1).all()  # a first
    # b alone below a: nearest to the centres 5, 15... of b's pixels at 3, 13...
    assert (values[10, :10] == 2).all() and values[10, 10] == 0


def test_the_published_six_step_workflow_runs_as_written(tmp_path):
    from mosaic_workflow import run

    merged = run(tmp_path)
    for folder in ("GlobalMatch", "LocalMatch", "Aligned", "Clipped"):
        assert sorted(p.name for p in (tmp_path / folder).glob("*.tif")) == sorted(
            p.name for p in DATA_DIR.glob("*.tif")
        )
    union = unary_union([Image(p).footprint for p in sorted(DATA_DIR.glob("*.tif"))])
    with rasterio.open(merged) as dataset:
        valid = (dataset.read(1) != 0).sum()
        pixel_area = abs(dataset.transform.a * dataset.transform.e)
    assert valid * pixel_area == pytest.approx(union.area, rel=0.03)


def test_cli_align_seamlines_mask_merge(tmp_path):
    from click.testing import CliRunner

    from spectralmatch.cli.main import main

    runner = CliRunner()
    steps = [
        ["align", str(DATA_DIR), "-o", str(tmp_path / "aligned"), "--resolution", "30"],
        [
            "seamlines",
            str(tmp_path / "aligned"),
            "-o",
            str(tmp_path / "seams.gpkg"),
            "--method",
            "least-cost",
        ],
        [
            "mask",
            str(tmp_path / "aligned"),
            "-o",
            str(tmp_path / "clipped"),
            "--vector",
            str(tmp_path / "seams.gpkg"),
            "--field",
            "image",
        ],
        ["merge", str(tmp_path / "clipped"), "-o", str(tmp_path / "mosaic.tif"), "--cog"],
    ]
    for args in steps:
        result = runner.invoke(main, args)
        assert result.exit_code == 0, (args[0], result.output)
    with rasterio.open(tmp_path / "mosaic.tif") as dataset:
        assert dataset.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert dataset.count == 3 and (dataset.read(1) != 0).mean() > 0.8
    bad = runner.invoke(
        main, ["align", str(DATA_DIR), "-o", str(tmp_path / "x"), "--resolution", "fine"]
    )
    assert bad.exit_code != 0 and "resolution" in bad.output.lower()


def two_halves(tmp_path, left_value=100, right_value=200):
    """Two overlapping constant images and a seamline cutting their overlap in half."""
    import shapely.geometry

    folder = tmp_path / "halves"
    write_raster(
        folder / "a.tif",
        np.full((1, 40, 60), left_value, "uint16"),
        transform=from_origin(0.0, 400.0, 10, 10),
        nodata=0,
    )
    write_raster(
        folder / "b.tif",
        np.full((1, 40, 60), right_value, "uint16"),
        transform=from_origin(300.0, 400.0, 10, 10),
        nodata=0,
    )
    seams = Seamline(
        {"a": shapely.geometry.box(0, 0, 450, 400), "b": shapely.geometry.box(450, 0, 900, 400)},
        Image(folder / "a.tif").crs,
    )
    return folder, seams


def test_merge_places_images_by_their_seamlines_and_feathers_the_cut(tmp_path):
    folder, seams = two_halves(tmp_path)
    sharp = read_raster(merge_rasters(folder, tmp_path / "sharp.tif", seamlines=seams))[0]
    assert sharp.shape == (40, 90)
    assert (sharp[:, :45] == 100).all() and (sharp[:, 45:] == 200).all()  # cut at x = 450
    soft = read_raster(merge_rasters(folder, tmp_path / "soft.tif", seamlines=seams, feather=10))[0]
    row = soft[20].astype(int)
    assert (row[:38] == 100).all() and (row[52:] == 200).all()
    assert np.all(np.diff(row) >= 0) and np.abs(np.diff(row)).max() <= 12  # a ramp
    assert 100 < row[45] < 200
    # where only one image has data, it is used whatever the polygons say
    assert (soft[:, :30] == 100).all() and (soft[:, 60:] == 200).all()


def test_seam_contrast_falls_with_matching_and_with_feathering(tmp_path):
    from spectralmatch.report.metrics import seam_contrast

    folder, seams = two_halves(tmp_path)
    sharp = merge_rasters(folder, tmp_path / "sharp.tif", seamlines=seams)
    soft = merge_rasters(folder, tmp_path / "soft.tif", seamlines=seams, feather=10)
    # constant halves: no difference inside, all of it across the cut
    assert np.isinf(seam_contrast(sharp, seams)).all() or seam_contrast(sharp, seams)[0] > 1e6
    seams_path = seams.to_file(tmp_path / "seams.gpkg")
    raw = Seamline.voronoi(DATA_DIR)
    merged_raw = merge_rasters(DATA_DIR, tmp_path / "raw.tif", seamlines=raw)
    assert seam_contrast(merged_raw, raw).min() > 5
    from spectralmatch import BlockMap, GlobalModel, Mosaic

    matched = Mosaic(steps=[GlobalModel(), BlockMap()]).fit_transform(
        DATA_DIR, tmp_path / "matched"
    )
    hard = merge_rasters(matched, tmp_path / "hard.tif", seamlines=raw)
    feathered = merge_rasters(matched, tmp_path / "feathered.tif", seamlines=raw, feather=8)
    hard_contrast, feathered_contrast = seam_contrast(hard, raw), seam_contrast(feathered, raw)
    assert (hard_contrast < 1.5).all()
    assert (feathered_contrast < hard_contrast).all()
    assert seams_path.exists() and soft


def test_cli_merge_report(tmp_path):
    from click.testing import CliRunner

    from spectralmatch.cli.main import main

    seams = Seamline.voronoi(DATA_DIR).to_file(tmp_path / "seams.gpkg")
    result = CliRunner().invoke(
        main,
        [
            "merge",
            str(DATA_DIR),
            "-o",
            str(tmp_path / "m.tif"),
            "--seamlines",
            str(seams),
            "--feather",
            "4",
            "--report",
        ],
    )
    assert result.exit_code == 0, result.output
    values = [float(v) for v in result.output.split(":")[1].split()]
    # the raw tiles: cuts plainly visible (the 4-pixel feather spreads each step over
    # the pixels beside the cut too, so less than unfeathered)
    assert len(values) == 3 and min(values) > 2
    missing = CliRunner().invoke(
        main, ["merge", str(DATA_DIR), "-o", str(tmp_path / "n.tif"), "--report"]
    )
    assert missing.exit_code != 0 and "--seamlines" in missing.output


def test_least_cost_seamlines_partition_and_do_not_show_the_cuts_more(tmp_path):
    from spectralmatch import BlockMap, GlobalModel, Mosaic
    from spectralmatch.report.metrics import seam_contrast

    matched = Mosaic(steps=[GlobalModel(), BlockMap()]).fit_transform(DATA_DIR, tmp_path / "m")
    least = Seamline.least_cost(matched)
    voronoi = Seamline.voronoi(matched)
    union = unary_union([image.footprint for image in matched])
    polygons = list(least.polygons.values())
    assert sum(p.area for p in polygons) == pytest.approx(union.area, rel=1e-9)
    for i in range(len(polygons)):
        for j in range(i + 1, len(polygons)):
            assert polygons[i].intersection(polygons[j]).area < 1e-6 * union.area
    assert any(not least.polygons[n].equals(voronoi.polygons[n]) for n in matched.names)
    contrast = {}
    for name, seams in (("voronoi", voronoi), ("least", least)):
        for feather in (0, 8):
            merged = merge_rasters(
                matched, tmp_path / f"{name}{feather}.tif", seamlines=seams, feather=feather
            )
            contrast[name, feather] = seam_contrast(merged, seams)
    # on matched tiles the cuts are nearly unseen either way (contrast ~1 per band, known
    # to a few percent on cuts this short), so only the average is compared, within that;
    # test_seamline.py shows the least-cost cut following the line where the images agree
    # on data with a clear optimum
    assert contrast["least", 0].mean() <= contrast["voronoi", 0].mean() + 0.03
    assert (contrast["least", 8] < contrast["least", 0]).all()


def test_least_cost_labels_follow_the_cheap_column():
    from spectralmatch.ops.least_cost import Cropped, least_cost_labels

    cover = np.zeros((2, 20, 40), bool)
    cover[0, :, :30] = True
    cover[1, :, 10:] = True
    labels = np.where(np.arange(40) < 20, 1, 2)[None].repeat(20, 0)
    cost = np.ones((2, 2, 20, 40))
    cost[0, 1][:, 25] = 0.0
    covers = [Cropped.of(covered, covered, False) for covered in cover]
    moved = least_cost_labels(labels, lambda i, j, window: cost[i, j][window], covers)
    assert (moved[10, 10:25] == 1).all() and (moved[10, 26:] == 2).all()
    assert (moved[:, :10] == 1).all() and (moved[:, 30:] == 2).all()


def test_an_image_cropped_to_its_part_of_the_grid_gives_the_whole_grid_back():
    from spectralmatch.ops.least_cost import Cropped

    rng = np.random.default_rng(4)
    whole = np.full((3, 30, 40), np.nan)
    whole[:, 5:17, 22:31] = rng.normal(size=(3, 12, 9))
    whole[1, 6, 23] = np.nan  # a hole inside keeps its place
    cropped = Cropped.of(whole, ~np.isnan(whole).all(axis=0), np.nan)
    assert cropped.array.shape == (3, 12, 9)
    for _ in range(50):
        top, left = rng.integers(0, 30), rng.integers(0, 40)
        window = (slice(top, rng.integers(top, 31)), slice(left, rng.integers(left, 41)))
        np.testing.assert_array_equal(cropped.over(window), whole[(slice(None), *window)])
    nothing = Cropped.of(np.zeros((30, 40), bool), np.zeros((30, 40), bool), False)
    assert not nothing.over((slice(0, 30), slice(0, 40))).any()


def test_least_cost_pairs_are_every_pair_sharing_a_cell_with_room_around():
    from spectralmatch.ops.least_cost import PAIR_MARGIN, Cropped, _meeting_pairs

    rng = np.random.default_rng(2)
    cover = np.zeros((12, 40, 50), bool)
    for covered in cover[:-1]:  # rectangles with holes; the last image covers nothing
        top, left = rng.integers(0, 30), rng.integers(0, 40)
        covered[top : top + rng.integers(3, 15), left : left + rng.integers(3, 15)] = True
        covered &= rng.random(covered.shape) > 0.2
    pairs = _meeting_pairs([Cropped.of(c, c, False) for c in cover], (40, 50))
    assert [(i, j) for i, j, _ in pairs] == sorted((i, j) for i, j, _ in pairs)
    windows = {(i, j): window for i, j, window in pairs}
    for i in range(12):
        for j in range(i + 1, 12):
            shared = cover[i] & cover[j]
            if not shared.any():
                continue
            rows, cols = np.nonzero(shared)
            window = windows[i, j]  # every pair sharing a cell is there
            for axis, (index, size) in enumerate(((rows, 40), (cols, 50))):
                part = window[axis]
                assert part.start <= max(index.min() - PAIR_MARGIN, 0)
                assert min(index.max() + 1 + PAIR_MARGIN, size) <= part.stop <= size
    assert all(11 not in (i, j) for i, j in windows)


def test_mosaic_merge_builds_the_seamlines_it_is_asked_for(tmp_path):
    from spectralmatch import Mosaic

    model = Mosaic()
    for seams in ("least-cost", "voronoi"):
        path = model.merge(DATA_DIR, tmp_path / f"{seams}.tif", seamlines=seams, feather=2)
        merged = read_raster(path)
        assert merged.shape[0] == 3 and (merged[0] != 0).mean() > 0.8
    with pytest.warns(UserWarning, match="feather has no effect without seamlines"):
        path = model.merge(DATA_DIR, tmp_path / "first.tif", seamlines=None, feather=2)
        merged = read_raster(path)
        assert merged.shape[0] == 3 and (merged[0] != 0).mean() > 0.8
    with pytest.raises(SpectralMatchError, match="README.md: cannot read seamlines"):
        model.merge(DATA_DIR, tmp_path / "x.tif", seamlines=DATA_DIR / "README.md")
    assert not (tmp_path / "x.tif").exists()


def test_mask_rasters_without_field_uses_every_feature_and_exclude_inverts(tmp_path):
    import shapely.geometry

    values = np.full((1, 20, 20), 7, "uint16")
    write_raster(
        tmp_path / "in" / "a.tif", values, transform=from_origin(0.0, 200.0, 10, 10), nodata=0
    )
    boxes = [shapely.geometry.box(0, 100, 100, 200), shapely.geometry.box(100, 0, 200, 100)]
    frame = geopandas.GeoDataFrame(
        {"image": ["x", "y"]}, geometry=boxes, crs=Image(tmp_path / "in" / "a.tif").crs
    )
    frame.to_file(tmp_path / "boxes.gpkg")
    kept = read_raster(
        mask_rasters(
            tmp_path / "in", tmp_path / "inc", vector_mask=("include", tmp_path / "boxes.gpkg")
        )[0]
    )[0]
    assert (kept[:10, :10] == 7).all() and (kept[10:, 10:] == 7).all()
    assert (kept[:10, 10:] == 0).all() and (kept[10:, :10] == 0).all()
    cut = read_raster(
        mask_rasters(
            tmp_path / "in", tmp_path / "exc", vector_mask=("exclude", tmp_path / "boxes.gpkg")
        )[0]
    )[0]
    assert np.array_equal(cut == 7, kept == 0)


def test_operations_take_the_published_engine_keywords(tmp_path, caplog):
    import logging

    with caplog.at_level(logging.DEBUG, logger="spectralmatch"):
        outputs = align_rasters(
            DATA_DIR,
            tmp_path / "aligned",
            debug_logs=True,
            image_threads=2,
            io_threads="cpu",
            tile_threads=None,
            concurrent_processing_backend="thread",
            resume_from_outputs="no",
        )
    assert len(outputs) == 4
    assert any("align_rasters" in record.getMessage() for record in caplog.records)
    merged = merge_rasters(outputs, tmp_path / "mosaic.tif", debug_logs=False, io_threads=2)
    assert Image(merged).count == 3
    with pytest.raises(SpectralMatchError, match="resume_from_outputs: compute_overviews"):
        compute_overviews(outputs, resume_from_outputs="yes")
    with pytest.raises(SpectralMatchError, match="concurrent_processing_backend: 'dask' runs on"):
        mask_rasters(outputs, tmp_path / "m", concurrent_processing_backend="dask")
    with pytest.raises(SpectralMatchError, match="image_threads: must be 'cpu'"):
        align_rasters(DATA_DIR, tmp_path / "x", image_threads=-1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'debug_log'"):
        align_rasters(DATA_DIR, tmp_path / "y", debug_log=True)
    assert not (tmp_path / "y").exists()


def test_seamline_classmethods_take_the_engine_keywords(tmp_path):
    seams = Seamline.voronoi(DATA_DIR, tmp_path / "v.gpkg", debug_logs=True, image_threads=2)
    assert sorted(seams.polygons) == [f"tile_0{i}" for i in range(4)]
    with pytest.raises(TypeError, match="unexpected keyword argument 'debug'"):
        Seamline.voronoi(DATA_DIR, debug=True)


def _awkward_rasters(folder):
    """Rasters whose validity takes every path: per-band nodata in integers, NaN and
    infinities in floats (with and without a nodata value), an internal mask band."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(8)
    base = rng.normal(500.0, 80.0, (3, 90, 110))
    integers = np.round(base).astype("uint16")
    integers[0, :20] = 0
    integers[1, :, :15] = 0
    floats = base.copy()
    floats[:, 30:40, 50:70] = np.nan
    floats[2, 60:63] = np.inf
    floats[0, 5, 5] = -np.inf
    with_nodata = floats.copy()
    with_nodata[:, :, :12] = -9999.0
    masked = np.round(base).astype("uint16")
    mask = np.full((90, 110), 255, np.uint8)
    mask[:, :25] = 0
    mask[70:] = 0
    transform = from_origin(500000.0, 4000000.0, 30.0, 30.0)
    paths = {
        "integers": write_raster(folder / "integers.tif", integers, nodata=0, transform=transform),
        "floats": write_raster(folder / "floats.tif", floats, transform=transform),
        "with_nodata": write_raster(
            folder / "with_nodata.tif", with_nodata, nodata=-9999.0, transform=transform
        ),
        "masked": write_raster(folder / "masked.tif", masked, transform=transform),
    }
    with rasterio.open(paths["masked"], "r+") as dataset:
        dataset.write_mask(mask)
    return paths


def test_a_nan_masked_vrt_reads_as_the_valid_values_with_nan_elsewhere(tmp_path):
    import rasterio

    from spectralmatch import Image
    from spectralmatch.raster.vrt import nan_masked_vrt

    paths = _awkward_rasters(tmp_path)
    images = [Image(path) for path in paths.values()]
    images.append(Image(paths["masked"], nodata=600))  # a given nodata: the mask is not used
    value = float(read_raster(paths["integers"])[2, 50, 50])
    images.append(Image(paths["integers"], nodata=value))  # the file's nodata is a value
    images.append(Image(paths["with_nodata"], nodata=float("nan")))
    for image in images:
        values, valid = image.read()
        expected = np.where(valid, values.astype(np.float64), np.nan)
        assert (~valid).any() and valid.any()
        with rasterio.open(nan_masked_vrt(image)) as dataset:
            assert dataset.dtypes == ("float64",) * image.count
            np.testing.assert_array_equal(dataset.read(), expected, err_msg=str(image.path))


def test_a_given_nodata_is_left_out_of_resampled_averages_as_the_files_own(tmp_path, data_dir):
    """Read at a quarter of the resolution, an image given the nodata value its file no
    longer declares averages as the file that declares it does."""
    import rasterio
    from rasterio.enums import Resampling

    from spectralmatch import Image
    from spectralmatch.raster.vrt import open_for_resampling

    stripped = tmp_path / "tile_00.tif"
    stripped.write_bytes((data_dir / "tile_00.tif").read_bytes())
    with rasterio.open(stripped, "r+") as dataset:
        dataset.nodata = None
    declared, given = Image(data_dir / "tile_00.tif"), Image(stripped, nodata=0)
    assert (declared.read()[0] == 0).any()  # the average must leave real pixels out

    def averaged(image, opener):
        with opener(image) as dataset:
            shape = (image.count, image.height // 4, image.width // 4)
            return dataset.read(out_shape=shape, resampling=Resampling.average)

    expected = averaged(declared, Image.open)
    np.testing.assert_array_equal(averaged(given, open_for_resampling), expected)
    assert not np.array_equal(averaged(given, Image.open), expected)  # the plain file counts 0


def test_least_cost_sampling_averages_each_image_as_a_nan_masked_copy_would(tmp_path):
    """Each image is averaged onto the coarse grid from its file, window by window, to the
    numbers GDAL's warper gives from a float64 copy of the whole image with NaN where it
    is not valid."""
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    from spectralmatch import Image
    from spectralmatch.ops.least_cost import CoarseGrid

    paths = _awkward_rasters(tmp_path)
    for name, path in paths.items():
        shifted = write_raster(  # a second image, a little off, so the grid spans both
            tmp_path / f"{name}_b.tif",
            read_raster(path),
            nodata=Image(path).nodata,
            transform=from_origin(500000.0 + 7 * 30.0, 4000000.0 - 5 * 30.0, 30.0, 30.0),
        )
        collection = ImageCollection([Image(path), Image(shifted)])
        for decimation in (3, 4):
            grid = CoarseGrid.over(collection, decimation)
            values, _ = grid.sample(collection)
            for image, sampled in zip(collection, values, strict=True):
                data, valid = image.read()
                copy = np.where(valid, data.astype(np.float64), np.nan)
                expected = np.full((image.count, *grid.shape), np.nan)
                reproject(
                    copy,
                    expected,
                    src_transform=image.transform,
                    src_crs=image.crs,
                    dst_transform=grid.transform,
                    dst_crs=image.crs,
                    src_nodata=np.nan,
                    dst_nodata=np.nan,
                    resampling=Resampling.average,
                )
                np.testing.assert_array_equal(
                    sampled.over(sampled.window), expected[(slice(None), *sampled.window)]
                )
                outside = np.ones(grid.shape, dtype=bool)
                outside[sampled.window] = False
                assert np.isnan(expected[:, outside]).all()


def test_an_unreadable_image_in_least_cost_seamlines_is_named(tmp_path):
    paths = _awkward_rasters(tmp_path)
    collection = ImageCollection([paths["integers"], paths["floats"]])
    broken = paths["floats"]
    content = broken.read_bytes()
    broken.write_bytes(content[: len(content) // 3])
    with pytest.raises(SpectralMatchError, match=f"^{broken}: cannot be read"):
        Seamline.least_cost(collection)
