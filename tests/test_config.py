"""Configuration: valid files load, invalid ones fail naming the file, field and problem."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from xds_server.config import ConfigError, load_config, parse_filter_spec
from xds_server.nodes import NodeInfo, NodeSelector, selectors_overlap

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_loads() -> None:
    cfg = load_config(ROOT / "config" / "example.yaml")
    assert cfg.server.xds_address == "127.0.0.1:18000"
    assert cfg.server.admin_address == "127.0.0.1:18080"
    (spec,) = cfg.filters
    assert spec.name == "add-header"
    assert spec.source.kind == "file"
    assert Path(spec.source.location).is_file()
    assert spec.configuration == '{"greeting":"hello from xds-server"}'


@pytest.mark.parametrize(
    ("body", "path", "problem"),
    [
        ("filters: [{name: f}]", "filters[0].source", "exactly one of image, url or file"),
        ("filters: [{name: f, source: {file: a.wasm}, failure_policy: SOMETIMES}]",
         "filters[0].failure_policy", "must be one of FAIL_CLOSED, FAIL_OPEN, FAIL_RELOAD"),
        ("filters: [{name: f, source: {url: 'https://x/a.wasm'}}]",
         "filters[0].source.sha256", "required with a url source"),
        ("filters: [{name: f, source: {file: a.wasm, image: x}}]",
         "filters[0].source", "exactly one"),
        ("filters: [{name: 'bad name!', source: {file: a.wasm}}]", "filters[0].name", "must be"),
        ("filters: [{name: f, source: {file: a.wasm}, colour: red}]", "filters[0].colour",
         "unknown field"),
        ("server: {xds_address: nowhere}", "server.xds_address", "HOST:PORT"),
        ("filters: {name: f}", "filters", "must be a list"),
        ("filters: [{name: f, source: {file: a.wasm}, configuration: 3.5, type: tcp}]",
         "filters[0].type", "must be one of http, network"),
        ("filters:\n  - name: f\n    source: {file: a.wasm}\n  - name: f\n    source: {file: b.wasm}\n",
         "filters[1].selector", "overlaps filters[0].selector"),
        ("filters: [{name: f, source: {file: a.wasm}, sha256: abc}]", "filters[0].sha256",
         "64 lowercase hex"),
        ("filters: [\n  {name: f", "line", "invalid YAML"),
    ],
)
def test_invalid_config_names_file_field_and_problem(
    tmp_path: Path, body: str, path: str, problem: str
) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_config(f)
    msg = str(info.value)
    assert str(f) in msg
    assert path in msg
    assert problem in msg


def test_disjoint_selectors_share_a_name(tmp_path: Path) -> None:
    f = tmp_path / "ok.yaml"
    f.write_text(
        "filters:\n"
        "  - {name: f, source: {file: a.wasm}, selector: {cluster: staging-*}}\n"
        "  - {name: f, source: {file: b.wasm}, selector: {cluster: prod-*}}\n"
    )
    cfg = load_config(f)
    assert [s.selector.cluster for s in cfg.filters] == ["staging-*", "prod-*"]


def test_selector_matching_and_overlap() -> None:
    node = NodeInfo(id="edge-1", cluster="prod-eu", metadata={"role": "edge", "tier": {"n": 2}})
    assert NodeSelector().matches(node)
    assert NodeSelector(node_id="edge-*", cluster="prod-*").matches(node)
    assert NodeSelector(metadata={"role": "edge", "tier.n": "2"}).matches(node)
    assert not NodeSelector(metadata={"role": "core"}).matches(node)
    assert not NodeSelector(cluster="staging-*").matches(node)
    assert selectors_overlap(NodeSelector(), NodeSelector(cluster="a"))
    assert not selectors_overlap(NodeSelector(cluster="a-*"), NodeSelector(cluster="b-*"))
    assert not selectors_overlap(NodeSelector(metadata={"env": "a"}),
                                 NodeSelector(metadata={"env": "b"}))
    assert selectors_overlap(NodeSelector(node_id="*-1"), NodeSelector(node_id="edge-*"))
    assert not selectors_overlap(NodeSelector(node_id="x"), NodeSelector(node_id="y-*"))


def test_configuration_mapping_renders_as_json() -> None:
    spec = parse_filter_spec(
        {"name": "f", "source": {"image": "reg.local/f:v1"}, "configuration": {"b": 1, "a": [1]}},
        where="test",
    )
    assert spec.configuration == '{"a":[1],"b":1}'
    assert spec.source.kind == "image"


def test_check_config_command_exits_non_zero(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("filters: [{name: f, source: {file: a.wasm}, failure_policy: NOPE}]")
    run = subprocess.run([sys.executable, "-m", "xds_server", "check-config", str(f)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 1
    assert "filters[0].failure_policy" in run.stderr and str(f) in run.stderr
    run = subprocess.run([sys.executable, "-m", "xds_server", "serve", "--config", str(f)],
                         capture_output=True, text=True, check=False, timeout=30)
    assert run.returncode == 1
    assert "failure_policy" in run.stderr


def test_per_subsystem_log_levels_and_redaction() -> None:
    code = (
        "import structlog\n"
        "from xds_server.log import configure_logging\n"
        "configure_logging('info', 'json', {'xds_server.xds': 'warning'})\n"
        "structlog.get_logger('xds_server.xds').info('quiet_event')\n"
        "structlog.get_logger('xds_server.xds').warning('loud_event', node_id='n1')\n"
        "structlog.get_logger('xds_server.controller').info('ctl_event', password='hunter2')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = [json.loads(line) for line in run.stderr.splitlines()]
    events = {e["event"]: e for e in lines}
    assert set(events) == {"loud_event", "ctl_event"}
    assert events["loud_event"]["logger"] == "xds_server.xds" and events["loud_event"]["node_id"] == "n1"
    assert events["ctl_event"]["password"] == "<redacted>"
    assert "hunter2" not in run.stderr
