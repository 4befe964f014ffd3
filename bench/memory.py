"""Memory per group: where the operator's bytes go, by component, measured with ``tracemalloc``.

Why: B2 measures RSS from the outside; this says whose bytes they are (kopf's per-object state, our caches,
the resource bodies, the kubernetes client, pydantic records), so that what is ours to cut can be cut and
what is not is known.

What runs: the control plane and the simulator as in B2; one operator with Python's own allocation tracing
on (``PYTHONTRACEMALLOC=1``), which makes ``azswitch run`` trace 16 frames deep from SIGUSR2 on and write
a tracemalloc snapshot on SIGUSR1 (``azswitch.runtime.install_tracemalloc_dump``). Snapshot A: the
operator idle with no resources, just after SIGUSR2 (so import-time allocations are not traced). Then
``--groups`` resources are created and adopted (raised client-side rate limit, as B2's adoption), the
operator is left idle for ``--idle`` seconds (with ``AZSWITCH_RESYNC_INTERVAL`` = ``--resync``, so a drift
check of every group has run), and snapshot B is taken. B - A, grouped by the newest frame of each
allocation's traceback that is not the standard library, and divided by N, is the cost per group.
Allocation site is not owner: bodies decoded by kopf's watch stream are kept by the work queue, for
instance; the table names who keeps what where the code says so. Tracing itself roughly doubles RSS, so
RSS here is not comparable with B2's.

Also: the deep size (``sys.getsizeof`` over the whole tree) of one resource body as the watch delivers it,
with and without ``metadata.managedFields``.

    .venv/bin/python bench/memory.py [--groups 1000] [--idle 70] [--top 25]
"""

from __future__ import annotations

import collections
import os
import signal
import sys
import time
import tracemalloc
from collections.abc import Iterable
from typing import Any

import common
from common import Bench, Report

from azswitch.runtime import TRACEMALLOC_FRAMES, tracemalloc_snapshot_path

STDLIB = os.path.dirname(os.__file__)

#: (path fragment, component) — the first that matches the newest non-stdlib frame names the component.
COMPONENTS = [
    ("azswitch/reconcile/listing.py", "ours: GroupCache (reconcile/listing.py)"),
    ("azswitch/controller.py", "ours: work queue (controller.py)"),
    ("azswitch/metrics.py", "ours: metrics (metrics.py)"),
    ("prometheus_client/", "prometheus_client (our metrics' label sets)"),
    ("azswitch/cloud/", "ours: cloud records and clients (cloud/)"),
    ("azswitch/reconcile/", "ours: reconciler (reconcile/)"),
    ("azswitch/", "ours: other"),
    ("kopf/_cogs/clients/api.py", "resource bodies, decoded by kopf's watch (kept by the work queue)"),
    ("kopf/_core/reactor/inventory.py", "kopf: per-object memory (ResourceMemory)"),
    ("kopf/_core/reactor/queueing.py", "kopf: per-object streams (queueing)"),
    ("kopf/_core/reactor/", "kopf: reactor, other"),
    ("kopf/_core/engines/", "kopf: engines (daemons, indexing, probes)"),
    ("kopf/", "kopf: other"),
    ("kubernetes/", "kubernetes client (models, deserialisation)"),
    ("pydantic", "pydantic"),
    ("httpx/", "httpx"),
    ("httpcore/", "httpx"),
    ("aiohttp/", "aiohttp (kopf's HTTP client)"),
]


def site(frames: Iterable[tracemalloc.Frame]) -> tracemalloc.Frame | None:
    """The newest frame that is not the standard library (tracemalloc orders oldest → newest)."""
    last = None
    for frame in reversed(list(frames)):
        last = frame
        if not frame.filename.startswith(STDLIB) or "site-packages" in frame.filename:
            return frame
    return last


def component(frame: tracemalloc.Frame | None) -> str:
    if frame is None:
        return "unknown"
    name = frame.filename.replace(os.sep, "/")
    for fragment, label in COMPONENTS:
        if fragment in name:
            return label
    if name.startswith(STDLIB):
        return "standard library (no caller outside it)"
    return "other: " + "/".join(name.split("/")[-2:])


def short(frame: tracemalloc.Frame | None) -> str:
    if frame is None:
        return "?"
    name = frame.filename.replace(os.sep, "/")
    for marker in ("site-packages/", "/operator/", "/lib/python3"):
        if marker in name:
            name = name.split(marker, 1)[1]
            break
    return f"{name}:{frame.lineno}"


def deep_size(obj: Any, seen: set[int] | None = None) -> int:
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, list | tuple | set):
        size += sum(deep_size(v, seen) for v in obj)
    return size


def main() -> int:
    parser = common.base_parser(__doc__.splitlines()[0], timeout=1800)
    parser.add_argument("--groups", type=int, default=1000, help="ReplicationGroups (default 1000)")
    parser.add_argument("--projects", type=int, default=1, help="cloud projects (default 1)")
    parser.add_argument("--idle", type=float, default=70, help="idle seconds before snapshot B (default 70)")
    parser.add_argument("--resync", type=float, default=60, help="AZSWITCH_RESYNC_INTERVAL (default 60)")
    parser.add_argument("--top", type=int, default=25, help="allocation sites listed (default 25)")
    common.add_adoption_arguments(parser)
    args = parser.parse_args()
    return common.run("mem", args, lambda bench: profile(bench, args))


def snapshot(bench: Bench, pid: int) -> tracemalloc.Snapshot:
    path = tracemalloc_snapshot_path(pid)
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    bench.wait_until(lambda: (path.exists(), "not yet"), "the tracemalloc snapshot", timeout=120, every=10)
    snap = tracemalloc.Snapshot.load(str(path))
    path.unlink()
    return snap


def profile(bench: Bench, args: Any) -> Report:
    fleet = common.make_fleet(bench.namespace, args.groups, args.projects, args.service)
    bench.up(fleet, {})
    assert bench.kube is not None
    watcher = bench.watch(fleet.namespace)
    rate = f"{args.adopt_rate_limit:g}"
    settings = bench.operator_settings(
        rate_limit=rate, rate_burst=str(int(args.adopt_rate_limit)), resync_interval=f"{args.resync:g}"
    )
    settings["PYTHONTRACEMALLOC"] = "1"
    operator = bench.start_operator(settings)
    time.sleep(3.0)
    os.kill(operator.pid, signal.SIGUSR2)  # from here on: 16 frames per allocation
    time.sleep(2.0)
    rss_empty = common.proc_sample(operator.pid)
    before = snapshot(bench, operator.pid)
    bench.progress(
        f"snapshot A (no resources): {sum(s.size for s in before.statistics('filename')) / 1e6:.1f} MB"
    )
    bench.create_resources(fleet)
    bench.wait_all_ready(watcher, args.groups, timeout=120 + args.groups * 1.5)
    bench.progress(f"all Ready; idle for {args.idle:.0f} s (a drift check of every group runs meanwhile)")
    deadline = time.monotonic() + args.idle
    while time.monotonic() < deadline:
        bench.check_processes()
        time.sleep(min(10.0, max(0.0, deadline - time.monotonic())))
    rss_full = common.proc_sample(operator.pid)
    after = snapshot(bench, operator.pid)
    body = bench.kube.request("GET", bench.kube.rg_path(fleet.namespace, fleet.members[0].name))

    filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
    before, after = before.filter_traces(filters), after.filter_traces(filters)
    diff = after.compare_to(before, "traceback")
    by_component: collections.Counter[str] = collections.Counter()
    by_site: collections.Counter[str] = collections.Counter()
    blocks: collections.Counter[str] = collections.Counter()
    for stat in diff:
        frame = site(stat.traceback)
        by_component[component(frame)] += stat.size_diff
        by_site[f"{short(frame)}  [{component(frame)}]"] += stat.size_diff
        blocks[component(frame)] += stat.count_diff
    total = sum(by_component.values())
    n = args.groups

    report = bench.report(f"Memory per group — {n} idle ReplicationGroups, tracemalloc")
    report.setup.update(
        {
            "scenario": f"{n} {fleet.service} groups, {args.projects} project(s); snapshot A idle with none, "
            f"B after adoption + {args.idle:.0f} s idle (AZSWITCH_RESYNC_INTERVAL={args.resync:g})",
            "tracing": f"PYTHONTRACEMALLOC=1, {TRACEMALLOC_FRAMES} frames from SIGUSR2 on; a component is the "
            "newest frame outside the standard library",
        }
    )
    report.add(
        "traced Python heap, A → B",
        f"{sum(s.size for s in before.statistics('filename')) / 1e6:.1f} → "
        f"{sum(s.size for s in after.statistics('filename')) / 1e6:.1f} MB",
    )
    report.add("  growth per group", f"{total / n:,.0f} B")
    if rss_empty and rss_full:
        report.add("RSS A → B (with tracing overhead)", f"{rss_empty.rss_mb:.0f} → {rss_full.rss_mb:.0f} MB")
        report.add(
            "  RSS growth per group (with tracing overhead)",
            f"{(rss_full.rss_mb - rss_empty.rss_mb) * 2**20 / n:,.0f} B",
        )
    for label, size in by_component.most_common():
        if abs(size) / n >= 20:
            report.add(f"  {label}", f"{size / n:,.0f} B/group", f"{blocks[label] / n:.1f} blocks/group")
    report.add("one body as the watch delivers it (deep getsizeof)", f"{deep_size(body):,} B")
    trimmed = {**body, "metadata": {k: v for k, v in body["metadata"].items() if k != "managedFields"}}
    report.add("  without metadata.managedFields", f"{deep_size(trimmed):,} B")
    report.add("  of which status", f"{deep_size(body.get('status')):,} B")
    for line, size in by_site.most_common(args.top):
        report.notes.append(f"{size / n:8,.0f} B/group  {line}")
    return report


if __name__ == "__main__":
    sys.exit(main())
