"""The module store against a real registry behind a fault-injecting proxy."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from tests.fixtures.net import free_port
from tests.fixtures.registry import RegistryProcess, RegistryProxy, make_wasm
from xds_server.wasm import (
    InvalidReference,
    ModuleSource,
    ModuleStore,
    NotFound,
    RegistryClient,
    RegistryUnavailable,
    VerificationError,
    push,
)

pytestmark = pytest.mark.registry

FAST = {"retries": 2, "backoff_base": 0.01, "backoff_max": 0.02}


@pytest.fixture
async def client() -> AsyncIterator[RegistryClient]:
    async with RegistryClient(retries=1, backoff_base=0.01) as c:
        yield c


async def _open(root: Path, **kwargs: object) -> ModuleStore:
    options: dict[str, object] = {**FAST, **kwargs}
    store = ModuleStore(root, **options)  # type: ignore[arg-type]
    await store.start()
    return store


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_corrupted_blob_rejected_and_previous_version_kept(
    registry: RegistryProcess, registry_proxy: RegistryProxy, client: RegistryClient,
    tmp_path: Path,
) -> None:
    name = "store/corrupt:v1"
    v1, v2 = make_wasm("corrupt-v1"), make_wasm("corrupt-v2")
    await push(client, f"{registry.host}/{name}", v1)
    source = ModuleSource("image", f"{registry_proxy.host}/{name}", pull_policy="Always")
    store = await _open(tmp_path / "s", resolve_interval=0.0)
    try:
        first = await store.resolve(source)
        assert first.read_bytes() == v1

        pushed = await push(client, f"{registry.host}/{name}", v2)
        registry_proxy.corrupt.add(f"sha256:{pushed.module_sha256}")
        failures = _metric(
            "xds_server_module_fetches_total", kind="image", result="verification_error"
        )
        with capture_logs() as logs:
            again = await store.resolve(source)
        assert again.sha256 == first.sha256 and again.read_bytes() == v1
        failed = [e for e in logs if e["event"] == "module_fetch_failed"]
        assert failed and failed[0]["error_type"] == "VerificationError"
        assert f"expected sha256:{pushed.module_sha256}" in failed[0]["error"]
        assert "received sha256:" in failed[0]["error"] and name in failed[0]["error"]
        assert any(e["event"] == "module_resolve_failed_serving_stored" for e in logs)
        assert _metric(
            "xds_server_module_fetches_total", kind="image", result="verification_error"
        ) == failures + 1

        registry_proxy.corrupt.clear()
        assert (await store.resolve(source)).read_bytes() == v2
    finally:
        await store.close()


async def test_corrupted_blob_without_stored_version_raises(
    registry: RegistryProcess, registry_proxy: RegistryProxy, client: RegistryClient,
    tmp_path: Path,
) -> None:
    pushed = await push(client, f"{registry.host}/store/corrupt-new:v1", make_wasm("cn"))
    registry_proxy.corrupt.add(f"sha256:{pushed.module_sha256}")
    store = await _open(tmp_path / "s")
    try:
        with pytest.raises(VerificationError) as info:
            await store.resolve(
                ModuleSource("image", f"{registry_proxy.host}/store/corrupt-new:v1")
            )
        assert info.value.expected == f"sha256:{pushed.module_sha256}"
        assert info.value.received != info.value.expected
        assert "store/corrupt-new:v1" in info.value.reference
        assert store.get(pushed.module_sha256) is None
    finally:
        await store.close()


async def test_registry_down_retries_then_errors(
    registry: RegistryProcess, registry_proxy: RegistryProxy, tmp_path: Path
) -> None:
    registry_proxy.down = True
    store = await _open(tmp_path / "s")
    try:
        with pytest.raises(RegistryUnavailable, match=r"answered 503 after 3 attempts"):
            await store.resolve(ModuleSource("image", f"{registry_proxy.host}/store/down:v1"))
        assert registry_proxy.count("/manifests/v1") == 3
    finally:
        await store.close()


async def test_connection_refused_retries_then_errors(tmp_path: Path) -> None:
    store = await _open(tmp_path / "s")
    try:
        with pytest.raises(RegistryUnavailable, match=r"unreachable after 3 attempts"):
            await store.resolve(ModuleSource("image", f"127.0.0.1:{free_port()}/x/y:v1"))
    finally:
        await store.close()


async def test_429_and_5xx_are_retried_honouring_retry_after(
    registry: RegistryProcess, registry_proxy: RegistryProxy, client: RegistryClient,
    tmp_path: Path,
) -> None:
    wasm = make_wasm("retry")
    await push(client, f"{registry.host}/store/retry:v1", wasm)
    registry_proxy.fail_next = [(429, {"Retry-After": "0"}), (502, {})]
    store = await _open(tmp_path / "s")
    try:
        module = await store.resolve(ModuleSource("image", f"{registry_proxy.host}/store/retry:v1"))
        assert module.read_bytes() == wasm
        assert registry_proxy.count("/manifests/v1") == 3
    finally:
        await store.close()


async def test_404_is_not_retried(
    registry: RegistryProcess, registry_proxy: RegistryProxy, tmp_path: Path
) -> None:
    store = await _open(tmp_path / "s")
    try:
        with pytest.raises(NotFound, match=r"store/missing:v1.*not found \(404\)"):
            await store.resolve(ModuleSource("image", f"{registry_proxy.host}/store/missing:v1"))
        assert registry_proxy.count("/manifests/v1") == 1
    finally:
        await store.close()


async def test_registry_down_serves_stored_module(
    registry: RegistryProcess, registry_proxy: RegistryProxy, client: RegistryClient,
    tmp_path: Path,
) -> None:
    wasm = make_wasm("down-stored")
    await push(client, f"{registry.host}/store/down-stored:v1", wasm)
    source = ModuleSource(
        "image", f"{registry_proxy.host}/store/down-stored:v1", pull_policy="Always"
    )
    store = await _open(tmp_path / "s", resolve_interval=0.0)
    try:
        first = await store.resolve(source)
        registry_proxy.down = True
        with capture_logs() as logs:
            again = await store.resolve(source)
        assert again.sha256 == first.sha256
        assert registry_proxy.count("/manifests/v1") == 1 + 3
        stale = [e for e in logs if e["event"] == "module_resolve_failed_serving_stored"]
        assert stale and stale[0]["digest"] == first.digest
    finally:
        await store.close()


async def test_concurrent_resolves_download_once(
    registry: RegistryProcess, registry_proxy: RegistryProxy, client: RegistryClient,
    tmp_path: Path,
) -> None:
    wasm = make_wasm("concurrent")
    pushed = await push(client, f"{registry.host}/store/concurrent:v1", wasm)
    store = await _open(tmp_path / "s")
    try:
        source = ModuleSource("image", f"{registry_proxy.host}/store/concurrent:v1")
        modules = await asyncio.gather(*(store.resolve(source) for _ in range(5)))
        assert {m.sha256 for m in modules} == {pushed.module_sha256}
        blob = f"GET /v2/store/concurrent/blobs/sha256:{pushed.module_sha256}"
        assert registry_proxy.count(blob) == 1
        assert registry_proxy.count("/manifests/") == 1
        # IfNotPresent: the registry is not visited again
        await store.resolve(source)
        assert registry_proxy.count("/manifests/") == 1
    finally:
        await store.close()


async def test_restart_with_registry_down_serves_from_store(
    registry: RegistryProcess, registry_proxy: RegistryProxy, client: RegistryClient,
    tmp_path: Path,
) -> None:
    wasm_a, wasm_b = make_wasm("restart-a"), make_wasm("restart-b")
    await push(client, f"{registry.host}/store/restart-a:v1", wasm_a, root_ids=["ra"])
    pushed_b = await push(client, f"{registry.host}/store/restart-b:v1", wasm_b)
    sources = [
        ModuleSource("image", f"{registry_proxy.host}/store/restart-a:v1"),
        ModuleSource(
            "image", f"{registry_proxy.host}/store/restart-b@sha256:{'0' * 64}".replace(
                "sha256:" + "0" * 64, pushed_b.manifest_digest),
        ),
        ModuleSource("image", f"{registry_proxy.host}/store/restart-a:v1", pull_policy="Always"),
    ]
    store = await _open(tmp_path / "s")
    try:
        before = [await store.resolve(s) for s in sources[:2]]
    finally:
        await store.close()
    await registry_proxy.stop()

    restarted = await _open(tmp_path / "s", resolve_interval=0.0)
    try:
        after = [await restarted.resolve(s) for s in sources]
        assert [m.read_bytes() for m in after] == [wasm_a, wasm_b, wasm_a]
        assert after[0].root_ids == ("ra",) and after[0].layout == "wasme"
        assert after[1].manifest_digest == pushed_b.manifest_digest
        assert restarted.get(before[1].digest) == after[1]
    finally:
        await restarted.close()


async def test_manifest_digest_reference_is_verified(
    registry: RegistryProcess, client: RegistryClient, tmp_path: Path
) -> None:
    wasm = make_wasm("digest-ref")
    pushed = await push(client, f"{registry.host}/store/digest:v1", wasm)
    store = await _open(tmp_path / "s")
    try:
        ok = await store.resolve(
            ModuleSource("image", f"{registry.host}/store/digest:v1@{pushed.manifest_digest}")
        )
        assert ok.read_bytes() == wasm
        other = "sha256:" + hashlib.sha256(b"other").hexdigest()
        with pytest.raises(NotFound):  # the registry's answer for a digest it does not hold
            await store.resolve(ModuleSource("image", f"{registry.host}/store/digest@{other}"))
    finally:
        await store.close()


@pytest.mark.parametrize("by", ["digest", "tag"])
async def test_manifest_bytes_not_matching_their_digest_are_refused(
    registry: RegistryProcess, registry_proxy: RegistryProxy, client: RegistryClient,
    tmp_path: Path, by: str,
) -> None:
    """The proxy serves other manifest bytes (still a valid manifest) under the registry's
    headers: by digest, the requested digest does not match; by tag, the registry's
    ``Docker-Content-Digest`` does not."""
    pushed = await push(client, f"{registry.host}/store/forged:v1", make_wasm("forged"))
    registry_proxy.rewrite["/manifests/"] = lambda body: body + b"\n"
    ident = f"@{pushed.manifest_digest}" if by == "digest" else ":v1"
    store = await _open(tmp_path / "s")
    try:
        with pytest.raises(VerificationError) as info:
            await store.resolve(ModuleSource("image", f"{registry_proxy.host}/store/forged{ident}"))
        assert info.value.expected == pushed.manifest_digest
        assert info.value.received != pushed.manifest_digest
        assert "manifest of" in str(info.value)
    finally:
        await store.close()


async def test_module_sha256_pin(
    registry: RegistryProcess, client: RegistryClient, tmp_path: Path
) -> None:
    wasm = make_wasm("pinned")
    ref = f"{registry.host}/store/pinned:v1"
    pushed = await push(client, ref, wasm)
    store = await _open(tmp_path / "s")
    try:
        module = await store.resolve(
            ModuleSource("image", ref, sha256=f"sha256:{pushed.module_sha256}")
        )
        assert module.sha256 == pushed.module_sha256
        wrong = hashlib.sha256(b"x").hexdigest()
        with pytest.raises(VerificationError, match=f"expected sha256:{wrong}") as info:
            await store.resolve(ModuleSource("image", ref, sha256=wrong))
        assert info.value.received == f"sha256:{pushed.module_sha256}"
    finally:
        await store.close()


async def test_url_and_file_sources(tmp_path: Path) -> None:
    wasm = make_wasm("url")
    digest = hashlib.sha256(wasm).hexdigest()
    hits = {"n": 0}

    async def serve(_: web.Request) -> web.Response:
        hits["n"] += 1
        return web.Response(body=wasm)

    app = web.Application()
    app.router.add_get("/filter.wasm", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    store = await _open(tmp_path / "s")
    try:
        url = f"http://127.0.0.1:{port}/filter.wasm"
        module = await store.resolve(ModuleSource("url", url, sha256=digest))
        assert module.read_bytes() == wasm and module.layout == "url"
        await store.resolve(ModuleSource("url", url, sha256=digest))
        assert hits["n"] == 1
        with pytest.raises(VerificationError, match="expected sha256:"):
            await store.resolve(ModuleSource("url", url + "?x", sha256="ab" * 32))
        with pytest.raises(InvalidReference, match="needs a sha256"):
            ModuleSource("url", url)

        path = tmp_path / "local.wasm"
        path.write_bytes(make_wasm("file"))
        local = await store.resolve(ModuleSource("file", str(path)))
        assert local.layout == "file" and local.read_bytes() == path.read_bytes()
    finally:
        await store.close()
        await runner.cleanup()


async def test_lru_eviction_never_evicts_pinned(tmp_path: Path) -> None:
    files = []
    for i in range(4):
        path = tmp_path / f"m{i}.wasm"
        path.write_bytes(make_wasm(f"lru-{i}", padding_bytes=1000))
        files.append(path)
    size = files[0].stat().st_size
    store = await _open(tmp_path / "s", max_store_bytes=int(size * 2.5))
    try:
        first = await store.resolve(ModuleSource("file", str(files[0])))
        store.pin([first.digest])
        second = await store.resolve(ModuleSource("file", str(files[1])))
        third = await store.resolve(ModuleSource("file", str(files[2])))
        assert store.get(first.sha256) is not None  # pinned
        assert store.get(second.sha256) is None  # least recently used, evicted
        assert store.get(third.sha256) is not None
        assert _metric("xds_server_module_store_modules") == 2
        index = json.loads((tmp_path / "s" / "index.json").read_text())
        assert set(index["modules"]) == {first.sha256, third.sha256}
        assert not (tmp_path / "s" / "blobs" / "sha256" / second.sha256).exists()
    finally:
        await store.close()


async def test_lru_evicts_least_recently_used_first_and_keeps_rollback_targets(
    tmp_path: Path,
) -> None:
    """Several candidates: the least recently used goes first (a use refreshes a module);
    a pinned module (a rollback target the controller pins) stays though it is the
    oldest of all."""
    files = []
    for i in range(5):
        path = tmp_path / f"m{i}.wasm"
        path.write_bytes(make_wasm(f"lru-order-{i}", padding_bytes=1000))
        files.append(path)
    size = files[0].stat().st_size
    store = await _open(tmp_path / "s", max_store_bytes=int(size * 3.5))
    try:
        target = await store.resolve(ModuleSource("file", str(files[0])))
        store.pin([target.digest])  # e.g. the last good revision's module
        used = await store.resolve(ModuleSource("file", str(files[1])))
        idle = await store.resolve(ModuleSource("file", str(files[2])))
        assert store.get(used.sha256) is not None  # used again: now newer than `idle`
        with capture_logs() as logs:
            fourth = await store.resolve(ModuleSource("file", str(files[3])))
            fifth = await store.resolve(ModuleSource("file", str(files[4])))
        evicted = [e["digest"] for e in logs if e["event"] == "module_evicted"]
        assert evicted == [idle.digest, used.digest]
        kept = {m.sha256 for m in store.modules()}
        assert kept == {target.sha256, fourth.sha256, fifth.sha256}
        index = json.loads((tmp_path / "s" / "index.json").read_text())
        assert set(index["modules"]) == kept
    finally:
        await store.close()


async def test_tampered_store_file_is_refetched(
    registry: RegistryProcess, registry_proxy: RegistryProxy, client: RegistryClient,
    tmp_path: Path,
) -> None:
    wasm = make_wasm("tamper")
    await push(client, f"{registry.host}/store/tamper:v1", wasm)
    source = ModuleSource("image", f"{registry_proxy.host}/store/tamper:v1")
    store = await _open(tmp_path / "s")
    try:
        module = await store.resolve(source)
    finally:
        await store.close()
    module.path.write_bytes(b"\0asm tampered")
    store = await _open(tmp_path / "s")
    try:
        with capture_logs() as logs:
            again = await store.resolve(source)
        assert again.read_bytes() == wasm
        assert any(e["event"] == "module_store_corrupt" for e in logs)
    finally:
        await store.close()


async def test_resolve_before_start_raises(tmp_path: Path) -> None:
    store = ModuleStore(tmp_path / "s")
    with pytest.raises(RuntimeError, match=r"call start\(\) first"):
        await store.resolve(ModuleSource("file", "/nonexistent"))


async def test_index_lost_after_crash_blobs_are_adopted_and_torn_ones_dropped(
    tmp_path: Path,
) -> None:
    """The index is not fsynced (a module is durable through its blob): a store whose
    index lost entries adopts the blobs whose content matches their name, and drops a
    blob that does not."""
    path = tmp_path / "m.wasm"
    path.write_bytes(make_wasm("adopt"))
    store = await _open(tmp_path / "s")
    try:
        module = await store.resolve(ModuleSource("file", str(path)))
    finally:
        await store.close()
    blobs = tmp_path / "s" / "blobs" / "sha256"
    torn = blobs / ("ab" * 32)
    torn.write_bytes(b"\0asm partial")
    (tmp_path / "s" / "index.json").write_text("")  # as a crash can leave it
    with capture_logs() as logs:
        reopened = await _open(tmp_path / "s")
    try:
        again = reopened.get(module.sha256)
        assert again is not None and again.read_bytes() == path.read_bytes()
        assert reopened.get("ab" * 32) is None and not torn.exists()
        events = [e["event"] for e in logs]
        assert "module_blob_adopted" in events and "module_blob_discarded" in events
    finally:
        await reopened.close()
