"""A client-side rate limit per (endpoint, project), so that many groups never trip the gateway's throttle.

Huawei's advice for ``APIG.0308`` is to slow down and avoid concurrent bursts (cloud-api.md §6.4); the
published limits are undocumented, so the rate and burst are settings. One limiter is shared by every client
of the same endpoint and project, and every request, retries included, takes a token first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from azswitch.errors import ConfigError


class RateLimiter:
    """An async token bucket: ``burst`` requests at once, then ``rate`` requests per second.

    Fair under concurrency: each caller reserves its slot the moment it calls ``acquire()`` (no ``await``
    happens between reading and updating the bucket), so the token count may go negative and each waiter
    sleeps exactly until its own slot. Waiters therefore proceed first come, first served, and no lock or
    wake-up juggling is needed.
    """

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not rate > 0:
            raise ConfigError(f"rate must be positive (requests per second), got {rate}")
        if burst < 1:
            raise ConfigError(f"burst must be at least 1, got {burst}")
        self.rate = float(rate)
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate}, burst={self.burst})"

    async def acquire(self) -> None:
        """Wait until the caller may send one request."""
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        self._tokens -= 1
        if self._tokens >= 0:
            return
        try:
            await self._sleep(-self._tokens / self.rate)
        except asyncio.CancelledError:
            # The caller will not send: give its slot back so that capacity does not leak.
            self._tokens += 1
            raise
