"""EVS's vocabulary mapped into the neutral ``GroupView``: the one place that knows what EVS's words mean.

Every value cloud-api.md §2.4 lists (group ``status``, ``replication_status``) and every documented
``fault_level`` (§2.3) has a row here, and ``tests/unit/test_evs_states.py`` has a row for each of them, so an
unmapped value cannot hide. A status EVS may add later maps to ``Unknown``, which the planner never acts on.

Pure: the wire model in, a view out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from azswitch.cloud.evs_models import ConsistencyGroup
from azswitch.observation import CloudFacts, Fault, GroupState, GroupView, Replication

#: Group ``status`` (§2.4.1).
STATES: dict[str, GroupState] = {
    "creating": GroupState.BUSY,
    "available": GroupState.PROTECTED,
    "error": GroupState.ERROR,
    "deleting": GroupState.BUSY,
    "updating": GroupState.BUSY,
    "reversing": GroupState.SWITCHING,
    "error_reversing": GroupState.ERROR,
    "failovering": GroupState.FAILING_OVER,
    # A reprotect leaves the group failovered while replication resyncs (``copying``) and ends available;
    # EVS has no status of its own for it.
    "failovered": GroupState.FAILED_OVER,
    "error_failovering": GroupState.ERROR,
    "error_deleting": GroupState.ERROR,
}

#: ``replication_status`` (§2.4.2).
REPLICATION: dict[str, Replication] = {
    "active": Replication.ACTIVE,
    "active-stopped": Replication.STOPPED,
    "copying": Replication.COPYING,
    "inactive": Replication.INACTIVE,
    "error": Replication.ERROR,
}

#: ``fault_level`` (§2.3): "0" none, "2" a production disk lost read/write (failover advised), "5" the
#: replication link is down (no failover possible). Any other non-zero level is a fault we cannot act on.
FAULTS: dict[str, Fault] = {"0": Fault.NONE, "2": Fault.PRIMARY_FAULTY, "5": Fault.LINK_DOWN}


def view_of(group: ConsistencyGroup, zones: Sequence[str], observed_at: datetime) -> GroupView:
    """The neutral view of an EVS consistency group whose two AZs are ``zones``."""
    return GroupView(
        state=STATES.get(group.status, GroupState.UNKNOWN),
        # EVS names the primary by its AZ already.
        primary_az=group.priority_station,
        availability_zones=tuple(zones),
        replication=REPLICATION.get(group.replication_status or "", Replication.UNKNOWN),
        fault=FAULTS.get(group.fault_level, Fault.DEGRADED),
        observed_at=observed_at,
        cloud=CloudFacts(
            status=group.status,
            replication_status=group.replication_status,
            fault_level=group.fault_level,
            failure_detail=group.failure_detail,
        ),
    )
