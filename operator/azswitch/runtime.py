"""Assembles the operator from its parts: settings, the Kubernetes client, cloud connections, the reconciler
and the work queue. No kopf here: ``handlers`` starts and stops a ``Runtime`` from kopf's start-up and
clean-up hooks, and tests build one directly (with the simulator's in-process transport, for instance).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import tempfile
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from azswitch.cloud import CloudAPI, CloudConnections, RetryPolicy, Timeouts
from azswitch.controller import Controller
from azswitch.errors import ConfigError
from azswitch.kube import KubeAPI, OfficialClientKube
from azswitch.leader import FencedKube, KubeLeaseStore, LeaderElection, LeaderElector, LeaseStore
from azswitch.metrics import Metrics, MetricsServer
from azswitch.reconcile import Credentials, OperationSlots, Reconciler
from azswitch.settings import Settings
from azswitch.zonedrains import DrainBook, DrainStatusWriter

logger = logging.getLogger("azswitch.runtime")

#: How long a SIGTERMed leader lets running reconciles finish their step before it releases the Lease.
SHUTDOWN_DRAIN_SECONDS = 5.0


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
    # One pooled connection per worker thread (the default is 5 per CPU), so threads do not wait on the pool.
    configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, 32)
    return k8s.ApiClient(configuration)


#: Frames per allocation once ``install_tracemalloc_dump``'s SIGUSR2 deepened the tracing.
TRACEMALLOC_FRAMES = 16


def tracemalloc_snapshot_path(pid: int) -> Path:
    """Where SIGUSR1 writes a memory snapshot of operator ``pid`` (see ``install_tracemalloc_dump``)."""
    return Path(tempfile.gettempdir()) / f"azswitch-{pid}.tracemalloc"


def install_tracemalloc_dump() -> bool:
    """Opt-in memory profiling for the benchmarks (bench/memory.py), only when Python itself traces
    allocations (``PYTHONTRACEMALLOC=1``; otherwise nothing): SIGUSR2 restarts the tracing with
    ``TRACEMALLOC_FRAMES`` frames per allocation, so that what is allocated from then on is known with its
    callers (tracing that deep from start-up makes the imports alone take half a minute); SIGUSR1 writes a
    ``tracemalloc`` snapshot to ``tracemalloc_snapshot_path(pid)`` (read it with ``Snapshot.load``)."""
    if not tracemalloc.is_tracing():
        return False

    def deepen() -> None:
        tracemalloc.stop()
        tracemalloc.start(TRACEMALLOC_FRAMES)

    def dump() -> None:
        path = tracemalloc_snapshot_path(os.getpid())
        tracemalloc.take_snapshot().dump(f"{path}.part")
        os.replace(f"{path}.part", path)
        logger.info("tracemalloc snapshot written to %s", path)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR2, deepen)
    loop.add_signal_handler(signal.SIGUSR1, dump)
    return True


def cloud_connections(settings: Settings, **hooks: Any) -> CloudConnections:
    """The cloud connections the settings describe (timeouts, retries, rate limit, CA bundle); ``hooks`` are
    ``CloudConnections``' own keyword arguments (transport, on_request, fence …). The operator and
    ``azswitch apply`` build theirs here, so that both talk to the cloud the same way."""
    return CloudConnections(
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
        **hooks,
    )


class Runtime:
    """Everything one operator process holds; also the reconciler's cloud factory."""

    def __init__(
        self,
        settings: Settings,
        api_client: k8s.ApiClient,
        *,
        kube: KubeAPI | None = None,
        cloud_transport: httpx.AsyncBaseTransport | None = None,
        election: LeaderElection | None = None,
        lease_store: LeaseStore | None = None,
    ) -> None:
        """``election`` (``LeaderElection.from_settings``, as ``azswitch run --leader-elect`` builds it): act
        only while holding that Lease; ``lease_store`` replaces the Lease API (tests). None: always act."""
        self.settings = settings
        self.api_client = api_client
        self.metrics = Metrics()
        self._metrics_server: MetricsServer | None = None
        #: With leader election: who decides whether this process may act (azswitch.leader).
        self.elector: LeaderElector | None = None
        self._election: asyncio.Task[None] | None = None
        #: Set once the Lease is lost; ``azswitch run`` then exits non-zero and the pod restarts as a standby.
        self.lost_leadership = False
        #: Stops the whole process (``handlers.run_operator`` points it at kopf's stop flag).
        self.request_exit: Callable[[], None] | None = None
        kube = kube or OfficialClientKube(api_client, timeout=settings.kube_timeout)
        if election is not None:
            self.elector = LeaderElector(
                lease_store
                or KubeLeaseStore(
                    api_client,
                    election.namespace,
                    election.name,
                    timeout=min(settings.kube_timeout, election.renew_deadline),
                ),
                identity=election.identity,
                lease_duration=election.lease_duration,
                renew_deadline=election.renew_deadline,
                retry_period=election.retry_period,
                description=election.lease,
                on_started_leading=self._started_leading,
                on_lost_leadership=self._lost_leadership,
            )
            # Fences: no status write or event, and (below) no cloud request, from a process not leading.
            kube = FencedKube(kube, self.elector.check)
        self.kube: KubeAPI = kube
        self.connections = cloud_connections(
            settings,
            transport=cloud_transport,
            on_request=self.metrics.cloud_request,
            on_az_discovery=self.metrics.az_discovery,
            fence=self.elector.check if self.elector is not None else None,
        )
        self.slots = OperationSlots(settings.max_concurrent_operations, on_release=self._wake)
        # ZoneDrains: known from the watch (handlers), asked by the reconciler, reported by the writer.
        self.drains = DrainBook(
            self.kube,
            wake=self._wake_all,
            namespace_ttl=settings.resync_interval,
        )
        self.reconciler = Reconciler(
            settings, self.kube, self, self.slots, metrics=self.metrics, drains=self.drains.lookup
        )
        self.controller = Controller(
            self.reconciler.reconcile,
            workers=settings.workers,
            on_forget=self.reconciler.forget,
            on_error=lambda key, exc: self.metrics.reconcile_error(),
            gate=lambda: self.leading,
        )
        self.reconciler.on_written = self.controller.written
        self.reconciler.claimants = self.controller.claimants
        #: Only a cluster-wide operator writes ZoneDrain status (a namespaced one sees a part of the groups).
        self.write_drain_status = True
        self._drain_writer = DrainStatusWriter(self.drains, self.controller.objects, metrics=self.metrics)

    @property
    def leading(self) -> bool:
        """Whether this process may act now (always, without leader election)."""
        return self.elector is None or self.elector.leading

    @property
    def role(self) -> str:
        """For the health endpoint and logs: standalone, leader, or the elector's state (candidate, …)."""
        if self.elector is None:
            return "standalone"
        return "leader" if self.elector.leading else self.elector.state

    def client(self, service: str, endpoint: str, project_id: str, credentials: Credentials) -> CloudAPI[Any]:
        return self.connections.backend(service, endpoint, project_id, credentials)

    def _wake_all(self) -> None:
        self.controller.enqueue_all()

    def _wake(self, keys: list[str]) -> None:
        for key in keys:
            namespace, _, name = key.partition("/")
            self.controller.enqueue((namespace, name), urgent=True)

    async def start(self) -> None:
        # The official Kubernetes client is synchronous: every call runs in the loop's default executor,
        # which Python sizes to the CPU count + 4 (6 threads on 2 cores). With fewer threads than workers,
        # status writes queue for a thread: a restart with 10,000 changed groups ran at that cap.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=self.settings.workers + 4, thread_name_prefix="azswitch-io")
        )
        self._metrics_server = self.metrics.start_server(self.settings.metrics_port)
        install_tracemalloc_dump()
        if self.elector is None:
            self._begin_acting()
        else:
            # A standby: the watch keeps the queue warm, nothing is reconciled until the Lease is ours.
            self.metrics.set_leader(False)
            self._election = asyncio.create_task(self.elector.run(), name="azswitch-leader-election")
            self._election.add_done_callback(self._election_ended)
        logger.info(
            "azswitch started: %d workers, at most %d operations at once",
            self.settings.workers,
            self.settings.max_concurrent_operations,
        )

    def _begin_acting(self) -> None:
        self.metrics.set_leader(True)
        # Everything known so far, operations in flight first (their lane is re-evaluated here).
        self.controller.enqueue_all()
        self.controller.start()
        if self.write_drain_status:
            self._drain_writer.start()

    def _started_leading(self) -> None:
        logger.info("this replica leads: reconciling every resource, operations in flight first")
        self._begin_acting()

    def _lost_leadership(self, reason: str) -> None:
        self.lost_leadership = True
        self.metrics.set_leader(False)
        # Nothing acts from here on (and the fences refuse anything that still tries): no new request, no
        # status write; a poll in flight is abandoned, and the next leader resumes it from the journal.
        self.controller.abandon()
        logger.error("lost the leader Lease (%s); exiting so that this pod restarts as a standby", reason)
        if self.request_exit is not None:
            self.request_exit()

    def _election_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and not self.lost_leadership:
            logger.error("leader election crashed", exc_info=task.exception())
            self._lost_leadership("leader election crashed")

    async def stop(self) -> None:
        await self._drain_writer.stop()
        if self.elector is not None and self.elector.leading:
            # SIGTERM on the leader: the running reconciles finish their step (the intent written is sent,
            # the status write lands), then the Lease is handed back so that the standby leads at once.
            await self.controller.stop(drain=SHUTDOWN_DRAIN_SECONDS)
        else:
            await self.controller.stop()
        if self.elector is not None:
            if await self.elector.release():
                logger.info("released the leader Lease")
            self.metrics.set_leader(False)
        if self._election is not None:
            self._election.cancel()
        await self.connections.aclose()
        if self._metrics_server is not None:
            self._metrics_server.close()
