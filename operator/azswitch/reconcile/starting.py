"""Starting an operation: plan on what was observed, pass the gates, take a slot, journal, send.

``Starter.plan_and_act`` is where a resource with no operation in flight ends up: it runs the pure planner,
reports every blocker (with an event when the blockers change), and, when nothing blocks, takes an operation
slot, re-reads the group with its own GET if the plan was made on the shared listing, writes the intent and
only then sends the request. What a failed send means — withdrawn (it never reached the backend), unknown
(observe before deciding), or failed — is decided in ``_send_failed`` and nowhere else.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from azswitch import drains as draining
from azswitch import plan as planning
from azswitch import status as statuses
from azswitch.cloud.api import CloudAPI, OperationHandle
from azswitch.errors import CloudAuthError, CloudError, CloudThrottled, CloudUnavailable, OutcomeUnknown
from azswitch.models import DriftStatus, FinishedOperation, ReplicationGroupSpec
from azswitch.observation import GroupState, GroupView
from azswitch.reconcile.context import (
    ANNOTATION_APPROVE,
    ANNOTATION_APPROVE_DRAIN,
    ANNOTATION_CORRECT_DRIFT,
    ANNOTATION_RETRY,
    Ctx,
    DrainLookup,
    Verdict,
    iso,
    parse_list,
    parse_time,
)
from azswitch.reconcile.journal import Journal
from azswitch.reconcile.reading import Reader
from azswitch.reconcile.recording import Recorder
from azswitch.reconcile.slots import OperationSlots
from azswitch.settings import Settings


class Starter:
    def __init__(
        self,
        settings: Settings,
        recorder: Recorder,
        reader: Reader,
        journal: Journal,
        slots: OperationSlots,
        clock: Callable[[], datetime],
        drains: DrainLookup | None = None,
    ) -> None:
        self.settings = settings
        self.drains = drains
        self.recorder = recorder
        self.reader = reader
        self.journal = journal
        self.slots = slots
        self.clock = clock

    async def plan_and_act(
        self,
        ctx: Ctx,
        spec: ReplicationGroupSpec,
        cloud: CloudAPI[Any],
        observation: GroupView,
    ) -> float | None:
        """Plan and, if allowed, start. An observation from the shared listing (``ctx.seen_age`` set) is
        re-read with a GET before anything is sent."""
        if ctx.seen_age is not None and _unexplained_change(ctx, observation) is not None:
            # A drift is recorded (and may be corrected) only on the group's own read, never on a listing.
            try:
                observation = await self.reader.read_fresh(ctx, cloud, spec.group_id, observation)
            except CloudError as exc:
                return await self.reader.failed(ctx, spec, exc)
        drift = await self._drift(ctx, spec, observation)
        last = ctx.old_status.get("lastOperation")
        if isinstance(last, Mapping) and self._failure_holds(ctx, last):
            reason = "OperationTimedOut" if last.get("result") == "TimedOut" else "OperationFailed"
            return await self.recorder.stall(
                ctx,
                reason,
                f"{last.get('action')} {last.get('id')} ended {last.get('result')}: {last.get('message', '')}; "
                f"nothing more is sent for generation {ctx.generation}. fix: check the cloud group, then change "
                f"the spec or annotate: kubectl annotate rg {ctx.name} {ANNOTATION_RETRY}={last.get('id')}",
                keep_plan=False,
            )

        last_finished = parse_time(last.get("finishedAt")) if isinstance(last, Mapping) else None
        hold = await self._hold(ctx, spec, observation)
        plan = planning.plan(
            planning.PlanInput(
                spec=spec,
                observation=observation,
                generation=ctx.generation,
                now=ctx.now,
                approved_generation=planning.parse_approval(ctx.annotations.get(ANNOTATION_APPROVE)),
                last_finished_at=last_finished,
                capacity_available=self.slots.available(ctx.key),
                name=ctx.name,
                namespace=ctx.namespace,
                hold=hold,
                approved_drain=ctx.annotations.get(ANNOTATION_APPROVE_DRAIN),
                drift=drift,
                approved_drift=ctx.annotations.get(ANNOTATION_CORRECT_DRIFT),
            )
        )
        ctx.plan = plan
        ctx.status["plan"] = statuses.plan_status(plan).dump()

        if plan.action is planning.Action.NONE and not plan.blockers:
            # The group is where it should be (someone moved it there, or Git followed): nothing to hold.
            ctx.status.pop("drift", None)
            return await self.recorder.finish(
                ctx,
                Verdict("Ready", ("True", "InSync", plan.message or f"primary is {observation.primary_az}")),
                requeue=self.recorder.resync(),
            )
        if not plan.executable:
            if any(b.reason == "ConcurrencyLimit" for b in plan.blockers):
                self.slots.wait(ctx.key)
            return await self._blocked(ctx, plan)
        # The slot is taken before the fresh read, so that when many groups plan at once (an evacuation)
        # only as many read the cloud as can start; a slot not used is given back by _finish (settle).
        decided = self.reader.cache.mark()
        if not self.slots.try_acquire(ctx.key):
            # The cap filled between planning and here; the controller wakes us when a slot frees.
            return await self.recorder.finish(
                ctx,
                Verdict("Pending", ("False", "ConcurrencyLimit", "waiting for a free operation slot")),
                requeue=self.recorder.resync(),
            )
        if ctx.seen_age is not None:
            try:
                observation = await self.reader.read_for_send(ctx, cloud, spec.group_id, observation, decided)
            except CloudError as exc:
                return await self.reader.failed(ctx, spec, exc)
            return await self.plan_and_act(ctx, spec, cloud, observation)
        return await self.start(ctx, spec, cloud, plan, attempts=1, operation_id=str(uuid.uuid4()))

    async def _hold(
        self, ctx: Ctx, spec: ReplicationGroupSpec, observation: GroupView
    ) -> draining.Hold | None:
        """The ZoneDrain holding the group away from its spec, recorded in status (effectivePrimaryAZ,
        drainedBy) whether or not anything can move now."""
        selecting = await self.drains(ctx.namespace, ctx.labels) if self.drains is not None else ()
        hold = draining.hold_for(spec.primary_az, observation.availability_zones, selecting, ctx.now)
        if hold is None:
            ctx.status["effectivePrimaryAZ"] = spec.primary_az
            ctx.status.pop("drainedBy", None)
        else:
            ctx.status["effectivePrimaryAZ"] = hold.target or observation.primary_az or spec.primary_az
            ctx.status["drainedBy"] = hold.drain
        return hold

    async def _drift(
        self, ctx: Ctx, spec: ReplicationGroupSpec, observation: GroupView
    ) -> planning.Drift | None:
        """Record a change of the primary that no operation of ours explains — an event ``DriftDetected`` and
        a history entry of kind External, written before anything is corrected (design.md §3.3) — and return
        the drift still standing (``status.drift``) for the planner."""
        after = observation.primary_az
        change = _unexplained_change(ctx, observation)
        if change is not None and ctx.drift_recorded != change:
            before, after = ctx.drift_recorded = change
            stamp = ctx.now.strftime("%Y%m%dT%H%M%SZ")
            record = DriftStatus.model_validate(
                {
                    "id": stamp,
                    "from": before,
                    "to": after,
                    "detectedAt": iso(ctx.now),
                    "generation": ctx.generation,
                    "policy": spec.drift,
                }
            )
            ctx.status["drift"] = record.dump()
            then = (
                f"moving it back to {ctx.status.get('effectivePrimaryAZ') or spec.primary_az} as soon as the "
                "gates allow (spec.drift: Correct)"
                if spec.drift == "Correct"
                else "it stays there (spec.drift: Report)"
            )
            message = (
                f"the cloud's primary moved from {before} to {after} without an operation of azswitch "
                f"(seen {iso(ctx.now)}); {then}"
            )
            external = FinishedOperation.model_validate(
                {
                    "id": f"external-{stamp}",
                    "kind": "External",
                    "action": "Failover" if observation.state is GroupState.FAILED_OVER else "Switchover",
                    "from": before,
                    "to": after,
                    "result": "Observed",
                    "startedAt": iso(ctx.now),
                    "finishedAt": iso(ctx.now),
                    "generation": ctx.generation,
                    "message": message,
                }
            )
            history = parse_list(FinishedOperation, ctx.status.get("history"))
            ctx.status["history"] = [h.dump() for h in statuses.append_history(history, external)]
            await self.recorder.event(ctx, "Warning", "DriftDetected", message)
        standing = next(iter(parse_list(DriftStatus, [ctx.status.get("drift")])), None)
        if standing is None or standing.target != after or standing.generation != ctx.generation:
            # Moved again, or a new spec decides: the recorded drift no longer stands.
            ctx.status.pop("drift", None)
            return None
        return planning.Drift(standing.id, standing.source, standing.target, standing.generation)

    def _failure_holds(self, ctx: Ctx, last: Mapping[str, Any]) -> bool:
        if last.get("result") not in ("Failed", "TimedOut", "Abandoned"):
            return False
        if last.get("generation") != ctx.generation:
            return False
        return ctx.annotations.get(ANNOTATION_RETRY) != str(last.get("id"))

    async def _blocked(self, ctx: Ctx, plan: planning.Plan) -> float | None:
        first = plan.blockers[0]
        kinds = {b.kind for b in plan.blockers}
        message = "; ".join(b.message for b in plan.blockers)
        if kinds & {planning.BlockKind.STALLED, planning.BlockKind.BLOCKED}:
            verdict = Verdict(
                planning.phase_for(plan), ("False", first.reason, message), stalled=(first.reason, message)
            )
            requeue: float | None = self.recorder.resync()
        elif planning.BlockKind.HOLD in kinds and planning.BlockKind.WAIT not in kinds:
            verdict = Verdict(planning.phase_for(plan), ("False", first.reason, message))
            requeue = self.recorder.resync()
        else:
            verdict = Verdict(
                planning.phase_for(plan),
                ("False", first.reason, message),
                reconciling=(first.reason, message),
            )
            retry_at = min((b.retry_at for b in plan.blockers if b.retry_at), default=None)
            if retry_at:
                requeue = max(0.0, (retry_at - ctx.now).total_seconds()) + 0.05
            elif all(
                b.reason == "ConcurrencyLimit" for b in plan.blockers if b.kind is planning.BlockKind.WAIT
            ):
                # Woken by the slot that frees (OperationSlots.on_release); the resync is only a safety net.
                requeue = self.recorder.resync()
            else:
                requeue = max(self.settings.poll_max_interval, 5.0)
        previous = ctx.old_status.get("plan") if isinstance(ctx.old_status.get("plan"), Mapping) else {}
        old_blockers = (previous or {}).get("blockers")
        previous_reasons = [
            b.get("reason")
            for b in (old_blockers if isinstance(old_blockers, list) else [])
            if isinstance(b, Mapping)
        ]
        if plan.action is not planning.Action.NONE and previous_reasons != [b.reason for b in plan.blockers]:
            await self.recorder.event(
                ctx, "Warning" if verdict.stalled else "Normal", f"{plan.action}Blocked", message
            )
        return await self.recorder.finish(ctx, verdict, requeue=requeue)

    async def start(
        self,
        ctx: Ctx,
        spec: ReplicationGroupSpec,
        cloud: CloudAPI[Any],
        plan: planning.Plan,
        *,
        attempts: int,
        operation_id: str,
        first_requested_at: str | None = None,
    ) -> float | None:
        action = plan.action
        # A drift being corrected is over once the correction is journaled (its history entry stays).
        ctx.status.pop("drift", None)
        # The journal entry must be durable before the request exists: this write raises on conflict.
        await self.journal.intend(
            ctx,
            plan,
            attempts=attempts,
            operation_id=operation_id,
            first_requested_at=first_requested_at,
            now=ctx.now,
        )

        failure: CloudError | None = None
        handle: OperationHandle | None = None
        try:
            handle = await self._send(cloud, action, spec.group_id, plan.target)
        except CloudError as exc:
            failure = exc
        # The Event comes after the request (still before its outcome's), so that in an evacuation the next
        # group's start never waits on an informational write.
        drained_by = ctx.status.get("drainedBy")
        why = f" (held away from {plan.source} by ZoneDrain {drained_by})" if drained_by else ""
        if attempts == 1:
            await self.recorder.event(
                ctx,
                "Normal",
                f"{action}Started",
                f"{action} {operation_id}: {plan.source} → {plan.target}{why}",
            )
        else:
            await self.recorder.event(
                ctx, "Warning", "RequestResent", f"{action} {operation_id}: attempt {attempts} (earlier lost)"
            )
        if failure is not None:
            return await self._send_failed(ctx, spec, failure)

        # The handle (SDRS: a job id) goes into the journal in the same write that marks it InProgress.
        accepted: dict[str, Any] = {"state": "InProgress", "acceptedAt": iso(self.clock())}
        if handle is not None:
            accepted["cloudJobID"] = handle.job_id
        ctx.status["operation"] = {**ctx.status["operation"], **accepted}
        await self.recorder.write(ctx, self.journal.moving(ctx))
        return self.settings.poll_interval

    @staticmethod
    async def _send(
        cloud: CloudAPI[Any], action: planning.Action, group_id: str, target: str | None
    ) -> OperationHandle | None:
        if action is planning.Action.SWITCHOVER and target is not None:
            return await cloud.start_switchover(group_id, target)
        if action is planning.Action.FAILOVER and target is not None:
            return await cloud.start_failover(group_id, target)
        if action is planning.Action.REPROTECT:
            return await cloud.start_reprotect(group_id)
        raise AssertionError(f"no request for {action} to {target!r}")

    async def _send_failed(self, ctx: Ctx, spec: ReplicationGroupSpec, exc: CloudError) -> float | None:
        """What a failed send means for the journaled operation."""
        if isinstance(exc, (CloudThrottled, CloudUnavailable)) and (
            isinstance(exc, CloudThrottled) or exc.status is None
        ):
            # Refused before it reached the backend: nothing happened, so the intent can be withdrawn.
            return await self._withdraw(ctx, exc)
        if isinstance(exc, (CloudUnavailable, OutcomeUnknown)):
            return await self._unknown(ctx, exc)
        if isinstance(exc, CloudAuthError):
            self.reader.credentials.invalidate(ctx.namespace, spec.cloud.credentials_secret_ref.name)
            return await self.journal.end(ctx, "Failed", f"the cloud refused the credentials: {exc}")
        return await self.journal.end(ctx, "Failed", f"the cloud rejected the request: {exc}")

    async def _withdraw(self, ctx: Ctx, exc: CloudError) -> float | None:
        operation = ctx.status.pop("operation", {})
        self.slots.release(ctx.key)
        self.reader.track(ctx, in_flight=False)
        delay = self.reader.retry_delay(exc)
        await self.recorder.event(
            ctx,
            "Warning",
            "RequestDeferred",
            f"{operation.get('action')} not sent: {exc}; retrying in {delay:.0f}s",
        )
        return await self.recorder.finish(
            ctx,
            Verdict(
                "Pending", ("False", "CloudUnavailable", str(exc)), reconciling=("CloudUnavailable", str(exc))
            ),
            requeue=delay,
        )

    async def _unknown(self, ctx: Ctx, exc: CloudError) -> float | None:
        # Never re-send here: the request may be running. Observe until the grace period says otherwise.
        ctx.status["operation"] = {
            **ctx.status["operation"],
            "message": f"outcome unknown ({exc}); observing the group before deciding",
        }
        await self.recorder.event(ctx, "Warning", "OutcomeUnknown", f"{ctx.status['operation']['id']}: {exc}")
        await self.recorder.write(ctx, self.journal.moving(ctx))
        return self.settings.poll_interval


def _unexplained_change(ctx: Ctx, observation: GroupView) -> tuple[str, str] | None:
    """(before, after) when the primary the cloud reports is not the one status last recorded, and no
    operation of ours explains it."""
    before, after = ctx.old_status.get("currentPrimaryAZ"), observation.primary_az
    if not isinstance(before, str) or not after or before == after:
        return None
    return None if _explained(ctx.old_status, before, after) else (before, after)


def _explained(status: Mapping[str, Any], before: str, after: str) -> bool:
    """Whether our own last operation explains the change: it ended (Failed, TimedOut) before the cloud
    finished the move it asked for, so status still showed its source — and nothing was recorded since."""
    last = status.get("lastOperation")
    if not isinstance(last, Mapping) or last.get("result") == "Succeeded":
        return False
    history = status.get("history")
    newest = history[0] if isinstance(history, list) and history else None
    if isinstance(newest, Mapping) and newest.get("id") != last.get("id"):
        return False
    return last.get("from") == before and last.get("to") == after
