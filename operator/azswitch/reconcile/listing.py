"""The shared listing: one LIST per (endpoint, project, credentials) serves many groups of that project.

With 1,000 ReplicationGroups and a drift check every minute, a GET per group would be 1,000 requests a minute
against an API that throttles; the groups of one project all come back from one LIST (1,000 per page). So an
idle resource asks this cache, which LISTs at most once per ``max_age`` per key and shares the answer (and
an in-flight LIST) among all callers. The same holds for operations in flight during an evacuation: ten
groups moving in one project are polled by one LIST per poll interval instead of ten GETs (the reconciler
decides when; a lone operation is polled with its own GET). A decision to *send* anything is never taken on
a cached view: the reconciler GETs the group first.

``group`` returns the view with its age, so a caller polling through the listing can come back just as the
next LIST is due, which keeps the delay from the cloud changing to the operator seeing it at one interval.

A fresher GET result is written back (``remember``), so a group that just switched is not seen at its old
primary by the next idle check, which would otherwise plan a switchover back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from azswitch.cloud.api import MAX_PAGE_SIZE, CloudAPI


@dataclass
class _Listing:
    fetched_at: float
    groups: dict[str, tuple[float, Any]] = field(default_factory=dict)
    #: The LIST's number among those started for any key (``mark``): later ones have higher numbers.
    number: int = 0


class GroupCache:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._listings: dict[Hashable, _Listing] = {}
        self._inflight: dict[Hashable, asyncio.Future[_Listing]] = {}
        self._inflight_number: dict[Hashable, int] = {}
        self._started = 0  # LISTs started so far (numbers them)
        self.lists = 0  # LIST calls made; read by tests and benchmarks

    async def group(
        self, key: Hashable, cloud: CloudAPI[Any], group_id: str, max_age: float
    ) -> tuple[Any, float]:
        """The group as seen at most ``max_age`` seconds ago, from a shared LIST when possible, and the age
        of that view in seconds (0 for a fresh read)."""
        listing = self._listings.get(key)
        if listing is None or self._clock() - listing.fetched_at >= max_age:
            listing = await self._refresh(key, cloud)
        entry = listing.groups.get(group_id)
        if entry is None:
            # Not in the listing (created since, or the cloud's list lags): ask for it directly.
            return await self.fetch(key, cloud, group_id), 0.0
        return entry[1], max(0.0, self._clock() - entry[0])

    def mark(self) -> int:
        """A point in the sequence of LISTs: ``listed_since(mark)`` takes only a LIST started after it."""
        return self._started

    async def listed_since(self, key: Hashable, cloud: CloudAPI[Any], group_id: str, mark: int) -> Any:
        """The group from a LIST started after ``mark``: a read made after the caller's decision, as good as
        the group's own GET, and shared by every caller asking at the same time — so that when ten groups
        start at once, one request reads all ten."""
        listing = self._listings.get(key)
        if listing is None or listing.number <= mark:
            listing = await self._refresh(key, cloud, after=mark)
        entry = listing.groups.get(group_id)
        if entry is None:
            return await self.fetch(key, cloud, group_id)
        return entry[1]

    def list_cost(self, key: Hashable) -> int:
        """Requests one refresh of ``key``'s listing takes: a page per 1,000 groups, and a full last page
        needs one more, empty, page to be known as the last (1 if never listed)."""
        listing = self._listings.get(key)
        return 1 if listing is None else len(listing.groups) // MAX_PAGE_SIZE + 1

    async def fetch(self, key: Hashable, cloud: CloudAPI[Any], group_id: str) -> Any:
        """A fresh GET, remembered for the group's next idle check."""
        group = await cloud.get_group(group_id)
        self.remember(key, group)
        return group

    def remember(self, key: Hashable, group: Any, at: float | None = None) -> None:
        listing = self._listings.get(key)
        if listing is None:
            return
        moment = self._clock() if at is None else at
        previous = listing.groups.get(group.id)
        if previous is None or previous[0] <= moment:
            listing.groups[group.id] = (moment, group)

    async def _refresh(self, key: Hashable, cloud: CloudAPI[Any], after: int | None = None) -> _Listing:
        """A new LIST of ``key``, or the one in flight if it started after the mark ``after``."""
        while (pending := self._inflight.get(key)) is not None:
            number = self._inflight_number[key]
            listing = await asyncio.shield(pending)
            if after is None or number > after:
                return listing
            # It started before the caller's decision: wait for it (one LIST at a time), then list anew.
        future: asyncio.Future[_Listing] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        self._started += 1
        number = self._inflight_number[key] = self._started
        try:
            started = self._clock()
            groups = await cloud.list_groups()
            self.lists += 1
            listing = _Listing(started, {g.id: (started, g) for g in groups}, number)
            old = self._listings.get(key)
            if old is not None:
                # A GET that finished after this LIST started knows better.
                for group_id, (moment, group) in old.groups.items():
                    if moment > started and group_id in listing.groups:
                        listing.groups[group_id] = (moment, group)
            self._listings[key] = listing
            future.set_result(listing)
            return listing
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            # Mark it retrieved: waiters re-raise it themselves, and there may be none.
            future.exception()
            raise
        finally:
            del self._inflight[key]
            del self._inflight_number[key]
