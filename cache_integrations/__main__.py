"""Command line: `python -m cache_integrations doctor trace.jsonl [--html report.html]`."""

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
    doctor.add_argument(
        "--html", metavar="REPORT.html", help="also write a self-contained HTML page with the cost plot and misses"
    )
    args = parser.parse_args(argv)
    if args.buckets < 1:
        parser.error(f"--buckets: expected an integer >= 1, got {args.buckets}")
    try:
        trace = read_trace(args.trace)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(doctor_report(trace, buckets=args.buckets))
    if args.html:
        from .doctor_html import write_doctor_html

        try:
            path = write_doctor_html(trace.records, args.html, buckets=args.buckets)
        except OSError as exc:
            print(f"error: cannot write {args.html}: {exc}", file=sys.stderr)
            return 2
        print(f"\nWrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
