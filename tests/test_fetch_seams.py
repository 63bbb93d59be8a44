"""The two seams every fetch goes through: the retry policy, and the verified download
(stream a body, hash it, cap its size; into memory or a temp file), the latter against a
real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from tests.fixtures.envoy import wait_for
from tests.fixtures.net import free_port
from xds_server.wasm import ModuleTooLarge, RegistryUnavailable, StoreError, VerificationError
from xds_server.wasm._http import fetch_url
from xds_server.wasm.download import read_body
from xds_server.wasm.retry import RetryPolicy, parse_retry_after

BODY = bytes(range(256)) * 4096  # 1 MiB
DIGEST = "sha256:" + hashlib.sha256(BODY).hexdigest()

# -- the retry policy -------------------------------------------------------------------


@pytest.mark.parametrize(("status", "retry"), [
    (408, True), (429, True), (500, True), (502, True), (503, True), (599, True),
    (400, False), (401, False), (403, False), (404, False), (409, False), (200, False),
])
def test_what_is_retryable(status: int, retry: bool) -> None:
    assert RetryPolicy.retryable(status) is retry


def test_backoff_is_exponential_jittered_and_capped() -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_max=4.0)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 4.0), (10, 4.0)]:
        waits = {policy.delay(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= w <= ceiling for w in waits), (attempt, waits)
        assert len(waits) > 1  # jitter: not one fixed wait


def test_retry_after_replaces_the_backoff_and_is_capped() -> None:
    policy = RetryPolicy(backoff_base=0.01, backoff_max=0.02, retry_after_cap=30.0)
    assert policy.delay(0, "3") == 3.0
    assert policy.delay(0, "0") == 0.0
    assert policy.delay(5, "1000") == 30.0
    assert 0.005 <= policy.delay(0, "soon") <= 0.01  # unreadable: the backoff
    now = time.time()
    date = email.utils.formatdate(now + 20, usegmt=True)
    assert 18.0 <= parse_retry_after(date, cap=60.0, now=now) <= 20.0  # type: ignore[operator]
    past = email.utils.formatdate(now - 20, usegmt=True)
    assert parse_retry_after(past, cap=60.0, now=now) == 0.0
    assert parse_retry_after(None, cap=60.0) is None


def test_retries_count_and_bad_values() -> None:
    policy = RetryPolicy(retries=2)
    assert [policy.exhausted(a) for a in range(4)] == [False, False, True, True]
    assert RetryPolicy(retries=0).exhausted(0)
    assert policy.overridden(retries=5, backoff_max=1.0) == RetryPolicy(retries=5, backoff_max=1.0)
    assert policy.overridden() is not None and policy.overridden().retries == 2
    with pytest.raises(ValueError, match="retries must be >= 0"):
        RetryPolicy(retries=-1)
    with pytest.raises(ValueError, match="backoff_base must be >= 0"):
        RetryPolicy(backoff_base=-1.0)


# -- a real server ----------------------------------------------------------------------

@asynccontextmanager
async def serving(handler: Callable[[web.Request], object]) -> AsyncIterator[str]:
    """Serve ``handler`` at /m on a free loopback port; yield the URL."""
    app = web.Application()
    app.router.add_get("/m", handler)  # type: ignore[arg-type]
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/m"
    finally:
        await runner.cleanup()


async def whole(request: web.Request) -> web.Response:
    return web.Response(body=BODY)


async def chunked(request: web.Request) -> web.StreamResponse:
    """No Content-Length: only the bytes received can trip the cap."""
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    for start in range(0, len(BODY), 64 * 1024):
        await response.write(BODY[start:start + 64 * 1024])
    await response.write_eof()
    return response


def temp_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(".tmp-*")) if directory.is_dir() else []


# -- the verified download --------------------------------------------------------------


async def test_download_into_memory_is_hashed_and_reports_progress() -> None:
    seen: list[tuple[int, int | None]] = []
    async with serving(whole) as url, aiohttp.ClientSession() as http, http.get(url) as resp:
        body = await read_body(resp, what="m", max_bytes=len(BODY), expected=DIGEST,
                               progress=lambda done, total: seen.append((done, total)))
    assert body.data == BODY and body.path is None
    assert body.digest == DIGEST and body.size == len(BODY)
    assert seen[-1] == (len(BODY), len(BODY))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


async def test_download_into_a_temp_file_keeps_nothing_in_memory(tmp_path: Path) -> None:
    async with serving(chunked) as url, aiohttp.ClientSession() as http, http.get(url) as resp:
        body = await read_body(resp, what="m", max_bytes=len(BODY), expected=DIGEST,
                               into=tmp_path)
    assert body.data is None and body.path is not None
    assert body.path.parent == tmp_path and body.path.name.startswith(".tmp-")
    assert body.path.read_bytes() == BODY and body.sha256 == DIGEST.removeprefix("sha256:")


@pytest.mark.parametrize("handler", [whole, chunked], ids=["announced", "unannounced"])
@pytest.mark.parametrize("durable", [True, False])
async def test_download_into_a_temp_file_and_kept_gives_the_same_bytes_once(
    tmp_path: Path, handler: Callable[[web.Request], object], durable: bool,
) -> None:
    """``keep``: the bytes written while streaming are also returned (no read back); an
    announced size gets one buffer filled as they arrive. Not ``durable``: the caller
    fsyncs; the file is complete and closed either way."""
    async with serving(handler) as url, aiohttp.ClientSession() as http, http.get(url) as resp:
        body = await read_body(resp, what="m", max_bytes=len(BODY), expected=DIGEST,
                               into=tmp_path, keep=True, durable=durable)
    assert body.data == BODY and body.path is not None
    assert body.path.read_bytes() == BODY and body.digest == DIGEST
    assert temp_files(tmp_path) == [body.path]


async def test_kept_download_shorter_than_announced_is_an_error(tmp_path: Path) -> None:
    async def short(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(BODY))})
        await response.prepare(request)
        await response.write(BODY[:100_000])
        assert request.transport is not None
        request.transport.close()  # the connection ends before the announced length
        return response

    async with serving(short) as url, aiohttp.ClientSession() as http, http.get(url) as resp:
        with pytest.raises(aiohttp.ClientPayloadError):
            await read_body(resp, what="m", max_bytes=len(BODY), expected=DIGEST,
                            into=tmp_path, keep=True)
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("handler", [whole, chunked], ids=["announced", "received"])
async def test_cap_refuses_and_removes_the_temp_file(
    tmp_path: Path, handler: Callable[[web.Request], object],
) -> None:
    async with serving(handler) as url, aiohttp.ClientSession() as http, http.get(url) as resp:
        with pytest.raises(ModuleTooLarge, match=r"^blob x (is \d+ bytes, above|is larger than) "
                                                 r"the cap of 1000 bytes"):
            await read_body(resp, what="blob x", max_bytes=1000, into=tmp_path)
    assert temp_files(tmp_path) == []


async def test_digest_mismatch_is_refused_and_removes_the_temp_file(tmp_path: Path) -> None:
    wrong = "sha256:" + "0" * 64
    async with serving(chunked) as url, aiohttp.ClientSession() as http, http.get(url) as resp:
        with pytest.raises(VerificationError) as info:
            await read_body(resp, what="m", max_bytes=len(BODY), expected=wrong, kind="module",
                            reference="example/ref", into=tmp_path)
    assert info.value.expected == wrong and info.value.received == DIGEST
    assert str(info.value).startswith("module of example/ref failed verification")
    assert temp_files(tmp_path) == []


async def test_cancelled_download_removes_the_temp_file(tmp_path: Path) -> None:
    release = asyncio.Event()

    async def stalls(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(BODY))})
        await response.prepare(request)
        await response.write(BODY[:100_000])
        await release.wait()
        return response

    async with serving(stalls) as url, aiohttp.ClientSession() as http, http.get(url) as resp:
        task = asyncio.create_task(read_body(resp, what="m", max_bytes=len(BODY), into=tmp_path))

        def partial() -> bool:
            return any(p.stat().st_size > 0 for p in temp_files(tmp_path))

        await wait_for(partial, 30, what="bytes in the temp file")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
    assert temp_files(tmp_path) == []


async def test_a_directory_that_cannot_be_written_is_a_store_error(tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    async with serving(whole) as url, aiohttp.ClientSession() as http, http.get(url) as resp:
        with pytest.raises(StoreError, match=f"temp file in {blocked}/sub cannot be written"):
            await read_body(resp, what="m", max_bytes=len(BODY), into=blocked / "sub")


# -- the policy as fetches use it -------------------------------------------------------


async def test_url_fetch_retries_408_and_honours_retry_after(tmp_path: Path) -> None:
    answers = [(408, None), (503, "1"), (200, None)]

    async def flaky(request: web.Request) -> web.Response:
        status, after = answers.pop(0)
        if status != 200:
            return web.Response(status=status, headers={"Retry-After": after} if after else {})
        return web.Response(body=BODY)

    policy = RetryPolicy(retries=2, backoff_base=0.01, backoff_max=0.02)
    async with serving(flaky) as url, aiohttp.ClientSession() as http:
        with capture_logs() as logs:
            body = await fetch_url(http, url, sha256=DIGEST.removeprefix("sha256:"),
                                   max_bytes=len(BODY), retry=policy, into=tmp_path)
    assert body.path is not None and body.path.read_bytes() == BODY
    delays = [e["delay"] for e in logs if e["event"] == "module_url_retry"]
    assert len(delays) == 2 and delays[0] <= 0.02 and delays[1] == 1.0


async def test_url_fetch_gives_up_after_the_policy_s_retries() -> None:
    calls = 0

    async def down(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.Response(status=502)

    policy = RetryPolicy(retries=1, backoff_base=0.01, backoff_max=0.01)
    async with serving(down) as url, aiohttp.ClientSession() as http:
        with pytest.raises(RegistryUnavailable, match="unavailable after 2 attempts"):
            await fetch_url(http, url, sha256="0" * 64, max_bytes=10, retry=policy)
    assert calls == 2
