"""SDRS protection groups end to end: ``spec.cloud.service: SDRS`` through kubectl, ``azswitch run`` and the
simulator over HTTP (README, "SDRS protection groups").

The same promises as for EVS, where SDRS differs: a group has fixed source/target AZs and a moving
``priority_station``, and every action answers with a job that the operator journals and follows. The
reconciler-level versions of these scenarios are tests/unit/test_reconcile_sdrs.py; here they hold for the
real processes, and the simulator's request log is the proof of what the cloud was sent. Each test seeds
its own protection group with AZ names of its own (conftest ``E2E.new_sdrs_group``), so an AZ outage in one
test touches no other group of the session.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from conftest import E2E, SdrsGroup, condition_of
from test_e2e import parse_table, succeeded_for_generation

from azswitch.dev.localenv import LocalEnvError

pytestmark = pytest.mark.e2e

REVERSE = "reverse-server-group"
FAILOVER = "failover-server-group"
START = "start-server-group"
NAME = "billing-db"
# Long enough that a kill -9 and a restart certainly happen while the job runs; the test then moves the
# simulator's clock instead of waiting (as test_e2e's kill -9 test does).
SLOW_SWITCHOVER_SECONDS = 120


def settled_at(az: str) -> Any:
    """A predicate: the current generation's operation succeeded, Ready, nothing in flight, primary ``az``."""

    def check(obj: dict[str, Any]) -> bool:
        return succeeded_for_generation(obj) and (obj.get("status") or {}).get("currentPrimaryAZ") == az

    return check


def jobs_summary(e2e: E2E, group: SdrsGroup) -> str:
    return json.dumps(e2e.sim_jobs(group.id))


def wait_event(e2e: E2E, ns: str, reason: str) -> list[dict[str, Any]]:
    return e2e.wait(lambda: [e for e in e2e.events(ns, NAME) if e["reason"] == reason], f"a {reason} event")


def test_sdrs_switchover_and_back_sends_one_reverse_each_and_shows_az_names(
    e2e: E2E, ns: str, secret: str
) -> None:
    group = e2e.new_sdrs_group(station="source")
    e2e.kubectl.apply([e2e.sdrs_manifest(ns, NAME, group, primary=group.target_az)])

    obj = e2e.wait_rg(ns, NAME, settled_at(group.target_az), f"a switchover to {group.target_az}")
    status = obj["status"]
    assert status["service"] == "SDRS"
    assert sorted(status["availabilityZones"]) == sorted([group.source_az, group.target_az])
    last = status["lastOperation"]
    assert (last["action"], last["from"], last["to"]) == ("Switchover", group.source_az, group.target_az)
    assert e2e.sdrs_actions(group.id, REVERSE) == 1, jobs_summary(e2e, group)
    assert [r["action"] for r in e2e.sim.mutating(group.id)] == [REVERSE]
    assert e2e.sim.group(group.id)["priorityStation"] == "target"

    # kubectl shows AZ names, never the stations.
    (row,) = parse_table(e2e.kubectl.run("get", "rg", "-n", ns).stdout)
    assert (row["DESIRED"], row["CURRENT"], row["PHASE"], row["READY"]) == (
        group.target_az,
        group.target_az,
        "Ready",
        "True",
    )

    wait_event(e2e, ns, "SwitchoverSucceeded")
    reasons = [e["reason"] for e in e2e.events(ns, NAME)]
    assert reasons == ["SwitchoverStarted", "SwitchoverSucceeded"], reasons

    # And back: the body names the station of the desired AZ, so the group ends at "source".
    e2e.patch_spec(ns, NAME, primaryAZ=group.source_az)
    obj = e2e.wait_rg(ns, NAME, settled_at(group.source_az), f"a switchover back to {group.source_az}")
    assert obj["status"]["observedGeneration"] == 2
    assert e2e.sim.group(group.id)["priorityStation"] == "source"
    assert e2e.sdrs_actions(group.id, REVERSE) == 2, jobs_summary(e2e, group)
    assert [r["action"] for r in e2e.sim.mutating(group.id)] == [REVERSE, REVERSE]
    assert [h["action"] for h in obj["status"]["history"]] == ["Switchover", "Switchover"]
    (row,) = parse_table(e2e.kubectl.run("get", "rg", "-n", ns).stdout)
    assert row["CURRENT"] == group.source_az
    jobs = e2e.sim_jobs(group.id)
    assert [(j["action"], j["status"]) for j in jobs] == [("reverse", "SUCCESS")] * 2, jobs


def test_sdrs_job_that_ends_fail_fails_the_operation_with_the_clouds_code_and_reason(
    e2e: E2E, ns: str, secret: str
) -> None:
    reason = "the production server is not stopped (e2e)"
    group, neighbour = e2e.new_sdrs_group(station="source"), e2e.new_sdrs_group(station="source")
    e2e.sim.control(
        "POST",
        f"/groups/{group.id}/fail-next",
        {"action": "reverse", "errorCode": "SDRS.1029", "failReason": reason},
    )
    e2e.kubectl.apply(
        [
            e2e.sdrs_manifest(ns, NAME, group, primary=group.target_az),
            e2e.sdrs_manifest(ns, "neighbour", neighbour, primary=neighbour.source_az),
        ]
    )

    obj = e2e.wait_rg(
        ns, NAME, lambda o: (o.get("status") or {}).get("phase") == "Failed", "the phase Failed"
    )
    assert e2e.sdrs_actions(group.id, REVERSE) == 1
    jobs = e2e.sim_jobs(group.id)
    assert [(j["status"], j["errorCode"]) for j in jobs] == [("FAIL", "SDRS.1029")], jobs
    last = obj["status"]["lastOperation"]
    assert last["result"] == "Failed"
    assert "SDRS.1029" in last["message"] and reason in last["message"], last
    stalled = condition_of(obj, "Stalled")
    assert stalled.get("status") == "True", stalled
    assert "SDRS.1029" in stalled["message"] and reason in stalled["message"], stalled
    failed = wait_event(e2e, ns, "SwitchoverFailed")
    assert any("SDRS.1029" in e["message"] and reason in e["message"] for e in failed), [
        e["message"] for e in failed
    ]
    assert all(e["type"] == "Warning" for e in failed)

    # A failed generation sends nothing more (and is not even re-read: it waits for a person). The idle
    # neighbour is drift-checked meanwhile: resyncs have passed, in which the operator could have acted.
    e2e.wait_condition(ns, "neighbour", "Ready", "True", reason="InSync")
    e2e.wait_for_fresh_sdrs_looks(neighbour.id, looks=3)
    assert e2e.sdrs_actions(group.id, REVERSE) == 1
    assert [r["action"] for r in e2e.sim.mutating(group.id)] == [REVERSE]
    assert e2e.rg(ns, NAME)["status"]["phase"] == "Failed"


def test_sdrs_restart_while_the_job_runs_resumes_on_the_journaled_job(e2e: E2E, ns: str, secret: str) -> None:
    group = e2e.new_sdrs_group(station="source")

    # Timings are global in the simulator: only this test's job starts while they are slow.
    with e2e.sim_timings(switchoverSeconds=SLOW_SWITCHOVER_SECONDS):
        e2e.kubectl.apply([e2e.sdrs_manifest(ns, NAME, group, primary=group.target_az)])

        def journaled() -> dict[str, Any] | None:
            operation = (e2e.rg(ns, NAME).get("status") or {}).get("operation") or {}
            return operation if operation.get("cloudJobID") and operation["state"] == "InProgress" else None

        journal = e2e.wait(journaled, "status.operation.cloudJobID (InProgress)")
        e2e.env.kill_operator()

    job = journal["cloudJobID"]
    assert [j["id"] for j in e2e.sim_jobs(group.id)] == [job]
    # Nobody writes status now: this is the journal the next process starts from.
    assert e2e.rg(ns, NAME)["status"]["operation"]["cloudJobID"] == job
    assert e2e.sim.group(group.id)["status"] == "reversing"
    polls_before = e2e.job_polls(job)  # by the killed process (maybe none: it died right after journaling)

    mark = e2e.last_seq()
    e2e.env.start_operator()
    # The new process follows the journaled job while the cloud is still reversing (its clock is not moved).
    e2e.wait(lambda: e2e.job_polls(job, after=mark) >= 1, f"the restarted operator to poll job {job}")
    assert e2e.sim.group(group.id)["status"] == "reversing"
    e2e.sim.advance_clock(SLOW_SWITCHOVER_SECONDS)

    obj = e2e.wait_rg(ns, NAME, settled_at(group.target_az), "the resumed switchover to succeed")
    assert e2e.sdrs_actions(group.id, REVERSE) == 1, "the restarted operator sent the reverse again"
    assert [j["id"] for j in e2e.sim_jobs(group.id)] == [job]
    assert e2e.job_polls(job) > polls_before
    last = obj["status"]["lastOperation"]
    assert (last["id"], last["result"], last["attempts"]) == (journal["id"], "Succeeded", 1), last
    assert e2e.sim.group(group.id)["priorityStation"] == "target"
    reasons = [e["reason"] for e in e2e.events(ns, NAME)]
    assert reasons.count("SwitchoverStarted") == 1, reasons
    assert "RequestResent" not in reasons, reasons


def test_sdrs_protection_disabled_is_blocked_and_sends_nothing(e2e: E2E, ns: str, secret: str) -> None:
    group = e2e.new_sdrs_group(station="source", status="available")
    e2e.kubectl.apply([e2e.sdrs_manifest(ns, NAME, group, primary=group.target_az)])

    def blocked(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        blockers = (status.get("plan") or {}).get("blockers") or []
        return status.get("phase") == "Blocked" and "ProtectionDisabled" in [b["reason"] for b in blockers]

    obj = e2e.wait_rg(ns, NAME, blocked, "the phase Blocked (ProtectionDisabled)")
    status = obj["status"]
    assert status["service"] == "SDRS"
    assert status["currentPrimaryAZ"] == group.source_az
    (blocker,) = [b for b in status["plan"]["blockers"] if b["reason"] == "ProtectionDisabled"]
    assert "enable protection" in blocker["message"].lower(), blocker
    ready = condition_of(obj, "Ready")
    assert (ready.get("status"), ready.get("reason")) == ("False", "ProtectionDisabled"), ready
    assert "enable protection" in ready["message"].lower(), ready

    e2e.wait_for_fresh_sdrs_looks(group.id)
    assert e2e.sim.mutating(group.id) == []
    assert e2e.sim_jobs(group.id) == []
    assert e2e.rg(ns, NAME)["status"]["phase"] == "Blocked"


def test_sdrs_failover_then_auto_reprotect_once_the_old_az_recovers(e2e: E2E, ns: str, secret: str) -> None:
    group = e2e.new_sdrs_group(station="source")
    down = group.source_az  # this group's own AZ: no other group of the session is in it
    recovered = False
    with e2e.sim_timings(failoverSeconds=1, reprotectSeconds=1):
        e2e.sim.control("POST", "/az-outage", {"az": down, "faultLevel": "2"})
        try:
            e2e.kubectl.apply(
                [
                    e2e.sdrs_manifest(
                        ns,
                        NAME,
                        group,
                        primary=group.target_az,
                        failover={"allowed": True, "autoReprotect": True},
                    )
                ]
            )

            def failed_over(obj: dict[str, Any]) -> bool:
                last = (obj.get("status") or {}).get("lastOperation") or {}
                return (last.get("action"), last.get("result")) == ("Failover", "Succeeded")

            obj = e2e.wait_rg(ns, NAME, failed_over, "a successful failover")
            assert obj["status"]["currentPrimaryAZ"] == group.target_az
            assert e2e.sdrs_actions(group.id, FAILOVER) == 1

            # While the old AZ is down a reprotect cannot succeed: none is sent, however often it looks.
            e2e.wait_for_fresh_sdrs_looks(group.id, looks=2)
            assert e2e.sdrs_actions(group.id, START) == 0, "a reprotect was sent while the old AZ is down"
            assert e2e.sdrs_actions(group.id, FAILOVER) == 1
            assert e2e.sdrs_actions(group.id, REVERSE) == 0
            assert e2e.sim.group(group.id)["status"] == "failed-over"
            status = e2e.rg(ns, NAME)["status"]
            assert status["cloud"]["status"] == "failed-over"
            blockers = [b["reason"] for b in (status.get("plan") or {}).get("blockers") or []]
            assert "WaitingForOldAZRecovery" in blockers, status.get("plan")

            e2e.sim.control("DELETE", f"/az-outage/{down}")
            recovered = True

            def reprotected(obj: dict[str, Any]) -> bool:
                status = obj.get("status") or {}
                return (
                    not status.get("operation")
                    and [h.get("action") for h in status.get("history") or []] == ["Reprotect", "Failover"]
                    and (status.get("cloud") or {}).get("status") == "protected"
                    and condition_of(obj, "Ready").get("status") == "True"
                )

            obj = e2e.wait_rg(ns, NAME, reprotected, "an automatic reprotect after the AZ recovered")
        finally:
            if not recovered:
                with contextlib.suppress(LocalEnvError, OSError):
                    e2e.sim.control("DELETE", f"/az-outage/{down}")

    status = obj["status"]
    assert [h["result"] for h in status["history"]] == ["Succeeded", "Succeeded"], status["history"]
    assert status["currentPrimaryAZ"] == group.target_az
    assert e2e.sdrs_actions(group.id, START) == 1
    assert e2e.sdrs_actions(group.id, FAILOVER) == 1
    assert [r["action"] for r in e2e.sim.mutating(group.id)] == [FAILOVER, START]
    cloud = e2e.sim.group(group.id)
    assert (cloud["status"], cloud["priorityStation"], cloud["replicationStatus"]) == (
        "protected",
        "target",
        "active",
    )
