"""Re-record the GLM and Gemini cassettes.

By default against the project's emulator served over loopback: the cassettes are then emulator
recordings in the providers' wire formats as the emulator models them, not captures of the real
services (tests/cassettes/README.md); URLs are rewritten to the real hosts. With ``--real`` against
the real APIs, using ``ZHIPUAI_API_KEY`` and ``GEMINI_API_KEY``. Keys are redacted either way (see
tests/conftest.py); tests/test_no_keys_in_cassettes.py checks it.

    python -m tests.record_cassettes            # emulator
    ZHIPUAI_API_KEY=... GEMINI_API_KEY=... python -m tests.record_cassettes --real
"""

from __future__ import annotations

import os
import subprocess
import sys

from cache_integrations.testing import Emulator

TARGETS = [
    "tests/langchain/test_standard_integration.py",
    "tests/langchain/test_glm_cassettes.py",
    "tests/langchain/test_gemini_standard.py",
]


def main() -> int:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        *TARGETS,
        "--record-mode=rewrite",
        "-p",
        "no:cacheprovider",
        "--benchmark-disable",
        "-q",
    ]
    env = dict(os.environ)
    if "--real" in sys.argv:
        if not (env.get("ZHIPUAI_API_KEY") and env.get("GEMINI_API_KEY")):
            print("--real needs ZHIPUAI_API_KEY and GEMINI_API_KEY", file=sys.stderr)
            return 2
        return subprocess.call(cmd, env=env)
    with Emulator().serve() as server:
        env["ZHIPUAI_BASE_URL"] = server.glm_base_url
        env["ZHIPUAI_API_KEY"] = "emulator-key"
        env["GEMINI_BASE_URL"] = server.gemini_base_url
        env["GEMINI_API_KEY"] = "emulator-key"
        return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    raise SystemExit(main())
