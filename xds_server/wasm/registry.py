"""Async OCI distribution client on aiohttp: manifests, blobs, uploads, auth and retries.

Transport rules: HTTPS with the system CAs, or the registry's ``ca_file``; plain HTTP only
for loopback hosts (as Docker does; unless a ``ca_file`` is configured for them) or when the
registry's :class:`RegistrySettings` say ``plain_http``.

Auth: anonymous first; on a ``401`` the ``WWW-Authenticate`` challenge decides: ``Basic``
sends the host's credentials, ``Bearer`` fetches a token from the realm (with basic
credentials when there are some, anonymously otherwise). Tokens are cached per host and scope
until shortly before they expire. Credentials come, in order, from :class:`RegistrySettings`,
from the environment (``XDS_SERVER_REGISTRY_<HOSTKEY>_USERNAME`` and ``..._PASSWORD``, where
HOSTKEY is ``host[:port]`` upper-cased with non-alphanumerics replaced by ``_``), and from a
Docker ``config.json`` (``credHelpers``, ``auths``, ``credsStore``).

Retries: the :class:`~xds_server.wasm.retry.RetryPolicy` (connection errors, timeouts, 408,
429 and 5xx, with jittered exponential backoff honouring ``Retry-After``); 401, 403 and 404
are never retried. Blobs are read by :func:`~xds_server.wasm.download.read_body`.

Safety: every connection (registry, token realm, blob redirect, module URL) goes through the
:mod:`~xds_server.wasm.guard` (refused destinations raise
:class:`~xds_server.wasm.errors.UnsafeDestination`, never retried); every response is read
under the caps and timeouts of :class:`~xds_server.wasm.limits.FetchLimits`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlencode, urljoin

import aiohttp
import structlog
import yarl

from . import _json
from ._auth import (
    Credentials,
    TokenCache,
    credentials_from_docker_config,
    credentials_from_env,
    parse_challenge,
)
from .download import Body, ProgressCallback, read_body
from .errors import (
    AuthError,
    ModuleTooLarge,
    NotFound,
    RegistryError,
    RegistryUnavailable,
    UnsafeDestination,
    VerificationError,
)
from .guard import DEFAULT_POLICY, AddressPolicy, FetchGuard, GuardedConnector
from .limits import DEFAULT_LIMITS, FetchLimits
from .metrics import FETCHED_BYTES
from .reference import ImageReference, is_loopback_host
from .retry import DEFAULT_RETRY, RetryPolicy

_DOCKER_HUB_ENDPOINT = "registry-1.docker.io"

__all__ = [
    "MANIFEST_MEDIA_TYPES",
    "Manifest",
    "ProgressCallback",
    "RegistryClient",
    "RegistrySettings",
]

log = structlog.get_logger(__name__)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_MEDIA_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_MANIFEST_LIST)
"""Manifest media types we ask for and accept, in order of preference."""

_SHA256_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


@dataclass(frozen=True)
class RegistrySettings:
    """How to reach one registry host (``host[:port]``, exactly as in references).

    ``plain_http`` allows HTTP without TLS; ``ca_file`` is a PEM bundle trusted for this
    registry instead of the system CAs; ``username``/``password`` are used for basic auth
    and for token requests. The password never appears in ``repr`` or logs.

    ``allow_private`` lets connections to this host reach private addresses (RFC 1918,
    CGNAT, fc00::/7); ``allow_loopback`` (default true) loopback ones. They apply to
    connections to this ``host[:port]`` only: a token service or blob storage elsewhere
    needs its own entry. See :mod:`xds_server.wasm.guard`.
    """

    host: str
    plain_http: bool = False
    ca_file: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    allow_private: bool = False
    allow_loopback: bool = True

    @property
    def address_policy(self) -> AddressPolicy:
        """The fetch guard's policy for this host."""
        return AddressPolicy(allow_private=self.allow_private, allow_loopback=self.allow_loopback)


@dataclass(frozen=True)
class Manifest:
    """A manifest as fetched: ``media_type``, ``digest`` (sha256 of ``raw``, verified), the
    raw bytes and the parsed JSON object."""

    media_type: str
    digest: str
    raw: bytes
    data: Mapping[str, Any]


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def _read_capped(response: aiohttp.ClientResponse, cap: int, what: str) -> bytes:
    """The body of ``response``, refusing more than ``cap`` bytes (announced or received)."""
    length = response.content_length
    if length is not None and length > cap:
        raise ModuleTooLarge(f"{what} is {length} bytes, above the cap of {cap} bytes")
    raw = await response.content.read(cap + 1)
    while len(raw) <= cap:
        more = await response.content.read(cap + 1 - len(raw))
        if not more:
            break
        raw += more
    if len(raw) > cap:
        raise ModuleTooLarge(f"{what} is larger than the cap of {cap} bytes")
    return raw


async def _error_detail(response: aiohttp.ClientResponse, cap: int = 16 * 2**10) -> str:
    try:
        body = await response.content.read(cap)
    except (aiohttp.ClientError, TimeoutError):
        return ""
    try:
        errors = _json.loads(body).get("errors") or []
        return "; ".join(
            f"{e.get('code', '?')}: {e.get('message', '')}".strip()[:300] for e in errors[:3]
        )
    except (ValueError, AttributeError, TypeError):
        return body[:200].decode(errors="replace").strip()


async def _refuse_downgrade(_session: aiohttp.ClientSession, _ctx: Any,
                            params: aiohttp.TraceRequestRedirectParams) -> None:
    """Refuse a redirect from https to plain http (registry, token realm, blob, URL)."""
    location = params.response.headers.get("Location", "")
    target = params.url.join(yarl.URL(location)) if location else params.url
    if params.url.scheme == "https" and target.scheme == "http":
        raise UnsafeDestination(url=str(target), host=target.host or "", address=None,
                                reason=f"a downgrade from https (redirected from {params.url})")


class RegistryClient:
    """A client for OCI distribution registries. Use as ``async with`` or call
    :meth:`start` before use and :meth:`close` after. One instance may serve many
    registries and concurrent requests on one event loop.
    """

    def __init__(
        self,
        *,
        registries: Sequence[RegistrySettings] = (),
        docker_config: Path | None = None,
        env: Mapping[str, str] | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        retries: int | None = None,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        request_timeout: float | None = None,
        limits: FetchLimits = DEFAULT_LIMITS,
        default_policy: AddressPolicy = DEFAULT_POLICY,
        resolver: aiohttp.abc.AbstractResolver | None = None,
        user_agent: str = "xds-server",
    ) -> None:
        """``retry`` is the retry policy; ``retries``, ``backoff_base`` and
        ``backoff_max``, when given, override its fields. ``request_timeout``, when
        given, sets the connect and per-read timeouts of ``limits``; ``default_policy``
        is the fetch guard's policy for hosts without :class:`RegistrySettings`
        (loopback allowed, private refused by default); ``resolver`` replaces aiohttp's
        DNS resolver (its answers are still guarded)."""
        self._settings = {r.host: r for r in registries}
        for alias in ("docker.io", "index.docker.io"):
            if alias in self._settings:  # Docker Hub is reached at its endpoint host
                self._settings.setdefault(_DOCKER_HUB_ENDPOINT, self._settings[alias])
        if request_timeout is not None:
            limits = replace(limits, connect_timeout=request_timeout, read_timeout=request_timeout)
        self._limits = limits
        self._guard = FetchGuard(
            {host: s.address_policy for host, s in self._settings.items()}, default=default_policy
        )
        self._docker_config = docker_config
        self._env = env if env is not None else os.environ
        self._retry = retry.overridden(
            retries=retries, backoff_base=backoff_base, backoff_max=backoff_max
        )
        self._timeout = limits.timeout()
        self._download_timeout = limits.timeout(download=True)
        self._user_agent = user_agent
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self._ssl: dict[str, ssl.SSLContext] = {}
        self._credentials: dict[str, Credentials | None] = {}
        self._basic_hosts: set[str] = set()
        self._tokens = TokenCache()

    async def start(self) -> None:
        """Open the HTTP session. Idempotent."""
        if self._session is None:
            trace = aiohttp.TraceConfig()
            trace.on_request_redirect.append(_refuse_downgrade)
            self._session = aiohttp.ClientSession(
                connector=GuardedConnector(self._guard, resolver=self._resolver),
                trace_configs=[trace],
                timeout=self._timeout,
                headers={"User-Agent": self._user_agent},
                max_line_size=16 * 2**10,
                max_field_size=16 * 2**10,
            )

    async def close(self) -> None:
        """Close the HTTP session. Idempotent."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def __aenter__(self) -> RegistryClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open HTTP session (shared by URL fetches); raises if not started."""
        return self._session_or_raise()

    @property
    def limits(self) -> FetchLimits:
        """The caps and timeouts in force."""
        return self._limits

    @property
    def guard(self) -> FetchGuard:
        """The fetch guard every connection of this client goes through."""
        return self._guard

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy of every call (and of URL fetches sharing the session)."""
        return self._retry

    # -- transport ---------------------------------------------------------------------

    def _session_or_raise(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("RegistryClient is not started: call start() first")
        return self._session

    def base_url(self, host: str) -> str:
        """``http(s)://host`` according to the plain-HTTP rule for ``host``."""
        settings = self._settings.get(host)
        plain = bool(settings and settings.plain_http)
        if not plain and is_loopback_host(host) and not (settings and settings.ca_file):
            plain = True
        return f"{'http' if plain else 'https'}://{host}"

    def _ssl_for(self, host: str) -> ssl.SSLContext | bool:
        settings = self._settings.get(host)
        if settings is None or not settings.ca_file:
            return True
        context = self._ssl.get(host)
        if context is None:
            context = ssl.create_default_context(cafile=settings.ca_file)
            self._ssl[host] = context
        return context

    async def identity(self, host: str) -> str:
        """Who this client reads ``host`` (an endpoint ``host[:port]``) as: the username
        of its credentials, or ``""`` for anonymous access. Never the secret."""
        creds = await self._credentials_for(host)
        return creds.username if creds else ""

    async def _credentials_for(self, host: str) -> Credentials | None:
        if host in self._credentials:
            return self._credentials[host]
        settings = self._settings.get(host)
        creds: Credentials | None = None
        if settings and settings.username and settings.password is not None:
            creds = Credentials(settings.username, settings.password)
        if creds is None:
            creds = credentials_from_env(host, self._env)
        if creds is None and self._docker_config is not None:
            creds = await credentials_from_docker_config(host, self._docker_config)
        self._credentials[host] = creds
        return creds

    @staticmethod
    def _scope(repository: str, actions: str) -> str:
        return f"repository:{repository}:{actions}"

    async def _auth_header(self, host: str, repository: str, actions: str) -> str | None:
        if host in self._basic_hosts:
            creds = await self._credentials_for(host)
            return creds.basic_header() if creds else None
        for candidate in (actions, "pull,push") if actions == "pull" else (actions,):
            token = self._tokens.get(host, self._scope(repository, candidate))
            if token:
                return f"Bearer {token}"
        return None

    async def _answer_challenge(
        self, host: str, repository: str, actions: str, header: str | None, what: str
    ) -> None:
        challenge = parse_challenge(header)
        if challenge is None:
            raise AuthError(f"{what}: registry {host} answered 401 without a challenge", status=401)
        creds = await self._credentials_for(host)
        if challenge.scheme == "basic":
            if creds is None:
                raise AuthError(
                    f"{what}: registry {host} requires basic auth and no credentials are "
                    "configured for it",
                    status=401,
                )
            self._basic_hosts.add(host)
            return
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            raise AuthError(
                f"{what}: registry {host} asks for unsupported auth {challenge.scheme!r}",
                status=401,
            )
        realm = challenge.params["realm"]
        if not realm.startswith(("https://", "http://")):
            raise AuthError(f"{what}: registry {host} names a token realm that is not http(s)",
                            status=401)
        scope = challenge.params.get("scope") or self._scope(repository, actions)
        query = {"scope": scope}
        if "service" in challenge.params:
            query["service"] = challenge.params["service"]
        url = challenge.params["realm"] + ("&" if "?" in challenge.params["realm"] else "?")
        url += urlencode(query)
        headers = {"Authorization": creds.basic_header()} if creds else {}
        body = await self._token_request(url, headers, host, what, with_creds=creds is not None)
        token = body.get("token") or body.get("access_token")
        if not isinstance(token, str) or not token:
            raise AuthError(f"{what}: token service for {host} returned no token")
        try:
            expires_in = float(body.get("expires_in") or 60)
        except (TypeError, ValueError):
            expires_in = 60.0
        self._tokens.put(host, self._scope(repository, actions), token, expires_in)
        log.debug("registry_token_obtained", host=host, scope=scope, expires_in=expires_in)

    async def _token_request(
        self, url: str, headers: dict[str, str], host: str, what: str, *, with_creds: bool
    ) -> Mapping[str, Any]:
        session = self._session_or_raise()
        attempt = 0
        while True:
            try:
                async with session.get(
                    url, headers=headers, timeout=self._timeout,
                    max_redirects=self._limits.max_redirects,
                ) as response:
                    if response.status in (401, 403):
                        detail = await _error_detail(response, self._limits.max_error_bytes)
                        who = "the configured credentials" if with_creds else "anonymous access"
                        raise AuthError(
                            f"{what}: token service for {host} refused {who} "
                            f"({response.status}{': ' + detail if detail else ''})",
                            status=response.status,
                        )
                    if self._retry.retryable(response.status):
                        raise _Retryable(response.status, response.headers.get("Retry-After"))
                    if response.status != 200:
                        raise RegistryError(
                            f"{what}: token service for {host} answered {response.status}",
                            status=response.status,
                        )
                    raw = await _read_capped(
                        response, self._limits.max_token_bytes, f"{what}: token response from {host}"
                    )
                try:
                    data = _json.loads(raw)
                except ValueError:
                    raise AuthError(f"{what}: token service for {host} answered no JSON") from None
                if not isinstance(data, dict):
                    raise AuthError(f"{what}: token service for {host} returned no token")
                return data
            except (_Retryable, aiohttp.ClientConnectionError, TimeoutError) as error:
                if self._retry.exhausted(attempt):
                    raise RegistryUnavailable(
                        f"{what}: token service for {host} unavailable after "
                        f"{attempt + 1} attempts ({_describe(error)})"
                    ) from None
                hint = error.retry_after if isinstance(error, _Retryable) else None
                delay = self._retry.delay(attempt, hint)
                attempt += 1
                await asyncio.sleep(delay)
            except aiohttp.ClientError as error:  # redirects, invalid URLs, bad HTTP
                raise AuthError(
                    f"{what}: token service for {host}: {_describe(error)}"
                ) from None

    async def _open(
        self,
        method: str,
        ref: ImageReference,
        url: str,
        *,
        actions: str,
        what: str,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        download: bool = False,
    ) -> aiohttp.ClientResponse:
        """Send a request with auth and retries; return the response (caller releases it).

        Retries connection errors, timeouts and what the retry policy calls retryable
        (408, 429, 5xx); raises
        :class:`RegistryUnavailable` when they persist. Other statuses are returned.
        """
        session = self._session_or_raise()
        host = ref.endpoint_host
        if not url.startswith(("http://", "https://")):
            url = self.base_url(host) + url
        attempt = 0
        challenged = False
        while True:
            request_headers = dict(headers or {})
            auth = await self._auth_header(host, ref.repository, actions)
            if auth:
                request_headers["Authorization"] = auth
            try:
                response = await session.request(
                    method, url, headers=request_headers, data=data, ssl=self._ssl_for(host),
                    timeout=self._download_timeout if download else self._timeout,
                    max_redirects=self._limits.max_redirects,
                )
            except (aiohttp.ClientConnectionError, TimeoutError) as error:
                if self._retry.exhausted(attempt):
                    raise RegistryUnavailable(
                        f"{what}: registry {host} unreachable after {attempt + 1} attempts "
                        f"({_describe(error)})"
                    ) from None
                delay = self._retry.delay(attempt)
                log.warning(
                    "registry_request_retry", host=host, reference=str(ref), attempt=attempt + 1,
                    delay=round(delay, 3), error=_describe(error),
                )
                attempt += 1
                await asyncio.sleep(delay)
                continue
            except aiohttp.ClientError as error:  # redirects, invalid URLs, bad HTTP
                raise RegistryError(f"{what}: registry {host}: {_describe(error)}") from None
            if response.status == 401 and not challenged:
                challenge = response.headers.get("WWW-Authenticate")
                response.release()
                challenged = True
                await self._answer_challenge(host, ref.repository, actions, challenge, what)
                continue
            if self._retry.retryable(response.status):
                delay_hint = response.headers.get("Retry-After")
                status = response.status
                response.release()
                if self._retry.exhausted(attempt):
                    raise RegistryUnavailable(
                        f"{what}: registry {host} answered {status} after {attempt + 1} attempts",
                        status=status,
                    )
                delay = self._retry.delay(attempt, delay_hint)
                log.warning(
                    "registry_request_retry", host=host, reference=str(ref), attempt=attempt + 1,
                    delay=round(delay, 3), status=status,
                )
                attempt += 1
                await asyncio.sleep(delay)
                continue
            return response

    async def _raise_for_status(self, response: aiohttp.ClientResponse, what: str) -> None:
        status = response.status
        detail = await _error_detail(response, self._limits.max_error_bytes)
        suffix = f" ({detail})" if detail else ""
        if status in (401, 403):
            raise AuthError(
                f"{what}: access denied ({status}), credentials refused{suffix}; check the "
                "registry credentials",
                status=status,
            )
        if status == 404:
            raise NotFound(f"{what}: not found (404){suffix}", status=status)
        raise RegistryError(f"{what}: registry answered {status}{suffix}", status=status)

    # -- reading -----------------------------------------------------------------------

    async def get_manifest(
        self, ref: ImageReference, identifier: str | None = None
    ) -> Manifest:
        """Fetch the manifest ``identifier`` (default: the reference's digest or tag).

        The digest of the bytes is computed; it must equal the requested digest, and the
        registry's ``Docker-Content-Digest`` if sent, else :class:`VerificationError`.
        """
        ident = identifier or ref.identifier
        if ident.startswith("sha256:") and not _SHA256_DIGEST.match(ident):
            raise RegistryError(f"manifest {ident[:100]!r} of {ref}: not a sha256 digest")
        what = f"manifest {ident} of {ref}"
        response = await self._open(
            "GET",
            ref,
            f"/v2/{ref.repository}/manifests/{ident}",
            actions="pull",
            what=what,
            headers={"Accept": ", ".join(MANIFEST_MEDIA_TYPES)},
        )
        try:
            if response.status != 200:
                await self._raise_for_status(response, what)
            raw = await _read_capped(response, self._limits.max_manifest_bytes, what)
            header_digest = response.headers.get("Docker-Content-Digest")
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        finally:
            response.release()
        FETCHED_BYTES.inc(len(raw))
        digest = _sha256(raw)
        if ident.startswith("sha256:") and digest != ident:
            raise VerificationError("manifest", reference=str(ref), expected=ident, received=digest)
        if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
            raise VerificationError(
                "manifest", reference=str(ref), expected=header_digest, received=digest
            )
        return Manifest(*parse_manifest(raw, content_type, what=what, digest=digest))

    async def get_referrers(self, ref: ImageReference, digest: str) -> Mapping[str, Any] | None:
        """The OCI 1.1 referrers index of manifest ``digest`` (``GET /v2/<repo>/referrers/<digest>``),
        or ``None`` when the registry does not offer the referrers API (404 or 405 without an
        index), so that the caller falls back to the referrers tag schema (``sha256-<hex>``)."""
        if not _SHA256_DIGEST.match(digest):
            raise RegistryError(f"referrers of {digest[:100]!r} of {ref}: not a sha256 digest")
        what = f"referrers of {digest} of {ref}"
        response = await self._open(
            "GET", ref, f"/v2/{ref.repository}/referrers/{digest}", actions="pull", what=what,
            headers={"Accept": OCI_INDEX},
        )
        try:
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            if response.status in (404, 405) and content_type != OCI_INDEX:
                return None
            if response.status != 200:
                await self._raise_for_status(response, what)
            raw = await _read_capped(response, self._limits.max_manifest_bytes, what)
        finally:
            response.release()
        FETCHED_BYTES.inc(len(raw))
        return parse_manifest(raw, content_type, what=what, digest=_sha256(raw))[3]

    async def fetch_blob(
        self,
        ref: ImageReference,
        digest: str,
        *,
        max_bytes: int,
        progress: ProgressCallback | None = None,
    ) -> bytes:
        """Download blob ``digest`` of ``ref``'s repository into memory, verifying it
        while streaming (see :meth:`download_blob`)."""
        body = await self.download_blob(ref, digest, max_bytes=max_bytes, progress=progress)
        assert isinstance(body.data, bytes)  # read into memory
        return body.data

    async def download_blob(
        self,
        ref: ImageReference,
        digest: str,
        *,
        max_bytes: int,
        into: Path | None = None,
        keep: bool = False,
        durable: bool = True,
        progress: ProgressCallback | None = None,
    ) -> Body:
        """Download blob ``digest`` of ``ref``'s repository, verifying it while streaming
        (:func:`~xds_server.wasm.download.read_body`, whose ``into``, ``keep`` and
        ``durable`` say where the bytes go: memory, or a temp file in ``into``).

        Raises :class:`ModuleTooLarge` as soon as the announced or received size passes
        ``max_bytes``, :class:`VerificationError` when the content's sha256 differs.
        A connection lost mid-stream is retried like a failed request (a temp file of a
        failed attempt is removed).
        """
        if not _SHA256_DIGEST.match(digest):
            raise RegistryError(f"blob {digest[:100]!r} of {ref}: not a sha256 digest")
        what = f"blob {digest} of {ref}"
        attempt = 0
        while True:
            response = await self._open(
                "GET", ref, f"/v2/{ref.repository}/blobs/{digest}", actions="pull", what=what,
                download=True,
            )
            try:
                if response.status != 200:
                    await self._raise_for_status(response, what)
                return await read_body(
                    response, what=what, max_bytes=max_bytes, expected=digest, kind="blob",
                    reference=str(ref), into=into, keep=keep, durable=durable,
                    progress=progress,
                )
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError) as e:
                if self._retry.exhausted(attempt):
                    raise RegistryUnavailable(
                        f"{what}: download failed after {attempt + 1} attempts ({_describe(e)})"
                    ) from None
                await asyncio.sleep(self._retry.delay(attempt))
                attempt += 1
                continue
            except aiohttp.ClientError as e:
                raise RegistryError(f"{what}: {_describe(e)}") from None
            finally:
                response.release()

    # -- writing -----------------------------------------------------------------------

    async def blob_exists(self, ref: ImageReference, digest: str) -> bool:
        """True when the repository already holds blob ``digest`` (HEAD)."""
        what = f"blob {digest} of {ref}"
        response = await self._open(
            "HEAD", ref, f"/v2/{ref.repository}/blobs/{digest}", actions="pull,push", what=what
        )
        try:
            if response.status == 200:
                return True
            if response.status == 404:
                return False
            await self._raise_for_status(response, what)
            return False
        finally:
            response.release()

    async def push_blob(self, ref: ImageReference, data: bytes) -> str:
        """Upload ``data`` as a blob (monolithic POST + PUT) unless present; return digest."""
        digest = _sha256(data)
        if await self.blob_exists(ref, digest):
            return digest
        what = f"upload of blob {digest} to {ref}"
        response = await self._open(
            "POST", ref, f"/v2/{ref.repository}/blobs/uploads/", actions="pull,push", what=what
        )
        try:
            if response.status != 202:
                await self._raise_for_status(response, what)
            location = response.headers.get("Location")
        finally:
            response.release()
        if not location:
            raise RegistryError(f"{what}: registry gave no upload location")
        url = urljoin(self.base_url(ref.endpoint_host) + "/", location)
        url += ("&" if "?" in url else "?") + urlencode({"digest": digest})
        response = await self._open(
            "PUT",
            ref,
            url,
            actions="pull,push",
            what=what,
            headers={"Content-Type": "application/octet-stream"},
            data=data,
            download=True,
        )
        try:
            if response.status not in (201, 204):
                await self._raise_for_status(response, what)
        finally:
            response.release()
        return digest

    async def push_manifest(
        self, ref: ImageReference, raw: bytes, media_type: str, identifier: str | None = None
    ) -> str:
        """PUT a manifest under ``identifier`` (default: the reference's tag); return its
        digest."""
        digest = _sha256(raw)
        ident = identifier or ref.tag or digest
        what = f"manifest {ident} of {ref}"
        response = await self._open(
            "PUT",
            ref,
            f"/v2/{ref.repository}/manifests/{ident}",
            actions="pull,push",
            what=what,
            headers={"Content-Type": media_type},
            data=raw,
        )
        try:
            if response.status not in (200, 201):
                await self._raise_for_status(response, what)
        finally:
            response.release()
        return digest


_JSON_TYPES = ("application/json", "text/plain", "application/octet-stream", "")


def parse_manifest(
    raw: bytes, content_type: str, *, what: str, digest: str
) -> tuple[str, str, bytes, Mapping[str, Any]]:
    """Check and parse manifest bytes served with ``content_type`` (no parameters):
    (media type, digest, raw, JSON object). Raises :class:`RegistryError` when the bytes
    are not a JSON object, the served type is not a manifest type (a registry or proxy
    answering with an HTML page, say), or the type named in the JSON is unsupported or
    contradicts the served one."""
    served = content_type.lower()
    if served not in MANIFEST_MEDIA_TYPES and served not in _JSON_TYPES:
        raise RegistryError(
            f"{what} was served as {content_type[:100]!r}, not a manifest media type "
            f"({digest}, {len(raw)} bytes)"
        )
    try:
        data = _json.loads(raw)
    except ValueError:
        raise RegistryError(f"{what} is not JSON ({digest}, {len(raw)} bytes)") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{what} is not a JSON object")
    declared = data.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise RegistryError(f"{what} has a mediaType that is not a string")
    media_type = declared or served
    if media_type not in MANIFEST_MEDIA_TYPES:
        raise RegistryError(f"{what} has unsupported media type {media_type[:100]!r}")
    if served in MANIFEST_MEDIA_TYPES and declared and declared != served:
        raise RegistryError(
            f"{what} was served as {served!r} but declares mediaType {declared!r}"
        )
    return media_type, digest, raw, data


class _Retryable(Exception):
    def __init__(self, status: int, retry_after: str | None) -> None:
        super().__init__(f"status {status}")
        self.retry_after = retry_after



def _describe(error: BaseException) -> str:
    if isinstance(error, aiohttp.TooManyRedirects):
        return f"too many redirects (more than {len(error.history)})"
    text = str(error).strip()[:300]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
