"""B5 — failover of the operator itself: two replicas, groups mid-evacuation, the leader SIGKILLed, then SIGTERMed.

Why: deploy/ runs two leader-elected replicas so that the DR tool survives the AZ it is evacuating. What a
user asks is how long the evacuation stalls when the leader's node dies, and whether anything is sent twice
(a second ``os-reverse`` swaps a group back: duplicates must be zero). A rolling update SIGTERMs the leader
instead, which releases the Lease: that handover should cost about a second, not a lease duration.

What runs: ``--groups`` Ready resources (adopted as in B2), then two ``azswitch run --leader-elect`` replicas
(``replica-a``, ``replica-b``) with deploy/'s lease timing (15 s lease, 10 s renew deadline, 2 s retry;
``--lease-duration`` etc. change it) and B3's evacuation settings (cap ``--cap``, client and cloud-side rate
limit 10/s). Every resource is patched to az2 at once; once ``--kill-at`` of the switchovers have reached
the cloud, the leader is SIGKILLed. Measured from the kill: until the standby holds the Lease, until its
``azswitch_leader`` metric says 1, until every group is Ready at az2. Then the killed replica is started
again (a standby now), the fleet is flipped back to az1, and at the same point the leader is SIGTERMed:
the handover time (until the other holds the Lease) and the time until every group is Ready.

Operations the dead leader had *journaled but maybe not sent* (``status.operation`` Requested at the kill
and no accepted ``os-reverse`` for the group before it) are reported apart: the new leader must not know
whether the request left, so it waits out ``AZSWITCH_LOST_REQUEST_GRACE`` (120 s by default, never
shortened here) before it re-sends, and those groups finish that much later. Duplicates count accepted
``os-reverse`` POSTs per group beyond one in each phase.

    .venv/bin/python bench/b5_operator_failover.py [--groups 200] [--cap 10] [--kill-at 0.3]
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import common
import httpx
from common import AZ1, AZ2, Bench, Fleet, Report, RGEvent, fmt_s

from azswitch.dev.localenv import OperatorProcess

LEASE = "azswitch-leader"
LEASE_NAMESPACE = "azswitch-system"


def main() -> int:
    parser = common.base_parser(__doc__.splitlines()[0], timeout=1800)
    parser.add_argument("--groups", type=int, default=200, help="ReplicationGroups (default 200)")
    parser.add_argument("--cap", type=int, default=10, help="AZSWITCH_MAX_CONCURRENT_OPERATIONS (default 10)")
    parser.add_argument("--rate-limit", type=float, default=10, help="AZSWITCH_RATE_LIMIT (default 10)")
    parser.add_argument("--switchover-seconds", type=float, default=3.0, help="simulator (default 3)")
    parser.add_argument("--copying-seconds", type=float, default=1.0, help="simulator (default 1)")
    parser.add_argument(
        "--cloud-rate-limit", type=float, default=10, help="the cloud's requests/s per project (default 10)"
    )
    parser.add_argument(
        "--kill-at",
        type=float,
        default=0.3,
        help="kill (then terminate) the leader once this fraction of switchovers reached the cloud (0.3)",
    )
    parser.add_argument("--lease-duration", type=int, default=15, help="seconds (default 15, as deploy/)")
    parser.add_argument("--renew-deadline", type=float, default=10, help="seconds (default 10)")
    parser.add_argument("--retry-period", type=float, default=2, help="seconds (default 2)")
    parser.add_argument(
        "--lost-request-grace",
        type=float,
        default=120,
        help="AZSWITCH_LOST_REQUEST_GRACE (default 120, the operator's default; lower it only knowingly)",
    )
    common.add_adoption_arguments(parser)
    args = parser.parse_args()
    return common.run("b5", args, lambda bench: b5(bench, args))


class Replicas:
    """The two leader-elected replicas, the Lease, and each replica's metrics."""

    def __init__(self, bench: Bench, args: Any) -> None:
        self.bench = bench
        self.args = args
        self.processes: dict[str, OperatorProcess] = {}
        self.ports: dict[str, str] = {}

    def start(self, name: str) -> OperatorProcess:
        settings = self.bench.operator_settings(
            max_concurrent_operations=str(self.args.cap),
            rate_limit=f"{self.args.rate_limit:g}",
            lost_request_grace=f"{self.args.lost_request_grace:g}",
            leader_elect="true",
            leader_election_lease_duration=str(self.args.lease_duration),
            leader_election_renew_deadline=f"{self.args.renew_deadline:g}",
            leader_election_retry_period=f"{self.args.retry_period:g}",
        )
        self.bench.progress(
            f"starting {name} (leader election, metrics :{settings['AZSWITCH_METRICS_PORT']})"
        )
        process = self.bench.env.start_replica(name, settings, timeout=self.bench.bound(90))
        self.processes[name] = process
        self.ports[name] = settings["AZSWITCH_METRICS_PORT"]
        return process

    def holder(self) -> str:
        assert self.bench.kube is not None
        try:
            lease = self.bench.kube.request(
                "GET", f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{LEASE}"
            )
        except RuntimeError:
            return ""
        return str((lease.get("spec") or {}).get("holderIdentity") or "")

    def leader(self) -> str | None:
        holder = self.holder()
        return next((n for n in self.processes if holder.startswith(f"{n}_")), None)

    def metric(self, name: str, metric: str) -> float:
        try:
            text = httpx.get(f"http://127.0.0.1:{self.ports[name]}/metrics", timeout=5).text
        except httpx.HTTPError:
            return math.nan
        for line in text.splitlines():
            if line.startswith(f"{metric} "):
                return float(line.split()[1])
        return math.nan

    def check_alive(self, *names: str) -> None:
        for name in names:
            process = self.processes[name]
            if not process.alive():
                raise RuntimeError(f"{name} exited with {process.popen.returncode}:\n{process.log_tail(30)}")

    def wait_leader(self, among: tuple[str, ...], timeout: float) -> tuple[str, float]:
        """(the replica among ``among`` holding the Lease, seconds waited); polled every 50 ms."""
        start = time.monotonic()
        limit = start + self.bench.bound(timeout)
        while True:
            self.check_alive(*among)
            name = self.leader()
            if name in among:
                assert name is not None
                return name, time.monotonic() - start
            if time.monotonic() > limit:
                raise common.BenchTimeout(f"none of {among} holds the Lease after {timeout:.0f} s")
            time.sleep(0.05)

    def wait_released(self, leaving: str, timeout: float) -> None:
        """Until the Lease no longer names ``leaving`` (released: no holder; or already taken over)."""
        start = time.monotonic()
        while self.holder().startswith(f"{leaving}_") and time.monotonic() - start < timeout:
            time.sleep(0.02)

    def wait_metric(self, name: str, value: float, timeout: float) -> float:
        start = time.monotonic()
        while self.metric(name, "azswitch_leader") != value:
            if time.monotonic() - start > timeout:
                return math.nan
            time.sleep(0.05)
        return time.monotonic() - start


def accepted_posts(records: list[dict[str, Any]]) -> Counter[str]:
    return Counter(str(r["group"]) for r in records if common.is_reverse(r) and r.get("status") == 200)


def journaled_unsent(
    snapshot: Mapping[str, dict[str, Any]], fleet: Fleet, sent: Counter[str], target: str
) -> list[str]:
    """Resources whose journal said Requested (towards ``target``) and whose group had no accepted POST yet."""
    group_of = {m.name: m.group_id for m in fleet.members}
    unsent = []
    for name, obj in snapshot.items():
        operation = (obj.get("status") or {}).get("operation") or {}
        if (
            operation.get("state") == "Requested"
            and operation.get("to") == target
            and not sent[group_of[name]]
        ):
            unsent.append(name)
    return sorted(unsent)


def evacuate(
    bench: Bench,
    fleet: Fleet,
    watcher: common.RGWatcher,
    target: str,
    done_at: dict[str, float],
    armed: threading.Event,
    disrupt: Callable[[], None],
    args: Any,
) -> dict[str, Any]:
    """Patch every resource to ``target``; call ``disrupt`` once ``--kill-at`` of the POSTs are in; wait."""
    assert bench.sim is not None and bench.kube is not None
    sim, kube = bench.sim, bench.kube
    sim.control("DELETE", "/requests")
    tap = bench.tap(interval=10)  # from here on: this phase's requests only
    done_at.clear()
    armed.set()
    started = time.time()
    with ThreadPoolExecutor(8, thread_name_prefix="patch") as pool:
        list(
            pool.map(lambda m: kube.patch_spec(fleet.namespace, m.name, {"primaryAZ": target}), fleet.members)
        )
    threshold = max(1, math.ceil(args.kill_at * len(fleet.members)))

    def enough() -> tuple[bool, str]:
        n = sum(accepted_posts(sim.requests()).values())
        return n >= threshold, f"{n}/{threshold} switchovers in the cloud"

    bench.wait_until(enough, f"{threshold} switchovers to reach the cloud", timeout=600)
    records_before = sim.requests()
    snapshot = watcher.snapshot()
    disrupted = time.time()
    disrupt()
    return {
        "started": started,
        "disrupted": disrupted,
        "sent_before": accepted_posts(records_before),
        "snapshot": snapshot,
        "tap": tap,
    }


def b5(bench: Bench, args: Any) -> Report:
    fleet = common.make_fleet(bench.namespace, args.groups, service=args.service)
    sw, cp = args.switchover_seconds, args.copying_seconds
    bench.up(fleet, {"switchoverSeconds": sw, "copyingSeconds": cp})
    assert bench.sim is not None
    sim = bench.sim
    done_at: dict[str, float] = {}
    target = {"az": AZ2}
    armed = threading.Event()

    def on_event(event: RGEvent) -> None:
        if not armed.is_set() or event.name in done_at:
            return
        status = event.obj.get("status") or {}
        last = status.get("lastOperation") or {}
        if (
            common.is_ready(event.obj)
            and status.get("currentPrimaryAZ") == target["az"]
            and last.get("result") == "Succeeded"
        ):
            done_at[event.name] = event.at

    watcher = bench.watch(fleet.namespace, on_event)
    common.adopt(bench, fleet, watcher, args.adopt_rate_limit)
    bench.stop_operator()

    replicas = Replicas(bench, args)
    replicas.start("replica-a")
    replicas.start("replica-b")
    leader, _ = replicas.wait_leader(("replica-a", "replica-b"), timeout=60)
    standby = next(n for n in replicas.processes if n != leader)
    bench.progress(f"{leader} leads, {standby} stands by")
    ready_gauge = 'azswitch_groups{phase="Ready"}'

    def leader_settled() -> tuple[bool, str]:
        ready = replicas.metric(leader, ready_gauge)
        return ready >= args.groups, f"the leader reports {ready:g} Ready"

    bench.wait_until(leader_settled, "the leader to have reconciled every resource", timeout=120)
    if args.cloud_rate_limit:
        sim.control("POST", "/faults", {"rateLimit": {"perSecond": args.cloud_rate_limit, "burst": 20}})
    ideal = math.ceil(args.groups / args.cap) * (sw + cp)

    # ------------------------------------------------------------------ phase 1: SIGKILL mid-evacuation
    bench.progress(f"evacuating az1 ({args.groups} groups, ideal {ideal:.0f} s); SIGKILL {leader} mid-way")
    killed: dict[str, float] = {}

    def kill() -> None:
        replicas.processes[leader].kill9()
        killed["at"] = time.time()
        bench.progress(f"SIGKILLed {leader}")

    target["az"] = AZ2
    phase1 = evacuate(bench, fleet, watcher, AZ2, done_at, armed, kill, args)
    new_leader, takeover = replicas.wait_leader((standby,), timeout=args.lease_duration * 4 + 30)
    metric_seconds = replicas.wait_metric(standby, 1.0, timeout=30) + takeover
    bench.progress(f"{new_leader} holds the Lease {takeover:.1f} s after the kill")
    unsent1 = journaled_unsent(phase1["snapshot"], fleet, phase1["sent_before"], AZ2)
    requested1 = sum(
        1
        for o in phase1["snapshot"].values()
        if ((o.get("status") or {}).get("operation") or {}).get("to") == AZ2
    )
    bound = ideal * 2 + args.lost_request_grace + args.lease_duration + 120
    bench.wait_all_ready(watcher, args.groups, timeout=bound, what=f"every group Ready at {AZ2}")
    bench.wait_until(lambda: (len(done_at) >= args.groups, f"{len(done_at)}/{args.groups}"), "az2", 60)
    tap = phase1["tap"]
    records1 = tap.stop()
    sent1 = accepted_posts(records1)
    duplicates1 = sum(n - 1 for n in sent1.values() if n > 1)
    kill_at = killed["at"]
    times1 = {name: at - kill_at for name, at in done_at.items()}
    others1 = [t for name, t in times1.items() if name not in unsent1]
    all1 = max(times1.values())
    total1 = max(done_at.values()) - phase1["started"]

    # ------------------------------------------------------------------ phase 2: SIGTERM (rolling update)
    restarted = leader
    replicas.start(restarted)  # the killed pod, restarted: a standby now
    replicas.wait_leader((new_leader,), timeout=10)
    bench.progress(f"{restarted} restarted as a standby; flipping back to az1, SIGTERM {new_leader} mid-way")
    terminated: dict[str, float] = {}

    def terminate() -> None:
        replicas.processes[new_leader].popen.terminate()
        terminated["at"] = time.time()
        bench.progress(f"SIGTERMed {new_leader}")

    target["az"] = AZ1
    phase2 = evacuate(bench, fleet, watcher, AZ1, done_at, armed, terminate, args)
    replicas.wait_released(new_leader, timeout=30)
    released = time.time() - terminated["at"]
    handed_to, _ = replicas.wait_leader((restarted,), timeout=args.lease_duration * 4 + 30)
    handover = time.time() - terminated["at"]
    exit_code = replicas.processes[new_leader].popen.wait(60)
    exited = time.time() - terminated["at"]
    bench.progress(
        f"{handed_to} holds the Lease {handover:.1f} s after SIGTERM; {new_leader} exited {exit_code}"
    )
    # After the drain: what the terminated leader left journaled and unsent (its journal is final now).
    after = watcher.snapshot()
    sent_at_exit = accepted_posts(sim.requests())
    unsent2 = journaled_unsent(after, fleet, sent_at_exit, AZ1)
    bench.wait_all_ready(watcher, args.groups, timeout=bound, what=f"every group Ready at {AZ1}")
    bench.wait_until(lambda: (len(done_at) >= args.groups, f"{len(done_at)}/{args.groups}"), "az1", 60)
    tap2 = phase2["tap"]
    records2 = tap2.stop()
    sent2 = accepted_posts(records2)
    duplicates2 = sum(n - 1 for n in sent2.values() if n > 1)
    term_at = terminated["at"]
    all2 = max(at - term_at for at in done_at.values())
    total2 = max(done_at.values()) - phase2["started"]
    crashes = sum(
        int(replicas.metric(n, "azswitch_reconcile_errors_total") or 0)
        for n, p in replicas.processes.items()
        if p.alive()
    )

    report = bench.report(f"B5 — failover of the operator, {args.groups} groups mid-evacuation")
    report.setup.update(
        {
            "scenario": f"{args.groups} groups az1 → az2 (then back), cap {args.cap}; cloud {sw:g} s + {cp:g} s; "
            f"leader killed (then terminated) once {args.kill_at:.0%} of the switchovers reached the cloud",
            "leader election": f"lease {args.lease_duration} s, renew deadline {args.renew_deadline:g} s, "
            f"retry {args.retry_period:g} s; AZSWITCH_LOST_REQUEST_GRACE={args.lost_request_grace:g} s",
            "ideal evacuation": f"ceil(N / cap) x (switchover + copying) = {ideal:.0f} s",
        }
    )
    report.add(
        "SIGKILL → standby holds the Lease",
        fmt_s(takeover),
        f"<= lease {args.lease_duration} s + few s",
        common.verdict(takeover, args.lease_duration + 5),
    )
    report.add("SIGKILL → standby's azswitch_leader = 1", fmt_s(metric_seconds))
    report.add("journals in flight at the kill (status.operation)", str(requested1))
    report.add("  of which journaled but maybe unsent (Requested, no accepted POST)", str(len(unsent1)))
    report.add(
        "SIGKILL → every other group Ready at az2",
        fmt_s(max(others1) if others1 else math.nan),
    )
    if unsent1:
        report.add(
            "SIGKILL → the journaled-but-maybe-unsent Ready (waits out the grace)",
            fmt_s(max(times1[n] for n in unsent1 if n in times1)),
            f">= grace {args.lost_request_grace:g} s by design",
        )
    report.add("SIGKILL → every group Ready at az2", fmt_s(all1))
    report.add("  whole evacuation (first patch → last Ready)", fmt_s(total1), f"(ideal {ideal:.0f} s)")
    report.add(
        "duplicate accepted os-reverse (SIGKILL phase)",
        str(duplicates1),
        "0",
        "PASS" if duplicates1 == 0 else "MISS",
    )
    report.add(
        "groups at az2 with no accepted os-reverse",
        str(sum(1 for m in fleet.members if not sent1[m.group_id])),
        "0",
        "PASS" if all(sent1[m.group_id] for m in fleet.members) else "MISS",
    )
    # The release itself takes milliseconds; the standby sees it at its next attempt, one retry period
    # (jittered by up to 20 %) at most later.
    handover_bound = args.retry_period * 1.2 + 1.0
    report.add("SIGTERM → the Lease released (no longer the old leader's)", fmt_s(released))
    report.add(
        "SIGTERM → the other holds the Lease (handover)",
        fmt_s(handover),
        f"<= retry x 1.2 + 1 s = {handover_bound:g} s",
        common.verdict(handover, handover_bound),
    )
    report.add("SIGTERM → the old leader exited (code)", f"{exited:.1f} s ({exit_code})")
    report.add(
        "journaled but unsent after the SIGTERM drain",
        str(len(unsent2)),
        "0",
        "PASS" if not unsent2 else "MISS",
    )
    report.add("SIGTERM → every group Ready at az1", fmt_s(all2))
    report.add("  whole evacuation back (first patch → last Ready)", fmt_s(total2), f"(ideal {ideal:.0f} s)")
    report.add(
        "duplicate accepted os-reverse (SIGTERM phase)",
        str(duplicates2),
        "0",
        "PASS" if duplicates2 == 0 else "MISS",
    )
    common.add_request_rows(
        report, common.count_records(records1), "cloud requests, SIGKILL phase", groups=args.groups
    )
    common.add_request_rows(
        report, common.count_records(records2), "cloud requests, SIGTERM phase", groups=args.groups
    )
    report.add("reconcile crashes (metric, running replicas)", str(crashes), "0")
    if tap.gaps or tap2.gaps:
        report.notes.append(f"{tap.gaps + tap2.gaps} request-log records rotated out before they were read")
    if unsent1:
        report.notes.append(f"journaled but maybe unsent at the kill: {', '.join(unsent1[:10])}")
    return report


if __name__ == "__main__":
    sys.exit(main())
