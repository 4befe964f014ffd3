"""The simulator's seed document: which projects, credentials, users, groups and pairs exist at start.

``groups`` are EVS replication consistency groups (with their pairs), ``sdrsGroups`` SDRS protection groups.

A seed is plain YAML or JSON so that a developer can write one by hand, and it is validated with pydantic
before anything is built from it, so a typo fails at start-up with the offending field named
(``groups[0].primaryAZ: 'az3.dc3' is not one of availabilityZones ['az1.dc1', 'az2.dc2']``) rather than
as a puzzling cloud answer later. Keys are camelCase like the ``ReplicationGroup`` resource; unknown keys are
errors. IDs left out are derived deterministically (UUIDv5) so the same seed always yields the same IDs.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

#: The seed ``azswitch simulate`` uses when no ``--seed`` is given (shipped as package data).
DEMO_SEED = Path(__file__).with_name("demo-seed.yaml")

#: Namespace for IDs the seed leaves out, so they are stable across runs.
_ID_NAMESPACE = uuid.UUID("5f0c2a57-6f1e-4d3b-9a53-0b1c6f0d7a11")

GroupStatus = Literal[
    "creating",
    "available",
    "error",
    "deleting",
    "updating",
    "reversing",
    "error_reversing",
    "failovering",
    "failovered",
    "error_failovering",
    "error_deleting",
]
ReplicationStatus = Literal["active", "active-stopped", "copying", "inactive", "error"]
FaultLevel = Literal["0", "2", "5"]
GROUP_STATUSES: tuple[str, ...] = get_args(GroupStatus)
REPLICATION_STATUSES: tuple[str, ...] = get_args(ReplicationStatus)
FAULT_LEVELS: tuple[str, ...] = get_args(FaultLevel)

#: SDRS protection-group statuses (cloud-api.md §4.3).
SdrsStatus = Literal[
    "creating",
    "available",
    "protected",
    "deleting",
    "error-deleting",
    "error",
    "starting",
    "error-starting",
    "reprotecting",
    "error-reprotecting",
    "stopping",
    "error-stopping",
    "reversing",
    "error-reversing",
    "failing-over",
    "failed-over",
    "error-failing-over",
]
SdrsReplicationStatus = Literal["active", "inactive", "copying", "active-stopped"]
SdrsHealthStatus = Literal["normal", "abnormal"]
SdrsStation = Literal["source", "target"]
SDRS_STATUSES: tuple[str, ...] = get_args(SdrsStatus)
SDRS_REPLICATION_STATUSES: tuple[str, ...] = get_args(SdrsReplicationStatus)
SDRS_HEALTH_STATUSES: tuple[str, ...] = get_args(SdrsHealthStatus)
SDRS_STATIONS: tuple[str, ...] = get_args(SdrsStation)


class SeedError(ValueError):
    """The seed document is invalid; the message names every bad field."""


def derived_id(*parts: str) -> str:
    """A stable UUID for an object the seed did not name."""
    return str(uuid.uuid5(_ID_NAMESPACE, "/".join(parts)))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def _fault_level(value: Any) -> Any:
    # YAML reads `faultLevel: 2` as an int; the cloud's field is a string, so accept both spellings.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _check_azs(azs: list[str], primary: str) -> None:
    if len(azs) != 2 or azs[0] == azs[1]:
        raise ValueError(f"availabilityZones must name two different AZs, got {azs}")
    if primary not in azs:
        raise ValueError(f"primaryAZ {primary!r} is not one of availabilityZones {azs}")


class ProjectSeed(_Model):
    id: str = Field(min_length=1, pattern=r"^[^/?#\s]+$", description="Project ID used in /v2/{project_id}.")
    name: str = Field(min_length=1, description="Project name, for IAM scope by name (e.g. cn-north-4).")


class CredentialSeed(_Model):
    access_key: str = Field(alias="accessKey", min_length=1)
    secret_key: str = Field(alias="secretKey", min_length=1)
    security_token: str | None = Field(
        None, alias="securityToken", description="Set for temporary AK/SK: requests must send it."
    )


class UserSeed(_Model):
    name: str = Field(min_length=1)
    password: str = Field(min_length=1)
    domain: str = Field(min_length=1, description="Account (domain) name the user belongs to.")


class PairSeed(_Model):
    """One replication pair of a seeded group: a production disk and a DR disk."""

    id: str | None = None
    name: str | None = None
    size_gb: int = Field(10, alias="sizeGB", ge=1, le=32768)
    volume_type: str = Field("SSD", alias="volumeType", min_length=1)
    production_volume_id: str | None = Field(None, alias="productionVolumeID")
    dr_volume_id: str | None = Field(None, alias="drVolumeID")


class UngroupedPairSeed(PairSeed):
    """A pair in no group, so that a test can create a group from it."""

    project_id: str = Field(alias="projectID", min_length=1)
    availability_zones: list[str] = Field(alias="availabilityZones")
    primary_az: str = Field(alias="primaryAZ")
    replication_status: ReplicationStatus = Field("active", alias="replicationStatus")

    @model_validator(mode="after")
    def _azs(self) -> UngroupedPairSeed:
        _check_azs(self.availability_zones, self.primary_az)
        return self


class GroupSeed(_Model):
    project_id: str = Field(alias="projectID", min_length=1, pattern=r"^[^/?#\s]+$")
    id: str | None = Field(None, min_length=1, pattern=r"^[^/?#\s]+$")
    name: str = Field("", max_length=255)
    description: str = Field("", max_length=255)
    availability_zones: list[str] = Field(alias="availabilityZones")
    primary_az: str = Field(alias="primaryAZ")
    status: GroupStatus = "available"
    replication_status: ReplicationStatus = Field("active", alias="replicationStatus")
    fault_level: FaultLevel = Field("0", alias="faultLevel")
    failure_detail: str | None = Field(None, alias="failureDetail")
    created_at: str | None = Field(None, alias="createdAt", description="Shown verbatim; default: seed time.")
    pairs: int | list[PairSeed] = Field(1, description="How many pairs, or each pair spelt out.")

    _fault = field_validator("fault_level", mode="before")(_fault_level)

    @field_validator("pairs")
    @classmethod
    def _pairs(cls, value: int | list[PairSeed]) -> int | list[PairSeed]:
        if isinstance(value, int) and not 0 <= value <= 100:
            raise ValueError("pairs must be between 0 and 100")
        return value

    @model_validator(mode="after")
    def _azs(self) -> GroupSeed:
        _check_azs(self.availability_zones, self.primary_az)
        return self

    def group_id(self, index: int) -> str:
        return self.id or derived_id(self.project_id, "group", self.name or str(index))

    def pair_seeds(self) -> list[PairSeed]:
        return [PairSeed() for _ in range(self.pairs)] if isinstance(self.pairs, int) else list(self.pairs)


class SdrsGroupSeed(_Model):
    """One SDRS protection group (cloud-api.md §4.2); its AZs are fixed at creation, the station moves."""

    project_id: str = Field(alias="projectID", min_length=1, pattern=r"^[^/?#\s]+$")
    id: str | None = Field(None, min_length=1, pattern=r"^[^/?#\s]+$")
    name: str = Field("", max_length=64)
    description: str = Field("", max_length=64)
    source_az: str = Field(alias="sourceAZ", min_length=1, description="source_availability_zone.")
    target_az: str = Field(alias="targetAZ", min_length=1, description="target_availability_zone.")
    priority_station: SdrsStation = Field("source", alias="priorityStation")
    status: SdrsStatus = "protected"
    replication_status: SdrsReplicationStatus = Field("active", alias="replicationStatus")
    health_status: SdrsHealthStatus = Field("normal", alias="healthStatus")
    post_upgrade: bool = Field(
        False, alias="postUpgrade", description="protected/replication/health status are null on the wire."
    )
    created_at: str | None = Field(None, alias="createdAt", description="Shown verbatim; default: seed time.")

    @model_validator(mode="after")
    def _azs(self) -> SdrsGroupSeed:
        if self.source_az == self.target_az:
            raise ValueError(f"targetAZ {self.target_az!r} must differ from sourceAZ {self.source_az!r}")
        return self

    def group_id(self, index: int) -> str:
        return self.id or derived_id(self.project_id, "sdrs-group", self.name or str(index))


class Timings(_Model):
    """How long each asynchronous step takes, in simulator seconds."""

    create_seconds: float = Field(2.0, alias="createSeconds", ge=0)
    update_seconds: float = Field(2.0, alias="updateSeconds", ge=0)
    delete_seconds: float = Field(2.0, alias="deleteSeconds", ge=0)
    switchover_seconds: float = Field(5.0, alias="switchoverSeconds", ge=0)
    failover_seconds: float = Field(5.0, alias="failoverSeconds", ge=0)
    reprotect_seconds: float = Field(5.0, alias="reprotectSeconds", ge=0)
    sync_seconds: float = Field(3.0, alias="syncSeconds", ge=0)
    copying_seconds: float = Field(
        3.0, alias="copyingSeconds", ge=0, description="replication_status stays copying this long."
    )
    start_seconds: float = Field(
        3.0, alias="startSeconds", ge=0, description="SDRS enable protection (start-server-group)."
    )
    stop_seconds: float = Field(
        3.0, alias="stopSeconds", ge=0, description="SDRS disable protection (stop-server-group)."
    )
    token_lifetime_seconds: float = Field(86400.0, alias="tokenLifetimeSeconds", gt=0)


class Seed(_Model):
    projects: list[ProjectSeed] = Field(default_factory=list)
    credentials: list[CredentialSeed] = Field(default_factory=list)
    users: list[UserSeed] = Field(default_factory=list)
    groups: list[GroupSeed] = Field(default_factory=list)
    pairs: list[UngroupedPairSeed] = Field(default_factory=list)
    sdrs_groups: list[SdrsGroupSeed] = Field(default_factory=list, alias="sdrsGroups")
    timings: Timings = Field(default_factory=Timings)

    @model_validator(mode="after")
    def _unique(self) -> Seed:
        _no_duplicates("projects", [p.id for p in self.projects])
        _no_duplicates("project names", [p.name for p in self.projects])
        _no_duplicates("credentials", [c.access_key for c in self.credentials])
        _no_duplicates("users", [f"{u.domain}/{u.name}" for u in self.users])
        # EVS and SDRS groups share the control API's /_sim/groups/{id}, so their IDs must not clash.
        _no_duplicates(
            "groups",
            [g.group_id(i) for i, g in enumerate(self.groups)]
            + [g.group_id(i) for i, g in enumerate(self.sdrs_groups)],
        )
        pair_ids = [p.id for g in self.groups for p in g.pair_seeds() if p.id]
        pair_ids += [p.id for p in self.pairs if p.id]
        _no_duplicates("pairs", pair_ids)
        return self

    def project_ids(self) -> list[str]:
        """Every project the seed mentions, listed ones first."""
        ids = [p.id for p in self.projects]
        mentioned = [g.project_id for g in self.groups] + [p.project_id for p in self.pairs]
        for pid in mentioned + [g.project_id for g in self.sdrs_groups]:
            if pid not in ids:
                ids.append(pid)
        return ids


def _no_duplicates(what: str, values: list[str]) -> None:
    seen: set[str] = set()
    dupes: set[str] = set()
    for value in values:
        (dupes if value in seen else seen).add(value)
    if dupes:
        raise ValueError(f"duplicate {what}: {', '.join(sorted(dupes))}")


def _format_errors(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors():
        loc = ""
        for part in item["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"  {loc or '(document)'}: {message}")
    return f"invalid simulator seed {source}:\n" + "\n".join(lines)


def parse_seed(document: Any, source: str = "(document)") -> Seed:
    """Validate a decoded seed document (a mapping); raise ``SeedError`` naming each bad field."""
    if isinstance(document, Seed):
        return document
    if document is None:
        document = {}
    if not isinstance(document, Mapping):
        raise SeedError(f"invalid simulator seed {source}: the document must be a mapping, not {document!r}")
    try:
        return Seed.model_validate(dict(document))
    except ValidationError as exc:
        raise SeedError(_format_errors(exc, source)) from None


def load_seed(path: str | Path) -> Seed:
    """Read and validate a YAML or JSON seed file (JSON is valid YAML)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SeedError(f"cannot read simulator seed {path}: {exc.strerror or exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SeedError(f"simulator seed {path} is not valid YAML/JSON: {exc}") from None
    return parse_seed(document, str(path))


def load_demo_seed() -> Seed:
    return load_seed(DEMO_SEED)
