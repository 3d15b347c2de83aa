"""``make demo``: prompt caching with `ChatGLM` on three realistic workloads, with cost and savings.

Run ``python -m cache_integrations.demo [--out DIR] [--model M]``. With ``ZHIPUAI_API_KEY`` set it
calls the real GLM API; otherwise it serves the built-in emulator on loopback HTTP, so the demo runs
offline in seconds with identical output every time. The three parts (a multi-turn support
assistant, questions over a long document, a batch code review) echo Zhipu's context-caching guide.
It prints per-call and per-part cache hits and costs, and writes ``cost.png`` and ``calls.json``.
"""

from __future__ import annotations

from ._cli import main

__all__ = ["main"]
