"""Reading the cloud: a group's own GET or the shared listing, the AZ pair, and what a failed read means.

The choice between the two reads is ``Reader.max_age``: a person's explicit request and a lone operation in
flight read the group itself; many operations in flight under one listing key, and every idle resource, read
the shared listing (``listing.GroupCache``). Nothing is ever *sent* on a listing's view: the starter and the
follower call ``read_fresh`` first. A read's result becomes ``ctx.observation`` (the neutral ``GroupView``) and
``status.cloud`` (the cloud's own words).
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Mapping
from datetime import timedelta
from typing import Any

from azswitch.cloud.api import CloudAPI
from azswitch.errors import (
    CloudAuthError,
    CloudError,
    GroupNotFound,
    PermanentCloudError,
    TransientCloudError,
)
from azswitch.models import ReplicationGroupSpec
from azswitch.observation import GroupView
from azswitch.reconcile.context import PERSON_ANNOTATIONS, Ctx, Verdict, iso, parse_time, trusted_zones
from azswitch.reconcile.credentials import CredentialStore
from azswitch.reconcile.listing import GroupCache
from azswitch.reconcile.recording import Recorder
from azswitch.settings import Settings


class Reader:
    def __init__(
        self,
        settings: Settings,
        cache: GroupCache,
        recorder: Recorder,
        credentials: CredentialStore,
        rng: random.Random,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.recorder = recorder
        self.credentials = credentials
        self.rng = rng
        # The person-set annotations last seen per resource: a change is answered from a fresh read.
        self._asked: dict[str, tuple[tuple[str, str], ...]] = {}
        # The listing key of every resource with an operation in flight: with two or more under one key,
        # one LIST per poll interval watches them all (see max_age).
        self._in_flight: dict[str, Hashable] = {}
        # How far into its operation (seconds since startedAt) each group in flight was last seen still moving,
        # and per (listing key, action) when the last operation that succeeded was last seen moving and first
        # seen done: where the cloud's usual duration lies (see poll_delay).
        self._moving: dict[str, float] = {}
        self._expected: dict[tuple[Hashable, str], tuple[float, float]] = {}

    def forget(self, key: str) -> None:
        self._asked.pop(key, None)
        self._in_flight.pop(key, None)
        self._moving.pop(key, None)

    def track(self, ctx: Ctx, *, in_flight: bool) -> None:
        """Keep the count of operations in flight per listing key (for ``max_age``) true."""
        if in_flight and ctx.listing_key is not None:
            self._in_flight[ctx.key] = ctx.listing_key
        else:
            self._in_flight.pop(ctx.key, None)

    def max_age(self, ctx: Ctx) -> float | None:
        """How old the shared listing may be for this look at the group; None: GET the group alone.

        A person's explicit request (approve, retry, reconcile-requested-at) is answered from a fresh read.
        Operations in flight are polled with their own GETs while they are few; once more are in flight
        under one listing key than a LIST of it costs requests (pages), as in an evacuation, each reads the
        listing at most one poll interval old, so the project costs one LIST per interval instead of a GET
        per group per interval, and the rate limit is left for starting the next groups. Everything else
        (drift checks, new specs, waits) reads the listing too, so a thousand idle groups cost one request,
        not a thousand. Nothing is ever *sent* on a cached view: the starter and the follower GET the group
        first.
        """
        asked = tuple(sorted((k, v) for k, v in ctx.annotations.items() if k in PERSON_ANNOTATIONS))
        seen = self._asked.get(ctx.key)
        self._asked[ctx.key] = asked
        if ctx.read_fresh or (seen is not None and seen != asked):
            return None
        operation = ctx.old_status.get("operation")
        if isinstance(operation, Mapping) and following_a_job(operation):
            # The cloud's job is what is polled (SDRS): reading the group on every poll as well would double
            # the cost for nothing. It is read afresh when the job ends; meanwhile the shared listing, at most
            # JOB_VIEW_MAX_AGE old, keeps status.cloud current enough (one LIST per project, however many
            # jobs run).
            return min(JOB_VIEW_MAX_AGE, self.settings.resync_interval / 2)
        if isinstance(operation, Mapping):
            polled = sum(1 for key in self._in_flight.values() if key == ctx.listing_key)
            if polled <= self.cache.list_cost(ctx.listing_key):
                return None
            started = parse_time(operation.get("startedAt")) or ctx.now
            return self.poll_delay(ctx.now - started, self.expected(ctx, operation.get("action")))
        if (
            ctx.old_status.get("phase") == "Ready"
            and ctx.old_status.get("observedGeneration") == ctx.generation
        ):
            return self.settings.resync_interval / 2
        return min(5.0, self.settings.resync_interval / 2)

    async def observe(self, ctx: Ctx, spec: ReplicationGroupSpec, cloud: CloudAPI[Any]) -> GroupView:
        """Read the group (own GET or listing, per ``max_age``) and its AZ pair; raises ``CloudError``."""
        max_age = self.max_age(ctx)
        if max_age is None:
            group = await self.cache.fetch(ctx.listing_key, cloud, spec.group_id)
        else:
            group, ctx.seen_age = await self.cache.group(ctx.listing_key, cloud, spec.group_id, max_age)
        # The primary as an AZ name needs no AZ pair (EVS names it; SDRS's group carries both AZs).
        primary = cloud.view(group, (), ctx.now).primary_az
        zones = trusted_zones(ctx.old_status, primary, spec)
        if zones is None:
            zones = await cloud.availability_zones(group)
        ctx.status["groupID"] = spec.group_id
        ctx.status["service"] = spec.cloud.service
        ctx.status["availabilityZones"] = list(zones)
        return self.record(ctx, cloud, group, zones)

    def record(self, ctx: Ctx, cloud: CloudAPI[Any], group: Any, zones: list[str]) -> GroupView:
        """``group`` becomes the observation, ``status.cloud`` and ``status.currentPrimaryAZ``."""
        observation = cloud.view(group, zones, ctx.now)
        ctx.observation = observation
        raw_previous = ctx.old_status.get("cloud")
        previous: Mapping[str, Any] = raw_previous if isinstance(raw_previous, Mapping) else {}
        facts = observation.cloud
        recorded: dict[str, Any] = {
            "status": facts.status,
            "replicationStatus": facts.replication_status,
            "faultLevel": facts.fault_level,
            "healthStatus": facts.health_status,
            "failureDetail": facts.failure_detail,
        }
        # observedAt alone changing is not worth a write (and a watch event) on every resync.
        same = all(previous.get(k) == v for k, v in recorded.items())
        recorded["observedAt"] = (previous.get("observedAt") if same else None) or iso(ctx.now)
        ctx.status["cloud"] = {k: v for k, v in recorded.items() if v is not None}
        if observation.primary_az:
            ctx.status["currentPrimaryAZ"] = observation.primary_az
        return observation

    async def read_for_send(
        self, ctx: Ctx, cloud: CloudAPI[Any], group_id: str, listed: GroupView, decided: int
    ) -> GroupView:
        """A view to send on, in place of the listing's ``listed``: read after the decision to start was taken
        (``decided``, the cache's ``mark()`` when the slot was taken). While one page holds the project that is
        a LIST started after that — shared by every group starting at the same time, so an
        evacuation spends its requests on switchovers rather than on a GET before each — and otherwise the
        group's own GET. Either is a read of the cloud made after the decision, so neither can send on what an
        earlier read showed (design.md §3: nothing is ever sent on a cached view)."""
        if self.cache.list_cost(ctx.listing_key) != 1:
            return await self.read_fresh(ctx, cloud, group_id, listed)
        group = await self.cache.listed_since(ctx.listing_key, cloud, group_id, decided)
        ctx.seen_age = None
        return self.record(ctx, cloud, group, list(listed.availability_zones))

    async def read_fresh(self, ctx: Ctx, cloud: CloudAPI[Any], group_id: str, listed: GroupView) -> GroupView:
        """The group's own GET, in place of the view ``listed`` from the shared listing (before anything is
        decided that a stale view could make wrong)."""
        group = await self.cache.fetch(ctx.listing_key, cloud, group_id)
        ctx.seen_age = None
        return self.record(ctx, cloud, group, list(listed.availability_zones))

    async def failed(self, ctx: Ctx, spec: ReplicationGroupSpec, exc: CloudError) -> float | None:
        """What a read that failed means: permanent errors stall with the fix, transient ones make Ready
        Unknown (never a stale True) and retry."""
        if isinstance(exc, GroupNotFound):
            return await self.recorder.stall(
                ctx,
                "GroupNotFound",
                f"cloud group {spec.group_id} does not exist in project {spec.cloud.project_id}: {exc}; "
                "fix: check spec.groupID, spec.cloud.projectID and spec.cloud.region",
            )
        if isinstance(exc, CloudAuthError):
            self.credentials.invalidate(ctx.namespace, spec.cloud.credentials_secret_ref.name)
            return await self.recorder.stall(
                ctx,
                "CredentialsRejected",
                f"the cloud refused the credentials in Secret {spec.cloud.credentials_secret_ref.name}: {exc}; "
                "fix: update the Secret's accessKey/secretKey",
                requeue=self.settings.resync_interval,
            )
        if isinstance(exc, PermanentCloudError):
            return await self.recorder.stall(ctx, "CloudRequestRejected", f"reading the group failed: {exc}")
        # Transient: the truth is unknown, so Ready must not stay True.
        delay = self.retry_delay(exc)
        ctx.status.setdefault("phase", "Unknown")
        ctx.status["phase"] = "Unknown" if "operation" not in ctx.old_status else ctx.status["phase"]
        return await self.recorder.finish(
            ctx,
            Verdict(
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

    def retry_delay(self, exc: CloudError) -> float:
        if isinstance(exc, TransientCloudError) and exc.retry_after:
            return exc.retry_after
        base = min(self.settings.resync_interval, 5.0)
        return base * (1 + self.rng.random())

    def poll_delay(self, elapsed: timedelta, expected: tuple[float, float] | None = None) -> float:
        """The delay to the next look at an operation ``elapsed`` into its run (also the age the shared listing
        may have for it). It backs off from poll_interval to poll_max_interval over the first minute; and
        when a like operation ended between ``expected`` = (last seen moving, first seen done) seconds into
        its run (see ``expected``), the look comes at the first of those and then every poll_interval / 2
        until past the second, so the end is seen within half an interval and the next operation starts
        sooner. Only *when* the group is read depends on this, never what is sent: a wrong expectation costs
        at most a few reads."""
        seconds = elapsed.total_seconds()
        grow = self.settings.poll_interval * 1.5 ** max(0.0, seconds / 10)
        delay: float = min(self.settings.poll_max_interval, grow)
        if expected is None:
            return delay
        moving, done = expected
        quick = self.settings.poll_interval / 2
        if seconds < moving:
            return min(delay, max(moving - seconds, 0.01))
        if seconds < done + quick:
            return min(delay, quick)
        return delay

    def expected(self, ctx: Ctx, action: object) -> tuple[float, float] | None:
        """When an operation of ``action`` in ``ctx``'s listing is expected to end, in seconds from its start:
        how far into its run the last one that succeeded was last seen still moving, and first seen done
        (its end lay between). None until one has succeeded since the operator started."""
        return self._expected.get((ctx.listing_key, str(action)))

    def moving(self, ctx: Ctx, elapsed: timedelta) -> None:
        """The group's operation was seen still moving ``elapsed`` into its run (as of the view's moment)."""
        self._moving[ctx.key] = max(self._moving.get(ctx.key, 0.0), elapsed.total_seconds())

    def succeeded(self, ctx: Ctx, action: object, elapsed: timedelta) -> None:
        """The group's operation was seen done ``elapsed`` into its run: the next like it is expected to end
        between its last moving moment and this."""
        seen = self._moving.pop(ctx.key, None)
        done = elapsed.total_seconds()
        if seen is not None and seen < done:
            self._expected[(ctx.listing_key, str(action))] = (seen, done)

    def ended(self, ctx: Ctx) -> None:
        self._moving.pop(ctx.key, None)


#: How old the group's view may be while its operation is followed through a job (seconds).
JOB_VIEW_MAX_AGE = 10.0


def following_a_job(operation: Mapping[str, Any]) -> bool:
    """Whether an operation in flight is followed through a job the cloud returned (SDRS), not by polling the
    group: it was accepted with a ``cloudJobID``."""
    return operation.get("state") == "InProgress" and bool(operation.get("cloudJobID"))
