"""What one reconcile carries from step to step, and the small helpers every part of the reconciler shares.

``Ctx`` is one reconcile's view of the resource: the body as the watch delivered it, the status as it was
(``old_status``) and as it will be written (``status``), the observation and the plan once made. ``Verdict`` is
how the resource stands after this reconcile, which the recorder turns into phase and conditions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from azswitch import plan as planning
from azswitch import status as statuses
from azswitch.cloud.api import CloudAPI
from azswitch.drains import Drain
from azswitch.durations import parse_timestamp
from azswitch.models import ReplicationGroupSpec
from azswitch.observation import GroupView

_M = TypeVar("_M", bound=BaseModel)

ANNOTATION_APPROVE = "azswitch.io/approve"
ANNOTATION_RETRY = "azswitch.io/retry"
ANNOTATION_RECONCILE = "azswitch.io/reconcile-requested-at"
ANNOTATION_APPROVE_DRAIN = "azswitch.io/approve-drain"
#: Set by ``azswitch apply --force`` (or a person): the operator makes no cloud call while it is present, as
#: under ``spec.suspend``, without touching the Git-owned spec. Its value says who holds the group.
ANNOTATION_HOLD = "azswitch.io/hold"
#: Under ``spec.drift: Report``, lets the operator move a drifted group back; its value names the drift
#: (``status.drift.id``), so an approval left over from an earlier drift approves nothing.
ANNOTATION_CORRECT_DRIFT = "azswitch.io/correct-drift"
PERSON_ANNOTATIONS = frozenset(
    {
        ANNOTATION_APPROVE,
        ANNOTATION_RETRY,
        ANNOTATION_RECONCILE,
        ANNOTATION_APPROVE_DRAIN,
        ANNOTATION_HOLD,
        ANNOTATION_CORRECT_DRIFT,
    }
)

#: The phase a resource shows while an operation of this kind runs.
ACTION_PHASE = {
    planning.Action.SWITCHOVER: "SwitchingOver",
    planning.Action.FAILOVER: "FailingOver",
    planning.Action.REPROTECT: "Reprotecting",
}


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)


#: The ZoneDrains selecting a group: (namespace, labels) → drains (active or not; ``drains.hold_for`` decides).
DrainLookup = Callable[[str, Mapping[str, str]], Awaitable[Sequence[Drain]]]


class CloudFactory(Protocol):
    """Builds the backend client for one resource (``Runtime`` and the test stages are ones)."""

    def client(
        self, service: str, endpoint: str, project_id: str, credentials: Credentials
    ) -> CloudAPI[Any]: ...


@dataclass
class Ctx:
    """One reconcile's view of the resource; ``status`` is what will be written."""

    body: Mapping[str, Any]
    namespace: str
    name: str
    generation: int
    annotations: Mapping[str, str]
    labels: Mapping[str, str]
    resource_version: str | None
    old_status: dict[str, Any]
    status: dict[str, Any]
    now: datetime
    observation: GroupView | None = None
    plan: planning.Plan | None = None
    # How old the observation was when it came from the shared listing; None: it is the group's own GET,
    # the only view anything is sent (or a request counted lost) on.
    seen_age: float | None = None
    # The shared listing this resource's group belongs to: (endpoint, project, access key).
    listing_key: Hashable | None = None
    # The drift (from, to) this reconcile already recorded: a second plan after a fresh read records it once.
    drift_recorded: tuple[str, str] | None = None
    # Read the group itself, not the shared listing (a hold just ended: the cloud may have been changed).
    read_fresh: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def of(cls, body: Mapping[str, Any], now: datetime) -> Ctx:
        meta = body.get("metadata", {})
        raw_status = body.get("status")
        old_status = dict(raw_status) if isinstance(raw_status, Mapping) else {}
        return cls(
            body=body,
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            generation=int(meta.get("generation") or 0),
            annotations=dict(meta.get("annotations") or {}),
            labels=dict(meta.get("labels") or {}),
            resource_version=meta.get("resourceVersion"),
            old_status=old_status,
            status=dict(old_status),
            now=now,
        )


@dataclass(frozen=True)
class Verdict:
    """How the resource stands after this reconcile: feeds phase and conditions."""

    phase: str
    ready: statuses.StatusTriple
    reconciling: statuses.ReasonMessage | None = None
    stalled: statuses.ReasonMessage | None = None


def log_context(ctx: Ctx) -> dict[str, str | None]:
    """Structured fields for every log line about a resource (the JSON formatter emits them)."""
    operation = ctx.status.get("operation") or ctx.old_status.get("operation")
    return {
        "rg_namespace": ctx.namespace,
        "rg_name": ctx.name,
        "operation_id": operation.get("id") if isinstance(operation, Mapping) else None,
    }


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


#: Status timestamps are read back as any Kubernetes timestamp is.
parse_time = parse_timestamp


def condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for entry in status.get("conditions") or []:
        if isinstance(entry, Mapping) and entry.get("type") == type_:
            return entry
    return None


def trusted_zones(
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


def parse_list(model: type[_M], value: Any) -> list[_M]:
    """Entries of a status list we wrote earlier, skipping any that someone else mangled."""
    parsed: list[_M] = []
    for item in value if isinstance(value, list) else []:
        try:
            parsed.append(model.model_validate(item))
        except ValidationError:
            continue
    return parsed
