"""Strict mode: the model names the emulator knows, and each provider's answer for one it does not.

The bodies are the providers' own (sources cited per body); they are served only when the emulator
checks model names (``Emulator(strict=True)`` or ``known_models=...``).
"""

from __future__ import annotations

from ._http import EmulatorResponse, json_response

__all__ = [
    "DASHSCOPE_MODELS",
    "DEEPSEEK_MODELS",
    "GEMINI_MODELS",
    "GLM_MODELS",
    "OPENAI_MODELS",
    "unknown_dashscope_model",
    "unknown_deepseek_model",
    "unknown_gemini_model",
    "unknown_glm_model",
    "unknown_openai_model",
]

GLM_MODELS = (
    "glm-4-plus",
    "glm-4-air",
    "glm-4-airx",
    "glm-4-flash",
    "glm-4-long",
    "glm-4.5",
    "glm-4.5-air",
    "glm-4.5-airx",
    "glm-4.5-flash",
    "glm-4.5-x",
    "glm-4.5v",
    "glm-4.6",
    "glm-4.6v",
    "glm-4.6v-flash",
    "glm-4.7",
    "glm-4.7-flash",
    "glm-5",
    "glm-5.1",
    "glm-5.2",
    "glm-5.3",
    "glm-5.3-flash",
)
"""Chat models of Zhipu's open.bigmodel.cn / Z.ai's api.z.ai (2025-2026 model pages)."""

OPENAI_MODELS = ("gpt-4o-mini", "gpt-4.1-mini", "gpt-5-mini", "gpt-5-nano", "gpt-5.6")

DEEPSEEK_MODELS = ("deepseek-chat", "deepseek-reasoner")
"""The two names api.deepseek.com serves (other names answer "Model Not Exist")."""

DASHSCOPE_MODELS = ("qwen-plus", "qwen-max", "qwen-turbo", "qwen-flash", "qwen3-max", "qwen3-coder-plus")

GEMINI_MODELS = (
    "gemini-2.0-flash",
    "gemini-2.0-flash-lite",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-2.5-pro",
    "gemini-3-flash",
    "gemini-3-flash-preview",
    "gemini-3-pro-preview",
    "gemini-3.1-pro-preview",
)

# Business code 1211 "Model does not exist, please check the model code", HTTP 400: the code table of
# https://docs.z.ai/api-reference/api-code (read 2026-11-30); the wire shape {"error": {"code": "1211",
# "message": ...}} with HTTP 400 as quoted from a real answer in Kohaku-Lab/KohakuTerrarium#73
# (2026-07-10, open.bigmodel.cn, Chinese text "模型不存在，请检查模型代码。").
GLM_UNKNOWN_MODEL_MESSAGE = "Model does not exist, please check the model code"


def unknown_glm_model() -> EmulatorResponse:
    return json_response(
        400, {"error": {"code": "1211", "message": GLM_UNKNOWN_MODEL_MESSAGE}}, "application/json; charset=UTF-8"
    )


def unknown_openai_model(model: str) -> EmulatorResponse:
    """OpenAI's 404 ``model_not_found`` (as quoted in TheR1D/shell_gpt#507 and many client issues)."""
    body = {
        "error": {
            "message": f"The model `{model}` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }
    }
    return json_response(404, body, "application/json")


def unknown_gemini_model(model: str, method: str) -> EmulatorResponse:
    """Gemini's 404 NOT_FOUND for a model it does not serve.

    Verbatim in google/adk-python#200 (2025-04-15) and swuecho/chat#597 (2025-02-06):
    ``{"error": {"code": 404, "message": "models/gemini-2.0-pro is not found for API version v1beta, or
    is not supported for generateContent. Call ListModels to see the list of available models and their
    supported methods.", "status": "NOT_FOUND"}}``; a stream names ``StreamGenerateContent``
    (ChatGPTNextWeb/NextChat#4699). ``method`` is the method name Google prints.
    """
    message = (
        f"models/{model} is not found for API version v1beta, or is not supported for {method}. "
        "Call ListModels to see the list of available models and their supported methods."
    )
    return json_response(
        404, {"error": {"code": 404, "message": message, "status": "NOT_FOUND"}}, "application/json; charset=UTF-8"
    )


def unknown_deepseek_model() -> EmulatorResponse:
    """DeepSeek's 400 for a model name it does not serve, verbatim in ConardLi/easy-dataset#9 (2025-03-13),
    langbot-app/LangBot#1643 (2025-09-02) and deepwn/addi#13 (2026-03-30)."""
    body = {
        "error": {
            "message": "Model Not Exist",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_request_error",
        }
    }
    return json_response(400, body, "application/json")


def unknown_dashscope_model(model: str) -> EmulatorResponse:
    """DashScope compatible mode answers with OpenAI's wording ("The model `Qwen-Plus` does not exist or you do
    not have access to it.", AIDotNet/OpenDeepWiki#308, 2025-12-18); status and code as OpenAI's 404."""
    return unknown_openai_model(model)
