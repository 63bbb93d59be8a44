"""HTTP and gRPC say the same thing for the features that came last: standalone
resources (get, put, delete, history, rollback), debug overrides and the analysis view;
resources in the fleet summary (HTTP, gRPC, `xds-server status`) with their per-proxy
ACK/NACK state; the CLI's `KIND/NAME` arguments. Against a real server, real gRPC, real
xDS streams and the CLI as a subprocess."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import yaml
from google.protobuf.json_format import MessageToDict

from tests.fixtures.devkit import xs
from tests.fixtures.server import running_server
from tests.test_admin_grpc import admin_stub, struct
from tests.test_standalone_resources import cluster, document, endpoints, route
from tests.xds_client import XdsClient, lds
from xds_server.admin._messages import whole_numbers
from xds_server.admin.v1 import admin_pb2
from xds_server.runtime import XdsServerApp


@asynccontextmanager
async def server(tmp_path: Path) -> AsyncIterator[tuple[XdsServerApp, Any, str]]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document(tmp_path)))
    async with running_server(path) as app, \
            grpc.aio.insecure_channel(f"127.0.0.1:{app.xds_port}") as channel:
        yield app, admin_stub(channel), f"http://127.0.0.1:{app.admin_port}"


async def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.request(method, url, json=body) as resp:
        return resp.status, await resp.json()


async def refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


def specs_of(msg: Any) -> list[Any]:
    return [whole_numbers(MessageToDict(s)) for s in msg.specs]


async def test_grpc_resources_round_trip_with_the_http_semantics(tmp_path: Path) -> None:
    async with server(tmp_path) as (app, api, base):
        res = f"{base}/api/v1/resources"
        got = await api.GetResource(admin_pb2.GetResourceRequest(kind="routes", name="main"))
        _, view = await http("GET", f"{res}/routes/main")
        assert (got.kind, got.name, got.revision) == ("routes", "main", 1)
        assert specs_of(got) == view["specs"] == [route()] and list(got.versions) == view["versions"]
        listed = await api.ListResources(admin_pb2.ListResourcesRequest(kind="clusters"))
        assert [r.name for r in listed.resources] == ["backend"]

        # Refusals: the HTTP API's message, the mapped code.
        err = await refused(api.PutResource(admin_pb2.PutResourceRequest(
            kind="routes", name="main", specs=[struct(route("other"))])))
        code, body = await http("PUT", f"{res}/routes/main", route("other"))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and code == 409
        assert err.details() == body["error"]["message"]
        assert "routes to cluster 'other', which does not exist" in err.details()
        err = await refused(api.PutResource(admin_pb2.PutResourceRequest(
            kind="routes", name="main", specs=[struct({"name": "main", "virtual_hostz": []})])))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and 'no field named "virtual_hostz"' in err.details()
        err = await refused(api.GetResource(admin_pb2.GetResourceRequest(kind="gateways", name="x")))
        code, body = await http("GET", f"{res}/gateways/x")
        assert err.code() == grpc.StatusCode.NOT_FOUND and err.details() == body["error"]["message"]
        err = await refused(api.GetResource(admin_pb2.GetResourceRequest(kind="routes", name="none")))
        assert err.code() == grpc.StatusCode.NOT_FOUND

        # In dependency order it works; a number in a Struct comes back as Envoy's integer.
        put = await api.PutResource(admin_pb2.PutResourceRequest(
            kind="endpoints", name="other", specs=[struct(endpoints("other", 9090))], actor="t"))
        assert put.revision == 1 and specs_of(put) == [endpoints("other", 9090)]
        await api.PutResource(admin_pb2.PutResourceRequest(kind="clusters", name="other",
                                                           specs=[struct(cluster("other"))]))
        moved = await api.PutResource(admin_pb2.PutResourceRequest(
            kind="routes", name="main", specs=[struct(route("other"))], expect_revision=1))
        assert moved.revision == 2 and moved.versions[0] != got.versions[0]
        err = await refused(api.PutResource(admin_pb2.PutResourceRequest(
            kind="routes", name="main", specs=[struct(route())], expect_revision=1)))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "is at revision 2, not 1" in err.details()
        err = await refused(api.DeleteResource(admin_pb2.DeleteResourceRequest(kind="clusters", name="other")))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "routes to cluster 'other'" in err.details()

        back = await api.RollbackResource(admin_pb2.RollbackResourceRequest(kind="routes", name="main"))
        assert back.revision == 3 and specs_of(back) == [route()]
        to = await api.RollbackResource(admin_pb2.RollbackResourceRequest(kind="routes", name="main",
                                                                          to_revision=2))
        assert to.revision == 4 and specs_of(to) == [route("other")]
        await api.RollbackResource(admin_pb2.RollbackResourceRequest(kind="routes", name="main", to_revision=1))
        deleted = await api.DeleteResource(admin_pb2.DeleteResourceRequest(kind="clusters", name="other"))
        assert (deleted.kind, deleted.name, deleted.revision) == ("clusters", "other", 2)
        err = await refused(api.RollbackResource(admin_pb2.RollbackResourceRequest(
            kind="routes", name="main", to_revision=99)))
        assert err.code() == grpc.StatusCode.NOT_FOUND and "no revision 99" in err.details()

        hist = await api.GetResourceHistory(admin_pb2.GetResourceHistoryRequest(kind="routes", name="main"))
        _, body = await http("GET", f"{res}/routes/main/history")
        assert hist.name == "routes/main"
        assert [h.action for h in hist.history] == [h["action"] for h in body["history"]] == [
            "rollback", "rollback", "rollback", "deploy", "config"]
        assert [specs_of(h) for h in hist.history] == [h["specs"] for h in body["history"]]
        short = await api.GetResourceHistory(admin_pb2.GetResourceHistoryRequest(
            kind="endpoints", name="other", limit=1))
        assert [h.action for h in short.history] == ["deploy"] and "t (grpc " in short.history[0].author
        # The gRPC changes are the server's: HTTP sees them.
        assert (await http("GET", f"{res}/clusters/other"))[0] == 404
        assert app.resources.view("routes", "main")["revision"] == 5


async def test_grpc_filter_view_has_analysis_and_debug(tmp_path: Path) -> None:
    async with server(tmp_path) as (app, api, base):
        module = str(tmp_path / "hdr.wasm")
        analysis = {"interval": "10s", "min_requests": 20, "max_error_rate": 0.05, "intervals": 3}
        applied = await api.ApplyFilter(admin_pb2.ApplyFilterRequest(name="hdr", specs=[struct(
            {"source": {"file": module}, "analysis": analysis, "on_runtime_failure": "rollback"})]))
        spec = whole_numbers(MessageToDict(applied.specs[0].spec))
        assert spec["analysis"]["min_requests"] == 20 and spec["on_runtime_failure"] == "rollback"
        _, view = await http("GET", f"{base}/api/v1/filters/hdr")
        assert spec == {k: v for k, v in view["specs"][0].items() if k not in ("version", "module")}
        deadline = time.monotonic() + 20
        while (view := (await http("GET", f"{base}/api/v1/filters/hdr"))[1])["analysis"] is None:
            assert time.monotonic() < deadline, "no analysis started"
            await asyncio.sleep(0.2)
        got = await api.GetFilter(admin_pb2.GetFilterRequest(name="hdr"))
        assert got.HasField("analysis") and not got.HasField("debug")
        assert whole_numbers(MessageToDict(got.analysis))["revision"] == view["analysis"]["revision"]
        assert whole_numbers(MessageToDict(got.analysis))["phase"] == view["analysis"]["phase"]

        # Debug: start, seen by both APIs, refused the same way, ended.
        err = await refused(api.StartDebug(admin_pb2.StartDebugRequest(name="hdr", node="e-*")))
        code, body = await http("POST", f"{base}/api/v1/filters/hdr/debug", {"node": "e-*"})
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and code == 400
        assert err.details().removeprefix("request: ") == body["error"]["message"].removeprefix("request body: ")
        request = admin_pb2.StartDebugRequest(name="hdr", node="e-*", duration="10m", actor="me")
        request.configuration.struct_value.update({"level": "debug", "n": 2})
        started = await api.StartDebug(request)
        debug = whole_numbers(MessageToDict(started.debug))
        assert debug["node"] == "e-*" and '"n":2' in debug["configuration"].replace(" ", "")
        assert started.action == "debug" and "me (grpc " in started.author
        _, view = await http("GET", f"{base}/api/v1/filters/hdr")
        assert view["debug"]["node"] == "e-*" and view["debug"]["configuration"] == debug["configuration"]
        ended = await api.EndDebug(admin_pb2.EndDebugRequest(name="hdr"))
        assert not ended.HasField("debug") and ended.action != "debug"
        err = await refused(api.EndDebug(admin_pb2.EndDebugRequest(name="hdr")))
        code, body = await http("DELETE", f"{base}/api/v1/filters/hdr/debug")
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and code == 409
        assert err.details() == body["error"]["message"]
        assert app.controller.filters["hdr"].revision is not None


async def test_resources_in_summary_status_and_cli(tmp_path: Path) -> None:
    async with server(tmp_path) as (app, api, base):
        client = XdsClient(f"127.0.0.1:{app.xds_port}")
        try:
            streams = [await lds(client, "edge-1"), await lds(client, "edge-2", nack="port 10000 in use")]
            deadline = time.monotonic() + 10
            while True:
                _, summary = await http("GET", f"{base}/api/v1/summary")
                web = next((r for r in summary["resources"] if (r["kind"], r["name"]) == ("listeners", "web")), None)
                if web is not None and web["totals"]["NACKED"] == 1 and web["totals"]["ACKED"] == 1:
                    break
                assert time.monotonic() < deadline, summary
                await asyncio.sleep(0.1)
            # Resources are not listed as unserved filters any more.
            assert [f["name"] for f in summary["filters"]] == ["hdr"]
            assert web["served"] and web["revision"] == 1 and web["attention"]
            assert web["current_versions"] == app.resources.view("listeners", "web")["versions"]
            assert summary["resources"][0] is web  # NACKed first
            assert web["nacks"][0]["message"].endswith("port 10000 in use") and web["nacks"][0]["nodes"] == ["edge-2"]
            routes = next(r for r in summary["resources"] if r["kind"] == "routes")
            assert routes["served"] and routes["totals"]["connected"] == 0

            msg = await api.GetSummary(admin_pb2.GetSummaryRequest())
            g = next(r for r in msg.resources if (r.kind, r.name) == ("listeners", "web"))
            assert (g.revision, g.totals.acked, g.totals.nacked, g.attention) == (1, 1, 1, True)
            assert list(g.nacks[0].nodes) == ["edge-2"] and [f.name for f in msg.filters] == ["hdr"]

            server_args = ("--server", base)
            out = (await xs("status", *server_args)).out
            line = next(x for x in out.splitlines() if x.startswith("listeners/web:"))
            assert "revision 1" in line and "1/2 connected ACKED, 1 NACKED" in line, out
            assert "1 proxy NACKED" in out and "port 10000 in use" in out
            assert "hdr: not served" not in out and "listeners/web: not served" not in out
            out = (await xs("status", "--proxies", "--filter", "listeners/web", *server_args)).out
            rows = [x for x in out.splitlines() if "listeners/web" in x]
            assert len(rows) == 2, out
            assert any(x.startswith("!") and "edge-2" in x and "NACKED" in x and "port 10000" in x for x in rows)
            assert any("edge-1" in x and "ACKED" in x for x in rows)
            assert all(not s.done.is_set() for s in streams)  # both proxies stayed connected
        finally:
            await client.close()


async def test_cli_kind_slash_name(tmp_path: Path) -> None:
    async with server(tmp_path) as (app, _api, base):
        s = ("--server", base)
        got = await xs("get", "routes/main", *s)
        assert got.out.splitlines()[0].startswith("routes/main: revision 1, version ")
        as_json = yaml.safe_load((await xs("get", "routes/main", "-o", "json", *s)).out)
        assert as_json["specs"] == [route()]
        await http("PUT", f"{base}/api/v1/resources/endpoints/backend", endpoints("backend", 8181))
        hist = (await xs("history", "endpoints/backend", *s)).out
        assert "deploy" in hist and "config" in hist
        back = await xs("rollback", "endpoints/backend", "--to", "1", *s)
        assert back.out.startswith("endpoints/backend: revision 3")
        assert app.resources.view("endpoints", "backend")["specs"] == [endpoints()]
        bad = await xs("rollback", "endpoints/backend", "--to", "abc123", *s, ok=False)
        assert bad.code == 2 and "revision number" in bad.err
        refused_ = await xs("delete", "clusters/backend", *s, ok=False)
        assert refused_.code == 1 and "clusters/backend" in refused_.err
        code, _ = await http("PUT", f"{base}/api/v1/resources/clusters/spare",
                             {"name": "spare", "type": "STATIC", "connect_timeout": "1s"})
        assert code == 201
        gone = await xs("delete", "clusters/spare", *s)
        assert gone.out.strip() == "clusters/spare: deleted (revision 2)"
        missing = await xs("get", "listeners/nope", *s, ok=False)
        assert missing.code == 1 and "no such resource" in missing.err
        # A filter name stays a filter name.
        assert (await xs("get", "hdr", *s)).out.startswith("hdr: revision 1")
