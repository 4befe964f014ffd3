"""The operator's promises, end to end: kubectl → kube-apiserver → ``azswitch run`` → the simulated cloud.

Everything runs as a user would run it (conftest.py): YAML through kubectl, the operator as its own process
with deploy/'s ServiceAccount and RBAC, the cloud over HTTP. Each scenario asserts on what a user can see —
status, conditions, events, ``kubectl get``/``wait`` — and on what the cloud received (the simulator's
request log), which is the only place "exactly one switchover" can be proven.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from conftest import (
    AK,
    AZ1,
    AZ2,
    E2E,
    OPERATION_TIMEOUT,
    PROJECT,
    REGION,
    SECRET,
    SK,
    condition_of,
)

pytestmark = pytest.mark.e2e

# Long enough that a kill -9 and a restart certainly happen mid-switchover; the test then moves the
# simulator's clock instead of waiting. Less than the 15 min of clock skew AK/SK signatures tolerate.
SLOW_SWITCHOVER_SECONDS = 120


def parse_table(text: str) -> list[dict[str, str]]:
    """``kubectl get`` output as rows keyed by header; columns are located by the header's offsets, so
    an empty cell stays an empty string instead of shifting the columns after it."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0]
    names = header.split()
    starts = [match.start() for match in re.finditer(r"\S+", header)]
    rows = []
    for line in lines[1:]:
        cells = [
            line[start : (starts[i + 1] if i + 1 < len(starts) else None)] for i, start in enumerate(starts)
        ]
        rows.append({name: cell.strip() for name, cell in zip(names, cells, strict=True)})
    return rows


def dedup(values: list[Any]) -> list[Any]:
    return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]


def succeeded_for_generation(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    return (
        status.get("observedGeneration") == obj["metadata"]["generation"]
        and (status.get("lastOperation") or {}).get("result") == "Succeeded"
        and condition_of(obj, "Ready").get("status") == "True"
        and not status.get("operation")
    )


def test_applied_yaml_becomes_ready_without_mutating_calls(e2e: E2E, ns: str) -> None:
    group = e2e.new_group(primary=AZ1)
    e2e.kubectl.apply(f"""
apiVersion: v1
kind: Secret
metadata: {{name: {SECRET}, namespace: {ns}}}
stringData: {{accessKey: {AK}, secretKey: {SK}}}
---
apiVersion: azswitch.io/v1alpha1
kind: ReplicationGroup
metadata: {{name: orders-db, namespace: {ns}}}
spec:
  groupID: {group}
  primaryAZ: {AZ1}
  cloud:
    region: {REGION}
    projectID: {PROJECT}
    endpoint: {e2e.sim.url}
    credentialsSecretRef: {{name: {SECRET}}}
""")

    obj = e2e.wait_condition(ns, "orders-db", "Ready", "True", reason="InSync")
    status = obj["status"]
    assert status["phase"] == "Ready"
    assert status["currentPrimaryAZ"] == AZ1
    assert sorted(status["availabilityZones"]) == [AZ1, AZ2]
    assert status["observedGeneration"] == 1
    assert status["cloud"]["replicationStatus"] == "active"
    assert status["plan"]["action"] == "None"
    types = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert types == {
        "Ready": ("True", "InSync"),
        "ReplicationHealthy": ("True", "ReplicationActive"),
        "SwitchoverAllowed": ("True", "Allowed"),
    }
    # Let the operator look at the group again (a resync) before concluding that nothing was ever sent.
    e2e.wait_for_fresh_looks(group)
    assert e2e.sim.mutating(group) == []
    assert [e["reason"] for e in e2e.events(ns, "orders-db") if e["type"] == "Warning"] == []


def test_kubectl_wait_and_printer_columns(e2e: E2E, ns: str, secret: str) -> None:
    group = e2e.new_group(primary=AZ2)
    e2e.kubectl.apply([e2e.rg_manifest(ns, "payments-db", group, primary=AZ2)])

    waited = e2e.kubectl.run(
        "wait", "--for=condition=Ready", "rg/payments-db", "-n", ns, "--timeout=60s", timeout=90
    )
    assert "condition met" in waited.stdout

    table = e2e.kubectl.run("get", "rg", "-n", ns).stdout
    assert table.splitlines()[0].split() == [
        "NAME",
        "DESIRED",
        "CURRENT",
        "DRAIN",
        "REPLICATION",
        "PHASE",
        "READY",
        "AGE",
    ]
    (row,) = parse_table(table)
    assert {k: v for k, v in row.items() if k != "AGE"} == {
        "NAME": "payments-db",
        "DESIRED": AZ2,
        "CURRENT": AZ2,
        "DRAIN": "",
        "REPLICATION": "active",
        "PHASE": "Ready",
        "READY": "True",
    }
    wide = e2e.kubectl.run("get", "replicationgroups", "-n", ns, "-o", "wide").stdout
    assert wide.splitlines()[0].split()[-2:] == ["OPERATION", "REASON"]
    (wide_row,) = parse_table(wide)
    assert (wide_row["OPERATION"], wide_row["REASON"]) == ("", "InSync")


def test_flip_switches_over_exactly_once_with_events(e2e: E2E, ns: str, secret: str) -> None:
    group = e2e.new_group(primary=AZ1)
    e2e.kubectl.apply([e2e.rg_manifest(ns, "orders-db", group, primary=AZ1)])
    e2e.wait_condition(ns, "orders-db", "Ready", "True", reason="InSync")

    seen: list[dict[str, Any]] = []
    with e2e.env.watch("replicationgroup", "orders-db", "-n", ns) as watch:
        first = watch.get(timeout=30)
        assert first is not None, "kubectl get --watch printed nothing"
        seen.append(first)
        e2e.patch_spec(ns, "orders-db", primaryAZ=AZ2)
        deadline = time.monotonic() + OPERATION_TIMEOUT
        while not succeeded_for_generation(seen[-1]):
            e2e.check_operator()
            assert time.monotonic() < deadline, (
                f"no successful switchover; phases {[o.get('status', {}).get('phase') for o in seen]}"
            )
            obj = watch.get(timeout=1)
            if obj is not None:
                seen.append(obj)

    phases = dedup([(o.get("status") or {}).get("phase") for o in seen])
    assert phases == ["Ready", "SwitchingOver", "Ready"]
    in_flight = [o["status"]["operation"] for o in seen if (o.get("status") or {}).get("operation")]
    assert in_flight and {(op["action"], op["from"], op["to"]) for op in in_flight} == {
        ("Switchover", AZ1, AZ2)
    }

    final = seen[-1]["status"]
    assert final["currentPrimaryAZ"] == AZ2
    assert final["observedGeneration"] == 2
    last = final["lastOperation"]
    assert (last["action"], last["from"], last["to"], last["result"]) == ("Switchover", AZ1, AZ2, "Succeeded")
    assert last["id"] == in_flight[0]["id"]
    assert condition_of(seen[-1], "Ready")["reason"] == "SwitchoverSucceeded"

    assert e2e.sim.reverses(group) == 1
    assert [r["action"] for r in e2e.sim.mutating(group)] == ["os-reverse-replication-consistency-group"]
    assert e2e.sim.group(group)["primaryAZ"] == AZ2

    events = e2e.events(ns, "orders-db")
    assert [(e["type"], e["reason"]) for e in events] == [
        ("Normal", "SwitchoverStarted"),
        ("Normal", "SwitchoverSucceeded"),
    ]
    assert all(last["id"] in e["message"] for e in events), [e["message"] for e in events]
    assert all(e["source"]["component"] == "azswitch" for e in events)


def test_kill_9_mid_switchover_resumes_without_resending(e2e: E2E, ns: str, secret: str) -> None:
    group = e2e.new_group(primary=AZ1)
    e2e.kubectl.apply([e2e.rg_manifest(ns, "orders-db", group, primary=AZ1)])
    e2e.wait_condition(ns, "orders-db", "Ready", "True", reason="InSync")

    # Timings are global in the simulator: only this test's switchover starts while they are slow.
    e2e.sim.set_timings(switchoverSeconds=SLOW_SWITCHOVER_SECONDS)
    try:
        e2e.patch_spec(ns, "orders-db", primaryAZ=AZ2)
        e2e.wait(lambda: e2e.sim.reverses(group) == 1, "the switchover request to reach the cloud")
        e2e.env.kill_operator()
    finally:
        e2e.sim.set_timings(switchoverSeconds=1)

    # The intent journal survived the crash: the operation is recorded, and kubectl shows it.
    journal = e2e.rg(ns, "orders-db")["status"]["operation"]
    assert (journal["action"], journal["from"], journal["to"]) == ("Switchover", AZ1, AZ2)
    assert journal["state"] in ("Requested", "InProgress")
    (row,) = [r for r in parse_table(e2e.kubectl.run("get", "rg", "-n", ns, "-o", "wide").stdout)]
    assert row["OPERATION"] == "Switchover"
    assert e2e.sim.group(group)["status"] == "reversing"

    mark = max(r["seq"] for r in e2e.sim.requests())
    e2e.env.start_operator()
    # The new process observes the group while the cloud is still reversing (its clock is not moved yet).
    e2e.wait(
        lambda: any(r["seq"] > mark and r["method"] == "GET" for r in e2e.sim.requests(group)),
        "the restarted operator to read the group",
    )
    assert e2e.sim.group(group)["status"] == "reversing"
    e2e.sim.advance_clock(SLOW_SWITCHOVER_SECONDS)

    obj = e2e.wait_rg(ns, "orders-db", succeeded_for_generation, "the resumed switchover to succeed")
    assert e2e.sim.reverses(group) == 1, "the restarted operator sent the switchover again"
    status = obj["status"]
    assert status["currentPrimaryAZ"] == AZ2
    assert status["lastOperation"]["id"] == journal["id"]
    assert status["lastOperation"]["attempts"] == 1
    reasons = [e["reason"] for e in e2e.events(ns, "orders-db")]
    assert reasons.count("SwitchoverStarted") == 1
    assert reasons.count("SwitchoverSucceeded") == 1
    assert "RequestResent" not in reasons


def test_dry_run_publishes_the_plan_and_calls_nothing_mutating(e2e: E2E, ns: str, secret: str) -> None:
    group = e2e.new_group(primary=AZ1)
    e2e.kubectl.apply([e2e.rg_manifest(ns, "orders-db", group, primary=AZ2, dryRun=True)])

    obj = e2e.wait_condition(ns, "orders-db", "Ready", "False", reason="DryRun")
    plan = obj["status"]["plan"]
    assert (plan["action"], plan["from"], plan["to"]) == ("Switchover", AZ1, AZ2)
    assert obj["status"]["currentPrimaryAZ"] == AZ1
    e2e.wait_for_fresh_looks(group)
    assert e2e.sim.mutating(group) == []
    assert e2e.sim.group(group)["primaryAZ"] == AZ1

    # The published plan is what happens once dryRun is switched off.
    e2e.patch_spec(ns, "orders-db", dryRun=False)
    e2e.wait_rg(ns, "orders-db", succeeded_for_generation, "the planned switchover to succeed")
    assert e2e.sim.reverses(group) == 1


def test_suspended_group_gets_no_cloud_call_at_all(e2e: E2E, ns: str, secret: str) -> None:
    suspended, neighbour = e2e.new_group(primary=AZ1), e2e.new_group(primary=AZ1)
    e2e.kubectl.apply(
        [
            e2e.rg_manifest(ns, "suspended", suspended, primary=AZ2, suspend=True),
            e2e.rg_manifest(ns, "neighbour", neighbour, primary=AZ1),
        ]
    )

    obj = e2e.wait_condition(ns, "suspended", "Ready", "False", reason="Suspended")
    assert obj["status"]["phase"] == "Suspended"
    # The neighbour is reconciled and resynced meanwhile: time for the operator to act has passed.
    e2e.wait_condition(ns, "neighbour", "Ready", "True")
    e2e.wait_for_fresh_looks(neighbour)
    assert e2e.sim.requests(suspended) == []
    assert e2e.sim.group(suspended)["primaryAZ"] == AZ1


def test_missing_secret_stalls_with_credentials_not_found(e2e: E2E, ns: str) -> None:
    group = e2e.new_group(primary=AZ1)
    e2e.kubectl.apply([e2e.rg_manifest(ns, "orders-db", group, primary=AZ2)])

    obj = e2e.wait_condition(ns, "orders-db", "Stalled", "True", reason="CredentialsNotFound")
    assert SECRET in condition_of(obj, "Stalled")["message"]
    assert condition_of(obj, "Ready")["status"] != "True"
    e2e.wait(
        lambda: [e for e in e2e.events(ns, "orders-db") if e["reason"] == "CredentialsNotFound"],
        "a CredentialsNotFound event",
    )
    assert [e["type"] for e in e2e.events(ns, "orders-db") if e["reason"] == "CredentialsNotFound"] == [
        "Warning"
    ]
    assert e2e.sim.requests(group) == []


def test_group_unknown_to_the_cloud_stalls_with_group_not_found(e2e: E2E, ns: str, secret: str) -> None:
    e2e.new_group(primary=AZ1)  # the project exists and has groups, just not this one
    unknown = "00000000-0000-4000-8000-000000000000"
    e2e.current_groups.append(unknown)
    e2e.kubectl.apply([e2e.rg_manifest(ns, "orders-db", unknown, primary=AZ2)])

    obj = e2e.wait_condition(ns, "orders-db", "Stalled", "True", reason="GroupNotFound")
    assert unknown in condition_of(obj, "Stalled")["message"]
    e2e.wait(
        lambda: [e for e in e2e.events(ns, "orders-db") if e["reason"] == "GroupNotFound"],
        "a GroupNotFound event",
    )
    assert e2e.sim.mutating(unknown) == []
    assert {r["status"] for r in e2e.sim.requests(unknown)} == {404}
