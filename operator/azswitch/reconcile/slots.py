"""The global cap on operations in flight in this operator process, and the line of resources waiting for it.

An AZ evacuation wants hundreds of switchovers at once; the cloud (and the blast radius) wants a few at a
time. ``OperationSlots`` is that cap, and it hands a freed slot to the next resource in line at once, so an
evacuation moves at the pace of the cap rather than of the resync interval.
"""

from __future__ import annotations

from collections.abc import Callable


class OperationSlots:
    """The global cap on operations in flight in this operator process.

    ``try_acquire`` and ``release`` never await, so check-and-take is atomic under asyncio. Operations found
    in flight after a restart are ``adopt``-ed even beyond the cap: they are already running in the cloud.
    Keys turned away wait in line and are handed to ``on_release`` one per freed slot, so an AZ evacuation
    moves on the moment capacity exists instead of at the next resync. A woken key that turns out not to
    need the slot (``settle``) passes it on to the next in line.
    """

    def __init__(self, capacity: int, on_release: Callable[[list[str]], None] | None = None) -> None:
        self.capacity = capacity
        self.on_release = on_release
        self._holders: set[str] = set()
        self._waiting: dict[str, None] = {}
        self._woken: set[str] = set()

    @property
    def in_use(self) -> int:
        return len(self._holders)

    def holds(self, key: str) -> bool:
        return key in self._holders

    def available(self, key: str) -> bool:
        return key in self._holders or len(self._holders) < self.capacity

    def wait(self, key: str) -> None:
        """Put ``key`` in line for a slot (it keeps its place if already there)."""
        self._woken.discard(key)
        self._waiting.setdefault(key, None)

    def try_acquire(self, key: str) -> bool:
        if not self.available(key):
            self.wait(key)
            return False
        self._holders.add(key)
        self._waiting.pop(key, None)
        self._woken.discard(key)
        return True

    def adopt(self, key: str) -> None:
        self._holders.add(key)

    def release(self, key: str) -> None:
        """``key`` no longer runs an operation: its slot goes to the next in line."""
        if key in self._holders:
            self._holders.discard(key)
            self._wake_next()

    def settle(self, key: str) -> None:
        """A reconcile of ``key`` ended without an operation: free its slot, and if it was woken for a slot
        it did not take, hand that chance to the next in line."""
        if key in self._holders:
            self.release(key)
        elif key in self._woken and key not in self._waiting:
            self._woken.discard(key)
            self._wake_next()

    def forget(self, key: str) -> None:
        """The resource is gone: out of line, and its slot (if any) freed."""
        self._waiting.pop(key, None)
        self._woken.discard(key)
        self.release(key)

    def _wake_next(self) -> None:
        if self.on_release is None or not self._waiting or len(self._holders) >= self.capacity:
            return
        key = next(iter(self._waiting))
        del self._waiting[key]
        self._woken.add(key)
        self.on_release([key])
