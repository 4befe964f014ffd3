"""ZoneDrains at run time: the drains the watch delivers, the namespace labels their selectors need, waking the
groups a drain change concerns, and the drain's status (counts, blocked groups, Ready, events, metrics).

What a drain *means* is ``azswitch.drains`` (pure); this module feeds it and writes its results. It knows no
kopf (``handlers`` forwards the watch events) and no reconciler internals: the reconciler asks
``DrainBook.lookup`` which drains select a group, and the book asks the work queue (``wake``) to look at the
groups again when a drain starts, changes, expires or ends.

The status writer runs only in a cluster-wide operator: a namespaced one sees only its own groups, so its
counts would be wrong for everyone else's, and it obeys drains read-only. It writes at most every
``interval`` seconds, and only what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from azswitch import drains as draining
from azswitch.errors import AzswitchError
from azswitch.kube import DRAIN_KIND, GROUP, VERSION
from azswitch.metrics import Metrics

logger = logging.getLogger("azswitch.zonedrains")


class DrainKube(Protocol):
    async def read_namespace_labels(self, name: str) -> dict[str, str] | None: ...

    async def patch_drain_status(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]: ...

    async def post_event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None: ...


@dataclass
class _Known:
    drain: draining.Drain
    body: Mapping[str, Any]


class DrainBook:
    """The ZoneDrains known from the watch, and the namespace labels their selectors are matched against.

    Namespace labels are read on demand (only while some drain has a ``namespaceSelector``) and kept for
    ``namespace_ttl`` seconds, so a label change takes effect within that long (the resync interval).
    """

    def __init__(
        self,
        kube: DrainKube,
        *,
        wake: Callable[[], None],
        namespace_ttl: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.wake = wake
        self.namespace_ttl = namespace_ttl
        self.clock = clock
        self.monotonic = monotonic
        self.known: dict[str, _Known] = {}
        self.ended: list[Mapping[str, Any]] = []  # deleted drains, for the writer's "ended" event
        self._labels: dict[str, tuple[float, dict[str, str] | None]] = {}
        self._expired: set[str] = set()

    # --- the watch

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event of a ZoneDrain. Groups are woken when what the drain selects or where it drains
        changes (a new generation, creation, deletion), never for our own status writes."""
        name = str((body.get("metadata") or {}).get("name", ""))
        if not name:
            return
        if event_type == "DELETED" or (body.get("metadata") or {}).get("deletionTimestamp"):
            gone = self.known.pop(name, None)
            if gone is not None:
                self.ended.append(gone.body)
                self._expired.discard(name)
                self.wake()
            return
        drain = draining.parse_drain(body)
        previous = self.known.get(name)
        self.known[name] = _Known(drain, body)
        if previous is None or previous.drain.generation != drain.generation:
            self._expired.discard(name)
            self.wake()

    def drains(self) -> list[draining.Drain]:
        return [known.drain for known in self.known.values()]

    def check_expiry(self) -> list[str]:
        """Drains that expired since the last check; the groups they held are woken (they go back)."""
        now = self.clock()
        newly = [d.name for d in self.drains() if d.expired(now) and d.name not in self._expired]
        if newly:
            self._expired.update(newly)
            self.wake()
        return newly

    def next_expiry(self) -> float | None:
        """Seconds until the next drain expires, if one will."""
        now = self.clock()
        pending = [
            (d.spec.expires_at - now).total_seconds()
            for d in self.drains()
            if d.spec is not None and d.spec.expires_at is not None and not d.expired(now)
        ]
        return min(pending, default=None)

    # --- the reconciler's question

    async def lookup(self, namespace: str, labels: Mapping[str, str]) -> list[draining.Drain]:
        """The drains selecting a group with ``labels`` in ``namespace`` (``reconcile.DrainLookup``)."""
        drains = self.drains()
        if not drains:
            return []
        namespace_labels = (
            await self.namespace_labels(namespace) if any(d.needs_namespace_labels for d in drains) else None
        )
        return [d for d in drains if d.selects(labels, namespace_labels)]

    async def namespace_labels(self, namespace: str) -> dict[str, str] | None:
        cached = self._labels.get(namespace)
        if cached is not None and self.monotonic() - cached[0] < self.namespace_ttl:
            return cached[1]
        try:
            labels = await self.kube.read_namespace_labels(namespace)
        except AzswitchError as exc:
            # Not knowing a namespace's labels means its namespaceSelector cannot match: say so, go on.
            logger.warning("cannot read the labels of namespace %s: %s", namespace, exc)
            labels = cached[1] if cached is not None else None
        self._labels[namespace] = (self.monotonic(), labels)
        return labels


def _condition(
    status: str, reason: str, message: str, generation: int, previous: Mapping[str, Any] | None, now: str
) -> dict[str, Any]:
    same = previous is not None and previous.get("status") == status
    return {
        "type": "Ready",
        "status": status,
        "observedGeneration": generation,
        "lastTransitionTime": (previous or {}).get("lastTransitionTime") if same else now,
        "reason": reason,
        "message": message,
    }


class DrainStatusWriter:
    """Keeps every ZoneDrain's status current from the groups the work queue knows, every ``interval`` s."""

    def __init__(
        self,
        book: DrainBook,
        groups: Callable[[], Iterable[Mapping[str, Any]]],
        *,
        metrics: Metrics | None = None,
        interval: float = 2.0,
    ) -> None:
        self.book = book
        self.groups = groups
        self.metrics = metrics
        self.interval = interval
        self._written: dict[str, dict[str, Any]] = {}
        self._blocked_seen: dict[str, set[tuple[str, str]]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="zonedrain-status")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # a bug here must not stop the drains from being reported next time
                logger.exception("updating ZoneDrain status failed")
            await asyncio.sleep(self.interval)

    async def tick(self) -> None:
        """One pass: expiry, ended drains, and the status of each drain that changed."""
        book = self.book
        book.check_expiry()
        while book.ended:
            body = book.ended.pop(0)
            name = str(body["metadata"]["name"])
            self._written.pop(name, None)
            self._blocked_seen.pop(name, None)
            if self.metrics is not None:
                self.metrics.forget_drain(name)
            await book.kube.post_event(
                _event_target(body),
                "Normal",
                "DrainEnded",
                f"ZoneDrain {name} was deleted; its groups go back",
            )
        if not book.known:
            return
        facts = [draining.group_facts(body) for body in self.groups()]
        needs_labels = any(d.needs_namespace_labels for d in book.drains())
        namespace_labels: dict[str, Mapping[str, str] | None] = {}
        if needs_labels:
            for namespace in {f.namespace for f in facts}:
                namespace_labels[namespace] = await book.namespace_labels(namespace)
        now = book.clock()
        for name, known in list(book.known.items()):
            await self._write(name, known, facts, namespace_labels, now)

    async def _write(
        self,
        name: str,
        known: _Known,
        facts: list[draining.GroupFacts],
        namespace_labels: Mapping[str, Mapping[str, str] | None],
        now: datetime,
    ) -> None:
        drain, body = known.drain, known.body
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        previous_status = self._written.get(name) or dict(body.get("status") or {})
        previous_ready = next(
            (c for c in previous_status.get("conditions") or [] if c.get("type") == "Ready"), None
        )
        if drain.spec is None:
            status: dict[str, Any] = {
                "observedGeneration": drain.generation,
                "phase": "Draining",
                "matchedGroups": 0,
                "drainedGroups": 0,
                "movingGroups": 0,
                "blockedGroups": 0,
                "blocked": [],
                "conditions": [
                    _condition(
                        "False",
                        "InvalidSpec",
                        f"{drain.invalid}; fix the ZoneDrain",
                        drain.generation,
                        previous_ready,
                        stamp,
                    )
                ],
            }
        else:
            summary = draining.summarize(drain, facts, namespace_labels)
            expired = drain.expired(now)
            phase = "Expired" if expired else ("Drained" if summary.done else "Draining")
            if expired:
                ready = (
                    "False",
                    "Expired",
                    f"expired at {drain.spec.expires_at}; the groups go back to their spec",
                )
            elif summary.done:
                ready = (
                    "True",
                    "Drained",
                    f"all {summary.matched} matched groups are outside {drain.spec.zone}",
                )
            else:
                ready = (
                    "False",
                    "Draining",
                    f"{summary.drained} of {summary.matched} matched groups are outside {drain.spec.zone}; "
                    f"{summary.moving} moving, {len(summary.blocked)} blocked",
                )
            status = {
                "observedGeneration": drain.generation,
                "phase": phase,
                "matchedGroups": summary.matched,
                "drainedGroups": summary.drained,
                "movingGroups": summary.moving,
                "blockedGroups": len(summary.blocked),
                "blocked": [
                    {"namespace": ns, "name": n, "reason": reason, "message": message[:512]}
                    for ns, n, reason, message in summary.blocked[: draining.BLOCKED_LIMIT]
                ],
                "conditions": [_condition(*ready, drain.generation, previous_ready, stamp)],
            }
            if self.metrics is not None:
                self.metrics.drain(
                    name, summary.matched, summary.drained, summary.moving, len(summary.blocked)
                )
            await self._events(name, body, drain, previous_status, status, summary.blocked)
        if status == previous_status:
            self._written[name] = previous_status
            return
        try:
            written = await self.book.kube.patch_drain_status(name, status)
        except AzswitchError as exc:
            logger.warning("could not write the status of ZoneDrain %s: %s", name, exc)
            return
        self._written[name] = dict(written.get("status") or status)

    async def _events(
        self,
        name: str,
        body: Mapping[str, Any],
        drain: draining.Drain,
        previous: Mapping[str, Any],
        status: Mapping[str, Any],
        blocked: tuple[tuple[str, str, str, str], ...],
    ) -> None:
        assert drain.spec is not None
        kube, target = self.book.kube, _event_target(body)
        comment = f" ({drain.spec.comment})" if drain.spec.comment else ""
        before, after = previous.get("phase"), status["phase"]
        if before is None:
            await kube.post_event(
                target,
                "Normal",
                "DrainStarted",
                f"draining {drain.spec.zone}{comment}: {status['matchedGroups']} matched groups",
            )
        if after != before and after == "Drained":
            await kube.post_event(
                target,
                "Normal",
                "Drained",
                f"all {status['matchedGroups']} matched groups are off {drain.spec.zone}",
            )
        if after != before and after == "Expired":
            await kube.post_event(
                target, "Normal", "DrainExpired", f"expired at {drain.spec.expires_at}; the groups go back"
            )
        seen = self._blocked_seen.setdefault(name, set())
        for namespace, group, reason, message in blocked:
            if (namespace, group) not in seen:
                await kube.post_event(
                    target,
                    "Warning",
                    "GroupBlocked",
                    f"{namespace}/{group} cannot leave: {reason}: {message}",
                )
        self._blocked_seen[name] = {(ns, n) for ns, n, _, _ in blocked}


def _event_target(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": DRAIN_KIND,
        "metadata": dict(body.get("metadata") or {}),
    }
