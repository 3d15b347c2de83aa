"""Provider defaults a model class names as field defaults (base URLs, Gemini's upload threshold), importable
without the HTTP stack: importing a chat model must not load httpx."""

from __future__ import annotations

__all__ = ["DEFAULT_FILE_UPLOAD_THRESHOLD", "GEMINI_BASE_URL", "GLM_BASE_URL", "PDF_INLINE_LIMIT", "ZAI_BASE_URL"]

GLM_BASE_URL = "https://open.bigmodel.cn/api/paas/v4"
ZAI_BASE_URL = "https://api.z.ai/api/paas/v4"
GEMINI_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"

PDF_INLINE_LIMIT = 50 * 1024 * 1024
"""An inline PDF may be at most 50 MB."""
DEFAULT_FILE_UPLOAD_THRESHOLD = PDF_INLINE_LIMIT
"""The default `file_upload_threshold`: the largest part that fits inline for every media type (a
50 MB part is ~67 MB in base64, inside the 100 MB request limit, and 50 MB is the PDF limit)."""
