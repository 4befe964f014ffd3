"""The cluster, when it is reachable: its ReplicationGroups, their Secrets, whether an operator leads, and the
hold annotation that keeps it away from the groups a break-glass apply acts on.

``leader_verdict`` is the one decision, pure: an operator leads when the leader Lease is held and fresh
(``holderIdentity`` set, ``renewTime + leaseDurationSeconds`` in the future); when it is not, an operator pod
that is Running (labels of ``deploy/base``) is a candidate about to take the Lease, which counts the same;
when neither can be read, nobody can tell, which is not "absent".

The hold (``azswitch.io/hold``, never a spec field: the spec is Git's) is a merge patch of the object's
metadata, so it changes the object's resourceVersion: an operator reconcile that read the group before the
hold and then tries to journal an operation gets 409 and reads it again — and then sees the hold. So the
object the hold patch returns is the last word: if its ``status.operation`` is set, the operator journaled
an operation before the hold landed, and the group is left alone.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from azswitch.breakglass.manifests import InputError
from azswitch.durations import parse_timestamp
from azswitch.kube import GROUP, PLURAL, VERSION
from azswitch.reconcile.context import ANNOTATION_HOLD

#: The labels ``deploy/base`` gives the operator's pods.
OPERATOR_POD_SELECTOR = "app.kubernetes.io/name=azswitch,app.kubernetes.io/component=operator"
DEFAULT_LEASE_NAMESPACE = "azswitch-system"


@dataclass(frozen=True)
class LeaderVerdict:
    """``state``: ``leading`` (an operator acts, or is about to), ``absent`` (none), ``unknown`` (cannot tell)."""

    state: str
    message: str

    @property
    def absent(self) -> bool:
        return self.state == "absent"


def leader_verdict(
    lease: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]] | None,
    now: datetime,
    lease_name: str,
    *,
    lease_readable: bool = True,
) -> LeaderVerdict:
    """Whether an operator leads, from the Lease (None: there is none) and the operator pods (None: they
    could not be listed). Pure."""
    if lease is not None:
        raw_spec = lease.get("spec")
        spec: Mapping[str, Any] = raw_spec if isinstance(raw_spec, Mapping) else {}
        holder = spec.get("holderIdentity") if isinstance(spec.get("holderIdentity"), str) else ""
        renewed = parse_timestamp(spec.get("renewTime"))
        duration = spec.get("leaseDurationSeconds")
        seconds = duration if isinstance(duration, int) and not isinstance(duration, bool) else 0
        if holder and renewed is not None and renewed + timedelta(seconds=seconds) > now:
            until = (renewed + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
            return LeaderVerdict(
                "leading",
                f"an operator leads: Lease {lease_name} is held by {holder}, renewed "
                f"{renewed.strftime('%Y-%m-%dT%H:%M:%SZ')}, valid until {until}",
            )
    running = [
        f"{(p.get('metadata') or {}).get('namespace')}/{(p.get('metadata') or {}).get('name')}"
        for p in pods or []
        if (p.get("status") or {}).get("phase") == "Running"
        and not (p.get("metadata") or {}).get("deletionTimestamp")
    ]
    lease_words = "no Lease " + lease_name if lease is None else f"Lease {lease_name} is released or expired"
    if not lease_readable:
        lease_words = f"Lease {lease_name} could not be read"
    if running:
        return LeaderVerdict(
            "leading",
            f"{lease_words}, but operator pod(s) {', '.join(running)} are Running and will act",
        )
    if pods is None or not lease_readable:
        return LeaderVerdict("unknown", f"{lease_words} and the operator's pods could not be listed")
    return LeaderVerdict("absent", f"{lease_words} and no operator pod is Running")


def _configuration(kubeconfig: Path | None) -> k8s.Configuration | str:
    """The client configuration: in-cluster, else the kubeconfig; a string says why there is none."""
    configuration = k8s.Configuration()
    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig) if kubeconfig else None, client_configuration=configuration
            )
    except (k8s_config.ConfigException, OSError, TypeError, ValueError) as exc:
        if kubeconfig is not None and not kubeconfig.exists():
            raise InputError(f"--kubeconfig {kubeconfig}: no such file; fix: check the path") from None
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"no Kubernetes credentials ({first})"
    return configuration


def _unreachable(exc: Exception) -> bool:
    if isinstance(exc, ApiException):
        return not exc.status or exc.status >= 500 or exc.status == 429
    return isinstance(exc, (urllib3.exceptions.HTTPError, OSError))


class Cluster:
    """The few calls a break-glass run makes, over the official client (each in a worker thread)."""

    def __init__(self, api_client: k8s.ApiClient, *, timeout: float = 10.0) -> None:
        self.api_client = api_client
        self._core: Any = k8s.CoreV1Api(api_client)
        self._custom: Any = k8s.CustomObjectsApi(api_client)
        self._leases: Any = k8s.CoordinationV1Api(api_client)
        self._version: Any = k8s.VersionApi(api_client)
        self._timeout = (min(5.0, timeout), timeout)

    @classmethod
    async def connect(
        cls, kubeconfig: Path | None, *, probe_seconds: float = 5.0
    ) -> tuple[Cluster | None, str]:
        """The cluster and "", or None and why it is not reachable (no kubeconfig, no answer)."""
        configuration = _configuration(kubeconfig)
        if isinstance(configuration, str):
            return None, configuration
        configuration.retries = 0
        cluster = cls(k8s.ApiClient(configuration), timeout=max(probe_seconds, 10.0))
        try:
            await asyncio.to_thread(
                cluster._version.get_code,
                _request_timeout=(probe_seconds, probe_seconds),
                _preload_content=False,
            )
        except Exception as exc:
            if _unreachable(exc):
                detail = f"HTTP {exc.status}" if isinstance(exc, ApiException) else type(exc).__name__
                return None, f"the Kubernetes API at {configuration.host} does not answer ({detail})"
            if isinstance(exc, ApiException) and exc.status in (401, 403):
                raise InputError(
                    f"the Kubernetes API at {configuration.host} refused our credentials (HTTP {exc.status}); "
                    "fix: renew them (kubectl must work), or pass --kubeconfig"
                ) from None
            if not isinstance(exc, ApiException):
                raise
            # Any other answer (a 404 from a proxy in front of /version) is still an apiserver answering.
        return cluster, ""

    async def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, _request_timeout=self._timeout, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status in (401, 403):
                raise InputError(
                    f"the Kubernetes API refused {what} (HTTP {exc.status}); fix: use a kubeconfig whose user "
                    "may do it"
                ) from None
            raise InputError(f"the Kubernetes API failed {what} (HTTP {exc.status})") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise InputError(f"the Kubernetes API did not answer {what} ({type(exc).__name__})") from None

    @staticmethod
    def _json(response: Any) -> dict[str, Any] | None:
        if response is None:
            return None
        body = json.loads(response.data)
        return body if isinstance(body, dict) else None

    async def get_group(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = await self._call(
            f"reading ReplicationGroup {namespace}/{name}",
            self._custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
        )
        return found if isinstance(found, dict) else None

    async def list_groups(self, namespace: str | None) -> list[dict[str, Any]]:
        if namespace is None:
            found = await self._call(
                "listing ReplicationGroups", self._custom.list_cluster_custom_object, GROUP, VERSION, PLURAL
            )
        else:
            found = await self._call(
                f"listing ReplicationGroups in {namespace}",
                self._custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
            )
        items = (found or {}).get("items") or []
        for item in items:
            item.setdefault("apiVersion", f"{GROUP}/{VERSION}")
            item.setdefault("kind", "ReplicationGroup")
        return [item for item in items if isinstance(item, dict)]

    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        raw = self._json(
            await self._call(
                f"reading Secret {namespace}/{name}",
                self._core.read_namespaced_secret,
                name,
                namespace,
                _preload_content=False,
            )
        )
        if raw is None:
            return None
        data: dict[str, str] = {}
        for key, value in (raw.get("data") or {}).items():
            try:
                data[key] = base64.b64decode(value).decode("utf-8").strip()
            except (ValueError, UnicodeDecodeError):
                continue
        return data

    async def read_lease(self, namespace: str, name: str) -> tuple[dict[str, Any] | None, bool]:
        """The Lease (None: there is none) and whether it could be read at all."""
        try:
            response = await self._call(
                f"reading Lease {namespace}/{name}",
                self._leases.read_namespaced_lease,
                name,
                namespace,
                _preload_content=False,
            )
        except InputError:
            return None, False
        return self._json(response), True

    async def operator_pods(self, namespace: str) -> list[dict[str, Any]] | None:
        """The operator's pods, cluster-wide if we may list them, else in ``namespace``; None if neither."""
        for what, fn, args in (
            ("listing pods", self._core.list_pod_for_all_namespaces, ()),
            (f"listing pods in {namespace}", self._core.list_namespaced_pod, (namespace,)),
        ):
            try:
                raw = self._json(
                    await self._call(
                        what, fn, *args, label_selector=OPERATOR_POD_SELECTOR, _preload_content=False
                    )
                )
            except InputError:
                continue
            if raw is not None:
                return [p for p in raw.get("items") or [] if isinstance(p, dict)]
        return None

    async def set_hold(self, namespace: str, name: str, value: str) -> dict[str, Any] | None:
        """Annotate the group as held; returns the object as it is after the hold (None: it is gone)."""
        found = await self._call(
            f"annotating ReplicationGroup {namespace}/{name} with {ANNOTATION_HOLD}",
            self._custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"metadata": {"annotations": {ANNOTATION_HOLD: value}}},
        )
        return found if isinstance(found, dict) else None

    async def remove_hold(self, namespace: str, name: str, value: str) -> bool:
        """Remove the hold if it is still ours (someone may have taken it over); True if removed."""
        for _ in range(3):
            current = await self.get_group(namespace, name)
            if current is None:
                return False
            meta = current.get("metadata") or {}
            if (meta.get("annotations") or {}).get(ANNOTATION_HOLD) != value:
                return False
            try:
                await asyncio.to_thread(
                    self._custom.patch_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    name,
                    {
                        "metadata": {
                            "annotations": {ANNOTATION_HOLD: None},
                            "resourceVersion": meta.get("resourceVersion"),
                        }
                    },
                    _request_timeout=self._timeout,
                )
            except ApiException as exc:
                if exc.status == 409:
                    continue
                raise InputError(
                    f"removing {ANNOTATION_HOLD} from {namespace}/{name} failed (HTTP {exc.status}); fix: "
                    f"kubectl annotate rg {name} -n {namespace} {ANNOTATION_HOLD}-"
                ) from None
            return True
        return False

    def close(self) -> None:
        self.api_client.close()  # type: ignore[no-untyped-call]
