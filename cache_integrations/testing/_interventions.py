"""Answers served instead of, or around, the normal one: injected faults, cut streams and held bursts.

A mixin of `Emulator` (kept apart so the core stays about routing and state). It uses the emulator's
lock, counters and armed lists, which `Emulator.__init__` creates.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._context import RequestContext
from ._gate import AnswerGate
from ._http import EmulatorResponse, json_response
from .faults import Endpoint, Fault, default_error_body

__all__ = ["ArmedFault", "Interventions"]


@dataclass
class ArmedFault:
    fault: Fault
    remaining: int


class Interventions:
    """Fault injection (`inject_fault`) and answer gates (`hold_answers`) for `Emulator`."""

    _lock: threading.RLock
    _c: dict[str, Any]
    _faults: list[ArmedFault]
    _gates: list[AnswerGate]

    def inject_fault(
        self,
        status: int | Fault = 429,
        *,
        times: int = 1,
        body: Mapping[str, Any] | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        endpoint: Endpoint | None = None,
        path_prefix: str | None = None,
        method: str | None = None,
    ) -> Fault:
        """Answer the next ``times`` matching requests with an error instead of serving them.

        Pass a status (the endpoint's realistic body is used unless ``body`` is given) or a ``Fault``
        from ``cache_integrations.testing.faults`` (e.g. ``glm_rate_limit()``); keyword arguments
        override the fault's fields. Faults are consumed in injection order.
        """
        base = status if isinstance(status, Fault) else Fault(status=status)
        fault = Fault(
            status=base.status,
            body=body if body is not None else base.body,
            headers=dict(headers) if headers is not None else dict(base.headers),
            endpoint=endpoint if endpoint is not None else base.endpoint,
            path_prefix=path_prefix if path_prefix is not None else base.path_prefix,
            method=method if method is not None else base.method,
            cut_stream_after=base.cut_stream_after,
        )
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._faults.append(ArmedFault(fault, times))
        return fault

    def hold_answers(self, n: int, *, endpoint: Endpoint | None = None, timeout: float = 30.0) -> AnswerGate:
        """Answer the next ``n`` requests (on ``endpoint``, or any) only once all ``n`` have arrived.

        Makes "these requests were in flight together" certain instead of a race with thread scheduling:
        each is processed on arrival (routing, cache lookups, counters) and none is answered, so none can
        complete and write a prefix, before the last one is in. Send them with at least ``n`` concurrent
        workers (``max_concurrency``), or the gate waits for a request the client holds back until
        ``timeout`` seconds pass, when it opens anyway and takes no more requests (a safety net; the test
        then fails on its counts). Gates armed one after another apply in turn. Returns the gate
        (``arrived``, ``is_open``).
        """
        gate = AnswerGate(n, endpoint=endpoint, timeout=timeout)
        with self._lock:
            self._gates.append(gate)
        return gate

    def _take_gate(self, ctx: RequestContext) -> AnswerGate | None:
        self._gates = [g for g in self._gates if not g.is_open]  # a gate open before it filled timed out
        gate = next((g for g in self._gates if g.matches(ctx.endpoint)), None)
        if gate is None:
            return None
        if gate.arrive():
            self._gates.remove(gate)
        return gate

    def clear_faults(self) -> None:
        """Drop all pending faults."""
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> int:
        """How many fault answers are still armed."""
        with self._lock:
            return sum(a.remaining for a in self._faults)

    def _consume(self, predicate: Callable[[Fault], bool]) -> Fault | None:
        for armed in self._faults:
            if predicate(armed.fault):
                armed.remaining -= 1
                if armed.remaining <= 0:
                    self._faults.remove(armed)
                return armed.fault
        return None

    def _take_fault(self, ctx: RequestContext) -> EmulatorResponse | None:
        fault = self._consume(lambda f: f.cut_stream_after is None and f.matches(ctx.endpoint, ctx.method, ctx.path))
        if fault is None:
            return None
        self._c["errors_injected"] += 1
        with contextlib.suppress(ValueError):  # keep the body in the request log even though we refuse it
            ctx.parsed = json.loads(ctx.body) if ctx.body else None
            if isinstance(ctx.parsed, Mapping) and isinstance(ctx.parsed.get("model"), str):
                ctx.model = ctx.parsed["model"]
        if isinstance(fault.body, bytes):
            response = EmulatorResponse(fault.status, {"content-type": "application/json"}, fault.body)
        else:
            payload = fault.body if fault.body is not None else default_error_body(ctx.endpoint, fault.status)
            response = json_response(fault.status, payload, "application/json; charset=UTF-8")
        response.headers.update(fault.headers)
        return response

    def _maybe_cut(self, ctx: RequestContext, response: EmulatorResponse) -> EmulatorResponse:
        if response.stream is None or response.status != 200:
            return response
        fault = self._consume(
            lambda f: f.cut_stream_after is not None and f.matches(ctx.endpoint, ctx.method, ctx.path)
        )
        if fault is None or fault.cut_stream_after is None:
            return response
        self._c["errors_injected"] += 1
        response.stream = list(response.stream)[: fault.cut_stream_after]
        return response
