"""The engine: executors give the same results, tasks are pure, passes measure what the
steps ask for, the cache follows the plan, and a failed transform changes nothing."""

from __future__ import annotations

import functools
import os
import pickle
import platform
import subprocess
import sys
import threading

import numpy as np
import pytest
import rasterio
from conftest import LAYOUT, file_digest, folder_listing, make_tiles, read_raster

from spectralmatch import (
    Adjuster,
    BlockGrid,
    BlockMap,
    GlobalModel,
    HistogramMatch,
    Image,
    ImageCollection,
    Mosaic,
    OverlapGraph,
    SpectralMatchError,
)
from spectralmatch.engine.cache import SUFFIX
from spectralmatch.engine.collect import StatisticsPass
from spectralmatch.engine.executors import (
    Executor,
    ProcessExecutor,
    SerialExecutor,
    ThreadExecutor,
    as_executor,
)
from spectralmatch.engine.passes import (
    JointTask,
    Measurement,
    MeasureTask,
    Partner,
    measure,
    measure_jointly,
    window_groups,
)
from spectralmatch.geo.grid import common_grid, offset_in
from spectralmatch.stats.requests import (
    BlockMoments,
    ImageHistogram,
    ImageMoments,
    OverlapCells,
    OverlapHistogram,
    OverlapMoments,
    Plan,
)

MOMENT_FIELDS = ("count", "mean", "m2", "minimum", "maximum")


# ---------------------------------------------------------------------- helpers


class RecordingExecutor(Executor):
    """Runs tasks in this thread by a list comprehension and records every call."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self.calls: list[tuple[str, str, list]] = []

    def map(self, function, items, *, progress=False, label=""):
        items = list(items)
        self.calls.append((function.__name__, label, items))
        return [function(item) for item in items]

    def sizes(self, function_name: str) -> list[int]:
        return [len(items) for name, _, items in self.calls if name == function_name]


class SquareRootScale(Adjuster):
    """A non-linear step: ``sqrt(x) * scale_`` per band, ``scale_`` the square root of
    the mean image mean; it cannot map statistics (no ``transform_statistics``)."""

    def __init__(self, *, bins: int = 64) -> None:
        self.bins = bins

    def requests(self, collection):
        return [ImageMoments(), ImageHistogram(self.bins)]

    def fit(self, statistics):
        means = np.array([moments.mean for moments in statistics.images])
        self.scale_ = np.sqrt(means.mean(axis=0))
        self.histogram_counts_ = np.array([h.count for h in statistics.image_histograms])
        return self

    def transform_window(self, image, window, values, valid):
        scale = self.scale_.astype(values.dtype)[:, None, None]
        return np.sqrt(np.maximum(values, 0)) * scale


class FailsOnNewImages(Adjuster):
    """An identity step that cannot solve images it was not fitted on."""

    def requests(self, collection):
        return [OverlapMoments()]

    def fit(self, statistics):
        self.n_pairs_ = len(statistics.pairs)
        return self

    def transform_window(self, image, window, values, valid):
        return values

    def transform_statistics(self, statistics):
        return statistics

    def fit_new(self, statistics, names):
        raise RuntimeError(f"cannot solve {', '.join(names)}")


def flat_statistics(statistics) -> dict[str, np.ndarray]:
    """Every array of an OverlapStatistics, by a readable key."""
    arrays: dict[str, np.ndarray] = {}

    def moments(key, value):
        for name in MOMENT_FIELDS:
            if getattr(value, name) is not None:
                arrays[f"{key}.{name}"] = getattr(value, name)

    for index, value in enumerate(statistics.images):
        if value is not None:
            moments(f"image{index}", value)
    for index, value in enumerate(statistics.image_histograms):
        if value is not None:
            for name, array in value.to_arrays().items():
                arrays[f"image_histogram{index}.{name}"] = array
    for pair in statistics.pairs:
        key = f"pair{pair.edge.first}-{pair.edge.second}"
        moments(f"{key}.first", pair.first)
        moments(f"{key}.second", pair.second)
        for k, (first, second) in enumerate(pair.blocks.values()):
            moments(f"{key}.grid{k}.first", first)
            moments(f"{key}.grid{k}.second", second)
        if pair.histograms is not None:
            for side, histogram in zip(("first", "second"), pair.histograms, strict=True):
                for name, array in histogram.to_arrays().items():
                    arrays[f"{key}.histogram.{side}.{name}"] = array
    return arrays


def slot_state(image: Image) -> dict:
    """The values held in an Image's slots (attributes and computed cached properties);
    reading them this way never computes anything."""
    state = {}
    for name in type(image).__slots__:
        if name == "__weakref__":
            continue
        try:
            state[name] = object.__getattribute__(image, name)
        except AttributeError:
            pass
    return state


def all_requests(collection, grid=None):
    grid = grid or BlockGrid.covering(collection.images, n_blocks=5)
    return [
        ImageMoments(),
        OverlapMoments(),
        BlockMoments(grid),
        ImageHistogram(128),
        OverlapHistogram(256),
    ]


# ---------------------------------------------------------------------- executors


def test_worker_threads_run_in_the_rasterio_environment_of_a_caller_off_the_main_thread():
    """rasterio.Env entered outside the main thread holds for that thread only; the
    pass's threads take it from the thread that runs the pass."""
    from rasterio.env import get_gdal_config

    seen: list = []

    def caller():
        with rasterio.Env(SPECTRALMATCH_TEST_OPTION="carried"):
            seen.extend(
                ThreadExecutor(2).map(
                    lambda _: get_gdal_config("SPECTRALMATCH_TEST_OPTION"), range(4)
                )
            )

    thread = threading.Thread(target=caller)
    thread.start()
    thread.join()
    assert seen == ["carried"] * 4
    assert get_gdal_config("SPECTRALMATCH_TEST_OPTION") is None


def test_executors_give_identical_statistics_on_the_sample_data(data_dir):
    collection = ImageCollection.from_paths(data_dir)
    edges = OverlapGraph.from_collection(collection).edges
    requests = all_requests(collection)
    results, reads = {}, {}
    for name, executor in [
        ("serial", SerialExecutor()),
        ("threads", ThreadExecutor(2)),
        ("processes", ProcessExecutor(2)),
    ]:
        statistics = StatisticsPass(128, executor).collect(collection, edges, requests)
        results[name] = flat_statistics(statistics)
        reads[name] = statistics.reads
    assert reads["threads"] == reads["processes"] == reads["serial"]
    assert all(count > 0 for count in reads["serial"].values())
    serial = results["serial"]
    # everything was measured: moments, 25 blocks per pair, histograms
    assert len(serial) > 100
    assert serial["pair0-1.grid0.first.count"].shape == (3, 25)
    assert serial["pair0-1.grid0.first.count"].sum() > 1000
    np.testing.assert_array_equal(
        serial["pair0-1.grid0.first.count"].sum(axis=1), serial["pair0-1.first.count"]
    )
    assert any(key.startswith("pair2-3.histogram.second") for key in serial)
    for name in ("threads", "processes"):
        assert results[name].keys() == serial.keys(), name
        for key, array in serial.items():
            np.testing.assert_array_equal(results[name][key], array, err_msg=f"{name} {key}")


def test_process_and_serial_mosaics_write_identical_pixels(data_dir, tmp_path):
    def run(executor, out):
        model = Mosaic(steps=[GlobalModel(), BlockMap(block_size=64)], executor=executor, threads=2)
        return model, model.fit_transform(data_dir, tmp_path / out)

    serial, serial_out = run("serial", "serial")
    processes, processes_out = run("processes", "processes")
    assert processes._executor().workers == 2
    np.testing.assert_array_equal(processes.steps_[0].gains_, serial.steps_[0].gains_)
    assert serial_out.names == processes_out.names == [f"tile_{i:02d}" for i in range(4)]
    for a, b, name in zip(serial_out, processes_out, serial_out.names, strict=True):
        pixels = read_raster(b.path)
        assert np.array_equal(read_raster(a.path), pixels), name
        # the model did change the image
        assert not np.array_equal(pixels, read_raster(data_dir / f"{name}.tif"))


def test_process_executor_refuses_a_lambda_mask_clearly(tiles):
    images = [Image(path, mask=lambda values: values[0] > 1e9) for path in tiles.paths]
    model = Mosaic(steps=[GlobalModel()], executor="processes", threads=2)
    with pytest.raises(SpectralMatchError) as error:
        model.fit(ImageCollection(images))
    message = str(error.value)
    assert "executor='threads'" in message and "importable module" in message
    assert not isinstance(error.value, pickle.PicklingError)
    assert not hasattr(model, "steps_")


def test_process_executor_refuses_a_lambda_mask_on_a_later_image_clearly(tiles):
    """Only the last image has an unpicklable mask: the error is still the clear one."""
    images = [Image(path) for path in tiles.paths[:3]]
    images.append(Image(tiles.paths[3], mask=lambda values: values[0] > 1e9))
    collection = ImageCollection(images)
    statistics_pass = StatisticsPass(64, ProcessExecutor(2))
    with pytest.raises(SpectralMatchError) as error:
        statistics_pass.collect(collection, [], [ImageMoments()])
    assert "executor='threads'" in str(error.value)


def test_as_executor_names_and_instances():
    assert isinstance(as_executor("serial"), SerialExecutor)
    threads, processes = as_executor(None, 3), as_executor("processes", 2)
    assert isinstance(threads, ThreadExecutor) and threads.workers == 3
    assert isinstance(processes, ProcessExecutor) and processes.workers == 2
    custom = RecordingExecutor()
    assert as_executor(custom, 8) is custom
    with pytest.raises(SpectralMatchError, match="serial, threads, processes"):
        as_executor("cluster")


def test_a_custom_executor_runs_both_passes(tiles, tmp_path):
    executor = RecordingExecutor()
    model = Mosaic(steps=[GlobalModel()], executor=executor)
    outputs = model.fit_transform(tiles.paths, tmp_path / "out")
    assert [(name, label) for name, label, _ in executor.calls] == [
        ("measure_jointly", "statistics"),
        ("write_corrected", "transform"),
    ]
    # the tiles share one grid, which one window covers: one statistics task reads them
    # all; then one write task per image
    assert executor.sizes("measure_jointly") == [1]
    assert executor.sizes("write_corrected") == [4]
    assert [image.name for image in executor.calls[0][2][0].images.values()] == tiles.names
    assert [task.path for task in executor.calls[1][2]] == [image.path for image in outputs]
    reference = Mosaic(steps=[GlobalModel()], executor="serial").fit(tiles.paths)
    np.testing.assert_array_equal(model.steps_[0].gains_, reference.steps_[0].gains_)
    assert model.reads_ == reference.reads_ and all(v > 0 for v in model.reads_.values())
    written = read_raster(outputs.images[1].path)
    assert written.shape == (3, 120, 120) and not np.array_equal(written, tiles.data_of(1))


# ---------------------------------------------------------------------- pure tasks


def test_statistics_pass_leaves_images_and_files_as_they_were(tiles):
    digests = [file_digest(path) for path in tiles.paths]
    listing = folder_listing(tiles.folder)
    collection = ImageCollection([Image(path) for path in tiles.paths])
    edges = OverlapGraph.from_collection(collection).edges
    before = [slot_state(image) for image in collection]
    assert all("_moments" not in state for state in before)
    statistics = StatisticsPass(48, ThreadExecutor(2)).collect(
        collection, edges, all_requests(collection)
    )
    after = [slot_state(image) for image in collection]
    for image, old, new in zip(collection, before, after, strict=True):
        assert new.keys() == old.keys(), image.name
        assert "_moments" not in new and "footprint" not in new
        for key in old:
            assert new[key] == old[key], (image.name, key)
    assert [file_digest(path) for path in tiles.paths] == digests
    assert folder_listing(tiles.folder) == listing
    # the statistics were really measured, and the image computes its own on demand
    for index, image in enumerate(collection):
        expected = tiles.valid_of(index).reshape(3, -1).sum(axis=1)
        np.testing.assert_array_equal(statistics.images[index].count, expected)
        np.testing.assert_array_equal(image.statistics().count, expected)
        assert "_moments" in slot_state(image)


def test_window_groups_split_and_merge_to_the_same_measurement(tiles):
    collection = ImageCollection(tiles.paths)
    edges = OverlapGraph.from_collection(collection).edges
    plan = Plan.of(all_requests(collection))
    image = collection.images[0]
    windows = list(image.windows(32))
    assert len(windows) == 16
    groups = window_groups(windows, 3)
    assert [len(group) for group in groups] == [5, 6, 5]
    assert [window for group in groups for window in group] == windows
    partners = [
        Partner(edge, edge.other(0), collection.images[edge.other(0)])
        for edge in edges
        if 0 in (edge.first, edge.second)
    ]
    assert len(partners) == 3

    def task(part):
        return MeasureTask(image, 0, part, partners, True, plan)

    one = measure(task(windows))
    merged = functools.reduce(Measurement.merge, [measure(task(group)) for group in groups])
    assert merged.index == one.index == 0
    assert merged.reads == one.reads and merged.reads[0] == 16
    valid = tiles.valid_of(0)
    np.testing.assert_array_equal(one.whole.count, valid.reshape(3, -1).sum(axis=1))
    for name in MOMENT_FIELDS:
        np.testing.assert_allclose(
            getattr(merged.whole, name), getattr(one.whole, name), rtol=1e-12
        )
    assert merged.pairs.keys() == one.pairs.keys() == {p.edge for p in partners}
    for edge in one.pairs:
        for name in ("count", "mean", "m2"):
            np.testing.assert_allclose(
                getattr(merged.pairs[edge], name), getattr(one.pairs[edge], name), rtol=1e-12
            )
        for grid, blocks in one.blocks[edge].items():
            for name in ("count", "mean", "m2"):
                np.testing.assert_allclose(
                    getattr(merged.blocks[edge][grid], name),
                    getattr(blocks, name),
                    rtol=1e-12,
                    atol=1e-9,
                )
        for key, array in one.histograms[edge].to_arrays().items():
            np.testing.assert_array_equal(merged.histograms[edge].to_arrays()[key], array)
    for key, array in one.whole_histogram.to_arrays().items():
        np.testing.assert_array_equal(merged.whole_histogram.to_arrays()[key], array)


def assert_same_moments(found, expected, what):
    for name in MOMENT_FIELDS:
        ours, theirs = getattr(found, name), getattr(expected, name)
        assert (ours is None) == (theirs is None), (what, name)
        if ours is not None:
            np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-6, err_msg=f"{what} {name}")


def test_a_band_task_carries_the_overlaps_and_images_of_its_band_only(data_dir):
    from rasterio.windows import Window

    from spectralmatch.engine.collect import _band_task
    from spectralmatch.geo.grid import intersect

    collection = ImageCollection.from_paths(data_dir)
    edges = OverlapGraph.from_collection(collection).edges
    grid = common_grid([image.grid for image in collection])
    overlaps = {edge: edge.window_in(grid) for edge in edges}
    plan = Plan.of(all_requests(collection))
    whole = set(range(len(collection)))
    carried, fewest = set(), len(collection)
    for top in range(0, grid.height, 40):
        band = Window(0, top, grid.width, min(40, grid.height - top))
        task = _band_task(collection, grid, [band], overlaps, whole, plan, None)
        meets = {
            i
            for i, image in enumerate(collection)
            if intersect(band, Window(*offset_in(grid, image.grid), image.width, image.height))
        }
        assert set(task.images) == meets and task.whole == meets
        assert task.edges == [e for e in edges if intersect(band, overlaps[e])]
        carried |= set(task.edges)
        fewest = min(fewest, len(task.images))
    assert carried == set(edges) and 0 < fewest < len(collection)


def test_joint_and_image_by_image_tasks_measure_the_same_pixels(data_dir):
    """On one pixel grid every pixel is read once and serves both sides of its overlaps;
    image by image (images on different grids), each task reads its partners' validity
    again. Both count the same pixels, whatever the windows."""
    collection = ImageCollection.from_paths(data_dir)
    edges = OverlapGraph.from_collection(collection).edges
    plan = Plan.of([*all_requests(collection), OverlapCells(90.0)])
    grid = common_grid([image.grid for image in collection])
    assert grid is not None and grid.shape > collection.images[0].grid.shape
    task = JointTask(
        dict(enumerate(collection.images)),
        grid,
        list(grid.windows(100)),
        edges,
        frozenset(range(len(collection))),
        plan,
    )
    for joint in measure_jointly(task):
        index = joint.index
        image = collection.images[index]
        partners = [Partner(e, e.other(index), collection.images[e.other(index)]) for e in edges]
        partners = [p for p in partners if index in (p.edge.first, p.edge.second)]
        alone = measure(MeasureTask(image, index, list(image.windows(64)), partners, True, plan))
        assert_same_moments(joint.whole, alone.whole, f"image {index}")
        assert joint.pairs.keys() == alone.pairs.keys() and len(joint.pairs) == 3
        for edge, moments in alone.pairs.items():
            assert moments.count.min() > 1000
            assert_same_moments(joint.pairs[edge], moments, f"{index} {edge}")
            assert_same_moments(
                joint.cells[edge].full(), alone.cells[edge].full(), f"{index} {edge} cells"
            )
            for grid_, blocks in alone.blocks[edge].items():
                assert_same_moments(joint.blocks[edge][grid_], blocks, f"{index} {edge} blocks")
            for name, array in alone.histograms[edge].to_arrays().items():
                np.testing.assert_array_equal(joint.histograms[edge].to_arrays()[name], array)


def test_an_image_is_measured_in_one_task_per_row_of_windows(tiles):
    executor = RecordingExecutor(workers=2)
    collection = ImageCollection([tiles.paths[0]])
    statistics = StatisticsPass(64, executor).collect(collection, [], [ImageMoments()])
    assert executor.sizes("measure_jointly") == [2]
    tasks = executor.calls[0][2]
    assert [len(task.windows) for task in tasks] == [2, 2]
    assert [list(task.images) for task in tasks] == [[0], [0]]
    assert statistics.reads == {"tile_0": 4}
    data, valid = tiles.data_of(0), tiles.valid_of(0)
    np.testing.assert_array_equal(statistics.images[0].count, valid.reshape(3, -1).sum(axis=1))
    np.testing.assert_allclose(
        statistics.images[0].mean, [data[b][valid[b]].mean() for b in range(3)], rtol=1e-12
    )


def test_the_bands_with_the_most_to_measure_are_handed_over_first(tiles):
    """The bands across rows 80 to 120, where the top and bottom tiles overlap, read four
    images and measure six overlaps: they go to the workers first, so that the workers
    finish together; the statistics are those of one band for the whole mosaic."""
    collection = ImageCollection(tiles.paths)
    edges = OverlapGraph.from_collection(collection).edges
    executor = RecordingExecutor(workers=2)
    requests = all_requests(collection)
    banded = StatisticsPass(32, executor).collect(collection, edges, requests)
    (tasks,) = [items for name, _, items in executor.calls if name == "measure_jointly"]
    bands = [(int(t.windows[0].row_off), int(t.windows[0].height)) for t in tasks]
    across = [top < 120 and top + height > 80 for top, height in bands]
    assert len(bands) > 4 and 0 < sum(across) < len(bands)
    assert across == sorted(across, reverse=True), bands
    whole = StatisticsPass(1024).collect(collection, edges, requests)
    for ours, theirs in zip(banded.images, whole.images, strict=True):
        assert_same_moments(ours, theirs, "image")
    for ours, theirs in zip(banded.pairs, whole.pairs, strict=True):
        assert_same_moments(ours.first, theirs.first, "pair")
        assert_same_moments(ours.second, theirs.second, "pair")


# ---------------------------------------------------------------------- requests


def test_plan_dedupes_requests_and_takes_the_largest_bins(tiles):
    collection = ImageCollection(tiles.paths)
    grid = BlockGrid.covering(collection.images, n_blocks=4)
    same_grid = BlockGrid.covering(ImageCollection(tiles.paths).images, n_blocks=4)
    assert same_grid == grid and same_grid is not grid
    plan = Plan.of(
        [
            OverlapHistogram(bins=1024),
            OverlapHistogram(bins=1024),
            BlockMoments(grid),
            BlockMoments(same_grid),
            ImageHistogram(64),
            ImageHistogram(512),
            OverlapHistogram(bins=256),
        ]
    )
    assert plan.grids == (grid,)
    assert plan.overlap_bins == 1024
    assert plan.image_bins == 512
    assert plan.overlaps and not plan.image_moments and plan.whole_images
    assert Plan.of([OverlapMoments()]) == Plan(overlaps=True)
    assert Plan.of([]) == Plan() and not Plan().whole_images
    other = BlockGrid.covering(collection.images, n_blocks=6)
    assert Plan.of([BlockMoments(grid), BlockMoments(other)]).grids == (grid, other)
    with pytest.raises(TypeError, match="not a statistics request"):
        Plan.of([ImageMoments(), "moments"])
    with pytest.raises(ValueError, match="bins"):
        OverlapHistogram(bins=1)


def test_block_moments_are_kept_near_each_overlap_and_given_over_the_whole_grid(tiles):
    collection = ImageCollection(tiles.paths)
    edges = OverlapGraph.from_collection(collection).edges
    grid = BlockGrid.covering(collection.images, n_blocks=24)
    statistics = StatisticsPass(1024, SerialExecutor()).collect(
        collection, edges, [BlockMoments(grid)]
    )
    for pair in statistics.pairs:
        near = grid.blocks_near(pair.edge.bounds)
        assert len(near) < grid.size / 2  # what is kept does not grow with the mosaic
        for index, kept in zip(
            (pair.edge.first, pair.edge.second), pair.near_blocks[grid], strict=True
        ):
            whole = pair.blocks_of(index, grid)
            assert whole.count.shape == (3, grid.size) and kept.count.shape == (3, len(near))
            for name in ("count", "mean", "m2"):
                np.testing.assert_array_equal(getattr(whole, name)[:, near], getattr(kept, name))
                assert not np.delete(getattr(whole, name), near, axis=1).any()
            np.testing.assert_array_equal(whole.count.sum(axis=1), pair.of(index).count)


def test_select_returns_only_what_was_asked(tiles):
    collection = ImageCollection(tiles.paths)
    edges = OverlapGraph.from_collection(collection).edges
    grid = BlockGrid.covering(collection.images, n_blocks=4)
    statistics = StatisticsPass(1024, SerialExecutor()).collect(
        collection, edges, all_requests(collection, grid)
    )
    assert all(pair.blocks and pair.histograms is not None for pair in statistics.pairs)
    assert all(histogram is not None for histogram in statistics.image_histograms)

    overlaps = statistics.select([OverlapMoments()])
    assert len(overlaps.pairs) == 6
    assert all(pair.blocks == {} and pair.histograms is None for pair in overlaps.pairs)
    assert overlaps.images == [None] * 4 and overlaps.image_histograms == [None] * 4
    np.testing.assert_array_equal(overlaps.pairs[0].first.mean, statistics.pairs[0].first.mean)
    with pytest.raises(KeyError, match="OverlapHistogram"):
        overlaps.pairs[0].histogram_of(0)

    blocks = statistics.select([BlockMoments(grid)])
    assert all(list(pair.blocks) == [grid] and pair.histograms is None for pair in blocks.pairs)
    assert blocks.images == [None] * 4
    assert blocks.pairs[0].blocks_of(0, grid).count.shape == (3, 16)

    images = statistics.select([ImageMoments()])
    assert images.pairs == [] and images.image_histograms == [None] * 4
    assert [m.count[0] for m in images.images] == [m.count[0] for m in statistics.images]

    histograms = statistics.select([OverlapHistogram(256), ImageHistogram(128)])
    assert histograms.images == [None] * 4
    assert all(pair.blocks == {} for pair in histograms.pairs)
    assert histograms.pairs[0].histogram_of(1).count[0] == statistics.pairs[0].second.count[0]
    assert histograms.image_histograms[2].count[0] == statistics.images[2].count[0]


# ---------------------------------------------------------------------- passes


def test_a_step_after_a_non_linear_step_is_fitted_on_a_second_pass(tile_factory, tmp_path):
    tiles = tile_factory(dtype="float32", nodata=0)
    executor = RecordingExecutor()
    chain = Mosaic(pif=None, steps=[SquareRootScale(), GlobalModel()], executor=executor).fit(
        tiles.paths
    )
    # two passes: the first measures what both steps ask for, the second (through the
    # fitted first step) only what GlobalModel asks for
    assert executor.sizes("measure_jointly") == [1, 1]
    first_pass, second_pass = executor.calls[0][2], executor.calls[1][2]
    assert first_pass[0].plan == Plan(image_moments=True, image_bins=64, overlaps=True)
    assert first_pass[0].correct is None
    assert second_pass[0].plan == Plan(image_moments=True, overlaps=True)
    assert second_pass[0].correct is not None
    single = Mosaic(pif=None, steps=[GlobalModel()], executor="serial").fit(tiles.paths)
    for name in tiles.names:
        assert chain.reads_[name] > single.reads_[name] > 0
    # the first step was handed the histograms it asked for, of every valid pixel
    np.testing.assert_array_equal(
        chain.steps_[0].histogram_counts_,
        [tiles.valid_of(i).reshape(3, -1).sum(axis=1) for i in range(4)],
    )

    # the same GlobalModel, fitted on the files the first step writes
    first = Mosaic(pif=None, steps=[SquareRootScale()], executor="serial").fit(tiles.paths)
    np.testing.assert_allclose(first.steps_[0].scale_, chain.steps_[0].scale_, rtol=1e-12)
    written = first.transform(tiles.paths, tmp_path / "sqrt", working_dtype="float64")
    for index, image in enumerate(written):
        valid = tiles.valid_of(index)
        expected = np.sqrt(tiles.data_of(index)) * first.steps_[0].scale_[:, None, None]
        np.testing.assert_allclose(read_raster(image.path)[valid], expected[valid], rtol=1e-6)
    on_files = Mosaic(pif=None, steps=[GlobalModel()], executor="serial").fit(written)
    np.testing.assert_allclose(chain.steps_[1].gains_, on_files.steps_[0].gains_, rtol=1e-3)
    np.testing.assert_allclose(
        chain.steps_[1].offsets_,
        on_files.steps_[0].offsets_,
        rtol=1e-3,
        atol=1e-3 * np.abs(on_files.steps_[0].offsets_).max(),
    )
    # and not the one fitted on the raw tiles
    assert np.abs(chain.steps_[1].gains_ / single.steps_[0].gains_ - 1).max() > 0.02


# ---------------------------------------------------------------------- failed transform


def test_a_failed_new_image_solve_leaves_the_model_as_it_was(tiles, tmp_path):
    fitted = tiles.paths[:3]
    model = Mosaic(steps=[GlobalModel(), FailsOnNewImages()], executor="serial").fit(fitted)
    step = model.steps_[0]
    images, names = list(model.images_), list(step.images_)
    gains, offsets = step.gains_.copy(), step.offsets_.copy()
    assert len(images) == 3 and names == tiles.names[:3] and gains.shape == (3, 3)
    for attempt in range(2):
        with pytest.raises(RuntimeError, match="cannot solve tile_3"):
            model.transform([tiles.paths[3]], tmp_path / f"new{attempt}")
        assert model.steps_[0] is step
        assert model.images_ == images and len(model.images_) == 3
        assert step.images_ == names
        np.testing.assert_array_equal(step.gains_, gains)
        np.testing.assert_array_equal(step.offsets_, offsets)
        assert folder_listing(tmp_path / f"new{attempt}") == []
    # the fitted images are still transformed, by the unchanged gains and offsets
    outputs = model.transform(fitted, tmp_path / "fitted")
    assert model.images_ == images
    for index, image in enumerate(outputs):
        data = tiles.data_of(index).astype(np.float64)
        valid = tiles.valid_of(index)
        expected = gains[index][:, None, None] * data + offsets[index][:, None, None]
        difference = np.abs(read_raster(image.path).astype(np.float64) - np.rint(expected))
        assert difference[valid].max() <= 1
        assert difference[valid].mean() < 0.01


@pytest.mark.parametrize("failure", ["creation_option", "folder_is_a_file"])
def test_a_failed_write_leaves_the_model_as_it_was(tiles, tmp_path, failure):
    model = Mosaic(steps=[GlobalModel()], executor="serial").fit(tiles.paths[:3])
    images = list(model.images_)
    step = model.steps_[0]
    gains = step.gains_.copy()
    out = tmp_path / "out"
    out.mkdir()
    if failure == "creation_option":
        # GDAL refuses tiles that are not multiples of 16, after the scene was solved
        kwargs = {"outputs": [out / "tile_3.tif"], "blockxsize": 100, "blockysize": 100}
        error = Exception
    else:
        (out / "file").write_text("not a folder")
        kwargs = {"outputs": [out / "file" / "tile_3.tif"]}
        error = OSError
    with pytest.raises(error):
        model.transform([tiles.paths[3]], **kwargs)
    assert model.images_ == images and len(model.images_) == 3
    assert model.steps_[0] is step and step.images_ == tiles.names[:3]
    np.testing.assert_array_equal(step.gains_, gains)
    assert folder_listing(out) == ([] if failure == "creation_option" else ["file"])
    # a transform that can write takes the new scene in
    written = model.transform([tiles.paths[3]], outputs=[out / "tile_3.tif"])
    assert len(model.images_) == 4 and model.steps_[0].images_ == tiles.names
    assert model.steps_[0].gains_.shape == (4, 3)
    np.testing.assert_array_equal(model.steps_[0].gains_[:3], gains)
    assert read_raster(written.images[0].path).shape == (3, 120, 120)


# ---------------------------------------------------------------------- cache


def test_cache_entries_follow_the_plan(tiles, tmp_path):
    cache = tmp_path / "cache"

    def fit(*steps):
        return Mosaic(pif=None, steps=list(steps), cache=cache, executor="serial").fit(tiles.paths)

    first = fit(GlobalModel())
    assert all(count > 0 for count in first.reads_.values())
    entries = len(list(cache.glob(f"*{SUFFIX}")))
    assert entries > 0
    again = fit(GlobalModel())
    assert again.reads_ == dict.fromkeys(tiles.names, 0)
    np.testing.assert_array_equal(again.steps_[0].gains_, first.steps_[0].gains_)
    # overlap histograms were not in those entries: the overlaps are read again
    with_histograms = fit(GlobalModel(), HistogramMatch())
    assert all(count > 0 for count in with_histograms.reads_.values())
    assert len(list(cache.glob(f"*{SUFFIX}"))) > entries
    np.testing.assert_array_equal(with_histograms.steps_[0].gains_, first.steps_[0].gains_)
    # the same plan again: nothing is read, the same model comes out
    repeated = fit(GlobalModel(), HistogramMatch())
    assert repeated.reads_ == dict.fromkeys(tiles.names, 0)
    np.testing.assert_array_equal(
        np.asarray(repeated.steps_[1].values_), np.asarray(with_histograms.steps_[1].values_)
    )
    np.testing.assert_array_equal(
        np.asarray(repeated.steps_[1].knots_), np.asarray(with_histograms.steps_[1].knots_)
    )


def test_the_model_and_the_outputs_do_not_depend_on_the_number_of_workers(tile_factory, tmp_path):
    """The statistics tasks are rows of windows over the mosaic whatever the number of
    workers, and their parts merge in task order: one worker, two or four give the same
    numbers and the same bytes."""
    tiles = tile_factory(dtype="uint16")
    digests, models = [], []
    for threads in (1, 2, 4):
        model = Mosaic(threads=threads, window_size=64)
        outputs = model.fit_transform(tiles.paths, tmp_path / f"out{threads}")
        digests.append([file_digest(image.path) for image in outputs])
        models.append(model)
    assert digests[0] == digests[1] == digests[2]
    for model in models[1:]:
        for ours, theirs in zip(model.steps_, models[0].steps_, strict=True):
            for name in ("gains_", "offsets_", "shifts_"):
                if hasattr(theirs, name):
                    np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name))


def test_a_call_refuses_an_executor_it_cannot_use(tiles):
    with pytest.raises(SpectralMatchError, match="executor must be one of serial, threads"):
        Mosaic().fit(tiles.paths, executor="cluster")


def test_scenes_far_apart_are_measured_window_by_window_only_where_they_are(truth, tmp_path):
    """Two pairs of tiles 3,000 km apart share one 30 m grid, a mosaic 100,000 px wide:
    the tasks get only the few windows the tiles meet."""
    near = make_tiles(tmp_path / "far", truth, windows=LAYOUT[:2], names=["a0", "a1"])
    far = make_tiles(
        tmp_path / "far", truth, windows=LAYOUT[:2], names=["b0", "b1"],
        grid_offset=(3_000_000.0, 0.0),
    )  # fmt: skip
    collection = ImageCollection.from_paths(near.paths + far.paths)
    edges = OverlapGraph.from_collection(collection).edges
    executor = RecordingExecutor()
    statistics = StatisticsPass(64, executor).collect(collection, edges, [ImageMoments()])
    (tasks,) = [items for name, _, items in executor.calls if name == "measure_jointly"]
    assert tasks[0].grid.width > 100_000
    assert sum(len(task.windows) for task in tasks) == 4 * 2 * 2  # 200 x 120 px: 4 x 2 each
    expected = (
        Mosaic(window_size=1024, executor="serial")
        ._statistics_pass()
        .collect(collection, edges, [ImageMoments()])
    )
    for ours, theirs in zip(statistics.images, expected.images, strict=True):
        assert_same_moments(ours, theirs, "image")


def test_statistics_bands_end_between_tile_rows_where_they_can():
    """Band edges avoid cutting the images' blocks: an edge inside a block makes both
    bands' tasks decode it."""
    from spectralmatch.engine.collect import _bands, _TileRows

    tiles = [_TileRows(0, 3000, 256), _TileRows(2250, 3000, 256), _TileRows(0, 5250, 1)]
    bands = _bands(5250, tiles, 1024)
    assert bands[0][0] == 0 and bands[-1][1] == 5250
    assert all(a[1] == b[0] for a, b in zip(bands[:-1], bands[1:], strict=True))  # no gap
    assert all(768 <= bottom - top <= 1024 for top, bottom in bands[:-1])
    cuts = [sum(rows.cut_at(bottom) for rows in tiles) for _, bottom in bands[:-1]]
    regular = [sum(rows.cut_at(row) for rows in tiles) for row in range(1024, 5250, 1024)]
    assert sum(cuts) < sum(regular) and sum(cuts) == 0


def test_where_many_images_overlap_the_windows_are_narrower(tiles, tmp_path):
    """A window reads every image it meets: over a stack of eight dates, windows are half
    as wide, so that memory stays that of four full windows; the statistics are the
    same."""
    from spectralmatch.engine.collect import FULL_WINDOWS

    stack = [tmp_path / f"date_{k}.tif" for k in range(8)]
    for path in stack:
        path.write_bytes(tiles.paths[0].read_bytes())
    collection = ImageCollection.from_paths(stack)
    edges = OverlapGraph.from_collection(collection).edges
    executor = RecordingExecutor()
    narrow = StatisticsPass(128, executor).collect(collection, edges, [OverlapMoments()])
    (tasks,) = [items for name, _, items in executor.calls if name == "measure_jointly"]
    # 128 * 4 / 8 = 64 px wide (the last one to the edge of the 120 px tiles)
    assert {int(w.width) for task in tasks for w in task.windows} == {128 * FULL_WINDOWS // 8, 56}
    wide = StatisticsPass(1024).collect(collection, edges, [OverlapMoments()])
    for ours, theirs in zip(narrow.pairs, wide.pairs, strict=True):
        assert_same_moments(ours.first, theirs.first, "pair")


_ARENA_PROBE = """
import ctypes, sys, threading
from spectralmatch.cli.main import main
if sys.argv[1] == "command":
    main(["fit", "--help"], standalone_mode=False)  # the command bounds them before a pass
start = threading.Barrier(8)
def churn():
    start.wait()
    for _ in range(200):
        del [bytearray(4096) for _ in range(20)][:]
threads = [threading.Thread(target=churn) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
ctypes.CDLL(None).malloc_stats()
"""


_CORES = os.cpu_count() or 1


def _malloc_stats(probe: str, mode: str, environment: dict[str, str]) -> str:
    """What glibc's ``malloc_stats`` printed at the end of ``probe``, run in a fresh
    interpreter in ``mode`` with ``environment`` and none of this process's ``MALLOC_*``
    settings (a Dask cluster started by an earlier test leaves one behind)."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    run = subprocess.run(
        [sys.executable, "-c", probe, mode],
        capture_output=True,
        text=True,
        env={**inherited, **environment},
        check=True,
    )
    return run.stderr


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc arenas are glibc's")
@pytest.mark.parametrize(
    ("mode", "environment", "bound"),
    [
        ("command", {}, max(2, _CORES)),
        ("library", {}, 8 * _CORES),  # glibc's own: importing the library changes nothing
        ("command", {"MALLOC_ARENA_MAX": "5"}, 5),  # the user's bound is kept
    ],
)
def test_the_command_bounds_the_malloc_arenas_unless_the_user_did(mode, environment, bound):
    stats = _malloc_stats(_ARENA_PROBE, mode, environment)
    made = sum(line.startswith("Arena ") for line in stats.splitlines())
    assert made == min(9, bound)  # eight threads and the main one allocate at once


_FREED_WINDOW_PROBE = """
import ctypes, sys
from spectralmatch.cli.main import main
if sys.argv[1] == "command":
    main(["fit", "--help"], standalone_mode=False)
window = bytearray(20 << 20)
del window
ctypes.CDLL(None).malloc_stats()
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc's thresholds are glibc's")
@pytest.mark.parametrize(
    ("mode", "environment", "kept"),
    [
        ("command", {}, True),
        ("library", {}, False),  # glibc's own: mapped apart and given back when freed
        ("command", {"MALLOC_TRIM_THRESHOLD_": "131072"}, False),  # the user's setting
    ],
)
def test_the_command_keeps_freed_windows_in_the_heap_unless_the_user_said(mode, environment, kept):
    stats = _malloc_stats(_FREED_WINDOW_PROBE, mode, environment)
    # the main arena's first figure: what it holds from the system
    held = int(stats.split("system bytes")[1].split("=")[1].split()[0])
    assert (held >= 20 << 20) == kept


@pytest.mark.parametrize("executor", [SerialExecutor(), ThreadExecutor(2)], ids=repr)
def test_a_pass_shows_its_progress_only_when_asked(executor, capsys):
    """With ``progress``, a bar named after the pass counts its tasks on stderr; without,
    nothing is written."""
    assert executor.map(abs, [-1, -2, -3], progress=False, label="statistics") == [1, 2, 3]
    assert capsys.readouterr().err == ""
    assert executor.map(abs, [-1, -2, -3], progress=True, label="statistics") == [1, 2, 3]
    shown = capsys.readouterr().err
    assert "statistics" in shown and "/3 " in shown
