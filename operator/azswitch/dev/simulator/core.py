"""The simulator's one request handler, shared by the aiohttp server and the in-process httpx transport.

``Simulator.handle(method, raw_path, raw_query, headers, body)`` takes a request as bytes and strings and
returns a ``SimResponse``; the adapters only translate to and from their frameworks, so a test through the
transport sees exactly what a client sees over real HTTP. This module does the gateway's work (routing,
authentication, fault injection, request IDs, the request log) and delegates the cloud's own behaviour to
``engine.Engine`` (EVS) and ``sdrs.SdrsEngine`` (SDRS protection groups and their jobs). The control API
under ``/_sim/`` is dispatched here too, and each control endpoint has a plain Python method of the same
meaning on ``Simulator``.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import unquote

from azswitch import signing
from azswitch.dev.simulator.auth import (
    API_NOT_FOUND,
    BAD_GATEWAY_REQUEST,
    IAM_FORBIDDEN,
    THROTTLED,
    GatewayError,
    IamError,
    Identity,
)
from azswitch.dev.simulator.clock import SimClock, cloud_timestamp
from azswitch.dev.simulator.engine import ACTION_KEYS, INTERNAL_FAILURE, ApiError, Engine, Group, bad_request
from azswitch.dev.simulator.faults import FaultError, Faults, FaultSpec, parse_faults
from azswitch.dev.simulator.sdrs import SdrsEngine, SdrsGroup
from azswitch.dev.simulator.sdrs import action_key as sdrs_action_key
from azswitch.dev.simulator.seed import Seed, SeedError, load_seed, parse_seed
from azswitch.dev.simulator.wire import SimResponse

GROUPS = "/v2/{project_id}/os-vendor-replication-consistency-groups"
GROUP = GROUPS + "/{id}"
GROUP_ACTION = GROUP + "/action"
PAIRS = "/v2/{project_id}/os-vendor-replications"
PAIR = PAIRS + "/{id}"
VOLUME = "/v2/{project_id}/volumes/{id}"
CLOUD_VOLUME = "/v2/{project_id}/cloudvolumes/{id}"
#: The disk listings (evs_04_2006 EVS-native, with ``ids``; evs_04_2069 OpenStack-style).
CLOUD_VOLUMES_DETAIL = "/v2/{project_id}/cloudvolumes/detail"
VOLUMES_DETAIL = "/v2/{project_id}/volumes/detail"
SDRS_GROUPS = "/v1/{project_id}/server-groups"
SDRS_GROUP = SDRS_GROUPS + "/{id}"
SDRS_GROUP_ACTION = SDRS_GROUP + "/action"
SDRS_JOB = "/v1/{project_id}/jobs/{job_id}"
TOKENS = "/v3/auth/tokens"
INJECTED_FAULT = "EVS.9500"
#: The code of an injected error on an SDRS path (invented, like EVS.9500).
SDRS_INJECTED_FAULT = "SDRS.9500"
#: The request log keeps this many records, so a long ``azswitch simulate`` does not grow without bound.
MAX_LOG_RECORDS = 10_000

SeedSource = Seed | Mapping[str, Any] | str | Path | None
_P = ParamSpec("_P")
_T = TypeVar("_T")


@dataclass(frozen=True)
class _Request:
    method: str
    raw_path: str
    raw_query: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    request_id: str


@dataclass(frozen=True)
class _Route:
    method: str
    template: str
    name: str
    pattern: re.Pattern[str]


def _route(method: str, template: str, name: str) -> _Route:
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    return _Route(method, template, name, re.compile(f"^{regex}$"))


_CLOUD_ROUTES = [
    _route("GET", GROUPS, "list_groups"),
    _route("POST", GROUPS, "create_group"),
    _route("GET", GROUP, "show_group"),
    _route("PUT", GROUP, "update_group"),
    _route("DELETE", GROUP, "delete_group"),
    _route("POST", GROUP_ACTION, "group_action"),
    _route("GET", PAIRS, "list_pairs"),
    _route("GET", PAIR, "show_pair"),
    # The listings before the show routes: ``detail`` would otherwise match ``{id}``.
    _route("GET", CLOUD_VOLUMES_DETAIL, "list_cloud_volumes"),
    _route("GET", VOLUMES_DETAIL, "list_volumes"),
    _route("GET", VOLUME, "show_volume"),
    _route("GET", CLOUD_VOLUME, "show_volume"),
    _route("GET", SDRS_GROUPS, "sdrs_list_groups"),
    _route("GET", SDRS_GROUP, "sdrs_show_group"),
    _route("POST", SDRS_GROUP_ACTION, "sdrs_group_action"),
    _route("GET", SDRS_JOB, "sdrs_show_job"),
    _route("POST", TOKENS, "issue_token"),
    _route("DELETE", TOKENS, "revoke_token"),
]

_CONTROL_ROUTES = [
    _route("GET", "/_sim", "c_describe"),
    _route("POST", "/_sim/reset", "c_reset"),
    _route("POST", "/_sim/seed", "c_seed"),
    _route("GET", "/_sim/groups", "c_groups"),
    _route("GET", "/_sim/groups/{id}", "c_group"),
    _route("PATCH", "/_sim/groups/{id}", "c_patch_group"),
    _route("POST", "/_sim/groups/{id}/primary", "c_primary"),
    _route("POST", "/_sim/groups/{id}/fail-next", "c_fail_next"),
    _route("GET", "/_sim/jobs", "c_jobs"),
    _route("GET", "/_sim/faults", "c_get_faults"),
    _route("POST", "/_sim/faults", "c_set_faults"),
    _route("DELETE", "/_sim/faults", "c_clear_faults"),
    _route("POST", "/_sim/az-outage", "c_outage"),
    _route("DELETE", "/_sim/az-outage/{az}", "c_recover"),
    _route("GET", "/_sim/requests", "c_requests"),
    _route("DELETE", "/_sim/requests", "c_clear_requests"),
    _route("GET", "/_sim/requests/counts", "c_counts"),
    _route("GET", "/_sim/requests/kinds", "c_kinds"),
    _route("GET", "/_sim/clock", "c_clock"),
    _route("POST", "/_sim/clock", "c_advance"),
    _route("DELETE", "/_sim/tokens", "c_revoke_tokens"),
]


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json_response(
    status: int, payload: Any, request_id: str, extra: Mapping[str, str] | None = None
) -> SimResponse:
    headers = {"Content-Type": "application/json", "X-Request-Id": request_id, **(extra or {})}
    return SimResponse(status, headers, json.dumps(payload).encode("utf-8"))


def _empty_response(status: int, request_id: str) -> SimResponse:
    return SimResponse(status, {"X-Request-Id": request_id}, b"")


def _gateway_response(status: int, code: str, message: str, request_id: str, **extra: str) -> SimResponse:
    return _json_response(
        status, {"error_code": code, "error_msg": message, "request_id": request_id}, request_id, extra
    )


def _decode_path(raw_path: str) -> str:
    path = "/".join(unquote(segment) for segment in raw_path.split("/"))
    return path.rstrip("/") or "/"


def _match(routes: list[_Route], method: str, path: str) -> tuple[_Route | None, dict[str, str], bool]:
    """(route, params, path_known): path_known tells 405 from 404 for the control API."""
    known = False
    for route in routes:
        found = route.pattern.match(path)
        if found:
            known = True
            if route.method == method:
                return route, found.groupdict(), True
    return None, {}, known


class Simulator:
    """A fake EVS + SDRS + IAM endpoint with fault injection and a request log.

    ``clock`` is the steady clock (default ``time.monotonic``) and ``wall_clock`` the epoch clock (default:
    derived from ``clock``); ``sleep`` is awaited for injected latency (default ``asyncio.sleep``; pass
    ``ManualClock.sleep`` to keep tests instant); ``rng_seed`` makes random faults and generated IDs
    repeatable.
    """

    def __init__(
        self,
        seed: SeedSource = None,
        *,
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        rng_seed: int | None = 0,
    ) -> None:
        self.clock = SimClock(clock, wall_clock)
        self._sleep = sleep or asyncio.sleep
        self._rng = random.Random(rng_seed)
        self.engine = Engine(self.clock, self._rng)
        # SDRS shares the EVS engine's projects (the gateway checks those), AZ outages and timings.
        self.sdrs = SdrsEngine(self.clock, self._rng, self.engine.outages, lambda: self.engine.timings)
        self.identity = Identity(self.clock)
        self.faults = Faults(random.Random(rng_seed))
        self._log: deque[dict[str, Any]] = deque(maxlen=MAX_LOG_RECORDS)
        self._counts: Counter[str] = Counter()
        self._kinds: Counter[str] = Counter()
        self._seq = 0
        self.initial_seed = self._to_seed(seed)
        self.reset()

    @staticmethod
    def _to_seed(seed: SeedSource) -> Seed:
        if isinstance(seed, (str, Path)):
            return load_seed(seed)
        return parse_seed(seed)

    # ------------------------------------------------------------------------------------ Python control API

    def reset(self, seed: SeedSource = None) -> None:
        """Forget all state (groups, tokens, faults, outages, log); load ``seed`` or the initial one."""
        new_seed = self.initial_seed if seed is None else self._to_seed(seed)
        self.engine.clear()
        self.sdrs.clear()
        self.identity.clear()
        self.faults.clear()
        self.clear_requests()
        self.add_seed(new_seed)

    def add_seed(self, seed: SeedSource) -> None:
        """Add projects, credentials, users, EVS groups and pairs, SDRS groups (and override the timings it
        sets)."""
        parsed = self._to_seed(seed)
        self.identity.load(parsed)  # checks its own clashes first, so a bad seed changes nothing
        try:
            self.sdrs.check_conflicts(parsed, self.engine.groups)
            self.engine.load(parsed)
        except SeedError:
            for cred in parsed.credentials:
                self.identity.credentials.pop(cred.access_key, None)
            for user in parsed.users:
                self.identity.users.pop((user.domain, user.name), None)
            raise
        self.sdrs.load(parsed)

    def describe(self) -> dict[str, Any]:
        """What exists (never secrets): projects, access keys, users, groups, timings, faults, outages."""
        self.engine.settle_all()
        self.sdrs.settle_all()
        return {
            "projects": [{"id": pid, "name": name} for pid, name in self.engine.projects.items()],
            "credentials": [{"accessKey": ak} for ak in self.identity.credentials],
            "users": [{"name": u.name, "domain": u.domain} for u in self.identity.users.values()],
            "groups": [
                {
                    "service": "EVS",
                    "id": g.id,
                    "projectID": g.project_id,
                    "name": g.name,
                    "availabilityZones": list(g.availability_zones),
                    "primaryAZ": g.primary_az,
                }
                for g in self.engine.groups.values()
            ]
            + [
                {
                    "service": "SDRS",
                    "id": g.id,
                    "projectID": g.project_id,
                    "name": g.name,
                    "availabilityZones": [g.source_az, g.target_az],
                    "primaryAZ": g.primary_az,
                    "priorityStation": g.station,
                }
                for g in self.sdrs.groups.values()
            ],
            "timings": self.engine.timings.model_dump(by_alias=True),
            "faults": self.faults.describe(),
            "outages": dict(self.engine.outages),
        }

    def groups(self) -> list[dict[str, Any]]:
        """Internal state of every group, EVS ones first, then SDRS (AZs, primary, in-flight operation …)."""
        self.engine.settle_all()
        self.sdrs.settle_all()
        return [self.engine.internal_view(g) for g in self.engine.groups.values()] + [
            self.sdrs.internal_view(g) for g in self.sdrs.groups.values()
        ]

    def group(self, group_id: str) -> dict[str, Any]:
        sdrs = self._sdrs_group(group_id)
        if sdrs is not None:
            return self.sdrs.internal_view(sdrs)
        return self.engine.internal_view(self._control_group(group_id))

    def set_primary(self, group_id: str, primary_az: str) -> dict[str, Any]:
        """An instant, out-of-band switchover (someone used the console): for drift tests. For an SDRS group
        it moves ``priority_station`` to the station whose AZ is ``primary_az``."""
        if self._sdrs_group(group_id) is not None:
            return self.sdrs.internal_view(self._call(self.sdrs.set_primary, group_id, primary_az))
        return self.engine.internal_view(self._call(self.engine.set_primary, group_id, primary_az))

    def patch_group(self, group_id: str, **changes: Any) -> dict[str, Any]:
        """Force fields (status, replicationStatus, faultLevel, failureDetail, name, description); for an
        SDRS group status, priorityStation, replicationStatus, healthStatus, name, description. Either
        cancels an operation in flight (an SDRS job then ends FAIL)."""
        if self._sdrs_group(group_id) is not None:
            return self.sdrs.internal_view(self._call(self.sdrs.patch_group, group_id, changes))
        return self.engine.internal_view(self._call(self.engine.patch_group, group_id, changes))

    def fail_next(
        self,
        group_id: str,
        action: str,
        failure_detail: str | None = None,
        *,
        error_code: str | None = None,
        fail_reason: str | None = None,
    ) -> dict[str, Any]:
        """Make the group's next ``action`` be accepted, then fail. EVS: reverse, failover, reprotect, sync,
        with ``failure_detail`` (default 37000212). SDRS: reverse, failover, reprotect, start, stop, with the
        job's ``error_code`` and ``fail_reason`` (defaults: the action's SDRS.10xx code, a readable reason)."""
        if self._sdrs_group(group_id) is not None:
            if failure_detail is not None:
                raise ControlError(400, "an SDRS group takes errorCode and failReason, not failureDetail")
            return self.sdrs.internal_view(
                self._call(self.sdrs.set_fail_next, group_id, action, error_code, fail_reason)
            )
        if error_code is not None or fail_reason is not None:
            raise ControlError(400, "an EVS group takes failureDetail, not errorCode or failReason")
        return self.engine.internal_view(
            self._call(self.engine.set_fail_next, group_id, action, failure_detail or INTERNAL_FAILURE)
        )

    def jobs(self) -> list[dict[str, Any]]:
        """Every SDRS job, oldest first: id, type, action, group, projectID, status, errorCode, failReason."""
        self.sdrs.settle_all()
        return [self.sdrs.control_job_view(job) for job in self.sdrs.jobs.values()]

    def set_faults(self, spec: FaultSpec | Mapping[str, Any]) -> None:
        self.faults.set(parse_faults(dict(spec) if isinstance(spec, Mapping) else spec))

    def clear_faults(self) -> None:
        self.faults.clear()

    def az_outage(self, az: str, fault_level: str = "2") -> list[str]:
        """Take an AZ down; return the IDs of the groups (EVS, then SDRS) it touches."""
        self.sdrs.settle_all()  # a job that ended before the outage must not see it
        touched = self._call(self.engine.az_outage, az, str(fault_level))
        return touched + self.sdrs.outage_started(az)

    def az_recover(self, az: str) -> list[str]:
        self.sdrs.settle_all()
        touched = self._call(self.engine.az_recover, az)
        return touched + self.sdrs.outage_ended(az)

    def requests(self) -> list[dict[str, Any]]:
        """The request log (cloud and IAM calls, never control calls), oldest first."""
        return [dict(record) for record in self._log]

    def request_counts(self) -> dict[str, int]:
        """Counts keyed ``"METHOD /path/{template} [action]"``."""
        return dict(self._counts)

    def kind_counts(self) -> dict[str, int]:
        """Counts keyed by request kind (``LIST``, ``GET``, ``ACTION``, ``WRITE``, ``IAM``, ``UNKNOWN``)."""
        return dict(self._kinds)

    def count(self, method: str, template: str, action: str | None = None) -> int:
        key = f"{method.upper()} {template}" + (f" {action}" if action else "")
        return self.request_counts().get(key, 0)

    def clear_requests(self) -> None:
        self._log.clear()
        self._counts.clear()
        self._kinds.clear()

    def advance(self, seconds: float) -> None:
        """Move simulated time forward (steady and wall) without waiting."""
        self.clock.advance(seconds)

    def revoke_tokens(self) -> int:
        return self.identity.revoke_all()

    def _control_group(self, group_id: str) -> Group:
        return self._call(self.engine.control_group, group_id)

    def _sdrs_group(self, group_id: str) -> SdrsGroup | None:
        return self.sdrs.group_by_id(group_id)

    @staticmethod
    def _call(fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            raise ControlError(exc.status, exc.message) from None

    # ------------------------------------------------------------------------------------ request handling

    async def handle(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> SimResponse:
        """Serve one request. ``raw_path``/``raw_query`` as on the wire (percent-encoded)."""
        method = method.upper()
        lowered = {name.lower(): value for name, value in headers.items()}
        request_id = uuid.UUID(int=self._rng.getrandbits(128), version=4).hex
        path = _decode_path(raw_path)
        if path == "/_sim" or path.startswith("/_sim/"):
            return self._control(method, path, body, request_id)

        route, params, _ = _match(_CLOUD_ROUTES, method, path)
        action = None
        if route is not None and route.name == "group_action":
            action = _action_key(body)
        elif route is not None and route.name == "sdrs_group_action":
            action = sdrs_action_key(body)
        template = route.template if route else path
        record: dict[str, Any] = {
            "seq": self._next_seq(),
            "time": self.clock.now(),
            "wallTime": cloud_timestamp(self.clock.wall()),
            "method": method,
            "path": path,
            "query": raw_query,
            "template": template,
            "action": action,
            "status": None,
            "project": params.get("project_id"),
            "group": params.get("id") if route and route.template.startswith((GROUPS, SDRS_GROUPS)) else None,
            "auth": None,
            "requestId": request_id,
            "dropped": False,
            "key": f"{method} {template}" + (f" {action}" if action else ""),
            "kind": _kind(route),
        }
        self._log.append(record)
        self._counts[record["key"]] += 1
        self._kinds[record["kind"]] += 1

        faulty = self.faults.matches(method, path, action)
        if faulty:
            latency = self.faults.latency()
            if latency > 0:
                await self._sleep(latency)
            if self.faults.take_drop("before"):
                record["dropped"] = True
                return SimResponse(0, drop=True)
            retry_after, limit = self.faults.take_throttle(), 10.0
            if retry_after is None and self.faults.spec and self.faults.spec.rate_limit:
                limit = self.faults.spec.rate_limit.per_second
                wait = self.faults.take_rate(str(record["project"] or "iam"), self.clock.now())
                retry_after = None if wait is None else max(1.0, wait)
            if retry_after is not None:
                record["status"] = 429
                return _gateway_response(
                    429,
                    THROTTLED,
                    "The throttling threshold has been reached: policy user over ratelimit, "
                    f"limit:{limit:g}, time:1 second",
                    request_id,
                    **{"Retry-After": str(math.ceil(retry_after))},
                )
            error_status = self.faults.take_error()
            if error_status is not None:
                record["status"] = error_status
                message = f"injected fault: HTTP {error_status}"
                code = (
                    SDRS_INJECTED_FAULT
                    if route is not None and route.name.startswith("sdrs_")
                    else INJECTED_FAULT
                )
                return _json_response(error_status, {"error": {"code": code, "message": message}}, request_id)

        request = _Request(method, raw_path, raw_query, lowered, body, request_id)
        response = self._serve(route, params, request, record)
        record["status"] = response.status
        if faulty and self.faults.take_drop("after"):
            record["dropped"] = True
            return SimResponse(0, drop=True)
        return response

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _serve(
        self, route: _Route | None, params: dict[str, str], request: _Request, record: dict[str, Any]
    ) -> SimResponse:
        method, raw_path, raw_query = request.method, request.raw_path, request.raw_query
        headers, body, request_id = request.headers, request.body, request.request_id
        try:
            if route is None:
                raise GatewayError(
                    404, API_NOT_FOUND, "The API does not exist or has not been published in the environment"
                )
            if route.template == TOKENS:
                return self._iam(route, raw_query, headers, body, request_id)
            principal = self.identity.authenticate(method, raw_path, raw_query, headers, body)
            record["auth"] = principal.kind
            project = params["project_id"]
            claimed = headers.get("x-project-id")
            if claimed is not None and claimed.strip() != project:
                raise GatewayError(
                    400,
                    BAD_GATEWAY_REQUEST,
                    f"X-Project-Id {claimed.strip()} does not match the project {project} in the URL",
                )
            if project not in self.engine.projects or principal.project_id not in (None, project):
                raise GatewayError(
                    403,
                    IAM_FORBIDDEN,
                    f"The IAM user is not authorized to access the API in project {project}",
                )
            return self._cloud(route.name, params, raw_query, body, request_id)
        except GatewayError as exc:
            return _gateway_response(exc.status, exc.code, exc.message, request_id)
        except ApiError as exc:
            return _json_response(
                exc.status, {"error": {"code": exc.code, "message": exc.message}}, request_id
            )
        except IamError as exc:
            return _json_response(exc.status, exc.body(), request_id)

    def _iam(
        self, route: _Route, raw_query: str, headers: dict[str, str], body: bytes, request_id: str
    ) -> SimResponse:
        if route.name == "revoke_token":
            subject = headers.get("x-subject-token", "")
            if not self.identity.revoke(subject):
                raise IamError(
                    404, "The token to revoke (X-Subject-Token) does not exist or is already revoked."
                )
            return _empty_response(204, request_id)
        try:
            document = json.loads(body) if body else None
        except ValueError:
            raise IamError(400, "The request body is not valid JSON.") from None
        query = dict(signing.query_pairs(raw_query))
        value, payload = self.identity.issue_token(
            document,
            self.engine.projects,
            self.engine.timings.token_lifetime_seconds,
            host=headers.get("host", "localhost"),
            catalog="nocatalog" not in query or not query["nocatalog"],
        )
        return _json_response(201, payload, request_id, {"X-Subject-Token": value})

    def _cloud(
        self, name: str, params: dict[str, str], raw_query: str, body: bytes, request_id: str
    ) -> SimResponse:
        engine = self.engine
        project = params["project_id"]
        query = dict(signing.query_pairs(raw_query))
        if name.startswith("sdrs_"):
            return self._sdrs(name, params, query, body, request_id)
        if name == "list_groups":
            return _json_response(
                200, {"replication_consistency_groups": engine.list_groups(project, query)}, request_id
            )
        if name == "show_group":
            return _json_response(
                200, {"replication_consistency_group": engine.show_group(project, params["id"])}, request_id
            )
        if name == "create_group":
            created = engine.create_group(project, _json_body(body))
            return _json_response(202, {"replication_consistency_group": created}, request_id)
        if name == "update_group":
            updated = engine.update_group(project, params["id"], _json_body(body))
            return _json_response(202, {"replication_consistency_group": updated}, request_id)
        if name == "delete_group":
            engine.delete_group(project, params["id"])
            return _empty_response(202, request_id)
        if name == "group_action":
            document = _json_body(body)
            if not isinstance(document, dict) or len(document) != 1:
                raise bad_request("the action body must be a JSON object with exactly one action key")
            ((key, value),) = document.items()
            if key not in ACTION_KEYS:
                raise bad_request(f"unknown action {key!r}; known: {', '.join(ACTION_KEYS)}")
            engine.action(project, params["id"], key, value)
            return _empty_response(200, request_id)
        if name == "list_pairs":
            return _json_response(200, {"replications": engine.list_pairs(project, query)}, request_id)
        if name in ("list_cloud_volumes", "list_volumes"):
            listing = engine.list_volumes(project, query, ids_filter=name == "list_cloud_volumes")
            return _json_response(200, listing, request_id)
        if name == "show_pair":
            return _json_response(200, {"replication": engine.show_pair(project, params["id"])}, request_id)
        return _json_response(200, {"volume": engine.show_volume(project, params["id"])}, request_id)

    def _sdrs(
        self, name: str, params: dict[str, str], query: dict[str, str], body: bytes, request_id: str
    ) -> SimResponse:
        sdrs, project = self.sdrs, params["project_id"]
        if name == "sdrs_list_groups":
            return _json_response(200, sdrs.list_groups(project, query), request_id)
        if name == "sdrs_show_group":
            return _json_response(200, {"server_group": sdrs.show_group(project, params["id"])}, request_id)
        if name == "sdrs_group_action":
            return _json_response(200, {"job_id": sdrs.action(project, params["id"], body)}, request_id)
        return _json_response(200, sdrs.show_job(project, params["job_id"]), request_id)

    # ------------------------------------------------------------------------------------ control over HTTP

    def _control(self, method: str, path: str, body: bytes, request_id: str) -> SimResponse:
        route, params, known = _match(_CONTROL_ROUTES, method, path)
        try:
            if route is None:
                raise ControlError(405 if known else 404, f"no control endpoint {method} {path}")
            document = _control_body(body)
            status, payload = self._control_call(route.name, params, document)
        except ControlError as exc:
            status, payload = exc.status, {"error": exc.message}
        except (SeedError, FaultError) as exc:
            status, payload = 400, {"error": str(exc)}
        if payload is None:
            return _empty_response(status, request_id)
        return _json_response(status, payload, request_id)

    def _control_call(self, name: str, params: dict[str, str], doc: Any) -> tuple[int, Any]:
        gid = params.get("id", "")
        if name == "c_describe":
            return 200, self.describe()
        if name == "c_reset":
            self.reset(doc if doc is not None else None)
            return 200, self.describe()
        if name == "c_seed":
            self.add_seed(_need_object(doc))
            return 200, self.describe()
        if name == "c_groups":
            return 200, self.groups()
        if name == "c_group":
            return 200, self.group(gid)
        if name == "c_patch_group":
            return 200, self.patch_group(gid, **_need_object(doc))
        if name == "c_primary":
            az = _need_object(doc).get("primaryAZ")
            if not isinstance(az, str):
                raise ControlError(400, 'the body must be {"primaryAZ": "<az>"}')
            return 200, self.set_primary(gid, az)
        if name == "c_fail_next" and self._sdrs_group(gid) is not None:
            spec = _need_object(doc)
            action, code, reason = spec.get("action"), spec.get("errorCode"), spec.get("failReason")
            if (
                not isinstance(action, str)
                or not isinstance(code, (str, type(None)))
                or not isinstance(reason, (str, type(None)))
                or set(spec) - {"action", "errorCode", "failReason"}
            ):
                raise ControlError(
                    400,
                    'the body must be {"action": "reverse|failover|reprotect|start|stop", "errorCode": "SDRS.…", '
                    '"failReason": "…"}',
                )
            return 200, self.fail_next(gid, action, error_code=code, fail_reason=reason)
        if name == "c_fail_next":
            spec = _need_object(doc)
            action, detail = spec.get("action"), spec.get("failureDetail", INTERNAL_FAILURE)
            if (
                not isinstance(action, str)
                or not isinstance(detail, str)
                or set(spec) - {"action", "failureDetail"}
            ):
                raise ControlError(
                    400,
                    'the body must be {"action": "reverse|failover|reprotect|sync", "failureDetail": "…"}',
                )
            return 200, self.fail_next(gid, action, detail)
        if name == "c_jobs":
            return 200, self.jobs()
        if name == "c_get_faults":
            return 200, {"faults": self.faults.describe()}
        if name == "c_set_faults":
            self.set_faults(_need_object(doc))
            return 200, {"faults": self.faults.describe()}
        if name == "c_clear_faults":
            self.clear_faults()
            return 204, None
        if name == "c_outage":
            spec = _need_object(doc)
            az, level = spec.get("az"), spec.get("faultLevel", "2")
            if not isinstance(az, str) or not az or set(spec) - {"az", "faultLevel"}:
                raise ControlError(400, 'the body must be {"az": "<az>", "faultLevel": "2"|"5"}')
            return 200, {"az": az, "faultLevel": str(level), "groups": self.az_outage(az, str(level))}
        if name == "c_recover":
            return 200, {"az": params["az"], "groups": self.az_recover(params["az"])}
        if name == "c_requests":
            return 200, self.requests()
        if name == "c_clear_requests":
            self.clear_requests()
            return 204, None
        if name == "c_counts":
            return 200, self.request_counts()
        if name == "c_kinds":
            return 200, self.kind_counts()
        if name == "c_clock":
            return 200, self._clock_doc()
        if name == "c_advance":
            seconds = _need_object(doc).get("advanceSeconds")
            if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
                raise ControlError(400, 'the body must be {"advanceSeconds": <non-negative number>}')
            self.advance(float(seconds))
            return 200, self._clock_doc()
        return 200, {"revoked": self.revoke_tokens()}

    def _clock_doc(self) -> dict[str, Any]:
        return {
            "now": self.clock.now(),
            "wall": cloud_timestamp(self.clock.wall()) + "Z",
            "offsetSeconds": self.clock.offset,
        }


#: Route names by request-log kind (everything else under the cloud routes is GET or WRITE by method).
_LIST_ROUTES = frozenset(
    {"list_groups", "list_pairs", "list_cloud_volumes", "list_volumes", "sdrs_list_groups"}
)
_ACTION_ROUTES = frozenset({"group_action", "sdrs_group_action"})
_IAM_ROUTES = frozenset({"issue_token", "revoke_token"})


def _kind(route: _Route | None) -> str:
    """The request-log ``kind``: LIST (a listing, one per page), GET (one object), ACTION, WRITE, IAM."""
    if route is None:
        return "UNKNOWN"
    if route.name in _LIST_ROUTES:
        return "LIST"
    if route.name in _ACTION_ROUTES:
        return "ACTION"
    if route.name in _IAM_ROUTES:
        return "IAM"
    return "GET" if route.method == "GET" else "WRITE"


def _json_body(body: bytes) -> Any:
    if not body.strip():
        raise bad_request("a JSON body is required")
    try:
        return json.loads(body)
    except ValueError:
        raise bad_request("the body is not valid JSON") from None


def _action_key(body: bytes) -> str | None:
    """The action key for the request log, if the body names exactly one known action."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if isinstance(document, dict) and len(document) == 1:
        (key,) = document
        return key if key in ACTION_KEYS else None
    return None


def _control_body(body: bytes) -> Any:
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError:
        raise ControlError(400, "the body is not valid JSON") from None


def _need_object(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ControlError(400, "the body must be a JSON object")
    return doc
