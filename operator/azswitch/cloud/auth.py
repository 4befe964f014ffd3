"""Authentication for the cloud API as ``httpx.Auth`` classes: AK/SK request signing and IAM password tokens.

httpx calls an auth class for every request it sends (retries and resends included), so signing and token
handling live here and nowhere else. The signature itself is ``azswitch.signing`` (shared with the
simulator's verifier); this module only decides which headers take part and feeds it what is actually sent.
Neither class ever shows a secret in its ``repr`` or in an error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, Callable, Generator
from datetime import UTC, datetime
from typing import Protocol

import httpx

from azswitch import signing
from azswitch.cloud.transport import error_from_exception, error_from_response
from azswitch.errors import CloudAuthError, CloudError, ConfigError

logger = logging.getLogger("azswitch.cloud")

#: Signed whenever the request carries them (host and x-sdk-date always). X-Project-Id and X-Security-Token
#: are signed as the official SDK does (cloud-api.md §5.2), so that a proxy cannot swap them.
_OPTIONAL_SIGNED_HEADERS = ("content-type", "x-project-id", "x-security-token")


def _require(name: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty string")
    return value


def _mask(value: str) -> str:
    return value[:4] + "…" if len(value) > 8 else "***"


class AkSkCredentials(Protocol):
    """What ``AkSkAuth.from_credentials`` needs; e.g. the reconciler's ``Credentials`` read from a Secret."""

    @property
    def access_key(self) -> str: ...

    @property
    def secret_key(self) -> str: ...

    @property
    def security_token(self) -> str | None: ...


class AkSkAuth(httpx.Auth):
    """Signs each request with ``SDK-HMAC-SHA256`` (cloud-api.md §5.2), for sync and async clients alike.

    An ``X-Sdk-Date`` already on the request is kept (that is how tests pin time); otherwise the current UTC
    time is used. With temporary credentials, ``X-Security-Token`` is added before signing.
    """

    requires_request_body = True

    def __init__(self, access_key: str, secret_key: str, security_token: str | None = None) -> None:
        self._access_key = _require("access_key", access_key)
        self._secret_key = _require("secret_key", secret_key)
        if security_token is not None:
            _require("security_token", security_token)
        self._security_token = security_token

    @classmethod
    def from_credentials(cls, credentials: AkSkCredentials) -> AkSkAuth:
        return cls(credentials.access_key, credentials.secret_key, credentials.security_token)

    def __repr__(self) -> str:
        token = "None" if self._security_token is None else "'***'"
        return f"AkSkAuth(access_key='{_mask(self._access_key)}', secret_key='***', security_token={token})"

    def secret_values(self) -> tuple[str, ...]:
        return tuple(s for s in (self._access_key, self._secret_key, self._security_token) if s)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request

    def sign(self, request: httpx.Request) -> None:
        """Add ``X-Sdk-Date`` (if missing), ``X-Security-Token`` (if any) and ``Authorization``."""
        if signing.SDK_DATE_HEADER not in request.headers:
            request.headers["X-Sdk-Date"] = datetime.now(UTC).strftime(signing.SDK_DATE_FORMAT)
        if self._security_token is not None:
            request.headers["X-Security-Token"] = self._security_token
        names = ["host", signing.SDK_DATE_HEADER]
        names += [name for name in _OPTIONAL_SIGNED_HEADERS if name in request.headers]
        headers = {name: request.headers[name] for name in names}
        # Sign the path and query exactly as they go on the wire, not a re-encoding of them.
        raw_path, _, raw_query = request.url.raw_path.decode("ascii").partition("?")
        request.headers["Authorization"] = signing.sign_request(
            self._access_key,
            self._secret_key,
            request.method,
            raw_path,
            raw_query,
            headers,
            names,
            request.content,
        )


class TokenAuth(httpx.Auth):
    """An IAM user token (password authentication, cloud-api.md §5.1), sent as ``X-Auth-Token``.

    The token is fetched on first use and cached until ``refresh_margin`` seconds before its ``expires_at``.
    Concurrent requests share one fetch (an ``asyncio.Lock``). When the API answers 401 the token is dropped,
    fetched again once and the request resent once — also for a switchover: the gateway authenticates before
    it forwards anything, so a 401 means the service never saw the request and resending cannot act twice.
    A second 401 is returned as is (and becomes ``CloudAuthError``). Async clients only.
    """

    requires_request_body = True

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        iam_endpoint: str,
        username: str,
        password: str,
        domain_name: str,
        project_id: str,
        refresh_margin: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._url = _require("iam_endpoint", iam_endpoint).rstrip("/") + "/v3/auth/tokens"
        self._username = _require("username", username)
        self._password = _require("password", password)
        self._domain_name = _require("domain_name", domain_name)
        self._project_id = _require("project_id", project_id)
        if refresh_margin < 0:
            raise ConfigError(f"refresh_margin must not be negative, got {refresh_margin}")
        self._margin = refresh_margin
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def __repr__(self) -> str:
        return (
            f"TokenAuth(iam_endpoint={self._url!r}, username={self._username!r}, "
            f"domain_name={self._domain_name!r}, project_id={self._project_id!r}, password='***')"
        )

    def secret_values(self) -> tuple[str, ...]:
        return tuple(s for s in (self._password, self._token) if s)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("TokenAuth needs an httpx.AsyncClient (the token fetch is asynchronous)")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.token()
        request.headers["X-Auth-Token"] = token
        response = yield request
        if response.status_code == 401:
            self._invalidate(token)
            request.headers["X-Auth-Token"] = await self.token()
            yield request

    async def token(self) -> str:
        """A token valid for at least ``refresh_margin`` more seconds; fetched only when needed."""
        if self._token is not None and self._fresh():
            return self._token
        async with self._lock:
            # Whoever held the lock before may have fetched one already.
            if self._token is None or not self._fresh():
                self._token, self._expires_at = await self._fetch()
            return self._token

    def _fresh(self) -> bool:
        return self._clock() < self._expires_at - self._margin

    def _invalidate(self, rejected: str) -> None:
        # Only the token that was rejected: a concurrent request may have refreshed it already.
        if self._token == rejected:
            self._token = None

    async def _fetch(self) -> tuple[str, float]:
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": self._username,
                            "password": self._password,
                            "domain": {"name": self._domain_name},
                        }
                    },
                },
                "scope": {"project": {"id": self._project_id}},
            }
        }
        secrets = (self._password,)
        failure: CloudError | None = None
        try:
            response = await self._http.post(
                self._url,
                params={"nocatalog": "true"},
                content=json.dumps(body).encode("utf-8"),
                headers={"Content-Type": "application/json;charset=utf8"},
            )
        except httpx.HTTPError as exc:
            # Fetching a token changes nothing, so it counts as idempotent.
            failure = error_from_exception(exc, operation="iam_token", idempotent=True, secrets=secrets)
        if failure is not None:
            raise failure
        if not response.is_success:
            raise error_from_response(response, operation="iam_token", secrets=secrets)
        token = response.headers.get("X-Subject-Token")
        if not token:
            raise CloudAuthError(
                "IAM answered without an X-Subject-Token header",
                operation="iam_token",
                status=response.status_code,
                request_id=response.headers.get("X-Request-Id"),
            )
        return token, self._expiry(response)

    def _expiry(self, response: httpx.Response) -> float:
        try:
            expires_at = json.loads(response.content)["token"]["expires_at"]
            when = datetime.fromisoformat(str(expires_at))
        except (ValueError, KeyError, TypeError):
            # Documented as always present; if it is not, refresh soon rather than trust a token for a day.
            logger.warning("IAM token response lacks a readable expires_at; refreshing in one hour")
            return self._clock() + 3600.0
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        logger.debug("fetched an IAM token that expires at %s", when.isoformat())
        return when.timestamp()
