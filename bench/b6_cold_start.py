"""B6 — cold start: the operator starts with N resources it has never observed, whose groups already exist.

Why: installing azswitch into a cluster that already declares its groups (a migration from another tool, a
restore from backup, a re-created namespace) makes it adopt every one at once, through the cloud's rate
limit. Until a resource is adopted its status is empty — nothing is watched for it — so the time to the
last Ready is the time the fleet is unprotected by the operator. What it costs is the number of cloud
requests per never-seen group (its AZ pair must be learned), so the table prints them by kind.

What runs: the simulator seeded with ``--groups`` groups over ``--projects`` projects, every one Protected
at AZ1, with a cloud-side rate limit of ``--rate-limit`` requests/s per project (the simulator's
``rateLimit`` fault, burst ``--cloud-burst``); ``--groups`` ReplicationGroups created on the apiserver while
no operator runs (``--create-threads`` at once); then ``azswitch run`` with default settings (or
``--operator-rate-limit``). Measured from spawning it: first and last resource Ready (receipt of the watch
event showing Ready=True for the current generation), the Ready count over time, the cloud requests by
kind from the simulator's exact counters, 429s from its request log, and the operator's VmRSS at the end.

    .venv/bin/python bench/b6_cold_start.py [--groups 1000] [--projects 1] [--rate-limit 10] [--service EVS]
"""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any

import common
from common import Bench, Report, RGEvent, percentile, verdict

#: Issue 16's targets: (groups, projects) -> seconds from spawn to the last resource Ready.
TARGETS = {(1000, 1): 30.0, (1000, 4): 15.0, (10000, 10): 180.0}


def main() -> int:
    parser = common.base_parser(__doc__.splitlines()[0], timeout=3600)
    parser.add_argument("--groups", type=int, default=1000, help="ReplicationGroups (default 1000)")
    parser.add_argument("--projects", type=int, default=1, help="cloud projects they spread over (default 1)")
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=10,
        help="the cloud's rate limit, requests/s per project (simulator rateLimit; 0 = none; default 10)",
    )
    parser.add_argument("--cloud-burst", type=int, default=20, help="its burst (default 20)")
    parser.add_argument(
        "--operator-rate-limit",
        type=float,
        default=None,
        help="AZSWITCH_RATE_LIMIT of the operator (default: the operator's default, 10/s per project)",
    )
    parser.add_argument(
        "--create-threads", type=int, default=16, help="client threads creating the resources (default 16)"
    )
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=None,
        help="bound on spawn → all Ready, s (default: 5 reads per group at the rate limit + 120 s)",
    )
    args = parser.parse_args()
    return common.run("b6", args, lambda bench: b6(bench, args))


def b6(bench: Bench, args: Any) -> Report:
    fleet = common.make_fleet(bench.namespace, args.groups, args.projects, args.service)
    bench.up(fleet, {})
    assert bench.sim is not None and bench.kube is not None
    sim = bench.sim
    ready_at: dict[str, float] = {}
    lock = threading.Lock()

    def on_event(event: RGEvent) -> None:
        if event.name not in ready_at and common.is_ready(event.obj):
            with lock:
                ready_at[event.name] = event.at

    watcher = bench.watch(fleet.namespace, on_event)
    created = bench.create_resources(fleet, threads=args.create_threads)
    # Every resource exists, none has a status: nothing has observed it.
    unobserved = sum(1 for obj in watcher.snapshot().values() if not obj.get("status"))
    bench.progress(f"{unobserved}/{args.groups} resources without any status; no operator running")

    sim.control("DELETE", "/requests")  # from here on: the operator's requests only
    if args.rate_limit:
        sim.control(
            "POST", "/faults", {"rateLimit": {"perSecond": args.rate_limit, "burst": args.cloud_burst}}
        )
    before = common.sim_counts(sim)
    tap = bench.tap(interval=5)

    overrides: dict[str, str] = {}
    if args.operator_rate_limit is not None:
        overrides["rate_limit"] = f"{args.operator_rate_limit:g}"
    settings = bench.operator_settings(**overrides)
    spawned = time.time()
    operator = bench.start_operator(settings)
    healthy = time.time() - spawned
    sampler = bench.sample(operator.pid)
    timeline: list[tuple[float, int, dict[str, int]]] = []

    def check() -> tuple[bool, str]:
        done = len(ready_at)
        elapsed = time.time() - spawned
        if not timeline or elapsed - timeline[-1][0] >= 5.0:
            kinds = common.by_method(common.count_kinds(common.diff_counts(common.sim_counts(sim), before)))
            timeline.append((elapsed, done, kinds))
        kinds = timeline[-1][2]
        shown = " / ".join(f"{k} {kinds[k]}" for k in common.METHOD_KINDS)
        return (
            done >= args.groups,
            f"{done}/{args.groups} Ready after {elapsed:.0f} s; cloud requests {shown}",
        )

    reads_per_group = 5  # generous: a LIST share, a GET, a pair, two volumes
    rate = min(r for r in (args.rate_limit, args.operator_rate_limit or 10.0) if r)
    bound = args.ready_timeout or args.groups * reads_per_group / (rate * args.projects) + 120
    finished = True
    try:
        bench.wait_until(check, "every resource Ready", timeout=bound, every=5.0)
    except common.BenchTimeout:
        finished = False
        bench.progress(f"stopping after {bound:.0f} s with {len(ready_at)}/{args.groups} Ready")
    elapsed = time.time() - spawned
    kinds = common.count_kinds(common.diff_counts(common.sim_counts(sim), before))
    records = tap.stop()
    throttled = sum(1 for r in records if r.get("status") == 429)
    sample = common.proc_sample(operator.pid)
    rss_peak = max((s.rss_mb for s in sampler.samples), default=math.nan)
    metrics = bench.metrics()
    times = sorted(at - spawned for at in ready_at.values())
    done = len(times)
    last = times[-1] if finished and times else math.nan
    projected = elapsed * args.groups / max(1, done)
    target = TARGETS.get((args.groups, args.projects))

    report = bench.report(
        f"B6 — cold start with {args.groups} never-observed resources, {args.projects} project(s)"
    )
    report.setup.update(
        {
            "scenario": f"{args.groups} {fleet.service} groups over {args.projects} project(s), all Protected at "
            f"{common.AZ1}; the resources created while no operator ran; then one operator starts",
            "cloud-side rate limit": (
                f"{args.rate_limit:g} requests/s per project, burst {args.cloud_burst} (simulator rateLimit)"
                if args.rate_limit
                else "none"
            ),
            "operator settings": (
                f"defaults, AZSWITCH_RATE_LIMIT={args.operator_rate_limit:g}"
                if args.operator_rate_limit is not None
                else "defaults (AZSWITCH_RATE_LIMIT=10/s per project)"
            ),
        }
    )
    report.add(f"create the CRs ({args.create_threads} client threads, no operator)", f"{created:.1f} s")
    report.add("spawn → /healthz answers", f"{healthy:.1f} s")
    report.add("spawn → first resource Ready", f"{times[0]:.1f} s" if times else "n/a")
    for p in (10, 50, 90):
        report.add(
            f"spawn → {p} % Ready",
            f"{percentile(times, p):.1f} s" if done >= args.groups * p / 100 else "n/a",
        )
    if finished:
        report.add(
            "spawn → last resource Ready",
            f"{last:.1f} s",
            f"<= {target:g} s" if target else "",
            verdict(last, target) if target else "",
        )
    else:
        report.add(f"Ready after {elapsed:.0f} s (run stopped)", f"{done}/{args.groups}")
        report.add(
            "  projected spawn → last Ready at that pace",
            f"{projected:.0f} s",
            f"<= {target:g} s" if target else "",
            verdict(projected, target) if target else "",
        )
    report.add(
        "  adoption throughput (resources/s, first → last)",
        f"{(done - 1) / max(1e-6, times[-1] - times[0]):.1f}" if done > 1 else "n/a",
    )
    common.add_request_rows(report, kinds, "cloud requests until then", groups=done or None, seconds=elapsed)
    report.add("  answered 429 (request log)", str(throttled))
    if args.rate_limit:
        total = sum(kinds.values())
        floor = total / (args.rate_limit * args.projects)
        report.add("  time those requests need at the cloud's rate limit", f"{floor:.0f} s")
    report.add(
        "operator RSS at the end (peak sampled / VmHWM)",
        f"{sample.rss_mb if sample else math.nan:.0f} MB ({rss_peak:.0f} / "
        f"{sample.hwm_mb if sample else math.nan:.0f} MB)",
    )
    report.add("reconcile crashes (metric)", str(int(metrics.get("azswitch_reconcile_errors_total", 0))), "0")
    marks = [timeline[i] for i in range(0, len(timeline), max(1, len(timeline) // 12))]
    report.notes.append(
        "Ready over time (s since spawn: Ready): " + ", ".join(f"{t:.0f}: {n}" for t, n, _ in marks)
    )
    if tap.gaps:
        report.notes.append(
            f"{tap.gaps} request-log records rotated out before they were read (429s undercounted)"
        )
    return report


if __name__ == "__main__":
    sys.exit(main())
