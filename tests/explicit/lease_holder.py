"""A creator that takes a lease and dies without releasing it (run in a subprocess, then killed)."""

from __future__ import annotations

import os
import time

from cache_integrations.explicit import registry_from_spec


def hold_lease_and_hang(registry: str, namespace: str, key: str, ttl: float) -> None:
    """A creator that took the lease and then died without releasing it (the parent kills it)."""
    reg = registry_from_spec(registry)
    assert reg.acquire_lease(namespace, key, f"doomed-{os.getpid()}", ttl=ttl, now=time.time())
    print("lease held", flush=True)
    time.sleep(3600)
