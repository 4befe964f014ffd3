"""Pure helpers that turn a plan and an observation into status: conditions, plan, cloud state, history.

Conditions follow the Kubernetes API conventions and kstatus, because that is what ``kubectl wait``,
Argo CD and Flux read: ``Ready`` is always present; ``Reconciling`` and ``Stalled`` exist only while True
(kstatus treats a present-but-False abnormal-true condition as noise); every condition carries
``observedGeneration``; ``lastTransitionTime`` moves only when ``status`` flips, so it answers "since when"
rather than "when did the operator last look". Lists are returned new, never mutated, in a stable order so
that an unchanged status produces an identical patch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from azswitch.errors import truncate
from azswitch.models import (
    CONDITION_MESSAGE_MAX_LENGTH,
    HISTORY_LIMIT,
    Blocker,
    CloudObservation,
    Condition,
    ConditionStatus,
    FinishedOperation,
    PlanStatus,
)
from azswitch.observation import Fault, GroupState, GroupView, Replication
from azswitch.plan import Action, BlockKind, Plan

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
REPLICATION_HEALTHY = "ReplicationHealthy"
SWITCHOVER_ALLOWED = "SwitchoverAllowed"
#: Present (True) only while an out-of-band change of the primary stands uncorrected (status.drift).
DRIFTED = "Drifted"
#: Our conditions, in the order they are written; conditions others added follow, in their own order.
CONDITION_ORDER = (READY, RECONCILING, STALLED, REPLICATION_HEALTHY, SWITCHOVER_ALLOWED, DRIFTED)

#: (status, reason, message) of a condition that is always present.
StatusTriple = tuple[ConditionStatus, str, str]
#: (reason, message) of a condition that is present only while True.
ReasonMessage = tuple[str, str]


def get_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((condition for condition in conditions if condition.type == type_), None)


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> list[Condition]:
    """A new list with condition ``type_`` set; its position and, unless ``status`` flips, its
    ``lastTransitionTime`` are kept. A new condition is appended."""
    message = truncate(message, CONDITION_MESSAGE_MAX_LENGTH)
    previous = get_condition(conditions, type_)
    # metav1.Time has second precision; keeping it here makes a read-back status compare equal.
    transition = (
        previous.last_transition_time
        if previous is not None and previous.status == status
        else now.replace(microsecond=0)
    )
    updated = Condition(
        type=type_,
        status=status,
        observed_generation=generation,
        last_transition_time=transition,
        reason=reason,
        message=message,
    )
    if previous is None:
        return [*conditions, updated]
    return [updated if condition.type == type_ else condition for condition in conditions]


def remove_condition(conditions: Sequence[Condition], type_: str) -> list[Condition]:
    return [condition for condition in conditions if condition.type != type_]


def conditions_for(
    *,
    generation: int,
    now: datetime,
    previous: Sequence[Condition],
    ready: StatusTriple,
    reconciling: ReasonMessage | None,
    stalled: ReasonMessage | None,
    replication_healthy: StatusTriple,
    switchover_allowed: StatusTriple,
    drifted: ReasonMessage | None = None,
) -> list[Condition]:
    """The full condition list: ours in :data:`CONDITION_ORDER`, then any foreign ones from ``previous``."""
    conditions = list(previous)
    wanted: dict[str, StatusTriple | None] = {
        READY: ready,
        RECONCILING: ("True", *reconciling) if reconciling else None,
        STALLED: ("True", *stalled) if stalled else None,
        REPLICATION_HEALTHY: replication_healthy,
        SWITCHOVER_ALLOWED: switchover_allowed,
        DRIFTED: ("True", *drifted) if drifted else None,
    }
    for type_, triple in wanted.items():
        if triple is None:
            conditions = remove_condition(conditions, type_)
        else:
            conditions = set_condition(conditions, type_, *triple, generation=generation, now=now)
    ours = [condition for type_ in CONDITION_ORDER if (condition := get_condition(conditions, type_))]
    foreign = [condition for condition in conditions if condition.type not in CONDITION_ORDER]
    return ours + foreign


# --- deriving conditions from a plan (no operation in flight) ----------------------------------------------


def replication_health(observation: GroupView | None) -> StatusTriple:
    """``ReplicationHealthy``: True when replication is active and the cloud reports no fault."""
    if observation is None:
        return ("Unknown", "NotObserved", "the group has not been observed yet")
    facts = observation.cloud
    if observation.fault is Fault.LINK_DOWN:
        return (
            "False",
            "ReplicationLinkDown",
            f"{facts.fault_phrase}: the replication link is disconnected; contact the cloud provider",
        )
    if observation.fault is not Fault.NONE and observation.state is GroupState.FAILED_OVER:
        return (
            "False",
            "OldPrimaryAZFaulty",
            f"{facts.fault_phrase} after a failover to {observation.primary_az}: the old "
            "primary AZ has not recovered, so the group cannot be reprotected yet",
        )
    if observation.fault is not Fault.NONE:
        return (
            "False",
            "PrimaryAZFaulty",
            f"{facts.fault_phrase}: a production disk in the primary AZ "
            f"{observation.primary_az} has lost read/write access",
        )
    if observation.replication is not Replication.ACTIVE:
        return (
            "False",
            "ReplicationDegraded",
            f"replication status is {facts.replication_status or 'unknown'} "
            f"(group status {facts.status}), not active",
        )
    return ("True", "ReplicationActive", "replication is active and the cloud reports no fault")


def switchover_allowed(plan: Plan | None, observation: GroupView | None) -> StatusTriple:
    """``SwitchoverAllowed``: could the operator start a planned switchover right now?"""
    if plan is not None and plan.blockers:
        first = plan.blockers[0]
        return ("False", first.reason, first.message)
    if plan is None or observation is None:
        return ("Unknown", "NotObserved", "the group has not been observed yet")
    if observation.state is not GroupState.PROTECTED:
        return (
            "False",
            "GroupNotAvailable",
            f"the cloud group is {observation.cloud.status}; a switchover needs it protected and idle",
        )
    if not observation.healthy:
        return (
            "False",
            "SwitchoverImpossible",
            f"a planned switchover needs active replication and no fault ({observation.cloud.health_phrase})",
        )
    return ("True", "Allowed", "a planned switchover can be started now")


def ready_for(plan: Plan) -> StatusTriple:
    """``Ready``: True only when the primary is where the spec says and nothing is pending."""
    if plan.action is Action.NONE and not plan.blockers:
        return ("True", plan.reason, plan.message)
    if plan.blockers:
        first = plan.blockers[0]
        return ("False", first.reason, first.message)
    return ("False", plan.reason, f"{plan.action} planned: {plan.message}")


def stalled_for(plan: Plan) -> ReasonMessage | None:
    """``Stalled`` (kstatus): progress needs a human or a change in the cloud or spec."""
    for blocker in plan.blockers:
        if blocker.kind in (BlockKind.STALLED, BlockKind.BLOCKED):
            return (blocker.reason, blocker.message)
    return None


def reconciling_for(plan: Plan) -> ReasonMessage | None:
    """``Reconciling`` (kstatus): the operator is working towards the spec and needs nobody's help."""
    if stalled_for(plan) is not None:
        return None
    if plan.executable:
        return (plan.reason, plan.message)
    for blocker in plan.blockers:
        if blocker.kind is BlockKind.WAIT:
            return (blocker.reason, blocker.message)
    # HOLD: waiting for a person is neither progress nor a failure.
    return None


def conditions_from_plan(
    *,
    plan: Plan,
    observation: GroupView | None,
    generation: int,
    now: datetime,
    previous: Sequence[Condition],
) -> list[Condition]:
    """All conditions for a resource with no operation in flight, derived from its plan."""
    return conditions_for(
        generation=generation,
        now=now,
        previous=previous,
        ready=ready_for(plan),
        reconciling=reconciling_for(plan),
        stalled=stalled_for(plan),
        replication_healthy=replication_health(observation),
        switchover_allowed=switchover_allowed(plan, observation),
    )


# --- other status parts -------------------------------------------------------------------------------------


def plan_status(plan: Plan) -> PlanStatus:
    """``status.plan`` for a :class:`Plan`."""
    return PlanStatus(
        action=plan.action.value,
        source=plan.source,
        target=plan.target,
        reason=plan.reason,
        message=plan.message,
        blockers=[
            Blocker(reason=b.reason, message=b.message, kind=b.kind.value, retry_at=b.retry_at)
            for b in plan.blockers
        ],
    )


def cloud_observation(observation: GroupView) -> CloudObservation:
    """``status.cloud``: the cloud's own values (users search its documentation for them), not ours."""
    facts = observation.cloud
    return CloudObservation(
        status=facts.status,
        replication_status=facts.replication_status,
        fault_level=facts.fault_level,
        health_status=facts.health_status,
        failure_detail=facts.failure_detail,
        observed_at=observation.observed_at,
    )


def append_history(
    history: Sequence[FinishedOperation], finished: FinishedOperation, limit: int = HISTORY_LIMIT
) -> list[FinishedOperation]:
    """``finished`` first, then the older entries, at most ``limit``. Recording the same operation twice
    (a retried status write) replaces the earlier entry instead of duplicating it."""
    older = [entry for entry in history if entry.id != finished.id]
    return [finished, *older][:limit]
