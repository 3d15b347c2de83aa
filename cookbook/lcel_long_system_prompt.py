"""An LCEL chain with a long, stable system prompt: every question after the first is mostly cached.

`ChatPromptTemplate | ChatGLM | StrOutputParser` answers ten questions with the whole product
handbook in the system prompt. The system prompt is byte-identical on every call and comes first, so
GLM's implicit prefix cache serves it from the second question on; only the question is new input.
`get_cache_usage_callback()` sees every model call inside the chain and prints the cache report.

Run it:
    python cookbook/lcel_long_system_prompt.py                          # offline, on the emulator
    ZHIPUAI_API_KEY=... python cookbook/lcel_long_system_prompt.py      # the real GLM API
"""

from __future__ import annotations

from _common import glm_connection, handbook
from langchain_core.messages import SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from cache_integrations.langchain import ChatGLM, get_cache_usage_callback

# The stable part: instructions plus the handbook. Nothing in it changes between calls (no dates,
# no user names, no ids), which is what keeps the prefix cacheable.
SYSTEM_PROMPT = (
    "You are Kestrel's support assistant. Answer support agents' questions from the handbook below, "
    "quote numbers exactly as written, name the section you used, and say so when the handbook does "
    "not answer the question. Keep answers under 80 words.\n\n" + handbook()
)

QUESTIONS = [
    "How many API keys can a workspace have per environment?",
    "What happens when a client exceeds the rate limit?",
    "How long is a label valid, and what if it expires?",
    "Which plan includes single sign-on, and what does it cost?",
    "How old may a webhook signature be before the receiver rejects it?",
    "Can a Member refund a 350 EUR label?",
    "When is a parcel presumed lost?",
    "Which shipments need customs data?",
    "How long are request logs kept?",
    "Who handles a subpoena that arrives by e-mail?",
]

# A SystemMessage (not a ("system", ...) template string) is sent verbatim: the handbook's own braces
# ("{tracking_number}") are not template variables.
prompt = ChatPromptTemplate.from_messages([SystemMessage(SYSTEM_PROMPT), ("human", "{question}")])


def main() -> None:
    with glm_connection() as connection:
        # thinking="disabled": caching concerns the input; thinking would only add output tokens.
        llm = ChatGLM(model="glm-4.7", thinking="disabled", max_tokens=300, **connection)
        chain = prompt | llm | StrOutputParser()

        with get_cache_usage_callback() as handler:
            for n, question in enumerate(QUESTIONS, 1):
                answer = chain.invoke({"question": question})
                usage = handler.calls[-1].usage  # the model call this question made
                cached = f"cached {usage.cache_read_tokens:>5} of {usage.input_tokens:>5} input tokens"
                print(f"Q{n:<2} {cached} | {' '.join(answer.split())[:60]}...")

    print()
    print(handler.report())


if __name__ == "__main__":
    main()
