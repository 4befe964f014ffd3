"""``KubeAPI`` without a cluster: the operator's Reconciler, unchanged, over the manifests' bodies.

The "resources" are the manifests; ``patch_status`` merges the patch into the group's status (RFC 7386, as
the apiserver does), checks and bumps a resourceVersion (``KubeConflict`` on a stale one, so the journal's
write-before-send guarantee holds exactly as against an apiserver), and appends the whole status to the
journal file, fsynced, before it returns. ``post_event`` is the progress line; Secrets come from the
credentials resolved before the run.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from azswitch.breakglass.journalfile import JournalFile
from azswitch.kube import KubeConflict, KubeGone


def apply_merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386: ``patch`` applied to ``target`` (``None`` deletes a key; objects merge; the rest replaces)."""
    result = copy.deepcopy(dict(target))
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            previous = result.get(key)
            result[key] = apply_merge_patch(previous if isinstance(previous, Mapping) else {}, value)
        else:
            result[key] = copy.deepcopy(value)
    return result


class LocalKube:
    """The groups of one break-glass run, as a ``KubeAPI``."""

    def __init__(
        self,
        bodies: Mapping[str, Mapping[str, Any]],
        secrets: Mapping[tuple[str, str], Mapping[str, str]],
        journal: JournalFile | None,
        progress: Callable[[str, str, str, str], None] | None = None,
    ) -> None:
        self._bodies: dict[str, dict[str, Any]] = {}
        for key, body in bodies.items():
            copied = copy.deepcopy(dict(body))
            copied["metadata"]["resourceVersion"] = "1"
            copied.setdefault("status", {})
            self._bodies[key] = copied
        self._secrets = {k: dict(v) for k, v in secrets.items()}
        self._journal = journal
        self._progress = progress

    def body(self, key: str) -> dict[str, Any]:
        """The resource as it is now (a copy), for the next reconcile."""
        return copy.deepcopy(self._bodies[key])

    def status(self, key: str) -> dict[str, Any]:
        return copy.deepcopy(self._bodies[key].get("status") or {})

    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        found = self._secrets.get((namespace, name))
        return dict(found) if found is not None else None

    async def patch_status(
        self, namespace: str, name: str, resource_version: str | None, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        key = f"{namespace}/{name}"
        body = self._bodies.get(key)
        if body is None:
            raise KubeGone(f"{key} is not one of this run's groups")
        current = str(body["metadata"]["resourceVersion"])
        if resource_version is not None and resource_version != current:
            raise KubeConflict(
                f"{key} changed since it was read (resourceVersion {resource_version} ≠ {current})"
            )
        status = apply_merge_patch(body.get("status") or {}, patch)
        if self._journal is not None:
            # Durable before the Reconciler may send the request this write announces.
            spec = body.get("spec") or {}
            cloud = spec.get("cloud") or {}
            self._journal.append(key, str(spec.get("groupID")), str(cloud.get("service") or "EVS"), status)
        body["status"] = status
        body["metadata"]["resourceVersion"] = str(int(current) + 1)
        return copy.deepcopy(body)

    async def post_event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        if self._progress is not None:
            meta = obj.get("metadata") or {}
            self._progress(f"{meta.get('namespace')}/{meta.get('name')}", type_, reason, message)

    async def read_namespace_labels(self, name: str) -> dict[str, str] | None:
        return {}

    async def patch_drain_status(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError("a break-glass run writes no ZoneDrain status")
