"""Wasm module validation: magic, full validation by wasmtime, proxy-wasm ABI export."""

from __future__ import annotations

import functools

import wasmtime

from .errors import InvalidModule

WASM_MAGIC = b"\x00asm"
ABI_EXPORT_PREFIX = "proxy_abi_version_"


@functools.cache
def _engine() -> wasmtime.Engine:
    return wasmtime.Engine()


def _leb128(data: bytes | bytearray, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise InvalidModule("truncated LEB128 integer")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 35:
            raise InvalidModule("LEB128 integer too long")


def export_names(data: bytes | bytearray) -> list[str]:
    """Names in the export section of an already validated module (no compilation)."""
    names: list[str] = []
    pos = 8
    while pos < len(data):
        section_id = data[pos]
        size, pos = _leb128(data, pos + 1)
        end = pos + size
        if section_id == 7:
            count, p = _leb128(data, pos)
            for _ in range(count):
                length, p = _leb128(data, p)
                names.append(data[p : p + length].decode("utf-8", "replace"))
                p += length + 1  # name, kind byte
                _, p = _leb128(data, p)  # index
            return names
        pos = end
    return names


def validate_module(data: bytes | bytearray, *, where: str) -> list[str]:
    """Check that ``data`` is a valid proxy-wasm module; return the ABI exports found.

    ``where`` (reference and digest) is put in every error message. Raises
    :class:`InvalidModule`. CPU-bound: call it off the event loop for large modules.
    """
    if data[:4] != WASM_MAGIC:
        head = data[:4].hex() or "empty"
        raise InvalidModule(
            f"{where} is not a WebAssembly module (starts with 0x{head}, expected 0x0061736d)"
        )
    try:
        wasmtime.Module.validate(_engine(), data)
    except wasmtime.WasmtimeError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else "invalid"
        raise InvalidModule(f"{where} failed WebAssembly validation: {first_line}") from None
    abi = [name for name in export_names(data) if name.startswith(ABI_EXPORT_PREFIX)]
    if not abi:
        raise InvalidModule(
            f"{where} is not a proxy-wasm module: no export named {ABI_EXPORT_PREFIX}*"
        )
    return abi
