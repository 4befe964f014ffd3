"""The SDRS client over a scripted transport: paths, bodies, stations, jobs, paging, error mapping.

The client is built the way the operator builds it (``CloudConnections.backend("SDRS", …)``) with only the
transport swapped for ``httpx.MockTransport``; time is fake (``RetryPolicy`` gets an injected sleep and clock).
What the official SDK would send for the same calls is pinned separately (``tests/integration/
test_sdrs_oracle.py``); the client against the simulator over real HTTP in ``tests/integration``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from azswitch.cloud import CloudAPI, CloudConnections, OperationHandle, RetryPolicy, SdrsClient
from azswitch.cloud.api import Progress
from azswitch.cloud.registry import BACKENDS
from azswitch.errors import (
    CloudRejected,
    CloudThrottled,
    CloudUnavailable,
    ConfigError,
    GroupNotFound,
    OutcomeUnknown,
)
from azswitch.reconcile import Credentials

ENDPOINT = "https://sdrs.eu-west-0.myhuaweicloud.com"
PROJECT = "0123456789abcdef0123456789abcdef"
GROUP = "c1a3f5e7-0000-4000-8000-000000000001"
JOB = "2c9eb2c0-7b4e-4b88-bd1b-7d2a1a3c9e01"
AK, SK = "AKEXAMPLE0000000000", "SKEXAMPLE0000000000000000000000000000000"
SOURCE, TARGET = "eu-west-0a", "eu-west-0b"
BASE = f"/v1/{PROJECT}"
GROUP_PATH = f"{BASE}/server-groups/{GROUP}"
ACTION_PATH = f"{GROUP_PATH}/action"


def server_group(**fields: Any) -> dict[str, Any]:
    return {
        "id": GROUP,
        "name": "pg-billing",
        "status": "protected",
        "source_availability_zone": SOURCE,
        "target_availability_zone": TARGET,
        "priority_station": "source",
        "protected_status": "started",
        "replication_status": "active",
        "health_status": "normal",
        "created_at": "2019-05-22 08:16:54.413",
        **fields,
    }


def sdrs_error(status: int, code: str, message: str = "refused", **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, json={"error": {"code": code, "message": message}})


class Cloud:
    """A scripted SDRS: the group as it stands, a job, and optional canned answers per (method, path)."""

    def __init__(self, **group: Any) -> None:
        self.group = server_group(**group)
        self.job: dict[str, Any] = {
            "job_id": JOB,
            "status": "RUNNING",
            "entities": {"server_group_id": GROUP},
        }
        self.answers: dict[tuple[str, str], list[httpx.Response | type[Exception]]] = {}
        self.requests: list[httpx.Request] = []

    def script(self, method: str, path: str, *answers: httpx.Response | type[Exception]) -> None:
        self.answers[(method, path)] = list(answers)

    def sent(self, method: str = "POST") -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        canned = self.answers.get((request.method, request.url.path))
        if canned:
            answer = canned.pop(0) if len(canned) > 1 else canned[0]
            if isinstance(answer, type):
                raise answer("scripted", request=request)  # type: ignore[call-arg]
            return answer
        if request.method == "GET" and request.url.path == GROUP_PATH:
            return httpx.Response(200, json={"server_group": self.group})
        if request.method == "POST" and request.url.path == ACTION_PATH:
            return httpx.Response(200, json={"job_id": JOB})
        if request.method == "GET" and request.url.path == f"{BASE}/jobs/{JOB}":
            return httpx.Response(200, json=self.job)
        return sdrs_error(400, "SDRS.1013", "protection group not found")


Factory = Callable[[Cloud], Awaitable[SdrsClient]]


@pytest.fixture
async def make_client() -> AsyncIterator[Factory]:
    pools: list[CloudConnections] = []
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def make(cloud: Cloud) -> SdrsClient:
        pool = CloudConnections(
            transport=httpx.MockTransport(cloud),
            retry=RetryPolicy(max_attempts=3, base_delay=1, max_delay=2, max_total=30, jitter=0, sleep=sleep),
            rate=1000,
            burst=1000,
        )
        pools.append(pool)
        client = pool.backend("SDRS", ENDPOINT, PROJECT, Credentials(AK, SK, None))
        assert isinstance(client, SdrsClient)
        return client

    yield make
    for pool in pools:
        await pool.aclose()


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)


# --- reads ----------------------------------------------------------------------------------------------------


async def test_get_group_path_headers_and_model(make_client: Factory) -> None:
    cloud = Cloud()
    client = await make_client(cloud)
    group = await client.get_group(GROUP)
    (request,) = cloud.requests
    assert (request.method, request.url.path, request.url.query) == ("GET", GROUP_PATH, b"")
    assert request.headers["X-Project-Id"] == PROJECT
    assert request.headers["Authorization"].startswith("SDK-HMAC-SHA256 Access=" + AK)
    assert (group.id, group.primary_az, group.status) == (GROUP, SOURCE, "protected")
    assert await client.availability_zones(group) == [SOURCE, TARGET]


@pytest.mark.parametrize("code", ["SDRS.1013", "SDRS.0207"])
async def test_a_missing_group_is_400_with_a_code_and_becomes_group_not_found(
    make_client: Factory, code: str
) -> None:
    cloud = Cloud()
    cloud.script("GET", GROUP_PATH, sdrs_error(400, code, "The protection group does not exist."))
    client = await make_client(cloud)
    with pytest.raises(GroupNotFound) as caught:
        await client.get_group(GROUP)
    assert (caught.value.status, caught.value.code) == (400, code)
    assert "does not exist" in str(caught.value)
    assert len(cloud.requests) == 1  # permanent: not retried


async def test_other_400_codes_are_rejections_with_the_clouds_words(make_client: Factory) -> None:
    cloud = Cloud()
    cloud.script("POST", ACTION_PATH, sdrs_error(400, "SDRS.1029", "Planned failover failed."))
    client = await make_client(cloud)
    with pytest.raises(CloudRejected) as caught:
        await client.reverse(GROUP, "target")
    assert isinstance(caught.value, CloudRejected) and not isinstance(caught.value, GroupNotFound)
    assert caught.value.code == "SDRS.1029" and "Planned failover failed." in str(caught.value)


@pytest.mark.parametrize(
    ("answer", "error", "read_attempts", "action_attempts"),
    [
        pytest.param(
            sdrs_error(500, "SDRS.0008", "network timeout"), CloudUnavailable, 3, 1, id="500-SDRS.0008"
        ),
        pytest.param(sdrs_error(503, "SDRS.0404"), CloudUnavailable, 3, 1, id="503"),
        pytest.param(sdrs_error(429, "APIGW.0308", **{"Retry-After": "2"}), CloudThrottled, 3, 3, id="429"),
        pytest.param(httpx.ReadTimeout, CloudUnavailable, 3, 1, id="read-timeout"),
    ],
)
async def test_transient_errors_retry_reads_and_never_resend_a_reverse(
    make_client: Factory, answer: Any, error: type[Exception], read_attempts: int, action_attempts: int
) -> None:
    cloud = Cloud()
    cloud.script("GET", GROUP_PATH, answer)
    cloud.script("POST", ACTION_PATH, answer)
    client = await make_client(cloud)
    with pytest.raises(error):
        await client.get_group(GROUP)
    assert len(cloud.sent("GET")) == read_attempts
    expected = OutcomeUnknown if answer is httpx.ReadTimeout else error
    with pytest.raises(expected):
        await client.reverse(GROUP, "target")
    assert len(cloud.sent("POST")) == action_attempts


def _paged(total: int, *, honour_offset: bool = True) -> Callable[[httpx.Request], httpx.Response]:
    ids = [f"pg-{i:05d}" for i in range(total)]

    def answer(request: httpx.Request) -> httpx.Response:
        limit = int(request.url.params["limit"])
        offset = int(request.url.params["offset"]) if honour_offset else 0
        page = [server_group(id=i) for i in ids[offset : offset + limit]]
        return httpx.Response(200, json={"server_groups": page, "count": total})

    return answer


@pytest.mark.parametrize(("total", "pages"), [(0, 1), (1, 1), (999, 1), (1000, 1), (1001, 2), (2500, 3)])
async def test_list_groups_pages_with_limit_and_offset(make_client: Factory, total: int, pages: int) -> None:
    cloud = Cloud()
    client = await make_client(cloud)
    client._session._http._transport = httpx.MockTransport(_recording(cloud, _paged(total)))  # type: ignore[attr-defined]
    groups = await client.list_groups()
    assert len(groups) == total and len({g.id for g in groups}) == total
    assert len(cloud.requests) == pages
    assert [(r.url.params["limit"], r.url.params["offset"]) for r in cloud.requests] == [
        ("1000", str(1000 * i)) for i in range(pages)
    ]
    assert all(r.url.path == f"{BASE}/server-groups" for r in cloud.requests)


async def test_list_groups_stops_when_offset_is_ignored(make_client: Factory) -> None:
    cloud = Cloud()
    client = await make_client(cloud)
    client._session._http._transport = httpx.MockTransport(  # type: ignore[attr-defined]
        _recording(cloud, _paged(2500, honour_offset=False))
    )
    groups = await client.list_groups()
    assert len(groups) == 1000 and len(cloud.requests) == 2


async def test_list_groups_passes_documented_filters_and_refuses_others(make_client: Factory) -> None:
    cloud = Cloud()
    client = await make_client(cloud)
    client._session._http._transport = httpx.MockTransport(_recording(cloud, _paged(1)))  # type: ignore[attr-defined]
    await client.list_groups(status="protected", availability_zone=SOURCE)
    params = cloud.requests[0].url.params
    assert (params["status"], params["availability_zone"]) == ("protected", SOURCE)
    with pytest.raises(ConfigError, match="unknown list_groups filter 'offset'"):
        await client.list_groups(offset="5")


def _recording(
    cloud: Cloud, answer: Callable[[httpx.Request], httpx.Response]
) -> Callable[..., httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        cloud.requests.append(request)
        return answer(request)

    return handler


# --- actions: the station is the desired AZ's, and nothing is sent that the group does not call for ------------

SWITCHOVER_ROWS = [
    # (current station, desired AZ) → the body sent, or None for nothing sent
    pytest.param("source", TARGET, "target", id="source-to-target"),
    pytest.param("target", SOURCE, "source", id="target-back-to-source"),
    pytest.param("source", SOURCE, None, id="already-at-source"),
    pytest.param("target", TARGET, None, id="already-at-target"),
    # A station SDRS did not report: computed from the desired AZ, never "the opposite of the current one".
    pytest.param(None, TARGET, "target", id="unknown-station-to-target"),
    pytest.param(None, SOURCE, "source", id="unknown-station-to-source"),
]


@pytest.mark.parametrize(("station", "desired", "sent"), SWITCHOVER_ROWS)
async def test_switchover_sends_the_station_of_the_desired_az(
    make_client: Factory, station: str | None, desired: str, sent: str | None
) -> None:
    cloud = Cloud(priority_station=station)
    client = await make_client(cloud)
    handle = await client.start_switchover(GROUP, desired)
    posts = cloud.sent("POST")
    if sent is None:
        assert handle is None and posts == []
    else:
        (post,) = posts
        assert post.url.path == ACTION_PATH
        assert body(post) == {"reverse-server-group": {"priority_station": sent}}
        assert post.headers["Content-Type"] == "application/json"
        assert handle == OperationHandle(JOB)


@pytest.mark.parametrize(
    "status", ["available", "reversing", "error-reversing", "failed-over", "failing-over", "error"]
)
async def test_switchover_is_not_sent_unless_protected(make_client: Factory, status: str) -> None:
    cloud = Cloud(status=status)
    client = await make_client(cloud)
    with pytest.raises(CloudRejected, match=f"not sent: .*is {status} now"):
        await client.start_switchover(GROUP, TARGET)
    assert cloud.sent("POST") == []


async def test_an_az_outside_the_group_is_refused_before_sending(make_client: Factory) -> None:
    cloud = Cloud()
    client = await make_client(cloud)
    with pytest.raises(CloudRejected, match="'eu-west-0c' is neither source_availability_zone"):
        await client.start_switchover(GROUP, "eu-west-0c")
    assert cloud.sent("POST") == []


async def test_failover_body_and_guard(make_client: Factory) -> None:
    cloud = Cloud(health_status="abnormal")
    client = await make_client(cloud)
    assert await client.start_failover(GROUP, TARGET) == OperationHandle(JOB)
    (post,) = cloud.sent("POST")
    assert body(post) == {"failover-server-group": {}}
    cloud.group["priority_station"] = "target"
    assert await client.start_failover(GROUP, TARGET) is None
    assert len(cloud.sent("POST")) == 1


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("failed-over", "sent"),
        ("protected", None),
        ("reprotecting", None),
        ("available", "refused"),  # start-server-group would *enable* protection: the user's call
        ("error-reprotecting", "refused"),
    ],
)
async def test_reprotect_is_start_server_group_only_after_a_failover(
    make_client: Factory, status: str, outcome: str | None
) -> None:
    cloud = Cloud(status=status, priority_station="target")
    client = await make_client(cloud)
    if outcome == "refused":
        with pytest.raises(CloudRejected, match="not sent"):
            await client.start_reprotect(GROUP)
        assert cloud.sent("POST") == []
        return
    handle = await client.start_reprotect(GROUP)
    if outcome == "sent":
        (post,) = cloud.sent("POST")
        assert body(post) == {"start-server-group": {}}
        assert handle == OperationHandle(JOB)
    else:
        assert handle is None and cloud.sent("POST") == []


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, json={}),
        httpx.Response(200, content=b"not json"),
        httpx.Response(200, json={"job_id": "../../etc"}),
        httpx.Response(202, json={"job_id": None}),
    ],
)
async def test_an_accepted_action_without_a_usable_job_id_is_still_accepted(
    make_client: Factory, answer: httpx.Response
) -> None:
    cloud = Cloud()
    cloud.script("POST", ACTION_PATH, answer)
    client = await make_client(cloud)
    assert await client.start_switchover(GROUP, TARGET) is None  # follow the group; never resend
    assert len(cloud.sent("POST")) == 1


async def test_a_missing_group_on_an_action_is_group_not_found(make_client: Factory) -> None:
    cloud = Cloud()
    cloud.script("POST", ACTION_PATH, sdrs_error(400, "SDRS.1013"))
    client = await make_client(cloud)
    with pytest.raises(GroupNotFound):
        await client.reverse(GROUP, "target")


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "a?b=c", "x" * 200])
async def test_ids_are_validated_before_any_request(make_client: Factory, bad: str) -> None:
    cloud = Cloud()
    client = await make_client(cloud)
    with pytest.raises(ConfigError):
        await client.get_group(bad)
    with pytest.raises(ConfigError):
        await client.get_job(bad)
    assert cloud.requests == []


# --- jobs -----------------------------------------------------------------------------------------------------

JOB_ROWS = [
    pytest.param({"status": "INIT"}, Progress.RUNNING, None, id="init"),
    pytest.param({"status": "RUNNING"}, Progress.RUNNING, None, id="running"),
    pytest.param({"status": "SUCCESS"}, Progress.SUCCEEDED, None, id="success"),
    pytest.param(
        {"status": "FAIL", "error_code": "SDRS.1029", "fail_reason": "Planned failover failed."},
        Progress.FAILED,
        "SDRS.1029: Planned failover failed.",
        id="fail-with-code-and-reason",
    ),
    pytest.param(
        {"status": "FAIL", "error_code": None, "fail_reason": None}, Progress.FAILED, None, id="fail-bare"
    ),
    pytest.param({"status": "PAUSED"}, Progress.RUNNING, None, id="unknown-keeps-following"),
    pytest.param({"status": None}, Progress.RUNNING, None, id="null-keeps-following"),
]


@pytest.mark.parametrize(("job", "progress", "message"), JOB_ROWS)
async def test_follow_reads_the_job(
    make_client: Factory, job: dict[str, Any], progress: Progress, message: str | None
) -> None:
    cloud = Cloud()
    cloud.job.update(job)
    client = await make_client(cloud)
    result = await client.follow(OperationHandle(JOB))
    assert (result.progress, result.message) == (progress, message)
    (request,) = cloud.requests
    assert (request.method, request.url.path) == ("GET", f"{BASE}/jobs/{JOB}")


async def test_a_job_read_is_retried_on_5xx(make_client: Factory) -> None:
    cloud = Cloud()
    cloud.script(
        "GET",
        f"{BASE}/jobs/{JOB}",
        sdrs_error(500, "SDRS.0008"),
        httpx.Response(200, json={"job_id": JOB, "status": "SUCCESS"}),
    )
    client = await make_client(cloud)
    assert (await client.follow(OperationHandle(JOB))).progress is Progress.SUCCEEDED
    assert len(cloud.requests) == 2


# --- the contract ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", [n for n, v in vars(CloudAPI).items() if inspect.isfunction(v) and not n.startswith("_")]
)
def test_sdrs_client_matches_the_cloud_api_protocol(name: str) -> None:
    expected = inspect.signature(getattr(CloudAPI, name))
    actual = inspect.signature(getattr(SdrsClient, name))
    required = [(p.name, p.kind) for p in actual.parameters.values() if p.kind is not p.VAR_KEYWORD]
    assert required == [(p.name, p.kind) for p in expected.parameters.values()]
    assert inspect.iscoroutinefunction(getattr(SdrsClient, name)) == inspect.iscoroutinefunction(
        getattr(CloudAPI, name)
    )


def test_the_registry_serves_sdrs() -> None:
    assert set(BACKENDS) == {"EVS", "SDRS"}
    assert SdrsClient.service == "SDRS"
