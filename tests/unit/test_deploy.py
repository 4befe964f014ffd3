"""The deployment manifests under deploy/ (and the Dockerfile) hold what the issue asks of them.

The checks read the source YAML directly so they run everywhere; when a kustomize binary is available
(``kustomize`` or ``kubectl kustomize``) the base and the overlay are also rendered and the rendered output is
checked, which is what a cluster would receive. Rules are compared with exact tables: widening RBAC — a new
verb, resource or wildcard — must fail here and be argued for in review. The samples are validated against
the CRD's openAPIV3Schema with a small validator (no jsonschema dependency), and against the models.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from schema import admit

from azswitch.models import ReplicationGroupSpec
from azswitch.settings import LogFormat, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "base"
OVERLAY = DEPLOY / "overlays" / "namespaced"
CRD_PATH = ROOT / "crds" / "replicationgroups.azswitch.io.yaml"
SAMPLES = DEPLOY / "samples"

NAMESPACE = "azswitch-system"
SERVICE_ACCOUNT = "azswitch"
LIVENESS = "http://0.0.0.0:8081/healthz"

# (apiGroup, resource) -> verbs. Each entry is argued for in deploy/base/rbac.yaml.
OPERATOR_RULES: dict[tuple[str, str], frozenset[str]] = {
    ("azswitch.io", "replicationgroups"): frozenset({"list", "watch"}),  # kopf's watcher
    ("azswitch.io", "replicationgroups/status"): frozenset({"patch"}),  # kube.py patch_status
    ("", "events"): frozenset({"create"}),  # kube.py post_event (core/v1)
    ("", "secrets"): frozenset({"get"}),  # kube.py read_secret; never list/watch
}
CRD_OBSERVER_RULES: dict[tuple[str, str], frozenset[str]] = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): frozenset({"list", "watch"}),  # kopf's observer
}
# ZoneDrains (cluster-scoped): read in every install mode; their status written only by a cluster-wide one.
DRAIN_READER_RULES: dict[tuple[str, str], frozenset[str]] = {
    ("azswitch.io", "zonedrains"): frozenset({"list", "watch"}),  # kopf's watcher
    ("", "namespaces"): frozenset({"get"}),  # zonedrains.py: labels for a drain's namespaceSelector
}
DRAIN_STATUS_RULES: dict[tuple[str, str], frozenset[str]] = {
    ("azswitch.io", "zonedrains/status"): frozenset({"patch"}),  # zonedrains.py DrainStatusWriter
}
CLUSTER_ROLES = {
    "azswitch": OPERATOR_RULES,
    "azswitch-crd-observer": CRD_OBSERVER_RULES,
    "azswitch-drain-reader": DRAIN_READER_RULES,
    "azswitch-drain-status": DRAIN_STATUS_RULES,
}
# Leader election, a Role in the operator's namespace only: (apiGroup, resource, resourceNames) -> verbs.
# get/update only on the one Lease name; create cannot be restricted by name; no cluster-wide lease rights.
LEADER_ELECTION_ROLE = "azswitch-leader-election"
LEASE_NAME = "azswitch-leader"
LEADER_ELECTION_RULES: dict[tuple[str, str, tuple[str, ...]], frozenset[str]] = {
    ("coordination.k8s.io", "leases", ()): frozenset({"create"}),  # leader.py: the first replica creates it
    ("coordination.k8s.io", "leases", (LEASE_NAME,)): frozenset({"get", "update"}),  # acquire/renew/release
    ("", "events", ()): frozenset({"create"}),  # leader.py: "X became leader" on the Lease
}
# Only the namespaced overlay: kopf lists/watches namespaces in namespaced mode (see its rbac.yaml).
NAMESPACE_OBSERVER_RULES: dict[tuple[str, str], frozenset[str]] = {
    ("", "namespaces"): frozenset({"list", "watch"}),
}
OVERLAY_CLUSTER_ROLES = {
    "azswitch-crd-observer": CRD_OBSERVER_RULES,
    "azswitch-drain-reader": DRAIN_READER_RULES,
    "azswitch-namespace-observer": NAMESPACE_OBSERVER_RULES,
}


# --- loading ------------------------------------------------------------------------------------------------


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def yaml_files() -> list[Path]:
    return sorted(DEPLOY.rglob("*.yaml"))


def find(docs: list[dict[str, Any]], kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    matches = [
        doc
        for doc in docs
        if doc.get("kind") == kind
        and doc["metadata"]["name"] == name
        and (namespace is None or doc["metadata"].get("namespace") == namespace)
    ]
    assert len(matches) == 1, f"expected one {kind} {namespace or ''}/{name}, found {len(matches)}"
    return matches[0]


def base_docs() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(BASE.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in load_all(path)
    ]


def deployment() -> dict[str, Any]:
    return find(load_all(BASE / "deployment.yaml"), "Deployment", "azswitch")


def container() -> dict[str, Any]:
    containers = deployment()["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def rules_table(rules: list[Mapping[str, Any]]) -> dict[tuple[str, str], frozenset[str]]:
    """Rules as (apiGroup, resource) -> verbs; fails on anything the table cannot express exactly."""
    table: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                table.setdefault((group, resource), set()).update(rule["verbs"])
    return {key: frozenset(verbs) for key, verbs in table.items()}


def named_rules_table(
    rules: list[Mapping[str, Any]],
) -> dict[tuple[str, str, tuple[str, ...]], frozenset[str]]:
    """Like ``rules_table``, keyed by resourceNames too (``()``: any name)."""
    table: dict[tuple[str, str, tuple[str, ...]], set[str]] = {}
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "resourceNames", "verbs"}, f"unexpected fields: {rule}"
        names = tuple(sorted(rule.get("resourceNames", [])))
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                table.setdefault((group, resource, names), set()).update(rule["verbs"])
    return {key: frozenset(verbs) for key, verbs in table.items()}


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, Mapping):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def option(args: list[str], name: str) -> list[str]:
    """Values of ``--name=value`` and ``--name value`` in ``args``."""
    values = []
    for index, arg in enumerate(args):
        if arg.startswith(f"{name}="):
            values.append(arg.split("=", 1)[1])
        elif arg == name and index + 1 < len(args):
            values.append(args[index + 1])
    return values


# --- every file ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", yaml_files(), ids=lambda path: str(path.relative_to(DEPLOY)))
def test_every_yaml_parses_into_kubernetes_objects(path: Path) -> None:
    docs = load_all(path)
    assert docs, f"{path} is empty"
    for doc in docs:
        assert doc.get("apiVersion") and doc.get("kind"), f"{path}: a document without apiVersion/kind"


@pytest.mark.parametrize("path", yaml_files(), ids=lambda path: str(path.relative_to(DEPLOY)))
def test_no_wildcards_anywhere_in_rbac(path: Path) -> None:
    for doc in load_all(path):
        for rule in doc.get("rules", []) if doc.get("kind") in ("Role", "ClusterRole") else []:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(field, []), f"{path}: wildcard in {field}: {rule}"


def test_the_base_includes_the_crd_through_crds_kustomization() -> None:
    base = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert "../../crds" in base["resources"]
    assert base["namespace"] == NAMESPACE
    crds = yaml.safe_load((ROOT / "crds" / "kustomization.yaml").read_text())
    assert crds["resources"] == [CRD_PATH.name, "zonedrains.azswitch.io.yaml"]
    top = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert top["resources"] == ["base"]


def test_namespace() -> None:
    namespace = find(load_all(BASE / "namespace.yaml"), "Namespace", NAMESPACE)
    # The Deployment meets "restricted"; enforcing it keeps it that way.
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# --- the Deployment -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("spec.replicas", 2, id="two-replicas"),
        pytest.param("spec.strategy.type", "RollingUpdate", id="rolling-update"),
        # Never below two running replicas during a rollout: a standby is always there (deployment.yaml).
        pytest.param("spec.strategy.rollingUpdate.maxUnavailable", 0, id="max-unavailable-0"),
        pytest.param("spec.strategy.rollingUpdate.maxSurge", 1, id="max-surge-1"),
        pytest.param("spec.template.spec.serviceAccountName", SERVICE_ACCOUNT, id="service-account"),
        pytest.param("spec.template.spec.enableServiceLinks", False, id="no-service-links"),
        pytest.param("spec.template.spec.securityContext.runAsNonRoot", True, id="pod-non-root"),
        pytest.param(
            "spec.template.spec.securityContext.seccompProfile.type", "RuntimeDefault", id="pod-seccomp"
        ),
        pytest.param("container.securityContext.runAsNonRoot", True, id="container-non-root"),
        pytest.param("container.securityContext.readOnlyRootFilesystem", True, id="read-only-root"),
        pytest.param(
            "container.securityContext.allowPrivilegeEscalation", False, id="no-privilege-escalation"
        ),
        pytest.param("container.securityContext.privileged", False, id="not-privileged"),
        pytest.param("container.securityContext.capabilities.drop", ["ALL"], id="drop-all-capabilities"),
        pytest.param(
            "container.securityContext.seccompProfile.type", "RuntimeDefault", id="container-seccomp"
        ),
        pytest.param("container.image", "azswitch:latest", id="image"),
    ],
)
def test_deployment_field(path: str, expected: object) -> None:
    node: Any = {**deployment(), "container": container()}
    for part in path.split("."):
        node = node[part]
    assert node == expected


def test_runs_as_a_numeric_non_root_user() -> None:
    pod = deployment()["spec"]["template"]["spec"]["securityContext"]
    assert isinstance(pod["runAsUser"], int) and pod["runAsUser"] > 0
    assert isinstance(pod["runAsGroup"], int) and pod["runAsGroup"] > 0


def test_resources_have_requests_and_limits() -> None:
    resources = container()["resources"]
    for kind in ("requests", "limits"):
        assert set(resources[kind]) == {"cpu", "memory"}, kind
    assert resources["requests"] == {"cpu": "50m", "memory": "128Mi"}
    assert resources["limits"] == {"cpu": "500m", "memory": "512Mi"}


def test_args_are_valid_for_the_cli() -> None:
    from azswitch.cli import _parser

    args = _parser().parse_args(["run", *container()["args"]])
    assert args.all_namespaces
    assert args.liveness == LIVENESS
    assert args.leader_elect is True
    # The Lease name is the default, the one name the Role grants get/update on.
    assert args.leader_election_id is None
    assert Settings.model_fields["leader_election_id"].default == LEASE_NAME


def test_pod_name_and_namespace_come_from_the_downward_api() -> None:
    env = {item["name"]: item for item in container()["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


@pytest.mark.parametrize(
    "key", ["topology.kubernetes.io/zone", "kubernetes.io/hostname"], ids=["zones", "nodes"]
)
def test_replicas_spread_over_zones_and_nodes_but_always_schedule(key: str) -> None:
    spec = deployment()["spec"]
    constraints = {c["topologyKey"]: c for c in spec["template"]["spec"]["topologySpreadConstraints"]}
    assert set(constraints) == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    constraint = constraints[key]
    assert constraint["maxSkew"] == 1
    # ScheduleAnyway: a single-zone (or single-node) cluster still runs both replicas.
    assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"
    assert constraint["labelSelector"] == {"matchLabels": spec["selector"]["matchLabels"]}


def test_a_disruption_budget_keeps_one_replica() -> None:
    pdb = find(load_all(BASE / "pdb.yaml"), "PodDisruptionBudget", "azswitch")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 1 and "maxUnavailable" not in pdb["spec"]
    assert pdb["spec"]["selector"] == deployment()["spec"]["selector"]
    base = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert "pdb.yaml" in base["resources"]


@pytest.mark.parametrize("probe", ["livenessProbe", "readinessProbe"])
def test_probes_hit_kopfs_health_endpoint(probe: str) -> None:
    c = container()
    (liveness,) = option(c["args"], "--liveness")
    url = urlsplit(liveness)
    get = c[probe]["httpGet"]
    ports = {port["name"]: port["containerPort"] for port in c["ports"]}
    assert get["path"] == url.path == "/healthz"
    assert ports[get["port"]] == url.port == 8081
    assert c[probe]["timeoutSeconds"] < c[probe]["periodSeconds"]


def test_metrics_port_and_environment() -> None:
    c = container()
    ports = {port["name"]: port["containerPort"] for port in c["ports"]}
    assert ports["metrics"] == 8080
    env = {item["name"]: item["value"] for item in c["env"] if "value" in item}
    assert env["AZSWITCH_LOG_FORMAT"] == "json"
    assert LogFormat(env["AZSWITCH_LOG_FORMAT"]) is LogFormat.JSON
    # The served port (setting, default 8080) and the declared containerPort must agree.
    assert (
        int(env["AZSWITCH_METRICS_PORT"]) == ports["metrics"] == Settings.model_fields["metrics_port"].default
    )


def test_tmp_is_a_writable_empty_dir() -> None:
    spec = deployment()["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    (mount,) = [m for m in container()["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert "emptyDir" in volumes[mount["name"]]
    assert not mount.get("readOnly", False)


def test_selector_matches_the_pod_and_the_service() -> None:
    d = deployment()
    pod_labels = d["spec"]["template"]["metadata"]["labels"]
    assert d["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = find(load_all(BASE / "service.yaml"), "Service", "azswitch-metrics")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["port"], port["targetPort"]) == ("metrics", 8080, "metrics")


def test_image_is_overridable_with_kustomize_images() -> None:
    base = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert [image["name"] for image in base["images"]] == ["azswitch"]


# --- RBAC ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CLUSTER_ROLES))
def test_cluster_role_grants_exactly_the_table(name: str) -> None:
    role = find(load_all(BASE / "rbac.yaml"), "ClusterRole", name)
    assert rules_table(role["rules"]) == CLUSTER_ROLES[name]


def test_base_rbac_has_nothing_else() -> None:
    kinds = sorted((doc["kind"], doc["metadata"]["name"]) for doc in load_all(BASE / "rbac.yaml"))
    assert kinds == sorted(
        [("ClusterRole", name) for name in CLUSTER_ROLES]
        + [("ClusterRoleBinding", name) for name in CLUSTER_ROLES]
        + [("Role", LEADER_ELECTION_ROLE), ("RoleBinding", LEADER_ELECTION_ROLE)]
    )


def leader_election_role(docs: list[dict[str, Any]]) -> dict[str, Any]:
    roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == LEADER_ELECTION_ROLE]
    assert len(roles) == 1, f"expected one Role {LEADER_ELECTION_ROLE}, found {len(roles)}"
    return roles[0]


def test_leader_election_role_grants_exactly_the_table() -> None:
    role = leader_election_role(load_all(BASE / "rbac.yaml"))
    assert named_rules_table(role["rules"]) == LEADER_ELECTION_RULES
    # The Role's namespace is the base's (kustomize's namespace transformer): the operator's own only.
    assert "namespace" not in role["metadata"] or role["metadata"]["namespace"] == NAMESPACE
    binding = find(load_all(BASE / "rbac.yaml"), "RoleBinding", LEADER_ELECTION_ROLE)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": LEADER_ELECTION_ROLE,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
    ]


@pytest.mark.parametrize("path", yaml_files(), ids=lambda path: str(path.relative_to(DEPLOY)))
def test_no_lease_rights_anywhere_else(path: Path) -> None:
    """Leases only in the leader election Role: no ClusterRole, and no other Role, touches them."""
    for doc in load_all(path):
        if doc.get("kind") not in ("Role", "ClusterRole"):
            continue
        if doc["kind"] == "Role" and doc["metadata"]["name"] == LEADER_ELECTION_ROLE:
            continue
        for rule in doc.get("rules", []):
            assert "coordination.k8s.io" not in rule.get("apiGroups", []), (
                f"{path}: {doc['metadata']['name']}"
            )
            assert "leases" not in rule.get("resources", []), f"{path}: {doc['metadata']['name']}"


@pytest.mark.parametrize("name", sorted(CLUSTER_ROLES))
def test_cluster_role_bindings_bind_the_operator(name: str) -> None:
    binding = find(load_all(BASE / "rbac.yaml"), "ClusterRoleBinding", name)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": name,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
    ]
    find(load_all(BASE / "serviceaccount.yaml"), "ServiceAccount", SERVICE_ACCOUNT)


def overlay_namespaces() -> list[str]:
    kustomization = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    (patch,) = [p for p in kustomization["patches"] if "kind: Deployment" in p["patch"]]
    (c,) = yaml.safe_load(patch["patch"])["spec"]["template"]["spec"]["containers"]
    assert not option(c["args"], "--all-namespaces") and "--all-namespaces" not in c["args"]
    assert option(c["args"], "--liveness") == [LIVENESS]
    # The patch replaces the base's args whole: leader election must be asked for again.
    assert "--leader-elect" in c["args"]
    return option(c["args"], "--namespace")


def test_overlay_watches_a_fixed_set_of_namespaces() -> None:
    namespaces = overlay_namespaces()
    assert len(namespaces) >= 2
    assert len(set(namespaces)) == len(namespaces)
    assert all(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", ns) for ns in namespaces), "exact names only"


def test_overlay_grants_the_operator_rules_only_in_the_watched_namespaces() -> None:
    docs = load_all(OVERLAY / "rbac.yaml")
    roles = {doc["metadata"]["namespace"]: doc for doc in docs if doc["kind"] == "Role"}
    bindings = {doc["metadata"]["namespace"]: doc for doc in docs if doc["kind"] == "RoleBinding"}
    assert set(roles) == set(bindings) == set(overlay_namespaces())
    for namespace, role in roles.items():
        assert rules_table(role["rules"]) == OPERATOR_RULES, namespace
        binding = bindings[namespace]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role["metadata"]["name"],
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
        ]


def test_overlay_cluster_scope_is_namespace_observation_only() -> None:
    docs = load_all(OVERLAY / "rbac.yaml")
    cluster_roles = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "ClusterRole"}
    assert {name: rules_table(role["rules"]) for name, role in cluster_roles.items()} == {
        "azswitch-namespace-observer": NAMESPACE_OBSERVER_RULES
    }
    binding = find(docs, "ClusterRoleBinding", "azswitch-namespace-observer")
    assert binding["roleRef"]["name"] == "azswitch-namespace-observer"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
    ]
    kinds = {doc["kind"] for doc in docs}
    assert kinds == {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


def test_overlay_deletes_the_cluster_wide_secret_access() -> None:
    kustomization = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    deleted = set()
    for entry in kustomization["patches"]:
        patch = yaml.safe_load(entry["patch"])
        if patch.get("$patch") == "delete":
            deleted.add((patch["kind"], patch["metadata"]["name"]))
    # Cluster-wide Secret access, and the ZoneDrain status writes a namespaced operator must not make.
    assert deleted == {
        ("ClusterRole", "azswitch"),
        ("ClusterRoleBinding", "azswitch"),
        ("ClusterRole", "azswitch-drain-status"),
        ("ClusterRoleBinding", "azswitch-drain-status"),
    }


# --- rendering with kustomize -------------------------------------------------------------------------------


@cache
def kustomize_command() -> tuple[str, ...] | None:
    for directory in (None, str(ROOT / ".venv" / "bin")):
        if found := shutil.which("kustomize", path=directory):
            return (found, "build")
    for directory in (None, str(ROOT / ".venv" / "bin")):
        if found := shutil.which("kubectl", path=directory):
            return (found, "kustomize")
    return None


def render(directory: Path) -> list[dict[str, Any]]:
    command = kustomize_command()
    if command is None:
        pytest.skip(
            "neither kustomize nor kubectl is on PATH or in .venv/bin, so deploy/ is not rendered here; "
            "the e2e suite renders and applies it"
        )
    result = subprocess.run(
        [*command, str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"{' '.join(command)} {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]


def test_rendered_base() -> None:
    docs = render(DEPLOY)
    kinds = sorted((doc["kind"], doc["metadata"]["name"]) for doc in docs)
    assert kinds == [
        ("ClusterRole", "azswitch"),
        ("ClusterRole", "azswitch-crd-observer"),
        ("ClusterRole", "azswitch-drain-reader"),
        ("ClusterRole", "azswitch-drain-status"),
        ("ClusterRoleBinding", "azswitch"),
        ("ClusterRoleBinding", "azswitch-crd-observer"),
        ("ClusterRoleBinding", "azswitch-drain-reader"),
        ("ClusterRoleBinding", "azswitch-drain-status"),
        ("CustomResourceDefinition", "replicationgroups.azswitch.io"),
        ("CustomResourceDefinition", "zonedrains.azswitch.io"),
        ("Deployment", "azswitch"),
        ("Namespace", NAMESPACE),
        ("PodDisruptionBudget", "azswitch"),
        ("Role", LEADER_ELECTION_ROLE),
        ("RoleBinding", LEADER_ELECTION_ROLE),
        ("Service", "azswitch-metrics"),
        ("ServiceAccount", SERVICE_ACCOUNT),
    ]
    for doc in docs:
        if doc["kind"] in (
            "Deployment",
            "Service",
            "ServiceAccount",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
        ):
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["kind"]
    assert named_rules_table(leader_election_role(docs)["rules"]) == LEADER_ELECTION_RULES
    # The CRD arrives unchanged (kustomize only adds the common labels to its metadata).
    rendered_crd = find(docs, "CustomResourceDefinition", "replicationgroups.azswitch.io")
    assert rendered_crd["spec"] == yaml.safe_load(CRD_PATH.read_text())["spec"]
    for name, table in CLUSTER_ROLES.items():
        assert rules_table(find(docs, "ClusterRole", name)["rules"]) == table


def test_rendered_overlay() -> None:
    docs = render(OVERLAY)
    namespaces = overlay_namespaces()
    # No ClusterRole reaches Secrets (or anything but CRDs and namespaces) any more.
    cluster_roles = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "ClusterRole"}
    assert {name: rules_table(role["rules"]) for name, role in cluster_roles.items()} == OVERLAY_CLUSTER_ROLES
    assert sorted(doc["metadata"]["name"] for doc in docs if doc["kind"] == "ClusterRoleBinding") == sorted(
        OVERLAY_CLUSTER_ROLES
    )
    for namespace in namespaces:
        assert rules_table(find(docs, "Role", "azswitch", namespace)["rules"]) == OPERATOR_RULES
        find(docs, "RoleBinding", "azswitch", namespace)
    (c,) = find(docs, "Deployment", "azswitch", NAMESPACE)["spec"]["template"]["spec"]["containers"]
    assert option(c["args"], "--namespace") == namespaces
    # The overlay changes args only: the hardening of the base is intact, leader election works the same.
    assert c["securityContext"] == container()["securityContext"]
    assert "--leader-elect" in c["args"] and c["env"] == container()["env"]
    role = leader_election_role(docs)
    assert role["metadata"]["namespace"] == NAMESPACE
    assert named_rules_table(role["rules"]) == LEADER_ELECTION_RULES
    find(docs, "RoleBinding", LEADER_ELECTION_ROLE, NAMESPACE)
    find(docs, "PodDisruptionBudget", "azswitch", NAMESPACE)


# --- samples ------------------------------------------------------------------------------------------------


def sample_rg(name: str = "replicationgroup.yaml") -> dict[str, Any]:
    (rg,) = load_all(SAMPLES / name)
    return rg


@pytest.mark.parametrize("name", ["replicationgroup.yaml", "replicationgroup-sdrs.yaml"])
def test_sample_replicationgroup_validates_against_the_crd(name: str) -> None:
    rg = sample_rg(name)
    assert rg["apiVersion"] == "azswitch.io/v1alpha1"
    assert rg["kind"] == "ReplicationGroup"
    admission = admit(rg)
    assert admission.accepted, admission.violations
    assert admission.pruned == [], "a field the apiserver would silently drop is a typo in the sample"
    # And the operator's own models accept it (they forbid unknown fields too).
    spec = ReplicationGroupSpec.model_validate(rg["spec"])
    assert spec.cloud.service == ("SDRS" if "sdrs" in name else "EVS")


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        pytest.param(lambda rg: rg["spec"].pop("primaryAZ"), "spec.primaryAZ", id="required"),
        pytest.param(
            lambda rg: rg["spec"]["switchover"].update(approval="Sometimes"),
            "spec.switchover.approval",
            id="enum",
        ),
        pytest.param(
            lambda rg: rg["spec"]["cloud"].update(region="CN North"), "spec.cloud.region", id="pattern"
        ),
        pytest.param(lambda rg: rg["spec"].update(suspend="yes"), "spec.suspend", id="type"),
        pytest.param(
            lambda rg: rg["spec"]["switchover"].update(timeout="30 minutes"),
            "spec.switchover.timeout",
            id="duration",
        ),
    ],
)
def test_the_validator_catches_mistakes(mutate: Any, field: str) -> None:
    rg = sample_rg()
    mutate(rg)
    admission = admit(rg)
    assert admission.names(field), admission.violations


def test_the_validator_sees_a_typo_as_pruned() -> None:
    rg = sample_rg()
    rg["spec"]["primaryAz"] = "az1.dc1"
    assert "spec.primaryAz" in admit(rg).pruned


def test_sample_secret_is_a_template_without_keys() -> None:
    (secret,) = load_all(SAMPLES / "credentials-secret.yaml")
    rg = sample_rg()
    assert secret["kind"] == "Secret"
    assert secret["metadata"]["name"] == rg["spec"]["cloud"]["credentialsSecretRef"]["name"]
    assert secret["metadata"]["namespace"] == rg["metadata"]["namespace"]
    assert "data" not in secret
    data = secret["stringData"]
    assert {"accessKey", "secretKey"} <= set(data) <= {"accessKey", "secretKey", "securityToken"}
    for name, value in data.items():
        assert re.fullmatch(r"<[A-Z_]+>", value), f"{name} must be a <PLACEHOLDER>, not a value"


# --- the image ----------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_dockerfile_runtime_stage() -> None:
    instructions = dockerfile_instructions()
    last_from = max(index for index, (op, _) in enumerate(instructions) if op == "FROM")
    runtime = instructions[last_from:]
    (user,) = [arg for op, arg in runtime if op == "USER"]
    uid, _, gid = user.partition(":")
    pod = deployment()["spec"]["template"]["spec"]["securityContext"]
    assert int(uid) == pod["runAsUser"] and int(gid) == pod["runAsGroup"]
    assert ("ENTRYPOINT", '["azswitch", "run"]') in runtime
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim-bookworm") in instructions
    # Runtime dependencies only: no [test] extra, no editable install.
    installs = [arg for op, arg in instructions if op == "RUN" and "pip install" in arg]
    assert installs and not any("[test]" in arg or "-e " in arg for arg in installs)


def test_dockerignore_admits_only_what_the_build_needs() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {line for line in lines if line.startswith("!")} == {"!pyproject.toml", "!README.md", "!operator/"}
