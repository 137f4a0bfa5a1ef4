"""Computing the next item of an iterator in a thread while the caller uses this one.

A write waits on GDAL's compression threads, and the reading and correcting of the next
window would otherwise wait for the write: one image written alone on two cores kept
them only three quarters busy (0.67 s at 1.5 cores for the last of nine images of
3000 x 3000 pixels).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

from ._threads import Inherited

T = TypeVar("T")

#: What the thread puts after the last item.
_END = object()


class ComputedAhead(Generic[T]):
    """``items``, each computed in a thread of its own while the caller has the one
    before (at most one waits, finished, for the caller).

    Use it as a context manager: leaving it, early or on an error, stops the thread
    after the item it is computing, and closes ``items``. An exception raised while
    computing an item is raised to the caller in its place. The thread checks the
    caller's interrupt flag and reads in its rasterio environment
    (:mod:`spectralmatch._threads`).

    Examples
    --------
    >>> with ComputedAhead(x * x for x in range(4)) as squares:
    ...     list(squares)
    [0, 1, 4, 9]
    """

    def __init__(self, items: Iterable[T]) -> None:
        self._items = iter(items)
        self._ready: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=Inherited.from_caller().run, args=(self._compute, None), daemon=True
        )

    def __enter__(self) -> Iterator[T]:
        self._thread.start()
        return self._handed()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _handed(self) -> Iterator[T]:
        while True:
            item, error = self._ready.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item

    def _compute(self, _: None) -> None:
        try:
            for item in self._items:
                if not self._put((item, None)):
                    return
            self._put((_END, None))
        except BaseException as error:  # handed to the caller, who raises it
            self._put((None, error))
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()

    def _put(self, entry: tuple) -> bool:
        """Hand ``entry`` over once the caller has room; False if it stopped first."""
        while not self._stop.is_set():
            try:
                self._ready.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False
