"""The cloud client against the simulator over real HTTP: what the operator relies on, end to end.

``tests/unit/test_cloud_client.py`` pins the client's logic against scripted ``httpx.MockTransport``
answers. Here nothing is scripted by hand: the client is built exactly as the operator builds it
(``CloudConnections`` with no transport override, AK/SK credentials or an IAM ``TokenAuth``) and talks over
TCP to the aiohttp ``SimulatorServer`` on port 0, which shares nothing with ``azswitch.cloud`` but the pure
``azswitch.signing`` helper. So a wrong path, a body the cloud would not accept, a signature over the wrong
bytes, an error body the client cannot read or a resent switchover shows up here, proved by the simulator's
own request log (exact counts, request ids) rather than by the client's opinion of itself.

Time: the simulator runs on a ``ManualClock`` (steady) with the real wall clock (so the client's
``X-Sdk-Date`` stays valid) and is fast-forwarded through ``POST /_sim/clock``; ``RetryPolicy`` gets a
recording ``sleep`` so retries never wait. One server and connection pool serve the module (building an
httpx client costs ~50 ms of TLS setup) and each test starts from ``Simulator.reset()``; only the
rate-limiter test spends real time (about 0.3 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio

from azswitch.cloud import (
    AkSkAuth,
    CloudConnections,
    ConsistencyGroup,
    EvsClient,
    RetryPolicy,
    TokenAuth,
)
from azswitch.dev.simulator import ManualClock, Simulator, SimulatorServer
from azswitch.dev.simulator.clock import sdk_date
from azswitch.errors import (
    CloudAuthError,
    CloudError,
    CloudForbidden,
    CloudRejected,
    CloudThrottled,
    CloudUnavailable,
    GroupNotFound,
    OutcomeUnknown,
)

PROJECT = "0123456789abcdef0123456789abcdef"
OTHER_PROJECT = "fedcba9876543210fedcba9876543210"
AK, SK = "AKINTEGRATION000000", "SKINTEGRATION00000000000000000000000000"
STS_AK, STS_SK, STS_TOKEN = "AKTEMPORARY00000000", "SKTEMPORARY000000000000000000000000000", "STS-TOKEN-0000"
USER, PASSWORD, DOMAIN = "operator", "operator-password-0000", "acme"

ORDERS = "91085433-9499-4a68-b2c6-35072467ccd2"  # az1 primary, active, two pairs
PAYMENTS = "40df180b-9fe2-471a-8c64-1b758dc84189"  # az2 primary, active
REPORTS = "7c9e6679-7425-40de-944b-e07fc1f90ae7"  # az1/az3, replication paused
BUSY = "0b7a3c64-56f7-4a5b-9f71-1f0c3a2c0b01"  # seeded as reversing: stays so
DEGRADED = "5d1e8c3f-2b44-4e0a-8d7e-6a9b3c2d1e02"  # error, fault level 2, failure detail set
ELSEWHERE = "e15e3a4e-0000-4000-8000-00000000e15e"  # in OTHER_PROJECT
FLEET = ["fleet-0", "fleet-1", "fleet-2"]
#: A name that must survive query encoding and the signature over it: space, &, =, +, %, /, non-ASCII.
ODD_NAME = "Orders & Co = 1+2 %20/ünï"
#: The project's groups as the list API sorts them by default (created_at, newest first): seeded groups are
#: created a second apart in seed order, except those with an explicit (older) createdAt.
NEWEST_FIRST = [*reversed(FLEET), ODD_NAME, "busy", "reports", "payments", "degraded", "orders"]

AZ1, AZ2, AZ3 = "az1.dc1", "az2.dc2", "az3.dc3"
SWITCHOVER = "os-reverse-replication-consistency-group"
FAILOVER = "os-failover-replication-consistency-group"
REPROTECT = "os-reprotect-replication-consistency-group"
SYNC = "os-sync-replication-consistency-group"

# Request-log count keys (the simulator's templates).
GROUPS_T = "/v2/{project_id}/os-vendor-replication-consistency-groups"
LIST = f"GET {GROUPS_T}"
SHOW = f"GET {GROUPS_T}/{{id}}"
ACTION = f"POST {GROUPS_T}/{{id}}/action"
SHOW_PAIR = "GET /v2/{project_id}/os-vendor-replications/{id}"
SHOW_VOLUME = "GET /v2/{project_id}/volumes/{id}"
SHOW_CLOUD_VOLUME = "GET /v2/{project_id}/cloudvolumes/{id}"
ISSUE_TOKEN = "POST /v3/auth/tokens"

ATTEMPTS = 3
BASE_DELAY = 0.1


def _group(name: str, gid: str | None = None, **fields: Any) -> dict[str, Any]:
    group: dict[str, Any] = {
        "projectID": PROJECT,
        "name": name,
        "availabilityZones": [AZ1, AZ2],
        "primaryAZ": AZ1,
        "replicationStatus": "active",
        **fields,
    }
    if gid is not None:
        group["id"] = gid
    return group


SEED: dict[str, Any] = {
    "projects": [{"id": PROJECT, "name": "cn-north-4"}, {"id": OTHER_PROJECT, "name": "cn-east-3"}],
    "credentials": [
        {"accessKey": AK, "secretKey": SK},
        {"accessKey": STS_AK, "secretKey": STS_SK, "securityToken": STS_TOKEN},
    ],
    "users": [{"name": USER, "password": PASSWORD, "domain": DOMAIN}],
    "groups": [
        _group(
            "orders",
            ORDERS,
            description="orders database volumes",
            createdAt="2017-11-28T03:05:10.677939",  # the documented example: no zone suffix
            pairs=[
                {"id": "pair-orders-1", "productionVolumeID": "vol-orders-prod"},
                {"id": "pair-orders-2"},
            ],
        ),
        _group("payments", PAYMENTS, primaryAZ=AZ2),
        _group("reports", REPORTS, availabilityZones=[AZ1, AZ3], replicationStatus="active-stopped"),
        _group("busy", BUSY, status="reversing"),
        _group(
            "degraded",
            DEGRADED,
            status="error",
            replicationStatus="error",
            faultLevel="2",
            failureDetail="37100043",
            createdAt="2024-01-02T03:04:05.000006",
            pairs=[{"id": "pair-degraded-1"}],
        ),
        _group(ODD_NAME),
        *(_group(name, primaryAZ=AZ2) for name in FLEET),
        {**_group("elsewhere", ELSEWHERE), "projectID": OTHER_PROJECT},
    ],
    "timings": {
        "switchoverSeconds": 5,
        "failoverSeconds": 5,
        "reprotectSeconds": 5,
        "syncSeconds": 3,
        "copyingSeconds": 3,
    },
}


pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass(frozen=True)
class Credentials:
    """AK/SK credentials as the reconciler reads them from a Secret (``AkSkCredentials``)."""

    access_key: str
    secret_key: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)


@dataclass
class SleepRecorder:
    """``RetryPolicy.sleep``: records each wait (a Retry-After or a backoff) and returns at once."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@dataclass
class Cloud:
    """One simulator served over TCP, and the operator's connection pool pointing at it."""

    sim: Simulator
    server: SimulatorServer
    connections: CloudConnections
    retry: RetryPolicy
    sleeps: SleepRecorder
    control: httpx.AsyncClient  # the simulator's control API (unauthenticated, never logged)
    signed: httpx.AsyncClient  # raw AK/SK-signed requests, for what the client cannot send

    def client(self, credentials: Credentials = Credentials(AK, SK)) -> EvsClient:
        return self.connections.client(self.server.url, PROJECT, credentials)

    def paged_client(self, page_size: int) -> EvsClient:
        # CloudConnections does not expose page_size: the same shared HTTP client and limiter, built by hand.
        return EvsClient(
            self.connections.http(self.server.url),
            project_id=PROJECT,
            auth=AkSkAuth(AK, SK),
            retry=self.retry,
            limiter=self.connections.limiter(self.server.url, PROJECT),
            page_size=page_size,
        )

    async def advance(self, seconds: float) -> None:
        response = await self.control.post("/_sim/clock", json={"advanceSeconds": seconds})
        response.raise_for_status()

    def counts(self) -> dict[str, int]:
        return self.sim.request_counts()

    def logged(self, key: str) -> list[dict[str, Any]]:
        return [record for record in self.sim.requests() if record["key"] == key]


@contextlib.asynccontextmanager
async def _serve(*, rate: float = 1000.0, burst: int = 1000) -> AsyncIterator[Cloud]:
    """A simulator on a manual steady clock (with the real wall clock, so that the client's X-Sdk-Date stays
    valid), served on port 0, and a ``CloudConnections`` pointing at it whose retries only record sleeps."""
    sim = Simulator(SEED, clock=ManualClock(), wall_clock=time.time)
    sleeps = SleepRecorder()
    retry = RetryPolicy(
        max_attempts=ATTEMPTS, base_delay=BASE_DELAY, max_delay=1.0, max_total=60.0, jitter=0.0, sleep=sleeps
    )
    async with (
        SimulatorServer(sim) as server,
        CloudConnections(retry=retry, rate=rate, burst=burst) as connections,
        httpx.AsyncClient(base_url=server.url, trust_env=False) as control,
        httpx.AsyncClient(base_url=server.url, auth=AkSkAuth(AK, SK), trust_env=False) as signed,
    ):
        yield Cloud(sim, server, connections, retry, sleeps, control, signed)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served() -> AsyncIterator[Cloud]:
    # One server and one connection pool for the module (building an httpx client costs ~50 ms of TLS
    # setup); every test starts from a reset simulator. Simulated time only moves forward, by seconds.
    async with _serve() as cloud:
        yield cloud


@pytest.fixture
def cloud(served: Cloud) -> Cloud:
    served.sim.reset()
    served.sleeps.delays.clear()
    return served


Operation = Callable[[EvsClient], Awaitable[object]]


async def _read(client: EvsClient) -> object:
    return await client.get_group(ORDERS)


async def _switchover(client: EvsClient) -> object:
    await client.switchover(ORDERS)
    return None


OPERATIONS = [
    pytest.param(_read, SHOW, id="read"),
    pytest.param(_switchover, f"{ACTION} {SWITCHOVER}", id="switchover"),
]


def _assert_request_id_logged(cloud: Cloud, error: CloudError, key: str) -> None:
    """The error's request id is the X-Request-Id the simulator logged for the (last) failing request."""
    last = cloud.logged(key)[-1]
    assert error.request_id == last["requestId"]
    assert error.status == last["status"]


# --- 1. every operation end to end -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group_id", "expected"),
    [
        pytest.param(
            ORDERS,
            ConsistencyGroup(
                id=ORDERS,
                name="orders",
                description="orders database volumes",
                status="available",
                priority_station=AZ1,
                replication_model="hypermetro",
                replication_status="active",
                replication_ids=["pair-orders-1", "pair-orders-2"],
                created_at=datetime(2017, 11, 28, 3, 5, 10, 677939, tzinfo=UTC),
                updated_at=None,
                failure_detail=None,
                fault_level="0",
            ),
            id="healthy-naive-timestamp-null-updated-at",
        ),
        pytest.param(
            DEGRADED,
            ConsistencyGroup(
                id=DEGRADED,
                name="degraded",
                description="",
                status="error",
                priority_station=AZ1,
                replication_model="hypermetro",
                replication_status="error",
                replication_ids=["pair-degraded-1"],
                created_at=datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
                updated_at=None,
                failure_detail="37100043",
                fault_level="2",
            ),
            id="error-fault-level-2-failure-detail",
        ),
    ],
)
async def test_get_group_parses_every_field_and_the_wire_quirks(
    cloud: Cloud, group_id: str, expected: ConsistencyGroup
) -> None:
    # The quirks really are on the wire ...
    raw = (
        await cloud.signed.get(f"/v2/{PROJECT}/os-vendor-replication-consistency-groups/{group_id}")
    ).json()
    wire = raw["replication_consistency_group"]
    assert wire["updated_at"] is None
    assert isinstance(wire["fault_level"], str)
    assert "+" not in wire["created_at"]
    assert not wire["created_at"].endswith("Z")
    # ... and the client turns them into an aware UTC datetime, None and a string.
    group = await cloud.client().get_group(group_id)
    assert group == expected
    assert group.created_at is not None
    assert group.created_at.tzinfo is UTC
    assert cloud.counts()[SHOW] == 2


@pytest.mark.parametrize(
    ("filters", "page_size", "names", "pages"),
    [
        pytest.param({}, 1000, NEWEST_FIRST, 1, id="9-groups-default-page-size-one-request"),
        pytest.param({}, 4, NEWEST_FIRST, 3, id="9-groups-pages-of-4"),
        pytest.param({}, 3, NEWEST_FIRST, 4, id="9-groups-pages-of-3-then-an-empty-page"),
        pytest.param({}, 1, NEWEST_FIRST, 10, id="9-groups-pages-of-1"),
        pytest.param(
            {"priority_station": AZ2}, 3, [*reversed(FLEET), "payments"], 2, id="priority-station-paged"
        ),
        pytest.param({"status": "reversing"}, 3, ["busy"], 1, id="status"),
        pytest.param({"name": "orders"}, 3, ["orders"], 1, id="name"),
        pytest.param({"name": ODD_NAME}, 3, [ODD_NAME], 1, id="name-with-reserved-and-non-ascii-characters"),
        pytest.param({"volume_id": "vol-orders-prod"}, 3, ["orders"], 1, id="volume-id"),
        pytest.param(
            {"changes_since": "2020-01-01T00:00:00+00:00"},
            3,
            NEWEST_FIRST[:-1],
            3,
            id="changes-since-with-offset",
        ),
        pytest.param(
            {"sort_key": "name", "sort_dir": "asc", "priority_station": AZ2},
            1,
            [*FLEET, "payments"],
            5,
            id="sorted-by-name-pages-of-1",
        ),
        pytest.param({"name": "nothing-by-this-name"}, 3, [], 1, id="no-match"),
    ],
)
async def test_list_groups_filters_and_pages(
    cloud: Cloud, filters: dict[str, str], page_size: int, names: list[str], pages: int
) -> None:
    client = cloud.client() if page_size == 1000 else cloud.paged_client(page_size)
    groups = await client.list_groups(**filters)
    # In the server's order, each exactly once, none from the other project.
    assert [g.name for g in groups] == names
    assert cloud.counts() == {LIST: pages}


@pytest.mark.parametrize(
    ("group_id", "faults", "zones", "counts"),
    [
        pytest.param(
            ORDERS, None, [AZ1, AZ2], {SHOW: 1, SHOW_PAIR: 2, SHOW_VOLUME: 4}, id="two-pairs-four-volumes"
        ),
        pytest.param(REPORTS, None, [AZ1, AZ3], {SHOW: 1, SHOW_PAIR: 1, SHOW_VOLUME: 2}, id="az1-az3"),
        pytest.param(
            ORDERS,
            {"errorCount": 100, "errorStatus": 404, "match": {"pathContains": "/volumes/"}},
            [AZ1, AZ2],
            {SHOW: 1, SHOW_PAIR: 2, SHOW_VOLUME: 4, SHOW_CLOUD_VOLUME: 4},
            id="volumes-404-falls-back-to-cloudvolumes",
        ),
    ],
)
async def test_discover_availability_zones_via_pairs_and_volumes(
    cloud: Cloud, group_id: str, faults: dict[str, Any] | None, zones: list[str], counts: dict[str, int]
) -> None:
    if faults is not None:
        cloud.sim.set_faults(faults)
    assert await cloud.client().discover_availability_zones(group_id) == zones
    assert cloud.counts() == counts


async def test_discovery_reuses_a_group_just_read(cloud: Cloud) -> None:
    client = cloud.client()
    group = await client.get_group(ORDERS)
    assert await client.discover_availability_zones(ORDERS, group=group) == [AZ1, AZ2]
    assert cloud.counts() == {SHOW: 1, SHOW_PAIR: 2, SHOW_VOLUME: 4}, "the group is not read a second time"
    # A group that is not the one asked about is not trusted: it is read.
    assert await client.discover_availability_zones(REPORTS, group=group) == [AZ1, AZ3]
    assert cloud.counts() == {SHOW: 2, SHOW_PAIR: 3, SHOW_VOLUME: 6}


#: A lifecycle step: an action to send, or seconds to fast-forward; then the group must show
#: (status, replication_status, priority_station).
Step = tuple[str | float, tuple[str, str, str]]


@pytest.mark.parametrize(
    ("group_id", "steps"),
    [
        pytest.param(
            ORDERS,
            [
                ("switchover", ("reversing", "active", AZ1)),
                (4.9, ("reversing", "active", AZ1)),
                (0.1, ("available", "copying", AZ2)),
                (3, ("available", "active", AZ2)),
            ],
            id="switchover-reversing-copying-active-primary-flipped",
        ),
        pytest.param(
            PAYMENTS,
            [
                ("failover", ("failovering", "active", AZ2)),
                (5, ("failovered", "active-stopped", AZ1)),
                ("reprotect", ("failovered", "copying", AZ1)),
                (5, ("available", "copying", AZ1)),
                (3, ("available", "active", AZ1)),
            ],
            id="failover-then-reprotect",
        ),
        pytest.param(
            REPORTS,
            [("sync", ("available", "copying", AZ1)), (3, ("available", "active", AZ1))],
            id="sync-paused-group",
        ),
    ],
)
async def test_actions_drive_the_group_through_its_lifecycle(
    cloud: Cloud, group_id: str, steps: list[Step]
) -> None:
    client = cloud.client()
    actions: dict[str, Callable[[str], Awaitable[None]]] = {
        "switchover": client.switchover,
        "failover": client.failover,
        "reprotect": client.reprotect,
        "sync": client.sync,
    }
    keys = {"switchover": SWITCHOVER, "failover": FAILOVER, "reprotect": REPROTECT, "sync": SYNC}
    before = await client.get_group(group_id)
    assert before.updated_at is None
    sent: list[str] = []
    for step, (status, replication_status, primary) in steps:
        if isinstance(step, str):
            await actions[step](group_id)
            sent.append(keys[step])
        else:
            await cloud.advance(step)  # POST /_sim/clock
        group = await client.get_group(group_id)
        assert (group.status, group.replication_status, group.priority_station) == (
            status,
            replication_status,
            primary,
        ), f"after {step!r}"
        assert group.updated_at is not None
        assert group.updated_at.tzinfo is UTC
    # Exactly one request per action sent, each with its own key, and no other action was posted.
    actions_logged = {k: v for k, v in cloud.counts().items() if k.startswith(ACTION)}
    assert actions_logged == {f"{ACTION} {key}": sent.count(key) for key in sent}
    assert cloud.sleeps.delays == []


# --- 2 and 3. faults: exception type, retried or not, status / code / request id -----------------------


@dataclass(frozen=True)
class FaultCase:
    fault: dict[str, Any]
    operation: Operation
    key: str  # the request-log key of the operation
    error: type[CloudError] | None  # None: the call succeeds (after retries)
    status: int | None
    code: str | None
    requests: int
    sleeps: list[float]
    processed: bool | None = None  # for the switchover: did the cloud act on it?


_READ_KEY, _SWITCHOVER_KEY = SHOW, f"{ACTION} {SWITCHOVER}"


def _read_case(fault: dict[str, Any], *args: Any, **kwargs: Any) -> FaultCase:
    return FaultCase(fault, _read, _READ_KEY, *args, **kwargs)


def _action_case(fault: dict[str, Any], *args: Any, **kwargs: Any) -> FaultCase:
    return FaultCase(fault, _switchover, _SWITCHOVER_KEY, *args, **kwargs)


def _errors(status: int, count: int = 100) -> dict[str, Any]:
    return {"errorCount": count, "errorStatus": status}


def _throttle(count: int | None, retry_after: float) -> dict[str, Any]:
    return {"throttle": {"count": count, "retryAfter": retry_after}}


def _drop(when: str) -> dict[str, Any]:
    return {"drop": {"count": 1, "when": when}}


BACKOFF = [BASE_DELAY, 2 * BASE_DELAY]

FAULTS = [
    # 5xx: a read is retried up to max_attempts with backoff; a switchover never (the cloud may have acted).
    pytest.param(
        _read_case(_errors(503, 1), None, None, None, 2, [BASE_DELAY]), id="503-read-retried-recovers"
    ),
    pytest.param(
        _read_case(_errors(503), CloudUnavailable, 503, "EVS.9500", 3, BACKOFF), id="503-read-gives-up"
    ),
    pytest.param(
        _read_case(_errors(500), CloudUnavailable, 500, "EVS.9500", 3, BACKOFF), id="500-read-gives-up"
    ),
    pytest.param(
        _action_case(_errors(503, 1), CloudUnavailable, 503, "EVS.9500", 1, [], processed=False),
        id="503-switchover-not-resent",
    ),
    pytest.param(
        _action_case(_errors(500, 1), CloudUnavailable, 500, "EVS.9500", 1, [], processed=False),
        id="500-switchover-not-resent",
    ),
    # 429: both are retried, after exactly the Retry-After the gateway sent (whole seconds, rounded up).
    pytest.param(_read_case(_throttle(1, 7), None, None, None, 2, [7.0]), id="429-read-waits-retry-after"),
    pytest.param(
        _read_case(_throttle(None, 2.5), CloudThrottled, 429, "APIGW.0308", 3, [3.0, 3.0]),
        id="429-read-gives-up-retry-after-rounded-up",
    ),
    pytest.param(
        _action_case(_throttle(1, 7), None, None, None, 2, [7.0], processed=True),
        id="429-switchover-resent-once-acted-once",
    ),
    pytest.param(
        _action_case(_throttle(None, 1), CloudThrottled, 429, "APIGW.0308", 3, [1.0, 1.0], processed=False),
        id="429-switchover-gives-up",
    ),
    # A connection aborted before the cloud processed the request: the client cannot tell it from one
    # aborted after, so a read is retried and a switchover is OutcomeUnknown, sent exactly once.
    pytest.param(
        _read_case(_drop("before"), None, None, None, 2, [BASE_DELAY]), id="drop-before-read-retried"
    ),
    pytest.param(
        _action_case(_drop("before"), OutcomeUnknown, None, None, 1, [], processed=False),
        id="drop-before-switchover-outcome-unknown-not-acted",
    ),
    pytest.param(_read_case(_drop("after"), None, None, None, 2, [BASE_DELAY]), id="drop-after-read-retried"),
    pytest.param(
        _action_case(_drop("after"), OutcomeUnknown, None, None, 1, [], processed=True),
        id="drop-after-switchover-outcome-unknown-but-reversing",
    ),
]


@pytest.mark.parametrize("case", FAULTS)
async def test_faults_map_to_exceptions_and_retries(cloud: Cloud, case: FaultCase) -> None:
    cloud.sim.set_faults({**case.fault, "match": {"pathContains": ORDERS}})
    client = cloud.client()
    if case.error is None:
        await case.operation(client)
    else:
        with pytest.raises(case.error) as caught:
            await case.operation(client)
        error = caught.value
        assert type(error) is case.error
        assert (error.status, error.code) == (case.status, case.code)
        if case.status is None:
            # No answer came back, so there is no request id to report.
            assert error.request_id is None
            assert cloud.logged(case.key)[-1]["dropped"]
        else:
            _assert_request_id_logged(cloud, error, case.key)
            assert case.code is not None
            assert case.code in str(error)
            assert error.request_id is not None
            assert error.request_id in str(error)
        if isinstance(error, CloudThrottled):
            assert error.retry_after == case.sleeps[-1]
    assert cloud.counts() == {case.key: case.requests}
    assert cloud.sleeps.delays == case.sleeps
    if case.processed is not None:
        state = cloud.sim.group(ORDERS)
        assert state["status"] == ("reversing" if case.processed else "available")
        assert state["primaryAZ"] == AZ1
        # Never reversed twice: one operation in flight, heading for the other AZ.
        assert (state["operation"] or {}).get("targetAZ") == (AZ2 if case.processed else None)


@pytest.mark.parametrize(
    ("operation", "key", "error", "status", "code", "state"),
    [
        pytest.param(
            lambda c: c.get_group("no-such-group"), SHOW, GroupNotFound, 404, "EVS.9404", None,
            id="unknown-group-read",
        ),
        pytest.param(
            lambda c: c.switchover("no-such-group"), f"{ACTION} {SWITCHOVER}", GroupNotFound, 404, "EVS.9404",
            None, id="unknown-group-switchover",
        ),
        pytest.param(
            lambda c: c.get_group(ELSEWHERE), SHOW, GroupNotFound, 404, "EVS.9404", None,
            id="group-of-another-project",
        ),
        pytest.param(
            lambda c: c.switchover(BUSY), f"{ACTION} {SWITCHOVER}", CloudRejected, 400, "EVS.9409",
            (BUSY, "reversing"), id="switchover-of-a-reversing-group",
        ),
        pytest.param(
            lambda c: c.switchover(REPORTS), f"{ACTION} {SWITCHOVER}", CloudRejected, 400, "EVS.9409",
            (REPORTS, "available"), id="switchover-of-a-paused-group",
        ),
        pytest.param(
            lambda c: c.reprotect(ORDERS), f"{ACTION} {REPROTECT}", CloudRejected, 400, "EVS.9409",
            (ORDERS, "available"), id="reprotect-without-failover",
        ),
        pytest.param(
            lambda c: c.failover(BUSY), f"{ACTION} {FAILOVER}", CloudRejected, 400, "EVS.9409",
            (BUSY, "reversing"), id="failover-of-a-reversing-group",
        ),
    ],
)  # fmt: skip
async def test_permanent_errors_are_not_retried(
    cloud: Cloud,
    operation: Operation,
    key: str,
    error: type[CloudError],
    status: int,
    code: str,
    state: tuple[str, str] | None,
) -> None:
    with pytest.raises(error) as caught:
        await operation(cloud.client())
    assert type(caught.value) is error
    assert (caught.value.status, caught.value.code) == (status, code)
    assert code in str(caught.value)
    _assert_request_id_logged(cloud, caught.value, key)
    assert cloud.counts() == {key: 1}
    assert cloud.sleeps.delays == []
    if state is not None:
        group_id, status_after = state
        assert cloud.sim.group(group_id)["status"] == status_after


# --- auth: AK/SK over the wire, failures, clock skew, IAM tokens ------------------------------------------


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        pytest.param(Credentials(AK, SK), None, id="permanent-ak-sk"),
        pytest.param(Credentials(STS_AK, STS_SK, STS_TOKEN), None, id="temporary-ak-sk-security-token"),
        pytest.param(Credentials(AK, "SKWRONG" + SK[7:]), "verify aksk signature fail", id="bad-secret-key"),
        pytest.param(Credentials("AKUNKNOWN0000000000", SK), "does not exist", id="unknown-access-key"),
        pytest.param(
            Credentials(STS_AK, STS_SK, "STS-WRONG-0000"),
            "verify security token fail",
            id="wrong-security-token",
        ),
        pytest.param(
            Credentials(STS_AK, STS_SK), "verify security token fail", id="temporary-key-without-token"
        ),
    ],
)
@pytest.mark.parametrize(("operation", "key"), OPERATIONS)
async def test_ak_sk_auth(
    cloud: Cloud, credentials: Credentials, message: str | None, operation: Operation, key: str
) -> None:
    client = cloud.client(credentials)
    if message is None:
        await operation(client)
        assert {record["auth"] for record in cloud.sim.requests()} == {"aksk"}
    else:
        with pytest.raises(CloudAuthError) as caught:
            await operation(client)
        error = caught.value
        assert (error.status, error.code) == (401, "APIGW.0301")
        assert message in str(error)
        _assert_request_id_logged(cloud, error, key)
        for secret in (credentials.secret_key, credentials.security_token):
            if secret:
                assert secret not in str(error)
                assert secret not in repr(error)
                assert secret not in repr(client)
    # Never retried, a success included.
    assert cloud.counts() == {key: 1}
    assert cloud.sleeps.delays == []


@pytest.mark.parametrize(("operation", "key"), OPERATIONS)
async def test_clock_skew_is_an_auth_error_and_not_retried(operation: Operation, key: str) -> None:
    # Its own simulator: moving a shared one's clock 20 minutes ahead would break every later test.
    async with _serve() as cloud:
        cloud.sim.advance(20 * 60)
        with pytest.raises(CloudAuthError) as caught:
            await operation(cloud.client())
        error = caught.value
        assert (error.status, error.code) == (401, "APIGW.0301")
        assert "signature expired" in str(error)
        _assert_request_id_logged(cloud, error, key)
        assert cloud.counts() == {key: 1}
        assert cloud.sleeps.delays == []


@pytest.mark.parametrize(
    ("age_seconds", "status"),
    [
        pytest.param(0, 200, id="now"),
        pytest.param(14 * 60, 200, id="14-min-old"),
        pytest.param(20 * 60, 401, id="20-min-old"),
        pytest.param(-20 * 60, 401, id="20-min-ahead"),
    ],
)
async def test_pinned_x_sdk_date_and_the_15_minute_window(
    cloud: Cloud, age_seconds: int, status: int
) -> None:
    # AkSkAuth keeps an X-Sdk-Date already on the request and signs it: a correctly signed, stale request.
    response = await cloud.signed.get(
        f"/v2/{PROJECT}/os-vendor-replication-consistency-groups/{ORDERS}",
        headers={"X-Sdk-Date": sdk_date(time.time() - age_seconds), "X-Project-Id": PROJECT},
    )
    assert response.status_code == status
    assert response.headers["X-Request-Id"] == cloud.logged(SHOW)[-1]["requestId"]
    if status == 401:
        body = response.json()
        assert body["error_code"] == "APIGW.0301"
        assert "signature expired" in body["error_msg"]
        assert body["request_id"] == response.headers["X-Request-Id"]


def _token_auth(cloud: Cloud, password: str = PASSWORD, project_id: str = PROJECT) -> TokenAuth:
    return TokenAuth(
        http=cloud.connections.http(cloud.server.url),
        iam_endpoint=cloud.server.url,
        username=USER,
        password=password,
        domain_name=DOMAIN,
        project_id=project_id,
    )


async def test_token_auth_fetches_once_and_refreshes_once_after_revocation(cloud: Cloud) -> None:
    client = cloud.connections.evs(cloud.server.url, PROJECT, _token_auth(cloud))
    # Concurrent first calls share one token fetch.
    await asyncio.gather(*(client.get_group(g) for g in (ORDERS, PAYMENTS, REPORTS, BUSY)))
    await client.list_groups(status="available")
    assert await client.discover_availability_zones(REPORTS) == [AZ1, AZ3]
    await client.sync(REPORTS)
    assert cloud.counts()[ISSUE_TOKEN] == 1
    assert {r["auth"] for r in cloud.sim.requests() if r["key"] != ISSUE_TOKEN} == {"token"}

    assert cloud.sim.revoke_tokens() == 1
    cloud.sim.clear_requests()
    # The revoked token gets 401 APIGW.0307; TokenAuth fetches a new one and resends once. Resending a
    # switchover is safe here: the gateway refused it before the service saw it.
    await client.switchover(ORDERS)
    assert [(r["key"], r["status"]) for r in cloud.sim.requests()] == [
        (f"{ACTION} {SWITCHOVER}", 401),
        (ISSUE_TOKEN, 201),
        (f"{ACTION} {SWITCHOVER}", 200),
    ]
    state = cloud.sim.group(ORDERS)
    assert (state["status"], state["operation"]["targetAZ"]) == ("reversing", AZ2)
    # The new token is reused.
    await client.get_group(ORDERS)
    await client.get_group(PAYMENTS)
    assert cloud.counts() == {f"{ACTION} {SWITCHOVER}": 2, ISSUE_TOKEN: 1, SHOW: 2}
    assert cloud.sleeps.delays == []


async def test_token_auth_wrong_password_is_an_auth_error_without_the_password(cloud: Cloud) -> None:
    wrong = "not-the-password-0000"
    client = cloud.connections.evs(cloud.server.url, PROJECT, _token_auth(cloud, wrong))
    with pytest.raises(CloudAuthError) as caught:
        await client.get_group(ORDERS)
    error = caught.value
    assert (error.operation, error.status) == ("iam_token", 401)
    assert error.code == "401"  # Keystone's numeric code, read as a string
    assert wrong not in str(error)
    _assert_request_id_logged(cloud, error, ISSUE_TOKEN)
    # Neither the token fetch nor the read it was for is retried.
    assert cloud.counts() == {ISSUE_TOKEN: 1}


@pytest.mark.parametrize(
    ("fault", "operation", "key", "error", "counts", "sleeps"),
    [
        pytest.param(
            _drop("before"),
            _read,
            SHOW,
            None,
            {ISSUE_TOKEN: 2, SHOW: 1},
            [BASE_DELAY],
            id="iam-connection-dropped-read-retried",
        ),
        pytest.param(
            _drop("before"),
            _switchover,
            _SWITCHOVER_KEY,
            None,
            {ISSUE_TOKEN: 2, _SWITCHOVER_KEY: 1},
            [BASE_DELAY],
            id="iam-connection-dropped-switchover-retried-and-sent-once",
        ),
        pytest.param(
            _throttle(1, 7),
            _switchover,
            _SWITCHOVER_KEY,
            None,
            {ISSUE_TOKEN: 2, _SWITCHOVER_KEY: 1},
            [7.0],
            id="iam-429-switchover-waits-retry-after",
        ),
        pytest.param(
            _errors(503, 1),
            _read,
            SHOW,
            None,
            {ISSUE_TOKEN: 2, SHOW: 1},
            [BASE_DELAY],
            id="iam-503-read-retried",
        ),
        # Conservative by design (transport.may_retry): a 5xx on a mutating call is never resent, even when
        # it came from IAM and the switchover itself was never sent.
        pytest.param(
            _errors(503, 1),
            _switchover,
            _SWITCHOVER_KEY,
            CloudUnavailable,
            {ISSUE_TOKEN: 1},
            [],
            id="iam-503-switchover-not-retried-never-sent",
        ),
    ],
)
async def test_token_fetch_failures(
    cloud: Cloud,
    fault: dict[str, Any],
    operation: Operation,
    key: str,
    error: type[CloudError] | None,
    counts: dict[str, int],
    sleeps: list[float],
) -> None:
    cloud.sim.set_faults({**fault, "match": {"pathContains": "/v3/auth/tokens"}})
    client = cloud.connections.evs(cloud.server.url, PROJECT, _token_auth(cloud))
    if error is None:
        await operation(client)
    else:
        with pytest.raises(error) as caught:
            await operation(client)
        assert caught.value.operation == "iam_token"
        _assert_request_id_logged(cloud, caught.value, ISSUE_TOKEN)
    assert cloud.counts() == counts
    assert cloud.sleeps.delays == sleeps
    assert cloud.sim.group(ORDERS)["status"] == (
        "reversing" if key == _SWITCHOVER_KEY and not error else "available"
    )


@pytest.mark.parametrize(
    "make_client",
    [
        pytest.param(
            lambda cloud: cloud.connections.client(cloud.server.url, "no-such-project", Credentials(AK, SK)),
            id="ak-sk-unknown-project",
        ),
        pytest.param(
            lambda cloud: cloud.connections.evs(
                cloud.server.url, PROJECT, _token_auth(cloud, project_id=OTHER_PROJECT)
            ),
            id="token-scoped-to-another-project",
        ),
    ],
)
async def test_forbidden_is_permanent_and_not_retried(
    cloud: Cloud, make_client: Callable[[Cloud], EvsClient]
) -> None:
    client = make_client(cloud)
    with pytest.raises(CloudForbidden) as caught:
        await client.get_group(ORDERS)
    assert (caught.value.status, caught.value.code) == (403, "APIGW.0302")
    _assert_request_id_logged(cloud, caught.value, SHOW)
    assert cloud.counts().get(SHOW) == 1
    assert cloud.sleeps.delays == []


# --- 4. the rate limiter, measured at the server -----------------------------------------------------------


async def test_rate_limiter_spaces_a_concurrent_burst() -> None:
    rate, burst, calls = 20.0, 2, 8
    # Real steady time here: the request log's "time" is what shows the spacing.
    sim = Simulator(SEED)
    async with (
        SimulatorServer(sim) as server,
        CloudConnections(rate=rate, burst=burst) as connections,
    ):
        client = connections.client(server.url, PROJECT, Credentials(AK, SK))
        groups = await asyncio.gather(*(client.get_group(ORDERS) for _ in range(calls)))
    assert {g.id for g in groups} == {ORDERS}
    records = sim.requests()
    assert [r["status"] for r in records] == [200] * calls
    times = [float(r["time"]) for r in records]
    assert times == sorted(times)
    # `burst` go at once, then one every 1/rate s: the last one at least (calls - burst)/rate s after the
    # first. Generous slack for the first request's own connect time; no upper bound beyond "not stuck".
    span = times[-1] - times[0]
    expected = (calls - burst) / rate
    assert 0.75 * expected <= span < expected + 5.0
