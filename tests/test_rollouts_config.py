"""`analysis` and `on_runtime_failure` in a spec (config file, API, CLI), the verdict
rule, and the debug body: validation errors name the field."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.fixtures.server import running_server, write_config
from tests.fixtures.wasm_filters import header_filter
from xds_server.admin._specs import parse_debug_body
from xds_server.cli import admin as cli_admin
from xds_server.config import AnalysisSpec, ConfigError, load_config, parse_filter_spec
from xds_server.controller import FilterError
from xds_server.controller._analysis import Rates, verdict


def _spec(**extra: Any) -> dict[str, Any]:
    return {"name": "hdr", "source": {"file": "/m.wasm"}, **extra}


def test_analysis_parsed_and_shown_in_the_same_schema() -> None:
    spec = parse_filter_spec(_spec(analysis={"interval": "10s", "min_requests": 20, "max_error_rate": 0.05,
                                             "intervals": 3}, on_runtime_failure="rollback"), where="t")
    assert spec.analysis == AnalysisSpec(interval=10.0, min_requests=20, max_error_rate=0.05, intervals=3)
    doc = spec.to_dict()
    assert doc["analysis"] == {"interval": "10s", "min_requests": 20, "max_error_rate": 0.05, "intervals": 3}
    assert doc["on_runtime_failure"] == "rollback"
    assert parse_filter_spec(doc, where="t") == spec
    plain = parse_filter_spec(_spec(), where="t")
    assert plain.analysis is None and plain.on_runtime_failure == "keep"
    assert "analysis" not in plain.to_dict() and "on_runtime_failure" not in plain.to_dict()
    assert parse_filter_spec(_spec(analysis={"interval": "1m"}), where="t").analysis == AnalysisSpec(interval=60.0)


@pytest.mark.parametrize(("analysis", "field", "problem"), [
    ({"interval": "soon"}, "analysis.interval", "duration"),
    ({"interval": "0.5s"}, "analysis.interval", "between 1s and 1h"),
    ({"min_requests": 0}, "analysis.min_requests", "at least 1"),
    ({"min_requests": 2.5}, "analysis.min_requests", "whole number"),
    ({"max_error_rate": 1.5}, "analysis.max_error_rate", "between 0 and 1"),
    ({"max_error_rate": "low"}, "analysis.max_error_rate", "number"),
    ({"intervals": 0}, "analysis.intervals", "at least 1"),
    ({"threshold": 2}, "analysis.threshold", "unknown field"),
    ("10s", "analysis", "mapping"),
])
def test_invalid_analysis_names_the_field(analysis: Any, field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_filter_spec(_spec(analysis=analysis), where="config.yaml", path="filters[0]")
    assert f"filters[0].{field}:" in str(info.value) and problem in str(info.value)


def test_on_runtime_failure_choices_and_bucket_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="on_runtime_failure: must be one of keep, rollback"):
        parse_filter_spec(_spec(on_runtime_failure="panic"), where="t")
    cfg = write_config(tmp_path / "c.yaml", [], health_bucket_seconds=2)
    assert load_config(cfg).server.health_bucket_seconds == 2
    with pytest.raises(ConfigError, match=r"server\.health_bucket_seconds: must be 1 to 60"):
        load_config(write_config(tmp_path / "d.yaml", [], health_bucket_seconds=600))


def test_verdict_rule() -> None:
    spec = AnalysisSpec(min_requests=20, max_error_rate=0.05)
    assert verdict(spec, Rates(19, 19), None) == "inconclusive"  # too few requests: neither
    assert verdict(spec, Rates(20, 2), Rates(100, 0)) == "fail"
    assert verdict(spec, Rates(20, 1), Rates(100, 0)) == "pass"  # 5% is not above 5%
    assert verdict(spec, Rates(20, 4), Rates(100, 30)) == "pass"  # the backend fails everyone
    assert verdict(spec, Rates(20, 4), None) == "fail"  # without a canary: no baseline
    assert Rates(10, 25).error_rate == 1.0 and Rates(0, 0).error_rate == 0.0


def test_debug_body() -> None:
    assert parse_debug_body("hdr", {"node": "e-*", "configuration": {"b": 1, "a": 2}, "for": "2m"}) == (
        "e-*", '{"a":2,"b":1}', 120.0)
    for body, member in [({"configuration": "x", "for": "1m"}, "'node'"),
                         ({"node": "e", "configuration": "x"}, "'for' is required"),
                         ({"node": "e", "for": "never"}, "'for' must be a duration"),
                         ({"node": "e", "for": 5, "level": 1}, "'level' has no effect")]:
        with pytest.raises(FilterError) as info:
            parse_debug_body("hdr", body)
        assert info.value.status == 400 and member in info.value.message


def test_deploy_cli_builds_analysis_and_runtime_policy() -> None:
    parser = argparse.ArgumentParser()
    cli_admin.register(parser.add_subparsers())
    args = parser.parse_args(["deploy", "hdr", "--file", "/m.wasm", "--analysis",
                              "interval=10s,min_requests=20,max_error_rate=0.05,intervals=3",
                              "--on-runtime-failure", "rollback"])
    spec = cli_admin.build_deploy_spec(args)
    assert spec["analysis"] == {"interval": "10s", "min_requests": 20, "max_error_rate": 0.05, "intervals": 3}
    assert spec["on_runtime_failure"] == "rollback"


async def test_api_accepts_analysis_refuses_bad_ones_and_round_trips(tmp_path: Path) -> None:
    module = tmp_path / "m.wasm"
    module.write_bytes(header_filter())
    cfg = write_config(tmp_path / "config.yaml", [{"name": "hdr", "source": {"file": str(module)},
                                                   "analysis": {"interval": "30s"}}])
    async with running_server(cfg) as app, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{app.admin_port}/api/v1/filters/hdr"
        async with http.get(url) as r:
            view = await r.json()
        assert view["specs"][0]["analysis"]["interval"] == "30s"
        assert "analysis" in view and view["debug"] is None
        async with http.put(url, json={"source": {"file": str(module)}, "analysis": {"max_error_rate": 5}}) as r:
            body = await r.json()
            assert r.status == 400 and "specs[0].analysis.max_error_rate" in body["error"]["message"]
        # What GET shows can be PUT back (analysis and debug are derived members).
        view["specs"][0]["on_runtime_failure"] = "rollback"
        del view["specs"][0]["analysis"]
        async with http.put(url, json=view) as r:
            assert r.status == 200, await r.text()
            spec = (await r.json())["specs"][0]
        assert spec["on_runtime_failure"] == "rollback" and "analysis" not in spec

        # `apply -f` takes the config file's schema, analysis included.
        doc = tmp_path / "filters.yaml"
        doc.write_text(yaml.safe_dump({"filters": [{
            "name": "hdr", "source": {"file": "m.wasm"},
            "analysis": {"interval": "20s", "min_requests": 50, "max_error_rate": 0.01, "intervals": 5}}]}))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "xds_server", "apply", "-f", str(doc), "--server",
            f"http://127.0.0.1:{app.admin_port}", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        spec = app.controller.filters["hdr"].deployed[0].spec
        assert spec.analysis == AnalysisSpec(interval=20.0, min_requests=50, max_error_rate=0.01, intervals=5)
