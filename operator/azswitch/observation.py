"""The backend-neutral view of a cloud replication group: what the planner and the operation lifecycle read.

Why it exists: the two cloud backends describe the same thing in different words. EVS says ``available``,
``reversing``, ``failovered``, ``error_reversing`` and gives the primary as an AZ name and health as a
``fault_level``; SDRS says ``protected``, ``reversing``, ``failed-over``, ``error-reversing``, gives the primary
as a *station* (``source``/``target``) and health in fields that may be ``null``. If the planner compared those
strings, every gate would be written twice and a status one backend added later would silently fall through.
So each backend maps its raw values into a :class:`GroupView` in one table-tested module
(``azswitch.cloud.evs_states``, …) and nothing above the cloud layer ever sees a backend's vocabulary — except
:class:`CloudFacts`, the raw values kept for ``status.cloud`` and for messages, because users search the
cloud's documentation for exactly those words.

Pure: no I/O, no backend import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class GroupState(StrEnum):
    """Where the group is in its protection lifecycle."""

    #: Protected and idle: replicating (see ``Replication``) with a primary; a switchover may start.
    PROTECTED = "Protected"
    #: A planned switchover (EVS ``reversing``, SDRS ``reversing``) is running.
    SWITCHING = "Switching"
    #: A failover is running.
    FAILING_OVER = "FailingOver"
    #: A failover finished; the group is not protected until it is reprotected.
    FAILED_OVER = "FailedOver"
    #: A reprotect after a failover is running.
    REPROTECTING = "Reprotecting"
    #: The cloud is busy with the group for another reason (creating, updating, deleting, enabling or
    #: disabling protection); nothing may start until it settles.
    BUSY = "Busy"
    #: The group exists but protection is disabled (SDRS ``available``): nothing can be switched.
    UNPROTECTED = "Unprotected"
    #: The last lifecycle step failed (``error``, ``error_reversing``, ``error-failing-over``, …).
    ERROR = "Error"
    #: A status the backend's mapping does not know; never acted on.
    UNKNOWN = "Unknown"


#: States in which the cloud is working on the group and any new action must wait.
IN_MOTION = frozenset(
    {GroupState.SWITCHING, GroupState.FAILING_OVER, GroupState.REPROTECTING, GroupState.BUSY}
)


class Replication(StrEnum):
    """The replication link's state."""

    ACTIVE = "Active"  # in sync: a planned switchover keeps every write
    COPYING = "Copying"  # synchronising: a copy known to be inconsistent
    STOPPED = "Stopped"  # paused, as after a failover (EVS/SDRS ``active-stopped``)
    INACTIVE = "Inactive"  # interrupted, not in sync
    ERROR = "Error"
    UNKNOWN = "Unknown"  # not reported


class Fault(StrEnum):
    """What the cloud says about the health of the group's sites."""

    NONE = "None"
    #: The primary site lost its storage; the cloud advises a failover (EVS fault level 2).
    PRIMARY_FAULTY = "PrimaryFaulty"
    #: The replication link is down: neither a switchover nor a failover is possible (EVS fault level 5).
    LINK_DOWN = "LinkDown"
    #: Some other reported fault: no planned switchover, and no failover on its word.
    DEGRADED = "Degraded"


@dataclass(frozen=True)
class CloudFacts:
    """The cloud's own values, as it sent them: shown in ``status.cloud`` and quoted in messages."""

    #: The backend's status word (``available``, ``protected``, ``error_reversing`` …).
    status: str
    replication_status: str | None = None
    #: EVS only: ``"0"``, ``"2"``, ``"5"`` …
    fault_level: str | None = None
    #: SDRS only: ``normal`` / ``abnormal`` (``None`` on groups created after a platform upgrade).
    health_status: str | None = None
    #: The cloud's error code or detail, if it gave one.
    failure_detail: str | None = None

    @property
    def fault_phrase(self) -> str:
        """How the cloud itself reports health, for messages: "fault level 2", "health status abnormal"."""
        if self.fault_level is not None:
            return f"fault level {self.fault_level}"
        return f"health status {self.health_status or 'unknown'}"

    @property
    def health_phrase(self) -> str:
        """Replication and fault as the cloud words them: "replication status inactive, fault level 0"."""
        return f"replication status {self.replication_status or 'unknown'}, {self.fault_phrase}"


@dataclass(frozen=True)
class GroupView:
    """One look at a cloud group, in the planner's terms. ``primary_az`` is always an AZ name."""

    state: GroupState
    primary_az: str | None
    #: The group's two AZs (sorted), or empty while they are unknown.
    availability_zones: tuple[str, ...]
    replication: Replication
    fault: Fault
    observed_at: datetime
    cloud: CloudFacts = field(default_factory=lambda: CloudFacts("unknown"))

    @property
    def in_motion(self) -> bool:
        return self.state in IN_MOTION

    @property
    def healthy(self) -> bool:
        """Replicating in sync with no fault: a planned switchover would lose nothing."""
        return self.replication is Replication.ACTIVE and self.fault is Fault.NONE
