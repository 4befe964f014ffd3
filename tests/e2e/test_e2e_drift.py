"""The drift policy on the real control plane (issue 15): an out-of-band switchover made through the
simulator's control API (as the console or a break-glass ``azswitch apply`` would) is recorded first and then
corrected under ``spec.drift: Correct``, and held — recorded, never moved — under ``Report``; the annotation
``azswitch.io/hold`` stops every cloud call without touching the spec.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import AZ1, AZ2, E2E, OPERATION_TIMEOUT, condition_of

pytestmark = pytest.mark.e2e

HOLD = "azswitch.io/hold"


def _move_out_of_band(e2e: E2E, group: str, az: str) -> None:
    e2e.sim.control("POST", f"/groups/{group}/primary", {"primaryAZ": az})


def _external(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [h for h in (obj.get("status") or {}).get("history", []) if h.get("kind") == "External"]


def test_drift_correct_records_then_moves_back(e2e: E2E, ns: str, secret: str) -> None:
    group = e2e.new_group(primary=AZ1)
    e2e.kubectl.apply([e2e.rg_manifest(ns, "orders-db", group, primary=AZ1)])
    e2e.wait_condition(ns, "orders-db", "Ready", "True", reason="InSync")

    _move_out_of_band(e2e, group, AZ2)

    def corrected() -> dict[str, Any] | None:
        obj = e2e.rg(ns, "orders-db")
        last = (obj.get("status") or {}).get("lastOperation") or {}
        return obj if last.get("result") == "Succeeded" and obj["status"].get("phase") == "Ready" else None

    obj = e2e.wait(corrected, "the drift to be corrected", timeout=OPERATION_TIMEOUT)
    assert obj["status"]["currentPrimaryAZ"] == AZ1 and e2e.sim.group(group)["primaryAZ"] == AZ1
    [external] = _external(obj)
    assert (external["from"], external["to"], external["result"]) == (AZ1, AZ2, "Observed")
    assert obj["status"]["lastOperation"]["to"] == AZ1
    assert e2e.sim.reverses(group) == 1
    reasons = [e["reason"] for e in e2e.events(ns, "orders-db")]
    assert reasons.index("DriftDetected") < reasons.index("SwitchoverStarted"), reasons


def test_drift_report_holds_and_records(e2e: E2E, ns: str, secret: str) -> None:
    group = e2e.new_group(primary=AZ1)
    e2e.kubectl.apply([e2e.rg_manifest(ns, "orders-db", group, primary=AZ1, drift="Report")])
    e2e.wait_condition(ns, "orders-db", "Ready", "True", reason="InSync")

    _move_out_of_band(e2e, group, AZ2)

    obj = e2e.wait_condition(ns, "orders-db", "Ready", "False", reason="Drifted")
    status = obj["status"]
    assert status["phase"] == "AwaitingApproval" and status["currentPrimaryAZ"] == AZ2
    assert (status["drift"]["from"], status["drift"]["to"]) == (AZ1, AZ2)
    drifted = condition_of(obj, "Drifted")
    assert drifted["status"] == "True" and AZ2 in drifted["message"]
    assert len(_external(obj)) == 1
    # Resyncs pass (2 s each in the e2e settings): still held, nothing sent.
    e2e.wait_for_fresh_looks(group)
    assert e2e.sim.mutating(group) == []
    assert "DriftDetected" in [e["reason"] for e in e2e.events(ns, "orders-db")]

    # The command the condition prints approves the correction of this drift.
    e2e.kubectl.run(
        "annotate", "rg", "orders-db", "-n", ns, f"azswitch.io/correct-drift={status['drift']['id']}"
    )
    e2e.wait(
        lambda: e2e.sim.group(group)["primaryAZ"] == AZ1 or None,
        "the approved correction",
        timeout=OPERATION_TIMEOUT,
    )
    assert e2e.sim.reverses(group) == 1


def test_hold_annotation_stops_cloud_calls_and_resumes(e2e: E2E, ns: str, secret: str) -> None:
    group, neighbour = e2e.new_group(primary=AZ1), e2e.new_group(primary=AZ1)
    e2e.kubectl.apply(
        [
            e2e.rg_manifest(ns, "orders-db", group, primary=AZ1),
            e2e.rg_manifest(ns, "neighbour", neighbour, primary=AZ1),
        ]
    )
    e2e.wait_condition(ns, "orders-db", "Ready", "True", reason="InSync")

    e2e.kubectl.run("annotate", "rg", "orders-db", "-n", ns, f"{HOLD}=sre@laptop via azswitch apply")
    obj = e2e.wait_condition(ns, "orders-db", "Ready", "False", reason="Held")
    assert obj["status"]["hold"]["by"] == "sre@laptop via azswitch apply"
    after = e2e.last_seq()
    e2e.patch_spec(ns, "orders-db", primaryAZ=AZ2)
    e2e.wait(
        lambda: e2e.rg(ns, "orders-db")["status"].get("observedGeneration") == 2 or None,
        "the held resource's new generation to be seen",
    )
    # The neighbour is drift-checked meanwhile: time for the operator to act has passed.
    e2e.wait_for_fresh_looks(neighbour)
    assert [r for r in e2e.sim.requests(group) if r["seq"] > after] == []

    e2e.kubectl.run("annotate", "rg", "orders-db", "-n", ns, f"{HOLD}-")
    e2e.wait(lambda: e2e.sim.group(group)["primaryAZ"] == AZ2 or None, "the switchover after the hold")
    assert e2e.sim.reverses(group) == 1
