"""Per-process state after ``os.fork()``: connections, pools and locks belong to the process that made them.

A forked child inherits copies of every lock (held ones stay held forever: the threads that held them
do not exist in the child), every SQLite connection (whose use in two processes corrupts the file) and
every socket. Objects registered here get their `_after_fork()` called in the child, right after the
fork and before any other thread exists, so they can drop what is not theirs and start afresh.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from typing import Protocol

__all__ = ["AfterFork", "register"]


class AfterFork(Protocol):
    def _after_fork(self) -> None:
        """Called in a forked child: replace locks, drop inherited connections (never close them)."""


_objects: weakref.WeakSet[AfterFork] = weakref.WeakSet()
_guard = threading.Lock()


def register(obj: AfterFork) -> None:
    """Call ``obj._after_fork()`` in every child forked from now on (for as long as `obj` lives)."""
    with _guard:
        _objects.add(obj)


def _in_child() -> None:
    global _guard
    _guard = threading.Lock()  # it may have been held by another thread of the parent
    for obj in list(_objects):
        with contextlib.suppress(Exception):  # one object's failure must not leave the others inherited
            obj._after_fork()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_in_child)
