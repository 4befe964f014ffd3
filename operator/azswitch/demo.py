"""``azswitch demo``: the product's main job on this machine, with no cloud account.

Today it drives the cloud layer end to end: it starts the simulator on a free loopback port, reads the demo
group over signed HTTP, issues exactly one switchover and follows the group until replication is active
again, printing each state change. (The full demo with a real apiserver and the operator builds on this.)
"""

from __future__ import annotations

import asyncio
import time

from azswitch.cloud import CloudConnections
from azswitch.cloud.api import ConsistencyGroup
from azswitch.reconcile import Credentials
from azswitch.simulator import DEMO_SEED, Simulator, SimulatorServer, load_seed

PROJECT = "0123456789abcdef0123456789abcdef"
GROUP = "91085433-9499-4a68-b2c6-35072467ccd2"
REVERSE_KEY = "os-reverse-replication-consistency-group"


def _line(group: ConsistencyGroup, started: float) -> str:
    return (
        f"  t+{time.monotonic() - started:5.1f}s  status={group.status:<10} "
        f"replication={group.replication_status or '-':<8} primary={group.priority_station}"
    )


async def _cloud_demo(limit_seconds: float = 60.0) -> bool:
    seed = load_seed(DEMO_SEED)
    simulator = Simulator(seed)
    key = seed.credentials[0]
    async with SimulatorServer(simulator) as server:
        endpoint = server.url
        print(f"simulator: {endpoint} (AK {key.access_key})")
        pool = CloudConnections()
        try:
            credentials = Credentials(key.access_key, key.secret_key)
            cloud = pool.client(endpoint, PROJECT, credentials)
            group = await cloud.get_group(GROUP)
            zones = await cloud.discover_availability_zones(GROUP)
            target = next(z for z in zones if z != group.priority_station)
            print(f"group {group.name} ({GROUP}): AZs {zones}, primary {group.priority_station}")
            print(f"switching the primary to {target} (one os-reverse request) …")
            started = time.monotonic()
            await cloud.switchover(GROUP)
            last = ""
            while time.monotonic() - started < limit_seconds:
                group = await cloud.get_group(GROUP)
                line = _line(group, started)
                state = line.split("s  ", 1)[1]
                if state != last:
                    print(line, flush=True)
                    last = state
                if (
                    group.status == "available"
                    and group.replication_status == "active"
                    and group.priority_station == target
                ):
                    break
                await asyncio.sleep(0.5)
            reverses = simulator.count(
                "POST", "/v2/{project_id}/os-vendor-replication-consistency-groups/{id}/action", REVERSE_KEY
            )
            ok = group.priority_station == target and group.replication_status == "active" and reverses == 1
            print(
                f"{'done' if ok else 'FAILED'}: primary {group.priority_station}, reverse requests sent: {reverses}"
            )
            return ok
        finally:
            await pool.aclose()


def main(*, once: bool = False) -> int:
    """Run the demo; exit code 0 only when the switchover completed as expected."""
    del once  # the cloud demo is always non-interactive
    return 0 if asyncio.run(_cloud_demo()) else 1
