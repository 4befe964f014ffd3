"""Recording: how a reconcile's outcome reaches people — status, conditions, events and metrics.

Every write goes through ``Recorder.write``: it derives the conditions from the verdict, writes a merge patch
of only what changed (with the resourceVersion, so a stale copy can never overwrite a newer journal entry),
and carries the new resourceVersion forward so later writes of the same reconcile build on it. No change,
no write: an idle resource costs the apiserver nothing.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

from azswitch import status as statuses
from azswitch.kube import KubeAPI, merge_patch
from azswitch.metrics import Metrics
from azswitch.models import Condition
from azswitch.reconcile.context import Ctx, Verdict, condition, log_context, parse_list
from azswitch.reconcile.slots import OperationSlots
from azswitch.settings import Settings

logger = logging.getLogger("azswitch.reconcile")


class Recorder:
    def __init__(
        self,
        settings: Settings,
        kube: KubeAPI,
        slots: OperationSlots,
        metrics: Metrics,
        rng: random.Random,
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.slots = slots
        self.metrics = metrics
        self.rng = rng
        # Tells the work queue about our own writes, so the next step does not start from a stale copy.
        self.on_written: Callable[[str | None, Mapping[str, Any]], None] | None = None

    async def stall(
        self,
        ctx: Ctx,
        reason: str,
        message: str,
        *,
        requeue: float | None = None,
        keep_plan: bool = False,
    ) -> float | None:
        """Progress needs a person or a change: ``Stalled`` with ``reason``, and an event when it is new."""
        if not keep_plan:
            ctx.status.pop("plan", None)
        phase = "Failed" if reason in ("OperationFailed", "OperationTimedOut") else "Blocked"
        ctx.status["phase"] = phase
        previous = condition(ctx.old_status, "Stalled")
        if previous is None or previous.get("reason") != reason:
            await self.event(ctx, "Warning", reason, message)
        return await self.finish(
            ctx, Verdict(phase, ("False", reason, message), stalled=(reason, message)), requeue
        )

    async def finish(self, ctx: Ctx, verdict: Verdict, requeue: float | None) -> float | None:
        """The last write of a reconcile with no operation in flight (a slot it held is handed on)."""
        if "operation" not in ctx.status:
            self.slots.settle(ctx.key)
        await self.write(ctx, verdict)
        return requeue

    async def write(self, ctx: Ctx, verdict: Verdict) -> None:
        ctx.status["phase"] = verdict.phase
        ctx.status["observedGeneration"] = ctx.generation
        replication = statuses.replication_health(ctx.observation)
        allowed: statuses.StatusTriple
        if isinstance(ctx.status.get("operation"), Mapping):
            allowed = (
                "False",
                "OperationInProgress",
                f"operation {ctx.status['operation'].get('id')} is in flight",
            )
        elif verdict.stalled is not None and ctx.plan is None:
            allowed = ("False", *verdict.stalled)
        else:
            allowed = statuses.switchover_allowed(ctx.plan, ctx.observation)
        ctx.status["conditions"] = [
            c.model_dump(by_alias=True, exclude_none=True, mode="json")
            for c in statuses.conditions_for(
                generation=ctx.generation,
                now=ctx.now,
                previous=parse_list(Condition, ctx.old_status.get("conditions")),
                ready=verdict.ready,
                reconciling=verdict.reconciling,
                stalled=verdict.stalled,
                replication_healthy=replication,
                switchover_allowed=allowed,
                drifted=_drifted(ctx.status.get("drift")),
            )
        ]
        self._report(ctx, verdict, replication)
        patch = merge_patch(ctx.old_status, ctx.status)
        if not patch:
            return
        updated = await self.kube.patch_status(ctx.namespace, ctx.name, ctx.resource_version, patch)
        if self.on_written is not None:
            self.on_written(ctx.resource_version, updated)
        # Later writes in this same reconcile build on what we just wrote.
        ctx.resource_version = updated.get("metadata", {}).get("resourceVersion", ctx.resource_version)
        ctx.old_status = dict(updated.get("status") or ctx.status)
        ctx.status = dict(ctx.old_status)

    def _report(self, ctx: Ctx, verdict: Verdict, replication: statuses.StatusTriple) -> None:
        blocked = verdict.stalled[0] if verdict.stalled else None
        if blocked is None and ctx.plan is not None and ctx.plan.blockers and "operation" not in ctx.status:
            blocked = ctx.plan.blockers[0].reason
        healthy = {"True": True, "False": False}.get(replication[0])
        self.metrics.set_group_state(ctx.namespace, ctx.name, verdict.phase, blocked, healthy)
        self.metrics.operations_in_flight(self.slots.in_use)

    async def event(self, ctx: Ctx, type_: str, reason: str, message: str) -> None:
        logger.info("%s: %s", reason, message, extra=log_context(ctx))
        await self.kube.post_event(ctx.body, type_, reason, message)

    def resync(self) -> float:
        """When an idle resource looks again: the resync interval, jittered so a thousand do not align."""
        return self.settings.resync_interval * (1 + self.settings.resync_jitter * self.rng.random())


def _drifted(drift: Any) -> statuses.ReasonMessage | None:
    """The ``Drifted`` condition for ``status.drift``, naming the AZ the cloud reports."""
    if not isinstance(drift, Mapping):
        return None
    if drift.get("policy") == "Report":
        return (
            "ExternalChange",
            f"the cloud's primary moved from {drift.get('from')} to {drift.get('to')} without an operation of "
            f"azswitch (seen {drift.get('detectedAt')}); held there by spec.drift: Report (drift "
            f"{drift.get('id')})",
        )
    return (
        "ExternalChange",
        f"the cloud's primary moved from {drift.get('from')} to {drift.get('to')} without an operation of "
        f"azswitch (seen {drift.get('detectedAt')}); spec.drift: Correct moves it back",
    )
