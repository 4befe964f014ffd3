"""The orchestrator: observe the cloud, plan, execute at most one step, record. No kopf here.

``Reconciler.reconcile(body)`` is level-based and idempotent: it looks only at the resource as it is now
(spec, annotations, status) and the cloud as it is now, does at most one mutating call, writes the truth to
status, and returns when it wants to be called again. It checks what needs no cloud call (spec, suspend,
a rival resource, an immutable field, credentials, the endpoint), reads the group (``reading``), and hands
over to ``starting`` (no operation in flight) or ``following`` (one is). Everything that must survive a crash
is in status:

* ``status.operation`` is the **intent journal** (``journal``): written and acknowledged by the apiserver
  *before* the request is sent — with the resourceVersion, so a stale read cannot send twice — and moved to
  ``InProgress`` once the cloud accepts. A reconcile that finds an operation never re-sends it: it observes.
* A finished operation goes to ``lastOperation`` and ``history``; a Failed or TimedOut one stops all action
  on that generation until the spec changes or a person asks for a retry (annotation ``azswitch.io/retry``
  set to the operation id), so a timeout can never turn into a second request on its own.

Errors map to outcomes in one place each: Kubernetes API errors here, cloud read errors in
``Reader.failed``, cloud send errors in ``Starter._send_failed``. Transient → Ready Unknown, Reconciling,
retry with backoff; permanent and invalid input → Stalled with a reason that says what to fix.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from azswitch.errors import CloudError, ConfigError
from azswitch.kube import KubeAPI, KubeConflict, KubeForbidden, KubeGone, KubeUnavailable
from azswitch.metrics import Metrics
from azswitch.models import ReplicationGroupSpec, spec_errors
from azswitch.reconcile.claims import rival
from azswitch.reconcile.context import (
    ANNOTATION_HOLD,
    CloudFactory,
    Ctx,
    DrainLookup,
    Verdict,
    iso,
    log_context,
    parse_time,
)
from azswitch.reconcile.credentials import CredentialStore
from azswitch.reconcile.following import Follower
from azswitch.reconcile.journal import Journal
from azswitch.reconcile.listing import GroupCache
from azswitch.reconcile.reading import Reader, following_a_job
from azswitch.reconcile.recording import Recorder
from azswitch.reconcile.slots import OperationSlots
from azswitch.reconcile.starting import Starter
from azswitch.settings import Settings, mask_userinfo, resolve_endpoint

logger = logging.getLogger("azswitch.reconcile")


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        kube: KubeAPI,
        clouds: CloudFactory,
        slots: OperationSlots,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        on_written: Callable[[str | None, Mapping[str, Any]], None] | None = None,
        cache: GroupCache | None = None,
        claimants: Callable[[str], Iterable[Mapping[str, Any]]] | None = None,
        metrics: Metrics | None = None,
        drains: DrainLookup | None = None,
    ) -> None:
        self.settings = settings
        self.clouds = clouds
        self.slots = slots
        self.clock = clock
        self.rng = rng or random.Random()
        self.cache = cache or GroupCache()
        # Every resource naming a cloud group (from the watch), to keep two of them from both acting.
        self.claimants = claimants
        self.metrics = metrics or Metrics()
        self.credentials = CredentialStore(kube, settings.credentials_ttl, clock)
        self.recorder = Recorder(settings, kube, slots, self.metrics, self.rng)
        self.recorder.on_written = on_written
        self.reader = Reader(settings, self.cache, self.recorder, self.credentials, self.rng)
        self.journal = Journal(self.recorder, self.reader, slots, self.metrics)
        self.starter = Starter(settings, self.recorder, self.reader, self.journal, slots, clock, drains)
        self.follower = Follower(settings, self.recorder, self.reader, self.journal, self.starter, slots)

    @property
    def on_written(self) -> Callable[[str | None, Mapping[str, Any]], None] | None:
        """Told about every status write we make (the work queue uses it to skip our own echoes)."""
        return self.recorder.on_written

    @on_written.setter
    def on_written(self, hook: Callable[[str | None, Mapping[str, Any]], None] | None) -> None:
        self.recorder.on_written = hook

    # ------------------------------------------------------------------ entry point

    async def reconcile(self, body: Mapping[str, Any]) -> float | None:
        """Reconcile one resource; return seconds until it wants to run again (None: only on change)."""
        ctx = Ctx.of(body, self.clock())
        try:
            return await self._reconcile(ctx)
        except KubeConflict:
            # Someone (maybe us, a moment ago) changed the resource: decide again on the fresh copy.
            logger.info("status write conflicted; re-reading", extra=log_context(ctx))
            self._release_unless_journaled(ctx)
            return 0.0
        except KubeGone:
            self.slots.forget(ctx.key)
            return None
        except KubeForbidden as exc:
            self._release_unless_journaled(ctx)
            logger.warning("%s", exc, extra=log_context(ctx))
            # Say it where people look, if the status itself may still be written.
            with contextlib.suppress(KubeConflict, KubeGone, KubeUnavailable, KubeForbidden):
                await self.recorder.stall(Ctx.of(body, self.clock()), "KubernetesForbidden", str(exc))
            return 15.0 + 15.0 * self.rng.random()
        except KubeUnavailable as exc:
            # Nothing was decided on a write that did not land: the journal makes the next attempt safe.
            self._release_unless_journaled(ctx)
            delay = 1.0 + 4.0 * self.rng.random()
            logger.warning("%s; retrying in %.1fs", exc, delay, extra=log_context(ctx))
            return delay

    def _release_unless_journaled(self, ctx: Ctx) -> None:
        """A slot taken for an operation whose journal entry never landed is free again."""
        if not isinstance(ctx.old_status.get("operation"), Mapping):
            self.slots.release(ctx.key)

    def forget(self, namespace: str, name: str) -> None:
        """The resource was deleted: free its slot (the cloud group is never touched)."""
        self.slots.forget(f"{namespace}/{name}")
        self.reader.forget(f"{namespace}/{name}")
        self.metrics.forget_group(namespace, name)
        self.metrics.operations_in_flight(self.slots.in_use)

    def invalidate_credentials(self, namespace: str, secret_name: str | None = None) -> None:
        """A Secret changed: the next reconcile reads it again."""
        self.credentials.invalidate(namespace, secret_name)

    async def _held(self, ctx: Ctx, holder: str) -> float | None:
        """The annotation ``azswitch.io/hold`` (a break-glass ``azswitch apply --force``, or a person) stops
        every cloud call, as ``spec.suspend`` does, without touching the spec; status says who and since when."""
        previous = ctx.old_status.get("hold") if isinstance(ctx.old_status.get("hold"), Mapping) else None
        since = (
            parse_time(previous.get("since")) if previous and previous.get("by") == holder else None
        ) or ctx.now
        ctx.status["hold"] = {"by": holder, "since": iso(since)}
        ctx.status["phase"] = "Suspended"
        message = (
            f"held by {holder} since {iso(since)} (annotation {ANNOTATION_HOLD}): no cloud calls are made; "
            f"the hold ends when the annotation is removed (kubectl annotate rg {ctx.name} -n {ctx.namespace} "
            f"{ANNOTATION_HOLD}-)"
        )
        if previous is None or previous.get("by") != holder:
            await self.recorder.event(ctx, "Normal", "Held", message)
        return await self.recorder.finish(ctx, Verdict("Suspended", ("False", "Held", message)), requeue=None)

    async def _released(self, ctx: Ctx) -> None:
        """The hold ended: say so (status.hold goes with the next write), and look at the group itself — the
        hold was likely there because someone else was changing it."""
        previous = ctx.status.pop("hold")
        ctx.read_fresh = True
        await self.recorder.event(
            ctx,
            "Normal",
            "HoldReleased",
            f"the hold by {previous.get('by')} ended; the operator observes the group again",
        )

    async def _reconcile(self, ctx: Ctx) -> float | None:
        stall = self.recorder.stall
        try:
            spec = ReplicationGroupSpec.model_validate(ctx.body.get("spec") or {})
        except ValidationError as exc:
            return await stall(ctx, "InvalidSpec", spec_errors(exc))

        if spec.suspend:
            ctx.status["phase"] = "Suspended"
            return await self.recorder.finish(
                ctx,
                Verdict("Suspended", ("False", "Suspended", "spec.suspend is true: no cloud calls are made")),
                requeue=None,
            )

        holder = (ctx.annotations.get(ANNOTATION_HOLD) or "").strip()
        if holder:
            return await self._held(ctx, holder)
        if isinstance(ctx.old_status.get("hold"), Mapping):
            await self._released(ctx)

        owner = rival(ctx.key, spec, self.claimants(spec.group_id)) if self.claimants else None
        if owner is not None:
            return await stall(
                ctx,
                "DuplicateGroup",
                f"cloud group {spec.group_id} is also managed by ReplicationGroup {owner}, which owns it "
                "(it was created first, or has an operation in flight); this resource does nothing. "
                "fix: delete one of the two resources",
            )

        recorded_group = ctx.old_status.get("groupID")
        if recorded_group and recorded_group != spec.group_id:
            return await stall(
                ctx,
                "GroupIDChanged",
                f"spec.groupID is immutable: it was {recorded_group!r} and is now {spec.group_id!r}; "
                "fix: restore the old value, or delete this resource and create a new one",
            )
        service = spec.cloud.service
        recorded_service = ctx.old_status.get("service")
        if recorded_group and recorded_service and recorded_service != service:
            return await stall(
                ctx,
                "ServiceChanged",
                f"spec.cloud.service is immutable: it was {recorded_service!r} and is now {service!r}; "
                "fix: restore the old value, or delete this resource and create a new one",
            )

        credentials = await self.credentials.read(ctx.namespace, spec.cloud.credentials_secret_ref.name)
        if isinstance(credentials, str):
            return await stall(ctx, "CredentialsNotFound", credentials)
        try:
            endpoint = resolve_endpoint(self.settings, spec.cloud.region, spec.cloud.endpoint, service)
            cloud = self.clouds.client(service, endpoint, spec.cloud.project_id, credentials)
        except ConfigError as exc:
            return await stall(ctx, "InvalidEndpoint", mask_userinfo(str(exc)))

        # The service too: one endpoint may serve both APIs (a proxy, the simulator), and an EVS LIST says
        # nothing about SDRS groups.
        ctx.listing_key = (service, endpoint, spec.cloud.project_id, credentials.access_key)
        operation = ctx.old_status.get("operation")
        in_flight = isinstance(operation, Mapping)
        # An operation followed through its job polls the job, not the group: it does not count towards
        # the groups the shared listing polls.
        self.reader.track(ctx, in_flight=in_flight and not following_a_job(operation))  # type: ignore[arg-type]
        try:
            observation = await self.reader.observe(ctx, spec, cloud)
        except CloudError as exc:
            return await self.reader.failed(ctx, spec, exc)

        if in_flight:
            return await self.follower.advance(ctx, spec, cloud, observation)
        return await self.starter.plan_and_act(ctx, spec, cloud, observation)
