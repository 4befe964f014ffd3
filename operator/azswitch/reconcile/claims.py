"""Two ReplicationGroups naming one cloud group: which of them owns it (the other does nothing).

Without this, two resources with different ``primaryAZ`` would switch one group back and forth forever.
The choice is deterministic, so that every process (and every restart) picks the same owner, and sticky, so
that ownership never passes while the owner still manages the group.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from azswitch.models import ReplicationGroupSpec


def rival(key: str, spec: ReplicationGroupSpec, claimants: Iterable[Mapping[str, Any]]) -> str | None:
    """The ``namespace/name`` of the resource that owns this cloud group instead of ``key``, if any.

    Ranked: a resource with an operation in flight first (it must finish), then one that already manages
    the group (its status names it), then the oldest, then by name. A newcomer, even an older one restored
    from a backup, waits.
    """

    def rank(body: Mapping[str, Any]) -> tuple[int, int, str, str]:
        meta = body.get("metadata") or {}
        raw_status = body.get("status")
        status: Mapping[str, Any] = raw_status if isinstance(raw_status, Mapping) else {}
        busy = isinstance(status.get("operation"), Mapping)
        managing = status.get("groupID") == spec.group_id
        return (
            0 if busy else 1,
            0 if managing else 1,
            str(meta.get("creationTimestamp") or ""),
            f"{meta.get('namespace')}/{meta.get('name')}",
        )

    def same_project(body: Mapping[str, Any]) -> bool:
        other = body.get("spec")
        cloud = other.get("cloud") if isinstance(other, Mapping) else None
        return isinstance(cloud, Mapping) and cloud.get("projectID") == spec.cloud.project_id

    same = [body for body in claimants if same_project(body)]
    if len(same) < 2:
        return None
    owner = min(same, key=rank)
    owner_meta = owner.get("metadata") or {}
    owner_key = f"{owner_meta.get('namespace')}/{owner_meta.get('name')}"
    return None if owner_key == key else owner_key
