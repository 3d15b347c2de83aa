"""``python -m cache_integrations.testing``: run the emulator as a foreground HTTP server."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._server import RunningServer
from .emulator import Emulator


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cache_integrations.testing",
        description="Serve the GLM / OpenAI-compatible / Gemini / Anthropic emulator on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument("--stream-chunk-delay", type=float, default=0.0, help="seconds between stream chunks")
    parser.add_argument("--glm-usage-chunk", choices=("finish", "separate"), default="finish")
    parser.add_argument(
        "--glm-stream-usage",
        choices=("requested", "always"),
        default="requested",
        help="GLM stream usage only with stream_options.include_usage (default), or always",
    )
    parser.add_argument(
        "--strict", action="store_true", help="reject unknown models; cache a prompt only once its answer is delivered"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        import uvicorn
    except ImportError:
        print("uvicorn is required: pip install 'cache-integrations[testing]'", file=sys.stderr)
        return 2
    emulator = Emulator(
        latency=args.latency,
        stream_chunk_delay=args.stream_chunk_delay,
        glm_usage_chunk=args.glm_usage_chunk,
        glm_stream_usage=args.glm_stream_usage,
        strict=args.strict,
        seed=args.seed,
    )
    where = RunningServer(host=args.host, port=args.port)
    print(f"cache_integrations emulator on {where.url}")
    print(f"  GLM:    {where.glm_base_url}")
    print(f"  OpenAI: {where.openai_base_url}")
    print(f"  Gemini: {where.gemini_base_url}")
    print(f"  Anthropic: {where.anthropic_base_url}")
    sys.stdout.flush()
    uvicorn.run(emulator.asgi_app, host=args.host, port=args.port, log_level="warning", interface="asgi3")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
