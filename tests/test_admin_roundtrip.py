"""The admin APIs take back what they give: GET a filter, edit it, PUT it back.

The HTTP API (`kubectl get -o json | edit | apply` style), the gRPC admin API
(`GetFilter` -> `ApplyFilter`) and `xds-server apply -f` of a saved view all accept a
filter as the server showed it. Server-derived members are ignored, except `revision`,
which is a precondition (409 when the filter changed meanwhile). A member that would
have no effect is refused with a message naming it, never ignored.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import yaml

from tests.fixtures.server import running_server, write_config
from tests.fixtures.wasm_filters import header_filter
from xds_server.admin import TokenStore
from xds_server.admin._auth import hash_token
from xds_server.admin._grpc import filter_message
from xds_server.admin.v1 import admin_pb2, admin_pb2_grpc
from xds_server.cli import main


async def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.request(method, url, json=body) as r:
        return r.status, await r.json()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    mod = tmp_path / "a.wasm"
    mod.write_bytes(header_filter("x-wasm-filter", "A"))
    return write_config(tmp_path / "config.yaml", [
        {"name": "hdr", "source": {"file": str(mod)}, "configuration": {"n": 1}}])


async def test_http_get_edit_put_round_trip(config: Path) -> None:
    async with running_server(config) as app:
        url = f"http://127.0.0.1:{app.admin_port}/api/v1/filters/hdr"
        status, view = await http("GET", url)
        assert status == 200 and view["revision"] == 1
        assert {"version", "module"} <= set(view["specs"][0])  # derived members are shown
        view["specs"][0]["configuration"] = {"n": 2}
        status, after = await http("PUT", url, view)
        assert status == 200, after
        assert after["revision"] == 2
        assert after["specs"][0]["configuration"] == '{"n":2}'
        assert after["specs"][0]["version"] != view["specs"][0]["version"]

        # The same document again is no change (not a new revision, not an error).
        status, again = await http("PUT", url, {**after, "specs": after["specs"]})
        assert status == 200 and again["revision"] == 2

        # The revision read is a precondition: an edit of an outdated view is refused.
        view["specs"][0]["configuration"] = {"n": 3}
        status, err = await http("PUT", url, view)  # view says revision 1; current is 2
        assert status == 409, err
        assert "revision 2, not 1" in err["error"]["message"]
        assert app.controller.filters["hdr"].revision.revision == 2  # type: ignore[union-attr]

        status, hist = await http("GET", url + "/history")
        assert [r["revision"] for r in hist["history"]] == [2, 1]


@pytest.mark.parametrize(("body", "member"), [
    ({"specs": [{"source": {"file": "/x.wasm"}}], "configuration": "ignored?"}, "configuration"),
    ({"specs": [{"source": {"file": "/x.wasm"}}], "selector": {"cluster": "c"}}, "selector"),
    ({"specs": [{"source": {"file": "/x.wasm"}}], "name": "other"}, "name"),
    ({"specs": [{"source": {"file": "/x.wasm"}}], "revision": "1"}, "revision"),
    ({"specs": [{"source": {"file": "/x.wasm"}}], "revision": True}, "revision"),
    ({"source": {"file": "/x.wasm"}, "revision": 1}, "revision"),
])
async def test_http_member_without_effect_is_refused(config: Path, body: dict[str, Any], member: str) -> None:
    async with running_server(config) as app:
        url = f"http://127.0.0.1:{app.admin_port}/api/v1/filters/hdr"
        status, err = await http("PUT", url, body)
        assert status == 400, err
        assert repr(member) in err["error"]["message"], err
        assert app.controller.filters["hdr"].revision.revision == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(("action", "body", "member"), [
    ("rollback", {"to": 1, "reason": "bad deploy"}, "reason"),
    ("rollback", {"revision": 1}, "revision"),
    ("rollback", [1], "JSON object"),
    ("promote", {"to": 1}, "to"),
    ("promote", "now", "empty or {}"),
])
async def test_http_change_bodies_refuse_members_without_effect(
    config: Path, action: str, body: Any, member: str,
) -> None:
    async with running_server(config) as app:
        url = f"http://127.0.0.1:{app.admin_port}/api/v1/filters/hdr/{action}"
        status, err = await http("POST", url, body)
        assert status == 400, err
        assert member in err["error"]["message"], err
        assert app.controller.filters["hdr"].revision.revision == 1  # type: ignore[union-attr]


def admin_stub(channel: grpc.aio.Channel) -> Any:
    make: Any = admin_pb2_grpc.AdminServiceStub  # generated, untyped
    return make(channel)


async def test_grpc_get_edit_apply_round_trip(config: Path) -> None:
    async with running_server(config) as app, \
            grpc.aio.insecure_channel(f"127.0.0.1:{app.xds_port}") as channel:
        api = admin_stub(channel)
        got = await api.GetFilter(admin_pb2.GetFilterRequest(name="hdr"))
        specs = [d.spec for d in got.specs]
        specs[0]["configuration"] = '{"n":2}'
        view = await api.ApplyFilter(admin_pb2.ApplyFilterRequest(
            name="hdr", specs=specs, expect_revision=got.revision))
        assert view.revision == 2 and view.specs[0].spec["configuration"] == '{"n":2}'
        # Both APIs answer from one facade: the same view, as JSON and as a message.
        _, http_view = await http("GET", f"http://127.0.0.1:{app.admin_port}/api/v1/filters/hdr")
        assert await api.GetFilter(admin_pb2.GetFilterRequest(name="hdr")) == filter_message(http_view)

        specs[0]["configuration"] = '{"n":3}'
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.ApplyFilter(admin_pb2.ApplyFilterRequest(
                name="hdr", specs=specs, expect_revision=got.revision))  # outdated: 1
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert app.controller.filters["hdr"].revision.revision == 2  # type: ignore[union-attr]


def printed_json(out: str) -> Any:
    """The JSON document the CLI printed (the server's log lines share stdout here)."""
    doc, _ = json.JSONDecoder().raw_decode(out[out.index("{\n"):])
    return doc


async def test_cli_apply_of_a_saved_view(config: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    async with running_server(config) as app:
        server = f"http://127.0.0.1:{app.admin_port}"
        # The CLI runs its own event loop: run it in a thread while the server serves.
        assert await asyncio.to_thread(main, ["get", "hdr", "-o", "json", "--server", server]) == 0
        view = printed_json(capsys.readouterr().out)
        view["specs"][0]["configuration"] = {"n": 7}
        saved = tmp_path / "hdr.json"
        saved.write_text(json.dumps(view))
        code = await asyncio.to_thread(main, ["apply", "-f", str(saved), "--server", server])
        out = capsys.readouterr()
        assert code == 0, out.err
        assert "hdr: revision 2, 1 spec" in out.out
        assert app.controller.filters["hdr"].deployed[0].spec.configuration == '{"n":7}'

        # `filters -o json` output is a valid apply file too.
        assert await asyncio.to_thread(main, ["filters", "-o", "json", "--server", server]) == 0
        listed = printed_json(capsys.readouterr().out)
        listed["filters"][0]["specs"][0]["configuration"] = {"n": 8}
        saved.write_text(json.dumps(listed))
        code = await asyncio.to_thread(main, ["apply", "-f", str(saved), "--server", server])
        assert code == 0, capsys.readouterr().err
        assert app.controller.filters["hdr"].deployed[0].spec.configuration == '{"n":8}'


async def test_a_redacted_view_cannot_overwrite_the_secrets(tmp_path: Path) -> None:
    """What a read token is shown, PUT back with a write token, is refused: the
    placeholders would otherwise replace the real configuration and env values."""
    mod = tmp_path / "a.wasm"
    mod.write_bytes(header_filter("x-wasm-filter", "A"))
    read, write = "read-token-0123456789abcdef", "write-token-0123456789abcdef"
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(yaml.safe_dump({"tokens": [
        {"name": "dash", "role": "read", "sha256": hash_token(read)},
        {"name": "ci", "role": "write", "sha256": hash_token(write)}]}))
    assert TokenStore.load(tokens).enabled
    cfg = write_config(tmp_path / "config.yaml", [
        {"name": "hdr", "source": {"file": str(mod)}, "configuration": {"key": "s3cr3t"},
         "env": {"PASSWORD": "hunter2"}}], admin_tokens_file=str(tokens))
    async with running_server(cfg) as app, aiohttp.ClientSession() as s:
        url = f"http://127.0.0.1:{app.admin_port}/api/v1/filters/hdr"
        async with s.get(url, headers={"Authorization": f"Bearer {read}"}) as r:
            shown = await r.json()
        assert "s3cr3t" not in json.dumps(shown)
        for spec, member in ((shown["specs"][0], "specs[0].configuration"),
                             ({**shown["specs"][0], "configuration": "new"}, "specs[0].env.PASSWORD")):
            async with s.put(url, json={**shown, "specs": [spec]},
                             headers={"Authorization": f"Bearer {write}"}) as r:
                err = await r.json()
                assert r.status == 400, err
                assert member in err["error"]["message"] and "redacted" in err["error"]["message"]
        served = app.controller.filters["hdr"].deployed[0].spec
        assert served.configuration == '{"key":"s3cr3t"}' and dict(served.env) == {"PASSWORD": "hunter2"}
