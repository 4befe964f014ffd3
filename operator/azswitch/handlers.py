"""The only module that imports kopf: it wires kopf's watch to the work queue and nothing more.

kopf gives us what it is best at — watching with reconnects and resumption, login, the liveness endpoint,
graceful shutdown. Reconciliation itself lives in ``reconcile`` and the queue in ``controller``, so these
handlers stay thin: an event handler that records the newest copy of each resource, and start-up/clean-up
that start and stop the runtime. kopf's own bookkeeping (it writes none with event handlers only) would
go to annotations under ``azswitch.io/``, never to status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import kopf

from azswitch.kube import DRAIN_PLURAL, GROUP, PLURAL, VERSION
from azswitch.runtime import Runtime

logger = logging.getLogger("azswitch.handlers")


def configure(settings: kopf.OperatorSettings) -> None:
    """kopf settings that this operator relies on."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="azswitch.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="azswitch.io", key="last-handled-configuration"
    )
    settings.persistence.finalizer = "azswitch.io/finalizer"
    # Events are posted by the reconciler with the operation id; kopf's own would only duplicate them.
    settings.posting.enabled = False
    # kopf's peering is not leader election (two operators of equal priority both pause): never used. Two
    # replicas elect a leader on a Lease instead (azswitch.leader); both watch, only the leader acts.
    settings.peering.standalone = True
    settings.watching.server_timeout = 300
    # Memory (bench/RESULTS.md, "Memory per group"): a decoded resource body is ~20 KB, mostly
    # managedFields. Unchunked, the start-up LIST of 10,000 resources decodes ~200 MB at once, and that
    # peak stays in the process's RSS; in pages of 500 it is ~10 MB at a time. And kopf's per-object worker
    # keeps the last raw event it processed until it exits: after 1 s of quiet instead of 5 s, fewer of
    # them (and their bodies) are alive at once after a burst (a start-up, an evacuation).
    settings.watching.chunk_size = 500
    settings.queueing.idle_timeout = 1.0
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60


def connection_info(runtime: Runtime) -> kopf.ConnectionInfo:
    """kopf talks to the same cluster, as the same identity, as the official client."""
    cfg = runtime.api_client.configuration
    if cfg.refresh_api_key_hook is not None:
        # In-cluster: the projected token rotates; let the client re-read it before we copy it.
        cfg.refresh_api_key_hook(cfg)
    # The client keeps the token under "BearerToken" (kubeconfig and in-cluster), older ones "authorization".
    keys = cfg.api_key or {}
    header = keys.get("BearerToken") or keys.get("authorization") or ""
    token = header.split(" ", 1)[1] if header.lower().startswith("bearer ") else (header or None)
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        username=cfg.username or None,
        password=cfg.password or None,
        token=token,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
        default_namespace=None,
    )


def build_registry(runtime: Runtime) -> kopf.OperatorRegistry:
    """A fresh registry bound to ``runtime`` (tests build their own; ``azswitch run`` builds one)."""
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings)
        await runtime.start()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await runtime.stop()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(runtime)

    @kopf.on.probe(id="operations_in_flight", registry=registry)
    def probe(**_: Any) -> int:
        return runtime.slots.in_use

    @kopf.on.probe(id="role", registry=registry)
    def role(**_: Any) -> str:
        # Informational: /healthz answers 200 on a standby too (it is healthy and warm, just not acting).
        return runtime.role

    @kopf.on.event(GROUP, VERSION, DRAIN_PLURAL, registry=registry)
    def on_drain(event: kopf.RawEvent, **_: Any) -> None:
        body = event.get("object")
        if isinstance(body, dict):
            runtime.drains.observe(event.get("type"), body)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    def on_event(event: kopf.RawEvent, **_: Any) -> None:
        event_type = event.get("type")
        body = event.get("object")
        if isinstance(body, dict):
            runtime.controller.observe(event_type, body)

    return registry


async def run_operator(
    runtime: Runtime,
    *,
    namespaces: Sequence[str] = (),
    liveness: str | None = None,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
) -> None:
    """Run kopf with our registry until stopped (SIGTERM/SIGINT, ``stop_flag`` in tests, or the runtime itself
    when it lost the leader Lease)."""
    settings = kopf.OperatorSettings()
    configure(settings)
    stop_flag = stop_flag if stop_flag is not None else asyncio.Event()
    runtime.request_exit = stop_flag.set
    # A namespaced operator sees only its own groups: it obeys ZoneDrains but never writes their status.
    runtime.write_drain_status = not namespaces
    await kopf.operator(
        registry=build_registry(runtime),
        settings=settings,
        standalone=True,
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=liveness,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )
