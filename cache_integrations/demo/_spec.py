"""Part 2 content: a long technical specification and eight questions a reader would ask about it.

Mirrors the "long document" example of Zhipu's context-caching guide: the document goes into the
system message once and every question is a fresh request with that same prefix. The spec is
rendered from structured data (services, tables, endpoints, events, SLOs), so it is plausible,
internally consistent and byte-identical on every run.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["SPEC_DOCUMENT", "SPEC_QUESTIONS", "SPEC_SYSTEM_PROMPT"]


class _Service(NamedTuple):
    name: str
    role: str
    runtime: str
    store: str
    scaling: str


class _Column(NamedTuple):
    name: str
    type: str
    rule: str
    meaning: str


class _Table(NamedTuple):
    name: str
    purpose: str
    columns: tuple[_Column, ...]


class _Endpoint(NamedTuple):
    method: str
    path: str
    summary: str
    body: str
    errors: str
    idempotent: bool


class _Event(NamedTuple):
    name: str
    trigger: str
    payload: str


class _Slo(NamedTuple):
    surface: str
    availability: str
    latency: str
    window: str


_TITLE = "Northwind Ledger Payments Platform, Technical Specification, version 3.2 (approved)"

_SCOPE = """\
1. Purpose and scope

This specification describes the Payments Platform behind Northwind Ledger: the services that take
an invoice from "issued" to "paid and reconciled", the data they own, the public REST API (version
v3), the webhook contract, and the operational targets the platform is held to. It is the reference
for engineers changing the platform, for Solutions Engineers answering integration questions, and for
auditors reviewing how money movements are recorded. Where this document and the code disagree, the
disagreement is a defect and is filed against whichever one is wrong; neither wins by default.

Out of scope: the invoice editor and PDF rendering (Documents spec), e-mail delivery (Messaging spec),
and the accounting exports (Integrations spec). Terms: a workspace is one Northwind customer; a payer
is the workspace's own customer who pays an invoice; minor units are the smallest unit of a currency
(cents for USD); all timestamps are UTC in RFC 3339 format with millisecond precision.
"""

_ARCH_INTRO = """\
2. Architecture

The platform is a set of eight services behind one API gateway. Services communicate synchronously
over gRPC inside the cluster for reads and for commands that need an immediate answer, and
asynchronously through an ordered event log (Kafka, one topic per aggregate, keyed by workspace id,
so events of one workspace are processed in order). Every money movement is written first to the
ledger service as a balanced double-entry transaction; all other services derive their state from
ledger events and may be rebuilt from them. The services, what each one owns, how it runs and how it
scales:
"""

_SERVICES = (
    _Service(
        "api-gateway",
        "authenticates API keys and OAuth tokens, enforces rate limits, routes requests",
        "Envoy with a Go auth filter",
        "Redis for rate-limit counters",
        "horizontal, 6 to 40 pods on CPU",
    ),
    _Service(
        "invoices",
        "owns invoices, line items, credit notes and their state machine",
        "Kotlin on the JVM 21",
        "PostgreSQL 16 (primary plus two replicas)",
        "horizontal, 4 to 24 pods",
    ),
    _Service(
        "payments",
        "creates payment intents, talks to the card and bank processors, handles 3-D Secure",
        "Go 1.22",
        "PostgreSQL 16",
        "horizontal, 4 to 32 pods on request rate",
    ),
    _Service(
        "ledger",
        "the double-entry ledger: accounts, transactions, balances; the source of truth for money",
        "Go 1.22",
        "PostgreSQL 16 with synchronous replication",
        "vertical first, sharded by workspace above 2 TB",
    ),
    _Service(
        "payouts",
        "batches settled funds into payouts to workspace bank accounts, applies holds",
        "Kotlin on the JVM 21",
        "PostgreSQL 16",
        "single active instance per region with leader election",
    ),
    _Service(
        "reconciliation",
        "imports bank feeds and statements and matches them to ledger transactions",
        "Python 3.12 workers",
        "PostgreSQL 16 plus object storage for raw files",
        "queue-driven, 2 to 50 workers",
    ),
    _Service(
        "webhooks",
        "delivers platform events to workspace endpoints with signing and retries",
        "Go 1.22",
        "PostgreSQL 16 for delivery state",
        "horizontal, 3 to 20 pods on queue depth",
    ),
    _Service(
        "risk",
        "scores new workspaces and payouts, places and releases holds",
        "Python 3.12 with a gradient-boosted model",
        "PostgreSQL 16 and a feature store",
        "horizontal, 2 to 8 pods",
    ),
)

_TABLES = (
    _Table(
        "invoices",
        "one row per invoice, owned by the invoices service",
        (
            _Column("id", "text", "primary key, prefix inv_", "public identifier, never reused"),
            _Column("workspace_id", "text", "not null, indexed", "owning workspace"),
            _Column("number", "text", "unique per workspace", "human-facing invoice number"),
            _Column("status", "enum", "draft, open, paid, void, uncollectible", "state machine position"),
            _Column("currency", "char(3)", "ISO 4217, not null", "invoice currency"),
            _Column("total_minor", "bigint", "not null, >= 0", "total in minor units, tax included"),
            _Column("amount_due_minor", "bigint", "not null, >= 0", "total minus payments and credit notes"),
            _Column("due_at", "timestamptz", "nullable", "due date; null means due on receipt"),
            _Column("version", "integer", "not null", "optimistic-locking counter, +1 per update"),
        ),
    ),
    _Table(
        "payment_intents",
        "one row per attempt to collect an invoice, owned by the payments service",
        (
            _Column("id", "text", "primary key, prefix pi_", "public identifier"),
            _Column("invoice_id", "text", "foreign key to invoices.id", "invoice being paid"),
            _Column("method", "enum", "card, sepa_debit, ach_debit, bank_transfer", "payment method"),
            _Column("status", "enum", "requires_action, processing, succeeded, failed, canceled", "attempt state"),
            _Column("amount_minor", "bigint", "not null, > 0", "amount of this attempt"),
            _Column("processor_ref", "text", "unique, nullable", "the processor's charge or debit id"),
            _Column("idempotency_key", "text", "unique per workspace", "key supplied by the API caller"),
            _Column("failure_code", "text", "nullable", "NL-3xxx code when the attempt failed"),
        ),
    ),
    _Table(
        "ledger_accounts",
        "accounts of the double-entry ledger, owned by the ledger service",
        (
            _Column("id", "bigint", "primary key", "internal id"),
            _Column("workspace_id", "text", "not null", "owning workspace, or 'platform' for Northwind's own"),
            _Column("kind", "enum", "receivable, processor_clearing, payable, fees, holds", "account type"),
            _Column("currency", "char(3)", "not null", "one currency per account"),
            _Column("balance_minor", "bigint", "maintained by trigger", "sum of entries, cached for reads"),
        ),
    ),
    _Table(
        "ledger_entries",
        "immutable entries of balanced transactions, owned by the ledger service",
        (
            _Column("id", "bigint", "primary key", "internal id"),
            _Column("transaction_id", "uuid", "not null, indexed", "groups the entries of one transaction"),
            _Column("account_id", "bigint", "foreign key to ledger_accounts.id", "account moved"),
            _Column("direction", "enum", "debit, credit", "side of the entry"),
            _Column("amount_minor", "bigint", "not null, > 0", "always positive; direction gives the sign"),
            _Column("effective_at", "timestamptz", "not null", "when the movement counts for balances"),
            _Column("source", "text", "not null", "event that caused it, e.g. payment_intent.succeeded"),
        ),
    ),
    _Table(
        "payouts",
        "transfers of settled funds to a workspace bank account, owned by the payouts service",
        (
            _Column("id", "text", "primary key, prefix po_", "public identifier"),
            _Column("workspace_id", "text", "not null, indexed", "receiving workspace"),
            _Column("status", "enum", "scheduled, in_transit, paid, failed, held", "payout state"),
            _Column("amount_minor", "bigint", "not null, > 0", "net amount after fees"),
            _Column("arrival_date", "date", "not null", "expected arrival at the bank"),
            _Column("hold_reason", "text", "nullable", "set when risk holds the payout"),
        ),
    ),
    _Table(
        "customers",
        "the workspace's own customers (payers), owned by the invoices service",
        (
            _Column("id", "text", "primary key, prefix cus_", "public identifier"),
            _Column("workspace_id", "text", "not null, indexed", "owning workspace"),
            _Column("name", "text", "not null unless erased", "legal or display name"),
            _Column("email", "text", "nullable", "where invoices and reminders go"),
            _Column("billing_address", "jsonb", "nullable", "structured address used for tax"),
            _Column("tax_exempt", "boolean", "default false", "no tax is applied when true"),
            _Column("erased_at", "timestamptz", "nullable", "set by an erasure; personal fields are cleared"),
        ),
    ),
    _Table(
        "payment_methods",
        "saved processor tokens for a customer, owned by the payments service",
        (
            _Column("id", "text", "primary key, prefix pm_", "public identifier"),
            _Column("customer_id", "text", "foreign key to customers.id", "owner of the method"),
            _Column("type", "enum", "card, sepa_debit, ach_debit", "method type"),
            _Column("processor_token", "text", "unique, encrypted", "token from the processor, never a card number"),
            _Column("last4", "char(4)", "not null", "last four digits shown in the dashboard"),
            _Column("mandate_status", "enum", "active, revoked, n/a", "direct-debit mandate state"),
        ),
    ),
    _Table(
        "bank_lines",
        "lines of imported bank statements and feeds, owned by the reconciliation service",
        (
            _Column("id", "text", "primary key, prefix bl_", "public identifier"),
            _Column("account_id", "text", "not null", "the workspace bank account the line belongs to"),
            _Column("booked_at", "date", "not null", "booking date reported by the bank"),
            _Column("amount_minor", "bigint", "not null, signed", "positive for money in, negative for money out"),
            _Column("reference", "text", "nullable", "remittance text as sent by the bank"),
            _Column("match_status", "enum", "unmatched, matched, ignored", "reconciliation state"),
            _Column("matched_transaction_ids", "uuid[]", "empty unless matched", "ledger transactions matched"),
        ),
    ),
    _Table(
        "webhook_deliveries",
        "one row per attempt to deliver an event, owned by the webhooks service",
        (
            _Column("id", "bigint", "primary key", "internal id"),
            _Column("endpoint_id", "text", "not null, indexed", "workspace endpoint receiving the event"),
            _Column("event_id", "text", "not null", "event being delivered, prefix evt_"),
            _Column("attempt", "smallint", "1 to 12", "attempt number"),
            _Column("response_status", "smallint", "nullable", "HTTP status returned by the endpoint"),
            _Column("next_attempt_at", "timestamptz", "nullable", "null once delivered or abandoned"),
        ),
    ),
)

_LEDGER_RULES = """\
Ledger invariants, enforced in the database and checked nightly: (1) the debit and credit entries of
every transaction sum to the same amount per currency; a deferred constraint trigger rejects the
commit otherwise. (2) Entries are never updated or deleted; the table has no UPDATE or DELETE grant
for any role, and corrections are new reversing transactions. (3) Every entry references an account
of the same currency. (4) The nightly audit job recomputes every balance_minor from the entries and
pages the ledger on-call if any cached balance differs by even one minor unit.
"""

_API_INTRO = """\
4. Public REST API (v3)

Base URL https://api.northwind.example/v3. Requests and responses are JSON in UTF-8. Authentication is
a secret API key in the Authorization header (Bearer scheme) or an OAuth 2.0 access token for
partner apps. Amounts are integers in minor units. List endpoints use cursor pagination: pass limit
(1 to 100, default 25) and starting_after with the last id of the previous page; the response carries
has_more. Every response has a Request-Id header that support needs to trace a call.

Idempotency: every POST accepts an Idempotency-Key header (any string up to 255 characters). The
first response for a key is stored for 24 hours and replayed for any retry with the same key and the
same body; the same key with a different body returns 409 idempotency_conflict. Endpoints marked
"idempotency key required" reject POSTs without one with 400 idempotency_key_missing, because a
retried request there could move money twice.

Errors use one shape: an error object with type (invalid_request, authentication, rate_limit,
conflict, processor, internal), code (an NL- code where one exists), message, param when a field is
at fault, and request_id. Rate limits are per workspace and per plan; a 429 carries Retry-After in
seconds. The endpoints:
"""

_ENDPOINTS = (
    _Endpoint(
        "POST",
        "/invoices",
        "create a draft invoice",
        "customer_id, currency, line_items (description, quantity, unit_amount_minor, tax_rate_id), due_at",
        "400 NL-1014, 400 NL-2030, 409 NL-1001",
        False,
    ),
    _Endpoint(
        "GET", "/invoices/{id}", "retrieve an invoice with its line items and payments", "none", "404 not_found", False
    ),
    _Endpoint(
        "GET",
        "/invoices",
        "list invoices, filterable by status, customer_id and created range",
        "none",
        "400 invalid_request",
        False,
    ),
    _Endpoint(
        "POST",
        "/invoices/{id}/finalize",
        "move a draft to open, assign the number, lock line items",
        "none",
        "409 invalid_state, 400 NL-1014",
        False,
    ),
    _Endpoint(
        "POST",
        "/invoices/{id}/send",
        "e-mail the invoice to the customer now",
        "cc (optional list)",
        "409 invalid_state, 422 NL-4207, 422 NL-4210",
        False,
    ),
    _Endpoint(
        "POST",
        "/invoices/{id}/void",
        "void an open invoice; posts a reversing ledger transaction",
        "reason",
        "409 invalid_state",
        True,
    ),
    _Endpoint(
        "POST",
        "/credit_notes",
        "issue a credit note against an invoice",
        "invoice_id, amount_minor, reason",
        "409 amount_exceeds_due",
        True,
    ),
    _Endpoint(
        "POST",
        "/payments",
        "collect an invoice with a saved payment method or a one-off token",
        "invoice_id, amount_minor, payment_method_id or token, confirm (default true)",
        "402 NL-3002, 402 NL-3107, 409 invoice_not_payable, 409 idempotency_conflict, 400 idempotency_key_missing",
        True,
    ),
    _Endpoint(
        "POST",
        "/payments/{id}/confirm",
        "confirm a payment that required customer action (3-D Secure)",
        "return_url",
        "409 invalid_state",
        True,
    ),
    _Endpoint(
        "POST",
        "/payments/{id}/refund",
        "refund all or part of a succeeded payment",
        "amount_minor (optional, default full), reason",
        "409 amount_exceeds_refundable, 402 processor_declined",
        True,
    ),
    _Endpoint(
        "GET", "/payments/{id}", "retrieve a payment intent and its processor status", "none", "404 not_found", False
    ),
    _Endpoint(
        "POST",
        "/customers",
        "create a customer",
        "name, email, billing_address, tax_exempt",
        "400 invalid_request",
        False,
    ),
    _Endpoint(
        "GET",
        "/customers/{id}",
        "retrieve a customer; erased customers return only id and erased_at",
        "none",
        "404 not_found",
        False,
    ),
    _Endpoint(
        "POST",
        "/customers/{id}/erase",
        "erase a customer's personal data (keeps legally required fields)",
        "reason",
        "409 open_invoices_exist",
        True,
    ),
    _Endpoint(
        "POST",
        "/payment_methods",
        "save a processor token for a customer",
        "customer_id, token, type",
        "402 NL-3002, 400 invalid_token",
        True,
    ),
    _Endpoint(
        "DELETE",
        "/payment_methods/{id}",
        "detach a payment method; future debits on it fail",
        "none",
        "404 not_found",
        False,
    ),
    _Endpoint(
        "GET", "/disputes", "list chargebacks with their evidence deadlines", "none", "400 invalid_request", False
    ),
    _Endpoint(
        "POST",
        "/disputes/{id}/evidence",
        "submit evidence for a chargeback before evidence_due_by",
        "files, explanation",
        "409 evidence_window_closed",
        True,
    ),
    _Endpoint("GET", "/payouts", "list payouts with status and arrival date", "none", "400 invalid_request", False),
    _Endpoint(
        "GET", "/payouts/{id}/transactions", "ledger transactions included in a payout", "none", "404 not_found", False
    ),
    _Endpoint("GET", "/balance", "available, pending and held balances per currency", "none", "none", False),
    _Endpoint(
        "POST",
        "/bank_statements",
        "upload a CSV or CAMT.053 statement for reconciliation",
        "file (multipart), account_id",
        "422 NL-5020",
        False,
    ),
    _Endpoint("GET", "/reconciliation/unmatched", "bank lines that no rule matched yet", "none", "none", False),
    _Endpoint(
        "POST",
        "/reconciliation/matches",
        "match a bank line to one or more ledger transactions by hand",
        "bank_line_id, transaction_ids",
        "409 already_matched, 422 amount_mismatch",
        True,
    ),
    _Endpoint(
        "POST",
        "/webhook_endpoints",
        "register an HTTPS endpoint for a list of event types",
        "url, events, description",
        "400 invalid_url",
        False,
    ),
    _Endpoint(
        "DELETE",
        "/webhook_endpoints/{id}",
        "remove an endpoint; pending deliveries are dropped",
        "none",
        "404 not_found",
        False,
    ),
    _Endpoint(
        "GET",
        "/events",
        "list events of the last 30 days, for replaying missed webhooks",
        "none",
        "400 invalid_request",
        False,
    ),
    _Endpoint(
        "POST",
        "/webhook_endpoints/{id}/rotate_secret",
        "rotate the signing secret with a 24-hour overlap",
        "none",
        "404 not_found",
        False,
    ),
)

_EVENTS = (
    _Event("invoice.finalized", "a draft becomes open", "invoice id, number, total_minor, due_at"),
    _Event("invoice.sent", "the invoice e-mail was accepted by the recipient's server", "invoice id, recipient"),
    _Event("invoice.send_failed", "an invoice e-mail could not be sent", "invoice id, NL code (4207 or 4210)"),
    _Event("invoice.paid", "amount_due_minor reaches zero", "invoice id, paid_at, payment ids"),
    _Event("invoice.overdue", "due_at passes with an amount due", "invoice id, days_overdue"),
    _Event("payment.succeeded", "the processor confirms funds", "payment id, invoice id, amount_minor, fee_minor"),
    _Event("payment.failed", "the processor declines or a debit is returned", "payment id, NL code, retryable"),
    _Event("payment.refunded", "a refund is confirmed by the processor", "payment id, refund amount_minor"),
    _Event("payment.disputed", "the payer opens a chargeback", "payment id, dispute reason, evidence_due_by"),
    _Event("payout.paid", "the bank confirms a payout arrived", "payout id, amount_minor, arrival_date"),
    _Event("payout.held", "risk holds a payout", "payout id, hold_reason"),
    _Event("reconciliation.unmatched", "a bank line is still unmatched after 72 hours", "bank line id, amount"),
)

_WEBHOOK_RULES = """\
Delivery contract. Each delivery is an HTTPS POST with the event as JSON and a Northwind-Signature
header: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body" with the endpoint secret>. Receivers must
reject signatures older than 5 minutes. A delivery succeeds on any 2xx answer within 10 seconds;
anything else is retried up to 11 more times (12 attempts in total) with exponential backoff: 1
minute, then 2, 4, 8, 16, 32 minutes, then every 2 hours, so the last attempt happens about 11
hours after the first. Events of one workspace are delivered in order per endpoint; a failing event
does not block later ones, so receivers must tolerate gaps and use the event's created timestamp and
the object's version to order state. An endpoint that fails every delivery for 3 consecutive days is
disabled and the workspace Owner receives an e-mail; re-enabling it does not replay old events, which
can be fetched from GET /events for 30 days.
"""

_VERSIONING = """\
6. Versioning and compatibility

The major version is in the path (/v3). Within a major version we only make additive changes: new
endpoints, new optional request fields, new response fields, new event types and new enum values.
Clients must ignore unknown fields and treat unknown enum values as "other". Breaking changes ship
in a new major version; the previous major version is supported for 18 months after the new one is
generally available, with deprecation headers (Deprecation and Sunset) on every response for the
last 6 months. v2 reaches end of life on 2026-06-30.
"""

_SECURITY = """\
7. Security and compliance

The platform is PCI DSS Level 1 as a service provider; card data never enters Northwind systems,
because card fields are rendered by the processor's hosted components and we store only tokens and
the last four digits. Data is encrypted in transit (TLS 1.2 or newer, HSTS) and at rest (AES-256,
keys in a cloud KMS, rotated yearly). API keys are stored as salted SHA-256 hashes and shown once.
Access to production data requires a just-in-time grant with a ticket reference, expires after 4
hours and is logged to the audit trail, which is append-only and retained for 7 years. The ledger
and payments databases are in the workspace's data residency region (EU: Frankfurt, US: Virginia);
backups are encrypted, kept for 35 days and restored in a drill every quarter.
"""

_SLOS = (
    _Slo("Payments API (POST /payments, POST /payments/{id}/confirm)", "99.95 %", "p99 under 800 ms", "28 days"),
    _Slo("Read endpoints (all GET)", "99.9 %", "p99 under 300 ms", "28 days"),
    _Slo("Webhook first delivery attempt", "99.9 % within 60 s of the event", "p50 under 5 s", "7 days"),
    _Slo("Ledger write path", "99.99 %", "p99 under 150 ms", "28 days"),
    _Slo("Reconciliation matching after a bank line arrives", "99 % within 30 minutes", "n/a", "7 days"),
    _Slo("Payout creation on schedule", "99.9 % created by 10:00 UTC", "n/a", "28 days"),
)

_OPERATIONS = """\
9. Deployment and operations

Every service deploys from its main branch through the same pipeline: build, unit and contract
tests, a canary with 5 % of traffic for 20 minutes in each region, then a progressive rollout to
25 %, 50 % and 100 % with a 10-minute bake at each step. The canary analysis compares error rate and
p99 latency with the stable version and halts the rollout automatically when either is worse by
more than 20 %. Database migrations are expand-and-contract: a release may only add columns, tables
or indexes; removing anything waits until no running version reads it, at least one release later.

Rollback procedure: (1) the on-call engineer presses "halt" on the rollout, which routes all traffic
back to the stable version within 2 minutes; (2) if the release ran a migration, it stays in place
(migrations are backward compatible by the rule above) and is never rolled back by hand; (3) the
engineer posts in #payments-incidents with the release id and Request-Ids of failed calls; (4) if
money movements were affected, the ledger on-call runs the reconciliation report for the time window
and any correction is a reversing transaction reviewed by a second engineer. Freeze windows: no
deployments on the last two business days of a month (month-end invoicing) or during a Severity 1
incident.

On-call: each service has a primary and a secondary on-call engineer, paged by the alerting system on
SLO burn rate (2 % of the monthly error budget in 1 hour, or 5 % in 6 hours). Runbooks live next to
the code of each service and every alert links to its runbook.
"""

_CHANGELOG = (
    (
        "3.2",
        "2025-11-04",
        "refund reasons are mandatory; webhook retries extended from 8 to 12 attempts; "
        "reconciliation.unmatched event added",
    ),
    ("3.1", "2025-06-16", "partial refunds; bank_transfer payment method; GET /payouts/{id}/transactions"),
    ("3.0", "2024-12-02", "v3 API with minor-unit amounts everywhere, cursor pagination, unified error shape"),
    ("2.4", "2024-05-20", "last v2 release: 3-D Secure 2 and SEPA direct debit"),
)


_STATE_MACHINES = """\
Appendix A. State machines

Invoice: draft -> open (finalize; number assigned, line items locked); open -> paid (amount_due_minor
reaches zero through payments or credit notes); open -> void (void; only when no payment succeeded);
open -> uncollectible (manual write-off after 90 days overdue, posts the amount to the workspace's
bad-debt account); uncollectible -> paid (a late payment still arrives). Paid and void are final. Any
other transition returns 409 invalid_state with the current status in the message.

Payment intent: requires_action (3-D Secure or a bank redirect is pending, expires after 24 hours)
-> processing (the processor accepted the attempt) -> succeeded or failed. Card payments usually
settle in seconds; SEPA debits stay in processing for up to 5 business days and ACH debits for up to
4, and either can still turn into failed (a returned debit) for 8 weeks under the payer-protection
rules, which posts a reversing ledger transaction and sends payment.failed with retryable false.
Canceled is reachable from requires_action only.

Payout: scheduled (created at 10:00 UTC on business days for funds that settled) -> in_transit (sent
to the bank) -> paid (bank confirmation) or failed (bank rejected; funds return to the available
balance and the Owner is e-mailed). Risk may move scheduled to held; only the risk service releases
a hold, after which the payout returns to scheduled on the next business day.
"""

_LIMITS = """\
Appendix B. Limits and retention

Per request: at most 500 line items per invoice, 50 recipients in cc, 20 MB per statement file, 100
transaction ids per manual match. Per workspace: 25 webhook endpoints, 10 active API keys, 38
enabled currencies. Rate limits per minute follow the plan: Starter 60, Growth 300, Scale 1,200,
Enterprise by contract; bursts up to twice the limit are allowed for 10 seconds. Retention: events 30
days, webhook delivery logs 90 days, request logs 30 days, idempotency records 24 hours, raw statement
files 13 months, ledger data and invoices for the longest legal retention period among the regions
where the workspace operates, audit trail 7 years.
"""

_DECLINES = (
    ("insufficient_funds", "NL-3002", "yes, after the payer adds funds"),
    ("do_not_honor", "NL-3002", "no, the payer must call their bank"),
    ("expired_card", "NL-3002", "no, a new card is needed"),
    ("authentication_required", "NL-3002", "yes, with 3-D Secure"),
    ("mandate_revoked", "NL-3107", "no, a new mandate is needed"),
    ("account_closed", "NL-3107", "no, a new bank account is needed"),
    ("debit_returned", "NL-3107", "once, after 3 business days"),
    ("processor_unavailable", "NL-3900", "yes, automatically with backoff"),
)

_GLOSSARY = """\
Appendix D. Glossary

Available balance: settled funds not yet in a payout and not held. Pending balance: payments that
succeeded but have not settled with the processor. Held balance: funds risk has held. Settlement:
the processor moving funds to Northwind's clearing account, usually T+2. Clearing account: the
ledger account (kind processor_clearing) that mirrors money held by the processor for a workspace.
Reversing transaction: a new ledger transaction with the opposite entries of an earlier one, the only
way to correct the ledger. Error budget: the share of requests allowed to fail within an SLO window
(for 99.95 % over 28 days, about 20 minutes of full unavailability).
"""

_WORKED_EXAMPLE = """\
Appendix E. Worked example: collecting an invoice and what the ledger records

1. The workspace creates and finalizes invoice inv_8Yt2 for 1,190.00 EUR (1,000.00 net plus 19 % VAT).
   The ledger posts nothing yet: an open invoice is a promise, not a money movement.
2. The payer pays by card through the payment link. The payments service calls the processor:

   POST /v3/payments
   Idempotency-Key: 3f6c1a2e-inv_8Yt2-attempt-1
   {"invoice_id": "inv_8Yt2", "amount_minor": 119000, "payment_method_id": "pm_Q41x", "confirm": true}

   Response 200:
   {"id": "pi_7Hd0", "status": "succeeded", "amount_minor": 119000, "fee_minor": 1815,
    "invoice_id": "inv_8Yt2", "processor_ref": "ch_3Pq9", "created": "2025-11-12T09:14:03.512Z"}

3. The ledger posts one transaction with four entries: debit processor_clearing 119000, credit
   receivable 119000 (the invoice is settled), debit fees 1815, credit processor_clearing 1815 (the
   processor keeps its fee). The invoice moves to paid and invoice.paid and payment.succeeded are
   emitted in that order.
4. Two business days later the processor settles: the funds become available, and the 10:00 UTC
   payout run creates po_2Lk8 for 117185 minor units. When the bank confirms, payout.paid is sent and
   the reconciliation service matches the bank line "NORTHWIND PO_2LK8" to the payout's transactions.
5. If the payer had paid by SEPA debit instead, step 3 would happen only when the debit settles
   (up to 5 business days), and a later returned debit would post the reverse of every entry above.
"""

_OBSERVABILITY = """\
Appendix F. Observability

Every request gets a Request-Id at the gateway; it is propagated through gRPC metadata and event
headers, written to every log line and span, and returned to the caller, so one id follows a payment
from the API call to the ledger entry and the webhook delivery. Logs are structured JSON and never
contain full card numbers, bank account numbers, API keys or webhook secrets; a log scrubber in the
pipeline drops any line that matches those patterns and counts the drops as a defect. Metrics follow
the RED method per endpoint (rate, errors, duration) plus business metrics: payments succeeded per
minute by method, ledger transactions per second, webhook backlog age and unmatched bank lines.
Traces are sampled at 5 % in general and at 100 % for requests that fail or take longer than 1 second.
Dashboards per service are generated from the same definitions as the alerts, so a graph and the
alert that fires from it always agree.
"""

_SCOPES = (
    ("invoices:read", "read invoices, credit notes and customers"),
    ("invoices:write", "create, finalize, send and void invoices; issue credit notes"),
    ("customers:erase", "erase customers; granted only to apps approved by the Privacy team"),
    ("payments:read", "read payment intents, refunds and disputes"),
    ("payments:write", "create and confirm payments and refunds; requires a verified partner app"),
    ("payouts:read", "read payouts, balances and payout transactions"),
    ("reconciliation:write", "upload statements and create manual matches"),
    ("webhooks:manage", "register, delete and rotate webhook endpoints"),
    ("events:read", "list and retrieve events of the last 30 days"),
)

_CAPACITY = (
    ("Peak payment creations", "1,800 per second across regions", "month-end plus 3x headroom"),
    ("Ledger transactions", "6,000 per second per shard", "12 shards provisioned, 4 in use"),
    ("Webhook deliveries", "25,000 per second", "backlog drains within 15 minutes after a 1-hour outage"),
    ("Statement lines imported", "40 million per day", "worker pool autoscaling on queue age"),
)


def _scopes_and_capacity() -> str:
    scopes = [f"- {name}: {meaning}." for name, meaning in _SCOPES]
    capacity = [f"- {what}: {value} ({note})." for what, value, note in _CAPACITY]
    return (
        "Appendix G. OAuth scopes for partner apps (API keys carry every scope of their workspace)\n\n"
        + "\n".join(scopes)
        + "\n\nAppendix H. Capacity plan (reviewed every quarter)\n\n"
        + "\n".join(capacity)
        + "\n"
    )


def _services() -> str:
    rows = [f"- {s.name}: {s.role}. Runs as {s.runtime}; data in {s.store}; scaling: {s.scaling}." for s in _SERVICES]
    return _ARCH_INTRO + "\n" + "\n".join(rows) + "\n"


def _data_model() -> str:
    parts = ["3. Data model", "", "Each table belongs to exactly one service; no service reads another's tables."]
    for t in _TABLES:
        parts += ["", f"Table {t.name}: {t.purpose}."]
        parts += [f"  {c.name} ({c.type}; {c.rule}): {c.meaning}." for c in t.columns]
    return "\n".join(parts) + "\n\n" + _LEDGER_RULES


def _endpoints() -> str:
    rows = []
    for e in _ENDPOINTS:
        key = " Idempotency key required." if e.idempotent else ""
        rows.append(f"{e.method} /v3{e.path}: {e.summary}. Body: {e.body}. Errors: {e.errors}.{key}")
    return _API_INTRO + "\n" + "\n".join(rows) + "\n"


def _webhooks() -> str:
    rows = [f"- {e.name}: sent when {e.trigger}; data: {e.payload}." for e in _EVENTS]
    return "5. Webhooks\n\nEvent types:\n" + "\n".join(rows) + "\n\n" + _WEBHOOK_RULES


def _slos() -> str:
    rows = [f"- {s.surface}: availability {s.availability}, latency {s.latency}, window {s.window}." for s in _SLOS]
    return "8. Service level objectives\n\n" + "\n".join(rows) + "\n"


def _declines() -> str:
    rows = [f"- {code}: reported as {nl}; retry: {retry}." for code, nl, retry in _DECLINES]
    return "Appendix C. Processor decline codes and how they surface\n\n" + "\n".join(rows) + "\n"


def _changelog() -> str:
    rows = [f"- {version} ({date}): {change}." for version, date, change in _CHANGELOG]
    return "10. Change log\n\n" + "\n".join(rows) + "\n"


SPEC_DOCUMENT = "\n".join(
    (
        _TITLE,
        "",
        _SCOPE,
        _services(),
        _data_model(),
        _endpoints(),
        _webhooks(),
        _VERSIONING,
        _SECURITY,
        _slos(),
        _OPERATIONS,
        _changelog(),
        _STATE_MACHINES,
        _LIMITS,
        _declines(),
        _GLOSSARY,
        _WORKED_EXAMPLE,
        _OBSERVABILITY,
        _scopes_and_capacity(),
    )
)
"""The long document of part 2."""

SPEC_SYSTEM_PROMPT = (
    "You answer engineers' questions about the technical specification below. Answer only from the "
    "document, cite the section number you used, and say so when the document does not answer the "
    "question.\n\n" + SPEC_DOCUMENT
)
"""Part 2's system message: instruction plus document, the prefix all eight questions share."""

SPEC_QUESTIONS = (
    "What is the overall architecture of the platform, and which service is the source of truth for money?",
    "How are webhook deliveries retried, and when does an endpoint get disabled?",
    "Which API endpoints require an idempotency key, and what happens if I reuse a key with a different body?",
    "What does the ledger_entries table store, and which invariants protect it?",
    "What are the availability and latency objectives for the Payments API?",
    "How does API versioning work, and what changed in version 3.2?",
    "Which errors can POST /v3/payments return, and which of them are caused by the payer's bank?",
    "A release broke payments in production. Walk me through the rollback procedure.",
)
"""Part 2's questions; each is a fresh request after the same document prefix."""
