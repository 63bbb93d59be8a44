"""Compile config/add-header.wat into config/add-header.wasm.

Usage: ``python tools/build_example_module.py [--check]``. With ``--check`` nothing is
written; the exit status is 1 if the committed .wasm differs from a fresh build.
Compilation is deterministic (``wasmtime.wat2wasm``), so a test can compare bytes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import wasmtime

ROOT = Path(__file__).resolve().parent.parent
WAT = ROOT / "config" / "add-header.wat"
WASM = ROOT / "config" / "add-header.wasm"


def build(wat: Path = WAT) -> bytes:
    """The binary module compiled from ``wat``, validated by wasmtime."""
    data = bytes(wasmtime.wat2wasm(wat.read_text()))
    wasmtime.Module(wasmtime.Engine(), data)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    data = build()
    if args.check:
        current = WASM.read_bytes() if WASM.exists() else b""
        if current != data:
            print(f"{WASM} is stale: run {Path(__file__).name}", file=sys.stderr)
            return 1
        print(f"{WASM} is up to date ({len(data)} bytes)")
        return 0
    WASM.write_bytes(data)
    print(f"wrote {WASM} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
