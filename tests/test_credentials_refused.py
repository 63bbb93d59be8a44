"""A registry that refuses the credentials (401/403) is never papered over with the stored
copy: not by ``xds-server pull``, not by the ``pull_policy: Always`` refresh, not by a
deploy. A registry that is down still is (tests/test_pull_always.py, test_oci_store.py)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from structlog.testing import capture_logs

from tests.fixtures.registry import (
    PASSWORD,
    USERNAME,
    RegistryProcess,
    htpasswd_registry,
    make_wasm,
    set_password,
)
from tests.fixtures.server import running_server, write_config
from xds_server.cli import modules
from xds_server.controller import FilterError
from xds_server.wasm import AuthError, ModuleSource, ModuleStore, RegistryClient, RegistrySettings, push

pytestmark = pytest.mark.registry


def _pull(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="xds-server")
    modules.register(parser.add_subparsers(required=True))
    args = parser.parse_args(["pull", *argv])
    return int(args.func(args))


def _docker_config(directory: Path, host: str, password: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{USERNAME}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))


@pytest.fixture
def private_registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    with htpasswd_registry(tmp_path / "private-registry") as process:
        yield process


def test_pull_with_refused_credentials_does_not_write_the_stored_copy(
    basic_registry: RegistryProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ref = f"{basic_registry.host}/private/pulled:v1"
    wasm = make_wasm("private-pull")

    async def publish() -> None:
        settings = RegistrySettings(basic_registry.host, username=USERNAME, password=PASSWORD)
        async with RegistryClient(registries=[settings]) as client:
            await push(client, ref, wasm)

    asyncio.run(publish())
    store = str(tmp_path / "store")
    monkeypatch.delenv(modules.USERNAME_ENV, raising=False)
    monkeypatch.delenv(modules.PASSWORD_ENV, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "good"))
    _docker_config(tmp_path / "good", basic_registry.host, PASSWORD)
    assert _pull(ref, "-o", str(tmp_path / "first.wasm"), "--store", store) == 0
    assert (tmp_path / "first.wasm").read_bytes() == wasm
    capsys.readouterr()

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "bad"))
    _docker_config(tmp_path / "bad", basic_registry.host, "not-the-password")
    second = tmp_path / "second.wasm"
    assert _pull(ref, "-o", str(second), "--store", store) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("xds-server pull: error: manifest v1 of ")
    assert "private/pulled:v1" in error
    assert "access denied (401), credentials refused" in error
    assert "not-the-password" not in error
    assert not second.exists()


async def _deployed_sha(app: object, name: str) -> str:
    state = app.controller.filters[name]  # type: ignore[attr-defined]
    return str(state.deployed[0].module.sha256)


async def test_refresh_and_deploy_refuse_when_the_registry_refuses_the_credentials(
    private_registry: RegistryProcess, tmp_path: Path
) -> None:
    """The server's credentials stop being accepted (the password was rotated at the
    registry): the `Always` refresh fails with a clear message instead of serving the
    stored copy, a deploy is refused, and the running revision stays."""
    ref = f"{private_registry.host}/private/served:latest"
    good = RegistrySettings(private_registry.host, username=USERNAME, password=PASSWORD)
    async with RegistryClient(registries=[good]) as client:
        await push(client, ref, make_wasm("served-v1"))
    cfg = write_config(
        tmp_path / "config.yaml",
        [{"name": "hdr", "source": {"image": ref}, "pull_policy": "Always"}],
        resolve_interval=3600,
    )
    doc = yaml.safe_load(cfg.read_text())
    doc["registries"] = [
        {"host": private_registry.host, "username": USERNAME, "password": PASSWORD}
    ]
    cfg.write_text(yaml.safe_dump(doc))
    async with running_server(cfg) as app:
        state = app.controller.filters["hdr"]
        assert state.revision is not None
        running = state.revision.revision
        v1 = await _deployed_sha(app, "hdr")

        set_password(private_registry.root, "rotated")
        rotated = RegistrySettings(private_registry.host, username=USERNAME, password="rotated")
        async with RegistryClient(registries=[rotated]) as client:
            await push(client, ref, make_wasm("served-v2"))
        # Every stored resolution is older than the store's (tiny) resolve interval.
        app.controller.modules.store._resolve_interval = 0.0  # type: ignore[attr-defined]

        with capture_logs() as logs:
            assert await app.controller.refresh_once() == []
        failed = [e for e in logs if e["event"] == "tag_refresh_failed"]
        assert failed and failed[0]["filter"] == "hdr"
        assert "access denied (401), credentials refused" in failed[0]["error"]
        assert "private/served:latest" in failed[0]["error"]
        assert not [e for e in logs if e["event"] == "module_resolve_failed_serving_stored"]

        spec = app.controller.filters["hdr"].deployed[0].spec
        changed = dataclasses.replace(spec, configuration="changed")
        with pytest.raises(FilterError, match=r"access denied \(401\), credentials refused"):
            await app.controller.deploy("hdr", [changed], author="test")

        after = app.controller.filters["hdr"]
        assert after.revision is not None and after.revision.revision == running
        assert await _deployed_sha(app, "hdr") == v1


async def test_a_stored_private_image_is_not_served_to_another_identity(
    basic_registry: RegistryProcess, tmp_path: Path
) -> None:
    """`IfNotPresent` serves a stored image without asking the registry only to the
    identity that fetched it; another identity (anonymous, another user) is asked about,
    and refused."""
    ref = f"{basic_registry.host}/private/identity:v1"
    wasm = make_wasm("private-identity")
    alice = RegistrySettings(basic_registry.host, username=USERNAME, password=PASSWORD)
    async with RegistryClient(registries=[alice]) as client:
        await push(client, ref, wasm)
    root = tmp_path / "store"

    async def resolve(*registries: RegistrySettings) -> bytes:
        store = ModuleStore(root, registries=registries, env={}, retries=0)
        await store.start()
        try:
            return (await store.resolve(ModuleSource("image", ref))).read_bytes()
        finally:
            await store.close()

    assert await resolve(alice) == wasm
    with pytest.raises(AuthError, match="requires basic auth and no credentials") as anonymous:
        await resolve()
    assert anonymous.value.refused
    bob = RegistrySettings(basic_registry.host, username="bob", password="guess")
    with pytest.raises(AuthError, match=r"access denied \(401\), credentials refused"):
        await resolve(bob)
    index = json.loads((root / "index.json").read_text())
    assert [e["identity"] for e in index["refs"].values()] == [USERNAME]
    assert await resolve(alice) == wasm
