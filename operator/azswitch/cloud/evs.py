"""``CloudAPI`` for Huawei Cloud EVS replication consistency groups (cloud-api.md §2 and §3).

Only the EVS specifics live here: paths, request bodies, response envelopes, paging and AZ discovery (through
the project's shared ``evs_zones.ZoneIndex``, built from the pair and disk listings; per group as a fallback).
Sending, retries, rate limiting and error mapping are ``azswitch.cloud.transport.CloudSession``'s job.
Every identifier is validated before it becomes part of a URL, whether it came from the spec or from the
cloud's own answers, so that nothing can smuggle a path segment or a query into a request.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncGenerator, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

import httpx

from azswitch.cloud import evs_states
from azswitch.cloud.api import MAX_PAGE_SIZE, CloudAPI, OperationHandle, OperationProgress, Progress
from azswitch.cloud.checks import check_page_size, cloud_id, parse_model, validate_id
from azswitch.cloud.evs_models import ConsistencyGroup, ReplicationPair, Volume
from azswitch.cloud.evs_zones import LISTING, PER_GROUP, ZoneIndex, ZoneListing
from azswitch.cloud.ratelimit import RateLimiter
from azswitch.cloud.retry import RetryPolicy
from azswitch.cloud.transport import Call, CloudSession, RequestHook, json_object
from azswitch.errors import (
    CloudAuthError,
    CloudRejected,
    CloudUnavailable,
    ConfigError,
    GroupNotFound,
    PermanentCloudError,
)
from azswitch.observation import GroupView

logger = logging.getLogger("azswitch.cloud")

_GROUPS = "os-vendor-replication-consistency-groups"
_PAIRS = "os-vendor-replications"
#: The disk listings, in the order tried (docs/cloud-api-evs-listings.md): the EVS-native one documents the
#: ``ids`` filter; the OpenStack-style one is the fallback where the first is not served.
DISK_LISTINGS = ("cloudvolumes/detail", "volumes/detail")
#: ``ids`` takes at most 60 disk IDs (evs_04_2006; SDK ``ListVolumesRequest.ids``).
IDS_CHUNK = 60

#: The wire models the listings return (each has an ``id``).
_W = TypeVar("_W", ConsistencyGroup, ReplicationPair, Volume)

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
        zone_index: ZoneIndex | None = None,
        ids_chunk: int = IDS_CHUNK,
    ) -> None:
        self.project_id = validate_id("project_id", project_id)
        self._session = CloudSession.for_project(
            http, "EVS", project_id, auth=auth, retry=retry, limiter=limiter, on_request=on_request
        )
        self.page_size = check_page_size(page_size, MAX_PAGE_SIZE)
        if not 1 <= ids_chunk <= IDS_CHUNK:
            raise ConfigError(f"ids_chunk must be between 1 and {IDS_CHUNK}, got {ids_chunk}")
        self.ids_chunk = ids_chunk
        # Without a shared index (CloudConnections passes one per endpoint, project and access key) the
        # client keeps its own: calls on this instance still share one listing run.
        self.zone_index = zone_index if zone_index is not None else ZoneIndex()
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
        return await self._all_pages(
            "list_groups",
            f"{self._base}/{_GROUPS}",
            "replication_consistency_groups",
            ConsistencyGroup,
            "replication_consistency_group",
            params=self._list_params(filters),
        )

    async def list_pairs(self) -> list[ReplicationPair]:
        """Every replication pair of the project (evs_04_2046), page by page with ``marker``."""
        return await self._all_pages(
            "list_replication_pairs", f"{self._base}/{_PAIRS}", "replications", ReplicationPair, "replication"
        )

    async def _all_pages(
        self,
        operation: str,
        path: str,
        key: str,
        model: type[_W],
        what: str,
        *,
        params: tuple[tuple[str, str], ...] = (),
    ) -> list[_W]:
        items: list[_W] = []
        async for page, _ in self._pages(operation, path, key, model, what, params=params):
            items += page
        return items

    async def _pages(
        self,
        operation: str,
        path: str,
        key: str,
        model: type[_W],
        what: str,
        *,
        params: tuple[tuple[str, str], ...] = (),
    ) -> AsyncGenerator[tuple[list[_W], int | None]]:
        """Yield (new items of each page, the response's ``count`` if any) until the listing ends.

        A short page is the last one; a page with nothing new means the server ignores the marker, and
        asking again would loop forever. Items are wire models with an ``id``."""
        seen: set[str] = set()
        marker: str | None = None
        while True:
            page_params = (*params, ("limit", str(self.page_size)))
            if marker is not None:
                page_params += (("marker", marker),)
            call = Call(operation, "GET", path, params=page_params)
            data = json_object(await self._session.send(call), operation=operation)
            raw = data.get(key)
            if not isinstance(raw, list):
                raise CloudUnavailable(f"the response lacks a {key} list", operation=operation)
            page = [parse_model(model, item, operation=operation, what=what) for item in raw]
            fresh = [item for item in page if item.id not in seen]
            seen.update(item.id for item in fresh)
            count = data.get("count")
            yield fresh, count if isinstance(count, int) and not isinstance(count, bool) else None
            if len(page) < self.page_size or not fresh:
                return
            marker = cloud_id(f"{what} id", page[-1].id, operation=operation)

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
        return _two_zones(group_id, sorted(zones))

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
        """The group's two AZs: from the project's zone index (pair and disk listings, shared by every client
        of this endpoint, project and access key), else from the group's own pairs and volumes."""
        if group.replication_ids:
            zones = await self.zone_index.lookup(group.replication_ids, self._zone_listing)
            if zones is not None:
                self.zone_index.counted(LISTING)
                return _two_zones(group.id, zones)
        zones = await self.discover_availability_zones(group.id, group=group)
        self.zone_index.counted(PER_GROUP)
        return zones

    async def _zone_listing(self) -> ZoneListing:
        """One run of the zone index: every pair of the project, then its disks' AZs.

        Transient failures (5xx, 429, no answer) propagate: the callers retry as for any read, and nothing
        is kept. A listing the cloud refuses for good (403, a 400 for a parameter a region does not know)
        leaves that part of the index empty, so every group is read the old way until the next run."""
        try:
            pairs = await self.list_pairs()
        except CloudAuthError:
            raise
        except PermanentCloudError as error:
            logger.warning("listing replication pairs failed (%s); reading each group's pairs instead", error)
            return ZoneListing()
        volumes_of: dict[str, tuple[str, ...]] = {}
        wanted: dict[str, None] = {}  # ordered set
        for pair in pairs:
            ids = tuple(pair.volume_ids)
            try:
                for volume_id in ids:
                    cloud_id("volume id", volume_id, operation="list_replication_pairs")
            except CloudUnavailable:
                # Left out: that group is read the old way, which reports the malformed answer for it alone.
                continue
            volumes_of[pair.id] = ids
            wanted.update(dict.fromkeys(ids))
        zones = await self._disk_zones(list(wanted))
        logger.info(
            "zone index of project %s: %d pairs, %d of %d disks located",
            self.project_id,
            len(volumes_of),
            len(zones),
            len(wanted),
        )
        return ZoneListing(volumes_of, zones)

    async def _disk_zones(self, wanted: Sequence[str]) -> dict[str, str]:
        """The AZ of each disk in ``wanted`` that the disk listing shows (absent: not found or no AZ).

        Whichever costs fewer requests: ``ids`` chunks of 60 (evs_04_2006) or the project's whole disk
        listing, 1,000 a page. With more than one chunk's worth, the first whole-listing page comes first:
        it may already hold them all, and its ``count`` tells how many pages are left. Where ``ids`` turns
        out to be ignored (the answer holds disks not asked for) or refused, the whole listing is paged;
        where the EVS-native path is not served, the OpenStack-style one is."""
        found: dict[str, str] = {}
        if not wanted:
            return found
        for path in DISK_LISTINGS:
            try:
                await self._locate_disks(f"{self._base}/{path}", wanted, found)
                return found
            except CloudAuthError:
                raise
            except PermanentCloudError as error:
                logger.warning("the disk listing %s failed (%s)", path, error)
        return found

    async def _locate_disks(self, path: str, wanted: Sequence[str], found: dict[str, str]) -> None:
        want = set(wanted)
        todo = list(wanted)
        if len(todo) > self.ids_chunk:
            async with _DiskPages(self, path, want, found) as listing:
                if not await listing.next_page():
                    return  # the first page was the whole listing, or held every wanted disk
                todo = [v for v in todo if v not in found]
                left = listing.pages_left
                if left is not None and left <= math.ceil(len(todo) / self.ids_chunk):
                    # Cheaper to read the rest of the listing than to ask for the rest by ids.
                    await listing.drain()
                    return
        for start in range(0, len(todo), self.ids_chunk):
            chunk = [v for v in todo[start : start + self.ids_chunk] if v not in found]
            if not chunk:
                continue
            try:
                ignored = await self._disks_by_ids(path, chunk, want, found)
            except CloudAuthError:
                raise
            except PermanentCloudError as error:
                logger.info("the disk listing refused ids (%s); paging all disks instead", error)
                ignored = True
            if ignored and not want.issubset(found):
                async with _DiskPages(self, path, want, found) as listing:
                    await listing.drain()
            if ignored:
                return

    async def _disks_by_ids(self, path: str, chunk: list[str], want: set[str], found: dict[str, str]) -> bool:
        """One ``ids`` request; True when the answer shows the filter was ignored."""
        ids = "[" + ",".join(f"'{volume_id}'" for volume_id in chunk) + "]"
        call = Call("list_volumes", "GET", path, params=(("ids", ids),))
        data = json_object(await self._session.send(call), operation=call.operation)
        volumes = self._volumes_of(data)
        _record_zones(volumes, want, found)
        asked = set(chunk)
        return any(volume.id not in asked for volume in volumes)

    @staticmethod
    def _volumes_of(data: dict[str, object]) -> list[Volume]:
        raw = data.get("volumes")
        if not isinstance(raw, list):
            raise CloudUnavailable("the response lacks a volumes list", operation="list_volumes")
        return [parse_model(Volume, item, operation="list_volumes", what="volume") for item in raw]

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


def _two_zones(group_id: str, zones: list[str]) -> list[str]:
    if len(zones) != 2:
        raise CloudRejected(
            f"group {group_id} spans {len(zones)} availability zone(s) {zones}; "
            "a replication consistency group must span exactly two",
            operation="discover_availability_zones",
        )
    return zones


class _DiskPages:
    """The whole disk listing of a project, read a page at a time into ``found`` (wanted disks only)."""

    def __init__(self, client: EvsClient, path: str, want: set[str], found: dict[str, str]) -> None:
        self._client = client
        self._pages = client._pages("list_volumes", path, "volumes", Volume, "volume")
        self._want = want
        self._found = found
        self._seen = 0
        #: Pages still to come per the response's ``count`` (None when the cloud sends none).
        self.pages_left: int | None = None

    async def __aenter__(self) -> _DiskPages:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._pages.aclose()

    async def next_page(self) -> bool:
        """Read one page; False when nothing more is worth reading (the listing ended, or every wanted disk
        is located)."""
        try:
            page, count = await anext(self._pages)
        except StopAsyncIteration:
            return False
        self._seen += len(page)
        _record_zones(page, self._want, self._found)
        page_size = self._client.page_size
        self.pages_left = None if count is None else math.ceil(max(0, count - self._seen) / page_size)
        if self._want.issubset(self._found) or len(page) < page_size:
            return False
        return count is None or self._seen < count

    async def drain(self) -> None:
        while await self.next_page():
            pass


def _record_zones(volumes: Iterable[Volume], want: set[str], found: dict[str, str]) -> None:
    for volume in volumes:
        if volume.id in want and volume.availability_zone:
            found[volume.id] = volume.availability_zone


if TYPE_CHECKING:
    # mypy proves here that EvsClient satisfies the CloudAPI protocol.
    _STRUCTURAL_CHECK: type[CloudAPI[ConsistencyGroup]] = EvsClient
