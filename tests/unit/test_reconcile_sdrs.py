"""The reconciler driving an SDRS protection group (issue 12 §4): the same user-visible behaviour as EVS, with
job ids in the journal, exactly one reverse per intent, and the station computed from the desired AZ.

Everything runs against the in-process simulator on one manual clock (``harness.Stage``); the simulator's
request log is the proof of what was sent.
"""

from __future__ import annotations

import json
from typing import Any

from harness import (
    AK,
    PROJECT,
    SDRS_FAILOVER,
    SDRS_GROUP,
    SDRS_REVERSE,
    SDRS_SOURCE,
    SDRS_START,
    SDRS_TARGET,
    SK,
    Crash,
    Stage,
    sdrs_group,
    sdrs_resource,
)

from azswitch.reconcile import Credentials

NAME = "billing"


def reverse_bodies(stage: Stage) -> list[dict[str, Any]]:
    """Every reverse the simulator received, in order (its request-log records)."""
    return [r for r in stage.sim.requests() if r["action"] == SDRS_REVERSE]


def accepted_reverses(stage: Stage) -> int:
    return sum(1 for r in reverse_bodies(stage) if r["status"] == 200)


def job_polls(stage: Stage) -> int:
    return sum(1 for r in stage.sim.requests() if r["method"] == "GET" and "/jobs/" in r["path"])


def events(stage: Stage, reason: str) -> list[str]:
    return [e["message"] for e in stage.kube.events if e["name"] == NAME and e["reason"] == reason]


def stage_with(**group: Any) -> Stage:
    return Stage(sdrs_groups=[sdrs_group(**group)])


async def test_aligned_sdrs_group_is_ready_and_shows_az_names() -> None:
    stage = stage_with()
    stage.kube.create(sdrs_resource(primary=SDRS_SOURCE))
    await stage.settle(NAME)
    status = stage.status(NAME)
    assert stage.mutating() == 0
    assert stage.condition("Ready", NAME)["status"] == "True"
    assert status["currentPrimaryAZ"] == SDRS_SOURCE  # an AZ name, never "source"
    assert status["availabilityZones"] == sorted([SDRS_SOURCE, SDRS_TARGET])
    assert status["service"] == "SDRS"
    assert status["cloud"]["status"] == "protected"
    assert status["cloud"]["healthStatus"] == "normal"


async def test_switchover_and_back_sends_the_station_of_the_desired_az_once_each() -> None:
    stage = stage_with()
    stage.kube.create(sdrs_resource(primary=SDRS_TARGET))
    await stage.step(NAME)
    operation = stage.status(NAME)["operation"]
    assert operation["state"] == "InProgress"
    job = operation["cloudJobID"]
    assert job in {j["id"] for j in stage.sim.jobs()}

    await stage.settle(NAME)
    status = stage.status(NAME)
    assert status["lastOperation"]["result"] == "Succeeded"
    assert status["lastOperation"]["id"] == operation["id"]
    assert status["currentPrimaryAZ"] == SDRS_TARGET
    assert stage.sim.group(SDRS_GROUP)["priorityStation"] == "target"
    assert job_polls(stage) >= 1

    stage.kube.edit_spec(NAME, primaryAZ=SDRS_SOURCE)
    await stage.settle(NAME)
    assert stage.status(NAME)["currentPrimaryAZ"] == SDRS_SOURCE
    # The simulator moves the station to the one the body names (and refuses the current one), so the
    # stations below prove the bodies: target, then source.
    assert stage.sim.group(SDRS_GROUP)["priorityStation"] == "source"
    assert accepted_reverses(stage) == len(reverse_bodies(stage)) == 2
    assert [h["action"] for h in stage.status(NAME)["history"]] == ["Switchover", "Switchover"]
    assert stage.kube.reasons(NAME).count("SwitchoverSucceeded") == 2


async def test_a_job_that_ends_fail_fails_the_operation_with_the_clouds_words() -> None:
    stage = stage_with()
    stage.kube.create(sdrs_resource(primary=SDRS_TARGET))
    stage.sim.fail_next(SDRS_GROUP, "reverse", error_code="SDRS.1029", fail_reason="server not stopped")
    await stage.settle(NAME)
    status = stage.status(NAME)
    assert len(reverse_bodies(stage)) == 1
    assert status["phase"] == "Failed"
    last = status["lastOperation"]
    assert last["result"] == "Failed"
    assert "SDRS.1029" in last["message"] and "server not stopped" in last["message"]
    stalled = stage.condition("Stalled", NAME)
    assert stalled["status"] == "True" and "SDRS.1029" in stalled["message"]
    assert any("SDRS.1029" in m for m in events(stage, "SwitchoverFailed"))
    for _ in range(3):  # a failed generation sends nothing more
        stage.clock.advance(120)
        await stage.step(NAME)
    assert len(reverse_bodies(stage)) == 1


async def test_restart_while_the_job_runs_resumes_on_the_job_id() -> None:
    stage = Stage(sdrs_groups=[sdrs_group()], timings={"switchoverSeconds": 60})
    stage.kube.create(sdrs_resource(primary=SDRS_TARGET))
    await stage.step(NAME)
    job = stage.status(NAME)["operation"]["cloudJobID"]
    stage.clock.advance(10)
    stage.restart()  # a new process: only Kubernetes and the cloud remain
    polls_before = job_polls(stage)
    await stage.settle(NAME)
    assert len(reverse_bodies(stage)) == 1
    assert job_polls(stage) > polls_before, "the new process follows the journaled job"
    assert stage.status(NAME)["lastOperation"]["result"] == "Succeeded"
    assert stage.status(NAME)["lastOperation"].get("attempts", 1) == 1
    assert stage.sim.jobs()[0]["id"] == job


async def test_a_running_job_is_never_counted_lost() -> None:
    # The job runs far longer than the lost-request grace, and the group shows "reversing" only late.
    stage = Stage(sdrs_groups=[sdrs_group()], timings={"switchoverSeconds": 300}, lost_request_grace=30)
    stage.kube.create(sdrs_resource(primary=SDRS_TARGET))
    await stage.settle(NAME, max_steps=2000)
    assert len(reverse_bodies(stage)) == 1
    assert stage.status(NAME)["lastOperation"]["result"] == "Succeeded"
    assert "RequestResent" not in stage.kube.reasons(NAME)


async def write_journal(stage: Stage, **operation: Any) -> None:
    """What a crash leaves behind: the intent journaled (state Requested), no job id."""
    body = stage.kube.get(NAME)
    now = stage.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    entry = {
        "id": "op-1",
        "action": "Switchover",
        "from": SDRS_SOURCE,
        "to": SDRS_TARGET,
        "state": "Requested",
        "requestedAt": now,
        "startedAt": now,
        "attempts": 1,
        "generation": 1,
        **operation,
    }
    await stage.kube.patch_status("payments", NAME, body["metadata"]["resourceVersion"], {"operation": entry})


async def test_crash_after_send_before_the_job_id_was_journaled_observes_the_group() -> None:
    stage = Stage(sdrs_groups=[sdrs_group()], timings={"switchoverSeconds": 20}, lost_request_grace=30)
    stage.kube.create(sdrs_resource(primary=SDRS_TARGET))
    # The intent was journaled and the reverse sent, then the process died before writing the job id.
    await write_journal(stage)
    client = stage.client("SDRS", "http://127.0.0.1:8780", PROJECT, _creds())
    await client.reverse(SDRS_GROUP, "target")
    stage.restart()
    await stage.settle(NAME)
    assert len(reverse_bodies(stage)) == 1, "the group showed the request arrived: never a second reverse"
    last = stage.status(NAME)["lastOperation"]
    assert (last["result"], last["id"], last.get("attempts", 1)) == ("Succeeded", "op-1", 1)


async def test_crash_before_send_is_resent_once_after_the_grace() -> None:
    stage = Stage(sdrs_groups=[sdrs_group()], lost_request_grace=30)
    stage.kube.create(sdrs_resource(primary=SDRS_TARGET))
    await write_journal(stage)  # the intent, and nothing sent
    stage.restart()
    await stage.step(NAME)
    stage.clock.advance(20)
    await stage.step(NAME)
    assert reverse_bodies(stage) == [], "inside the grace the request may still be on its way"
    await stage.settle(NAME)
    assert len(reverse_bodies(stage)) == 1
    last = stage.status(NAME)["lastOperation"]
    assert (last["result"], last["attempts"]) == ("Succeeded", 2)
    assert "RequestResent" in stage.kube.reasons(NAME)


async def test_crash_around_every_status_write_never_sends_a_second_reverse() -> None:
    for seed in range(8):
        stage = Stage(sdrs_groups=[sdrs_group()], lost_request_grace=30)
        stage.kube.rng.seed(seed)
        stage.kube.crash_rate = 0.3
        stage.kube.create(sdrs_resource(primary=SDRS_TARGET))
        for _ in range(400):
            try:
                delay = await stage.step(NAME)
            except Crash:
                stage.restart()
                continue
            if "lastOperation" in stage.status(NAME) and "operation" not in stage.status(NAME):
                break
            stage.clock.advance(delay if delay is not None else 60)
        assert accepted_reverses(stage) == 1, (seed, reverse_bodies(stage))
        assert stage.sim.group(SDRS_GROUP)["priorityStation"] == "target", seed
        assert stage.status(NAME)["lastOperation"]["result"] == "Succeeded", seed


async def test_protection_disabled_is_blocked_and_sends_nothing() -> None:
    stage = stage_with(status="available")
    stage.kube.create(sdrs_resource(primary=SDRS_TARGET))
    await stage.settle(NAME)
    status = stage.status(NAME)
    assert stage.mutating() == 0
    assert status["phase"] == "Blocked"
    reasons = [b["reason"] for b in status["plan"]["blockers"]]
    assert "ProtectionDisabled" in reasons
    assert "enable protection" in json.dumps(status["plan"]).lower()
    # The user enables protection: azswitch continues by itself.
    stage.sim.patch_group(SDRS_GROUP, status="protected")
    stage.clock.advance(60)
    await stage.settle(NAME)
    assert stage.status(NAME)["currentPrimaryAZ"] == SDRS_TARGET
    assert len(reverse_bodies(stage)) == 1


async def test_failover_with_auto_reprotect_after_the_old_az_recovers() -> None:
    stage = stage_with()
    stage.kube.create(sdrs_resource(primary=SDRS_TARGET, failover={"allowed": True, "autoReprotect": True}))
    stage.sim.az_outage(SDRS_SOURCE, "2")
    await stage.settle(NAME, until=lambda status: "lastOperation" in status)
    assert stage.status(NAME)["lastOperation"]["action"] == "Failover"
    assert stage.status(NAME)["lastOperation"]["result"] == "Succeeded"
    for _ in range(5):  # the old AZ stays down: no reprotect yet
        stage.clock.advance(30)
        await stage.step(NAME)
    assert stage.actions(SDRS_FAILOVER) == 1
    assert stage.actions(SDRS_REVERSE) == 0
    assert stage.actions(SDRS_START) == 0, "the old AZ is still down"
    assert stage.status(NAME)["cloud"]["status"] == "failed-over"
    assert stage.status(NAME)["currentPrimaryAZ"] == SDRS_TARGET

    stage.sim.az_recover(SDRS_SOURCE)
    await stage.settle(NAME)
    assert stage.actions(SDRS_START) == 1
    assert stage.actions(SDRS_FAILOVER) == 1
    status = stage.status(NAME)
    assert status["cloud"]["status"] == "protected"
    assert [h["action"] for h in status["history"]] == ["Reprotect", "Failover"]
    assert stage.condition("Ready", NAME)["status"] == "True"


async def test_health_abnormal_blocks_a_switchover_without_failover_permission() -> None:
    stage = stage_with()
    stage.kube.create(sdrs_resource(primary=SDRS_TARGET))
    stage.sim.az_outage(SDRS_SOURCE, "2")
    await stage.settle(NAME)
    assert stage.mutating() == 0
    assert stage.status(NAME)["cloud"]["healthStatus"] == "abnormal"
    status = stage.status(NAME)
    assert status["plan"]["action"] == "Switchover"
    assert "SwitchoverImpossible" in [b["reason"] for b in status["plan"]["blockers"]]
    assert "health status abnormal" in json.dumps(status["plan"])


async def test_post_upgrade_group_with_null_health_switches_over() -> None:
    stage = stage_with(postUpgrade=True)
    stage.kube.create(sdrs_resource(primary=SDRS_TARGET))
    await stage.settle(NAME)
    status = stage.status(NAME)
    assert status["lastOperation"]["result"] == "Succeeded"
    assert status["currentPrimaryAZ"] == SDRS_TARGET
    assert status["cloud"].get("healthStatus") is None
    assert len(reverse_bodies(stage)) == 1


async def test_error_reversing_stalls_naming_the_status_and_sends_nothing() -> None:
    stage = stage_with(status="error-reversing")
    stage.kube.create(sdrs_resource(primary=SDRS_TARGET))
    await stage.settle(NAME)
    assert stage.mutating() == 0
    stalled = stage.condition("Stalled", NAME)
    assert stalled["status"] == "True" and "error-reversing" in stalled["message"]


async def test_dry_run_and_suspend_send_nothing() -> None:
    for spec in ({"dryRun": True}, {"suspend": True}):
        stage = stage_with()
        stage.kube.create(sdrs_resource(primary=SDRS_TARGET, **spec))
        await stage.settle(NAME)
        assert stage.mutating() == 0, spec


async def test_out_of_band_station_flip_is_corrected_at_the_next_resync() -> None:
    stage = stage_with()
    stage.kube.create(sdrs_resource(primary=SDRS_SOURCE))
    await stage.settle(NAME)
    stage.sim.set_primary(SDRS_GROUP, SDRS_TARGET)  # someone reversed it in the console
    stage.clock.advance(stage.settings.resync_interval)
    await stage.settle(NAME)
    assert stage.status(NAME)["currentPrimaryAZ"] == SDRS_SOURCE
    assert stage.sim.group(SDRS_GROUP)["priorityStation"] == "source"
    assert accepted_reverses(stage) == 1


async def test_idle_sdrs_groups_share_one_list_and_make_no_get() -> None:
    groups = [sdrs_group(id=f"pg-{i:04d}", name=f"pg-{i}") for i in range(20)]
    stage = Stage(sdrs_groups=groups)
    names = []
    for i in range(20):
        body = sdrs_resource(name=f"rg-{i}", primary=SDRS_SOURCE)
        body["spec"]["groupID"] = f"pg-{i:04d}"
        stage.kube.create(body)
        names.append(f"rg-{i}")
    await stage.run(names, seconds=5)
    stage.sim.clear_requests()
    await stage.run(names, seconds=600)
    counts = stage.sim.request_counts()
    gets = sum(n for key, n in counts.items() if key.startswith("GET /v1/{project_id}/server-groups/{id}"))
    lists = counts.get("GET /v1/{project_id}/server-groups", 0)
    assert gets == 0, counts
    assert 1 <= lists <= 12, counts  # about one LIST per resync interval for the whole project
    assert stage.mutating() == 0


def _creds() -> Credentials:
    return Credentials(AK, SK, None)


async def test_a_job_is_polled_instead_of_the_group() -> None:
    # 20 s of job at 0.5-1 s polls: the job is read each time, the group only around the send and the end.
    stage = stage_with()
    stage.kube.create(sdrs_resource(primary=SDRS_SOURCE))
    await stage.settle(NAME)
    stage.sim.clear_requests()
    stage.kube.edit_spec(NAME, primaryAZ=SDRS_TARGET)
    await stage.settle(NAME)
    assert stage.status(NAME)["lastOperation"]["result"] == "Succeeded"
    counts = stage.sim.request_counts()
    gets = counts.get("GET /v1/{project_id}/server-groups/{id}", 0)
    lists = counts.get("GET /v1/{project_id}/server-groups", 0)
    assert job_polls(stage) >= 15, counts
    # before sending: the reconciler's fresh read and the client's own; after the job: one fresh read
    assert gets <= 4, counts
    assert lists <= 3, counts  # the shared listing, at most 10 s old while the job runs
