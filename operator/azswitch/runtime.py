"""Assembles the operator from its parts: settings, the Kubernetes client, cloud connections, the reconciler
and the work queue. No kopf here: ``handlers`` starts and stops a ``Runtime`` from kopf's start-up and
clean-up hooks, and tests build one directly (with the simulator's in-process transport, for instance).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from azswitch.cloud import CloudAPI, CloudConnections, RetryPolicy, Timeouts
from azswitch.controller import Controller
from azswitch.errors import ConfigError
from azswitch.kube import KubeAPI, OfficialClientKube
from azswitch.metrics import Metrics, MetricsServer
from azswitch.reconcile import Credentials, OperationSlots, Reconciler
from azswitch.settings import Settings

logger = logging.getLogger("azswitch.runtime")


def load_kube_client(kubeconfig: Path | None = None) -> k8s.ApiClient:
    """An API client for the cluster: the given kubeconfig, else in-cluster, else $KUBECONFIG/~/.kube/config."""
    configuration = k8s.Configuration()
    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig) if kubeconfig else None, client_configuration=configuration
            )
    except (k8s_config.ConfigException, OSError) as exc:
        raise ConfigError(
            f"cannot find Kubernetes credentials: {exc}; fix: run inside a cluster, set KUBECONFIG, "
            "or pass --kubeconfig"
        ) from None
    return k8s.ApiClient(configuration)


class Runtime:
    """Everything one operator process holds; also the reconciler's cloud factory."""

    def __init__(
        self,
        settings: Settings,
        api_client: k8s.ApiClient,
        *,
        kube: KubeAPI | None = None,
        cloud_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.api_client = api_client
        self.kube = kube or OfficialClientKube(api_client, timeout=settings.kube_timeout)
        self.metrics = Metrics()
        self._metrics_server: MetricsServer | None = None
        self.connections = CloudConnections(
            timeouts=Timeouts(
                connect=settings.connect_timeout,
                read=settings.request_timeout,
                write=settings.request_timeout,
                pool=settings.request_timeout,
            ),
            retry=RetryPolicy(max_attempts=settings.retry_attempts, max_total=settings.retry_budget),
            rate=settings.rate_limit,
            burst=settings.rate_burst,
            ca_bundle=settings.ca_bundle,
            transport=cloud_transport,
            on_request=self.metrics.cloud_request,
        )
        self.slots = OperationSlots(settings.max_concurrent_operations, on_release=self._wake)
        self.reconciler = Reconciler(settings, self.kube, self, self.slots, metrics=self.metrics)
        self.controller = Controller(
            self.reconciler.reconcile,
            workers=settings.workers,
            on_forget=self.reconciler.forget,
            on_error=lambda key, exc: self.metrics.reconcile_error(),
        )
        self.reconciler.on_written = self.controller.written
        self.reconciler.claimants = self.controller.claimants

    def client(self, service: str, endpoint: str, project_id: str, credentials: Credentials) -> CloudAPI[Any]:
        return self.connections.backend(service, endpoint, project_id, credentials)

    def _wake(self, keys: list[str]) -> None:
        for key in keys:
            namespace, _, name = key.partition("/")
            self.controller.enqueue((namespace, name), urgent=True)

    async def start(self) -> None:
        self._metrics_server = self.metrics.start_server(self.settings.metrics_port)
        self.controller.start()
        logger.info(
            "azswitch started: %d workers, at most %d operations at once",
            self.settings.workers,
            self.settings.max_concurrent_operations,
        )

    async def stop(self) -> None:
        await self.controller.stop()
        await self.connections.aclose()
        if self._metrics_server is not None:
            self._metrics_server.close()
