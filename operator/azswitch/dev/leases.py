"""A Lease in memory with the apiserver's optimistic concurrency, for tests of leader election.

Why not a mock: the election is only as good as its handling of 409s, missing Leases and calls that hang, so
this store behaves like the apiserver where that matters — every write bumps the resourceVersion, an update
carrying an old one (or a create of an existing Lease) is a ``LeaseConflict`` — and lets a test inject the
rest: an error on every call (a partitioned replica), a call that never answers, or a hook that runs inside
``update`` (another writer racing in, or time passing while the request is on the wire). ``view()`` gives
one candidate its own failure modes over the shared Lease.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from azswitch.leader import LeaseConflict, LeaseError, LeaseRecord


@dataclass
class MemoryLeaseStore:
    """One Lease. ``record`` is None until created; ``calls`` logs ``(client, method)`` in order."""

    record: LeaseRecord | None = None
    version: int = 0
    events: list[tuple[str, str]] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def put(self, record: LeaseRecord | None) -> None:
        """A write by someone else (another replica, kubectl): a new resourceVersion."""
        self.record = record
        self.version += 1

    def view(self, name: str = "client") -> LeaseClient:
        """A ``LeaseStore`` for one candidate, with its own injectable faults."""
        return LeaseClient(self, name)


@dataclass
class LeaseClient:
    """One candidate's connection to a ``MemoryLeaseStore`` (a ``LeaseStore``)."""

    store: MemoryLeaseStore
    name: str = "client"
    #: Raised by every call while set (the apiserver unreachable from this replica only).
    error: LeaseError | None = None
    #: While set and not yet set-to-true, every call waits for it (a request that hangs).
    stall: asyncio.Event | None = None
    #: Awaited inside ``update`` before the version check (a racing writer; time passing on the wire).
    before_update: Callable[[], Awaitable[None]] | None = None

    async def _enter(self, method: str) -> None:
        self.store.calls.append((self.name, method))
        if self.stall is not None:
            await self.stall.wait()
        if self.error is not None:
            raise self.error

    async def get(self) -> tuple[LeaseRecord, str] | None:
        await self._enter("get")
        if self.store.record is None:
            return None
        return self.store.record, str(self.store.version)

    async def create(self, record: LeaseRecord) -> str:
        await self._enter("create")
        if self.store.record is not None:
            raise LeaseConflict("the Lease already exists (HTTP 409)")
        self.store.put(record)
        return str(self.store.version)

    async def update(self, record: LeaseRecord, resource_version: str) -> str:
        await self._enter("update")
        if self.before_update is not None:
            await self.before_update()
        if self.store.record is None:
            raise LeaseConflict("the Lease no longer exists (HTTP 404)")
        if resource_version != str(self.store.version):
            raise LeaseConflict(
                f"the Lease changed meanwhile (HTTP 409): {resource_version} != {self.store.version}"
            )
        self.store.put(record)
        return str(self.store.version)

    async def record_event(self, reason: str, message: str) -> None:
        self.store.calls.append((self.name, "event"))
        self.store.events.append((reason, message))
