"""A work queue between the watch and the reconciler: one reconcile per resource at a time, requeues, resync.

kopf watches the resources and hands every event to ``Controller.observe``; nothing else of kopf's
machinery is used per resource (no progress annotations, no per-resource timers or daemons), which keeps
memory flat with 1,000 resources and lets a long switchover be polled in short steps, each on the newest
copy of the resource. The shape is controller-runtime's: latest object per key, a de-duplicating queue,
``add_after`` for requeues, N workers, and a key is never reconciled by two workers at once.

Our own status writes come back as watch events. They do not trigger a reconcile (the reconciler already
knows what it wrote); changes to the spec (generation), the annotations, or a new object do.

The queue has two lanes. Resources with an operation in flight, and those just handed a free operation slot
(``urgent``), go before everything else: when an evacuation patches 500 specs at once, the hundreds of
"wait for a slot" reconciles must not delay seeing a running switchover finish, or starting the next one.
Within a lane namespaces take turns (rounds), so one namespace's 5,000 new resources cannot starve another's one.

With leader election the watch feeds the queue on the standby too (warm caches: a new leader knows every
resource at once), but workers run only on the leader: ``start()`` when it takes the Lease, ``abandon()`` the
moment it loses it, and each worker asks ``gate`` before every reconcile. ``stop(drain=...)`` lets running
reconciles finish their step (a SIGTERMed leader completes the status write or request it is making) before
the Lease is handed over.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from azswitch.errors import NotLeading

logger = logging.getLogger("azswitch.controller")

Key = tuple[str, str]
_URGENT, _NORMAL = 0, 1
ReconcileFn = Callable[[Mapping[str, Any]], Awaitable[float | None]]


#: Strings up to this long are interned in the bodies the queue keeps (keys, phases, reasons, AZ names …).
_SHARED_MAX = 64


def _shared(value: Any) -> Any:
    """A copy of a decoded JSON tree with its keys and short strings interned.

    Every watch event is decoded on its own, so each body carries its own copy of every key ("metadata",
    "lastTransitionTime" …) and of every repeated value ("True", "InSync", the AZ names, the project ID):
    about half of a body's bytes. Interned, one copy serves all of them; an interned string still dies with
    the last body that holds it.
    """
    if isinstance(value, dict):
        return {sys.intern(k) if type(k) is str else k: _shared(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shared(v) for v in value]
    if type(value) is str and len(value) <= _SHARED_MAX:
        return sys.intern(value)
    return value


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """The copy of a resource the queue keeps until the next event: without ``metadata.managedFields``
    (nothing here reads them, and they restate every field of spec and status), strings shared."""
    meta = body.get("metadata")
    if isinstance(meta, Mapping) and "managedFields" in meta:
        body = {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    kept: dict[str, Any] = _shared(dict(body))
    return kept


def _trigger(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """The parts of a resource whose change warrants a reconcile (not status, not resourceVersion)."""
    meta = body.get("metadata", {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith("azswitch.io/")}
    return (
        meta.get("uid"),
        meta.get("generation"),
        tuple(sorted(annotations.items())),
        # Labels decide which ZoneDrains select the group.
        tuple(sorted((meta.get("labels") or {}).items())),
        meta.get("deletionTimestamp"),
    )


def _in_flight(body: Mapping[str, Any]) -> bool:
    status = body.get("status")
    return isinstance(status, Mapping) and isinstance(status.get("operation"), Mapping)


def _group_of(body: Mapping[str, Any] | None) -> str | None:
    spec = (body or {}).get("spec")
    group = spec.get("groupID") if isinstance(spec, Mapping) else None
    return group if isinstance(group, str) and group else None


class Controller:
    def __init__(
        self,
        reconcile: ReconcileFn,
        *,
        workers: int,
        on_forget: Callable[[str, str], None] | None = None,
        on_error: Callable[[Key, BaseException], None] | None = None,
        gate: Callable[[], bool] | None = None,
    ) -> None:
        self._reconcile = reconcile
        self._gate = gate
        self._workers = workers
        self._on_forget = on_forget
        self._on_error = on_error
        self._objects: dict[Key, Mapping[str, Any]] = {}
        # spec.groupID -> the resources naming it, so that two claims on one cloud group are seen at once.
        self._by_group: dict[str, set[Key]] = {}
        self._triggers: dict[Key, tuple[Any, ...]] = {}
        self._queue: asyncio.PriorityQueue[tuple[int, int, int, Key]] = asyncio.PriorityQueue()
        self._queued: dict[Key, int] = {}  # key -> the lane it waits in
        self._seq = 0  # FIFO within a lane and round
        # Fair across namespaces, within a lane: a namespace's n-th waiting resource goes in round n (or the
        # round being served, if later), so one namespace's 5,000 cannot starve another's one.
        self._last_round: dict[tuple[int, str], int] = {}  # (lane, namespace) -> round of its last entry
        self._serving: dict[int, int] = {_URGENT: 0, _NORMAL: 0}  # lane -> round last taken out
        self._active: set[Key] = set()
        self._dirty: dict[Key, bool] = {}  # changed while being reconciled -> asked for urgently
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._error_backoff: dict[Key, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[Any]] = set()  # workers inside a reconcile
        self._closing = False

    # ------------------------------------------------------------------ inputs

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Record the newest copy of a resource; enqueue it if something that matters changed."""
        meta = body.get("metadata", {})
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        if event_type == "DELETED":
            self._index(key, None)
            self._objects.pop(key, None)
            self._triggers.pop(key, None)
            self._cancel_timer(key)
            if self._on_forget is not None:
                self._on_forget(*key)
            return
        body = slim(body)
        self._index(key, body)
        self._objects[key] = body
        trigger = _trigger(body)
        if self._triggers.get(key) != trigger:
            self._triggers[key] = trigger
            self.enqueue(key)

    def written(self, previous_version: str | None, body: Mapping[str, Any]) -> None:
        """The reconciler wrote ``body`` on top of ``previous_version``: keep it unless a newer copy arrived."""
        meta = body.get("metadata", {})
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        current = self._objects.get(key)
        if current is not None and current.get("metadata", {}).get("resourceVersion") == previous_version:
            self._objects[key] = slim(body)

    def claimants(self, group_id: str) -> list[Mapping[str, Any]]:
        """Every known resource whose spec names ``group_id``."""
        return [self._objects[key] for key in self._by_group.get(group_id, ()) if key in self._objects]

    def _index(self, key: Key, body: Mapping[str, Any] | None) -> None:
        old = _group_of(self._objects.get(key))
        new = _group_of(body)
        if old == new:
            return
        if old is not None:
            keys = self._by_group.get(old, set())
            keys.discard(key)
            if not keys:
                self._by_group.pop(old, None)
            else:
                # The remaining claimants may now own the group: let them look again.
                for other in keys:
                    self.enqueue(other)
        if new is not None:
            keys = self._by_group.setdefault(new, set())
            for other in keys:
                self.enqueue(other)
            keys.add(key)

    def enqueue(self, key: Key, *, urgent: bool = False) -> None:
        body = self._objects.get(key)
        if body is None:
            return
        if key in self._active:
            # Being reconciled now: run once more right after, on the newest copy.
            self._dirty[key] = self._dirty.get(key, False) or urgent
            return
        lane = _URGENT if urgent or _in_flight(body) else _NORMAL
        queued = self._queued.get(key)
        if queued is not None and queued <= lane:
            return
        # New, or moving up a lane: the entry left in the slower lane is skipped when it comes out.
        self._queued[key] = lane
        self._seq += 1
        turn = (lane, key[0])
        round_ = max(self._serving[lane], self._last_round.get(turn, 0) + 1)
        self._last_round[turn] = round_
        self._queue.put_nowait((lane, round_, self._seq, key))

    def enqueue_after(self, key: Key, delay: float) -> None:
        if delay <= 0:
            self.enqueue(key)
            return
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        when = loop.time() + delay
        if existing is not None and not existing.cancelled() and existing.when() <= when:
            return
        self._cancel_timer(key)
        self._timers[key] = loop.call_at(when, self._fire, key)

    def enqueue_all(self) -> None:
        for key in list(self._objects):
            self.enqueue(key)

    def keys(self) -> list[Key]:
        return list(self._objects)

    def objects(self) -> list[Mapping[str, Any]]:
        """The latest known body of every resource (what a ZoneDrain's status is computed from)."""
        return list(self._objects.values())

    def get(self, key: Key) -> Mapping[str, Any] | None:
        return self._objects.get(key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.enqueue(key)

    def _cancel_timer(self, key: Key) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    # ------------------------------------------------------------------ workers

    def start(self) -> None:
        self._closing = False
        self._tasks = [
            asyncio.create_task(self._work(), name=f"azswitch-worker-{i}") for i in range(self._workers)
        ]

    async def stop(self, *, drain: float = 0.0) -> None:
        """Stop the workers. With ``drain``, idle ones at once and busy ones after their current reconcile
        (cancelled if it takes longer than ``drain`` seconds)."""
        self._closing = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        busy = [task for task in self._tasks if task in self._busy]
        if drain > 0 and busy:
            for task in self._tasks:
                if task not in self._busy:
                    task.cancel()
            _, late = await asyncio.wait(busy, timeout=drain)
            if late:
                logger.warning("%d reconciles still running after %.0fs; cancelling them", len(late), drain)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def abandon(self) -> None:
        """Stop every worker now, mid-reconcile (this process lost the right to act); ``stop()`` reaps them."""
        self._closing = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()

    async def _work(self) -> None:
        worker = asyncio.current_task()
        assert worker is not None
        while not self._closing:
            lane, round_, _, key = await self._queue.get()
            self._serving[lane] = max(self._serving[lane], round_)
            if self._queued.get(key) != lane:
                continue  # a stale entry: the key moved up a lane (and ran) since
            del self._queued[key]
            body = self._objects.get(key)
            if body is None:
                continue
            if self._closing or (self._gate is not None and not self._gate()):
                # Not ours to act on (any more): back into the queue for whoever acts next.
                self.enqueue(key, urgent=lane == _URGENT)
                return
            self._active.add(key)
            self._busy.add(worker)
            self._cancel_timer(key)
            try:
                delay = await self._reconcile(body)
                self._error_backoff.pop(key, None)
            except asyncio.CancelledError:
                raise
            except NotLeading as exc:
                # A fence closed mid-reconcile (the Lease is gone): stop here, unfinished, and no further.
                logger.info("stopped: %s", exc, extra={"rg_namespace": key[0], "rg_name": key[1]})
                self._closing = True
                return
            except Exception as exc:  # the last line of defence: one resource must never stop the others
                backoff = min(300.0, self._error_backoff.get(key, 1.0) * 2)
                self._error_backoff[key] = backoff
                logger.exception(
                    "reconcile crashed; retrying in %.0fs",
                    backoff,
                    extra={"rg_namespace": key[0], "rg_name": key[1]},
                )
                if self._on_error is not None:
                    self._on_error(key, exc)
                delay = backoff
            finally:
                self._active.discard(key)
                self._busy.discard(worker)
            if self._closing:
                return
            if key in self._dirty:
                self.enqueue(key, urgent=self._dirty.pop(key))
            elif delay is not None:
                self.enqueue_after(key, delay)
