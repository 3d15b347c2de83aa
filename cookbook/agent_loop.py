"""A tool-calling agent on ChatGLM with LangChain's `create_agent`: cached tokens per model call.

`langchain.agents.create_agent` (LangGraph underneath) loops model -> tools -> model until the model
answers. Every model call resends the system prompt, the tool definitions and the whole conversation,
so an agent is where prefix caching pays most: `ChatGLM` keeps that prefix byte-identical (system
first, tools sorted by name, tool-call arguments in canonical JSON) and each step is served from the
cache up to its newest messages. A checkpointer keeps the conversation across the four user turns.

The recipe streams the agent's steps and prints, for every model call, what the model did and how
many of its input tokens came from the cache; then the cache report of the whole run.

Run it:
    python cookbook/agent_loop.py                        # offline, on the emulator
    ZHIPUAI_API_KEY=... python cookbook/agent_loop.py    # the real GLM API
"""

from __future__ import annotations

from _common import glm_connection, handbook_sections
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from cache_integrations.langchain import ChatGLM, get_cache_usage_callback

SYSTEM_PROMPT = """\
You are Kestrel's support copilot. Support agents paste ticket details; you investigate with your
tools and answer the agent (not the merchant) in at most five sentences.

How to work:
- Track a parcel before saying anything about where it is; quote its status and last scan exactly.
- Look rules up in the handbook before quoting a limit, a price or a deadline, and name the section.
- Refund a label only when the agent asks for it explicitly and gives the label id; never refund a
  label on your own initiative, and never refund the same label twice.
- Members may refund labels up to 200 EUR; larger refunds need an Admin, so ask the agent to escalate.
- Never ask for API keys, card numbers or passwords, and tell the agent to remove them from the ticket
  if a merchant pasted them.
- Security issues (a leaked key, an account takeover) and legal requests are not yours to solve: tell
  the agent which team to escalate to, following the handbook, and stop there.
- If a tool fails or returns nothing useful, say so plainly; do not guess a status or a policy.
"""

PARCELS = {
    "KX10442": "in_transit; last scan 9 days ago at the Leipzig hub; flagged as stalled",
    "KX10587": "delivered yesterday at 14:02, signed by 'M. Ortega'",
}


@tool
def track_parcel(tracking_number: str) -> str:
    """Current tracking status and last scan of a parcel, by tracking number."""
    return PARCELS.get(tracking_number.upper(), f"unknown tracking number {tracking_number!r}")


@tool
def handbook(topic: str) -> str:
    """The handbook section that best matches a topic (a few keywords)."""
    words = set(topic.lower().split())
    best = max(handbook_sections(), key=lambda doc: len(words & set(doc.page_content.lower().split())))
    return best.page_content


@tool
def refund_label(label_id: str) -> str:
    """Refund an unused label by its id (lbl_...). Only when the agent explicitly asks for it."""
    refund = "rfd_" + label_id.removeprefix("lbl_")
    return f"Refund {refund} created for {label_id}: label fee back now, postage in 2-15 days."


TURNS = [
    "Can you track parcel 'KX10442'? The merchant says it never arrived.",
    "What does the handbook say about 'lost parcel claims'?",
    "Please refund label 'lbl_88Q1', the merchant bought it twice by mistake.",
    "Track parcel 'KX10587' as well, it belongs to the same order.",
]


def show(message: BaseMessage, step: int) -> None:
    """One line per model call (what it did, cached tokens) or tool result."""
    if isinstance(message, ToolMessage):
        print(f"          tool {message.name} -> {' '.join(message.text.split())[:60]}")
    if not isinstance(message, AIMessage):
        return
    if message.tool_calls:
        did = "calls " + ", ".join(
            f"{c['name']}({', '.join(map(repr, c['args'].values()))})" for c in message.tool_calls
        )
    else:
        did = "answers: " + " ".join(message.text.split())[:48] + "..."
    usage = message.usage_metadata or {}
    cached = usage.get("input_token_details", {}).get("cache_read", 0)
    print(f"  step {step}: model {did:<58} cached {cached:>4} of {usage.get('input_tokens', 0):>4} input tokens")


def main() -> None:
    with glm_connection() as connection:
        llm = ChatGLM(model="glm-4.7", thinking="disabled", max_tokens=400, **connection)
        agent = create_agent(
            llm, [track_parcel, handbook, refund_label], system_prompt=SYSTEM_PROMPT, checkpointer=InMemorySaver()
        )
        config = {"configurable": {"thread_id": "ticket-4711"}}  # one conversation across the turns

        with get_cache_usage_callback() as handler:
            for turn in TURNS:
                print(f"\nagent: {turn}")
                # stream_mode="updates": each graph step's new messages, as the step finishes
                for update in agent.stream({"messages": [("user", turn)]}, config, stream_mode="updates"):
                    for node_output in update.values():
                        for message in (node_output or {}).get("messages", []):
                            show(message, step=len(handler.calls))  # the handler has counted this model call

    print()
    print(handler.report())


if __name__ == "__main__":
    main()
