"""Command line: `python -m cache_integrations doctor trace.jsonl`."""

from __future__ import annotations

import argparse
import sys

from .doctor import doctor_report, read_trace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cache_integrations", description="cache_integrations tools")
    sub = parser.add_subparsers(dest="command", required=True)
    doctor = sub.add_parser("doctor", help="explain the cache misses recorded in a diagnostics trace (JSONL)")
    doctor.add_argument("trace", help="a trace written by a handler created with trace=...")
    doctor.add_argument("--buckets", type=int, default=8, help="rows of the hit-rate-over-time table")
    args = parser.parse_args(argv)
    if args.buckets < 1:
        parser.error(f"--buckets: expected an integer >= 1, got {args.buckets}")
    try:
        trace = read_trace(args.trace)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(doctor_report(trace, buckets=args.buckets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
