"""Fetching a module from an http(s) URL, verified against a required sha256."""

from __future__ import annotations

import asyncio
import hashlib
import random

import aiohttp
import structlog

from .errors import ModuleTooLarge, NotFound, RegistryError, RegistryUnavailable, VerificationError
from .limits import DEFAULT_LIMITS, FetchLimits
from .metrics import FETCHED_BYTES
from .registry import ProgressCallback

log = structlog.get_logger(__name__)


def retryable(status: int) -> bool:
    """True for statuses worth retrying: 408, 429 and 5xx."""
    return status in (408, 429) or status >= 500


async def fetch_url(
    session: aiohttp.ClientSession,
    url: str,
    *,
    sha256: str,
    max_bytes: int,
    retries: int,
    backoff_base: float,
    backoff_max: float,
    progress: ProgressCallback | None = None,
    limits: FetchLimits = DEFAULT_LIMITS,
) -> bytes:
    """Download ``url`` (at most ``max_bytes``) and check it hashes to ``sha256`` (hex).

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
                if retryable(response.status):
                    raise _RetryStatus(response.status)
                if response.status != 200:
                    raise RegistryError(
                        f"module URL {url}: server answered {response.status}",
                        status=response.status,
                    )
                total = response.content_length
                if total is not None and total > max_bytes:
                    raise ModuleTooLarge(
                        f"module URL {url} is {total} bytes, above the cap of {max_bytes}"
                    )
                hasher = hashlib.sha256()
                buffer = bytearray()
                async for chunk in response.content.iter_chunked(256 * 1024):
                    buffer.extend(chunk)
                    if len(buffer) > max_bytes:
                        raise ModuleTooLarge(
                            f"module URL {url} is larger than the cap of {max_bytes} bytes"
                        )
                    hasher.update(chunk)
                    if progress is not None:
                        progress(len(buffer), total)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError,
                _RetryStatus) as error:
            if attempt >= retries:
                raise RegistryUnavailable(
                    f"module URL {url} unavailable after {attempt + 1} attempts ({error!s})"
                ) from None
            ceiling = min(backoff_max, backoff_base * 2**attempt)
            delay = random.uniform(ceiling / 2, ceiling)
            log.warning("module_url_retry", url=url, attempt=attempt + 1, delay=round(delay, 3))
            attempt += 1
            await asyncio.sleep(delay)
            continue
        except aiohttp.ClientError as error:  # redirects, invalid URLs, bad HTTP
            if isinstance(error, aiohttp.TooManyRedirects):
                text = f"too many redirects (more than {len(error.history)})"
            else:
                text = f"{type(error).__name__}: {str(error).strip()[:300]}"
            raise RegistryError(f"module URL {url}: {text}") from None
        FETCHED_BYTES.inc(len(buffer))
        received = hasher.hexdigest()
        if received != sha256:
            raise VerificationError(
                "module", reference=url, expected=f"sha256:{sha256}", received=f"sha256:{received}"
            )
        return bytes(buffer)


class _RetryStatus(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"status {status}")
        self.status = status
