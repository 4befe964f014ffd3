"""The fake SDRS protection groups and their jobs (cloud-api.md §4), beside the EVS engine in ``engine.py``.

Like ``engine.Engine`` it knows nothing of HTTP, authentication or fault injection, and it never waits: an
accepted action creates a ``Job`` that ends at a steady-clock instant, and every read first *settles* the
group (finishes its job if that instant has passed). The HTTP layer settles every SDRS group before an AZ
outage starts or ends, so a job that ends later sees the world as it is when it ends. The AZ outages are the
EVS engine's (one ``outages`` mapping shared by both), and so are the timings.

Errors are ``engine.ApiError`` with SDRS codes (cloud-api.md §6.2), rendered by the HTTP layer as
``{"error": {"code": "SDRS.xxxx", "message": …}}``. The behaviour chosen for each undocumented point is
listed in the package docstring.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from azswitch.dev.simulator.clock import SimClock, sdrs_job_timestamp, sdrs_timestamp
from azswitch.dev.simulator.engine import ApiError
from azswitch.dev.simulator.seed import (
    SDRS_HEALTH_STATUSES,
    SDRS_REPLICATION_STATUSES,
    SDRS_STATIONS,
    SDRS_STATUSES,
    Seed,
    SeedError,
    Timings,
    derived_id,
)

BAD_REQUEST = "SDRS.0201"
INVALID_ACTION = "SDRS.0206"
NOT_ALLOWED = "SDRS.1002"
GROUP_NOT_FOUND = "SDRS.1013"
#: Simulator choice: an unknown job answers HTTP 404 with this code (the job page documents no such answer).
JOB_NOT_FOUND = "SDRS.0404"

#: A job shows ``INIT`` for this many simulated seconds after it was accepted, then ``RUNNING``.
JOB_INIT_SECONDS = 0.5
#: fail_reason of the job of an operation that a control call (``PATCH /_sim/groups/{id}``) cut short.
CANCELLED = "cancelled by the simulator's control API"

LIST_PARAMS = frozenset({"limit", "offset", "status", "name", "availability_zone", "query_type"})
QUERY_TYPES = frozenset({"", "general", "status_abnormal", "stop_protected", "period_no_dr_drill"})


@dataclass(frozen=True)
class Kind:
    """One kind of asynchronous operation: its job type, its statuses and its failure code."""

    action: str
    job_type: str
    busy: str
    failed: str
    error_code: str
    what: str


KINDS: dict[str, Kind] = {
    k.action: k
    for k in (
        Kind(
            "reverse",
            "reverseProtectionGroupNoCG",
            "reversing",
            "error-reversing",
            "SDRS.1029",
            "planned failover",
        ),
        Kind(
            "failover",
            "failoverProtectionGroupNoCG",
            "failing-over",
            "error-failing-over",
            "SDRS.1030",
            "failover",
        ),
        Kind(
            "start",
            "startProtectionGroupNoCG",
            "starting",
            "error-starting",
            "SDRS.1027",
            "enabling protection",
        ),
        Kind(
            "reprotect",
            "reprotectProtectionGroupNoCG",
            "reprotecting",
            "error-reprotecting",
            "SDRS.1032",
            "re-protection",
        ),
        Kind(
            "stop",
            "stopProtectionGroupNoCG",
            "stopping",
            "error-stopping",
            "SDRS.1028",
            "disabling protection",
        ),
    )
}
#: Operations whose next occurrence a test may make fail (``fail_next``).
FAILABLE_ACTIONS = tuple(KINDS)

ACTION_KEYS = ("reverse-server-group", "failover-server-group", "start-server-group", "stop-server-group")

#: Statuses in which an operation is running; an out-of-band station change is refused in them.
IN_PROGRESS = frozenset(
    {"creating", "deleting", "starting", "stopping", "reversing", "failing-over", "reprotecting"}
)
#: Statuses with protection enabled (``protected_status: started``); every other status shows ``stopped``.
PROTECTION_STARTED = frozenset(
    {
        "protected",
        "reversing",
        "error-reversing",
        "failing-over",
        "error-failing-over",
        "stopping",
        "error-stopping",
    }
)


def bad_request(message: str) -> ApiError:
    return ApiError(400, BAD_REQUEST, message)


@dataclass
class Job:
    id: str
    project_id: str
    group_id: str
    kind: Kind
    created: float  # steady
    ends_at: float  # steady
    target_station: str | None = None
    doom: tuple[str, str] | None = None  # (error_code, fail_reason) when fail-next doomed it
    result: str | None = None  # SUCCESS or FAIL once ended
    ended: float | None = None
    error_code: str | None = None
    fail_reason: str | None = None


@dataclass
class SdrsGroup:
    id: str
    project_id: str
    name: str
    description: str
    source_az: str
    target_az: str
    station: str  # "source" or "target": the current production site
    status: str
    replication_status: (
        str  # as stored; an outage of either AZ overlays "inactive" (``replication_status()``)
    )
    health_status: str  # as stored; an outage of the production AZ overlays "abnormal"
    post_upgrade: bool
    created_at: str
    updated_at: str
    job: Job | None = None
    fail_next: dict[str, tuple[str, str]] = field(default_factory=dict)
    # The AZ that was production when it went down: it keeps health_status abnormal until it recovers, also
    # after a failover away from it (like EVS's fault_level), so that a client can tell when a re-protect can
    # succeed.
    fault_az: str | None = None

    def az_of(self, station: str) -> str:
        return self.source_az if station == "source" else self.target_az

    @property
    def primary_az(self) -> str:
        return self.az_of(self.station)

    @property
    def other_station(self) -> str:
        return "target" if self.station == "source" else "source"


class SdrsEngine:
    """Every SDRS protection group and job of every project, and the operations that change them."""

    def __init__(
        self,
        clock: SimClock,
        rng: random.Random,
        outages: Mapping[str, str],
        timings: Callable[[], Timings],
    ) -> None:
        self.clock = clock
        self.rng = rng
        self.outages = outages
        self.timings = timings
        self.groups: dict[str, SdrsGroup] = {}
        self.jobs: dict[str, Job] = {}

    # ----------------------------------------------------------------------------------------- seeding

    def clear(self) -> None:
        self.groups.clear()
        self.jobs.clear()

    def check_conflicts(self, seed: Seed, evs_group_ids: Collection[str]) -> None:
        """Raise ``SeedError`` if the seed's groups clash with existing EVS or SDRS groups."""
        taken = set(evs_group_ids) | set(self.groups)
        clashes = [
            f"group {gid}" for gid in [g.group_id(i) for i, g in enumerate(seed.sdrs_groups)] if gid in taken
        ]
        clashes += [
            f"group {gid}" for gid in [g.group_id(i) for i, g in enumerate(seed.groups)] if gid in self.groups
        ]
        if clashes:
            raise SeedError("seed conflicts with existing objects: " + ", ".join(clashes))

    def load(self, seed: Seed) -> None:
        wall = self.clock.wall()
        count = len(seed.sdrs_groups)
        for index, gs in enumerate(seed.sdrs_groups):
            gid = gs.group_id(index)
            # Seeded groups are a second apart, oldest first, like the EVS ones.
            created = gs.created_at or sdrs_timestamp(wall - (count - index))
            self.groups[gid] = SdrsGroup(
                id=gid,
                project_id=gs.project_id,
                name=gs.name,
                description=gs.description,
                source_az=gs.source_az,
                target_az=gs.target_az,
                station=gs.priority_station,
                status=gs.status,
                replication_status=gs.replication_status,
                health_status=gs.health_status,
                post_upgrade=gs.post_upgrade,
                created_at=created,
                updated_at=created,
            )

    # ------------------------------------------------------------------------------------ status machine

    def replication_status(self, g: SdrsGroup) -> str:
        # Also over active-stopped (unlike EVS): after a failover away from a down AZ, "inactive" is what tells
        # a client that the old site is still out and a re-protect would fail.
        if any(az in self.outages for az in (g.source_az, g.target_az)):
            return "inactive"
        return g.replication_status

    def health_status(self, g: SdrsGroup) -> str:
        if g.primary_az in self.outages or (g.fault_az is not None and g.fault_az in self.outages):
            return "abnormal"
        return g.health_status

    @staticmethod
    def protected_status(g: SdrsGroup) -> str:
        return "started" if g.status in PROTECTION_STARTED else "stopped"

    def job_status(self, job: Job) -> str:
        if job.result is not None:
            return job.result
        return "INIT" if self.clock.now() - job.created < JOB_INIT_SECONDS else "RUNNING"

    def _touch(self, g: SdrsGroup, at: float | None = None) -> None:
        steady = self.clock.now() if at is None else at
        g.updated_at = sdrs_timestamp(self.clock.wall_at(steady))

    def settle(self, g: SdrsGroup) -> None:
        job = g.job
        if job is not None and job.ends_at <= self.clock.now():
            self._finish(g, job)

    def settle_all(self) -> None:
        for g in self.groups.values():
            self.settle(g)

    def _outage_failure(self, g: SdrsGroup, job: Job) -> tuple[str, str] | None:
        kind = job.kind
        if kind.action == "stop":
            return None
        azs = [g.az_of(g.other_station)] if kind.action == "failover" else [g.source_az, g.target_az]
        down = [az for az in azs if az in self.outages]
        if not down:
            return None
        return kind.error_code, f"{kind.what} failed: availability zone {down[0]} is unavailable"

    def _finish(self, g: SdrsGroup, job: Job) -> None:
        g.job = None
        self._touch(g, job.ends_at)
        failure = job.doom or self._outage_failure(g, job)
        if failure is not None:
            g.status = job.kind.failed
            self._end(job, job.ends_at, failure)
            return
        action = job.kind.action
        if action == "reverse":
            g.station = job.target_station or g.other_station
            g.status, g.replication_status = "protected", "active"
        elif action == "failover":
            g.station = g.other_station
            g.status, g.replication_status = "failed-over", "active-stopped"
        elif action in ("start", "reprotect"):
            g.status, g.replication_status = "protected", "active"
        else:  # stop
            g.status, g.replication_status = "available", "active-stopped"
        self._end(job, job.ends_at, None)

    @staticmethod
    def _end(job: Job, at: float, failure: tuple[str, str] | None) -> None:
        job.ended = at
        if failure is None:
            job.result = "SUCCESS"
        else:
            job.result = "FAIL"
            job.error_code, job.fail_reason = failure

    def _cancel(self, g: SdrsGroup) -> None:
        job, g.job = g.job, None
        if job is not None:
            self._end(job, self.clock.now(), (job.kind.error_code, CANCELLED))

    def _start(self, g: SdrsGroup, kind: Kind, seconds: float, target_station: str | None = None) -> Job:
        now = self.clock.now()
        job = Job(
            id=uuid.UUID(int=self.rng.getrandbits(128), version=4).hex,
            project_id=g.project_id,
            group_id=g.id,
            kind=kind,
            created=now,
            ends_at=now + seconds,
            target_station=target_station,
            doom=g.fail_next.pop(kind.action, None),
        )
        self.jobs[job.id] = job
        g.job = job
        g.status = kind.busy
        self._touch(g)
        return job

    # ------------------------------------------------------------------------------------ lookups

    def group_by_id(self, group_id: str) -> SdrsGroup | None:
        g = self.groups.get(group_id)
        if g is not None:
            self.settle(g)
        return g

    def _group(self, project_id: str, group_id: str) -> SdrsGroup:
        g = self.group_by_id(group_id)
        if g is None or g.project_id != project_id:
            raise ApiError(400, GROUP_NOT_FOUND, f"protection group {group_id} not found")
        return g

    # ------------------------------------------------------------------------------------ views

    def _progress(self, g: SdrsGroup) -> int:
        job = g.job
        if job is not None:
            if job.ends_at <= job.created:
                return 99
            done = (self.clock.now() - job.created) / (job.ends_at - job.created)
            return max(0, min(99, int(done * 100)))
        return 100 if self.replication_status(g) in ("active", "active-stopped") else 0

    def group_view(self, g: SdrsGroup) -> dict[str, Any]:
        """All fields of cloud-api.md §4.2; post-upgrade groups show the three health fields as null."""
        legacy = not g.post_upgrade
        vpc = derived_id(g.project_id, "sdrs-vpc", g.source_az)
        return {
            "id": g.id,
            "name": g.name,
            "description": g.description,
            "status": g.status,
            "progress": self._progress(g),
            "source_availability_zone": g.source_az,
            "target_availability_zone": g.target_az,
            "domain_id": derived_id("sdrs-domain", g.source_az, g.target_az),
            "domain_name": f"domain-{g.source_az}-{g.target_az}",
            "priority_station": g.station,
            "protected_instance_num": 1,
            "replication_num": 1,
            "disaster_recovery_drill_num": 0,
            "protected_status": self.protected_status(g) if legacy else None,
            "replication_status": self.replication_status(g) if legacy else None,
            "health_status": self.health_status(g) if legacy else None,
            "source_vpc_id": vpc,
            "target_vpc_id": vpc,  # dr_type migration: within one VPC
            "test_vpc_id": "",
            "dr_type": "migration",
            "server_type": "ECS",
            "created_at": g.created_at,
            "updated_at": g.updated_at,
            "protection_type": None if legacy else "replication-pair",
            "replication_model": None,
        }

    def job_view(self, job: Job) -> dict[str, Any]:
        """cloud-api.md §4.5."""
        return {
            "job_id": job.id,
            "job_type": job.kind.job_type,
            "status": self.job_status(job),
            "entities": {"server_group_id": job.group_id, "sub_jobs": []},
            "begin_time": sdrs_job_timestamp(self.clock.wall_at(job.created)),
            "end_time": None if job.ended is None else sdrs_job_timestamp(self.clock.wall_at(job.ended)),
            "error_code": job.error_code,
            "fail_reason": job.fail_reason,
        }

    def control_job_view(self, job: Job) -> dict[str, Any]:
        return {
            "id": job.id,
            "type": job.kind.job_type,
            "action": job.kind.action,
            "group": job.group_id,
            "projectID": job.project_id,
            "status": self.job_status(job),
            "errorCode": job.error_code,
            "failReason": job.fail_reason,
        }

    def internal_view(self, g: SdrsGroup) -> dict[str, Any]:
        """Everything the control API shows about a protection group, including what the cloud API hides."""
        now = self.clock.now()
        job = g.job
        return {
            "service": "SDRS",
            "id": g.id,
            "projectID": g.project_id,
            "name": g.name,
            "description": g.description,
            "availabilityZones": [g.source_az, g.target_az],
            "priorityStation": g.station,
            "primaryAZ": g.primary_az,
            "secondaryAZ": g.az_of(g.other_station),
            "status": g.status,
            "replicationStatus": self.replication_status(g),
            "healthStatus": self.health_status(g),
            "protectedStatus": self.protected_status(g),
            "postUpgrade": g.post_upgrade,
            "operation": None
            if job is None
            else {
                "action": job.kind.action,
                "jobID": job.id,
                "jobType": job.kind.job_type,
                "phase": self.job_status(job),
                "targetStation": job.target_station,
                "elapsedSeconds": round(now - job.created, 6),
                "dueInSeconds": round(job.ends_at - now, 6),
                "willFail": None
                if job.doom is None
                else {"errorCode": job.doom[0], "failReason": job.doom[1]},
            },
            "failNext": {a: {"errorCode": c, "failReason": r} for a, (c, r) in g.fail_next.items()},
            "outages": {az: self.outages[az] for az in (g.source_az, g.target_az) if az in self.outages},
        }

    # ------------------------------------------------------------------------------------ cloud API

    def list_groups(self, project_id: str, query: Mapping[str, str]) -> dict[str, Any]:
        unknown = sorted(set(query) - LIST_PARAMS)
        if unknown:
            raise bad_request(f"unknown query parameter(s): {', '.join(unknown)}")
        limit = _int_param(query, "limit", 1000, 0, 1000)
        offset = _int_param(query, "offset", 0, 0, 1_000_000_000)
        query_type = query.get("query_type", "")
        if query_type not in QUERY_TYPES:
            raise bad_request(f"query_type must be one of {', '.join(sorted(t for t in QUERY_TYPES if t))}")
        self.settle_all()
        # Created order (dict order: seed order), which is stable across calls.
        groups = [g for g in self.groups.values() if g.project_id == project_id]
        if "status" in query:
            groups = [g for g in groups if g.status == query["status"]]
        if "name" in query:
            wanted = query["name"].lower()
            groups = [g for g in groups if wanted in g.name.lower()]
        if "availability_zone" in query:
            groups = [g for g in groups if g.primary_az == query["availability_zone"]]
        if query_type == "status_abnormal":
            groups = [
                g
                for g in groups
                if g.status.startswith("error")
                or (not g.post_upgrade and self.health_status(g) == "abnormal")
            ]
        elif query_type == "stop_protected":
            groups = [g for g in groups if g.status == "available"]
        page = groups[offset : offset + limit]
        return {"server_groups": [self.group_view(g) for g in page], "count": len(groups)}

    def show_group(self, project_id: str, group_id: str) -> dict[str, Any]:
        return self.group_view(self._group(project_id, group_id))

    def show_job(self, project_id: str, job_id: str) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        if job is None or job.project_id != project_id:
            raise ApiError(404, JOB_NOT_FOUND, f"job {job_id} not found")
        group = self.groups.get(job.group_id)
        if group is not None:
            self.settle(group)
        return self.job_view(job)

    def action(self, project_id: str, group_id: str, body: bytes) -> str:
        """One ``POST …/action``; returns the job ID."""
        key, value = parse_action(body)
        station: str | None = None
        if key == "reverse-server-group":
            if not isinstance(value, dict) or set(value) != {"priority_station"}:
                raise bad_request('reverse-server-group needs {"priority_station": "source"|"target"}')
            station = value["priority_station"]
            if station not in SDRS_STATIONS:
                raise bad_request(f"priority_station must be source or target, not {station!r}")
        elif value not in (None, {}):
            raise bad_request(f"{key} takes no parameters (send {{}})")
        g = self._group(project_id, group_id)
        t = self.timings()
        if key == "reverse-server-group":
            _require(key, g, {"protected", "error-reversing"})
            if station == g.station:
                raise ApiError(400, NOT_ALLOWED, f"the group's production site is already {station}")
            return self._start(g, KINDS["reverse"], t.switchover_seconds, station).id
        if key == "failover-server-group":
            _require(key, g, {"protected", "error-failing-over", "error-reversing"})
            return self._start(g, KINDS["failover"], t.failover_seconds).id
        if key == "start-server-group":
            if g.status in ("failed-over", "error-reprotecting"):
                return self._start(g, KINDS["reprotect"], t.reprotect_seconds).id
            _require(key, g, {"available", "error-starting", "failed-over", "error-reprotecting"})
            return self._start(g, KINDS["start"], t.start_seconds).id
        _require(key, g, {"protected", "error-stopping"})
        return self._start(g, KINDS["stop"], t.stop_seconds).id

    # ------------------------------------------------------------------------------------ control

    def control_group(self, group_id: str) -> SdrsGroup:
        g = self.group_by_id(group_id)
        if g is None:
            raise ApiError(404, GROUP_NOT_FOUND, f"no group {group_id}")
        return g

    def set_primary(self, group_id: str, az: str) -> SdrsGroup:
        """An instant, out-of-band switchover to the station whose AZ is ``az``."""
        g = self.control_group(group_id)
        if az not in (g.source_az, g.target_az):
            raise bad_request(f"{az!r} is not one of the group's AZs {[g.source_az, g.target_az]}")
        if g.status in IN_PROGRESS:
            raise ApiError(409, NOT_ALLOWED, f"group {g.id} is {g.status}; wait for it to settle")
        self._cancel(g)
        station = "source" if az == g.source_az else "target"
        if station != g.station:
            g.station = station
            self._touch(g)
        return g

    def patch_group(self, group_id: str, changes: Mapping[str, Any]) -> SdrsGroup:
        g = self.control_group(group_id)
        allowed: dict[str, tuple[str, Callable[[Any], bool]]] = {
            "status": ("status", lambda v: v in SDRS_STATUSES),
            "priorityStation": ("station", lambda v: v in SDRS_STATIONS),
            "replicationStatus": ("replication_status", lambda v: v in SDRS_REPLICATION_STATUSES),
            "healthStatus": ("health_status", lambda v: v in SDRS_HEALTH_STATUSES),
            "name": ("name", lambda v: isinstance(v, str)),
            "description": ("description", lambda v: isinstance(v, str)),
        }
        for key, value in changes.items():
            if key not in allowed:
                raise bad_request(f"cannot set {key!r} on an SDRS group; settable: {', '.join(allowed)}")
            if not allowed[key][1](value):
                raise bad_request(f"invalid {key}: {value!r}")
        self._cancel(g)
        for key, value in changes.items():
            setattr(g, allowed[key][0], value)
        self._touch(g)
        return g

    def set_fail_next(
        self, group_id: str, action: str, error_code: str | None = None, fail_reason: str | None = None
    ) -> SdrsGroup:
        g = self.control_group(group_id)
        kind = KINDS.get(action)
        if kind is None:
            raise bad_request(f"action must be one of {', '.join(FAILABLE_ACTIONS)}")
        g.fail_next[action] = (
            error_code or kind.error_code,
            fail_reason or f"{kind.what} failed: injected by the simulator's fail-next",
        )
        return g

    def outage_started(self, az: str) -> list[str]:
        """``az`` is down now (the shared ``outages`` says so); return the groups with ``az`` among their AZs.
        Settle every group (``settle_all``) before the outage is recorded."""
        touched = self._touched_by(az)
        for gid in touched:
            g = self.groups[gid]
            if g.primary_az == az:
                g.fault_az = az
        return touched

    def outage_ended(self, az: str) -> list[str]:
        """``az`` is back; return the groups with ``az`` among their AZs."""
        touched = self._touched_by(az)
        for gid in touched:
            g = self.groups[gid]
            if g.fault_az == az:
                g.fault_az = g.primary_az if g.primary_az in self.outages else None
        return touched

    def _touched_by(self, az: str) -> list[str]:
        touched = []
        for g in self.groups.values():
            if az in (g.source_az, g.target_az):
                touched.append(g.id)
                self._touch(g)
        return touched


# ---------------------------------------------------------------------------------------- helpers


def parse_action(body: bytes) -> tuple[str, Any]:
    """``(key, value)`` of an action body; SDRS.0201 for bad JSON, SDRS.0206 for a bad action."""
    if not body.strip():
        raise bad_request("a JSON body is required")
    try:
        document = json.loads(body)
    except ValueError:
        raise bad_request("the body is not valid JSON") from None
    if not isinstance(document, dict) or len(document) != 1:
        raise ApiError(
            400, INVALID_ACTION, "the action body must be a JSON object with exactly one action key"
        )
    ((key, value),) = document.items()
    if key not in ACTION_KEYS:
        raise ApiError(400, INVALID_ACTION, f"unknown action {key!r}; known: {', '.join(ACTION_KEYS)}")
    return key, value


def action_key(body: bytes) -> str | None:
    """The action key for the request log, if the body names exactly one known action."""
    try:
        return parse_action(body)[0]
    except ApiError:
        return None


def _require(key: str, g: SdrsGroup, statuses: set[str]) -> None:
    if g.status not in statuses:
        raise ApiError(
            400,
            NOT_ALLOWED,
            f"{key} not allowed: requires status {' or '.join(sorted(statuses))} "
            f"(group {g.id} is {g.status})",
        )


def _int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise bad_request(f"{name} must be between {low} and {high}")
    return value
