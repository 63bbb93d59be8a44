"""The resources the benchmarks push: real TypedExtensionConfigs built by the controller."""

from __future__ import annotations

import hashlib
from functools import lru_cache

from xds_server.cache import Resource
from xds_server.config import FilterSpec
from xds_server.config._model import SourceSpec
from xds_server.controller import Code, build_extension_config

SMALL = "small"      # remote delivery: http_uri + sha256, about 1 KB
INLINE_1M = "1mib"   # 1 MiB of inline module bytes
MEDIUM = "256kib"    # 256 KiB inline, for the slow-consumer scenario


@lru_cache(maxsize=4)
def _blob(size: int) -> bytes:
    return hashlib.sha256(b"seed").digest() * (size // 32)


def make_resource(name: str, version: int, kind: str = SMALL) -> Resource:
    """Version `version` of filter `name`: each version differs in its configuration."""
    config = f'{{"filter":"{name}","version":{version},"pad":"{"x" * 600}"}}'
    if kind == SMALL:
        sha = hashlib.sha256(f"{name}/{version}".encode()).hexdigest()
        code = Code(sha256=sha, url=f"http://127.0.0.1:18080/modules/sha256/{sha}")
        source = SourceSpec("url", code.url or "", sha)
    else:
        size = 2**20 if kind == INLINE_1M else 256 * 2**10
        body = version.to_bytes(8, "big") + _blob(size)[8:]
        sha = hashlib.sha256(body).hexdigest()
        code = Code(sha256=sha, inline=body)
        source = SourceSpec("file", f"/modules/{name}.wasm")
    spec = FilterSpec(name=name, source=source, root_id="bench", vm_id=name,
                      configuration=config, delivery="remote" if kind == SMALL else "inline")
    return Resource.from_message(name, build_extension_config(spec, code, "bench"))
