"""SDRS's vocabulary mapped into the neutral ``GroupView``: the one place that knows what SDRS's words mean.

Every protection-group ``status`` of cloud-api.md §4.3 (all 17), every ``replication_status`` and
``health_status`` of §4.2 has a row here, and ``tests/unit/test_sdrs_states.py`` has a row for each, so an
unmapped value cannot hide. A status SDRS may add later maps to ``Unknown``, which the planner never acts on.

Two SDRS facts shape the mapping:

* The primary is a *station*. ``priority_station`` says ``source`` or ``target``, and the AZ names stay fixed
  in ``source_availability_zone``/``target_availability_zone``, so the primary AZ is the AZ of the station.
  Nothing above this module ever sees ``source`` or ``target``.
* Groups created after a platform upgrade report ``protected_status``, ``replication_status`` and
  ``health_status`` as ``null`` (§4.2). Then health is decided on ``status`` + ``priority_station``: a
  ``protected`` group with a known station is replicating (SDRS only calls a group protected while its pairs
  synchronise), a ``failed-over`` group has replication stopped (§4.3 outcomes), and anything else is
  unknown — which no gate treats as healthy. When the fields are present they are used: ``health_status:
  abnormal`` is a fault at the sites (a planned switchover is blocked; a failover follows
  ``spec.failover.allowed``, as for EVS fault level 2), and ``replication_status`` other than ``active``
  blocks a planned switchover.

Pure: the wire model in, a view out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from azswitch.cloud.sdrs_models import ProtectionGroup
from azswitch.observation import CloudFacts, Fault, GroupState, GroupView, Replication

#: Protection-group ``status`` (§4.3).
STATES: dict[str, GroupState] = {
    "creating": GroupState.BUSY,
    # Created, protection disabled: nothing can be switched until the user enables protection.
    "available": GroupState.UNPROTECTED,
    "protected": GroupState.PROTECTED,
    "deleting": GroupState.BUSY,
    "error-deleting": GroupState.ERROR,
    "error": GroupState.ERROR,
    "starting": GroupState.BUSY,
    "error-starting": GroupState.ERROR,
    "reprotecting": GroupState.REPROTECTING,
    "error-reprotecting": GroupState.ERROR,
    "stopping": GroupState.BUSY,
    "error-stopping": GroupState.ERROR,
    "reversing": GroupState.SWITCHING,
    "error-reversing": GroupState.ERROR,
    "failing-over": GroupState.FAILING_OVER,
    "failed-over": GroupState.FAILED_OVER,
    "error-failing-over": GroupState.ERROR,
}

#: ``replication_status`` (§4.2).
REPLICATION: dict[str, Replication] = {
    "active": Replication.ACTIVE,
    "inactive": Replication.INACTIVE,
    "copying": Replication.COPYING,
    "active-stopped": Replication.STOPPED,
}

#: ``health_status`` (§4.2). ``abnormal`` does not say which site is at fault; it is treated as EVS's fault
#: level 2 (the production site's storage is in trouble), so a failover is possible only where the spec
#: allows one.
HEALTH: dict[str, Fault] = {"normal": Fault.NONE, "abnormal": Fault.PRIMARY_FAULTY}

#: What replication is on a post-upgrade group (``replication_status: null``), by ``status``.
_REPLICATION_WITHOUT_FIELD: dict[GroupState, Replication] = {
    GroupState.PROTECTED: Replication.ACTIVE,
    GroupState.FAILED_OVER: Replication.STOPPED,
}


def view_of(group: ProtectionGroup, zones: Sequence[str], observed_at: datetime) -> GroupView:
    """The neutral view of an SDRS protection group (``zones``: its two AZs, sorted)."""
    state = STATES.get(group.status, GroupState.UNKNOWN)
    primary = group.primary_az
    if group.replication_status is not None:
        replication = REPLICATION.get(group.replication_status, Replication.UNKNOWN)
    elif primary is not None:
        replication = _REPLICATION_WITHOUT_FIELD.get(state, Replication.UNKNOWN)
    else:
        replication = Replication.UNKNOWN
    # Post-upgrade (``null``): no health field to read; status and station decide (see the module docstring).
    fault = Fault.NONE if group.health_status is None else HEALTH.get(group.health_status, Fault.DEGRADED)
    return GroupView(
        state=state,
        primary_az=primary,
        availability_zones=tuple(zones),
        replication=replication,
        fault=fault,
        observed_at=observed_at,
        cloud=CloudFacts(
            status=group.status,
            replication_status=group.replication_status,
            health_status=group.health_status,
        ),
    )


def zones_of(group: ProtectionGroup) -> list[str]:
    """The group's two AZs, sorted, from the group itself (no further reads): empty if SDRS left one out."""
    zones = {group.source_availability_zone, group.target_availability_zone} - {None, ""}
    return sorted(z for z in zones if z is not None) if len(zones) == 2 else []
