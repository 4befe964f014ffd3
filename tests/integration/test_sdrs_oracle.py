"""The official Huawei SDRS SDK as an oracle: our ``SdrsClient`` sends what it sends, and the simulator accepts
what it signs.

``huaweicloudsdksdrs`` (with ``huaweicloudsdkcore``) is a test-only dependency; the runtime never imports it.

**Part 1, same requests (no network).** For each SDRS call the operator makes (list with its paging and
filters, show, reverse to either station, failover, start, show job) the official SDK builds and signs its
request, and so does our client; both are compared on method, raw path, query (as a multiset of decoded
key/value pairs: the SDK reuses the *signature's* canonical query string as its URL, so its order is an
artefact of signing that neither the API nor the signature depends on; likewise the SDK writes a space as
``%20`` where httpx writes ``+``), parsed JSON body (the SDK writes ``{"a": {}}``, we write ``{"a":{}}``), and
the headers the gateway needs (``X-Project-Id``, an ``SDK-HMAC-SHA256`` ``Authorization`` with our AK).

How the SDK's request is captured: ``HttpHandler.add_request_handler``, the SDK's documented hook for
observing requests (``ClientBuilder.with_http_handler``). ``HttpClient.do_request_sync`` calls the handler
with the final ``SdkRequest`` (signed, its ``url``/``header_params``/``body`` exactly what it then passes to
``requests``) right before sending; our handler records it and raises ``NotSent``, which the SDK does not
catch, so nothing reaches the network and no SDK internals (``HttpClient._session``, its adapters) are touched.
Our client's requests are recorded by an ``httpx.MockTransport`` under ``CloudConnections(transport=…)``,
after ``AkSkAuth`` signed them.

**Part 2, the simulator accepts the SDK's signed requests.** The SDK (``http://`` endpoints are taken as
given) drives a ``SimulatorServer`` on port 0 (show, list, reverse, show job, in threads while the server runs
in the test's loop), and the simulator's request log shows each call authenticated as ``aksk``. An SDK-signed
reverse with one byte of its body or path changed after signing is refused (401 ``APIGW.0301``) and changes
nothing, while the same capture sent untampered is accepted; an SDK request signed with a wrong SK is refused
too, and changes nothing either.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkcore.http.http_handler import HttpHandler
from huaweicloudsdksdrs.v1 import (
    FailoverProtectionGroupRequestBody,
    ListProtectionGroupsRequest,
    ReverseProtectionGroupRequestBody,
    ReverseProtectionGroupRequestParams,
    ShowJobStatusRequest,
    ShowProtectionGroupRequest,
    StartFailoverProtectionGroupRequest,
    StartProtectionGroupRequest,
    StartProtectionGroupRequestBody,
    StartReverseProtectionGroupRequest,
)
from huaweicloudsdksdrs.v1 import SdrsClient as SdkSdrsClient

from azswitch.cloud import AkSkAuth, CloudConnections, RetryPolicy, SdrsClient
from azswitch.cloud.api import MAX_PAGE_SIZE
from azswitch.dev.simulator import ManualClock, Simulator, SimulatorServer
from azswitch.reconcile import Credentials

ENDPOINT = "https://sdrs.eu-west-0.myhuaweicloud.com"
PROJECT = "0123456789abcdef0123456789abcdef"
AK, SK = "AKORACLE00000000000", "SKORACLE000000000000000000000000000000000"
WRONG_SK = "SKWRONG0000000000000000000000000000000000"
GROUP = "5ac0a2e4-6b1f-4c52-9e0b-2f3c7d8e9a01"
OTHER = "5ac0a2e4-6b1f-4c52-9e0b-2f3c7d8e9a02"  # one byte away from GROUP: the path-tamper target
JOB = "2c9eb2c07b4e4b88bd1b7d2a1a3c9e01"
SOURCE, TARGET = "eu-west-0a", "eu-west-0b"
#: A name that has to survive query encoding on both sides: space, &, =, +, %, /, non-ASCII.
ODD_NAME = "pg billing & co = 1+2 %20/ünï"

SHOW = "GET /v1/{project_id}/server-groups/{id}"
LIST = "GET /v1/{project_id}/server-groups"
REVERSE = "POST /v1/{project_id}/server-groups/{id}/action reverse-server-group"
SHOW_JOB = "GET /v1/{project_id}/jobs/{job_id}"


# --- what was sent, on either side -------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """One request as the cloud would see it: what the oracle compares, plus the headers."""

    method: str
    path: str  # raw (percent-encoded), without the query
    query: tuple[tuple[str, str], ...]  # decoded pairs, sorted: a multiset
    body: Any  # parsed JSON, or None when there is no body
    headers: dict[str, str]  # names lower-cased

    def wire(self) -> tuple[str, str, tuple[tuple[str, str], ...], Any]:
        return (self.method, self.path, self.query, self.body)


def _sent(method: str, url: str, headers: dict[str, str], body: bytes | str | None) -> Sent:
    parts = urlsplit(url)
    raw = body.encode() if isinstance(body, str) else body
    return Sent(
        method=method.upper(),
        path=parts.path,
        query=tuple(sorted(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)))),
        body=json.loads(raw) if raw else None,
        headers={name.lower(): value for name, value in headers.items()},
    )


def _from_httpx(request: httpx.Request) -> Sent:
    return _sent(request.method, str(request.url), dict(request.headers), request.content)


# --- the official SDK --------------------------------------------------------------------------------------


class NotSent(Exception):
    """Raised by ``SdkRecorder`` to stop the SDK after it signed a request and before it sends it."""


class SdkRecorder:
    """An ``HttpHandler`` request handler: records every signed ``SdkRequest``; stops it if ``abort``."""

    def __init__(self, *, abort: bool) -> None:
        self.abort = abort
        self.requests: list[Any] = []  # huaweicloudsdkcore.sdk_request.SdkRequest

    def __call__(self, **kwargs: Any) -> None:
        request = kwargs["request"]
        self.requests.append(request)
        if self.abort:
            raise NotSent(request.url)

    def sent(self) -> list[Sent]:
        return [_sent(r.method, r.url, dict(r.header_params), r.body) for r in self.requests]


@contextlib.contextmanager
def sdk_client(endpoint: str, recorder: SdkRecorder, *, sk: str = SK) -> Iterator[Any]:
    """The official SDRS client as a user would build it: ``BasicCredentials`` with the project, one endpoint,
    no retries, short timeouts, the recorder as its HTTP handler."""
    client = (
        SdkSdrsClient.new_builder()
        .with_credentials(BasicCredentials(AK, sk, PROJECT))
        .with_endpoints([endpoint])
        .with_http_config(HttpConfig(ignore_ssl_verification=True, retry_times=0, timeout=(5, 10)))
        .with_http_handler(HttpHandler().add_request_handler(recorder))
        .build()
    )
    try:
        yield client
    finally:
        client.close()
        client.get_http_client().executor.shutdown(wait=False)


def _reverse_request(group_id: str, station: str) -> Any:
    params = ReverseProtectionGroupRequestParams(priority_station=station)
    return StartReverseProtectionGroupRequest(
        server_group_id=group_id, body=ReverseProtectionGroupRequestBody(reverse_server_group=params)
    )


# --- our client over a recording transport -----------------------------------------------------------------


def _server_group(gid: str) -> dict[str, Any]:
    return {
        "id": gid,
        "name": gid,
        "status": "protected",
        "source_availability_zone": SOURCE,
        "target_availability_zone": TARGET,
        "priority_station": "source",
        "protected_status": "started",
        "replication_status": "active",
        "health_status": "normal",
        "created_at": "2019-05-22 08:16:54.413",
    }


class Recorder:
    """The ``httpx.MockTransport`` handler: records each request and answers it plausibly (three groups in
    all, paged by ``limit``/``offset``)."""

    groups = [f"pg-{i}" for i in range(3)]

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if request.method == "POST":
            return httpx.Response(200, json={"job_id": JOB})
        if path.endswith("/server-groups"):
            limit = int(request.url.params.get("limit", MAX_PAGE_SIZE))
            offset = int(request.url.params.get("offset", 0))
            page = self.groups[offset : offset + limit]
            return httpx.Response(
                200, json={"server_groups": [_server_group(g) for g in page], "count": len(self.groups)}
            )
        if "/jobs/" in path:
            return httpx.Response(200, json={"job_id": JOB, "status": "RUNNING", "entities": {}})
        return httpx.Response(200, json={"server_group": _server_group(path.rsplit("/", 1)[-1])})

    def sent(self) -> list[Sent]:
        return [_from_httpx(r) for r in self.requests]


async def ours_send(call: Callable[[SdrsClient], Awaitable[object]], *, page_size: int) -> list[Sent]:
    recorder = Recorder()
    async with CloudConnections(transport=httpx.MockTransport(recorder), rate=1000, burst=1000) as pool:
        if page_size == MAX_PAGE_SIZE:
            # Exactly as the operator builds it.
            client = pool.backend("SDRS", ENDPOINT, PROJECT, Credentials(AK, SK, None))
            assert isinstance(client, SdrsClient)
        else:
            # CloudConnections does not expose page_size: the same shared HTTP client and limiter, by hand.
            client = SdrsClient(
                pool.http(ENDPOINT),
                project_id=PROJECT,
                auth=AkSkAuth(AK, SK),
                retry=RetryPolicy(),
                limiter=pool.limiter(ENDPOINT, PROJECT),
                page_size=page_size,
            )
        await call(client)
    return recorder.sent()


def sdk_sends(calls: Sequence[Callable[[Any], object]], endpoint: str = ENDPOINT) -> list[Sent]:
    recorder = SdkRecorder(abort=True)
    with sdk_client(endpoint, recorder) as client:
        for call in calls:
            with pytest.raises(NotSent):
                call(client)
    return recorder.sent()


# --- Part 1: the same requests -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    sdk: Sequence[Callable[[Any], object]]
    ours: Callable[[SdrsClient], Awaitable[object]]
    page_size: int = MAX_PAGE_SIZE


def _list(**query: Any) -> Callable[[Any], object]:
    return lambda sdk: sdk.list_protection_groups(ListProtectionGroupsRequest(**query))


def _sdk_reverse(station: str) -> Callable[[Any], object]:
    return lambda sdk: sdk.start_reverse_protection_group(_reverse_request(GROUP, station))


def _our_reverse(station: str) -> Callable[[SdrsClient], Awaitable[object]]:
    return lambda client: client.reverse(GROUP, station)


CASES = [
    pytest.param(
        Case([_list(limit=MAX_PAGE_SIZE, offset=0)], lambda c: c.list_groups()),
        id="list-no-filter",
    ),
    pytest.param(
        Case(
            [_list(limit=MAX_PAGE_SIZE, offset=0, status="available")],
            lambda c: c.list_groups(status="available"),
        ),
        id="list-status",
    ),
    pytest.param(
        Case(
            [
                _list(
                    limit=MAX_PAGE_SIZE,
                    offset=0,
                    status="protected",
                    name=ODD_NAME,
                    query_type="status_abnormal",
                    availability_zone=SOURCE,
                )
            ],
            lambda c: c.list_groups(
                status="protected", name=ODD_NAME, query_type="status_abnormal", availability_zone=SOURCE
            ),
        ),
        id="list-every-filter-odd-name",
    ),
    pytest.param(
        Case(
            [_list(limit=2, offset=0, status="protected"), _list(limit=2, offset=2, status="protected")],
            lambda c: c.list_groups(status="protected"),
            page_size=2,
        ),
        id="list-two-pages",
    ),
    pytest.param(
        Case(
            [lambda sdk: sdk.show_protection_group(ShowProtectionGroupRequest(server_group_id=GROUP))],
            lambda c: c.get_group(GROUP),
        ),
        id="show",
    ),
    *(
        pytest.param(Case([_sdk_reverse(station)], _our_reverse(station)), id=f"reverse-to-{station}")
        for station in ("source", "target")
    ),
    pytest.param(
        Case(
            [
                lambda sdk: sdk.start_failover_protection_group(
                    StartFailoverProtectionGroupRequest(
                        server_group_id=GROUP,
                        body=FailoverProtectionGroupRequestBody(failover_server_group={}),
                    )
                )
            ],
            lambda c: c.failover(GROUP),
        ),
        id="failover",
    ),
    pytest.param(
        Case(
            [
                lambda sdk: sdk.start_protection_group(
                    StartProtectionGroupRequest(
                        server_group_id=GROUP, body=StartProtectionGroupRequestBody(start_server_group={})
                    )
                )
            ],
            lambda c: c.start(GROUP),
        ),
        id="start",
    ),
    pytest.param(
        Case([lambda sdk: sdk.show_job_status(ShowJobStatusRequest(job_id=JOB))], lambda c: c.get_job(JOB)),
        id="show-job",
    ),
]


@pytest.mark.parametrize("case", CASES)
async def test_our_client_sends_what_the_official_sdk_sends(case: Case) -> None:
    expected = sdk_sends(case.sdk)
    actual = await ours_send(case.ours, page_size=case.page_size)
    assert [s.wire() for s in actual] == [s.wire() for s in expected]
    for request in (*expected, *actual):
        assert request.headers["x-project-id"] == PROJECT
        assert request.headers["authorization"].startswith(f"SDK-HMAC-SHA256 Access={AK}, ")
        assert request.path.startswith(f"/v1/{PROJECT}/")


async def test_the_oracle_tells_requests_apart() -> None:
    """The comparison above is not vacuous: the SDK's requests differ where the calls differ."""
    to_source, to_target, failover, show, job, page_two = sdk_sends(
        [
            lambda sdk: sdk.start_reverse_protection_group(_reverse_request(GROUP, "source")),
            lambda sdk: sdk.start_reverse_protection_group(_reverse_request(GROUP, "target")),
            lambda sdk: sdk.start_failover_protection_group(
                StartFailoverProtectionGroupRequest(
                    server_group_id=GROUP, body=FailoverProtectionGroupRequestBody(failover_server_group={})
                )
            ),
            lambda sdk: sdk.show_protection_group(ShowProtectionGroupRequest(server_group_id=GROUP)),
            lambda sdk: sdk.show_job_status(ShowJobStatusRequest(job_id=GROUP)),
            _list(limit=2, offset=2),
        ]
    )
    assert to_source.body == {"reverse-server-group": {"priority_station": "source"}}
    assert to_source.wire() != to_target.wire()
    assert failover.body == {"failover-server-group": {}}
    assert show.wire() != job.wire() and show.method == "GET" and show.body is None
    assert page_two.query == (("limit", "2"), ("offset", "2"))
    (ours,) = await ours_send(lambda c: c.reverse(GROUP, "source"), page_size=MAX_PAGE_SIZE)
    assert ours.wire() == to_source.wire() != to_target.wire()


# --- Part 2: the simulator accepts the SDK's signed requests -----------------------------------------------


SEED: dict[str, Any] = {
    "projects": [{"id": PROJECT, "name": "eu-west-0"}],
    "credentials": [{"accessKey": AK, "secretKey": SK}],
    "sdrsGroups": [
        {"projectID": PROJECT, "id": gid, "name": name, "sourceAZ": SOURCE, "targetAZ": TARGET}
        for gid, name in ((GROUP, "billing"), (OTHER, "payroll"))
    ],
    "timings": {"switchoverSeconds": 5},
}


@dataclass
class Served:
    sim: Simulator
    server: SimulatorServer

    def groups(self) -> list[dict[str, Any]]:
        return [self.sim.group(GROUP), self.sim.group(OTHER)]


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    # The wall clock is real, so that the SDK's X-Sdk-Date is within the simulator's allowed skew.
    sim = Simulator(SEED, clock=ManualClock(), wall_clock=time.time)
    async with SimulatorServer(sim) as server:
        yield Served(sim, server)


async def test_the_sdk_shows_lists_reverses_and_follows_the_job_on_the_simulator(served: Served) -> None:
    recorder = SdkRecorder(abort=False)
    with sdk_client(served.server.url, recorder) as sdk:

        def call(method: str, request: Any) -> Awaitable[Any]:
            return asyncio.to_thread(getattr(sdk, method), request)

        shown = await call("show_protection_group", ShowProtectionGroupRequest(server_group_id=GROUP))
        assert (shown.server_group.id, shown.server_group.priority_station) == (GROUP, "source")
        listed = await call("list_protection_groups", ListProtectionGroupsRequest(limit=1000, offset=0))
        assert listed.count == 2
        assert [g.id for g in listed.server_groups] == [GROUP, OTHER]
        reversed_ = await call("start_reverse_protection_group", _reverse_request(GROUP, "target"))
        job_id = reversed_.job_id
        assert isinstance(job_id, str) and job_id
        running = await call("show_job_status", ShowJobStatusRequest(job_id=job_id))
        assert (running.job_id, running.status, running.entities.server_group_id) == (job_id, "INIT", GROUP)
        served.sim.advance(6)
        done = await call("show_job_status", ShowJobStatusRequest(job_id=job_id))
        assert (done.status, done.error_code) == ("SUCCESS", None)
        after = await call("show_protection_group", ShowProtectionGroupRequest(server_group_id=GROUP))
        assert (after.server_group.status, after.server_group.priority_station) == ("protected", "target")

    log = served.sim.requests()
    assert [r["key"] for r in log] == [SHOW, LIST, REVERSE, SHOW_JOB, SHOW_JOB, SHOW]
    assert [(r["status"], r["auth"], r["project"]) for r in log] == [(200, "aksk", PROJECT)] * 6
    # What the simulator served is what the SDK signed (the request handler saw the final request).
    assert [r["path"] for r in log] == [s.path for s in recorder.sent()]
    assert served.sim.group(OTHER)["priorityStation"] == "source"


def _tamper_body(url: str, body: bytes) -> tuple[str, bytes]:
    # A space becomes a tab: still valid JSON meaning the same reverse, so only the signature can refuse it.
    assert b'": "target"' in body
    return url, body.replace(b'": "target"', b'":\t"target"', 1)


def _tamper_path(url: str, body: bytes) -> tuple[str, bytes]:
    # The last byte of the group id: the request now names OTHER, a group the simulator would reverse.
    assert url.endswith(f"{GROUP}/action")
    return url.replace(f"{GROUP}/action", f"{OTHER}/action"), body


@pytest.mark.parametrize("tamper", [_tamper_body, _tamper_path], ids=["one-body-byte", "one-path-byte"])
async def test_an_sdk_signed_request_changed_after_signing_is_refused_and_changes_nothing(
    served: Served, tamper: Callable[[str, bytes], tuple[str, bytes]]
) -> None:
    recorder = SdkRecorder(abort=True)
    with sdk_client(served.server.url, recorder) as sdk, pytest.raises(NotSent):
        sdk.start_reverse_protection_group(_reverse_request(GROUP, "target"))
    (signed,) = recorder.requests
    url, body = signed.url, signed.body
    assert isinstance(body, bytes)
    tampered_url, tampered_body = tamper(url, body)
    assert (tampered_url, tampered_body) != (url, body)
    assert (
        sum(a != b for a, b in zip(tampered_url + tampered_body.decode(), url + body.decode(), strict=True))
        == 1
    )
    before = served.groups()

    async with httpx.AsyncClient(trust_env=False) as http:
        refused = await http.request(
            signed.method, tampered_url, headers=signed.header_params, content=tampered_body
        )
        assert refused.status_code == 401
        assert refused.json()["error_code"] == "APIGW.0301"
        assert served.groups() == before
        assert served.sim.jobs() == []
        (record,) = served.sim.requests()
        assert (record["status"], record["auth"]) == (401, None)

        # The same capture, untampered, is accepted: the refusal above was the signature's doing.
        accepted = await http.request(signed.method, url, headers=signed.header_params, content=body)
    assert accepted.status_code == 200, accepted.text
    assert served.sim.group(GROUP)["status"] == "reversing"
    assert [job["group"] for job in served.sim.jobs()] == [GROUP]
    assert served.sim.requests()[-1]["auth"] == "aksk"


@pytest.mark.parametrize(
    ("method", "request_"),
    [
        pytest.param("show_protection_group", ShowProtectionGroupRequest(server_group_id=GROUP), id="show"),
        pytest.param("start_reverse_protection_group", _reverse_request(GROUP, "target"), id="reverse"),
    ],
)
async def test_an_sdk_request_signed_with_a_wrong_sk_is_refused_and_changes_nothing(
    served: Served, method: str, request_: Any
) -> None:
    before = served.groups()
    with (
        sdk_client(served.server.url, SdkRecorder(abort=False), sk=WRONG_SK) as sdk,
        pytest.raises(ClientRequestException) as caught,
    ):
        await asyncio.to_thread(getattr(sdk, method), request_)
    assert (caught.value.status_code, caught.value.error_code) == (401, "APIGW.0301")
    assert served.groups() == before
    assert served.sim.jobs() == []
    (record,) = served.sim.requests()
    assert (record["status"], record["auth"]) == (401, None)
