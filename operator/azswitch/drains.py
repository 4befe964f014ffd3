"""ZoneDrain semantics, pure: which drains hold a group, the AZ the group is then steered to, and what a
drain's status says about the groups it matches.

Why a separate object instead of patching ``spec.primaryAZ``: GitOps owns the spec, and a patched spec is
reverted from Git, after which azswitch would switch back (the fight ``deploy/evacuate.sh`` could only avoid
by refusing GitOps-tracked resources). A drain changes a group's *effective* desired AZ only:

* A group is held by an active drain (not expired) that selects it (its labels, its namespace's labels) when
  its ``spec.primaryAZ`` is the drained zone and the zone is one of its two AZs; it is then steered to the
  other AZ of its pair. The spec is never written.
* If the other AZ is drained too (by any drain selecting the group), the group stays where it is and is
  reported blocked (``BothZonesDrained``).
* Every per-group gate still applies: the planner sees only a different desired AZ. A drain never allows a
  failover the group's own spec does not allow.
* Ending (deletion, expiry) needs nothing here: without a holding drain the spec is the desired AZ again.

Several drains of one zone: any one of them holds the group; it names the first by name, so the choice is
stable. Nothing here does I/O; ``azswitch.zonedrains`` feeds it and writes the results.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from azswitch.models import LabelSelector, ZoneDrainSpec


def selector_matches(selector: LabelSelector | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics: absent or empty matches everything; all terms must hold."""
    if selector is None:
        return True
    if any(labels.get(key) != value for key, value in selector.match_labels.items()):
        return False
    for term in selector.match_expressions:
        present = term.key in labels
        if term.operator == "In" and (not present or labels[term.key] not in term.values):
            return False
        if term.operator == "NotIn" and present and labels[term.key] in term.values:
            return False
        if term.operator == "Exists" and not present:
            return False
        if term.operator == "DoesNotExist" and present:
            return False
    return True


@dataclass(frozen=True)
class Drain:
    """A ZoneDrain as the operator understands it (``spec`` parsed, or the reason it could not be)."""

    name: str
    generation: int
    spec: ZoneDrainSpec | None
    #: Why ``spec`` is None: the field and the fix.
    invalid: str | None = None

    def active(self, now: datetime) -> bool:
        return self.spec is not None and (self.spec.expires_at is None or now < self.spec.expires_at)

    def expired(self, now: datetime) -> bool:
        return self.spec is not None and self.spec.expires_at is not None and now >= self.spec.expires_at

    def selects(self, labels: Mapping[str, str], namespace_labels: Mapping[str, str] | None) -> bool:
        """Whether the drain's selectors match a group with ``labels`` in a namespace with
        ``namespace_labels`` (``None``: not known, which only an absent namespaceSelector matches)."""
        if self.spec is None or not selector_matches(self.spec.selector, labels):
            return False
        if self.spec.namespace_selector is None:
            return True
        return namespace_labels is not None and selector_matches(
            self.spec.namespace_selector, namespace_labels
        )

    @property
    def needs_namespace_labels(self) -> bool:
        return self.spec is not None and self.spec.namespace_selector is not None


def parse_drain(body: Mapping[str, Any]) -> Drain:
    """A ZoneDrain object from the API; an invalid spec is kept with its reason (reported on the drain)."""
    meta = body.get("metadata") or {}
    name, generation = str(meta.get("name", "")), int(meta.get("generation") or 0)
    try:
        return Drain(name, generation, ZoneDrainSpec.model_validate(body.get("spec") or {}))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "(spec)"
        return Drain(
            name, generation, None, f"spec.{where}: {first['msg']} (got {str(first.get('input'))[:60]!r})"
        )


@dataclass(frozen=True)
class Hold:
    """A drain holding a group away from ``zone``: steer it to ``target``; ``target`` None when both of the
    group's AZs are drained (it stays where it is)."""

    drain: str
    zone: str
    target: str | None
    comment: str = ""

    @property
    def words(self) -> str:
        """How messages name it: "ZoneDrain az1-outage (storage pool alarm INC-4711)"."""
        return f"ZoneDrain {self.drain}" + (f" ({self.comment})" if self.comment else "")


def hold_for(spec_primary: str, zones: Sequence[str], drains: Iterable[Drain], now: datetime) -> Hold | None:
    """The hold on a group whose spec asks for ``spec_primary`` and whose AZ pair is ``zones``, given the
    drains that select it (active or not: inactive ones are skipped here)."""
    if len(zones) != 2 or spec_primary not in zones:
        return None
    active = sorted((d for d in drains if d.active(now)), key=lambda d: d.name)
    holding = [d for d in active if d.spec is not None and d.spec.zone == spec_primary]
    if not holding:
        return None
    first = holding[0]
    assert first.spec is not None
    other = zones[1] if zones[0] == spec_primary else zones[0]
    both = any(d.spec is not None and d.spec.zone == other for d in active)
    return Hold(first.name, spec_primary, None if both else other, first.spec.comment or "")


# --- the drain's status ------------------------------------------------------------------------------------

#: The blocked list on a drain is capped (the counts are not).
BLOCKED_LIMIT = 50


@dataclass(frozen=True)
class GroupFacts:
    """What a drain's status needs of one ReplicationGroup (from its labels and status)."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    spec_primary: str | None
    zones: tuple[str, ...]
    current: str | None
    drained_by: str | None
    in_flight: bool
    blocker: tuple[str, str] | None  # (reason, message) of the plan's first blocker, if any


def group_facts(body: Mapping[str, Any]) -> GroupFacts:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    plan = status.get("plan") or {}
    blockers = plan.get("blockers") or []
    first = blockers[0] if blockers and isinstance(blockers[0], Mapping) else None
    zones = status.get("availabilityZones") or []
    return GroupFacts(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        labels=dict(meta.get("labels") or {}),
        spec_primary=spec.get("primaryAZ") if isinstance(spec.get("primaryAZ"), str) else None,
        zones=tuple(str(z) for z in zones) if isinstance(zones, list) else (),
        current=status.get("currentPrimaryAZ"),
        drained_by=status.get("drainedBy"),
        in_flight=isinstance(status.get("operation"), Mapping),
        blocker=(str(first.get("reason", "")), str(first.get("message", ""))) if first else None,
    )


@dataclass(frozen=True)
class Summary:
    matched: int
    drained: int
    moving: int
    blocked: tuple[tuple[str, str, str, str], ...]  # (namespace, name, reason, message), all of them

    @property
    def done(self) -> bool:
        return self.matched == self.drained


def summarize(
    drain: Drain, groups: Iterable[GroupFacts], namespace_labels: Mapping[str, Mapping[str, str] | None]
) -> Summary:
    """How the drain's matched groups stand. Matched: selected groups that have the zone as one of their
    AZs (or ask for it, while the AZs are not yet known). Drained: of those, primary outside the zone.
    Moving: an operation in flight. Blocked: neither, with a plan blocker (the reason and message the group
    itself shows)."""
    if drain.spec is None:
        return Summary(0, 0, 0, ())
    zone = drain.spec.zone
    matched = drained = moving = 0
    blocked: list[tuple[str, str, str, str]] = []
    for group in sorted(groups, key=lambda g: (g.namespace, g.name)):
        if not drain.selects(group.labels, namespace_labels.get(group.namespace)):
            continue
        if zone not in group.zones and not (not group.zones and group.spec_primary == zone):
            continue
        matched += 1
        if group.current is not None and group.current != zone:
            drained += 1
        elif group.in_flight:
            moving += 1
        elif group.blocker is not None:
            blocked.append((group.namespace, group.name, *group.blocker))
    return Summary(matched, drained, moving, tuple(blocked))
