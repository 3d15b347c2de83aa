"""Part 4 content: the long document of part 2, pinned in a Gemini cache, and ten new questions about it.

Part 2 leaves the caching to GLM's implicit prefix cache; here the same document is put in an explicit
Gemini ``cachedContents`` resource once (`ChatGemini.cache_context`), every question is sent against
it, and the cache is deleted at the end so its storage stops being billed.
"""

from __future__ import annotations

from ._spec import SPEC_DOCUMENT

__all__ = ["PINNED_DOCUMENT", "PINNED_QUESTIONS", "PINNED_SYSTEM_PROMPT"]

PINNED_DOCUMENT = SPEC_DOCUMENT
"""What part 4 pins: the specification part 2 asks about."""

PINNED_SYSTEM_PROMPT = (
    "You answer engineers' questions about the technical specification you are given. Answer only from "
    "the document, cite the section or appendix you used, and say so when the document does not answer "
    "the question."
)
"""Part 4's system instruction; it is stored in the cache together with the document."""

PINNED_QUESTIONS = (
    "Where is payment data stored for an EU workspace, and how long are backups kept?",
    "How do I verify the Northwind-Signature header of a webhook, and how old may a signature be?",
    "What states can a payout go through, and who can release a payout that risk has held?",
    "How long can a SEPA debit stay in processing, and can it still fail after it succeeded?",
    "Which decline codes are reported as NL-3107, and should my integration retry them?",
    "When are deployments frozen, and what halts a rollout automatically?",
    "How many webhook endpoints and active API keys can one workspace have?",
    "Which invoice status transitions are allowed, and what does an invalid one return?",
    "How long are idempotency records, request logs and audit trail entries retained?",
    "How are database migrations rolled out, and when may a column be removed?",
)
"""Part 4's questions; each is sent as the only new turn after the pinned document."""
