"""Batch code review, after Zhipu's context-caching guide: one shared instruction, many snippets.

Every request is the same long review instruction (system) plus one short snippet (user), so all but
the snippet is served from GLM's prefix cache. Two details make the difference:

* the shared instruction comes first and is byte-identical in every request (the snippet goes last);
* the first request runs alone to warm the cache, then the rest go in one `llm.batch(...)`. Sent all
  at once on a cold cache, the concurrent requests would race each other and miss.

Run it:
    python cookbook/batch_code_review.py                        # offline, on the emulator
    ZHIPUAI_API_KEY=... python cookbook/batch_code_review.py    # the real GLM API
"""

from __future__ import annotations

from _common import glm_connection
from langchain_core.messages import HumanMessage, SystemMessage

from cache_integrations.langchain import ChatGLM, get_cache_usage_callback

REVIEW_INSTRUCTION = """\
You are a senior code reviewer. Review the code the user sends on four aspects, in this order:
1. Code quality and readability: naming, structure, duplication, comments that explain why.
2. Performance: algorithmic complexity, needless allocations or I/O, work repeated inside loops.
3. Security: injection (SQL, shell, HTML), secrets in code or logs, unsafe deserialization, missing
   authorization checks, money handled as floats.
4. Best practices: idiomatic use of the language and its standard library, error handling, typing,
   tests, resource cleanup.

Rules:
- Report only real problems in the code shown; if the snippet is fine, say so in one sentence.
- Give every finding a severity: BLOCKER (wrong results, data loss, security hole), MAJOR (likely bug
  or serious performance problem), MINOR (readability, small inefficiency) or NIT (taste).
- Quote the line, explain the problem in one or two sentences, and show the smallest fix.
- Money is never a float: amounts are integers in minor units or Decimal, rounding is explicit.
- Treat every parameter of a public function, every HTTP field and every file as untrusted input.
- Be factual and kind: the author is a colleague.

Answer format:
Summary: one sentence with the verdict (approve, approve with changes, request changes).
Findings: a numbered list, most severe first, each "[SEVERITY] aspect: problem" and the fix.
Suggested version: the complete improved snippet, only if there is a MAJOR or BLOCKER finding.
"""

SNIPPETS = [
    ("Python", "def calculate_sum(numbers):\n    return sum(numbers)\n"),
    ("Python", "class User:\n    def __init__(self, name, roles=[]):\n        self.name, self.roles = name, roles\n"),
    ("Python", "for i in range(len(items)):\n    if items[i] not in seen_list:\n        print(items[i])\n"),
    ("Python", "def total(prices):\n    return round(sum(p * 1.19 for p in prices), 2)\n"),
    ("Python", "def find(db, email):\n    return db.execute(f\"SELECT * FROM users WHERE email = '{email}'\")\n"),
    ("JavaScript", "el.innerHTML = 'Hello ' + params.get('name');\n"),
    ("JavaScript", "for (const id of ids) {\n  await fetch(`/api/items/${id}`, { method: 'DELETE' });\n}\n"),
    ("Go", "resp, _ := http.Get(url)\nbody, _ := io.ReadAll(resp.Body)\n"),
    ("Shell", "rm -rf $BUILD_DIR/*\ncp -r dist/* $BUILD_DIR\n"),
    ("SQL", "SELECT * FROM orders WHERE date(created_at) = date('now') ORDER BY id;\n"),
]


def review_request(language: str, code: str) -> list:
    # The shared instruction first, byte-identical every time; the snippet last.
    return [SystemMessage(REVIEW_INSTRUCTION), HumanMessage(f"Review this {language} code:\n```\n{code}```")]


def main() -> None:
    with glm_connection() as connection:
        llm = ChatGLM(model="glm-4.7", thinking="disabled", max_tokens=600, **connection)
        requests = [review_request(language, code) for language, code in SNIPPETS]

        with get_cache_usage_callback() as handler:
            first = llm.invoke(requests[0])  # warms the cache for the shared instruction
            rest = llm.batch(requests[1:], config={"max_concurrency": 4})

        for n, ((language, _), reply) in enumerate(zip(SNIPPETS, [first, *rest], strict=True), 1):
            usage = reply.usage_metadata
            cached = usage["input_token_details"]["cache_read"]
            print(f"snippet {n:>2} ({language:<10}) cached {cached:>3} of {usage['input_tokens']:>3} input tokens")

    total = handler.total
    print(
        f"\nHit rate {100 * total.hit_rate:.1f} %: {total.cache_read_tokens} of {total.input_tokens} input tokens "
        f"from cache; saved {total.saved:.6f} USD of {total.cost_without_caching:.6f} "
        f"({100 * total.saved / total.cost_without_caching:.1f} %)"
    )
    print()
    print(handler.report())


if __name__ == "__main__":
    main()
