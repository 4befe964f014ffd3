"""The CR models: durations, spec validation and its error messages, and the status shape written back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from azswitch.durations import format_duration, parse_duration
from azswitch.errors import ConfigError
from azswitch.models import (
    CloudObservation,
    Condition,
    FinishedOperation,
    OperationStatus,
    PlanStatus,
    ReplicationGroupSpec,
    ReplicationGroupStatus,
    parse_spec,
    spec_errors,
)

# --- durations ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("0", timedelta(0), id="bare-zero"),
        pytest.param("0s", timedelta(0), id="zero-seconds"),
        pytest.param("90s", timedelta(seconds=90), id="seconds"),
        pytest.param("30m", timedelta(minutes=30), id="minutes"),
        pytest.param("2h", timedelta(hours=2), id="hours"),
        pytest.param("1h30m", timedelta(hours=1, minutes=30), id="hours-minutes"),
        pytest.param("1h0m0s", timedelta(hours=1), id="go-style-zeros"),
        pytest.param("500ms", timedelta(milliseconds=500), id="milliseconds"),
        pytest.param("1m500ms", timedelta(minutes=1, milliseconds=500), id="minutes-then-milliseconds"),
        pytest.param("1.5h", timedelta(minutes=90), id="decimal-hours"),
        pytest.param("2h45m30.25s", timedelta(hours=2, minutes=45, seconds=30.25), id="decimal-seconds"),
        pytest.param("30s1m", timedelta(seconds=90), id="any-order-as-in-go"),
        pytest.param("1h1h", timedelta(hours=2), id="repeated-unit-adds-up-as-in-go"),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("30", id="no-unit"),
        pytest.param("-5m", id="negative"),
        pytest.param("5 m", id="inner-space"),
        pytest.param(" 30m", id="leading-space"),
        pytest.param("5M", id="upper-case-unit"),
        pytest.param("1d", id="days-unsupported"),
        pytest.param("1h-30m", id="negative-term"),
        pytest.param("m", id="unit-only"),
        pytest.param(".5s", id="no-leading-digit"),
        pytest.param("1.s", id="dangling-dot"),
        pytest.param("PT30M", id="iso-8601"),
        pytest.param(30, id="a-number"),
        pytest.param(None, id="none"),
    ],
)
def test_parse_duration_rejects(text: Any) -> None:
    with pytest.raises(ValueError, match="invalid duration") as info:
        parse_duration(text)
    assert repr(text) in str(info.value)
    assert "1h30m" in str(info.value)


def test_parse_duration_too_large() -> None:
    with pytest.raises(ValueError, match="too large"):
        parse_duration("9" * 30 + "h")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(timedelta(0), "0s", id="zero"),
        pytest.param(timedelta(seconds=90), "1m30s", id="ninety-seconds"),
        pytest.param(timedelta(minutes=30), "30m", id="minutes"),
        pytest.param(timedelta(hours=1, minutes=30), "1h30m", id="hours-minutes"),
        pytest.param(timedelta(hours=1, seconds=5), "1h5s", id="skips-zero-minutes"),
        pytest.param(timedelta(days=2), "48h", id="days-as-hours"),
        pytest.param(timedelta(milliseconds=500), "500ms", id="milliseconds"),
        pytest.param(timedelta(seconds=1, milliseconds=500), "1.5s", id="fractional-seconds"),
        pytest.param(timedelta(microseconds=1), "0.000001s", id="microsecond"),
    ],
)
def test_format_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text
    assert parse_duration(text) == value


def test_format_duration_refuses_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration(timedelta(seconds=-1))


# --- spec ---------------------------------------------------------------------------------------------------


def raw_spec(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "groupID": "91085433-9499-4a68-b2c6-35072467ccd2",
        "primaryAZ": "az2.dc2",
        "cloud": {
            "region": "cn-north-4",
            "projectID": "0123456789abcdef0123456789abcdef",
            "credentialsSecretRef": {"name": "evs-credentials"},
        },
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


def test_minimal_spec_gets_the_documented_defaults() -> None:
    spec = ReplicationGroupSpec.model_validate(raw_spec())
    assert spec.switchover.approval == "Automatic"
    assert spec.switchover.timeout == timedelta(minutes=30)
    assert spec.switchover.min_interval == timedelta(0)
    assert (spec.failover.allowed, spec.failover.auto_reprotect, spec.dry_run, spec.suspend) == (
        False,
        False,
        False,
        False,
    )
    assert spec.cloud.endpoint is None


def test_full_spec_from_the_design_document() -> None:
    spec = ReplicationGroupSpec.model_validate(
        raw_spec(
            cloud={"endpoint": "https://evs.cn-north-4.example"},
            switchover={"approval": "Manual", "timeout": "1h30m", "minInterval": "10m"},
            failover={"allowed": True, "autoReprotect": True},
            dryRun=True,
            suspend=False,
        )
    )
    assert spec.switchover.timeout == timedelta(minutes=90)
    assert spec.switchover.min_interval == timedelta(minutes=10)
    assert spec.failover.auto_reprotect and spec.dry_run
    # And back to the CR's own spelling.
    dumped = spec.model_dump(by_alias=True, mode="json", exclude_none=True)
    assert dumped["switchover"] == {"approval": "Manual", "timeout": "1h30m", "minInterval": "10m"}
    assert dumped["cloud"]["credentialsSecretRef"] == {"name": "evs-credentials"}


def test_spec_can_be_built_with_python_names_and_is_frozen() -> None:
    spec = ReplicationGroupSpec.model_validate(raw_spec())
    assert (
        ReplicationGroupSpec(
            group_id=spec.group_id, primary_az=spec.primary_az, cloud=spec.cloud, dry_run=False
        )
        == spec
    )
    with pytest.raises(ValidationError, match="frozen"):
        spec.primary_az = "az1.dc1"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            {k: v for k, v in raw_spec().items() if k != "groupID"},
            "spec.groupID: required field is missing — fix: set the ID of the cloud replication "
            "consistency group",
            id="missing-group-id",
        ),
        pytest.param(
            raw_spec(groupID="x" * 129), "spec.groupID: String should have at most 128", id="group-id-long"
        ),
        pytest.param(
            raw_spec(groupID="-abc"), "spec.groupID: String should match pattern", id="group-id-pattern"
        ),
        pytest.param(
            raw_spec(cloud={"projectID": "abc-!"}),
            "spec.cloud.projectID: String should match pattern '^[A-Za-z0-9]{1,64}$' (got 'abc-!') — fix: "
            "use the project ID",
            id="project-id-pattern",
        ),
        pytest.param(
            raw_spec(cloud={"region": "CN-North-4"}), "spec.cloud.region: String should match", id="region"
        ),
        pytest.param(
            raw_spec(cloud={"endpoint": "https://user:pw@evs.example"}),
            "spec.cloud.endpoint: String should match pattern",
            id="endpoint-with-credentials",
        ),
        pytest.param(
            raw_spec(cloud={"endpoint": "ftp://evs.example"}), "spec.cloud.endpoint:", id="endpoint-scheme"
        ),
        pytest.param(
            raw_spec(cloud={"credentialsSecretRef": {"name": "EVS_Creds"}}),
            "spec.cloud.credentialsSecretRef.name: String should match pattern",
            id="secret-name",
        ),
        pytest.param(
            raw_spec(cloud={"credentialsSecretRef": {}}),
            "spec.cloud.credentialsSecretRef.name: required field is missing",
            id="secret-name-missing",
        ),
        pytest.param(
            raw_spec(primaryAZ="az 2"), "spec.primaryAZ: String should match pattern", id="primary-az-pattern"
        ),
        pytest.param(
            raw_spec(switchover={"approval": "manual"}),
            "spec.switchover.approval: Input should be 'Automatic' or 'Manual' (got 'manual') — fix: use "
            "Automatic or Manual",
            id="approval-enum",
        ),
        pytest.param(
            raw_spec(switchover={"timeout": "3x"}),
            "spec.switchover.timeout: invalid duration '3x': expected a duration such as",
            id="timeout-not-a-duration",
        ),
        pytest.param(
            raw_spec(switchover={"timeout": "0s"}),
            "spec.switchover.timeout: timeout must be greater than 0s",
            id="timeout-zero",
        ),
        pytest.param(
            raw_spec(switchover={"minInterval": 30}),
            "spec.switchover.minInterval: invalid duration 30",
            id="min-interval-number",
        ),
        pytest.param(
            raw_spec(dryRun="yes"), "spec.dryRun: Input should be a valid boolean", id="dry-run-string"
        ),
        pytest.param(
            raw_spec(failover={"allowed": 1}),
            "spec.failover.allowed: Input should be a valid boolean",
            id="int-bool",
        ),
        pytest.param(
            raw_spec(cloud={"projectId": "abc"}),
            "spec.cloud.projectId: unknown field — fix: remove it or correct its spelling "
            "(known here: region, projectID, endpoint, service, credentialsSecretRef)",
            id="unknown-field-lists-known-ones",
        ),
        pytest.param(
            raw_spec(switchover={"approvals": "Manual"}),
            "spec.switchover.approvals: unknown field",
            id="unknown-nested-field",
        ),
    ],
)
def test_spec_errors_name_the_field(raw: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as info:
        ReplicationGroupSpec.model_validate(raw)
    assert expected in spec_errors(info.value)


def test_spec_errors_report_every_problem() -> None:
    raw = raw_spec(primaryAz="az1.dc1", cloud={"region": "X"})
    del raw["primaryAZ"]
    with pytest.raises(ValidationError) as info:
        ReplicationGroupSpec.model_validate(raw)
    text = spec_errors(info.value)
    # "; " separates problems, so no single problem may contain it.
    assert text.count("; ") == 2, text
    assert "spec.primaryAZ: required field is missing" in text
    assert "spec.primaryAz: unknown field" in text
    assert "spec.cloud.region:" in text


def test_parse_spec_raises_config_error() -> None:
    assert parse_spec(raw_spec()).group_id == "91085433-9499-4a68-b2c6-35072467ccd2"
    with pytest.raises(ConfigError, match=r"spec\.cloud\.projectID"):
        parse_spec(raw_spec(cloud={"projectID": "-"}))
    with pytest.raises(ConfigError, match="spec: missing"):
        parse_spec(None)


# --- status -------------------------------------------------------------------------------------------------

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def test_status_dump_has_exactly_the_crd_shape() -> None:
    finished = FinishedOperation(
        id="op-1",
        action="Switchover",
        source="az1.dc1",
        target="az2.dc2",
        result="Succeeded",
        started_at=T0,
        finished_at=T0 + timedelta(seconds=95, milliseconds=500),
        duration_seconds=95.5,
        message="done",
    )
    status = ReplicationGroupStatus(
        observed_generation=7,
        phase="SwitchingOver",
        current_primary_az="az1.dc1",
        availability_zones=["az1.dc1", "az2.dc2"],
        cloud=CloudObservation(
            status="reversing", replication_status="copying", fault_level="0", observed_at=T0
        ),
        plan=PlanStatus(action="Switchover", source="az1.dc1", target="az2.dc2", reason="PrimaryAZChanged"),
        operation=OperationStatus(
            id="op-2",
            action="Switchover",
            source="az1.dc1",
            target="az2.dc2",
            state="InProgress",
            requested_at=T0,
            accepted_at=T0 + timedelta(seconds=1),
            generation=7,
        ),
        last_operation=finished,
        history=[finished],
        pending_generation=8,
        conditions=[
            Condition(
                type="Ready",
                status="False",
                observed_generation=7,
                last_transition_time=T0,
                reason="SwitchingOver",
                message="switching",
            )
        ],
    )
    finished_shape = {
        "id": "op-1",
        "action": "Switchover",
        "from": "az1.dc1",
        "to": "az2.dc2",
        "result": "Succeeded",
        "startedAt": "2025-03-01T12:00:00Z",
        "finishedAt": "2025-03-01T12:01:35.500000Z",
        "durationSeconds": 95.5,
        "message": "done",
    }
    assert status.dump() == {
        "observedGeneration": 7,
        "phase": "SwitchingOver",
        "currentPrimaryAZ": "az1.dc1",
        "availabilityZones": ["az1.dc1", "az2.dc2"],
        "cloud": {
            "status": "reversing",
            "replicationStatus": "copying",
            "faultLevel": "0",
            "observedAt": "2025-03-01T12:00:00Z",
        },
        "plan": {
            "action": "Switchover",
            "from": "az1.dc1",
            "to": "az2.dc2",
            "reason": "PrimaryAZChanged",
            "message": "",
            "blockers": [],
        },
        "operation": {
            "id": "op-2",
            "action": "Switchover",
            "from": "az1.dc1",
            "to": "az2.dc2",
            "state": "InProgress",
            "requestedAt": "2025-03-01T12:00:00Z",
            "acceptedAt": "2025-03-01T12:00:01Z",
            "attempts": 1,
            "generation": 7,
        },
        "lastOperation": finished_shape,
        "history": [finished_shape],
        "pendingGeneration": 8,
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "observedGeneration": 7,
                "lastTransitionTime": "2025-03-01T12:00:00Z",
                "reason": "SwitchingOver",
                "message": "switching",
            }
        ],
    }
    assert ReplicationGroupStatus.model_validate(status.dump()) == status


def test_empty_status_dump() -> None:
    assert ReplicationGroupStatus().dump() == {"availabilityZones": [], "history": [], "conditions": []}


def test_status_reads_what_the_apiserver_returns_and_ignores_unknown_fields() -> None:
    status = ReplicationGroupStatus.model_validate(
        {
            "phase": "Ready",
            "someFutureField": 1,
            "cloud": {
                "status": "available",
                "faultLevel": "0",
                "observedAt": "2025-03-01T12:00:00Z",
                "failureDetail": None,
            },
        }
    )
    assert status.cloud is not None and status.cloud.observed_at == T0


def test_timestamps_are_normalised_to_utc_and_must_have_a_zone() -> None:
    plus_two = timezone(timedelta(hours=2))
    observation = CloudObservation(status="available", fault_level="0", observed_at=T0.astimezone(plus_two))
    assert observation.dump()["observedAt"] == "2025-03-01T12:00:00Z"
    with pytest.raises(ValidationError, match="timezone"):
        CloudObservation(status="available", fault_level="0", observed_at=datetime(2025, 3, 1, 12))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("reason", "not camel case", id="reason-with-spaces"),
        pytest.param("reason", "", id="empty-reason"),
        pytest.param("type", "Bad Type", id="type-with-space"),
        pytest.param("status", "true", id="lower-case-status"),
    ],
)
def test_condition_refuses_what_the_apiserver_would(field: str, value: str) -> None:
    fields: dict[str, Any] = {
        "type": "Ready",
        "status": "True",
        "last_transition_time": T0,
        "reason": "InSync",
        "message": "ok",
        field: value,
    }
    with pytest.raises(ValidationError):
        Condition(**fields)


def test_history_is_capped_at_ten() -> None:
    entry = FinishedOperation(
        id="x", action="Failover", result="Failed", started_at=T0, finished_at=T0 + timedelta(seconds=1)
    )
    with pytest.raises(ValidationError, match="at most 10"):
        ReplicationGroupStatus(history=[entry] * 11)
