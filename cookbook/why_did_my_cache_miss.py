"""Why did my cache miss? A timestamp in the system prompt, found three ways, and the fix.

The classic mistake: ``"The current time is {now}."`` at the top of the system prompt. The time
changes on every call, so every request differs from the previous one right there and the provider
can cache nothing after it: the whole handbook behind it is billed at the full rate every time.

1. `lint_prompt(prompt)` finds it statically, before any call: a template variable in the cached
   part of the prompt (and, on formatted messages, the timestamp itself).
2. At run time the usage handler's diagnostics compare each request with the previous one of its
   conversation and log one warning per cause: where the prefix broke, why, and the fix.
3. With ``trace=...`` the handler writes one JSON line per call, and
   ``python -m cache_integrations doctor TRACE`` turns it into a report: hit rate over time, causes,
   tokens and money lost.

The fix moves the time into the last user message, after everything stable; the recipe runs both
versions and prints their hit rates.

Run it:
    python cookbook/why_did_my_cache_miss.py                        # offline, on the emulator
    ZHIPUAI_API_KEY=... python cookbook/why_did_my_cache_miss.py    # the real GLM API
Writes the trace to ``cookbook/output/why_did_my_cache_miss.jsonl`` (``COOKBOOK_OUTPUT_DIR`` to change).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import datetime

from _common import OUTPUT_DIR, glm_connection, handbook
from langchain_core.messages import SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from cache_integrations.langchain import CacheUsageCallbackHandler, ChatGLM, lint_prompt

# The diagnostics warn through the `logging` module; show warnings inline with the recipe's output.
logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s")

INSTRUCTIONS = "You are Kestrel's support assistant. Answer from the handbook below and quote numbers exactly."
# In a template string the handbook's own braces must be escaped; a SystemMessage is sent verbatim.
TEMPLATE_SAFE_HANDBOOK = handbook().replace("{", "{{").replace("}", "}}")

# Broken: the current time sits at the top of the system prompt.
BROKEN = ChatPromptTemplate.from_messages(
    [
        ("system", INSTRUCTIONS + " The current time is {now}.\n\n" + TEMPLATE_SAFE_HANDBOOK),
        ("human", "{question}"),
    ]
)
# Fixed: the system prompt is constant; the time travels with the question, in the last user message.
FIXED = ChatPromptTemplate.from_messages(
    [
        SystemMessage(INSTRUCTIONS + "\n\n" + handbook()),
        ("human", "{question}\n\n(The current time is {now}.)"),
    ]
)

QUESTIONS = [
    "Is the sandbox rate limit lower than production's?",
    "How long is a label valid?",
    "What happens after a webhook endpoint fails for 3 days?",
    "How long are backups kept?",
    "Who approves refunds above 200 EUR?",
    "When does a Scale customer get a 25 % service credit?",
]


def run(prompt: ChatPromptTemplate, llm: ChatGLM, handler: CacheUsageCallbackHandler) -> None:
    chain = prompt | llm | StrOutputParser()
    for question in QUESTIONS:
        chain.invoke({"now": datetime.now(), "question": question}, config={"callbacks": [handler]})


def main() -> None:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    trace = OUTPUT_DIR / "why_did_my_cache_miss.jsonl"
    trace.unlink(missing_ok=True)  # the handler appends to its trace

    with glm_connection() as connection:
        llm = ChatGLM(model="glm-4.7", thinking="disabled", max_tokens=300, **connection)

        print("\n1. lint_prompt on the template, before any call:")
        for finding in lint_prompt(BROKEN):
            print("  ", finding)
        print("   ... and on the messages it produces:")
        for finding in lint_prompt(BROKEN.format_messages(now=datetime.now(), question="hi")):
            print("  ", finding)
        print(f"   The fixed template: {len(lint_prompt(FIXED))} findings.")

        print("\n2. Six questions through the broken chain (watch for the diagnostics' warning):")
        broken = CacheUsageCallbackHandler(trace=trace)
        run(BROKEN, llm, broken)
        print("\n3. The same questions through the fixed chain:")
        fixed = CacheUsageCallbackHandler()
        run(FIXED, llm, fixed)

    print(f"\n   hit rate before the fix {100 * broken.total.hit_rate:5.1f} %")
    print(f"   hit rate after the fix  {100 * fixed.total.hit_rate:5.1f} %")

    print(f"\n4. python -m cache_integrations doctor {trace}\n")
    doctor = [sys.executable, "-m", "cache_integrations", "doctor", str(trace)]
    print(subprocess.run(doctor, capture_output=True, text=True, check=True).stdout)

    print(f"Cache report, broken prompt\n{broken.report()}")
    print(f"\nCache report, fixed prompt\n{fixed.report()}")


if __name__ == "__main__":
    main()
