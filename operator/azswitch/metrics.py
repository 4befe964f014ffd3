"""Prometheus metrics: what the operator did, how long it took, and where every group stands.

Why a class around its own ``CollectorRegistry`` instead of module-level metrics on prometheus-client's
global default registry: tests (and a test process that builds several runtimes) each get isolated series,
and nothing here runs at import time. The operator builds one ``Metrics`` and passes it to the parts that
report; none of them import prometheus-client themselves.

Why the group gauges are recomputed from per-group state instead of incremented and decremented: a missed
``dec`` (an exception between two calls, a resource deleted while the operator was down) would skew an
inc/dec gauge forever, whereas ``set_group_state`` / ``forget_group`` always leave ``azswitch_groups`` and
``azswitch_blocked_groups`` equal to a count over the groups the operator currently knows.

No kopf import (design.md §1): ``handlers`` is the only kopf module; this one is plain bookkeeping.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter as Tally  # prometheus_client's Counter is the one meant here
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from azswitch.models import Phase

#: Every phase the CRD allows: exported as 0 from the start so that dashboards and alerts see a zero,
#: not an absent series, for phases no group is in.
PHASES: Final[tuple[str, ...]] = tuple(get_args(Phase))

#: Operations last from seconds (a simulator, a small group) to the default 30m timeout and beyond
#: (spec.switchover.timeout may be set higher), so the buckets span one second to two hours.
OPERATION_BUCKETS: Final[tuple[float, ...]] = (
    1,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
    900,
    1200,
    1800,
    2700,
    3600,
    7200,
)

#: One cloud API call: milliseconds when healthy, up to the request timeout (10s default, 300s max).
CLOUD_REQUEST_BUCKETS: Final[tuple[float, ...]] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
)

#: The ``code`` label of a cloud request that got no HTTP response (connection error, timeout).
NO_RESPONSE_CODE: Final = "error"


@dataclass(frozen=True)
class _GroupState:
    phase: str
    blocked_reason: str | None


class MetricsServer:
    """A running ``/metrics`` endpoint (or a disabled one); calling it, or ``close()``, stops it."""

    def __init__(self, stop: Callable[[], None] | None, port: int | None) -> None:
        self._stop = stop
        #: The bound TCP port, or None when the endpoint is disabled.
        self.port = port

    @property
    def enabled(self) -> bool:
        return self.port is not None

    def close(self) -> None:
        """Stop serving; idempotent, so shutdown paths may call it more than once."""
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()

    def __call__(self) -> None:
        self.close()


class Metrics:
    """The operator's metrics, registered in ``registry`` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._operations = Counter(
            "azswitch_operations_total",
            "Finished operations (switchover, failover, reprotect) by action and result.",
            ["action", "result"],
            registry=r,
        )
        self._operation_seconds = Histogram(
            "azswitch_operation_duration_seconds",
            "Time from requesting an operation until the operator saw it finish, by action.",
            ["action"],
            buckets=OPERATION_BUCKETS,
            registry=r,
        )
        self._groups = Gauge(
            "azswitch_groups",
            "ReplicationGroups the operator knows, by status.phase.",
            ["phase"],
            registry=r,
        )
        self._blocked = Gauge(
            "azswitch_blocked_groups",
            "ReplicationGroups whose plan is blocked, by the first blocker's reason.",
            ["reason"],
            registry=r,
        )
        self._replication_healthy = Gauge(
            "azswitch_replication_healthy",
            "1 when the group's replication is active with no fault, 0 when not; absent while unknown.",
            ["namespace", "name"],
            registry=r,
        )
        self._cloud_requests = Counter(
            "azswitch_cloud_requests_total",
            'Cloud API requests (each attempt) by operation and HTTP status code ("error": no response).',
            ["operation", "code"],
            registry=r,
        )
        self._cloud_seconds = Histogram(
            "azswitch_cloud_request_duration_seconds",
            "Cloud API request latency (each attempt), by operation.",
            ["operation"],
            buckets=CLOUD_REQUEST_BUCKETS,
            registry=r,
        )
        self._az_discovery = Counter(
            "azswitch_az_discovery_total",
            "Groups whose AZ pair was learnt, by method: listing (the project's pair and disk listings) or "
            "per_group (the group's own pair and volume reads).",
            ["method"],
            registry=r,
        )
        self._reconcile_errors = Counter(
            "azswitch_reconcile_errors_total",
            "Reconciles that ended in an unexpected error (not a reported blocker or cloud error).",
            registry=r,
        )
        self._in_flight = Gauge(
            "azswitch_operations_in_flight",
            "Operations currently in flight (bounded by AZSWITCH_MAX_CONCURRENT_OPERATIONS).",
            registry=r,
        )
        self._leader = Gauge(
            "azswitch_leader",
            "1 while this replica acts (holds the leader Lease, or runs without leader election), 0 on a standby.",
            registry=r,
        )
        self._drain_groups = Gauge(
            "azswitch_zonedrain_groups",
            "Groups a ZoneDrain matches, by state: matched, drained (off the zone), moving, blocked.",
            ["drain", "state"],
            registry=r,
        )
        # Reasons seen so far stay exported at 0: they come from a small fixed set in plan.py, and a
        # series that drops to 0 (rather than vanishing) lets `== 0` alerts and graphs behave.
        self._seen_reasons: set[str] = set()
        self._exported_phases: set[str] = set()
        self._states: dict[tuple[str, str], _GroupState] = {}
        # The operator reports from its event loop, but scrapes run in the server's thread and a recompute
        # spans several gauges; the lock keeps one recompute from interleaving with another.
        self._lock = threading.Lock()
        self._recompute()

    # --- reporting --------------------------------------------------------------------------------------

    def cloud_request(self, operation: str, status: int | None, seconds: float) -> None:
        """One cloud request attempt; matches ``azswitch.cloud.transport.RequestHook``."""
        code = str(status) if status is not None else NO_RESPONSE_CODE
        self._cloud_requests.labels(operation=operation, code=code).inc()
        self._cloud_seconds.labels(operation=operation).observe(max(0.0, seconds))

    def az_discovery(self, method: str) -> None:
        """One group's AZ pair learnt; matches ``azswitch.cloud.evs_zones.DiscoveryHook``."""
        self._az_discovery.labels(method=method).inc()

    def operation_finished(self, action: str, result: str, seconds: float) -> None:
        """An operation ended (result Succeeded, Failed, TimedOut or Abandoned) after ``seconds``."""
        self._operations.labels(action=action, result=result).inc()
        self._operation_seconds.labels(action=action).observe(max(0.0, seconds))

    def set_group_state(
        self,
        namespace: str,
        name: str,
        phase: str,
        blocked_reason: str | None,
        replication_healthy: bool | None,
    ) -> None:
        """The group's state after a reconcile; ``None`` health means unknown and removes the series."""
        with self._lock:
            self._states[(namespace, name)] = _GroupState(phase=phase, blocked_reason=blocked_reason)
            if replication_healthy is None:
                self._remove_health(namespace, name)
            else:
                self._replication_healthy.labels(namespace=namespace, name=name).set(
                    1 if replication_healthy else 0
                )
            self._recompute()

    def forget_group(self, namespace: str, name: str) -> None:
        """The resource is gone: drop it from the counts and remove its per-group series."""
        with self._lock:
            self._states.pop((namespace, name), None)
            self._remove_health(namespace, name)
            self._recompute()

    def drain(self, name: str, matched: int, drained: int, moving: int, blocked: int) -> None:
        """A ZoneDrain's counts, as its status shows them."""
        for state, value in (
            ("matched", matched),
            ("drained", drained),
            ("moving", moving),
            ("blocked", blocked),
        ):
            self._drain_groups.labels(drain=name, state=state).set(value)

    def forget_drain(self, name: str) -> None:
        for state in ("matched", "drained", "moving", "blocked"):
            with contextlib.suppress(KeyError):
                self._drain_groups.remove(name, state)

    def reconcile_error(self) -> None:
        self._reconcile_errors.inc()

    def operations_in_flight(self, n: int) -> None:
        self._in_flight.set(n)

    def set_leader(self, leading: bool) -> None:
        self._leader.set(1 if leading else 0)

    # --- serving ----------------------------------------------------------------------------------------

    def start_server(self, port: int, host: str = "0.0.0.0") -> MetricsServer:
        """Serve ``/metrics`` on ``host:port`` in a daemon thread; port 0 means disabled.

        A thread rather than a handler on the operator's event loop: a scrape then still answers while
        the loop is busy or stuck, which is exactly when the numbers are wanted.
        """
        if port == 0:
            return MetricsServer(None, None)
        server, thread = start_http_server(port, addr=host, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return MetricsServer(stop, int(server.server_port))

    # --- internals --------------------------------------------------------------------------------------

    def _remove_health(self, namespace: str, name: str) -> None:
        # KeyError: never reported, or already removed.
        with contextlib.suppress(KeyError):
            self._replication_healthy.remove(namespace, name)

    def _recompute(self) -> None:
        phases = Tally(state.phase for state in self._states.values())
        exported = {*PHASES, *phases}
        for phase in sorted(exported):
            self._groups.labels(phase=phase).set(phases.get(phase, 0))
        # A phase outside the CRD's enum (should not happen) is exported while it has groups, then removed.
        for phase in self._exported_phases - exported:
            self._groups.remove(phase)
        self._exported_phases = exported

        reasons = Tally(state.blocked_reason for state in self._states.values() if state.blocked_reason)
        self._seen_reasons.update(reasons)
        for reason in self._seen_reasons:
            self._blocked.labels(reason=reason).set(reasons.get(reason, 0))
