"""``azswitch apply`` against the simulator over real HTTP, with no cluster: every group moved exactly once
(one reverse request per group in the simulator's request log), the cap on operations in flight held, and an
apply killed (SIGKILL) or interrupted (SIGINT) mid-way, rerun with the same journal, sends no second request
for any group and ends with exit 0. Both backends in each run. No timed assertions: waits poll for a state
(journal record, process exit) with a generous bound only against a hang.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from bgharness import (
    AZ2,
    Simulated,
    evs_id,
    fleet,
    journal_records,
    python_command,
    reverses,
    run_cli,
    sdrs_id,
    seed,
    write_credentials,
    write_manifests,
)

from azswitch.reconcile.slots import OperationSlots

HANG = 120.0  # seconds: only against a hang, never a measurement


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def primaries(sim: Simulated) -> dict[str, str]:
    return {g["id"]: g["primaryAZ"] for g in sim.simulator.describe()["groups"]}


async def test_apply_switches_20_groups_once_each_within_the_cap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    peak = 0
    acquire = OperationSlots.try_acquire
    adopt = OperationSlots.adopt

    def counting_acquire(self: OperationSlots, key: str) -> bool:
        nonlocal peak
        taken = acquire(self, key)
        peak = max(peak, self.in_use)
        return taken

    def counting_adopt(self: OperationSlots, key: str) -> None:
        nonlocal peak
        adopt(self, key)
        peak = max(peak, self.in_use)

    monkeypatch.setattr(OperationSlots, "try_acquire", counting_acquire)
    monkeypatch.setattr(OperationSlots, "adopt", counting_adopt)
    evs, sdrs = 16, 4
    async with Simulated(seed(evs, sdrs, switchover=1.0, copying=0.5)) as sim:
        files = write_manifests(tmp_path / "groups.yaml", fleet(sim.url, evs, sdrs))
        journal = tmp_path / "journal.jsonl"
        code = await run_cli(
            "apply", "-f", str(files), "--credentials", str(write_credentials(tmp_path / "c.env")),
            "--journal", str(journal), "--yes", "--max-concurrent", "5", "--rate-limit", "50",
        )  # fmt: skip
        out, err = capsys.readouterr()
        assert code == 0, out + err
        every = [evs_id(i) for i in range(evs)] + [sdrs_id(i) for i in range(sdrs)]
        assert reverses(sim.simulator) == dict.fromkeys(every, 1)
        assert set(primaries(sim).values()) == {AZ2}
        assert 1 < peak <= 5
        # Cloud side too: a group is in flight for at least switchoverSeconds after its request, so at no
        # request were more than five requests younger than that (the simulator's own clock).
        sent = sorted(
            r["time"] for r in sim.simulator.requests() if r["method"] == "POST" and r["action"] is not None
        )
        assert all(sum(1 for t in sent if s - 1.0 < t <= s) <= 5 for s in sent)
        assert out.splitlines()[-1] == "20 groups: 20 Succeeded"
        assert err.count("SwitchoverStarted") == 20 and err.count("SwitchoverSucceeded") == 20
        # The journal: the intent (Requested) of every group was written before its request.
        requested = {
            r["key"]
            for r in journal_records(journal)
            if (r["status"].get("operation") or {}).get("state") == "Requested"
        }
        assert len(requested) == 20

        # A second apply finds nothing to do and sends nothing.
        assert (
            await run_cli(
                "apply",
                "-f",
                str(files),
                "--credentials",
                str(tmp_path / "c.env"),
                "--journal",
                str(journal),
                "--yes",
            )
            == 0
        )
        assert reverses(sim.simulator) == dict.fromkeys(every, 1)
        assert capsys.readouterr().out.splitlines()[-1] == "20 groups: 20 InSync"


async def _wait_for_operation(journal: Path, process: asyncio.subprocess.Process) -> None:
    """Until the journal shows an operation Requested or InProgress (the apply is mid-way)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HANG
    while loop.time() < deadline:
        for record in journal_records(journal):
            operation = record["status"].get("operation") or {}
            if operation.get("state") in ("Requested", "InProgress"):
                return
        assert process.returncode is None, "apply ended before it started an operation"
        await asyncio.sleep(0.02)
    raise AssertionError("no operation journaled")


def _in_flight(journal: Path) -> dict[str, Mapping[str, Any]]:
    last: dict[str, Mapping[str, Any]] = {}
    for record in journal_records(journal):
        last[record["key"]] = record["status"]
    return {k: s["operation"] for k, s in last.items() if isinstance(s.get("operation"), Mapping)}


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
async def test_an_interrupted_apply_resumes_by_observing(
    how: signal.Signals, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    evs, sdrs = 4, 2
    async with Simulated(seed(evs, sdrs, switchover=2.0, copying=0.5)) as sim:
        files = write_manifests(tmp_path / "groups.yaml", fleet(sim.url, evs, sdrs))
        credentials = str(write_credentials(tmp_path / "c.env"))
        journal = tmp_path / "journal.jsonl"
        argv = ["apply", "-f", str(files), "--credentials", credentials, "--journal", str(journal), "--yes",
                "--max-concurrent", "2"]  # fmt: skip
        env = {**os.environ, "KUBECONFIG": "/nonexistent/kubeconfig"}
        process = await asyncio.create_subprocess_exec(
            *python_command(*argv), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        await _wait_for_operation(journal, process)
        process.send_signal(how)
        stdout, stderr = await asyncio.wait_for(process.communicate(), HANG)
        first = reverses(sim.simulator)
        assert all(n == 1 for n in first.values()), first
        if how is signal.SIGINT:
            # Each group finished the step it was on; what is in flight is named, with how to resume.
            assert process.returncode == 130, stderr.decode()
            assert "interrupted" in stderr.decode()
            in_flight = _in_flight(journal)
            assert in_flight, "interrupted before any operation was in flight"
            assert all(op["state"] == "InProgress" for op in in_flight.values())
            assert "Interrupted" in stdout.decode() and "to resume it by observing" in stdout.decode()
        else:
            assert process.returncode == -signal.SIGKILL

        # Rerun with the same journal. A request journaled but never sent (killed between the two) waits
        # out the lost-request grace before it is sent, so shorten it for the test.
        monkeypatch.setenv("AZSWITCH_LOST_REQUEST_GRACE", "3")
        capsys.readouterr()
        code = await run_cli(*argv)
        out, err = capsys.readouterr()
        assert code == 0, out + err
        every = [evs_id(i) for i in range(evs)] + [sdrs_id(i) for i in range(sdrs)]
        assert reverses(sim.simulator) == dict.fromkeys(every, 1)
        assert set(primaries(sim).values()) == {AZ2}
        resumed = [line for line in err.splitlines() if "resumed by observing, never re-sent" in line]
        assert resumed, err
        assert "RequestResent" not in err or how is signal.SIGKILL
        assert out.splitlines()[-1].endswith("Succeeded") or "InSync" in out.splitlines()[-1]


async def test_apply_refuses_a_journal_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import fcntl

    async with Simulated(seed(1, 0)) as sim:
        files = write_manifests(tmp_path / "groups.yaml", fleet(sim.url, 1, 0))
        journal = tmp_path / "journal.jsonl"
        with journal.open("a") as held:
            fcntl.flock(held.fileno(), fcntl.LOCK_EX)
            code = await run_cli(
                "apply", "-f", str(files), "--credentials", str(write_credentials(tmp_path / "c.env")),
                "--journal", str(journal), "--yes",
            )  # fmt: skip
        assert code == 1
        assert "is locked by another azswitch apply" in capsys.readouterr().err
        assert reverses(sim.simulator) == {}


async def test_apply_json_summary_and_blocked_groups_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Simulated(seed(2, 0, evs_fields={1: {"replicationStatus": "active-stopped"}})) as sim:
        files = write_manifests(tmp_path / "groups.yaml", fleet(sim.url, 2, 0))
        code = await run_cli(
            "apply", "-f", str(files), "--credentials", str(write_credentials(tmp_path / "c.env")),
            "--journal", str(tmp_path / "j.jsonl"), "--yes", "-o", "json",
        )  # fmt: skip
        out, _ = capsys.readouterr()
        assert code == 1
        results = {g["name"]: g["result"] for g in json.loads(out)["groups"]}
        assert results == {"evs-0": "Succeeded", "evs-1": "Blocked"}
        assert reverses(sim.simulator) == {evs_id(0): 1}
