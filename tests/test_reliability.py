"""Runs that are interrupted, killed, resumed or run twice at once never leave a wrong
or partial file under a final name (docs/reliability.md).

Every test here runs the real ``spectralmatch`` command in a subprocess on real tiles
(the sample tiles, enlarged so that a run lasts long enough to be interrupted).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import SAMPLE_TILES, file_digest, folder_listing

from spectralmatch import GlobalModel, Mosaic
from spectralmatch._interrupt import Interrupted
from spectralmatch.errors import SpectralMatchError
from spectralmatch.raster.files import TEMPORARY_PREFIX
from spectralmatch.raster.lock import folder_lock

#: Each sample tile enlarged by this factor per side: about 1100 pixels a side.
ENLARGE = 3


@pytest.fixture(scope="module")
def big_tiles(tmp_path_factory, data_dir) -> Path:
    """The sample tiles, each pixel repeated ENLARGE x ENLARGE (same georeferencing
    extent, smaller pixels): real texture, runs of a few seconds."""
    folder = tmp_path_factory.mktemp("big-tiles")
    for name in SAMPLE_TILES:
        with rasterio.open(data_dir / f"{name}.tif") as source:
            data, profile = source.read(), source.profile
        data = data.repeat(ENLARGE, axis=1).repeat(ENLARGE, axis=2)
        transform = source.transform * source.transform.scale(1 / ENLARGE)
        profile.update(width=data.shape[2], height=data.shape[1], transform=transform, tiled=True)
        with rasterio.open(folder / f"{name}.tif", "w", **profile) as target:
            target.write(data)
    return folder


def command(*args) -> list[str]:
    return [sys.executable, "-m", "spectralmatch.cli", *map(str, args)]


def match_args(inputs: Path, out: Path, cache: Path, *extra) -> list[str]:
    return command(
        "match", inputs, "-o", out, "--cache-dir", cache, "--threads", "2",
        "--window-size", "256", *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def reference(big_tiles, tmp_path_factory) -> dict[str, str]:
    """Digests of the outputs of an uninterrupted run."""
    root = tmp_path_factory.mktemp("reference")
    subprocess.run(
        match_args(big_tiles, root / "out", root / "cache", "--quiet"), check=True, timeout=300
    )
    return {name: file_digest(root / "out" / name) for name in folder_listing(root / "out")}


def start(args) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, process: subprocess.Popen, timeout: float = 120) -> bool:
    """Poll ``condition`` until it holds (True) or the process ends (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.005)
    raise AssertionError("timed out waiting for the run")


def temporaries(folder: Path) -> list[str]:
    return [name for name in folder_listing(folder) if name.startswith(TEMPORARY_PREFIX)]


def finals(folder: Path) -> list[str]:
    return [name for name in folder_listing(folder) if not name.startswith(TEMPORARY_PREFIX)]


def writing_started(folder: Path):
    return lambda: folder.is_dir() and bool(temporaries(folder))


def assert_complete_and_identical(folder: Path, reference: dict[str, str]) -> None:
    for name in finals(folder):
        assert file_digest(folder / name) == reference[name], f"{name} differs"


@pytest.mark.parametrize(
    ("signum", "extra"), [(signal.SIGINT, []), (signal.SIGTERM, []), (signal.SIGINT, ["--cog"])]
)
def test_a_signal_stops_the_run_within_the_phase_and_leaves_no_partial_file(
    big_tiles, reference, tmp_path, signum, extra
):
    out = tmp_path / "out"
    process = start(
        match_args(big_tiles, out, tmp_path / "cache", "--quiet", "--window-size", "64", *extra)
    )
    assert wait_for(writing_started(out), process), process.communicate()
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum
    assert stderr.strip().splitlines() == [
        f"spectralmatch: stopped by {signal.Signals(signum).name}; complete outputs were "
        "kept, partial ones removed"
    ]
    assert temporaries(out) == []
    # stopped within the writing phase: not every output was written
    assert len(finals(out)) < len(reference)
    if not extra:
        assert_complete_and_identical(out, reference)


def output_written(folder: Path, count: int):
    return lambda: folder.is_dir() and len(finals(folder)) >= count


@pytest.mark.parametrize("moment", ["fitting", "writing", "one written", "three written"])
def test_a_killed_run_leaves_only_complete_files_and_the_next_run_cleans_up(
    big_tiles, reference, tmp_path, moment
):
    out, cache = tmp_path / "out", tmp_path / "cache"
    process = start(match_args(big_tiles, out, cache, "--quiet"))
    conditions = {
        "fitting": lambda: cache.is_dir(),
        "writing": writing_started(out),
        "one written": output_written(out, 1),
        "three written": output_written(out, 3),
    }
    reached = wait_for(conditions[moment], process)
    process.kill()
    process.communicate(timeout=60)
    assert reached or process.returncode == 0  # a run that finished first is fine too
    assert_complete_and_identical(out, reference)
    subprocess.run(match_args(big_tiles, out, cache, "--quiet"), check=True, timeout=300)
    assert folder_listing(out) == sorted(reference)
    assert_complete_and_identical(out, reference)


def test_resume_keeps_verified_outputs_and_rewrites_the_others(big_tiles, reference, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    subprocess.run(match_args(big_tiles, out, cache, "--quiet"), check=True, timeout=300)
    kept, removed, truncated, touched = sorted(reference)
    (out / removed).unlink()
    with open(out / truncated, "r+b") as file:
        file.truncate(1000)
    # same size, one byte changed: only the checksum can tell
    data = bytearray((out / touched).read_bytes())
    data[-10] ^= 0xFF
    (out / touched).write_bytes(data)
    before = (out / kept).stat().st_mtime_ns
    subprocess.run(
        match_args(big_tiles, out, cache, "--quiet", "--resume"), check=True, timeout=300
    )
    assert (out / kept).stat().st_mtime_ns == before
    assert folder_listing(out) == sorted(reference)
    assert_complete_and_identical(out, reference)
    # other settings: another digest, so nothing is kept
    subprocess.run(
        match_args(big_tiles, out, cache, "--quiet", "--resume", "--output-dtype", "float32"),
        check=True,
        timeout=300,
    )
    for name in reference:
        with rasterio.open(out / name) as dataset:
            assert dataset.dtypes[0] == "float32"


def test_resume_needs_the_cache(tiles, tmp_path):
    model = Mosaic(steps=[GlobalModel()]).fit(tiles.paths)
    with pytest.raises(SpectralMatchError, match="resume needs the cache"):
        model.transform(tiles.paths, tmp_path / "out", resume=True)


def test_a_second_run_into_a_locked_folder_fails_and_the_first_is_intact(data_dir, tmp_path):
    out = tmp_path / "out"
    with folder_lock([out]):
        result = subprocess.run(
            command("match", data_dir, "-o", out, "--no-cache"),
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: {out.resolve()}: another spectralmatch run is writing there; wait for it "
        "to finish or choose another output folder"
    ]
    assert folder_listing(out) == []
    # released with the block: the next run goes through, and adds nothing but outputs
    subprocess.run(command("match", data_dir, "-o", out, "--no-cache", "-q"), check=True)
    assert folder_listing(out) == [f"{name}.tif" for name in SAMPLE_TILES]


def test_two_concurrent_runs_with_different_settings_cannot_mix(big_tiles, tmp_path):
    out = tmp_path / "out"
    first = start(match_args(big_tiles, out, tmp_path / "c1", "--no-local"))
    assert wait_for(writing_started(out), first)
    first.send_signal(signal.SIGSTOP)  # paused while writing, so the second meets it there
    try:
        second = subprocess.run(
            match_args(big_tiles, out, tmp_path / "c2", "--output-dtype", "float32"),
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        first.send_signal(signal.SIGCONT)
    first.communicate(timeout=300)
    assert first.returncode == 0
    assert second.returncode == 1 and "another spectralmatch run" in second.stderr
    for name in finals(out):
        with rasterio.open(out / name) as dataset:
            assert dataset.dtypes[0] == "uint16"  # every output is the first run's


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_outputs_and_cache_files_follow_the_umask(data_dir, tmp_path, umask):
    out, cache = tmp_path / "out", tmp_path / "cache"
    subprocess.run(
        ["/bin/sh", "-c", f'umask {umask:03o} && exec "$@"', "sh"]
        + command("match", data_dir, "-o", out, "--cache-dir", cache, "-q", "--save-model",
                  tmp_path / "model.json"),
        check=True,
        timeout=300,
    )  # fmt: skip
    expected = 0o666 & ~umask
    files = [out / f"{name}.tif" for name in SAMPLE_TILES] + [tmp_path / "model.json"]
    files += [path for path in cache.rglob("*") if path.is_file()]
    assert len(files) > len(SAMPLE_TILES) + 1
    for path in files:
        assert path.stat().st_mode & 0o777 == expected, path


def test_leftovers_of_a_killed_run_are_removed_by_the_next_run(data_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{TEMPORARY_PREFIX}0123abcd.tif").write_bytes(b"half")
    (out / f"{TEMPORARY_PREFIX}4567ef01").mkdir()
    (out / "keep.txt").write_text("not ours")
    subprocess.run(command("match", data_dir, "-o", out, "--no-cache", "-q"), check=True)
    assert folder_listing(out) == ["keep.txt"] + [f"{name}.tif" for name in SAMPLE_TILES]


def test_an_interrupt_in_python_stops_the_threads_and_cleans_up(tiles, tmp_path):
    """KeyboardInterrupt raised inside a task (as Ctrl-C would in the main thread)."""

    class Interrupting(GlobalModel):
        def transform_window(self, image, window, values, valid):
            if image.name == "tile_2":
                raise KeyboardInterrupt
            return super().transform_window(image, window, values, valid)

    model = Mosaic(steps=[Interrupting()], threads=2).fit(tiles.paths)
    with pytest.raises(KeyboardInterrupt):
        model.transform(tiles.paths, tmp_path / "out")
    assert temporaries(tmp_path / "out") == []
    for name in finals(tmp_path / "out"):
        with rasterio.open(tmp_path / "out" / name) as dataset:
            assert np.isfinite(dataset.read()).all()


def test_folder_lock_is_reentrant_in_one_process(tmp_path):
    with folder_lock([tmp_path]), folder_lock([tmp_path, tmp_path / "other"]):
        pass
    assert folder_listing(tmp_path) == ["other"]


def test_interrupted_survives_the_trip_back_from_a_worker_process():
    import pickle

    error = pickle.loads(pickle.dumps(Interrupted(signal.SIGTERM)))
    assert isinstance(error, Interrupted) and error.exit_code == 143


PROCESS_RUN = """
import sys
from spectralmatch import GlobalModel, Mosaic
from spectralmatch._interrupt import Interrupted
if __name__ == "__main__":
    model = Mosaic(steps=[GlobalModel()], executor="processes", threads=2, window_size=64)
    model.fit(sys.argv[1])
    try:
        model.transform(sys.argv[1], sys.argv[2])
    except KeyboardInterrupt:
        print("interrupted")
"""


def test_an_interrupt_stops_worker_processes_and_cleans_up(big_tiles, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(PROCESS_RUN)
    out = tmp_path / "out"
    process = start([sys.executable, script, big_tiles, out])
    assert wait_for(writing_started(out), process), process.communicate()
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert stdout.strip() == "interrupted", stderr
    assert temporaries(out) == []
    assert len(finals(out)) < len(SAMPLE_TILES)
