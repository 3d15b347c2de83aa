"""The request an LLM of this package built, handed to the cache usage handlers of the same call.

LlamaIndex announces a chat call (its start event, or the callback manager's ``on_event_start``) before the
LLM has looked at the messages, and both carry the span the call runs in. The LLM publishes the request it
built under that span id; the handlers read it at the call's end instead of converting the messages again.
Nothing is published while no handler is alive, and only the `MAX_PUBLISHED` latest requests are kept.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Any

from llama_index.core.instrumentation.span import active_span_id

from ..messages import ChatRequest

__all__ = ["MAX_PUBLISHED", "current_span", "listen", "publish", "take"]

MAX_PUBLISHED = 256

_published: OrderedDict[str, tuple[ChatRequest, bool]] = OrderedDict()
_lock = threading.Lock()
_listeners: weakref.WeakSet[Any] = weakref.WeakSet()


def listen(handler: Any) -> None:
    """`handler` takes published requests (requests are published only while one is alive)."""
    _listeners.add(handler)


def current_span() -> str | None:
    return active_span_id.get()


def publish(request: ChatRequest, *, layout: bool) -> None:
    """The request built for the call running in the current span (before its layout step when `layout`)."""
    if not _listeners:
        return
    span = active_span_id.get()
    if span is None:
        return
    with _lock:
        _published[span] = (request, layout)
        _published.move_to_end(span)
        while len(_published) > MAX_PUBLISHED:
            _published.popitem(last=False)


def take(span: str | None) -> tuple[ChatRequest, bool] | None:
    """The request published for `span`, as (request, layout); every handler of the call reads it."""
    if span is None:
        return None
    with _lock:
        return _published.get(span)
