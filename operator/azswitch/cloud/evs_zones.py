"""The per-project zone index: EVS groups' AZ pairs learnt from two listings instead of three reads per group.

An EVS group does not name its AZs: they are those of its pairs' disks (cloud-api.md §2.3, §3). Learning them
one group at a time costs a pair GET and two volume GETs per group, so adopting 1,000 groups at 10 requests/s
takes five minutes. The index learns every pair of the project from one paginated pair listing and the disks'
AZs from the disk listing (docs/cloud-api-evs-listings.md), so adoption costs O(pages), not O(groups).

Why it is shared, and where: the reconciler builds a fresh ``EvsClient`` per reconcile, so the index lives on
``CloudConnections``, one per (endpoint, project, access key), next to the rate limiter, and every client of
that key asks the same one. Many groups asking at once wait for one listing run (one task, shielded: a caller
cancelled mid-wait does not cancel it for the others). A failed run is not kept: its error reaches every
waiter (a ``TransientCloudError`` is the reconciler's usual retry) and the next lookup runs the listing again.

What it never does is answer wrongly: a pair's disks and a disk's AZ never change, and the group's own pair
list comes from the group just read, so the index can only be *incomplete* (a pair created since it was
built). A lookup it cannot answer returns ``None`` and the client reads that group the old way; if the index
is older than ``rebuild_after`` it is rebuilt first (once, coalesced). The whole index is dropped ``ttl``
seconds after it was built, so its memory is not held once adoption is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

#: ``on_discovery(method)``: how one group's AZ pair was learnt, ``"listing"`` or ``"per_group"``.
DiscoveryHook = Callable[[str], None]

LISTING = "listing"
PER_GROUP = "per_group"


@dataclass(frozen=True)
class ZoneListing:
    """What one listing run learnt: each pair's disks, and each disk's AZ (``built_at``: when the run began,
    on the index's clock; the index sets it)."""

    pairs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    volume_zones: Mapping[str, str] = field(default_factory=dict)
    built_at: float = 0.0

    def zones_of(self, pair_ids: Iterable[str]) -> list[str] | None:
        """The sorted AZs of the disks of ``pair_ids``, or None unless every pair and disk is known."""
        zones: set[str] = set()
        any_pair = False
        for pair_id in pair_ids:
            volumes = self.pairs.get(pair_id)
            if not volumes:
                return None
            any_pair = True
            for volume_id in volumes:
                zone = self.volume_zones.get(volume_id)
                if not zone:
                    return None
                zones.add(zone)
        return sorted(zones) if any_pair else None


Builder = Callable[[], Awaitable[ZoneListing]]


class ZoneIndex:
    """One project's zone index, shared by every ``EvsClient`` of the same (endpoint, project, access key)."""

    def __init__(
        self,
        *,
        ttl: float = 300.0,
        rebuild_after: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        on_discovery: DiscoveryHook | None = None,
    ) -> None:
        self.ttl = ttl
        self.rebuild_after = rebuild_after
        self._clock = clock
        self._on_discovery = on_discovery
        self._listing: ZoneListing | None = None
        self._running: asyncio.Task[ZoneListing] | None = None
        self.builds = 0  # listing runs completed; read by tests

    def __repr__(self) -> str:
        return f"ZoneIndex(ttl={self.ttl}, rebuild_after={self.rebuild_after}, builds={self.builds})"

    @property
    def listing(self) -> ZoneListing | None:
        """The current listing, if it has not expired (an expired one is dropped here)."""
        if self._listing is not None and self._clock() - self._listing.built_at >= self.ttl:
            self._listing = None
        return self._listing

    async def lookup(self, pair_ids: Sequence[str], build: Builder) -> list[str] | None:
        """The AZs of the disks of ``pair_ids`` from the index (built with ``build`` if there is none), or
        None when the index does not know all of them even after a rebuild it was old enough for."""
        listing = self.listing
        if listing is None:
            listing = await self._refresh(build)
        zones = listing.zones_of(pair_ids)
        if zones is None and self._clock() - listing.built_at >= self.rebuild_after:
            # Created since the index was built (or the listing lagged): one rebuild, shared by all who miss.
            listing = await self._refresh(build)
            zones = listing.zones_of(pair_ids)
        return zones

    def counted(self, method: str) -> None:
        """Report how one group's AZs were learnt (a metrics hook must never break a read)."""
        if self._on_discovery is not None:
            with contextlib.suppress(Exception):  # defensive, like transport's on_request hook
                self._on_discovery(method)

    async def _refresh(self, build: Builder) -> ZoneListing:
        running = self._running
        if running is None or running.done():
            running = asyncio.get_running_loop().create_task(self._build(build), name="azswitch-zone-index")
            # Every waiter may have been cancelled: the outcome is retrieved here, so it is never "lost".
            running.add_done_callback(_retrieve)
            self._running = running
        # Shielded: a caller cancelled while waiting leaves the run to the others.
        return await asyncio.shield(running)

    async def _build(self, build: Builder) -> ZoneListing:
        started = self._clock()
        try:
            listing = dataclasses.replace(await build(), built_at=started)
        finally:
            self._running = None
        self._listing = listing
        self.builds += 1
        # Dropped when it expires, not only when next asked: after adoption nobody may ask for a long time.
        asyncio.get_running_loop().call_later(
            max(0.0, listing.built_at + self.ttl - self._clock()), self._expire, listing.built_at
        )
        return listing

    def _expire(self, built_at: float) -> None:
        if self._listing is not None and self._listing.built_at == built_at:
            self._listing = None

    async def aclose(self) -> None:
        """Cancel a listing run in flight and forget the index."""
        running, self._running = self._running, None
        self._listing = None
        if running is not None and not running.done():
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await running


def _retrieve(task: asyncio.Task[ZoneListing]) -> None:
    if not task.cancelled():
        task.exception()
