"""The backend-neutral cloud interface the reconciler talks to, and the wire models it returns.

The reconciler never sees HTTP: it sees ``CloudAPI`` (one implementation per backend; EVS consistency
groups first, SDRS protection groups next) and the project's exceptions from ``azswitch.errors``. The
models are lenient on purpose: the real API returns unknown fields, ``null`` timestamps, timestamps without
a zone, numbers where strings are documented and a documented typo (``priority_staion``), and none of that
may break observation.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

#: Group statuses during which the cloud is busy with the group and a new action must wait.
TRANSITIONAL_STATUSES = frozenset({"creating", "updating", "deleting", "reversing", "failovering"})
#: Group statuses that mean the last lifecycle step failed.
ERROR_STATUSES = frozenset({"error", "error_reversing", "error_failovering", "error_deleting"})
#: The most groups one LIST page returns (evs_04_2051: ``limit`` 1 to 1000, default 1000).
MAX_PAGE_SIZE = 1000


def _lenient_datetime(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        text = str(value).strip().replace(" ", "T")
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
    # The documented examples carry no zone; the cloud's clocks are UTC.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _text_or(default: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        return default if value in (None, "") else str(value)

    return convert


#: A documented string that real responses may send as a number or null ("0" means no fault).
FaultLevel = Annotated[str, BeforeValidator(_text_or("0"))]
#: IDs are strings on the wire; a number must not fail observation.
WireID = Annotated[str, BeforeValidator(_text_or(""))]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class ConsistencyGroup(_Wire):
    """A replication consistency group as shown by ``GET …/os-vendor-replication-consistency-groups/{id}``."""

    id: WireID
    name: str | None = None
    description: str | None = None
    status: Annotated[str, BeforeValidator(_text_or("unknown"))] = "unknown"
    priority_station: str | None = Field(
        default=None, validation_alias=AliasChoices("priority_station", "priority_staion")
    )
    replication_model: str | None = None
    replication_status: str | None = None
    replication_ids: list[str] = Field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    failure_detail: str | None = None
    fault_level: FaultLevel = "0"

    @field_validator("created_at", "updated_at", mode="before")
    @classmethod
    def _dates(cls, value: Any) -> datetime | None:
        return _lenient_datetime(value)

    @field_validator("failure_detail", mode="before")
    @classmethod
    def _failure_detail(cls, value: Any) -> str | None:
        return None if value in (None, "") else str(value)

    @field_validator("replication_ids", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> list[str]:
        return _id_list(value)


class ReplicationPair(_Wire):
    """An EVS replication pair (``os-vendor-replications``): two disks in two AZs."""

    id: WireID
    name: str | None = None
    status: str | None = None
    replication_consistency_group_id: str | None = None
    volume_ids: list[str] = Field(default_factory=list)
    priority_station: str | None = None
    replication_status: str | None = None
    fault_level: FaultLevel = "0"
    failure_detail: str | None = None
    record_metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("volume_ids", mode="before")
    @classmethod
    def _volume_ids(cls, value: Any) -> list[str]:
        # Documented as a comma-separated string, not an array; accept both.
        return _id_list(value)

    @field_validator("record_metadata", mode="before")
    @classmethod
    def _metadata(cls, value: Any) -> dict[str, Any]:
        # Typed "Object" in the docs, a JSON-encoded string in the example.
        if isinstance(value, str):
            try:
                decoded = json.loads(value)
            except ValueError:
                return {}
            return decoded if isinstance(decoded, dict) else {}
        return value if isinstance(value, dict) else {}


class Volume(_Wire):
    id: WireID
    availability_zone: str | None = None
    status: str | None = None


def _id_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(item) for item in value]


class CloudAPI(Protocol):
    """What the reconciler needs from a replication backend, for one (endpoint, project, credentials).

    Reads may be retried freely by the implementation. Mutating actions are sent at most once per call:
    a transport failure after the request may have been sent raises ``OutcomeUnknown`` and the caller must
    observe the group before deciding anything.
    """

    async def get_group(self, group_id: str) -> ConsistencyGroup: ...

    async def list_groups(self, **filters: str) -> list[ConsistencyGroup]: ...

    async def discover_availability_zones(
        self, group_id: str, *, group: ConsistencyGroup | None = None
    ) -> list[str]:
        """The group's AZs (sorted), learnt from its replication pairs and their volumes; pass the group if
        it was just read, to save reading it again."""
        ...

    async def switchover(self, group_id: str) -> None: ...

    async def failover(self, group_id: str) -> None: ...

    async def reprotect(self, group_id: str) -> None: ...

    async def sync(self, group_id: str) -> None: ...
