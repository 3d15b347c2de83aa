"""Hand-copied provider responses: an oracle independent of both the emulator and the library.

Each JSON file holds response bodies copied by hand from the providers' public documentation or from
publicly recorded real traffic, with the source URL and dates in its ``source`` / ``recorded`` /
``copied`` fields. Tests on both sides assert against them with expected values written out by hand:
the library's parsers must map them to the right typed results (``test_library_oracle.py``) and the
emulator must answer in the same shape with the same error texts (``test_emulator_oracle.py``).
Neither side imports the other's constants there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def load(name: str) -> dict[str, Any]:
    """The oracle file ``<name>.json``; it must name its source."""
    data = json.loads((HERE / f"{name}.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict) and data.get("source"), f"{name}.json has no source"
    return data


def error(group: str, name: str) -> dict[str, Any]:
    """One entry of an ``errors`` list (``glm_errors`` / ``gemini_errors``)."""
    (entry,) = [e for e in load(group)["errors"] if e["name"] == name]
    assert entry.get("source"), f"{group}.{name} has no source"
    return entry


def sse_bytes(events: list[Any], sep: str) -> bytes:
    """The events framed as ``data:`` lines, the way the provider sent them."""
    return "".join(f"data: {e if isinstance(e, str) else json.dumps(e)}{sep}" for e in events).encode()
