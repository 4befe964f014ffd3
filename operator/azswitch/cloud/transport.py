"""The one place where HTTP turns into the project's exceptions, and where it is decided what may be resent.

``CloudSession`` sends a request through a shared ``httpx.AsyncClient`` (rate limit, auth, retries, logging,
metrics hook) and either returns a 2xx response or raises an ``azswitch.errors.CloudError``. Backends (EVS
now, SDRS next) build on it and never look at status codes or httpx exceptions themselves.

Mapping (cloud-api.md §6, design.md §3):

* no response, failure before the request was written (connect error, connect/pool timeout, proxy refused)
  → ``CloudUnavailable``;
* no response after the request may have been written (read/write timeout, connection dropped, protocol
  error) → ``CloudUnavailable`` for reads, ``OutcomeUnknown`` for mutating calls;
* 429, or the gateway code ``APIG.0308``/``APIGW.0308`` at any status → ``CloudThrottled`` (``Retry-After``
  honoured); 5xx → ``CloudUnavailable``; 401 → ``CloudAuthError``; 403 → ``CloudForbidden``; 404 → the
  caller's "not found" type (``GroupNotFound`` for group calls) unless the gateway itself says the API does
  not exist, and so is a 4xx with one of the call's "not found" codes (SDRS: 400 ``SDRS.1013``); any other
  4xx → ``CloudRejected``.

What is resent (``may_retry``): reads, on any transient error. A mutating call (a switchover is not
idempotent: a second one swaps the AZs back) only when the cloud certainly did not process it: a failure
before the request was written, or throttling (the gateway or the service refused it outright). A 5xx on a
mutating call is **not** resent: a gateway's 502/504 may come after the backend received the request, and a
backend 500 may come after it acted. The caller sees ``CloudUnavailable`` and must observe the group before
sending again, exactly as for ``OutcomeUnknown``.

No message ever carries credentials: error text is redacted against the auth's secret values, bodies are
truncated, and httpx exceptions are not chained (they hold the request and with it the ``Authorization`` or
``X-Auth-Token`` header).
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import httpx

from azswitch.cloud.ratelimit import RateLimiter
from azswitch.cloud.retry import RetryPolicy
from azswitch.errors import (
    CloudAuthError,
    CloudError,
    CloudForbidden,
    CloudRejected,
    CloudThrottled,
    CloudUnavailable,
    ConfigError,
    OutcomeUnknown,
    PermanentCloudError,
    truncate,
)

logger = logging.getLogger("azswitch.cloud")

#: The API gateway's throttling codes (cloud-api.md §6.4); they mean throttled whatever the HTTP status.
THROTTLING_CODES = frozenset({"APIG.0308", "APIGW.0308"})
#: Gateway codes for "no such API": a 404 with one of these is about the URL, not about the group.
API_NOT_FOUND_CODES = frozenset({"APIG.0101", "APIGW.0101"})

#: Failures that happen before a byte of the request is written, so the cloud cannot have seen it.
_NOT_SENT: tuple[type[httpx.HTTPError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
)

#: ``on_request(operation, status code or None, seconds)``, called once per attempt; meant for metrics.
RequestHook = Callable[[str, int | None, float], None]


@runtime_checkable
class HoldsSecrets(Protocol):
    """An auth that can name its secret values, so that error text can be scrubbed of them."""

    def secret_values(self) -> tuple[str, ...]: ...


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class ErrorDetail:
    """What an error body says, whichever of the documented shapes it has."""

    code: str | None = None
    message: str | None = None
    request_id: str | None = None


def _scalar(value: Any) -> str | None:
    # Codes are documented as strings but some services send numbers; booleans are neither.
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _pair(obj: Mapping[str, Any], code_key: str, message_key: str) -> tuple[str | None, str | None]:
    return _scalar(obj.get(code_key)), _scalar(obj.get(message_key))


def parse_error_body(body: bytes) -> ErrorDetail:
    """Code, message and request id from an error body (cloud-api.md §6.1), in the official SDK's order:
    top-level ``error_code``/``error_msg``, then top-level ``code``/``message``, then that pair inside any
    nested object (``error``, ``badRequest``, ``badrequest``, ``itemNotFound``, …)."""
    try:
        data = json.loads(body)
    except ValueError:
        return ErrorDetail()
    if not isinstance(data, dict):
        return ErrorDetail()
    request_id = _scalar(data.get("request_id"))
    candidates = [_pair(data, "error_code", "error_msg"), _pair(data, "code", "message")]
    candidates += [_pair(value, "code", "message") for value in data.values() if isinstance(value, dict)]
    for code, message in candidates:
        if code or message:
            return ErrorDetail(code=code, message=message, request_id=request_id)
    return ErrorDetail(request_id=request_id)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds from now: delay-seconds or an HTTP-date. ``None`` if absent or junk."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def error_from_response(
    response: httpx.Response,
    *,
    operation: str,
    not_found: type[PermanentCloudError] = CloudRejected,
    not_found_codes: frozenset[str] = frozenset(),
    secrets: Iterable[str] = (),
    now: datetime | None = None,
) -> CloudError:
    """Translate a non-2xx response. ``not_found`` is what a 404 means for this call, and what a 4xx with
    one of ``not_found_codes`` means (SDRS answers a missing group with 400 ``SDRS.1013``)."""
    status = response.status_code
    detail = parse_error_body(response.content)
    request_id = response.headers.get("X-Request-Id") or detail.request_id
    text = detail.message or response.text.strip() or response.reason_phrase or f"HTTP {status}"
    message = truncate(redact(text, secrets))
    common: dict[str, Any] = {
        "operation": operation,
        "status": status,
        "code": detail.code,
        "request_id": request_id,
    }
    if status == 429 or detail.code in THROTTLING_CODES:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=now)
        return CloudThrottled(message, retry_after=retry_after, **common)
    if status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=now)
        return CloudUnavailable(message, retry_after=retry_after, **common)
    if status == 401:
        return CloudAuthError(message, **common)
    if status == 403:
        return CloudForbidden(message, **common)
    if status == 404 and detail.code not in API_NOT_FOUND_CODES:
        return not_found(message, **common)
    if status < 500 and detail.code is not None and detail.code in not_found_codes:
        return not_found(message, **common)
    return CloudRejected(message, **common)


def error_from_exception(
    exc: httpx.HTTPError, *, operation: str, idempotent: bool, secrets: Iterable[str] = ()
) -> CloudError:
    """Translate a failure without a response. Raise the result outside the ``except`` block, so that it
    does not keep the httpx exception (and its request's headers) as ``__context__``."""
    reason = redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, secrets)
    if isinstance(exc, _NOT_SENT):
        return CloudUnavailable(f"request not sent ({reason})", operation=operation)
    if idempotent:
        return CloudUnavailable(f"no answer ({reason})", operation=operation)
    return OutcomeUnknown(
        f"the request may have been processed, but no answer came back ({reason}); "
        "observe the group before sending it again",
        operation=operation,
    )


def may_retry(error: CloudError, *, idempotent: bool) -> bool:
    """Whether the request that failed with ``error`` may be sent again (see the module docstring)."""
    if isinstance(error, CloudThrottled):
        return True
    if isinstance(error, CloudUnavailable):
        # For a mutating call, a CloudUnavailable without a status can only come from error_from_exception's
        # "not sent" branch (or from fetching a token before sending): everything else is OutcomeUnknown.
        return idempotent or error.status is None
    return False


def json_object(response: httpx.Response, *, operation: str) -> dict[str, Any]:
    """The body of a successful response as a JSON object.

    A malformed success body is treated like a broken gateway (transient): the next read may well be fine,
    and a permanent error would stall the resource until someone edits it.
    """
    try:
        data = json.loads(response.content)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise CloudUnavailable(
            f"expected a JSON object, got {truncate(response.text, 120)!r}",
            operation=operation,
            status=response.status_code,
            request_id=response.headers.get("X-Request-Id"),
        )
    return data


@dataclass(frozen=True)
class Call:
    """One logical API call. ``not_found`` is the error a 404 means (``GroupNotFound`` for group calls), and
    what a 4xx carrying one of ``not_found_codes`` means."""

    operation: str
    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    body: Mapping[str, Any] | None = None
    not_found: type[PermanentCloudError] = CloudRejected
    not_found_codes: frozenset[str] = frozenset()

    @property
    def idempotent(self) -> bool:
        return self.method.upper() in {"GET", "HEAD"}


class CloudSession:
    """Sends ``Call``s for one (client, auth, project): rate limit, auth, retries, logging, error mapping."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        auth: httpx.Auth,
        retry: RetryPolicy,
        limiter: RateLimiter,
        headers: Mapping[str, str] | None = None,
        on_request: RequestHook | None = None,
    ) -> None:
        self._http = http
        self._auth = auth
        self._retry = retry
        self._limiter = limiter
        self._headers = dict(headers or {})
        self._on_request = on_request

    @classmethod
    def for_project(
        cls,
        http: httpx.AsyncClient,
        service: str,
        project_id: str,
        *,
        auth: httpx.Auth,
        retry: RetryPolicy,
        limiter: RateLimiter,
        on_request: RequestHook | None = None,
    ) -> CloudSession:
        """The session every backend client uses: ``http`` must have ``service``'s endpoint as its base_url;
        every request names the project (``X-Project-Id``, as the official SDKs do) and asks for JSON."""
        if not str(http.base_url).strip("/"):
            raise ConfigError(f"the httpx client needs base_url set to the {service} endpoint")
        return cls(
            http,
            auth=auth,
            retry=retry,
            limiter=limiter,
            headers={"X-Project-Id": project_id, "Accept": "application/json"},
            on_request=on_request,
        )

    def _secrets(self) -> tuple[str, ...]:
        return self._auth.secret_values() if isinstance(self._auth, HoldsSecrets) else ()

    async def send(self, call: Call) -> httpx.Response:
        """Return the 2xx response of ``call`` or raise a ``CloudError``; retries per ``may_retry``."""

        async def attempt() -> httpx.Response:
            return await self._attempt(call)

        return await self._retry.run(attempt, retryable=lambda e: may_retry(e, idempotent=call.idempotent))

    async def _attempt(self, call: Call) -> httpx.Response:
        await self._limiter.acquire()
        headers = dict(self._headers)
        content: bytes | None = None
        if call.body is not None:
            # Serialised here, not by httpx, so that the signed bytes are exactly the documented compact JSON.
            content = json.dumps(call.body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        # A fresh request per attempt: a retry gets a fresh X-Sdk-Date and signature.
        request = self._http.build_request(
            call.method, call.path, params=list(call.params), headers=headers, content=content
        )
        started = time.perf_counter()
        failure: CloudError | None = None
        try:
            response = await self._http.send(request, auth=self._auth)
        except httpx.HTTPError as exc:
            failure = error_from_exception(
                exc, operation=call.operation, idempotent=call.idempotent, secrets=self._secrets()
            )
        except CloudError:
            # Raised by the auth itself (e.g. the IAM token could not be fetched); already mapped.
            self._record(call, request, None, started)
            raise
        if failure is not None:
            # Raised outside the except block so that not even __context__ keeps the httpx exception.
            self._record(call, request, None, started)
            raise failure
        self._record(call, request, response, started)
        if not response.is_success:
            raise error_from_response(
                response,
                operation=call.operation,
                not_found=call.not_found,
                not_found_codes=call.not_found_codes,
                secrets=self._secrets(),
            )
        return response

    def _record(
        self, call: Call, request: httpx.Request, response: httpx.Response | None, started: float
    ) -> None:
        seconds = time.perf_counter() - started
        status = response.status_code if response is not None else None
        request_id = response.headers.get("X-Request-Id") if response is not None else None
        logger.debug(
            "%s %s -> %s in %.1f ms (request id %s)",
            call.method,
            request.url.path,
            status if status is not None else "no response",
            seconds * 1000,
            request_id or "-",
        )
        if self._on_request is not None:
            try:
                self._on_request(call.operation, status, seconds)
            except Exception:
                # A broken metrics hook must not turn an accepted switchover into an apparent failure
                # (the caller might then send it again).
                logger.exception("on_request hook failed for %s", call.operation)
