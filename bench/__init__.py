"""Benchmarks (`make bench`): cache efficiency per workload and per-call overhead."""
