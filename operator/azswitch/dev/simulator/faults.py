"""Injected misbehaviour: latency, dropped connections, throttling, a rate limit and server errors.

The operator's retry, backoff and "outcome unknown" paths only run when the cloud misbehaves, so tests
switch misbehaviour on through ``POST /_sim/faults`` (or ``Simulator.set_faults``). One fault set is active
at a time; setting a new one replaces it. Counted faults (``count``) fire on that many *matching* requests
and then stop; ``count: null`` fires on every matching request until the faults are cleared. Random errors
(``errorRate``) draw from a seedable RNG so a failing test can be replayed.

``rateLimit`` is the API gateway's limit ("over ratelimit, limit:N, time:1 second"): a token bucket per
project (IAM calls share one), refilled at ``perSecond`` up to ``burst``; a request that finds it empty gets
429 with Retry-After rounded up to whole seconds, and does not reach the cloud.

Order per matching request: latency, drop "before", throttle, rate limit, error, then the real handling,
then drop "after". A "before" drop never reaches the cloud; an "after" drop changes the cloud and loses
the answer.
"""

from __future__ import annotations

import random
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Throttle(_Model):
    count: int | None = Field(1, ge=0, description="How many matching requests get 429; null = all.")
    retry_after: float = Field(2.0, alias="retryAfter", ge=0, description="Retry-After header, seconds.")


class RateLimit(_Model):
    per_second: float = Field(alias="perSecond", gt=0, le=100_000, description="Refill, requests/second.")
    burst: int = Field(1, ge=1, le=100_000, description="Bucket size: requests allowed at once.")


class Drop(_Model):
    count: int | None = Field(1, ge=0, description="How many matching requests lose their connection.")
    when: Literal["before", "after"] = "before"


class Match(_Model):
    method: str | None = Field(None, description="Only this HTTP method (case-insensitive).")
    path_contains: str | None = Field(None, alias="pathContains", description="Only paths containing this.")
    action: str | None = Field(None, description="Only POST …/action calls with this action key.")


class FaultSpec(_Model):
    """The body of ``POST /_sim/faults``."""

    error_rate: float = Field(0.0, alias="errorRate", ge=0, le=1)
    error_count: int = Field(0, alias="errorCount", ge=0, description="The next N matching requests fail.")
    error_status: int = Field(503, alias="errorStatus", ge=400, le=599)
    throttle: Throttle | None = None
    rate_limit: RateLimit | None = Field(None, alias="rateLimit")
    latency_seconds: float = Field(0.0, alias="latencySeconds", ge=0, le=600)
    drop: Drop | None = None
    match: Match = Field(default_factory=Match)
    seed: int | None = Field(None, description="Re-seed the RNG behind errorRate.")


class FaultError(ValueError):
    """The fault document is invalid."""


def parse_faults(document: Any) -> FaultSpec:
    if isinstance(document, FaultSpec):
        return document
    if not isinstance(document, dict):
        raise FaultError("the fault document must be a JSON object")
    try:
        return FaultSpec.model_validate(document)
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise FaultError(f"invalid faults: {details}") from None


class Faults:
    """The active fault set and what is left of its counters."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.spec: FaultSpec | None = None
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)

    def set(self, spec: FaultSpec) -> None:
        # Counters are consumed in place, so keep a private copy.
        self.spec = spec.model_copy(deep=True)
        self._buckets.clear()
        if spec.seed is not None:
            self.rng.seed(spec.seed)

    def clear(self) -> None:
        self.spec = None
        self._buckets.clear()

    def describe(self) -> dict[str, Any] | None:
        return None if self.spec is None else self.spec.model_dump(by_alias=True)

    def matches(self, method: str, path: str, action: str | None) -> bool:
        spec = self.spec
        if spec is None:
            return False
        m = spec.match
        if m.method and m.method.upper() != method.upper():
            return False
        if m.path_contains and m.path_contains not in path:
            return False
        return not (m.action and m.action != action)

    def latency(self) -> float:
        return self.spec.latency_seconds if self.spec else 0.0

    def take_drop(self, when: str) -> bool:
        drop = self.spec.drop if self.spec else None
        if drop is None or drop.when != when or drop.count == 0:
            return False
        if drop.count is not None:
            drop.count -= 1
        return True

    def take_throttle(self) -> float | None:
        """Seconds for Retry-After when this request is throttled, else None."""
        throttle = self.spec.throttle if self.spec else None
        if throttle is None or throttle.count == 0:
            return None
        if throttle.count is not None:
            throttle.count -= 1
        return throttle.retry_after

    def take_rate(self, key: str, now: float) -> float | None:
        """If ``key``'s bucket is empty at steady time ``now``, the seconds until it holds a token again (the
        request is throttled); otherwise take a token and return None."""
        limit = self.spec.rate_limit if self.spec else None
        if limit is None:
            return None
        tokens, counted = self._buckets.get(key, (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + max(0.0, now - counted) * limit.per_second)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return None
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / limit.per_second

    def take_error(self) -> int | None:
        """The status of an injected error for this request, else None."""
        spec = self.spec
        if spec is None:
            return None
        if spec.error_count > 0:
            spec.error_count -= 1
            return spec.error_status
        if spec.error_rate > 0 and self.rng.random() < spec.error_rate:
            return spec.error_status
        return None
