"""Fuzz compat-layer extraction (tar, optionally gzip): only InvalidModule (UnsafeArchive
included) or ModuleTooLarge, never more than the cap returned.

Run: .venv/bin/python fuzz/fuzz_tar.py [libFuzzer flags]
A seed corpus of small valid tars helps: see SECURITY.md.
"""

import sys

import aiohttp  # noqa: F401  (dependencies: imported first, so only our code is instrumented)
import atheris
import prometheus_client  # noqa: F401
import structlog  # noqa: F401
import wasmtime  # noqa: F401

with atheris.instrument_imports():
    from xds_server.wasm import InvalidModule, ModuleTooLarge
    from xds_server.wasm._archive import extract_plugin

CAP = 64 * 1024


def test_one_input(data: bytes) -> None:
    try:
        module = extract_plugin(data, max_bytes=CAP, where="layer", max_members=1000)
    except (InvalidModule, ModuleTooLarge):
        return
    if len(module) > CAP:
        raise AssertionError(f"returned {len(module)} bytes above the cap")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
