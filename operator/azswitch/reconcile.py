"""The one orchestrator: observe the cloud, plan, execute at most one step, record. No kopf here.

``Reconciler.reconcile(body)`` is level-based and idempotent: it looks only at the resource as it is now
(spec, annotations, status) and the cloud as it is now, does at most one mutating call, writes the truth to
status, and returns when it wants to be called again. Everything that must survive a crash is in status:

* ``status.operation`` is the **intent journal**. It is written (state ``Requested``) and acknowledged by
  the apiserver *before* the request is sent — with the resourceVersion, so a stale read cannot send twice —
  and moved to ``InProgress`` once the cloud accepts. A reconcile that finds an operation never re-sends
  it: it observes the group, and only when the group shows no sign of the change for
  ``lost_request_grace`` seconds is the request counted as lost and sent again (``attempts`` counts them).
* A finished operation goes to ``lastOperation`` and ``history``; a Failed or TimedOut one stops all action
  on that generation until the spec changes or a person asks for a retry (annotation ``azswitch.io/retry``
  set to the operation id), so a timeout can never turn into a second request on its own.

Errors map to outcomes here and only here: transient cloud errors → Ready=Unknown, Reconciling, retry with
backoff; permanent ones and invalid input → Stalled with a reason that says what to fix.
"""

from __future__ import annotations

import contextlib
import logging
import random
import uuid
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from azswitch import plan as planning
from azswitch import status as statuses
from azswitch.cloud.api import ERROR_STATUSES, TRANSITIONAL_STATUSES, CloudAPI, ConsistencyGroup
from azswitch.errors import (
    CloudAuthError,
    CloudError,
    CloudThrottled,
    CloudUnavailable,
    ConfigError,
    GroupNotFound,
    OutcomeUnknown,
    PermanentCloudError,
    TransientCloudError,
)
from azswitch.kube import KubeAPI, KubeConflict, KubeForbidden, KubeGone, KubeUnavailable, merge_patch
from azswitch.metrics import Metrics
from azswitch.models import Condition, FinishedOperation, OperationStatus, ReplicationGroupSpec, spec_errors
from azswitch.observe import GroupCache
from azswitch.settings import Settings, mask_userinfo, resolve_endpoint

logger = logging.getLogger("azswitch.reconcile")
_M = TypeVar("_M", bound=BaseModel)

ANNOTATION_APPROVE = "azswitch.io/approve"
ANNOTATION_RETRY = "azswitch.io/retry"
ANNOTATION_RECONCILE = "azswitch.io/reconcile-requested-at"
_PERSON_ANNOTATIONS = frozenset({ANNOTATION_APPROVE, ANNOTATION_RETRY, ANNOTATION_RECONCILE})

#: The cloud status a group passes through while a switchover or failover runs (reprotect: see _visible).
_ACTION_STATUS = {
    planning.Action.SWITCHOVER: "reversing",
    planning.Action.FAILOVER: "failovering",
}
_ACTION_PHASE = {
    planning.Action.SWITCHOVER: "SwitchingOver",
    planning.Action.FAILOVER: "FailingOver",
    planning.Action.REPROTECT: "Reprotecting",
}


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)


class CloudFactory(Protocol):
    def client(self, endpoint: str, project_id: str, credentials: Credentials) -> CloudAPI: ...


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


def _log_context(ctx: _Ctx) -> dict[str, str | None]:
    """Structured fields for every log line about a resource (the JSON formatter emits them)."""
    operation = ctx.status.get("operation") or ctx.old_status.get("operation")
    return {
        "rg_namespace": ctx.namespace,
        "rg_name": ctx.name,
        "operation_id": operation.get("id") if isinstance(operation, Mapping) else None,
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class _Ctx:
    """One reconcile's view of the resource; ``status`` is what will be written."""

    body: Mapping[str, Any]
    namespace: str
    name: str
    generation: int
    annotations: Mapping[str, str]
    resource_version: str | None
    old_status: dict[str, Any]
    status: dict[str, Any]
    now: datetime
    observation: planning.Observation | None = None
    plan: planning.Plan | None = None
    # How old the observation was when it came from the shared listing; None: it is the group's own GET,
    # the only view anything is sent (or a request counted lost) on.
    seen_age: float | None = None
    # The shared listing this resource's group belongs to: (endpoint, project, access key).
    listing_key: Hashable | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class _Verdict:
    """How the resource stands after this reconcile: feeds phase and conditions."""

    phase: str
    ready: statuses.StatusTriple
    reconciling: statuses.ReasonMessage | None = None
    stalled: statuses.ReasonMessage | None = None


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
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.clouds = clouds
        self.slots = slots
        self.clock = clock
        self.rng = rng or random.Random()
        self.cache = cache or GroupCache()
        # Every resource naming a cloud group (from the watch), to keep two of them from both acting.
        self.claimants = claimants
        self.metrics = metrics or Metrics()
        # The person-set annotations last seen per resource: a change is answered from a fresh read.
        self._asked: dict[str, tuple[tuple[str, str], ...]] = {}
        # Tells the work queue about our own writes, so the next step does not start from a stale copy.
        self.on_written = on_written
        self._credentials: dict[tuple[str, str], tuple[datetime, Credentials | str]] = {}
        # The listing key of every resource with an operation in flight: with two or more under one key,
        # one LIST per poll interval watches them all (see _max_age).
        self._in_flight: dict[str, Hashable] = {}

    # ------------------------------------------------------------------ entry point

    async def reconcile(self, body: Mapping[str, Any]) -> float | None:
        """Reconcile one resource; return seconds until it wants to run again (None: only on change)."""
        ctx = self._context(body)
        try:
            return await self._reconcile(ctx)
        except KubeConflict:
            # Someone (maybe us, a moment ago) changed the resource: decide again on the fresh copy.
            logger.info("status write conflicted; re-reading", extra=_log_context(ctx))
            self._release_unless_journaled(ctx)
            return 0.0
        except KubeGone:
            self.slots.forget(ctx.key)
            return None
        except KubeForbidden as exc:
            self._release_unless_journaled(ctx)
            logger.warning("%s", exc, extra=_log_context(ctx))
            # Say it where people look, if the status itself may still be written.
            with contextlib.suppress(KubeConflict, KubeGone, KubeUnavailable, KubeForbidden):
                await self._stall(self._context(body), "KubernetesForbidden", str(exc))
            return 15.0 + 15.0 * self.rng.random()
        except KubeUnavailable as exc:
            # Nothing was decided on a write that did not land: the journal makes the next attempt safe.
            self._release_unless_journaled(ctx)
            delay = 1.0 + 4.0 * self.rng.random()
            logger.warning("%s; retrying in %.1fs", exc, delay, extra=_log_context(ctx))
            return delay

    def _release_unless_journaled(self, ctx: _Ctx) -> None:
        """A slot taken for an operation whose journal entry never landed is free again."""
        if not isinstance(ctx.old_status.get("operation"), Mapping):
            self.slots.release(ctx.key)

    def forget(self, namespace: str, name: str) -> None:
        """The resource was deleted: free its slot (the cloud group is never touched)."""
        self.slots.forget(f"{namespace}/{name}")
        self._asked.pop(f"{namespace}/{name}", None)
        self._in_flight.pop(f"{namespace}/{name}", None)
        self.metrics.forget_group(namespace, name)
        self.metrics.operations_in_flight(self.slots.in_use)

    def _context(self, body: Mapping[str, Any]) -> _Ctx:
        meta = body.get("metadata", {})
        raw_status = body.get("status")
        old_status = dict(raw_status) if isinstance(raw_status, Mapping) else {}
        return _Ctx(
            body=body,
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            generation=int(meta.get("generation") or 0),
            annotations=dict(meta.get("annotations") or {}),
            resource_version=meta.get("resourceVersion"),
            old_status=old_status,
            status=dict(old_status),
            now=self.clock(),
        )

    async def _reconcile(self, ctx: _Ctx) -> float | None:
        try:
            spec = ReplicationGroupSpec.model_validate(ctx.body.get("spec") or {})
        except ValidationError as exc:
            return await self._stall(ctx, "InvalidSpec", spec_errors(exc))

        if spec.suspend:
            ctx.status["phase"] = "Suspended"
            return await self._finish(
                ctx,
                _Verdict(
                    "Suspended", ("False", "Suspended", "spec.suspend is true: no cloud calls are made")
                ),
                requeue=None,
            )

        rival = self._rival(ctx, spec)
        if rival is not None:
            return await self._stall(
                ctx,
                "DuplicateGroup",
                f"cloud group {spec.group_id} is also managed by ReplicationGroup {rival}, which owns it "
                "(it was created first, or has an operation in flight); this resource does nothing. "
                "fix: delete one of the two resources",
            )

        recorded_group = ctx.old_status.get("groupID")
        if recorded_group and recorded_group != spec.group_id:
            return await self._stall(
                ctx,
                "GroupIDChanged",
                f"spec.groupID is immutable: it was {recorded_group!r} and is now {spec.group_id!r}; "
                "fix: restore the old value, or delete this resource and create a new one",
            )

        credentials = await self._read_credentials(ctx.namespace, spec.cloud.credentials_secret_ref.name)
        if isinstance(credentials, str):
            return await self._stall(ctx, "CredentialsNotFound", credentials)
        try:
            endpoint = resolve_endpoint(self.settings, spec.cloud.region, spec.cloud.endpoint)
            cloud = self.clouds.client(endpoint, spec.cloud.project_id, credentials)
        except ConfigError as exc:
            return await self._stall(ctx, "InvalidEndpoint", mask_userinfo(str(exc)))

        cache_key = ctx.listing_key = (endpoint, spec.cloud.project_id, credentials.access_key)
        in_flight = isinstance(ctx.old_status.get("operation"), Mapping)
        self._track(ctx, in_flight=in_flight)
        max_age = self._max_age(ctx)
        try:
            if max_age is None:
                group = await self.cache.fetch(cache_key, cloud, spec.group_id)
            else:
                group, ctx.seen_age = await self.cache.group(cache_key, cloud, spec.group_id, max_age)
            zones = _trusted_zones(ctx.old_status, group.priority_station, spec)
            if zones is None:
                zones = await cloud.discover_availability_zones(spec.group_id, group=group)
        except CloudError as exc:
            return await self._observe_failed(ctx, spec, exc)

        ctx.status["groupID"] = spec.group_id
        ctx.status["availabilityZones"] = list(zones)
        observation = self._record_observation(ctx, group, zones)

        if in_flight:
            return await self._advance(ctx, spec, cloud, observation)
        return await self._plan_and_act(ctx, spec, cloud, observation)

    # ------------------------------------------------------------------ observation

    def _rival(self, ctx: _Ctx, spec: ReplicationGroupSpec) -> str | None:
        """The ``namespace/name`` of the resource that owns this cloud group instead of us, if any.

        Deterministic, so that every process (and every restart) picks the same owner, and sticky, so that
        ownership never passes while the owner still manages the group: a resource with an operation in
        flight first (it must finish), then one that already manages the group (its status names it), then
        the oldest, then by name. A newcomer, even an older one restored from a backup, waits.
        """
        if self.claimants is None:
            return None

        def rank(body: Mapping[str, Any]) -> tuple[int, int, str, str]:
            meta = body.get("metadata") or {}
            raw_status = body.get("status")
            status: Mapping[str, Any] = raw_status if isinstance(raw_status, Mapping) else {}
            busy = isinstance(status.get("operation"), Mapping)
            managing = status.get("groupID") == spec.group_id
            return (
                0 if busy else 1,
                0 if managing else 1,
                str(meta.get("creationTimestamp") or ""),
                f"{meta.get('namespace')}/{meta.get('name')}",
            )

        def same_project(body: Mapping[str, Any]) -> bool:
            other = body.get("spec")
            cloud = other.get("cloud") if isinstance(other, Mapping) else None
            return isinstance(cloud, Mapping) and cloud.get("projectID") == spec.cloud.project_id

        same = [body for body in self.claimants(spec.group_id) if same_project(body)]
        if len(same) < 2:
            return None
        owner = min(same, key=rank)
        owner_meta = owner.get("metadata") or {}
        owner_key = f"{owner_meta.get('namespace')}/{owner_meta.get('name')}"
        return None if owner_key == ctx.key else owner_key

    def _track(self, ctx: _Ctx, *, in_flight: bool) -> None:
        """Keep the count of operations in flight per listing key (for ``_max_age``) true."""
        if in_flight and ctx.listing_key is not None:
            self._in_flight[ctx.key] = ctx.listing_key
        else:
            self._in_flight.pop(ctx.key, None)

    def _max_age(self, ctx: _Ctx) -> float | None:
        """How old the shared listing may be for this look at the group; None: GET the group alone.

        A person's explicit request (approve, retry, reconcile-requested-at) is answered from a fresh read.
        Operations in flight are polled with their own GETs while they are few; once more are in flight
        under one listing key than a LIST of it costs requests (pages), as in an evacuation, each reads the
        listing at most one poll interval old, so the project costs one LIST per interval instead of a GET
        per group per interval, and the rate limit is left for starting the next groups. Everything else
        (drift checks, new specs, waits) reads the listing too, so a thousand idle groups cost one request,
        not a thousand. Nothing is ever *sent* on a cached view:
        ``_plan_and_act`` and ``_advance`` GET the group first.
        """
        asked = tuple(sorted((k, v) for k, v in ctx.annotations.items() if k in _PERSON_ANNOTATIONS))
        seen = self._asked.get(ctx.key)
        self._asked[ctx.key] = asked
        if seen is not None and seen != asked:
            return None
        operation = ctx.old_status.get("operation")
        if isinstance(operation, Mapping):
            polled = sum(1 for key in self._in_flight.values() if key == ctx.listing_key)
            if polled <= self.cache.list_cost(ctx.listing_key):
                return None
            started = _parse_time(operation.get("startedAt")) or ctx.now
            return self._poll_delay(ctx.now - started)
        if (
            ctx.old_status.get("phase") == "Ready"
            and ctx.old_status.get("observedGeneration") == ctx.generation
        ):
            return self.settings.resync_interval / 2
        return min(5.0, self.settings.resync_interval / 2)

    async def _read_credentials(self, namespace: str, secret_name: str) -> Credentials | str:
        """Credentials from the Secret, cached briefly; a string explains what is missing."""
        key = (namespace, secret_name)
        cached = self._credentials.get(key)
        if cached and (self.clock() - cached[0]).total_seconds() < self.settings.credentials_ttl:
            return cached[1]
        data = await self.kube.read_secret(namespace, secret_name)
        result: Credentials | str
        if data is None:
            result = (
                f"Secret {namespace}/{secret_name} (spec.cloud.credentialsSecretRef.name) does not exist; "
                "fix: create it with keys accessKey and secretKey"
            )
        else:
            missing = [k for k in ("accessKey", "secretKey") if not data.get(k)]
            # A key that cannot go into an HTTP header is as good as missing (and must not crash signing).
            unusable = [
                k
                for k in ("accessKey", "secretKey", "securityToken")
                if data.get(k) and not (data[k].isascii() and data[k].isprintable() and " " not in data[k])
            ]
            if missing:
                result = (
                    f"Secret {namespace}/{secret_name} lacks key(s) {', '.join(missing)}; "
                    "fix: add them (optional: securityToken for temporary credentials)"
                )
            elif unusable:
                result = (
                    f"Secret {namespace}/{secret_name}: key(s) {', '.join(unusable)} hold characters other than "
                    "printable ASCII; fix: copy the values again from the cloud console (no spaces or newlines)"
                )
            else:
                result = Credentials(data["accessKey"], data["secretKey"], data.get("securityToken") or None)
        self._credentials[key] = (self.clock(), result)
        return result

    def invalidate_credentials(self, namespace: str, secret_name: str | None = None) -> None:
        for key in list(self._credentials):
            if key[0] == namespace and (secret_name is None or key[1] == secret_name):
                del self._credentials[key]

    def _record_observation(
        self, ctx: _Ctx, group: ConsistencyGroup, zones: list[str]
    ) -> planning.Observation:
        observation = planning.Observation.from_group(group, zones, ctx.now)
        ctx.observation = observation
        previous_cloud = (
            ctx.old_status.get("cloud") if isinstance(ctx.old_status.get("cloud"), Mapping) else {}
        )
        cloud = {
            "status": group.status,
            "replicationStatus": group.replication_status,
            "faultLevel": group.fault_level,
            "failureDetail": group.failure_detail,
        }
        # observedAt alone changing is not worth a write (and a watch event) on every resync.
        same = all((previous_cloud or {}).get(k) == v for k, v in cloud.items())
        cloud["observedAt"] = (previous_cloud or {}).get("observedAt") if same else _iso(ctx.now)
        if not cloud["observedAt"]:
            cloud["observedAt"] = _iso(ctx.now)
        ctx.status["cloud"] = {k: v for k, v in cloud.items() if v is not None}
        if group.priority_station:
            ctx.status["currentPrimaryAZ"] = group.priority_station
        return observation

    async def _read_fresh(
        self, ctx: _Ctx, cloud: CloudAPI, group_id: str, listed: planning.Observation
    ) -> planning.Observation:
        """The group's own GET, in place of the view ``listed`` from the shared listing (before anything is
        decided that a stale view could make wrong)."""
        group = await self.cache.fetch(ctx.listing_key, cloud, group_id)
        ctx.seen_age = None
        return self._record_observation(ctx, group, list(listed.availability_zones))

    async def _observe_failed(self, ctx: _Ctx, spec: ReplicationGroupSpec, exc: CloudError) -> float | None:
        if isinstance(exc, GroupNotFound):
            return await self._stall(
                ctx,
                "GroupNotFound",
                f"cloud group {spec.group_id} does not exist in project {spec.cloud.project_id}: {exc}; "
                "fix: check spec.groupID, spec.cloud.projectID and spec.cloud.region",
            )
        if isinstance(exc, CloudAuthError):
            self.invalidate_credentials(ctx.namespace, spec.cloud.credentials_secret_ref.name)
            return await self._stall(
                ctx,
                "CredentialsRejected",
                f"the cloud refused the credentials in Secret {spec.cloud.credentials_secret_ref.name}: {exc}; "
                "fix: update the Secret's accessKey/secretKey",
                requeue=self.settings.resync_interval,
            )
        if isinstance(exc, PermanentCloudError):
            return await self._stall(ctx, "CloudRequestRejected", f"reading the group failed: {exc}")
        # Transient: the truth is unknown, so Ready must not stay True.
        delay = self._retry_delay(exc)
        ctx.status.setdefault("phase", "Unknown")
        ctx.status["phase"] = "Unknown" if "operation" not in ctx.old_status else ctx.status["phase"]
        return await self._finish(
            ctx,
            _Verdict(
                ctx.status["phase"],
                (
                    "Unknown",
                    "CloudUnreachable",
                    f"cannot read the cloud group: {exc}; retrying in {delay:.0f}s",
                ),
                reconciling=("CloudUnreachable", str(exc)),
            ),
            requeue=delay,
        )

    def _retry_delay(self, exc: CloudError) -> float:
        if isinstance(exc, TransientCloudError) and exc.retry_after:
            return exc.retry_after
        base = min(self.settings.resync_interval, 5.0)
        return base * (1 + self.rng.random())

    # ------------------------------------------------------------------ planning and starting

    async def _plan_and_act(
        self,
        ctx: _Ctx,
        spec: ReplicationGroupSpec,
        cloud: CloudAPI,
        observation: planning.Observation,
    ) -> float | None:
        """Plan and, if allowed, start. An observation from the shared listing (``ctx.seen_age`` set) is
        re-read with a GET before anything is sent."""
        last = ctx.old_status.get("lastOperation")
        if isinstance(last, Mapping) and self._failure_holds(ctx, last):
            reason = "OperationTimedOut" if last.get("result") == "TimedOut" else "OperationFailed"
            return await self._stall(
                ctx,
                reason,
                f"{last.get('action')} {last.get('id')} ended {last.get('result')}: {last.get('message', '')}; "
                f"nothing more is sent for generation {ctx.generation}. fix: check the cloud group, then change "
                f"the spec or annotate: kubectl annotate rg {ctx.name} {ANNOTATION_RETRY}={last.get('id')}",
                keep_plan=False,
            )

        last_finished = _parse_time(last.get("finishedAt")) if isinstance(last, Mapping) else None
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
            )
        )
        ctx.plan = plan
        ctx.status["plan"] = statuses.plan_status(plan).dump()

        if plan.action is planning.Action.NONE and not plan.blockers:
            return await self._finish(
                ctx,
                _Verdict("Ready", ("True", "InSync", plan.message or f"primary is {observation.primary_az}")),
                requeue=self._resync(),
            )
        if not plan.executable:
            if any(b.reason == "ConcurrencyLimit" for b in plan.blockers):
                self.slots.wait(ctx.key)
            return await self._blocked(ctx, plan)
        # The slot is taken before the fresh read, so that when many groups plan at once (an evacuation)
        # only as many read the cloud as can start; a slot not used is given back by _finish (settle).
        if not self.slots.try_acquire(ctx.key):
            # The cap filled between planning and here; the controller wakes us when a slot frees.
            return await self._finish(
                ctx,
                _Verdict("Pending", ("False", "ConcurrencyLimit", "waiting for a free operation slot")),
                requeue=self._resync(),
            )
        if ctx.seen_age is not None:
            try:
                observation = await self._read_fresh(ctx, cloud, spec.group_id, observation)
            except CloudError as exc:
                return await self._observe_failed(ctx, spec, exc)
            return await self._plan_and_act(ctx, spec, cloud, observation)
        return await self._start(ctx, spec, cloud, plan, attempts=1, operation_id=str(uuid.uuid4()))

    def _failure_holds(self, ctx: _Ctx, last: Mapping[str, Any]) -> bool:
        if last.get("result") not in ("Failed", "TimedOut", "Abandoned"):
            return False
        if last.get("generation") != ctx.generation:
            return False
        return ctx.annotations.get(ANNOTATION_RETRY) != str(last.get("id"))

    async def _blocked(self, ctx: _Ctx, plan: planning.Plan) -> float | None:
        first = plan.blockers[0]
        kinds = {b.kind for b in plan.blockers}
        message = "; ".join(b.message for b in plan.blockers)
        if kinds & {planning.BlockKind.STALLED, planning.BlockKind.BLOCKED}:
            verdict = _Verdict(
                planning.phase_for(plan), ("False", first.reason, message), stalled=(first.reason, message)
            )
            requeue: float | None = self._resync()
        elif planning.BlockKind.HOLD in kinds and planning.BlockKind.WAIT not in kinds:
            verdict = _Verdict(planning.phase_for(plan), ("False", first.reason, message))
            requeue = self._resync()
        else:
            verdict = _Verdict(
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
                requeue = self._resync()
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
            await self._event(
                ctx, "Warning" if verdict.stalled else "Normal", f"{plan.action}Blocked", message
            )
        return await self._finish(ctx, verdict, requeue=requeue)

    async def _start(
        self,
        ctx: _Ctx,
        spec: ReplicationGroupSpec,
        cloud: CloudAPI,
        plan: planning.Plan,
        *,
        attempts: int,
        operation_id: str,
        first_requested_at: str | None = None,
    ) -> float | None:
        action = plan.action
        operation = {
            "id": operation_id,
            "action": str(action),
            "from": plan.source,
            "to": plan.target,
            "state": "Requested",
            "requestedAt": _iso(ctx.now),
            "startedAt": first_requested_at or _iso(ctx.now),
            "attempts": attempts,
            "generation": ctx.generation,
        }
        ctx.status["operation"] = {k: v for k, v in operation.items() if v is not None}
        ctx.status["phase"] = _ACTION_PHASE[action]
        # The journal entry must be durable before the request exists: this write raises on conflict.
        await self._write(
            ctx,
            _Verdict(
                _ACTION_PHASE[action],
                ("False", _ACTION_PHASE[action], f"{action} to {plan.target} requested"),
                reconciling=(_ACTION_PHASE[action], f"{action} {operation_id} requested"),
            ),
        )
        self._track(ctx, in_flight=True)

        send = {
            planning.Action.SWITCHOVER: cloud.switchover,
            planning.Action.FAILOVER: cloud.failover,
            planning.Action.REPROTECT: cloud.reprotect,
        }[action]
        failure: CloudError | None = None
        try:
            await send(spec.group_id)
        except CloudError as exc:
            failure = exc
        # The Event comes after the request (still before its outcome's), so that in an evacuation the next
        # group's start never waits on an informational write.
        if attempts == 1:
            await self._event(
                ctx, "Normal", f"{action}Started", f"{action} {operation_id}: {plan.source} → {plan.target}"
            )
        else:
            await self._event(
                ctx, "Warning", "RequestResent", f"{action} {operation_id}: attempt {attempts} (earlier lost)"
            )
        if failure is not None:
            return await self._send_failed(ctx, spec, failure)

        ctx.status["operation"] = {
            **ctx.status["operation"],
            "state": "InProgress",
            "acceptedAt": _iso(self.clock()),
        }
        await self._write(ctx, self._moving(ctx))
        return self.settings.poll_interval

    async def _send_failed(self, ctx: _Ctx, spec: ReplicationGroupSpec, exc: CloudError) -> float | None:
        """What a failed send means for the journaled operation."""
        if isinstance(exc, (CloudThrottled, CloudUnavailable)) and (
            isinstance(exc, CloudThrottled) or exc.status is None
        ):
            # Refused before it reached the backend: nothing happened, so the intent can be withdrawn.
            return await self._withdraw(ctx, exc)
        if isinstance(exc, (CloudUnavailable, OutcomeUnknown)):
            return await self._unknown(ctx, exc)
        if isinstance(exc, CloudAuthError):
            self.invalidate_credentials(ctx.namespace, spec.cloud.credentials_secret_ref.name)
            return await self._end(ctx, "Failed", f"the cloud refused the credentials: {exc}")
        return await self._end(ctx, "Failed", f"the cloud rejected the request: {exc}")

    async def _withdraw(self, ctx: _Ctx, exc: CloudError) -> float | None:
        operation = ctx.status.pop("operation", {})
        self.slots.release(ctx.key)
        self._track(ctx, in_flight=False)
        delay = self._retry_delay(exc)
        await self._event(
            ctx,
            "Warning",
            "RequestDeferred",
            f"{operation.get('action')} not sent: {exc}; retrying in {delay:.0f}s",
        )
        return await self._finish(
            ctx,
            _Verdict(
                "Pending", ("False", "CloudUnavailable", str(exc)), reconciling=("CloudUnavailable", str(exc))
            ),
            requeue=delay,
        )

    async def _unknown(self, ctx: _Ctx, exc: CloudError) -> float | None:
        # Never re-send here: the request may be running. Observe until the grace period says otherwise.
        ctx.status["operation"] = {
            **ctx.status["operation"],
            "message": f"outcome unknown ({exc}); observing the group before deciding",
        }
        await self._event(ctx, "Warning", "OutcomeUnknown", f"{ctx.status['operation']['id']}: {exc}")
        await self._write(ctx, self._moving(ctx))
        return self.settings.poll_interval

    # ------------------------------------------------------------------ operations in flight

    async def _advance(
        self,
        ctx: _Ctx,
        spec: ReplicationGroupSpec,
        cloud: CloudAPI,
        observation: planning.Observation,
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
            await self._event(
                ctx,
                "Warning",
                "OperationUnreadable",
                f"status.operation could not be read and was dropped ({problems}); planning from the cloud's state",
            )
            return await self._plan_and_act(ctx, spec, cloud, observation)
        operation = dict(ctx.old_status["operation"])
        ctx.status["operation"] = operation
        self.slots.adopt(ctx.key)
        try:
            action = planning.Action(str(operation.get("action")))
        except ValueError:
            return await self._end(ctx, "Abandoned", f"unknown action {operation.get('action')!r} in status")
        target = operation.get("to")
        started = _parse_time(operation.get("startedAt")) or ctx.now
        requested = _parse_time(operation.get("requestedAt")) or started
        accepted = _parse_time(operation.get("acceptedAt"))

        if observation.status in ERROR_STATUSES:
            detail = observation.failure_detail or "no failure_detail"
            return await self._end(ctx, "Failed", f"the cloud group went to {observation.status} ({detail})")
        if self._done(action, target, observation):
            return await self._end(ctx, "Succeeded", f"primary is {observation.primary_az}")
        if ctx.now - started > spec.switchover.timeout:
            return await self._end(
                ctx,
                "TimedOut",
                f"not finished after {spec.switchover.timeout}; the group is {observation.status}/"
                f"{observation.replication_status}, primary {observation.primary_az}",
            )

        if operation.get("generation") != ctx.generation:
            # Queued, not acted on: the operation in flight finishes first, then the new spec is planned.
            ctx.status["pendingGeneration"] = ctx.generation

        if self._visible(action, target, observation):
            if operation.get("state") != "InProgress":
                operation["state"] = "InProgress"
                operation.setdefault("acceptedAt", _iso(ctx.now))
            await self._write(ctx, self._moving(ctx))
            return self._next_poll(ctx, started)

        # No sign of the change yet. Within the grace period that is normal (the cloud takes ~10 s to react).
        since = accepted or requested
        waited = (ctx.now - since).total_seconds()
        if waited < self.settings.lost_request_grace:
            await self._write(ctx, self._moving(ctx))
            return min(self._next_poll(ctx, started), self.settings.lost_request_grace - waited + 0.05)
        if ctx.seen_age is not None:
            # About to count the request lost: that is decided on the group's own fresh read.
            try:
                observation = await self._read_fresh(ctx, cloud, spec.group_id, observation)
            except CloudError as exc:
                return await self._observe_failed(ctx, spec, exc)
            return await self._advance(ctx, spec, cloud, observation)

        attempts = int(operation.get("attempts") or 1)
        if attempts >= self.settings.max_request_attempts:
            return await self._end(
                ctx,
                "Failed",
                f"the request was sent {attempts} times and the group never showed the change; "
                "check the group in the cloud console",
            )
        logger.warning(
            "%s shows no effect after %.0fs; counting the request lost",
            action,
            waited,
            extra=_log_context(ctx),
        )
        if not self._untouched(action, operation.get("from"), observation):
            # The group is not where the original request found it: re-sending blind would be unsafe.
            return await self._end(ctx, "Failed", "request lost and the group changed meanwhile; re-planning")
        plan = planning.Plan(
            action, operation.get("from"), target, "RequestLost", "re-sending a lost request"
        )
        return await self._start(
            ctx,
            spec,
            cloud,
            plan,
            attempts=attempts + 1,
            operation_id=str(operation["id"]),
            first_requested_at=operation.get("startedAt"),
        )

    @staticmethod
    def _done(action: planning.Action, target: str | None, observation: planning.Observation) -> bool:
        if observation.status in TRANSITIONAL_STATUSES:
            return False
        if action is planning.Action.FAILOVER:
            return observation.status == "failovered" and observation.primary_az == target
        return (
            observation.status == "available"
            and observation.replication_status == "active"
            and observation.primary_az == target
        )

    @staticmethod
    def _visible(action: planning.Action, target: str | None, observation: planning.Observation) -> bool:
        """Whether the cloud shows this operation running (or its effect), as opposed to nothing at all."""
        if action is planning.Action.REPROTECT:
            # A reprotect may leave the status at failovered for a long time while replication resyncs.
            return observation.status != "failovered" or observation.replication_status not in (
                None,
                "active-stopped",
            )
        return observation.status == _ACTION_STATUS[action] or observation.primary_az == target

    @staticmethod
    def _untouched(action: planning.Action, source: str | None, observation: planning.Observation) -> bool:
        """Whether the group is exactly where a lost request found it, so that sending it again is safe."""
        if action is planning.Action.REPROTECT:
            return observation.status == "failovered" and observation.replication_status == "active-stopped"
        return observation.status == "available" and observation.primary_az == source

    def _poll_delay(self, elapsed: timedelta) -> float:
        # Back off from poll_interval to poll_max_interval over the first minute of an operation.
        grow: float = self.settings.poll_interval * (1.5 ** max(0.0, elapsed.total_seconds() / 10))
        return min(self.settings.poll_max_interval, grow)

    def _next_poll(self, ctx: _Ctx, started: datetime) -> float:
        """When to look again. A view from the shared listing was already ``seen_age`` old, so come back
        when it is one poll delay old, just as the next LIST is due: the cloud finishing is then seen
        within one poll delay, as with a GET of its own."""
        delay = self._poll_delay(ctx.now - started)
        if not ctx.seen_age:  # the group's own GET (or a listing read this very moment)
            return delay
        return max(0.05, delay - ctx.seen_age + 0.01)

    def _moving(self, ctx: _Ctx) -> _Verdict:
        operation = ctx.status["operation"]
        phase = _ACTION_PHASE.get(planning.Action(operation["action"]), "Pending")
        ctx.status["phase"] = phase
        message = operation.get("message") or (
            f"{operation['action']} {operation['id']} {operation['state']}: {operation.get('from')} → "
            f"{operation.get('to')} (attempt {operation.get('attempts', 1)})"
        )
        return _Verdict(phase, ("False", phase, message), reconciling=(phase, message))

    async def _end(self, ctx: _Ctx, result: str, message: str) -> float | None:
        """Close the operation in status (history, lastOperation), post its event, free its slot."""
        operation = dict(ctx.status.pop("operation", None) or ctx.old_status.get("operation") or {})
        started = _parse_time(operation.get("startedAt")) or ctx.now
        finished = {
            "id": operation.get("id"),
            "action": operation.get("action"),
            "from": operation.get("from"),
            "to": operation.get("to"),
            "result": result,
            "startedAt": _iso(started),
            "finishedAt": _iso(ctx.now),
            "durationSeconds": round((ctx.now - started).total_seconds(), 3),
            "attempts": operation.get("attempts", 1),
            "generation": operation.get("generation", ctx.generation),
            "message": message,
        }
        record = FinishedOperation.model_validate({k: v for k, v in finished.items() if v is not None})
        ctx.status["lastOperation"] = record.dump()
        history = _parse_list(FinishedOperation, ctx.old_status.get("history"))
        ctx.status["history"] = [h.dump() for h in statuses.append_history(history, record)]
        ctx.status.pop("plan", None)
        ctx.status.pop("pendingGeneration", None)
        action = operation.get("action", "Operation")
        reason = {"Succeeded": "Succeeded", "Failed": "Failed", "TimedOut": "TimedOut"}.get(result, result)
        if result == "Succeeded":
            ctx.status["phase"] = "Ready"
            verdict = _Verdict("Ready", ("True", f"{action}Succeeded", message))
        else:
            ctx.status["phase"] = "Failed"
            verdict = _Verdict(
                "Failed", ("False", f"{action}{reason}", message), stalled=(f"{action}{reason}", message)
            )
        await self._write(ctx, verdict)
        self.slots.release(ctx.key)
        self._track(ctx, in_flight=False)
        self.metrics.operations_in_flight(self.slots.in_use)
        self.metrics.operation_finished(str(action), result, finished["durationSeconds"])
        await self._event(
            ctx,
            "Normal" if result == "Succeeded" else "Warning",
            f"{action}{reason}",
            f"{action} {operation.get('id')}: {message}",
        )
        # Re-plan right away: a queued spec change or a reprotect may follow.
        return 0.0 if result == "Succeeded" else self._resync()

    # ------------------------------------------------------------------ recording

    async def _stall(
        self,
        ctx: _Ctx,
        reason: str,
        message: str,
        *,
        requeue: float | None = None,
        keep_plan: bool = False,
    ) -> float | None:
        if not keep_plan:
            ctx.status.pop("plan", None)
        phase = "Failed" if reason in ("OperationFailed", "OperationTimedOut") else "Blocked"
        ctx.status["phase"] = phase
        previous = _condition(ctx.old_status, "Stalled")
        if previous is None or previous.get("reason") != reason:
            await self._event(ctx, "Warning", reason, message)
        return await self._finish(
            ctx, _Verdict(phase, ("False", reason, message), stalled=(reason, message)), requeue
        )

    async def _finish(self, ctx: _Ctx, verdict: _Verdict, requeue: float | None) -> float | None:
        if "operation" not in ctx.status:
            self.slots.settle(ctx.key)
        await self._write(ctx, verdict)
        return requeue

    async def _write(self, ctx: _Ctx, verdict: _Verdict) -> None:
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
                previous=_parse_list(Condition, ctx.old_status.get("conditions")),
                ready=verdict.ready,
                reconciling=verdict.reconciling,
                stalled=verdict.stalled,
                replication_healthy=replication,
                switchover_allowed=allowed,
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

    def _report(self, ctx: _Ctx, verdict: _Verdict, replication: statuses.StatusTriple) -> None:
        blocked = verdict.stalled[0] if verdict.stalled else None
        if blocked is None and ctx.plan is not None and ctx.plan.blockers and "operation" not in ctx.status:
            blocked = ctx.plan.blockers[0].reason
        healthy = {"True": True, "False": False}.get(replication[0])
        self.metrics.set_group_state(ctx.namespace, ctx.name, verdict.phase, blocked, healthy)
        self.metrics.operations_in_flight(self.slots.in_use)

    async def _event(self, ctx: _Ctx, type_: str, reason: str, message: str) -> None:
        logger.info("%s: %s", reason, message, extra=_log_context(ctx))
        await self.kube.post_event(ctx.body, type_, reason, message)

    def _resync(self) -> float:
        return self.settings.resync_interval * (1 + self.settings.resync_jitter * self.rng.random())


def _condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for condition in status.get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == type_:
            return condition
    return None


def _trusted_zones(
    status: Mapping[str, Any], primary: str | None, spec: ReplicationGroupSpec
) -> list[str] | None:
    """The AZ pair remembered in status, if it can be trusted instead of discovering it again: recorded for
    this group, two distinct names, including the primary the cloud reports and the one the spec wants.
    (Status can be rewritten by anyone allowed to, so it is checked, not believed.)"""
    zones = status.get("availabilityZones")
    if status.get("groupID") != spec.group_id or not isinstance(zones, list) or len(zones) != 2:
        return None
    if not all(isinstance(z, str) and z for z in zones) or zones[0] == zones[1]:
        return None
    if (primary is not None and primary not in zones) or spec.primary_az not in zones:
        return None
    return [str(z) for z in zones]


def _parse_list(model: type[_M], value: Any) -> list[_M]:
    """Entries of a status list we wrote earlier, skipping any that someone else mangled."""
    parsed: list[_M] = []
    for item in value if isinstance(value, list) else []:
        try:
            parsed.append(model.model_validate(item))
        except ValidationError:
            continue
    return parsed
