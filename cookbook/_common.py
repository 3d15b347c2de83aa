"""What the recipes share: the offline/real-API switch and the sample handbook.

Every recipe runs offline by default, on the package's emulator of the provider's API (a real HTTP
server on 127.0.0.1 that applies the provider's caching rules; token counts come from its approximate
tokenizer). Set the provider's key and the same recipe calls the real API instead:

* GLM recipes: ``ZHIPUAI_API_KEY`` (and optionally ``ZHIPUAI_BASE_URL``, e.g. Z.ai's endpoint);
* Gemini recipes: ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY``.

The recipes build their models themselves (``ChatGLM(model=..., **connection)`` in LangChain,
``GLM(model=..., **connection)`` in LlamaIndex: the same settings), so what you copy into your code is
exactly what they run: offline, ``connection`` points the model at the emulator; with a key, it is
empty and the model reads its key and URL from the environment as usual.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langchain_core.documents import Document

from cache_integrations.providers import GEMINI_BASE_URL, GLM_BASE_URL
from cache_integrations.testing import Emulator

__all__ = ["HANDBOOK_PATH", "OUTPUT_DIR", "gemini_connection", "glm_connection", "handbook", "handbook_sections"]

HERE = Path(__file__).resolve().parent
HANDBOOK_PATH = HERE / "data" / "handbook.md"
OUTPUT_DIR = Path(os.environ.get("COOKBOOK_OUTPUT_DIR") or HERE / "output")
"""Where recipes write files (plots, traces); ``COOKBOOK_OUTPUT_DIR`` overrides it."""

_OFFLINE_KEY = "cookbook-offline-key"  # the emulator accepts any non-empty key
_GEMINI_KEYS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")


@contextmanager
def glm_connection() -> Iterator[dict[str, Any]]:
    """Connection settings for `ChatGLM`: the real API if ``ZHIPUAI_API_KEY`` is set, else the emulator."""
    if os.environ.get("ZHIPUAI_API_KEY"):
        url = os.environ.get("ZHIPUAI_BASE_URL") or GLM_BASE_URL  # where ChatGLM will send, as it reads it
        print(f"ZHIPUAI_API_KEY is set: running against the GLM API at {url}")
        yield {}
        return
    with Emulator().serve() as server:
        print("No ZHIPUAI_API_KEY set: running offline on the built-in GLM emulator (approximate token counts)")
        yield {"api_key": _OFFLINE_KEY, "base_url": server.glm_base_url}


@contextmanager
def gemini_connection() -> Iterator[dict[str, Any]]:
    """Connection settings for `ChatGemini`: the real API if a Gemini key is set, else the emulator."""
    key = next((name for name in _GEMINI_KEYS if os.environ.get(name)), None)
    if key:
        url = os.environ.get("GEMINI_BASE_URL") or GEMINI_BASE_URL
        print(f"{key} is set: running against the Gemini API at {url}")
        yield {}
        return
    with Emulator().serve() as server:
        print("No GEMINI_API_KEY or GOOGLE_API_KEY set: running offline on the built-in Gemini emulator")
        # A fresh emulator per run: remember its caches in memory, not in the shared on-disk registry.
        yield {"api_key": _OFFLINE_KEY, "base_url": server.gemini_base_url, "cache_registry": "memory"}


def handbook() -> str:
    """The sample document: a fictional parcel platform's handbook (~2,200 emulator tokens)."""
    return HANDBOOK_PATH.read_text(encoding="utf-8")


def handbook_sections() -> list[Document]:
    """The handbook's fifteen ``##`` sections as documents, id = the section's slug (``rate-limits``)."""
    sections = re.split(r"^## ", handbook(), flags=re.M)[1:]
    docs = []
    for section in sections:
        title, _, body = section.partition("\n")
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        docs.append(Document(id=slug, page_content=f"{title}\n{body.strip()}", metadata={"title": title}))
    return docs
