"""A local, deterministic fake of the Zhipu GLM, OpenAI-compatible, Gemini and Anthropic HTTP APIs.

It reproduces the providers' wire formats *and their caching rules* (implicit prefix caching with
per-provider minimums, granularity and TTL; Gemini ``cachedContents`` with their exact errors;
Anthropic ``cache_control`` breakpoints, see ``_anthropic_cache``), so caching code can be tested,
demoed and benchmarked offline. Three ways to run it::

    emu = Emulator()
    httpx.Client(transport=emu.transport(), base_url="http://emulator/api/paas/v4")  # in-process
    httpx.AsyncClient(transport=httpx.ASGITransport(app=emu.asgi_app), ...)        # ASGI
    with emu.serve() as server:                                                      # real loopback HTTP
        ChatOpenAI(base_url=server.openai_base_url, api_key="test")
        ChatAnthropic(base_url=server.anthropic_base_url, api_key="test")
        ChatDeepSeek(base_url=server.deepseek_base_url, api_key="test")
        ChatOpenAI(base_url=server.dashscope_base_url, api_key="test")              # Qwen on DashScope

Token counts come from the emulator's own approximate tokenizer (``count_tokens``: words, numbers and
single punctuation characters; whitespace is free), not from any real vocabulary. Replies are scripted
from the request and identical on every run; tool calls are synthesised from the tools' JSON schemas.

Caching is decided on one prompt text per request, rendered from the JSON as received, segments joined
by newlines: a ``<|tools|>`` segment (each tool ``json.dumps``-ed in the order and key order sent), then
one segment per message (``<|system|>``, ``<|user|>``, ``<|assistant|>`` + text and tool calls,
``<|tool|>`` + tool_call_id + result; Gemini: tools, toolConfig, ``<|system|>``, then ``<|user|>`` /
``<|model|>`` contents), then the generation marker (``<|assistant|>`` / ``<|model|>``). The cached
tokens of a request are the longest prefix (snapped to a token boundary) shared with an earlier prompt
of the same API key and model that is still within the TTL, after the endpoint's ``CacheRules``.

Errors to inject (``Emulator.inject_fault``) with the providers' real bodies are in
``cache_integrations.testing.faults`` (``glm_rate_limit()``, ``gemini_unavailable()``, ...).
``Emulator(strict=True)`` rehearses failures: unknown model names get the providers' "unknown model"
errors, and a prompt becomes cacheable only once its answer is delivered, so concurrent cold requests
all miss. ``Emulator(openai_physics=OpenAIPhysics())`` adds a model of OpenAI's cache routing (several
machines, routing on the prefix start and ``prompt_cache_key``, overflow above ~15 requests a minute;
``physics``), and ``hold_answers(n)`` makes a burst of ``n`` requests certainly concurrent. Streams report
usage as the services do: GLM only with ``stream_options.include_usage``,
Gemini with built-in tools ending in a ``usageMetadata`` without ``candidatesTokenCount``.

The emulator is a model of the providers written from their documentation and recorded traffic, not
the providers themselves: cassettes recorded from it are emulator recordings, and the hand-written
bodies under the project's ``tests/oracle/`` (copied from public docs and real traces) check both the
emulator and the library against the real wire format.
"""

from __future__ import annotations

from ._gate import AnswerGate
from ._http import EmulatorResponse
from ._local_servers import LLAMACPP_RULES, VLLM_RULES
from ._server import RunningServer
from .clock import Clock, FakeClock, SystemClock
from .emulator import Emulator, EmulatorCounters, RecordedRequest
from .faults import Endpoint, Fault
from .physics import OpenAIPhysics
from .rules import DASHSCOPE_RULES, DEEPSEEK_RULES, GEMINI_RULES, GLM_RULES, OPENAI_RULES, CacheRules
from .tokenizer import Tokenizer, count_tokens, tokenize

__all__ = [
    "DASHSCOPE_RULES",
    "DEEPSEEK_RULES",
    "GEMINI_RULES",
    "GLM_RULES",
    "LLAMACPP_RULES",
    "OPENAI_RULES",
    "VLLM_RULES",
    "AnswerGate",
    "CacheRules",
    "Clock",
    "Emulator",
    "EmulatorCounters",
    "EmulatorResponse",
    "Endpoint",
    "FakeClock",
    "Fault",
    "OpenAIPhysics",
    "RecordedRequest",
    "RunningServer",
    "SystemClock",
    "Tokenizer",
    "count_tokens",
    "tokenize",
]
