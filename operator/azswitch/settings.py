"""Typed operator settings, read once at start-up from ``AZSWITCH_*`` environment variables.

Everything tunable lives here, is validated before the operator touches the cluster or the cloud, and is
passed explicitly to the code that needs it: nothing deeper in the code reads the environment. A bad value
stops start-up with an error naming the variable, e.g. ``AZSWITCH_POLL_INTERVAL: Input should be greater
than 0``.
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from azswitch.errors import ConfigError

ENV_PREFIX = "AZSWITCH_"


class LogFormat(StrEnum):
    PLAIN = "plain"
    JSON = "json"


class Settings(BaseSettings):
    """Operator settings. Each field is set by ``AZSWITCH_<FIELD NAME IN UPPER CASE>``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # Cloud endpoint and transport.
    endpoint_template: str = Field(
        "https://evs.{region}.myhuaweicloud.com",
        description="EVS endpoint used when spec.cloud.endpoint is empty; {region} is replaced.",
    )
    sdrs_endpoint_template: str = Field(
        "https://sdrs.{region}.myhuaweicloud.com",
        description="SDRS endpoint used when spec.cloud.endpoint is empty; {region} is replaced.",
    )
    allow_insecure_endpoints: bool = Field(
        False,
        description="Allow plain http:// endpoints on non-loopback hosts (never do this in production).",
    )
    ca_bundle: Path | None = Field(None, description="PEM file of extra CAs to trust for https endpoints.")
    request_timeout: float = Field(10.0, gt=0, le=300, description="Seconds before a cloud call times out.")
    connect_timeout: float = Field(5.0, gt=0, le=60, description="Seconds to establish a connection.")
    rate_limit: float = Field(10.0, gt=0, description="Cloud requests per second per (endpoint, project).")
    rate_burst: int = Field(20, ge=1, description="Requests allowed in a burst per (endpoint, project).")
    retry_attempts: int = Field(5, ge=1, le=20, description="Attempts per cloud read (first try included).")
    retry_budget: float = Field(30.0, gt=0, description="Seconds one cloud call may spend retrying.")

    # Reconciliation.
    poll_interval: float = Field(0.5, gt=0, le=60, description="First delay between polls of a moving group.")
    poll_max_interval: float = Field(
        1.0, gt=0, le=300, description="Polling backs off up to this many seconds per in-flight group."
    )
    resync_interval: float = Field(60.0, ge=1, description="Seconds between drift checks of idle groups.")
    resync_jitter: float = Field(0.1, ge=0, le=1, description="Fraction of resync_interval added at random.")
    max_concurrent_operations: int = Field(
        10, ge=1, le=10_000, description="Operations (switchover, failover, reprotect) in flight at once."
    )
    lost_request_grace: float = Field(
        120.0,
        gt=0,
        description="Seconds after a request with no visible effect before it is counted as lost and re-sent.",
    )
    max_request_attempts: int = Field(
        3, ge=1, le=10, description="Times one operation's request may be sent when earlier ones were lost."
    )
    credentials_ttl: float = Field(
        30.0, ge=0, description="Seconds credentials read from a Secret are cached."
    )
    workers: int = Field(20, ge=1, le=1000, description="Resources reconciled concurrently.")
    kube_timeout: float = Field(
        30.0,
        gt=0,
        le=600,
        description="Seconds a Kubernetes API call (status write, Secret read, event) may take before it "
        "counts as failed and is retried.",
    )

    # Observability.
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    log_format: LogFormat = LogFormat.PLAIN
    metrics_port: int = Field(8080, ge=0, le=65535, description="Prometheus metrics port; 0 disables.")

    # High availability: leader election on a coordination.k8s.io/v1 Lease (azswitch.leader, design.md §3.2).
    leader_elect: bool = Field(
        False, description="Act only while holding the leader Lease (on in deploy/: two replicas)."
    )
    leader_election_namespace: str | None = Field(
        None,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
        description="Namespace of the Lease; default: POD_NAMESPACE, else the pod's service account namespace.",
    )
    leader_election_id: str = Field(
        "azswitch-leader",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        max_length=253,
        description="Name of the Lease (deploy/'s RBAC grants get/update on this one name only).",
    )
    leader_election_lease_duration: int = Field(
        15, ge=1, le=3600, description="Whole seconds a standby waits on an unchanged Lease before taking it."
    )
    leader_election_renew_deadline: float = Field(
        10.0, gt=0, le=3600, description="Seconds the leader keeps acting without a successful renew."
    )
    leader_election_retry_period: float = Field(
        2.0, gt=0, le=600, description="Seconds between attempts to acquire or renew the Lease."
    )

    @model_validator(mode="after")
    def _poll_bounds(self) -> Settings:
        if self.poll_max_interval < self.poll_interval:
            raise ValueError("poll_max_interval must be >= poll_interval")
        return self

    @model_validator(mode="after")
    def _leader_election_timing(self) -> Settings:
        # As client-go: a leader must stop acting (renew deadline) before a standby may take over (lease
        # duration), and must get more than one try at renewing (retry period) within its deadline.
        duration = self.leader_election_lease_duration
        deadline = self.leader_election_renew_deadline
        retry = self.leader_election_retry_period
        if not duration > deadline > retry:
            raise ValueError(
                f"need {ENV_PREFIX}LEADER_ELECTION_LEASE_DURATION ({duration}) > "
                f"{ENV_PREFIX}LEADER_ELECTION_RENEW_DEADLINE ({deadline:g}) > "
                f"{ENV_PREFIX}LEADER_ELECTION_RETRY_PERIOD ({retry:g})"
            )
        return self


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from ``environ`` (default: the process environment) plus explicit overrides.

    Raises ``ConfigError`` whose message names each bad variable and what is wrong with it.
    """
    try:
        if environ is None:
            return Settings(**overrides)
        values = {
            key[len(ENV_PREFIX) :].lower(): value
            for key, value in environ.items()
            if key.startswith(ENV_PREFIX)
        }
        values.update(overrides)
        return Settings.model_validate(values)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(part) for part in err["loc"]) or "settings"
            name = ENV_PREFIX + field.upper() if err["loc"] else field
            lines.append(f"{name}: {err['msg']}")
        raise ConfigError("invalid operator settings:\n  " + "\n  ".join(lines)) from None


def mask_userinfo(text: str) -> str:
    """``scheme://user:password@host`` → ``scheme://***@host``: never show credentials from a URL."""
    return re.sub(r"//[^/@\s]*@", "//***@", text)


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_endpoint(settings: Settings, region: str, endpoint: str | None, service: str = "EVS") -> str:
    """The cloud endpoint for a resource (``endpoint``, else ``service``'s template for ``region``), checked
    against the transport-security rules.

    Plain ``http://`` is refused unless the host is loopback (the simulator) or the operator was started
    with ``AZSWITCH_ALLOW_INSECURE_ENDPOINTS=true``.
    """
    templates = {"EVS": settings.endpoint_template, "SDRS": settings.sdrs_endpoint_template}
    if endpoint is None and service not in templates:
        raise ConfigError(
            f"spec.cloud.service: no endpoint template for {service!r}; fix: set spec.cloud.endpoint"
        )
    url = (endpoint or templates[service].format(region=region)).rstrip("/")
    shown = mask_userinfo(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check: "host:abc" raises here
    except ValueError as exc:
        raise ConfigError(
            f"spec.cloud.endpoint: {shown!r} does not parse ({exc}); fix: e.g. https://evs.{region}…"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"spec.cloud.endpoint: {shown!r} is not an http(s) URL; fix: e.g. https://evs.{region}…"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"spec.cloud.endpoint: {shown!r} carries user info; fix: remove it (credentials belong in the Secret)"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(
            f"spec.cloud.endpoint: {shown!r} must be scheme://host[:port] only; fix: drop the path and query"
        )
    if (
        parts.scheme == "http"
        and not is_loopback_host(parts.hostname)
        and not settings.allow_insecure_endpoints
    ):
        raise ConfigError(
            f"spec.cloud.endpoint: plain http to non-loopback host {parts.hostname!r} is refused; "
            "fix: use https, or start the operator with AZSWITCH_ALLOW_INSECURE_ENDPOINTS=true"
        )
    return url
