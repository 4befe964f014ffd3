"""``azswitch demo``: the whole product on this machine, with no cloud account and no cluster to borrow.

Why it exists: the quickest honest answer to "what does azswitch do?" is to watch it do it, with the same
pieces a user runs: a real kube-apiserver + etcd (built once from Debian packages if needed), the cloud
simulator over HTTP, and ``azswitch run`` as its own process with deploy/'s ServiceAccount and RBAC
(azswitch.dev.localenv starts them all). The demo applies a Secret and two ReplicationGroups through kubectl — one
for an EVS replication consistency group, one for an SDRS protection group, the two cloud backends — waits
until both are Ready, flips both ``spec.primaryAZ`` and shows the switchovers live: a ``kubectl get rg -w``-like
table line on every change, interleaved with the Kubernetes Events, with the elapsed time.

Interactive (the default), everything keeps running afterwards so the user can continue with kubectl; Ctrl-C
stops all of it. ``--once`` runs the same scenario non-interactively and exits 0 only when the switchover
completed as promised: for each group exactly one switchover request reached the cloud (EVS
``os-reverse-replication-consistency-group``; SDRS ``reverse-server-group`` naming the new primary's station),
each resource is Ready with the new primary, and the SwitchoverStarted/SwitchoverSucceeded events were
posted. Every failure says what to look at next; the logs are then kept.
"""

from __future__ import annotations

import shlex
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from azswitch.dev import controlplane
from azswitch.dev.localenv import (
    JsonWatch,
    Kubectl,
    LocalEnv,
    LocalEnvError,
    SimulatorProcess,
    free_port,
    secret_manifest,
)

NAMESPACE = "demo"
SECRET = "evs-credentials"
# The demo seed's credentials and groups (operator/azswitch/dev/simulator/demo-seed.yaml).
PROJECT = "0123456789abcdef0123456789abcdef"
ACCESS_KEY, SECRET_KEY = "AKEXAMPLE0000000000", "SKEXAMPLE0000000000000000000000000000000"
FROM_AZ, TO_AZ = "az1.dc1", "az2.dc2"


@dataclass(frozen=True)
class DemoGroup:
    """One ReplicationGroup of the demo and the cloud group it manages."""

    name: str
    group_id: str
    service: str
    what: str


GROUPS = (
    DemoGroup("orders-db", "91085433-9499-4a68-b2c6-35072467ccd2", "EVS", "EVS consistency group orders"),
    DemoGroup(
        "billing-db", "5e3f8a2c-1b7d-4c69-8f04-d2a6b9c1e7f3", "SDRS", "SDRS protection group pg-billing"
    ),
)
NAME = GROUPS[0].name
STEPS = 6
# Generous: the seed's switchover takes about 8 s (5 s reversing, 3 s copying).
READY_TIMEOUT = 60.0
SWITCHOVER_TIMEOUT = 120.0
OPERATOR_SETTINGS = {
    # Drift (e.g. a switchover made behind azswitch's back) is corrected within seconds, not a minute.
    "AZSWITCH_RESYNC_INTERVAL": "10",
    "AZSWITCH_LOG_FORMAT": "plain",
}


class DemoFailed(Exception):
    """The scenario did not go as promised; the message says what happened and where to look."""


class _Clock:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def stamp(self) -> str:
        return f"[{time.monotonic() - self.started:6.1f}s]"


def _say(line: str = "") -> None:
    print(line, flush=True)


class LiveView:
    """Prints a table row whenever a ReplicationGroup's columns change, and each new Event once."""

    COLUMNS = ("NAME", "DESIRED", "CURRENT", "REPLICATION", "PHASE", "READY")
    WIDTHS = (11, 9, 9, 12, 15, 6)

    def __init__(self, clock: _Clock) -> None:
        self.clock = clock
        self.rows: dict[str, tuple[str, ...]] = {}
        self.events: set[str] = set()
        self.latest: dict[str, dict[str, Any]] = {}
        self.reasons: list[str] = []
        self.reasons_by: dict[str, list[str]] = {}
        self._header_shown = False

    def reasons_of(self, name: str) -> list[str]:
        return self.reasons_by.get(name, [])

    def _row(self, cells: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, self.WIDTHS, strict=True)).rstrip()

    def resource(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        self.latest[name] = obj
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        ready = next(
            (c.get("status", "") for c in status.get("conditions") or [] if c.get("type") == "Ready"), ""
        )
        cells = (
            name,
            spec.get("primaryAZ", ""),
            status.get("currentPrimaryAZ", ""),
            (status.get("cloud") or {}).get("replicationStatus", ""),
            status.get("phase", ""),
            ready,
        )
        if self.rows.get(name) == cells:
            return
        self.rows[name] = cells
        if not self._header_shown:
            _say(f"{' ' * 9}  {self._row(self.COLUMNS)}")
            self._header_shown = True
        _say(f"{self.clock.stamp()}  {self._row(tuple(c or '-' for c in cells))}")

    def event(self, obj: dict[str, Any]) -> None:
        uid = obj["metadata"].get("uid") or obj["metadata"]["name"]
        if uid in self.events or obj.get("involvedObject", {}).get("kind") != "ReplicationGroup":
            return
        self.events.add(uid)
        self.reasons.append(obj.get("reason", ""))
        self.reasons_by.setdefault(obj.get("involvedObject", {}).get("name", ""), []).append(
            obj.get("reason", "")
        )
        _say(
            f"{self.clock.stamp()}  event {obj.get('involvedObject', {}).get('name', '')} {obj.get('type', '')} "
            f"{obj.get('reason', '')}: {obj.get('message', '')}"
        )


class Demo:
    """One run of the scenario inside a LocalEnv."""

    def __init__(self, env: LocalEnv, clock: _Clock) -> None:
        self.env = env
        self.clock = clock
        self.view = LiveView(clock)
        self.kubectl: Kubectl | None = None
        self.sim: SimulatorProcess | None = None
        self.metrics_port = free_port()
        self.rg_watch: JsonWatch | None = None
        self.event_watch: JsonWatch | None = None

    def step(self, number: int, text: str) -> None:
        _say(f"\n{self.clock.stamp()} [{number}/{STEPS}] {text}")

    # -- bringing it up

    def start(self) -> None:
        self.step(1, "kube-apiserver + etcd on loopback (built once from Debian packages if not cached)")
        self.kubectl = self.env.start_cluster()
        self.step(2, "the ReplicationGroup CRD, and deploy/'s namespace, ServiceAccount and RBAC")
        self.env.install_crds()
        self.env.install_operator_identity()
        self.step(3, "the cloud simulator (EVS consistency groups and SDRS protection groups over HTTP)")
        self.sim = self.env.start_simulator(_demo_seed())
        self.step(
            4, "the operator: `azswitch run --all-namespaces` as ServiceAccount azswitch-system/azswitch"
        )
        self.env.start_operator({**OPERATOR_SETTINGS, "AZSWITCH_METRICS_PORT": str(self.metrics_port)})

    def _watches(self) -> tuple[JsonWatch, JsonWatch]:
        # kubectl's watch ends when the apiserver closes it (after many minutes); start it again then,
        # unless the apiserver itself is gone.
        ended = [w for w in (self.rg_watch, self.event_watch) if w is not None and not w.alive()]
        plane = self.env.plane
        if ended and plane is not None and not controlplane.status(plane.state_dir).running:
            raise DemoFailed(
                f"the control plane stopped; its logs: {plane.state_dir}/kube-apiserver.log, etcd.log"
            )
        if self.rg_watch is None or not self.rg_watch.alive():
            self.rg_watch = self.env.watch("replicationgroups", "-n", NAMESPACE)
        if self.event_watch is None or not self.event_watch.alive():
            self.event_watch = self.env.watch("events", "-n", NAMESPACE)
        return self.rg_watch, self.event_watch

    def pump(self, until: Callable[[dict[str, Any]], bool] | None, timeout: float | None, what: str) -> None:
        """Show changes as they come until ``until(resource)`` holds (or forever when it is None)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            rg_watch, event_watch = self._watches()
            obj = rg_watch.get(timeout=0.2)
            for event in event_watch.drain():
                self.view.event(event)
            if obj is not None:
                self.view.resource(obj)
            current = [self.view.latest.get(g.name) for g in GROUPS]
            if until is not None and all(o is not None and until(o) for o in current):
                return
            operator = self.env.operator
            if operator is not None and not operator.alive():
                raise DemoFailed(
                    f"the operator exited with {operator.popen.returncode}; its last lines:\n{operator.log_tail(15)}"
                )
            if deadline is not None and time.monotonic() > deadline:
                why = "; ".join(f"{g.name}: {_why(g.name, o)}" for g, o in zip(GROUPS, current, strict=True))
                raise DemoFailed(f"{what} did not happen within {timeout:.0f} s; {why}")

    # -- the scenario

    def scenario(self) -> None:
        assert self.kubectl is not None and self.sim is not None
        names = " and ".join(g.name for g in GROUPS)
        self.step(
            5, f"apply a Secret and ReplicationGroups {names} in namespace {NAMESPACE} (primary {FROM_AZ})"
        )
        self.kubectl.run("create", "namespace", NAMESPACE)
        manifests = [_replication_group(g, self.sim.url, FROM_AZ) for g in GROUPS]
        self.kubectl.apply([secret_manifest(NAMESPACE, SECRET, ACCESS_KEY, SECRET_KEY), *manifests])
        _say(f"  kubectl apply: secret/{SECRET} (endpoint {self.sim.url})")
        for g in GROUPS:
            _say(
                f"  kubectl apply: replicationgroup/{g.name}: cloud.service {g.service}, {g.what} ({g.group_id})"
            )
        self._watches()
        self.pump(lambda o: _ready(o, generation_at_least=1), READY_TIMEOUT, f"{names} becoming Ready")

        self.step(6, f"flip spec.primaryAZ to {TO_AZ}: the operator switches each group over, once")
        patch = f'{{"spec":{{"primaryAZ":"{TO_AZ}"}}}}'
        for g in GROUPS:
            _say(f"  kubectl -n {NAMESPACE} patch rg {g.name} --type merge -p '{patch}'")
            self.kubectl.run("patch", "rg", g.name, "-n", NAMESPACE, "--type", "merge", "-p", patch)
        started = time.monotonic()
        self.pump(_switched, SWITCHOVER_TIMEOUT, f"the switchovers of {names} to {TO_AZ}")
        # The events are posted right after the status writes; their watch may deliver them a moment later.
        self.pump(
            lambda o: self.view.reasons_of(o["metadata"]["name"]).count("SwitchoverSucceeded") >= 1,
            15,
            "the SwitchoverSucceeded events",
        )
        self.verify(time.monotonic() - started)

    def verify(self, seconds: float) -> None:
        assert self.kubectl is not None and self.sim is not None
        problems, done = [], []
        for g in GROUPS:
            obj = self.kubectl.json("get", "rg", g.name, "-n", NAMESPACE)
            status = obj.get("status") or {}
            reverses = self.sim.reverses(g.group_id)
            if reverses != 1:
                problems.append(f"{g.name}: the cloud received {reverses} switchover requests, not exactly 1")
            if status.get("currentPrimaryAZ") != TO_AZ or not _ready(obj, generation_at_least=2):
                problems.append(
                    f"{g.name}: status is {status.get('phase')} with primary {status.get('currentPrimaryAZ')}"
                )
            for reason in ("SwitchoverStarted", "SwitchoverSucceeded"):
                if reason not in self.view.reasons_of(g.name):
                    problems.append(f"{g.name}: no {reason} event")
            operation = status.get("lastOperation") or {}
            done.append(
                f"  {g.name} ({g.service}) is Ready in {TO_AZ}; operation {operation.get('id')} "
                f"{operation.get('result')}; the cloud received exactly {reverses} switchover request"
            )
        if problems:
            raise DemoFailed("; ".join(problems))
        _say(f"\n  done after {seconds:.1f} s:\n" + "\n".join(done))

    def instructions(self, once: bool) -> None:
        plane, sim, operator = self.env.plane, self.sim, self.env.operator
        assert plane is not None and sim is not None and operator is not None
        exports = controlplane.env(plane.state_dir)
        back = f'{{"spec":{{"primaryAZ":"{FROM_AZ}"}}}}'
        if once:
            _say(
                "\nRun `azswitch demo` (without --once) to keep all of it running and continue with kubectl."
            )
            return
        lines = [
            "",
            "Everything keeps running. Continue with kubectl in another terminal:",
            *(f"  {line}" for line in exports.splitlines()),
            f"  kubectl get rg -n {NAMESPACE} -o wide -w",
            f"  kubectl describe rg {NAME} -n {NAMESPACE}",
            f"  kubectl -n {NAMESPACE} patch rg {NAME} --type merge -p {shlex.quote(back)}    # flip back",
            f"  kubectl -n {NAMESPACE} patch rg {GROUPS[1].name} --type merge -p {shlex.quote(back)}    # the SDRS one",
            f"  kubectl wait --for=condition=Ready rg/{NAME} -n {NAMESPACE}",
            f"  curl -s {sim.url}/_sim/requests/counts    # what the cloud received",
            f"  curl -s http://127.0.0.1:{self.metrics_port}/metrics | grep ^azswitch_",
            f"Logs: {operator.log} (operator), {sim.log} (simulator), {plane.state_dir}/kube-apiserver.log",
            "Press Ctrl-C here to stop everything (operator, simulator, kube-apiserver, etcd) and remove "
            f"{self.env.workdir}. Changes keep showing below:",
        ]
        _say("\n".join(lines))


def _demo_seed() -> Path:
    from azswitch.dev.simulator.seed import DEMO_SEED

    return DEMO_SEED


def _replication_group(group: DemoGroup, endpoint: str, primary: str) -> dict[str, Any]:
    return {
        "apiVersion": "azswitch.io/v1alpha1",
        "kind": "ReplicationGroup",
        "metadata": {"name": group.name, "namespace": NAMESPACE},
        "spec": {
            "groupID": group.group_id,
            "primaryAZ": primary,
            "cloud": {
                "service": group.service,
                "region": "cn-north-4",
                "projectID": PROJECT,
                "endpoint": endpoint,
                "credentialsSecretRef": {"name": SECRET},
            },
        },
    }


def _ready(obj: dict[str, Any], *, generation_at_least: int) -> bool:
    status = obj.get("status") or {}
    generation = obj["metadata"].get("generation", 0)
    ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    return (
        generation >= generation_at_least
        and status.get("observedGeneration") == generation
        and bool(ready)
        and ready[0].get("status") == "True"
        and ready[0].get("observedGeneration") == generation
    )


def _switched(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    return (
        _ready(obj, generation_at_least=2)
        and status.get("currentPrimaryAZ") == TO_AZ
        and (status.get("lastOperation") or {}).get("result") == "Succeeded"
    )


def _why(name: str, obj: dict[str, Any] | None) -> str:
    """What the resource's conditions say (the operator explains itself there)."""
    if obj is None:
        return f"kubectl shows no {name} in namespace {NAMESPACE}"
    conditions = (obj.get("status") or {}).get("conditions") or []
    said = [f"{c.get('type')}={c.get('status')} {c.get('reason')}: {c.get('message')}" for c in conditions]
    if not said:
        return "the operator has written no status yet (it has not seen the resource, or cannot write it)"
    return "its conditions: " + "; ".join(said)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _hint(env: LocalEnv, error: BaseException) -> str:
    """What to do next, for the failures we can recognise."""
    operator = env.operator
    if isinstance(error, controlplane.ControlPlaneError):
        return "the control plane could not be started; the message above says how to get one"
    if operator is not None and 'User "system:anonymous"' in operator.log_tail(200):
        return f"the operator's requests arrive as system:anonymous, not as its ServiceAccount: read {operator.log}"
    if operator is not None:
        return f"read the operator's log: {operator.log}"
    return "see the message above"


def main(*, once: bool = False) -> int:
    """Run the demo; ``once``: non-interactively, exit 0 only when the switchover completed as expected."""
    clock = _Clock()
    _say("azswitch demo: a real kube-apiserver + etcd, the cloud simulator and the operator, on this machine")
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:
        signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the demo as cleanly as Ctrl-C does
    env = LocalEnv(progress=lambda line: _say(f"{clock.stamp()}   {line}"))
    demo = Demo(env, clock)
    completed = False
    code = 1
    try:
        demo.start()
        demo.scenario()
        completed = True
        demo.instructions(once)
        if once:
            code = 0
        else:
            demo.pump(None, None, "Ctrl-C")
    except KeyboardInterrupt:
        # Ctrl-C is how the interactive demo ends; elsewhere it is an interruption.
        code = 0 if completed and not once else 130
        _say("\ninterrupted" if code else "")
    except (DemoFailed, LocalEnvError, controlplane.ControlPlaneError) as error:
        _say(f"\ndemo FAILED: {error}")
        _say(f"next: {_hint(env, error)}")
        _say(f"the logs are kept in {env.logs} (the control plane's are copied there when it stops)")
        env.keep_logs = True
        code = 1
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave processes behind.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
        try:
            _say(f"\n{clock.stamp()} stopping everything the demo started")
            env.close()
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
    if once and code == 0:
        _say("demo passed")
    return code
