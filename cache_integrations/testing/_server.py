"""Real loopback HTTP server (uvicorn in a background thread) for clients that need a URL."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .emulator import Emulator


@dataclass(frozen=True)
class RunningServer:
    """Where a served emulator listens; the ``*_base_url`` values go straight into SDK clients."""

    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def glm_base_url(self) -> str:
        return f"{self.url}/api/paas/v4"

    @property
    def glm_coding_base_url(self) -> str:
        return f"{self.url}/api/coding/paas/v4"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def deepseek_base_url(self) -> str:
        """For ``ChatDeepSeek(base_url=...)`` / the OpenAI SDK: DeepSeek's dialect (``/chat/completions`` below it)."""
        return f"{self.url}/deepseek"

    @property
    def dashscope_base_url(self) -> str:
        """DashScope's OpenAI-compatible mode (Qwen), as ``https://dashscope.aliyuncs.com/compatible-mode/v1``."""
        return f"{self.url}/compatible-mode/v1"

    @property
    def gemini_base_url(self) -> str:
        return f"{self.url}/v1beta"

    @property
    def anthropic_base_url(self) -> str:
        """For ``anthropic.Anthropic(base_url=...)`` / ``ChatAnthropic(base_url=...)``: the SDK adds ``/v1``."""
        return self.url


@contextmanager
def serve(
    emulator: Emulator, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 10.0
) -> Iterator[RunningServer]:
    """Start uvicorn on a pre-bound socket (no port race), yield its address, stop it on exit."""
    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("Emulator.serve() needs uvicorn: pip install 'cache-integrations[testing]'") from exc

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit TCP_NODELAY: without it the response body waits for a delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        emulator.asgi_app,
        host=host,
        port=bound_port,
        log_level="warning",
        lifespan="off",
        interface="asgi3",
        timeout_graceful_shutdown=2,
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="emulator-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("the emulator server did not start")
        time.sleep(0.01)
    try:
        yield RunningServer(host=host, port=bound_port)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
