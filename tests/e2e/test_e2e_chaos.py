"""Faults and restarts of real processes during many concurrent switchovers: nothing lost, nothing sent twice.

Why: the intent journal, resume-by-observing and the lost-request grace (README, "How it works") exist for
exactly the moments an in-process test can only imitate (tests/unit/test_chaos.py does, on a manual clock).
Here the operator is a real ``azswitch run`` that is SIGKILLed at random moments, the cloud a real simulator
process failing calls, dropping answers and throttling, and the Kubernetes API a real kube-apiserver that is
itself killed and started again mid-operation. Only outcomes are asserted, each where it can be proven:

* the simulator's request log: per group, exactly one *processed* switchover request per flip (none twice,
  none missing), and no other mutating call;
* the resources: every group Ready at its desired AZ with no operation left in flight, and one Succeeded
  operation per flip in its history;
* the operator's log, across every process that wrote to it: no unhandled exception.

A kube-apiserver that has just started answers 403 for a moment (its RBAC cache is still empty). That once
crashed reconciles with a traceback; the last test reproduces it deterministically (RBAC briefly denies the
Secret read) and proves it is now a condition (KubernetesForbidden) and a retry, not a crash.

Bounded: ~2-3 minutes on a warm 2-core machine. The kill moments and the fault RNG are seeded
(``E2E_CHAOS_SEED`` overrides the seed), and every failure message carries the seed and the kill schedule.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from conftest import AZ1, AZ2, E2E, SEED, condition_of
from test_e2e import succeeded_for_generation

from azswitch.dev import controlplane
from azswitch.dev.localenv import OPERATOR_FAST_SETTINGS, REVERSE_ACTION, operator_identity_manifests

pytestmark = pytest.mark.e2e

CHAOS_SEED = int(os.environ.get("E2E_CHAOS_SEED", "20240611"))
GROUPS = 10
# Short operations so that three rounds fit in a minute or two, and so that a switchover that did reach the
# cloud shows ("reversing", then the new primary) well within the lost-request grace below.
FAST_TIMINGS = {"switchoverSeconds": 2.0, "copyingSeconds": 0.5}
# Long enough that the apiserver is killed while every switchover is still running in the cloud.
SLOW_TIMINGS = {"switchoverSeconds": 6.0, "copyingSeconds": 0.5}
CHAOS_SETTINGS: dict[str, str] = {
    **OPERATOR_FAST_SETTINGS,
    # Long enough to outlast a few failed reads of a group whose switchover did start (so a request that
    # reached the cloud is never counted lost), short enough that a really lost one is re-sent in-round.
    "AZSWITCH_LOST_REQUEST_GRACE": "5",
    # Fewer slots than groups: operations queue (ConcurrencyLimit), and a kill hits queued ones too.
    "AZSWITCH_MAX_CONCURRENT_OPERATIONS": "4",
    # A 503 on the POST, or a kill between journal and send, each costs one attempt; with 20 % 5xx and
    # kills, three attempts would fail an operation now and then (0.2**6 per operation is negligible).
    "AZSWITCH_MAX_REQUEST_ATTEMPTS": "6",
}
ROUND_TIMEOUT = 120.0
KILL_DELAYS = (0.2, 3.0)
# A reverse POST the cloud acted on is logged 200 (also when its answer was then dropped); these never
# reached the backend: dropped before handling (None), throttled (429) or failed by injection (503).
PROCESSED = 200
NOT_PROCESSED = frozenset({None, 429, 503})
# The simulator keeps this many request records; the accounting below needs all of them.
SIM_LOG_CAPACITY = 10_000
# The plain log format: "DATE TIME,ms LEVEL logger: message"; continuation lines (tracebacks) follow it.
LOG_ENTRY_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ |^\$ ")
ERROR_ENTRY = re.compile(r"^\S+ \S+ (ERROR|CRITICAL)\s")
# kopf's API client logs every failed attempt at ERROR while it retries (kopf/_cogs/clients/api.py); with
# the apiserver down that is the expected noise of a restart, not an unhandled exception.
KOPF_RETRY = re.compile(r"^\S+ \S+ ERROR\s+kopf\.\S+: Request attempt #\d+/\d+ failed; will retry")


def _faults_5xx(round_seed: int) -> dict[str, Any]:
    return {"errorRate": 0.2, "errorStatus": 503, "seed": round_seed}


def _faults_lost_answers(round_seed: int) -> dict[str, Any]:
    # Every switchover request is carried out and then its connection is cut: the operator never learns
    # the outcome and must find it by observing the group.
    return {
        "drop": {"count": None, "when": "after"},
        "match": {"method": "POST", "action": REVERSE_ACTION},
        "seed": round_seed,
    }


def _faults_throttled(round_seed: int) -> dict[str, Any]:
    # A burst of 429s with Retry-After on every call, re-armed after each restart, plus some 5xx.
    return {
        "throttle": {"count": 25, "retryAfter": 1},
        "errorRate": 0.1,
        "errorStatus": 503,
        "seed": round_seed,
    }


ROUNDS: list[tuple[str, Callable[[int], dict[str, Any]]]] = [
    ("20% 503s on every call", _faults_5xx),
    ("answers to switchover requests dropped after processing", _faults_lost_answers),
    ("429 bursts with Retry-After, 10% 503s", _faults_throttled),
]


# ------------------------------------------------------------------------------------------- fixtures


class OperatorLog:
    """What every operator process wrote from now on: localenv appends each (re)start to one file."""

    def __init__(self, e2e: E2E) -> None:
        self.path: Path = e2e.env.logs / "operator.log"
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def text(self) -> str:
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            return handle.read().decode(errors="replace")

    def entries(self) -> list[str]:
        """Log records, each with its continuation lines (a traceback belongs to the line that logged it)."""
        found: list[str] = []
        for line in self.text().splitlines():
            if LOG_ENTRY_START.match(line) or not found:
                found.append(line)
            else:
                found[-1] += "\n" + line
        return found

    def findings(self, *tolerated: re.Pattern[str]) -> list[str]:
        """Records at ERROR or above, and any that carry a traceback, except ``tolerated`` ones."""
        return [
            entry
            for entry in self.entries()
            if (ERROR_ENTRY.match(entry) or "Traceback" in entry)
            and not any(pattern.search(entry) for pattern in tolerated)
        ]


class ChaosOperator:
    """The session's operator, restarted with CHAOS_SETTINGS; kill -9 and restart on demand."""

    def __init__(self, e2e: E2E) -> None:
        self.e2e = e2e
        self.log = OperatorLog(e2e)
        self.kills: list[str] = []

    def restart_after_kill9(self, why: str, ns: str) -> int:
        """kill -9, note what the dead process left in flight, start a new one; returns that number."""
        operator = self.e2e.env.operator
        assert operator is not None
        self.e2e.env.kill_operator()
        # Nobody writes status now: this is exactly the journal the next process starts from.
        journal = [
            obj["status"]["operation"].get("state")
            for obj in _items(self.e2e, ns).values()
            if (obj.get("status") or {}).get("operation")
        ]
        self.kills.append(f"{why}: pid {operator.pid}, operations in flight {journal}")
        self.e2e.env.start_operator()
        return len(journal)


@pytest.fixture
def chaos_operator(e2e: E2E) -> Iterator[ChaosOperator]:
    """The operator with chaos settings; afterwards the simulator and the operator as the session had them."""
    if e2e.env.operator is not None:
        e2e.env.operator.stop()
    chaos = ChaosOperator(e2e)
    e2e.env.start_operator(CHAOS_SETTINGS)
    try:
        yield chaos
    finally:
        with contextlib.suppress(Exception):
            e2e.sim.control("DELETE", "/faults")
        with contextlib.suppress(Exception):
            e2e.sim.set_timings(**SEED["timings"])
        operator = e2e.env.operator
        if operator is not None:
            operator.stop()
        e2e.env.start_operator(OPERATOR_FAST_SETTINGS)


# -------------------------------------------------------------------------------------------- helpers


def _apply_desired(e2e: E2E, ns: str, groups: Mapping[str, str], desired: str) -> None:
    """Set spec.primaryAZ of every resource at once, the way a GitOps sync would (one kubectl apply)."""
    e2e.kubectl.apply([e2e.rg_manifest(ns, name, group, primary=desired) for name, group in groups.items()])


def _items(e2e: E2E, ns: str) -> dict[str, dict[str, Any]]:
    found = e2e.kubectl.json("get", "replicationgroups", "-n", ns)["items"]
    return {obj["metadata"]["name"]: obj for obj in found}


def _settled_at(obj: dict[str, Any] | None, desired: str) -> bool:
    """Ready at ``desired`` after an operation of the current generation, nothing in flight."""
    if obj is None:
        return False
    status = obj.get("status") or {}
    last = status.get("lastOperation") or {}
    return (
        succeeded_for_generation(obj)
        and status.get("currentPrimaryAZ") == desired
        and last.get("generation") == obj["metadata"]["generation"]
    )


def _moving_or_settled(e2e: E2E, ns: str, groups: Mapping[str, str], desired: str) -> str | None:
    items = _items(e2e, ns)
    if any((obj.get("status") or {}).get("operation") for obj in items.values()):
        return "moving"
    return "settled" if all(_settled_at(items.get(name), desired) for name in groups) else None


def _reverse_statuses(records: list[dict[str, Any]], group: str) -> list[int | None]:
    return [r["status"] for r in records if r.get("group") == group and r.get("action") == REVERSE_ACTION]


def _summary(e2e: E2E, ns: str, groups: Mapping[str, str], desired: str) -> str:
    """One line per group: what Kubernetes says, what the cloud says, what the cloud was sent."""
    items = _items(e2e, ns)
    records = e2e.sim.requests()
    lines = []
    for name, group in groups.items():
        status = (items.get(name) or {}).get("status") or {}
        operation = status.get("operation") or {}
        last = status.get("lastOperation") or {}
        cloud = e2e.sim.group(group)
        lines.append(
            f"{name} ({group[:8]}): desired {desired}, current {status.get('currentPrimaryAZ')}, phase "
            f"{status.get('phase')}, ready {condition_of(items.get(name) or {}, 'Ready').get('reason')}, "
            f"operation {operation.get('state')}/attempts {operation.get('attempts')}, last "
            f"{last.get('result')}/{last.get('generation')}; cloud {cloud.get('status')}/"
            f"{cloud.get('replicationStatus')} primary {cloud.get('primaryAZ')}; reverse POSTs "
            f"{_reverse_statuses(records, group)}"
        )
    return "\n".join(lines)


def _wait_settled(
    e2e: E2E, ns: str, groups: Mapping[str, str], desired: str, context: str
) -> dict[str, dict[str, Any]]:
    def check() -> dict[str, dict[str, Any]] | None:
        items = _items(e2e, ns)
        return items if all(_settled_at(items.get(name), desired) for name in groups) else None

    try:
        return e2e.wait(check, f"all groups Ready at {desired}", timeout=ROUND_TIMEOUT)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{context}\n{_summary(e2e, ns, groups, desired)}") from None


# ------------------------------------------------------------------------------------ SIGKILL rounds


def test_sigkill_rounds_under_cloud_faults_switch_each_group_exactly_once_per_flip(
    e2e: E2E, ns: str, secret: str, chaos_operator: ChaosOperator
) -> None:
    groups = {f"db-{i:02d}": e2e.new_group(primary=AZ1) for i in range(GROUPS)}
    _apply_desired(e2e, ns, groups, AZ1)
    e2e.wait(
        lambda: (
            len(items := _items(e2e, ns)) == GROUPS
            and all(condition_of(obj, "Ready").get("reason") == "InSync" for obj in items.values())
        ),
        f"{GROUPS} groups Ready (InSync)",
    )
    # The log is bounded: start this test's accounting on an empty one (seq numbers keep counting).
    e2e.sim.control("DELETE", "/requests")
    e2e.sim.set_timings(**FAST_TIMINGS)
    rng = random.Random(CHAOS_SEED)
    desired = AZ1
    for number, (faults_name, faults_for) in enumerate(ROUNDS, start=1):
        desired = AZ2 if desired == AZ1 else AZ1
        round_seed = CHAOS_SEED + number
        mark = max((r["seq"] for r in e2e.sim.requests()), default=0)

        e2e.sim.control("POST", "/faults", faults_for(round_seed))
        _apply_desired(e2e, ns, groups, desired)
        in_flight_at_kills = 0
        for kill in range(rng.choice((2, 3))):
            delay = rng.uniform(*KILL_DELAYS)
            # A random moment while switchovers run: counted from when one is journaled (a restarted
            # process resumes the old ones at once), so that no kill is wasted before anything started.
            e2e.wait(partial(_moving_or_settled, e2e, ns, groups, desired), "an operation in flight")
            time.sleep(delay)
            in_flight_at_kills += chaos_operator.restart_after_kill9(
                f"round {number} kill {kill + 1} after {delay:.2f}s", ns
            )
            # Counted faults were used up meanwhile; a new burst for the new process.
            e2e.sim.control("POST", "/faults", faults_for(round_seed + 100 * (kill + 1)))
        e2e.sim.control("DELETE", "/faults")
        context = f"round {number} ({faults_name}), seed {CHAOS_SEED}; kills: {chaos_operator.kills}"
        print(context)

        items = _wait_settled(e2e, ns, groups, desired, context)

        # The cloud's view, for this round: exactly `number` processed switchovers per group so far.
        records = e2e.sim.requests()
        assert len(records) < SIM_LOG_CAPACITY, "the simulator's request log overflowed; accounting is void"
        problems = []
        for name, group in groups.items():
            statuses = _reverse_statuses(records, group)
            processed = statuses.count(PROCESSED)
            odd = [s for s in statuses if s != PROCESSED and s not in NOT_PROCESSED]
            if processed != number or odd:
                problems.append(
                    f"{name}: {processed} processed reverse POSTs (want {number}); all: {statuses}"
                )
            cloud = e2e.sim.group(group)
            if (cloud["primaryAZ"], cloud["status"], cloud["replicationStatus"]) != (
                desired,
                "available",
                "active",
            ):
                problems.append(f"{name}: cloud group is {cloud}")
            status = items[name]["status"]
            if "operation" in status or "pendingGeneration" in status:
                problems.append(f"{name}: left in flight: {status.get('operation')}")
        assert not problems, f"{context}\n" + "\n".join(problems) + "\n" + _summary(e2e, ns, groups, desired)
        # A kill that found nothing in flight proves nothing about the journal: each round must hit some.
        assert in_flight_at_kills > 0, f"no kill hit an operation in flight; {context}"
        sent = Counter(
            (r["status"], r["dropped"])
            for r in records
            if r["seq"] > mark and r.get("action") == REVERSE_ACTION
        )
        print(f"  reverse POSTs (status, answer dropped): {dict(sent)}")

    # Every flip is one operation, finished Succeeded: none failed, abandoned or timed out on the way.
    items = _items(e2e, ns)
    for name, group in groups.items():
        history = items[name]["status"]["history"]
        assert [h["result"] for h in history] == ["Succeeded"] * len(ROUNDS), (name, history)
        assert len({h["id"] for h in history}) == len(ROUNDS), (name, history)
        mutating = {(r["method"], r.get("action")) for r in e2e.sim.mutating(group)}
        assert mutating == {("POST", REVERSE_ACTION)}, (name, mutating)

    assert len(chaos_operator.kills) >= 2 * len(ROUNDS), chaos_operator.kills
    reasons = Counter(e["reason"] for e in e2e.kubectl.json("get", "events", "-n", ns)["items"])
    print(f"events: {dict(reasons)}")
    findings = chaos_operator.log.findings()
    assert not findings, (
        f"the operator logged errors (seed {CHAOS_SEED}, kills {chaos_operator.kills}):\n"
        + "\n---\n".join(findings[:10])
    )


# ------------------------------------------------------------------------------ apiserver restart


class Apiserver:
    """kill -9 and start again the kube-apiserver of the session's throw-away control plane.

    azswitch.dev.controlplane has no restart: this reads the pid from its state file (``status()`` checks it is
    still our process), keeps the exact command line from /proc, and afterwards records the new pid in the
    state file so that the session's ``down`` stops the new process as it would have stopped the old one.
    """

    def __init__(self, plane: controlplane.ControlPlane) -> None:
        self.plane = plane
        self.state_file = plane.state_dir / controlplane.STATE_FILE

    def pid(self) -> int | None:
        return controlplane.status(self.plane.state_dir).apiserver_pid

    def kill9(self) -> list[str]:
        pid = self.pid()
        assert pid is not None, "no kube-apiserver of ours is running"
        argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while self.pid() is not None:  # status() also reaps it (controlplane started it from this process)
            assert time.monotonic() < deadline, f"kube-apiserver pid {pid} survived SIGKILL"
            time.sleep(0.1)
        return argv

    def start(self, argv: list[str], timeout: float = 90.0) -> None:
        """Same binary, flags, port, certificates and etcd; returns once /readyz answers ok."""
        state = json.loads(self.state_file.read_text())
        entry = state["processes"]["kube-apiserver"]
        with open(entry["log"], "ab") as log:
            popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        # controlplane polls (and so reaps) the processes it knows through this table; a private detail,
        # which a controlplane.restart_apiserver() would make unnecessary.
        controlplane._CHILDREN[popen.pid] = popen
        entry["pid"] = popen.pid
        tmp = self.state_file.with_name(f".{self.state_file.name}.chaos")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.state_file)
        deadline = time.monotonic() + timeout
        while not controlplane.status(self.plane.state_dir).running:
            assert popen.poll() is None, f"kube-apiserver exited with {popen.returncode}: see {entry['log']}"
            assert time.monotonic() < deadline, f"kube-apiserver not ready after {timeout:.0f}s"
            time.sleep(0.2)


def test_apiserver_restart_mid_switchover_loses_no_operation(
    e2e: E2E, ns: str, secret: str, chaos_operator: ChaosOperator
) -> None:
    if e2e.env.plane is None:
        pytest.skip("restarting the kube-apiserver needs the throw-away control plane, not KUBECONFIG's")
    apiserver = Apiserver(e2e.env.plane)
    groups = {f"db-{i}": e2e.new_group(primary=AZ1) for i in range(4)}
    late_name, late_group = "db-late", e2e.new_group(primary=AZ1)
    _apply_desired(e2e, ns, {**groups, late_name: late_group}, AZ1)
    e2e.wait(
        lambda: (
            len(items := _items(e2e, ns)) == len(groups) + 1
            and all(condition_of(obj, "Ready").get("reason") == "InSync" for obj in items.values())
        ),
        "the groups Ready (InSync)",
    )
    operator = e2e.env.operator
    assert operator is not None
    operator_pid = operator.pid

    e2e.sim.set_timings(**SLOW_TIMINGS)
    _apply_desired(e2e, ns, groups, AZ2)

    # Every switchover accepted by the cloud and journaled in Kubernetes: that is "in flight".
    def all_sent() -> bool:
        records = e2e.sim.requests()
        return all(_reverse_statuses(records, g) == [PROCESSED] for g in groups.values())

    e2e.wait(all_sent, "the switchovers to be sent")
    items = _items(e2e, ns)
    journal: dict[str, dict[str, Any]] = {
        name: (items[name].get("status") or {}).get("operation") or {} for name in groups
    }
    assert all(journal.values()), f"no journal entry after the request was sent: {journal}"

    argv = apiserver.kill9()
    killed_at = time.monotonic()
    try:
        # In flight in the cloud as the apiserver goes: the operator can read the cloud but write nothing.
        in_cloud = {name: e2e.sim.group(g)["status"] for name, g in groups.items()}
        assert set(in_cloud.values()) == {"reversing"}, in_cloud
        time.sleep(3)
    finally:
        apiserver.start(argv)
    down_for = time.monotonic() - killed_at
    print(f"kube-apiserver down for {down_for:.1f}s")

    settled = _wait_settled(e2e, ns, groups, AZ2, f"after an apiserver restart ({down_for:.1f}s down)")
    for name, group in groups.items():
        last = settled[name]["status"]["lastOperation"]
        assert (last["id"], last["result"], last["attempts"]) == (journal[name]["id"], "Succeeded", 1), (
            name,
            last,
        )
        assert e2e.sim.reverses(group) == 1, (name, _reverse_statuses(e2e.sim.requests(), group))
        assert e2e.sim.group(group)["primaryAZ"] == AZ2

    # The watch came back too: a change made after the restart is acted on.
    _apply_desired(e2e, ns, {late_name: late_group}, AZ2)
    _wait_settled(e2e, ns, {late_name: late_group}, AZ2, "a flip after the apiserver restart")
    assert e2e.sim.reverses(late_group) == 1

    assert operator.alive() and e2e.env.operator is operator, "the operator did not survive the restart"
    assert operator.pid == operator_pid
    findings = chaos_operator.log.findings(KOPF_RETRY)
    assert not findings, "the operator logged errors across the apiserver restart:\n" + "\n---\n".join(
        findings[:10]
    )
    entries = chaos_operator.log.entries()
    retries = sum(1 for e in entries if KOPF_RETRY.search(e))
    print(f"kopf retry records: {retries}")


# ------------------------------------------------------------------------------------ a Kubernetes 403

SERVICE_ACCOUNT = "system:serviceaccount:azswitch-system:azswitch"


def _may_get_secrets(e2e: E2E, ns: str) -> bool:
    result = e2e.kubectl.run(
        "auth", "can-i", "get", "secrets", "-n", ns, f"--as={SERVICE_ACCOUNT}", check=False
    )
    return result.stdout.strip() == "yes"


def test_kubernetes_403_is_not_an_unhandled_exception(e2e: E2E, ns: str, secret: str) -> None:
    """What a just-restarted apiserver answers for a moment, made deterministic: RBAC denies the Secret read.

    Expected of the operator: no crash and no traceback, and a Ready condition that is not True (the
    README's "Ready is always present"), whatever reason a fix picks; status, not the log, is the report.
    """
    role = next(
        m
        for m in operator_identity_manifests()
        if m["kind"] == "ClusterRole" and m["metadata"]["name"] == "azswitch"
    )
    denied = copy.deepcopy(role)
    denied["rules"] = [rule for rule in role["rules"] if "secrets" not in rule["resources"]]
    log = OperatorLog(e2e)
    e2e.kubectl.apply([denied])
    try:
        e2e.wait(lambda: not _may_get_secrets(e2e, ns), "RBAC to deny the operator the Secret")
        group = e2e.new_group(primary=AZ1)
        e2e.kubectl.apply([e2e.rg_manifest(ns, "orders-db", group, primary=AZ2)])

        def attempted() -> str | None:
            if condition_of(e2e.rg(ns, "orders-db"), "Ready"):
                return "a Ready condition"
            crashed = [e for e in log.entries() if "reconcile crashed" in e and "name=orders-db" in e]
            return "a crash" if crashed else None

        e2e.wait(attempted, "the operator to reconcile orders-db")
        findings = log.findings()
        assert not findings, "a 403 crashed the reconcile:\n" + "\n---\n".join(f[:1500] for f in findings[:3])
        ready = condition_of(e2e.rg(ns, "orders-db"), "Ready")
        assert ready and ready["status"] != "True", ready
        assert e2e.sim.mutating(group) == []
    finally:
        # deploy/'s own manifest, so later tests run under exactly the RBAC the suite is meant to prove.
        e2e.kubectl.apply([role])
        e2e.wait(lambda: _may_get_secrets(e2e, ns), "RBAC to give the Secret back")
