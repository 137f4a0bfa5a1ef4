"""Statistics cache: a second fit reads nothing; a changed or new image is read again."""

from __future__ import annotations

import os
import shutil

import numpy as np

from spectralmatch import BlockMap, GlobalModel, Image, ImageCollection, Mosaic
from spectralmatch.engine.cache import StatisticsCache
from spectralmatch.stats.requests import ImageMoments, Plan


def model(cache) -> Mosaic:
    return Mosaic(steps=[GlobalModel(), BlockMap(block_size=32)], cache=cache, threads=2)


def test_second_fit_reads_no_image_and_gives_the_same_model(tiles, tmp_path):
    first = model(tmp_path / "cache").fit(tiles.paths)
    assert all(count > 0 for count in first.reads_.values())
    second = model(tmp_path / "cache").fit(tiles.paths)
    assert second.reads_ == dict.fromkeys(tiles.names, 0)
    np.testing.assert_array_equal(first.steps_[0].gains_, second.steps_[0].gains_)
    np.testing.assert_array_equal(first.steps_[1].shifts_, second.steps_[1].shifts_)
    assert len(list((tmp_path / "cache").glob("*.npz"))) > 0


def test_without_cache_every_fit_reads(tiles, tmp_path):
    model(False).fit(tiles.paths)
    again = model(False).fit(tiles.paths)
    assert all(count > 0 for count in again.reads_.values())


def test_a_changed_file_is_read_again(tiles, tmp_path):
    model(tmp_path / "cache").fit(tiles.paths)
    changed = tiles.paths[2]
    stat = os.stat(changed)
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    refit = model(tmp_path / "cache").fit(tiles.paths)
    assert refit.reads_["tile_2"] > 0
    # the others are read only where they overlap the changed image
    untouched = model(False).fit(tiles.paths).reads_
    for name in ("tile_0", "tile_1", "tile_3"):
        assert refit.reads_[name] < untouched[name]


def test_adding_a_scene_reads_it_and_the_others_only_where_they_meet_it(tiles, tmp_path):
    three = tiles.paths[:3]
    model(tmp_path / "cache").fit(three)
    full = model(tmp_path / "cache").fit(tiles.paths)
    assert full.reads_["tile_3"] > 0
    separately = model(False).fit(tiles.paths)
    for name in ("tile_0", "tile_1", "tile_2"):
        assert full.reads_[name] < separately.reads_[name]
    np.testing.assert_allclose(full.steps_[0].gains_, separately.steps_[0].gains_, rtol=1e-12)


def test_masked_images_are_not_cached(tiles, tmp_path):
    cache = StatisticsCache(tmp_path / "cache")
    masked = Image(tiles.paths[0], mask=lambda values: values[0] > 1e9)
    plan = Plan.of([ImageMoments()])
    assert cache.whole_key(masked, plan) is None
    assert cache.whole_key(Image(tiles.paths[0]), plan) is not None
    images = ImageCollection([masked, *tiles.paths[1:]])
    model(tmp_path / "cache").fit(images)
    again = model(tmp_path / "cache").fit(
        ImageCollection(
            [Image(tiles.paths[0], mask=lambda values: values[0] > 1e9), *tiles.paths[1:]]
        )
    )
    assert again.reads_["tile_0"] > 0


def test_cli_caches_by_default_and_no_cache_reads(tiles, tmp_path):
    from click.testing import CliRunner

    from spectralmatch.cli.main import main

    runner = CliRunner()
    cache = tmp_path / "cli-cache"
    args = [
        "fit",
        str(tiles.folder),
        "--model",
        str(tmp_path / "m.json"),
        "--cache-dir",
        str(cache),
        "-q",
    ]
    assert runner.invoke(main, args).exit_code == 0
    entries = sorted(p.name for p in cache.glob("*.npz"))
    assert entries
    shutil.rmtree(cache)
    assert runner.invoke(main, [*args, "--no-cache"]).exit_code == 0
    assert not cache.exists()
