"""ZoneDrains end to end through the reconciler (``harness.Stage``): the drain moves exactly the groups it
selects, never writes a spec, ends cleanly by deletion or expiry, and its status tells the truth.

The rule itself is table-tested in ``test_drains.py`` and ``test_plan.py``; here the wiring is: the book the
watch feeds, the reconciler asking it, the status writer reporting on it, and the events."""

from __future__ import annotations

import copy
from typing import Any

from harness import GROUP, GROUP2, Stage, resource

AZ1, AZ2 = "az1.dc1", "az2.dc2"


def stage_with_two_groups(**settings: Any) -> Stage:
    stage = Stage(**settings)
    orders = resource("orders", GROUP, AZ1)
    orders["metadata"]["labels"] = {"tier": "db"}
    payments = resource("payments", GROUP2, AZ1)
    payments["metadata"]["labels"] = {"tier": "web"}
    stage.kube.create(orders)
    stage.kube.create(payments)
    return stage


async def settle_all(stage: Stage, seconds: float = 120) -> None:
    """Reconcile both groups until each has only its resync due, then let ``seconds`` pass (resyncs)."""
    deadline = stage.clock() + seconds
    while True:
        for name in ("orders", "payments"):
            await stage.settle(name, max_steps=1000)
        if stage.clock() >= deadline:
            return
        stage.clock.advance(min(stage.settings.resync_interval, deadline - stage.clock()))


def drain_events(stage: Stage) -> list[tuple[str, str]]:
    return [(e["reason"], e["message"]) for e in stage.kube.events if e.get("kind") == "ZoneDrain"]


async def test_a_selector_drain_moves_exactly_the_matching_groups_and_never_the_spec() -> None:
    stage = stage_with_two_groups()
    await settle_all(stage, 10)
    specs = {name: copy.deepcopy(stage.kube.get(name)["spec"]) for name in ("orders", "payments")}
    stage.add_drain("az1-outage", zone=AZ1, selector={"matchLabels": {"tier": "db"}}, comment="INC-4711")
    assert stage.woken == 1, "a new drain wakes the groups"
    await settle_all(stage)

    orders, payments = stage.status("orders"), stage.status("payments")
    assert orders["currentPrimaryAZ"] == AZ2
    assert (orders["effectivePrimaryAZ"], orders["drainedBy"]) == (AZ2, "az1-outage")
    assert payments["currentPrimaryAZ"] == AZ1 and "drainedBy" not in payments
    assert stage.reverses() == 1
    assert {name: stage.kube.get(name)["spec"] for name in specs} == specs, "no spec was written"
    started = [
        e["message"]
        for e in stage.kube.events
        if e["name"] == "orders" and e["reason"] == "SwitchoverStarted"
    ]
    assert started and "by ZoneDrain az1-outage" in started[0]
    assert (
        "ZoneDrain az1-outage (INC-4711) drains az1.dc1" in orders["lastOperation"]["message"]
        or any("az1-outage" in m for m in started)
        or "az1-outage" in orders["plan"]["message"]
    )
    assert "held away from az1.dc1 by ZoneDrain az1-outage" in stage.condition("Ready", "orders")["message"]


async def test_deleting_the_drain_brings_the_groups_back() -> None:
    stage = stage_with_two_groups()
    stage.add_drain("az1-outage", zone=AZ1)
    await settle_all(stage)
    assert stage.status("orders")["currentPrimaryAZ"] == AZ2 == stage.status("payments")["currentPrimaryAZ"]
    stage.delete_drain("az1-outage")
    await settle_all(stage)
    for name in ("orders", "payments"):
        status = stage.status(name)
        assert status["currentPrimaryAZ"] == AZ1
        assert status["effectivePrimaryAZ"] == AZ1 and "drainedBy" not in status
    assert stage.reverses() == 4


async def test_an_expiry_brings_the_groups_back_and_the_drain_stays_expired() -> None:
    stage = stage_with_two_groups()
    expires = stage.now().timestamp() + 300
    from datetime import UTC, datetime

    stage.add_drain("az1-outage", zone=AZ1, expiresAt=datetime.fromtimestamp(expires, UTC).isoformat())
    await settle_all(stage)
    await stage.writer.tick()
    assert stage.drain_status("az1-outage")["phase"] == "Drained"
    stage.clock.advance(max(0.0, expires - stage.now().timestamp()) + 1)
    await stage.writer.tick()  # notices the expiry and wakes the groups
    assert stage.woken >= 2
    await settle_all(stage)
    await stage.writer.tick()
    assert stage.status("orders")["currentPrimaryAZ"] == AZ1
    status = stage.drain_status("az1-outage")
    assert status["phase"] == "Expired"
    ready = status["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", "Expired")
    assert "DrainExpired" in [r for r, _ in drain_events(stage)]


async def test_both_zones_drained_stays_and_is_reported_blocked() -> None:
    stage = stage_with_two_groups()
    stage.add_drain("az1-outage", zone=AZ1)
    stage.add_drain("az2-outage", zone=AZ2)
    await settle_all(stage)
    assert stage.mutating() == 0
    plan = stage.status("orders")["plan"]
    assert plan["reason"] == "BothZonesDrained"
    await stage.writer.tick()
    status = stage.drain_status("az1-outage")
    assert status["blockedGroups"] == 2
    assert {b["reason"] for b in status["blocked"]} == {"BothZonesDrained"}
    assert [r for r, _ in drain_events(stage)].count("GroupBlocked") >= 2


async def test_a_gated_group_shows_blocked_in_the_drain_status() -> None:
    stage = stage_with_two_groups()
    stage.sim.patch_group(GROUP, replicationStatus="inactive")
    stage.add_drain("az1-outage", zone=AZ1, selector={"matchLabels": {"tier": "db"}})
    await settle_all(stage)
    await stage.writer.tick()
    status = stage.drain_status("az1-outage")
    assert (status["matchedGroups"], status["drainedGroups"], status["blockedGroups"]) == (1, 0, 1)
    (blocked,) = status["blocked"]
    assert (blocked["namespace"], blocked["name"]) == ("payments", "orders")
    assert blocked["reason"] in ("SwitchoverImpossible", "ReplicationNotActive")
    assert status["phase"] == "Draining"
    assert status["conditions"][0]["status"] == "False"
    assert stage.mutating() == 0, "a drain never overrides a gate"


async def test_the_drain_status_counts_and_is_written_only_when_it_changes() -> None:
    stage = stage_with_two_groups()
    stage.add_drain("az1-outage", zone=AZ1)
    await stage.writer.tick()
    first = stage.drain_status("az1-outage")
    assert (first["matchedGroups"], first["drainedGroups"], first["phase"]) == (2, 0, "Draining")
    writes = stage.kube.drain_writes
    await stage.writer.tick()
    assert stage.kube.drain_writes == writes, "nothing changed, nothing written"
    await settle_all(stage)
    await stage.writer.tick()
    done = stage.drain_status("az1-outage")
    assert (done["matchedGroups"], done["drainedGroups"], done["movingGroups"], done["phase"]) == (
        2,
        2,
        0,
        "Drained",
    )
    assert done["conditions"][0]["status"] == "True"
    reasons = [r for r, _ in drain_events(stage)]
    assert reasons[:1] == ["DrainStarted"] and "Drained" in reasons
    stage.delete_drain("az1-outage")
    await stage.writer.tick()
    assert "DrainEnded" in [r for r, _ in drain_events(stage)]


async def test_a_namespace_selector_matches_on_the_namespaces_labels() -> None:
    stage = stage_with_two_groups()
    stage.add_drain("prod-only", zone=AZ1, namespaceSelector={"matchLabels": {"env": "prod"}})
    await settle_all(stage, 30)
    assert stage.mutating() == 0, "namespace payments is not labelled env=prod"
    stage.kube.namespaces["payments"] = {"env": "prod"}
    # Within the resync interval the new label is seen (namespace labels are cached that long).
    await settle_all(stage, stage.settings.resync_interval * 3)
    assert stage.status("orders")["currentPrimaryAZ"] == AZ2


async def test_an_invalid_drain_holds_nothing_and_says_why() -> None:
    stage = stage_with_two_groups()
    stage.add_drain("broken", zone="not an az!")
    await settle_all(stage, 30)
    assert stage.mutating() == 0
    await stage.writer.tick()
    ready = stage.drain_status("broken")["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "spec.zone" in ready["message"]


async def test_a_status_write_does_not_wake_the_groups() -> None:
    stage = stage_with_two_groups()
    body = stage.add_drain("az1-outage", zone=AZ1)
    woken = stage.woken
    stage.book.observe("MODIFIED", {**body, "status": {"phase": "Draining"}})
    assert stage.woken == woken
    stage.add_drain("az1-outage", zone=AZ2)  # a spec change: a new generation
    assert stage.woken == woken + 1


async def test_manual_approval_under_a_drain_waits_for_the_drain_approval() -> None:
    stage = stage_with_two_groups()
    stage.kube.edit_spec("orders", switchover={"approval": "Manual"})
    generation = stage.kube.get("orders")["metadata"]["generation"]
    # The current generation is approved (for the spec's AZ): that does not approve a drain's move.
    stage.kube.annotate("orders", "azswitch.io/approve", str(generation))
    stage.add_drain("az1-outage", zone=AZ1, selector={"matchLabels": {"tier": "db"}})
    await settle_all(stage, 30)
    assert stage.reverses() == 0
    assert "azswitch.io/approve-drain=az1-outage" in stage.status("orders")["plan"]["blockers"][0]["message"]
    stage.kube.annotate("orders", "azswitch.io/approve-drain", "az1-outage")
    await settle_all(stage)
    assert stage.status("orders")["currentPrimaryAZ"] == AZ2
