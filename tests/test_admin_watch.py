"""WatchStatus NACK and rejection events, its token check, and the CSDS STALE state,
over real gRPC streams on 127.0.0.1 (the test xDS client stands in for an Envoy, so a
test decides exactly when it ACKs, NACKs or stays silent)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import yaml
from envoy.admin.v3 import config_dump_shared_pb2
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc

from tests.fixtures.server import running_server, write_config
from tests.fixtures.wasm_filters import header_filter
from tests.xds_client import XdsClient, ack, node, sotw_request
from xds_server.admin._auth import hash_token
from xds_server.admin.v1 import admin_pb2, admin_pb2_grpc
from xds_server.config import parse_filter_spec

Event = admin_pb2.StatusEvent
READ_TOKEN = "read-token-0123456789abcdef"
WRITE_TOKEN = "write-token-0123456789abcdef"


def admin_stub(channel: grpc.aio.Channel) -> Any:
    make: Any = admin_pb2_grpc.AdminServiceStub  # generated, untyped
    return make(channel)


async def next_event(events: Any, kind: int, timeout: float = 20) -> Any:  # noqa: ASYNC109
    """The next event of `kind` (other kinds are skipped)."""
    async def scan() -> Any:
        while True:
            e = await events.read()
            assert e is not grpc.aio.EOF, "the watch ended"
            if e.kind == kind:
                return e

    return await asyncio.wait_for(scan(), timeout)


def modules(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a.wasm", tmp_path / "b.wasm"
    a.write_bytes(header_filter("x-wasm-filter", "A"))
    b.write_bytes(header_filter("x-wasm-filter", "B"))
    return a, b


async def test_watch_streams_nack_and_rejection_events(tmp_path: Path) -> None:
    a, _ = modules(tmp_path)
    cfg = write_config(tmp_path / "config.yaml", [{"name": "hdr", "source": {"file": str(a)}}])
    async with running_server(cfg) as app, \
            grpc.aio.insecure_channel(f"127.0.0.1:{app.xds_port}") as channel:
        api = admin_stub(channel)
        events = api.WatchStatus(admin_pb2.WatchStatusRequest(include_filter_events=True))
        await events.initial_metadata()
        client = XdsClient(f"127.0.0.1:{app.xds_port}")
        try:
            stream = client.sotw()
            await stream.send(sotw_request(["hdr"], node_msg=node("n1")))
            resp = await stream.recv(10)
            assert (await next_event(events, Event.CONNECT)).node_id == "n1"
            await stream.send(sotw_request(["hdr"], nonce=resp.nonce, error="Unable to create Wasm plugin hdr"))
            nack = await next_event(events, Event.NACK)
            assert nack.node_id == "n1"
            assert dict(nack.resources) == {"hdr": resp.version_info}
            assert nack.message == "Unable to create Wasm plugin hdr"

            with pytest.raises(grpc.aio.AioRpcError):
                await api.ApplyFilter(admin_pb2.ApplyFilterRequest(
                    name="hdr", actor="t", specs=[_struct({"source": {"file": str(tmp_path / "gone.wasm")}})]))
            rejected = await next_event(events, Event.FILTER_REJECTED)
            assert (rejected.filter.name, rejected.filter.revision) == ("hdr", 1)
            assert "does not exist" in rejected.message
            assert rejected.filter.author.startswith("t (grpc ")
            stream.cancel()
            assert (await next_event(events, Event.DISCONNECT)).node_id == "n1"
        finally:
            events.cancel()
            await client.close()


def _struct(d: dict[str, Any]) -> Any:
    from google.protobuf import struct_pb2

    s = struct_pb2.Struct()
    s.update(d)
    return s


async def test_watch_token_check(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(yaml.safe_dump({"tokens": [
        {"name": "dash", "role": "read", "sha256": hash_token(READ_TOKEN)},
        {"name": "ci", "role": "write", "sha256": hash_token(WRITE_TOKEN)},
    ]}))
    cfg = write_config(tmp_path / "config.yaml", [], admin_tokens_file=str(tokens))
    async with running_server(cfg) as app, \
            grpc.aio.insecure_channel(f"127.0.0.1:{app.xds_port}") as channel:
        api = admin_stub(channel)
        for metadata in ((), (("authorization", "Bearer not-a-known-token"),),
                         (("authorization", f"Basic {READ_TOKEN}"),)):
            call = api.WatchStatus(admin_pb2.WatchStatusRequest(), metadata=metadata)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await asyncio.wait_for(call.read(), 10)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, metadata
            assert "bearer token is required" in (err.value.details() or "")

        # A read token may watch: the stream opens and carries events.
        call = api.WatchStatus(admin_pb2.WatchStatusRequest(),
                               metadata=(("authorization", f"Bearer {READ_TOKEN}"),))
        await asyncio.wait_for(call.initial_metadata(), 10)
        client = XdsClient(f"127.0.0.1:{app.xds_port}")
        try:
            stream = client.sotw()
            await stream.send(sotw_request(["hdr"], node_msg=node("n2")))
            assert (await next_event(call, Event.CONNECT)).node_id == "n2"
            stream.cancel()
        finally:
            call.cancel()
            await client.close()


async def test_csds_stale_when_the_ack_is_of_an_older_version(tmp_path: Path) -> None:
    a, b = modules(tmp_path)
    cfg = write_config(tmp_path / "config.yaml", [{"name": "hdr", "source": {"file": str(a)}}])
    async with running_server(cfg) as app, \
            grpc.aio.insecure_channel(f"127.0.0.1:{app.xds_port}") as channel:
        client = XdsClient(f"127.0.0.1:{app.xds_port}")
        try:
            stream = client.sotw()
            await stream.send(sotw_request(["hdr"], node_msg=node("n1")))
            first = await stream.recv(10)
            await stream.send(ack(first, ["hdr"]))
            csds: Any = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(channel)
            await _wait_state(csds, "ACKED", first.version_info)

            await app.controller.deploy("hdr", [parse_filter_spec(
                {"name": "hdr", "source": {"file": str(b)}}, where="test")], author="test")
            second = await stream.recv(10)  # sent, and neither ACKed nor NACKed
            assert second.version_info != first.version_info
            g = await _wait_state(csds, "STALE", second.version_info)
            assert csds_pb2.ConfigStatus.Name(g.config_status) == "STALE"
            assert config_dump_shared_pb2.ClientResourceStatus.Name(g.client_status) == "UNKNOWN"
            assert not g.HasField("error_state")
            async with aiohttp.ClientSession() as s, \
                    s.get(f"http://127.0.0.1:{app.admin_port}/api/v1/proxies") as r:
                (proxy,) = (await r.json())["proxies"]
            res = proxy["resources"]["hdr"]
            assert (res["state"], res["version_sent"], res["version_acked"]) == (
                "STALE", second.version_info, first.version_info)
            assert res["last_nack"] is None

            await stream.send(ack(second, ["hdr"]))  # the late ACK ends STALE
            await _wait_state(csds, "ACKED", second.version_info)
            stream.cancel()
        finally:
            await client.close()


async def _wait_state(csds: Any, state: str, version: str, timeout: float = 20) -> Any:  # noqa: ASYNC109
    """Poll CSDS until node n1's `hdr` is in `state` (ours) with `version` sent."""
    wanted = {"ACKED": "SYNCED", "STALE": "STALE"}[state]

    async def poll() -> Any:
        while True:
            answer = await csds.FetchClientStatus(csds_pb2.ClientStatusRequest())
            for cfg in answer.config:
                for g in cfg.generic_xds_configs:
                    if (cfg.node.id, g.name, g.version_info) == ("n1", "hdr", version) and \
                            csds_pb2.ConfigStatus.Name(g.config_status) == wanted:
                        return g
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), timeout)
