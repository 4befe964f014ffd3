"""The fake cloud's state (projects, consistency groups, replication pairs, volumes) and its status machine.

It knows nothing of HTTP, authentication or fault injection (``core.py`` does those), so the state machine
can be unit-tested with plain calls. Errors are ``ApiError`` carrying the HTTP status and the EVS-style error
code the HTTP layer will render.

Time is never waited for. An accepted action records an ``Operation`` with the steady-clock instants at which
each of its phases ends, and every read first *settles* the group: it applies, in order, the phases whose
instant has passed. Control calls that change the world (an AZ outage, a recovery, an out-of-band primary
change) settle every group first, so a phase that ends later sees the world as it is when it ends; that is
what lets a switchover that is still ``reversing`` when an AZ goes down fail at the instant it would have
finished. The behaviour chosen for each undocumented point is listed in the package docstring.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azswitch.dev.simulator.clock import SimClock, cloud_timestamp
from azswitch.dev.simulator.seed import (
    FAULT_LEVELS,
    GROUP_STATUSES,
    REPLICATION_STATUSES,
    Seed,
    SeedError,
    Timings,
    derived_id,
)

# Simulator-invented error codes (the os-vendor-replication* pages document none); see the package docstring.
BAD_REQUEST = "EVS.9400"
NOT_FOUND = "EVS.9404"
INVALID_STATE = "EVS.9409"

#: failure_detail used when a phase fails because an AZ of the group is down (peer AZ unreachable).
PEER_UNREACHABLE = "37100043"
#: failure_detail used by fail-next when none is given (internal processing failure).
INTERNAL_FAILURE = "37000212"

TRANSITIONAL = frozenset({"creating", "updating", "deleting", "reversing", "failovering"})

ACTION_KEYS: dict[str, str] = {
    "os-reverse-replication-consistency-group": "reverse",
    "os-failover-replication-consistency-group": "failover",
    "os-sync-replication-consistency-group": "sync",
    "os-stop-replication-consistency-group": "stop",
    "os-reprotect-replication-consistency-group": "reprotect",
    "os-extend-replication-volumes": "extend",
}
#: Actions whose next occurrence a test may make fail (``fail_next``).
FAILABLE_ACTIONS = ("reverse", "failover", "reprotect", "sync")

SORT_KEYS = frozenset(
    {"id", "name", "status", "created_at", "updated_at", "priority_station", "replication_status"}
)
#: The disk listings' documented sort keys (evs_04_2006, evs_04_2069).
VOLUME_SORT_KEYS = frozenset({"id", "status", "size", "created_at"})
#: ``ids`` takes at most this many disk IDs (evs_04_2006).
MAX_IDS = 60


class ApiError(Exception):
    """A cloud error answer: HTTP ``status`` and an EVS-style ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def bad_request(message: str) -> ApiError:
    return ApiError(400, BAD_REQUEST, message)


@dataclass
class Volume:
    id: str
    project_id: str
    name: str
    availability_zone: str
    size: int
    volume_type: str
    created_at: str
    updated_at: str | None = None


@dataclass
class Pair:
    id: str
    project_id: str
    name: str
    volume_ids: list[str]  # production disk first, as at creation; the order never changes
    availability_zones: tuple[str, str]
    primary_az: str
    replication_status: str
    size: int
    volume_type: str
    created_at: str
    group_id: str | None = None
    updated_at: str | None = None
    description: str = ""


@dataclass
class Phase:
    name: str
    start: float
    at: float


@dataclass
class Operation:
    action: str
    started_at: float
    phases: list[Phase]
    target_az: str | None = None
    failure_detail: str | None = None  # set when fail-next doomed this operation


@dataclass
class Group:
    id: str
    project_id: str
    name: str
    description: str
    availability_zones: tuple[str, str]
    primary_az: str
    status: str
    replication_status: str
    base_fault_level: str
    failure_detail: str | None
    pair_ids: list[str]
    created_at: str
    updated_at: str | None = None
    op: Operation | None = None
    fail_next: dict[str, str] = field(default_factory=dict)
    failed_action: str | None = None
    # replication_status before an AZ outage changed it, restored (via a resync) when the AZ recovers.
    pre_outage_replication: str | None = None
    # The failed AZ that was primary when it went down: its fault level shows until it recovers, even after
    # a failover away from it, so that a client can tell when a reprotect can succeed.
    fault_az: str | None = None

    def other_az(self, az: str | None = None) -> str:
        az = az or self.primary_az
        first, second = self.availability_zones
        return second if az == first else first


class Engine:
    """All cloud objects of every project, and the operations that change them."""

    def __init__(self, clock: SimClock, rng: random.Random) -> None:
        self.clock = clock
        self.rng = rng
        self.timings = Timings()
        self.projects: dict[str, str] = {}  # id -> name
        self.groups: dict[str, Group] = {}
        self.pairs: dict[str, Pair] = {}
        self.volumes: dict[str, Volume] = {}
        self.outages: dict[str, str] = {}  # AZ -> fault level

    # ----------------------------------------------------------------------------------------- seeding

    def clear(self) -> None:
        self.timings = Timings()
        self.projects.clear()
        self.groups.clear()
        self.pairs.clear()
        self.volumes.clear()
        self.outages.clear()

    def load(self, seed: Seed) -> None:
        """Add the seed's objects to the state; conflicting IDs raise ``SeedError`` and change nothing."""
        self._check_conflicts(seed)
        if seed.timings.model_fields_set:
            merged = self.timings.model_dump() | seed.timings.model_dump(
                include=seed.timings.model_fields_set
            )
            self.timings = Timings.model_validate(merged)
        for project in seed.projects:
            self.projects[project.id] = project.name
        for pid in seed.project_ids():
            self.projects.setdefault(pid, pid)
        wall = self.clock.wall()
        now_text = cloud_timestamp(wall)
        for index, gs in enumerate(seed.groups):
            gid = gs.group_id(index)
            azs = (gs.availability_zones[0], gs.availability_zones[1])
            group = Group(
                id=gid,
                project_id=gs.project_id,
                name=gs.name,
                description=gs.description,
                availability_zones=azs,
                primary_az=gs.primary_az,
                status=gs.status,
                replication_status=gs.replication_status,
                base_fault_level=gs.fault_level,
                failure_detail=gs.failure_detail,
                pair_ids=[],
                # Seeded groups are a second apart, oldest first, so sorting by created_at is meaningful.
                created_at=gs.created_at or cloud_timestamp(wall - (len(seed.groups) - index)),
            )
            for j, ps in enumerate(gs.pair_seeds()):
                pair = self._new_pair(
                    project_id=gs.project_id,
                    pair_id=ps.id or derived_id(gid, "pair", str(j)),
                    name=ps.name or f"{gs.name or 'group'}-pair-{j}",
                    azs=azs,
                    primary=gs.primary_az,
                    replication_status=gs.replication_status,
                    size=ps.size_gb,
                    volume_type=ps.volume_type,
                    production_volume=ps.production_volume_id,
                    dr_volume=ps.dr_volume_id,
                    created_at=now_text,
                )
                pair.group_id = gid
                group.pair_ids.append(pair.id)
            self.groups[gid] = group
        for index, us in enumerate(seed.pairs):
            pid = us.id or derived_id(us.project_id, "ungrouped-pair", us.name or str(index))
            self._new_pair(
                project_id=us.project_id,
                pair_id=pid,
                name=us.name or f"pair-{index}",
                azs=(us.availability_zones[0], us.availability_zones[1]),
                primary=us.primary_az,
                replication_status=us.replication_status,
                size=us.size_gb,
                volume_type=us.volume_type,
                production_volume=us.production_volume_id,
                dr_volume=us.dr_volume_id,
                created_at=now_text,
            )

    def _check_conflicts(self, seed: Seed) -> None:
        clashes = [
            f"group {g.group_id(i)}" for i, g in enumerate(seed.groups) if g.group_id(i) in self.groups
        ]
        for gi, gs in enumerate(seed.groups):
            for j, ps in enumerate(gs.pair_seeds()):
                pid = ps.id or derived_id(gs.group_id(gi), "pair", str(j))
                if pid in self.pairs:
                    clashes.append(f"pair {pid}")
                clashes += [
                    f"volume {v}"
                    for v in (ps.production_volume_id, ps.dr_volume_id)
                    if v and v in self.volumes
                ]
        for index, us in enumerate(seed.pairs):
            pid = us.id or derived_id(us.project_id, "ungrouped-pair", us.name or str(index))
            if pid in self.pairs:
                clashes.append(f"pair {pid}")
        for project in seed.projects:
            if self.projects.get(project.id, project.name) != project.name:
                clashes.append(f"project {project.id} (named {self.projects[project.id]!r})")
        if clashes:
            raise SeedError("seed conflicts with existing objects: " + ", ".join(clashes))

    def _new_pair(
        self,
        *,
        project_id: str,
        pair_id: str,
        name: str,
        azs: tuple[str, str],
        primary: str,
        replication_status: str,
        size: int,
        volume_type: str,
        production_volume: str | None,
        dr_volume: str | None,
        created_at: str,
    ) -> Pair:
        secondary = azs[1] if primary == azs[0] else azs[0]
        volume_ids = []
        for role, az, explicit in (("production", primary, production_volume), ("dr", secondary, dr_volume)):
            vid = explicit or derived_id(pair_id, role)
            self.volumes[vid] = Volume(
                id=vid,
                project_id=project_id,
                name=f"{name}-{role}",
                availability_zone=az,
                size=size,
                volume_type=volume_type,
                created_at=created_at,
            )
            volume_ids.append(vid)
        pair = Pair(
            id=pair_id,
            project_id=project_id,
            name=name,
            volume_ids=volume_ids,
            availability_zones=azs,
            primary_az=primary,
            replication_status=replication_status,
            size=size,
            volume_type=volume_type,
            created_at=created_at,
        )
        self.pairs[pair_id] = pair
        return pair

    # ------------------------------------------------------------------------------------ status machine

    def fault_level(self, group: Group) -> str:
        """The level of the outage that hit the group's primary AZ, while it lasts; else its own level."""
        if group.fault_az is not None and group.fault_az in self.outages:
            return self.outages[group.fault_az]
        return group.base_fault_level

    def _healthy(self, *azs: str) -> bool:
        return not any(az in self.outages for az in azs)

    def _touch(self, group: Group, at: float | None = None) -> None:
        steady = self.clock.now() if at is None else at
        group.updated_at = cloud_timestamp(self.clock.wall_at(steady))

    def settle(self, group: Group) -> None:
        """Apply every phase of the group's operation that has ended by now."""
        now = self.clock.now()
        op = group.op
        while op is not None and group.op is op and op.phases and op.phases[0].at <= now:
            phase = op.phases.pop(0)
            self._finish(group, op, phase)
            if group.id not in self.groups:
                return
        if op is not None and group.op is op and not op.phases:
            group.op = None

    def settle_all(self) -> None:
        for group in list(self.groups.values()):
            self.settle(group)

    def _finish(self, g: Group, op: Operation, phase: Phase) -> None:
        self._touch(g, phase.at)
        both_up = self._healthy(*g.availability_zones)
        if phase.name in ("created", "updated"):
            g.status = "available"
        elif phase.name == "deleted":
            for pid in g.pair_ids:
                self.pairs[pid].group_id = None
            del self.groups[g.id]
        elif phase.name == "reversed":
            detail = op.failure_detail or (None if both_up else PEER_UNREACHABLE)
            if detail:
                self._fail(g, op, "error_reversing", detail)
            else:
                self._succeed(g, "available", op.target_az or g.other_az(), "copying")
        elif phase.name == "failedover":
            target = op.target_az or g.other_az()
            detail = op.failure_detail or (None if self._healthy(target) else PEER_UNREACHABLE)
            if detail:
                self._fail(g, op, "error_failovering", detail)
            else:
                self._succeed(g, "failovered", target, "active-stopped")
                g.pre_outage_replication = None  # replication is stopped now; a recovery must not resync it
        elif phase.name == "reprotected":
            detail = op.failure_detail or (None if both_up else PEER_UNREACHABLE)
            if detail:
                self._fail(g, op, "error", detail)
                g.replication_status = "error"
            else:
                self._succeed(g, "available", g.primary_az, "copying")
        elif phase.name == "synced":
            if op.action == "sync" and op.failure_detail:
                g.replication_status = "error"
                g.failure_detail = op.failure_detail
                g.failed_action = "sync"
            elif both_up:
                g.replication_status = "active"
                g.pre_outage_replication = None
                if op.action == "sync":
                    g.failure_detail = None
            # With an AZ down the outage's replication_status stands; the recovery resynchronises.

    def _fail(self, g: Group, op: Operation, status: str, detail: str) -> None:
        g.status = status
        g.failure_detail = detail
        g.failed_action = op.action
        op.phases.clear()

    def _succeed(self, g: Group, status: str, primary: str, replication: str) -> None:
        g.status = status
        g.primary_az = primary
        g.replication_status = replication
        g.failure_detail = None
        g.failed_action = None

    def _start(
        self, g: Group, action: str, steps: Iterable[tuple[str, float]], target: str | None = None
    ) -> None:
        now = self.clock.now()
        phases, start = [], now
        for name, seconds in steps:
            phases.append(Phase(name=name, start=start, at=start + seconds))
            start += seconds
        g.op = Operation(
            action=action,
            started_at=now,
            phases=phases,
            target_az=target,
            failure_detail=g.fail_next.pop(action, None),
        )
        self._touch(g)

    # ------------------------------------------------------------------------------------ lookups

    def _group(self, project_id: str, group_id: str) -> Group:
        group = self.groups.get(group_id)
        if group is not None:
            self.settle(group)
        group = self.groups.get(group_id)
        if group is None or group.project_id != project_id:
            raise ApiError(404, NOT_FOUND, f"replication consistency group {group_id} could not be found")
        return group

    def group_by_id(self, group_id: str) -> Group | None:
        group = self.groups.get(group_id)
        if group is not None:
            self.settle(group)
        return self.groups.get(group_id)

    def _project_groups(self, project_id: str) -> list[Group]:
        self.settle_all()
        return [g for g in self.groups.values() if g.project_id == project_id]

    # ------------------------------------------------------------------------------------ views

    def group_view(self, g: Group) -> dict[str, Any]:
        """All fields of cloud-api.md §2.3, with its quirks (naive timestamps, string fault_level)."""
        return {
            "id": g.id,
            "name": g.name,
            "description": g.description,
            "status": g.status,
            "priority_station": g.primary_az,
            "replication_model": "hypermetro",
            "replication_status": g.replication_status,
            "replication_ids": list(g.pair_ids),
            "created_at": g.created_at,
            "updated_at": g.updated_at,
            "failure_detail": g.failure_detail or "",
            "fault_level": self.fault_level(g),
        }

    @staticmethod
    def short_group_view(g: Group) -> dict[str, Any]:
        """What create and update echo (cloud-api.md §2.3, last paragraph)."""
        return {
            "id": g.id,
            "name": g.name,
            "description": g.description,
            "status": g.status,
            "priority_station": g.primary_az,
            "created_at": g.created_at,
            "updated_at": g.updated_at,
        }

    def pair_view(self, p: Pair) -> dict[str, Any]:
        # A grouped pair is replicated by its group, so it shows the group's live state.
        g = self.groups.get(p.group_id) if p.group_id else None
        primary = g.primary_az if g else p.primary_az
        replication = g.replication_status if g else p.replication_status
        fault = self.fault_level(g) if g else self.outages.get(p.primary_az, "0")
        metadata = {"volume_type": p.volume_type, "multiattach": False, "volume_size": p.size}
        return {
            "id": p.id,
            "name": p.name,
            "description": p.description,
            "status": "available",
            "replication_consistency_group_id": p.group_id,
            "volume_ids": ",".join(p.volume_ids),
            "priority_station": primary,
            "created_at": p.created_at,
            "updated_at": (g.updated_at if g else None) or p.updated_at,
            "replication_model": "hypermetro",
            "replication_status": replication,
            "progress": self._progress(g, replication),
            "failure_detail": (g.failure_detail if g else None) or "",
            "record_metadata": _json_string(metadata),
            "fault_level": fault,
        }

    def _progress(self, g: Group | None, replication: str) -> str:
        if replication in ("active", "active-stopped"):
            return "100"
        if g is None or g.op is None or replication != "copying":
            return "0"
        for phase in g.op.phases:
            if phase.name == "synced" and phase.at > phase.start:
                done = (self.clock.now() - phase.start) / (phase.at - phase.start)
                return str(max(0, min(99, int(done * 100))))
        return "0"

    @staticmethod
    def volume_view(v: Volume) -> dict[str, Any]:
        return {
            "id": v.id,
            "name": v.name,
            "status": "in-use",
            "availability_zone": v.availability_zone,
            "size": v.size,
            "volume_type": v.volume_type,
            "multiattach": False,
            "bootable": "false",
            "encrypted": False,
            "created_at": v.created_at,
            "updated_at": v.updated_at,
            "metadata": {},
            "os-vol-tenant-attr:tenant_id": v.project_id,
        }

    def internal_view(self, g: Group) -> dict[str, Any]:
        """Everything the control API shows about a group, including what the cloud API hides."""
        now = self.clock.now()
        op = g.op
        volumes = []
        for pid in g.pair_ids:
            for vid in self.pairs[pid].volume_ids:
                v = self.volumes[vid]
                role = "production" if v.availability_zone == g.primary_az else "dr"
                volumes.append(
                    {"id": v.id, "pairID": pid, "availabilityZone": v.availability_zone, "role": role}
                )
        return {
            "service": "EVS",
            "id": g.id,
            "projectID": g.project_id,
            "name": g.name,
            "availabilityZones": list(g.availability_zones),
            "primaryAZ": g.primary_az,
            "secondaryAZ": g.other_az(),
            "status": g.status,
            "replicationStatus": g.replication_status,
            "faultLevel": self.fault_level(g),
            "failureDetail": g.failure_detail,
            "pairIDs": list(g.pair_ids),
            "volumes": volumes,
            "operation": None
            if op is None
            else {
                "action": op.action,
                "targetAZ": op.target_az,
                "elapsedSeconds": round(now - op.started_at, 6),
                "willFail": op.failure_detail,
                "pendingPhases": [{"phase": p.name, "dueInSeconds": round(p.at - now, 6)} for p in op.phases],
            },
            "failNext": dict(g.fail_next),
            "outages": {az: self.outages[az] for az in g.availability_zones if az in self.outages},
        }

    # ------------------------------------------------------------------------------------ cloud reads

    def list_groups(self, project_id: str, query: Mapping[str, str]) -> list[dict[str, Any]]:
        def has_volume(view: dict[str, Any], volume_id: str) -> bool:
            return any(volume_id in self.pairs[pid].volume_ids for pid in view["replication_ids"])

        views = [self.group_view(g) for g in self._project_groups(project_id)]
        return paginate(
            views,
            query,
            {
                "name": _equals("name"),
                "status": _equals("status"),
                "priority_station": _equals("priority_station"),
                "volume_id": has_volume,
            },
        )

    def show_group(self, project_id: str, group_id: str) -> dict[str, Any]:
        return self.group_view(self._group(project_id, group_id))

    def list_pairs(self, project_id: str, query: Mapping[str, str]) -> list[dict[str, Any]]:
        self.settle_all()
        views = [self.pair_view(p) for p in self.pairs.values() if p.project_id == project_id]

        def same_volumes(view: dict[str, Any], wanted: str) -> bool:
            return set(view["volume_ids"].split(",")) == {v.strip() for v in wanted.split(",") if v.strip()}

        return paginate(
            views,
            query,
            {
                "name": _equals("name"),
                "status": _equals("status"),
                "priority_station": _equals("priority_station"),
                "replication_consistency_group_id": _equals("replication_consistency_group_id"),
                "volume_id": lambda view, wanted: wanted in view["volume_ids"].split(","),
                "volume_ids": same_volumes,
            },
        )

    def show_pair(self, project_id: str, pair_id: str) -> dict[str, Any]:
        self.settle_all()
        pair = self.pairs.get(pair_id)
        if pair is None or pair.project_id != project_id:
            raise ApiError(404, NOT_FOUND, f"replication {pair_id} could not be found")
        return self.pair_view(pair)

    def list_volumes(self, project_id: str, query: Mapping[str, str], *, ids_filter: bool) -> dict[str, Any]:
        """A disk listing: ``cloudvolumes/detail`` (``ids_filter``: ``ids`` honoured) or ``volumes/detail``
        (``ids``/``id`` are unknown there, hence ignored). ``count`` (matches before paging) only on the
        EVS-native one."""
        views = [self.volume_view(v) for v in self.volumes.values() if v.project_id == project_id]
        filters: dict[str, Callable[[dict[str, Any], str], bool]] = {
            "name": _equals("name"),
            "status": _equals("status"),
            "availability_zone": _equals("availability_zone"),
        }
        if ids_filter:
            wanted = _ids_param(query["ids"]) if "ids" in query else None
            if wanted is not None:
                views = [v for v in views if v["id"] in wanted]
            elif "id" in query:
                filters["id"] = _equals("id")
        matching = select(views, query, filters, VOLUME_SORT_KEYS)
        page = page_of(matching, query)
        body: dict[str, Any] = {"volumes": page}
        if ids_filter:
            body["count"] = len(matching)
        if page and page[-1] is not matching[-1]:
            body["volumes_links"] = [{"rel": "next", "href": f"?marker={page[-1]['id']}"}]
        return body

    def show_volume(self, project_id: str, volume_id: str) -> dict[str, Any]:
        volume = self.volumes.get(volume_id)
        if volume is None or volume.project_id != project_id:
            raise ApiError(404, NOT_FOUND, f"volume {volume_id} could not be found")
        return self.volume_view(volume)

    # ------------------------------------------------------------------------------------ cloud writes

    def create_group(self, project_id: str, body: Any) -> dict[str, Any]:
        spec = _root(body, "replication_consistency_group")
        _only_keys(spec, {"name", "description", "replication_ids", "priority_station", "replication_model"})
        name = _opt_text(spec, "name")
        description = _opt_text(spec, "description")
        if spec.get("replication_model") != "hypermetro":
            raise bad_request("replication_model is required and must be 'hypermetro'")
        station = spec.get("priority_station")
        if not isinstance(station, str) or not station:
            raise bad_request("priority_station is required (the AZ holding the production disks)")
        pair_ids = _id_list(spec, "replication_ids")
        if not pair_ids:
            raise bad_request("replication_ids is required and must name at least one replication pair")
        self.settle_all()
        pairs = [self._free_pair(project_id, pid) for pid in pair_ids]
        azs = pairs[0].availability_zones
        for pair in pairs:
            if set(pair.availability_zones) != set(azs):
                raise bad_request(f"replication {pair.id} is not between the same two AZs as {pairs[0].id}")
            if pair.primary_az != station:
                raise bad_request(
                    f"priority_station {station!r} differs from the production AZ {pair.primary_az!r} "
                    f"of replication {pair.id}"
                )
        statuses = {p.replication_status for p in pairs}
        group = Group(
            id=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            project_id=project_id,
            name=name,
            description=description,
            availability_zones=azs,
            primary_az=station,
            status="creating",
            replication_status=statuses.pop() if len(statuses) == 1 else "inactive",
            base_fault_level="0",
            failure_detail=None,
            pair_ids=[p.id for p in pairs],
            created_at=cloud_timestamp(self.clock.wall()),
        )
        for pair in pairs:
            pair.group_id = group.id
        self.groups[group.id] = group
        self._start(group, "create", [("created", self.timings.create_seconds)])
        group.updated_at = None  # a brand-new group shows updated_at null, like the documented examples
        return self.short_group_view(group)

    def _free_pair(self, project_id: str, pair_id: str) -> Pair:
        pair = self.pairs.get(pair_id)
        if pair is None or pair.project_id != project_id:
            raise bad_request(f"replication {pair_id} could not be found")
        if pair.group_id is not None:
            raise bad_request(f"replication {pair_id} already belongs to group {pair.group_id}")
        return pair

    def update_group(self, project_id: str, group_id: str, body: Any) -> dict[str, Any]:
        spec = _root(body, "replication_consistency_group")
        _only_keys(
            spec,
            {"name", "description", "replication_model", "add_replication_ids", "remove_replication_ids"},
        )
        g = self._group(project_id, group_id)
        if "replication_model" in spec and spec["replication_model"] != "hypermetro":
            raise bad_request("replication_model must be 'hypermetro'")
        name = _opt_text(spec, "name", g.name)
        description = _opt_text(spec, "description", g.description)
        add = _id_list(spec, "add_replication_ids")
        remove = _id_list(spec, "remove_replication_ids")
        if g.status in TRANSITIONAL or g.status == "error_deleting":
            raise _state_error("update", g, "the group is busy")
        if add or remove:
            if g.status != "available" or g.replication_status != "active-stopped":
                raise _state_error(
                    "adding or removing replication pairs",
                    g,
                    "requires status available and replication_status active-stopped (stop the group first)",
                )
            to_add = [self._free_pair(project_id, pid) for pid in add]
            for pair in to_add:
                if set(pair.availability_zones) != set(g.availability_zones):
                    raise bad_request(f"replication {pair.id} is not between the group's AZs")
                if pair.primary_az != g.primary_az:
                    raise bad_request(f"replication {pair.id} has its production disk in {pair.primary_az}")
            for pid in remove:
                if pid not in g.pair_ids:
                    raise bad_request(f"replication {pid} is not in group {g.id}")
            for pair in to_add:
                pair.group_id = g.id
                g.pair_ids.append(pair.id)
            for pid in remove:
                pair = self.pairs[pid]
                # The pair leaves with the state it had while grouped.
                pair.group_id = None
                pair.primary_az = g.primary_az
                pair.replication_status = g.replication_status
                pair.updated_at = g.updated_at
                g.pair_ids.remove(pid)
        g.name, g.description = name, description
        g.status = "updating"
        self._start(g, "update", [("updated", self.timings.update_seconds)])
        return self.short_group_view(g)

    def delete_group(self, project_id: str, group_id: str) -> None:
        g = self._group(project_id, group_id)
        if g.pair_ids:
            raise _state_error("delete", g, "remove every replication pair from the group first")
        if g.status not in ("available", "error"):
            raise _state_error("delete", g, "requires status available or error")
        g.status = "deleting"
        self._start(g, "delete", [("deleted", self.timings.delete_seconds)])

    def action(self, project_id: str, group_id: str, key: str, value: Any) -> None:
        """One of the six ``POST …/action`` keys; ``key`` is known (the HTTP layer checked the body)."""
        kind = ACTION_KEYS[key]
        if kind != "extend" and value not in (None, {}):
            raise bad_request(f"{key} takes no parameters (send null)")
        g = self._group(project_id, group_id)
        t = self.timings
        if kind == "reverse":
            _require(key, g, {"available", "error_reversing"})
            if g.replication_status != "active":
                raise _state_error(key, g, "requires replication_status active (data synchronised)")
            if self.fault_level(g) != "0":
                raise _state_error(key, g, f"requires fault_level 0, the group has {self.fault_level(g)}")
            g.status = "reversing"
            self._start(
                g, kind, [("reversed", t.switchover_seconds), ("synced", t.copying_seconds)], g.other_az()
            )
        elif kind == "failover":
            _require(key, g, {"available", "error_reversing", "error_failovering"})
            if self.fault_level(g) == "5":
                raise _state_error(
                    key, g, "fault_level 5: the replication link is down, failover is impossible"
                )
            g.status = "failovering"
            self._start(g, kind, [("failedover", t.failover_seconds)], g.other_az())
        elif kind == "reprotect":
            if not (g.status == "failovered" or (g.status == "error" and g.failed_action == "reprotect")):
                raise _state_error(key, g, "requires status failovered")
            g.status = "failovered"
            g.replication_status = "copying"
            self._start(g, kind, [("reprotected", t.reprotect_seconds), ("synced", t.copying_seconds)])
        elif kind == "sync":
            _require(key, g, {"available"})
            g.replication_status = "copying"
            self._start(g, kind, [("synced", t.sync_seconds)])
        elif kind == "stop":
            _require(key, g, {"available"})
            g.replication_status = "active-stopped"
            g.op = None  # a pending copying -> active step no longer happens
            self._touch(g)
        else:
            self._extend(key, g, value)

    def _extend(self, key: str, g: Group, value: Any) -> None:
        _require(key, g, {"available"})
        if g.replication_status == "error":
            raise _state_error(key, g, "requires replication_status other than error")
        items = value.get("replications") if isinstance(value, dict) else None
        if (
            not isinstance(value, dict)
            or set(value) != {"replications"}
            or not isinstance(items, list)
            or not items
        ):
            raise bad_request(f'{key} needs {{"replications": [{{"id": …, "new_size": …}}, …]}}')
        sizes: dict[str, int] = {}
        for item in items:
            if not isinstance(item, dict) or set(item) != {"id", "new_size"}:
                raise bad_request('each replication needs exactly "id" and "new_size"')
            pid, size = item["id"], item["new_size"]
            if not isinstance(size, int) or isinstance(size, bool):
                raise bad_request("new_size must be an integer number of GB")
            if pid not in g.pair_ids:
                raise bad_request(f"replication {pid} is not in group {g.id}")
            if size <= self.pairs[pid].size:
                raise bad_request(f"new_size {size} must exceed the current size {self.pairs[pid].size} GB")
            sizes[pid] = size
        now_text = cloud_timestamp(self.clock.wall())
        for pid, size in sizes.items():
            pair = self.pairs[pid]
            pair.size = size
            pair.updated_at = now_text
            for vid in pair.volume_ids:
                self.volumes[vid].size = size
                self.volumes[vid].updated_at = now_text

    # ------------------------------------------------------------------------------------ control

    def control_group(self, group_id: str) -> Group:
        group = self.group_by_id(group_id)
        if group is None:
            raise ApiError(404, NOT_FOUND, f"no group {group_id}")
        return group

    def set_primary(self, group_id: str, az: str) -> Group:
        g = self.control_group(group_id)
        if az not in g.availability_zones:
            raise bad_request(f"{az!r} is not one of the group's AZs {list(g.availability_zones)}")
        if g.status in TRANSITIONAL:
            raise ApiError(409, INVALID_STATE, f"group {g.id} is {g.status}; wait for it to settle")
        g.op = None
        if g.primary_az != az:
            g.primary_az = az
            self._touch(g)
        return g

    def patch_group(self, group_id: str, changes: Mapping[str, Any]) -> Group:
        g = self.control_group(group_id)
        allowed: dict[str, tuple[str, Callable[[Any], bool]]] = {
            "status": ("status", lambda v: v in GROUP_STATUSES),
            "replicationStatus": ("replication_status", lambda v: v in REPLICATION_STATUSES),
            "faultLevel": ("base_fault_level", lambda v: v in FAULT_LEVELS),
            "failureDetail": ("failure_detail", lambda v: v is None or isinstance(v, str)),
            "name": ("name", lambda v: isinstance(v, str)),
            "description": ("description", lambda v: isinstance(v, str)),
        }
        for key, value in changes.items():
            if key not in allowed:
                raise bad_request(f"cannot set {key!r}; settable: {', '.join(allowed)}")
            if not allowed[key][1](value):
                raise bad_request(f"invalid {key}: {value!r}")
        for key, value in changes.items():
            setattr(g, allowed[key][0], value)
        g.op = None
        g.failed_action = None
        self._touch(g)
        return g

    def set_fail_next(self, group_id: str, action: str, detail: str) -> Group:
        g = self.control_group(group_id)
        if action not in FAILABLE_ACTIONS:
            raise bad_request(f"action must be one of {', '.join(FAILABLE_ACTIONS)}")
        g.fail_next[action] = detail
        return g

    def az_outage(self, az: str, level: str) -> list[str]:
        """Take an AZ down; return the IDs of the groups it touches."""
        if level not in ("2", "5"):
            raise bad_request('faultLevel must be "2" or "5"')
        self.settle_all()
        self.outages[az] = level
        touched = []
        for g in self.groups.values():
            if az not in g.availability_zones:
                continue
            touched.append(g.id)
            self._touch(g)
            if g.primary_az == az:
                g.fault_az = az
            if g.replication_status == "active-stopped":
                continue  # nothing is replicating, so nothing breaks
            if g.pre_outage_replication is None:
                g.pre_outage_replication = g.replication_status
            if g.primary_az == az:
                g.replication_status = "error" if level == "2" else "inactive"
            else:
                g.replication_status = "inactive"
        return touched

    def az_recover(self, az: str) -> list[str]:
        """Bring an AZ back; groups it broke resynchronise (copying, then active). Return touched IDs."""
        self.settle_all()
        if self.outages.pop(az, None) is None:
            raise ApiError(404, NOT_FOUND, f"AZ {az} has no outage")
        touched = []
        for g in self.groups.values():
            if az not in g.availability_zones:
                continue
            if g.fault_az == az:
                g.fault_az = g.primary_az if g.primary_az in self.outages else None
                touched.append(g.id)
                self._touch(g)
            if g.pre_outage_replication is None or not self._healthy(*g.availability_zones):
                continue
            if g.id not in touched:
                touched.append(g.id)
            before, g.pre_outage_replication = g.pre_outage_replication, None
            if g.op is not None:
                continue  # the operation in flight decides the replication status when it ends
            if before in ("active", "copying"):
                g.replication_status = "copying"
                self._start(g, "resync", [("synced", self.timings.copying_seconds)])
            else:
                g.replication_status = before
                self._touch(g)
        return touched


# ---------------------------------------------------------------------------------------- helpers


def _json_string(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _require(key: str, g: Group, statuses: set[str]) -> None:
    if g.status not in statuses:
        raise _state_error(key, g, f"requires status {' or '.join(sorted(statuses))}")


def _state_error(what: str, g: Group, why: str) -> ApiError:
    return ApiError(
        400,
        INVALID_STATE,
        f"{what} not allowed: {why} (group {g.id} is status {g.status}, "
        f"replication_status {g.replication_status})",
    )


def _root(body: Any, key: str) -> dict[str, Any]:
    if not isinstance(body, dict) or set(body) != {key} or not isinstance(body[key], dict):
        raise bad_request(f'the body must be {{"{key}": {{…}}}}')
    root: dict[str, Any] = body[key]
    return root


def _only_keys(spec: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise bad_request(f"unknown field(s): {', '.join(unknown)}")


def _opt_text(spec: Mapping[str, Any], key: str, default: str = "") -> str:
    value = spec.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str) or len(value.encode("utf-8")) > 255:
        raise bad_request(f"{key} must be a string of at most 255 bytes")
    return value


def _id_list(spec: Mapping[str, Any], key: str) -> list[str]:
    value = spec.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise bad_request(f"{key} must be a list of IDs")
    if len(set(value)) != len(value):
        raise bad_request(f"{key} lists an ID twice")
    return list(value)


def _equals(view_key: str) -> Callable[[dict[str, Any], str], bool]:
    return lambda view, wanted: view.get(view_key) == wanted


def _parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.strip().replace(" ", "T").replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


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


def paginate(
    views: list[dict[str, Any]],
    query: Mapping[str, str],
    filters: Mapping[str, Callable[[dict[str, Any], str], bool]],
) -> list[dict[str, Any]]:
    """Filter, sort, then page (marker, offset, limit) the way the documented list APIs describe."""
    return page_of(select(views, query, filters, SORT_KEYS), query)


def select(
    views: list[dict[str, Any]],
    query: Mapping[str, str],
    filters: Mapping[str, Callable[[dict[str, Any], str], bool]],
    sort_keys: frozenset[str],
) -> list[dict[str, Any]]:
    """Filter and sort a listing (``sort_key``, default created_at; ``sort_dir``, default desc)."""
    _int_param(query, "limit", 1000, 1, 1000)
    _int_param(query, "offset", 0, 0, 1_000_000)
    sort_key = query.get("sort_key", "created_at")
    sort_dir = query.get("sort_dir", "desc")
    if sort_key not in sort_keys:
        raise bad_request(f"sort_key must be one of {', '.join(sorted(sort_keys))}")
    if sort_dir not in ("asc", "desc"):
        raise bad_request("sort_dir must be asc or desc")
    for name, keep in filters.items():
        if name in query:
            views = [v for v in views if keep(v, query[name])]
    if "changes-since" in query:
        try:
            since = _parse_time(query["changes-since"])
        except ValueError:
            raise bad_request("changes-since must be an ISO 8601 time") from None
        views = [v for v in views if _parse_time(v["updated_at"] or v["created_at"]) >= since]
    # Ties (same second) are broken by id so that paging is stable.
    views.sort(key=lambda v: v["id"], reverse=sort_dir == "desc")
    views.sort(key=lambda v: _sort_value(v.get(sort_key)), reverse=sort_dir == "desc")
    return views


def _sort_value(value: Any) -> Any:
    # Sizes sort as numbers, everything else as text (a missing value first).
    return (
        (0, value, "") if isinstance(value, int) and not isinstance(value, bool) else (1, 0, str(value or ""))
    )


def page_of(views: list[dict[str, Any]], query: Mapping[str, str]) -> list[dict[str, Any]]:
    """One page of a selected listing: after ``marker`` (an id on it, else 400), then ``offset``, ``limit``."""
    limit = _int_param(query, "limit", 1000, 1, 1000)
    offset = _int_param(query, "offset", 0, 0, 1_000_000)
    if "marker" in query:
        ids = [v["id"] for v in views]
        if query["marker"] not in ids:
            raise bad_request(f"marker {query['marker']} not found")
        views = views[ids.index(query["marker"]) + 1 :]
    return views[offset : offset + limit]


def _ids_param(raw: str) -> set[str]:
    """``ids=['id1','id2',...]`` as documented; also accepts double quotes, no brackets, no quotes."""
    text = raw.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    ids = {part.strip().strip("'\"").strip() for part in text.split(",")}
    ids.discard("")
    if len(ids) > MAX_IDS:
        raise bad_request(f"ids takes at most {MAX_IDS} disk IDs, got {len(ids)}")
    return ids
