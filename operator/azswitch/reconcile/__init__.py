"""The reconciler: refresh → plan → apply → record for one ReplicationGroup at a time, with no kopf.

One module per job, each small enough to read in one sitting:

* ``core`` — ``Reconciler``, the entry point: the checks that need no cloud call, then hands over.
* ``reading`` and ``listing`` — reading the cloud: a group's own GET or the shared listing.
* ``starting`` — planning (the pure ``azswitch.plan``), the gates, taking a slot, sending.
* ``journal`` — the intent journal in ``status.operation``: written before a request, closed after.
* ``following`` — an operation in flight: finished, failed, running or lost; resume after a restart.
* ``recording`` — status, conditions, events and metrics.
* ``slots``, ``credentials``, ``claims``, ``context`` — the concurrency cap, the Secret, duplicate
  resources, and what one reconcile carries.
"""

from azswitch.reconcile.context import (
    ANNOTATION_APPROVE,
    ANNOTATION_RECONCILE,
    ANNOTATION_RETRY,
    CloudFactory,
    Credentials,
)
from azswitch.reconcile.core import Reconciler
from azswitch.reconcile.listing import GroupCache
from azswitch.reconcile.slots import OperationSlots

__all__ = [
    "ANNOTATION_APPROVE",
    "ANNOTATION_RECONCILE",
    "ANNOTATION_RETRY",
    "CloudFactory",
    "Credentials",
    "GroupCache",
    "OperationSlots",
    "Reconciler",
]
