"""Drift (design.md §3.3) and the hold annotation, step by step on the stage.

A change of the cloud's primary that no operation of ours explains is recorded — an event ``DriftDetected``
and a history entry of kind External — before anything else; ``spec.drift: Correct`` then moves the group
back, ``Report`` holds it until the spec changes or ``azswitch.io/correct-drift`` names the drift. The
annotation ``azswitch.io/hold`` (``azswitch apply --force``) stops all cloud calls without touching the spec.
"""

from __future__ import annotations

from typing import Any

from harness import (
    GROUP,
    REVERSE,
    SDRS_GROUP,
    SDRS_SOURCE,
    SDRS_TARGET,
    Stage,
    resource,
    sdrs_group,
    sdrs_resource,
)

HOLD = "azswitch.io/hold"
CORRECT = "azswitch.io/correct-drift"


async def _ready_at_az1(stage: Stage, **spec: Any) -> None:
    stage.kube.create(resource(primary="az1.dc1", **spec))
    await stage.settle()
    assert stage.status()["phase"] == "Ready" and stage.mutating() == 0


def _external(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [h for h in status.get("history", []) if h.get("kind") == "External"]


async def test_correct_records_the_drift_before_moving_it_back() -> None:
    stage = Stage()
    await _ready_at_az1(stage)
    stage.sim.set_primary(GROUP, "az2.dc2")  # someone switched it in the console
    stage.clock.advance(60)
    events_before = len(stage.kube.events)
    await stage.step()
    # The first write after the change is the intent to correct it, and it already carries the record.
    status = stage.status()
    assert status["operation"]["action"] == "Switchover" and status["operation"]["to"] == "az1.dc1"
    [external] = _external(status)
    assert (external["from"], external["to"], external["result"]) == ("az1.dc1", "az2.dc2", "Observed")
    reasons = [e["reason"] for e in stage.kube.events[events_before:]]
    assert reasons.index("DriftDetected") < reasons.index("SwitchoverStarted")
    assert "drift" not in status, "a drift being corrected is over once the correction is journaled"
    await stage.settle()
    status = stage.status()
    assert status["currentPrimaryAZ"] == "az1.dc1" and status["phase"] == "Ready"
    assert stage.reverses() == 1
    assert [h.get("kind", "Operation") for h in status["history"]] == ["Operation", "External"]
    assert stage.condition("Drifted") is None


async def test_report_holds_records_and_never_moves() -> None:
    stage = Stage()
    await _ready_at_az1(stage, drift="Report")
    stage.sim.set_primary(GROUP, "az2.dc2")
    for _ in range(3):  # several drift checks: recorded once, never corrected
        stage.clock.advance(60)
        await stage.settle()
    status = stage.status()
    assert stage.reverses() == 0
    assert status["phase"] == "AwaitingApproval"
    assert status["currentPrimaryAZ"] == "az2.dc2"
    drift = status["drift"]
    assert (drift["from"], drift["to"], drift["policy"], drift["generation"]) == (
        "az1.dc1",
        "az2.dc2",
        "Report",
        1,
    )
    assert len(_external(status)) == 1
    assert stage.kube.reasons().count("DriftDetected") == 1
    drifted = stage.condition("Drifted")
    assert drifted["status"] == "True" and "az2.dc2" in drifted["message"]
    ready = stage.condition("Ready")
    assert ready["status"] == "False" and ready["reason"] == "Drifted"
    assert f"{CORRECT}={drift['id']}" in ready["message"]


async def test_report_correction_needs_the_drifts_own_id() -> None:
    stage = Stage()
    await _ready_at_az1(stage, drift="Report")
    stage.sim.set_primary(GROUP, "az2.dc2")
    stage.clock.advance(60)
    await stage.settle()
    stage.kube.annotate("orders", CORRECT, "20200101T000000Z")  # an old drift's approval
    await stage.settle()
    assert stage.reverses() == 0
    stage.kube.annotate("orders", CORRECT, stage.status()["drift"]["id"])
    await stage.settle()
    status = stage.status()
    assert stage.reverses() == 1
    assert status["currentPrimaryAZ"] == "az1.dc1" and status["phase"] == "Ready"
    assert "drift" not in status and stage.condition("Drifted") is None


async def test_report_a_new_spec_ends_the_hold() -> None:
    stage = Stage()
    await _ready_at_az1(stage, drift="Report")
    stage.sim.set_primary(GROUP, "az2.dc2")
    stage.clock.advance(60)
    await stage.settle()
    # Git catches up with the emergency move: nothing to do, and the drift no longer stands.
    stage.kube.edit_spec("orders", primaryAZ="az2.dc2")
    await stage.settle()
    status = stage.status()
    assert stage.reverses() == 0
    assert status["phase"] == "Ready" and "drift" not in status
    # A later spec decides where the group goes, drift or not.
    stage.kube.edit_spec("orders", primaryAZ="az1.dc1")
    await stage.settle()
    assert stage.reverses() == 1 and stage.status()["currentPrimaryAZ"] == "az1.dc1"


async def test_our_own_operations_are_never_drift() -> None:
    stage = Stage()
    await _ready_at_az1(stage, drift="Report")
    stage.kube.edit_spec("orders", primaryAZ="az2.dc2")
    await stage.settle()
    stage.kube.edit_spec("orders", primaryAZ="az1.dc1")
    await stage.settle()
    for _ in range(3):
        stage.clock.advance(60)
        await stage.settle()
    status = stage.status()
    assert stage.reverses() == 2
    assert _external(status) == [] and "DriftDetected" not in stage.kube.reasons()


async def test_an_operation_that_timed_out_but_landed_later_is_not_drift() -> None:
    stage = Stage(timings={"switchoverSeconds": 400})
    stage.kube.create(resource(primary="az2.dc2", switchover={"timeout": "2m"}))
    await stage.settle(until=lambda s: s.get("lastOperation", {}).get("result") == "TimedOut")
    assert stage.status()["currentPrimaryAZ"] == "az1.dc1"
    stage.clock.advance(600)  # the cloud finishes the move it was asked for
    await stage.settle()
    assert stage.status()["currentPrimaryAZ"] == "az2.dc2"
    assert _external(stage.status()) == [] and "DriftDetected" not in stage.kube.reasons()
    assert stage.reverses() == 1


async def test_drift_of_an_sdrs_group_is_recorded_and_held() -> None:
    stage = Stage(sdrs_groups=[sdrs_group()])
    stage.kube.create(sdrs_resource(primary=SDRS_SOURCE, drift="Report"))
    await stage.settle("billing")
    stage.sim.set_primary(SDRS_GROUP, SDRS_TARGET)
    stage.clock.advance(60)
    await stage.settle("billing")
    status = stage.status("billing")
    assert status["drift"]["to"] == SDRS_TARGET and status["phase"] == "AwaitingApproval"
    assert stage.mutating() == 0


async def test_hold_annotation_stops_every_cloud_call_and_says_who() -> None:
    stage = Stage()
    await _ready_at_az1(stage)
    stage.kube.annotate("orders", HOLD, "alice@laptop via azswitch apply since 2026-12-07T03:00:00Z")
    stage.kube.edit_spec("orders", primaryAZ="az2.dc2")
    stage.sim.clear_requests()
    for _ in range(3):
        await stage.settle()
        stage.clock.advance(60)
    status = stage.status()
    assert stage.sim.requests() == [], "no cloud call at all while held"
    assert status["phase"] == "Suspended"
    assert status["hold"]["by"].startswith("alice@laptop")
    since = status["hold"]["since"]
    ready = stage.condition("Ready")
    assert ready["reason"] == "Held" and "alice@laptop" in ready["message"] and since in ready["message"]
    assert stage.kube.reasons().count("Held") == 1
    # Removing the annotation resumes: the spec is acted on, the hold's end is said.
    stage.kube.unannotate("orders", HOLD)
    await stage.settle()
    assert stage.reverses() == 1 and "hold" not in stage.status()
    assert "HoldReleased" in stage.kube.reasons()


async def test_a_break_glass_move_during_a_hold_is_drift_once_released() -> None:
    """The runbook's case: the group is held, someone moves it, the hold ends; Report keeps the move."""
    stage = Stage()
    await _ready_at_az1(stage, drift="Report")
    stage.kube.annotate("orders", HOLD, "bob@laptop")
    await stage.settle()
    stage.sim.set_primary(GROUP, "az2.dc2")  # azswitch apply, from a laptop
    stage.kube.unannotate("orders", HOLD)
    await stage.settle()
    status = stage.status()
    assert stage.actions(REVERSE) == 0
    assert status["drift"]["to"] == "az2.dc2" and status["phase"] == "AwaitingApproval"


async def test_a_drift_seen_on_the_shared_listing_is_confirmed_by_the_groups_own_read() -> None:
    stage = Stage()
    await _ready_at_az1(stage, drift="Report")
    stage.sim.set_primary(GROUP, "az2.dc2")
    stage.clock.advance(60)
    stage.sim.clear_requests()
    await stage.step()
    kinds = [(r["method"], r["template"].rsplit("/", 1)[-1]) for r in stage.sim.requests()]
    assert kinds == [("GET", "os-vendor-replication-consistency-groups"), ("GET", "{id}")], kinds
    assert stage.status()["drift"]["to"] == "az2.dc2"
