"""Connection pooling for the cloud API: one ``httpx.AsyncClient`` per endpoint for the operator's lifetime.

An operator watching many groups in one region must reuse TLS connections instead of opening one per
reconcile, and all clients of one (endpoint, project) must share one rate limit. ``CloudConnections`` owns
both and closes them in ``aclose()``. A ``transport`` can be given to route everything elsewhere (the
simulator's in-process transport in tests); it belongs to the caller and is never closed here.

``CloudConnections.backend(service, endpoint, project_id, credentials)`` is the reconciler's ``CloudFactory``;
``client()`` and ``evs()`` build the EVS client directly (its own tests use them).

EVS groups' AZ pairs are learnt from per-project listings (``evs_zones.ZoneIndex``), and since a client is
built per reconcile, the index lives here too: one per (endpoint, project, access key), shared by every client
of that key, reporting each group's method (listing or per group) to ``on_az_discovery``.

A ``fence`` (the leader elector's ``check``) is called before every request goes on the wire — an httpx
request hook, so after the rate limiter's wait, after signing, and for every retry of a throttled request
anew — and whatever it raises aborts the request unsent: a replica that stopped leading sends nothing more,
however long its requests waited for a token or a Retry-After.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from azswitch.cloud import registry
from azswitch.cloud.api import CloudAPI
from azswitch.cloud.auth import AkSkAuth, AkSkCredentials
from azswitch.cloud.evs import EvsClient
from azswitch.cloud.evs_zones import DiscoveryHook, ZoneIndex
from azswitch.cloud.ratelimit import RateLimiter
from azswitch.cloud.retry import RetryPolicy
from azswitch.cloud.transport import RequestHook
from azswitch.errors import ConfigError

USER_AGENT = "azswitch/0.1"


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for each phase of every request (httpx applies them per call)."""

    connect: float = 5.0
    read: float = 30.0
    write: float = 30.0
    pool: float = 5.0

    def to_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


class _BorrowedTransport(httpx.AsyncBaseTransport):
    """Shares a caller's transport among our clients without letting any of them close it."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        pass


def normalize_endpoint(endpoint: str) -> str:
    """``scheme://host[:port][/prefix]`` without a trailing slash; rejects anything else by name."""
    # Never echo a password someone put into the URL.
    shown = re.sub(r"//[^/@]*@", "//***@", str(endpoint))
    try:
        url = httpx.URL(endpoint.strip())
    except (httpx.InvalidURL, TypeError, AttributeError):
        raise ConfigError(f"endpoint {shown!r} is not a valid URL") from None
    if url.scheme not in {"http", "https"} or not url.host:
        raise ConfigError(
            f"endpoint {shown!r} must be an http(s) URL with a host, e.g. https://evs.region.example"
        )
    if url.query or url.fragment or url.userinfo:
        raise ConfigError(f"endpoint {shown!r} must not carry credentials, a query or a fragment")
    return str(url.copy_with(path=url.path.rstrip("/") or "/")).rstrip("/")


class CloudConnections:
    """Hands out shared HTTP clients (per endpoint) and rate limiters (per endpoint and project), and cheap
    ``EvsClient``s built on them: ``client()`` for AK/SK credentials, ``evs()`` for any ``httpx.Auth`` (keep a
    ``TokenAuth`` object between calls: it caches its token).

    ``ca_bundle`` adds CAs to the system's for https endpoints; ignored when ``transport`` is given.
    """

    def __init__(
        self,
        *,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        rate: float = 10.0,
        burst: int = 20,
        max_connections: int = 20,
        ca_bundle: str | Path | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        on_request: RequestHook | None = None,
        fence: Callable[[], None] | None = None,
        on_az_discovery: DiscoveryHook | None = None,
        zone_index_ttl: float = 300.0,
    ) -> None:
        self._timeout = (timeouts or Timeouts()).to_httpx()
        self._verify: ssl.SSLContext | bool = True
        if ca_bundle is not None:
            self._verify = ssl.create_default_context()
            self._verify.load_verify_locations(cafile=str(ca_bundle))
        self._retry = retry or RetryPolicy()
        # Validated now rather than on the first request.
        RateLimiter(rate, burst)
        self._rate = rate
        self._burst = burst
        self._limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._transport = _BorrowedTransport(transport) if transport is not None else None
        self._on_request = on_request
        self._fence = fence
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._limiters: dict[tuple[str, str], RateLimiter] = {}
        self._on_az_discovery = on_az_discovery
        self._zone_index_ttl = zone_index_ttl
        self._zone_indexes: dict[tuple[str, str, str], ZoneIndex] = {}
        self._closed = False

    def http(self, endpoint: str) -> httpx.AsyncClient:
        """The one shared HTTP client for ``endpoint`` (its ``base_url``); also what ``TokenAuth`` needs."""
        if self._closed:
            raise RuntimeError("CloudConnections is closed")
        key = normalize_endpoint(endpoint)
        if key not in self._clients:
            self._clients[key] = httpx.AsyncClient(
                base_url=key,
                timeout=self._timeout,
                limits=self._limits,
                transport=self._transport,
                verify=self._verify,
                headers={"User-Agent": USER_AGENT},
                follow_redirects=False,
                event_hooks={"request": [self._check_fence]} if self._fence is not None else None,
            )
        return self._clients[key]

    async def _check_fence(self, request: httpx.Request) -> None:
        if self._fence is not None:
            self._fence()

    def limiter(self, endpoint: str, project_id: str) -> RateLimiter:
        key = (normalize_endpoint(endpoint), project_id)
        if key not in self._limiters:
            self._limiters[key] = RateLimiter(self._rate, self._burst)
        return self._limiters[key]

    def zone_index(self, endpoint: str, project_id: str, principal: str) -> ZoneIndex:
        """The EVS zone index of (endpoint, project, ``principal``: the access key), shared by its clients."""
        key = (normalize_endpoint(endpoint), project_id, principal)
        if key not in self._zone_indexes:
            self._zone_indexes[key] = ZoneIndex(ttl=self._zone_index_ttl, on_discovery=self._on_az_discovery)
        return self._zone_indexes[key]

    def backend(
        self, service: str, endpoint: str, project_id: str, credentials: AkSkCredentials
    ) -> CloudAPI[Any]:
        """The ``service`` backend (registry) for (endpoint, project, AK/SK) over the shared client, limiter
        and zone index."""
        return registry.backend(service)(
            self.http(endpoint),
            project_id=project_id,
            auth=AkSkAuth.from_credentials(credentials),
            retry=self._retry,
            limiter=self.limiter(endpoint, project_id),
            on_request=self._on_request,
            zone_index=self.zone_index(endpoint, project_id, credentials.access_key),
        )

    def client(self, endpoint: str, project_id: str, credentials: AkSkCredentials) -> EvsClient:
        """An ``EvsClient`` for (endpoint, project, AK/SK credentials) over the shared client, limiter and
        zone index."""
        return self.evs(
            endpoint, project_id, AkSkAuth.from_credentials(credentials), principal=credentials.access_key
        )

    def evs(
        self, endpoint: str, project_id: str, auth: httpx.Auth, *, principal: str | None = None
    ) -> EvsClient:
        """An ``EvsClient`` for (endpoint, project, any auth) over the shared client and limiter; with a
        ``principal`` (whom ``auth`` authenticates) it shares that principal's zone index, else it keeps its
        own."""
        return EvsClient(
            self.http(endpoint),
            project_id=project_id,
            auth=auth,
            retry=self._retry,
            limiter=self.limiter(endpoint, project_id),
            on_request=self._on_request,
            zone_index=None if principal is None else self.zone_index(endpoint, project_id, principal),
        )

    async def aclose(self) -> None:
        """Close every client. Idempotent."""
        self._closed = True
        indexes, self._zone_indexes = list(self._zone_indexes.values()), {}
        for index in indexes:
            await index.aclose()
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    async def __aenter__(self) -> CloudConnections:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
