"""The few Kubernetes API calls the reconciler makes, over the official client.

The reconciler depends on the ``KubeAPI`` protocol, not on this module, so tests can run it against kmock or
a real apiserver through this very implementation. The official client is synchronous; every call runs in a
worker thread so the event loop (kopf's watches, other reconciles) never blocks on the network.

Status writes are JSON merge patches that carry ``metadata.resourceVersion``: the apiserver then rejects a
write based on a stale read with 409, which is what makes the intent journal safe (design.md §3).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from azswitch.errors import AzswitchError

GROUP = "azswitch.io"
VERSION = "v1alpha1"
PLURAL = "replicationgroups"
DRAIN_KIND, DRAIN_PLURAL = "ZoneDrain", "zonedrains"
KIND = "ReplicationGroup"
COMPONENT = "azswitch"

logger = logging.getLogger("azswitch.kube")


class KubeConflict(AzswitchError):
    """A status write was based on a stale resourceVersion; re-read and decide again."""


class KubeGone(AzswitchError):
    """The resource was deleted while being reconciled."""


class KubeForbidden(AzswitchError):
    """The Kubernetes API refused the operator (401/403): its RBAC is missing a rule, or a just-restarted
    apiserver has not loaded RBAC yet. Not a crash: say so in status and retry slowly."""


class KubeUnavailable(AzswitchError):
    """The Kubernetes API did not answer (restarting apiserver, network) or answered 5xx/429: retry later."""


def _transient(exc: Exception) -> bool:
    if isinstance(exc, ApiException):
        return not exc.status or exc.status == 429 or exc.status >= 500
    # urllib3's connection errors and timeouts: the apiserver is restarting or unreachable.
    return isinstance(exc, (urllib3.exceptions.HTTPError, OSError))


def forbidden(what: str, status: int = 403) -> KubeForbidden:
    return KubeForbidden(
        f"the Kubernetes API refused {what} (HTTP {status}); fix: grant the operator's ServiceAccount "
        "the rules in deploy/base/rbac.yaml (a just-restarted apiserver may also refuse for a few seconds)"
    )


def _refused(exc: Exception, what: str) -> KubeForbidden | None:
    if isinstance(exc, ApiException) and exc.status in (401, 403):
        return forbidden(what, exc.status)
    return None


def _unavailable(exc: Exception, what: str) -> KubeUnavailable:
    status = getattr(exc, "status", None)
    detail = f"HTTP {status}" if status else type(exc).__name__
    return KubeUnavailable(f"Kubernetes API unavailable while {what} ({detail})")


def _mapped(exc: Exception, what: str) -> Exception:
    """What a failed call raises, the one mapping every method shares: refused (401/403) →
    ``KubeForbidden``, unavailable (5xx, 429, no answer) → ``KubeUnavailable``, anything else unchanged.
    Each caller handles its own 404/409 first."""
    refused = _refused(exc, what)
    if refused is not None:
        return refused
    if _transient(exc):
        return _unavailable(exc, what)
    return exc


class KubeAPI(Protocol):
    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's decoded data, or None when it does not exist."""
        ...

    async def patch_status(
        self, namespace: str, name: str, resource_version: str | None, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch ``status``; returns the updated object. Raises KubeConflict, KubeGone."""
        ...

    async def post_event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None: ...

    async def read_namespace_labels(self, name: str) -> dict[str, str] | None:
        """The namespace's labels (ZoneDrain namespace selectors); None when it does not exist."""
        ...

    async def patch_drain_status(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch a ZoneDrain's status; returns the updated object."""
        ...


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The RFC 7386 merge patch that turns ``old`` into ``new`` (``None`` deletes a key)."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        previous = old.get(key)
        if isinstance(value, Mapping) and isinstance(previous, Mapping):
            nested = merge_patch(previous, value)
            if nested:
                patch[key] = nested
        elif value != previous or key not in old:
            patch[key] = value
    return patch


class OfficialClientKube:
    """``KubeAPI`` over the official ``kubernetes`` client.

    Every call has a timeout (the client has none by default): a connection the apiserver never answers
    must fail the call, to be retried like any unavailability, not block the resource's reconcile (and a
    worker thread) forever. A status write that timed out may still have landed; the intent journal makes
    that safe (nothing is sent unless the write is known to have succeeded).
    """

    def __init__(self, api_client: k8s.ApiClient, *, timeout: float = 30.0) -> None:
        self._core = k8s.CoreV1Api(api_client)
        self._custom = k8s.CustomObjectsApi(api_client)
        self._timeout = (min(5.0, timeout), timeout)  # (connect, read) seconds

    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            secret = await asyncio.to_thread(
                self._core.read_namespaced_secret, name, namespace, _request_timeout=self._timeout
            )
        except Exception as exc:
            if isinstance(exc, ApiException) and exc.status == 404:
                return None
            raise _mapped(exc, f"reading Secret {namespace}/{name}") from None
        data: dict[str, str] = {}
        for key, value in (secret.data or {}).items():
            try:
                data[key] = base64.b64decode(value).decode("utf-8").strip()
            except (ValueError, UnicodeDecodeError):
                # A key we cannot decode is treated as absent; the caller names what is missing.
                continue
        return data

    async def patch_status(
        self, namespace: str, name: str, resource_version: str | None, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"status": dict(patch)}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            result = await asyncio.to_thread(
                self._custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                body,
                _request_timeout=self._timeout,
            )
        except Exception as exc:
            status = exc.status if isinstance(exc, ApiException) else None
            if status == 409:
                raise KubeConflict(f"{namespace}/{name} changed since it was read") from None
            if status == 404:
                raise KubeGone(f"{namespace}/{name} no longer exists") from None
            raise _mapped(exc, f"writing the status of {namespace}/{name}") from None
        if not isinstance(result, dict):
            raise TypeError(f"unexpected status patch response for {namespace}/{name}")
        return result

    async def post_event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        meta = obj.get("metadata", {})
        # A cluster-scoped object (a ZoneDrain) has its events in "default", as kubectl describe expects.
        namespace = meta.get("namespace") or "default"
        now = datetime.now(UTC)
        event = k8s.CoreV1Event(
            metadata=k8s.V1ObjectMeta(generate_name=f"{meta.get('name', 'rg')}.", namespace=namespace),
            involved_object=k8s.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind=obj.get("kind") or KIND,
                name=meta.get("name"),
                namespace=meta.get("namespace") or None,
                uid=meta.get("uid"),
                resource_version=meta.get("resourceVersion"),
            ),
            reason=reason,
            message=message[:1024],
            type=type_,
            source=k8s.V1EventSource(component=COMPONENT),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            reporting_component=COMPONENT,
            reporting_instance=COMPONENT,
        )
        try:
            await asyncio.to_thread(
                self._core.create_namespaced_event, namespace, event, _request_timeout=self._timeout
            )
        except Exception as exc:
            # Events are best effort: losing one must never fail a reconcile (status is the record).
            logger.warning(
                "could not post event %s: %s",
                reason,
                getattr(exc, "status", None) or type(exc).__name__,
                extra={"rg_namespace": namespace, "rg_name": meta.get("name")},
            )

    async def read_namespace_labels(self, name: str) -> dict[str, str] | None:
        """The labels of namespace ``name`` (for ZoneDrain namespace selectors); None if it does not exist."""
        try:
            namespace = await asyncio.to_thread(
                self._core.read_namespace, name, _request_timeout=self._timeout
            )
        except Exception as exc:
            if isinstance(exc, ApiException) and exc.status == 404:
                return None
            raise _mapped(exc, f"reading namespace {name}") from None
        meta = namespace.metadata
        return dict((meta.labels if meta is not None else None) or {})

    async def patch_drain_status(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch a ZoneDrain's ``status`` (cluster-scoped; last writer wins, the operator is the only
        one). Raises KubeGone, KubeForbidden, KubeUnavailable."""
        try:
            result = await asyncio.to_thread(
                self._custom.patch_cluster_custom_object_status,
                GROUP,
                VERSION,
                DRAIN_PLURAL,
                name,
                {"status": dict(patch)},
                _request_timeout=self._timeout,
            )
        except Exception as exc:
            if isinstance(exc, ApiException) and exc.status == 404:
                raise KubeGone(f"ZoneDrain {name} no longer exists") from None
            raise _mapped(exc, f"writing the status of ZoneDrain {name}") from None
        if not isinstance(result, dict):
            raise TypeError(f"unexpected status patch response for ZoneDrain {name}")
        return result
