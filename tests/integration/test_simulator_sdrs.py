"""The simulator's SDRS protection groups and jobs (cloud-api.md §4, §6.1/6.2) as a client sees them.

Requests go through the in-process httpx transport (one test over real HTTP) and are signed with
``azswitch.signing`` directly — never with ``azswitch.cloud`` — so these tests pin the simulator to
cloud-api.md, not to the project's client. Time is a ``ManualClock``; nothing sleeps.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any

import httpx
import pytest

from azswitch import signing
from azswitch.dev.simulator import (
    DEMO_SEED,
    SDRS_GROUP,
    SDRS_GROUP_ACTION,
    SDRS_GROUPS,
    SDRS_JOB,
    ManualClock,
    SeedError,
    Simulator,
    SimulatorServer,
    SimulatorTransport,
    load_seed,
    parse_seed,
)
from azswitch.dev.simulator.clock import sdk_date
from azswitch.dev.simulator.core import ControlError
from azswitch.dev.simulator.server import banner

PROJECT = "0123456789abcdef0123456789abcdef"
OTHER_PROJECT = "fedcba9876543210fedcba9876543210"
AK, SK = "AKTEST0000000000", "SKTEST000000000000000000000000000000000"
AZ1, AZ2, AZ3 = "az1.dc1", "az2.dc2", "az3.dc3"
PG = "11111111-1111-4111-8111-111111111111"  # protected, production at source (az1), DR az2
IDLE = "pg-idle"  # available (protection disabled), az1/az3
FLIPPED = "pg-flipped"  # protected, production at target (az2)
BROKEN = "pg-broken"  # error-reversing, source az2
NEW = "pg-new"  # post-upgrade: the three health fields are null
FOREIGN = "pg-foreign"  # another project's
EVS_GROUP = "91085433-9499-4a68-b2c6-35072467ccd2"
GROUPS = f"/v1/{PROJECT}/server-groups"
JOBS = f"/v1/{PROJECT}/jobs"
REVERSE_TARGET = {"reverse-server-group": {"priority_station": "target"}}
REVERSE_SOURCE = {"reverse-server-group": {"priority_station": "source"}}
FAILOVER: dict[str, Any] = {"failover-server-group": {}}
START: dict[str, Any] = {"start-server-group": {}}
STOP: dict[str, Any] = {"stop-server-group": {}}
TIMINGS = {
    "switchoverSeconds": 5,
    "failoverSeconds": 4,
    "reprotectSeconds": 6,
    "startSeconds": 2,
    "stopSeconds": 3,
    "tokenLifetimeSeconds": 3600,
}
SEED: dict[str, Any] = {
    "projects": [{"id": PROJECT, "name": "cn-north-4"}, {"id": OTHER_PROJECT, "name": "cn-east-3"}],
    "credentials": [{"accessKey": AK, "secretKey": SK}],
    "users": [{"name": "demo", "password": "pw", "domain": "acme"}],
    "groups": [{"projectID": PROJECT, "id": EVS_GROUP, "availabilityZones": [AZ1, AZ2], "primaryAZ": AZ1}],
    "sdrsGroups": [
        {"projectID": PROJECT, "id": PG, "name": "pg-orders", "sourceAZ": AZ1, "targetAZ": AZ2},
        {
            "projectID": PROJECT,
            "id": IDLE,
            "name": "pg-idle",
            "sourceAZ": AZ1,
            "targetAZ": AZ3,
            "status": "available",
            "replicationStatus": "active-stopped",
        },
        {
            "projectID": PROJECT,
            "id": FLIPPED,
            "name": "billing",
            "sourceAZ": AZ1,
            "targetAZ": AZ2,
            "priorityStation": "target",
        },
        {
            "projectID": PROJECT,
            "id": BROKEN,
            "name": "pg-broken",
            "sourceAZ": AZ2,
            "targetAZ": AZ1,
            "status": "error-reversing",
        },
        {
            "projectID": PROJECT,
            "id": NEW,
            "name": "pg-new",
            "sourceAZ": AZ1,
            "targetAZ": AZ2,
            "postUpgrade": True,
            "createdAt": "2019-05-22 08:16:54.413",
        },
        {"projectID": OTHER_PROJECT, "id": FOREIGN, "name": "pg-orders-2", "sourceAZ": AZ1, "targetAZ": AZ2},
    ],
    "timings": TIMINGS,
}
SERVER_GROUP_FIELDS = {
    "id",
    "name",
    "description",
    "status",
    "progress",
    "source_availability_zone",
    "target_availability_zone",
    "domain_id",
    "domain_name",
    "priority_station",
    "protected_instance_num",
    "replication_num",
    "disaster_recovery_drill_num",
    "protected_status",
    "replication_status",
    "health_status",
    "source_vpc_id",
    "target_vpc_id",
    "test_vpc_id",
    "dr_type",
    "server_type",
    "created_at",
    "updated_at",
    "protection_type",
    "replication_model",
}
GROUP_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$")
JOB_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ACTION_KEY = "POST /v1/{project_id}/server-groups/{id}/action"
DROP = object()  # a seed field left out


class AkSk(httpx.Auth):
    """SDK-HMAC-SHA256 (cloud-api.md §5.2) on top of ``azswitch.signing``."""

    requires_request_body = True

    def __init__(self, date: Callable[[], str]) -> None:
        self.date = date

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["X-Sdk-Date"] = self.date()
        headers = {name.lower(): value for name, value in request.headers.items()}
        names = [n for n in ("content-type", "host", "x-project-id", "x-sdk-date") if n in headers]
        raw_path, _, raw_query = request.url.raw_path.partition(b"?")
        request.headers["Authorization"] = signing.sign_request(
            AK, SK, request.method, raw_path.decode(), raw_query.decode(), headers, names, request.content
        )
        yield request


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sim(clock: ManualClock) -> Simulator:
    return Simulator(SEED, clock=clock, sleep=clock.sleep)


def _client(sim: Simulator, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=SimulatorTransport(sim), base_url="https://sdrs.cn-north-4.myhuaweicloud.com", **kwargs
    )


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(sim, auth=AkSk(lambda: sdk_date(sim.clock.wall()))) as signed:
        yield signed


@pytest.fixture
async def control(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(sim) as unsigned:
        yield unsigned


async def show(client: httpx.AsyncClient, group_id: str = PG) -> dict[str, Any]:
    response = await client.get(f"{GROUPS}/{group_id}")
    assert response.status_code == 200, response.text
    group: dict[str, Any] = response.json()["server_group"]
    return group


async def act(client: httpx.AsyncClient, body: Any, group_id: str = PG) -> httpx.Response:
    return await client.post(f"{GROUPS}/{group_id}/action", json=body)


async def start_job(client: httpx.AsyncClient, body: Any, group_id: str = PG) -> str:
    response = await act(client, body, group_id)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"job_id"}
    job_id: str = response.json()["job_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", job_id)
    return job_id


async def job(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await client.get(f"{JOBS}/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def sdrs_error(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    return response.status_code, body["error"]["code"]


def station(group: dict[str, Any]) -> tuple[str, str]:
    return group["status"], group["priority_station"]


# ------------------------------------------------------------------------------ reads


@pytest.mark.parametrize(
    ("params", "ids", "count"),
    [
        pytest.param({}, [PG, IDLE, FLIPPED, BROKEN, NEW], 5, id="all-in-created-order"),
        pytest.param({"limit": "2"}, [PG, IDLE], 5, id="limit"),
        pytest.param({"limit": "2", "offset": "2"}, [FLIPPED, BROKEN], 5, id="second-page"),
        pytest.param({"offset": "4"}, [NEW], 5, id="last-page"),
        pytest.param({"offset": "9"}, [], 5, id="past-the-end"),
        pytest.param({"limit": "0"}, [], 5, id="limit-0"),
        pytest.param({"status": "protected"}, [PG, FLIPPED, NEW], 3, id="status"),
        pytest.param({"status": "protected", "limit": "1", "offset": "1"}, [FLIPPED], 3, id="status-paged"),
        pytest.param({"name": "ORDERS"}, [PG], 1, id="name-substring-any-case-own-project-only"),
        pytest.param({"name": "pg-"}, [PG, IDLE, BROKEN, NEW], 4, id="name-prefix"),
        pytest.param({"availability_zone": AZ2}, [FLIPPED, BROKEN], 2, id="current-production-az"),
        pytest.param({"availability_zone": AZ3}, [], 0, id="dr-az-is-not-production"),
        pytest.param({"query_type": "status_abnormal"}, [BROKEN], 1, id="status-abnormal"),
        pytest.param({"query_type": "stop_protected"}, [IDLE], 1, id="stop-protected"),
        pytest.param({"query_type": "general"}, [PG, IDLE, FLIPPED, BROKEN, NEW], 5, id="general"),
        pytest.param({"query_type": ""}, [PG, IDLE, FLIPPED, BROKEN, NEW], 5, id="empty-query-type"),
    ],
)
async def test_list_filters_and_pages_with_the_total_count(
    client: httpx.AsyncClient, params: dict[str, str], ids: list[str], count: int
) -> None:
    response = await client.get(GROUPS, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"server_groups", "count"}
    assert ([g["id"] for g in body["server_groups"]], body["count"]) == (ids, count)


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"sort_key": "name"}, id="unknown-parameter"),
        pytest.param({"limit": "1001"}, id="limit-too-big"),
        pytest.param({"limit": "-1"}, id="limit-negative"),
        pytest.param({"limit": "ten"}, id="limit-not-a-number"),
        pytest.param({"offset": "-1"}, id="offset-negative"),
        pytest.param({"query_type": "broken"}, id="unknown-query-type"),
    ],
)
async def test_list_rejects_bad_queries_with_sdrs_0201(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    assert sdrs_error(await client.get(GROUPS, params=params)) == (400, "SDRS.0201")


async def test_show_has_every_documented_field(client: httpx.AsyncClient) -> None:
    group = await show(client)
    assert set(group) == SERVER_GROUP_FIELDS
    assert {k: group[k] for k in SERVER_GROUP_FIELDS - {"domain_id", "source_vpc_id", "target_vpc_id"}} == {
        "id": PG,
        "name": "pg-orders",
        "description": "",
        "status": "protected",
        "progress": 100,
        "source_availability_zone": AZ1,
        "target_availability_zone": AZ2,
        "domain_name": f"domain-{AZ1}-{AZ2}",
        "priority_station": "source",
        "protected_instance_num": 1,
        "replication_num": 1,
        "disaster_recovery_drill_num": 0,
        "protected_status": "started",
        "replication_status": "active",
        "health_status": "normal",
        "test_vpc_id": "",
        "dr_type": "migration",
        "server_type": "ECS",
        "created_at": group["created_at"],
        "updated_at": group["updated_at"],
        "protection_type": None,
        "replication_model": None,
    }
    assert GROUP_TIME.match(group["created_at"]) and GROUP_TIME.match(group["updated_at"])
    assert group["domain_id"] and group["source_vpc_id"] == group["target_vpc_id"]
    assert (await show(client, NEW))["created_at"] == "2019-05-22 08:16:54.413"  # seeded verbatim


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("GET", f"{GROUPS}/ghost", None, id="show-unknown"),
        pytest.param("GET", f"{GROUPS}/{FOREIGN}", None, id="show-other-projects"),
        pytest.param("POST", f"{GROUPS}/ghost/action", REVERSE_TARGET, id="action-unknown"),
        pytest.param("POST", f"{GROUPS}/{FOREIGN}/action", FAILOVER, id="action-other-projects"),
        pytest.param("POST", f"{GROUPS}/{EVS_GROUP}/action", FAILOVER, id="an-evs-group-is-no-sdrs-group"),
    ],
)
async def test_a_missing_group_is_400_sdrs_1013(
    client: httpx.AsyncClient, sim: Simulator, method: str, path: str, body: Any
) -> None:
    response = await client.request(method, path, json=body)
    assert sdrs_error(response) == (400, "SDRS.1013")
    assert sim.jobs() == []


@pytest.mark.parametrize(
    "job_path",
    [
        pytest.param(f"{JOBS}/0123456789abcdef0123456789abcdef", id="unknown"),
        pytest.param("other-project", id="other-projects"),
    ],
)
async def test_an_unknown_job_is_404_sdrs_0404(
    client: httpx.AsyncClient, sim: Simulator, job_path: str
) -> None:
    if job_path == "other-project":
        foreign = sim.sdrs.action(OTHER_PROJECT, FOREIGN, b'{"failover-server-group": {}}')
        job_path = f"{JOBS}/{foreign}"
        assert (await client.get(f"/v1/{OTHER_PROJECT}/jobs/{foreign}")).status_code == 200
    assert sdrs_error(await client.get(job_path)) == (404, "SDRS.0404")


# ------------------------------------------------------------------------------ actions and jobs


async def test_reverse_goes_init_running_success_and_moves_the_station(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    before = await show(client)
    job_id = await start_job(client, REVERSE_TARGET)
    seen = []
    for step in (0, 0.5, 4.49, 0.01):
        clock.advance(step)
        state, group = await job(client, job_id), await show(client)
        seen.append((state["status"], state["end_time"] is None, *station(group), group["progress"]))
    assert seen == [
        ("INIT", True, "reversing", "source", 0),
        ("RUNNING", True, "reversing", "source", 10),
        ("RUNNING", True, "reversing", "source", 99),
        ("SUCCESS", False, "protected", "target", 100),
    ]
    assert group["replication_status"] == "active"
    assert state["job_id"] == job_id
    assert state["job_type"] == "reverseProtectionGroupNoCG"
    assert state["entities"] == {"server_group_id": PG, "sub_jobs": []}
    assert (state["error_code"], state["fail_reason"]) == (None, None)
    assert JOB_TIME.match(state["begin_time"]) and JOB_TIME.match(state["end_time"])
    assert state["begin_time"] < state["end_time"]
    assert group["updated_at"] > before["updated_at"]
    # And back: the station is the desired one, relative to the creation-time AZs.
    back = await start_job(client, REVERSE_SOURCE)
    clock.advance(5)
    assert ((await job(client, back))["status"], station(await show(client))) == (
        "SUCCESS",
        ("protected", "source"),
    )


@pytest.mark.parametrize(
    ("group_id", "body", "current"),
    [
        pytest.param(PG, REVERSE_SOURCE, "source", id="already-source"),
        pytest.param(FLIPPED, REVERSE_TARGET, "target", id="already-target"),
    ],
)
async def test_reverse_to_the_current_station_is_refused(
    client: httpx.AsyncClient, sim: Simulator, group_id: str, body: Any, current: str
) -> None:
    response = await act(client, body, group_id)
    assert sdrs_error(response) == (400, "SDRS.1002")
    assert f"already {current}" in response.json()["error"]["message"]
    assert station(await show(client, group_id)) == ("protected", current)
    assert sim.jobs() == []


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param("available", REVERSE_TARGET, id="reverse-available"),
        pytest.param("failed-over", REVERSE_TARGET, id="reverse-failed-over"),
        pytest.param("reversing", REVERSE_TARGET, id="reverse-reversing"),
        pytest.param("error-failing-over", REVERSE_TARGET, id="reverse-error-failing-over"),
        pytest.param("available", FAILOVER, id="failover-available"),
        pytest.param("failed-over", FAILOVER, id="failover-failed-over"),
        pytest.param("error-reprotecting", FAILOVER, id="failover-error-reprotecting"),
        pytest.param("protected", START, id="start-protected"),
        pytest.param("reprotecting", START, id="start-reprotecting"),
        pytest.param("error-reversing", START, id="start-error-reversing"),
        pytest.param("available", STOP, id="stop-available"),
        pytest.param("failed-over", STOP, id="stop-failed-over"),
        pytest.param("stopping", STOP, id="stop-stopping"),
    ],
)
async def test_actions_in_the_wrong_status_are_sdrs_1002(
    client: httpx.AsyncClient, sim: Simulator, status: str, body: Any
) -> None:
    sim.patch_group(PG, status=status)
    assert sdrs_error(await act(client, body)) == (400, "SDRS.1002")
    assert station(await show(client)) == (status, "source")
    assert sim.jobs() == []


@pytest.mark.parametrize(
    ("status", "body", "busy", "job_type", "seconds", "done", "new_station", "replication", "protection"),
    [
        pytest.param(
            "protected",
            REVERSE_TARGET,
            "reversing",
            "reverseProtectionGroupNoCG",
            5,
            "protected",
            "target",
            "active",
            "started",
            id="reverse",
        ),
        pytest.param(
            "error-reversing",
            REVERSE_TARGET,
            "reversing",
            "reverseProtectionGroupNoCG",
            5,
            "protected",
            "target",
            "active",
            "started",
            id="reverse-retry",
        ),
        pytest.param(
            "protected",
            FAILOVER,
            "failing-over",
            "failoverProtectionGroupNoCG",
            4,
            "failed-over",
            "target",
            "active-stopped",
            "stopped",
            id="failover",
        ),
        pytest.param(
            "error-failing-over",
            FAILOVER,
            "failing-over",
            "failoverProtectionGroupNoCG",
            4,
            "failed-over",
            "target",
            "active-stopped",
            "stopped",
            id="failover-retry",
        ),
        pytest.param(
            "error-reversing",
            FAILOVER,
            "failing-over",
            "failoverProtectionGroupNoCG",
            4,
            "failed-over",
            "target",
            "active-stopped",
            "stopped",
            id="failover-after-failed-reverse",
        ),
        pytest.param(
            "failed-over",
            START,
            "reprotecting",
            "reprotectProtectionGroupNoCG",
            6,
            "protected",
            "source",
            "active",
            "started",
            id="reprotect",
        ),
        pytest.param(
            "error-reprotecting",
            START,
            "reprotecting",
            "reprotectProtectionGroupNoCG",
            6,
            "protected",
            "source",
            "active",
            "started",
            id="reprotect-retry",
        ),
        pytest.param(
            "available",
            START,
            "starting",
            "startProtectionGroupNoCG",
            2,
            "protected",
            "source",
            "active",
            "started",
            id="enable",
        ),
        pytest.param(
            "error-starting",
            {"start-server-group": None},
            "starting",
            "startProtectionGroupNoCG",
            2,
            "protected",
            "source",
            "active",
            "started",
            id="enable-retry-null-body",
        ),
        pytest.param(
            "protected",
            STOP,
            "stopping",
            "stopProtectionGroupNoCG",
            3,
            "available",
            "source",
            "active-stopped",
            "stopped",
            id="disable",
        ),
        pytest.param(
            "error-stopping",
            STOP,
            "stopping",
            "stopProtectionGroupNoCG",
            3,
            "available",
            "source",
            "active-stopped",
            "stopped",
            id="disable-retry",
        ),
    ],
)
async def test_allowed_actions_run_a_job_to_their_end_state(
    client: httpx.AsyncClient,
    sim: Simulator,
    clock: ManualClock,
    status: str,
    body: Any,
    busy: str,
    job_type: str,
    seconds: float,
    done: str,
    new_station: str,
    replication: str,
    protection: str,
) -> None:
    sim.patch_group(PG, status=status)
    job_id = await start_job(client, body)
    assert station(await show(client)) == (busy, "source")
    clock.advance(seconds - 0.01)
    assert ((await job(client, job_id))["status"], (await show(client))["status"]) == ("RUNNING", busy)
    clock.advance(0.01)
    state, group = await job(client, job_id), await show(client)
    assert (state["status"], state["job_type"]) == ("SUCCESS", job_type)
    assert (*station(group), group["replication_status"], group["protected_status"]) == (
        done,
        new_station,
        replication,
        protection,
    )
    assert sim.jobs() == [
        {
            "id": job_id,
            "type": job_type,
            "action": job_type.removesuffix("ProtectionGroupNoCG"),
            "group": PG,
            "projectID": PROJECT,
            "status": "SUCCESS",
            "errorCode": None,
            "failReason": None,
        }
    ]


async def test_failover_flips_whichever_station_is_current_and_reprotect_keeps_it(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    await start_job(client, FAILOVER, FLIPPED)
    clock.advance(4)
    assert station(await show(client, FLIPPED)) == ("failed-over", "source")
    await start_job(client, START, FLIPPED)
    assert (await show(client, FLIPPED))["status"] == "reprotecting"
    clock.advance(6)
    group = await show(client, FLIPPED)
    assert (*station(group), group["replication_status"]) == ("protected", "source", "active")


# ------------------------------------------------------------------------------ failures


@pytest.mark.parametrize(
    ("status", "body", "action", "spec", "failed", "code", "reason"),
    [
        pytest.param(
            "protected",
            REVERSE_TARGET,
            "reverse",
            {"errorCode": "SDRS.1029", "failReason": "servers at the production site are running"},
            "error-reversing",
            "SDRS.1029",
            "servers at the production site are running",
            id="reverse-explicit",
        ),
        pytest.param(
            "protected",
            REVERSE_TARGET,
            "reverse",
            {},
            "error-reversing",
            "SDRS.1029",
            "planned failover",
            id="reverse",
        ),
        pytest.param(
            "protected",
            FAILOVER,
            "failover",
            {},
            "error-failing-over",
            "SDRS.1030",
            "failover",
            id="failover",
        ),
        pytest.param(
            "failed-over",
            START,
            "reprotect",
            {"errorCode": "SDRS.1342"},
            "error-reprotecting",
            "SDRS.1342",
            "re-protection",
            id="reprotect-code-only",
        ),
        pytest.param(
            "available", START, "start", {}, "error-starting", "SDRS.1027", "enabling protection", id="enable"
        ),
        pytest.param("protected", STOP, "stop", {}, "error-stopping", "SDRS.1028", "disabling", id="disable"),
    ],
)
async def test_fail_next_ends_the_next_job_fail_with_its_code_and_reason(
    client: httpx.AsyncClient,
    control: httpx.AsyncClient,
    sim: Simulator,
    clock: ManualClock,
    status: str,
    body: Any,
    action: str,
    spec: dict[str, str],
    failed: str,
    code: str,
    reason: str,
) -> None:
    sim.patch_group(PG, status=status)
    armed = await control.post(f"/_sim/groups/{PG}/fail-next", json={"action": action, **spec})
    assert armed.status_code == 200, armed.text
    assert armed.json()["failNext"][action]["errorCode"] == code
    job_id = await start_job(client, body)
    assert sim.group(PG)["operation"]["willFail"]["errorCode"] == code
    assert sim.group(PG)["failNext"] == {}
    clock.advance(10)
    state, group = await job(client, job_id), await show(client)
    assert (state["status"], state["error_code"]) == ("FAIL", code)
    assert reason in state["fail_reason"]
    assert state["end_time"] is not None
    assert station(group) == (failed, "source")
    assert sim.jobs()[0]["errorCode"] == code


async def test_a_failed_reverse_can_be_retried_from_error_reversing(
    client: httpx.AsyncClient, sim: Simulator, clock: ManualClock
) -> None:
    sim.fail_next(PG, "reverse", error_code="SDRS.1029", fail_reason="boom")
    first = await start_job(client, REVERSE_TARGET)
    clock.advance(5)
    assert ((await job(client, first))["fail_reason"], station(await show(client))) == (
        "boom",
        ("error-reversing", "source"),
    )
    second = await start_job(client, REVERSE_TARGET)  # fail-next was used up by the first job
    clock.advance(5)
    assert ((await job(client, second))["status"], station(await show(client))) == (
        "SUCCESS",
        ("protected", "target"),
    )
    assert [(j["id"], j["status"]) for j in sim.jobs()] == [(first, "FAIL"), (second, "SUCCESS")]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param({"action": "sync"}, 400, id="evs-only-action"),
        pytest.param({"action": "reverse", "failureDetail": "37000212"}, 400, id="evs-field"),
        pytest.param({"action": "reverse", "errorCode": 1029}, 400, id="code-not-a-string"),
        pytest.param({"errorCode": "SDRS.1029"}, 400, id="no-action"),
        pytest.param({"action": "reverse"}, 200, id="minimal"),
    ],
)
async def test_fail_next_control_body_for_sdrs_groups(
    control: httpx.AsyncClient, body: dict[str, Any], status: int
) -> None:
    response = await control.post(f"/_sim/groups/{PG}/fail-next", json=body)
    assert response.status_code == status, response.text


def test_fail_next_python_arguments_follow_the_groups_service(sim: Simulator) -> None:
    with pytest.raises(ControlError) as caught:
        sim.fail_next(PG, "reverse", "37000212")
    assert caught.value.status == 400
    with pytest.raises(ControlError):
        sim.fail_next(EVS_GROUP, "reverse", error_code="SDRS.1029")
    assert sim.fail_next(EVS_GROUP, "reverse")["failNext"] == {"reverse": "37000212"}
    assert sim.fail_next(PG, "start", fail_reason="no pairs")["failNext"] == {
        "start": {"errorCode": "SDRS.1027", "failReason": "no pairs"}
    }


@pytest.mark.parametrize(
    ("down", "body", "setup_status", "outcome", "code"),
    [
        pytest.param(
            AZ1, REVERSE_TARGET, "protected", "error-reversing", "SDRS.1029", id="reverse-production-down"
        ),
        pytest.param(AZ2, REVERSE_TARGET, "protected", "error-reversing", "SDRS.1029", id="reverse-dr-down"),
        pytest.param(
            AZ2, FAILOVER, "protected", "error-failing-over", "SDRS.1030", id="failover-to-a-down-az"
        ),
        pytest.param(AZ1, FAILOVER, "protected", "failed-over", None, id="failover-away-from-a-down-az"),
        pytest.param(
            AZ1, START, "failed-over", "error-reprotecting", "SDRS.1032", id="reprotect-old-site-down"
        ),
        pytest.param(AZ3, REVERSE_TARGET, "protected", "protected", None, id="unrelated-az"),
    ],
)
async def test_a_job_that_ends_during_an_az_outage(
    client: httpx.AsyncClient,
    control: httpx.AsyncClient,
    clock: ManualClock,
    sim: Simulator,
    down: str,
    body: Any,
    setup_status: str,
    outcome: str,
    code: str | None,
) -> None:
    sim.patch_group(PG, status=setup_status)
    job_id = await start_job(client, body)
    clock.advance(1)
    outage = await control.post("/_sim/az-outage", json={"az": down, "faultLevel": "2"})
    assert (PG in outage.json()["groups"]) is (down != AZ3)
    clock.advance(10)
    state = await job(client, job_id)
    assert ((await show(client))["status"], state["error_code"]) == (outcome, code)
    assert state["status"] == ("FAIL" if code else "SUCCESS")
    if code:
        assert down in state["fail_reason"]


async def test_az_outage_shows_in_health_and_replication_until_it_recovers(
    client: httpx.AsyncClient, control: httpx.AsyncClient, clock: ManualClock
) -> None:
    def health(group: dict[str, Any]) -> tuple[str, str]:
        return group["health_status"], group["replication_status"]

    await control.post("/_sim/az-outage", json={"az": AZ1, "faultLevel": "5"})
    assert health(await show(client)) == ("abnormal", "inactive")  # production AZ down
    assert health(await show(client, FLIPPED)) == ("normal", "inactive")  # only its DR AZ is down
    assert health(await show(client, IDLE)) == ("abnormal", "inactive")  # even with replication stopped
    abnormal = (await client.get(GROUPS, params={"query_type": "status_abnormal"})).json()
    assert [g["id"] for g in abnormal["server_groups"]] == [PG, IDLE, BROKEN]  # NEW: health is null
    recovered = await control.delete(f"/_sim/az-outage/{AZ1}")
    assert recovered.json()["groups"] == [EVS_GROUP, PG, IDLE, FLIPPED, BROKEN, NEW, FOREIGN]
    assert health(await show(client)) == ("normal", "active")
    # A reverse that ended before the outage began is not failed by it (time is settled first).
    job_id = await start_job(client, REVERSE_TARGET)
    clock.advance(5)
    await control.post("/_sim/az-outage", json={"az": AZ2})
    assert (await job(client, job_id))["status"] == "SUCCESS"
    # An outage over before the job ends does not fail it either.
    await control.delete(f"/_sim/az-outage/{AZ2}")
    back = await start_job(client, REVERSE_SOURCE)
    clock.advance(1)
    await control.post("/_sim/az-outage", json={"az": AZ2})
    clock.advance(1)
    await control.delete(f"/_sim/az-outage/{AZ2}")
    clock.advance(3)
    assert (await job(client, back))["status"] == "SUCCESS"


async def test_after_a_failover_away_from_a_down_az_health_stays_abnormal_until_it_recovers(
    client: httpx.AsyncClient, sim: Simulator, clock: ManualClock
) -> None:
    sim.az_outage(AZ1, "5")
    await start_job(client, FAILOVER)
    clock.advance(4)
    group = await show(client)
    assert (*station(group), group["health_status"], group["replication_status"]) == (
        "failed-over",
        "target",
        "abnormal",  # production is in az2 now, but the old site is still out: a re-protect would fail
        "inactive",
    )
    sim.az_recover(AZ1)
    group = await show(client)
    assert (group["health_status"], group["replication_status"], group["protected_status"]) == (
        "normal",
        "active-stopped",
        "stopped",
    )


async def test_post_upgrade_groups_show_null_health_fields_whatever_happens(
    client: httpx.AsyncClient, sim: Simulator, clock: ManualClock
) -> None:
    nulls = ("protected_status", "replication_status", "health_status")

    async def wire() -> list[dict[str, Any]]:
        listed = (await client.get(GROUPS, params={"name": "pg-new"})).json()["server_groups"]
        return [await show(client, NEW), *listed]

    sim.az_outage(AZ1)
    for group in await wire():
        assert {k: group[k] for k in nulls} == dict.fromkeys(nulls)
        assert group["protection_type"] == "replication-pair"
    assert sim.group(NEW)["healthStatus"] == "abnormal"  # the control view still tells
    sim.az_recover(AZ1)
    await start_job(client, FAILOVER, NEW)
    clock.advance(4)
    for group in await wire():
        assert (group["status"], *(group[k] for k in nulls)) == ("failed-over", None, None, None)
    legacy = await show(client)
    assert all(legacy[k] is not None for k in nulls) and legacy["protection_type"] is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(b"{not json", "SDRS.0201", id="malformed-json"),
        pytest.param(b"", "SDRS.0201", id="empty"),
        pytest.param(b"{}", "SDRS.0206", id="no-action"),
        pytest.param(b'["reverse-server-group"]', "SDRS.0206", id="a-list"),
        pytest.param(b'{"teleport-server-group": {}}', "SDRS.0206", id="unknown-action"),
        pytest.param(b'{"os-reverse-replication-consistency-group": null}', "SDRS.0206", id="an-evs-action"),
        pytest.param(
            b'{"stop-server-group": {}, "failover-server-group": {}}', "SDRS.0206", id="two-actions"
        ),
        pytest.param(b'{"reverse-server-group": {}}', "SDRS.0201", id="reverse-without-station"),
        pytest.param(b'{"reverse-server-group": null}', "SDRS.0201", id="reverse-null"),
        pytest.param(
            b'{"reverse-server-group": {"priority_station": "middle"}}', "SDRS.0201", id="bad-station"
        ),
        pytest.param(
            b'{"reverse-server-group": {"priority_station": "target", "force": true}}',
            "SDRS.0201",
            id="reverse-extra-field",
        ),
        pytest.param(
            b'{"failover-server-group": {"force": true}}', "SDRS.0201", id="failover-with-parameters"
        ),
    ],
)
async def test_malformed_action_bodies_are_400(
    client: httpx.AsyncClient, sim: Simulator, body: bytes, code: str
) -> None:
    response = await client.post(f"{GROUPS}/{PG}/action", content=body)
    assert sdrs_error(response) == (400, code)
    assert station(await show(client)) == ("protected", "source")
    assert sim.jobs() == []


# ------------------------------------------------------------------------------ gateway: auth, faults, log


async def test_sdrs_paths_take_tokens_and_aksk_and_check_the_project(
    sim: Simulator, client: httpx.AsyncClient, control: httpx.AsyncClient
) -> None:
    user = {"name": "demo", "password": "pw", "domain": {"name": "acme"}}

    async def token(project: str) -> str:
        body = {
            "auth": {
                "identity": {"methods": ["password"], "password": {"user": user}},
                "scope": {"project": {"id": project}},
            }
        }
        response = await control.post("/v3/auth/tokens", json=body)
        assert response.status_code == 201
        sdrs = [e for e in response.json()["token"]["catalog"] if e["type"] == "sdrs"]
        assert sdrs[0]["endpoints"][0]["url"].endswith(f"/v1/{project}")
        return response.headers["X-Subject-Token"]

    mine, theirs = await token(PROJECT), await token(OTHER_PROJECT)
    by_token = await control.get(f"{GROUPS}/{PG}", headers={"X-Auth-Token": mine})
    assert by_token.status_code == 200 and by_token.json()["server_group"]["id"] == PG
    assert (await client.get(GROUPS, headers={"X-Project-Id": PROJECT})).status_code == 200
    unsigned = await control.get(GROUPS)
    assert (unsigned.status_code, unsigned.json()["error_code"]) == (401, "APIGW.0301")
    foreign = await control.post(f"{GROUPS}/{PG}/action", json=FAILOVER, headers={"X-Auth-Token": theirs})
    assert (foreign.status_code, foreign.json()["error_code"]) == (403, "APIGW.0302")
    mismatch = await client.get(GROUPS, headers={"X-Project-Id": OTHER_PROJECT})
    assert (mismatch.status_code, mismatch.json()["error_code"]) == (400, "APIGW.0201")
    assert (await client.delete(f"{GROUPS}/{PG}")).json()["error_code"] == "APIGW.0101"  # not faked
    sdrs_calls = [r for r in sim.requests() if r["path"].startswith("/v1/")]
    assert [r["auth"] for r in sdrs_calls][:2] == ["token", "aksk"]
    assert sim.group(PG)["status"] == "protected"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("GET", GROUPS, None, id="list"),
        pytest.param("GET", f"{GROUPS}/{PG}", None, id="show"),
        pytest.param("POST", f"{GROUPS}/{PG}/action", REVERSE_TARGET, id="action"),
        pytest.param("GET", f"{JOBS}/0123456789abcdef0123456789abcdef", None, id="job"),
    ],
)
@pytest.mark.parametrize(
    ("faults", "status", "code", "retry_after"),
    [
        pytest.param({"throttle": {"count": 1, "retryAfter": 2.5}}, 429, "APIGW.0308", "3", id="throttle"),
        pytest.param({"errorCount": 1, "errorStatus": 500}, 500, "SDRS.9500", None, id="error-500"),
        pytest.param({"errorCount": 1, "errorStatus": 503}, 503, "SDRS.9500", None, id="error-503"),
    ],
)
async def test_injected_faults_apply_to_sdrs_paths(
    client: httpx.AsyncClient,
    sim: Simulator,
    method: str,
    path: str,
    body: Any,
    faults: dict[str, Any],
    status: int,
    code: str,
    retry_after: str | None,
) -> None:
    sim.set_faults(faults)
    first = await client.request(method, path, json=body)
    assert first.status_code == status
    error = first.json()
    assert (error.get("error_code") or error["error"]["code"]) == code
    assert first.headers.get("Retry-After") == retry_after
    assert sim.jobs() == []  # the fault answered before the cloud saw it
    second = await client.request(method, path, json=body)
    assert second.status_code == (404 if path.startswith(JOBS) else 200)


async def test_faults_match_sdrs_action_keys_and_drops_lose_the_answer(
    client: httpx.AsyncClient, sim: Simulator
) -> None:
    sim.set_faults({"errorCount": 5, "match": {"action": "reverse-server-group"}})
    assert (await act(client, FAILOVER, FLIPPED)).status_code == 200  # not matched
    assert (await act(client, REVERSE_TARGET)).status_code == 503
    sim.set_faults({"drop": {"count": 1, "when": "after"}, "match": {"pathContains": "/server-groups/"}})
    with pytest.raises(httpx.RemoteProtocolError):
        await act(client, REVERSE_TARGET)
    assert sim.group(PG)["status"] == "reversing"  # the cloud acted; the answer was lost
    dropped = [r for r in sim.requests() if r["dropped"]]
    assert [(r["status"], r["action"], r["group"]) for r in dropped] == [(200, "reverse-server-group", PG)]


async def test_request_log_records_and_counts_sdrs_calls(client: httpx.AsyncClient, sim: Simulator) -> None:
    await client.get(GROUPS)
    job_id = await start_job(client, REVERSE_TARGET)
    await client.post(f"{GROUPS}/{PG}/action", content=b"{bad")
    await client.get(f"{JOBS}/{job_id}")
    await client.get(f"{GROUPS}/{PG}")
    log = sim.requests()
    assert [(r["method"], r["template"], r["action"], r["group"], r["status"]) for r in log] == [
        ("GET", SDRS_GROUPS, None, None, 200),
        ("POST", SDRS_GROUP_ACTION, "reverse-server-group", PG, 200),
        ("POST", SDRS_GROUP_ACTION, None, PG, 400),
        ("GET", SDRS_JOB, None, None, 200),
        ("GET", SDRS_GROUP, None, PG, 200),
    ]
    assert {r["project"] for r in log} == {PROJECT}
    assert log[3]["path"] == f"{JOBS}/{job_id}"
    assert sim.request_counts() == {
        "GET /v1/{project_id}/server-groups": 1,
        f"{ACTION_KEY} reverse-server-group": 1,
        ACTION_KEY: 1,
        "GET /v1/{project_id}/jobs/{job_id}": 1,
        "GET /v1/{project_id}/server-groups/{id}": 1,
    }
    assert sim.count("POST", SDRS_GROUP_ACTION, "reverse-server-group") == 1


# ------------------------------------------------------------------------------ control API


async def test_control_views_list_sdrs_groups_beside_evs_ones(control: httpx.AsyncClient) -> None:
    groups = (await control.get("/_sim/groups")).json()
    assert [(g["service"], g["id"]) for g in groups] == [
        ("EVS", EVS_GROUP),
        *(("SDRS", gid) for gid in (PG, IDLE, FLIPPED, BROKEN, NEW, FOREIGN)),
    ]
    flipped = (await control.get(f"/_sim/groups/{FLIPPED}")).json()
    assert {k: flipped[k] for k in ("projectID", "status", "priorityStation", "primaryAZ", "operation")} == {
        "projectID": PROJECT,
        "status": "protected",
        "priorityStation": "target",
        "primaryAZ": AZ2,
        "operation": None,
    }
    assert flipped["availabilityZones"] == [AZ1, AZ2]
    assert (flipped["replicationStatus"], flipped["healthStatus"], flipped["postUpgrade"]) == (
        "active",
        "normal",
        False,
    )
    described = (await control.get("/_sim")).json()
    assert [(g["service"], g["id"], g["primaryAZ"]) for g in described["groups"]][3] == ("SDRS", FLIPPED, AZ2)
    assert {p["id"] for p in described["projects"]} == {PROJECT, OTHER_PROJECT}
    assert described["timings"]["startSeconds"] == 2 and described["timings"]["stopSeconds"] == 3


async def test_control_operation_view_and_jobs_endpoint(
    client: httpx.AsyncClient, control: httpx.AsyncClient, clock: ManualClock
) -> None:
    job_id = await start_job(client, REVERSE_TARGET)
    clock.advance(1)
    operation = (await control.get(f"/_sim/groups/{PG}")).json()["operation"]
    assert operation == {
        "action": "reverse",
        "jobID": job_id,
        "jobType": "reverseProtectionGroupNoCG",
        "phase": "RUNNING",
        "targetStation": "target",
        "elapsedSeconds": 1.0,
        "dueInSeconds": 4.0,
        "willFail": None,
    }
    jobs = (await control.get("/_sim/jobs")).json()
    assert [(j["id"], j["type"], j["group"], j["status"], j["errorCode"]) for j in jobs] == [
        (job_id, "reverseProtectionGroupNoCG", PG, "RUNNING", None)
    ]
    clock.advance(4)
    assert (await control.get("/_sim/jobs")).json()[0]["status"] == "SUCCESS"
    assert (await control.get(f"/_sim/groups/{PG}")).json()["operation"] is None


async def test_patch_forces_fields_and_cancels_the_job(
    client: httpx.AsyncClient, control: httpx.AsyncClient, clock: ManualClock
) -> None:
    job_id = await start_job(client, REVERSE_TARGET)
    changes = {
        "status": "error-reversing",
        "priorityStation": "target",
        "replicationStatus": "copying",
        "healthStatus": "abnormal",
        "name": "renamed",
        "description": "by hand",
    }
    patched = await control.patch(f"/_sim/groups/{PG}", json=changes)
    assert patched.status_code == 200 and patched.json()["operation"] is None
    state = await job(client, job_id)
    assert (state["status"], state["error_code"], state["fail_reason"]) == (
        "FAIL",
        "SDRS.1029",
        "cancelled by the simulator's control API",
    )
    clock.advance(10)  # the cancelled job never lands
    group = await show(client)
    assert (
        group["status"],
        group["priority_station"],
        group["replication_status"],
        group["health_status"],
    ) == (
        "error-reversing",
        "target",
        "copying",
        "abnormal",
    )
    assert (group["name"], group["description"], group["progress"]) == ("renamed", "by hand", 0)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"faultLevel": "2"}, id="evs-only-field"),
        pytest.param({"status": "available-ish"}, id="bad-status"),
        pytest.param({"priorityStation": AZ2}, id="station-is-not-an-az"),
        pytest.param({"replicationStatus": "error"}, id="evs-replication-status"),
        pytest.param({"healthStatus": "fine"}, id="bad-health"),
    ],
)
async def test_patch_rejects_bad_fields(
    control: httpx.AsyncClient, sim: Simulator, changes: dict[str, Any]
) -> None:
    response = await control.patch(f"/_sim/groups/{PG}", json=changes)
    assert response.status_code == 400 and next(iter(changes)) in response.json()["error"]
    assert sim.group(PG)["status"] == "protected"


async def test_primary_moves_the_station_out_of_band(
    client: httpx.AsyncClient, control: httpx.AsyncClient, sim: Simulator
) -> None:
    moved = await control.post(f"/_sim/groups/{PG}/primary", json={"primaryAZ": AZ2})
    assert (moved.status_code, moved.json()["priorityStation"], moved.json()["primaryAZ"]) == (
        200,
        "target",
        AZ2,
    )
    assert station(await show(client)) == ("protected", "target")
    assert (await client.get(GROUPS, params={"availability_zone": AZ2})).json()["count"] == 3
    elsewhere = await control.post(f"/_sim/groups/{PG}/primary", json={"primaryAZ": AZ3})
    assert elsewhere.status_code == 400
    await start_job(client, REVERSE_SOURCE)
    busy = await control.post(f"/_sim/groups/{PG}/primary", json={"primaryAZ": AZ1})
    assert busy.status_code == 409
    assert sim.group(PG)["priorityStation"] == "target"


# ------------------------------------------------------------------------------ seeds


@pytest.mark.parametrize(
    ("group", "messages"),
    [
        pytest.param({"sourceAZ": DROP}, ["sdrsGroups[0].sourceAZ", "Field required"], id="no-source-az"),
        pytest.param({"targetAZ": DROP}, ["sdrsGroups[0].targetAZ", "Field required"], id="no-target-az"),
        pytest.param({"projectID": DROP}, ["sdrsGroups[0].projectID", "Field required"], id="no-project"),
        pytest.param({"sourceAZ": AZ1, "targetAZ": AZ1}, ["targetAZ 'az1.dc1' must differ"], id="same-az"),
        pytest.param({"status": "protecting"}, ["sdrsGroups[0].status"], id="bad-status"),
        pytest.param({"status": "error_reversing"}, ["sdrsGroups[0].status"], id="evs-status"),
        pytest.param({"priorityStation": AZ1}, ["sdrsGroups[0].priorityStation"], id="station-as-az"),
        pytest.param(
            {"replicationStatus": "error"}, ["sdrsGroups[0].replicationStatus"], id="bad-replication"
        ),
        pytest.param({"healthStatus": "ok"}, ["sdrsGroups[0].healthStatus"], id="bad-health"),
        pytest.param({"postUpgrade": "maybe"}, ["sdrsGroups[0].postUpgrade"], id="bad-post-upgrade"),
        pytest.param({"primaryAZ": AZ1}, ["sdrsGroups[0].primaryAZ", "Extra inputs"], id="unknown-key"),
        pytest.param({"projectID": ""}, ["sdrsGroups[0].projectID"], id="empty-project"),
        pytest.param({"id": "a/b"}, ["sdrsGroups[0].id"], id="id-with-slash"),
        pytest.param({"name": "n" * 65}, ["sdrsGroups[0].name"], id="name-too-long"),
    ],
)
def test_seed_validation_names_the_bad_field(group: dict[str, Any], messages: list[str]) -> None:
    fields = {"projectID": PROJECT, "sourceAZ": AZ1, "targetAZ": AZ2, **group}
    document = {"sdrsGroups": [{k: v for k, v in fields.items() if v is not DROP}]}
    with pytest.raises(SeedError) as caught:
        parse_seed(document)
    for message in messages:
        assert message in str(caught.value)


def test_group_ids_are_unique_across_evs_and_sdrs() -> None:
    evs = {"projectID": PROJECT, "id": "same", "availabilityZones": [AZ1, AZ2], "primaryAZ": AZ1}
    sdrs = {"projectID": PROJECT, "id": "same", "sourceAZ": AZ1, "targetAZ": AZ2}
    with pytest.raises(SeedError, match="duplicate groups: same"):
        parse_seed({"groups": [evs], "sdrsGroups": [sdrs]})
    sim = Simulator({"groups": [evs]})
    with pytest.raises(SeedError, match="group same"):
        sim.add_seed({"credentials": [{"accessKey": "AKNEW", "secretKey": "x"}], "sdrsGroups": [sdrs]})
    assert sim.describe()["credentials"] == []  # nothing of the bad seed stayed
    sim = Simulator({"sdrsGroups": [sdrs]})
    with pytest.raises(SeedError, match="group same"):
        sim.add_seed({"groups": [evs]})
    with pytest.raises(SeedError, match="group same"):
        sim.add_seed({"sdrsGroups": [sdrs]})
    assert [g["service"] for g in sim.groups()] == ["SDRS"]


def test_seed_defaults_and_derived_ids() -> None:
    seed = parse_seed(
        {"sdrsGroups": [{"projectID": "p-sdrs", "name": "pg", "sourceAZ": AZ1, "targetAZ": AZ2}]}
    )
    assert seed.project_ids() == ["p-sdrs"]
    sim, again = Simulator(seed), Simulator(seed)
    (view,) = sim.groups()
    assert view["id"] == again.groups()[0]["id"] and view["id"] != "pg"
    assert (view["status"], view["priorityStation"], view["replicationStatus"], view["healthStatus"]) == (
        "protected",
        "source",
        "active",
        "normal",
    )
    assert view["postUpgrade"] is False
    assert sim.describe()["projects"] == [{"id": "p-sdrs", "name": "p-sdrs"}]


async def test_demo_seed_has_an_sdrs_group_next_to_the_evs_ones() -> None:
    sim = Simulator(DEMO_SEED)
    demo = next(g for g in sim.groups() if g["service"] == "SDRS")
    assert (demo["id"], demo["name"], demo["projectID"]) == (
        "5e3f8a2c-1b7d-4c69-8f04-d2a6b9c1e7f3",
        "pg-billing",
        PROJECT,
    )
    assert (demo["availabilityZones"], demo["priorityStation"], demo["status"]) == (
        [AZ1, AZ2],
        "source",
        "protected",
    )
    assert sim.groups()[0]["id"] == EVS_GROUP  # the EVS demo group still comes first


def test_the_banner_names_the_sdrs_endpoint_and_groups() -> None:
    text = banner(load_seed(DEMO_SEED), "http://127.0.0.1:1")
    assert "SDRS endpoint:  http://127.0.0.1:1   (paths /v1/{project_id}/server-groups" in text
    assert "SDRS group:     5e3f8a2c-1b7d-4c69-8f04-d2a6b9c1e7f3 pg-billing" in text


async def test_over_real_http(sim: Simulator, clock: ManualClock) -> None:
    async with (
        SimulatorServer(sim) as server,
        httpx.AsyncClient(
            base_url=server.url, trust_env=False, auth=AkSk(lambda: sdk_date(sim.clock.wall()))
        ) as client,
    ):
        job_id = await start_job(client, REVERSE_TARGET)
        clock.advance(5)
        assert (await job(client, job_id))["status"] == "SUCCESS"
        assert station(await show(client)) == ("protected", "target")
