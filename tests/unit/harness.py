"""A deterministic stage for the reconciler: an in-memory Kubernetes API with real resourceVersion
semantics, the cloud simulator in-process, and one manual clock driving both.

The operator tests against kmock (tests/integration) prove the wiring through kopf and the official client;
these prove the reconciler's decisions step by step, with simulated minutes passing in microseconds.
"""

from __future__ import annotations

import copy
import itertools
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azswitch.cloud import CloudConnections, RetryPolicy
from azswitch.dev.simulator import ManualClock, Simulator, SimulatorTransport
from azswitch.kube import KubeConflict, KubeGone, KubeUnavailable, forbidden
from azswitch.reconcile import Credentials, GroupCache, OperationSlots, Reconciler
from azswitch.settings import Settings, load_settings
from azswitch.zonedrains import DrainBook, DrainStatusWriter

PROJECT = "0123456789abcdef0123456789abcdef"
GROUP = "91085433-9499-4a68-b2c6-35072467ccd2"
GROUP2 = "40df180b-9fe2-471a-8c64-1b758dc84189"
AK, SK = "AKEXAMPLE0000000000", "SKEXAMPLE0000000000000000000000000000000"
ENDPOINT = "http://127.0.0.1:8780"
REVERSE = "os-reverse-replication-consistency-group"
FAILOVER = "os-failover-replication-consistency-group"
REPROTECT = "os-reprotect-replication-consistency-group"
ACTION_PATH = "/v2/{project_id}/os-vendor-replication-consistency-groups/{id}/action"
#: An SDRS protection group in the same project (its own AZ names, so that no EVS assumption can hide).
SDRS_GROUP = "5ac0a2e4-6b1f-4c52-9e0b-2f3c7d8e9a10"
SDRS_SOURCE, SDRS_TARGET = "eu-west-0a", "eu-west-0b"
SDRS_REVERSE, SDRS_FAILOVER, SDRS_START = (
    "reverse-server-group",
    "failover-server-group",
    "start-server-group",
)
SDRS_ACTION_PATH = "/v1/{project_id}/server-groups/{id}/action"
SDRS_JOB_PATH = "/v1/{project_id}/jobs/{job_id}"
BASE = datetime(2026, 1, 1, tzinfo=UTC)


def sdrs_group(**fields: Any) -> dict[str, Any]:
    """A simulator seed entry for the SDRS group (``sdrsGroups``), protected with its source station primary."""
    return {
        "projectID": PROJECT,
        "id": SDRS_GROUP,
        "name": "billing",
        "sourceAZ": SDRS_SOURCE,
        "targetAZ": SDRS_TARGET,
        **fields,
    }


def seed(
    timings: Mapping[str, float] | None = None,
    groups: list[dict[str, Any]] | None = None,
    sdrs_groups: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "sdrsGroups": sdrs_groups or [],
        "projects": [{"id": PROJECT, "name": "cn-north-4"}],
        "credentials": [{"accessKey": AK, "secretKey": SK}],
        "groups": groups
        or [
            {
                "projectID": PROJECT,
                "id": GROUP,
                "name": "orders",
                "availabilityZones": ["az1.dc1", "az2.dc2"],
                "primaryAZ": "az1.dc1",
                "replicationStatus": "active",
            },
            {
                "projectID": PROJECT,
                "id": GROUP2,
                "name": "payments",
                "availabilityZones": ["az1.dc1", "az2.dc2"],
                "primaryAZ": "az1.dc1",
                "replicationStatus": "active",
            },
        ],
        "timings": {
            "switchoverSeconds": 20,
            "copyingSeconds": 5,
            "failoverSeconds": 20,
            "reprotectSeconds": 20,
        }
        | dict(timings or {}),
    }


def resource(
    name: str = "orders", group: str = GROUP, primary: str = "az1.dc1", **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "groupID": group,
        "primaryAZ": primary,
        "cloud": {
            "region": "cn-north-4",
            "projectID": PROJECT,
            "endpoint": ENDPOINT,
            "credentialsSecretRef": {"name": "evs-credentials"},
        },
    }
    for key, value in spec.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict):
            body[key] = {**body[key], **value}
        else:
            body[key] = value
    return {
        "apiVersion": "azswitch.io/v1alpha1",
        "kind": "ReplicationGroup",
        "metadata": {"name": name, "namespace": "payments", "generation": 1, "annotations": {}},
        "spec": body,
    }


def sdrs_resource(name: str = "billing", primary: str = SDRS_SOURCE, **spec: Any) -> dict[str, Any]:
    """A ReplicationGroup for the SDRS group: ``spec.cloud.service: SDRS``, the rest as ``resource``."""
    body = resource(name, SDRS_GROUP, primary, **spec)
    body["spec"]["cloud"]["service"] = "SDRS"
    return body


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


class Crash(BaseException):
    """The operator process died here (a BaseException so that no ``except Exception`` swallows it)."""


@dataclass
class FakeKube:
    """The ``KubeAPI`` the reconciler needs, with optimistic concurrency like the apiserver's.

    ``crash_rate`` makes a status write kill the "process" at random — before the write reaches the
    server or after it did — which is where a crash can hurt the intent journal.
    """

    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    secrets: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    events: list[dict[str, str]] = field(default_factory=list)
    status_writes: int = 0
    crash_rate: float = 0.0
    #: Status writes for which this returns True fail as if the apiserver were restarting.
    unavailable_when: Callable[[Mapping[str, Any]], bool] | None = None
    #: Secret reads answered 403, as with a missing RBAC rule.
    forbid_secrets: bool = False
    crashes: int = 0
    #: Namespace labels (ZoneDrain namespace selectors) and ZoneDrain objects by name.
    namespaces: dict[str, dict[str, str]] = field(default_factory=lambda: {"payments": {}})
    drains: dict[str, dict[str, Any]] = field(default_factory=dict)
    drain_writes: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    _rv: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        meta = obj["metadata"]
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta.setdefault("creationTimestamp", f"2026-01-01T00:00:{len(self.objects):02d}Z")
        meta["resourceVersion"] = str(next(self._rv))
        self.objects[(meta["namespace"], meta["name"])] = obj
        return copy.deepcopy(obj)

    def get(self, name: str, namespace: str = "payments") -> dict[str, Any]:
        return copy.deepcopy(self.objects[(namespace, name)])

    def edit_spec(self, name: str, namespace: str = "payments", **changes: Any) -> None:
        obj = self.objects[(namespace, name)]
        _merge(obj["spec"], changes)
        obj["metadata"]["generation"] += 1
        obj["metadata"]["resourceVersion"] = str(next(self._rv))

    def annotate(self, name: str, key: str, value: str, namespace: str = "payments") -> None:
        obj = self.objects[(namespace, name)]
        obj["metadata"].setdefault("annotations", {})[key] = value
        obj["metadata"]["resourceVersion"] = str(next(self._rv))

    def unannotate(self, name: str, key: str, namespace: str = "payments") -> None:
        obj = self.objects[(namespace, name)]
        obj["metadata"].setdefault("annotations", {}).pop(key, None)
        obj["metadata"]["resourceVersion"] = str(next(self._rv))

    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        if self.forbid_secrets:
            raise forbidden(f"reading Secret {namespace}/{name}")
        data = self.secrets.get((namespace, name))
        return dict(data) if data is not None else None

    async def patch_status(
        self, namespace: str, name: str, resource_version: str | None, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        obj = self.objects.get((namespace, name))
        if obj is None:
            raise KubeGone(name)
        if self.unavailable_when is not None and self.unavailable_when(patch):
            raise KubeUnavailable(f"writing the status of {namespace}/{name} (connection refused)")
        if resource_version is not None and resource_version != obj["metadata"]["resourceVersion"]:
            raise KubeConflict(name)
        crash = self.crash_rate and self.rng.random() < self.crash_rate
        if crash and self.rng.random() < 0.5:
            self.crashes += 1
            raise Crash("before the status write")
        _merge(obj.setdefault("status", {}), patch)
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        self.status_writes += 1
        if crash:
            self.crashes += 1
            raise Crash("after the status write")
        return copy.deepcopy(obj)

    async def post_event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append(
            {
                "name": obj["metadata"]["name"],
                "kind": obj.get("kind", "ReplicationGroup"),
                "type": type_,
                "reason": reason,
                "message": message,
            }
        )

    async def read_namespace_labels(self, name: str) -> dict[str, str] | None:
        labels = self.namespaces.get(name)
        return None if labels is None else dict(labels)

    async def patch_drain_status(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        drain = self.drains.get(name)
        if drain is None:
            raise KubeGone(name)
        drain["status"] = copy.deepcopy(dict(patch))
        self.drain_writes += 1
        return copy.deepcopy(drain)

    def reasons(self, name: str = "orders") -> list[str]:
        return [e["reason"] for e in self.events if e["name"] == name]


class Stage:
    """Simulator + fake Kubernetes + reconciler on one manual clock."""

    def __init__(
        self,
        *,
        timings: Mapping[str, float] | None = None,
        groups: list[dict[str, Any]] | None = None,
        sdrs_groups: list[dict[str, Any]] | None = None,
        **settings: Any,
    ) -> None:
        self.clock = ManualClock()
        self.sim = Simulator(
            seed(timings, groups, sdrs_groups), clock=self.clock, wall_clock=time.time, sleep=self.clock.sleep
        )
        self.kube = FakeKube()
        self.kube.secrets[("payments", "evs-credentials")] = {"accessKey": AK, "secretKey": SK}
        defaults: dict[str, Any] = {"lost_request_grace": 30, "resync_interval": 60, "credentials_ttl": 0}
        self.settings: Settings = load_settings({}, **(defaults | settings))
        self.restart()

    def now(self) -> datetime:
        return BASE + timedelta(seconds=self.clock())

    def restart(self) -> None:
        """A new operator process: fresh slots, caches and connections; only Kubernetes and the cloud remain."""
        self.connections = CloudConnections(
            transport=SimulatorTransport(self.sim),
            retry=RetryPolicy(max_attempts=3, sleep=self.clock.sleep, clock=self.clock),
            # Real time must not pace these tests: the limiter has its own tests.
            rate=1e6,
            burst=1000,
        )
        self.slots = OperationSlots(self.settings.max_concurrent_operations)
        self.cache = GroupCache(clock=self.clock)
        # ZoneDrains, as the runtime wires them: the watch feeds the book (here: add_drain), the reconciler
        # asks it, the writer reports on the drains.
        self.woken = 0
        self.book = DrainBook(
            self.kube,
            wake=self._wake,
            namespace_ttl=self.settings.resync_interval,
            clock=self.now,
            monotonic=self.clock,
        )
        for body in self.kube.drains.values():
            self.book.observe("ADDED", body)
        self.writer = DrainStatusWriter(self.book, lambda: list(self.kube.objects.values()))
        self.reconciler = Reconciler(
            self.settings,
            self.kube,
            self,
            self.slots,
            clock=self.now,
            cache=self.cache,
            claimants=self.claimants,
            drains=self.book.lookup,
        )

    def _wake(self) -> None:
        self.woken += 1

    def add_drain(self, name: str, **spec: Any) -> dict[str, Any]:
        """Create (or replace, with a new generation) a ZoneDrain, as kubectl apply and the watch would."""
        old = self.kube.drains.get(name)
        generation = (old["metadata"]["generation"] + 1) if old else 1
        body = {
            "apiVersion": "azswitch.io/v1alpha1",
            "kind": "ZoneDrain",
            "metadata": {"name": name, "generation": generation, "uid": f"uid-{name}"},
            "spec": spec,
            "status": (old or {}).get("status", {}),
        }
        self.kube.drains[name] = body
        self.book.observe("MODIFIED" if old else "ADDED", body)
        return body

    def delete_drain(self, name: str) -> None:
        body = self.kube.drains.pop(name)
        self.book.observe("DELETED", body)

    def drain_status(self, name: str) -> dict[str, Any]:
        return dict(self.kube.drains[name].get("status") or {})

    def claimants(self, group_id: str) -> list[dict[str, Any]]:
        return [o for o in self.kube.objects.values() if o["spec"].get("groupID") == group_id]

    def client(self, service: str, endpoint: str, project_id: str, credentials: Credentials) -> Any:
        return self.connections.backend(service, endpoint, project_id, credentials)

    async def step(self, name: str = "orders") -> float | None:
        return await self.reconciler.reconcile(self.kube.get(name))

    async def settle(
        self,
        name: str = "orders",
        *,
        until: Callable[[dict[str, Any]], bool] | None = None,
        max_steps: int = 200,
    ) -> float | None:
        """Reconcile like the work queue would, passing time, until only a resync (or nothing) is due, or
        until ``until(status)`` holds."""
        delay: float | None = 0.0
        for _ in range(max_steps):
            delay = await self.step(name)
            if until is not None and until(self.status(name)):
                return delay
            if delay is None or delay >= self.settings.resync_interval:
                return delay
            self.clock.advance(delay)
        raise AssertionError(f"{name} did not settle in {max_steps} steps; status={self.status(name)}")

    async def run(
        self,
        names: list[str],
        *,
        seconds: float,
        after_step: Callable[[str], None] | None = None,
        first_in: Mapping[str, float] | None = None,
    ) -> None:
        """The work queue, simulated for several resources: reconcile whichever is due next, passing time;
        a ``Crash`` restarts the operator, which then lists (and so reconciles) everything at once.
        ``after_step(name)`` is called after each reconcile that returned; ``first_in`` delays a resource's
        first reconcile by that many seconds."""
        due = {name: self.clock() + (first_in or {}).get(name, 0.0) for name in names}
        deadline = self.clock() + seconds
        while self.clock() < deadline:
            name = min(names, key=lambda n: due[n])
            if due[name] > self.clock():
                self.clock.advance(due[name] - self.clock())
            try:
                delay = await self.step(name)
            except Crash:
                self.restart()
                due = dict.fromkeys(names, self.clock())
                continue
            if after_step is not None:
                after_step(name)
            if self.slots.in_use < self.settings.max_concurrent_operations:
                # What OperationSlots' wake-up does for the real queue: waiters look again when a slot frees.
                for other in names:
                    if self.condition("Ready", other) and self.status(other).get("plan", {}).get("blockers"):
                        due[other] = min(due[other], self.clock())
            due[name] = self.clock() + (delay if delay is not None else self.settings.resync_interval)

    def status(self, name: str = "orders") -> dict[str, Any]:
        return dict(self.kube.get(name).get("status") or {})

    def condition(self, type_: str, name: str = "orders") -> dict[str, Any] | None:
        for condition in self.status(name).get("conditions", []):
            if condition["type"] == type_:
                return dict(condition)
        return None

    def reverses(self) -> int:
        return self.actions(REVERSE)

    def actions(self, action: str) -> int:
        return sum(1 for r in self.sim.requests() if r["action"] == action)

    def mutating(self) -> int:
        return sum(1 for r in self.sim.requests() if r["method"] != "GET")
