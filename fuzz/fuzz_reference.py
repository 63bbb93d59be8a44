"""Fuzz image reference parsing: only InvalidReference, and the canonical form round-trips.

Run: .venv/bin/python fuzz/fuzz_reference.py [libFuzzer flags, e.g. -max_total_time=600]
"""

import sys

import aiohttp  # noqa: F401  (dependencies: imported first, so only our code is instrumented)
import atheris
import prometheus_client  # noqa: F401
import structlog  # noqa: F401
import wasmtime  # noqa: F401

with atheris.instrument_imports():
    from xds_server.wasm import InvalidReference, parse_reference


def test_one_input(data: bytes) -> None:
    text = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(4096)
    try:
        ref = parse_reference(text)
    except InvalidReference:
        return
    again = parse_reference(str(ref))
    if again != ref:
        raise AssertionError(f"{text!r} -> {ref} -> {again}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
