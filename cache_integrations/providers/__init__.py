"""One module per provider wire protocol, each over httpx with sync and async clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from importlib import import_module
from typing import TYPE_CHECKING, Any, Protocol

from ..messages import ChatRequest, ChatResponse, StreamChunk

if TYPE_CHECKING:
    from ._endpoints import GEMINI_BASE_URL, GLM_BASE_URL, ZAI_BASE_URL
    from ._http import HTTPProvider, RetryPolicy
    from .gemini import CachedContent, GeminiProvider
    from .gemini_files import File, GeminiFiles
    from .gemini_media import GeminiMedia
    from .glm import GLMProvider

__all__ = [
    "GEMINI_BASE_URL",
    "GLM_BASE_URL",
    "ZAI_BASE_URL",
    "CachedContent",
    "ChatProvider",
    "File",
    "GLMProvider",
    "GeminiFiles",
    "GeminiMedia",
    "GeminiProvider",
    "HTTPProvider",
    "RetryPolicy",
]


class ChatProvider(Protocol):
    """What a framework adapter needs from a provider client."""

    @property
    def provider(self) -> str: ...

    @property
    def price_provider(self) -> str: ...

    def chat(self, request: ChatRequest, *, layout: bool = True) -> ChatResponse: ...

    async def achat(self, request: ChatRequest, *, layout: bool = True) -> ChatResponse: ...

    def stream(self, request: ChatRequest, *, layout: bool = True) -> Iterator[StreamChunk]: ...

    def astream(self, request: ChatRequest, *, layout: bool = True) -> AsyncIterator[StreamChunk]: ...


# Each provider is imported on first use (PEP 562): a GLM model never loads the Gemini stack.
_WHERE = {
    "GEMINI_BASE_URL": "_endpoints",
    "GLM_BASE_URL": "_endpoints",
    "ZAI_BASE_URL": "_endpoints",
    "CachedContent": "gemini",
    "File": "gemini_files",
    "GLMProvider": "glm",
    "GeminiFiles": "gemini_files",
    "GeminiMedia": "gemini_media",
    "GeminiProvider": "gemini",
    "HTTPProvider": "_http",
    "RetryPolicy": "_http",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{where}"), name)
    globals()[name] = value
    return value
