"""The simulator as a client sees it: every cloud path, auth, faults, the request log and the control API.

Most tests run twice, over real HTTP (aiohttp on port 0) and through the in-process httpx transport, to show
the two adapters behave the same. Requests are signed here with ``azswitch.signing`` directly — never with
``azswitch.cloud`` — so these tests pin the simulator to cloud-api.md, not to the project's client. Time is a
``ManualClock``; nothing sleeps.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any

import httpx
import pytest

from azswitch import signing
from azswitch.dev.simulator import ManualClock, Simulator, SimulatorServer, SimulatorTransport
from azswitch.dev.simulator.clock import sdk_date

PROJECT = "0123456789abcdef0123456789abcdef"
OTHER_PROJECT = "fedcba9876543210fedcba9876543210"
GROUP = "91085433-9499-4a68-b2c6-35072467ccd2"
AK, SK = "AKTEST0000000000", "SKTEST000000000000000000000000000000000"
GROUPS = f"/v2/{PROJECT}/os-vendor-replication-consistency-groups"
REVERSE_BODY = b'{"os-reverse-replication-consistency-group": null}'
REVERSE_KEY = (
    "POST /v2/{project_id}/os-vendor-replication-consistency-groups/{id}/action "
    "os-reverse-replication-consistency-group"
)
SEED: dict[str, Any] = {
    "projects": [{"id": PROJECT, "name": "cn-north-4"}, {"id": OTHER_PROJECT, "name": "cn-east-3"}],
    "credentials": [
        {"accessKey": AK, "secretKey": SK},
        {"accessKey": "AKSTS", "secretKey": "SKSTS", "securityToken": "sts"},
    ],
    "users": [{"name": "demo", "password": "pw", "domain": "acme"}],
    "groups": [
        {
            "projectID": PROJECT,
            "id": GROUP,
            "name": "orders",
            "availabilityZones": ["az1.dc1", "az2.dc2"],
            "primaryAZ": "az1.dc1",
            "pairs": [{"id": "pair-1", "productionVolumeID": "vol-prod", "drVolumeID": "vol-dr"}],
        }
    ],
    "pairs": [
        {
            "projectID": PROJECT,
            "id": "spare",
            "availabilityZones": ["az1.dc1", "az2.dc2"],
            "primaryAZ": "az1.dc1",
        }
    ],
    "timings": {
        "switchoverSeconds": 5,
        "copyingSeconds": 3,
        "createSeconds": 1,
        "tokenLifetimeSeconds": 3600,
    },
}


class AkSk(httpx.Auth):
    """A tiny SDK-HMAC-SHA256 signer for the tests (cloud-api.md §5.2), on top of ``azswitch.signing``."""

    requires_request_body = True

    def __init__(
        self,
        date: Callable[[], str],
        access_key: str = AK,
        secret_key: str = SK,
        signed: tuple[str, ...] = ("content-type", "host", "x-project-id", "x-sdk-date"),
        after_signing: Callable[[httpx.Request], None] | None = None,
    ) -> None:
        self.date = date
        self.access_key = access_key
        self.secret_key = secret_key
        self.signed = signed
        self.after_signing = after_signing

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["X-Sdk-Date"] = self.date()
        headers = {name.lower(): value for name, value in request.headers.items()}
        names = [name for name in self.signed if name in headers]
        raw_path, _, raw_query = request.url.raw_path.partition(b"?")
        request.headers["Authorization"] = signing.sign_request(
            self.access_key,
            self.secret_key,
            request.method,
            raw_path.decode(),
            raw_query.decode(),
            headers,
            names,
            request.content,
        )
        if self.after_signing is not None:
            self.after_signing(request)
        yield request


Connect = Callable[..., httpx.AsyncClient]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sim(clock: ManualClock) -> Simulator:
    return Simulator(SEED, clock=clock, sleep=clock.sleep)


@pytest.fixture(params=["http", "in-process"])
async def connect(request: pytest.FixtureRequest, sim: Simulator) -> AsyncIterator[Connect]:
    """Make clients that reach ``sim`` over real HTTP or through the in-process transport."""
    server: SimulatorServer | None = None
    if request.param == "http":
        server = SimulatorServer(sim)
        await server.start()
        base_url = server.url
    else:
        base_url = "http://evs.sim.test"

    def factory(**kwargs: Any) -> httpx.AsyncClient:
        if server is None:
            return httpx.AsyncClient(base_url=base_url, transport=SimulatorTransport(sim), **kwargs)
        # Plain http on loopback: no proxies from the environment, and no TLS context to build.
        return httpx.AsyncClient(base_url=base_url, trust_env=False, verify=False, **kwargs)

    yield factory
    if server is not None:
        await server.stop()


@pytest.fixture
def aksk(sim: Simulator) -> Callable[..., AkSk]:
    def make(skew: float = 0.0, **kwargs: Any) -> AkSk:
        return AkSk(lambda: sdk_date(sim.clock.wall() + skew), **kwargs)

    return make


async def token_for(client: httpx.AsyncClient, scope: dict[str, Any] | None = None) -> str:
    response = await client.post(
        "/v3/auth/tokens", json=iam_body(scope=scope or {"project": {"id": PROJECT}})
    )
    assert response.status_code == 201, response.text
    return response.headers["X-Subject-Token"]


# ------------------------------------------------------------------------------ cloud paths


@pytest.mark.parametrize(
    ("path", "params", "root", "check"),
    [
        pytest.param(
            GROUPS, {}, "replication_consistency_groups", lambda b: b[0]["id"] == GROUP, id="list-groups"
        ),
        pytest.param(
            GROUPS,
            {"name": "orders", "limit": "1", "priority_station": "az1.dc1", "volume_id": "vol-dr"},
            "replication_consistency_groups",
            lambda b: [g["id"] for g in b] == [GROUP],
            id="list-groups-filtered",
        ),
        pytest.param(
            f"{GROUPS}/{GROUP}",
            {},
            "replication_consistency_group",
            lambda b: (
                b["fault_level"] == "0"
                and b["updated_at"] is None
                and b["replication_ids"] == ["pair-1"]
                and set(b)
                >= {
                    "id",
                    "name",
                    "description",
                    "status",
                    "priority_station",
                    "replication_model",
                    "replication_status",
                    "replication_ids",
                    "created_at",
                    "updated_at",
                    "failure_detail",
                    "fault_level",
                }
            ),
            id="show-group",
        ),
        pytest.param(
            f"/v2/{PROJECT}/os-vendor-replications",
            {"replication_consistency_group_id": GROUP},
            "replications",
            lambda b: [p["id"] for p in b] == ["pair-1"],
            id="list-pairs",
        ),
        pytest.param(
            f"/v2/{PROJECT}/os-vendor-replications/pair-1",
            {},
            "replication",
            lambda b: (
                b["volume_ids"] == "vol-prod,vol-dr" and json.loads(b["record_metadata"])["volume_size"] == 10
            ),
            id="show-pair-quirks",
        ),
        pytest.param(
            f"/v2/{PROJECT}/volumes/vol-prod",
            {},
            "volume",
            lambda b: b["availability_zone"] == "az1.dc1",
            id="volume",
        ),
        pytest.param(
            f"/v2/{PROJECT}/cloudvolumes/vol-dr",
            {},
            "volume",
            lambda b: b["availability_zone"] == "az2.dc2",
            id="cloudvolume",
        ),
    ],
)
async def test_read_paths_with_aksk_and_with_a_token(
    connect: Connect,
    aksk: Callable[..., AkSk],
    path: str,
    params: dict[str, str],
    root: str,
    check: Callable[[Any], bool],
) -> None:
    async with connect() as client:
        token = await token_for(client)
        signed = await client.get(path, params=params, auth=aksk(), headers={"X-Project-Id": PROJECT})
        by_token = await client.get(path, params=params, headers={"X-Auth-Token": token})
    for response in (signed, by_token):
        assert response.status_code == 200, response.text
        assert response.headers["X-Request-Id"]
        assert check(response.json()[root])


async def test_switchover_over_the_wire_then_poll_through_time(
    connect: Connect, aksk: Callable[..., AkSk], sim: Simulator, clock: ManualClock
) -> None:
    async with connect(auth=aksk()) as client:
        response = await client.post(
            f"{GROUPS}/{GROUP}/action", content=REVERSE_BODY, headers={"Content-Type": "application/json"}
        )
        assert (response.status_code, response.content) == (200, b"")
        seen = []
        for step in (0, 5, 3):
            clock.advance(step)
            group = (await client.get(f"{GROUPS}/{GROUP}")).json()["replication_consistency_group"]
            seen.append((group["status"], group["priority_station"], group["replication_status"]))
    assert seen == [
        ("reversing", "az1.dc1", "active"),
        ("available", "az2.dc2", "copying"),
        ("available", "az2.dc2", "active"),
    ]
    assert sim.request_counts() == {
        REVERSE_KEY: 1,
        "GET /v2/{project_id}/os-vendor-replication-consistency-groups/{id}": 3,
    }


async def test_create_update_delete_over_the_wire(
    connect: Connect, aksk: Callable[..., AkSk], clock: ManualClock
) -> None:
    create = {
        "replication_consistency_group": {
            "name": "new",
            "replication_ids": ["spare"],
            "priority_station": "az1.dc1",
            "replication_model": "hypermetro",
        }
    }
    async with connect(auth=aksk()) as client:
        response = await client.post(GROUPS, json=create)
        assert response.status_code == 202
        created = response.json()["replication_consistency_group"]
        assert created["status"] == "creating"
        clock.advance(1)
        stop = {"os-stop-replication-consistency-group": None}
        assert (await client.post(f"{GROUPS}/{created['id']}/action", json=stop)).status_code == 200
        update = {"replication_consistency_group": {"name": "renamed", "remove_replication_ids": ["spare"]}}
        response = await client.put(f"{GROUPS}/{created['id']}", json=update)
        assert (response.status_code, response.json()["replication_consistency_group"]["status"]) == (
            202,
            "updating",
        )
        clock.advance(2)
        response = await client.delete(f"{GROUPS}/{created['id']}")
        assert (response.status_code, response.content) == (202, b"")
        clock.advance(2)
        response = await client.get(f"{GROUPS}/{created['id']}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "EVS.9404"


async def test_published_vector_d_is_accepted_verbatim(clock: ManualClock) -> None:
    """cloud-api.md §5.3 vector D, replayed byte for byte against a simulator whose clock says 2024-01-02."""
    seed = {
        "credentials": [
            {"accessKey": "AKEXAMPLE0000000000", "secretKey": "SKEXAMPLE0000000000000000000000000000000"}
        ],
        "groups": [
            {
                "projectID": PROJECT,
                "id": GROUP,
                "availabilityZones": ["az1.dc1", "az2.dc2"],
                "primaryAZ": "az1.dc1",
            }
        ],
    }
    sim = Simulator(seed, clock=clock, wall_clock=lambda: 1704164645.0 + 60)  # 2024-01-02T03:04:05Z + 1 min
    headers = {
        "Content-Type": "application/json",
        "X-Project-Id": PROJECT,
        "X-Sdk-Date": "20240102T030405Z",
        "Authorization": "SDK-HMAC-SHA256 Access=AKEXAMPLE0000000000, "
        "SignedHeaders=content-type;host;x-project-id;x-sdk-date, "
        "Signature=91e6be5f1ff460b48b605fc648c84a42f5b7fee98b2ce5aca4bc90084e12edc4",
    }
    async with httpx.AsyncClient(transport=SimulatorTransport(sim)) as client:
        response = await client.post(
            f"https://evs.cn-north-4.myhuaweicloud.com{GROUPS}/{GROUP}/action",
            content=b'{"os-reverse-replication-consistency-group":null}',
            headers=headers,
        )
    assert response.status_code == 200, response.text
    assert sim.group(GROUP)["status"] == "reversing"


# ------------------------------------------------------------------------------ auth failures


def _tamper_body(request: httpx.Request) -> None:
    """Swap the signed switchover body for a failover after signing (same length, so framing stays valid)."""
    body = REVERSE_BODY.replace(b"os-reverse-", b"os-failover")
    assert len(body) == len(REVERSE_BODY)
    request.stream = httpx.ByteStream(body)


@pytest.mark.parametrize(
    ("auth_kwargs", "headers", "status", "code", "message"),
    [
        pytest.param({"access_key": "AKUNKNOWN"}, {}, 401, "APIGW.0301", "does not exist", id="unknown-ak"),
        pytest.param(
            {"secret_key": "wrong"}, {}, 401, "APIGW.0301", "verify aksk signature fail", id="bad-signature"
        ),
        pytest.param({"skew": 16 * 60}, {}, 401, "APIGW.0301", "signature expired", id="clock-ahead-16-min"),
        pytest.param(
            {"skew": -16 * 60}, {}, 401, "APIGW.0301", "signature expired", id="clock-behind-16-min"
        ),
        pytest.param({"skew": 14 * 60}, {}, 200, None, None, id="clock-skew-14-min-ok"),
        pytest.param(
            {"signed": ("host",)}, {}, 401, "APIGW.0301", "x-sdk-date must be", id="date-not-signed"
        ),
        pytest.param(
            {"after_signing": _tamper_body},
            {},
            401,
            "APIGW.0301",
            "verify aksk signature fail",
            id="body-tampered",
        ),
        pytest.param(
            {"after_signing": lambda r: r.headers.__setitem__("Authorization", "Basic Zm9vOmJhcg==")},
            {},
            401,
            "APIGW.0301",
            "invalid Authorization header",
            id="garbled-authorization",
        ),
        pytest.param(
            {"after_signing": lambda r: r.headers.__delitem__("X-Sdk-Date")},
            {},
            401,
            "APIGW.0301",
            "missing from the request",
            id="signed-header-removed",
        ),
        pytest.param(
            {
                "signed": ("content-type", "host", "x-sdk-date"),
                "after_signing": lambda r: r.headers.__setitem__("X-Project-Id", OTHER_PROJECT),
            },
            {},
            400,
            "APIGW.0201",
            "does not match",
            id="unsigned-project-id-mismatch",
        ),
        pytest.param(
            {"access_key": "AKSTS", "secret_key": "SKSTS"},
            {},
            401,
            "APIGW.0301",
            "security token",
            id="sts-no-token",
        ),
        pytest.param(
            {"access_key": "AKSTS", "secret_key": "SKSTS"},
            {"X-Security-Token": "sts"},
            200,
            None,
            None,
            id="sts-with-token",
        ),
        pytest.param(None, {}, 401, "APIGW.0301", "x-auth-token not found", id="no-credentials"),
        pytest.param(
            None, {"X-Auth-Token": "MIIforged"}, 401, "APIGW.0301", "decrypt token fail", id="unknown-token"
        ),
    ],
)
async def test_auth_failures_use_the_gateway_error_shape(
    connect: Connect,
    aksk: Callable[..., AkSk],
    auth_kwargs: dict[str, Any] | None,
    headers: dict[str, str],
    status: int,
    code: str | None,
    message: str | None,
) -> None:
    auth = aksk(**auth_kwargs) if auth_kwargs is not None else httpx.USE_CLIENT_DEFAULT
    async with connect() as client:
        response = await client.post(
            f"{GROUPS}/{GROUP}/action",
            content=REVERSE_BODY,
            headers={"Content-Type": "application/json", "X-Project-Id": PROJECT, **headers},
            auth=auth,
        )
    assert response.status_code == status, response.text
    if code is not None:
        body = response.json()
        assert set(body) == {"error_code", "error_msg", "request_id"}
        assert body["error_code"] == code
        assert message is not None and message in body["error_msg"]
        assert body["request_id"] == response.headers["X-Request-Id"]


async def test_tokens_expire_and_can_be_revoked(connect: Connect, clock: ManualClock) -> None:
    async with connect() as client:
        token = await token_for(client, {"project": {"name": "cn-north-4"}})
        assert (await client.get(GROUPS, headers={"X-Auth-Token": token})).status_code == 200
        clock.advance(3600)
        expired = await client.get(GROUPS, headers={"X-Auth-Token": token})
        assert (expired.status_code, expired.json()["error_code"]) == (401, "APIGW.0307")

        fresh = await token_for(client)
        revoke = await client.delete(
            "/v3/auth/tokens", headers={"X-Auth-Token": fresh, "X-Subject-Token": fresh}
        )
        assert revoke.status_code == 204
        assert (await client.get(GROUPS, headers={"X-Auth-Token": fresh})).json()[
            "error_code"
        ] == "APIGW.0307"

        third = await token_for(client)
        assert (await client.delete("/_sim/tokens")).json() == {"revoked": 1}
        assert (await client.get(GROUPS, headers={"X-Auth-Token": third})).status_code == 401


async def test_token_scope_is_enforced(connect: Connect, aksk: Callable[..., AkSk]) -> None:
    async with connect() as client:
        other = await token_for(client, {"project": {"id": OTHER_PROJECT}})
        domain = await token_for(client, {"domain": {"name": "acme"}})
        for token in (other, domain):
            response = await client.get(GROUPS, headers={"X-Auth-Token": token})
            assert (response.status_code, response.json()["error_code"]) == (403, "APIGW.0302")
        unknown_project = await client.get("/v2/nope/os-vendor-replication-consistency-groups", auth=aksk())
        assert unknown_project.status_code == 403


def iam_body(
    password: str = "pw", methods: tuple[str, ...] = ("password",), scope: dict[str, Any] | None = None
) -> dict[str, Any]:
    user = {"name": "demo", "password": password, "domain": {"name": "acme"}}
    return {
        "auth": {
            "identity": {"methods": list(methods), "password": {"user": user}},
            "scope": scope if scope is not None else {"project": {"name": "cn-north-4"}},
        }
    }


@pytest.mark.parametrize(
    ("body", "query", "status", "message"),
    [
        pytest.param(iam_body(password="wrong"), "", 401, "username or password", id="wrong-password"),
        pytest.param(
            iam_body(scope={"project": {"name": "mars-1"}}), "", 400, "does not exist", id="unknown-project"
        ),
        pytest.param(iam_body(methods=("token",)), "", 400, "password", id="no-password-method"),
        pytest.param({"auth": {}}, "", 400, "password", id="no-identity"),
        pytest.param(iam_body(), "?nocatalog=true", 201, None, id="nocatalog"),
        pytest.param(iam_body(), "", 201, None, id="with-catalog"),
    ],
)
async def test_iam_password_tokens(
    connect: Connect, body: dict[str, Any], query: str, status: int, message: str | None
) -> None:
    async with connect() as client:
        response = await client.post(f"/v3/auth/tokens{query}", json=body)
    assert response.status_code == status, response.text
    if message is not None:
        error = response.json()["error"]
        assert error["code"] == status and message in error["message"]
        return
    token = response.json()["token"]
    assert token["expires_at"].endswith("Z")
    assert token["project"]["id"] == PROJECT
    assert ("catalog" in token) is (query == "")
    assert response.headers["X-Subject-Token"].startswith("MII")


# ------------------------------------------------------------------------------ malformed requests


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="malformed-json"),
        pytest.param(b"", id="empty"),
        pytest.param(b'{"os-teleport-replication-consistency-group": null}', id="unknown-action"),
        pytest.param(
            b'{"os-sync-replication-consistency-group": null, "os-stop-replication-consistency-group": null}',
            id="two-actions",
        ),
        pytest.param(b"{}", id="no-action"),
        pytest.param(b'["os-reverse-replication-consistency-group"]', id="a-list"),
        pytest.param(b'{"os-reverse-replication-consistency-group": 1}', id="non-null-value"),
    ],
)
async def test_malformed_action_bodies_are_400(
    connect: Connect, aksk: Callable[..., AkSk], sim: Simulator, body: bytes
) -> None:
    async with connect(auth=aksk()) as client:
        response = await client.post(f"{GROUPS}/{GROUP}/action", content=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "EVS.9400"
    assert sim.group(GROUP)["status"] == "available"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        pytest.param("GET", f"{GROUPS}/ghost", 404, "EVS.9404", id="unknown-group"),
        pytest.param("POST", f"{GROUPS}/ghost/action", 404, "EVS.9404", id="action-unknown-group"),
        pytest.param(
            "GET", f"/v2/{PROJECT}/os-vendor-replications/ghost", 404, "EVS.9404", id="unknown-pair"
        ),
        pytest.param("GET", f"/v2/{PROJECT}/volumes/ghost", 404, "EVS.9404", id="unknown-volume"),
        pytest.param("GET", f"{GROUPS}/detail/more", 404, "APIGW.0101", id="unknown-path"),
        pytest.param("PATCH", f"{GROUPS}/{GROUP}", 404, "APIGW.0101", id="unknown-method"),
        pytest.param("GET", f"{GROUPS}?limit=0", 400, "EVS.9400", id="bad-limit"),
        pytest.param("PUT", f"{GROUPS}/{GROUP}", 400, "EVS.9400", id="update-without-body"),
    ],
)
async def test_error_answers(
    connect: Connect, aksk: Callable[..., AkSk], method: str, path: str, status: int, code: str
) -> None:
    content = REVERSE_BODY if path.endswith("/action") else None
    async with connect(auth=aksk()) as client:
        response = await client.request(method, path, content=content)
    assert response.status_code == status
    body = response.json()
    assert (body["error"]["code"] if "error" in body else body["error_code"]) == code
    assert response.headers["X-Request-Id"]


# ------------------------------------------------------------------------------ faults


async def test_throttling_answers_429_with_retry_after_then_recovers(
    connect: Connect, aksk: Callable[..., AkSk], sim: Simulator
) -> None:
    sim.set_faults({"throttle": {"count": 2, "retryAfter": 1.5}})
    async with connect(auth=aksk()) as client:
        answers = [await client.get(GROUPS) for _ in range(3)]
    assert [r.status_code for r in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "2"
    assert answers[0].json()["error_code"] == "APIGW.0308"


async def test_rate_limit_is_a_token_bucket_per_project(
    connect: Connect, aksk: Callable[..., AkSk], sim: Simulator, clock: ManualClock
) -> None:
    sim.set_faults({"rateLimit": {"perSecond": 2, "burst": 3}})
    async with connect(auth=aksk()) as client:
        burst = [await client.get(GROUPS) for _ in range(4)]
        assert [r.status_code for r in burst] == [200, 200, 200, 429]
        assert burst[3].headers["Retry-After"] == "1"
        assert burst[3].json()["error_code"] == "APIGW.0308"
        assert "limit:2, time:1 second" in burst[3].json()["error_msg"]
        clock.advance(0.5)  # refills one token
        assert [(await client.get(GROUPS)).status_code for _ in range(2)] == [200, 429]
        clock.advance(10)  # refills to the burst, not beyond
        assert [(await client.get(GROUPS)).status_code for _ in range(4)] == [200, 200, 200, 429]
        # Another project has a bucket of its own (this one is not ours, so the cloud says no, but not 429).
        other = await client.get(GROUPS.replace(PROJECT, "0" * 32))
        assert other.status_code != 429
    throttled = [r for r in sim.requests() if r["status"] == 429]
    assert len(throttled) == 3
    assert all(r["project"] == PROJECT for r in throttled)


async def test_counted_errors_then_success(
    connect: Connect, aksk: Callable[..., AkSk], sim: Simulator
) -> None:
    sim.set_faults({"errorCount": 2, "errorStatus": 500})
    async with connect(auth=aksk()) as client:
        statuses = [(await client.get(GROUPS)).status_code for _ in range(3)]
    assert statuses == [500, 500, 200]


async def test_random_errors_repeat_with_the_same_seed(
    connect: Connect, aksk: Callable[..., AkSk], sim: Simulator
) -> None:
    runs = []
    async with connect(auth=aksk()) as client:
        for _ in range(2):
            sim.set_faults({"errorRate": 0.5, "seed": 7})
            runs.append([(await client.get(GROUPS)).status_code for _ in range(12)])
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 503}


async def test_latency_is_spent_on_the_injected_clock(
    connect: Connect, aksk: Callable[..., AkSk], sim: Simulator, clock: ManualClock
) -> None:
    sim.set_faults({"latencySeconds": 0.3})
    before = clock()
    async with connect(auth=aksk()) as client:
        assert (await client.get(GROUPS)).status_code == 200
    assert clock() - before == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("when", "status_after"),
    [
        pytest.param("before", "available", id="before-nothing-happened"),
        pytest.param("after", "reversing", id="after"),
    ],
)
async def test_dropped_connections(
    connect: Connect, aksk: Callable[..., AkSk], sim: Simulator, when: str, status_after: str
) -> None:
    sim.set_faults(
        {"drop": {"count": 1, "when": when}, "match": {"method": "POST", "pathContains": "/action"}}
    )
    async with connect(auth=aksk()) as client:
        assert (await client.get(GROUPS)).status_code == 200  # not matched
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(f"{GROUPS}/{GROUP}/action", content=REVERSE_BODY)
        assert (await client.get(f"{GROUPS}/{GROUP}")).json()["replication_consistency_group"][
            "status"
        ] == status_after
    dropped = [r for r in sim.requests() if r["dropped"]]
    assert len(dropped) == 1
    assert dropped[0]["status"] == (None if when == "before" else 200)
    assert dropped[0]["action"] == "os-reverse-replication-consistency-group"


async def test_faults_match_and_clear_over_the_control_api(
    connect: Connect, aksk: Callable[..., AkSk]
) -> None:
    faults = {"errorCount": 5, "match": {"action": "os-sync-replication-consistency-group"}}
    async with connect() as control, connect(auth=aksk()) as client:
        assert (await control.post("/_sim/faults", json=faults)).json()["faults"]["errorCount"] == 5
        sync = await client.post(
            f"{GROUPS}/{GROUP}/action", json={"os-sync-replication-consistency-group": None}
        )
        assert sync.status_code == 503
        assert (await client.get(GROUPS)).status_code == 200
        assert (await control.get("/_sim/faults")).json()["faults"]["errorCount"] == 4
        assert (await control.delete("/_sim/faults")).status_code == 204
        sync = await client.post(
            f"{GROUPS}/{GROUP}/action", json={"os-sync-replication-consistency-group": None}
        )
        assert sync.status_code == 200
        bad = await control.post("/_sim/faults", json={"errorRate": 3})
        assert bad.status_code == 400 and "errorRate" in bad.json()["error"]


# ------------------------------------------------------------------------------ request log


async def test_request_log_and_counts(connect: Connect, aksk: Callable[..., AkSk], sim: Simulator) -> None:
    async with connect(auth=aksk()) as client:
        await client.get(GROUPS)
        await client.post(f"{GROUPS}/{GROUP}/action", content=REVERSE_BODY)
        await client.post(f"{GROUPS}/{GROUP}/action", content=b"{bad")
        await client.get("/_sim/groups")  # control calls are never logged
        log = (await client.get("/_sim/requests")).json()
        counts = (await client.get("/_sim/requests/counts")).json()
        assert (await client.delete("/_sim/requests")).status_code == 204
    assert [(r["seq"], r["method"], r["status"], r["action"]) for r in log] == [
        (1, "GET", 200, None),
        (2, "POST", 200, "os-reverse-replication-consistency-group"),
        (3, "POST", 400, None),
    ]
    assert {r["project"] for r in log} == {PROJECT}
    assert [r["group"] for r in log] == [None, GROUP, GROUP]
    assert {r["auth"] for r in log} == {"aksk"}
    assert counts == {
        "GET /v2/{project_id}/os-vendor-replication-consistency-groups": 1,
        REVERSE_KEY: 1,
        "POST /v2/{project_id}/os-vendor-replication-consistency-groups/{id}/action": 1,
    }
    assert sim.requests() == []
    assert sim.count("POST", "/v2/{project_id}/os-vendor-replication-consistency-groups/{id}/action") == 0


# ------------------------------------------------------------------------------ control API


async def test_control_api_drives_drift_failures_and_outages(
    connect: Connect, aksk: Callable[..., AkSk], clock: ManualClock
) -> None:
    async with connect() as control, connect(auth=aksk()) as client:

        async def group() -> dict[str, Any]:
            response = await client.get(f"{GROUPS}/{GROUP}")
            body: dict[str, Any] = response.json()["replication_consistency_group"]
            return body

        drift = await control.post(f"/_sim/groups/{GROUP}/primary", json={"primaryAZ": "az2.dc2"})
        assert drift.json()["primaryAZ"] == "az2.dc2"
        assert (await group())["priority_station"] == "az2.dc2"

        failing = await control.post(f"/_sim/groups/{GROUP}/fail-next", json={"action": "reverse"})
        assert failing.json()["failNext"] == {"reverse": "37000212"}
        await client.post(f"{GROUPS}/{GROUP}/action", content=REVERSE_BODY)
        await control.post("/_sim/clock", json={"advanceSeconds": 5})
        assert ((await group())["status"], (await group())["failure_detail"]) == (
            "error_reversing",
            "37000212",
        )

        outage = await control.post("/_sim/az-outage", json={"az": "az2.dc2", "faultLevel": "5"})
        assert outage.json()["groups"] == [GROUP]
        assert ((await group())["fault_level"], (await group())["replication_status"]) == ("5", "inactive")
        recovered = await control.delete("/_sim/az-outage/az2.dc2")
        assert recovered.json()["groups"] == [GROUP]
        clock.advance(3)
        assert ((await group())["fault_level"], (await group())["replication_status"]) == ("0", "active")

        patched = await control.patch(f"/_sim/groups/{GROUP}", json={"status": "available"})
        assert patched.json()["status"] == "available"
        internal = (await control.get("/_sim/groups")).json()
        assert [g["id"] for g in internal] == [GROUP]
        assert internal[0]["availabilityZones"] == ["az1.dc1", "az2.dc2"]


async def test_control_api_reset_and_seed(connect: Connect, aksk: Callable[..., AkSk]) -> None:
    extra = {
        "groups": [
            {
                "projectID": PROJECT,
                "id": "g2",
                "availabilityZones": ["az1.dc1", "az3.dc3"],
                "primaryAZ": "az3.dc3",
            }
        ]
    }
    async with connect() as control, connect(auth=aksk()) as client:
        added = await control.post("/_sim/seed", json=extra)
        assert {g["id"] for g in added.json()["groups"]} == {GROUP, "g2"}
        again = await control.post("/_sim/seed", json=extra)
        assert again.status_code == 400 and "g2" in again.json()["error"]

        await control.post(f"/_sim/groups/{GROUP}/primary", json={"primaryAZ": "az2.dc2"})
        await control.post("/_sim/reset")
        assert (await client.get(f"{GROUPS}/{GROUP}")).json()["replication_consistency_group"][
            "priority_station"
        ] == ("az1.dc1")
        assert (await client.get(f"{GROUPS}/g2")).status_code == 404

        replaced = await control.post("/_sim/reset", json={**SEED, "groups": extra["groups"]})
        assert [g["id"] for g in replaced.json()["groups"]] == ["g2"]
        bad = await control.post("/_sim/reset", json={"groups": [{"projectID": PROJECT}]})
        assert bad.status_code == 400 and "groups[0].availabilityZones" in bad.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        pytest.param("GET", "/_sim/nothing", None, 404, id="unknown-endpoint"),
        pytest.param("PUT", "/_sim/faults", None, 405, id="wrong-method"),
        pytest.param("GET", "/_sim/groups/ghost", None, 404, id="unknown-group"),
        pytest.param(
            "POST", "/_sim/groups/ghost/primary", {"primaryAZ": "az1.dc1"}, 404, id="primary-unknown-group"
        ),
        pytest.param(
            "POST", f"/_sim/groups/{GROUP}/primary", {"primary": "az1.dc1"}, 400, id="primary-bad-body"
        ),
        pytest.param(
            "POST", "/_sim/az-outage", {"az": "az1.dc1", "faultLevel": "9"}, 400, id="bad-fault-level"
        ),
        pytest.param("DELETE", "/_sim/az-outage/az1.dc1", None, 404, id="recover-healthy-az"),
        pytest.param("POST", "/_sim/clock", {"advanceSeconds": -1}, 400, id="clock-backwards"),
        pytest.param("POST", "/_sim/seed", None, 400, id="seed-without-body"),
    ],
)
async def test_control_api_errors(
    connect: Connect, method: str, path: str, body: dict[str, Any] | None, status: int
) -> None:
    async with connect() as control:
        response = await control.request(method, path, json=body)
    assert response.status_code == status
    assert response.json()["error"]
    assert response.headers["X-Request-Id"]
