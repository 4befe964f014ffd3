"""Leader election on a ``coordination.k8s.io/v1`` Lease, and the fences that keep a non-leader from acting.

Why: azswitch runs two replicas in different AZs so that the DR tool does not die with the AZ it should move
storage away from; exactly one of them may act. The election follows client-go's ``leaderelection`` (read, not
copied), so ``kubectl get lease`` and other tools read the Lease as they read kube-controller-manager's:

* Acquire and renew are updates conditional on the Lease's ``resourceVersion`` (optimistic concurrency): of
  two candidates racing for an expired Lease, one update wins and the other gets 409.
* ``holderIdentity``, ``leaseDurationSeconds``, ``acquireTime`` and ``renewTime`` (MicroTime: RFC 3339 with
  microseconds), ``leaseTransitions`` (+1 whenever the holder changes) are maintained as client-go does.
* A candidate trusts no timestamp in the record (another node's clock wrote it). It notes *by its own clock*
  when it last saw the record change, and takes over only when the record stayed the same for the record's
  ``leaseDurationSeconds`` (or nobody holds it: ``holderIdentity`` empty, as after a release).
* The leader retries a failed renew every retry period and gives up at the renew deadline. Stricter than
  client-go, ``leading`` is true only while ``now < start of the last successful renew + renew deadline``: it
  turns false by the clock alone, even while a renew request hangs or the process was paused, so the fences
  close *before* any other candidate may take over (lease duration > renew deadline; the renew is timed from
  when its request was sent, the earliest moment it can have landed).
* ``release()`` (SIGTERM) writes ``holderIdentity: ""`` and ``leaseDurationSeconds: 1`` like client-go's
  ``ReleaseOnCancel``, so the standby takes over at its next retry instead of after a lease duration.

A Lease is not a fence (client-go says so: a paused process, a clock running at a different rate). What keeps
a deposed leader from sending a second switchover is the intent journal (design.md §3): the write before
every request is conditional on the resource's ``resourceVersion``, and a new leader resumes an operation
by observing, never by re-sending. The fences here only shrink the window: ``FencedKube`` refuses status
writes and events, and ``LeaderElector.check`` — passed to the cloud client as its fence — refuses every
cloud request (each attempt, after the rate limiter and the retry backoff) once ``leading`` is false.

The state machine talks to a small ``LeaseStore`` (get / create / update with a resourceVersion), so it is
tested step by step with an in-memory store and an injected clock; ``KubeLeaseStore`` is the one over the
official client, each call in a worker thread with a timeout, like ``kube.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Protocol, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from azswitch.durations import parse_timestamp
from azswitch.errors import AzswitchError, ConfigError, NotLeading
from azswitch.kube import COMPONENT, KubeAPI
from azswitch.settings import Settings

logger = logging.getLogger("azswitch.leader")

T = TypeVar("T")

#: Where a pod finds its own namespace when POD_NAMESPACE is not set.
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
#: Candidates wait ``retry_period * (1 + JITTER * random())`` between attempts, so that replicas started
#: together do not hit the apiserver in lockstep (client-go's JitterFactor is 1.2; two replicas need less).
JITTER = 0.2
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _default_clock() -> float:
    # CLOCK_BOOTTIME keeps counting while the machine is suspended (CLOCK_MONOTONIC does not): a leader
    # whose VM was frozen for a minute must wake up knowing that its lease is long gone.
    return time.clock_gettime(time.CLOCK_BOOTTIME)


DEFAULT_CLOCK: Callable[[], float] = _default_clock if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic


# ------------------------------------------------------------------------------------------- the record


class LeaseError(AzswitchError):
    """A Lease call failed (the apiserver is unreachable, refused us, answered 5xx): the attempt failed."""


class LeaseConflict(LeaseError):
    """The Lease changed since it was read (409), or already exists (create), or vanished (update)."""


@dataclass(frozen=True)
class LeaseRecord:
    """A Lease's spec, the election record of client-go (``LeaderElectionRecord``)."""

    holder_identity: str = ""
    lease_duration_seconds: int = 0
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    lease_transitions: int = 0

    def to_spec(self) -> dict[str, Any]:
        return {
            "holderIdentity": self.holder_identity,
            "leaseDurationSeconds": self.lease_duration_seconds,
            "acquireTime": format_micro_time(self.acquire_time) if self.acquire_time else None,
            "renewTime": format_micro_time(self.renew_time) if self.renew_time else None,
            "leaseTransitions": self.lease_transitions,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> LeaseRecord:
        """Leniently: another tool may have written the Lease (or left fields out)."""

        def number(key: str) -> int:
            value = spec.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        holder = spec.get("holderIdentity")
        return cls(
            holder_identity=holder if isinstance(holder, str) else "",
            lease_duration_seconds=number("leaseDurationSeconds"),
            acquire_time=parse_micro_time(spec.get("acquireTime")),
            renew_time=parse_micro_time(spec.get("renewTime")),
            lease_transitions=number("leaseTransitions"),
        )


def format_micro_time(moment: datetime) -> str:
    """Kubernetes ``MicroTime``: RFC 3339 in UTC with exactly six fractional digits, ``Z`` suffix."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


#: A Lease's ``acquireTime``/``renewTime`` are read back as any Kubernetes timestamp is.
parse_micro_time = parse_timestamp


class LeaseStore(Protocol):
    """Where the record lives; every method raises ``LeaseError`` (``LeaseConflict`` where it says so)."""

    async def get(self) -> tuple[LeaseRecord, str] | None:
        """The record and the Lease's resourceVersion, or None when there is no Lease."""
        ...

    async def create(self, record: LeaseRecord) -> str:
        """Create the Lease; returns its resourceVersion. ``LeaseConflict`` if it exists already."""
        ...

    async def update(self, record: LeaseRecord, resource_version: str) -> str:
        """Replace the record if the Lease is still at ``resource_version``; returns the new one.
        ``LeaseConflict`` otherwise."""
        ...

    async def record_event(self, reason: str, message: str) -> None:
        """A Kubernetes Event about the Lease, best effort (never raises)."""
        ...


# ------------------------------------------------------------------------------------ the configuration


@dataclass(frozen=True)
class LeaderElection:
    """Everything the elector needs, resolved once at start-up (``from_settings``)."""

    namespace: str
    name: str
    identity: str
    lease_duration: int
    renew_deadline: float
    retry_period: float

    @property
    def lease(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        environ: Mapping[str, str],
        *,
        namespace_file: Path = SERVICE_ACCOUNT_NAMESPACE,
        hostname: Callable[[], str] = socket.gethostname,
        suffix: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> LeaderElection:
        """The Lease's namespace: the setting, else ``POD_NAMESPACE``, else the service account's namespace
        file; identity: ``POD_NAME`` (else the hostname) plus a unique suffix, so two processes on one
        host never share an identity (a restarted process is a new candidate, too). Raises ConfigError."""
        namespace = settings.leader_election_namespace or environ.get("POD_NAMESPACE", "").strip()
        where = (
            "AZSWITCH_LEADER_ELECTION_NAMESPACE" if settings.leader_election_namespace else "POD_NAMESPACE"
        )
        if not namespace:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                namespace = namespace_file.read_text().strip()
                where = str(namespace_file)
        if not namespace:
            raise ConfigError(
                "AZSWITCH_LEADER_ELECT is on but the namespace of the leader Lease is unknown: not running in "
                f"a pod (no POD_NAMESPACE, no {namespace_file}); fix: set "
                "AZSWITCH_LEADER_ELECTION_NAMESPACE or pass --leader-election-namespace"
            )
        if not _DNS_LABEL.fullmatch(namespace) or len(namespace) > 63:
            raise ConfigError(f"{where}: {namespace!r} is not a namespace name (a DNS-1123 label)")
        base = environ.get("POD_NAME", "").strip() or hostname() or "azswitch"
        return cls(
            namespace=namespace,
            name=settings.leader_election_id,
            identity=f"{base}_{suffix()}",
            lease_duration=int(settings.leader_election_lease_duration),
            renew_deadline=float(settings.leader_election_renew_deadline),
            retry_period=float(settings.leader_election_retry_period),
        )


# ---------------------------------------------------------------------------------------- the elector


class _State(Enum):
    CANDIDATE = "candidate"
    LEADING = "leading"
    LOST = "lost"
    RELEASED = "released"


class LeaderElector:
    """One candidate. ``run()`` campaigns, then renews until the lease is lost or ``release()`` is called.

    Callbacks run in the event loop, synchronously, at the moment of the transition: ``on_started_leading``
    once the Lease is ours; ``on_lost_leadership(reason)`` when the renew deadline passed (after that this
    elector never leads again: the process should stop acting and exit, as controller-runtime's managers do);
    ``on_new_leader(identity)`` whenever another holder is seen (for the log). ``clock`` is monotonic seconds,
    ``now`` the wall clock written into the Lease, ``sleep`` what waits between attempts.
    """

    def __init__(
        self,
        store: LeaseStore,
        *,
        identity: str,
        lease_duration: float,
        renew_deadline: float,
        retry_period: float,
        description: str = "lease",
        clock: Callable[[], float] = DEFAULT_CLOCK,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        on_started_leading: Callable[[], None] | None = None,
        on_lost_leadership: Callable[[str], None] | None = None,
        on_new_leader: Callable[[str], None] | None = None,
    ) -> None:
        if not identity:
            raise ConfigError("the leader election identity must not be empty")
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ConfigError(
                "leader election timing: need lease duration > renew deadline > retry period > 0, got "
                f"{lease_duration} / {renew_deadline} / {retry_period}"
            )
        self.store = store
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.description = description
        self._clock = clock
        self._now = now
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.on_started_leading = on_started_leading
        self.on_lost_leadership = on_lost_leadership
        self.on_new_leader = on_new_leader
        self._state = _State.CANDIDATE
        # What we last saw in the store, and when (our clock) it last changed.
        self._observed: LeaseRecord | None = None
        self._observed_version: str | None = None
        self._observed_at = 0.0
        self._reported_leader: str | None = None
        # When the request of the last successful acquire/renew was sent (our clock).
        self._renewed_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ what the rest of the process asks

    @property
    def leading(self) -> bool:
        """True only while this process may act: it holds the Lease and its renew deadline has not passed."""
        return (
            self._state is _State.LEADING
            and self._renewed_at is not None
            and self._clock() < self._renewed_at + self.renew_deadline
        )

    def check(self) -> None:
        """The fence: raise ``NotLeading`` unless ``leading``. Call it right before a side effect."""
        if not self.leading:
            raise NotLeading(
                f"{self.identity} is not the leader of {self.description} ({self._state.value}): "
                "nothing may be written or sent from this process"
            )

    @property
    def holder(self) -> str:
        """The holder last seen in the Lease ("" when none, or not read yet)."""
        return self._observed.holder_identity if self._observed else ""

    @property
    def state(self) -> str:
        return self._state.value

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Campaign until the Lease is ours, then renew it until lost; returns on loss or ``release()``."""
        task = self._task = asyncio.current_task()
        try:
            await self._run()
        except asyncio.CancelledError:
            if self._state is not _State.RELEASED or task is None or task.cancelling() > 1:
                raise
            task.uncancel()  # release() stopped us: a normal end, not a cancellation to pass on

    async def _run(self) -> None:
        logger.info("campaigning for the leader lease %s as %s", self.description, self.identity)
        while self._state is _State.CANDIDATE:
            if await self._attempt(self.renew_deadline):
                if self._state is not _State.CANDIDATE:
                    return  # released while the attempt ran
                self._start_leading()
                break
            await self._sleep(self.retry_period * (1 + JITTER * self._rng.random()))
        while self._state is _State.LEADING:
            assert self._renewed_at is not None
            deadline = self._renewed_at + self.renew_deadline
            await self._sleep(max(0.0, min(self.retry_period, deadline - self._clock())))
            if self._state is not _State.LEADING:
                return
            if not self.leading:
                self._lose(f"could not renew within the renew deadline of {self.renew_deadline:g} s")
                return
            renewed = await self._attempt(deadline - self._clock())
            if self._state is not _State.LEADING:
                return
            if not self.leading:
                self._lose(f"could not renew within the renew deadline of {self.renew_deadline:g} s")
                return
            if not renewed:
                logger.warning(
                    "renewing the leader lease %s failed; %.1f s left before this replica stops acting",
                    self.description,
                    deadline - self._clock(),
                )

    async def try_acquire_or_renew(self) -> bool:
        """One attempt (client-go's ``tryAcquireOrRenew``): True when the Lease is ours afterwards."""
        sent_at = self._clock()
        moment = self._now()
        record = LeaseRecord(
            holder_identity=self.identity,
            lease_duration_seconds=max(1, int(self.lease_duration)),
            acquire_time=moment,
            renew_time=moment,
        )
        # The leader's fast path: update on top of what it wrote last; a conflict falls back to a read.
        if self._holding() and self._observed is not None and self._observed_version is not None:
            mine = replace(
                record,
                acquire_time=self._observed.acquire_time,
                lease_transitions=self._observed.lease_transitions,
            )
            try:
                version = await self.store.update(mine, self._observed_version)
            except LeaseConflict:
                logger.info("the leader lease %s changed under us; reading it", self.description)
            except LeaseError as exc:
                logger.warning("renewing the leader lease %s: %s", self.description, exc)
                return False
            else:
                self._succeeded(mine, version, sent_at)
                return True

        try:
            found = await self.store.get()
        except LeaseError as exc:
            logger.warning("reading the leader lease %s: %s", self.description, exc)
            return False
        if found is None:
            try:
                version = await self.store.create(record)
            except LeaseError as exc:
                # LeaseConflict: another candidate created it first; it is read at the next attempt.
                logger.info("creating the leader lease %s: %s", self.description, exc)
                return False
            self._succeeded(record, version, sent_at)
            return True

        current, version = found
        self._observe(current, version)
        if (
            current.holder_identity
            and current.holder_identity != self.identity
            and self._clock() < self._observed_at + current.lease_duration_seconds
        ):
            return False  # held, and it changed within its lease duration by our clock
        if current.holder_identity == self.identity:
            record = replace(
                record, acquire_time=current.acquire_time, lease_transitions=current.lease_transitions
            )
        else:
            record = replace(record, lease_transitions=current.lease_transitions + 1)
        try:
            new_version = await self.store.update(record, version)
        except LeaseError as exc:
            # LeaseConflict: another candidate won the race for it (or the holder renewed just now).
            logger.info("taking the leader lease %s: %s", self.description, exc)
            return False
        self._succeeded(record, new_version, sent_at)
        return True

    async def release(self) -> bool:
        """Stop campaigning and, if this process holds the Lease, hand it back (client-go's ReleaseOnCancel:
        ``holderIdentity: ""``, ``leaseDurationSeconds: 1``). ``leading`` is false from the first line on, so
        call this only after the work the Lease guards has finished. True if the Lease was released."""
        was = self._state
        self._state = _State.RELEASED
        await self._stop_loop()
        if was is _State.LOST:
            return False  # a deposed leader releases nothing: someone else may lead by now
        if self._observed is None or self._observed_version is None or not self._holding(ever=True):
            return False
        if was is _State.LEADING:
            logger.info("releasing the leader lease %s", self.description)
            await self._bounded(
                self.store.record_event("LeaderElection", f"{self.identity} stopped leading (released)"),
                2.0,
                default=None,
            )
        released = await self._bounded(self._release(), self.renew_deadline, default=False)
        if not released:
            logger.warning("could not release the leader lease %s; it expires by itself", self.description)
        return released

    async def _release(self) -> bool:
        for _ in range(3):
            assert self._observed is not None and self._observed_version is not None
            moment = self._now()
            record = LeaseRecord(
                holder_identity="",
                lease_duration_seconds=1,
                acquire_time=moment,
                renew_time=moment,
                lease_transitions=self._observed.lease_transitions,
            )
            try:
                version = await self.store.update(record, self._observed_version)
            except LeaseConflict:
                # A renew whose answer we never saw may have landed: read, and release only if still ours.
                try:
                    found = await self.store.get()
                except LeaseError:
                    return False
                if found is None or found[0].holder_identity != self.identity:
                    return False
                self._observe(*found)
                continue
            except LeaseError as exc:
                logger.warning("releasing the leader lease %s: %s", self.description, exc)
                return False
            self._observe(record, version)
            return True
        return False

    # ------------------------------------------------------------------ internals

    def _holding(self, *, ever: bool = False) -> bool:
        """The last record we saw (or wrote) names us; and, unless ``ever``, our own lease is still valid."""
        if self._observed is None or self._observed.holder_identity != self.identity:
            return False
        return ever or self._clock() < self._observed_at + self._observed.lease_duration_seconds

    def _observe(self, record: LeaseRecord, version: str) -> None:
        if record != self._observed:
            self._observed = record
            self._observed_at = self._clock()
        self._observed_version = version
        holder = record.holder_identity
        if holder and holder != self._reported_leader:
            self._reported_leader = holder
            if holder != self.identity:
                logger.info("the leader lease %s is held by %s", self.description, holder)
                if self.on_new_leader is not None:
                    self.on_new_leader(holder)

    def _succeeded(self, record: LeaseRecord, version: str, sent_at: float) -> None:
        self._observe(record, version)
        # Timed from the request, not the answer: it may have landed any time after it was sent.
        self._renewed_at = sent_at

    def _start_leading(self) -> None:
        self._state = _State.LEADING
        logger.info(
            "acquired the leader lease %s as %s: this replica now acts", self.description, self.identity
        )
        task = asyncio.ensure_future(
            self._bounded(
                self.store.record_event("LeaderElection", f"{self.identity} became leader"), 5.0, default=None
            )
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        if self.on_started_leading is not None:
            self.on_started_leading()

    def _lose(self, reason: str) -> None:
        self._state = _State.LOST
        logger.error("lost the leader lease %s: %s; this replica stops acting", self.description, reason)
        if self.on_lost_leadership is not None:
            self.on_lost_leadership(reason)

    async def _stop_loop(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for background in list(self._background):
            background.cancel()

    async def _attempt(self, seconds: float) -> bool:
        """One ``try_acquire_or_renew`` bounded by ``seconds``; a bug in it is logged, not fatal."""
        try:
            return await self._bounded(self.try_acquire_or_renew(), seconds, default=False)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("a leader election attempt on %s crashed", self.description)
            return False

    async def _bounded(self, coro: Awaitable[T], seconds: float, *, default: T) -> T:
        """``coro``'s result, or ``default`` if it takes longer than ``seconds`` by the injected ``sleep`` (a
        hung apiserver call must not hold the renew loop past the deadline; the worker thread of a call
        abandoned this way finishes on its own, and whatever it wrote is read at the next attempt)."""
        work = asyncio.ensure_future(coro)
        timer = asyncio.ensure_future(self._sleep(max(0.0, seconds)))
        try:
            await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not work.done():
                work.cancel()
        if work.done() and not work.cancelled():
            return work.result()
        with contextlib.suppress(asyncio.CancelledError):
            await work
        return default


# ------------------------------------------------------------------------------------------ the fences


class FencedKube:
    """A ``KubeAPI`` that refuses every write (status patches, events — and any write method added to the
    protocol later) with ``NotLeading`` while ``fence`` says this process is not the leader. Reads pass."""

    _READS = ("read_", "get_", "list_")

    def __init__(self, inner: KubeAPI, fence: Callable[[], None]) -> None:
        self._inner = inner
        self._fence = fence

    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        return await self._inner.read_secret(namespace, name)

    async def patch_status(
        self, namespace: str, name: str, resource_version: str | None, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        self._fence()
        return await self._inner.patch_status(namespace, name, resource_version, patch)

    async def post_event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self._fence()
        await self._inner.post_event(obj, type_, reason, message)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name.startswith(self._READS) or not callable(attribute):
            return attribute

        async def fenced(*args: Any, **kwargs: Any) -> Any:
            self._fence()
            return await attribute(*args, **kwargs)

        return fenced


# -------------------------------------------------------------------------------- the official client


def _lease_error(exc: Exception, what: str) -> LeaseError:
    status = exc.status if isinstance(exc, ApiException) else None
    if status == 409:
        return LeaseConflict(f"{what}: the Lease changed meanwhile (HTTP 409)")
    if status == 404:
        return LeaseConflict(f"{what}: the Lease no longer exists (HTTP 404)")
    if status in (401, 403):
        return LeaseError(
            f"{what}: the Kubernetes API refused the operator (HTTP {status}); fix: grant its ServiceAccount "
            "the Role azswitch-leader-election of deploy/base/rbac.yaml in the Lease's namespace"
        )
    if isinstance(exc, ApiException):
        return LeaseError(f"{what}: HTTP {status or 'error'}")
    if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
        return LeaseError(f"{what}: Kubernetes API unavailable ({type(exc).__name__})")
    return LeaseError(f"{what}: {type(exc).__name__}: {exc}")


class KubeLeaseStore:
    """``LeaseStore`` over ``CoordinationV1Api``: GET, POST and PUT (``update`` carries the resourceVersion,
    so the apiserver answers 409 to a stale one). Raw JSON both ways, so that MicroTime is exactly what
    ``format_micro_time`` writes."""

    def __init__(
        self, api_client: k8s.ApiClient, namespace: str, name: str, *, timeout: float = 10.0
    ) -> None:
        self.namespace = namespace
        self.name = name
        # Typed as Any: called with raw JSON bodies and _preload_content=False (raw responses), which the
        # client's annotations (model objects in, model objects out) do not describe.
        self._leases: Any = k8s.CoordinationV1Api(api_client)
        self._core: Any = k8s.CoreV1Api(api_client)
        self._timeout = (min(5.0, timeout), timeout)
        self._uid: str | None = None

    def _body(self, record: LeaseRecord, resource_version: str | None = None) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": self.name,
            "namespace": self.namespace,
            "labels": {
                "app.kubernetes.io/name": "azswitch",
                "app.kubernetes.io/component": "leader-election",
            },
        }
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        spec = {k: v for k, v in record.to_spec().items() if v is not None}
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}

    def _version(self, response: Any) -> str:
        body = json.loads(response.data)
        meta = body.get("metadata") or {}
        self._uid = meta.get("uid") or self._uid
        return str(meta.get("resourceVersion", ""))

    async def get(self) -> tuple[LeaseRecord, str] | None:
        try:
            response = await asyncio.to_thread(
                self._leases.read_namespaced_lease,
                self.name,
                self.namespace,
                _request_timeout=self._timeout,
                _preload_content=False,
            )
        except Exception as exc:
            if isinstance(exc, ApiException) and exc.status == 404:
                return None
            raise _lease_error(exc, f"reading Lease {self.namespace}/{self.name}") from None
        body = json.loads(response.data)
        meta = body.get("metadata") or {}
        self._uid = meta.get("uid") or self._uid
        return LeaseRecord.from_spec(body.get("spec") or {}), str(meta.get("resourceVersion", ""))

    async def create(self, record: LeaseRecord) -> str:
        try:
            response = await asyncio.to_thread(
                self._leases.create_namespaced_lease,
                self.namespace,
                self._body(record),
                _request_timeout=self._timeout,
                _preload_content=False,
            )
        except Exception as exc:
            raise _lease_error(exc, f"creating Lease {self.namespace}/{self.name}") from None
        return self._version(response)

    async def update(self, record: LeaseRecord, resource_version: str) -> str:
        try:
            response = await asyncio.to_thread(
                self._leases.replace_namespaced_lease,
                self.name,
                self.namespace,
                self._body(record, resource_version),
                _request_timeout=self._timeout,
                _preload_content=False,
            )
        except Exception as exc:
            raise _lease_error(exc, f"updating Lease {self.namespace}/{self.name}") from None
        return self._version(response)

    async def record_event(self, reason: str, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # core/v1 Event times: RFC 3339, seconds
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{self.name}.", "namespace": self.namespace},
            "involvedObject": {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "name": self.name,
                "namespace": self.namespace,
                **({"uid": self._uid} if self._uid else {}),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Normal",
            "source": {"component": COMPONENT},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
        }
        try:
            await asyncio.to_thread(
                self._core.create_namespaced_event,
                self.namespace,
                event,
                _request_timeout=self._timeout,
                _preload_content=False,
            )
        except Exception as exc:
            logger.warning(
                "could not post the %s event on Lease %s/%s: %s",
                reason,
                self.namespace,
                self.name,
                getattr(exc, "status", None) or type(exc).__name__,
            )
