"""Fixtures of the end-to-end suite: the product as a user runs it, on one machine.

One session brings up (see azswitch.dev.localenv) a real kube-apiserver + etcd, or uses the cluster of an
explicitly set ``KUBECONFIG``; installs crds/; applies deploy/'s Namespace, ServiceAccount and RBAC; runs
the cloud simulator as an HTTP server and the operator as an ``azswitch run`` process authenticated with
that ServiceAccount's token from the apiserver. So every passing test also proves deploy/'s RBAC is enough.

Each test gets a fresh namespace and a fresh cloud group (namespaces never finish deleting without a
controller-manager, and the simulator's groups are shared by the session). Waits have generous bounds and
poll; nothing asserts on durations. A failing test's report carries the operator's log tail, the
resources' YAML, their events and the group's simulator request log; the logs of a failed run are kept
(the path is printed at the end).

Which cluster, first match (design.md section 5): a throw-away one from the envtest binaries in
``KUBEBUILDER_ASSETS``; the cluster of an explicitly set ``KUBECONFIG`` (no other azswitch operator may run
there: it would act on the tests' resources too); a throw-away one from the binaries azswitch.dev.controlplane
caches, built once (~6-9 min, with progress) when missing. When none can be had the suite skips and says
how to get one. ``-m "not e2e"`` deselects it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import pytest
import yaml

from azswitch.dev import controlplane
from azswitch.dev.localenv import (
    OPERATOR_FAST_SETTINGS,
    Kubectl,
    LocalEnv,
    LocalEnvError,
    SimulatorProcess,
    secret_manifest,
)

PROJECT = "0123456789abcdef0123456789abcdef"
REGION = "cn-north-4"
AK, SK = "AKEXAMPLE0000000000", "SKEXAMPLE0000000000000000000000000000000"
SECRET = "evs-credentials"
AZ1, AZ2 = "az1.dc1", "az2.dc2"
# Groups are added per test (E2E.new_group); these timings keep a switchover at about 1.5 s.
SEED: dict[str, Any] = {
    "projects": [{"id": PROJECT, "name": REGION}],
    "credentials": [{"accessKey": AK, "secretKey": SK}],
    "groups": [],
    "timings": {"switchoverSeconds": 1, "copyingSeconds": 0.5},
}
# Bounds for waits: far above what a warm machine needs, so a loaded CI machine does not flake.
READY_TIMEOUT = 45.0
OPERATION_TIMEOUT = 60.0
# The simulator's request-log template of the project's group list.
GROUP_LIST = "/v2/{project_id}/os-vendor-replication-consistency-groups"
# The same for SDRS: the project's protection-group list, and one job (its record has no group).
SDRS_GROUP_LIST = "/v1/{project_id}/server-groups"
SDRS_JOB = "/v1/{project_id}/jobs/{job_id}"

# pytest captures output until a test ends; the first run builds the control plane for minutes, and
# progress that appears only afterwards looks like a hang.
_TERMINAL = sys.__stderr__

T = TypeVar("T")


def _progress(line: str) -> None:
    if _TERMINAL is not None:
        print(f"[e2e] {line}", file=_TERMINAL, flush=True)


class SdrsGroup(NamedTuple):
    """A protection group seeded for one test: its id and the two AZs fixed at its creation."""

    id: str
    source_az: str
    target_az: str


class E2E:
    """The session's cluster, simulator and operator, with the helpers the tests share."""

    def __init__(self, env: LocalEnv, kubectl: Kubectl, sim: SimulatorProcess, own_cluster: bool) -> None:
        self.env = env
        self.kubectl = kubectl
        self.sim = sim
        self.own_cluster = own_cluster
        # The cloud groups of the running test, for its failure report.
        self.current_groups: list[str] = []

    # -- waiting

    def check_operator(self) -> None:
        """Fail at once (instead of at a timeout) when the operator cannot possibly make progress."""
        operator = self.env.operator
        if operator is None:
            return
        if not operator.alive():
            raise AssertionError(f"the operator exited with {operator.popen.returncode}")
        tail = operator.log_tail(20)
        if 'User "system:anonymous"' in tail:
            # kopf lost the ServiceAccount token: every watch is forbidden, waiting longer cannot help.
            line = next(line for line in tail.splitlines() if "system:anonymous" in line)
            raise AssertionError(f"the operator's requests reach the apiserver anonymously: {line[:300]}")

    def wait(self, check: Callable[[], T | None], what: str, timeout: float = READY_TIMEOUT) -> T:
        """Poll ``check`` until it returns something truthy; fail with ``what`` and the last value."""
        deadline = time.monotonic() + timeout
        last: T | None = None
        while True:
            last = check()
            if last:
                return last
            self.check_operator()
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")
            time.sleep(0.2)

    def wait_rg(
        self,
        namespace: str,
        name: str,
        predicate: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float = OPERATION_TIMEOUT,
    ) -> dict[str, Any]:
        """Wait until the ReplicationGroup satisfies ``predicate``; return it."""

        def check() -> dict[str, Any] | None:
            obj = self.rg(namespace, name)
            return obj if predicate(obj) else None

        return self.wait(check, what, timeout)

    # -- the cloud

    def new_group(self, primary: str = AZ1, **fields: Any) -> str:
        """Seed a fresh group in the simulator (shared by the session, so one per test)."""
        group = str(uuid.uuid4())
        self.current_groups.append(group)
        self.sim.seed(
            {
                "groups": [
                    {
                        "projectID": PROJECT,
                        "id": group,
                        "name": f"e2e-{group[:8]}",
                        "availabilityZones": [AZ1, AZ2],
                        "primaryAZ": primary,
                        "replicationStatus": "active",
                        **fields,
                    }
                ]
            }
        )
        return group

    def new_sdrs_group(self, station: str = "source", **fields: Any) -> SdrsGroup:
        """Seed a fresh SDRS protection group at ``station`` (``source``/``target``).

        Its AZs are unique to it (SDRS AZs are free strings fixed at creation), so an AZ outage a test
        starts for them touches no other group of the session.
        """
        group = str(uuid.uuid4())
        tag = group[:8]
        source_az, target_az = f"{AZ1}-{tag}", f"{AZ2}-{tag}"
        self.current_groups.append(group)
        self.sim.seed(
            {
                "sdrsGroups": [
                    {
                        "projectID": PROJECT,
                        "id": group,
                        "name": f"e2e-pg-{tag}",
                        "sourceAZ": source_az,
                        "targetAZ": target_az,
                        "priorityStation": station,
                        **fields,
                    }
                ]
            }
        )
        return SdrsGroup(group, source_az, target_az)

    def sdrs_actions(self, group: str, action: str) -> int:
        """How many ``POST …/server-groups/{id}/action`` with this action key the cloud received."""
        return sum(1 for r in self.sim.requests(group) if r["method"] == "POST" and r.get("action") == action)

    def job_polls(self, job_id: str, after: int = 0) -> int:
        """How many ``GET /v1/{project_id}/jobs/{job_id}`` of this job, after request-log seq ``after``."""
        return sum(
            1
            for r in self.sim.requests()
            if r["seq"] > after
            and r["method"] == "GET"
            and r["template"] == SDRS_JOB
            and r["path"].rstrip("/").endswith(f"/{job_id}")
        )

    def last_seq(self) -> int:
        """The request log's newest seq number: count "from now on" with ``seq > last_seq()``."""
        return max((r["seq"] for r in self.sim.requests()), default=0)

    def sim_jobs(self, group: str) -> list[dict[str, Any]]:
        """The simulator's SDRS jobs of ``group``, oldest first."""
        return [j for j in self.sim.control("GET", "/jobs") if j.get("group") == group]

    @contextlib.contextmanager
    def sim_timings(self, **timings: float) -> Iterator[None]:
        """Set simulator timings (global to the session) for a block; the previous values afterwards."""
        before = self.sim.control("GET", "")["timings"]
        self.sim.set_timings(**timings)
        try:
            yield
        finally:
            self.sim.set_timings(**{key: before[key] for key in timings})

    def wait_for_fresh_sdrs_looks(self, group: str, looks: int = 2) -> None:
        """``wait_for_fresh_looks`` for an SDRS group: a GET of it, or of the project's group list."""

        def is_look(record: dict[str, Any]) -> bool:
            if record["method"] != "GET":
                return False
            return record.get("group") == group or record["template"] == SDRS_GROUP_LIST

        mark = self.last_seq()
        self.wait(
            lambda: sum(1 for r in self.sim.requests() if r["seq"] > mark and is_look(r)) >= looks,
            f"{looks} more reads of SDRS group {group} by the operator",
        )

    def wait_for_fresh_looks(self, group: str, looks: int = 2) -> None:
        """Wait until the operator has read ``group`` from the cloud ``looks`` more times from now on.

        A read is a GET of the group or a GET of the project's group list (idle groups are drift-checked
        through a shared list); either means the operator had a fresh chance to act on the group.
        """

        def is_look(record: dict[str, Any]) -> bool:
            if record["method"] != "GET":
                return False
            return record.get("group") == group or (record["template"] == GROUP_LIST)

        mark = max((r["seq"] for r in self.sim.requests()), default=0)
        self.wait(
            lambda: sum(1 for r in self.sim.requests() if r["seq"] > mark and is_look(r)) >= looks,
            f"{looks} more reads of group {group} by the operator",
        )

    # -- Kubernetes

    def rg_manifest(
        self, namespace: str, name: str, group: str, primary: str = AZ1, **spec: Any
    ) -> dict[str, Any]:
        return {
            "apiVersion": "azswitch.io/v1alpha1",
            "kind": "ReplicationGroup",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "groupID": group,
                "primaryAZ": primary,
                "cloud": {
                    "region": REGION,
                    "projectID": PROJECT,
                    "endpoint": self.sim.url,
                    "credentialsSecretRef": {"name": SECRET},
                },
                **spec,
            },
        }

    def sdrs_manifest(
        self, namespace: str, name: str, group: SdrsGroup, primary: str, **spec: Any
    ) -> dict[str, Any]:
        """``rg_manifest`` for an SDRS protection group (``spec.cloud.service: SDRS``)."""
        manifest = self.rg_manifest(namespace, name, group.id, primary=primary, **spec)
        manifest["spec"]["cloud"]["service"] = "SDRS"
        return manifest

    def patch_spec(self, namespace: str, name: str, **fields: Any) -> None:
        """``kubectl patch --type merge`` of spec fields, as a person or DR automation would."""
        self.kubectl.run(
            "patch", "rg", name, "-n", namespace, "--type", "merge", "-p", json.dumps({"spec": fields})
        )

    def rg(self, namespace: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.kubectl.json("get", "replicationgroup", name, "-n", namespace)
        return obj

    def condition(self, namespace: str, name: str, type_: str) -> dict[str, Any]:
        return condition_of(self.rg(namespace, name), type_)

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """Events about one ReplicationGroup, oldest first (resourceVersion orders them exactly)."""
        items = self.kubectl.json("get", "events", "-n", namespace)["items"]
        mine = [
            e
            for e in items
            if e["involvedObject"].get("kind") == "ReplicationGroup"
            and e["involvedObject"].get("name") == name
        ]
        return sorted(mine, key=lambda e: int(e["metadata"]["resourceVersion"]))

    def wait_condition(
        self,
        namespace: str,
        name: str,
        type_: str,
        status: str = "True",
        reason: str | None = None,
        timeout: float = READY_TIMEOUT,
    ) -> dict[str, Any]:
        """Wait for a condition of the *current* generation (an older one says nothing about the spec)."""

        def check() -> dict[str, Any] | None:
            obj = self.rg(namespace, name)
            found = condition_of(obj, type_)
            current = found.get("observedGeneration") == obj["metadata"]["generation"]
            if (
                current
                and found.get("status") == status
                and (reason is None or found.get("reason") == reason)
            ):
                return obj
            return None

        what = f"{namespace}/{name} {type_}={status}" + (f" ({reason})" if reason else "")
        return self.wait(check, what, timeout)

    def diagnostics(self, namespace: str | None) -> list[tuple[str, str]]:
        """What a failing test's report shows: the operator log, the resources, events, cloud requests."""
        sections: list[tuple[str, str]] = []
        if self.env.operator is not None:
            sections.append((f"operator log tail ({self.env.operator.log})", self.env.operator.log_tail(60)))
        if namespace:
            for what in ("replicationgroups", "events"):
                result = self.kubectl.run("get", what, "-n", namespace, "-o", "yaml", check=False)
                sections.append(
                    (f"kubectl get {what} -n {namespace} -o yaml", result.stdout or result.stderr)
                )
        for group in self.current_groups:
            with contextlib.suppress(LocalEnvError, OSError):
                records = [
                    f"{r['seq']} {r['method']} {r['path']} {r.get('action') or ''} -> {r['status']}"
                    for r in self.sim.requests(group)
                ]
                sections.append((f"simulator requests for group {group}", "\n".join(records[-40:])))
        return sections


def condition_of(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for found in (obj.get("status") or {}).get("conditions") or []:
        if found.get("type") == type_:
            return dict(found)
    return {}


def _existing_cluster() -> Path | None:
    """``KUBECONFIG``, when set explicitly and no envtest assets are named (design.md section 5)."""
    if os.environ.get("KUBEBUILDER_ASSETS"):
        return None
    value = os.environ.get("KUBECONFIG")
    return Path(value) if value else None


@pytest.fixture(scope="session")
def e2e(request: pytest.FixtureRequest) -> Iterator[E2E]:
    existing = _existing_cluster()
    env = LocalEnv(progress=_progress)
    try:
        try:
            kubectl = env.start_cluster(existing)
        except controlplane.ControlPlaneError as error:
            env.close()
            pytest.skip(
                f"e2e tests need a Kubernetes API server and none could be had: {error}\n"
                "(or point KUBECONFIG at a cluster where no other azswitch operator runs)"
            )
        try:
            env.install_crds()
            env.install_operator_identity()
            sim = env.start_simulator(SEED)
            env.start_operator(OPERATOR_FAST_SETTINGS)
        except LocalEnvError:
            env.keep_logs = True
            raise
        yield E2E(env, kubectl, sim, own_cluster=existing is None)
        # Kept for a look after the run (the path is printed); a green run leaves nothing behind.
        env.keep_logs = request.session.testsfailed > 0
    finally:
        env.close()


@pytest.fixture
def ns(e2e: E2E, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test; its ReplicationGroups are deleted afterwards."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"e2e-{slug}-{secrets.token_hex(3)}"
    e2e.current_groups = []
    e2e.kubectl.run("create", "namespace", name)
    yield name
    # Deleting a ReplicationGroup never touches the cloud; it keeps the session's operator idle.
    e2e.kubectl.run("delete", "replicationgroups", "--all", "-n", name, "--wait=false", check=False)
    if not e2e.own_cluster:
        # A real cluster finishes deleting namespaces (the throw-away control plane cannot: no controller).
        e2e.kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def secret(e2e: E2E, ns: str) -> str:
    """The credentials Secret, applied as YAML through kubectl."""
    e2e.kubectl.apply(yaml.safe_dump(secret_manifest(ns, SECRET, AK, SK)))
    return SECRET


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    funcargs = getattr(item, "funcargs", {})
    if report.when == "call" and report.failed and isinstance(funcargs.get("e2e"), E2E):
        with contextlib.suppress(Exception):
            for title, text in funcargs["e2e"].diagnostics(funcargs.get("ns")):
                report.sections.append((title, text))
    return report
