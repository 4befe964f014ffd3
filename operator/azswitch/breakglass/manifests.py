"""ReplicationGroup manifests from files (the YAML Git holds) or from the cluster, validated as the operator
validates them.

Every error names where the problem is — the file, the document's index in it (1-based, as an editor
counts) and the field — and what to do about it. Documents of other kinds (Namespaces, Secrets, a
kustomization's other objects) are skipped; ``kind: List`` (``kubectl get -o yaml``) is read item by item.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import ValidationError

from azswitch.errors import ConfigError
from azswitch.kube import GROUP, KIND, VERSION
from azswitch.models import ReplicationGroupSpec, spec_errors
from azswitch.reconcile.context import ANNOTATION_HOLD

API_VERSION = f"{GROUP}/{VERSION}"
_SUFFIXES = (".yaml", ".yml", ".json")


class InputError(ConfigError):
    """The manifests (or credentials) given cannot be used; the message names where and how to fix it."""


@dataclass
class Manifest:
    """One ReplicationGroup to plan or apply: its body (metadata, spec, maybe status) and where it came from."""

    source: str
    body: dict[str, Any]
    spec: ReplicationGroupSpec

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def generation(self) -> int:
        return int(self.body["metadata"].get("generation") or 1)


def load_files(paths: Iterable[str], default_namespace: str, stdin: TextIO | None = None) -> list[Manifest]:
    """Every ReplicationGroup in ``paths`` (``-`` is stdin; a directory means its *.yaml/*.yml/*.json)."""
    manifests: list[Manifest] = []
    for given in paths:
        for name, text in _read(given, stdin or sys.stdin):
            manifests.extend(parse_documents(text, name, default_namespace))
    if not manifests:
        raise InputError(
            f"no ReplicationGroup found in {', '.join(paths)}; fix: give files holding "
            f"apiVersion: {API_VERSION}, kind: {KIND} documents"
        )
    check_unique(manifests)
    return manifests


def _read(given: str, stdin: TextIO) -> list[tuple[str, str]]:
    if given == "-":
        return [("<stdin>", stdin.read())]
    path = Path(given)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in _SUFFIXES and p.is_file())
        if not files:
            raise InputError(
                f"{given}: the directory has no .yaml, .yml or .json files; fix: check the -f path"
            )
        return [(str(p), _text(p)) for p in files]
    return [(given, _text(path))]


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; fix: check the path given to -f") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(f"{path}: cannot read it ({reason}); fix: check the path given to -f") from None


def parse_documents(text: str, source: str, default_namespace: str) -> list[Manifest]:
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(
            f"{source}: not valid YAML{where}: {problem}; fix: correct the YAML syntax"
        ) from None
    manifests = []
    for index, document in enumerate(documents, start=1):
        if document is None:
            continue
        where = f"{source}: document {index}"
        if not isinstance(document, Mapping):
            raise InputError(
                f"{where}: expected a mapping (a Kubernetes object), got {type(document).__name__}"
            )
        if document.get("kind") == "List" and isinstance(document.get("items"), list):
            for item_index, item in enumerate(document["items"]):
                if isinstance(item, Mapping) and item.get("kind") == KIND:
                    manifests.append(from_object(item, f"{where}, items[{item_index}]", default_namespace))
            continue
        if document.get("kind") != KIND:
            continue
        manifests.append(from_object(document, where, default_namespace))
    return manifests


def from_object(
    obj: Mapping[str, Any], where: str, default_namespace: str, *, keep_status: bool = False
) -> Manifest:
    """A validated manifest from one object. ``status`` is dropped unless ``keep_status`` (the cluster's
    copy); the hold annotation never reaches the local run (it is what keeps the operator away)."""
    api_version = obj.get("apiVersion")
    if api_version != API_VERSION:
        raise InputError(
            f"{where}: apiVersion is {api_version!r}; fix: use apiVersion: {API_VERSION} for kind {KIND}"
        )
    raw_meta = obj.get("metadata")
    meta = dict(raw_meta) if isinstance(raw_meta, Mapping) else {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}: metadata.name is missing; fix: name the ReplicationGroup")
    namespace = meta.get("namespace") or default_namespace
    where = f"{where} ({KIND} {namespace}/{name})"
    generation = meta.get("generation", 1)
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 1:
        raise InputError(f"{where}: metadata.generation must be a positive integer (got {generation!r})")
    raw_spec = obj.get("spec")
    if not isinstance(raw_spec, Mapping):
        raise InputError(f"{where}: spec is missing; fix: set spec.groupID, spec.primaryAZ and spec.cloud")
    try:
        spec = ReplicationGroupSpec.model_validate(raw_spec)
    except ValidationError as exc:
        raise InputError(f"{where}: {spec_errors(exc)}") from None
    annotations = {
        str(k): str(v)
        for k, v in (meta.get("annotations") or {}).items()
        if k != ANNOTATION_HOLD and v is not None
    }
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "generation": generation,
            "annotations": annotations,
            "labels": labels,
        },
        "spec": copy.deepcopy(dict(raw_spec)),
    }
    if keep_status and isinstance(obj.get("status"), Mapping):
        body["status"] = copy.deepcopy(dict(obj["status"]))
    return Manifest(where, body, spec)


def check_unique(manifests: list[Manifest]) -> None:
    """Two manifests for one resource, or for one cloud group, would fight: refuse both, by name."""
    by_key: dict[str, Manifest] = {}
    by_group: dict[tuple[str, str], Manifest] = {}
    for manifest in manifests:
        other = by_key.get(manifest.key)
        if other is not None:
            raise InputError(
                f"{manifest.source}: {manifest.key} is also defined in {other.source}; fix: give each "
                "ReplicationGroup once"
            )
        by_key[manifest.key] = manifest
        group = (manifest.spec.cloud.project_id, manifest.spec.group_id)
        other = by_group.get(group)
        if other is not None:
            raise InputError(
                f"{manifest.source}: cloud group {manifest.spec.group_id} is also managed by {other.key} "
                f"({other.source}); fix: give each cloud group one ReplicationGroup"
            )
        by_group[group] = manifest
