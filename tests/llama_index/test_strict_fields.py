"""LlamaIndex LLMs: unknown constructor arguments fail with a did-you-mean; everything valid still works."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cache_integrations import ConfigurationError
from cache_integrations.llama_index import GLM, Gemini
from cache_integrations.testing import Emulator

from .conftest import make_gemini, make_glm


def test_a_misspelled_base_url_fails_with_a_hint(emu: Emulator) -> None:
    with pytest.raises(ConfigurationError) as info:
        make_glm(emu, base_ur="http://localhost:9999/v4")
    assert str(info.value).startswith("GLM: unknown argument 'base_ur'; did you mean 'base_url'? Allowed: ")
    assert emu.counters.requests_total == 0


def test_a_misspelled_temperature_is_not_dropped(emu: Emulator, clock: object) -> None:
    with pytest.raises(
        ConfigurationError, match=r"Gemini: unknown argument 'temprature'; did you mean 'temperature'\?"
    ):
        make_gemini(emu, clock, temprature=5)  # type: ignore[arg-type]


def test_framework_fields_are_still_accepted(emu: Emulator) -> None:
    llm = make_glm(emu, system_prompt="Be brief.", context_window=8000, temperature=0.2, additional_kwargs={"a": 1})
    assert llm.system_prompt == "Be brief." and llm.metadata.context_window == 8000


def test_serialized_llm_round_trips(emu: Emulator) -> None:
    llm = make_glm(emu, temperature=0.3, max_tokens=50)
    data = llm.to_dict()
    again = GLM.from_dict(data, api_key="sk-another")
    assert (again.temperature, again.max_tokens, again.model) == (0.3, 50, llm.model)


def test_model_validate_forbids_extra_fields_too() -> None:
    with pytest.raises(ValidationError, match="base_ur"):
        Gemini.model_validate({"api_key": "k", "base_ur": "http://x"})
