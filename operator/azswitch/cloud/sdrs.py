"""``CloudAPI`` for Huawei Cloud SDRS protection groups (cloud-api.md §4, §6, §9): the replacement of the
deprecated EVS consistency-group API.

Only the SDRS specifics live here: paths, bodies, envelopes, ``limit``/``offset`` paging, stations and jobs.
Sending, retries, rate limiting and error mapping are ``azswitch.cloud.transport.CloudSession``'s job; what
SDRS's words mean is ``azswitch.cloud.sdrs_states``'.

Three SDRS facts shape the actions:

* A switchover names the **desired** production site: ``{"reverse-server-group": {"priority_station": S}}``
  where ``S`` is the station whose AZ is the desired primary (``target`` when the desired AZ is
  ``target_availability_zone``, else ``source``). ``S`` is computed from the desired AZ, never as "the
  opposite of the current one", and the reverse is never sent when ``priority_station`` already is ``S``
  (what SDRS does then is not documented, §10.8). So every action reads the group first: one GET, and the
  request that follows is the one the group's state right now calls for, or none.
* Every action answers ``{"job_id": …}``; the job (``GET /v1/{project_id}/jobs/{id}``: ``INIT``, ``RUNNING``,
  ``SUCCESS``, ``FAIL``) is what ``follow`` reports, and the reconciler journals its id.
* A missing group is HTTP **400** ``SDRS.1013`` (not 404), and becomes ``GroupNotFound`` like EVS's 404.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx

from azswitch.cloud import sdrs_states
from azswitch.cloud.api import MAX_PAGE_SIZE, CloudAPI, OperationHandle, OperationProgress, Progress
from azswitch.cloud.checks import check_page_size, cloud_id, parse_model, validate_id
from azswitch.cloud.ratelimit import RateLimiter
from azswitch.cloud.retry import RetryPolicy
from azswitch.cloud.sdrs_models import Job, ProtectionGroup
from azswitch.cloud.transport import Call, CloudSession, RequestHook, json_object
from azswitch.errors import CloudRejected, CloudUnavailable, ConfigError, GroupNotFound
from azswitch.observation import GroupView

logger = logging.getLogger("azswitch.cloud")

_GROUPS = "server-groups"

#: SDRS's "protection group not found" (§6.1): HTTP 400 with this code. ``SDRS.0207`` ("invalid protection
#: group ID") is what older deployments answered for a deleted group (TF before 2025-07).
NOT_FOUND_CODES = frozenset({"SDRS.1013", "SDRS.0207"})

#: List filters documented for sdrs_05_0402 (paging with ``limit``/``offset`` is the client's job).
LIST_FILTERS = frozenset({"status", "name", "query_type", "availability_zone"})

#: The action keys of sdrs_05_0406…0409.
REVERSE = "reverse-server-group"
FAILOVER = "failover-server-group"
START = "start-server-group"

#: Where each action is accepted (§4.3 preconditions), as far as azswitch will ever send it. The documented
#: retry paths (``error-reversing`` reversed again, ``error-failing-over`` failed over again) are left to a
#: human: the reconciler stops on an error status and never starts a new operation from one.
_SENDABLE = {
    REVERSE: frozenset({"protected"}),
    FAILOVER: frozenset({"protected"}),
    # ``start-server-group`` also *enables* protection on an ``available`` group; that is the user's
    # decision (ProtectionDisabled), so azswitch sends it only as a reprotect after a failover.
    START: frozenset({"failed-over"}),
}

#: Job ``status`` (§4.5). ``INIT``, ``RUNNING`` and anything unknown mean: keep following.
_JOB_PROGRESS = {"SUCCESS": Progress.SUCCEEDED, "FAIL": Progress.FAILED}


class SdrsClient:
    """The SDRS backend for one (endpoint, project, credentials).

    ``http`` must have the SDRS endpoint as its ``base_url`` (``CloudConnections`` builds it so and shares it);
    ``limiter`` should be shared by every client of the same endpoint and project.

    Two surfaces: the SDRS API as it is (``get_group``, ``reverse``, ``get_job`` …, what the client and oracle
    tests pin) and the neutral ``CloudAPI`` the reconciler uses (``view``, ``start_switchover`` …).
    """

    service = "SDRS"

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
            http, "SDRS", project_id, auth=auth, retry=retry, limiter=limiter, on_request=on_request
        )
        self.page_size = check_page_size(page_size, MAX_PAGE_SIZE)
        self._base = f"/v1/{project_id}"

    def __repr__(self) -> str:
        return f"SdrsClient(project_id={self.project_id!r})"

    # --- reads -------------------------------------------------------------------------------------------

    async def get_group(self, group_id: str) -> ProtectionGroup:
        validate_id("group_id", group_id)
        call = Call(
            "get_group",
            "GET",
            f"{self._base}/{_GROUPS}/{group_id}",
            not_found=GroupNotFound,
            not_found_codes=NOT_FOUND_CODES,
        )
        data = json_object(await self._session.send(call), operation=call.operation)
        return parse_model(
            ProtectionGroup, data.get("server_group"), operation=call.operation, what="server_group"
        )

    async def list_groups(self, **filters: str) -> list[ProtectionGroup]:
        """All groups matching ``filters`` (documented names only), page by page with ``limit``/``offset``."""
        params = self._list_params(filters)
        groups: list[ProtectionGroup] = []
        seen: set[str] = set()
        while True:
            page_params = (*params, ("limit", str(self.page_size)), ("offset", str(len(groups))))
            call = Call("list_groups", "GET", f"{self._base}/{_GROUPS}", params=page_params)
            data = json_object(await self._session.send(call), operation=call.operation)
            items = data.get("server_groups")
            if not isinstance(items, list):
                raise CloudUnavailable("the response lacks a server_groups list", operation=call.operation)
            page = [
                parse_model(ProtectionGroup, item, operation=call.operation, what="server_group")
                for item in items
            ]
            fresh = [group for group in page if group.id not in seen]
            groups += fresh
            seen.update(group.id for group in fresh)
            total = data.get("count")
            # A short page is the last one, and so is reaching ``count``; a page with nothing new means the
            # server ignores ``offset``, and asking again would loop forever.
            if len(page) < self.page_size or not fresh:
                return groups
            if isinstance(total, int) and not isinstance(total, bool) and len(groups) >= total:
                return groups

    @staticmethod
    def _list_params(filters: dict[str, str]) -> tuple[tuple[str, str], ...]:
        params: list[tuple[str, str]] = []
        for name, value in sorted(filters.items()):
            if name not in LIST_FILTERS:
                raise ConfigError(
                    f"unknown list_groups filter {name!r}; use one of {', '.join(sorted(LIST_FILTERS))} "
                    "(paging is automatic)"
                )
            if not isinstance(value, str):
                raise ConfigError(f"list_groups filter {name!r} must be a string, got {type(value).__name__}")
            params.append((name, value))
        return tuple(params)

    async def get_job(self, job_id: str) -> Job:
        validate_id("job_id", job_id)
        call = Call("get_job", "GET", f"{self._base}/jobs/{job_id}")
        data = json_object(await self._session.send(call), operation=call.operation)
        # The job is the body itself (sdrs_05_0101), not wrapped in an envelope.
        return parse_model(Job, data, operation=call.operation, what="job")

    async def availability_zones(self, group: ProtectionGroup) -> list[str]:
        zones = sdrs_states.zones_of(group)
        if not zones:
            raise CloudRejected(
                f"protection group {group.id} reports source_availability_zone "
                f"{group.source_availability_zone!r} and target_availability_zone "
                f"{group.target_availability_zone!r}; a protection group must span two different AZs",
                operation="availability_zones",
            )
        return zones

    def view(self, group: ProtectionGroup, zones: Sequence[str], observed_at: datetime) -> GroupView:
        return sdrs_states.view_of(group, zones, observed_at)

    # --- actions (never resent after they may have been processed; see transport.may_retry) --------------

    async def reverse(self, group_id: str, priority_station: str) -> str | None:
        """``reverse-server-group`` to ``priority_station`` (the desired production site); the job id."""
        if priority_station not in ("source", "target"):
            raise ConfigError(f"priority_station must be 'source' or 'target', got {priority_station!r}")
        return await self._action("reverse", group_id, {REVERSE: {"priority_station": priority_station}})

    async def failover(self, group_id: str) -> str | None:
        return await self._action("failover", group_id, {FAILOVER: {}})

    async def start(self, group_id: str) -> str | None:
        """``start-server-group``: re-protect after a failover (or enable protection). The job id."""
        return await self._action("start", group_id, {START: {}})

    async def start_switchover(self, group_id: str, target_az: str) -> OperationHandle | None:
        group = await self.get_group(group_id)
        station = self._station(group, target_az)
        if group.priority_station == station:
            logger.info(
                "group %s already has its production site at %s (%s); nothing sent",
                group_id,
                station,
                target_az,
            )
            return None
        self._require(group, REVERSE)
        return _handle(await self.reverse(group_id, station))

    async def start_failover(self, group_id: str, target_az: str) -> OperationHandle | None:
        group = await self.get_group(group_id)
        station = self._station(group, target_az)
        if group.priority_station == station:
            logger.info("group %s already runs in %s; no failover sent", group_id, target_az)
            return None
        self._require(group, FAILOVER)
        return _handle(await self.failover(group_id))

    async def start_reprotect(self, group_id: str) -> OperationHandle | None:
        group = await self.get_group(group_id)
        if group.status in ("protected", "reprotecting"):
            logger.info("group %s is %s already; no reprotect sent", group_id, group.status)
            return None
        self._require(group, START)
        return _handle(await self.start(group_id))

    async def follow(self, handle: OperationHandle) -> OperationProgress:
        job = await self.get_job(handle.job_id)
        progress = _JOB_PROGRESS.get(job.status.upper(), Progress.RUNNING)
        if progress is Progress.FAILED:
            words = ": ".join(part for part in (job.error_code, job.fail_reason) if part)
            return OperationProgress(progress, words or None)
        return OperationProgress(progress)

    @staticmethod
    def _station(group: ProtectionGroup, az: str) -> str:
        station = group.station_of(az)
        if station is None:
            raise CloudRejected(
                f"not sent: {az!r} is neither source_availability_zone {group.source_availability_zone!r} nor "
                f"target_availability_zone {group.target_availability_zone!r} of protection group {group.id}",
                operation="plan",
            )
        return station

    @staticmethod
    def _require(group: ProtectionGroup, key: str) -> None:
        allowed = _SENDABLE[key]
        if group.status not in allowed:
            raise CloudRejected(
                f"not sent: {key} is sent only while the group is {' or '.join(sorted(allowed))}, and protection "
                f"group {group.id} is {group.status} now",
                operation=key,
            )

    async def _action(self, operation: str, group_id: str, body: dict[str, Any]) -> str | None:
        validate_id("group_id", group_id)
        call = Call(
            operation,
            "POST",
            f"{self._base}/{_GROUPS}/{group_id}/action",
            body=body,
            not_found=GroupNotFound,
            not_found_codes=NOT_FOUND_CODES,
        )
        response = await self._session.send(call)
        # Accepted from here on: nothing below may raise, or the caller could send the action again.
        if response.status_code != 200:
            logger.warning(
                "%s answered HTTP %d instead of 200; treating it as accepted", operation, response.status_code
            )
        try:
            job_id = json_object(response, operation=operation).get("job_id")
            if isinstance(job_id, str | int) and not isinstance(job_id, bool):
                return cloud_id("job id", str(job_id), operation=operation)
        except CloudUnavailable:
            pass
        logger.warning(
            "%s was accepted without a readable job_id (%s); following the group itself",
            operation,
            response.text[:120],
        )
        return None


def _handle(job_id: str | None) -> OperationHandle | None:
    return OperationHandle(job_id) if job_id else None


if TYPE_CHECKING:
    # mypy proves here that SdrsClient satisfies the CloudAPI protocol.
    _STRUCTURAL_CHECK: type[CloudAPI[ProtectionGroup]] = SdrsClient
