"""The cloud backends by name: ``spec.cloud.service`` selects one, and this table is the only place that
knows which class serves which name (no ``if service == …`` anywhere else).

A backend is built from what every backend shares — the pooled HTTP client of its endpoint, the project, an
``httpx.Auth``, the retry policy, the (endpoint, project) rate limiter, the (endpoint, project, access key)
zone index (EVS learns AZ pairs through it; SDRS has them on its groups and ignores it) — so adding one is a
module under ``azswitch.cloud`` and a row here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from azswitch.cloud.api import CloudAPI
from azswitch.cloud.evs import EvsClient
from azswitch.cloud.evs_zones import ZoneIndex
from azswitch.cloud.ratelimit import RateLimiter
from azswitch.cloud.retry import RetryPolicy
from azswitch.cloud.sdrs import SdrsClient
from azswitch.cloud.transport import RequestHook
from azswitch.errors import ConfigError

BackendFactory = Callable[..., CloudAPI[Any]]


def _evs(
    http: httpx.AsyncClient,
    *,
    project_id: str,
    auth: httpx.Auth,
    retry: RetryPolicy,
    limiter: RateLimiter,
    on_request: RequestHook | None,
    zone_index: ZoneIndex | None = None,
) -> CloudAPI[Any]:
    return EvsClient(
        http,
        project_id=project_id,
        auth=auth,
        retry=retry,
        limiter=limiter,
        on_request=on_request,
        zone_index=zone_index,
    )


def _sdrs(
    http: httpx.AsyncClient,
    *,
    project_id: str,
    auth: httpx.Auth,
    retry: RetryPolicy,
    limiter: RateLimiter,
    on_request: RequestHook | None,
    zone_index: ZoneIndex | None = None,  # both AZs are on the protection group itself
) -> CloudAPI[Any]:
    return SdrsClient(
        http, project_id=project_id, auth=auth, retry=retry, limiter=limiter, on_request=on_request
    )


BACKENDS: dict[str, BackendFactory] = {"EVS": _evs, "SDRS": _sdrs}


def backend(service: str) -> BackendFactory:
    """The factory for ``service``, or a ``ConfigError`` naming the field and the choices."""
    try:
        return BACKENDS[service]
    except KeyError:
        raise ConfigError(
            f"spec.cloud.service: unknown backend {service!r}; fix: use one of {', '.join(sorted(BACKENDS))}"
        ) from None
