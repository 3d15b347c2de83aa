"""One module per provider wire protocol, each over httpx with sync and async clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Protocol

from ..messages import ChatRequest, ChatResponse, StreamChunk
from ._http import HTTPProvider, RetryPolicy
from .gemini import GEMINI_BASE_URL, CachedContent, GeminiProvider
from .gemini_files import File, GeminiFiles
from .gemini_media import GeminiMedia
from .glm import GLM_BASE_URL, ZAI_BASE_URL, GLMProvider

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
