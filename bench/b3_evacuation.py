"""B3 — AZ evacuation: 500 groups flipped at once under a rate limit; total time against the ideal.

Why: evacuating an AZ is the moment azswitch exists for. With at most ``AZSWITCH_MAX_CONCURRENT_OPERATIONS``
operations in flight, no schedule can beat ceil(N / cap) x (one switchover's cloud time); what the operator
adds is the time each slot sits idle between one group finishing and the next starting, and any request it
sends twice (a second ``os-reverse`` swaps a group back, so duplicates must be zero).

What runs: ``--groups`` Ready resources with primary az1 (adopted as in B2), a fresh operator with default
settings (client-side rate limit ``AZSWITCH_RATE_LIMIT`` 10/s, cap ``--cap``), then every resource's
``spec.primaryAZ`` is patched to az2 at once. Measured: time from the first patch until the watch shows the
last resource Ready at az2; accepted ``os-reverse`` POSTs per group (must be exactly 1); 429s in the
simulator's log; the highest number of switchovers running in the cloud at once (from the POST times and
the simulator's deterministic durations); slot time lost per operation.

The cloud enforces a rate limit during the evacuation: the simulator's ``rateLimit`` fault, a token bucket
per project like the API gateway's (``--cloud-rate-limit`` 10/s, ``--cloud-burst`` 20; 0 turns it off).
``--throttle N`` additionally answers 429 to the first N cloud requests (Retry-After 1 s) to show that
429s never turn into duplicates.

    .venv/bin/python bench/b3_evacuation.py [--groups 500] [--cap 10] [--switchover-seconds 3] [--copying-seconds 1]
        [--via drain]

``--via drain`` evacuates through one ZoneDrain of az1 instead of patching every spec (what DR automation does
now): the time is then from creating the drain, and the report adds the time until the drain is Ready and,
after deleting it, until every group is back at az1 (every spec still says az1 throughout).
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import common
from common import AZ1, AZ2, Bench, Report, RGEvent, percentile, verdict

TARGET_RATIO = 1.2
#: ``--via drain``: one drain of every group of the benchmark (no selector).
DRAIN: dict[str, Any] = {
    "apiVersion": "azswitch.io/v1alpha1",
    "kind": "ZoneDrain",
    "metadata": {"name": "b3-az1"},
    "spec": {"zone": AZ1, "comment": "B3 evacuation"},
}


def wait_drain_ready(bench: Bench, kube: Any, since: float) -> float:
    """Seconds from ``since`` until the drain's Ready condition is True (polled every 0.5 s)."""
    while bench.remaining() > 0:
        drain = kube.request("GET", f"/apis/azswitch.io/v1alpha1/zonedrains/{DRAIN['metadata']['name']}")
        conditions = (drain.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            return time.time() - since
        time.sleep(0.5)
    raise common.BenchTimeout("the drain never became Ready")


def main() -> int:
    parser = common.base_parser(__doc__.splitlines()[0], timeout=1200)
    parser.add_argument("--groups", type=int, default=500, help="ReplicationGroups (default 500)")
    parser.add_argument("--cap", type=int, default=10, help="AZSWITCH_MAX_CONCURRENT_OPERATIONS (default 10)")
    parser.add_argument("--rate-limit", type=float, default=10, help="AZSWITCH_RATE_LIMIT (default 10)")
    parser.add_argument("--switchover-seconds", type=float, default=3.0, help="simulator (default 3)")
    parser.add_argument("--copying-seconds", type=float, default=1.0, help="simulator (default 1)")
    parser.add_argument("--throttle", type=int, default=0, help="429 the first N requests (default 0)")
    parser.add_argument(
        "--cloud-rate-limit", type=float, default=10, help="the cloud's requests/s per project (default 10)"
    )
    parser.add_argument("--cloud-burst", type=int, default=20, help="the cloud's burst (default 20)")
    parser.add_argument(
        "--evacuation-timeout",
        type=float,
        default=0,
        help="stop the evacuation after this many seconds and extrapolate (default 1.5 x ideal + 60)",
    )
    parser.add_argument("--dump", type=Path, help="write the request log and Ready times (JSON) here")
    parser.add_argument(
        "--via",
        choices=("spec", "drain"),
        default="spec",
        help="patch every spec.primaryAZ (default) or create one ZoneDrain of az1",
    )
    common.add_adoption_arguments(parser)
    args = parser.parse_args()
    return common.run("b3", args, lambda bench: b3(bench, args))


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = best = 0
    for _, step in edges:
        running += step
        best = max(best, running)
    return best


def b3(bench: Bench, args: Any) -> Report:
    fleet = common.make_fleet(bench.namespace, args.groups, service=args.service)
    sw, cp = args.switchover_seconds, args.copying_seconds
    bench.up(fleet, {"switchoverSeconds": sw, "copyingSeconds": cp})
    assert bench.sim is not None and bench.kube is not None
    sim, kube = bench.sim, bench.kube
    done_at: dict[str, float] = {}
    back_at: dict[str, float] = {}
    armed = threading.Event()
    returning = threading.Event()

    def on_event(event: RGEvent) -> None:
        status = event.obj.get("status") or {}
        if returning.is_set() and event.name not in back_at:
            if (
                common.is_ready(event.obj)
                and status.get("currentPrimaryAZ") == AZ1
                and "drainedBy" not in status
            ):
                back_at[event.name] = event.at
            return
        if not armed.is_set() or event.name in done_at:
            return
        last = status.get("lastOperation") or {}
        if (
            common.is_ready(event.obj)
            and status.get("currentPrimaryAZ") == AZ2
            and last.get("result") == "Succeeded"
        ):
            done_at[event.name] = event.at

    watcher = bench.watch(fleet.namespace, on_event)
    common.adopt(bench, fleet, watcher, args.adopt_rate_limit)
    bench.stop_operator()
    settings = bench.operator_settings(
        max_concurrent_operations=str(args.cap), rate_limit=f"{args.rate_limit:g}"
    )
    bench.start_operator(settings)
    common.wait_operator_settled(bench, {"Ready": args.groups}, timeout=120)

    sim.control("DELETE", "/requests")
    faults: dict[str, Any] = {}
    if args.throttle:
        faults["throttle"] = {"count": args.throttle, "retryAfter": 1}
    if args.cloud_rate_limit:
        faults["rateLimit"] = {"perSecond": args.cloud_rate_limit, "burst": args.cloud_burst}
    if faults:
        sim.control("POST", "/faults", faults)
    tap = bench.tap(interval=15)
    ideal = math.ceil(args.groups / args.cap) * (sw + cp)
    bench.progress(
        f"evacuating az1: patching {args.groups} resources to {AZ2} (ideal {ideal:.0f} s with cap {args.cap})"
    )
    armed.set()
    first_patch = time.time()
    if args.via == "drain":
        kube.request("POST", "/apis/azswitch.io/v1alpha1/zonedrains", DRAIN)
    else:
        with ThreadPoolExecutor(8, thread_name_prefix="patch") as pool:
            list(
                pool.map(
                    lambda m: kube.patch_spec(fleet.namespace, m.name, {"primaryAZ": AZ2}), fleet.members
                )
            )
    patched = time.time() - first_patch
    how = "created the ZoneDrain" if args.via == "drain" else f"patched {args.groups} specs"
    bench.progress(f"{how} in {patched:.1f} s")

    def check() -> tuple[bool, str]:
        n = len(done_at)
        elapsed = time.time() - first_patch
        pace = ideal * n / args.groups
        return (
            n >= args.groups,
            f"{n}/{args.groups} at {AZ2} after {elapsed:.0f} s (ideal pace: {pace:.0f} s)",
        )

    bound = args.evacuation_timeout or 1.5 * ideal + 60
    finished = True
    try:
        bench.wait_until(check, "the evacuation", timeout=bound, every=15.0)
    except common.BenchTimeout:
        # Past 1.5 x ideal the target is missed anyway; stop, and extrapolate from the pace so far.
        finished = False
        bench.progress(f"stopping the evacuation after {bound:.0f} s with {len(done_at)}/{args.groups} done")
    elapsed = time.time() - first_patch
    done = len(done_at)
    total = max(done_at.values()) - first_patch if finished else elapsed * args.groups / max(1, done)
    records = tap.stop()
    drain_ready = back = math.nan
    specs_kept, return_reverses = True, 0
    if args.via == "drain" and finished:
        drain_ready = wait_drain_ready(bench, kube, first_patch)
        specs_kept = all(
            kube.request("GET", kube.rg_path(fleet.namespace, m.name))["spec"]["primaryAZ"] == AZ1
            for m in fleet.members
        )
        bench.progress(
            f"drain Ready after {drain_ready:.1f} s; every spec still {AZ1}: {specs_kept}; deleting it"
        )
        before = common.sim_counts(sim)
        returning.set()
        deleted = time.time()
        kube.request("DELETE", f"/apis/azswitch.io/v1alpha1/zonedrains/{DRAIN['metadata']['name']}")

        def back_check() -> tuple[bool, str]:
            return len(back_at) >= args.groups, f"{len(back_at)}/{args.groups} back at {AZ1}"

        bench.wait_until(back_check, "the return to az1", timeout=bound, every=15.0)
        back = max(back_at.values()) - deleted
        returned = common.count_kinds(common.diff_counts(common.sim_counts(sim), before))
        return_reverses = returned.get(f"POST {common.REVERSE}", 0)
    metrics = bench.metrics()
    if args.dump is not None:
        document = {"firstPatch": first_patch, "readyAt": done_at, "requests": records}
        args.dump.write_text(json.dumps(document))

    name_of = {m.group_id: m.name for m in fleet.members}
    group_of = {m.name: m.group_id for m in fleet.members}
    accepted_posts = [r for r in records if common.is_reverse(r) and r.get("status") == 200]
    accepted = Counter(str(r["group"]) for r in accepted_posts)
    refused = [r for r in records if common.is_reverse(r) and r.get("status") != 200]
    duplicates = sum(n - 1 for n in accepted.values() if n > 1)
    # Every group that reached az2 must have had exactly one accepted request; none may be unknown.
    missing = [name for name in done_at if accepted.get(group_of[name], 0) == 0]
    unknown = [g for g in accepted if g not in name_of]
    throttled = sum(1 for r in records if r.get("status") == 429)
    post_of = {str(r["group"]): common.wall_of(r) for r in accepted_posts}
    posts = sorted(post_of.values())
    in_cloud = max_overlap([(t, t + sw + cp) for t in posts])
    per_second = Counter(int(common.wall_of(r)) for r in records)
    slot_loss = args.cap * elapsed / max(1, done) - (sw + cp)
    first_post = posts[0] - first_patch if posts else math.nan

    # What the cloud requests were for: a group's GETs before its POST are its wait for a slot (and the
    # reads just before acting), those between POST and Ready are the in-flight polls.
    purpose: Counter[str] = Counter()
    gets_of: dict[str, list[float]] = {}
    lists = [
        common.wall_of(r) for r in records if common.kind_of(r) == "LIST groups" and r.get("status") == 200
    ]
    for r in records:
        kind, group = common.kind_of(r), str(r.get("group"))
        if kind != "GET group" or group not in name_of:
            purpose[kind] += 1
            continue
        at, ready_at = common.wall_of(r), done_at.get(name_of[group], math.inf)
        gets_of.setdefault(group, []).append(at)
        if group not in post_of or at < post_of[group]:
            purpose["GET group before its os-reverse (waiting + start)"] += 1
        elif at <= ready_at:
            purpose["GET group in flight (os-reverse → Ready)"] += 1
        else:
            purpose["GET group after Ready"] += 1

    # Per finished operation: how late the operator saw the cloud finish, and how often it looked meanwhile
    # (its own GETs and the shared LISTs).
    late, gaps = [], []
    for name, ready in done_at.items():
        group = group_of[name]
        if group not in post_of:
            continue
        late.append(ready - (post_of[group] + sw + cp))
        polls = sorted(t for t in gets_of.get(group, []) + lists if post_of[group] <= t <= ready)
        gaps += [b - a for a, b in zip([post_of[group], *polls], polls, strict=False)]

    report = bench.report(f"B3 — AZ evacuation of {args.groups} groups")
    report.setup.update(
        {
            "scenario": f"{args.groups} groups az1 → az2 at once; cloud {sw:g} s reversing + {cp:g} s copying",
            "operator settings": f"AZSWITCH_MAX_CONCURRENT_OPERATIONS={args.cap}, AZSWITCH_RATE_LIMIT="
            f"{args.rate_limit:g}/s (burst 20), other defaults (poll 0.5 s → 1.0 s)",
            "cloud-side rate limit": (
                f"{args.cloud_rate_limit:g} requests/s per project, burst {args.cloud_burst} (simulator rateLimit)"
                if args.cloud_rate_limit
                else "none"
            )
            + (f"; the first {args.throttle} requests answered 429" if args.throttle else ""),
        }
    )
    report.add("ideal = ceil(N / cap) x (switchover + copying)", f"{ideal:.0f} s")
    if finished:
        report.add(
            "first patch → last resource Ready at az2", f"{total:.1f} s", f"<= {TARGET_RATIO * ideal:.0f} s"
        )
    else:
        report.add(f"Ready at az2 after {elapsed:.0f} s (run stopped)", f"{done}/{args.groups}")
        report.add("projected total at that pace", f"{total:.0f} s", f"<= {TARGET_RATIO * ideal:.0f} s")
    report.add(
        "  ratio to ideal", f"{total / ideal:.2f}", f"<= {TARGET_RATIO}", verdict(total / ideal, TARGET_RATIO)
    )
    if args.via == "drain":
        report.add("creating the ZoneDrain took", f"{patched:.2f} s")
        report.add("drain created → drain Ready (kubectl wait returns)", f"{drain_ready:.1f} s")
        report.add("drain deleted → every group back at az1", f"{back:.1f} s")
        report.add(
            "  switchover requests for the return (one per group)",
            str(return_reverses),
            str(args.groups),
            "PASS" if return_reverses == args.groups else "MISS",
        )
        report.add(
            "specs changed by the evacuation",
            "0" if specs_kept else "SOME",
            "0",
            "PASS" if specs_kept else "MISS",
        )
    else:
        report.add("patching all specs took", f"{patched:.1f} s")
    report.add("first patch → first os-reverse", f"{first_post:.2f} s")
    report.add("slot time lost per operation (cap x T / N - cloud time)", f"{slot_loss:.2f} s")
    report.add(
        "cloud finished → Ready, p50 / p99", f"{percentile(late, 50):.2f} / {percentile(late, 99):.2f} s"
    )
    report.add(
        "in-flight poll interval (own GET or shared LIST), p50 / p99",
        f"{percentile(gaps, 50):.2f} / {percentile(gaps, 99):.2f} s",
        "(configured 0.5 → 1.0 s)",
    )
    report.add(
        "max switchovers running in the cloud at once",
        str(in_cloud),
        f"<= {args.cap}",
        "PASS" if in_cloud <= args.cap else "MISS",
    )
    report.add(
        "duplicate accepted os-reverse (per group > 1)",
        str(duplicates),
        "0",
        "PASS" if duplicates == 0 else "MISS",
    )
    report.add(
        "finished groups with no accepted os-reverse",
        str(len(missing) + len(unknown)),
        "0",
        "PASS" if not missing and not unknown else "MISS",
    )
    report.add("os-reverse refused by the cloud (any status ≠ 200)", str(len(refused)))
    report.add("429s received", str(throttled))
    report.add(
        "cloud requests, total / per second (mean, peak)",
        f"{len(records)} / {len(records) / elapsed:.1f}, {max(per_second.values(), default=0)}",
    )
    common.add_request_rows(
        report, common.count_records(records), "cloud requests of the evacuation", groups=done
    )
    for kind, n in purpose.most_common():
        report.add(f"  {kind}", f"{n} ({n / elapsed:.2f}/s)")
    report.add(
        "operations Succeeded (metric)",
        str(int(metrics.get('azswitch_operations_total{action="Switchover",result="Succeeded"}', 0))),
    )
    report.add("reconcile crashes (metric)", str(int(metrics.get("azswitch_reconcile_errors_total", 0))), "0")
    if tap.gaps:
        report.notes.append(f"{tap.gaps} request-log records rotated out before they were read")
    return report


if __name__ == "__main__":
    sys.exit(main())
