"""OverlapGraph, pixel windows and the pairwise statistics of overlaps."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import measure_moments, write_raster
from rasterio.transform import from_origin
from rasterio.windows import Window

from spectralmatch import ImageCollection, Moments, OverlapGraph


def _pair_expected(tiles, first, second):
    """numpy moments of both tiles over their jointly valid overlap pixels."""
    wa, wb = tiles.windows[first], tiles.windows[second]
    row0, row1 = max(wa.row_off, wb.row_off), min(wa.row_off + wa.height, wb.row_off + wb.height)
    col0, col1 = max(wa.col_off, wb.col_off), min(wa.col_off + wa.width, wb.col_off + wb.width)

    def cut(index, window):
        data = tiles.data_of(index)
        return data[
            :,
            row0 - window.row_off : row1 - window.row_off,
            col0 - window.col_off : col1 - window.col_off,
        ]

    a, b = cut(first, wa), cut(second, wb)
    joint = (a != tiles.nodata) & (b != tiles.nodata)
    return a, b, joint


def test_graph_of_two_by_two_layout(tiles):
    collection = ImageCollection(tiles.paths)
    graph = OverlapGraph.from_collection(collection)
    assert [(e.first, e.second) for e in graph.edges] == [
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 2),
        (1, 3),
        (2, 3),
    ]
    edge = graph.edges[0]
    a, b = collection.images[0].bounds, collection.images[1].bounds
    assert edge.bounds == (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    # 40 px x 120 px at 30 m
    assert (edge.bounds[2] - edge.bounds[0], edge.bounds[3] - edge.bounds[1]) == (1200.0, 3600.0)
    assert edge.other(0) == 1 and edge.other(1) == 0
    assert {(e.first, e.second) for e in graph.edges_of(3)} == {(0, 3), (1, 3), (2, 3)}
    assert graph.components() == [[0, 1, 2, 3]]


def test_overlap_windows_in_each_image(tiles):
    collection = ImageCollection(tiles.paths)
    graph = OverlapGraph.from_collection(collection)
    by_pair = {(e.first, e.second): e for e in graph.edges}
    # tiles 0 and 1 share truth columns 80..120 (full height)
    assert by_pair[0, 1].window_in(collection.images[0].grid) == Window(80, 0, 40, 120)
    assert by_pair[0, 1].window_in(collection.images[1].grid) == Window(0, 0, 40, 120)
    # the diagonal pair 0-3 shares the 40 x 40 truth block 80..120
    assert by_pair[0, 3].window_in(collection.images[0].grid) == Window(80, 80, 40, 40)
    assert by_pair[0, 3].window_in(collection.images[3].grid) == Window(0, 0, 40, 40)


def test_touching_images_do_not_overlap(tmp_path):
    data = np.ones((1, 10, 10), dtype=np.uint8)
    left = write_raster(tmp_path / "left.tif", data, transform=from_origin(0, 300, 30, 30))
    right = write_raster(tmp_path / "right.tif", data, transform=from_origin(300, 300, 30, 30))
    far = write_raster(tmp_path / "far.tif", data, transform=from_origin(9000, 300, 30, 30))
    graph = OverlapGraph.from_collection(ImageCollection([left, right, far]))
    assert graph.edges == []
    assert graph.components() == [[0], [1], [2]]


def test_components_are_largest_first(tmp_path):
    data = np.ones((1, 10, 10), dtype=np.uint8)
    paths = [
        write_raster(tmp_path / f"{name}.tif", data, transform=from_origin(x, 300, 30, 30))
        for name, x in [("a", 0), ("b", 5000), ("c", 150), ("d", 5150), ("e", 240)]
    ]
    graph = OverlapGraph.from_collection(ImageCollection(paths))
    assert graph.components() == [[0, 2, 4], [1, 3]]


def test_inner_window_snaps_and_clips(tmp_path):
    path = write_raster(
        tmp_path / "grid.tif",
        np.ones((1, 10, 10), dtype=np.uint8),
        transform=from_origin(0, 300, 30, 30),
    )
    image = ImageCollection([path]).images[0]
    # exact pixel edges, a hair off (snapped), partial pixels (excluded), outside (clipped)
    assert image.grid.inner_window((60.0, 150.0, 150.0, 270.0)) == Window(2, 1, 3, 4)
    assert image.grid.inner_window((60.0 + 1e-9, 150.0, 150.0 - 1e-9, 270.0)) == Window(2, 1, 3, 4)
    assert image.grid.inner_window((45.0, 150.0, 165.0, 270.0)) == Window(2, 1, 3, 4)
    assert image.grid.inner_window((-100.0, -100.0, 60.0, 1000.0)) == Window(0, 0, 2, 10)
    assert image.grid.inner_window((10.0, 150.0, 25.0, 270.0)) is None


@pytest.mark.parametrize("window_size", [1024, 48])
def test_pair_statistics_use_jointly_valid_pixels(tile_factory, window_size):
    tiles = tile_factory()
    # punch holes into the overlaps of two tiles, at different places
    rng = np.random.default_rng(4)
    for index in (0, 3):
        data = tiles.data_of(index)
        holes = rng.random(data.shape[1:]) < 0.2
        data[:, holes] = 0
        data[1, :10, :] = 0  # one band with its own nodata rows
        write_raster(
            tiles.paths[index],
            data,
            transform=ImageCollection([tiles.paths[index]]).images[0].transform,
            nodata=0,
        )
    collection = ImageCollection(tiles.paths)
    graph = OverlapGraph.from_collection(collection)
    statistics = measure_moments(collection, graph.edges, window_size=window_size, threads=2)
    assert statistics.names == tiles.names
    for pair in statistics.pairs:
        i, j = pair.edge.first, pair.edge.second
        a, b, joint = _pair_expected(tiles, i, j)
        expected_a, expected_b = Moments.from_array(a, joint), Moments.from_array(b, joint)
        np.testing.assert_array_equal(pair.first.count, joint.reshape(3, -1).sum(axis=1))
        np.testing.assert_array_equal(pair.first.count, pair.second.count)
        np.testing.assert_allclose(pair.first.mean, expected_a.mean, rtol=1e-12)
        np.testing.assert_allclose(pair.second.mean, expected_b.mean, rtol=1e-12)
        np.testing.assert_allclose(pair.first.m2, expected_a.m2, rtol=1e-9)
        np.testing.assert_allclose(pair.second.m2, expected_b.m2, rtol=1e-9)
        assert pair.of(i) is pair.first and pair.of(j) is pair.second
    counts = {(p.edge.first, p.edge.second): p.first.count for p in statistics.pairs}
    assert counts[0, 3][0] < 40 * 40 and counts[0, 3][0] > 0.5 * 40 * 40
    assert counts[1, 2][0] == 40 * 40  # untouched tiles: the full diagonal block
    for index, moments in enumerate(statistics.images):
        data = tiles.data_of(index)
        valid = data != 0
        np.testing.assert_array_equal(moments.count, valid.reshape(3, -1).sum(axis=1))
        np.testing.assert_allclose(
            moments.mean, [data[b][valid[b]].mean() for b in range(3)], rtol=1e-12
        )


def test_only_requested_whole_images_are_measured(tiles):
    collection = ImageCollection(tiles.paths)
    graph = OverlapGraph.from_collection(collection)
    edges = [e for e in graph.edges if (e.first, e.second) == (0, 1)]
    statistics = measure_moments(collection, edges, whole_images=[1], threads=1)
    assert statistics.images[0] is None and statistics.images[2] is None
    assert statistics.images[1].count[0] == (tiles.data_of(1)[0] != 0).sum()
    assert len(statistics.pairs) == 1 and statistics.pairs[0].first.count[0] > 0


def test_overlap_statistics_affine_maps_every_moment(tiles):
    collection = ImageCollection(tiles.paths)
    graph = OverlapGraph.from_collection(collection)
    statistics = measure_moments(collection, graph.edges, threads=1)
    gains = np.linspace(0.5, 1.5, 12).reshape(4, 3)
    offsets = np.linspace(-100, 100, 12).reshape(4, 3)
    mapped = statistics.affine(gains, offsets)
    for before, after in zip(statistics.pairs, mapped.pairs, strict=True):
        i, j = before.edge.first, before.edge.second
        np.testing.assert_allclose(after.first.mean, gains[i] * before.first.mean + offsets[i])
        np.testing.assert_allclose(after.second.std, gains[j] * before.second.std)
    np.testing.assert_allclose(
        mapped.images[2].mean, gains[2] * statistics.images[2].mean + offsets[2]
    )


def test_sample_data_graph(data_dir):
    collection = ImageCollection.from_paths(data_dir)
    graph = OverlapGraph.from_collection(collection)
    assert len(graph.edges) == 6
    statistics = measure_moments(collection, graph.edges, threads=2)
    # every pair of the 2 x 2 sample layout shares valid pixels
    assert all((pair.first.count > 100).all() for pair in statistics.pairs)
