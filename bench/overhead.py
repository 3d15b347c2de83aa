"""Per-call overhead over loopback HTTP, measured side by side in one run.

Clients, interleaved round by round against one emulator server so drift hits all alike:
raw httpx posting the exact bytes ChatGLM sends; the plugin's provider layer (GLMProvider.chat);
ChatGLM.invoke; and, on the emulator's OpenAI-compatible endpoint, raw httpx and langchain-openai's
ChatOpenAI. Overhead is a client's median minus the raw-httpx median on the same endpoint.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from pydantic import SecretStr

from cache_integrations._deferred import settle
from cache_integrations.langchain import CacheUsageCallbackHandler, ChatGLM
from cache_integrations.messages import ChatRequest, Message
from cache_integrations.providers._http import SOCKET_OPTIONS
from cache_integrations.providers.glm import GLMProvider, encode_request
from cache_integrations.testing import Emulator

PROMPT = "Summarize our refund policy in one sentence."


@dataclass
class Timing:
    name: str
    median_ms: float
    p90_ms: float
    overhead_ms: float | None


def _clients(server_glm: str, server_openai: str) -> dict[str, Callable[[], object]]:
    raw = httpx.Client(transport=httpx.HTTPTransport(socket_options=SOCKET_OPTIONS))
    glm_body = encode_request(ChatRequest("glm-4.7", (Message("user", PROMPT),)), stream=False).body
    headers = {"Authorization": "Bearer bench", "Content-Type": "application/json"}
    provider = GLMProvider(api_key=SecretStr("bench"), base_url=server_glm)
    chat_glm = ChatGLM(model="glm-4.7", api_key="bench", base_url=server_glm)
    handler = CacheUsageCallbackHandler()
    request = ChatRequest("glm-4.7", (Message("user", PROMPT),))
    oai_body = httpx.Request(
        "POST", "/", json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}
    )
    clients: dict[str, Callable[[], object]] = {
        "raw httpx (GLM endpoint)": lambda: raw.post(
            f"{server_glm}/chat/completions", content=glm_body, headers=headers
        ).json(),
        "GLMProvider.chat": lambda: provider.chat(request),
        "ChatGLM.invoke": lambda: chat_glm.invoke(PROMPT),
        "ChatGLM.invoke + CacheUsageCallbackHandler (diagnostics on)": lambda: chat_glm.invoke(
            PROMPT, config={"callbacks": [handler]}
        ),
        "raw httpx (OpenAI endpoint)": lambda: raw.post(
            f"{server_openai}/chat/completions", content=oai_body.content, headers=headers
        ).json(),
    }
    try:
        from langchain_openai import ChatOpenAI

        chat_openai = ChatOpenAI(model="gpt-4o-mini", api_key=SecretStr("bench"), base_url=server_openai)
        clients["ChatOpenAI.invoke"] = lambda: chat_openai.invoke(PROMPT)
    except ImportError:  # pragma: no cover - the bench extra installs it
        pass
    return clients


def measure(rounds: int = 300, warmup: int = 30) -> list[Timing]:
    emu = Emulator()
    with emu.serve() as server:
        clients = _clients(server.glm_base_url, server.openai_base_url)
        samples: dict[str, list[float]] = {name: [] for name in clients}
        for i in range(warmup + rounds):
            for name, call in clients.items():
                start = time.perf_counter()
                call()
                elapsed = (time.perf_counter() - start) * 1000
                settle()  # the handler's miss diagnosis runs after its call: never on the next client's clock
                if i >= warmup:
                    samples[name].append(elapsed)
    medians = {n: statistics.median(s) for n, s in samples.items()}
    base = {"GLM": medians["raw httpx (GLM endpoint)"], "OpenAI": medians["raw httpx (OpenAI endpoint)"]}
    out = []
    for name, s in samples.items():
        endpoint = "OpenAI" if "OpenAI" in name else "GLM"
        overhead = None if name.startswith("raw") else medians[name] - base[endpoint]
        out.append(Timing(name, medians[name], statistics.quantiles(s, n=10)[-1], overhead))
    return out
