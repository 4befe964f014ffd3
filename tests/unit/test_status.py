"""Conditions and status parts: kstatus rules, lastTransitionTime semantics, history trimming."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from azswitch.models import Condition, FinishedOperation, ReplicationGroupStatus
from azswitch.observation import CloudFacts, Fault, GroupState, GroupView, Replication
from azswitch.plan import Action, Blocker, BlockKind, Plan
from azswitch.status import (
    CONDITION_ORDER,
    append_history,
    cloud_observation,
    conditions_for,
    conditions_from_plan,
    plan_status,
    remove_condition,
    replication_health,
    set_condition,
    switchover_allowed,
)

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5, microseconds=123456)
AZ1, AZ2 = "az1.dc1", "az2.dc2"


def by_type(conditions: list[Condition]) -> dict[str, Condition]:
    return {condition.type: condition for condition in conditions}


RAW_FACTS = ("status", "replication_status", "fault_level", "health_status", "failure_detail")


def observation(**overrides: Any) -> GroupView:
    """A protected, healthy group; overrides name neutral fields or the raw facts that status quotes."""
    facts: dict[str, Any] = {"status": "available", "replication_status": "active", "fault_level": "0"}
    facts.update({k: overrides.pop(k) for k in RAW_FACTS if k in overrides})
    values: dict[str, Any] = {
        "state": GroupState.PROTECTED,
        "replication": Replication.ACTIVE,
        "fault": Fault.NONE,
        "primary_az": AZ1,
        "availability_zones": (AZ1, AZ2),
        "observed_at": T0,
        "cloud": CloudFacts(**facts),
    }
    values.update(overrides)
    return GroupView(**values)


# --- set_condition / remove_condition ----------------------------------------------------------------------


def test_new_condition_is_appended_with_transition_now() -> None:
    existing = set_condition([], "Ready", "True", "InSync", "fine", 1, T0)
    result = set_condition(existing, "Stalled", "True", "InvalidPrimaryAZ", "bad", 2, T1)
    assert [c.type for c in result] == ["Ready", "Stalled"]
    stalled = result[1]
    assert stalled.last_transition_time == T1.replace(microsecond=0)
    assert stalled.observed_generation == 2


def test_same_status_keeps_transition_time_but_updates_the_rest() -> None:
    before = set_condition([], "Ready", "False", "GroupBusy", "reversing", 1, T0)
    after = set_condition(before, "Ready", "False", "CooldownActive", "cooling", 2, T1)
    (condition,) = after
    assert condition.last_transition_time == T0
    assert (condition.reason, condition.message, condition.observed_generation) == (
        "CooldownActive",
        "cooling",
        2,
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param("False", "True", id="false-to-true"),
        pytest.param("True", "False", id="true-to-false"),
        pytest.param("True", "Unknown", id="true-to-unknown"),
        pytest.param("Unknown", "False", id="unknown-to-false"),
    ],
)
def test_status_flip_moves_transition_time(old: Any, new: Any) -> None:
    before = set_condition([], "Ready", old, "A", "a", 1, T0)
    (condition,) = set_condition(before, "Ready", new, "B", "b", 1, T1)
    assert condition.last_transition_time == T1.replace(microsecond=0)


def test_set_condition_returns_a_new_list_and_keeps_positions() -> None:
    original = set_condition(
        set_condition([], "Ready", "True", "A", "a", 1, T0), "Other", "True", "B", "b", 1, T0
    )
    snapshot = list(original)
    result = set_condition(original, "Ready", "False", "C", "c", 2, T1)
    assert original == snapshot
    assert [c.type for c in result] == ["Ready", "Other"]


def test_huge_message_is_truncated_to_what_the_apiserver_accepts() -> None:
    (condition,) = set_condition([], "Ready", "False", "A", "x" * 100_000, 1, T0)
    assert 32000 < len(condition.message) <= 32768 and condition.message.endswith("[truncated]")


def test_remove_condition() -> None:
    conditions = set_condition(
        set_condition([], "Ready", "True", "A", "a", 1, T0), "Stalled", "True", "B", "b", 1, T0
    )
    assert [c.type for c in remove_condition(conditions, "Stalled")] == ["Ready"]
    assert remove_condition(conditions, "Missing") == conditions


# --- conditions_for -----------------------------------------------------------------------------------------


def compute(
    previous: list[Condition],
    *,
    now: datetime = T0,
    generation: int = 1,
    ready: Any = ("True", "InSync", "ok"),
    reconciling: Any = None,
    stalled: Any = None,
    drifted: Any = None,
) -> list[Condition]:
    return conditions_for(
        generation=generation,
        now=now,
        previous=previous,
        ready=ready,
        reconciling=reconciling,
        stalled=stalled,
        replication_healthy=("True", "ReplicationActive", "ok"),
        switchover_allowed=("True", "Allowed", "ok"),
        drifted=drifted,
    )


def test_ready_first_and_optional_conditions_only_when_true() -> None:
    calm = compute([])
    assert [c.type for c in calm] == ["Ready", "ReplicationHealthy", "SwitchoverAllowed"]
    busy = compute(
        calm,
        reconciling=("GroupBusy", "wait"),
        stalled=("InvalidPrimaryAZ", "fix it"),
        drifted=("ExternalChange", "moved"),
    )
    assert [c.type for c in busy] == list(CONDITION_ORDER)
    assert by_type(busy)["Reconciling"].status == by_type(busy)["Stalled"].status == "True"
    assert by_type(busy)["Drifted"].status == "True"
    assert "Drifted" not in by_type(compute(busy, now=T1)), "Drifted is removed, never set False"


def test_reconciling_and_stalled_are_removed_not_set_false() -> None:
    busy = compute([], reconciling=("GroupBusy", "wait"), stalled=("InvalidPrimaryAZ", "fix it"))
    calm = compute(busy, now=T1)
    assert "Reconciling" not in by_type(calm) and "Stalled" not in by_type(calm)


def test_every_condition_carries_the_generation() -> None:
    result = compute(compute([], generation=1), generation=7, reconciling=("R", "r"), stalled=("S", "s"))
    assert {c.observed_generation for c in result} == {7}


def test_transition_times_survive_a_recompute_unless_status_flips() -> None:
    first = compute([], ready=("False", "GroupBusy", "wait"))
    second = compute(first, now=T1, generation=2, ready=("False", "CooldownActive", "cool"))
    assert by_type(second)["Ready"].last_transition_time == T0
    third = compute(second, now=T1, generation=2, ready=("True", "InSync", "ok"))
    assert by_type(third)["Ready"].last_transition_time == T1.replace(microsecond=0)
    assert by_type(third)["ReplicationHealthy"].last_transition_time == T0


def test_unchanged_input_gives_an_identical_list() -> None:
    first = compute([], reconciling=("GroupBusy", "wait"))
    assert compute(first, now=T1, reconciling=("GroupBusy", "wait")) == first


def test_foreign_conditions_are_kept_after_ours() -> None:
    foreign = set_condition([], "example.com/Audited", "True", "Seen", "by someone else", 1, T0)
    result = compute(foreign)
    assert [c.type for c in result] == [
        "Ready",
        "ReplicationHealthy",
        "SwitchoverAllowed",
        "example.com/Audited",
    ]
    assert result[-1] == foreign[0]


def test_conditions_round_trip_through_the_crd_shape() -> None:
    conditions = compute([], now=T1, reconciling=("GroupBusy", "wait"))
    dumped = ReplicationGroupStatus(conditions=conditions).dump()
    assert dumped["conditions"][0] == {
        "type": "Ready",
        "status": "True",
        "observedGeneration": 1,
        "lastTransitionTime": "2025-03-01T12:05:00Z",
        "reason": "InSync",
        "message": "ok",
    }
    assert ReplicationGroupStatus.model_validate(dumped).conditions == conditions


# --- derived from a plan ------------------------------------------------------------------------------------


def blocker(reason: str, kind: BlockKind) -> Blocker:
    return Blocker(reason, f"{reason} message", kind)


IN_SYNC = Plan(Action.NONE, AZ1, AZ1, "InSync", "nothing to do")
SWITCHOVER = Plan(Action.SWITCHOVER, AZ1, AZ2, "PrimaryAZChanged", "switch")


@pytest.mark.parametrize(
    ("plan", "ready", "reconciling", "stalled", "allowed"),
    [
        pytest.param(IN_SYNC, ("True", "InSync"), None, None, ("True", "Allowed"), id="in-sync"),
        pytest.param(
            SWITCHOVER,
            ("False", "PrimaryAZChanged"),
            "PrimaryAZChanged",
            None,
            ("True", "Allowed"),
            id="executable",
        ),
        pytest.param(
            Plan(Action.NONE, AZ1, AZ2, "GroupBusy", "busy", (blocker("GroupBusy", BlockKind.WAIT),)),
            ("False", "GroupBusy"),
            "GroupBusy",
            None,
            ("False", "GroupBusy"),
            id="wait",
        ),
        pytest.param(
            Plan(
                Action.SWITCHOVER,
                AZ1,
                AZ2,
                "PrimaryAZChanged",
                "switch",
                (blocker("AwaitingApproval", BlockKind.HOLD), blocker("DryRun", BlockKind.HOLD)),
            ),
            ("False", "AwaitingApproval"),
            None,
            None,
            ("False", "AwaitingApproval"),
            id="hold-is-neither-reconciling-nor-stalled",
        ),
        pytest.param(
            Plan(
                Action.SWITCHOVER,
                AZ1,
                AZ2,
                "PrimaryAZFaulty",
                "switch",
                (blocker("SwitchoverImpossible", BlockKind.BLOCKED),),
            ),
            ("False", "SwitchoverImpossible"),
            None,
            "SwitchoverImpossible",
            ("False", "SwitchoverImpossible"),
            id="blocked-is-stalled",
        ),
        pytest.param(
            Plan(
                Action.REPROTECT,
                AZ1,
                AZ1,
                "FailedOver",
                "reprotect",
                (
                    blocker("WaitingForOldAZRecovery", BlockKind.WAIT),
                    blocker("ReprotectRequired", BlockKind.BLOCKED),
                ),
            ),
            ("False", "WaitingForOldAZRecovery"),
            None,
            "ReprotectRequired",
            ("False", "WaitingForOldAZRecovery"),
            id="stalled-wins-over-reconciling",
        ),
        pytest.param(
            Plan(
                Action.NONE,
                AZ1,
                "az9",
                "InvalidPrimaryAZ",
                "bad",
                (blocker("InvalidPrimaryAZ", BlockKind.STALLED),),
            ),
            ("False", "InvalidPrimaryAZ"),
            None,
            "InvalidPrimaryAZ",
            ("False", "InvalidPrimaryAZ"),
            id="stalled",
        ),
    ],
)
def test_conditions_from_plan(
    plan: Plan, ready: tuple[str, str], reconciling: str | None, stalled: str | None, allowed: tuple[str, str]
) -> None:
    result = by_type(
        conditions_from_plan(plan=plan, observation=observation(), generation=4, now=T0, previous=[])
    )
    assert (result["Ready"].status, result["Ready"].reason) == ready
    assert (result["Reconciling"].reason if "Reconciling" in result else None) == reconciling
    assert (result["Stalled"].reason if "Stalled" in result else None) == stalled
    assert (result["SwitchoverAllowed"].status, result["SwitchoverAllowed"].reason) == allowed
    assert result["ReplicationHealthy"].status == "True"


@pytest.mark.parametrize(
    ("cloud", "expected"),
    [
        pytest.param(None, ("Unknown", "NotObserved"), id="not-observed"),
        pytest.param({}, ("True", "ReplicationActive"), id="healthy"),
        pytest.param(
            {"fault": Fault.LINK_DOWN, "fault_level": "5"}, ("False", "ReplicationLinkDown"), id="fault-5"
        ),
        pytest.param(
            {"fault": Fault.PRIMARY_FAULTY, "fault_level": "2"}, ("False", "PrimaryAZFaulty"), id="fault-2"
        ),
        pytest.param({"replication": Replication.COPYING}, ("False", "ReplicationDegraded"), id="copying"),
        pytest.param(
            {"state": GroupState.FAILED_OVER, "replication": Replication.STOPPED},
            ("False", "ReplicationDegraded"),
            id="failed-over",
        ),
        pytest.param(
            {"replication": Replication.UNKNOWN}, ("False", "ReplicationDegraded"), id="replication-unknown"
        ),
    ],
)
def test_replication_health(cloud: dict[str, Any] | None, expected: tuple[str, str]) -> None:
    status, reason, message = replication_health(None if cloud is None else observation(**cloud))
    assert (status, reason) == expected and message


@pytest.mark.parametrize(
    ("cloud", "expected"),
    [
        pytest.param({}, ("True", "Allowed"), id="healthy"),
        pytest.param({"fault": Fault.PRIMARY_FAULTY}, ("False", "SwitchoverImpossible"), id="fault-2"),
        pytest.param({"replication": Replication.INACTIVE}, ("False", "SwitchoverImpossible"), id="inactive"),
        pytest.param({"state": GroupState.FAILED_OVER}, ("False", "GroupNotAvailable"), id="failed-over"),
        pytest.param({"state": GroupState.UNPROTECTED}, ("False", "GroupNotAvailable"), id="unprotected"),
    ],
)
def test_switchover_allowed_when_nothing_is_planned(cloud: dict[str, Any], expected: tuple[str, str]) -> None:
    status, reason, _ = switchover_allowed(IN_SYNC, observation(**cloud))
    assert (status, reason) == expected


def test_switchover_allowed_unknown_without_observation() -> None:
    assert switchover_allowed(None, None)[:2] == ("Unknown", "NotObserved")


# --- plan, cloud and history parts -------------------------------------------------------------------------


def test_plan_status_shape() -> None:
    retry = T0 + timedelta(minutes=3)
    plan = Plan(
        Action.SWITCHOVER,
        AZ1,
        AZ2,
        "PrimaryAZChanged",
        "switch",
        (Blocker("CooldownActive", "cooling", BlockKind.WAIT, retry),),
    )
    assert plan_status(plan).dump() == {
        "action": "Switchover",
        "from": AZ1,
        "to": AZ2,
        "reason": "PrimaryAZChanged",
        "message": "switch",
        "blockers": [
            {
                "reason": "CooldownActive",
                "message": "cooling",
                "kind": "Wait",
                "retryAt": "2025-03-01T12:03:00Z",
            }
        ],
    }


def test_cloud_observation_shape() -> None:
    dumped = cloud_observation(observation(status="error", failure_detail="37000212")).dump()
    assert dumped == {
        "status": "error",
        "replicationStatus": "active",
        "faultLevel": "0",
        "failureDetail": "37000212",
        "observedAt": "2025-03-01T12:00:00Z",
    }


def finished(id_: str, minutes: int = 0) -> FinishedOperation:
    start = T0 + timedelta(minutes=minutes)
    return FinishedOperation(
        id=id_,
        action="Switchover",
        source=AZ1,
        target=AZ2,
        result="Succeeded",
        started_at=start,
        finished_at=start + timedelta(seconds=30),
        duration_seconds=30.0,
    )


def test_history_is_newest_first_and_trimmed() -> None:
    history: list[FinishedOperation] = []
    for n in range(12):
        history = append_history(history, finished(f"op-{n}", n))
    assert [entry.id for entry in history] == [f"op-{n}" for n in range(11, 1, -1)]


@pytest.mark.parametrize("limit", [1, 3])
def test_history_limit(limit: int) -> None:
    history = [finished(f"op-{n}") for n in range(5)]
    assert len(append_history(history, finished("new"), limit=limit)) == limit


def test_recording_the_same_operation_twice_does_not_duplicate_it() -> None:
    history = append_history([finished("a"), finished("b")], finished("b", 9))
    assert [entry.id for entry in history] == ["b", "a"]
    assert history[0].started_at == T0 + timedelta(minutes=9)


def test_append_history_does_not_mutate() -> None:
    history = [finished("a")]
    append_history(history, finished("b"))
    assert [entry.id for entry in history] == ["a"]
