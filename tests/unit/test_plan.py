"""The planner's gates (design.md §3), one table row per situation.

Each row states the spec, what the cloud showed and the surrounding facts (time, approval, capacity), and
the plan that must come out: the action, its reason, every blocker with its kind, and the phase.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from azswitch.drains import Hold
from azswitch.models import CONDITION_REASON_PATTERN, ReplicationGroupSpec
from azswitch.observation import CloudFacts, Fault, GroupState, GroupView, Replication
from azswitch.plan import (
    Action,
    BlockKind,
    Drift,
    Plan,
    PlanInput,
    parse_approval,
    phase_for,
    plan,
)

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
AZ1, AZ2 = "az1.dc1", "az2.dc2"
WAIT, HOLD, BLOCKED, STALLED = BlockKind.WAIT, BlockKind.HOLD, BlockKind.BLOCKED, BlockKind.STALLED


def make_spec(primary_az: str = AZ2, **overrides: Any) -> ReplicationGroupSpec:
    raw: dict[str, Any] = {
        "groupID": "91085433-9499-4a68-b2c6-35072467ccd2",
        "primaryAZ": primary_az,
        "cloud": {"region": "cn-north-4", "projectID": "0123abcd", "credentialsSecretRef": {"name": "evs"}},
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            raw[key] = {**raw.get(key, {}), **value}
        else:
            raw[key] = value
    return ReplicationGroupSpec.model_validate(raw)


#: What the cloud's own words say, quoted in messages; the planner decides on the neutral fields alone.
RAW_FACTS = ("status", "replication_status", "fault_level", "health_status", "failure_detail")


def make_observation(**overrides: Any) -> GroupView:
    """A protected, healthy group primary in AZ1; ``overrides`` name neutral fields (``state``,
    ``replication``, ``fault``, ``primary_az`` …) or the raw facts messages quote (``status``, ``fault_level`` …)."""
    facts: dict[str, Any] = {"status": "available", "replication_status": "active", "fault_level": "0"}
    facts.update({k: overrides.pop(k) for k in RAW_FACTS if k in overrides})
    values: dict[str, Any] = {
        "state": GroupState.PROTECTED,
        "replication": Replication.ACTIVE,
        "fault": Fault.NONE,
        "primary_az": AZ1,
        "availability_zones": (AZ1, AZ2),
        "observed_at": NOW,
        "cloud": CloudFacts(**facts),
    }
    values.update(overrides)
    return GroupView(**values)


def make_input(
    spec: ReplicationGroupSpec | None = None, observation: GroupView | None = None, **overrides: Any
) -> PlanInput:
    values: dict[str, Any] = {
        "spec": spec or make_spec(),
        "observation": observation or make_observation(),
        "generation": 3,
        "now": NOW,
        "approved_generation": None,
        "last_finished_at": None,
        "capacity_available": True,
        "name": "orders-db",
        "namespace": "payments",
    }
    values.update(overrides)
    return PlanInput(**values)


@dataclass(frozen=True)
class Row:
    action: Action
    reason: str
    blockers: tuple[tuple[str, BlockKind], ...] = ()
    phase: str = "Pending"
    desired: str = AZ2
    spec: dict[str, Any] = field(default_factory=dict)
    cloud: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)


FAILOVERED = {"state": GroupState.FAILED_OVER, "replication": Replication.STOPPED}
MANUAL = {"switchover": {"approval": "Manual"}}
COOLDOWN_10M = {"switchover": {"minInterval": "10m"}}
#: Someone moved the group from AZ2 (where the spec wants it) to AZ1 outside azswitch, at generation 3.
DRIFTED = Drift("20250301T115900Z", AZ2, AZ1, 3)
REPORT = {"drift": "Report"}

ROWS = [
    # --- nothing to do ----------------------------------------------------------------------------------
    pytest.param(Row(Action.NONE, "InSync", phase="Ready", desired=AZ1), id="aligned-in-sync"),
    pytest.param(
        Row(
            Action.NONE,
            "InSync",
            phase="Ready",
            desired=AZ1,
            cloud={"fault": Fault.PRIMARY_FAULTY, "fault_level": "2"},
        ),
        id="aligned-fault-2-nothing-to-move",
    ),
    pytest.param(
        Row(Action.NONE, "InSync", phase="Ready", desired=AZ1, spec={**MANUAL, "dryRun": True}),
        id="aligned-manual-dryrun-no-gates",
    ),
    # --- the planned move -------------------------------------------------------------------------------
    pytest.param(Row(Action.SWITCHOVER, "PrimaryAZChanged"), id="primary-changed-switchover"),
    # --- drift: the cloud's primary moved without an operation of ours ------------------------------------
    pytest.param(
        Row(Action.SWITCHOVER, "DriftDetected", facts={"drift": DRIFTED}), id="drift-correct-moves-back"
    ),
    pytest.param(
        Row(
            Action.SWITCHOVER,
            "DriftDetected",
            (("Drifted", HOLD),),
            "AwaitingApproval",
            spec=REPORT,
            facts={"drift": DRIFTED},
        ),
        id="drift-report-holds",
    ),
    pytest.param(
        Row(
            Action.SWITCHOVER,
            "DriftDetected",
            spec=REPORT,
            facts={"drift": DRIFTED, "approved_drift": DRIFTED.id},
        ),
        id="drift-report-correction-approved",
    ),
    pytest.param(
        Row(
            Action.SWITCHOVER,
            "DriftDetected",
            (("Drifted", HOLD),),
            "AwaitingApproval",
            spec=REPORT,
            facts={"drift": DRIFTED, "approved_drift": "20240101T000000Z"},
        ),
        id="drift-report-an-older-drifts-approval-approves-nothing",
    ),
    pytest.param(
        Row(Action.SWITCHOVER, "DriftDetected", spec=REPORT, facts={"drift": DRIFTED, "generation": 4}),
        id="drift-report-a-newer-spec-decides",
    ),
    pytest.param(
        Row(
            Action.SWITCHOVER,
            "PrimaryAZChanged",
            spec=REPORT,
            facts={"drift": Drift("20250301T115900Z", AZ1, AZ2, 3)},
        ),
        id="drift-report-moved-again-since-no-longer-stands",
    ),
    pytest.param(
        Row(Action.NONE, "InSync", phase="Ready", desired=AZ1, spec=REPORT, facts={"drift": DRIFTED}),
        id="drift-report-into-the-desired-az-is-in-sync",
    ),
    pytest.param(
        Row(
            Action.SWITCHOVER,
            "DriftDetected",
            (("AwaitingApproval", HOLD), ("Drifted", HOLD)),
            "AwaitingApproval",
            spec={**REPORT, **MANUAL},
            facts={"drift": DRIFTED},
        ),
        id="drift-report-manual-needs-both",
    ),
    # --- stalled: never act -----------------------------------------------------------------------------
    pytest.param(
        Row(Action.NONE, "InvalidPrimaryAZ", (("InvalidPrimaryAZ", STALLED),), "Blocked", desired="az9.dc9"),
        id="invalid-primary-az",
    ),
    pytest.param(
        Row(
            Action.NONE,
            "AvailabilityZonesUnknown",
            (("AvailabilityZonesUnknown", STALLED),),
            "Blocked",
            cloud={"availability_zones": ()},
        ),
        id="availability-zones-unknown",
    ),
    pytest.param(
        Row(
            Action.NONE,
            "ReplicationLinkDown",
            (("ReplicationLinkDown", STALLED),),
            "Blocked",
            desired=AZ1,
            cloud={"fault": Fault.LINK_DOWN, "fault_level": "5"},
        ),
        id="fault-5-stalls-even-when-aligned",
    ),
    pytest.param(
        Row(
            Action.NONE,
            "ReplicationLinkDown",
            (("ReplicationLinkDown", STALLED),),
            "Blocked",
            spec={"failover": {"allowed": True}},
            cloud={"fault": Fault.LINK_DOWN, "fault_level": "5", "replication": Replication.ERROR},
        ),
        id="fault-5-no-failover-even-if-allowed",
    ),
    pytest.param(
        Row(
            Action.NONE,
            "CloudGroupError",
            (("CloudGroupError", STALLED),),
            "Blocked",
            cloud={"state": GroupState.ERROR, "status": "error_reversing", "failure_detail": "37000212"},
        ),
        id="cloud-error-status",
    ),
    pytest.param(
        Row(
            Action.NONE,
            "CloudGroupError",
            (("CloudGroupError", STALLED),),
            "Blocked",
            desired=AZ1,
            cloud={"state": GroupState.ERROR, "status": "error"},
        ),
        id="cloud-error-status-when-aligned",
    ),
    pytest.param(
        Row(
            Action.NONE,
            "InvalidPrimaryAZ",
            (("InvalidPrimaryAZ", STALLED), ("ReplicationLinkDown", STALLED), ("CloudGroupError", STALLED)),
            "Blocked",
            desired="az9.dc9",
            cloud={
                "fault": Fault.LINK_DOWN,
                "fault_level": "5",
                "state": GroupState.ERROR,
                "status": "error_failovering",
            },
        ),
        id="all-stalled-gates-reported",
    ),
    # --- the cloud is busy ------------------------------------------------------------------------------
    pytest.param(
        Row(
            Action.NONE,
            "GroupBusy",
            (("GroupBusy", WAIT),),
            cloud={"state": GroupState.SWITCHING, "status": "reversing"},
        ),
        id="group-busy-reversing",
    ),
    pytest.param(
        Row(
            Action.NONE,
            "GroupBusy",
            (("GroupBusy", WAIT),),
            desired=AZ1,
            cloud={"state": GroupState.BUSY, "status": "updating"},
        ),
        id="group-busy-when-aligned",
    ),
    pytest.param(
        Row(
            Action.NONE,
            "PrimaryAZUnknown",
            (("PrimaryAZUnknown", BLOCKED),),
            "Blocked",
            cloud={"primary_az": None},
        ),
        id="primary-az-not-reported",
    ),
    pytest.param(
        Row(
            Action.NONE,
            "PrimaryAZUnknown",
            (("PrimaryAZUnknown", BLOCKED),),
            "Blocked",
            cloud={"primary_az": "az7.dc7"},
        ),
        id="primary-az-not-one-of-the-zones",
    ),
    pytest.param(
        Row(
            Action.SWITCHOVER,
            "UnrecognizedGroupStatus",
            (("UnrecognizedGroupStatus", BLOCKED),),
            "Blocked",
            cloud={"state": GroupState.UNKNOWN, "status": "frozen"},
        ),
        id="unrecognized-group-status",
    ),
    # --- neutral states EVS never reports but another backend may (the planner must not care which) ----
    pytest.param(
        Row(Action.NONE, "GroupBusy", (("GroupBusy", WAIT),), cloud={"state": GroupState.REPROTECTING}),
        id="reprotecting-waits",
    ),
    pytest.param(
        Row(Action.NONE, "GroupBusy", (("GroupBusy", WAIT),), cloud={"state": GroupState.FAILING_OVER}),
        id="failing-over-waits",
    ),
    pytest.param(
        Row(
            Action.SWITCHOVER,
            "ProtectionDisabled",
            (("ProtectionDisabled", BLOCKED),),
            "Blocked",
            cloud={"state": GroupState.UNPROTECTED, "status": "available"},
        ),
        id="unprotected-is-never-switched",
    ),
    pytest.param(
        Row(
            Action.NONE,
            "ProtectionDisabled",
            (("ProtectionDisabled", BLOCKED),),
            "Blocked",
            desired=AZ1,
            spec={"failover": {"allowed": True}},
            cloud={"state": GroupState.UNPROTECTED, "status": "available"},
        ),
        id="unprotected-blocks-even-when-aligned",
    ),
    pytest.param(
        Row(
            Action.SWITCHOVER,
            "PrimaryAZFaulty",
            (("SwitchoverImpossible", BLOCKED),),
            "Blocked",
            spec={"failover": {"allowed": True}},
            cloud={"fault": Fault.DEGRADED, "fault_level": "3"},
        ),
        id="undocumented-fault-no-switchover-no-failover",
    ),
    # --- after a failover -------------------------------------------------------------------------------
    pytest.param(
        Row(
            Action.REPROTECT,
            "FailedOver",
            desired=AZ1,
            spec={"failover": {"autoReprotect": True}},
            cloud=FAILOVERED,
        ),
        id="aligned-failovered-auto-reprotect",
    ),
    pytest.param(
        Row(
            Action.REPROTECT,
            "FailedOver",
            (("ReprotectRequired", BLOCKED),),
            "Blocked",
            desired=AZ1,
            cloud=FAILOVERED,
        ),
        id="aligned-failovered-reprotect-required",
    ),
    pytest.param(
        Row(
            Action.REPROTECT,
            "FailedOver",
            (("WaitingForOldAZRecovery", WAIT),),
            desired=AZ1,
            spec={"failover": {"autoReprotect": True}},
            cloud={**FAILOVERED, "fault": Fault.PRIMARY_FAULTY, "fault_level": "2"},
        ),
        id="aligned-failovered-fault-2-waits-for-old-az",
    ),
    pytest.param(
        Row(
            Action.REPROTECT,
            "FailedOver",
            (("WaitingForOldAZRecovery", WAIT), ("ReprotectRequired", BLOCKED)),
            "Blocked",
            desired=AZ1,
            cloud={**FAILOVERED, "fault": Fault.PRIMARY_FAULTY, "fault_level": "2"},
        ),
        id="aligned-failovered-fault-2-no-auto-reprotect",
    ),
    pytest.param(
        Row(
            Action.REPROTECT,
            "ReprotectBeforeSwitchover",
            (("ReprotectRequired", BLOCKED),),
            "Blocked",
            cloud=FAILOVERED,
        ),
        id="failovered-elsewhere-reprotect-required",
    ),
    pytest.param(
        Row(
            Action.REPROTECT,
            "ReprotectBeforeSwitchover",
            spec={"failover": {"autoReprotect": True}},
            cloud=FAILOVERED,
        ),
        id="failovered-elsewhere-auto-reprotect-first",
    ),
    # --- replication not healthy ------------------------------------------------------------------------
    pytest.param(
        Row(
            Action.SWITCHOVER,
            "PrimaryAZChanged",
            (("ReplicationSyncing", WAIT),),
            cloud={"replication": Replication.COPYING},
        ),
        id="copying-waits",
    ),
    pytest.param(
        Row(
            Action.SWITCHOVER,
            "PrimaryAZChanged",
            (("ReplicationSyncing", WAIT),),
            spec={"failover": {"allowed": True}},
            cloud={"replication": Replication.COPYING, "fault": Fault.PRIMARY_FAULTY, "fault_level": "2"},
        ),
        id="copying-with-fault-2-waits-no-failover",
    ),
    pytest.param(
        Row(
            Action.SWITCHOVER,
            "PrimaryAZFaulty",
            (("SwitchoverImpossible", BLOCKED),),
            "Blocked",
            cloud={"fault": Fault.PRIMARY_FAULTY, "fault_level": "2"},
        ),
        id="fault-2-failover-not-allowed",
    ),
    pytest.param(
        Row(
            Action.FAILOVER,
            "PrimaryAZFaulty",
            spec={"failover": {"allowed": True}},
            cloud={"fault": Fault.PRIMARY_FAULTY, "fault_level": "2"},
        ),
        id="fault-2-failover-allowed",
    ),
    pytest.param(
        Row(
            Action.SWITCHOVER,
            "ReplicationNotActive",
            (("SwitchoverImpossible", BLOCKED),),
            "Blocked",
            cloud={"replication": Replication.INACTIVE, "replication_status": "inactive"},
        ),
        id="replication-inactive-failover-not-allowed",
    ),
    pytest.param(
        # Replication broken while the primary is healthy may mean the *target* AZ is sick: no failover.
        Row(
            Action.SWITCHOVER,
            "ReplicationNotActive",
            (("SwitchoverImpossible", BLOCKED),),
            "Blocked",
            spec={"failover": {"allowed": True}},
            cloud={"replication": Replication.ERROR},
        ),
        id="replication-error-failover-allowed-but-not-advised",
    ),
    pytest.param(
        Row(
            Action.FAILOVER,
            "PrimaryAZFaulty",
            spec={"failover": {"allowed": True}},
            cloud={"replication": Replication.ERROR, "fault": Fault.PRIMARY_FAULTY, "fault_level": "2"},
        ),
        id="replication-error-fault-2-failover-allowed",
    ),
    pytest.param(
        Row(
            Action.SWITCHOVER,
            "ReplicationNotActive",
            (("SwitchoverImpossible", BLOCKED),),
            "Blocked",
            cloud={"replication": Replication.UNKNOWN, "replication_status": None},
        ),
        id="replication-status-missing",
    ),
    # --- execution gates --------------------------------------------------------------------------------
    pytest.param(
        Row(
            Action.SWITCHOVER,
            "PrimaryAZChanged",
            (("CooldownActive", WAIT),),
            spec=COOLDOWN_10M,
            facts={"last_finished_at": NOW - timedelta(minutes=5)},
        ),
        id="cooldown-active",
    ),
    pytest.param(
        Row(
            Action.SWITCHOVER,
            "PrimaryAZChanged",
            (("CooldownActive", WAIT),),
            spec=COOLDOWN_10M,
            facts={"last_finished_at": NOW - timedelta(minutes=10) + timedelta(microseconds=1)},
        ),
        id="cooldown-one-microsecond-before-boundary",
    ),
    pytest.param(
        Row(
            Action.SWITCHOVER,
            "PrimaryAZChanged",
            spec=COOLDOWN_10M,
            facts={"last_finished_at": NOW - timedelta(minutes=10)},
        ),
        id="cooldown-exactly-at-boundary-is-over",
    ),
    pytest.param(
        Row(Action.SWITCHOVER, "PrimaryAZChanged", spec=COOLDOWN_10M, facts={"last_finished_at": None}),
        id="cooldown-without-previous-operation",
    ),
    pytest.param(
        Row(Action.SWITCHOVER, "PrimaryAZChanged", facts={"last_finished_at": NOW}),
        id="cooldown-zero-interval",
    ),
    pytest.param(
        Row(
            Action.SWITCHOVER,
            "PrimaryAZChanged",
            (("AwaitingApproval", HOLD),),
            "AwaitingApproval",
            spec=MANUAL,
        ),
        id="manual-not-approved",
    ),
    pytest.param(
        Row(Action.SWITCHOVER, "PrimaryAZChanged", spec=MANUAL, facts={"approved_generation": 3}),
        id="manual-approved-this-generation",
    ),
    pytest.param(
        Row(
            Action.SWITCHOVER,
            "PrimaryAZChanged",
            (("AwaitingApproval", HOLD),),
            "AwaitingApproval",
            spec=MANUAL,
            facts={"approved_generation": 2},
        ),
        id="manual-approved-older-generation",
    ),
    pytest.param(
        Row(
            Action.SWITCHOVER,
            "PrimaryAZChanged",
            (("AwaitingApproval", HOLD),),
            "AwaitingApproval",
            spec=MANUAL,
            facts={"approved_generation": 4},
        ),
        id="manual-approved-other-generation",
    ),
    pytest.param(
        Row(Action.SWITCHOVER, "PrimaryAZChanged", facts={"approved_generation": 1}),
        id="automatic-ignores-approval",
    ),
    pytest.param(
        Row(Action.SWITCHOVER, "PrimaryAZChanged", (("DryRun", HOLD),), spec={"dryRun": True}),
        id="dry-run",
    ),
    pytest.param(
        Row(
            Action.SWITCHOVER,
            "PrimaryAZChanged",
            (("AwaitingApproval", HOLD), ("DryRun", HOLD)),
            "AwaitingApproval",
            spec={**MANUAL, "dryRun": True},
        ),
        id="manual-and-dry-run-both-reported",
    ),
    pytest.param(
        Row(
            Action.SWITCHOVER,
            "PrimaryAZChanged",
            (("DryRun", HOLD),),
            spec={**MANUAL, "dryRun": True},
            facts={"approved_generation": 3},
        ),
        id="approved-but-dry-run",
    ),
    pytest.param(
        Row(
            Action.SWITCHOVER,
            "PrimaryAZChanged",
            (("ConcurrencyLimit", WAIT),),
            facts={"capacity_available": False},
        ),
        id="concurrency-limit",
    ),
    pytest.param(
        Row(
            Action.SWITCHOVER,
            "PrimaryAZChanged",
            (
                ("CooldownActive", WAIT),
                ("AwaitingApproval", HOLD),
                ("DryRun", HOLD),
                ("ConcurrencyLimit", WAIT),
            ),
            "AwaitingApproval",
            spec={"switchover": {"approval": "Manual", "minInterval": "1h"}, "dryRun": True},
            facts={"last_finished_at": NOW, "capacity_available": False},
        ),
        id="all-execution-gates-in-order",
    ),
    pytest.param(
        Row(
            Action.FAILOVER,
            "PrimaryAZFaulty",
            (("AwaitingApproval", HOLD),),
            "AwaitingApproval",
            spec={**MANUAL, "failover": {"allowed": True}},
            cloud={"fault": Fault.PRIMARY_FAULTY, "fault_level": "2"},
        ),
        id="failover-needs-approval-too",
    ),
    pytest.param(
        Row(
            Action.REPROTECT,
            "FailedOver",
            (("DryRun", HOLD),),
            desired=AZ1,
            spec={"dryRun": True, "failover": {"autoReprotect": True}},
            cloud=FAILOVERED,
        ),
        id="reprotect-respects-dry-run",
    ),
    pytest.param(
        Row(
            Action.SWITCHOVER,
            "PrimaryAZChanged",
            (("ReplicationSyncing", WAIT),),
            spec={**MANUAL, "dryRun": True},
            cloud={"replication": Replication.COPYING},
        ),
        id="execution-gates-only-for-a-possible-action",
    ),
]


def run_row(row: Row) -> Plan:
    spec = make_spec(row.desired, **row.spec)
    return plan(make_input(spec, make_observation(**row.cloud), **row.facts))


@pytest.mark.parametrize("row", ROWS)
def test_plan_table(row: Row) -> None:
    result = run_row(row)
    assert (result.action, result.reason) == (row.action, row.reason)
    assert [(b.reason, b.kind) for b in result.blockers] == list(row.blockers)
    assert phase_for(result) == row.phase
    assert result.executable == (row.action is not Action.NONE and not row.blockers)


@pytest.mark.parametrize("row", ROWS)
def test_every_reason_is_camel_case_and_every_message_says_something(row: Row) -> None:
    result = run_row(row)
    for reason, message in [
        (result.reason, result.message),
        *((b.reason, b.message) for b in result.blockers),
    ]:
        assert re.fullmatch(CONDITION_REASON_PATTERN, reason), reason
        assert reason[0].isupper(), reason
        assert len(message) > 20, (reason, message)


def test_switchover_goes_from_current_to_desired() -> None:
    result = plan(make_input())
    assert (result.source, result.target) == (AZ1, AZ2)
    assert result.executable


def test_reprotect_keeps_the_primary() -> None:
    spec = make_spec(AZ1, failover={"autoReprotect": True})
    result = plan(make_input(spec, make_observation(**FAILOVERED)))
    assert (result.action, result.source, result.target) == (Action.REPROTECT, AZ1, AZ1)


def test_failover_goes_to_the_desired_az() -> None:
    spec = make_spec(AZ2, failover={"allowed": True})
    result = plan(make_input(spec, make_observation(fault=Fault.PRIMARY_FAULTY, fault_level="2")))
    assert (result.action, result.source, result.target) == (Action.FAILOVER, AZ1, AZ2)
    assert "un-replicated writes" in result.message


# --- messages tell the user what to do ---------------------------------------------------------------------


def only_blocker(result: Plan) -> str:
    assert len(result.blockers) == 1, result.blockers
    return result.blockers[0].message


def test_invalid_primary_az_lists_the_groups_azs() -> None:
    message = only_blocker(plan(make_input(make_spec("az9.dc9"))))
    assert "az9.dc9" in message and AZ1 in message and AZ2 in message


def test_link_down_says_contact_the_provider() -> None:
    message = only_blocker(
        plan(make_input(observation=make_observation(fault=Fault.LINK_DOWN, fault_level="5")))
    )
    assert "replication link is disconnected" in message and "contact the cloud provider" in message


def test_cloud_error_carries_failure_detail() -> None:
    observation = make_observation(
        state=GroupState.ERROR, status="error_reversing", failure_detail="37000212"
    )
    message = only_blocker(plan(make_input(observation=observation)))
    assert "error_reversing" in message and "37000212" in message


def test_protection_disabled_says_how_to_enable_it() -> None:
    observation = make_observation(state=GroupState.UNPROTECTED, status="available")
    message = only_blocker(plan(make_input(observation=observation)))
    assert "protection is disabled" in message and "start-server-group" in message


def test_group_busy_names_the_status() -> None:
    assert "reversing" in only_blocker(
        plan(make_input(observation=make_observation(state=GroupState.SWITCHING, status="reversing")))
    )


def test_switchover_impossible_explains_and_offers_failover() -> None:
    observation = make_observation(
        replication=Replication.INACTIVE,
        replication_status="inactive",
        fault=Fault.PRIMARY_FAULTY,
        fault_level="2",
    )
    message = only_blocker(plan(make_input(observation=observation)))
    assert "inactive" in message and "fault level 2" in message
    assert "set spec.failover.allowed: true to permit a failover (may lose un-replicated writes)" in message


def test_reprotect_required_names_the_fix() -> None:
    message = only_blocker(plan(make_input(observation=make_observation(**FAILOVERED))))
    assert "spec.failover.autoReprotect: true" in message and AZ2 in message


def test_approval_message_is_a_copy_pasteable_command() -> None:
    message = only_blocker(plan(make_input(make_spec(switchover={"approval": "Manual"}), generation=7)))
    assert "kubectl annotate rg orders-db -n payments azswitch.io/approve=7 --overwrite" in message


def test_approval_message_mentions_a_stale_approval() -> None:
    spec = make_spec(switchover={"approval": "Manual"})
    message = only_blocker(plan(make_input(spec, generation=7, approved_generation=6)))
    assert "the annotation approves generation 6" in message


def test_cooldown_says_when_it_ends() -> None:
    spec = make_spec(switchover={"minInterval": "10m"})
    result = plan(make_input(spec, last_finished_at=NOW - timedelta(minutes=4)))
    (blocker,) = result.blockers
    assert blocker.retry_at == NOW + timedelta(minutes=6)
    assert "10m" in blocker.message


@pytest.mark.parametrize(
    ("spec", "cloud", "would"),
    [
        pytest.param({}, {}, f"would switch the primary AZ from {AZ1} to {AZ2};", id="switchover"),
        pytest.param(
            {"failover": {"allowed": True}},
            {"fault": Fault.PRIMARY_FAULTY, "fault_level": "2"},
            f"would fail over from {AZ1} to {AZ2};",
            id="failover",
        ),
        pytest.param(
            {"failover": {"autoReprotect": True}},
            FAILOVERED,
            f"would reprotect the group (the primary stays {AZ1});",
            id="reprotect",
        ),
    ],
)
def test_dry_run_says_what_would_happen(spec: dict[str, Any], cloud: dict[str, Any], would: str) -> None:
    message = only_blocker(plan(make_input(make_spec(dryRun=True, **spec), make_observation(**cloud))))
    assert would in message and "set spec.dryRun: false" in message


# --- helpers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("7", 7, id="number"),
        pytest.param(" 12 ", 12, id="surrounding-space"),
        pytest.param("0", None, id="zero-is-no-generation"),
        pytest.param("-3", None, id="negative"),
        pytest.param("", None, id="empty"),
        pytest.param("yes", None, id="word"),
        pytest.param("7.0", None, id="decimal"),
        pytest.param("+7", None, id="sign"),
    ],
)
def test_parse_approval(value: str | None, expected: int | None) -> None:
    assert parse_approval(value) == expected


def test_plan_is_pure() -> None:
    inp = make_input(make_spec(switchover={"approval": "Manual"}))
    assert plan(inp) == plan(replace(inp)) == plan(inp)


# --- ZoneDrain holds: a different desired AZ, every gate as before ----------------------------------------------

HELD = Hold("az1-outage", AZ1, AZ2, "INC-4711")


def test_a_hold_steers_the_group_to_its_other_az_and_names_the_drain() -> None:
    p = plan(make_input(make_spec(AZ1), hold=HELD))
    assert (p.action, p.source, p.target, p.reason, p.executable) == (
        Action.SWITCHOVER,
        AZ1,
        AZ2,
        "ZoneDrained",
        True,
    )
    assert "ZoneDrain az1-outage (INC-4711) drains az1.dc1" in p.message


def test_held_and_already_away_is_in_sync_and_says_why() -> None:
    p = plan(make_input(make_spec(AZ1), make_observation(primary_az=AZ2), hold=HELD))
    assert (p.action, p.reason) == (Action.NONE, "InSync")
    assert "held away from az1.dc1 by ZoneDrain az1-outage" in p.message


def test_both_zones_drained_stays_and_is_blocked() -> None:
    p = plan(make_input(make_spec(AZ1), hold=Hold("az1-outage", AZ1, None)))
    assert (p.action, p.target, p.reason) == (Action.NONE, AZ1, "BothZonesDrained")
    assert [(b.reason, b.kind) for b in p.blockers] == [("BothZonesDrained", BLOCKED)]


@pytest.mark.parametrize(
    ("spec", "observation", "reasons"),
    [
        pytest.param({"dryRun": True}, {}, ["DryRun"], id="dry-run"),
        pytest.param(
            {},
            {"replication": Replication.INACTIVE, "fault": Fault.PRIMARY_FAULTY},
            ["SwitchoverImpossible"],
            id="no-failover-unless-the-group-allows-it",
        ),
        pytest.param({}, {"state": GroupState.SWITCHING}, ["GroupBusy"], id="busy"),
        pytest.param(COOLDOWN_10M, {}, ["CooldownActive"], id="cooldown"),
    ],
)
def test_every_gate_applies_under_a_hold(
    spec: dict[str, Any], observation: dict[str, Any], reasons: list[str]
) -> None:
    inp = make_input(
        make_spec(AZ1, **spec),
        make_observation(**observation),
        hold=HELD,
        last_finished_at=NOW - timedelta(minutes=1),
    )
    p = plan(inp)
    assert not p.executable
    assert [b.reason for b in p.blockers] == reasons


def test_failover_under_a_hold_only_where_the_spec_allows() -> None:
    obs = make_observation(replication=Replication.INACTIVE, fault=Fault.PRIMARY_FAULTY, fault_level="2")
    p = plan(make_input(make_spec(AZ1, failover={"allowed": True}), obs, hold=HELD))
    assert (p.action, p.target, p.executable) == (Action.FAILOVER, AZ2, True)


def test_manual_approval_under_a_hold_is_per_drain_not_per_generation() -> None:
    spec = make_spec(AZ1, **MANUAL)
    # The generation was approved for the spec's AZ; the drain's move still asks.
    p = plan(make_input(spec, hold=HELD, approved_generation=3))
    assert [b.reason for b in p.blockers] == ["AwaitingApproval"]
    assert "azswitch.io/approve-drain=az1-outage" in p.blockers[0].message
    assert plan(make_input(spec, hold=HELD, approved_drain="az1-outage")).executable
    assert not plan(make_input(spec, hold=HELD, approved_drain="another-drain")).executable
