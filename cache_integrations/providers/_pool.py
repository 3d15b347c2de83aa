"""The pooled httpx clients of one provider, owned by the process and the event loop that made them.

Two hazards this guards against:

- ``fork()``. A child process inherits the parent's pooled sockets (two processes writing requests on
  one connection read each other's answers) and its locks in whatever state another thread held them.
  Every pool remembers the pid that made its clients; after a fork (``os.register_at_fork``, and a pid
  check on every access) the child drops them without closing or touching them, takes a fresh lock
  and opens its own connections.
- Event loops that come and go. An `httpx.AsyncClient` is bound to the loop that opened its
  connections, so there is one per loop; ``asyncio.run()`` per request would leave one client and its
  socket behind per loop. A small async-generator sentinel is started in each loop next to its
  client: ``loop.shutdown_asyncgens()`` (which ``asyncio.run`` calls before closing the loop) finalizes
  it, and its ``finally`` closes the client inside that loop. Clients of loops closed without that
  step are dropped on the next access from any loop.

A client given by the user (``http_client=...``) is the user's: it is returned as is, never closed.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

import httpx

__all__ = ["ClientPool"]

_POOLS: weakref.WeakSet[ClientPool] = weakref.WeakSet()


@dataclass(slots=True, eq=False)
class _LoopClient:
    client: httpx.AsyncClient
    sentinel: AsyncGenerator[None, None] | None = None
    released: bool = field(default=False)


async def _release_with_loop(
    pool_ref: weakref.ref[ClientPool], loop: object, entry: _LoopClient
) -> AsyncGenerator[None, None]:
    """Parked at its ``yield`` until the loop shuts its async generators down; then closes the client."""
    try:
        yield
    finally:
        if not entry.released:
            entry.released = True
            pool = pool_ref()
            if pool is not None:
                pool._forget(loop, entry)
            await entry.client.aclose()


def _finish(agen: AsyncGenerator[None, None]) -> None:
    """Run a released sentinel's ``finally`` synchronously (it awaits nothing once released)."""
    closing = agen.aclose()
    try:
        closing.send(None)
    except (StopIteration, RuntimeError):
        pass
    else:  # pragma: no cover - a released sentinel never suspends
        closing.close()


class ClientPool:
    """Lazily built sync client and per-loop async clients; see the module docstring."""

    def __init__(
        self,
        make_sync: Callable[[], httpx.Client],
        make_async: Callable[[], httpx.AsyncClient],
        *,
        user_sync: httpx.Client | None = None,
        user_async: httpx.AsyncClient | None = None,
    ) -> None:
        self._make_sync = make_sync
        self._make_async = make_async
        self._user_sync = user_sync
        self._user_async = user_async
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._sync: httpx.Client | None = None
        self._sync_finalizer: weakref.finalize[[], ClientPool] | None = None
        self._loops: dict[object, _LoopClient] = {}
        _POOLS.add(self)

    # -- fork ----------------------------------------------------------------------------------------

    def _check_pid(self) -> None:
        if self._pid != os.getpid():
            self._after_fork()

    def _after_fork(self) -> None:
        """In a forked child: forget the parent's clients and lock without touching them."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        if self._sync_finalizer is not None:
            self._sync_finalizer.detach()  # never close the parent's pool from the child
            self._sync_finalizer = None
        self._sync = None
        loops, self._loops = self._loops, {}
        for entry in loops.values():
            entry.released = True
            if entry.sentinel is not None:
                _finish(entry.sentinel)

    # -- sync ----------------------------------------------------------------------------------------

    def sync_client(self) -> httpx.Client:
        if self._user_sync is not None:
            return self._user_sync
        self._check_pid()
        client = self._sync
        if client is None:
            with self._lock:
                client = self._sync
                if client is None:
                    client = self._sync = self._make_sync()
                    # A chat model has no close(): release the pool's sockets when the provider goes.
                    self._sync_finalizer = weakref.finalize(self, client.close)
        return client

    def close(self) -> None:
        self._check_pid()
        with self._lock:
            client, self._sync = self._sync, None
            if self._sync_finalizer is not None:
                self._sync_finalizer.detach()
                self._sync_finalizer = None
        if client is not None:
            client.close()

    # -- async ---------------------------------------------------------------------------------------

    def async_client(self) -> httpx.AsyncClient:
        if self._user_async is not None:
            return self._user_async
        self._check_pid()
        loop = asyncio.get_running_loop()
        entry = self._loops.get(loop)
        if entry is not None and not entry.released:
            return entry.client
        with self._lock:
            self._sweep()
            entry = self._loops.get(loop)
            if entry is None:
                entry = self._loops[loop] = _LoopClient(self._make_async())
                new = True
            else:  # pragma: no cover - one loop runs in one thread, so only that thread adds its entry
                new = False
        if new:
            self._watch(loop, entry)
        return entry.client

    def _watch(self, loop: object, entry: _LoopClient) -> None:
        agen = _release_with_loop(weakref.ref(self), loop, entry)
        try:
            # Calling asend() registers the generator with the running loop (its firstiter hook);
            # the first step runs it to its yield without awaiting anything.
            agen.asend(None).send(None)
        except StopIteration:
            entry.sentinel = agen

    def _sweep(self) -> None:
        """Drop the clients of loops that were closed without shutting their async generators down."""
        for loop, entry in list(self._loops.items()):
            if isinstance(loop, asyncio.AbstractEventLoop) and loop.is_closed():
                del self._loops[loop]
                entry.released = True
                if entry.sentinel is not None:
                    _finish(entry.sentinel)

    def _forget(self, loop: object, entry: _LoopClient) -> None:
        if self._pid != os.getpid():
            return
        with self._lock:
            if self._loops.get(loop) is entry:
                del self._loops[loop]

    async def aclose(self) -> None:
        """Close the client of the running loop (and drop those of closed loops)."""
        self._check_pid()
        loop = asyncio.get_running_loop()
        with self._lock:
            self._sweep()
            entry = self._loops.pop(loop, None)
        if entry is not None and not entry.released:
            entry.released = True
            if entry.sentinel is not None:
                _finish(entry.sentinel)
            await entry.client.aclose()

    @property
    def async_clients(self) -> int:
        """How many per-loop async clients are open (for tests and diagnostics)."""
        return len(self._loops)


def _after_fork_in_child() -> None:
    for pool in list(_POOLS):
        pool._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
