"""The operator CLI (deploy, apply, rollback, promote, history, status, delete, filters)
against a fake admin API that implements the API contract with canned data and records
every request it serves."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.fixtures.net import free_port
from xds_server.cli import main
from xds_server.cli._client import AdminClient, AdminHTTPError, default_actor
from xds_server.cli.admin import parse_selector

SHA_A = "a" * 64
SHA_B = "b" * 64
V_CURRENT = "1111222233334444"
V_OLD = "9999888877776666"
LONG_NACK = (
    "Failed to load Wasm module due to a missing import: wasi_snapshot_preview1.fd_write "
    "(the module needs WASI, which this Envoy does not provide) " * 3
)


def filter_view(name: str, revision: int = 3, **extra: Any) -> dict[str, Any]:
    view: dict[str, Any] = {
        "name": name,
        "revision": revision,
        "author": "alice@laptop",
        "action": "deploy",
        "updated_at": 1_700_000_000.0,
        "error": None,
        "canary": False,
        "specs": [{
            "name": name,
            "source": {"image": f"registry.example.com/team/{name}:v3"},
            "selector": {"node_id": "*", "cluster": "prod-*"},
            "configuration": "",
            "version": V_CURRENT,
            "module": {"sha256": SHA_A, "size": 1234, "layout": "wasme",
                       "reference": f"registry.example.com/team/{name}:v3",
                       "root_ids": ["root"], "manifest_digest": "sha256:" + "c" * 64},
        }],
        "proxies": {"total": 3, "acked": 1, "nacked": 1},
        "rollout": {V_CURRENT: 1, V_OLD: 1},
    }
    view.update(extra)
    return view


def resource(state: str, acked: str | None, nack: str | None = None) -> dict[str, Any]:
    return {
        "type_url": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
        "state": state, "version_sent": V_CURRENT, "sent_at": time.time() - 30,
        "version_acked": acked, "acked_at": time.time() - 29,
        "last_nack": None if nack is None else {
            "version": V_CURRENT, "code": 13, "message": nack, "at": time.time() - 20},
    }


def proxy(node: str, cluster: str, res: dict[str, Any], connected: bool = True) -> dict[str, Any]:
    return {
        "node_id": node, "cluster": cluster, "metadata": {"role": "edge"},
        "envoy_version": "1.40.0", "address": "127.0.0.1:40000", "connected": connected,
        "connected_since": time.time() - 3700,
        "disconnected_at": None if connected else time.time() - 120,
        "resources": {"add-header": res},
    }


def make_proxies() -> list[dict[str, Any]]:
    """The fake fleet, its times relative to now (so ages render the same whenever a
    test runs in a long session)."""
    return [
        proxy("edge-1", "prod-eu", resource("ACKED", V_CURRENT)),
        proxy("edge-2", "prod-us", resource("NACKED", V_OLD, LONG_NACK)),
        proxy("edge-3", "prod-us", resource("ACKED", V_OLD), connected=False),
    ]


PROXIES = make_proxies()

SUMMARY: dict[str, Any] = {
    "seq": 9, "at": 1.0, "proxies": {"known": 3003, "connected": 3002},
    "filters": [{
        "name": "add-header", "served": True, "revision": 3, "canary": False, "error": None,
        "current_versions": [V_CURRENT], "attention": True, "failing": True,
        "totals": {"ACKED": 2, "NACKED": 3000, "REQUESTED": 0, "STALE": 0, "connected": 3002,
                   "disconnected": 1},
        "versions": [{"version": V_CURRENT, "current": True, "running": 2, "ACKED": 2, "NACKED": 3000,
                      "REQUESTED": 0, "STALE": 0,
                      "clusters": {"edge": {"ACKED": 2, "NACKED": 3000, "REQUESTED": 0, "STALE": 0}}}],
        "nacks": [{"message": "Unable to create Wasm plugin add-header", "count": 3000,
                   "versions": [V_CURRENT], "nodes": ["edge-2", "edge-4", "edge-5", "edge-6", "edge-7"]}],
        "health": [{"revision": 3, "version": V_CURRENT, "canary": False, "failing": True, "proxies": 2,
                    "requests": 40, "errors_5xx": 40, "error_rate": 1.0, "vm_failures": 40}],
    }],
}

HISTORY = [
    {"revision": 3, "created_at": 1_700_000_300.0, "author": "alice@laptop",
     "action": "deploy", "summary": "image registry.example.com/team/add-header:v3",
     "specs": [], "digests": [SHA_A], "versions": [V_CURRENT]},
    {"revision": 2, "created_at": 1_700_000_200.0, "author": "config",
     "action": "apply", "summary": "initial", "specs": [], "digests": [SHA_B],
     "versions": [V_OLD]},
]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeAdmin:
    """The admin API contract with canned answers; `fail` makes one route answer an error."""

    requests: list[Recorded] = field(default_factory=list)
    errors: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)
    queries: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    def fail(self, method: str, path: str, status: int, message: str) -> None:
        self.errors[(method, path)] = (status, message)

    def mutations(self) -> list[Recorded]:
        return [r for r in self.requests if r.method != "GET"]

    def app(self) -> web.Application:
        @web.middleware
        async def record(
            request: web.Request,
            handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        ) -> web.StreamResponse:
            raw = await request.read()
            self.requests.append(Recorded(
                request.method, request.path, dict(request.query), dict(request.headers),
                json.loads(raw) if raw else None,
            ))
            err = self.errors.get((request.method, request.path))
            if err is not None:
                return web.json_response(
                    {"error": {"status": err[0], "message": err[1]}}, status=err[0])
            return await handler(request)

        async def list_filters(_: web.Request) -> web.Response:
            return web.json_response({"filters": [filter_view("add-header")]})

        async def get_filter(request: web.Request) -> web.Response:
            return web.json_response(filter_view(request.match_info["name"]))

        async def put_filter(request: web.Request) -> web.Response:
            body = await request.json()
            specs = body.get("specs", [body])
            view = filter_view(request.match_info["name"], revision=4)
            view["specs"] = [{**s, "version": f"{i:016x}"} for i, s in enumerate(specs)]
            return web.json_response(view, status=201)

        async def delete_filter(request: web.Request) -> web.Response:
            return web.json_response({"deleted": request.match_info["name"], "revision": 5})

        async def history(request: web.Request) -> web.Response:
            return web.json_response({"name": request.match_info["name"], "history": HISTORY})

        async def rollback(request: web.Request) -> web.Response:
            return web.json_response(filter_view(request.match_info["name"], 6, action="rollback"))

        async def promote(request: web.Request) -> web.Response:
            return web.json_response(filter_view(request.match_info["name"], 7, action="promote"))

        async def proxies(request: web.Request) -> web.Response:
            self.queries.append(dict(request.query))
            return web.json_response({"proxies": PROXIES, "total": len(PROXIES) + 5,
                                      "next_cursor": "edge-9"})

        async def summary(_: web.Request) -> web.Response:
            return web.json_response(SUMMARY)

        app = web.Application(middlewares=[record])
        app.router.add_get("/api/v1/filters", list_filters)
        app.router.add_get("/api/v1/filters/{name}", get_filter)
        app.router.add_put("/api/v1/filters/{name}", put_filter)
        app.router.add_delete("/api/v1/filters/{name}", delete_filter)
        app.router.add_get("/api/v1/filters/{name}/history", history)
        app.router.add_post("/api/v1/filters/{name}/rollback", rollback)
        app.router.add_post("/api/v1/filters/{name}/promote", promote)
        app.router.add_get("/api/v1/proxies", proxies)
        app.router.add_get("/api/v1/summary", summary)
        return app


@pytest.fixture
def admin() -> Iterator[FakeAdmin]:
    """A FakeAdmin served on loopback from its own thread (the CLI runs its own loop)."""
    PROXIES[:] = make_proxies()
    fake = FakeAdmin()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(fake.app())
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        host, port = runner.addresses[0][:2]
        fake.url = f"http://{host}:{port}"
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(5)
    yield fake
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def cli(admin: FakeAdmin, *argv: str) -> int:
    return main([*argv, "--server", admin.url])


def test_deploy_sends_the_spec_built_from_flags(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli(
        admin, "deploy", "add-header", "--image", "registry.example.com/team/add-header:v3",
        "--config", '{"greeting": "hi"}', "--selector", "cluster=prod-*,role=edge",
        "--canary", "node_id=edge-1", "--root-id", "root", "--vm-id", "vm",
        "--env", "A=1", "--env", "B=x=y", "--failure-policy", "fail_open",
        "--delivery", "remote", "--pull-policy", "Always", "--on-nack", "rollback",
        "--type", "http", "--sha256", SHA_A, "--token", "s3cret",
    )
    assert code == 0
    [req] = admin.requests
    assert (req.method, req.path) == ("PUT", "/api/v1/filters/add-header")
    assert req.body == {
        "name": "add-header",
        "source": {"image": "registry.example.com/team/add-header:v3"},
        "sha256": SHA_A,
        "configuration": {"greeting": "hi"},
        "selector": {"cluster": "prod-*", "metadata": {"role": "edge"}},
        "canary": {"node_id": "edge-1"},
        "root_id": "root", "vm_id": "vm", "env": {"A": "1", "B": "x=y"},
        "failure_policy": "FAIL_OPEN", "delivery": "remote", "pull_policy": "Always",
        "on_nack": "rollback", "type": "http",
    }
    assert req.headers["X-Actor"] == default_actor()
    assert re.fullmatch(r".+@.+", req.headers["X-Actor"])
    assert req.headers["Authorization"] == "Bearer s3cret"
    out = capsys.readouterr().out
    assert out.startswith("add-header: revision 4 (deploy by alice@laptop)")
    assert "cluster=prod-*,role=edge: version 0000000000000000" in out


def test_deploy_minimal_url_and_file_sources(
    admin: FakeAdmin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli(admin, "deploy", "f1", "--url", "https://x.example/f.wasm", "--sha256", SHA_B,
               "--config", "plain text") == 0
    assert cli(admin, "deploy", "f2", "--file", "mod.wasm") == 0
    assert [r.body for r in admin.requests] == [
        {"name": "f1", "source": {"url": "https://x.example/f.wasm", "sha256": SHA_B},
         "configuration": "plain text"},
        {"name": "f2", "source": {"file": str(tmp_path / "mod.wasm")}},
    ]


def test_deploy_url_without_sha256_is_refused_before_any_request(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(admin, "deploy", "f", "--url", "https://x.example/f.wasm") == 1
    assert "--url needs --sha256" in capsys.readouterr().err
    assert admin.requests == []


def test_server_and_token_from_environment(
    admin: FakeAdmin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDS_SERVER_URL", admin.url)
    monkeypatch.setenv("XDS_SERVER_TOKEN", "from-env")
    assert main(["promote", "add-header"]) == 0
    [req] = admin.requests
    assert (req.method, req.path, req.body) == ("POST", "/api/v1/filters/add-header/promote", {})
    assert req.headers["Authorization"] == "Bearer from-env"
    assert "X-Actor" in req.headers


@pytest.mark.parametrize(("text", "expected"), [
    ("cluster=prod-*,role=edge", {"cluster": "prod-*", "metadata": {"role": "edge"}}),
    ("node_id=edge-?", {"node_id": "edge-?"}),
    (" cluster = a , zone=eu-1 , istio.version=1.2", {
        "cluster": "a", "metadata": {"zone": "eu-1", "istio.version": "1.2"}}),
    ("*", {}),
])
def test_parse_selector(text: str, expected: dict[str, Any]) -> None:
    assert parse_selector(text) == expected


def test_bad_selector_is_a_usage_error(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli(admin, "deploy", "f", "--image", "r/x:1", "--selector", "cluster")
    assert exc.value.code == 2
    assert "expected key=value" in capsys.readouterr().err
    assert admin.requests == []


def test_apply_groups_specs_by_name(
    admin: FakeAdmin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "conf" / "filters.yaml"
    path.parent.mkdir()
    path.write_text(
        "server: {admin_address: 127.0.0.1:18080}\n"
        "filters:\n"
        "  - name: add-header\n"
        "    source: {image: r.example/a:v1}\n"
        "    selector: {cluster: staging-*}\n"
        "  - name: other\n"
        "    source: {file: mod.wasm}\n"
        "    configuration: {k: v}\n"
        "  - name: add-header\n"
        "    source: {image: r.example/a:v2}\n"
        "    selector: {cluster: prod-*}\n"
    )
    assert cli(admin, "apply", "-f", str(path)) == 0
    assert [(r.method, r.path, r.body) for r in admin.requests] == [
        ("PUT", "/api/v1/filters/add-header", {"specs": [
            {"name": "add-header", "source": {"image": "r.example/a:v1"},
             "selector": {"cluster": "staging-*"}},
            {"name": "add-header", "source": {"image": "r.example/a:v2"},
             "selector": {"cluster": "prod-*"}},
        ]}),
        ("PUT", "/api/v1/filters/other", {"specs": [
            {"name": "other", "source": {"file": str(path.parent / "mod.wasm")},
             "configuration": {"k": "v"}},
        ]}),
    ]
    assert all(r.headers["X-Actor"] == default_actor() for r in admin.requests)
    assert capsys.readouterr().out.splitlines() == [
        "add-header: revision 4, 2 specs, version 0000000000000000,0000000000000001",
        "other: revision 4, 1 spec, version 0000000000000000",
    ]


def test_apply_json_list_and_single_spec(
    admin: FakeAdmin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([{"name": "a", "source": {"image": "r/a:1"}},
                                  {"name": "b", "source": {"image": "r/b:1"}}]))
    single = tmp_path / "one.yaml"
    single.write_text("name: c\nsource: r/c:1\n")
    assert cli(admin, "apply", "-f", str(listed), "--output", "json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert [v["name"] for v in doc["filters"]] == ["a", "b"]
    assert cli(admin, "apply", "-f", str(single)) == 0
    assert [(r.path, r.body) for r in admin.requests] == [
        ("/api/v1/filters/a", {"specs": [{"name": "a", "source": {"image": "r/a:1"}}]}),
        ("/api/v1/filters/b", {"specs": [{"name": "b", "source": {"image": "r/b:1"}}]}),
        ("/api/v1/filters/c", {"specs": [{"name": "c", "source": "r/c:1"}]}),
    ]


def test_apply_reports_each_refused_filter_and_goes_on(
    admin: FakeAdmin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.fail("PUT", "/api/v1/filters/a", 400, "a: selector.cluster: must be a string")
    path = tmp_path / "f.yaml"
    path.write_text("- {name: a, source: r/a:1}\n- {name: b, source: r/b:1}\n")
    assert cli(admin, "apply", "-f", str(path)) == 1
    captured = capsys.readouterr()
    assert captured.err == "error: a: a: selector.cluster: must be a string\n"
    assert captured.out.startswith("b: revision 4")
    assert len(admin.requests) == 2


def test_apply_refuses_a_spec_without_name(
    admin: FakeAdmin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("filters:\n  - source: r/a:1\n")
    assert cli(admin, "apply", "-f", str(path)) == 1
    assert capsys.readouterr().err == f"error: {path}: filters[0]: name: is required\n"
    assert admin.requests == []


def test_rollback_promote_delete_requests(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(admin, "rollback", "add-header") == 0
    assert cli(admin, "rollback", "add-header", "--to", "2") == 0
    assert cli(admin, "promote", "add-header") == 0
    assert cli(admin, "delete", "add-header") == 0
    assert [(r.method, r.path, r.body) for r in admin.requests] == [
        ("POST", "/api/v1/filters/add-header/rollback", {}),
        ("POST", "/api/v1/filters/add-header/rollback", {"to": 2}),
        ("POST", "/api/v1/filters/add-header/promote", {}),
        ("DELETE", "/api/v1/filters/add-header", None),
    ]
    assert all(r.headers["X-Actor"] == default_actor() for r in admin.requests)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "add-header: revision 6 (rollback by alice@laptop)"
    assert out[-1] == "add-header: deleted (revision 5)"


def test_reads_carry_no_actor_and_names_are_one_path_segment(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(admin, "history", "team/add header", "--limit", "2", "-o", "json") == 0
    [req] = admin.requests
    assert req.query == {"limit": "2"}
    assert "X-Actor" not in req.headers
    # '/' is escaped, so the server's {name} matches the whole name
    assert json.loads(capsys.readouterr().out)["name"] == "team/add header"


def test_history_table(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(admin, "history", "add-header") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["REVISION", "WHEN", "AUTHOR", "ACTION", "DIGEST", "XDS",
                                "VERSION", "SUMMARY"]
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1_700_000_300.0))
    assert lines[1].split()[:7] == ["3", *when.split(), "alice@laptop", "deploy", "a" * 12,
                                    V_CURRENT]
    assert "a" * 13 not in lines[1]
    assert len(lines) == 3
    assert all(len(line) <= 100 for line in lines)


def test_status_marks_nacks_and_fits_100_columns(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(admin, "status", "--proxies") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert all(len(line) <= 100 for line in lines), out
    assert "\x1b[" not in out  # not a terminal: no colour, the marker says it
    header = lines[0].split()
    assert header == ["FILTER", "NODE", "CLUSTER", "VERSION", "ACKED", "STATE", "CONNECTED",
                      "NACK"]
    [nacked] = [line for line in lines if "edge-2" in line]
    assert nacked.startswith("! add-header")
    assert "NACKED" in nacked and f"{V_CURRENT[:8]}: Failed to load Wasm" in nacked
    assert nacked.endswith("…")
    assert [line for line in lines if line.startswith("!")] == [nacked]
    [gone] = [line for line in lines if "edge-3" in line]
    assert "no 2m ago" in gone
    assert "yes 1h01m" in next(line for line in lines if "edge-1" in line)
    assert "add-header: revision 3, 1/2 proxies on current version, 1 NACKed, 1 disconnected" \
        in lines
    # rows are grouped by filter, then version
    nodes = [line[2:].split()[1] for line in lines[1:4]]
    assert nodes == ["edge-1", "edge-2", "edge-3"]


def test_status_is_red_on_a_terminal(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert cli(admin, "status", "--proxies") == 0
    [red] = [line for line in capsys.readouterr().out.splitlines() if "\x1b[31m" in line]
    assert red.startswith("\x1b[31m! add-header") and "edge-2" in red


def test_status_json_is_one_document(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(admin, "status", "--output", "json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["proxies"] == json.loads(json.dumps(PROXIES))
    assert doc["filters"][0]["name"] == "add-header"
    assert doc["summary"] == SUMMARY and doc["total"] == len(PROXIES) + 5
    assert sorted((r.method, r.path) for r in admin.requests) == [
        ("GET", "/api/v1/filters"), ("GET", "/api/v1/proxies"), ("GET", "/api/v1/summary")]
    assert admin.queries == [{}]  # every proxy, not a page


def test_status_prints_the_summary_by_default(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(admin, "status") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert all(len(line) <= 100 for line in lines), out
    assert lines[0] == "3002 proxies connected, 3003 known"
    assert ("add-header: revision 3, 2/3002 connected ACKED, 3000 NACKED, 1 disconnected, "
            "FAILING AT RUNTIME") in lines
    [group] = [i for i, line in enumerate(lines) if line.startswith("! 3000 proxies NACKED")]
    assert lines[group].endswith(f"{V_CURRENT[:8]}: Unable to create Wasm plugin add-header")
    assert lines[group + 1] == "    edge-2, edge-4, edge-5, edge-6, edge-7 +2995"
    assert any(line.startswith("! rev 3: failing at runtime, 40 requests, 100.0% 5xx") for line in lines)
    [row] = [line for line in lines if line.strip().startswith(V_CURRENT)]
    assert row.split()[:7] == [V_CURRENT, "yes", "2", "2", "3000", "0", "0"]
    assert [(r.method, r.path) for r in admin.requests] == [("GET", "/api/v1/summary")]


def test_status_proxies_passes_the_filters_and_names_the_next_page(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(admin, "status", "--proxies", "--node", "edge-*", "--cluster", "c1", "--filter",
               "add-header", "--state", "NACKED", "--version", V_CURRENT, "--limit", "3",
               "--cursor", "edge-0") == 0
    out = capsys.readouterr().out
    assert admin.queries == [{"node": "edge-*", "cluster": "c1", "filter": "add-header", "state": "NACKED",
                              "version": V_CURRENT, "limit": "3", "cursor": "edge-0"}]
    assert out.splitlines()[-1] == f"{len(PROXIES)} of {len(PROXIES) + 5} proxies; next page: --cursor edge-9"


def test_filters_table_and_json(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(admin, "filters") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "REVISION", "XDS", "VERSION", "SOURCE", "DIGEST",
                                "CANARY", "ERROR"]
    cells = lines[1].split()
    assert cells[:3] == ["add-header", "3", V_CURRENT]
    assert cells[3].startswith("…") and cells[3].endswith("/team/add-header:v3")
    assert "a" * 12 in lines[1]
    assert all(len(line) <= 100 for line in lines)
    assert cli(admin, "filters", "-o", "json") == 0
    assert json.loads(capsys.readouterr().out) == {"filters": [filter_view("add-header")]}


def test_server_error_message_and_exit_1(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    message = ("cannot fetch module r/x:1: sha256 mismatch: expected " + SHA_A
               + ", got " + SHA_B)
    admin.fail("PUT", "/api/v1/filters/x", 422, message)
    assert cli(admin, "deploy", "x", "--image", "r/x:1", "-o", "json") == 1
    captured = capsys.readouterr()
    assert captured.err == f"error: {message}\n"
    assert captured.out == ""


def test_connection_refused(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nothing listens there
    url = f"http://127.0.0.1:{port}"
    assert main(["filters", "--server", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot reach xds-server at {url}: ")
    assert err.count("\n") == 1


def test_server_url_forms(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["filters", "--server", admin.url.removeprefix("http://") + "/"]) == 0
    capsys.readouterr()
    assert main(["filters", "--server", "ftp://x"]) == 1
    assert capsys.readouterr().err == (
        "error: invalid server URL 'ftp://x': use http://HOST:PORT\n")


async def test_admin_client_is_usable_from_async_code(admin: FakeAdmin) -> None:
    async with AdminClient(admin.url, actor="bot@ci") as client:
        view = await client.put_filter("f", [{"name": "f", "source": {"image": "r/f:1"}}])
        assert view["revision"] == 4
        assert (await client.list_proxies())["proxies"][0]["node_id"] == "edge-1"
        admin.fail("POST", "/api/v1/filters/f/promote", 409, "f has no canary")
        with pytest.raises(AdminHTTPError) as exc:
            await client.promote("f")
    assert (exc.value.status, exc.value.message) == (409, "f has no canary")
    assert admin.requests[0].headers["X-Actor"] == "bot@ci"


def test_python_dash_m_entry_point(admin: FakeAdmin) -> None:
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "xds_server", "filters", "--server", admin.url, "-o", "json"],
        capture_output=True, text=True, timeout=30, env={**os.environ, "NO_COLOR": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["filters"][0]["name"] == "add-header"


def test_table_truncation_keeps_the_end_where_it_says_most() -> None:
    from xds_server.cli._table import Column, render_table, truncate

    assert truncate("registry.example.com/team/add-header:v3", 12, keep_end=True) == \
        "…d-header:v3"
    assert truncate("a  b\nc", 10) == "a b c"
    assert truncate("abcdefghij", 5) == "abcd…"
    table = render_table(
        [Column("A"), Column("B", shrink=True, min_width=4, keep_end=True)],
        [["x" * 10, "y" * 50 + ":v9"]], max_width=30,
    )
    lines = table.splitlines()
    assert all(len(line) <= 30 for line in lines)
    assert lines[1].startswith("x" * 10) and lines[1].endswith("…" + "y" * 14 + ":v9")


def test_deploy_choices_are_the_config_models() -> None:
    """Every value the config accepts is a `deploy` choice, and nothing else."""
    from xds_server.cli import build_parser
    from xds_server.config import (
        DELIVERY_MODES,
        FAILURE_POLICIES,
        FILTER_TYPES,
        ON_NACK_POLICIES,
        PULL_POLICIES,
    )

    expected = {"failure_policy": FAILURE_POLICIES, "delivery": DELIVERY_MODES,
                "pull_policy": PULL_POLICIES, "on_nack": ON_NACK_POLICIES, "type": FILTER_TYPES}
    parser = build_parser()
    for dest, values in expected.items():
        for value in values:
            args = parser.parse_args(["deploy", "f", "--image", "r/x:1",
                                      f"--{dest.replace('_', '-')}", value])
            assert getattr(args, dest) == value
        with pytest.raises(SystemExit):
            parser.parse_args(["deploy", "f", "--image", "r/x:1", f"--{dest.replace('_', '-')}", "nope"])
