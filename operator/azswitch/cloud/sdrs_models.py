"""The SDRS wire models: what ``GET /v1/{project_id}/server-groups`` and ``GET /v1/{project_id}/jobs/{id}``
return (cloud-api.md §4.2 and §4.5), parsed leniently.

Lenient where the sources disagree or the platform changed: ``created_at`` comes as ``2019-05-22 08:16:54.413``
(OTC doc), ``…T…Z`` (SDK comment) or with one fractional digit (the rename page); ``protected_status``,
``replication_status`` and ``health_status`` are ``null`` on groups created after a platform upgrade; counts may
be missing; unknown fields are ignored. What the values *mean* is ``azswitch.cloud.sdrs_states``' business.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator

from azswitch.cloud.lenient import Wire, WireID, lenient_datetime, text_or


def _optional_text(value: Any) -> str | None:
    # ``null`` and "" both mean "not reported"; a number is still text.
    return None if value in (None, "") else str(value)


OptionalText = Annotated[str | None, BeforeValidator(_optional_text)]


class ProtectionGroup(Wire):
    """A protection group (``server_group``) as shown by ``GET /v1/{project_id}/server-groups/{id}``."""

    id: WireID
    name: str | None = None
    description: str | None = None
    status: Annotated[str, BeforeValidator(text_or("unknown"))] = "unknown"
    #: The production AZ chosen at creation; never changes.
    source_availability_zone: OptionalText = None
    #: The DR AZ chosen at creation; never changes.
    target_availability_zone: OptionalText = None
    #: The *current* production site: ``source`` or ``target``.
    priority_station: OptionalText = None
    protected_status: OptionalText = None
    replication_status: OptionalText = None
    health_status: OptionalText = None
    progress: int | None = None
    domain_id: OptionalText = None
    protection_type: OptionalText = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @field_validator("created_at", "updated_at", mode="before")
    @classmethod
    def _dates(cls, value: Any) -> datetime | None:
        return lenient_datetime(value)

    @field_validator("progress", mode="before")
    @classmethod
    def _progress(cls, value: Any) -> int | None:
        try:
            return None if value in (None, "") else int(value)
        except (TypeError, ValueError):
            return None

    def zone_of(self, station: str | None) -> str | None:
        """The AZ name of a station (``source``/``target``), or ``None`` for anything else."""
        if station == "source":
            return self.source_availability_zone
        if station == "target":
            return self.target_availability_zone
        return None

    def station_of(self, az: str) -> str | None:
        """The station whose AZ is ``az``, or ``None`` if ``az`` is neither of the group's AZs."""
        if az and az == self.target_availability_zone:
            return "target"
        if az and az == self.source_availability_zone:
            return "source"
        return None

    @property
    def primary_az(self) -> str | None:
        return self.zone_of(self.priority_station)


class Job(Wire):
    """An SDRS job (``GET /v1/{project_id}/jobs/{job_id}``): ``INIT``, ``RUNNING``, ``SUCCESS`` or ``FAIL``."""

    job_id: WireID = ""
    job_type: OptionalText = None
    status: Annotated[str, BeforeValidator(text_or("UNKNOWN"))] = "UNKNOWN"
    error_code: OptionalText = None
    fail_reason: OptionalText = None
    entities: dict[str, Any] = Field(default_factory=dict)

    @field_validator("entities", mode="before")
    @classmethod
    def _entities(cls, value: Any) -> dict[str, Any]:
        return value if isinstance(value, dict) else {}
