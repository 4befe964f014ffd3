"""``CloudAPI`` for Huawei Cloud EVS replication consistency groups (cloud-api.md §2 and §3).

Only the EVS specifics live here: paths, request bodies, response envelopes, paging and AZ discovery.
Sending, retries, rate limiting and error mapping are ``azswitch.cloud.transport.CloudSession``'s job.
Every identifier is validated before it becomes part of a URL, whether it came from the spec or from the
cloud's own answers, so that nothing can smuggle a path segment or a query into a request.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import httpx

from azswitch.cloud import evs_states
from azswitch.cloud.api import MAX_PAGE_SIZE, CloudAPI, OperationHandle, OperationProgress, Progress
from azswitch.cloud.checks import check_page_size, cloud_id, parse_model, validate_id
from azswitch.cloud.evs_models import ConsistencyGroup, ReplicationPair, Volume
from azswitch.cloud.ratelimit import RateLimiter
from azswitch.cloud.retry import RetryPolicy
from azswitch.cloud.transport import Call, CloudSession, RequestHook, json_object
from azswitch.errors import CloudRejected, CloudUnavailable, ConfigError, GroupNotFound
from azswitch.observation import GroupView

logger = logging.getLogger("azswitch.cloud")

_GROUPS = "os-vendor-replication-consistency-groups"

#: List filters documented for evs_04_2051 (paging, ``marker``/``limit``/``offset``, is the client's job).
#: ``changes_since`` is accepted as the Python spelling of ``changes-since``.
LIST_FILTERS = frozenset(
    {"name", "status", "priority_station", "volume_id", "sort_key", "sort_dir", "changes-since"}
)

#: The action keys of evs_04_2054…2058; each is sent as ``{key: null}``.
SWITCHOVER = "os-reverse-replication-consistency-group"
FAILOVER = "os-failover-replication-consistency-group"
REPROTECT = "os-reprotect-replication-consistency-group"
SYNC = "os-sync-replication-consistency-group"


class EvsClient:
    """The EVS backend for one (endpoint, project, credentials).

    ``http`` must have the endpoint as its ``base_url`` (``CloudConnections`` builds it so and shares it);
    ``limiter`` should be shared by every client of the same endpoint and project.

    Two surfaces: the EVS API as it is (``get_group``, ``switchover`` …, what the client tests pin), and the
    neutral ``CloudAPI`` the reconciler uses (``view``, ``start_switchover`` …), a thin layer over the first.
    """

    service = "EVS"

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        project_id: str,
        auth: httpx.Auth,
        retry: RetryPolicy,
        limiter: RateLimiter,
        on_request: RequestHook | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> None:
        self.project_id = validate_id("project_id", project_id)
        self._session = CloudSession.for_project(
            http, "EVS", project_id, auth=auth, retry=retry, limiter=limiter, on_request=on_request
        )
        self.page_size = check_page_size(page_size, MAX_PAGE_SIZE)
        self._base = f"/v2/{project_id}"

    def __repr__(self) -> str:
        return f"EvsClient(project_id={self.project_id!r})"

    # --- reads -------------------------------------------------------------------------------------------

    async def get_group(self, group_id: str) -> ConsistencyGroup:
        validate_id("group_id", group_id)
        call = Call("get_group", "GET", f"{self._base}/{_GROUPS}/{group_id}", not_found=GroupNotFound)
        data = json_object(await self._session.send(call), operation=call.operation)
        return parse_model(
            ConsistencyGroup,
            data.get("replication_consistency_group"),
            operation=call.operation,
            what="replication_consistency_group",
        )

    async def list_groups(self, **filters: str) -> list[ConsistencyGroup]:
        """All groups matching ``filters`` (documented names only), fetched page by page with ``marker``."""
        params = self._list_params(filters)
        groups: list[ConsistencyGroup] = []
        seen: set[str] = set()
        marker: str | None = None
        while True:
            page_params = (*params, ("limit", str(self.page_size)))
            if marker is not None:
                page_params += (("marker", marker),)
            call = Call("list_groups", "GET", f"{self._base}/{_GROUPS}", params=page_params)
            data = json_object(await self._session.send(call), operation=call.operation)
            items = data.get("replication_consistency_groups")
            if not isinstance(items, list):
                raise CloudUnavailable(
                    "the response lacks a replication_consistency_groups list", operation=call.operation
                )
            page = [
                parse_model(
                    ConsistencyGroup, item, operation=call.operation, what="replication_consistency_group"
                )
                for item in items
            ]
            fresh = [group for group in page if group.id not in seen]
            groups += fresh
            seen.update(group.id for group in fresh)
            # A short page is the last one; a page with nothing new means the server ignores the marker,
            # and asking again would loop forever.
            if len(page) < self.page_size or not fresh:
                return groups
            marker = cloud_id("group id", page[-1].id, operation=call.operation)

    @staticmethod
    def _list_params(filters: dict[str, str]) -> tuple[tuple[str, str], ...]:
        params: list[tuple[str, str]] = []
        for name, value in sorted(filters.items()):
            wire = "changes-since" if name == "changes_since" else name
            if wire not in LIST_FILTERS:
                raise ConfigError(
                    f"unknown list_groups filter {name!r}; use one of {', '.join(sorted(LIST_FILTERS))} "
                    "(paging is automatic)"
                )
            if not isinstance(value, str):
                raise ConfigError(f"list_groups filter {name!r} must be a string, got {type(value).__name__}")
            params.append((wire, value))
        return tuple(params)

    async def discover_availability_zones(
        self, group_id: str, *, group: ConsistencyGroup | None = None
    ) -> list[str]:
        """The group's two AZs, sorted: group → replication pairs → their volumes → ``availability_zone``.
        A ``group`` just read (a GET or the shared listing) saves one request: adoption is 3 reads, not 4."""
        if group is None or group.id != group_id:
            group = await self.get_group(group_id)
        if not group.replication_ids:
            raise CloudRejected(
                f"group {group_id} has no replication pairs, so its availability zones cannot be learnt",
                operation="discover_availability_zones",
            )
        volume_ids: dict[str, None] = {}  # ordered set: each volume is read once
        for pair_id in group.replication_ids:
            pair = await self._get_pair(cloud_id("replication id", pair_id, operation="get_group"))
            for volume_id in pair.volume_ids:
                volume_ids[cloud_id("volume id", volume_id, operation="get_replication_pair")] = None
        zones = set()
        for volume_id in volume_ids:
            volume = await self._get_volume(volume_id)
            if not volume.availability_zone:
                raise CloudUnavailable(f"volume {volume.id} has no availability_zone", operation="get_volume")
            zones.add(volume.availability_zone)
        if len(zones) != 2:
            raise CloudRejected(
                f"group {group_id} spans {len(zones)} availability zone(s) {sorted(zones)}; "
                "a replication consistency group must span exactly two",
                operation="discover_availability_zones",
            )
        return sorted(zones)

    async def _get_pair(self, pair_id: str) -> ReplicationPair:
        call = Call("get_replication_pair", "GET", f"{self._base}/os-vendor-replications/{pair_id}")
        data = json_object(await self._session.send(call), operation=call.operation)
        return parse_model(
            ReplicationPair, data.get("replication"), operation=call.operation, what="replication"
        )

    async def _get_volume(self, volume_id: str) -> Volume:
        # The OpenStack-style path first; some regions serve disks only under the EVS-native one.
        try:
            response = await self._session.send(
                Call("get_volume", "GET", f"{self._base}/volumes/{volume_id}")
            )
        except CloudRejected as error:
            if error.status != 404:
                raise
            response = await self._session.send(
                Call("get_volume", "GET", f"{self._base}/cloudvolumes/{volume_id}")
            )
        data = json_object(response, operation="get_volume")
        return parse_model(Volume, data.get("volume"), operation="get_volume", what="volume")

    async def availability_zones(self, group: ConsistencyGroup) -> list[str]:
        return await self.discover_availability_zones(group.id, group=group)

    def view(self, group: ConsistencyGroup, zones: Sequence[str], observed_at: datetime) -> GroupView:
        return evs_states.view_of(group, zones, observed_at)

    # --- actions (never resent after they may have been processed; see transport.may_retry) --------------

    async def switchover(self, group_id: str) -> None:
        await self._action("switchover", group_id, SWITCHOVER)

    async def failover(self, group_id: str) -> None:
        await self._action("failover", group_id, FAILOVER)

    async def reprotect(self, group_id: str) -> None:
        await self._action("reprotect", group_id, REPROTECT)

    async def sync(self, group_id: str) -> None:
        await self._action("sync", group_id, SYNC)

    # EVS's reverse and failover swap the two AZs; there is no way to name the target, so the reconciler's
    # fresh read just before sending is what makes "to target_az" true. Nothing comes back to follow.

    async def start_switchover(self, group_id: str, target_az: str) -> OperationHandle | None:
        await self.switchover(group_id)
        return None

    async def start_failover(self, group_id: str, target_az: str) -> OperationHandle | None:
        await self.failover(group_id)
        return None

    async def start_reprotect(self, group_id: str) -> OperationHandle | None:
        await self.reprotect(group_id)
        return None

    async def follow(self, handle: OperationHandle) -> OperationProgress:
        # EVS returns no handle, so a journal naming one was written by someone else: nothing can be asked
        # about it, and the group itself is what the reconciler watches.
        return OperationProgress(Progress.RUNNING)

    async def _action(self, operation: str, group_id: str, key: str) -> None:
        validate_id("group_id", group_id)
        call = Call(
            operation,
            "POST",
            f"{self._base}/{_GROUPS}/{group_id}/action",
            body={key: None},
            not_found=GroupNotFound,
        )
        response = await self._session.send(call)
        if response.status_code != 200:
            # Documented as 200. Any other 2xx still means accepted: reporting a failure here could make
            # the caller send the action again, which for a switchover swaps the AZs back.
            logger.warning(
                "%s answered HTTP %d instead of 200; treating it as accepted", operation, response.status_code
            )


if TYPE_CHECKING:
    # mypy proves here that EvsClient satisfies the CloudAPI protocol.
    _STRUCTURAL_CHECK: type[CloudAPI[ConsistencyGroup]] = EvsClient
