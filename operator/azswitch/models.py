"""Typed models of the ``ReplicationGroup`` custom resource (design.md §2): its spec and its status.

The CRD (``crds/replicationgroups.azswitch.io.yaml``) is what the apiserver enforces; these models are what
the operator enforces, and ``tests/unit/test_crd.py`` proves the two agree field by field (names, required
sets, enums, patterns, defaults). The operator re-validates the spec because not every cluster enforces
everything (CEL rules are dropped by old apiservers, and objects stored before a CRD change are not
re-validated), and because a bad spec must become a readable ``Stalled`` condition rather than a traceback.

Spec models forbid unknown fields (a typo must not be silently ignored); status models ignore them, because
the operator reads back status that an older or newer version of itself may have written. Every model is
frozen: the reconciler derives new status from old and must never mutate what it read. No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from azswitch.durations import DURATION_PATTERN, format_duration, parse_duration
from azswitch.errors import ConfigError

# --- patterns shared with the CRD (the CRD test compares them literally) ----------------------------------

GROUP_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
PROJECT_ID_PATTERN = r"^[A-Za-z0-9]{1,64}$"
REGION_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
AZ_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
# No user info ("user:password@host"): credentials belong in the Secret, never in the resource.
ENDPOINT_PATTERN = r"^https?://[^\s/?#@]+(/[^\s]*)?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# metav1.Condition's own validation, so that a bad reason fails in a unit test, not at the apiserver.
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
CONDITION_MESSAGE_MAX_LENGTH = 32768
HISTORY_LIMIT = 10

Approval = Literal["Automatic", "Manual"]
#: The cloud API behind a group (``azswitch.cloud.registry`` has a backend for each).
CloudService = Literal["EVS", "SDRS"]
Phase = Literal[
    "Ready",
    "Pending",
    "SwitchingOver",
    "FailingOver",
    "Reprotecting",
    "AwaitingApproval",
    "Blocked",
    "Failed",
    "Suspended",
    "Unknown",
]
PlanAction = Literal["None", "Switchover", "Failover", "Reprotect"]
OperationAction = Literal["Switchover", "Failover", "Reprotect"]
OperationState = Literal["Requested", "InProgress"]
#: ``Observed``: a change in the cloud made by someone else (a history entry of kind External).
OperationResult = Literal["Succeeded", "Failed", "TimedOut", "Abandoned", "Observed"]
#: What to do when the cloud's primary changes without an operation of ours (design.md §3.3).
DriftPolicy = Literal["Correct", "Report"]
HistoryKind = Literal["Operation", "External"]
BlockerKind = Literal["Wait", "Hold", "Blocked", "Stalled"]
ConditionStatus = Literal["True", "False", "Unknown"]


def _duration_in(value: Any) -> Any:
    return value if isinstance(value, timedelta) else parse_duration(value)


#: A ``timedelta`` that reads and writes Go-style duration strings and shows the CRD's pattern in its schema.
Duration = Annotated[
    timedelta,
    BeforeValidator(_duration_in),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


#: Timestamps must carry a zone (a naive one is a bug in the caller) and are stored in UTC ("…Z").
Timestamp = Annotated[AwareDatetime, AfterValidator(_utc)]


def _duration_default(text: str) -> Any:
    # pydantic would show a timedelta default as ISO 8601 ("PT30M") in the JSON schema; the CRD says "30m".
    return Field(default=parse_duration(text), json_schema_extra={"default": text})


# --- spec --------------------------------------------------------------------------------------------------


class _Spec(BaseModel):
    # Booleans are StrictBool: the apiserver would refuse "yes" for a boolean, so the operator does too.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class SecretRef(_Spec):
    """A Secret in the resource's namespace with keys ``accessKey``, ``secretKey`` and optionally
    ``securityToken``."""

    name: str = Field(max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)


class CloudSpec(_Spec):
    """Where the group lives and how to reach it."""

    region: str = Field(max_length=64, pattern=REGION_PATTERN)
    project_id: str = Field(alias="projectID", pattern=PROJECT_ID_PATTERN)
    endpoint: str | None = Field(default=None, max_length=2048, pattern=ENDPOINT_PATTERN)
    service: CloudService = "EVS"
    credentials_secret_ref: SecretRef = Field(alias="credentialsSecretRef")


class SwitchoverSpec(_Spec):
    """How a planned switchover is carried out."""

    approval: Approval = "Automatic"
    timeout: Duration = _duration_default("30m")
    min_interval: Duration = Field(
        default=timedelta(0), alias="minInterval", json_schema_extra={"default": "0s"}
    )

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: timedelta) -> timedelta:
        # The pattern admits "0s"; a zero timeout would fail every operation the moment it starts.
        if value <= timedelta(0):
            raise ValueError("timeout must be greater than 0s")
        return value


class FailoverSpec(_Spec):
    """Whether the operator may fail over (and reprotect) on its own."""

    allowed: StrictBool = False
    auto_reprotect: StrictBool = Field(default=False, alias="autoReprotect")


class ReplicationGroupSpec(_Spec):
    """``spec`` of a ``ReplicationGroup``."""

    group_id: str = Field(alias="groupID", max_length=128, pattern=GROUP_ID_PATTERN)
    primary_az: str = Field(alias="primaryAZ", pattern=AZ_PATTERN)
    cloud: CloudSpec
    # Frozen instances as defaults: "switchover: {}" and an absent "switchover" mean the same thing.
    switchover: SwitchoverSpec = SwitchoverSpec()
    failover: FailoverSpec = FailoverSpec()
    dry_run: StrictBool = Field(default=False, alias="dryRun")
    suspend: StrictBool = False
    #: Correct: move an out-of-band change of the primary back; Report: record it and hold.
    drift: DriftPolicy = "Correct"


# --- status ------------------------------------------------------------------------------------------------


class _Status(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    def dump(self) -> dict[str, Any]:
        """The object exactly as the CRD stores it: camelCase keys, no ``None`` values, JSON types."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class CloudObservation(_Status):
    """What the operator last read from the cloud (raw cloud values, not interpreted)."""

    status: str
    replication_status: str | None = Field(default=None, alias="replicationStatus")
    fault_level: str | None = Field(default=None, alias="faultLevel")
    health_status: str | None = Field(default=None, alias="healthStatus")
    failure_detail: str | None = Field(default=None, alias="failureDetail")
    observed_at: Timestamp = Field(alias="observedAt")


class Blocker(_Status):
    """One reason the plan cannot be applied now."""

    reason: str = Field(pattern=CONDITION_REASON_PATTERN)
    message: str
    kind: BlockerKind | None = None
    retry_at: Timestamp | None = Field(default=None, alias="retryAt")


class PlanStatus(_Status):
    """The last plan: what the operator would do, and what stops it."""

    action: PlanAction
    source: str | None = Field(default=None, alias="from")
    target: str | None = Field(default=None, alias="to")
    reason: str = Field(pattern=CONDITION_REASON_PATTERN)
    message: str = ""
    blockers: list[Blocker] = Field(default_factory=list)


class OperationStatus(_Status):
    """The intent journal of the operation in flight (written *before* the cloud request is sent)."""

    id: str
    action: OperationAction
    source: str | None = Field(default=None, alias="from")
    target: str | None = Field(default=None, alias="to")
    state: OperationState
    requested_at: Timestamp = Field(alias="requestedAt")
    started_at: Timestamp | None = Field(default=None, alias="startedAt")
    accepted_at: Timestamp | None = Field(default=None, alias="acceptedAt")
    attempts: int = Field(default=1, ge=1)
    generation: int | None = Field(default=None, ge=0)
    message: str | None = None
    #: The operation handle the cloud returned (SDRS: the job id), journaled to follow it after a restart.
    cloud_job_id: str | None = Field(default=None, alias="cloudJobID")


class FinishedOperation(_Status):
    """A finished operation, as kept in ``lastOperation`` and ``history``."""

    id: str
    action: OperationAction
    source: str | None = Field(default=None, alias="from")
    target: str | None = Field(default=None, alias="to")
    result: OperationResult
    started_at: Timestamp = Field(alias="startedAt")
    finished_at: Timestamp = Field(alias="finishedAt")
    duration_seconds: float | None = Field(default=None, alias="durationSeconds", ge=0)
    attempts: int | None = Field(default=None, ge=1)
    generation: int | None = Field(default=None, ge=0)
    message: str | None = None
    #: ``External``: a change someone else made, recorded as drift; absent: an operation of ours.
    kind: HistoryKind | None = None


class DriftStatus(_Status):
    """``status.drift``: the cloud's primary moved without an operation of ours, and it is not corrected
    yet (``Report`` holds it until the spec changes or ``azswitch.io/correct-drift`` names ``id``)."""

    id: str
    source: str = Field(alias="from")
    target: str = Field(alias="to")
    detected_at: Timestamp = Field(alias="detectedAt")
    #: The generation the drift was seen at: a later spec is a new decision, and the hold ends.
    generation: int = Field(ge=0)
    policy: DriftPolicy


class HoldStatus(_Status):
    """``status.hold``: who holds the group through the annotation ``azswitch.io/hold``, and since when."""

    by: str
    since: Timestamp


class Condition(_Status):
    """A ``metav1.Condition``."""

    type: str = Field(max_length=316, pattern=CONDITION_TYPE_PATTERN)
    status: ConditionStatus
    observed_generation: int | None = Field(default=None, alias="observedGeneration", ge=0)
    last_transition_time: Timestamp = Field(alias="lastTransitionTime")
    reason: str = Field(min_length=1, max_length=1024, pattern=CONDITION_REASON_PATTERN)
    message: str = Field(max_length=CONDITION_MESSAGE_MAX_LENGTH)


class ReplicationGroupStatus(_Status):
    """``status`` of a ``ReplicationGroup``. Every field is optional: status is built up over time."""

    observed_generation: int | None = Field(default=None, alias="observedGeneration", ge=0)
    phase: Phase | None = None
    current_primary_az: str | None = Field(default=None, alias="currentPrimaryAZ")
    group_id: str | None = Field(default=None, alias="groupID")
    service: CloudService | None = None
    availability_zones: list[str] = Field(default_factory=list, alias="availabilityZones")
    cloud: CloudObservation | None = None
    plan: PlanStatus | None = None
    operation: OperationStatus | None = None
    last_operation: FinishedOperation | None = Field(default=None, alias="lastOperation")
    history: list[FinishedOperation] = Field(default_factory=list, max_length=HISTORY_LIMIT)
    pending_generation: int | None = Field(default=None, alias="pendingGeneration", ge=0)
    #: The AZ the operator steers to: spec.primaryAZ, unless a ZoneDrain holds the group away from it.
    effective_primary_az: str | None = Field(default=None, alias="effectivePrimaryAZ")
    #: The ZoneDrain that holds the group away from spec.primaryAZ, if one does.
    drained_by: str | None = Field(default=None, alias="drainedBy")
    drift: DriftStatus | None = None
    hold: HoldStatus | None = None
    conditions: list[Condition] = Field(default_factory=list)


# --- ZoneDrain (cluster-scoped) ------------------------------------------------------------------------------

#: A label key: an optional DNS-subdomain prefix and a name (Kubernetes' qualified name), at most 317 chars.
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
#: A label value: empty, or up to 63 alphanumerics with '-', '_', '.' inside.
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
SelectorOperator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
DrainPhase = Literal["Draining", "Drained", "Expired"]

LabelKey = Annotated[str, Field(max_length=317, pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]


class LabelSelectorRequirement(_Spec):
    """One ``matchExpressions`` entry, as in every Kubernetes label selector."""

    key: LabelKey
    operator: SelectorOperator
    values: list[LabelValue] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_the_operator(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self


class LabelSelector(_Spec):
    """A Kubernetes label selector: every ``matchLabels`` pair and every expression must hold. An empty
    selector matches everything."""

    match_labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, alias="matchLabels")
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list, alias="matchExpressions")


class ZoneDrainSpec(_Spec):
    """``spec`` of a ``ZoneDrain``: hold the matching ReplicationGroups away from ``zone``."""

    zone: str = Field(pattern=AZ_PATTERN)
    selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = Field(default=None, alias="namespaceSelector")
    expires_at: datetime | None = Field(default=None, alias="expiresAt")
    comment: str | None = Field(default=None, max_length=256)

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        # RFC 3339 always has a zone; a bare local time would mean something different on every machine.
        if value is not None and value.tzinfo is None:
            raise ValueError("expiresAt needs a time zone, e.g. 2026-12-08T06:00:00Z")
        return value


class DrainBlocked(_Status):
    """A matched group that cannot leave the drained zone, and why."""

    namespace: str
    name: str
    reason: str = Field(pattern=CONDITION_REASON_PATTERN)
    message: str


class ZoneDrainStatus(_Status):
    """``status`` of a ``ZoneDrain``, kept by the (cluster-wide) operator."""

    observed_generation: int | None = Field(default=None, alias="observedGeneration", ge=0)
    phase: DrainPhase | None = None
    matched_groups: int = Field(default=0, alias="matchedGroups", ge=0)
    drained_groups: int = Field(default=0, alias="drainedGroups", ge=0)
    moving_groups: int = Field(default=0, alias="movingGroups", ge=0)
    blocked_groups: int = Field(default=0, alias="blockedGroups", ge=0)
    blocked: list[DrainBlocked] = Field(default_factory=list, max_length=50)
    conditions: list[Condition] = Field(default_factory=list)


# --- readable spec errors ----------------------------------------------------------------------------------

# What a valid value looks like, by field path (aliases, list indices dropped).
_FIELD_HINTS: dict[str, str] = {
    "groupID": "set the ID of the cloud replication consistency group "
    "(e.g. 91085433-9499-4a68-b2c6-35072467ccd2): 1-128 letters, digits, '.', '_' or '-'",
    "primaryAZ": "set one of the group's two availability zones, e.g. az1.dc1",
    "cloud": "set cloud.region, cloud.projectID and cloud.credentialsSecretRef.name",
    "cloud.service": "use EVS (replication consistency groups, the default) or SDRS (protection groups)",
    "cloud.region": "use a region name such as cn-north-4 (lower-case letters, digits and '-', at most 64)",
    "cloud.projectID": "use the project ID from the cloud console: 1-64 letters and digits, "
    "e.g. 0123456789abcdef0123456789abcdef",
    "cloud.endpoint": "use an http(s) URL without user info, e.g. https://evs.cn-north-4.example.com, "
    "or remove the field to derive the endpoint from the region",
    "cloud.credentialsSecretRef": "set credentialsSecretRef.name to a Secret in this namespace",
    "cloud.credentialsSecretRef.name": "name a Secret in this namespace (a DNS subdomain, e.g. "
    "evs-credentials) holding the keys accessKey and secretKey",
    "switchover.approval": "use Automatic or Manual",
    "switchover.timeout": "use a duration greater than 0s, e.g. 30m or 1h30m",
    "switchover.minInterval": "use a duration, e.g. 0s, 90s or 10m",
    "failover.allowed": "use true or false",
    "failover.autoReprotect": "use true or false",
    "dryRun": "use true or false",
    "suspend": "use true or false",
    "drift": "use Correct (move an out-of-band change back) or Report (record it and hold)",
}


def _model_at(path: tuple[str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = ReplicationGroupSpec
    for key in path:
        for name, info in model.model_fields.items():
            if key in (name, info.alias):
                annotation = info.annotation
                break
        else:
            return None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        elif get_origin(annotation) is not None:
            nested = [
                arg for arg in get_args(annotation) if isinstance(arg, type) and issubclass(arg, BaseModel)
            ]
            if not nested:
                return None
            model = nested[0]
        else:
            return None
    return model


def _known_fields(parent: tuple[str, ...]) -> list[str]:
    model = _model_at(parent)
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _short(value: Any) -> str:
    # An endpoint may carry user info (a password): it must not reach conditions or events.
    text: str = re.sub(r"//[^/@\s]*@", "//***@", repr(value))
    return text if len(text) <= 80 else text[:77] + "..."


def spec_errors(exc: ValidationError) -> str:
    """One line per problem: ``spec.<path>: <what is wrong> (got <value>) — fix: <how>``, joined by "; "."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        shown = "spec" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
        key = ".".join(str(part) for part in loc if not isinstance(part, int))
        message = error["msg"].removeprefix("Value error, ")
        kind = error["type"]
        if kind == "missing":
            lines.append(f"{shown}: required field is missing — fix: {_FIELD_HINTS.get(key, 'set it')}")
            continue
        if kind == "extra_forbidden":
            parent = tuple(str(part) for part in loc[:-1] if not isinstance(part, int))
            known = ", ".join(_known_fields(parent)) or "none"
            lines.append(
                f"{shown}: unknown field — fix: remove it or correct its spelling (known here: {known})"
            )
            continue
        got = "" if message.startswith("invalid duration") else f" (got {_short(error['input'])})"
        hint = _FIELD_HINTS.get(key)
        lines.append(f"{shown}: {message}{got}" + (f" — fix: {hint}" if hint else ""))
    return "; ".join(lines)


def parse_spec(raw: Mapping[str, Any] | None) -> ReplicationGroupSpec:
    """Validate a resource's ``spec``; a bad one raises ``ConfigError`` with :func:`spec_errors`' text."""
    if raw is None:
        raise ConfigError("spec: missing — fix: set spec.groupID, spec.primaryAZ and spec.cloud")
    try:
        return ReplicationGroupSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(spec_errors(exc)) from exc
