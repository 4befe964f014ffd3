"""Shared machinery of the azswitch benchmarks: a real control plane, the simulator, the operator, and numbers.

Why a benchmark harness instead of timed tests: timings on a shared 2-core machine are too noisy to assert on,
but they are exactly what an operator's users ask about ("how long after the cloud is done does the resource
say Ready?", "how much memory for 1,000 groups?"). So each benchmark is a script that brings the product up
as a user runs it (``azswitch.dev.localenv``: kube-apiserver + etcd, ``azswitch simulate``, ``azswitch run``
under deploy/'s RBAC), drives a scenario, measures from the outside (the apiserver's watch, the simulator's
request log, ``/proc``), and prints a table with the machine it ran on. Nothing here asserts; a MISS is a
finding, reported with the numbers.

The benchmarks' own client is ``httpx`` with the admin kubeconfig (a thread-local client per thread): it
creates hundreds of resources quickly and streams a watch whose receipt times stamp status transitions.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import datetime as dt
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import shlex
import signal
import ssl
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import yaml

from azswitch.dev.localenv import LocalEnv, OperatorProcess, SimulatorProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
GROUP, VERSION, PLURAL = "azswitch.io", "v1alpha1", "replicationgroups"
AZ1, AZ2 = "az1.dc1", "az2.dc2"
REGION = "cn-north-4"
AK, SK = "AKBENCH000000000000", "SKBENCH0000000000000000000000000000000000"
SECRET = "evs-credentials"
REVERSE = "os-reverse-replication-consistency-group"
GROUP_LIST_TEMPLATE = "/v2/{project_id}/os-vendor-replication-consistency-groups"
#: The SDRS side of the simulator (``--service SDRS``): protection groups, their reverse, their jobs.
SDRS_REVERSE = "reverse-server-group"
SDRS_LIST_TEMPLATE = "/v1/{project_id}/server-groups"
SDRS_JOB_TEMPLATE = "/v1/{project_id}/jobs/{job_id}"
SERVICES = ("EVS", "SDRS")
_ID_NAMESPACE = uuid.UUID("b3c5c0de-7a1e-4b1e-9e55-a2b5e7c3d001")


# ------------------------------------------------------------------------------------------- the fleet


@dataclasses.dataclass(frozen=True)
class Member:
    """One ReplicationGroup and the cloud group it names."""

    name: str
    group_id: str
    project_id: str


@dataclasses.dataclass(frozen=True)
class Fleet:
    namespace: str
    members: tuple[Member, ...]
    #: ``spec.cloud.service`` of every resource: EVS consistency groups or SDRS protection groups.
    service: str = "EVS"

    def projects(self) -> list[str]:
        return sorted({m.project_id for m in self.members})

    def by_name(self) -> dict[str, Member]:
        return {m.name: m for m in self.members}

    def by_group(self) -> dict[str, Member]:
        return {m.group_id: m for m in self.members}


def project_id(index: int) -> str:
    """A 32-hex project ID, the same on every run."""
    return hashlib.md5(f"azswitch-bench-project-{index}".encode()).hexdigest()


def make_fleet(namespace: str, groups: int, projects: int = 1, service: str = "EVS") -> Fleet:
    """``groups`` resources spread round-robin over ``projects`` projects; IDs are UUIDv5, stable across runs."""
    members = []
    for i in range(groups):
        project = project_id(i % projects)
        group = str(uuid.uuid5(_ID_NAMESPACE, f"{project}/{i}"))
        members.append(Member(f"rg-{i:04d}", group, project))
    return Fleet(namespace, tuple(members), service)


def seed_document(fleet: Fleet, timings: Mapping[str, float]) -> dict[str, Any]:
    """The simulator seed (operator/azswitch/dev/simulator/seed.py): every group active, primary in AZ1 (EVS:
    one pair; SDRS: a protected group whose source station is AZ1)."""
    projects = fleet.projects()
    base = {
        "projects": [{"id": p, "name": f"bench-{i}"} for i, p in enumerate(projects)],
        "credentials": [{"accessKey": AK, "secretKey": SK}],
        "timings": dict(timings),
    }
    if fleet.service == "SDRS":
        return base | {
            "sdrsGroups": [
                {
                    "projectID": m.project_id,
                    "id": m.group_id,
                    "name": m.name,
                    "sourceAZ": AZ1,
                    "targetAZ": AZ2,
                }
                for m in fleet.members
            ]
        }
    return base | {
        "groups": [
            {
                "projectID": m.project_id,
                "id": m.group_id,
                "name": m.name,
                "availabilityZones": [AZ1, AZ2],
                "primaryAZ": AZ1,
                "replicationStatus": "active",
                "pairs": 1,
            }
            for m in fleet.members
        ],
    }


def rg_manifest(fleet: Fleet, member: Member, endpoint: str, primary: str = AZ1) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ReplicationGroup",
        "metadata": {"name": member.name, "namespace": fleet.namespace},
        "spec": {
            "groupID": member.group_id,
            "primaryAZ": primary,
            "cloud": {
                "service": fleet.service,
                "region": REGION,
                "projectID": member.project_id,
                "endpoint": endpoint,
                "credentialsSecretRef": {"name": SECRET},
            },
        },
    }


# ------------------------------------------------------------------------------ resources and their status


def condition(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == type_:
            return cond
    return None


def is_ready(obj: Mapping[str, Any]) -> bool:
    """Ready=True for the current generation (kstatus), as ``kubectl wait --for=condition=Ready`` sees it."""
    status = obj.get("status") or {}
    cond = condition(obj, "Ready")
    generation = (obj.get("metadata") or {}).get("generation")
    return (
        cond is not None
        and cond.get("status") == "True"
        and status.get("observedGeneration") == generation
        and "operation" not in status
    )


# ------------------------------------------------------------------------------------- Kubernetes client


class KubeREST:
    """The admin identity of a kubeconfig over httpx; one client per thread (httpx clients are not shared)."""

    def __init__(self, kubeconfig: Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        self.server = str(cluster["server"]).rstrip("/")
        self._ssl = ssl.create_default_context()
        if "certificate-authority-data" in cluster:
            self._ssl.load_verify_locations(
                cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
            )
        elif "certificate-authority" in cluster:
            self._ssl.load_verify_locations(cafile=cluster["certificate-authority"])
        self._headers = {"Authorization": f"Bearer {user['token']}"}
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()

    def client(self) -> httpx.Client:
        found: httpx.Client | None = getattr(self._local, "client", None)
        if found is None:
            found = httpx.Client(
                base_url=self.server, verify=self._ssl, headers=self._headers, timeout=httpx.Timeout(30.0)
            )
            self._local.client = found
            with self._lock:
                self._clients.append(found)
        return found

    def close(self) -> None:
        with self._lock:
            for client in self._clients:
                with contextlib.suppress(Exception):
                    client.close()
            self._clients.clear()

    def request(self, method: str, path: str, body: Any = None, content_type: str | None = None) -> Any:
        headers = {"Content-Type": content_type} if content_type else None
        response = self.client().request(method, path, json=body, headers=headers)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} answered {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    @staticmethod
    def rg_path(namespace: str, name: str | None = None) -> str:
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
        return f"{base}/{name}" if name else base

    def patch_spec(self, namespace: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "PATCH", self.rg_path(namespace, name), {"spec": dict(spec)}, "application/merge-patch+json"
        )
        return result

    def list_rgs(self, namespace: str) -> tuple[list[dict[str, Any]], str]:
        answer = self.request("GET", self.rg_path(namespace))
        return list(answer["items"]), str(answer["metadata"]["resourceVersion"])

    def watch_rgs(self, namespace: str, resource_version: str, seconds: int) -> Iterator[dict[str, Any]]:
        """Watch events (``{"type", "object"}``) from ``resource_version`` for at most ``seconds``."""
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(seconds),
            "allowWatchBookmarks": "true",
        }
        timeout = httpx.Timeout(10.0, read=seconds + 30.0)
        with self.client().stream("GET", self.rg_path(namespace), params=params, timeout=timeout) as response:
            if response.status_code >= 400:
                raise RuntimeError(f"watch answered {response.status_code}")
            for line in response.iter_lines():
                if line.strip():
                    yield json.loads(line)


# ------------------------------------------------------------------------------------------------ watch


@dataclasses.dataclass(frozen=True)
class RGEvent:
    at: float  # wall clock (time.time()) when the event reached us
    type: str
    name: str
    obj: dict[str, Any]


class RGWatcher:
    """A background watch of one namespace's ReplicationGroups: the newest copy of each, receipt-stamped.

    Receipt time is what a user watching ``kubectl get rg -w`` would see, so it stamps "the resource showed
    Ready". ``on_event`` runs on the watch thread for every ADDED/MODIFIED/DELETED event.
    """

    def __init__(
        self, kube: KubeREST, namespace: str, on_event: Callable[[RGEvent], None] | None = None
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.on_event = on_event
        self.objects: dict[str, dict[str, Any]] = {}
        self.events = 0
        self.errors = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch {namespace}", daemon=True)
        self._rv = ""

    def start(self) -> RGWatcher:
        self._relist()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _relist(self) -> None:
        items, rv = self.kube.list_rgs(self.namespace)
        with self._cond:
            self.objects = {item["metadata"]["name"]: item for item in items}
            self._rv = rv
            self._cond.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for event in self.kube.watch_rgs(self.namespace, self._rv, 55):
                    at = time.time()
                    if self._stop.is_set():
                        return
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        # 410 Gone: our resourceVersion is too old; list again.
                        self._relist()
                        break
                    self._rv = obj.get("metadata", {}).get("resourceVersion", self._rv)
                    if kind == "BOOKMARK":
                        continue
                    name = obj["metadata"]["name"]
                    with self._cond:
                        if kind == "DELETED":
                            self.objects.pop(name, None)
                        else:
                            self.objects[name] = obj
                        self.events += 1
                        self._cond.notify_all()
                    if self.on_event is not None:
                        self.on_event(RGEvent(at, str(kind), name, obj))
            except Exception:  # reconnect on any transport hiccup, as kubectl would
                self.errors += 1
                if self._stop.wait(0.5):
                    return
                with contextlib.suppress(Exception):
                    self._relist()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._cond:
            return dict(self.objects)

    def wait(self, timeout: float) -> None:
        """Sleep until the next event or ``timeout``."""
        with self._cond:
            self._cond.wait(timeout)


# ------------------------------------------------------------------------------------------ /proc samples


@dataclasses.dataclass(frozen=True)
class ProcSample:
    at: float  # time.monotonic()
    rss_mb: float
    hwm_mb: float
    cpu_seconds: float


def proc_sample(pid: int) -> ProcSample | None:
    """VmRSS, VmHWM (peak RSS) and user+system CPU of ``pid``; None when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = {
        line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in status.splitlines() if ":" in line
    }

    def mb(key: str) -> float:
        return int(fields.get(key, "0 kB").split()[0]) / 1024

    ticks = os.sysconf("SC_CLK_TCK")
    after_comm = stat.rsplit(")", 1)[1].split()
    cpu = (int(after_comm[11]) + int(after_comm[12])) / ticks
    return ProcSample(time.monotonic(), mb("VmRSS"), mb("VmHWM"), cpu)


class RssSampler:
    """Samples a process once a second on a daemon thread."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[ProcSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss {pid}", daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def _run(self) -> None:
        while not self._stop.is_set():
            sample = proc_sample(self.pid)
            if sample is None:
                return
            self.samples.append(sample)
            self._stop.wait(self.interval)

    def between(self, start: float, end: float) -> list[ProcSample]:
        return [s for s in list(self.samples) if start <= s.at <= end]


# ----------------------------------------------------------------------------------- the simulator's log


def wall_of(record: Mapping[str, Any]) -> float:
    """A request-log record's ``wallTime`` (UTC, microseconds, no zone suffix) as epoch seconds."""
    moment = dt.datetime.strptime(str(record["wallTime"]), "%Y-%m-%dT%H:%M:%S.%f")
    return moment.replace(tzinfo=dt.UTC).timestamp()


def kind_of(record: Mapping[str, Any]) -> str:
    """LIST groups / LIST pairs / LIST disks / GET group / GET pair / GET volume / POST <action> / IAM / other."""
    template, method = str(record.get("template")), str(record.get("method"))
    if method == "GET" and template in (GROUP_LIST_TEMPLATE, SDRS_LIST_TEMPLATE):
        return "LIST groups"
    if method == "GET" and template.endswith("/os-vendor-replications"):
        return "LIST pairs"  # the zone index: every pair of the project
    if method == "GET" and template.endswith(("/cloudvolumes/detail", "/volumes/detail")):
        return "LIST disks"  # the zone index: the disks' AZs
    if method == "GET" and template.startswith((GROUP_LIST_TEMPLATE + "/", SDRS_LIST_TEMPLATE + "/")):
        return "GET group"
    if method == "GET" and template == SDRS_JOB_TEMPLATE:
        return "GET job"
    if method == "GET" and "/os-vendor-replications/" in template:
        return "GET pair"
    if method == "GET" and ("/volumes/" in template or "/cloudvolumes/" in template):
        return "GET volume"
    if method == "POST" and record.get("action"):
        return f"POST {record['action']}"
    if template.startswith("/v3/"):
        return "IAM"
    return f"{method} {template}"


def is_reverse(record: Mapping[str, Any]) -> bool:
    return record.get("method") == "POST" and record.get("action") in (REVERSE, SDRS_REVERSE)


class RequestTap:
    """Collects the simulator's request log without gaps (it keeps only the last 10,000 records).

    Fetches every ``interval`` seconds on a daemon thread and merges by ``seq``; ``gaps`` counts records
    that rotated out between two fetches (then per-group numbers are incomplete, and the report says so).
    """

    def __init__(self, sim: SimulatorProcess, interval: float = 20.0) -> None:
        self.sim = sim
        self.interval = interval
        self.records: dict[int, dict[str, Any]] = {}
        self.gaps = 0
        self._last = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="request tap", daemon=True)

    def start(self) -> RequestTap:
        self.fetch()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):
                self.fetch()

    def fetch(self) -> None:
        batch = self.sim.requests()
        with self._lock:
            if batch and self._last and batch[0]["seq"] > self._last + 1:
                self.gaps += batch[0]["seq"] - self._last - 1
            for record in batch:
                self.records[int(record["seq"])] = record
            if batch:
                self._last = max(self._last, int(batch[-1]["seq"]))

    def close(self) -> None:
        self._stop.set()

    def stop(self) -> list[dict[str, Any]]:
        """Stop fetching; return every record collected, oldest first (after one last fetch)."""
        self._stop.set()
        self._thread.join(5)
        self.fetch()
        with self._lock:
            return [self.records[seq] for seq in sorted(self.records)]


# ------------------------------------------------------------------------------------- numbers and tables


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def verdict(value: float, limit: float) -> str:
    """PASS when ``value`` is at most ``limit`` (every target here is an upper bound)."""
    if math.isnan(value):
        return "n/a"
    return "PASS" if value <= limit else "MISS"


@dataclasses.dataclass(frozen=True)
class Row:
    metric: str
    value: str
    target: str = ""
    result: str = ""


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        # Read-only: prints the checked-out commit (the working tree may hold uncommitted changes).
        found = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        commit = found.stdout.strip() or commit

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    load = os.getloadavg()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "cpu": f"{cpu}, {os.cpu_count()} cores ({usable} usable)",
        "ram": mem,
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": f"kopf {version('kopf')}, kubernetes client {version('kubernetes')}, "
        f"httpx {version('httpx')}, azswitch {version('azswitch')} @ {commit}",
        "load average at start": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
    }


@dataclasses.dataclass
class Report:
    title: str
    command: str
    machine: dict[str, str]
    setup: dict[str, str] = dataclasses.field(default_factory=dict)
    rows: list[Row] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def add(self, metric: str, value: str, target: str = "", result: str = "") -> None:
        self.rows.append(Row(metric, value, target, result))

    def text(self) -> str:
        widths = [
            max(len("metric"), *(len(r.metric) for r in self.rows)),
            max(len("measured"), *(len(r.value) for r in self.rows)),
            max(len("target"), *(len(r.target) for r in self.rows)),
        ]
        bar = "-" * (sum(widths) + 6 + 8)
        lines = [bar, self.title, bar]
        lines += [f"{k + ':':<24}{v}" for k, v in self.machine.items()]
        lines += [f"{k + ':':<24}{v}" for k, v in self.setup.items()]
        lines.append(f"{'command:':<24}{self.command}")
        lines.append(bar)
        header = ("metric", "measured", "target", "result")
        lines.append(f"{header[0]:<{widths[0]}}  {header[1]:>{widths[1]}}  {header[2]:<{widths[2]}}  result")
        for r in self.rows:
            lines.append(
                f"{r.metric:<{widths[0]}}  {r.value:>{widths[1]}}  {r.target:<{widths[2]}}  {r.result}"
            )
        lines.append(bar)
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", f"`{self.command}`", ""]
        lines += [f"- {k}: {v}" for k, v in {**self.machine, **self.setup}.items()]
        lines += ["", "| metric | measured | target | result |", "|---|---:|---|---|"]
        lines += [f"| {r.metric} | {r.value} | {r.target} | {r.result} |" for r in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- Bench


class BenchTimeout(RuntimeError):
    """A phase did not finish within the bound the benchmark set for it."""


class Bench:
    """One benchmark run: owns the LocalEnv (every process, removed on exit) and the progress output."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        self.name = name
        self.args = args
        self.started = time.monotonic()
        self.deadline = self.started + float(args.timeout)
        self.namespace = f"bench-{name}"
        self.env = LocalEnv(progress=self.progress)
        self.env.keep_logs = bool(args.keep_logs)
        self.kube: KubeREST | None = None
        self.sim: SimulatorProcess | None = None
        self.machine = machine_info()
        # False while the operator is stopped on purpose, so that waits do not report it as a crash.
        self.expect_operator = False
        self._threads: list[RGWatcher | RssSampler | RequestTap] = []

    # -- output

    def progress(self, line: str) -> None:
        print(f"[{self.name} {time.monotonic() - self.started:6.1f}s] {line}", file=sys.stderr, flush=True)

    def command(self) -> str:
        script = Path(sys.argv[0]).resolve()
        with contextlib.suppress(ValueError):
            script = script.relative_to(ROOT)
        return shlex.join([".venv/bin/python", str(script), *sys.argv[1:]])

    def report(self, title: str) -> Report:
        return Report(title, self.command(), dict(self.machine))

    # -- time bounds

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def bound(self, seconds: float) -> float:
        """``seconds``, but never past the run's --timeout."""
        return max(1.0, min(seconds, self.remaining()))

    def wait_until(
        self, check: Callable[[], tuple[bool, str]], what: str, timeout: float, every: float = 5.0
    ) -> float:
        """Poll ``check`` (every 0.2 s) until it says done; print its message every ``every`` s.

        Returns the seconds waited; raises BenchTimeout past ``timeout`` (or the run's deadline), and
        RuntimeError at once when the operator or the simulator has exited.
        """
        start = time.monotonic()
        limit = start + self.bound(timeout)
        shown = start
        while True:
            done, message = check()
            now = time.monotonic()
            if done:
                return now - start
            self.check_processes()
            if now > limit:
                raise BenchTimeout(f"timed out after {now - start:.0f} s waiting for {what}; {message}")
            if now - shown >= every:
                self.progress(f"waiting for {what}: {message}")
                shown = now
            time.sleep(0.2)

    def check_processes(self) -> None:
        """Fail at once, with its log, when the operator or the simulator has exited under us."""
        operator = self.env.operator
        if operator is not None and self.expect_operator and not operator.alive():
            raise RuntimeError(
                f"the operator exited with {operator.popen.returncode}:\n{operator.log_tail(30)}"
            )
        if self.sim is not None and not self.sim.alive():
            raise RuntimeError(
                f"the simulator exited with {self.sim.popen.returncode} (a signal from outside this run?):\n"
                f"{self.sim.log_tail(5)}"
            )

    # -- bringing things up

    def up(self, fleet: Fleet, timings: Mapping[str, float]) -> None:
        """Control plane, CRDs, deploy/'s identity, the simulator seeded with ``fleet``, namespace + Secret."""
        self.env.start_cluster()
        self.env.install_crds()
        self.env.install_operator_identity()
        assert self.env.plane is not None
        self.kube = KubeREST(self.env.plane.kubeconfig)
        self.progress(
            f"seeding the simulator with {len(fleet.members)} groups in {len(fleet.projects())} project(s)"
        )
        self.sim = self.env.start_simulator(seed_document(fleet, timings), timeout=120)
        kube = self.kube
        kube.request("POST", "/api/v1/namespaces", {"metadata": {"name": fleet.namespace}})
        kube.request(
            "POST",
            f"/api/v1/namespaces/{fleet.namespace}/secrets",
            {
                "metadata": {"name": SECRET},
                "type": "Opaque",
                "stringData": {"accessKey": AK, "secretKey": SK},
            },
        )

    def create_resources(self, fleet: Fleet, primary: str = AZ1, threads: int = 8) -> float:
        """POST every ReplicationGroup (``threads`` at once); returns the seconds it took."""
        kube, sim = self.kube, self.sim
        assert kube is not None and sim is not None
        path = KubeREST.rg_path(fleet.namespace)
        done = 0
        lock = threading.Lock()
        start = time.monotonic()

        def create(member: Member) -> None:
            nonlocal done
            kube.request("POST", path, rg_manifest(fleet, member, sim.url, primary))
            with lock:
                done += 1
                if done % 250 == 0:
                    self.progress(f"created {done}/{len(fleet.members)} ReplicationGroups")

        with ThreadPoolExecutor(threads, thread_name_prefix="create") as pool:
            for future in [pool.submit(create, m) for m in fleet.members]:
                future.result()
        took = time.monotonic() - start
        self.progress(f"created {len(fleet.members)} ReplicationGroups in {took:.1f} s")
        return took

    def operator_settings(self, **overrides: str) -> dict[str, str]:
        """Defaults except a free metrics port (several operators may share this machine)."""
        settings = {"AZSWITCH_METRICS_PORT": str(free_port())}
        settings.update({f"AZSWITCH_{k.upper()}": v for k, v in overrides.items()})
        return settings

    def start_operator(self, settings: Mapping[str, str]) -> OperatorProcess:
        self.expect_operator = True
        shown = " ".join(f"{k}={v}" for k, v in settings.items() if k != "AZSWITCH_METRICS_PORT")
        self.progress(f"operator settings: {shown or 'defaults'}")
        return self.env.start_operator(settings, timeout=self.bound(90))

    def stop_operator(self) -> None:
        """SIGTERM (a clean shutdown), e.g. to restart with other settings."""
        self.expect_operator = False
        if self.env.operator is not None:
            self.progress(f"stopping the operator (pid {self.env.operator.pid})")
            self.env.operator.stop()

    def kill_operator(self) -> None:
        self.expect_operator = False
        self.env.kill_operator()

    def metrics(self) -> dict[str, float]:
        """The operator's Prometheus metrics (name{labels} -> value), or {} when unreachable."""
        port = self.env.operator_env.get("AZSWITCH_METRICS_PORT")
        if not port or port == "0":
            return {}
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.HTTPError:
            return {}
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    values[name] = float(value)
        return values

    def watch(self, namespace: str, on_event: Callable[[RGEvent], None] | None = None) -> RGWatcher:
        assert self.kube is not None
        watcher = RGWatcher(self.kube, namespace, on_event).start()
        self._threads.append(watcher)
        return watcher

    def sample(self, pid: int) -> RssSampler:
        sampler = RssSampler(pid).start()
        self._threads.append(sampler)
        return sampler

    def tap(self, interval: float = 20.0) -> RequestTap:
        assert self.sim is not None
        tap = RequestTap(self.sim, interval).start()
        self._threads.append(tap)
        return tap

    def wait_all_ready(self, watcher: RGWatcher, count: int, timeout: float, what: str = "") -> float:
        def check() -> tuple[bool, str]:
            objects = watcher.snapshot()
            ready = sum(1 for obj in objects.values() if is_ready(obj))
            return ready >= count, f"{ready}/{count} Ready"

        return self.wait_until(check, what or f"{count} ReplicationGroups Ready", timeout)

    def close(self) -> None:
        for thread in self._threads:
            with contextlib.suppress(Exception):
                if isinstance(thread, RequestTap):
                    thread.close()  # no last fetch: the simulator may be gone already
                else:
                    thread.stop()
        if self.kube is not None:
            self.kube.close()
        self.env.close()


def base_parser(description: str, timeout: float) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--timeout",
        type=float,
        default=timeout,
        help=f"bound on the whole run, seconds (default {timeout:.0f})",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the operator/simulator logs")
    parser.add_argument(
        "--service",
        choices=SERVICES,
        default="EVS",
        help="the cloud backend of every group: EVS consistency groups (default) or SDRS protection groups",
    )
    parser.add_argument("--markdown", type=Path, help="also append the result table (Markdown) to this file")
    return parser


def run(name: str, args: argparse.Namespace, body: Callable[[Bench], Report]) -> int:
    """Run ``body`` in a Bench; print its report; stop everything on the way out, also on Ctrl-C/SIGTERM."""

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    bench = Bench(name, args)
    for key, value in bench.machine.items():
        bench.progress(f"{key}: {value}")
    code = 0
    try:
        report = body(bench)
        report.setup.setdefault("load average at end", " ".join(f"{x:.2f}" for x in os.getloadavg()))
        report.setup.setdefault("wall time of the run", f"{time.monotonic() - bench.started:.0f} s")
        print(report.text(), flush=True)
        if args.markdown is not None:
            with args.markdown.open("a") as handle:
                handle.write(report.markdown() + "\n")
    except KeyboardInterrupt:
        bench.progress("interrupted: stopping everything this run started")
        code = 130
    except Exception as error:
        bench.env.keep_logs = True
        bench.progress(f"FAILED: {error}")
        traceback.print_exc()
        code = 1
    finally:
        # A second Ctrl-C while cleaning up must not leave processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bench.close()
    return code


def fmt_s(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds:.3f} s"


# ------------------------------------------------------------------------------ adoption of a large fleet


@dataclasses.dataclass(frozen=True)
class Adoption:
    """How a fleet was created and first reconciled (see ``adopt``)."""

    create_seconds: float
    ready_seconds: float  # from the first create until every resource was Ready
    requests: dict[str, int]  # cloud requests by kind while adopting
    rss_empty_mb: float  # the adopting operator before any resource existed
    rss_mb: float  # ... once all were Ready
    hwm_mb: float  # ... its peak RSS so far

    def requests_per_group(self, groups: int) -> float:
        return sum(self.requests.values()) / max(1, groups)


def count_kinds(counts: Mapping[str, int]) -> dict[str, int]:
    """Group the simulator's ``/_sim/requests/counts`` keys ("METHOD template [action]") by ``kind_of``."""
    kinds: dict[str, int] = {}
    for key, value in counts.items():
        method, _, rest = key.partition(" ")
        template, _, action = rest.partition(" ")
        kind = kind_of({"method": method, "template": template, "action": action or None})
        kinds[kind] = kinds.get(kind, 0) + value
    return kinds


def count_records(records: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Like ``count_kinds``, from request-log records (a ``RequestTap``'s)."""
    kinds: dict[str, int] = {}
    for record in records:
        kind = kind_of(record)
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


#: The coarse kinds every benchmark prints, so that the cost model reads the same everywhere.
METHOD_KINDS = ("LIST", "GET", "POST", "other")


def method_kind(kind: str) -> str:
    """``kind_of``'s fine kind → LIST (a page of groups, pairs or disks), GET (one object: group, pair,
    volume, job), POST (an action: switchover, failover, reprotect), or other (IAM tokens, the unexpected)."""
    if kind.startswith("LIST "):
        return "LIST"
    if kind.startswith("GET "):
        return "GET"
    if kind.startswith("POST ") and not kind.startswith("POST /"):
        return "POST"
    return "other"


def by_method(kinds: Mapping[str, int]) -> dict[str, int]:
    """``count_kinds``/``count_records`` output folded into ``METHOD_KINDS`` (every one present)."""
    folded = dict.fromkeys(METHOD_KINDS, 0)
    for kind, n in kinds.items():
        folded[method_kind(kind)] += n
    return folded


def add_request_rows(
    report: Report,
    kinds: Mapping[str, int],
    what: str = "cloud requests",
    *,
    groups: int | None = None,
    seconds: float | None = None,
) -> None:
    """The rows every benchmark prints for a window of cloud requests: totals by LIST / GET / POST / other,
    the fine kinds, and (when given) per group and per second."""
    folded = by_method(kinds)
    total = sum(folded.values())
    report.add(
        f"{what}: total (LIST / GET / POST / other)",
        f"{total} ({' / '.join(str(folded[k]) for k in METHOD_KINDS)})",
    )
    if kinds:
        report.add("  by kind", ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    if groups:
        per = {k: folded[k] / groups for k in METHOD_KINDS}
        report.add(
            "  per group (LIST / GET / POST / other)",
            f"{total / groups:.2f} ({' / '.join(f'{per[k]:.2f}' for k in METHOD_KINDS)})",
        )
    if seconds:
        report.add("  per second", f"{total / seconds:.1f}")


def sim_counts(sim: SimulatorProcess) -> dict[str, int]:
    counts: dict[str, int] = sim.control("GET", "/requests/counts")
    return counts


def diff_counts(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def add_adoption_arguments(parser: argparse.ArgumentParser) -> None:
    """``--adopt-rate-limit``, for the benchmarks that create their fleet with ``adopt``."""
    parser.add_argument(
        "--adopt-rate-limit",
        type=float,
        default=1000,
        help="AZSWITCH_RATE_LIMIT while adopting (default 1000)",
    )


def adopt(bench: Bench, fleet: Fleet, watcher: RGWatcher, rate_limit: float) -> Adoption:
    """Start an operator with a raised client-side rate limit, create the fleet, wait until all are Ready.

    Why the raised limit: a resource seen for the first time costs 3 cloud reads besides its share of the
    shared LIST (its pair and its two volumes, to learn its AZs), so at the default 10 requests/s adopting
    1,000 groups takes about 5 minutes — reported by B2, but not what B3/B4 are about. The benchmarks then
    restart the operator with default settings before measuring.
    """
    assert bench.sim is not None
    burst = str(max(1, int(rate_limit)))
    operator = bench.start_operator(bench.operator_settings(rate_limit=f"{rate_limit:g}", rate_burst=burst))
    time.sleep(2.0)
    empty = proc_sample(operator.pid)
    before = sim_counts(bench.sim)
    start = time.monotonic()
    created = bench.create_resources(fleet)
    bench.wait_all_ready(watcher, len(fleet.members), timeout=60 + len(fleet.members) * 1.0)
    ready = time.monotonic() - start
    sample = proc_sample(operator.pid)
    requests = count_kinds(diff_counts(sim_counts(bench.sim), before))
    bench.progress(
        f"all {len(fleet.members)} Ready {ready:.1f} s after the first create; "
        f"{sum(requests.values())} cloud requests ({requests})"
    )
    return Adoption(
        created,
        ready,
        requests,
        empty.rss_mb if empty else math.nan,
        sample.rss_mb if sample else math.nan,
        sample.hwm_mb if sample else math.nan,
    )


def wait_operator_settled(bench: Bench, phase_counts: Mapping[str, int], timeout: float) -> float:
    """Wait until the operator's ``azswitch_groups{phase}`` gauges reach ``phase_counts``.

    After a restart the operator reconciles every resource once; when nothing changed it writes nothing,
    so the watch cannot tell when it is done — its metrics can.
    """

    def check() -> tuple[bool, str]:
        metrics = bench.metrics()
        found = {phase: int(metrics.get(f'azswitch_groups{{phase="{phase}"}}', 0)) for phase in phase_counts}
        return all(found[p] >= n for p, n in phase_counts.items()), f"operator reports {found}"

    return bench.wait_until(check, "the operator to have reconciled every resource", timeout)
