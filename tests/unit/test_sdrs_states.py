"""SDRS's vocabulary into the neutral view, and what the planner then does: one row for every protection-group
status of cloud-api.md §4.3, every ``replication_status``/``health_status`` of §4.2, each with the health fields
present and ``null`` (groups created after a platform upgrade).

The rows are written from the document, not from ``sdrs_states``: if the mapping lost a value, or gained one the
document does not have, the completeness tests fail. The planner rows are what a user sees for each status
(issue 12 §3): protected + healthy → switch; ``available`` → Blocked ``ProtectionDisabled``; in-progress
statuses → wait; ``error-*`` → Stalled with the status named; ``failed-over`` → reprotect or Blocked.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from azswitch.cloud.sdrs_models import Job, ProtectionGroup
from azswitch.cloud.sdrs_states import HEALTH, REPLICATION, STATES, view_of, zones_of
from azswitch.models import ReplicationGroupSpec
from azswitch.observation import Fault, GroupState, Replication
from azswitch.plan import Action, BlockKind, PlanInput, plan

NOW = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
SOURCE, TARGET = "eu-west-0a", "eu-west-0b"

#: cloud-api.md §4.3, in the document's order: (status, neutral state).
DOCUMENTED_STATUSES = [
    ("creating", GroupState.BUSY),
    ("available", GroupState.UNPROTECTED),
    ("protected", GroupState.PROTECTED),
    ("deleting", GroupState.BUSY),
    ("error-deleting", GroupState.ERROR),
    ("error", GroupState.ERROR),
    ("starting", GroupState.BUSY),
    ("error-starting", GroupState.ERROR),
    ("reprotecting", GroupState.REPROTECTING),
    ("error-reprotecting", GroupState.ERROR),
    ("stopping", GroupState.BUSY),
    ("error-stopping", GroupState.ERROR),
    ("reversing", GroupState.SWITCHING),
    ("error-reversing", GroupState.ERROR),
    ("failing-over", GroupState.FAILING_OVER),
    ("failed-over", GroupState.FAILED_OVER),
    ("error-failing-over", GroupState.ERROR),
]
#: cloud-api.md §4.2.
DOCUMENTED_REPLICATION = [
    ("active", Replication.ACTIVE),
    ("inactive", Replication.INACTIVE),
    ("copying", Replication.COPYING),
    ("active-stopped", Replication.STOPPED),
]
DOCUMENTED_HEALTH = [("normal", Fault.NONE), ("abnormal", Fault.PRIMARY_FAULTY)]

POST_UPGRADE = {"protected_status": None, "replication_status": None, "health_status": None}


def group(**fields: Any) -> ProtectionGroup:
    wire: dict[str, Any] = {
        "id": "pg1",
        "status": "protected",
        "source_availability_zone": SOURCE,
        "target_availability_zone": TARGET,
        "priority_station": "source",
        "protected_status": "started",
        "replication_status": "active",
        "health_status": "normal",
    }
    wire.update(fields)
    return ProtectionGroup.model_validate(wire)


def view(**fields: Any):  # type: ignore[no-untyped-def]
    g = group(**fields)
    return view_of(g, zones_of(g), NOW)


def test_the_document_and_the_tables_agree() -> None:
    assert set(STATES) == {s for s, _ in DOCUMENTED_STATUSES}
    assert set(REPLICATION) == {r for r, _ in DOCUMENTED_REPLICATION}
    assert set(HEALTH) == {h for h, _ in DOCUMENTED_HEALTH}


@pytest.mark.parametrize("post_upgrade", [False, True], ids=["health-fields", "post-upgrade-nulls"])
@pytest.mark.parametrize(("status", "state"), [pytest.param(s, g, id=s) for s, g in DOCUMENTED_STATUSES])
def test_every_documented_status(status: str, state: GroupState, post_upgrade: bool) -> None:
    v = view(status=status, **(POST_UPGRADE if post_upgrade else {}))
    assert v.state is state
    assert v.cloud.status == status  # the raw word, for status.cloud and messages


def test_an_undocumented_status_is_unknown_and_never_acted_on() -> None:
    v = view(status="migrating")
    assert v.state is GroupState.UNKNOWN
    p = plan(_input(v, desired=TARGET))
    assert not p.executable and p.has(BlockKind.BLOCKED)


@pytest.mark.parametrize(
    ("value", "replication"), [pytest.param(v, r, id=v) for v, r in DOCUMENTED_REPLICATION]
)
def test_every_documented_replication_status(value: str, replication: Replication) -> None:
    v = view(replication_status=value)
    assert v.replication is replication
    assert v.cloud.replication_status == value


@pytest.mark.parametrize(("value", "fault"), [pytest.param(v, f, id=v) for v, f in DOCUMENTED_HEALTH])
def test_every_documented_health_status(value: str, fault: Fault) -> None:
    v = view(health_status=value)
    assert v.fault is fault
    assert v.cloud.health_status == value
    assert v.cloud.fault_phrase == f"health status {value}"


@pytest.mark.parametrize(
    ("station", "primary"), [("source", SOURCE), ("target", TARGET), (None, None), ("elsewhere", None)]
)
def test_the_primary_is_the_az_of_the_station(station: str | None, primary: str | None) -> None:
    v = view(priority_station=station)
    assert v.primary_az == primary
    assert v.availability_zones == tuple(sorted((SOURCE, TARGET)))
    assert "source" not in (v.primary_az or "") and "target" not in (v.primary_az or "")


# Post-upgrade groups: health decided on status + priority_station (cloud-api.md §4.2).
POST_UPGRADE_ROWS = [
    pytest.param("protected", "source", Replication.ACTIVE, True, id="protected-is-replicating"),
    pytest.param("protected", "target", Replication.ACTIVE, True, id="protected-after-a-reverse"),
    pytest.param("protected", None, Replication.UNKNOWN, False, id="protected-without-a-station"),
    pytest.param("failed-over", "target", Replication.STOPPED, False, id="failed-over-stopped"),
    pytest.param("reversing", "source", Replication.UNKNOWN, False, id="reversing-unknown"),
    pytest.param("error-reversing", "source", Replication.UNKNOWN, False, id="error-unknown"),
]


@pytest.mark.parametrize(("status", "station", "replication", "healthy"), POST_UPGRADE_ROWS)
def test_post_upgrade_health_from_status_and_station(
    status: str, station: str | None, replication: Replication, healthy: bool
) -> None:
    v = view(status=status, priority_station=station, **POST_UPGRADE)
    assert v.replication is replication
    assert v.fault is Fault.NONE
    assert v.healthy is healthy
    assert v.cloud.health_status is None


def test_a_partial_post_upgrade_group_uses_what_is_present() -> None:
    v = view(replication_status="inactive", health_status=None)
    assert (v.replication, v.fault, v.healthy) == (Replication.INACTIVE, Fault.NONE, False)


def test_an_unknown_health_word_is_degraded_never_healthy() -> None:
    assert view(health_status="warning").fault is Fault.DEGRADED


@pytest.mark.parametrize(
    ("source", "target", "zones"),
    [
        (SOURCE, TARGET, [SOURCE, TARGET]),
        (TARGET, SOURCE, [SOURCE, TARGET]),
        (SOURCE, SOURCE, []),
        (SOURCE, None, []),
    ],
)
def test_zones_come_from_the_group_itself(source: str, target: str | None, zones: list[str]) -> None:
    assert zones_of(group(source_availability_zone=source, target_availability_zone=target)) == zones


@pytest.mark.parametrize(
    "created_at",
    [
        "2019-05-22 08:16:54.413",
        "2019-05-22 08:16:54.4",
        "2019-05-22T08:16:54.413Z",
        "2019-05-22T08:16:54.413+00:00",
    ],
)
def test_created_at_is_parsed_leniently(created_at: str) -> None:
    parsed = group(created_at=created_at).created_at
    assert parsed is not None and parsed.tzinfo is not None
    assert (parsed.year, parsed.month, parsed.day, parsed.hour, parsed.minute) == (2019, 5, 22, 8, 16)


def test_junk_and_odd_types_do_not_break_observation() -> None:
    g = group(id=12345, created_at="yesterday", progress="n/a", extra={"x": 1}, status=None)
    assert (g.id, g.created_at, g.progress, g.status) == ("12345", None, None, "unknown")


def test_job_model_is_lenient() -> None:
    job = Job.model_validate({"status": None, "entities": None, "error_code": "", "job_id": 7})
    assert (job.status, job.entities, job.error_code, job.job_id) == ("UNKNOWN", {}, None, "7")


# --- what the planner makes of each status (the user's view of an SDRS group) ---------------------------------


def _spec(**overrides: Any) -> ReplicationGroupSpec:
    raw: dict[str, Any] = {
        "groupID": "pg1",
        "primaryAZ": TARGET,
        "cloud": {
            "service": "SDRS",
            "region": "eu-west-0",
            "projectID": "0123abcd",
            "credentialsSecretRef": {"name": "sdrs"},
        },
    }
    raw.update(overrides)
    return ReplicationGroupSpec.model_validate(raw)


def _input(v: Any, *, desired: str = TARGET, **spec: Any) -> PlanInput:
    return PlanInput(
        spec=_spec(primaryAZ=desired, **spec),
        observation=v,
        generation=1,
        now=NOW,
        approved_generation=None,
        last_finished_at=None,
        capacity_available=True,
        name="billing-db",
        namespace="payments",
    )


WAIT, BLOCKED, STALLED = BlockKind.WAIT, BlockKind.BLOCKED, BlockKind.STALLED
IN_PROGRESS = ["creating", "deleting", "starting", "stopping", "reversing", "failing-over", "reprotecting"]
ERRORS = [s for s, state in DOCUMENTED_STATUSES if state is GroupState.ERROR]


@pytest.mark.parametrize("post_upgrade", [False, True], ids=["health-fields", "post-upgrade-nulls"])
def test_protected_and_healthy_plans_a_switchover_to_the_desired_az(post_upgrade: bool) -> None:
    p = plan(_input(view(**(POST_UPGRADE if post_upgrade else {}))))
    assert (p.action, p.source, p.target, p.executable) == (Action.SWITCHOVER, SOURCE, TARGET, True)


def test_protected_and_aligned_is_in_sync() -> None:
    p = plan(_input(view(priority_station="target")))
    assert (p.action, p.reason, p.blockers) == (Action.NONE, "InSync", ())


@pytest.mark.parametrize("desired", [SOURCE, TARGET])
def test_protection_disabled_is_blocked_and_asks_to_enable_it(desired: str) -> None:
    p = plan(_input(view(status="available", protected_status="stopped"), desired=desired))
    assert not p.executable
    reasons = {(b.reason, b.kind) for b in p.blockers}
    assert ("ProtectionDisabled", BLOCKED) in reasons
    message = next(b.message for b in p.blockers if b.reason == "ProtectionDisabled")
    assert "enable" in message.lower() and "protection" in message.lower()


@pytest.mark.parametrize("status", IN_PROGRESS)
def test_in_progress_statuses_wait(status: str) -> None:
    p = plan(_input(view(status=status)))
    assert not p.executable
    assert p.has(WAIT) and not p.has(STALLED)


@pytest.mark.parametrize("status", ERRORS)
def test_error_statuses_stall_naming_the_status(status: str) -> None:
    p = plan(_input(view(status=status)))
    assert not p.executable
    stalled = [b for b in p.blockers if b.kind is STALLED]
    assert stalled and any(status in b.message for b in stalled)


def test_failed_over_is_reprotected_when_auto_reprotect() -> None:
    v = view(status="failed-over", priority_station="target", replication_status="active-stopped")
    p = plan(_input(v, failover={"allowed": True, "autoReprotect": True}))
    assert p.action is Action.REPROTECT and p.executable


def test_failed_over_without_auto_reprotect_is_blocked_with_a_reason() -> None:
    v = view(status="failed-over", priority_station="target", replication_status="active-stopped")
    p = plan(_input(v))
    assert not p.executable and p.blockers
    assert {b.kind for b in p.blockers} <= {BLOCKED, STALLED, BlockKind.HOLD}


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"health_status": "abnormal"}, id="health-abnormal"),
        pytest.param({"replication_status": "inactive"}, id="replication-inactive"),
        pytest.param({"replication_status": "copying"}, id="replication-copying"),
    ],
)
def test_unhealthy_blocks_a_planned_switchover(fields: dict[str, str]) -> None:
    p = plan(_input(view(**fields)))
    assert p.action is not Action.SWITCHOVER or not p.executable


def test_health_abnormal_fails_over_only_where_the_spec_allows() -> None:
    v = view(health_status="abnormal")
    assert not plan(_input(v)).executable
    p = plan(_input(v, failover={"allowed": True}))
    assert (p.action, p.target, p.executable) == (Action.FAILOVER, TARGET, True)
