"""One algorithm run inside QGIS: the library's work on threads that stop at their next
window once the user cancels, progress and warnings to the Processing log, and the
library's errors as :class:`~qgis.core.QgsProcessingException`.

Imported by the algorithms only when they run (it imports the library).
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from qgis.core import QgsProcessingException, QgsProcessingFeedback
from rasterio.errors import NotGeoreferencedWarning

from spectralmatch._interrupt import run_with_flag
from spectralmatch.engine.base import Executor
from spectralmatch.errors import SpectralMatchError
from spectralmatch.raster.image import GDAL_ERRORS

T = TypeVar("T")
R = TypeVar("R")

#: Seconds between two looks at the feedback's cancel button.
POLL = 0.1

CANCELED = "canceled: complete outputs were kept, partial ones removed"


class Run:
    """The stop flag of one algorithm run, set when ``feedback`` is canceled.

    Every task of the run (and the run's own thread) checks the flag between windows
    (:mod:`spectralmatch._interrupt`), so a cancel stops the run within one window and
    the atomic writers remove what was not finished.
    """

    def __init__(self, feedback: QgsProcessingFeedback) -> None:
        self.feedback = feedback
        self.flag = threading.Event()

    def executor(self) -> Executor:
        """An executor for :class:`~spectralmatch.Mosaic` that runs this run's tasks."""
        return FeedbackExecutor(self)

    def call(self, function: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """``function(*args, **kwargs)`` on a thread that stops when the run is canceled."""
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(
                run_with_flag, self.flag, lambda _: function(*args, **kwargs), None
            )
            for _ in self.finished([future]):
                pass
            return future.result()

    def finished(self, futures: Sequence[Future]) -> Iterator[int]:
        """How many of ``futures`` are done, each time one finishes, until all are; sets
        the flag as soon as the feedback is canceled (the tasks then stop)."""
        pending = set(futures)
        while pending:
            if self.feedback.isCanceled():
                self.flag.set()
            _, pending = wait(pending, timeout=POLL)
            yield len(futures) - len(pending)


class FeedbackExecutor(Executor):
    """Tasks on a thread pool, as the default executor runs them, with this run's stop
    flag and progress shown on the run's feedback."""

    def __init__(self, run: Run, workers: int | None = None) -> None:
        self.run = run
        self.workers = max(1, workers or os.cpu_count() or 1)

    def map(
        self,
        function: Callable[[T], R],
        items: Sequence[T],
        *,
        progress: bool = False,
        label: str = "",
    ) -> list[R]:
        items = list(items)
        feedback = self.run.feedback
        feedback.setProgressText(label)
        with ThreadPoolExecutor(max(1, min(self.workers, len(items)))) as pool:
            futures = [pool.submit(run_with_flag, self.run.flag, function, i) for i in items]
            try:
                for done in self.run.finished(futures):
                    feedback.setProgress(100.0 * done / max(1, len(items)))
                return [future.result() for future in futures]
            except BaseException:
                self.run.flag.set()
                for future in futures:
                    future.cancel()
                raise


@contextlib.contextmanager
def reporting(feedback: QgsProcessingFeedback) -> Iterator[None]:
    """The library's warnings as Processing warnings; its errors, and a cancel, as a
    :class:`QgsProcessingException` carrying the library's message."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        feedback.pushWarning(f"Warning: {message}")

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            warnings.filterwarnings(
                "ignore", category=NotGeoreferencedWarning, module="rasterio.features"
            )
            yield
    except (SpectralMatchError, *GDAL_ERRORS) as error:
        raise QgsProcessingException(str(error)) from None
    except KeyboardInterrupt:
        raise QgsProcessingException(CANCELED) from None
