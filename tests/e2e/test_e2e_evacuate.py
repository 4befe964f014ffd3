"""The evacuation runbook, for real: ``deploy/evacuate.sh`` with the project's kubectl against the apiserver,
and the operator carrying it out.

What an SRE relies on at 3 a.m.: the script moves exactly the resources whose spec names the AZ being left,
in the selection given; a dry run patches nothing; a resource that Argo CD or Flux manages is refused (its
controller would put the old AZ back from Git, and azswitch would switch back); and every group moved is
switched over once.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import AZ1, AZ2, E2E, OPERATION_TIMEOUT

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "evacuate.sh"


def moved(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
    return (
        status.get("currentPrimaryAZ") == AZ2
        and (status.get("lastOperation") or {}).get("result") == "Succeeded"
        and ready.get("status") == "True"
        and status.get("observedGeneration") == obj["metadata"]["generation"]
    )


def evacuate(e2e: E2E, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            **os.environ,
            "KUBECONFIG": str(e2e.kubectl.kubeconfig),
            "KUBECTL": str(e2e.kubectl.binary),
            **env,
        },
    )


def test_evacuation_script_moves_the_selection_once_and_refuses_gitops_managed(
    e2e: E2E, ns: str, secret: str
) -> None:
    groups = {
        name: e2e.new_group(primary=AZ1) for name in ("orders-db", "payments-db", "argo-db", "stays-db")
    }
    manifests = [e2e.rg_manifest(ns, name, group, primary=AZ1) for name, group in groups.items()]
    manifests[2]["metadata"]["annotations"] = {
        "argocd.argoproj.io/tracking-id": "dbs:azswitch.io/ReplicationGroup"
    }
    manifests[3]["spec"]["primaryAZ"] = AZ2  # already on its way elsewhere: not selected
    e2e.kubectl.apply(manifests)
    for name in groups:
        e2e.wait_condition(ns, name, "Ready", "True", timeout=OPERATION_TIMEOUT)

    dry = evacuate(e2e, AZ1, AZ2, "-n", ns, DRY_RUN="1")
    assert dry.returncode == 1, dry.stderr  # one refusal
    assert "would patch" in dry.stdout and "3 matched, 0 patched, 1 refused (dry run)" in dry.stdout, (
        dry.stdout
    )
    assert all(e2e.rg(ns, name)["metadata"]["generation"] == 1 for name in groups), (
        "a dry run patches nothing"
    )

    run = evacuate(e2e, AZ1, AZ2, "-n", ns)
    assert run.returncode == 1, run.stderr
    assert f"REFUSED  {ns}/argo-db is managed by Argo CD" in run.stdout, run.stdout
    assert "3 matched, 2 patched, 1 refused" in run.stdout, run.stdout
    for name in ("orders-db", "payments-db"):
        assert f"patched  {ns}/{name}: spec.primaryAZ {AZ1} -> {AZ2}" in run.stdout
        e2e.wait_rg(ns, name, moved, f"{name} switched over to {AZ2}")
        assert e2e.sim.reverses(groups[name]) == 1
    assert e2e.rg(ns, "argo-db")["spec"]["primaryAZ"] == AZ1
    assert e2e.sim.reverses(groups["argo-db"]) == 0

    again = evacuate(e2e, AZ1, AZ2, "-n", ns, FORCE="1")
    assert again.returncode == 0, again.stderr
    assert "1 matched, 1 patched, 0 refused" in again.stdout, again.stdout
    e2e.wait_rg(ns, "argo-db", moved, f"argo-db switched over to {AZ2}")
    assert {name: e2e.sim.reverses(group) for name, group in groups.items()} == {
        "orders-db": 1,
        "payments-db": 1,
        "argo-db": 1,
        "stays-db": 1,  # it was created wanting AZ2
    }

    nothing = evacuate(e2e, AZ1, AZ2, "-n", ns)
    assert nothing.returncode == 0
    assert "nothing to do" in nothing.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param([AZ1], "usage:", id="missing-target"),
        pytest.param([AZ1, AZ1], "the same AZ", id="same-az"),
        pytest.param(["-n", "x"], "usage:", id="flags-instead-of-azs"),
        pytest.param(['az1"', AZ2], "quotes", id="quote-in-az"),
    ],
)
def test_evacuation_script_refuses_bad_arguments(e2e: E2E, args: list[str], message: str) -> None:
    result = evacuate(e2e, *args)
    assert result.returncode == 2
    assert message in result.stderr
