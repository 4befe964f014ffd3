"""AK/SK signing: the published and derived vectors (cloud-api.md §5.3) and agreement with Huawei's signer.

The vectors pin ``azswitch.signing`` step by step and ``AkSkAuth`` end to end on real httpx requests (sync and
async clients). The generated cases compare ``AkSkAuth`` with ``huaweicloudsdkcore``'s ``Signer`` on the same
logical request and the same header set, so any difference in encoding, sorting or hashing shows up.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from types import SimpleNamespace

import httpx
import pytest
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

from azswitch import signing
from azswitch.cloud import AkSkAuth, EvsClient, RateLimiter, RetryPolicy

EMPTY_HASH = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
PROJECT = "0123456789abcdef0123456789abcdef"
DERIVED_AK = "AKEXAMPLE0000000000"
DERIVED_SK = "SKEXAMPLE0000000000000000000000000000000"


@dataclass(frozen=True)
class Vector:
    access_key: str
    secret_key: str
    method: str
    url: str  # the logical URL, as a caller would write it
    headers: dict[str, str]  # lower-case names: exactly the signed set, host included
    body: bytes
    canonical: str
    canonical_sha256: str
    signature: str
    params: list[tuple[str, str]] = field(default_factory=list)

    @property
    def raw_path(self) -> str:
        return httpx.URL(self.url).raw_path.decode().partition("?")[0]

    @property
    def raw_query(self) -> str:
        url = httpx.URL(self.url, params=self.params) if self.params else httpx.URL(self.url)
        return url.query.decode()

    @property
    def authorization(self) -> str:
        return signing.authorization(self.access_key, self.headers, self.signature)


def _canonical(method: str, uri: str, query: str, headers: dict[str, str], body_hash: str) -> str:
    names = sorted(headers)
    block = "".join(f"{name}:{headers[name]}\n" for name in names)
    return "\n".join([method, uri, query, block, ";".join(names), body_hash])


_D_PATH = (
    f"/v2/{PROJECT}/os-vendor-replication-consistency-groups/91085433-9499-4a68-b2c6-35072467ccd2/action"
)
_D_BODY = b'{"os-reverse-replication-consistency-group":null}'
_D_HEADERS = {
    "content-type": "application/json",
    "host": "evs.cn-north-4.myhuaweicloud.com",
    "x-project-id": PROJECT,
    "x-sdk-date": "20240102T030405Z",
}
_E_PATH = f"/v1/{PROJECT}/server-groups/40df180b-9fe2-471a-8c64-1b758dc84189/action"
_E_BODY = b'{"reverse-server-group":{"priority_station":"target"}}'
_E_HEADERS = {**_D_HEADERS, "host": "sdrs.cn-north-4.myhuaweicloud.com"}
_A_HEADERS = {
    "content-type": "application/json",
    "host": "service.region.example.com",
    "x-sdk-date": "20191115T033655Z",
}
_BC_HEADERS = {"x-sdk-date": "20060102T150405Z"}
_C_BODY = b'{"Name":"test","Id":1}\n'
_F_HEADERS = {"host": "sdrs.cn-north-4.myhuaweicloud.com", "x-sdk-date": "20240102T030405Z"}

VECTORS = {
    "A-huawei-guide": Vector(
        "QTWAOYTTINDUT2QVKYUC",
        "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc",
        "GET",
        "https://service.region.example.com/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs"
        "?limit=2&marker=13551d6b-755d-4757-b956-536f674975c0",
        _A_HEADERS,
        b"",
        _canonical(
            "GET",
            "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs/",
            "limit=2&marker=13551d6b-755d-4757-b956-536f674975c0",
            _A_HEADERS,
            EMPTY_HASH,
        ),
        "b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a",
        "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe",
    ),
    "B-sdk-go-get": Vector(
        "AccessKey",
        "SecretKey",
        "GET",
        "https://example.huaweicloud.com/path?limit=1",
        _BC_HEADERS,
        b"",
        _canonical("GET", "/path/", "limit=1", _BC_HEADERS, EMPTY_HASH),
        "85c3b7730f308aee452b16138a42a914397e43a8f0d732dfa521c0ef2afa98a4",
        "5a2ce64c865e0e6046321c6f3d5a77ba8413eeaf355c3166c03d58d02ac79624",
    ),
    "C-sdk-go-post": Vector(
        "AccessKey",
        "SecretKey",
        "POST",
        "https://example.huaweicloud.com/path?key=value",
        _BC_HEADERS,
        _C_BODY,
        _canonical(
            "POST",
            "/path/",
            "key=value",
            _BC_HEADERS,
            "a29d7b4c5efd1a22011d69fd7b7aee76fe51e4083c609244228de258afd61289",
        ),
        "13f75ff5f5216199f986c7e7f2f77834d5e160ad9e46f37319816dc72ba7eeab",
        "cecc2af119b18ab70b4d094c0750f3b42c02f254903179a0fc2cc72fc9db4f59",
    ),
    "D-evs-switchover": Vector(
        DERIVED_AK,
        DERIVED_SK,
        "POST",
        f"https://evs.cn-north-4.myhuaweicloud.com{_D_PATH}",
        _D_HEADERS,
        _D_BODY,
        _canonical(
            "POST",
            _D_PATH + "/",
            "",
            _D_HEADERS,
            "4b4915c38f70e03226ecbb738714decb03d358b2011747b49d7b90f8952d12bb",
        ),
        "270f878cb2e56b81f9c702c841e95e41a4697fbde5dec5772af82dca8b9b9988",
        "91e6be5f1ff460b48b605fc648c84a42f5b7fee98b2ce5aca4bc90084e12edc4",
    ),
    "E-sdrs-switchover": Vector(
        DERIVED_AK,
        DERIVED_SK,
        "POST",
        f"https://sdrs.cn-north-4.myhuaweicloud.com{_E_PATH}",
        _E_HEADERS,
        _E_BODY,
        _canonical(
            "POST",
            _E_PATH + "/",
            "",
            _E_HEADERS,
            "1bcf3d1be4126cd34a14c4112784ebed3df3b63c1acbf2671da8915b8e02f484",
        ),
        "6aaa7816fd4f1ebca5a1db362503684299e643f15ea28d9f9171f67326b2548d",
        "b87ecfa4def89152ce43e2c4114bac4f84e02c44ad22bdff61ebe69259ea1367",
    ),
    "F-query-encoding": Vector(
        DERIVED_AK,
        DERIVED_SK,
        "GET",
        f"https://sdrs.cn-north-4.myhuaweicloud.com/v1/{PROJECT}/server-groups",
        _F_HEADERS,
        b"",
        _canonical(
            "GET",
            f"/v1/{PROJECT}/server-groups/",
            "limit=10&name=my%20group&status=available&status=protected",
            _F_HEADERS,
            EMPTY_HASH,
        ),
        "e88a561e307d51e31ff67e990b597af86e65010e03dd28e5916cf023558b51ac",
        "2e644eccac7d491d55de326a23456c81923eec1f1c66b3cf0ffe3bd78187b9dc",
        params=[("name", "my group"), ("limit", "10"), ("status", "protected"), ("status", "available")],
    ),
}
ALL = [pytest.param(vector, id=name) for name, vector in VECTORS.items()]
# AkSkAuth always signs host, so only the vectors that sign host can be reproduced through it.
WITH_HOST = [pytest.param(vector, id=name) for name, vector in VECTORS.items() if "host" in vector.headers]


# --- azswitch.signing, step by step ----------------------------------------------------------------------


@pytest.mark.parametrize("vector", ALL)
def test_canonical_request(vector: Vector) -> None:
    canonical = signing.canonical_request(
        vector.method, vector.raw_path, vector.raw_query, vector.headers, vector.headers, vector.body
    )
    assert canonical == vector.canonical
    assert hashlib.sha256(canonical.encode()).hexdigest() == vector.canonical_sha256


@pytest.mark.parametrize("vector", ALL)
def test_signature(vector: Vector) -> None:
    to_sign = signing.string_to_sign(vector.headers["x-sdk-date"], vector.canonical)
    assert to_sign == f"SDK-HMAC-SHA256\n{vector.headers['x-sdk-date']}\n{vector.canonical_sha256}"
    assert signing.signature(vector.secret_key, to_sign) == vector.signature


@pytest.mark.parametrize("vector", ALL)
def test_sign_request(vector: Vector) -> None:
    authorization = signing.sign_request(
        vector.access_key,
        vector.secret_key,
        vector.method,
        vector.raw_path,
        vector.raw_query,
        vector.headers,
        vector.headers,
        vector.body,
    )
    assert authorization == vector.authorization


def test_published_authorization_header_a() -> None:
    assert VECTORS["A-huawei-guide"].authorization == (
        "SDK-HMAC-SHA256 Access=QTWAOYTTINDUT2QVKYUC, SignedHeaders=content-type;host;x-sdk-date, "
        "Signature=7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
    )


def test_vector_c_hashes_the_exact_bytes() -> None:
    vector = VECTORS["C-sdk-go-post"]
    without_newline = signing.sign_request(
        vector.access_key,
        vector.secret_key,
        vector.method,
        vector.raw_path,
        vector.raw_query,
        vector.headers,
        vector.headers,
        vector.body.rstrip(b"\n"),
    )
    assert without_newline != vector.authorization


# --- AkSkAuth on real httpx requests ---------------------------------------------------------------------


def _request_headers(vector: Vector) -> dict[str, str]:
    # httpx adds Host itself; the rest are given as a caller would.
    return {name: value for name, value in vector.headers.items() if name != "host"}


def _capture(sent: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    return httpx.MockTransport(handler)


@pytest.mark.parametrize("vector", WITH_HOST)
def test_aksk_auth_sync_client(vector: Vector) -> None:
    sent: list[httpx.Request] = []
    with httpx.Client(transport=_capture(sent)) as client:
        client.request(
            vector.method,
            vector.url,
            params=vector.params or None,
            headers=_request_headers(vector),
            content=vector.body or None,
            auth=AkSkAuth(vector.access_key, vector.secret_key),
        )
    assert sent[0].headers["Authorization"] == vector.authorization
    assert sent[0].headers["X-Sdk-Date"] == vector.headers["x-sdk-date"]


@pytest.mark.parametrize("vector", WITH_HOST)
async def test_aksk_auth_async_client(vector: Vector) -> None:
    sent: list[httpx.Request] = []
    async with httpx.AsyncClient(transport=_capture(sent)) as client:
        await client.request(
            vector.method,
            vector.url,
            params=vector.params or None,
            headers=_request_headers(vector),
            content=vector.body or None,
            auth=AkSkAuth(vector.access_key, vector.secret_key),
        )
    assert sent[0].headers["Authorization"] == vector.authorization


async def test_evs_client_switchover_sends_vector_d() -> None:
    """The whole client path (body serialisation, headers, signing) produces exactly vector D."""
    vector = VECTORS["D-evs-switchover"]
    sent: list[httpx.Request] = []
    async with httpx.AsyncClient(
        base_url="https://evs.cn-north-4.myhuaweicloud.com",
        transport=_capture(sent),
        headers={"X-Sdk-Date": vector.headers["x-sdk-date"]},
    ) as http:
        client = EvsClient(
            http,
            project_id=PROJECT,
            auth=AkSkAuth(vector.access_key, vector.secret_key),
            retry=RetryPolicy(max_attempts=1),
            limiter=RateLimiter(1000, 1000),
        )
        await client.switchover("91085433-9499-4a68-b2c6-35072467ccd2")
    (request,) = sent
    assert request.url.raw_path.decode() == _D_PATH
    assert request.content == _D_BODY
    assert request.headers["Authorization"] == vector.authorization


# --- agreement with the official signer on generated requests -----------------------------------------

_PATH_CHARS = "abcXYZ019-_.~ !$&'()*+,;=:@éß中文😀"  # no '/', '?', '#', '%': they would change the URL
_QUERY_CHARS = "abcXYZ019-_.~ !$&'()*+,;=:@/?#%éß中文😀"
_HOSTS = ["evs.cn-north-4.myhuaweicloud.com", "sdrs.eu-west-101.myhuaweicloud.eu", "127.0.0.1:8443"]


@dataclass(frozen=True)
class Generated:
    method: str
    host: str
    path: str
    params: list[tuple[str, str]]
    headers: dict[str, str]  # as the official signer gets them (X-Security-Token included)
    security_token: str | None
    body: bytes


def _text(rng: random.Random, alphabet: str, low: int, high: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


def _generate(rng: random.Random) -> Generated:
    method = rng.choice(["GET", "GET", "POST", "PUT", "DELETE"])
    segments = []
    for _ in range(rng.randint(1, 5)):
        segment = _text(rng, _PATH_CHARS, 1, 8)
        segments.append(segment if segment.strip(".") else segment + "x")  # "." and ".." get normalised
    path = "/" + "/".join(segments) + rng.choice(["", "/"])
    names = [_text(rng, _QUERY_CHARS, 1, 6) for _ in range(rng.randint(0, 3))]
    params = [(name, _text(rng, _QUERY_CHARS, 0, 8)) for name in names for _ in range(rng.randint(1, 3))]
    rng.shuffle(params)
    headers = {"X-Sdk-Date": f"20{rng.randint(10, 39)}0{rng.randint(1, 9)}1{rng.randint(0, 9)}T010203Z"}
    body = b""
    if method in {"POST", "PUT"}:
        payload = {
            _text(rng, _QUERY_CHARS, 1, 5): rng.choice([None, 1, 2.5, True, _text(rng, _QUERY_CHARS, 0, 9)])
        }
        body = json.dumps(payload, ensure_ascii=rng.random() < 0.5).encode()
        headers["Content-Type"] = rng.choice(["application/json", "application/json;charset=utf-8"])
    if rng.random() < 0.5:
        headers["X-Project-Id"] = PROJECT
    token = _text(rng, "abcdefXYZ0123456789+/=", 8, 40) if rng.random() < 0.3 else None
    if token is not None:
        headers["X-Security-Token"] = token
    return Generated(method, rng.choice(_HOSTS), path, params, headers, token, body)


def _official(case: Generated) -> str:
    request = SdkRequest(
        method=case.method,
        schema="https",
        host=case.host,
        resource_path=case.path,
        query_params=list(case.params),
        header_params=dict(case.headers),
        body=case.body,
    )
    Signer(SimpleNamespace(ak=DERIVED_AK, sk=DERIVED_SK)).sign(request)
    return str(request.header_params["Authorization"])


def _sort_order_matters(case: Generated) -> bool:
    """True when sorting the parameters by raw text (the official SDKs' rule) and by encoded text disagree:
    an encoded character ('%XY', non-ASCII) meets an unreserved one at the same position."""
    encoded = sorted((signing._encode(k), signing._encode(v)) for k, v in case.params)
    raw = [(signing._encode(k), signing._encode(v)) for k, v in sorted(case.params)]
    return encoded != raw


_RNG = random.Random(20240102)
CASES = [_generate(_RNG) for _ in range(200)]


def _sign_with_aksk_auth(case: Generated) -> str:
    request = httpx.Request(
        case.method,
        f"https://{case.host}{case.path}",
        params=case.params or None,
        headers={name: value for name, value in case.headers.items() if name != "X-Security-Token"},
        content=case.body or None,
    )
    flow = AkSkAuth(DERIVED_AK, DERIVED_SK, security_token=case.security_token).sync_auth_flow(request)
    return next(flow).headers["Authorization"]


@pytest.mark.parametrize(
    "case", [pytest.param(case, id=f"{number:03d}-{case.method}") for number, case in enumerate(CASES)]
)
def test_agrees_with_official_signer(case: Generated) -> None:
    assert _sign_with_aksk_auth(case) == _official(case)


def test_generated_cases_cover_the_interesting_inputs() -> None:
    """Guards the generator: a change that stopped producing these would make the agreement test toothless."""
    assert any(any(ord(ch) > 127 for ch in case.path) for case in CASES)
    assert any(" " in case.path for case in CASES)
    assert any(any(ord(ch) > 127 for ch in name + value) for case in CASES for name, value in case.params)
    assert any(" " in value for case in CASES for _, value in case.params)
    assert any(len({n for n, _ in case.params}) < len(case.params) for case in CASES)  # repeated names
    assert any(case.body for case in CASES)
    assert any(case.security_token for case in CASES)
    assert any("X-Project-Id" in case.headers for case in CASES)
    assert any(":" in case.host for case in CASES)
    assert sum(_sort_order_matters(case) for case in CASES) >= 20
