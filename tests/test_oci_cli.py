"""``xds-server pull|inspect|push`` against a real registry, and interop with ``oras``."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import oras.client
import pytest

from tests.fixtures.registry import PASSWORD, USERNAME, RegistryProcess, make_wasm
from xds_server.cli import modules

pytestmark = pytest.mark.registry


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="xds-server")
    subparsers = parser.add_subparsers(required=True)
    modules.register(subparsers)
    args = parser.parse_args(list(argv))
    return int(args.func(args))


@pytest.mark.parametrize("layout", ["wasme", "cncf", "compat"])
def test_push_output_is_pullable_by_pull(
    registry: RegistryProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: str
) -> None:
    wasm = make_wasm(f"cli-{layout}")
    source = tmp_path / "filter.wasm"
    source.write_bytes(wasm)
    ref = f"{registry.host}/cli/{layout}:v1"
    assert run("push", str(source), ref, "--layout", layout, "--root-id", "cli_root") == 0
    pushed = capsys.readouterr().out
    assert f"sha256:{hashlib.sha256(wasm).hexdigest()}" in pushed

    out = tmp_path / "pulled.wasm"
    assert run("pull", ref, "-o", str(out), "--store", str(tmp_path / "store")) == 0
    printed = capsys.readouterr().out.splitlines()
    assert out.read_bytes() == wasm
    assert printed[0] == f"sha256:{hashlib.sha256(wasm).hexdigest()}"
    assert printed[1] == f"layout: {layout}"
    assert printed[2] == ("root_ids: cli_root" if layout == "wasme" else "root_ids: ")


def test_inspect_prints_json(
    registry: RegistryProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wasm = make_wasm("cli-inspect")
    source = tmp_path / "filter.wasm"
    source.write_bytes(wasm)
    ref = f"{registry.host}/cli/inspect:v1"
    assert run("push", str(source), ref, "--root-id", "inspect_root") == 0
    digest_line = capsys.readouterr().out.splitlines()[0]
    assert run("inspect", ref, "--store", str(tmp_path / "store")) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["manifest_digest"] == digest_line.rsplit("@", 1)[1]
    assert info["layout"] == "wasme"
    assert info["sha256"] == f"sha256:{hashlib.sha256(wasm).hexdigest()}"
    assert info["size"] == len(wasm)
    assert info["root_ids"] == ["inspect_root"]
    assert info["annotations"]["org.opencontainers.image.title"] == "filter.wasm"


def test_errors_are_one_line_with_exit_1(
    registry: RegistryProcess, basic_registry: RegistryProcess, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = str(tmp_path / "store")
    assert run("pull", f"{registry.host}/cli/missing:v1", "--store", store) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("xds-server pull: error: manifest v1 of ")
    assert "not found (404)" in err[-1]

    assert run("inspect", "UPPER/Case:v1", "--store", store) == 1
    assert "invalid repository component 'UPPER'" in capsys.readouterr().err

    not_wasm = tmp_path / "x.wasm"
    not_wasm.write_bytes(b"hello")
    assert run("push", str(not_wasm), f"{registry.host}/cli/bad:v1") == 1
    assert "is not a WebAssembly module" in capsys.readouterr().err

    monkeypatch.setenv(modules.USERNAME_ENV, USERNAME)
    monkeypatch.setenv(modules.PASSWORD_ENV, "wrong")
    wasm = tmp_path / "ok.wasm"
    wasm.write_bytes(make_wasm("cli-auth"))
    assert run("push", str(wasm), f"{basic_registry.host}/cli/auth:v1") == 1
    message = capsys.readouterr().err
    assert "access denied (401)" in message and "wrong" not in message
    monkeypatch.setenv(modules.PASSWORD_ENV, PASSWORD)
    assert run("push", str(wasm), f"{basic_registry.host}/cli/auth:v1") == 0


@pytest.mark.parametrize(("layout", "title"), [("wasme", "filter.wasm"), ("cncf", "module.wasm")])
def test_push_output_is_pullable_by_oras(
    registry: RegistryProcess, tmp_path: Path, layout: str, title: str
) -> None:
    wasm = make_wasm(f"oras-{layout}")
    source = tmp_path / "filter.wasm"
    source.write_bytes(wasm)
    ref = f"{registry.host}/cli/oras-{layout}:v1"
    assert run("push", str(source), ref, "--layout", layout) == 0

    client = oras.client.OrasClient(hostname=registry.host, insecure=True)
    outdir = tmp_path / "oras"
    files = client.pull(target=ref, outdir=str(outdir))
    assert [Path(f).name for f in files] == [title]
    assert Path(files[0]).read_bytes() == wasm


def test_oras_pushed_wasme_artifact_is_pullable(
    registry: RegistryProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wasm = make_wasm("oras-pushed")
    monkeypatch.chdir(tmp_path)
    Path("filter.wasm").write_bytes(wasm)
    Path("config.json").write_text(
        json.dumps({"type": "envoy_proxy", "abiVersions": ["v0.2.1"], "rootIds": ["oras_root"]})
    )
    ref = f"{registry.host}/cli/oras-pushed:v1"
    client = oras.client.OrasClient(hostname=registry.host, insecure=True)
    client.push(
        files=["filter.wasm:application/vnd.module.wasm.content.layer.v1+wasm"],
        target=ref,
        manifest_config="config.json:application/vnd.module.wasm.config.v1+json",
    )
    capsys.readouterr()
    assert run("pull", ref, "-o", "out.wasm", "--store", str(tmp_path / "store")) == 0
    assert Path("out.wasm").read_bytes() == wasm
    assert capsys.readouterr().out.splitlines()[1:] == ["layout: wasme", "root_ids: oras_root"]
