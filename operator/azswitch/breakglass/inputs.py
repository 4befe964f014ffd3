"""What ``plan`` and ``apply`` share: the options, the groups (from files or the cluster), what the cluster
knows about them, their credentials, the operator's settings and the cloud clients."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from azswitch.breakglass import credentials as creds
from azswitch.breakglass.cluster import Cluster
from azswitch.breakglass.manifests import InputError, Manifest, check_unique, from_object, load_files
from azswitch.cloud import CloudAPI
from azswitch.models import ReplicationGroupSpec
from azswitch.reconcile.context import ANNOTATION_APPROVE, Credentials
from azswitch.runtime import cloud_connections
from azswitch.settings import Settings

#: The facts the operator learned about a group, which a local run may start from (never its journal).
LEARNED = ("groupID", "service", "availabilityZones")


@dataclass
class Options:
    files: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    all_namespaces: bool = False
    namespace: str | None = None
    kubeconfig: Path | None = None
    credentials: str | None = None
    output: str = "table"
    approve: bool = False
    allow_failover: bool = False


@dataclass
class Inputs:
    manifests: list[Manifest]
    cluster: Cluster | None
    #: Why no cluster is used ("" when one is).
    no_cluster: str
    #: The cluster's copy of each group that exists there.
    in_cluster: dict[str, dict[str, Any]]
    secrets: dict[tuple[str, str], dict[str, str]]

    def cluster_status(self, key: str) -> dict[str, Any]:
        found = self.in_cluster.get(key) or {}
        status = found.get("status")
        return dict(status) if isinstance(status, Mapping) else {}

    def seed(self, manifest: Manifest) -> dict[str, Any]:
        """The learned facts of the cluster's status (for this very cloud group), nothing else."""
        status = self.cluster_status(manifest.key)
        if status.get("groupID") != manifest.spec.group_id:
            return {}
        return {k: status[k] for k in LEARNED if k in status}

    def operator_operation(self, key: str) -> dict[str, Any] | None:
        """An operation the operator journaled in the cluster's status.operation."""
        operation = self.cluster_status(key).get("operation")
        return dict(operation) if isinstance(operation, Mapping) else None


async def gather(
    options: Options, environ: Mapping[str, str], err: TextIO, stdin: TextIO | None = None
) -> Inputs:
    """Manifests, the cluster (if reachable) and credentials; ``InputError`` for anything unusable."""
    if not options.files and not options.targets and not options.all_namespaces:
        raise InputError(
            "nothing to do: give -f FILE (ReplicationGroup manifests; - for stdin), NAMESPACE/NAME, or -A"
        )
    if options.files and (options.targets or options.all_namespaces):
        raise InputError("give either -f FILE or NAMESPACE/NAME / -A, not both")
    default_namespace = options.namespace or "default"
    manifests = load_files(options.files, default_namespace, stdin) if options.files else []
    cluster, why = await Cluster.connect(options.kubeconfig)
    in_cluster: dict[str, dict[str, Any]] = {}
    if cluster is None:
        if not options.files:
            raise InputError(
                f"NAMESPACE/NAME and -A read the cluster, which is not reachable: {why}; fix: give the "
                "manifests from Git with -f FILE"
            )
        print(f"azswitch: no cluster reachable ({why}); going ahead without it", file=err, flush=True)
    elif options.files:
        for manifest in manifests:
            found = await cluster.get_group(manifest.namespace, manifest.name)
            if found is not None:
                in_cluster[manifest.key] = found
    else:
        objects: list[dict[str, Any]] = []
        if options.all_namespaces:
            objects = await cluster.list_groups(None)
        for target in options.targets:
            namespace, slash, name = target.partition("/")
            if not slash:
                namespace, name = default_namespace, target
            found = await cluster.get_group(namespace, name)
            if found is None:
                raise InputError(
                    f"ReplicationGroup {namespace}/{name} not found in the cluster; fix: check the name"
                )
            objects.append(found)
        for obj in objects:
            meta = obj.get("metadata") or {}
            manifest = from_object(
                obj,
                f"cluster {meta.get('namespace')}/{meta.get('name')}",
                default_namespace,
                keep_status=True,
            )
            manifest.body.pop("status", None)
            in_cluster[manifest.key] = obj
            manifests.append(manifest)
        if not manifests:
            raise InputError("the cluster has no ReplicationGroups")
        check_unique(manifests)
    secrets = await _credentials(options, manifests, cluster, environ)
    for manifest in manifests:
        decide(manifest, approve=options.approve, allow_failover=options.allow_failover)
    return Inputs(manifests, cluster, why, in_cluster, secrets)


async def _credentials(
    options: Options, manifests: list[Manifest], cluster: Cluster | None, environ: Mapping[str, str]
) -> dict[tuple[str, str], dict[str, str]]:
    """Per (namespace, Secret name): the --credentials file, else the cluster's Secret, else the environment."""
    given = creds.from_file(options.credentials) if options.credentials else None
    env = creds.from_environment(environ)
    found: dict[tuple[str, str], dict[str, str]] = {}
    for manifest in manifests:
        ref = (manifest.namespace, manifest.spec.cloud.credentials_secret_ref.name)
        if ref in found:
            continue
        if given is not None:
            found[ref] = given
            continue
        if cluster is not None:
            secret = await cluster.read_secret(*ref)
            if secret is not None:
                found[ref] = creds.checked(secret, f"Secret {ref[0]}/{ref[1]}")
                continue
        if env is not None:
            found[ref] = env
            continue
        where = (
            f"Secret {ref[0]}/{ref[1]} does not exist in the cluster"
            if cluster is not None
            else "no cluster is reachable to read its Secret"
        )
        raise InputError(f"{manifest.source}: no cloud credentials ({where}); {creds.FIX}")
    return found


def decide(manifest: Manifest, *, approve: bool, allow_failover: bool) -> None:
    """What the command line decides for a group, on the in-memory body only (never on the cluster's)."""
    if approve:
        manifest.body["metadata"].setdefault("annotations", {})[ANNOTATION_APPROVE] = str(manifest.generation)
    if allow_failover and not manifest.spec.failover.allowed:
        spec = manifest.body["spec"]
        spec["failover"] = {**(spec.get("failover") or {}), "allowed": True}
        manifest.spec = ReplicationGroupSpec.model_validate(spec)


class Clouds:
    """The Reconciler's ``CloudFactory``: the operator's cloud clients, built as ``Runtime`` builds them."""

    def __init__(self, settings: Settings) -> None:
        self.connections = cloud_connections(settings)

    def client(self, service: str, endpoint: str, project_id: str, credentials: Credentials) -> CloudAPI[Any]:
        return self.connections.backend(service, endpoint, project_id, credentials)

    async def aclose(self) -> None:
        await self.connections.aclose()


def to_credentials(values: Mapping[str, str]) -> Credentials:
    return Credentials(values["accessKey"], values["secretKey"], values.get("securityToken") or None)
