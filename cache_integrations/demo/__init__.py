"""``make demo``: prompt caching with `ChatGLM` and `ChatGemini` on four realistic workloads, with cost and savings.

Run ``python -m cache_integrations.demo [--out DIR] [--model M]``. Three parts run on GLM (a multi-turn
support assistant, questions over a long document, a batch code review, echoing Zhipu's context-caching
guide); the fourth pins the long document in an explicit Gemini cache (``gemini-2.5-flash``), asks ten
questions against it and deletes it. A provider whose key is set (``ZHIPUAI_API_KEY``; ``GEMINI_API_KEY``
or ``GOOGLE_API_KEY``) is called for real; the others run on the built-in emulator over loopback HTTP,
so the demo runs offline in seconds with identical output every time. It prints per-call and per-part
cache hits and costs (storage included, savings net of it), and writes ``cost.png`` and ``calls.json``.
"""

from __future__ import annotations

from ._cli import main

__all__ = ["main"]
