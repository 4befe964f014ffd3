"""Following an operation in flight: observe, and decide whether it finished, failed, runs, or was lost.

``Follower.advance`` runs on every reconcile of a resource whose journal (``status.operation``) names an
operation. It never sends anything on its own account: it watches the cloud until the operation ends
(Succeeded, Failed, TimedOut), and only when the group shows no sign of the change for
``lost_request_grace`` seconds — judged on the group's own fresh GET, never on the shared listing — and is
exactly where the first request found it, is the request counted lost and sent again (``attempts``).
This is also how an operation is resumed after a restart or a change of leader: by observing.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from azswitch import plan as planning
from azswitch.cloud.api import CloudAPI, OperationHandle, OperationProgress, Progress
from azswitch.errors import CloudError, TransientCloudError
from azswitch.models import OperationStatus, ReplicationGroupSpec
from azswitch.observation import GroupState, GroupView, Replication
from azswitch.reconcile.context import Ctx, iso, log_context, parse_time
from azswitch.reconcile.journal import Journal
from azswitch.reconcile.reading import Reader
from azswitch.reconcile.recording import Recorder
from azswitch.reconcile.slots import OperationSlots
from azswitch.reconcile.starting import Starter
from azswitch.settings import Settings

logger = logging.getLogger("azswitch.reconcile")

#: The state a group shows while an operation of this kind runs (reprotect: see ``_visible``).
_RUNNING = {
    planning.Action.SWITCHOVER: GroupState.SWITCHING,
    planning.Action.FAILOVER: GroupState.FAILING_OVER,
    planning.Action.REPROTECT: GroupState.REPROTECTING,
}


class Follower:
    def __init__(
        self,
        settings: Settings,
        recorder: Recorder,
        reader: Reader,
        journal: Journal,
        starter: Starter,
        slots: OperationSlots,
    ) -> None:
        self.settings = settings
        self.recorder = recorder
        self.reader = reader
        self.journal = journal
        self.starter = starter
        self.slots = slots

    async def advance(
        self,
        ctx: Ctx,
        spec: ReplicationGroupSpec,
        cloud: CloudAPI[Any],
        observation: GroupView,
    ) -> float | None:
        """Follow the operation in flight. An observation from the shared listing (``ctx.seen_age`` set) is
        enough to see progress or the end, but the group is read afresh before a request is counted lost
        (and maybe sent again)."""
        try:
            OperationStatus.model_validate(ctx.old_status["operation"])
        except ValidationError as exc:
            # A journal someone else wrote (or mangled): its clocks and ids cannot be trusted, so it is
            # dropped, said out loud, and the group is planned from what the cloud shows right now.
            problems = "; ".join(
                f"status.operation.{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {str(e.get('input'))[:60]!r})"
                for e in exc.errors(include_url=False)
            )
            ctx.status.pop("operation", None)
            await self.recorder.event(
                ctx,
                "Warning",
                "OperationUnreadable",
                f"status.operation could not be read and was dropped ({problems}); planning from the cloud's state",
            )
            return await self.starter.plan_and_act(ctx, spec, cloud, observation)
        operation = dict(ctx.old_status["operation"])
        ctx.status["operation"] = operation
        self.slots.adopt(ctx.key)
        try:
            action = planning.Action(str(operation.get("action")))
        except ValueError:
            return await self.journal.end(
                ctx, "Abandoned", f"unknown action {operation.get('action')!r} in status"
            )
        target = operation.get("to")
        started = parse_time(operation.get("startedAt")) or ctx.now
        requested = parse_time(operation.get("requestedAt")) or started
        accepted = parse_time(operation.get("acceptedAt"))

        job_id = operation.get("cloudJobID")
        job_running = False
        if isinstance(job_id, str) and job_id and not self._done(action, target, observation):
            handled, delay = await self._follow_job(ctx, spec, cloud, observation, action, job_id)
            if handled:
                return delay
            job_running = True
        if observation.state is GroupState.ERROR:
            detail = observation.cloud.failure_detail or "no failure_detail"
            return await self.journal.end(
                ctx, "Failed", f"the cloud group went to {observation.cloud.status} ({detail})"
            )
        # How far into the operation the view is (a view from the listing is seen_age old).
        into = ctx.now - started - timedelta(seconds=ctx.seen_age or 0.0)
        if self._done(action, target, observation):
            if not job_id:
                self.reader.succeeded(ctx, action, into)
            return await self.journal.end(ctx, "Succeeded", f"primary is {observation.primary_az}")
        self.reader.moving(ctx, into)
        if ctx.now - started > spec.switchover.timeout:
            return await self.journal.end(
                ctx,
                "TimedOut",
                f"not finished after {spec.switchover.timeout}; the group is {observation.cloud.status}/"
                f"{observation.cloud.replication_status}, primary {observation.primary_az}",
            )

        if operation.get("generation") != ctx.generation:
            # Queued, not acted on: the operation in flight finishes first, then the new spec is planned.
            ctx.status["pendingGeneration"] = ctx.generation

        if self._visible(action, target, observation) or job_running:
            if operation.get("state") != "InProgress":
                operation["state"] = "InProgress"
                operation.setdefault("acceptedAt", iso(ctx.now))
            await self.recorder.write(ctx, self.journal.moving(ctx))
            # A running job was read just now, whatever the age of the group's view.
            return self.reader.poll_delay(ctx.now - started) if job_running else self._next_poll(ctx, started)

        # No sign of the change yet. Within the grace period that is normal (the cloud takes ~10 s to react).
        since = accepted or requested
        waited = (ctx.now - since).total_seconds()
        if waited < self.settings.lost_request_grace:
            await self.recorder.write(ctx, self.journal.moving(ctx))
            return min(self._next_poll(ctx, started), self.settings.lost_request_grace - waited + 0.05)
        if ctx.seen_age is not None:
            # About to count the request lost: that is decided on the group's own fresh read.
            try:
                observation = await self.reader.read_fresh(ctx, cloud, spec.group_id, observation)
            except CloudError as exc:
                return await self.reader.failed(ctx, spec, exc)
            return await self.advance(ctx, spec, cloud, observation)

        attempts = int(operation.get("attempts") or 1)
        if attempts >= self.settings.max_request_attempts:
            return await self.journal.end(
                ctx,
                "Failed",
                f"the request was sent {attempts} times and the group never showed the change; "
                "check the group in the cloud console",
            )
        logger.warning(
            "%s shows no effect after %.0fs; counting the request lost",
            action,
            waited,
            extra=log_context(ctx),
        )
        if not self._untouched(action, operation.get("from"), observation):
            # The group is not where the original request found it: re-sending blind would be unsafe.
            return await self.journal.end(
                ctx, "Failed", "request lost and the group changed meanwhile; re-planning"
            )
        plan = planning.Plan(
            action, operation.get("from"), target, "RequestLost", "re-sending a lost request"
        )
        return await self.starter.start(
            ctx,
            spec,
            cloud,
            plan,
            attempts=attempts + 1,
            operation_id=str(operation["id"]),
            first_requested_at=operation.get("startedAt"),
        )

    async def _follow_job(
        self,
        ctx: Ctx,
        spec: ReplicationGroupSpec,
        cloud: CloudAPI[Any],
        observation: GroupView,
        action: planning.Action,
        job_id: str,
    ) -> tuple[bool, float | None]:
        """The cloud gave the operation a job: its word decides success and failure. Returns (True, requeue)
        when this reconcile is done, (False, None) while the job runs. A job means the request arrived, so
        it is never counted lost while the job runs (the timeout still applies)."""
        try:
            progress = await cloud.follow(OperationHandle(job_id))
        except TransientCloudError as exc:
            return True, await self.reader.failed(ctx, spec, exc)
        except CloudError as exc:
            # The job cannot be read (gone, refused): keep following the group itself, never re-send.
            logger.warning("job %s unreadable (%s); following the group", job_id, exc, extra=log_context(ctx))
            progress = OperationProgress(Progress.RUNNING)
        if progress.progress is Progress.FAILED:
            # The message names the group's state after the job, so read it now (a job's group view may be
            # as old as the shared listing); a failed read does not hide the job's verdict.
            with contextlib.suppress(CloudError):
                observation = await self.reader.read_fresh(ctx, cloud, spec.group_id, observation)
            return True, await self.journal.end(
                ctx,
                "Failed",
                f"cloud job {job_id} ended FAIL: {progress.message or 'no reason given'} (the group is "
                f"{observation.cloud.status}, primary {observation.primary_az})",
            )
        if progress.progress is Progress.SUCCEEDED:
            # The group was read before the job: read it again, so its end state is judged after the job's.
            try:
                observation = await self.reader.read_fresh(ctx, cloud, spec.group_id, observation)
            except CloudError as exc:
                return True, await self.reader.failed(ctx, spec, exc)
            target = ctx.status["operation"].get("to")
            if self._done(action, target, observation):
                return True, await self.journal.end(ctx, "Succeeded", f"primary is {observation.primary_az}")
            return True, await self.journal.end(
                ctx,
                "Failed",
                f"cloud job {job_id} ended SUCCESS but the group is {observation.cloud.status}/"
                f"{observation.cloud.replication_status}, primary {observation.primary_az}, not the expected "
                f"end state; check the group in the cloud console",
            )
        return False, None

    @staticmethod
    def _done(action: planning.Action, target: str | None, observation: GroupView) -> bool:
        if observation.in_motion:
            return False
        if action is planning.Action.FAILOVER:
            return observation.state is GroupState.FAILED_OVER and observation.primary_az == target
        return (
            observation.state is GroupState.PROTECTED
            and observation.replication is Replication.ACTIVE
            and observation.primary_az == target
        )

    @staticmethod
    def _visible(action: planning.Action, target: str | None, observation: GroupView) -> bool:
        """Whether the cloud shows this operation running (or its effect), as opposed to nothing at all."""
        if action is planning.Action.REPROTECT:
            # A reprotect may leave the group failed over for a long time while replication resyncs.
            return observation.state is not GroupState.FAILED_OVER or observation.replication not in (
                Replication.UNKNOWN,
                Replication.STOPPED,
            )
        return observation.state is _RUNNING[action] or observation.primary_az == target

    @staticmethod
    def _untouched(action: planning.Action, source: str | None, observation: GroupView) -> bool:
        """Whether the group is exactly where a lost request found it, so that sending it again is safe."""
        if action is planning.Action.REPROTECT:
            return (
                observation.state is GroupState.FAILED_OVER and observation.replication is Replication.STOPPED
            )
        return observation.state is GroupState.PROTECTED and observation.primary_az == source

    def _next_poll(self, ctx: Ctx, started: datetime) -> float:
        """When to look again. A view from the shared listing was already ``seen_age`` old, so come back
        when it is one poll delay old, just as the next LIST is due: the cloud finishing is then seen
        within one poll delay, as with a GET of its own."""
        operation = ctx.status.get("operation") or {}
        delay = self.reader.poll_delay(ctx.now - started, self.reader.expected(ctx, operation.get("action")))
        if not ctx.seen_age:  # the group's own GET (or a listing read this very moment)
            return delay
        return max(0.05, delay - ctx.seen_age + 0.01)
