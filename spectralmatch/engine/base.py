"""What an executor is: :class:`Executor`, and the progress bar executors show."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Executor:
    """Runs ``function`` over items and returns the results in order.

    Subclass it and implement :meth:`map` to run passes elsewhere (a cluster, say).
    """

    #: Workers running at once (a hint for splitting images into several tasks).
    workers: int = 1

    def map(
        self,
        function: Callable[[T], R],
        items: Sequence[T],
        *,
        progress: bool = False,
        label: str = "",
    ) -> list[R]:
        raise NotImplementedError


class _NoBar:
    """What a hidden progress bar does: nothing."""

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        """Count ``n`` more tasks done (not shown)."""


def progress_bar(total: int, progress: bool, label: str) -> Any:
    """A tqdm bar of ``total`` tasks; without ``progress``, one that shows nothing (tqdm
    is not even imported: it and the package metadata it reads take 40 to 60 ms)."""
    if not progress:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label, unit="task", leave=False)
