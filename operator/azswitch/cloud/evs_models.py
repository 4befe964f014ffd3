"""The EVS wire models: what ``GET …/os-vendor-replication-consistency-groups``, the replication pairs and the
volumes return (cloud-api.md §2.3 and §3), parsed leniently.

The models are lenient on purpose: the real API returns unknown fields, ``null`` timestamps, timestamps without
a zone, numbers where strings are documented and a documented typo (``priority_staion``), and none of that
may break observation. What the values *mean* is ``azswitch.cloud.evs_states``' business.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from pydantic import AliasChoices, BeforeValidator, Field, field_validator

from azswitch.cloud.lenient import FaultLevel, Wire, WireID, lenient_datetime, text_or


class ConsistencyGroup(Wire):
    """A replication consistency group as shown by ``GET …/os-vendor-replication-consistency-groups/{id}``."""

    id: WireID
    name: str | None = None
    description: str | None = None
    status: Annotated[str, BeforeValidator(text_or("unknown"))] = "unknown"
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
        return lenient_datetime(value)

    @field_validator("failure_detail", mode="before")
    @classmethod
    def _failure_detail(cls, value: Any) -> str | None:
        return None if value in (None, "") else str(value)

    @field_validator("replication_ids", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> list[str]:
        return _id_list(value)


class ReplicationPair(Wire):
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


class Volume(Wire):
    id: WireID
    availability_zone: str | None = None
    status: str | None = None


def _id_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(item) for item in value]
