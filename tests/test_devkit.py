"""`init` and `build` with the real toolchains (clang/lld), and what the checks refuse.

The AssemblyScript toolchain (npm ci + asc) is exercised by the session fixture
``as_node_modules`` and tests/test_devloop.py; the C one is fast, so the error paths use it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import cast

import pytest

from tests.fixtures.devkit import new_project, xs
from tests.fixtures.registry import RegistryProcess
from tests.fixtures.wasm_filters import not_wasm
from xds_server.bootstrap import bootstrap_yaml
from xds_server.cli import build_parser
from xds_server.cli.bootstrap import options_from_args
from xds_server.devkit import host_imports

REPO = Path(__file__).resolve().parent.parent


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


async def test_init_c_then_build_reports_abi_size_and_root_ids(tmp_path: Path) -> None:
    project = await new_project(tmp_path / "hdr", "c", name="hdr-filter")
    assert {p.name for p in project.iterdir()} >= {"filter.yaml", "README.md", "test.sh", "src", "include"}
    assert "x-hdr-filter" in (project / "src" / "filter.c").read_text()
    out = tmp_path / "out" / "f.wasm"
    result = await xs("build", str(project), "-o", str(out))
    assert f"built {out}:" in result.out and "proxy_abi_version_0_2_1" in result.out, result.out
    assert out.read_bytes()[:4] == b"\0asm"
    size = int(result.out.split(": ", 1)[1].split(" bytes", 1)[0])
    assert size == out.stat().st_size


async def test_init_refuses_a_non_empty_directory_and_a_bad_name(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    result = await xs("init", str(tmp_path / "full"), "--language", "c", ok=False)
    assert result.code == 1 and "not an empty directory" in result.err
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    result = await xs("init", str(tmp_path / "x"), "--language", "c", "--name", "Bad Name", ok=False)
    assert result.code == 1 and "--name" in result.err


async def test_compile_error_is_shown_as_printed_and_keeps_the_previous_module(tmp_path: Path) -> None:
    project = await new_project(tmp_path / "broken", "c")
    await xs("build", str(project))
    before = (project / "build" / "filter.wasm").read_bytes()
    _edit(project / "src" / "filter.c", '#define VERSION "1"', '#define VERSION "1"\nint broken = ;')
    result = await xs("build", str(project), ok=False)
    assert result.code == 1
    assert "src/filter.c:" in result.err and "error: expected expression" in result.err, result.err
    assert "int broken = ;" in result.err  # clang's own excerpt with the caret
    assert (project / "build" / "filter.wasm").read_bytes() == before


@pytest.mark.parametrize(("language", "says"), [("c", "clang not found"), ("assemblyscript", "node/npm not found")])
async def test_missing_toolchain_names_the_debian_package(tmp_path: Path, language: str, says: str) -> None:
    project = await new_project(tmp_path / "notools", language)
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    env = {**os.environ, "PATH": str(bare)}
    result = await xs("build", str(project), ok=False, env=env)
    package = "clang lld" if language == "c" else "nodejs npm"
    assert result.code == 1 and says in result.err and f"apt-get install {package}" in result.err, result.err


async def test_an_import_envoy_does_not_provide_is_refused(tmp_path: Path) -> None:
    project = await new_project(tmp_path / "imp", "c")
    _edit(project / "src" / "filter.c", "PROXY_EXPORT(proxy_on_context_create)",
          "PROXY_IMPORT(proxy_get_secret) proxy_status_t proxy_get_secret(void);\n"
          "PROXY_EXPORT(proxy_on_context_create)")
    _edit(project / "src" / "filter.c", "uint32_t parent_id) {}", "uint32_t parent_id) { proxy_get_secret(); }")
    result = await xs("build", str(project), ok=False)
    assert result.code == 1 and "env.proxy_get_secret" in result.err, result.err
    assert "Envoy's proxy-wasm host does not provide" in result.err
    assert not (project / "build" / "filter.wasm").exists()


async def test_a_root_id_the_module_does_not_register_is_refused(tmp_path: Path) -> None:
    project = await new_project(tmp_path / "rid", "c")
    result = await xs("build", str(project), "--root-id", "somebody_else", ok=False)
    assert result.code == 1 and "root id 'somebody_else' does not appear" in result.err


async def test_build_wasm_checks_any_toolchains_output(tmp_path: Path) -> None:
    result = await xs("build", "--wasm", str(REPO / "config" / "add-header.wasm"))
    assert "proxy_abi_version_0_2_1" in result.out or "proxy_abi_version_0_2_0" in result.out, result.out
    bogus = tmp_path / "bogus.wasm"
    bogus.write_bytes(not_wasm())
    result = await xs("build", "--wasm", str(bogus), ok=False)
    assert result.code == 1 and "is not a WebAssembly module" in result.err


def test_host_imports_follow_the_abi_version() -> None:
    assert ("env", "proxy_get_log_level") in host_imports("proxy_abi_version_0_2_1")
    assert ("env", "proxy_get_log_level") not in host_imports("proxy_abi_version_0_2_0")
    assert ("env", "proxy_continue_request") in host_imports("proxy_abi_version_0_1_0")
    assert ("wasi_snapshot_preview1", "fd_write") in host_imports("proxy_abi_version_0_2_0")


@pytest.mark.registry
async def test_build_pushes_with_the_existing_push(tmp_path: Path, registry: RegistryProcess) -> None:
    project = await new_project(tmp_path / "pushed", "c")
    ref = f"{registry.host}/devkit/pushed:v1"
    result = await xs("build", str(project), "--image", ref, "--layout", "cncf")
    assert f"pushed {ref}@sha256:" in result.out, result.out
    inspected = json.loads((await xs("inspect", ref)).out)
    built = result.out.split("sha256:", 1)[1][:16]
    assert inspected["layout"] == "cncf" and inspected["sha256"].startswith(f"sha256:{built}")


def _parse(*argv: str) -> str:
    args = build_parser().parse_args(list(argv))
    return bootstrap_yaml(options_from_args(args))


def test_envoy_takes_every_bootstrap_option_and_makes_the_same_bootstrap() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    choices = cast(dict[str, argparse.ArgumentParser], sub.choices)
    options = {name: {s for a in choices[name]._actions for s in a.option_strings} for name in ("bootstrap", "envoy")}
    assert options["bootstrap"] - {"-h", "--help"} <= options["envoy"]
    same = ["--node-id", "n1", "--filter", "a", "--filter", "b", "--xds-address", "127.0.0.1:1",
            "--listen", "127.0.0.1:2", "--admin", "127.0.0.1:3", "--metadata", "role=edge", "--delta"]
    assert _parse("envoy", *same) == _parse("bootstrap", *same)


async def test_envoy_without_an_envoy_binary_says_how_to_get_one(tmp_path: Path) -> None:
    result = await xs("envoy", "--envoy-binary", str(tmp_path / "nope"), ok=False)
    assert result.code == 2 and "not an executable file" in result.err


def test_dev_replaces_only_the_module_of_the_spec_its_selector_names(tmp_path: Path) -> None:
    from xds_server.cli._devloop import build_specs
    from xds_server.devkit import Project

    project = Project(root=tmp_path, name="p", language="c", root_id="", configuration="cfg")
    staging = {"name": "f", "source": {"image": "r/x:1"}, "configuration": "s", "version": "v1", "module": {},
               "selector": {"node_id": "staging-*", "cluster": "*"}}
    prod = {**staging, "configuration": "p", "selector": {"node_id": "prod-*", "cluster": "*"}}
    view = {"specs": [staging, prod]}
    module = tmp_path / "m.wasm"
    specs = build_specs(view, "f", project, module, "ab" * 32, {"node_id": "staging-*"})
    assert specs[0]["source"] == {"file": str(module)} and specs[0]["configuration"] == "s"
    assert specs[0]["on_nack"] == "rollback" and "version" not in specs[0] and "module" not in specs[0]
    assert specs[1]["source"] == {"image": "r/x:1"}
    with pytest.raises(ValueError, match="pass --selector"):
        build_specs(view, "f", project, module, "ab" * 32, None)
    (new,) = build_specs(None, "f", project, module, "ab" * 32, None)
    assert new["configuration"] == "cfg" and "selector" not in new


def test_npm_ci_runs_when_node_modules_differs_from_the_lock(tmp_path: Path) -> None:
    from xds_server.devkit._toolchains import _needs_install

    lock = {"packages": {"": {"name": "p"}, "node_modules/assemblyscript": {"version": "0.14.13"}}}
    (tmp_path / "package-lock.json").write_text(json.dumps(lock))
    assert _needs_install(tmp_path)  # no node_modules: first build
    (tmp_path / "node_modules" / ".bin").mkdir(parents=True)
    (tmp_path / "node_modules" / ".bin" / "asc").write_text("")
    (tmp_path / "node_modules" / ".package-lock.json").write_text(json.dumps(lock))
    assert not _needs_install(tmp_path)
    lock["packages"]["node_modules/assemblyscript"]["version"] = "0.14.12"
    (tmp_path / "node_modules" / ".package-lock.json").write_text(json.dumps(lock))
    assert _needs_install(tmp_path)
