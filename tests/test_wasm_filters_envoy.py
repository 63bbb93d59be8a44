"""The test modules of tests/fixtures/wasm_filters.py and config/add-header.wasm, run in a
real Envoy from a static bootstrap: no control plane involved.

If these fail, ECDS tests that use the same modules cannot be trusted either.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import wasmtime

from tests.fixtures.envoy import (
    EnvoyConfigError,
    EnvoyError,
    EnvoyProcess,
    EnvoyStartupError,
    WasmFilter,
    http_get,
    static_wasm_bootstrap,
    validate_bootstrap,
    wait_for_header,
)
from tests.fixtures.net import free_port
from tests.fixtures.wasm_filters import (
    PROXY_WASM_ABI_EXPORT,
    compile_wat,
    config_echo_filter,
    failing_filter,
    header_filter,
    not_wasm,
    validate_module,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_WAT = ROOT / "config" / "add-header.wat"
EXAMPLE_WASM = ROOT / "config" / "add-header.wasm"

REQUIRED_EXPORTS = {
    "memory",
    PROXY_WASM_ABI_EXPORT,
    "proxy_on_memory_allocate",
    "proxy_on_context_create",
    "proxy_on_vm_start",
    "proxy_on_configure",
    "proxy_on_response_headers",
}

MODULES: dict[str, Callable[[], bytes]] = {
    "header_filter": header_filter,
    "header_filter_custom": lambda: header_filter("x-custom", 'v "1" \\ é'),
    "config_echo_filter": config_echo_filter,
    "failing_filter_vm_start": lambda: failing_filter("vm_start"),
    "failing_filter_configure": lambda: failing_filter("configure"),
    "example_add_header": EXAMPLE_WASM.read_bytes,
}


def write_module(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / f"{name}.wasm"
    path.write_bytes(data)
    return path


# --- wasmtime only ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_validates_and_exports_proxy_wasm_abi(name: str) -> None:
    data = MODULES[name]()
    module = wasmtime.Module(wasmtime.Engine(), data)
    assert {export.name for export in module.exports} >= REQUIRED_EXPORTS


def test_not_wasm_is_rejected_by_wasmtime() -> None:
    with pytest.raises(wasmtime.WasmtimeError):
        validate_module(not_wasm())


def test_generation_is_deterministic() -> None:
    assert header_filter("x-a", "1") == header_filter("x-a", "1")
    assert header_filter("x-a", "1") != header_filter("x-a", "2")


@pytest.mark.parametrize(("name", "value"), [("", "v"), ("bad name", "v"), ("x-a", "a\r\nb")])
def test_header_filter_rejects_invalid_header(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        header_filter(name, value)


def test_committed_example_wasm_is_built_from_its_wat() -> None:
    assert EXAMPLE_WASM.read_bytes() == compile_wat(EXAMPLE_WAT.read_text())
    tool = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_example_module.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tool.returncode == 0, tool.stderr


# --- in Envoy -----------------------------------------------------------------------------


async def serve(
    envoy_binary: str, tmp_path: Path, filters: list[WasmFilter]
) -> tuple[EnvoyProcess, str]:
    """Bootstrap for ``filters``; returns the (not yet entered) process and the URL."""
    port = free_port()
    yaml_text = static_wasm_bootstrap(listener_port=port, filters=filters)
    return EnvoyProcess(yaml_text, tmp_path, binary=envoy_binary), f"http://127.0.0.1:{port}/"


@pytest.mark.envoy
async def test_header_filter_adds_header(envoy_binary: str, tmp_path: Path) -> None:
    module = write_module(tmp_path, "hdr", header_filter("x-wasm-filter", "A"))
    envoy, url = await serve(envoy_binary, tmp_path, [WasmFilter(module)])
    async with envoy:
        await envoy.wait_live()
        status, _, body = await wait_for_header(url, "x-wasm-filter", "A", timeout=5)
        assert (status, body) == (200, b"ok")
        stats = await envoy.stats(r"^wasm\.envoy\.wasm\.runtime\.v8\.")
        assert stats["wasm.envoy.wasm.runtime.v8.created"] >= 2  # main thread + 1 worker


@pytest.mark.envoy
async def test_config_echo_filter_echoes_plugin_configuration(
    envoy_binary: str, tmp_path: Path
) -> None:
    configuration = '{"greeting": "hello", "n": 1}'
    module = write_module(tmp_path, "echo", config_echo_filter())
    envoy, url = await serve(envoy_binary, tmp_path, [WasmFilter(module, configuration)])
    async with envoy:
        await envoy.wait_live()
        await wait_for_header(url, "x-wasm-config", configuration, timeout=5)


@pytest.mark.envoy
async def test_config_echo_filter_keeps_configurations_apart_in_one_vm(
    envoy_binary: str, tmp_path: Path
) -> None:
    """Two plugins of one module (one VM per thread, two root contexts) each echo their
    own configuration, not the last one configured."""
    module = write_module(tmp_path, "echo", config_echo_filter())
    filters = [WasmFilter(module, "one", name="first"), WasmFilter(module, "two", name="second")]
    envoy, url = await serve(envoy_binary, tmp_path, filters)
    async with envoy:
        await envoy.wait_live()
        for _ in range(3):  # several streams, so context ids move on
            status, headers, _ = await http_get(url)
            assert status == 200
            # encoder filters run in reverse order: "second" adds its header first
            assert headers["x-wasm-config"] == "two, one"


@pytest.mark.envoy
@pytest.mark.parametrize("configuration", [None, "", "mode=demo"])
async def test_example_module_adds_headers(
    envoy_binary: str, tmp_path: Path, configuration: str | None
) -> None:
    envoy, url = await serve(envoy_binary, tmp_path, [WasmFilter(EXAMPLE_WASM, configuration)])
    async with envoy:
        await envoy.wait_live()
        status, headers, body = await wait_for_header(url, "x-wasm-filter", "add-header", timeout=5)
        assert (status, body) == (200, b"ok")
        assert headers.get("x-wasm-config") == (configuration or None)


@pytest.mark.envoy
@pytest.mark.parametrize(
    ("name", "data", "envoy_says"),
    [
        ("vm_start_false", failing_filter("vm_start"), "Failed to start base Wasm"),
        ("configure_false", failing_filter("configure"), "Failed to configure base Wasm plugin"),
        ("not_wasm", not_wasm(), "Failed to parse corrupted Wasm module"),
    ],
)
async def test_envoy_refuses_to_start_with_a_bad_module(
    envoy_binary: str, tmp_path: Path, name: str, data: bytes, envoy_says: str
) -> None:
    module = write_module(tmp_path, name, data)
    envoy, _ = await serve(envoy_binary, tmp_path, [WasmFilter(module)])
    with pytest.raises(EnvoyStartupError) as refused:
        async with envoy:
            pytest.fail("Envoy started with a module it should refuse")
    assert refused.value.returncode not in (None, 0)
    assert "Unable to create Wasm plugin wasm-filter" in refused.value.log
    assert envoy_says in refused.value.log
    # ... and `--mode validate` catches the same problem.
    with pytest.raises(EnvoyConfigError, match="Unable to create Wasm plugin wasm-filter"):
        await validate_bootstrap(envoy.config_path.read_text(), tmp_path, binary=envoy_binary)


@pytest.mark.envoy
async def test_validate_bootstrap(envoy_binary: str, tmp_path: Path) -> None:
    module = write_module(tmp_path, "hdr", header_filter())
    good = static_wasm_bootstrap(listener_port=free_port(), filters=[WasmFilter(module)])
    await validate_bootstrap(good, tmp_path, binary=envoy_binary)
    with pytest.raises(EnvoyConfigError):
        await validate_bootstrap("static_resources: {listeners: 1}\n", tmp_path)


@pytest.mark.envoy
async def test_envoys_run_side_by_side_and_stop(envoy_binary: str, tmp_path: Path) -> None:
    envoy_a, url_a = await serve(
        envoy_binary, tmp_path, [WasmFilter(write_module(tmp_path, "a", header_filter(value="A")))]
    )
    envoy_b, url_b = await serve(
        envoy_binary, tmp_path, [WasmFilter(write_module(tmp_path, "b", header_filter(value="B")))]
    )
    async with envoy_a, envoy_b:
        assert envoy_a.pid != envoy_b.pid and envoy_a.admin_url != envoy_b.admin_url
        await asyncio.gather(envoy_a.wait_live(), envoy_b.wait_live())
        await wait_for_header(url_a, "x-wasm-filter", "A", timeout=5)
        await wait_for_header(url_b, "x-wasm-filter", "B", timeout=5)
        info = await envoy_a.server_info()
        assert info["state"] == "LIVE"
        dump = await envoy_a.config_dump(resource="static_listeners")
        assert "envoy.extensions.filters.http.wasm.v3.Wasm" in str(dump)
        assert "starting main dispatch loop" in envoy_a.log_text()
    assert envoy_a.returncode is not None and envoy_b.returncode is not None
    with pytest.raises(EnvoyError):
        await envoy_a.__aenter__()  # one run per instance
