"""Part 3 content: the batch code review from Zhipu's context-caching guide, grown to a realistic size.

One detailed review instruction is the shared system prompt; twelve short snippets in several
languages are the only part that changes. Every user message opens with "Review" and the file path,
and the paths begin with different words, so a snippet shares exactly the instruction plus that
opening with any earlier request: its cached count does not depend on the order batch workers send in.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["REVIEW_SYSTEM_PROMPT", "SNIPPETS", "Snippet", "review_request"]


class Snippet(NamedTuple):
    path: str
    language: str
    fence: str
    code: str


_CHECKLISTS = (
    (
        "Python",
        "mutable default arguments; bare except or except Exception that hides errors; float for money "
        "(use Decimal or integer minor units); string-built SQL or shell commands; missing context managers "
        "for files, locks and connections; O(n^2) loops over lists where a dict or set lookup works; "
        "unbounded caches on long-lived objects; missing type hints on public functions",
    ),
    (
        "JavaScript and TypeScript",
        "innerHTML or dangerouslySetInnerHTML with user data (XSS); await inside loops where the calls are "
        "independent; unhandled promise rejections; == instead of ===; `this` lost in callbacks; any in "
        "public TypeScript types; secrets or API keys in front-end code",
    ),
    (
        "SQL",
        "SELECT * in application queries; functions applied to indexed columns in WHERE (they defeat the "
        "index); missing LIMIT on user-facing lists; implicit casts; NOT IN with nullable subqueries; "
        "missing transaction around multi-statement writes",
    ),
    (
        "Go",
        "ignored errors; context not passed down or not checked in loops; retries without backoff or "
        "jitter; goroutines without a way to stop; shared maps written without a mutex",
    ),
    (
        "Shell",
        "unquoted variables; rm -rf on a path built from a variable that may be empty; missing "
        "`set -euo pipefail`; parsing ls output; secrets passed on the command line",
    ),
)

_INSTRUCTIONS = """\
You are a senior code reviewer at Northwind Systems. Review the code the user sends and evaluate it
on four aspects, in this order:
1. Code quality and readability: naming, structure, duplication, comments that explain why.
2. Performance: algorithmic complexity, needless allocations or I/O, work done in loops that could be
   done once, N+1 queries.
3. Security: injection (SQL, shell, HTML), secrets in code or logs, unsafe deserialization, missing
   authorization checks, unsafe handling of money or personal data.
4. Best practices: idiomatic use of the language and its standard library, error handling, tests,
   typing, resource cleanup.

Rules for every review:
- Only report real problems in the code shown; do not speculate about code you cannot see, and do not
  pad the review with generic advice. If the snippet is fine, say so in one sentence.
- Give each finding a severity: BLOCKER (wrong results, data loss, security hole), MAJOR (likely bug
  or serious performance problem), MINOR (readability, style, small inefficiency), NIT (taste).
- For every finding, quote the line, explain the problem in one or two sentences, and show the fixed
  code. Prefer the smallest change that fixes the problem.
- Money is never a float. Amounts are integers in minor units or Decimal, and rounding is explicit.
- User input is untrusted until validated: treat every parameter of a public function, every HTTP
  field and every file as hostile.
- Keep the tone factual and kind: the author is a colleague. No sarcasm, no "obviously".

Answer in this format:
Summary: one sentence with the overall verdict (approve, approve with changes, request changes).
Findings: a numbered list, most severe first, each as "[SEVERITY] aspect: problem" followed by the fix.
Suggested version: the complete improved snippet, only if there is at least one MAJOR or BLOCKER.

Language checklists (check these in addition to the four aspects):
"""


_EXAMPLE = """\
Example of the expected answer, for this request:
Review `payments/fees.py` (Python):
```python
def fee(amount, rate=0.029):
    try:
        return round(amount * rate + 0.30, 2)
    except:
        return 0
```

Summary: request changes; the fee is computed in floating point and errors are silently turned into a
zero fee.
Findings:
1. [BLOCKER] Best practices: `except:` returns 0 for any error, including a None amount, so a
   bug becomes a free transaction that nobody notices. Let the error propagate, or validate the input
   and raise ValueError naming the bad value.
2. [MAJOR] Best practices: `amount * rate + 0.30` with floats and `round(..., 2)` gives results that
   are off by a cent for some amounts (round-half-even on binary fractions). Work in integer minor
   units and round explicitly:
   `fee_minor = (amount_minor * RATE_BPS + 5_000) // 10_000 + FIXED_FEE_MINOR`
3. [MINOR] Readability: the magic numbers 0.029 and 0.30 deserve named constants with a comment
   saying where the rates come from (the processor contract) and when they were last checked.
4. [NIT] Best practices: add type hints (`amount_minor: int` and `-> int`) so callers cannot pass floats.
Suggested version:
```python
RATE_BPS = 290  # 2.9 %, processor contract 2025
FIXED_FEE_MINOR = 30  # 0.30 in the invoice currency


def fee(amount_minor: int) -> int:
    if amount_minor < 0:
        raise ValueError(f"amount_minor must be >= 0, got {amount_minor}")
    return (amount_minor * RATE_BPS + 5_000) // 10_000 + FIXED_FEE_MINOR
```
"""


def _instructions() -> str:
    lines = [f"- {language}: {items}." for language, items in _CHECKLISTS]
    return _INSTRUCTIONS + "\n".join(lines) + "\n\n" + _EXAMPLE


REVIEW_SYSTEM_PROMPT = _instructions()
"""Part 3's shared instruction, sent byte-identical with every snippet."""

SNIPPETS = (
    Snippet(
        "billing/totals.py",
        "Python",
        "python",
        "def calculate_sum(numbers):\n    return sum(numbers)\n\n\n"
        "def invoice_total(lines):\n    total = calculate_sum([l['price'] * l['qty'] for l in lines])\n"
        "    return round(total * 1.19, 2)\n",
    ),
    Snippet(
        "accounts/user.py",
        "Python",
        "python",
        "class User:\n    def __init__(self, name, roles=[]):\n        self.name = name\n        self.roles = roles\n\n"
        "    def grant(self, role):\n        self.roles.append(role)\n",
    ),
    Snippet(
        "reports/export.py",
        "Python",
        "python",
        "def print_overdue(items, paid_ids):\n    for i in range(len(items)):\n"
        "        if items[i]['id'] not in paid_ids:  # paid_ids is a list of 50k ids\n"
        "            print(items[i])\n",
    ),
    Snippet(
        "cli/confirm.py",
        "Python",
        "python",
        "def confirm(user_input):\n    if user_input == 'yes' or user_input == 'y':\n        return True\n"
        "    else:\n        return False\n",
    ),
    Snippet(
        "web/search.js",
        "JavaScript",
        "javascript",
        "function showResults(query, results) {\n"
        "  document.getElementById('title').innerHTML = 'Results for ' + query;\n"
        "  results.forEach(r => { list.innerHTML += '<li>' + r.name + '</li>'; });\n}\n",
    ),
    Snippet(
        "api/invoices.ts",
        "TypeScript",
        "typescript",
        "export async function sendAll(ids: any[]) {\n  for (const id of ids) {\n"
        "    await fetch(`/v3/invoices/${id}/send`, { method: 'POST' });\n  }\n}\n",
    ),
    Snippet(
        "sql/overdue_invoices.sql",
        "SQL",
        "sql",
        "SELECT *\nFROM invoices\nWHERE date(due_at) < date('now')\n  AND status = 'open'\n"
        "  AND customer_id NOT IN (SELECT customer_id FROM payment_plans);\n",
    ),
    Snippet(
        "db/queries.py",
        "Python",
        "python",
        "def find_customer(conn, email):\n"
        "    cur = conn.execute(f\"SELECT id, name FROM customers WHERE email = '{email}'\")\n"
        "    return cur.fetchone()\n",
    ),
    Snippet(
        "jobs/retry.go",
        "Go",
        "go",
        "func deliver(ctx context.Context, url string, body []byte) error {\n\tfor {\n"
        '\t\tresp, err := http.Post(url, "application/json", bytes.NewReader(body))\n'
        "\t\tif err == nil && resp.StatusCode < 300 {\n\t\t\treturn nil\n\t\t}\n\t}\n}\n",
    ),
    Snippet(
        "scripts/deploy.sh",
        "Shell",
        "bash",
        "#!/bin/bash\nRELEASE_DIR=$1\nrm -rf $RELEASE_DIR/*\ncp -r build/* $RELEASE_DIR\n"
        'curl -H "Authorization: Bearer $DEPLOY_TOKEN" https://deploy.internal/notify?dir=$RELEASE_DIR\n',
    ),
    Snippet(
        "utils/rates.py",
        "Python",
        "python",
        "_cache = {}\n\n\ndef exchange_rate(base, quote, day):\n    key = (base, quote, day)\n"
        "    if key not in _cache:\n"
        "        _cache[key] = requests.get(RATES_URL, params=dict(b=base, q=quote)).json()\n"
        "    return _cache[key]\n",
    ),
    Snippet(
        "frontend/debounce.js",
        "JavaScript",
        "javascript",
        "function debounce(fn, ms) {\n  let timer;\n  return function () {\n    clearTimeout(timer);\n"
        "    timer = setTimeout(function () { fn.apply(this, arguments); }, ms);\n  };\n}\n",
    ),
)
"""Twelve snippets, each with one or more real problems a reviewer should catch."""


def review_request(snippet: Snippet) -> str:
    """The user message for one snippet, in the shape of the guide's example."""
    return f"Review `{snippet.path}` ({snippet.language}):\n```{snippet.fence}\n{snippet.code}```"
