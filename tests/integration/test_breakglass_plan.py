"""``azswitch plan`` against the simulator over real HTTP: the table, JSON and YAML; the exit codes (0 nothing
to do, 2 changes planned, 1 an error); and no mutating request, ever (the simulator's request log)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from bgharness import (
    AZ1,
    AZ2,
    Simulated,
    evs_id,
    fleet,
    manifest,
    mutating,
    run_cli,
    sdrs_id,
    seed,
    write_credentials,
    write_manifests,
)


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    for name in ("AZSWITCH_ACCESS_KEY", "AZSWITCH_SECRET_KEY", "AZSWITCH_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)


async def test_plan_table_shows_every_group_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = seed(3, 1, evs_fields={2: {"replicationStatus": "active-stopped"}})
    async with Simulated(document) as sim:
        groups = fleet(sim.url, 3, 1)
        groups[1]["spec"]["primaryAZ"] = AZ1  # already there
        files = write_manifests(tmp_path / "groups.yaml", groups)
        code = await run_cli(
            "plan", "-f", str(files), "--credentials", str(write_credentials(tmp_path / "c.env"))
        )
        out, err = capsys.readouterr()
        assert code == 2, err
        assert "no cluster reachable" in err
        lines = out.splitlines()
        assert lines[0].split() == ["GROUP", "SERVICE", "CURRENT", "DESIRED", "ACTION", "STATUS"]
        assert "payments/evs-0" in out and "Switchover  will change" in out
        assert any(
            line.startswith("payments/evs-1") and "None" in line and "in sync" in line for line in lines
        )
        assert any(line.startswith("payments/evs-2") and "blocked" in line for line in lines)
        assert "SwitchoverImpossible (Blocked)" in out and "active-stopped" in out
        assert any(
            line.startswith("payments/sdrs-0") and "SDRS" in line and "will change" in line for line in lines
        )
        assert lines[-1] == "4 groups: 2 will change, 1 in sync, 1 blocked"
        assert mutating(sim.simulator) == []


async def test_plan_json_and_yaml_and_exit_0_when_in_sync(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Simulated(seed(1, 1)) as sim:
        files = write_manifests(tmp_path / "groups.yaml", fleet(sim.url, 1, 1, primary=AZ1))
        credentials = str(write_credentials(tmp_path / "c.env"))
        assert await run_cli("plan", "-f", str(files), "--credentials", credentials, "-o", "json") == 0
        data = json.loads(capsys.readouterr().out)
        assert [g["name"] for g in data["groups"]] == ["evs-0", "sdrs-0"]
        evs = data["groups"][0]
        assert evs["groupID"] == evs_id(0) and evs["service"] == "EVS"
        assert evs["currentAZ"] == AZ1 and evs["desiredAZ"] == AZ1 and evs["action"] == "None"
        assert evs["availabilityZones"] == [AZ1, AZ2] and evs["blockers"] == [] and evs["changes"] is False
        assert evs["reason"] == "InSync"

        files = write_manifests(tmp_path / "groups.yaml", fleet(sim.url, 1, 1))
        assert await run_cli("plan", "-f", str(files), "--credentials", credentials, "-o", "yaml") == 2
        data = yaml.safe_load(capsys.readouterr().out)
        sdrs = data["groups"][1]
        assert sdrs["groupID"] == sdrs_id(0) and sdrs["action"] == "Switchover"
        assert (sdrs["currentAZ"], sdrs["desiredAZ"]) == (AZ1, AZ2) and sdrs["changes"] is True
        assert mutating(sim.simulator) == []


async def test_plan_shows_every_gate_and_approve_clears_manual(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Simulated(seed(2, 0)) as sim:
        groups = [
            manifest("manual", evs_id(0), sim.url, switchover={"approval": "Manual"}),
            manifest("dry", evs_id(1), sim.url, dryRun=True),
        ]
        files = write_manifests(tmp_path / "groups.yaml", groups)
        credentials = str(write_credentials(tmp_path / "c.env"))
        assert await run_cli("plan", "-f", str(files), "--credentials", credentials, "-o", "json") == 2
        data = json.loads(capsys.readouterr().out)
        reasons = {g["name"]: [b["reason"] for b in g["blockers"]] for g in data["groups"]}
        assert reasons == {"manual": ["AwaitingApproval"], "dry": ["DryRun"]}
        assert "azswitch.io/approve=1" in data["groups"][0]["blockers"][0]["message"]

        assert (
            await run_cli("plan", "-f", str(files), "--credentials", credentials, "-o", "json", "--approve")
            == 2
        )
        data = json.loads(capsys.readouterr().out)
        assert data["groups"][0]["blockers"] == []
        assert mutating(sim.simulator) == []


async def test_plan_exits_1_on_a_cloud_error_and_names_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Simulated(seed(1, 0)) as sim:
        groups = [
            manifest("evs-0", evs_id(0), sim.url),
            manifest("ghost", "00000000-dead-4000-8000-000000000000", sim.url),
        ]
        files = write_manifests(tmp_path / "groups.yaml", groups)
        code = await run_cli(
            "plan", "-f", str(files), "--credentials", str(write_credentials(tmp_path / "c.env"))
        )
        out, _ = capsys.readouterr()
        assert code == 1
        assert "payments/ghost" in out and "error: GroupNotFound" in out and "fix: check spec.groupID" in out
        assert mutating(sim.simulator) == []


async def test_plan_reads_stdin_and_credentials_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import sys

    from bgharness import AK, SK

    async with Simulated(seed(1, 0)) as sim:
        text = yaml.safe_dump_all(fleet(sim.url, 1, 0))
        monkeypatch.setattr(sys, "stdin", io.StringIO(text))
        monkeypatch.setenv("AZSWITCH_ACCESS_KEY", AK)
        monkeypatch.setenv("AZSWITCH_SECRET_KEY", SK)
        assert await run_cli("plan", "-f", "-", "-o", "json") == 2
        assert json.loads(capsys.readouterr().out)["groups"][0]["action"] == "Switchover"
