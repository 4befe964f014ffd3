"""deploy/argocd-health.lua, run as Argo CD runs it, against the statuses the operator really writes.

Argo CD evaluates health scripts with gopher-lua (Lua 5.1) with ``obj`` bound to the resource as decoded
JSON; so these tests use lupa's Lua 5.1 runtime and run the chunk in an environment holding only ``obj`` and
the few standard functions the script may use, so that a script relying on anything else fails here rather
than in Argo CD. The samples follow operator/azswitch/status.py and reconcile.py: Ready always present,
Reconciling/Stalled only while True, every condition with observedGeneration.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

lupa_lua51 = pytest.importorskip("lupa.lua51", reason="lupa (a test dependency) is not installed")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SCRIPT = DEPLOY / "argocd-health.lua"
CM_PATCH = DEPLOY / "argocd-cm-patch.yaml"
CM_KEY = "resource.customizations.health.azswitch.io_ReplicationGroup"
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
T0 = "2025-01-01T00:00:00Z"


def run_health(obj: Mapping[str, Any]) -> dict[str, Any]:
    lua = lupa_lua51.LuaRuntime(unpack_returned_tuples=True)
    # Only what the script needs; gopher-lua in Argo CD offers more, never less.
    sandbox = lua.eval(
        "function(obj) return {obj = obj, ipairs = ipairs, pairs = pairs, tostring = tostring, "
        "tonumber = tonumber, type = type, next = next, string = string, table = table, math = math} end"
    )(lua.table_from(dict(obj), recursive=True))
    chunk = lua.execute(
        "return function(source, env) local f = assert(loadstring(source)); setfenv(f, env); return f() end"
    )
    result = chunk(SCRIPT.read_text(), sandbox)
    return {str(k): v for k, v in result.items()}


def cond(type_: str, status: str, reason: str, message: str, generation: int = 3) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": T0,
    }


def rg(
    *,
    generation: int = 3,
    spec: Mapping[str, Any] | None = None,
    status: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "azswitch.io/v1alpha1",
        "kind": "ReplicationGroup",
        "metadata": {"name": "orders-db", "namespace": "payments", "generation": generation},
        "spec": {
            "groupID": "91085433-9499-4a68-b2c6-35072467ccd2",
            "primaryAZ": "az2.dc2",
            "cloud": {
                "region": "cn-north-4",
                "projectID": "0123456789abcdef0123456789abcdef",
                "credentialsSecretRef": {"name": "evs-credentials"},
            },
            "suspend": False,
            **(spec or {}),
        },
    }
    if status is not None:
        obj["status"] = dict(status)
    return obj


HEALTHY_REPLICATION = cond("ReplicationHealthy", "True", "ReplicationActive", "replication is active")
ALLOWED = cond("SwitchoverAllowed", "True", "Allowed", "a planned switchover can be started now")
CLOUD: dict[str, Any] = {
    "status": "available",
    "replicationStatus": "active",
    "faultLevel": "0",
    "observedAt": T0,
}

READY: dict[str, Any] = {
    "observedGeneration": 3,
    "phase": "Ready",
    "currentPrimaryAZ": "az2.dc2",
    "availabilityZones": ["az1.dc1", "az2.dc2"],
    "cloud": CLOUD,
    "plan": {
        "action": "None",
        "reason": "InSync",
        "message": "primary is az2.dc2 as desired",
        "blockers": [],
    },
    "conditions": [
        cond("Ready", "True", "InSync", "primary is az2.dc2 as desired"),
        HEALTHY_REPLICATION,
        ALLOWED,
    ],
}

SWITCHING_OVER: dict[str, Any] = {
    "observedGeneration": 3,
    "phase": "SwitchingOver",
    "currentPrimaryAZ": "az1.dc1",
    "cloud": {**CLOUD, "status": "reversing", "replicationStatus": "copying"},
    "operation": {
        "id": "7f9c",
        "action": "Switchover",
        "from": "az1.dc1",
        "to": "az2.dc2",
        "state": "InProgress",
        "requestedAt": T0,
        "attempts": 1,
    },
    "conditions": [
        cond("Ready", "False", "SwitchingOver", "Switchover 7f9c InProgress: az1.dc1 → az2.dc2 (attempt 1)"),
        cond(
            "Reconciling",
            "True",
            "SwitchingOver",
            "Switchover 7f9c InProgress: az1.dc1 → az2.dc2 (attempt 1)",
        ),
        cond("ReplicationHealthy", "False", "ReplicationDegraded", "replication status is copying"),
        cond("SwitchoverAllowed", "False", "OperationInProgress", "an operation is in flight"),
    ],
}

JOURNALED: dict[str, Any] = {
    # The intent is recorded before the request is sent; Reconciling comes with the next status write.
    "observedGeneration": 3,
    "phase": "SwitchingOver",
    "operation": {
        "id": "7f9c",
        "action": "Switchover",
        "from": "az1.dc1",
        "to": "az2.dc2",
        "state": "Requested",
        "requestedAt": T0,
    },
    "conditions": [cond("Ready", "True", "InSync", "primary is az1.dc1 as desired", generation=2)],
}

COOLDOWN: dict[str, Any] = {
    "observedGeneration": 3,
    "phase": "Pending",
    "conditions": [
        cond("Ready", "False", "CooldownActive", "cooldown after the last operation until 10:05"),
        cond("Reconciling", "True", "CooldownActive", "cooldown after the last operation until 10:05"),
        HEALTHY_REPLICATION,
        cond("SwitchoverAllowed", "False", "CooldownActive", "cooldown"),
    ],
}

CLOUD_UNREACHABLE: dict[str, Any] = {
    "observedGeneration": 3,
    "phase": "Unknown",
    "conditions": [
        cond("Ready", "Unknown", "CloudUnreachable", "cannot read the cloud group: 503; retrying in 5s"),
        cond("Reconciling", "True", "CloudUnreachable", "503 Service Unavailable"),
    ],
}

BLOCKED_STALLED: dict[str, Any] = {
    "observedGeneration": 3,
    "phase": "Blocked",
    "plan": {
        "action": "Switchover",
        "reason": "InvalidPrimaryAZ",
        "blockers": [
            {"reason": "InvalidPrimaryAZ", "message": "az9 is not one of az1.dc1, az2.dc2", "kind": "Stalled"}
        ],
    },
    "conditions": [
        cond("Ready", "False", "InvalidPrimaryAZ", "az9 is not one of az1.dc1, az2.dc2"),
        cond("Stalled", "True", "InvalidPrimaryAZ", "az9 is not one of az1.dc1, az2.dc2; fix spec.primaryAZ"),
        HEALTHY_REPLICATION,
        cond("SwitchoverAllowed", "False", "InvalidPrimaryAZ", "az9 is not one of the group's AZs"),
    ],
}

FAILED: dict[str, Any] = {
    "observedGeneration": 3,
    "phase": "Failed",
    "lastOperation": {
        "id": "7f9c",
        "action": "Switchover",
        "result": "Failed",
        "startedAt": T0,
        "finishedAt": T0,
        "message": "the cloud reported error_reversing",
    },
    "conditions": [
        cond("Ready", "False", "SwitchoverFailed", "Switchover 7f9c failed: error_reversing"),
        cond("Stalled", "True", "SwitchoverFailed", "Switchover 7f9c failed: error_reversing"),
    ],
}

FAILED_NO_STALLED: dict[str, Any] = {
    "observedGeneration": 3,
    "phase": "Failed",
    "lastOperation": {**FAILED["lastOperation"], "result": "TimedOut", "message": "timed out after 30m"},
    "conditions": [cond("Ready", "False", "SwitchoverTimedOut", "Switchover 7f9c timed out after 30m")],
}

SUSPENDED: dict[str, Any] = {
    "observedGeneration": 3,
    "phase": "Suspended",
    "conditions": [cond("Ready", "False", "Suspended", "spec.suspend is true: no cloud calls are made")],
}

AWAITING_APPROVAL: dict[str, Any] = {
    "observedGeneration": 3,
    "phase": "AwaitingApproval",
    "plan": {
        "action": "Switchover",
        "reason": "AwaitingApproval",
        "blockers": [
            {
                "reason": "AwaitingApproval",
                "kind": "Hold",
                "message": "Switchover needs approval for generation 3: kubectl annotate rg orders-db "
                "-n payments azswitch.io/approve=3 --overwrite",
            }
        ],
    },
    "conditions": [
        cond(
            "Ready",
            "False",
            "AwaitingApproval",
            "Switchover needs approval for generation 3: kubectl annotate rg orders-db -n payments "
            "azswitch.io/approve=3 --overwrite",
        ),
        HEALTHY_REPLICATION,
        cond("SwitchoverAllowed", "False", "AwaitingApproval", "approval needed"),
    ],
}

DRY_RUN: dict[str, Any] = {
    "observedGeneration": 3,
    "phase": "Pending",
    "plan": {
        "action": "Switchover",
        "reason": "DryRun",
        "blockers": [
            {
                "reason": "DryRun",
                "kind": "Hold",
                "message": "spec.dryRun is true: would switch over az1.dc1 → az2.dc2",
            }
        ],
    },
    "conditions": [
        cond("Ready", "False", "DryRun", "spec.dryRun is true: would switch over az1.dc1 → az2.dc2"),
        HEALTHY_REPLICATION,
    ],
}

NOT_READY_UNEXPLAINED: dict[str, Any] = {
    "observedGeneration": 3,
    "phase": "Pending",
    "conditions": [cond("Ready", "False", "SomethingNew", "a state this script does not know")],
}


@pytest.mark.parametrize(
    ("obj", "status", "message"),
    [
        pytest.param(rg(), "Progressing", "Waiting for the azswitch operator", id="no-status-yet"),
        pytest.param(rg(status={}), "Progressing", "Waiting for the azswitch operator", id="empty-status"),
        pytest.param(rg(status=READY), "Healthy", "primary is az2.dc2 as desired", id="ready"),
        pytest.param(
            rg(generation=4, status=READY),
            "Progressing",
            "generation 4 (status is for 3)",
            id="ready-but-generation-not-observed",
        ),
        pytest.param(
            rg(status={k: v for k, v in READY.items() if k != "observedGeneration"}),
            "Progressing",
            "generation 3 (status is for none)",
            id="no-observed-generation",
        ),
        pytest.param(
            rg(
                status={
                    **READY,
                    "conditions": [cond("Ready", "True", "InSync", "primary is az2.dc2", generation=2)],
                }
            ),
            "Progressing",
            "Ready is from generation 2; waiting for generation 3",
            id="ready-condition-from-older-generation",
        ),
        pytest.param(
            rg(status=SWITCHING_OVER), "Progressing", "Switchover 7f9c InProgress", id="switching-over"
        ),
        pytest.param(
            rg(status=JOURNALED),
            "Progressing",
            "Switchover az1.dc1 -> az2.dc2 Requested",
            id="operation-journaled-before-reconciling",
        ),
        pytest.param(rg(status=COOLDOWN), "Progressing", "cooldown after the last operation", id="cooldown"),
        pytest.param(rg(status=CLOUD_UNREACHABLE), "Progressing", "503", id="cloud-unreachable"),
        pytest.param(
            rg(status=BLOCKED_STALLED), "Degraded", "fix spec.primaryAZ", id="stalled-invalid-primary-az"
        ),
        pytest.param(rg(status=FAILED), "Degraded", "error_reversing", id="failed-operation"),
        pytest.param(
            rg(status=FAILED_NO_STALLED), "Degraded", "timed out", id="failed-phase-without-stalled"
        ),
        pytest.param(
            rg(generation=4, status=BLOCKED_STALLED),
            "Progressing",
            "generation 4",
            id="stalled-but-new-generation-may-fix-it",
        ),
        pytest.param(
            rg(spec={"suspend": True}, status=SUSPENDED),
            "Suspended",
            "spec.suspend is true: no cloud calls are made",
            id="suspended",
        ),
        pytest.param(
            rg(generation=4, spec={"suspend": True}, status=READY),
            "Suspended",
            "not yet confirmed by the operator",
            id="suspend-not-yet-observed",
        ),
        pytest.param(
            rg(spec={"suspend": True}), "Suspended", "spec.suspend is true", id="suspended-before-any-status"
        ),
        pytest.param(
            rg(status=SUSPENDED), "Suspended", "no cloud calls are made", id="phase-suspended-spec-not"
        ),
        pytest.param(
            rg(status=AWAITING_APPROVAL),
            "Suspended",
            "Manual approval needed: Switchover needs approval for generation 3",
            id="awaiting-approval",
        ),
        pytest.param(rg(status=DRY_RUN), "Suspended", "spec.dryRun is true", id="dry-run-hold"),
        pytest.param(
            rg(status=NOT_READY_UNEXPLAINED), "Degraded", "does not know", id="not-ready-without-explanation"
        ),
        pytest.param(
            rg(status={"observedGeneration": 3, "phase": "Unknown", "conditions": []}),
            "Progressing",
            "Waiting for the operator to report readiness",
            id="no-ready-condition",
        ),
    ],
)
def test_health(obj: dict[str, Any], status: str, message: str) -> None:
    health = run_health(obj)
    assert health["status"] == status, health
    assert message in health["message"], health


def test_approval_message_carries_the_command() -> None:
    message = run_health(rg(status=AWAITING_APPROVAL))["message"]
    assert "kubectl annotate rg orders-db" in message
    assert "azswitch.io/approve=3" in message


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(READY, id="ready"),
        pytest.param(SWITCHING_OVER, id="switching-over"),
        pytest.param(JOURNALED, id="journaled"),
        pytest.param(COOLDOWN, id="cooldown"),
        pytest.param(CLOUD_UNREACHABLE, id="cloud-unreachable"),
        pytest.param(BLOCKED_STALLED, id="blocked"),
        pytest.param(FAILED, id="failed"),
        pytest.param(FAILED_NO_STALLED, id="failed-no-stalled"),
        pytest.param(SUSPENDED, id="suspended"),
        pytest.param(AWAITING_APPROVAL, id="awaiting-approval"),
        pytest.param(DRY_RUN, id="dry-run"),
        pytest.param(NOT_READY_UNEXPLAINED, id="not-ready-unexplained"),
        # Conditions without messages: the script must fall back to words of its own.
        pytest.param(
            {
                "observedGeneration": 3,
                "phase": "Failed",
                "conditions": [{"type": "Stalled", "status": "True"}],
            },
            id="stalled-without-message",
        ),
        pytest.param(
            {"observedGeneration": 3, "conditions": [{"type": "Ready", "status": "True"}]},
            id="ready-without-message",
        ),
        pytest.param(
            {"observedGeneration": 3, "conditions": [{"type": "Reconciling", "status": "True"}]},
            id="reconciling-without-message",
        ),
        pytest.param(
            {"observedGeneration": 3, "phase": "AwaitingApproval", "conditions": []},
            id="approval-without-ready",
        ),
    ],
)
def test_always_a_known_status_and_a_message(status: dict[str, Any]) -> None:
    health = run_health(rg(status=status))
    assert health["status"] in ARGO_STATUSES
    assert isinstance(health["message"], str)
    assert health["message"].strip()


def test_argocd_cm_patch_installs_this_exact_script() -> None:
    patch = yaml.safe_load(CM_PATCH.read_text())
    assert patch["kind"] == "ConfigMap"
    assert patch["metadata"] == {"name": "argocd-cm", "namespace": "argocd"}
    assert set(patch["data"]) == {CM_KEY}
    assert patch["data"][CM_KEY] == SCRIPT.read_text(), (
        "deploy/argocd-cm-patch.yaml is out of date; regenerate its data block from deploy/argocd-health.lua"
    )
