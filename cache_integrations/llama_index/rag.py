"""Cache-friendly retrieval-augmented generation for LlamaIndex.

Prefix caches (GLM, OpenAI, Gemini implicit and explicit) serve only a byte-identical request
prefix, so what changes on every turn must come last. LlamaIndex's stock `ContextChatEngine` puts
the retrieved context at the top of the *system* message, ahead of the system prompt itself and of
the whole history (`context_template + system_prompt`): every turn changes the first message and
nothing after its first few tokens can be served from cache. Two building blocks fix that:

* `CacheFriendlyContextChatEngine` keeps the system prompt and the history first and puts the
  retrieved context together with the question in the newest user turn. The stored history keeps
  the plain question, so each request's system prompt and history extend the previous request's
  and are served from the provider's cache; only the newest turn is new.
* `StableNodeOrder` orders retrieved nodes by a stable key (node id, or metadata such as a source
  path and page) instead of by score, so the same nodes always form the same context text; add it
  to query engines whose prompts put the context before the question.

Example:
    ```python
    from llama_index.core import VectorStoreIndex
    from cache_integrations.llama_index import GLM, CacheFriendlyContextChatEngine, StableNodeOrder

    index = VectorStoreIndex.from_documents(documents)
    chat = CacheFriendlyContextChatEngine.from_defaults(
        retriever=index.as_retriever(similarity_top_k=3),
        llm=GLM(model="glm-4.7"),
        system_prompt=LONG_SUPPORT_INSTRUCTIONS,
    )
    chat.chat("How do I reset my password?")
    chat.chat("And on the mobile app?")  # instructions + first turn come from the cache

    query_engine = index.as_query_engine(node_postprocessors=[StableNodeOrder(key=["file_path", "page_label"])])
    ```

Memory that evicts from the front (a token limit reached) shifts the prefix on every later turn;
give the engine a memory large enough for the conversation when caching matters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    MessageRole,
)
from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CallbackManager, trace_method
from llama_index.core.chat_engine import ContextChatEngine
from llama_index.core.chat_engine.types import AgentChatResponse, StreamingAgentChatResponse
from llama_index.core.llms.llm import LLM
from llama_index.core.memory import BaseMemory
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.prompts import PromptTemplate
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
from llama_index.core.tools.types import ToolOutput
from llama_index.core.types import Thread

from ..layout import stable_order

__all__ = ["DEFAULT_CONTEXT_QUESTION_TEMPLATE", "CacheFriendlyContextChatEngine", "StableNodeOrder"]

DEFAULT_CONTEXT_QUESTION_TEMPLATE = (
    "Context information is below.\n"
    "--------------------\n"
    "{context_str}\n"
    "--------------------\n"
    "Using the context information and the conversation so far, answer the question.\n"
    "Question: {query_str}"
)
"""The newest user turn: retrieved context first, then the question."""


def _rank(value: Any) -> tuple[int, Any]:
    """A sort key that orders numbers numerically and never compares numbers with strings."""
    if value is None:
        return (2, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))


class StableNodeOrder(BaseNodePostprocessor):
    """Order retrieved nodes by a stable key instead of by retrieval score.

    `key` names the metadata field(s) to sort by (for example ``["file_path", "page_label"]``);
    the node id always breaks ties, so distinct nodes are never merged. Without `key`, nodes are
    ordered by node id. Duplicate nodes (same id) are kept once.
    """

    key: str | list[str] | None = Field(
        default=None, description="Metadata key(s) to order by; the node id breaks ties (default: node id only)."
    )

    @classmethod
    def class_name(cls) -> str:
        return "StableNodeOrder"

    def _sort_key(self, node: NodeWithScore) -> tuple[Any, ...]:
        keys = [self.key] if isinstance(self.key, str) else list(self.key or ())
        metadata = node.node.metadata or {}
        return (*(_rank(metadata.get(k)) for k in keys), (1, node.node.node_id))

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        return stable_order(nodes, self._sort_key)

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        return self._postprocess_nodes(nodes, query_bundle)


class CacheFriendlyContextChatEngine(ContextChatEngine):
    """A context chat engine whose requests stay a cacheable prefix-extension of each other.

    Request layout: ``[*prefix_messages (system prompt), *history, user(context + question)]``.
    The context template fills ``{context_str}`` and ``{query_str}`` (a template without
    ``{query_str}`` gets the question appended); memory stores the plain question and the answer.
    Construct it like `ContextChatEngine` (``from_defaults(retriever=..., llm=..., system_prompt=...)``).
    One LLM call per turn; no refine pass.
    """

    def __init__(
        self,
        retriever: BaseRetriever,
        llm: LLM,
        memory: BaseMemory,
        prefix_messages: list[ChatMessage],
        node_postprocessors: list[BaseNodePostprocessor] | None = None,
        context_template: str | PromptTemplate | None = None,
        context_refine_template: str | PromptTemplate | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        super().__init__(
            retriever,
            llm,
            memory,
            prefix_messages,
            node_postprocessors=node_postprocessors,
            context_template=context_template or DEFAULT_CONTEXT_QUESTION_TEMPLATE,
            context_refine_template=context_refine_template,
            callback_manager=callback_manager,
        )

    # -- request building -------------------------------------------------------------------------

    def _user_turn(self, message: str, nodes: Sequence[NodeWithScore]) -> ChatMessage:
        context_str = "\n\n".join(n.node.get_content(metadata_mode=MetadataMode.LLM).strip() for n in nodes)
        template = self._context_template
        if "query_str" in template.template_vars:
            content = template.format(context_str=context_str, query_str=message)
        else:
            content = template.format(context_str=context_str) + message
        return ChatMessage(role=MessageRole.USER, content=content)

    def _llm_messages(
        self, message: str, nodes: Sequence[NodeWithScore], history: Sequence[ChatMessage]
    ) -> list[ChatMessage]:
        messages = [*self._prefix_messages, *history, self._user_turn(message, nodes)]
        return self._llm._extend_messages(messages)  # the LLM's own system_prompt, if set, goes first

    @staticmethod
    def _sources(message: str, nodes: list[NodeWithScore]) -> list[ToolOutput]:
        return [ToolOutput(tool_name="retriever", content=str(nodes), raw_input={"message": message}, raw_output=nodes)]

    # -- chat ---------------------------------------------------------------------------------------

    @trace_method("chat")
    def chat(
        self,
        message: str,
        chat_history: list[ChatMessage] | None = None,
        prev_chunks: list[NodeWithScore] | None = None,
    ) -> AgentChatResponse:
        if chat_history is not None:
            self._memory.set(chat_history)
        nodes = self._get_nodes(message)
        if not nodes and prev_chunks is not None:
            nodes = prev_chunks
        history = self._memory.get(input=message)
        response = self._llm.chat(self._llm_messages(message, nodes, history))
        answer = response.message.content or ""
        self._memory.put(ChatMessage(role=MessageRole.USER, content=message))
        self._memory.put(ChatMessage(role=MessageRole.ASSISTANT, content=answer))
        return AgentChatResponse(response=answer, sources=self._sources(message, nodes), source_nodes=nodes)

    @trace_method("chat")
    async def achat(
        self,
        message: str,
        chat_history: list[ChatMessage] | None = None,
        prev_chunks: list[NodeWithScore] | None = None,
    ) -> AgentChatResponse:
        if chat_history is not None:
            await self._memory.aset(chat_history)
        nodes = await self._aget_nodes(message)
        if not nodes and prev_chunks is not None:
            nodes = prev_chunks
        history = await self._memory.aget(input=message)
        response = await self._llm.achat(self._llm_messages(message, nodes, history))
        answer = response.message.content or ""
        await self._memory.aput(ChatMessage(role=MessageRole.USER, content=message))
        await self._memory.aput(ChatMessage(role=MessageRole.ASSISTANT, content=answer))
        return AgentChatResponse(response=answer, sources=self._sources(message, nodes), source_nodes=nodes)

    @trace_method("chat")
    def stream_chat(
        self,
        message: str,
        chat_history: list[ChatMessage] | None = None,
        prev_chunks: list[NodeWithScore] | None = None,
    ) -> StreamingAgentChatResponse:
        if chat_history is not None:
            self._memory.set(chat_history)
        nodes = self._get_nodes(message)
        if not nodes and prev_chunks is not None:
            nodes = prev_chunks
        history = self._memory.get(input=message)
        stream = self._llm.stream_chat(self._llm_messages(message, nodes, history))
        self._memory.put(ChatMessage(role=MessageRole.USER, content=message))

        def text_only(responses: ChatResponseGen) -> ChatResponseGen:
            text = ""
            for r in responses:
                text += r.delta or ""
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=r.delta)

        chat_response = StreamingAgentChatResponse(
            chat_stream=text_only(stream), sources=self._sources(message, nodes), source_nodes=nodes
        )
        thread = Thread(target=chat_response.write_response_to_history, args=(self._memory,))
        chat_response.write_response_to_history_thread = thread
        thread.start()
        return chat_response

    @trace_method("chat")
    async def astream_chat(
        self,
        message: str,
        chat_history: list[ChatMessage] | None = None,
        prev_chunks: list[NodeWithScore] | None = None,
    ) -> StreamingAgentChatResponse:
        if chat_history is not None:
            await self._memory.aset(chat_history)
        nodes = await self._aget_nodes(message)
        if not nodes and prev_chunks is not None:
            nodes = prev_chunks
        history = await self._memory.aget(input=message)
        stream = await self._llm.astream_chat(self._llm_messages(message, nodes, history))
        await self._memory.aput(ChatMessage(role=MessageRole.USER, content=message))

        async def text_only(responses: ChatResponseAsyncGen) -> ChatResponseAsyncGen:
            text = ""
            async for r in responses:
                text += r.delta or ""
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=r.delta)

        chat_response = StreamingAgentChatResponse(
            achat_stream=text_only(stream), sources=self._sources(message, nodes), source_nodes=nodes
        )
        chat_response.awrite_response_to_history_task = asyncio.create_task(
            chat_response.awrite_response_to_history(self._memory)
        )
        return chat_response
