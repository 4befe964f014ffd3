"""Retry as a value: how often and how long the cloud client tries a request again.

The policy knows nothing about HTTP. It is handed an attempt (a coroutine factory) and a predicate that says
whether a given failure may be retried; *which* failures qualify is decided next to the error mapping in
``azswitch.cloud.transport.may_retry``, because only there is it known whether a request could have reached
the cloud. Time is injected (``sleep``, ``clock``, ``rng``) so that tests run instantly and deterministically
without patching ``asyncio.sleep``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from azswitch.errors import CloudError, ConfigError, TransientCloudError

T = TypeVar("T")

logger = logging.getLogger("azswitch.cloud")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded by a number of attempts and by total elapsed time.

    * ``max_attempts``: attempts in all, the first one included (1 disables retries).
    * ``base_delay`` / ``max_delay``: the n-th retry waits ``min(max_delay, base_delay * 2**(n-1))`` seconds,
      shortened at random by up to ``jitter`` (a fraction between 0 and 1) so that many clients do not retry
      in lockstep.
    * ``max_total``: no retry is started whose wait would end later than ``max_total`` seconds after the
      first attempt began; the last error is raised instead.
    * A ``retry_after`` carried by the error (the cloud's ``Retry-After``) replaces the backoff delay, even
      when it is longer than ``max_delay``: the cloud knows better. It still never extends ``max_total``.
    """

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_total: float = 30.0
    jitter: float = 0.2
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, got {self.max_attempts}")
        for name, value in (
            ("base_delay", self.base_delay),
            ("max_delay", self.max_delay),
            ("max_total", self.max_total),
        ):
            if value < 0:
                raise ConfigError(f"{name} must not be negative, got {value}")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"jitter must be between 0 and 1, got {self.jitter}")

    def backoff(self, retry_number: int) -> float:
        """The wait before retry number ``retry_number`` (1 for the first retry), jitter applied."""
        delay = min(self.max_delay, self.base_delay * 2.0 ** (retry_number - 1))
        return delay * (1 - self.jitter * self.rng.random())

    def delay_for(self, error: CloudError, retry_number: int) -> float:
        if isinstance(error, TransientCloudError) and error.retry_after is not None:
            return max(0.0, error.retry_after)
        return self.backoff(retry_number)

    async def run(self, attempt: Callable[[], Awaitable[T]], *, retryable: Callable[[CloudError], bool]) -> T:
        """Await ``attempt()`` until it succeeds, fails with a non-retryable error, or the budget is spent."""
        started = self.clock()
        attempts = 0
        while True:
            attempts += 1
            try:
                return await attempt()
            except CloudError as error:
                if not retryable(error) or attempts >= self.max_attempts:
                    raise
                delay = self.delay_for(error, attempts)
                if self.clock() - started + delay > self.max_total:
                    raise
                logger.debug("attempt %d failed, retrying in %.2f s: %s", attempts, delay, error)
                await self.sleep(delay)
