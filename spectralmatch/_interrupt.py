"""Stopping a run promptly: a flag the tasks check between windows.

SIGINT (Ctrl-C) or SIGTERM reaches the main thread; the executor then sets the flag of
the pass it is running, and every task of that pass, in a thread or a worker process,
raises :class:`Interrupted` at its next window. So temporary files are removed and the
run stops within one window, not one phase. Any other failure of a task stops the
pass's other tasks the same way.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: The flag of the pass a worker process serves (set by its initializer).
_process_flag: Any = threading.Event()
#: The flag of the pass the current thread's task belongs to.
_thread = threading.local()


class Interrupted(KeyboardInterrupt):
    """The run was asked to stop (by ``signum``: SIGINT or SIGTERM)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    def __reduce__(self) -> tuple[type[Interrupted], tuple[int]]:
        # a worker process sends it back pickled: rebuild it from the signal number
        return type(self), (self.signum,)

    @property
    def exit_code(self) -> int:
        """The shell's code for death by this signal: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


def check_interrupted() -> None:
    """Raise :class:`Interrupted` if the pass this task belongs to was stopped."""
    flag = getattr(_thread, "flag", None) or _process_flag
    if flag.is_set():
        raise Interrupted()


def current_flag() -> Any:
    """The flag of the pass the current thread's task belongs to (None outside a task
    thread: then the process's flag is checked)."""
    return getattr(_thread, "flag", None)


def run_with_flag(flag: threading.Event, function: Callable[[T], R], item: T) -> R:
    """``function(item)`` in a pool thread, stopping at its next window once ``flag`` is set."""
    _thread.flag = flag
    try:
        return function(item)
    finally:
        _thread.flag = None


def use_flag(flag: Any) -> None:
    """Initializer of a worker process: check ``flag`` (an Event shared with the parent),
    and leave SIGINT to the parent, which sets the flag."""
    global _process_flag
    _process_flag = flag
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def raise_on_sigterm() -> None:
    """Make SIGTERM raise :class:`Interrupted` in the main thread, as SIGINT raises
    KeyboardInterrupt (call from the main thread)."""

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    signal.signal(signal.SIGTERM, handler)
