"""The whole operator in-process — kopf, the work queue, the reconciler, the official client — against kmock
as the Kubernetes API and the simulator as the cloud, on real (short) time.

The reconciler's decisions are proven step by step in tests/unit/test_reconcile.py; these prove the wiring:
that kopf's watch feeds the queue, that status writes and events reach the API server, that our own writes
do not loop, that a restarted process resumes without re-sending, and that deletion never touches the cloud.
"""

from __future__ import annotations

import contextlib
import copy
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from kube import ZD, KubeAPI, kube_api, run_operator, wait_for
from prometheus_client.parser import text_string_to_metric_families

from azswitch.dev.simulator import Simulator, SimulatorTransport
from azswitch.handlers import build_registry
from azswitch.runtime import Runtime
from azswitch.settings import load_settings

PROJECT = "0123456789abcdef0123456789abcdef"
GROUP = "91085433-9499-4a68-b2c6-35072467ccd2"
GROUP2 = "40df180b-9fe2-471a-8c64-1b758dc84189"
AK, SK = "AKEXAMPLE0000000000", "SKEXAMPLE0000000000000000000000000000000"
REVERSE = "os-reverse-replication-consistency-group"
SDRS_GROUP = "5ac0a2e4-6b1f-4c52-9e0b-2f3c7d8e9a10"
SDRS_REVERSE = "reverse-server-group"
NS = "payments"

SEED = {
    "projects": [{"id": PROJECT, "name": "cn-north-4"}],
    "credentials": [{"accessKey": AK, "secretKey": SK}],
    "groups": [
        {
            "projectID": PROJECT,
            "id": gid,
            "name": name,
            "availabilityZones": ["az1.dc1", "az2.dc2"],
            "primaryAZ": "az1.dc1",
            "replicationStatus": "active",
        }
        for gid, name in ((GROUP, "orders"), (GROUP2, "payments"))
    ],
    "sdrsGroups": [
        {
            "projectID": PROJECT,
            "id": SDRS_GROUP,
            "name": "billing",
            "sourceAZ": "az1.dc1",
            "targetAZ": "az2.dc2",
        }
    ],
    "timings": {"switchoverSeconds": 0.4, "copyingSeconds": 0.2},
}


def rg(
    name: str = "orders",
    group: str = GROUP,
    primary: str = "az1.dc1",
    secret: str = "evs",
    service: str | None = None,
) -> dict[str, Any]:
    body = {
        "apiVersion": "azswitch.io/v1alpha1",
        "kind": "ReplicationGroup",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "groupID": group,
            "primaryAZ": primary,
            "cloud": {
                "region": "cn-north-4",
                "projectID": PROJECT,
                "endpoint": "http://127.0.0.1:1",
                "credentialsSecretRef": {"name": secret},
            },
        },
    }
    if service is not None:
        body["spec"]["cloud"]["service"] = service  # type: ignore[index]
    return body


class World:
    def __init__(self, kube: KubeAPI) -> None:
        self.kube = kube
        self.sim = Simulator(copy.deepcopy(SEED))
        self.settings = load_settings(
            {},
            poll_interval=0.05,
            poll_max_interval=0.1,
            resync_interval=1.0,
            lost_request_grace=2.0,
            credentials_ttl=0,
            metrics_port=0,
            # A status write caught in flight when a test stops the operator (and with it kmock's loop)
            # fails after this long instead of holding the loop's shutdown (see test_kube_client.py).
            kube_timeout=5,
        )

    @contextlib.asynccontextmanager
    async def operator(self) -> AsyncIterator[Runtime]:
        """One operator process; leaving the block stops it (as a restart or a crash would)."""
        runtime = Runtime(self.settings, self.kube.api_client(), cloud_transport=SimulatorTransport(self.sim))
        # A generous stop timeout: a loaded CI machine must not turn a clean shutdown into a failure.
        async with run_operator(build_registry(runtime), self.kube, clusterwide=True, stop_timeout=15):
            yield runtime

    def status(self, name: str = "orders") -> dict[str, Any]:
        obj = self.kube.get(NS, name) or {}
        return dict(obj.get("status") or {})

    def condition(self, type_: str, name: str = "orders") -> dict[str, Any]:
        for condition in self.status(name).get("conditions", []):
            if condition["type"] == type_:
                return dict(condition)
        return {}

    def reverses(self, action: str = REVERSE) -> int:
        return sum(1 for r in self.sim.requests() if r["action"] == action)

    def mutating(self) -> int:
        return sum(1 for r in self.sim.requests() if r["method"] != "GET")

    def event_reasons(self, name: str = "orders") -> list[str]:
        return [e["reason"] for e in self.kube.events(NS) if e["involvedObject"]["name"] == name]


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with kube_api(namespaces=[NS, "default"]) as kube:
        kube.create_secret(NS, "evs", {"accessKey": AK, "secretKey": SK})
        yield World(kube)


async def test_aligned_resource_becomes_ready_without_mutating_calls(world: World) -> None:
    world.kube.create(rg(primary="az1.dc1"))
    async with world.operator():
        await wait_for(lambda: world.condition("Ready").get("status") == "True", 5)
    status = world.status()
    assert status["currentPrimaryAZ"] == "az1.dc1"
    assert status["phase"] == "Ready"
    assert world.mutating() == 0
    # kopf kept its hands off the resource: only /status was patched, by us.
    patches = world.kube.requests_to("PATCH")
    assert patches and all(request.subresource == "status" for request in patches)


async def test_flip_switches_over_once_with_events(world: World) -> None:
    world.kube.create(rg(primary="az1.dc1"))
    async with world.operator():
        await wait_for(lambda: world.status().get("phase") == "Ready", 5)
        world.kube.patch(NS, "orders", {"spec": {"primaryAZ": "az2.dc2"}})
        await wait_for(lambda: world.status().get("phase") == "SwitchingOver", 5)
        await wait_for(lambda: world.status().get("lastOperation", {}).get("result") == "Succeeded", 10)
        await wait_for(lambda: world.condition("Ready").get("status") == "True", 5)
        # The event follows the status write that records the outcome.
        await wait_for(lambda: "SwitchoverSucceeded" in world.event_reasons(), 5)
    status = world.status()
    assert world.reverses() == 1
    assert status["currentPrimaryAZ"] == "az2.dc2"
    assert status["observedGeneration"] == (world.kube.get(NS, "orders") or {})["metadata"]["generation"]
    reasons = world.event_reasons()
    assert reasons == ["SwitchoverStarted", "SwitchoverSucceeded"]
    operation_id = status["lastOperation"]["id"]
    assert all(operation_id in e["message"] for e in world.kube.events(NS))


async def test_restarted_operator_resumes_without_resending(world: World) -> None:
    world.sim.reset({**copy.deepcopy(SEED), "timings": {"switchoverSeconds": 1.5, "copyingSeconds": 0.2}})
    world.kube.create(rg(primary="az2.dc2"))
    async with world.operator():
        await wait_for(lambda: world.status().get("operation", {}).get("state") == "InProgress", 5)
    assert world.reverses() == 1
    assert world.status().get("operation"), "the first process stopped mid-operation"

    async with world.operator():
        await wait_for(lambda: world.status().get("lastOperation", {}).get("result") == "Succeeded", 10)
    assert world.reverses() == 1
    assert world.status()["currentPrimaryAZ"] == "az2.dc2"


async def test_sdrs_flip_switches_over_once_with_events_and_az_names(world: World) -> None:
    world.kube.create(rg("billing", SDRS_GROUP, "az1.dc1", service="SDRS"))
    async with world.operator():
        await wait_for(lambda: world.status("billing").get("phase") == "Ready", 5)
        world.kube.patch(NS, "billing", {"spec": {"primaryAZ": "az2.dc2"}})
        await wait_for(
            lambda: world.status("billing").get("lastOperation", {}).get("result") == "Succeeded", 10
        )
        await wait_for(lambda: "SwitchoverSucceeded" in world.event_reasons("billing"), 5)
    status = world.status("billing")
    assert world.reverses(SDRS_REVERSE) == 1 and world.reverses() == 0
    assert status["currentPrimaryAZ"] == "az2.dc2"  # the AZ of the target station, never "target"
    assert status["service"] == "SDRS"
    assert world.sim.group(SDRS_GROUP)["priorityStation"] == "target"
    assert world.event_reasons("billing") == ["SwitchoverStarted", "SwitchoverSucceeded"]


async def test_sdrs_restarted_operator_follows_the_journaled_job(world: World) -> None:
    world.sim.reset({**copy.deepcopy(SEED), "timings": {"switchoverSeconds": 1.5}})
    world.kube.create(rg("billing", SDRS_GROUP, "az2.dc2", service="SDRS"))
    async with world.operator():
        await wait_for(lambda: world.status("billing").get("operation", {}).get("cloudJobID"), 5)
    job = world.status("billing")["operation"]["cloudJobID"]
    polls = sum(1 for r in world.sim.requests() if r["path"].endswith(f"/jobs/{job}"))

    async with world.operator():
        await wait_for(
            lambda: world.status("billing").get("lastOperation", {}).get("result") == "Succeeded", 10
        )
    assert world.reverses(SDRS_REVERSE) == 1
    assert sum(1 for r in world.sim.requests() if r["path"].endswith(f"/jobs/{job}")) > polls


async def test_one_broken_resource_does_not_stop_the_others(world: World) -> None:
    world.kube.create(rg(name="orders", primary="az2.dc2", secret="missing"))
    world.kube.create(rg(name="payments", group=GROUP2, primary="az2.dc2"))
    async with world.operator():
        await wait_for(lambda: world.condition("Stalled", "orders").get("reason") == "CredentialsNotFound", 5)
        await wait_for(lambda: world.status("payments").get("currentPrimaryAZ") == "az2.dc2", 10)
        await wait_for(lambda: world.condition("Ready", "payments").get("status") == "True", 5)
    assert "missing" in world.condition("Stalled", "orders")["message"]
    assert {r["group"] for r in world.sim.requests() if r["action"] == REVERSE} == {GROUP2}
    assert "CredentialsNotFound" in world.event_reasons("orders")


async def test_drift_is_corrected_at_the_next_resync(world: World) -> None:
    world.kube.create(rg(primary="az1.dc1"))
    async with world.operator():
        await wait_for(lambda: world.status().get("phase") == "Ready", 5)
        world.sim.set_primary(GROUP, "az2.dc2")
        await wait_for(lambda: world.reverses() == 1, 5)
        await wait_for(lambda: world.status().get("lastOperation", {}).get("result") == "Succeeded", 10)
    assert world.status()["currentPrimaryAZ"] == "az1.dc1"
    assert world.reverses() == 1


async def test_deleting_the_resource_never_touches_the_cloud(world: World) -> None:
    world.kube.create(rg(primary="az1.dc1"))
    async with world.operator():
        await wait_for(lambda: world.status().get("phase") == "Ready", 5)
        world.kube.delete(NS, "orders")
        await wait_for(lambda: world.kube.get(NS, "orders") is None, 5)
    assert world.mutating() == 0
    versions = [v for v in world.kube.versions(NS, "orders") if v is not None]
    assert versions and not any(v["metadata"].get("finalizers") for v in versions)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_metrics_endpoint_after_a_switchover(world: World) -> None:
    world.settings = world.settings.model_copy(update={"metrics_port": _free_port()})
    world.kube.create(rg(primary="az2.dc2"))
    async with world.operator():
        await wait_for(lambda: world.condition("Ready").get("status") == "True", 10)
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{world.settings.metrics_port}/metrics")).text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("azswitch_operations_total", (("action", "Switchover"), ("result", "Succeeded")))] == 1
    assert samples[("azswitch_groups", (("phase", "Ready"),))] == 1
    assert samples[("azswitch_groups", (("phase", "SwitchingOver"),))] == 0
    assert samples[("azswitch_replication_healthy", (("name", "orders"), ("namespace", NS)))] == 1
    assert samples[("azswitch_cloud_requests_total", (("code", "200"), ("operation", "switchover")))] == 1
    assert samples[("azswitch_operations_in_flight", ())] == 0
    assert samples[("azswitch_operation_duration_seconds_count", (("action", "Switchover"),))] == 1


async def test_a_zone_drain_moves_the_selected_group_and_reports_itself(world: World) -> None:
    db = rg(primary="az1.dc1")
    db["metadata"]["labels"] = {"tier": "db"}
    world.kube.create(db)
    world.kube.create(rg("payments", GROUP2, "az1.dc1"))
    drain = {
        "apiVersion": "azswitch.io/v1alpha1",
        "kind": "ZoneDrain",
        "metadata": {"name": "az1-outage"},
        "spec": {"zone": "az1.dc1", "selector": {"matchLabels": {"tier": "db"}}, "comment": "INC-4711"},
    }
    async with world.operator():
        await wait_for(lambda: world.status().get("phase") == "Ready", 5)
        world.kube.create(drain, resource=ZD)

        def drained() -> bool:
            status = (world.kube.get(None, "az1-outage", resource=ZD) or {}).get("status") or {}
            return status.get("phase") == "Drained"

        await wait_for(drained, 15)
        status = world.status()
        assert (status["currentPrimaryAZ"], status["drainedBy"]) == ("az2.dc2", "az1-outage")
        assert world.kube.get(NS, "orders")["spec"]["primaryAZ"] == "az1.dc1"  # type: ignore[index]
        assert world.status("payments")["currentPrimaryAZ"] == "az1.dc1"
        drain_status = (world.kube.get(None, "az1-outage", resource=ZD) or {})["status"]
        assert (
            drain_status["matchedGroups"],
            drain_status["drainedGroups"],
            drain_status["blockedGroups"],
        ) == (
            1,
            1,
            0,
        )
        ready = drain_status["conditions"][0]
        assert (ready["type"], ready["status"]) == ("Ready", "True")
        reasons = [
            e["reason"] for e in world.kube.events("default") if e["involvedObject"]["kind"] == "ZoneDrain"
        ]
        assert "DrainStarted" in reasons and "Drained" in reasons

        world.kube.delete(None, "az1-outage", resource=ZD)
        await wait_for(
            lambda: world.status().get("currentPrimaryAZ") == "az1.dc1" and "drainedBy" not in world.status(),
            15,
        )
    assert world.reverses() == 2
