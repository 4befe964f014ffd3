"""Leader election (azswitch.leader): the state machine step by step on a virtual clock, and its fences.

The elector runs against ``MemoryLeaseStore`` (the apiserver's optimistic concurrency, injectable faults)
with injected ``clock``/``now``/``sleep``: ``VirtualTime`` below is a tiny scheduler, so that two candidates
campaign concurrently and a 15 s lease takes no real time. What is proven, in client-go's terms: acquire an
absent or released Lease, renew it, lose it at the renew deadline (also when the renew call hangs), take an
expired one over only after a full lease duration *by the candidate's own clock* (never a fresh one, never
because of a timestamp in the record), release on stop, lose a racing update, count ``leaseTransitions``, write
MicroTime. Then the fences: the Kubernetes writes, the cloud transport (every attempt, after the rate
limiter and a Retry-After), the work queue's gate and drain, the settings and the CLI flags.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from azswitch.cloud import CloudConnections
from azswitch.controller import Controller
from azswitch.dev.leases import LeaseClient, MemoryLeaseStore
from azswitch.errors import ConfigError, NotLeading
from azswitch.leader import (
    FencedKube,
    LeaderElection,
    LeaderElector,
    LeaseError,
    LeaseRecord,
    format_micro_time,
    parse_micro_time,
)
from azswitch.reconcile import Credentials
from azswitch.settings import load_settings

EPOCH = datetime(2030, 1, 1, tzinfo=UTC)
LEASE, RENEW, RETRY = 15, 10.0, 2.0


class VirtualTime:
    """A clock and a ``sleep`` for it: sleepers wake in order of their deadline as ``advance`` moves time."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return EPOCH + timedelta(seconds=self.now)

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._seq), future))
        await future

    @staticmethod
    async def settle() -> None:
        for _ in range(50):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Run everything due within the next ``seconds``, waking sleepers at their own times."""
        until = self.now + seconds
        await self.settle()
        while self._sleepers and self._sleepers[0][0] <= until:
            when, _, future = heapq.heappop(self._sleepers)
            if future.done():
                continue
            self.now = max(self.now, when)
            future.set_result(None)
            await self.settle()
        self.now = until
        await self.settle()


def elector(
    store: LeaseClient,
    time: VirtualTime,
    identity: str = "a",
    *,
    events: list[str] | None = None,
    lease: float = LEASE,
    renew: float = RENEW,
    retry: float = RETRY,
) -> LeaderElector:
    log = events if events is not None else []
    return LeaderElector(
        store,
        identity=identity,
        lease_duration=lease,
        renew_deadline=renew,
        retry_period=retry,
        description="azswitch-system/azswitch-leader",
        clock=time.clock,
        now=time.wall,
        sleep=time.sleep,
        rng=random.Random(7),
        on_started_leading=lambda: log.append(f"{identity} started"),
        on_lost_leadership=lambda reason: log.append(f"{identity} lost"),
    )


def held_by(
    holder: str, time: VirtualTime, transitions: int = 0, renewed: datetime | None = None
) -> LeaseRecord:
    moment = renewed or time.wall()
    return LeaseRecord(holder, LEASE, moment, moment, transitions)


# ------------------------------------------------------------------------------------------ single steps


async def test_acquires_an_absent_lease_by_creating_it() -> None:
    time, store = VirtualTime(), MemoryLeaseStore()
    a = elector(store.view("a"), time)
    assert await a.try_acquire_or_renew()
    assert store.record == LeaseRecord("a", LEASE, time.wall(), time.wall(), 0)
    assert store.calls == [("a", "get"), ("a", "create")]
    a._state = a._state.LEADING  # what run() does after a successful attempt
    assert a.leading


@pytest.mark.parametrize(
    ("existing", "transitions"),
    [
        pytest.param(LeaseRecord("", 1, EPOCH, EPOCH, 3), 4, id="released-by-its-holder"),
        pytest.param(LeaseRecord("", 0, None, None, 0), 1, id="empty-record"),
    ],
)
async def test_takes_a_lease_nobody_holds_at_once(existing: LeaseRecord, transitions: int) -> None:
    time, store = VirtualTime(), MemoryLeaseStore(record=existing, version=5)
    a = elector(store.view("a"), time)
    assert await a.try_acquire_or_renew()
    assert store.record == LeaseRecord("a", LEASE, time.wall(), time.wall(), transitions)


async def test_renewing_keeps_acquire_time_and_transitions_and_needs_no_read() -> None:
    time, store = VirtualTime(), MemoryLeaseStore()
    a = elector(store.view("a"), time)
    assert await a.try_acquire_or_renew()
    acquired = time.wall()
    store.calls.clear()
    time.now += RETRY
    assert await a.try_acquire_or_renew()
    assert store.record == LeaseRecord("a", LEASE, acquired, time.wall(), 0)
    assert store.calls == [("a", "update")]  # the leader's fast path: no GET


async def test_a_renew_conflict_falls_back_to_reading_and_gives_way_to_the_new_holder() -> None:
    time, store = VirtualTime(), MemoryLeaseStore()
    a = elector(store.view("a"), time)
    assert await a.try_acquire_or_renew()
    store.put(held_by("b", time, transitions=1))  # b took it (say, a's clock ran slow)
    store.calls.clear()
    assert not await a.try_acquire_or_renew()
    assert store.record is not None and store.record.holder_identity == "b"
    assert store.calls == [("a", "update"), ("a", "get")]
    assert a.holder == "b"


@pytest.mark.parametrize(
    "renewed",
    [
        pytest.param(EPOCH - timedelta(days=3650), id="renewTime-years-ago"),
        pytest.param(EPOCH + timedelta(days=3650), id="renewTime-in-the-future"),
    ],
)
async def test_an_unchanged_lease_is_taken_over_only_after_a_full_lease_duration_by_own_clock(
    renewed: datetime,
) -> None:
    # The record's timestamps are another node's clock: they neither shorten nor lengthen the wait.
    time = VirtualTime()
    store = MemoryLeaseStore(record=held_by("b", time, transitions=2, renewed=renewed), version=9)
    a = elector(store.view("a"), time)
    first_seen = time.now
    for at in (0.0, 5.0, 14.9):
        time.now = first_seen + at
        assert not await a.try_acquire_or_renew(), f"took a lease unchanged for only {at}s"
    time.now = first_seen + LEASE
    assert await a.try_acquire_or_renew()
    assert store.record == LeaseRecord("a", LEASE, time.wall(), time.wall(), 3)


async def test_a_lease_that_keeps_changing_is_never_taken_over() -> None:
    time = VirtualTime()
    store = MemoryLeaseStore(record=held_by("b", time), version=1)
    a = elector(store.view("a"), time)
    for _ in range(20):  # 200 s: b renews every 10 s, a looks every 10 s just before each renew
        assert not await a.try_acquire_or_renew()
        time.now += 10
        store.put(held_by("b", time))
    assert store.record is not None and store.record.holder_identity == "b"


async def test_a_racing_update_loses_to_the_other_candidate() -> None:
    time = VirtualTime()
    store = MemoryLeaseStore(record=held_by("c", time, transitions=4), version=1)
    a, b = elector(store.view("a"), time, "a"), elector(store.view("b"), time, "b")
    assert not await a.try_acquire_or_renew() and not await b.try_acquire_or_renew()
    time.now += LEASE  # both saw c's lease unchanged for a full duration

    async def b_wins_meanwhile() -> None:
        assert await b.try_acquire_or_renew()

    racing = store.view("a")
    racing.before_update = b_wins_meanwhile  # between a's GET and a's PUT
    a.store = racing
    assert not await a.try_acquire_or_renew()
    assert store.record == LeaseRecord("b", LEASE, time.wall(), time.wall(), 5)  # counted once
    assert not a.leading
    racing.before_update = None
    assert not await a.try_acquire_or_renew()  # and b's fresh lease is respected from now on
    assert a.holder == "b" and store.record.holder_identity == "b"


async def test_lease_transitions_count_changes_of_holder_only() -> None:
    time, store = VirtualTime(), MemoryLeaseStore()
    a, b = elector(store.view("a"), time, "a"), elector(store.view("b"), time, "b")
    history: list[tuple[str, int]] = []

    def note() -> None:
        assert store.record is not None
        history.append((store.record.holder_identity, store.record.lease_transitions))

    assert await a.try_acquire_or_renew()
    note()
    time.now += 2
    assert await a.try_acquire_or_renew()
    note()
    assert not await b.try_acquire_or_renew()  # b sees a's record
    time.now += LEASE  # a died
    assert await b.try_acquire_or_renew()
    note()
    b._state = b._state.LEADING
    assert await b.release()
    note()
    a2 = elector(store.view("a2"), time, "a2")
    assert await a2.try_acquire_or_renew()
    note()
    assert history == [("a", 0), ("a", 0), ("b", 1), ("", 1), ("a2", 2)]


async def test_the_renew_deadline_counts_from_when_the_request_was_sent() -> None:
    # A renew whose answer takes 3 s may have landed right after it was sent: others may then count their
    # lease duration from that moment, so the leader's deadline does too.
    time, store = VirtualTime(), MemoryLeaseStore()
    slow = store.view("a")
    a = elector(slow, time)
    assert await a.try_acquire_or_renew()
    a._state = a._state.LEADING

    async def three_seconds_on_the_wire() -> None:
        time.now += 3

    slow.before_update = three_seconds_on_the_wire
    sent = time.now
    assert await a.try_acquire_or_renew()
    time.now = sent + RENEW - 0.01
    assert a.leading
    time.now = sent + RENEW
    assert not a.leading
    with pytest.raises(NotLeading, match="not the leader of azswitch-system/azswitch-leader"):
        a.check()


# ------------------------------------------------------------------------------------------ the loop


async def test_run_acquires_renews_and_loses_at_the_renew_deadline_exactly() -> None:
    time, store = VirtualTime(), MemoryLeaseStore()
    client = store.view("a")
    events: list[str] = []
    a = elector(client, time, events=events)
    task = asyncio.create_task(a.run())
    await time.advance(0)
    assert a.leading and events == ["a started"]
    assert store.events == [("LeaderElection", "a became leader")]
    await time.advance(9 * RETRY)  # renewed every retry period
    assert a.leading and store.record is not None
    assert store.record.renew_time == time.wall()
    assert [method for _, method in store.calls].count("update") == 9

    client.error = LeaseError("Kubernetes API unavailable (ConnectionRefusedError)")
    renewed_at = time.now  # the last successful renew was sent at this moment
    await time.advance(RENEW - 0.01)
    assert a.leading and events == ["a started"]
    await time.advance(0.01)
    assert not a.leading
    assert events == ["a started", "a lost"]
    assert task.done() and a.state == "lost"
    assert time.now - renewed_at == pytest.approx(RENEW)
    await task


async def test_a_hung_renew_call_does_not_hold_the_leader_past_its_deadline() -> None:
    time, store = VirtualTime(), MemoryLeaseStore()
    client = store.view("a")
    events: list[str] = []
    a = elector(client, time, events=events)
    task = asyncio.create_task(a.run())
    await time.advance(0)
    acquired = time.now
    client.stall = asyncio.Event()  # every call from now on never answers
    await time.advance(RENEW - 0.01)
    assert a.leading
    await time.advance(0.02)
    assert not a.leading and events[-1] == "a lost"
    assert task.done()
    assert time.now - acquired <= RENEW + 0.02


async def test_a_partitioned_leader_stops_acting_before_the_standby_may_start() -> None:
    """Two candidates on one clock: at no moment do both act, and the gap is lease - renew deadline."""
    time, store = VirtualTime(), MemoryLeaseStore()
    a_client, b_client = store.view("a"), store.view("b")
    events: list[str] = []
    a = elector(a_client, time, "a", events=events)
    b = elector(b_client, time, "b", events=events)
    tasks = [asyncio.create_task(a.run())]
    await time.advance(0)
    tasks.append(asyncio.create_task(b.run()))
    assert a.leading
    a_client.error = LeaseError("the network of a's AZ is gone")
    stopped = started = None
    for _ in range(int(40 / 0.05)):
        await time.advance(0.05)
        assert not (a.leading and b.leading), f"two leaders at t={time.now}"
        if stopped is None and not a.leading:
            stopped = time.now
        if started is None and b.leading:
            started = time.now
    assert stopped is not None and started is not None
    print(f"a stopped acting at {stopped}, b started at {started}")
    assert started - stopped >= LEASE - RENEW - 0.05
    assert events == ["a started", "a lost", "b started"]
    assert store.record is not None and store.record.holder_identity == "b"
    assert store.record.lease_transitions == 1
    b_task = tasks[1]
    await b.release()
    await asyncio.gather(*tasks)
    assert b_task.done()


async def test_release_hands_the_lease_over_at_once() -> None:
    time, store = VirtualTime(), MemoryLeaseStore()
    events: list[str] = []
    a = elector(store.view("a"), time, "a", events=events)
    b = elector(store.view("b"), time, "b", events=events)
    a_task = asyncio.create_task(a.run())
    await time.advance(0)
    b_task = asyncio.create_task(b.run())
    await time.advance(5)
    assert a.leading and not b.leading
    acquired = store.record.acquire_time if store.record else None

    released = await a.release()
    assert released and not a.leading and a_task.done()
    assert store.record == LeaseRecord("", 1, time.wall(), time.wall(), 0)
    assert acquired is not None
    assert ("LeaderElection", "a stopped leading (released)") in store.events
    await time.advance(RETRY * (1 + 0.2))  # b's next attempt, not a lease duration later
    assert b.leading and events == ["a started", "b started"]
    assert store.record is not None and store.record.lease_transitions == 1
    await b.release()
    await b_task


async def test_release_after_a_renew_we_never_saw_rereads_and_still_releases() -> None:
    time, store = VirtualTime(), MemoryLeaseStore()
    a = elector(store.view("a"), time)
    assert await a.try_acquire_or_renew()
    a._state = a._state.LEADING
    assert store.record is not None
    store.put(store.record)  # our renew landed, its answer was lost: the version moved on
    assert await a.release()
    assert store.record is not None and store.record.holder_identity == ""


@pytest.mark.parametrize("state", ["candidate", "lost"])
async def test_a_candidate_or_a_deposed_leader_releases_nothing(state: str) -> None:
    time = VirtualTime()
    store = MemoryLeaseStore(record=held_by("b", time), version=3)
    a = elector(store.view("a"), time)
    assert not await a.try_acquire_or_renew()
    if state == "lost":
        store.put(held_by("a", time))
        assert await a.try_acquire_or_renew()
        a._state = a._state.LOST
    before = (store.record, store.version)
    assert not await a.release()
    assert (store.record, store.version) == before


async def test_a_missing_lease_raced_by_another_creator_is_just_a_failed_attempt() -> None:
    time, store = VirtualTime(), MemoryLeaseStore()
    client = store.view("a")

    async def b_creates_it_first() -> None:
        store.put(held_by("b", time))

    original = client.create

    async def create(record: LeaseRecord) -> str:
        await b_creates_it_first()
        return await original(record)

    client.create = create  # type: ignore[method-assign]
    a = elector(client, time)
    assert not await a.try_acquire_or_renew()
    assert store.record is not None and store.record.holder_identity == "b"


def test_timing_is_validated() -> None:
    store = MemoryLeaseStore().view()
    time = VirtualTime()
    for lease, renew, retry in ((10, 10, 2), (15, 2, 2), (15, 10, 0)):
        with pytest.raises(ConfigError, match="lease duration > renew deadline > retry period"):
            elector(store, time, lease=lease, renew=renew, retry=retry)


# ---------------------------------------------------------------------------------------------- MicroTime


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        pytest.param(datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC), "2024-05-01T12:00:00.000000Z", id="whole"),
        pytest.param(
            datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC), "2024-05-01T12:00:00.123456Z", id="us"
        ),
        pytest.param(
            datetime(2024, 5, 1, 14, 0, 0, 5, tzinfo=timezone(timedelta(hours=2))),
            "2024-05-01T12:00:00.000005Z",
            id="offset",
        ),
    ],
)
def test_micro_time_is_rfc3339_utc_with_six_digits(moment: datetime, text: str) -> None:
    assert format_micro_time(moment) == text
    assert parse_micro_time(text) == moment


def test_the_record_round_trips_through_a_lease_spec() -> None:
    record = LeaseRecord("pod-a_1234", 15, EPOCH, EPOCH + timedelta(seconds=1.5), 7)
    spec = record.to_spec()
    assert spec == {
        "holderIdentity": "pod-a_1234",
        "leaseDurationSeconds": 15,
        "acquireTime": "2030-01-01T00:00:00.000000Z",
        "renewTime": "2030-01-01T00:00:01.500000Z",
        "leaseTransitions": 7,
    }
    assert LeaseRecord.from_spec(spec) == record


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({}, id="empty"),
        pytest.param({"holderIdentity": 3, "leaseDurationSeconds": "15", "renewTime": "soon"}, id="garbage"),
        pytest.param({"leaseTransitions": True}, id="bool-is-not-a-number"),
    ],
)
def test_a_lease_written_by_someone_else_is_read_leniently(spec: Mapping[str, Any]) -> None:
    assert LeaseRecord.from_spec(spec) == LeaseRecord()


# ------------------------------------------------------------------------------------ identity and namespace


@pytest.mark.parametrize(
    ("env", "setting", "file_text", "namespace"),
    [
        pytest.param({}, "ops", None, "ops", id="setting-wins"),
        pytest.param(
            {"POD_NAMESPACE": "azswitch-system"}, None, "other", "azswitch-system", id="downward-api"
        ),
        pytest.param({}, None, "from-file\n", "from-file", id="service-account-file"),
    ],
)
def test_the_lease_namespace(
    tmp_path: Path, env: dict[str, str], setting: str | None, file_text: str | None, namespace: str
) -> None:
    path = tmp_path / "namespace"
    if file_text is not None:
        path.write_text(file_text)
    settings = load_settings({}, leader_elect=True, leader_election_namespace=setting)
    election = LeaderElection.from_settings(settings, env, namespace_file=path, hostname=lambda: "host")
    assert election.namespace == namespace
    assert (election.name, election.lease_duration, election.renew_deadline, election.retry_period) == (
        "azswitch-leader",
        15,
        10.0,
        2.0,
    )


def test_no_namespace_outside_a_cluster_is_a_clear_start_up_error(tmp_path: Path) -> None:
    settings = load_settings({}, leader_elect=True)
    with pytest.raises(ConfigError) as info:
        LeaderElection.from_settings(settings, {}, namespace_file=tmp_path / "absent")
    assert "AZSWITCH_LEADER_ELECTION_NAMESPACE" in str(info.value)
    assert "--leader-election-namespace" in str(info.value)


def test_a_bad_pod_namespace_names_its_source(tmp_path: Path) -> None:
    settings = load_settings({}, leader_elect=True)
    with pytest.raises(ConfigError, match="POD_NAMESPACE"):
        LeaderElection.from_settings(settings, {"POD_NAMESPACE": "Not_A_Name"}, namespace_file=tmp_path / "x")


@pytest.mark.parametrize(
    ("env", "prefix"),
    [
        pytest.param({"POD_NAME": "azswitch-7d9f-abcde"}, "azswitch-7d9f-abcde_", id="pod-name"),
        pytest.param({}, "node-1_", id="hostname"),
    ],
)
def test_identities_are_unique_per_process(tmp_path: Path, env: dict[str, str], prefix: str) -> None:
    settings = load_settings({}, leader_elect=True, leader_election_namespace="ns")
    one, two = (
        LeaderElection.from_settings(settings, env, hostname=lambda: "node-1").identity for _ in range(2)
    )
    assert one.startswith(prefix) and two.startswith(prefix)
    assert one != two, "two processes on one host must never share an identity"


@pytest.mark.parametrize(
    ("environ", "needle"),
    [
        pytest.param(
            {"AZSWITCH_LEADER_ELECTION_RENEW_DEADLINE": "15"},
            "AZSWITCH_LEADER_ELECTION_LEASE_DURATION (15) > AZSWITCH_LEADER_ELECTION_RENEW_DEADLINE (15)",
            id="renew-not-below-lease",
        ),
        pytest.param(
            {"AZSWITCH_LEADER_ELECTION_RETRY_PERIOD": "10"},
            "AZSWITCH_LEADER_ELECTION_RETRY_PERIOD (10)",
            id="retry-not-below-renew",
        ),
        pytest.param(
            {"AZSWITCH_LEADER_ELECTION_LEASE_DURATION": "4.5"},
            "AZSWITCH_LEADER_ELECTION_LEASE_DURATION",
            id="lease-whole-seconds",
        ),
        pytest.param({"AZSWITCH_LEADER_ELECT": "maybe"}, "AZSWITCH_LEADER_ELECT", id="bool"),
        pytest.param(
            {"AZSWITCH_LEADER_ELECTION_NAMESPACE": "Ops"},
            "AZSWITCH_LEADER_ELECTION_NAMESPACE",
            id="namespace",
        ),
        pytest.param({"AZSWITCH_LEADER_ELECTION_ID": "a_b"}, "AZSWITCH_LEADER_ELECTION_ID", id="lease-name"),
    ],
)
def test_bad_leader_election_settings_name_the_variable(environ: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ)
    assert needle in str(info.value)


def test_leader_election_defaults_are_controller_runtimes() -> None:
    settings = load_settings({})
    assert not settings.leader_elect
    assert settings.leader_election_id == "azswitch-leader"
    assert (
        settings.leader_election_lease_duration,
        settings.leader_election_renew_deadline,
        settings.leader_election_retry_period,
    ) == (15, 10.0, 2.0)
    fast = load_settings(
        {
            "AZSWITCH_LEADER_ELECT": "true",
            "AZSWITCH_LEADER_ELECTION_LEASE_DURATION": "4",
            "AZSWITCH_LEADER_ELECTION_RENEW_DEADLINE": "3",
            "AZSWITCH_LEADER_ELECTION_RETRY_PERIOD": "0.5",
        }
    )
    assert fast.leader_elect and fast.leader_election_retry_period == 0.5


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param([], (None, None, None), id="nothing-given"),
        pytest.param(
            ["--leader-elect", "--leader-election-namespace", "ops", "--leader-election-id", "azs"],
            (True, "ops", "azs"),
            id="all",
        ),
        pytest.param(["--no-leader-elect"], (False, None, None), id="off-for-a-local-run"),
    ],
)
def test_run_flags(argv: list[str], expected: tuple[Any, ...]) -> None:
    from azswitch.cli import _parser

    args = _parser().parse_args(["run", *argv])
    assert (args.leader_elect, args.leader_election_namespace, args.leader_election_id) == expected


def test_leader_elect_without_a_namespace_exits_2_before_touching_a_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from azswitch.cli import main

    for name in ("POD_NAMESPACE", "KUBERNETES_SERVICE_HOST", "AZSWITCH_LEADER_ELECTION_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    if Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").exists():
        pytest.skip("this test runs in a pod: the service account namespace is found")
    code = main(["run", "--leader-elect", "--kubeconfig", str(tmp_path / "no-such-kubeconfig")])
    assert code == 2
    err = capsys.readouterr().err
    assert "AZSWITCH_LEADER_ELECTION_NAMESPACE" in err and "kubeconfig" not in err.lower()


# ------------------------------------------------------------------------------------------- the fences


class RecordingKube:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        self.calls.append("read_secret")
        return {"accessKey": "AK"}

    async def patch_status(
        self, namespace: str, name: str, resource_version: str | None, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        self.calls.append("patch_status")
        return {}

    async def post_event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self.calls.append("post_event")

    async def patch_drain_status(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append("patch_drain_status")
        return {}

    async def read_namespace_labels(self, name: str) -> dict[str, str] | None:
        self.calls.append("read_namespace_labels")
        return {}


class Switch:
    def __init__(self) -> None:
        self.leading = True

    def check(self) -> None:
        if not self.leading:
            raise NotLeading("not the leader")


async def test_fenced_kube_refuses_every_write_but_lets_reads_through() -> None:
    inner, switch = RecordingKube(), Switch()
    kube: Any = FencedKube(inner, switch.check)
    await kube.patch_status("ns", "rg", "1", {})
    await kube.post_event({}, "Normal", "X", "y")
    await kube.patch_drain_status("drain", {})
    assert inner.calls == ["patch_status", "post_event", "patch_drain_status"]
    switch.leading = False
    writes: list[Callable[[], Awaitable[Any]]] = [
        lambda: kube.patch_status("ns", "rg", "1", {}),
        lambda: kube.post_event({}, "Normal", "X", "y"),
        lambda: kube.patch_drain_status("drain", {}),  # a write added to KubeAPI later: fenced by default
    ]
    for write in writes:
        with pytest.raises(NotLeading):
            await write()
    assert await kube.read_secret("ns", "s") == {"accessKey": "AK"}
    assert await kube.read_namespace_labels("ns") == {}
    assert inner.calls[3:] == ["read_secret", "read_namespace_labels"]


async def test_the_cloud_fence_refuses_a_retry_of_a_throttled_switchover_after_leadership_is_lost() -> None:
    """A 429 with Retry-After makes the client send the POST again later; by then this replica may no
    longer lead. The fence runs before every attempt, after the wait, so the retry never leaves."""
    switch = Switch()
    reached: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        reached.append(f"{request.method} {request.url.path}")
        switch.leading = False  # the Lease is lost while the client waits out the Retry-After
        return httpx.Response(429, headers={"Retry-After": "0"}, json={"error_code": "APIGW.0308"})

    connections = CloudConnections(transport=httpx.MockTransport(handler), fence=switch.check)
    cloud = connections.backend(
        "EVS", "https://evs.example.com", "0123456789abcdef0123456789abcdef", Credentials("AK", "SK")
    )
    try:
        with pytest.raises(NotLeading):
            await cloud.start_switchover("91085433-9499-4a68-b2c6-35072467ccd2", "az2.dc2")
    finally:
        await connections.aclose()
    assert len(reached) == 1 and reached[0].startswith("POST ")


async def test_the_cloud_fence_stops_reads_too_and_is_off_without_leader_election() -> None:
    reached: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        reached.append(request.method)
        return httpx.Response(200, json={})

    switch = Switch()
    switch.leading = False
    fenced = CloudConnections(transport=httpx.MockTransport(handler), fence=switch.check)
    unfenced = CloudConnections(transport=httpx.MockTransport(handler))
    try:
        with pytest.raises(NotLeading):
            await fenced.http("https://evs.example.com").get("/v2/x")
        assert reached == []
        await unfenced.http("https://evs.example.com").get("/v2/x")
        assert reached == ["GET"]
    finally:
        await fenced.aclose()
        await unfenced.aclose()


# --------------------------------------------------------------------------------------- the work queue


def body(name: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "uid": name, "generation": 1}, "spec": {}}


async def test_a_standby_queue_fills_but_reconciles_nothing_until_started() -> None:
    switch = Switch()
    switch.leading = False
    seen: list[str] = []

    async def reconcile(obj: Mapping[str, Any]) -> float | None:
        seen.append(obj["metadata"]["name"])
        return None

    controller = Controller(reconcile, workers=2, gate=lambda: switch.leading)
    controller.start()  # even if workers ran, the gate holds them
    for name in ("a", "b", "c"):
        controller.observe("ADDED", body(name))
    await asyncio.sleep(0.05)
    assert seen == []
    await controller.stop()
    switch.leading = True
    controller.enqueue_all()
    controller.start()
    await asyncio.sleep(0.05)
    assert sorted(seen) == ["a", "b", "c"]
    await controller.stop()


async def test_abandon_stops_a_reconcile_mid_step_and_stop_with_drain_lets_one_finish() -> None:
    steps: list[str] = []
    release = asyncio.Event()

    async def reconcile(obj: Mapping[str, Any]) -> float | None:
        steps.append("begin")
        await release.wait()
        steps.append("end")
        return None

    controller = Controller(reconcile, workers=1)
    controller.start()
    controller.observe("ADDED", body("a"))
    await asyncio.sleep(0.01)
    controller.abandon()
    release.set()
    await asyncio.sleep(0.01)
    await controller.stop()
    assert steps == ["begin"]

    steps.clear()
    release.clear()
    controller = Controller(reconcile, workers=2)
    controller.start()
    controller.observe("ADDED", body("b"))
    await asyncio.sleep(0.01)
    stopping = asyncio.create_task(controller.stop(drain=5.0))
    await asyncio.sleep(0.01)
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, 1.0)
    assert steps == ["begin", "end"]


async def test_not_leading_inside_a_reconcile_is_not_a_crash() -> None:
    errors: list[BaseException] = []
    calls = 0

    async def reconcile(obj: Mapping[str, Any]) -> float | None:
        nonlocal calls
        calls += 1
        raise NotLeading("the Lease is gone")

    controller = Controller(reconcile, workers=1, on_error=lambda key, exc: errors.append(exc))
    controller.start()
    controller.observe("ADDED", body("a"))
    controller.observe("ADDED", body("b"))
    await asyncio.sleep(0.05)
    await controller.stop()
    assert errors == [] and calls == 1
