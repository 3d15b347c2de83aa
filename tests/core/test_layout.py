"""The layout must turn equivalent conversations into byte-identical request prefixes."""

from __future__ import annotations

import json

import pytest

from cache_integrations import ChatRequest, InvalidRequestError, Message, ToolCall, ToolDefinition, apply_layout
from cache_integrations.layout import fingerprint_chain, stable_order, stable_prefix_length
from cache_integrations.providers.glm import encode_request

WEATHER = ToolDefinition(
    "weather",
    "Get the weather",
    {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}}, "required": ["city"]},
)
# Same schema, keys in another order.
WEATHER_REORDERED = ToolDefinition(
    "weather",
    "Get the weather",
    {"required": ["city"], "properties": {"unit": {"enum": ["c", "f"]}, "city": {"type": "string"}}, "type": "object"},
)
CLOCK = ToolDefinition("clock", "Current time", {"type": "object", "properties": {}})


def _request(messages: list[Message], tools: tuple[ToolDefinition, ...] = ()) -> ChatRequest:
    return ChatRequest(model="glm-4.7", messages=tuple(messages), tools=tools)


def test_system_messages_are_hoisted_in_order_and_nothing_is_dropped() -> None:
    msgs = [Message("user", "q1"), Message("system", "A"), Message("assistant", "a1"), Message("system", "B")]
    out = apply_layout(_request(msgs)).messages
    assert [m.content for m in out] == ["A", "B", "q1", "a1"]
    assert sorted(map(repr, out)) == sorted(map(repr, msgs))


def test_reordered_but_equivalent_inputs_give_identical_prefix_bytes() -> None:
    history = [Message("user", "What is the weather in Rome?")]
    a = encode_request(_request([Message("system", "S"), *history], (WEATHER, CLOCK)), stream=False)
    b = encode_request(_request([*history, Message("system", "S")], (CLOCK, WEATHER_REORDERED)), stream=False)
    assert a.body == b.body
    assert a.fingerprints.chain == b.fingerprints.chain


def test_tool_call_arguments_are_canonical() -> None:
    def convo(args: dict[str, object]) -> ChatRequest:
        call = ToolCall("call_-7807249954186984837", "weather", args)
        return _request(
            [
                Message("user", "weather?"),
                Message("assistant", "", tool_calls=(call,)),
                Message("tool", "sunny", tool_call_id=call.id),
            ],
            (WEATHER,),
        )

    a = encode_request(convo({"city": "Rome", "unit": "c"}), stream=False).body
    b = encode_request(convo({"unit": "c", "city": "Rome"}), stream=False).body
    assert a == b
    wire = json.loads(a)["messages"][1]["tool_calls"][0]["function"]["arguments"]
    assert wire == '{"city":"Rome","unit":"c"}'


def test_content_is_never_rewritten() -> None:
    text = "  keep\tthis  exactly\n\n — ünïcode 🚀 "
    body = encode_request(_request([Message("user", text)]), stream=False).body
    assert json.loads(body)["messages"][0]["content"] == text
    assert "— ünïcode 🚀".encode() in body  # no ASCII escaping of non-ASCII text


def test_layout_off_keeps_caller_order() -> None:
    msgs = [Message("user", "q"), Message("system", "S")]
    body = encode_request(_request(msgs, (WEATHER, CLOCK)), stream=False, layout=False).body
    data = json.loads(body)
    assert [m["role"] for m in data["messages"]] == ["user", "system"]
    assert [t["function"]["name"] for t in data["tools"]] == ["weather", "clock"]


def test_body_is_valid_json_with_all_parameters() -> None:
    req = ChatRequest(
        model="glm-4.7",
        messages=(Message("user", "hi"),),
        temperature=0.2,
        max_tokens=50,
        stop=("END",),
        extra={"thinking": {"type": "disabled"}},
    )
    data = json.loads(encode_request(req, stream=True).body)
    assert data == {
        "model": "glm-4.7",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.2,
        "max_tokens": 50,
        "stop": ["END"],
        "stream": True,
        "stream_options": {"include_usage": True},
        "thinking": {"type": "disabled"},
    }


def test_fingerprints_locate_the_first_divergence() -> None:
    base = [Message("system", "S"), Message("user", "u1"), Message("assistant", "a1"), Message("user", "u2")]
    changed = [base[0], Message("user", "u1 edited"), base[2], base[3]]
    fa = encode_request(_request(base), stream=False).fingerprints
    fb = encode_request(_request(changed), stream=False).fingerprints
    assert fa.chain[:2] == fb.chain[:2]  # header and system message agree
    assert fa.chain[2] != fb.chain[2]  # the user turn differs
    assert fa.stable_messages == 3 and fa.prefix == fa.chain[3]


def test_fingerprint_chain_covers_each_segment() -> None:
    chain = fingerprint_chain(b"h", [b"a", b"b"])
    assert len(chain) == 3 and len(set(chain)) == 3
    assert fingerprint_chain(b"h", [b"a", b"c"])[:2] == chain[:2]


def test_stable_prefix_includes_cache_points() -> None:
    msgs = [Message("system", "S"), Message("user", "doc", cache_point=True), Message("user", "question")]
    assert stable_prefix_length(msgs) == 2


def test_duplicate_tool_names_are_rejected() -> None:
    with pytest.raises(InvalidRequestError, match="two tool definitions are named 'weather'"):
        apply_layout(_request([Message("user", "x")], (WEATHER, WEATHER_REORDERED)))


def test_unserializable_tool_schema_names_the_tool() -> None:
    bad = ToolDefinition("broken", "", {"type": "object", "default": object()})
    with pytest.raises(InvalidRequestError, match="tools is not JSON-serializable"):
        encode_request(_request([Message("user", "x")], (bad,)), stream=False)


def test_stable_order_is_independent_of_retrieval_order() -> None:
    docs = [("b", "beta"), ("a", "alpha"), ("c", "gamma"), ("a", "alpha")]
    assert stable_order(docs, key=lambda d: d[0]) == [("a", "alpha"), ("b", "beta"), ("c", "gamma")]
    assert stable_order(reversed(docs), key=lambda d: d[0]) == stable_order(docs, key=lambda d: d[0])


def test_first_seen_order_keeps_sent_items_in_place_when_the_retrieved_set_varies() -> None:
    from cache_integrations.layout import FirstSeenOrder

    order = FirstSeenOrder(key=lambda d: d)
    assert order(["d7", "d3"]) == ["d7", "d3"]
    # "d1" sorts before both by id, but it is new: it goes last, so the previous prefix still matches
    assert order(["d1", "d3", "d7"]) == ["d7", "d3", "d1"]
    assert stable_order(["d1", "d3", "d7"], key=lambda d: d)[0] == "d1"  # sorting by id would move it first
    assert order(["d3", "d3", "d9"]) == ["d3", "d9"]  # duplicates kept once; the known one first


def test_stream_asks_for_usage_and_merges_the_callers_stream_options() -> None:
    req = ChatRequest(model="glm-4.7", messages=(Message("user", "hi"),))
    assert json.loads(encode_request(req, stream=True).body)["stream_options"] == {"include_usage": True}
    assert "stream_options" not in json.loads(encode_request(req, stream=False).body)
    own = ChatRequest(model="glm-4.7", messages=(Message("user", "hi"),), extra={"stream_options": {"x": 1}})
    assert json.loads(encode_request(own, stream=True).body)["stream_options"] == {"include_usage": True, "x": 1}
