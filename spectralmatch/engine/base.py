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


def progress_bar(total: int, progress: bool, label: str) -> Any:
    """A tqdm bar of ``total`` tasks, hidden without ``progress``."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label, unit="task", disable=not progress, leave=False)
