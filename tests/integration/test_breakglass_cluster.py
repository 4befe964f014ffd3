"""``azswitch plan``/``apply`` with a cluster reachable (a fake apiserver): credentials from the Secret the
manifest names, groups read as NAMESPACE/NAME, no split brain with a live operator (refuse unless --force),
and --force holding each group with the annotation ``azswitch.io/hold`` — never a spec write — and removing it
when done, also after a failure."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bgharness import (
    AK,
    SK,
    FakeCluster,
    Simulated,
    evs_id,
    manifest,
    mutating,
    reverses,
    run_cli,
    sdrs_id,
    seed,
    write_manifests,
)

HOLD = "azswitch.io/hold"


def secret_data() -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in {"accessKey": AK, "secretKey": SK}.items()}


def fresh_lease() -> dict[str, Any]:
    renewed = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "azswitch-leader", "namespace": "azswitch-system"},
        "spec": {"holderIdentity": "azswitch-7d9f_abc", "leaseDurationSeconds": 3600, "renewTime": renewed},
    }


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    for name in ("AZSWITCH_ACCESS_KEY", "AZSWITCH_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)


async def test_plan_by_name_reads_the_group_and_its_secret_from_the_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Simulated(seed(1, 0)) as sim, FakeCluster() as cluster:
        cluster.add_group(manifest("orders", evs_id(0), sim.url), {"groupID": evs_id(0), "phase": "Ready"})
        cluster.secrets[("payments", "cloud-credentials")] = secret_data()
        config = str(cluster.kubeconfig(tmp_path / "kubeconfig"))
        assert await run_cli("plan", "payments/orders", "--kubeconfig", config, "-o", "json") == 2
        group = json.loads(capsys.readouterr().out)["groups"][0]
        assert (group["name"], group["action"], group["desiredAZ"]) == ("orders", "Switchover", "az2.dc2")
        assert ("GET", "/api/v1/namespaces/payments/secrets/cloud-credentials", None) in cluster.requests
        assert mutating(sim.simulator) == []
        assert all(method == "GET" for method, _, _ in cluster.requests)


async def test_apply_refuses_while_an_operator_leads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Simulated(seed(1, 0)) as sim, FakeCluster() as cluster:
        body = manifest("orders", evs_id(0), sim.url)
        cluster.add_group(body)
        cluster.secrets[("payments", "cloud-credentials")] = secret_data()
        cluster.lease = fresh_lease()
        files = write_manifests(tmp_path / "groups.yaml", [body])
        argv = ["apply", "-f", str(files), "--kubeconfig", str(cluster.kubeconfig(tmp_path / "kc")), "--yes",
                "--journal", str(tmp_path / "j.jsonl")]  # fmt: skip
        assert await run_cli(*argv) == 1
        err = capsys.readouterr().err
        assert (
            "refusing to apply: an operator leads: Lease azswitch-system/azswitch-leader is held by azswitch-7d9f_abc"
            in err
        )
        assert "--force" in err
        assert mutating(sim.simulator) == []
        assert [m for m, _, _ in cluster.requests if m != "GET"] == []

        # No Lease, but an operator pod Running: it is about to lead.
        cluster.lease = None
        cluster.pods = [
            {
                "metadata": {"name": "azswitch-7d9f", "namespace": "azswitch-system"},
                "status": {"phase": "Running"},
            }
        ]
        assert await run_cli(*argv) == 1
        assert "operator pod(s) azswitch-system/azswitch-7d9f are Running" in capsys.readouterr().err
        assert mutating(sim.simulator) == []


async def test_force_holds_each_group_and_removes_the_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Simulated(seed(2, 1)) as sim, FakeCluster() as cluster:
        bodies = [
            manifest("orders", evs_id(0), sim.url),
            manifest("billing", sdrs_id(0), sim.url, service="SDRS"),
            manifest("busy", evs_id(1), sim.url),
        ]
        cluster.add_group(bodies[0], {"groupID": evs_id(0), "availabilityZones": ["az1.dc1", "az2.dc2"]})
        cluster.add_group(bodies[1])
        # The operator journaled an operation for this one: break-glass leaves it alone.
        operation = {"id": "op-1", "action": "Switchover", "state": "InProgress", "from": "az1.dc1",
                     "to": "az2.dc2", "requestedAt": "2026-01-01T00:00:00Z"}  # fmt: skip
        cluster.add_group(bodies[2], {"groupID": evs_id(1), "operation": operation})
        cluster.secrets[("payments", "cloud-credentials")] = secret_data()
        cluster.lease = fresh_lease()
        files = write_manifests(tmp_path / "groups.yaml", bodies)
        code = await run_cli(
            "apply", "-f", str(files), "--kubeconfig", str(cluster.kubeconfig(tmp_path / "kc")), "--yes",
            "--force", "--journal", str(tmp_path / "j.jsonl"),
        )  # fmt: skip
        out, err = capsys.readouterr()
        assert code == 1, out + err  # busy was refused
        assert "--force: an operator leads" in err
        assert reverses(sim.simulator) == {evs_id(0): 1, sdrs_id(0): 1}
        patches = [(path, body) for method, path, body in cluster.requests if method != "GET"]
        assert all(method in ("GET", "PATCH") for method, _, _ in cluster.requests)
        # Only metadata, never the spec (Git's) or the status (the operator's).
        assert all(set(body) == {"metadata"} for _, body in patches)
        set_paths = [p for p, body in patches if body["metadata"]["annotations"][HOLD] is not None]
        cleared = [p for p, body in patches if body["metadata"]["annotations"][HOLD] is None]
        assert sorted(set_paths) == sorted(cleared)
        assert {p.rsplit("/", 1)[1] for p in set_paths} == {"orders", "billing"}
        values = {body["metadata"]["annotations"][HOLD] for _, body in patches} - {None}
        assert len(values) == 1 and " via azswitch apply since " in values.pop()
        for name in ("orders", "billing", "busy"):
            assert HOLD not in cluster.annotations("payments", name)
        assert cluster.groups[("payments", "orders")]["spec"]["primaryAZ"] == "az2.dc2"
        assert "Refused" in out and "op-1" in out


async def test_the_hold_is_removed_when_apply_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Simulated(seed(1, 0)) as sim, FakeCluster() as cluster:
        body = manifest("orders", evs_id(0), sim.url)
        cluster.add_group(body)
        cluster.secrets[("payments", "cloud-credentials")] = secret_data()
        sim.simulator.fail_next(evs_id(0), "reverse")
        files = write_manifests(tmp_path / "groups.yaml", [body])
        code = await run_cli(
            "apply", "-f", str(files), "--kubeconfig", str(cluster.kubeconfig(tmp_path / "kc")), "--yes",
            "--journal", str(tmp_path / "j.jsonl"), "--timeout", "60s",
        )  # fmt: skip
        out, err = capsys.readouterr()
        assert code == 1, out + err
        assert "Failed" in out
        holds = [body for method, _, body in cluster.requests if method == "PATCH"]
        assert len(holds) == 2 and holds[-1]["metadata"]["annotations"][HOLD] is None
        assert HOLD not in cluster.annotations("payments", "orders")


async def test_by_name_needs_the_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "kubeconfig"
    missing.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    assert await run_cli("plan", "payments/orders", "--kubeconfig", str(missing)) == 1
    err = capsys.readouterr().err
    assert "NAMESPACE/NAME and -A read the cluster, which is not reachable" in err and "-f FILE" in err
    _ = timedelta
