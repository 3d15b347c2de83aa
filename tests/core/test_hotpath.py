"""The hot path pays only for what is new (issue 15): memos, incremental chains, the lineage index, their bounds,
their thread safety and fork safety. The bytes themselves are checked against the code before by
`test_hotpath_wire`; these tests check the work is not done again, and that the state stays bounded."""

from __future__ import annotations

import hashlib
import os
import random
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from cache_integrations import _memo, _units
from cache_integrations._conversations import ConversationBook, common_start
from cache_integrations.diagnostics import CacheDiagnostics
from cache_integrations.langchain import _convert
from cache_integrations.langchain._convert import messages_from_langchain
from cache_integrations.layout import canonical_json, fingerprint_chain
from cache_integrations.messages import ChatRequest, Message
from cache_integrations.providers import _gemini_head, gemini
from cache_integrations.providers.glm import encode_request
from cache_integrations.testing import FakeClock
from cache_integrations.usage import Usage


@pytest.fixture
def small_memos(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every hot-path memo capped at a few hundred entries, so eviction happens in a short test."""
    for memo in _memo._MEMOS:
        monkeypatch.setattr(memo, "max_entries", 300)
        monkeypatch.setattr(memo, "max_weight", 200_000)
        memo.clear()
    yield
    for memo in _memo._MEMOS:
        memo.clear()


@pytest.fixture
def fresh_memos() -> Iterator[None]:
    for memo in _memo._MEMOS:
        memo.clear()
    yield


def _conversation(tag: str, n: int) -> list[BaseMessage]:
    out: list[BaseMessage] = [SystemMessage(f"[{tag}] You answer about the handbook. Updated 2026-11-30 09:15:02Z.")]
    for i in range(1, n):
        cls = HumanMessage if i % 2 else AIMessage
        out.append(cls(f"[{tag}] turn {i}: clause {i % 7} applies to team {i % 5}"))
    return out


# -- memo bounds ----------------------------------------------------------------------------------------


def test_memo_bounds_hold_under_ten_thousand_distinct_conversations(small_memos: None) -> None:
    clock = FakeClock()
    diagnostics = CacheDiagnostics(clock=clock.time, warn=False, max_conversations=50)
    for n in range(10_000):
        neutral = messages_from_langchain(_conversation(f"c{n}", 4))
        encode_request(ChatRequest("glm-4.7", neutral), stream=False)
        gemini.cache_key(ChatRequest("gemini-2.5-flash", neutral), cached_messages=1, salt="ns")
        diagnostics.observe(model="glm-4.7", messages=neutral, usage=Usage(input_tokens=100), provider="zhipuai")
        clock.advance(1)
    for name, (entries, weight) in _memo.memo_stats().items():
        assert entries <= 300, name
        assert weight <= 200_000, name
    assert len(_memo._RECENT_FACTS) <= _memo._RECENT_MAX
    assert len(_memo._RECENT_CHAINS) <= _memo._RECENT_MAX
    assert len(_units._RECENT) <= _units._RECENT_MAX
    assert diagnostics.tracked_conversations <= 50
    assert diagnostics._book.indexed <= 3 * 50  # three prefixes a conversation at most


def test_the_default_bounds_hold_too() -> None:
    for n in range(2_000):
        encode_request(ChatRequest("glm-4.7", messages_from_langchain(_conversation(f"d{n}", 3))), stream=False)
    for name, (entries, weight) in _memo.memo_stats().items():
        memo = next(m for m in _memo._MEMOS if m.name == name)
        assert entries <= memo.max_entries and weight <= memo.max_weight, name


# -- work done once ---------------------------------------------------------------------------------------


def test_a_history_converts_each_message_once(monkeypatch: pytest.MonkeyPatch) -> None:
    converted: list[int] = []
    real = _convert._message
    monkeypatch.setattr(_convert, "_message", lambda m, i: converted.append(i) or real(m, i))
    history = _conversation("once", 40)
    first = messages_from_langchain(history)
    assert len(converted) == 40
    history.append(HumanMessage("a new question"))
    second = messages_from_langchain(history)
    assert converted[40:] == [40]  # only the new message
    assert all(a is b for a, b in zip(first, second[:40], strict=True))  # the same neutral messages


def test_a_rebuilt_history_hits_by_content_and_an_edited_message_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    converted: list[int] = []
    real = _convert._message
    monkeypatch.setattr(_convert, "_message", lambda m, i: converted.append(i) or real(m, i))
    messages_from_langchain(_conversation("rebuilt", 6))
    rebuilt = _conversation("rebuilt", 6)  # new objects, same content (a checkpointer's state)
    messages_from_langchain(rebuilt)
    assert len(converted) == 6
    rebuilt[3].content = "changed in place"
    rebuilt[4].additional_kwargs["cache_control"] = {"type": "ephemeral"}
    out = messages_from_langchain(rebuilt)
    assert converted[6:] == [3, 4]
    assert out[3].content == "changed in place" and out[4].cache_point


def test_bools_ints_and_floats_are_different_keys() -> None:
    calls = [
        AIMessage("", tool_calls=[{"name": "f", "args": {"x": value}, "id": "c1", "type": "tool_call"}])
        for value in (1, True, 1.0, -0.0, 0.0)
    ]
    encoded = [
        encode_request(ChatRequest("glm-4.7", messages_from_langchain([HumanMessage("q"), call])), stream=False).body
        for call in calls
    ]
    assert len(set(encoded)) == 5


def test_tool_call_arguments_are_copied() -> None:
    call = AIMessage("", tool_calls=[{"name": "search", "args": {"query": "first"}, "id": "c1", "type": "tool_call"}])
    neutral = messages_from_langchain([HumanMessage("q"), call])
    call.tool_calls[0]["args"]["query"] = "changed by the caller afterwards"  # the remembered message keeps its own
    assert neutral[1].tool_calls[0].arguments == {"query": "first"}


class _CountingHash:
    def __init__(self, counted: list[int], data: bytes = b"") -> None:
        self._h = hashlib.sha256(data)
        self._counted = counted
        counted.append(len(data))

    def update(self, data: bytes) -> None:
        self._counted.append(len(data))
        self._h.update(data)

    def copy(self) -> _CountingHash:
        out = _CountingHash.__new__(_CountingHash)
        out._h, out._counted = self._h.copy(), self._counted
        return out

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def test_the_fingerprint_chain_hashes_only_what_is_new(monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[int] = []

    class FakeHashlib:
        @staticmethod
        def sha256(data: bytes = b"") -> _CountingHash:
            return _CountingHash(hashed, data)

    monkeypatch.setattr(_memo, "hashlib", FakeHashlib)
    segments = [f"segment {i} ".encode() * 50 for i in range(30)]
    assert _memo.chain_of(b"header", segments) == fingerprint_chain(b"header", segments)
    hashed.clear()
    longer = [*segments, b"new one"]
    assert _memo.chain_of(b"header", longer) == fingerprint_chain(b"header", longer)
    assert sum(hashed) == len(b"header") + 1 + len(b"new one")  # the header, the separator, the new segment
    hashed.clear()
    edited = [*segments[:10], b"edited", *segments[11:]]  # a branch from the middle: rehashed from there only
    assert _memo.chain_of(b"header", edited) == fingerprint_chain(b"header", edited)
    assert sum(hashed) == len(b"header") + sum(len(s) + 1 for s in edited[10:])
    hashed.clear()
    # Another conversation under the same header came in between: the first one's prefix is still known.
    _memo.chain_of(b"header", [b"another conversation", *segments[:3]])
    hashed.clear()
    resumed = [*longer, b"one more"]
    assert _memo.chain_of(b"header", resumed) == fingerprint_chain(b"header", resumed)
    assert sum(hashed) == len(b"header") + 1 + len(b"one more")


def test_chains_stay_exact_for_random_histories() -> None:
    rng = random.Random(7)
    pool = [bytes([65 + i]) * rng.randint(1, 40) for i in range(12)]
    for _ in range(300):
        segments = [rng.choice(pool) for _ in range(rng.randint(0, 12))]
        header = rng.choice([b"h1", b"h2"])
        assert _memo.chain_of(header, segments) == fingerprint_chain(header, segments)


def test_masking_skips_only_text_with_nothing_to_mask() -> None:
    def slow(text: str) -> str:
        for kind, pattern in _units._VOLATILE_PATTERNS:
            text = pattern.sub(f"<{kind}>", text)
        return text

    rng = random.Random(3)
    alphabet = "abcdefABCDEF0123456789 -_:=/.reqtrsun"
    samples = ["plain words only", "deadbeefdeadbeefdeadbeef", "run_abcdefghij", "Monday, May 4, 2026"]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(2000)]
    for text in samples:
        assert _units.mask(text) == slow(text), text


def test_common_start_matches_a_character_scan() -> None:
    rng = random.Random(5)
    for _ in range(2000):
        a = "".join(rng.choice("ab") for _ in range(rng.randint(0, 20)))
        b = "".join(rng.choice("ab") for _ in range(rng.randint(0, 20)))
        n = min(len(a), len(b))
        assert common_start(a, b) == next((i for i in range(n) if a[i] != b[i]), n)


# -- lineage through the index ----------------------------------------------------------------------------


def test_a_continuation_is_found_through_the_index_without_a_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    diagnostics = CacheDiagnostics(clock=clock.time, warn=False)
    histories = [_msgs(f"user {k}", 6) for k in range(256)]
    for history in histories:  # 256 live conversations, all without a session id
        diagnostics.observe(model="glm-4.7", messages=history, usage=Usage(input_tokens=500), provider="zhipuai")
        clock.advance(1)
    scans: list[int] = []
    real = ConversationBook._by_content
    monkeypatch.setattr(ConversationBook, "_by_content", lambda *a: scans.append(1) or real(*a))
    first = diagnostics.diagnoses[0].conversation
    grown = [*histories[0], Message("assistant", "an answer"), Message("user", "and then?")]
    d = diagnostics.observe(model="glm-4.7", messages=grown, usage=Usage(input_tokens=600), provider="zhipuai")
    assert (d.conversation, d.call_index) == (first, 1)
    branch = [*histories[5][:-1], Message("user", "a different last question")]
    d = diagnostics.observe(model="glm-4.7", messages=branch, usage=Usage(input_tokens=600), provider="zhipuai")
    assert d.conversation == diagnostics.diagnoses[5].conversation
    assert scans == []
    stamped = [Message("system", str(histories[9][0].content).replace("2026-11-30 09:00:00", "2026-12-01 10:00:00"))]
    stamped += histories[9][1:]
    d = diagnostics.observe(model="glm-4.7", messages=stamped, usage=Usage(input_tokens=600), provider="zhipuai")
    assert (d.conversation, d.cause) == (diagnostics.diagnoses[9].conversation, "volatile_content")
    assert scans == []  # the masked prefix is indexed: a new timestamp still finds its conversation
    rewritten = [Message("system", "A whole new system prompt."), *histories[12][1:]]
    d = diagnostics.observe(model="glm-4.7", messages=rewritten, usage=Usage(input_tokens=600), provider="zhipuai")
    assert scans == [1]  # no shared prefix: the content comparison finds it
    assert (d.conversation, d.cause) == (diagnostics.diagnoses[12].conversation, "system_prompt_changed")


def _msgs(tag: str, n: int) -> list[Message]:
    out = [Message("system", f"Handbook of {tag}, printed 2026-11-30 09:00:00. " + "Policy text. " * 30)]
    for i in range(1, n):
        out.append(Message("user" if i % 2 else "assistant", f"{tag}: turn {i}"))
    return out


def test_units_of_a_message_are_computed_once(monkeypatch: pytest.MonkeyPatch, fresh_memos: None) -> None:
    built: list[Message] = []
    real_text = _units._unit_text
    monkeypatch.setattr(_units, "_unit_text", lambda m: built.append(m) or real_text(m))
    masked: list[str] = []
    real = _units.mask
    monkeypatch.setattr(_units, "mask", lambda text: masked.append(text) or real(text))
    diagnostics = CacheDiagnostics(warn=False)
    history = _msgs("units", 30)
    for i in range(5):
        history = [*history, Message("user", f"question {i}")]
        diagnostics.observe(model="glm-4.7", messages=history, usage=Usage(input_tokens=900), provider="zhipuai")
    assert len(built) == 30 + 5  # each message's unit once
    assert len(masked) == 30 + 5 + 1  # each message masked once, and the model-and-tools unit once


# -- Gemini: the plan key of an unchanged prefix ---------------------------------------------------------------


def test_the_cache_key_is_the_payload_digest_and_is_computed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    document = Message("user", "A long document. " * 4000, cache_point=True)
    request = ChatRequest("gemini-2.5-flash", (Message("system", "Answer from it."), document, Message("user", "q1")))
    payload = gemini.cache_payload(request, cached_messages=1)
    expected = hashlib.sha256(canonical_json(payload).encode() + b"namespace").hexdigest()
    assert gemini.cache_key(request, cached_messages=1, salt="namespace") == expected
    built: list[int] = []
    real = gemini._payload
    monkeypatch.setattr(gemini, "_payload", lambda prep, count: built.append(count) or real(prep, count))
    for q in range(5):
        asked = ChatRequest("gemini-2.5-flash", (*request.messages[:2], Message("user", f"question {q}")))
        assert gemini.cache_key(asked, cached_messages=1, salt="namespace") == expected
    assert built == []  # the prefix is neither encoded nor hashed again
    assert gemini.cache_key(request, cached_messages=1, salt="other") != expected


def test_a_large_system_instruction_is_encoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    system = Message("system", "Rules. " * 20_000)
    encoded: list[int] = []
    real = gemini.canonical_json

    def counting(value: Any, **kwargs: Any) -> str:
        out = real(value, **kwargs)
        encoded.append(len(out))
        return out

    monkeypatch.setattr(gemini, "canonical_json", counting)
    monkeypatch.setattr(_gemini_head, "canonical_json", counting)
    bodies = [
        gemini.encode_generate(ChatRequest("gemini-2.5-flash", (system, Message("user", f"q{i}"))), stream=False)
        for i in range(4)
    ]
    big = [n for n in encoded if n > 100_000]
    assert len(big) == 2  # the fingerprint header and the body's members, once each, for all four calls
    assert all(len(b.body) > 100_000 for b in bodies)


# -- threads and fork -----------------------------------------------------------------------------------


def test_eight_threads_share_the_memos_and_get_the_same_bytes(small_memos: None) -> None:
    conversations = [_conversation(f"t{k % 12}", 5 + k % 7) for k in range(48)]  # shared and distinct
    expected = {
        id(c): (
            encode_request(ChatRequest("glm-4.7", messages_from_langchain(c)), stream=False),
            gemini.cache_key(ChatRequest("gemini-2.5-flash", messages_from_langchain(c)), cached_messages=2),
        )
        for c in conversations
    }
    for memo in _memo._MEMOS:
        memo.clear()
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(seed: int) -> None:
        rng = random.Random(seed)
        diagnostics = CacheDiagnostics(warn=False, max_conversations=8)
        try:
            barrier.wait()
            for _ in range(150):
                conv = rng.choice(conversations)
                neutral = messages_from_langchain(conv)
                enc = encode_request(ChatRequest("glm-4.7", neutral), stream=False)
                key = gemini.cache_key(ChatRequest("gemini-2.5-flash", neutral), cached_messages=2)
                want_enc, want_key = expected[id(conv)]
                assert enc.body == want_enc.body and enc.fingerprints == want_enc.fingerprints
                assert key == want_key
                diagnostics.observe(model="glm-4.7", messages=neutral, usage=Usage(input_tokens=50))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for name, (entries, weight) in _memo.memo_stats().items():
        assert entries <= 300 and weight <= 200_000, name


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() only")
def test_a_forked_child_starts_with_empty_memos() -> None:
    encode_request(ChatRequest("glm-4.7", messages_from_langchain(_conversation("fork", 5))), stream=False)
    assert len(_memo.FACTS) > 0
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        ok = all(len(m) == 0 for m in _memo._MEMOS) and not _memo._RECENT_CHAINS and not _memo._RECENT_FACTS
        enc = encode_request(ChatRequest("glm-4.7", messages_from_langchain(_conversation("fork", 5))), stream=False)
        os._exit(0 if ok and enc.body else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# -- lazy imports -----------------------------------------------------------------------------------------


def _fresh(probe: str, *args: str) -> str:
    """`probe`'s output, run by a fresh interpreter (nothing imported yet)."""
    import subprocess

    return subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, check=True).stdout


# What a model's call needs is imported when the model is built: the HTTP stack (httpx), and for Gemini the
# explicit-cache manager, registries, Files API and pinned contexts.
_NEVER = ["jinja2", "yaml", "sqlite3", "redis", "cache_integrations.testing", "uvicorn"]
_NEVER += ["cache_integrations.langchain.lint", "cache_integrations.explicit.sqlite"]
_AT_BUILD = ["httpx", "cache_integrations.explicit.manager", "cache_integrations.explicit.files"]
_AT_BUILD += ["cache_integrations.providers.gemini", "cache_integrations.providers.gemini_files"]
_AT_BUILD += ["cache_integrations.providers.gemini_media", "cache_integrations.gemini_chat"]
_AT_BUILD += ["cache_integrations.pinned", "cache_integrations.langchain.pinned"]


@pytest.mark.parametrize("name", ["ChatGLM", "ChatGemini"])
def test_importing_a_chat_model_loads_only_what_a_call_needs(name: str) -> None:
    probe = (
        "import sys\n"
        f"from cache_integrations.langchain import {name}\n"
        f"heavy = {_NEVER + _AT_BUILD!r}\n"
        "if 'GLM' in sys.argv[1]:\n"
        "    heavy.append('cache_integrations.explicit')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
        # built, the model imports its stack and works: the private attributes annotated with names only
        # imported for type checkers need no model_rebuild
        f"llm = {name}(api_key='k')\n"
        "tool = {'name': 'f', 'description': 'd', 'parameters': {'type': 'object', 'properties': {}}}\n"
        "assert llm.model_copy()._client is llm._client and llm.bind_tools([tool]).bound is llm\n"
        "print('built', 'httpx' in sys.modules)\n"
    )
    out = _fresh(probe, name).splitlines()
    assert out == ["", "built True"]


def test_the_explicit_package_exports_every_name_lazily() -> None:
    import cache_integrations.explicit as explicit

    names = ", ".join(explicit.__all__)
    probe = (
        "import sys\n"
        "import cache_integrations.explicit as explicit\n"
        "print(any(m.startswith('cache_integrations.explicit.') for m in sys.modules))\n"
        f"from cache_integrations.explicit import {names}\n"
        "from cache_integrations.explicit import manager, files, registry, sqlite\n"
        "assert ExplicitCacheManager is manager.ExplicitCacheManager and UploadedFile is files.UploadedFile\n"
        "assert CacheMode is manager.CacheMode and CacheHandle is manager.CacheHandle\n"
        "assert MemoryRegistry is registry.MemoryRegistry and SQLiteRegistry is sqlite.SQLiteRegistry\n"
        "assert set(explicit.__all__) <= set(dir(explicit))\n"
        "print('ok')\n"
    )
    assert _fresh(probe).split() == ["False", "ok"]
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        explicit.Nope  # noqa: B018


@pytest.mark.parametrize("first", ["package", "module"])
def test_pinned_context_is_one_class_whichever_path_imports_it(first: str) -> None:
    probe = (
        "import sys\n"
        "if sys.argv[1] == 'package':\n"
        "    from cache_integrations.langchain import PinnedContext as a\n"
        "    from cache_integrations.langchain.gemini import PinnedContext as b\n"
        "else:\n"
        "    from cache_integrations.langchain.gemini import PinnedContext as b\n"
        "    from cache_integrations.langchain import PinnedContext as a\n"
        "from cache_integrations.langchain.gemini import ChatGemini\n"
        "print(a is b, issubclass(a, ChatGemini), a.__module__)\n"
    )
    assert _fresh(probe, first).split() == ["True", "True", "cache_integrations.langchain.pinned"]
