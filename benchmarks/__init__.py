"""Benchmarks: a simulated Envoy fleet against xds-server and a bare gRPC floor.

Run with `python -m benchmarks` (or `make bench`); `--quick` for a small run.
Every scenario prints a table and writes `benchmarks/results/<scenario>.json`.
"""
