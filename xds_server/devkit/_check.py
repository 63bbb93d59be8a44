"""Will Envoy load it? Checks of a built module before it leaves the developer's machine.

Beyond the server's own validation (wasmtime, a ``proxy_abi_version_*`` export), every
import must be one Envoy's proxy-wasm host (proxy-wasm-cpp-host, as in Envoy 1.40)
provides for the module's ABI version, and each declared root id must appear in the
module's data (as UTF-8, C, or UTF-16, AssemblyScript): Envoy asks for it by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import wasmtime

from xds_server.wasm import InvalidModule, validate_module

from ._errors import ModuleRejected

__all__ = ["ModuleReport", "check_module", "host_imports"]



def _words(text: str) -> list[str]:
    return text.split()


# proxy-wasm-cpp-host include/proxy-wasm/exports.h: FOR_ALL_HOST_FUNCTIONS ("env", "proxy_" prefix)
_HOST = _words(
    "log get_status set_property get_property send_local_response get_shared_data set_shared_data "
    "register_shared_queue resolve_shared_queue dequeue_shared_queue enqueue_shared_queue "
    "get_header_map_value add_header_map_value replace_header_map_value remove_header_map_value "
    "get_header_map_pairs set_header_map_pairs get_header_map_size get_buffer_status get_buffer_bytes "
    "set_buffer_bytes http_call grpc_call grpc_stream grpc_close grpc_cancel grpc_send "
    "set_tick_period_milliseconds get_current_time_nanoseconds define_metric increment_metric "
    "record_metric get_metric set_effective_context done call_foreign_function"
)
# ... FOR_ALL_HOST_FUNCTIONS_ABI_SPECIFIC, registered per ABI version (src/wasm.cc)
_ABI_SPECIFIC = {
    "proxy_abi_version_0_1_0": ("get_configuration", "continue_request", "continue_response", "clear_route_cache"),
    "proxy_abi_version_0_2_0": ("continue_stream", "close_stream"),
    "proxy_abi_version_0_2_1": ("continue_stream", "close_stream", "get_log_level"),
}
# FOR_ALL_WASI_FUNCTIONS, under both "wasi_unstable" and "wasi_snapshot_preview1"
_WASI = _words(
    "fd_write fd_read fd_seek fd_close fd_fdstat_get fd_fdstat_set_flags fd_fdstat_set_rights "
    "environ_get environ_sizes_get args_get args_sizes_get clock_time_get clock_res_get fd_advise "
    "fd_allocate fd_datasync fd_filestat_set_size fd_filestat_set_times fd_pread fd_pwrite fd_readdir "
    "fd_renumber fd_sync fd_tell path_create_directory path_filestat_set_times path_link path_readlink "
    "path_remove_directory path_rename path_symlink path_unlink_file sock_accept sock_recv sock_send "
    "sock_shutdown random_get sched_yield poll_oneoff proc_exit path_open fd_prestat_get "
    "fd_prestat_dir_name path_filestat_get fd_filestat_get"
)


def host_imports(abi: str) -> frozenset[tuple[str, str]]:
    """(module, name) pairs Envoy's host provides to a module exporting ``abi``."""
    names = {("env", f"proxy_{n}") for n in (*_HOST, *_ABI_SPECIFIC.get(abi, ()))}
    names |= {("env", "pthread_equal"), ("env", "emscripten_notify_memory_growth")}
    names |= {(m, n) for m in ("wasi_unstable", "wasi_snapshot_preview1") for n in _WASI}
    return frozenset(names)


@dataclass(frozen=True, slots=True)
class ModuleReport:
    """What a module offers Envoy: size, ABI version(s), imports and root ids."""

    size: int
    abi_versions: tuple[str, ...]
    imports: tuple[str, ...]
    root_ids: tuple[str, ...]


def _imports(data: bytes) -> list[tuple[str, str]]:
    module = wasmtime.Module(wasmtime.Engine(), data)
    return [(str(i.module), str(i.name or "")) for i in module.imports]


def check_module(data: bytes, *, where: str, root_ids: tuple[str, ...] = ()) -> ModuleReport:
    """Validate ``data`` as Envoy would load it; raise :class:`ModuleRejected` saying why."""
    try:
        abi = validate_module(data, where=where)
    except InvalidModule as exc:
        raise ModuleRejected(str(exc)) from None
    known = [a for a in abi if a in _ABI_SPECIFIC]
    if not known:
        raise ModuleRejected(f"{where}: ABI {', '.join(abi)} is not one Envoy 1.40 supports "
                             f"({', '.join(_ABI_SPECIFIC)})")
    imports = _imports(data)
    provided = host_imports(known[0])
    missing = [f"{m}.{n}" for m, n in imports if (m, n) not in provided]
    if missing:
        raise ModuleRejected(
            f"{where} imports what Envoy's proxy-wasm host does not provide for {known[0]}: "
            f"{', '.join(missing)} (Envoy would refuse it: 'Failed to load Wasm module due to a "
            "missing import')"
        )
    for root_id in root_ids:
        if root_id and root_id.encode() not in data and root_id.encode("utf-16-le") not in data:
            raise ModuleRejected(f"{where}: root id {root_id!r} does not appear in the module; "
                                 "the module must register that root context (filter.yaml root_id)")
    return ModuleReport(size=len(data), abi_versions=tuple(abi),
                        imports=tuple(f"{m}.{n}" for m, n in imports), root_ids=root_ids)
