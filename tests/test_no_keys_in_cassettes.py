"""No API key reaches a cassette or a log line.

Two checks: every committed cassette (and any log file under tests/) is scanned for the keys used to
record (``emulator-key``, and ``ZHIPUAI_API_KEY`` / ``GEMINI_API_KEY`` when set) and for the shapes of
real keys; and a fresh cassette is recorded through the project's own ``vcr_config``
(tests/conftest.py) into a temporary directory, against the emulator on loopback with distinctive
keys, and must not contain them - nor may any log record captured meanwhile. Removing the redaction
from tests/conftest.py makes the second check fail.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from pathlib import Path
from typing import Any

import pytest
import vcr
from langchain_core.messages import AIMessage, BaseMessageChunk
from pydantic import SecretStr

from cache_integrations.langchain import ChatGemini, ChatGLM
from cache_integrations.testing import Emulator

from . import conftest

TESTS = Path(__file__).parent
RECORDING_KEYS = ("emulator-key",)  # what tests/record_cassettes.py records the emulator with
REAL_KEY_SHAPES = {
    "Google API key": re.compile(r"AIza[0-9A-Za-z_-]{35}"),
    "Zhipu id.secret key": re.compile(r"\b[0-9a-f]{32}\.[0-9A-Za-z]{16}\b"),
    "OpenAI-style secret key": re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}"),
    "bearer token": re.compile(r"Bearer\s+(?!REDACTED\b)[A-Za-z0-9._-]{8,}"),
}
SECRET_HEADERS = re.compile(r"^\s*(authorization|x-goog-api-key|x-api-key|api-key):\s*\n\s*-\s*(.+)$", re.M | re.I)


def _files_to_scan() -> list[Path]:
    cassettes = sorted((TESTS / "cassettes").rglob("*.yaml"))
    logs = sorted(p for ext in ("*.log", "*.har") for p in TESTS.rglob(ext))
    return cassettes + logs


def _leaks(text: str, keys: tuple[str, ...]) -> list[str]:
    found = [f"recording key {k[:4]}..." for k in keys if k and k in text]
    found += [name for name, pattern in REAL_KEY_SHAPES.items() if pattern.search(text)]
    found += [f"{m.group(1)} header not redacted" for m in SECRET_HEADERS.finditer(text) if m.group(2) != "REDACTED"]
    return found


def test_committed_cassettes_hold_no_keys() -> None:
    keys = RECORDING_KEYS + tuple(os.environ.get(v, "") for v in ("ZHIPUAI_API_KEY", "GEMINI_API_KEY"))
    files = _files_to_scan()
    assert len(files) > 50  # the scan is not vacuous
    leaks = {str(p.relative_to(TESTS)): found for p in files if (found := _leaks(p.read_text("utf-8"), keys))}
    assert leaks == {}
    assert sum(p.read_text("utf-8").count("REDACTED") for p in files) > 50  # headers were recorded, then redacted


def test_the_scanner_sees_the_shapes_it_looks_for() -> None:
    # Synthetic keys of each shape, assembled here so that no key-shaped literal sits in the repository.
    google = "AI" + "za" + "Sy" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"
    zhipu = "0123456789abcdef" * 2 + "." + "AbCdEfGhIjKlMnOp"
    openai = "s" + "k-proj-" + "abcdefghijklmnopqrstuvwx"
    sample = "\n".join(
        [
            "      x-goog-api-key:",
            f"      - {google}",
            f"Authorization: {'Bea' + 'rer'} {zhipu}",
            f"emulator-key {openai}",
        ]
    )
    assert set(_leaks(sample, RECORDING_KEYS)) == {
        "recording key emul...",
        "Google API key",
        "Zhipu id.secret key",
        "OpenAI-style secret key",
        "bearer token",
        "x-goog-api-key header not redacted",
    }


def _stream(llm: Any, prompt: Any) -> AIMessage:
    full: BaseMessageChunk | None = None
    for chunk in llm.stream(prompt):
        full = chunk if full is None else full + chunk
    assert isinstance(full, AIMessage)
    return full


def test_a_fresh_recording_through_vcr_config_redacts_the_keys(
    vcr_config: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    glm_key = f"{secrets.token_hex(16)}.{secrets.token_urlsafe(12)[:16]}"  # Zhipu's id.secret shape
    gemini_key = "AIza" + secrets.token_urlsafe(27)[:35]
    recorder = vcr.VCR(cassette_library_dir=str(tmp_path), record_mode="all")
    conftest.pytest_recording_configure(None, recorder)  # the project's custom matcher
    system = "You are a careful assistant. Follow the house rules exactly. " * 150
    caplog.set_level(logging.DEBUG)
    with Emulator().serve() as server, recorder.use_cassette("fresh.yaml", **vcr_config):
        glm = ChatGLM(model="glm-4.7", api_key=SecretStr(glm_key), base_url=server.glm_base_url, max_retries=0)
        glm.invoke([("system", system), ("human", "one")])
        _stream(glm, [("system", system), ("human", "two")])
        gemini = ChatGemini(
            model="gemini-2.5-flash",
            api_key=SecretStr(gemini_key),
            base_url=server.gemini_base_url,
            cache_mode="always",
            cache_registry="memory",
            max_retries=0,
        )
        gemini.invoke([("system", system), ("human", "three")])
        _stream(gemini, [("system", system), ("human", "four")])
    recorded = (tmp_path / "fresh.yaml").read_text("utf-8")
    for key in (glm_key, gemini_key):
        assert key not in recorded, "an API key reached the cassette"
        assert key not in caplog.text, "an API key reached a log line"
        assert all(key not in r.getMessage() and key not in str(r.args) for r in caplog.records)
    assert _leaks(recorded, (glm_key, gemini_key)) == []
    assert recorded.count("uri:") >= 5  # GLM x2, cache create, Gemini generate + stream: not vacuous
    assert "cachedContents" in recorded and recorded.count("REDACTED") >= 5  # the headers were there
