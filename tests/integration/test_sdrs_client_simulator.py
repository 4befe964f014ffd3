"""The SDRS client against the simulator over real HTTP: what the operator relies on, nothing scripted by hand.

The client is built as the operator builds it (``CloudConnections.backend("SDRS", …)``, AK/SK or an IAM token)
and talks over TCP to the aiohttp ``SimulatorServer``, which shares nothing with ``azswitch.cloud`` but the pure
signing helper. The simulator's request log is the proof: paths, bodies (the station the simulator moved the
group to), exact counts. ``tests/unit/test_sdrs_client.py`` pins the client's logic on scripted answers, and
``test_sdrs_oracle.py`` pins its requests against the official SDK.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from azswitch.cloud import CloudConnections, RetryPolicy, SdrsClient, TokenAuth
from azswitch.cloud.api import Progress
from azswitch.dev.simulator import ManualClock, Simulator, SimulatorServer
from azswitch.errors import CloudRejected, CloudThrottled, CloudUnavailable, GroupNotFound
from azswitch.observation import GroupState, Replication
from azswitch.reconcile import Credentials

PROJECT = "0123456789abcdef0123456789abcdef"
AK, SK = "AKINTEGRATION000000", "SKINTEGRATION00000000000000000000000000"
USER, PASSWORD, DOMAIN = "operator", "operator-password-0000", "acme"
SOURCE, TARGET = "eu-west-0a", "eu-west-0b"
BILLING = "5ac0a2e4-6b1f-4c52-9e0b-2f3c7d8e9a10"
LEGACY = "5ac0a2e4-6b1f-4c52-9e0b-2f3c7d8e9a11"  # post-upgrade: null health fields
DISABLED = "5ac0a2e4-6b1f-4c52-9e0b-2f3c7d8e9a12"  # protection disabled
FLEET = 1203  # more than one page of 1000

ACTION = "POST /v1/{project_id}/server-groups/{id}/action"
LIST = "GET /v1/{project_id}/server-groups"
SHOW = "GET /v1/{project_id}/server-groups/{id}"


def _group(gid: str, name: str, **fields: Any) -> dict[str, Any]:
    return {"projectID": PROJECT, "id": gid, "name": name, "sourceAZ": SOURCE, "targetAZ": TARGET, **fields}


SEED: dict[str, Any] = {
    "projects": [{"id": PROJECT, "name": "eu-west-0"}],
    "credentials": [{"accessKey": AK, "secretKey": SK}],
    "users": [{"name": USER, "password": PASSWORD, "domain": DOMAIN}],
    "sdrsGroups": [
        _group(BILLING, "billing"),
        _group(LEGACY, "legacy", postUpgrade=True),
        _group(DISABLED, "disabled", status="available"),
        *(_group(f"fleet-{i:05d}", f"fleet-{i}") for i in range(FLEET)),
    ],
    "timings": {"switchoverSeconds": 5, "failoverSeconds": 5, "reprotectSeconds": 5},
}

pytestmark = pytest.mark.asyncio(loop_scope="module")


class Cloud:
    def __init__(self, sim: Simulator, server: SimulatorServer, connections: CloudConnections) -> None:
        self.sim, self.server, self.connections = sim, server, connections

    def client(self) -> SdrsClient:
        client = self.connections.backend("SDRS", self.server.url, PROJECT, Credentials(AK, SK, None))
        assert isinstance(client, SdrsClient)
        return client

    def count(self, key: str) -> int:
        return self.sim.request_counts().get(key, 0)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served() -> AsyncIterator[Cloud]:
    sim = Simulator(SEED, clock=ManualClock(), wall_clock=time.time)

    async def no_wait(_seconds: float) -> None:
        return None

    retry = RetryPolicy(
        max_attempts=3, base_delay=0.1, max_delay=1.0, max_total=60.0, jitter=0.0, sleep=no_wait
    )
    async with SimulatorServer(sim) as server, CloudConnections(retry=retry, rate=1000, burst=1000) as pool:
        yield Cloud(sim, server, pool)


@pytest.fixture
def cloud(served: Cloud) -> Cloud:
    served.sim.reset()
    return served


async def test_list_pages_through_every_group_with_limit_and_offset(cloud: Cloud) -> None:
    groups = await cloud.client().list_groups()
    assert len(groups) == FLEET + 3 and len({g.id for g in groups}) == FLEET + 3
    offsets = [r["path"] for r in cloud.sim.requests() if r["key"] == LIST]
    assert cloud.count(LIST) == 2, offsets


async def test_adopting_every_listed_group_costs_no_read_beyond_the_listing(cloud: Cloud) -> None:
    # SDRS names both AZs on the protection group itself: learning the AZ pairs of a whole fleet from the
    # shared listing costs the listing's pages and nothing per group (issue 16).
    groups = await cloud.client().list_groups()
    before = cloud.sim.request_counts()
    zones = [await cloud.client().availability_zones(group) for group in groups]
    assert cloud.sim.request_counts() == before
    assert all(len(pair) == 2 for pair in zones) and len(zones) == FLEET + 3
    assert cloud.sim.kind_counts() == {"LIST": 2}


async def test_show_maps_into_the_neutral_view_with_az_names(cloud: Cloud) -> None:
    client = cloud.client()
    group = await client.get_group(BILLING)
    zones = await client.availability_zones(group)
    view = client.view(group, zones, group.updated_at or group.created_at)  # type: ignore[arg-type]
    assert (view.state, view.primary_az, view.replication, view.healthy) == (
        GroupState.PROTECTED,
        SOURCE,
        Replication.ACTIVE,
        True,
    )
    assert view.availability_zones == (SOURCE, TARGET)


async def test_post_upgrade_group_reads_with_null_health(cloud: Cloud) -> None:
    client = cloud.client()
    group = await client.get_group(LEGACY)
    assert (group.health_status, group.replication_status, group.protected_status) == (None, None, None)
    view = client.view(group, await client.availability_zones(group), group.created_at)  # type: ignore[arg-type]
    assert view.healthy and view.primary_az == SOURCE


async def test_a_missing_group_is_group_not_found(cloud: Cloud) -> None:
    with pytest.raises(GroupNotFound) as caught:
        await cloud.client().get_group("5ac0a2e4-0000-4000-8000-000000000000")
    assert (caught.value.status, caught.value.code) == (400, "SDRS.1013")
    assert caught.value.request_id


async def test_switchover_and_back_one_reverse_each_followed_by_its_job(cloud: Cloud) -> None:
    client = cloud.client()
    handle = await client.start_switchover(BILLING, TARGET)
    assert handle is not None
    assert (await client.follow(handle)).progress is Progress.RUNNING
    cloud.sim.advance(6)
    assert (await client.follow(handle)).progress is Progress.SUCCEEDED
    group = await client.get_group(BILLING)
    assert (group.status, group.priority_station, group.primary_az) == ("protected", "target", TARGET)
    # Already there: nothing is sent.
    assert await client.start_switchover(BILLING, TARGET) is None
    assert cloud.count(f"{ACTION} reverse-server-group") == 1

    back = await client.start_switchover(BILLING, SOURCE)
    assert back is not None and back != handle
    cloud.sim.advance(6)
    assert (await client.follow(back)).progress is Progress.SUCCEEDED
    assert (await client.get_group(BILLING)).priority_station == "source"
    assert cloud.count(f"{ACTION} reverse-server-group") == 2


async def test_a_failed_job_carries_the_clouds_code_and_reason(cloud: Cloud) -> None:
    client = cloud.client()
    cloud.sim.fail_next(
        BILLING, "reverse", error_code="SDRS.1319", fail_reason="production server not stopped"
    )
    handle = await client.start_switchover(BILLING, TARGET)
    assert handle is not None
    cloud.sim.advance(6)
    outcome = await client.follow(handle)
    assert outcome.progress is Progress.FAILED
    assert outcome.message == "SDRS.1319: production server not stopped"
    assert (await client.get_group(BILLING)).status == "error-reversing"
    # The client starts nothing new from an error status.
    with pytest.raises(CloudRejected, match="not sent"):
        await client.start_switchover(BILLING, TARGET)
    assert cloud.count(f"{ACTION} reverse-server-group") == 1


async def test_failover_then_reprotect(cloud: Cloud) -> None:
    client = cloud.client()
    handle = await client.start_failover(BILLING, TARGET)
    assert handle is not None
    cloud.sim.advance(6)
    assert (await client.follow(handle)).progress is Progress.SUCCEEDED
    group = await client.get_group(BILLING)
    assert (group.status, group.primary_az, group.replication_status) == (
        "failed-over",
        TARGET,
        "active-stopped",
    )
    again = await client.start_reprotect(BILLING)
    assert again is not None
    cloud.sim.advance(6)
    assert (await client.follow(again)).progress is Progress.SUCCEEDED
    group = await client.get_group(BILLING)
    assert (group.status, group.primary_az) == ("protected", TARGET)
    assert cloud.count(f"{ACTION} failover-server-group") == cloud.count(f"{ACTION} start-server-group") == 1


async def test_protection_disabled_is_never_enabled_by_a_reprotect(cloud: Cloud) -> None:
    with pytest.raises(CloudRejected, match="not sent"):
        await cloud.client().start_reprotect(DISABLED)
    assert cloud.count(f"{ACTION} start-server-group") == 0


async def test_throttling_is_retried_with_retry_after_and_5xx_reads_are_retried(cloud: Cloud) -> None:
    client = cloud.client()
    cloud.sim.set_faults({"throttle": {"count": 2, "retryAfter": 1}, "match": {"method": "POST"}})
    assert await client.start_switchover(BILLING, TARGET) is not None
    reverses = [r for r in cloud.sim.requests() if r["action"] == "reverse-server-group"]
    assert [r["status"] for r in reverses] == [429, 429, 200]
    cloud.sim.clear_faults()

    cloud.sim.set_faults({"errorRate": 1.0, "errorStatus": 503, "match": {"method": "GET"}})
    with pytest.raises(CloudUnavailable):
        await client.get_group(BILLING)
    assert cloud.count(SHOW) >= 3  # one before the reverse, then every attempt of this read
    cloud.sim.clear_faults()

    cloud.sim.set_faults({"throttle": {"count": 5, "retryAfter": 1}, "match": {"method": "GET"}})
    with pytest.raises(CloudThrottled):
        await client.get_group(BILLING)
    cloud.sim.clear_faults()


async def test_a_5xx_on_a_reverse_is_never_resent(cloud: Cloud) -> None:
    client = cloud.client()
    cloud.sim.set_faults({"errorRate": 1.0, "errorStatus": 500, "match": {"method": "POST"}})
    with pytest.raises(CloudUnavailable):
        await client.start_switchover(BILLING, TARGET)
    cloud.sim.clear_faults()
    assert cloud.count(f"{ACTION} reverse-server-group") == 1


async def test_iam_token_auth_works_as_for_evs(cloud: Cloud) -> None:
    http = cloud.connections.http(cloud.server.url)
    auth = TokenAuth(
        http=http,
        iam_endpoint=cloud.server.url,
        username=USER,
        password=PASSWORD,
        domain_name=DOMAIN,
        project_id=PROJECT,
    )
    client = SdrsClient(
        http,
        project_id=PROJECT,
        auth=auth,
        retry=RetryPolicy(max_attempts=1),
        limiter=cloud.connections.limiter(cloud.server.url, PROJECT),
    )
    group = await client.get_group(BILLING)
    assert group.id == BILLING
    assert [r["auth"] for r in cloud.sim.requests() if r["key"] == SHOW] == ["token"]
