"""EVS's vocabulary into the neutral view: one row for every value cloud-api.md §2.3 and §2.4 documents.

The rows are written from the document, not from ``evs_states``: if the mapping lost a value, or gained one
the document does not have, the completeness tests below fail.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from azswitch.cloud.evs_models import ConsistencyGroup
from azswitch.cloud.evs_states import FAULTS, REPLICATION, STATES, view_of
from azswitch.observation import CloudFacts, Fault, GroupState, Replication

NOW = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
AZ1, AZ2 = "az1.dc1", "az2.dc2"

#: cloud-api.md §2.4.1, in the document's order.
DOCUMENTED_STATUSES = [
    ("creating", GroupState.BUSY),
    ("available", GroupState.PROTECTED),
    ("error", GroupState.ERROR),
    ("deleting", GroupState.BUSY),
    ("updating", GroupState.BUSY),
    ("reversing", GroupState.SWITCHING),
    ("error_reversing", GroupState.ERROR),
    ("failovering", GroupState.FAILING_OVER),
    ("failovered", GroupState.FAILED_OVER),
    ("error_failovering", GroupState.ERROR),
    ("error_deleting", GroupState.ERROR),
]
#: cloud-api.md §2.4.2.
DOCUMENTED_REPLICATION = [
    ("active", Replication.ACTIVE),
    ("active-stopped", Replication.STOPPED),
    ("copying", Replication.COPYING),
    ("inactive", Replication.INACTIVE),
    ("error", Replication.ERROR),
]
#: cloud-api.md §2.3, ``fault_level``.
DOCUMENTED_FAULTS = [("0", Fault.NONE), ("2", Fault.PRIMARY_FAULTY), ("5", Fault.LINK_DOWN)]


def group(*, drop: tuple[str, ...] = (), **fields: Any) -> ConsistencyGroup:
    wire: dict[str, Any] = {
        "id": "g1",
        "status": "available",
        "priority_station": AZ1,
        "replication_status": "active",
        "fault_level": "0",
    }
    wire.update(fields)
    return ConsistencyGroup.model_validate({k: v for k, v in wire.items() if k not in drop})


@pytest.mark.parametrize(("status", "state"), [pytest.param(s, g, id=s) for s, g in DOCUMENTED_STATUSES])
def test_every_documented_status(status: str, state: GroupState) -> None:
    view = view_of(group(status=status), [AZ1, AZ2], NOW)
    assert view.state is state
    # The raw word is kept for status.cloud and messages: users search the cloud's docs for it.
    assert view.cloud.status == status


@pytest.mark.parametrize(
    ("value", "replication"), [pytest.param(v, r, id=v) for v, r in DOCUMENTED_REPLICATION]
)
def test_every_documented_replication_status(value: str, replication: Replication) -> None:
    view = view_of(group(replication_status=value), [AZ1, AZ2], NOW)
    assert view.replication is replication
    assert view.cloud.replication_status == value


@pytest.mark.parametrize(
    ("level", "fault"), [pytest.param(v, f, id=f"level-{v}") for v, f in DOCUMENTED_FAULTS]
)
def test_every_documented_fault_level(level: str, fault: Fault) -> None:
    view = view_of(group(fault_level=level), [AZ1, AZ2], NOW)
    assert view.fault is fault
    assert view.cloud.fault_phrase == f"fault level {level}"


def test_the_mapping_has_exactly_the_documented_values() -> None:
    assert dict(DOCUMENTED_STATUSES) == STATES
    assert dict(DOCUMENTED_REPLICATION) == REPLICATION
    assert dict(DOCUMENTED_FAULTS) == FAULTS


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({"status": "frozen"}, ("state", GroupState.UNKNOWN), id="unknown-status-never-acted-on"),
        pytest.param({"status": None}, ("state", GroupState.UNKNOWN), id="null-status"),
        pytest.param(
            {"replication_status": None}, ("replication", Replication.UNKNOWN), id="null-replication"
        ),
        pytest.param(
            {"replication_status": "paused"}, ("replication", Replication.UNKNOWN), id="unknown-replication"
        ),
        pytest.param({"fault_level": "3"}, ("fault", Fault.DEGRADED), id="undocumented-fault-level"),
        pytest.param({"fault_level": None}, ("fault", Fault.NONE), id="null-fault-level-is-no-fault"),
    ],
)
def test_values_the_document_does_not_list(fields: dict[str, Any], expected: tuple[str, object]) -> None:
    attribute, value = expected
    assert getattr(view_of(group(**fields), [AZ1, AZ2], NOW), attribute) == value


def test_primary_zones_and_facts() -> None:
    view = view_of(
        group(drop=("priority_station",), priority_staion=AZ2, status="error", failure_detail="37000212"),
        [AZ1, AZ2],
        NOW,
    )
    assert view.primary_az == AZ2  # the documented typo is read too
    assert view.availability_zones == (AZ1, AZ2)
    assert view.observed_at == NOW
    assert view.cloud == CloudFacts(
        status="error", replication_status="active", fault_level="0", failure_detail="37000212"
    )
    assert view.cloud.health_phrase == "replication status active, fault level 0"
