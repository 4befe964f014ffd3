"""Faults, crashes and restarts during many concurrent switchovers lose nothing and send nothing twice.

The worst day, in miniature and on a manual clock: several groups are flipped at once, over several rounds;
the cloud fails 20 % of calls with 5xx, drops answers after processing the request, throttles in bursts;
and the operator "dies" at random — just before or just after a status write, which is exactly where a crash
can hurt the intent journal — and restarts with nothing in memory. Afterwards, with the faults gone:

* every group is where its spec says;
* the cloud processed exactly one switchover per flip per group (the simulator's request log);
* nothing was logged at ERROR (no unhandled exception).

The seeds are fixed, so a failure reproduces; the real-process SIGKILL test lives in tests/e2e.
"""

from __future__ import annotations

import logging
from collections import Counter

import pytest
from harness import PROJECT, REVERSE, Stage, resource

GROUPS = [f"00000000-0000-0000-0000-{i:012d}" for i in range(8)]
NAMES = [f"g{i}" for i in range(len(GROUPS))]
AZS = ("az1.dc1", "az2.dc2")

FAULTS = {
    "5xx": {"errorRate": 0.2, "errorStatus": 503},
    "lost-answers": {"drop": {"count": 6, "when": "after"}, "match": {"method": "POST"}},
    "throttled": {"throttle": {"count": 10, "retryAfter": 2}},
}


def _stage(seed: int) -> Stage:
    groups = [
        {
            "projectID": PROJECT,
            "id": gid,
            "name": f"g{i}",
            "availabilityZones": list(AZS),
            "primaryAZ": AZS[0],
            "replicationStatus": "active",
        }
        for i, gid in enumerate(GROUPS)
    ]
    stage = Stage(
        groups=groups,
        timings={"switchoverSeconds": 15, "copyingSeconds": 5},
        max_concurrent_operations=3,
        max_request_attempts=6,
        lost_request_grace=30,
    )
    stage.kube.rng.seed(seed)
    for i, gid in enumerate(GROUPS):
        stage.kube.create(resource(name=f"g{i}", group=gid, primary=AZS[0]))
    return stage


def _processed_reverses(stage: Stage) -> Counter[str]:
    return Counter(r["group"] for r in stage.sim.requests() if r["action"] == REVERSE and r["status"] == 200)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_rounds_of_flips_under_faults_and_crashes(
    fault: str, seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="azswitch")
    stage = _stage(seed)
    rounds = 3
    for round_ in range(rounds):
        target = AZS[(round_ + 1) % 2]
        for i in range(len(GROUPS)):
            stage.kube.edit_spec(f"g{i}", primaryAZ=target)
        stage.sim.set_faults({**FAULTS[fault], "seed": seed * 100 + round_})
        stage.kube.crash_rate = 0.08
        await stage.run(NAMES, seconds=400)
        stage.sim.clear_faults()
        stage.kube.crash_rate = 0.0
        await stage.run(NAMES, seconds=600)
        for i in range(len(GROUPS)):
            status = stage.status(f"g{i}")
            assert status.get("currentPrimaryAZ") == target, f"g{i} round {round_}: {status}"
            assert "operation" not in status, f"g{i} round {round_} still has an operation: {status}"
            assert stage.condition("Ready", f"g{i}")["status"] == "True", status
    assert stage.kube.crashes > 0, "the run must actually have crashed somewhere"
    assert _processed_reverses(stage) == dict.fromkeys(GROUPS, rounds)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
