"""The reconciler's behaviour, scenario by scenario (design.md §3), against the simulator's request log.

Each test states what an SRE relies on; the decisive assertion is almost always a count of mutating calls
in the simulator's log: exactly one switchover per move, and none when nothing may move.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from harness import AK, ENDPOINT, FAILOVER, GROUP, GROUP2, PROJECT, REPROTECT, REVERSE, SK, Stage, resource

from azswitch.reconcile import (
    ANNOTATION_APPROVE,
    ANNOTATION_RECONCILE,
    ANNOTATION_RETRY,
    Credentials,
    OperationSlots,
)


async def test_aligned_group_is_ready_without_mutating_calls() -> None:
    stage = Stage()
    stage.kube.create(resource(primary="az1.dc1"))
    delay = await stage.settle()
    status = stage.status()
    assert stage.mutating() == 0
    assert status["phase"] == "Ready"
    assert status["currentPrimaryAZ"] == "az1.dc1"
    assert status["availabilityZones"] == ["az1.dc1", "az2.dc2"]
    assert status["observedGeneration"] == 1
    assert status["cloud"]["replicationStatus"] == "active"
    assert stage.condition("Ready") is not None and stage.condition("Ready")["status"] == "True"
    assert stage.condition("Reconciling") is None and stage.condition("Stalled") is None
    assert stage.condition("ReplicationHealthy")["status"] == "True"
    assert stage.condition("SwitchoverAllowed")["status"] == "True"
    assert delay is not None and delay >= 60  # next look is the drift resync


async def test_flip_sends_exactly_one_switchover_and_records_it() -> None:
    stage = Stage()
    stage.kube.create(resource(primary="az2.dc2"))
    await stage.step()
    status = stage.status()
    assert status["phase"] == "SwitchingOver"
    assert status["operation"]["state"] == "InProgress"
    assert stage.condition("Reconciling")["status"] == "True"
    assert stage.condition("Ready")["status"] == "False"
    operation_id = status["operation"]["id"]

    await stage.settle()
    status = stage.status()
    assert stage.reverses() == 1
    assert status["phase"] == "Ready"
    assert status["currentPrimaryAZ"] == "az2.dc2"
    assert "operation" not in status
    assert status["lastOperation"]["result"] == "Succeeded"
    assert status["lastOperation"]["id"] == operation_id
    assert [h["id"] for h in status["history"]] == [operation_id]
    assert stage.kube.reasons() == ["SwitchoverStarted", "SwitchoverSucceeded"]
    assert all(operation_id in e["message"] for e in stage.kube.events)
    assert stage.condition("Ready")["status"] == "True"
    assert stage.condition("Reconciling") is None


async def test_intent_is_journaled_before_the_request() -> None:
    stage = Stage()
    stage.kube.create(resource(primary="az2.dc2"))
    seen: list[tuple[str | None, int]] = []
    original = stage.kube.patch_status

    async def spy(namespace, name, rv, patch):  # type: ignore[no-untyped-def]
        state = (patch.get("operation") or {}).get("state")
        seen.append((state, stage.reverses()))
        return await original(namespace, name, rv, patch)

    stage.kube.patch_status = spy  # type: ignore[method-assign]
    await stage.step()
    assert seen[0] == ("Requested", 0), "the journal entry must be written before any reverse call"
    assert seen[1] == ("InProgress", 1)


async def test_stale_copy_never_sends() -> None:
    stage = Stage()
    stage.kube.create(resource(primary="az2.dc2"))
    stale = stage.kube.get("orders")
    stage.kube.annotate("orders", "example.com/touched", "yes")  # resourceVersion moves on
    delay = await stage.reconciler.reconcile(stale)
    assert stage.reverses() == 0
    assert delay is not None and delay < 1


async def test_restart_mid_operation_resumes_by_observing() -> None:
    stage = Stage()
    stage.kube.create(resource(primary="az2.dc2"))
    await stage.step()
    stage.clock.advance(5)
    await stage.step()
    assert stage.reverses() == 1

    stage.restart()  # a new process: nothing in memory, only status and the cloud
    await stage.settle()
    assert stage.reverses() == 1
    assert stage.status()["lastOperation"]["result"] == "Succeeded"
    assert stage.status()["currentPrimaryAZ"] == "az2.dc2"


async def test_crash_between_journal_and_request_is_resent_once_after_grace() -> None:
    stage = Stage(lost_request_grace=30)
    stage.kube.create(resource(primary="az2.dc2"))
    # What a crash leaves behind: the intent written, the request never sent.
    body = stage.kube.get("orders")
    await stage.kube.patch_status(
        "payments",
        "orders",
        body["metadata"]["resourceVersion"],
        {
            "operation": {
                "id": "op-1",
                "action": "Switchover",
                "from": "az1.dc1",
                "to": "az2.dc2",
                "state": "Requested",
                "requestedAt": stage.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                "startedAt": stage.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                "attempts": 1,
                "generation": 1,
            }
        },
    )
    stage.restart()
    await stage.step()
    stage.clock.advance(20)
    await stage.step()
    assert stage.reverses() == 0, "inside the grace period the request may still be on its way"

    await stage.settle()
    assert stage.reverses() == 1
    status = stage.status()
    assert status["lastOperation"]["result"] == "Succeeded"
    assert status["lastOperation"]["attempts"] == 2
    assert status["lastOperation"]["id"] == "op-1"
    assert "RequestResent" in stage.kube.reasons()


async def test_lost_response_is_observed_not_resent() -> None:
    stage = Stage()
    stage.kube.create(resource(primary="az2.dc2"))
    # The cloud processes the switchover but the answer never arrives.
    stage.sim.set_faults({"drop": {"count": 1, "when": "after"}, "match": {"method": "POST"}})
    await stage.step()
    status = stage.status()
    assert status["operation"]["state"] == "Requested"
    assert "outcome unknown" in status["operation"]["message"]
    await stage.settle()
    assert stage.reverses() == 1
    assert stage.status()["lastOperation"]["result"] == "Succeeded"
    assert stage.status()["lastOperation"].get("attempts") == 1


async def test_request_dropped_before_the_cloud_is_retried_once_after_grace() -> None:
    stage = Stage(lost_request_grace=30)
    stage.kube.create(resource(primary="az2.dc2"))
    stage.sim.set_faults({"drop": {"count": 1, "when": "before"}, "match": {"method": "POST"}})
    await stage.settle()
    processed = [r for r in stage.sim.requests() if r["action"] == REVERSE and not r["dropped"]]
    assert len(processed) == 1
    assert stage.status()["lastOperation"]["attempts"] == 2
    assert stage.status()["lastOperation"]["result"] == "Succeeded"


async def test_error_reversing_fails_the_operation_and_never_retries() -> None:
    stage = Stage()
    stage.kube.create(resource(primary="az2.dc2"))
    stage.sim.fail_next(GROUP, "reverse", "37000212")
    await stage.settle()
    status = stage.status()
    assert stage.reverses() == 1
    assert status["phase"] == "Failed"
    assert status["lastOperation"]["result"] == "Failed"
    assert "37000212" in status["lastOperation"]["message"]
    assert stage.condition("Stalled")["status"] == "True"
    assert "SwitchoverFailed" in stage.kube.reasons()
    for _ in range(3):
        stage.clock.advance(120)
        await stage.step()
    assert stage.reverses() == 1


async def test_timeout_ends_timed_out_and_never_sends_again_until_asked() -> None:
    stage = Stage(timings={"switchoverSeconds": 3600})
    stage.kube.create(resource(primary="az2.dc2", switchover={"timeout": "2m"}))
    await stage.settle()
    status = stage.status()
    assert status["lastOperation"]["result"] == "TimedOut"
    assert status["phase"] == "Failed"
    assert stage.condition("Stalled")["reason"] == "SwitchoverTimedOut"
    stage.clock.advance(3600)  # the cloud finishes late
    await stage.settle()
    assert stage.reverses() == 1
    assert stage.condition("Stalled")["reason"] == "OperationTimedOut"
    assert stage.status()["currentPrimaryAZ"] == "az2.dc2"


async def test_retry_annotation_rearms_a_failed_generation() -> None:
    stage = Stage()
    stage.kube.create(resource(primary="az2.dc2"))
    stage.sim.fail_next(GROUP, "reverse", "37000216")
    await stage.settle()
    assert stage.status()["lastOperation"]["result"] == "Failed"
    stage.sim.patch_group(GROUP, status="available")  # the provider repaired the group
    stage.kube.annotate("orders", ANNOTATION_RETRY, stage.status()["lastOperation"]["id"])
    await stage.settle()
    assert stage.reverses() == 2
    assert stage.status()["lastOperation"]["result"] == "Succeeded"


@pytest.mark.parametrize(
    ("prepare", "reason", "needle"),
    [
        pytest.param(
            lambda s: s.kube.secrets.clear(), "CredentialsNotFound", "evs-credentials", id="secret-missing"
        ),
        pytest.param(
            lambda s: s.kube.secrets.update({("payments", "evs-credentials"): {"accessKey": "AK"}}),
            "CredentialsNotFound",
            "secretKey",
            id="secret-key-missing",
        ),
        pytest.param(
            lambda s: s.kube.secrets.update(
                {("payments", "evs-credentials"): {"accessKey": "AK", "secretKey": "x"}}
            ),
            "CredentialsRejected",
            "refused",
            id="wrong-credentials",
        ),
    ],
)
async def test_credential_problems_stall_with_a_reason(prepare, reason, needle) -> None:  # type: ignore[no-untyped-def]
    stage = Stage()
    prepare(stage)
    stage.kube.create(resource(primary="az2.dc2"))
    await stage.settle()
    stalled = stage.condition("Stalled")
    assert stalled is not None and stalled["reason"] == reason
    assert needle in stalled["message"]
    assert stage.mutating() == 0
    assert stage.status()["phase"] == "Blocked"


async def test_secret_values_never_reach_status_or_events() -> None:
    stage = Stage()
    stage.kube.secrets[("payments", "evs-credentials")] = {
        "accessKey": "AK-WRONG-1",
        "secretKey": "SK-SUPERSECRET",
    }
    stage.kube.create(resource(primary="az2.dc2"))
    await stage.settle()
    text = repr(stage.kube.objects) + repr(stage.kube.events)
    assert "SK-SUPERSECRET" not in text


async def test_unknown_group_stalls() -> None:
    stage = Stage()
    stage.kube.create(resource(group="00000000-0000-0000-0000-000000000000"))
    await stage.settle()
    assert stage.condition("Stalled")["reason"] == "GroupNotFound"
    assert stage.condition("Ready")["status"] == "False"


async def test_primary_outside_the_pair_is_stalled_never_acted_on() -> None:
    stage = Stage()
    stage.kube.create(resource(primary="az9.dc9"))
    await stage.settle()
    assert stage.condition("Stalled")["reason"] == "InvalidPrimaryAZ"
    assert "az1.dc1" in stage.condition("Stalled")["message"]
    assert stage.mutating() == 0


async def test_dry_run_publishes_the_plan_without_mutating() -> None:
    stage = Stage()
    stage.kube.create(resource(primary="az2.dc2", dryRun=True))
    await stage.settle()
    status = stage.status()
    assert stage.mutating() == 0
    assert status["plan"]["action"] == "Switchover"
    assert status["plan"]["to"] == "az2.dc2"
    assert [b["reason"] for b in status["plan"]["blockers"]] == ["DryRun"]
    assert stage.condition("Ready")["status"] == "False"


async def test_suspend_makes_no_cloud_call_at_all() -> None:
    stage = Stage()
    stage.kube.create(resource(primary="az2.dc2", suspend=True))
    await stage.settle()
    assert stage.sim.requests() == []
    assert stage.status()["phase"] == "Suspended"
    assert stage.condition("Ready")["reason"] == "Suspended"


async def test_manual_approval_waits_for_the_current_generation() -> None:
    stage = Stage()
    stage.kube.create(resource(primary="az2.dc2", switchover={"approval": "Manual"}))
    await stage.settle()
    assert stage.status()["phase"] == "AwaitingApproval"
    assert stage.reverses() == 0
    stage.kube.annotate("orders", ANNOTATION_APPROVE, "0")  # a stale approval
    await stage.settle()
    assert stage.reverses() == 0
    stage.kube.annotate("orders", ANNOTATION_APPROVE, "1")
    await stage.settle()
    assert stage.reverses() == 1
    assert stage.status()["currentPrimaryAZ"] == "az2.dc2"


async def test_faulty_primary_blocks_without_failover_permission() -> None:
    stage = Stage()
    stage.kube.create(resource(primary="az2.dc2"))
    stage.sim.az_outage("az1.dc1", "2")
    await stage.settle()
    assert stage.condition("Stalled")["reason"] == "SwitchoverImpossible"
    assert "failover.allowed" in stage.condition("Stalled")["message"]
    assert stage.mutating() == 0
    assert stage.condition("ReplicationHealthy")["status"] == "False"


async def test_failover_when_allowed_then_auto_reprotect_after_recovery() -> None:
    stage = Stage()
    stage.kube.create(resource(primary="az2.dc2", failover={"allowed": True, "autoReprotect": True}))
    stage.sim.az_outage("az1.dc1", "2")
    await stage.settle(until=lambda status: "lastOperation" in status)
    for _ in range(5):  # the old AZ stays down: the operator waits, and sends nothing
        stage.clock.advance(30)
        await stage.step()
    assert [b["reason"] for b in stage.status()["plan"]["blockers"]] == ["WaitingForOldAZRecovery"]
    assert stage.condition("ReplicationHealthy")["reason"] == "OldPrimaryAZFaulty"
    assert stage.actions(FAILOVER) == 1
    assert stage.actions(REVERSE) == 0
    assert stage.status()["currentPrimaryAZ"] == "az2.dc2"
    assert stage.status()["cloud"]["status"] == "failovered"
    assert stage.actions(REPROTECT) == 0, "the old AZ is still down"

    stage.sim.az_recover("az1.dc1")
    await stage.settle()
    assert stage.actions(REPROTECT) == 1
    assert stage.actions(FAILOVER) == 1
    status = stage.status()
    assert status["cloud"]["status"] == "available"
    assert status["cloud"]["replicationStatus"] == "active"
    assert [h["action"] for h in status["history"]] == ["Reprotect", "Failover"]
    assert stage.condition("Ready")["status"] == "True"


async def test_cooldown_delays_the_next_switchover() -> None:
    stage = Stage()
    stage.kube.create(resource(primary="az2.dc2", switchover={"minInterval": "10m"}))
    await stage.settle()
    assert stage.reverses() == 1
    stage.kube.edit_spec("orders", primaryAZ="az1.dc1")
    await stage.step()
    assert stage.reverses() == 1
    assert [b["reason"] for b in stage.status()["plan"]["blockers"]] == ["CooldownActive"]
    stage.clock.advance(500)
    await stage.step()
    assert stage.reverses() == 1, "still inside the 10-minute cooldown"
    stage.clock.advance(120)
    await stage.settle()
    assert stage.reverses() == 2
    assert stage.status()["currentPrimaryAZ"] == "az1.dc1"


async def test_out_of_band_switchover_is_corrected_at_the_next_resync() -> None:
    stage = Stage()
    stage.kube.create(resource(primary="az1.dc1"))
    await stage.settle()
    stage.sim.set_primary(GROUP, "az2.dc2")
    stage.clock.advance(60)
    await stage.settle()
    assert stage.reverses() == 1
    assert stage.status()["currentPrimaryAZ"] == "az1.dc1"


async def test_spec_change_during_an_operation_is_queued_then_planned() -> None:
    stage = Stage()
    stage.kube.create(resource(primary="az2.dc2"))
    await stage.step()
    stage.kube.edit_spec("orders", primaryAZ="az1.dc1")
    stage.clock.advance(1)
    await stage.step()
    status = stage.status()
    assert status["operation"]["to"] == "az2.dc2"
    assert status["pendingGeneration"] == 2
    assert stage.reverses() == 1
    await stage.settle()
    assert stage.reverses() == 2
    status = stage.status()
    assert status["currentPrimaryAZ"] == "az1.dc1"
    assert "pendingGeneration" not in status
    assert [h["to"] for h in status["history"]] == ["az1.dc1", "az2.dc2"]


async def test_concurrency_cap_holds_the_second_group() -> None:
    stage = Stage(max_concurrent_operations=1)
    stage.kube.create(resource(name="orders", primary="az2.dc2"))
    stage.kube.create(resource(name="payments", group=GROUP2, primary="az2.dc2"))
    await stage.step("orders")
    await stage.step("payments")
    assert stage.reverses() == 1
    assert [b["reason"] for b in stage.status("payments")["plan"]["blockers"]] == ["ConcurrencyLimit"]
    await stage.settle("orders")
    await stage.settle("payments")
    assert stage.reverses() == 2


async def test_group_id_change_is_refused() -> None:
    stage = Stage()
    stage.kube.create(resource(primary="az1.dc1"))
    await stage.settle()
    stage.kube.edit_spec("orders", groupID=GROUP2, primaryAZ="az2.dc2")
    await stage.settle()
    assert stage.condition("Stalled")["reason"] == "GroupIDChanged"
    assert stage.mutating() == 0


async def test_service_change_is_refused() -> None:
    stage = Stage()
    stage.kube.create(resource(primary="az1.dc1"))
    await stage.settle()
    assert stage.status()["service"] == "EVS"
    stage.kube.edit_spec("orders", cloud={"service": "SDRS"}, primaryAZ="az2.dc2")
    await stage.settle()
    stalled = stage.condition("Stalled")
    assert stalled["reason"] == "ServiceChanged" and "'EVS'" in stalled["message"]
    assert stage.mutating() == 0


async def test_cloud_unreachable_turns_ready_unknown_not_stale_true() -> None:
    stage = Stage()
    stage.kube.create(resource(primary="az1.dc1"))
    await stage.settle()
    assert stage.condition("Ready")["status"] == "True"
    stage.sim.set_faults({"errorRate": 1.0, "errorStatus": 503})
    stage.clock.advance(60)  # the next drift check
    await stage.step()
    ready = stage.condition("Ready")
    assert ready["status"] == "Unknown"
    assert ready["reason"] == "CloudUnreachable"
    assert stage.condition("Reconciling")["status"] == "True"
    stage.sim.clear_faults()
    await stage.settle()
    assert stage.condition("Ready")["status"] == "True"


async def test_invalid_spec_stalls_naming_the_field() -> None:
    stage = Stage()
    body = resource()
    body["spec"]["switchover"] = {"timeout": "soon"}
    stage.kube.create(body)
    await stage.settle()
    stalled = stage.condition("Stalled")
    assert stalled["reason"] == "InvalidSpec"
    assert "spec.switchover.timeout" in stalled["message"]
    assert stage.sim.requests() == []


async def test_last_transition_time_only_moves_on_a_flip() -> None:
    stage = Stage()
    stage.kube.create(resource(primary="az1.dc1"))
    await stage.settle()
    first = stage.condition("Ready")
    stage.clock.advance(120)
    await stage.settle()
    assert stage.condition("Ready")["lastTransitionTime"] == first["lastTransitionTime"]
    writes = stage.kube.status_writes
    stage.clock.advance(120)
    await stage.step()
    assert stage.kube.status_writes == writes, "an unchanged resync writes nothing"


async def test_group_in_group2_unaffected_by_others() -> None:
    stage = Stage()
    stage.kube.create(resource(name="orders", primary="az9.dc9"))
    stage.kube.create(resource(name="payments", group=GROUP2, primary="az2.dc2"))
    await stage.settle("orders")
    await stage.settle("payments")
    assert stage.condition("Stalled", "orders")["reason"] == "InvalidPrimaryAZ"
    assert stage.status("payments")["currentPrimaryAZ"] == "az2.dc2"
    assert stage.status("payments")["phase"] == "Ready"
    assert GROUP2 in {r["group"] for r in stage.sim.requests() if r["action"] == REVERSE}


LIST = "/v2/{project_id}/os-vendor-replication-consistency-groups"
SHOW = "/v2/{project_id}/os-vendor-replication-consistency-groups/{id}"


async def test_idle_groups_share_one_list_and_make_no_get() -> None:
    stage = Stage()
    stage.kube.create(resource(name="orders", primary="az1.dc1"))
    stage.kube.create(resource(name="payments", group=GROUP2, primary="az1.dc1"))
    await stage.settle("orders")
    await stage.settle("payments")
    for _ in range(3):  # three drift checks of both
        stage.sim.clear_requests()
        stage.clock.advance(60)
        await stage.step("orders")
        await stage.step("payments")
        assert stage.sim.count("GET", LIST) == 1
        assert stage.sim.count("GET", SHOW) == 0


async def test_adopting_a_group_costs_the_shared_list_and_the_projects_pair_and_disk_listings() -> None:
    # The AZ pair is learnt once, from the project's zone index (one pair listing, one disk listing by ids)
    # and the group as just read: no second read of the group, no per-group pair or volume reads.
    stage = Stage()
    stage.kube.create(resource(primary="az1.dc1"))
    await stage.step()
    assert stage.status()["availabilityZones"] == ["az1.dc1", "az2.dc2"]
    assert stage.sim.count("GET", LIST) == 1
    assert stage.sim.count("GET", SHOW) == 0
    assert stage.sim.count("GET", "/v2/{project_id}/os-vendor-replications") == 1
    assert stage.sim.count("GET", "/v2/{project_id}/cloudvolumes/detail") == 1
    assert len(stage.sim.requests()) == 3, stage.sim.requests()
    assert stage.sim.kind_counts() == {"LIST": 3}


async def test_reconcile_request_annotation_reads_the_group_afresh() -> None:
    stage = Stage()
    stage.kube.create(resource(primary="az1.dc1"))
    await stage.settle()
    stage.sim.set_primary(GROUP, "az2.dc2")
    stage.kube.annotate("orders", ANNOTATION_RECONCILE, "2026-01-01T00:00:00Z")
    await stage.settle()
    assert stage.reverses() == 1
    assert stage.status()["currentPrimaryAZ"] == "az1.dc1"


async def test_groups_in_flight_are_polled_with_their_own_get() -> None:
    stage = Stage()
    stage.kube.create(resource(primary="az2.dc2"))
    await stage.step()
    stage.sim.clear_requests()
    stage.clock.advance(1)
    await stage.step()
    assert stage.sim.count("GET", SHOW) == 1
    assert stage.sim.count("GET", LIST) == 0


def _fleet(n: int, *, resources: int | None = None, **settings: Any) -> tuple[Stage, list[str]]:
    """``n`` groups in one project, and a resource ``g<i>`` for the first ``resources`` (all) of them."""
    groups = [f"00000000-0000-0000-0000-{i:012d}" for i in range(n)]
    stage = Stage(
        groups=[
            {
                "projectID": PROJECT,
                "id": gid,
                "name": f"g{i}",
                "availabilityZones": ["az1.dc1", "az2.dc2"],
                "primaryAZ": "az1.dc1",
                "replicationStatus": "active",
            }
            for i, gid in enumerate(groups)
        ],
        **settings,
    )
    for i, gid in enumerate(groups[:resources]):
        stage.kube.create(resource(name=f"g{i}", group=gid, primary="az1.dc1"))
    return stage, groups


async def test_operations_in_flight_together_are_polled_by_one_list_per_interval() -> None:
    # An evacuation: four groups move at once. Polling each with its own GET would cost four requests per
    # poll interval; one shared LIST serves them all, and each still sees its group finish within one
    # poll interval (poll_max_interval), exactly as with a GET of its own.
    stage, groups = _fleet(4)
    names = [f"g{i}" for i in range(len(groups))]
    for name in names:
        await stage.settle(name)
    for name in names:
        stage.kube.edit_spec(name, primaryAZ="az2.dc2")
    stage.sim.clear_requests()
    seen_done: dict[str, float] = {}

    def note(name: str) -> None:
        if name not in seen_done and stage.status(name).get("lastOperation", {}).get("result") == "Succeeded":
            seen_done[name] = stage.clock()

    # Started out of step, as a real work queue would: the shared polls must still see each group's end
    # within one poll interval.
    offsets = {name: 0.3 * i for i, name in enumerate(names)}
    await stage.run(names, seconds=60, after_step=note, first_in=offsets)
    posts = {r["group"]: r["time"] for r in stage.sim.requests() if r["action"] == REVERSE}
    assert sorted(posts) == sorted(groups), "exactly one switchover per group"
    assert stage.reverses() == len(groups)
    cloud_time = 20 + 5  # the harness's switchoverSeconds + copyingSeconds
    for name, gid in zip(names, groups, strict=True):
        assert stage.status(name)["currentPrimaryAZ"] == "az2.dc2"
        late = seen_done[name] - (posts[gid] + cloud_time)
        assert 0 <= late <= stage.settings.poll_max_interval + 0.05, (name, late)
    # One GET per group, just before its request (never send on a cached view); the polls are LISTs.
    gets = [r for r in stage.sim.requests() if r["template"] == SHOW]
    assert len(gets) <= len(groups) + 1, [(r["group"], r["time"]) for r in gets]
    lists = stage.sim.count("GET", LIST)
    assert 0 < lists <= cloud_time / stage.settings.poll_interval + 5
    assert lists < cloud_time / stage.settings.poll_max_interval * len(groups) / 2


async def _lateness_of_each_switchover(stage: Stage, name: str, targets: list[str]) -> list[float]:
    """Switch ``name`` to each of ``targets`` in turn; for each, how long after the cloud finished (its
    request's time + the harness's 20 + 5 s) the status showed it Succeeded. Each is sent exactly once."""
    late: list[float] = []
    for target in targets:
        stage.kube.edit_spec(name, primaryAZ=target)
        stage.sim.clear_requests()
        seen: list[float] = []

        def note(n: str, seen: list[float] = seen, target: str = target) -> None:
            last = stage.status(n).get("lastOperation", {})
            if not seen and last.get("result") == "Succeeded" and last.get("to") == target:
                seen.append(stage.clock())

        await stage.run([name], seconds=40, after_step=note)
        (post,) = [r["time"] for r in stage.sim.requests() if r["action"] == REVERSE]
        late.append(seen[0] - (post + 20 + 5))
    return late


async def test_the_end_of_an_operation_like_the_last_one_is_seen_sooner() -> None:
    # Polls back off to 4 s here, so the first switchover's end is seen up to 4 s late. The cloud took as
    # long the second time, and the operator, which saw the first end between two of its looks, looks at
    # the first of those moments and then every poll_interval / 2: the second end is seen within that.
    stage = Stage(poll_interval=2.0, poll_max_interval=4.0)
    stage.kube.create(resource(primary="az1.dc1"))
    await stage.settle()
    first, second = await _lateness_of_each_switchover(stage, "orders", ["az2.dc2", "az1.dc1"])
    assert 0 <= second <= stage.settings.poll_interval / 2 + 0.05, (first, second)
    assert first > second + 1.0, (first, second)


async def test_an_operation_slower_than_the_last_one_is_followed_as_usual() -> None:
    # The expectation only moves polls earlier: when the cloud takes far longer than last time, the
    # operator falls back to its usual back-off after a short window of quick looks, and never re-sends.
    stage = Stage(poll_interval=2.0, poll_max_interval=4.0)
    stage.kube.create(resource(primary="az1.dc1"))
    await stage.settle()
    await _lateness_of_each_switchover(stage, "orders", ["az2.dc2"])
    engine = stage.sim.engine
    engine.timings = engine.timings.model_copy(update={"switchover_seconds": 80.0})
    stage.kube.edit_spec("orders", primaryAZ="az1.dc1")
    stage.sim.clear_requests()
    await stage.run(["orders"], seconds=120)
    assert stage.status("orders")["lastOperation"]["result"] == "Succeeded"
    assert stage.reverses() == 1, "sent once"
    # 85 s of cloud time at 2 → 4 s back-off is ~25 reads; the quick window adds at most a handful.
    reads = len([r for r in stage.sim.requests() if r["method"] == "GET"])
    assert reads <= 85 / stage.settings.poll_max_interval + 2.0 / (stage.settings.poll_interval / 2) + 8, (
        reads
    )


async def test_shared_polling_starts_only_where_it_costs_less_than_gets() -> None:
    # 1,500 groups in the project: one LIST is two pages. Two operations in flight are cheaper to poll
    # with two GETs; from the third on, the two-page LIST wins.
    stage, _ = _fleet(1500, resources=3)
    for name in ("g0", "g1", "g2"):
        await stage.settle(name)

    async def poll(names: list[str]) -> tuple[int, int]:
        stage.sim.clear_requests()
        stage.clock.advance(1)
        for name in names:
            await stage.step(name)
        return stage.sim.count("GET", SHOW), stage.sim.count("GET", LIST)

    for name in ("g0", "g1"):
        stage.kube.edit_spec(name, primaryAZ="az2.dc2")
        await stage.step(name)
    assert await poll(["g0", "g1"]) == (2, 0)
    stage.kube.edit_spec("g2", primaryAZ="az2.dc2")
    await stage.step("g2")
    assert await poll(["g0", "g1", "g2"]) == (0, 2)


async def test_a_lost_request_is_judged_on_a_fresh_read_not_the_shared_listing() -> None:
    # Two operations in flight share the listing. One request was lost; when the grace period ends, the
    # listing (read a moment ago) still shows that group untouched, but someone has since switched it by
    # hand. Re-sending on the listing's word would swap it back; a fresh GET sees it done.
    stage = Stage(timings={"switchoverSeconds": 120}, lost_request_grace=30)
    stage.kube.create(resource(name="orders", primary="az2.dc2"))
    stage.kube.create(resource(name="payments", group=GROUP2, primary="az2.dc2"))
    stage.sim.set_faults(
        {"drop": {"count": 1, "when": "before"}, "match": {"method": "POST", "pathContains": GROUP}}
    )
    await stage.step("orders")
    await stage.step("payments")
    assert stage.status("orders")["operation"]["state"] == "Requested"
    assert stage.status("payments")["operation"]["state"] == "InProgress"
    stage.sim.clear_faults()
    stage.clock.advance(31)
    await stage.step("payments")  # refreshes the shared listing: orders is still untouched at az1
    stage.sim.set_primary(GROUP, "az2.dc2")  # a person switches it in the console
    stage.clock.advance(0.1)
    stage.sim.clear_requests()
    await stage.step("orders")
    assert [r["template"] for r in stage.sim.requests()] == [SHOW], stage.sim.requests()
    assert stage.reverses() == 0, "never re-sent"
    assert stage.status("orders")["currentPrimaryAZ"] == "az2.dc2"
    assert stage.status("orders")["lastOperation"]["result"] == "Succeeded"


async def test_two_resources_naming_one_group_never_both_act() -> None:
    stage = Stage()
    stage.kube.create(resource(name="orders", primary="az2.dc2"))
    stage.kube.create(resource(name="orders-copy", primary="az1.dc1"))
    for _ in range(5):
        await stage.step("orders-copy")
        await stage.step("orders")
        stage.clock.advance(5)
    await stage.settle("orders")
    await stage.settle("orders-copy")
    assert stage.reverses() == 1
    assert stage.status("orders")["currentPrimaryAZ"] == "az2.dc2"
    stalled = stage.condition("Stalled", "orders-copy")
    assert stalled["reason"] == "DuplicateGroup"
    assert "payments/orders" in stalled["message"]
    # Deleting the owner hands the group to the other resource, which then acts on its own spec.
    del stage.kube.objects[("payments", "orders")]
    await stage.settle("orders-copy")
    assert stage.reverses() == 2
    assert stage.status("orders-copy")["currentPrimaryAZ"] == "az1.dc1"


async def test_apiserver_unavailable_delays_but_never_duplicates(caplog: pytest.LogCaptureFixture) -> None:
    stage = Stage()
    stage.kube.create(resource(primary="az2.dc2"))

    def state_is(state: str) -> Callable[[Mapping[str, Any]], bool]:
        return lambda patch: (patch.get("operation") or {}).get("state") == state

    stage.kube.unavailable_when = state_is("Requested")  # the intent cannot be journaled: nothing is sent
    delay = await stage.step()
    assert stage.reverses() == 0
    assert stage.slots.in_use == 0, "a slot taken for an unjournaled operation is given back"
    assert delay is not None and delay <= 5

    stage.kube.unavailable_when = state_is("InProgress")  # journaled and sent; "accepted" does not land
    stage.clock.advance(delay)
    await stage.step()
    assert stage.reverses() == 1
    assert stage.status()["operation"]["state"] == "Requested"

    stage.kube.unavailable_when = None
    await stage.settle()
    assert stage.reverses() == 1
    assert stage.status()["lastOperation"]["result"] == "Succeeded"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_slow_reprotect_is_observed_not_resent() -> None:
    # Reprotect keeps the group "failovered" while replication resyncs, far longer than the grace period.
    stage = Stage(timings={"reprotectSeconds": 600}, lost_request_grace=30)
    stage.kube.create(resource(primary="az2.dc2", failover={"allowed": True, "autoReprotect": True}))
    stage.sim.az_outage("az1.dc1", "2")
    await stage.settle(until=lambda status: "lastOperation" in status)
    stage.sim.az_recover("az1.dc1")
    await stage.settle(max_steps=2000)
    assert stage.actions(REPROTECT) == 1
    assert stage.status()["lastOperation"]["action"] == "Reprotect"
    assert stage.status()["lastOperation"]["result"] == "Succeeded"


async def test_rbac_refusal_is_a_condition_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    stage = Stage()
    stage.kube.forbid_secrets = True
    stage.kube.create(resource(primary="az2.dc2"))
    delay = await stage.step()
    assert delay is not None and delay >= 15
    assert stage.condition("Stalled")["reason"] == "KubernetesForbidden"
    assert "rbac.yaml" in stage.condition("Stalled")["message"]
    assert stage.mutating() == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    stage.kube.forbid_secrets = False  # RBAC fixed (or the apiserver's cache caught up)
    stage.clock.advance(delay)
    await stage.settle()
    assert stage.reverses() == 1
    assert stage.condition("Stalled") is None


async def test_groups_waiting_for_a_slot_cost_the_cloud_nothing() -> None:
    stage = Stage(max_concurrent_operations=1)
    stage.kube.create(resource(name="orders", primary="az2.dc2"))
    stage.kube.create(resource(name="payments", group=GROUP2, primary="az2.dc2"))
    await stage.step("orders")
    delay = await stage.step("payments")
    assert [b["reason"] for b in stage.status("payments")["plan"]["blockers"]] == ["ConcurrencyLimit"]
    assert delay is not None and delay >= 60, "woken by the slot that frees, not by polling"
    stage.sim.clear_requests()
    stage.clock.advance(1)
    await stage.step("payments")
    assert stage.sim.count("GET", SHOW, None) == 0


async def _step_all_at_once(stage: Stage, names: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Reconcile ``names`` concurrently, as many workers would. A real cloud call suspends the reconcile;
    the in-process simulator must too, or nothing interleaves."""
    handle = stage.sim.handle

    async def answer_later(*args: Any) -> Any:
        await asyncio.sleep(0)
        return await handle(*args)

    monkeypatch.setattr(stage.sim, "handle", answer_later)
    await asyncio.gather(*(stage.step(name) for name in names))


async def test_groups_planning_at_once_read_the_cloud_only_as_far_as_slots_allow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Many workers plan at the same moment (an evacuation's first second): each sees a free slot on the
    # shared listing. The slot is taken before the fresh read, so the others stop there instead of each
    # reading the cloud only to find the cap full; the one with the slot reads once and sends one request.
    stage, groups = _fleet(4, max_concurrent_operations=1)
    names = [f"g{i}" for i in range(len(groups))]
    for name in names:
        await stage.settle(name)
        stage.kube.edit_spec(name, primaryAZ="az2.dc2")
    stage.sim.clear_requests()
    await _step_all_at_once(stage, names, monkeypatch)
    assert stage.reverses() == 1
    reads = [r for r in stage.sim.requests() if r["method"] == "GET" and r["template"] in (SHOW, LIST)]
    assert len(reads) == 1, [(r["template"], r.get("group")) for r in reads]
    waiting = [n for n in names if "operation" not in stage.status(n)]
    assert len(waiting) == 3
    for name in waiting:
        assert stage.condition("Ready", name)["reason"] == "ConcurrencyLimit"
    assert stage.slots.in_use == 1


async def test_a_slot_taken_for_a_start_that_turns_out_unneeded_is_given_back() -> None:
    # The shared listing says the group must move, but the fresh read before sending shows it already where
    # the spec wants it (switched by hand a moment ago): nothing is sent, and the slot is free at once.
    stage, groups = _fleet(2, max_concurrent_operations=1)
    for name in ("g0", "g1"):
        await stage.settle(name)
        stage.kube.edit_spec(name, primaryAZ="az2.dc2")
    stage.sim.set_primary(groups[0], "az2.dc2")
    await stage.step("g0")
    assert stage.reverses() == 0
    assert stage.condition("Ready", "g0")["status"] == "True"
    assert stage.slots.in_use == 0
    await stage.step("g1")
    assert stage.reverses() == 1
    assert stage.status("g1")["operation"]["action"] == "Switchover"


async def test_a_finished_operation_hands_its_slot_on_before_recording_itself() -> None:
    # Cap 1, two groups to move. When g0's switchover is seen done its slot goes to g1 before g0's closing
    # status write, so g1 starts without waiting on it. Here that write fails (apiserver restarting): g0's
    # journal still shows the operation, it is adopted again and recorded on the next reconcile; g1's
    # request is sent once, after g0 finished in the cloud, and nothing is sent twice.
    stage, _ = _fleet(2, max_concurrent_operations=1)
    woken: list[list[str]] = []
    stage.slots.on_release = woken.append
    for name in ("g0", "g1"):
        await stage.settle(name)
        stage.kube.edit_spec(name, primaryAZ="az2.dc2")
    await stage.step("g0")
    await stage.step("g1")
    assert stage.reverses() == 1 and "operation" in stage.status("g0")
    stage.kube.unavailable_when = lambda patch: "lastOperation" in patch
    stage.clock.advance(30)  # the cloud's 20 + 5 s are over
    await stage.step("g0")
    assert woken == [["payments/g1"]], "the slot was handed on before the write"
    assert "operation" in stage.status("g0"), "the closing write did not land"
    stage.kube.unavailable_when = None
    await stage.step("g1")
    assert stage.reverses() == 2
    await stage.settle("g0")
    assert stage.status("g0")["lastOperation"]["result"] == "Succeeded"
    await stage.settle("g1", until=lambda status: "lastOperation" in status)
    assert stage.status("g1")["lastOperation"]["result"] == "Succeeded"
    assert stage.slots.in_use == 0
    posts = sorted(r["time"] for r in stage.sim.requests() if r["action"] == REVERSE)
    assert len(posts) == 2 and posts[1] >= posts[0] + 25, "never two in the cloud at once"


def test_a_woken_waiter_leaves_the_line() -> None:
    woken: list[list[str]] = []
    slots = OperationSlots(1, on_release=woken.append)
    assert slots.try_acquire("a")
    assert not slots.try_acquire("b")
    assert not slots.try_acquire("c")
    slots.settle("b")  # b's reconcile ends blocked: it stays in line (this once emptied the line)
    slots.release("a")
    assert woken == [["b"]], "one waiter per freed slot, oldest first"
    # "b" no longer needs a slot: its reconcile settles without taking it, and the chance passes on.
    slots.settle("b")
    assert woken == [["b"], ["c"]]
    assert slots.try_acquire("c")
    slots.forget("c")
    assert slots.in_use == 0


async def test_groups_starting_together_are_read_by_one_list_made_after_the_decision(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An evacuation's wave: five groups get a slot at the same moment. Each must be read after its slot was
    # taken (never sent on the listing that planned it), and one LIST started after that serves all five
    # instead of five GETs; every group still sends exactly once.
    stage, groups = _fleet(5, max_concurrent_operations=5)
    names = [f"g{i}" for i in range(len(groups))]
    for name in names:
        await stage.settle(name)
        stage.kube.edit_spec(name, primaryAZ="az2.dc2")
    stage.sim.clear_requests()
    await _step_all_at_once(stage, names, monkeypatch)
    assert stage.reverses() == 5
    assert stage.sim.count("GET", SHOW) == 0
    reads = [r["template"] for r in stage.sim.requests() if r["method"] == "GET"]
    # The planning LIST (the listing was 0 s old, so it may be reused) and one made after the slots.
    assert reads.count(LIST) <= 2 and set(reads) == {LIST}, reads


async def test_a_list_in_flight_since_before_the_decision_is_not_enough_to_send_on() -> None:
    stage, groups = _fleet(1)
    cloud = stage.client("EVS", ENDPOINT, PROJECT, Credentials(AK, SK))
    cache = stage.cache
    key = ("EVS", ENDPOINT, PROJECT, AK)
    release = asyncio.Event()
    real_list = cloud.list_groups

    async def slow_list() -> Any:
        await release.wait()
        return await real_list()

    cloud.list_groups = slow_list  # type: ignore[method-assign]
    early = asyncio.create_task(cache.group(key, cloud, groups[0], max_age=0))
    await asyncio.sleep(0)
    mark = cache.mark()  # the decision: taken while the early LIST is on the wire
    stage.sim.set_primary(groups[0], "az2.dc2")
    late = asyncio.create_task(cache.listed_since(key, cloud, groups[0], mark))
    await asyncio.sleep(0)
    release.set()
    early_group, _ = await early
    late_group = await late
    assert cache.lists == 2, "a second LIST, started after the decision"
    assert cloud.view(late_group, (), stage.now()).primary_az == "az2.dc2"
    assert early_group is not late_group


async def test_many_idle_groups_cost_no_status_write_and_one_list_per_resync() -> None:
    # Coalescing at scale: once every resource is current, drift checks of idle groups that find nothing new
    # write nothing (no watch event, no apiserver load) and share one LIST per listing key. (B2 measures
    # the same at 10,000 on the real control plane: status writes seen on the watch while idle.)
    stage, groups = _fleet(100)
    names = [f"g{i}" for i in range(len(groups))]
    await stage.run(names, seconds=120)
    assert all(stage.status(name).get("phase") == "Ready" for name in names)
    writes, lists = stage.kube.status_writes, stage.cache.lists
    stage.sim.clear_requests()
    await stage.run(names, seconds=300)  # five resync intervals of every group
    assert stage.kube.status_writes == writes, "no status write when nothing changed"
    gets = [r for r in stage.sim.requests() if r["method"] == "GET" and r["template"] == SHOW]
    assert gets == []
    assert 4 <= stage.cache.lists - lists <= 7, stage.cache.lists - lists
