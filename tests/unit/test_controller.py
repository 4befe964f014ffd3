"""The work queue: one reconcile per resource at a time, de-duplicated, operations in flight first."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from azswitch.controller import Controller


def body(name: str, *, in_flight: bool = False, generation: int = 1, namespace: str = "ns") -> dict[str, Any]:
    status = {"operation": {"id": "op-1", "action": "Switchover"}} if in_flight else {}
    return {
        "metadata": {"namespace": namespace, "name": name, "uid": f"uid-{name}", "generation": generation},
        "spec": {"groupID": f"group-{name}"},
        "status": status,
    }


class Recorder:
    def __init__(self, expected: int) -> None:
        self.order: list[str] = []
        self.running: set[str] = set()
        self.overlaps = 0
        self.expected = expected
        self.done = asyncio.Event()

    async def __call__(self, obj: Mapping[str, Any]) -> float | None:
        name = obj["metadata"]["name"]
        if name in self.running:
            self.overlaps += 1
        self.running.add(name)
        await asyncio.sleep(0)
        self.running.discard(name)
        self.order.append(name)
        if len(self.order) >= self.expected:
            self.done.set()
        return None


async def _drain(controller: Controller, recorder: Recorder) -> None:
    controller.start()
    try:
        await asyncio.wait_for(recorder.done.wait(), 5)
        await asyncio.sleep(0.05)  # anything extra would show up now
    finally:
        await controller.stop()


async def test_operations_in_flight_and_woken_resources_jump_the_queue() -> None:
    # An evacuation in miniature: many spec changes are queued when an operation in flight needs its next
    # poll and a freed slot wakes a waiter; those two must not wait behind the flood.
    recorder = Recorder(expected=7)
    controller = Controller(recorder, workers=1)
    for i in range(5):
        controller.observe("ADDED", body(f"idle-{i}"))
    controller.observe("ADDED", body("moving", in_flight=True))
    controller.enqueue(("ns", "idle-3"), urgent=True)  # woken for a free slot
    controller.observe("ADDED", body("late"))
    await _drain(controller, recorder)
    assert recorder.order == ["moving", "idle-3", "idle-0", "idle-1", "idle-2", "idle-4", "late"]


async def test_a_resource_is_reconciled_once_however_often_it_is_queued() -> None:
    recorder = Recorder(expected=2)
    controller = Controller(recorder, workers=4)
    controller.observe("ADDED", body("orders"))
    controller.observe("ADDED", body("payments"))
    for _ in range(3):
        controller.enqueue(("ns", "orders"))
        controller.enqueue(("ns", "orders"), urgent=True)
    await _drain(controller, recorder)
    assert sorted(recorder.order) == ["orders", "payments"]
    assert recorder.overlaps == 0


async def test_a_change_during_a_reconcile_runs_it_again_after_not_alongside() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    calls: list[int] = []

    async def reconcile(obj: Mapping[str, Any]) -> float | None:
        calls.append(obj["metadata"]["generation"])
        if len(calls) == 1:
            started.set()
            await release.wait()
        return None

    controller = Controller(reconcile, workers=4)
    controller.observe("ADDED", body("orders"))
    controller.start()
    try:
        await asyncio.wait_for(started.wait(), 5)
        controller.observe("MODIFIED", body("orders", generation=2))
        await asyncio.sleep(0.01)
        assert calls == [1], "never two reconciles of one resource at once"
        release.set()
        for _ in range(100):
            if len(calls) == 2:
                break
            await asyncio.sleep(0.01)
    finally:
        await controller.stop()
    assert calls == [1, 2], "the change is reconciled right after, on the newest copy"


async def test_one_namespaces_flood_does_not_starve_another_namespace() -> None:
    # A platform team adopts 200 groups in one namespace; another team's single change arrives just after.
    # Within a lane the queue takes namespaces in turns: the lone resource runs second, not 201st.
    recorder = Recorder(expected=202)
    controller = Controller(recorder, workers=1)
    for i in range(200):
        controller.observe("ADDED", body(f"big-{i}", namespace="estate"))
    controller.observe("ADDED", body("orders", namespace="payments"))
    controller.observe("ADDED", body("ledger", namespace="finance"))
    await _drain(controller, recorder)
    assert recorder.order.index("orders") <= 2 and recorder.order.index("ledger") <= 2, recorder.order[:5]
    # Each namespace keeps its own order.
    big = [name for name in recorder.order if name.startswith("big-")]
    assert big == [f"big-{i}" for i in range(200)]


async def test_a_namespace_arriving_late_joins_the_round_being_served() -> None:
    # Rounds do not let a quiet namespace bank turns: arriving after 100 of the flood ran, it goes next.
    recorder = Recorder(expected=151)
    hundred = asyncio.Event()

    async def reconcile(obj: Mapping[str, Any]) -> float | None:
        delay = await recorder(obj)
        if len(recorder.order) == 100:
            hundred.set()
        return delay

    controller = Controller(reconcile, workers=1)
    for i in range(150):
        controller.observe("ADDED", body(f"big-{i}", namespace="estate"))
    controller.start()
    try:
        await asyncio.wait_for(hundred.wait(), 5)
        controller.observe("ADDED", body("orders", namespace="payments"))
        await asyncio.wait_for(recorder.done.wait(), 5)
    finally:
        await controller.stop()
    assert recorder.order.index("orders") <= len(recorder.order) - 45, "served at once, not after the flood"
