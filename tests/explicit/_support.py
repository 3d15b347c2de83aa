"""Helpers for the fault tests: models over the emulator, lost answers, foreign caches, a Redis to kill."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cache_integrations.langchain import ChatGemini
from cache_integrations.testing import Emulator, FakeClock

BASE_URL = "http://emulator/v1beta"
API_KEY = "gemini-test-key-0123456789"
DOC = "\n".join(
    f"Section {i}: unit {i} grew revenue by {i * 3} percent; the audit committee reviewed contract {1000 + i}."
    for i in range(250)
)
SYSTEM = "Answer strictly from the annual report. Quote section numbers."


def chat_gemini(emu: Emulator, clock: FakeClock | None = None, *, transport: Any = None, **kwargs: Any) -> ChatGemini:
    """A ChatGemini served by `emu` in-process (or through `transport`, which wraps it)."""
    transport = transport if transport is not None else emu.transport()
    kwargs.setdefault("cache_registry", "memory")
    llm = ChatGemini(
        api_key=kwargs.pop("api_key", API_KEY),
        base_url=BASE_URL,
        http_client=httpx.Client(transport=transport),
        http_async_client=httpx.AsyncClient(transport=transport),
        **kwargs,
    )
    if clock is not None:
        llm.cache_manager.clock = clock.time
    return llm


def prompt(tag: str = "") -> list[tuple[str, str]]:
    return [("system", f"{SYSTEM}{tag}\n{DOC}"), ("human", "What did unit 3 do?")]


def requests_to(emu: Emulator, method: str, suffix: str = "/cachedContents") -> int:
    return sum(1 for r in emu.requests if r.method == method and r.path.endswith(suffix))


class LoseCreationAnswers(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Hands every request to the emulator, but the answer to the next `times` cache creations is
    lost after the emulator processed them: the client sees `error` (a read timeout, a dropped
    connection) exactly as if the network had failed on the way back."""

    def __init__(self, emu: Emulator, error: type[httpx.TransportError], times: int = 1) -> None:
        self.inner = emu.transport()
        self.error = error
        self.times = times

    def _lose(self, request: httpx.Request) -> bool:
        if request.method == "POST" and request.url.path.endswith("/cachedContents") and self.times > 0:
            self.times -= 1
            return True
        return False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if self._lose(request):
            response.close()
            raise self.error("the answer was lost on the way back", request=request)
        return response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if self._lose(request):
            await response.aclose()
            raise self.error("the answer was lost on the way back", request=request)
        return response


def create_foreign_cache(emu: Emulator, display_name: str | None, text: str = DOC) -> str:
    """A cache someone else made with the same key, straight through the REST API; returns its name."""
    body: dict[str, Any] = {
        "model": "models/gemini-2.5-flash",
        "contents": [{"role": "user", "parts": [{"text": text}]}],
        "ttl": "3600s",
    }
    if display_name is not None:
        body["displayName"] = display_name
    with httpx.Client(transport=emu.transport()) as client:
        resp = client.post(f"{BASE_URL}/cachedContents", json=body, headers={"x-goog-api-key": API_KEY})
    resp.raise_for_status()
    return str(resp.json()["name"])


class RedisServer:
    """A redis-server of the test's own, on a fixed port, that the test can stop and start again."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run `make test` (it installs it)")
        self.binary = binary
        self.workdir = workdir
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                pytest.fail(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


class TickingClock:
    """A monotonic clock that moves only when told to (the registry's re-probe backoff)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
