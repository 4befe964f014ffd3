"""Time for the simulator, injectable so that tests move it instead of sleeping.

The simulator needs two kinds of time: a steady one for "this switchover finishes 5 s after it started"
and a wall clock for timestamps, token expiry and the 15-minute ``X-Sdk-Date`` window. Unless told
otherwise the wall clock is *derived* from the steady one (anchored once to ``time.time()``), so a test that
advances a single ``ManualClock`` moves both, and a signature dated by the real clock goes stale exactly when
the simulated time has moved on by 15 minutes. ``advance()`` adds an offset to both, which is what the
control API's ``POST /_sim/clock`` uses to fast-forward a simulator running on real time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime


class ManualClock:
    """A steady clock that moves only when told to; pass it as ``Simulator(clock=...)``."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not run backwards")
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        """An ``asyncio.sleep`` stand-in that passes simulated time instead of real time."""
        self.advance(max(seconds, 0.0))


class SimClock:
    """Steady time (``now``) and wall time (``wall``, epoch seconds), both shifted by ``advance``."""

    def __init__(
        self,
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        self._clock = clock or time.monotonic
        if wall_clock is None:
            anchor = time.time() - self._clock()
            steady = self._clock

            def wall_clock() -> float:
                return anchor + steady()

        self._wall = wall_clock
        self._offset = 0.0

    @property
    def offset(self) -> float:
        return self._offset

    def now(self) -> float:
        return self._clock() + self._offset

    def wall(self) -> float:
        return self._wall() + self._offset

    def wall_at(self, steady: float) -> float:
        """The wall time at which steady time read ``steady``."""
        return self.wall() - (self.now() - steady)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the simulator clock does not run backwards")
        self._offset += seconds


def cloud_timestamp(epoch: float) -> str:
    """EVS style: microseconds, no zone suffix (``2017-11-28T03:05:10.677939``); the zone is UTC."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def iam_timestamp(epoch: float) -> str:
    """IAM style: microseconds and a ``Z`` (``2015-11-09T01:42:57.527363Z``)."""
    return cloud_timestamp(epoch) + "Z"


def sdk_date(epoch: float) -> str:
    """``X-Sdk-Date`` format, ``20240102T030405Z``."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y%m%dT%H%M%SZ")


def sdrs_timestamp(epoch: float) -> str:
    """SDRS group style (OTC doc): milliseconds, a space, no zone (``2019-05-22 08:16:54.413``); UTC."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def sdrs_job_timestamp(epoch: float) -> str:
    """SDRS job style: milliseconds and a ``Z`` (``2018-04-19T01:55:30.443Z``)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
