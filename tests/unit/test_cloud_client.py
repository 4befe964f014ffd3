"""The EVS client over a scripted transport: error mapping, what is retried, paging, AZ discovery, pooling.

Every test builds its client the way the operator does (``CloudConnections(transport=...).client(...)``) and
only swaps the transport, so the same tests can run against the simulator's in-process transport by
replacing ``httpx.MockTransport(...)``. Time is fake: ``RetryPolicy`` and ``RateLimiter`` get an injected
clock and sleep, so nothing here waits for real.
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from azswitch.cloud import (
    AkSkAuth,
    CloudAPI,
    CloudConnections,
    EvsClient,
    RateLimiter,
    RetryPolicy,
    Timeouts,
)
from azswitch.cloud.transport import RequestHook, parse_error_body, parse_retry_after
from azswitch.errors import (
    MAX_DETAIL_CHARS,
    CloudAuthError,
    CloudError,
    CloudForbidden,
    CloudRejected,
    CloudThrottled,
    CloudUnavailable,
    GroupNotFound,
    OutcomeUnknown,
)
from azswitch.reconcile import Credentials

ENDPOINT = "https://evs.cn-north-4.myhuaweicloud.com"
PROJECT = "0123456789abcdef0123456789abcdef"
GROUP = "91085433-9499-4a68-b2c6-35072467ccd2"
AK = "AKEXAMPLE0000000000"
SK = "SKEXAMPLE0000000000000000000000000000000"
STS = "STSTOKEN0000000000000000000000"
GROUPS_PATH = f"/v2/{PROJECT}/os-vendor-replication-consistency-groups"
GROUP_PATH = f"{GROUPS_PATH}/{GROUP}"
ACTION_PATH = f"{GROUP_PATH}/action"
ATTEMPTS = 3


# --- fakes -------------------------------------------------------------------------------------------------


class FakeTime:
    """A clock that only moves when someone sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.sleep_started: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleep_started.append(self.now)
        self.sleeps.append(seconds)
        self.now += seconds


#: One scripted answer: an httpx exception type (raised as the transport would), a status code (with a
#: generic error body), a (status, code) pair, a ready Response, or a function of the request.
Answer = type[httpx.TransportError] | int | tuple[int, str] | httpx.Response | Callable[[httpx.Request], Any]


def _error(status: int, code: str = "EVS.0001", **headers: str) -> httpx.Response:
    return httpx.Response(
        status, headers=headers, json={"error": {"code": code, "message": f"failed {status}"}}
    )


def _group(group_id: str = GROUP, **fields: Any) -> dict[str, Any]:
    return {"id": group_id, "status": "available", "priority_station": "az1.dc1", **fields}


def _ok_group() -> httpx.Response:
    return httpx.Response(200, json={"replication_consistency_group": _group()})


@dataclass
class Script:
    """Answers requests in order (the last answer repeats) and records them."""

    answers: list[Answer]
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, type) and issubclass(answer, httpx.TransportError):
            raise answer("scripted failure", request=request)
        if isinstance(answer, int):
            return _error(answer)
        if isinstance(answer, tuple):
            return _error(*answer)
        if isinstance(answer, httpx.Response):
            return answer
        return answer(request)  # type: ignore[no-any-return]


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def policy(fake_time: FakeTime) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=ATTEMPTS,
        base_delay=1.0,
        max_delay=4.0,
        max_total=60.0,
        jitter=0.0,
        sleep=fake_time.sleep,
        clock=fake_time.clock,
    )


Factory = Callable[..., Awaitable[EvsClient]]


@pytest.fixture
async def make_client(policy: RetryPolicy) -> AsyncIterator[Factory]:
    """``await make_client(handler, retry=..., on_request=...)``: an EvsClient over ``handler``."""
    pools: list[CloudConnections] = []

    async def make(
        handler: Callable[[httpx.Request], Any],
        *,
        retry: RetryPolicy | None = None,
        security_token: str | None = None,
        on_request: RequestHook | None = None,
        limiter: RateLimiter | None = None,
        page_size: int | None = None,
    ) -> EvsClient:
        pool = CloudConnections(
            transport=httpx.MockTransport(handler),
            retry=retry or policy,
            rate=1000,
            burst=1000,
            on_request=on_request,
        )
        pools.append(pool)
        if limiter is None and page_size is None:
            return pool.client(ENDPOINT, PROJECT, Credentials(AK, SK, security_token))
        # The same shared HTTP client, with what the pool does not let one choose.
        return EvsClient(
            pool.http(ENDPOINT),
            project_id=PROJECT,
            auth=AkSkAuth(AK, SK, security_token),
            retry=retry or policy,
            limiter=limiter or pool.limiter(ENDPOINT, PROJECT),
            page_size=page_size or 1000,
        )

    yield make
    for pool in pools:
        await pool.aclose()


async def _read(client: EvsClient) -> object:
    return await client.get_group(GROUP)


async def _action(client: EvsClient) -> object:
    return await client.switchover(GROUP)


OPERATIONS = {"read": _read, "action": _action}


# --- the error table: exception type, and whether it is retried -------------------------------------------

NOT_RETRIED, RETRIED = False, True
ERROR_TABLE = [
    # Nothing was sent: safe to resend even a switchover.
    pytest.param(httpx.ConnectError, "read", CloudUnavailable, RETRIED, id="connect-error-read"),
    pytest.param(httpx.ConnectError, "action", CloudUnavailable, RETRIED, id="connect-error-action"),
    pytest.param(httpx.ConnectTimeout, "action", CloudUnavailable, RETRIED, id="connect-timeout-action"),
    pytest.param(httpx.PoolTimeout, "action", CloudUnavailable, RETRIED, id="pool-timeout-action"),
    # Maybe sent: reads are retried, actions become OutcomeUnknown and are never resent.
    pytest.param(httpx.ReadTimeout, "read", CloudUnavailable, RETRIED, id="read-timeout-read"),
    pytest.param(httpx.ReadTimeout, "action", OutcomeUnknown, NOT_RETRIED, id="read-timeout-action"),
    pytest.param(httpx.WriteTimeout, "action", OutcomeUnknown, NOT_RETRIED, id="write-timeout-action"),
    pytest.param(httpx.ReadError, "read", CloudUnavailable, RETRIED, id="read-error-read"),
    pytest.param(httpx.ReadError, "action", OutcomeUnknown, NOT_RETRIED, id="read-error-action"),
    pytest.param(httpx.WriteError, "read", CloudUnavailable, RETRIED, id="write-error-read"),
    pytest.param(httpx.WriteError, "action", OutcomeUnknown, NOT_RETRIED, id="write-error-action"),
    pytest.param(httpx.RemoteProtocolError, "read", CloudUnavailable, RETRIED, id="dropped-read"),
    pytest.param(httpx.RemoteProtocolError, "action", OutcomeUnknown, NOT_RETRIED, id="dropped-action"),
    # 5xx: the backend may have acted on an action, so only reads are retried.
    pytest.param(500, "read", CloudUnavailable, RETRIED, id="500-read"),
    pytest.param(503, "read", CloudUnavailable, RETRIED, id="503-read"),
    pytest.param(500, "action", CloudUnavailable, NOT_RETRIED, id="500-action"),
    pytest.param(502, "action", CloudUnavailable, NOT_RETRIED, id="502-action"),
    pytest.param(503, "action", CloudUnavailable, NOT_RETRIED, id="503-action"),
    pytest.param(504, "action", CloudUnavailable, NOT_RETRIED, id="504-action"),
    # Throttled: refused before processing, so retried for both.
    pytest.param(429, "read", CloudThrottled, RETRIED, id="429-read"),
    pytest.param(429, "action", CloudThrottled, RETRIED, id="429-action"),
    pytest.param((400, "APIG.0308"), "action", CloudThrottled, RETRIED, id="400-APIG.0308-action"),
    pytest.param((403, "APIGW.0308"), "read", CloudThrottled, RETRIED, id="403-APIGW.0308-read"),
    pytest.param((500, "APIGW.0308"), "action", CloudThrottled, RETRIED, id="500-APIGW.0308-action"),
    # Permanent or auth: never retried here.
    pytest.param(401, "read", CloudAuthError, NOT_RETRIED, id="401-read"),
    pytest.param(401, "action", CloudAuthError, NOT_RETRIED, id="401-action"),
    pytest.param(403, "read", CloudForbidden, NOT_RETRIED, id="403-read"),
    pytest.param(403, "action", CloudForbidden, NOT_RETRIED, id="403-action"),
    pytest.param(404, "read", GroupNotFound, NOT_RETRIED, id="404-read"),
    pytest.param(404, "action", GroupNotFound, NOT_RETRIED, id="404-action"),
    pytest.param((404, "APIGW.0101"), "read", CloudRejected, NOT_RETRIED, id="404-APIGW.0101-no-such-api"),
    pytest.param(400, "action", CloudRejected, NOT_RETRIED, id="400-action"),
    pytest.param(409, "read", CloudRejected, NOT_RETRIED, id="409-read"),
    pytest.param(422, "action", CloudRejected, NOT_RETRIED, id="422-action"),
]


@pytest.mark.parametrize(("failure", "kind", "error", "retried"), ERROR_TABLE)
async def test_persistent_failure(
    make_client: Factory,
    fake_time: FakeTime,
    failure: Answer,
    kind: str,
    error: type[CloudError],
    retried: bool,
) -> None:
    script = Script([failure])
    client = await make_client(script)
    with pytest.raises(CloudError) as caught:
        await OPERATIONS[kind](client)
    assert type(caught.value) is error
    assert len(script.requests) == (ATTEMPTS if retried else 1)
    assert len(fake_time.sleeps) == len(script.requests) - 1
    assert caught.value.operation == ("get_group" if kind == "read" else "switchover")
    assert caught.value.__context__ is None  # no httpx exception (nor its request headers) hangs on


@pytest.mark.parametrize(
    ("failure", "kind", "error", "retried"), [p for p in ERROR_TABLE if p.values[3] is RETRIED]
)
async def test_transient_failure_then_success(
    make_client: Factory, failure: Answer, kind: str, error: type[CloudError], retried: bool
) -> None:
    success = _ok_group() if kind == "read" else httpx.Response(200)
    script = Script([failure, failure, success])
    client = await make_client(script)
    await OPERATIONS[kind](client)
    assert len(script.requests) == 3


async def test_read_timeout_on_switchover_sends_exactly_one_request(make_client: Factory) -> None:
    script = Script([httpx.ReadTimeout, httpx.Response(200)])
    client = await make_client(script)
    with pytest.raises(OutcomeUnknown, match="observe the group"):
        await client.switchover(GROUP)
    assert [(r.method, r.url.path) for r in script.requests] == [("POST", ACTION_PATH)]


# --- Retry-After and the time budget ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "retry_after", "expected_sleep"),
    [
        pytest.param(429, "read", "7", 7.0, id="429-seconds"),
        pytest.param(429, "action", "2.5", 2.5, id="429-action-fractional"),
        pytest.param(503, "read", "3", 3.0, id="503-read"),
        pytest.param(429, "read", "20", 20.0, id="longer-than-max-delay"),
        pytest.param(429, "read", "0", 0.0, id="zero"),
        pytest.param(429, "read", "soon", 1.0, id="junk-falls-back-to-backoff"),
    ],
)
async def test_retry_after_is_honoured(
    make_client: Factory,
    fake_time: FakeTime,
    status: int,
    kind: str,
    retry_after: str,
    expected_sleep: float,
) -> None:
    success = _ok_group() if kind == "read" else httpx.Response(200)
    script = Script([_error(status, **{"Retry-After": retry_after}), success])
    await OPERATIONS[kind](await make_client(script))
    assert fake_time.sleeps == [expected_sleep]
    assert len(script.requests) == 2


async def test_retry_after_as_http_date(make_client: Factory, fake_time: FakeTime) -> None:
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    script = Script([_error(429, **{"Retry-After": when}), _ok_group()])
    await (await make_client(script)).get_group(GROUP)
    (slept,) = fake_time.sleeps
    assert 27 <= slept <= 30


async def test_retry_after_beyond_the_budget_gives_up_at_once(
    make_client: Factory, fake_time: FakeTime
) -> None:
    script = Script([_error(429, "APIG.0308", **{"Retry-After": "120"}), _ok_group()])
    with pytest.raises(CloudThrottled) as caught:
        await (await make_client(script)).get_group(GROUP)
    assert caught.value.retry_after == 120
    assert caught.value.code == "APIG.0308"
    assert len(script.requests) == 1
    assert fake_time.sleeps == []


async def test_total_time_bound(make_client: Factory, fake_time: FakeTime) -> None:
    def slow_timeout(request: httpx.Request) -> httpx.Response:
        fake_time.now += 25  # each attempt burns 25 s before timing out
        raise httpx.ReadTimeout("timed out", request=request)

    policy = RetryPolicy(
        max_attempts=10,
        base_delay=1,
        max_delay=8,
        max_total=60,
        jitter=0,
        sleep=fake_time.sleep,
        clock=fake_time.clock,
    )
    script = Script([slow_timeout])
    with pytest.raises(CloudUnavailable):
        await (await make_client(script, retry=policy)).get_group(GROUP)
    # t=25 sleep 1 → t=51 sleep 2 → t=78: a 4 s wait would end past 60 s, so it gives up.
    assert len(script.requests) == 3
    assert fake_time.sleeps == [1, 2]
    assert all(start + s <= 60 for start, s in zip(fake_time.sleep_started, fake_time.sleeps, strict=True))


@pytest.mark.parametrize(
    ("jitter", "seed", "expected"),
    [
        pytest.param(0.0, 0, [1.0, 2.0, 4.0, 4.0, 4.0], id="no-jitter-capped"),
        pytest.param(0.5, 1, None, id="jitter-within-bounds"),
    ],
)
def test_backoff(jitter: float, seed: int, expected: list[float] | None) -> None:
    policy = RetryPolicy(base_delay=1, max_delay=4, jitter=jitter, rng=random.Random(seed))
    delays = [policy.backoff(n) for n in range(1, 6)]
    if expected is not None:
        assert delays == expected
    else:
        for delay, ceiling in zip(delays, [1, 2, 4, 4, 4], strict=True):
            assert ceiling * 0.5 <= delay <= ceiling
        again = RetryPolicy(base_delay=1, max_delay=4, jitter=jitter, rng=random.Random(seed))
        assert [again.backoff(n) for n in range(1, 6)] == delays  # deterministic given the rng


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"max_attempts": 0}, id="max_attempts"),
        pytest.param({"base_delay": -1}, id="base_delay"),
        pytest.param({"max_total": -1}, id="max_total"),
        pytest.param({"jitter": 1.5}, id="jitter"),
    ],
)
def test_retry_policy_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("5", 5.0, id="seconds"),
        pytest.param(" 1.5 ", 1.5, id="fractional"),
        pytest.param("-3", 0.0, id="negative-clamped"),
        pytest.param("nan", None, id="nan"),
        pytest.param("Wed, 21 Oct 2015 07:28:30 GMT", 30.0, id="http-date"),
        pytest.param("Wed, 21 Oct 2015 07:27:00 GMT", 0.0, id="http-date-past"),
        pytest.param("tomorrow", None, id="junk"),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 28, tzinfo=UTC)
    assert parse_retry_after(value, now=now) == expected


# --- error bodies ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "headers", "error", "code", "message", "request_id"),
    [
        pytest.param(
            401,
            {
                "error_code": "APIGW.0301",
                "error_msg": "Incorrect IAM authentication information",
                "request_id": "r-1",
            },
            {},
            CloudAuthError,
            "APIGW.0301",
            "Incorrect IAM authentication information",
            "r-1",
            id="gateway-shape",
        ),
        pytest.param(
            400,
            {"code": "EVS.5400", "message": "bad parameter"},
            {"X-Request-Id": "hdr-1"},
            CloudRejected,
            "EVS.5400",
            "bad parameter",
            "hdr-1",
            id="top-level-code-message",
        ),
        pytest.param(
            400,
            {"error": {"code": "EVS.2089", "message": "volume belongs to SDRS"}},
            {},
            CloudRejected,
            "EVS.2089",
            "volume belongs to SDRS",
            None,
            id="nested-error",
        ),
        pytest.param(
            400,
            {"badRequest": {"code": 400, "message": "Invalid input"}},
            {},
            CloudRejected,
            "400",
            "Invalid input",
            None,
            id="nested-badRequest-numeric-code",
        ),
        pytest.param(
            400,
            {"badrequest": {"code": "SDRS.1013", "message": "not found"}},
            {},
            CloudRejected,
            "SDRS.1013",
            "not found",
            None,
            id="nested-badrequest-lowercase",
        ),
        pytest.param(
            404,
            {"itemNotFound": {"code": "EVS.0404", "message": "group missing"}},
            {},
            GroupNotFound,
            "EVS.0404",
            "group missing",
            None,
            id="nested-itemNotFound",
        ),
        pytest.param(
            500,
            {"error_code": "X", "error_msg": "gateway", "request_id": "body-id"},
            {"X-Request-Id": "header-id"},
            CloudUnavailable,
            "X",
            "gateway",
            "header-id",
            id="header-request-id-wins",
        ),
        pytest.param(
            502,
            "<html>Bad Gateway</html>",
            {},
            CloudUnavailable,
            None,
            "<html>Bad Gateway</html>",
            None,
            id="html",
        ),
        pytest.param(503, "", {}, CloudUnavailable, None, "Service Unavailable", None, id="empty-body"),
        pytest.param(400, [1, 2], {}, CloudRejected, None, "[1, 2]", None, id="json-not-an-object"),
    ],
)
async def test_error_body_shapes(
    make_client: Factory,
    status: int,
    body: Any,
    headers: dict[str, str],
    error: type[CloudError],
    code: str | None,
    message: str,
    request_id: str | None,
) -> None:
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    client = await make_client(Script([httpx.Response(status, headers=headers, content=content)]))
    with pytest.raises(CloudError) as caught:
        await client.get_group(GROUP)
    assert type(caught.value) is error
    assert (caught.value.status, caught.value.code, caught.value.request_id) == (status, code, request_id)
    assert caught.value.message == message
    for part in ["get_group:", message, f"HTTP {status}"]:
        assert part in str(caught.value)


def test_parse_error_body_prefers_the_gateway_pair() -> None:
    body = {"error_code": "APIGW.0308", "error_msg": "throttled", "code": "other", "error": {"code": "x"}}
    detail = parse_error_body(json.dumps(body).encode())
    assert (detail.code, detail.message) == ("APIGW.0308", "throttled")


async def test_long_bodies_are_truncated(make_client: Factory) -> None:
    client = await make_client(Script([httpx.Response(400, text="x" * 10_000)]))
    with pytest.raises(CloudRejected) as caught:
        await client.get_group(GROUP)
    assert len(caught.value.message) <= MAX_DETAIL_CHARS
    assert caught.value.message.endswith("[truncated]")


# --- secrets -------------------------------------------------------------------------------------------


def _echo_secrets(request: httpx.Request) -> httpx.Response:
    # A gateway that echoes what it saw, as APIG's signature errors partly do.
    return httpx.Response(
        401,
        json={
            "error_code": "APIGW.0301",
            "error_msg": f"mismatch for {request.headers['Authorization']} key {SK} token {STS}",
        },
    )


def _secret_in_exception(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError(f"cannot connect with {SK} / {STS} / {AK}", request=request)


@pytest.mark.parametrize(
    "handler",
    [pytest.param(_echo_secrets, id="echoed-in-body"), pytest.param(_secret_in_exception, id="in-exception")],
)
async def test_secrets_never_in_errors_or_logs(
    make_client: Factory, caplog: pytest.LogCaptureFixture, handler: Callable[[httpx.Request], httpx.Response]
) -> None:
    client = await make_client(handler, security_token=STS)
    with caplog.at_level(logging.DEBUG, logger="azswitch"), pytest.raises(CloudError) as caught:
        await client.switchover(GROUP)
    for text in (str(caught.value), repr(caught.value), caplog.text):
        for secret in (AK, SK, STS):
            assert secret not in text
    assert "***" in str(caught.value)


def test_repr_of_the_client_and_pool_hide_secrets() -> None:
    pool = CloudConnections(transport=TrackedTransport())
    client = pool.client(ENDPOINT, PROJECT, Credentials(AK, SK, STS))
    assert SK not in repr(client) and AK not in repr(client)


# --- requests as sent ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "key"),
    [
        pytest.param("switchover", "os-reverse-replication-consistency-group", id="switchover"),
        pytest.param("failover", "os-failover-replication-consistency-group", id="failover"),
        pytest.param("reprotect", "os-reprotect-replication-consistency-group", id="reprotect"),
        pytest.param("sync", "os-sync-replication-consistency-group", id="sync"),
    ],
)
async def test_action_requests(make_client: Factory, method: str, key: str) -> None:
    script = Script([httpx.Response(200)])
    client = await make_client(script, security_token=STS)
    assert await getattr(client, method)(GROUP) is None
    (request,) = script.requests
    assert (request.method, request.url.path) == ("POST", ACTION_PATH)
    assert request.content == json.dumps({key: None}, separators=(",", ":")).encode()
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Project-Id"] == PROJECT
    assert request.headers["X-Security-Token"] == STS
    assert "content-type;host;x-project-id;x-sdk-date;x-security-token" in request.headers["Authorization"]


async def test_action_accepted_with_another_2xx(
    make_client: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_client(Script([httpx.Response(202)]))
    with caplog.at_level(logging.WARNING, logger="azswitch.cloud"):
        await client.switchover(GROUP)
    assert "202" in caplog.text


async def test_get_group_reads_the_model_leniently(make_client: Factory) -> None:
    # The documented typo, without the correct key, and a field the model does not know.
    group_body = {"id": GROUP, "priority_staion": "az2.dc2", "replication_ids": ["p1"], "extra": "ignored"}
    body = {"replication_consistency_group": group_body}
    script = Script([httpx.Response(200, json=body)])
    group = await (await make_client(script)).get_group(GROUP)
    assert (group.id, group.priority_station, group.replication_ids) == (GROUP, "az2.dc2", ["p1"])
    (request,) = script.requests
    assert (request.method, request.url.path, request.content) == ("GET", GROUP_PATH, b"")
    assert request.headers["X-Project-Id"] == PROJECT
    assert "Content-Type" not in request.headers


@pytest.mark.parametrize(
    ("response", "match"),
    [
        pytest.param(httpx.Response(200, text="<html>ok</html>"), "JSON object", id="not-json"),
        pytest.param(
            httpx.Response(200, json={"something": {}}), "replication_consistency_group", id="no-envelope"
        ),
        pytest.param(
            httpx.Response(200, json={"replication_consistency_group": {"name": "x"}}), "id", id="no-id"
        ),
    ],
)
async def test_malformed_success_body_is_transient(
    make_client: Factory, response: httpx.Response, match: str
) -> None:
    with pytest.raises(CloudUnavailable, match=match):
        await (await make_client(Script([response]))).get_group(GROUP)


async def test_logging_and_metrics_hook(make_client: Factory, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[str, int | None, float]] = []
    script = Script(
        [httpx.ConnectError, httpx.Response(503, headers={"X-Request-Id": "rid-503"}), _ok_group()]
    )
    client = await make_client(script, on_request=lambda op, status, s: seen.append((op, status, s)))
    with caplog.at_level(logging.DEBUG, logger="azswitch.cloud"):
        await client.get_group(GROUP)
    assert [(op, status) for op, status, _ in seen] == [
        ("get_group", None),
        ("get_group", 503),
        ("get_group", 200),
    ]
    assert all(seconds >= 0 for _, _, seconds in seen)
    assert f"GET {GROUP_PATH} -> 503" in caplog.text
    assert "rid-503" in caplog.text
    assert f"GET {GROUP_PATH} -> no response" in caplog.text


async def test_a_broken_metrics_hook_does_not_fail_a_switchover(make_client: Factory) -> None:
    def broken(operation: str, status: int | None, seconds: float) -> None:
        raise RuntimeError("metrics down")

    script = Script([httpx.Response(200)])
    await (await make_client(script, on_request=broken)).switchover(GROUP)
    assert len(script.requests) == 1


# --- input validation ------------------------------------------------------------------------------------

BAD_IDS = [
    pytest.param("", id="empty"),
    pytest.param("../other", id="dot-dot"),
    pytest.param("a/b", id="slash"),
    pytest.param("a?b=c", id="query"),
    pytest.param("a b", id="space"),
    pytest.param("abc\n", id="trailing-newline"),
    pytest.param("-abc", id="leading-dash"),
    pytest.param("x" * 129, id="too-long"),
    pytest.param("é", id="non-ascii"),
]


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize(
    "method", ["get_group", "discover_availability_zones", "switchover", "failover", "reprotect", "sync"]
)
async def test_group_id_validated_before_any_request(make_client: Factory, method: str, bad: str) -> None:
    script = Script([httpx.Response(200)])
    client = await make_client(script)
    with pytest.raises(ValueError, match="group_id"):
        await getattr(client, method)(bad)
    assert script.requests == []


@pytest.mark.parametrize("bad", BAD_IDS)
def test_project_id_validated(bad: str) -> None:
    with pytest.raises(ValueError, match="project_id"):
        CloudConnections(transport=TrackedTransport()).client(ENDPOINT, bad, Credentials(AK, SK))


@pytest.mark.parametrize(
    ("filters", "match"),
    [
        pytest.param({"bogus": "x"}, "bogus", id="unknown"),
        pytest.param({"marker": "x"}, "marker", id="marker-is-automatic"),
        pytest.param({"limit": "5"}, "limit", id="limit-is-automatic"),
        pytest.param(
            {"replication_consistency_group_id": "x"}, "replication_consistency_group_id", id="pair-filter"
        ),
    ],
)
async def test_list_groups_rejects_undocumented_filters(
    make_client: Factory, filters: dict[str, str], match: str
) -> None:
    script = Script([httpx.Response(200, json={"replication_consistency_groups": []})])
    with pytest.raises(ValueError, match=match):
        await (await make_client(script)).list_groups(**filters)
    assert script.requests == []


# --- paging ----------------------------------------------------------------------------------------------


def _paged(groups: list[str], *, honour_marker: bool = True) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        limit = int(request.url.params["limit"])
        marker = request.url.params.get("marker")
        start = groups.index(marker) + 1 if marker and honour_marker else 0
        page = [_group(g) for g in groups[start : start + limit]]
        return httpx.Response(200, json={"replication_consistency_groups": page})

    return handler


@pytest.mark.parametrize(
    ("count", "requests"),
    [
        pytest.param(0, 1, id="empty"),
        pytest.param(1, 1, id="short-page"),
        pytest.param(2, 2, id="exactly-one-page"),
        pytest.param(5, 3, id="two-and-a-half-pages"),
    ],
)
async def test_list_groups_pages_with_marker(make_client: Factory, count: int, requests: int) -> None:
    ids = [f"g{i}" for i in range(count)]
    script = Script([_paged(ids)])
    client = await make_client(script, page_size=2)
    groups = await client.list_groups(status="available", changes_since="2024-01-01T00:00:00")
    assert [g.id for g in groups] == ids
    assert len(script.requests) == requests
    markers = [r.url.params.get("marker") for r in script.requests]
    assert markers == [None, *ids[1::2]][:requests]
    for request in script.requests:
        assert request.url.params["limit"] == "2"
        assert request.url.params["status"] == "available"
        assert request.url.params["changes-since"] == "2024-01-01T00:00:00"


async def test_list_groups_stops_when_the_marker_is_ignored(make_client: Factory) -> None:
    script = Script([_paged(["g0", "g1", "g2"], honour_marker=False)])
    client = await make_client(script, page_size=2)
    assert [g.id for g in await client.list_groups()] == ["g0", "g1"]
    assert len(script.requests) == 2


# --- AZ discovery ----------------------------------------------------------------------------------------


def _routes(routes: dict[str, Any]) -> Script:
    """A cloud that answers GETs by path; a path not listed is a 404 in the Cinder ``itemNotFound`` shape."""

    def handler(request: httpx.Request) -> httpx.Response:
        answer = routes.get(request.url.path.removeprefix(f"/v2/{PROJECT}"))
        if answer is None:
            return httpx.Response(
                404, json={"itemNotFound": {"code": "EVS.0404", "message": "no such thing"}}
            )
        return answer if isinstance(answer, httpx.Response) else httpx.Response(200, json=answer)

    return Script([handler])


def _topology(**volumes: str) -> dict[str, Any]:
    """Group → pairs p1 (volumes v1,v2) and p2 (v3,v4); ``volumes`` maps a path suffix to its AZ."""
    routes: dict[str, Any] = {
        f"/os-vendor-replication-consistency-groups/{GROUP}": {
            "replication_consistency_group": _group(replication_ids=["p1", "p2"])
        },
        "/os-vendor-replications/p1": {"replication": {"id": "p1", "volume_ids": "v1,v2"}},
        "/os-vendor-replications/p2": {"replication": {"id": "p2", "volume_ids": "v3, v4"}},
    }
    for suffix, zone in volumes.items():
        kind, volume_id = suffix.split("_")
        routes[f"/{kind}/{volume_id}"] = {"volume": {"id": volume_id, "availability_zone": zone}}
    return routes


async def test_discover_availability_zones(make_client: Factory) -> None:
    script = _routes(
        _topology(volumes_v1="az1.dc1", cloudvolumes_v2="az2.dc2", volumes_v3="az1.dc1", volumes_v4="az2.dc2")
    )
    zones = await (await make_client(script)).discover_availability_zones(GROUP)
    assert zones == ["az1.dc1", "az2.dc2"]
    assert [r.url.path.removeprefix(f"/v2/{PROJECT}") for r in script.requests] == [
        f"/os-vendor-replication-consistency-groups/{GROUP}",
        "/os-vendor-replications/p1",
        "/os-vendor-replications/p2",
        "/volumes/v1",
        "/volumes/v2",
        "/cloudvolumes/v2",  # the fallback after a 404
        "/volumes/v3",
        "/volumes/v4",
    ]


@pytest.mark.parametrize(
    ("routes", "error", "match"),
    [
        pytest.param(
            _topology(volumes_v1="az1", volumes_v2="az2", volumes_v3="az3", volumes_v4="az1"),
            CloudRejected,
            "3 availability zone",
            id="three-zones",
        ),
        pytest.param(
            _topology(volumes_v1="az1", volumes_v2="az1", volumes_v3="az1", volumes_v4="az1"),
            CloudRejected,
            "1 availability zone",
            id="one-zone",
        ),
        pytest.param(
            {
                f"/os-vendor-replication-consistency-groups/{GROUP}": {
                    "replication_consistency_group": _group(replication_ids=[])
                }
            },
            CloudRejected,
            "no replication pairs",
            id="no-pairs",
        ),
        pytest.param(
            _topology(volumes_v1="az1", volumes_v3="az1", volumes_v4="az2"),
            CloudRejected,
            "no such thing",
            id="volume-missing-on-both-paths",
        ),
        pytest.param(
            {
                k: v
                for k, v in _topology(volumes_v1="a", volumes_v2="b", volumes_v3="a", volumes_v4="b").items()
                if not k.endswith("/p2")
            },
            CloudRejected,
            "no such thing",
            id="pair-missing",
        ),
        pytest.param(
            {
                **_topology(),
                "/os-vendor-replications/p1": {"replication": {"id": "p1", "volume_ids": "v1,../../x"}},
            },
            CloudUnavailable,
            "malformed volume id",
            id="malformed-volume-id",
        ),
        pytest.param(
            {**_topology(), "/volumes/v1": {"volume": {"id": "v1"}}},
            CloudUnavailable,
            "no availability_zone",
            id="volume-without-zone",
        ),
        pytest.param({}, GroupNotFound, "no such thing", id="group-missing"),
    ],
)
async def test_discover_availability_zones_failures(
    make_client: Factory, routes: dict[str, Any], error: type[CloudError], match: str
) -> None:
    with pytest.raises(CloudError, match=match) as caught:
        await (await make_client(_routes(routes))).discover_availability_zones(GROUP)
    assert type(caught.value) is error


# --- rate limiter ----------------------------------------------------------------------------------------


async def test_rate_limiter_burst_then_spacing(fake_time: FakeTime) -> None:
    limiter = RateLimiter(rate=2, burst=3, clock=fake_time.clock, sleep=fake_time.sleep)
    for _ in range(6):
        await limiter.acquire()
    assert fake_time.sleeps == [0.5, 0.5, 0.5]
    fake_time.now += 10  # idle: the bucket refills, but only up to the burst
    for _ in range(4):
        await limiter.acquire()
    assert fake_time.sleeps == [0.5, 0.5, 0.5, 0.5]


async def test_rate_limiter_is_first_come_first_served() -> None:
    """Concurrent callers at one instant get consecutive slots, in the order they asked."""
    waits: dict[int, float] = {}
    current: list[int] = []

    async def sleep(seconds: float) -> None:
        waits[current[-1]] = seconds

    limiter = RateLimiter(rate=4, burst=2, clock=lambda: 0.0, sleep=sleep)

    async def caller(index: int) -> None:
        current.append(index)  # acquire() runs without yielding until it sleeps, so this names the sleeper
        await limiter.acquire()
        waits.setdefault(index, 0.0)

    await asyncio.gather(*(caller(i) for i in range(6)))
    # Each caller's wait ends exactly one slot after the previous caller's: none shared, none overtaken.
    assert [waits[i] for i in range(6)] == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0]


async def test_rate_limiter_returns_a_cancelled_slot() -> None:
    clock_now = 0.0
    blocked = asyncio.Event()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        blocked.set()
        await asyncio.Event().wait()  # forever, until cancelled

    limiter = RateLimiter(rate=1, burst=1, clock=lambda: clock_now, sleep=sleep)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await blocked.wait()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    blocked.clear()
    follower = asyncio.create_task(limiter.acquire())
    await blocked.wait()
    follower.cancel()
    assert waits == [1.0, 1.0]  # the follower waits for one slot, not two


@pytest.mark.parametrize(
    ("rate", "burst", "match"),
    [pytest.param(0, 1, "rate", id="zero-rate"), pytest.param(1, 0, "burst", id="zero-burst")],
)
def test_rate_limiter_validation(rate: float, burst: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RateLimiter(rate, burst)


async def test_every_attempt_takes_a_token(make_client: Factory, fake_time: FakeTime) -> None:
    acquired: list[float] = []

    class CountingLimiter(RateLimiter):
        async def acquire(self) -> None:
            acquired.append(fake_time.now)

    client = await make_client(Script([503, 503, _ok_group()]), limiter=CountingLimiter(1))
    await client.get_group(GROUP)
    assert len(acquired) == 3


# --- connection pool -------------------------------------------------------------------------------------


class TrackedTransport(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.closed = 0
        self.hosts: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.hosts.append(request.url.host)
        return _ok_group()

    async def aclose(self) -> None:
        self.closed += 1


async def test_pool_shares_clients_and_limiters() -> None:
    transport = TrackedTransport()
    pool = CloudConnections(transport=transport, timeouts=Timeouts(connect=1, read=2, write=3, pool=4))
    a = pool.http(ENDPOINT)
    assert pool.http(ENDPOINT + "/") is a
    assert pool.http(ENDPOINT.upper().replace("HTTPS", "https")) is a
    other = pool.http("https://evs.eu-west-101.myhuaweicloud.eu")
    assert other is not a
    assert a.timeout == httpx.Timeout(connect=1, read=2, write=3, pool=4)
    assert pool.limiter(ENDPOINT, PROJECT) is pool.limiter(ENDPOINT + "/", PROJECT)
    assert pool.limiter(ENDPOINT, PROJECT) is not pool.limiter(ENDPOINT, "another")

    one = pool.client(ENDPOINT, PROJECT, Credentials(AK, SK))
    two = pool.client(ENDPOINT, PROJECT, Credentials("AKOTHER000", "SKOTHER000"))
    assert one._session._http is two._session._http is a
    assert one._session._limiter is two._session._limiter
    await one.get_group(GROUP)
    await two.get_group(GROUP)
    assert transport.hosts == ["evs.cn-north-4.myhuaweicloud.com"] * 2

    await pool.aclose()
    assert a.is_closed and other.is_closed
    assert transport.closed == 0  # the caller's transport is the caller's to close
    with pytest.raises(RuntimeError, match="closed"):
        pool.http(ENDPOINT)
    await pool.aclose()  # idempotent


@pytest.mark.parametrize(
    "endpoint",
    [
        pytest.param("ftp://evs.example", id="scheme"),
        pytest.param("evs.example", id="no-scheme"),
        pytest.param("https://user:secret@evs.example", id="userinfo"),
        pytest.param("https://evs.example/?x=1", id="query"),
        pytest.param("https://", id="no-host"),
    ],
)
def test_pool_rejects_bad_endpoints(endpoint: str) -> None:
    with pytest.raises(ValueError, match="endpoint") as caught:
        CloudConnections(transport=TrackedTransport()).http(endpoint)
    assert "secret" not in str(caught.value)


async def test_endpoint_with_a_path_prefix(make_client: Factory) -> None:
    transport = TrackedTransport()
    seen: list[str] = []

    async def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return await transport.handle_async_request(request)

    async with CloudConnections(transport=httpx.MockTransport(record)) as pool:
        await pool.client("http://127.0.0.1:8080/evs/", PROJECT, Credentials(AK, SK)).get_group(GROUP)
    assert seen == [f"/evs{GROUP_PATH}"]


# --- the CloudAPI contract -------------------------------------------------------------------------------


def _protocol_methods() -> list[str]:
    return [
        name
        for name, value in vars(CloudAPI).items()
        if inspect.isfunction(value) and not name.startswith("_")
    ]


@pytest.mark.parametrize("name", _protocol_methods())
def test_evs_client_matches_the_cloud_api_protocol(name: str) -> None:
    """Structural conformance at run time; mypy checks the same in evs.py (``_STRUCTURAL_CHECK``). The EVS
    client may take more (``list_groups``' documented filters) as keyword-only extras, never fewer."""
    expected = inspect.signature(getattr(CloudAPI, name))
    actual = inspect.signature(getattr(EvsClient, name))
    required = [(p.name, p.kind) for p in actual.parameters.values() if p.kind is not p.VAR_KEYWORD]
    assert required == [(p.name, p.kind) for p in expected.parameters.values()]
    assert inspect.iscoroutinefunction(getattr(EvsClient, name)) == inspect.iscoroutinefunction(
        getattr(CloudAPI, name)
    )


def test_protocol_has_the_expected_methods() -> None:
    assert set(_protocol_methods()) == {
        "get_group",
        "list_groups",
        "availability_zones",
        "view",
        "start_switchover",
        "start_failover",
        "start_reprotect",
        "follow",
    }


def test_pool_is_the_reconcilers_cloud_factory() -> None:
    from azswitch.reconcile import CloudFactory

    expected = inspect.signature(CloudFactory.client)
    actual = inspect.signature(CloudConnections.backend)
    assert [p.name for p in actual.parameters.values()] == [p.name for p in expected.parameters.values()]


@pytest.mark.parametrize(
    ("wire", "field", "expected"),
    [
        pytest.param({"id": 7, "status": "available"}, "id", "7", id="numeric-id"),
        pytest.param({"id": "g", "status": None}, "status", "unknown", id="null-status"),
        pytest.param({"id": "g", "fault_level": 2}, "fault_level", "2", id="numeric-fault-level"),
        pytest.param({"id": "g", "fault_level": None}, "fault_level", "0", id="null-fault-level"),
    ],
)
def test_group_model_survives_type_quirks(wire: dict[str, object], field: str, expected: str) -> None:
    from azswitch.cloud.evs_models import ConsistencyGroup

    assert getattr(ConsistencyGroup.model_validate(wire), field) == expected
