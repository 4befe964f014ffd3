"""The whole operator in-process with leader election — kopf, the work queue, the reconciler, the fences —
against kmock as the Kubernetes API and the simulator as the cloud: what a standby does (nothing), what a
new leader does (everything it knows, at once), and what a leader that loses its Lease does (stops).

The Lease itself lives in ``MemoryLeaseStore`` (kmock serves no PUT, and the election's own behaviour is
proven step by step in tests/unit/test_leader.py); "another replica" is the test writing that store. The
real Lease API is exercised end to end by tests/e2e/test_e2e_leader.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kube import EVENTS, KubeAPI, kube_api, run_operator, wait_for

from azswitch.dev.leases import LeaseClient, MemoryLeaseStore
from azswitch.dev.simulator import Simulator, SimulatorTransport
from azswitch.handlers import build_registry
from azswitch.leader import LeaderElection, LeaseError, LeaseRecord
from azswitch.runtime import Runtime
from azswitch.settings import load_settings

PROJECT = "0123456789abcdef0123456789abcdef"
GROUP = "91085433-9499-4a68-b2c6-35072467ccd2"
AK, SK = "AKEXAMPLE0000000000", "SKEXAMPLE0000000000000000000000000000000"
REVERSE = "os-reverse-replication-consistency-group"
NS = "payments"
LEASE, RENEW, RETRY = 2, 1.5, 0.1

SEED: dict[str, Any] = {
    "projects": [{"id": PROJECT, "name": "cn-north-4"}],
    "credentials": [{"accessKey": AK, "secretKey": SK}],
    "groups": [
        {
            "projectID": PROJECT,
            "id": GROUP,
            "name": "orders",
            "availabilityZones": ["az1.dc1", "az2.dc2"],
            "primaryAZ": "az1.dc1",
            "replicationStatus": "active",
        }
    ],
    "timings": {"switchoverSeconds": 0.4, "copyingSeconds": 0.2},
}


def rg(primary: str) -> dict[str, Any]:
    return {
        "apiVersion": "azswitch.io/v1alpha1",
        "kind": "ReplicationGroup",
        "metadata": {"name": "orders", "namespace": NS},
        "spec": {
            "groupID": GROUP,
            "primaryAZ": primary,
            "cloud": {
                "region": "cn-north-4",
                "projectID": PROJECT,
                "endpoint": "http://127.0.0.1:1",
                "credentialsSecretRef": {"name": "evs"},
            },
        },
    }


class World:
    def __init__(self, kube: KubeAPI) -> None:
        self.kube = kube
        self.sim = Simulator(copy.deepcopy(SEED))
        self.lease = MemoryLeaseStore()
        self.settings = load_settings(
            {},
            poll_interval=0.05,
            poll_max_interval=0.1,
            resync_interval=1.0,
            lost_request_grace=30.0,
            credentials_ttl=0,
            metrics_port=0,
            kube_timeout=5,
        )

    def runtime(self, identity: str, client: LeaseClient | None = None) -> Runtime:
        election = LeaderElection("azswitch-system", "azswitch-leader", identity, LEASE, RENEW, RETRY)
        return Runtime(
            self.settings,
            self.kube.api_client(),
            cloud_transport=SimulatorTransport(self.sim),
            election=election,
            lease_store=client or self.lease.view(identity),
        )

    @contextlib.asynccontextmanager
    async def operator(self, runtime: Runtime) -> AsyncIterator[Runtime]:
        async with run_operator(build_registry(runtime), self.kube, clusterwide=True, stop_timeout=15):
            yield runtime

    def status(self) -> dict[str, Any]:
        return dict((self.kube.get(NS, "orders") or {}).get("status") or {})

    def reverses(self) -> int:
        return sum(1 for r in self.sim.requests() if r["action"] == REVERSE)

    def status_writes(self) -> int:
        return len(self.kube.requests_to("PATCH", subresource="status"))

    def events(self) -> int:
        return len(self.kube.requests_to("POST", resource=EVENTS))


def leader_gauge(runtime: Runtime) -> float | None:
    value: float | None = runtime.metrics.registry.get_sample_value("azswitch_leader")
    return value


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with kube_api(namespaces=[NS]) as kube:
        kube.create_secret(NS, "evs", {"accessKey": AK, "secretKey": SK})
        yield World(kube)


@contextlib.asynccontextmanager
async def another_replica_leads(world: World) -> AsyncIterator[asyncio.Event]:
    """Someone else holds the Lease and renews it every 0.2 s until the yielded event is set (it dies)."""
    dead = asyncio.Event()

    def renew() -> None:
        now = datetime.now(UTC)
        world.lease.put(LeaseRecord("other_1", LEASE, now, now, 0))

    renew()

    async def renewing() -> None:
        while not dead.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(dead.wait(), 0.2)
            if not dead.is_set():
                renew()

    task = asyncio.create_task(renewing())
    try:
        yield dead
    finally:
        dead.set()
        await task


async def test_a_standby_acts_on_nothing_and_then_leads_at_once(world: World) -> None:
    world.kube.create(rg(primary="az2.dc2"))  # wants a switchover from the start
    async with another_replica_leads(world) as other_dies:
        runtime = world.runtime("me_1")
        async with world.operator(runtime):
            await wait_for(lambda: runtime.controller.get((NS, "orders")) is not None, 5)
            # Another change while standing by, and several lease durations of renewals by the leader.
            world.kube.patch(NS, "orders", {"metadata": {"annotations": {"azswitch.io/approve": "1"}}})
            await asyncio.sleep(LEASE * 1.5)
            assert world.sim.requests() == [], "a standby called the cloud"
            assert world.status_writes() == 0, "a standby wrote status"
            assert world.events() == 0, "a standby posted an event"
            assert world.status() == {}
            assert (runtime.role, leader_gauge(runtime)) == ("candidate", 0.0)

            other_dies.set()
            # Within a lease duration (by the standby's clock) and a retry period, it leads and acts.
            await wait_for(lambda: runtime.leading, LEASE + 1.0, message="the standby never took over")
            assert (runtime.role, leader_gauge(runtime)) == ("leader", 1.0)
            await wait_for(lambda: world.status().get("lastOperation", {}).get("result") == "Succeeded", 10)
            assert world.reverses() == 1
            assert world.lease.record is not None
            assert (world.lease.record.holder_identity, world.lease.record.lease_transitions) == ("me_1", 1)
            assert ("LeaderElection", "me_1 became leader") in world.lease.events
    # Stopped like a SIGTERM: the Lease is handed back for the next replica.
    assert world.lease.record is not None and world.lease.record.holder_identity == ""
    assert world.lease.record.lease_duration_seconds == 1
    assert not runtime.lost_leadership


async def test_a_leader_that_loses_its_lease_stops_at_once_and_the_next_resumes_without_resending(
    world: World,
) -> None:
    world.sim.reset({**copy.deepcopy(SEED), "timings": {"switchoverSeconds": 3.0, "copyingSeconds": 0.2}})
    world.kube.create(rg(primary="az2.dc2"))
    client = world.lease.view("first_1")
    first = world.runtime("first_1", client)
    exits: list[str] = []
    first.request_exit = lambda: exits.append("exit")
    async with world.operator(first):
        await wait_for(lambda: world.status().get("operation", {}).get("state") == "InProgress", 5)
        assert world.reverses() == 1
        client.error = LeaseError("Kubernetes API unavailable (partition)")
        await wait_for(lambda: first.lost_leadership, RENEW + 1.0, message="the leader never gave up")
        assert exits == ["exit"] and not first.leading and leader_gauge(first) == 0.0
        requests, writes = len(world.sim.requests()), world.status_writes()
        await asyncio.sleep(1.0)  # polls were due every 0.05-0.1 s: none may leave the deposed leader
        assert (len(world.sim.requests()), world.status_writes()) == (requests, writes)
    # The journal says InProgress: exactly what the next leader resumes from.
    assert world.status()["operation"]["state"] == "InProgress"
    assert world.lease.record is not None and world.lease.record.holder_identity == "first_1"

    second = world.runtime("second_1")
    async with world.operator(second):
        await wait_for(lambda: second.leading, LEASE + 1.0, message="the second replica never took over")
        await wait_for(lambda: world.status().get("lastOperation", {}).get("result") == "Succeeded", 10)
    assert world.reverses() == 1, "the new leader re-sent a switchover the journal said was in progress"
    assert world.status()["currentPrimaryAZ"] == "az2.dc2"
    assert world.lease.record is not None and world.lease.record.lease_transitions == 1
