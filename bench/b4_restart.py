"""B4 — restart with 1,000 resources: how long until every group is re-observed and its status current.

Why: an operator that crashes (OOM kill, node drain) must pick up where it was quickly, and without
re-sending anything; until it has looked again, every status may be stale. kopf alone resumes 1,000 trivial
resources in about 2 s here; azswitch adds a cloud read and a status write per changed resource.

What runs: ``--groups`` Ready resources (adopted as in B2); the operator is killed with SIGKILL; while it is
down every cloud group changes out of band (replication paused: ``PATCH /_sim/groups/{id}`` with
``replicationStatus: active-stopped`` — a change that needs no action, so nothing but observation is timed);
then a fresh ``azswitch run`` with default settings starts.

"Re-observed and its status current" means: the resource's ``status.cloud.replicationStatus`` shows the
value the cloud changed to while the operator was down (so the operator read the group after the restart
and wrote the result), and ``Ready`` is True for the current generation. Times are from spawning the new
process to the watch event that first shows that, per resource; the target is on the last one.

    .venv/bin/python bench/b4_restart.py [--groups 1000]
"""

from __future__ import annotations

import math
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import common
from common import Bench, Report, RGEvent, percentile, verdict

TARGET_SECONDS = 15.0
CHANGED = "active-stopped"


def main() -> int:
    parser = common.base_parser(__doc__.splitlines()[0], timeout=900)
    parser.add_argument("--groups", type=int, default=1000, help="ReplicationGroups (default 1000)")
    common.add_adoption_arguments(parser)
    args = parser.parse_args()
    return common.run("b4", args, lambda bench: b4(bench, args))


def b4(bench: Bench, args: Any) -> Report:
    fleet = common.make_fleet(bench.namespace, args.groups, service=args.service)
    bench.up(fleet, {})
    assert bench.sim is not None
    sim = bench.sim
    current_at: dict[str, float] = {}
    armed = threading.Event()
    writes: list[float] = []

    def on_event(event: RGEvent) -> None:
        if not armed.is_set():
            return
        writes.append(event.at)
        cloud = (event.obj.get("status") or {}).get("cloud") or {}
        if (
            event.name not in current_at
            and cloud.get("replicationStatus") == CHANGED
            and common.is_ready(event.obj)
        ):
            current_at[event.name] = event.at

    watcher = bench.watch(fleet.namespace, on_event)
    common.adopt(bench, fleet, watcher, args.adopt_rate_limit)
    time.sleep(2.0)
    bench.kill_operator()

    bench.progress(
        f"while the operator is down: pausing replication of all {args.groups} groups in the cloud"
    )
    changed_start = time.monotonic()
    with ThreadPoolExecutor(4, thread_name_prefix="sim") as pool:
        list(
            pool.map(
                lambda m: sim.control("PATCH", f"/groups/{m.group_id}", {"replicationStatus": CHANGED}),
                fleet.members,
            )
        )
    bench.progress(f"changed {args.groups} groups in {time.monotonic() - changed_start:.1f} s")
    before = common.sim_counts(sim)
    armed.set()
    spawned = time.time()
    operator = bench.start_operator(bench.operator_settings())
    healthy = time.time() - spawned
    bench.sample(operator.pid)

    def check() -> tuple[bool, str]:
        done = len(current_at)
        return done >= args.groups, f"{done}/{args.groups} current, {time.time() - spawned:.1f} s since spawn"

    bench.wait_until(check, "every resource to show the new cloud state", timeout=300, every=2.0)
    kinds = common.count_kinds(common.diff_counts(common.sim_counts(sim), before))
    times = [at - spawned for at in current_at.values()]
    last = max(times)
    sample = common.proc_sample(operator.pid)
    metrics = bench.metrics()
    stale = [name for name, obj in watcher.snapshot().items() if not common.is_ready(obj)]

    report = bench.report(f"B4 — restart with {args.groups} resources")
    report.setup.update(
        {
            "scenario": f"{args.groups} Ready resources in 1 project; kill -9; replication paused in the "
            "cloud for all; a fresh operator with default settings",
            "definition": "current = status.cloud.replicationStatus shows the out-of-band change and "
            "Ready=True for the current generation (receipt of the watch event)",
        }
    )
    report.add("spawn → /healthz answers", f"{healthy:.1f} s")
    report.add("spawn → first resource current", f"{min(times):.1f} s")
    report.add("spawn → half current (p50)", f"{percentile(times, 50):.1f} s")
    report.add("spawn → p99 current", f"{percentile(times, 99):.1f} s")
    report.add("spawn → every resource current", f"{last:.1f} s", "<= 15 s", verdict(last, TARGET_SECONDS))
    report.add(
        "  throughput after the first (resources/s)",
        f"{(len(times) - 1) / max(1e-6, last - min(times)):.0f}",
    )
    report.add("resources not Ready at the end", str(len(stale)), "0", "PASS" if not stale else "MISS")
    common.add_request_rows(report, kinds, "cloud requests until then", groups=args.groups)
    report.add("status writes seen on the watch", str(len(writes)))
    report.add(
        "operator RSS at the end (peak)",
        f"{sample.rss_mb if sample else math.nan:.0f} MB ({sample.hwm_mb if sample else math.nan:.0f} MB)",
    )
    report.add("reconcile crashes (metric)", str(int(metrics.get("azswitch_reconcile_errors_total", 0))), "0")
    return report


if __name__ == "__main__":
    sys.exit(main())
