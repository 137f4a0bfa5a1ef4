"""Running on a Dask cluster: the same tasks on worker processes, the same bytes out.

One LocalCluster of 2 worker processes serves the module; every run through it is
compared with the same run in local threads (2 workers, so the tasks are split alike).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import DATA_DIR, file_digest

from spectralmatch import Mosaic, align_rasters, global_regression
from spectralmatch.cli.main import main
from spectralmatch.engine.executors import as_executor
from spectralmatch.errors import SpectralMatchError, SpectralMatchWarning

distributed = pytest.importorskip(
    "distributed", reason="dask.distributed is not installed (pip install 'spectralmatch[dask]')"
)
dask_engine = pytest.importorskip("spectralmatch.engine.dask")


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client
        for kept in dask_engine._CLIENTS.values():
            kept.close()
        dask_engine._CLIENTS.clear()


def digests(paths) -> dict[str, str]:
    return {Path(path).name: file_digest(path) for path in paths}


def test_a_client_becomes_a_dask_executor(client):
    executor = as_executor(client)
    assert isinstance(executor, dask_engine.DaskExecutor)
    assert executor.workers == 2
    assert executor.map(abs, [-3, 2, -1]) == [3, 2, 1]


def test_mosaic_on_a_client_matches_the_threaded_run_bit_for_bit(client, tmp_path):
    local = Mosaic(threads=2).fit(DATA_DIR)
    local_outputs = local.transform(DATA_DIR, tmp_path / "local")
    remote = Mosaic(executor=client).fit(DATA_DIR)
    remote_outputs = remote.transform(DATA_DIR, tmp_path / "dask")
    assert digests(image.path for image in remote_outputs) == digests(
        image.path for image in local_outputs
    )
    compared = []
    for ours, theirs in zip(remote.steps_, local.steps_, strict=True):
        for name in ("gains_", "offsets_", "shifts_"):
            if hasattr(theirs, name):
                np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name))
                compared.append(name)
    assert sorted(compared) == ["gains_", "offsets_", "shifts_"]
    assert remote.reads_ == local.reads_


def test_fit_and_transform_take_the_client_for_one_call(client, tmp_path):
    """``fit(images, executor=client)`` and ``transform(..., executor=client)`` run that
    call on the cluster; the model keeps its own executor."""
    local = Mosaic().fit(DATA_DIR)
    local_outputs = local.transform(DATA_DIR, tmp_path / "local")
    remote = Mosaic().fit(DATA_DIR, executor=client)
    remote_outputs = remote.transform(DATA_DIR, tmp_path / "dask", executor=client)
    assert remote.executor == "threads" and "_call_executor" not in vars(remote)
    assert digests(image.path for image in remote_outputs) == digests(
        image.path for image in local_outputs
    )
    np.testing.assert_array_equal(remote.steps_[1].shifts_, local.steps_[1].shifts_)


def test_a_failing_task_raises_its_error_on_the_client(client):
    with pytest.raises(ValueError, match="'x'"):
        as_executor(client).map(int, ["1", "x", "3"])


def test_the_published_dask_keywords_run_on_the_scheduler(client, tmp_path):
    address = client.scheduler.address
    local = global_regression(DATA_DIR, tmp_path / "local", pif_method="entire", image_threads=2)
    remote = global_regression(
        DATA_DIR,
        tmp_path / "dask",
        pif_method="entire",
        concurrent_processing_backend="dask",
        dask_scheduler=("address", address),
    )
    assert digests(remote) == digests(local)
    scheduler_file = tmp_path / "scheduler.json"
    # what `dask scheduler --scheduler-file` writes, of which a Client reads the address
    scheduler_file.write_text(json.dumps({"type": "Scheduler", "address": address}))
    executor = dask_engine.scheduler_executor("dask_scheduler", ("file", str(scheduler_file)))
    assert executor.workers == 2


def test_an_operation_says_it_runs_here_not_on_the_cluster(client, tmp_path):
    dask = {"concurrent_processing_backend": "dask", "dask_scheduler": ("address", "tcp://x:1")}
    with pytest.warns(SpectralMatchWarning, match="align_rasters runs on this machine"):
        outputs = align_rasters(DATA_DIR, tmp_path / "aligned", **dask)
    assert len(outputs) == 4


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"concurrent_processing_backend": "dask"}, "give dask_scheduler"),
        ({"dask_scheduler": ("address", "tcp://127.0.0.1:1")}, "give both, or neither"),
        ({"dask_scheduler": "tcp://127.0.0.1:1"}, "must be \\('address'"),
        (
            {"concurrent_processing_backend": "dask", "dask_scheduler": ("address", " ")},
            "must be \\('address'",
        ),
        (
            {"concurrent_processing_backend": "dask", "dask_scheduler": ("file", "none.json")},
            "no Dask scheduler file 'none.json'",
        ),
    ],
)
def test_the_published_dask_keywords_say_what_is_missing(tmp_path, keywords, message):
    with pytest.raises(SpectralMatchError, match=message):
        global_regression(DATA_DIR, tmp_path / "out", pif_method="entire", **keywords)


def test_match_with_a_local_scheduler_writes_what_the_threads_write(tmp_path):
    runner = CliRunner()
    outputs = {}
    for name, options in (("threads", ["--threads", "2"]), ("dask", ["--scheduler", "local:2"])):
        result = runner.invoke(
            main, ["match", str(DATA_DIR), "-o", str(tmp_path / name), "-q", "--no-cache", *options]
        )
        assert result.exit_code == 0, result.output
        outputs[name] = digests(sorted((tmp_path / name).glob("*.tif")))
    assert len(outputs["dask"]) == 4
    assert outputs["dask"] == outputs["threads"]


def test_match_refuses_a_bad_local_scheduler(tmp_path):
    result = CliRunner().invoke(
        main, ["match", str(DATA_DIR), "-o", str(tmp_path / "out"), "--scheduler", "local:x"]
    )
    assert result.exit_code != 0
    assert "give local:N" in result.output
