"""The backend-neutral cloud interface the reconciler talks to.

The reconciler never sees HTTP and never sees a backend's vocabulary: it sees ``CloudAPI`` (one implementation
per backend, chosen by ``azswitch.cloud.registry``), the neutral ``GroupView`` each backend maps its groups
into, and the project's exceptions from ``azswitch.errors``. The group records themselves (``G``) are opaque
to the reconciler: it caches them, hands them back to ``availability_zones`` and ``view``, and reads their
``id``.

Reads may be retried freely by an implementation. Mutating actions are sent at most once per call: a
transport failure after the request may have been sent raises ``OutcomeUnknown`` and the caller must observe
the group before deciding anything. An action may return an ``OperationHandle`` (SDRS: a job id), which the
intent journal persists so that a restart can follow the same operation; EVS actions return ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol, TypeVar

from azswitch.observation import GroupView

#: The most groups one LIST page returns (EVS evs_04_2051 and SDRS sdrs_05_0402: ``limit`` up to 1000).
MAX_PAGE_SIZE = 1000


class CloudGroup(Protocol):
    """What the reconciler reads of a backend's own group record."""

    @property
    def id(self) -> str: ...


G = TypeVar("G", bound=CloudGroup)


@dataclass(frozen=True)
class OperationHandle:
    """Something an action returned that the cloud can be asked about later: SDRS's job id.

    Journaled as ``status.operation.cloudJobID`` in the same write that marks the operation InProgress.
    """

    job_id: str


class Progress(StrEnum):
    """Where an operation the cloud tracks for us (an SDRS job) stands."""

    RUNNING = "Running"  # INIT, RUNNING, or a state we do not know: keep following
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class OperationProgress:
    progress: Progress
    #: On failure, the cloud's own words: error code and reason.
    message: str | None = None


class CloudAPI(Protocol[G]):
    """What the reconciler needs from a replication backend, for one (endpoint, project, credentials)."""

    #: The ``spec.cloud.service`` value this backend serves (``EVS``, ``SDRS``).
    service: str

    async def get_group(self, group_id: str) -> G:
        """One group, read now."""
        ...

    async def list_groups(self) -> Sequence[G]:
        """Every group of the project, all pages: the shared listing that serves idle groups."""
        ...

    async def availability_zones(self, group: G) -> list[str]:
        """The group's two AZs, sorted (EVS learns them from pairs and volumes; SDRS has them on the group)."""
        ...

    def view(self, group: G, zones: Sequence[str], observed_at: datetime) -> GroupView:
        """The group in the planner's terms (pure: the backend's state mapping)."""
        ...

    async def start_switchover(self, group_id: str, target_az: str) -> OperationHandle | None:
        """Ask for a planned switchover that makes ``target_az`` the primary."""
        ...

    async def start_failover(self, group_id: str, target_az: str) -> OperationHandle | None:
        """Ask for a failover onto ``target_az`` (may lose un-replicated writes)."""
        ...

    async def start_reprotect(self, group_id: str) -> OperationHandle | None:
        """Ask for replication to be re-established after a failover (the primary stays)."""
        ...

    async def follow(self, handle: OperationHandle) -> OperationProgress:
        """How the operation behind ``handle`` stands (a read; only called with a handle this backend
        returned)."""
        ...
