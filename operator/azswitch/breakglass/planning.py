"""``azswitch plan``: what the operator would do with each group now, computed by the operator's own code.

The group is read by the operator's ``Reader`` (its own GET or the project's shared LIST, and the AZ pair
discovered from replication pairs and volumes, exactly as the operator discovers it), and planned by
``azswitch.plan.plan`` with a ``PlanInput`` built as ``reconcile/starting.py`` builds it. Reads only: no
mutating cloud API is ever called from here.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azswitch import plan as planning
from azswitch.breakglass.inputs import Clouds, Inputs, to_credentials
from azswitch.breakglass.localkube import LocalKube
from azswitch.breakglass.manifests import Manifest
from azswitch.errors import CloudAuthError, CloudError, ConfigError, GroupNotFound
from azswitch.metrics import Metrics
from azswitch.reconcile.context import (
    ANNOTATION_APPROVE,
    ANNOTATION_APPROVE_DRAIN,
    ANNOTATION_RETRY,
    Ctx,
    parse_time,
)
from azswitch.reconcile.credentials import CredentialStore
from azswitch.reconcile.listing import GroupCache
from azswitch.reconcile.reading import Reader
from azswitch.reconcile.recording import Recorder
from azswitch.reconcile.slots import OperationSlots
from azswitch.settings import Settings, mask_userinfo, resolve_endpoint


@dataclass
class Row:
    """One group's plan, as printed."""

    key: str
    source: str
    service: str
    group_id: str
    desired: str
    current: str | None = None
    zones: list[str] = field(default_factory=list)
    action: str = "None"
    reason: str = ""
    message: str = ""
    blockers: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None
    #: An operation journaled already (by the operator in the cluster, or by an earlier apply).
    operation: dict[str, Any] | None = None
    resume: bool = False

    @property
    def changes(self) -> bool:
        """Something is (or should be) changed for this group."""
        if self.operation is not None:
            return True
        return self.action != "None" or (self.current is not None and self.current != self.desired)

    @property
    def waits_only(self) -> bool:
        """Nothing stops it but time (a busy group, replication syncing, a cooldown, the cap)."""
        return all(b.get("kind") == str(planning.BlockKind.WAIT) for b in self.blockers)

    def to_dict(self) -> dict[str, Any]:
        namespace, _, name = self.key.partition("/")
        data: dict[str, Any] = {
            "namespace": namespace,
            "name": name,
            "source": self.source,
            "service": self.service,
            "groupID": self.group_id,
            "currentAZ": self.current,
            "desiredAZ": self.desired,
            "availabilityZones": self.zones,
            "action": self.action,
            "reason": self.reason,
            "message": self.message,
            "blockers": self.blockers,
            "changes": self.changes,
        }
        if self.operation is not None:
            data["operation"] = self.operation
        if self.error is not None:
            data["error"] = self.error
        return data


def new_reader(settings: Settings) -> Reader:
    """The operator's Reader, on its own cache; it reads and never writes (its recorder is never asked to)."""
    rng = random.Random()
    kube = LocalKube({}, {}, None)
    slots = OperationSlots(1)
    recorder = Recorder(settings, kube, slots, Metrics(), rng)
    return Reader(settings, GroupCache(), recorder, CredentialStore(kube, 0, lambda: datetime.now(UTC)), rng)


async def plan_group(
    manifest: Manifest,
    status: Mapping[str, Any],
    inputs: Inputs,
    reader: Reader,
    clouds: Clouds,
    settings: Settings,
) -> Row:
    """Read the group (reads only) and plan it with the operator's planner."""
    spec = manifest.spec
    row = Row(manifest.key, manifest.source, spec.cloud.service, spec.group_id, spec.primary_az)
    operator_op = inputs.operator_operation(manifest.key)
    if operator_op is not None:
        row.operation = operator_op
        row.blockers.append(
            {
                "reason": "OperationInFlight",
                "kind": str(planning.BlockKind.BLOCKED),
                "message": f"the operator journaled {operator_op.get('action')} {operator_op.get('id')} "
                f"({operator_op.get('state')}) in the cluster's status.operation; break-glass leaves this "
                "group to it: wait for the operation to finish, or let the operator resume it",
            }
        )
    if spec.suspend:
        row.blockers.append(
            {
                "reason": "Suspended",
                "kind": str(planning.BlockKind.HOLD),
                "message": "spec.suspend is true: no cloud calls are made",
            }
        )
        return row
    body = dict(manifest.body)
    body["status"] = dict(status)
    now = datetime.now(UTC)
    ctx = Ctx.of(body, now)
    credentials = to_credentials(inputs.secrets[(manifest.namespace, spec.cloud.credentials_secret_ref.name)])
    try:
        endpoint = resolve_endpoint(settings, spec.cloud.region, spec.cloud.endpoint, spec.cloud.service)
        cloud = clouds.client(spec.cloud.service, endpoint, spec.cloud.project_id, credentials)
    except ConfigError as exc:
        row.error = f"InvalidEndpoint: {mask_userinfo(str(exc))}"
        return row
    ctx.listing_key = (spec.cloud.service, endpoint, spec.cloud.project_id, credentials.access_key)
    try:
        observation = await reader.observe(ctx, spec, cloud)
    except GroupNotFound as exc:
        row.error = (
            f"GroupNotFound: cloud group {spec.group_id} does not exist in project {spec.cloud.project_id} at "
            f"{endpoint}: {exc}; fix: check spec.groupID, spec.cloud.projectID, region/endpoint and service"
        )
        return row
    except CloudAuthError as exc:
        row.error = (
            f"CredentialsRejected: the cloud refused the credentials: {exc}; fix: check the AK/SK given"
        )
        return row
    except CloudError as exc:
        row.error = f"CloudUnreachable: reading the group failed: {exc}"
        return row
    row.current = observation.primary_az
    row.zones = list(observation.availability_zones)
    if operator_op is not None:
        return row
    journaled = status.get("operation")
    if isinstance(journaled, Mapping):
        row.operation = dict(journaled)
        row.resume = True
        row.action = str(journaled.get("action"))
        row.reason = "Resume"
        row.message = (
            f"{journaled.get('action')} {journaled.get('id')} ({journaled.get('state')}, "
            f"{journaled.get('from')} → {journaled.get('to')}) is in the journal: resumed by observing, never re-sent"
        )
        return row
    last = status.get("lastOperation")
    if isinstance(last, Mapping) and _failure_holds(last, manifest):
        row.action = str(last.get("action"))
        row.reason = "OperationFailed"
        row.blockers.append(
            {
                "reason": "OperationFailed",
                "kind": str(planning.BlockKind.STALLED),
                "message": f"{last.get('action')} {last.get('id')} ended {last.get('result')} in an earlier "
                f"apply: {last.get('message', '')}; fix: check the cloud group, then rerun with --retry",
            }
        )
        return row
    plan = planning.plan(
        planning.PlanInput(
            spec=spec,
            observation=observation,
            generation=manifest.generation,
            now=now,
            approved_generation=planning.parse_approval(ctx.annotations.get(ANNOTATION_APPROVE)),
            last_finished_at=parse_time(last.get("finishedAt")) if isinstance(last, Mapping) else None,
            capacity_available=True,
            name=manifest.name,
            namespace=manifest.namespace,
            hold=None,
            approved_drain=ctx.annotations.get(ANNOTATION_APPROVE_DRAIN),
        )
    )
    row.action = str(plan.action)
    row.reason = plan.reason
    row.message = plan.message
    row.blockers = [{"reason": b.reason, "kind": str(b.kind), "message": b.message} for b in plan.blockers]
    return row


def _failure_holds(last: Mapping[str, Any], manifest: Manifest) -> bool:
    """As the operator's Starter: a Failed/TimedOut/Abandoned operation of this generation stops all action
    until a retry names it."""
    if last.get("result") not in ("Failed", "TimedOut", "Abandoned"):
        return False
    if last.get("generation") != manifest.generation:
        return False
    annotations = manifest.body["metadata"].get("annotations") or {}
    return annotations.get(ANNOTATION_RETRY) != str(last.get("id"))


async def plan_all(
    inputs: Inputs,
    statuses: Mapping[str, Mapping[str, Any]],
    clouds: Clouds,
    settings: Settings,
) -> list[Row]:
    reader = new_reader(settings)
    rows = []
    for manifest in inputs.manifests:
        rows.append(
            await plan_group(manifest, statuses.get(manifest.key, {}), inputs, reader, clouds, settings)
        )
    return rows


def exit_code(rows: list[Row]) -> int:
    """Terraform's -detailed-exitcode: 0 nothing to do, 2 changes planned, 1 an error."""
    if any(row.error for row in rows):
        return 1
    return 2 if any(row.changes for row in rows) else 0
