"""The passes on a Dask cluster: :class:`DaskExecutor`, and the Clients it runs on.

Dask is imported here only, and only when used: ``import spectralmatch`` does not import
it, and the core install does not need it (``pip install "spectralmatch[dask]"`` does).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import SpectralMatchError
from .base import Executor, progress_bar

if TYPE_CHECKING:
    from distributed import Client

T = TypeVar("T")
R = TypeVar("R")

#: The kinds of the published ``dask_scheduler``: a scheduler's address, or a scheduler file.
SCHEDULER_KINDS = ("address", "file")

#: One Client per scheduler the published keywords named, kept for the session.
_CLIENTS: dict[tuple[str, str], Client] = {}


class DaskExecutor(Executor):
    """Tasks on the workers of a ``dask.distributed`` Client; results gathered on the client.

    The tasks are those of the local executors (one per image, or per group of an image's
    windows), so the results are the same, bit for bit: the statistics come back to the
    client and merge there, and each worker writes its outputs itself, atomically (a
    temporary file renamed into place) as a local run does.

    Parameters
    ----------
    client : distributed.Client
        A Client connected to the cluster's scheduler.

    Notes
    -----
    A worker opens the inputs and writes the outputs by their paths, so every worker must
    see them at the same paths as the client: a shared file system, or GDAL virtual paths
    (``/vsis3/``, ``/vsicurl/``, ``/vsiaz/``, ``/vsigs/``...) for the inputs. Nothing of the
    client's environment travels with the tasks: GDAL on each worker reads its credentials
    from its own environment variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_S3_ENDPOINT``; ``AZURE_STORAGE_ACCOUNT``
    with ``AZURE_STORAGE_ACCESS_KEY`` or ``AZURE_STORAGE_CONNECTION_STRING``;
    ``GOOGLE_APPLICATION_CREDENTIALS``; ``GDAL_HTTP_HEADERS``...), so set them where the
    workers start: export them before ``dask worker``, or pass
    ``LocalCluster(env={...})`` (the workers' ``env``), or set them in the Dask
    configuration's ``distributed.nanny.environ``.

    If the pass fails or is interrupted, the tasks not started are cancelled; the running
    ones finish their image (their outputs still appear whole or not at all).

    Examples
    --------
    >>> from distributed import Client, LocalCluster  # doctest: +SKIP
    >>> with LocalCluster(n_workers=2, threads_per_worker=1) as cluster:  # doctest: +SKIP
    ...     with Client(cluster) as client:
    ...         Mosaic(executor=client).fit_transform("data/", "matched/")
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self.workers = max(1, sum(client.nthreads().values()))

    def map(
        self,
        function: Callable[[T], R],
        items: Sequence[T],
        *,
        progress: bool = False,
        label: str = "",
    ) -> list[R]:
        from distributed import as_completed

        items = list(items)
        if not items:
            return []
        futures = self.client.map(function, items, pure=False)
        try:
            with progress_bar(len(items), progress, label) as bar:
                for _ in as_completed(futures):
                    bar.update()
            return list(self.client.gather(futures))
        except BaseException:
            self.client.cancel(futures)
            raise

    def __repr__(self) -> str:
        return f"DaskExecutor({self.client!r})"


def scheduler_executor(keyword: str, scheduler: tuple[str, str]) -> DaskExecutor:
    """A :class:`DaskExecutor` on the scheduler the published ``dask_scheduler`` names:
    ``("address", "tcp://HOST:PORT")`` or ``("file", path of a scheduler file)``; its
    Client is kept for the session and used again."""
    if scheduler not in _CLIENTS or _CLIENTS[scheduler].status != "running":
        _CLIENTS[scheduler] = _connect(keyword, *scheduler)
    return DaskExecutor(_CLIENTS[scheduler])


@contextlib.contextmanager
def cli_executor(scheduler: str) -> Iterator[DaskExecutor]:
    """A :class:`DaskExecutor` for the command line's ``--scheduler``: ``tcp://HOST:PORT``
    (any address Dask accepts) connects to a running scheduler, ``local:N`` starts a local
    cluster of N worker processes for the block; closed when the block ends."""
    distributed = _import_distributed("--scheduler")
    kind, _, count = scheduler.partition(":")
    if kind != "local":
        with _connect("--scheduler", "address", scheduler) as client:
            yield DaskExecutor(client)
        return
    if not count.isdigit() or int(count) < 1:
        raise SpectralMatchError(
            f"--scheduler {scheduler}: give local:N with N a positive number of workers"
        )
    with (
        distributed.LocalCluster(
            n_workers=int(count), threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield DaskExecutor(client)


def _connect(keyword: str, kind: str, target: str) -> Client:
    """A Client on a scheduler's address or scheduler file; an error naming ``keyword``
    and the scheduler when it cannot connect."""
    distributed = _import_distributed(keyword)
    target = target.strip()  # as the published package reads it
    if kind == "file" and not os.path.isfile(target):
        raise SpectralMatchError(f"{keyword}: no Dask scheduler file {target!r}")
    try:
        if kind == "file":
            return distributed.Client(scheduler_file=target)
        return distributed.Client(target)
    except (OSError, ValueError) as error:
        raise SpectralMatchError(
            f"{keyword}: cannot connect to the Dask scheduler {kind} {target!r} ({error})"
        ) from None


def _import_distributed(keyword: str) -> Any:
    try:
        import distributed
    except ImportError:
        raise SpectralMatchError(
            f"{keyword}: Dask is not installed; pip install 'spectralmatch[dask]'"
        ) from None
    return distributed
