"""Fixtures for the emulator's own tests: a fake clock, an emulator, and in-process clients."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from cache_integrations.testing import Emulator, FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(clock: FakeClock) -> Emulator:
    return Emulator(clock=clock)


@pytest.fixture
def client(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(transport=emu.transport(), base_url="http://emulator") as c:
        yield c
