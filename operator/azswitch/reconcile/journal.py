"""The intent journal, ``status.operation``: writing an intent before its request, and closing it.

A switchover request is not idempotent (a second EVS reverse swaps the AZs back), so the operation is
recorded — with the resourceVersion, acknowledged by the apiserver — *before* it is sent, and a reconcile
that finds it never sends it again on its own: it observes. ``Journal.intend`` is that first write,
``Journal.end`` moves a finished operation to ``lastOperation`` and ``history``, posts its event and frees its
slot; ``Journal.moving`` is the verdict of a resource with an operation in flight.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from azswitch import plan as planning
from azswitch import status as statuses
from azswitch.metrics import Metrics
from azswitch.models import FinishedOperation
from azswitch.reconcile.context import ACTION_PHASE, Ctx, Verdict, iso, parse_list, parse_time
from azswitch.reconcile.reading import Reader
from azswitch.reconcile.recording import Recorder
from azswitch.reconcile.slots import OperationSlots


class Journal:
    def __init__(self, recorder: Recorder, reader: Reader, slots: OperationSlots, metrics: Metrics) -> None:
        self.recorder = recorder
        self.reader = reader
        self.slots = slots
        self.metrics = metrics

    async def intend(
        self,
        ctx: Ctx,
        plan: planning.Plan,
        *,
        attempts: int,
        operation_id: str,
        first_requested_at: str | None,
        now: datetime,
    ) -> None:
        """Write the intent (state Requested). Raises ``KubeConflict`` if the resource changed since it was
        read, and then nothing may be sent."""
        action = plan.action
        operation: dict[str, Any] = {
            "id": operation_id,
            "action": str(action),
            "from": plan.source,
            "to": plan.target,
            "state": "Requested",
            "requestedAt": iso(now),
            "startedAt": first_requested_at or iso(now),
            "attempts": attempts,
            "generation": ctx.generation,
        }
        ctx.status["operation"] = {k: v for k, v in operation.items() if v is not None}
        ctx.status["phase"] = ACTION_PHASE[action]
        await self.recorder.write(
            ctx,
            Verdict(
                ACTION_PHASE[action],
                ("False", ACTION_PHASE[action], f"{action} to {plan.target} requested"),
                reconciling=(ACTION_PHASE[action], f"{action} {operation_id} requested"),
            ),
        )
        self.reader.track(ctx, in_flight=True)

    def moving(self, ctx: Ctx) -> Verdict:
        operation = ctx.status["operation"]
        phase = ACTION_PHASE.get(planning.Action(operation["action"]), "Pending")
        ctx.status["phase"] = phase
        message = operation.get("message") or (
            f"{operation['action']} {operation['id']} {operation['state']}: {operation.get('from')} → "
            f"{operation.get('to')} (attempt {operation.get('attempts', 1)})"
        )
        return Verdict(phase, ("False", phase, message), reconciling=(phase, message))

    async def end(self, ctx: Ctx, result: str, message: str) -> float | None:
        """Close the operation in status (history, lastOperation), post its event, free its slot."""
        operation = dict(ctx.status.pop("operation", None) or ctx.old_status.get("operation") or {})
        started = parse_time(operation.get("startedAt")) or ctx.now
        finished = {
            "id": operation.get("id"),
            "action": operation.get("action"),
            "from": operation.get("from"),
            "to": operation.get("to"),
            "result": result,
            "startedAt": iso(started),
            "finishedAt": iso(ctx.now),
            "durationSeconds": round((ctx.now - started).total_seconds(), 3),
            "attempts": operation.get("attempts", 1),
            "generation": operation.get("generation", ctx.generation),
            "message": message,
        }
        record = FinishedOperation.model_validate({k: v for k, v in finished.items() if v is not None})
        ctx.status["lastOperation"] = record.dump()
        history = parse_list(FinishedOperation, ctx.old_status.get("history"))
        ctx.status["history"] = [h.dump() for h in statuses.append_history(history, record)]
        ctx.status.pop("plan", None)
        ctx.status.pop("pendingGeneration", None)
        action = operation.get("action", "Operation")
        reason = {"Succeeded": "Succeeded", "Failed": "Failed", "TimedOut": "TimedOut"}.get(result, result)
        if result == "Succeeded":
            ctx.status["phase"] = "Ready"
            verdict = Verdict("Ready", ("True", f"{action}Succeeded", message))
        else:
            ctx.status["phase"] = "Failed"
            verdict = Verdict(
                "Failed", ("False", f"{action}{reason}", message), stalled=(f"{action}{reason}", message)
            )
        # The cloud is done with it, so the slot goes to the next in line now, not after our write: in an
        # evacuation the next group's start then overlaps this write. Should the write fail, the journal
        # still shows the operation, and the next reconcile adopts the slot again until it has written this.
        self.slots.release(ctx.key)
        self.reader.track(ctx, in_flight=False)
        self.reader.ended(ctx)
        await self.recorder.write(ctx, verdict)
        self.metrics.operations_in_flight(self.slots.in_use)
        self.metrics.operation_finished(str(action), result, float(finished["durationSeconds"] or 0.0))
        await self.recorder.event(
            ctx,
            "Normal" if result == "Succeeded" else "Warning",
            f"{action}{reason}",
            f"{action} {operation.get('id')}: {message}",
        )
        # Re-plan right away: a queued spec change or a reprotect may follow.
        return 0.0 if result == "Succeeded" else self.recorder.resync()
