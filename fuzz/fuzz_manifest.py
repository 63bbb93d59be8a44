"""Fuzz manifest and index handling: served bytes -> parse_manifest -> layout detection,
index entry choice and wasme root ids. Only RegistryError / UnsupportedLayout /
ModuleTooLarge may come out.

Run: .venv/bin/python fuzz/fuzz_manifest.py [libFuzzer flags]
"""

import contextlib
import sys

import aiohttp  # noqa: F401  (dependencies: imported first, so only our code is instrumented)
import atheris
import prometheus_client  # noqa: F401
import structlog  # noqa: F401
import wasmtime  # noqa: F401

with atheris.instrument_imports():
    from xds_server.wasm import ModuleTooLarge, RegistryError, UnsupportedLayout, parse_reference
    from xds_server.wasm.image_layout import wasme_root_ids
    from xds_server.wasm.layouts import choose_index_entry, detect_layout
    from xds_server.wasm.registry import MANIFEST_MEDIA_TYPES, parse_manifest

REF = parse_reference("registry.example/team/x:v1")
TYPES = [*MANIFEST_MEDIA_TYPES, "", "application/json", "text/html"]


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    content_type = TYPES[fdp.ConsumeIntInRange(0, len(TYPES) - 1)]
    raw = fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        _, _, _, doc = parse_manifest(raw, content_type, what="manifest", digest="sha256:0")
    except RegistryError:
        return
    with contextlib.suppress(UnsupportedLayout, ModuleTooLarge):
        detect_layout(doc)
    with contextlib.suppress(UnsupportedLayout, ModuleTooLarge):
        choose_index_entry(doc, REF)
    ids = wasme_root_ids(doc)
    if not all(isinstance(i, str) for i in ids):
        raise AssertionError(ids)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
