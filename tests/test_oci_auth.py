"""Auth against real registries: htpasswd basic auth and the bearer token flow."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.fixtures.registry import PASSWORD, USERNAME, RegistryProcess, TokenIssuer, make_wasm
from xds_server.wasm import (
    AuthError,
    ModuleSource,
    ModuleStore,
    RegistryClient,
    RegistrySettings,
    push,
)

pytestmark = pytest.mark.registry


def _settings(reg: RegistryProcess, password: str = PASSWORD) -> RegistrySettings:
    return RegistrySettings(reg.host, username=USERNAME, password=password)


async def _store(tmp_path: Path, **kwargs: object) -> ModuleStore:
    store = ModuleStore(tmp_path / "store", retries=1, backoff_base=0.01, **kwargs)  # type: ignore[arg-type]
    await store.start()
    return store


@pytest.fixture
async def basic_image(basic_registry: RegistryProcess) -> AsyncIterator[tuple[str, bytes]]:
    wasm = make_wasm("basic")
    ref = f"{basic_registry.host}/auth/basic:v1"
    async with RegistryClient(registries=[_settings(basic_registry)]) as client:
        await push(client, ref, wasm)
    yield ref, wasm


async def test_basic_auth_succeeds(
    basic_registry: RegistryProcess, basic_image: tuple[str, bytes], tmp_path: Path
) -> None:
    ref, wasm = basic_image
    store = await _store(tmp_path, registries=[_settings(basic_registry)])
    try:
        with capture_logs() as logs:
            module = await store.resolve(ModuleSource("image", ref))
        assert module.read_bytes() == wasm
        assert PASSWORD not in repr(logs)
        assert PASSWORD not in repr(_settings(basic_registry))
    finally:
        await store.close()


async def test_basic_auth_wrong_password_fails_clearly(
    basic_registry: RegistryProcess, basic_image: tuple[str, bytes], tmp_path: Path
) -> None:
    ref, _ = basic_image
    store = await _store(tmp_path, registries=[_settings(basic_registry, "wrong")])
    try:
        with pytest.raises(AuthError, match=r"access denied \(401\).*credentials") as info:
            await store.resolve(ModuleSource("image", ref))
        assert "auth/basic:v1" in str(info.value)
        assert "wrong" not in str(info.value)
    finally:
        await store.close()


async def test_basic_auth_without_credentials_says_so(
    basic_image: tuple[str, bytes], tmp_path: Path
) -> None:
    ref, _ = basic_image
    store = await _store(tmp_path, env={})
    try:
        with pytest.raises(AuthError, match="requires basic auth and no credentials"):
            await store.resolve(ModuleSource("image", ref))
    finally:
        await store.close()


async def test_credentials_from_environment(
    basic_registry: RegistryProcess, basic_image: tuple[str, bytes], tmp_path: Path
) -> None:
    ref, wasm = basic_image
    key = "XDS_SERVER_REGISTRY_" + basic_registry.host.replace(".", "_").replace(":", "_")
    env = {f"{key}_USERNAME": USERNAME, f"{key}_PASSWORD": PASSWORD}
    store = await _store(tmp_path, env=env)
    try:
        assert (await store.resolve(ModuleSource("image", ref))).read_bytes() == wasm
    finally:
        await store.close()


async def test_credentials_from_docker_config_auths(
    basic_registry: RegistryProcess, basic_image: tuple[str, bytes], tmp_path: Path
) -> None:
    ref, wasm = basic_image
    config = tmp_path / "config.json"
    auth = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    config.write_text(json.dumps({"auths": {f"http://{basic_registry.host}": {"auth": auth}}}))
    store = await _store(tmp_path, env={}, docker_config=config)
    try:
        assert (await store.resolve(ModuleSource("image", ref))).read_bytes() == wasm
    finally:
        await store.close()


async def test_credentials_from_docker_credential_helper(
    basic_registry: RegistryProcess, basic_image: tuple[str, bytes], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ref, wasm = basic_image
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-xdstest"
    helper.write_text(
        "#!/bin/sh\nread host\n"
        f"echo '{{\"ServerURL\":\"'$host'\",\"Username\":\"{USERNAME}\","
        f"\"Secret\":\"{PASSWORD}\"}}'\n"
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"credHelpers": {basic_registry.host: "xdstest"}}))
    store = await _store(tmp_path, env={}, docker_config=config)
    try:
        assert (await store.resolve(ModuleSource("image", ref))).read_bytes() == wasm
    finally:
        await store.close()


async def test_bearer_token_flow_push_with_credentials_pull_anonymous(
    token_registry: RegistryProcess, token_issuer: TokenIssuer, tmp_path: Path
) -> None:
    wasm = make_wasm("bearer")
    ref = f"{token_registry.host}/auth/bearer:v1"
    async with RegistryClient(registries=[_settings(token_registry)]) as client:
        await push(client, ref, wasm, root_ids=["bearer_root"])
    assert token_issuer.requests["user"] >= 1

    before = token_issuer.requests["anonymous"]
    store = await _store(tmp_path, env={})
    try:
        module = await store.resolve(ModuleSource("image", ref))
        assert module.read_bytes() == wasm
        assert module.root_ids == ("bearer_root",)
        # manifest, config and layer: one token, cached for the repository scope
        assert token_issuer.requests["anonymous"] == before + 1
    finally:
        await store.close()


async def test_bearer_pull_with_credentials(
    token_registry: RegistryProcess, token_issuer: TokenIssuer, tmp_path: Path
) -> None:
    wasm = make_wasm("bearer-creds")
    ref = f"{token_registry.host}/auth/bearer-creds:v1"
    async with RegistryClient(registries=[_settings(token_registry)]) as client:
        await push(client, ref, wasm)
    store = await _store(tmp_path, registries=[_settings(token_registry)])
    try:
        assert (await store.resolve(ModuleSource("image", ref))).read_bytes() == wasm
    finally:
        await store.close()


async def test_bearer_wrong_password_fails_clearly(
    token_registry: RegistryProcess, token_issuer: TokenIssuer, tmp_path: Path
) -> None:
    ref = f"{token_registry.host}/auth/bearer:v1"
    store = await _store(tmp_path, registries=[_settings(token_registry, "nope")])
    try:
        with pytest.raises(AuthError, match=r"token service .* refused the configured credentials"):
            await store.resolve(ModuleSource("image", ref))
    finally:
        await store.close()


async def test_bearer_anonymous_push_is_denied(
    token_registry: RegistryProcess, tmp_path: Path
) -> None:
    async with RegistryClient(env={}) as client:
        with pytest.raises(AuthError, match=r"access denied \(401\)"):
            await push(client, f"{token_registry.host}/auth/anon:v1", make_wasm("anon"))
