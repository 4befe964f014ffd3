"""EVS adoption in O(projects + pages): the zone index against the simulator over real HTTP (issue 16).

The client is built as the operator builds it (``CloudConnections.client``: a fresh ``EvsClient`` per call,
sharing the pool, the limiter and the (endpoint, project, access key) zone index) and talks over TCP to the
aiohttp ``SimulatorServer``. Every cost is the simulator's exact request log, never the client's opinion.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import pytest
import pytest_asyncio

from azswitch.cloud import AkSkAuth, CloudConnections, ConsistencyGroup, EvsClient, RetryPolicy
from azswitch.dev.simulator import ManualClock, Simulator, SimulatorServer
from azswitch.errors import CloudThrottled, CloudUnavailable

PROJECT = "0123456789abcdef0123456789abcdef"
AK, SK = "AKZONEINDEX00000000", "SKZONEINDEX0000000000000000000000000000"
AZ1, AZ2, AZ3 = "az1.dc1", "az2.dc2", "az3.dc3"
FLEET = 1000

GROUPS = "GET /v2/{project_id}/os-vendor-replication-consistency-groups"
PAIRS = "GET /v2/{project_id}/os-vendor-replications"
CLOUD_DISKS = "GET /v2/{project_id}/cloudvolumes/detail"
OS_DISKS = "GET /v2/{project_id}/volumes/detail"
SHOW_PAIR = "GET /v2/{project_id}/os-vendor-replications/{id}"
SHOW_VOLUME = "GET /v2/{project_id}/volumes/{id}"

pytestmark = pytest.mark.asyncio(loop_scope="module")


def _seed(groups: int, *, zones_of: Any = None) -> dict[str, Any]:
    def zones(i: int) -> list[str]:
        return zones_of(i) if zones_of else [AZ1, AZ2]

    return {
        "projects": [{"id": PROJECT, "name": "cn-north-4"}],
        "credentials": [{"accessKey": AK, "secretKey": SK}],
        "groups": [
            {
                "projectID": PROJECT,
                "name": f"fleet-{i:05d}",
                "availabilityZones": zones(i),
                "primaryAZ": zones(i)[0],
                "replicationStatus": "active",
            }
            for i in range(groups)
        ],
    }


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)


@dataclass
class Cloud:
    sim: Simulator
    server: SimulatorServer
    connections: CloudConnections
    retry: RetryPolicy
    discovered: list[str]

    def client(self) -> EvsClient:
        return self.connections.client(self.server.url, PROJECT, Credentials(AK, SK))

    def custom_client(self, *, page_size: int = 1000, ids_chunk: int = 60) -> EvsClient:
        # Its own zone index (none passed): smaller pages and chunks than the operator uses.
        return EvsClient(
            self.connections.http(self.server.url),
            project_id=PROJECT,
            auth=AkSkAuth(AK, SK),
            retry=self.retry,
            limiter=self.connections.limiter(self.server.url, PROJECT),
            page_size=page_size,
            ids_chunk=ids_chunk,
        )

    def count(self, key: str) -> int:
        return self.sim.request_counts().get(key, 0)

    def logged(self, key: str) -> list[dict[str, Any]]:
        return [r for r in self.sim.requests() if r["key"] == key]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served() -> AsyncIterator[Cloud]:
    sim = Simulator(_seed(FLEET), clock=ManualClock(), wall_clock=time.time)

    async def no_wait(_seconds: float) -> None:
        return None

    retry = RetryPolicy(
        max_attempts=3, base_delay=0.1, max_delay=1.0, max_total=60.0, jitter=0.0, sleep=no_wait
    )
    discovered: list[str] = []
    async with (
        SimulatorServer(sim) as server,
        CloudConnections(retry=retry, rate=1e6, burst=10_000, on_az_discovery=discovered.append) as pool,
    ):
        yield Cloud(sim, server, pool, retry, discovered)


@pytest_asyncio.fixture(loop_scope="module")
async def cloud(served: Cloud) -> AsyncIterator[Cloud]:
    served.sim.reset()
    served.discovered.clear()
    yield served
    # Every test starts without an index: the next client of the key builds a fresh one.
    index = served.connections.zone_index(served.server.url, PROJECT, AK)
    await index.aclose()


async def _adopt(cloud: Cloud, groups: list[ConsistencyGroup]) -> list[list[str]]:
    # As the reconciler does: a fresh client per resource, many at once.
    return list(await asyncio.gather(*(cloud.client().availability_zones(g) for g in groups)))


# --- adoption cost -----------------------------------------------------------------------------------------


async def test_a_thousand_groups_in_one_project_adopt_in_a_handful_of_listing_pages(cloud: Cloud) -> None:
    groups = await cloud.client().list_groups()
    assert len(groups) == FLEET
    zones = await _adopt(cloud, groups)
    assert zones == [[AZ1, AZ2]] * FLEET
    # A full page of 1000 needs one more, empty, page to be known as the last: groups 2, pairs 2. The
    # 2,000 disks are more than one ids chunk, so the whole disk listing is read: its first page's count
    # (2,000) says one more page, cheaper than 17 ids chunks for the other 1,000.
    pages = math.ceil(FLEET / 1000) + 1
    assert cloud.sim.request_counts() == {GROUPS: pages, PAIRS: pages, CLOUD_DISKS: 2}
    assert cloud.sim.kind_counts() == {"LIST": 2 * pages + 2}
    assert cloud.discovered == ["listing"] * FLEET


async def test_a_hundred_concurrent_lookups_share_one_listing_run(cloud: Cloud) -> None:
    groups = (await cloud.client().list_groups())[:100]
    index = cloud.connections.zone_index(cloud.server.url, PROJECT, AK)
    builds = index.builds
    cloud.sim.clear_requests()
    zones = await _adopt(cloud, groups)
    assert zones == [[AZ1, AZ2]] * 100
    assert cloud.count(PAIRS) == 2 and cloud.count(CLOUD_DISKS) == 2
    assert index.builds == builds + 1
    # ... and later lookups (new clients, the same key) are answered without a request.
    cloud.sim.clear_requests()
    assert await cloud.client().availability_zones(groups[0]) == [AZ1, AZ2]
    assert cloud.sim.request_counts() == {}


async def test_a_group_created_after_the_listing_is_read_the_old_way(cloud: Cloud) -> None:
    first = (await cloud.client().list_groups())[0]
    await cloud.client().availability_zones(first)
    cloud.sim.add_seed(
        {
            "groups": [
                {
                    "projectID": PROJECT,
                    "id": "5a1e0000-0000-4000-8000-000000000001",
                    "name": "late",
                    "availabilityZones": [AZ1, AZ3],
                    "primaryAZ": AZ3,
                }
            ]
        }
    )
    late = await cloud.client().get_group("5a1e0000-0000-4000-8000-000000000001")
    cloud.sim.clear_requests()
    assert await cloud.client().availability_zones(late) == [AZ1, AZ3]
    # The index is fresh (younger than rebuild_after), so it is not rebuilt for one group: pair + 2 volumes.
    assert cloud.sim.request_counts() == {SHOW_PAIR: 1, SHOW_VOLUME: 2}
    assert cloud.discovered == ["listing", "per_group"]


# --- paging and chunking -----------------------------------------------------------------------------------


async def test_paging_across_page_boundaries(cloud: Cloud) -> None:
    cloud.sim.reset(_seed(20, zones_of=lambda i: [AZ1, AZ2] if i % 2 else [AZ2, AZ3]))
    client = cloud.custom_client(page_size=7, ids_chunk=5)
    groups = await client.list_groups()
    cloud.sim.clear_requests()
    zones = [await client.availability_zones(g) for g in groups]
    expected = {g.name: ([AZ1, AZ2] if int(str(g.name)[-5:]) % 2 else [AZ2, AZ3]) for g in groups}
    assert zones == [expected[g.name] for g in groups]
    # 20 pairs in pages of 7: 7, 7, 6. 40 disks: the first page's count (40) leaves 5 more pages, fewer than
    # the 7 chunks of 5 the other 33 would take; the count ends the listing without an empty page.
    assert cloud.sim.request_counts() == {PAIRS: 3, CLOUD_DISKS: 6}
    markers = [parse_qs(_query(r)).get("marker") for r in cloud.logged(PAIRS)]
    assert markers[0] is None and all(markers[1:])


async def test_ids_chunks_when_they_are_cheaper_than_the_whole_listing(cloud: Cloud) -> None:
    cloud.sim.reset(_seed(20))
    client = cloud.custom_client(page_size=3, ids_chunk=10)
    groups = await client.list_groups()
    cloud.sim.clear_requests()
    assert {tuple(await client.availability_zones(g)) for g in groups} == {(AZ1, AZ2)}
    # 40 disks: the first page of 3 says 37 remain, 13 more pages; 4 ids chunks of at most 10 are cheaper.
    disk_calls = cloud.logged(CLOUD_DISKS)
    assert len(disk_calls) == 5
    asked = [_ids(r) for r in disk_calls[1:]]
    assert [len(a) for a in asked] == [10, 10, 10, 7]
    assert len(set().union(*asked)) == 37
    assert cloud.count(PAIRS) == 7  # 20 pairs in pages of 3


async def test_a_small_project_costs_one_pair_page_and_one_ids_request(cloud: Cloud) -> None:
    cloud.sim.reset(_seed(3))
    groups = await cloud.client().list_groups()
    cloud.sim.clear_requests()
    assert [await cloud.client().availability_zones(g) for g in groups] == [[AZ1, AZ2]] * 3
    assert cloud.sim.request_counts() == {PAIRS: 1, CLOUD_DISKS: 1}
    (call,) = cloud.logged(CLOUD_DISKS)
    assert len(_ids(call)) == 6 and "limit" not in _query(call)


# --- the readings the docs leave open ----------------------------------------------------------------------


async def test_without_the_native_disk_listing_the_openstack_one_is_paged(cloud: Cloud) -> None:
    # A region without cloudvolumes/detail (404); volumes/detail ignores ids and sends no count.
    cloud.sim.reset(_seed(40))
    cloud.sim.set_faults(
        {"errorCount": 100, "errorStatus": 404, "match": {"pathContains": "cloudvolumes/detail"}}
    )
    client = cloud.custom_client(page_size=30, ids_chunk=60)
    groups = await client.list_groups()
    cloud.sim.clear_requests()
    assert {tuple(await client.availability_zones(g)) for g in groups} == {(AZ1, AZ2)}
    assert cloud.count(SHOW_PAIR) == 0 and cloud.count(SHOW_VOLUME) == 0
    # 80 disks > 60: a first page (30, no count), then one ids request that comes back unfiltered (default
    # limit 1000: all 80), which locates the rest: nothing more is paged.
    assert cloud.count(CLOUD_DISKS) == 1  # 404: not retried
    assert cloud.count(OS_DISKS) == 2
    assert client.zone_index.builds == 1


# --- errors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "error"),
    [
        pytest.param({"errorCount": 3, "errorStatus": 503}, CloudUnavailable, id="5xx"),
        pytest.param({"throttle": {"count": 3, "retryAfter": 1}}, CloudThrottled, id="429"),
    ],
)
async def test_a_failed_listing_is_the_usual_retryable_error_and_a_later_call_succeeds(
    cloud: Cloud, faults: dict[str, Any], error: type[Exception]
) -> None:
    groups = (await cloud.client().list_groups())[:10]
    cloud.sim.set_faults({**faults, "match": {"pathContains": "os-vendor-replications"}})
    results = await asyncio.gather(
        *(cloud.client().availability_zones(g) for g in groups), return_exceptions=True
    )
    assert all(isinstance(r, error) for r in results), results
    assert cloud.count(PAIRS) == 3  # one run (three attempts) for all ten callers
    assert cloud.discovered == []
    # The faults are spent: the next call runs the listing again, and nothing failed was kept.
    assert await cloud.client().availability_zones(groups[0]) == [AZ1, AZ2]
    assert cloud.count(PAIRS) == 5 and cloud.discovered == ["listing"]


def _query(record: dict[str, Any]) -> str:
    return str(record["query"])


def _ids(record: dict[str, Any]) -> set[str]:
    (raw,) = parse_qs(_query(record))["ids"]
    return {part.strip("'") for part in raw.strip("[]").split(",")}
