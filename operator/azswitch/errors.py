"""The project's own exception tree.

Callers decide what to do from the *type* of an error, never from the transport's exceptions: the cloud
client translates every httpx failure into one of these, and the reconciler maps these (in one place) to
retries or to a Stalled condition. This module imports nothing but the standard library so that the pure
layers (plan, status) can name these types too.

    AzswitchError
    ├── ConfigError                   bad settings or spec; names the field and the fix
    ├── NotLeading                    this replica does not hold the leader Lease: it must not act
    └── CloudError                    anything the cloud said (or failed to say)
        ├── TransientCloudError       retry later (retry_after seconds, if the cloud said)
        │   ├── CloudUnavailable      connect/read timeout before the request was sent, network error, 5xx
        │   └── CloudThrottled        429, or the gateway's APIG.0308 / APIGW.0308
        ├── OutcomeUnknown            a mutating request was (maybe) sent and no answer came back:
        │                             never retried automatically; the caller observes and decides
        ├── CloudAuthError            401: unknown key, bad signature, clock skew, expired token
        └── PermanentCloudError       retrying the same request cannot help
            ├── CloudForbidden        403
            ├── GroupNotFound         404 for the group (or the 400 "not found" codes of SDRS)
            └── CloudRejected         other 4xx: bad request, precondition not met
"""

from __future__ import annotations

#: Error text and bodies are truncated to this many characters before they reach logs, events or status.
MAX_DETAIL_CHARS = 512


def truncate(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """Shorten ``text`` for humans, marking that it was cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 15] + "… [truncated]"


class AzswitchError(Exception):
    """Root of every exception this project raises on purpose."""


class ConfigError(AzswitchError, ValueError):
    """A setting or spec field is invalid. The message names the field and how to fix it."""


class NotLeading(AzswitchError):
    """This process is not (or no longer) the leader: no status write, event or cloud request may leave it.

    Raised by the fences of ``azswitch.leader`` right before a side effect. Deliberately not a ``CloudError``
    nor a Kubernetes API error, so that no error mapping downstream can take it for a failed request and
    retry, withdraw or re-plan: the reconcile just stops where it is, and the journal lets the next leader
    resume by observing.
    """


class CloudError(AzswitchError):
    """The cloud API failed. Carries what the cloud said so that an SRE can open a ticket with it.

    ``status`` is the HTTP status (``None`` when no response arrived), ``code`` the cloud's error code
    (e.g. ``APIGW.0301``), ``request_id`` the ``X-Request-Id`` response header, ``operation`` the client
    operation (e.g. ``switchover``) that failed.
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str = "",
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.message = truncate(message)
        self.operation = operation
        self.status = status
        self.code = code
        self.request_id = request_id
        super().__init__(self.message)

    def __str__(self) -> str:
        parts = [self.message]
        if self.operation:
            parts.insert(0, f"{self.operation}:")
        details = []
        if self.status is not None:
            details.append(f"HTTP {self.status}")
        if self.code:
            details.append(f"code {self.code}")
        if self.request_id:
            details.append(f"request id {self.request_id}")
        if details:
            parts.append(f"({', '.join(details)})")
        return " ".join(parts)


class TransientCloudError(CloudError):
    """Retrying later may succeed. ``retry_after`` is the delay the cloud asked for, if any."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        operation: str = "",
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, operation=operation, status=status, code=code, request_id=request_id)
        self.retry_after = retry_after


class CloudUnavailable(TransientCloudError):
    """Network error, timeout before anything was sent, or a 5xx answer."""


class CloudThrottled(TransientCloudError):
    """HTTP 429 or the API gateway's throttling code (APIG.0308 / APIGW.0308)."""


class OutcomeUnknown(CloudError):
    """A non-idempotent request may have reached the cloud, but no answer came back.

    Never retried automatically: a second switchover request swaps the AZs back. Observe the group and decide.
    """


class CloudAuthError(CloudError):
    """HTTP 401: the credentials were refused (unknown key, bad signature, clock skew, expired token)."""


class PermanentCloudError(CloudError):
    """The same request will fail again; a human (or a new spec) must change something."""


class CloudForbidden(PermanentCloudError):
    """HTTP 403: the credentials are valid but lack permission."""


class GroupNotFound(PermanentCloudError):
    """The replication consistency group does not exist in this project."""


class CloudRejected(PermanentCloudError):
    """Any other 4xx: malformed request or a precondition the group does not meet."""
