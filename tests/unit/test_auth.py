"""AkSkAuth's header handling and TokenAuth's token life cycle, against a fake IAM + EVS on one transport."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from azswitch import signing
from azswitch.cloud import AkSkAuth, EvsClient, RateLimiter, RetryPolicy, TokenAuth
from azswitch.errors import CloudAuthError, CloudUnavailable

AK = "AKEXAMPLE0000000000"
SK = "SKEXAMPLE0000000000000000000000000000000"
PROJECT = "0123456789abcdef0123456789abcdef"
GROUP = "91085433-9499-4a68-b2c6-35072467ccd2"
IAM = "https://iam.cn-north-4.myhuaweicloud.com"
EVS = "https://evs.cn-north-4.myhuaweicloud.com"
PASSWORD = "correct horse battery staple"
T0 = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


# --- AkSkAuth ---------------------------------------------------------------------------------------------


def _signed(auth: AkSkAuth, request: httpx.Request) -> httpx.Request:
    return next(auth.sync_auth_flow(request))


def _verify(request: httpx.Request, secret_key: str = SK) -> list[str]:
    """Check the Authorization header as a gateway would; return the signed header names."""
    access_key, names, sig = signing.parse_authorization(request.headers["Authorization"])
    assert access_key == AK
    raw_path, _, raw_query = request.url.raw_path.decode().partition("?")
    headers = {name: request.headers[name] for name in names}
    canonical = signing.canonical_request(
        request.method, raw_path, raw_query, headers, names, request.content
    )
    assert signing.signature(secret_key, signing.string_to_sign(headers["x-sdk-date"], canonical)) == sig
    return names


def test_sets_current_sdk_date_when_absent() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    request = _signed(AkSkAuth(AK, SK), httpx.Request("GET", f"{EVS}/v2/{PROJECT}/volumes"))
    stamped = datetime.strptime(request.headers["X-Sdk-Date"], signing.SDK_DATE_FORMAT).replace(tzinfo=UTC)
    assert before <= stamped <= datetime.now(UTC)
    assert _verify(request) == ["host", "x-sdk-date"]


def test_keeps_an_sdk_date_the_request_carries() -> None:
    request = httpx.Request("GET", f"{EVS}/x", headers={"X-Sdk-Date": "20240102T030405Z"})
    assert _signed(AkSkAuth(AK, SK), request).headers["X-Sdk-Date"] == "20240102T030405Z"


@pytest.mark.parametrize(
    ("headers", "security_token", "expected"),
    [
        pytest.param({}, None, ["host", "x-sdk-date"], id="minimal"),
        pytest.param(
            {"Content-Type": "application/json"},
            None,
            ["content-type", "host", "x-sdk-date"],
            id="content-type",
        ),
        pytest.param(
            {"X-Project-Id": PROJECT}, None, ["host", "x-project-id", "x-sdk-date"], id="project-id"
        ),
        pytest.param({}, "STS-TOKEN", ["host", "x-sdk-date", "x-security-token"], id="security-token"),
        pytest.param(
            {"User-Agent": "x", "Accept": "application/json", "X-Custom": "y"},
            None,
            ["host", "x-sdk-date"],
            id="other-headers-unsigned",
        ),
    ],
)
def test_signed_header_set(headers: dict[str, str], security_token: str | None, expected: list[str]) -> None:
    auth = AkSkAuth(AK, SK, security_token=security_token)
    request = _signed(auth, httpx.Request("POST", f"{EVS}/v2/x?b=2&a=1", headers=headers, content=b"{}"))
    assert _verify(request) == expected
    if security_token:
        assert request.headers["X-Security-Token"] == security_token


def test_signs_what_is_sent_for_encoded_paths() -> None:
    request = _signed(AkSkAuth(AK, SK), httpx.Request("GET", f"{EVS}/v2/a b/é", params={"name": "x y+z"}))
    assert request.url.raw_path.startswith(b"/v2/a%20b/%C3%A9?")
    _verify(request)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        pytest.param(("", SK), "access_key", id="empty-ak"),
        pytest.param((AK, ""), "secret_key", id="empty-sk"),
        pytest.param(("  ", SK), "access_key", id="blank-ak"),
        pytest.param((AK, SK, ""), "security_token", id="empty-token"),
    ],
)
def test_aksk_validates_inputs(args: tuple[str, ...], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        AkSkAuth(*args)


def test_aksk_repr_hides_secrets() -> None:
    text = repr(AkSkAuth(AK, SK, security_token="STS-TOKEN-VALUE"))
    assert SK not in text
    assert AK not in text
    assert "STS-TOKEN-VALUE" not in text


# --- TokenAuth against a fake IAM + EVS ------------------------------------------------------------------


class FakeCloud:
    """IAM issues tokens tok-1, tok-2, …; EVS accepts every issued token that is not revoked.

    The auth resends the *same* request object after a 401, so the tokens are recorded as they arrive.
    """

    def __init__(self, *, lifetime: timedelta = timedelta(hours=24), iam_status: int = 201) -> None:
        self.lifetime = lifetime
        self.iam_status = iam_status
        self.iam_requests: list[httpx.Request] = []
        self.evs_requests: list[httpx.Request] = []
        self.evs_tokens: list[str | None] = []
        self.evs_bodies: list[bytes] = []
        self.issued: list[str] = []
        self.revoked: set[str] = set()
        self.iam_delay_ticks = 0
        self.now = T0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host.startswith("iam."):
            self.iam_requests.append(request)
            for _ in range(self.iam_delay_ticks):
                await asyncio.sleep(0)  # let concurrent callers pile up on the lock
            if self.iam_status != 201:
                return httpx.Response(
                    self.iam_status,
                    json={"error": {"code": "IAM.0004", "message": f"bad password {PASSWORD}"}},
                )
            token = f"tok-{len(self.issued) + 1}"
            self.issued.append(token)
            expires = (self.now + self.lifetime).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            return httpx.Response(
                201, headers={"X-Subject-Token": token}, json={"token": {"expires_at": expires}}
            )
        self.evs_requests.append(request)
        token = request.headers.get("X-Auth-Token")
        self.evs_tokens.append(token)
        self.evs_bodies.append(request.content)
        if token not in self.issued or token in self.revoked:
            return httpx.Response(401, json={"error_code": "APIGW.0307", "error_msg": "token expired"})
        return httpx.Response(200, json={"replication_consistency_group": {"id": GROUP}})

    def clock(self) -> float:
        return self.now.timestamp()


@pytest.fixture
async def fake() -> FakeCloud:
    return FakeCloud()


@pytest.fixture
async def iam_http(fake: FakeCloud) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client:
        yield client


def _token_auth(fake: FakeCloud, http: httpx.AsyncClient, **kwargs: float) -> TokenAuth:
    return TokenAuth(
        http=http,
        iam_endpoint=IAM,
        username="operator",
        password=PASSWORD,
        domain_name="acme",
        project_id=PROJECT,
        clock=fake.clock,
        **kwargs,
    )


def _evs(http: httpx.AsyncClient, auth: TokenAuth) -> EvsClient:
    return EvsClient(
        http,
        project_id=PROJECT,
        auth=auth,
        retry=RetryPolicy(max_attempts=1),
        limiter=RateLimiter(1000, 1000),
    )


@pytest.fixture
async def evs_http(fake: FakeCloud) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=EVS, transport=httpx.MockTransport(fake)) as client:
        yield client


async def test_token_request_matches_the_documented_password_body(
    fake: FakeCloud, iam_http: httpx.AsyncClient
) -> None:
    assert await _token_auth(fake, iam_http).token() == "tok-1"
    (request,) = fake.iam_requests
    assert request.method == "POST"
    assert request.url.path == "/v3/auth/tokens"
    assert request.headers["Content-Type"].startswith("application/json")
    assert json.loads(request.content) == {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": "operator", "password": PASSWORD, "domain": {"name": "acme"}},
                },
            },
            "scope": {"project": {"id": PROJECT}},
        }
    }


async def test_token_is_cached(
    fake: FakeCloud, iam_http: httpx.AsyncClient, evs_http: httpx.AsyncClient
) -> None:
    client = _evs(evs_http, _token_auth(fake, iam_http))
    for _ in range(3):
        await client.get_group(GROUP)
    assert len(fake.iam_requests) == 1
    assert fake.evs_tokens == ["tok-1"] * 3


@pytest.mark.parametrize(
    ("advance", "fetches"),
    [
        pytest.param(timedelta(minutes=50), 1, id="well-before-expiry"),
        pytest.param(timedelta(minutes=54, seconds=59), 1, id="just-outside-margin"),
        pytest.param(timedelta(minutes=55), 2, id="inside-margin"),
        pytest.param(timedelta(hours=2), 2, id="expired"),
    ],
)
async def test_token_refreshed_before_expiry(
    fake: FakeCloud, iam_http: httpx.AsyncClient, advance: timedelta, fetches: int
) -> None:
    fake.lifetime = timedelta(hours=1)
    auth = _token_auth(fake, iam_http, refresh_margin=300)
    await auth.token()
    fake.now += advance
    await auth.token()
    assert len(fake.iam_requests) == fetches


async def test_401_refreshes_once_and_resends(
    fake: FakeCloud, iam_http: httpx.AsyncClient, evs_http: httpx.AsyncClient
) -> None:
    client = _evs(evs_http, _token_auth(fake, iam_http))
    await client.get_group(GROUP)
    fake.revoked.add("tok-1")  # e.g. the user's password changed
    group = await client.get_group(GROUP)
    assert group.id == GROUP
    assert fake.evs_tokens == ["tok-1", "tok-1", "tok-2"]
    assert len(fake.iam_requests) == 2


async def test_401_on_a_switchover_is_resent_once(
    fake: FakeCloud, iam_http: httpx.AsyncClient, evs_http: httpx.AsyncClient
) -> None:
    """Safe although a switchover is not idempotent: a 401 comes from the gateway, before the service."""
    auth = _token_auth(fake, iam_http)
    await auth.token()
    fake.revoked.add("tok-1")
    await _evs(evs_http, auth).switchover(GROUP)
    assert fake.evs_tokens == ["tok-1", "tok-2"]
    assert fake.evs_bodies[0] == fake.evs_bodies[1] == b'{"os-reverse-replication-consistency-group":null}'


async def test_second_401_is_an_auth_error_without_a_loop(
    fake: FakeCloud, iam_http: httpx.AsyncClient, evs_http: httpx.AsyncClient
) -> None:
    fake.revoked.update({"tok-1", "tok-2", "tok-3"})
    with pytest.raises(CloudAuthError) as caught:
        await _evs(evs_http, _token_auth(fake, iam_http)).get_group(GROUP)
    assert len(fake.evs_requests) == 2
    assert len(fake.iam_requests) == 2
    assert caught.value.status == 401
    assert caught.value.code == "APIGW.0307"
    assert "tok-" not in str(caught.value)


async def test_concurrent_requests_share_one_fetch(
    fake: FakeCloud, iam_http: httpx.AsyncClient, evs_http: httpx.AsyncClient
) -> None:
    fake.iam_delay_ticks = 5
    client = _evs(evs_http, _token_auth(fake, iam_http))
    await asyncio.gather(*(client.get_group(GROUP) for _ in range(10)))
    assert len(fake.iam_requests) == 1
    assert len(fake.evs_requests) == 10


async def test_concurrent_401s_refresh_once(
    fake: FakeCloud, iam_http: httpx.AsyncClient, evs_http: httpx.AsyncClient
) -> None:
    auth = _token_auth(fake, iam_http)
    await auth.token()
    fake.revoked.add("tok-1")
    fake.iam_delay_ticks = 5
    await asyncio.gather(*(_evs(evs_http, auth).get_group(GROUP) for _ in range(5)))
    assert fake.issued == ["tok-1", "tok-2"]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        pytest.param(401, CloudAuthError, id="401-bad-password"),
        pytest.param(503, CloudUnavailable, id="503"),
    ],
)
async def test_iam_errors_are_mapped_without_the_password(
    fake: FakeCloud,
    iam_http: httpx.AsyncClient,
    evs_http: httpx.AsyncClient,
    status: int,
    error: type[Exception],
) -> None:
    fake.iam_status = status
    with pytest.raises(error) as caught:
        await _evs(evs_http, _token_auth(fake, iam_http)).get_group(GROUP)
    assert PASSWORD not in str(caught.value)
    assert "IAM.0004" in str(caught.value)
    assert fake.evs_requests == []


async def test_iam_unreachable_is_unavailable(fake: FakeCloud, evs_http: httpx.AsyncClient) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as iam_http:
        with pytest.raises(CloudUnavailable, match="not sent") as caught:
            await _token_auth(fake, iam_http).token()
    assert caught.value.__context__ is None


async def test_iam_answer_without_token_header(fake: FakeCloud) -> None:
    def no_header(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"token": {"expires_at": "2099-01-01T00:00:00Z"}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(no_header)) as iam_http:
        with pytest.raises(CloudAuthError, match="X-Subject-Token"):
            await _token_auth(fake, iam_http).token()


def test_token_auth_refuses_sync_clients(fake: FakeCloud) -> None:
    auth = _token_auth(fake, httpx.AsyncClient(transport=httpx.MockTransport(fake)))
    with (
        httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as client,
        pytest.raises(RuntimeError, match="AsyncClient"),
    ):
        client.get(f"{EVS}/x", auth=auth)


def test_token_auth_repr_and_validation(fake: FakeCloud) -> None:
    auth = _token_auth(fake, httpx.AsyncClient(transport=httpx.MockTransport(fake)))
    assert PASSWORD not in repr(auth)
    with pytest.raises(ValueError, match="password"):
        TokenAuth(
            http=httpx.AsyncClient(transport=httpx.MockTransport(fake)),
            iam_endpoint=IAM,
            username="u",
            password="",
            domain_name="d",
            project_id=PROJECT,
        )


def test_token_request_never_logged(fake: FakeCloud, caplog: pytest.LogCaptureFixture) -> None:
    # A separate event loop run keeps this test synchronous and independent of the fixtures' loop.
    async def scenario() -> None:
        async with (
            httpx.AsyncClient(transport=httpx.MockTransport(fake)) as iam_http,
            httpx.AsyncClient(base_url=EVS, transport=httpx.MockTransport(fake)) as evs_http,
        ):
            auth = _token_auth(fake, iam_http)
            await _evs(evs_http, auth).get_group(GROUP)
            fake.revoked.add("tok-1")
            await _evs(evs_http, auth).get_group(GROUP)

    with caplog.at_level("DEBUG"):
        asyncio.run(scenario())
    assert caplog.text
    assert PASSWORD not in caplog.text
    assert not re.search(r"tok-\d", caplog.text)
