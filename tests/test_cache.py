"""Statistics cache: a second fit reads nothing; a changed or new image is read again; a bad
entry is ignored with a warning and rebuilt; entries get the permissions of the umask."""

from __future__ import annotations

import json
import os
import shutil
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import paint
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.windows import Window

from spectralmatch import BlockMap, GlobalModel, Image, ImageCollection, Mosaic
from spectralmatch.engine.cache import SUFFIX, StatisticsCache, decode_entry, encode_entry
from spectralmatch.errors import SpectralMatchWarning
from spectralmatch.stats.requests import ImageMoments, Plan


def model(cache) -> Mosaic:
    # 32 px windows: what is read is told window by window, so a refit that reads an
    # image only where it meets another reads fewer windows than a whole fit
    return Mosaic(
        steps=[GlobalModel(), BlockMap(block_size=32)], cache=cache, threads=2, window_size=32
    )


def assert_same_model(fitted: Mosaic, expected: Mosaic) -> None:
    np.testing.assert_array_equal(fitted.steps_[0].gains_, expected.steps_[0].gains_)
    np.testing.assert_array_equal(fitted.steps_[0].offsets_, expected.steps_[0].offsets_)
    np.testing.assert_array_equal(fitted.steps_[1].shifts_, expected.steps_[1].shifts_)


def test_second_fit_reads_no_image_and_gives_the_same_model(tiles, tmp_path):
    first = model(tmp_path / "cache").fit(tiles.paths)
    assert all(count > 0 for count in first.reads_.values())
    second = model(tmp_path / "cache").fit(tiles.paths)
    assert second.reads_ == dict.fromkeys(tiles.names, 0)
    np.testing.assert_array_equal(first.steps_[0].gains_, second.steps_[0].gains_)
    np.testing.assert_array_equal(first.steps_[1].shifts_, second.steps_[1].shifts_)
    assert len(list((tmp_path / "cache").glob(f"*{SUFFIX}"))) > 0


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
    entries = sorted(p.name for p in cache.glob(f"*{SUFFIX}"))
    assert entries
    shutil.rmtree(cache)
    assert runner.invoke(main, [*args, "--no-cache"]).exit_code == 0
    assert not cache.exists()


# ---------------------------------------------------------------------- integrity


def test_an_edit_with_its_modification_time_set_back_is_read_again(tiles, tmp_path):
    before_edit = model(tmp_path / "cache").fit(tiles.paths)
    edited = tiles.paths[2]
    before = os.stat(edited)
    paint(edited, Window(40, 0, 60, 60), lambda pixels: pixels * 1.3)  # meets tiles 0 and 1
    os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(edited)
    # what a size-and-mtime key would see: nothing changed
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )
    refit = model(tmp_path / "cache").fit(tiles.paths)
    assert refit.reads_["tile_2"] > 0
    fresh = model(False).fit(tiles.paths)
    assert_same_model(refit, fresh)
    assert not np.allclose(fresh.steps_[0].gains_, before_edit.steps_[0].gains_)


def pair_entries(folder: Path) -> list[Path]:
    """The cache entries that hold one image's side of an overlap."""
    found = []
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        if "pair.mean" in decode_entry(path.read_bytes())[1]:
            found.append(path)
    return found


def truncate(target: Path, other: Path) -> None:
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])


def empty(target: Path, other: Path) -> None:
    target.write_bytes(b"")


def swap(target: Path, other: Path) -> None:
    """``other``'s entry (good, and with a checksum of its own) under ``target``'s name."""
    target.write_bytes(other.read_bytes())


def foreign(target: Path, other: Path) -> None:
    """Laid out as an entry (the same key, array names and shapes), random values, and
    no checksum."""
    rng = np.random.default_rng(1)
    header, arrays = decode_entry(target.read_bytes())
    shaped = {name: rng.random(array.shape) for name, array in arrays.items()}
    specs = [[name, array.dtype.str, list(array.shape)] for name, array in shaped.items()]
    text = json.dumps({"key": header["key"], "arrays": specs}).encode()
    data = b"".join(array.tobytes() for array in shaped.values())
    target.write_bytes(len(text).to_bytes(8, "little") + text + data)


def alter(target: Path, other: Path) -> None:
    """One mean changed, everything else (the checksum too) kept: laid out as an entry."""
    header, arrays = decode_entry(target.read_bytes())
    arrays["pair.mean"] = arrays["pair.mean"] + 1.0
    target.write_bytes(encode_entry(header["key"], arrays, header["checksum"]))


def random_bytes(target: Path, other: Path) -> None:
    target.write_bytes(np.random.default_rng(2).bytes(target.stat().st_size))


@pytest.mark.parametrize(
    "corrupt, reason",
    [
        (truncate, "cannot be read"),
        (empty, "cannot be read"),
        (swap, "stored under another key"),
        (foreign, "has no checksum"),
        (alter, "does not match its checksum"),
        (random_bytes, "cannot be read"),
    ],
)
def test_a_bad_entry_is_ignored_with_a_warning_and_rebuilt(tiles, tmp_path, corrupt, reason):
    folder = tmp_path / "cache"
    model(folder).fit(tiles.paths)
    target, other = pair_entries(folder)[:2]
    corrupt(target, other)
    with pytest.warns(SpectralMatchWarning) as caught:
        repaired = model(folder).fit(tiles.paths)
    (message,) = [str(w.message) for w in caught if w.category is SpectralMatchWarning]
    assert message.startswith(f"{target}: ") and reason in message
    assert message.endswith("ignored and rebuilt")
    # one overlap measured again: the bad entry's image, and its partner (for its validity)
    assert sum(count > 0 for count in repaired.reads_.values()) == 2
    assert_same_model(repaired, model(False).fit(tiles.paths))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpectralMatchWarning)
        again = model(folder).fit(tiles.paths)
    assert again.reads_ == dict.fromkeys(tiles.names, 0)
    assert_same_model(again, repaired)


def test_any_damage_to_an_entry_is_detected_or_harmless(tiles, tmp_path):
    """Truncated anywhere or with bytes overwritten anywhere, an entry either loads as it
    was stored (the damage hit bytes no reader uses) or is discarded with a warning."""
    cache = StatisticsCache(tmp_path / "cache")
    image = Image(tiles.paths[1])
    key = cache.whole_key(image, Plan.of([ImageMoments()]))
    cache.store(key, {"whole": image.statistics()})
    path = cache.folder / key.file_name
    good = path.read_bytes()

    @settings(max_examples=300, deadline=None, database=None)
    @given(
        st.integers(0, len(good)),
        st.lists(st.tuples(st.integers(0, len(good) - 1), st.integers(0, 255)), max_size=4),
    )
    def check(length, overwrites):
        damaged = bytearray(good[:length])
        for position, value in overwrites:
            if position < length:
                damaged[position] = value
        path.write_bytes(bytes(damaged))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = cache.load(key)
        if loaded is None:
            (warning,) = caught
            assert warning.category is SpectralMatchWarning
            assert str(warning.message).startswith(f"{path}: ")
            assert not path.exists()
        else:
            assert not caught
            for name in ("count", "mean", "m2", "minimum", "maximum"):
                stored = getattr(image.statistics(), name)
                np.testing.assert_array_equal(getattr(loaded["whole"], name), stored)

    check()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_entries_get_the_permissions_of_the_umask(tiles, tmp_path, umask, mode):
    folder = tmp_path / "cache"
    previous = os.umask(umask)
    try:
        model(folder).fit(tiles.paths)
    finally:
        os.umask(previous)
    entries = list(folder.iterdir())
    assert entries and all(path.suffix == SUFFIX for path in entries)  # no temporary left
    assert {stat.S_IMODE(path.stat().st_mode) for path in entries} == {mode}
