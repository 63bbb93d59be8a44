"""The generated admin gRPC API, driven by a Python client against a real Envoy.

Deploy, swap, roll back, read history and proxy status, stream ACKs with WatchStatus;
errors carry the HTTP API's messages with mapped codes; the committed generated code
equals what grpcio-tools makes from protos/ today.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf import struct_pb2

from tests.fixtures.envoy import EnvoyProcess, wait_for_header
from tests.fixtures.net import free_port
from tests.fixtures.server import running_server, server_bootstrap, write_config
from tests.fixtures.wasm_filters import header_filter
from xds_server.admin._grpc import authorize, proxy_message
from xds_server.admin.v1 import admin_pb2, admin_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
PROTO = "xds_server/admin/v1/admin.proto"
GENERATED = ("admin_pb2.py", "admin_pb2.pyi", "admin_pb2_grpc.py")
Event = admin_pb2.StatusEvent


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'protos'}", f"--python_out={tmp_path}",
         f"--grpc_python_out={tmp_path}", f"--pyi_out={tmp_path}", str(ROOT / "protos" / PROTO)],
        check=True, capture_output=True,
    )
    for name in GENERATED:
        fresh = (tmp_path / "xds_server/admin/v1" / name).read_bytes()
        committed = (ROOT / "xds_server/admin/v1" / name).read_bytes()
        assert fresh == committed, f"{name} is stale: run `make protos`"


def admin_stub(channel: grpc.aio.Channel) -> Any:
    make: Any = admin_pb2_grpc.AdminServiceStub  # generated, untyped
    return make(channel)


def struct(d: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(d)
    return s


async def next_event(events: Any, kind: int, pred: Any = None, timeout: float = 10) -> Any:  # noqa: ASYNC109
    async def scan() -> Any:
        while True:
            e = await events.read()
            assert e is not grpc.aio.EOF
            if e.kind == kind and (pred is None or pred(e)):
                return e

    return await asyncio.wait_for(scan(), timeout)


async def test_deploy_rollback_and_watch_on_real_envoy(tmp_path: Path) -> None:
    v1, v2 = tmp_path / "v1.wasm", tmp_path / "v2.wasm"
    v1.write_bytes(header_filter("x-wasm-filter", "v1"))
    v2.write_bytes(header_filter("x-wasm-filter", "v2"))
    cfg = write_config(tmp_path / "config.yaml", [])
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    async with running_server(cfg) as app, \
            grpc.aio.insecure_channel(f"127.0.0.1:{app.xds_port}") as channel:
        api = admin_stub(channel)
        events = api.WatchStatus(admin_pb2.WatchStatusRequest(include_filter_events=True))
        await events.initial_metadata()  # the watch is registered: nothing is missed from here

        boot = server_bootstrap(app, node_id="e1", filters=["hdr"], listen_port=port)
        async with EnvoyProcess(boot, tmp_path):
            connect = await next_event(events, Event.CONNECT)
            assert connect.node_id == "e1"

            view = await api.ApplyFilter(admin_pb2.ApplyFilterRequest(
                name="hdr", actor="tester",
                specs=[struct({"source": {"file": str(v1)}, "configuration": {"n": 5}})]))
            assert view.revision == 1 and view.action == "deploy"
            assert view.author.startswith("tester (grpc ")
            (spec,) = view.specs
            assert spec.spec["configuration"] == '{"n":5}'  # whole numbers stay integers
            assert spec.module.sha256 and spec.module.size == v1.stat().st_size
            version_1 = spec.version
            deployed = await next_event(events, Event.FILTER_DEPLOYED)
            assert (deployed.filter.name, deployed.filter.revision) == ("hdr", 1)
            ack = await next_event(events, Event.ACK, lambda e: e.resources.get("hdr") == version_1)
            assert ack.node_id == "e1"
            await wait_for_header(url, "x-wasm-filter", "v1")

            view = await api.ApplyFilter(admin_pb2.ApplyFilterRequest(
                name="hdr", specs=[struct({"source": {"file": str(v2)}})]))
            assert view.revision == 2
            version_2 = view.specs[0].version
            await next_event(events, Event.ACK, lambda e: e.resources.get("hdr") == version_2)
            await wait_for_header(url, "x-wasm-filter", "v2")

            view = await api.RollbackFilter(admin_pb2.RollbackFilterRequest(name="hdr", to_revision=1))
            assert view.revision == 3 and view.action == "rollback"
            assert view.specs[0].version == version_1  # content-derived: the same version again
            await next_event(events, Event.ACK, lambda e: e.resources.get("hdr") == version_1)
            await wait_for_header(url, "x-wasm-filter", "v1")

            history = await api.GetHistory(admin_pb2.GetHistoryRequest(name="hdr"))
            assert [r.revision for r in history.history] == [3, 2, 1]
            assert [r.action for r in history.history] == ["rollback", "deploy", "deploy"]
            assert history.history[0].versions == [version_1]
            assert history.history[0].created_at.seconds > 0

            listed = await api.ListFilters(admin_pb2.ListFiltersRequest())
            assert [f.name for f in listed.filters] == ["hdr"]
            got = await api.GetFilter(admin_pb2.GetFilterRequest(name="hdr"))
            assert got.revision == 3 and got.proxies.total == 1 and got.proxies.acked == 1
            assert dict(got.rollout) == {version_1: 1}

            status = await api.GetProxyStatus(admin_pb2.GetProxyStatusRequest(node_id="e1"))
            (proxy,) = status.proxies
            (res,) = proxy.resources
            assert res.name == "hdr" and res.state == admin_pb2.RESOURCE_STATE_ACKED
            assert res.version_acked == version_1 and proxy.connected
            async with aiohttp.ClientSession() as s, \
                    s.get(f"http://127.0.0.1:{app.admin_port}/api/v1/proxies") as r:
                (http_proxy,) = (await r.json())["proxies"]
            assert proxy == proxy_message(http_proxy)  # the same view as the HTTP API
            none = await api.GetProxyStatus(admin_pb2.GetProxyStatusRequest(node_id="nope"))
            assert list(none.proxies) == []

        disconnect = await next_event(events, Event.DISCONNECT)
        assert disconnect.node_id == "e1"
        events.cancel()


@pytest.mark.parametrize(("method", "request_", "code", "message"), [
    ("GetFilter", admin_pb2.GetFilterRequest(name="nope"), grpc.StatusCode.NOT_FOUND, "no filter named 'nope'"),
    ("GetHistory", admin_pb2.GetHistoryRequest(name="nope"), grpc.StatusCode.NOT_FOUND,
     "no filter named 'nope' (no history)"),
    ("DeleteFilter", admin_pb2.DeleteFilterRequest(name="nope"), grpc.StatusCode.NOT_FOUND, "no such filter"),
    ("RollbackFilter", admin_pb2.RollbackFilterRequest(name="nope"), grpc.StatusCode.NOT_FOUND, "no such filter"),
    ("PromoteFilter", admin_pb2.PromoteFilterRequest(name="nope"), grpc.StatusCode.NOT_FOUND, "no such filter"),
    ("ApplyFilter", admin_pb2.ApplyFilterRequest(name="x"), grpc.StatusCode.INVALID_ARGUMENT,
     "'specs' must be a non-empty list of filter specs"),
    ("ApplyFilter", admin_pb2.ApplyFilterRequest(name="x", specs=[struct({"source": {}})]),
     grpc.StatusCode.INVALID_ARGUMENT, "specs[0].source"),
    ("ApplyFilter", admin_pb2.ApplyFilterRequest(name="x", specs=[struct({"source": {"file": "/nonexistent.wasm"}})]),
     grpc.StatusCode.FAILED_PRECONDITION, "does not exist"),
])
async def test_errors_map_to_codes(tmp_path: Path, method: str, request_: Any, code: Any, message: str) -> None:
    cfg = write_config(tmp_path / "config.yaml", [])
    async with running_server(cfg) as app, \
            grpc.aio.insecure_channel(f"127.0.0.1:{app.xds_port}") as channel:
        api = admin_stub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await getattr(api, method)(request_)
        assert err.value.code() == code
        assert message in err.value.details()


async def test_promote_without_canary_is_failed_precondition(tmp_path: Path) -> None:
    mod = tmp_path / "a.wasm"
    mod.write_bytes(header_filter("x-wasm-filter", "A"))
    cfg = write_config(tmp_path / "config.yaml", [{"name": "hdr", "source": {"file": str(mod)}}])
    async with running_server(cfg) as app, \
            grpc.aio.insecure_channel(f"127.0.0.1:{app.xds_port}") as channel:
        api = admin_stub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.PromoteFilter(admin_pb2.PromoteFilterRequest(name="hdr"))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        deleted = await api.DeleteFilter(admin_pb2.DeleteFilterRequest(name="hdr", actor="t"))
        assert deleted.revision == 2
        assert "hdr" not in app.controller.filters


async def test_watch_ends_when_server_stops(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.yaml", [])
    async with running_server(cfg) as app, \
            grpc.aio.insecure_channel(f"127.0.0.1:{app.xds_port}") as channel:
        api = admin_stub(channel)
        events = api.WatchStatus(admin_pb2.WatchStatusRequest())
        await events.initial_metadata()
        await app.stop(grace=5.0)
        assert await asyncio.wait_for(events.read(), 2) is grpc.aio.EOF


class _Abort(Exception):
    pass


class _Context:
    def __init__(self, peer: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self._peer, self._metadata = peer, metadata
        self.code: Any = None

    def peer(self) -> str:
        return self._peer

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    async def abort(self, code: Any, details: str) -> None:
        self.code = code
        raise _Abort(details)


class _Caller:
    def __init__(self, name: str, role: str) -> None:
        self.name, self.role = name, role

    @property
    def can_write(self) -> bool:
        return self.role == "write"


class _Tokens:
    enabled = True

    def caller_for(self, token: str) -> _Caller | None:
        return {"w": _Caller("deployer", "write"), "r": _Caller("dash", "read")}.get(token)


async def test_access_follows_the_http_admin_rule() -> None:
    open_state: Any = SimpleNamespace(tokens=None)
    assert await authorize(open_state, _Context("ipv4:127.0.0.1:5555"), write=True) == ""
    assert await authorize(open_state, _Context("ipv6:[::1]:5555"), write=True) == ""
    remote = _Context("ipv4:10.1.2.3:5555")
    with pytest.raises(_Abort, match="loopback callers only"):
        await authorize(open_state, remote, write=False)
    assert remote.code == grpc.StatusCode.PERMISSION_DENIED

    tokens: Any = SimpleNamespace(tokens=_Tokens())
    anon = _Context("ipv4:10.1.2.3:5555")
    with pytest.raises(_Abort, match="bearer token is required"):
        await authorize(tokens, anon, write=False)
    assert anon.code == grpc.StatusCode.UNAUTHENTICATED
    reader = _Context("ipv4:10.1.2.3:5555", (("authorization", "Bearer r"),))
    assert await authorize(tokens, reader, write=False) == "dash"
    with pytest.raises(_Abort, match="needs role 'write'"):
        await authorize(tokens, reader, write=True)
    assert reader.code == grpc.StatusCode.PERMISSION_DENIED
    writer = _Context("ipv4:10.1.2.3:5555", (("authorization", "Bearer w"),))
    assert await authorize(tokens, writer, write=True) == "deployer"
