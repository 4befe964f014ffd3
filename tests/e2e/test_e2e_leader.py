"""Two operator replicas with Lease leader election against the real kube-apiserver: one leads, a switchover
runs, and no kill, termination or pause of the leader ever produces a second switchover request.

Why real processes: what leader election must survive — a SIGKILLed leader mid-operation, a SIGTERM in a
rolling update, a leader frozen (SIGSTOP: a GC pause, a stuck VM) while the other takes over and then woken
(SIGCONT) with a stale view of the world — only happens to processes. Each test stops the session's own
operator (which runs without election) and starts two ``azswitch run --leader-elect`` replicas,
``replica-a`` and ``replica-b``, as the downward API would name them, with a fast lease (4 s lease, 3 s renew
deadline, 0.5 s retry; ``OPERATOR_LEADER_SETTINGS``), authorised only by deploy/'s RBAC — so a passing test
also proves the Role for the Lease is enough.

Asserted, each where it can be proven: who holds the Lease (``kubectl get lease``, and each replica's
``azswitch_leader`` metric); exactly one processed switchover request per intent (the simulator's request
log) and the journaled operation id in ``lastOperation``; how fast a takeover and a handover are, against
bounds that only the mechanism under test can meet (a released Lease is taken in well under a lease
duration).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from conftest import AZ1, AZ2, E2E, SEED
from test_e2e import succeeded_for_generation

from azswitch.dev.localenv import (
    OPERATOR_FAST_SETTINGS,
    OPERATOR_LEADER_SETTINGS,
    REVERSE_ACTION,
    Kubectl,
    OperatorProcess,
    free_port,
)

pytestmark = pytest.mark.e2e

LEASE_NAME = "azswitch-leader"
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
LEASE_SECONDS = int(OPERATOR_LEADER_SETTINGS["AZSWITCH_LEADER_ELECTION_LEASE_DURATION"])
PROCESSED = 200


class Pair:
    """The replicas of one test, the Lease they elect on, and their metrics."""

    def __init__(self, e2e: E2E) -> None:
        self.e2e = e2e
        assert e2e.env.operator_identity is not None
        self.namespace = e2e.env.operator_identity[0]
        self.replicas: dict[str, OperatorProcess] = {}
        self.metrics_ports: dict[str, int] = {}

    def start(self, name: str, **settings: str) -> OperatorProcess:
        port = free_port()
        environment = {**OPERATOR_LEADER_SETTINGS, "AZSWITCH_METRICS_PORT": str(port), **settings}
        replica = self.e2e.env.start_replica(name, environment)
        self.replicas[name] = replica
        self.metrics_ports[name] = port
        return replica

    def lease(self) -> dict[str, Any]:
        found = self.e2e.kubectl.get_optional("lease", LEASE_NAME, self.namespace)
        return found or {}

    def holder(self) -> str:
        return str((self.lease().get("spec") or {}).get("holderIdentity") or "")

    def name_of(self, identity: str) -> str | None:
        return next((name for name in self.replicas if identity.startswith(f"{name}_")), None)

    def wait_leader(self, among: tuple[str, ...] | None = None, timeout: float = 20.0) -> str:
        """The name of the replica that holds the Lease (one of ``among``), once one does."""
        candidates = among or tuple(self.replicas)

        def check() -> str | None:
            self.check_alive(candidates)
            name = self.name_of(self.holder())
            return name if name in candidates else None

        return self.e2e.wait(check, f"one of {candidates} to hold the Lease", timeout)

    def check_alive(self, names: tuple[str, ...]) -> None:
        for name in names:
            replica = self.replicas[name]
            if not replica.alive():
                raise AssertionError(
                    f"{name} exited with {replica.popen.returncode}; its log:\n{replica.log_tail(30)}"
                )

    def metric(self, name: str, metric: str) -> float | None:
        url = f"http://127.0.0.1:{self.metrics_ports[name]}/metrics"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(f"{metric} "):
                    return float(line.split()[1])
        return None

    def logs(self) -> str:
        return "\n".join(f"--- {name} ({r.log})\n{r.log_tail(40)}" for name, r in self.replicas.items())


@pytest.fixture
def pair(e2e: E2E) -> Iterator[Pair]:
    """Two leader-elected replicas instead of the session's operator; afterwards the session's again."""
    if e2e.env.operator is not None:
        e2e.env.operator.stop()
        e2e.env.operator = None  # e2e.wait would report the stopped one as crashed
    replicas = Pair(e2e)
    try:
        yield replicas
    finally:
        for replica in replicas.replicas.values():
            replica.stop()
            with contextlib.suppress(ValueError):
                e2e.env.replicas.remove(replica)
        with contextlib.suppress(Exception):
            e2e.sim.set_timings(**SEED["timings"])
        e2e.env.start_operator(OPERATOR_FAST_SETTINGS)


def _reverse_statuses(e2e: E2E, group: str) -> list[int | None]:
    return [r["status"] for r in e2e.sim.requests(group) if r.get("action") == REVERSE_ACTION]


def _ready_at(e2e: E2E, ns: str, names: Mapping[str, str], az: str) -> dict[str, dict[str, Any]] | None:
    items = {o["metadata"]["name"]: o for o in e2e.kubectl.json("get", "rg", "-n", ns)["items"]}
    if all(
        name in items
        and (items[name].get("status") or {}).get("currentPrimaryAZ") == az
        and succeeded_for_generation(items[name])
        for name in names
    ):
        return items
    return None


def _create_ready(e2e: E2E, ns: str, count: int) -> dict[str, str]:
    groups = {f"db-{i}": e2e.new_group(primary=AZ1) for i in range(count)}
    e2e.kubectl.apply([e2e.rg_manifest(ns, name, group, primary=AZ1) for name, group in groups.items()])
    e2e.wait(
        lambda: all((e2e.rg(ns, name).get("status") or {}).get("phase") == "Ready" for name in groups),
        f"{count} groups Ready at {AZ1}",
    )
    return groups


def _flip(e2e: E2E, ns: str, groups: Mapping[str, str], az: str) -> None:
    e2e.kubectl.apply([e2e.rg_manifest(ns, name, group, primary=az) for name, group in groups.items()])


# ------------------------------------------------------------------------------------------------ tests


def test_one_replica_holds_the_lease_the_other_stands_by_ready(
    e2e: E2E, ns: str, secret: str, pair: Pair
) -> None:
    pair.start("replica-a")
    pair.start("replica-b")
    leader = pair.wait_leader()
    standby = next(name for name in pair.replicas if name != leader)

    lease = pair.lease()["spec"]
    assert lease["holderIdentity"].startswith(f"{leader}_") and len(lease["holderIdentity"]) > len(leader) + 8
    assert lease["leaseDurationSeconds"] == LEASE_SECONDS
    assert MICRO_TIME.match(lease["acquireTime"]) and MICRO_TIME.match(lease["renewTime"]), lease
    first_renew = lease["renewTime"]
    e2e.wait(lambda: pair.lease()["spec"]["renewTime"] != first_renew, "the leader to renew the Lease", 5)
    table = e2e.kubectl.run("get", "lease", "-n", pair.namespace, LEASE_NAME).stdout
    assert lease["holderIdentity"] in table, table

    # Both are ready (a standby is healthy, just not acting); the metric tells them apart.
    assert pair.replicas[standby].ready() and pair.replicas[leader].ready()
    assert (pair.metric(leader, "azswitch_leader"), pair.metric(standby, "azswitch_leader")) == (1.0, 0.0)

    groups = _create_ready(e2e, ns, 1)
    _flip(e2e, ns, groups, AZ2)
    e2e.wait(lambda: _ready_at(e2e, ns, groups, AZ2), f"the switchover to {AZ2}", 60)
    (group,) = groups.values()
    assert _reverse_statuses(e2e, group) == [PROCESSED]
    assert "SwitchoverStarted" in pair.replicas[leader].log_tail(400)
    standby_log = pair.replicas[standby].log_tail(400)
    assert "SwitchoverStarted" not in standby_log, standby_log

    events = e2e.kubectl.json("get", "events", "-n", pair.namespace)["items"]
    mine = [
        e["message"]
        for e in events
        if e["involvedObject"].get("kind") == "Lease" and e["involvedObject"].get("name") == LEASE_NAME
    ]
    assert f"{lease['holderIdentity']} became leader" in mine, mine


def test_sigkill_of_the_leader_mid_switchover_the_other_completes_each_exactly_once(
    e2e: E2E, ns: str, secret: str, pair: Pair
) -> None:
    pair.start("replica-a")
    pair.start("replica-b")
    leader = pair.wait_leader()
    survivor = next(name for name in pair.replicas if name != leader)
    groups = _create_ready(e2e, ns, 4)
    transitions = int(pair.lease()["spec"].get("leaseTransitions") or 0)

    e2e.sim.set_timings(switchoverSeconds=6.0, copyingSeconds=0.5)
    _flip(e2e, ns, groups, AZ2)
    e2e.wait(
        lambda: all(_reverse_statuses(e2e, g) == [PROCESSED] for g in groups.values()),
        "every switchover to reach the cloud",
    )
    journal = {name: (e2e.rg(ns, name).get("status") or {}).get("operation") or {} for name in groups}
    assert all(op.get("id") for op in journal.values()), journal

    killed_at = time.monotonic()
    pair.replicas[leader].kill9()
    assert pair.wait_leader(among=(survivor,)) == survivor
    takeover = time.monotonic() - killed_at
    print(f"SIGKILL → {survivor} holds the Lease: {takeover:.1f} s")
    # A dead leader's Lease is taken after a lease duration by the survivor's clock (plus a retry).
    assert takeover < LEASE_SECONDS + 6, pair.logs()

    items = e2e.wait(lambda: _ready_at(e2e, ns, groups, AZ2), f"every group Ready at {AZ2}", 90)
    for name, group in groups.items():
        last = items[name]["status"]["lastOperation"]
        assert (last["id"], last["result"], last["attempts"]) == (journal[name]["id"], "Succeeded", 1), last
        assert _reverse_statuses(e2e, group) == [PROCESSED], (name, _reverse_statuses(e2e, group))
    assert int(pair.lease()["spec"]["leaseTransitions"]) == transitions + 1
    assert pair.metric(survivor, "azswitch_leader") == 1.0


def test_sigterm_releases_the_lease_and_hands_over_in_well_under_a_lease_duration(
    e2e: E2E, ns: str, secret: str, pair: Pair
) -> None:
    # A long lease here: a handover faster than half of it can only come from the release.
    slow = {
        "AZSWITCH_LEADER_ELECTION_LEASE_DURATION": "12",
        "AZSWITCH_LEADER_ELECTION_RENEW_DEADLINE": "8",
        "AZSWITCH_LEADER_ELECTION_RETRY_PERIOD": "0.5",
    }
    pair.start("replica-a", **slow)
    pair.start("replica-b", **slow)
    leader = pair.wait_leader()
    other = next(name for name in pair.replicas if name != leader)

    terminated_at = time.monotonic()
    pair.replicas[leader].popen.terminate()
    assert pair.wait_leader(among=(other,), timeout=12) == other
    handover = time.monotonic() - terminated_at
    print(f"SIGTERM → {other} holds the Lease: {handover:.1f} s")
    assert handover < 6, f"no release seen: the handover took {handover:.1f} s\n{pair.logs()}"
    assert pair.replicas[leader].popen.wait(15) == 0, pair.replicas[leader].log_tail(30)
    assert "released the leader Lease" in pair.replicas[leader].log_tail(60)

    # And the new leader acts.
    groups = _create_ready(e2e, ns, 1)
    _flip(e2e, ns, groups, AZ2)
    e2e.wait(lambda: _ready_at(e2e, ns, groups, AZ2), f"the switchover to {AZ2}", 60)
    assert [_reverse_statuses(e2e, g) for g in groups.values()] == [[PROCESSED]]


def test_a_paused_leader_woken_after_a_takeover_sends_nothing_and_exits(
    e2e: E2E, ns: str, secret: str, pair: Pair
) -> None:
    """SIGSTOP the leader mid-operation; the other takes over and completes that switchover and one asked
    for while the first was frozen; SIGCONT the first: it finds its lease long gone, sends nothing (no second
    request for either group), writes nothing, and exits non-zero to restart as a standby."""
    pair.start("replica-a")
    pair.start("replica-b")
    leader = pair.wait_leader()
    other = next(name for name in pair.replicas if name != leader)
    groups = _create_ready(e2e, ns, 2)
    (first_name, first), (second_name, second) = groups.items()

    e2e.sim.set_timings(switchoverSeconds=4.0, copyingSeconds=0.5)
    _flip(e2e, ns, {first_name: first}, AZ2)
    e2e.wait(lambda: _reverse_statuses(e2e, first) == [PROCESSED], "the first switchover to reach the cloud")
    frozen = pair.replicas[leader]
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        # Asked for while the leader is frozen: its watch delivers it when it wakes, with a stale view.
        _flip(e2e, ns, {second_name: second}, AZ2)
        assert pair.wait_leader(among=(other,)) == other
        e2e.wait(lambda: _ready_at(e2e, ns, groups, AZ2), f"both groups Ready at {AZ2} by {other}", 90)
        assert _reverse_statuses(e2e, first) == [PROCESSED]
        assert _reverse_statuses(e2e, second) == [PROCESSED]
        mutating_before = [r["seq"] for g in groups.values() for r in e2e.sim.mutating(g)]
    finally:
        os.kill(frozen.pid, signal.SIGCONT)

    try:
        code = frozen.popen.wait(20)
    except Exception as error:
        raise AssertionError(f"the woken leader did not exit: {error}\n{frozen.log_tail(40)}") from None
    assert code != 0, "a leader that lost its Lease must exit non-zero (the pod restarts as a standby)"
    log = frozen.log_tail(200)
    assert "lost the leader Lease" in log, log
    time.sleep(2.0)  # anything the woken process might still have had in flight would show by now
    assert [r["seq"] for g in groups.values() for r in e2e.sim.mutating(g)] == mutating_before
    assert _reverse_statuses(e2e, first) == [PROCESSED] and _reverse_statuses(e2e, second) == [PROCESSED]
    assert pair.name_of(pair.holder()) == other and pair.replicas[other].alive()
    items = _ready_at(e2e, ns, groups, AZ2)
    assert items is not None, "the woken process changed a group's status"
    assert all(items[name]["status"]["lastOperation"]["attempts"] == 1 for name in groups)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["get", f"leases/{LEASE_NAME}"], "yes", id="get-the-lease"),
        pytest.param(["update", f"leases/{LEASE_NAME}"], "yes", id="update-the-lease"),
        pytest.param(["create", "leases"], "yes", id="create-a-lease"),
        pytest.param(["get", "leases/kube-controller-manager"], "no", id="no-other-lease"),
        pytest.param(["update", "leases/kube-scheduler"], "no", id="no-update-of-another"),
        pytest.param(["list", "leases"], "no", id="no-list"),
        pytest.param(["delete", f"leases/{LEASE_NAME}"], "no", id="no-delete"),
        pytest.param(["get", f"leases/{LEASE_NAME}", "-n", "kube-system"], "no", id="own-namespace-only"),
        pytest.param(["create", "leases", "-n", "kube-system"], "no", id="no-create-elsewhere"),
    ],
)
def test_lease_rights_are_the_one_lease_in_the_operators_namespace(
    e2e: E2E, args: list[str], expected: str
) -> None:
    assert e2e.env.operator_kubeconfig is not None and e2e.env.operator_identity is not None
    operator = Kubectl(e2e.kubectl.binary, e2e.env.operator_kubeconfig)
    namespace = [] if "-n" in args else ["-n", e2e.env.operator_identity[0]]
    answer = operator.run("auth", "can-i", *args, *namespace, check=False)
    assert answer.stdout.strip() == expected, answer.stderr
