"""The published package's engine keywords, which every one of its functions takes.

``debug_logs``, ``cache``, ``image_threads``, ``io_threads``, ``tile_threads``,
``concurrent_processing_backend``, ``dask_scheduler`` and ``resume_from_outputs`` tune
how the published package runs (GDAL's cache, its thread pools, Dask). Here they are
checked and mapped to our engine in one place: the number of workers, threads or
processes, DEBUG logging on the ``spectralmatch`` logger; values that cannot be honoured
fail with an error naming the keyword, and settings that change nothing here say so in a
warning.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal, TypeVar

from attrs import fields, frozen

from ..errors import SpectralMatchError, SpectralMatchWarning

LOGGER = logging.getLogger("spectralmatch")

Threads = Literal["cpu"] | int | None
BACKENDS = ("process_pool", "thread", "process", "dask")
ResumeMode = Literal["no", "yes", "validate"]
RESUME_MODES = ("no", "yes", "validate")


def keyword_error(keyword: str, problem: str) -> SpectralMatchError:
    """The error for a value of ``keyword`` that cannot be used."""
    return SpectralMatchError(f"{keyword}: {problem}")


def warn_no_effect(keyword: str, value: Any, default: Any, why: str) -> None:
    """Say that ``keyword`` changes nothing here, when it was changed from ``default``."""
    if value != default:
        warnings.warn(
            f"{keyword}={value!r} has no effect: {why}", SpectralMatchWarning, stacklevel=4
        )


@frozen
class EngineKeywords:
    """The published engine keywords, checked on construction."""

    debug_logs: bool = False
    cache: float | None = None
    image_threads: Threads = None
    io_threads: Threads = None
    tile_threads: Threads = None
    concurrent_processing_backend: str = "process_pool"
    dask_scheduler: tuple[str, str] | None = None
    resume_from_outputs: str = "no"

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.debug_logs, bool):
            raise keyword_error("debug_logs", f"must be True or False, got {self.debug_logs!r}")
        if self.concurrent_processing_backend not in BACKENDS:
            raise keyword_error(
                "concurrent_processing_backend",
                f"must be one of {', '.join(BACKENDS)}, got {self.concurrent_processing_backend!r}",
            )
        self._check_dask()
        if self.resume_from_outputs not in RESUME_MODES:
            raise keyword_error(
                "resume_from_outputs",
                f"must be one of {', '.join(RESUME_MODES)}, got {self.resume_from_outputs!r}",
            )
        if self.cache is not None:
            warn_no_effect(
                "cache", self.cache, None, "GDAL's block cache is left at its own setting"
            )
        self.workers()

    def workers(self) -> int | None:
        """The largest of the published thread counts (``"cpu"``: the number of CPUs),
        else None (our engine's default: every CPU)."""
        counts = []
        for keyword in ("image_threads", "io_threads", "tile_threads"):
            value = getattr(self, keyword)
            if value == "cpu":
                counts.append(os.cpu_count() or 1)
            elif isinstance(value, int) and not isinstance(value, bool) and value > 0:
                counts.append(value)
            elif value is not None:
                raise keyword_error(
                    keyword, f"must be 'cpu', a positive int or None, got {value!r}"
                )
        return max(counts, default=None)

    def _check_dask(self) -> None:
        """The ``"dask"`` backend needs a scheduler; a scheduler needs the ``"dask"`` backend."""
        scheduler = self.dask_scheduler
        if scheduler is not None and not (
            isinstance(scheduler, tuple)
            and len(scheduler) == 2
            and scheduler[0] in ("address", "file")
            and isinstance(scheduler[1], str)
            and scheduler[1].strip()
        ):
            raise keyword_error(
                "dask_scheduler",
                f"must be ('address', 'tcp://HOST:PORT') or ('file', path of a scheduler "
                f"file), got {scheduler!r}",
            )
        if self.concurrent_processing_backend == "dask" and scheduler is None:
            raise keyword_error(
                "concurrent_processing_backend",
                "'dask' runs on a running Dask scheduler: give dask_scheduler=('address', "
                "'tcp://HOST:PORT') or ('file', path of a scheduler file)",
            )
        if scheduler is not None and self.concurrent_processing_backend != "dask":
            raise keyword_error(
                "dask_scheduler",
                "is used with concurrent_processing_backend='dask'; give both, or neither",
            )

    def executor(self, workers: int | None) -> Any:
        """Who runs the work: a Dask executor on ``dask_scheduler`` for the ``"dask"``
        backend; else ``"serial"`` for one worker, ``"processes"`` for the published
        ``"process"`` backend, and ``"threads"`` (``"process_pool"``, the published
        default, runs its image work in threads)."""
        if self.dask_scheduler is not None:
            from .dask import scheduler_executor

            return scheduler_executor("dask_scheduler", self.dask_scheduler)
        if workers == 1:
            return "serial"
        return "processes" if self.concurrent_processing_backend == "process" else "threads"

    def refuse_resume(self, function: str) -> None:
        """For functions that cannot resume yet: an error if resuming was asked for."""
        if self.resume_from_outputs != "no":
            raise keyword_error(
                "resume_from_outputs",
                f"{function} cannot resume yet; run it again with 'no' (its outputs are "
                "written atomically, so an interrupted run left no partial file)",
            )

    @contextlib.contextmanager
    def logging(self) -> Iterator[None]:
        """The ``spectralmatch`` logger at DEBUG while the block runs, with ``debug_logs``."""
        previous = LOGGER.level
        if self.debug_logs:
            LOGGER.setLevel(logging.DEBUG)
        try:
            yield
        finally:
            LOGGER.setLevel(previous)


#: The names of the published engine keywords.
ENGINE_KEYWORDS = tuple(field.name for field in fields(EngineKeywords))

R = TypeVar("R")


def takes_engine_keywords(function: Callable[..., R]) -> Callable[..., R]:
    """Let ``function`` (an operation that works image by image) take the published
    engine keywords as well: they are checked and ``debug_logs`` turns on DEBUG logging
    for the call. The ones ``function`` declares itself (``resume_from_outputs``,
    ``image_threads``) are passed on to it, checked; of the others, the thread counts and
    the backend change nothing (the work is read and written window by window in one
    pass; ``"dask"`` says so in a warning), and ``resume_from_outputs`` other than
    ``"no"`` is refused."""
    declared = set(inspect.signature(function).parameters) & set(ENGINE_KEYWORDS)

    @functools.wraps(function)
    def wrapper(*args: Any, **keywords: Any) -> R:
        given = {name: keywords.pop(name) for name in ENGINE_KEYWORDS if name in keywords}
        engine = EngineKeywords(**given)
        if "resume_from_outputs" not in declared:
            engine.refuse_resume(function.__name__)
        passed = {name: value for name, value in given.items() if name in declared}
        if engine.dask_scheduler is not None and "dask_scheduler" not in declared:
            warnings.warn(
                f"concurrent_processing_backend='dask': {function.__name__} runs on this "
                "machine, not on the Dask cluster",
                SpectralMatchWarning,
                stacklevel=2,
            )
        with engine.logging():
            LOGGER.debug("%s: %s", function.__name__, {**keywords, **given})
            return function(*args, **keywords, **passed)

    return wrapper
