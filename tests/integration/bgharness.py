"""What the break-glass tests share: a simulator over real HTTP, manifests for its groups, a tiny fake
Kubernetes apiserver (only the calls ``azswitch plan``/``apply`` make), and the CLI run in a worker thread
(its own ``asyncio.run``, as from a shell) while the test's event loop serves both fakes.

The fake apiserver is aiohttp, not kmock: the commands need a Lease, pods and metadata merge patches with
resourceVersion checks, which are a few lines here; every request is recorded for the assertions.
"""

from __future__ import annotations

import asyncio
import copy
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from azswitch.cli import main
from azswitch.dev.simulator import Simulator, SimulatorServer

PROJECT = "0123456789abcdef0123456789abcdef"
AK, SK = "AKBREAKGLASS0000000", "SKBREAKGLASS000000000000000000000000000"
AZ1, AZ2 = "az1.dc1", "az2.dc2"
REVERSE_ACTIONS = ("os-reverse-replication-consistency-group", "reverse-server-group")


def evs_id(index: int) -> str:
    return f"00000000-0000-4000-8000-{index:012d}"


def sdrs_id(index: int) -> str:
    return f"00000000-0000-4000-9000-{index:012d}"


def seed(
    evs: int,
    sdrs: int,
    *,
    switchover: float = 1.0,
    copying: float = 0.5,
    evs_fields: dict[int, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """``evs`` EVS groups and ``sdrs`` SDRS groups, all primary in az1.dc1, healthy."""
    return {
        "projects": [{"id": PROJECT, "name": "cn-north-4"}],
        "credentials": [{"accessKey": AK, "secretKey": SK}],
        "groups": [
            {
                "projectID": PROJECT,
                "id": evs_id(i),
                "name": f"evs-{i}",
                "availabilityZones": [AZ1, AZ2],
                "primaryAZ": AZ1,
                **(evs_fields or {}).get(i, {}),
            }
            for i in range(evs)
        ],
        "sdrsGroups": [
            {
                "projectID": PROJECT,
                "id": sdrs_id(i),
                "name": f"sdrs-{i}",
                "sourceAZ": AZ1,
                "targetAZ": AZ2,
                "priorityStation": "source",
            }
            for i in range(sdrs)
        ],
        "timings": {"switchoverSeconds": switchover, "copyingSeconds": copying},
    }


def manifest(
    name: str,
    group_id: str,
    endpoint: str,
    *,
    primary: str = AZ2,
    service: str = "EVS",
    namespace: str = "payments",
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "azswitch.io/v1alpha1",
        "kind": "ReplicationGroup",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "groupID": group_id,
            "primaryAZ": primary,
            "cloud": {
                "service": service,
                "region": "cn-north-4",
                "projectID": PROJECT,
                "endpoint": endpoint,
                "credentialsSecretRef": {"name": "cloud-credentials"},
            },
            **spec,
        },
    }


def fleet(endpoint: str, evs: int, sdrs: int, *, primary: str = AZ2) -> list[dict[str, Any]]:
    return [manifest(f"evs-{i}", evs_id(i), endpoint, primary=primary) for i in range(evs)] + [
        manifest(f"sdrs-{i}", sdrs_id(i), endpoint, primary=primary, service="SDRS") for i in range(sdrs)
    ]


def write_manifests(path: Path, documents: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False), encoding="utf-8")
    return path


def write_credentials(path: Path) -> Path:
    path.write_text(f"# break-glass credentials\nAZSWITCH_ACCESS_KEY={AK}\nAZSWITCH_SECRET_KEY={SK}\n")
    return path


def mutating(simulator: Simulator) -> list[dict[str, Any]]:
    """Every cloud request that is not a read (IAM token requests excepted)."""
    return [r for r in simulator.requests() if r["method"] != "GET" and not r["path"].startswith("/v3/")]


def reverses(simulator: Simulator) -> dict[str, int]:
    """Reverse (switchover) requests per group id."""
    counts: dict[str, int] = {}
    for record in simulator.requests():
        if record["method"] == "POST" and record["action"] in REVERSE_ACTIONS:
            counts[record["group"]] = counts.get(record["group"], 0) + 1
    return counts


class Simulated:
    """A simulator on real time, served over TCP on a free port."""

    def __init__(self, seed_document: dict[str, Any]) -> None:
        self.simulator = Simulator(seed_document, rng_seed=0)
        self.server = SimulatorServer(self.simulator)

    @property
    def url(self) -> str:
        return self.server.url

    async def __aenter__(self) -> Simulated:
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop()


async def run_cli(*argv: str) -> int:
    """``azswitch ARGV`` in a worker thread (its own event loop), as a shell would run it."""
    return await asyncio.to_thread(main, list(argv))


def python_command(*argv: str) -> list[str]:
    return [sys.executable, "-m", "azswitch", *argv]


def journal_records(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            yield json.loads(line)
        except ValueError:
            continue


# --------------------------------------------------------------------------- a fake Kubernetes apiserver

RG_PATH = "/apis/azswitch.io/v1alpha1"


@dataclass
class FakeCluster:
    """Just enough of an apiserver for break-glass: ReplicationGroups (get, list, metadata merge patch with
    resourceVersion), Secrets (get), the Lease (get), operator pods (list), /version."""

    groups: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    secrets: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    lease: dict[str, Any] | None = None
    pods: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    version: int = 100
    runner: web.AppRunner | None = None
    port: int = 0

    def add_group(self, body: dict[str, Any], status: dict[str, Any] | None = None) -> None:
        obj = copy.deepcopy(body)
        meta = obj["metadata"]
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = str(self._bump())
        if status is not None:
            obj["status"] = status
        self.groups[(meta["namespace"], meta["name"])] = obj

    def _bump(self) -> int:
        self.version += 1
        return self.version

    def annotations(self, namespace: str, name: str) -> dict[str, str]:
        return dict(self.groups[(namespace, name)]["metadata"].get("annotations") or {})

    def kubeconfig(self, path: Path) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "admin", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "admin"}}],
            "current-context": "fake",
        }
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path

    @staticmethod
    def _status(code: int, message: str) -> web.Response:
        return web.json_response(
            {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": code},
            status=code,
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        payload = json.loads(body) if body else None
        self.requests.append((request.method, request.path, payload))
        parts = request.path.strip("/").split("/")
        if request.path.rstrip("/") == "/version":
            return web.json_response({"major": "1", "minor": "30", "gitVersion": "v1.30.0"})
        if request.path == f"{RG_PATH}/replicationgroups":
            return web.json_response({"kind": "ReplicationGroupList", "items": list(self.groups.values())})
        if request.path.startswith(f"{RG_PATH}/namespaces/") and len(parts) == 7:
            key = (parts[4], parts[6])
            if key not in self.groups:
                return self._status(404, "not found")
            obj = self.groups[key]
            if request.method == "PATCH":
                meta = (payload or {}).get("metadata") or {}
                wanted = meta.get("resourceVersion")
                if wanted is not None and wanted != obj["metadata"]["resourceVersion"]:
                    return self._status(409, "conflict")
                annotations = dict(obj["metadata"].get("annotations") or {})
                for k, v in (meta.get("annotations") or {}).items():
                    if v is None:
                        annotations.pop(k, None)
                    else:
                        annotations[k] = v
                obj["metadata"]["annotations"] = annotations
                obj["metadata"]["resourceVersion"] = str(self._bump())
            return web.json_response(obj)
        if request.path.startswith("/api/v1/namespaces/") and len(parts) == 6 and parts[4] == "secrets":
            data = self.secrets.get((parts[3], parts[5]))
            if data is None:
                return self._status(404, "not found")
            return web.json_response({"kind": "Secret", "apiVersion": "v1", "data": data})
        if request.path.startswith("/apis/coordination.k8s.io/v1/namespaces/"):
            if self.lease is None:
                return self._status(404, "not found")
            return web.json_response(self.lease)
        if request.path == "/api/v1/pods" or (len(parts) == 5 and parts[4] == "pods"):
            return web.json_response({"kind": "PodList", "apiVersion": "v1", "items": self.pods})
        return self._status(404, f"no route {request.path}")

    async def __aenter__(self) -> FakeCluster:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self.runner.addresses[0][1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
