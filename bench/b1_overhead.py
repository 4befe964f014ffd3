"""B1 — the operator's own latency around a switchover, and how hard it polls the cloud meanwhile.

Why: a switchover's duration belongs to the cloud; what azswitch adds on top is (a) the time from a spec
change to the cloud request and (b) the time from the cloud finishing to the resource saying Ready. Both
are measured from the outside, over ≥ 50 real switchovers:

* spec patch → switchover request: the client-side wall time just before the merge patch is sent, to the
  ``wallTime`` of the ``os-reverse`` POST in the simulator's request log.
* cloud finished → Ready: the simulator's status machine is deterministic, so the moment the group is
  available + active + at the new primary is (POST time + switchoverSeconds + copyingSeconds); the end is
  when the watch delivers the resource with Ready=True at the new primary (receipt time, as ``kubectl get -w``
  would show it).
* cloud reads per in-flight group per second: GETs of that group in the log between its POST and its Ready,
  plus its share of the LISTs in that window (with two or more operations in flight in one project, they
  are polled through one shared LIST; a LIST counts 1 / (operations in flight at that moment) for each),
  divided by that duration. GETs alone are shown too.

Both halves are broken down further (watch/queue vs. journal write; polling wait vs. status write), so a
miss points at the step to fix. Flips run ``--parallel`` groups at a time, each group flipping ``--flips``
times in sequence.

    .venv/bin/python bench/b1_overhead.py [--groups 10] [--flips 5] [--parallel 5] [--service SDRS]

With ``--service SDRS`` the groups are SDRS protection groups: the request is ``reverse-server-group`` and
the operation is followed through its job, so the reads per in-flight group include the job polls.
"""

from __future__ import annotations

import math
import queue
import random
import statistics
import sys
import threading
import time
from collections import defaultdict
from typing import Any

import common
from common import AZ1, AZ2, Bench, Report, RGEvent, percentile, verdict

TARGET_OVERHEAD_P99 = 1.0
TARGET_GETS_PER_SECOND = 2.0


class Flip:
    """One switchover as the benchmark drove and saw it."""

    def __init__(self, name: str, group_id: str, target: str, patched_at: float) -> None:
        self.name = name
        self.group_id = group_id
        self.target = target
        self.patched_at = patched_at
        self.ready_at = math.nan
        self.operation_id: str | None = None


def main() -> int:
    parser = common.base_parser(__doc__.splitlines()[0], timeout=900)
    parser.add_argument("--groups", type=int, default=10, help="ReplicationGroups (default 10)")
    parser.add_argument("--flips", type=int, default=5, help="switchovers per group (default 5)")
    parser.add_argument("--parallel", type=int, default=5, help="groups flipping at once (default 5)")
    parser.add_argument("--switchover-seconds", type=float, default=5.0, help="simulator (default 5)")
    parser.add_argument("--copying-seconds", type=float, default=3.0, help="simulator (default 3)")
    args = parser.parse_args()
    return common.run("b1", args, lambda bench: b1(bench, args))


def b1(bench: Bench, args: Any) -> Report:
    fleet = common.make_fleet(bench.namespace, args.groups, service=args.service)
    sdrs = fleet.service == "SDRS"
    # An SDRS reverse ends protected + active with its job (no copying phase in the simulator).
    sw, cp = args.switchover_seconds, (0.0 if sdrs else args.copying_seconds)
    bench.up(fleet, {"switchoverSeconds": sw, "copyingSeconds": cp})
    assert bench.kube is not None and bench.sim is not None
    kube = bench.kube

    history: dict[str, list[RGEvent]] = defaultdict(list)
    lock = threading.Lock()

    def on_event(event: RGEvent) -> None:
        with lock:
            history[event.name].append(event)

    watcher = bench.watch(fleet.namespace, on_event)
    bench.create_resources(fleet)
    settings = bench.operator_settings()
    bench.start_operator(settings)
    bench.wait_all_ready(watcher, len(fleet.members), timeout=180)
    time.sleep(1.0)
    tap = bench.tap(interval=30)

    flips: list[Flip] = []
    failures: list[str] = []
    work: queue.Queue[common.Member] = queue.Queue()
    for member in fleet.members:
        work.put(member)
    rng = random.Random(1)
    stop = threading.Event()
    flip_timeout = 60 + 5 * (sw + cp)

    def flip_group(member: common.Member) -> None:
        current = watcher.snapshot()[member.name]
        primary = current["status"].get("currentPrimaryAZ", AZ1)
        last_id = (current["status"].get("lastOperation") or {}).get("id")
        for _ in range(args.flips):
            target = AZ2 if primary == AZ1 else AZ1
            with lock:
                seen = len(history[member.name])
            flip = Flip(member.name, member.group_id, target, time.time())
            kube.patch_spec(fleet.namespace, member.name, {"primaryAZ": target})
            limit = time.monotonic() + bench.bound(flip_timeout)
            while math.isnan(flip.ready_at):
                with lock:
                    fresh = history[member.name][seen:]
                    seen += len(fresh)
                for event in fresh:
                    status = event.obj.get("status") or {}
                    last = status.get("lastOperation") or {}
                    if (
                        common.is_ready(event.obj)
                        and status.get("currentPrimaryAZ") == target
                        and last.get("id") not in (None, last_id)
                    ):
                        flip.ready_at, flip.operation_id = event.at, last.get("id")
                        break
                if stop.is_set():
                    return
                if time.monotonic() > limit:
                    failures.append(f"{member.name} → {target} not Ready within {flip_timeout:.0f} s")
                    return
                watcher.wait(0.5)
            with lock:
                flips.append(flip)
            primary, last_id = target, flip.operation_id
            time.sleep(rng.uniform(0.2, 1.0))

    def worker() -> None:
        while not stop.is_set():
            try:
                member = work.get_nowait()
            except queue.Empty:
                return
            try:
                flip_group(member)
            except Exception as error:  # reported below; the other groups go on
                failures.append(f"{member.name}: {error}")

    total = args.groups * args.flips
    bench.progress(
        f"flipping {args.groups} groups x {args.flips} times, {args.parallel} groups at a time "
        f"(cloud: {sw:g} s reversing + {cp:g} s copying)"
    )
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.parallel)]
    for thread in threads:
        thread.start()
    try:
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(5)
            with lock:
                done = len(flips)
            bench.progress(f"{done}/{total} switchovers Ready")
            bench.check_processes()
            if bench.remaining() < 0:
                raise common.BenchTimeout("the run's --timeout passed during the flips")
    finally:
        stop.set()
    records = tap.stop()
    if failures:
        raise RuntimeError("; ".join(failures[:5]))
    if sdrs:
        # Job polls name no group in the log; the simulator knows whose job each is.
        owners = {job["id"]: job["group"] for job in bench.sim.control("GET", "/jobs")}
        for record in records:
            if common.kind_of(record) == "GET job":
                record["group"] = owners.get(str(record["path"]).rsplit("/", 1)[-1])

    # ------------------------------------------------------------------ analysis
    by_group: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record.get("group"):
            by_group[str(record["group"])].append(record)
    overhead, to_post, gets_rate, poll_wait, write_lag, to_first_get, get_to_post, e2e, jobs_rate = (
        [] for _ in range(9)
    )
    lists = [
        common.wall_of(r) for r in records if common.kind_of(r) == "LIST groups" and r.get("status") == 200
    ]
    # When each flip's switchover was in flight (accepted POST → Ready), to share each LIST among them.
    flights: list[tuple[float, float]] = []
    for flip in flips:
        accepted = [
            common.wall_of(r)
            for r in by_group[flip.group_id]
            if common.is_reverse(r)
            and r.get("status") == 200
            and flip.patched_at - 0.05 <= common.wall_of(r) <= flip.ready_at
        ]
        if accepted:
            flights.append((accepted[0], flip.ready_at))

    def in_flight_at(moment: float) -> int:
        return max(1, sum(1 for start, end in flights if start <= moment <= end))

    reads_rate: list[float] = []
    duplicates = 0
    for flip in flips:
        mine = by_group[flip.group_id]
        # 50 ms of slack for the two clocks (both derive from the kernel's; see the note on agreement).
        window = [r for r in mine if flip.patched_at - 0.05 <= common.wall_of(r) <= flip.ready_at]
        posts = [r for r in window if common.is_reverse(r) and r.get("status") == 200]
        if len(posts) != 1:
            duplicates += 1
            if not posts:
                continue
        post = posts[0]
        post_at = common.wall_of(post)
        done_at = post_at + sw + cp
        overhead.append(flip.ready_at - done_at)
        to_post.append(post_at - flip.patched_at)
        e2e.append(flip.ready_at - flip.patched_at)
        gets = [r for r in window if common.kind_of(r) == "GET group"]
        during = [r for r in gets if post_at <= common.wall_of(r) <= flip.ready_at]
        polls = [
            r
            for r in window
            if common.kind_of(r) == "GET job" and post_at <= common.wall_of(r) <= flip.ready_at
        ]
        shared = [t for t in lists if post_at <= t <= flip.ready_at]
        flight = max(1e-6, flip.ready_at - post_at)
        gets_rate.append((len(during) + len(polls)) / flight)
        jobs_rate.append(len(polls) / flight)
        reads_rate.append((len(during) + len(polls) + sum(1 / in_flight_at(t) for t in shared)) / flight)
        # A job's SUCCESS is what an SDRS operation's end is seen on (then the group is read once).
        reads = sorted([common.wall_of(r) for r in during + polls] + shared)
        seen_done = [t for t in reads if t >= done_at]
        if seen_done:
            poll_wait.append(seen_done[0] - done_at)
            write_lag.append(flip.ready_at - seen_done[0])
        before = [r for r in gets if common.wall_of(r) < post_at]
        if before:
            to_first_get.append(common.wall_of(before[0]) - flip.patched_at)
            get_to_post.append(post_at - common.wall_of(before[-1]))

    # The simulator's wall clock is anchored once to time.time() and then follows the monotonic clock;
    # compare its anchor with ours now to show the two timelines agree.
    sim_anchor = statistics.median(common.wall_of(r) - float(r["time"]) for r in records[-50:])
    our_anchor = time.time() - time.monotonic()
    clock_gap_ms = abs(sim_anchor - our_anchor) * 1000
    reverses = sum(1 for r in records if common.is_reverse(r))
    throttled = sum(1 for r in records if r.get("status") == 429)
    metrics = bench.metrics()

    report = bench.report("B1 — overhead around a switchover")
    report.setup.update(
        {
            "scenario": f"{args.groups} groups x {args.flips} flips, {args.parallel} groups at a time",
            "cloud": f"{fleet.service} (simulator), switchoverSeconds={sw:g}, copyingSeconds={cp:g}",
            "operator settings": "defaults (AZSWITCH_POLL_INTERVAL=0.5, AZSWITCH_POLL_MAX_INTERVAL=1.0, "
            "AZSWITCH_RATE_LIMIT=10/s, AZSWITCH_MAX_CONCURRENT_OPERATIONS=10)",
        }
    )

    def dist(values: list[float]) -> str:
        return f"{percentile(values, 50):.3f} / {percentile(values, 99):.3f} / {max(values, default=math.nan):.3f}"

    p99_ready, p99_post = percentile(overhead, 99), percentile(to_post, 99)
    report.add("switchovers measured", str(len(overhead)), ">= 50", "PASS" if len(overhead) >= 50 else "MISS")
    report.add(
        "cloud finished → Ready, p50 / p99 / max (s)", dist(overhead), "p99 <= 1.0 s", verdict(p99_ready, 1)
    )
    report.add("  finished → first read (GET or LIST) that sees it (s)", dist(poll_wait), "", "")
    report.add("  that read → Ready on the watch (s)", dist(write_lag), "", "")
    report.add(
        "spec patch → switchover request, p50 / p99 / max (s)",
        dist(to_post),
        "p99 <= 1.0 s",
        verdict(p99_post, 1),
    )
    report.add("  patch → first GET of the group (s)", dist(to_first_get), "", "")
    report.add("  last GET → POST (the journal write) (s)", dist(get_to_post), "", "")
    report.add(
        "spec patch → Ready, p50 / p99 (s)",
        f"{percentile(e2e, 50):.3f} / {percentile(e2e, 99):.3f}",
        f"(cloud: {sw + cp:g} s)",
        "",
    )
    report.add(
        "GETs (group + job) per in-flight group per second, mean / max",
        f"{statistics.fmean(gets_rate):.2f} / {max(gets_rate):.2f}" if gets_rate else "n/a",
        "<= 2 /s",
        verdict(max(gets_rate, default=math.nan), TARGET_GETS_PER_SECOND),
    )
    if sdrs:
        report.add(
            "  of which job polls, mean / max",
            f"{statistics.fmean(jobs_rate):.2f} / {max(jobs_rate):.2f}" if jobs_rate else "n/a",
            "",
            "",
        )
    report.add(
        "  cloud reads (GETs + share of shared LISTs) per in-flight group per second, mean / max",
        f"{statistics.fmean(reads_rate):.2f} / {max(reads_rate):.2f}" if reads_rate else "n/a",
        "<= 2 /s",
        verdict(max(reads_rate, default=math.nan), TARGET_GETS_PER_SECOND),
    )
    report.add(
        f"switchovers with ≠ 1 accepted {'reverse-server-group' if sdrs else 'os-reverse'}",
        str(duplicates),
        "0",
        "PASS" if duplicates == 0 else "MISS",
    )
    report.add("reverse POSTs in total / 429s", f"{reverses} / {throttled}", "", "")
    common.add_request_rows(
        report, common.count_records(records), "cloud requests during the flips", groups=len(flips) or None
    )
    report.add(
        "reconcile crashes (metric)", str(int(metrics.get("azswitch_reconcile_errors_total", 0))), "0", ""
    )
    report.notes.append(
        f"clocks: simulator wall anchor vs ours differ by {clock_gap_ms:.2f} ms; request-log gaps: {tap.gaps}"
    )
    report.notes.append(
        "p50 / p99 are nearest-rank over the measured switchovers; 'Ready' is the receipt time of the watch "
        "event that first shows Ready=True at the new primary"
    )
    return report


if __name__ == "__main__":
    sys.exit(main())
