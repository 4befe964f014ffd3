"""B2 — 1,000 idle ReplicationGroups with drift detection on: operator memory and cloud requests per minute.

Why: an operator holding many resources must neither grow with per-resource machinery (kopf timers or
daemons per resource cost 3-6x the memory) nor poll the cloud per resource (1,000 GETs a minute against a
throttled API). azswitch keeps one work queue and serves idle groups from one shared LIST per project, so
memory should stay flat and requests should scale with the number of projects, not groups.

What runs: the simulator seeded with ``--groups`` groups over ``--projects`` projects; an operator adopts
them (with a raised client-side rate limit, see ``common.adopt`` — the default-rate adoption time is
estimated from the measured requests per group); then the operator is restarted with default settings
(``AZSWITCH_RESYNC_INTERVAL`` = ``--resync``) and left alone for ``--measure`` seconds. Measured: cloud
requests per minute by kind from the simulator's exact counters, status writes per minute from the watch,
and the operator's VmRSS (steady = median of the last minute) and VmHWM from ``/proc``, plus its CPU.

    .venv/bin/python bench/b2_idle.py [--groups 1000] [--projects 1] [--measure 180] [--resync 60]
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from typing import Any

import common
from common import Bench, Report, verdict

TARGET_RSS_MB = 250.0
PAGE_SIZE = 1000  # the operator's LIST page size (azswitch.cloud.evs)


def main() -> int:
    parser = common.base_parser(__doc__.splitlines()[0], timeout=1200)
    parser.add_argument("--groups", type=int, default=1000, help="ReplicationGroups (default 1000)")
    parser.add_argument("--projects", type=int, default=1, help="cloud projects they spread over (default 1)")
    parser.add_argument("--measure", type=float, default=180, help="idle seconds measured (default 180)")
    parser.add_argument("--resync", type=float, default=60, help="AZSWITCH_RESYNC_INTERVAL (default 60)")
    common.add_adoption_arguments(parser)
    args = parser.parse_args()
    return common.run("b2", args, lambda bench: b2(bench, args))


def b2(bench: Bench, args: Any) -> Report:
    fleet = common.make_fleet(bench.namespace, args.groups, args.projects, args.service)
    bench.up(fleet, {})
    assert bench.sim is not None
    sim = bench.sim
    writes: list[float] = []
    watcher = bench.watch(fleet.namespace, lambda event: writes.append(event.at))
    adoption = common.adopt(bench, fleet, watcher, args.adopt_rate_limit)

    bench.stop_operator()
    settings = bench.operator_settings(resync_interval=f"{args.resync:g}")
    started = time.monotonic()
    operator = bench.start_operator(settings)
    sampler = bench.sample(operator.pid)
    common.wait_operator_settled(bench, {"Ready": args.groups}, timeout=max(120, args.groups * 0.05))
    settle = time.monotonic() - started
    bench.progress(f"restarted operator re-observed all {args.groups} in {settle:.1f} s")

    # The window starts once the restart's own burst (one reconcile per resource) is over.
    before = common.sim_counts(sim)
    window_start, writes_mark = time.monotonic(), len(writes)
    cpu_start = common.proc_sample(operator.pid)
    while (elapsed := time.monotonic() - window_start) < args.measure:
        bench.check_processes()
        if bench.remaining() < 0:
            raise common.BenchTimeout("the run's --timeout passed while measuring")
        time.sleep(min(30.0, args.measure - elapsed))
        sample = common.proc_sample(operator.pid)
        so_far = sum(common.diff_counts(common.sim_counts(sim), before).values())
        bench.progress(
            f"idle for {time.monotonic() - window_start:.0f}/{args.measure:.0f} s: "
            f"RSS {sample.rss_mb if sample else math.nan:.0f} MB, {so_far} cloud requests so far"
        )
    window_end = time.monotonic()
    minutes = (window_end - window_start) / 60
    kinds = common.count_kinds(common.diff_counts(common.sim_counts(sim), before))
    cpu_end = common.proc_sample(operator.pid)
    samples = sampler.between(window_start, window_end)
    last_minute = [s.rss_mb for s in samples if s.at >= window_end - 60] or [s.rss_mb for s in samples]
    steady = statistics.median(last_minute) if last_minute else math.nan
    peak_window = max((s.rss_mb for s in samples), default=math.nan)
    hwm = cpu_end.hwm_mb if cpu_end else math.nan
    cpu_share = (
        (cpu_end.cpu_seconds - cpu_start.cpu_seconds) / (window_end - window_start) * 100
        if cpu_end and cpu_start
        else math.nan
    )
    per_minute = {kind: n / minutes for kind, n in sorted(kinds.items())}
    total_per_minute = sum(per_minute.values())
    idle_writes = len(writes) - writes_mark
    # What "O(projects)" allows: the shared LIST is refreshed at most every resync/2, each refresh reading
    # every page (a page of exactly PAGE_SIZE needs one more, empty, page to know it was the last).
    per_project = math.ceil(args.groups / args.projects)
    pages = per_project // PAGE_SIZE + 1
    allowed = args.projects * pages * 2 * (60 / args.resync)
    metrics = bench.metrics()

    report = bench.report(f"B2 — {args.groups} idle ReplicationGroups, {args.projects} project(s)")
    report.setup.update(
        {
            "scenario": f"{args.groups} groups over {args.projects} project(s); idle window {args.measure:.0f} s",
            "operator settings": f"defaults, AZSWITCH_RESYNC_INTERVAL={args.resync:g} (LIST shared per project,"
            f" max age {args.resync / 2:g} s); adoption with AZSWITCH_RATE_LIMIT={args.adopt_rate_limit:g}",
        }
    )
    # The client-side limit is per (endpoint, project): projects adopt in parallel.
    default_rate_estimate = adoption.requests_per_group(args.groups) * args.groups / (10 * args.projects)
    report.add("create the CRs (8 client threads)", f"{adoption.create_seconds:.1f} s")
    report.add(
        f"first create → all Ready (rate limit {args.adopt_rate_limit:g}/s)",
        f"{adoption.ready_seconds:.1f} s",
    )
    report.add("cloud requests per group to adopt it", f"{adoption.requests_per_group(args.groups):.1f}")
    common.add_request_rows(report, adoption.requests, "  adoption's cloud requests", groups=args.groups)
    report.add("  → at the default 10 req/s per project it would take ≥", f"{default_rate_estimate:.0f} s")
    report.add("restarted operator: spawn → all reconciled (metrics)", f"{settle:.1f} s")
    report.add("operator RSS, no resources", f"{adoption.rss_empty_mb:.0f} MB")
    report.add("operator RSS after adopting (peak)", f"{adoption.rss_mb:.0f} MB ({adoption.hwm_mb:.0f} MB)")
    report.add(
        "idle RSS, steady (median of last minute)",
        f"{steady:.0f} MB",
        "<= 250 MB",
        verdict(steady, TARGET_RSS_MB),
    )
    report.add(
        "idle RSS, peak in window / VmHWM since start",
        f"{peak_window:.0f} / {hwm:.0f} MB",
        "<= 250 MB",
        verdict(max(peak_window, hwm), TARGET_RSS_MB),
    )
    report.add(
        "cloud requests per minute, idle",
        f"{total_per_minute:.1f}",
        f"O(projects): <= {allowed:g}",
        verdict(total_per_minute, allowed),
    )
    folded = common.by_method(kinds)
    report.add(
        "  per minute: LIST / GET / POST / other",
        " / ".join(f"{folded[k] / minutes:.1f}" for k in common.METHOD_KINDS),
    )
    for kind, rate in per_minute.items():
        report.add(f"  {kind} per minute", f"{rate:.1f}")
    if "GET group" not in per_minute:
        report.add("  GET group per minute", "0.0")
    report.add("status writes per minute, idle", f"{idle_writes / minutes:.1f}")
    report.add("operator CPU, idle (% of one core)", f"{cpu_share:.1f} %")
    report.add("reconcile crashes (metric)", str(int(metrics.get("azswitch_reconcile_errors_total", 0))), "0")
    report.notes.append(
        "RSS is /proc/<pid>/status VmRSS of the `azswitch run` process (Python + kopf + kubernetes client); "
        "the adopting operator ran with a raised rate limit only so that the run fits in minutes"
    )
    return report


if __name__ == "__main__":
    sys.exit(main())
