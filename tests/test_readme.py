"""Every Python code block in README.md runs, as written, against the emulator over loopback HTTP.

A block may be preceded by ``<!-- setup: <python> -->`` lines: the documented set-up a reader supplies
(their own files and data), run before the block in the same namespace. The environment points every
provider at the emulator, the way a user's own test would (`ZHIPUAI_BASE_URL`, `GEMINI_BASE_URL`,
`OPENAI_BASE_URL`, `OPENAI_API_BASE`, `ANTHROPIC_BASE_URL`, ...), and each block runs in its own empty
working directory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cache_integrations.otel import uninstrument
from cache_integrations.testing import Emulator, RunningServer

README = Path(__file__).resolve().parent.parent / "README.md"
_FENCE = re.compile(r"((?:^<!-- setup: [^\n]* -->\n)*)^```python\n(.*?)^```$", re.M | re.S)
_SETUP = re.compile(r"^<!-- setup: (.*) -->$", re.M)


@dataclass(frozen=True)
class Block:
    line: int
    setup: tuple[str, ...]
    code: str

    def __str__(self) -> str:
        return f"README.md:{self.line}"


def readme_blocks(text: str) -> list[Block]:
    blocks = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start(2))
        blocks.append(Block(line, tuple(_SETUP.findall(match.group(1))), match.group(2)))
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_python_examples_and_each_is_found() -> None:
    fences = README.read_text(encoding="utf-8").count("```python")
    assert fences >= 5
    assert len(BLOCKS) == fences, "a ```python block was not picked up (setup comment malformed?)"


@pytest.fixture(scope="module")
def emulator_server() -> Iterator[RunningServer]:
    with Emulator().serve() as server:
        yield server


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
@pytest.mark.parametrize("block", BLOCKS, ids=str)
def test_readme_block_runs_against_the_emulator(
    block: Block,
    emulator_server: RunningServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("GOOGLE_API_KEY", "ANTHROPIC_API_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        "ZHIPUAI_API_KEY": "readme-key",
        "ZHIPUAI_BASE_URL": emulator_server.glm_base_url,
        "GEMINI_API_KEY": "readme-key",
        "GEMINI_BASE_URL": emulator_server.gemini_base_url,
        "GOOGLE_GEMINI_BASE_URL": emulator_server.url,  # google-genai (ChatGoogleGenerativeAI) adds the version
        "OPENAI_API_KEY": "readme-key",
        "OPENAI_BASE_URL": emulator_server.openai_base_url,
        "OPENAI_API_BASE": emulator_server.openai_base_url,  # what llama-index-llms-openai reads
        "ANTHROPIC_API_KEY": "readme-key",
        "OPENAI_COMPATIBLE_API_KEY": "readme-key",  # the emulator's OpenAI route wants a key; a local vLLM need not
        "ANTHROPIC_BASE_URL": emulator_server.anthropic_base_url,
    }.items():
        monkeypatch.setenv(name, value)
    namespace: dict[str, object] = {"__name__": "__readme__"}
    for line in block.setup:
        exec(compile(line, f"{block} (setup)", "exec"), namespace)
    try:
        exec(compile(block.code, str(block), "exec"), namespace)
    finally:
        uninstrument()  # a block that instruments the process must not instrument the tests after it
    capsys.readouterr()
