"""Build the `TypedExtensionConfig` Envoy receives for a filter spec and its module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envoy.config.core.v3 import base_pb2, extension_pb2, http_uri_pb2
from envoy.extensions.filters.http.wasm.v3 import wasm_pb2 as http_wasm_pb2
from envoy.extensions.filters.network.wasm.v3 import wasm_pb2 as network_wasm_pb2
from envoy.extensions.wasm.v3 import wasm_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2

from xds_server.config import FilterSpec

HTTP_WASM_TYPE_URL = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
NETWORK_WASM_TYPE_URL = "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm"
V8_RUNTIME = "envoy.wasm.runtime.v8"
MODULE_CLUSTER = "xds_server_modules"


@dataclass(frozen=True, slots=True)
class Code:
    """How the module reaches Envoy: Envoy's own kinds of code source. A delivery mode
    (`controller/delivery/`) chooses the `Code` for a spec and module.

    Exactly one of: `inline` bytes, a local `filename`, or a remote `url` (with the
    `sha256` Envoy verifies). `sha256` is always the module's digest.
    `form` (remote only, 0 or 1) picks one of two equivalent encodings that differ only
    in the fetch retry count: Envoy ignores a re-push identical to a config it NACKed,
    so after a code-cache miss the server re-pushes the other form.
    """

    sha256: str
    inline: bytes | None = None
    filename: str | None = None
    url: str | None = None
    form: int = 0


def build_extension_config(spec: FilterSpec, code: Code, root_id: str) -> Any:
    """The `envoy.config.core.v3.TypedExtensionConfig` for `spec` running `code`.

    Pure: the same inputs always give the same message (and so the same version).
    """
    if code.inline is not None:
        source = base_pb2.AsyncDataSource(local=base_pb2.DataSource(inline_bytes=code.inline))
    elif code.filename is not None:
        source = base_pb2.AsyncDataSource(local=base_pb2.DataSource(filename=code.filename))
    elif code.url is not None:
        source = base_pb2.AsyncDataSource(
            remote=base_pb2.RemoteDataSource(
                http_uri=http_uri_pb2.HttpUri(
                    uri=code.url,
                    cluster=MODULE_CLUSTER,
                    timeout=duration_pb2.Duration(seconds=30),
                ),
                sha256=code.sha256,
                retry_policy=base_pb2.RetryPolicy(
                    num_retries=wrappers_pb2.UInt32Value(value=5 - code.form),
                ),
            )
        )
    else:
        raise ValueError("Code needs inline bytes, a filename or a url")
    vm = wasm_pb2.VmConfig(
        vm_id=spec.vm_id,
        runtime=V8_RUNTIME,
        code=source,
        nack_on_code_cache_miss=code.url is not None,
    )
    if spec.env:
        vm.environment_variables.CopyFrom(
            wasm_pb2.EnvironmentVariables(key_values=dict(sorted(spec.env.items())))
        )
    plugin = wasm_pb2.PluginConfig(
        name=spec.name,
        root_id=root_id,
        vm_config=vm,
        failure_policy=wasm_pb2.FailurePolicy.Value(spec.failure_policy),
    )
    if spec.configuration:
        conf = any_pb2.Any()
        conf.Pack(wrappers_pb2.StringValue(value=spec.configuration))
        plugin.configuration.CopyFrom(conf)
    wasm_cls = http_wasm_pb2.Wasm if spec.type == "http" else network_wasm_pb2.Wasm
    typed = any_pb2.Any()
    typed.Pack(wasm_cls(config=plugin))
    return extension_pb2.TypedExtensionConfig(name=spec.name, typed_config=typed)
