"""cache_integrations: LLM context caching for LangChain and LlamaIndex.

The core is framework-agnostic: neutral messages (`messages`), the cache-friendly layout
(`layout`), normalized usage and cost (`usage`, `pricing`, `accounting`), and provider clients
(`providers`). Adapters live in `cache_integrations.langchain` and `cache_integrations.llama_index`.
"""

from __future__ import annotations

from .accounting import CacheLedger, CacheStats, CallRecord
from .errors import (
    AuthenticationError,
    BadRequestError,
    CachedContentNotSupportedError,
    CacheIntegrationsError,
    ConfigurationError,
    DeadlineExceededError,
    ExplicitCachingUnsupportedError,
    FileNotActiveError,
    FileProcessingError,
    FileProcessingFailedError,
    FileProcessingTimeoutError,
    InsufficientBalanceError,
    InvalidRequestError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    PinnedContextDeletedError,
    ProviderConnectionError,
    ProviderError,
    RateLimitError,
    ResponseTooLargeError,
    ServerError,
    UnexpectedRedirectError,
    UploadedFileNotFoundError,
)
from .layout import PrefixFingerprints, apply_layout, canonical_json
from .messages import (
    ChatRequest,
    ChatResponse,
    ForcedTool,
    ImagePart,
    MediaPart,
    Message,
    TextPart,
    ToolCall,
    ToolDefinition,
)
from .pricing import Cost, ModelPrices, PriceBook, default_price_book
from .usage import Usage

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "CacheIntegrationsError",
    "CacheLedger",
    "CacheStats",
    "CachedContentNotSupportedError",
    "CallRecord",
    "ChatRequest",
    "ChatResponse",
    "ConfigurationError",
    "Cost",
    "DeadlineExceededError",
    "ExplicitCachingUnsupportedError",
    "FileNotActiveError",
    "FileProcessingError",
    "FileProcessingFailedError",
    "FileProcessingTimeoutError",
    "ForcedTool",
    "ImagePart",
    "InsufficientBalanceError",
    "InvalidRequestError",
    "MalformedResponseError",
    "MediaPart",
    "Message",
    "ModelPrices",
    "NotFoundError",
    "PermissionDeniedError",
    "PinnedContextDeletedError",
    "PrefixFingerprints",
    "PriceBook",
    "ProviderConnectionError",
    "ProviderError",
    "RateLimitError",
    "ResponseTooLargeError",
    "ServerError",
    "TextPart",
    "ToolCall",
    "ToolDefinition",
    "UnexpectedRedirectError",
    "UploadedFileNotFoundError",
    "Usage",
    "apply_layout",
    "canonical_json",
    "default_price_book",
]
