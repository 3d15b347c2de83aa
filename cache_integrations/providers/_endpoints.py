"""The providers' default base URLs, importable without the HTTP stack (a model class names them as defaults)."""

from __future__ import annotations

__all__ = ["GLM_BASE_URL", "ZAI_BASE_URL"]

GLM_BASE_URL = "https://open.bigmodel.cn/api/paas/v4"
ZAI_BASE_URL = "https://api.z.ai/api/paas/v4"
