"""The planner: a pure function from (spec, cloud observation, time, approvals) to a :class:`Plan`.

This is the "plan" of refresh → plan → apply → record (design.md §3). It decides *what* should happen and
*why not yet*, and nothing else: no I/O, no clock (``now`` is an input), no kopf, no HTTP — so every gate
is a table row in ``tests/unit/test_plan.py`` and ``azswitch plan`` can show the same answer the operator
would act on. Suspension and operations already in flight are the reconciler's business, not the planner's:
the reconciler makes no cloud call when suspended, and never plans while an operation is in flight.

A plan names the action needed (even when it cannot run now, so that status shows the way forward) and
lists every blocker that applies, each with a :class:`BlockKind` saying who clears it: time (WAIT), a
person's decision (HOLD), a change in the cloud or the spec (BLOCKED), or a human repair (STALLED).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from azswitch.drains import Hold
from azswitch.durations import format_duration
from azswitch.models import Phase, ReplicationGroupSpec
from azswitch.observation import Fault, GroupState, GroupView, Replication

#: The annotation whose value approves one generation when ``spec.switchover.approval`` is Manual.
APPROVE_ANNOTATION = "azswitch.io/approve"
#: Under a ZoneDrain, a Manual group's move is approved per drain: its value names the drain.
APPROVE_DRAIN_ANNOTATION = "azswitch.io/approve-drain"
#: Under ``spec.drift: Report``, its value (a drift's id) lets the operator move the drifted group back.
CORRECT_DRIFT_ANNOTATION = "azswitch.io/correct-drift"


class Action(StrEnum):
    NONE = "None"
    SWITCHOVER = "Switchover"
    FAILOVER = "Failover"
    REPROTECT = "Reprotect"


class BlockKind(StrEnum):
    WAIT = "Wait"  # transient: clears by itself (time passes, the cloud finishes something)
    HOLD = "Hold"  # waits for a person's decision (approval) or for configuration (dryRun)
    BLOCKED = "Blocked"  # cannot proceed until the cloud state or the spec changes
    STALLED = "Stalled"  # needs a human: invalid spec, link down, cloud error state


@dataclass(frozen=True)
class Blocker:
    """One reason the plan cannot run now; ``message`` tells the user what to do about it."""

    reason: str
    message: str
    kind: BlockKind
    retry_at: datetime | None = None


@dataclass(frozen=True)
class Plan:
    """The action needed (``NONE`` when nothing is, or nothing can be decided) and everything blocking it.

    ``reason`` says why this action (or, for a gated ``NONE``, names the first blocker); ``source`` and
    ``target`` are the primary AZ before and after the action.
    """

    action: Action
    source: str | None
    target: str | None
    reason: str
    message: str
    blockers: tuple[Blocker, ...] = ()

    @property
    def executable(self) -> bool:
        """True when the reconciler may start ``action`` now."""
        return self.action is not Action.NONE and not self.blockers

    def has(self, kind: BlockKind) -> bool:
        return any(blocker.kind is kind for blocker in self.blockers)


@dataclass(frozen=True)
class Drift:
    """The cloud's primary moved from ``source`` to ``target`` without an operation of ours (status.drift),
    seen at ``generation``; ``id`` is what ``azswitch.io/correct-drift`` must name to approve moving back."""

    id: str
    source: str
    target: str
    generation: int


@dataclass(frozen=True)
class PlanInput:
    """Everything the planner looks at; the reconciler gathers it, so that the planner needs no I/O."""

    spec: ReplicationGroupSpec
    observation: GroupView
    generation: int
    now: datetime
    #: Parsed from the annotation ``azswitch.io/approve``; ``None`` if absent or unparseable.
    approved_generation: int | None
    #: When the last operation finished (for the ``minInterval`` cooldown).
    last_finished_at: datetime | None
    #: False when the operator-wide cap on concurrent operations is reached.
    capacity_available: bool = True
    #: Only used to print a copy-pasteable approval command.
    name: str = "NAME"
    namespace: str | None = None
    #: The ZoneDrain holding the group away from spec.primaryAZ, if one does (``azswitch.drains``).
    hold: Hold | None = None
    #: The drain named by the annotation ``azswitch.io/approve-drain``.
    approved_drain: str | None = None
    #: An out-of-band change of the primary not corrected yet (the reconciler detects and records it).
    drift: Drift | None = None
    #: The drift named by the annotation ``azswitch.io/correct-drift``.
    approved_drift: str | None = None


# Bounded: a generation fits in int64, and int() refuses more than 4,300 digits.
_APPROVAL_VALUE = re.compile(r"\s*[0-9]{1,18}\s*")


def parse_approval(value: str | None) -> int | None:
    """The generation approved by the annotation's value, or ``None`` if it is absent or not a generation."""
    if value is None or not _APPROVAL_VALUE.fullmatch(value):
        return None
    generation = int(value)
    # Generations start at 1; "0" can only be a mistake and must not approve anything.
    return generation if generation >= 1 else None


def plan(inp: PlanInput) -> Plan:
    """Decide what to do with the group now. Pure; see the module docstring and design.md §3."""
    spec, obs, hold = inp.spec, inp.observation, inp.hold
    current = obs.primary_az
    # A drain changes where the group is steered, nothing else: every gate below applies as for the spec.
    desired = hold.target if hold is not None and hold.target is not None else spec.primary_az

    stalled = _stalled_gates(spec, obs)
    if stalled:
        return Plan(Action.NONE, current, desired, stalled[0].reason, stalled[0].message, tuple(stalled))

    if obs.in_motion:
        busy = Blocker(
            "GroupBusy",
            f"the cloud group is {obs.cloud.status}; the plan is made again when it settles",
            BlockKind.WAIT,
        )
        return Plan(Action.NONE, current, desired, busy.reason, busy.message, (busy,))

    if obs.state is GroupState.UNPROTECTED:
        # SDRS "available": the group exists but does not replicate, so there is nothing to switch over to
        # (and nothing protects the data). Enabling protection is a decision for its owner, not for us.
        disabled = Blocker(
            "ProtectionDisabled",
            f"protection is disabled for the cloud group (status {obs.cloud.status}): it does not replicate, "
            "so it cannot be switched over; fix: enable protection (SDRS: start-server-group, or "
            "'Enable Protection' in the console), then the operator plans again",
            BlockKind.BLOCKED,
        )
        action = Action.NONE if current == desired else Action.SWITCHOVER
        return Plan(action, current, desired, disabled.reason, disabled.message, (disabled,))

    if current is None or current not in obs.availability_zones:
        unknown = Blocker(
            "PrimaryAZUnknown",
            (
                f"the cloud reports primary AZ {current!r}, which is not one of the group's AZs "
                f"({', '.join(obs.availability_zones)}); nothing is done until it reports a known primary"
                if current
                else "the cloud reports no primary AZ for the group; nothing is done until it does"
            ),
            BlockKind.BLOCKED,
        )
        return Plan(Action.NONE, current, desired, unknown.reason, unknown.message, (unknown,))

    if hold is not None and hold.target is None:
        both = Blocker(
            "BothZonesDrained",
            f"{hold.words} drains {hold.zone} (spec.primaryAZ) and the group's other AZ is drained too; the "
            f"group stays in {current}; end one of the drains to let it move",
            BlockKind.BLOCKED,
        )
        return Plan(Action.NONE, current, current, both.reason, both.message, (both,))

    if current == desired:
        if obs.state is GroupState.FAILED_OVER:
            candidate = _reprotect(spec, obs, current, then=None)
        else:
            held = f", held away from {hold.zone} by {hold.words}" if hold is not None else ""
            return Plan(
                Action.NONE,
                current,
                desired,
                "InSync",
                f"the primary AZ is {current}, as desired{held}; nothing to do",
            )
    elif obs.state is GroupState.FAILED_OVER:
        candidate = _reprotect(spec, obs, current, then=desired)
    elif obs.state is not GroupState.PROTECTED:
        unrecognized = Blocker(
            "UnrecognizedGroupStatus",
            f"the cloud group's status is {obs.cloud.status!r}, which the operator does not know how to act "
            "on; nothing is done until the group is protected and idle",
            BlockKind.BLOCKED,
        )
        return Plan(
            Action.SWITCHOVER, current, desired, unrecognized.reason, unrecognized.message, (unrecognized,)
        )
    else:
        candidate = _move(spec, obs, current, desired)

    drift = inp.drift
    if drift is not None and drift.target == current:
        why = f"the cloud's primary moved from {drift.source} to {drift.target} without an operation of azswitch"
        candidate = Plan(
            candidate.action,
            candidate.source,
            candidate.target,
            "DriftDetected" if candidate.reason == "PrimaryAZChanged" else candidate.reason,
            f"{why}; {candidate.message}",
            candidate.blockers,
        )
    if hold is not None and candidate.action is not Action.REPROTECT:
        candidate = Plan(
            candidate.action,
            candidate.source,
            candidate.target,
            "ZoneDrained" if candidate.reason == "PrimaryAZChanged" else candidate.reason,
            f"{hold.words} drains {hold.zone}: {candidate.message}",
            candidate.blockers,
        )
    if candidate.blockers:
        return candidate
    return _with_execution_gates(candidate, inp)


def _stalled_gates(spec: ReplicationGroupSpec, obs: GroupView) -> list[Blocker]:
    blockers = []
    if not obs.availability_zones:
        blockers.append(
            Blocker(
                "AvailabilityZonesUnknown",
                "the group's availability zones could not be discovered from its replication pairs; "
                "check that the group has replication pairs and that their volumes are readable",
                BlockKind.STALLED,
            )
        )
    elif spec.primary_az not in obs.availability_zones:
        blockers.append(
            Blocker(
                "InvalidPrimaryAZ",
                f"spec.primaryAZ {spec.primary_az!r} is not one of the group's AZs "
                f"({', '.join(obs.availability_zones)}); set spec.primaryAZ to one of them",
                BlockKind.STALLED,
            )
        )
    if obs.fault is Fault.LINK_DOWN:
        blockers.append(
            Blocker(
                "ReplicationLinkDown",
                f"the cloud reports {obs.cloud.fault_phrase}: the replication link is disconnected, so neither a "
                "switchover nor a failover is possible; contact the cloud provider",
                BlockKind.STALLED,
            )
        )
    if obs.state is GroupState.ERROR:
        detail = f" (failure detail {obs.cloud.failure_detail})" if obs.cloud.failure_detail else ""
        blockers.append(
            Blocker(
                "CloudGroupError",
                f"the cloud group is in status {obs.cloud.status}{detail}; repair the group in the cloud "
                "(or open a ticket with the provider), the operator resumes once it is no longer in error",
                BlockKind.STALLED,
            )
        )
    return blockers


def _reprotect(spec: ReplicationGroupSpec, obs: GroupView, current: str, then: str | None) -> Plan:
    """A failed-over group must be reprotected before anything else, including a move back."""
    after = f"; then the switchover to {then} is planned" if then else ""
    reason = "FailedOver" if then is None else "ReprotectBeforeSwitchover"
    message = f"the group was failed over to {current} and is not protected; reprotect it{after}"
    blockers = []
    if obs.fault is not Fault.NONE:
        blockers.append(
            Blocker(
                "WaitingForOldAZRecovery",
                f"the cloud reports {obs.cloud.fault_phrase}; a reprotect is possible only once the "
                "old primary AZ has recovered (no fault)",
                BlockKind.WAIT,
            )
        )
    if not spec.failover.auto_reprotect:
        blockers.append(
            Blocker(
                "ReprotectRequired",
                f"the group was failed over to {current} and must be reprotected"
                + (f" before it can be switched over to {then}" if then else "")
                + "; reprotect it in the cloud console or API, or set spec.failover.autoReprotect: true "
                "to let the operator do it",
                BlockKind.BLOCKED,
            )
        )
    # Reprotect re-establishes replication; the primary stays where it is.
    return Plan(Action.REPROTECT, current, current, reason, message, tuple(blockers))


def _move(spec: ReplicationGroupSpec, obs: GroupView, current: str, desired: str) -> Plan:
    if obs.replication is Replication.COPYING:
        # Even with a fault: failing over in the middle of a resynchronisation would promote a copy that
        # is known to be inconsistent.
        wait = Blocker(
            "ReplicationSyncing",
            "replication is copying (synchronising); the switchover starts once it is active",
            BlockKind.WAIT,
        )
        return Plan(
            Action.SWITCHOVER, current, desired, "PrimaryAZChanged", _move_message(current, desired), (wait,)
        )
    if not obs.healthy:
        why = "PrimaryAZFaulty" if obs.fault is not Fault.NONE else "ReplicationNotActive"
        state = obs.cloud.health_phrase
        # A failover only when the cloud itself advises one (EVS fault level 2: the *primary* AZ lost its
        # disks). Replication merely not active may mean the *target* AZ is the sick one; failing over onto
        # it would be worse than waiting.
        if spec.failover.allowed and obs.fault is Fault.PRIMARY_FAULTY:
            return Plan(
                Action.FAILOVER,
                current,
                desired,
                why,
                f"a planned switchover is impossible ({state}); failing over from {current} to {desired} "
                "as spec.failover.allowed permits (un-replicated writes may be lost)",
            )
        if spec.failover.allowed:
            advice = (
                "a failover is only started when the cloud reports the primary AZ faulty (EVS fault level 2); "
                "wait for replication to recover, or synchronise the group"
            )
        else:
            advice = (
                "wait for the cloud to recover, or set spec.failover.allowed: true to permit a failover "
                "(may lose un-replicated writes)"
            )
        impossible = Blocker(
            "SwitchoverImpossible",
            f"a planned switchover from {current} to {desired} is impossible ({state}); {advice}",
            BlockKind.BLOCKED,
        )
        return Plan(Action.SWITCHOVER, current, desired, why, _move_message(current, desired), (impossible,))
    return Plan(Action.SWITCHOVER, current, desired, "PrimaryAZChanged", _move_message(current, desired))


def _move_message(current: str, desired: str) -> str:
    return f"switch the primary AZ from {current} to {desired}"


def _with_execution_gates(candidate: Plan, inp: PlanInput) -> Plan:
    """Gates that stand between a possible action and starting it; all that apply are reported."""
    spec = inp.spec
    blockers = []
    if inp.last_finished_at is not None and spec.switchover.min_interval > timedelta(0):
        ready_at = inp.last_finished_at + spec.switchover.min_interval
        if ready_at > inp.now:
            blockers.append(
                Blocker(
                    "CooldownActive",
                    f"the last operation finished at {inp.last_finished_at.isoformat()}; "
                    f"spec.switchover.minInterval ({format_duration(spec.switchover.min_interval)}) "
                    f"keeps the next one until {ready_at.isoformat()}",
                    BlockKind.WAIT,
                    retry_at=ready_at,
                )
            )
    if spec.switchover.approval == "Manual" and inp.hold is not None:
        # A generation approved earlier approved the spec's AZ, not a drain's: each drain asks anew.
        if inp.approved_drain != inp.hold.drain:
            namespace = f" -n {inp.namespace}" if inp.namespace else ""
            blockers.append(
                Blocker(
                    "AwaitingApproval",
                    f"{candidate.action} away from {inp.hold.zone} for {inp.hold.words} needs approval: "
                    f"kubectl annotate rg {inp.name}{namespace} "
                    f"{APPROVE_DRAIN_ANNOTATION}={inp.hold.drain} --overwrite",
                    BlockKind.HOLD,
                )
            )
    elif spec.switchover.approval == "Manual" and inp.approved_generation != inp.generation:
        namespace = f" -n {inp.namespace}" if inp.namespace else ""
        approved = (
            f" (the annotation approves generation {inp.approved_generation}; an approval is for one "
            "generation only)"
            if inp.approved_generation is not None
            else ""
        )
        blockers.append(
            Blocker(
                "AwaitingApproval",
                f"{candidate.action} needs approval for generation {inp.generation}{approved}: "
                f"kubectl annotate rg {inp.name}{namespace} "
                f"{APPROVE_ANNOTATION}={inp.generation} --overwrite",
                BlockKind.HOLD,
            )
        )
    drift = inp.drift
    if (
        spec.drift == "Report"
        and drift is not None
        and drift.target == inp.observation.primary_az
        and drift.generation == inp.generation
        and inp.approved_drift != drift.id
    ):
        namespace = f" -n {inp.namespace}" if inp.namespace else ""
        blockers.append(
            Blocker(
                "Drifted",
                f"the cloud's primary moved from {drift.source} to {drift.target} without an operation of "
                f"azswitch, and spec.drift is Report: the group stays in {drift.target}. To keep it there, "
                f"set spec.primaryAZ: {drift.target} in Git (or drain {drift.source} with a ZoneDrain); to "
                f"move it to {candidate.target}: kubectl annotate rg {inp.name}{namespace} "
                f"{CORRECT_DRIFT_ANNOTATION}={drift.id} --overwrite",
                BlockKind.HOLD,
            )
        )
    if spec.dry_run:
        blockers.append(
            Blocker(
                "DryRun",
                f"spec.dryRun is true: would {_intent(candidate)}; set spec.dryRun: false to apply",
                BlockKind.HOLD,
            )
        )
    if not inp.capacity_available:
        blockers.append(
            Blocker(
                "ConcurrencyLimit",
                "the operator is already running its maximum number of concurrent operations; "
                "this one starts when a slot frees up",
                BlockKind.WAIT,
            )
        )
    if not blockers:
        return candidate
    return Plan(
        candidate.action,
        candidate.source,
        candidate.target,
        candidate.reason,
        candidate.message,
        tuple(blockers),
    )


def _intent(candidate: Plan) -> str:
    if candidate.action is Action.FAILOVER:
        return f"fail over from {candidate.source} to {candidate.target}"
    if candidate.action is Action.REPROTECT:
        return f"reprotect the group (the primary stays {candidate.source})"
    return f"switch the primary AZ from {candidate.source} to {candidate.target}"


def phase_for(plan: Plan) -> Phase:
    """The phase of a resource with no operation in flight (the reconciler overrides it while one runs)."""
    if plan.has(BlockKind.STALLED) or plan.has(BlockKind.BLOCKED):
        return "Blocked"
    if any(blocker.reason in ("AwaitingApproval", "Drifted") for blocker in plan.blockers):
        return "AwaitingApproval"
    if plan.action is Action.NONE and not plan.blockers:
        return "Ready"
    return "Pending"
