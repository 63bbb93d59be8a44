"""Fetching a module from an http(s) URL, verified against a required sha256."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import structlog

from .download import Body, ProgressCallback, read_body
from .errors import NotFound, RegistryError, RegistryUnavailable
from .limits import DEFAULT_LIMITS, FetchLimits
from .retry import DEFAULT_RETRY, RetryPolicy

log = structlog.get_logger(__name__)


async def fetch_url(
    session: aiohttp.ClientSession,
    url: str,
    *,
    sha256: str,
    max_bytes: int,
    retry: RetryPolicy = DEFAULT_RETRY,
    into: Path | None = None,
    keep: bool = False,
    durable: bool = True,
    progress: ProgressCallback | None = None,
    limits: FetchLimits = DEFAULT_LIMITS,
) -> Body:
    """Download ``url`` (at most ``max_bytes``) and check it hashes to ``sha256`` (hex).

    With ``into`` the bytes stream to a temp file in that directory (``keep`` and
    ``durable`` as in :func:`~xds_server.wasm.download.read_body`), else into memory. Failures the
    ``retry`` policy calls retryable are retried, then raise :class:`RegistryUnavailable`.
    The session's connector decides which addresses may be reached (see
    :mod:`xds_server.wasm.guard`); ``limits`` give the timeouts and redirect cap.
    """
    attempt = 0
    while True:
        try:
            async with session.get(
                url, timeout=limits.timeout(download=True), max_redirects=limits.max_redirects
            ) as response:
                if response.status == 404:
                    raise NotFound(f"module URL {url}: not found (404)", status=404)
                if retry.retryable(response.status):
                    raise _RetryStatus(response.status, response.headers.get("Retry-After"))
                if response.status != 200:
                    raise RegistryError(
                        f"module URL {url}: server answered {response.status}",
                        status=response.status,
                    )
                return await read_body(
                    response, what=f"module URL {url}", max_bytes=max_bytes,
                    expected=f"sha256:{sha256}", kind="module", reference=url, into=into,
                    keep=keep, durable=durable, progress=progress,
                )
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError,
                _RetryStatus) as error:
            if retry.exhausted(attempt):
                raise RegistryUnavailable(
                    f"module URL {url} unavailable after {attempt + 1} attempts ({error!s})"
                ) from None
            hint = error.retry_after if isinstance(error, _RetryStatus) else None
            delay = retry.delay(attempt, hint)
            log.warning("module_url_retry", url=url, attempt=attempt + 1, delay=round(delay, 3))
            attempt += 1
            await asyncio.sleep(delay)
        except aiohttp.ClientError as error:  # redirects, invalid URLs, bad HTTP
            if isinstance(error, aiohttp.TooManyRedirects):
                text = f"too many redirects (more than {len(error.history)})"
            else:
                text = f"{type(error).__name__}: {str(error).strip()[:300]}"
            raise RegistryError(f"module URL {url}: {text}") from None


class _RetryStatus(Exception):
    def __init__(self, status: int, retry_after: str | None) -> None:
        super().__init__(f"status {status}")
        self.status = status
        self.retry_after = retry_after
