"""Executors: who runs the tasks of a pass, one after another, in threads or in processes.

A task is a module-level function and one picklable item (an image or a group of its
windows in; small mergeable accumulators or a written file out); it changes nothing
shared. So any executor gives the same results, and a distributed one only has to map
a function over items: :class:`spectralmatch.engine.dask.DaskExecutor` does so on a
``dask.distributed`` Client (Dask is imported only when one is given).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor as FuturesExecutor
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar

from .. import _interrupt
from .._threads import Inherited
from .._typing import ExecutorName
from .._validation import Constraint
from ..errors import SpectralMatchError
from .base import Executor, progress_bar

if TYPE_CHECKING:
    from distributed import Client

T = TypeVar("T")
R = TypeVar("R")

EXECUTOR_NAMES: tuple[ExecutorName, ...] = ("serial", "threads", "processes")


class SerialExecutor(Executor):
    """Every task in this thread, one after another."""

    def map(
        self,
        function: Callable[[T], R],
        items: Sequence[T],
        *,
        progress: bool = False,
        label: str = "",
    ) -> list[R]:
        with progress_bar(len(items), progress, label) as bar:
            results: list[R] = []
            for item in items:
                results.append(function(item))
                bar.update()
            return results

    def __repr__(self) -> str:
        return "SerialExecutor()"


class _PoolExecutor(Executor):
    """Tasks on a pool from :mod:`concurrent.futures`, results in submission order.

    If the pass fails or is interrupted, the tasks not started are cancelled and the
    running ones stop at their next window (:mod:`spectralmatch._interrupt`).
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)

    def _pool(self, workers: int) -> tuple[FuturesExecutor, Any]:
        """A pool and the flag that stops its tasks."""
        raise NotImplementedError

    def _submit(self, pool: FuturesExecutor, flag: Any, function: Callable[[T], R], item: T):
        return pool.submit(function, item)

    def _check(self, function: Callable[[T], R], items: Sequence[T]) -> None:
        """Refuse, before anything runs, work the pool cannot take."""

    def map(
        self,
        function: Callable[[T], R],
        items: Sequence[T],
        *,
        progress: bool = False,
        label: str = "",
    ) -> list[R]:
        items = list(items)
        self._check(function, items)
        workers = min(self.workers, len(items))
        if workers <= 1:
            return SerialExecutor().map(function, items, progress=progress, label=label)
        pool, flag = self._pool(workers)
        with progress_bar(len(items), progress, label) as bar, pool:
            futures = [self._submit(pool, flag, function, item) for item in items]
            for future in futures:
                future.add_done_callback(lambda _: bar.update())
            try:
                return [future.result() for future in futures]
            except BaseException:
                flag.set()
                for future in futures:
                    future.cancel()
                raise

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workers={self.workers})"


class ThreadExecutor(_PoolExecutor):
    """Tasks on a thread pool (rasterio and numpy release the GIL): the default."""

    def _pool(self, workers: int) -> tuple[FuturesExecutor, Any]:
        return ThreadPoolExecutor(workers), threading.Event()

    def _submit(self, pool: FuturesExecutor, flag: Any, function: Callable[[T], R], item: T):
        # the caller's rasterio environment too: entered outside the main thread, it
        # holds for the caller's thread only
        return pool.submit(Inherited.from_caller(flag).run, function, item)


class ProcessExecutor(_PoolExecutor):
    """Tasks in worker processes (started fresh, so nothing of GDAL's state is shared).

    Everything a task carries must pickle: a mask or step defined by a lambda or in
    ``__main__`` of an interactive session does not; use threads for those.
    """

    def _pool(self, workers: int) -> tuple[FuturesExecutor, Any]:
        context = multiprocessing.get_context("spawn")
        flag = context.Event()
        pool = ProcessPoolExecutor(
            workers, mp_context=context, initializer=_interrupt.use_flag, initargs=(flag,)
        )
        return pool, flag

    def _check(self, function: Callable[[T], R], items: Sequence[T]) -> None:
        try:
            pickle.dumps((function, items))
        except (pickle.PicklingError, AttributeError, TypeError) as error:
            raise SpectralMatchError(
                f"the process executor cannot send this work to other processes ({error}); "
                "define masks and steps in an importable module, or use executor='threads'"
            ) from None


def is_dask_client(value: Any) -> TypeGuard[Client]:
    """Whether ``value`` is a ``dask.distributed`` Client, told without importing Dask."""
    return any(
        kind.__name__ == "Client" and kind.__module__.startswith("distributed.")
        for kind in type(value).__mro__
    )


class ExecutorLike(Constraint):
    """An executor's name, an :class:`Executor` or a ``dask.distributed`` Client."""

    def accepts(self, value: Any) -> bool:
        return value in EXECUTOR_NAMES or isinstance(value, Executor) or is_dask_client(value)

    def describe(self) -> str:
        return f"one of {', '.join(EXECUTOR_NAMES)}, an Executor or a dask.distributed Client"


def as_executor(
    executor: ExecutorName | Executor | Client | None, workers: int | None = None
) -> Executor:
    """An executor from a name (``"serial"``, ``"threads"``, ``"processes"``) and a
    number of workers, a :class:`~spectralmatch.engine.dask.DaskExecutor` from a
    ``dask.distributed`` Client, or the given executor itself (None: threads)."""
    if isinstance(executor, Executor):
        return executor
    if is_dask_client(executor):
        from .dask import DaskExecutor

        return DaskExecutor(executor)
    if executor in (None, "threads"):
        return ThreadExecutor(workers)
    if executor == "processes":
        return ProcessExecutor(workers)
    if executor == "serial":
        return SerialExecutor()
    raise SpectralMatchError(f"executor must be {ExecutorLike().describe()}, got {executor!r}")
