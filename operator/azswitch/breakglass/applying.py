"""``azswitch apply``: carry out the plan with the operator's own operation lifecycle, without the cluster.

The operator's ``Reconciler`` runs unchanged over ``LocalKube``: every status write — the intent journal
``status.operation`` first of all, written *before* each request — goes to the journal file and is fsynced
before the Reconciler goes on. So an apply that is interrupted anywhere (Ctrl-C, SIGKILL, a lost network)
and run again with the same journal finds each operation it journaled and resumes it by observing the cloud,
never by sending it again (a request that never reached the cloud is re-sent only after the operator's
``AZSWITCH_LOST_REQUEST_GRACE``, and only if the group is exactly where it was).

Each group is driven by a small loop: reconcile, wait the delay the Reconciler asks for (or until a slot
frees), again — until the group is Ready with nothing in flight, or stays as it is (Failed, Blocked,
AwaitingApproval, Suspended). ``OperationSlots`` caps the operations in flight (``--max-concurrent``), the
cloud connections' token bucket paces the requests (``--rate-limit``).

With a cluster reachable, apply refuses while an operator leads (``cluster.leader_verdict``) unless
``--force``, and sets the annotation ``azswitch.io/hold`` on every group it acts on (never the spec: that is
Git's), removing it when done — also on failure and Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import signal
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from azswitch.breakglass.cluster import DEFAULT_LEASE_NAMESPACE, LeaderVerdict, leader_verdict
from azswitch.breakglass.inputs import Clouds, Inputs, Options, gather
from azswitch.breakglass.journalfile import JournalFile, default_path
from azswitch.breakglass.localkube import LocalKube
from azswitch.breakglass.manifests import InputError
from azswitch.breakglass.planning import Row, plan_all
from azswitch.breakglass.report import Outcome, write_plan, write_summary
from azswitch.reconcile import OperationSlots, Reconciler
from azswitch.reconcile.context import ANNOTATION_RETRY, condition
from azswitch.settings import Settings, load_settings

logger = logging.getLogger("azswitch.breakglass")

#: How long groups get to finish the step they are on once the run is stopped (Ctrl-C, --timeout).
STOP_GRACE_SECONDS = 30.0
#: Phases a break-glass run leaves as they are (the group will not move without a person or a change).
FINAL_PHASES = ("Failed", "Blocked", "AwaitingApproval", "Suspended")


@dataclass
class ApplyOptions(Options):
    journal: Path | None = None
    yes: bool = False
    max_concurrent: int | None = None
    rate_limit: float | None = None
    timeout: timedelta = timedelta(hours=1)
    force: bool = False
    retry: bool = False
    lease_namespace: str = DEFAULT_LEASE_NAMESPACE
    lease_name: str = "azswitch-leader"


def settings_for(environ: Mapping[str, str], options: ApplyOptions | None = None) -> Settings:
    """The operator's settings (``AZSWITCH_*``), with the command line's cap and rate limit."""
    overrides: dict[str, Any] = {}
    if options is not None and options.max_concurrent is not None:
        overrides["max_concurrent_operations"] = options.max_concurrent
    if options is not None and options.rate_limit is not None:
        overrides["rate_limit"] = options.rate_limit
    return load_settings(dict(environ), **overrides)


def acts_on(row: Row) -> bool:
    """Whether apply drives this group: an operation to resume, or a change nothing but time stands in
    the way of. A group the operator has an operation for is never touched."""
    if row.error:
        return False
    if row.resume:
        return True
    if row.operation is not None:
        return False
    return (row.changes or bool(row.blockers)) and row.waits_only


def _not_acted(row: Row) -> Outcome:
    blockers = row.blockers
    if row.error:
        result, message = "Error", row.error
    elif row.operation is not None:
        result, message = (
            "Refused",
            blockers[0]["message"] if blockers else "the operator has an operation in flight",
        )
    elif not blockers:
        result, message = "InSync", row.message
    else:
        reasons = {b["reason"] for b in blockers}
        result = (
            "AwaitingApproval"
            if "AwaitingApproval" in reasons
            else "Suspended"
            if "Suspended" in reasons
            else "Blocked"
        )
        message = "; ".join(f"{b['reason']}: {b['message']}" for b in blockers)
    return Outcome(row.key, row.service, row.current, row.desired, result, message)


def finished(status: Mapping[str, Any]) -> bool:
    """Whether a break-glass run is done with a group: Ready with nothing in flight, or a phase that stays."""
    if isinstance(status.get("operation"), Mapping):
        return False
    phase = status.get("phase")
    if phase == "Ready" or phase in FINAL_PHASES:
        return True
    plan = status.get("plan")
    blockers = plan.get("blockers") if isinstance(plan, Mapping) else None
    # Pending on a person's decision (dryRun, a drift to approve): it stays as it is.
    return bool(blockers) and any(isinstance(b, Mapping) and b.get("kind") != "Wait" for b in blockers or [])


def outcome_of(
    row: Row, before: Mapping[str, Any], status: Mapping[str, Any], *, stopped: str | None, journal: Path
) -> Outcome:
    """How a driven group ended, from its last status."""
    operation = status.get("operation")
    last = _mapping(status.get("lastOperation"))
    ready = condition(status, "Ready") or {}
    current = status.get("currentPrimaryAZ") or row.current
    if isinstance(operation, Mapping):
        return Outcome(
            row.key,
            row.service,
            operation.get("from"),
            operation.get("to"),
            stopped or "TimedOut",
            f"{operation.get('action')} {operation.get('id')} is still {operation.get('state')} in the cloud; "
            f"rerun with --journal {journal} to resume it by observing (it is never sent twice)",
            str(operation.get("id")),
        )
    last_before = _mapping(before.get("lastOperation"))
    new_last = bool(last) and (last.get("id") != last_before.get("id") or row.resume)
    phase = status.get("phase")
    if phase == "Ready":
        if new_last and last.get("result") == "Succeeded":
            return Outcome(
                row.key,
                row.service,
                last.get("from"),
                last.get("to"),
                "Succeeded",
                str(last.get("message") or ""),
                str(last.get("id")),
            )
        return Outcome(row.key, row.service, current, row.desired, "InSync", str(ready.get("message") or ""))
    if phase == "Failed" and last:
        return Outcome(
            row.key,
            row.service,
            last.get("from"),
            last.get("to"),
            str(last.get("result") or "Failed"),
            str(last.get("message") or ready.get("message") or ""),
            str(last.get("id")),
        )
    if phase in FINAL_PHASES:
        return Outcome(
            row.key, row.service, current, row.desired, str(phase), str(ready.get("message") or "")
        )
    if stopped:
        return Outcome(row.key, row.service, current, row.desired, stopped, str(ready.get("message") or ""))
    if finished(status):
        return Outcome(row.key, row.service, current, row.desired, "Blocked", str(ready.get("message") or ""))
    return Outcome(row.key, row.service, current, row.desired, "TimedOut", str(ready.get("message") or ""))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def hold_value(now: datetime | None = None) -> str:
    moment = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{getpass.getuser()}@{socket.gethostname()} via azswitch apply since {moment}"


class Apply:
    """One ``azswitch apply`` run."""

    def __init__(
        self, options: ApplyOptions, environ: Mapping[str, str], stdin: TextIO, out: TextIO, err: TextIO
    ) -> None:
        self.options = options
        self.environ = environ
        self.stdin = stdin
        self.out = out
        self.err = err
        self.stop = asyncio.Event()
        self.stopped: str | None = None
        self.interrupts = 0
        self.holds: dict[str, str] = {}
        self.wake: dict[str, asyncio.Event] = {}
        self.crashed: dict[str, str] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def say(self, line: str) -> None:
        print(line, file=self.err, flush=True)

    def progress(self, key: str, type_: str, reason: str, message: str) -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        self.say(f"{stamp} {key}: {reason}: {message}")

    async def run(self) -> int:
        options = self.options
        if not options.yes and not self.stdin.isatty():
            raise InputError(
                "apply asks for confirmation and stdin is not a terminal; fix: pass --yes (with --approve for "
                "groups with spec.switchover.approval: Manual)"
            )
        # Interactive confirmation is a person's decision: it approves Manual groups too.
        options.approve = options.approve or not options.yes
        settings = settings_for(self.environ, options)
        journal_path = options.journal or default_path(self.environ)
        journal = JournalFile(journal_path, warn=lambda m: self.say(f"azswitch: warning: {m}")).open()
        inputs: Inputs | None = None
        clouds: Clouds | None = None
        try:
            inputs = await gather(options, self.environ, self.err, self.stdin)
            self.say(f"azswitch: journal {journal_path}")
            if inputs.cluster is not None:
                verdict = await self._leader(inputs)
                if not verdict.absent and not options.force:
                    self.say(
                        f"azswitch: refusing to apply: {verdict.message}. Two actors on one group would split "
                        "the brain. fix: let the operator do it (change the spec, or a ZoneDrain), or stop it "
                        "(kubectl -n azswitch-system scale deploy/azswitch --replicas=0), or pass --force to "
                        "hold each group with the annotation azswitch.io/hold while apply acts"
                    )
                    return 1
                if not verdict.absent:
                    self.say(
                        f"azswitch: --force: {verdict.message}; holding each group with azswitch.io/hold"
                    )
            clouds = Clouds(settings)
            return await self._apply(inputs, clouds, settings, journal, journal_path)
        finally:
            if inputs is not None and inputs.cluster is not None:
                await self._release_holds(inputs)
                inputs.cluster.close()
            if clouds is not None:
                await clouds.aclose()
            journal.close()

    async def _leader(self, inputs: Inputs) -> LeaderVerdict:
        assert inputs.cluster is not None
        name = f"{self.options.lease_namespace}/{self.options.lease_name}"
        lease, readable = await inputs.cluster.read_lease(
            self.options.lease_namespace, self.options.lease_name
        )
        pods = await inputs.cluster.operator_pods(self.options.lease_namespace)
        return leader_verdict(lease, pods, datetime.now(UTC), name, lease_readable=readable)

    async def _apply(
        self, inputs: Inputs, clouds: Clouds, settings: Settings, journal: JournalFile, journal_path: Path
    ) -> int:
        options = self.options
        statuses: dict[str, dict[str, Any]] = {}
        for manifest in inputs.manifests:
            journaled = journal.last_status(manifest.key, manifest.spec.group_id)
            statuses[manifest.key] = journaled if journaled is not None else inputs.seed(manifest)
            last = statuses[manifest.key].get("lastOperation")
            if options.retry and isinstance(last, Mapping) and last.get("id"):
                manifest.body["metadata"].setdefault("annotations", {})[ANNOTATION_RETRY] = str(last["id"])
        rows = await plan_all(inputs, statuses, clouds, settings)
        write_plan(rows, "table", self.out if options.output == "table" else self.err)
        acting = [row for row in rows if acts_on(row)]
        outcomes: dict[str, Outcome] = {row.key: _not_acted(row) for row in rows if not acts_on(row)}
        if acting and not options.yes:
            manual = [m.key for m in inputs.manifests if m.spec.switchover.approval == "Manual"]
            note = f" (confirming approves the Manual group(s) {', '.join(manual)})" if manual else ""
            print(
                f"{len(acting)} group(s) will be acted on{note}. Type {len(acting)} to proceed: ",
                end="",
                file=self.err,
                flush=True,
            )
            answer = self.stdin.readline().strip()
            if answer != str(len(acting)):
                self.say("azswitch: not confirmed; nothing was changed")
                return 1
        if acting and inputs.cluster is not None:
            acting = await self._hold(inputs, acting, outcomes)
        if acting:
            await self._drive(inputs, clouds, settings, journal, statuses, acting)
            for row in acting:
                key = row.key
                if key in self.crashed:
                    outcomes[key] = Outcome(
                        key, row.service, row.current, row.desired, "Error", self.crashed[key]
                    )
                else:
                    outcomes[key] = outcome_of(
                        row, statuses[key], self.kube.status(key), stopped=self.stopped, journal=journal_path
                    )
        ordered = [outcomes[row.key] for row in rows if row.key in outcomes]
        write_summary(ordered, options.output, self.out)
        if any(o.result == "Succeeded" for o in ordered):
            self.say(
                "azswitch: the groups above moved without the operator: before it runs again, set their "
                "spec.primaryAZ in Git to where they are now (or create a ZoneDrain, or set spec.drift: "
                "Report), or it will move them back"
            )
        if self.stopped == "Interrupted":
            return 130
        return 0 if all(o.ok for o in ordered) else 1

    async def _hold(self, inputs: Inputs, acting: list[Row], outcomes: dict[str, Outcome]) -> list[Row]:
        """Annotate each group the cluster has; drop any the operator journaled an operation for meanwhile."""
        assert inputs.cluster is not None
        value = hold_value()
        kept = []
        for row in acting:
            if row.key not in inputs.in_cluster:
                kept.append(row)
                continue
            namespace, _, name = row.key.partition("/")
            updated = await inputs.cluster.set_hold(namespace, name, value)
            if updated is None:
                kept.append(row)
                continue
            self.holds[row.key] = value
            self.say(f"azswitch: {row.key}: annotated azswitch.io/hold={value!r}")
            status = updated.get("status") if isinstance(updated.get("status"), Mapping) else {}
            operation = status.get("operation") if isinstance(status, Mapping) else None
            if isinstance(operation, Mapping):
                outcomes[row.key] = Outcome(
                    row.key,
                    row.service,
                    operation.get("from"),
                    operation.get("to"),
                    "Refused",
                    f"the operator journaled {operation.get('action')} {operation.get('id')} before the hold "
                    "landed; it is left to the operator",
                    str(operation.get("id")),
                )
                await self._release(inputs, row.key)
                continue
            kept.append(row)
        return kept

    async def _release(self, inputs: Inputs, key: str) -> None:
        assert inputs.cluster is not None
        value = self.holds.pop(key, None)
        if value is None:
            return
        namespace, _, name = key.partition("/")
        try:
            removed = await inputs.cluster.remove_hold(namespace, name, value)
        except InputError as exc:
            self.say(f"azswitch: {exc}")
            return
        self.say(
            f"azswitch: {key}: removed azswitch.io/hold"
            if removed
            else f"azswitch: {key}: azswitch.io/hold was changed by someone else; left as it is"
        )

    async def _release_holds(self, inputs: Inputs) -> None:
        for key in list(self.holds):
            await self._release(inputs, key)

    async def _drive(
        self,
        inputs: Inputs,
        clouds: Clouds,
        settings: Settings,
        journal: JournalFile,
        statuses: Mapping[str, Mapping[str, Any]],
        acting: list[Row],
    ) -> None:
        bodies = {}
        by_key = {m.key: m for m in inputs.manifests}
        for row in acting:
            body = dict(by_key[row.key].body)
            body["status"] = dict(statuses[row.key])
            bodies[row.key] = body
            self.wake[row.key] = asyncio.Event()
            if row.resume:
                self.say(f"azswitch: {row.key}: {row.message}")
        self.kube = LocalKube(bodies, inputs.secrets, journal, self.progress)
        slots = OperationSlots(settings.max_concurrent_operations, on_release=self._woken)
        reconciler = Reconciler(settings, self.kube, clouds, slots)
        loop = asyncio.get_running_loop()
        signals = threading.current_thread() is threading.main_thread()
        if signals:
            loop.add_signal_handler(signal.SIGINT, self._interrupt)
        try:
            self.tasks = [asyncio.create_task(self._group(reconciler, row.key)) for row in acting]
            _, pending = await asyncio.wait(self.tasks, timeout=self.options.timeout.total_seconds())
            if pending:
                if self.stopped is None:
                    self.stopped = "TimedOut"
                    self.say(f"azswitch: --timeout {self.options.timeout} passed; stopping")
                self.stop.set()
                _, still = await asyncio.wait(pending, timeout=STOP_GRACE_SECONDS)
                for task in still:
                    task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
        finally:
            if signals:
                loop.remove_signal_handler(signal.SIGINT)

    def _interrupt(self) -> None:
        self.interrupts += 1
        self.stopped = "Interrupted"
        if self.interrupts == 1:
            self.say(
                "\nazswitch: interrupted: finishing the step each group is on (Ctrl-C again to stop at once; "
                "the journal makes either safe)"
            )
            self.stop.set()
        else:
            for task in self.tasks:
                task.cancel()

    def _woken(self, keys: list[str]) -> None:
        for key in keys:
            event = self.wake.get(key)
            if event is not None:
                event.set()

    async def _group(self, reconciler: Reconciler, key: str) -> None:
        wake = self.wake[key]
        while not self.stop.is_set():
            wake.clear()
            try:
                delay = await reconciler.reconcile(self.kube.body(key))
            except Exception as exc:
                logger.exception("reconciling %s crashed", key)
                self.crashed[key] = f"{type(exc).__name__}: {exc}"
                return
            if finished(self.kube.status(key)) or delay is None:
                return
            waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(self.stop.wait())]
            try:
                await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.gather(*waiters, return_exceptions=True)
